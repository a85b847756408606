#!/usr/bin/env bash
# Dashboard page loads: starts `zerotrace server` on a fresh SQLite store (or PostgreSQL with
# --postgres URL), imports vulnerability data, fills it with `zerotrace loadgen` (the remaining
# arguments), signs in as the operator through POST /api/v1/session and times every view of
# the dashboard as a browser gets it (the server-rendered HTML, with the session cookie): the
# overview, hosts (first page, a later page, sorted by risk, searched), a host, software,
# vulnerabilities, a vulnerability, findings, and the operator's overview. Prints p50/p95/max
# per view over --rounds requests each.
#
#   bench/dashboard.sh [--postgres ADMIN_URL] [--rounds N] [--feeds PATH] -- LOADGEN ARGS...
#   bench/dashboard.sh -- --companies 1 --agents-per-company 10000 --apps-per-agent 20 --concurrency 32
#
# ZEROTRACE_BIN=path uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/zerotrace-target}"

pg_admin_url=""
rounds=20
feeds="$root/../shared/data/osv/pypa"
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) pg_admin_url="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --feeds) feeds="$2"; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done

if [ -n "${ZEROTRACE_BIN:-}" ]; then
  bin="$ZEROTRACE_BIN"
else
  cargo build --release -q -p zerotrace
  bin="$CARGO_TARGET_DIR/release/zerotrace"
fi
work=$(mktemp -d /tmp/zerotrace-dash-bench.XXXXXX)
token="zto_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export ZEROTRACE_ADMIN_TOKEN="$token"
db_args=(--data-dir "$work")
dbname=""
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  if [ -n "$dbname" ]; then
    psql -q "$pg_admin_url" -c "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "$pg_admin_url" ]; then
  dbname="zt_dash_bench_$$"
  psql -q "$pg_admin_url" -c "CREATE DATABASE $dbname" >/dev/null
  db_args=(--database-url "${pg_admin_url%/*}/$dbname")
fi
if [ -e "$feeds" ]; then
  echo "importing $feeds..." >&2
  ZEROTRACE_LOG=warn "$bin" "${db_args[@]}" feeds import "$feeds" >&2
fi

"$bin" "${db_args[@]}" server --listen 127.0.0.1:0 --offline --rate-company 0 \
  > "$work/server.out" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 1 600); do
  url=$(sed -n 's/^listening on //p' "$work/server.out")
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "${url:-}" ] || { echo "server did not start:"; cat "$work/server.log"; exit 1; }
echo "server at $url" >&2

"$bin" loadgen --server "$url" --admin-token "$token" "$@" >&2

# Sign in as a browser does; the cookie is all the pages get.
cookie=$(curl -s -D - -o /dev/null -H 'content-type: application/json' \
  -d "{\"token\":\"$token\"}" "$url/api/v1/session" \
  | sed -n 's/^[Ss]et-[Cc]ookie: \(zt_session=[^;]*\).*/\1/p')
[ -n "$cookie" ] || { echo "sign-in failed"; exit 1; }
api() { curl -sf -H "authorization: Bearer $token" "$url$1"; }
company=$(api /api/v1/companies | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -1)
riskiest=$(api "/api/v1/companies/$company/agents?sort=risk&limit=1")
agent=$(echo "$riskiest" | sed -n 's/.*"agent_id":"\([^"]*\)".*/\1/p' | head -1)
hostname=$(echo "$riskiest" | sed -n 's/.*"hostname":"\([^"]*\)".*/\1/p' | head -1)
hosts_cursor=$(api "/api/v1/companies/$company/agents?limit=50" | sed -n 's/.*"next_cursor":"\([^"]*\)".*/\1/p')
vuln=$(api "/api/v1/companies/$company/vulnerabilities?sort=hosts&limit=1" | sed -n 's/^{"items":\[{"id":"\([^"]*\)".*/\1/p')
agents=$(api "/api/v1/companies/$company/summary" | sed -n 's/.*"agents":\([0-9]*\).*/\1/p')
echo "company $company: $agents hosts; timing $rounds requests per view" >&2

c="/c/$company"
views=(
  "overview|$c"
  "overview 90 days|$c?days=90"
  "hosts|$c/hosts"
  "hosts page 2|$c/hosts?cursor=$hosts_cursor"
  "hosts by risk|$c/hosts?sort=risk"
  "hosts search|$c/hosts?q=$hostname"
  "host|$c/hosts/$agent"
  "software|$c/software"
  "vulnerabilities|$c/vulnerabilities"
  "vulnerability|$c/vulnerabilities/$vuln"
  "findings|$c/findings"
  "findings by epss|$c/findings?sort=epss"
  "operator|/operator"
)
printf '%-20s %8s %8s %8s %8s\n' view p50_ms p95_ms max_ms bytes
for entry in "${views[@]}"; do
  name=${entry%%|*}
  path=${entry#*|}
  times=()
  bytes=0
  for _ in $(seq 1 "$rounds"); do
    out=$(curl -s -o /dev/null -w '%{http_code} %{time_total} %{size_download}' \
      -H "cookie: $cookie" "$url$path")
    read -r code t size <<<"$out"
    [ "$code" = 200 ] || { echo "$name: HTTP $code for $path" >&2; exit 1; }
    times+=("$t")
    bytes=$size
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v name="$name" -v bytes="$bytes" '
    { t[NR] = $1 * 1000 }
    END {
      p50 = t[int((NR + 1) * 0.5)]; p95 = t[int(NR * 0.95 + 0.5)]; if (p95 == "") p95 = t[NR]
      printf "%-20s %8.1f %8.1f %8.1f %8d\n", name, p50, p95, t[NR], bytes
    }'
done
