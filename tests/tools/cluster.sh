#!/usr/bin/env bash
# Scratch PostgreSQL 15 clusters for the demo and the benchmark.
#   cluster.sh start DIR [CONF_LINE...]   initdb + start on a free loopback port; prints the port
#   cluster.sh stop DIR                   stop it (the directory stays)
# Clusters run as the unprivileged OS user "postgres" (PostgreSQL refuses root), with
# the socket in DIR, and RUST_BACKTRACE unset so errors carry no Rust backtrace.
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/${PG_MAJOR:-15}/bin}
RUNAS=${MIGSAFE_RUNAS:-postgres}
as_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$RUNAS" -- env -u RUST_BACKTRACE "$@"; else env -u RUST_BACKTRACE "$@"; fi
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
cmd=${1:?usage: cluster.sh start|stop DIR}; dir=${2:?DIR}
shift 2
case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown "$RUNAS" "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_user "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    port=$(free_port)
    {
      echo "port = $port"
      echo "listen_addresses = '127.0.0.1'"
      echo "unix_socket_directories = '$dir'"
      echo "fsync = off"
      for line in "$@"; do echo "$line"; done
    } > "$dir/data/postgresql.auto.conf.migsafe"
    # Our settings go in an included file so a restart with other settings is one edit.
    grep -q "include_if_exists = 'migsafe_scratch.conf'" "$dir/data/postgresql.conf" \
      || echo "include_if_exists = 'migsafe_scratch.conf'" >> "$dir/data/postgresql.conf"
    mv "$dir/data/postgresql.auto.conf.migsafe" "$dir/data/migsafe_scratch.conf"
    if [ "$(id -u)" = 0 ]; then chown "$RUNAS" "$dir/data/migsafe_scratch.conf"; fi
    as_user "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
      || { tail -20 "$dir/server.log" >&2; exit 1; }
    echo "$port" > "$dir/port"
    echo "$port"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_user "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    ;;
  *) echo "usage: cluster.sh start|stop DIR [CONF_LINE...]" >&2; exit 2 ;;
esac
