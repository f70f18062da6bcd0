"""Scratch PostgreSQL clusters for the integration tests.

Each cluster lives in its own directory, runs as the unprivileged OS user `postgres`
(PostgreSQL refuses root) on a free loopback port, with its socket in its directory.
Settings under test go into an included file, changed with `configure()` + reload.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg

PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
RUNAS = os.environ.get("MIGSAFE_RUNAS", "postgres")


def pg_config(flag, bindir=None):
    """What the server's pg_config says (`--sharedir`, `--version`, …)."""
    r = subprocess.run([os.path.join(bindir or PGBIN, "pg_config"), flag], capture_output=True, text=True)
    return r.stdout.strip()


SHAREDIR = pg_config("--sharedir")
# The major version under test (`make test PG_MAJOR=17` runs the suites on another tree).
PG_MAJOR = int(pg_config("--version").split()[1].split(".")[0] or 15)


def has_extension(name):
    """Is extension `name` installed for the server under test (Debian's packages are
    for the Debian server only)?"""
    return os.path.exists(os.path.join(SHAREDIR, "extension", f"{name}.control"))


def _as_user(args, **kw):
    env = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"}
    if os.geteuid() == 0:
        args = ["runuser", "-u", RUNAS, "--"] + args
    return subprocess.run(args, env=env, capture_output=True, text=True, **kw)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Notice:
    """A copy of a notice's fields (psycopg's Diagnostic is only valid in the callback)."""

    def __init__(self, d):
        self.severity = d.severity_nonlocalized
        self.sqlstate = d.sqlstate
        self.message_primary = d.message_primary
        self.message_detail = d.message_detail
        self.message_hint = d.message_hint

    def __repr__(self):
        return f"{self.severity} {self.sqlstate}: {self.message_primary}"


# `pg_migsafe_bug` lines found in the logs of destroyed clusters.
BUGS = []


class Cluster:
    def __init__(self, name, preload="pg_migsafe", settings=None, bindir=None):
        self.name = name
        # The server's binaries: the installed server's, or another tree (a package
        # under test, another PostgreSQL major).
        self.bin = bindir or PGBIN
        base = os.environ.get("MIGSAFE_TEST_TMP", tempfile.gettempdir())
        self.dir = tempfile.mkdtemp(prefix=f"migsafe-{name}-", dir=base)
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, RUNAS)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = None
        self.preload = preload
        self.settings = dict(settings or {})
        r = _as_user([f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stdout}{r.stderr}")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("include_if_exists = 'migsafe_test.conf'\n")
        self.start()

    def _write_conf(self):
        lines = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.dir}'",
            "fsync = off",
            "synchronous_commit = off",
            "max_connections = 60",
            # One audit writer per database with recent DDL: the suites use many.
            "max_worker_processes = 40",
        ]
        if self.preload:
            lines += ["migsafe.audit_databases = 32", "migsafe.audit_worker_idle = 2"]
        if self.preload:
            lines.append(f"shared_preload_libraries = '{self.preload}'")
        for k, v in self.settings.items():
            lines.append(f"{k} = {v}")
        path = os.path.join(self.data, "migsafe_test.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            shutil.chown(path, RUNAS)

    def start(self):
        self.port = free_port()
        self._write_conf()
        r = _as_user([f"{self.bin}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start"])
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{self.log_text()[-3000:]}")

    def stop(self):
        _as_user([f"{self.bin}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])

    def restart(self, preload=None):
        self.stop()
        if preload is not None:
            self.preload = preload
        self.start()

    def destroy(self):
        self.stop()
        # A Rust panic in pg_migsafe is a bug even when pgrx turns it into an ERROR
        # (src/bugs.rs logs it); conftest fails the session on any.
        BUGS.extend(f"{self.name}: {line}" for line in self.log_text().splitlines()
                    if line.startswith("pg_migsafe_bug "))
        if os.environ.get("MIGSAFE_KEEP_CLUSTERS"):  # debugging: keep data dirs and logs
            print(f"kept {self.dir}")
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def dsn(self, dbname="postgres", user="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"

    def connect(self, dbname="postgres", user="postgres", autocommit=True, **kw):
        conn = psycopg.connect(self.dsn(dbname, user), autocommit=autocommit, **kw)
        conn.notices = []
        conn.add_notice_handler(lambda d: conn.notices.append(Notice(d)))
        return conn

    def configure(self, **settings):
        """Sets migsafe.* (or other SIGHUP) settings in the config file and reloads.
        A value of None removes the setting."""
        for k, v in settings.items():
            key = k.replace("__", ".")
            if v is None:
                self.settings.pop(key, None)
            else:
                self.settings[key] = v
        self._write_conf()
        with self.connect() as c:
            c.execute("SELECT pg_reload_conf()")
        # The postmaster re-reads the file asynchronously; wait until new sessions see it.
        want = {k.replace("__", "."): v for k, v in settings.items()}
        deadline = time.time() + 10
        while time.time() < deadline:
            with self.connect() as c:
                ok = True
                for key, v in want.items():
                    got = c.execute(f"SELECT current_setting('{key}', true)").fetchone()[0]
                    expect = None if v is None else str(v).strip("'")
                    if expect is not None and got != expect:
                        ok = False
                if ok:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"settings {settings} not visible after reload")

    def createdb(self, name, owner="postgres", extension=True):
        with self.connect() as c:
            c.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        if extension:
            with self.connect(name) as c:
                c.execute("CREATE EXTENSION pg_migsafe")
        return name
