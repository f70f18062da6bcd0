"""Upgrades: a database that installed pg_migsafe 0.1.0, 0.2.0 or 0.3.0 (their SQL, kept
installable in sql/released/, with the new library — which works with that SQL until
the update) moves to the current release with
`ALTER EXTENSION pg_migsafe UPDATE`, and then has exactly what a fresh install has —
compared catalog by catalog (functions with their definitions, privileges and security
attributes, tables and columns, constraints, indexes, triggers, views, types,
comments, schema privileges, extension membership) — while everything 0.1.0 stored
keeps working: the audit log and its hash chain (the upgrade itself is recorded),
open phases, snapshots and the recycle bin (undrop of what 0.1.0 put there)."""
import time

import pytest

from conftest import new_db, run

OLD = "0.1.0"
RELEASES = ["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"]

# One row per object of the extension's schemas, with everything a user of the
# extension depends on; an upgraded database and a fresh one must give the same rows.
FINGERPRINT = r"""
-- (privileges by role name, the owner's own entry included, the grantor left out)
WITH nsp AS (
  SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname IN ('migsafe', 'migsafe_recycle')
)
SELECT 'schema', n.nspname, '', pg_catalog.array_to_string(ARRAY(
         SELECT pg_catalog.concat(coalesce(r.rolname, 'PUBLIC'), ':', a.privilege_type, ':', a.is_grantable)
           FROM pg_catalog.aclexplode(n.nspacl) a LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee ORDER BY 1), ','),
       pg_catalog.obj_description(n.oid, 'pg_namespace')
  FROM pg_catalog.pg_namespace n WHERE n.nspname IN ('migsafe', 'migsafe_recycle')
UNION ALL
SELECT 'function', p.oid::pg_catalog.regprocedure::text,
       pg_catalog.concat_ws(' | ', p.prokind, l.lanname, p.prosecdef, p.provolatile, p.proisstrict, p.proleakproof,
                            p.proparallel, p.proretset, pg_catalog.pg_get_function_result(p.oid),
                            pg_catalog.pg_get_function_arguments(p.oid), p.proconfig::text, p.probin, p.prosrc),
       pg_catalog.array_to_string(ARRAY(
         SELECT pg_catalog.concat(coalesce(r.rolname, 'PUBLIC'), ':', a.privilege_type, ':', a.is_grantable)
           FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
           LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee ORDER BY 1), ','),
       pg_catalog.obj_description(p.oid, 'pg_proc')
  FROM pg_catalog.pg_proc p JOIN nsp ON nsp.oid = p.pronamespace JOIN pg_catalog.pg_language l ON l.oid = p.prolang
UNION ALL
SELECT 'relation', nsp.nspname || '.' || c.relname,
       pg_catalog.concat_ws(' | ', c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
                            c.reloptions::text,
                            CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END),
       pg_catalog.array_to_string(ARRAY(
         SELECT pg_catalog.concat(coalesce(r.rolname, 'PUBLIC'), ':', a.privilege_type, ':', a.is_grantable)
           FROM pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner))) a
           LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee ORDER BY 1), ','),
       pg_catalog.obj_description(c.oid, 'pg_class')
  FROM pg_catalog.pg_class c JOIN nsp ON nsp.oid = c.relnamespace
 WHERE nsp.nspname = 'migsafe' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'c', 'f')
UNION ALL
SELECT 'column', nsp.nspname || '.' || c.relname || '.' || a.attname,
       pg_catalog.concat_ws(' | ', a.attnum, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                            a.attidentity, a.attgenerated, pg_catalog.pg_get_expr(d.adbin, d.adrelid)),
       coalesce(a.attacl::text, ''), pg_catalog.col_description(c.oid, a.attnum)
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN nsp ON nsp.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE nsp.nspname = 'migsafe' AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f')
UNION ALL
SELECT 'constraint', nsp.nspname || '.' || c.relname || '.' || k.conname, pg_catalog.pg_get_constraintdef(k.oid), '', NULL
  FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid JOIN nsp ON nsp.oid = c.relnamespace
 WHERE nsp.nspname = 'migsafe'
UNION ALL
SELECT 'index', nsp.nspname || '.' || c.relname, pg_catalog.pg_get_indexdef(c.oid), '', NULL
  FROM pg_catalog.pg_class c JOIN nsp ON nsp.oid = c.relnamespace WHERE nsp.nspname = 'migsafe' AND c.relkind = 'i'
UNION ALL
SELECT 'trigger', nsp.nspname || '.' || c.relname || '.' || t.tgname,
       pg_catalog.concat_ws(' | ', t.tgenabled, pg_catalog.pg_get_triggerdef(t.oid)), '', NULL
  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN nsp ON nsp.oid = c.relnamespace
 WHERE NOT t.tgisinternal
UNION ALL
SELECT 'type', nsp.nspname || '.' || t.typname, pg_catalog.concat_ws(' | ', t.typtype, t.typcategory), '', NULL
  FROM pg_catalog.pg_type t JOIN nsp ON nsp.oid = t.typnamespace
 WHERE nsp.nspname = 'migsafe' AND t.typtype IN ('c', 'e', 'd') AND t.typrelid NOT IN (
         SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind <> 'c')
UNION ALL
SELECT 'member', pg_catalog.concat_ws(' ', i.type, i.schema, i.name, i.identity), '', '', NULL
  FROM pg_catalog.pg_depend d, LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) i
 WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'pg_migsafe')
ORDER BY 1, 2
"""


def fingerprint(conn):
    return [tuple(r) for r in conn.execute(FINGERPRINT).fetchall()]


def differences(a, b):
    sa, sb = set(a), set(b)
    return {"only upgraded": sorted(sa - sb), "only fresh": sorted(sb - sa)}


def wait_rows(conn, sql, n, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = conn.execute(sql).fetchall()
        if len(rows) >= n:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {n} rows of {sql}")


@pytest.fixture(params=RELEASES)
def upgraded(cluster, request):
    """A database at an earlier release with a history — audit rows, phases (ended,
    active for a role, pending), manual and automatic snapshots, a table, a column and
    truncated rows in the recycle bin — then updated."""
    old = request.param
    db = new_db(cluster, extension=False)
    with cluster.connect() as su:
        su.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'upgrade_bot') THEN "
                   "CREATE ROLE upgrade_bot LOGIN; END IF; END $$")
    with cluster.connect(db) as c:
        c.execute(f"CREATE EXTENSION pg_migsafe VERSION '{old}'")
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_migsafe'").fetchone()[0] == old
        c.execute("CREATE TABLE users (id bigint PRIMARY KEY, email text, legacy text)")
        c.execute("INSERT INTO users SELECT g, 'u' || g || '@example.com', 'old' || g FROM generate_series(1, 20) g")
        c.execute("CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id), total int)")
        c.execute("INSERT INTO orders SELECT g, g, g * 10 FROM generate_series(1, 20) g")
        c.execute("CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100")
        c.execute("CREATE TABLE events (id int, note text)")
        c.execute("INSERT INTO events VALUES (1, 'a'), (2, 'b')")
        c.execute("CREATE TABLE bot_scratch (id int)")
        c.execute("ALTER TABLE bot_scratch OWNER TO upgrade_bot")
        # (A rollback re-creates a table as its owner, who needs CREATE on its schema.)
        c.execute("GRANT CREATE ON SCHEMA public TO upgrade_bot")
        snap = c.execute("SELECT migsafe.snapshot('before')").fetchone()[0]
        # A contract phase, used; the recycle bin gets a table (with its view and FK
        # dependents), a column and truncated rows.
        c.execute("SELECT migsafe.begin_phase('contract', 'cleanup', objects => ARRAY['public.orders', "
                  "'public.big_orders', 'public.users.legacy', 'public.events'], skip_expand => true)")
        c.execute("DROP TABLE orders CASCADE")
        c.execute("ALTER TABLE users DROP COLUMN legacy")
        c.execute("TRUNCATE events")
        c.execute("SELECT migsafe.end_phase()")
        # An ended expand phase; an active phase for a role (used after the upgrade);
        # a pending one.
        c.execute("SELECT migsafe.begin_phase('expand', 'later')")
        c.execute("SELECT migsafe.end_phase()")
        c.execute("SELECT migsafe.begin_phase('contract', 'bot-cleanup', objects => ARRAY['public.bot_scratch'], "
                  "for_role => 'upgrade_bot', skip_expand => true, valid_for => '2 hours')")
        c.execute("CREATE TABLE after_snapshot (id int)")
        recycled = c.execute("SELECT id, kind FROM migsafe.recycle ORDER BY id").fetchall()
        assert [k for _, k in recycled] == ["table", "column", "truncate"], recycled
        logged = wait_rows(c, "SELECT seq FROM migsafe.audit_log", 10)
        before = {
            "old": old,
            "auto_snapshots": c.execute("SELECT count(*) FROM migsafe.snapshot WHERE kind = 'auto'").fetchone()[0],
            "snapshot": snap,
            "recycled": dict((k, i) for i, k in recycled),
            "log_rows": len(logged),
            "phases": c.execute("SELECT id, kind, name, state FROM migsafe.phases ORDER BY id").fetchall(),
        }
        # The new library took the automatic snapshots the old SQL's way.
        assert before["auto_snapshots"] >= 1
        if old == "0.1.0":
            # Before the update, 0.1.0's rollback with the new library stops with a clear error.
            r = run(c, f"SELECT * FROM migsafe.rollback({snap}, dry_run => false, force => true)")
            assert not r.ok and "ALTER EXTENSION pg_migsafe UPDATE" in (r.error.diag.message_hint or ""), r
        c.execute("ALTER EXTENSION pg_migsafe UPDATE")
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_migsafe'").fetchone()[0] != old
    return db, before


def test_an_upgraded_database_has_what_a_fresh_install_has(cluster, upgraded):
    db, _ = upgraded
    fresh = new_db(cluster)
    with cluster.connect(db) as a, cluster.connect(fresh) as b:
        fa, fb = fingerprint(a), fingerprint(b)
        assert len(fb) > 200, len(fb)
        assert fa == fb, differences(fa, fb)
        # The comparison sees a missing line: one revoked grant is a difference.
        b.execute("REVOKE EXECUTE ON FUNCTION migsafe.rollback_sql(bigint) FROM migsafe_auditor")
        assert fingerprint(b) != fa
        b.execute("GRANT EXECUTE ON FUNCTION migsafe.rollback_sql(bigint) TO migsafe_auditor")
        assert fingerprint(b) == fa


def test_the_log_and_its_chain_survive_and_record_the_upgrade(cluster, upgraded):
    db, before = upgraded
    with cluster.connect(db) as c:
        c.execute("CREATE TABLE after_upgrade (id int)")
        rows = wait_rows(c, "SELECT seq FROM migsafe.statements WHERE statement LIKE 'CREATE TABLE after_upgrade%'", 1)
        assert rows
        ok, checked, reason = c.execute("SELECT ok, rows_checked, reason FROM migsafe.verify_log()").fetchone()
        assert ok and checked > before["log_rows"], reason
        old = before["old"]
        steps = RELEASES[RELEASES.index(old):]  # one upgrade event per step
        up = wait_rows(c, "SELECT record->>'from_version', record->>'to_version' FROM migsafe.events "
                          "WHERE kind = 'upgrade' ORDER BY seq", len(steps))
        now = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_migsafe'").fetchone()[0]
        assert [u[0] for u in up] == steps and up[-1][1] == now, up
        assert all(a[1] == b[0] for a, b in zip(up, up[1:])), up
        # Statements recorded by 0.1.0 read through the current views.
        assert c.execute("SELECT count(*) FROM migsafe.statements WHERE statement LIKE 'DROP TABLE orders%'").fetchone()[0] == 1


def test_phases_snapshots_and_the_recycle_bin_keep_working(cluster, upgraded):
    db, before = upgraded
    with cluster.connect(db) as c:
        phases = c.execute("SELECT id, kind, name, state FROM migsafe.phases ORDER BY id").fetchall()
        assert phases == before["phases"]
    # The phase 0.1.0 opened for upgrade_bot approves its drop now.
    with cluster.connect(db, user="upgrade_bot") as bot:
        r = run(bot, "DROP TABLE bot_scratch")
        assert r.ok, r
    with cluster.connect(db) as c:
        assert c.execute("SELECT state FROM migsafe.phases WHERE name = 'bot-cleanup'").fetchone()[0] == "used"
        snap = before["snapshot"]
        kinds = {r[0] for r in c.execute("SELECT kind FROM migsafe.diff(%s)", (snap,)).fetchall()}
        assert "table" in kinds, kinds
        assert "DROP TABLE" in c.execute("SELECT migsafe.rollback_sql(%s)", (snap,)).fetchone()[0]
        # What 0.1.0 put in the recycle bin comes back (its entries know no owners:
        # views and keys come back as the table's owner's).
        rec = before["recycled"]
        out = c.execute("SELECT migsafe.undrop(%s)", (rec["table"],)).fetchone()[0]
        assert "NOT restored" not in out, out
        assert c.execute("SELECT count(*) FROM orders").fetchone()[0] == 20
        assert c.execute("SELECT count(*) FROM big_orders").fetchone()[0] == 10
        assert c.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'orders_user_id_fkey'").fetchone()[0] == 1
        c.execute("SELECT migsafe.undrop(%s)", (rec["column"],))
        assert c.execute("SELECT count(legacy) FROM users").fetchone()[0] == 20
        c.execute("SELECT migsafe.undrop(%s)", (rec["truncate"],))
        assert c.execute("SELECT count(*) FROM events").fetchone()[0] == 2
        # And a rollback (the current release's) to the snapshot the old release took
        # runs. 0.1.0's snapshots record no owners: a table it would re-create
        # (bot_scratch, dropped empty) is a cannot-revert item, as re-created by the
        # caller it would be the caller's. 0.2.0's record them: it comes back.
        steps = c.execute("SELECT action, object, status, detail FROM migsafe.rollback(%s, dry_run => false, force => true)",
                          (snap,)).fetchall()
        assert steps[-1][0] == "check", steps
        left = c.execute("SELECT kind, identity, action FROM migsafe.diff(%s)", (snap,)).fetchall()
        if before["old"] == "0.1.0":
            [item] = [s for s in steps if s[1] == '"public"."bot_scratch"']
            assert item[2] == "cannot revert" and "records no owner" in item[3], item
            assert left == [("table", '"public"."bot_scratch"', "removed")], (steps, left)
        else:
            assert left == [], (steps, left)
            assert c.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'bot_scratch'").fetchone()[0] == "upgrade_bot"


def test_a_database_still_on_0_1_0_does_not_let_a_login_role_forge_phase_events(cluster):
    """The library is the cluster's, the extension's SQL each database's own: after the
    new library is installed, every database stays on 0.1.0's SQL until its own ALTER
    EXTENSION UPDATE (a database nobody remembers, for ever). 0.1.0 left
    migsafe._queue_phase_event() executable by PUBLIC, and the new library's C function
    trusts its caller: any LOGIN role writes "approved by <someone>" into the hash-chained
    audit log. (0.2.0 revokes it; the C side must refuse a caller that is not the
    extension's own trigger, whatever the SQL grants.)"""
    db = new_db(cluster, extension=False)
    with cluster.connect() as su:
        su.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'forger') THEN "
                   "CREATE ROLE forger LOGIN; END IF; END $$")
    with cluster.connect(db) as c:
        c.execute(f"CREATE EXTENSION pg_migsafe VERSION '{OLD}'")
    with cluster.connect(db, user="forger") as f:
        r = run(f, "SELECT migsafe._queue_phase_event(987654, 'approved', 'the_cfo', now()::text, 'looks fine')")
    time.sleep(3)
    with cluster.connect(db) as c:
        forged = c.execute("SELECT record::text FROM migsafe.audit_log WHERE record->>'phase_id' = '987654'").fetchall()
    assert forged == [], f"a LOGIN role forged an audit record in a 0.1.0 database: {forged} ({r})"
