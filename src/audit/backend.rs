//! The backend side of the audit log: statements and migrations as they happen.
//!
//! The hook opens a statement record before the statement runs (`begin`) and closes it
//! when the statement returns (`end_ok`). A statement that raises an error never returns
//! to the hook: its record is closed by the (sub)transaction abort callback with the
//! SQLSTATE and message that `emit_log_hook` saw. A migration is the top-level
//! transaction around the statements: it starts with the first recorded statement
//! (spooled to disk before that statement runs, so that a SIGKILL leaves a trace) and
//! ends at commit, prepare or abort. Every record is written to the backend's spool
//! file first (`spool`: what a client was told is on disk before it was told), then
//! queued for the database's writer in shared memory, or in the backlog on disk when
//! shared memory cannot take it (`backlog`); nothing here waits for the writer, and
//! nothing in the commit and abort callbacks touches the catalog or can raise an error.

use super::{backlog, queue, spool};
use crate::engine::audit::{
    blockers_detail, cut_statement, iso_time, Blocker, DecisionKind, FindingRecord, MigrationEnd,
    MigrationOutcome, MigrationStart, PhaseEvent, PhaseRef, Record, Session, Statement,
    StatementOutcome,
};
use crate::engine::audit::{lock_conflicts, lock_mode, LOCK_MODES};
use crate::engine::lockretry::{self, Attempt};
use crate::engine::phase::PhaseKind;
use crate::engine::policy::Finding;
use crate::guc;
use crate::pgutil::{cstr, now_unix_us, qualified, quote, relkind_word, role_name};
use crate::spi::{self, As};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::ffi::CString;

struct Mig {
    key: String,
    started_us: i64,
    dboid: Oid,
    session: Session,
    statements: u32,
    refused: u32,
    failed: u32,
    name: Option<String>,
    phases: Vec<PhaseRef>,
    running: Option<usize>,
    drizzle: Vec<String>,
    xid: Option<u64>,
    snapshot: Option<i64>,
}

#[derive(Clone)]
struct Open {
    n: u32,
    /// The statement carries credentials (its text was redacted): its error message,
    /// which may quote them, is not recorded.
    credentials: bool,
    started_us: i64,
    subxact: pg_sys::SubTransactionId,
    nesting: u32,
    session: Session,
    tag: String,
    text: String,
    truncated: bool,
    bytes: usize,
    findings: Vec<FindingRecord>,
    decision: DecisionKind,
    phase_id: Option<i64>,
    lock_wait_us: Option<i64>,
    blockers: Vec<Blocker>,
    applied_lock_timeout: Option<i32>,
    attempts: Vec<Attempt>,
    attempts_total: u32,
    retry_exhausted: bool,
    created: Vec<(Oid, Oid, i32)>,
    names: Vec<String>,
}

#[derive(Default)]
struct State {
    mig: Option<Mig>,
    open: Vec<Open>,
    last_error: Option<(String, String)>,
    /// Records that belong to the transaction's outcome (phase events, an upgrade):
    /// queued when it commits, dropped when it rolls back.
    pending_events: Vec<Record>,
    next_name: Option<String>,
    phase_cache: Option<(u64, Oid, Oid, i64, Vec<PhaseRef>)>,
}

/// The heavy lock a running statement waits for: what the lock-timeout DETAIL says.
struct LockNote {
    object: String,
    mode: String,
    applied_ms: Option<i32>,
    blockers: Vec<Blocker>,
}

thread_local! {
    /// The database in which the extension was found (a backend stays in one).
    static EXTENSION_DB: Cell<Oid> = const { Cell::new(pg_sys::InvalidOid) };
    static LOCK_NOTE: RefCell<Option<LockNote>> = const { RefCell::new(None) };
    /// LockTimeout before pg_migsafe applied migsafe.lock_timeout (restored after the
    /// statement, or when its (sub)transaction aborts).
    static SAVED_LOCK_TIMEOUT: Cell<Option<i32>> = const { Cell::new(None) };
    static STATE: RefCell<State> = RefCell::new(State::default());
    /// Open statements: read by the object_access and emit_log hooks without borrowing.
    static OPEN: Cell<usize> = const { Cell::new(0) };
    /// Time the transaction spent retrying locks (µs): `migsafe.lock_retry_budget`
    /// counts for the whole transaction.
    static RETRY_SPENT: Cell<i64> = const { Cell::new(0) };
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    STATE.with(|s| s.try_borrow_mut().ok().map(|mut s| f(&mut s)))
}

/// application_name and the client address, from the backend's status entry.
#[cfg(not(feature = "pg13"))]
unsafe fn app_and_addr() -> (Option<String>, Option<String>) {
    if pg_sys::MyBEEntry.is_null() {
        (cstr(pg_sys::application_name), None)
    } else {
        let be = &*pg_sys::MyBEEntry;
        (
            cstr(be.st_appname).or_else(|| cstr(pg_sys::application_name)),
            client_addr(&be.st_clientaddr),
        )
    }
}

/// PostgreSQL 13's bindings lack the status entry: the client address is not known.
#[cfg(feature = "pg13")]
unsafe fn app_and_addr() -> (Option<String>, Option<String>) {
    (cstr(pg_sys::application_name), None)
}

fn session_info() -> Session {
    unsafe {
        let (app, addr) = app_and_addr();
        Session {
            database: cstr(pg_sys::get_database_name(pg_sys::MyDatabaseId)).unwrap_or_default(),
            session_user: role_name(pg_sys::GetSessionUserId()),
            current_user: role_name(pg_sys::GetUserId()),
            application_name: app.filter(|a| !a.is_empty()),
            client_addr: addr,
            pid: pg_sys::MyProcPid,
        }
    }
}

/// The client's IP address (None for a Unix-socket or background connection).
#[cfg(not(feature = "pg13"))]
fn client_addr(a: &pg_sys::SockAddr) -> Option<String> {
    let p = &a.addr as *const _ as *const u8;
    let family = unsafe { *(p as *const u16) } as i32;
    unsafe {
        match family {
            2 => {
                let b = std::slice::from_raw_parts(p.add(4), 4);
                Some(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
            }
            10 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(std::slice::from_raw_parts(p.add(8), 16));
                Some(std::net::Ipv6Addr::from(b).to_string())
            }
            _ => None,
        }
    }
}

/// Is the audit log on for this session's database?
fn audit_here() -> bool {
    if !guc::AUDIT.get() || queue::header().is_none() {
        return false;
    }
    unsafe {
        // Other extensions' background workers (pg_cron's jobs, pg_partman's
        // maintenance) run DDL for their users: recorded like a session's. pg_migsafe's
        // own workers are not (the audit writer never queues into the log it writes).
        if pg_sys::IsInParallelMode() || own_worker() {
            return false;
        }
        // Found once, it stays (dropping the extension is refused; if it happens in
        // mode off, the writer finds no log table and uses the server log).
        if EXTENSION_DB.get() == pg_sys::MyDatabaseId {
            return true;
        }
        let found = pg_sys::get_extension_oid(c"pg_migsafe".as_ptr(), true) != pg_sys::InvalidOid;
        if found {
            EXTENSION_DB.set(pg_sys::MyDatabaseId);
        }
        found
    }
}

/// Is this process one of pg_migsafe's background workers?
unsafe fn own_worker() -> bool {
    let e = pg_sys::MyBgworkerEntry;
    !e.is_null()
        && std::ffi::CStr::from_ptr((*e).bgw_library_name.as_ptr()).to_bytes() == b"pg_migsafe"
}

/// Called by the hook (inside its guarded classification) before a classified
/// statement runs. Returns a token for `end_ok`, or 0 when nothing is recorded.
/// `nested`: a function or a DO block runs it (the client did not send it).
pub fn begin(
    pstmt: *mut pg_sys::PlannedStmt,
    nested: bool,
    text: &str,
    credentials: bool,
    findings: &[Finding],
    decision: DecisionKind,
    approved_by: Option<(i64, String)>,
) -> usize {
    let phase_id = approved_by.as_ref().map(|p| p.0);
    let stmt = unsafe { (*pstmt).utilityStmt };
    unsafe { release_databases(stmt) };
    let has_mig = with(|s| s.mig.is_some()).unwrap_or(false);
    if !has_mig && !audit_here() {
        return 0;
    }
    let now = now_unix_us();
    if !has_mig {
        start_migration(now, text);
    }
    let tag = unsafe { cstr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(stmt))) }
        .unwrap_or_default();
    let max = (guc::AUDIT_MAX_STATEMENT_BYTES.get().max(256) as usize).min(
        queue::header()
            .map(|h| h.ring_size as usize / 4)
            .unwrap_or(65536),
    );
    let text = text.trim();
    let (cut, truncated) = cut_statement(text, max);
    // The migration's session facts; only the current user can change in between.
    let cached = with(|s| s.mig.as_ref().map(|m| m.session.clone())).flatten();
    let session = match cached {
        Some(mut s) => {
            s.current_user = role_name(unsafe { pg_sys::GetUserId() });
            s
        }
        None => session_info(),
    };
    let frs = findings
        .iter()
        .map(|f| FindingRecord {
            rule: f.rule.id.to_string(),
            severity: format!("{:?}", f.rule.severity).to_lowercase(),
            object: f.object.clone(),
        })
        .collect();
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let token = with(|s| {
        let mig = s.mig.as_mut()?;
        mig.statements += 1;
        if decision == DecisionKind::Refused {
            mig.refused += 1;
        }
        if let Some((id, name)) = approved_by {
            if !mig.phases.iter().any(|x| x.id == id) {
                mig.phases.push(PhaseRef {
                    id,
                    kind: "contract".into(),
                    name,
                });
            }
        }
        let n = mig.statements;
        // DDL statements open around it, plus one when a function or a DO block runs it.
        let nesting = s.open.len() as u32 + u32::from(nested);
        s.open.push(Open {
            n,
            credentials,
            started_us: now,
            subxact,
            nesting,
            session,
            tag,
            text: cut,
            truncated,
            bytes: text.len(),
            findings: frs,
            decision,
            phase_id,
            lock_wait_us: None,
            blockers: vec![],
            applied_lock_timeout: None,
            attempts: vec![],
            attempts_total: 0,
            retry_exhausted: false,
            created: vec![],
            names: vec![],
        });
        OPEN.set(s.open.len());
        Some(s.open.len())
    })
    .flatten()
    .unwrap_or(0);
    token
}

/// The statement returned: record it.
pub fn end_ok(token: usize) {
    let Some(Some(mut o)) = with(|s| {
        if s.open.len() != token {
            return None;
        }
        let o = s.open.pop();
        OPEN.set(s.open.len());
        o
    }) else {
        return;
    };
    let now = now_unix_us();
    describe_created(&mut o);
    let xid = unsafe { pg_sys::GetTopFullTransactionIdIfAny().value };
    let rec = with(|s| {
        let mig = s.mig.as_mut()?;
        if xid != 0 {
            mig.xid = Some(xid);
        }
        Some(statement_record(mig, o, now, StatementOutcome::Ok, None))
    })
    .flatten();
    if let Some((dboid, r)) = rec {
        queue_record(dboid, &r);
    }
}

fn statement_record(
    mig: &Mig,
    o: Open,
    now: i64,
    outcome: StatementOutcome,
    err: Option<(String, String)>,
) -> (Oid, Record) {
    let mut objects: Vec<String> = o.names;
    for f in &o.findings {
        if !objects.contains(&f.object) {
            objects.push(f.object.clone());
        }
    }
    let (sqlstate, error) = match err {
        Some((c, m)) => (Some(c), Some(m)),
        None => (None, None),
    };
    (
        mig.dboid,
        Record::Statement(Statement {
            migration: mig.key.clone(),
            n: o.n,
            started_at: iso_time(o.started_us),
            duration_us: now - o.started_us,
            lock_wait_us: o.lock_wait_us,
            session: o.session,
            xid: mig.xid,
            command_tag: o.tag,
            statement: o.text,
            statement_truncated: o.truncated,
            statement_bytes: o.bytes,
            nesting: o.nesting,
            objects,
            findings: o.findings,
            decision: o.decision,
            phase_id: o.phase_id,
            outcome,
            sqlstate,
            error,
            lock_timeout_ms: o.applied_lock_timeout,
            blockers: o.blockers,
            lock_attempts: o.attempts,
            lock_attempts_total: o.attempts_total,
            lock_retry_exhausted: o.retry_exhausted,
        }),
    )
}

/// Spools a record, then queues it for the writer: in the database's ring, or in the
/// backlog on disk when the ring cannot take it; the server log only when neither can.
fn queue_record(dboid: Oid, r: &Record) -> bool {
    // A record always fits the queue: whatever a session puts into it (a long
    // migration name, a DROP of thousands of tables), it is shrunk, never refused.
    let max = queue::header()
        .map(|h| h.ring_size as usize / 2)
        .unwrap_or(1 << 20);
    let json = crate::engine::audit::record_json(r, max);
    if unsafe { pg_sys::RecoveryInProgress() } {
        // A standby cannot write its log (it replicates the primary's): the server
        // log keeps what happened here, one line per record.
        unsafe {
            let line = CString::new(format!("pg_migsafe_audit_standby {json}")).unwrap_or_default();
            crate::report::log_server_only(&line);
        }
        return true;
    }
    spool::append(u32::from(dboid), &json);
    let why = match queue::enqueue(dboid, json.as_bytes()) {
        Ok((slot, pos)) => {
            spool::queued(slot, pos);
            return true;
        }
        Err(why) => why,
    };
    if why != queue::NotQueued::NoSharedMemory && backlog::append(u32::from(dboid), &json).is_ok() {
        if let Some(h) = queue::header() {
            h.spilled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            wake_launcher(h);
        }
        return true;
    }
    if let Some(h) = queue::header() {
        h.fallback
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // LOG_SERVER_ONLY: the server log, never the client.
    unsafe {
        let line = CString::new(format!("pg_migsafe_audit_fallback reason={why:?} {json}"))
            .unwrap_or_default();
        crate::report::log_server_only(&line);
    }
    false
}

/// The launcher gives a database with a backlog a writer within a second; a backend
/// that spills wakes it sooner (at most every 100 ms, not per record).
fn wake_launcher(h: &queue::Header) {
    thread_local! {
        static LAST: Cell<i64> = const { Cell::new(0) };
    }
    let now = now_unix_us();
    if now - LAST.get() < 100_000 {
        return;
    }
    LAST.set(now);
    if !h.launcher_latch.is_null() {
        unsafe { pg_sys::SetLatch(h.launcher_latch) };
    }
}

fn start_migration(now: i64, first: &str) {
    let dboid = unsafe { pg_sys::MyDatabaseId };
    let session = session_info();
    let key = format!("{}-{}", now, session.pid);
    let phases = session_phase_refs();
    let name = with(|s| s.next_name.take()).flatten();
    let start = MigrationStart {
        migration: key.clone(),
        started_at: iso_time(now),
        session: session.clone(),
        name: name.clone(),
        phases: phases.clone(),
        first_statement: cut_statement(first, 4096).0,
    };
    let rec = Record::MigrationStart(start);
    let json = rec.to_json();
    // On disk before the statement runs: survives a SIGKILL of this backend. The
    // spool file starts anew when the log holds everything it had.
    if !unsafe { pg_sys::RecoveryInProgress() } {
        spool::begin(u32::from(dboid), &json);
    }
    // The start record itself is not queued: a migration that ends soon carries its
    // start in its end record, and a writer stores the start of one that runs on
    // (after a second, from the spool file) or never finishes (after a crash).
    let running = queue::running_add(dboid, &key, now);
    with(|s| {
        s.mig = Some(Mig {
            key,
            started_us: now,
            dboid,
            session,
            statements: 0,
            refused: 0,
            failed: 0,
            name,
            phases,
            running,
            drizzle: vec![],
            xid: None,
            snapshot: None,
        })
    });
}

/// The phases open for this session (an expand phase tags the migrations that follow),
/// cached until a phase changes anywhere (a counter in shared memory) or 5 s pass.
fn session_phase_refs() -> Vec<PhaseRef> {
    let gen = queue::header()
        .map(|h| {
            h.phase_generation
                .load(std::sync::atomic::Ordering::Acquire)
        })
        .unwrap_or(0);
    let (su, cu) = unsafe { (pg_sys::GetSessionUserId(), pg_sys::GetUserId()) };
    let now = now_unix_us();
    if let Some(Some(v)) = with(|s| {
        s.phase_cache
            .as_ref()
            .filter(|c| c.0 == gen && c.1 == su && c.2 == cu && now < c.3)
            .map(|c| c.4.clone())
    }) {
        return v;
    }
    if !crate::phase::available() {
        return vec![];
    }
    // A standing approval is a policy, not a migration's phase: not a statement's.
    let v: Vec<PhaseRef> = crate::phase::session_phases()
        .into_iter()
        .filter_map(|(p, _)| {
            let kind = match p.kind {
                PhaseKind::Expand => "expand",
                PhaseKind::Contract => "contract",
                PhaseKind::Standing => return None,
            };
            Some(PhaseRef {
                id: p.id,
                kind: kind.into(),
                name: p.name,
            })
        })
        .collect();
    with(|s| s.phase_cache = Some((gen, su, cu, now + 5_000_000, v.clone())));
    v
}

/// `migsafe.set_migration_name()`: names the current (or next) migration of this transaction.
pub fn set_migration_name(name: String) {
    with(|s| match s.mig.as_mut() {
        Some(m) => m.name = Some(name),
        None => s.next_name = Some(name),
    });
}

/// The phase_event trigger: a phase changed; recorded when the transaction commits.
pub fn phase_event(e: PhaseEvent) {
    with(|s| s.pending_events.push(Record::PhaseEvent(e)));
}

/// `ALTER EXTENSION pg_migsafe UPDATE`: recorded when the transaction commits.
pub fn upgrade_event(u: crate::engine::audit::Upgrade) {
    with(|s| s.pending_events.push(Record::Upgrade(u)));
}

/// Running migrations of this cluster (for the views).
pub fn running_keys() -> Vec<(String, i32, i64)> {
    queue::running_list(None)
        .into_iter()
        .map(|r| (r.key, r.pid, r.started_us))
        .collect()
}

// ------------------------------------------------------------------ objects

/// From the object_access_hook (not guarded, must not raise): notes objects the open
/// statement creates, alters or drops. Drops are described now, while they exist.
/// (`hooks` does not call it for the recycle bin's own DDL, which is not the user's:
/// the statement notes the move itself.)
pub unsafe fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class: Oid,
    obj: Oid,
    sub: i32,
) {
    if OPEN.get() == 0 {
        return;
    }
    use pg_sys::ObjectAccessType::*;
    match access {
        OAT_POST_CREATE | OAT_POST_ALTER => {
            with(|s| {
                if let Some(o) = s.open.last_mut() {
                    if o.created.len() < 100 && !o.created.contains(&(class, obj, sub)) {
                        o.created.push((class, obj, sub));
                    }
                }
            });
        }
        OAT_DROP => describe_dropped(class, obj, sub),
        _ => {}
    }
}

/// Relations and their columns only: other objects being dropped may already have
/// lost what their description needs (a function's argument types, say), and a
/// description must never fail the user's statement. Plain syscache lookups.
#[pg_guard]
unsafe extern "C-unwind" fn describe_dropped(class: Oid, obj: Oid, sub: i32) {
    if class != pg_sys::RelationRelationId {
        return;
    }
    let Some(d) = describe_relation(obj, sub).map(|d| format!("{d} (dropped)")) else {
        return;
    };
    with(|s| {
        if let Some(o) = s.open.last_mut() {
            if o.names.len() < 100 && !o.names.contains(&d) {
                o.names.push(d);
            }
        }
    });
}

/// Notes an object the open statement affected in a way the object access hook does
/// not show (a table moved to the recycle bin instead of dropped).
pub fn note_object(d: String) {
    with(|s| {
        if let Some(o) = s.open.last_mut() {
            if o.names.len() < 100 && !o.names.contains(&d) {
                o.names.push(d);
            }
        }
    });
}

fn describe_created(o: &mut Open) {
    let ids = std::mem::take(&mut o.created);
    for (c, i, s) in ids {
        if let Some(d) = unsafe { describe(c, i, s) } {
            if !o.names.contains(&d) {
                o.names.push(d);
            }
        }
    }
}

/// `table public.t`, `column public.t.c`, … named like the classifier names them
/// (syscache lookups only); None for toast relations and what no longer resolves.
unsafe fn describe_relation(obj: Oid, sub: i32) -> Option<String> {
    let nsp = pg_sys::get_rel_namespace(obj);
    if nsp == pg_sys::InvalidOid || u32::from(nsp) == pg_sys::PG_TOAST_NAMESPACE {
        return None;
    }
    let rel = qualified(nsp, &cstr(pg_sys::get_rel_name(obj))?);
    if sub > 0 {
        let col = cstr(pg_sys::get_attname(obj, sub as i16, true))?;
        return Some(format!("column {rel}.{}", quote(&col)));
    }
    Some(format!(
        "{} {rel}",
        relkind_word(pg_sys::get_rel_relkind(obj))
    ))
}

/// A description of the objects worth listing (not toast tables, row types, array
/// types, defaults, view rules and other implementation parts). Relations and columns
/// come straight from the syscache; the rest through getObjectIdentity.
unsafe fn describe(class: Oid, obj: Oid, sub: i32) -> Option<String> {
    let c = u32::from(class);
    if class == pg_sys::RelationRelationId {
        return describe_relation(obj, sub);
    }
    let keep = if c == u32::from(pg_sys::TypeRelationId) {
        matches!(pg_sys::get_typtype(obj) as u8, b'e' | b'd' | b'r' | b'm')
    } else {
        c == u32::from(pg_sys::NamespaceRelationId)
            || c == u32::from(pg_sys::ProcedureRelationId)
            || c == u32::from(crate::pgutil::catalog::CONSTRAINT)
            || c == u32::from(pg_sys::TriggerRelationId)
            || c == u32::from(crate::pgutil::catalog::POLICY)
            || c == u32::from(pg_sys::ExtensionRelationId)
    };
    if !keep {
        return None;
    }
    let addr = pg_sys::ObjectAddress {
        classId: class,
        objectId: obj,
        objectSubId: sub,
    };
    #[cfg(feature = "pg13")]
    let (kind, ident) = (
        pg_sys::getObjectTypeDescription(&addr),
        pg_sys::getObjectIdentity(&addr),
    );
    #[cfg(not(feature = "pg13"))]
    let (kind, ident) = (
        pg_sys::getObjectTypeDescription(&addr, true),
        pg_sys::getObjectIdentity(&addr, true),
    );
    Some(format!("{} {}", cstr(kind)?, cstr(ident)?))
}

// ------------------------------------------------------------ lock safety

/// Before a statement that takes a heavy lock on an existing table: apply
/// migsafe.lock_timeout when lock_timeout is 0, and if the lock is not free, name the
/// sessions holding it (and, for the table's owner, wait for it here to time the wait).
/// Returns true when the hook must call `lock_safety_end` after the statement.
#[pg_guard]
pub unsafe extern "C-unwind" fn lock_safety(stmt: *mut pg_sys::Node) -> bool {
    // A statement that cannot write fails with PostgreSQL's read-only error; on a
    // standby no heavy lock can even be tried.
    if !crate::pgutil::transaction_writable() {
        return false;
    }
    let Some((relid, mode)) = crate::stmt::locks::heavy_target(stmt) else {
        return false;
    };
    if crate::track::is_new(pg_sys::RelationRelationId, relid, 0) {
        return false;
    }
    let configured = guc::LOCK_TIMEOUT.get();
    let applied =
        if pg_sys::LockTimeout == 0 && configured > 0 && SAVED_LOCK_TIMEOUT.get().is_none() {
            SAVED_LOCK_TIMEOUT.set(Some(pg_sys::LockTimeout));
            pg_sys::LockTimeout = configured;
            Some(configured)
        } else {
            None
        };
    with(|s| {
        if let Some(o) = s.open.last_mut() {
            o.applied_lock_timeout = applied;
        }
    });
    let retry = applied.is_some() && guc::LOCK_RETRY_BUDGET.get() > 0 && owns(relid);
    // With retries, the referenced tables of the foreign keys it adds are taken in the
    // same try, where the role could lock them anyway (it owns them, or holds
    // REFERENCES on them, which is what the statement needs).
    let mut targets = vec![(relid, mode)];
    if retry {
        for (r, m) in crate::stmt::locks::also_locked(stmt) {
            if r != relid && !crate::track::is_new(pg_sys::RelationRelationId, r, 0) && may_lock(r)
            {
                targets.push((r, m));
            }
        }
    }
    let busy: Vec<(Oid, pg_sys::LOCKMODE)> = targets
        .iter()
        .copied()
        .filter(|&(r, m)| {
            if pg_sys::ConditionalLockRelationOid(r, m) {
                pg_sys::UnlockRelationOid(r, m);
                false
            } else {
                true
            }
        })
        .collect();
    let Some(&(wait_rel, wait_mode)) = busy.first() else {
        with(|s| {
            if let Some(o) = s.open.last_mut() {
                o.lock_wait_us = Some(0);
            }
        });
        return true;
    };
    let blockers = blockers_of(wait_rel, wait_mode as usize);
    with(|s| {
        if let Some(o) = s.open.last_mut() {
            o.blockers = blockers.clone();
        }
    });
    LOCK_NOTE.with(|n| {
        *n.borrow_mut() = Some(LockNote {
            object: table_name(wait_rel),
            mode: LOCK_MODES[wait_mode as usize - 1].to_string(),
            applied_ms: applied,
            blockers,
        })
    });
    if let (true, Some(timeout)) = (retry, applied) {
        retry_lock(&targets, timeout, guc::LOCK_RETRY_BUDGET.get());
        return true;
    }
    if owns(relid) {
        // Wait here (under the statement's lock_timeout) so that the wait is timed;
        // the statement then finds the lock already held by its transaction.
        let t0 = now_unix_us();
        pg_sys::LockRelationOid(relid, mode);
        let waited = now_unix_us() - t0;
        with(|s| {
            if let Some(o) = s.open.last_mut() {
                o.lock_wait_us = Some(waited);
            }
        });
    }
    true
}

/// "table schema.name"
unsafe fn table_name(relid: Oid) -> String {
    format!(
        "table {}",
        qualified(
            pg_sys::get_rel_namespace(relid),
            &cstr(pg_sys::get_rel_name(relid)).unwrap_or_default()
        )
    )
}

/// May the role queue for a lock on this table (it owns it, or holds REFERENCES on it)?
unsafe fn may_lock(relid: Oid) -> bool {
    owns(relid)
        || pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), pg_sys::ACL_REFERENCES as _)
            == pg_sys::AclResult::ACLCHECK_OK
}

/// Takes the statement's table locks under `migsafe.lock_timeout`, and when that runs
/// out, lets go of the lock queue, pauses (exponential backoff with jitter) and tries
/// again, until the transaction's `migsafe.lock_retry_budget` is spent. Each try runs
/// in an internal subtransaction that holds nothing but the lock requests (all the
/// statement's tables, in the order the server takes them): a failed one is rolled
/// back (no other session queues behind it any more, and no table is held while the
/// next try waits), a successful one hands the locks to the transaction, and the
/// statement then runs without waiting for them. Only pg_migsafe's own timeout is
/// retried: a deadlock, a cancel or statement_timeout ends the statement as it would
/// have.
unsafe fn retry_lock(targets: &[(Oid, pg_sys::LOCKMODE)], lock_timeout_ms: i32, budget_ms: i32) {
    use std::time::Instant;
    let budget_us = budget_ms as i64 * 1000;
    let spent_before = RETRY_SPENT.get();
    let started = Instant::now();
    let us = |since: Instant| since.elapsed().as_micros() as i64;
    let cancel_after_ms = guc::CANCEL_BLOCKERS_AFTER.get();
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut total: u32 = 0;
    let mut waited_all: i64 = 0;
    let record = |attempts: &[Attempt], total: u32, waited: i64, exhausted: bool| {
        with(|s| {
            if let Some(o) = s.open.last_mut() {
                o.attempts = attempts.to_vec();
                o.attempts_total = total;
                o.lock_wait_us = Some(waited);
                o.retry_exhausted = exhausted;
            }
        });
    };
    let keep = |attempts: &mut Vec<Attempt>, a: Attempt| -> bool {
        let kept = attempts.len() < lockretry::ATTEMPTS_RECORDED;
        if kept {
            attempts.push(a);
        }
        kept
    };
    loop {
        let remaining = budget_us - RETRY_SPENT.get();
        // A statement that finds the budget spent by earlier ones still gets one try.
        let timeout = match lockretry::attempt_timeout_ms(lock_timeout_ms, remaining) {
            Some(t) => t,
            None if total == 0 => 1,
            None => break,
        };
        total += 1;
        pg_sys::LockTimeout = timeout;
        let at = Cell::new(0usize);
        let t0 = Instant::now();
        let r = crate::spi::kept(|| {
            for (i, &(r, m)) in targets.iter().enumerate() {
                at.set(i);
                pg_sys::LockRelationOid(r, m);
            }
        });
        let waited = us(t0);
        pg_sys::LockTimeout = lock_timeout_ms;
        RETRY_SPENT.set(RETRY_SPENT.get() + waited);
        waited_all += waited;
        let mut a = Attempt {
            waited_us: waited,
            acquired: r.is_ok(),
            ..Default::default()
        };
        match r {
            Ok(()) => {
                keep(&mut attempts, a);
                record(&attempts, total, waited_all, false);
                // The DETAIL of a later lock timeout (a partition, an index) must not
                // name this wait.
                LOCK_NOTE.with(|n| *n.borrow_mut() = None);
                return;
            }
            Err(e) if is_lock_timeout(&e) => {}
            Err(e) => {
                keep(&mut attempts, a);
                record(&attempts, total, waited_all, false);
                e.rethrow();
            }
        }
        // Who held the table the try waited for.
        let (rel, mode) = targets[at.get()];
        a.waited_for = Some(format!(
            "{} on {}",
            LOCK_MODES[mode as usize - 1],
            table_name(rel)
        ));
        a.blockers = blockers_of(rel, mode as usize);
        let remaining = budget_us - RETRY_SPENT.get();
        let random = lockretry::mix(
            started.elapsed().as_nanos() as u64 ^ ((pg_sys::MyProcPid as u64) << 32),
        );
        let Some(pause) = lockretry::next_pause_us(total, random, remaining, lock_timeout_ms)
        else {
            // No room for another try: no pause either.
            keep(&mut attempts, a);
            break;
        };
        // Another try follows: it finds out whether ending the blockers freed the table.
        if cancel_after_ms > 0 && us(started) >= cancel_after_ms as i64 * 1000 {
            a.ended = end_idle_blockers(rel, &a.blockers, cancel_after_ms);
        }
        // Recorded before the pause: a cancel or statement_timeout during it keeps it.
        let kept = keep(&mut attempts, a);
        record(&attempts, total, waited_all, false);
        let t0 = Instant::now();
        sleep_us(pause);
        let slept = us(t0);
        RETRY_SPENT.set(RETRY_SPENT.get() + slept);
        waited_all += slept;
        if let (true, Some(last)) = (kept, attempts.last_mut()) {
            last.slept_us = slept;
        }
        record(&attempts, total, waited_all, false);
    }
    record(&attempts, total, waited_all, true);
    let r = lockretry::exhausted_report(
        &attempts,
        total as usize,
        waited_all,
        budget_ms,
        spent_before,
        lock_timeout_ms,
    );
    drop(attempts);
    // Raised by unwinding (pgrx turns it into the ERROR at this function's guard), so
    // that every Rust value on the way is dropped; the DETAIL is ours (lock_detail
    // leaves an error that has one alone).
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
        r.message,
        "pg_migsafe",
    )
    .set_detail(r.detail)
    .set_hint(r.hint)
    .report(PgLogLevel::ERROR);
}

/// pg_migsafe's own lock_timeout ran out (not a NOWAIT, a deadlock or a cancel): the
/// timeout's error is raised by ProcessInterrupts, NOWAIT's by the lock manager.
fn is_lock_timeout(e: &pgrx::pg_sys::panic::CaughtError) -> bool {
    use pgrx::pg_sys::panic::CaughtError;
    match e {
        CaughtError::PostgresError(r) => {
            r.sql_error_code() == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
                && r.function_name() == Some("ProcessInterrupts")
        }
        _ => false,
    }
}

/// Sleeps on the process latch, answering interrupts (a cancel, statement_timeout,
/// termination) as they come.
unsafe fn sleep_us(us: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_micros(us.max(0) as u64);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            left.as_millis().max(1) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        pgrx::check_for_interrupts!();
    }
}

/// Ends (pg_terminate_backend, as the migrating role: only where it may) the blocking
/// client sessions that have been idle in transaction for at least
/// `migsafe.cancel_blockers_after` and are not a superuser's: a cancel would not free
/// their locks, since an idle session has no query to cancel. The state is read afresh
/// by the statement that ends the session (pg_stat_activity is otherwise the
/// transaction's first look), so one that started a query since is left alone. Each
/// is noted in the server log and, with the attempt, in the audit log.
fn end_idle_blockers(relid: Oid, blockers: &[Blocker], idle_ms: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for b in blockers {
        let r = crate::spi::rolled_back(|| {
            spi::run(
                As::Caller,
                "SELECT pg_catalog.pg_stat_clear_snapshot()",
                &[],
            );
            spi::one::<bool>(
                As::Caller,
                "SELECT pg_catalog.pg_terminate_backend(a.pid) \
                   FROM pg_catalog.pg_stat_activity a \
                   JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.usesysid \
                  WHERE a.pid OPERATOR(pg_catalog.=) $1 \
                    AND a.backend_type OPERATOR(pg_catalog.=) 'client backend' \
                    AND a.state OPERATOR(pg_catalog.=) ANY (ARRAY['idle in transaction', 'idle in transaction (aborted)']) \
                    AND a.state_change OPERATOR(pg_catalog.<=) (pg_catalog.clock_timestamp() \
                        OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $2)) \
                    AND NOT r.rolsuper \
                    AND (pg_catalog.pg_has_role(a.usesysid, 'USAGE') \
                         OR pg_catalog.pg_has_role('pg_signal_backend', 'USAGE'))",
                &[b.pid.into(), (idle_ms as f64 / 1000.0).into()],
            )
        });
        // An error here is pg_migsafe's (the statement only reads and signals): the
        // migration goes on, and the server log says why nobody was ended.
        if let Err(e) = &r {
            let why = match e.as_ref() {
                pgrx::pg_sys::panic::CaughtError::PostgresError(r)
                | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => r.message().to_string(),
                pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => {
                    ereport.message().to_string()
                }
            };
            let line = format!(
                "pg_migsafe: could not end blocking session {}: {why}",
                b.pid
            );
            if let Ok(c) = CString::new(line) {
                unsafe { crate::report::log_server_only(&c) };
            }
        }
        if let Ok(Some(true)) = r {
            out.push(b.pid);
            let line = format!(
                "pg_migsafe: ended session {} (idle in transaction, holding {} on {}) that blocked a migration: migsafe.cancel_blockers_after",
                b.pid,
                b.mode,
                unsafe { table_name(relid) }
            );
            if let Ok(c) = CString::new(line) {
                unsafe { crate::report::log_server_only(&c) };
            }
        }
    }
    out
}

/// After the statement (or when its transaction aborts).
pub fn lock_safety_end() {
    if let Some(old) = SAVED_LOCK_TIMEOUT.take() {
        unsafe { pg_sys::LockTimeout = old };
    }
    LOCK_NOTE.with(|n| {
        if let Ok(mut n) = n.try_borrow_mut() {
            *n = None;
        }
    });
}

unsafe fn owns(relid: Oid) -> bool {
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    {
        pg_sys::pg_class_ownercheck(relid, pg_sys::GetUserId())
    }
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    {
        pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, pg_sys::GetUserId())
    }
}

/// The sessions holding a conflicting lock on the table, as the caller sees them in
/// pg_locks and pg_stat_activity: another user's query text shows only where the
/// caller could read it there (its own sessions, pg_read_all_stats). Read afresh:
/// pg_stat_activity otherwise keeps the transaction's first look (the transaction's
/// statistics snapshot is cleared; a later read in it takes a new one).
fn blockers_of(relid: Oid, mode: usize) -> Vec<Blocker> {
    spi::run(
        As::Caller,
        "SELECT pg_catalog.pg_stat_clear_snapshot()",
        &[],
    );
    spi::select(
        As::Caller,
        "SELECT l.pid, l.mode, a.state, a.query FROM pg_catalog.pg_locks l \
           LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid \
          WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.database OPERATOR(pg_catalog.=) $1 \
            AND l.relation OPERATOR(pg_catalog.=) $2 AND l.granted \
            AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() ORDER BY l.pid",
        &[unsafe { pg_sys::MyDatabaseId }.into(), relid.into()],
        |t| {
            let mut out = Vec::new();
            for row in t {
                let pid = row.get::<i32>(1)?.unwrap_or(0);
                let m = row.get::<String>(2)?.unwrap_or_default();
                if !lock_mode(&m).is_some_and(|held| lock_conflicts(mode, held)) {
                    continue;
                }
                // pg_stat_activity's placeholder for a query the caller may not see.
                let query = row
                    .get::<String>(4)?
                    .filter(|q| q != "<insufficient privilege>")
                    .map(|q| cut_statement(&crate::redact::query_text(&q), 1000).0);
                out.push(Blocker {
                    pid,
                    mode: m,
                    state: row.get::<String>(3)?,
                    query,
                });
            }
            Ok(out)
        },
    )
}

/// Before DROP DATABASE, CREATE DATABASE … TEMPLATE, ALTER DATABASE … RENAME/SET
/// TABLESPACE: the writer of that database must leave it (they need it free).
unsafe fn release_databases(stmt: *mut pg_sys::Node) {
    if let Some(n) = crate::stmt::locks::database_needed_free(stmt) {
        let oid = pg_sys::get_database_oid(n, true);
        if oid != pg_sys::InvalidOid {
            queue::request_exit(oid);
        }
    }
}

// ------------------------------------------------------------ errors and ends

/// The emit_log hook's part (called by `hooks`, before the next hook): an ERROR of an
/// open statement is spooled at once; a lock timeout gets its DETAIL. Not guarded and
/// allocation-light: it runs inside error reporting.
pub(crate) unsafe fn on_emit_log(edata: *mut pg_sys::ErrorData) {
    if !edata.is_null() && (*edata).elevel >= pg_sys::PGERROR as i32 {
        if OPEN.get() > 0 {
            note_error(edata);
        }
        lock_detail(edata);
    }
}

unsafe fn note_error(edata: *mut pg_sys::ErrorData) {
    let code = crate::report::unpack_sqlstate((*edata).sqlerrcode);
    let msg = cstr((*edata).message).unwrap_or_default();
    // The failing statement's record goes to the spool file now, before the client
    // sees the error: a crash before the abort that queues it loses nothing. (The
    // abort spools it again with its final duration; recovery keeps the last.)
    let spooled = with(|s| {
        s.last_error = Some((code.clone(), msg.clone()));
        let (mig, o) = (s.mig.as_ref()?, s.open.last()?);
        let mut e = (code, msg);
        if o.credentials {
            e.1 = CREDENTIALS_WITHHELD.into();
        }
        Some(statement_record(
            mig,
            o.clone(),
            now_unix_us(),
            StatementOutcome::Error,
            Some(e),
        ))
    })
    .flatten();
    if let Some((dboid, r)) = spooled {
        let max = queue::header()
            .map(|h| h.ring_size as usize / 2)
            .unwrap_or(1 << 20);
        spool::append(
            u32::from(dboid),
            &crate::engine::audit::record_json(&r, max),
        );
    }
}

const CREDENTIALS_WITHHELD: &str =
    "<error message not recorded: the statement carries credentials>";

/// A lock timeout of a statement pg_migsafe watched: DETAIL names the blockers.
unsafe fn lock_detail(edata: *mut pg_sys::ErrorData) {
    if crate::report::unpack_sqlstate((*edata).sqlerrcode) != "55P03" || !(*edata).detail.is_null()
    {
        return;
    }
    let d = LOCK_NOTE.with(|n| {
        n.try_borrow().ok().and_then(|n| {
            n.as_ref()
                .map(|n| blockers_detail(&n.object, &n.mode, n.applied_ms, &n.blockers))
        })
    });
    if let Some(c) = d.and_then(|d| CString::new(d).ok()) {
        // Allocated in the error's own context (EmitErrorReport switched to it).
        (*edata).detail = pg_sys::pstrdup(c.as_ptr());
    }
}

/// Closes the open statements from index `from` on as failed.
fn fail_open(s: &mut State, from_subxact: Option<pg_sys::SubTransactionId>) -> Vec<(Oid, Record)> {
    let now = now_unix_us();
    let err = s.last_error.take();
    let mut out = Vec::new();
    while let Some(o) = s.open.last() {
        if from_subxact.is_some_and(|sub| o.subxact < sub) {
            break;
        }
        let o = s.open.pop().unwrap();
        // No error report reached emit_log_hook: an exception handler caught it.
        let mut e = err.clone().unwrap_or_else(|| {
            (
                "XX000".into(),
                "the statement's (sub)transaction was rolled back (an exception handler caught its error)".into(),
            )
        });
        if o.credentials {
            e.1 = CREDENTIALS_WITHHELD.into();
        }
        if let Some(m) = s.mig.as_mut() {
            if o.decision != DecisionKind::Refused {
                m.failed += 1;
            }
            out.push(statement_record(
                m,
                o,
                now,
                StatementOutcome::Error,
                Some(e),
            ));
        }
    }
    OPEN.set(s.open.len());
    out
}

/// A user's subtransaction rolled back (called by `hooks`): its open statements failed.
pub(crate) unsafe fn on_subxact_abort(my_subid: pg_sys::SubTransactionId) {
    lock_safety_end();
    if OPEN.get() == 0 {
        return;
    }
    let recs = with(|s| fail_open(s, Some(my_subid))).unwrap_or_default();
    for (db, r) in recs {
        queue_record(db, &r);
    }
}

/// The transaction callback's part (called by `hooks`, after the automatic snapshot's:
/// `snapshot` is its id, which the end record names).
pub(crate) unsafe fn on_xact(event: pg_sys::XactEvent::Type, snapshot: Option<i64>) {
    use pg_sys::XactEvent::*;
    match event {
        // Every transaction commits through here: the guarded call only when a
        // migration is open.
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE
            if with(|s| s.mig.is_some()).unwrap_or(false) =>
        {
            pre_commit(snapshot.unwrap_or(0))
        }
        XACT_EVENT_COMMIT => {
            RETRY_SPENT.set(0);
            finish(MigrationOutcome::Committed)
        }
        XACT_EVENT_PREPARE => {
            RETRY_SPENT.set(0);
            finish(MigrationOutcome::Prepared)
        }
        XACT_EVENT_ABORT => {
            RETRY_SPENT.set(0);
            lock_safety_end();
            finish(MigrationOutcome::RolledBack)
        }
        _ => {}
    }
}

/// Still inside the transaction: the Drizzle hashes it inserted, and the automatic
/// snapshot's id (0: none; ids start at 1).
#[pg_guard]
unsafe extern "C-unwind" fn pre_commit(snapshot: i64) {
    let hashes = drizzle_hashes();
    let xid = pg_sys::GetTopFullTransactionIdIfAny().value;
    with(|s| {
        if let Some(m) = s.mig.as_mut() {
            m.drizzle = hashes;
            m.snapshot = (snapshot > 0).then_some(snapshot);
            if xid != 0 {
                m.xid = Some(xid);
            }
        }
    });
}

/// The hashes this transaction inserted into Drizzle's migrations table. The table is
/// the user's: it is read as its owner, security-restricted, and only if it is a
/// plain table whose `hash` column is text (no view, no type with functions of its
/// own), so that nothing of the user's runs with pg_migsafe's rights.
unsafe fn drizzle_hashes() -> Vec<String> {
    let Some(t) = guc::DRIZZLE_TABLE.get() else {
        return vec![];
    };
    let t = t.to_string_lossy().into_owned();
    let Some((nsp, rel)) = t.split_once('.') else {
        return vec![];
    };
    let (Ok(nsp_c), Ok(rel_c)) = (CString::new(nsp), CString::new(rel)) else {
        return vec![];
    };
    let nsp_oid = pg_sys::get_namespace_oid(nsp_c.as_ptr(), true);
    if nsp_oid == pg_sys::InvalidOid {
        return vec![];
    }
    let relid = pg_sys::get_relname_relid(rel_c.as_ptr(), nsp_oid);
    if relid == pg_sys::InvalidOid || pg_sys::get_rel_relkind(relid) as u8 != b'r' {
        return vec![];
    }
    let attnum = pg_sys::get_attnum(relid, c"hash".as_ptr());
    if attnum <= 0
        || ![pg_sys::TEXTOID, pg_sys::VARCHAROID].contains(&pg_sys::get_atttype(relid, attnum))
    {
        return vec![];
    }
    let Some(owner) = crate::pgutil::rel_owner(relid) else {
        return vec![];
    };
    let xid = pg_sys::GetTopTransactionIdIfAny();
    if xid == pg_sys::InvalidTransactionId {
        return vec![];
    }
    // Identifiers quoted by the server's quote_identifier(); the xid is a parameter.
    let sql = format!(
        "SELECT hash::pg_catalog.text FROM {}.{} \
          WHERE xmin OPERATOR(pg_catalog.=) $1::pg_catalog.text::pg_catalog.xid ORDER BY 1",
        quote(nsp),
        quote(rel)
    );
    spi::execute_built(
        As::Owner(owner),
        &sql,
        &[u32::from(xid).to_string().into()],
        |t| {
            let mut out = Vec::new();
            for r in t {
                if let Some(h) = r.get::<String>(1)? {
                    out.push(h);
                }
            }
            Ok(out)
        },
    )
}

/// Commit, prepare or abort: close what is open and end the migration. No catalog
/// access, no error.
fn finish(outcome: MigrationOutcome) {
    // A statement that commits internally and goes on in a new transaction (CREATE
    // INDEX CONCURRENTLY, REINDEX CONCURRENTLY, DETACH PARTITION CONCURRENTLY…): its
    // migration goes on with it and ends with the transaction that finishes it.
    if outcome != MigrationOutcome::RolledBack && OPEN.get() > 0 {
        return;
    }
    let Some((recs, end, events, running)) = with(|s| {
        let recs = if s.open.is_empty() {
            vec![]
        } else {
            fail_open(s, None)
        };
        s.last_error = None;
        s.next_name = None;
        let events = std::mem::take(&mut s.pending_events);
        let mut end = None;
        let mut running = None;
        if let Some(m) = s.mig.take() {
            let now = now_unix_us();
            let duration = now - m.started_us;
            let warn = guc::WARN_DURATION.get() as i64;
            running = m.running;
            if let Some(h) = queue::header() {
                h.last_migration_end_us
                    .store(now, std::sync::atomic::Ordering::Relaxed);
                h.last_migration_duration_us
                    .store(duration, std::sync::atomic::Ordering::Relaxed);
            }
            end = Some((
                m.dboid,
                Record::MigrationEnd(MigrationEnd {
                    migration: m.key,
                    started_at: iso_time(m.started_us),
                    ended_at: iso_time(now),
                    duration_us: duration,
                    statements: m.statements,
                    refused: m.refused,
                    failed: m.failed,
                    outcome,
                    xid: m.xid,
                    drizzle_hashes: if outcome == MigrationOutcome::Committed {
                        m.drizzle
                    } else {
                        vec![]
                    },
                    snapshot: m
                        .snapshot
                        .filter(|_| outcome == MigrationOutcome::Committed),
                    name: m.name,
                    phases: m.phases,
                    over_budget: warn > 0 && duration > warn * 1000,
                    warn_duration_ms: warn,
                    session: m.session,
                }),
            ));
        }
        (recs, end, events, running)
    }) else {
        return;
    };
    for (db, r) in recs {
        queue_record(db, &r);
    }
    if let Some((db, r)) = end {
        queue_record(db, &r);
    }
    // Only once the end is queued: a writer never takes a queued migration for a
    // crashed one.
    if let Some(i) = running {
        queue::running_remove(i);
    }
    if !events.is_empty() {
        if outcome == MigrationOutcome::Committed {
            let db = unsafe { pg_sys::MyDatabaseId };
            for e in events {
                queue_record(db, &e);
            }
        }
        if let Some(h) = queue::header() {
            h.phase_generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}
