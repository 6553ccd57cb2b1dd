//! Soak: four writers append 10,000 lines/s in all to logs that rotate, for 60 s
//! (`SOAK_SECONDS` shortens it locally), while a client scrapes 100 times a second. No
//! record may be lost or counted twice, no scrape may fail, and RSS must stay flat.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{http_get, value, wait_for, Daemon};

const WRITERS: usize = 4;
const LINES_PER_SECOND: u64 = 10_000;
const SCRAPES_PER_SECOND: u64 = 100;
/// Lines between rotations of each log (about every 4 s at 2,500 lines/s).
const ROTATE_EVERY: u64 = 10_000;

fn soak_seconds() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// Appends `per_second` lines a second to `path` for `secs`, renaming it to `path.N` every
/// [`ROTATE_EVERY`] lines; returns how many lines it wrote.
fn writer(path: PathBuf, per_second: u64, secs: u64) -> u64 {
    let start = Instant::now();
    let total = per_second * secs;
    let mut written = 0u64;
    let mut rotations = 0;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let mut buf = String::new();
    while written < total {
        // Catch up with the schedule in 10 ms batches.
        let due = (start.elapsed().as_secs_f64() * per_second as f64) as u64;
        let due = due.min(total);
        buf.clear();
        while written < due {
            written += 1;
            buf.push_str(&format!(
                "{{\"loss\": {:.4}, \"learning_rate\": 1e-05, \"step\": {written}}}\n",
                1.0 / written as f64
            ));
            if written % ROTATE_EVERY == 0 {
                f.write_all(buf.as_bytes()).unwrap();
                buf.clear();
                rotations += 1;
                let old = PathBuf::from(format!("{}.{rotations}", path.display()));
                std::fs::rename(&path, &old).unwrap();
                f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap();
            }
        }
        f.write_all(buf.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    written
}

fn records(m: &str, run: &str) -> f64 {
    value(m, "training_records_total", &[("run", run)]).unwrap_or(0.0)
}

#[test]
fn soak_rotating_logs_under_frequent_scrapes() {
    let secs = soak_seconds();
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<(String, PathBuf)> = (0..WRITERS)
        .map(|i| (format!("w{i}"), dir.path().join(format!("w{i}.log"))))
        .collect();
    for (_, p) in &runs {
        std::fs::write(p, "").unwrap();
    }
    let args: Vec<String> = runs
        .iter()
        .map(|(r, p)| format!("--log={r}={}", p.display()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = Daemon::start(&args);
    let port = d.port;
    let rss_start = d.rss_kib();

    // The scraper: 100 scrapes a second until told to stop; every one must be a 200 with
    // the exporter's own metrics in it.
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let slowest_ms = Arc::new(AtomicU64::new(0));
    let scraper = {
        let (stop, scrapes, failures, slowest_ms) = (
            stop.clone(),
            scrapes.clone(),
            failures.clone(),
            slowest_ms.clone(),
        );
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match http_get(port, "/metrics") {
                    Ok((200, body)) if body.contains("gpu_train_exporter_runs ") => {}
                    other => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("scrape failed: {:?}", other.map(|(s, _)| s));
                    }
                }
                slowest_ms.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                n += 1;
                scrapes.store(n, Ordering::Relaxed);
                let next = start + Duration::from_millis(n * 1000 / SCRAPES_PER_SECOND);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };

    let writers: Vec<_> = runs
        .iter()
        .map(|(_, p)| {
            let p = p.clone();
            std::thread::spawn(move || writer(p, LINES_PER_SECOND / WRITERS as u64, secs))
        })
        .collect();
    let written: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let rss_mid = d.rss_kib();

    // Every run's count reaches exactly what was written, and stays there.
    let mut last = String::new();
    let caught_up = wait_for(Duration::from_secs(60), || {
        last = d.scrape();
        runs.iter()
            .zip(&written)
            .all(|((r, _), &w)| records(&last, r) >= w as f64)
    });
    // the witness that nothing more can come: every byte written, rotated files included,
    // has been read
    let read_all = wait_for(Duration::from_secs(60), || {
        last = d.scrape();
        runs.iter().all(|(r, p)| {
            value(
                &last,
                "gpu_train_exporter_log_bytes_read_total",
                &[("run", r)],
            ) == Some(bytes_written(p) as f64)
        })
    });
    stop.store(true, Ordering::Relaxed);
    scraper.join().unwrap();
    let m = d.scrape();
    let rss_end = d.rss_kib();
    let n_scrapes = scrapes.load(Ordering::Relaxed);
    eprintln!(
        "soak: {secs} s, lines written {written:?}, {n_scrapes} scrapes ({} failed, slowest {} ms), \
         RSS start {rss_start} KiB, after writing {rss_mid} KiB, end {rss_end} KiB",
        failures.load(Ordering::Relaxed),
        slowest_ms.load(Ordering::Relaxed)
    );
    assert!(caught_up, "records never caught up:\n{last}");
    assert!(read_all, "bytes read never reached bytes written:\n{last}");
    for ((r, p), &w) in runs.iter().zip(&written) {
        assert_eq!(w, LINES_PER_SECOND / WRITERS as u64 * secs);
        assert_eq!(
            records(&m, r),
            w as f64,
            "run {r}: records counted != written"
        );
        assert_eq!(
            value(&m, "training_step", &[("run", r)]),
            Some(w as f64),
            "run {r}: last step"
        );
        assert_eq!(
            value(&m, "training_parse_errors_total", &[("run", r)]).unwrap_or(0.0),
            0.0
        );
        assert!(rotated_files(p) >= (w / ROTATE_EVERY) as usize - 1);
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "scrapes failed");
    // 100/s for the whole run, less what a slow CI machine loses.
    assert!(
        n_scrapes >= secs * SCRAPES_PER_SECOND / 2,
        "only {n_scrapes} scrapes in {secs} s"
    );
    // Flat: the state is per run, not per line, so memory must not grow with lines read.
    assert!(
        rss_end < rss_start + 32 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
}

/// Bytes in `p` and its rotated files.
fn bytes_written(p: &Path) -> u64 {
    let name = p.file_name().unwrap().to_string_lossy().to_string();
    std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n == name || n.starts_with(&format!("{name}."))
        })
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn rotated_files(p: &Path) -> usize {
    let name = p.file_name().unwrap().to_string_lossy().to_string();
    std::fs::read_dir(p.parent().unwrap())
        .unwrap()
        .filter(|e| {
            let n = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .to_string();
            n.starts_with(&format!("{name}."))
        })
        .count()
}
