#!/usr/bin/env bash
# Checks the GPU collector against nvidia-smi on a machine with a real NVIDIA GPU: builds the
# daemon (release) unless GTE_BIN is set, then runs scripts/gpu-check.py, which compares
# /metrics with nvidia-smi per GPU and metric, under load when torch is installed (see its
# header for every check and tolerance). Prints PASS, FAIL, SKIP or WARN per check; exits 0
# when nothing failed, 1 when a check failed, 2 when it cannot run. Takes well under 5
# minutes (most of it the build).
#
# Environment: GTE_BIN=path skips the build; NVML_LIBRARY=path is passed as --nvml-library;
# PORT (default 19842); GTE_CHECK_WINDOW (seconds, default 10); GTE_CHECK_LOAD=0 (no load).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "cannot run: nvidia-smi not found (this check needs an NVIDIA GPU and driver)"
    exit 2
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "cannot run: python3 not found"
    exit 2
fi
if [[ -z ${GTE_BIN:-} ]]; then
    cargo build --release --locked --bin gpu-train-exporter
    export GTE_BIN=target/release/gpu-train-exporter
fi
exec python3 scripts/gpu-check.py
