"""Adversarial tests: attacks on pg_migsafe itself, each run as the least privileged role
that could try it (a LOGIN-only role, a database owner, an approver, an auditor, a
CREATEROLE holder), each asserting the outcome that matters rather than a message:

- the attacker is still not a superuser, and code the attacker planted (an "evil"
  function that records who runs it and tries ALTER ROLE … SUPERUSER) never ran with
  superuser rights — whether through SQL text built by hand, through the caller's
  search_path / temp tables / operators / types under raised privileges, or through
  user code (triggers, checks, index expressions, defaults, views) that an extension
  function fires;
- the server did not crash and bounded work stays cancellable;
- no record is missing from the audit log, none can be forged, and secrets never reach
  it (nor the server log lines and NOTIFY payloads it sends);
- approvals approve exactly what they list, and four eyes means two people;
- nothing is read through pg_migsafe that the caller could not read directly.

Classes (see the issue): 1 hand-built SQL, 2 search_path and shadowing under raised
privileges, 3 user code run as the extension owner, 4 least privilege, 5 bounded and
cancellable work, 6 the audit log cannot be silenced or forged, 7 approvals mean what
they say.
"""
import contextlib
import json
import threading
import time

import pytest

from attack_helpers import Lab, attempt, log_since, log_size, no_crash, uniq, wait_for
from conftest import REFUSED, get_cluster, run
from pgcluster import PG_MAJOR

DENIED = "42501"


@pytest.fixture
def lab(cluster):
    return Lab(cluster)


@pytest.fixture
def owner_lab(cluster):
    """The attacker owns the database (LOGIN only, no other right)."""
    return Lab(cluster, prefix="dbowner", owner="attacker")


@pytest.fixture(scope="module")
def crash_cluster():
    """A cluster of its own for the attacks that crashed backends, so that a crash
    restart cannot disturb the audit-log tests on the shared one."""
    return get_cluster("security")


@contextlib.contextmanager
def settings(cluster, **kv):
    """Sets migsafe.* settings by reload for the block; restores the previous values."""
    before = {k: cluster.settings.get(k.replace("__", ".")) for k in kv}
    cluster.configure(**kv)
    try:
        yield
    finally:
        cluster.configure(**before)


def begin(conn, *args, **kw):
    """migsafe.begin_phase(...) as a Result (the phase id in .value when it worked)."""
    params = ", ".join(["%s"] * len(args) + [f"{k} => %s" for k in kw])
    return attempt(conn, f"SELECT migsafe.begin_phase({params})", (*args, *kw.values()))


def relation_exists(lab, name):
    with lab.su() as c:
        return c.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def phases_requested_by(lab, role):
    with lab.su() as c:
        return c.execute("SELECT id, kind, state FROM migsafe.phases WHERE requested_by = %s", (role,)).fetchall()


# ======================================================================================
# 1. SQL text built by hand
# ======================================================================================

@pytest.mark.parametrize("kind", ["extension", "database"])
def test_begin_phase_object_entry_cannot_leave_its_literal(lab, kind):
    """With standard_conforming_strings off, a backslash-quote in an objects entry must
    not close the literal of the existence check (which runs as the extension owner)."""
    entry = f"{kind} x\\' OR m.evil($q$begin_phase {kind}$q$)) --"
    with lab.conn(scs_off=True) as c:
        r = begin(c, "contract", "inject", objects=[entry], skip_expand=True)
    lab.assert_contained()
    assert not r.ok and r.sqlstate in (DENIED, "22023", "42704"), r
    assert phases_requested_by(lab, lab.attacker) == []


def test_statement_text_recorded_by_a_phase_cannot_leave_its_literal(lab):
    """An approved statement's own text is recorded in migsafe.phase_use as the
    superuser; a backslash-quote in a comment must not turn it into SQL."""
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute("CREATE TABLE m.old (id int); INSERT INTO m.old VALUES (1)")
    with lab.conn(anna) as c:
        assert begin(c, "contract", "drop-old", objects=["m.old"], for_role=lab.attacker, skip_expand=True).ok
    stmt = "DROP TABLE m.old -- \\'), m.evil($q$record_use$q$) --"
    with lab.conn(scs_off=True) as c:
        r = run(c, stmt)
    lab.assert_contained()
    assert r.ok, r
    with lab.su() as c:
        used = [s for (s,) in c.execute("SELECT statement FROM migsafe.phase_use u JOIN migsafe.phase p "
                                        "ON p.id = u.phase_id WHERE p.for_role = %s", (lab.attacker,))]
    assert used == [stmt]


def test_constraint_name_cannot_leave_its_literal_to_dodge_approval(lab):
    """The hook asks whether a dropped constraint is new in this transaction (then no
    approval is needed). A constraint name that closes the literal must not make an old
    constraint look new — nor run anything."""
    bypass = "c\\' OR conname = $q$fresh$q$ --"
    probe = "k\\' OR m.evil($q$constraint lookup$q$) --"
    with lab.conn() as c:
        c.execute(f'CREATE TABLE m.t (id int); ALTER TABLE m.t ADD CONSTRAINT "{bypass}" CHECK (id > 0);'
                  f'ALTER TABLE m.t ADD CONSTRAINT "{probe}" CHECK (id < 100)')
    with lab.conn(scs_off=True, autocommit=False) as c:
        assert run(c, "ALTER TABLE m.t ADD CONSTRAINT fresh CHECK (id IS NOT NULL)").ok
        r1 = run(c, f'ALTER TABLE m.t DROP CONSTRAINT "{bypass}"')
        c.rollback()
        assert run(c, "ALTER TABLE m.t ADD CONSTRAINT fresh CHECK (id IS NOT NULL)").ok
        r2 = run(c, f'ALTER TABLE m.t DROP CONSTRAINT "{probe}"')
        c.rollback()
    assert r1.sqlstate == REFUSED, f"an old constraint was dropped without approval: {r1}"
    assert r2.sqlstate == REFUSED, r2
    assert [e for e in lab.evidence() if "constraint lookup" in e["tag"]] == [], "the name was run as SQL"
    with lab.su() as c:
        assert c.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'm.t'::regclass "
                         "AND conname IN (%s, %s)", (bypass, probe)).fetchone()[0] == 2


def test_superuser_dropping_a_hostile_constraint_runs_no_attacker_code(owner_lab):
    """A database owner turns standard_conforming_strings off for the database and names
    a constraint so that it leaves the literal of the hook's constraint lookup; a
    superuser who then drops the constraint must not run the owner's code."""
    lab = owner_lab
    name = "k\\' OR m.evil($q$constraint lookup as dba$q$) IS NULL --"
    with lab.conn() as c:
        c.execute(f'CREATE TABLE m.t (id int); ALTER TABLE m.t ADD CONSTRAINT "{name}" CHECK (id > 0);'
                  f"ALTER DATABASE {lab.db} SET standard_conforming_strings = off")
    with lab.conn("postgres") as dba:
        assert dba.execute("SHOW standard_conforming_strings").fetchone()[0] == "off"
        r = run(dba, f'ALTER TABLE m.t DROP CONSTRAINT "{name}"')
    assert r.ok or r.sqlstate == REFUSED, r
    lab.assert_contained()


HOSTILE = ["a)=(lo_import('/etc/passwd')>0)--", "q'uo\"te\\back", "x'); SELECT m.evil('n') --"]


def test_hostile_names_through_recycle_bin_undrop_and_rollback(lab):
    """Tables and columns named to break hand-built SQL go through DROP COLUMN,
    TRUNCATE and DROP TABLE into the recycle bin, back out with undrop(), and through a
    rollback dry run; nothing of the names is ever run."""
    anna = lab.role("anna", approver=True)
    t1, t2, t3 = HOSTILE
    col = "c'ol\\"
    with lab.conn() as c:
        for t in HOSTILE:
            ident = '"' + t.replace('"', '""') + '"'
            c.execute(f'CREATE TABLE m.{ident} (id int PRIMARY KEY, "{col}" text, v int)')
            c.execute(f"INSERT INTO m.{ident} SELECT g, 'x' || g, g FROM generate_series(1, 3) g")
    with lab.su() as c:
        lo_before = c.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
        snap = c.execute("SELECT migsafe.snapshot('hostile')").fetchone()[0]
    with lab.conn(anna) as c:
        assert begin(c, "contract", "hostile", objects=["m.*"], for_role=lab.attacker, skip_expand=True,
                     valid_for="1 hour").ok
    q = lambda t: 'm."' + t.replace('"', '""') + '"'
    with lab.conn(autocommit=False, scs_off=True) as c:
        results = [run(c, f'ALTER TABLE {q(t1)} DROP COLUMN "{col}"'),
                   run(c, f"TRUNCATE {q(t2)}"),
                   run(c, f"DROP TABLE {q(t3)}")]
        c.commit()
    assert all(r.ok for r in results), results
    with lab.conn(anna, scs_off=True) as c:
        ids = [i for (i,) in c.execute("SELECT id FROM migsafe.recycle_bin ORDER BY id")]
        assert len(ids) == 3, ids
        undone = [attempt(c, "SELECT migsafe.undrop(%s)", (i,)) for i in ids[:2]]
    # The dropped table stays in the bin: the rollback (a dry run, by a superuser
    # reviewing it) restores it from there; its script is generated too.
    with lab.conn("postgres", scs_off=True) as c:
        dry = attempt(c, "SELECT step, action, status, detail FROM migsafe.rollback(%s)", (snap,))
        script = attempt(c, "SELECT migsafe.rollback_sql(%s)", (snap,))
    for r in undone + [dry, script]:
        assert r.ok or r.sqlstate not in ("42601", "42883", "42P01", "XX000"), r
    assert all(r.ok for r in undone), undone
    assert dry.ok and any(a == "restore" for (_, a, _, _) in dry.rows), dry.rows
    lab.assert_contained()
    assert [e for e in lab.evidence() if e["tag"] == "n"] == []
    with lab.su() as c:
        assert c.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] == lo_before


# ======================================================================================
# 2. The caller's search_path, temp tables, operators and types under raised privileges
# ======================================================================================

def test_temp_pg_roles_does_not_make_the_caller_an_approver(lab):
    """A temp table named pg_roles is searched first by functions whose search_path
    lacks an explicit pg_temp; it must not make a LOGIN-only role an approver: no
    contract phase (for itself or another role), no ending another's phase, no backup
    record that would satisfy migsafe.require_backup_within for everybody."""
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute("CREATE TABLE m.precious (id int); INSERT INTO m.precious VALUES (1)")
    with lab.conn(anna) as c:
        others = begin(c, "contract", "annas", objects=["m.precious"], for_role="app_owner", skip_expand=True).value
    with lab.conn() as c:
        c.execute(f"CREATE TEMP TABLE pg_roles AS SELECT '{lab.attacker}'::name AS rolname, true AS rolsuper, "
                  "true AS rolcreaterole, 0::oid AS oid")
        r = begin(c, "contract", "fake", objects=["m.precious"], skip_expand=True)
        r2 = begin(c, "contract", "fake", objects=["m.precious"], for_role="app_owner", skip_expand=True)
        d = run(c, "DROP TABLE m.precious")
        e = attempt(c, "SELECT migsafe.end_phase(%s)", (others,))
        b = attempt(c, "SELECT migsafe.record_backup('fake', 'nowhere')")
    lab.assert_contained()
    assert r.sqlstate == DENIED and r2.sqlstate == DENIED, (r, r2)
    assert d.sqlstate == REFUSED, d
    assert phases_requested_by(lab, lab.attacker) == []
    assert relation_exists(lab, "m.precious")
    with lab.su() as c:
        assert c.execute("SELECT state FROM migsafe.phases WHERE id = %s", (others,)).fetchone()[0] == "active", e
        assert c.execute("SELECT count(*) FROM migsafe.backup").fetchone()[0] == 0, b
    assert e.sqlstate == DENIED and b.sqlstate == DENIED, (e, b)


def test_temp_pg_stat_archiver_does_not_fake_a_backup(lab):
    """migsafe.require_backup_within: a temp table named pg_stat_archiver claiming WAL
    was archived a second ago is not a backup."""
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute("CREATE TABLE m.t (id int)")
    with settings(lab.cluster, migsafe__require_backup_within="'6h'"):
        with lab.conn(anna) as c:
            c.execute("CREATE TEMP TABLE pg_stat_archiver AS SELECT now() AS last_archived_time, "
                      "0::bigint AS archived_count, now() AS stats_reset")
            r = begin(c, "contract", "no-backup", objects=["m.t"], skip_expand=True)
    assert not r.ok and r.sqlstate == "55000", r
    assert phases_requested_by(lab, anna) == []


def test_temp_pg_stat_activity_changes_nothing(lab):
    """A temp pg_stat_activity neither moves the session a phase is tied to nor changes
    what others see of it (a regression test: the lookups are pinned today)."""
    anna = lab.role("anna", approver=True)
    with lab.su() as c:
        c.execute(f'CREATE TABLE m.t (id int); ALTER TABLE m.t OWNER TO "{anna}"; INSERT INTO m.t VALUES (1)')
    with lab.conn(anna) as c:
        c.execute("CREATE TEMP TABLE pg_stat_activity AS SELECT pg_backend_pid() AS pid, "
                  "'2000-01-01'::timestamptz AS backend_start, 'x'::text AS query, 'x'::text AS state")
        pid = begin(c, "contract", "shadow", objects=["m.t"], skip_expand=True).value
        assert pid
        with lab.su() as other:
            row = other.execute("SELECT p.session_start = a.backend_start, s.state FROM migsafe.phase p "
                                "JOIN pg_stat_activity a ON a.pid = p.session_pid "
                                "JOIN migsafe.phases s ON s.id = p.id WHERE p.id = %s", (pid,)).fetchone()
        assert row == (True, "active"), row
        assert run(c, "DROP TABLE m.t").ok


def plant_operator(conn, schema, left, right, tag, once=True):
    """CREATE OPERATOR schema.= (left, right) whose function runs schema.evil(tag) (once
    per session when `once`, so that a per-row use stays cheap) and then compares as the
    catalog operator would."""
    fn = f"{schema}.op_{left}_{right}".replace(" ", "_")
    guard = (f"IF pg_catalog.current_setting('evil.fired_{left}_{right}', true) IS NULL THEN "
             f"PERFORM pg_catalog.set_config('evil.fired_{left}_{right}', 'y', false); "
             f"PERFORM {schema}.evil('{tag}'); END IF;") if once else f"PERFORM {schema}.evil('{tag}');"
    conn.execute(f"""
        CREATE FUNCTION {fn}(a {left}, b {right}) RETURNS boolean
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
        BEGIN {guard} RETURN a OPERATOR(pg_catalog.=) b::{left}; END $f$;
        GRANT EXECUTE ON FUNCTION {fn}({left}, {right}) TO PUBLIC;
        CREATE OPERATOR {schema}.= (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = {fn});""")


def test_operator_on_callers_search_path_not_used_by_the_lock_blockers_query(lab):
    """The hook names the sessions blocking a heavy lock with a query it runs as the
    superuser; an operator =(oid, integer) first on the caller's search_path must not
    be picked up by it."""
    with lab.conn() as c:
        c.execute("CREATE TABLE m.busy (id int)")
        plant_operator(c, "m", "oid", "integer", "blockers query")
    holder = lab.conn()
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM m.busy")
    release = threading.Timer(1.0, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        with lab.conn(search_path="m,pg_catalog") as c:
            c.execute("SET lock_timeout = '10s'")
            r = run(c, "ALTER TABLE m.busy ADD COLUMN x int")
    finally:
        release.join()
        holder.close()
    lab.assert_contained()
    assert r.ok, r


def test_lock_timeout_detail_shows_only_queries_the_caller_may_see(lab):
    """A lock-timeout DETAIL names the blocking sessions; another role's query text is
    shown only if the caller could read it in pg_stat_activity."""
    with lab.conn() as c:
        c.execute("CREATE TABLE m.busy (id int)")
    holder = lab.cluster.connect(lab.db)
    holder.execute("BEGIN")
    holder.execute("SELECT 'TOP-SECRET-QUERY-TEXT', count(*) FROM m.busy")
    try:
        with lab.conn() as c:
            visible = c.execute("SELECT query FROM pg_stat_activity WHERE pid = %s",
                                (holder.info.backend_pid,)).fetchone()[0]
            c.execute("SET lock_timeout = '300ms'")
            r = run(c, "ALTER TABLE m.busy ADD COLUMN x int")
    finally:
        holder.close()
    assert "TOP-SECRET" not in (visible or "")   # PostgreSQL hides it from this role
    assert r.sqlstate == "55P03", r
    shown = " ".join(filter(None, [r.error.diag.message_primary, r.error.diag.message_detail,
                                   r.error.diag.message_hint]))
    assert "TOP-SECRET-QUERY-TEXT" not in shown, shown


def test_superusers_hook_queries_ignore_a_database_owners_search_path(owner_lab):
    """A database owner sets the database's search_path to a schema of theirs holding
    operators =(oid, integer) and =(integer, integer); the queries the hook runs for a
    superuser's DDL (constraint lookup, CASCADE dependents) must not use them."""
    lab = owner_lab
    with lab.conn() as c:
        plant_operator(c, "m", "oid", "integer", "hook query (oid = int)")
        plant_operator(c, "m", "integer", "integer", "hook query (int = int)")
        c.execute("CREATE TABLE m.t (id int CONSTRAINT t_pos CHECK (id > 0)); INSERT INTO m.t VALUES (1);"
                  "CREATE VIEW m.v AS SELECT id FROM m.t;"
                  f"ALTER DATABASE {lab.db} SET search_path = m, pg_catalog")
    with lab.conn("postgres") as dba:
        assert dba.execute("SHOW search_path").fetchone()[0] == "m, pg_catalog"
        results = [run(dba, "ALTER TABLE m.t DROP CONSTRAINT t_pos"),
                   run(dba, "DROP TABLE m.t CASCADE"),
                   run(dba, "ALTER TABLE m.t RENAME CONSTRAINT t_pos TO t_positive")]
    for r in results:
        assert r.ok or r.sqlstate == REFUSED, r
    lab.assert_contained(lambda e: e["bt"] in (None, "client backend"))


def test_database_search_path_not_used_by_the_audit_writer(owner_lab):
    """The audit writer runs as the bootstrap superuser in each database, with the
    database's settings: a database owner's search_path with overloads of ||(text,
    timestamptz) (phase expiry), unnest(bigint[]) (storing records) and clock_timestamp()
    must not run in it. The log keeps working: DDL and the phase's expiry are recorded."""
    lab = owner_lab
    with lab.conn() as c:
        c.execute("""
            CREATE FUNCTION m.cat(a text, b timestamptz) RETURNS text
            LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
            BEGIN PERFORM m.evil('writer ||(text, timestamptz)'); RETURN a || b::text; END $f$;
            CREATE OPERATOR m.|| (LEFTARG = text, RIGHTARG = timestamptz, FUNCTION = m.cat);
            CREATE FUNCTION m.unnest(a bigint[]) RETURNS SETOF bigint
            LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
            BEGIN PERFORM m.evil('writer unnest(bigint[])'); RETURN QUERY SELECT x FROM pg_catalog.unnest(a) x; END $f$;
            CREATE FUNCTION m.clock_timestamp() RETURNS timestamptz
            LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
            BEGIN PERFORM m.evil('writer clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $f$;
            GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA m TO PUBLIC;""")
        c.execute(f"ALTER DATABASE {lab.db} SET search_path = m, pg_catalog")
    # Database settings apply when a process connects: let the writer that recorded the
    # set-up leave (migsafe.audit_worker_idle), so that the next one starts with them.
    with lab.su("postgres") as c:
        assert wait_for(lambda: c.execute(
            "SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = %s "
            "AND backend_type = 'pg_migsafe audit writer'", (lab.db,)).fetchone()[0], 15)
    with lab.conn() as c:
        assert begin(c, "expand", "soon-expired", valid_for="1 second").ok
        # Keep the writer busy past the phase's end (it checks expiries every 2 s).
        deadline = time.time() + 6
        i = 0
        while time.time() < deadline and not lab.as_superuser():
            i += 1
            c.execute(f"CREATE TABLE m.k{i} (id int)")
            time.sleep(0.4)
    lab.assert_contained()
    assert lab.wait_statements("statement = %s", ("CREATE TABLE m.k1 (id int)",)), "DDL was not recorded"
    with lab.su() as c:
        assert wait_for(lambda: c.execute("SELECT count(*) FROM migsafe.events WHERE phase_event = 'expired'")
                        .fetchone()[0], 6), "the expiry was not recorded"
    assert lab.verify_log()[0]


@pytest.mark.parametrize("via", ["_live_doc()", "approved statement"])
def test_type_named_text_on_callers_search_path_not_used_under_raised_privileges(lab, via):
    """NEW: queries run as the superuser cast with `::text` (migsafe._live_doc(), which
    everybody may call; the record of an approved statement in migsafe.phase_use); a
    domain named text, with a CHECK calling the caller's code, first on the caller's
    search_path must not be used by them."""
    with lab.conn() as c:
        c.execute("CREATE DOMAIN m.text AS pg_catalog.text CHECK (m.evil('domain m.text'));"
                  "CREATE TABLE m.old (id int); INSERT INTO m.old VALUES (1)")
    if via == "approved statement":
        approve_for(lab, lab.role("anna", approver=True), ["m.old"])
    with lab.conn(search_path="m,pg_catalog") as c:
        r = attempt(c, "SELECT length(migsafe._live_doc())" if via == "_live_doc()" else "DROP TABLE m.old")
    lab.assert_contained()
    assert r.ok or r.sqlstate == DENIED, r


# ======================================================================================
# 3. User code run by extension functions runs as the object's owner
# ======================================================================================

def user_code_on(conn, table, events):
    """A trigger, a CHECK constraint and an index expression on `table`, each calling
    m.evil() — installed after the table went through the recycle bin."""
    short = table.split(".")[-1]
    conn.execute(f"""
        CREATE FUNCTION m.trg_{short}() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN PERFORM m.evil('trigger on {table}'); RETURN NEW; END $f$;
        CREATE TRIGGER evil_{short} BEFORE {events} ON {table} FOR EACH ROW EXECUTE FUNCTION m.trg_{short}();
        ALTER TABLE {table} ADD CONSTRAINT evil_{short}_check CHECK (m.evil('check on {table}'));
        CREATE FUNCTION m.ix_{short}(int) RETURNS int IMMUTABLE LANGUAGE sql
          AS $f$ SELECT CASE WHEN m.evil('index expression on {table}') THEN $1 END $f$;
        CREATE INDEX evil_{short}_ix ON {table} (m.ix_{short}(id));""")


def approve_for(lab, approver, objects, name="approved"):
    with lab.conn(approver) as c:
        r = begin(c, "contract", name, objects=objects, for_role=lab.attacker, skip_expand=True)
    assert r.ok, r
    return r.value


def bin_ids(lab):
    with lab.su() as c:
        return [i for (i,) in c.execute("SELECT id FROM migsafe.recycle_bin WHERE state = 'kept' ORDER BY id")]


def test_undrop_of_a_column_runs_table_code_as_its_owner(lab):
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute("CREATE TABLE m.t (id int PRIMARY KEY, c text); "
                  "INSERT INTO m.t SELECT g, 'v' || g FROM generate_series(1, 3) g")
    approve_for(lab, anna, ["m.t.c"])
    with lab.conn() as c:
        assert run(c, "ALTER TABLE m.t DROP COLUMN c").ok
        user_code_on(c, "m.t", "UPDATE")
    [rid] = bin_ids(lab)
    with lab.conn(anna) as c:
        r = attempt(c, "SELECT migsafe.undrop(%s)", (rid,))
    lab.assert_contained()
    assert r.ok, r
    with lab.su() as c:
        assert c.execute("SELECT count(c) FROM m.t").fetchone()[0] == 3


def test_undrop_of_truncated_rows_runs_table_code_as_its_owner(lab):
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute("CREATE TABLE m.t (id int PRIMARY KEY, v text); "
                  "INSERT INTO m.t SELECT g, 'v' || g FROM generate_series(1, 3) g")
    approve_for(lab, anna, ["m.t"])
    with lab.conn() as c:
        assert run(c, "TRUNCATE m.t").ok
        user_code_on(c, "m.t", "INSERT")
        c.execute("ALTER TABLE m.t ADD COLUMN d boolean DEFAULT m.evil('column default on m.t')")
    [rid] = bin_ids(lab)
    with lab.conn(anna) as c:
        r = attempt(c, "SELECT migsafe.undrop(%s)", (rid,))
    lab.assert_contained()
    assert r.ok, r


def relinfo(lab, name):
    with lab.su() as c:
        return c.execute("SELECT relowner::regrole::text, coalesce(relacl::text[], '{}') FROM pg_class "
                         "WHERE oid = to_regclass(%s)", (name,)).fetchone()


def test_undrop_of_a_table_recreates_views_with_their_owner_and_grants(lab):
    """The views of a table dropped with CASCADE come back with undrop(): owned by whom
    owned them, with the same grants, and a materialized view's query (which runs when
    it is re-created) runs as its owner."""
    anna = lab.role("anna", approver=True)
    reader = lab.role("reader")
    with lab.conn() as c:
        c.execute(f"""
            CREATE TABLE m.t (id int PRIMARY KEY); INSERT INTO m.t SELECT generate_series(1, 3);
            CREATE VIEW m.v AS SELECT id FROM m.t;
            GRANT SELECT ON m.v TO "{reader}";
            CREATE MATERIALIZED VIEW m.mv AS SELECT id, m.evil('materialized view query') AS e FROM m.t;""")
    before = {n: relinfo(lab, n) for n in ("m.v", "m.mv")}
    approve_for(lab, anna, ["m.t", "m.v", "m.mv"])
    with lab.conn() as c:
        r = run(c, "DROP TABLE m.t CASCADE")
        assert r.ok, r
    [rid] = bin_ids(lab)
    with lab.conn(anna) as c:
        r = attempt(c, "SELECT migsafe.undrop(%s)", (rid,))
    lab.assert_contained()
    assert r.ok and "NOT restored" not in r.value, r
    after = {n: relinfo(lab, n) for n in ("m.v", "m.mv")}
    for n in after:
        assert after[n] is not None and after[n][0] == before[n][0], (n, before[n], after[n])
        assert sorted(after[n][1]) == sorted(before[n][1]), (n, before[n], after[n])


def test_rollback_dry_run_restores_with_table_code_as_its_owner(lab):
    """rollback() — even a dry run, here by a superuser reviewing the plan — restores a
    dropped column's values from the recycle bin; the table's trigger, check and index
    expression run as the table's owner, not as whoever runs the rollback."""
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute("CREATE TABLE m.t (id int PRIMARY KEY, c text); "
                  "INSERT INTO m.t SELECT g, 'v' || g FROM generate_series(1, 3) g")
    with lab.su() as c:
        snap = c.execute("SELECT migsafe.snapshot('before drop')").fetchone()[0]
    approve_for(lab, anna, ["m.t.c"])
    with lab.conn() as c:
        assert run(c, "ALTER TABLE m.t DROP COLUMN c").ok
        user_code_on(c, "m.t", "UPDATE")
    with lab.conn("postgres") as c:
        r = attempt(c, "SELECT action, status, detail FROM migsafe.rollback(%s)", (snap,))
    lab.assert_contained()
    assert r.ok, r


DRIZZLE = {
    # The bookkeeping "table" is a view whose query runs the attacker's code.
    "view": """
        CREATE TABLE m.real (hash text, created_at bigint);
        CREATE FUNCTION m.hash_of(h text) RETURNS text LANGUAGE plpgsql AS $f$
        BEGIN PERFORM m.evil('drizzle view'); RETURN h; END $f$;
        CREATE VIEW drizzle.__drizzle_migrations AS
        SELECT m.hash_of(r.hash) AS hash, r.xmin AS xmin, r.created_at FROM m.real r;""",
    # hash is of the attacker's enum type, with a cast to text that runs their code.
    "cast": """
        CREATE TYPE m.h AS ENUM ('h1');
        CREATE FUNCTION m.h_text(m.h) RETURNS text LANGUAGE plpgsql AS $f$
        BEGIN PERFORM m.evil('drizzle hash::text cast'); RETURN 'h1'; END $f$;
        CREATE CAST (m.h AS text) WITH FUNCTION m.h_text(m.h);
        CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash m.h NOT NULL, created_at bigint);""",
    # A row-level security policy (superusers bypass it; the owner must not).
    "rls": """
        CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint);
        ALTER TABLE drizzle.__drizzle_migrations ENABLE ROW LEVEL SECURITY;
        ALTER TABLE drizzle.__drizzle_migrations FORCE ROW LEVEL SECURITY;
        CREATE POLICY p ON drizzle.__drizzle_migrations USING (m.evil('drizzle rls policy'));""",
    # A trigger (fires for the insert, as the inserting role).
    "trigger": """
        CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint);
        CREATE FUNCTION m.dz_trg() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN PERFORM m.evil('drizzle trigger'); RETURN NEW; END $f$;
        CREATE TRIGGER t BEFORE INSERT ON drizzle.__drizzle_migrations FOR EACH ROW EXECUTE FUNCTION m.dz_trg();""",
    # =(xid, xid) first on the migrator's search_path (the query compares xmin).
    "operator": """
        CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint);
        @OPERATOR@""",
    # NEW: a domain named text first on the migrator's search_path (the query casts hash::text).
    "domain text": """
        CREATE TABLE drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint);
        CREATE DOMAIN m.text AS pg_catalog.text CHECK (m.evil('drizzle domain m.text'));""",
}


@pytest.mark.parametrize("variant", list(DRIZZLE))
def test_drizzle_bookkeeping_table_is_read_without_running_user_code_as_superuser(lab, variant):
    """At commit of a migration, the hook reads the hashes the transaction inserted
    into drizzle.__drizzle_migrations; whatever that relation is, the attacker's code
    must not run as the superuser."""
    with lab.su() as c:
        c.execute(f'CREATE SCHEMA drizzle AUTHORIZATION "{lab.attacker}"')
    with lab.conn() as c:
        sql = DRIZZLE[variant]
        if "@OPERATOR@" in sql:
            c.execute(sql.replace("@OPERATOR@", ""))
            plant_operator(c, "m", "xid", "xid", "drizzle xmin = xid operator", once=False)
        else:
            c.execute(sql)
    with lab.conn(autocommit=False, search_path="m,public,pg_catalog") as c:
        assert run(c, "CREATE TABLE m.migrated (id int)").ok
        target = "m.real" if variant == "view" else "drizzle.__drizzle_migrations"
        value = "h1" if variant == "cast" else "f00d"
        assert run(c, f"INSERT INTO {target} (hash, created_at) VALUES (%s, 1)", (value,)).ok
        c.commit()
    lab.assert_contained()
    assert relation_exists(lab, "m.migrated")


# ======================================================================================
# 4. Least privilege
# ======================================================================================

PURE_HELPERS = {"_key(text,text)", "_key(text,text,text)", "_split(text)", "_diff_docs(json,json)",
                "_is_audit_writer()", "_live_doc()",
                # Text in, text out: the plain form of a CONCURRENTLY statement (dry runs).
                "_in_transaction_form(text)",
                # Says whether the server is a standby: pg_is_in_recovery() does too.
                "_require_primary(text)"}


def test_internal_helpers_are_not_executable_by_public(lab):
    """Every migsafe._* function a LOGIN-only role may execute is one of the pure ones
    (trigger functions cannot be called directly and are left out)."""
    with lab.conn() as c:
        rows = c.execute(r"""
            SELECT pg_catalog.regexp_replace(p.oid::regprocedure::text, '^migsafe\.', ''),
                   pg_catalog.has_function_privilege(p.oid, 'EXECUTE')
              FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'migsafe'::regnamespace AND p.proname LIKE '\_%'
               AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)""").fetchall()
        exposed = sorted(f.replace(" ", "") for f, ok in rows if ok and f.replace(" ", "") not in PURE_HELPERS)
        probe = attempt(c, "SELECT migsafe._check_objects(ARRAY['extension plpgsql'])")
    assert len(rows) > 10, rows
    assert exposed == [], f"executable by PUBLIC: {exposed}"
    assert probe.sqlstate == DENIED, probe


# Every function of the extension: SECURITY DEFINER or not, and who may execute it
# (PUBLIC, or which of the extension's roles). A change here is a change of the threat
# model (docs/security.md): make it on purpose.
PRIVILEGES = [
    ('migsafe."check"(text)', False, 'public'),
    ('migsafe._acl_entries(text)', False, ''),
    ('migsafe._audit_log_append_only()', False, ''),
    ('migsafe._audit_log_writer_only()', False, ''),
    ('migsafe._backup_ok(interval)', False, ''),
    ('migsafe._can_approve(name)', False, ''),
    ('migsafe._catalog(jsonb)', False, ''),
    ('migsafe._check_objects(text[])', False, ''),
    ('migsafe._copyable(oid)', False, ''),
    ('migsafe._dependents(oid)', False, ''),
    ('migsafe._diff_docs(json,json)', False, 'public'),
    ('migsafe._holds_data(oid,text)', False, ''),
    ('migsafe._holds_role(name,name)', False, ''),
    ('migsafe._in_transaction_form(text)', False, 'public'),
    ('migsafe._internal(text)', False, ''),
    ('migsafe._is_audit_writer()', False, 'public'),
    ('migsafe._keep_or_refuse(bigint,bigint)', False, ''),
    ('migsafe._key(text,text)', False, 'public'),
    ('migsafe._key(text,text,text)', False, 'public'),
    ('migsafe._live_doc()', False, 'public'),
    ('migsafe._next_snapshot_id()', False, ''),
    ('migsafe._not_recyclable(oid,boolean)', False, ''),
    ('migsafe._note_upgrade(text,text)', False, ''),
    ('migsafe._pending_for_decision(bigint)', False, ''),
    ('migsafe._phase_event_to_audit()', False, ''),
    ('migsafe._phases_for_session(name,name)', False, ''),
    ('migsafe._queue_phase_event(bigint,text,text,text,text)', False, ''),
    ('migsafe._queue_spilled()', False, 'migsafe_auditor'),
    ('migsafe._queue_stats()', False, 'migsafe_auditor'),
    ('migsafe._record_use(bigint,name,text[],text[],text)', False, ''),
    ('migsafe._recycle_column(oid,name,bigint,text)', True, ''),
    ('migsafe._recycle_table(oid,boolean,bigint,text)', True, ''),
    ('migsafe._recycle_truncate(oid,bigint,text)', True, ''),
    ('migsafe._require_approver(text)', False, ''),
    ('migsafe._require_primary(text)', False, 'public'),
    ('migsafe._rollback_approve(bigint,boolean,boolean)', True, 'migsafe_admin migsafe_approver'),
    ('migsafe._rollback_check(bigint,boolean)', True, 'migsafe_admin migsafe_approver'),
    ('migsafe._rollback_end()', True, 'migsafe_admin migsafe_approver'),
    ('migsafe._rollback_exec(text)', False, 'migsafe_admin migsafe_approver'),
    ('migsafe._rollback_phase_id()', False, ''),
    ('migsafe._rollback_plan(bigint)', False, 'migsafe_admin migsafe_approver'),
    ('migsafe._rollback_plan_for(bigint,oid)', False, ''),
    ('migsafe._rollback_run(bigint,boolean,boolean)', False, 'migsafe_admin migsafe_approver'),
    ('migsafe._row_key(oid,name)', False, ''),
    ('migsafe._run_as(oid,text,boolean)', False, ''),
    ('migsafe._running_migrations()', False, 'migsafe_auditor'),
    ('migsafe._set_rollback_phase(bigint,text[],text[],boolean)', False, ''),
    ('migsafe._snapshot_store(bigint,timestamp with time zone,jsonb[],jsonb[])', True, ''),
    ('migsafe._spent_phases_for_session(name,name)', False, ''),
    ('migsafe._split(text)', False, 'public'),
    ('migsafe._standing_entry(text,text)', False, ''),
    ('migsafe._state(migsafe.phase)', True, 'migsafe_admin migsafe_approver migsafe_auditor'),
    ('migsafe.approve(bigint)', True, 'public'),
    ('migsafe.begin_phase(text,text,text,text[],name,interval,boolean,boolean,boolean)', True, 'public'),
    ('migsafe.current_phase()', True, 'public'),
    ('migsafe.diff(bigint,bigint)', False, 'migsafe_admin migsafe_approver migsafe_auditor'),
    ('migsafe.drop_snapshots(interval)', True, 'migsafe_admin'),
    ('migsafe.dry_run(text)', False, 'public'),
    ('migsafe.end_phase(bigint)', True, 'public'),
    ('migsafe.grant_standing_approval(text,name,text,interval,text,text,interval,boolean)', True, 'migsafe_admin migsafe_approver'),
    ('migsafe.purge(interval)', True, 'migsafe_admin'),
    ('migsafe.record_backup(text,text)', True, 'public'),
    ('migsafe.reject(bigint,text)', True, 'public'),
    ('migsafe.request_rollback(bigint,text,interval)', True, 'migsafe_admin migsafe_approver'),
    ('migsafe.rollback(bigint,boolean,boolean)', False, 'migsafe_admin migsafe_approver'),
    ('migsafe.rollback_sql(bigint)', False, 'migsafe_admin migsafe_approver migsafe_auditor'),
    ('migsafe.rules()', False, 'public'),
    ('migsafe.set_migration_name(text)', False, 'public'),
    ('migsafe.snapshot(text)', True, 'migsafe_admin migsafe_approver'),
    ('migsafe.undrop(bigint,boolean)', True, 'migsafe_admin migsafe_approver'),
    ('migsafe.verify(bigint)', False, 'migsafe_admin migsafe_approver migsafe_auditor'),
    ('migsafe.verify_log()', False, 'public'),
    ('migsafe.verify_ok(bigint,boolean)', False, 'migsafe_admin migsafe_approver migsafe_auditor'),
]


def test_who_may_run_each_function(lab):
    with lab.su() as c:
        got = c.execute("""
            SELECT p.oid::regprocedure::text, p.prosecdef,
                   pg_catalog.array_to_string(ARRAY(
                     SELECT r FROM pg_catalog.unnest(ARRAY['public', 'migsafe_admin', 'migsafe_approver', 'migsafe_auditor']) r
                      WHERE CASE WHEN r = 'public' THEN pg_catalog.has_function_privilege(%s, p.oid, 'EXECUTE')
                                 ELSE EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                                               WHERE a.grantee = r::regrole AND a.privilege_type = 'EXECUTE') END), ' ')
              FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'migsafe'::regnamespace ORDER BY 1""",
                        (lab.attacker,)).fetchall()
    assert got == PRIVILEGES


def events_by(lab, by_role):
    with lab.su() as c:
        return c.execute("SELECT seq FROM migsafe.events WHERE kind = 'phase_event' "
                         "AND record->>'by_role' = %s", (by_role,)).fetchall()


def test_phase_events_cannot_be_forged(lab):
    """migsafe._queue_phase_event() queues an audit record of a phase event: nobody but
    the extension may call it, so no one can claim that cfo_alice approved phase 1."""
    anna = lab.role("anna", approver=True)
    fake = uniq("cfo_alice")
    with lab.conn() as c:
        r1 = attempt(c, "SELECT migsafe._queue_phase_event(1, 'approved', %s, now()::text, 'x')", (fake,))
        c.execute("CREATE TABLE m.marker_after_forgery (id int)")
    with lab.conn(anna) as c:
        r2 = attempt(c, "SELECT migsafe._queue_phase_event(1, 'opened', %s, now()::text, 'x')", (fake,))
    assert lab.wait_statements("statement LIKE %s", ("%marker_after_forgery%",)), "the marker was not recorded"
    time.sleep(0.5)
    assert events_by(lab, fake) == [], "a forged phase event is in the audit log"
    assert r1.sqlstate == DENIED and r2.sqlstate == DENIED, (r1, r2)


@pytest.fixture
def vault(lab):
    """A schema nobody but the superuser may use, with a sequence at 777123 and a table
    holding the id 987654321 (its sequence behind it)."""
    with lab.su() as c:
        c.execute("CREATE SCHEMA vault; CREATE SEQUENCE vault.s; SELECT setval('vault.s', 777123);"
                  "CREATE TABLE vault.ids (id serial PRIMARY KEY); INSERT INTO vault.ids VALUES (987654321);"
                  "CREATE TABLE vault.full_t (x int); INSERT INTO vault.full_t VALUES (1);"
                  "CREATE TABLE vault.empty_t (x int)")
    return lab


def test_live_doc_shows_only_what_the_caller_may_read(vault):
    lab = vault
    with lab.conn() as c:
        assert run(c, "SELECT last_value FROM vault.s").sqlstate == DENIED
        r = attempt(c, "SELECT migsafe._live_doc()")
        r2 = attempt(c, "SELECT migsafe._catalog(NULL)::text")
    assert r2.sqlstate == DENIED, r2
    if r.ok:
        doc = json.loads(r.value)
        seqs = [s for s in doc.get("sequences") or [] if s.get("schema") == "vault" and s.get("name") == "s"]
        assert all(s.get("last_value") is None for s in seqs), seqs
        assert "777123" not in r.value
    else:
        assert r.sqlstate == DENIED, r


def test_verify_as_auditor_shows_no_value_of_an_unreadable_table(vault):
    lab = vault
    aud = lab.role("audrey", auditor=True)
    with lab.conn(aud) as c:
        assert run(c, "SELECT max(id) FROM vault.ids").sqlstate == DENIED
        r = attempt(c, "SELECT check_name, object, status, detail FROM migsafe.verify()")
    shown = json.dumps(r.rows) if r.ok else f"{r.message} {r.error.diag.message_detail}"
    assert "987654321" not in shown, shown
    assert r.ok or r.sqlstate == DENIED, r


def test_diff_and_rollback_sql_as_auditor_show_no_sequence_values(vault):
    lab = vault
    aud = lab.role("audrey", auditor=True)
    with lab.su() as c:
        c.execute("CREATE SEQUENCE vault.gone; SELECT setval('vault.gone', 313131)")
        snap = c.execute("SELECT migsafe.snapshot('seq')").fetchone()[0]
        c.execute("CREATE SEQUENCE vault.born; SELECT setval('vault.born', 424242)")
        c.execute("SELECT migsafe.begin_phase('contract', 'gone', objects => ARRAY['vault.gone'], skip_expand => true)")
        c.execute("DROP SEQUENCE vault.gone")
    with lab.conn(aud) as c:
        d = attempt(c, "SELECT kind, identity, action, before::text, after::text FROM migsafe.diff(%s)", (snap,))
        s = attempt(c, "SELECT migsafe.rollback_sql(%s)", (snap,))
    assert d.ok and s.ok, (d, s)
    shown = json.dumps(d.rows) + (s.value or "")
    for secret in ("313131", "424242", "777123"):
        assert secret not in shown, (secret, shown)


@pytest.fixture
def approval_on(cluster):
    with settings(cluster, migsafe__require_approval="on"):
        yield


def test_approver_cannot_open_a_rollback_phase_by_hand(lab, approval_on):
    """With four eyes on, an approver may not approve their own DROP by calling the
    rollback machinery directly."""
    anna = lab.role("anna", approver=True)
    with lab.su() as c:
        c.execute(f'CREATE SCHEMA a AUTHORIZATION "{anna}"')
        snap = c.execute("SELECT migsafe.snapshot('any')").fetchone()[0]
    with lab.conn(anna) as c:
        c.execute("CREATE TABLE a.unrelated (id int); INSERT INTO a.unrelated VALUES (1)")
        assert run(c, "DROP TABLE a.unrelated").sqlstate == REFUSED
    with lab.conn(anna, autocommit=False) as c:
        opened = attempt(c, "SELECT migsafe._open_rollback_phase(%s)", (snap,))
        dropped = attempt(c, "DROP TABLE a.unrelated") if opened.ok else None
        c.commit()
    assert relation_exists(lab, "a.unrelated"), (opened, dropped)
    assert not opened.ok or dropped.sqlstate == REFUSED, (opened, dropped)


def test_approver_cannot_use_rollback_helpers_on_others_phases_or_data(vault, approval_on):
    lab = vault
    anna, ben, mal = (lab.role(n, approver=True) for n in ("anna", "ben", "mal"))
    with lab.su() as c:
        c.execute("CREATE TABLE m.t (id int)")
    with lab.conn(anna) as c:
        pid = begin(c, "contract", "to-reject", objects=["m.t"], skip_expand=True).value
    with lab.conn(ben) as c:
        c.execute("SELECT migsafe.reject(%s, 'no')", (pid,))
    with lab.conn(mal) as c:
        closed = attempt(c, "SELECT migsafe._close_rollback_phase(%s)", (pid,))
        setp = attempt(c, "SELECT migsafe._set_rollback_phase(%s::bigint)", (pid,))
        full = attempt(c, "SELECT migsafe._has_data('vault.full_t', NULL)")
        empty = attempt(c, "SELECT migsafe._has_data('vault.empty_t', NULL)")
    with lab.su() as c:
        state = c.execute("SELECT state FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()[0]
    assert state == "rejected", f"another approver's rejected phase is now {state}: {closed}"
    assert setp.sqlstate in (DENIED, "42883"), setp   # not executable, or gone
    assert not (full.ok and empty.ok and full.value != empty.value), \
        f"_has_data() tells a table the caller cannot read has rows: {full.value} vs {empty.value}"


def test_four_eyes_no_self_approval(lab, approval_on):
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute("CREATE TABLE m.t (id int); INSERT INTO m.t VALUES (1)")
    with lab.conn(anna) as c:
        pid = begin(c, "contract", "self", objects=["m.t"], for_role=lab.attacker, skip_expand=True).value
        r = attempt(c, "SELECT migsafe.approve(%s)", (pid,))
    with lab.conn() as c:
        d = run(c, "DROP TABLE m.t")
    assert r.sqlstate == DENIED, r
    assert d.sqlstate == REFUSED and relation_exists(lab, "m.t"), d


@pytest.mark.parametrize("requester", ["approver", "superuser"])
def test_four_eyes_rollback_needs_a_second_approver(lab, approval_on, requester):
    """A rollback drops what was created since the snapshot: with four eyes on, it runs
    only after a different approver approved the request."""
    anna = "postgres" if requester == "superuser" else lab.role("anna", approver=True)
    ben = lab.role("ben", approver=True)
    with lab.su() as c:
        c.execute(f'CREATE SCHEMA a AUTHORIZATION "{anna}"')
        snap = c.execute("SELECT migsafe.snapshot('before added')").fetchone()[0]
    with lab.conn(anna) as c:
        c.execute("CREATE TABLE a.added (id int)")
        r = attempt(c, "SELECT step, status FROM migsafe.rollback(%s, dry_run => false)", (snap,))
        assert relation_exists(lab, "a.added"), f"a rollback without a second approver dropped a table: {r.rows}"
        assert r.sqlstate == "55000", r
        rid = attempt(c, "SELECT migsafe.request_rollback(%s, 'JIRA-9')", (snap,))
        assert rid.ok, rid
        assert run(c, "SELECT migsafe.approve(%s)", (rid.value,)).sqlstate == DENIED
    with lab.conn(ben) as c:
        assert attempt(c, "SELECT migsafe.approve(%s)", (rid.value,)).ok
    with lab.conn(anna) as c:
        r = attempt(c, "SELECT step, status FROM migsafe.rollback(%s, dry_run => false)", (snap,))
    assert r.ok, r
    assert not relation_exists(lab, "a.added")


def test_createrole_holder_cannot_mint_approvers(lab, approval_on):
    """A CREATEROLE holder (not a superuser) grants migsafe_approver to two logins of
    their own; with migsafe.approvers_granted_by_superuser (default on) neither may
    approve anything, so four eyes still mean two people."""
    boss = lab.role("boss", extra="CREATEROLE")
    r1, r2 = uniq("sock_a"), uniq("sock_b")
    lab.roles += [r1, r2]
    with lab.su() as c:
        c.execute(f'CREATE SCHEMA b AUTHORIZATION "{boss}"')
    with lab.conn(boss) as c:
        c.execute(f'CREATE ROLE "{r1}" LOGIN; CREATE ROLE "{r2}" LOGIN;'
                  "CREATE TABLE b.precious (id int); INSERT INTO b.precious VALUES (1)")
        g = run(c, f'GRANT migsafe_approver TO "{r1}", "{r2}"')
        # PostgreSQL 16 on: CREATEROLE no longer lets a role grant roles it has no ADMIN
        # option on; the attack stops at the grant. Up to 15 pg_migsafe must stop it.
        assert g.ok if PG_MAJOR < 16 else g.sqlstate == DENIED, g
    with lab.conn(r1) as c:
        req = begin(c, "contract", "sock", objects=["b.precious"], for_role=boss, skip_expand=True)
    ok = None
    if req.ok:
        with lab.conn(r2) as c:
            ok = attempt(c, "SELECT migsafe.approve(%s)", (req.value,))
    with lab.conn(boss) as c:
        d = run(c, "DROP TABLE b.precious")
    assert relation_exists(lab, "b.precious"), (req, ok, d)
    assert d.sqlstate == REFUSED, d
    assert req.sqlstate == DENIED or ok.sqlstate == DENIED, (req, ok)


def test_expand_phase_for_another_role_needs_rights(lab):
    """An expand phase for a role blocks that role's destructive statements, approved
    ones included: a role with no rights may not open one for somebody else."""
    anna = lab.role("anna", approver=True)
    bot = lab.role("deploy_bot")
    with lab.su() as c:
        c.execute(f'CREATE SCHEMA d AUTHORIZATION "{bot}"')
    with lab.conn(bot) as c:
        c.execute("CREATE TABLE d.old (id int); INSERT INTO d.old VALUES (1)")
    with lab.conn() as c:
        r = begin(c, "expand", "blocker", for_role=bot, valid_for="1 hour")
    with lab.conn(anna) as c:
        assert begin(c, "contract", "drop-old", objects=["d.old"], for_role=bot, skip_expand=True).ok
    with lab.conn(bot) as c:
        d = run(c, "DROP TABLE d.old")
    assert d.ok, f"an expand phase opened by {lab.attacker} blocks {bot}'s approved drop: {d}"
    assert r.sqlstate == DENIED, r


# ======================================================================================
# 5. Bounded and cancellable work
# ======================================================================================

PLUS = "+".join(["1"] * 1_000_000)
CASTS = "::int" * 200_000
DEEP = {
    "SET DEFAULT on own table": f"ALTER TABLE m.t ALTER COLUMN v SET DEFAULT {PLUS}",
    "ADD COLUMN DEFAULT on own table": f"ALTER TABLE m.t ADD COLUMN w int DEFAULT {PLUS}",
    "ALTER TYPE USING casts on own table": f"ALTER TABLE m.t ALTER COLUMN v TYPE int USING v{CASTS}",
    "ADD COLUMN DEFAULT on pg_class": f"ALTER TABLE pg_catalog.pg_class ADD COLUMN w int DEFAULT {PLUS}",
    "ALTER TYPE USING casts on pg_class":
        f"ALTER TABLE pg_catalog.pg_class ALTER COLUMN relpages TYPE int USING relpages{CASTS}",
    "check() of ADD COLUMN DEFAULT": f"SELECT count(*) FROM migsafe.check($q$ALTER TABLE m.t ADD COLUMN w int DEFAULT {PLUS}$q$)",
    "check() of USING casts": f"SELECT count(*) FROM migsafe.check($q$ALTER TABLE m.t ALTER COLUMN v TYPE int USING v{CASTS}$q$)",
    "check() of DEFAULT on pg_class":
        f"SELECT count(*) FROM migsafe.check($q$ALTER TABLE pg_catalog.pg_class ADD COLUMN w int DEFAULT {PLUS}$q$)",
}


@pytest.fixture(scope="module")
def deep_lab(crash_cluster):
    lab = Lab(crash_cluster)
    with lab.conn() as c:
        c.execute("CREATE TABLE m.t (id int, v int)")
    return lab


@pytest.mark.parametrize("case", list(DEEP))
def test_deep_expression_is_an_error_not_a_crash(deep_lab, case):
    """A LOGIN-only role sends a DEFAULT of a million terms or 200,000 nested casts —
    to the hook or to check(), on its own table or on pg_class it has no rights on."""
    lab = deep_lab
    with no_crash(lab.cluster):
        with lab.conn() as c:
            r = attempt(c, DEEP[case])
    assert r.ok or r.sqlstate in ("54001", "54000", DENIED, REFUSED, "42P16", "42804"), r   # not a lost connection


def test_begin_phase_with_40000_objects_is_cancellable(lab):
    objects = [f"public.{'x' * 300}{i:06d}*" for i in range(40_000)]
    with lab.conn() as c:
        c.execute("SET statement_timeout = '2s'")
        t0 = time.time()
        r = begin(c, "contract", "huge", objects=objects, skip_expand=True)
        took = time.time() - t0
    assert took < 15, f"begin_phase ran {took:.1f} s past statement_timeout = 2s ({r})"
    assert r.ok or r.sqlstate in ("57014", DENIED, "22023", "54000", "42704"), r


def test_check_of_20000_statements_is_cancellable(lab):
    with lab.conn() as c:
        c.execute("CREATE TABLE m.t (id int PRIMARY KEY); CREATE VIEW m.v AS SELECT id FROM m.t;"
                  "CREATE TABLE m.c (id int REFERENCES m.t)")
        sql = ";\n".join(["DROP TABLE m.t CASCADE", "ALTER TABLE m.t DROP COLUMN id CASCADE",
                          "ALTER TABLE m.t ALTER COLUMN id TYPE bigint"] * 6667)
        c.execute("SET statement_timeout = '2s'")
        t0 = time.time()
        r = attempt(c, "SELECT count(*) FROM migsafe.check(%s)", (sql,))
        took = time.time() - t0
    assert took < 15, f"check() ran {took:.1f} s past statement_timeout = 2s ({r})"
    assert r.ok or r.sqlstate == "57014", r


# ======================================================================================
# 6. The audit log cannot be silenced or forged
# ======================================================================================

def test_long_migration_name_is_stored_and_the_writer_goes_on(lab):
    with lab.conn(autocommit=False) as c:
        c.execute("SELECT migsafe.set_migration_name(repeat('x', 9000))")
        c.execute("CREATE TABLE m.named (id int)")
        c.commit()
    with lab.conn() as c:
        c.execute("CREATE TABLE m.marker_after_name (id int)")
    assert lab.wait_statements("statement LIKE %s", ("%marker_after_name%",)), "the writer stopped"
    with lab.su() as c:
        assert wait_for(lambda: c.execute("SELECT length(name) FROM migsafe.migrations "
                                          "WHERE length(name) = 9000").fetchall())
    assert lab.verify_log()[0]


def test_oversized_phase_event_does_not_wedge_the_writer(lab):
    """A 9,000-character event (over NOTIFY's 8000-byte payload limit) queued through
    _queue_phase_event() made the writer fail on every retry: what follows was never
    stored in the log."""
    with lab.conn() as c:
        r = attempt(c, "SELECT migsafe._queue_phase_event(1, repeat('e', 9000), 'x', now()::text, 'x')")
        c.execute("CREATE TABLE m.marker_after_event (id int)")
    assert lab.wait_statements("statement LIKE %s", ("%marker_after_event%",)), \
        f"DDL after the oversized event was not recorded (the writer is wedged); the call: {r}"
    assert lab.verify_log()[0]


@pytest.mark.parametrize("decision", ["refused", "approved"])
def test_drop_of_2000_tables_is_recorded_and_the_writer_goes_on(lab, decision):
    names = [f"bulk.table_with_a_longish_name_{i:04d}" for i in range(2000)]
    with lab.su() as c:
        c.execute(f'CREATE SCHEMA bulk AUTHORIZATION "{lab.attacker}" '
                  + " ".join(f"CREATE TABLE {n.split('.')[1]} (id int)" for n in names))
    if decision == "approved":
        approve_for(lab, lab.role("anna", approver=True), ["bulk.*"])
    drop = "DROP TABLE " + ", ".join(names)
    with lab.conn() as c:
        r = run(c, drop)
        assert (r.sqlstate == REFUSED) if decision == "refused" else r.ok, r
        c.execute("CREATE TABLE m.marker_after_drop (id int)")
    assert lab.wait_statements("statement LIKE %s", ("%marker_after_drop%",)), "DDL after the big DROP was not recorded"
    rows = lab.wait_statements("statement LIKE %s AND decision = %s", ("DROP TABLE bulk.%", decision), timeout=5)
    assert rows, f"the {decision} DROP of 2,000 tables is missing from the audit log"
    assert lab.verify_log()[0]


def secret_sinks(lab, pos, listener, tokens, wait_for_where, n):
    """Waits for n statements matching wait_for_where, then returns where any token shows:
    the audit log, pg_migsafe_event lines of the server log, NOTIFY payloads."""
    assert lab.wait_statements(wait_for_where, n=n, timeout=15), "the statements were not recorded"
    with lab.su() as c:
        log_rows = [t for (t,) in c.execute("SELECT record::text FROM migsafe.audit_log")]
    time.sleep(0.5)
    events = [l for l in log_since(lab.cluster, pos).splitlines() if "pg_migsafe_event" in l]
    payloads = [n.payload for n in listener.notifies(timeout=1.0)]
    found = {}
    for where, texts in (("audit_log", log_rows), ("server log", events), ("NOTIFY", payloads)):
        for t in texts:
            for tok in tokens:
                if tok in t:
                    found.setdefault(where, []).append(tok)
    return found


def test_a_listener_learns_nothing_it_could_not_read(lab):
    """Any role connected to the database may LISTEN migsafe_events: the payloads say
    that something happened (event, rules, user, SQLSTATE), never what another session's
    statement or error said. The server log keeps it all."""
    listener = lab.conn()
    listener.execute("LISTEN migsafe_events")
    marker = f"public.SecretPlan{lab.attacker[-4:]}"
    pos = log_size(lab.cluster)
    with lab.su() as c:
        c.execute(f"CREATE TABLE {marker} (id int PRIMARY KEY)")
        c.execute(f"INSERT INTO {marker} VALUES (1)")
    with lab.conn("postgres") as c:
        assert run(c, f"DROP TABLE {marker}").sqlstate == REFUSED
        assert not run(c, f"ALTER TABLE {marker} ADD CONSTRAINT secretplan_chk CHECK (id > 1)").ok
    got = []
    deadline = time.time() + 15
    while time.time() < deadline and len(got) < 2:
        got += [n.payload for n in listener.notifies(timeout=1.0)]
    listener.close()
    assert len(got) >= 2, got
    events = [json.loads(p) for p in got]
    assert {e["event"] for e in events} >= {"refused", "failed"}, events
    bare = marker.split(".")[1].lower()
    assert not any(bare in p.lower() for p in got), got
    lines = wait_for(lambda: [l for l in log_since(lab.cluster, pos).splitlines()
                              if "pg_migsafe_event" in l and bare in l.lower()], timeout=10)
    assert lines, "the server log line keeps the statement"


def test_role_passwords_never_reach_the_log(lab):
    """ALTER ROLE … PASSWORD (any role may change its own) and CREATE ROLE/USER … PASSWORD
    (a CREATEROLE holder), in every string form, succeeding and failing (failures are
    events: server log line and NOTIFY)."""
    boss = lab.role("boss", extra="CREATEROLE")
    pos = log_size(lab.cluster)
    listener = lab.su()
    listener.execute("LISTEN migsafe_events")
    tok = lambda k: f"Pw{k}Zq{lab.attacker[-3:]}x"
    me = lab.attacker
    forms = [
        f"ALTER ROLE {me} PASSWORD '{tok(1)}'",
        f"ALTER ROLE {me} WITH PASSWORD E'{tok(2)}\\\\tail\\''",
        f"ALTER USER {me} PASSWORD $${tok(3)}$$",
        f"ALTER ROLE {me} PASSWORD $pw${tok(4)}'x$pw$",
        f"ALTER ROLE {me} PASSWORD U&'{tok(5)}\\0041'",
        f"ALTER ROLE {me} PASSWORD 'md5{tok(6)}' VALID UNTIL 'infinity'",
        f"ALTER ROLE {me} PASSWORD '{tok(7)}' CREATEDB",                      # fails: permission denied
    ]
    scs_off = [f"ALTER ROLE {me} PASSWORD '{tok(8)}\\'tail'",
               f"ALTER ROLE {me} PASSWORD '{tok(9)}\\\\' CREATEROLE"]          # fails
    boss_forms = [f"CREATE ROLE {me}_r1 LOGIN PASSWORD '{tok(10)}'",
                  f"CREATE USER {me}_r2 WITH ENCRYPTED PASSWORD E'{tok(11)}\\\\x'",
                  f"CREATE ROLE {me}_r1 PASSWORD '{tok(12)}'",                 # fails: exists
                  f"ALTER USER {me}_r2 PASSWORD U&'{tok(13)}'"]
    with lab.conn() as c:
        for s in forms:
            run(c, s)
    with lab.conn(scs_off=True) as c:
        for s in scs_off:
            run(c, s)
    with lab.conn(boss) as c:
        for s in boss_forms:
            run(c, s)
    n = len(forms) + len(scs_off) + len(boss_forms)
    found = secret_sinks(lab, pos, listener, [tok(k) for k in range(1, 14)],
                         "command_tag IN ('ALTER ROLE', 'CREATE ROLE')", n)
    listener.close()
    assert found == {}, f"passwords leaked: {found}"
    recorded = [s for (_, s, _, _) in lab.statements("command_tag IN ('ALTER ROLE', 'CREATE ROLE')")]
    assert any(s.startswith(f"ALTER ROLE {me} PASSWORD") for s in recorded), recorded


def test_foreign_server_and_user_mapping_secrets_never_reach_the_log(lab):
    with lab.su() as c:
        c.execute(f'CREATE FOREIGN DATA WRAPPER dummy; GRANT USAGE ON FOREIGN DATA WRAPPER dummy TO "{lab.attacker}"')
    pos = log_size(lab.cluster)
    listener = lab.su()
    listener.execute("LISTEN migsafe_events")
    tok = lambda k: f"Sx{k}Kq{lab.attacker[-3:]}y"
    me = lab.attacker
    stmts = [
        f"CREATE SERVER srv FOREIGN DATA WRAPPER dummy OPTIONS (host 'db.example', password '{tok(1)}', "
        f"secret '{tok(2)}', api_token '{tok(3)}', sslkey '{tok(4)}')",
        f"ALTER SERVER srv OPTIONS (SET password '{tok(5)}', ADD auth_token '{tok(6)}')",
        f"CREATE USER MAPPING FOR {me} SERVER srv OPTIONS (user 'u{tok(7)}', password '{tok(8)}')",
        f"ALTER USER MAPPING FOR {me} SERVER srv OPTIONS (SET password '{tok(9)}')",
        f"CREATE USER MAPPING FOR {me} SERVER srv OPTIONS (password '{tok(10)}')",           # fails: exists
        f"ALTER SERVER srv OPTIONS (ADD password '{tok(11)}')",                             # fails: exists
    ]
    with lab.conn() as c:
        results = [run(c, s) for s in stmts]
    assert [r.ok for r in results] == [True, True, True, True, False, False], results
    found = secret_sinks(lab, pos, listener, [tok(k) for k in range(1, 12)],
                         "command_tag IN ('CREATE SERVER', 'ALTER SERVER', 'CREATE USER MAPPING', "
                         "'ALTER USER MAPPING')", len(stmts))
    listener.close()
    assert found == {}, f"secrets leaked: {found}"
    recorded = [s for (_, s, _, _) in lab.statements("command_tag = 'CREATE SERVER'")]
    assert recorded and "db.example" in recorded[0], recorded   # the rest is still recorded


def test_subscription_connection_string_never_reaches_the_log(lab):
    pos = log_size(lab.cluster)
    listener = lab.su()
    listener.execute("LISTEN migsafe_events")
    tok = lambda k: f"Cn{k}Pq{lab.attacker[-3:]}z"
    conninfo = lambda k: f"host=127.0.0.1 port=1 dbname=src user=rep password={tok(k)}"
    stmts = [
        f"CREATE SUBSCRIPTION sub_a CONNECTION '{conninfo(1)}' PUBLICATION p WITH (connect = false)",
        f"ALTER SUBSCRIPTION sub_a CONNECTION '{conninfo(2)}'",
        f"CREATE SUBSCRIPTION sub_a CONNECTION '{conninfo(3)}' PUBLICATION p WITH (connect = false)",  # fails
    ]
    with lab.conn("postgres") as c:
        results = [run(c, s) for s in stmts]
    assert [r.ok for r in results] == [True, True, False], results
    found = secret_sinks(lab, pos, listener, [tok(k) for k in (1, 2, 3)],
                         "command_tag IN ('CREATE SUBSCRIPTION', 'ALTER SUBSCRIPTION')", len(stmts))
    listener.close()
    with lab.conn("postgres") as c:
        c.execute("ALTER SUBSCRIPTION sub_a SET (slot_name = NONE)")
    assert found == {}, f"connection strings leaked: {found}"


# ======================================================================================
# 7. Approvals mean exactly what they say
# ======================================================================================

REPLACED = {
    "function": ("CREATE FUNCTION m.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                 "CREATE OR REPLACE FUNCTION m.f() RETURNS int LANGUAGE sql AS 'SELECT 2'",
                 "DROP FUNCTION m.f()",
                 "SELECT count(*) FROM pg_proc WHERE oid = to_regprocedure('m.f()')"),
    "view": ("CREATE VIEW m.v AS SELECT id FROM m.base",
             "CREATE OR REPLACE VIEW m.v AS SELECT id FROM m.base",
             "DROP VIEW m.v",
             "SELECT count(*) FROM pg_class WHERE oid = to_regclass('m.v')"),
    "trigger": ("CREATE TRIGGER tr BEFORE INSERT ON m.base FOR EACH ROW EXECUTE FUNCTION m.tf()",
                "CREATE OR REPLACE TRIGGER tr BEFORE INSERT ON m.base FOR EACH ROW EXECUTE FUNCTION m.tf()",
                "DROP TRIGGER tr ON m.base",
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'tr' AND tgrelid = 'm.base'::regclass"),
}


@pytest.mark.parametrize("kind", list(REPLACED))
def test_create_or_replace_does_not_make_an_object_new(lab, kind):
    """Objects created earlier in the same transaction may be dropped without approval;
    CREATE OR REPLACE of an object that existed before does not make it one of them."""
    create, replace, drop, count = REPLACED[kind]
    with lab.conn() as c:
        c.execute("CREATE TABLE m.base (id int); INSERT INTO m.base VALUES (1);"
                  "CREATE FUNCTION m.tf() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RETURN NEW; END $f$")
        c.execute(create)
        assert run(c, drop).sqlstate == REFUSED       # the drop needs approval …
    with lab.conn(autocommit=False) as c:
        assert run(c, replace).ok
        r = run(c, drop)                               # … after CREATE OR REPLACE too
        c.commit()
    with lab.su() as c:
        assert c.execute(count).fetchone()[0] == 1, f"{kind} dropped without approval: {r}"
    assert r.sqlstate == REFUSED, r


REBUILT = {
    # drop-index is a risky rule (a warning in enforce mode), drop-constraint a
    # destructive one (refused without approval): either way the finding must stay.
    "index": ("CREATE UNIQUE INDEX base_code ON m.base (code)", "DROP INDEX m.base_code", "drop-index"),
    "constraint": ("ALTER TABLE m.base ADD CONSTRAINT base_code_key UNIQUE (code)",
                   "ALTER TABLE m.base DROP CONSTRAINT base_code_key", "drop-constraint"),
}


@pytest.mark.parametrize("kind", list(REBUILT))
def test_rebuilt_index_or_constraint_is_not_new(lab, kind):
    """ALTER COLUMN … TYPE rebuilds the column's indexes and constraints under new oids;
    they are not new objects: dropping them afterwards is judged like before (refused
    without approval, or warned), not waved through as created in this transaction."""
    create, drop, rule = REBUILT[kind]
    flagged = lambda r: r.sqlstate == REFUSED or rule in r.warned_rules()
    with lab.conn() as c:
        c.execute("CREATE TABLE m.base (id int, code int); INSERT INTO m.base VALUES (1, 1)")
        c.execute(create)
    with lab.conn(autocommit=False) as c:
        before = run(c, drop)
        c.rollback()
        assert flagged(before), before
        assert run(c, "ALTER TABLE m.base ALTER COLUMN code TYPE bigint").ok
        r = run(c, drop)
        c.rollback()
    assert flagged(r), f"the rebuilt {kind} was dropped as if new: {r}"
    if rule == "drop-constraint":
        assert r.sqlstate == REFUSED, r


def test_cascade_needs_every_dependent_listed(lab):
    """A phase listing `type m.mood` does not approve DROP TYPE m.mood CASCADE, which
    would also remove the column m.other.m: the refusal names what is not listed."""
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute("CREATE TYPE m.mood AS ENUM ('ok', 'sad');"
                  "CREATE TABLE m.other (id int, m m.mood); INSERT INTO m.other VALUES (1, 'ok')")
    approve_for(lab, anna, ["type m.mood"])
    with lab.conn() as c:
        r = run(c, "DROP TYPE m.mood CASCADE")
    with lab.su() as c:
        assert c.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'm.other'::regclass "
                         "AND attname = 'm' AND NOT attisdropped").fetchone()[0] == 1, \
            f"the CASCADE removed an unlisted column: {r}"
    assert r.sqlstate == REFUSED, r
    said = f"{r.message} {r.error.diag.message_detail}"
    assert "m.other.m" in said or "other" in said, said


# ======================================================================================
# Review of the fix (commits after 311f747): attacks that still worked
# ======================================================================================

# --- 3. user code run as its owner ----------------------------------------------------

@pytest.mark.parametrize("via", ["undrop", "rollback dry run"])
def test_restoring_a_column_of_the_owners_domain_runs_no_code_as_superuser(lab, via):
    """undrop() puts a dropped column back with ALTER TABLE … ADD COLUMN run as the
    extension's owner. The column's type is a domain of the table owner's: its DEFAULT
    and CHECK (set after the drop) are evaluated for every row by ADD COLUMN — they must
    not run as the bootstrap superuser, whether an approver runs undrop() or a rollback
    dry run (which restores from the recycle bin through undrop())."""
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute("CREATE DOMAIN m.d AS text; CREATE TABLE m.t (id int PRIMARY KEY, c m.d); "
                  "INSERT INTO m.t SELECT g, 'v' || g FROM generate_series(1, 3) g")
    with lab.su() as c:
        snap = c.execute("SELECT migsafe.snapshot('before the drop')").fetchone()[0]
    approve_for(lab, anna, ["m.t.c"])
    with lab.conn() as c:
        assert run(c, "ALTER TABLE m.t DROP COLUMN c").ok
        c.execute("ALTER DOMAIN m.d SET DEFAULT (CASE WHEN m.evil('domain default') THEN 'x' END)")
        c.execute("ALTER DOMAIN m.d ADD CONSTRAINT d_evil CHECK (m.evil('domain check'))")
    [rid] = bin_ids(lab)
    with lab.conn(anna) as c:
        if via == "undrop":
            r = attempt(c, "SELECT migsafe.undrop(%s)", (rid,))
        else:
            r = attempt(c, "SELECT action, status, detail FROM migsafe.rollback(%s)", (snap,))
    lab.assert_contained()
    assert r.ok, r


ROLLED_BACK = {
    # (set-up by the attacker, object entry of the approved drop, the drop, rollback)
    "security definer function": (
        "CREATE FUNCTION m.helper() RETURNS boolean SECURITY DEFINER LANGUAGE sql "
        "AS $f$ SELECT m.evil('re-created security definer function') $f$",
        "function m.helper()", "DROP FUNCTION m.helper()", False),
    "materialized view": (
        "CREATE TABLE m.src (id int); INSERT INTO m.src VALUES (1);"
        "CREATE MATERIALIZED VIEW m.mv AS SELECT id, m.evil('re-created materialized view') AS e FROM m.src",
        "m.mv", "DROP MATERIALIZED VIEW m.mv", True),
    "check constraint": (
        "CREATE TABLE m.src (id int); INSERT INTO m.src VALUES (1);"
        "ALTER TABLE m.src ADD CONSTRAINT src_evil CHECK (m.evil('re-created check constraint'))",
        "m.src", "ALTER TABLE m.src DROP CONSTRAINT src_evil", True),
}


@pytest.mark.parametrize("kind", list(ROLLED_BACK))
def test_rollback_recreates_the_owners_objects_without_the_callers_rights(lab, kind):
    """A rollback re-creates what approved drops removed since the snapshot by running
    the plan's DDL as its caller (here a superuser). What the table owner wrote must not
    run with the caller's rights (a materialized view's query, a CHECK validated on
    re-creation — even in a dry run) nor come back owned by the caller (a SECURITY
    DEFINER function the attacker then calls)."""
    setup, entry, drop, dry = ROLLED_BACK[kind]
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute(setup)
    with lab.su() as c:
        snap = c.execute("SELECT migsafe.snapshot('before the cleanup')").fetchone()[0]
    approve_for(lab, anna, [entry])
    with lab.conn() as c:
        assert run(c, drop).ok
    with lab.conn("postgres") as c:
        r = attempt(c, "SELECT action, status, detail FROM migsafe.rollback(%s, dry_run => %s, force => true)",
                    (snap, dry))
    if kind == "security definer function":
        with lab.conn() as c:
            attempt(c, "SELECT m.helper()")
    lab.assert_contained()


# --- 4. least privilege ---------------------------------------------------------------

def test_verify_runs_no_table_code_with_the_callers_rights(lab):
    """verify() reads max(column) of every table whose sequence it checks, as its caller
    (an approver, an auditor, a deploy gate). A table owner's row-level security policy
    then runs with the caller's rights: it must not (the owner's code runs as the owner)."""
    anna = lab.role("anna", approver=True)
    with lab.conn() as c:
        c.execute("CREATE TABLE m.counted (id serial PRIMARY KEY); INSERT INTO m.counted DEFAULT VALUES;"
                  "ALTER TABLE m.counted ENABLE ROW LEVEL SECURITY;"
                  "CREATE POLICY p ON m.counted USING (m.evil('policy read by verify()'));"
                  "GRANT SELECT ON m.counted TO PUBLIC; GRANT SELECT ON SEQUENCE m.counted_id_seq TO PUBLIC")
    with lab.conn(anna) as c:
        r = attempt(c, "SELECT check_name, status FROM migsafe.verify()")
    ran = [e for e in lab.evidence() if e["cu"] == anna]
    assert ran == [], f"the table owner's code ran as the approver who called verify(): {ran} ({r})"
    lab.assert_contained()


def test_an_approved_drop_table_still_needs_the_right_to_drop_it(lab):
    """A phase approves; it does not grant. The recycle bin carries out an approved DROP
    TABLE as the extension's owner (a rename into migsafe_recycle): a role that may not
    drop the table (not its owner) must not get it dropped because a phase lists it
    (here by a pattern, as the docs suggest)."""
    anna = lab.role("anna", approver=True)
    with lab.su() as c:
        c.execute("CREATE TABLE public.payroll (id int); INSERT INTO public.payroll VALUES (1)")
    approve_for(lab, anna, ["public.*"])
    with lab.conn() as c:
        r = run(c, "DROP TABLE public.payroll")
    assert relation_exists(lab, "public.payroll"), f"a table the caller does not own was dropped: {r}"
    assert r.sqlstate == DENIED, r


def test_createrole_holder_cannot_mint_an_admin_to_purge_the_recycle_bin(lab):
    """With migsafe.approvers_granted_by_superuser on, a CREATEROLE holder's own grants
    confer nothing; that must hold for migsafe_admin too: purge() and drop_snapshots()
    destroy the only copy of what approved drops removed and the snapshots rollbacks
    need."""
    anna = lab.role("anna", approver=True)
    boss = lab.role("boss", extra="CREATEROLE")
    sock = uniq("sock_admin")
    lab.roles.append(sock)
    with lab.conn() as c:
        c.execute("CREATE TABLE m.kept (id int); INSERT INTO m.kept VALUES (1)")
    approve_for(lab, anna, ["m.kept"])
    with lab.conn() as c:
        assert run(c, "DROP TABLE m.kept").ok
    with lab.su() as c:
        c.execute("SELECT migsafe.snapshot('kept')")
        snaps = c.execute("SELECT count(*) FROM migsafe.snapshot").fetchone()[0]
    with lab.conn(boss) as c:
        g = run(c, f'CREATE ROLE "{sock}" LOGIN IN ROLE migsafe_admin')
        assert g.ok if PG_MAJOR < 16 else g.sqlstate == DENIED, g   # see above
        if not g.ok:
            c.execute(f'CREATE ROLE "{sock}" LOGIN')
    with lab.conn(sock) as c:
        p = attempt(c, "SELECT migsafe.purge('0 seconds')")
        d = attempt(c, "SELECT migsafe.drop_snapshots('0 seconds')")
    with lab.su() as c:
        states = [s for (s,) in c.execute("SELECT state FROM migsafe.recycle_bin")]
        left = c.execute("SELECT count(*) FROM migsafe.snapshot").fetchone()[0]
    assert states == ["kept"], f"a CREATEROLE holder's admin purged the recycle bin: {states} ({p})"
    assert left >= snaps > 0, f"a CREATEROLE holder's admin dropped snapshots: {snaps} -> {left} ({d})"


# --- 6. the audit log cannot be silenced ------------------------------------------------

def test_a_login_role_cannot_hold_the_audit_writer_back(lab):
    """The writer takes SHARE ROW EXCLUSIVE on migsafe.audit_log for every batch. A
    LOGIN-only role PREPAREs an INSERT into the log in an open transaction: parse
    analysis takes ROW EXCLUSIVE on the table before any privilege check, and holds it.
    The writer must not wait on that: DDL is still recorded."""
    holder = lab.conn()
    holder.execute("BEGIN")
    holder.execute("PREPARE hold AS INSERT INTO migsafe.audit_log VALUES (0, 'x', NULL, '{}', 'x')")
    try:
        with lab.conn() as c:
            c.execute("CREATE TABLE m.marker_while_held (id int)")
        rows = lab.wait_statements("statement LIKE %s", ("%marker_while_held%",), timeout=15)
    finally:
        holder.close()
    assert rows, "the audit writer waited on a lock a LOGIN-only role holds: nothing was recorded"


def attacker_foreign_table(lab):
    """A foreign table m.ft of the attacker's, on server srv of a wrapper that does nothing."""
    with lab.su() as c:
        c.execute(f'CREATE FOREIGN DATA WRAPPER dummy; GRANT USAGE ON FOREIGN DATA WRAPPER dummy TO "{lab.attacker}"')
    with lab.conn() as c:
        c.execute("CREATE SERVER srv FOREIGN DATA WRAPPER dummy; CREATE FOREIGN TABLE m.ft (c int) SERVER srv")


def test_secrets_in_other_statement_forms_never_reach_the_log(lab):
    """Secret-looking options of foreign tables (table and column options), of IMPORT
    FOREIGN SCHEMA, and a role password whose query string first turns
    standard_conforming_strings on (the parse tree was built with it off, the redaction
    lexes the text with it on)."""
    attacker_foreign_table(lab)
    pos = log_size(lab.cluster)
    listener = lab.su()
    listener.execute("LISTEN migsafe_events")
    tok = lambda k: f"Fx{k}Wq{lab.attacker[-3:]}y"
    me = lab.attacker
    with lab.conn() as c:
        results = [run(c, f"ALTER FOREIGN TABLE m.ft OPTIONS (ADD password '{tok(1)}')"),
                   run(c, f"ALTER FOREIGN TABLE m.ft ALTER COLUMN c OPTIONS (ADD password '{tok(2)}')"),
                   run(c, f"CREATE FOREIGN TABLE m.ft2 (c int OPTIONS (api_token '{tok(3)}')) SERVER srv"),
                   # fails (the wrapper has no handler), and is recorded
                   run(c, f"IMPORT FOREIGN SCHEMA remote FROM SERVER srv INTO m OPTIONS (password '{tok(4)}')")]
    with lab.conn(scs_off=True) as c:
        results.append(run(c, f"SET standard_conforming_strings = on; ALTER ROLE {me} PASSWORD '\\'{tok(5)}' --'"))
    assert [r.ok for r in results] == [True, True, True, False, True], results
    found = secret_sinks(lab, pos, listener, [tok(k) for k in range(1, 6)],
                         "command_tag IN ('ALTER FOREIGN TABLE', 'CREATE FOREIGN TABLE', "
                         "'IMPORT FOREIGN SCHEMA', 'ALTER ROLE')", 6)
    listener.close()
    assert found == {}, f"secrets leaked: {found}"


def test_a_blocking_query_cut_short_keeps_its_secrets_out_of_the_log(lab):
    """A lock-timeout record names the blocking sessions with their query, redacted; a
    query longer than track_activity_query_size is cut and no longer parses, and is then
    kept whole unless a credential keyword shows — `api_token` is not one of them."""
    with lab.su() as c:
        c.execute(f'CREATE FOREIGN DATA WRAPPER dummy; GRANT USAGE ON FOREIGN DATA WRAPPER dummy TO "{lab.attacker}"')
    with lab.conn() as c:
        c.execute("CREATE TABLE m.busy (id int)")
    tok = f"Bk7Tq{lab.attacker[-3:]}v"
    holder = lab.conn()
    holder.execute("BEGIN; LOCK TABLE m.busy IN ACCESS SHARE MODE; "
                   f"CREATE SERVER srv FOREIGN DATA WRAPPER dummy OPTIONS (api_token '{tok}', note '{'p' * 2000}')")
    try:
        with lab.conn() as c:
            c.execute("SET lock_timeout = '300ms'")
            r = run(c, "ALTER TABLE m.busy ADD COLUMN x int")
    finally:
        holder.close()
    assert r.sqlstate == "55P03", r
    assert lab.wait_statements("statement = %s", ("ALTER TABLE m.busy ADD COLUMN x int",)), "not recorded"
    with lab.su() as c:
        leaked = [t[:200] for (t,) in c.execute("SELECT record::text FROM migsafe.audit_log") if tok in t]
    assert leaked == [], f"a blocker's secret reached the audit log: {leaked}"


# --- 7. approvals mean what they say ----------------------------------------------------

@pytest.mark.parametrize("how", ["_rollback_run dry run", "_rollback_approve, DROP, _rollback_end"])
def test_dry_run_approvals_never_commit(lab, approval_on, how):
    """With four eyes on, a real rollback needs a second approver; a dry run's approvals
    hold only for work that is rolled back. One approver must not commit the plan's
    statements by calling the helpers rollback() is built from (granted to approvers):
    _rollback_run(…, dry_run => true) or _rollback_end() both forget that the dry run's
    approvals were used."""
    anna = lab.role("anna", approver=True)
    with lab.su() as c:
        c.execute(f'CREATE SCHEMA a AUTHORIZATION "{anna}"')
        snap = c.execute("SELECT migsafe.snapshot('before added')").fetchone()[0]
    with lab.conn(anna) as c:
        c.execute("CREATE TABLE a.added (id int); INSERT INTO a.added VALUES (1)")
        if how == "_rollback_run dry run":
            r = attempt(c, "SELECT step, action, status FROM migsafe._rollback_run(%s, true, false)", (snap,))
        else:
            assert run(c, "BEGIN").ok
            r = attempt(c, "SELECT step FROM migsafe._rollback_approve(%s, true, false)", (snap,))
            r = run(c, "DROP TABLE a.added") if r.ok else r
            r = attempt(c, "SELECT migsafe._rollback_end()") if r.ok else r
            r = run(c, "COMMIT") if r.ok else r
            run(c, "ROLLBACK")
    assert relation_exists(lab, "a.added"), f"one approver committed a rollback's drop: {r}"


def test_rebuilt_statistics_object_is_not_new(lab):
    """ALTER COLUMN … TYPE rebuilds the extended statistics on the column under a new oid
    (as it does indexes and constraints): DROP STATISTICS afterwards is still the drop
    of an object that existed before the transaction, refused without approval."""
    with lab.conn() as c:
        c.execute("CREATE TABLE m.st (a int, b int); INSERT INTO m.st VALUES (1, 1);"
                  "CREATE STATISTICS m.st_ab ON a, b FROM m.st")
    with lab.conn(autocommit=False) as c:
        before = run(c, "DROP STATISTICS m.st_ab")
        c.rollback()
        assert before.sqlstate == REFUSED, before
        assert run(c, "ALTER TABLE m.st ALTER COLUMN a TYPE bigint").ok
        r = run(c, "DROP STATISTICS m.st_ab")
        c.commit()
    with lab.su() as c:
        left = c.execute("SELECT count(*) FROM pg_statistic_ext WHERE stxname = 'st_ab'").fetchone()[0]
    assert left == 1, f"the rebuilt statistics object was dropped as if new: {r}"
    assert r.sqlstate == REFUSED, r


# ======================================================================================
# Final review of the security release: attacks that still worked
# ======================================================================================

# --- 4. least privilege ---------------------------------------------------------------

def test_a_rollback_does_not_tell_an_approver_whether_an_unreadable_table_holds_rows(lab):
    """The rollback's data-loss check reads every table it would drop (as the table's
    owner) and tells the caller which ones hold rows: migsafe._rollback_approve() (granted
    to approvers) returns loses_data per step, and a real run refuses with MS005 naming
    them. An approver who may not read a table must not learn from pg_migsafe whether it
    is empty (what _has_data() was fixed for)."""
    anna = lab.role("anna", approver=True)
    with lab.su() as c:
        c.execute("CREATE SCHEMA hidden")            # no USAGE for anyone but the superuser
        snap = c.execute("SELECT migsafe.snapshot('before hidden tables')").fetchone()[0]
        c.execute("CREATE TABLE hidden.full_t (salary int); INSERT INTO hidden.full_t VALUES (123456);"
                  "CREATE TABLE hidden.empty_t (salary int)")
    with lab.conn(anna) as c:
        assert run(c, "SELECT count(*) FROM hidden.full_t").sqlstate == DENIED
    with lab.conn(anna, autocommit=False) as c:
        plan = attempt(c, "SELECT drops_table, loses_data FROM migsafe._rollback_approve(%s, true, false)"
                          " WHERE drops_table IS NOT NULL", (snap,))
        c.rollback()
    with lab.conn(anna) as c:
        real = attempt(c, "SELECT * FROM migsafe.rollback(%s, dry_run => false)", (snap,))
    assert relation_exists(lab, "hidden.full_t") and relation_exists(lab, "hidden.empty_t")
    told = dict(plan.rows or [])
    full, empty = told.get('"hidden"."full_t"'), told.get('"hidden"."empty_t"')
    assert not (full is not None and empty is not None and full != empty), \
        f"_rollback_approve() tells an approver which unreadable table holds rows: {told}"
    said = f"{real.message} {real.error.diag.message_detail if real.error else ''}"
    assert not ("full_t" in said and "empty_t" not in said), \
        f"the rollback's refusal tells an approver which unreadable table holds rows: {said}"


# --- 6. secrets never reach the log -----------------------------------------------------

def test_secret_settings_and_added_foreign_columns_never_reach_the_log(lab):
    """Secret-looking settings stored with ALTER ROLE/DATABASE/FUNCTION … SET (PostgREST's
    app.settings.jwt_secret, an API key for a role) are redacted in ALTER SYSTEM but not
    in these forms; nor is the secret-looking option of a column added to a foreign table
    (ALTER FOREIGN TABLE … ADD COLUMN … OPTIONS). The catalog shows the current value; the
    audit log would keep every value ever set, rotated ones included."""
    attacker_foreign_table(lab)
    pos = log_size(lab.cluster)
    listener = lab.su()
    listener.execute("LISTEN migsafe_events")
    tok = lambda k: f"Gs{k}Vq{lab.attacker[-3:]}w"
    pin = "8061" + "".join(str(ord(ch) % 10) for ch in lab.attacker[-6:]) + "37"
    me = lab.attacker
    with lab.conn("postgres") as c:
        results = [run(c, f"ALTER ROLE {me} SET app.api_key = '{tok(1)}'"),
                   run(c, f"ALTER DATABASE {lab.db} SET \"app.settings.jwt_secret\" TO '{tok(2)}'"),
                   run(c, f"ALTER ROLE {me} IN DATABASE {lab.db} SET app.secret_token = '{tok(3)}'"),
                   run(c, f"ALTER FUNCTION m.evil(text) SET app.api_token = '{tok(4)}'"),
                   # a number is no string constant to redact: the text is withheld
                   run(c, f"ALTER ROLE {me} SET app.pin_secret = {pin}")]
    with lab.conn() as c:
        results.append(run(c, f"ALTER FOREIGN TABLE m.ft ADD COLUMN d int OPTIONS (password '{tok(5)}')"))
        # fails (a LOGIN role may not set a placeholder for itself): a failure event too
        results.append(run(c, f"ALTER ROLE {me} SET app.api_key = '{tok(6)}'"))
    assert [r.ok for r in results] == [True, True, True, True, True, True, False], results
    found = secret_sinks(lab, pos, listener, [tok(k) for k in range(1, 7)] + [pin],
                         "command_tag IN ('ALTER ROLE', 'ALTER DATABASE', 'ALTER FUNCTION', "
                         "'ALTER FOREIGN TABLE')", 7)
    listener.close()
    with lab.su() as c:
        c.execute(f"ALTER ROLE {me} RESET ALL; ALTER ROLE {me} IN DATABASE {lab.db} RESET ALL")
    assert found == {}, f"secrets leaked: {found}"


@pytest.mark.parametrize("via", ["lock-timeout blocker", "long-running alert"])
def test_a_do_block_setting_a_password_never_reaches_the_log(lab, via):
    """The query text of another session that pg_migsafe records (the blockers of a lock
    timeout, the current query of a long-running migration, which the writer reads as
    the superuser) goes through query_text(), which redacts only top-level statements it
    recognises. `DO $$ … ALTER ROLE … PASSWORD '…' … $$`, the usual way to create roles
    idempotently in a migration, is kept whole: the role password (readable by nobody in
    the catalog) reaches the audit log and pg_migsafe's lines in the server log."""
    tok = f"Dp{lab.attacker[-3:]}Xk9"
    me = lab.attacker
    do_block = (f"DO $$ BEGIN EXECUTE 'ALTER ROLE {me} PASSWORD ''{tok}'''; "
                "PERFORM pg_catalog.pg_sleep(%s); END $$")
    pos = log_size(lab.cluster)
    if via == "lock-timeout blocker":
        with lab.conn() as c:
            c.execute("CREATE TABLE m.busy (id int)")
        holder = lab.conn()
        holder.execute("BEGIN; LOCK TABLE m.busy IN ACCESS SHARE MODE")
        holder.execute(do_block % 0)                   # the session's query now, idle in transaction
        try:
            with lab.conn() as c:
                c.execute("SET lock_timeout = '300ms'")
                r = run(c, "ALTER TABLE m.busy ADD COLUMN x int")
        finally:
            holder.close()
        assert r.sqlstate == "55P03", r
        assert lab.wait_statements("statement = %s", ("ALTER TABLE m.busy ADD COLUMN x int",)), "not recorded"
    else:
        with settings(lab.cluster, migsafe__alert_after="'1s'"):
            with lab.conn() as c:
                c.execute(do_block % 4)
            with lab.su() as c:
                assert wait_for(lambda: c.execute("SELECT count(*) FROM migsafe.audit_log "
                                                  "WHERE record->>'kind' = 'alert'").fetchone()[0]), "no alert"
    time.sleep(0.5)
    with lab.su() as c:
        rows = [t[:300] for (t,) in c.execute("SELECT record::text FROM migsafe.audit_log") if tok in t]
    lines = [l[:300] for l in log_since(lab.cluster, pos).splitlines() if tok in l]
    assert rows == [] and lines == [], f"a role password leaked: audit log {rows}, server log {lines}"


def test_a_failed_subscriptions_error_keeps_its_connection_string_out_of_the_log(lab):
    """The statement is redacted, the error it raised is stored as it is: libpq quotes
    the part of a connection string it could not parse (an unquoted password with a
    space), and that goes to the audit log and the pg_migsafe_event line."""
    tok = f"Sb{lab.attacker[-3:]}Qz7"
    pos = log_size(lab.cluster)
    listener = lab.su()
    listener.execute("LISTEN migsafe_events")
    with lab.conn("postgres") as c:
        r = run(c, f"CREATE SUBSCRIPTION sub_e CONNECTION 'host=127.0.0.1 port=1 password=first {tok}' "
                   "PUBLICATION p WITH (connect = false)")
    assert not r.ok and tok in r.message, r
    found = secret_sinks(lab, pos, listener, [tok], "command_tag = 'CREATE SUBSCRIPTION'", 1)
    listener.close()
    assert found == {}, f"part of a connection string leaked through the error: {found}"


# --- 3/7. a rollback restores what the snapshot had ----------------------------------------

def test_a_rollback_does_not_restore_an_attackers_table_in_place_of_the_snapshots(lab):
    """Step 1 of a rollback brings back from the recycle bin the first table dropped since
    the snapshot under the snapshot table's name: by name only. The victim's table was
    empty when it was dropped (an empty table is not kept) or its entry was purged
    (recycle_retention); a role with CREATE on the schema creates a table of that name with
    rows of its own and has its drop approved (its own scratch table). The rollback then
    puts the attacker's table back as the victim's: owned by the attacker, with the
    attacker's rows, the application's writes going where the attacker reads them."""
    anna = lab.role("anna", approver=True)
    victim = lab.role("victim")
    with lab.su() as c:
        c.execute(f'CREATE SCHEMA app AUTHORIZATION "{victim}"; GRANT USAGE, CREATE ON SCHEMA app TO "{lab.attacker}"')
    with lab.conn(victim) as c:
        c.execute("CREATE TABLE app.accounts (id int PRIMARY KEY, iban text)")
    with lab.su() as c:
        snap = c.execute("SELECT migsafe.snapshot('release 41')").fetchone()[0]
    with lab.conn(anna) as c:
        assert begin(c, "contract", "retire accounts", objects=["app.accounts"], for_role=victim, skip_expand=True).ok
    with lab.conn(victim) as c:
        assert run(c, "DROP TABLE app.accounts").ok       # empty: dropped for good
    with lab.conn() as c:
        c.execute("CREATE TABLE app.accounts (id int PRIMARY KEY, iban text);"
                  "INSERT INTO app.accounts VALUES (666, 'planted by the attacker')")
    approve_for(lab, anna, ["app.accounts"], name="drop my scratch table")
    with lab.conn() as c:
        assert run(c, "DROP TABLE app.accounts").ok       # kept in the recycle bin
    with lab.conn("postgres") as c:
        r = attempt(c, "SELECT action, status, detail FROM migsafe.rollback(%s, dry_run => false, force => true)",
                    (snap,))
    with lab.su() as c:
        row = c.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass('app.accounts')").fetchone()
    assert row is None or row[0] != lab.attacker, \
        f"the rollback put the attacker's table in place of the snapshot's app.accounts: {r.rows or r}"
