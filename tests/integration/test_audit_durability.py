"""The audit log loses nothing at any scale (issue #11): more databases than rings and
worker processes, a full ring, a writer or backend killed with SIGKILL, a writer that
died holding backlog files. Every statement a client ran reaches its database's
`migsafe.audit_log` exactly once, and the server log is never where a record ends up."""
import json
import os
import signal
import threading
import time
from collections import Counter

import psycopg
import pytest

from conftest import REFUSED, run
from pgcluster import Cluster
from test_audit import settle, statements, verify, wait_for

FALLBACK = "pg_migsafe_audit_fallback"


def fallback_count(c, db):
    with c.connect(db) as conn:
        return conn.execute("SELECT fallback FROM migsafe._queue_stats()").fetchone()[0]


def dboid(c, db):
    with c.connect() as conn:
        return conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (db,)).fetchone()[0]


def backlog_files(c, db):
    d = os.path.join(c.data, "pg_migsafe", "backlog", str(dboid(c, db)))
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def exactly_once(texts, want):
    diff = (Counter(texts) - Counter(want), Counter(want) - Counter(texts))
    assert diff == (Counter(), Counter()), [(k[:50], v) for d in diff for k, v in d.items()][:10]


@pytest.fixture(scope="module")
def small():
    """Two rings, one writer process at a time (of three worker processes, pg_migsafe's
    launcher and PostgreSQL's logical replication launcher take two; parallel query
    none): far fewer than the databases below."""
    c = Cluster("durable", settings={
        "migsafe.audit_databases": "2", "migsafe.audit_queue_size": "'256kB'",
        "max_worker_processes": "3", "max_parallel_workers": "0",
        "migsafe.audit_worker_idle": "1",
        # What committed before a crash must survive it (the harness turns this off).
        "synchronous_commit": "on"})
    with c.connect() as conn:
        conn.execute("CREATE ROLE app_owner LOGIN CREATEDB")
    yield c
    c.destroy()


def test_more_databases_than_rings_and_writers_lose_nothing(small):
    """Six databases run DDL at once with two rings and one writer process: the
    databases without a ring queue on disk, writers take turns, and every database's
    statements reach its own table."""
    c = small
    dbs = [c.createdb(f"many{k}", owner="app_owner") for k in range(6)]
    mark = len(c.log_text())
    per = 60
    errors = []

    def session(k, db):
        try:
            with c.connect(db, user="app_owner") as conn:
                for i in range(per):
                    conn.execute(f"CREATE TABLE t{k}_{i} (id int)")
                    if i % 10 == 0:
                        assert run(conn, f"DROP TABLE t{k}_{i}").sqlstate == REFUSED
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=session, args=(k, db)) for k, db in enumerate(dbs)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors, errors
    for k, db in enumerate(dbs):
        rows = settle(c, db, per + per // 10, timeout=90)
        want = [f"CREATE TABLE t{k}_{i} (id int)" for i in range(per)] + \
               [f"DROP TABLE t{k}_{i}" for i in range(0, per, 10)]
        exactly_once([r["statement"] for r in rows], want)
        assert all(r["database"] == db for r in rows)
        assert verify(c, db)[0] is True
    # Nothing went to the server log; the backlogs are empty again.
    assert FALLBACK not in c.log_text()[mark:]
    wait_for(lambda: all(not backlog_files(c, db) for db in dbs), 30, "empty backlogs")


def test_a_full_ring_spills_to_disk_at_once_and_loses_nothing(small):
    """An auditor's lock holds the writer back: the ring fills, the records go to the
    backlog (no waiting, nothing in the server log) and reach the table once the lock
    is released."""
    c = small
    db = c.createdb("fullq", owner="app_owner")
    with c.connect(db, user="app_owner") as conn:
        conn.execute("CREATE TABLE q0 (id int)")
    settle(c, db, 1)
    fb = fallback_count(c, db)
    mark = len(c.log_text())
    locker = c.connect(db, autocommit=False)
    locker.execute("LOCK TABLE migsafe.audit_log IN ACCESS EXCLUSIVE MODE")
    pad = "x" * 2000
    n = 200  # ~2 kB each: more than the 128 kB this database's ring holds
    with c.connect(db, user="app_owner") as conn:
        for i in range(n):
            conn.execute(f"CREATE TABLE q{i + 1} (id int); COMMENT ON TABLE q{i + 1} IS '{pad}'")
    assert backlog_files(c, db), "nothing was spilled to the backlog"
    locker.rollback()
    locker.close()
    rows = settle(c, db, 2 * n + 1, timeout=60)
    want = ["CREATE TABLE q0 (id int)"] + [s for i in range(n) for s in (
        f"CREATE TABLE q{i + 1} (id int)", f"COMMENT ON TABLE q{i + 1} IS '{pad}'")]
    exactly_once([r["statement"] for r in rows], want)
    assert fallback_count(c, db) == fb
    assert FALLBACK not in c.log_text()[mark:]
    assert verify(c, db)[0] is True


def wait_restarted(c, db, mark, timeout=60):
    """Waits for the crash restart that a SIGKILL after log position `mark` causes:
    the postmaster reinitialises, then accepts connections again."""
    def up():
        text = c.log_text()[mark:]
        i = text.find("all server processes terminated; reinitializing")
        if i < 0 or "database system is ready to accept connections" not in text[i:]:
            return False
        try:
            with c.connect(db) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False
    wait_for(up, timeout, "the cluster back after the crash restart")


def writer_pid(c, db):
    with c.connect() as conn:
        r = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s "
                         "AND backend_type = 'pg_migsafe audit writer'", (db,)).fetchone()
        return r and r[0]


def test_a_refused_statement_survives_a_sigkill_of_the_writer(small):
    """The writer is held back (its records are only in shared memory and the spool
    files) and killed: the crash restart wipes shared memory, the spool files bring
    back every statement the clients saw, each once."""
    c = small
    db = c.createdb("killw", owner="app_owner")
    with c.connect(db, user="app_owner") as conn:
        conn.execute("CREATE TABLE keep (id int)")
    settle(c, db, 1)
    locker = c.connect(db, autocommit=False)
    locker.execute("LOCK TABLE migsafe.audit_log IN ACCESS EXCLUSIVE MODE")
    with c.connect(db, user="app_owner") as conn:
        assert run(conn, "DROP TABLE keep").sqlstate == REFUSED
        conn.execute("CREATE TABLE after_refusal (id int)")
        tx = c.connect(db, user="app_owner", autocommit=False)
        tx.execute("CREATE TABLE in_open_tx (id int)")
    pid = wait_for(lambda: writer_pid(c, db), 10, "the writer")
    mark = len(c.log_text())
    os.kill(pid, signal.SIGKILL)
    for conn in (locker, tx):
        try:
            conn.close()
        except psycopg.Error:
            pass
    wait_restarted(c, db, mark)
    rows = settle(c, db, 4, timeout=60)
    exactly_once([r["statement"] for r in rows], [
        "CREATE TABLE keep (id int)", "DROP TABLE keep", "CREATE TABLE after_refusal (id int)",
        "CREATE TABLE in_open_tx (id int)"])
    [refused] = [r for r in rows if r["statement"] == "DROP TABLE keep"]
    assert refused["decision"] == "refused" and refused["sqlstate"] == REFUSED
    # The open transaction's migration never finished; the others are complete.
    [open_tx] = [r for r in rows if r["statement"] == "CREATE TABLE in_open_tx (id int)"]
    with c.connect(db) as conn:
        out = dict(conn.execute("SELECT migration, outcome FROM migsafe.migrations").fetchall())
    assert out[open_tx["migration"]] == "never_finished", out
    assert out[refused["migration"]] == "rolled_back", out
    assert verify(c, db)[0] is True


def test_a_backend_killed_mid_migration_leaves_its_statements(small):
    """SIGKILL of a backend in the middle of a migration: its statements so far, not
    only its start, are in the log, with the migration never finished."""
    c = small
    db = c.createdb("killb", owner="app_owner")
    conn = c.connect(db, user="app_owner", autocommit=False)
    for i in range(5):
        conn.execute(f"CREATE TABLE k{i} (id int)")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    # The writer must not have stored them: hold it back, then kill.
    locker = c.connect(db, autocommit=False)
    locker.execute("LOCK TABLE migsafe.audit_log IN ACCESS EXCLUSIVE MODE")
    mark = len(c.log_text())
    os.kill(pid, signal.SIGKILL)
    for x in (conn, locker):
        try:
            x.close()
        except psycopg.Error:
            pass
    wait_restarted(c, db, mark)
    rows = settle(c, db, 5, timeout=60)
    exactly_once([r["statement"] for r in rows], [f"CREATE TABLE k{i} (id int)" for i in range(5)])
    [m] = wait_for(lambda: (lambda m: m or None)(
        [m for m in statements_migrations(c, db) if m["outcome"] == "never_finished"]), 30, "never_finished")
    assert m["statements"] == 5 and m["pid"] == pid
    assert verify(c, db)[0] is True


def statements_migrations(c, db):
    with c.connect(db) as conn:
        conn.row_factory = psycopg.rows.dict_row
        return conn.execute("SELECT * FROM migsafe.migrations").fetchall()


def test_a_backlog_file_left_by_a_dead_writer_is_stored_once(small):
    """A writer that dies after storing a backlog file's records but before removing it
    leaves a `.taken` file: the next writer stores only what the log lacks."""
    c = small
    db = c.createdb("leftover", owner="app_owner")
    with c.connect(db, user="app_owner") as conn:
        conn.execute("CREATE TABLE a (id int)")
        conn.execute("CREATE TABLE b (id int)")
    rows = settle(c, db, 2)
    with c.connect(db) as conn:
        stored = [r[0] for r in conn.execute(
            "SELECT record::text FROM migsafe.audit_log WHERE kind = 'statement' ORDER BY seq")]
    # One record already stored, one the log lacks (the same statement renumbered).
    fresh = json.loads(stored[1])
    fresh["n"] = 99
    fresh["statement"] = "CREATE TABLE c (id int)"
    fresh_text = json.dumps(fresh, separators=(",", ":"))
    d = os.path.join(c.data, "pg_migsafe", "backlog", str(dboid(c, db)))
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "1-1.taken")
    with open(path, "w") as f:
        for t in (stored[0], fresh_text):
            f.write(f"{len(t.encode())} {t}\n")
    os.chown(d, *_pg_ids())
    os.chown(path, *_pg_ids())
    # Any later record wakes the writer (the launcher would start one within a second).
    with c.connect(db, user="app_owner") as conn:
        conn.execute("CREATE TABLE d (id int)")
    rows = settle(c, db, 4, timeout=30)
    exactly_once([r["statement"] for r in rows], [
        "CREATE TABLE a (id int)", "CREATE TABLE b (id int)", "CREATE TABLE c (id int)",
        "CREATE TABLE d (id int)"])
    wait_for(lambda: not os.path.exists(path), 10, "the leftover file removed")
    assert verify(c, db)[0] is True


def _pg_ids():
    import pwd
    p = pwd.getpwnam("postgres")
    return p.pw_uid, p.pw_gid
