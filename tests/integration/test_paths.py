"""Every path a statement can take reaches the hook: top level, several statements in
one query string, DO blocks (static and EXECUTE), SQL and plpgsql functions and
procedures, SECURITY DEFINER functions and event triggers — as a superuser and as a
non-superuser owner. Other extensions' scripts are not blocked; the hook chains with
pg_stat_statements either way round; statement errors keep their fidelity."""
import os
import shutil
import subprocess

import pytest

from conftest import REFUSED, WARNED, new_db, run
from pgcluster import Cluster, has_extension

USERS = ("CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, legacy text);"
         "INSERT INTO users VALUES (1, 'a@example.com', 'x');")

PATHS = {
    "top-level": "DROP TABLE users",
    "multi-statement": "CREATE TABLE innocent (id int); SELECT 1; DROP TABLE users; CREATE TABLE after (id int)",
    "do-static": "DO $$ BEGIN DROP TABLE users; END $$",
    "do-execute": "DO $$ BEGIN EXECUTE 'DROP ' || 'TABLE users'; END $$",
    "sql-function": ("CREATE FUNCTION f_sql() RETURNS void LANGUAGE sql AS $$ DROP TABLE users $$;"
                     "SELECT f_sql()"),
    "plpgsql-function": ("CREATE FUNCTION f_pl() RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
                         "ALTER TABLE users DROP COLUMN legacy; END $$; SELECT f_pl()"),
    "procedure": ("CREATE PROCEDURE p_drop() LANGUAGE plpgsql AS $$ BEGIN TRUNCATE users; END $$;"
                  "CALL p_drop()"),
    "sql-procedure": ("CREATE PROCEDURE p_sql() LANGUAGE sql AS $$ ALTER TABLE users RENAME TO people $$;"
                      "CALL p_sql()"),
}
EXPECTED_RULE = {
    "plpgsql-function": "drop-column", "procedure": "truncate", "sql-procedure": "rename-table",
}


@pytest.mark.parametrize("user", ["postgres", "app_owner"])
@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_is_refused(cluster, path, user):
    db = new_db(cluster)
    with cluster.connect(db, user) as conn:
        assert run(conn, USERS).ok
        r = run(conn, PATHS[path])
        assert r.sqlstate == REFUSED, r
        assert r.refused_rule() == EXPECTED_RULE.get(path, "drop-table"), r
        # Nothing of it happened: the table and its column are still there, and
        # statements before the refused one in the same query string rolled back.
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass "
                            "AND attname = 'legacy' AND NOT attisdropped").fetchone()[0] == 1
        assert conn.execute("SELECT to_regclass('innocent')").fetchone()[0] is None


def test_multi_statement_names_the_right_statement(cluster, db):
    with cluster.connect(db) as conn:
        assert run(conn, USERS).ok
        r = run(conn, PATHS["multi-statement"])
        assert "Statement: DROP TABLE users" in r.error.diag.message_detail


def test_do_block_error_keeps_its_context(cluster, db):
    with cluster.connect(db) as conn:
        assert run(conn, USERS).ok
        r = run(conn, PATHS["do-execute"])
        assert "PL/pgSQL function inline_code_block" in (r.error.diag.context or "")


def test_security_definer_function_is_refused_for_its_caller(cluster, db):
    with cluster.connect(db) as conn:
        assert run(conn, USERS).ok
        assert run(conn, "CREATE FUNCTION purge() RETURNS void LANGUAGE plpgsql SECURITY DEFINER "
                         "SET search_path = public AS $$ BEGIN DROP TABLE users; END $$;"
                         "GRANT EXECUTE ON FUNCTION purge() TO app_user").ok
    with cluster.connect(db, "app_user") as conn:
        r = run(conn, "SELECT purge()")
        assert r.refused_rule() == "drop-table", r


def test_event_trigger_function_is_refused(cluster, db):
    with cluster.connect(db) as conn:
        assert run(conn, USERS).ok
        assert run(conn, """
            CREATE FUNCTION on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                          WHERE object_identity = 'public.trigger_me') THEN
                EXECUTE 'DROP TABLE users';
              END IF;
            END $$;
            CREATE EVENT TRIGGER migsafe_test_et ON ddl_command_end EXECUTE FUNCTION on_ddl();""").ok
        r = run(conn, "CREATE TABLE trigger_me (id int)")
        assert r.refused_rule() == "drop-table", r
        assert conn.execute("SELECT to_regclass('trigger_me')").fetchone()[0] is None
        assert run(conn, "CREATE TABLE harmless (id int)").ok


def test_statement_errors_keep_sqlstate_and_position(cluster, db):
    """The hook chains to standard_ProcessUtility without wrapping its errors."""
    with cluster.connect(db) as conn:
        r = run(conn, "CREATE TABLE bad_type (a no_such_type)")
        assert r.sqlstate == "42704", r
        assert r.error.diag.statement_position is not None
        assert run(conn, USERS).ok
        r = run(conn, "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (no_such_column)")
        assert r.sqlstate == "42703", r


@pytest.fixture(scope="module")
def testext():
    pgbin = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
    sharedir = subprocess.run([f"{pgbin}/pg_config", "--sharedir"],
                              capture_output=True, text=True, check=True).stdout.strip()
    src = os.path.join(os.path.dirname(__file__), "..", "fixtures", "migsafe_testext")
    for f in os.listdir(src):
        shutil.copy(os.path.join(src, f), os.path.join(sharedir, "extension", f))
    return "migsafe_testext"


def test_other_extensions_scripts_are_not_blocked(cluster, db, testext):
    with cluster.connect(db) as conn:
        assert run(conn, "CREATE EXTENSION migsafe_testext VERSION '1.0'").ok
        # A later transaction: the update script drops, renames and truncates objects
        # created before it, and must run unchecked.
        r = run(conn, "ALTER EXTENSION migsafe_testext UPDATE TO '1.1'")
        assert r.ok and not r.warnings(), r
        assert conn.execute("SELECT to_regclass('testext.retired')").fetchone()[0] is None
        # The extension statements themselves are classified.
        r = run(conn, "DROP EXTENSION migsafe_testext")
        assert r.refused_rule() == "drop-extension", r
        if has_extension("pg_trgm"):     # contrib: not in every server tree
            assert run(conn, "CREATE EXTENSION IF NOT EXISTS pg_trgm").ok


def test_drizzle_bookkeeping_passes_silently(cluster, db):
    with cluster.connect(db, "app_owner") as conn:
        for _ in range(2):  # drizzle-kit sends these on every run
            r = run(conn, 'CREATE SCHEMA IF NOT EXISTS "drizzle"')
            assert r.ok and not r.warnings(), r
            r = run(conn, 'CREATE TABLE IF NOT EXISTS "drizzle"."__drizzle_migrations" '
                          '(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)')
            assert r.ok and not r.warnings(), r


@pytest.mark.skipif(not has_extension("pg_stat_statements"), reason="contrib's pg_stat_statements is not in this server tree")
@pytest.mark.parametrize("order", ["pg_stat_statements,pg_migsafe", "pg_migsafe,pg_stat_statements"])
def test_chains_with_pg_stat_statements(order):
    c = Cluster("pgss", preload=order)
    try:
        with c.connect() as conn:
            assert run(conn, "CREATE EXTENSION pg_migsafe; CREATE EXTENSION pg_stat_statements").ok
            assert run(conn, USERS).ok
            assert run(conn, "CREATE TABLE tracked_by_pgss (id int)").ok
            r = run(conn, "DROP TABLE users")
            assert r.sqlstate == REFUSED and r.refused_rule() == "drop-table", r
            r = run(conn, "CREATE INDEX ON users (email)")
            assert r.ok and r.warnings(WARNED), r
            calls = conn.execute("SELECT sum(calls) FROM pg_stat_statements "
                                 "WHERE query LIKE 'CREATE TABLE tracked_by_pgss%'").fetchone()[0]
            assert calls == 1
            calls = conn.execute("SELECT sum(calls) FROM pg_stat_statements "
                                 "WHERE query LIKE 'CREATE INDEX ON users%'").fetchone()[0]
            assert calls == 1
    finally:
        c.destroy()
