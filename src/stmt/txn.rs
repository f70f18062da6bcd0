//! Statements PostgreSQL runs only outside a transaction block
//! (PreventInTransactionBlock), and transaction control: the one list both the dry
//! run (which runs a migration in one transaction) and check()'s
//! `not-in-transaction` rule (a runner wraps a migration in one) go by.

use super::nodes::has_option;
use crate::pgutil::cstr;
use pgrx::pg_sys::{self, NodeTag};
use pgrx::PgList;

/// Why a statement cannot run inside a transaction block.
pub struct OutsideOnly {
    /// The command, e.g. `CREATE INDEX … CONCURRENTLY`.
    pub command: String,
    pub why: &'static str,
    /// BEGIN, COMMIT, SAVEPOINT …: it manages the transaction itself.
    pub transaction_control: bool,
}

/// None: the statement can run inside a transaction block.
///
/// # Safety
/// `stmt` is a raw parse tree node.
pub unsafe fn outside_transaction(stmt: *mut pg_sys::Node) -> Option<OutsideOnly> {
    let tagname =
        || cstr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(stmt))).unwrap_or_default();
    let concurrently = || format!("{} … CONCURRENTLY", tagname());
    let out = |command: String, why: &'static str| {
        Some(OutsideOnly {
            command,
            why,
            transaction_control: false,
        })
    };
    match (*stmt).type_ {
        NodeTag::T_TransactionStmt => Some(OutsideOnly {
            command: tagname(),
            why: "transaction control: the dry run is one transaction already",
            transaction_control: true,
        }),
        NodeTag::T_IndexStmt if (*(stmt as *mut pg_sys::IndexStmt)).concurrent => out(
            concurrently(),
            "CREATE INDEX CONCURRENTLY cannot run inside a transaction block; run it on its own and check the index is valid",
        ),
        NodeTag::T_DropStmt if (*(stmt as *mut pg_sys::DropStmt)).concurrent => {
            out(concurrently(), "DROP INDEX CONCURRENTLY cannot run inside a transaction block")
        }
        NodeTag::T_ReindexStmt => {
            let s = stmt as *mut pg_sys::ReindexStmt;
            use pg_sys::ReindexObjectType::*;
            #[cfg(feature = "pg13")]
            let c = (*s).concurrent;
            #[cfg(not(feature = "pg13"))]
            let c = option_on((*s).params, "concurrently");
            if c {
                out(concurrently(), "REINDEX CONCURRENTLY cannot run inside a transaction block")
            } else if matches!(
                (*s).kind,
                REINDEX_OBJECT_SCHEMA | REINDEX_OBJECT_SYSTEM | REINDEX_OBJECT_DATABASE
            ) {
                out(tagname(), "REINDEX SCHEMA, SYSTEM and DATABASE cannot run inside a transaction block")
            } else if cfg!(not(feature = "pg13")) && partitioned((*s).relation) {
                out(tagname(), "REINDEX of a partitioned table or index cannot run inside a transaction block")
            } else {
                None
            }
        }
        NodeTag::T_AlterTableStmt => {
            let detach = PgList::<pg_sys::AlterTableCmd>::from_pg((*(stmt as *mut pg_sys::AlterTableStmt)).cmds)
                .iter_ptr()
                .any(|c| {
                    (*c).subtype == pg_sys::AlterTableType::AT_DetachPartition
                        && detach_concurrently((*c).def)
                });
            if detach {
                out(
                    "ALTER TABLE … DETACH PARTITION … CONCURRENTLY".into(),
                    "DETACH PARTITION CONCURRENTLY cannot run inside a transaction block",
                )
            } else {
                None
            }
        }
        NodeTag::T_VacuumStmt if (*(stmt as *mut pg_sys::VacuumStmt)).is_vacuumcmd => {
            out(tagname(), "VACUUM cannot run inside a transaction block")
        }
        NodeTag::T_ClusterStmt if (*(stmt as *mut pg_sys::ClusterStmt)).relation.is_null() => {
            out(tagname(), "CLUSTER without a table cannot run inside a transaction block")
        }
        NodeTag::T_ClusterStmt
            if cfg!(not(any(feature = "pg13", feature = "pg14")))
                && partitioned((*(stmt as *mut pg_sys::ClusterStmt)).relation) =>
        {
            out(tagname(), "CLUSTER of a partitioned table cannot run inside a transaction block")
        }
        NodeTag::T_AlterDatabaseStmt
            if has_option((*(stmt as *mut pg_sys::AlterDatabaseStmt)).options, "tablespace") =>
        {
            out(tagname(), "ALTER DATABASE … SET TABLESPACE cannot run inside a transaction block")
        }
        NodeTag::T_DiscardStmt
            if (*(stmt as *mut pg_sys::DiscardStmt)).target == pg_sys::DiscardMode::DISCARD_ALL =>
        {
            out(tagname(), "DISCARD ALL cannot run inside a transaction block")
        }
        NodeTag::T_CreatedbStmt | NodeTag::T_DropdbStmt => {
            out(tagname(), "CREATE/DROP DATABASE cannot run inside a transaction block")
        }
        NodeTag::T_CreateTableSpaceStmt | NodeTag::T_DropTableSpaceStmt => {
            out(tagname(), "CREATE/DROP TABLESPACE cannot run inside a transaction block")
        }
        NodeTag::T_AlterSystemStmt => out(tagname(), "ALTER SYSTEM cannot run inside a transaction block"),
        // CREATE SUBSCRIPTION that creates a slot (the default), DROP SUBSCRIPTION of one
        // that has a slot (not known here), ALTER SUBSCRIPTION that refreshes.
        NodeTag::T_CreateSubscriptionStmt => {
            let o = (*(stmt as *mut pg_sys::CreateSubscriptionStmt)).options;
            if option_false(o, b"create_slot") || option_false(o, b"connect") {
                None
            } else {
                out(tagname(), "CREATE SUBSCRIPTION that creates a slot cannot run inside a transaction block")
            }
        }
        NodeTag::T_DropSubscriptionStmt => {
            out(tagname(), "DROP SUBSCRIPTION of a subscription with a slot cannot run inside a transaction block")
        }
        NodeTag::T_AlterSubscriptionStmt => {
            let a = stmt as *mut pg_sys::AlterSubscriptionStmt;
            use pg_sys::AlterSubscriptionType::*;
            let refresh = match (*a).kind {
                ALTER_SUBSCRIPTION_REFRESH => true,
                #[cfg(feature = "pg13")]
                ALTER_SUBSCRIPTION_PUBLICATION => !option_false((*a).options, b"refresh"),
                #[cfg(not(feature = "pg13"))]
                ALTER_SUBSCRIPTION_SET_PUBLICATION => !option_false((*a).options, b"refresh"),
                #[cfg(not(feature = "pg13"))]
                ALTER_SUBSCRIPTION_ADD_PUBLICATION | ALTER_SUBSCRIPTION_DROP_PUBLICATION => {
                    !option_false((*a).options, b"refresh")
                }
                _ => false,
            };
            if refresh {
                out(tagname(), "ALTER SUBSCRIPTION that refreshes cannot run inside a transaction block")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Is the relation a partitioned table or index?
unsafe fn partitioned(rv: *mut pg_sys::RangeVar) -> bool {
    if rv.is_null() {
        return false;
    }
    let relid = super::nodes::relid_of(rv);
    relid != pg_sys::InvalidOid && matches!(pg_sys::get_rel_relkind(relid) as u8, b'p' | b'I')
}

/// An option given as false (`create_slot = false`, `off`, `0`). Read without
/// defGetBoolean, which raises an error on a value it does not know: that is for the
/// statement to report when it runs.
unsafe fn option_false(l: *mut pg_sys::List, name: &[u8]) -> bool {
    PgList::<pg_sys::DefElem>::from_pg(l).iter_ptr().any(|d| {
        if (*d).defname.is_null() || std::ffi::CStr::from_ptr((*d).defname).to_bytes() != name {
            return false;
        }
        let arg = (*d).arg;
        if arg.is_null() {
            return false; // `create_slot` alone means true
        }
        match (*arg).type_ {
            #[cfg(not(any(feature = "pg13", feature = "pg14")))]
            NodeTag::T_Boolean => !(*(arg as *mut pg_sys::Boolean)).boolval,
            NodeTag::T_Integer => {
                #[cfg(any(feature = "pg13", feature = "pg14"))]
                let v = (*(arg as *mut pg_sys::Value)).val.ival;
                #[cfg(not(any(feature = "pg13", feature = "pg14")))]
                let v = (*(arg as *mut pg_sys::Integer)).ival;
                v == 0
            }
            _ => crate::pgutil::string_node(arg).is_some_and(|v| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "false" | "off" | "f" | "no" | "n" | "0"
                )
            }),
        }
    })
}

/// DETACH PARTITION … CONCURRENTLY (PostgreSQL 14+).
///
/// # Safety
/// `def` is an ALTER TABLE command's definition node, or null.
pub unsafe fn detach_concurrently(def: *mut pg_sys::Node) -> bool {
    #[cfg(feature = "pg13")]
    {
        let _ = def;
        false
    }
    #[cfg(not(feature = "pg13"))]
    {
        !def.is_null()
            && (*def).type_ == NodeTag::T_PartitionCmd
            && (*(def as *mut pg_sys::PartitionCmd)).concurrent
    }
}

/// Is the boolean option `name` given and on (`CONCURRENTLY`, `CONCURRENTLY true`;
/// not `CONCURRENTLY false`)?
///
/// # Safety
/// `l` is a list of DefElem nodes, or NIL.
#[cfg_attr(feature = "pg13", allow(dead_code))] // PostgreSQL 13's REINDEX has a flag
pub unsafe fn option_on(l: *mut pg_sys::List, name: &str) -> bool {
    has_option(l, name) && !option_false(l, name.as_bytes())
}

/// Clears CONCURRENTLY from a CREATE INDEX, DROP INDEX or REINDEX, in place (a REINDEX loses its `concurrently` option, whatever its
/// value): the same change in its plain form. False for any other statement.
unsafe fn strip_concurrently(stmt: *mut pg_sys::Node) -> bool {
    match (*stmt).type_ {
        NodeTag::T_IndexStmt => (*(stmt as *mut pg_sys::IndexStmt)).concurrent = false,
        NodeTag::T_DropStmt => (*(stmt as *mut pg_sys::DropStmt)).concurrent = false,
        NodeTag::T_ReindexStmt => {
            let s = stmt as *mut pg_sys::ReindexStmt;
            #[cfg(feature = "pg13")]
            {
                (*s).concurrent = false;
            }
            #[cfg(not(feature = "pg13"))]
            {
                let mut kept = std::ptr::null_mut();
                for d in PgList::<pg_sys::DefElem>::from_pg((*s).params).iter_ptr() {
                    if cstr((*d).defname).as_deref() != Some("concurrently") {
                        kept = pg_sys::lappend(kept, d.cast());
                    }
                }
                (*s).params = kept;
            }
        }
        // DETACH PARTITION … CONCURRENTLY is not among them: its plain form is one the
        // guard refuses without an approval, so it says nothing of the migration.
        _ => return false,
    }
    true
}

/// The text of a statement's plain form, when it cannot run in a transaction block
/// only because of CONCURRENTLY (CREATE INDEX, DROP INDEX, REINDEX): the same change, which the dry run runs so that the statements after
/// it see its effect. None for every other statement, and for one whose plain form
/// cannot be written by taking out its CONCURRENTLY.
///
/// The text is found with PostgreSQL's own scanner (the keyword, never a string, a
/// comment or a quoted name) and proven by parsing it: its parse tree must be the
/// original's with CONCURRENTLY cleared, and it must run in a transaction block.
pub fn in_transaction_text(text: &str) -> Option<String> {
    let stmts = super::parse::statements(text);
    let [(text, node)] = stmts.as_slice() else {
        return None;
    };
    unsafe {
        match outside_transaction(*node) {
            Some(o) if !o.transaction_control => {}
            _ => return None,
        }
        let want = pg_sys::copyObjectImpl((*node).cast()) as *mut pg_sys::Node;
        if !strip_concurrently(want) || outside_transaction(want).is_some() {
            return None;
        }
        for at in super::nodes::keyword_locations(text, "concurrently") {
            let (before, after) = (&text[..at], &text[at + "concurrently".len()..]);
            for plain in ["", "CONCURRENTLY false"] {
                let candidate = format!("{before}{plain}{after}");
                let Some(got) = super::parse::parse_one(&candidate) else {
                    continue;
                };
                if outside_transaction(got).is_some() {
                    continue;
                }
                let stripped = pg_sys::copyObjectImpl(got.cast()) as *mut pg_sys::Node;
                strip_concurrently(stripped);
                if pg_sys::equal(want.cast(), stripped.cast()) {
                    return Some(candidate);
                }
            }
        }
    }
    None
}
