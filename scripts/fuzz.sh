#!/usr/bin/env bash
# Fuzzes the parsers that take input from outside (fuzz/fuzz_targets): the tracking API's
# envelope and event validation, the audience text syntax and its JSON form. Each target runs
# for FUZZ_SECONDS (default 60) from the seeds in fuzz/corpus, on the nightly toolchain with
# cargo-fuzz (libFuzzer, AddressSanitizer). A crash fails the run; its input is kept in
# fuzz/artifacts/TARGET/ (replay it with `cargo +nightly fuzz run TARGET FILE`).
#
# The mutations follow FUZZ_SEED (default 1), so that a run on the same code explores the
# same inputs and CI does not turn red by chance on a change that has nothing to do with a
# parser; FUZZ_SEED=0 draws a new seed each run, for the long runs that look further.
#
#   bash scripts/fuzz.sh                                # one minute per target, seed 1
#   FUZZ_SECONDS=3600 FUZZ_SEED=0 bash scripts/fuzz.sh  # an hour per target, random
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
SEED=${FUZZ_SEED:-1}
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzzing needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi

cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
  # The fuzzer adds what it finds to its corpus: a copy, so the checkout stays as it is.
  corpus=$(mktemp -d)
  cp fuzz/corpus/"$target"/* "$corpus"/
  echo "== $target for ${SECONDS_EACH} s" >&2
  set +e
  cargo +nightly fuzz run "$target" "$corpus" -- \
    -max_total_time="$SECONDS_EACH" -seed="$SEED" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 \
    | grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|panicked|ERROR|SUMMARY|left:|right:|artifact|error' >&2
  status=${PIPESTATUS[0]}
  set -e
  rm -rf "$corpus"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
