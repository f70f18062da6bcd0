"""The release artefacts (issue #13, docs/ci.md): `make package` builds a tarball and a
.deb for the PostgreSQL major; both hold the same files, the .deb's metadata names the
server it is for, and what they install runs: their files are laid over a copy of the
installed server's tree (without pg_migsafe), and a cluster of that copy, with only the
packaged files, loads pg_migsafe, creates the extension and refuses a DROP TABLE.

The test packages the debug build (`PACKAGE_DEBUG=1`, seconds after `make install`);
the release workflow packages the release build the same way."""
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from pgcluster import PGBIN, RUNAS, Cluster

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PG_CONFIG = os.path.join(PGBIN, "pg_config")

pytestmark = [
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb builds the .deb"),
    # A package installs into the system's PostgreSQL paths, not into an unpacked tree.
    pytest.mark.skipif(not PGBIN.startswith("/usr/lib/postgresql/"), reason="packages are for a system PostgreSQL"),
]


def cfg(what):
    return subprocess.run([PG_CONFIG, what], capture_output=True, text=True, check=True).stdout.strip()


def version():
    for line in open(os.path.join(ROOT, "Cargo.toml")):
        if line.startswith("version = "):
            return line.split('"')[1]


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    major = cfg("--version").split()[1].split(".")[0]
    env = dict(os.environ, DIST=str(dist), PACKAGE_DEBUG="1", PG_MAJOR=major, PG_CONFIG=PG_CONFIG)
    r = subprocess.run(["bash", "tests/tools/package.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    tgz = dist / f"pg_migsafe-{version()}-pg{major}-{arch}.tar.gz"
    deb = dist / f"postgresql-{major}-pg-migsafe_{version()}-1_{arch}.deb"
    assert tgz.exists() and deb.exists(), list(dist.iterdir())
    return major, tgz, deb


def files_of_tar(tgz):
    with tarfile.open(tgz) as t:
        return sorted("/" + m.name for m in t.getmembers() if m.isfile())


def files_of_deb(deb):
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[-1].lstrip(".") for line in out.splitlines() if line.startswith("-"))


def test_tarball_and_deb_hold_the_same_files(artefacts):
    major, tgz, deb = artefacts
    files = files_of_tar(tgz)
    assert files == files_of_deb(deb)
    ext = cfg("--sharedir") + "/extension"
    assert f"{cfg('--pkglibdir')}/pg_migsafe.so" in files
    assert f"{ext}/pg_migsafe.control" in files
    assert f"{ext}/pg_migsafe--{version()}.sql" in files
    # Every upgrade script of the repository, so that ALTER EXTENSION … UPDATE works.
    for f in os.listdir(os.path.join(ROOT, "sql")):
        if f.startswith("pg_migsafe--") and f.endswith(".sql"):
            assert f"{ext}/{f}" in files, f
    with tarfile.open(tgz) as t:
        assert {(m.uid, m.gid) for m in t.getmembers()} == {(0, 0)}


def test_deb_metadata(artefacts):
    major, _, deb = artefacts
    field = lambda f: subprocess.run(["dpkg-deb", "-f", str(deb), f], capture_output=True, text=True,
                                     check=True).stdout.strip()
    assert field("Package") == f"postgresql-{major}-pg-migsafe"
    assert field("Version") == f"{version()}-1"
    assert f"postgresql-{major}" in field("Depends")


def test_the_packaged_files_run(artefacts):
    """A copy of the server's tree, pg_migsafe's installed files removed, the tarball
    laid over it: PostgreSQL finds its lib and share directories relative to its
    binaries, so the cluster runs the packaged files and nothing else."""
    major, tgz, deb = artefacts
    # Where the server's OS user can reach it (pytest's own tmp_path is root's alone).
    base = tempfile.mkdtemp(prefix="migsafe-pkg-", dir=os.environ.get("MIGSAFE_TEST_TMP", tempfile.gettempdir()))
    os.chmod(base, 0o755)
    root = pathlib.Path(base) / "root"
    libdir = os.path.dirname(PGBIN)                       # /usr/lib/postgresql/N
    for src in (libdir, cfg("--sharedir")):
        shutil.copytree(src, str(root) + src, symlinks=True)
    for d in (str(root) + cfg("--pkglibdir"), str(root) + cfg("--sharedir") + "/extension"):
        for f in os.listdir(d):
            if f.startswith("pg_migsafe"):
                os.remove(os.path.join(d, f))
    with tarfile.open(tgz) as t:
        t.extractall(root, filter="tar")
    c = Cluster("package", bindir=str(root) + PGBIN)
    try:
        with c.connect() as conn:
            conn.execute("CREATE EXTENSION pg_migsafe")
            assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_migsafe'").fetchone()[0] == version()
            so = conn.execute("SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'").fetchone()[0]
            assert so == str(root) + cfg("--pkglibdir")
            conn.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
            try:
                conn.execute("DROP TABLE t")
                raise AssertionError("DROP TABLE was not refused")
            except Exception as e:
                assert getattr(e, "sqlstate", None) == "MS001", e
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        c.destroy()
        shutil.rmtree(base, ignore_errors=True)
