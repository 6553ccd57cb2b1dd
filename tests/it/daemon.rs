//! The daemon end to end on a loopback port.

use std::time::Duration;

use crate::harness::*;

#[test]
fn appended_records_appear_on_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(
        &log,
        "{'loss': 2.5, 'learning_rate': 1e-05, 'epoch': 0.1}\n",
    );
    let d = Daemon::start(&["--log", &format!("sft={}", log.display())]);
    assert_eq!(
        d.wait_value(
            "training_loss",
            &[("run", "sft")],
            2.5,
            Duration::from_secs(10)
        ),
        Some(2.5)
    );
    append(
        &log,
        "{'loss': 1.25, 'learning_rate': 2e-05, 'epoch': 0.2}\n",
    );
    assert_eq!(
        d.wait_value(
            "training_loss",
            &[("run", "sft")],
            1.25,
            Duration::from_secs(10)
        ),
        Some(1.25)
    );
    let body = d.scrape();
    assert_eq!(
        value(&body, "training_records_total", &[("run", "sft")]),
        Some(2.0)
    );
    assert_eq!(
        value(&body, "training_run_active", &[("run", "sft")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &body,
            "gpu_train_exporter_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &body,
            "training_last_record_timestamp_seconds",
            &[("run", "sft")]
        )
        .unwrap()
            > 1.7e9
    );
    let status = d.terminate();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
}

#[test]
fn openmetrics_when_asked_and_healthz_and_landing() {
    let d = Daemon::start(&[]);
    let (status, head, body) = http_get_with(
        d.port,
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE gpu_train_exporter_runs_dropped counter"));
    let (_, head, body) = http_get_with(d.port, "/metrics", &[]).unwrap();
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(!body.contains("# EOF"));
    assert_eq!(d.get("/healthz").0, 200);
    let (status, page) = d.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("/metrics"));
    assert_eq!(d.get("/nope").0, 404);
}

#[test]
fn custom_telemetry_path() {
    let d = Daemon::start(&["--web.telemetry-path", "/prom"]);
    let (status, body) = d.get("/prom");
    assert_eq!(status, 200);
    assert!(body.contains("gpu_train_exporter_build_info"));
}

#[test]
fn promtool_accepts_the_real_output() {
    if !require_tool("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for f in ["transformers/train-diverge.log", "ms-swift/train.log"] {
        let dst = dir.path().join(f.replace('/', "-"));
        std::fs::copy(fixture(f), &dst).unwrap();
    }
    let d = Daemon::start(&["--log", &format!("{}/*.log", dir.path().display())]);
    d.wait_value(
        "training_step",
        &[("run", "ms-swift-train")],
        100.0,
        Duration::from_secs(10),
    );
    let body = d.scrape();
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}
