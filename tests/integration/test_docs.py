"""The SQL examples in the docs are executed: each ```sql block of docs/reference.md
runs in a fresh database, in order, one transaction per block. `-- expect: CODE` on a
block's first line means it must fail with that SQLSTATE; a plain ``` block right after
a ```sql block is the psql-style result the query must return."""
import os
import re

import psycopg
import pytest

from conftest import new_db, run

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs")


def blocks(path):
    text = open(path).read()
    found = []
    for m in re.finditer(r"```(sql)?\n(.*?)```", text, re.S):
        if m.group(1):
            found.append([m.group(2), None])
        elif found and found[-1][1] is None and text[found_end(text, m):m.start()].strip() in ("", "returns"):
            found[-1][1] = m.group(2)
    return found


def found_end(text, m):
    # end of the previous code block before m
    prev = text.rfind("```", 0, m.start())
    return prev + 3 if prev >= 0 else 0


def table_rows(result_block):
    lines = [l for l in result_block.strip().splitlines()]
    header = [c.strip() for c in lines[0].split("|")]
    rows = []
    for l in lines[2:]:
        if l.startswith("ERROR") or l.startswith("DETAIL"):
            return None
        rows.append([c.strip() for c in l.split("|")])
    return header, rows



@pytest.mark.parametrize("page", ["reference.md", "two-phase.md", "audit.md", "rollback.md", "lock-retries.md"])
def test_doc_examples_run(cluster, page):
    db = new_db(cluster)
    ran = 0
    with cluster.connect(db) as conn:
        for sql, expected in blocks(os.path.join(DOCS, page)):
            first = sql.strip().splitlines()[0]
            m = re.match(r"-- expect: (\w+)", first)
            if m:
                r = run(conn, sql)
                assert r.sqlstate == m.group(1), (sql, r)
            elif expected and table_rows(expected):
                cur = conn.execute(sql)
                header, rows = table_rows(expected)
                assert [d.name for d in cur.description] == header, sql
                got = [["" if v is None else {True: "t", False: "f"}.get(v, str(v)) if isinstance(v, bool) else str(v)
                        for v in row] for row in cur.fetchall()]
                assert got == rows, (sql, got)
            else:
                r = run(conn, sql)
                assert r.ok, (sql, r)
            ran += 1
    assert ran >= 5
