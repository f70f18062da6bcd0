"""One test per rule, driven by the catalog itself (migsafe.rules()): after the rule's
setup, its bad example is flagged by check() and refused (destructive) or warned
(risky) by the hook, and its good example is neither. Each runs as a superuser and
as a non-superuser table owner. A second test verifies the rule's lock level against
pg_locks on a real server."""
import re

import pytest

from conftest import REFUSED, get_cluster, mode, new_db, run
from pgcluster import has_extension

# Rules whose examples need superuser rights (DROP OWNED BY another role, owning
# the extension, GRANT on the extension's functions, granting a standing approval).
SUPERUSER_ONLY = {"drop-owned", "protect-extension", "protect-schema", "attach-under-standing-approval"}
# Statements that cannot run inside a transaction block: no lock check.
NOT_IN_TRANSACTION = {"vacuum-full", "drop-database"}
# Bad examples that fail by nature (the hazard is the failure): on the example data,
# or because psycopg sends the example's statements as one query, which PostgreSQL
# runs in one transaction block, as a migration runner would.
FAILS_ON_DATA = {"add-column-not-null": "23502", "not-in-transaction": "25001",
                 "enum-value-used-before-commit": "55P04",
                 # The hook judges the statement the DO block runs, and refuses it.
                 "opaque-code": REFUSED}

LOCK_ORDER = [
    "AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
    "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock",
]
LOCK_NAMES = {
    "ACCESS EXCLUSIVE": "AccessExclusiveLock",
    "SHARE ROW EXCLUSIVE": "ShareRowExclusiveLock",
    "SHARE UPDATE EXCLUSIVE": "ShareUpdateExclusiveLock",
    "SHARE": "ShareLock",
    "ROW EXCLUSIVE": "RowExclusiveLock",
}


def _rules():
    with get_cluster().connect() as c:
        c.row_factory = __import__("psycopg").rows.dict_row
        return c.execute("SELECT * FROM migsafe.rules() ORDER BY id").fetchall()


def _available(rule):
    """The extensions a rule's setup creates are installed for this server (contrib is
    not in every server tree: tests/pg-majors)."""
    return all(has_extension(e) for e in re.findall(r"CREATE EXTENSION (?:IF NOT EXISTS )?\"?(\w+)",
                                                    rule["setup_sql"] + rule["bad_example"]))


RULES = [r for r in _rules() if _available(r)]
CASES = [(r, who) for r in RULES for who in ("superuser", "owner")
         if not (who == "owner" and r["id"] in SUPERUSER_ONLY)]


def shared_objects(cluster):
    with cluster.connect() as c:
        dbs = {r[0] for r in c.execute("SELECT datname FROM pg_database")}
        roles = {r[0] for r in c.execute("SELECT rolname FROM pg_roles")}
    return dbs, roles


TEST_DB = re.compile(r"^t\d+$")


def drop_new_shared(cluster, before):
    """Drops the databases and roles created since `before` (with pg_migsafe off):
    rule setups create cluster-wide objects that the next setup creates again."""
    dbs0, roles0 = before
    dbs1, roles1 = shared_objects(cluster)
    extra_dbs = [d for d in dbs1 - dbs0 if not TEST_DB.match(d)]
    extra_roles = roles1 - roles0
    if not (extra_dbs or extra_roles):
        return
    with mode(cluster, "off"):
        with cluster.connect() as c:
            for d in extra_dbs:
                c.execute(f'DROP DATABASE "{d}" WITH (FORCE)')
        if extra_roles:
            for db in dbs1:
                if TEST_DB.match(db):
                    with cluster.connect(db) as dc:
                        for r in extra_roles:
                            dc.execute(f'DROP OWNED BY "{r}"')
            with cluster.connect() as c:
                for r in extra_roles:
                    c.execute(f'DROP ROLE "{r}"')


def check_rules(conn, sql):
    return [r[0] for r in conn.execute("SELECT rule_id FROM migsafe.check(%s)", (sql,))]


@pytest.mark.parametrize("rule,who", CASES, ids=[f"{r['id']}-{w}" for r, w in CASES])
def test_rule_examples(cluster, rule, who):
    user = "postgres" if who == "superuser" else "app_owner"
    rid = rule["id"]
    before = shared_objects(cluster)
    try:
        _bad_then_good(cluster, rule, user)
    finally:
        drop_new_shared(cluster, before)


def _bad_then_good(cluster, rule, user):
    rid = rule["id"]
    before = shared_objects(cluster)

    bad_db = new_db(cluster)
    with cluster.connect(bad_db, user) as conn:
        r = run(conn, rule["setup_sql"])
        assert r.ok, f"setup failed: {r}"
        assert rid in check_rules(conn, rule["bad_example"])
        r = run(conn, rule["bad_example"])
        if rule["check_only"] and rid in FAILS_ON_DATA:
            assert r.sqlstate == FAILS_ON_DATA[rid], r
        elif rule["check_only"]:
            assert r.ok and not r.warnings(), r
        elif rule["severity"] == "destructive":
            assert r.sqlstate == REFUSED, r
            assert f"Rule {rid} (" in r.error.diag.message_detail, r.error.diag.message_detail
            assert r.error.diag.message_hint
        else:
            if rid in FAILS_ON_DATA:
                assert r.sqlstate == FAILS_ON_DATA[rid], r
            else:
                assert r.ok, r
            assert rid in r.warned_rules(), r

    drop_new_shared(cluster, before)
    good_db = new_db(cluster)
    with cluster.connect(good_db, user) as conn:
        r = run(conn, rule["setup_sql"])
        assert r.ok, f"setup failed: {r}"
        assert rid not in check_rules(conn, rule["good_example"])
        r = run(conn, rule["good_example"])
        assert r.ok, r
        assert rid not in r.warned_rules(), r


LOCK_CASES = [r for r in RULES
              if r["lock_mode"] in LOCK_NAMES and not r["check_only"]
              and r["id"] not in NOT_IN_TRANSACTION and r["id"] not in FAILS_ON_DATA
              and not r["self_protection"]]


@pytest.mark.parametrize("rule", LOCK_CASES, ids=[r["id"] for r in LOCK_CASES])
def test_rule_lock_level_matches_the_server(warn_cluster, rule):
    """In warn mode the bad example runs; inside its transaction, the strongest lock
    this backend holds on a user object must be the catalog's lock."""
    db = new_db(warn_cluster)
    with warn_cluster.connect(db) as conn:
        assert run(conn, rule["setup_sql"]).ok
    with warn_cluster.connect(db, autocommit=False) as conn:
        existing = [o for (o,) in conn.execute("SELECT oid::int8 FROM pg_class WHERE oid >= 16384")]
        r = run(conn, rule["bad_example"])
        assert r.ok, r
        # Locks on what existed before the statement (not on what it creates).
        modes = [m for (m,) in conn.execute(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND granted "
            "AND ((locktype = 'relation' AND relation::int8 = ANY(%s)) "
            "     OR (locktype = 'object' AND objid >= 16384))", (existing,))]
        conn.rollback()
    strongest = max(modes, key=LOCK_ORDER.index) if modes else None
    assert strongest == LOCK_NAMES[rule["lock_mode"]], f"{rule['id']}: server took {modes}"
