"""Forms only some PostgreSQL majors have, classified on the major that has them
(issue #14; `make test PG_MAJOR=18`): what check() and the hook say, and the lock each
takes, read from pg_locks on the real server, as test_rules.py does for the catalog.

PostgreSQL 18: virtual generated columns (the default kind) are added without writing
a row; stored ones rewrite the table; `ADD CONSTRAINT … NOT NULL … NOT VALID` skips the
scan that `SET NOT NULL` does; `ALTER CONSTRAINT … INHERIT` adds the NOT NULL constraint
to every child table, scanning each, while `NO INHERIT` changes the catalog only;
`CHECK … NOT ENFORCED` validates nothing. (PostgreSQL 16's CREATEROLE change is checked
where it matters, in test_security.py.)"""
import pytest

from conftest import WARNED, run
from pgcluster import PG_MAJOR

pg18 = pytest.mark.skipif(PG_MAJOR < 18, reason="PostgreSQL 18 forms")

SETUP = ("CREATE TABLE t (id int, v2 int); INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;"
         "CREATE TABLE child () INHERITS (t); INSERT INTO child VALUES (1, 1);"
         "ALTER TABLE t ADD CONSTRAINT t_id_nn NOT NULL id NO INHERIT")

CASES = [
    # statement, rules check() and the hook report, lock on t, lock on child, rewrites t
    ("ALTER TABLE t ADD COLUMN v int GENERATED ALWAYS AS (id * 2) VIRTUAL", [], "AccessExclusiveLock", False),
    ("ALTER TABLE t ADD COLUMN v int GENERATED ALWAYS AS (id * 2)", [], "AccessExclusiveLock", False),
    ("ALTER TABLE t ADD COLUMN v int GENERATED ALWAYS AS (id * 2) STORED", ["add-column-generated"],
     "AccessExclusiveLock", True),
    ("ALTER TABLE t ADD CONSTRAINT v2_nn NOT NULL v2 NOT VALID", [], "AccessExclusiveLock", False),
    ("ALTER TABLE t ALTER COLUMN v2 SET NOT NULL", ["set-not-null"], "AccessExclusiveLock", False),
    ("ALTER TABLE t ALTER CONSTRAINT t_id_nn INHERIT", ["set-not-null"], "AccessExclusiveLock", False),
    ("ALTER TABLE t ADD CONSTRAINT id_pos CHECK (id > 0) NOT ENFORCED", [], "AccessExclusiveLock", False),
]


@pg18
@pytest.mark.parametrize("sql,rules,lock,rewrites", CASES, ids=[c[0][14:70] for c in CASES])
def test_postgresql_18_forms(cluster, db, sql, rules, lock, rewrites):
    with cluster.connect(db) as c:
        c.execute(SETUP)
        got = [r[0] for r in c.execute("SELECT rule_id FROM migsafe.check(%s)", (sql,))]
        assert got == (rules or ["safe"]), got
        node = c.execute("SELECT pg_relation_filenode('t')").fetchone()[0]
    with cluster.connect(db, autocommit=False) as c:
        r = run(c, sql)
        assert r.ok, r
        assert sorted(r.warned_rules()) == sorted(rules), r
        held = dict(c.execute("SELECT relation::regclass::text, mode FROM pg_locks WHERE locktype = 'relation' "
                              "AND pid = pg_backend_pid() AND relation = 't'::regclass").fetchall())
        assert held.get("t") == lock, held
        c.commit()
    with cluster.connect(db) as c:
        assert (c.execute("SELECT pg_relation_filenode('t')").fetchone()[0] != node) == rewrites


@pg18
def test_inherit_scans_the_children_and_no_inherit_does_not(cluster, db):
    with cluster.connect(db) as c:
        c.execute(SETUP)
        c.execute("INSERT INTO child VALUES (NULL, 2)")
        # INHERIT must check every child row: a NULL there fails it, as the warning says.
        r = run(c, "ALTER TABLE t ALTER CONSTRAINT t_id_nn INHERIT")
        assert not r.ok and r.sqlstate == "23502", r
        assert r.warned_rules() == ["set-not-null"] and "every child table" in r.notices[0].message_detail
        c.execute("DELETE FROM child WHERE id IS NULL")
        assert run(c, "ALTER TABLE t ALTER CONSTRAINT t_id_nn INHERIT").ok
        r = run(c, "ALTER TABLE t ALTER CONSTRAINT t_id_nn NO INHERIT")
        assert r.ok and r.warned_rules() == [], r
        # Without children there is nothing to scan.
        c.execute("CREATE TABLE lone (id int); ALTER TABLE lone ADD CONSTRAINT lone_nn NOT NULL id NO INHERIT")
        r = run(c, "ALTER TABLE lone ALTER CONSTRAINT lone_nn INHERIT")
        assert r.ok and r.warned_rules() == [], r
