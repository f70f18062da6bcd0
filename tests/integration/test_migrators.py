"""Migrators besides Drizzle, run unchanged (issue #13).

Alembic (from PyPI, pinned in tests/requirements.txt; tests/alembic holds its project)
commits each revision on its own: a contract phase for its role opened with deploy =>
true covers the whole deploy; one without it is spent by the first revision, and the
refusal of the second says so. node-pg-migrate (npm, tests/node-pg-migrate with its
lockfile) runs its pending migrations in one transaction: refused as a whole until a
phase approves the contract step."""
import os
import subprocess

from conftest import new_db, run

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ALEMBIC = os.path.join(ROOT, ".venv", "bin", "alembic")
PROJECT = os.path.join(ROOT, "tests", "alembic")
SCHEMA = ("CREATE TABLE users (id int PRIMARY KEY, email text, legacy_email text);"
          "CREATE TABLE sessions (id int PRIMARY KEY, user_id int);"
          "INSERT INTO users VALUES (1, 'a@example.com', 'a@old.example'); INSERT INTO sessions VALUES (1, 1);")


def alembic(cluster, db):
    env = dict(os.environ, MIGSAFE_ALEMBIC_URL=f"postgresql+psycopg://alembic_bot@127.0.0.1:{cluster.port}/{db}")
    return subprocess.run([ALEMBIC, "-c", os.path.join(PROJECT, "alembic.ini"), "upgrade", "head"],
                          capture_output=True, text=True, env=env, cwd=PROJECT, timeout=120)


def setup(cluster):
    with cluster.connect() as c:
        run(c, "CREATE ROLE alembic_bot LOGIN")
        run(c, "CREATE ROLE alembic_dba LOGIN IN ROLE migsafe_approver")
    db = new_db(cluster, owner="alembic_bot")
    with cluster.connect(db, "alembic_bot") as c:
        c.execute(SCHEMA)
    return db


def phase(cluster, db, deploy):
    with cluster.connect(db, "alembic_dba") as dba:
        return dba.execute("SELECT migsafe.begin_phase('contract', 'release 12', "
                           "objects => ARRAY['public.users.legacy_email', 'public.sessions'], "
                           "for_role => 'alembic_bot', skip_expand => true, deploy => %s)", (deploy,)).fetchone()[0]


def version(cluster, db):
    with cluster.connect(db) as c:
        return c.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_a_phase_without_deploy_is_spent_by_the_first_revision(cluster):
    db = setup(cluster)
    pid = phase(cluster, db, False)
    r = alembic(cluster, db)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "pg_migsafe refused drop-table on table public.sessions" in r.stderr, r.stderr
    assert f"Contract phase {pid} (release 12) covers it, but was spent" in r.stderr, r.stderr
    assert version(cluster, db) == "a1"             # half applied, as the issue describes


def test_a_deploy_phase_covers_every_revision(cluster):
    db = setup(cluster)
    pid = phase(cluster, db, True)
    r = alembic(cluster, db)
    assert r.returncode == 0, r.stdout + r.stderr
    assert version(cluster, db) == "a2"
    with cluster.connect(db) as c:
        assert c.execute("SELECT to_regclass('sessions')").fetchone()[0] is None
        assert c.execute("SELECT statements_approved, state FROM migsafe.phases WHERE id = %s",
                         (pid,)).fetchone() == (2, "active")
        # The dropped table is in the recycle bin, as under any approval.
        assert c.execute("SELECT count(*) FROM migsafe.recycle").fetchone()[0] >= 1


NPM_PROJECT = os.path.join(ROOT, "tests", "node-pg-migrate")


def node_pg_migrate(cluster, db, user):
    env = dict(os.environ, DATABASE_URL=f"postgres://{user}@127.0.0.1:{cluster.port}/{db}")
    return subprocess.run([os.path.join(NPM_PROJECT, "node_modules", ".bin", "node-pg-migrate"), "up",
                           "--migrations-dir", "migrations", "--no-check-order"],
                          capture_output=True, text=True, env=env, cwd=NPM_PROJECT, timeout=120)


def test_node_pg_migrate_runs_unchanged(cluster):
    # A Node migrator besides Drizzle: its expand migration passes, its contract one is
    # refused until a phase approves it, and nothing of the refused run stays.
    db = setup(cluster)
    r = node_pg_migrate(cluster, db, "alembic_bot")
    assert r.returncode != 0, r.stdout + r.stderr
    assert "pg_migsafe refused drop-column on column public.users.legacy_email" in r.stdout + r.stderr
    with cluster.connect(db) as c:
        # All pending migrations run in one transaction (its default): none applied.
        assert c.execute("SELECT count(*) FROM information_schema.columns "
                         "WHERE table_name = 'users' AND column_name = 'nickname'").fetchone()[0] == 0
    phase(cluster, db, False)
    r = node_pg_migrate(cluster, db, "alembic_bot")
    assert r.returncode == 0, r.stdout + r.stderr
    with cluster.connect(db) as c:
        cols = {x[0] for x in c.execute("SELECT column_name FROM information_schema.columns "
                                        "WHERE table_name = 'users'")}
        assert "nickname" in cols and "legacy_email" not in cols
        assert c.execute("SELECT count(*) FROM pgmigrations").fetchone()[0] == 2
