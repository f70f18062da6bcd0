"""Snapshots, diff, verify, rollback, the recycle bin and dry runs (issue #4), on a real
cluster: round trips over the Drizzle project's steps and a generated set of schema
changes, byte-identical pg_dump after rolling back additive migrations, quoting of
awkward names, data coming back from the recycle bin, and the bad input of every
function."""
import os
import subprocess
import time

import psycopg
import pytest

from conftest import REFUSED, new_db, run

APPROVED = "MS003"
DATA_LOSS = "MS005"
PG_DUMP = os.path.join(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"), "pg_dump")
DZ_MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "drizzle", "migrations")

BASE = """
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text, m mood DEFAULT 'ok');
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     user_id int REFERENCES users(id), total numeric(10,2) CHECK (total >= 0), note text);
CREATE INDEX orders_user_idx ON orders (user_id);
CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;
CREATE FUNCTION add_tax(x numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$ SELECT x * 1.2 $$;
COMMENT ON TABLE users IS 'people';
INSERT INTO users (email, name) SELECT 'u' || g || '@x', 'n' || g FROM generate_series(1, 20) g;
INSERT INTO orders (user_id, total, note) SELECT g, g * 10, 'note ' || g FROM generate_series(1, 20) g;
"""


def one(conn, sql, params=None):
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def diff_rows(conn, snap):
    return conn.execute(
        "SELECT kind, identity, action FROM migsafe.diff(%s) ORDER BY 1, 2", (snap,)).fetchall()


def apply(conn, sql, name=None):
    """Runs a migration the way drizzle-kit does: its statements in one transaction."""
    conn.execute("BEGIN")
    try:
        if name:
            conn.execute("SELECT migsafe.set_migration_name(%s)", (name,))
        for stmt in sql.split("--> statement-breakpoint"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def contract(conn, name, objects):
    return one(conn, "SELECT migsafe.begin_phase('contract', %s, objects => %s, skip_expand => true)",
               (name, objects))


def dump(cluster, db):
    out = subprocess.run([PG_DUMP, "--schema-only", "-d", cluster.dsn(db)],
                         check=True, capture_output=True, text=True).stdout
    # pg_dump 15.14+ brackets the script with \restrict / \unrestrict and a random key.
    return "\n".join(l for l in out.splitlines() if not l.startswith(("\\restrict ", "\\unrestrict ")))


@pytest.fixture
def base(cluster):
    db = new_db(cluster, owner="postgres")
    with cluster.connect(db) as c:
        c.execute(BASE)
    return db


# ---------------------------------------------------------------- snapshots and diff

def test_snapshot_of_an_empty_database(cluster):
    db = new_db(cluster, owner="postgres")
    with cluster.connect(db) as c:
        sid = one(c, "SELECT migsafe.snapshot('empty')")
        row = c.execute("SELECT label, kind, complete, parts FROM migsafe.snapshots WHERE id = %s", (sid,)).fetchone()
        assert row == ("empty", "manual", True, 1)
        assert diff_rows(c, sid) == []
        # The public schema is part of the model; nothing else exists.
        assert one(c, "SELECT migsafe.rollback_sql(%s)", (sid,)) == ""
        steps = c.execute("SELECT action, status FROM migsafe.rollback(%s, dry_run => false)", (sid,)).fetchall()
        assert steps == [("check", "ok")]


def test_diff_reports_every_kind_of_change(cluster, base):
    with cluster.connect(base) as c:
        sid = one(c, "SELECT migsafe.snapshot()")
        c.execute("ALTER TABLE users ADD COLUMN age int")
        c.execute("CREATE TABLE extra (id int)")
        c.execute("ALTER TYPE mood ADD VALUE 'happy'")
        c.execute("COMMENT ON TABLE users IS 'customers'")
        c.execute("CREATE INDEX users_name_idx ON users (name)")
        contract(c, "narrow note", ["public.orders.note"])
        c.execute("ALTER TABLE orders ALTER COLUMN note TYPE varchar(20)")
        rows = c.execute("SELECT kind, identity, action, loses_data, before, after FROM migsafe.diff(%s)",
                         (sid,)).fetchall()
        got = {(k, i, a) for k, i, a, *_ in rows}
        assert ("column", '"public"."users"."age"', "added") in got
        assert ("table", '"public"."extra"', "added") in got
        assert ("enum", '"public"."mood"', "changed") in got
        assert ("comment", 'table "public"."users"', "changed") in got
        assert ("index", '"public"."users_name_idx"', "added") in got
        note = [r for r in rows if r[1] == '"public"."orders"."note"'][0]
        assert note[2] == "changed" and note[3] is True, note  # text -> varchar(20) can cut values
        assert note[4]["type"] == "text" and note[5]["type"] == "character varying(20)"
        # Snapshot against snapshot gives the same.
        sid2 = one(c, "SELECT migsafe.snapshot()")
        assert {(k, i, a) for k, i, a in diff_rows(c, sid)} == got
        assert c.execute("SELECT count(*) FROM migsafe.diff(%s, %s)", (sid, sid2)).fetchone()[0] == len(rows)
        assert c.execute("SELECT count(*) FROM migsafe.diff(%s, %s)", (sid2, sid2)).fetchone()[0] == 0


def test_bad_input_gets_clear_errors(cluster, base):
    with cluster.connect(base) as c:
        for sql, state, text in [
            ("SELECT * FROM migsafe.diff(NULL)", "22004", "from_snapshot must not be NULL"),
            ("SELECT * FROM migsafe.diff(424242)", "42704", "snapshot 424242 does not exist"),
            ("SELECT * FROM migsafe.diff((SELECT migsafe.snapshot()), 424242)", "42704", "snapshot 424242 does not exist"),
            ("SELECT migsafe.rollback_sql(424242)", "42704", "snapshot 424242 does not exist"),
            ("SELECT * FROM migsafe.rollback(424242)", "42704", "snapshot 424242 does not exist"),
            ("SELECT * FROM migsafe.rollback(NULL)", "22004", "must not be NULL"),
            ("SELECT * FROM migsafe.verify(424242)", "42704", "snapshot 424242 does not exist"),
            ("SELECT migsafe.undrop(424242)", "42704", "recycle bin entry 424242 does not exist"),
            ("SELECT migsafe.undrop(NULL)", "22004", "must not be NULL"),
            ("SELECT * FROM migsafe.dry_run(NULL)", "22004", "must not be NULL"),
            ("SELECT * FROM migsafe.dry_run('ALTER TABLE')", "42601", "syntax error"),
            ("SELECT migsafe.purge('-1 day')", "22023", "must not be negative"),
            ("SELECT migsafe.drop_snapshots(NULL)", "22023", "older_than"),
        ]:
            r = run(c, sql)
            assert not r.ok and r.sqlstate == state and text in r.message, (sql, r)
        # Nothing was half-done: the schema is what BASE made.
        assert one(c, "SELECT count(*) FROM migsafe.recycle") == 0


def test_privileges(cluster, base):
    with cluster.connect() as c:
        run(c, "CREATE ROLE snap_app LOGIN")
        run(c, "CREATE ROLE snap_auditor LOGIN IN ROLE migsafe_auditor")
    with cluster.connect(base) as c:
        c.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO snap_app")
        sid = one(c, "SELECT migsafe.snapshot()")
    with cluster.connect(base, "snap_app") as c:
        for sql in ["SELECT migsafe.snapshot()", f"SELECT * FROM migsafe.diff({sid})",
                    f"SELECT * FROM migsafe.rollback({sid})", "SELECT * FROM migsafe.snapshots",
                    "SELECT migsafe.undrop(1)", "SELECT migsafe.purge()", f"SELECT migsafe.rollback_sql({sid})"]:
            r = run(c, sql)
            assert r.sqlstate == "42501", (sql, r)
        # Dry runs are for everybody: they run as the caller and keep nothing.
        rows = c.execute("SELECT outcome FROM migsafe.dry_run('ALTER TABLE users ADD COLUMN x int')").fetchall()
        assert rows[-1][0] in ("would succeed", "would fail")
    with cluster.connect(base, "snap_auditor") as c:
        assert diff_rows(c, sid) == []
        assert one(c, "SELECT migsafe.verify_ok(%s)", (sid,)) is True
        r = run(c, f"SELECT * FROM migsafe.rollback({sid}, dry_run => false)")
        assert r.sqlstate == "42501", r


# ------------------------------------------------------------------------ round trips

GENERATED = [
    # (name, migration, objects a contract phase must approve)
    ("add column", "ALTER TABLE users ADD COLUMN age int DEFAULT 3 NOT NULL", []),
    ("add table with fk", "CREATE TABLE tags (id serial PRIMARY KEY, order_id bigint REFERENCES orders(id), label text UNIQUE)", []),
    ("add index", "CREATE INDEX users_name_idx ON users (lower(name)) WHERE name IS NOT NULL", []),
    ("add view on view", "CREATE VIEW v1 AS SELECT id FROM users;--> statement-breakpoint\nCREATE VIEW v2 AS SELECT id FROM v1", []),
    ("add check not valid", "ALTER TABLE orders ADD CONSTRAINT note_len CHECK (length(note) < 100) NOT VALID", []),
    ("comments and grants", "COMMENT ON COLUMN users.email IS 'login';--> statement-breakpoint\nGRANT SELECT ON users TO PUBLIC", []),
    ("trigger and function", "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;"
     "--> statement-breakpoint\nCREATE TRIGGER t_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch()", []),
    ("policy and rls", "ALTER TABLE orders ENABLE ROW LEVEL SECURITY;--> statement-breakpoint\n"
     "CREATE POLICY own ON orders USING (user_id > 0)", []),
    ("sequence", "CREATE SEQUENCE invoice_no START 1000;--> statement-breakpoint\nSELECT nextval('invoice_no')", []),
    ("new schema", "CREATE SCHEMA reporting;--> statement-breakpoint\nCREATE TABLE reporting.daily (d date PRIMARY KEY)", []),
    ("widen type", "ALTER TABLE orders ALTER COLUMN user_id TYPE bigint", []),
    ("set not null and default", "ALTER TABLE users ALTER COLUMN name SET NOT NULL;--> statement-breakpoint\n"
     "ALTER TABLE users ALTER COLUMN name SET DEFAULT 'anon'", []),
    ("rename column", "ALTER TABLE users RENAME COLUMN name TO full_name", ["public.users.name"]),
    ("drop column", "ALTER TABLE orders DROP COLUMN note", ["public.orders.note"]),
    ("drop index", "DROP INDEX orders_user_idx", ["public.orders_user_idx"]),
    ("drop view", "DROP VIEW big_orders", ["public.big_orders"]),
    ("drop table cascade", "DROP TABLE orders CASCADE", ["public.orders", "view public.big_orders"]),
    ("drop function", "DROP FUNCTION add_tax(numeric)", ["function public.add_tax(numeric)"]),
    ("narrow type", "ALTER TABLE users ALTER COLUMN name TYPE varchar(10)", ["public.users.name"]),
]


@pytest.mark.parametrize("name,migration,objects", GENERATED, ids=[g[0] for g in GENERATED])
def test_round_trip(cluster, base, name, migration, objects):
    """snapshot -> apply -> rollback(dry_run => false) -> diff is empty, and the rows
    of the tables the migration did not add are all there."""
    with cluster.connect(base) as c:
        before_rows = {t: one(c, f"SELECT count(*) FROM {t}") for t in ("users", "orders")}
        before_data = c.execute("SELECT id, email, name FROM users ORDER BY id").fetchall()
        sid = one(c, "SELECT migsafe.snapshot(%s)", (name,))
        if objects:
            contract(c, name, objects)
        apply(c, migration)
        assert diff_rows(c, sid) != [], "the migration changed nothing?"
        if objects:
            c.execute("SELECT migsafe.end_phase()")
        steps = c.execute("SELECT action, object, status, detail FROM migsafe.rollback(%s, dry_run => false, force => true)",
                          (sid,)).fetchall()
        assert steps[-1][0] == "check" and steps[-1][2] == "ok", steps
        left = [r for r in diff_rows(c, sid) if r[0] != "column order"]
        assert left == [], (steps, left)
        for t, n in before_rows.items():
            assert one(c, f"SELECT count(*) FROM {t}") == n, t
        assert c.execute("SELECT id, email, name FROM users ORDER BY id").fetchall() == before_data
        # Rolling back again has nothing to do.
        again = c.execute("SELECT action, status FROM migsafe.rollback(%s, dry_run => false)", (sid,)).fetchall()
        assert again == [("check", "ok")]


# A phase approves a CASCADE only with everything it reaches.
USERS_CASCADE = ["public.users", "constraint orders_user_id_fkey on public.orders"]


def test_dropped_table_comes_back_with_data_and_dependents(cluster, base):
    with cluster.connect(base) as c:
        sid = one(c, "SELECT migsafe.snapshot()")
        totals = c.execute("SELECT id, total, note FROM orders ORDER BY id").fetchall()
        contract(c, "drop orders", ["public.orders", "view public.big_orders"])
        r = run(c, "DROP TABLE orders CASCADE")
        assert r.ok, r
        assert any("moved to the recycle bin" in n.message_primary for n in r.notices), r
        assert one(c, "SELECT to_regclass('public.orders')") is None
        assert one(c, "SELECT to_regclass('public.big_orders')") is None
        rb = c.execute("SELECT id, kind, object, state FROM migsafe.recycle_bin").fetchall()
        assert len(rb) == 1 and rb[0][1:] == ("table", '"public"."orders"', "kept")
        steps = c.execute("SELECT action, status, detail FROM migsafe.rollback(%s, dry_run => false)", (sid,)).fetchall()
        assert steps[0][0] == "restore" and "recycle bin id" in steps[0][2], steps
        assert steps[-1][1] == "ok", steps
        assert c.execute("SELECT id, total, note FROM orders ORDER BY id").fetchall() == totals
        assert one(c, "SELECT count(*) FROM big_orders") == len([t for t in totals if t[1] > 100])
        assert one(c, "SELECT state FROM migsafe.recycle_bin") == "restored"
        # Identity keeps counting where it stood.
        c.execute("INSERT INTO orders (user_id, total) VALUES (1, 5)")
        assert one(c, "SELECT max(id) FROM orders") == 21


def test_undrop_restores_name_data_and_dependents(cluster, base):
    with cluster.connect(base) as c:
        contract(c, "drop users", USERS_CASCADE)
        c.execute("DROP TABLE users CASCADE")
        rid = one(c, "SELECT max(id) FROM migsafe.recycle")
        deps = one(c, "SELECT dependents FROM migsafe.recycle WHERE id = %s", (rid,))
        assert {d["kind"] for d in deps} == {"foreign key"}
        assert one(c, "SELECT count(*) FROM pg_constraint WHERE conname = 'orders_user_id_fkey'") == 0
        # A new table took the name: undrop refuses clearly and changes nothing.
        c.execute("CREATE TABLE users (x int)")
        r = run(c, f"SELECT migsafe.undrop({rid})")
        assert r.sqlstate == "42P07" and "a relation of that name exists" in r.message, r
        contract(c, "drop new users", ["public.users"])
        c.execute("DROP TABLE users")
        msg = one(c, "SELECT migsafe.undrop(%s)", (rid,))
        assert "restored table" in msg and "foreign key" in msg, msg
        assert one(c, "SELECT count(*) FROM users") == 20
        assert one(c, "SELECT count(*) FROM pg_constraint WHERE conname = 'orders_user_id_fkey'") == 1
        assert one(c, "SELECT count(*) FROM pg_indexes WHERE indexname IN ('users_pkey', 'users_email_key')") == 2
        r = run(c, f"SELECT migsafe.undrop({rid})")
        assert r.sqlstate == "55000" and "already restored" in r.message, r


def test_drop_without_cascade_keeps_drop_semantics(cluster, base):
    with cluster.connect(base) as c:
        contract(c, "drop users", ["public.users"])
        r = run(c, "DROP TABLE users")
        assert r.sqlstate == "2BP01", r          # dependent objects: the real DROP's error
        r = run(c, "DROP TABLE IF EXISTS nope, big_orders_x")
        assert r.ok, r
        assert one(c, "SELECT count(*) FROM migsafe.recycle") == 0
        c.execute("CREATE TABLE lonely (id int); INSERT INTO lonely VALUES (1)")
        c.execute("CREATE TABLE empty_one (id int)")
        contract(c, "drop lonely", ["public.lonely", "public.empty_one"])
        r = run(c, "DROP TABLE empty_one")
        assert r.ok and any("it is empty" in n.message_primary for n in r.notices), r
        r = run(c, "DROP TABLE IF EXISTS lonely, ghost")
        assert r.ok, r
        texts = [n.message_primary for n in r.notices]
        assert any('table "ghost" does not exist, skipping' in t for t in texts), texts
        assert any("moved to the recycle bin" in t for t in texts), texts
        c.execute("CREATE TABLE lonely (id int)")   # the name is free


def test_column_and_truncate_are_kept(cluster, base):
    with cluster.connect(base) as c:
        notes = c.execute("SELECT id, note FROM orders ORDER BY id").fetchall()
        contract(c, "drop note", ["public.orders.note", "public.orders"])
        r = run(c, "ALTER TABLE orders DROP COLUMN note")
        assert r.ok and any("kept in the recycle bin" in n.message_primary for n in r.notices), r
        col_id = one(c, "SELECT id FROM migsafe.recycle WHERE kind = 'column'")
        r = run(c, "TRUNCATE orders")
        assert r.ok, r
        tr_id = one(c, "SELECT id FROM migsafe.recycle WHERE kind = 'truncate'")
        assert one(c, "SELECT count(*) FROM orders") == 0
        assert "20 rows" in one(c, "SELECT migsafe.undrop(%s)", (tr_id,))
        assert "20 of 20 rows" in one(c, "SELECT migsafe.undrop(%s)", (col_id,))
        assert c.execute("SELECT id, note FROM orders ORDER BY id").fetchall() == notes


def test_recycle_max_bytes_and_keep_data(cluster, base):
    with cluster.connect(base) as c:
        c.execute("CREATE TABLE blob (id int PRIMARY KEY, payload text)")
        c.execute("INSERT INTO blob SELECT g, repeat('x', 2000) FROM generate_series(1, 200) g")
    cluster.configure(migsafe__recycle_max_bytes="'64kB'")
    try:
        with cluster.connect(base) as c:
            contract(c, "drop payload", ["public.blob.payload"])
            r = run(c, "ALTER TABLE blob DROP COLUMN payload")
            assert r.sqlstate == REFUSED and "recycle_max_bytes" in r.message, r
            assert "keep_data => false" in r.error.diag.message_hint
            assert one(c, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'blob'") == 2
            c.execute("SELECT migsafe.end_phase()")
            one(c, "SELECT migsafe.begin_phase('contract', 'drop payload 2', objects => ARRAY['public.blob.payload'], "
                   "skip_expand => true, keep_data => false)")
            r = run(c, "ALTER TABLE blob DROP COLUMN payload")
            assert r.ok, r
            assert one(c, "SELECT count(*) FROM migsafe.recycle WHERE kind = 'column'") == 0
    finally:
        cluster.configure(migsafe__recycle_max_bytes=None)


def test_purge(cluster, base):
    with cluster.connect(base) as c:
        contract(c, "drop users", USERS_CASCADE)
        c.execute("DROP TABLE users CASCADE")
        assert one(c, "SELECT migsafe.purge()") == 0          # younger than the retention
        assert one(c, "SELECT migsafe.purge('0')") == 1
        assert one(c, "SELECT state FROM migsafe.recycle_bin") == "purged"
        assert one(c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'migsafe_recycle'") == 0
        r = run(c, "SELECT migsafe.undrop((SELECT max(id) FROM migsafe.recycle))")
        assert r.sqlstate == "55000" and "purged" in r.message, r


def test_worker_purges_after_the_retention(cluster, base):
    cluster.configure(migsafe__recycle_retention="'1s'")
    try:
        with cluster.connect(base) as c:
            contract(c, "drop users", USERS_CASCADE)
            c.execute("DROP TABLE users CASCADE")
            deadline = time.time() + 90
            while time.time() < deadline and one(c, "SELECT state FROM migsafe.recycle_bin") != "purged":
                time.sleep(0.5)
                c.execute("CREATE TABLE IF NOT EXISTS keep_writer_busy (id int)")  # DDL wakes the writer
            assert one(c, "SELECT state FROM migsafe.recycle_bin") == "purged"
    finally:
        cluster.configure(migsafe__recycle_retention=None)


# ------------------------------------------------------------------------------ rollback

def test_enum_labels_cannot_be_removed(cluster, base):
    with cluster.connect(base) as c:
        sid = one(c, "SELECT migsafe.snapshot()")
        c.execute("ALTER TYPE mood ADD VALUE 'happy'")
        steps = c.execute("SELECT action, status, detail FROM migsafe.rollback(%s, dry_run => false)", (sid,)).fetchall()
        assert steps[0][:2] == ("cannot_revert", "cannot revert") and "happy" in steps[0][2], steps
        assert steps[-1][:2] == ("check", "differences remain"), steps


def test_rollback_refuses_to_lose_new_data_unless_forced(cluster, base):
    with cluster.connect(base) as c:
        sid = one(c, "SELECT migsafe.snapshot()")
        c.execute("CREATE TABLE audit_trail (id int)")
        c.execute("ALTER TABLE users ADD COLUMN nickname text")
        c.execute("ALTER TABLE users ADD COLUMN unused text")
        c.execute("INSERT INTO audit_trail VALUES (1)")
        c.execute("UPDATE users SET nickname = 'x' WHERE id = 1")
        r = run(c, f"SELECT * FROM migsafe.rollback({sid}, dry_run => false)")
        assert r.sqlstate == DATA_LOSS, r
        assert '"public"."audit_trail"' in r.message and '"public"."users"."nickname"' in r.message
        assert "unused" not in r.message                  # empty column: nothing to lose
        assert "force => true" in r.error.diag.message_hint
        assert one(c, "SELECT count(*) FROM audit_trail") == 1   # nothing done
        dry = c.execute("SELECT object, status FROM migsafe.rollback(%s)", (sid,)).fetchall()
        assert ('"public"."audit_trail"', "would lose data") in dry, dry
        assert ('"public"."users"."nickname"', "would lose data") in dry, dry
        assert one(c, "SELECT to_regclass('audit_trail') IS NOT NULL")      # dry run kept nothing
        steps = c.execute("SELECT status FROM migsafe.rollback(%s, dry_run => false, force => true)", (sid,)).fetchall()
        assert steps[-1][0] == "ok"
        # Even forced, an approved table drop goes to the recycle bin.
        assert one(c, "SELECT count(*) FROM migsafe.recycle WHERE table_name = 'audit_trail'") == 1


def test_rows_hidden_from_the_owner_still_count_as_data(cluster, base):
    """Whether a table created since the snapshot holds data is read as its owner; with
    FORCE ROW LEVEL SECURITY the owner's own policies may hide every row: the table is
    then assumed to hold data (MS005 without force)."""
    with cluster.connect(base) as c:
        sid = one(c, "SELECT migsafe.snapshot()")
        c.execute("CREATE ROLE hiding_owner")
        c.execute("CREATE TABLE hidden (id int); ALTER TABLE hidden OWNER TO hiding_owner;"
                  "ALTER TABLE hidden ENABLE ROW LEVEL SECURITY; ALTER TABLE hidden FORCE ROW LEVEL SECURITY;"
                  "CREATE POLICY nothing ON hidden USING (false); INSERT INTO hidden VALUES (1)")
        r = run(c, f"SELECT * FROM migsafe.rollback({sid}, dry_run => false)")
        assert r.sqlstate == DATA_LOSS and '"public"."hidden"' in r.message, r
        assert one(c, "SELECT count(*) FROM hidden") == 1


def test_rollback_after_further_migrations_and_is_recorded(cluster, base):
    with cluster.connect(base) as c:
        sid = one(c, "SELECT migsafe.snapshot()")
        c.execute("ALTER TABLE users ADD COLUMN a int")
        sid2 = one(c, "SELECT migsafe.snapshot()")
        c.execute("ALTER TABLE users ADD COLUMN b int")
        c.execute("SELECT * FROM migsafe.rollback(%s, dry_run => false)", (sid2,))
        assert [r[1] for r in diff_rows(c, sid)] == ['"public"."users"."a"']
        c.execute("SELECT * FROM migsafe.rollback(%s, dry_run => false)", (sid,))
        assert diff_rows(c, sid) == []
        phases = c.execute("SELECT kind, name, state FROM migsafe.phases WHERE kind = 'rollback' ORDER BY id").fetchall()
        assert phases == [("rollback", f"rollback to snapshot {sid2}", "ended"),
                          ("rollback", f"rollback to snapshot {sid}", "ended")]


def test_a_step_whose_owner_was_dropped_cannot_revert(cluster, base):
    """Rollback steps run as the role that owned the object in the snapshot; when that
    role was dropped since, the step is reported as cannot-revert (with the statement to
    run by hand) and the rest of the rollback still runs."""
    with cluster.connect(base) as c:
        c.execute("CREATE ROLE gone_owner")
        c.execute("CREATE TABLE gone (id int)")
        c.execute("ALTER TABLE gone OWNER TO gone_owner")
        sid = one(c, "SELECT migsafe.snapshot()")
        contract(c, "drop gone", ["public.gone", "role gone_owner"])
        c.execute("DROP TABLE gone")
        c.execute("SELECT migsafe.purge('0')")
        c.execute("DROP ROLE gone_owner")
        c.execute("ALTER TABLE users ADD COLUMN later int")
        steps = c.execute("SELECT action, object, status, detail FROM migsafe.rollback(%s, dry_run => false)",
                          (sid,)).fetchall()
        gone = [s for s in steps if s[1] == '"public"."gone"']
        assert gone and gone[0][2] == "cannot revert", steps
        assert "its owner gone_owner no longer exists" in gone[0][3], gone
        assert "CREATE TABLE public.gone" in gone[0][3], gone
        assert one(c, "SELECT to_regclass('gone')") is None
        assert one(c, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'later'") == 0
        assert steps[-1][:3] == ("check", None, "differences remain"), steps


def test_a_view_whose_owner_was_dropped_does_not_come_back_as_someone_else(cluster, base):
    """undrop() re-creates the views dropped with a table as their owners: a view whose
    owner was dropped since is not restored (as the table's owner it would read with
    rights its author never had) and is listed as NOT restored."""
    with cluster.connect(base) as c:
        c.execute("CREATE ROLE view_maker")
        c.execute("CREATE TABLE vt (id int); INSERT INTO vt VALUES (1)")
        c.execute("CREATE VIEW vt_v AS SELECT id FROM vt")
        c.execute("ALTER VIEW vt_v OWNER TO view_maker")
        c.execute("GRANT SELECT ON vt_v TO PUBLIC")
        contract(c, "drop vt", ["public.vt", "view public.vt_v", "role view_maker"])
        c.execute("DROP TABLE vt CASCADE")
        c.execute("DROP ROLE view_maker")
        rid = one(c, "SELECT max(id) FROM migsafe.recycle_bin")
        result = one(c, "SELECT migsafe.undrop(%s)", (rid,))
        assert "NOT restored" in result and "its owner view_maker no longer exists" in result, result
        assert one(c, "SELECT to_regclass('vt_v')") is None
        assert one(c, "SELECT count(*) FROM vt") == 1


def test_failed_rollback_changes_nothing(cluster, base):
    with cluster.connect(base) as c:
        sid = one(c, "SELECT migsafe.snapshot()")
        contract(c, "drop users", USERS_CASCADE)
        c.execute("DROP TABLE users CASCADE")
        c.execute("SELECT migsafe.purge('0')")             # no copy left: comes back empty
        c.execute("CREATE TABLE blocker (id int)")
        c.execute("INSERT INTO orders (user_id, total) VALUES (99, 1)")  # FK to the empty users will fail
        dry = c.execute("SELECT action, status, detail FROM migsafe.rollback(%s)", (sid,)).fetchall()
        assert dry[-1][1] == "would fail" and "foreign key" in dry[-1][2], dry
        r = run(c, f"SELECT * FROM migsafe.rollback({sid}, dry_run => false, force => true)")
        assert r.sqlstate == "23503", r
        assert one(c, "SELECT to_regclass('users')") is None     # all or nothing
        assert one(c, "SELECT to_regclass('blocker') IS NOT NULL")


def test_quoting_of_awkward_names(cluster):
    db = new_db(cluster, owner="postgres")
    with cluster.connect(db) as c:
        c.execute('CREATE SCHEMA "My Schema"')
        c.execute('CREATE TABLE "My Schema"."Ünïcødé Tbl" ("we""ird" int PRIMARY KEY, "select" text, "Space Col" int)')
        c.execute('INSERT INTO "My Schema"."Ünïcødé Tbl" VALUES (1, \'a\', 2)')
        sid = one(c, "SELECT migsafe.snapshot()")
        c.execute('CREATE INDEX "Idx ""q""" ON "My Schema"."Ünïcødé Tbl" ("Space Col")')
        c.execute('CREATE VIEW "My Schema"."V w" AS SELECT "we""ird" FROM "My Schema"."Ünïcødé Tbl"')
        c.execute('ALTER TABLE "My Schema"."Ünïcødé Tbl" ADD COLUMN "ÄÖ ""x""" int')
        contract(c, "drop col", ['"My Schema"."Ünïcødé Tbl"."select"'])
        c.execute('ALTER TABLE "My Schema"."Ünïcødé Tbl" DROP COLUMN "select"')
        script = one(c, "SELECT migsafe.rollback_sql(%s)", (sid,))
        assert 'DROP INDEX "My Schema"."Idx ""q"""' in script, script
        assert 'DROP VIEW "My Schema"."V w"' in script, script
        assert 'DROP COLUMN "ÄÖ ""x"""' in script, script
        assert 'ADD COLUMN "select" text' in script, script
        c.execute("SELECT * FROM migsafe.rollback(%s, dry_run => false)", (sid,))
        assert [r for r in diff_rows(c, sid) if r[0] != "column order"] == []
        assert c.execute('SELECT "select" FROM "My Schema"."Ünïcødé Tbl"').fetchall() == [("a",)]


def test_additive_rollback_leaves_pg_dump_byte_identical(cluster, base):
    before = dump(cluster, base)
    with cluster.connect(base) as c:
        sid = one(c, "SELECT migsafe.snapshot()")
        apply(c, 'ALTER TABLE "orders" ADD COLUMN "shipped_at" timestamp with time zone;'
                 "--> statement-breakpoint\n"
                 'CREATE TYPE "status" AS ENUM (\'new\', \'done\');--> statement-breakpoint\n'
                 'CREATE TABLE "more" ("id" serial PRIMARY KEY, "t" text DEFAULT \'x\', "s" "status", '
                 '"user_id" integer REFERENCES "users"("id"));--> statement-breakpoint\n'
                 'CREATE INDEX "more_t" ON "more" ("t");--> statement-breakpoint\n'
                 'CREATE VIEW "more_v" AS SELECT "id" FROM "more";--> statement-breakpoint\n'
                 "COMMENT ON COLUMN users.email IS 'login';--> statement-breakpoint\n"
                 "GRANT SELECT ON users TO PUBLIC")
        assert dump(cluster, base) != before
        steps = c.execute("SELECT status FROM migsafe.rollback(%s, dry_run => false)", (sid,)).fetchall()
        assert steps[-1][0] == "ok", steps
    assert dump(cluster, base) == before


# ------------------------------------------------------------------- drizzle, each step

def drizzle_steps():
    import json
    with open(os.path.join(DZ_MIGRATIONS, "meta", "_journal.json")) as f:
        return [e["tag"] for e in json.load(f)["entries"]]


def test_every_drizzle_step_rolls_back(cluster):
    """Each step of the Drizzle project, applied the way drizzle-kit applies it (one
    transaction), then rolled back with the automatic snapshot the audit log points to
    and with a manual snapshot: the schema is the one before the step."""
    db = new_db(cluster, owner="postgres")
    steps = drizzle_steps()
    assert len(steps) >= 6
    with cluster.connect(db) as c:
        for tag in steps:
            sql = open(os.path.join(DZ_MIGRATIONS, tag + ".sql")).read()
            manual = one(c, "SELECT migsafe.snapshot(%s)", (tag,))
            # What the destructive steps drop or rename (see test_drizzle.py).
            objects = {"0004_destructive": ["public.sessions", "public.users.legacy_email"],
                       "0005_rename-name": ["public.users.name"]}.get(tag, [])
            if objects:
                contract(c, tag, objects)
            apply(c, sql, name=tag)
            if objects:
                c.execute("SELECT migsafe.end_phase()")
            # The audit log's migration row points to the automatic snapshot.
            deadline = time.time() + 20
            auto = None
            while time.time() < deadline and auto is None:
                auto = one(c, "SELECT snapshot FROM migsafe.migrations WHERE name = %s", (tag,))
                time.sleep(0.1)
            assert auto is not None, tag
            assert diff_rows(c, manual) != [], tag
            steps_ = c.execute("SELECT action, status FROM migsafe.rollback(%s, dry_run => false, force => true)",
                               (auto,)).fetchall()
            left = [r for r in diff_rows(c, manual) if r[0] != "column order"]
            if "ADD VALUE" in sql:
                # PostgreSQL cannot remove an enum label: reported, and the only difference.
                assert ("cannot_revert", "cannot revert") in steps_, (tag, steps_)
                assert [r[0] for r in left] == ["enum"], (tag, left)
                continue
            assert steps_[-1] == ("check", "ok"), (tag, steps_)
            assert left == [], (tag, left)
            # Move on: apply the step for real for the next one.
            if objects:
                contract(c, tag + " again", objects)
            apply(c, sql)
            if objects:
                c.execute("SELECT migsafe.end_phase()")


# --------------------------------------------------------------- automatic snapshots

def test_auto_snapshot_covers_what_the_migration_touched(cluster, base):
    with cluster.connect(base) as c:
        apply(c, "ALTER TABLE users ADD COLUMN x int;--> statement-breakpoint\n"
                 "CREATE TABLE fresh (id int);--> statement-breakpoint\nALTER TABLE users ADD COLUMN y int", name="m1")
        deadline = time.time() + 20
        sid = None
        while time.time() < deadline and sid is None:
            sid = one(c, "SELECT snapshot FROM migsafe.migrations WHERE name = 'm1'")
            time.sleep(0.1)
        assert sid is not None
        kind, complete, covers = c.execute("SELECT kind, complete, covers FROM migsafe.snapshots WHERE id = %s",
                                           (sid,)).fetchone()
        assert kind == "auto" and complete is False
        assert covers == ["public.fresh", "public.users"], covers
        assert {r[1] for r in diff_rows(c, sid)} == {'"public"."users"."x"', '"public"."users"."y"', '"public"."fresh"'}
        # A migration that rolls back keeps no snapshot.
        c.execute("BEGIN")
        c.execute("SELECT migsafe.set_migration_name('m2')")
        c.execute("ALTER TABLE users ADD COLUMN z int")
        c.execute("ROLLBACK")
        time.sleep(1)
        row = c.execute("SELECT outcome, snapshot FROM migsafe.migrations WHERE name = 'm2'").fetchone()
        assert row == ("rolled_back", None), row


def test_auto_snapshot_off(cluster, base):
    cluster.configure(migsafe__auto_snapshot="off")
    try:
        with cluster.connect(base) as c:
            n = one(c, "SELECT count(*) FROM migsafe.snapshot")
            c.execute("ALTER TABLE users ADD COLUMN x int")
            assert one(c, "SELECT count(*) FROM migsafe.snapshot") == n
    finally:
        cluster.configure(migsafe__auto_snapshot=None)


# ------------------------------------------------------------------------------ verify

def test_verify_finds_what_a_deploy_gate_needs(cluster, base):
    with cluster.connect(base) as c:
        sid = one(c, "SELECT migsafe.snapshot()")
        assert one(c, "SELECT migsafe.verify_ok(%s)", (sid,)) is True
        c.execute("ALTER TABLE orders ADD CONSTRAINT pos CHECK (total > 0) NOT VALID")
        assert one(c, "SELECT migsafe.verify_ok(%s)", (sid,)) is True
        assert one(c, "SELECT migsafe.verify_ok(%s, strict => true)", (sid,)) is False
        c.execute("INSERT INTO users (id, email) VALUES (500, 'manual@x')")   # serial now behind
        rows = c.execute("SELECT check_name, object, status, detail FROM migsafe.verify(%s)", (sid,)).fetchall()
        checks = {(r[0], r[2]) for r in rows}
        assert ("sequence behind its column", "fail") in checks, rows
        assert ("constraint not validated", "warn") in checks, rows
        assert (f"changed since snapshot {sid}", "info") in checks, rows
        assert rows[-1][0] == "summary" and rows[-1][2] == "fail"
        assert one(c, "SELECT migsafe.verify_ok(%s)", (sid,)) is False
        c.execute("SELECT setval('users_id_seq', 500)")
        # A failed CREATE INDEX CONCURRENTLY leaves an invalid index.
        c.execute("INSERT INTO users (email) VALUES ('dup@x')")
        c.execute("ALTER TABLE users ADD COLUMN code int DEFAULT 1")
        r = run(c, "CREATE UNIQUE INDEX CONCURRENTLY users_code_key ON users (code)")
        assert r.sqlstate == "23505", r
        rows = c.execute("SELECT check_name, object, status FROM migsafe.verify()").fetchall()
        assert ("invalid index", "public.users_code_key", "fail") in rows, rows


# ------------------------------------------------------------------------------ dry run

def test_dry_run_reports_and_keeps_nothing(cluster, base):
    with cluster.connect(base) as c:
        migration = ('CREATE TABLE "shipments" ("id" serial PRIMARY KEY, "order_id" bigint);\n'
                     "--> statement-breakpoint\n"
                     'ALTER TABLE "orders" ALTER COLUMN "user_id" TYPE bigint;--> statement-breakpoint\n'
                     'CREATE INDEX CONCURRENTLY "ship_idx" ON "shipments" ("order_id");--> statement-breakpoint\n'
                     'ALTER TABLE "users" ADD COLUMN "age" int')
        rows = c.execute("SELECT step, statement, outcome, findings, locks, rewritten, duration_ms, detail, changes "
                         "FROM migsafe.dry_run(%s) ORDER BY step", (migration,)).fetchall()
        assert [r[2] for r in rows] == ["ok", "ok", "ok", "ok", "would succeed"], rows
        assert rows[0][1].startswith('CREATE TABLE "shipments"')
        assert rows[1][1].startswith('ALTER TABLE "orders"')     # no breakpoint comment in front
        assert "orders: AccessExclusiveLock" in rows[1][4]
        assert rows[1][5] == ["orders"]                          # the type change rewrote it
        assert rows[3][5] == []                                  # ADD COLUMN does not
        assert any(f["rule_id"] == "alter-column-type-rewrite" for f in rows[1][3]), rows[1][3]
        assert "cannot run inside a transaction block" in rows[2][7]
        assert "Replayed here without CONCURRENTLY" in rows[2][7]
        assert rows[2][4] == []                                  # not the plain form's locks
        assert all(r[6] is not None for r in rows if r[2] == "ok")
        changes = {(ch["kind"], ch["identity"], ch["action"]) for ch in rows[-1][8]}
        assert ("table", '"public"."shipments"', "added") in changes
        assert ("column", '"public"."users"."age"', "added") in changes
        assert ("index", '"public"."ship_idx"', "added") in changes
        assert one(c, "SELECT to_regclass('shipments')") is None
        assert one(c, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'age'") == 0


def test_dry_run_judges_what_follows_a_concurrent_statement_as_if_it_had_run(cluster, base):
    # The expand recipe for a unique key: build the index concurrently, then attach it.
    # Run in one transaction, the first statement cannot run; replayed in its plain
    # form, the second finds the index, as it will in the real run.
    with cluster.connect(base) as c:
        c.execute("CREATE TABLE events (id int, at date) PARTITION BY RANGE (at)")
        c.execute("CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
        before = one(c, "SHOW client_min_messages")
        cases = [
            ("CREATE UNIQUE INDEX CONCURRENTLY users_name_key ON users (name);\n"
             "ALTER TABLE users ADD CONSTRAINT users_name_uq UNIQUE USING INDEX users_name_key",
             ["ok", "ok", "would succeed"]),
            ("DROP INDEX CONCURRENTLY orders_user_idx;\nCREATE INDEX orders_user_idx ON orders (user_id, id)",
             ["ok", "ok", "would succeed"]),
            ("REINDEX (CONCURRENTLY) TABLE orders;\nREINDEX TABLE CONCURRENTLY users",
             ["ok", "ok", "would succeed"]),
            # The plain DETACH needs an approval the concurrent one does not: not replayed,
            # and what follows runs on the table as it is.
            ("ALTER TABLE events DETACH PARTITION events_2024 CONCURRENTLY;\nALTER TABLE users ADD COLUMN y int",
             ["not run", "ok", "would succeed"]),
            # Not a CONCURRENTLY form: nothing to replay, the statement is reported as such.
            ("VACUUM users;\nALTER TABLE users ADD COLUMN z int", ["not run", "ok", "would succeed"]),
            ("REINDEX SCHEMA CONCURRENTLY public", ["not run", "would succeed"]),
            # A replay that fails is the migration failing, as a real run would.
            ("CREATE UNIQUE INDEX CONCURRENTLY orders_user_key ON orders (note);\n"
             "INSERT INTO orders (user_id, total, note) VALUES (1, 1, 'note 1')",
             ["ok", "error", "would fail"]),
        ]
        for sql, outcomes in cases:
            rows = c.execute("SELECT outcome, detail FROM migsafe.dry_run(%s) ORDER BY step", (sql,)).fetchall()
            assert [r[0] for r in rows] == outcomes, (sql, rows)
        # Everything was rolled back, the replays included, and the session is as it was.
        assert one(c, "SELECT to_regclass('users_name_key')") is None
        assert one(c, "SELECT indexdef FROM pg_indexes WHERE indexname = 'orders_user_idx'") \
            == "CREATE INDEX orders_user_idx ON public.orders USING btree (user_id)"
        assert one(c, "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'events_2024'::regclass") == 1
        assert one(c, "SHOW client_min_messages") == before


def test_the_plain_form_of_a_concurrent_statement(cluster, base):
    # migsafe._in_transaction_form() only writes text; the dry run EXECUTEs it as the
    # caller, through the guard. The keyword is found by PostgreSQL's scanner (never in
    # a string, a comment or a quoted name) and the text is proven by parsing it.
    cases = {
        "CREATE INDEX CONCURRENTLY i ON users (name)": "CREATE INDEX  i ON users (name)",
        'create unique index concurrently "concurrently" on users ("concurrently")':
            'create unique index  "concurrently" on users ("concurrently")',
        "CREATE INDEX CONCURRENTLY i ON users (name) WHERE name <> 'CONCURRENTLY' /* concurrently */":
            "CREATE INDEX  i ON users (name) WHERE name <> 'CONCURRENTLY' /* concurrently */",
        "DROP INDEX CONCURRENTLY IF EXISTS orders_user_idx": "DROP INDEX  IF EXISTS orders_user_idx",
        "REINDEX TABLE CONCURRENTLY users": "REINDEX TABLE  users",
        "REINDEX (CONCURRENTLY) INDEX orders_user_idx": "REINDEX (CONCURRENTLY false) INDEX orders_user_idx",
        "REINDEX (VERBOSE, CONCURRENTLY true) TABLE users": None,   # no plain form by taking it out
        # The plain DETACH needs an approval the concurrent one does not: not replayed.
        "ALTER TABLE events DETACH PARTITION events_2024 CONCURRENTLY": None,
        # Not a CONCURRENTLY form, or not only one: nothing.
        "REINDEX SCHEMA CONCURRENTLY public": None,
        "REINDEX (CONCURRENTLY false) TABLE users": None,
        "CREATE INDEX i ON users (name)": None,
        "VACUUM users": None,
        "DROP TABLE users": None,
        "CREATE INDEX CONCURRENTLY i ON users (name); DROP TABLE users": None,
        "": None,
    }
    with cluster.connect(base) as c:
        for sql, plain in cases.items():
            assert one(c, "SELECT migsafe._in_transaction_form(%s)", (sql,)) == plain, sql
    with cluster.connect() as c:
        run(c, "CREATE ROLE replay_app LOGIN")
    with cluster.connect(base) as c:
        c.execute("GRANT SELECT ON users TO replay_app")
    with cluster.connect(base, "replay_app") as c:
        # A dry run can do nothing its caller could not: the plain form runs as them.
        rows = c.execute("SELECT outcome, detail FROM migsafe.dry_run('CREATE INDEX CONCURRENTLY x ON users (name)')"
                         ).fetchall()
        assert rows[0][0] == "error" and "must be owner" in rows[0][1], rows
    with cluster.connect(base) as c:
        # ... and the guard judges it: it cannot reach pg_migsafe's own.
        rows = c.execute("SELECT outcome, detail FROM migsafe.dry_run("
                         "'CREATE INDEX CONCURRENTLY x ON migsafe.audit_log (id)')").fetchall()
        assert rows[0][0] == "refused" and "protect-schema" in rows[0][1], rows
        assert one(c, "SELECT count(*) FROM pg_indexes WHERE indexname = 'x'") == 0


def test_dry_run_stops_at_a_refusal_like_a_real_run(cluster, base):
    with cluster.connect(base) as c:
        rows = c.execute("SELECT outcome, detail FROM migsafe.dry_run(%s) ORDER BY step",
                         ("ALTER TABLE users ADD COLUMN a int; ALTER TABLE users DROP COLUMN name; "
                          "ALTER TABLE users ADD COLUMN b int",)).fetchall()
        assert [r[0] for r in rows] == ["ok", "refused", "not run", "would fail"], rows
        assert "MS001" in rows[1][1] and "drop-column" in rows[1][1]
        assert one(c, "SELECT count(*) FROM information_schema.columns WHERE column_name IN ('a', 'b')") == 0
