//! The live page in a real headless Chromium (Debian's `chromium` and `chromedriver`, driven
//! over WebDriver): a daemon follows a fixture log while the test appends records.
//! It checks the DOM — a card per run, an SVG loss path with one point per record, the NaN
//! badge after a NaN record, a live update without reload — and saves a screenshot to
//! `target/live-page.png`. A run paused by an action on an alert shows the alert that paused
//! it, until the alert resolves.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::*;

struct Browser {
    port: u16,
    session: String,
    _driver: Guard,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Guard(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver"),
        );
        assert!(wait_for(Duration::from_secs(20), || http_json(
            port, "GET", "/status", None
        )
        .is_ok_and(|(_, v)| v["value"]["ready"] == true)));
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--window-size=1280,800",
                     format!("--user-data-dir={}", profile.path().display())]
        }}}});
        let (status, v) = http_json(port, "POST", "/session", Some(&caps)).unwrap();
        assert_eq!(status, 200, "new session: {v}");
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Browser {
            port,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = http_json(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
        .unwrap();
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn wait_js(&self, script: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        wait_for(timeout, || {
            last = self.js(script);
            last != Value::Null && last != Value::Bool(false)
        });
        last
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http_json(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

/// The diverging run's first records, then the rest: the loss goes to 1.9e12 and then NaN.
#[test]
fn live_page_shows_runs_updates_and_nan() {
    if !require_tool("chromium") || !require_tool("chromedriver") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::read_to_string(fixture("transformers/train-diverge.log")).unwrap();
    // split after the fifth training dict (loss 1.885e+12, before the first nan)
    let cut = log.find("{'loss': 'nan'").unwrap();
    let (head, tail) = log.split_at(cut);
    let diverge = dir.path().join("diverge.log");
    append(&diverge, head);
    let normal = dir.path().join("normal.log");
    std::fs::copy(fixture("transformers/train-normal.log"), &normal).unwrap();
    // two GPUs from the fake NVML: 10 % and 11 % utilization
    let nvml = dir.path().join("fake-nvml.json");
    std::fs::write(&nvml, crate::harness::fake_nvml::machine(2, 0).to_string()).unwrap();
    let lib = crate::harness::fake_nvml::fake_lib().display().to_string();
    let d = Daemon::start_env(
        &[
            "--log",
            &format!("{}/*.log", dir.path().display()),
            "--nvml-library",
            &lib,
        ],
        &[("FAKE_NVML_CONFIG", nvml.to_str().unwrap())],
    );
    d.wait_value(
        "training_records_total",
        &[("run", "diverge")],
        5.0,
        Duration::from_secs(10),
    );

    let b = Browser::start();
    b.cmd(
        "POST",
        "/url",
        Some(json!({"url": format!("http://127.0.0.1:{}/", d.port)})),
    );
    let cards = b.wait_js(
        "const c = document.querySelectorAll('.run-card'); return c.length === 2 ? [...c].map(e => e.dataset.run) : null;",
        Duration::from_secs(20),
    );
    assert_eq!(cards, json!(["diverge", "normal"]));
    let loss_points = "return document.querySelector('.run-card[data-run=\"diverge\"] svg.chart-loss path.series-loss')?.getAttribute('d')?.match(/[ML]/g)?.length ?? null;";
    assert_eq!(
        b.wait_js(loss_points, Duration::from_secs(10)),
        json!(5),
        "one point per loss record"
    );
    let gpus = b.wait_js(
        "const g = document.querySelectorAll('.gpu-card'); return g.length === 2 ? [...g].map(e => e.querySelector('.bar > div').style.width) : null;",
        Duration::from_secs(10),
    );
    assert_eq!(gpus, json!(["10%", "11%"]), "a utilization bar per GPU");
    assert_eq!(
        b.js("return document.querySelectorAll('.gpu-card svg.chart-gpu path').length;"),
        json!(4),
        "utilization and memory, per GPU"
    );
    // the healthy run: 30 logged losses
    assert_eq!(
        b.js("return document.querySelector('.run-card[data-run=\"normal\"] svg.chart-loss path.series-loss').getAttribute('d').match(/[ML]/g).length;"),
        json!(30)
    );
    assert_eq!(
        b.js("return document.querySelector('.run-card[data-run=\"diverge\"] .badge-nan');"),
        Value::Null
    );
    b.js("window.__noReload = 'still here'; return true;");

    append(&diverge, tail);
    let badge = b.wait_js(
        "return document.querySelector('.run-card[data-run=\"diverge\"] .badge-nan')?.textContent ?? null;",
        Duration::from_secs(20),
    );
    // 26 nan losses, 26 nan grad norms, 7 nan eval losses, the nan train_loss
    assert_eq!(badge, json!("NaN/Inf ×60"));
    let colour = b.js("return getComputedStyle(document.querySelector('.run-card[data-run=\"diverge\"] .badge-nan')).backgroundColor;");
    assert_eq!(colour, json!("rgb(207, 34, 46)"), "the NaN badge is red");
    // the 26 nan losses are markers on the loss chart; the path keeps the 4 + 1 finite points
    let markers = b.wait_js(
        "const n = document.querySelectorAll('.run-card[data-run=\"diverge\"] svg.chart-loss line.nonfinite-loss').length; return n === 26 ? n : null;",
        Duration::from_secs(10),
    );
    assert_eq!(markers, json!(26));
    assert_eq!(b.js(loss_points), json!(5));
    assert_eq!(
        b.js("return window.__noReload ?? null;"),
        json!("still here"),
        "updated live, without a reload"
    );
    assert_eq!(b.js("return document.querySelector('.run-card[data-run=\"diverge\"] .badges .badge').textContent;"), json!("finished"));

    // no crash yet (the card's 30 losses above are the witness that it is drawn): the
    // cause line is hidden; rank 1's OOM appended to the log shows it, with step and rank
    assert_eq!(
        b.js("return document.querySelector('.run-card[data-run=\"normal\"] .last-error').hidden;"),
        json!(true)
    );
    append(
        &normal,
        "[rank1]: Traceback (most recent call last):\n[rank1]:   File \"/w/train.py\", line 9, in <module>\n[rank1]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB.\n",
    );
    let cause = b.wait_js(
        "const e = document.querySelector('.run-card[data-run=\"normal\"] .last-error'); return e && !e.hidden ? e.textContent : null;",
        Duration::from_secs(20),
    );
    let cause = cause.as_str().unwrap();
    assert!(
        cause.starts_with("oom at step ")
            && cause.contains(" (rank 1): torch.OutOfMemoryError: CUDA out of memory."),
        "{cause}"
    );

    let png = b.cmd("GET", "/screenshot", None);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let out = root().join("target/live-page.png");
    std::fs::write(&out, &bytes).unwrap();
    eprintln!("screenshot: {}", out.display());
}

#[test]
fn a_paused_run_shows_the_alert_that_paused_it() {
    use crate::actions::{alertmanager, post_alert, stopped, trainer};
    if !require_tool("chromium")
        || !require_tool("chromedriver")
        || !require_tool("prometheus-alertmanager")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_am, am_port) = alertmanager(d);
    let log = d.join("sft.log");
    let child = trainer(&log, &d.join("never"), &d.join("ticks"));
    let cfg = d.join("gte.yml");
    std::fs::write(
        &cfg,
        format!(
            "logs:\n  - {{path: '{}', run: sft}}\nattribution:\n  interval: 200ms\nalertmanager:\n  url: http://127.0.0.1:{am_port}\n  poll_interval: 1s\nactions:\n  - name: hold-for-a-look\n    match: [alertname=TrainingLossSpike]\n    do: pause\n    resume_on_resolve: true\n",
            log.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&["--config", cfg.to_str().unwrap(), "--no-gpu", "--no-host"]);
    assert_eq!(
        daemon.wait_value(
            "training_run_paused",
            &[("run", "sft")],
            0.0,
            Duration::from_secs(30)
        ),
        Some(0.0),
        "{}",
        daemon.stderr()
    );
    let labels = json!({"alertname": "TrainingLossSpike", "run": "sft"});
    post_alert(am_port, &labels, 3600);
    assert!(
        wait_for(Duration::from_secs(30), || stopped(child.0.id())),
        "{}",
        daemon.stderr()
    );

    let b = Browser::start();
    b.cmd(
        "POST",
        "/url",
        Some(json!({"url": format!("http://127.0.0.1:{}/", daemon.port)})),
    );
    let badge = "return document.querySelector('.run-card[data-run=\"sft\"] .badge-paused')?.textContent ?? null;";
    assert_eq!(
        b.wait_js(badge, Duration::from_secs(20)),
        json!("paused by TrainingLossSpike")
    );
    let title =
        b.js("return document.querySelector('.run-card[data-run=\"sft\"] .badge-paused').title;");
    assert!(
        title.as_str().unwrap().starts_with("hold-for-a-look: "),
        "{title}"
    );
    // resolved: the run continues and the badge goes, on the same page
    post_alert(am_port, &labels, -1);
    assert!(wait_for(Duration::from_secs(30), || !stopped(child.0.id())));
    assert_eq!(
        b.wait_js(
            "return document.querySelector('.run-card[data-run=\"sft\"]') && !document.querySelector('.run-card[data-run=\"sft\"] .badge-paused');",
            Duration::from_secs(20)
        ),
        json!(true)
    );
}
