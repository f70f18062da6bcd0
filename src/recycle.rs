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
use crate::pgutil::cstr;
use crate::spi::{self, As};
use crate::stmt::targets::{recycle_targets, Named, Targets};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pgrx::extension_sql_file!(
    "../sql/recycle.sql",
    name = "recycle",
    requires = ["snapshots", internal_exec]
);

/// A rollback phase: the statements of the server-computed rollback plan it approves,
/// for the (sub)transaction that opened it.
struct RollbackApproval {
    id: i64,
    subxact: pg_sys::SubTransactionId,
    /// Statement (normalized) → the role it runs as (None: the caller).
    statements: HashMap<String, Option<String>>,
    /// Opened for a dry run: what it approved must never be committed.
    dry: bool,
}

thread_local! {
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
    /// The next utility statement the hook sees is the extension's own (set by
    /// `_internal` and `_run_as` around their one statement, taken by the hook).
    static OURS_NEXT: Cell<bool> = const { Cell::new(false) };
    static ROLLBACK: RefCell<Option<RollbackApproval>> = const { RefCell::new(None) };
    /// The subtransactions in which a dry run's approval approved a statement: only
    /// their abort (or the end of the transaction) forgets them, whatever happens to
    /// the approval itself; a commit with any left is refused.
    static DRY_USES: RefCell<Vec<pg_sys::SubTransactionId>> = const { RefCell::new(Vec::new()) };
    static APPROVED: Cell<i64> = const { Cell::new(0) };
}

/// The extension's own DDL is running (object notes of the audit log skip it).
#[inline]
pub fn internal() -> bool {
    INTERNAL.get()
}

/// Is the statement the hook is entering the extension's own (then it is not
/// inspected)? Only the first statement after `_internal`/`_run_as` set the mark is:
/// anything that statement sets off (a trigger's DDL) is inspected as usual.
#[inline]
pub fn take_ours() -> bool {
    OURS_NEXT.replace(false)
}

/// Runs one statement of the extension's own DDL as the extension's owner (see the
/// module documentation): statements that run no code of the user's (moves, renames,
/// drops of the bin's own tables, grants on them).
#[pg_extern(name = "_internal", volatile, parallel_unsafe)]
fn internal_exec(sql: &str) {
    let before = INTERNAL.replace(true);
    PgTryBuilder::new(|| {
        OURS_NEXT.set(true);
        // The text comes from the extension's own SECURITY DEFINER functions, which
        // build it with format('%I') (EXECUTE on this function is theirs alone).
        spi::execute_built(As::Caller, sql, &[], |_| Ok(()));
    })
    .finally(|| {
        OURS_NEXT.set(false);
        INTERNAL.set(before)
    })
    .execute();
}

/// Runs one statement of the extension's own making as `role` (the owner of the
/// object it writes or re-creates), security-restricted: triggers, constraints,
/// index expressions and view queries it sets off run with that role's rights, as
/// for VACUUM or REFRESH MATERIALIZED VIEW. With `ddl`, the statement itself is not
/// inspected by the hook (it re-creates what was there); whatever it sets off is.
/// Returns the number of rows it processed.
#[pg_extern(name = "_run_as", volatile, parallel_unsafe)]
pub fn run_as(role: pg_sys::Oid, sql: &str, ddl: bool) -> i64 {
    if role == pg_sys::InvalidOid {
        pgrx::error!("pg_migsafe: _run_as needs a role");
    }
    PgTryBuilder::new(|| {
        OURS_NEXT.set(ddl);
        // Text built by the extension's SECURITY DEFINER functions with format('%I')
        // (EXECUTE on this function is theirs alone).
        spi::execute_built(As::Owner(role), sql, &[], |t| Ok(t.len() as i64))
    })
    .finally(|| OURS_NEXT.set(false))
    .execute()
}

/// Does a table (or one column of it) hold anything? Read as the table's owner,
/// security-restricted (a partition may be a foreign table, a policy may call a
/// function). Used by the rollback's data-loss check. When the owner's own policies
/// apply (FORCE ROW LEVEL SECURITY) what the owner sees may not be all: it is assumed
/// to hold data.
#[pg_extern(name = "_holds_data", volatile, parallel_unsafe)]
pub fn holds_data(rel: pg_sys::Oid, col: Option<&str>) -> bool {
    let Some(owner) = (unsafe { crate::pgutil::rel_owner(rel) }) else {
        return false;
    };
    if unsafe { crate::pgutil::row_security_forced(rel) } {
        return true;
    }
    let (nsp, name) = unsafe {
        (
            cstr(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(rel))).unwrap_or_default(),
            cstr(pg_sys::get_rel_name(rel)).unwrap_or_default(),
        )
    };
    // Identifiers quoted by the server's quote_identifier().
    let table = format!(
        "{}.{}",
        crate::pgutil::quote(&nsp),
        crate::pgutil::quote(&name)
    );
    let sql = match col {
        None => format!("SELECT EXISTS (SELECT 1 FROM {table})"),
        Some(c) => format!(
            "SELECT EXISTS (SELECT 1 FROM {table} WHERE {} IS NOT NULL)",
            crate::pgutil::quote(c)
        ),
    };
    spi::execute_built(As::Owner(owner), &sql, &[], |t| {
        Ok(t.first().get_one::<bool>()?.unwrap_or(false))
    })
}

/// Opens the rollback phase `id` for the current (sub)transaction: it approves the
/// statements listed (the rollback plan's, computed by the server), nothing else.
/// `dry`: for a dry run, whose work must be rolled back (committing it is refused).
#[pg_extern(name = "_set_rollback_phase", volatile, parallel_unsafe)]
fn set_rollback_approval(
    id: Option<i64>,
    statements: Option<Vec<Option<String>>>,
    owners: Option<Vec<Option<String>>>,
    dry: default!(bool, false),
) {
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let owners = owners.unwrap_or_default();
    let approval = id.map(|id| RollbackApproval {
        id,
        subxact: sub,
        statements: statements
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| Some((normalize(&s?), owners.get(i).cloned().flatten())))
            .collect(),
        dry,
    });
    ROLLBACK.with(|r| *r.borrow_mut() = approval);
}

/// Runs one statement of the current rollback plan, as the role that owns what it
/// creates or changes (security-restricted: the code it sets off runs with that
/// role's rights, and what it creates is that role's), provided the caller has that
/// role's privileges. Anything that is not a statement of the plan is refused.
#[pg_extern(name = "_rollback_exec", volatile, parallel_unsafe)]
fn rollback_exec(sql: &str) {
    let owner = ROLLBACK.with(|r| {
        r.borrow()
            .as_ref()
            .and_then(|a| a.statements.get(&normalize(sql)).cloned())
    });
    let Some(owner) = owner else {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "pg_migsafe: not a statement of the rollback plan of this transaction"
        );
    };
    let who = match owner {
        None => As::Caller,
        Some(name) => {
            let c = std::ffi::CString::new(name.clone()).unwrap_or_default();
            let oid = unsafe { pg_sys::get_role_oid(c.as_ptr(), true) };
            if oid == pg_sys::InvalidOid {
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                    format!("pg_migsafe: cannot run a rollback step as role \"{name}\": the role no longer exists"),
                    format!("Statement: {}", crate::engine::policy::shorten(sql, 300))
                );
            }
            if !unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), oid) } {
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    format!("pg_migsafe: the rollback step belongs to role \"{name}\", whose privileges the caller does not have"),
                    format!("Statement: {}", crate::engine::policy::shorten(sql, 300))
                );
            }
            As::Owner(oid)
        }
    };
    // A statement of the server-computed plan, approved by the rollback phase; the
    // hook inspects and records it like any other.
    spi::execute_built(who, sql, &[], |_| Ok(()));
}

/// The C symbol 0.1.0's `migsafe._set_rollback_phase(bigint)` is bound to. A database
/// still on 0.1.0's SQL with this library gets a clear error instead of a call with the
/// wrong arguments (no SQL: 0.2.0's function of that name has its own symbol).
#[pg_extern(sql = false)]
fn set_rollback_phase(_id: Option<i64>) {
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "pg_migsafe: this database still has pg_migsafe 0.1.0's SQL objects",
        "_set_rollback_phase",
    )
    .set_detail("The library was upgraded; the extension's objects in this database were not.")
    .set_hint("Run ALTER EXTENSION pg_migsafe UPDATE in this database (see CHANGELOG.md).")
    .report(PgLogLevel::ERROR);
}

/// The rollback phase open in this (sub)transaction, if any (for migsafe._rollback_end()).
#[pg_extern(name = "_rollback_phase_id", volatile, parallel_unsafe)]
pub fn rollback_phase_id() -> Option<i64> {
    ROLLBACK.with(|r| r.borrow().as_ref().map(|a| a.id))
}

/// A statement as compared with the rollback plan: without surrounding blanks and
/// the final semicolon.
fn normalize(s: &str) -> String {
    s.trim().trim_end_matches(';').trim_end().to_string()
}

/// The rollback phase that approves this statement (one of its plan's), if any.
pub fn rollback_approves(text: &str) -> Option<i64> {
    let t = normalize(text);
    let (id, dry) = ROLLBACK.with(|r| {
        let r = r.try_borrow().ok()?;
        let a = r.as_ref()?;
        a.statements.contains_key(&t).then_some((a.id, a.dry))
    })?;
    if dry {
        let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
        DRY_USES.with(|d| d.borrow_mut().push(sub));
    }
    Some(id)
}

/// The hook notes which phase approved the statement it is about to run.
pub fn note_approval(phase: i64) {
    APPROVED.set(phase);
}

pub fn take_approval() -> i64 {
    APPROVED.replace(0)
}

/// The transaction callback's part (called by `hooks`, second): a dry run's approvals
/// cannot commit; the transaction's state goes at its end.
pub(crate) unsafe fn on_xact(event: pg_sys::XactEvent::Type) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            let dry_used = DRY_USES.with(|d| d.try_borrow().map(|d| !d.is_empty()).unwrap_or(true));
            if dry_used {
                refuse_dry_run_commit();
            }
        }
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE => {
            ROLLBACK.with(|r| {
                if let Ok(mut r) = r.try_borrow_mut() {
                    *r = None;
                }
            });
            DRY_USES.with(|d| {
                if let Ok(mut d) = d.try_borrow_mut() {
                    d.clear();
                }
            });
            INTERNAL.set(false);
            OURS_NEXT.set(false);
            APPROVED.set(0);
        }
        _ => {}
    }
}

/// A dry run's approvals were used and the transaction is about to commit: what they
/// approved would stay. Refused (the transaction rolls back).
#[pg_guard]
unsafe extern "C-unwind" fn refuse_dry_run_commit() {
    pgrx::ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
        "pg_migsafe: the transaction ran statements approved for a dry run of a rollback and cannot commit",
        "A dry run's approvals hold only for work that is rolled back; run migsafe.rollback(snapshot, dry_run => false)."
    );
}

/// A user's subtransaction rolled back (called by `hooks`).
pub(crate) fn on_subxact_abort(my_subid: pg_sys::SubTransactionId) {
    {
        ROLLBACK.with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                if r.as_ref().is_some_and(|a| a.subxact >= my_subid) {
                    *r = None;
                }
            }
        });
        DRY_USES.with(|d| {
            if let Ok(mut d) = d.try_borrow_mut() {
                d.retain(|s| *s < my_subid);
            }
        });
        OURS_NEXT.set(false);
        APPROVED.set(0);
    }
}

fn call_i64(sql: &'static str, args: Vec<pgrx::datum::DatumWithOid>) -> Option<i64> {
    spi::call::<i64>(As::Superuser, sql, &args)
}

fn not_recyclable(rel: pg_sys::Oid, cascade: bool) -> Option<String> {
    spi::one::<String>(
        As::Superuser,
        "SELECT migsafe._not_recyclable($1, $2)",
        &[rel.into(), cascade.into()],
    )
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
    if !crate::pgutil::transaction_writable() {
        // The statement fails with PostgreSQL's read-only error; nothing to keep.
        return Outcome::Run;
    }
    match recycle_targets(stmt) {
        Targets::DropTables {
            tables,
            cascade,
            missing_ok,
        } => {
            if drop_tables(tables, cascade, missing_ok, text, phase) {
                Outcome::CarriedOut
            } else {
                Outcome::Run
            }
        }
        Targets::DropColumns { table, columns } => {
            drop_columns(table, &columns, text, phase).map_or(Outcome::Run, Outcome::Refuse)
        }
        Targets::Truncate { tables } => {
            truncate(&tables, text, phase).map_or(Outcome::Run, Outcome::Refuse)
        }
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

/// May the current user drop (or alter) the relation, as PostgreSQL decides it for DROP
/// and ALTER TABLE: its owner, or the owner of its schema (DROP only)?
unsafe fn may_own(rel: pg_sys::Oid, or_schema: bool) -> bool {
    let uid = pg_sys::GetUserId();
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    {
        pg_sys::pg_class_ownercheck(rel, uid)
            || (or_schema && pg_sys::pg_namespace_ownercheck(pg_sys::get_rel_namespace(rel), uid))
    }
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    {
        pg_sys::object_ownercheck(pg_sys::RelationRelationId, rel, uid)
            || (or_schema
                && pg_sys::object_ownercheck(
                    pg_sys::NamespaceRelationId,
                    pg_sys::get_rel_namespace(rel),
                    uid,
                ))
    }
}

unsafe fn drop_tables(
    tables: Vec<Named>,
    cascade: bool,
    missing_ok: bool,
    text: &str,
    phase: i64,
) -> bool {
    let mut rels = Vec::new();
    let mut missing = Vec::new();
    for t in tables {
        let oid = match t {
            Named::Missing(name) => {
                if !missing_ok {
                    return false; // the real DROP reports it
                }
                missing.push(name);
                continue;
            }
            Named::Found(oid) => oid,
        };
        let kind = pg_sys::get_rel_relkind(oid) as u8;
        if kind == b'p' {
            // A partitioned table (its partitions' rows too): kept nowhere. Said so.
            let name = cstr(pg_sys::get_rel_name(oid)).unwrap_or_default();
            pgrx::notice!(
                "pg_migsafe: table \"{name}\" is dropped for good, not kept in the recycle bin: it is a partitioned table"
            );
            return false;
        } else if kind != b'r' {
            return false; // the real DROP reports the wrong kind
        } else if !may_own(oid, true) {
            // An approval is not a privilege: the real DROP checks the caller's right
            // (and fails); the recycle bin moves only what the caller may drop.
            return false;
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

unsafe fn drop_columns(
    rel: pg_sys::Oid,
    columns: &[String],
    text: &str,
    phase: i64,
) -> Option<Report> {
    if columns.is_empty() || rel == pg_sys::InvalidOid || !may_own(rel, false) {
        return None; // the real ALTER TABLE reports what is wrong
    }
    for col in columns {
        let id = call_i64(
            "SELECT migsafe._recycle_column($1, $2, $3, $4)",
            vec![rel.into(), col.as_str().into(), phase.into(), text.into()],
        );
        if id == Some(-1) {
            return Some(too_big(format!(
                "DROP COLUMN {}.{}",
                rel_name(rel),
                crate::pgutil::quote(col)
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

unsafe fn truncate(tables: &[pg_sys::Oid], text: &str, phase: i64) -> Option<Report> {
    for &rel in tables {
        if rel == pg_sys::InvalidOid
            || pg_sys::pg_class_aclcheck(rel, pg_sys::GetUserId(), pg_sys::ACL_TRUNCATE as _)
                != pg_sys::AclResult::ACLCHECK_OK
        {
            continue; // the real TRUNCATE reports what is wrong
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
