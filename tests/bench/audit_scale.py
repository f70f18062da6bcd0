"""Audit log at scale: a benchmark, not a test (it never fails on a number).

    .venv/bin/python tests/bench/audit_scale.py

Measures, in one run, on scratch clusters (tests/integration/pgcluster.py):
1. records per second the audit writers store with 1, 4 and 16 databases producing at
   once, with the default max_worker_processes (8) and migsafe.audit_databases (8);
2. the latency of one DDL statement with the audit queue empty and full (the writer
   held back by a lock on migsafe.audit_log, records spilling to the disk backlog),
   and on a cluster without pg_migsafe;
3. the memory of one backend over many utility statements and recorded DDL
   statements, with and without pg_migsafe.
Prints the results and writes them into docs/PERFORMANCE.md between the lines
`<!-- audit-scale: begin -->` and `<!-- audit-scale: end -->` (appended if absent).

Knobs (environment): AUDIT_SCALE_RECORDS (statement records per case of 1, default
20000), AUDIT_SCALE_LATENCY (statements timed per latency row, default 500),
AUDIT_SCALE_UTILITY (utility statements of 3, default 1000000), AUDIT_SCALE_DDL
(recorded DDL statements of 3, default 100000), AUDIT_SCALE_DDL_SNAPSHOT (recorded DDL
statements of 3 with migsafe.auto_snapshot = on, default AUDIT_SCALE_DDL / 2), AUDIT_SCALE_PARTS (default "1,2,3";
the document is written only when all three ran), AUDIT_SCALE_NO_DOC=1 (print only).
"""
import datetime
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from pgcluster import Cluster  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOC = os.path.join(ROOT, "docs", "PERFORMANCE.md")
BEGIN, END = "<!-- audit-scale: begin -->", "<!-- audit-scale: end -->"
PGLIB = os.environ.get("PGLIB", "/usr/lib/postgresql/15/lib")

RECORDS = int(os.environ.get("AUDIT_SCALE_RECORDS", "20000"))
LAT_N = int(os.environ.get("AUDIT_SCALE_LATENCY", "500"))
MEM_UTIL = int(os.environ.get("AUDIT_SCALE_UTILITY", "1000000"))
MEM_DDL = int(os.environ.get("AUDIT_SCALE_DDL", "100000"))
MEM_DDL_SNAP = int(os.environ.get("AUDIT_SCALE_DDL_SNAPSHOT", str(MEM_DDL // 2)))
PARTS = {p.strip() for p in os.environ.get("AUDIT_SCALE_PARTS", "1,2,3").split(",")}
CASES = (1, 4, 16)
SAMPLES = 10  # memory samples per run (after a warm-up batch), i.e. every 1/10 of it
BATCH = 1000  # statements per execute() in the memory runs

# pgcluster.Cluster writes max_worker_processes = 40, migsafe.audit_databases = 32 and
# migsafe.audit_worker_idle = 2 for the test suites; settings are written after those
# lines and the last line wins: back to PostgreSQL's and pg_migsafe's defaults.
# migsafe.auto_snapshot (default on) snapshots what each migration touches before it runs
# (about 1.5 ms per one-statement migration in a debug build, ~7x the statement): off, as
# in bench.py, so that the audit path is what is measured; the latency and memory parts
# add a run with it on for reference.
DEFAULTS = {"max_worker_processes": "8", "migsafe.audit_databases": "8", "migsafe.audit_worker_idle": "10",
            "migsafe.auto_snapshot": "off"}
SHOWN = ("max_worker_processes", "migsafe.audit_databases", "migsafe.audit_worker_idle",
         "migsafe.audit_queue_size", "migsafe.audit_queue_wait", "synchronous_commit", "fsync",
         "shared_buffers", "max_parallel_workers", "migsafe.auto_snapshot")

DO_SQL = ("DO $$BEGIN FOR i IN 1..{n} LOOP "
          "EXECUTE 'COMMENT ON TABLE qt IS ''audit scale'''; END LOOP; END$$")
PAD = "x" * 2000  # a ~2 kB statement, so that the ring fills after a few hundred records
COMMENT_PADDED = f"COMMENT ON TABLE t IS 'pad {PAD}'"
COMMENT_SHORT = "COMMENT ON TABLE t IS 'latency'"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()


def stats(conn):
    row = one(conn, "SELECT queued, written, fallback, queue_records, queue_bytes, writers FROM migsafe._queue_stats()")
    spilled = one(conn, "SELECT migsafe._queue_spilled()")[0]
    return dict(zip(("queued", "written", "fallback", "queue_records", "queue_bytes", "writers"), row),
                spilled=spilled)


def delta(a, b):
    return {k: b[k] - a[k] for k in ("queued", "written", "fallback", "spilled")}


def wait_until(fn, timeout, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(step)
    return fn()


def statement_rows(conn, after_seq=0):
    return one(conn, "SELECT count(*) FROM migsafe.audit_log WHERE kind = 'statement' AND seq > %s", (after_seq,))[0]


def max_seq(conn):
    return one(conn, "SELECT coalesce(max(seq), 0) FROM migsafe.audit_log")[0]


def verify(conn):
    ok, rows, _last, broken, reason = one(conn, "SELECT ok, rows_checked, last_seq, broken_seq, reason FROM migsafe.verify_log()")
    return ok, (None if ok else f"broken at {broken}: {reason}")


# --- 1. writer throughput with 1, 4, 16 databases -----------------------------------

def scale_case(cl, ndb):
    per = RECORDS // ndb
    names = [f"scale{ndb}_{k}" for k in range(ndb)]
    for n in names:
        cl.createdb(n)
        with cl.connect(n) as c:
            c.execute("CREATE TABLE qt (id int)")
    monitors = {n: cl.connect(n) for n in names}
    # The setup's records (CREATE TABLE) stored, then every writer gone: each case
    # starts cold, its writers started on demand like after a quiet period.
    for n, c in monitors.items():
        if not wait_until(lambda: statement_rows(c) >= 1, 60):
            log(f"  WARNING: setup record of {n} not stored after 60 s")
    with cl.connect() as c:
        cold = wait_until(lambda: stats(c)["writers"] == 0, 40, 0.2)
        if not cold:
            log("  WARNING: writers still running at the start of the case")
    base = {n: max_seq(c) for n, c in monitors.items()}
    with cl.connect() as c:
        s0 = stats(c)
    sessions = {n: cl.connect(n, options="-c statement_timeout=600s") for n in names}
    barrier = threading.Barrier(ndb + 1)
    produced, errors = {}, {}

    def run(n):
        conn = sessions[n]
        barrier.wait()
        try:
            conn.execute(DO_SQL.format(n=per))
        except Exception as e:  # reported, never raised: a benchmark
            errors[n] = str(e)
        produced[n] = time.perf_counter()

    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    done, polls = {}, 0
    deadline = t0 + max(180.0, RECORDS / 50)
    while len(done) < ndb and time.perf_counter() < deadline:
        for n, c in monitors.items():
            if n not in done and statement_rows(c, base[n]) >= per:
                done[n] = time.perf_counter() - t0
        polls += 1
        if len(done) < ndb:
            time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    for t in threads:
        t.join()
    # Wait a little for the migration ends (they follow their statements), then count.
    time.sleep(0.5)
    rows = {n: one(c, "SELECT count(*) FILTER (WHERE kind = 'statement'), count(*) FROM migsafe.audit_log "
                      "WHERE seq > %s", (base[n],)) for n, c in monitors.items()}
    with cl.connect() as c:
        s1 = stats(c)
    bad_verify = {}
    for n, c in monitors.items():
        ok, why = verify(c)
        if not ok:
            bad_verify[n] = why
    for c in list(monitors.values()) + list(sessions.values()):
        c.close()
    stored = sum(r[1] for r in rows.values())
    wrong = {n: r[0] for n, r in rows.items() if r[0] != per}
    res = {
        "dbs": ndb, "per": per, "expected": per * ndb,
        "statement_rows": sum(r[0] for r in rows.values()), "stored": stored,
        "complete": len(done), "elapsed": elapsed if len(done) == ndb else None,
        "first": min(done.values()) if done else None, "last": max(done.values()) if done else None,
        "produced": max(produced.values()) - t0 if produced else None,
        "rate": stored / elapsed, "stmt_rate": sum(min(r[0], per) for r in rows.values()) / elapsed,
        "wrong": wrong, "errors": errors, "verify_bad": bad_verify, "cold": cold,
        **delta(s0, s1),
    }
    log(f"  {ndb:2d} db x {per:,} statements: {stored:,} records stored, last db complete after "
        f"{res['last'] if res['last'] is not None else float('nan'):.2f} s "
        f"(first {res['first'] if res['first'] is not None else float('nan'):.2f} s, DO blocks done after "
        f"{res['produced'] if res['produced'] is not None else float('nan'):.2f} s) -> {res['rate']:,.0f} records/s; "
        f"complete {len(done)}/{ndb}, spilled {res['spilled']:,}, fallback {res['fallback']}, "
        f"wrong counts {wrong or 'none'}, verify {'ok' if not bad_verify else bad_verify}, errors {errors or 'none'}")
    return res


def part1(cl):
    log(f"1. writer throughput, {RECORDS:,} statement records per case")
    return [scale_case(cl, n) for n in CASES]


# --- 2. statement latency, queue empty / full ---------------------------------------

def timed_statements(conn, sql, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        conn.execute(sql)
        out.append(time.perf_counter() - t)
    return out


def summary(times):
    s = sorted(times)
    return {"n": len(s), "median_ms": statistics.median(s) * 1000,
            "p95_ms": s[min(len(s) - 1, int(round(0.95 * len(s))) - 1)] * 1000, "max_ms": s[-1] * 1000}


def part2(with_cl, without_cl):
    log(f"2. statement latency, {LAT_N} statements per row")
    res = {}
    for cl in (without_cl, with_cl):
        with cl.connect() as c:
            c.execute("CREATE DATABASE lat")
    with_cl_ext = with_cl.connect("lat")
    with_cl_ext.execute("CREATE EXTENSION pg_migsafe")
    with_cl_ext.execute("CREATE TABLE t (id int)")
    with_cl_ext.close()
    with without_cl.connect("lat") as c:
        c.execute("CREATE TABLE t (id int)")
        timed_statements(c, COMMENT_SHORT, 50)  # warm-up
        res["without_short"] = summary(timed_statements(c, COMMENT_SHORT, LAT_N))
        res["without_padded"] = summary(timed_statements(c, COMMENT_PADDED, LAT_N))
    c = with_cl.connect("lat", options="-c statement_timeout=30s")
    mon = with_cl.connect("lat")
    timed_statements(c, COMMENT_SHORT, 50)  # warm-up
    wait_until(lambda: stats(mon)["queue_records"] == 0, 30)
    s0 = stats(mon)
    res["empty_short"] = summary(timed_statements(c, COMMENT_SHORT, LAT_N))
    res["empty_padded"] = summary(timed_statements(c, COMMENT_PADDED, LAT_N))
    s1 = stats(mon)
    res["empty_spilled"] = s1["spilled"] - s0["spilled"]
    with_cl.configure(migsafe__auto_snapshot="on")
    c.close()
    c = with_cl.connect("lat", options="-c statement_timeout=30s")
    timed_statements(c, COMMENT_SHORT, 20)
    res["snapshot_short"] = summary(timed_statements(c, COMMENT_SHORT, LAT_N))
    with_cl.configure(migsafe__auto_snapshot="off")
    c.close()
    c = with_cl.connect("lat", options="-c statement_timeout=30s")
    timed_statements(c, COMMENT_SHORT, 20)
    wait_until(lambda: stats(mon)["queue_records"] == 0, 60)
    wait_until(lambda: stats(mon)["queue_records"] == 0, 60)
    base = statement_rows(mon)
    # (b): an auditor's lock holds the writer back; fill the ring until records spill.
    locker = with_cl.connect("lat", autocommit=False)
    locker.execute("LOCK TABLE migsafe.audit_log IN ACCESS EXCLUSIVE MODE")
    sf = stats(mon)
    fill = 0
    for _ in range(100):
        c.execute(f"DO $$BEGIN FOR i IN 1..100 LOOP EXECUTE $q${COMMENT_PADDED}$q$; END LOOP; END$$")
        fill += 100
        if stats(mon)["spilled"] > sf["spilled"]:
            break
    s2 = stats(mon)
    res["fill"] = fill
    res["ring_bytes_full"] = s2["queue_bytes"]
    res["ring_records_full"] = s2["queue_records"]
    try:
        res["full_padded"] = summary(timed_statements(c, COMMENT_PADDED, LAT_N))
        res["full_error"] = None
    except Exception as e:
        res["full_padded"] = None
        res["full_error"] = str(e)
        c = with_cl.connect("lat")
    s3 = stats(mon)
    res["full_spilled"] = s3["spilled"] - s2["spilled"]
    res["full_queued"] = s3["queued"] - s2["queued"]
    # Release: every row must arrive.
    t = time.perf_counter()
    locker.rollback()
    locker.close()
    expected = base + fill + (LAT_N if res["full_padded"] else 0)
    arrived = wait_until(lambda: statement_rows(mon) >= expected, 120, 0.1)
    res["drain_s"] = time.perf_counter() - t
    res["rows"] = statement_rows(mon) - base
    res["rows_expected"] = expected - base
    res["arrived"] = arrived
    res["verify"], res["verify_why"] = verify(mon)
    s4 = stats(mon)
    res["fallback"] = s4["fallback"] - s0["fallback"]
    c.close()
    mon.close()
    for k in ("without_short", "without_padded", "empty_short", "empty_padded", "snapshot_short", "full_padded"):
        if res.get(k):
            log(f"  {k:15s} median {res[k]['median_ms']:.3f} ms  p95 {res[k]['p95_ms']:.3f} ms  max {res[k]['max_ms']:.1f} ms")
    log(f"  ring full after {fill} fill statements ({s2['queue_records']} records, {s2['queue_bytes']:,} bytes); "
        f"spilled during (b) {res['full_spilled']:,}, during (a) {res['empty_spilled']:,}; after release "
        f"{res['rows']:,}/{res['rows_expected']:,} rows in {res['drain_s']:.2f} s, verify "
        f"{'ok' if res['verify'] else res['verify_why']}, fallback {res['fallback']}"
        + (f", ERROR {res['full_error']}" if res["full_error"] else ""))
    return res


# --- 3. backend memory ---------------------------------------------------------------

def memory(pid):
    """(VmRSS, Private_Dirty, RssAnon, RssShmem) in kB."""
    with open(f"/proc/{pid}/status") as f:
        st = {k: v for k, v in (line.split(":", 1) for line in f)}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        priv = next(int(line.split()[1]) for line in f if line.startswith("Private_Dirty:"))
    kb = lambda k: int(st[k].split()[0])  # noqa: E731
    return kb("VmRSS"), priv, kb("RssAnon"), kb("RssShmem")


def slope(xs, ys):
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def memory_run(cl, db, unit, count):
    """`unit` is a statement group with `per_unit` counted statements; runs `count`
    counted statements in batches of BATCH, sampling after a warm-up batch and then
    every count/SAMPLES statements."""
    text, per_unit = unit
    batch = text * (BATCH // per_unit)
    conn = cl.connect(db)
    pid = one(conn, "SELECT pg_backend_pid()")[0]
    conn.execute(batch)  # warm-up: caches filled, not counted
    samples = [(0, *memory(pid))]
    step = max(BATCH, count // SAMPLES // BATCH * BATCH)
    t = time.perf_counter()
    done = 0
    while done < count:
        conn.execute(batch)
        done += BATCH
        if done % step == 0 or done >= count:
            samples.append((done, *memory(pid)))
    elapsed = time.perf_counter() - t
    conn.close()
    xs = [s[0] for s in samples]
    per100k = 100_000
    out = {"count": done, "elapsed": elapsed, "samples": samples}
    for i, key in ((1, "rss"), (2, "priv"), (3, "anon"), (4, "shmem")):
        ys = [s[i] for s in samples]
        out[f"{key}_first"], out[f"{key}_last"] = ys[0], ys[-1]
        out[f"{key}_total"] = ys[-1] - ys[0]
        out[f"{key}_fit"] = slope(xs, ys) * per100k
        out[f"{key}_avg"] = (ys[-1] - ys[0]) / (xs[-1] / per100k)
        # Without the first tenth (caches filling up): what keeps growing.
        out[f"{key}_late"] = (ys[-1] - ys[1]) / ((xs[-1] - xs[1]) / per100k) if len(xs) > 2 and xs[-1] > xs[1] else None
    return out


def part3(with_cl, without_cl):
    log(f"3. backend memory, {MEM_UTIL:,} utility statements and {MEM_DDL:,} recorded DDL statements "
        f"(+ {MEM_DDL_SNAP:,} with auto_snapshot on)")
    util = ("SET work_mem = '4MB'; SHOW work_mem; ", 2)
    ddl = ("BEGIN; COMMENT ON TABLE t IS 'x'; COMMIT; ", 1)
    res = {}
    runs = [("without", without_cl, "utility", util, MEM_UTIL), ("without", without_cl, "ddl", ddl, MEM_DDL),
            ("with", with_cl, "utility", util, MEM_UTIL), ("with", with_cl, "ddl", ddl, MEM_DDL)]
    for name, cl in (("without", without_cl), ("with", with_cl)):
        with cl.connect() as c:
            c.execute("CREATE DATABASE mem")
        with cl.connect("mem") as c:
            if name == "with":
                c.execute("CREATE EXTENSION pg_migsafe")
            c.execute("CREATE TABLE t (id int)")
    mon = with_cl.connect("mem")
    wait_until(lambda: statement_rows(mon) >= 1, 30)
    base = statement_rows(mon)
    for name, cl, kind, unit, count in runs:
        r = memory_run(cl, "mem", unit, count)
        res[(name, kind)] = r
        log(f"  {name:7s} {kind:7s} {r['count']:,} statements in {r['elapsed']:.2f} s: "
            f"RSS {r['rss_first']:,} -> {r['rss_last']:,} kB (fit {r['rss_fit']:+.1f} kB/100k; "
            f"RssShmem {r['shmem_total']:+,}, RssAnon {r['anon_total']:+,}), "
            f"Private_Dirty {r['priv_first']:,} -> {r['priv_last']:,} kB (fit {r['priv_fit']:+.1f} kB/100k) "
            f"samples {[x[2] for x in r['samples']]}")
    # Every recorded statement (and warm-up batch) of the DDL run must arrive.
    expected = base + res[("with", "ddl")]["count"] + BATCH
    t = time.perf_counter()
    arrived = wait_until(lambda: statement_rows(mon) >= expected, 300, 0.5)
    res["ddl_drain_s"] = time.perf_counter() - t
    res["ddl_rows"], res["ddl_rows_expected"] = statement_rows(mon) - base, expected - base
    res["ddl_verify"], why = verify(mon)
    log(f"  DDL run's records: {res['ddl_rows']:,}/{res['ddl_rows_expected']:,} statement rows "
        f"({'all' if arrived else 'NOT all'} stored {res['ddl_drain_s']:.1f} s after the run), verify "
        f"{'ok' if res['ddl_verify'] else why}")
    mon.close()
    if MEM_DDL_SNAP:
        with_cl.configure(migsafe__auto_snapshot="on")
        r = memory_run(with_cl, "mem", ddl, MEM_DDL_SNAP)
        with_cl.configure(migsafe__auto_snapshot="off")
        res[("with", "ddl_snapshot")] = r
        log(f"  with    ddl, auto_snapshot on, {r['count']:,} statements in {r['elapsed']:.2f} s: "
            f"RSS {r['rss_first']:,} -> {r['rss_last']:,} kB (fit {r['rss_fit']:+.1f} kB/100k; "
            f"RssShmem {r['shmem_total']:+,}, RssAnon {r['anon_total']:+,}), "
            f"Private_Dirty {r['priv_first']:,} -> {r['priv_last']:,} kB (fit {r['priv_fit']:+.1f} kB/100k) "
            f"samples {[x[2] for x in r['samples']]}")
    return res


# --- document -------------------------------------------------------------------------

def fmt(v, f="{:.2f}"):
    return "—" if v is None else f.format(v)


def section(r1, r2, r3, shown, build, runtime):
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip() or "unknown"
    s = shown
    out = [f"""## Audit log at scale

Measured by `tests/bench/audit_scale.py` (`.venv/bin/python tests/bench/audit_scale.py`;
a benchmark, it never fails on a number) on {datetime.date.today().isoformat()}, commit {rev},
{os.cpu_count()} cores, {platform.platform()}, pg_migsafe {build} build, total run time
{runtime / 60:.1f} min. Two scratch PostgreSQL 15 clusters (tests/integration/pgcluster.py:
`fsync = off`, `synchronous_commit = {s['synchronous_commit']}` for the sessions — the writers
commit with `on` — `shared_buffers = {s['shared_buffers']}`): one with
`shared_preload_libraries = 'pg_migsafe'` and `max_worker_processes = {s['max_worker_processes']}`,
`migsafe.audit_databases = {s['migsafe.audit_databases']}`, `migsafe.audit_worker_idle = {s['migsafe.audit_worker_idle']}`,
`migsafe.audit_queue_size = {s['migsafe.audit_queue_size']}`, `migsafe.audit_queue_wait = {s['migsafe.audit_queue_wait']}`
(the defaults: the test harness's larger values are overridden) and
`migsafe.auto_snapshot = {s['migsafe.auto_snapshot']}` (not the default: the automatic snapshot
before each migration is measured in the snapshot section above; here it would hide the
audit path — rows marked *auto_snapshot on* show it), one without pg_migsafe.
"""]
    out.append(f"""### Writer throughput with many databases

{RECORDS:,} statement records per case, split evenly over 1, 4 or 16 new databases,
each with `CREATE EXTENSION pg_migsafe` and one session running its share of
`COMMENT ON TABLE` statements from one DO block (`EXECUTE` in a loop: one statement
record each, one migration per database), all sessions starting together. Each case
starts with no writer running (the setup's records stored, the writers exited after
`audit_worker_idle`). Time runs from the start until every database's
`migsafe.audit_log` holds all its statement rows (polled every 50 ms); the rate is all
rows stored (statements, migration ends, migration starts of migrations running over a
second) divided by that time. 16 databases exceed both the rings (8) and the worker
processes free for writers (8 minus the pg_migsafe launcher and the logical
replication launcher): writers take turns and records wait in the disk backlog.
Where the DO blocks end about when the last row is stored, the producing sessions (which
share the cores with the writers), not the writers, set the rate.

| databases | statements each | rows stored | DO blocks done, s | first db complete, s | last db complete, s | records stored / s | spilled to backlog | server-log fallback | counts right | `verify_log()` |
|---|---|---|---|---|---|---|---|---|---|---|""")
    for r in r1:
        counts = "all" if not r["wrong"] and r["complete"] == r["dbs"] else \
            f"{r['dbs'] - len(r['wrong'])}/{r['dbs']} ({r['statement_rows']:,} of {r['expected']:,})"
        out.append(f"| {r['dbs']} | {r['per']:,} | {r['stored']:,} | {fmt(r['produced'])} | {fmt(r['first'])} | "
                   f"{fmt(r['last']) if r['complete'] == r['dbs'] else 'never (' + str(r['complete']) + ' complete)'} | "
                   f"**{r['rate']:,.0f}** | {r['spilled']:,} | {r['fallback']} | {counts} | "
                   f"{'ok' if not r['verify_bad'] else 'BROKEN in ' + str(len(r['verify_bad']))} |")
    lat_rows = [
        ("without pg_migsafe, short comment", r2["without_short"]),
        ("without pg_migsafe, ~2 kB comment", r2["without_padded"]),
        ("with pg_migsafe, queue empty, short comment", r2["empty_short"]),
        ("with pg_migsafe, queue empty, ~2 kB comment", r2["empty_padded"]),
        ("with pg_migsafe, queue empty, short comment, *auto_snapshot on* (the default)", r2["snapshot_short"]),
        ("with pg_migsafe, **queue full** (writer locked out, records spill to the backlog), ~2 kB comment",
         r2["full_padded"]),
    ]
    out.append(f"""
### Statement latency, audit queue empty and full

One client session (psycopg, autocommit: every statement its own transaction, so each
is a migration of one statement: a spool-file write and two records) times
{LAT_N} × `COMMENT ON TABLE t IS '…'` one after the other, from send to result, in a
database with the extension (and, for reference, in the cluster without it). *Queue
full*: another session holds `LOCK TABLE migsafe.audit_log IN ACCESS EXCLUSIVE MODE`,
so the writer cannot store; {r2['fill']:,} ~2 kB statements first filled the database's
ring ({r2['ring_records_full']:,} records, {r2['ring_bytes_full']:,} bytes) until records
spilled, then the timed statements ran: {r2['full_spilled']:,} records went to the disk
backlog while they ran. After the lock was released, {r2['rows']:,} of {r2['rows_expected']:,}
statement rows arrived in {r2['drain_s']:.1f} s; `verify_log()` {'ok' if r2['verify'] else 'BROKEN'};
server-log fallback {r2['fallback']}.

| statement | median, ms | p95, ms | max, ms |
|---|---|---|---|""")
    for title, v in lat_rows:
        if v:
            out.append(f"| {title} | **{v['median_ms']:.3f}** | {v['p95_ms']:.3f} | {v['max_ms']:.1f} |")
        else:
            out.append(f"| {title} | failed: {r2.get('full_error')} | | |")
    out.append(f"""
### Backend memory over many statements

One session (psycopg, a multi-statement string of {BATCH:,} statements per call, simple
query protocol) per run, in a database with the extension (cluster with pg_migsafe) or
without it; the backend's memory sampled after a warm-up batch and then every tenth of
the run: `Private_Dirty` (/proc/<pid>/smaps_rollup: its own memory, the measure of a
leak), `VmRSS` (/proc/<pid>/status; includes `RssShmem`, the shared buffers and queue
pages it touched, which grow as tables grow). *Utility*: {MEM_UTIL:,} statements,
`SET work_mem = '4MB'; SHOW work_mem;` repeated (every one passes the hook; one
transaction per call). *Recorded DDL*: `BEGIN; COMMENT ON TABLE t IS 'x'; COMMIT;`
repeated (each a migration of its own, recorded in the audit log: in the with-run
{r3['ddl_rows']:,} of {r3['ddl_rows_expected']:,} statement rows were stored, the last
{r3['ddl_drain_s']:.0f} s after the run ended; `verify_log()` {'ok' if r3['ddl_verify'] else 'BROKEN'}).
Growth per 100,000 statements: least-squares slope over the samples,
(last − first) / steps, and (last − second) / steps, which leaves out the first tenth of
the run, where caches fill.

| run | statements | time, s | Private_Dirty first → last, kB | Private_Dirty growth / 100k (fit / avg / after the first tenth), kB | VmRSS first → last, kB | VmRSS growth / 100k (fit), kB | of which RssShmem / RssAnon, kB |
|---|---|---|---|---|---|---|---|""")
    keys = [("without", "utility", "utility, without pg_migsafe"), ("with", "utility", "utility, with pg_migsafe"),
            ("without", "ddl", "recorded DDL, without pg_migsafe"), ("with", "ddl", "recorded DDL, with pg_migsafe"),
            ("with", "ddl_snapshot", "recorded DDL, with pg_migsafe, *auto_snapshot on*")]
    samples = []
    for name, kind, title in keys:
        r = r3.get((name, kind))
        if not r:
            continue
        out.append(f"| {title} | {r['count']:,} | {r['elapsed']:.1f} | {r['priv_first']:,} → {r['priv_last']:,} | "
                   f"**{r['priv_fit']:+,.0f}** / {r['priv_avg']:+,.0f} / {fmt(r['priv_late'], '{:+,.0f}')} | {r['rss_first']:,} → {r['rss_last']:,} | "
                   f"{r['rss_fit']:+,.0f} | {r['shmem_total']:+,} / {r['anon_total']:+,} |")
        samples.append(f"- {title}: " + ", ".join(f"{x[2]:,}" for x in r["samples"]))
    out.append("\nPrivate_Dirty samples, kB (warm-up, then every tenth):\n\n" + "\n".join(samples))
    out.append(f"""
Reproduce: `.venv/bin/python tests/bench/audit_scale.py` (knobs: `AUDIT_SCALE_RECORDS`,
default 20000; `AUDIT_SCALE_LATENCY`, 500; `AUDIT_SCALE_UTILITY`, 1000000;
`AUDIT_SCALE_DDL`, 100000; `AUDIT_SCALE_DDL_SNAPSHOT`, half of it). Numbers from one run on one machine; the absolute values
depend on it (this is a shared 2-core VM whose speed drifts).
""")
    return "\n".join(out)


def write_doc(text):
    with open(DOC) as f:
        doc = f.read()
    block = f"{BEGIN}\n{text.rstrip()}\n{END}"
    if BEGIN in doc and END in doc and doc.index(BEGIN) < doc.index(END):
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    with open(DOC, "w") as f:
        f.write(doc)


def build_kind():
    r = subprocess.run(["readelf", "-S", os.path.join(PGLIB, "pg_migsafe.so")], capture_output=True, text=True)
    if r.returncode != 0:
        return "unknown"
    return "debug" if ".debug_info" in r.stdout else "release"


def main():
    t_start = time.perf_counter()
    build = build_kind()
    log(f"pg_migsafe build: {build} (from {PGLIB}/pg_migsafe.so's sections)")
    with_cl = without_cl = None
    r1 = r2 = r3 = None
    try:
        with_cl = Cluster("audit-scale-with", preload="pg_migsafe", settings=DEFAULTS)
        without_cl = Cluster("audit-scale-without", preload="", settings={"max_worker_processes": "8"})
        with with_cl.connect() as c:
            # migsafe._queue_stats() and _queue_spilled() (cluster-wide counters) are read
            # from the postgres database; no DDL runs there.
            c.execute("CREATE EXTENSION pg_migsafe")
            shown = {k: one(c, "SELECT current_setting(%s, true)", (k,))[0] for k in SHOWN}
        log(f"settings (with): {shown}")
        if "1" in PARTS:
            r1 = part1(with_cl)
        if "2" in PARTS:
            r2 = part2(with_cl, without_cl)
        if "3" in PARTS:
            r3 = part3(with_cl, without_cl)
        with with_cl.connect() as c:
            log(f"server-log fallback total (with): {stats(c)['fallback']}, spilled total {stats(c)['spilled']:,}")
        fb_lines = with_cl.log_text().count("pg_migsafe_audit_fallback")
        if fb_lines:
            log(f"WARNING: {fb_lines} pg_migsafe_audit_fallback lines in the server log")
        runtime = time.perf_counter() - t_start
        if r1 and r2 and r3 and not os.environ.get("AUDIT_SCALE_NO_DOC"):
            write_doc(section(r1, r2, r3, shown, build, runtime))
            log(f"wrote the audit-scale section of {DOC}")
    finally:
        for cl in (with_cl, without_cl):
            if cl is not None:
                cl.destroy()
    log(f"total run time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
