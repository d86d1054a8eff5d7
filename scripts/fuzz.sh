#!/usr/bin/env bash
# Runs every cargo-fuzz target with the libFuzzer arguments given, e.g.
#   scripts/fuzz.sh -runs=100000 -seed=1       (bounded smoke run, as in make test)
#   scripts/fuzz.sh -max_total_time=300        (long run)
# `--sanitizer none` builds on the stable toolchain. Fails, with the fuzzer's report, on the
# first target that finds a crash or a broken invariant.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
for target in $(cargo fuzz list); do
  log=$(mktemp)
  if cargo fuzz run --sanitizer none -O "$target" -- "$@" >"$log" 2>&1; then
    echo "fuzz $target: $(grep -E '^Done [0-9]+ runs' "$log" | tail -1)"
    rm -f "$log"
  else
    tail -40 "$log"
    echo "fuzz $target: FAILED (artifacts in fuzz/artifacts/$target)"
    exit 1
  fi
done
