//! Which table a statement locks heavily, and which database it needs free: what the
//! audit's lock safety and the writers' bookkeeping read from a utility statement.

use pgrx::pg_sys::{self, NodeTag};
use std::ffi::{c_char, CStr};

/// The existing relation a statement locks ACCESS EXCLUSIVE or SHARE ROW EXCLUSIVE,
/// resolved through search_path as the server will (without a lock), and that mode.
///
/// # Safety
/// `stmt` is a utility statement's parse tree; call inside a transaction.
pub unsafe fn heavy_target(stmt: *mut pg_sys::Node) -> Option<(pg_sys::Oid, pg_sys::LOCKMODE)> {
    let (rv, mode) = heavy_range_var(stmt)?;
    if rv.is_null() {
        return None;
    }
    let relid = super::nodes::relid_of(rv);
    (relid != pg_sys::InvalidOid).then_some((relid, mode))
}

/// The other existing tables an ALTER TABLE locks SHARE ROW EXCLUSIVE: the referenced
/// table of each FOREIGN KEY it adds (`ADD CONSTRAINT … FOREIGN KEY`, `ADD COLUMN …
/// REFERENCES`), resolved as the server will, without a lock. Lock retries take them
/// in the same try as the statement's own table.
///
/// # Safety
/// `stmt` is a utility statement's parse tree; call inside a transaction.
pub unsafe fn also_locked(stmt: *mut pg_sys::Node) -> Vec<(pg_sys::Oid, pg_sys::LOCKMODE)> {
    let mut out = Vec::new();
    if stmt.is_null() || (*stmt).type_ != NodeTag::T_AlterTableStmt {
        return out;
    }
    let sre = pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE;
    let mut add = |c: *mut pg_sys::Constraint| {
        if (*c).contype == pg_sys::ConstrType::CONSTR_FOREIGN && !(*c).pktable.is_null() {
            let relid = super::nodes::relid_of((*c).pktable);
            if relid != pg_sys::InvalidOid && !out.iter().any(|&(r, _)| r == relid) {
                out.push((relid, sre));
            }
        }
    };
    use super::nodes::nodes;
    for n in nodes((*(stmt as *mut pg_sys::AlterTableStmt)).cmds) {
        let cmd = n as *mut pg_sys::AlterTableCmd;
        let def = (*cmd).def;
        if def.is_null() {
            continue;
        }
        match (*def).type_ {
            NodeTag::T_Constraint => add(def as *mut pg_sys::Constraint),
            NodeTag::T_ColumnDef => {
                for c in nodes((*(def as *mut pg_sys::ColumnDef)).constraints) {
                    if (*c).type_ == NodeTag::T_Constraint {
                        add(c as *mut pg_sys::Constraint);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

unsafe fn heavy_range_var(
    stmt: *mut pg_sys::Node,
) -> Option<(*mut pg_sys::RangeVar, pg_sys::LOCKMODE)> {
    let ae = pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE;
    let sre = pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE;
    let first_rv = |l: *mut pg_sys::List| -> Option<*mut pg_sys::RangeVar> {
        if l.is_null() || (*l).length == 0 {
            return None;
        }
        let n = (*(*l).elements).ptr_value as *mut pg_sys::Node;
        match (*n).type_ {
            NodeTag::T_RangeVar => Some(n as *mut pg_sys::RangeVar),
            NodeTag::T_List => Some(pg_sys::makeRangeVarFromNameList(n as *mut pg_sys::List)),
            _ => None,
        }
    };
    match (*stmt).type_ {
        NodeTag::T_AlterTableStmt => {
            let a = stmt as *mut pg_sys::AlterTableStmt;
            let mode = pg_sys::AlterTableGetLockLevel((*a).cmds);
            (mode >= sre).then_some(((*a).relation, mode))
        }
        NodeTag::T_TruncateStmt => {
            first_rv((*(stmt as *mut pg_sys::TruncateStmt)).relations).map(|r| (r, ae))
        }
        NodeTag::T_DropStmt => {
            let d = stmt as *mut pg_sys::DropStmt;
            use pg_sys::ObjectType::*;
            match (*d).removeType {
                OBJECT_TABLE | OBJECT_MATVIEW | OBJECT_VIEW | OBJECT_FOREIGN_TABLE => {
                    first_rv((*d).objects).map(|r| (r, ae))
                }
                _ => None,
            }
        }
        NodeTag::T_RenameStmt => {
            let r = stmt as *mut pg_sys::RenameStmt;
            // ALTER INDEX … RENAME takes SHARE UPDATE EXCLUSIVE (PostgreSQL 12 on).
            ((*r).renameType != pg_sys::ObjectType::OBJECT_INDEX && !(*r).relation.is_null())
                .then_some(((*r).relation, ae))
        }
        NodeTag::T_CreateTrigStmt => {
            let t = stmt as *mut pg_sys::CreateTrigStmt;
            Some(((*t).relation, sre))
        }
        NodeTag::T_RuleStmt => Some(((*(stmt as *mut pg_sys::RuleStmt)).relation, ae)),
        NodeTag::T_CreatePolicyStmt => Some(((*(stmt as *mut pg_sys::CreatePolicyStmt)).table, ae)),
        NodeTag::T_AlterPolicyStmt => Some(((*(stmt as *mut pg_sys::AlterPolicyStmt)).table, ae)),
        NodeTag::T_ClusterStmt => {
            let c = stmt as *mut pg_sys::ClusterStmt;
            (!(*c).relation.is_null()).then_some(((*c).relation, ae))
        }
        NodeTag::T_AlterObjectSchemaStmt => {
            let a = stmt as *mut pg_sys::AlterObjectSchemaStmt;
            (!(*a).relation.is_null()).then_some(((*a).relation, ae))
        }
        _ => None,
    }
}

/// The database a statement needs no other session in: DROP DATABASE, CREATE DATABASE
/// … TEMPLATE (template1 by default), ALTER DATABASE … RENAME / SET TABLESPACE.
///
/// # Safety
/// `stmt` is a utility statement's parse tree.
pub unsafe fn database_needed_free(stmt: *mut pg_sys::Node) -> Option<*const c_char> {
    let name: Option<*const c_char> = match (*stmt).type_ {
        NodeTag::T_DropdbStmt => Some((*(stmt as *mut pg_sys::DropdbStmt)).dbname),
        NodeTag::T_RenameStmt => {
            let r = stmt as *mut pg_sys::RenameStmt;
            ((*r).renameType == pg_sys::ObjectType::OBJECT_DATABASE)
                .then(|| (*r).subname as *const c_char)
        }
        NodeTag::T_AlterDatabaseStmt => Some((*(stmt as *mut pg_sys::AlterDatabaseStmt)).dbname),
        NodeTag::T_CreatedbStmt => {
            let c = stmt as *mut pg_sys::CreatedbStmt;
            let mut t: *const c_char = c"template1".as_ptr();
            let opts = (*c).options;
            if !opts.is_null() {
                for i in 0..(*opts).length {
                    let d = (*(*opts).elements.add(i as usize)).ptr_value as *mut pg_sys::DefElem;
                    if !(*d).defname.is_null()
                        && CStr::from_ptr((*d).defname).to_bytes() == b"template"
                    {
                        t = pg_sys::defGetString(d);
                    }
                }
            }
            Some(t)
        }
        _ => None,
    };
    name.filter(|n| !n.is_null())
}
