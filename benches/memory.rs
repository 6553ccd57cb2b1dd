//! Memory of the daemon at its documented caps, against the limits it ships with
//! (`deploy/kubernetes/daemonset.yaml`: 192 Mi; the systemd unit: `MemoryMax=256M`).
//!
//! `cargo bench --bench memory` measures, on the release build:
//! 1. 256 runs (`limits.max_runs`), each with 512 keys (`limits.max_keys_per_run`) and
//!    2,500 records of the well-known keys plus 16 others, so every run's page history is
//!    full (exact up to 2,000 records) and the history budget (`limits.history_bytes`,
//!    32 MiB) is what bounds it: RSS once every record is read, and after a full scrape
//!    and a history query per run;
//! 2. one 59 MB line with `max_line_bytes` at its maximum (64 MiB): the peak RSS
//!    (`VmHWM`) while it is read, as a multiple of the line.
//!
//! `BENCH_RECORDS` shrinks the first part for a quick look.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{bin, connect, free_port, http_get, Guard};

const RUNS: usize = 256;
const KEYS: usize = 512;

fn main() {
    let records: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_500);
    let dir = tempfile::tempdir().unwrap();
    println!("# gpu-train-exporter memory benchmark (release build)");
    at_the_caps(dir.path(), records);
    huge_line(dir.path());
}

/// 256 runs at the key cap with full history.
fn at_the_caps(dir: &Path, records: usize) {
    let logs = dir.join("caps");
    std::fs::create_dir_all(&logs).unwrap();
    for r in 0..RUNS {
        let mut s = String::with_capacity(records * 420 + KEYS * 24);
        // the first record carries every key up to the cap
        s.push_str("{\"loss\": 2.0");
        for k in 0..KEYS - 1 {
            s.push_str(&format!(", \"extra/k{k:03}\": {k}.5"));
        }
        s.push_str("}\n");
        for i in 1..=records {
            let loss = 2.0 + ((i as f64) * 0.37 + r as f64).sin();
            s.push_str(&format!(
                "{{\"loss\": {loss:.6}, \"grad_norm\": {:.6}, \"learning_rate\": {:.8}, \"epoch\": {:.3}, \"global_step/max_steps\": \"{i}/{records}\", \"eval_loss\": {:.5}, \"train_speed(s/it)\": 0.07",
                0.5 + loss / 10.0,
                1e-4 / (1.0 + i as f64 / 1000.0),
                i as f64 / 1000.0,
                loss + 0.1
            ));
            for k in 0..16 {
                s.push_str(&format!(", \"extra/k{k:03}\": {:.4}", loss * k as f64));
            }
            s.push_str("}\n");
        }
        std::fs::write(logs.join(format!("run{r:03}.jsonl")), s).unwrap();
    }
    let port = free_port();
    let start = Instant::now();
    let d = Guard(
        Command::new(bin())
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--log",
            ])
            .arg(format!("{}/*.jsonl", logs.display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    drop(connect(port));
    let want = (RUNS * (records + 1)) as f64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let body = get(port, "/metrics");
        let got: f64 = body
            .lines()
            .filter(|l| l.starts_with("training_records_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if got >= want {
            break;
        }
        assert!(Instant::now() < deadline, "read {got} of {want} records");
        std::thread::sleep(Duration::from_millis(500));
    }
    let read_in = start.elapsed();
    let (rss, _) = rss_hwm(d.0.id());
    let body = get(port, "/metrics");
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    for r in 0..RUNS {
        let _ = get(port, &format!("/api/v1/runs/run{r:03}/series?key=loss"));
    }
    let _ = get(port, "/api/v1/runs");
    let (rss_after, hwm) = rss_hwm(d.0.id());
    println!(
        "{RUNS} runs x {KEYS} keys, {records} records each with full history (read in {:.1} s): RSS {:.1} MiB; after a scrape ({series} series, {:.1} MB) and a history query per run {:.1} MiB, peak {:.1} MiB; shipped limits 192 MiB (DaemonSet), 256 MiB (systemd)",
        read_in.as_secs_f64(),
        rss as f64 / 1024.0,
        body.len() as f64 / 1e6,
        rss_after as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
}

/// One 59 MB line of 5 million pairs, `max_line_bytes` at 64 MiB.
fn huge_line(dir: &Path) {
    let logs = dir.join("huge");
    std::fs::create_dir_all(&logs).unwrap();
    let config = dir.join("huge.yaml");
    std::fs::write(&config, "limits:\n  max_line_bytes: 67108864\n").unwrap();
    let log = logs.join("train.log");
    std::fs::write(&log, "{'loss': 1.0, 'step': 1}\n").unwrap();
    let port = free_port();
    let d = Guard(
        Command::new(bin())
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--config",
            ])
            .arg(&config)
            .arg("--log")
            .arg(&log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    drop(connect(port));
    wait_for(port, "training_records_total{", 1.0);
    let (_, before) = rss_hwm(d.0.id());
    let mut line = String::with_capacity(60_000_000);
    line.push_str("{'loss': 0.5");
    let mut k = 0;
    while line.len() < 59_000_000 {
        line.push_str(&format!(", 'k{k}': {k}"));
        k += 1;
    }
    line.push_str(", 'step': 2}\n");
    let len = line.len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    drop(line);
    wait_for(port, "training_records_total{", 2.0);
    let (rss, peak) = rss_hwm(d.0.id());
    println!(
        "one {:.1} MB line of {k} pairs (max_line_bytes 64 MiB): peak RSS {:.1} MiB ({:.1} MiB before it, {:.2}x the line), RSS after {:.1} MiB",
        len as f64 / 1e6,
        peak as f64 / 1024.0,
        before as f64 / 1024.0,
        (peak as f64 * 1024.0) / len as f64,
        rss as f64 / 1024.0,
    );
}

/// Waits until the first series starting with `prefix` reaches `value`.
fn wait_for(port: u16, prefix: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let body = get(port, "/metrics");
        let got = body
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if got.is_some_and(|v| v >= value) {
            return;
        }
        assert!(Instant::now() < deadline, "{prefix} never reached {value}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The body of a GET on a fresh connection.
fn get(port: u16, path: &str) -> String {
    http_get(port, path).expect("GET").1
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn rss_hwm(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
