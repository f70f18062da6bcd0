#!/usr/bin/env python3
"""Drafts the replayable part of an upgrade script from a release's install script.

    upgrade_draft.py pg_migsafe--0.2.0.sql > draft.sql

An upgrade script (sql/pg_migsafe--OLD--NEW.sql) brings a database installed at OLD to
exactly what a fresh install of NEW has. Most of that is replayable: every function
(CREATE OR REPLACE FUNCTION), every view (CREATE OR REPLACE VIEW), every GRANT, REVOKE
and COMMENT of NEW's install script, in its order. This prints those statements.
What a replay cannot do is written by hand around it: dropping functions that are gone
or whose signature or result type changed, revoking grants that NEW no longer makes,
new tables, columns, types and triggers, data moves. tests/integration/test_upgrade.py
compares an upgraded database with a fresh one, catalog by catalog, so that a missing
line fails the tests.
"""
import re
import sys


def statements(sql):
    """Splits a script at top-level semicolons (strings, quoted identifiers, comments
    and dollar-quoted bodies respected)."""
    out, buf, i, n = [], [], 0, len(sql)
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            buf.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            buf.append(sql[i:j])
            i = j
        elif c in "'\"":
            j = i + 1
            while j < n:
                if sql[j] == c and sql.startswith(c * 2, j):
                    j += 2
                elif sql[j] == c:
                    j += 1
                    break
                else:
                    j += 1
            buf.append(sql[i:j])
            i = j
        elif c == "$":
            m = re.match(r"\$[A-Za-z_]*\$", sql[i:])
            if m:
                tag = m.group(0)
                j = sql.find(tag, i + len(tag))
                j = n if j < 0 else j + len(tag)
                buf.append(sql[i:j])
                i = j
            else:
                buf.append(c)
                i += 1
        elif c == ";":
            out.append("".join(buf).strip())
            buf = []
            i += 1
        else:
            buf.append(c)
            i += 1
    tail = "".join(buf).strip()
    if tail:
        out.append(tail)
    return out


def code(stmt):
    """The statement without its leading comments."""
    text = stmt.strip()
    while True:
        before = text
        text = re.sub(r"^--[^\n]*\n?", "", text).strip()
        text = re.sub(r"^/\*.*?\*/", "", text, flags=re.S).strip()
        if text == before:
            return text


def replayable(stmt):
    c = code(stmt)
    head = " ".join(c.split()[:3]).upper()
    if re.match(r"CREATE\s+FUNCTION", c, re.I):
        return re.sub(r"^CREATE\s+FUNCTION", "CREATE OR REPLACE FUNCTION", c, flags=re.I)
    if re.match(r"CREATE\s+VIEW", c, re.I):
        return re.sub(r"^CREATE\s+VIEW", "CREATE OR REPLACE VIEW", c, flags=re.I)
    if head.startswith(("GRANT", "REVOKE", "COMMENT ON")):
        return c
    return None


def main(path):
    for s in statements(open(path).read()):
        r = replayable(s)
        if r:
            print(r + ";\n")


if __name__ == "__main__":
    main(sys.argv[1])
