//! Two-phase approval, the pure part: how a phase's object list is written, checked
//! and matched against findings, and which phase (if any) approves a statement.
//!
//! An object entry is `[kind ]identity`, where identity is written as
//! `pg_identify_object()` writes it (schema-qualified, quoted where needed):
//! `public.users` (a table, and everything on it: its columns, constraints, indexes
//! and triggers; not its policies and rules), `public.users.legacy_email` (one
//! column), `function public.add_tax(numeric)`, `type public.mood`, `schema reporting`.
//! `*` and `?` are wildcards in the identity (`public.tmp_*`). Without a kind, an entry
//! names a relation (table, view, sequence…) or, with three parts, a column.

use super::policy::{Finding, PartitionFact};
use super::rules::Severity;
use thiserror::Error;

/// What a finding is about, in matchable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `table`, `view`, `column`, `schema`, `function`, `type`, `index`, …
    pub kind: String,
    /// Identity as pg_identify_object writes it, e.g. `public.users.legacy_email`.
    pub identity: String,
    /// The relation it belongs to when the identity does not say (an index's table).
    pub owner: Option<String>,
}

/// One entry of a phase's object list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPattern {
    pub kind: Option<String>,
    pub identity: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("an object name is empty")]
    Empty,
    #[error("object \"{0}\" is not schema-qualified: write it as schema.name (e.g. public.users)")]
    Unqualified(String),
    #[error("object \"{0}\": unknown object kind \"{1}\"")]
    UnknownKind(String, String),
    #[error("object \"{0}\" has more than three name parts")]
    TooManyParts(String),
}

const RELATION_KINDS: &[&str] = &[
    "table",
    "view",
    "materialized view",
    "sequence",
    "foreign table",
];
/// What is "on" a relation: an entry for the relation covers it. Not its policies or
/// rules: dropping one can widen access or change what a statement does, so a phase
/// names them (`policy p on public.t`).
const ON_RELATION: &[&str] = &["column", "constraint", "index", "trigger"];
const KINDS: &[&str] = &[
    "table",
    "view",
    "materialized view",
    "sequence",
    "foreign table",
    "column",
    "index",
    "schema",
    "function",
    "procedure",
    "aggregate",
    "type",
    "domain",
    "trigger",
    "rule",
    "policy",
    "publication",
    "extension",
    "database",
    "role",
    "constraint",
    "collation",
    "tablespace",
];

/// Splits a dotted name, keeping dots inside double quotes.
fn split_parts(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                parts.last_mut().unwrap().push(c);
            }
            '.' if !quoted => parts.push(String::new()),
            _ => parts.last_mut().unwrap().push(c),
        }
    }
    parts
}

/// Parses and checks one object entry.
pub fn parse_pattern(entry: &str) -> Result<ObjectPattern, PatternError> {
    let e = entry.trim();
    if e.is_empty() {
        return Err(PatternError::Empty);
    }
    // Longest kind prefix first ("materialized view" before "view").
    let mut kinds: Vec<&&str> = KINDS.iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.len()));
    for k in kinds {
        if let Some(rest) = e.strip_prefix(*k) {
            if rest.starts_with(' ') {
                let ident = rest.trim();
                if ident.is_empty() {
                    return Err(PatternError::Empty);
                }
                let global = matches!(
                    *k,
                    "schema" | "extension" | "database" | "role" | "publication" | "tablespace"
                );
                if !global && split_parts(ident).len() < 2 {
                    return Err(PatternError::Unqualified(e.to_string()));
                }
                return Ok(ObjectPattern {
                    kind: Some(k.to_string()),
                    identity: ident.to_string(),
                });
            }
        }
    }
    if let Some((word, _)) = e.split_once(' ') {
        if !word.contains('.') && !word.contains('"') {
            return Err(PatternError::UnknownKind(e.to_string(), word.to_string()));
        }
    }
    match split_parts(e).len() {
        1 => Err(PatternError::Unqualified(e.to_string())),
        2 | 3 => Ok(ObjectPattern {
            kind: None,
            identity: e.to_string(),
        }),
        _ => Err(PatternError::TooManyParts(e.to_string())),
    }
}

/// Glob match with `*` and `?`.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl ObjectPattern {
    /// How many dotted parts the identity has (`public.users.email`: 3).
    pub fn identity_parts(&self) -> usize {
        split_parts(&self.identity).len()
    }

    /// Does this entry cover the target? A relation entry also covers what is on the
    /// relation (columns, constraints, indexes, triggers); a column entry covers that
    /// column only.
    pub fn covers(&self, t: &Target) -> bool {
        let relation_target = RELATION_KINDS.contains(&t.kind.as_str());
        let on_relation = || {
            ON_RELATION.contains(&t.kind.as_str())
                && t.owner
                    .clone()
                    .or_else(|| owner_of(&t.identity))
                    .is_some_and(|o| glob(&self.identity, &o))
        };
        match &self.kind {
            Some(k) if k == &t.kind => glob(&self.identity, &t.identity),
            Some(k) if RELATION_KINDS.contains(&k.as_str()) => on_relation(),
            Some(_) => false,
            None => {
                let parts = split_parts(&self.identity).len();
                if parts == 3 {
                    t.kind == "column" && glob(&self.identity, &t.identity)
                } else if relation_target || t.kind == "index" {
                    glob(&self.identity, &t.identity) || on_relation()
                } else {
                    on_relation()
                }
            }
        }
    }
}

/// `public.users.email` -> `public.users`; for constraints, the identity ends in
/// ` on public.users` (pg_identify_object's form: `name on schema.table`).
fn owner_of(identity: &str) -> Option<String> {
    if let Some((_, table)) = identity.rsplit_once(" on ") {
        return Some(table.to_string());
    }
    let parts = split_parts(identity);
    (parts.len() == 3).then(|| format!("{}.{}", parts[0], parts[1]))
}

/// The matchable target of a finding, from its object text (`<kind> <identity>`, as
/// the classifier writes it: getObjectTypeDescription + getObjectIdentity).
pub fn target_of(object: &str) -> Option<Target> {
    // getObjectTypeDescription()'s words (dependents of a CASCADE), longest first.
    const DISPLAY_KINDS: &[(&str, &str)] = &[
        ("materialized view column ", "column"),
        ("foreign table column ", "column"),
        ("composite type column ", "column"),
        ("table column ", "column"),
        ("view column ", "column"),
        ("materialized view ", "materialized view"),
        ("foreign table ", "foreign table"),
        ("table constraint ", "constraint"),
        ("domain constraint ", "constraint"),
        ("relation ", "table"),
    ];
    for (prefix, kind) in DISPLAY_KINDS {
        if let Some(rest) = object.strip_prefix(prefix) {
            return Some(Target {
                kind: kind.to_string(),
                identity: rest.to_string(),
                owner: None,
            });
        }
    }
    let (kind, rest) = object.split_once(' ')?;
    KINDS.contains(&kind).then(|| Target {
        kind: kind.to_string(),
        identity: rest.to_string(),
        owner: None,
    })
}

/// A phase as the hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePhase {
    pub id: i64,
    pub kind: PhaseKind,
    pub name: String,
    pub objects: Vec<ObjectPattern>,
    /// A standing approval's condition (kind `Standing` only).
    pub standing: Option<Standing>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    Expand,
    Contract,
    /// A standing approval: a DBA-approved policy for a maintenance role (retention
    /// of a partitioned table), used by every transaction of the role, never spent.
    Standing,
}

impl PhaseKind {
    pub fn parse(s: &str) -> Option<PhaseKind> {
        match s {
            "expand" => Some(PhaseKind::Expand),
            "contract" => Some(PhaseKind::Contract),
            "standing" => Some(PhaseKind::Standing),
            _ => None,
        }
    }
}

/// What a standing approval approves: dropping or detaching a partition of `parent`
/// whose identity matches `partitions` and whose range ended at or before `cutoff`
/// (now() minus the approval's `older_than`, computed by the server when the phase is
/// read). Its one object entry is written `partitions of public.events` or
/// `partitions matching public.events_p* of public.events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub parent: String,
    /// A glob over the partition's identity; `*` for every partition.
    pub partitions: String,
    /// Microseconds since 1970-01-01 UTC.
    pub cutoff: i64,
}

/// The object entry of a standing approval, in its one written form.
pub fn standing_entry(parent: &str, partitions: Option<&str>) -> String {
    match partitions {
        Some(p) if p != "*" => format!("partitions matching {p} of {parent}"),
        _ => format!("partitions of {parent}"),
    }
}

/// Reads a standing approval's entry back: (parent, partitions glob).
pub fn parse_standing_entry(entry: &str) -> Option<(String, String)> {
    let rest = entry.trim().strip_prefix("partitions ")?;
    if let Some(parent) = rest.strip_prefix("of ") {
        return Some((parent.trim().to_string(), "*".to_string()));
    }
    let rest = rest.strip_prefix("matching ")?;
    // The glob is schema-qualified and has no space outside quotes; the parent follows.
    let (glob, parent) = rest.split_once(" of ")?;
    (!glob.trim().is_empty() && !parent.trim().is_empty())
        .then(|| (parent.trim().to_string(), glob.trim().to_string()))
}

/// The rules a standing approval can approve: a partition leaving its table, and the
/// move of a partition it detached in the same transaction (pg_partman's
/// retention_schema; the shell gives such a move the partition's facts).
const STANDING_RULES: &[&str] = &["drop-table", "detach-partition", "set-schema"];

impl Standing {
    /// Does the approval cover this finding: a drop or detach of a partition of its
    /// table (a plain table, not itself partitioned), matching its pattern, whose range
    /// ended by the cutoff, taking nothing else along?
    pub fn covers(&self, f: &Finding) -> bool {
        let Some(p) = &f.partition else {
            return false;
        };
        STANDING_RULES.contains(&f.rule.id.as_str())
            && f.dependents.is_empty()
            && p.leaf
            && self.matches(p)
            && p.ends.is_some_and(|e| e <= self.cutoff)
    }

    /// The partition belongs to the approval's table and matches its pattern (its age
    /// aside).
    pub fn matches(&self, p: &PartitionFact) -> bool {
        p.parent == self.parent && glob(&self.partitions, &p.partition)
    }
}

/// Which contract phase approves every destructive finding of a statement, if one
/// does. An active expand phase of the session approves nothing: while it is open,
/// destructive statements stay refused even if a contract phase covers them.
/// Self-protection findings are never approved. A finding that names dependents (a
/// CASCADE) is approved only if the phase also covers every one of them: a phase
/// approves what it lists.
pub fn approving_phase<'a>(
    findings: &[Finding],
    targets: &[Option<Target>],
    phases: &'a [ActivePhase],
) -> Option<&'a ActivePhase> {
    if phases.iter().any(|p| p.kind == PhaseKind::Expand) {
        return None;
    }
    let needing = needing_approval(findings)?;
    phases
        .iter()
        .filter(|p| p.kind == PhaseKind::Contract)
        .find(|p| {
            needing.iter().all(|&i| {
                covers_target(p, targets.get(i).and_then(|t| t.as_ref()))
                    && uncovered(p, &findings[i].dependents).is_empty()
            })
        })
        .or_else(|| {
            phases.iter().find(|p| {
                p.standing
                    .as_ref()
                    .is_some_and(|s| needing.iter().all(|&i| s.covers(&findings[i])))
            })
        })
}

/// A standing approval for the partitioned table a refused statement drops or
/// detaches a partition of, that does not cover it: what the refusal should say.
pub fn standing_shortfall<'a>(
    findings: &[Finding],
    phases: &'a [ActivePhase],
) -> Option<(&'a ActivePhase, &'a Standing, PartitionFact)> {
    let needing = needing_approval(findings)?;
    needing.iter().find_map(|&i| {
        let f = &findings[i];
        let p = f.partition.as_ref()?;
        phases.iter().find_map(|ph| {
            let s = ph.standing.as_ref()?;
            (s.matches(p) && !s.covers(f)).then(|| (ph, s, p.clone()))
        })
    })
}

/// The destructive findings (their indexes), or None when there is nothing a phase
/// could approve.
fn needing_approval(findings: &[Finding]) -> Option<Vec<usize>> {
    let needing: Vec<usize> = findings
        .iter()
        .enumerate()
        .filter(|(_, f)| f.rule.severity == Severity::Destructive)
        .map(|(i, _)| i)
        .collect();
    if needing.is_empty() || needing.iter().any(|&i| findings[i].rule.protects_extension) {
        return None;
    }
    Some(needing)
}

fn covers_target(p: &ActivePhase, t: Option<&Target>) -> bool {
    t.is_some_and(|t| p.objects.iter().any(|o| o.covers(t)))
}

/// The dependents (as the classifier names them) a phase does not cover.
fn uncovered<'d>(p: &ActivePhase, dependents: &'d [String]) -> Vec<&'d str> {
    dependents
        .iter()
        .filter(|d| !covers_target(p, target_of(d).as_ref()))
        .map(|d| d.as_str())
        .collect()
}

/// A contract phase that covers a statement's objects but not everything its CASCADE
/// would also drop, with what it misses: what a refusal should say.
pub fn cascade_shortfall<'a>(
    findings: &[Finding],
    targets: &[Option<Target>],
    phases: &'a [ActivePhase],
) -> Option<(&'a ActivePhase, Vec<String>)> {
    let needing = needing_approval(findings)?;
    phases
        .iter()
        .filter(|p| p.kind == PhaseKind::Contract)
        .filter(|p| {
            needing
                .iter()
                .all(|&i| covers_target(p, targets.get(i).and_then(|t| t.as_ref())))
        })
        .find_map(|p| {
            let missing: Vec<String> = needing
                .iter()
                .flat_map(|&i| uncovered(p, &findings[i].dependents))
                .map(str::to_string)
                .collect();
            (!missing.is_empty()).then_some((p, missing))
        })
}

/// The `begin_phase(...)` call that would approve these findings: what a refused
/// user needs next.
pub fn suggested_call(targets: &[Option<Target>]) -> Option<String> {
    let mut objs: Vec<String> = Vec::new();
    for t in targets.iter().flatten() {
        let entry = if RELATION_KINDS.contains(&t.kind.as_str()) || t.kind == "column" {
            t.identity.clone()
        } else {
            format!("{} {}", t.kind, t.identity)
        };
        if !objs.contains(&entry) {
            objs.push(entry);
        }
    }
    if objs.is_empty() {
        return None;
    }
    let arr = objs
        .iter()
        .map(|o| format!("'{}'", o.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!("SELECT migsafe.begin_phase('contract', '<migration name>', reason => '<ticket>', objects => ARRAY[{arr}]);"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{known, RuleId};

    fn t(kind: &str, id: &str) -> Target {
        Target {
            kind: kind.into(),
            identity: id.into(),
            owner: None,
        }
    }
    fn p(s: &str) -> ObjectPattern {
        parse_pattern(s).unwrap()
    }

    #[test]
    fn parses_entries() {
        assert_eq!(
            p("public.users"),
            ObjectPattern {
                kind: None,
                identity: "public.users".into()
            }
        );
        assert_eq!(
            p("function public.f(integer)").kind.as_deref(),
            Some("function")
        );
        assert_eq!(
            p("materialized view public.mv").kind.as_deref(),
            Some("materialized view")
        );
        assert_eq!(p("schema reporting").identity, "reporting");
        assert_eq!(parse_pattern(""), Err(PatternError::Empty));
        assert_eq!(parse_pattern("  "), Err(PatternError::Empty));
        assert_eq!(
            parse_pattern("users"),
            Err(PatternError::Unqualified("users".into()))
        );
        assert_eq!(
            parse_pattern("table users"),
            Err(PatternError::Unqualified("table users".into()))
        );
        assert_eq!(
            parse_pattern("a.b.c.d"),
            Err(PatternError::TooManyParts("a.b.c.d".into()))
        );
        assert!(matches!(
            parse_pattern("gadget public.x"),
            Err(PatternError::UnknownKind(..))
        ));
        assert_eq!(p("public.\"my.table\"").identity, "public.\"my.table\"");
    }

    #[test]
    fn column_entry_covers_only_that_column() {
        let e = p("public.users.legacy_email");
        assert!(e.covers(&t("column", "public.users.legacy_email")));
        assert!(!e.covers(&t("column", "public.users.email")));
        assert!(!e.covers(&t("table", "public.users")));
    }

    #[test]
    fn table_entry_covers_the_table_its_columns_and_constraints() {
        let e = p("public.orders");
        assert!(e.covers(&t("table", "public.orders")));
        assert!(e.covers(&t("column", "public.orders.total")));
        assert!(e.covers(&t("constraint", "orders_total_check on public.orders")));
        assert!(!e.covers(&t("table", "public.orders_archive")));
        assert!(!e.covers(&t("function", "public.orders()")));
    }

    #[test]
    fn a_relation_entry_covers_everything_on_it() {
        let index = |owner: &str| Target {
            owner: Some(owner.into()),
            ..t("index", "public.idx_total")
        };
        for e in [
            p("public.orders"),
            p("table public.orders"),
            p("public.ord*"),
        ] {
            assert!(e.covers(&t("trigger", "audit on public.orders")), "{e:?}");
            // Policies and rules are named on their own: dropping one can widen access.
            assert!(!e.covers(&t("policy", "mine on public.orders")), "{e:?}");
            assert!(!e.covers(&t("rule", "r on public.orders")), "{e:?}");
            assert!(e.covers(&index("public.orders")), "{e:?}");
            assert!(!e.covers(&index("public.users")), "{e:?}");
            assert!(!e.covers(&t("trigger", "audit on public.users")), "{e:?}");
        }
        // An index named by its own entry, with or without the kind; an index whose
        // table is unknown is covered only so.
        assert!(p("index public.idx_total").covers(&index("public.users")));
        assert!(p("public.orders_total_idx").covers(&t("index", "public.orders_total_idx")));
        assert!(!p("public.orders").covers(&t("index", "public.orders_total_idx")));
        // The owner the catalog gives wins over the identity's text (a trigger name
        // may contain " on ").
        let odd = Target {
            owner: Some("public.x".into()),
            ..t("trigger", "\"t on public.tmp_1\" on public.x")
        };
        assert!(!p("public.tmp_*").covers(&odd));
        assert!(p("public.x").covers(&odd));
        // A column entry covers no trigger of its table.
        assert!(!p("public.orders.total").covers(&t("trigger", "audit on public.orders")));
    }

    #[test]
    fn patterns() {
        let e = p("public.tmp_*");
        assert!(e.covers(&t("table", "public.tmp_import")));
        assert!(e.covers(&t("column", "public.tmp_x.a")));
        assert!(!e.covers(&t("table", "public.users")));
        assert!(
            p("function public.add_?ax(numeric)").covers(&t("function", "public.add_tax(numeric)"))
        );
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b", "axxbc"));
    }

    #[test]
    fn approval_needs_every_destructive_finding_covered() {
        let contract = ActivePhase {
            id: 7,
            kind: PhaseKind::Contract,
            name: "drop-legacy".into(),
            objects: vec![p("public.users.legacy_email")],
            standing: None,
        };
        let f = vec![Finding::new(
            known(RuleId::DropColumn),
            "column public.users.legacy_email",
        )];
        let tg = vec![Some(t("column", "public.users.legacy_email"))];
        assert_eq!(
            approving_phase(&f, &tg, std::slice::from_ref(&contract)).map(|p| p.id),
            Some(7)
        );
        let other = vec![Some(t("table", "public.orders"))];
        let g = vec![Finding::new(
            known(RuleId::DropTable),
            "table public.orders",
        )];
        assert_eq!(
            approving_phase(&g, &other, std::slice::from_ref(&contract)),
            None
        );
        // An expand phase in the session blocks approval.
        let expand = ActivePhase {
            id: 8,
            kind: PhaseKind::Expand,
            name: "x".into(),
            objects: vec![],
            standing: None,
        };
        assert_eq!(approving_phase(&f, &tg, &[contract.clone(), expand]), None);
        // Self-protection is never approved.
        let s = vec![Finding::new(known(RuleId::ProtectSchema), "schema migsafe")];
        assert_eq!(
            approving_phase(&s, &[Some(t("schema", "migsafe"))], &[contract]),
            None
        );
    }

    #[test]
    fn targets_from_finding_objects() {
        assert_eq!(
            target_of("column public.users.email"),
            Some(t("column", "public.users.email"))
        );
        assert_eq!(
            target_of("materialized view public.mv"),
            Some(t("materialized view", "public.mv"))
        );
        assert_eq!(
            target_of("table constraint c on public.t"),
            Some(t("constraint", "c on public.t"))
        );
        assert_eq!(
            target_of("function public.f(integer)"),
            Some(t("function", "public.f(integer)"))
        );
        assert_eq!(target_of("everything owned by app"), None);
    }

    #[test]
    fn suggests_the_call_that_would_approve() {
        let c = suggested_call(&[
            Some(t("column", "public.users.legacy_email")),
            Some(t("function", "public.f()")),
        ])
        .unwrap();
        assert!(
            c.contains("objects => ARRAY['public.users.legacy_email', 'function public.f()']"),
            "{c}"
        );
    }

    #[test]
    fn a_cascade_is_approved_only_with_everything_it_reaches() {
        let mut drop = Finding::new(known(RuleId::DropType), "type public.mood");
        drop.dependents = vec![];
        let mut cascade = Finding::new(known(RuleId::DropCascade), "type public.mood");
        cascade.dependents = vec!["column public.other.m".into(), "view public.v".into()];
        let f = vec![drop, cascade];
        let tg = vec![
            Some(t("type", "public.mood")),
            Some(t("type", "public.mood")),
        ];
        let phase = |objs: &[&str]| ActivePhase {
            id: 7,
            kind: PhaseKind::Contract,
            name: "m".into(),
            objects: objs.iter().map(|o| p(o)).collect(),
            standing: None,
        };
        let only_type = phase(&["type public.mood"]);
        assert_eq!(
            approving_phase(&f, &tg, std::slice::from_ref(&only_type)),
            None
        );
        let (ph, missing) = cascade_shortfall(&f, &tg, std::slice::from_ref(&only_type)).unwrap();
        assert_eq!(ph.id, 7);
        assert_eq!(missing, vec!["column public.other.m", "view public.v"]);

        // As the classifier names a column a CASCADE reaches (getObjectTypeDescription).
        assert_eq!(
            target_of("table column public.other.m"),
            Some(t("column", "public.other.m"))
        );
        assert_eq!(
            target_of("materialized view column public.mv.m"),
            Some(t("column", "public.mv.m"))
        );
        let mut from_server = f.clone();
        from_server[1].dependents = vec!["table column public.other.m".into()];
        let listed = phase(&["type public.mood", "public.other.m"]);
        assert_eq!(
            approving_phase(&from_server, &tg, std::slice::from_ref(&listed)).map(|p| p.id),
            Some(7)
        );

        let partly = phase(&["type public.mood", "public.other.m"]);
        assert_eq!(
            approving_phase(&f, &tg, std::slice::from_ref(&partly)),
            None
        );
        assert_eq!(
            cascade_shortfall(&f, &tg, std::slice::from_ref(&partly))
                .unwrap()
                .1,
            vec!["view public.v"]
        );

        let all = phase(&["type public.mood", "public.other", "view public.v"]);
        assert_eq!(
            approving_phase(&f, &tg, std::slice::from_ref(&all)).map(|p| p.id),
            Some(7)
        );
        assert_eq!(cascade_shortfall(&f, &tg, std::slice::from_ref(&all)), None);
    }

    #[test]
    fn standing_entries_round_trip() {
        assert_eq!(
            standing_entry("public.events", None),
            "partitions of public.events"
        );
        assert_eq!(
            standing_entry("public.events", Some("*")),
            "partitions of public.events"
        );
        let e = standing_entry("public.events", Some("public.events_p*"));
        assert_eq!(e, "partitions matching public.events_p* of public.events");
        assert_eq!(
            parse_standing_entry(&e),
            Some(("public.events".into(), "public.events_p*".into()))
        );
        assert_eq!(
            parse_standing_entry("partitions of public.\"Ev ents\""),
            Some(("public.\"Ev ents\"".into(), "*".into()))
        );
        assert_eq!(parse_standing_entry("public.events"), None);
        assert_eq!(
            parse_standing_entry("partitions matching  of public.e"),
            None
        );
    }

    #[test]
    fn a_standing_approval_covers_old_partitions_of_its_table_only() {
        const DAY: i64 = 86_400_000_000;
        let cutoff = 100 * DAY;
        let standing = ActivePhase {
            id: 9,
            kind: PhaseKind::Standing,
            name: "events-retention".into(),
            objects: vec![],
            standing: Some(Standing {
                parent: "public.events".into(),
                partitions: "public.events_p*".into(),
                cutoff,
            }),
        };
        let phases = std::slice::from_ref(&standing);
        let part = |name: &str, parent: &str, ends: Option<i64>| PartitionFact {
            partition: name.into(),
            parent: parent.into(),
            ends,
            leaf: true,
        };
        let drop = |fact: Option<PartitionFact>| {
            let mut f = Finding::new(known(RuleId::DropTable), "table public.events_p1");
            f.partition = fact;
            vec![f]
        };
        let approves = |fs: &[Finding]| {
            let tg: Vec<Option<Target>> = fs.iter().map(|f| target_of(&f.object)).collect();
            approving_phase(fs, &tg, phases).map(|p| p.id)
        };
        // Ended by the cutoff (the bound is exclusive: ending exactly then counts).
        let old = part("public.events_p1", "public.events", Some(cutoff));
        assert_eq!(approves(&drop(Some(old.clone()))), Some(9));
        let mut detach = Finding::new(known(RuleId::DetachPartition), "table public.events");
        detach.partition = Some(old.clone());
        assert_eq!(approves(&[detach]), Some(9));
        // Too young, unbounded, another table, another name, not a partition.
        assert_eq!(
            approves(&drop(Some(part(
                "public.events_p1",
                "public.events",
                Some(cutoff + 1)
            )))),
            None
        );
        assert_eq!(
            approves(&drop(Some(part("public.events_p1", "public.events", None)))),
            None
        );
        assert_eq!(
            approves(&drop(Some(part(
                "public.events_p1",
                "public.other",
                Some(0)
            )))),
            None
        );
        assert_eq!(
            approves(&drop(Some(part(
                "public.users_p1",
                "public.events",
                Some(0)
            )))),
            None
        );
        assert_eq!(approves(&drop(None)), None);
        // A partition that is itself partitioned: its own partitions would be lost.
        let sub = PartitionFact {
            leaf: false,
            ..old.clone()
        };
        assert_eq!(approves(&drop(Some(sub))), None);
        // Anything a CASCADE takes along, or any other rule, is not approved.
        let mut cascade = drop(Some(old.clone()));
        cascade[0].dependents = vec!["view public.v".into()];
        assert_eq!(approves(&cascade), None);
        let mut truncate = Finding::new(known(RuleId::Truncate), "table public.events_p1");
        truncate.partition = Some(old.clone());
        assert_eq!(approves(&[truncate]), None);
        // One uncovered finding refuses the whole statement.
        let mut two = drop(Some(old));
        two.extend(drop(Some(part(
            "public.events_p2",
            "public.events",
            Some(cutoff + DAY),
        ))));
        assert_eq!(approves(&two), None);
        let (p, _, fact) = standing_shortfall(&two, phases).unwrap();
        assert_eq!((p.id, fact.partition.as_str()), (9, "public.events_p2"));
        // An open expand phase still holds everything back.
        let expand = ActivePhase {
            id: 1,
            kind: PhaseKind::Expand,
            name: "x".into(),
            objects: vec![],
            standing: None,
        };
        let both = [expand, standing.clone()];
        let fs = drop(Some(part("public.events_p1", "public.events", Some(0))));
        let tg: Vec<Option<Target>> = fs.iter().map(|f| target_of(&f.object)).collect();
        assert_eq!(approving_phase(&fs, &tg, &both), None);
    }
}
