"""The labelled corpus (tests/corpus/*.sql) scores migsafe.check() on a real server.

Each case is a migration labelled `dangerous` or `safe` from the PostgreSQL 15 manual's
rules (docs/accuracy.md says how), with a setup that builds and fills the tables it
touches. For every case, in one database, a schema of its own gets the setup
(committed), then the migration goes to `migsafe.check()` as a parameter; nothing of
the migration runs. A case counts as detected when at least one row is `risky` or
`destructive`. The test proves:

- the corpus is well formed: ids unique, every case has label, why, setup and
  migration, every setup runs, every migration parses (check() raises 42601
  otherwise), at least 150 single-statement cases and 40 migrations of 2-8 statements;
- the score (detection rate on dangerous cases, false-positive rate on safe ones, the
  misses and false positives by name) equals the generated section of
  docs/accuracy.md, between `<!-- corpus:begin -->` and `<!-- corpus:end -->`.
  MIGSAFE_BLESS=1 rewrites that section instead.

A change of the classifier that changes the score therefore fails here until the page
is re-blessed, so the page always shows the current score.
"""
import difflib
import glob
import os
import re

import psycopg
import pytest

from conftest import new_db

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CORPUS = os.path.join(ROOT, "tests", "corpus")
ACCURACY = os.path.join(ROOT, "docs", "accuracy.md")
BEGIN = "<!-- corpus:begin -->"
END = "<!-- corpus:end -->"

LABELS = ("dangerous", "safe")
FLAGGED = ("risky", "destructive")
ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
HEADER = re.compile(r"^-- (case|label|why|setup|migration):(.*)$")


class Case:
    def __init__(self, file, line, cid):
        self.file = file
        self.line = line
        self.id = cid
        self.label = None
        self.why = None
        self.setup = None
        self.migration = None
        self.problems = []

    def where(self):
        return f"{self.file}:{self.line} ({self.id})"


def parse_file(path):
    """Splits one corpus file into cases. Lines before the first `-- case:` are the
    file's own comments. Within a case, `-- label:` and `-- why:` are one line each,
    `-- setup:` and `-- migration:` start blocks that run to the next header."""
    name = os.path.basename(path)
    cases = []
    block = None
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            m = HEADER.match(line)
            if m:
                key, value = m.group(1), m.group(2).strip()
                if key == "case":
                    cases.append(Case(name, n, value))
                    block = None
                    continue
                if not cases:
                    raise AssertionError(f"{name}:{n}: `-- {key}:` before the first `-- case:`")
                c = cases[-1]
                if getattr(c, key) is not None:
                    c.problems.append(f"line {n}: a second `-- {key}:`")
                if key in ("label", "why"):
                    setattr(c, key, value)
                    block = None
                else:
                    if value:
                        c.problems.append(f"line {n}: text after `-- {key}:`")
                    setattr(c, key, "")
                    block = key
                continue
            if block:
                c = cases[-1]
                setattr(c, block, getattr(c, block) + line + "\n")
            elif cases and line.strip() and not line.startswith("--"):
                cases[-1].problems.append(f"line {n}: SQL outside a setup or migration block")
    for c in cases:
        for key in ("setup", "migration"):
            if getattr(c, key) is not None:
                setattr(c, key, getattr(c, key).strip())
    return cases


def load_corpus():
    files = sorted(glob.glob(os.path.join(CORPUS, "*.sql")))
    return [c for path in files for c in parse_file(path)]


CASES = load_corpus()


def run_case(conn, case, schema):
    """Setup in the case's own schema (committed), then check() the migration.
    Returns (statements, [(severity, rule_id)]). A setup that fails, or a migration
    that does not parse, fails the test naming the case."""
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"SET search_path = {schema}, public")
    try:
        conn.execute(case.setup)
    except psycopg.Error as e:
        pytest.fail(f"corpus bug: the setup of {case.where()} failed: "
                    f"{e.sqlstate} {e.diag.message_primary}")
    try:
        rows = conn.execute("SELECT statement_no, severity, rule_id FROM migsafe.check(%s)",
                            (case.migration,)).fetchall()
    except psycopg.Error as e:
        pytest.fail(f"corpus bug: check() of the migration of {case.where()} failed: "
                    f"{e.sqlstate} {e.diag.message_primary} {e.diag.message_detail or ''}")
    statements = max((r[0] for r in rows), default=0)
    return statements, [(r[1], r[2]) for r in rows]


@pytest.fixture(scope="module")
def results(cluster):
    """Every case's (statements, findings), in corpus order, from one database."""
    db = new_db(cluster)
    out = []
    with cluster.connect(db) as conn:
        for i, case in enumerate(CASES, 1):
            statements, findings = run_case(conn, case, f"corpus_{i:04d}")
            out.append((case, statements, findings))
    return out


def pct(part, whole):
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def render(results):
    """The generated section of docs/accuracy.md (without the markers)."""
    files = []
    stats = {}
    misses, false_positives = [], []
    for case, statements, findings in results:
        flagged = sorted({rule for sev, rule in findings if sev in FLAGGED})
        kind = "single" if statements == 1 else "multi"
        if case.file not in stats:
            files.append(case.file)
            stats[case.file] = {"dangerous": 0, "detected": 0, "safe": 0, "flagged": 0}
        s = stats[case.file]
        if case.label == "dangerous":
            s["dangerous"] += 1
            s["detected"] += bool(flagged)
            stats.setdefault(("dangerous", kind), [0, 0])
            stats[("dangerous", kind)][0] += 1
            stats[("dangerous", kind)][1] += bool(flagged)
            if not flagged:
                misses.append(case)
        else:
            s["safe"] += 1
            s["flagged"] += bool(flagged)
            stats.setdefault(("safe", kind), [0, 0])
            stats[("safe", kind)][0] += 1
            stats[("safe", kind)][1] += bool(flagged)
            if flagged:
                false_positives.append((case, flagged))

    def pair(label, kind):
        return stats.get((label, kind), [0, 0])

    d1, d2 = pair("dangerous", "single"), pair("dangerous", "multi")
    s1, s2 = pair("safe", "single"), pair("safe", "multi")
    dall = [d1[0] + d2[0], d1[1] + d2[1]]
    sall = [s1[0] + s2[0], s1[1] + s2[1]]
    singles = d1[0] + s1[0]
    multis = d2[0] + s2[0]

    lines = [
        "<!-- Generated by tests/integration/test_corpus.py; "
        "MIGSAFE_BLESS=1 rewrites it. Do not edit by hand. -->",
        "",
        f"{len(results)} cases: {singles} single statements, {multis} multi-statement "
        f"migrations; {dall[0]} dangerous, {sall[0]} safe.",
        "",
        "| cases | count | flagged by check() | rate |",
        "|---|---:|---:|---:|",
        f"| dangerous, single statement | {d1[0]} | {d1[1]} | {pct(d1[1], d1[0])} |",
        f"| dangerous, multi-statement | {d2[0]} | {d2[1]} | {pct(d2[1], d2[0])} |",
        f"| **dangerous, all (detection rate)** | {dall[0]} | {dall[1]} | **{pct(dall[1], dall[0])}** |",
        f"| safe, single statement | {s1[0]} | {s1[1]} | {pct(s1[1], s1[0])} |",
        f"| safe, multi-statement | {s2[0]} | {s2[1]} | {pct(s2[1], s2[0])} |",
        f"| **safe, all (false-positive rate)** | {sall[0]} | {sall[1]} | **{pct(sall[1], sall[0])}** |",
        "",
        "By family:",
        "",
        "| file | dangerous | detected | safe | flagged |",
        "|---|---:|---:|---:|---:|",
    ]
    for f in files:
        s = stats[f]
        lines.append(f"| `{f}` | {s['dangerous']} | {s['detected']} | {s['safe']} | {s['flagged']} |")
    lines += ["", f"### Misses: dangerous, not flagged ({len(misses)})", ""]
    if misses:
        lines += [f"- `{c.id}` ({c.file}): {c.why}" for c in misses]
    else:
        lines.append("None.")
    lines += ["", f"### False positives: safe, flagged ({len(false_positives)})", ""]
    if false_positives:
        lines += [f"- `{c.id}` ({c.file}; {', '.join(rules)}): {c.why}"
                  for c, rules in false_positives]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def test_corpus_is_well_formed(results):
    problems = []
    seen = {}
    for case in CASES:
        if not ID.match(case.id):
            problems.append(f"{case.where()}: id is not kebab-case")
        if case.id in seen:
            problems.append(f"{case.where()}: id also used at {seen[case.id]}")
        seen.setdefault(case.id, case.where())
        if case.label not in LABELS:
            problems.append(f"{case.where()}: label {case.label!r} is not dangerous|safe")
        if not case.why:
            problems.append(f"{case.where()}: no `-- why:`")
        if not case.setup:
            problems.append(f"{case.where()}: no setup")
        if not case.migration:
            problems.append(f"{case.where()}: no migration")
        problems += [f"{case.where()}: {p}" for p in case.problems]
    singles = multis = dangerous = 0
    for case, statements, _ in results:
        if statements == 1:
            singles += 1
        elif 2 <= statements <= 8:
            multis += 1
        else:
            problems.append(f"{case.where()}: {statements} statements (want 1, or 2-8)")
        dangerous += case.label == "dangerous"
    assert not problems, "\n".join(problems)
    assert singles >= 150, singles
    assert multis >= 40, multis
    # Roughly half and half.
    assert 0.35 <= dangerous / len(results) <= 0.65, (dangerous, len(results))


def test_score_matches_docs(results):
    section = render(results)
    with open(ACCURACY) as f:
        page = f.read()
    start, end = page.find(BEGIN), page.find(END)
    assert 0 <= start < end, f"docs/accuracy.md lacks the {BEGIN} ... {END} markers"
    have = page[start + len(BEGIN):end].strip("\n") + "\n"
    if os.environ.get("MIGSAFE_BLESS"):
        with open(ACCURACY, "w") as f:
            f.write(page[:start + len(BEGIN)] + "\n" + section + page[end:])
        return
    if have != section:
        diff = "".join(difflib.unified_diff(
            have.splitlines(True), section.splitlines(True),
            "docs/accuracy.md (committed)", "check() now"))
        pytest.fail("the corpus score differs from docs/accuracy.md; review, then re-bless "
                    "with MIGSAFE_BLESS=1:\n" + diff)
