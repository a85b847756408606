#!/usr/bin/env bash
# Runs schemathesis (PyPI) with every check against a live `zerotrace server` and the OpenAPI
# document it generates, and prints its summary (failures by kind, with the requests that
# reproduce them).
#
#   bench/schemathesis.sh [MAX_EXAMPLES] [-- SCHEMATHESIS ARGS...]
#
# The server runs on a fresh SQLite store in a temporary directory with one company (its
# admin token, an enrolled agent and a report) and per-address limits off (schemathesis
# sends many bad credentials on purpose). Requests carry the operator token. Needs
# schemathesis (`.ci/run` installs the pinned version). CI runs a short, seeded campaign of the
# same (crates/zerotrace/tests/schemathesis.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${1:-50}"
shift || true
[ "${1:-}" = "--" ] && shift
command -v schemathesis >/dev/null 2>&1 || { echo "schemathesis is missing: python3 -m pip install schemathesis" >&2; exit 2; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/zerotrace-target}"
cargo build --quiet --bin zerotrace
bin="$CARGO_TARGET_DIR/debug/zerotrace"
work=$(mktemp -d)
admin="zto_schemathesis-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
ZEROTRACE_ADMIN_TOKEN="$admin" "$bin" --data-dir "$work" server --listen 127.0.0.1:0 \
  --rate-auth-failures 0 --rate-enroll 0 --rate-company 0 --rate-agent 0 --rate-company-users 0 \
  > "$work/server.out" 2> "$work/server.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  url=$(sed -n 's/^listening on //p' "$work/server.out")
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "${url:-}" ] || { echo "server did not start:"; cat "$work/server.log"; exit 1; }

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
company=$(curl -sf -H "Authorization: Bearer $admin" -H 'content-type: application/json' \
  -d '{"name":"Schemathesis Corp"}' "$url/api/v1/companies")
secret=$(echo "$company" | json '["enroll_secret"]')
agent=$(curl -sf -H 'content-type: application/json' \
  -d "{\"enroll_secret\":\"$secret\",\"hostname\":\"web-1\",\"os\":{\"id\":\"debian\",\"version_id\":\"12\"},\"arch\":\"x86_64\"}" \
  "$url/api/v1/enroll" | json '["agent_token"]')
curl -sf -o /dev/null -H "Authorization: Bearer $agent" -H 'content-type: application/json' \
  -d "{\"report_id\":\"$(python3 -c 'import uuid;print(uuid.uuid4())')\",\"collected_at\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"host\":{\"hostname\":\"web-1\",\"os\":{\"id\":\"debian\",\"version_id\":\"12\",\"name\":\"Debian\"},\"arch\":\"x86_64\"},\"apps\":[{\"name\":\"openssl\",\"version\":\"3.0.11-1~deb12u1\",\"source\":\"dpkg\"}]}" \
  "$url/api/v1/inventory"

# The configuration (the cursor format's hooks, the operations that may refuse schema-valid
# data and why) is the CI test's: crates/zerotrace/tests/schemathesis/.
config=crates/zerotrace/tests/schemathesis
PYTHONPATH="$PWD/$config" schemathesis --config-file "$config/schemathesis.toml" \
  run "$url/api/openapi.json" --checks all -H "Authorization: Bearer $admin" \
  --max-examples "$examples" --workers 2 --phases examples,coverage,fuzzing \
  --no-color "$@"
