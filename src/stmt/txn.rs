//! Statements PostgreSQL runs only outside a transaction block
//! (PreventInTransactionBlock), and transaction control: the one list both the dry
//! run (which runs a migration in one transaction) and check()'s
//! `not-in-transaction` rule (a runner wraps a migration in one) go by.

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
    let has_option = |l: *mut pg_sys::List, name: &[u8]| {
        PgList::<pg_sys::DefElem>::from_pg(l).iter_ptr().any(|d| {
            !(*d).defname.is_null() && std::ffi::CStr::from_ptr((*d).defname).to_bytes() == name
        })
    };
    let _ = &has_option;
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
            let c = has_option((*s).params, b"concurrently");
            if c {
                out(concurrently(), "REINDEX CONCURRENTLY cannot run inside a transaction block")
            } else if matches!((*s).kind, REINDEX_OBJECT_SYSTEM | REINDEX_OBJECT_DATABASE) {
                out(tagname(), "REINDEX SYSTEM and DATABASE cannot run inside a transaction block")
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
        NodeTag::T_CreatedbStmt | NodeTag::T_DropdbStmt => {
            out(tagname(), "CREATE/DROP DATABASE cannot run inside a transaction block")
        }
        NodeTag::T_CreateTableSpaceStmt | NodeTag::T_DropTableSpaceStmt => {
            out(tagname(), "CREATE/DROP TABLESPACE cannot run inside a transaction block")
        }
        NodeTag::T_AlterSystemStmt => out(tagname(), "ALTER SYSTEM cannot run inside a transaction block"),
        NodeTag::T_CreateSubscriptionStmt
        | NodeTag::T_DropSubscriptionStmt
        | NodeTag::T_AlterSubscriptionStmt => {
            out(tagname(), "subscription commands may not run inside a transaction block")
        }
        _ => None,
    }
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
