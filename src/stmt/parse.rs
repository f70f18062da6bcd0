//! Parsing and splitting, as the server does: the one place that turns SQL text
//! into parse trees (`migsafe.check()`, the dry run's split, the plain form of a
//! concurrent statement).

use pgrx::pg_sys;
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

/// The parse tree of `sql` when it is exactly one statement, None when it is not or
/// does not parse (the syntax error is rolled back with an internal subtransaction).
pub fn parse_one(sql: &str) -> Option<*mut pg_sys::Node> {
    let c_sql = std::ffi::CString::new(sql.replace('\0', " ")).ok()?;
    let parsed = crate::spi::in_subtransaction(|| unsafe {
        #[cfg(feature = "pg13")]
        let l = pg_sys::raw_parser(c_sql.as_ptr());
        #[cfg(not(feature = "pg13"))]
        let l = pg_sys::raw_parser(c_sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        l
    })
    .ok()?;
    let stmts = unsafe { PgList::<pg_sys::RawStmt>::from_pg(parsed) };
    match stmts.len() {
        1 => stmts.get_ptr(0).map(|raw| unsafe { (*raw).stmt }),
        _ => None,
    }
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
