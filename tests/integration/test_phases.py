"""Two-phase approval: the user stories of the issue, each on a real cluster, and the
bad input of every phase function."""
import time

import psycopg
import pytest

from conftest import REFUSED, new_db, run

APPROVED = "MS003"
SCHEMA = ("CREATE TABLE users (id int PRIMARY KEY, email text, legacy_email text);"
          "CREATE TABLE orders (id int PRIMARY KEY, total numeric);"
          "CREATE TABLE tmp_import_a (id int); CREATE TABLE tmp_import_b (id int);"
          "INSERT INTO users VALUES (1, 'a', 'b'); INSERT INTO orders VALUES (1, 2);")


@pytest.fixture(scope="module")
def roles(cluster):
    with cluster.connect() as c:
        for stmt in [
            "CREATE ROLE dba_anna LOGIN IN ROLE migsafe_approver",
            "CREATE ROLE dba_ben LOGIN IN ROLE migsafe_approver",
            "CREATE ROLE app_migrator LOGIN",
            "CREATE ROLE plain_owner LOGIN",
        ]:
            run(c, stmt)
    return True


@pytest.fixture
def pdb(cluster, roles):
    db = new_db(cluster, owner="app_migrator")
    with cluster.connect(db, "app_migrator") as c:
        assert run(c, SCHEMA).ok
    return db


def begin(conn, *args, **kw):
    params = ", ".join(["%s"] * len(args) + [f"{k} => %s" for k in kw])
    return conn.execute(f"SELECT migsafe.begin_phase({params})", (*args, *kw.values())).fetchone()[0]


def test_story1_dba_in_psql(cluster, pdb):
    with cluster.connect(pdb) as conn:
        r = run(conn, "ALTER TABLE users DROP COLUMN legacy_email")
        assert r.sqlstate == REFUSED
        assert ("approve it with a contract phase: SELECT migsafe.begin_phase('contract', "
                "'<migration name>', reason => '<ticket>', objects => ARRAY['public.users.legacy_email']);") in r.message
        pid = begin(conn, "contract", "drop-legacy-email", reason="JIRA-42",
                    objects=["public.users.legacy_email"], skip_expand=True)
        r = run(conn, "ALTER TABLE users DROP COLUMN legacy_email")
        assert r.ok and r.notices[0].sqlstate == APPROVED, r
        assert "kept in the recycle bin" in r.notices[1].message_primary, r
        assert f"approved by contract phase {pid} (drop-legacy-email)" in r.notices[0].message_primary
        r = run(conn, "DROP TABLE orders")
        assert r.refused_rule() == "drop-table", r
        assert conn.execute("SELECT count(*) FROM migsafe.current_phase()").fetchone()[0] == 1
        assert conn.execute("SELECT migsafe.end_phase()").fetchone()[0] == pid
        r = run(conn, "ALTER TABLE users DROP COLUMN email")
        assert r.refused_rule() == "drop-column"
        row = conn.execute("SELECT state, statements_approved, statements FROM migsafe.phases WHERE id = %s",
                           (pid,)).fetchone()
        assert row == ("ended", 1, ["ALTER TABLE users DROP COLUMN legacy_email"])


def test_story1_phase_ends_with_the_session(cluster, pdb):
    with cluster.connect(pdb) as conn:
        pid = begin(conn, "contract", "s", objects=["public.orders"], skip_expand=True)
    with cluster.connect(pdb) as conn:
        assert run(conn, "DROP TABLE orders").refused_rule() == "drop-table"
        assert conn.execute("SELECT state FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()[0] == "ended"


def test_story1_phase_expires(cluster, pdb):
    with cluster.connect(pdb) as conn:
        pid = begin(conn, "contract", "short", objects=["public.orders"], skip_expand=True, valid_for="1 second")
        time.sleep(1.2)
        assert run(conn, "DROP TABLE orders").refused_rule() == "drop-table"
        assert conn.execute("SELECT state FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()[0] == "expired"


def test_story1_patterns(cluster, pdb):
    with cluster.connect(pdb) as conn:
        begin(conn, "contract", "cleanup", objects=["public.tmp_*"], skip_expand=True)
        assert run(conn, "DROP TABLE tmp_import_a").ok
        assert run(conn, "DROP TABLE tmp_import_b").ok
        assert run(conn, "DROP TABLE orders").refused_rule() == "drop-table"


def test_a_table_entry_covers_everything_on_the_table(cluster, pdb):
    # The docs' "a table, and everything on it": its columns and constraints, and its
    # triggers too (dropping an index is risky, never refused); not its policies and
    # rules.
    with cluster.connect(pdb, "app_migrator") as conn:
        conn.execute("CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';"
                     "CREATE TRIGGER orders_audit BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION noop();"
                     "CREATE TRIGGER users_audit BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION noop();"
                     "CREATE POLICY orders_mine ON orders USING (true);"
                     "CREATE RULE orders_quiet AS ON DELETE TO orders DO INSTEAD NOTHING")
    with cluster.connect(pdb) as conn:
        begin(conn, "contract", "orders-cleanup", objects=["public.orders"], skip_expand=True)
        for sql in ["DROP TRIGGER orders_audit ON orders", "ALTER TABLE orders DROP CONSTRAINT orders_pkey"]:
            r = run(conn, sql)
            assert r.ok and r.notices and r.notices[0].sqlstate == APPROVED, (sql, r)
        # Policies and rules are named on their own: dropping one can widen access.
        assert run(conn, "DROP POLICY orders_mine ON orders").refused_rule() == "drop-policy"
        assert run(conn, "DROP RULE orders_quiet ON orders").refused_rule() == "drop-rule"
        begin(conn, "contract", "orders-policy", objects=["policy orders_mine on public.orders"], skip_expand=True)
        r = run(conn, "DROP POLICY orders_mine ON orders")
        assert r.ok and r.notices[0].sqlstate == APPROVED, r
        # Not what is on another table.
        assert run(conn, "DROP TRIGGER users_audit ON users").refused_rule() == "drop-trigger"


def test_phase_entries_name_what_exists_or_say_how_to_spell_it(cluster, pdb):
    with cluster.connect(pdb) as conn:
        conn.execute("CREATE TYPE post_status AS ENUM ('draft');"
                     "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';"
                     "CREATE TRIGGER orders_audit BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION noop()")
        for entry in ["trigger orders_audit on public.nonexistent", "trigger nope on public.orders",
                      "policy nope on public.orders", "rule nope on public.orders",
                      "constraint nope on public.orders"]:
            r = run(conn, "SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY[%s], skip_expand => true)",
                    (entry,))
            assert r.sqlstate == "42704" and f'object "{entry}" does not exist' in r.message, (entry, r)
        for entry in ["trigger orders_audit on public.orders", "constraint orders_pkey on public.orders"]:
            assert begin(conn, "contract", "ok", objects=[entry], skip_expand=True) > 0
            conn.execute("SELECT migsafe.end_phase()")
        for entry, spelled in [("public.post_status", "type public.post_status"),
                               ("table public.post_status", "type public.post_status"),
                               ("public.noop", "function public.noop()"),
                               ("view public.orders", "table public.orders")]:
            r = run(conn, "SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY[%s], skip_expand => true)",
                    (entry,))
            assert r.sqlstate == "42704", (entry, r)
            assert r.error.diag.message_hint == f'An object of another kind has that name: write "{spelled}".', \
                (entry, r.error.diag.message_hint)
        r = run(conn, "SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.nope'], skip_expand => true)")
        assert r.sqlstate == "42704" and r.error.diag.message_hint is None, r


def test_story2_expand_before_contract(cluster, pdb):
    with cluster.connect(pdb) as conn:
        r = run(conn, "SELECT migsafe.begin_phase('contract', 'users-v2', objects => ARRAY['public.users.legacy_email'])")
        assert r.sqlstate == "55000" and "no ended expand phase" in r.message, r
        eid = begin(conn, "expand", "users-v2")
        assert run(conn, "ALTER TABLE users ADD COLUMN email_v2 text").ok
        # A contract phase of another session covering the column does not help while
        # the expand phase is open here.
        with cluster.connect(pdb, "dba_anna") as other:
            begin(other, "contract", "other", objects=["public.users.legacy_email"], for_role="postgres",
                  skip_expand=True)
        r = run(conn, "ALTER TABLE users DROP COLUMN legacy_email")
        assert r.sqlstate == REFUSED and f"Expand phase {eid} (users-v2) is open" in r.error.diag.message_detail
        conn.execute("SELECT migsafe.end_phase()")
        pid = begin(conn, "contract", "users-v2", objects=["public.users.legacy_email"])
        assert run(conn, "ALTER TABLE users DROP COLUMN legacy_email").ok
        assert conn.execute("SELECT skip_expand FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()[0] is False


def test_story2_min_expand_age(cluster, pdb):
    cluster.configure(migsafe__min_expand_age="'1h'")
    try:
        with cluster.connect(pdb) as conn:
            begin(conn, "expand", "slow")
            conn.execute("SELECT migsafe.end_phase()")
            r = run(conn, "SELECT migsafe.begin_phase('contract', 'slow', objects => ARRAY['public.orders'])")
            assert r.sqlstate == "55000" and "less than migsafe.min_expand_age (01:00:00)" in r.message, r
            # skip_expand is explicit and recorded.
            pid = begin(conn, "contract", "slow", objects=["public.orders"], skip_expand=True)
            assert conn.execute("SELECT skip_expand FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()[0]
    finally:
        cluster.configure(migsafe__min_expand_age="0")


def test_story3_approval_for_another_role_outlives_the_dba_session(cluster, pdb):
    with cluster.connect(pdb, "dba_anna") as dba:
        pid = begin(dba, "contract", "drop-legacy", objects=["public.users.legacy_email"],
                    for_role="app_migrator", valid_for="30 minutes", skip_expand=True)
    with cluster.connect(pdb, "app_migrator") as mig:
        # Bookkeeping in its own autocommit transactions does not use the phase up.
        assert run(mig, 'CREATE SCHEMA IF NOT EXISTS "drizzle"').ok
        mig.autocommit = False
        assert run(mig, "ALTER TABLE users ADD COLUMN x int").ok
        r = run(mig, "ALTER TABLE users DROP COLUMN legacy_email")
        assert r.ok, r
        assert run(mig, "DROP TABLE orders").refused_rule() == "drop-table"  # aborts the transaction
        # Rolled back: the phase is still there for the retry.
        mig.autocommit = True
        assert mig.execute("SELECT count(*) FROM migsafe.current_phase()").fetchone()[0] == 1
        mig.autocommit = False
        assert run(mig, "ALTER TABLE users DROP COLUMN legacy_email").ok
        mig.commit()
        mig.autocommit = True
        # Committed: used up.
        assert mig.execute("SELECT count(*) FROM migsafe.current_phase()").fetchone()[0] == 0
    with cluster.connect(pdb) as su:
        assert su.execute("SELECT state FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()[0] == "used"


def test_story3_a_deploy_phase_covers_every_transaction_of_a_migrator_that_commits_per_file(cluster, pdb):
    # Django, Sqitch, sql-migrate, Alembic: one transaction per migration file. Two
    # pending contract migrations under one phase.
    files = ["ALTER TABLE users DROP COLUMN legacy_email", "DROP TABLE orders"]
    with cluster.connect(pdb, "dba_anna") as dba:
        one_tx = begin(dba, "contract", "release 9", objects=["public.users.legacy_email", "public.orders"],
                       for_role="app_migrator", valid_for="30 minutes", skip_expand=True)
    with cluster.connect(pdb, "app_migrator") as mig:
        assert run(mig, files[0]).ok
        # The first file's transaction spent the phase: the refusal of the second says so.
        r = run(mig, files[1])
        assert r.refused_rule() == "drop-table", r
        detail = r.error.diag.message_detail or ""
        assert f"Contract phase {one_tx} (release 9) covers it, but was spent" in detail, detail
        assert "deploy => true" in detail
    with cluster.connect(pdb, "dba_anna") as dba:
        deploy = begin(dba, "contract", "release 9b", objects=["public.orders", "public.tmp_import_*"],
                       for_role="app_migrator", valid_for="30 minutes", skip_expand=True, deploy=True)
    with cluster.connect(pdb, "app_migrator") as mig:
        for sql in ["DROP TABLE orders", "DROP TABLE tmp_import_a", "DROP TABLE tmp_import_b"]:
            r = run(mig, sql)                                  # three transactions
            assert r.ok and r.notices[0].sqlstate == APPROVED, (sql, r)
        assert mig.execute("SELECT count(*) FROM migsafe.current_phase()").fetchone()[0] == 1
    with cluster.connect(pdb, "dba_anna") as dba:
        row = dba.execute("SELECT state, statements_approved, deploy FROM migsafe.phases WHERE id = %s",
                          (deploy,)).fetchone()
        assert row == ("active", 3, True), row
        assert dba.execute("SELECT migsafe.end_phase(%s)", (deploy,)).fetchone()[0] == deploy
    with cluster.connect(pdb, "app_migrator") as mig:
        assert run(mig, "DROP TABLE users").refused_rule() == "drop-table"
    with cluster.connect(pdb) as su:
        # A deploy phase is for a role: a session's own phase covers its transactions already.
        r = run(su, "SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.users'], "
                    "skip_expand => true, deploy => true)")
        assert r.sqlstate == "22023" and "for_role" in r.message, r


def test_story4_four_eyes(cluster, pdb):
    cluster.configure(migsafe__require_approval="on")
    try:
        with cluster.connect(pdb, "dba_anna") as anna:
            pid = begin(anna, "contract", "four-eyes", objects=["public.orders"], for_role="app_migrator",
                        skip_expand=True)
            assert anna.execute("SELECT state FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()[0] == "pending"
            r = run(anna, "SELECT migsafe.approve(%s)", (pid,))
            assert r.sqlstate == "42501" and "cannot approve it" in r.message, r
        with cluster.connect(pdb, "app_migrator") as mig:
            assert run(mig, "DROP TABLE orders").refused_rule() == "drop-table"
            assert run(mig, "SELECT migsafe.approve(%s)", (pid,)).sqlstate == "42501"
        with cluster.connect(pdb, "dba_ben") as ben:
            assert ben.execute("SELECT migsafe.approve(%s)", (pid,)).fetchone()[0] == pid
            r = run(ben, "SELECT migsafe.approve(%s)", (pid,))
            assert r.sqlstate == "55000" and "not pending" in r.message, r
            row = ben.execute("SELECT state, approved_by FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()
            assert row == ("active", "dba_ben")
        with cluster.connect(pdb, "app_migrator") as mig:
            assert run(mig, "DROP TABLE orders").ok
        with cluster.connect(pdb, "dba_anna") as anna:
            pid2 = begin(anna, "contract", "nope", objects=["public.users"], skip_expand=True)
        with cluster.connect(pdb, "dba_ben") as ben:
            assert ben.execute("SELECT migsafe.reject(%s, 'not now')", (pid2,)).fetchone()[0] == pid2
            assert ben.execute("SELECT state, reject_reason FROM migsafe.phases WHERE id = %s",
                               (pid2,)).fetchone() == ("rejected", "not now")
            assert run(ben, "SELECT migsafe.approve(%s)", (pid2,)).sqlstate == "55000"
    finally:
        cluster.configure(migsafe__require_approval="off")


def test_story5_backup_gate(cluster, pdb):
    cluster.configure(migsafe__require_backup_within="'6h'")
    try:
        with cluster.connect(pdb) as conn:
            r = run(conn, "SELECT migsafe.begin_phase('contract', 'b', objects => ARRAY['public.orders'], "
                          "skip_expand => true)")
            if r.ok:  # another test recorded a backup in this cluster already
                conn.execute("SELECT migsafe.end_phase()")
            else:
                assert r.sqlstate == "55000" and "no recent backup" in r.message, r
                assert "migsafe.require_backup_within = 6h" in r.message
            r = run(conn, "SELECT migsafe.record_backup('', '/backups/x')")
            assert r.sqlstate == "22023", r
            conn.execute("SELECT migsafe.record_backup('nightly', 's3://backups/2026-11-23')")
            assert begin(conn, "contract", "b", objects=["public.orders"], skip_expand=True) > 0
    finally:
        cluster.configure(migsafe__require_backup_within="0")


def test_story6_roles(cluster, pdb):
    with cluster.connect() as c:
        roles = {r for (r,) in c.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'migsafe_%'")}
    assert roles == {"migsafe_admin", "migsafe_approver", "migsafe_auditor"}
    with cluster.connect(pdb, "app_migrator") as owner:
        r = run(owner, "SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.orders'], "
                       "skip_expand => true)")
        assert r.sqlstate == "42501" and 'role "app_migrator" may not open a contract phase' in r.message, r
        # Expand phases only restrict, so anyone may open one.
        assert begin(owner, "expand", "mine") > 0
        # Direct writes to the phase tables are not possible.
        r = run(owner, "INSERT INTO migsafe.phase (kind, name, requested_by, valid_until, state) "
                       "VALUES ('contract', 'x', 'app_migrator', now() + interval '1h', 'active')")
        assert r.sqlstate == "42501", r


def test_story6_search_path_tricks(cluster, pdb):
    """The phase functions are SECURITY DEFINER with a fixed search_path: objects an
    attacker puts first on search_path are never used."""
    with cluster.connect(pdb, "app_migrator") as evil:
        assert run(evil, """
            CREATE SCHEMA evil;
            CREATE FUNCTION evil.pg_has_role(name, text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
            CREATE FUNCTION evil.btrim(text) RETURNS text LANGUAGE sql AS 'SELECT ''x''';
            CREATE TABLE evil.pg_roles (rolname name, rolsuper boolean);
            INSERT INTO evil.pg_roles VALUES ('app_migrator', true);""").ok
        assert run(evil, "SET search_path = evil, pg_catalog, public").ok
        r = run(evil, "SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.orders'], "
                      "skip_expand => true)")
        assert r.sqlstate == "42501", r


def test_story7_visibility(cluster, pdb):
    with cluster.connect(pdb, "dba_anna") as anna:
        pid = begin(anna, "contract", "visible", reason="JIRA-7", objects=["public.orders"],
                    for_role="app_migrator", skip_expand=True)
        row = anna.execute("SELECT kind, name, state, reason, objects, scope, requested_by "
                           "FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()
        assert row == ("contract", "visible", "active", "JIRA-7", ["public.orders"], "app_migrator", "dba_anna")
    with cluster.connect(pdb, "app_migrator") as mig:
        cur = mig.execute("SELECT id, kind, name FROM migsafe.current_phase()").fetchall()
        assert cur == [(pid, "contract", "visible")]
        assert run(mig, "SELECT * FROM migsafe.phases").sqlstate == "42501"
        assert run(mig, "DROP TABLE orders").ok
    with cluster.connect(pdb) as su:
        events = [e for (e,) in su.execute("SELECT event FROM migsafe.phase_event WHERE phase_id = %s "
                                           "ORDER BY at", (pid,))]
        assert events == ["requested", "opened", "used"]


def test_approvers_see_other_sessions_phases_as_they_are(cluster, pdb):
    """migsafe.phases tells whether a session phase's session still runs: an approver
    (or auditor) who cannot see other users' sessions in pg_stat_activity must still
    see another DBA's open phase as active, and as ended once its session is gone."""
    with cluster.connect(pdb, "dba_anna") as anna:
        pid = begin(anna, "contract", "anna's", objects=["public.orders"], skip_expand=True)
        with cluster.connect(pdb, "dba_ben") as ben:
            state = ben.execute("SELECT state FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()[0]
            assert state == "active"
    with cluster.connect(pdb, "dba_ben") as ben:
        for _ in range(50):
            state = ben.execute("SELECT state FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()[0]
            if state == "ended":
                break
            time.sleep(0.1)
        assert state == "ended"


BAD_INPUT = [
    ("SELECT migsafe.begin_phase('demolish', 'x')", "22023", 'unknown phase kind "demolish"'),
    ("SELECT migsafe.begin_phase(NULL, 'x')", "22023", 'unknown phase kind "NULL"'),
    ("SELECT migsafe.begin_phase('contract', NULL, objects => ARRAY['public.orders'])", "22023", "needs a name"),
    ("SELECT migsafe.begin_phase('contract', '  ', objects => ARRAY['public.orders'])", "22023", "needs a name"),
    ("SELECT migsafe.begin_phase('contract', 'x', skip_expand => true)", "22023", "must list the objects"),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY[''], skip_expand => true)", "22023", "empty"),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY[NULL], skip_expand => true)", "22004", "must not contain NULL"),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['orders'], skip_expand => true)", "22023",
     "not schema-qualified"),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.nope'], skip_expand => true)", "42704",
     'object "public.nope" does not exist'),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.users.nope'], skip_expand => true)",
     "42704", "does not exist"),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['gizmo public.x'], skip_expand => true)",
     "22023", 'unknown object kind "gizmo"'),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.orders'], skip_expand => true, "
     "valid_for => '-5 minutes')", "22023", "valid_for must be between"),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.orders'], skip_expand => true, "
     "valid_for => '400 days')", "22023", "valid_for must be between"),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.orders'], skip_expand => true, "
     "valid_for => NULL)", "22023", "valid_for must be between"),
    ("SELECT migsafe.begin_phase('contract', 'x', objects => ARRAY['public.orders'], skip_expand => true, "
     "for_role => 'ghost')", "42704", 'role "ghost" does not exist'),
    ("SELECT migsafe.begin_phase('expand', 'x', objects => ARRAY['public.orders'])", "22023", "takes no objects"),
    ("SELECT migsafe.end_phase()", "55000", "no active phase"),
    ("SELECT migsafe.end_phase(999999)", "22023", "does not exist"),
    ("SELECT migsafe.approve(999999)", "22023", "does not exist"),
    ("SELECT migsafe.approve(NULL)", "22023", "does not exist"),
    ("SELECT migsafe.reject(999999)", "22023", "does not exist"),
    ("SELECT migsafe.record_backup(NULL, NULL)", "22023", "label and a location"),
]


@pytest.mark.parametrize("sql,code,text", BAD_INPUT, ids=[b[0][15:70] for b in BAD_INPUT])
def test_bad_input_is_a_clear_error_and_records_nothing(cluster, pdb, sql, code, text):
    with cluster.connect(pdb, "dba_anna") as conn:
        before = conn.execute("SELECT count(*) FROM migsafe.phases").fetchone()[0]
        r = run(conn, sql)
        assert r.sqlstate == code and text in r.message, r
        assert conn.execute("SELECT count(*) FROM migsafe.phases").fetchone()[0] == before


def test_approving_an_expired_phase(cluster, pdb):
    cluster.configure(migsafe__require_approval="on")
    try:
        with cluster.connect(pdb, "dba_anna") as anna:
            pid = begin(anna, "contract", "late", objects=["public.orders"], skip_expand=True, valid_for="1 second")
        time.sleep(1.2)
        with cluster.connect(pdb, "dba_ben") as ben:
            r = run(ben, "SELECT migsafe.approve(%s)", (pid,))
            assert r.sqlstate == "55000" and "is expired" in r.message, r
    finally:
        cluster.configure(migsafe__require_approval="off")
