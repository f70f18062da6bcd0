"""Lock retries in the server (migsafe.lock_retry_budget): DDL that cannot get its table
lock within migsafe.lock_timeout lets go of the lock queue, pauses and tries again,
for every client, with real contention from other sessions. See docs/lock-retries.md."""
import threading
import time

import psycopg
import pytest

from conftest import new_db, run
from test_audit import settle, wait_for


@pytest.fixture
def retries(cluster):
    """Short lock_timeout and budget, so that the tests take seconds."""
    def configure(lock_timeout="300ms", budget="10s", **more):
        cluster.configure(migsafe__lock_timeout=f"'{lock_timeout}'",
                          migsafe__lock_retry_budget=f"'{budget}'", **more)
    yield configure
    cluster.configure(migsafe__lock_timeout=None, migsafe__lock_retry_budget=None,
                      migsafe__cancel_blockers_after=None, migsafe__alert_after=None)


def busy_table(cluster, name="busy"):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute(f"CREATE TABLE {name} (id int); INSERT INTO {name} VALUES (1)")
        c.execute(f"GRANT ALL ON {name} TO app_user")
    return db


def hold(cluster, db, sql="INSERT INTO busy VALUES (2)", user="app_user", release_after=None):
    """A session that runs `sql` and stays idle in transaction (its locks held),
    rolled back after `release_after` seconds when given."""
    c = cluster.connect(db, user=user, autocommit=False)
    c.execute(sql)
    if release_after is not None:
        threading.Timer(release_after, c.rollback).start()
    return c


def metric(cluster, db, name):
    with cluster.connect(db) as c:
        return c.execute("SELECT value FROM migsafe.metrics WHERE metric = %s", (name,)).fetchone()[0]


def test_ddl_behind_a_short_blocker_succeeds_on_a_later_attempt(cluster, retries):
    retries(lock_timeout="300ms", budget="10s")
    db = busy_table(cluster)
    blocker = hold(cluster, db, release_after=2.0)
    bpid = blocker.info.backend_pid
    with cluster.connect(db, user="app_owner") as c:
        t0 = time.time()
        c.execute("ALTER TABLE busy ADD COLUMN note text")
        took = time.time() - t0
        assert 1.7 < took < 8, took
        assert c.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'busy'::regclass "
                         "AND attname = 'note'").fetchone()[0] == 1
        # The session's own lock_timeout is untouched.
        assert c.execute("SHOW lock_timeout").fetchone()[0] == "0"
    blocker.close()
    [s] = settle(cluster, db, 1, "statement = 'ALTER TABLE busy ADD COLUMN note text'")
    assert s["outcome"] == "ok" and not s["lock_retry_exhausted"]
    log = s["lock_attempt_log"]
    assert s["lock_attempts"] == len(log) >= 2, log
    assert [a["acquired"] for a in log] == [False] * (len(log) - 1) + [True]
    assert log[0]["blockers"][0]["pid"] == bpid and log[0]["blockers"][0]["mode"] == "RowExclusiveLock"
    assert log[0]["waited_for"] == "AccessExclusiveLock on table public.busy"
    for a in log[:-1]:
        # Each failed try waited one lock_timeout, then paused.
        assert 250_000 <= a["waited_us"] < 1_500_000, a
        assert a["slept_us"] > 0, a
    assert s["lock_wait_us"] >= 1_700_000 and s["lock_wait_us"] <= s["duration_us"]
    assert metric(cluster, db, "migsafe_lock_retries_total") == len(log) - 1


def test_a_blocker_that_never_lets_go_fails_after_the_budget_with_every_attempt(cluster, retries):
    retries(lock_timeout="400ms", budget="3s", migsafe__alert_after="'1s'")
    db = busy_table(cluster)
    blocker = hold(cluster, db)
    bpid = blocker.info.backend_pid
    with cluster.connect(db, user="app_owner") as c:
        t0 = time.time()
        r = run(c, "ALTER TABLE busy ADD COLUMN note text")
        took = time.time() - t0
        assert r.sqlstate == "55P03", r
        assert 2.8 < took < 8, took
        msg = r.message
        assert msg.startswith("pg_migsafe: gave up waiting for AccessExclusiveLock on table public.busy after "), msg
        assert "(migsafe.lock_retry_budget = 3000ms is spent)" in msg, msg
        detail = r.error.diag.message_detail
        lines = [l for l in detail.splitlines() if l.startswith("Attempt ")]
        assert len(lines) >= 3, detail
        for i, line in enumerate(lines, 1):
            assert line.startswith(f"Attempt {i} waited "), line
            assert f"blocked by pid {bpid} (RowExclusiveLock" in line, line
        assert "lock_timeout = 400ms (migsafe.lock_timeout)" in detail
        assert "pg_terminate_backend" in r.error.diag.message_hint
        # Nothing of the statement happened; the session goes on.
        assert c.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'busy'::regclass "
                         "AND attname = 'note'").fetchone()[0] == 0
    blocker.rollback()
    blocker.close()
    [s] = settle(cluster, db, 1, "sqlstate = '55P03'")
    assert s["lock_retry_exhausted"] and s["outcome"] == "error"
    assert s["lock_attempts"] == len(s["lock_attempt_log"]) == len(lines)
    assert not any(a["acquired"] for a in s["lock_attempt_log"])
    assert s["error"] == msg
    assert metric(cluster, db, "migsafe_lock_retry_budget_exhausted_total") == 1
    # The wait raised the long-running alert (migsafe.alert_after = 1s; the database's
    # writer looks once a second), saying what the backend waited for.
    def alerts():
        with cluster.connect(db) as c:
            return c.execute("SELECT record->>'waiting' FROM migsafe.events WHERE kind = 'alert'").fetchall()
    [(waiting,)] = wait_for(alerts, 10, "the long-running alert")
    assert waiting in ("Lock: relation", "Extension: Extension"), waiting


def test_the_budget_counts_for_the_whole_transaction(cluster, retries):
    retries(lock_timeout="300ms", budget="2500ms")
    db = busy_table(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE other (id int); GRANT ALL ON other TO app_user")
    first = hold(cluster, db, release_after=1.6)
    second = hold(cluster, db, "INSERT INTO other VALUES (1)")
    with cluster.connect(db, user="app_owner", autocommit=False) as c:
        t0 = time.time()
        c.execute("ALTER TABLE busy ADD COLUMN a int")
        r = run(c, "ALTER TABLE other ADD COLUMN b int")
        took = time.time() - t0
        assert r.sqlstate == "55P03", r
        # 2.5 s in all, not 1.6 s + 2.5 s.
        assert 2.3 < took < 5, took
        assert "Earlier statements of this transaction had used" in r.error.diag.message_detail
        c.rollback()
        # A new transaction has the whole budget again.
        second.rollback()
        c.execute("ALTER TABLE other ADD COLUMN b int")
        c.commit()
    first.close()
    second.close()


def test_a_foreign_keys_referenced_table_is_taken_in_the_same_try(cluster, retries):
    """ADD FOREIGN KEY locks the referenced table too: a blocker there is retried like
    one on the table itself, and between tries neither table is held (a try holds child while it waits for
    parent, as the statement would)."""
    retries(lock_timeout="300ms", budget="10s")
    db = busy_table(cluster, "parent")
    with cluster.connect(db, user="app_owner") as c:
        c.execute("ALTER TABLE parent ADD PRIMARY KEY (id); CREATE TABLE child (id int, parent_id int)")
        c.execute("INSERT INTO child VALUES (1, 1); GRANT ALL ON child TO app_user")
    blocker = hold(cluster, db, "INSERT INTO parent VALUES (2)", release_after=2.5)
    bpid = blocker.info.backend_pid
    free_between = []
    stop = threading.Event()

    def probe():
        # ROW EXCLUSIVE conflicts with the SHARE ROW EXCLUSIVE a try takes on child.
        with cluster.connect(db, user="app_user") as p:
            while not stop.is_set():
                r = run(p, "BEGIN; LOCK TABLE child IN ROW EXCLUSIVE MODE NOWAIT; ROLLBACK")
                free_between.append((time.time(), r.ok))
                if not r.ok:
                    p.execute("ROLLBACK")
                time.sleep(0.01)

    th = threading.Thread(target=probe)
    with cluster.connect(db, user="app_owner") as c:
        th.start()
        t0 = time.time()
        c.execute("ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent")
        t1 = time.time()
    stop.set()
    th.join(10)
    blocker.close()
    # A try holds child while it waits for parent (as the statement itself would);
    # between tries child is free: the probe got its lock while the ALTER waited.
    during = [ok for t, ok in free_between if t0 + 0.35 < t < t1 - 0.1]
    assert t1 - t0 > 2.0 and True in during and False in during, (t1 - t0, during)
    [s] = settle(cluster, db, 1, "statement LIKE 'ALTER TABLE child ADD CONSTRAINT%'")
    log = s["lock_attempt_log"]
    assert s["outcome"] == "ok" and len(log) >= 2, log
    assert log[0]["waited_for"] == "ShareRowExclusiveLock on table public.parent", log[0]
    assert log[0]["blockers"][0]["pid"] == bpid
    assert log[-1]["acquired"]


def test_other_sessions_queue_at_most_one_lock_timeout_at_a_time(cluster, retries):
    """The point of retrying: while the DDL waits for a blocker (4 s here), readers of
    the table are held up by at most one try, not by the whole wait."""
    retries(lock_timeout="500ms", budget="10s")
    db = busy_table(cluster)
    blocker = hold(cluster, db, "SELECT count(*) FROM busy", release_after=4.0)
    worst, stop = [0.0], threading.Event()

    def reader():
        with cluster.connect(db, user="app_user") as r:
            while not stop.is_set():
                t = time.time()
                r.execute("SELECT count(*) FROM busy")
                worst[0] = max(worst[0], time.time() - t)
                time.sleep(0.02)

    th = threading.Thread(target=reader)
    th.start()
    time.sleep(0.3)
    with cluster.connect(db, user="app_owner") as c:
        t0 = time.time()
        c.execute("ALTER TABLE busy ADD COLUMN note text")
        took = time.time() - t0
    stop.set()
    th.join(10)
    blocker.close()
    assert took > 3.0, took
    # One try is 0.5 s; the whole wait was over 3 s.
    assert worst[0] < 2.0, worst[0]


def test_only_pg_migsafes_own_timeout_is_retried(cluster, retries):
    retries(lock_timeout="300ms", budget="10s")
    db = busy_table(cluster)
    blocker = hold(cluster, db)
    with cluster.connect(db, user="app_owner") as c:
        # The session's own lock_timeout: one try, PostgreSQL's error.
        c.execute("SET lock_timeout = '300ms'")
        t0 = time.time()
        r = run(c, "ALTER TABLE busy ADD COLUMN a int")
        assert r.sqlstate == "55P03" and time.time() - t0 < 1.5, r
        assert "gave up waiting" not in r.message
        c.execute("RESET lock_timeout")
        # statement_timeout ends the retries (the pauses answer interrupts).
        c.execute("SET statement_timeout = '1200ms'")
        t0 = time.time()
        r = run(c, "ALTER TABLE busy ADD COLUMN a int")
        assert r.sqlstate == "57014" and time.time() - t0 < 3, r
        c.execute("RESET statement_timeout")
    with cluster.connect(db, user="app_user") as c:
        # Not the table's owner: no lock is requested for it ahead (PostgreSQL's
        # ownership check comes first), nothing is retried.
        t0 = time.time()
        r = run(c, "ALTER TABLE busy ADD COLUMN a int")
        assert r.sqlstate == "42501" and time.time() - t0 < 1.5, r
    blocker.rollback()
    blocker.close()
    rows = settle(cluster, db, 2, "command_tag = 'ALTER TABLE' AND sqlstate IN ('55P03', '57014')")
    by_state = {s["sqlstate"]: s for s in rows}
    assert by_state["55P03"]["lock_attempts"] == 0
    assert by_state["57014"]["lock_attempts"] >= 1 and not by_state["57014"]["lock_retry_exhausted"]


def test_no_retries_when_the_budget_is_zero(cluster, retries):
    retries(lock_timeout="300ms", budget="0")
    db = busy_table(cluster)
    blocker = hold(cluster, db)
    with cluster.connect(db, user="app_owner") as c:
        t0 = time.time()
        r = run(c, "ALTER TABLE busy ADD COLUMN a int")
        assert r.sqlstate == "55P03" and time.time() - t0 < 1.5, r
        assert r.message == "canceling statement due to lock timeout"
    blocker.rollback()
    blocker.close()


def test_cancel_blockers_after_ends_only_idle_sessions_the_role_may_end(cluster, retries):
    retries(lock_timeout="200ms", budget="6s", migsafe__cancel_blockers_after="'600ms'")
    db = busy_table(cluster)
    # The migrating role's own session, idle in transaction: ended.
    own = hold(cluster, db, user="app_owner")
    own_pid = own.info.backend_pid
    # Another role's session (app_owner may not signal it): left alone, and it ends
    # its transaction by itself after 2.5 s.
    other = hold(cluster, db, "SELECT count(*) FROM busy", user="app_user", release_after=2.5)
    other_pid = other.info.backend_pid
    mark = len(cluster.log_text())
    with cluster.connect(db, user="app_owner") as c:
        t0 = time.time()
        c.execute("ALTER TABLE busy ADD COLUMN note text")
        assert 2.3 < time.time() - t0 < 6
    with pytest.raises(psycopg.OperationalError):
        own.execute("SELECT 1")
    other.execute("SELECT 1")  # still alive
    other.close()
    [s] = settle(cluster, db, 1, "statement = 'ALTER TABLE busy ADD COLUMN note text'")
    ended = [p for a in s["lock_attempt_log"] for p in a.get("ended", [])]
    assert ended == [own_pid], s["lock_attempt_log"]
    assert metric(cluster, db, "migsafe_lock_blockers_ended_total") == 1
    log = cluster.log_text()[mark:]
    assert f"pg_migsafe: ended session {own_pid} (idle in transaction" in log
    assert f"ended session {other_pid}" not in log
    assert "could not end blocking session" not in log

    # A superuser's session and an active query are never ended.
    retries(lock_timeout="200ms", budget="1500ms", migsafe__cancel_blockers_after="'300ms'")
    db2 = busy_table(cluster)
    su = hold(cluster, db2, user="postgres")
    with cluster.connect(db2, user="app_owner") as c:
        r = run(c, "ALTER TABLE busy ADD COLUMN note text")
        assert r.sqlstate == "55P03", r
    su.execute("SELECT 1")
    su.rollback()
    retries(lock_timeout="200ms", budget="6s", migsafe__cancel_blockers_after="'300ms'")
    active = cluster.connect(db2, user="app_owner")
    th = threading.Thread(target=lambda: active.execute("SELECT pg_sleep(2.5) FROM busy"))
    th.start()
    time.sleep(0.3)
    with cluster.connect(db2, user="app_owner") as c:
        t0 = time.time()
        c.execute("ALTER TABLE busy ADD COLUMN note text")
        assert time.time() - t0 > 1.5
    th.join(10)
    active.execute("SELECT 1")
    active.close()
    su.close()


def test_a_blocker_that_starts_a_query_is_not_ended(cluster, retries):
    """Review finding: pg_stat_activity keeps a transaction's first look. A session idle
    in transaction at pg_migsafe's first look that runs a query later must not be ended
    as if it were still idle."""
    retries(lock_timeout="200ms", budget="2500ms", migsafe__cancel_blockers_after="'1s'")
    db = busy_table(cluster)
    blocker = hold(cluster, db, user="app_owner")  # idle in transaction, ROW EXCLUSIVE held
    done = []

    def busy_later():
        time.sleep(0.3)
        blocker.execute("SELECT pg_sleep(3)")  # active from 0.3 s to 3.3 s
        done.append(True)

    th = threading.Thread(target=busy_later)
    th.start()
    with cluster.connect(db, user="app_owner") as c:
        # The first look (at once) sees it idle, and it has been idle since before the
        # ALTER; by the first chance to end it (1 s of retries) it is running a query.
        r = run(c, "ALTER TABLE busy ADD COLUMN note text")
        assert r.sqlstate == "55P03", r
    th.join(10)
    assert done == [True]
    blocker.execute("SELECT 1")  # alive
    blocker.rollback()
    blocker.close()
    [s] = settle(cluster, db, 1, "sqlstate = '55P03'")
    assert not any(a.get("ended") for a in s["lock_attempt_log"]), s["lock_attempt_log"]
    states = {b["state"] for a in s["lock_attempt_log"] for b in a.get("blockers", [])}
    assert "active" in states, s["lock_attempt_log"]
