//! The audit log, the pgrx side: shared-memory queue (`queue`), spool files for crash
//! evidence (`spool`), the backend's statement and migration tracking (`backend`), the
//! background workers that write the log (`worker`), and the SQL functions below.
//! Records, hashing, events and alerts are plain Rust in `crate::engine::audit`.

pub mod backend;
pub mod backlog;
pub mod queue;
pub mod spool;
pub mod worker;

use crate::engine::audit::{row_content, ChainVerifier, PhaseEvent, Verdict};
use pgrx::pg_sys;
use pgrx::prelude::*;

pgrx::extension_sql_file!(
    "../../sql/audit.sql",
    name = "audit",
    requires = [
        "phases",
        is_audit_writer,
        queue_phase_event,
        note_upgrade,
        running_migrations,
        queue_stats,
        queue_spilled
    ]
);

pub fn init() {
    queue::init();
    worker::register_launcher();
}

/// Walks the hash chain of `migsafe.audit_log` from its first row and reports the
/// first broken link, or OK with the number of rows.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn verify_log() -> TableIterator<
    'static,
    (
        name!(ok, bool),
        name!(rows_checked, i64),
        name!(last_seq, Option<i64>),
        name!(broken_seq, Option<i64>),
        name!(reason, String),
    ),
> {
    // With the caller's rights (SELECT on the log: migsafe_auditor), names pinned.
    let mut v = ChainVerifier::new();
    let broken = crate::spi::scan(
        crate::spi::As::Caller,
        "SELECT seq, kind, migration, record::pg_catalog.text, hash FROM migsafe.audit_log ORDER BY seq",
        10_000,
        |t| {
            for r in t {
                let seq = r.get::<i64>(1).ok().flatten().unwrap_or(0);
                let kind = r.get::<String>(2).ok().flatten().unwrap_or_default();
                let migration = r.get::<String>(3).ok().flatten();
                let rec = r.get::<String>(4).ok().flatten().unwrap_or_default();
                let hash = r.get::<String>(5).ok().flatten().unwrap_or_default();
                let content = row_content(&kind, migration.as_deref(), &rec);
                if let Some(broken) = v.push(seq, &content, &hash) {
                    return Some(broken);
                }
            }
            None
        },
    );
    let verdict = broken.unwrap_or_else(|| v.finish());
    let row = match verdict {
        Verdict::Ok { rows, last_seq } => (
            true,
            rows,
            (rows > 0).then_some(last_seq),
            None,
            format!("OK: {rows} rows, every link holds"),
        ),
        Verdict::Broken {
            rows_ok,
            seq,
            reason,
        } => (
            false,
            rows_ok,
            (rows_ok > 0).then_some(seq - 1),
            Some(seq),
            format!("broken at seq {seq}: {reason}"),
        ),
    };
    TableIterator::once(row)
}

/// True in the pg_migsafe audit writer (the only process that may append to the log).
#[pg_extern(name = "_is_audit_writer", volatile)]
fn is_audit_writer() -> bool {
    unsafe {
        let e = pg_sys::MyBgworkerEntry;
        !e.is_null()
            && std::ffi::CStr::from_ptr((*e).bgw_function_name.as_ptr()).to_bytes()
                == worker::WRITER_FUNCTION.as_bytes()
            && std::ffi::CStr::from_ptr((*e).bgw_library_name.as_ptr()).to_bytes() == b"pg_migsafe"
    }
}

/// Names the current migration (or the next one of this transaction) in the audit log.
#[pg_extern(volatile)]
fn set_migration_name(name: &str) {
    if name.trim().is_empty() {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "pg_migsafe: a migration name must not be empty"
        );
    }
    backend::set_migration_name(name.to_string());
}

/// Queues a phase event for the audit log (the phase_event trigger calls it). Only the
/// extension's own functions may: they run as its owner, a superuser (checked here too,
/// since 0.1.0's SQL left this function executable by PUBLIC until the update runs).
#[pg_extern(name = "_queue_phase_event", volatile)]
fn queue_phase_event(phase_id: i64, event: &str, by_role: &str, at: &str, detail: Option<&str>) {
    if unsafe { !pg_sys::superuser_arg(pg_sys::GetUserId()) } {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "pg_migsafe: phase events are recorded only by the phase functions"
        );
    }
    backend::phase_event(PhaseEvent {
        phase_id,
        event: event.to_string(),
        by_role: by_role.to_string(),
        at: at.to_string(),
        detail: detail.map(str::to_string),
    });
}

/// Records `ALTER EXTENSION pg_migsafe UPDATE` in the audit log (when its transaction
/// commits). Called by the update scripts; refused anywhere else.
#[pg_extern(name = "_note_upgrade", volatile)]
fn note_upgrade(from_version: &str, to_version: &str) {
    if unsafe { !pg_sys::creating_extension } {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "pg_migsafe: an upgrade is recorded only by ALTER EXTENSION pg_migsafe UPDATE"
        );
    }
    backend::upgrade_event(crate::engine::audit::Upgrade {
        at: crate::engine::audit::iso_time(crate::pgutil::now_unix_us()),
        from_version: from_version.to_string(),
        to_version: to_version.to_string(),
        by_role: crate::pgutil::role_name(unsafe { pg_sys::GetSessionUserId() }),
    });
}

/// Migrations running right now in the cluster (from shared memory).
#[pg_extern(name = "_running_migrations", volatile)]
fn running_migrations() -> TableIterator<
    'static,
    (
        name!(migration, String),
        name!(pid, i32),
        name!(started_at, Option<pgrx::datum::TimestampWithTimeZone>),
    ),
> {
    let rows: Vec<_> = backend::running_keys()
        .into_iter()
        .map(|(k, pid, us)| (k, pid, to_ts(us)))
        .collect();
    TableIterator::new(rows)
}

fn to_ts(unix_us: i64) -> Option<pgrx::datum::TimestampWithTimeZone> {
    pgrx::datum::TimestampWithTimeZone::try_from(unix_us - crate::pgutil::PG_EPOCH_UNIX_US).ok()
}

/// The queue's counters and depth (for migsafe.metrics).
#[allow(clippy::type_complexity)]
#[pg_extern(name = "_queue_stats", volatile)]
fn queue_stats() -> TableIterator<
    'static,
    (
        name!(queued, i64),
        name!(written, i64),
        name!(fallback, i64),
        name!(queue_records, i64),
        name!(queue_bytes, i64),
        name!(writers, i32),
        name!(
            last_migration_end,
            Option<pgrx::datum::TimestampWithTimeZone>
        ),
        name!(last_migration_duration_us, Option<i64>),
    ),
> {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(h) = queue::header() else {
        return TableIterator::once((0, 0, 0, 0, 0, 0, None, None));
    };
    let (mut recs, mut bytes, mut writers) = (0i64, 0i64, 0i32);
    for i in 0..queue::slot_count() {
        let (r, b) = queue::depth(i);
        recs += r as i64;
        bytes += b as i64;
        if queue::slot(i)
            .state
            .load(std::sync::atomic::Ordering::Acquire)
            == queue::RUNNING
        {
            writers += 1;
        }
    }
    let end = h.last_migration_end_us.load(Relaxed);
    TableIterator::once((
        h.queued.load(Relaxed) as i64,
        h.written.load(Relaxed) as i64,
        h.fallback.load(Relaxed) as i64,
        recs,
        bytes,
        writers,
        (end > 0).then(|| to_ts(end)).flatten(),
        (end > 0).then(|| h.last_migration_duration_us.load(Relaxed)),
    ))
}

/// Records put in the backlog on disk since the server started (for migsafe.metrics;
/// a function of its own, so that the SQL of earlier releases, which calls
/// `_queue_stats` with its columns, keeps working with this library).
#[pg_extern(name = "_queue_spilled", volatile)]
fn queue_spilled() -> i64 {
    queue::header()
        .map(|h| h.spilled.load(std::sync::atomic::Ordering::Relaxed) as i64)
        .unwrap_or(0)
}
