//! The daemon, and `parse`, against a hostile log directory (issue 10): a FIFO and a link to
//! /dev/zero matched by the glob, a symlink tree that explodes, links out of the log
//! directory, a log truncated again and again, a glob that matches nothing yet. Other runs
//! stay served, errors are counted and logged once, SIGTERM stays prompt.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{append, bin, run, value, wait_for, Daemon};

fn line(step: u32) -> String {
    format!("{{\"loss\": 0.5, \"step\": {step}}}\n")
}

fn records(d: &Daemon, run: &str) -> f64 {
    value(&d.scrape(), "training_records_total", &[("run", run)]).unwrap_or(0.0)
}

fn read_errors(d: &Daemon, run: &str) -> f64 {
    value(
        &d.scrape(),
        "gpu_train_exporter_log_read_errors_total",
        &[("run", run)],
    )
    .unwrap_or(0.0)
}

fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

/// SIGTERM, and how long the daemon took to exit.
fn terminate(d: Daemon) -> Duration {
    let t = Instant::now();
    let status = d.terminate();
    let took = t.elapsed();
    assert!(status.success(), "{status:?}");
    took
}

/// Before: the tailer blocked in `open(2)` on the FIFO (sorted first) and never read the
/// log; SIGTERM never finished. The link to /dev/zero pinned a core and logged ~84,000
/// "log file truncated" lines a second. A loop link under `**` made the log many runs.
#[test]
fn a_fifo_and_dev_zero_in_the_glob_leave_other_runs_served_and_sigterm_prompt() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("0-pipe.log"));
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("1-zero.log")).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("loop")).unwrap();
    let log = dir.path().join("train.log");
    append(&log, &(1..=3).map(line).collect::<String>());
    let glob = format!("{}/**/*.log", dir.path().display());
    let d = Daemon::start(&["--log", &glob, "--tail.rescan-interval", "200ms"]);
    assert!(
        wait_for(Duration::from_secs(10), || records(&d, "train.log") == 3.0),
        "{}\n{}",
        d.scrape(),
        d.stderr()
    );
    assert!(wait_for(Duration::from_secs(5), || {
        read_errors(&d, "0-pipe.log") == 1.0 && read_errors(&d, "1-zero.log") == 1.0
    }));
    append(&log, &line(4));
    assert!(wait_for(Duration::from_secs(5), || records(
        &d,
        "train.log"
    ) == 4.0));
    let m = d.scrape();
    assert_eq!(
        value(&m, "gpu_train_exporter_runs", &[]),
        Some(3.0),
        "the loop link adds no run: {m}"
    );
    let err = d.stderr();
    assert_eq!(err.matches("truncated").count(), 0, "{err}");
    assert_eq!(err.matches("cannot read log").count(), 2, "{err}");
    let took = terminate(d);
    eprintln!("exited {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Ten links to `.` under seven `*` levels: ten million paths. Before, the walk ran on the
/// tailer thread and never ended; now it stops at its entry bound, says so, and the other
/// log is followed.
#[test]
fn a_glob_over_an_exploding_symlink_tree_is_cut_and_warned() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    for i in 0..10 {
        std::os::unix::fs::symlink(".", tree.join(format!("l{i}"))).unwrap();
    }
    let log = dir.path().join("train.log");
    append(&log, &line(1));
    let glob = format!("{}/*/*/*/*/*/*/*/x.log", tree.display());
    let spec = format!("r={}", log.display());
    let d = Daemon::start(&["--log", &glob, "--log", &spec]);
    assert!(wait_for(Duration::from_secs(10), || records(&d, "r") == 1.0));
    assert!(
        wait_for(Duration::from_secs(10), || d
            .stderr()
            .contains("stopped at its bound")),
        "{}",
        d.stderr()
    );
    append(&log, &line(2));
    assert!(wait_for(Duration::from_secs(5), || records(&d, "r") == 2.0));
    assert!(d.stderr().matches("stopped at its bound").count() == 1);
    let took = terminate(d);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Before: a link in the log directory made the daemon read any file and export its keys.
#[test]
fn a_link_out_of_the_log_directory_is_refused_unless_configured() {
    let top = tempfile::tempdir().unwrap();
    let (logs, secret) = (top.path().join("logs"), top.path().join("secret"));
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    append(&secret.join("secret.json"), "{\"secret_value\": 42}\n");
    std::os::unix::fs::symlink(secret.join("secret.json"), logs.join("leak.log")).unwrap();
    append(&logs.join("ok.log"), &line(1));
    for outside in [false, true] {
        let cfg = top.path().join("c.yml");
        // refused by default: the key only where it allows
        let allow = if outside {
            "    follow_symlinks_outside: true\n"
        } else {
            ""
        };
        std::fs::write(
            &cfg,
            format!("logs:\n  - path: '{}/*.log'\n{allow}", logs.display()),
        )
        .unwrap();
        let d = Daemon::start(&["--config", cfg.to_str().unwrap()]);
        assert!(wait_for(Duration::from_secs(10), || records(&d, "ok") == 1.0));
        let secret = || {
            value(
                &d.scrape(),
                "training_metric",
                &[("run", "leak"), ("key", "secret_value")],
            )
        };
        if outside {
            assert!(wait_for(Duration::from_secs(5), || secret() == Some(42.0)));
        } else {
            assert!(
                wait_for(Duration::from_secs(5), || read_errors(&d, "leak") == 1.0),
                "{}",
                d.scrape()
            );
            assert_eq!(secret(), None);
            assert_eq!(records(&d, "leak"), 0.0);
            let err = d.stderr();
            assert_eq!(
                err.matches("cannot read log").count(),
                1,
                "logged once: {err}"
            );
            assert!(err.contains("outside"), "{err}");
        }
    }
    // the key is a boolean, checked at load
    let cfg = top.path().join("bad.yml");
    std::fs::write(
        &cfg,
        "logs:\n  - path: /x/*.log\n    follow_symlinks_outside: maybe\n",
    )
    .unwrap();
    let out = run(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("logs[0].follow_symlinks_outside"), "{err}");
}

/// Lightning rewrites its metrics.csv at every flush: each rewrite is a truncation, and was
/// one log line. Now one a minute per file; every rewrite is still read.
#[test]
fn a_log_truncated_again_and_again_is_logged_once_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, &line(1));
    let spec = format!("r={}", log.display());
    let d = Daemon::start(&["--log", &spec]);
    assert!(wait_for(Duration::from_secs(10), || records(&d, "r") == 1.0));
    for step in 2..=6 {
        std::fs::write(&log, line(step)).unwrap();
        assert_eq!(
            d.wait_value(
                "training_step",
                &[("run", "r")],
                step as f64,
                Duration::from_secs(5)
            ),
            Some(step as f64)
        );
    }
    let err = d.stderr();
    assert_eq!(err.matches("log file truncated").count(), 1, "{err}");
}

/// Before: not a word when a glob matched nothing at start.
#[test]
fn a_glob_that_matches_nothing_is_warned_at_start_and_followed_later() {
    let dir = tempfile::tempdir().unwrap();
    let glob = format!("{}/*/train.log", dir.path().display());
    let d = Daemon::start(&["--log", &glob, "--tail.rescan-interval", "200ms"]);
    assert!(
        wait_for(Duration::from_secs(5), || d
            .stderr()
            .contains("no file matches this log path yet")),
        "{}",
        d.stderr()
    );
    assert!(d.stderr().contains(&glob));
    std::fs::create_dir(dir.path().join("run-1")).unwrap();
    append(&dir.path().join("run-1/train.log"), &line(1));
    assert!(wait_for(Duration::from_secs(10), || records(&d, "run-1") == 1.0));
    assert_eq!(
        d.stderr().matches("no file matches").count(),
        1,
        "once: {}",
        d.stderr()
    );
}

/// Before: `parse` of a FIFO blocked in `open(2)`, and of /dev/zero read until out of memory.
#[test]
fn parse_refuses_a_fifo_and_a_device_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.log");
    mkfifo(&fifo);
    let zero = dir.path().join("zero.log");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    for (p, kind) in [(&fifo, "FIFO"), (&zero, "character device")] {
        let mut child = Command::new(bin())
            .arg("parse")
            .arg(p)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut status = None;
        wait_for(Duration::from_secs(5), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("parse {} did not exit", p.display());
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{kind}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(kind), "{err}");
    }
}

/// Run names taken from file names get the bounds a configured `run:` has: a 3,000-byte path
/// and a name with a newline and an escape sequence become short, printable, distinct run
/// names, each logged once, and the runs are followed.
#[test]
fn run_names_from_hostile_file_names_are_bounded_and_printable() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let deep = (0..15).fold(logs.clone(), |p, i| p.join(format!("{i:0>200}")));
    std::fs::create_dir_all(&deep).unwrap();
    append(&deep.join("train.log"), &line(3));
    append(&logs.join("a\nb\x1b[2J.log"), &line(4));
    append(&logs.join("plain.log"), &line(5));
    let d = Daemon::start(&["--log", &format!("{}/**/*.log", logs.display())]);
    let mut m = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            m = d.scrape();
            crate::harness::samples(&m, "training_step").len() == 3
        }),
        "{m}"
    );
    assert_eq!(
        value(&m, "training_step", &[("run", "plain.log")]),
        Some(5.0)
    );
    let mut steps: Vec<f64> = Vec::new();
    for (labels, v) in crate::harness::samples(&m, "training_step") {
        let run = &labels.iter().find(|(k, _)| k == "run").unwrap().1;
        assert!(run.len() <= 128, "{} bytes: {run:?}", run.len());
        assert!(!run.chars().any(char::is_control), "{run:?}");
        steps.push(v);
    }
    steps.sort_by(f64::total_cmp);
    assert_eq!(steps, [3.0, 4.0, 5.0]);
    assert!(m.contains("run=\"a_b_[2J.log~"), "{m}");
    let warned = "too long for a run name";
    assert!(
        d.wait_log(warned, 2, Duration::from_secs(5)),
        "{}",
        d.stderr()
    );
    // once per file, not once per scan: a file found later is the witness of a later scan
    append(&logs.join("later.log"), &line(6));
    assert_eq!(
        d.wait_value(
            "training_step",
            &[("run", "later.log")],
            6.0,
            Duration::from_secs(20),
        ),
        Some(6.0)
    );
    assert_eq!(d.stderr().matches(warned).count(), 2, "{}", d.stderr());
}
