"""pg_migsafe leaves no trace in what a user's session sees (issue #11): DDL in a READ
ONLY transaction gets PostgreSQL's own read-only error (no automatic snapshot, recycle
bin or phase bookkeeping is attempted), DROP TABLE of a view keeps PostgreSQL's message
and hint, lastval() stays the user's, the automatic snapshot holds no lock in the
user's transaction and gives way to concurrent DDL — in warn and in enforce mode."""
import threading
import time

import pytest

from conftest import new_db, run


@pytest.fixture(params=["enforce", "warn"])
def any_cluster(request):
    return request.getfixturevalue("cluster" if request.param == "enforce" else "warn_cluster")


def test_ddl_in_a_read_only_transaction_gets_postgresqls_error(any_cluster):
    db = new_db(any_cluster)
    with any_cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE ro (id int)")
        c.execute("INSERT INTO ro VALUES (1)")
    for begin in (["BEGIN READ ONLY"], ["SET default_transaction_read_only = on", "BEGIN"]):
        with any_cluster.connect(db, user="app_owner") as c:
            for b in begin:
                c.execute(b)
            r = run(c, "ALTER TABLE ro ADD COLUMN extra int")
            assert r.sqlstate == "25006", r
            assert r.message == "cannot execute ALTER TABLE in a read-only transaction", r
            c.execute("ROLLBACK")
            c.execute("BEGIN READ ONLY")
            r = run(c, "CREATE TABLE ro2 (id int)")
            assert (r.sqlstate, r.message) == ("25006", "cannot execute CREATE TABLE in a read-only transaction"), r
            c.execute("ROLLBACK")


def test_drop_table_of_a_view_keeps_postgresqls_hint(any_cluster, request):
    db = new_db(any_cluster)
    # In enforce mode a list that also names a real table is refused for that table.
    mixed = [("DROP TABLE v, base", "table")] if "warn" in request.node.name else []
    with any_cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE base (id int)")
        c.execute("CREATE VIEW v AS SELECT id FROM base")
        c.execute("CREATE SEQUENCE s")
        for sql, kind in (("DROP TABLE v", "table"), ("DROP TABLE IF EXISTS v", "table"),
                          ("DROP VIEW base", "view"), ("DROP SEQUENCE base", "sequence"),
                          *mixed):
            r = run(c, sql)
            assert r.sqlstate == "42809", (sql, r)
            assert r.message == f'"{"base" if kind != "table" else "v"}" is not a {kind}', (sql, r)
            assert (r.error.diag.message_hint or "").startswith("Use DROP "), (sql, r)
        # Nothing was dropped.
        assert c.execute("SELECT count(*) FROM pg_class WHERE relname IN ('base', 'v', 's')").fetchone()[0] == 3


def test_lastval_stays_the_users_after_ddl(any_cluster):
    """The automatic snapshot's id comes from pg_migsafe's counter, not a sequence."""
    db = new_db(any_cluster)
    with any_cluster.connect(db, user="app_owner") as c:
        # A session that never called nextval(): still none after DDL.
        c.execute("CREATE TABLE lv (id int GENERATED ALWAYS AS IDENTITY, v text)")
        r = run(c, "SELECT lastval()")
        assert (r.sqlstate, r.message) == ("55000", "lastval is not yet defined in this session"), r
        c.execute("INSERT INTO lv (v) VALUES ('a')")
        c.execute("ALTER TABLE lv ADD COLUMN extra int")
        assert c.execute("SELECT lastval()").fetchone()[0] == 1
        c.execute("BEGIN")
        c.execute("INSERT INTO lv (v) VALUES ('b')")
        c.execute("ALTER TABLE lv ADD COLUMN more int")
        c.execute("CREATE INDEX ON lv (v)")
        assert c.execute("SELECT lastval()").fetchone()[0] == 2
        c.execute("COMMIT")
        assert c.execute("SELECT lastval()").fetchone()[0] == 2
    # The snapshots were taken all the same, each migration pointing to its own.
    with any_cluster.connect(db) as c:
        snaps = c.execute("SELECT id FROM migsafe.snapshot WHERE kind = 'auto' ORDER BY id").fetchall()
        assert len(snaps) == 3, snaps
        manual = c.execute("SELECT migsafe.snapshot('manual')").fetchone()[0]
        assert manual > snaps[-1][0]


def test_the_automatic_snapshot_holds_no_lock_in_the_users_transaction(any_cluster):
    db = new_db(any_cluster)
    with any_cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE lk (id int)")
        c.execute("CREATE VIEW lkv AS SELECT id FROM lk")
        c.execute("BEGIN")
        c.execute("ALTER TABLE lk ADD COLUMN note text")
        c.execute("CREATE OR REPLACE VIEW lkv AS SELECT id, note FROM lk")
        locks = [r[0] for r in c.execute(
            "SELECT relation::regclass::text FROM pg_locks WHERE pid = pg_backend_pid() "
            "AND locktype = 'relation' AND relation IS NOT NULL").fetchall()]
        assert not [l for l in locks if l.startswith("migsafe.") or "snapshot" in l], locks
        c.execute("COMMIT")
    with any_cluster.connect(db) as c:
        [(sid, complete)] = c.execute("SELECT id, complete FROM migsafe.snapshot WHERE kind = 'auto' "
                                      "AND taken_at > now() - interval '1 minute' ORDER BY id DESC LIMIT 1").fetchall()
        parts = c.execute("SELECT count(*) FROM migsafe.snapshot_part WHERE snapshot_id = %s", (sid,)).fetchone()[0]
        assert parts >= 1


def test_the_automatic_snapshot_gives_way_to_concurrent_ddl(warn_cluster):
    """A statement whose snapshot reads everything (its reach is not known exactly)
    meets a view another session is dropping: it waits as the statement itself would
    (letting go of its locks between short waits), and succeeds once the drop
    commits (its read is tried again with a fresh snapshot, which no longer has the
    view) — before, it failed with "could not open relation with OID …"."""
    db = new_db(warn_cluster)
    with warn_cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE cz (a int)")
        c.execute("CREATE VIEW czv AS SELECT * FROM cz")
        c.execute("CREATE INDEX czi ON cz (a)")
    dropper = warn_cluster.connect(db, user="app_owner", autocommit=False)
    dropper.execute("DROP VIEW czv")  # ACCESS EXCLUSIVE on the view until commit
    done = {}

    def other():
        with warn_cluster.connect(db, user="app_owner") as c2:
            done["r"] = run(c2, "COMMENT ON INDEX czi IS 'x'")

    t = threading.Thread(target=other)
    t.start()
    time.sleep(1.5)  # longer than deadlock_timeout
    assert t.is_alive(), done
    dropper.commit()
    dropper.close()
    t.join(20)
    assert not t.is_alive() and done["r"].ok, done
    with warn_cluster.connect(db) as c:
        assert c.execute("SELECT obj_description('czi'::regclass)").fetchone()[0] == "x"
