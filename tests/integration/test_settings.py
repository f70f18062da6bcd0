"""Settings and self-protection: modes, block_risky, disabled_rules; migsafe.* can only
be changed in the configuration file; the library refuses to load any other way."""
import re
import time

import pytest

from conftest import REFUSED, WARNED, mode, new_db, run
from pgcluster import Cluster

USERS = "CREATE TABLE users (id int PRIMARY KEY, name text); INSERT INTO users VALUES (1, 'a');"


def test_warn_mode_runs_destructive_ddl_with_a_warning(cluster):
    db = new_db(cluster)
    with mode(cluster, "warn"):
        with cluster.connect(db) as conn:
            assert run(conn, USERS).ok
            r = run(conn, "ALTER TABLE users DROP COLUMN name")
            assert r.ok and r.warned_rules() == ["drop-column"], r
            # Self-protection still holds in warn mode.
            r = run(conn, "DROP EXTENSION pg_migsafe")
            assert r.refused_rule() == "protect-extension", r


def test_off_mode_does_nothing(cluster):
    db = new_db(cluster)
    with mode(cluster, "off"):
        with cluster.connect(db) as conn:
            assert run(conn, USERS).ok
            r = run(conn, "DROP TABLE users")
            assert r.ok and not r.notices, r


def test_block_risky(cluster):
    db = new_db(cluster)
    with cluster.connect(db) as conn:
        assert run(conn, USERS).ok
    cluster.configure(migsafe__block_risky="on")
    try:
        with cluster.connect(db) as conn:
            r = run(conn, "CREATE INDEX ON users (name)")
            assert r.refused_rule() == "create-index", r
            assert "migsafe.block_risky = off" in r.message
    finally:
        cluster.configure(migsafe__block_risky="off")


def test_disabled_rules(cluster):
    db = new_db(cluster)
    with cluster.connect(db) as conn:
        assert run(conn, USERS + "CREATE INDEX users_name_idx ON users (name)").ok
    cluster.configure(migsafe__disabled_rules="'drop-index, truncate'")
    try:
        with cluster.connect(db) as conn:
            r = run(conn, "DROP INDEX users_name_idx")
            assert r.ok and not r.warnings(), r
            r = run(conn, "TRUNCATE users")
            assert r.ok and not r.warnings(), r
            r = run(conn, "DROP TABLE users")
            assert r.refused_rule() == "drop-table", r
    finally:
        cluster.configure(migsafe__disabled_rules="''")


def reload_expecting_log(cluster, value, text):
    """Writes an invalid value into the config file, reloads, waits for the log line."""
    cluster.settings["migsafe.disabled_rules"] = value
    cluster._write_conf()
    with cluster.connect() as conn:
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.time() + 10
    while text not in cluster.log_text() and time.time() < deadline:
        time.sleep(0.05)
    assert text in cluster.log_text()


def test_invalid_disabled_rules_is_rejected_at_reload(cluster):
    cluster.configure(migsafe__disabled_rules="'truncate'")
    try:
        reload_expecting_log(cluster, "'truncate, no-such-rule'", 'unknown rule id "no-such-rule"')
        with cluster.connect() as conn:
            assert conn.execute("SHOW migsafe.disabled_rules").fetchone()[0] == "truncate"
        reload_expecting_log(cluster, "'protect-settings'",
                             'rule "protect-settings" protects pg_migsafe itself and cannot be disabled')
    finally:
        cluster.configure(migsafe__disabled_rules="''")


SETTING_CHANGES = [
    ("SET migsafe.mode = 'off'", REFUSED),
    ("SET LOCAL migsafe.mode = 'off'", REFUSED),
    ("SET \"MIGSAFE.mode\" = 'off'", REFUSED),
    ("RESET migsafe.mode", REFUSED),
    ("SET migsafe.block_risky = off", REFUSED),
    ("SET migsafe.disabled_rules = 'drop-table'", REFUSED),
    ("SELECT set_config('migsafe.mode', 'off', false)", "55P02"),
    ("ALTER ROLE app_user SET migsafe.mode = 'off'", REFUSED),
    ("ALTER DATABASE postgres SET migsafe.mode = 'off'", REFUSED),
    ("ALTER SYSTEM SET migsafe.mode = 'off'", REFUSED),
    ("ALTER SYSTEM RESET migsafe.mode", REFUSED),
    ("ALTER SYSTEM SET shared_preload_libraries = ''", REFUSED),
    ("ALTER SYSTEM RESET shared_preload_libraries", REFUSED),
    ("ALTER SYSTEM RESET ALL", REFUSED),
]


@pytest.mark.parametrize("user", ["postgres", "app_owner"])
@pytest.mark.parametrize("sql,code", SETTING_CHANGES, ids=[s for s, _ in SETTING_CHANGES])
def test_settings_cannot_be_changed_from_sql(cluster, sql, code, user):
    with cluster.connect(user=user, autocommit=False if "LOCAL" in sql else True) as conn:
        r = run(conn, sql)
        if user != "postgres" and code != REFUSED and r.sqlstate == "42501":
            return  # a non-superuser is stopped earlier by privileges
        assert r.sqlstate == code, r
        if code == REFUSED:
            assert r.refused_rule() == "protect-settings", r
        assert conn.execute("SHOW migsafe.mode").fetchone()[0] == "enforce"


def test_every_setting_is_documented_with_its_default(cluster):
    import os
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "configuration.md")).read()
    with cluster.connect() as conn:
        names = [n for (n,) in conn.execute(
            "SELECT name FROM pg_settings WHERE name LIKE 'migsafe.%' ORDER BY name").fetchall()]
    assert "migsafe.lock_retry_budget" in names and "migsafe.cancel_blockers_after" in names
    missing = [n for n in names if f"| `{n}` |" not in doc and f"\n## {n}\n" not in doc]
    assert not missing, f"settings in neither a table nor a heading of docs/configuration.md: {missing}"
    # SHOW's form of the two lock-retry defaults is the one documented.
    with cluster.connect() as conn:
        for n, shown in [("migsafe.lock_retry_budget", "20s"), ("migsafe.cancel_blockers_after", "0")]:
            assert conn.execute(f"SELECT boot_val FROM pg_settings WHERE name = '{n}'").fetchone()[0] \
                in (shown, {"20s": "20000"}.get(shown, shown))
            assert f"| `{n}` | `{shown}` |" in doc


def test_show_and_set_of_other_settings_pass(cluster):
    with cluster.connect() as conn:
        for sql in ["SHOW migsafe.mode", "SET work_mem = '8MB'", "RESET ALL", "SET lock_timeout = '1s'",
                    "SELECT current_setting('migsafe.block_risky')"]:
            r = run(conn, sql)
            assert r.ok and not r.notices, (sql, r)


def test_refusal_reaches_the_server_log(cluster, db):
    with cluster.connect(db) as conn:
        assert run(conn, USERS).ok
        assert run(conn, "ALTER TABLE users RENAME COLUMN name TO full_name").sqlstate == REFUSED
    log = cluster.log_text()
    assert re.search(r"ERROR:  pg_migsafe refused rename-column on column public\.users\.name: .*"
                     r"approve it with a contract phase: SELECT migsafe\.begin_phase\('contract', "
                     r"'<migration name>', reason => '<ticket>', objects => ARRAY\['public\.users\.name'\]\);", log)
    assert "HINT:  Add the new column, write both, backfill" in log
    assert "STATEMENT:  ALTER TABLE users RENAME COLUMN name TO full_name" in log


def test_refusal_without_the_extension_names_the_configuration(cluster):
    """The hook protects databases without CREATE EXTENSION too; there is no phase to
    open there, so the message names the configuration file."""
    db = new_db(cluster, owner="postgres", extension=False)
    with cluster.connect(db) as conn:
        assert run(conn, USERS).ok
        r = run(conn, "DROP TABLE users")
        assert r.refused_rule() == "drop-table", r
        assert "to run it anyway a DBA sets migsafe.mode = 'warn'" in r.message
    with cluster.connect() as conn:
        r = run(conn, f'DROP DATABASE "{db}"')
        assert r.refused_rule() == "drop-database", r


def test_library_refuses_to_load_without_shared_preload_libraries():
    c = Cluster("nopreload", preload="")
    try:
        with c.connect() as conn:
            r = run(conn, "CREATE EXTENSION pg_migsafe")
            assert r.sqlstate == "55000", r
            assert r.message == "pg_migsafe must be loaded via shared_preload_libraries"
            assert "shared_preload_libraries" in r.error.diag.message_hint
            r = run(conn, "LOAD 'pg_migsafe'")
            assert r.sqlstate == "55000", r
            assert conn.execute("SELECT 1").fetchone()[0] == 1
    finally:
        c.destroy()


@pytest.mark.parametrize("sql,rule", [
    ("DROP EXTENSION pg_migsafe", "protect-extension"),
    ("DROP EXTENSION pg_migsafe CASCADE", "protect-extension"),
    ("ALTER EXTENSION pg_migsafe SET SCHEMA public", "protect-extension"),
    ("ALTER EXTENSION pg_migsafe DROP FUNCTION migsafe.rules()", "protect-extension"),
    ("DROP SCHEMA migsafe CASCADE", "protect-schema"),
    ("DROP FUNCTION migsafe.rules()", "protect-schema"),
    ("ALTER FUNCTION migsafe.rules() RENAME TO r", "protect-schema"),
    ("CREATE TABLE migsafe.intruder (id int)", "protect-schema"),
    ("CREATE FUNCTION migsafe.check(int) RETURNS int LANGUAGE sql AS 'SELECT 1'", "protect-schema"),
    ("COMMENT ON FUNCTION migsafe.rules() IS 'x'", "protect-schema"),
    ("ALTER TABLE public.t SET SCHEMA migsafe", "protect-schema"),
])
@pytest.mark.parametrize("user", ["postgres", "app_owner"])
def test_self_protection(cluster, sql, rule, user):
    db = new_db(cluster)
    with cluster.connect(db, user) as conn:
        assert run(conn, "CREATE TABLE public.t (id int)").ok
        r = run(conn, sql)
        assert r.refused_rule() == rule, r
    with mode(cluster, "warn"):
        with cluster.connect(db, user) as conn:
            assert run(conn, sql).refused_rule() == rule


def test_search_path_cannot_smuggle_objects_into_migsafe(cluster, db):
    with cluster.connect(db) as conn:
        assert run(conn, "SET search_path = migsafe, public").ok
        r = run(conn, "CREATE TABLE sneaky (id int)")
        assert r.refused_rule() == "protect-schema", r
        r = run(conn, "CREATE VIEW sneaky_v AS SELECT 1")
        assert r.refused_rule() == "protect-schema", r
