"""pg_regress style: sql/demo.sql (what `make demo` shows) is run with psql against a
fresh database and its output must equal tests/expected/demo.out.
MIGSAFE_BLESS=1 rewrites the expected file."""
import os
import subprocess

from conftest import new_db

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
EXPECTED = os.path.join(ROOT, "tests", "expected", "demo.out")


def test_demo_output_matches_expected(cluster):
    db = new_db(cluster, owner="postgres", extension=False)
    with open(os.path.join(ROOT, "sql", "demo.sql")) as f:
        out = subprocess.run(
            ["psql", "-X", "-a", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", db],
            stdin=f, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("PG")}).stdout
    if os.environ.get("MIGSAFE_BLESS"):
        with open(EXPECTED, "w") as f:
            f.write(out)
    with open(EXPECTED) as f:
        assert out == f.read()
