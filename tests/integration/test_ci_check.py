"""The migration check for pull requests (tools/pg_migsafe-check, docs/ci.md), run on
the Drizzle test project's migrations: the additive ones pass, the destructive one
fails with a GitHub annotation on its file and line, and the JSON and SARIF reports
say the same; against a throwaway cluster and against a given server."""
import json
import os
import shutil
import subprocess
import sys

import psycopg

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOL = os.path.join(ROOT, "tools", "pg_migsafe-check")
MIG = os.path.join(ROOT, "tests", "drizzle", "migrations")


def m(name):
    return os.path.join(MIG, name)


def check(*args, cwd=ROOT, env=None):
    e = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY")}
    e.update(env or {})
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, cwd=cwd, env=e, timeout=300)


def test_additive_migrations_pass_with_warnings(tmp_path):
    r = check("--base", m("0000_initial.sql"), "--new", m("0001_additive.sql"), "--annotations",
              "--json", str(tmp_path / "f.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "::error" not in r.stdout
    assert f"::warning file={m('0001_additive.sql')},line=" in r.stdout, r.stdout
    findings = json.load(open(tmp_path / "f.json"))
    assert findings[0]["outcome"] == "would succeed"
    assert {f["severity"] for f in findings[0]["findings"]} == {"risky"}


def test_a_destructive_migration_fails_with_annotations_json_and_sarif(tmp_path):
    summary = tmp_path / "summary.md"
    r = check("--base", *[m(f) for f in ("0000_initial.sql", "0001_additive.sql", "0002_enum-value.sql",
                                          "0003_type-change.sql")],
              "--new", m("0004_destructive.sql"), "--json", str(tmp_path / "f.json"),
              "--sarif", str(tmp_path / "f.sarif"),
              env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert r.returncode == 1, r.stdout + r.stderr
    f = m("0004_destructive.sql")
    assert (f"::error file={f},line=1,title=pg_migsafe drop-table::drop-table on table public.sessions") in r.stdout
    assert f"::error file={f},line=2,title=pg_migsafe drop-column::" in r.stdout
    md = summary.read_text()
    assert "Destructive changes found" in md and "| 2 | `drop-column` | destructive |" in md, md
    sarif = json.load(open(tmp_path / "f.sarif"))
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    assert {(x["ruleId"], x["level"], x["locations"][0]["physicalLocation"]["region"]["startLine"])
            for x in results} >= {("drop-table", "error", 1), ("drop-column", "error", 2)}
    assert {"drop-table", "drop-column"} <= {x["id"] for x in sarif["runs"][0]["tool"]["driver"]["rules"]}


def test_new_files_are_those_added_since_the_main_branch(tmp_path):
    repo = tmp_path / "repo"
    (repo / "drizzle").mkdir(parents=True)
    for name in ("0000_initial.sql", "0001_additive.sql"):
        shutil.copy(m(name), repo / "drizzle" / name)
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "main"]):
        subprocess.run(git + cmd, cwd=repo, check=True)
    shutil.copy(m("0002_enum-value.sql"), repo / "drizzle" / "0002_enum-value.sql")
    r = check("--dir", "drizzle", "--since", "main", "--annotations", cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "drizzle/0002_enum-value.sql" in r.stdout and "0001_additive" not in r.stdout.split("##")[-1]
    (repo / "drizzle" / "0003_broken.sql").write_text("ALTER TABLE \"nope\" ADD COLUMN \"x\" int;\n")
    r = check("--dir", "drizzle", "--since", "main", "--annotations", cwd=repo)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "::error file=drizzle/0003_broken.sql,line=1,title=pg_migsafe would-fail::" in r.stdout, r.stdout


def test_against_a_given_server_leaves_nothing_there(warn_cluster):
    dsn = warn_cluster.dsn()
    r = check("--dsn", dsn, "--base", m("0000_initial.sql"), "--new", m("0004_destructive.sql"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "| 1 | `drop-table` | destructive |" in r.stdout
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'pg_migsafe_check_%'").fetchone()[0] == 0


def test_an_enforcing_server_is_refused_with_a_clear_error(cluster):
    # Past contract migrations would be refused there: the check needs warn mode.
    r = check("--dsn", cluster.dsn(), "--base", m("0000_initial.sql"), "--new", m("0001_additive.sql"))
    assert r.returncode == 1 and "migsafe.mode = 'enforce'" in r.stderr, r.stdout + r.stderr
    with psycopg.connect(cluster.dsn()) as c:
        assert c.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'pg_migsafe_check_%'").fetchone()[0] == 0
