"""Drizzle, for real: the generated migrations of tests/drizzle applied, unchanged, by
`drizzle-kit migrate` (and the programmatic migrate()) against a scratch cluster with
pg_migsafe. The tests run in file order and share one database."""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import new_db, run

DZ = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "drizzle"))
MIGRATIONS = os.path.join(DZ, "migrations")


def journal():
    with open(os.path.join(MIGRATIONS, "meta", "_journal.json")) as f:
        return json.load(f)


def upto(n):
    """A migrations folder holding only the first n migrations."""
    j = journal()
    d = tempfile.mkdtemp(prefix="drizzle-migrations-")
    os.makedirs(os.path.join(d, "meta"))
    entries = j["entries"][:n]
    for e in entries:
        shutil.copy(os.path.join(MIGRATIONS, e["tag"] + ".sql"), d)
    with open(os.path.join(d, "meta", "_journal.json"), "w") as f:
        json.dump({**j, "entries": entries}, f)
    return d


@pytest.fixture(scope="module")
def dz(cluster):
    for tool in ("node", "npm", "npx"):
        assert shutil.which(tool), f"{tool} is needed for the Drizzle tests (Node.js from Debian or nodesource)"
    if not os.path.isdir(os.path.join(DZ, "node_modules", "drizzle-kit")):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=DZ, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    with cluster.connect() as c:
        c.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_migrator') "
                  "THEN CREATE ROLE app_migrator LOGIN; END IF; END $$")
    db = new_db(cluster, owner="app_migrator")
    return {"cluster": cluster, "db": db}


def kit_migrate(dz, n):
    c = dz["cluster"]
    env = {**os.environ, "DRIZZLE_MIGRATIONS": upto(n),
           "DATABASE_URL": f"postgres://app_migrator@127.0.0.1:{c.port}/{dz['db']}?sslmode=disable"}
    return subprocess.run(["npx", "drizzle-kit", "migrate"], cwd=DZ, env=env, capture_output=True, text=True,
                          timeout=120)


def programmatic_migrate(dz, n):
    c = dz["cluster"]
    env = {**os.environ, "DATABASE_URL": f"postgres://app_migrator@127.0.0.1:{c.port}/{dz['db']}"}
    r = subprocess.run(["node", "migrate.mjs", upto(n)], cwd=DZ, env=env, capture_output=True, text=True,
                       timeout=120)
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


def applied(conn):
    return conn.execute("SELECT count(*) FROM drizzle.__drizzle_migrations").fetchone()[0]


def has_column(conn, table, column):
    return conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s "
                        "AND NOT attisdropped", (table, column)).fetchone()[0] == 1


def test_additive_migrations_apply(dz):
    r = kit_migrate(dz, 1)
    assert r.returncode == 0, r.stdout + r.stderr
    # Steps 2-4 in a later run: FK, index and the rewriting type change on existing
    # tables are risky (warnings in the server log), not refused.
    r = kit_migrate(dz, 4)
    assert r.returncode == 0, r.stdout + r.stderr
    with dz["cluster"].connect(dz["db"]) as conn:
        assert applied(conn) == 4
        conn.execute("INSERT INTO users (email, name, legacy_email) VALUES ('ann@example.com', 'Ann', 'old')")
        conn.execute("INSERT INTO sessions (token) VALUES ('t')")
    log = dz["cluster"].log_text()
    assert "pg_migsafe: add-foreign-key on table public.orders" in log
    assert "pg_migsafe: alter-column-type-rewrite on column public.users.age" in log


def test_destructive_migration_is_refused_and_applies_nothing(dz):
    r = kit_migrate(dz, 5)
    assert r.returncode != 0, r.stdout + r.stderr
    with dz["cluster"].connect(dz["db"]) as conn:
        assert applied(conn) == 4
        assert conn.execute("SELECT to_regclass('sessions')").fetchone()[0] is not None
        assert has_column(conn, "users", "legacy_email")
    assert 'pg_migsafe refused drop-table on table public.sessions' in dz["cluster"].log_text()
    code, out = programmatic_migrate(dz, 5)
    assert code == 1 and not out["ok"]
    assert out["message"].startswith("Failed query: DROP TABLE \"sessions\" CASCADE")
    assert out["cause"]["code"] == "MS001"
    assert out["cause"]["message"].startswith("pg_migsafe refused drop-table on table public.sessions")
    assert "objects => ARRAY['public.sessions']" in out["cause"]["message"]
    assert out["cause"]["hint"]


def test_approved_ahead_the_same_files_apply(dz):
    c = dz["cluster"]
    with c.connect(dz["db"]) as dba:
        pid = dba.execute(
            "SELECT migsafe.begin_phase('contract', 'drizzle-0004', reason => 'JIRA-5', "
            "objects => ARRAY['public.sessions', 'public.users.legacy_email'], for_role => 'app_migrator', "
            "valid_for => '30 minutes', skip_expand => true)").fetchone()[0]
    dz["phase"] = pid
    r = kit_migrate(dz, 5)
    assert r.returncode == 0, r.stdout + r.stderr
    with c.connect(dz["db"]) as conn:
        assert applied(conn) == 5
        assert conn.execute("SELECT to_regclass('sessions')").fetchone()[0] is None
        assert not has_column(conn, "users", "legacy_email")
        assert conn.execute("SELECT state FROM migsafe.phases WHERE id = %s", (pid,)).fetchone()[0] == "used"


def test_statements_are_attributed_to_their_drizzle_migration(dz):
    c = dz["cluster"]
    with open(os.path.join(MIGRATIONS, journal()["entries"][4]["tag"] + ".sql"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    with c.connect(dz["db"]) as conn:
        last = conn.execute("SELECT hash FROM drizzle.__drizzle_migrations ORDER BY id DESC LIMIT 1").fetchone()[0]
        assert last == sha
        used = [s for (s,) in conn.execute("SELECT statement FROM migsafe.phase_use WHERE phase_id = %s "
                                           "ORDER BY used_at", (dz["phase"],))]
    assert [s.strip() for s in used] == ['DROP TABLE "sessions" CASCADE', 'ALTER TABLE "users" DROP COLUMN "legacy_email"']


def test_rename_needs_its_own_approval(dz):
    c = dz["cluster"]
    r = kit_migrate(dz, 6)
    assert r.returncode != 0
    assert "pg_migsafe refused rename-column on column public.users.name" in c.log_text()
    with c.connect(dz["db"]) as dba:
        dba.execute("SELECT migsafe.begin_phase('contract', 'drizzle-0005', objects => ARRAY['public.users.name'], "
                    "for_role => 'app_migrator', skip_expand => true)")
    r = kit_migrate(dz, 6)
    assert r.returncode == 0, r.stdout + r.stderr
    with c.connect(dz["db"]) as conn:
        assert has_column(conn, "users", "full_name") and not has_column(conn, "users", "name")
        assert conn.execute("SELECT full_name FROM users").fetchone()[0] == "Ann"
        assert run(conn, "SELECT 1").ok
