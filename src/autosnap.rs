//! Automatic snapshots: before each DDL statement of a migration, the state of what
//! the statement can reach — read only if no earlier statement of the same migration
//! (top-level transaction) already covered it. The parts make one snapshot, stored
//! when the migration commits (`migsafe._snapshot_store()`); the audit log's migration
//! row points to it.
//!
//! What a statement reaches is read from its parse tree, names resolved through
//! search_path as the server resolves them. Statements whose reach is not known
//! exactly (CASCADE drops, unknown DDL, unqualified functions outside CREATE) take a
//! full snapshot part instead, so the snapshot is never missing anything.
//!
//! No trace in the user's session: a part is read in a subtransaction that is rolled
//! back (the locks the read takes — deparsing a view locks what it reads — are let go
//! at once, so they neither show in `pg_locks` nor hold up, or deadlock with, other
//! sessions' DDL later in the migration), kept in memory, and written at commit or
//! PREPARE; its id comes from a counter in shared memory, not a sequence, so
//! `lastval()` stays the user's. A read that meets a concurrent DDL (a relation
//! dropped between the catalog scan and its deparse, or a deadlock it lost) is read
//! again. In a transaction that cannot write (READ ONLY, a standby), nothing is read.

use crate::engine::schema::scope::Scope;
use crate::guc;
use crate::spi::{self, As};
use crate::stmt::reach::{reach, Reach};
use pgrx::pg_sys;
use pgrx::PgList;
use std::cell::RefCell;

struct Part {
    /// The subtransaction that read it: gone if that one rolls back.
    sub: pg_sys::SubTransactionId,
    /// None: everything.
    scope: Option<Scope>,
    /// The catalog document (`migsafe._catalog()`), as JSON text.
    doc: String,
}

#[derive(Default)]
struct State {
    /// The snapshot's id and when its first part was read (Unix µs).
    snapshot: Option<(i64, i64)>,
    parts: Vec<Part>,
    /// Written (at pre-commit): the id it got.
    stored: Option<i64>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// How often a part is read again after an object vanished under it.
const READ_ATTEMPTS: u32 = 10;

/// How long a part's read gives way to concurrent DDL before it waits like any
/// statement (see `read_doc`).
const GIVE_WAY_US: i64 = 3_000_000;

/// How a concurrent DDL got in a read's way.
enum Conflict {
    /// A lock wait that ran out (or a deadlock the read lost).
    LockWait,
    /// An object dropped between the catalog scan and its deparse.
    Vanished,
}

/// The transaction callback's part (called by `hooks`, first): store the snapshot
/// before commit, and return its id (for the audit's end record); forget it after.
pub(crate) unsafe fn on_xact(event: pg_sys::XactEvent::Type) -> Option<i64> {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            if STATE
                .try_with(|s| s.borrow().stored.is_none() && !s.borrow().parts.is_empty())
                .unwrap_or(false)
            {
                store_guarded();
            }
            current()
        }
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE => {
            let _ = STATE.try_with(|s| *s.borrow_mut() = State::default());
            None
        }
        _ => None,
    }
}

/// A user's subtransaction rolled back (called by `hooks`): forget the parts it read.
pub(crate) fn on_subxact_abort(my_subid: pg_sys::SubTransactionId) {
    let _ = STATE.try_with(|s| {
        let mut s = s.borrow_mut();
        s.parts.retain(|p| p.sub < my_subid);
        if s.parts.is_empty() {
            // Its id stays unused: a gap, as a sequence leaves one.
            *s = State::default();
        }
    });
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn store_guarded() {
    store();
}

/// Writes the migration's snapshot (at commit or PREPARE; the audit log's end record
/// asks for it first, to know its id). Does nothing the second time.
fn store() {
    let pending = STATE.with(|s| {
        let s = s.borrow();
        if s.stored.is_some() || s.parts.is_empty() {
            return None;
        }
        let (id, taken_us) = s.snapshot?;
        let scopes: Vec<Option<String>> = s
            .parts
            .iter()
            .map(|p| p.scope.as_ref().map(|sc| sc.to_json()))
            .collect();
        let docs: Vec<String> = s.parts.iter().map(|p| p.doc.clone()).collect();
        Some((id, taken_us, scopes, docs))
    });
    let Some((id, taken_us, scopes, docs)) = pending else {
        return;
    };
    let stored = spi::call::<i64>(
        As::Superuser,
        "SELECT migsafe._snapshot_store($1, pg_catalog.to_timestamp($2), \
                $3::pg_catalog.jsonb[], $4::pg_catalog.jsonb[])",
        &[
            id.into(),
            (taken_us as f64 / 1e6).into(),
            scopes.into(),
            docs.into(),
        ],
    )
    .unwrap_or(id);
    if stored != id {
        crate::audit::queue::snapshot_id_used(unsafe { pg_sys::MyDatabaseId }, stored);
    }
    STATE.with(|s| s.borrow_mut().stored = Some(stored));
}

/// The automatic snapshot of the running migration, if one was taken.
fn current() -> Option<i64> {
    STATE
        .try_with(|s| {
            let s = s.borrow();
            s.stored
                .or_else(|| s.snapshot.filter(|_| !s.parts.is_empty()).map(|(id, _)| id))
        })
        .ok()
        .flatten()
}

fn snapshots_installed() -> bool {
    crate::pgutil::migsafe_relation(c"snapshot_part").is_some()
        && crate::pgutil::migsafe_relation(c"snapshot").is_some()
}

/// Does the database's extension SQL store snapshots at commit (0.3.0 on)? A database
/// still on an earlier release's SQL (until its ALTER EXTENSION UPDATE) has only
/// `_snapshot_part`, which writes each part inside the transaction as it is read.
fn stores_at_commit() -> bool {
    unsafe {
        let mut names = PgList::<pg_sys::Node>::new();
        names.push(pg_sys::makeString(pg_sys::pstrdup(c"migsafe".as_ptr())) as *mut pg_sys::Node);
        names.push(
            pg_sys::makeString(pg_sys::pstrdup(c"_snapshot_store".as_ptr())) as *mut pg_sys::Node,
        );
        let args = [
            pg_sys::INT8OID,
            pg_sys::TIMESTAMPTZOID,
            pg_sys::JSONBARRAYOID,
            pg_sys::JSONBARRAYOID,
        ];
        pg_sys::LookupFuncName(names.into_pg(), 4, args.as_ptr(), true) != pg_sys::InvalidOid
    }
}

/// Is an error of a part's read one a concurrent DDL causes (read again)?
fn concurrent_ddl(e: &pgrx::pg_sys::panic::CaughtError) -> Option<Conflict> {
    use pgrx::pg_sys::panic::CaughtError::*;
    use pgrx::PgSqlErrorCode::*;
    let r = match e {
        PostgresError(r) | ErrorReport(r) => r,
        RustPanic { .. } => return None,
    };
    match r.sql_error_code() {
        ERRCODE_LOCK_NOT_AVAILABLE | ERRCODE_T_R_DEADLOCK_DETECTED => Some(Conflict::LockWait),
        ERRCODE_UNDEFINED_TABLE | ERRCODE_UNDEFINED_OBJECT | ERRCODE_UNDEFINED_FUNCTION => {
            Some(Conflict::Vanished)
        }
        ERRCODE_INTERNAL_ERROR => {
            let m = r.message();
            (m.starts_with("could not open relation") || m.starts_with("cache lookup failed"))
                .then_some(Conflict::Vanished)
        }
        _ => None,
    }
}

/// Reads a part's catalog document, leaving nothing in the user's transaction (see
/// the module documentation). Deparsing a view locks the relations it reads, so a read
/// can meet concurrent DDL: a lock held by another migration, a relation dropped
/// between the catalog scan and its deparse.
///
/// For its first `GIVE_WAY_US`, each attempt waits for a lock at most a hundredth of
/// `deadlock_timeout` (10 ms at most), then lets go of everything it took and tries
/// again: a read that would close a cycle of waits gives way instead of being caught
/// in it by another session's deadlock check, so that session's DDL goes on instead of
/// failing. After that, the read waits as the
/// statement itself would (its own `lock_timeout`, PostgreSQL's deadlock detection):
/// a cycle through locks the statement already held would otherwise never be found.
/// Each attempt has a snapshot of its own (a fresh one in READ COMMITTED), so an object
/// a concurrent DDL dropped meanwhile is gone from the next attempt; such a vanished
/// object is retried `READ_ATTEMPTS` times.
fn read_doc(scope: Option<String>) -> String {
    let started = crate::pgutil::now_unix_us();
    let user_timeout_ms = unsafe { pg_sys::LockTimeout };
    // Barely waiting: a read caught waiting in a cycle by another session's deadlock
    // check would make that session's DDL fail.
    let mut short_ms = (unsafe { pg_sys::DeadlockTimeout } / 100).clamp(1, 10);
    if user_timeout_ms > 0 {
        short_ms = short_ms.min(user_timeout_ms);
    }
    let short = std::ffi::CString::new(format!("{short_ms}ms")).expect("no NUL");
    let mut vanished = 0;
    let mut attempt: i64 = 0;
    loop {
        attempt += 1;
        let giving_way = crate::pgutil::now_unix_us() - started < GIVE_WAY_US;
        let arg = scope.clone();
        let r = spi::rolled_back(|| {
            if giving_way {
                // Local to the subtransaction: gone with its rollback.
                spi::set_local(c"lock_timeout", &short);
            }
            // A snapshot of its own for each attempt; the rollback pops it should the
            // read fail.
            unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
            let doc = spi::one::<String>(
                As::Superuser,
                "SELECT migsafe._catalog($1::pg_catalog.jsonb)::pg_catalog.text",
                &[arg.into()],
            );
            unsafe { pg_sys::PopActiveSnapshot() };
            doc
        });
        let e = match r {
            Ok(doc) => return doc.unwrap_or_else(|| "{}".into()),
            Err(e) => e,
        };
        let retry = match concurrent_ddl(&e) {
            Some(Conflict::LockWait) => giving_way,
            Some(Conflict::Vanished) => {
                vanished += 1;
                vanished < READ_ATTEMPTS
            }
            None => false,
        };
        if !retry {
            e.rethrow();
        }
        pgrx::check_for_interrupts!();
        unsafe { pg_sys::pg_usleep((5_000 * attempt).min(100_000) as std::ffi::c_long) };
    }
}

/// Before a DDL statement runs: snapshot what it reaches that this migration has not
/// covered yet.
///
/// # Safety
/// `stmt` is the statement's utility node; call inside a transaction.
pub unsafe fn before(stmt: *mut pg_sys::Node) {
    // Statements that cannot run in a transaction block (CONCURRENTLY) must be their
    // transaction's first action: nothing may be written before them.
    if !guc::AUTO_SNAPSHOT.get()
        || !pg_sys::IsTransactionState()
        || !crate::pgutil::transaction_writable()
        || crate::stmt::txn::outside_transaction(stmt).is_some()
    {
        return;
    }
    // A full part covers everything the migration can still do: nothing to work out.
    if STATE.with(|s| s.borrow().parts.iter().any(|p| p.scope.is_none())) {
        return;
    }
    let reach = reach(stmt);
    if matches!(reach, Reach::Nothing) || !snapshots_installed() {
        return;
    }
    let missing = STATE.with(|s| {
        let s = s.borrow();
        let mut have = Scope::default();
        for p in &s.parts {
            have.extend(p.scope.as_ref().expect("no full part: checked above"));
        }
        match &reach {
            Reach::Everything => Some(None),
            Reach::Part(want) => have.missing(want).map(Some),
            Reach::Nothing => None,
        }
    });
    let Some(scope) = missing else {
        return;
    };
    if !stores_at_commit() {
        // An earlier release's SQL: its own way, as that release did.
        let sid = STATE.with(|s| s.borrow().snapshot.map(|(id, _)| id));
        let arg = scope
            .as_ref()
            .map(|s| pgrx::JsonB(serde_json::from_str(&s.to_json()).expect("a scope is JSON")));
        let id = spi::call::<i64>(
            As::Superuser,
            "SELECT migsafe._snapshot_part($1, $2)",
            &[sid.into(), arg.into()],
        );
        let sub = pg_sys::GetCurrentSubTransactionId();
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if s.snapshot.is_none() {
                s.snapshot = id.map(|i| (i, 0));
            }
            // Written already: nothing to store at commit.
            s.stored = s.snapshot.map(|(id, _)| id);
            s.parts.push(Part {
                sub,
                scope,
                doc: String::new(),
            });
        });
        return;
    }
    let doc = read_doc(scope.as_ref().map(|s| s.to_json()));
    let need_id = STATE.with(|s| s.borrow().snapshot.is_none());
    let id = need_id.then(crate::snapshot::next_snapshot_id);
    let sub = pg_sys::GetCurrentSubTransactionId();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if let Some(id) = id {
            s.snapshot = Some((id, crate::pgutil::now_unix_us()));
        }
        s.parts.push(Part { sub, scope, doc });
    });
}
