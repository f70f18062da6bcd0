//! Policy: turns findings and settings into a decision, and renders the messages a
//! user sees. Plain Rust, no server.

use super::phase::{
    cascade_shortfall, standing_shortfall, suggested_call, target_of, ActivePhase, PhaseKind,
    Target,
};
use super::rules::{Rule, RuleId, Severity, TableWork, RETIRED, RULES};
use thiserror::Error;

/// `migsafe.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Warn,
    Off,
}

/// The settings the policy needs, read from the GUCs by the pgrx layer.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub block_risky: bool,
    /// `migsafe.block_risky_rows`: in enforce mode, risky work (rewrite, scan, index
    /// build) over a table with more rows than this — or of unknown size — is refused;
    /// negative: never.
    pub block_risky_rows: i64,
    pub disabled_rules: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Enforce,
            block_risky: false,
            block_risky_rows: -1,
            disabled_rules: Vec::new(),
        }
    }
}

/// One hazard found in one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: &'static Rule,
    /// What it applies to, e.g. `column public.users.legacy_email`.
    pub object: String,
    /// Facts for DETAIL (e.g. `type varchar(200) -> varchar(50)`).
    pub facts: Vec<String>,
    /// Objects a CASCADE would also drop (or TRUNCATE … CASCADE would empty).
    pub dependents: Vec<String>,
    /// The size of the table the rule's work (rewrite, scan, index build) goes over,
    /// when the classifier measured it.
    pub size: Option<TableSize>,
    /// The relation the object belongs to when its name does not say (an index's
    /// table, e.g. `public.users`): a phase entry for the relation covers it.
    pub owner: Option<String>,
    /// The partition the finding drops or detaches, with its place in its partitioned
    /// table: what a standing approval (`migsafe.grant_standing_approval`) judges.
    pub partition: Option<PartitionFact>,
}

/// A partition as the catalog describes it, for standing approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFact {
    /// Its identity, e.g. `public.events_p2026_01`.
    pub partition: String,
    /// Its partitioned table's identity, e.g. `public.events`.
    pub parent: String,
    /// Where its range ends (the exclusive upper bound of a range partition on one
    /// date or timestamp column), in microseconds since 1970-01-01 UTC; None for any
    /// other partition (a list or hash partition, the default one, MAXVALUE, a key on
    /// other types or on several columns).
    pub ends: Option<i64>,
    /// A plain table (not itself partitioned): what the recycle bin can keep.
    pub leaf: bool,
}

/// A table's size as the catalog estimates it (pg_class.reltuples / relpages).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TableSize {
    /// Never analysed: the server does not know (never taken for empty).
    Unknown,
    Estimated {
        rows: f64,
        bytes: i64,
    },
}

impl TableSize {
    /// Above `limit` rows? Unknown counts as above.
    pub fn above(self, limit: i64) -> bool {
        match self {
            TableSize::Unknown => true,
            TableSize::Estimated { rows, .. } => rows > limit as f64,
        }
    }

    /// The DETAIL fact, e.g. `Table size: about 1200000 rows, 96 MB (planner's
    /// estimate); the table rewrite takes roughly 1 s`.
    pub fn fact(self, work: TableWork) -> String {
        match self {
            TableSize::Unknown => {
                "Table size: unknown (never analysed), so not taken for empty".into()
            }
            TableSize::Estimated { rows, bytes } => {
                let mut s = format!(
                    "Table size: about {rows:.0} rows, {} (planner's estimate)",
                    human_bytes(bytes)
                );
                if let Some(d) = work_duration(bytes, work) {
                    s.push_str(&format!("; the {} takes {d}", work.as_str()));
                }
                s
            }
        }
    }
}

/// How fast PostgreSQL does each kind of table work, in bytes of table per second:
/// round figures at or below what `make bench` measures on the reference machine
/// (docs/PERFORMANCE.md, "Table work rates"), so that estimates lean long.
pub const WORK_RATES: [(TableWork, f64); 3] = [
    (TableWork::Scan, 400.0 * MB),
    (TableWork::Rewrite, 100.0 * MB),
    (TableWork::Build, 50.0 * MB),
];
const MB: f64 = 1024.0 * 1024.0;

/// Roughly how long `work` takes on a table of `bytes`: "under a second",
/// "roughly 40 s", "roughly 12 min", "roughly 3 h". None for catalog-only work.
pub fn work_duration(bytes: i64, work: TableWork) -> Option<String> {
    let rate = WORK_RATES.iter().find(|(w, _)| *w == work)?.1;
    let secs = bytes.max(0) as f64 / rate;
    Some(if secs < 1.0 {
        "under a second".into()
    } else if secs < 90.0 {
        format!("roughly {secs:.0} s")
    } else if secs < 90.0 * 60.0 {
        format!("roughly {:.0} min", secs / 60.0)
    } else {
        format!("roughly {:.0} h", secs / 3600.0)
    })
}

fn human_bytes(b: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

/// Is a risky finding refused for its table's size alone?
fn too_big(f: &Finding, settings: &Settings) -> bool {
    settings.block_risky_rows >= 0
        && f.rule.severity == Severity::Risky
        && f.rule.work.touches_rows()
        && f.size.is_some_and(|s| s.above(settings.block_risky_rows))
}

impl Finding {
    pub fn new(rule: &'static Rule, object: impl Into<String>) -> Self {
        Finding {
            rule,
            object: object.into(),
            facts: Vec::new(),
            dependents: Vec::new(),
            size: None,
            owner: None,
            partition: None,
        }
    }
    pub fn fact(mut self, f: impl Into<String>) -> Self {
        self.facts.push(f.into());
        self
    }
}

/// What happens to the statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to say.
    Allow,
    /// Runs, with a WARNING for each finding.
    Warn(Vec<Finding>),
    /// ERROR; the first finding leads the message.
    Refuse(Vec<Finding>),
}

#[derive(Debug, Error, PartialEq)]
pub enum SettingsError {
    #[error(
        "unknown rule id \"{0}\" in migsafe.disabled_rules (see SELECT id FROM migsafe.rules())"
    )]
    UnknownRule(String),
    #[error("rule \"{0}\" protects pg_migsafe itself and cannot be disabled")]
    ProtectedRule(String),
}

/// Parses `migsafe.disabled_rules`: a comma- or space-separated list of rule ids.
pub fn parse_disabled_rules(s: &str) -> Result<Vec<String>, SettingsError> {
    let mut out = Vec::new();
    for id in s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
    {
        let id = id.trim().to_ascii_lowercase();
        if RETIRED.iter().any(|(retired, _, _)| *retired == id) {
            continue; // a rule that no longer exists has nothing to disable
        }
        match RULES.iter().find(|r| r.id.as_str() == id) {
            None => return Err(SettingsError::UnknownRule(id)),
            Some(r) if r.protects_extension => return Err(SettingsError::ProtectedRule(id)),
            Some(_) => {
                if !out.contains(&id) {
                    out.push(id)
                }
            }
        }
    }
    Ok(out)
}

/// Decides what to do with a statement's findings.
pub fn decide(findings: Vec<Finding>, settings: &Settings) -> Decision {
    if settings.mode == Mode::Off {
        return Decision::Allow;
    }
    let mut refuse = Vec::new();
    let mut warn = Vec::new();
    for f in findings {
        let r = f.rule;
        if r.check_only {
            continue;
        }
        if r.protects_extension {
            refuse.push(f);
            continue;
        }
        if settings.disabled_rules.iter().any(|d| d == r.id.as_str()) {
            continue;
        }
        let blocking = settings.mode == Mode::Enforce
            && (r.severity == Severity::Destructive
                || (r.severity == Severity::Risky && settings.block_risky)
                || too_big(&f, settings));
        match (blocking, r.severity) {
            (_, Severity::Safe) => {}
            (true, _) => refuse.push(f),
            (false, _) => warn.push(f),
        }
    }
    if !refuse.is_empty() {
        // Keep everything in the error: the warnings are facts about the same statement.
        refuse.extend(warn);
        Decision::Refuse(refuse)
    } else if !warn.is_empty() {
        Decision::Warn(warn)
    } else {
        Decision::Allow
    }
}

/// The text of an ERROR or WARNING, as the user (and the server log) sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub message: String,
    pub detail: String,
    pub hint: String,
}

fn how_to_run(f: &Finding, settings: &Settings, approval: Option<&str>) -> String {
    let rule = f.rule;
    if let (Some(call), false, Severity::Destructive) =
        (approval, rule.protects_extension, rule.severity)
    {
        return format!("approve it with a contract phase: {call}");
    }
    if rule.protects_extension {
        "only a DBA can allow it, by setting migsafe.mode = 'off' in postgresql.conf and reloading"
            .into()
    } else if rule.severity == Severity::Risky && !settings.block_risky && too_big(f, settings) {
        format!(
            "the table is over migsafe.block_risky_rows ({} rows); to run it anyway a DBA raises that setting, or adds '{}' to migsafe.disabled_rules, in postgresql.conf and reloads",
            settings.block_risky_rows, rule.id
        )
    } else if rule.severity == Severity::Risky && settings.block_risky {
        format!(
            "to run it anyway a DBA sets migsafe.block_risky = off, or adds '{}' to migsafe.disabled_rules, in postgresql.conf and reloads",
            rule.id
        )
    } else {
        format!(
            "to run it anyway a DBA sets migsafe.mode = 'warn', or adds '{}' to migsafe.disabled_rules, in postgresql.conf and reloads",
            rule.id
        )
    }
}

const MAX_LISTED: usize = 20;

fn facts_line(f: &Finding) -> String {
    let r = f.rule;
    let mut s = format!(
        "Rule {} ({}): takes lock {}, table work: {}, data loss: {}.",
        r.id,
        r.severity.as_str(),
        r.lock,
        r.work.as_str(),
        if r.data_loss { "yes" } else { "no" }
    );
    let size = f.size.map(|s| s.fact(f.rule.work));
    for fact in f.facts.iter().chain(size.iter()) {
        s.push(' ');
        let mut chars = fact.chars();
        if let Some(c) = chars.next() {
            s.extend(c.to_uppercase());
            s.push_str(chars.as_str());
        }
        if !fact.ends_with('.') {
            s.push('.');
        }
    }
    if !f.dependents.is_empty() {
        s.push_str(&format!(
            " It would also drop {} object(s): ",
            f.dependents.len()
        ));
        let shown: Vec<&str> = f
            .dependents
            .iter()
            .take(MAX_LISTED)
            .map(|d| d.as_str())
            .collect();
        s.push_str(&shown.join(", "));
        if f.dependents.len() > MAX_LISTED {
            s.push_str(&format!(" and {} more", f.dependents.len() - MAX_LISTED));
        }
        s.push('.');
    }
    s
}

/// Renders a refusal. `statement` is the statement's own text (it may be one of many
/// in the query string), shortened here. `approval` is the begin_phase() call that
/// would approve it, when two-phase approval is installed in the database; `note`
/// a fact about the session's phases (e.g. an open expand phase).
pub fn render_refusal(
    findings: &[Finding],
    settings: &Settings,
    statement: &str,
    approval: Option<&str>,
    note: Option<&str>,
) -> Report {
    let first = &findings[0];
    let r = first.rule;
    let message = format!(
        "pg_migsafe refused {} on {}: {}; {}",
        r.id,
        first.object,
        r.message,
        how_to_run(first, settings, approval)
    );
    let mut detail: Vec<String> = findings.iter().map(facts_line).collect();
    if let Some(n) = note {
        detail.push(n.to_string());
    }
    let stmt = shorten(statement.trim(), 300);
    if !stmt.is_empty() {
        detail.push(format!("Statement: {stmt}"));
    }
    Report {
        message,
        detail: detail.join("\n"),
        hint: hint_text(findings),
    }
}

/// Can a phase approve this refusal? Only when every finding is about a destructive
/// rule: never self-protection, never a risky statement refused by
/// `migsafe.block_risky` or by `migsafe.block_risky_rows` (a DBA's limit that no
/// migration's own phase lifts).
pub fn approvable(findings: &[Finding], settings: &Settings) -> bool {
    findings.iter().all(|f| {
        !f.rule.protects_extension
            && (f.rule.severity == Severity::Destructive
                || (!settings.block_risky && !too_big(f, settings)))
    })
}

/// The NOTICE (SQLSTATE MS003) when a phase approves a statement's destructive
/// findings; `by` names it, e.g. `contract phase 7 (drop legacy)` or `rollback phase 3`.
pub fn render_approval(approved: &[&Finding], by: &str) -> Report {
    let rules: Vec<&str> = approved.iter().map(|f| f.rule.id.as_str()).collect();
    let objects: Vec<&str> = approved.iter().map(|f| f.object.as_str()).collect();
    Report {
        message: format!(
            "pg_migsafe: {} on {} approved by {by}",
            rules.join(", "),
            objects.join(", ")
        ),
        detail: String::new(),
        hint: String::new(),
    }
}

/// What a refusal should add about the session's phases: an open expand phase (which
/// approves nothing), or a contract phase that lists the objects but not everything
/// the CASCADE would also drop.
pub fn refusal_note(
    findings: &[Finding],
    targets: &[Option<Target>],
    active: &[ActivePhase],
) -> Option<String> {
    active
        .iter()
        .find(|p| p.kind == PhaseKind::Expand)
        .map(|p| {
            format!(
                "Expand phase {} ({}) is open in this session: destructive statements wait for the contract phase.",
                p.id, p.name
            )
        })
        .or_else(|| {
            cascade_shortfall(findings, targets, active).map(|(p, missing)| {
                format!(
                    "Contract phase {} ({}) lists the object but not everything the CASCADE would also drop: {}.",
                    p.id,
                    p.name,
                    missing.join(", ")
                )
            })
        })
        .or_else(|| {
            standing_shortfall(findings, active).map(|(p, s, part)| {
                let why = match part.ends {
                    _ if !part.leaf => "it is itself partitioned, and its partitions could not be kept in the recycle bin".to_string(),
                    None => "its range has no end in time (not a range partition on one date or timestamp column, the default partition, or MAXVALUE)".to_string(),
                    Some(e) if e > s.cutoff => format!(
                        "its range ends {}, after the approval's cutoff {}",
                        utc(e),
                        utc(s.cutoff)
                    ),
                    Some(_) => "the statement takes other objects along (CASCADE), or is not a DROP TABLE or DETACH PARTITION".to_string(),
                };
                format!(
                    "Standing approval {} ({}) covers {} but not partition {}: {why}.",
                    p.id,
                    p.name,
                    super::phase::standing_entry(&s.parent, Some(&s.partitions)),
                    part.partition
                )
            })
        })
}

/// Microseconds since 1970 as a UTC timestamp, the way PostgreSQL prints one.
fn utc(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S+00").to_string())
        .unwrap_or_else(|| us.to_string())
}

/// What a refusal should say when a contract phase for the session's role would have
/// approved the statement but an earlier transaction spent it (`spent`: such phases,
/// with when they were spent): a migrator that commits each file on its own needs a
/// phase that covers the whole deploy.
pub fn spent_note(
    findings: &[Finding],
    targets: &[Option<Target>],
    spent: &[(ActivePhase, String)],
) -> Option<String> {
    let phases: Vec<ActivePhase> = spent.iter().map(|(p, _)| p.clone()).collect();
    let p = super::phase::approving_phase(findings, targets, &phases)?;
    let at = spent
        .iter()
        .find(|(q, _)| q.id == p.id)
        .map(|(_, at)| at.as_str())
        .unwrap_or("");
    Some(format!(
        "Contract phase {} ({}) covers it, but was spent by the transaction that used it first (committed at {at}): \
         a phase for a role approves one transaction unless it was opened with deploy => true.",
        p.id, p.name
    ))
}

/// The begin_phase() call a refusal offers: the objects and everything a CASCADE
/// reaches.
pub fn approval_call(findings: &[Finding], targets: &[Option<Target>]) -> Option<String> {
    let mut wanted = targets.to_vec();
    for f in findings {
        wanted.extend(f.dependents.iter().map(|d| target_of(d)));
    }
    suggested_call(&wanted)
}

/// A refusal on a hot standby. Nothing can approve DDL there — the server cannot
/// write, so no phase can be opened on it — and the statement could not run anyway:
/// the message says where DDL belongs instead of offering a `begin_phase` call.
pub fn render_standby_refusal(findings: &[Finding], statement: &str) -> Report {
    let first = &findings[0];
    let r = first.rule;
    let mut detail: Vec<String> = findings.iter().map(facts_line).collect();
    let stmt = shorten(statement.trim(), 300);
    if !stmt.is_empty() {
        detail.push(format!("Statement: {stmt}"));
    }
    Report {
        message: format!(
            "pg_migsafe refused {} on {}: {}; this server is a standby (in recovery): DDL runs on the primary",
            r.id, first.object, r.message
        ),
        detail: detail.join("\n"),
        hint: "Connect to the primary and run the migration there; a contract phase opened there approves it (migsafe.begin_phase cannot run on a standby).".into(),
    }
}

/// Renders one warning (risky, or destructive in warn mode).
pub fn render_warning(f: &Finding) -> Report {
    let r = f.rule;
    Report {
        message: format!("pg_migsafe: {} on {}: {}", r.id, f.object, r.message),
        detail: facts_line(f),
        hint: r.safe_alternative.to_string(),
    }
}

fn hint_text(findings: &[Finding]) -> String {
    let mut seen: Vec<RuleId> = Vec::new();
    let mut out = Vec::new();
    for f in findings {
        if !seen.contains(&f.rule.id) {
            seen.push(f.rule.id);
            out.push(f.rule.safe_alternative);
        }
    }
    out.join(" ")
}

/// Cuts `s` to at most `max` characters (not bytes), marking the cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::known;

    fn s(mode: Mode) -> Settings {
        Settings {
            mode,
            ..Default::default()
        }
    }

    #[test]
    fn destructive_is_refused_in_enforce_and_warned_in_warn() {
        let f = Finding::new(known(RuleId::DropTable), "table public.users");
        assert!(matches!(
            decide(vec![f.clone()], &s(Mode::Enforce)),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            decide(vec![f.clone()], &s(Mode::Warn)),
            Decision::Warn(_)
        ));
        assert_eq!(decide(vec![f], &s(Mode::Off)), Decision::Allow);
    }

    #[test]
    fn a_refusal_on_a_standby_says_where_ddl_belongs_and_offers_no_phase() {
        let f = Finding::new(known(RuleId::DropTable), "table public.users");
        let r = render_standby_refusal(&[f], "DROP TABLE users");
        assert!(r
            .message
            .starts_with("pg_migsafe refused drop-table on table public.users: "));
        assert!(r
            .message
            .ends_with("this server is a standby (in recovery): DDL runs on the primary"));
        assert!(!r.message.contains("begin_phase("), "{}", r.message);
        assert!(
            r.detail.ends_with("Statement: DROP TABLE users"),
            "{}",
            r.detail
        );
        assert!(r.hint.contains("primary"));
    }

    #[test]
    fn risky_warns_unless_block_risky() {
        let f = Finding::new(known(RuleId::CreateIndex), "table public.users");
        assert!(matches!(
            decide(vec![f.clone()], &s(Mode::Enforce)),
            Decision::Warn(_)
        ));
        let st = Settings {
            block_risky: true,
            ..Default::default()
        };
        assert!(matches!(decide(vec![f.clone()], &st), Decision::Refuse(_)));
        let st = Settings {
            block_risky: true,
            mode: Mode::Warn,
            ..Default::default()
        };
        assert!(matches!(decide(vec![f], &st), Decision::Warn(_)));
    }

    #[test]
    fn protection_ignores_warn_mode_and_disabled_rules() {
        let f = Finding::new(known(RuleId::ProtectExtension), "extension pg_migsafe");
        assert!(matches!(
            decide(vec![f.clone()], &s(Mode::Warn)),
            Decision::Refuse(_)
        ));
        assert_eq!(decide(vec![f], &s(Mode::Off)), Decision::Allow);
        assert_eq!(
            parse_disabled_rules("protect-settings"),
            Err(SettingsError::ProtectedRule("protect-settings".into()))
        );
    }

    #[test]
    fn risky_work_on_a_big_or_unknown_table_is_refused_over_the_limit() {
        let st = Settings {
            block_risky_rows: 1_000_000,
            ..Default::default()
        };
        let sized = |size| Finding {
            size,
            ..Finding::new(known(RuleId::CreateIndex), "table public.users")
        };
        let big = TableSize::Estimated {
            rows: 2e6,
            bytes: 300 << 20,
        };
        let small = TableSize::Estimated {
            rows: 10.0,
            bytes: 8192,
        };
        assert!(matches!(
            decide(vec![sized(Some(big))], &st),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            decide(vec![sized(Some(TableSize::Unknown))], &st),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            decide(vec![sized(Some(small))], &st),
            Decision::Warn(_)
        ));
        assert!(matches!(decide(vec![sized(None)], &st), Decision::Warn(_)));
        // Off by default, and only in enforce mode.
        assert!(matches!(
            decide(vec![sized(Some(big))], &Settings::default()),
            Decision::Warn(_)
        ));
        let warn = Settings {
            mode: Mode::Warn,
            ..st.clone()
        };
        assert!(matches!(
            decide(vec![sized(Some(big))], &warn),
            Decision::Warn(_)
        ));
        // Catalog-only risky work is not about size.
        let renamed = Finding {
            size: Some(big),
            ..Finding::new(known(RuleId::ReplicaIdentity), "table public.users")
        };
        assert!(matches!(decide(vec![renamed], &st), Decision::Warn(_)));
        let r = render_refusal(
            &[sized(Some(big))],
            &st,
            "CREATE INDEX i ON users (email)",
            None,
            None,
        );
        assert!(
            r.message
                .contains("migsafe.block_risky_rows (1000000 rows)"),
            "{}",
            r.message
        );
        assert!(
            r.detail.contains(
                "Table size: about 2000000 rows, 300 MB (planner's estimate); \
                 the index build takes roughly 6 s."
            ),
            "{}",
            r.detail
        );
    }

    #[test]
    fn the_size_says_roughly_how_long_the_work_takes() {
        let mb = |n: i64| n * 1024 * 1024;
        assert_eq!(
            work_duration(mb(10), TableWork::Scan).as_deref(),
            Some("under a second")
        );
        assert_eq!(
            work_duration(mb(3000), TableWork::Rewrite).as_deref(),
            Some("roughly 30 s")
        );
        assert_eq!(
            work_duration(mb(50 * 600), TableWork::Build).as_deref(),
            Some("roughly 10 min")
        );
        assert_eq!(
            work_duration(mb(100 * 3600 * 5), TableWork::Rewrite).as_deref(),
            Some("roughly 5 h")
        );
        assert_eq!(work_duration(mb(1000), TableWork::None), None);
        let s = TableSize::Estimated {
            rows: 5000.0,
            bytes: 262144,
        };
        assert_eq!(
            s.fact(TableWork::Scan),
            "Table size: about 5000 rows, 256 kB (planner's estimate); the full scan takes under a second"
        );
        assert_eq!(
            s.fact(TableWork::None),
            "Table size: about 5000 rows, 256 kB (planner's estimate)"
        );
        assert!(TableSize::Unknown
            .fact(TableWork::Rewrite)
            .contains("unknown"));
    }

    #[test]
    fn approval_policy() {
        let drop = Finding::new(known(RuleId::DropTable), "table public.t");
        let idx = Finding::new(known(RuleId::CreateIndex), "table public.t");
        let prot = Finding::new(known(RuleId::ProtectSchema), "schema migsafe");
        let st = Settings::default();
        assert!(approvable(&[drop.clone(), idx.clone()], &st));
        assert!(!approvable(&[drop.clone(), prot], &st));
        let blocking = Settings {
            block_risky: true,
            ..Settings::default()
        };
        assert!(!approvable(&[drop.clone(), idx.clone()], &blocking));
        // A contract phase does not lift migsafe.block_risky_rows either.
        let big = Finding {
            size: Some(TableSize::Estimated {
                rows: 1e6,
                bytes: 1 << 30,
            }),
            ..Finding::new(known(RuleId::AlterColumnTypeRewrite), "column public.t.c")
        };
        let limit = Settings {
            block_risky_rows: 1000,
            ..Settings::default()
        };
        assert!(!approvable(&[drop.clone(), big.clone()], &limit));
        assert!(approvable(&[drop.clone(), big], &Settings::default()));
        assert!(approvable(&[drop.clone(), idx], &limit));
        let r = render_approval(&[&drop], "contract phase 7 (cleanup)");
        assert_eq!(
            r.message,
            "pg_migsafe: drop-table on table public.t approved by contract phase 7 (cleanup)"
        );
        let targets = vec![target_of("table public.t")];
        let expand = ActivePhase {
            id: 3,
            kind: PhaseKind::Expand,
            name: "add x".into(),
            objects: vec![],
            standing: None,
        };
        assert!(
            refusal_note(std::slice::from_ref(&drop), &targets, &[expand])
                .unwrap()
                .starts_with("Expand phase 3 (add x)")
        );
        assert_eq!(
            refusal_note(std::slice::from_ref(&drop), &targets, &[]),
            None
        );
        assert!(approval_call(&[drop], &targets)
            .unwrap()
            .contains("public.t"));
    }

    #[test]
    fn a_refusal_says_which_phase_an_earlier_transaction_spent() {
        let drop = Finding::new(known(RuleId::DropTable), "table public.t");
        let targets = vec![target_of("table public.t")];
        let phase = |id, entry: &str| ActivePhase {
            id,
            kind: PhaseKind::Contract,
            name: "release 9".into(),
            objects: vec![crate::phase::parse_pattern(entry).unwrap()],
            standing: None,
        };
        let spent = vec![
            (
                phase(4, "public.other"),
                "2026-12-02 10:00:00+00".to_string(),
            ),
            (phase(5, "public.t"), "2026-12-02 10:05:00+00".to_string()),
        ];
        let note = spent_note(std::slice::from_ref(&drop), &targets, &spent).unwrap();
        assert!(
            note.starts_with("Contract phase 5 (release 9) covers it, but was spent"),
            "{note}"
        );
        assert!(note.contains("committed at 2026-12-02 10:05:00+00"));
        assert!(note.contains("deploy => true"));
        assert_eq!(spent_note(&[drop], &targets, &spent[..1]), None);
    }

    #[test]
    fn disabled_rules_are_skipped() {
        let st = Settings {
            disabled_rules: vec!["truncate".into()],
            ..Default::default()
        };
        let f = Finding::new(known(RuleId::Truncate), "table public.t");
        assert_eq!(decide(vec![f], &st), Decision::Allow);
        let g = Finding::new(known(RuleId::DropTable), "table public.t");
        assert!(matches!(decide(vec![g], &st), Decision::Refuse(_)));
    }

    #[test]
    fn check_only_rules_never_reach_the_hook_decision() {
        let f = Finding::new(known(RuleId::DmlWithoutWhere), "table public.t");
        assert_eq!(decide(vec![f], &s(Mode::Enforce)), Decision::Allow);
    }

    #[test]
    fn parse_disabled_rules_accepts_lists() {
        assert_eq!(parse_disabled_rules("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_disabled_rules(" truncate, DROP-INDEX  truncate").unwrap(),
            vec!["truncate".to_string(), "drop-index".to_string()]
        );
        assert_eq!(
            parse_disabled_rules("nope"),
            Err(SettingsError::UnknownRule("nope".into()))
        );
        // Retired rules: accepted and ignored, so old configurations keep working.
        assert_eq!(
            parse_disabled_rules("rename-index, truncate").unwrap(),
            vec!["truncate".to_string()]
        );
    }

    #[test]
    fn refusal_message_stands_on_its_own() {
        let f = Finding::new(known(RuleId::DropCascade), "table public.users").fact("Owner: app");
        let mut f = f;
        f.dependents = (0..25).map(|i| format!("view public.v{i}")).collect();
        let r = render_refusal(
            &[f],
            &Settings::default(),
            "DROP TABLE users CASCADE",
            None,
            None,
        );
        assert!(r
            .message
            .starts_with("pg_migsafe refused drop-cascade on table public.users: "));
        assert!(r.message.contains("migsafe.mode = 'warn'"));
        assert!(r.detail.contains("takes lock ACCESS EXCLUSIVE"));
        assert!(r.detail.contains("25 object(s): view public.v0"));
        assert!(r.detail.contains("and 5 more"));
        assert!(r.detail.contains("Owner: app."));
        assert!(r.detail.ends_with("Statement: DROP TABLE users CASCADE"));
        assert_eq!(r.hint, known(RuleId::DropCascade).safe_alternative);
    }

    #[test]
    fn refusal_names_block_risky_when_that_is_why() {
        let st = Settings {
            block_risky: true,
            ..Default::default()
        };
        let f = Finding::new(known(RuleId::CreateIndex), "table public.users");
        let r = render_refusal(&[f], &st, "", Some("SELECT migsafe.begin_phase(...)"), None);
        assert!(
            r.message.contains("migsafe.block_risky = off"),
            "{}",
            r.message
        );
        assert!(!r.detail.contains("Statement:"));
    }

    #[test]
    fn refusal_names_the_approving_call_when_phases_exist() {
        let f = Finding::new(known(RuleId::DropTable), "table public.orders");
        let r = render_refusal(
            &[f],
            &Settings::default(),
            "",
            Some("SELECT migsafe.begin_phase('contract', …)"),
            Some("An expand phase is open"),
        );
        assert!(
            r.message.ends_with(
                "approve it with a contract phase: SELECT migsafe.begin_phase('contract', …)"
            ),
            "{}",
            r.message
        );
        assert!(r.detail.contains("An expand phase is open"));
        let p = Finding::new(known(RuleId::ProtectSchema), "schema migsafe");
        let r = render_refusal(&[p], &Settings::default(), "", Some("SELECT …"), None);
        assert!(r.message.contains("migsafe.mode = 'off'"), "{}", r.message);
    }

    #[test]
    fn shorten_counts_characters() {
        assert_eq!(shorten("äöü", 3), "äöü");
        assert_eq!(shorten("äöüß", 3), "äöü…");
    }
}
