"""Fixtures shared by the integration tests: scratch clusters and helpers."""
import contextlib
import itertools
import re

import psycopg
import pytest

import pgcluster
from pgcluster import Cluster

REFUSED = "MS001"
WARNED = "MS002"

_counter = itertools.count(1)
_clusters = {}


def get_cluster(kind="enforce"):
    """One cluster per kind for the whole session (created on first use)."""
    if kind not in _clusters:
        settings = {"migsafe.mode": "'warn'"} if kind == "warn" else {}
        c = Cluster(kind, settings=settings)
        with c.connect() as conn:
            conn.execute("CREATE ROLE app_owner LOGIN CREATEDB CREATEROLE")
            conn.execute("CREATE ROLE app_user LOGIN")
            conn.execute("CREATE EXTENSION pg_migsafe")
        _clusters[kind] = c
    return _clusters[kind]


def pytest_sessionfinish(session, exitstatus):
    crashed = []
    for c in _clusters.values():
        text = c.log_text()
        if re.search(r"terminated by signal|PANIC:|server process .* was terminated", text):
            crashed.append(c.log)
        c.destroy()
    if crashed:
        print(f"\nBACKEND CRASH found in {crashed}")
        session.exitstatus = 1
    if pgcluster.BUGS:
        print("\nA RUST PANIC (a bug) in a server log:\n" + "\n".join(pgcluster.BUGS))
        session.exitstatus = 1


@pytest.fixture(scope="session")
def cluster():
    return get_cluster("enforce")


@pytest.fixture(scope="session")
def warn_cluster():
    return get_cluster("warn")


def new_db(cluster, owner="app_owner", extension=True):
    name = f"t{next(_counter)}"
    return cluster.createdb(name, owner=owner, extension=extension)


@pytest.fixture
def db(cluster):
    """A fresh database owned by app_owner, with pg_migsafe created."""
    return new_db(cluster)


class Result:
    def __init__(self, ok, error=None, notices=()):
        self.ok = ok
        self.error = error
        self.notices = list(notices)

    @property
    def sqlstate(self):
        return self.error.sqlstate if self.error else None

    @property
    def message(self):
        return self.error.diag.message_primary if self.error else None

    def warnings(self, code=WARNED):
        return [n for n in self.notices if n.sqlstate == code]

    def warned_rules(self):
        return [re.match(r"pg_migsafe: ([a-z-]+) on", n.message_primary).group(1) for n in self.warnings()]

    def refused_rule(self):
        if self.sqlstate != REFUSED:
            return None
        return re.match(r"pg_migsafe refused ([a-z-]+) on", self.message).group(1)

    def __repr__(self):
        return f"Result(ok={self.ok}, sqlstate={self.sqlstate}, message={self.message!r}, notices={[n.message_primary for n in self.notices]})"


def run(conn, sql, params=None):
    """Runs sql; returns a Result instead of raising."""
    conn.notices.clear()
    try:
        conn.execute(sql, params)
        return Result(True, notices=conn.notices)
    except psycopg.Error as e:
        if not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.rollback()
        return Result(False, error=e, notices=conn.notices)


@contextlib.contextmanager
def mode(cluster, value):
    """Temporarily sets migsafe.mode for the cluster (config file + reload)."""
    before = cluster.settings.get("migsafe.mode", "'enforce'")
    cluster.configure(migsafe__mode=f"'{value}'")
    try:
        yield
    finally:
        cluster.configure(migsafe__mode=before)
