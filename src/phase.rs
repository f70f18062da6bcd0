//! Two-phase approval, the pgrx side: validating a phase's object list, finding the
//! phases that may approve a statement, and recording their use. The matching itself
//! is `engine::phase`; the tables and SQL functions are in sql/phases.sql.

use crate::engine::phase::{parse_pattern, ActivePhase, ObjectPattern, PhaseKind, Target};
use crate::pgutil::role_name;
use pgrx::pg_sys;
use pgrx::prelude::*;

pgrx::extension_sql_file!(
    "../sql/phases.sql",
    name = "phases",
    requires = [check_objects]
);

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Does a non-pattern object entry name something that exists?
fn exists(p: &ObjectPattern) -> bool {
    let id = literal(&p.identity);
    let sql = match p.kind.as_deref() {
        None => {
            let parts = p.identity.matches('.').count();
            if parts >= 2 {
                // schema.table.column: the column must exist in the relation.
                let (rel, col) = p.identity.rsplit_once('.').unwrap();
                format!(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass({}) \
                       AND attname = {} AND attnum > 0 AND NOT attisdropped)",
                    literal(rel),
                    literal(col.trim_matches('"'))
                )
            } else {
                format!("SELECT to_regclass({id}) IS NOT NULL")
            }
        }
        Some("table" | "view" | "materialized view" | "sequence" | "foreign table" | "index") => {
            format!("SELECT to_regclass({id}) IS NOT NULL")
        }
        Some("function" | "procedure" | "aggregate") => {
            format!("SELECT to_regprocedure({id}) IS NOT NULL")
        }
        Some("type" | "domain") => format!("SELECT to_regtype({id}) IS NOT NULL"),
        Some("schema") => format!("SELECT to_regnamespace({id}) IS NOT NULL"),
        Some("role") => format!("SELECT to_regrole({id}) IS NOT NULL"),
        Some("extension") => {
            format!("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = {id})")
        }
        Some("database") => {
            format!("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = {id})")
        }
        Some("publication") => {
            format!("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = {id})")
        }
        // Triggers, rules, policies, constraints…: checked when used.
        Some(_) => return true,
    };
    Spi::get_one::<bool>(&sql).ok().flatten().unwrap_or(false)
}

/// Validates a phase's object list; returns it normalised (trimmed). Used by
/// migsafe.begin_phase().
#[pg_extern(name = "_check_objects", volatile)]
fn check_objects(objects: Vec<Option<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for o in objects {
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
        let pattern = p.identity.contains('*') || p.identity.contains('?');
        if !pattern && !exists(&p) {
            pgrx::ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("object \"{}\" does not exist", o.trim())
            );
        }
        let norm = o.trim().to_string();
        if !out.contains(&norm) {
            out.push(norm);
        }
    }
    out
}

/// Runs SPI work `f` as the bootstrap superuser (the phase and audit tables, and other
/// sessions' queries, are not readable by the roles that run migrations) and with an
/// active snapshot (utility statements of the extended protocol and commit callbacks
/// run without one), restoring both on return. An ERROR inside aborts the transaction,
/// which restores them too.
pub fn as_superuser<R>(f: impl FnOnce() -> R) -> R {
    let (mut uid, mut ctx) = (pg_sys::InvalidOid, 0);
    let pushed = unsafe { !pg_sys::ActiveSnapshotSet() };
    unsafe {
        if pushed {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        pg_sys::GetUserIdAndSecContext(&mut uid, &mut ctx);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let r = f();
    unsafe {
        pg_sys::SetUserIdAndSecContext(uid, ctx);
        if pushed {
            pg_sys::PopActiveSnapshot();
        }
    }
    r
}

/// Is two-phase approval installed in this database?
pub fn available() -> bool {
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"migsafe".as_ptr(), true);
        nsp != pg_sys::InvalidOid
            && pg_sys::get_relname_relid(c"phase".as_ptr(), nsp) != pg_sys::InvalidOid
    }
}

/// The phases that may approve statements of this session right now.
pub fn session_phases() -> Vec<(ActivePhase, bool)> {
    let session = role_name(unsafe { pg_sys::GetSessionUserId() });
    let current = role_name(unsafe { pg_sys::GetUserId() });
    let sql = format!(
        "SELECT id, kind, name, objects, for_role IS NOT NULL FROM migsafe._phases_for_session({}, {})",
        literal(&session),
        literal(&current)
    );
    as_superuser(|| {
        Spi::connect(|client| {
            let mut out = Vec::new();
            if let Ok(rows) = client.select(&sql, None, &[]) {
                for row in rows {
                    let id = row.get::<i64>(1).ok().flatten().unwrap_or(0);
                    let kind = row.get::<String>(2).ok().flatten().unwrap_or_default();
                    let name = row.get::<String>(3).ok().flatten().unwrap_or_default();
                    let objects: Vec<String> =
                        row.get::<Vec<String>>(4).ok().flatten().unwrap_or_default();
                    let for_role = row.get::<bool>(5).ok().flatten().unwrap_or(false);
                    let Some(kind) = PhaseKind::parse(&kind) else {
                        continue;
                    };
                    let objects = objects
                        .iter()
                        .filter_map(|o| parse_pattern(o).ok())
                        .collect();
                    out.push((
                        ActivePhase {
                            id,
                            kind,
                            name,
                            objects,
                        },
                        for_role,
                    ));
                }
            }
            out
        })
    })
}

/// Records that `phase` approved this statement (and spends a role phase with the
/// transaction).
pub fn record_use(phase: i64, rules: &[&str], targets: &[Option<Target>], statement: &str) {
    let user = role_name(unsafe { pg_sys::GetUserId() });
    let arr = |v: Vec<String>| {
        format!(
            "ARRAY[{}]::text[]",
            v.iter().map(|s| literal(s)).collect::<Vec<_>>().join(", ")
        )
    };
    let objs: Vec<String> = targets
        .iter()
        .flatten()
        .map(|t| format!("{} {}", t.kind, t.identity))
        .collect();
    let sql = format!(
        "SELECT migsafe._record_use({phase}, {}, {}, {}, {})",
        literal(&user),
        arr(rules.iter().map(|r| r.to_string()).collect()),
        arr(objs),
        literal(statement)
    );
    as_superuser(|| {
        Spi::connect_mut(|client| {
            client
                .update(&sql, None, &[])
                .expect("recording the phase use failed");
        })
    });
}
