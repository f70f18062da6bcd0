//! What kind of statement a utility statement is, read cheaply: the hook's fast path
//! (statements that are never DDL pass with a tag comparison), and the facts the
//! hook's bookkeeping needs.

use pgrx::pg_sys::{self, NodeTag};
use std::ffi::{c_char, CStr};

/// Statements that are never DDL: they pass with a tag comparison (and, for SET and
/// VACUUM, a look at the name or options — no allocation, no catalog).
#[inline]
pub unsafe fn is_fast_path(stmt: *mut pg_sys::Node) -> bool {
    match (*stmt).type_ {
        NodeTag::T_TransactionStmt
        | NodeTag::T_VariableShowStmt
        | NodeTag::T_PrepareStmt
        | NodeTag::T_ExecuteStmt
        | NodeTag::T_DeallocateStmt
        | NodeTag::T_DeclareCursorStmt
        | NodeTag::T_FetchStmt
        | NodeTag::T_ClosePortalStmt
        | NodeTag::T_ListenStmt
        | NodeTag::T_NotifyStmt
        | NodeTag::T_UnlistenStmt
        | NodeTag::T_CopyStmt
        | NodeTag::T_ExplainStmt
        | NodeTag::T_CheckPointStmt
        | NodeTag::T_LockStmt
        | NodeTag::T_DiscardStmt
        | NodeTag::T_ConstraintsSetStmt
        | NodeTag::T_DoStmt
        | NodeTag::T_CallStmt
        | NodeTag::T_LoadStmt => true,
        NodeTag::T_VariableSetStmt => {
            let name = (*(stmt as *mut pg_sys::VariableSetStmt)).name;
            name.is_null() || !starts_with_migsafe(name)
        }
        NodeTag::T_VacuumStmt => !vacuum_full(stmt as *mut pg_sys::VacuumStmt),
        _ => false,
    }
}

unsafe fn starts_with_migsafe(name: *const c_char) -> bool {
    let prefix = b"migsafe.";
    for (i, want) in prefix.iter().enumerate() {
        let c = *name.add(i) as u8;
        if c == 0 || !c.eq_ignore_ascii_case(want) {
            return false;
        }
    }
    true
}

unsafe fn vacuum_full(v: *mut pg_sys::VacuumStmt) -> bool {
    if !(*v).is_vacuumcmd || (*v).options.is_null() {
        return false;
    }
    let list = (*v).options;
    for i in 0..(*list).length {
        let cell = (*list).elements.add(i as usize);
        let d = (*cell).ptr_value as *mut pg_sys::DefElem;
        if !d.is_null()
            && !(*d).defname.is_null()
            && CStr::from_ptr((*d).defname).to_bytes() == b"full"
        {
            return true;
        }
    }
    false
}

/// The table an ALTER TABLE … ALTER COLUMN … TYPE changes (its extended statistics
/// are built again).
///
/// # Safety
/// `stmt` is a utility statement's parse tree.
pub unsafe fn retyped_table(stmt: *mut pg_sys::Node) -> Option<pg_sys::Oid> {
    if (*stmt).type_ != NodeTag::T_AlterTableStmt {
        return None;
    }
    let a = stmt as *mut pg_sys::AlterTableStmt;
    let retypes = pgrx::PgList::<pg_sys::AlterTableCmd>::from_pg((*a).cmds)
        .iter_ptr()
        .any(|c| (*c).subtype == pg_sys::AlterTableType::AT_AlterColumnType);
    if !retypes {
        return None;
    }
    let relid = super::nodes::relid_of((*a).relation);
    (relid != pg_sys::InvalidOid).then_some(relid)
}

/// A planned statement of the same kind as an approved DROP that the recycle bin
/// carried out, naming no object: run through the rest of the ProcessUtility chain, it
/// drops nothing, yet audit tools loaded before pg_migsafe (pgaudit) and event
/// triggers on ddl_command_start/end see the DROP the user ran (sql_drop does not fire:
/// nothing is dropped), and the client gets its DROP TABLE tag. None for any other
/// statement.
///
/// # Safety
/// `pstmt` is a valid planned utility statement; allocates in the current context.
pub unsafe fn dropping_nothing(
    pstmt: *mut pg_sys::PlannedStmt,
) -> Option<*mut pg_sys::PlannedStmt> {
    let stmt = (*pstmt).utilityStmt;
    if stmt.is_null() || (*stmt).type_ != NodeTag::T_DropStmt {
        return None;
    }
    let orig = stmt as *mut pg_sys::DropStmt;
    let drop = pg_sys::palloc0(std::mem::size_of::<pg_sys::DropStmt>()) as *mut pg_sys::DropStmt;
    (*drop).type_ = NodeTag::T_DropStmt;
    (*drop).objects = std::ptr::null_mut();
    (*drop).removeType = (*orig).removeType;
    (*drop).behavior = (*orig).behavior;
    (*drop).missing_ok = (*orig).missing_ok;
    (*drop).concurrent = false;
    let planned =
        pg_sys::palloc0(std::mem::size_of::<pg_sys::PlannedStmt>()) as *mut pg_sys::PlannedStmt;
    (*planned).type_ = NodeTag::T_PlannedStmt;
    (*planned).commandType = pg_sys::CmdType::CMD_UTILITY;
    (*planned).canSetTag = (*pstmt).canSetTag;
    // pg_stat_statements and the like count it under the user's statement.
    (*planned).queryId = (*pstmt).queryId;
    (*planned).utilityStmt = drop.cast();
    (*planned).stmt_location = (*pstmt).stmt_location;
    (*planned).stmt_len = (*pstmt).stmt_len;
    Some(planned)
}
