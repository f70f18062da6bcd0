//! How pg_migsafe runs SQL: every query the extension issues from Rust goes through
//! this module, and this module alone calls pgrx's `Spi`.
//!
//! The standing security rules (docs/security.md) are enforced here by construction:
//!
//! * **Values are parameters.** The query text is a `&'static str`: a value cannot be
//!   spliced into it, it can only be passed as `$n`. The one door for text built at run
//!   time is [`execute_built`], used for identifiers that PostgreSQL itself quoted
//!   (`quote_identifier()`, `format('%I')`), and it says so at every call.
//! * **Pinned names.** Every query runs with `search_path = pg_catalog, pg_temp`, set
//!   the way a function's `SET` clause sets it (a GUC nest level, undone on return and
//!   on error), so that no table, function or operator of the caller's can stand in for
//!   the catalog's. (`pg_temp` is never searched for functions and operators, and
//!   listed last it cannot shadow a catalog relation.)
//! * **As whom.** A query runs as one of three identities ([`As`]): the caller (the
//!   user id in effect), the bootstrap superuser (to read and write the extension's
//!   own tables, which the roles that run migrations cannot), or the owner of a user
//!   object (whenever the work can fire user code: triggers, constraints, index
//!   expressions, views, policies). The last two run as a *security-restricted
//!   operation*, as VACUUM, REINDEX and REFRESH MATERIALIZED VIEW run user code: the
//!   code cannot change the session's role, create temporary objects or leave state
//!   behind for the session.
//!
//! Errors raised by a query abort the (sub)transaction as usual; the [`Context`] guard
//! restores the user id, the search_path and the active snapshot on return and while
//! unwinding.

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::pg_sys::{self, Oid};
use pgrx::spi::{Spi, SpiError, SpiTupleTable};

/// The identity a query runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum As {
    /// The user id in effect: what the caller could do without pg_migsafe.
    Caller,
    /// The bootstrap superuser, security-restricted: pg_migsafe's own tables and
    /// catalog reads that must see everything.
    Superuser,
    /// The owner of a user object, security-restricted: work that can fire code the
    /// owner wrote.
    Owner(Oid),
}

/// A raised (or pinned) context; restores what it changed when dropped.
pub struct Context {
    uid: Oid,
    sec: i32,
    nest: i32,
    pushed_snapshot: bool,
}

/// Enters the context `who` with the pinned search_path and an active snapshot
/// (utility statements of the extended protocol and commit callbacks run without one).
pub fn enter(who: As) -> Context {
    unsafe {
        let pushed_snapshot = !pg_sys::ActiveSnapshotSet();
        if pushed_snapshot {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        let (mut uid, mut sec) = (pg_sys::InvalidOid, 0);
        pg_sys::GetUserIdAndSecContext(&mut uid, &mut sec);
        let raised = sec
            | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
            | pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
        match who {
            As::Caller => {}
            As::Superuser => pg_sys::SetUserIdAndSecContext(
                pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
                raised,
            ),
            As::Owner(owner) => pg_sys::SetUserIdAndSecContext(owner, raised),
        }
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        Context {
            uid,
            sec,
            nest,
            pushed_snapshot,
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let unwinding = std::thread::panicking();
        unsafe {
            // On an error the (sub)transaction abort undoes the GUC nest level and the
            // snapshot stack too; undoing them here as well is harmless for the GUC
            // stack, but the snapshot stack may hold entries of the failed query above
            // ours, which only the abort may pop.
            pg_sys::AtEOXact_GUC(!unwinding, self.nest);
            pg_sys::SetUserIdAndSecContext(self.uid, self.sec);
            if self.pushed_snapshot && !unwinding {
                pg_sys::PopActiveSnapshot();
            }
        }
    }
}

/// Runs `f` in the context `who` (see the module documentation).
pub fn with<R>(who: As, f: impl FnOnce() -> R) -> R {
    let _c = enter(who);
    f()
}

fn fail(sql: &str, e: SpiError) -> ! {
    pgrx::error!("pg_migsafe: internal query failed ({e}): {sql}")
}

/// The first column of the first row of a read-only query (None: NULL or no row).
pub fn one<T: FromDatum + IntoDatum>(
    who: As,
    sql: &'static str,
    args: &[DatumWithOid],
) -> Option<T> {
    with(who, || {
        match Spi::connect(|c| c.select(sql, Some(1), args)?.first().get_one::<T>()) {
            Ok(v) => v,
            Err(SpiError::InvalidPosition) => None,
            Err(e) => fail(sql, e),
        }
    })
}

/// The first column of the first row of a query that writes (a call of one of the
/// extension's functions that stores something).
pub fn call<T: FromDatum + IntoDatum>(
    who: As,
    sql: &'static str,
    args: &[DatumWithOid],
) -> Option<T> {
    with(who, || match Spi::get_one_with_args::<T>(sql, args) {
        Ok(v) => v,
        Err(SpiError::InvalidPosition) => None,
        Err(e) => fail(sql, e),
    })
}

/// The rows of a read-only query, handed to `f`.
pub fn select<R>(
    who: As,
    sql: &'static str,
    args: &[DatumWithOid],
    f: impl FnOnce(SpiTupleTable<'_>) -> Result<R, SpiError>,
) -> R {
    with(who, || {
        Spi::connect(|c| c.select(sql, None, args).and_then(f)).unwrap_or_else(|e| fail(sql, e))
    })
}

/// Runs a statement that writes (or calls a function that does).
pub fn run(who: As, sql: &'static str, args: &[DatumWithOid]) {
    with(who, || {
        Spi::connect_mut(|c| c.update(sql, None, args).map(|_| ())).unwrap_or_else(|e| fail(sql, e))
    })
}

/// Runs text built at run time. Only for statements whose variable parts are
/// identifiers quoted by PostgreSQL itself (`quote_identifier()`, `format('%I')`)
/// and values passed as `$n`: every caller names the origin of its text.
pub fn execute_built<R>(
    who: As,
    sql: &str,
    args: &[DatumWithOid],
    f: impl FnOnce(SpiTupleTable<'_>) -> Result<R, SpiError>,
) -> R {
    with(who, || {
        Spi::connect_mut(|c| c.update(sql, None, args).and_then(f)).unwrap_or_else(|e| fail(sql, e))
    })
}

/// Runs `f` in an internal subtransaction: an ERROR inside rolls back only what `f`
/// did and comes back as `Err(message)` (PL/pgSQL's EXCEPTION block, for the audit
/// writer, which must never stop at one bad record).
pub fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    use pgrx::pg_sys::panic::CaughtError;
    unsafe {
        let cxt = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cxt);
        let f = std::panic::AssertUnwindSafe(f);
        let r = pgrx::PgTryBuilder::new(move || {
            let f = f;
            Ok((f.0)())
        })
        .catch_others(|e| {
            Err(match e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
                    r.message().to_string()
                }
                CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
            })
        })
        .execute();
        pg_sys::MemoryContextSwitchTo(cxt);
        if r.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(cxt);
        pg_sys::CurrentResourceOwner = owner;
        r
    }
}

/// Runs `f` in a subtransaction that is rolled back whatever happens: what `f` returns
/// comes back, and nothing of it stays in the caller's transaction — not the locks it
/// took (nothing shows in `pg_locks`), not its writes (non-transactional effects such
/// as advancing a counter in shared memory stay). An error `f` raised is returned, for
/// the caller to retry or `rethrow()`.
pub fn rolled_back<R>(f: impl FnOnce() -> R) -> Result<R, Box<pgrx::pg_sys::panic::CaughtError>> {
    internal_subtransaction(f, false)
}

/// Runs `f` in a subtransaction that is kept when `f` returns (what it took, such as a
/// lock, passes to the caller's transaction) and rolled back when it raises an error,
/// which is returned for the caller to handle or `rethrow()`. Like `rolled_back`'s, the
/// subtransaction is pg_migsafe's own: its abort undoes none of the user's work, and
/// the features' subtransaction callbacks ignore it. `f` must not run user statements.
pub fn kept<R>(f: impl FnOnce() -> R) -> Result<R, Box<pgrx::pg_sys::panic::CaughtError>> {
    internal_subtransaction(f, true)
}

/// `rolled_back` and `kept`: `f` in an internal subtransaction, released when `f`
/// returned and `keep` says so, rolled back otherwise.
fn internal_subtransaction<R>(
    f: impl FnOnce() -> R,
    keep: bool,
) -> Result<R, Box<pgrx::pg_sys::panic::CaughtError>> {
    unsafe {
        let cxt = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cxt);
        // Until the rollback below has run its callbacks.
        let _internal = RestoreInternal(INTERNAL.replace(pg_sys::GetCurrentSubTransactionId()));
        let f = std::panic::AssertUnwindSafe(f);
        let r = pgrx::PgTryBuilder::new(move || {
            let f = f;
            Ok((f.0)())
        })
        .catch_others(|e| Err(Box::new(e)))
        .execute();
        pg_sys::MemoryContextSwitchTo(cxt);
        if keep && r.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(cxt);
        pg_sys::CurrentResourceOwner = owner;
        r
    }
}

thread_local! {
    /// The subtransaction `rolled_back` runs (0: none): its abort, and the aborts of
    /// subtransactions inside it, are no rollback of the user's work.
    static INTERNAL: std::cell::Cell<pg_sys::SubTransactionId> = const { std::cell::Cell::new(0) };
}

struct RestoreInternal(pg_sys::SubTransactionId);
impl Drop for RestoreInternal {
    fn drop(&mut self) {
        INTERNAL.set(self.0);
    }
}

/// Is this subtransaction one of pg_migsafe's own, rolled back to leave no trace (see
/// `rolled_back`)? The features' subtransaction callbacks ignore its abort: nothing of
/// the user's statement was undone.
pub fn internal_subxact(subid: pg_sys::SubTransactionId) -> bool {
    let i = INTERNAL.get();
    i != 0 && subid >= i
}

/// Sets a setting until the end of the current (sub)transaction.
pub fn set_local(name: &std::ffi::CStr, value: &std::ffi::CStr) {
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
    }
}

/// Sets a setting for the rest of the session (the audit writer's own connection:
/// whatever `ALTER DATABASE … SET` gave it, it runs with pinned names and no
/// timeouts of the database owner's choosing).
pub fn set_for_session(name: &std::ffi::CStr, value: &std::ffi::CStr) {
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            pg_sys::PGERROR as i32,
            false,
        );
    }
}

/// Reads a query's rows through a cursor, `batch` at a time, until `f` returns
/// Some (a large table without holding all of it in memory).
pub fn scan<R>(
    who: As,
    sql: &'static str,
    batch: i64,
    mut f: impl FnMut(SpiTupleTable<'_>) -> Option<R>,
) -> Option<R> {
    with(who, || {
        Spi::connect(|c| {
            let mut cursor = c.open_cursor(sql, &[]);
            loop {
                pgrx::check_for_interrupts!();
                let t = cursor.fetch(batch).unwrap_or_else(|e| fail(sql, e));
                if t.is_empty() {
                    return None;
                }
                if let Some(r) = f(t) {
                    return Some(r);
                }
            }
        })
    })
}
