//! Lines that once killed the daemon, and the containment of parser panics: a bug in one
//! parser costs one line (counted, logged once with its run), never the daemon; a panic
//! anywhere else still aborts it. The faults are injected through environment variables the
//! test build alone understands (the `fault-injection` feature).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use crate::harness::*;

const PARSER_PANIC: &str = "GPU_TRAIN_EXPORTER_FAULT_PARSER_PANIC";
const OUTSIDE_PANIC: &str = "GPU_TRAIN_EXPORTER_FAULT_OUTSIDE_PANIC";

/// Lines with a multi-byte space right after `{` (U+00A0, U+3000, U+2028, U+0085, U+2009),
/// bare or behind torchrun's prefix; each once aborted the daemon.
fn unicode_space_lines() -> String {
    let mut s = String::new();
    for sp in ['\u{a0}', '\u{3000}', '\u{2028}', '\u{85}', '\u{2009}'] {
        s.push_str(&format!("{{{sp}\"\n"));
        s.push_str(&format!("[rank0]: {{{sp}'loss': 0.5,\n"));
    }
    s
}

/// What of those lines is counted: the cut records, not the bare `{ "`.
const UNICODE_SPACE_ERRORS: f64 = 5.0;

fn parse_errors(body: &str, run: &str) -> Option<f64> {
    value(body, "training_parse_errors_total", &[("run", run)])
}

#[test]
fn a_unicode_space_after_a_brace_does_not_kill_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, "{'loss': 1.0}\n");
    let mut d = Daemon::start(&["--log", &format!("cjk={}", log.display())]);
    let run = [("run", "cjk")];
    assert_eq!(
        d.wait_value("training_loss", &run, 1.0, Duration::from_secs(20)),
        Some(1.0)
    );
    // appended while followed, then a good line: the good line is still read
    append(&log, &unicode_space_lines());
    append(&log, "{'loss': 0.25}\n");
    assert_eq!(
        d.wait_value("training_loss", &run, 0.25, Duration::from_secs(20)),
        Some(0.25),
        "{}",
        d.stderr()
    );
    assert!(d.child_alive(), "{}", d.stderr());
    // fixed, not merely contained
    assert!(!d.stderr().contains("a parser failed"), "{}", d.stderr());
    let body = d.scrape();
    assert_eq!(parse_errors(&body, "cjk"), Some(UNICODE_SPACE_ERRORS));
    assert_eq!(
        value(&body, "training_records_total", &[("run", "cjk")]),
        Some(2.0)
    );
    assert_eq!(d.get("/healthz").0, 200);
    // and a restart reads the same file from its start without a crash loop
    assert!(d.terminate().success());
    let d = Daemon::start(&["--log", &format!("cjk={}", log.display())]);
    assert_eq!(
        d.wait_value("training_loss", &run, 0.25, Duration::from_secs(20)),
        Some(0.25)
    );
}

fn parse_file(log: &Path, env: &[(&str, &str)]) -> (std::process::Output, String) {
    let out = std::process::Command::new(bin())
        .arg("parse")
        .arg(log)
        .envs(env.iter().copied())
        .output()
        .expect("run parse");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

#[test]
fn parse_reads_a_unicode_space_after_a_brace() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, &unicode_space_lines());
    append(&log, "{'loss': 0.25}\n");
    let (out, text) = parse_file(&log, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = log.display().to_string();
    assert_eq!(
        value(&text, "training_loss", &[("run", &run)]),
        Some(0.25),
        "{text}"
    );
    assert_eq!(parse_errors(&text, &run), Some(UNICODE_SPACE_ERRORS));
}

#[test]
fn a_panicking_parser_costs_one_line_counted_and_logged_once_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    append(&a, "{'loss': 1.0}\n");
    append(&b, "{'loss': 2.0}\n");
    let mut d = Daemon::start_env(
        &[
            "--log",
            &format!("run-a={}", a.display()),
            "--log",
            &format!("run-b={}", b.display()),
        ],
        &[(PARSER_PANIC, "POISON")],
    );
    let (ra, rb) = ([("run", "run-a")], [("run", "run-b")]);
    assert_eq!(
        d.wait_value("training_loss", &ra, 1.0, Duration::from_secs(20)),
        Some(1.0)
    );
    append(
        &a,
        "{'loss': 9.0, 'POISON': 1}\n{'loss': 8.0, 'POISON': 2}\n",
    );
    append(&a, "{'loss': 0.5}\n");
    append(&b, "POISON\n{'loss': 0.75}\n");
    assert_eq!(
        d.wait_value("training_loss", &ra, 0.5, Duration::from_secs(20)),
        Some(0.5),
        "{}",
        d.stderr()
    );
    assert_eq!(
        d.wait_value("training_loss", &rb, 0.75, Duration::from_secs(20)),
        Some(0.75),
        "{}",
        d.stderr()
    );
    assert!(d.child_alive());
    let body = d.scrape();
    assert_eq!(parse_errors(&body, "run-a"), Some(2.0));
    assert_eq!(parse_errors(&body, "run-b"), Some(1.0));
    // the poisoned records were not applied: 1.0 and 0.5 for run-a
    assert_eq!(value(&body, "training_records_total", &ra), Some(2.0));
    let log = d.stderr();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a parser failed"))
        .collect();
    assert_eq!(failures.len(), 2, "once per run: {log}");
    assert!(failures.iter().any(|l| l.contains("run-a")), "{log}");
    assert!(failures.iter().any(|l| l.contains("run-b")), "{log}");
    assert!(
        failures.iter().all(|l| l.contains("injected parser fault")),
        "{log}"
    );
    // the default panic message is not printed for a contained panic
    assert!(!log.contains("panicked at"), "{log}");
}

#[test]
fn parse_counts_a_panicking_parser_line_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, "{'loss': 1.0}\nPOISON\n{'loss': 0.5}\n");
    let (out, text) = parse_file(&log, &[(PARSER_PANIC, "POISON")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let run = log.display().to_string();
    assert_eq!(parse_errors(&text, &run), Some(1.0), "{text}");
    assert_eq!(value(&text, "training_loss", &[("run", &run)]), Some(0.5));
    // without the fault, the same file has no parse error: the count is the injected panic
    let (_, clean) = parse_file(&log, &[]);
    assert_eq!(parse_errors(&clean, &run), Some(0.0), "{clean}");
}

#[test]
fn a_panic_outside_the_parsers_still_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, "{'loss': 1.0}\n");
    let mut d = Daemon::start_env(
        &["--log", &format!("r={}", log.display())],
        &[(OUTSIDE_PANIC, "BOOM")],
    );
    assert_eq!(
        d.wait_value(
            "training_loss",
            &[("run", "r")],
            1.0,
            Duration::from_secs(20)
        ),
        Some(1.0)
    );
    append(&log, "BOOM\n");
    let (status, _) = d
        .wait_exit(Duration::from_secs(20))
        .expect("the daemon aborts");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    let log = d.stderr();
    assert!(log.contains("injected fault outside the parsers"), "{log}");
}
