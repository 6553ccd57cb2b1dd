//! Faults the daemon must survive while still answering scrapes: the log directory
//! deleted and recreated, a log replaced by a directory, permission denied, a write cut
//! short as on a full disk, 1,000 concurrent connections, and (fake NVML) a GPU lost and
//! NVML calls hanging while a log is written.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::harness::{append, http_get, value, wait_for, Daemon};

fn records(d: &Daemon, run: &str) -> f64 {
    value(&d.scrape(), "training_records_total", &[("run", run)]).unwrap_or(0.0)
}

fn line(step: u32) -> String {
    format!("{{\"loss\": 0.5, \"step\": {step}}}\n")
}

/// A scrape that must answer, and quickly.
fn quick_scrape(d: &Daemon) -> String {
    let t = Instant::now();
    let m = d.scrape();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "scrape took {:?}",
        t.elapsed()
    );
    m
}

#[test]
fn log_directory_deleted_and_recreated() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("logs");
    std::fs::create_dir(&dir).unwrap();
    append(&dir.join("a.log"), &(1..=3).map(line).collect::<String>());
    let glob = format!("{}/*.log", dir.display());
    let d = Daemon::start(&["--log", &glob, "--tail.rescan-interval", "200ms"]);
    assert!(wait_for(Duration::from_secs(10), || records(&d, "a") == 3.0));

    std::fs::remove_dir_all(&dir).unwrap();
    for _ in 0..5 {
        quick_scrape(&d);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::create_dir(&dir).unwrap();
    append(&dir.join("b.log"), &(1..=2).map(line).collect::<String>());
    assert!(
        wait_for(Duration::from_secs(10), || records(&d, "b") == 2.0),
        "a log in the recreated directory is followed: {}",
        d.scrape()
    );
    // The old run's file came back too: it is read as a new file.
    append(&dir.join("a.log"), &line(1));
    assert!(wait_for(Duration::from_secs(10), || {
        value(&d.scrape(), "training_step", &[("run", "a")]) == Some(1.0)
    }));
    quick_scrape(&d);
}

#[test]
fn log_replaced_by_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, &(1..=2).map(line).collect::<String>());
    let spec = format!("r={}", log.display());
    let d = Daemon::start(&["--log", &spec, "--tail.rescan-interval", "200ms"]);
    assert!(wait_for(Duration::from_secs(10), || records(&d, "r") == 2.0));
    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    std::fs::write(log.join("inner.log"), line(99)).unwrap();
    // the witness: the tailer has looked at the path since and refused the directory
    let refused = || {
        value(
            &quick_scrape(&d),
            "gpu_train_exporter_log_read_errors_total",
            &[("run", "r")],
        ) == Some(1.0)
    };
    assert!(wait_for(Duration::from_secs(10), refused), "{}", d.scrape());
    // Nothing of the directory is read as log lines, then or at later rescans.
    let rescans = Instant::now() + Duration::from_millis(600);
    while Instant::now() < rescans {
        let m = quick_scrape(&d);
        assert_ne!(value(&m, "training_step", &[("run", "r")]), Some(99.0));
        assert_eq!(
            value(&m, "training_records_total", &[("run", "r")]),
            Some(2.0)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A file again: followed again.
    std::fs::remove_dir_all(&log).unwrap();
    append(&log, &line(7));
    assert!(
        wait_for(Duration::from_secs(10), || {
            value(&d.scrape(), "training_step", &[("run", "r")]) == Some(7.0)
        }),
        "{}",
        d.scrape()
    );
}

/// Tests run as root, which reads any file whatever its mode: the daemon is started as
/// `nobody` (setpriv) so that a mode-000 log really is unreadable to it.
#[test]
fn permission_denied_is_counted_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("train.log");
    append(&log, &(1..=2).map(line).collect::<String>());
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o000)).unwrap();
    let spec = format!("r={}", log.display());
    let args = ["--log", spec.as_str(), "--tail.rescan-interval", "200ms"];
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let wrapper: &[&str] = if is_root {
        if !crate::harness::require_tool("setpriv") {
            return;
        }
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ]
    } else {
        &[]
    };
    let d = Daemon::start_wrapped(wrapper, &args, &[], |port| {
        http_get(port, "/healthz").is_ok_and(|(s, _)| s == 200)
    });
    // Unreadable: nothing read, the error counted, scrapes fine.
    assert!(
        wait_for(Duration::from_secs(10), || {
            value(
                &d.scrape(),
                "gpu_train_exporter_log_read_errors_total",
                &[("run", "r")],
            )
            .is_some_and(|v| v >= 1.0)
        }),
        "{}\n{}",
        d.scrape(),
        d.stderr()
    );
    assert_eq!(records(&d, "r"), 0.0);
    quick_scrape(&d);
    // Readable again: the lines are read.
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || records(&d, "r") == 2.0),
        "{}",
        d.scrape()
    );
}

/// A writer stopped mid-line (disk full) and resumed: the partial line is not a record
/// until its end arrives, then it counts once.
#[test]
fn a_write_cut_short_counts_once_when_completed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, &line(1));
    let spec = format!("r={}", log.display());
    let d = Daemon::start(&["--log", &spec]);
    assert!(wait_for(Duration::from_secs(10), || records(&d, "r") == 1.0));
    append(&log, "{\"loss\": 0.25, \"st");
    // the witness: the daemon has read the cut line's bytes
    let size = std::fs::metadata(&log).unwrap().len() as f64;
    let read = || {
        let m = quick_scrape(&d);
        value(
            &m,
            "gpu_train_exporter_log_bytes_read_total",
            &[("run", "r")],
        )
    };
    assert!(wait_for(Duration::from_secs(10), || read() == Some(size)));
    let m = quick_scrape(&d);
    assert_eq!(
        value(&m, "training_records_total", &[("run", "r")]),
        Some(1.0)
    );
    assert_eq!(value(&m, "training_loss", &[("run", "r")]), Some(0.5));
    append(&log, "ep\": 2}\n");
    assert!(wait_for(Duration::from_secs(10), || {
        value(&d.scrape(), "training_loss", &[("run", "r")]) == Some(0.25)
    }));
    assert_eq!(records(&d, "r"), 2.0);
    assert_eq!(
        value(&d.scrape(), "training_parse_errors_total", &[("run", "r")]).unwrap_or(0.0),
        0.0
    );
}

#[test]
fn a_thousand_concurrent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, &line(1));
    let spec = format!("r={}", log.display());
    let mut d = Daemon::start(&["--log", &spec]);
    let rss_before = d.rss_kib();
    let start = Instant::now();
    // All connected and all requests sent before any answer is read.
    let mut conns: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let rss_peak = d.rss_kib();
    let mut ok = 0;
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        if s.read_to_end(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
            ok += 1;
        }
    }
    let took = start.elapsed();
    drop(conns);
    let rss_after = d.rss_kib();
    eprintln!(
        "1000 connections: {ok} answered 200 in {took:?}; RSS {rss_before} KiB before, \
         {rss_peak} KiB with all open, {rss_after} KiB after"
    );
    assert_eq!(ok, 1000);
    assert!(d.child_alive(), "{}", d.stderr());
    // Bounded: at most --web.max-connections (128) are served at once.
    assert!(
        rss_peak.max(rss_after) < rss_before + 64 * 1024,
        "RSS {rss_before} → {rss_peak} / {rss_after} KiB"
    );
    assert!(quick_scrape(&d).contains("training_records_total"));
}

/// With the fake NVML: a GPU lost mid-run, then every power reading hanging for 5 s, while a
/// trainer keeps logging. Scrapes answer from the last sample without waiting for NVML, and
/// the log keeps being read.
#[test]
fn gpu_lost_and_nvml_hanging_while_logs_flow() {
    use crate::gpu::Fake;
    use crate::harness::fake_nvml::machine;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, &line(0));
    let spec = format!("r={}", log.display());
    let mut cfg = machine(2, 2);
    let f = Fake::start(&cfg, &["--no-host", "--log", &spec]);
    let d = &f.daemon;
    assert_eq!(
        d.wait_value("gpu_up", &[("gpu", "1")], 1.0, Duration::from_secs(10)),
        Some(1.0)
    );
    cfg["gpus"][1]["lost"] = serde_json::json!(true);
    f.set(&cfg);
    assert_eq!(
        d.wait_value("gpu_up", &[("gpu", "1")], 0.0, Duration::from_secs(10)),
        Some(0.0)
    );
    cfg["delays_ms"] = serde_json::json!({"nvmlDeviceGetPowerUsage": 5000});
    f.set(&cfg);
    std::thread::sleep(Duration::from_millis(300));
    let mut times = Vec::new();
    for step in 1..=30 {
        append(&log, &line(step));
        let t = Instant::now();
        let m = d.scrape();
        times.push(t.elapsed());
        assert_eq!(value(&m, "gpu_up", &[("gpu", "1")]), Some(0.0));
        std::thread::sleep(Duration::from_millis(50));
    }
    times.sort();
    eprintln!(
        "scrapes while NVML hangs: median {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    assert!(
        times[times.len() / 2] < Duration::from_millis(100),
        "{times:?}"
    );
    assert!(times[times.len() - 1] < Duration::from_secs(1), "{times:?}");
    assert!(
        wait_for(Duration::from_secs(10), || {
            value(&d.scrape(), "training_step", &[("run", "r")]) == Some(30.0)
        }),
        "the log is read while NVML hangs"
    );
}
