#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (real promtool,
# amtool, Prometheus, Alertmanager and Chromium where a test needs them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
cargo test --workspace --locked
