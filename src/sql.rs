//! SQL functions: migsafe.check(sql) and migsafe.rules().

use crate::engine::policy::{decide, Decision};
use crate::engine::rules::RULES;
use crate::guc;
use crate::stmt::classify::Classifier;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;
use std::ffi::{c_char, c_int, c_void, CString};

unsafe extern "C-unwind" {
    #[link_name = "geterrposition"]
    fn raw_geterrposition() -> c_int;
    #[link_name = "errposition"]
    fn raw_errposition(cursorpos: c_int) -> c_int;
    #[link_name = "errdetail"]
    fn raw_errdetail(fmt: *const c_char, ...) -> c_int;
}

/// Line and column (1-based) of a 1-based character position in `s`.
fn line_col(s: &str, pos: usize) -> (usize, usize, String) {
    let mut line = 1;
    let mut col = 1;
    let mut line_start = 0;
    for (i, (b, ch)) in s.char_indices().enumerate() {
        if i + 1 >= pos {
            break;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
            line_start = b + 1;
        } else {
            col += 1;
        }
    }
    let text = s[line_start..].lines().next().unwrap_or("").to_string();
    (line, col, text)
}

/// Error context callback around raw_parser: turns the cursor position (which would
/// point into the outer `SELECT migsafe.check(...)`) into a DETAIL naming the line
/// and column of the input.
unsafe extern "C-unwind" fn parse_error_context(arg: *mut c_void) {
    let pos = raw_geterrposition();
    if pos <= 0 {
        return;
    }
    let input = &*(arg as *const String);
    let msg = {
        let (line, col, text) = line_col(input, pos as usize);
        let shown = crate::engine::policy::shorten(text.trim_end(), 120);
        CString::new(format!(
            "In the migsafe.check() input at line {line}, column {col}: {shown}"
        ))
        .unwrap_or_default()
    };
    raw_errposition(0);
    raw_errdetail(c"%s".as_ptr(), msg.as_ptr());
}

struct ContextGuard(*mut pg_sys::ErrorContextCallback);
impl Drop for ContextGuard {
    fn drop(&mut self) {
        unsafe { pg_sys::error_context_stack = self.0 }
    }
}

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

/// Parses `sql` with the server's raw parser (a syntax error is reported with the
/// line and column of the input); returns the RawStmt list.
pub fn parse(sql: &str) -> *mut pg_sys::List {
    let input = sql.to_string();
    let c_sql = CString::new(sql.replace('\0', " ")).unwrap_or_default();
    unsafe {
        let mut cb = pg_sys::ErrorContextCallback {
            previous: pg_sys::error_context_stack,
            callback: Some(parse_error_context),
            arg: &input as *const String as *mut c_void,
        };
        let _guard = ContextGuard(pg_sys::error_context_stack);
        pg_sys::error_context_stack = &mut cb;
        #[cfg(feature = "pg13")]
        let parsed = pg_sys::raw_parser(c_sql.as_ptr());
        #[cfg(not(feature = "pg13"))]
        let parsed = pg_sys::raw_parser(c_sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        parsed
    }
}

/// The text without the comment lines and blank space before the statement (the
/// server's statement location starts right after the previous `;`, so Drizzle's
/// `--> statement-breakpoint` comes first).
fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        match s.strip_prefix("--") {
            Some(rest) => s = rest.split_once('\n').map_or("", |(_, r)| r),
            None => return s.trim_end(),
        }
    }
}

/// The statements of `sql` as the server splits them: text and parse tree.
pub fn statements(sql: &str) -> Vec<(String, *mut pg_sys::Node)> {
    let parsed = parse(sql);
    let bytes = sql.as_bytes();
    let stmts = unsafe { PgList::<pg_sys::RawStmt>::from_pg(parsed) };
    stmts
        .iter_ptr()
        .map(|raw| unsafe {
            let text = crate::pgutil::statement_slice(bytes, (*raw).stmt_location, (*raw).stmt_len);
            (strip_leading_comments(&text).to_string(), (*raw).stmt)
        })
        .collect()
}

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
    classifier.multi_statement = stmts.len() > 1;
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
            let size = f.size.map(crate::engine::policy::TableSize::fact);
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

#[cfg(test)]
mod tests {
    #[test]
    fn leading_comments_are_not_part_of_the_statement() {
        assert_eq!(
            super::strip_leading_comments(
                "\n--> statement-breakpoint\n-- x\n  ALTER TABLE t ADD c int \n"
            ),
            "ALTER TABLE t ADD c int"
        );
        assert_eq!(super::strip_leading_comments("-- only"), "");
        assert_eq!(
            super::strip_leading_comments("SELECT 1 -- tail"),
            "SELECT 1 -- tail"
        );
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(
            super::line_col("SELECT 1;\nDROP TABL x", 16),
            (2, 6, "DROP TABL x".into())
        );
        assert_eq!(super::line_col("ä b", 3), (1, 3, "ä b".into()));
    }
}

pgrx::extension_sql!(
    r#"
COMMENT ON SCHEMA migsafe IS 'pg_migsafe: safe schema migrations, enforced in the server';
GRANT USAGE ON SCHEMA migsafe TO PUBLIC;
"#,
    name = "schema_grants",
    finalize
);
