//! The audit log, the pure part: the records the backends queue and the writer stores,
//! the hash chain that makes the log tamper-evident, the events that go out as NOTIFY
//! and server-log lines, alert levels, and the lock-conflict table used to name the
//! sessions that block a statement. Plain Rust, no server.
//!
//! A record is one JSON object with a `kind` (see [`Record`]). The writer stores the
//! exact JSON text (column type `json`, which keeps the text as it was given) with a
//! per-database sequence number and `hash = sha256(prev_hash ‖ "\n" ‖ seq ‖ "\n" ‖ text)`
//! in lower-case hex; the first row's `prev_hash` is [`GENESIS`]. Changing, removing or
//! inserting a row anywhere breaks every later link, which [`verify_chain`] reports.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The `prev_hash` of the first row of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who ran a statement, from where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub database: String,
    pub session_user: String,
    pub current_user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    pub pid: i32,
}

/// One finding of the rule catalog on a statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub rule: String,
    pub severity: String,
    pub object: String,
}

/// A session holding a lock that conflicts with the one a statement needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocker {
    pub pid: i32,
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// A phase in force for a migration (an open expand phase of the session, or a
/// contract phase that approved one of its statements).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRef {
    pub id: i64,
    pub kind: String,
    pub name: String,
}

/// What pg_migsafe decided about a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Allowed,
    Warned,
    Refused,
    Approved,
}

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementOutcome {
    Ok,
    Error,
}

/// How a migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationOutcome {
    Committed,
    RolledBack,
    Prepared,
    NeverFinished,
}

/// Alert levels for long-running migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    Warning = 1,
    Critical = 2,
}

/// A migration: the statements of one top-level transaction that ran DDL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationStart {
    pub migration: String,
    pub started_at: String,
    pub session: Session,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseRef>,
    /// The statement that started it (possibly cut, see `Statement`).
    pub first_statement: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub migration: String,
    /// 1, 2, … within the migration.
    pub n: u32,
    pub started_at: String,
    pub duration_us: i64,
    /// Time the statement waited for its table lock, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_wait_us: Option<i64>,
    pub session: Session,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xid: Option<u64>,
    pub command_tag: String,
    pub statement: String,
    pub statement_truncated: bool,
    pub statement_bytes: usize,
    /// 0 for a statement sent by the client, more inside functions and DO blocks.
    pub nesting: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingRecord>,
    pub decision: DecisionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_id: Option<i64>,
    pub outcome: StatementOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `migsafe.lock_timeout` applied to this statement (ms), when lock_timeout was 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_timeout_ms: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
    /// The tries to take the table lock when the first one failed
    /// (`migsafe.lock_retry_budget`), the first `lockretry::ATTEMPTS_RECORDED` of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lock_attempts: Vec<crate::lockretry::Attempt>,
    /// How many tries there were in all (0: the lock was taken without retries).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub lock_attempts_total: u32,
    /// The budget ran out before the lock was taken.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lock_retry_exhausted: bool,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationEnd {
    pub migration: String,
    pub started_at: String,
    pub ended_at: String,
    pub duration_us: i64,
    pub statements: u32,
    pub refused: u32,
    pub failed: u32,
    pub outcome: MigrationOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xid: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drizzle_hashes: Vec<String>,
    /// The automatic snapshot taken before its DDL (`migsafe.snapshots`), when it
    /// committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseRef>,
    /// Longer than `migsafe.warn_duration`.
    pub over_budget: bool,
    pub warn_duration_ms: i64,
    pub session: Session,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseEvent {
    pub phase_id: i64,
    pub event: String,
    pub by_role: String,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `ALTER EXTENSION pg_migsafe UPDATE` ran (recorded when its transaction commits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upgrade {
    pub at: String,
    pub from_version: String,
    pub to_version: String,
    pub by_role: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub at: String,
    /// Every migsafe.* setting as the writer saw it.
    pub settings: BTreeMap<String, String>,
    /// What changed since the previous config record: name → [old, new] (null when
    /// the setting did not exist on one side). Empty for the first record.
    pub changed: BTreeMap<String, [Option<String>; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub migration: String,
    pub level: AlertLevel,
    pub at: String,
    pub started_at: String,
    pub running_us: i64,
    pub pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// What the backend waits for, from pg_stat_activity ("Lock: relation" while its
    /// DDL queues for a table lock, "Extension: Extension" while pg_migsafe pauses
    /// between lock retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    MigrationStart(MigrationStart),
    Statement(Statement),
    MigrationEnd(MigrationEnd),
    PhaseEvent(PhaseEvent),
    Config(ConfigChange),
    Alert(Alert),
    Upgrade(Upgrade),
}

impl Record {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("records always serialize")
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Record::MigrationStart(_) => "migration_start",
            Record::Statement(_) => "statement",
            Record::MigrationEnd(_) => "migration_end",
            Record::PhaseEvent(_) => "phase_event",
            Record::Config(_) => "config",
            Record::Alert(_) => "alert",
            Record::Upgrade(_) => "upgrade",
        }
    }
}

/// Timestamps in records: ISO 8601 in UTC with microseconds, from Unix microseconds.
pub fn iso_time(unix_us: i64) -> String {
    let secs = unix_us.div_euclid(1_000_000);
    let nanos = (unix_us.rem_euclid(1_000_000) * 1000) as u32;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
        None => "1970-01-01T00:00:00.000000+00:00".to_string(),
    }
}

/// The statement text to store: at most `max_bytes`, cut at a character boundary.
/// Returns the text and whether it was cut.
pub fn cut_statement(text: &str, max_bytes: usize) -> (String, bool) {
    if text.len() <= max_bytes {
        return (text.to_string(), false);
    }
    let mut end = max_bytes;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_string(), true)
}

/// What a row's hash covers besides its seq and its predecessor: the indexed columns
/// `kind` and `migration` (a copy of the record's own keys) and the record text.
pub fn row_content(kind: &str, migration: Option<&str>, record: &str) -> String {
    format!("{kind}\n{}\n{record}", migration.unwrap_or(""))
}

/// The migration key of a record, if it belongs to one.
pub fn migration_of(record: &Record) -> Option<&str> {
    match record {
        Record::MigrationStart(r) => Some(&r.migration),
        Record::Statement(r) => Some(&r.migration),
        Record::MigrationEnd(r) => Some(&r.migration),
        Record::Alert(r) => Some(&r.migration),
        Record::PhaseEvent(_) | Record::Config(_) | Record::Upgrade(_) => None,
    }
}

/// The chain link of a row (`content` from [`row_content`]).
pub fn chain_hash(prev_hash: &str, seq: i64, record: &str) -> String {
    sha256_hex(&[
        prev_hash.as_bytes(),
        b"\n",
        seq.to_string().as_bytes(),
        b"\n",
        record.as_bytes(),
    ])
}

/// SHA-256 of the concatenated parts, in lower-case hex.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The row that stands in for a record the log table refused: its kind, size, SHA-256
/// and beginning, and the error (the chain goes on; the record is in the server log).
pub fn unstorable_row(kind: &str, migration: Option<&str>, text: &str, error: &str) -> String {
    serde_json::json!({
        "kind": "unstorable",
        "original_kind": kind,
        "migration": migration,
        "bytes": text.len(),
        "sha256": sha256_hex(&[text.as_bytes()]),
        "error": cut_statement(error, 1000).0,
        "excerpt": cut_statement(text, 2000).0,
    })
    .to_string()
}

/// What `verify_chain` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok {
        rows: i64,
        last_seq: i64,
    },
    Broken {
        rows_ok: i64,
        seq: i64,
        reason: String,
    },
}

/// Walks rows (seq, record text, stored hash) in `seq` order, from the first row of
/// the log, and reports the first link that does not hold: a hash that is not the
/// one of the row's content and predecessor (the row or one before it was changed),
/// or a gap or repeat in the sequence (a row was removed or inserted).
pub fn verify_chain<I>(rows: I) -> Verdict
where
    I: IntoIterator<Item = (i64, String, String)>,
{
    let mut v = ChainVerifier::new();
    for (seq, record, hash) in rows {
        if let Some(broken) = v.push(seq, &record, &hash) {
            return broken;
        }
    }
    v.finish()
}

/// The incremental form of [`verify_chain`], for logs read in chunks.
pub struct ChainVerifier {
    prev: String,
    expected_seq: i64,
    n: i64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        ChainVerifier {
            prev: GENESIS.to_string(),
            expected_seq: 1,
            n: 0,
        }
    }

    /// The next row; `Some(Broken)` at the first link that does not hold.
    pub fn push(&mut self, seq: i64, record: &str, hash: &str) -> Option<Verdict> {
        if seq != self.expected_seq {
            let reason = if seq > self.expected_seq {
                format!(
                    "rows {} to {} are missing (the row after {} has seq {})",
                    self.expected_seq,
                    seq - 1,
                    self.expected_seq - 1,
                    seq
                )
            } else {
                format!("seq {seq} appears out of order or twice")
            };
            return Some(Verdict::Broken {
                rows_ok: self.n,
                seq,
                reason,
            });
        }
        let want = chain_hash(&self.prev, seq, record);
        if want != hash {
            return Some(Verdict::Broken {
                rows_ok: self.n,
                seq,
                reason: format!(
                    "the stored hash {} is not the hash of the row's content and the previous row's hash ({}): the row, or the hash, was changed",
                    short(hash),
                    short(&want)
                ),
            });
        }
        self.prev = hash.to_string();
        self.expected_seq += 1;
        self.n += 1;
        None
    }

    pub fn finish(self) -> Verdict {
        Verdict::Ok {
            rows: self.n,
            last_seq: self.expected_seq - 1,
        }
    }
}

fn short(h: &str) -> String {
    h.chars().take(12).collect::<String>() + "…"
}

/// The alert a running migration deserves now, if it has not had it yet.
/// Thresholds are in milliseconds; 0 disables a level.
pub fn alert_due(
    running_us: i64,
    alert_after_ms: i64,
    critical_after_ms: i64,
    already: Option<AlertLevel>,
) -> Option<AlertLevel> {
    let past = |ms: i64| ms > 0 && running_us >= ms * 1000;
    let due = if past(critical_after_ms) {
        Some(AlertLevel::Critical)
    } else if past(alert_after_ms) {
        Some(AlertLevel::Warning)
    } else {
        None
    };
    match (due, already) {
        (Some(d), Some(a)) if d <= a => None,
        (d, _) => d,
    }
}

/// The event a record announces (NOTIFY migsafe_events and a server-log line), if any:
/// refused and failed statements, long-running migrations, migrations over budget or
/// never finished, and phase changes. The payload stays well under NOTIFY's 8000 bytes.
pub fn event_of(record: &Record) -> Option<serde_json::Value> {
    use serde_json::json;
    let clip = |s: &str| cut_statement(s, 300).0;
    match record {
        Record::Statement(s) if s.decision == DecisionKind::Refused => Some(json!({
            "event": "refused",
            "migration": s.migration,
            "database": s.session.database,
            "user": s.session.session_user,
            "application": s.session.application_name,
            "pid": s.session.pid,
            "rules": s.findings.iter().map(|f| f.rule.as_str()).collect::<Vec<_>>(),
            "objects": s.findings.iter().map(|f| f.object.as_str()).collect::<Vec<_>>(),
            "statement": clip(&s.statement),
        })),
        Record::Statement(s) if s.outcome == StatementOutcome::Error => Some(json!({
            "event": "failed",
            "migration": s.migration,
            "database": s.session.database,
            "user": s.session.session_user,
            "application": s.session.application_name,
            "pid": s.session.pid,
            "sqlstate": s.sqlstate,
            "error": s.error.as_deref().map(clip),
            "blockers": s.blockers.iter().map(|b| b.pid).collect::<Vec<_>>(),
            "statement": clip(&s.statement),
        })),
        Record::Alert(a) => Some(json!({
            "event": "long_running",
            "level": a.level,
            "migration": a.migration,
            "pid": a.pid,
            "started_at": a.started_at,
            "running_s": a.running_us / 1_000_000,
            "query": a.query.as_deref().map(clip),
            "waiting": a.waiting,
        })),
        Record::MigrationEnd(m)
            if m.over_budget || m.outcome == MigrationOutcome::NeverFinished =>
        {
            Some(json!({
                "event": if m.outcome == MigrationOutcome::NeverFinished { "never_finished" } else { "over_budget" },
                "migration": m.migration,
                "database": m.session.database,
                "user": m.session.session_user,
                "outcome": m.outcome,
                "duration_ms": m.duration_us / 1000,
                "warn_duration_ms": m.warn_duration_ms,
            }))
        }
        Record::PhaseEvent(p) => Some(json!({
            "event": "phase",
            "phase_id": p.phase_id,
            "phase_event": p.event,
            "by": p.by_role,
            "detail": p.detail.as_deref().map(clip),
        })),
        Record::Config(c) if !c.changed.is_empty() => Some(json!({
            "event": "config_changed",
            "changed": c.changed,
        })),
        Record::Upgrade(u) => Some(json!({
            "event": "upgraded",
            "from": u.from_version,
            "to": u.to_version,
            "by": u.by_role,
        })),
        _ => None,
    }
}

/// The largest NOTIFY payload and `pg_migsafe_event` log line pg_migsafe sends
/// (PostgreSQL refuses payloads of 8000 bytes and more).
pub const EVENT_MAX_BYTES: usize = 7900;

/// Shrinks a JSON value until its text fits in `max_bytes`: the longest string is cut
/// (at a character boundary, marked with `…`) or the longest array loses its second
/// half, again and again. Keys and numbers are kept, and the value keeps its shape
/// (strings stay strings, arrays stay arrays of the same kind), so a record still
/// parses as a record. Returns false when nothing was changed.
pub fn fit_json(v: &mut serde_json::Value, max_bytes: usize) -> bool {
    use serde_json::Value;
    /// The path to the biggest string or array, and its size.
    fn biggest(
        v: &Value,
        path: &mut Vec<PathStep>,
        best: &mut Option<(usize, Vec<PathStep>)>,
        depth: usize,
    ) {
        if depth > 16 {
            return;
        }
        let size = match v {
            Value::String(s) if s.len() > 24 => Some(s.len()),
            Value::Array(a) if a.len() > 1 => Some(v.to_string().len()),
            _ => None,
        };
        if let Some(n) = size {
            if best.as_ref().is_none_or(|(b, _)| n > *b) {
                *best = Some((n, path.clone()));
            }
        }
        match v {
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(PathStep::Index(i));
                    biggest(x, path, best, depth + 1);
                    path.pop();
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    path.push(PathStep::Key(k.clone()));
                    biggest(x, path, best, depth + 1);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    #[derive(Clone)]
    enum PathStep {
        Key(String),
        Index(usize),
    }
    let mut changed = false;
    for _ in 0..256 {
        if v.to_string().len() <= max_bytes {
            return changed;
        }
        let mut best = None;
        biggest(v, &mut Vec::new(), &mut best, 0);
        let Some((_, path)) = best else {
            return changed;
        };
        let mut target = &mut *v;
        for step in &path {
            target = match step {
                PathStep::Key(k) => &mut target[k.as_str()],
                PathStep::Index(i) => &mut target[*i],
            };
        }
        match target {
            Value::String(s) => {
                let (cut, _) = cut_statement(s, s.len() / 2);
                *s = format!("{cut}…");
            }
            Value::Array(a) => {
                let keep = a.len() / 2;
                a.truncate(keep.max(1));
            }
            _ => return changed,
        }
        changed = true;
    }
    changed
}

/// The keys of an event that tell what a statement or query said: kept in the server
/// log line, left out of the NOTIFY payload, which any role connected to the database
/// may LISTEN to (the details are in the audit log, for its readers).
pub const PRIVATE_EVENT_KEYS: &[&str] = &["statement", "error", "query", "objects", "detail"];

/// The NOTIFY payload of an event: without [`PRIVATE_EVENT_KEYS`], shrunk to
/// [`EVENT_MAX_BYTES`].
pub fn notify_payload(e: &serde_json::Value) -> serde_json::Value {
    let mut p = e.clone();
    if let Some(o) = p.as_object_mut() {
        for k in PRIVATE_EVENT_KEYS {
            o.remove(*k);
        }
    }
    fitted_event(p)
}

/// An event as it goes out (NOTIFY payload, log line): shrunk to [`EVENT_MAX_BYTES`].
pub fn fitted_event(mut e: serde_json::Value) -> serde_json::Value {
    if fit_json(&mut e, EVENT_MAX_BYTES) {
        e["truncated"] = serde_json::Value::Bool(true);
    }
    e
}

/// A record's JSON text, shrunk (see [`fit_json`]) to at most `max_bytes` and marked
/// `"truncated": true` when it had to be.
pub fn record_json(r: &Record, max_bytes: usize) -> String {
    let json = r.to_json();
    if json.len() <= max_bytes {
        return json;
    }
    let mut v = serde_json::to_value(r).expect("records always serialize");
    fit_json(&mut v, max_bytes.saturating_sub(20));
    v["truncated"] = serde_json::Value::Bool(true);
    v.to_string()
}

/// The one-line server-log form of an event: `pg_migsafe_event {json}`.
pub fn log_line(event: &serde_json::Value) -> String {
    format!("pg_migsafe_event {event}")
}

/// What changed between two sets of settings.
pub fn config_changes(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> BTreeMap<String, [Option<String>; 2]> {
    let mut out = BTreeMap::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.insert(k.clone(), [old.get(k).cloned(), Some(v.clone())]);
        }
    }
    for (k, v) in old {
        if !new.contains_key(k) {
            out.insert(k.clone(), [Some(v.clone()), None]);
        }
    }
    out
}

/// PostgreSQL's table-lock modes, weakest first (their numbering in lockdefs.h).
pub const LOCK_MODES: [&str; 8] = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

/// 1-based lock mode number of a `pg_locks.mode` name.
pub fn lock_mode(name: &str) -> Option<usize> {
    LOCK_MODES.iter().position(|m| *m == name).map(|i| i + 1)
}

/// Do two table-lock modes (1..=8) conflict? The table of the PostgreSQL docs
/// ("Conflicting Lock Modes").
pub fn lock_conflicts(a: usize, b: usize) -> bool {
    // conflict masks indexed by mode: bit m set = conflicts with mode m
    const CONFLICTS: [u16; 9] = [
        0,
        1 << 8,                                                          // AccessShare
        (1 << 7) | (1 << 8),                                             // RowShare
        (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8),                       // RowExclusive
        (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8),            // ShareUpdateExclusive
        (1 << 3) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 8),            // Share
        (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8), // ShareRowExclusive
        (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8), // Exclusive
        0b1_1111_1110,                                                   // AccessExclusive
    ];
    a <= 8 && b <= 8 && CONFLICTS[a] & (1 << b) != 0
}

/// One blocking session as a lock error names it: `pid 42 (RowExclusiveLock, idle in
/// transaction) running: INSERT …`, its query cut at `query_max` bytes.
pub fn describe_blocker(b: &Blocker, query_max: usize) -> String {
    format!(
        "pid {} ({}{}){}",
        b.pid,
        b.mode,
        b.state
            .as_deref()
            .map(|st| format!(", {st}"))
            .unwrap_or_default(),
        b.query
            .as_deref()
            .map(|q| format!(" running: {}", cut_statement(q, query_max).0))
            .unwrap_or_default()
    )
}

/// The DETAIL added to a lock-timeout error: who held a conflicting lock.
pub fn blockers_detail(
    object: &str,
    wanted: &str,
    applied_ms: Option<i32>,
    blockers: &[Blocker],
) -> String {
    let mut s = String::new();
    if blockers.is_empty() {
        s.push_str(&format!(
            "The statement waited for {wanted} on {object}; the sessions holding it had already moved on when pg_migsafe looked."
        ));
    } else {
        let who: Vec<String> = blockers.iter().map(|b| describe_blocker(b, 200)).collect();
        s.push_str(&format!(
            "Waiting for {wanted} on {object}, blocked by {}.",
            who.join("; ")
        ));
    }
    if let Some(ms) = applied_ms {
        s.push_str(&format!(
            " lock_timeout was 0, so pg_migsafe applied migsafe.lock_timeout = {ms}ms to this statement."
        ));
    }
    s
}

// ------------------------------------------------------------------ recovery
//
// Records read back from disk (a crashed backend's spool file, a backlog file a writer
// took but may not have finished) are stored only if the log does not hold them yet:
// a record's identity says which row it would be.

/// What identifies a record in the log. Records the writer builds itself (config
/// changes, alerts) are never read back from disk and have none.
pub fn identity(r: &Record) -> Option<String> {
    Some(match r {
        Record::MigrationStart(s) => format!("migration_start {}", s.migration),
        Record::Statement(s) => format!("statement {} {}", s.migration, s.n),
        Record::MigrationEnd(e) => format!("migration_end {}", e.migration),
        Record::PhaseEvent(e) => format!("phase_event {} {} {}", e.phase_id, e.event, e.at),
        Record::Upgrade(u) => format!("upgrade {} {}", u.at, u.to_version),
        Record::Config(_) | Record::Alert(_) => return None,
    })
}

/// The identity of a row already in the log, from its kind and the record's fields
/// (what the writer's recovery query reads back).
pub fn row_identity(kind: &str, record: &serde_json::Value) -> Option<String> {
    let f = |k: &str| -> Option<String> {
        match record.get(k)? {
            serde_json::Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        }
    };
    Some(match kind {
        "migration_start" | "migration_end" => format!("{kind} {}", f("migration")?),
        "statement" => format!("statement {} {}", f("migration")?, f("n")?),
        "phase_event" => format!(
            "phase_event {} {} {}",
            f("phase_id")?,
            f("event")?,
            f("at")?
        ),
        "upgrade" => format!("upgrade {} {}", f("at")?, f("to_version")?),
        _ => return None,
    })
}

/// What a writer stores of the records one backend's spool file holds after a crash
/// (`records`: the file's records in order, with their JSON text; `in_log`: the
/// identities the log already holds among them). A record written twice (a failing
/// statement's record is spooled when its error is reported and again when its
/// transaction aborts) counts once, as last written. A migration whose end is in the
/// file or the log is complete without its start (its end carries the start's facts);
/// one without an end never finished: its start (unless stored already) and an end
/// with outcome `never_finished`, counting the statements the file holds, are stored.
pub fn recover(
    records: &[(String, Record)],
    in_log: &std::collections::HashSet<String>,
    now_us: i64,
    warn_duration_ms: i64,
) -> Vec<(String, Record)> {
    use std::collections::{HashMap, HashSet};
    let ids: Vec<Option<String>> = records.iter().map(|(_, r)| identity(r)).collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            last.insert(id, i);
        }
    }
    let ended: HashSet<&str> = records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::MigrationEnd(e) => Some(e.migration.as_str()),
            _ => None,
        })
        .chain(
            in_log
                .iter()
                .filter_map(|i| i.strip_prefix("migration_end ")),
        )
        .collect();
    let mut out = Vec::new();
    let mut unfinished: Vec<&MigrationStart> = Vec::new();
    for (i, (text, r)) in records.iter().enumerate() {
        let Some(id) = &ids[i] else { continue };
        if last.get(id.as_str()) != Some(&i) {
            continue;
        }
        if let Record::MigrationStart(s) = r {
            if ended.contains(s.migration.as_str()) {
                continue;
            }
            unfinished.push(s);
        }
        if !in_log.contains(id) {
            out.push((text.clone(), r.clone()));
        }
    }
    for s in unfinished {
        let (mut statements, mut refused, mut failed) = (0u32, 0u32, 0u32);
        for (i, (_, r)) in records.iter().enumerate() {
            if let (Record::Statement(st), Some(id)) = (r, &ids[i]) {
                if st.migration != s.migration || last.get(id.as_str()) != Some(&i) {
                    continue;
                }
                statements += 1;
                if st.decision == DecisionKind::Refused {
                    refused += 1;
                } else if st.outcome == StatementOutcome::Error {
                    failed += 1;
                }
            }
        }
        let end = Record::MigrationEnd(never_finished(
            s,
            now_us,
            warn_duration_ms,
            statements,
            refused,
            failed,
        ));
        out.push((end.to_json(), end));
    }
    out
}

/// The end of a migration whose backend died before it finished.
pub fn never_finished(
    start: &MigrationStart,
    now_us: i64,
    warn_duration_ms: i64,
    statements: u32,
    refused: u32,
    failed: u32,
) -> MigrationEnd {
    let started = chrono::DateTime::parse_from_rfc3339(&start.started_at)
        .map(|t| t.timestamp_micros())
        .unwrap_or(now_us);
    MigrationEnd {
        migration: start.migration.clone(),
        started_at: start.started_at.clone(),
        ended_at: iso_time(now_us),
        duration_us: now_us - started,
        statements,
        refused,
        failed,
        outcome: MigrationOutcome::NeverFinished,
        xid: None,
        drizzle_hashes: vec![],
        snapshot: None,
        name: start.name.clone(),
        phases: start.phases.clone(),
        over_budget: false,
        warn_duration_ms,
        session: start.session.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt() -> Statement {
        Statement {
            migration: "1-2".into(),
            n: 1,
            started_at: iso_time(0),
            duration_us: 5,
            lock_wait_us: None,
            session: Session {
                database: "app".into(),
                session_user: "deploy".into(),
                current_user: "deploy".into(),
                application_name: Some("drizzle".into()),
                client_addr: None,
                pid: 42,
            },
            xid: Some(7),
            command_tag: "DROP TABLE".into(),
            statement: "DROP TABLE t".into(),
            statement_truncated: false,
            statement_bytes: 12,
            nesting: 0,
            objects: vec![],
            findings: vec![FindingRecord {
                rule: "drop-table".into(),
                severity: "destructive".into(),
                object: "table public.t".into(),
            }],
            decision: DecisionKind::Refused,
            phase_id: None,
            outcome: StatementOutcome::Error,
            sqlstate: Some("MS001".into()),
            error: Some("refused".into()),
            lock_timeout_ms: None,
            blockers: vec![],
            lock_attempts: vec![],
            lock_attempts_total: 0,
            lock_retry_exhausted: false,
        }
    }

    fn start(key: &str) -> MigrationStart {
        MigrationStart {
            migration: key.into(),
            started_at: iso_time(1_000_000),
            session: stmt().session,
            name: Some("m".into()),
            phases: vec![],
            first_statement: "DROP TABLE t".into(),
        }
    }

    fn rec(r: Record) -> (String, Record) {
        (r.to_json(), r)
    }

    fn stmt_n(key: &str, n: u32, refused: bool) -> Record {
        let mut s = stmt();
        s.migration = key.into();
        s.n = n;
        if !refused {
            s.decision = DecisionKind::Allowed;
            s.outcome = StatementOutcome::Ok;
        }
        Record::Statement(s)
    }

    #[test]
    fn recovery_ends_an_unfinished_migration_and_stores_what_the_log_lacks() {
        let file = vec![
            rec(Record::MigrationStart(start("1-2"))),
            rec(stmt_n("1-2", 1, false)),
            rec(stmt_n("1-2", 2, true)),
        ];
        let in_log = ["statement 1-2 1".to_string()].into_iter().collect();
        let out = recover(&file, &in_log, 3_000_000, 30_000);
        let kinds: Vec<_> = out.iter().map(|(_, r)| identity(r).unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "migration_start 1-2",
                "statement 1-2 2",
                "migration_end 1-2"
            ]
        );
        let Record::MigrationEnd(e) = &out[2].1 else {
            panic!()
        };
        assert_eq!(e.outcome, MigrationOutcome::NeverFinished);
        assert_eq!((e.statements, e.refused, e.failed), (2, 1, 0));
        assert_eq!(e.duration_us, 2_000_000);
        assert_eq!(e.name.as_deref(), Some("m"));
        // The texts are what was spooled, so that the stored rows are the same records.
        assert_eq!(out[1].0, file[2].0);
    }

    #[test]
    fn recovery_of_a_finished_migration_stores_no_start_and_no_second_end() {
        let end = never_finished(&start("1-2"), 2_000_000, 0, 1, 0, 0);
        let end = Record::MigrationEnd(MigrationEnd {
            outcome: MigrationOutcome::Committed,
            ..end
        });
        let file = vec![
            rec(Record::MigrationStart(start("1-2"))),
            rec(stmt_n("1-2", 1, false)),
            rec(end),
        ];
        let none = std::collections::HashSet::new();
        let out = recover(&file, &none, 9_000_000, 0);
        let ids: Vec<_> = out.iter().map(|(_, r)| identity(r).unwrap()).collect();
        assert_eq!(ids, ["statement 1-2 1", "migration_end 1-2"]);
        // Everything already stored: nothing again.
        let all = ids.into_iter().collect();
        assert!(recover(&file, &all, 9_000_000, 0).is_empty());
        // The end in the log (not in the file) also completes it.
        let ended = ["migration_end 1-2".to_string()].into_iter().collect();
        let out = recover(&file[..2], &ended, 9_000_000, 0);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_record_spooled_twice_counts_once_as_last_written() {
        // A failing statement is spooled when its error is reported and again when its
        // transaction aborts (with its final duration).
        let mut first = stmt_n("1-2", 1, true);
        let Record::Statement(s) = &mut first else {
            panic!()
        };
        s.duration_us = 1;
        let file = vec![
            rec(Record::MigrationStart(start("1-2"))),
            rec(first),
            rec(stmt_n("1-2", 1, true)),
        ];
        let out = recover(&file, &Default::default(), 2_000_000, 0);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].0, file[2].0);
        let Record::MigrationEnd(e) = &out[2].1 else {
            panic!()
        };
        assert_eq!((e.statements, e.refused), (1, 1));
    }

    #[test]
    fn row_identity_matches_record_identity() {
        let records = [
            Record::MigrationStart(start("1-2")),
            stmt_n("1-2", 7, false),
            Record::MigrationEnd(never_finished(&start("1-2"), 5, 0, 0, 0, 0)),
            Record::PhaseEvent(PhaseEvent {
                phase_id: 3,
                event: "approved".into(),
                by_role: "dba".into(),
                at: iso_time(5),
                detail: None,
            }),
            Record::Upgrade(Upgrade {
                at: iso_time(5),
                from_version: "0.1.0".into(),
                to_version: "0.2.0".into(),
                by_role: "postgres".into(),
            }),
        ];
        for r in records {
            let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
            assert_eq!(row_identity(r.kind(), &v), identity(&r), "{}", r.kind());
        }
    }

    #[test]
    fn records_round_trip_through_json_with_their_kind() {
        let r = Record::Statement(stmt());
        let j = r.to_json();
        assert!(j.starts_with(r#"{"kind":"statement""#), "{j}");
        let back: Record = serde_json::from_str(&j).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.kind(), "statement");
    }

    #[test]
    fn iso_time_is_utc_with_microseconds() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            iso_time(1_795_000_000_123_456),
            "2026-11-18T11:06:40.123456+00:00"
        );
        assert_eq!(iso_time(-1), "1969-12-31T23:59:59.999999+00:00");
    }

    #[test]
    fn cut_statement_respects_char_boundaries() {
        assert_eq!(cut_statement("abc", 3), ("abc".into(), false));
        assert_eq!(cut_statement("abcd", 3), ("abc".into(), true));
        // "é" is two bytes: cutting in its middle backs off.
        assert_eq!(cut_statement("aé", 2), ("a".into(), true));
        assert_eq!(cut_statement("", 0), ("".into(), false));
    }

    fn chain(records: &[&str]) -> Vec<(i64, String, String)> {
        let mut prev = GENESIS.to_string();
        let mut out = vec![];
        for (i, r) in records.iter().enumerate() {
            let seq = i as i64 + 1;
            let h = chain_hash(&prev, seq, r);
            out.push((seq, r.to_string(), h.clone()));
            prev = h;
        }
        out
    }

    #[test]
    fn row_content_covers_the_indexed_columns() {
        let a = chain_hash(GENESIS, 1, &row_content("statement", Some("m1"), "{}"));
        assert_ne!(
            a,
            chain_hash(GENESIS, 1, &row_content("config", Some("m1"), "{}"))
        );
        assert_ne!(
            a,
            chain_hash(GENESIS, 1, &row_content("statement", Some("m2"), "{}"))
        );
        assert_ne!(
            a,
            chain_hash(GENESIS, 1, &row_content("statement", None, "{}"))
        );
        let r = Record::Statement(stmt());
        assert_eq!(migration_of(&r), Some("1-2"));
    }

    #[test]
    fn chain_hash_is_sha256_hex_and_depends_on_everything() {
        let h = chain_hash(GENESIS, 1, "{}");
        assert_eq!(h.len(), 64);
        assert!(h
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_uppercase()));
        assert_ne!(h, chain_hash(GENESIS, 2, "{}"));
        assert_ne!(h, chain_hash(GENESIS, 1, "{ }"));
        assert_ne!(h, chain_hash(&h, 1, "{}"));
        // The known SHA-256 of the empty input, as a check of the primitive.
        let mut d = Sha256::new();
        d.update(b"");
        let empty: String = d.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            empty,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn verify_accepts_an_intact_chain_and_the_empty_log() {
        assert_eq!(
            verify_chain(chain(&["a", "b", "c"])),
            Verdict::Ok {
                rows: 3,
                last_seq: 3
            }
        );
        assert_eq!(
            verify_chain(Vec::new()),
            Verdict::Ok {
                rows: 0,
                last_seq: 0
            }
        );
    }

    #[test]
    fn verify_finds_a_changed_row() {
        let mut rows = chain(&["a", "b", "c", "d"]);
        rows[2].1 = "C".into();
        match verify_chain(rows) {
            Verdict::Broken {
                rows_ok,
                seq,
                reason,
            } => {
                assert_eq!((rows_ok, seq), (2, 3));
                assert!(reason.contains("changed"), "{reason}");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn verify_finds_a_recomputed_hash_by_the_next_link() {
        // Someone changes row 2 and recomputes its hash: row 3's link breaks.
        let mut rows = chain(&["a", "b", "c"]);
        rows[1].1 = "B".into();
        rows[1].2 = chain_hash(&rows[0].2, 2, "B");
        match verify_chain(rows) {
            Verdict::Broken { seq, .. } => assert_eq!(seq, 3),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn verify_finds_deleted_and_duplicated_rows() {
        let mut rows = chain(&["a", "b", "c"]);
        rows.remove(1);
        match verify_chain(rows) {
            Verdict::Broken { seq, reason, .. } => {
                assert_eq!(seq, 3);
                assert!(reason.contains("rows 2 to 2 are missing"), "{reason}");
            }
            v => panic!("{v:?}"),
        }
        let mut rows = chain(&["a", "b"]);
        rows.insert(1, rows[0].clone());
        assert!(matches!(verify_chain(rows), Verdict::Broken { seq: 1, .. }));
        // Removing the first row is caught too (the chain starts at 1).
        let mut rows = chain(&["a", "b"]);
        rows.remove(0);
        assert!(matches!(verify_chain(rows), Verdict::Broken { seq: 2, .. }));
    }

    #[test]
    fn alerts_escalate_once_per_level() {
        let s = 1_000_000;
        assert_eq!(alert_due(5 * s, 10_000, 30_000, None), None);
        assert_eq!(
            alert_due(10 * s, 10_000, 30_000, None),
            Some(AlertLevel::Warning)
        );
        assert_eq!(
            alert_due(11 * s, 10_000, 30_000, Some(AlertLevel::Warning)),
            None
        );
        assert_eq!(
            alert_due(31 * s, 10_000, 30_000, Some(AlertLevel::Warning)),
            Some(AlertLevel::Critical)
        );
        assert_eq!(
            alert_due(31 * s, 10_000, 30_000, None),
            Some(AlertLevel::Critical)
        );
        assert_eq!(
            alert_due(99 * s, 10_000, 30_000, Some(AlertLevel::Critical)),
            None
        );
        // 0 disables a level.
        assert_eq!(alert_due(99 * s, 0, 0, None), None);
        assert_eq!(
            alert_due(99 * s, 0, 30_000, None),
            Some(AlertLevel::Critical)
        );
    }

    #[test]
    fn events_for_refusals_failures_and_long_runs_only() {
        let refused = Record::Statement(stmt());
        let e = event_of(&refused).unwrap();
        assert_eq!(e["event"], "refused");
        assert_eq!(e["rules"][0], "drop-table");
        assert!(log_line(&e).starts_with("pg_migsafe_event {\""));

        let mut failed = stmt();
        failed.decision = DecisionKind::Allowed;
        failed.sqlstate = Some("55P03".into());
        failed.statement = "x".repeat(10_000);
        let e = event_of(&Record::Statement(failed.clone())).unwrap();
        assert_eq!(e["event"], "failed");
        assert!(e.to_string().len() < 8000);

        failed.outcome = StatementOutcome::Ok;
        assert!(event_of(&Record::Statement(failed)).is_none());
    }

    #[test]
    fn config_changes_lists_added_changed_and_removed() {
        let old: BTreeMap<_, _> = [("a", "1"), ("b", "2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let new: BTreeMap<_, _> = [("a", "1"), ("b", "3"), ("c", "4")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let c = config_changes(&old, &new);
        assert_eq!(c.len(), 2);
        assert_eq!(c["b"], [Some("2".into()), Some("3".into())]);
        assert_eq!(c["c"], [None, Some("4".into())]);
        let c = config_changes(&new, &old);
        assert_eq!(c["c"], [Some("4".into()), None]);
        assert!(config_changes(&old, &old).is_empty());
    }

    #[test]
    fn lock_conflict_table_matches_the_documentation() {
        let ae = lock_mode("AccessExclusiveLock").unwrap();
        let sre = lock_mode("ShareRowExclusiveLock").unwrap();
        let rx = lock_mode("RowExclusiveLock").unwrap();
        let as_ = lock_mode("AccessShareLock").unwrap();
        let sh = lock_mode("ShareLock").unwrap();
        for m in 1..=8 {
            assert!(lock_conflicts(ae, m), "AccessExclusive vs {m}");
            // The table is symmetric.
            for n in 1..=8 {
                assert_eq!(lock_conflicts(m, n), lock_conflicts(n, m), "{m} {n}");
            }
        }
        assert!(!lock_conflicts(as_, rx));
        assert!(lock_conflicts(sre, rx));
        assert!(lock_conflicts(sre, sre));
        assert!(!lock_conflicts(sh, sh));
        assert!(lock_conflicts(sh, rx));
        assert!(!lock_conflicts(sre, as_));
        assert_eq!(lock_mode("nonsense"), None);
    }

    #[test]
    fn blockers_detail_names_pids_modes_and_queries() {
        let d = blockers_detail(
            "table public.t",
            "AccessExclusiveLock",
            Some(5000),
            &[Blocker {
                pid: 77,
                mode: "RowExclusiveLock".into(),
                state: Some("idle in transaction".into()),
                query: Some("UPDATE t SET a = 1".into()),
            }],
        );
        assert!(
            d.contains(
                "pid 77 (RowExclusiveLock, idle in transaction) running: UPDATE t SET a = 1"
            ),
            "{d}"
        );
        assert!(d.contains("migsafe.lock_timeout = 5000ms"), "{d}");
    }

    #[test]
    fn oversized_events_and_records_are_shrunk_not_lost() {
        let long = "x".repeat(9000);
        let e = serde_json::json!({"event": "phase", "by": long.clone(), "detail": "short",
                                   "objects": (0..2000).map(|i| format!("table public.t{i}")).collect::<Vec<_>>()});
        let f = fitted_event(e);
        assert!(
            f.to_string().len() <= EVENT_MAX_BYTES,
            "{}",
            f.to_string().len()
        );
        assert_eq!(f["event"], "phase");
        assert_eq!(f["detail"], "short");
        assert_eq!(f["truncated"], true);
        assert!(f["by"].as_str().unwrap().ends_with('…'));
        assert!(!f["objects"].as_array().unwrap().is_empty());

        let small = serde_json::json!({"event": "phase", "by": "alice"});
        assert_eq!(fitted_event(small.clone()), small);

        // A statement record with a long object list still parses as a record.
        let r = Record::Statement(Statement {
            migration: "1-2".into(),
            n: 1,
            started_at: iso_time(0),
            duration_us: 1,
            lock_wait_us: None,
            session: Session {
                session_user: long.clone(),
                ..Default::default()
            },
            xid: None,
            command_tag: "DROP TABLE".into(),
            statement: long.clone(),
            statement_truncated: false,
            statement_bytes: long.len(),
            nesting: 0,
            objects: (0..5000).map(|i| format!("table public.t{i}")).collect(),
            findings: (0..5000)
                .map(|i| FindingRecord {
                    rule: "drop-table".into(),
                    severity: "destructive".into(),
                    object: format!("table public.t{i}"),
                })
                .collect(),
            decision: DecisionKind::Refused,
            phase_id: None,
            outcome: StatementOutcome::Error,
            sqlstate: Some("MS001".into()),
            error: Some(long.clone()),
            lock_timeout_ms: None,
            blockers: vec![],
            lock_attempts: vec![],
            lock_attempts_total: 0,
            lock_retry_exhausted: false,
        });
        let j = record_json(&r, 16_384);
        assert!(j.len() <= 16_384, "{}", j.len());
        let back: Record = serde_json::from_str(&j).unwrap();
        assert_eq!(back.kind(), "statement");
        assert!(j.contains("\"truncated\":true"));
        let fits = record_json(&r, 10_000_000);
        assert_eq!(fits, r.to_json());
    }

    #[test]
    fn an_unstorable_row_keeps_size_hash_and_beginning() {
        let row: serde_json::Value =
            serde_json::from_str(&unstorable_row("statement", Some("1-2"), "abc", "bad")).unwrap();
        assert_eq!(row["kind"], "unstorable");
        assert_eq!(row["original_kind"], "statement");
        assert_eq!(row["bytes"], 3);
        assert_eq!(
            row["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(row["excerpt"], "abc");
    }

    #[test]
    fn notify_payloads_carry_no_statement_text() {
        let e = serde_json::json!({"event": "refused", "rules": ["drop-table"], "statement": "DROP TABLE secret_plans",
                                   "objects": ["table public.secret_plans"], "error": "x", "user": "deploy"});
        let p = notify_payload(&e);
        assert_eq!(
            p,
            serde_json::json!({"event": "refused", "rules": ["drop-table"], "user": "deploy"})
        );
    }
}
