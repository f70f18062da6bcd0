#!/usr/bin/env bash
# Release artefacts for one PostgreSQL major (docs/ci.md#getting-pg_migsafe-into-ci):
#   dist/pg_migsafe-<version>-pg<N>-<arch>.tar.gz     the installed files, relative to /
#   dist/postgresql-<N>-pg-migsafe_<version>-1_<arch>.deb
# built with `cargo pgrx package` (a release build) against $PG_CONFIG. The release
# workflow (.github/workflows/release.yml) runs `make package PG_MAJOR=N` for each major;
# tests/integration/test_package.py installs what this makes into a copy of the server's
# tree and runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
FEATURES=${PG_FEATURE:-pg$PG_MAJOR}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
OUT=target/package/pg$PG_MAJOR
DIST=${DIST:-dist}

rm -rf "$OUT"
profile=()
[ -n "${PACKAGE_DEBUG:-}" ] && profile=(--debug)   # the tests package the debug build
cargo pgrx package "${profile[@]}" --pg-config "$PG_CONFIG" --no-default-features --features "$FEATURES" \
  --out-dir "$OUT/root"
root="$OUT/root"
[ -f "$root$("$PG_CONFIG" --pkglibdir)/pg_migsafe.so" ] || { echo "package: no pg_migsafe.so in $root" >&2; exit 1; }
mkdir -p "$DIST"
tarball="$DIST/pg_migsafe-$VERSION-pg$PG_MAJOR-$ARCH.tar.gz"
# Owned by root, no timestamps of the build machine: the same files give the same tarball.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='1970-01-01 00:00Z' \
    -C "$root" -czf "$tarball" usr

deb="$DIST/postgresql-$PG_MAJOR-pg-migsafe_$VERSION-1_$ARCH.deb"
staging="$OUT/deb"
mkdir -p "$staging/DEBIAN"
cp -a "$root/usr" "$staging/"
size=$(du -sk "$staging/usr" | cut -f1)
cat > "$staging/DEBIAN/control" <<CONTROL
Package: postgresql-$PG_MAJOR-pg-migsafe
Version: $VERSION-1
Architecture: $ARCH
Maintainer: pg_migsafe developers <pg-migsafe@users.noreply.github.com>
Depends: postgresql-$PG_MAJOR, libc6
Installed-Size: $size
Section: database
Priority: optional
Homepage: https://github.com/pg-migsafe/pg_migsafe
Description: refuses destructive DDL in PostgreSQL $PG_MAJOR unless an approval covers it
 pg_migsafe is a PostgreSQL extension: a ProcessUtility hook refuses destructive
 DDL unless a two-phase approval covers it, warns about risky DDL, and records
 every migration statement in a hash-chained audit log. Load it with
 shared_preload_libraries = 'pg_migsafe', then CREATE EXTENSION pg_migsafe.
CONTROL
dpkg-deb --root-owner-group --build "$staging" "$deb" >/dev/null
echo "package: $tarball"
echo "package: $deb"
