#!/usr/bin/env bash
# Type-checks the extension against PostgreSQL 13-18 without their headers, using the
# bindings pgrx-pg-sys ships pregenerated (its docs.rs mode). The GitHub matrix
# (.github/workflows/ci.yml) builds and tests each version for real; this catches API
# differences on a machine that has only PostgreSQL 15.
set -euo pipefail
cd "$(dirname "$0")/../.."
INC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/pgrx-pg-sys-0.18.1/src/include | head -1)
status=0
for v in 13 14 15 16 17 18; do
  args=(check --no-default-features --features "pg$v pg_test" --target-dir target/versions)
  # First pass creates the build directory (and fails for lack of pg_config)...
  DOCS_RS=1 cargo "${args[@]}" >/dev/null 2>&1 || true
  for out in target/versions/debug/build/pgrx-pg-sys-*/out; do
    if grep -qs "pg$v" "$out/../output" 2>/dev/null || [ ! -f "$out/pg$v.rs" ]; then
      cp "$INC/pg$v.rs" "$INC/pg${v}_oids.rs" "$out/"
    fi
  done
  # ...the second type-checks against the shipped bindings.
  # (Output captured first: with pipefail, `cargo | grep` in an `if` would read a
  # failing cargo as "no match".)
  out_text=$(DOCS_RS=1 cargo "${args[@]}" 2>&1) && rc=0 || rc=$?
  if [ "$rc" != 0 ] || grep -qE "^(error|warning)" <<<"$out_text"; then
    grep -E "^(error|warning)" -A8 <<<"$out_text" || tail -20 <<<"$out_text"
    echo "pg$v: FAILED"; status=1
  else
    echo "pg$v: ok"
  fi
done
exit $status
