//! End to end on loopback: the daemon following logs, a real Prometheus scraping it every
//! second with the shipped rule files, a real Alertmanager with the shipped config, and a
//! small HTTP server standing in for Slack.
//!
//! Only the `for:` fields of the rules and the Alertmanager's timers are shortened; the rule
//! expressions, routes, inhibitions and templates are the shipped ones. After the alert, every
//! dashboard query is run against that Prometheus and must return data.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::dashboards::{self, fake_nvml, needs_gpu};
use crate::harness::{agent, append, fixture, free_port, http_get, require_tool, root, wait_for};

/// A child process killed on drop, its output in a file for failure messages.
pub(crate) struct Proc {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command, log: PathBuf, port: u16) -> Proc {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        Proc { child, log, port }
    }

    /// Prometheus with the config file `cfg`, its data and log under `dir`, on `port`
    /// (not yet ready: see [`Proc::wait_ready`]).
    pub(crate) fn prometheus(cfg: &Path, dir: &Path, port: u16) -> Proc {
        Proc::spawn(
            Command::new("prometheus")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prom-data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}")),
            dir.join("prometheus.log"),
            port,
        )
    }

    /// Alertmanager with the config file `cfg` (and the web config `web`, for TLS and auth),
    /// its data and log under `dir`, on `port`, clustering off (not yet ready).
    pub(crate) fn alertmanager(cfg: &Path, dir: &Path, port: u16, web: Option<&Path>) -> Proc {
        let mut cmd = Command::new("prometheus-alertmanager");
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        if let Some(w) = web {
            cmd.arg(format!("--web.config.file={}", w.display()));
        }
        Proc::spawn(&mut cmd, dir.join("alertmanager.log"), port)
    }

    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn wait_ready(&mut self, what: &str) {
        let port = self.port;
        let ok = wait_for(Duration::from_secs(30), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
                || http_get(port, "/-/ready").is_ok_and(|(s, _)| s == 200)
        });
        if !ok || matches!(self.child.try_wait(), Ok(Some(_))) {
            panic!("{what} did not start:\n{}", self.output());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stands in for Slack's incoming webhook: records every POSTed body, answers `ok`.
fn slack_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let store = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            if let Some(body) = read_request(&mut s) {
                store.lock().unwrap().push(body);
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, bodies)
}

fn read_request(s: &mut TcpStream) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf[head_end..]).into_owned())
}

/// A POST of JSON on 127.0.0.1; returns the status (0 when there is no answer).
fn http_post_json(port: u16, path: &str, body: &str) -> u16 {
    agent(Duration::from_secs(10))
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("Content-Type", "application/json")
        .send(body)
        .map_or(0, |r| r.status().as_u16())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The last evaluation of the `TrainingLossNaN` rule: its start time and health, as
/// Prometheus' rules API reports them (empty strings before the first).
fn nan_rule_evaluation(port: u16) -> (String, String) {
    let (status, body) = http_get(port, "/api/v1/rules?type=alert").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rule = v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .find(|r| r["name"] == "TrainingLossNaN")
        .unwrap_or_else(|| panic!("no TrainingLossNaN rule: {body}"));
    let text = |k: &str| rule[k].as_str().unwrap_or_default().to_string();
    (text("lastEvaluation"), text("health"))
}

/// The alerts the Alertmanager holds, with their status (`/api/v2/alerts`).
fn am_alerts(port: u16) -> Vec<serde_json::Value> {
    let (status, body) = http_get(port, "/api/v2/alerts").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// An instant query against Prometheus' HTTP API: the result vector.
pub(crate) fn query(port: u16, q: &str) -> Vec<serde_json::Value> {
    let (status, body) = http_get(port, &format!("/api/v1/query?query={}", urlencode(q)))
        .unwrap_or_else(|e| panic!("query {q}: {e}"));
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("query {q}: {e}: {body}"));
    assert_eq!(status, 200, "query {q}: {body}");
    assert_eq!(v["status"], "success", "query {q}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// A Prometheus config in `dir` that scrapes `target` every second and evaluates the shipped
/// rules ([`test_speed_rules`]) every second, sending alerts to the Alertmanager on `am_port`.
pub(crate) fn with_shipped_rules(dir: &Path, am_port: u16, target: &str) -> PathBuf {
    let rules = test_speed_rules(dir);
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\nscrape_configs:\n  - job_name: gpu-train-exporter\n    static_configs:\n      - targets: ['{target}']\n",
            rules
                .iter()
                .map(|r| format!("  - {}\n", r.display()))
                .collect::<String>()
        ),
    )
    .unwrap();
    cfg
}

/// Copies of the shipped rule files with every `for:` shortened to 1s; nothing else changes.
fn test_speed_rules(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for src in crate::alerts::rule_files() {
        let text = std::fs::read_to_string(&src).unwrap();
        let mut fors = 0;
        let rewritten: String = text
            .lines()
            .map(|l| {
                let t = l.trim_start();
                if t.starts_with("for: ") {
                    fors += 1;
                    format!("{}for: 1s\n", &l[..l.len() - t.len()])
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert!(fors > 0 || src.ends_with("training.rules.yml"), "{src:?}");
        let dst = dir.join(src.file_name().unwrap());
        std::fs::write(&dst, rewritten).unwrap();
        out.push(dst);
    }
    out
}

/// The shipped Alertmanager config and templates, with the webhook URL file pointed at
/// `url_file` and the grouping timers shortened.
fn test_alertmanager_config(dir: &Path, url_file: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("alerts/alertmanager.yml")).unwrap();
    let mut text = text;
    for (from, to) in [
        (
            "api_url_file: /etc/alertmanager/slack-webhook-url".to_string(),
            format!("api_url_file: {}", url_file.display()),
        ),
        ("group_wait: 30s".into(), "group_wait: 1s".into()),
        ("group_interval: 5m".into(), "group_interval: 1s".into()),
    ] {
        assert!(
            text.contains(&from),
            "alertmanager.yml no longer has {from:?}"
        );
        text = text.replace(&from, &to);
    }
    let tdir = dir.join("templates");
    std::fs::create_dir_all(&tdir).unwrap();
    for e in std::fs::read_dir(root().join("alerts/templates")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, tdir.join(p.file_name().unwrap())).unwrap();
    }
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// The Slack attachments received so far: `(title, text)`.
fn attachments(bodies: &Mutex<Vec<String>>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in bodies.lock().unwrap().iter() {
        let v: serde_json::Value = serde_json::from_str(b).unwrap_or_default();
        for a in v["attachments"].as_array().into_iter().flatten() {
            out.push((
                a["title"].as_str().unwrap_or("").to_string(),
                a["text"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

#[test]
fn nan_reaches_slack_and_every_dashboard_query_returns_data() {
    if !require_tool("prometheus") || !require_tool("prometheus-alertmanager") {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Slack stand-in, and the file the Alertmanager reads its webhook URL from
    let (slack_port, bodies) = slack_receiver();
    let url_file = d.join("slack-webhook-url");
    std::fs::write(
        &url_file,
        format!("http://127.0.0.1:{slack_port}/services/T0/B0/x\n"),
    )
    .unwrap();

    // the daemon, following a finished HF run (copied: we append to it), ms-swift's
    // logging.jsonl and a JSON-lines log
    let hf = d.join("train.log");
    std::fs::copy(fixture("transformers/train-normal.log"), &hf).unwrap();
    let _held = dashboards::hold_logs(d, &hf);
    // and a run at step 137, held open by this process, that crashes later
    let crash = d.join("crash.log");
    std::fs::write(
        &crash,
        "{'loss': 2.0, 'global_step/max_steps': '137/300'}\n",
    )
    .unwrap();
    let crash_holder = std::fs::File::open(&crash).unwrap();
    let daemon = {
        let (mut args, env) = dashboards::daemon_args(d, &hf);
        args.push("--log".into());
        args.push(format!("crash={}", crash.display()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        crate::harness::Daemon::start_env(&args, &env)
    };
    let instance = format!("127.0.0.1:{}", daemon.port);

    // Alertmanager with the shipped config
    let am_port = free_port();
    let am_cfg = test_alertmanager_config(d, &url_file);
    let mut am = Proc::alertmanager(&am_cfg, d, am_port, None);

    // Prometheus with the shipped rules
    let prom_port = free_port();
    let prom_cfg = with_shipped_rules(d, am_port, &instance);
    let mut prom = Proc::prometheus(&prom_cfg, d, prom_port);
    am.wait_ready("alertmanager");
    prom.wait_ready("prometheus");

    // Prometheus scrapes the daemon and evaluates the rules; no NaN alert yet
    let scraping = wait_for(Duration::from_secs(30), || {
        !query(prom_port, "up{job=\"gpu-train-exporter\"} == 1").is_empty()
            && !query(prom_port, "training_run_active").is_empty()
    });
    assert!(
        scraping,
        "Prometheus does not scrape the daemon:\n{}",
        prom.output()
    );
    // the witness: the NaN rule has been evaluated, without error, twice since the data was
    // there (the first of those may have begun before; the second began after)
    let before = nan_rule_evaluation(prom_port);
    let mut seen = vec![before.clone()];
    let evaluated = wait_for(Duration::from_secs(30), || {
        let now = nan_rule_evaluation(prom_port);
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        seen.len() >= 3
    });
    assert!(evaluated, "the NaN rule is not evaluated: {seen:?}");
    assert!(
        seen.iter().skip(1).all(|(_, health)| health == "ok"),
        "{seen:?}"
    );
    assert!(
        query(prom_port, "ALERTS{alertname=\"TrainingLossNaN\"}").is_empty(),
        "no NaN yet"
    );
    assert!(
        !attachments(&bodies)
            .iter()
            .any(|(t, _)| t.contains("TrainingLossNaN")),
        "no NaN notification yet"
    );

    // a NaN record: within 60 s Slack gets TrainingLossNaN naming the run
    let appended = Instant::now();
    append(
        &hf,
        "{'loss': 'nan', 'grad_norm': 'nan', 'learning_rate': '1e-05', 'epoch': '1.6'}\n",
    );
    let mut nan = None;
    wait_for(Duration::from_secs(60), || {
        nan = attachments(&bodies)
            .into_iter()
            .find(|(t, _)| t.contains("TrainingLossNaN"));
        nan.is_some()
    });
    let Some((title, text)) = nan else {
        panic!(
            "no TrainingLossNaN notification within 60 s; received {:?}\nALERTS: {:?}\nalertmanager:\n{}",
            bodies.lock().unwrap(),
            query(prom_port, "ALERTS"),
            am.output()
        );
    };
    eprintln!(
        "TrainingLossNaN reached the Slack stand-in {:.1} s after the NaN was appended",
        appended.elapsed().as_secs_f64()
    );
    assert_eq!(title, format!("[FIRING:2] TrainingLossNaN on {instance}"));
    assert!(text.contains("run: `hf`"), "{text}");
    assert!(
        text.contains(&format!(
            "Run hf on {instance} logged a NaN or infinite loss"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Run hf on {instance} logged a NaN or infinite grad_norm"
        )),
        "{text}"
    );
    assert!(
        text.contains("docs/runbooks.md#traininglossnan|Runbook>"),
        "{text}"
    );
    assert!(text.contains("/d/gte-training/"), "{text}");

    inhibitions_hold(am_port, &bodies);

    // every dashboard query returns data from this Prometheus
    let gpu = fake_nvml().is_some();
    let mut checked = 0;
    let mut pending = Vec::new();
    for q in dashboards::queries() {
        let e = dashboards::substitute(&q.expr, "1m");
        let ast = promql_parser::parser::parse(&e).unwrap();
        let mut names = std::collections::BTreeSet::new();
        dashboards::metric_names(&ast, &mut names);
        let identity = names
            .iter()
            .any(|n| dashboards::RUN_IDENTITY.contains(&n.as_str()));
        if (!gpu && names.iter().any(|n| needs_gpu(n))) || identity {
            pending.push(format!("{}/{}", q.dashboard, q.panel));
            continue;
        }
        let result = query(prom_port, &e);
        assert!(
            !result.is_empty(),
            "{}/{}: no data for {e}",
            q.dashboard,
            q.panel
        );
        checked += 1;
    }
    assert!(checked >= 25, "{checked} queries checked");
    if !pending.is_empty() {
        eprintln!(
            "queries not run until the fake NVML library exists or run identity lands: {}",
            pending.len()
        );
    }
    eprintln!(
        "end to end: {checked} dashboard queries returned data; {:.1} s in all",
        t0.elapsed().as_secs_f64()
    );

    crash_reaches_slack_with_its_cause(&instance, prom_port, &bodies, &crash, crash_holder);
    drop(prom);
    drop(am);
}

/// The crash of the `crash` run: rank 1's CUDA out-of-memory at step 137 (the tail of the
/// captured torchrun log) alerts TrainingOomOrNcclTimeout while the log is still held; once
/// the holder is gone, TrainingRunCrashed reaches Slack naming the cause, step and rank.
fn crash_reaches_slack_with_its_cause(
    instance: &str,
    prom_port: u16,
    bodies: &Mutex<Vec<String>>,
    crash: &Path,
    holder: std::fs::File,
) {
    let captured =
        std::fs::read_to_string(fixture("crash/captured/torchrun-oom-rank1.log")).unwrap();
    let from = captured.find("[rank1]: Traceback").unwrap();
    assert!(
        !attachments(bodies)
            .iter()
            .any(|(t, _)| t.contains("TrainingRunCrashed")),
        "no crash before the crash"
    );
    append(crash, &captured[from..]);
    let read = wait_for(Duration::from_secs(30), || {
        !query(
            prom_port,
            "training_run_last_error_info{run=\"crash\",event=\"oom\",rank=\"1\"} and on (run) training_run_last_error_step{run=\"crash\"} == 137",
        )
        .is_empty()
    });
    assert!(
        read,
        "the crash's cause is not scraped: {:?}",
        query(prom_port, "training_run_last_error_info")
    );
    // the OOM alerts before the run is declared crashed: the run is still active
    let mut early = None;
    wait_for(Duration::from_secs(60), || {
        early = attachments(bodies)
            .into_iter()
            .find(|(t, _)| t.contains("TrainingOomOrNcclTimeout"));
        early.is_some()
    });
    let (title, text) = early.expect("no TrainingOomOrNcclTimeout notification within 60 s");
    assert!(title.contains("(oom)"), "{title}");
    assert!(
        text.contains("rank 1: torch.OutOfMemoryError: CUDA out of memory"),
        "{text}"
    );
    assert!(
        !attachments(bodies)
            .iter()
            .any(|(t, _)| t.contains("TrainingRunCrashed")),
        "still held: not crashed yet"
    );
    assert!(
        !query(prom_port, "training_run_active{run=\"crash\"} == 1").is_empty(),
        "still held: still active"
    );
    // the process holding the log exits
    drop(holder);
    let mut crashed = None;
    wait_for(Duration::from_secs(90), || {
        crashed = attachments(bodies)
            .into_iter()
            .find(|(t, _)| t.contains("TrainingRunCrashed"));
        crashed.is_some()
    });
    let Some((title, text)) = crashed else {
        panic!(
            "no TrainingRunCrashed notification within 90 s; ALERTS: {:?}",
            query(prom_port, "ALERTS")
        );
    };
    assert_eq!(
        title,
        format!("[FIRING:1] TrainingRunCrashed (oom) on {instance}")
    );
    assert!(
        text.contains(&format!(
            "Run crash on {instance} crashed: CUDA out of memory at step 137 (rank 1). Log: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB."
        )),
        "{text}"
    );
    assert!(
        text.contains("run: `crash` cause: `oom` rank: `1`"),
        "{text}"
    );
    assert!(
        text.contains("docs/runbooks.md#trainingruncrashed|Runbook>"),
        "{text}"
    );
}

/// The shipped inhibit rules, on alerts posted to the Alertmanager's API: a critical alert
/// silences the warnings of the same run, and an exporter that is down silences its GPU alerts.
fn inhibitions_hold(am_port: u16, bodies: &Mutex<Vec<String>>) {
    let ends = "2099-01-01T00:00:00Z";
    let alert = |labels: serde_json::Value| {
        serde_json::json!({
            "labels": labels,
            "annotations": {"summary": "s.", "description": format!("{labels}"),
                            "runbook_url": "https://example.com/runbooks.md#x"},
            "endsAt": ends
        })
    };
    let body = serde_json::json!([
        alert(
            serde_json::json!({"alertname": "TrainingLossNaN", "severity": "critical",
            "instance": "inhibit:9842", "job": "gpu-train-exporter", "run": "run-a", "key": "loss"})
        ),
        alert(
            serde_json::json!({"alertname": "TrainingLossDiverging", "severity": "warning",
            "instance": "inhibit:9842", "job": "gpu-train-exporter", "run": "run-a"})
        ),
        alert(
            serde_json::json!({"alertname": "TrainingLossDiverging", "severity": "warning",
            "instance": "inhibit:9842", "job": "gpu-train-exporter", "run": "run-b"})
        ),
        alert(
            serde_json::json!({"alertname": "GpuTrainExporterDown", "severity": "critical",
            "instance": "down:9842", "job": "gpu-train-exporter"})
        ),
        alert(
            serde_json::json!({"alertname": "GpuLost", "severity": "critical",
            "instance": "down:9842", "job": "gpu-train-exporter", "gpu": "0", "uuid": "GPU-x"})
        ),
        alert(
            serde_json::json!({"alertname": "GpuLost", "severity": "critical",
            "instance": "up:9842", "job": "gpu-train-exporter", "gpu": "1", "uuid": "GPU-y"})
        ),
    ]);
    assert_eq!(
        http_post_json(am_port, "/api/v2/alerts", &body.to_string()),
        200
    );
    let titled = |t: &str| {
        attachments(bodies)
            .into_iter()
            .filter(|(title, _)| title.contains(t))
            .collect::<Vec<_>>()
    };
    let arrived = wait_for(Duration::from_secs(30), || {
        !titled("TrainingLossDiverging on inhibit:9842").is_empty()
            && !titled("GpuTrainExporterDown on down:9842").is_empty()
            && !titled("GpuLost on up:9842").is_empty()
    });
    assert!(arrived, "notifications: {:?}", attachments(bodies));
    // The witnesses that what should not come had its chance: the Alertmanager marks the
    // targets inhibited, and an alert posted now, in a group of its own, is notified after
    // its group wait, which is later than every group above was first flushed and at least
    // one group interval after.
    let inhibited = wait_for(Duration::from_secs(30), || {
        let alerts = am_alerts(am_port);
        let suppressed = |name: &str, instance: &str, key: &str, value: &str| {
            alerts.iter().any(|a| {
                a["labels"]["alertname"] == name
                    && a["labels"]["instance"] == instance
                    && a["labels"][key] == value
                    && a["status"]["state"] == "suppressed"
                    && a["status"]["inhibitedBy"]
                        .as_array()
                        .is_some_and(|v| !v.is_empty())
            })
        };
        suppressed("TrainingLossDiverging", "inhibit:9842", "run", "run-a")
            && suppressed("GpuLost", "down:9842", "gpu", "0")
    });
    assert!(inhibited, "{:?}", am_alerts(am_port));
    let witness = serde_json::json!([alert(
        serde_json::json!({"alertname": "GpuLost", "severity": "critical",
        "instance": "witness:9842", "job": "gpu-train-exporter", "gpu": "2", "uuid": "GPU-z"})
    )]);
    assert_eq!(
        http_post_json(am_port, "/api/v2/alerts", &witness.to_string()),
        200
    );
    assert!(
        wait_for(Duration::from_secs(30), || !titled(
            "GpuLost on witness:9842"
        )
        .is_empty()),
        "notifications: {:?}",
        attachments(bodies)
    );
    let div = titled("TrainingLossDiverging on inhibit:9842");
    assert!(
        div.iter().all(|(_, text)| text.contains("run-b")),
        "{div:?}"
    );
    assert!(
        div.iter().all(|(_, text)| !text.contains("run-a")),
        "{div:?}"
    );
    assert!(
        titled("GpuLost on down:9842").is_empty(),
        "{:?}",
        attachments(bodies)
    );
}
