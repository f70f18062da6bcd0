//! What an approved statement would destroy, read from its parse tree for the recycle
//! bin (`recycle.rs`): the tables a DROP TABLE names, the columns an ALTER TABLE
//! drops, the tables a TRUNCATE empties — names resolved as the server resolves them.

use super::nodes::relid_of;
use crate::pgutil::cstr;
use pgrx::pg_sys::{self, NodeTag};
use pgrx::PgList;

/// A name the statement gives and what it resolves to here.
pub enum Named {
    Found(pg_sys::Oid),
    /// Not there; the name as written.
    Missing(String),
}

/// The recycle bin's part of a statement.
pub enum Targets {
    /// DROP TABLE (not CONCURRENTLY, not of other relation kinds).
    DropTables {
        tables: Vec<Named>,
        cascade: bool,
        missing_ok: bool,
    },
    /// ALTER TABLE … DROP COLUMN (the table, InvalidOid when it is not there).
    DropColumns {
        table: pg_sys::Oid,
        columns: Vec<String>,
    },
    /// TRUNCATE (InvalidOid for a name that is not there).
    Truncate {
        tables: Vec<pg_sys::Oid>,
    },
    Nothing,
}

/// # Safety
/// `stmt` is a utility statement's parse tree.
pub unsafe fn recycle_targets(stmt: *mut pg_sys::Node) -> Targets {
    match (*stmt).type_ {
        NodeTag::T_DropStmt => {
            let d = stmt as *mut pg_sys::DropStmt;
            if (*d).removeType != pg_sys::ObjectType::OBJECT_TABLE || (*d).concurrent {
                return Targets::Nothing;
            }
            let tables = PgList::<pg_sys::List>::from_pg((*d).objects)
                .iter_ptr()
                .map(|names| {
                    let oid = relid_of(pg_sys::makeRangeVarFromNameList(names));
                    if oid == pg_sys::InvalidOid {
                        Named::Missing(cstr(pg_sys::NameListToString(names)).unwrap_or_default())
                    } else {
                        Named::Found(oid)
                    }
                })
                .collect();
            Targets::DropTables {
                tables,
                cascade: (*d).behavior == pg_sys::DropBehavior::DROP_CASCADE,
                missing_ok: (*d).missing_ok,
            }
        }
        NodeTag::T_AlterTableStmt => {
            let a = stmt as *mut pg_sys::AlterTableStmt;
            let columns = PgList::<pg_sys::AlterTableCmd>::from_pg((*a).cmds)
                .iter_ptr()
                .filter(|c| (**c).subtype == pg_sys::AlterTableType::AT_DropColumn)
                .filter_map(|c| cstr((*c).name))
                .collect();
            Targets::DropColumns {
                table: relid_of((*a).relation),
                columns,
            }
        }
        NodeTag::T_TruncateStmt => Targets::Truncate {
            tables: PgList::<pg_sys::RangeVar>::from_pg(
                (*(stmt as *mut pg_sys::TruncateStmt)).relations,
            )
            .iter_ptr()
            .map(|rv| relid_of(rv))
            .collect(),
        },
        _ => Targets::Nothing,
    }
}
