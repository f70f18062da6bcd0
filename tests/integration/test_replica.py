"""Replicas (issue #16, first part): pg_migsafe on a hot standby made with
pg_basebackup from a primary that has it. DDL on the primary replicates with its
audit rows; on the standby, DDL gets PostgreSQL's own read-only error — pg_migsafe
takes no heavy lock and writes nothing for it, and no panic path is reached — and
what pg_migsafe refuses there is refused with a message that says DDL belongs on the
primary (no begin_phase call, which cannot run on a standby)."""
import json
import os
import shutil
import tempfile

import pytest

from conftest import run
from pgcluster import Cluster, PGBIN, RUNAS, _as_user
from test_audit import wait_for

READ_ONLY = "25006"


@pytest.fixture(scope="module")
def pair():
    primary = Cluster("primary")
    with primary.connect() as c:
        c.execute("CREATE DATABASE app")
    with primary.connect("app") as c:
        c.execute("CREATE EXTENSION pg_migsafe")
        c.execute("CREATE TABLE t (id int)")
        c.execute("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        c.execute("CREATE TYPE mood AS ENUM ('ok')")
        c.execute("SELECT migsafe.snapshot('before the standby')")
    # A standby: a base backup of the primary, streaming from it.
    standby = Cluster.__new__(Cluster)
    standby.name = "standby"
    standby.bin = primary.bin
    base = os.environ.get("MIGSAFE_TEST_TMP", tempfile.gettempdir())
    standby.dir = tempfile.mkdtemp(prefix="migsafe-standby-", dir=base)
    os.chmod(standby.dir, 0o755)
    if os.geteuid() == 0:
        shutil.chown(standby.dir, RUNAS)
    standby.data = os.path.join(standby.dir, "data")
    standby.log = os.path.join(standby.dir, "server.log")
    standby.preload = primary.preload
    standby.settings = {"hot_standby": "on"}
    r = _as_user([f"{PGBIN}/pg_basebackup", "-D", standby.data, "-h", "127.0.0.1", "-p", str(primary.port),
                  "-U", "postgres", "-X", "stream", "-R", "--no-sync", "-c", "fast"])
    assert r.returncode == 0, r.stderr
    standby.start()
    with standby.connect("app") as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
    yield primary, standby
    standby.destroy()
    primary.destroy()


def test_ddl_on_the_primary_replicates_with_its_audit_rows(pair):
    primary, standby = pair
    with primary.connect("app") as c:
        c.execute("CREATE TABLE replicated (id int)")
    def seen():
        with standby.connect("app") as c:
            return c.execute("SELECT count(*) FROM migsafe.statements "
                             "WHERE statement = 'CREATE TABLE replicated (id int)'").fetchone()[0] == 1
    wait_for(seen, 30, "the audit row on the standby")
    with standby.connect("app") as c:
        assert c.execute("SELECT ok FROM migsafe.verify_log()").fetchone()[0] is True


@pytest.mark.parametrize("sql,tag", [
    ("ALTER TABLE t ADD COLUMN c int", "ALTER TABLE"),
    ("CREATE TABLE new_one (id int)", "CREATE TABLE"),
    ("ALTER TYPE mood ADD VALUE 'sad'", "ALTER TYPE"),
    ("COMMENT ON TABLE t IS 'x'", "COMMENT"),
    ("CREATE INDEX ON t (id)", "CREATE INDEX"),
])
def test_ddl_on_the_standby_gets_postgresqls_read_only_error(pair, sql, tag):
    _, standby = pair
    mark = len(standby.log_text())
    with standby.connect("app") as c:
        r = run(c, sql)
        assert (r.sqlstate, r.message) == (READ_ONLY, f"cannot execute {tag} in a read-only transaction"), r
        assert c.execute("SELECT 1").fetchone()[0] == 1  # the session goes on
    log = standby.log_text()[mark:]
    assert "panicked" not in log and "stack backtrace" not in log.lower(), log[-3000:]
    assert "while recovery is in progress" not in log, log[-3000:]


def spool_files(cluster):
    d = os.path.join(cluster.data, "pg_migsafe", "inflight")
    return set(os.listdir(d)) if os.path.isdir(d) else set()


@pytest.mark.parametrize("sql,obj", [
    ("DROP TABLE t", "table public.t"),
    ("DROP FUNCTION f()", "function public.f()"),
])
def test_a_refusal_on_the_standby_says_ddl_belongs_on_the_primary(pair, sql, obj):
    _, standby = pair
    mark = len(standby.log_text())
    before = spool_files(standby)
    with standby.connect("app") as c:
        r = run(c, sql)
        assert r.sqlstate == "MS001", r
        assert obj in r.message and r.message.endswith(
            "this server is a standby (in recovery): DDL runs on the primary"), r
        assert "begin_phase(" not in r.message and "primary" in (r.error.diag.message_hint or ""), r
        # Nor a spool file of its own while the session lasts (a promoted standby's
        # writer would store its records again); what pg_basebackup copied from the
        # primary's is not the standby's.
        assert spool_files(standby) <= before, spool_files(standby) - before
    log = standby.log_text()[mark:]
    assert "panicked" not in log and "while recovery is in progress" not in log, log[-3000:]
    # The standby cannot write its audit log: the server log keeps the record.
    recs = [json.loads(l[l.index("{"):]) for l in log.splitlines() if "pg_migsafe_audit_standby" in l]
    assert any(x.get("kind") == "statement" and x.get("statement") == sql and x.get("decision") == "refused"
               for x in recs), recs
    with standby.connect() as c:
        assert c.execute("SELECT count(*) FROM pg_stat_activity "
                         "WHERE backend_type = 'pg_migsafe audit writer'").fetchone()[0] == 0


@pytest.mark.parametrize("sql,name", [
    ("SELECT migsafe.snapshot('x')", "migsafe.snapshot()"),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.t'], skip_expand => true)", "migsafe.begin_phase()"),
    ("SELECT migsafe.record_backup('b', 's3://x')", "migsafe.record_backup()"),
    ("SELECT migsafe.purge()", "migsafe.purge()"),
    ("SELECT migsafe.drop_snapshots('0')", "migsafe.drop_snapshots()"),
    ("SELECT * FROM migsafe.rollback(1, dry_run => false)", "migsafe.rollback(dry_run => false)"),
])
def test_functions_that_write_say_they_run_on_the_primary(pair, sql, name):
    _, standby = pair
    with standby.connect("app") as c:
        r = run(c, sql)
        assert r.sqlstate == READ_ONLY, r
        assert r.message == f"pg_migsafe: {name} writes, and this server is a standby (in recovery): run it on the primary", r


def test_functions_that_read_work_on_the_standby(pair):
    _, standby = pair
    with standby.connect("app") as c:
        assert c.execute("SELECT count(*) FROM migsafe.check('DROP TABLE t')").fetchone()[0] >= 1
        assert c.execute("SELECT count(*) FROM migsafe.rules()").fetchone()[0] > 10
        snap = c.execute("SELECT max(id) FROM migsafe.snapshot").fetchone()[0]
        c.execute("SELECT * FROM migsafe.diff(%s)", (snap,)).fetchall()
        c.execute("SELECT migsafe.rollback_sql(%s)", (snap,)).fetchone()
        c.execute("SELECT * FROM migsafe.rollback(%s)", (snap,)).fetchall()  # a dry run reads only
        assert c.execute("SELECT ok FROM migsafe.verify_log()").fetchone()[0] is True
        c.execute("SELECT * FROM migsafe.migrations").fetchall()
        c.execute("SELECT * FROM migsafe.metrics").fetchall()


def test_after_promotion_the_new_primary_records_ddl_and_the_chain_holds(pair):
    """Runs last: promotes the standby."""
    _, standby = pair
    r = _as_user([f"{PGBIN}/pg_ctl", "-D", standby.data, "-w", "promote"])
    assert r.returncode == 0, r.stderr

    def promoted():
        with standby.connect("app") as c:
            return c.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]
    wait_for(promoted, 30, "the promotion")
    with standby.connect("app") as c:
        c.execute("CREATE TABLE after_failover (id int)")
        assert run(c, "DROP TABLE t").sqlstate == "MS001"  # the usual refusal again

    def stored():
        with standby.connect("app") as c:
            return c.execute("SELECT count(*) FROM migsafe.statements WHERE statement IN "
                             "('CREATE TABLE after_failover (id int)', 'DROP TABLE t')").fetchone()[0] == 2
    wait_for(stored, 30, "the new primary's audit rows")
    with standby.connect("app") as c:
        ok, rows, _, _, reason = c.execute("SELECT * FROM migsafe.verify_log()").fetchone()
        assert ok, reason
