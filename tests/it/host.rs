//! The host collector against what /proc says.

use std::time::Duration;

use crate::harness::*;

fn meminfo_kib(key: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn host_values_match_proc() {
    let d = Daemon::start(&["--no-gpu", "--host.interval", "200ms"]);
    let mut body = String::new();
    assert!(wait_for(Duration::from_secs(10), || {
        body = d.scrape();
        value(&body, "host_cpu_utilization_ratio", &[]).is_some()
    }));
    let cpu = value(&body, "host_cpu_utilization_ratio", &[]).unwrap();
    assert!((0.0..=1.0).contains(&cpu), "{cpu}");
    assert_eq!(
        value(&body, "host_memory_total_bytes", &[]),
        Some(meminfo_kib("MemTotal") * 1024.0)
    );
    let used = value(&body, "host_memory_used_bytes", &[]).unwrap();
    let total = meminfo_kib("MemTotal") * 1024.0;
    let available_now = meminfo_kib("MemAvailable") * 1024.0;
    // Used is total minus available, sampled a moment ago: within 5% of total.
    assert!(
        ((total - available_now) - used).abs() < total * 0.05,
        "{used} vs {}",
        total - available_now
    );
    let load1: f64 = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let got = value(&body, "host_load1", &[]).unwrap();
    assert!((got - load1).abs() < 2.0, "{got} vs {load1}");
    assert!(value(
        &body,
        "gpu_train_exporter_collector_duration_seconds",
        &[("collector", "host")]
    )
    .is_some());
    assert!(!body.contains("gpu_train_exporter_nvml_up"));
}
