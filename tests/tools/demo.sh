#!/usr/bin/env bash
# `make demo`: a scratch cluster with pg_migsafe preloaded, a database "demo", and the
# scripted demo in sql/demo.sql. The cluster keeps running; `make demo-stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
cmd=${1:?start|stop}; dir=${2:?DIR}
case "$cmd" in
  start)
    bash tests/tools/cluster.sh stop "$dir" 2>/dev/null || true
    rm -rf "$dir"
    port=$(bash tests/tools/cluster.sh start "$dir" "shared_preload_libraries = 'pg_migsafe'")
    psql -X -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE demo" postgres
    echo
    echo "=== pg_migsafe demo (sql/demo.sql) on 127.0.0.1:$port ==="
    echo
    psql -X -a -h 127.0.0.1 -p "$port" -U postgres demo < sql/demo.sql 2>&1 || true
    echo
    echo "The demo cluster is running. Connect with:"
    echo "    psql -h 127.0.0.1 -p $port -U postgres demo"
    echo "Server log: $dir/server.log    Stop it with: make demo-stop"
    ;;
  stop)
    bash tests/tools/cluster.sh stop "$dir"
    echo "demo cluster stopped"
    ;;
  *) echo "usage: demo.sh start|stop DIR" >&2; exit 2 ;;
esac
