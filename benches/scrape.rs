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

use std::process::{Command, Stdio};

use std::time::{Duration, Instant};
use support::{
    bin, connect, fake_nvml, free_port, get_body, keep_alive_agent, rss_kib, value, Guard,
};

fn main() {
    let lib = fake_nvml::fake_lib();
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
    let d = Guard(
        Command::new(bin())
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
    drop(connect(port));
    let agent = keep_alive_agent();
    std::thread::sleep(Duration::from_secs(1));

    // Collection cycles, one per 100 ms.
    let mut cycles = Vec::new();
    let mut body = String::new();
    for _ in 0..30 {
        body = get_body(&agent, port, "/metrics");
        if let Some(v) = value(
            &body,
            "gpu_train_exporter_collector_duration_seconds",
            &[("collector", "gpu")],
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
        let _ = get_body(&agent, port, "/metrics");
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
                    let agent = keep_alive_agent();
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed().as_secs_f64() < secs {
                        let _ = get_body(&agent, port, "/metrics");
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

/// The fake machine: the tests' 8 GPUs with 18 NVLinks each, every family supported, plus
/// 2 processes per GPU.
fn machine() -> serde_json::Value {
    let mut m = fake_nvml::machine(8, 18);
    for (i, gpu) in m["gpus"].as_array_mut().unwrap().iter_mut().enumerate() {
        let i = i as u64;
        gpu["processes"] = serde_json::json!([
            {"pid": 4_000_000 + 2 * i, "used_memory": 30_000_000_000u64, "name": "python3"},
            {"pid": 4_000_001 + 2 * i, "used_memory": 30_000_000_000u64, "name": "pt_main_thread"},
        ]);
    }
    m
}
