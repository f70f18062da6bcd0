//! Snapshots, the pgrx side: reading the catalog (`migsafe._catalog()` in
//! sql/snapshots.sql), loading stored snapshots, and the SQL functions diff,
//! rollback_sql, verify and the helpers that migsafe.rollback() and
//! migsafe.dry_run() (sql/rollback.sql) are built from. The model, diff, merge and
//! rollback planning are plain Rust in `crate::engine::schema`.

use crate::engine::schema::diff::{diff as schema_diff, Change};
use crate::engine::schema::model::Schema;
use crate::engine::schema::rollback::{
    rollback_sql as plan, to_script, with_owners, DataObject, Statement,
};
use crate::engine::schema::scope::{merge, restrict, Part, Scope};
use crate::spi::{self, As};
use pgrx::prelude::*;
use pgrx::JsonB;
use std::collections::BTreeSet;

pgrx::extension_sql_file!(
    "../sql/snapshots.sql",
    name = "snapshots",
    requires = ["audit", next_snapshot_id_sql]
);

/// The next snapshot id of this database (`audit::queue::next_snapshot_id`): not from
/// the table's identity sequence, so that an automatic snapshot inside a user's
/// transaction changes neither `lastval()` nor the locks the transaction holds. The
/// sequence serves only a database beyond the shared-memory table of counters.
pub fn next_snapshot_id() -> i64 {
    let largest_stored = || {
        spi::rolled_back(|| {
            spi::one::<i64>(
                As::Superuser,
                "SELECT coalesce(pg_catalog.max(id), 0) FROM migsafe.snapshot",
                &[],
            )
            .unwrap_or(0)
        })
        .unwrap_or_else(|e| e.rethrow())
    };
    crate::audit::queue::next_snapshot_id(unsafe { pg_sys::MyDatabaseId }, largest_stored)
        .unwrap_or_else(|| {
            spi::one::<i64>(
                As::Superuser,
                "SELECT pg_catalog.nextval('migsafe.snapshot_id_seq'::pg_catalog.regclass)",
                &[],
            )
            .unwrap_or(0)
        })
}

#[pg_extern(name = "_next_snapshot_id", volatile, parallel_unsafe)]
fn next_snapshot_id_sql() -> i64 {
    next_snapshot_id()
}

pgrx::extension_sql_file!(
    "../sql/rollback.sql",
    name = "rollback",
    requires = [
        "recycle",
        diff,
        rollback_sql,
        rollback_plan,
        rollback_plan_for,
        diff_docs,
        live_doc,
        split,
        set_rollback_approval,
        rollback_exec,
        rollback_phase_id,
        run_as,
        holds_data
    ]
);

fn bad(code: PgSqlErrorCode, msg: String) -> ! {
    pgrx::ereport!(ERROR, code, msg);
}

fn parse(json: &str, what: &str) -> Schema {
    Schema::from_json(json).unwrap_or_else(|e| {
        bad(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("pg_migsafe: {what} is not a valid schema document: {e}"),
        )
    })
}

/// The live schema, or the part of it a scope names. Read as the superuser, so that
/// every reader sees the same document; what a caller may not read is hidden by
/// [`for_caller`] before anything is shown.
pub fn live(scope: Option<&Scope>) -> Schema {
    let arg: Option<JsonB> =
        scope.map(|s| JsonB(serde_json::from_str(&s.to_json()).expect("a scope is JSON")));
    let json = spi::one::<String>(
        As::Superuser,
        "SELECT migsafe._catalog($1)::text",
        &[arg.into()],
    )
    .unwrap_or_default();
    restrict(parse(&json, "the live catalog"), scope)
}

/// The roles whose privileges the caller holds (names, `""` for PUBLIC), or None
/// when the caller may read every sequence (a superuser, a member of
/// pg_read_all_data).
fn caller_roles() -> Option<BTreeSet<String>> {
    roles_of(unsafe { pg_sys::GetUserId() })
}

/// The same for any role.
fn roles_of(uid: pg_sys::Oid) -> Option<BTreeSet<String>> {
    if unsafe { pg_sys::superuser_arg(uid) } {
        return None;
    }
    let roles: Vec<String> = spi::one(
        As::Caller,
        "SELECT pg_catalog.array_agg(r.rolname::text) FROM pg_catalog.pg_roles r \
          WHERE pg_catalog.pg_has_role($1, r.oid, 'USAGE')",
        &[uid.into()],
    )
    .unwrap_or_default();
    if roles.iter().any(|r| r == "pg_read_all_data") {
        return None;
    }
    let mut set: BTreeSet<String> = roles.into_iter().collect();
    set.insert(String::new());
    Some(set)
}

/// The plan from `now` back to `target` with each step's owner, as rows; a step owned by
/// a role dropped since the snapshot cannot run.
fn owned_plan(now: &Schema, target: &Schema) -> Vec<PlanRow> {
    let roles: BTreeSet<String> = spi::one::<Vec<String>>(
        As::Caller,
        "SELECT pg_catalog.array_agg(r.rolname::text) FROM pg_catalog.pg_roles r",
        &[],
    )
    .unwrap_or_default()
    .into_iter()
    .collect();
    plan_rows(with_owners(plan(now, target), now, target, &|r| {
        roles.contains(r)
    }))
}

/// A document as the caller may see it: sequence positions the caller could not read
/// directly are left out.
pub fn for_caller(mut schema: Schema) -> Schema {
    if let Some(roles) = caller_roles() {
        schema.hide_sequence_values(&roles);
    }
    schema
}

/// A stored snapshot: the merged model and the union of its scopes.
pub struct Loaded {
    pub schema: Schema,
    pub scope: Option<Scope>,
}

pub fn load(id: Option<i64>, arg: &str) -> Loaded {
    load_for(id, arg, unsafe { pg_sys::GetUserId() })
}

/// A stored snapshot as `role` may see it (sequence positions it could not read are
/// left out).
fn load_for(id: Option<i64>, arg: &str, role: pg_sys::Oid) -> Loaded {
    let mut l = load_raw(id, arg);
    if let Some(roles) = roles_of(role) {
        l.schema.hide_sequence_values(&roles);
    }
    l
}

/// A stored snapshot as stored (nothing of it may reach a caller before
/// [`Schema::hide_sequence_values`]).
fn load_raw(id: Option<i64>, arg: &str) -> Loaded {
    let Some(id) = id else {
        bad(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("pg_migsafe: {arg} must not be NULL"),
        )
    };
    let exists = spi::one::<bool>(
        As::Superuser,
        "SELECT EXISTS (SELECT 1 FROM migsafe.snapshot WHERE id OPERATOR(pg_catalog.=) $1)",
        &[id.into()],
    )
    .unwrap_or(false);
    let parts = exists.then(|| {
        spi::select(
            As::Superuser,
            "SELECT scope::text, doc::text FROM migsafe.snapshot_part \
              WHERE snapshot_id OPERATOR(pg_catalog.=) $1 ORDER BY part",
            &[id.into()],
            |rows| {
                let mut parts = Vec::new();
                for row in rows {
                    let scope: Option<String> = row.get(1)?;
                    let doc: Option<String> = row.get(2)?;
                    parts.push((scope, doc.unwrap_or_default()));
                }
                Ok(parts)
            },
        )
    });
    let Some(parts) = parts else {
        bad(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("pg_migsafe: snapshot {id} does not exist (see migsafe.snapshots)"),
        )
    };
    let parts: Vec<Part> = parts
        .into_iter()
        .map(|(scope, doc)| Part {
            scope: scope.map(|s| {
                serde_json::from_str(&s).unwrap_or_else(|e| {
                    bad(
                        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                        format!("pg_migsafe: snapshot {id} has an invalid scope: {e}"),
                    )
                })
            }),
            schema: parse(&doc, &format!("snapshot {id}")),
        })
        .collect();
    let (schema, scope) = match parts.len() {
        // An automatic snapshot whose migration reached nothing it models.
        0 => (Schema::default(), Some(Scope::default())),
        1 => {
            let p = parts.into_iter().next().expect("one part");
            (p.schema, p.scope)
        }
        _ => merge(&parts),
    };
    Loaded { schema, scope }
}

type DiffRow = (String, String, String, Option<JsonB>, Option<JsonB>, bool);

fn rows(changes: Vec<Change>) -> Vec<DiffRow> {
    changes
        .into_iter()
        .map(|c| {
            let j = |v: serde_json::Value| (!v.is_null()).then_some(JsonB(v));
            (
                c.kind.as_str().to_string(),
                c.identity,
                c.action.as_str().to_string(),
                j(c.before),
                j(c.after),
                c.loses_data,
            )
        })
        .collect()
}

/// Snapshot `from` against snapshot `to`, or against the live schema when `to` is
/// NULL. Partial (automatic) snapshots are compared within what they cover.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn diff(
    from_snapshot: Option<i64>,
    to_snapshot: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(identity, String),
        name!(action, String),
        name!(before, Option<JsonB>),
        name!(after, Option<JsonB>),
        name!(loses_data, bool),
    ),
> {
    let from = load(from_snapshot, "from_snapshot");
    let (before, after) = match to_snapshot {
        None => {
            let now = for_caller(live(from.scope.as_ref()));
            (from.schema, now)
        }
        Some(_) => {
            let to = load(to_snapshot, "to_snapshot");
            restrict_pair(from, to)
        }
    };
    TableIterator::new(rows(schema_diff(&before, &after)))
}

/// Two stored snapshots compared within what both cover.
fn restrict_pair(a: Loaded, b: Loaded) -> (Schema, Schema) {
    let both = Scope::intersect(a.scope.as_ref(), b.scope.as_ref());
    (
        restrict(a.schema, both.as_ref()),
        restrict(b.schema, both.as_ref()),
    )
}

/// The DDL that takes the live schema back to the snapshot, as one script.
#[pg_extern(volatile, parallel_unsafe)]
fn rollback_sql(snapshot: Option<i64>) -> String {
    let target = load(snapshot, "snapshot");
    let now = live(target.scope.as_ref());
    to_script(&plan(&now, &target.schema))
}

type PlanRow = (
    i32,
    String,
    String,
    String,
    String,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    Option<String>,
);

fn data_parts(d: &Option<DataObject>) -> (Option<String>, Option<String>) {
    match d {
        None => (None, None),
        Some(DataObject::Table { table }) => (Some(table.clone()), None),
        Some(DataObject::Column { table, column }) => (Some(table.clone()), Some(column.clone())),
    }
}

fn plan_rows(statements: Vec<Statement>) -> Vec<PlanRow> {
    statements
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let (dt, dc) = data_parts(&s.drops);
            let (rt, rc) = data_parts(&s.recreates);
            let exec = s.is_executable();
            (
                (i + 1) as i32,
                s.sql,
                s.kind.as_str().to_string(),
                s.identity,
                serde_json::to_value(s.operation)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                s.drops_data,
                dt,
                dc,
                rt,
                rc,
                s.note,
                exec,
                s.owner,
            )
        })
        .collect()
}

/// The rollback plan as rows (used by migsafe.rollback()).
#[allow(clippy::type_complexity)]
#[pg_extern(name = "_rollback_plan", volatile, parallel_unsafe)]
fn rollback_plan(
    snapshot: Option<i64>,
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(sql, String),
        name!(kind, String),
        name!(identity, String),
        name!(operation, String),
        name!(drops_data, bool),
        name!(drops_table, Option<String>),
        name!(drops_column, Option<String>),
        name!(recreates_table, Option<String>),
        name!(recreates_column, Option<String>),
        name!(note, Option<String>),
        name!(executable, bool),
        name!(owner, Option<String>),
    ),
> {
    let target = load(snapshot, "snapshot");
    let now = live(target.scope.as_ref());
    TableIterator::new(owned_plan(&now, &target.schema))
}

/// The rollback plan as `role` may see it (used by migsafe._rollback_approve(), which
/// runs as the extension's owner on behalf of its session user; not executable by
/// anyone else).
#[allow(clippy::type_complexity)]
#[pg_extern(name = "_rollback_plan_for", volatile, parallel_unsafe)]
fn rollback_plan_for(
    snapshot: Option<i64>,
    role: pg_sys::Oid,
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(sql, String),
        name!(kind, String),
        name!(identity, String),
        name!(operation, String),
        name!(drops_data, bool),
        name!(drops_table, Option<String>),
        name!(drops_column, Option<String>),
        name!(recreates_table, Option<String>),
        name!(recreates_column, Option<String>),
        name!(note, Option<String>),
        name!(executable, bool),
        name!(owner, Option<String>),
    ),
> {
    let target = load_for(snapshot, "snapshot", role);
    let now = live(target.scope.as_ref());
    TableIterator::new(owned_plan(&now, &target.schema))
}

/// The diff between two schema documents (used by migsafe.dry_run()).
#[allow(clippy::type_complexity)]
#[pg_extern(name = "_diff_docs", volatile, parallel_unsafe)]
fn diff_docs(
    before: Option<pgrx::Json>,
    after: Option<pgrx::Json>,
) -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(identity, String),
        name!(action, String),
        name!(before, Option<JsonB>),
        name!(after, Option<JsonB>),
        name!(loses_data, bool),
    ),
> {
    let doc = |j: Option<pgrx::Json>| match j {
        None => Schema::default(),
        Some(pgrx::Json(v)) => serde_json::from_value(v).unwrap_or_else(|e| {
            bad(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("pg_migsafe: not a schema document: {e}"),
            )
        }),
    };
    TableIterator::new(rows(schema_diff(&doc(before), &doc(after))))
}

/// The live schema document as text, as the caller may see it (used by
/// migsafe.dry_run()).
#[pg_extern(name = "_live_doc", volatile, parallel_unsafe)]
fn live_doc() -> String {
    let json = spi::one::<String>(As::Superuser, "SELECT migsafe._catalog(NULL)::text", &[])
        .unwrap_or_default();
    let Some(roles) = caller_roles() else {
        return json;
    };
    // In the catalog's own form (what dry_run() diffs), with the model's rule for
    // which positions the caller may see.
    let mut doc: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| bad(PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, e.to_string()));
    if let Some(seqs) = doc.get_mut("sequences").and_then(|v| v.as_array_mut()) {
        for s in seqs {
            let acl: Vec<String> = s
                .get("acl")
                .and_then(|a| serde_json::from_value(a.clone()).ok())
                .unwrap_or_default();
            if !crate::engine::schema::model::may_read_sequence(&acl, &roles) {
                s["last_value"] = serde_json::Value::Null;
            }
        }
    }
    doc.to_string()
}

/// The statements of a migration as the server splits them (Drizzle's
/// `--> statement-breakpoint` lines are comments), and whether each can run inside
/// a transaction.
#[allow(clippy::type_complexity)]
#[pg_extern(name = "_split", volatile, parallel_unsafe)]
fn split(
    sql: &str,
) -> TableIterator<
    'static,
    (
        name!(n, i32),
        name!(statement, String),
        name!(runnable, bool),
        name!(why, Option<String>),
    ),
> {
    let rows: Vec<_> = crate::stmt::parse::statements(sql)
        .into_iter()
        .enumerate()
        .map(|(i, (text, node))| {
            let why = unsafe { crate::stmt::txn::outside_transaction(node) };
            (
                (i + 1) as i32,
                text,
                why.is_none(),
                why.map(|w| w.why.to_string()),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// For the dry run: the plain form of a statement that cannot run in a transaction
/// block only because of CONCURRENTLY (NULL for any other statement). Text only:
/// the dry run runs it with EXECUTE, as the caller, through the guard.
#[pg_extern(name = "_in_transaction_form", stable, parallel_unsafe)]
fn in_transaction_form(statement: &str) -> Option<String> {
    crate::stmt::txn::in_transaction_text(statement)
}
