//! pg_migsafe: refuses destructive DDL inside PostgreSQL unless an approval covers it.
//!
//! `engine` is plain Rust (rules, policy, type changes, docs) and is unit-tested
//! without a server. The rest is the thin pgrx shell: settings, the ProcessUtility
//! hook, the classifier that reads parse trees and the catalog, and SQL functions.

use pgrx::prelude::*;

/// The engine is its own crate (crates/engine): the compiler keeps it free of pgrx.
pub use migsafe_engine as engine;

mod audit;
mod autosnap;
mod bugs;
mod guc;
mod hook;
mod hooks;
mod pgutil;
mod phase;
mod recycle;
mod redact;
mod report;
mod snapshot;
mod spi;
mod sql;
mod stmt;
mod track;
mod work;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    if unsafe { !pg_sys::process_shared_preload_libraries_in_progress } {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_migsafe must be loaded via shared_preload_libraries",
            "_PG_init",
        )
        .set_detail("Loaded any other way it could not see every statement of every session.")
        .set_hint(
            "Add pg_migsafe to shared_preload_libraries in postgresql.conf and restart the server.",
        )
        .report(PgLogLevel::ERROR);
    }
    bugs::init();
    guc::init();
    audit::init();
    hooks::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_migsafe'"]
    }
}
