"""The shape of the code (issue #12), checked on the source: no module outside the
statement layer (src/stmt/) reads a statement's parse tree, and the shell's modules
import each other without a circle. No cluster needed."""
import glob
import os
import re

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")
# Envelopes, not statements: the hook receives a PlannedStmt, splitting yields RawStmts;
# what is inside them goes to src/stmt/.
ENVELOPES = {"PlannedStmt", "RawStmt"}
NODE = re.compile(r"\b(?:pg_sys::|NodeTag::T_)([A-Z][A-Za-z]*(?:Stmt|Cmd)|RangeVar|Constraint|ColumnDef|DefElem|"
                  r"TypeName|AlterTableCmd|PartitionCmd|RoleSpec|A_Const|FuncCall|ObjectWithArgs)\b")


def sources():
    for path in glob.glob(os.path.join(SRC, "**", "*.rs"), recursive=True):
        rel = os.path.relpath(path, SRC)
        yield rel, open(path).read()


def test_only_the_statement_layer_reads_parse_trees():
    found = []
    for rel, text in sources():
        if rel.startswith("stmt" + os.sep) or rel == "tests.rs":
            continue
        for m in NODE.finditer(text):
            if m.group(1) not in ENVELOPES:
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"src/{rel}:{line}: {m.group(0)}")
    assert not found, "parse-tree nodes read outside src/stmt/:\n" + "\n".join(found)


def test_the_shell_modules_import_each_other_without_a_circle():
    deps = {}
    for rel, text in sources():
        top = rel.split(os.sep)[0].removesuffix(".rs")
        if top in ("lib", "tests"):
            continue
        deps.setdefault(top, set()).update(set(re.findall(r"crate::([a-z_]+)", text)) - {top, "engine"})
    # Depth-first search for a back edge.
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for d in sorted(deps.get(m, ())):
            if d not in deps:
                continue
            if state.get(d) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = "done"

    for m in sorted(deps):
        if m not in state:
            visit(m)
    assert {"hooks", "stmt", "audit", "autosnap"} <= set(deps)   # the scan saw the tree
