//! The background workers of the audit log.
//!
//! - The **launcher** (one, started with the server, restarted after a crash) starts a
//!   writer for every database that has queued records, a backlog or crash-left spool
//!   files and no writer, and retries writers that could not start. When there are
//!   more such databases than slots or worker processes, it asks writers that had their
//!   turn (`queue::WRITER_QUANTUM_US`) to yield, longest-serving first, so that every
//!   database's records reach its table.
//! - A **writer** (one per database, started on demand, exits when idle or asked to
//!   yield) stores queued and backlogged records in `migsafe.audit_log` in its own
//!   transactions with the hash chain, sends
//!   `NOTIFY migsafe_events` and one-line server-log entries for events, records
//!   migrations left unfinished by a crash (from their spool files), raises alerts for
//!   long-running migrations, records phase expiries and configuration changes.

use super::{backlog, queue, spool};
use crate::engine::audit::{
    alert_due, chain_hash, config_changes, event_of, fitted_event, identity, iso_time, log_line,
    migration_of, record_json, recover, row_content, row_identity, unstorable_row, Alert,
    AlertLevel, ConfigChange, Record, GENESIS,
};
use crate::guc;
use crate::pgutil::now_unix_us;
use crate::spi::{self, As};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

pub const WRITER_FUNCTION: &str = "migsafe_audit_writer";

/// Settings the writer fixes for its session (see `migsafe_audit_writer`).
const WRITER_SETTINGS: &[(&std::ffi::CStr, &std::ffi::CStr)] = &[
    (c"search_path", c"pg_catalog, pg_temp"),
    (c"synchronous_commit", c"on"),
    (c"statement_timeout", c"0"),
    (c"idle_in_transaction_session_timeout", c"0"),
    (c"default_transaction_read_only", c"off"),
    (c"default_transaction_isolation", c"read committed"),
];

pub fn register_launcher() {
    BackgroundWorkerBuilder::new("pg_migsafe audit launcher")
        .set_type("pg_migsafe audit launcher")
        .set_function("migsafe_audit_launcher")
        .set_library("pg_migsafe")
        .enable_shmem_access(None)
        .set_start_time(pgrx::bgworkers::BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// What became of a request to start a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Started,
    /// One is running or starting already.
    Running,
    /// No worker process is free (`max_worker_processes`).
    NoProcess,
}

/// Starts the writer of a slot unless one is running or starting. Never raises.
pub fn start_writer(slot: usize, dboid: pg_sys::Oid) -> Start {
    // A standby stores nothing (its log is the primary's): after promotion the
    // launcher starts writers as usual.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Start::Running;
    }
    if !queue::claim_start(slot, now_unix_us()) {
        return Start::Running;
    }
    let started = BackgroundWorkerBuilder::new(&format!(
        "pg_migsafe audit writer for database {}",
        u32::from(dboid)
    ))
    .set_type("pg_migsafe audit writer")
    .set_function(WRITER_FUNCTION)
    .set_library("pg_migsafe")
    .enable_spi_access()
    .set_argument(Some(pg_sys::Datum::from(slot)))
    .set_extra(&u32::from(dboid).to_string())
    .set_restart_time(None)
    .load_dynamic();
    if started.is_err() {
        queue::start_failed(slot);
        return Start::NoProcess;
    }
    Start::Started
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn migsafe_audit_launcher(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    spool::ensure_dir();
    queue::set_launcher_latch(unsafe { pg_sys::MyLatch });
    launcher_round(now_unix_us());
    while BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        launcher_round(now_unix_us());
    }
    queue::set_launcher_latch(std::ptr::null_mut());
}

/// One round of the launcher: every database with records to store gets a writer, or
/// gets one after the writers that had their turn yield.
fn launcher_round(now: i64) {
    use std::sync::atomic::Ordering::Acquire;
    queue::running_clear_dead();
    spool::settle_exited();
    // Records on disk: backlogs, and spool files a crash left (their migrations are
    // recorded by the database's writer). A database with such records and no slot
    // takes a free one, or waits for a writer to hand one over.
    let since = queue::header().map(|h| h.initialized_us).unwrap_or(0);
    let mut on_disk = backlog::databases();
    on_disk.extend(spool::stale_databases(since));
    on_disk.sort_unstable();
    on_disk.dedup();
    let mut heirs = Vec::new();
    for &db in &on_disk {
        let oid = pg_sys::Oid::from(db);
        if queue::slot_for(oid, false).is_none() && queue::slot_for(oid, true).is_none() {
            heirs.push(db);
        }
    }
    let mut waiting = Vec::new();
    for i in 0..queue::slot_count() {
        let s = queue::slot(i);
        let dboid = s.dboid.load(Acquire);
        if dboid == 0 || s.state.load(Acquire) == queue::RUNNING {
            continue;
        }
        let (pending, _) = queue::depth(i);
        let running = !queue::running_list(Some(pg_sys::Oid::from(dboid))).is_empty();
        if s.attempts >= 5 && !running {
            // Writers started and never connected (a dropped database): the server
            // log is the last place its records can go.
            spool::drain_stale_to_server_log(dboid, since, "NoWriter");
            queue::abandon(i, "NoWriter");
            continue;
        }
        let records = pending > 0 || on_disk.binary_search(&dboid).is_ok();
        if records || running {
            waiting.push((queue::waiting_since(i, now), i, dboid, records));
        }
    }
    waiting.sort_unstable();
    let mut starved = 0;
    for (_, i, dboid, records) in waiting {
        // A database whose migrations run but that has nothing to store (its writer
        // watches them for alerts) does not make others yield.
        if start_writer(i, pg_sys::Oid::from(dboid)) == Start::NoProcess && records {
            starved += 1;
        }
    }
    let need = heirs.len() + starved;
    if need == 0 {
        return;
    }
    // Writers yield, those with nothing to store first, then those that had their
    // turn, longest-serving first: each frees a worker process, and hands its slot to a
    // database that has none.
    let mut serving: Vec<(bool, i64, usize)> = (0..queue::slot_count())
        .filter_map(|i| {
            let s = queue::slot(i);
            if s.state.load(Acquire) != queue::RUNNING || queue::yield_requested(i) {
                return None;
            }
            let idle = queue::depth(i).0 == 0 && !backlog::pending(s.dboid.load(Acquire));
            (idle || now - s.served_since_us >= queue::WRITER_QUANTUM_US).then_some((
                !idle,
                s.served_since_us,
                i,
            ))
        })
        .collect();
    serving.sort_unstable();
    let mut heirs = heirs.into_iter();
    for (_, _, i) in serving.into_iter().take(need) {
        queue::request_yield(i, heirs.next().unwrap_or(0));
    }
}

unsafe extern "C-unwind" fn writer_exit(_code: i32, arg: pg_sys::Datum) {
    queue::writer_gone(arg.value());
}

struct Writer {
    slot: usize,
    dboid: pg_sys::Oid,
    last_alert_check: i64,
    last_phase_check: i64,
    last_purge: i64,
    last_activity: i64,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn migsafe_audit_writer(arg: pg_sys::Datum) {
    let slot: usize = arg.value();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let dboid: u32 = BackgroundWorker::get_extra().parse().unwrap_or(0);
    unsafe { pg_sys::before_shmem_exit(Some(writer_exit), pg_sys::Datum::from(slot)) };
    queue::writer_attach(slot);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);

    let installed = BackgroundWorker::transaction(|| {
        // The writer runs as the bootstrap superuser in a database whose owner may have
        // set anything with ALTER DATABASE … SET: it pins what it relies on. What it
        // stores is flushed when it commits, whatever the server's default.
        for (name, value) in WRITER_SETTINGS {
            spi::set_for_session(name, value);
        }
        spi::one::<bool>(
            As::Caller,
            "SELECT pg_catalog.to_regclass('migsafe.audit_log') IS NOT NULL",
            &[],
        )
        .unwrap_or(false)
    });
    let mut w = Writer {
        slot,
        dboid: pg_sys::Oid::from(dboid),
        last_alert_check: 0,
        last_phase_check: 0,
        last_purge: 0,
        last_activity: now_unix_us(),
    };
    if !installed {
        // The extension is not (or no longer) installed here: nothing can be stored.
        let drain = || {
            queue::drain_to_server_log(slot, "NotInstalled");
            backlog::drain_to_server_log(dboid, "NotInstalled");
        };
        drain();
        while !queue::writer_try_detach(slot, w.dboid) {
            drain();
        }
        return;
    }
    // Queued and backlogged records first: they end the migrations that did finish,
    // and what a crash left is then recovered against them.
    while w.write_batch() {}
    while w.store_backlog() {}
    queue::writer_connected(slot);
    w.recover_spool();
    w.record_config();
    loop {
        let alive = BackgroundWorker::wait_latch(Some(Duration::from_millis(1000)));
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            w.record_config();
        }
        // A few records only: let more arrive (50 ms) so that a busy database costs the
        // writer one transaction per batch, not one per record.
        let (pending, _) = queue::depth(slot);
        if pending > 0 && pending < 500 {
            unsafe { pg_sys::pg_usleep(50_000) };
        }
        while w.write_batch() {}
        w.store_backlog();
        let now = now_unix_us();
        if now - w.last_alert_check >= 1_000_000 {
            w.last_alert_check = now;
            w.alerts();
        }
        if now - w.last_phase_check >= 2_000_000 {
            w.last_phase_check = now;
            w.expire_phases();
        }
        if now - w.last_purge >= 60_000_000 {
            w.last_purge = now;
            w.purge_recycle_bin();
        }
        let exit_requested = queue::slot(slot)
            .exit_requested
            .load(std::sync::atomic::Ordering::Acquire)
            != 0;
        let idle = now - w.last_activity >= guc::AUDIT_WORKER_IDLE.get() as i64 * 1_000_000;
        if !alive {
            // Shutting down: everything queued is written (above); go.
            queue::writer_gone(slot);
            return;
        }
        if queue::yield_requested(slot) {
            // Other databases wait: what arrived meanwhile, then give way.
            w.write_batch();
            w.store_backlog();
            if queue::writer_try_detach(slot, w.dboid) {
                return;
            }
        }
        if (exit_requested || idle)
            && !backlog::pending(dboid)
            && queue::writer_try_detach(slot, w.dboid)
        {
            return;
        }
    }
}

impl Writer {
    /// Stores up to 2,000 queued records in one transaction. False when none were queued.
    fn write_batch(&mut self) -> bool {
        let batch = queue::peek(self.slot, 2000);
        if batch.records.is_empty() {
            return false;
        }
        self.last_activity = now_unix_us();
        let rows: Vec<(String, Option<Record>)> = batch
            .records
            .iter()
            .map(|r| {
                let t = String::from_utf8_lossy(r).into_owned();
                let parsed = serde_json::from_str(&t).ok();
                (t, parsed)
            })
            .collect();
        let events = self.store(&rows);
        batch.commit();
        for e in events {
            log(&log_line(&e));
        }
        true
    }

    /// Appends records (their JSON text, and the record when it parses) to the chain in
    /// one transaction, then sends their NOTIFYs. Returns the events, for the server
    /// log. A record the table refuses is replaced by an `unstorable` row that keeps
    /// its kind, size, SHA-256 and beginning (the chain goes on); nothing makes the
    /// writer stop at one record.
    fn store(&mut self, rows: &[(String, Option<Record>)]) -> Vec<serde_json::Value> {
        let mut kinds = Vec::with_capacity(rows.len());
        let mut migrations: Vec<Option<String>> = Vec::with_capacity(rows.len());
        let mut events = Vec::new();
        for (_, r) in rows {
            kinds.push(
                r.as_ref()
                    .map(|r| r.kind())
                    .unwrap_or("unknown")
                    .to_string(),
            );
            migrations.push(r.as_ref().and_then(migration_of).map(str::to_string));
            if let Some(e) = r.as_ref().and_then(event_of) {
                events.push(fitted_event(e));
            }
        }
        let texts: Vec<String> = rows.iter().map(|(t, _)| t.clone()).collect();
        BackgroundWorker::transaction(|| {
            // One writer per database at a time; this lock makes it so even if two ever
            // raced. SHARE UPDATE EXCLUSIVE conflicts with itself but not with the ROW
            // EXCLUSIVE lock that any role gets by merely preparing an INSERT into the
            // log (the parser locks before the privilege check): only the owner or a
            // superuser (LOCK TABLE) can hold the writer back.
            spi::run(
                As::Caller,
                "LOCK TABLE migsafe.audit_log IN SHARE UPDATE EXCLUSIVE MODE",
                &[],
            );
            let (seq, prev) = spi::select(
                As::Caller,
                "SELECT seq, hash FROM migsafe.audit_log ORDER BY seq DESC LIMIT 1",
                &[],
                |t| {
                    Ok(match t.into_iter().next() {
                        Some(r) => (r.get::<i64>(1)?.unwrap_or(0), r.get::<String>(2)?),
                        None => (0, None),
                    })
                },
            );
            let prev = prev.unwrap_or_else(|| GENESIS.to_string());
            let whole = spi::in_subtransaction(|| {
                let (mut s, mut p) = (seq, prev.clone());
                let mut seqs = Vec::with_capacity(texts.len());
                let mut hashes = Vec::with_capacity(texts.len());
                for ((t, k), m) in texts.iter().zip(&kinds).zip(&migrations) {
                    s += 1;
                    let h = chain_hash(&p, s, &row_content(k, m.as_deref(), t));
                    seqs.push(s);
                    hashes.push(h.clone());
                    p = h;
                }
                insert_rows(
                    seqs,
                    kinds.clone(),
                    migrations.clone(),
                    texts.clone(),
                    hashes,
                );
            });
            if let Err(e) = &whole {
                log(&format!(
                    "pg_migsafe_audit_batch_failed records={} error={:?} (storing them one by one)",
                    texts.len(),
                    crate::engine::audit::cut_statement(e, 500).0
                ));
                // One at a time: the rows that store go in as they are.
                let (mut s, mut p) = (seq, prev);
                for ((t, k), m) in texts.iter().zip(&kinds).zip(&migrations) {
                    pgrx::check_for_interrupts!();
                    let try_row = |kind: &str, text: &str, prev: &str| {
                        let h = chain_hash(prev, s + 1, &row_content(kind, m.as_deref(), text));
                        spi::in_subtransaction(|| {
                            insert_rows(
                                vec![s + 1],
                                vec![kind.to_string()],
                                vec![m.clone()],
                                vec![text.to_string()],
                                vec![h.clone()],
                            )
                        })
                        .map(|_| h)
                    };
                    let stored = match try_row(k, t, &p) {
                        Ok(h) => Some(h),
                        Err(e) => {
                            let rep = unstorable_row(k, m.as_deref(), t, &e);
                            try_row("unstorable", &rep, &p).ok()
                        }
                    };
                    if let Some(h) = stored {
                        s += 1;
                        p = h;
                    } else {
                        // The last resort: the server log, with the record itself.
                        log(&format!(
                            "pg_migsafe_audit_fallback reason=Unstorable {}",
                            crate::engine::audit::cut_statement(t, 1 << 20).0
                        ));
                    }
                }
            }
        });
        if !events.is_empty() {
            notify(&events);
        }
        events
    }

    /// Stores records built here (not queued by a backend).
    fn store_records(&mut self, records: &[Record]) {
        if records.is_empty() {
            return;
        }
        let rows: Vec<(String, Option<Record>)> = records
            .iter()
            .map(|r| (record_json(r, 1 << 20), Some(r.clone())))
            .collect();
        for e in self.store(&rows) {
            log(&log_line(&e));
        }
    }

    /// Spool files of backends that died (a crash, SIGKILL) hold every record they
    /// produced that may not have been stored: what the log lacks is stored, and
    /// migrations that never ended get their end (`engine::audit::recover`).
    fn recover_spool(&mut self) {
        let since = queue::header().map(|h| h.initialized_us).unwrap_or(0);
        for stale in spool::stale(since) {
            if stale.dboid != Some(u32::from(self.dboid)) {
                continue;
            }
            if !stale.records.is_empty() {
                let in_log = BackgroundWorker::transaction(|| identities_in_log(&stale.records));
                let rows: Vec<(String, Option<Record>)> = recover(
                    &stale.records,
                    &in_log,
                    now_unix_us(),
                    guc::WARN_DURATION.get() as i64,
                )
                .into_iter()
                .map(|(t, r)| (t, Some(r)))
                .collect();
                if !rows.is_empty() {
                    for e in self.store(&rows) {
                        log(&log_line(&e));
                    }
                }
            }
            spool::remove(&stale.path);
        }
    }

    /// Stores the records of up to 16 backlog files. False when there were none.
    fn store_backlog(&mut self) -> bool {
        let taken = backlog::take(u32::from(self.dboid), 16);
        if taken.is_empty() {
            return false;
        }
        self.last_activity = now_unix_us();
        for t in taken {
            if t.torn > 0 {
                log(&format!(
                    "pg_migsafe_audit_backlog_torn bytes={} (a backend died while writing a record to the backlog; the records before it are stored)",
                    t.torn
                ));
            }
            for chunk in t.records.chunks(2000) {
                let mut rows: Vec<(String, Option<Record>)> = chunk
                    .iter()
                    .map(|t| (t.clone(), serde_json::from_str(t).ok()))
                    .collect();
                if t.leftover {
                    // A writer died with this file taken: it may have stored some.
                    let parsed: Vec<(String, Record)> = rows
                        .iter()
                        .filter_map(|(t, r)| Some((t.clone(), r.clone()?)))
                        .collect();
                    let in_log = BackgroundWorker::transaction(|| identities_in_log(&parsed));
                    rows.retain(|(_, r)| {
                        r.as_ref()
                            .and_then(identity)
                            .is_none_or(|id| !in_log.contains(&id))
                    });
                }
                for e in self.store(&rows) {
                    log(&log_line(&e));
                }
                if let Some(h) = queue::header() {
                    h.written
                        .fetch_add(rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            }
            t.done();
        }
        true
    }

    /// A config record when the migsafe.* settings differ from the last one recorded.
    fn record_config(&mut self) {
        let (now_settings, last) = BackgroundWorker::transaction(|| {
            let settings = spi::select(
                As::Caller,
                "SELECT name, setting FROM pg_catalog.pg_settings \
                  WHERE name OPERATOR(pg_catalog.~~) 'migsafe.%' ORDER BY name",
                &[],
                |t| {
                    let mut settings = BTreeMap::new();
                    for row in t {
                        if let (Some(n), Some(v)) = (row.get::<String>(1)?, row.get::<String>(2)?) {
                            settings.insert(n, v);
                        }
                    }
                    Ok(settings)
                },
            );
            let last = spi::one::<String>(
                As::Caller,
                "SELECT record::pg_catalog.text FROM migsafe.audit_log \
                  WHERE kind OPERATOR(pg_catalog.=) 'config' ORDER BY seq DESC LIMIT 1",
                &[],
            );
            (settings, last)
        });
        let old: Option<BTreeMap<String, String>> = last
            .and_then(|t| serde_json::from_str::<Record>(&t).ok())
            .and_then(|r| match r {
                Record::Config(c) => Some(c.settings),
                _ => None,
            });
        let changed = match &old {
            Some(o) => config_changes(o, &now_settings),
            None => BTreeMap::new(),
        };
        if old.is_some() && changed.is_empty() {
            return;
        }
        self.store_records(&[Record::Config(ConfigChange {
            at: iso_time(now_unix_us()),
            settings: now_settings,
            changed,
        })]);
    }

    fn alerts(&mut self) {
        let now = now_unix_us();
        let mut recs = Vec::new();
        for r in queue::running_list(Some(self.dboid)) {
            // Running for a second: its start goes into the log now (from the spool
            // file), so the migration shows while it runs.
            if !r.start_claimed && now - r.started_us >= 1_000_000 && queue::running_claim_start(&r)
            {
                if let Some(s) = spool::read_start(r.backend_start_us, r.pid, &r.key) {
                    recs.push(Record::MigrationStart(s));
                }
            }
            let already = match r.alerted {
                1 => Some(AlertLevel::Warning),
                2 => Some(AlertLevel::Critical),
                _ => None,
            };
            let Some(level) = alert_due(
                now - r.started_us,
                guc::ALERT_AFTER.get() as i64,
                guc::CRITICAL_AFTER.get() as i64,
                already,
            ) else {
                continue;
            };
            let (query, waiting) = BackgroundWorker::transaction(|| {
                spi::select(
                    As::Caller,
                    "SELECT query, wait_event_type OPERATOR(pg_catalog.||) ': ' OPERATOR(pg_catalog.||) wait_event \
                       FROM pg_catalog.pg_stat_activity WHERE pid OPERATOR(pg_catalog.=) $1",
                    &[r.pid.into()],
                    |mut t| match t.next() {
                        Some(row) => Ok((row.get::<String>(1)?, row.get::<String>(2)?)),
                        None => Ok((None, None)),
                    },
                )
            });
            recs.push(Record::Alert(Alert {
                migration: r.key.clone(),
                level,
                at: iso_time(now),
                started_at: iso_time(r.started_us),
                running_us: now - r.started_us,
                pid: r.pid,
                query: query.map(|q| crate::redact::query_text(&q)),
                waiting,
            }));
            queue::running_mark_alerted(&r, level as u32);
        }
        if !recs.is_empty() {
            self.last_activity = now;
        }
        self.store_records(&recs);
    }

    /// What the recycle bin and the automatic snapshots kept longer than
    /// `migsafe.recycle_retention` goes (checked once a minute while the writer runs,
    /// which it does whenever the database runs DDL).
    fn purge_recycle_bin(&mut self) {
        if guc::RECYCLE_RETENTION.get() <= 0 {
            return;
        }
        BackgroundWorker::transaction(|| {
            let installed = spi::one::<bool>(
                As::Caller,
                "SELECT pg_catalog.to_regclass('migsafe.recycle') IS NOT NULL \
                    AND pg_catalog.to_regclass('migsafe.snapshot') IS NOT NULL",
                &[],
            )
            .unwrap_or(false);
            if installed {
                spi::run(As::Caller, "SELECT migsafe.purge()", &[]);
                spi::run(
                    As::Caller,
                    "DELETE FROM migsafe.snapshot s WHERE s.kind OPERATOR(pg_catalog.=) 'auto' \
                        AND s.taken_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() \
                            OPERATOR(pg_catalog.-) pg_catalog.current_setting('migsafe.recycle_retention')::pg_catalog.interval)",
                    &[],
                );
            }
        });
    }

    /// Phases whose validity ended get their 'expired' event (the phase_event trigger
    /// queues the audit record, which the next batch stores).
    fn expire_phases(&mut self) {
        BackgroundWorker::transaction(|| {
            spi::run(
                As::Caller,
                "INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail) \
                 SELECT p.id, 'expired', 'pg_migsafe', \
                        pg_catalog.concat('valid until ', p.valid_until) \
                   FROM migsafe.phase p \
                  WHERE p.state OPERATOR(pg_catalog.=) ANY (ARRAY['active', 'pending']) \
                    AND p.valid_until OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() \
                    AND NOT EXISTS (SELECT 1 FROM migsafe.phase_event e \
                                     WHERE e.phase_id OPERATOR(pg_catalog.=) p.id \
                                       AND e.event OPERATOR(pg_catalog.=) 'expired')",
                &[],
            );
        });
    }
}

/// The identities (`engine::audit::identity`) the log already holds among `records`.
fn identities_in_log(records: &[(String, Record)]) -> std::collections::HashSet<String> {
    let mut keys: Vec<String> = records
        .iter()
        .filter_map(|(_, r)| migration_of(r).map(str::to_string))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let texts: Vec<String> = records
        .iter()
        .filter(|(_, r)| migration_of(r).is_none())
        .map(|(t, _)| t.clone())
        .collect();
    spi::select(
        As::Caller,
        "SELECT kind, record::pg_catalog.text FROM migsafe.audit_log \
          WHERE migration OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
             OR (kind OPERATOR(pg_catalog.=) ANY (ARRAY['phase_event', 'upgrade']) \
                 AND record::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]))",
        &[keys.into(), texts.into()],
        |t| {
            let mut ids = std::collections::HashSet::new();
            for r in t {
                let (Some(kind), Some(text)) = (r.get::<String>(1)?, r.get::<String>(2)?) else {
                    continue;
                };
                if let Some(id) = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| row_identity(&kind, &v))
                {
                    ids.insert(id);
                }
            }
            Ok(ids)
        },
    )
}

/// Appends rows to the log (the arrays are the columns).
fn insert_rows(
    seqs: Vec<i64>,
    kinds: Vec<String>,
    migrations: Vec<Option<String>>,
    texts: Vec<String>,
    hashes: Vec<String>,
) {
    spi::run(
        As::Caller,
        "INSERT INTO migsafe.audit_log (seq, kind, migration, record, hash) \
         SELECT u.s, u.k, u.m, u.r::pg_catalog.json, u.h \
           FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.text[]), \
                           pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), \
                           pg_catalog.unnest($5::pg_catalog.text[])) AS u(s, k, m, r, h)",
        &[
            seqs.into(),
            kinds.into(),
            migrations.into(),
            texts.into(),
            hashes.into(),
        ],
    );
}

/// NOTIFY migsafe_events, in a transaction of its own: a failure (a full notification
/// queue, say) is logged and never blocks the log itself.
fn notify(events: &[serde_json::Value]) {
    let payloads: Vec<String> = events
        .iter()
        .map(|e| crate::engine::audit::notify_payload(e).to_string())
        .collect();
    let ok = pgrx::PgTryBuilder::new(|| {
        BackgroundWorker::transaction(|| {
            spi::run(
                As::Caller,
                "SELECT pg_catalog.pg_notify('migsafe_events', p) FROM pg_catalog.unnest($1::pg_catalog.text[]) AS p",
                &[payloads.clone().into()],
            )
        });
        true
    })
    .catch_others(|_| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        false
    })
    .execute();
    if !ok {
        log("pg_migsafe_audit_notify_failed (the events are in the audit log and on the next lines)");
    }
}

/// A LOG line from a worker (no client to send it to).
pub fn log(line: &str) {
    pgrx::log!("{}", line);
}
