//! A Rust panic in pg_migsafe is a bug, and it is logged as one.
//!
//! pgrx turns a panic that reaches a `#[pg_guard]` or `#[pg_extern]` boundary into an
//! ordinary `ERROR` with SQLSTATE `XX000` and the panic's text, so the backend survives.
//! That keeps the server up, but an error like "called `Option::unwrap()` on a `None`
//! value" looks to a DBA like any failed statement. This module makes every real panic,
//! in a backend or in a background worker, leave one line in the server log:
//!
//! ```text
//! pg_migsafe_bug {"location":"src/x.rs:10:5","message":"…","pid":4242,"version":"0.3.0"}
//! ```
//!
//! Invariants:
//! - PostgreSQL's own errors also travel through Rust frames as panics (pgrx raises them
//!   with `panic_any` carrying a `CaughtError` or an `ErrorReport`); they are not bugs and
//!   are never logged here. Only payloads of `panic!`, `unwrap`, `expect`, index and
//!   arithmetic checks — a `&str` or a `String`, or anything else pgrx does not know —
//!   count.
//! - The hook runs while the panic starts, before unwinding: it must not raise a
//!   PostgreSQL error (a longjmp from here would skip Rust frames) and must not panic
//!   (a panic inside a panic hook aborts the process). So it writes to `stderr` — which
//!   PostgreSQL sends to its log (the file of `pg_ctl -l`, or the logging collector) —
//!   ignores write errors, and calls the hook that was installed before it (pgrx's,
//!   which remembers where the panic happened for the `ERROR` it raises).
//! - `bugs_seen()` counts them in this process (the test reads it).

use pgrx::pg_sys::panic::{CaughtError, ErrorReport, ErrorReportWithLevel};
use std::any::Any;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The marker that opens the server-log line; documented in docs/audit.md and looked for
/// by the integration tests in every scratch cluster's log.
pub const MARKER: &str = "pg_migsafe_bug";

static BUGS_SEEN: AtomicU64 = AtomicU64::new(0);

/// Installs the panic hook, chained in front of the one already installed (pgrx installs
/// its own when PostgreSQL loads the library). Called once, from `_PG_init`.
pub fn init() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if let Some(message) = bug_message(info.payload()) {
            BUGS_SEEN.fetch_add(1, Ordering::Relaxed);
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            let line = log_line(&message, &location, std::process::id());
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(line.as_bytes());
            let _ = err.flush();
        }
    }));
}

/// Real panics seen by this process since it started.
#[allow(dead_code)] // read by the #[pg_test]
pub fn bugs_seen() -> u64 {
    BUGS_SEEN.load(Ordering::Relaxed)
}

/// The panic's text, or None when the payload is a PostgreSQL error travelling through
/// Rust frames (not a bug).
fn bug_message(payload: &(dyn Any + Send)) -> Option<String> {
    if payload.is::<CaughtError>()
        || payload.is::<ErrorReportWithLevel>()
        || payload.is::<ErrorReport>()
    {
        return None;
    }
    Some(if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a payload that is not text".to_string()
    })
}

/// A panic's message is kept to this many bytes in the log line: one short write
/// (not interleaved with other processes' output), and no statement text carried whole
/// into the log.
const MAX_MESSAGE: usize = 1024;

/// One line, newline-terminated, JSON after the marker (so a log shipper can parse it).
fn log_line(message: &str, location: &str, pid: u32) -> String {
    let mut end = message.len().min(MAX_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = if end < message.len() {
        format!("{}…", &message[..end])
    } else {
        message.to_string()
    };
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": pid,
        "location": location,
        "message": message,
    });
    format!("{MARKER} {body}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgrx::PgSqlErrorCode;

    #[test]
    fn text_payloads_are_bugs() {
        let s: Box<dyn Any + Send> = Box::new("index out of bounds");
        assert_eq!(
            bug_message(s.as_ref()).as_deref(),
            Some("index out of bounds")
        );
        let s: Box<dyn Any + Send> = Box::new(String::from("boom"));
        assert_eq!(bug_message(s.as_ref()).as_deref(), Some("boom"));
        let s: Box<dyn Any + Send> = Box::new(42_u8);
        assert!(bug_message(s.as_ref()).unwrap().contains("not text"));
    }

    #[test]
    fn error_reports_are_not_bugs() {
        // `pgrx::error!` raises an ErrorReport (PostgreSQL's own errors, carried as
        // CaughtError, are checked by the #[pg_test]: building one needs a server).
        let report = ErrorReport::new(PgSqlErrorCode::ERRCODE_DIVISION_BY_ZERO, "x", "f");
        let p: Box<dyn Any + Send> = Box::new(report);
        assert_eq!(bug_message(p.as_ref()), None);
    }

    #[test]
    fn the_line_is_one_json_object_after_the_marker() {
        let line = log_line("say \"hi\"\nnext", "src/x.rs:1:2", 7);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let json: serde_json::Value =
            serde_json::from_str(line.strip_prefix("pg_migsafe_bug ").unwrap().trim()).unwrap();
        assert_eq!(json["message"], "say \"hi\"\nnext");
        assert_eq!(json["location"], "src/x.rs:1:2");
        assert_eq!(json["pid"], 7);
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary() {
        let long = "é".repeat(2000);
        let line = log_line(&long, "src/x.rs:1:2", 7);
        let json: serde_json::Value =
            serde_json::from_str(line.strip_prefix("pg_migsafe_bug ").unwrap().trim()).unwrap();
        let m = json["message"].as_str().unwrap();
        assert!(
            m.len() <= MAX_MESSAGE + "…".len() && m.ends_with('…'),
            "{}",
            m.len()
        );
    }
}
