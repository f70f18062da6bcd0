//! Two-phase approval, the pgrx side: validating a phase's object list, finding the
//! phases that may approve a statement, and recording their use. The matching itself
//! is `engine::phase`; the tables and SQL functions are in sql/phases.sql.

use crate::engine::phase::{
    parse_pattern, parse_standing_entry, standing_entry, ActivePhase, ObjectPattern, PhaseKind,
    Standing, Target,
};
use crate::pgutil::role_name;
use crate::spi::{self, As};
use pgrx::pg_sys;
use pgrx::prelude::*;

pgrx::extension_sql_file!(
    "../sql/phases.sql",
    name = "phases",
    requires = [check_objects, standing_entry_sql]
);

/// Every object entry of `patterns` (not wildcards) that names nothing existing: the
/// first one, or None. One query per kind of entry, whatever the number of entries.
fn first_missing(entries: &[(String, ObjectPattern)]) -> Option<String> {
    // (query over $1 = the identities, returning the ordinal of the first missing one)
    const RELATION: &str =
        "SELECT min(u.i) FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i) \
                              WHERE pg_catalog.to_regclass(u.n) IS NULL";
    const COLUMN: &str = "SELECT min(u.i) FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i) \
                            CROSS JOIN LATERAL pg_catalog.parse_ident(u.n) AS p(parts) \
                           WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace s \
                                               JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) s.oid \
                                               JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid \
                                              WHERE s.nspname OPERATOR(pg_catalog.=) p.parts[1] \
                                                AND c.relname OPERATOR(pg_catalog.=) p.parts[2] \
                                                AND a.attname OPERATOR(pg_catalog.=) p.parts[3] \
                                                AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)";
    const FUNCTION: &str =
        "SELECT min(u.i) FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i) \
                              WHERE pg_catalog.to_regprocedure(u.n) IS NULL";
    const TYPE: &str =
        "SELECT min(u.i) FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i) \
                          WHERE pg_catalog.to_regtype(u.n) IS NULL";
    const SCHEMA: &str =
        "SELECT min(u.i) FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i) \
                            WHERE pg_catalog.to_regnamespace(u.n) IS NULL";
    const ROLE: &str =
        "SELECT min(u.i) FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i) \
                          WHERE pg_catalog.to_regrole(u.n) IS NULL";
    const EXTENSION: &str =
        "SELECT min(u.i) FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i) \
                               WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e \
                                                  WHERE e.extname OPERATOR(pg_catalog.=) u.n)";
    const DATABASE: &str =
        "SELECT min(u.i) FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i) \
                              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database d \
                                                 WHERE d.datname OPERATOR(pg_catalog.=) u.n)";
    const PUBLICATION: &str =
        "SELECT min(u.i) FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i) \
                                 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication p \
                                                    WHERE p.pubname OPERATOR(pg_catalog.=) u.n)";
    let mut groups: Vec<(&'static str, Vec<&str>, Vec<&str>)> = Vec::new();
    // Relations named with their kind: the kind must be the relation's.
    let mut kinded: Vec<(&String, &ObjectPattern)> = Vec::new();
    for (entry, p) in entries {
        let sql = match p.kind.as_deref() {
            None if p.identity_parts() >= 3 => COLUMN,
            None => RELATION,
            Some(
                "table" | "view" | "materialized view" | "sequence" | "foreign table" | "index",
            ) => {
                kinded.push((entry, p));
                continue;
            }
            Some("function" | "procedure" | "aggregate") => FUNCTION,
            Some("type" | "domain") => TYPE,
            Some("schema") => SCHEMA,
            Some("role") => ROLE,
            Some("extension") => EXTENSION,
            Some("database") => DATABASE,
            Some("publication") => PUBLICATION,
            Some(k @ ("trigger" | "rule" | "policy" | "constraint")) => {
                // One query per entry of this kind: a long list stays cancellable.
                pgrx::check_for_interrupts!();
                if !on_object_exists(k, &p.identity) {
                    return Some(entry.clone());
                }
                continue;
            }
            // Collations, tablespaces…: checked when used.
            Some(_) => continue,
        };
        match groups.iter_mut().find(|g| g.0 == sql) {
            Some(g) => {
                g.1.push(&p.identity);
                g.2.push(entry);
            }
            None => groups.push((sql, vec![&p.identity], vec![entry])),
        }
    }
    if !kinded.is_empty() {
        let names: Vec<String> = kinded.iter().map(|(_, p)| p.identity.clone()).collect();
        let kinds: Vec<String> = kinded
            .iter()
            .map(|(_, p)| p.kind.clone().unwrap_or_default())
            .collect();
        if let Some(i) = spi::one::<i64>(
            As::Caller,
            "SELECT min(u.i) FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) \
                    WITH ORDINALITY AS u(n, k, i) \
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
                                 WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(u.n) \
                                   AND c.relkind OPERATOR(pg_catalog.=) ANY (CASE u.k \
                                         WHEN 'table' THEN '{r,p}'::pg_catalog.\"char\"[] \
                                         WHEN 'view' THEN '{v}' WHEN 'materialized view' THEN '{m}' \
                                         WHEN 'sequence' THEN '{S}' WHEN 'foreign table' THEN '{f}' \
                                         ELSE '{i,I}' END))",
            &[names.into(), kinds.into()],
        ) {
            return kinded.get(i as usize - 1).map(|(e, _)| e.to_string());
        }
    }
    for (sql, identities, shown) in groups {
        pgrx::check_for_interrupts!();
        let names: Vec<String> = identities.iter().map(|s| s.to_string()).collect();
        if let Some(i) = spi::one::<i64>(As::Caller, sql, &[names.into()]) {
            return shown.get(i as usize - 1).map(|s| s.to_string());
        }
    }
    None
}

/// A trigger, rule, policy or constraint entry (`name on schema.table`, or `name on
/// schema.domain` for a domain's constraint): does it name one that exists?
fn on_object_exists(kind: &str, identity: &str) -> bool {
    let Some((name, owner)) = identity.rsplit_once(" on ") else {
        return false;
    };
    let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_string(),
    };
    spi::one::<bool>(
        As::Caller,
        "SELECT CASE $3 \
           WHEN 'trigger' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t \
                                        WHERE t.tgrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($2) \
                                          AND t.tgname OPERATOR(pg_catalog.=) $1 AND NOT t.tgisinternal) \
           WHEN 'rule' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r \
                                     WHERE r.ev_class OPERATOR(pg_catalog.=) pg_catalog.to_regclass($2) \
                                       AND r.rulename OPERATOR(pg_catalog.=) $1) \
           WHEN 'policy' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_policy p \
                                       WHERE p.polrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($2) \
                                         AND p.polname OPERATOR(pg_catalog.=) $1) \
           ELSE EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c \
                         WHERE c.conname OPERATOR(pg_catalog.=) $1 \
                           AND (c.conrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($2) \
                                OR c.contypid OPERATOR(pg_catalog.=) pg_catalog.to_regtype($2))) END",
        &[name.as_str().into(), owner.trim().into(), kind.into()],
    )
    .unwrap_or(false)
}

/// The entry that would have named `identity` (written without its kind, or with
/// the wrong one): `type public.post_status` for a missing `public.post_status`.
fn spelling_for(identity: &str) -> Option<String> {
    spi::one::<String>(
        As::Caller,
        "SELECT coalesce( \
           (SELECT CASE c.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view ' \
                                  WHEN 'S' THEN 'sequence ' WHEN 'f' THEN 'foreign table ' \
                                  WHEN 'i' THEN 'index ' WHEN 'I' THEN 'index ' ELSE 'table ' END \
                   OPERATOR(pg_catalog.||) $1 \
              FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)), \
           (SELECT CASE t.typtype WHEN 'd' THEN 'domain ' ELSE 'type ' END OPERATOR(pg_catalog.||) $1 \
              FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) pg_catalog.to_regtype($1)), \
           (SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' WHEN 'a' THEN 'aggregate ' ELSE 'function ' END \
                   OPERATOR(pg_catalog.||) p.oid::pg_catalog.regprocedure::pg_catalog.text \
              FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regproc($1)), \
           (SELECT 'schema ' OPERATOR(pg_catalog.||) $1 WHERE pg_catalog.to_regnamespace($1) IS NOT NULL))",
        &[identity.into()],
    )
}

/// The object entry of a standing approval (`partitions of public.events`), written
/// by the engine so that the hook reads back what migsafe.grant_standing_approval()
/// stored.
#[pg_extern(name = "_standing_entry", immutable, parallel_safe)]
fn standing_entry_sql(parent: &str, partitions: Option<&str>) -> String {
    if let Some(p) = partitions {
        // A schema-qualified relation name or pattern (public.events_p*), nothing else.
        let ok = parse_pattern(p)
            .is_ok_and(|o| o.kind.is_none() && o.identity_parts() == 2 && !p.contains(" of "));
        if !ok {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("pg_migsafe: partitions must be a schema-qualified name or pattern (e.g. public.events_p*), not \"{p}\"")
            );
        }
    }
    standing_entry(parent, partitions.map(str::trim))
}

/// Most entries a phase may list.
const MAX_OBJECTS: usize = 10_000;

/// Validates a phase's object list; returns it normalised (trimmed, duplicates
/// removed). Used by migsafe.begin_phase() after its permission checks.
#[pg_extern(name = "_check_objects", volatile)]
fn check_objects(objects: Vec<Option<String>>) -> Vec<String> {
    if objects.len() > MAX_OBJECTS {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "pg_migsafe: a phase lists at most {MAX_OBJECTS} objects, not {}",
                objects.len()
            ),
            "Use patterns (public.tmp_*) for many objects of the same kind."
        );
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut to_check = Vec::new();
    for o in objects {
        pgrx::check_for_interrupts!();
        let Some(o) = o else {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "objects must not contain NULL"
            );
        };
        let p = match parse_pattern(&o) {
            Ok(p) => p,
            Err(e) => {
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    e.to_string()
                );
            }
        };
        let norm = o.trim().to_string();
        if !seen.insert(norm.clone()) {
            continue;
        }
        let pattern = p.identity.contains('*') || p.identity.contains('?');
        if !pattern {
            to_check.push((norm.clone(), p));
        }
        out.push(norm);
    }
    if let Some(missing) = first_missing(&to_check) {
        let identity = parse_pattern(&missing)
            .map(|p| p.identity)
            .unwrap_or_default();
        // A name the server's to_reg* functions cannot read has no other spelling.
        let spelled = spi::in_subtransaction(|| spelling_for(&identity))
            .ok()
            .flatten()
            .filter(|s| *s != missing);
        let mut e = pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("object \"{missing}\" does not exist"),
            "_check_objects",
        );
        if let Some(s) = spelled {
            e = e.set_hint(format!(
                "An object of another kind has that name: write \"{s}\"."
            ));
        }
        e.report(PgLogLevel::ERROR);
    }
    out
}

/// Is two-phase approval installed in this database?
pub fn available() -> bool {
    crate::pgutil::migsafe_relation(c"phase").is_some()
}

/// The phases that may approve statements of this session right now (read as the
/// superuser: the phase tables are not readable by the roles that run migrations).
pub fn session_phases() -> Vec<(ActivePhase, bool)> {
    let session = role_name(unsafe { pg_sys::GetSessionUserId() });
    let current = role_name(unsafe { pg_sys::GetUserId() });
    spi::select(
        As::Superuser,
        "SELECT id, kind, name, objects, for_role IS NOT NULL \
           FROM migsafe._phases_for_session($1::name, $2::name)",
        &[session.into(), current.into()],
        |rows| {
            let mut out = Vec::new();
            for row in rows {
                let id = row.get::<i64>(1)?.unwrap_or(0);
                let kind = row.get::<String>(2)?.unwrap_or_default();
                let name = row.get::<String>(3)?.unwrap_or_default();
                let objects: Vec<String> = row.get::<Vec<String>>(4)?.unwrap_or_default();
                let for_role = row.get::<bool>(5)?.unwrap_or(false);
                let Some(kind) = PhaseKind::parse(&kind) else {
                    continue;
                };
                // A standing approval's one entry is its condition, not an object.
                let standing = match kind {
                    PhaseKind::Standing => objects
                        .first()
                        .and_then(|e| parse_standing_entry(e))
                        .zip(standing_cutoff(id))
                        .map(|((parent, partitions), cutoff)| Standing {
                            parent,
                            partitions,
                            cutoff,
                        }),
                    _ => None,
                };
                if kind == PhaseKind::Standing && standing.is_none() {
                    continue;
                }
                let objects = if kind == PhaseKind::Standing {
                    Vec::new()
                } else {
                    objects
                        .iter()
                        .filter_map(|o| parse_pattern(o).ok())
                        .collect()
                };
                out.push((
                    ActivePhase {
                        id,
                        kind,
                        name,
                        objects,
                        standing,
                    },
                    for_role,
                ));
            }
            Ok(out)
        },
    )
}

/// The standing approval (active or pending, any role) whose partitioned table is
/// `parent`, as `standing approval 3 (events-retention)`: an existing table attached to
/// it needs an approval. Read as the superuser (the phase tables are not the caller's).
pub fn standing_approval_of(parent: &str) -> Option<String> {
    if !available() {
        return None;
    }
    let rows: Vec<(i64, String, String)> = spi::select(
        As::Superuser,
        "SELECT p.id, p.name, p.objects[1] FROM migsafe.phase p \
          WHERE p.kind OPERATOR(pg_catalog.=) 'standing' \
            AND p.state OPERATOR(pg_catalog.=) ANY ('{active,pending}'::pg_catalog.text[]) \
            AND p.valid_until OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() \
          ORDER BY p.id",
        &[],
        |rows| {
            let mut out = Vec::new();
            for row in rows {
                out.push((
                    row.get::<i64>(1)?.unwrap_or(0),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                ));
            }
            Ok(out)
        },
    );
    rows.into_iter()
        .find(|(_, _, entry)| parse_standing_entry(entry).is_some_and(|(p, _)| p == parent))
        .map(|(id, name, _)| format!("standing approval {id} ({name})"))
}

/// A standing approval's cutoff: now() minus its older_than, in microseconds since
/// 1970, by the server's interval arithmetic (months and days as PostgreSQL counts
/// them) in UTC, whatever the session's TimeZone (a month back from 31 March is 28
/// February in UTC; in another zone it could be 1 March). A query of its own, run only for a standing approval, which exists only in a
/// database whose pg_migsafe schema has the column (0.6.0 on).
fn standing_cutoff(id: i64) -> Option<i64> {
    spi::one::<i64>(
        As::Superuser,
        "SELECT (pg_catalog.date_part('epoch', (pg_catalog.timezone('UTC', pg_catalog.now()) \
                                                  OPERATOR(pg_catalog.-) p.older_than)) \
                 OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 \
           FROM migsafe.phase p WHERE p.id OPERATOR(pg_catalog.=) $1",
        &[id.into()],
    )
}

/// The contract phases for this session's roles that an earlier transaction spent
/// while they were still valid, with when: read only to explain a refusal.
pub fn spent_phases() -> Vec<(ActivePhase, String)> {
    let session = role_name(unsafe { pg_sys::GetSessionUserId() });
    let current = role_name(unsafe { pg_sys::GetUserId() });
    spi::select(
        As::Superuser,
        "SELECT id, kind, name, objects, ended_at::pg_catalog.text \
           FROM migsafe._spent_phases_for_session($1::name, $2::name)",
        &[session.into(), current.into()],
        |rows| {
            let mut out = Vec::new();
            for row in rows {
                let kind = row.get::<String>(2)?.unwrap_or_default();
                let Some(kind) = PhaseKind::parse(&kind) else {
                    continue;
                };
                let objects: Vec<String> = row.get::<Vec<String>>(4)?.unwrap_or_default();
                out.push((
                    ActivePhase {
                        id: row.get::<i64>(1)?.unwrap_or(0),
                        kind,
                        name: row.get::<String>(3)?.unwrap_or_default(),
                        objects: objects
                            .iter()
                            .filter_map(|o| parse_pattern(o).ok())
                            .collect(),
                        standing: None,
                    },
                    row.get::<String>(5)?.unwrap_or_default(),
                ));
            }
            Ok(out)
        },
    )
}

/// Records that `phase` approved this statement (and spends a role phase with the
/// transaction).
pub fn record_use(phase: i64, rules: &[&str], targets: &[Option<Target>], statement: &str) {
    if !crate::pgutil::transaction_writable() {
        // The statement fails with PostgreSQL's read-only error: nothing was used.
        return;
    }
    let user = role_name(unsafe { pg_sys::GetUserId() });
    let rules: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
    let objs: Vec<String> = targets
        .iter()
        .flatten()
        .map(|t| format!("{} {}", t.kind, t.identity))
        .collect();
    spi::run(
        As::Superuser,
        "SELECT migsafe._record_use($1, $2::name, $3, $4, $5)",
        &[
            phase.into(),
            user.into(),
            rules.into(),
            objs.into(),
            statement.into(),
        ],
    );
}
