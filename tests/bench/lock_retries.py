"""`make bench` (and `make bench-locks`): what a migration waiting for a lock does to the
traffic on its table. pgbench runs a read-write script on pgbench_accounts; after 2 s a
session takes a lock on the table and stays idle in transaction for 6 s (a forgotten
transaction, a long report); 1 s later a migration runs `ALTER TABLE pgbench_accounts
ADD COLUMN …`. Three ways, each on the same kind of scratch cluster:

- without pg_migsafe: the ALTER queues behind the blocker, every query queues behind
  the ALTER until the blocker ends;
- pg_migsafe, no retries (migsafe.lock_retry_budget = 0): the ALTER gives up after
  migsafe.lock_timeout, the migration fails;
- pg_migsafe with retries (the default budget): tries of one migsafe.lock_timeout, then
  pauses, until the blocker is gone; the migration succeeds.

The worst pgbench latency (per transaction, from pgbench's log) and the migration's
outcome go into the lock-retries section of docs/PERFORMANCE.md. A benchmark, not a
test: it never fails on a number."""
import datetime
import glob
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from pgcluster import Cluster, PGBIN  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOCK_TIMEOUT = "1s"
SECONDS = 14
ROUNDS = int(os.environ.get("BENCH_LOCK_ROUNDS", "3"))
SCRIPT = """\\set aid random(1, 100000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
END;
"""
WAYS = [
    ("without pg_migsafe", "", {}),
    ("pg_migsafe, no retries (migsafe.lock_retry_budget = 0)", "pg_migsafe",
     {"migsafe.lock_timeout": f"'{LOCK_TIMEOUT}'", "migsafe.lock_retry_budget": "0"}),
    ("pg_migsafe with retries (migsafe.lock_retry_budget = 20s)", "pg_migsafe",
     {"migsafe.lock_timeout": f"'{LOCK_TIMEOUT}'", "migsafe.lock_retry_budget": "'20s'"}),
]


def one_run(c, n):
    work = os.path.join(c.dir, f"pgbench-{n}")
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o777)
    with open(os.path.join(work, "rw.sql"), "w") as f:
        f.write(SCRIPT)
    bench = subprocess.Popen([f"{PGBIN}/pgbench", "-n", "-h", "127.0.0.1", "-p", str(c.port), "-U", "postgres",
                              "-c", "4", "-j", "2", "-T", str(SECONDS), "-f", "rw.sql", "-l",
                              "--log-prefix", "tx", "pgb"], cwd=work, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    blocker = c.connect("pgb", autocommit=False)
    blocker.execute("SELECT count(*) FROM pgbench_accounts WHERE aid < 10")
    threading.Timer(6, blocker.rollback).start()
    time.sleep(1)
    outcome = "succeeded"
    with c.connect("pgb") as m:
        t = time.perf_counter()
        try:
            m.execute(f"ALTER TABLE pgbench_accounts ADD COLUMN note{n} text")
        except Exception as e:  # noqa: BLE001 - the outcome is what is measured
            outcome = f"failed ({getattr(e, 'sqlstate', '?')})"
        took = time.perf_counter() - t
    out, err = bench.communicate(timeout=SECONDS + 60)
    blocker.close()
    lat = []
    for p in glob.glob(os.path.join(work, "tx*")):
        with open(p) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]) / 1e6)
    tps = next((l.split("=")[1].split()[0] for l in out.splitlines() if l.startswith("tps")), "?")
    return max(lat), statistics.median(lat), len(lat), took, outcome, tps


def main():
    results = {}
    for name, preload, settings in WAYS:
        c = Cluster("bench-locks", preload=preload, settings=settings)
        try:
            c.createdb("pgb", extension=bool(preload))
            # pgbench -i truncates the tables it has just created, in a later
            # transaction: pg_migsafe rightly refuses that under enforcement.
            if preload:
                c.configure(migsafe__mode="'off'")
            subprocess.run([f"{PGBIN}/pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", str(c.port),
                            "-U", "postgres", "pgb"], check=True, capture_output=True)
            if preload:
                c.configure(migsafe__mode="'enforce'")
            runs = [one_run(c, n) for n in range(ROUNDS)]
        finally:
            c.destroy()
        results[name] = runs
        for r in runs:
            print(f"{name}: worst {r[0]:.2f} s, median {r[1] * 1000:.1f} ms, {r[2]} tx, "
                  f"migration {r[4]} in {r[3]:.1f} s", flush=True)
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    rows = []
    for name, runs in results.items():
        worst = statistics.median(r[0] for r in runs)
        rows.append(f"| {name} | **{worst:.2f} s** ({', '.join(f'{r[0]:.2f}' for r in runs)}) | "
                    f"{statistics.median(r[1] for r in runs) * 1000:.1f} ms | "
                    f"{statistics.median(r[3] for r in runs):.1f} s, {runs[0][4]} |")
    section = f"""<!-- lock-retries: begin -->
## Lock retries

What a migration waiting for a lock does to the traffic on its table, measured by
`make bench` (tests/bench/lock_retries.py): pgbench (4 clients, a read-write script on
`pgbench_accounts`, scale 1, {SECONDS} s) runs; after 2 s a session reads the table and
stays idle in transaction for 6 s; 1 s later a migration runs `ALTER TABLE
pgbench_accounts ADD COLUMN … text`. Worst and median pgbench latency per
transaction (medians of {ROUNDS} runs; the worst of each run in brackets),
`migsafe.lock_timeout = {LOCK_TIMEOUT}`:

| | worst pgbench latency | median latency | the migration |
|---|---|---|---|
{chr(10).join(rows)}

Without pg_migsafe every transaction on the table waits behind the ALTER for as long
as the blocker stays (5 s here; forever if it never ends). With pg_migsafe and no
retries the wait is one `migsafe.lock_timeout`, and the migration fails. With retries
the traffic is held up by one try at a time (at most one `migsafe.lock_timeout`), and
the migration succeeds once the blocker is gone. See [lock-retries.md](lock-retries.md).
Run on {datetime.date.today().isoformat()}, commit {rev}.
<!-- lock-retries: end -->"""
    path = os.path.join(ROOT, "docs", "PERFORMANCE.md")
    old = open(path).read()
    b, e = old.find("<!-- lock-retries: begin -->"), old.find("<!-- lock-retries: end -->")
    if 0 <= b < e:
        new = old[:b] + section + old[e + len("<!-- lock-retries: end -->"):]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(new)
    print("wrote the lock-retries section of docs/PERFORMANCE.md")


if __name__ == "__main__":
    main()
