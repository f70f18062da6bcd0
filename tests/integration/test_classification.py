"""Classification that needs the live server (issue #12, "context that is right"):
each case commits a setup, then runs one statement both through migsafe.check() and
through the hook (in a transaction that is rolled back, as the table owner), and
expects the same verdict from both — a rule id, or none.

It covers what a static linter gets wrong in both directions: SET NOT NULL is free
when a validated CHECK proves the column has no NULL (PostgreSQL skips the scan) but
not when the column was added to an existing table in the same transaction; a cast
that can fail is lossy whatever USING says; an identity's RESTART reissues used
values; ALTER INDEX … RENAME naming a table renames the table; and the safe forms
(ENABLE TRIGGER, REPLICA IDENTITY FULL, DETACH … CONCURRENTLY, a new trigger,
renaming an index or a constraint) are not flagged."""
import re
import threading
import time

import pytest

from conftest import REFUSED, new_db, run

USERS = ("CREATE TABLE users (id bigint PRIMARY KEY, email text, name text, code text, "
         "age int CONSTRAINT users_age_check CHECK (age >= 0));\n"
         "INSERT INTO users SELECT g, 'u' || g || '@example.com', 'n' || g, g::text, 30 "
         "FROM generate_series(1, 1000) g;\n"
         "CREATE INDEX users_email_idx ON users (email);")
TRIGGERED = USERS + (
    "\nCREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN NEW.name := lower(NEW.name); RETURN NEW; END$$;\n"
    "CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();")
PARTED = ("CREATE TABLE events (at date NOT NULL, v int) PARTITION BY RANGE (at);\n"
          "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');\n"
          "INSERT INTO events VALUES ('2025-05-01', 1);")

CASES = [
    # (id, setup, statement, expected rule or None)
    ("set-not-null-plain", USERS, "ALTER TABLE users ALTER COLUMN name SET NOT NULL", "set-not-null"),
    ("set-not-null-proven-by-valid-check",
     USERS + "\nALTER TABLE users ADD CONSTRAINT users_name_nn CHECK (name IS NOT NULL);",
     "ALTER TABLE users ALTER COLUMN name SET NOT NULL", None),
    ("set-not-null-not-valid-check-proves-nothing",
     USERS + "\nALTER TABLE users ADD CONSTRAINT users_name_nn CHECK (name IS NOT NULL) NOT VALID;",
     "ALTER TABLE users ALTER COLUMN name SET NOT NULL", "set-not-null"),
    ("set-not-null-proven-after-validate",
     USERS + "\nALTER TABLE users ADD CONSTRAINT users_name_nn CHECK (name IS NOT NULL) NOT VALID;"
             "\nALTER TABLE users VALIDATE CONSTRAINT users_name_nn;",
     "ALTER TABLE users ALTER COLUMN name SET NOT NULL", None),
    ("set-not-null-on-a-new-column-of-an-existing-table", USERS,
     "ALTER TABLE users ADD COLUMN nick text; ALTER TABLE users ALTER COLUMN nick SET NOT NULL",
     "set-not-null"),
    ("set-not-null-on-a-new-table", "",
     "CREATE TABLE t (a int); ALTER TABLE t ALTER COLUMN a SET NOT NULL", None),
    ("text-to-int-using-cast-is-lossy", USERS,
     "ALTER TABLE users ALTER COLUMN code TYPE integer USING code::integer", "alter-column-type-lossy"),
    ("text-to-int-is-lossy", USERS,
     "ALTER TABLE users ALTER COLUMN code TYPE bigint USING code::bigint", "alter-column-type-lossy"),
    ("identity-restart",
     "CREATE TABLE tickets (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, t text);\n"
     "INSERT INTO tickets (t) SELECT 'x' FROM generate_series(1, 10);",
     "ALTER TABLE tickets ALTER COLUMN id RESTART WITH 1", "alter-sequence-restart"),
    ("identity-set-increment-is-fine",
     "CREATE TABLE tickets (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, t text);",
     "ALTER TABLE tickets ALTER COLUMN id SET INCREMENT BY 2", None),
    ("alter-index-rename-of-a-table", USERS, "ALTER INDEX users RENAME TO people", "rename-table"),
    ("alter-index-rename-of-an-index", USERS,
     "ALTER INDEX users_email_idx RENAME TO users_email_index", None),
    ("rename-constraint", USERS,
     "ALTER TABLE users RENAME CONSTRAINT users_age_check TO users_age_nonnegative", None),
    ("enable-trigger", TRIGGERED, "ALTER TABLE users ENABLE TRIGGER users_touch", None),
    ("disable-trigger", TRIGGERED, "ALTER TABLE users DISABLE TRIGGER users_touch",
     "alter-trigger-state"),
    ("enable-replica-trigger-stops-it", TRIGGERED,
     "ALTER TABLE users ENABLE REPLICA TRIGGER users_touch", "alter-trigger-state"),
    ("new-trigger-for-dual-writes", TRIGGERED,
     "CREATE TRIGGER users_dual BEFORE INSERT OR UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch()",
     None),
    ("create-or-replace-of-a-new-trigger", TRIGGERED,
     "CREATE OR REPLACE TRIGGER users_dual BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION touch()",
     None),
    ("create-or-replace-of-an-existing-trigger", TRIGGERED,
     "CREATE OR REPLACE TRIGGER users_touch BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION touch()",
     None),
    ("replica-identity-full", USERS, "ALTER TABLE users REPLICA IDENTITY FULL", None),
    ("replica-identity-nothing", USERS, "ALTER TABLE users REPLICA IDENTITY NOTHING",
     "replica-identity"),
    ("detach-partition", PARTED, "ALTER TABLE events DETACH PARTITION events_2025",
     "detach-partition"),
    # The replica identity of a published table.
    ("drop-primary-key-of-a-published-table",
     "CREATE TABLE pt (id int CONSTRAINT pt_pkey PRIMARY KEY, v text);"
     "CREATE PUBLICATION pt_pub FOR TABLE pt;",
     "ALTER TABLE pt DROP CONSTRAINT pt_pkey", ["drop-constraint", "drop-replica-identity"]),
    ("drop-primary-key-of-an-unpublished-table",
     "CREATE TABLE pt (id int CONSTRAINT pt_pkey PRIMARY KEY, v text);",
     "ALTER TABLE pt DROP CONSTRAINT pt_pkey", "drop-constraint"),
    ("drop-the-identity-index-of-a-published-table",
     "CREATE TABLE pt (id int NOT NULL, v text); CREATE UNIQUE INDEX pt_id ON pt (id);"
     "ALTER TABLE pt REPLICA IDENTITY USING INDEX pt_id;"
     "CREATE PUBLICATION pt_pub2 FOR TABLE pt;",
     "DROP INDEX pt_id", ["drop-index", "drop-replica-identity"]),
    # Dropping what the transaction created takes along what existed before it.
    ("existing-table-attached-to-a-new-parent",
     "CREATE TABLE old_2024 (at date NOT NULL, v int);\n"
     "INSERT INTO old_2024 VALUES ('2024-03-01', 1);",
     "CREATE TABLE hist (at date NOT NULL, v int) PARTITION BY RANGE (at); "
     "ALTER TABLE hist ATTACH PARTITION old_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01'); "
     "DROP TABLE hist", "drop-table"),
    ("existing-sequence-owned-by-a-new-table",
     "CREATE SEQUENCE counter; SELECT nextval('counter');",
     "CREATE TABLE holder (id int); ALTER SEQUENCE counter OWNED BY holder.id; DROP TABLE holder",
     "drop-sequence"),
    ("existing-table-inheriting-a-new-parent-dropped-with-cascade",
     "CREATE TABLE kid (a int); INSERT INTO kid VALUES (1);",
     "CREATE TABLE mom (a int); ALTER TABLE kid INHERIT mom; DROP TABLE mom CASCADE",
     "drop-cascade"),
    ("new-table-with-its-own-sequence", "",
     "CREATE TABLE fresh (id serial); DROP TABLE fresh", None),
]

MOOD = ("CREATE TYPE mood AS ENUM ('sad', 'ok');\n"
        "CREATE TABLE people (id int PRIMARY KEY, m mood, note text);\n"
        "INSERT INTO people VALUES (1, 'ok', 'happy');")

# Run by check() only: they cannot run inside the hook test's transaction block, or
# are about the transaction a runner wraps around the whole input.
CHECK_ONLY = [
    ("detach-partition-concurrently", PARTED,
     "ALTER TABLE events DETACH PARTITION events_2025 CONCURRENTLY", None),
    ("concurrent-index-alone", USERS, "CREATE INDEX CONCURRENTLY users_name_idx ON users (name)",
     None),
    ("concurrent-index-in-a-migration", USERS,
     "ALTER TABLE users ADD COLUMN nick text; CREATE INDEX CONCURRENTLY users_nick_idx ON users (nick)",
     "not-in-transaction"),
    ("drop-index-concurrently-in-a-migration", USERS,
     "CREATE TABLE t (a int); DROP INDEX CONCURRENTLY users_email_idx", "not-in-transaction"),
    ("reindex-concurrently-in-a-migration", USERS,
     "CREATE TABLE t (a int); REINDEX INDEX CONCURRENTLY users_email_idx", "not-in-transaction"),
    ("vacuum-in-a-migration", USERS, "CREATE TABLE t (a int); VACUUM users", "not-in-transaction"),
    ("enum-value-used-by-update", MOOD,
     "ALTER TYPE mood ADD VALUE 'happy'; UPDATE people SET m = 'happy' WHERE id = 1",
     "enum-value-used-before-commit"),
    ("enum-value-used-as-default", MOOD,
     "ALTER TYPE mood ADD VALUE 'happy'; ALTER TABLE people ALTER COLUMN m SET DEFAULT 'happy'",
     "enum-value-used-before-commit"),
    ("enum-value-used-in-a-check", MOOD,
     "ALTER TYPE mood ADD VALUE 'happy'; "
     "ALTER TABLE people ADD CONSTRAINT not_happy CHECK (m <> 'happy') NOT VALID",
     "enum-value-used-before-commit"),
    ("enum-value-used-in-a-new-table", MOOD,
     "ALTER TYPE mood ADD VALUE 'happy'; CREATE TABLE p2 (m mood DEFAULT 'happy')",
     "enum-value-used-before-commit"),
    ("backfill-under-the-ddl-lock", USERS,
     "ALTER TABLE users ADD COLUMN nick text; UPDATE users SET nick = lower(name) WHERE nick IS NULL",
     "backfill-under-lock"),
    ("insert-select-under-the-ddl-lock", USERS,
     "ALTER TABLE users RENAME COLUMN code TO code2; "
     "INSERT INTO users (id, email) SELECT id + 5000, email FROM users WHERE id < 10",
     ["backfill-under-lock", "rename-column"]),
    ("insert-values-after-ddl-is-no-backfill", USERS,
     "ALTER TABLE users ADD COLUMN nick text; INSERT INTO users (id, nick) VALUES (5001, 'x')",
     None),
    ("backfill-of-an-analysed-empty-table", "CREATE TABLE e (id int, v text); ANALYZE e;",
     "ALTER TABLE e ADD COLUMN w text; UPDATE e SET w = v WHERE w IS NULL", None),
    ("backfill-in-a-migration-of-its-own", USERS,
     "UPDATE users SET name = lower(name) WHERE id < 100", None),
    ("setval-backwards", "CREATE TABLE tk (id serial PRIMARY KEY); "
     "INSERT INTO tk SELECT FROM generate_series(1, 50);",
     "SELECT setval('tk_id_seq', 1)", "alter-sequence-restart"),
    ("setval-forwards", "CREATE TABLE tk (id serial PRIMARY KEY); "
     "INSERT INTO tk SELECT FROM generate_series(1, 50);",
     "SELECT setval('tk_id_seq', 500)", None),
    ("setval-of-an-odd-name-is-not-an-error", "", "SELECT setval('\"odd', 1)", None),
    ("restart-forwards", "CREATE TABLE tk (id serial PRIMARY KEY); "
     "INSERT INTO tk SELECT FROM generate_series(1, 50);",
     "ALTER SEQUENCE tk_id_seq RESTART WITH 10000", None),
    ("rename-with-a-compatibility-view", USERS,
     "ALTER TABLE users RENAME TO members; CREATE VIEW users AS SELECT * FROM members", None),
    ("rls-with-its-policy-in-the-same-input", USERS,
     "ALTER TABLE users ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON users USING (true)", None),
    ("rls-without-a-policy", USERS, "ALTER TABLE users ENABLE ROW LEVEL SECURITY",
     "enable-rls-without-policy"),
    ("do-block", USERS, "DO $$ BEGIN RAISE NOTICE 'hi'; END $$", "opaque-code"),
    ("delete-where-true", USERS, "DELETE FROM users WHERE true", "dml-without-where"),
    ("update-of-a-table-the-input-creates", USERS,
     "CREATE TABLE f (a int); INSERT INTO f SELECT id FROM users; UPDATE f SET a = 0", None),
    # Review findings: odd values are not check()'s errors; RESTART with other changes.
    ("setval-of-a-three-part-name", "", "SELECT setval('x.y.z', 5)", None),
    ("restart-with-a-fraction", "CREATE SEQUENCE s1;", "ALTER SEQUENCE s1 RESTART WITH 1.5",
     "alter-sequence-restart"),
    ("restart-beyond-bigint", "CREATE SEQUENCE s1;",
     "ALTER SEQUENCE s1 RESTART WITH 99999999999999999999999", "alter-sequence-restart"),
    ("restart-forward-but-descending", "CREATE SEQUENCE s1; SELECT nextval('s1');",
     "ALTER SEQUENCE s1 RESTART WITH 1000 INCREMENT BY -1", "alter-sequence-restart"),
    ("restart-forward-with-cycle", "CREATE SEQUENCE s1; SELECT nextval('s1');",
     "ALTER SEQUENCE s1 RESTART WITH 1000 MAXVALUE 1001 CYCLE",
     ["alter-sequence-limits", "alter-sequence-restart"]),
    ("reindex-schema-in-a-migration", USERS, "CREATE TABLE t (a int); REINDEX SCHEMA public",
     ["not-in-transaction", "reindex"]),
    ("discard-all-in-a-migration", USERS, "CREATE TABLE t (a int); DISCARD ALL",
     "not-in-transaction"),
    ("subscription-without-slot-in-a-migration", USERS,
     "CREATE TABLE t (a int); CREATE SUBSCRIPTION s CONNECTION 'dbname=x' PUBLICATION p "
     "WITH (connect = false)", None),
    ("enum-value-added-alone", MOOD, "ALTER TYPE mood ADD VALUE 'happy'", None),
    ("enum-value-other-string-is-fine", MOOD,
     "ALTER TYPE mood ADD VALUE 'happy'; UPDATE people SET note = 'sad' WHERE id = 1", None),
    # PostgreSQL 15 refuses the new value even for a type created in the same transaction.
    ("enum-of-a-type-created-in-the-migration", "",
     "CREATE TYPE feel AS ENUM ('a'); ALTER TYPE feel ADD VALUE 'b'; CREATE TABLE f (x feel DEFAULT 'b')",
     "enum-value-used-before-commit"),
]

RISKY_OR_WORSE = ("risky", "destructive")


def flagged(conn, sql):
    return sorted({r for (r, sev) in conn.execute(
        "SELECT rule_id, severity FROM migsafe.check(%s)", (sql,)) if sev in RISKY_OR_WORSE})


@pytest.mark.parametrize("case", CASES + CHECK_ONLY, ids=[c[0] for c in CASES + CHECK_ONLY])
def test_check_verdict(cluster, case):
    _, setup, sql, expected = case
    db = new_db(cluster)
    with cluster.connect(db, "app_owner") as conn:
        if setup:
            r = run(conn, setup)
            assert r.ok, f"setup failed: {r}"
        got = flagged(conn, sql)
    want = expected if isinstance(expected, list) else [expected] if expected else []
    assert got == sorted(want), got


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hook_verdict(cluster, case):
    """The hook agrees with check(): the expected rule is refused or warned, and a
    statement check() calls safe passes without a warning."""
    _, setup, sql, expected = case
    db = new_db(cluster)
    with cluster.connect(db, "app_owner") as conn:
        if setup:
            assert run(conn, setup).ok
    with cluster.connect(db, "app_owner", autocommit=False) as conn:
        seen = []
        ok = True
        for stmt in [s for s in sql.split(";") if s.strip()]:
            r = run(conn, stmt)
            seen += r.warned_rules()
            if r.sqlstate == REFUSED:
                # The message names the first rule; DETAIL has a line per finding.
                seen.append(r.refused_rule())
                seen += re.findall(r"Rule ([a-z-]+) \(", r.error.diag.message_detail or "")
            if not r.ok:
                ok = False
                break
        conn.rollback()
    if expected:
        want = expected if isinstance(expected, list) else [expected]
        assert set(want) <= set(seen), (seen, r)
    else:
        assert ok and not seen, (seen, r)


def test_columns_of_relations_with_two_word_kinds_are_named_right(cluster):
    # "materialized view public.mv" and "foreign table …": the column is public.mv.a,
    # so that a phase entry public.mv.a approves it.
    db = new_db(cluster)
    with cluster.connect(db, "app_owner") as conn:
        conn.execute("CREATE MATERIALIZED VIEW mv AS SELECT 1 AS a")
        rows = conn.execute("SELECT rule_id, object FROM migsafe.check("
                            "'ALTER MATERIALIZED VIEW mv RENAME COLUMN a TO b')").fetchall()
        assert rows == [("rename-column", "column public.mv.a")], rows
        rows = conn.execute("SELECT rule_id, object FROM migsafe.check("
                            "'ALTER MATERIALIZED VIEW missing_mv RENAME COLUMN a TO b')").fetchall()
        assert rows == [("rename-column", "column missing_mv.a")], rows


def test_block_risky_rows_refuses_risky_work_on_big_or_unknown_tables(cluster):
    """migsafe.block_risky_rows: risky work on a table the planner says is bigger, or
    whose size it does not know (never analysed), is refused; on a small one it is
    warned; catalog-only risky statements are not about size. check() shows the size."""
    db = new_db(cluster)
    with cluster.connect(db, "app_owner") as conn:
        assert run(conn, "CREATE TABLE big (id int, v text);"
                         "INSERT INTO big SELECT g, g::text FROM generate_series(1, 5000) g;"
                         "ANALYZE big;"
                         "CREATE TABLE small (id int, v text); INSERT INTO small VALUES (1, 'a');"
                         "ANALYZE small;"
                         "CREATE TABLE unknown (id int, v text); INSERT INTO unknown VALUES (1, 'a');").ok
    cluster.configure(migsafe__block_risky_rows="1000")
    try:
        with cluster.connect(db, "app_owner", autocommit=False) as conn:
            r = run(conn, "CREATE INDEX big_v ON big (v)")
            assert r.sqlstate == REFUSED, r
            assert "migsafe.block_risky_rows (1000 rows)" in r.message, r.message
            assert "Table size: about 5000 rows" in r.error.diag.message_detail
            conn.rollback()
            r = run(conn, "CREATE INDEX unknown_v ON unknown (v)")
            assert r.sqlstate == REFUSED, r
            assert "never analysed" in r.error.diag.message_detail
            conn.rollback()
            r = run(conn, "CREATE INDEX small_v ON small (v)")
            assert r.ok and "create-index" in r.warned_rules(), r
            conn.rollback()
            r = run(conn, "ALTER TABLE big REPLICA IDENTITY NOTHING")
            assert r.ok and "replica-identity" in r.warned_rules(), r
            conn.rollback()
        with cluster.connect(db, "app_owner") as conn:
            (decision, message), = conn.execute(
                "SELECT decision, message FROM migsafe.check('CREATE INDEX big_v ON big (v)')").fetchall()
            assert decision == "refused" and "about 5000 rows" in message, message
    finally:
        cluster.configure(migsafe__block_risky_rows=None)
    with cluster.connect(db, "app_owner", autocommit=False) as conn:
        r = run(conn, "CREATE INDEX big_v ON big (v)")
        assert r.ok and "create-index" in r.warned_rules(), r


def test_the_classifier_neither_waits_for_nor_keeps_a_lock(cluster):
    """Review finding: SET NOT NULL's look at the table's constraints, and ATTACH's
    look at a partition's size, must not queue for a lock before lock safety applies
    migsafe.lock_timeout, nor keep one: a busy table gets the conservative answer and
    the statement then waits as lock safety allows. In a READ ONLY transaction,
    PostgreSQL's own error comes at once."""
    cluster.configure(migsafe__lock_timeout="'1s'", migsafe__lock_retry_budget="0")
    try:
        db = new_db(cluster)
        with cluster.connect(db, "app_owner") as c:
            assert run(c, "CREATE TABLE busy (id int, c int); INSERT INTO busy VALUES (1, 1);"
                          "GRANT SELECT ON busy TO app_user").ok
        reader = cluster.connect(db, "app_user", autocommit=False)
        reader.execute("SELECT count(*) FROM busy")  # ACCESS SHARE, idle in transaction
        with cluster.connect(db, "app_owner") as c:
            t0 = time.time()
            r = run(c, "ALTER TABLE busy ALTER COLUMN c SET NOT NULL")
            waited = time.time() - t0
            assert r.sqlstate == "55P03" and waited < 8, (r, waited)
            t0 = time.time()
            r = run(c, "BEGIN READ ONLY; ALTER TABLE busy ALTER COLUMN c SET NOT NULL")
            assert r.sqlstate == "25006" and time.time() - t0 < 1.5, r
            c.execute("ROLLBACK")
        # A table someone is about to lock ACCESS EXCLUSIVE (queued behind the reader):
        # the look yields to the queue instead of jumping it; check() answers at once.
        waiter = cluster.connect(db, "app_owner", autocommit=False)
        waiter.execute("SET lock_timeout = '20s'")
        th = threading.Thread(target=lambda: run(waiter, "LOCK TABLE busy IN ACCESS EXCLUSIVE MODE"))
        th.start()
        time.sleep(0.5)
        with cluster.connect(db, "app_owner") as c:
            t0 = time.time()
            rows = c.execute("SELECT rule_id FROM migsafe.check("
                             "'ALTER TABLE busy ALTER COLUMN c SET NOT NULL')").fetchall()
            assert time.time() - t0 < 1.5 and rows == [("set-not-null",)], rows
        reader.rollback()
        reader.close()
        th.join(30)
        waiter.rollback()
        waiter.close()
    finally:
        cluster.configure(migsafe__lock_timeout=None, migsafe__lock_retry_budget=None)
