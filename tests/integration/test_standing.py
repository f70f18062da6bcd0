"""Standing approvals (issue #13, docs/tools.md): pg_partman's retention runs every day
under enforcement, approved once by a DBA. pg_partman 4.x from Debian
(postgresql-15-partman, installed by `make test` at a version built for the installed
server) drops, detaches or moves the partitions past the retention as its own login
role; a standing approval for that role and table covers exactly those, in every
transaction, until it is revoked; the partitions go to the recycle bin and come back
attached; anything else — a younger partition, another table, another role, a
CASCADE, a table passed off as a partition — is still refused, and the refusal says
why the standing approval does not cover it."""
import os
import time

import pytest

from conftest import REFUSED, mode, new_db, run
from pgcluster import has_extension

pytestmark = pytest.mark.skipif(not has_extension("pg_partman"),
                                reason="pg_partman is installed by make test for the Debian server (tests/tools/deps.sh)")

JOB = "partman_job"


def one(conn, sql, params=None):
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def rows(conn, sql, params=None):
    return conn.execute(sql, params).fetchall()


@pytest.fixture
def pdb(cluster):
    """A database with pg_partman and public.events: monthly partitions from six months
    ago to four months ahead (pg_partman's premake), 170 days of rows, retention 3
    months; the maintenance role partman_job owns the table, as in pg_partman's docs."""
    with cluster.connect() as c:
        if not one(c, "SELECT 1 FROM pg_roles WHERE rolname = %s", (JOB,)):
            c.execute(f"CREATE ROLE {JOB} LOGIN")
        if not one(c, "SELECT 1 FROM pg_roles WHERE rolname = 'dba2'"):
            c.execute("CREATE ROLE dba2 LOGIN")
            c.execute("GRANT migsafe_approver TO dba2")
    db = new_db(cluster, owner="postgres")
    with cluster.connect(db) as c:
        c.execute("CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman")
        c.execute(f"GRANT ALL ON SCHEMA partman TO {JOB}; GRANT ALL ON ALL TABLES IN SCHEMA partman TO {JOB};"
                  f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO {JOB};"
                  f"GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO {JOB};"
                  f"GRANT CREATE ON SCHEMA public TO {JOB}")
    with cluster.connect(db, user=JOB) as c:
        c.execute("CREATE TABLE public.events (id bigint, at timestamptz NOT NULL, payload text) PARTITION BY RANGE (at)")
        c.execute("SELECT partman.create_parent('public.events', 'at', 'native', 'monthly', "
                  "p_start_partition := (now() - interval '6 months')::date::text)")
        c.execute("INSERT INTO public.events SELECT g, now() - g * interval '1 day', 'e' || g "
                  "FROM generate_series(1, 170) g")
        c.execute("CREATE INDEX ON public.events (id)")
    with cluster.connect(db) as c:
        c.execute("UPDATE partman.part_config SET retention = '3 months', retention_keep_table = false "
                  "WHERE parent_table = 'public.events'")
    return db


def partitions(c, parent="public.events"):
    return [r[0] for r in rows(c, "SELECT format('%%I.%%I', c.relnamespace::regnamespace, c.relname) "
                                  "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                  "WHERE i.inhparent = %s::regclass ORDER BY 1", (parent,))]


def past_retention(c, retention="3 months"):
    """The partitions pg_partman's retention drops now (its own arithmetic)."""
    return [r[0] for r in rows(
        c, "SELECT p.partition_tablename FROM partman.show_partitions('public.events') p, "
           "LATERAL partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename, "
           "'1 month', 'public.events') i "
           "WHERE i.child_start_time + interval '1 month' < now() - %s::interval ORDER BY 1", (retention,))]


def eventually(c, sql, params, want, timeout=20):
    """The audit log is written by a background worker: wait for the rows."""
    deadline = time.time() + timeout
    while True:
        got = one(c, sql, params)
        if got == want or time.time() > deadline:
            return got
        time.sleep(0.1)


def maintain(cluster, db):
    with cluster.connect(db, user=JOB) as c:
        r = run(c, "SELECT partman.run_maintenance('public.events')")
        return r, list(r.notices)


def grant(c, **kw):
    args = {"name": "events-retention", "for_role": JOB, "parent": "public.events", "older_than": "3 months"}
    args.update(kw)
    names = ", ".join(f"{k} => %({k})s" for k in args)
    return one(c, f"SELECT migsafe.grant_standing_approval({names})", args)


def test_without_a_standing_approval_retention_is_refused_and_nothing_happens(cluster, pdb):
    with cluster.connect(pdb) as c:
        before = partitions(c)
        old = past_retention(c)
    assert len(old) >= 3
    r, _ = maintain(cluster, pdb)
    assert not r.ok and "refused drop-table" in r.message, r
    with cluster.connect(pdb) as c:
        assert partitions(c) == before


def test_partman_retention_runs_every_day_under_a_standing_approval(cluster, pdb):
    with cluster.connect(pdb) as c:
        rows_before = one(c, "SELECT count(*) FROM public.events")
        old = past_retention(c)
        kept_rows = one(c, "SELECT count(*) FROM public.events WHERE at >= now() - interval '3 months'")
        sid = grant(c, reason="OPS-12: 3 months of events")
        phase = rows(c, "SELECT kind, state, scope, objects, older_than::text, valid_until FROM migsafe.phases WHERE id = %s", (sid,))[0]
        assert phase[:5] == ("standing", "active", JOB, ["partitions of public.events"], "3 mons")
        assert phase[5] is None                             # no expiry
    r, notices = maintain(cluster, pdb)
    assert r.ok, r
    approved = [n.message_primary for n in notices if "approved by standing approval" in n.message_primary]
    assert len(approved) == len(old), notices
    with cluster.connect(pdb) as c:
        left = [p.split(".")[-1] for p in partitions(c)]
        assert not set(old) & set(left)
        assert "events_default" in left
        # Every old partition is in the recycle bin, with its rows; nothing else moved.
        bin_ = rows(c, "SELECT table_name, row_count FROM migsafe.recycle ORDER BY id")
        assert sorted(b[0] for b in bin_) == sorted(old)
        kept = one(c, "SELECT count(*) FROM public.events")
        assert kept + sum(one(c, f"SELECT count(*) FROM migsafe_recycle.{s}") for (s,) in
                          rows(c, "SELECT stored_as FROM migsafe.recycle")) == rows_before
        assert one(c, "SELECT count(*) FROM public.events WHERE at >= now() - interval '3 months'") == kept_rows
        # Each use recorded, in the phase and in the audit log; the approval stands.
        uses = rows(c, "SELECT used_by, rule_ids FROM migsafe.phase_use WHERE phase_id = %s", (sid,))
        assert uses == [(JOB, ["drop-table"])] * len(old)
        assert eventually(c, "SELECT count(*) FROM migsafe.statements WHERE command_tag = 'DROP TABLE' "
                             "AND decision = 'approved' AND phase_id = %s AND \"current_user\" = %s",
                          (sid, JOB), len(old)) == len(old)
        assert one(c, "SELECT state FROM migsafe.phases WHERE id = %s", (sid,)) == "active"
        # The DBA brings one back (attached again, rows visible through the table)...
        rid, name = rows(c, "SELECT id, table_name FROM migsafe.recycle ORDER BY id LIMIT 1")[0]
        c.execute("SELECT migsafe.undrop(%s)", (rid,))
        assert f"public.{name}" in partitions(c)
    # ... and the next day's run, another transaction, drops it again under the same approval.
    r, notices = maintain(cluster, pdb)
    assert r.ok, r
    with cluster.connect(pdb) as c:
        assert f"public.{name}" not in partitions(c)
        assert one(c, "SELECT count(*) FROM migsafe.phase_use WHERE phase_id = %s", (sid,)) == len(old) + 1
    # Revoked: the next run is refused again.
    with cluster.connect(pdb) as c:
        c.execute("SELECT migsafe.undrop(%s)", (rid + len(old),))
        c.execute("SELECT migsafe.end_phase(%s)", (sid,))
        assert one(c, "SELECT state FROM migsafe.phases WHERE id = %s", (sid,)) == "ended"
    r, _ = maintain(cluster, pdb)
    assert not r.ok and "pg_migsafe refused drop-table" in r.message   # pg_partman re-raises it


def test_keep_table_and_retention_schema_are_covered(cluster, pdb):
    with cluster.connect(pdb) as c:
        old = past_retention(c)
        bounds = {p: one(c, "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = %s::regclass", (f"public.{p}",))
                  for p in old}
        grant(c)
        c.execute("UPDATE partman.part_config SET retention_keep_table = true WHERE parent_table = 'public.events'")
    r, notices = maintain(cluster, pdb)                     # DETACH PARTITION
    assert r.ok, r
    assert sum("detach-partition on table public.events approved" in n.message_primary for n in notices) == len(old)
    with cluster.connect(pdb) as c:
        for p in old:
            assert one(c, "SELECT relispartition FROM pg_class WHERE oid = %s::regclass", (f"public.{p}",)) is False
        # The DBA attaches two back (an existing table into a table under a standing
        # approval: a contract phase lists them); this time pg_partman moves them to an
        # archive schema.
        c.execute("SELECT migsafe.begin_phase('contract', 'reattach', objects => %s, skip_expand => true)",
                  ([f"public.{p}" for p in old],))
        for p in old[:2]:
            c.execute(f"ALTER TABLE public.events ATTACH PARTITION public.{p} {bounds[p]}")
        c.execute(f"CREATE SCHEMA archive AUTHORIZATION {JOB}")
        c.execute("UPDATE partman.part_config SET retention_schema = 'archive' WHERE parent_table = 'public.events'")
    r, notices = maintain(cluster, pdb)                     # DETACH, then SET SCHEMA archive
    assert r.ok, r
    assert sum("set-schema on table" in n.message_primary and "approved by standing approval" in n.message_primary for n in notices) == 2
    with cluster.connect(pdb) as c:
        assert sorted(one(c, "SELECT array_agg(relname::text) FROM pg_class WHERE relnamespace = 'archive'::regnamespace AND relkind = 'r'")) == sorted(old[:2])
        # Moving a partition that was not detached under the approval is still refused.
        r = run(c, f"SET ROLE {JOB}; ALTER TABLE public.{old[2]} SET SCHEMA archive")
        assert not r.ok and r.sqlstate == REFUSED
        c.execute("RESET ROLE")
        # A detach rolled back (to a savepoint) does not leave the partition movable.
        c.execute("SELECT migsafe.begin_phase('contract', 'reattach', objects => %s, skip_expand => true)",
                  ([f"public.{old[2]}"],))
        c.execute(f"ALTER TABLE public.events ATTACH PARTITION public.{old[2]} {bounds[old[2]]}")
        c.execute("SELECT migsafe.end_phase()")
    with cluster.connect(pdb, user=JOB, autocommit=False) as c:
        c.execute("SAVEPOINT s")
        c.execute(f"ALTER TABLE public.events DETACH PARTITION public.{old[2]}")
        c.execute("ROLLBACK TO s")
        r = run(c, f"ALTER TABLE public.{old[2]} SET SCHEMA archive")
        assert r.sqlstate == REFUSED, r
        c.rollback()
    with cluster.connect(pdb) as c:
        assert one(c, "SELECT relispartition FROM pg_class WHERE oid = %s::regclass", (f"public.{old[2]}",)) is True


def test_what_a_standing_approval_does_not_cover_is_refused_with_the_reason(cluster, pdb):
    with cluster.connect(pdb) as c:
        sid = grant(c, partitions="public.events_p*")
        young = [p for p in partitions(c) if p.split(".")[1] not in past_retention(c) and p != "public.events_default"]
        c.execute(f"CREATE VIEW public.events_v AS SELECT * FROM {past_retention(c)[0]}")
        c.execute(f"ALTER VIEW public.events_v OWNER TO {JOB}")
        c.execute(f"CREATE TABLE public.other (id bigint, at timestamptz NOT NULL, payload text) PARTITION BY RANGE (at);"
                  f"CREATE TABLE public.other_p1 PARTITION OF public.other FOR VALUES FROM ('2000-01-01') TO ('2000-02-01');"
                  f"CREATE TABLE public.keep (id bigint, at timestamptz NOT NULL, payload text);"
                  f"INSERT INTO public.keep VALUES (1, '2000-01-05', 'precious');"
                  f"ALTER TABLE public.other OWNER TO {JOB}; ALTER TABLE public.other_p1 OWNER TO {JOB};"
                  f"ALTER TABLE public.keep OWNER TO {JOB}")
        oldest = past_retention(c)[0]
    with cluster.connect(pdb, user=JOB) as c:
        # Too young: the refusal names the approval, the partition's end and the cutoff.
        r = run(c, f"DROP TABLE {young[0]}")
        assert not r.ok and r.sqlstate == REFUSED
        detail = r.error.diag.message_detail
        assert f"Standing approval {sid} (events-retention) covers partitions matching public.events_p* of public.events" in detail
        assert f"not partition {young[0]}: its range ends" in detail and "after the approval's cutoff" in detail
        # The default partition (outside the pattern, and with no end in time).
        assert run(c, "DROP TABLE public.events_default").sqlstate == REFUSED
        # Another table's old partition; a CASCADE that takes a view along; TRUNCATE.
        assert run(c, "DROP TABLE public.other_p1").sqlstate == REFUSED
        assert run(c, f"DROP TABLE public.{oldest} CASCADE").sqlstate == REFUSED
        assert run(c, f"TRUNCATE public.{oldest}").sqlstate == REFUSED
        # A table passed off as an old partition: attaching an existing table to a table
        # under a standing approval needs an approval of its own, even after the table
        # was given the partitioned table's columns and an old range.
        r = run(c, "ALTER TABLE public.events ATTACH PARTITION public.keep FOR VALUES FROM ('2000-01-01') TO ('2000-02-01')")
        assert r.refused_rule() == "attach-under-standing-approval", r
        assert f"The partitioned table public.events is under standing approval {sid} (events-retention)" in r.error.diag.message_detail
        r = run(c, "BEGIN; ALTER TABLE public.keep ADD COLUMN extra int; ALTER TABLE public.events ADD COLUMN extra int;"
                   "ALTER TABLE public.events ATTACH PARTITION public.keep FOR VALUES FROM (MINVALUE) TO ('2000-02-01')")
        assert r.refused_rule() == "attach-under-standing-approval", r
        c.execute("ROLLBACK")
        # Renaming it to fit the pattern is a rename: refused.
        assert run(c, "ALTER TABLE public.keep RENAME TO events_p_keep").sqlstate == REFUSED
        # A table created and attached in the same transaction, as pg_partman does, is fine.
        assert run(c, "BEGIN; CREATE TABLE public.events_p_new (LIKE public.events);"
                      "ALTER TABLE public.events ATTACH PARTITION public.events_p_new FOR VALUES FROM ('1990-01-01') TO ('1990-02-01');"
                      "COMMIT").ok
        # A partition that is itself partitioned is not covered (its partitions would be
        # lost for good): the refusal says so.
        assert run(c, "BEGIN; CREATE TABLE public.events_p_sub PARTITION OF public.events FOR VALUES FROM ('1980-01-01') TO ('1980-02-01') PARTITION BY RANGE (at);"
                      "CREATE TABLE public.events_p_sub1 PARTITION OF public.events_p_sub FOR VALUES FROM ('1980-01-01') TO ('1980-02-01'); COMMIT").ok
        r = run(c, "DROP TABLE public.events_p_sub")
        assert r.sqlstate == REFUSED and "it is itself partitioned" in r.error.diag.message_detail, r
    # Another role, even one that may drop the table (the owner of the schema).
    with cluster.connect(pdb) as c:
        c.execute("SET ROLE app_owner")
        assert run(c, f"DROP TABLE public.{oldest}").sqlstate == REFUSED
    with cluster.connect(pdb) as c:
        assert one(c, "SELECT count(*) FROM public.keep") == 1
        assert one(c, "SELECT count(*) FROM migsafe.phase_use") == 0


def test_granting_checks_the_caller_and_the_table(cluster, pdb):
    with cluster.connect(pdb) as c:
        c.execute("CREATE TABLE public.plain (id int); CREATE TABLE public.bylist (k text) PARTITION BY LIST (k);"
                  "CREATE TABLE public.byid (id bigint) PARTITION BY RANGE (id)")
    with cluster.connect(pdb, user=JOB) as c:   # the maintenance role cannot approve itself
        r = run(c, "SELECT migsafe.grant_standing_approval('x', 'partman_job', 'public.events', '1 day')")
        assert r.sqlstate == "42501"
    with cluster.connect(pdb) as c:
        for args, state in [
            ("'x', 'partman_job', 'events', '1 day'", "22023"),                 # not qualified
            ("'x', 'partman_job', 'public.nope', '1 day'", "42P01"),
            ("'x', 'partman_job', 'public.plain', '1 day'", "42809"),
            ("'x', 'partman_job', 'public.bylist', '1 day'", "22023"),
            ("'x', 'partman_job', 'public.byid', '1 day'", "22023"),
            ("'x', 'partman_job', 'public.events', '0 days'", "22023"),
            ("'x', 'partman_job', 'public.events', NULL", "22023"),
            ("'x', 'no_such_role', 'public.events', '1 day'", "42704"),
            ("'x', NULL, 'public.events', '1 day'", "22023"),
            ("'', 'partman_job', 'public.events', '1 day'", "22023"),
            ("'x', 'partman_job', 'public.events', '1 day', partitions => 'events_p*'", "22023"),
            ("'x', 'partman_job', 'public.events', '1 day', partitions => 'table public.events_p*'", "22023"),
            ("'x', 'partman_job', 'public.events', '1 day', valid_for => '-1 day'", "22023"),
        ]:
            r = run(c, f"SELECT migsafe.grant_standing_approval({args})")
            assert r.sqlstate == state, (args, r)
        assert one(c, "SELECT count(*) FROM migsafe.phase") == 0


def test_four_eyes_and_expiry(cluster, pdb):
    cluster.configure(migsafe__require_approval="on")
    try:
        with cluster.connect(pdb) as c:
            sid = grant(c, valid_for="30 days")
            assert one(c, "SELECT state FROM migsafe.phases WHERE id = %s", (sid,)) == "pending"
            assert run(c, "SELECT migsafe.approve(%s)" % sid).sqlstate == "42501"   # not the requester
        r, _ = maintain(cluster, pdb)
        assert not r.ok and "pg_migsafe refused drop-table" in r.message         # pending approves nothing
        with cluster.connect(pdb, user="dba2") as c:
            c.execute("SELECT migsafe.approve(%s)" % sid)
            row = rows(c, "SELECT state, approved_by, valid_until > now() + interval '29 days' FROM migsafe.phases WHERE id = %s", (sid,))[0]
            assert row == ("active", "dba2", True)
        r, _ = maintain(cluster, pdb)
        assert r.ok, r
    finally:
        cluster.configure(migsafe__require_approval=None)


def test_in_warn_mode_nothing_changes(cluster, pdb):
    with mode(cluster, "warn"):
        r, _ = maintain(cluster, pdb)
        assert r.ok, r
    with cluster.connect(pdb) as c:
        assert one(c, "SELECT count(*) FROM migsafe.recycle") == 0


def test_undrop_attaches_with_the_same_bounds_whatever_the_dropping_session_printed(cluster, pdb):
    with cluster.connect(pdb) as c:
        grant(c)
        old = past_retention(c)[0]
        bound = one(c, "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = %s::regclass", (f"public.{old}",))
    with cluster.connect(pdb, user=JOB) as c:
        c.execute("SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Kolkata'")
        assert run(c, f"DROP TABLE public.{old}").ok
    with cluster.connect(pdb) as c:
        rid = one(c, "SELECT id FROM migsafe.recycle WHERE table_name = %s", (old,))
        assert "partition of public.events" in one(c, "SELECT migsafe.undrop(%s)", (rid,))
        assert one(c, "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = %s::regclass",
                   (f"public.{old}",)) == bound
