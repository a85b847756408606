#!/usr/bin/env bash
# Runs every `cargo fuzz` target of the workspace (crates/*/fuzz) for a time budget each and
# prints, per target, the executions, the executions per second and the crashes found.
#
#   bench/fuzz.sh [SECONDS_PER_TARGET] [FILTER...]
#
# SECONDS_PER_TARGET defaults to 600 (issue 17: every target at least 10 minutes). Each FILTER
# keeps the targets whose "crate/target" name contains it (e.g. `zt-version/`); with several,
# a target runs when any of them matches (e.g. `zt-feeds/ zt-sbom/cyclonedx`).
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# Corpora stay in each crate's fuzz/corpus/<target> (not committed); a crash is saved by
# libFuzzer in fuzz/artifacts/<target>/ and named in the summary; reproduce it with
# `cargo +nightly fuzz run <target> <artifact>` in the crate and turn it into a regression
# test of the crate before fixing it.
set -euo pipefail
cd "$(dirname "$0")/.."

budget="${1:-600}"
filters=("${@:2}")
command -v cargo-fuzz >/dev/null 2>&1 || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 2; }
rustup toolchain list | grep -q '^nightly' || { echo "the nightly toolchain is missing: rustup toolchain install nightly" >&2; exit 2; }
# Fuzz builds get their own target directory (sanitizer flags rebuild everything).
export CARGO_TARGET_DIR="${ZT_FUZZ_TARGET_DIR:-/var/tmp/zerotrace-fuzz-target}"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

printf '%-34s %8s %14s %10s %8s\n' target seconds executions exec/s crashes
total_crashes=0
broken=0
for dir in crates/*/fuzz; do
  crate=$(basename "$(dirname "$dir")")
  for target in $(cd "$dir" && cargo +nightly fuzz list 2>/dev/null); do
    name="$crate/$target"
    if [ "${#filters[@]}" -gt 0 ]; then
      keep=0
      for f in "${filters[@]}"; do [[ "$name" == *"$f"* ]] && keep=1; done
      [ "$keep" -eq 1 ] || continue
    fi
    log="$logs/${crate}_${target}.log"
    mkdir -p "$dir/corpus/$target"
    # Built first, so that the budget is fuzzing time.
    if ! (cd "$dir" && cargo +nightly fuzz build "$target") >"$log" 2>&1; then
      echo "  $name: the build failed:" >&2
      tail -20 "$log" >&2
      broken=$(( broken + 1 ))
      continue
    fi
    # -max_total_time bounds the run; each crash stops it early (a second run would go on
    # from the saved corpus, so the loop below keeps fuzzing until the budget is spent).
    start=$(date +%s)
    crashes=0
    execs=0
    while :; do
      now=$(date +%s)
      left=$(( budget - (now - start) ))
      [ "$left" -gt 0 ] || break
      set +e
      (cd "$dir" && cargo +nightly fuzz run "$target" -- -max_total_time="$left" -print_final_stats=1) >"$log" 2>&1
      rc=$?
      set -e
      n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
      execs=$(( execs + ${n:-0} ))
      if [ "$rc" -ne 0 ]; then
        if grep -q "Test unit written to" "$log"; then
          crashes=$(( crashes + 1 ))
          grep -m1 "Test unit written to" "$log" | sed "s|^|  $name: |" >&2
          grep -m3 -E "panicked|ERROR: " "$log" | sed "s|^|    |" >&2 || true
        else
          echo "  $name: the run failed (rc $rc):" >&2
          tail -20 "$log" >&2
          broken=$(( broken + 1 ))
          break
        fi
      else
        break
      fi
    done
    secs=$(( $(date +%s) - start ))
    rate=$(( secs > 0 ? execs / secs : 0 ))
    total_crashes=$(( total_crashes + crashes ))
    printf '%-34s %8d %14d %10d %8d\n' "$name" "$secs" "$execs" "$rate" "$crashes"
  done
done
echo "crashes: $total_crashes, targets that did not run: $broken"
[ "$total_crashes" -eq 0 ] && [ "$broken" -eq 0 ]
