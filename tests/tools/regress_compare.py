#!/usr/bin/env python3
"""PostgreSQL's own regression suite, with pg_migsafe (warn mode) and without.

    python3 tests/tools/regress_compare.py [--parallel] [--plain-runs 1] [--tests a b ...]

(`make regress-compare` runs it with the defaults.) Steps:

1. Source: PostgreSQL's src/test/regress of exactly the installed server's Debian
   version (`dpkg-query -W postgresql-15`), from Debian's source package
   (`apt-get source --download-only postgresql-15=VERSION`; apt checks the files
   against the signed Sources index). A private apt configuration adds `deb-src`
   lines for the Debian mirrors the system's `deb` lines already use, so the
   system's apt configuration is not changed. Cached in target/regress-src/VERSION/.
2. regress.so (src/test/regress/regress.c, the C functions many tests create) is
   built with PGXS against the installed server headers; autoinc.so and refint.so
   (contrib/spi, used by `triggers`) are the server's own, linked beside it.
3. Two scratch clusters (as OS user postgres, free loopback ports, under
   target/migsafe-tmp/regress-compare): "plain" without pg_migsafe, and "migsafe" with
   shared_preload_libraries = 'pg_migsafe' and migsafe.mode = 'warn', where pg_regress
   creates the test database with --load-extension=pg_migsafe (CREATE EXTENSION right
   after CREATE DATABASE, before the first test). Otherwise the clusters are configured
   identically. pg_regress runs parallel_schedule against each, one test at a time as
   `make installcheck` does (--parallel: each group's tests at once, as
   installcheck-parallel; this also exercises concurrent DDL). The runs follow each other.
   A second fresh plain cluster runs it again (--plain-runs 1 skips that): a file whose
   output differs between the two plain runs is nondeterministic on this machine and is
   reported as such instead of being blamed on pg_migsafe.
4. Each test's results/NAME.out is compared between the runs, after removing
   pg_migsafe's own messages from both: WARNING/NOTICE lines whose message starts with
   "pg_migsafe" or with one of its rule ids (migsafe.rules()), and the DETAIL/HINT/
   CONTEXT lines of such a message. Exit status 1 when a compared file differs.

Nothing here is excluded because pg_migsafe changes it: EXCLUDED lists only files whose
output is nondeterministic without pg_migsafe, and even those are compared and shown.
One kind of difference is explained rather than failed, after checking every line of it:
catalog-wide queries that list every function of a kind (opr_sanity lists SECURITY
DEFINER functions) list the extension's own functions — they exist because the
extension was created, not because the hook changed anything. A diff counts as that
only if each of its changed lines is a result row naming one of the functions of schema
migsafe, a result header or separator, or a row count.
"""
import argparse
import difflib
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUNAS = os.environ.get("MIGSAFE_RUNAS", "postgres")
PG_MAJOR = os.environ.get("PG_MAJOR", "15")

# Test files whose output is not reproducible between two runs of the same server, with
# or without pg_migsafe. They are still run, compared and printed, but do not fail the
# comparison. Only add a file after seeing it differ between two plain runs
# (--plain-runs 2), never because pg_migsafe changes it.
EXCLUDED = {
    # The schedule itself says `ignore: random`: it checks that random() is random.
    "random": "schedule marks it `ignore:`; random() output",
}


def only_own_objects(diff, own):
    """Is every changed line of a unified diff a result row naming one of the
    extension's own functions, a header/separator of such a result, or a row count?"""
    changed = [l[1:] for l in diff if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    if not changed:
        return False
    row = re.compile(r"^\s*\d+ \| (\S+)\s*$")
    for l in changed:
        m = row.match(l)
        if m and m.group(1) in own:
            continue
        if re.match(r"^\s*oid\s*\|\s*proname\s*$", l) or re.match(r"^-+\+-+$", l) or re.match(r"^\(\d+ rows?\)$", l):
            continue
        return False
    return True


def log(msg):
    print(msg, flush=True)


def run(args, check=True, as_user=False, **kw):
    env = kw.pop("env", None) or dict(os.environ)
    env.pop("RUST_BACKTRACE", None)
    if as_user and os.geteuid() == 0:
        args = ["runuser", "-u", RUNAS, "--"] + list(args)
    r = subprocess.run(args, env=env, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(args)}\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r


def chown_tree(path):
    if os.geteuid() != 0:
        return
    for d, dirs, files in os.walk(path):
        shutil.chown(d, RUNAS)
        for f in files:
            shutil.chown(os.path.join(d, f), RUNAS)


def make_world_readable(path):
    """The server (running as postgres) reads data/ and loads regress.so from the cache."""
    for d, dirs, files in os.walk(path):
        os.chmod(d, os.stat(d).st_mode | 0o555)
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444)
    p = os.path.dirname(os.path.abspath(path))
    while p != "/":  # and the way there
        if os.stat(p).st_uid == os.geteuid():
            os.chmod(p, os.stat(p).st_mode | 0o005)
        p = os.path.dirname(p)


# ---------------------------------------------------------------- source + regress.so

def installed_version():
    r = run(["dpkg-query", "-W", "-f=${Version}", f"postgresql-{PG_MAJOR}"])
    return r.stdout.strip()


def debian_deb_entries():
    """(uri, suites, components, signed_by) of the system's enabled Debian `deb` sources."""
    out = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            text = f.read()
        for para in re.split(r"\n\s*\n", text):
            fields = {}
            for line in para.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                continue
            signed = fields.get("signed-by", "")
            if "debian-archive-keyring" not in signed and "/debian" not in fields.get("uris", ""):
                continue
            for uri in fields.get("uris", "").split():
                out.append((uri, fields.get("suites", ""), fields.get("components", "main"), signed))
    lists = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in lists:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                m = re.match(r"\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
                if m and "/debian" in m.group(2):
                    signed = ""
                    if m.group(1):
                        sm = re.search(r"signed-by=(\S+?)\]?(\s|$)", m.group(1))
                        signed = sm.group(1).rstrip("]") if sm else ""
                    out.append((m.group(2), m.group(3), m.group(4).strip(), signed))
    return out


def fetch_orig_tarball(version, work):
    """apt-get source --download-only, with deb-src lines added in a private apt dir."""
    apt = os.path.join(work, "apt")
    for d in ("lists/partial", "cache/archives/partial", "parts"):
        os.makedirs(os.path.join(apt, d), exist_ok=True)
    entries = debian_deb_entries()
    if not entries:
        raise SystemExit("no Debian `deb` source in /etc/apt to derive a deb-src line from")
    with open(os.path.join(apt, "parts", "debsrc.sources"), "w") as f:
        for uri, suites, comps, signed in entries:
            f.write(f"Types: deb-src\nURIs: {uri}\nSuites: {suites}\nComponents: {comps}\n")
            if signed:
                f.write(f"Signed-By: {signed}\n")
            f.write("\n")
    opts = ["-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={apt}/parts",
            "-o", f"Dir::State::Lists={apt}/lists",
            "-o", f"Dir::Cache={apt}/cache",
            "-o", "APT::Sandbox::User=root"]
    log(f"regress-src: apt-get update (deb-src of {', '.join(sorted({e[0] for e in entries}))})")
    run(["apt-get", *opts, "-q", "update"], check=False)
    dl = os.path.join(work, "download")
    os.makedirs(dl, exist_ok=True)
    log(f"regress-src: apt-get source --download-only postgresql-{PG_MAJOR}={version}")
    r = run(["apt-get", *opts, "-q", "source", "--download-only", f"postgresql-{PG_MAJOR}={version}"],
            check=False, cwd=dl)
    if r.returncode != 0:
        raise SystemExit(f"apt-get source failed: the mirror may no longer carry {version}\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    origs = glob.glob(os.path.join(dl, f"postgresql-{PG_MAJOR}_*.orig.tar.*"))
    debs = glob.glob(os.path.join(dl, f"postgresql-{PG_MAJOR}_*.debian.tar.*"))
    if not origs:
        raise SystemExit(f"no orig tarball in {dl}")
    return origs[0], (debs[0] if debs else None)


def ensure_source(cache_root, pg_config):
    version = installed_version()
    cache = os.path.join(cache_root, version)
    regress = os.path.join(cache, "regress")
    libdir = os.path.join(cache, "lib")
    stamp = os.path.join(cache, ".complete")
    if os.path.exists(stamp):
        return version, regress, libdir
    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(cache)
    orig, debian = fetch_orig_tarball(version, cache)
    upstream = version.split("-")[0]
    prefix = f"postgresql-{upstream}/src/test/regress/"
    log(f"regress-src: extracting {prefix} from {os.path.basename(orig)}")
    with tarfile.open(orig) as t:
        members = [m for m in t if m.name.startswith(prefix)]
        for m in members:
            m.name = m.name[len(prefix):]
        members = [m for m in members if m.name]
        t.extractall(regress, members=members, filter="data")
    if debian:
        # Debian's patches (debian/patches/*) change paths and defaults, not the tests;
        # say so loudly if a future version patches src/test/regress.
        with tarfile.open(debian) as t:
            for m in t:
                if m.isfile() and m.name.startswith("debian/patches/"):
                    body = t.extractfile(m).read().decode(errors="replace")
                    if "src/test/regress/" in body:
                        log(f"regress-src: WARNING: {m.name} patches src/test/regress (not applied)")
    # regress.so: built with PGXS against the installed server headers.
    build = os.path.join(cache, "build")
    os.makedirs(build)
    shutil.copy(os.path.join(regress, "regress.c"), build)
    with open(os.path.join(build, "Makefile"), "w") as f:
        f.write("MODULES = regress\nPGXS := $(shell $(PG_CONFIG) --pgxs)\ninclude $(PGXS)\n")
    log("regress-src: building regress.so with PGXS")
    run(["make", "-C", build, f"PG_CONFIG={pg_config}", "with_llvm=no"])
    os.makedirs(libdir)
    shutil.copy(os.path.join(build, "regress.so"), libdir)
    pkglib = run([pg_config, "--pkglibdir"]).stdout.strip()
    for mod in ("autoinc", "refint"):  # contrib/spi, loaded by the `triggers` test
        os.symlink(os.path.join(pkglib, mod + ".so"), os.path.join(libdir, mod + ".so"))
    for f in glob.glob(os.path.join(cache, "download", "*.orig.tar.*")):
        os.remove(f)  # the extracted tests are all we keep
    shutil.rmtree(os.path.join(cache, "apt"), ignore_errors=True)
    make_world_readable(cache)
    with open(stamp, "w") as f:
        f.write(version + "\n")
    return version, regress, libdir


# ---------------------------------------------------------------- clusters + pg_regress

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    def __init__(self, base, name, pgbin, extra):
        self.dir = os.path.join(base, name)
        self.data = os.path.join(self.dir, "data")
        self.pgbin = pgbin
        self.name = name
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        chown_tree(self.dir)
        run([f"{pgbin}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync"], as_user=True)
        self.port = free_port()
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\n# regress_compare.py\nport = {self.port}\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.dir}'\n"
                    "fsync = off\n")
            for line in extra:
                f.write(line + "\n")
        self.log = os.path.join(self.dir, "server.log")
        run([f"{pgbin}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start"],
            as_user=True)

    def stop(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            run([f"{self.pgbin}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"],
                as_user=True, check=False)

    def psql(self, db, sql):
        r = run([f"{self.pgbin}/psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", "postgres", "-d", db, "-c", sql], as_user=True, check=False)
        return r.stdout if r.returncode == 0 else None


def pg_regress(pg_regress_bin, cluster, regress, libdir, outdir, schedule, tests, extension, parallel):
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    chown_tree(outdir)
    args = [pg_regress_bin, f"--inputdir={regress}", f"--outputdir={outdir}",
            f"--bindir={cluster.pgbin}", f"--dlpath={libdir}",
            "--host=127.0.0.1", f"--port={cluster.port}", "--user=postgres",
            "--dbname=regression"]
    if extension:
        args.append(f"--load-extension={extension}")
    if not parallel:  # as `make installcheck`; installcheck-parallel runs the groups at once
        args.append("--max-connections=1")
    if tests:
        args += tests
    else:
        args.append(f"--schedule={schedule}")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k not in ("RUST_BACKTRACE",)}
    t0 = time.time()
    r = run(args, as_user=True, check=False, env=env, cwd=outdir)
    took = time.time() - t0
    with open(os.path.join(outdir, "pg_regress.log"), "w") as f:
        f.write(r.stdout + r.stderr)
    summary = [l for l in (r.stdout + r.stderr).splitlines() if "tests" in l and ("passed" in l or "failed" in l)]
    if not os.path.isdir(os.path.join(outdir, "results")):
        raise SystemExit(f"pg_regress produced no results ({cluster.name}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return took, (summary[-1].strip(" =") if summary else f"pg_regress exit {r.returncode}")


def schedule_tests(schedule, tests):
    if tests:
        return [(t, False) for t in tests]
    out = []
    with open(schedule) as f:
        for line in f:
            m = re.match(r"(test|ignore):\s*(.*)", line)
            if m:
                out += [(t, m.group(1) == "ignore") for t in m.group(2).split()]
    # `ignore: x` only marks a test that a later `test:` line runs
    ignored = {t for t, ign in out if ign}
    return [(t, t in ignored) for t, ign in out if not ign]


# ---------------------------------------------------------------- comparison

def migsafe_filter(rule_ids):
    ids = "|".join(re.escape(i) for i in sorted(rule_ids, key=len, reverse=True))
    # "pg_migsafe: drop-table on ...", or a message led by a rule id ("drop-table on ..."
    # / "drop-table: ..."); a bare word is not enough: PostgreSQL's own
    # "NOTICE:  truncate cascades to table ..." starts with the rule id `truncate`.
    head = re.compile(r"^(WARNING|NOTICE):  (pg_migsafe\b" + (f"|({ids})( on |: )" if ids else "") + ")")
    cont = re.compile(r"^(DETAIL|HINT|CONTEXT):  ")
    ctx_more = re.compile(r"^(PL/pgSQL function |SQL statement |SQL function |extension script file )")

    def strip(lines):
        out, removed, skipping, in_ctx = [], 0, False, False
        for line in lines:
            if head.match(line):
                skipping, in_ctx = True, False
                removed += 1
                continue
            if skipping and cont.match(line):
                in_ctx = line.startswith("CONTEXT:")
                removed += 1
                continue
            if skipping and in_ctx and ctx_more.match(line):
                removed += 1  # a multi-line CONTEXT (PL/pgSQL call stack)
                continue
            skipping = in_ctx = False
            out.append(line)
        return out, removed
    return strip


def read_out(outdir, test, normalize):
    path = os.path.join(outdir, "results", test + ".out")
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        text = f.read()
    for old, new in normalize:
        text = text.replace(old, new)
    return text.splitlines()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg-config", default=f"/usr/lib/postgresql/{PG_MAJOR}/bin/pg_config")
    ap.add_argument("--cache", default=os.path.join(ROOT, "target", "regress-src"))
    ap.add_argument("--tmp", default=os.environ.get("MIGSAFE_TEST_TMP", os.path.join(ROOT, "target", "migsafe-tmp")))
    ap.add_argument("--schedule", default="parallel_schedule", help="file in src/test/regress")
    ap.add_argument("--tests", nargs="+", help="run these tests (in order) instead of the schedule")
    ap.add_argument("--parallel", action="store_true",
                    help="run each schedule group's tests concurrently (installcheck-parallel); "
                         "default: one at a time (installcheck)")
    ap.add_argument("--plain-runs", type=int, default=2, choices=(1, 2),
                    help="2 (default): run the plain suite twice, on two fresh clusters, so that "
                         "files that differ without pg_migsafe are reported as nondeterministic")
    ap.add_argument("--max-diff-lines", type=int, default=80, help="per file, on stdout")
    ap.add_argument("--fetch-only", action="store_true", help="fetch + build the suite, run nothing")
    ap.add_argument("--keep", action="store_true", help="keep the clusters' data directories")
    args = ap.parse_args()

    t_start = time.time()
    pgbin = run([args.pg_config, "--bindir"]).stdout.strip()
    pgxs = run([args.pg_config, "--pgxs"]).stdout.strip()
    pg_regress_bin = os.path.join(os.path.dirname(pgxs), "..", "test", "regress", "pg_regress")
    pg_regress_bin = os.path.normpath(pg_regress_bin)
    version, regress, libdir = ensure_source(args.cache, args.pg_config)
    log(f"regress-src: PostgreSQL {version} suite in {regress}")
    if args.fetch_only:
        return 0
    schedule = os.path.join(regress, args.schedule)
    base = os.path.join(args.tmp, "regress-compare")
    os.makedirs(base, exist_ok=True)
    for p in (args.tmp, base):
        os.chmod(p, os.stat(p).st_mode | 0o755)
    if os.geteuid() == 0:
        shutil.chown(base, RUNAS)

    runs = [("plain", [], None), ("migsafe",
             ["shared_preload_libraries = 'pg_migsafe'", "migsafe.mode = 'warn'"], "pg_migsafe")]
    if args.plain_runs == 2:
        runs.insert(1, ("plain2", [], None))
    outdirs, rule_ids, own = {}, set(), set()
    for name, conf, ext in runs:
        cl = Cluster(base, name, pgbin, conf)
        try:
            out = os.path.join(base, name + ".out")
            log(f"{name}: pg_regress on port {cl.port} ({'CREATE EXTENSION pg_migsafe, migsafe.mode = warn' if ext else 'no pg_migsafe'})")
            took, summary = pg_regress(pg_regress_bin, cl, regress, libdir, out, schedule,
                                       args.tests, ext, args.parallel)
            log(f"{name}: {summary} vs. PostgreSQL's expected output, {took:.0f}s")
            outdirs[name] = out
            if ext:
                got = cl.psql("regression", "SELECT id FROM migsafe.rules()")
                if got is None:
                    raise SystemExit("migsafe.rules() failed in the regression database: was the extension created?")
                rule_ids = set(got.split())
                own = set((cl.psql("regression", "SELECT proname FROM pg_proc WHERE pronamespace = 'migsafe'::regnamespace") or "").split())
                mode = cl.psql("regression", "SHOW migsafe.mode")
                if (mode or "").strip() != "warn":
                    raise SystemExit(f"migsafe.mode is {mode!r}, not warn")
        finally:
            cl.stop()
            if not args.keep:
                shutil.rmtree(cl.data, ignore_errors=True)

    strip = migsafe_filter(rule_ids)
    tests = schedule_tests(schedule, args.tests)
    differing, unstable, excluded_diff, explained, removed_total = [], [], [], [], 0
    diff_path = os.path.join(base, "regress-compare.diffs")
    with open(diff_path, "w") as diffs:
        for test, ignored in tests:
            norm = lambda name: [(outdirs[name], "@outputdir@")]
            plain = read_out(outdirs["plain"], test, norm("plain"))
            mig = read_out(outdirs["migsafe"], test, norm("migsafe"))
            if plain is None or mig is None:
                status, d = "MISSING", [f"results/{test}.out missing in the {'plain' if plain is None else 'migsafe'} run"]
            else:
                plain, removed_plain = strip(plain)
                if removed_plain:  # the filter must only ever match pg_migsafe's lines
                    log(f"  note: the filter removed {removed_plain} lines from plain/{test}.out")
                mig, removed = strip(mig)
                removed_total += removed
                d = list(difflib.unified_diff(plain, mig, f"plain/{test}.out", f"migsafe/{test}.out", lineterm="", n=2))
                status = "differs" if d else "same"
            note = ""
            if status != "same" and "plain2" in outdirs:
                p2 = read_out(outdirs["plain2"], test, norm("plain2"))
                p1 = read_out(outdirs["plain"], test, norm("plain"))
                if p1 != p2:
                    note = " (also differs between two plain runs: nondeterministic)"
            reason = EXCLUDED.get(test) or ("schedule marks it `ignore:`" if ignored else None)
            if status == "same":
                log(f"  same     {test}")
                continue
            if status == "differs" and only_own_objects(d, own):
                label, bucket = "explained", explained
                note += " [lists the extension's own functions, nothing else]"
            elif reason:
                label, bucket = "excluded", excluded_diff
                note += f" [excluded: {reason}]"
            elif note:
                label, bucket = "unstable", unstable
            else:
                label, bucket = "DIFFERS", differing
            bucket.append(test)
            log(f"  {label:8} {test}{note}")
            diffs.write("\n".join(d) + "\n")
            if label in ("DIFFERS", "unstable", "explained"):
                shown = d[: args.max_diff_lines]
                log("\n".join("      " + l for l in shown))
                if len(d) > len(shown):
                    log(f"      ... {len(d) - len(shown)} more diff lines in {diff_path}")

    log("")
    log(f"regress-compare: {len(tests)} test files, {len(tests) - len(differing) - len(unstable) - len(excluded_diff) - len(explained)} same "
        f"after removing {removed_total} pg_migsafe message lines, {len(differing)} differ"
        + (f", {len(explained)} list the extension's own functions ({' '.join(explained)})" if explained else "")
        + (f", {len(unstable)} nondeterministic" if unstable else "")
        + (f", {len(excluded_diff)} excluded" if excluded_diff else ""))
    if differing:
        log("differing: " + " ".join(differing))
    log(f"full diffs: {diff_path}; outputs: {base}/*.out/results; took {time.time() - t_start:.0f}s")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
