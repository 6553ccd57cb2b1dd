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
    let report = promtool_check_metrics(&d.scrape());
    assert!(report.is_empty(), "promtool check metrics:\n{report}");
}

/// A GET with `headers`; the status, the head (in lower case) and the raw body bytes (the
/// client decodes no content encoding).
fn raw_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let mut req = agent(Duration::from_secs(10)).get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (status, head, body) = read_whole(req.call().unwrap()).unwrap();
    (status, head.to_ascii_lowercase(), body)
}

#[test]
fn metrics_are_gzipped_when_asked_and_accept_q_values_count() {
    use std::io::Read;
    let d = Daemon::start(&[]);
    // Prometheus asks for gzip.
    let (status, head, body) = raw_get(d.port, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(status, 200);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("gpu_train_exporter_build_info{"), "{text}");
    // Not asked, or refused with q=0: plain.
    for enc in [None, Some("gzip;q=0"), Some("identity")] {
        let h: Vec<(&str, &str)> = enc.map(|e| ("Accept-Encoding", e)).into_iter().collect();
        let (_, head, body) = raw_get(d.port, "/metrics", &h);
        assert!(!head.contains("content-encoding"), "{enc:?}: {head}");
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("gpu_train_exporter_build_info{"));
    }
    // q=0 refuses OpenMetrics.
    let (_, head, body) = http_get_with(
        d.port,
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;q=0,text/plain;q=0.5",
        )],
    )
    .unwrap();
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(!body.contains("# EOF"));
}

#[test]
fn sigterm_exits_within_a_second_with_slowloris_clients_and_a_blocked_reader() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, "{'loss': 2.5}\n");
    // A FIFO the glob matches: opening it blocks until a writer comes (the tailer once sat
    // there forever, and shutdown waited on the tailer).
    let fifo = dir.path().join("pipe.log");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let glob = format!("{}/*.log", dir.path().display());
    let mut d = Daemon::start(&["--log", &glob]);
    // Slowloris clients: half a request each, never finished (the header timeout is 10 s).
    let slow: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // One of them is surely accepted: a full request after them is answered.
    assert_eq!(d.get("/healthz").0, 200);
    d.signal(15);
    let (status, took) = d
        .wait_exit(Duration::from_secs(15))
        .expect("the daemon exits on SIGTERM");
    eprintln!("SIGTERM with 50 slowloris clients and a FIFO log: exited in {took:?}");
    assert!(status.success(), "{status:?}: {}", d.stderr());
    assert!(took < Duration::from_secs(1), "exited after {took:?}");
    drop(slow);
}
