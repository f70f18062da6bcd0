"""migsafe.check(): classification without execution, and its bad input."""
import psycopg
import pytest

from conftest import run

COLS = ["statement_no", "statement", "rule_id", "severity", "object", "lock_mode",
        "rewrites", "data_loss", "message", "hint", "decision"]


@pytest.fixture
def conn(cluster, db):
    with cluster.connect(db, "app_owner") as c:
        c.row_factory = psycopg.rows.dict_row
        assert run(c, "CREATE TABLE users (id int PRIMARY KEY, email varchar(200), name text);"
                      "INSERT INTO users VALUES (1, 'a', 'b')").ok
        yield c


def check(conn, sql):
    return conn.execute("SELECT * FROM migsafe.check(%s)", (sql,)).fetchall()


def test_every_statement_is_accounted_for(conn):
    rows = check(conn, "CREATE TABLE t (id int);\nALTER TABLE users DROP COLUMN name;\n"
                       "CREATE INDEX ON users (email);\nSELECT 1")
    assert [r["statement_no"] for r in rows] == [1, 2, 3, 4]
    assert list(rows[0]) == COLS
    assert [(r["rule_id"], r["severity"]) for r in rows] == [
        ("safe", "safe"), ("drop-column", "destructive"), ("create-index", "risky"), ("safe", "safe")]
    assert rows[1]["statement"] == "ALTER TABLE users DROP COLUMN name"
    assert rows[1]["object"] == "column public.users.name"
    assert rows[1]["lock_mode"] == "ACCESS EXCLUSIVE" and rows[1]["data_loss"] is True
    assert rows[1]["decision"] == "refused" and rows[2]["decision"] == "warned"
    assert rows[2]["rewrites"] is True
    assert rows[1]["hint"].startswith("Deploy code")


def test_nothing_is_executed(conn):
    check(conn, "DROP TABLE users; CREATE TABLE should_not_exist (id int)")
    assert conn.execute("SELECT to_regclass('should_not_exist') AS r").fetchone()["r"] is None
    assert conn.execute("SELECT count(*) AS n FROM users").fetchone()["n"] == 1


def test_drizzle_file_with_breakpoints(conn):
    sql = ('CREATE TABLE "posts" ("id" serial PRIMARY KEY NOT NULL, "title" text);\n'
           '--> statement-breakpoint\n'
           'ALTER TABLE "posts" ADD COLUMN "body" text;--> statement-breakpoint\n'
           'DROP TABLE "users" CASCADE;')
    rows = check(conn, sql)
    assert [r["rule_id"] for r in rows] == ["safe", "safe", "drop-table"]


def test_context_from_the_catalog(conn):
    rows = check(conn, "ALTER TABLE users ALTER COLUMN email TYPE varchar(300);"
                       "ALTER TABLE users ALTER COLUMN email TYPE varchar(10)")
    assert [r["rule_id"] for r in rows] == ["safe", "alter-column-type-lossy"]
    assert "Type character varying(200) -> character varying(10)" in rows[1]["message"]


def test_null_and_empty_input(conn):
    assert conn.execute("SELECT count(*) AS n FROM migsafe.check(NULL)").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM migsafe.check('')").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM migsafe.check('  -- only a comment')").fetchone()["n"] == 0


def test_syntax_error_is_a_clear_error(conn):
    with pytest.raises(psycopg.errors.SyntaxError) as e:
        check(conn, "SELECT 1;\nALTER TABLE users DROPP COLUMN x;")
    assert 'syntax error at or near "DROPP"' in e.value.diag.message_primary
    assert "line 2, column 19" in e.value.diag.message_detail
    assert conn.execute("SELECT 1 AS one").fetchone()["one"] == 1  # the backend lives on


def test_ten_megabytes_of_sql(conn):
    stmt = "ALTER TABLE users ADD COLUMN IF NOT EXISTS c{} integer DEFAULT 0;\n"
    parts, size, i = [], 0, 0
    while size < 10 * 1024 * 1024:
        s = stmt.format(i)
        parts.append(s)
        size += len(s)
        i += 1
    n = conn.execute("SELECT count(*) AS n FROM migsafe.check(%s)", ("".join(parts),)).fetchone()["n"]
    assert n == i


def test_unicode_and_quoted_names(conn):
    assert run(conn, 'CREATE TABLE "Ünïcødé täble" ("Spalte mit Leerzeichen" int)').ok
    rows = check(conn, 'ALTER TABLE "Ünïcødé täble" DROP COLUMN "Spalte mit Leerzeichen"')
    assert rows[0]["object"] == 'column public."Ünïcødé täble"."Spalte mit Leerzeichen"'


def test_rules_function(conn):
    rows = conn.execute("SELECT * FROM migsafe.rules()").fetchall()
    ids = {r["id"] for r in rows}
    assert {"drop-table", "create-index", "protect-settings"} <= ids
    assert all(r["bad_example"] and r["good_example"] and r["safe_alternative"] for r in rows)
