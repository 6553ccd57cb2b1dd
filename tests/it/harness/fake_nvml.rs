//! The fake NVML library (`tests/fake-nvml`) for the tests and the benchmarks: where its
//! build for the running profile lies (built on demand), and the fake machines it is told to
//! simulate, as the JSON the library reads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::root;

/// The fake library of the running profile (`debug` for the tests, `release` for the
/// benchmarks), built by `cargo build --workspace`. When it is missing or older than its
/// source, it is built into a target dir of its own, since the running `cargo test` or
/// `cargo bench` holds the lock on the main one.
pub fn fake_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let src = root().join("tests/fake-nvml/src/lib.rs");
        let src_time = std::fs::metadata(&src).unwrap().modified().unwrap();
        let fresh = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= src_time)
        };
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let built = profile_dir.join("libfake_nvml.so");
        if fresh(&built) {
            return built;
        }
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let target = root().join("target/fake-nvml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "fake-nvml", "--target-dir"])
            .arg(&target)
            .current_dir(root());
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p fake-nvml");
        assert!(status.success(), "cargo build -p fake-nvml failed");
        target
            .join(if release { "release" } else { "debug" })
            .join("libfake_nvml.so")
    })
    .clone()
}

/// The UUID of GPU `i`.
pub fn uuid(i: usize) -> String {
    format!("GPU-{i:08x}-1111-2222-3333-444455556666")
}

/// GPU `i` of the 8-GPU machine: every value distinct per GPU.
pub fn gpu(i: usize, links: usize) -> Value {
    json!({
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": uuid(i),
        "pci_bus_id": format!("00000000:{:02X}:00.0", 0x18 + i),
        "utilization_gpu": 10 + i,
        "utilization_memory": 20 + i,
        "memory_total": 85_520_809_984u64,
        "memory_used": 1_000_000_000u64 * (i as u64 + 1),
        "memory_reserved": 500_000_000u64,
        "power_mw": 300_000 + i * 1_000,
        "power_limit_mw": 700_000,
        "energy_mj": 5_000_000u64 * (i as u64 + 1),
        "temperature_c": 40 + i,
        "memory_temperature_c": 50 + 2 * i,
        "sm_clock_mhz": 1_900 + i,
        "sm_clock_max_mhz": 1_980 + 10 * i,
        "mem_clock_mhz": 2_619,
        "pcie_tx_bytes": 1_000_000u64 + i as u64,
        "pcie_rx_bytes": 2_000_000u64 + i as u64,
        "pcie_replays": 7 * i,
        "nvlinks": (0..links).map(|l| json!({
            "tx_kib": 1000 * i + l,
            "rx_kib": 500_000 + 1000 * i + l,
            "errors": {"crc_flit": 10 * i + l, "crc_data": l, "replay": i, "recovery": 0},
        })).collect::<Vec<_>>(),
        // NVSwitch fabric registered; GPU 5 reports degraded bandwidth (health mask fields:
        // 2 = no, 1 = yes; incorrect configuration 1 = none)
        "fabric": {
            "state": 3,
            "status": 0,
            "health_mask": (if i == 5 { 1 } else { 2 }) | 2 << 2 | 2 << 4 | 2 << 6 | 1 << 8,
            "health_summary": if i == 5 { 3 } else { 1 },
        },
        // GPU 4: the driver asks for a GPU reset
        "recovery_action": if i == 4 { 1 } else { 0 },
        "ecc_corrected": i,
        "ecc_uncorrected": 0,
        "remapped_correctable": i,
        "remapped_uncorrectable": 1,
        "remap_pending": i == 2,
        "clock_event_reasons": if i == 3 { 0x4 | 0x40 } else { 0 },
        "violations_ns": {
            "power": 1_500_000_000u64 * i as u64,
            "thermal": 250_000_000u64 + i as u64,
            "sync_boost": 0,
            "board_limit": 0,
            "low_utilization": 3_000_000_000u64,
            "reliability": 0,
        },
    })
}

/// A machine of `n` such GPUs with `links` NVLinks each, driver 550.54.15.
pub fn machine(n: usize, links: usize) -> Value {
    json!({
        "driver_version": "550.54.15",
        "gpus": (0..n).map(|i| gpu(i, links)).collect::<Vec<_>>(),
    })
}
