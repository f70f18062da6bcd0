//! The recycle bin and the rollback phase, the pgrx side.
//!
//! * An approved DROP TABLE is carried out by `migsafe._recycle_table()` (a rename
//!   into schema `migsafe_recycle`) instead of the real drop, when the table can be
//!   moved (an ordinary table; with CASCADE, its views and incoming foreign keys are
//!   recorded and dropped first). Approved DROP COLUMN and TRUNCATE keep a copy first
//!   and then run as usual. The SQL side is sql/recycle.sql.
//! * `migsafe._internal(sql)` runs the recycle bin's own DDL without the hook
//!   inspecting it (EXECUTE is revoked from PUBLIC; only the extension's SECURITY
//!   DEFINER functions call it).
//! * While `migsafe.rollback()` runs, a rollback phase approves what the rollback
//!   drops; it lives until the (sub)transaction that opened it ends.

use crate::engine::policy::Report;
use crate::guc;
use crate::pgutil::{cstr, relid_of};
use crate::phase::as_superuser;
use pgrx::pg_sys::{self, NodeTag};
use pgrx::prelude::*;
use pgrx::PgList;
use std::cell::Cell;

pgrx::extension_sql_file!(
    "../sql/recycle.sql",
    name = "recycle",
    requires = ["snapshots", internal_exec]
);

thread_local! {
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
    static ROLLBACK_PHASE: Cell<Option<(i64, pg_sys::SubTransactionId)>> = const { Cell::new(None) };
    static APPROVED: Cell<i64> = const { Cell::new(0) };
}

/// The extension's own DDL is running: the hook lets it through uninspected.
#[inline]
pub fn internal() -> bool {
    INTERNAL.get()
}

/// Runs one statement of the extension's own DDL (see the module documentation).
#[pg_extern(name = "_internal", volatile, parallel_unsafe)]
fn internal_exec(sql: &str) {
    let before = INTERNAL.replace(true);
    PgTryBuilder::new(|| {
        Spi::run(sql).unwrap_or_else(|e| pgrx::error!("{e}"));
    })
    .finally(|| INTERNAL.set(before))
    .execute();
}

/// Opens the rollback phase `id` for the current (sub)transaction.
#[pg_extern(name = "_set_rollback_phase", volatile, parallel_unsafe)]
fn set_rollback_phase(id: Option<i64>) {
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    ROLLBACK_PHASE.set(id.map(|i| (i, sub)));
}

/// The rollback phase approving statements right now, if any.
pub fn rollback_phase() -> Option<i64> {
    ROLLBACK_PHASE.get().map(|(id, _)| id)
}

/// The hook notes which phase approved the statement it is about to run.
pub fn note_approval(phase: i64) {
    APPROVED.set(phase);
}

pub fn take_approval() -> i64 {
    APPROVED.replace(0)
}

pub fn init() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE
    ) {
        ROLLBACK_PHASE.set(None);
        INTERNAL.set(false);
        APPROVED.set(0);
    }
}

unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        if let Some((_, sub)) = ROLLBACK_PHASE.get() {
            if sub >= my_subid {
                ROLLBACK_PHASE.set(None);
            }
        }
        APPROVED.set(0);
    }
}

fn call_i64(sql: &str, args: Vec<pgrx::datum::DatumWithOid>) -> Option<i64> {
    as_superuser(|| Spi::get_one_with_args::<i64>(sql, &args))
        .unwrap_or_else(|e| pgrx::error!("{e}"))
}

fn not_recyclable(rel: pg_sys::Oid, cascade: bool) -> Option<String> {
    as_superuser(|| {
        Spi::get_one_with_args::<String>(
            "SELECT migsafe._not_recyclable($1, $2)",
            &[rel.into(), cascade.into()],
        )
    })
    .unwrap_or_else(|e| pgrx::error!("{e}"))
}

unsafe fn name_list_text(names: *mut pg_sys::List) -> String {
    cstr(pg_sys::NameListToString(names)).unwrap_or_default()
}

unsafe fn rel_name(rel: pg_sys::Oid) -> String {
    let name = cstr(pg_sys::get_rel_name(rel)).unwrap_or_default();
    crate::pgutil::qualified(pg_sys::get_rel_namespace(rel), &name)
}

/// What the hook does after `before`.
pub enum Outcome {
    /// Run the statement.
    Run,
    /// It has been carried out here (an approved DROP TABLE moved the table).
    CarriedOut,
    /// Refuse it: the copy would exceed `migsafe.recycle_max_bytes`.
    Refuse(Report),
}

/// Runs before an approved statement (see the module documentation).
///
/// # Safety
/// `stmt` is the statement's utility node.
pub unsafe fn before(stmt: *mut pg_sys::Node, text: &str, phase: i64) -> Outcome {
    match (*stmt).type_ {
        NodeTag::T_DropStmt if drop_tables(stmt as *mut pg_sys::DropStmt, text, phase) => {
            Outcome::CarriedOut
        }
        NodeTag::T_AlterTableStmt => drop_columns(stmt as *mut pg_sys::AlterTableStmt, text, phase)
            .map_or(Outcome::Run, Outcome::Refuse),
        NodeTag::T_TruncateStmt => truncate(stmt as *mut pg_sys::TruncateStmt, text, phase)
            .map_or(Outcome::Run, Outcome::Refuse),
        _ => Outcome::Run,
    }
}

fn too_big(what: String) -> Report {
    let max = guc::RECYCLE_MAX_BYTES.get();
    Report {
        message: format!(
            "pg_migsafe refused {what}: its copy for the recycle bin would exceed migsafe.recycle_max_bytes ({max} kB), and the contract phase does not allow losing the data"
        ),
        detail: "Approved drops keep the data they remove in schema migsafe_recycle, up to migsafe.recycle_max_bytes.".into(),
        hint: "Raise migsafe.recycle_max_bytes in postgresql.conf, or open the contract phase with keep_data => false to drop without a copy.".into(),
    }
}

unsafe fn drop_tables(d: *mut pg_sys::DropStmt, text: &str, phase: i64) -> bool {
    if (*d).removeType != pg_sys::ObjectType::OBJECT_TABLE || (*d).concurrent {
        return false;
    }
    let cascade = (*d).behavior == pg_sys::DropBehavior::DROP_CASCADE;
    let mut rels = Vec::new();
    let mut missing = Vec::new();
    for names in PgList::<pg_sys::List>::from_pg((*d).objects).iter_ptr() {
        let rv = pg_sys::makeRangeVarFromNameList(names);
        let oid = relid_of(rv);
        if oid == pg_sys::InvalidOid {
            if !(*d).missing_ok {
                return false; // the real DROP reports it
            }
            missing.push(name_list_text(names));
        } else if pg_sys::get_rel_relkind(oid) as u8 != b'r' {
            return false; // the real DROP reports the wrong kind
        } else {
            rels.push(oid);
        }
    }
    for &rel in &rels {
        if let Some(why) = not_recyclable(rel, cascade) {
            let name = cstr(pg_sys::get_rel_name(rel)).unwrap_or_default();
            pgrx::notice!(
                "pg_migsafe: table \"{name}\" is dropped for good, not kept in the recycle bin: {why}"
            );
            return false;
        }
    }
    for name in missing {
        pgrx::notice!("table \"{name}\" does not exist, skipping");
    }
    for rel in rels {
        let name = rel_name(rel);
        let id = call_i64(
            "SELECT migsafe._recycle_table($1, $2, $3, $4)",
            vec![rel.into(), cascade.into(), phase.into(), text.into()],
        );
        if let Some(id) = id {
            crate::audit::backend::note_object(format!(
                "table {name} (moved to the recycle bin, id {id})"
            ));
            pgrx::notice!(
                "pg_migsafe: table {name} moved to the recycle bin (id {id}); SELECT migsafe.undrop({id}) brings it back"
            );
        }
    }
    true
}

unsafe fn drop_columns(a: *mut pg_sys::AlterTableStmt, text: &str, phase: i64) -> Option<Report> {
    let rel = relid_of((*a).relation);
    if rel == pg_sys::InvalidOid {
        return None;
    }
    for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*a).cmds).iter_ptr() {
        if (*cmd).subtype != pg_sys::AlterTableType::AT_DropColumn {
            continue;
        }
        let Some(col) = cstr((*cmd).name) else {
            continue;
        };
        let id = call_i64(
            "SELECT migsafe._recycle_column($1, $2, $3, $4)",
            vec![rel.into(), col.as_str().into(), phase.into(), text.into()],
        );
        if id == Some(-1) {
            return Some(too_big(format!(
                "DROP COLUMN {}.{}",
                rel_name(rel),
                crate::pgutil::quote(&col)
            )));
        }
        if let Some(id) = id {
            pgrx::notice!(
                "pg_migsafe: the values of column \"{col}\" are kept in the recycle bin (id {id}); SELECT migsafe.undrop({id}) brings them back"
            );
        }
    }
    None
}

unsafe fn truncate(t: *mut pg_sys::TruncateStmt, text: &str, phase: i64) -> Option<Report> {
    for rv in PgList::<pg_sys::RangeVar>::from_pg((*t).relations).iter_ptr() {
        let rel = relid_of(rv);
        if rel == pg_sys::InvalidOid {
            continue;
        }
        let id = call_i64(
            "SELECT migsafe._recycle_truncate($1, $2, $3)",
            vec![rel.into(), phase.into(), text.into()],
        );
        if id == Some(-1) {
            return Some(too_big(format!("TRUNCATE {}", rel_name(rel))));
        }
        if let Some(id) = id {
            pgrx::notice!(
                "pg_migsafe: the rows of {} are kept in the recycle bin (id {id}); SELECT migsafe.undrop({id}) brings them back",
                rel_name(rel)
            );
        }
    }
    None
}
