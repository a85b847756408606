#!/usr/bin/env bash
# Runs schemathesis (PyPI) with every check against a live `zerotrace server` and the OpenAPI
# document it generates, and prints its summary (failures by kind, with the requests that
# reproduce them): the CI test (crates/zerotrace/tests/schemathesis.rs) with more examples.
#
#   bench/schemathesis.sh [MAX_EXAMPLES] [SEED] [-- SCHEMATHESIS ARGS...]
#
# The test makes the server (a fresh SQLite store with the GHSA sample advisories, one company
# with an agent, a report, an analysis, a rule and spares for the destroying operations, the
# per-address limits off) and gives schemathesis those ids and tokens; its configuration (the
# cursor format's hooks, the operations that may refuse schema-valid data and why, the event
# streams left out) is crates/zerotrace/tests/schemathesis/. Needs schemathesis (`.ci/run`
# installs the pinned version). Example: `bench/schemathesis.sh 100 7 -- --phases stateful`.
set -euo pipefail
cd "$(dirname "$0")/.."

examples=50
seed=$RANDOM
if [ $# -gt 0 ] && [ "$1" != "--" ]; then examples=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then seed=$1; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
command -v schemathesis >/dev/null 2>&1 || { echo "schemathesis is missing: python3 -m pip install schemathesis==4.32.5" >&2; exit 2; }
echo "schemathesis: $examples examples per operation, seed $seed"
ZT_SCHEMATHESIS_EXAMPLES="$examples" ZT_SCHEMATHESIS_SEED="$seed" ZT_SCHEMATHESIS_ARGS="$*" \
  cargo test --workspace --test schemathesis -- --nocapture
