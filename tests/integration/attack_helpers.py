"""Helpers for test_security.py: per-test attacker roles and databases, "evil" functions
that record that they ran and as whom, and the checks every attack ends with (the
attacker is still not a superuser, no attacker code ran as a superuser, the server did
not crash)."""
import contextlib
import itertools
import os
import re
import time

import psycopg

from conftest import new_db

_n = itertools.count(1)

EVIL_NOTICE = re.compile(r"EVIL-RAN tag=(?P<tag>.*?) current_user=(?P<cu>\S+) "
                         r"session_user=(?P<su>\S+) super=(?P<super>\S*)$")
CRASH = re.compile(r"terminated by signal|PANIC:|server process .* was terminated")


def uniq(prefix):
    return f"{prefix}_{next(_n)}"


def wait_for(fn, timeout=10.0, interval=0.1):
    """Polls fn until it returns something truthy; returns the last value."""
    deadline = time.time() + timeout
    last = fn()
    while not last and time.time() < deadline:
        time.sleep(interval)
        last = fn()
    return last


def evil_sql(schema, attacker, logfile):
    """A table `<schema>.ran` and a function `<schema>.evil(tag)` that records who runs
    it (table, NOTICE, and — only when it runs as a superuser — a line appended to
    `logfile` by COPY TO PROGRAM, which survives a rollback), then tries to make the
    attacker a superuser. It never raises and returns true."""
    return f"""
CREATE TABLE {schema}.ran (tag text, cu name, su name, super boolean, bt text,
                           at timestamptz DEFAULT pg_catalog.clock_timestamp());
GRANT USAGE ON SCHEMA {schema} TO PUBLIC;
GRANT SELECT, INSERT ON {schema}.ran TO PUBLIC;
CREATE FUNCTION {schema}.evil(tag pg_catalog.text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $evil$
DECLARE
  sup boolean;
BEGIN
  SELECT r.rolsuper INTO sup FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user;
  BEGIN
    INSERT INTO {schema}.ran (tag, cu, su, super, bt)
    SELECT tag, current_user, session_user, sup,
           (SELECT a.backend_type FROM pg_catalog.pg_stat_activity a
             WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid());
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RAISE NOTICE 'EVIL-RAN tag=% current_user=% session_user=% super=%', tag, current_user, session_user, sup;
  IF sup THEN
    BEGIN
      EXECUTE pg_catalog.format('COPY (SELECT %L) TO PROGRAM %L',
                                pg_catalog.concat_ws(E'\t', tag, current_user, session_user,
                                  (SELECT a.backend_type FROM pg_catalog.pg_stat_activity a
                                    WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid())),
                                'cat >> {logfile}');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
  END IF;
  BEGIN
    EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', '{attacker}');
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RETURN true;
END
$evil$;
GRANT EXECUTE ON FUNCTION {schema}.evil(pg_catalog.text) TO PUBLIC;
"""


class Lab:
    """One attack: an attacker role (LOGIN only), a fresh database, a schema `m` owned by
    the attacker holding the evidence table and the evil function.

    owner="app_owner": the database is owned by app_owner (the usual case);
    owner="attacker": the attacker owns the database (and nothing else)."""

    def __init__(self, cluster, prefix="mallory", owner="app_owner"):
        self.cluster = cluster
        self.attacker = uniq(prefix)
        self.roles = [self.attacker]
        self.notices = []
        self.logfile = os.path.join(cluster.dir, f"evil-{self.attacker}.log")
        with cluster.connect() as c:
            c.execute(f'CREATE ROLE "{self.attacker}" LOGIN')
        self.db = new_db(cluster, owner=self.attacker if owner == "attacker" else owner)
        with self.su() as c:
            c.execute(f'CREATE SCHEMA m AUTHORIZATION "{self.attacker}"')
        self.evidence_tables = []
        self.plant("m", self.attacker)

    # ---------------------------------------------------------------- connections

    def conn(self, user=None, db=None, autocommit=True, scs_off=False, search_path=None, **kw):
        """A connection whose notices all land in self.notices (evil's NOTICEs)."""
        opts = []
        if scs_off:
            opts.append("-c standard_conforming_strings=off")
        if search_path:
            opts.append(f"-c search_path={search_path}")
        if opts:
            kw["options"] = " ".join(opts)
        c = self.cluster.connect(db or self.db, user or self.attacker, autocommit=autocommit, **kw)
        c.add_notice_handler(lambda d: self.notices.append(d.message_primary or ""))
        return c

    def su(self, db=None):
        """The bootstrap superuser with a search_path the attacker cannot change."""
        return self.conn("postgres", db, search_path="pg_catalog")

    def role(self, prefix, approver=False, auditor=False, admin=False, extra=""):
        """A role created by the superuser (so memberships have a superuser grantor)."""
        name = uniq(prefix)
        in_roles = [r for r, on in (("migsafe_approver", approver), ("migsafe_auditor", auditor),
                                    ("migsafe_admin", admin)) if on]
        sql = f'CREATE ROLE "{name}" LOGIN {extra}'
        if in_roles:
            sql += " IN ROLE " + ", ".join(in_roles)
        with self.cluster.connect() as c:
            c.execute(sql)
        self.roles.append(name)
        return name

    def plant(self, schema, owner):
        """Creates the evidence table and evil() in `schema` (which `owner` may use)."""
        with self.conn(owner) as c:
            c.execute(evil_sql(schema, self.attacker, self.logfile))
        self.evidence_tables.append((self.db, schema))

    # ---------------------------------------------------------------- evidence

    def evidence(self):
        """Every trace of evil() having run: dicts with tag, cu, su, super, bt, source."""
        out = []
        for db, schema in self.evidence_tables:
            try:
                with self.su(db) as c:
                    for tag, cu, su, sup, bt in c.execute(
                            f"SELECT tag, cu, su, super, bt FROM {schema}.ran ORDER BY at"):
                        out.append(dict(tag=tag, cu=cu, su=su, super=bool(sup), bt=bt, source="table"))
            except psycopg.Error:
                pass
        for msg in self.notices:
            m = EVIL_NOTICE.search(msg)
            if m:
                out.append(dict(tag=m["tag"], cu=m["cu"], su=m["su"], super=m["super"] in ("t", "true"),
                                bt=None, source="notice"))
        try:
            with open(self.logfile) as f:
                for line in f:
                    tag, cu, su, bt = (line.rstrip("\n").split("\t") + [None] * 4)[:4]
                    out.append(dict(tag=tag, cu=cu, su=su, super=True, bt=bt, source="COPY TO PROGRAM"))
        except FileNotFoundError:
            pass
        return out

    def superusers(self):
        with self.cluster.connect() as c:
            return {r for (r,) in c.execute("SELECT rolname FROM pg_roles WHERE rolsuper")}

    def as_superuser(self, pred=None):
        """Evidence of attacker code that ran with superuser rights."""
        supers = self.superusers() - set(self.roles)
        return [e for e in self.evidence()
                if (e["super"] or e["cu"] in supers) and (pred is None or pred(e))]

    def is_super(self, role=None):
        with self.cluster.connect() as c:
            row = c.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s",
                            (role or self.attacker,)).fetchone()
        return bool(row and row[0])

    def assert_contained(self, pred=None):
        """The outcome that matters: nobody of the lab became a superuser and no attacker
        code ran as a superuser."""
        escalated = [r for r in self.roles if self.is_super(r)]
        ran = self.as_superuser(pred)
        assert not escalated and not ran, (
            f"privilege escalation: roles now superuser: {escalated}; "
            f"attacker code ran as superuser: {ran}")

    # ---------------------------------------------------------------- audit log

    def statements(self, where="true", params=None):
        with self.su() as c:
            return c.execute(f"SELECT seq, statement, decision, outcome FROM migsafe.statements "
                             f"WHERE {where} ORDER BY seq", params).fetchall()

    def wait_statements(self, where, params=None, n=1, timeout=10.0):
        return wait_for(lambda: (lambda rows: rows if len(rows) >= n else None)(
            self.statements(where, params)), timeout)

    def verify_log(self):
        with self.su() as c:
            return c.execute("SELECT ok, reason FROM migsafe.verify_log()").fetchone()


def log_size(cluster):
    try:
        return os.path.getsize(cluster.log)
    except FileNotFoundError:
        return 0


def log_since(cluster, pos):
    with open(cluster.log, "rb") as f:
        f.seek(pos)
        return f.read().decode("utf-8", "replace")


def wait_until_up(cluster, timeout=60):
    deadline = time.time() + timeout
    while True:
        try:
            with cluster.connect() as c:
                c.execute("SELECT 1")
                return
        except psycopg.Error:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def no_crash(cluster):
    """Asserts that nothing in the block crashed a backend: a canary session opened
    before it survives (a crash restarts every process), the postmaster start time is
    unchanged and the server log has no new crash report. Waits for the server to come
    back before asserting, so that the next test finds it up."""
    pos = log_size(cluster)
    canary = cluster.connect()
    started = canary.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    try:
        yield
    finally:
        time.sleep(0.3)   # a crash restart terminates the other sessions asynchronously
        alive = True
        try:
            canary.execute("SELECT 1")
        except psycopg.Error:
            alive = False
        finally:
            with contextlib.suppress(Exception):
                canary.close()
        if not alive:
            time.sleep(0.5)
        wait_until_up(cluster)
        with cluster.connect() as c:
            now_started = c.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
        crashed = CRASH.findall(log_since(cluster, pos))
    assert alive and now_started == started and not crashed, (
        f"the server crashed: canary alive={alive}, postmaster start {started} -> {now_started}, "
        f"log: {crashed[:3]}")


def attempt(conn, sql, params=None):
    """Like conftest.run(), with the rows in .rows (None after an error) and the first
    value in .value; a dropped connection is a result too, not an exception."""
    from conftest import Result
    conn.notices.clear()
    try:
        cur = conn.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        r = Result(True, notices=conn.notices)
    except psycopg.Error as e:
        rows = None
        with contextlib.suppress(psycopg.Error):
            if not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                conn.rollback()
        r = Result(False, error=e, notices=conn.notices)
    r.rows = rows
    r.value = rows[0][0] if rows else None
    return r
