"""Maintenance tools run unchanged under enforcement (issue #13): pg_repack from
Debian (postgresql-15-repack, installed by `make test` at a version built for the
installed server) repacks a table with no approval and no setting change, its data
intact, and leaves nothing behind; the objects it drops are its own work objects, and a
user cannot pass a real table off as one."""
import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import new_db, run

from pgcluster import PGBIN, has_extension

PG_REPACK = os.path.join(PGBIN, "pg_repack")

needs_repack = pytest.mark.skipif(not os.path.exists(PG_REPACK) or not has_extension("pg_repack"),
                                  reason="pg_repack is installed by make test for the Debian server (tests/tools/deps.sh)")


def one(conn, sql, params=None):
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def repack(cluster, db, *args):
    return subprocess.run([PG_REPACK, "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
                           "-d", db, *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def rdb(cluster):
    db = new_db(cluster, owner="postgres")
    with cluster.connect(db) as c:
        c.execute("CREATE EXTENSION pg_repack")
        c.execute("CREATE TABLE big (id bigint PRIMARY KEY, v text, n int);"
                  "CREATE INDEX big_n ON big (n);"
                  "INSERT INTO big SELECT g, md5(g::text), g % 100 FROM generate_series(1, 50000) g;"
                  "DELETE FROM big WHERE id % 3 = 0; ANALYZE big")
    return db


@needs_repack
def test_pg_repack_runs_unchanged_under_enforce(cluster, rdb):
    with cluster.connect(rdb) as c:
        assert one(c, "SHOW migsafe.mode") == "enforce"
        before = one(c, "SELECT pg_relation_filenode('big')")
        digest = one(c, "SELECT md5(string_agg(id || v || n, ',' ORDER BY id)) FROM big")
    # Not even block_risky_rows stops it: the copy's index builds are on a work object.
    cluster.configure(migsafe__block_risky_rows="1")
    try:
        r = repack(cluster, rdb, "-t", "big")
    finally:
        cluster.configure(migsafe__block_risky_rows=None)
    assert r.returncode == 0, r.stderr
    assert "refused" not in r.stderr and "pg_migsafe" not in r.stderr, r.stderr
    with cluster.connect(rdb) as c:
        assert one(c, "SELECT pg_relation_filenode('big')") != before          # really rewritten
        assert one(c, "SELECT md5(string_agg(id || v || n, ',' ORDER BY id)) FROM big") == digest
        # Nothing left behind: no trigger on the user's table, no log or copy table.
        assert one(c, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'big'::regclass") == 0
        assert one(c, "SELECT count(*) FROM pg_class WHERE relnamespace = 'repack'::regnamespace "
                      "AND (relname LIKE 'log\\_%' OR relname LIKE 'table\\_%')") == 0
        assert one(c, "SELECT count(*) FROM pg_type WHERE typnamespace = 'repack'::regnamespace "
                      "AND typname LIKE 'pk\\_%'") == 0
        # Its drops were allowed as work objects, never refused; the audit log has them.
        refused = c.execute("SELECT count(*) FROM migsafe.statements WHERE decision = 'refused'").fetchone()[0]
        assert refused == 0
        assert run(c, "SELECT 1").ok


@needs_repack
def test_pg_repack_while_the_table_is_written(cluster, rdb):
    stop = threading.Event()
    written = []

    def writer():
        with cluster.connect(rdb) as w:
            i = 100000
            while not stop.is_set():
                w.execute("INSERT INTO big VALUES (%s, 'w', 1)", (i,))
                written.append(i)
                i += 1
                time.sleep(0.002)

    t = threading.Thread(target=writer)
    t.start()
    try:
        r = repack(cluster, rdb, "-t", "big")
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stderr
    with cluster.connect(rdb) as c:
        assert written and one(c, "SELECT count(*) FROM big WHERE id >= 100000") == len(written)
        assert one(c, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'big'::regclass") == 0


@needs_repack
def test_a_real_table_cannot_pass_for_a_work_object(cluster, rdb):
    with cluster.connect() as c:
        run(c, "CREATE ROLE tool_mimic LOGIN")
    with cluster.connect(rdb) as c:
        c.execute("GRANT CREATE ON SCHEMA public TO tool_mimic; GRANT USAGE, CREATE ON SCHEMA repack TO tool_mimic;"
                  f"GRANT CREATE ON DATABASE {rdb} TO tool_mimic")
        # A table the superuser made in pg_repack's schema in an earlier session: no
        # running operation of this session's role created it.
        c.execute("CREATE TABLE repack.log_424242 (id int); INSERT INTO repack.log_424242 VALUES (1)")
    with cluster.connect(rdb) as c:
        assert run(c, "DROP TABLE repack.log_424242").refused_rule() == "drop-table"
    with cluster.connect(rdb, "tool_mimic") as m:
        # A role that may create in the extension's schema, and is no superuser: its
        # tables there are ordinary tables.
        m.execute("CREATE TABLE repack.log_1 (id int)")
        assert run(m, "DROP TABLE repack.log_1").refused_rule() == "drop-table"
        # Nor does a schema of its own, added to an extension it owns (a trusted one),
        # make its tables work objects.
        m.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto; CREATE SCHEMA mimic; "
                  "ALTER EXTENSION pgcrypto ADD SCHEMA mimic; CREATE TABLE mimic.real_data (id int)")
        with cluster.connect(rdb, "tool_mimic") as m2:
            assert run(m2, "DROP TABLE mimic.real_data").refused_rule() == "drop-table"
        # Its own table in an ordinary schema, and a trigger calling an ordinary function.
        m.execute("CREATE TABLE mine (id int); CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql "
                  "AS 'BEGIN RETURN NEW; END'; CREATE TRIGGER t BEFORE INSERT ON mine FOR EACH ROW EXECUTE FUNCTION f()")
        assert run(m, "DROP TRIGGER t ON mine").refused_rule() == "drop-trigger"
        assert run(m, "DROP TABLE mine").refused_rule() == "drop-table"
    with cluster.connect(rdb) as su:
        # The superuser's own work object, while its session runs, from another session
        # of the same role: allowed; once the creating session has ended: judged again.
        su.execute("CREATE TABLE repack.table_7 (id int)")
        with cluster.connect(rdb) as other:
            assert run(other, "DROP TABLE IF EXISTS repack.table_7").ok
        su.execute("CREATE TABLE repack.table_8 (id int)")
        assert one(su, "SELECT count(*) FROM migsafe.work_object WHERE identity = 'repack.table_8' "
                       "AND classid = 'pg_class'::regclass") == 1
    with cluster.connect(rdb) as c:
        assert run(c, "DROP TABLE repack.table_8").refused_rule() == "drop-table"
    with cluster.connect(rdb, "tool_mimic") as m:
        # The record is pg_migsafe's: no one else writes it.
        assert run(m, "INSERT INTO migsafe.work_object VALUES (1259, 1, 'x', 'tool_mimic', 1, now())").sqlstate \
            == "42501"


@needs_repack
def test_only_an_operations_own_objects_are_work_objects(cluster, rdb):
    with cluster.connect(rdb) as c:
        c.execute("CREATE EXTENSION moddatetime; ALTER TABLE big ADD COLUMN ts timestamp;"
                  "CREATE TABLE old_part (id bigint); INSERT INTO old_part VALUES (1)")
    with cluster.connect(rdb) as creator:
        # A permanent trigger that calls an extension's function is the user's: no table
        # of that extension's schema comes with it.
        creator.execute("CREATE TRIGGER big_ts BEFORE UPDATE ON big FOR EACH ROW EXECUTE FUNCTION moddatetime(ts)")
        # A work table that takes an existing table along when dropped.
        creator.execute("CREATE TABLE repack.par (id bigint) PARTITION BY RANGE (id)")
        creator.execute("ALTER TABLE repack.par ATTACH PARTITION old_part FOR VALUES FROM (0) TO (100)")
        with cluster.connect(rdb) as other:
            assert run(other, "DROP TRIGGER big_ts ON big").refused_rule() == "drop-trigger"
            r = run(other, "DROP TABLE repack.par")
            assert r.refused_rule() == "drop-table" and "old_part" in r.message, r
        assert one(creator, "SELECT count(*) FROM old_part") == 1


def test_a_squatted_migsafe_schema_is_never_used_with_raised_privileges(cluster):
    # In a database without pg_migsafe any role that may create a schema can call one
    # "migsafe" and fill it with look-alikes of the extension's tables and functions:
    # the hook must never read or write them as the superuser.
    with cluster.connect() as c:
        run(c, "CREATE ROLE squatter LOGIN")
    db = new_db(cluster, owner="squatter", extension=False)
    pwn = ("CREATE SCHEMA app_s; CREATE FUNCTION app_s.pwn() RETURNS trigger LANGUAGE plpgsql AS "
           "$$BEGIN EXECUTE 'ALTER ROLE squatter SUPERUSER'; RETURN NULL; END$$;"
           "CREATE FUNCTION app_s.pwn_rows() RETURNS SETOF record LANGUAGE plpgsql AS "
           "$$BEGIN EXECUTE 'ALTER ROLE squatter SUPERUSER'; END$$;")
    with cluster.connect(db, "squatter") as s:
        s.execute(pwn)
        s.execute("CREATE SCHEMA migsafe "
                  "CREATE TABLE work_object (classid oid, objid oid, identity text, created_by name, "
                  "  session_pid int, session_start timestamptz, created_at timestamptz, PRIMARY KEY (classid, objid)) "
                  "CREATE TABLE phase (id int) "
                  "CREATE TABLE snapshot (id int) CREATE TABLE snapshot_part (id int) "
                  "CREATE TRIGGER p BEFORE INSERT OR UPDATE OR DELETE ON work_object "
                  "  FOR EACH STATEMENT EXECUTE FUNCTION app_s.pwn()")
        # Creates a trigger (the work-object recording at commit), drops (the lookup),
        # is refused (the phase lookup), reaches a table (the automatic snapshot).
        s.execute("CREATE TABLE app_s.t (id int); CREATE TRIGGER q BEFORE INSERT ON app_s.t "
                  "FOR EACH ROW EXECUTE FUNCTION app_s.pwn()")
        assert run(s, "DROP TRIGGER q ON app_s.t").refused_rule() == "drop-trigger"
        assert run(s, "DROP TABLE app_s.t").refused_rule() == "drop-table"
        assert run(s, "ALTER TABLE app_s.t ADD COLUMN c int").ok
    with cluster.connect() as c:
        assert one(c, "SELECT rolsuper FROM pg_roles WHERE rolname = 'squatter'") is False


# pg_cron and pgaudit keep working: a cluster that preloads both before pg_migsafe
# (pgaudit first: pg_migsafe's hook runs first and passes on to pgaudit's), as the
# Debian packages postgresql-15-cron and postgresql-15-pgaudit install them.


@pytest.fixture(scope="module")
def tools_cluster():
    if not (has_extension("pg_cron") and has_extension("pgaudit")):
        pytest.skip("pg_cron and pgaudit are installed by make test (tests/tools/deps.sh)")
    import conftest
    from pgcluster import Cluster
    c = Cluster("tools", preload="pgaudit,pg_cron,pg_migsafe",
                settings={"cron.use_background_workers": "on", "pgaudit.log": "'ddl'",
                          "pgaudit.log_level": "log"})
    conftest._clusters["tools"] = c          # destroyed, and its log checked for crashes, at the end
    with c.connect() as conn:
        conn.execute("CREATE EXTENSION pg_migsafe")
        conn.execute("CREATE EXTENSION pgaudit")
        conn.execute("CREATE EXTENSION pg_cron")
        conn.execute("CREATE ROLE cron_job LOGIN")
        conn.execute("GRANT USAGE ON SCHEMA cron TO cron_job; GRANT CREATE ON SCHEMA public TO cron_job")
    return c


def test_pgaudit_logs_the_drop_that_went_to_the_recycle_bin(tools_cluster):
    c = tools_cluster
    with c.connect() as conn:
        conn.execute("CREATE TABLE audited_t (id int PRIMARY KEY); INSERT INTO audited_t VALUES (1)")
        conn.execute("SELECT migsafe.begin_phase('contract', 'drop-audited', objects => ARRAY['public.audited_t'], "
                     "skip_expand => true)")
        mark = len(c.log_text())
        cur = conn.execute("DROP TABLE audited_t")
        assert cur.statusmessage == "DROP TABLE"              # the client's tag, as for a real drop
        assert "moved to the recycle bin" in " ".join(n.message_primary for n in conn.notices)
        assert one(conn, "SELECT count(*) FROM migsafe.recycle WHERE table_name = 'audited_t'") == 1
        conn.execute("SELECT migsafe.end_phase()")
        # The data is in the recycle bin, and the DROP itself is in pgaudit's log.
        stored = one(conn, "SELECT stored_as FROM migsafe.recycle WHERE table_name = 'audited_t'")
        assert one(conn, f"SELECT count(*) FROM migsafe_recycle.{stored}") == 1
    deadline = time.time() + 10
    while time.time() < deadline and "DROP TABLE audited_t" not in c.log_text()[mark:]:
        time.sleep(0.1)
    audit = [l for l in c.log_text()[mark:].splitlines() if "AUDIT: SESSION" in l]
    assert any(",DDL,DROP TABLE," in l and "DROP TABLE audited_t" in l for l in audit), audit
    # The moves are pg_migsafe's own and are logged as what they are.
    assert any(",DDL,ALTER TABLE," in l and "SET SCHEMA migsafe_recycle" in l for l in audit), audit
    # A refused DROP is not logged as done.
    with c.connect() as conn:
        conn.execute("CREATE TABLE kept_t (id int)")
        mark = len(c.log_text())
        assert run(conn, "DROP TABLE kept_t").sqlstate == "MS001"
    assert not [l for l in c.log_text()[mark:].splitlines() if "AUDIT:" in l and "DROP TABLE kept_t" in l]


def test_pg_cron_jobs_run_under_enforcement(tools_cluster):
    """A cron job (its own role, a background worker) runs additive DDL; a destructive
    job is refused and says so in cron.job_run_details; with a standing approval for
    the job's role, retention runs."""
    c = tools_cluster
    with c.connect() as conn:
        conn.execute("CREATE TABLE public.jobs_log (at timestamptz NOT NULL, msg text) PARTITION BY RANGE (at);"
                     "CREATE TABLE public.jobs_log_2000 PARTITION OF public.jobs_log FOR VALUES FROM ('2000-01-01') TO ('2000-02-01');"
                     "CREATE TABLE public.jobs_log_2999 PARTITION OF public.jobs_log FOR VALUES FROM ('2999-01-01') TO ('2999-02-01');"
                     "ALTER TABLE public.jobs_log OWNER TO cron_job; ALTER TABLE public.jobs_log_2000 OWNER TO cron_job;"
                     "ALTER TABLE public.jobs_log_2999 OWNER TO cron_job; INSERT INTO public.jobs_log VALUES ('2000-01-02', 'old');"
                     "CREATE TABLE public.victim (id int); ALTER TABLE public.victim OWNER TO cron_job")
        conn.execute("SELECT migsafe.grant_standing_approval('jobs-log-retention', 'cron_job', 'public.jobs_log', '1 year')")
    with c.connect(user="cron_job") as conn:
        conn.execute("SELECT cron.schedule('add', '* * * * *', 'CREATE TABLE IF NOT EXISTS public.cron_made (id int)')")
        conn.execute("SELECT cron.schedule('retention', '* * * * *', 'DROP TABLE IF EXISTS public.jobs_log_2000')")
        conn.execute("SELECT cron.schedule('destroy', '* * * * *', 'DROP TABLE public.victim')")
    deadline = time.time() + 130
    with c.connect() as conn:
        while time.time() < deadline:
            done = dict(conn.execute("SELECT j.jobname, max(d.status) FROM cron.job j JOIN cron.job_run_details d "
                                     "ON d.jobid = j.jobid WHERE d.status IN ('succeeded', 'failed') GROUP BY 1").fetchall())
            if len(done) == 3:
                break
            time.sleep(1)
        assert done == {"add": "succeeded", "retention": "succeeded", "destroy": "failed"}, done
        msg = one(conn, "SELECT d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
                        "WHERE j.jobname = 'destroy' AND d.status = 'failed' LIMIT 1")
        assert "pg_migsafe refused drop-table on table public.victim" in msg
        conn.execute("SELECT cron.unschedule(jobid) FROM cron.job")
        assert one(conn, "SELECT to_regclass('public.cron_made') IS NOT NULL") is True
        assert one(conn, "SELECT to_regclass('public.victim') IS NOT NULL") is True
        assert one(conn, "SELECT to_regclass('public.jobs_log_2000') IS NULL") is True
        assert one(conn, "SELECT count(*) FROM migsafe.recycle WHERE table_name = 'jobs_log_2000'") == 1
        # The audit log has each job's statements, under the job's role.
        deadline = time.time() + 20
        while time.time() < deadline:
            n = one(conn, "SELECT count(DISTINCT decision) FROM migsafe.statements WHERE \"session_user\" = 'cron_job'")
            if n == 3:
                break
            time.sleep(0.2)
        assert sorted(r[0] for r in conn.execute(
            "SELECT DISTINCT decision FROM migsafe.statements WHERE \"session_user\" = 'cron_job'").fetchall()) \
            == ["allowed", "approved", "refused"]
