//! Every PostgreSQL entry point of pg_migsafe in a backend, in one place: the
//! ProcessUtility, object_access and emit_log hooks, ONE transaction callback and ONE
//! subtransaction callback. The features (`hook`, `track`, `audit::backend`,
//! `recycle`, `autosnap`) install nothing; they expose plain functions that are called
//! from here, in the order written below, so "what runs at commit, and in what order?"
//! is answered by one screen. (Shared memory and the background workers are set up by
//! `audit::init`: they are the audit writer's, not a backend's.)
//!
//! Discipline (pgaudit's):
//! - every previous hook is saved in `init` and chained;
//! - the entry functions are not `#[pg_guard]`: an error raised by the next hook or by
//!   the statement itself must reach the client untouched, so no Rust value with a
//!   destructor is alive in these frames when the next hook runs; the features' parts
//!   that can fail run in `#[pg_guard]` functions of their own;
//! - a transaction event reaches the features in a fixed order:
//!   1. `autosnap` — at PRE_COMMIT it stores the automatic snapshot, whose id is final
//!      only then;
//!   2. `recycle` — at PRE_COMMIT it refuses to commit a dry run's approved work;
//!   3. `audit::backend` — at PRE_COMMIT it reads the snapshot id and Drizzle's hashes
//!      for the migration's end record, at COMMIT/ABORT/PREPARE it finishes the record;
//!   4. `track` — last, it forgets which objects are new in the transaction (the
//!      others may still ask before it does).
//!
//!   If one of them raises an ERROR at PRE_COMMIT, the rest do not see that event; all
//!   of them then see ABORT.
//! - a subtransaction abort reaches them in the same order, except that pg_migsafe's
//!   own internal subtransaction (the snapshot read, `spi::rolled_back`) is no user
//!   rollback and reaches none of them.

use pgrx::pg_sys;
use std::ffi::c_char;

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_OBJECT_ACCESS: pg_sys::object_access_hook_type = None;
static mut PREV_EMIT_LOG: pg_sys::emit_log_hook_type = None;

/// Installs every hook and callback; called once from `_PG_init`.
pub fn init() {
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(migsafe_process_utility);
        PREV_OBJECT_ACCESS = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(migsafe_object_access);
        PREV_EMIT_LOG = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(migsafe_emit_log);
        pg_sys::RegisterXactCallback(Some(migsafe_xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(migsafe_subxact_callback), std::ptr::null_mut());
    }
}

// ------------------------------------------------------------------ ProcessUtility

#[cfg(not(feature = "pg13"))]
unsafe extern "C-unwind" {
    #[link_name = "standard_ProcessUtility"]
    fn raw_standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

#[cfg(feature = "pg13")]
unsafe extern "C-unwind" {
    #[link_name = "standard_ProcessUtility"]
    fn raw_standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const c_char,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

/// The DDL guard (`hook`) before and after the statement; the next hook (or the
/// standard one) in between. When the guard carried the statement out itself (an
/// approved DROP TABLE moved to the recycle bin), the chain gets the same DROP naming
/// no object: pgaudit and event triggers see a DROP TABLE, and nothing else is dropped.
#[cfg(not(feature = "pg13"))]
unsafe extern "C-unwind" fn migsafe_process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // Plain values only in this frame: errors longjmp through it.
    let mut token: usize = 0;
    let mut lock_watch = false;
    let carried_out =
        crate::hook::before_statement(pstmt, query_string, context, &mut token, &mut lock_watch);
    // Carried out by the recycle bin: the rest of the chain sees the DROP, naming
    // nothing (see `stmt::kind::dropping_nothing`).
    let (pstmt, read_only_tree) = match carried_out {
        false => (pstmt, read_only_tree),
        true => match crate::stmt::kind::dropping_nothing(pstmt) {
            Some(p) => (p, true),
            None => (std::ptr::null_mut(), true),
        },
    };
    if !pstmt.is_null() {
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
            None => raw_standard_process_utility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
    crate::hook::after_statement(token, lock_watch);
}

#[cfg(feature = "pg13")]
unsafe extern "C-unwind" fn migsafe_process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // Plain values only in this frame: errors longjmp through it.
    let mut token: usize = 0;
    let mut lock_watch = false;
    let carried_out =
        crate::hook::before_statement(pstmt, query_string, context, &mut token, &mut lock_watch);
    let pstmt = match carried_out {
        false => pstmt,
        true => crate::stmt::kind::dropping_nothing(pstmt).unwrap_or(std::ptr::null_mut()),
    };
    if !pstmt.is_null() {
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(pstmt, query_string, context, params, query_env, dest, qc),
            None => raw_standard_process_utility(
                pstmt,
                query_string,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
    crate::hook::after_statement(token, lock_watch);
}

// ------------------------------------------------------------------ object_access

/// Which objects are new in the transaction (`track`), then what the open statement
/// creates, alters or drops (the audit record), then the next hook. Neither part
/// raises an error.
unsafe extern "C-unwind" fn migsafe_object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: i32,
    arg: *mut std::ffi::c_void,
) {
    crate::track::on_object_access(access, class_id, object_id, sub_id);
    // The recycle bin's own DDL is not the user's: the statement notes the move itself.
    if !crate::recycle::internal() {
        crate::audit::backend::object_access(access, class_id, object_id, sub_id);
    }
    if let Some(prev) = PREV_OBJECT_ACCESS {
        prev(access, class_id, object_id, sub_id, arg);
    }
}

// ------------------------------------------------------------------ emit_log

/// The audit's part (a failing statement's record is spooled before the client sees
/// the error; a lock timeout gets its DETAIL), then the next hook.
unsafe extern "C-unwind" fn migsafe_emit_log(edata: *mut pg_sys::ErrorData) {
    crate::audit::backend::on_emit_log(edata);
    if let Some(prev) = PREV_EMIT_LOG {
        prev(edata);
    }
}

// ------------------------------------------------------------------ transactions

unsafe extern "C-unwind" fn migsafe_xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    // The automatic snapshot is stored first: the audit's end record names it.
    let snapshot = crate::autosnap::on_xact(event);
    crate::recycle::on_xact(event);
    crate::audit::backend::on_xact(event, snapshot);
    if event == pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT {
        work_pre_commit();
    }
    crate::track::on_xact(event);
    crate::stmt::partition::on_xact(event);
}

/// The work objects a maintenance tool created (see `work`), recorded before commit.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn work_pre_commit() {
    crate::work::on_pre_commit();
}

unsafe extern "C-unwind" fn migsafe_subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event != pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB
        || crate::spi::internal_subxact(my_subid)
    {
        return;
    }
    crate::autosnap::on_subxact_abort(my_subid);
    crate::stmt::partition::on_subxact_abort(my_subid);
    crate::recycle::on_subxact_abort(my_subid);
    crate::audit::backend::on_subxact_abort(my_subid);
    crate::track::on_subxact_abort(my_subid);
}
