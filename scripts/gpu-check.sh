#!/usr/bin/env bash
# Checks the GPU collector against nvidia-smi on a machine with a real NVIDIA GPU.
#
# Builds the daemon (release), runs it on a loopback port, and compares its /metrics with
# `nvidia-smi --query-gpu=...` for every GPU: memory used and total, utilisation,
# temperature and power, each within a tolerance. Prints PASS or FAIL per metric and GPU;
# exits 0 when all pass, 1 when one fails, 2 when it cannot run. Takes well under 5 minutes
# (most of it the build).
#
# Environment: GTE_BIN=path skips the build and uses that binary; NVML_LIBRARY=path is
# passed as --nvml-library; PORT (default 19842).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "cannot run: nvidia-smi not found (this check needs an NVIDIA GPU and driver)"
    exit 2
fi
if ! command -v curl >/dev/null 2>&1; then
    echo "cannot run: curl not found"
    exit 2
fi

bin=${GTE_BIN:-}
if [[ -z $bin ]]; then
    cargo build --release --locked --bin gpu-train-exporter
    bin=target/release/gpu-train-exporter
fi
port=${PORT:-19842}
args=(--web.listen-address "127.0.0.1:$port" --no-host --gpu.interval 500ms)
if [[ -n ${NVML_LIBRARY:-} ]]; then
    args+=(--nvml-library "$NVML_LIBRARY")
fi

stderr=$(mktemp)
"$bin" "${args[@]}" 2>"$stderr" &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$stderr"
}
trap cleanup EXIT

for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; then
        break
    fi
    sleep 0.1
done
# Let a few sampling cycles pass, then read both sides as close together as we can.
sleep 2
metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
smi=$(nvidia-smi --query-gpu=index,memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw \
    --format=csv,noheader,nounits)

# value NAME GPU: the sample of NAME for that GPU index, empty if absent.
value() {
    awk -v name="$1" -v gpu="$2" '
        index($0, name "{") == 1 && index($0, "gpu=\"" gpu "\"") { print $NF; exit }
    ' <<<"$metrics"
}

up=$(awk '$1 == "gpu_train_exporter_nvml_up" { print $2 }' <<<"$metrics")
if [[ $up != 1 ]]; then
    echo "FAIL nvml_up: gpu_train_exporter_nvml_up=${up:-absent}"
    cat "$stderr"
    exit 1
fi

failed=0
# check LABEL GPU SMI_VALUE EXPORTER_VALUE TOLERANCE: PASS if |a-b| <= tolerance.
check() {
    local label=$1 gpu=$2 smi_v=$3 ours=$4 tol=$5
    if [[ -z $ours ]]; then
        echo "FAIL gpu$gpu $label: nvidia-smi=$smi_v exporter=absent"
        failed=1
        return
    fi
    if [[ $smi_v == *"N/A"* || $smi_v == *"Not Supported"* ]]; then
        echo "SKIP gpu$gpu $label: nvidia-smi reports $smi_v (exporter=$ours)"
        return
    fi
    if awk -v a="$smi_v" -v b="$ours" -v t="$tol" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; then
        echo "PASS gpu$gpu $label: nvidia-smi=$smi_v exporter=$ours (tolerance $tol)"
    else
        echo "FAIL gpu$gpu $label: nvidia-smi=$smi_v exporter=$ours (tolerance $tol)"
        failed=1
    fi
}

mib() { awk -v b="$1" 'BEGIN { if (b == "") exit; printf "%.1f", b / 1048576 }'; }
scaled() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "") exit; printf "%.2f", v * f }'; }

while IFS=', ' read -r idx mem_used mem_total util temp power; do
    total_mib=$(mib "$(value gpu_memory_total_bytes "$idx")")
    used_mib=$(mib "$(value gpu_memory_used_bytes "$idx")")
    # memory.used: 0.5% of total or 64 MiB (allocations move between the two reads)
    check memory.used "$idx" "$mem_used" "$used_mib" \
        "$(awk -v t="$mem_total" 'BEGIN { print (t * 0.005 > 64 ? t * 0.005 : 64) }')"
    check memory.total "$idx" "$mem_total" "$total_mib" 1
    check utilization.gpu "$idx" "$util" "$(scaled "$(value gpu_utilization_ratio "$idx")" 100)" 10
    check temperature.gpu "$idx" "$temp" "$(value gpu_temperature_celsius "$idx")" 3
    # power.draw: 10% or 15 W, whichever is larger (the sampling windows differ)
    check power.draw "$idx" "$power" "$(value gpu_power_watts "$idx")" \
        "$(awk -v p="$power" 'BEGIN { t = p * 0.1; print (t > 15 ? t : 15) }')"
done <<<"$smi"

if [[ $failed != 0 ]]; then
    echo "gpu-check: FAIL"
    exit 1
fi
echo "gpu-check: PASS"
