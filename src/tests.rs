//! In-server unit tests (`#[pg_test]`): each runs as superuser inside one transaction
//! of the pgrx test cluster, with pg_migsafe preloaded in enforce mode.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn rules_of(sql: &str) -> Vec<String> {
        Spi::connect(|c| {
            c.select("SELECT rule_id FROM migsafe.check($1)", None, &[sql.into()])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap())
                .collect()
        })
    }

    #[pg_test]
    fn check_reports_safe_and_destructive() {
        Spi::run("CREATE TABLE t_check (id int, note text)").unwrap();
        assert_eq!(
            rules_of("ALTER TABLE t_check ADD COLUMN x int"),
            vec!["safe"]
        );
        // t_check was created in this (test) transaction, so dropping it is allowed...
        assert_eq!(rules_of("DROP TABLE t_check"), vec!["safe"]);
        // ...but a table check() cannot find is assumed to exist.
        assert_eq!(rules_of("DROP TABLE no_such_table"), vec!["drop-table"]);
    }

    #[pg_test]
    fn check_follows_creations_within_its_input() {
        assert_eq!(
            rules_of(
                "CREATE TABLE fresh (id int); ALTER TABLE fresh DROP COLUMN id; DROP TABLE fresh;"
            ),
            vec!["safe", "safe", "safe"]
        );
    }

    #[pg_test]
    fn check_null_gives_no_rows() {
        let n = Spi::get_one::<i64>("SELECT count(*) FROM migsafe.check(NULL)").unwrap();
        assert_eq!(n, Some(0));
    }

    #[pg_test(error = "syntax error at or near \"TABLEX\"")]
    fn check_reports_syntax_errors() {
        Spi::run("SELECT * FROM migsafe.check('SELECT 1;\nDROP TABLEX foo')").unwrap();
    }

    #[pg_test]
    fn rules_table_matches_the_catalog() {
        let n = Spi::get_one::<i64>("SELECT count(*) FROM migsafe.rules()")
            .unwrap()
            .unwrap();
        assert_eq!(n as usize, crate::engine::rules::RULES.len());
    }

    #[pg_test]
    fn objects_created_in_the_transaction_are_exempt() {
        // Each pg_test is one transaction: all of this is "created in this transaction".
        Spi::run("CREATE TABLE t_new (id int, email text)").unwrap();
        Spi::run("ALTER TABLE t_new DROP COLUMN email").unwrap();
        Spi::run("ALTER TABLE t_new RENAME TO t_newer").unwrap();
        Spi::run("TRUNCATE t_newer").unwrap();
        Spi::run("DROP TABLE t_newer").unwrap();
    }

    #[pg_test]
    fn temp_objects_are_exempt() {
        Spi::run("CREATE TEMP TABLE t_tmp (id int)").unwrap();
        Spi::run("DROP TABLE t_tmp").unwrap();
    }

    #[pg_test(
        error = "pg_migsafe refused protect-settings on setting migsafe.mode: migsafe.* settings can only be changed in the server configuration file, and shared_preload_libraries must keep pg_migsafe; only a DBA can allow it, by setting migsafe.mode = 'off' in postgresql.conf and reloading"
    )]
    fn set_migsafe_mode_is_refused() {
        Spi::run("SET migsafe.mode = 'off'").unwrap();
    }

    #[pg_test]
    fn verify_log_of_this_database() {
        // The log of the test database: whatever the writer stored so far must chain.
        let (ok, reason) =
            Spi::get_two::<bool, String>("SELECT ok, reason FROM migsafe.verify_log()").unwrap();
        assert_eq!(ok, Some(true), "{reason:?}");
        assert!(reason.unwrap().starts_with("OK: "));
    }

    #[pg_test(error = "pg_migsafe: a migration name must not be empty")]
    fn empty_migration_name_is_an_error() {
        Spi::run("SELECT migsafe.set_migration_name('   ')").unwrap();
    }

    #[pg_test]
    fn a_backend_is_not_the_audit_writer_and_cannot_append() {
        assert_eq!(
            Spi::get_one::<bool>("SELECT migsafe._is_audit_writer()").unwrap(),
            Some(false)
        );
        let queued = Spi::get_one::<i64>("SELECT queued FROM migsafe._queue_stats()").unwrap();
        assert!(queued.unwrap() >= 0);
    }

    #[pg_test(
        error = "pg_migsafe: UPDATE on migsafe.audit_log refused: the audit log is append-only"
    )]
    fn audit_log_refuses_update() {
        Spi::run("UPDATE migsafe.audit_log SET hash = hash").unwrap();
    }

    /// The rollback plan's DDL is quoted in Rust: it must be exactly what the server's
    /// quote_ident() and quote_literal() produce, and a literal must read back as its
    /// value whatever standard_conforming_strings says.
    #[pg_test]
    fn engine_quoting_matches_the_server() {
        use crate::engine::schema::quote::{quote_ident, quote_literal};
        let samples = [
            "plain",
            "Upper",
            "with space",
            "quo\"te",
            "it's",
            "back\\slash",
            "select",
            "user",
            "ünïcode",
            "$dollar",
            "a'b\\c",
            "",
            "1abc",
            "_x",
            "x1",
            "end",
            "\\'; DROP TABLE t; --",
        ];
        for s in samples {
            let ident: String =
                Spi::get_one_with_args("SELECT pg_catalog.quote_ident($1)", &[s.into()])
                    .unwrap()
                    .unwrap();
            assert_eq!(quote_ident(s), ident, "quote_ident({s:?})");
            let lit: String =
                Spi::get_one_with_args("SELECT pg_catalog.quote_literal($1)", &[s.into()])
                    .unwrap()
                    .unwrap();
            assert_eq!(quote_literal(s), lit, "quote_literal({s:?})");
            for scs in ["on", "off"] {
                Spi::run(&format!("SET LOCAL standard_conforming_strings = {scs}")).unwrap();
                let back: String = Spi::get_one(&format!("SELECT {}::text", quote_literal(s)))
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    back,
                    s,
                    "{} with standard_conforming_strings = {scs}",
                    quote_literal(s)
                );
            }
        }
    }

    /// Every function of the extension pins its search_path, except those written in
    /// Rust (which pin it around every query, src/spi.rs), migsafe.dry_run() (the
    /// user's statements, resolved as a real run would) and migsafe._key() (inlined
    /// into the catalog reader; every name in it is qualified).
    /// Where a partition's range ends (standing approvals), for each kind of bound.
    #[pg_test]
    fn a_partition_ends_where_its_bound_says() {
        Spi::run(
            "CREATE TABLE p_tz (at timestamptz) PARTITION BY RANGE (at);
             CREATE TABLE p_tz_1 PARTITION OF p_tz FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-02-01 00:00+00');
             CREATE TABLE p_tz_max PARTITION OF p_tz FOR VALUES FROM ('2020-02-01 00:00+00') TO (MAXVALUE);
             CREATE TABLE p_tz_def PARTITION OF p_tz DEFAULT;
             CREATE TABLE p_ts (at timestamp) PARTITION BY RANGE (at);
             CREATE TABLE p_ts_1 PARTITION OF p_ts FOR VALUES FROM ('2020-01-01') TO ('2020-01-02 12:00');
             CREATE TABLE p_d (d date) PARTITION BY RANGE (d);
             CREATE TABLE p_d_1 PARTITION OF p_d FOR VALUES FROM ('2019-12-31') TO ('2020-01-01');
             CREATE TABLE p_i (id int) PARTITION BY RANGE (id);
             CREATE TABLE p_i_1 PARTITION OF p_i FOR VALUES FROM (1) TO (10);
             CREATE TABLE p_l (k text) PARTITION BY LIST (k);
             CREATE TABLE p_l_1 PARTITION OF p_l FOR VALUES IN ('a');
             CREATE TABLE p_two (a date, b int) PARTITION BY RANGE (a, b);
             CREATE TABLE p_two_1 PARTITION OF p_two FOR VALUES FROM ('2000-01-01', 0) TO ('2000-02-01', 0);",
        )
        .unwrap();
        Spi::run("CREATE SCHEMA \"Odd Schema\"; CREATE TABLE \"Odd Schema\".\"Ev\" (at date) PARTITION BY RANGE (at);
                  CREATE TABLE \"Odd Schema\".\"Ev 1\" PARTITION OF \"Odd Schema\".\"Ev\" FOR VALUES FROM ('2020-01-01') TO ('2020-01-02')")
            .unwrap();
        let fact = |name: &str| {
            let oid = Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{name}'::regclass::oid"))
                .unwrap()
                .unwrap();
            unsafe { crate::stmt::partition::fact(oid) }
        };
        // 2020-02-01 00:00 UTC in microseconds since 1970.
        const FEB_2020: i64 = 1_580_515_200_000_000;
        let f = fact("p_tz_1").unwrap();
        assert_eq!(
            (f.partition.as_str(), f.parent.as_str(), f.ends),
            ("public.p_tz_1", "public.p_tz", Some(FEB_2020))
        );
        assert_eq!(fact("p_tz_max").unwrap().ends, None);
        assert_eq!(fact("p_tz_def").unwrap().ends, None);
        // timestamp and date bounds are read as UTC, whatever the session's TimeZone.
        Spi::run("SET LOCAL TimeZone = 'Pacific/Kiritimati'").unwrap();
        assert_eq!(fact("p_ts_1").unwrap().ends, Some(1_577_966_400_000_000)); // 2020-01-02 12:00 UTC
        assert_eq!(fact("p_d_1").unwrap().ends, Some(1_577_836_800_000_000)); // 2020-01-01 UTC
        assert_eq!(fact("p_i_1").unwrap().ends, None);
        assert_eq!(fact("p_l_1").unwrap().ends, None);
        assert_eq!(fact("p_two_1").unwrap().ends, None);
        let odd = fact("\"Odd Schema\".\"Ev 1\"").unwrap();
        assert_eq!(odd.partition, "\"Odd Schema\".\"Ev 1\"");
        assert_eq!(odd.parent, "\"Odd Schema\".\"Ev\"");
        // Not a partition.
        assert!(fact("p_tz").is_none());
    }

    #[pg_test]
    fn every_sql_function_pins_its_search_path() {
        let unpinned: Vec<String> = Spi::connect(|c| {
            c.select(
                "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang \
                  WHERE p.pronamespace = 'migsafe'::regnamespace AND l.lanname <> 'c' \
                    AND p.proname NOT IN ('dry_run', '_key') \
                    AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false) \
                  ORDER BY 1",
                None,
                &[],
            )
            .unwrap()
            .map(|r| r.get::<String>(1).unwrap().unwrap())
            .collect()
        });
        assert!(unpinned.is_empty(), "{unpinned:?}");
    }

    /// A lock retry's try (`spi::kept`): a lock taken inside passes to the transaction;
    /// an error inside is handed back, its subtransaction rolled back (what it took is
    /// gone), and the transaction goes on.
    #[pg_test]
    fn a_kept_subtransaction_keeps_its_lock_and_a_failed_one_leaves_nothing() {
        Spi::run("CREATE TABLE t_kept (id int); CREATE TABLE t_gone (id int)").unwrap();
        let oid = |t: &str| {
            Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[t.into()])
                .unwrap()
                .unwrap()
        };
        // CREATE TABLE holds ACCESS EXCLUSIVE; the tries take SHARE, a mode of its own
        // row in pg_locks.
        let held = |t: &str| {
            Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT FROM pg_locks WHERE relation = $1::regclass \
                   AND pid = pg_backend_pid() AND mode = 'ShareLock' AND granted)",
                &[t.into()],
            )
            .unwrap()
            .unwrap()
        };
        let (kept, gone) = (oid("t_kept"), oid("t_gone"));
        let share = pg_sys::ShareLock as pg_sys::LOCKMODE;
        assert!(!held("t_kept") && !held("t_gone"));
        let r = crate::spi::kept(|| unsafe { pg_sys::LockRelationOid(kept, share) });
        assert!(r.is_ok());
        assert!(held("t_kept"), "the lock passes to the transaction");
        let r = crate::spi::kept(|| {
            unsafe { pg_sys::LockRelationOid(gone, share) };
            Spi::run("SELECT 1/0").unwrap();
        });
        assert!(r.is_err());
        assert!(!held("t_gone"), "a failed try leaves no lock");
        assert!(held("t_kept"));
        assert_eq!(Spi::get_one::<i32>("SELECT 41 + 1").unwrap(), Some(42));
    }

    /// A real panic leaves one `pg_migsafe_bug` line on the backend's stderr (the server
    /// log) and is counted; a PostgreSQL error that travels through Rust frames is not a
    /// bug and leaves nothing.
    #[pg_test]
    fn a_panic_is_logged_as_a_bug_and_a_postgres_error_is_not() {
        use std::os::fd::AsRawFd;
        unsafe extern "C" {
            fn dup(fd: i32) -> i32;
            fn dup2(old: i32, new: i32) -> i32;
        }
        let path = std::env::temp_dir().join(format!("migsafe-bug-{}.log", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let before = crate::bugs::bugs_seen();
        let saved = unsafe { dup(2) };
        assert!(saved >= 0 && unsafe { dup2(file.as_raw_fd(), 2) } == 2);

        let pg_error = crate::spi::rolled_back(|| Spi::run("SELECT 1/0"));
        let after_pg_error = crate::bugs::bugs_seen();
        let panicked = std::panic::catch_unwind(|| panic!("a test panic, \"quoted\""));

        unsafe { dup2(saved, 2) };
        let logged = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(pg_error.is_err() && panicked.is_err());
        assert_eq!(
            after_pg_error, before,
            "a PostgreSQL error counted as a bug: {logged}"
        );
        assert_eq!(crate::bugs::bugs_seen(), before + 1);
        let lines: Vec<&str> = logged
            .lines()
            .filter(|l| l.starts_with("pg_migsafe_bug "))
            .collect();
        assert_eq!(lines.len(), 1, "{logged}");
        let json: serde_json::Value =
            serde_json::from_str(&lines[0]["pg_migsafe_bug ".len()..]).unwrap();
        assert_eq!(json["message"], "a test panic, \"quoted\"");
        assert_eq!(json["pid"], std::process::id());
        assert!(
            json["location"]
                .as_str()
                .unwrap()
                .starts_with("src/tests.rs:"),
            "{json}"
        );
    }
}
