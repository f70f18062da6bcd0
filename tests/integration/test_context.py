"""Context decides: objects created in the current transaction and temporary objects
are exempt, binary-coercible type changes are safe, CASCADE is judged by what it would
drop, names resolve like the server resolves them."""
import pytest

from conftest import REFUSED, run

USERS = ("CREATE TABLE users (id bigint PRIMARY KEY, email varchar(200) NOT NULL, "
         "name varchar(100), score numeric(10,2), age int, note text);"
         "INSERT INTO users VALUES (1, 'a@example.com', 'Ann', 1.5, 30, 'n');")


@pytest.fixture
def conn(cluster, db):
    with cluster.connect(db, "app_owner") as c:
        assert run(c, USERS).ok
        yield c


def test_create_then_drop_in_one_transaction(conn):
    conn.autocommit = False
    for sql in ["CREATE TABLE staging (id int, tmp text)",
                "ALTER TABLE staging DROP COLUMN tmp",
                "ALTER TABLE staging RENAME TO staging2",
                "TRUNCATE staging2",
                "ALTER TABLE users ADD COLUMN scratch int",
                "ALTER TABLE users RENAME COLUMN scratch TO scratch2",
                "ALTER TABLE users DROP COLUMN scratch2",
                "CREATE INDEX staging2_id ON staging2 (id)",
                "DROP INDEX staging2_id",
                "DROP TABLE staging2"]:
        r = run(conn, sql)
        assert r.ok and not r.warnings(), (sql, r)
    conn.commit()


def test_exemption_ends_with_the_transaction(conn):
    assert run(conn, "CREATE TABLE short_lived (id int)").ok
    r = run(conn, "DROP TABLE short_lived")
    assert r.refused_rule() == "drop-table", r


def test_savepoints(conn):
    conn.autocommit = False
    assert run(conn, "CREATE TABLE a1 (id int)").ok
    assert run(conn, "SAVEPOINT s1").ok
    assert run(conn, "CREATE TABLE a2 (id int)").ok
    assert run(conn, "RELEASE SAVEPOINT s1").ok
    assert run(conn, "DROP TABLE a2").ok
    assert run(conn, "SAVEPOINT s2").ok
    assert run(conn, "CREATE TABLE a3 (id int)").ok
    assert run(conn, "ROLLBACK TO SAVEPOINT s2").ok
    assert run(conn, "DROP TABLE a1").ok
    r = run(conn, "DROP TABLE users")
    assert r.refused_rule() == "drop-table"


def test_temp_objects_are_exempt(conn):
    assert run(conn, "CREATE TEMP TABLE scratchpad (id int, v text)").ok
    for sql in ["ALTER TABLE scratchpad DROP COLUMN v", "TRUNCATE scratchpad",
                "CREATE INDEX ON scratchpad (id)", "DROP TABLE scratchpad"]:
        r = run(conn, sql)
        assert r.ok and not r.warnings(), (sql, r)


@pytest.mark.parametrize("sql", [
    "ALTER TABLE users ALTER COLUMN email TYPE varchar(320)",
    "ALTER TABLE users ALTER COLUMN name TYPE text",
    "ALTER TABLE users ALTER COLUMN score TYPE numeric(14,2)",
    "ALTER TABLE users ALTER COLUMN note TYPE varchar",
])
def test_binary_coercible_type_changes_are_safe(conn, sql):
    r = run(conn, sql)
    assert r.ok and not r.warnings(), r


@pytest.mark.parametrize("sql,rule", [
    ("ALTER TABLE users ALTER COLUMN email TYPE varchar(20)", "alter-column-type-lossy"),
    ("ALTER TABLE users ALTER COLUMN score TYPE numeric(10,1)", "alter-column-type-lossy"),
    ("ALTER TABLE users ALTER COLUMN score TYPE integer", "alter-column-type-lossy"),
    ("ALTER TABLE users ALTER COLUMN note TYPE varchar(5) USING left(note, 5)", "alter-column-type-lossy"),
])
def test_lossy_type_changes_are_refused(conn, sql, rule):
    r = run(conn, sql)
    assert r.refused_rule() == rule, r


def test_rewriting_type_change_warns(conn):
    r = run(conn, "ALTER TABLE users ALTER COLUMN age TYPE bigint")
    assert r.ok and r.warned_rules() == ["alter-column-type-rewrite"], r


def test_cascade_lists_every_dependent(conn):
    assert run(conn, "CREATE VIEW user_emails AS SELECT email FROM users;"
                     "CREATE VIEW user_emails2 AS SELECT * FROM user_emails;"
                     "CREATE TABLE orders (id int, user_id bigint REFERENCES users (id))").ok
    r = run(conn, "DROP TABLE users CASCADE")
    assert r.sqlstate == REFUSED
    detail = r.error.diag.message_detail
    assert "Rule drop-cascade" in detail
    for dep in ["view public.user_emails", "view public.user_emails2",
                "table constraint orders_user_id_fkey on public.orders"]:
        assert dep in detail, detail


def test_cascade_of_new_objects_is_allowed(conn):
    conn.autocommit = False
    assert run(conn, "CREATE SCHEMA tmp_import; CREATE TABLE tmp_import.rows (id int);"
                     "CREATE VIEW tmp_import.v AS SELECT * FROM tmp_import.rows").ok
    r = run(conn, "DROP SCHEMA tmp_import CASCADE")
    assert r.ok and not r.warnings(), r
    conn.commit()


def test_cascade_through_new_objects_only_is_allowed(conn):
    """DROP TYPE … CASCADE takes a column with it, but the column is new as well."""
    assert run(conn, "CREATE FUNCTION email_of(bigint) RETURNS text LANGUAGE sql AS "
                     "'SELECT email FROM users WHERE id = $1'").ok
    conn.autocommit = False
    assert run(conn, "CREATE TYPE new_kind AS ENUM ('a', 'b')").ok
    assert run(conn, "ALTER TABLE users ADD COLUMN kind new_kind").ok
    r = run(conn, "DROP TYPE new_kind CASCADE")
    # The column is new too, so nothing pre-existing is lost.
    assert r.ok, r
    conn.rollback()


def test_names_resolve_through_search_path_and_quotes(conn):
    assert run(conn, 'CREATE SCHEMA app; CREATE TABLE app.users (id int); '
                     'CREATE TABLE "Mixed Case" (id int)').ok
    assert run(conn, "SET search_path = app, public").ok
    r = run(conn, "DROP TABLE users")
    assert "on table app.users:" in r.message, r
    r = run(conn, 'DROP TABLE public."Mixed Case"')
    assert 'on table public."Mixed Case":' in r.message, r
    r = run(conn, "DROP TABLE IF EXISTS no_such_table")
    assert r.ok and not r.warnings(), r


def test_add_not_null_column_warns_only_with_rows(conn):
    assert run(conn, "CREATE TABLE empty_t (id int)").ok
    r = run(conn, "ALTER TABLE empty_t ADD COLUMN must text NOT NULL")
    assert r.ok and not r.warnings(), r
    r = run(conn, "ALTER TABLE users ADD COLUMN must text NOT NULL")
    assert r.sqlstate == "23502" and r.warned_rules() == ["add-column-not-null"], r


@pytest.mark.parametrize("sql", [
    "ALTER TABLE users ADD COLUMN nickname text",
    "ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true",
    "ALTER TABLE users ADD COLUMN created_at timestamptz DEFAULT now()",
    "CREATE INDEX CONCURRENTLY users_name_idx ON users (name)",
    "ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0) NOT VALID",
    "ALTER TABLE users VALIDATE CONSTRAINT users_age_check",
    "CREATE TABLE orders (id int PRIMARY KEY, user_id bigint REFERENCES users (id))",
    "CREATE OR REPLACE VIEW v_users AS SELECT id FROM users",
    "COMMENT ON TABLE users IS 'people'",
    "GRANT SELECT ON users TO app_user",
])
def test_false_positives_stay_quiet(conn, sql):
    if "VALIDATE" in sql:
        assert run(conn, "ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0) NOT VALID").ok
    r = run(conn, sql)
    assert r.ok and not r.warnings(), r


def test_cascade_does_not_count_the_tables_own_parts(conn):
    """A serial column's default reaches the table again through its owned sequence;
    it is part of the table, not a dependent that CASCADE would take along."""
    conn.autocommit = False
    assert run(conn, "CREATE TABLE fresh_serial (id serial PRIMARY KEY, v text)").ok
    r = run(conn, "DROP TABLE fresh_serial CASCADE")
    assert r.ok and not r.warnings(), r
    conn.commit()
    conn.autocommit = True
    assert run(conn, "CREATE TABLE old_serial (id serial PRIMARY KEY, v text)").ok
    r = run(conn, "DROP TABLE old_serial CASCADE")
    assert r.refused_rule() == "drop-table", r
    assert "drop-cascade" not in r.error.diag.message_detail, r.error.diag.message_detail
