//! The GPU collector end to end: the real daemon loads the fake NVML library
//! (`tests/fake-nvml`, found and described by `harness::fake_nvml`) whose devices and values
//! each test writes as JSON.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::fake_nvml::{fake_lib, machine, uuid};
use crate::harness::*;

const WAIT: Duration = Duration::from_secs(10);

/// A fake machine: its config file and the daemon reading it.
pub struct Fake {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The kernel log the daemon follows (`--gpu.kmsg`), empty at start.
    pub kmsg: PathBuf,
    pub daemon: Daemon,
}

impl Fake {
    pub fn start(cfg: &Value, args: &[&str]) -> Fake {
        Self::start_with(&fake_lib(), cfg, args, &[])
    }

    pub fn start_with(lib: &Path, cfg: &Value, args: &[&str], env: &[(&str, &str)]) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("fake-nvml.json");
        write_config(&config, cfg);
        let kmsg = dir.path().join("kmsg");
        std::fs::write(&kmsg, "").unwrap();
        let kmsg_s = kmsg.display().to_string();
        let lib = lib.display().to_string();
        let cfg_path = config.display().to_string();
        let mut all = vec![
            "--nvml-library",
            &lib,
            "--gpu.interval",
            "50ms",
            "--gpu.kmsg",
            &kmsg_s,
        ];
        all.extend_from_slice(args);
        let mut envs = vec![("FAKE_NVML_CONFIG", cfg_path.as_str())];
        envs.extend_from_slice(env);
        let daemon = Daemon::start_env(&all, &envs);
        Fake {
            dir,
            config,
            kmsg,
            daemon,
        }
    }

    /// The daemons' logs of several fakes (the nodes of a cluster test), one after another.
    pub fn stderr_of(nodes: &[Fake]) -> String {
        nodes
            .iter()
            .map(|f| f.daemon.stderr())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// Replaces the fake's config; the library notices within 20 ms.
    pub fn set(&self, cfg: &Value) {
        write_config(&self.config, cfg);
    }
}

/// Writes the config atomically so that the library never reads half a file.
fn write_config(path: &Path, cfg: &Value) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(cfg).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn labels<'a>(i: &'a str, u: &'a str) -> [(&'a str, &'a str); 2] {
    [("gpu", i), ("uuid", u)]
}

fn count(body: &str, name: &str) -> usize {
    samples(body, name).len()
}

#[test]
fn eight_gpus_with_eighteen_nvlinks_report_exact_values() {
    let f = Fake::start(&machine(8, 18), &["--no-host"]);
    let body = f.daemon.scrape();
    assert_eq!(value(&body, "gpu_train_exporter_nvml_up", &[]), Some(1.0));
    assert_eq!(
        value(
            &body,
            "gpu_train_exporter_collector_success",
            &[("collector", "gpu")]
        ),
        Some(1.0)
    );
    // the host collector is off: no series for it
    assert!(
        !body.contains("collector_success{collector=\"host\"}"),
        "{body}"
    );
    for i in 0..8usize {
        let (is, u) = (i.to_string(), uuid(i));
        let l = labels(&is, &u);
        let v = |name: &str| value(&body, name, &l);
        let bus = format!("00000000:{:02X}:00.0", 0x18 + i);
        assert_eq!(
            value(
                &body,
                "gpu_info",
                &[
                    ("gpu", &is),
                    ("uuid", &u),
                    ("name", "NVIDIA H100 80GB HBM3"),
                    ("pci_bus_id", &bus),
                    ("driver_version", "550.54.15"),
                ]
            ),
            Some(1.0),
            "gpu {i}"
        );
        let fi = i as f64;
        assert_eq!(v("gpu_up"), Some(1.0));
        assert_eq!(v("gpu_utilization_ratio"), Some((10.0 + fi) / 100.0));
        assert_eq!(v("gpu_memory_utilization_ratio"), Some((20.0 + fi) / 100.0));
        assert_eq!(v("gpu_memory_total_bytes"), Some(85_520_809_984.0));
        assert_eq!(v("gpu_memory_used_bytes"), Some(1e9 * (fi + 1.0)));
        assert_eq!(v("gpu_memory_reserved_bytes"), Some(5e8));
        assert_eq!(
            v("gpu_memory_free_bytes"),
            Some(85_520_809_984.0 - 1e9 * (fi + 1.0) - 5e8)
        );
        assert_eq!(v("gpu_power_watts"), Some(300.0 + fi));
        assert_eq!(v("gpu_power_limit_watts"), Some(700.0));
        assert_eq!(v("gpu_energy_joules_total"), Some(5000.0 * (fi + 1.0)));
        assert_eq!(v("gpu_temperature_celsius"), Some(40.0 + fi));
        assert_eq!(v("gpu_memory_temperature_celsius"), Some(50.0 + 2.0 * fi));
        assert_eq!(v("gpu_sm_clock_hertz"), Some((1900.0 + fi) * 1e6));
        assert_eq!(
            v("gpu_sm_clock_max_hertz"),
            Some((1980.0 + 10.0 * fi) * 1e6)
        );
        assert_eq!(v("gpu_memory_clock_hertz"), Some(2619e6));
        assert_eq!(v("gpu_pcie_transmit_bytes_total"), Some(1e6 + fi));
        assert_eq!(v("gpu_pcie_receive_bytes_total"), Some(2e6 + fi));
        assert_eq!(v("gpu_pcie_replay_errors_total"), Some(7.0 * fi));
        let typed =
            |name: &str, t: &str| value(&body, name, &[("gpu", &is), ("uuid", &u), ("type", t)]);
        assert_eq!(typed("gpu_ecc_errors_total", "corrected"), Some(fi));
        assert_eq!(typed("gpu_ecc_errors_total", "uncorrected"), Some(0.0));
        assert_eq!(typed("gpu_remapped_rows", "correctable"), Some(fi));
        assert_eq!(typed("gpu_remapped_rows", "uncorrectable"), Some(1.0));
        assert_eq!(
            v("gpu_remapped_rows_pending"),
            Some(if i == 2 { 1.0 } else { 0.0 })
        );
        assert_eq!(v("gpu_remapped_rows_failed"), Some(0.0));
        for (reason, on) in [
            ("sw_power_cap", i == 3),
            ("hw_thermal_slowdown", i == 3),
            ("hw_slowdown", false),
            ("gpu_idle", false),
        ] {
            assert_eq!(
                value(
                    &body,
                    "gpu_clock_event_active",
                    &[("gpu", &is), ("reason", reason)]
                ),
                Some(if on { 1.0 } else { 0.0 }),
                "gpu {i} {reason}"
            );
        }
        let viol = |reason: &str| {
            value(
                &body,
                "gpu_violation_seconds_total",
                &[("gpu", &is), ("uuid", &u), ("reason", reason)],
            )
        };
        assert_eq!(viol("power"), Some(1.5 * fi));
        assert_eq!(viol("thermal"), Some((250_000_000.0 + fi) / 1e9));
        assert_eq!(viol("low_utilization"), Some(3.0));
        assert_eq!(viol("reliability"), Some(0.0));
        for link in 0..18usize {
            let ls = link.to_string();
            let ll = [("gpu", is.as_str()), ("uuid", u.as_str()), ("link", &ls)];
            assert_eq!(
                value(&body, "gpu_nvlink_transmit_bytes_total", &ll),
                Some(((1000 * i + link) * 1024) as f64),
                "gpu {i} link {link}"
            );
            assert_eq!(
                value(&body, "gpu_nvlink_receive_bytes_total", &ll),
                Some(((500_000 + 1000 * i + link) * 1024) as f64),
                "gpu {i} link {link}"
            );
        }
    }
    // Link 3 reads link 3 (nvml-wrapper's own field reader would give link 0 everywhere).
    assert_eq!(
        value(
            &body,
            "gpu_nvlink_transmit_bytes_total",
            &[("gpu", "5"), ("link", "3")]
        ),
        Some(5003.0 * 1024.0)
    );
    // NVLink error counters per link and type.
    for (g, link) in [(0usize, 0usize), (3, 7), (7, 17)] {
        let (gs, ls, u) = (g.to_string(), link.to_string(), uuid(g));
        let err = |t: &str| {
            value(
                &body,
                "gpu_nvlink_errors_total",
                &[("gpu", &gs), ("uuid", &u), ("link", &ls), ("type", t)],
            )
        };
        assert_eq!(err("crc_flit"), Some((10 * g + link) as f64));
        assert_eq!(err("crc_data"), Some(link as f64));
        assert_eq!(err("replay"), Some(g as f64));
        assert_eq!(err("recovery"), Some(0.0));
    }
    assert_eq!(count(&body, "gpu_nvlink_errors_total"), 8 * 18 * 4);
    // Fabric: registered everywhere, GPU 5 with degraded bandwidth.
    for g in 0..8usize {
        let gs = g.to_string();
        let l = |k: &'static str, v: &'static str| [("gpu", gs.clone()), (k, v.to_string())];
        let get = |name: &str, k: &'static str, v: &'static str| {
            let l = l(k, v);
            let l: Vec<(&str, &str)> = l.iter().map(|(a, b)| (*a, b.as_str())).collect();
            value(&body, name, &l)
        };
        assert_eq!(get("gpu_fabric_state", "state", "completed"), Some(1.0));
        assert_eq!(get("gpu_fabric_state", "state", "in_progress"), Some(0.0));
        assert_eq!(
            get("gpu_fabric_health_issue", "issue", "degraded_bandwidth"),
            Some(if g == 5 { 1.0 } else { 0.0 })
        );
        assert_eq!(
            get("gpu_fabric_health_issue", "issue", "route_unhealthy"),
            Some(0.0)
        );
        assert_eq!(
            get(
                "gpu_fabric_health_issue",
                "issue",
                "incorrect_configuration"
            ),
            Some(0.0)
        );
        assert_eq!(
            value(&body, "gpu_fabric_registration_status", &[("gpu", &gs)]),
            Some(0.0)
        );
        assert_eq!(
            get("gpu_recovery_action", "action", "gpu_reset"),
            Some(if g == 4 { 1.0 } else { 0.0 })
        );
        assert_eq!(
            get("gpu_recovery_action", "action", "none"),
            Some(if g == 4 { 0.0 } else { 1.0 })
        );
    }
    assert_eq!(count(&body, "gpu_fabric_state"), 8 * 3);
    assert_eq!(count(&body, "gpu_fabric_health_issue"), 8 * 5);
    assert_eq!(count(&body, "gpu_recovery_action"), 8 * 5);
    assert_eq!(count(&body, "gpu_nvlink_transmit_bytes_total"), 8 * 18);
    assert_eq!(count(&body, "gpu_nvlink_receive_bytes_total"), 8 * 18);
    assert_eq!(count(&body, "gpu_clock_event_active"), 8 * 9);
    assert_eq!(count(&body, "gpu_violation_seconds_total"), 8 * 6);
    assert_eq!(count(&body, "gpu_up"), 8);
    for (labels, v) in samples(&body, "gpu_train_exporter_collector_errors_total") {
        assert_eq!(v, 0.0, "{labels:?}");
    }
    let d = value(
        &body,
        "gpu_train_exporter_collector_duration_seconds",
        &[("collector", "gpu")],
    )
    .unwrap();
    assert!(d > 0.0 && d < 1.0, "{d}");
    let now = unix_now();
    for i in 0..8 {
        let t = value(
            &body,
            "gpu_last_sample_timestamp_seconds",
            &[("gpu", &i.to_string()), ("uuid", &uuid(i))],
        )
        .unwrap();
        assert!((now - t).abs() < 5.0, "gpu {i}: {t} vs {now}");
    }
    assert_eq!(count(&body, "gpu_last_sample_timestamp_seconds"), 8);
    // Values follow the device: the next cycle reports the new value.
    let mut cfg = machine(8, 18);
    cfg["gpus"][6]["temperature_c"] = json!(83);
    f.set(&cfg);
    assert_eq!(
        f.daemon
            .wait_value("gpu_temperature_celsius", &[("gpu", "6")], 83.0, WAIT),
        Some(83.0)
    );
    if require_tool("promtool") {
        check_with_promtool(&f.daemon.scrape(), f.dir.path());
    }
}

fn check_with_promtool(body: &str, dir: &Path) {
    let path = dir.join("metrics.txt");
    std::fs::write(&path, body).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", path.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unsupported_and_failing_calls_leave_out_only_their_series() {
    let mut cfg = machine(2, 2);
    cfg["gpus"][0]["not_supported"] = json!([
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetMaxClockInfo",
        "nvmlDeviceGetPcieReplayCounter"
    ]);
    cfg["gpus"][1]["errors"] = json!({"nvmlDeviceGetTemperatureV": 999});
    // GPU 1 reports no reliability violation time: NOT_SUPPORTED for that policy only.
    cfg["gpus"][1]["violations_ns"]
        .as_object_mut()
        .unwrap()
        .remove("reliability");
    // No PCIe counters on GPU 1: the field answers NOT_SUPPORTED.
    cfg["gpus"][1]["memory_temperature_c"] = Value::Null;
    cfg["gpus"][1]["pcie_tx_bytes"] = Value::Null;
    // GPU 0 is on no NVSwitch fabric; GPU 1's driver knows version 2 of the fabric struct only.
    cfg["gpus"][0]["fabric"] = Value::Null;
    cfg["gpus"][1]["fabric"]["max_version"] = json!(2);
    // GPU 1's link 1 reports no replay counter.
    cfg["gpus"][1]["nvlinks"][1]["errors"]
        .as_object_mut()
        .unwrap()
        .remove("replay");
    let f = Fake::start(&cfg, &["--no-host"]);
    // Errors are counted every cycle; unsupported calls are probed once.
    let errors = |body: &str, call: &str| {
        value(
            body,
            "gpu_train_exporter_collector_errors_total",
            &[("collector", "gpu"), ("call", call)],
        )
    };
    assert!(wait_for(WAIT, || errors(
        &f.daemon.scrape(),
        "nvmlDeviceGetTemperatureV"
    )
    .is_some_and(|n| n >= 5.0)));
    let body = f.daemon.scrape();
    assert_eq!(errors(&body, "nvmlDeviceGetPowerUsage"), Some(0.0));
    assert_eq!(value(&body, "gpu_power_watts", &[("gpu", "0")]), None);
    assert_eq!(
        value(&body, "gpu_sm_clock_max_hertz", &[("gpu", "0")]),
        None
    );
    assert_eq!(
        value(&body, "gpu_sm_clock_max_hertz", &[("gpu", "1")]),
        Some(1990e6)
    );
    assert_eq!(errors(&body, "nvmlDeviceGetMaxClockInfo"), Some(0.0));
    assert_eq!(
        value(&body, "gpu_pcie_replay_errors_total", &[("gpu", "0")]),
        None
    );
    assert_eq!(
        value(&body, "gpu_pcie_replay_errors_total", &[("gpu", "1")]),
        Some(7.0)
    );
    assert_eq!(errors(&body, "nvmlDeviceGetPcieReplayCounter"), Some(0.0));
    let viol = |g: &str, reason: &str| {
        value(
            &body,
            "gpu_violation_seconds_total",
            &[("gpu", g), ("reason", reason)],
        )
    };
    assert_eq!(viol("1", "reliability"), None);
    assert_eq!(viol("0", "reliability"), Some(0.0));
    assert_eq!(viol("1", "power"), Some(1.5));
    assert_eq!(viol("1", "thermal"), Some(0.250_000_001));
    assert_eq!(errors(&body, "nvmlDeviceGetViolationStatus"), Some(0.0));
    assert_eq!(
        value(
            &body,
            "gpu_fabric_state",
            &[("gpu", "1"), ("state", "completed")]
        ),
        Some(1.0)
    );
    assert_eq!(count(&body, "gpu_fabric_state"), 3, "GPU 0 has none");
    assert_eq!(errors(&body, "nvmlDeviceGetGpuFabricInfoV"), Some(0.0));
    let nvlink_err = |link: &str, t: &str| {
        value(
            &body,
            "gpu_nvlink_errors_total",
            &[("gpu", "1"), ("link", link), ("type", t)],
        )
    };
    assert_eq!(nvlink_err("1", "replay"), None);
    assert_eq!(nvlink_err("1", "crc_flit"), Some(11.0));
    assert_eq!(nvlink_err("0", "replay"), Some(1.0));
    assert_eq!(errors(&body, "nvmlDeviceGetNvLinkErrorCounter"), Some(0.0));
    assert_eq!(
        value(&body, "gpu_memory_temperature_celsius", &[("gpu", "1")]),
        None
    );
    assert_eq!(
        value(&body, "gpu_memory_temperature_celsius", &[("gpu", "0")]),
        Some(50.0)
    );
    assert_eq!(errors(&body, "nvmlDeviceGetFieldValues"), Some(0.0));
    assert_eq!(
        value(&body, "gpu_power_watts", &[("gpu", "1")]),
        Some(301.0)
    );
    assert_eq!(
        value(&body, "gpu_temperature_celsius", &[("gpu", "0")]),
        Some(40.0)
    );
    assert_eq!(
        value(&body, "gpu_temperature_celsius", &[("gpu", "1")]),
        None
    );
    assert_eq!(
        value(&body, "gpu_pcie_transmit_bytes_total", &[("gpu", "1")]),
        None
    );
    assert_eq!(
        value(&body, "gpu_pcie_receive_bytes_total", &[("gpu", "1")]),
        Some(2e6 + 1.0)
    );
    for g in ["0", "1"] {
        assert_eq!(value(&body, "gpu_up", &[("gpu", g)]), Some(1.0));
        assert!(value(&body, "gpu_utilization_ratio", &[("gpu", g)]).is_some());
        assert!(value(&body, "gpu_energy_joules_total", &[("gpu", g)]).is_some());
    }
    let log = f.daemon.stderr();
    let power: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("nvmlDeviceGetPowerUsage"))
        .collect();
    assert_eq!(power.len(), 1, "{log}");
    assert!(power[0].contains("not available"), "{log}");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("nvmlDeviceGetTemperatureV"))
            .count(),
        1,
        "one warning, not one a second: {log}"
    );
}

/// A copy of the fake library whose dynamic symbol `sym` is renamed (its first letter
/// becomes `x`), so that the dynamic loader no longer finds it: what an older driver
/// lacking a function looks like to nvml-wrapper.
fn library_without(sym: &str, dir: &Path) -> PathBuf {
    library_without_all(&[sym], dir)
}

/// As [`library_without`], for every symbol of `syms`.
fn library_without_all(syms: &[&str], dir: &Path) -> PathBuf {
    let mut elf = std::fs::read(fake_lib()).unwrap();
    let (start, len) = dynstr(&elf).expect("fake library has a .dynstr section");
    for sym in syms {
        let needle = format!("\0{sym}\0");
        let at = elf[start..start + len]
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap_or_else(|| panic!("{sym} not exported"));
        elf[start + at + 1] = b'x';
    }
    let out = dir.join("libfake_nvml_partial.so");
    std::fs::write(&out, elf).unwrap();
    out
}

/// Offset and size in the file of the `.dynstr` section of a 64-bit ELF file.
fn dynstr(elf: &[u8]) -> Option<(usize, usize)> {
    use object::read::elf::{FileHeader, SectionHeader};
    let header = object::elf::FileHeader64::<object::Endianness>::parse(elf).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, elf).ok()?;
    let (_, section) = sections.section_by_name(endian, b".dynstr")?;
    let (offset, size) = section.file_range(endian)?;
    Some((offset.try_into().ok()?, size.try_into().ok()?))
}

#[test]
fn a_missing_symbol_leaves_out_only_its_family() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_without("nvmlDeviceGetTotalEnergyConsumption", dir.path());
    let f = Fake::start_with(&lib, &machine(2, 4), &["--no-host"], &[]);
    let body = f.daemon.scrape();
    assert_eq!(value(&body, "gpu_train_exporter_nvml_up", &[]), Some(1.0));
    assert_eq!(count(&body, "gpu_energy_joules_total"), 0, "{body}");
    assert!(!body.contains("gpu_energy_joules_total"));
    assert_eq!(count(&body, "gpu_power_watts"), 2);
    assert_eq!(count(&body, "gpu_nvlink_transmit_bytes_total"), 8);
    for (labels, v) in samples(&body, "gpu_train_exporter_collector_errors_total") {
        assert_eq!(v, 0.0, "a missing symbol is not an error: {labels:?}");
    }
    let log = f.daemon.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("nvmlDeviceGetTotalEnergyConsumption"))
        .collect();
    assert_eq!(lines.len(), 2, "once per GPU: {log}");
}

#[test]
fn a_lost_gpu_reports_up_0_and_no_stale_values() {
    let mut cfg = machine(2, 2);
    cfg["gpus"][1]["lost_after_calls"] = json!(150);
    let f = Fake::start(&cfg, &["--no-host"]);
    assert_eq!(
        f.daemon.wait_value("gpu_up", &[("gpu", "1")], 0.0, WAIT),
        Some(0.0)
    );
    let body = f.daemon.scrape();
    let families: BTreeSet<&str> = body
        .lines()
        .filter(|l| l.starts_with("gpu_") && !l.starts_with("gpu_train_exporter"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    assert!(families.len() > 15, "{families:?}");
    for name in &families {
        let on_1: Vec<_> = samples(&body, name)
            .into_iter()
            .filter(|(l, _)| l.iter().any(|(k, v)| k == "gpu" && v == "1"))
            .collect();
        if ["gpu_info", "gpu_up", "gpu_last_sample_timestamp_seconds"].contains(name) {
            assert_eq!(on_1.len(), 1, "{name}");
        } else {
            assert!(
                on_1.is_empty(),
                "{name} still reported for a lost GPU: {on_1:?}"
            );
        }
    }
    assert_eq!(value(&body, "gpu_up", &[("gpu", "0")]), Some(1.0));
    assert_eq!(
        value(&body, "gpu_power_watts", &[("gpu", "0")]),
        Some(300.0)
    );
    for (labels, v) in samples(&body, "gpu_train_exporter_collector_errors_total") {
        assert_eq!(v, 0.0, "a lost GPU is gpu_up 0, not errors: {labels:?}");
    }
    // A GPU that is lost while the daemon runs.
    cfg["gpus"][0]["lost"] = json!(true);
    f.set(&cfg);
    assert_eq!(
        f.daemon.wait_value("gpu_up", &[("gpu", "0")], 0.0, WAIT),
        Some(0.0)
    );
    let body = f.daemon.scrape();
    assert_eq!(count(&body, "gpu_power_watts"), 0);
    assert_eq!(value(&body, "gpu_train_exporter_nvml_up", &[]), Some(1.0));
}

#[test]
fn xid_errors_are_counted_per_gpu_and_code() {
    let mut cfg = machine(2, 0);
    let f = Fake::start(&cfg, &["--no-host"]);
    assert_eq!(count(&f.daemon.scrape(), "gpu_xid_errors_total"), 0);
    cfg["xid_events"] =
        json!([{"gpu": 0, "xid": 79}, {"gpu": 1, "xid": 48}, {"gpu": 0, "xid": 79}]);
    f.set(&cfg);
    fn xid<'a>(g: &'a str, x: &'a str) -> [(&'static str, &'a str); 2] {
        [("gpu", g), ("xid", x)]
    }
    assert_eq!(
        f.daemon
            .wait_value("gpu_xid_errors_total", &xid("0", "79"), 2.0, WAIT),
        Some(2.0)
    );
    assert_eq!(
        f.daemon
            .wait_value("gpu_xid_errors_total", &xid("1", "48"), 1.0, WAIT),
        Some(1.0)
    );
    cfg["xid_events"]
        .as_array_mut()
        .unwrap()
        .push(json!({"gpu": 0, "xid": 79}));
    // An event from a device handle no GPU has is counted apart, not dropped.
    cfg["xid_events"]
        .as_array_mut()
        .unwrap()
        .push(json!({"gpu": 0, "xid": 79, "unknown_handle": true}));
    f.set(&cfg);
    assert_eq!(
        f.daemon.wait_value(
            "gpu_xid_unattributed_errors_total",
            &[("xid", "79")],
            1.0,
            WAIT
        ),
        Some(1.0)
    );
    assert_eq!(
        f.daemon
            .wait_value("gpu_xid_errors_total", &xid("0", "79"), 3.0, WAIT),
        Some(3.0)
    );
    let body = f.daemon.scrape();
    assert_eq!(count(&body, "gpu_xid_errors_total"), 2);
    assert_eq!(
        value(
            &body,
            "gpu_xid_errors_total",
            &[("uuid", &uuid(1)), ("xid", "48")]
        ),
        Some(1.0)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = value(&body, "gpu_xid_last_timestamp_seconds", &xid("0", "79")).unwrap();
    assert!((now - last).abs() < 10.0, "{last} vs {now}");
}

#[test]
fn processes_appear_and_leave_no_stale_series() {
    let mut cfg = machine(2, 0);
    let f = Fake::start(&cfg, &["--no-host"]);
    assert_eq!(
        count(&f.daemon.scrape(), "gpu_process_memory_used_bytes"),
        0
    );
    // Our own PID exists in /proc, so its command is its argv[0]'s basename there; PID
    // 3999999 does not, so its command is NVML's process name.
    let me = std::process::id();
    let argv0 = std::env::args().next().unwrap();
    let comm = format!("{}\n", argv0.rsplit('/').next().unwrap());
    cfg["gpus"][0]["processes"] = json!([{"pid": me, "used_memory": 1u64 << 30}]);
    cfg["gpus"][1]["processes"] = json!([
        {"pid": 3_999_999, "used_memory": 2u64 << 30, "name": "python3"},
        {"pid": me, "used_memory": 4096},
    ]);
    f.set(&cfg);
    let mine = me.to_string();
    assert_eq!(
        f.daemon.wait_value(
            "gpu_process_memory_used_bytes",
            &[("gpu", "0"), ("pid", &mine), ("command", comm.trim_end())],
            (1u64 << 30) as f64,
            WAIT
        ),
        Some((1u64 << 30) as f64)
    );
    let body = f.daemon.scrape();
    assert_eq!(
        value(
            &body,
            "gpu_process_memory_used_bytes",
            &[("gpu", "1"), ("pid", "3999999"), ("command", "python3")]
        ),
        Some((2u64 << 30) as f64)
    );
    assert_eq!(
        value(
            &body,
            "gpu_process_memory_used_bytes",
            &[("gpu", "1"), ("pid", &mine)]
        ),
        Some(4096.0)
    );
    assert_eq!(count(&body, "gpu_process_memory_used_bytes"), 3);
    // The Python process exits.
    cfg["gpus"][1]["processes"] = json!([{"pid": me, "used_memory": 4096}]);
    f.set(&cfg);
    assert!(wait_for(WAIT, || count(
        &f.daemon.scrape(),
        "gpu_process_memory_used_bytes"
    ) == 2));
    let body = f.daemon.scrape();
    assert!(!body.contains("3999999"), "{body}");
    assert!(!body.contains("python3"), "{body}");
}

#[test]
fn process_names_come_from_the_configured_procfs() {
    // A host procfs mounted elsewhere shows PID 3999998 as `trainer`; our own PID, which the
    // real /proc has, is not in it, so its command is NVML's name, not our real `comm`.
    let procfs = tempfile::tempdir().unwrap();
    let pid_dir = procfs.path().join("3999998");
    std::fs::create_dir(&pid_dir).unwrap();
    std::fs::write(pid_dir.join("comm"), "trainer\n").unwrap();
    // PyTorch 2.3-2.4 names its main thread `pt_main_thread`: the command is argv[0]'s
    // basename, not the 15-byte thread name.
    let torch_dir = procfs.path().join("3999997");
    std::fs::create_dir(&torch_dir).unwrap();
    std::fs::write(torch_dir.join("comm"), "pt_main_thread\n").unwrap();
    std::fs::write(
        torch_dir.join("cmdline"),
        "/opt/venv/bin/python3\0-u\0train.py\0",
    )
    .unwrap();
    let me = std::process::id();
    let mut cfg = machine(1, 0);
    cfg["gpus"][0]["processes"] = json!([
        {"pid": 3_999_998, "used_memory": 1u64 << 30, "name": "python3"},
        {"pid": 3_999_997, "used_memory": 2u64 << 30, "name": "from-nvml-2"},
        {"pid": me, "used_memory": 4096, "name": "from-nvml"},
    ]);
    let root = procfs.path().display().to_string();
    let f = Fake::start(&cfg, &["--no-host", "--path.procfs", &root]);
    assert_eq!(
        f.daemon.wait_value(
            "gpu_process_memory_used_bytes",
            &[("gpu", "0"), ("pid", "3999998"), ("command", "trainer")],
            (1u64 << 30) as f64,
            WAIT
        ),
        Some((1u64 << 30) as f64)
    );
    let body = f.daemon.scrape();
    let mine = me.to_string();
    assert_eq!(
        value(
            &body,
            "gpu_process_memory_used_bytes",
            &[("gpu", "0"), ("pid", &mine), ("command", "from-nvml")]
        ),
        Some(4096.0),
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "gpu_process_memory_used_bytes",
            &[("gpu", "0"), ("pid", "3999997"), ("command", "python3")]
        ),
        Some((2u64 << 30) as f64),
        "{body}"
    );
    assert!(!body.contains("pt_main_thread"), "{body}");
    assert_eq!(count(&body, "gpu_process_memory_used_bytes"), 3);
}

#[test]
fn without_nvml_the_daemon_says_why_and_serves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, "{'loss': 2.5, 'epoch': 0.1}\n");
    let d = Daemon::start(&[
        "--nvml-library",
        "/nonexistent/libnvidia-ml.so.1",
        "--log",
        &format!("sft={}", log.display()),
    ]);
    assert_eq!(
        d.wait_value("training_loss", &[("run", "sft")], 2.5, WAIT),
        Some(2.5)
    );
    // the host collector's first cycle is the witness that collectors report at all
    d.wait_value(
        "gpu_train_exporter_collector_success",
        &[("collector", "host")],
        1.0,
        WAIT,
    );
    let body = d.scrape();
    assert_eq!(value(&body, "gpu_train_exporter_nvml_up", &[]), Some(0.0));
    // the failing collector says so; the scrape still serves the rest, and is valid
    assert_eq!(
        value(
            &body,
            "gpu_train_exporter_collector_success",
            &[("collector", "gpu")]
        ),
        Some(0.0),
        "{body}"
    );
    assert!(!body.contains("\ngpu_up"), "{body}");
    assert!(!body.contains("\ngpu_info"), "{body}");
    assert!(value(&body, "host_memory_total_bytes", &[]).is_some());
    if require_tool("promtool") {
        let report = promtool_check_metrics(&body);
        assert!(report.is_empty(), "promtool check metrics:\n{report}");
    }
    let stderr = d.stderr();
    let why: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("GPU metrics absent"))
        .collect();
    assert_eq!(why.len(), 1, "{stderr}");
    assert!(
        why[0].contains("/nonexistent/libnvidia-ml.so.1"),
        "{stderr}"
    );

    // A library that loads but whose driver is not there (NVML_ERROR_DRIVER_NOT_LOADED).
    let f = Fake::start(&json!({"init_error": 9, "gpus": [{}]}), &[]);
    let body = f.daemon.scrape();
    assert_eq!(value(&body, "gpu_train_exporter_nvml_up", &[]), Some(0.0));
    assert_eq!(
        value(
            &body,
            "gpu_train_exporter_collector_success",
            &[("collector", "gpu")]
        ),
        Some(0.0),
        "{body}"
    );
    assert!(!body.contains("\ngpu_up"), "{body}");
    assert!(
        f.daemon.stderr().contains("driver is not loaded"),
        "{}",
        f.daemon.stderr()
    );
}

#[test]
fn no_gpu_and_no_host_turn_the_collectors_off() {
    let f = Fake::start(&machine(1, 0), &["--no-gpu", "--no-host"]);
    let body = f.daemon.scrape();
    assert!(!body.contains("gpu_train_exporter_nvml_up"), "{body}");
    assert!(!body.contains("collector_duration_seconds"), "{body}");
    let hardware: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("gpu_") || l.starts_with("host_"))
        .filter(|l| !l.starts_with("gpu_train_exporter_"))
        .collect();
    assert!(hardware.is_empty(), "{hardware:?}");
    assert!(body.contains("gpu_train_exporter_build_info"));
}

/// String literals naming NVML functions in a source file.
fn nvml_literals(text: &str) -> BTreeSet<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with("nvml") && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(String::from)
        .collect()
}

#[test]
fn the_fake_exports_exactly_the_calls_the_collector_makes() {
    // Every NVML name the GPU collector's files spell out (the NVML calls live in one of them).
    let mut collector = String::new();
    let mut files = Vec::new();
    let mut dirs = vec![root().join("src/collector/gpu")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no source under src/collector/gpu/");
    for f in &files {
        collector.push_str(&std::fs::read_to_string(f).unwrap());
    }
    let declared = nvml_literals(&collector);
    let fake = std::fs::read_to_string(root().join("tests/fake-nvml/src/lib.rs")).unwrap();
    let exported: BTreeSet<String> = fake
        .split("pub unsafe extern \"C\" fn ")
        .skip(1)
        .map(|s| s.split('(').next().unwrap().to_string())
        .collect();
    assert_eq!(
        declared, exported,
        "src/collector/gpu/ vs the fake's exports"
    );
    let checked: BTreeSet<String> = fake
        .split("same!(")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        checked, exported,
        "every export is ABI-checked against nvml-wrapper-sys"
    );

    // And the daemon calls every one of them, and nothing else, when each feature is used.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let mut cfg = machine(2, 2);
    cfg["gpus"][0]["processes"] = json!([{"pid": 3_999_999, "used_memory": 1, "name": "x"}]);
    cfg["xid_events"] = json!([{"gpu": 1, "xid": 31}]);
    cfg["gpus"][0]["gpm"] = gpm_values(0);
    // GPU 1 under MIG, with GPM (on the parent's support) per instance
    cfg["gpus"][1]["gpm"] = json!({});
    cfg["gpus"][1]["mig_mode"] = json!(true);
    cfg["gpus"][1]["mig_instances"] =
        json!([mig_instance(1, "1g.18gb", 4_000_001, Some(gpm_values(1)))]);
    let trace_s = trace.display().to_string();
    // The older calls are made where NVML 13's are missing: a second run on such a library.
    let older = library_without_all(
        &[
            "nvmlDeviceGetTemperatureV",
            "nvmlDeviceGetCurrentClocksEventReasons",
        ],
        dir.path(),
    );
    for lib in [fake_lib(), older] {
        let f = Fake::start_with(&lib, &cfg, &["--no-host"], &[("FAKE_NVML_TRACE", &trace_s)]);
        f.daemon
            .wait_value("gpu_xid_errors_total", &[("xid", "31")], 1.0, WAIT);
        f.daemon
            .wait_value("gpu_sm_active_ratio", &[("gpu", "0")], 0.5, WAIT);
        assert_eq!(
            f.daemon.wait_value(
                "gpu_sm_active_ratio",
                &[("gpu", "1"), ("gpu_instance", "1")],
                0.51,
                WAIT,
            ),
            Some(0.51)
        );
        assert!(f.daemon.terminate().success());
    }
    let called: BTreeSet<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(called, declared);
}

/// `scripts/gpu-check.sh` against the fake library and a stand-in `nvidia-smi` that answers
/// from the same fake config in nvidia-smi's units (`tests/fake-nvml/nvidia-smi`), while a
/// thread plays a GPU at work: energy at 300 W, NVLink at 10 MB/s per link. It passes; a
/// skewed temperature fails that one check; an energy counter that stops fails the energy
/// rate of both GPUs.
#[test]
fn gpu_check_script_passes_and_fails_against_a_stub_nvidia_smi() {
    if !require_tool("curl") || !require_tool("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fake-nvml.json");
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(
        root().join("tests/fake-nvml/nvidia-smi"),
        bin_dir.join("nvidia-smi"),
    )
    .unwrap();
    let run = |skew: &str, working: bool| {
        let mut cfg = machine(2, 2);
        write_config(&config, &cfg);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let player = {
            let (done, config) = (done.clone(), config.clone());
            std::thread::spawn(move || {
                let mut last = std::time::Instant::now();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if !working {
                        continue;
                    }
                    // 300 W (the machine's GPU 0 draws 300 W, GPU 1 301 W) since the last tick
                    let ms = last.elapsed().as_micros() as u64 / 1000;
                    last += Duration::from_millis(ms);
                    for g in cfg["gpus"].as_array_mut().unwrap() {
                        g["energy_mj"] = json!(g["energy_mj"].as_u64().unwrap() + 300 * ms);
                        for l in g["nvlinks"].as_array_mut().unwrap() {
                            l["tx_kib"] = json!(l["tx_kib"].as_u64().unwrap() + 1000);
                            l["rx_kib"] = json!(l["rx_kib"].as_u64().unwrap() + 500);
                        }
                    }
                    write_config(&config, &cfg);
                }
            })
        };
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
        let out = Command::new(root().join("scripts/gpu-check.sh"))
            .env("PATH", path)
            .env("GTE_BIN", bin())
            .env("NVML_LIBRARY", fake_lib())
            .env("FAKE_NVML_CONFIG", &config)
            .env("PORT", free_port().to_string())
            .env("GTE_CHECK_WINDOW", "3")
            .env("GTE_CHECK_LOAD", "0")
            .env("GTE_CHECK_LOG", dir.path().join("daemon.log"))
            .env("STUB_SKEW", skew)
            .output()
            .unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        player.join().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, out) = run("", true);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    for gpu in 0..2 {
        for check in [
            "memory.used",
            "memory.total",
            "memory.reserved",
            "utilization.gpu",
            "temperature.gpu",
            "power.draw",
            "enforced.power.limit",
            "clocks.sm",
            "clocks.mem",
            "clocks.max.sm",
            "ecc.corrected.volatile",
            "ecc.uncorrected.volatile",
            "remapped_rows.correctable",
            "remapped_rows.uncorrectable",
            "remapped_rows.pending",
            "rate(energy) vs mean power.draw",
            "nvlink0.tx rate",
            "nvlink1.rx rate",
            "pcie.replays",
            "clocks_event_reasons",
        ] {
            assert!(
                out.contains(&format!("PASS gpu{gpu} {check}: ")),
                "no PASS gpu{gpu} {check}:\n{out}"
            );
        }
    }
    assert!(out.contains("PASS collector errors"), "{out}");

    let (code, out) = run("temperature.gpu:1:4", true);
    assert_eq!(code, Some(1), "{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert_eq!(fails.len(), 1, "{out}");
    assert!(fails[0].starts_with("FAIL gpu1 temperature.gpu"), "{out}");

    // an energy counter that does not move while nvidia-smi says 300 W
    let (code, out) = run("", false);
    assert_eq!(code, Some(1), "{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert_eq!(fails.len(), 2, "{out}");
    assert!(fails.iter().all(|f| f.contains("rate(energy)")), "{out}");
}

#[test]
fn the_live_page_api_lists_the_gpus() {
    let mut cfg = machine(2, 0);
    cfg["gpus"][1]["lost"] = json!(true);
    let f = Fake::start(&cfg, &["--no-host"]);
    let (status, body) = f.daemon.get("/api/v1/gpus");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let gpus = v["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2, "{body}");
    assert_eq!(gpus[0]["gpu"], 0);
    assert_eq!(gpus[0]["uuid"], uuid(0));
    assert_eq!(gpus[0]["up"], true);
    assert_eq!(gpus[0]["utilization_ratio"], 0.1);
    assert_eq!(gpus[0]["memory_used_bytes"], 1_000_000_000u64);
    assert_eq!(gpus[0]["memory_total_bytes"], 85_520_809_984u64);
    assert_eq!(gpus[0]["temperature_celsius"], 40.0);
    assert_eq!(gpus[0]["power_watts"], 300.0);
    assert_eq!(gpus[1]["up"], false);
    assert_eq!(gpus[1]["utilization_ratio"], Value::Null);
    // the last hour starts with the first sample: [minutes ago, utilization, memory ratio]
    let h = gpus[0]["history"].as_array().unwrap();
    assert_eq!(h.len(), 1, "{body}");
    assert!(h[0][0].as_f64().unwrap() <= 0.0 && h[0][0].as_f64().unwrap() > -1.0);
    assert_eq!(h[0][1], 0.1);
    assert!((h[0][2].as_f64().unwrap() - 1_000_000_000.0 / 85_520_809_984.0).abs() < 1e-12);
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn one_wedged_gpu_neither_freezes_the_others_nor_passes_for_fresh() {
    let mut cfg = machine(2, 2);
    let f = Fake::start(&cfg, &["--no-host"]);
    let ts = |body: &str, g: &str| {
        value(body, "gpu_last_sample_timestamp_seconds", &[("gpu", g)]).unwrap()
    };
    // GPU 1 wedges: each of its power reads takes 4 s (a GSP timeout takes ~45 s).
    cfg["gpus"][1]["delays_ms"] = json!({"nvmlDeviceGetPowerUsage": 4000});
    f.set(&cfg);
    // Its values are left out once three intervals (150 ms) old; its identity stays.
    assert!(wait_for(WAIT, || value(
        &f.daemon.scrape(),
        "gpu_power_watts",
        &[("gpu", "1")]
    )
    .is_none()));
    let body = f.daemon.scrape();
    let wedged_at = ts(&body, "1");
    assert!(unix_now() - wedged_at > 0.15, "{body}");
    assert_eq!(
        value(&body, "gpu_temperature_celsius", &[("gpu", "1")]),
        None
    );
    assert_eq!(value(&body, "gpu_up", &[("gpu", "1")]), Some(1.0));
    assert!(value(&body, "gpu_info", &[("gpu", "1"), ("uuid", &uuid(1))]).is_some());
    // GPU 0 goes on: a new value arrives within a few cycles, scrapes stay fast.
    cfg["gpus"][0]["temperature_c"] = json!(77);
    f.set(&cfg);
    assert_eq!(
        f.daemon
            .wait_value("gpu_temperature_celsius", &[("gpu", "0")], 77.0, WAIT),
        Some(77.0)
    );
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let body = f.daemon.scrape();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "scrape took {:?} while a GPU hangs",
            t.elapsed()
        );
        assert_eq!(value(&body, "gpu_up", &[("gpu", "0")]), Some(1.0));
        assert_eq!(
            value(&body, "gpu_power_watts", &[("gpu", "0")]),
            Some(300.0)
        );
        assert!(unix_now() - ts(&body, "0") < 2.0, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Unwedged, GPU 1 is fresh again.
    cfg["gpus"][1]["delays_ms"] = json!({});
    f.set(&cfg);
    assert_eq!(
        f.daemon
            .wait_value("gpu_power_watts", &[("gpu", "1")], 301.0, WAIT),
        Some(301.0)
    );
    assert!(ts(&f.daemon.scrape(), "1") > wedged_at);
}

#[test]
fn nvml_that_fails_to_initialise_is_tried_again_until_it_comes_up() {
    // The driver is not loaded yet (NVML_ERROR_DRIVER_NOT_LOADED), as on a node where the
    // GPU Operator starts it after the exporter's DaemonSet.
    let mut cfg = machine(2, 0);
    cfg["init_error"] = json!(9);
    let f = Fake::start(&cfg, &["--no-host"]);
    let body = f.daemon.scrape();
    assert_eq!(value(&body, "gpu_train_exporter_nvml_up", &[]), Some(0.0));
    assert!(!body.contains("\ngpu_up"), "{body}");
    cfg["init_error"] = Value::Null;
    f.set(&cfg);
    assert_eq!(
        f.daemon.wait_value("gpu_up", &[("gpu", "1")], 1.0, WAIT),
        Some(1.0)
    );
    let body = f.daemon.scrape();
    assert_eq!(value(&body, "gpu_train_exporter_nvml_up", &[]), Some(1.0));
    assert_eq!(
        value(&body, "gpu_power_watts", &[("gpu", "1")]),
        Some(301.0)
    );
    // XID events are followed on the GPUs found after the late initialisation.
    cfg["xid_events"] = json!([{"gpu": 1, "xid": 48}]);
    f.set(&cfg);
    assert_eq!(
        f.daemon.wait_value(
            "gpu_xid_errors_total",
            &[("gpu", "1"), ("xid", "48")],
            1.0,
            WAIT
        ),
        Some(1.0)
    );
    // The driver goes away under a running daemon: calls answer DRIVER_NOT_LOADED, and NVML
    // is initialised again (failing while the driver is away) instead of counting errors.
    cfg["init_error"] = json!(9);
    cfg["errors"] = json!({"nvmlDeviceGetPowerUsage": 9});
    f.set(&cfg);
    assert_eq!(
        f.daemon
            .wait_value("gpu_train_exporter_nvml_up", &[], 0.0, WAIT),
        Some(0.0)
    );
    let absent = |log: &str| {
        log.lines()
            .filter(|l| l.contains("GPU metrics absent"))
            .count()
    };
    // ...and tried while the driver is away: one more line for this outage.
    assert!(wait_for(WAIT, || absent(&f.daemon.stderr()) == 2));
    cfg["init_error"] = Value::Null;
    cfg["errors"] = json!({});
    f.set(&cfg);
    assert_eq!(
        f.daemon
            .wait_value("gpu_power_watts", &[("gpu", "0")], 300.0, WAIT),
        Some(300.0)
    );
    let body = f.daemon.scrape();
    assert_eq!(
        value(
            &body,
            "gpu_train_exporter_collector_errors_total",
            &[("call", "nvmlDeviceGetPowerUsage")]
        ),
        Some(0.0)
    );
    let log = f.daemon.stderr();
    assert!(log.contains("NVML is initialised again"), "{log}");
    assert_eq!(absent(&log), 2, "once per outage: {log}");
}

#[test]
fn a_gpu_whose_handle_fails_at_start_stays_gpu_up_0_and_comes_back() {
    let mut cfg = machine(2, 0);
    cfg["gpus"][1]["errors"] = json!({"nvmlDeviceGetHandleByIndex_v2": 999});
    let f = Fake::start(&cfg, &["--no-host"]);
    let body = f.daemon.scrape();
    assert_eq!(value(&body, "gpu_up", &[("gpu", "0")]), Some(1.0));
    assert_eq!(value(&body, "gpu_up", &[("gpu", "1")]), Some(0.0), "{body}");
    assert!(
        value(&body, "gpu_info", &[("gpu", "1")]).is_some(),
        "{body}"
    );
    assert_eq!(value(&body, "gpu_power_watts", &[("gpu", "1")]), None);
    // The handle comes: the GPU is sampled, with its identity, and followed for XIDs.
    cfg["gpus"][1]["errors"] = json!({});
    f.set(&cfg);
    assert_eq!(
        f.daemon.wait_value("gpu_up", &[("gpu", "1")], 1.0, WAIT),
        Some(1.0)
    );
    let body = f.daemon.scrape();
    assert_eq!(
        value(
            &body,
            "gpu_power_watts",
            &[("gpu", "1"), ("uuid", &uuid(1))]
        ),
        Some(301.0)
    );
    assert!(value(&body, "gpu_info", &[("gpu", "1"), ("uuid", &uuid(1))]).is_some());
    // The event set is built again with the late GPU in it (the fake, like NVML, drops the
    // events of a GPU that no set registered).
    assert!(wait_for(WAIT, || f
        .daemon
        .stderr()
        .contains("XID events followed on 2 GPUs")));
    cfg["xid_events"] = json!([{"gpu": 1, "xid": 31}]);
    f.set(&cfg);
    assert_eq!(
        f.daemon.wait_value(
            "gpu_xid_errors_total",
            &[("gpu", "1"), ("xid", "31")],
            1.0,
            WAIT
        ),
        Some(1.0)
    );
}

#[test]
fn no_permission_deprecated_and_not_found_are_absent_and_asked_again() {
    let mut cfg = machine(2, 0);
    // NO_PERMISSION (4), DEPRECATED (26), FUNCTION_NOT_FOUND (13), NOT_SUPPORTED
    cfg["gpus"][0]["errors"] = json!({
        "nvmlDeviceGetPowerUsage": 4,
        "nvmlDeviceGetEnforcedPowerLimit": 26,
        "nvmlDeviceGetTotalEnergyConsumption": 13,
    });
    cfg["gpus"][1]["not_supported"] = json!(["nvmlDeviceGetPcieReplayCounter"]);
    // NVML declares a double for the memory temperature it wrote as an unsigned int.
    cfg["gpus"][1]["memory_temperature_value_type"] = json!(0);
    let f = Fake::start(&cfg, &["--no-host", "--gpu.reprobe-interval", "1s"]);
    // a witness of later cycles: a changed value arrives
    cfg["gpus"][0]["temperature_c"] = json!(66);
    f.set(&cfg);
    assert_eq!(
        f.daemon
            .wait_value("gpu_temperature_celsius", &[("gpu", "0")], 66.0, WAIT),
        Some(66.0)
    );
    let body = f.daemon.scrape();
    for family in [
        "gpu_power_watts",
        "gpu_power_limit_watts",
        "gpu_energy_joules_total",
    ] {
        assert_eq!(value(&body, family, &[("gpu", "0")]), None, "{family}");
        assert!(value(&body, family, &[("gpu", "1")]).is_some(), "{family}");
    }
    assert_eq!(
        value(&body, "gpu_pcie_replay_errors_total", &[("gpu", "1")]),
        None
    );
    assert_eq!(
        value(&body, "gpu_memory_temperature_celsius", &[("gpu", "1")]),
        Some(52.0)
    );
    for (labels, v) in samples(&body, "gpu_train_exporter_collector_errors_total") {
        assert_eq!(v, 0.0, "an absent family is not a failure: {labels:?}");
    }
    // The driver, a MIG change or a privilege brings them: asked again, they come back.
    cfg["gpus"][0]["errors"] = json!({});
    cfg["gpus"][1]["not_supported"] = json!([]);
    f.set(&cfg);
    assert_eq!(
        f.daemon
            .wait_value("gpu_power_watts", &[("gpu", "0")], 300.0, WAIT),
        Some(300.0)
    );
    assert_eq!(
        f.daemon
            .wait_value("gpu_pcie_replay_errors_total", &[("gpu", "1")], 7.0, WAIT),
        Some(7.0)
    );
    let body = f.daemon.scrape();
    assert_eq!(
        value(&body, "gpu_energy_joules_total", &[("gpu", "0")]),
        Some(5000.0)
    );
    assert_eq!(
        value(&body, "gpu_power_limit_watts", &[("gpu", "0")]),
        Some(700.0)
    );
    let log = f.daemon.stderr();
    let denied: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("permission denied"))
        .collect();
    assert_eq!(denied.len(), 1, "one warning: {log}");
    assert!(
        denied[0].contains("WARN") && denied[0].contains("nvmlDeviceGetPowerUsage"),
        "{log}"
    );
}

#[test]
fn nvml_13_calls_come_first_and_the_older_ones_stand_in() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_without_all(
        &[
            "nvmlDeviceGetTemperatureV",
            "nvmlDeviceGetCurrentClocksEventReasons",
        ],
        dir.path(),
    );
    // the daemon on `lib`, tracing its calls to `name`; GPU 3's temperature read
    let start = |lib: &Path, name: &str| {
        let trace = dir.path().join(name);
        let trace_s = trace.display().to_string();
        let f = Fake::start_with(
            lib,
            &machine(4, 0),
            &["--no-host"],
            &[("FAKE_NVML_TRACE", &trace_s)],
        );
        let body = f.daemon.scrape();
        assert_eq!(
            value(&body, "gpu_temperature_celsius", &[("gpu", "3")]),
            Some(43.0)
        );
        (f, body, trace)
    };
    let (f, body, _) = start(&lib, "trace");
    assert_eq!(
        value(
            &body,
            "gpu_clock_event_active",
            &[("gpu", "3"), ("reason", "sw_power_cap")]
        ),
        Some(1.0)
    );
    let log = f.daemon.stderr();
    assert!(
        log.contains("nvmlDeviceGetTemperature is called instead"),
        "{log}"
    );
    assert!(
        log.contains("nvmlDeviceGetCurrentClocksThrottleReasons is called instead"),
        "{log}"
    );
    drop(f);
    // With NVML 13's calls there, the deprecated ones are never made.
    let (f, body, trace2) = start(&fake_lib(), "trace2");
    assert_eq!(
        value(
            &body,
            "gpu_clock_event_active",
            &[("gpu", "3"), ("reason", "hw_thermal_slowdown")]
        ),
        Some(1.0)
    );
    assert!(f.daemon.terminate().success());
    let called = std::fs::read_to_string(&trace2).unwrap();
    assert!(
        called.lines().any(|l| l == "nvmlDeviceGetTemperatureV"),
        "{called}"
    );
    assert!(
        !called.lines().any(|l| l == "nvmlDeviceGetTemperature"),
        "{called}"
    );
    assert!(
        !called
            .lines()
            .any(|l| l == "nvmlDeviceGetCurrentClocksThrottleReasons"),
        "{called}"
    );
}

/// GPM values of GPU `i`, in NVML's units (percent, MiB/s), by metric id.
fn gpm_values(i: usize) -> Value {
    let i = i as f64;
    json!({
        "2": 50.0 + i,   // SM_UTIL
        "3": 30.0,       // SM_OCCUPANCY
        "5": 45.0 + i,   // ANY_TENSOR_UTIL
        "10": 60.0,      // DRAM_BW_UTIL
        "1": 90.0,       // GRAPHICS_UTIL
        "13": 20.0,      // FP16_UTIL
        "12": 10.0,      // FP32_UTIL
        "11": 0.0,       // FP64_UTIL
        "20": 1000.0 + i, // PCIE_TX_PER_SEC
        "21": 2000.0,    // PCIE_RX_PER_SEC
    })
}

#[test]
fn gpm_profiling_metrics_come_from_sample_pairs_where_gpm_is_allowed() {
    let mut cfg = machine(3, 2);
    cfg["gpus"][0]["gpm"] = gpm_values(0);
    // per-link NVLink rates (MiB/s): link 0 both ways, link 1 transmit only
    cfg["gpus"][0]["gpm"]["63"] = json!(100.0); // L0 TX
    cfg["gpus"][0]["gpm"]["62"] = json!(200.0); // L0 RX
    cfg["gpus"][0]["gpm"]["65"] = json!(300.0); // L1 TX
                                                // GPU 1 has no GPM (before Hopper); GPU 2 refuses it to an unprivileged caller.
    cfg["gpus"][2]["gpm"] = gpm_values(2);
    cfg["gpus"][2]["errors"] = json!({"nvmlGpmSampleGet": 4});
    let f = Fake::start(&cfg, &["--no-host"]);
    assert_eq!(
        f.daemon
            .wait_value("gpu_tensor_active_ratio", &[("gpu", "0")], 0.45, WAIT),
        Some(0.45)
    );
    // later pairs keep coming (the fake refuses a pair under 100 ms apart: no errors)
    cfg["gpus"][0]["gpm"]["2"] = json!(75.0);
    f.set(&cfg);
    assert_eq!(
        f.daemon
            .wait_value("gpu_sm_active_ratio", &[("gpu", "0")], 0.75, WAIT),
        Some(0.75)
    );
    let body = f.daemon.scrape();
    let l = [("gpu", "0"), ("uuid", &*uuid(0))];
    for (name, want) in [
        ("gpu_sm_occupancy_ratio", 0.3),
        ("gpu_tensor_active_ratio", 0.45),
        ("gpu_dram_active_ratio", 0.6),
        ("gpu_graphics_engine_active_ratio", 0.9),
        ("gpu_fp16_active_ratio", 0.2),
        ("gpu_fp32_active_ratio", 0.1),
        ("gpu_fp64_active_ratio", 0.0),
        ("gpu_pcie_transmit_bytes_per_second", 1000.0 * 1_048_576.0),
        ("gpu_pcie_receive_bytes_per_second", 2000.0 * 1_048_576.0),
    ] {
        assert_eq!(value(&body, name, &l), Some(want), "{name}");
        assert_eq!(count(&body, name), 1, "{name}: only GPU 0 has GPM");
    }
    let rate = |name: &str, link: &str| value(&body, name, &[("gpu", "0"), ("link", link)]);
    let mib = 1_048_576.0;
    assert_eq!(
        rate("gpu_nvlink_transmit_bytes_per_second", "0"),
        Some(100.0 * mib)
    );
    assert_eq!(
        rate("gpu_nvlink_receive_bytes_per_second", "0"),
        Some(200.0 * mib)
    );
    assert_eq!(
        rate("gpu_nvlink_transmit_bytes_per_second", "1"),
        Some(300.0 * mib)
    );
    assert_eq!(rate("gpu_nvlink_receive_bytes_per_second", "1"), None);
    assert_eq!(count(&body, "gpu_nvlink_transmit_bytes_per_second"), 2);
    // the cumulative counters of the same links are still there
    assert_eq!(count(&body, "gpu_nvlink_transmit_bytes_total"), 3 * 2);
    for (labels, v) in samples(&body, "gpu_train_exporter_collector_errors_total") {
        assert_eq!(v, 0.0, "{labels:?}");
    }
    let log = f.daemon.stderr();
    let denied: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("nvmlGpmSampleGet"))
        .collect();
    assert_eq!(denied.len(), 1, "{log}");
    assert!(
        denied[0].contains("permission denied") && denied[0].contains("gpu=2"),
        "{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("nvmlGpmQueryDeviceSupport") && l.contains("gpu=1"))
            .count(),
        1,
        "{log}"
    );
    // A GPU lost and back: its values go, and come back from a new pair.
    cfg["gpus"][0]["lost"] = json!(true);
    f.set(&cfg);
    assert_eq!(
        f.daemon.wait_value("gpu_up", &[("gpu", "0")], 0.0, WAIT),
        Some(0.0)
    );
    assert_eq!(count(&f.daemon.scrape(), "gpu_sm_active_ratio"), 0);
    cfg["gpus"][0]["lost"] = json!(false);
    f.set(&cfg);
    assert_eq!(
        f.daemon
            .wait_value("gpu_sm_active_ratio", &[("gpu", "0")], 0.75, WAIT),
        Some(0.75)
    );
}

#[test]
fn xids_nvml_does_not_deliver_are_read_from_the_kernel_log() {
    let f = Fake::start(&machine(2, 0), &["--no-host"]);
    // the reader follows the log from its end: wait until it has opened it
    assert!(wait_for(WAIT, || f
        .daemon
        .stderr()
        .contains("following the kernel log for XIDs")));
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&f.kmsg)
        .unwrap();
    use std::io::Write as _;
    // GPU 1 is 00000000:19:00.0; 0000:77:00 is no GPU of the machine
    write!(
        log,
        "6,900,123456,-;NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.54.15\n\
         3,901,123457,-;NVRM: Xid (PCI:0000:19:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n\
         3,902,123458,-;NVRM: Xid (PCI:0000:77:00): 119, pid=1, Timeout after 45s of waiting for RPC response from GPU0 GSP!\n\
         3,903,123459,-;NVRM: Xid (PCI:0000:18:00): 1"
    )
    .unwrap();
    log.flush().unwrap();
    assert_eq!(
        f.daemon.wait_value(
            "gpu_xid_errors_total",
            &[("gpu", "1"), ("xid", "79")],
            1.0,
            WAIT
        ),
        Some(1.0)
    );
    assert_eq!(
        f.daemon.wait_value(
            "gpu_xid_unattributed_errors_total",
            &[("xid", "119")],
            1.0,
            WAIT
        ),
        Some(1.0)
    );
    // a line is counted once complete: the partial one gives XID 120, not 1
    writeln!(log, "20, pid=1, GSP error").unwrap();
    log.flush().unwrap();
    assert_eq!(
        f.daemon.wait_value(
            "gpu_xid_errors_total",
            &[("gpu", "0"), ("xid", "120")],
            1.0,
            WAIT
        ),
        Some(1.0)
    );
    let body = f.daemon.scrape();
    assert_eq!(count(&body, "gpu_xid_errors_total"), 2, "{body}");
    assert_eq!(
        value(
            &body,
            "gpu_xid_errors_total",
            &[("uuid", &uuid(1)), ("xid", "79")]
        ),
        Some(1.0)
    );
}

#[test]
fn a_32_bit_pcie_counter_that_wraps_keeps_rising() {
    let mut cfg = machine(1, 0);
    cfg["gpus"][0]["pcie_value_type"] = json!(1);
    cfg["gpus"][0]["pcie_tx_bytes"] = json!(4_294_967_000u64);
    cfg["gpus"][0]["pcie_rx_bytes"] = json!(1_000u64);
    let f = Fake::start(&cfg, &["--no-host"]);
    assert_eq!(
        f.daemon.wait_value(
            "gpu_pcie_transmit_bytes_total",
            &[("gpu", "0")],
            4_294_967_000.0,
            WAIT
        ),
        Some(4_294_967_000.0)
    );
    // 296 bytes to the wrap and 100 after it; the other direction moves on too.
    cfg["gpus"][0]["pcie_tx_bytes"] = json!(100u64);
    cfg["gpus"][0]["pcie_rx_bytes"] = json!(3_000u64);
    f.set(&cfg);
    assert_eq!(
        f.daemon.wait_value(
            "gpu_pcie_receive_bytes_total",
            &[("gpu", "0")],
            3_000.0,
            WAIT
        ),
        Some(3_000.0)
    );
    assert_eq!(
        value(
            &f.daemon.scrape(),
            "gpu_pcie_transmit_bytes_total",
            &[("gpu", "0")]
        ),
        Some(4_294_967_396.0)
    );
}

/// A MIG device of the fake: GPU instance `gi` (compute instance 0) of profile `profile`,
/// 1 GB in use out of 18 GB times `gi`, one compute process `pid` using 0.5 GB times `gi`.
fn mig_instance(gi: u32, profile: &str, pid: u32, gpm: Option<Value>) -> Value {
    let gb = 1_000_000_000u64;
    json!({
        "gpu_instance": gi,
        "compute_instance": 0,
        "profile": profile,
        "memory_total": 18 * gb * u64::from(gi),
        "memory_used": gb * u64::from(gi),
        "memory_reserved": 100_000_000u64,
        "processes": [{"pid": pid, "used_memory": gb / 2 * u64::from(gi), "name": format!("rank{gi}")}],
        "gpm": gpm,
    })
}

/// A GPU with MIG on has one memory, GPM and process series set per MIG device, labelled by
/// the parent's `gpu` and `uuid` and by `gpu_instance`, `compute_instance` and `mig_profile`;
/// the parent's utilization, memory, GPM and process series are absent (not zero) meanwhile,
/// and all come back, without the instances', when MIG is turned off.
#[test]
fn mig_instances_have_their_own_series_and_the_parent_comes_back_without_mig() {
    let mut cfg = machine(2, 0);
    for g in 0..2 {
        cfg["gpus"][g]["gpm"] = gpm_values(g);
    }
    cfg["gpus"][0]["processes"] = json!([{"pid": 4_000_010, "used_memory": 7, "name": "whole"}]);
    let f = Fake::start(&cfg, &["--no-host"]);
    let gpu0 = [("gpu", "0"), ("uuid", &*uuid(0))];
    assert_eq!(
        f.daemon.wait_value("gpu_sm_active_ratio", &gpu0, 0.5, WAIT),
        Some(0.5)
    );
    let body = f.daemon.scrape();
    assert_eq!(value(&body, "gpu_mig_enabled", &gpu0), Some(0.0));
    assert_eq!(value(&body, "gpu_utilization_ratio", &gpu0), Some(0.1));

    // MIG on GPU 0: two instances, GPM on the first only.
    cfg["gpus"][0]["mig_mode"] = json!(true);
    cfg["gpus"][0]["mig_instances"] = json!([
        mig_instance(1, "1g.18gb", 4_000_011, Some(json!({"2": 40.0, "5": 30.0}))),
        mig_instance(2, "2g.36gb", 4_000_012, None),
    ]);
    f.set(&cfg);
    let inst = |gi: &'static str, profile: &'static str| {
        [
            ("gpu", "0"),
            ("gpu_instance", gi),
            ("compute_instance", "0"),
            ("mig_profile", profile),
        ]
    };
    assert_eq!(
        f.daemon
            .wait_value("gpu_sm_active_ratio", &inst("1", "1g.18gb"), 0.4, WAIT),
        Some(0.4),
        "{}",
        f.daemon.stderr()
    );
    let body = f.daemon.scrape();
    let gb = 1e9;
    let of_gpu0 = |name: &str| -> Vec<Vec<(String, String)>> {
        samples(&body, name)
            .into_iter()
            .map(|(l, _)| l)
            .filter(|l| l.iter().any(|(k, v)| k == "gpu" && v == "0"))
            .collect()
    };
    let has = |l: &[(String, String)], k: &str| l.iter().any(|(lk, _)| lk == k);
    for (name, gi, profile, want) in [
        ("gpu_memory_used_bytes", "1", "1g.18gb", gb),
        ("gpu_memory_used_bytes", "2", "2g.36gb", 2.0 * gb),
        ("gpu_memory_total_bytes", "1", "1g.18gb", 18.0 * gb),
        ("gpu_memory_total_bytes", "2", "2g.36gb", 36.0 * gb),
        ("gpu_memory_reserved_bytes", "2", "2g.36gb", 1e8),
        ("gpu_memory_free_bytes", "1", "1g.18gb", 17.0 * gb - 1e8),
        ("gpu_tensor_active_ratio", "1", "1g.18gb", 0.3),
    ] {
        assert_eq!(
            value(&body, name, &inst(gi, profile)),
            Some(want),
            "{name} {gi}\n{body}"
        );
    }
    for name in [
        "gpu_memory_used_bytes",
        "gpu_memory_free_bytes",
        "gpu_memory_total_bytes",
        "gpu_memory_reserved_bytes",
    ] {
        let series = of_gpu0(name);
        assert_eq!(series.len(), 2, "{name}: one per instance\n{body}");
        assert!(
            series.iter().all(|l| has(l, "gpu_instance")),
            "{name}: {series:?}"
        );
        // the parent's UUID, so that joins on gpu_info keep working
        assert!(
            series.iter().all(|l| l.contains(&("uuid".into(), uuid(0)))),
            "{name}: {series:?}"
        );
    }
    // GPM: the instance that has it, not the parent, not the instance without it
    assert_eq!(of_gpu0("gpu_sm_active_ratio").len(), 1, "{body}");
    assert_eq!(of_gpu0("gpu_fp16_active_ratio").len(), 0, "{body}");
    // the parent's utilization is absent, not zero; GPU 1 (no MIG) keeps its own series
    assert_eq!(of_gpu0("gpu_utilization_ratio").len(), 0, "{body}");
    assert_eq!(of_gpu0("gpu_memory_utilization_ratio").len(), 0, "{body}");
    assert_eq!(
        value(&body, "gpu_utilization_ratio", &[("gpu", "1")]),
        Some(0.11)
    );
    assert_eq!(
        value(&body, "gpu_sm_active_ratio", &[("gpu", "1")]),
        Some(0.51)
    );
    // device-wide families stay on the parent
    assert_eq!(value(&body, "gpu_power_watts", &gpu0), Some(300.0));
    assert_eq!(value(&body, "gpu_mig_enabled", &gpu0), Some(1.0));
    assert_eq!(value(&body, "gpu_mig_enabled", &[("gpu", "1")]), Some(0.0));
    // processes per instance, with their NVML names; the parent's own list is not read
    let procs = of_gpu0("gpu_process_memory_used_bytes");
    assert_eq!(procs.len(), 2, "{body}");
    let mut p = inst("2", "2g.36gb").to_vec();
    p.extend([("pid", "4000012"), ("command", "rank2")]);
    assert_eq!(value(&body, "gpu_process_memory_used_bytes", &p), Some(gb));
    assert_eq!(
        value(
            &body,
            "gpu_process_memory_used_bytes",
            &[("pid", "4000010")]
        ),
        None
    );
    for (labels, v) in samples(&body, "gpu_train_exporter_collector_errors_total") {
        assert_eq!(v, 0.0, "{labels:?}");
    }
    if require_tool("promtool") {
        check_with_promtool(&body, f.dir.path());
    }
    // The live page's API still lists the GPU, with the instances' memory in its chart.
    let (status, api) = f.daemon.get("/api/v1/gpus");
    assert_eq!(status, 200, "{api}");
    let api: Value = serde_json::from_str(&api).unwrap();
    let g0 = &api["gpus"][0];
    assert_eq!(g0["memory_used_bytes"], 3_000_000_000u64, "{api}");
    assert_eq!(g0["memory_total_bytes"], 54_000_000_000u64, "{api}");
    let inst: Vec<(u64, &str)> = g0["mig_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["gpu_instance"].as_u64().unwrap(),
                m["profile"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(inst, [(1, "1g.18gb"), (2, "2g.36gb")], "{api}");
    assert!(
        g0["mig_instances"][0]["uuid"]
            .as_str()
            .unwrap()
            .starts_with("MIG-"),
        "{api}"
    );
    assert_eq!(api["gpus"][1]["mig_instances"], json!([]), "{api}");

    // MIG off: the parent's families come back (long before the 10-min re-probe), the
    // instances' go.
    cfg["gpus"][0]["mig_mode"] = json!(false);
    f.set(&cfg);
    assert_eq!(
        f.daemon
            .wait_value("gpu_utilization_ratio", &gpu0, 0.1, WAIT),
        Some(0.1)
    );
    assert_eq!(
        f.daemon.wait_value("gpu_sm_active_ratio", &gpu0, 0.5, WAIT),
        Some(0.5)
    );
    let body = f.daemon.scrape();
    for name in [
        "gpu_memory_used_bytes",
        "gpu_sm_active_ratio",
        "gpu_process_memory_used_bytes",
    ] {
        let series: Vec<_> = samples(&body, name)
            .into_iter()
            .filter(|(l, _)| l.iter().any(|(k, v)| k == "gpu" && v == "0"))
            .collect();
        assert_eq!(series.len(), 1, "{name}\n{body}");
        assert!(!has(&series[0].0, "gpu_instance"), "{name}: {series:?}");
    }
    assert_eq!(value(&body, "gpu_memory_used_bytes", &gpu0), Some(gb));
    assert_eq!(value(&body, "gpu_mig_enabled", &gpu0), Some(0.0));
    assert_eq!(
        value(
            &body,
            "gpu_process_memory_used_bytes",
            &[("pid", "4000010")]
        ),
        Some(7.0)
    );
    let log = f.daemon.stderr();
    assert_eq!(log.matches("MIG on").count(), 1, "{log}");
    assert_eq!(log.matches("MIG off").count(), 1, "{log}");
}

/// A MIG device whose calls fail leaves out only its own values: another device of the same
/// GPU keeps all of its series, and the failures are counted by call.
#[test]
fn one_failing_mig_instance_leaves_the_others() {
    let mut cfg = machine(1, 0);
    cfg["gpus"][0]["mig_mode"] = json!(true);
    let mut broken = mig_instance(1, "1g.18gb", 4_000_021, None);
    broken["errors"] = json!({"nvmlDeviceGetMemoryInfo_v2": 999});
    let mut no_ids = mig_instance(3, "1g.18gb", 4_000_023, None);
    no_ids["errors"] = json!({"nvmlDeviceGetGpuInstanceId": 999});
    cfg["gpus"][0]["mig_instances"] =
        json!([broken, mig_instance(2, "2g.36gb", 4_000_022, None), no_ids,]);
    let f = Fake::start(&cfg, &["--no-host"]);
    let errors = |call: &'static str| [("collector", "gpu"), ("call", call)];
    assert!(
        wait_for(WAIT, || {
            let body = f.daemon.scrape();
            value(
                &body,
                "gpu_train_exporter_collector_errors_total",
                &errors("nvmlDeviceGetMemoryInfo_v2"),
            )
            .is_some_and(|v| v >= 1.0)
                && value(
                    &body,
                    "gpu_train_exporter_collector_errors_total",
                    &errors("nvmlDeviceGetGpuInstanceId"),
                )
                .is_some_and(|v| v >= 1.0)
                && value(&body, "gpu_memory_used_bytes", &[("gpu_instance", "2")]).is_some()
        }),
        "{}",
        f.daemon.scrape()
    );
    let body = f.daemon.scrape();
    let gb = 1e9;
    // the healthy device has everything
    assert_eq!(
        value(&body, "gpu_memory_used_bytes", &[("gpu_instance", "2")]),
        Some(2.0 * gb)
    );
    assert_eq!(
        value(
            &body,
            "gpu_process_memory_used_bytes",
            &[("gpu_instance", "2"), ("pid", "4000022")]
        ),
        Some(gb)
    );
    // the device whose memory fails keeps its processes, with no memory series (not a zero)
    assert_eq!(
        value(&body, "gpu_memory_used_bytes", &[("gpu_instance", "1")]),
        None
    );
    assert_eq!(
        value(
            &body,
            "gpu_process_memory_used_bytes",
            &[("gpu_instance", "1"), ("pid", "4000021")]
        ),
        Some(gb / 2.0)
    );
    // the device whose ids cannot be read is left out
    assert_eq!(
        value(
            &body,
            "gpu_process_memory_used_bytes",
            &[("pid", "4000023")]
        ),
        None
    );
    assert_eq!(count(&body, "gpu_memory_used_bytes"), 1, "{body}");
    assert_eq!(value(&body, "gpu_up", &[("gpu", "0")]), Some(1.0));
}
