"""The audit log (issue #3): what is recorded, durability (refused, failed, rolled
back, SIGKILL, load, full queue, several databases), tamper evidence, privileges,
events, alerts and lock safety — on real clusters."""
import json
import os
import re
import signal
import subprocess
import threading
import time

import psycopg
import pytest

from conftest import REFUSED, new_db, run, mode
from pgcluster import Cluster, PGBIN

APPEND_ONLY = "MS004"


def wait_for(fn, timeout=20, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value {last!r}")


def log_rows(cluster, db, kind=None):
    with cluster.connect(db) as c:
        q = "SELECT record::text FROM migsafe.audit_log"
        if kind:
            q += f" WHERE record->>'kind' = '{kind}'"
        return [json.loads(r[0]) for r in c.execute(q + " ORDER BY seq")]


def statements(cluster, db, where="true"):
    with cluster.connect(db) as c:
        c.row_factory = psycopg.rows.dict_row
        return c.execute(f"SELECT * FROM migsafe.statements WHERE {where} ORDER BY seq").fetchall()


def migrations(cluster, db, where="true"):
    with cluster.connect(db) as c:
        c.row_factory = psycopg.rows.dict_row
        return c.execute(f"SELECT * FROM migsafe.migrations WHERE {where} ORDER BY first_seq NULLS LAST").fetchall()


def settle(cluster, db, n_statements, where="true", timeout=20):
    """Waits until the writer has stored n statement rows matching `where`."""
    return wait_for(lambda: (lambda rows: rows if len(rows) >= n_statements else None)(
        statements(cluster, db, where)), timeout, f"{n_statements} statements where {where}")


def verify(cluster, db):
    with cluster.connect(db) as c:
        return c.execute("SELECT ok, rows_checked, broken_seq, reason FROM migsafe.verify_log()").fetchone()


# ------------------------------------------------------------------ what is recorded

def test_a_statement_is_recorded_with_who_what_when_and_how_long(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner", application_name="deploy-42") as c:
        c.execute("CREATE TABLE orders (id bigint PRIMARY KEY, total numeric)")
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    [s] = settle(cluster, db, 1)
    assert s["command_tag"] == "CREATE TABLE"
    assert s["statement"] == "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric)"
    assert not s["statement_truncated"]
    assert s["decision"] == "allowed" and s["outcome"] == "ok"
    assert (s["session_user"], s["current_user"]) == ("app_owner", "app_owner")
    assert s["application_name"] == "deploy-42"
    assert str(s["client_addr"]) == "127.0.0.1"
    assert s["pid"] == pid and s["database"] == db
    assert s["duration_us"] > 0 and s["xid"] is not None
    assert "table public.orders" in s["objects"] and "index public.orders_pkey" in s["objects"]
    [m] = migrations(cluster, db)
    assert m["outcome"] == "committed" and m["statements"] == 1
    assert m["migration"] == s["migration"] and m["xid"] == s["xid"]
    assert m["ended_at"] >= m["started_at"]


def test_one_migration_per_transaction_with_statement_numbers(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        with c.transaction():
            c.execute("SELECT migsafe.set_migration_name('release 7')")
            c.execute("CREATE TABLE a (id int)")
            c.execute("ALTER TABLE a ADD COLUMN note text")
            c.execute("CREATE INDEX a_note ON a (note)")
    rows = settle(cluster, db, 3)
    assert len({r["migration"] for r in rows}) == 1
    assert [r["statement_no"] for r in rows] == [1, 2, 3]
    assert "column public.a.note" in rows[1]["objects"]
    [m] = wait_for(lambda: migrations(cluster, db, "outcome = 'committed'"))
    assert m["statements"] == 3 and m["name"] == "release 7"


def test_nesting_says_whether_the_client_sent_the_statement(cluster):
    # 0 for what the client sent (simple and extended protocol alike), more for what a
    # DO block or a function runs.
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE t (id int)")
        c.execute("ALTER TABLE t ADD COLUMN a int", prepare=True)
        c.execute("DO $$ BEGIN EXECUTE 'ALTER TABLE t ADD COLUMN b int'; ALTER TABLE t ADD COLUMN c int; END $$")
        c.execute("CREATE FUNCTION add_d() RETURNS void LANGUAGE sql AS 'ALTER TABLE t ADD COLUMN d int'")
        c.execute("SELECT add_d()")
    rows = settle(cluster, db, 6)
    nesting = {r["statement"]: r["nesting"] for r in rows}
    assert nesting["CREATE TABLE t (id int)"] == 0
    assert nesting["ALTER TABLE t ADD COLUMN a int"] == 0
    assert nesting["ALTER TABLE t ADD COLUMN b int"] == 1
    assert nesting["ALTER TABLE t ADD COLUMN c int"] == 1
    assert nesting["ALTER TABLE t ADD COLUMN d int"] == 1
    assert nesting[next(k for k in nesting if k.startswith("CREATE FUNCTION"))] == 0


def test_refused_statement_is_recorded_although_its_transaction_rolled_back(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE keep (id int)")
    with cluster.connect(db, user="app_owner") as c:
        r = run(c, "DROP TABLE keep")
        assert r.sqlstate == REFUSED
    [s] = settle(cluster, db, 1, "decision = 'refused'")
    assert s["outcome"] == "error" and s["sqlstate"] == REFUSED
    assert s["rule_ids"] == ["drop-table"] and s["statement"] == "DROP TABLE keep"
    assert "refused drop-table" in s["error"]
    m = wait_for(lambda: migrations(cluster, db, f"migration = '{s['migration']}' AND outcome = 'rolled_back'"))
    assert m[0]["refused"] == 1
    with cluster.connect(db) as c:
        c.row_factory = psycopg.rows.dict_row
        [r] = c.execute("SELECT * FROM migsafe.refusals").fetchall()
    assert r["statement"] == "DROP TABLE keep" and r["session_user"] == "app_owner"


def test_failed_statement_keeps_sqlstate_and_message(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner", autocommit=False) as c:
        c.execute("CREATE TABLE f (id int)")
        c.commit()
        c.execute("CREATE TABLE g (x int)")
        r = run(c, "ALTER TABLE f ADD COLUMN id int")
        assert r.sqlstate == "42701"
    s = settle(cluster, db, 1, "outcome = 'error'")[0]
    assert s["sqlstate"] == "42701" and 'column "id" of relation "f" already exists' in s["error"]
    assert s["decision"] == "allowed"
    [m] = wait_for(lambda: migrations(cluster, db, f"migration = '{s['migration']}' AND outcome IS NOT NULL AND ended_at IS NOT NULL"))
    assert m["outcome"] == "rolled_back" and m["failed"] == 1 and m["statements"] == 2
    # The CREATE TABLE g that ran before the failure is in the log too, as ok — and rolled back.
    [g] = statements(cluster, db, "statement = 'CREATE TABLE g (x int)'")
    assert g["outcome"] == "ok" and g["migration"] == s["migration"]


def test_error_rolled_back_to_a_savepoint_leaves_a_committed_migration(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner", autocommit=False) as c:
        c.execute("CREATE TABLE h (id int)")
        c.execute("SAVEPOINT s1")
        try:
            c.execute("ALTER TABLE h ADD COLUMN id int")
        except psycopg.Error:
            c.execute("ROLLBACK TO SAVEPOINT s1")
        c.execute("CREATE TABLE h2 (id int)")
        c.commit()
    rows = settle(cluster, db, 3)
    assert [(r["statement_no"], r["outcome"]) for r in rows] == [(1, "ok"), (2, "error"), (3, "ok")]
    [m] = wait_for(lambda: migrations(cluster, db, "ended_at IS NOT NULL"))
    assert m["outcome"] == "committed" and m["failed"] == 1


def test_warned_and_approved_decisions(cluster, warn_cluster):
    db = new_db(warn_cluster)
    with warn_cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE w (id int)")
    with warn_cluster.connect(db, user="app_owner") as c:
        c.execute("DROP TABLE w")
    [s] = settle(warn_cluster, db, 1, "command_tag = 'DROP TABLE'")
    assert s["decision"] == "warned" and s["outcome"] == "ok" and s["rule_ids"] == ["drop-table"]

    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE old_t (id int)")
    with cluster.connect(db) as c:
        pid = c.execute("SELECT migsafe.begin_phase('contract', 'drop old_t', objects => ARRAY['public.old_t'], skip_expand => true)").fetchone()[0]
        c.execute("DROP TABLE old_t")
    [s] = settle(cluster, db, 1, "command_tag = 'DROP TABLE'")
    assert s["decision"] == "approved" and s["phase_id"] == pid
    assert "table public.old_t (dropped)" in s["objects"]
    [m] = wait_for(lambda: migrations(cluster, db, f"migration = '{s['migration']}' AND ended_at IS NOT NULL"))
    assert m["phases"][0]["id"] == pid and m["phases"][0]["name"] == "drop old_t"


def test_long_statement_is_cut_and_marked(cluster):
    cluster.configure(migsafe__audit_max_statement_bytes="'1kB'")
    try:
        db = new_db(cluster)
        comment = "é" * 2000
        with cluster.connect(db, user="app_owner") as c:
            c.execute(f"CREATE TABLE long_t (id int); COMMENT ON TABLE long_t IS '{comment}'")
        [s] = settle(cluster, db, 1, "command_tag = 'COMMENT'")
        assert s["statement_truncated"] and len(s["statement"].encode()) <= 1024
        assert s["statement_bytes"] == len(f"COMMENT ON TABLE long_t IS '{comment}'".encode())
        assert s["statement"].startswith("COMMENT ON TABLE long_t IS 'éé")
    finally:
        cluster.configure(migsafe__audit_max_statement_bytes=None)


def test_drizzle_hash_inserted_in_the_same_transaction_is_recorded(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE SCHEMA drizzle; CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint)")
        with c.transaction():
            c.execute("CREATE TABLE dz (id int)")
            c.execute("INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('f00dbabe', 1)")
        with c.transaction():
            c.execute("INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('notmine', 2)")
            c.execute("CREATE TABLE dz2 (id int)")
            c.execute("INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('cafe', 3)")
    ms = wait_for(lambda: (lambda m: m if len(m) >= 3 else None)(migrations(cluster, db, "ended_at IS NOT NULL")))
    assert [m["drizzle_hashes"] for m in ms] == [[], ["f00dbabe"], ["cafe", "notmine"]]


# ------------------------------------------------------------------ tamper evidence

def test_log_is_append_only_for_superusers_too(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE x (id int)")
    settle(cluster, db, 1)
    with cluster.connect(db) as c:
        for sql in ("UPDATE migsafe.audit_log SET record = '{}'",
                    "DELETE FROM migsafe.audit_log",
                    "INSERT INTO migsafe.audit_log VALUES (1000, '{}', 'x')"):
            r = run(c, sql)
            assert r.sqlstate == APPEND_ONLY, (sql, r)
            assert "append" in r.message
        r = run(c, "TRUNCATE migsafe.audit_log")
        assert r.sqlstate in (REFUSED, APPEND_ONLY), r
        for sql in ("ALTER TABLE migsafe.audit_log DISABLE TRIGGER ALL",
                    "DROP TRIGGER audit_log_no_update_delete ON migsafe.audit_log",
                    "DROP TABLE migsafe.audit_log"):
            r = run(c, sql)
            assert r.sqlstate == REFUSED, (sql, r)
        c.execute("SET session_replication_role = replica")
        r = run(c, "DELETE FROM migsafe.audit_log")
        assert r.sqlstate == APPEND_ONLY, r
    assert verify(cluster, db)[0] is True


def test_verify_log_catches_a_row_changed_behind_the_hook(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        for i in range(5):
            c.execute(f"CREATE TABLE v{i} (id int)")
    settle(cluster, db, 5)
    ok, rows, broken, reason = verify(cluster, db)
    assert ok and broken is None and rows >= 10 and reason.startswith("OK")
    with cluster.connect(db) as c:
        seq = c.execute("SELECT seq FROM migsafe.statements WHERE statement = 'CREATE TABLE v2 (id int)'").fetchone()[0]
    # With the extension off, a superuser can disable the triggers and rewrite history:
    # the chain still shows it.
    with mode(cluster, "off"):
        with cluster.connect(db) as c:
            c.execute("ALTER TABLE migsafe.audit_log DISABLE TRIGGER audit_log_no_update_delete")
            c.execute("UPDATE migsafe.audit_log SET record = replace(record::text, 'v2', 'zz')::json WHERE seq = %s", (seq,))
            c.execute("ALTER TABLE migsafe.audit_log ENABLE ALWAYS TRIGGER audit_log_no_update_delete")
    ok, rows, broken, reason = verify(cluster, db)
    assert not ok and broken == seq and rows == seq - 1
    assert "changed" in reason
    # Deleting a row instead shows up as a gap.
    db2 = new_db(cluster)
    with cluster.connect(db2, user="app_owner") as c:
        c.execute("CREATE TABLE d1 (id int)")
        c.execute("CREATE TABLE d2 (id int)")
    settle(cluster, db2, 2)
    with mode(cluster, "off"):
        with cluster.connect(db2) as c:
            c.execute("ALTER TABLE migsafe.audit_log DISABLE TRIGGER audit_log_no_update_delete")
            c.execute("DELETE FROM migsafe.audit_log WHERE seq = 2")
            c.execute("ALTER TABLE migsafe.audit_log ENABLE ALWAYS TRIGGER audit_log_no_update_delete")
    ok, rows, broken, reason = verify(cluster, db2)
    assert not ok and broken == 3 and "missing" in reason


def test_auditor_reads_the_log_and_nothing_else_and_apps_see_nothing(cluster):
    db = new_db(cluster)
    with cluster.connect() as c:
        c.execute("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditor1') THEN "
                  "CREATE ROLE auditor1 LOGIN IN ROLE migsafe_auditor; END IF; END$$")
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE secret (id int)")
        c.execute("INSERT INTO secret VALUES (1)")
        c.execute("GRANT SELECT ON secret TO app_user")
    settle(cluster, db, 1)
    with cluster.connect(db, user="auditor1") as c:
        for v in ("audit_log", "statements", "migrations", "refusals", "events", "duration_trends", "metrics"):
            run_ok = run(c, f"SELECT count(*) FROM migsafe.{v}")
            assert run_ok.ok, (v, run_ok)
        assert c.execute("SELECT ok FROM migsafe.verify_log()").fetchone()[0] is True
        for sql in ("SELECT * FROM secret", "UPDATE migsafe.audit_log SET hash = 'x'",
                    "CREATE TABLE mine (id int)"):
            r = run(c, sql)
            assert not r.ok and r.sqlstate in ("42501", APPEND_ONLY), (sql, r)
    with cluster.connect(db, user="app_user") as c:
        for v in ("audit_log", "statements", "migrations", "refusals", "metrics"):
            r = run(c, f"SELECT count(*) FROM migsafe.{v}")
            assert r.sqlstate == "42501", (v, r)
        assert run(c, "SELECT * FROM migsafe.verify_log()").sqlstate == "42501"


# ------------------------------------------------------------------ events

def test_notify_and_server_log_carry_refusals_and_failures(cluster):
    db = new_db(cluster)
    listener = cluster.connect(db)
    listener.execute("LISTEN migsafe_events")
    with cluster.connect(db, user="app_owner", application_name="drizzle") as c:
        c.execute("CREATE TABLE n (id int)")
        run(c, "DROP TABLE n")
        run(c, "ALTER TABLE n ADD COLUMN id int")
    events = []
    deadline = time.time() + 15
    while time.time() < deadline and len(events) < 2:
        for n in listener.notifies(timeout=1, stop_after=2):
            events.append(json.loads(n.payload))
    listener.close()
    kinds = {e["event"]: e for e in events}
    assert kinds["refused"]["rules"] == ["drop-table"] and kinds["refused"]["application"] == "drizzle"
    assert kinds["failed"]["sqlstate"] == "42701"
    text = cluster.log_text()
    assert re.search(r'pg_migsafe_event \{.*"event":"refused".*"rules":\["drop-table"\]', text)


def test_long_running_migration_raises_warning_then_critical(cluster):
    cluster.configure(migsafe__alert_after="'1s'", migsafe__critical_after="'2s'", migsafe__warn_duration="'500ms'")
    try:
        db = new_db(cluster)
        listener = cluster.connect(db)
        listener.execute("LISTEN migsafe_events")
        with cluster.connect(db, user="app_owner") as c:
            with c.transaction():
                c.execute("CREATE TABLE slow (id int)")
                c.execute("SELECT pg_sleep(3.5)")
        got = []
        deadline = time.time() + 15
        while time.time() < deadline and not any(e.get("event") == "over_budget" for e in got):
            for n in listener.notifies(timeout=1):
                got.append(json.loads(n.payload))
        listener.close()
        levels = [e["level"] for e in got if e["event"] == "long_running"]
        assert levels == ["warning", "critical"], got
        alerts = log_rows(cluster, db, "alert")
        assert [a["level"] for a in alerts] == ["warning", "critical"]
        assert "pg_sleep" in alerts[0]["query"]
        [m] = wait_for(lambda: migrations(cluster, db, "ended_at IS NOT NULL"))
        assert m["over_budget"] and m["duration_us"] > 3_000_000
    finally:
        cluster.configure(migsafe__alert_after=None, migsafe__critical_after=None, migsafe__warn_duration=None)


def test_phase_events_and_config_changes_are_recorded(cluster):
    db = new_db(cluster)
    with cluster.connect(db) as c:
        with c.transaction():
            c.execute("SELECT migsafe.begin_phase('expand', 'add col', valid_for => '1 second')")
        # A phase request that rolls back never happened.
        try:
            with c.transaction():
                c.execute("SELECT migsafe.begin_phase('expand', 'ghost')")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        c.execute("CREATE TABLE wake (id int)")  # starts the writer
    ev = wait_for(lambda: (lambda r: r if any(e["event"] == "expired" for e in r) else None)(
        log_rows(cluster, db, "phase_event")), 30, "expired phase event")
    names = [e["event"] for e in ev]
    assert names[:1] == ["requested"] and "expired" in names
    # The rolled-back request left nothing: every event is about the first phase.
    assert len({e["phase_id"] for e in ev}) == 1
    cluster.configure(migsafe__warn_duration="'45s'")
    try:
        with cluster.connect(db, user="app_owner") as c:
            c.execute("CREATE TABLE wake2 (id int)")
        cfg = wait_for(lambda: (lambda r: r if any("migsafe.warn_duration" in x["changed"] for x in r) else None)(
            log_rows(cluster, db, "config")), 20, "config change")
        last = [x for x in cfg if "migsafe.warn_duration" in x["changed"]][-1]
        assert last["changed"]["migsafe.warn_duration"] == ["30000", "45000"]
    finally:
        cluster.configure(migsafe__warn_duration=None)


# ------------------------------------------------------------------ lock safety

def test_lock_timeout_is_applied_and_the_error_names_the_blocker(cluster):
    # One try (no retries: see test_lock_retries.py).
    cluster.configure(migsafe__lock_timeout="'1s'", migsafe__lock_retry_budget="0")
    try:
        db = new_db(cluster)
        with cluster.connect(db, user="app_owner") as c:
            c.execute("CREATE TABLE busy (id int)")
            c.execute("GRANT ALL ON busy TO app_user")
        blocker = cluster.connect(db, user="app_user", autocommit=False)
        bpid = blocker.info.backend_pid
        blocker.execute("INSERT INTO busy VALUES (1)")  # holds ROW EXCLUSIVE, idle in transaction
        with cluster.connect(db, user="app_owner") as c:
            assert c.execute("SHOW lock_timeout").fetchone()[0] == "0"
            t0 = time.time()
            r = run(c, "ALTER TABLE busy ADD COLUMN note text")
            waited = time.time() - t0
            assert r.sqlstate == "55P03", r
            assert 0.8 < waited < 10
            detail = r.error.diag.message_detail
            # app_owner may not see app_user's query in pg_stat_activity: neither here.
            assert f"pid {bpid} (RowExclusiveLock)" in detail, detail
            assert "INSERT INTO busy" not in detail and "insufficient privilege" not in detail, detail
            assert "migsafe.lock_timeout = 1000ms" in detail
            # Only for that statement.
            assert c.execute("SHOW lock_timeout").fetchone()[0] == "0"
        blocker.rollback()
        blocker.close()
        # A blocker of the caller's own: its query and state are the caller's to see.
        own = cluster.connect(db, user="app_owner", autocommit=False)
        own.execute("INSERT INTO busy VALUES (2)")
        with cluster.connect(db, user="app_owner") as c:
            r = run(c, "ALTER TABLE busy ADD COLUMN note text")
            assert r.sqlstate == "55P03", r
            detail = r.error.diag.message_detail
            assert (f"pid {own.info.backend_pid} (RowExclusiveLock, idle in transaction) "
                    "running: INSERT INTO busy VALUES (2)") in detail, detail
        own.rollback()
        own.close()
        [s, _] = settle(cluster, db, 2, "sqlstate = '55P03'")
        assert s["lock_timeout_applied_ms"] == 1000
        assert s["blockers"][0]["pid"] == bpid and s["lock_wait_us"] is None
        # A statement whose lock is free waits 0 µs and still gets the timeout applied.
        with cluster.connect(db, user="app_owner") as c:
            c.execute("ALTER TABLE busy ADD COLUMN note text")
        [s] = settle(cluster, db, 1, "outcome = 'ok' AND command_tag = 'ALTER TABLE'")
        assert s["lock_wait_us"] == 0 and s["lock_timeout_applied_ms"] == 1000
        # An explicit lock_timeout is respected.
        with cluster.connect(db, user="app_owner") as c:
            c.execute("SET lock_timeout = '3s'")
            c.execute("ALTER TABLE busy ADD COLUMN n2 int")
        [s] = settle(cluster, db, 1, "statement = 'ALTER TABLE busy ADD COLUMN n2 int'")
        assert s["lock_timeout_applied_ms"] is None
    finally:
        cluster.configure(migsafe__lock_timeout=None, migsafe__lock_retry_budget=None)


def test_owner_waiting_for_a_lock_has_its_wait_timed(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE w8 (id int)")
    holder = cluster.connect(db, user="app_owner", autocommit=False)
    holder.execute("LOCK TABLE w8 IN ACCESS SHARE MODE")
    threading.Timer(1.0, holder.rollback).start()
    with cluster.connect(db, user="app_owner") as c:
        c.execute("ALTER TABLE w8 ADD COLUMN c int")
    holder.close()
    [s] = settle(cluster, db, 1, "statement = 'ALTER TABLE w8 ADD COLUMN c int'")
    assert s["outcome"] == "ok" and 700_000 < s["lock_wait_us"] <= s["duration_us"]


# ------------------------------------------------------------------ durability

def test_two_databases_each_get_their_own_log(cluster):
    dbs = [new_db(cluster), new_db(cluster)]

    def work(db, tag):
        with cluster.connect(db, user="app_owner") as c:
            for i in range(30):
                c.execute(f"CREATE TABLE {tag}_{i} (id int)")

    ts = [threading.Thread(target=work, args=(d, f"db{k}")) for k, d in enumerate(dbs)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    for k, d in enumerate(dbs):
        rows = settle(cluster, d, 30)
        assert len(rows) == 30
        assert all(r["statement"].startswith(f"CREATE TABLE db{k}_") for r in rows)
        assert all(r["database"] == d for r in rows)
        assert verify(cluster, d)[0] is True


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster of its own, for crashes and a small queue."""
    c = Cluster("audit", settings={
        "migsafe.audit_databases": "2", "migsafe.audit_queue_size": "'256kB'",
        "migsafe.audit_queue_wait": "'20ms'", "max_worker_processes": "16",
        # What committed before the crash must survive it (the harness turns this off).
        "synchronous_commit": "on"})
    with c.connect() as conn:
        conn.execute("CREATE ROLE app_owner LOGIN CREATEDB")
    yield c
    c.destroy()


def test_sigkill_leaves_a_never_finished_migration(own_cluster):
    c = own_cluster
    db = c.createdb("crash", owner="app_owner")
    conn = c.connect(db, user="app_owner", autocommit=False)
    conn.execute("CREATE TABLE before_kill (id int)")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(psycopg.Error):
        conn.execute("SELECT 1")
    conn.close()
    # The postmaster restarts every process; the writer finds the spool file.

    def recovered():
        try:
            return migrations(c, db, "outcome = 'never_finished'")
        except psycopg.OperationalError:  # still restarting
            return None
    [m] = wait_for(recovered, 60, "never_finished migration")
    assert m["pid"] == pid and m["session_user"] == "app_owner"
    assert m["ended_at"] is not None
    rec = [r for r in log_rows(c, db, "migration_start") if r["migration"] == m["migration"]][0]
    assert rec["first_statement"] == "CREATE TABLE before_kill (id int)"
    assert verify(c, db)[0] is True
    # PostgreSQL 18 names the process by its type ("client backend (PID …)").
    assert re.search(r"(server process|client backend) \(PID %d\) was terminated by signal 9" % pid, c.log_text())


def test_sixteen_sessions_next_to_pgbench_lose_and_duplicate_nothing(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE acc (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)")
        c.execute("INSERT INTO acc SELECT g FROM generate_series(1, 1000) g")
        c.execute("GRANT ALL ON acc TO app_user")
        for s in range(16):
            c.execute(f"CREATE TABLE keep_{s} (id int)")
    script = os.path.join(cluster.dir, "bench.sql")
    with open(script, "w") as f:
        f.write("\\set aid random(1, 1000)\nUPDATE acc SET n = n + 1 WHERE id = :aid;\n")
    os.chmod(script, 0o644)
    bench = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", f"{PGBIN}/pgbench", "-n", "-h", "127.0.0.1", "-p", str(cluster.port),
         "-U", "app_user", "-c", "4", "-T", "8", "-f", script, db],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    per = 25
    errors = []

    def session(s):
        try:
            with cluster.connect(db, user="app_owner") as c:
                for i in range(per):
                    c.execute(f"CREATE TABLE s{s}_{i} (id int)")
                    if i % 5 == 0:
                        r = run(c, f"DROP TABLE keep_{s}")
                        assert r.sqlstate == REFUSED
                    c.execute(f"ALTER TABLE s{s}_{i} ADD COLUMN v text")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=session, args=(s,)) for s in range(16)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    out, _ = bench.communicate(timeout=60)
    assert bench.returncode == 0, out
    assert not errors, errors
    expect = 16 * (per * 2 + per // 5) + 16 + 2  # + CREATE TABLE acc and its GRANT
    rows = settle(cluster, db, expect, timeout=60)
    assert len(rows) == expect
    texts = [r["statement"] for r in rows if r["statement"].startswith(("CREATE TABLE s", "ALTER TABLE s", "DROP TABLE keep_"))]
    assert len(texts) == 16 * (per * 2 + per // 5)
    assert len(set((r["migration"], r["statement_no"]) for r in rows)) == len(rows)
    for s in range(16):
        for i in range(per):
            assert texts.count(f"CREATE TABLE s{s}_{i} (id int)") == 1
            assert texts.count(f"ALTER TABLE s{s}_{i} ADD COLUMN v text") == 1
        assert texts.count(f"DROP TABLE keep_{s}") == per // 5
    assert len(statements(cluster, db, "decision = 'refused'")) == 16 * (per // 5)
    assert verify(cluster, db)[0] is True
    with cluster.connect(db) as c:
        assert c.execute("SELECT sum(n) FROM acc").fetchone()[0] > 0


def test_drop_database_is_not_held_up_by_its_writer(warn_cluster):
    db = new_db(warn_cluster)
    with warn_cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE soon_gone (id int)")
    settle(warn_cluster, db, 1)
    with warn_cluster.connect() as c:
        writers = c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                            "AND backend_type = 'pg_migsafe audit writer'", (db,)).fetchone()[0]
        assert writers == 1  # the writer is connected to the database
        t0 = time.time()
        c.execute(f'DROP DATABASE "{db}"')  # warned, not refused, in warn mode
        assert time.time() - t0 < 4
        assert c.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (db,)).fetchone()[0] == 0


def test_statement_that_commits_internally_stays_one_statement(cluster):
    """CREATE INDEX CONCURRENTLY commits and starts transactions of its own."""
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE cic (id int)")
        c.execute("CREATE INDEX CONCURRENTLY cic_id ON cic (id)")
    [s] = settle(cluster, db, 1, "command_tag = 'CREATE INDEX'")
    assert s["outcome"] == "ok" and "index public.cic_id" in s["objects"]
    ms = wait_for(lambda: (lambda m: m if len(m) == 2 else None)(migrations(cluster, db, "ended_at IS NOT NULL")))
    assert [m["outcome"] for m in ms] == ["committed", "committed"]
    assert ms[1]["migration"] == s["migration"] and ms[1]["statements"] == 1


def test_database_without_the_extension_is_protected_but_not_logged(cluster):
    db = new_db(cluster, extension=False)
    mark = len(cluster.log_text())
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE plain (id int)")
    with cluster.connect(db, user="app_owner") as c:
        assert run(c, "DROP TABLE plain").sqlstate == REFUSED
        assert c.execute("SELECT to_regclass('migsafe.audit_log')").fetchone()[0] is None
    time.sleep(0.5)
    with cluster.connect() as c:
        assert c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                         "AND backend_type = 'pg_migsafe audit writer'", (db,)).fetchone()[0] == 0
    assert "pg_migsafe_audit_fallback" not in cluster.log_text()[mark:]


def test_audit_off_records_nothing_and_the_change_is_recorded(cluster):
    db = new_db(cluster)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE before_off (id int)")
    settle(cluster, db, 1)
    cluster.configure(migsafe__audit="off")
    try:
        with cluster.connect(db, user="app_owner") as c:
            c.execute("CREATE TABLE while_off (id int)")
            assert run(c, "DROP TABLE before_off").sqlstate == REFUSED  # enforcement goes on
    finally:
        cluster.configure(migsafe__audit=None)
    with cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE after_on (id int)")
    rows = settle(cluster, db, 2)
    assert [r["statement"] for r in rows] == ["CREATE TABLE before_off (id int)", "CREATE TABLE after_on (id int)"]
    cfg = wait_for(lambda: (lambda r: r if any("migsafe.audit" in x["changed"] for x in r) else None)(
        log_rows(cluster, db, "config")), 20, "config record of migsafe.audit")
    assert any(x["changed"].get("migsafe.audit") == ["off", "on"] for x in cfg) or \
        any(x["changed"].get("migsafe.audit") == ["on", "off"] for x in cfg)
