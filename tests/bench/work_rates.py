"""`make bench` (last step): how fast PostgreSQL itself does the three kinds of table
work a finding can announce — a full scan (a validation), a rewrite (a type change) and
an index build — on this machine, in MB of table per second. pg_migsafe's findings turn
a table's size into "roughly how long" with these rates (engine `policy::WORK_RATES`);
this measures them again and writes the work-rates section of docs/PERFORMANCE.md. A
benchmark, not a test: it never fails on a number."""
import datetime
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from pgcluster import Cluster  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ROWS = int(os.environ.get("BENCH_WORK_ROWS", "2000000"))
REPS = 3
SETTINGS = {"shared_buffers": "'256MB'", "max_wal_size": "'4GB'", "checkpoint_timeout": "'30min'",
            "maintenance_work_mem": "'64MB'"}
WORK = [
    # (kind, the statement, the statement that undoes it)
    ("full scan", "ALTER TABLE w ADD CONSTRAINT w_b CHECK (b >= 0)", "ALTER TABLE w DROP CONSTRAINT w_b"),
    ("table rewrite", "ALTER TABLE w ALTER COLUMN b TYPE bigint", "ALTER TABLE w ALTER COLUMN b TYPE int"),
    ("index build", "CREATE INDEX w_a ON w (a)", "DROP INDEX w_a"),
]


def main():
    c = Cluster("bench-work", preload="", settings=SETTINGS)
    try:
        with c.connect() as conn:
            conn.execute(f"CREATE TABLE w AS SELECT g AS id, md5(g::text) AS a, (g % 1000)::int AS b, "
                         f"now() AS t FROM generate_series(1, {ROWS}) g")
            conn.execute("VACUUM ANALYZE w")
            mb = conn.execute("SELECT pg_relation_size('w') / 1048576.0").fetchone()[0]
            rates = {}
            for kind, do, undo in WORK:
                times = []
                for _ in range(REPS):
                    conn.execute("CHECKPOINT")
                    t = time.perf_counter()
                    conn.execute(do)
                    times.append(time.perf_counter() - t)
                    conn.execute(undo)
                rates[kind] = (statistics.median(times), float(mb) / statistics.median(times))
                print(f"{kind}: {statistics.median(times):.2f} s, {rates[kind][1]:.0f} MB/s", flush=True)
    finally:
        c.destroy()
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    rows = "\n".join(f"| {kind} | `{do}` | {s:.2f} s | **{r:.0f} MB/s** |" for (kind, do, _), (s, r)
                     in ((w, rates[w[0]]) for w in WORK))
    section = f"""<!-- work-rates: begin -->
## Table work rates

A finding whose work goes over the rows (a scan, a rewrite, an index build) says how
big the table is and roughly how long the work takes on it: the planner's estimate of
the table's size divided by a rate for that kind of work. The rates are PostgreSQL's own
on this machine, measured by `make bench` (tests/bench/work_rates.py) on a
{ROWS:,}-row table of {mb:.0f} MB (no pg_migsafe; medians of {REPS}, after a checkpoint;
the table in memory, as a table in use is):

| work | statement | time | rate |
|---|---|---|---|
{rows}

The engine uses round figures well below these (`policy::WORK_RATES`: scan 400 MB/s,
rewrite 100 MB/s, index build 50 MB/s), so the estimate leans long. It is an order of
magnitude, not a promise: reading from disk, a busy server, more indexes (a rewrite
rebuilds them all), a foreign key's lookups or a wider index key make the work slower;
it is said as "roughly", and "under a second" below one. Run on {datetime.date.today().isoformat()}, commit {rev}.
<!-- work-rates: end -->"""
    path = os.path.join(ROOT, "docs", "PERFORMANCE.md")
    old = open(path).read() if os.path.exists(path) else "# Performance\n"
    b, e = old.find("<!-- work-rates: begin -->"), old.find("<!-- work-rates: end -->")
    if 0 <= b < e:
        new = old[:b] + section + old[e + len("<!-- work-rates: end -->"):]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(new)
    print("wrote the work-rates section of docs/PERFORMANCE.md")


if __name__ == "__main__":
    main()
