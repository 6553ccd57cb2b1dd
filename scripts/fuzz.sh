#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for N seconds each (default 30): with `cargo fuzz`
# (libFuzzer, coverage-guided; needs a nightly toolchain and `cargo install cargo-fuzz`)
# where it is available, else with the stable mutation run of tests/it/fuzz.rs.
# New inputs go to a scratch directory; fuzz/corpus/ stays small (add a crash by hand).
# Exits non-zero on the first crash.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
targets=(clean mapping tqdm line_parser config web_config)
if cargo +nightly fuzz --version >/dev/null 2>&1; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  (cd fuzz && cargo +nightly fuzz build -O)
  for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "== $t: cargo fuzz, ${secs}s"
    (cd fuzz && cargo +nightly fuzz run -O "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  done
else
  echo "cargo fuzz (nightly) not available: running the stable mutation fuzzer"
  FUZZ_SECONDS=$secs cargo test --locked --test tests fuzz:: -- --nocapture
fi
