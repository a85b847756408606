#!/usr/bin/env bash
# Scale benchmark: starts a release `zerotrace server` on a fresh store (SQLite by default, or
# PostgreSQL with --postgres URL), loads the shared OSV data into its knowledge base, runs
# `zerotrace loadgen` with the remaining arguments, prints the figures and cleans up.
#
#   bench/run.sh [--postgres postgres://postgres@127.0.0.1:5432/postgres [--citus]] [--server-arg ARG]... [--janitor] [--keep] [--copies N --read-requests R] -- LOADGEN ARGS...
#   bench/run.sh -- --companies 10 --agents-per-company 100 --apps-per-agent 100 --format json
#
# With --copies N, after the loadgen the server is stopped, every company is copied N-1 times
# in the database (bench/clone_fleet.py: the fleet the pipeline built, multiplied), the server
# started again and the dashboard's reads measured (`loadgen --reads-only`, R requests per
# call). With --janitor, after the loadgen (and copies) the server is stopped and the janitor
# benchmark (crates/zt-store/benches/janitor.rs) times its transactions on the loaded store.
#
# With --citus, --postgres names a Citus coordinator's admin database (citus extension, workers
# added): the bench database is created on the coordinator and on every worker it lists, with the
# extension and the workers added, so that the server creates its schema distributed (README.md,
# "On Citus"). Give `--server-arg` options as usual (e.g. the database's --partitions).
#
# With --keep, the store (the database or the data directory) is kept at the end and its
# location printed with the operator token: to look at plans on it (bench/slow_reads_pg.sh), or
# to measure again with `zerotrace loadgen --reads-only` against a server started on it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/zerotrace-target}"

pg_admin_url=""
server_args=()
janitor=0
copies=1
read_requests=50
citus=0
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) pg_admin_url="$2"; shift 2 ;;
    --server-arg) server_args+=("$2"); shift 2 ;;
    --janitor) janitor=1; shift ;;
    --copies) copies="$2"; shift 2 ;;
    --read-requests) read_requests="$2"; shift 2 ;;
    --citus) citus=1; shift ;;
    --keep) keep=1; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done

# ZEROTRACE_BIN=path uses that binary instead of building the release one.
if [ -n "${ZEROTRACE_BIN:-}" ]; then
  bin="$ZEROTRACE_BIN"
else
  cargo build --release -q -p zerotrace
  bin="$CARGO_TARGET_DIR/release/zerotrace"
fi
if [ "$janitor" = 1 ]; then
  cargo bench -q -p zt-store --bench janitor --no-run 2>/dev/null
fi
work=$(mktemp -d /tmp/zerotrace-bench.XXXXXX)
token="zto_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export ZEROTRACE_ADMIN_TOKEN="$token"
db_args=(--data-dir "$work")
dbname=""
server_pid=""
worker_urls=()
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  if [ "$keep" = 1 ]; then
    echo "kept the store: ${db_args[*]} (operator token $token)" >&2
    return
  fi
  if [ -n "$dbname" ]; then
    for node_url in "${worker_urls[@]}"; do
      psql -q "$node_url" -c "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" >/dev/null 2>&1 || true
    done
    psql -q "$pg_admin_url" -c "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "$pg_admin_url" ]; then
  dbname="zt_bench_$$"
  psql -q "$pg_admin_url" -c "CREATE DATABASE $dbname" >/dev/null 2>&1
  query=""
  case "$pg_admin_url" in *\?*) query="?${pg_admin_url#*\?}" ;; esac
  db_url="${pg_admin_url%/*}/$dbname$query"
  if [ "$citus" = 1 ]; then
    # The workers as the coordinator knows them, reached as the same user.
    user=$(psql -Atq "$pg_admin_url" -c "SELECT current_user")
    while IFS='|' read -r host port; do
      worker_urls+=("postgresql://$user@$host:$port/postgres$query")
    done < <(psql -Atq "$pg_admin_url" -c "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary'")
    for node_url in "${worker_urls[@]}"; do
      psql -q "$node_url" -c "CREATE DATABASE $dbname" >/dev/null 2>&1
      psql -q "${node_url%/*}/$dbname$query" -c "CREATE EXTENSION citus" >/dev/null
    done
    psql -q "$db_url" -c "CREATE EXTENSION citus" >/dev/null
    read -r chost cport < <(psql -Atq "$pg_admin_url" -F ' ' -c "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid = 0")
    psql -q "$db_url" -c "SELECT citus_set_coordinator_host('$chost', $cport)" >/dev/null
    for node_url in "${worker_urls[@]}"; do
      hp="${node_url#*@}"; hp="${hp%%/*}"
      psql -q "$db_url" -c "SELECT citus_add_node('${hp%:*}', ${hp##*:})" >/dev/null
    done
    echo "bench database $dbname on the coordinator and ${#worker_urls[@]} worker(s)" >&2
  fi
  db_args=(--database-url "$db_url")
fi

data="$root/../shared/data"
if [ -d "$data/osv" ]; then
  echo "importing the shared OSV data into the knowledge base..." >&2
  ZEROTRACE_LOG=warn "$bin" "${db_args[@]}" feeds import "$data/osv" >&2
else
  echo "warning: $data/osv not found: the server runs with an empty knowledge base" >&2
fi

# --offline: the knowledge is the imported shared data, never a sync in the middle of a run;
# --rate-enroll 0: the simulated fleet enrolls from one address.
start_server() {
  : > "$work/server.out"
  "$bin" "${db_args[@]}" server --listen 127.0.0.1:0 --offline --rate-enroll 0 "${server_args[@]}" \
    > "$work/server.out" 2>> "$work/server.log" &
  server_pid=$!
  url=""
  for _ in $(seq 1 600); do
    url=$(sed -n 's/^listening on //p' "$work/server.out")
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "${url:-}" ] || { echo "server did not start:"; cat "$work/server.log"; exit 1; }
  echo "server at $url (log: $work/server.log)" >&2
}
start_server

status=0
ZEROTRACE_BENCH_SERVER_PID="$server_pid" \
  "$bin" loadgen --server "$url" --admin-token "$token" "$@" || status=$?
# The server's own cost of the run: CPU seconds (user+system) and peak memory.
read -r utime stime < <(awk '{print $14, $15}' "/proc/$server_pid/stat")
ticks=$(getconf CLK_TCK)
hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$server_pid/status")
echo "server: cpu $(( (utime + stime) / ticks )) s, peak rss ${hwm} MiB" >&2
if [ "$copies" -gt 1 ]; then
  kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  server_pid=""
  echo "copying every company $((copies - 1)) times..." >&2
  if [ -n "$dbname" ]; then
    python3 bench/clone_fleet.py --postgres "${pg_admin_url%/*}/$dbname" --copies "$copies"
  else
    python3 bench/clone_fleet.py --sqlite "$work/zerotrace.db" --copies "$copies"
  fi
  start_server
  "$bin" loadgen --server "$url" --admin-token "$token" --reads-only \
    --read-requests "$read_requests" --read-concurrency 4 || status=$?
fi
if [ "$janitor" = 1 ]; then
  kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  server_pid=""
  if [ -n "$dbname" ]; then
    export ZT_BENCH_PG_URL="${pg_admin_url%/*}/$dbname"
  else
    export ZT_BENCH_SQLITE="$work/zerotrace.db"
  fi
  cargo bench -q -p zt-store --bench janitor
fi
exit "$status"
