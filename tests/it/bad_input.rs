//! Bad input: binary garbage, invalid UTF-8, a 5 MiB line, a dict with 10,000 keys, a
//! misspelt config key, bad flags, an unreadable log. Counted and skipped; the daemon keeps
//! serving; configuration errors exit 2 with the key named.

use std::time::Duration;

use crate::harness::*;

#[test]
fn garbage_long_lines_and_huge_dicts_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bad.log");
    // binary garbage with NULs, from a fixed xorshift sequence
    let mut x: u32 = 2463534242;
    let mut garbage = Vec::new();
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push((x & 0xff) as u8);
    }
    garbage.retain(|&b| b != b'\n' && b != b'\r');
    garbage.insert(10, 0);
    garbage.push(b'\n');
    let mut content = garbage.clone();
    // invalid UTF-8 inside a record: decoded lossily, the record still counts
    content.extend_from_slice(b"{'loss': 3.5, 'k\xff\xfe': 1.0}\n");
    // a 5 MiB line, then a record
    content.extend(std::iter::repeat_n(b'x', 5 << 20));
    content.extend_from_slice(b"\n{'loss': 2.5}\n");
    // a dict with 10,000 keys: 512 kept, the rest counted
    let mut big = String::from("{'loss': 1.5");
    for i in 0..10_000 {
        big.push_str(&format!(", 'k{i}': {i}"));
    }
    big.push_str("}\n");
    content.extend_from_slice(big.as_bytes());
    std::fs::write(&log, &content).unwrap();

    let d = Daemon::start(&["--log", &format!("bad={}", log.display())]);
    assert_eq!(
        d.wait_value(
            "training_loss",
            &[("run", "bad")],
            1.5,
            Duration::from_secs(20)
        ),
        Some(1.5)
    );
    let body = d.scrape();
    let run = ("run", "bad");
    assert_eq!(
        value(
            &body,
            "training_lines_skipped_total",
            &[run, ("reason", "too_long")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &body,
            "training_lines_skipped_total",
            &[run, ("reason", "binary")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&body, "training_records_total", &[run]), Some(3.0));
    assert_eq!(
        value(
            &body,
            "training_metric",
            &[run, ("key", "k\u{fffd}\u{fffd}")]
        ),
        Some(1.0)
    );
    let kept = samples(&body, "training_metric").len();
    assert_eq!(kept, 512, "the per-run key cap");
    // 10,000 keys offered + 1 lossy key = 10,001 distinct, 512 kept
    assert_eq!(
        value(&body, "gpu_train_exporter_keys_dropped_total", &[run]),
        Some(10_001.0 - 512.0)
    );
    assert!(
        d.stderr().contains("key limit reached"),
        "logged once: {}",
        d.stderr()
    );
    assert_eq!(d.stderr().matches("key limit reached").count(), 1);
}

#[test]
fn misspelt_config_key_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, "logs:\n  - path: /tmp/x.log\n    fromat: hf\n").unwrap();
    for args in [
        vec!["check-config", cfg.to_str().unwrap()],
        vec!["--config", cfg.to_str().unwrap()],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("fromat"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one message: {err}");
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    for (args, needle) in [
        (
            vec!["--web.listen-address", "nowhere"],
            "--web.listen-address",
        ),
        (vec!["--run.idle-timeout", "soon"], "--run.idle-timeout"),
        (vec!["--limits.max-runs", "0"], "--limits.max-runs"),
        (vec!["--format", "bogus"], "--format"),
        (vec!["--log", "a=/x/[b"], "--log"),
        (vec!["--no-such-flag"], "--no-such-flag"),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn valid_config_checks_ok() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, "logs:\n  - path: /tmp/x/*.log\n    run: sft\n").unwrap();
    let out = run(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unreadable_log_is_counted_and_the_rest_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.log");
    append(&good, "{'loss': 0.75}\n");
    // a directory where a log should be: unreadable as a file, even for root
    let bad = dir.path().join("bad.log");
    std::fs::create_dir(&bad).unwrap();
    let d = Daemon::start(&[
        "--log",
        &format!("good={}", good.display()),
        "--log",
        &format!("bad={}", bad.display()),
    ]);
    assert_eq!(
        d.wait_value(
            "training_loss",
            &[("run", "good")],
            0.75,
            Duration::from_secs(10)
        ),
        Some(0.75)
    );
    assert!(wait_for(Duration::from_secs(10), || value(
        &d.scrape(),
        "gpu_train_exporter_log_read_errors_total",
        &[("run", "bad")]
    )
    .is_some_and(|v| v >= 1.0)));
    assert!(d.stderr().contains("is a directory"), "{}", d.stderr());
    // and when it becomes a readable file, it is followed
    std::fs::remove_dir(&bad).unwrap();
    append(&bad, "{'loss': 0.5}\n");
    assert_eq!(
        d.wait_value(
            "training_loss",
            &[("run", "bad")],
            0.5,
            Duration::from_secs(10)
        ),
        Some(0.5)
    );
}

#[test]
fn parse_of_a_missing_file_fails_cleanly() {
    let out = run(&["parse", "/nonexistent/train.log"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/train.log"));
}

/// Runs `check-config FILE` and the daemon with `--config FILE`: both must exit 2 with one
/// message naming `key`, within seconds.
fn refused_alike(yaml: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, yaml).unwrap();
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["check-config", cfg],
        vec!["--config", cfg, "--web.listen-address", "127.0.0.1:0"],
    ] {
        let out = run_within(&args, Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml} {args:?}: {err}");
        assert!(err.contains(key), "{yaml} {args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn configs_that_once_aborted_at_start_are_refused_by_check_config_too() {
    for (yaml, key) in [
        // the telemetry path on another route, or in route syntax
        ("web:\n  telemetry_path: /healthz\n", "web.telemetry_path"),
        ("web:\n  telemetry_path: /ui/app.js\n", "web.telemetry_path"),
        (
            "web:\n  telemetry_path: /ui/style.css\n",
            "web.telemetry_path",
        ),
        (
            "web:\n  telemetry_path: /api/v1/runs\n",
            "web.telemetry_path",
        ),
        ("web:\n  telemetry_path: /\n", "web.telemetry_path"),
        ("web:\n  telemetry_path: '/{x}'\n", "web.telemetry_path"),
        ("web:\n  telemetry_path: '/*x'\n", "web.telemetry_path"),
        ("web:\n  telemetry_path: /a//b\n", "web.telemetry_path"),
        // durations that overflow an Instant, or too short to mean anything
        ("run_idle_timeout: 500000000000y\n", "run_idle_timeout"),
        ("rescan_interval: 500000000000y\n", "rescan_interval"),
        ("poll_interval: 500000000000y\n", "poll_interval"),
        (
            "attribution:\n  interval: 500000000000y\n",
            "attribution.interval",
        ),
        ("gpu:\n  interval: 500000000000y\n", "gpu.interval"),
        ("host:\n  interval: 500000000000y\n", "host.interval"),
        (
            "web:\n  read_header_timeout: 500000000000y\n",
            "web.read_header_timeout",
        ),
        (
            "web:\n  read_header_timeout: 1ns\n",
            "web.read_header_timeout",
        ),
        ("web:\n  max_requests: 0\n", "web.max_requests"),
    ] {
        refused_alike(yaml, key);
    }
    // A flag is named as the flag.
    let out = run_within(
        &[
            "--web.telemetry-path",
            "/healthz",
            "--web.listen-address",
            "127.0.0.1:0",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--web.telemetry-path"));
}

#[test]
fn a_fifo_or_a_device_as_a_config_file_is_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let fifo = fifo.to_str().unwrap();
    let listen = ["--web.listen-address", "127.0.0.1:0"];
    for (args, key, why) in [
        (vec!["--config", fifo], "--config", "FIFO"),
        (vec!["--config", "/dev/zero"], "--config", "device"),
        (vec!["--web.config.file", fifo], "--web.config.file", "FIFO"),
        (
            vec!["--web.config.file", "/dev/zero"],
            "--web.config.file",
            "device",
        ),
        (vec!["check-config", fifo], "--config", "FIFO"),
    ] {
        let mut all = args.clone();
        if args[0] != "check-config" {
            all.extend_from_slice(&listen);
        }
        let out = run_within(&all, Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(key) && err.contains(why), "{args:?}: {err}");
    }
    // The web config's own files, through a config file's web.config_file.
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!("tls_server_config:\n  cert_file: {fifo}\n  key_file: /dev/zero\n"),
    )
    .unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, format!("web:\n  config_file: {}\n", web.display())).unwrap();
    let out = run_within(
        &["check-config", cfg.to_str().unwrap()],
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tls_server_config.cert_file") && err.contains("FIFO"),
        "{err}"
    );
    // A config file larger than the bound.
    let big = dir.path().join("big.yml");
    std::fs::write(&big, "#".repeat(5 << 20)).unwrap();
    let out = run_within(
        &["check-config", big.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than"));
}

#[test]
fn history_budget_out_of_range_exits_2_naming_it() {
    for yaml in [
        "limits:\n  history_bytes: 0\n",
        "limits:\n  history_bytes: 1048575\n",
        "limits:\n  history_bytes: 1073741825\n",
    ] {
        refused_alike(yaml, "limits.history_bytes");
    }
    let out = run_within(
        &[
            "--limits.history-bytes",
            "1000",
            "--web.listen-address",
            "127.0.0.1:0",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--limits.history-bytes"));
}

#[test]
fn a_rule_named_like_a_daemon_family_is_refused_by_check_config_and_at_start() {
    for name in [
        "host_load1",
        "host_anything",
        "gpu_power_watts",
        "gpu_train_exporter_runs",
        "training_loss",
        "inference_x",
    ] {
        refused_alike(
            &format!("rules:\n  - name: {name}\n    pattern: 'x=(?P<v>\\d+)'\n    value: v\n"),
            "rules[0].name",
        );
    }
    // a name that only looks alike is a user's
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        "rules:\n  - name: hostname_bytes\n    pattern: 'x=(?P<v>\\d+)'\n    value: v\n",
    )
    .unwrap();
    let out = run(&["check-config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_invalid_unicode_escape_in_a_key_is_a_malformed_line_not_an_empty_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("esc.log");
    std::fs::write(
        &log,
        concat!(
            "{\"\\u00zz\": 1}\n",
            "{\"\\ud83d\": 2}\n",
            "{\"\\ude00x\": 3}\n",
            "{\"loss\": 1.5, \"caf\\u00e9\": 4, \"\\ud83d\\ude00\": 5}\n",
        ),
    )
    .unwrap();
    let out = run(&["parse", log.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let run = ("run", log.to_str().unwrap());
    // the good record is read, with its escapes decoded
    assert_eq!(value(&text, "training_loss", &[run]), Some(1.5));
    assert_eq!(
        value(&text, "training_metric", &[run, ("key", "café")]),
        Some(4.0)
    );
    assert_eq!(
        value(&text, "training_metric", &[run, ("key", "😀")]),
        Some(5.0)
    );
    // the three bad ones are counted, and no key was made up for them
    assert_eq!(value(&text, "training_records_total", &[run]), Some(1.0));
    assert_eq!(
        value(&text, "training_parse_errors_total", &[run]),
        Some(3.0)
    );
    assert_eq!(samples(&text, "training_metric").len(), 2, "{text}");
}

/// `one_run` names every matched file as one run: without `run` there is no name to give.
#[test]
fn one_run_without_a_run_name_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, "logs:\n  - path: /x/*.log\n    one_run: true\n").unwrap();
    let out = crate::harness::run(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("logs[0].one_run"), "{err}");
    std::fs::write(
        &cfg,
        "logs:\n  - path: /x/*.log\n    run: job\n    one_run: true\n",
    )
    .unwrap();
    let out = crate::harness::run(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_action_exits_2_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    // check-config on `yaml`: exit code, stderr, stdout
    let check = |yaml: &str| {
        std::fs::write(&cfg, yaml).unwrap();
        let out = crate::harness::run(&["check-config", cfg.to_str().unwrap()]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let am = "alertmanager:\n  url: http://127.0.0.1:9093\n";
    let action = |body: &str| format!("{am}actions:\n  - name: a\n    {body}\n");
    for (body, key) in [
        ("match: [alertname=A]\n    do: pauze", "actions[0].do"),
        (
            "match: [alertname=A]\n    do: signal\n    signal: SIGNOPE",
            "actions[0].signal",
        ),
        (
            "match: [alertname=A]\n    do: exec\n    exec: [/no/such/script.sh]",
            "actions[0].exec",
        ),
        (
            "match: [alertname=A]\n    do: pause\n    runs: ['[']",
            "actions[0].runs[0]",
        ),
        (
            "match: ['alertname=A', 'run=~\"(\"']\n    do: pause",
            "actions[0].match[1]",
        ),
    ] {
        let (code, err, _) = check(&action(body));
        assert_eq!(code, Some(2), "{body}");
        assert!(err.contains(key), "{body}: {err}");
    }
    // an action without an Alertmanager to poll
    let (code, err, _) = check("actions:\n  - name: a\n    match: [alertname=A]\n    do: pause\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("alertmanager.url"), "{err}");
    // the witness that the shape is right: the same action with a known verb passes
    let (code, err, out) = check(&action("match: [alertname=A]\n    do: pause"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 action(s)"), "{out}");
}
