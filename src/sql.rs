//! SQL functions: migsafe.check(sql) and migsafe.rules().

use crate::engine::policy::{decide, Decision};
use crate::engine::rules::RULES;
use crate::guc;
use crate::stmt::classify::Classifier;
use crate::stmt::parse::parse;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

type CheckRow = (
    i32,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    bool,
    bool,
    String,
    Option<String>,
    String,
);

#[allow(clippy::type_complexity)]
/// Classifies `sql` without running it: one row per finding, one `safe` row for a
/// statement without findings.
#[pg_extern(stable, parallel_safe)]
fn check(
    sql: &str,
) -> TableIterator<
    'static,
    (
        name!(statement_no, i32),
        name!(statement, String),
        name!(rule_id, String),
        name!(severity, String),
        name!(object, Option<String>),
        name!(lock_mode, Option<String>),
        name!(rewrites, bool),
        name!(data_loss, bool),
        name!(message, String),
        name!(hint, Option<String>),
        name!(decision, String),
    ),
> {
    let parsed = parse(sql);
    let settings = guc::settings();
    let bytes = sql.as_bytes();
    let mut rows: Vec<CheckRow> = Vec::new();
    let mut classifier = Classifier::new(true);
    let stmts = unsafe { PgList::<pg_sys::RawStmt>::from_pg(parsed) };
    classifier.migration.multi_statement = stmts.len() > 1;
    let nodes: Vec<*mut pg_sys::Node> = stmts.iter_ptr().map(|r| unsafe { (*r).stmt }).collect();
    unsafe { classifier.note_input(&nodes) };
    for (i, raw) in stmts.iter_ptr().enumerate() {
        pgrx::check_for_interrupts!();
        let n = (i + 1) as i32;
        let text = unsafe {
            crate::pgutil::statement_slice(bytes, (*raw).stmt_location, (*raw).stmt_len)
                .trim()
                .to_string()
        };
        unsafe { classifier.classify((*raw).stmt) };
        let findings = std::mem::take(&mut classifier.findings);
        if findings.is_empty() {
            rows.push((
                n,
                text,
                "safe".into(),
                "safe".into(),
                None,
                None,
                false,
                false,
                "no hazard found".into(),
                None,
                "allowed".into(),
            ));
            continue;
        }
        for f in &findings {
            let decision = match decide(vec![f.clone()], &settings) {
                Decision::Allow if f.rule.check_only => "not seen by the hook",
                Decision::Allow => "allowed",
                Decision::Warn(_) => "warned",
                Decision::Refuse(_) => "refused",
            };
            let mut message = format!("{} on {}: {}", f.rule.id, f.object, f.rule.message);
            let size = f.size.map(|s| s.fact(f.rule.work));
            for fact in f.facts.iter().chain(size.iter()) {
                message.push_str(". ");
                message.push_str(fact);
            }
            if !f.dependents.is_empty() {
                message.push_str(&format!(
                    ". It would also drop: {}",
                    f.dependents.join(", ")
                ));
            }
            rows.push((
                n,
                text.clone(),
                f.rule.id.as_str().into(),
                f.rule.severity.as_str().into(),
                Some(f.object.clone()),
                Some(f.rule.lock.into()),
                f.rule.work.touches_rows(),
                f.rule.data_loss,
                message,
                Some(f.rule.safe_alternative.into()),
                decision.into(),
            ));
        }
    }
    TableIterator::new(rows)
}

#[allow(clippy::type_complexity)]
/// The rule catalog as a table.
#[pg_extern(immutable, parallel_safe)]
fn rules() -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(severity, String),
        name!(self_protection, bool),
        name!(check_only, bool),
        name!(lock_mode, String),
        name!(table_work, String),
        name!(rewrites, bool),
        name!(data_loss, bool),
        name!(title, String),
        name!(message, String),
        name!(safe_alternative, String),
        name!(setup_sql, String),
        name!(bad_example, String),
        name!(good_example, String),
    ),
> {
    TableIterator::new(RULES.iter().map(|r| {
        (
            r.id.to_string(),
            r.severity.as_str().to_string(),
            r.protects_extension,
            r.check_only,
            r.lock.to_string(),
            r.work.as_str().to_string(),
            r.work.touches_rows(),
            r.data_loss,
            r.title.to_string(),
            r.message.to_string(),
            r.safe_alternative.to_string(),
            r.setup.to_string(),
            r.bad.to_string(),
            r.good.to_string(),
        )
    }))
}

pgrx::extension_sql!(
    r#"
COMMENT ON SCHEMA migsafe IS 'pg_migsafe: safe schema migrations, enforced in the server';
GRANT USAGE ON SCHEMA migsafe TO PUBLIC;
"#,
    name = "schema_grants",
    finalize
);
