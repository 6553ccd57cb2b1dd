//! Benchmark of `/metrics` with GPUs: the release daemon with the fake NVML library at
//! 8 GPUs × 18 NVLinks (every family present, a few compute processes) plus 20 training runs.
//!
//! `cargo bench --bench scrape` prints:
//! 1. scrape latency (p50, p99, max) over sequential keep-alive scrapes on loopback;
//! 2. scrapes per second with 1 and 4 keep-alive clients;
//! 3. the duration of one GPU collection cycle, as the daemon reports it in
//!    `gpu_train_exporter_collector_duration_seconds{collector="gpu"}` (the fake answers at
//!    once, so this is our own code plus the dynamic calls);
//! 4. the daemon's idle RSS.

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};
use support::{connect, free_port, read_body, rss_kib, Kill};

const BIN: &str = env!("CARGO_BIN_EXE_gpu-train-exporter");

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = fake_lib(&root);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fake-nvml.json");
    std::fs::write(&config, machine().to_string()).unwrap();
    let runs = dir.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    for r in 0..20 {
        let mut s = String::new();
        for step in 1..=5 {
            s.push_str(&format!(
                "{{'loss': {}.5, 'grad_norm': 0.5, 'learning_rate': 1e-05, 'epoch': 0.{step}, 'rewards/mean': {r}.25}}\n",
                5 - step
            ));
        }
        std::fs::write(runs.join(format!("run{r:02}.log")), s).unwrap();
    }
    let port = free_port();
    let d = Kill(
        Command::new(BIN)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .arg("--nvml-library")
            .arg(&lib)
            .args(["--gpu.interval", "100ms", "--log"])
            .arg(format!("{}/*.log", runs.display()))
            .env("FAKE_NVML_CONFIG", &config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut conn = connect(port);
    conn.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    std::thread::sleep(Duration::from_secs(1));

    // Collection cycles, one per 100 ms.
    let mut cycles = Vec::new();
    let mut body = String::new();
    for _ in 0..30 {
        body = get(&mut conn, &mut reader);
        if let Some(v) = find(
            &body,
            "gpu_train_exporter_collector_duration_seconds{collector=\"gpu\"}",
        ) {
            cycles.push(v * 1e6);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cycles.sort_by(|a, b| a.total_cmp(b));
    cycles.dedup();
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    let nvlink = body
        .lines()
        .filter(|l| l.starts_with("gpu_nvlink_transmit_bytes_total{"))
        .count();
    let training = body
        .lines()
        .filter(|l| l.starts_with("training_loss{"))
        .count();
    assert_eq!(nvlink, 8 * 18, "the fake machine is not fully reported");
    assert_eq!(training, 20, "the 20 runs are not all reported");

    // Latency, sequential keep-alive scrapes.
    let mut lat = Vec::new();
    for i in 0..3000 {
        let t = Instant::now();
        let _ = get(&mut conn, &mut reader);
        if i >= 200 {
            lat.push(t.elapsed());
        }
    }
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;

    // Throughput with 1 and 4 clients.
    let rate = |clients: usize| {
        let secs = 2.0;
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    c.set_nodelay(true).unwrap();
                    let mut r = BufReader::new(c.try_clone().unwrap());
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed().as_secs_f64() < secs {
                        let _ = get(&mut c, &mut r);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>() as f64 / secs
    };
    let one = rate(1);
    let four = rate(4);
    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_kib(d.0.id());

    println!("# gpu-train-exporter scrape benchmark: fake NVML 8 GPUs x 18 NVLinks + 20 runs");
    println!("exposition: {} bytes, {series} series", body.len());
    println!(
        "scrape latency: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs over {} keep-alive scrapes",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        lat.len()
    );
    println!("scrapes/s: {one:.0} with 1 client, {four:.0} with 4 clients");
    if !cycles.is_empty() {
        println!(
            "GPU collection cycle (8 GPUs): median {:.0} µs, max {:.0} µs over {} cycles",
            cycles[cycles.len() / 2],
            cycles[cycles.len() - 1],
            cycles.len()
        );
    }
    println!("daemon RSS after the run: {:.1} MiB", rss as f64 / 1024.0);
}

/// The fake machine: 8 GPUs, 18 NVLinks each, every family supported, 2 processes per GPU.
fn machine() -> serde_json::Value {
    let gpus: Vec<serde_json::Value> = (0..8u64)
        .map(|i| {
            serde_json::json!({
                "uuid": format!("GPU-{i:08x}-1111-2222-3333-444455556666"),
                "utilization_gpu": 90 + i,
                "utilization_memory": 40,
                "memory_used": 70_000_000_000u64 + i,
                "memory_reserved": 500_000_000u64,
                "power_mw": 650_000 + i,
                "energy_mj": 123_456_789u64 * (i + 1),
                "temperature_c": 60 + i,
                "pcie_tx_bytes": 1_000_000_000u64 * i,
                "pcie_rx_bytes": 2_000_000_000u64 * i,
                "nvlinks": (0..18u64).map(|l| serde_json::json!({"tx_kib": 1_000_000 * i + l, "rx_kib": 2_000_000 * i + l})).collect::<Vec<_>>(),
                "ecc_corrected": i,
                "clock_event_reasons": 4,
                "processes": [
                    {"pid": 4_000_000 + 2 * i, "used_memory": 30_000_000_000u64, "name": "python3"},
                    {"pid": 4_000_001 + 2 * i, "used_memory": 30_000_000_000u64, "name": "pt_main_thread"},
                ],
            })
        })
        .collect();
    serde_json::json!({ "driver_version": "550.54.15", "gpus": gpus })
}

/// The release build of the fake library, built into a target dir of its own when missing
/// or older than its source (the running `cargo bench` holds the main target dir's lock).
fn fake_lib(root: &Path) -> PathBuf {
    let src = root.join("tests/fake-nvml/src/lib.rs");
    let src_time = std::fs::metadata(&src).unwrap().modified().unwrap();
    let fresh = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= src_time)
    };
    let main = root.join("target/release/libfake_nvml.so");
    if fresh(&main) {
        return main;
    }
    let target = root.join("target/fake-nvml");
    let own = target.join("release/libfake_nvml.so");
    if !fresh(&own) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--release", "-p", "fake-nvml", "--target-dir"])
            .arg(&target)
            .current_dir(root)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cargo build --release -p fake-nvml failed");
    }
    own
}

fn get(conn: &mut TcpStream, r: &mut BufReader<TcpStream>) -> String {
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    String::from_utf8(read_body(r)).unwrap()
}

fn find(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
