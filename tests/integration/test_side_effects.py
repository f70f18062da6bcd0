"""pg_migsafe leaves no trace in what a user's session sees (issue #11): DDL in a READ
ONLY transaction gets PostgreSQL's own read-only error (no automatic snapshot, recycle
bin or phase bookkeeping is attempted), and DROP TABLE of a view keeps PostgreSQL's
message and hint — in warn and in enforce mode."""
import pytest

from conftest import new_db, run


@pytest.fixture(params=["enforce", "warn"])
def any_cluster(request):
    return request.getfixturevalue("cluster" if request.param == "enforce" else "warn_cluster")


def test_ddl_in_a_read_only_transaction_gets_postgresqls_error(any_cluster):
    db = new_db(any_cluster)
    with any_cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE ro (id int)")
        c.execute("INSERT INTO ro VALUES (1)")
    for begin in (["BEGIN READ ONLY"], ["SET default_transaction_read_only = on", "BEGIN"]):
        with any_cluster.connect(db, user="app_owner") as c:
            for b in begin:
                c.execute(b)
            r = run(c, "ALTER TABLE ro ADD COLUMN extra int")
            assert r.sqlstate == "25006", r
            assert r.message == "cannot execute ALTER TABLE in a read-only transaction", r
            c.execute("ROLLBACK")
            c.execute("BEGIN READ ONLY")
            r = run(c, "CREATE TABLE ro2 (id int)")
            assert (r.sqlstate, r.message) == ("25006", "cannot execute CREATE TABLE in a read-only transaction"), r
            c.execute("ROLLBACK")


def test_drop_table_of_a_view_keeps_postgresqls_hint(any_cluster, request):
    db = new_db(any_cluster)
    # In enforce mode a list that also names a real table is refused for that table.
    mixed = [("DROP TABLE v, base", "table")] if "warn" in request.node.name else []
    with any_cluster.connect(db, user="app_owner") as c:
        c.execute("CREATE TABLE base (id int)")
        c.execute("CREATE VIEW v AS SELECT id FROM base")
        c.execute("CREATE SEQUENCE s")
        for sql, kind in (("DROP TABLE v", "table"), ("DROP TABLE IF EXISTS v", "table"),
                          ("DROP VIEW base", "view"), ("DROP SEQUENCE base", "sequence"),
                          *mixed):
            r = run(c, sql)
            assert r.sqlstate == "42809", (sql, r)
            assert r.message == f'"{"base" if kind != "table" else "v"}" is not a {kind}', (sql, r)
            assert (r.error.diag.message_hint or "").startswith("Use DROP "), (sql, r)
        # Nothing was dropped.
        assert c.execute("SELECT count(*) FROM pg_class WHERE relname IN ('base', 'v', 's')").fetchone()[0] == 3
