//! Actions on alerts, end to end on loopback, with real processes: a real Prometheus
//! evaluating the shipped rules, a real Alertmanager, and the daemon polling it.
//!
//! - One daemon, two runs whose real child processes turn their logs NaN: `TrainingLossNaN`
//!   fires for both; the run with a `pause` action is stopped (its processes' state becomes
//!   `T`), the run with a dry-run action keeps running and is only counted, a bystander is
//!   never touched; an `amtool silence` continues the paused run.
//! - Three daemons as three nodes of one Slurm job (the cluster test's harness): one alert
//!   posted to Alertmanager pauses the job's processes on every node, an `exec` action gets
//!   the documented environment, and expiring the alert continues them all.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::alerting_e2e::{query, with_shipped_rules, Proc};
use crate::gpu::Fake;
use crate::harness::fake_nvml::uuid;
use crate::harness::{free_port, http_json, require_tool, value, wait_for, Daemon, Guard};

const T: Duration = Duration::from_secs(60);

/// A process's state letter from `/proc/PID/stat` (`T` when stopped), `None` once gone.
fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

pub(crate) fn stopped(pid: u32) -> bool {
    state(pid) == Some('T')
}

/// An Alertmanager with one silent receiver and short timers, on a free port.
pub(crate) fn alertmanager(d: &Path) -> (Proc, u16) {
    let port = free_port();
    let cfg = d.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: none\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let mut am = Proc::alertmanager(&cfg, d, port, None);
    am.wait_ready("alertmanager");
    (am, port)
}

/// A trainer stand-in writing `log` on its stdout: two healthy records, then, once
/// `trigger` exists, a record whose loss is NaN, then a tick count in `ticks` every 50 ms
/// (the proof that it runs).
pub(crate) fn trainer(log: &Path, trigger: &Path, ticks: &Path) -> Guard {
    shell_writing(
        log,
        &format!(
            "echo \"{{'loss': 2.5, 'grad_norm': 1.2, 'learning_rate': 1e-05, 'epoch': 0.1}}\"\n\
             echo \"{{'loss': 2.4, 'grad_norm': 1.1, 'learning_rate': 1e-05, 'epoch': 0.2}}\"\n\
             while [ ! -e '{t}' ]; do sleep 0.05; done\n\
             echo \"{{'loss': nan, 'grad_norm': nan, 'learning_rate': 1e-05, 'epoch': 0.3}}\"\n\
             i=0; while :; do i=$((i+1)); echo $i > '{k}'; sleep 0.05; done\n",
            t = trigger.display(),
            k = ticks.display()
        ),
    )
}

/// `sh -c script` with its stdout appended to `log` (so it holds the log open, as a trainer
/// does), a clean environment but `PATH`, in a process group of its own.
fn shell_writing(log: &Path, script: &str) -> Guard {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Guard(
        Command::new("sh")
            .args(["-c", script])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(out)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    )
}

fn ticks(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the count in `p` grows within a few seconds.
fn advances(p: &Path) -> bool {
    let before = ticks(p);
    wait_for(Duration::from_secs(10), || ticks(p) > before)
}

fn actions_total(exposition: &str, action: &str, alert: &str, result: &str) -> f64 {
    value(
        exposition,
        "gpu_train_exporter_actions_total",
        &[("action", action), ("alert", alert), ("result", result)],
    )
    .unwrap_or(0.0)
}

#[test]
fn a_nan_alert_pauses_its_run_until_silenced_and_a_dry_run_only_counts() {
    if !require_tool("prometheus")
        || !require_tool("promtool")
        || !require_tool("prometheus-alertmanager")
        || !require_tool("amtool")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (am, am_port) = alertmanager(d);

    let (a_log, b_log) = (d.join("a.log"), d.join("b.log"));
    let a = trainer(&a_log, &d.join("a.go"), &d.join("a.ticks"));
    let b = trainer(&b_log, &d.join("b.go"), &d.join("b.ticks"));
    let bystander = Guard(
        Command::new("sleep")
            .arg("120")
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let cfg = d.join("gte.yml");
    std::fs::write(
        &cfg,
        format!(
            "logs:\n  - {{path: '{}', run: run-a}}\n  - {{path: '{}', run: run-b}}\n\
             attribution:\n  interval: 200ms\n\
             alertmanager:\n  url: http://127.0.0.1:{am_port}\n  poll_interval: 1s\n\
             actions:\n\
             \x20 - name: pause-on-nan\n    match: ['alertname=\"TrainingLossNaN\"']\n    runs: [run-a]\n    do: pause\n    resume_on_resolve: true\n    cooldown: 0s\n\
             \x20 - name: would-pause\n    match: ['alertname=\"TrainingLossNaN\"']\n    runs: ['run-b*']\n    do: pause\n    dry_run: true\n",
            a_log.display(),
            b_log.display()
        ),
    )
    .unwrap();
    let check = crate::harness::run(&["check-config", cfg.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let daemon = Daemon::start(&["--config", cfg.to_str().unwrap(), "--no-gpu", "--no-host"]);

    let prom_port = free_port();
    let prom_cfg = with_shipped_rules(d, am_port, &format!("127.0.0.1:{}", daemon.port));
    let mut prom = Proc::prometheus(&prom_cfg, d, prom_port);
    prom.wait_ready("prometheus");

    // both runs are seen here with their processes, neither paused, Alertmanager answers
    let attributed = wait_for(T, || {
        let m = daemon.scrape();
        value(&m, "training_run_paused", &[("run", "run-a")]) == Some(0.0)
            && value(&m, "training_run_paused", &[("run", "run-b")]) == Some(0.0)
            && value(&m, "gpu_train_exporter_alertmanager_up", &[]) == Some(1.0)
    });
    assert!(attributed, "{}\n{}", daemon.scrape(), daemon.stderr());
    assert!(!stopped(a.0.id()) && !stopped(b.0.id()));

    // both trainers print a NaN loss
    std::fs::write(d.join("a.go"), "").unwrap();
    std::fs::write(d.join("b.go"), "").unwrap();
    let fired = wait_for(T, || {
        !query(
            prom_port,
            "ALERTS{alertname=\"TrainingLossNaN\",alertstate=\"firing\"}",
        )
        .is_empty()
    });
    assert!(fired, "TrainingLossNaN never fired:\n{}", prom.output());

    // run a is paused: every process of its tree stopped
    let paused = wait_for(T, || stopped(a.0.id()));
    assert!(
        paused,
        "run-a not paused:\n{}\n{}",
        daemon.scrape(),
        daemon.stderr()
    );
    let m = daemon.scrape();
    assert_eq!(
        value(&m, "training_run_paused", &[("run", "run-a")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        actions_total(&m, "pause", "TrainingLossNaN", "ok"),
        1.0,
        "{m}"
    );
    assert_eq!(crate::harness::promtool_check_metrics(&m), "", "{m}");
    // the dry run is counted (the witness that run b was acted on), and did nothing
    let counted = wait_for(T, || {
        actions_total(&daemon.scrape(), "pause", "TrainingLossNaN", "dry_run") == 1.0
    });
    assert!(counted, "{}", daemon.scrape());
    assert!(advances(&d.join("b.ticks")), "run-b does not run");
    assert!(!stopped(b.0.id()));
    let m = daemon.scrape();
    assert_eq!(
        value(&m, "training_run_paused", &[("run", "run-b")]),
        Some(0.0),
        "{m}"
    );
    assert!(
        !stopped(bystander.0.id()),
        "a process of no run was stopped"
    );
    // while b's ticks advanced, a's did not
    let frozen = ticks(&d.join("a.ticks"));
    assert!(advances(&d.join("b.ticks")));
    assert_eq!(
        ticks(&d.join("a.ticks")),
        frozen,
        "a paused run kept running"
    );
    let log = daemon.stderr();
    assert!(
        log.contains("WARN") && log.contains("stopped (SIGSTOP)") && log.contains("run-a"),
        "{log}"
    );
    // the API and the page's data say so
    let (status, runs) = http_json(daemon.port, "GET", "/api/v1/runs", None).unwrap();
    assert_eq!(status, 200);
    let run_a = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run"] == "run-a")
        .unwrap()
        .clone();
    assert_eq!(run_a["paused"]["alert"], "TrainingLossNaN", "{run_a}");
    assert_eq!(run_a["paused"]["action"], "pause-on-nan", "{run_a}");
    let pids: Vec<u64> = run_a["paused"]["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(pids.contains(&u64::from(a.0.id())), "{run_a}");

    // a silence on run a's alert: it leaves the firing list, and the run continues
    let silence = Command::new("amtool")
        .args([
            "silence",
            "add",
            &format!("--alertmanager.url=http://127.0.0.1:{am_port}"),
            "--comment=investigating",
            "--duration=1h",
            "alertname=TrainingLossNaN",
            "run=run-a",
        ])
        .output()
        .unwrap();
    assert!(
        silence.status.success(),
        "{}",
        String::from_utf8_lossy(&silence.stderr)
    );
    let resumed = wait_for(T, || !stopped(a.0.id()));
    assert!(resumed, "run-a not resumed:\n{}", daemon.stderr());
    assert!(advances(&d.join("a.ticks")), "run-a does not run again");
    let m = daemon.scrape();
    assert_eq!(
        value(&m, "training_run_paused", &[("run", "run-a")]),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        actions_total(&m, "resume", "TrainingLossNaN", "ok"),
        1.0,
        "{m}"
    );
    assert_eq!(
        actions_total(&m, "pause", "TrainingLossNaN", "failed"),
        0.0,
        "{m}"
    );
    drop(am);
}

/// The Slurm job of the multi-node test: its id is the run label.
const JOB: &str = "7002";
const NODES: usize = 3;
const GPUS_PER_NODE: usize = 2;

/// Rank `rank` of the job: a `sleep` with the job's environment.
fn rank_process(rank: usize) -> Guard {
    let mut cmd = Command::new("sleep");
    cmd.arg("120")
        .env_clear()
        .env("SLURM_JOB_ID", JOB)
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", (rank % GPUS_PER_NODE).to_string())
        .env("WORLD_SIZE", (NODES * GPUS_PER_NODE).to_string())
        .process_group(0);
    Guard(cmd.spawn().expect("spawn a rank"))
}

/// UTC time `offset` seconds from now in RFC 3339, as Alertmanager's API takes it.
fn rfc3339(offset: i64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("{offset} seconds"),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub(crate) fn post_alert(am_port: u16, labels: &Value, ends_in: i64) {
    let body = json!([{
        "labels": labels,
        "annotations": {"summary": "test"},
        "startsAt": rfc3339(-5),
        "endsAt": rfc3339(ends_in),
    }]);
    let (status, resp) = http_json(am_port, "POST", "/api/v2/alerts", Some(&body)).unwrap();
    assert_eq!(status, 200, "{resp}");
}

#[test]
fn one_alert_pauses_the_run_on_every_node_and_exec_gets_its_environment() {
    if !require_tool("prometheus-alertmanager") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_am, am_port) = alertmanager(d);
    let ranks: Vec<Guard> = (0..NODES * GPUS_PER_NODE).map(rank_process).collect();
    let env_file = d.join("exec-env");
    let nodes: Vec<Fake> = (0..NODES)
        .map(|n| {
            let gpus: Vec<Value> = (0..GPUS_PER_NODE)
                .map(|i| {
                    let g = n * GPUS_PER_NODE + i;
                    json!({
                        "name": "NVIDIA H100 80GB HBM3",
                        "uuid": uuid(g),
                        "pci_bus_id": format!("00000000:{:02X}:00.0", 0x18 + i),
                        "processes": [{"pid": ranks[g].0.id(), "used_memory": 1u64 << 30}],
                    })
                })
                .collect();
            let mut actions = "  - name: hold\n    match: [alertname=TrainingRunHung]\n    do: pause\n    resume_on_resolve: true\n".to_string();
            if n == 0 {
                actions.push_str(&format!(
                    "  - name: tell-the-scheduler\n    match: [alertname=TrainingRunHung]\n    do: exec\n    exec: [sh, -c, 'env | grep ^GTE_ | sort > {}']\n",
                    env_file.display()
                ));
            }
            let cfg = d.join(format!("node{n}.yml"));
            std::fs::write(
                &cfg,
                format!(
                    "attribution:\n  interval: 100ms\nalertmanager:\n  urls: ['http://127.0.0.1:{}', 'http://127.0.0.1:{am_port}']\n  poll_interval: 1s\n  timeout: 1s\nactions:\n{actions}",
                    free_port()
                ),
            )
            .unwrap();
            let cfg = cfg.display().to_string();
            Fake::start(
                &json!({"driver_version": "550.54.15", "gpus": gpus}),
                &["--no-host", "--config", &cfg],
            )
        })
        .collect();
    let daemons_stderr = || Fake::stderr_of(&nodes);
    // every node sees the job's processes (named by their environment), and reaches the
    // second Alertmanager URL past the first, which nothing listens on
    let ready = wait_for(T, || {
        nodes.iter().all(|f| {
            let m = f.daemon.scrape();
            value(&m, "training_run_paused", &[("run", JOB)]) == Some(0.0)
                && value(&m, "gpu_train_exporter_alertmanager_up", &[]) == Some(1.0)
        })
    });
    assert!(ready, "{}", daemons_stderr());

    // one alert, raised once: the job is paused on all three nodes
    let labels = json!({"alertname": "TrainingRunHung", "run": JOB, "severity": "critical"});
    post_alert(am_port, &labels, 3600);
    let all = wait_for(T, || ranks.iter().all(|r| stopped(r.0.id())));
    assert!(
        all,
        "states {:?}\n{}",
        ranks.iter().map(|r| state(r.0.id())).collect::<Vec<_>>(),
        daemons_stderr()
    );
    for f in &nodes {
        let m = f.daemon.scrape();
        assert_eq!(
            value(&m, "training_run_paused", &[("run", JOB)]),
            Some(1.0),
            "{m}"
        );
        assert_eq!(
            actions_total(&m, "pause", "TrainingRunHung", "ok"),
            1.0,
            "{m}"
        );
    }

    // node 0's exec action got the documented environment
    let got = wait_for(T, || {
        std::fs::read_to_string(&env_file).is_ok_and(|s| s.contains("GTE_STATUS"))
    });
    assert!(got, "{}", daemons_stderr());
    let env = std::fs::read_to_string(&env_file).unwrap();
    let var = |k: &str| -> String {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in:\n{env}"))
            .to_string()
    };
    assert_eq!(var("GTE_RUN"), JOB);
    assert_eq!(var("GTE_ALERT"), "TrainingRunHung");
    assert_eq!(var("GTE_ACTION"), "tell-the-scheduler");
    assert_eq!(var("GTE_STATUS"), "firing");
    assert_eq!(var("GTE_SLURM_JOB_ID"), JOB);
    assert!(!var("GTE_ALERT_FINGERPRINT").is_empty());
    let labels_seen: Value = serde_json::from_str(&var("GTE_ALERT_LABELS")).unwrap();
    assert_eq!(labels_seen["severity"], "critical");
    let mut pids: Vec<u32> = var("GTE_PIDS")
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    pids.sort_unstable();
    let mut want: Vec<u32> = ranks[..GPUS_PER_NODE].iter().map(|r| r.0.id()).collect();
    want.sort_unstable();
    assert_eq!(pids, want, "node 0's processes of the job, no others");
    let m = nodes[0].daemon.scrape();
    assert!(
        wait_for(T, || actions_total(
            &nodes[0].daemon.scrape(),
            "exec",
            "TrainingRunHung",
            "ok"
        ) == 1.0),
        "{m}"
    );

    // the alert expires: every node continues its processes
    post_alert(am_port, &labels, -1);
    let resumed = wait_for(T, || ranks.iter().all(|r| !stopped(r.0.id())));
    assert!(resumed, "{}", daemons_stderr());
    for f in &nodes {
        let m = f.daemon.scrape();
        assert_eq!(
            value(&m, "training_run_paused", &[("run", JOB)]),
            Some(0.0),
            "{m}"
        );
        assert_eq!(
            actions_total(&m, "resume", "TrainingRunHung", "ok"),
            1.0,
            "{m}"
        );
    }
}

/// A trainer stand-in for `log` that first sets the shell `trap` given (`'' TERM` ignores
/// SIGTERM), then loops.
fn trapping_trainer(log: &Path, trap: &str) -> Guard {
    shell_writing(
        log,
        &format!(
            "trap {trap}\n\
             echo \"{{'loss': 2.5, 'grad_norm': 1.2, 'learning_rate': 1e-05, 'epoch': 0.1}}\"\n\
             while :; do sleep 0.05; done\n"
        ),
    )
}

#[test]
fn terminate_kills_what_ignores_sigterm_and_a_signal_reaches_the_ranks() {
    if !require_tool("prometheus-alertmanager") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_am, am_port) = alertmanager(d);
    let (t_log, s_log) = (d.join("t.log"), d.join("s.log"));
    let mark = d.join("usr1");
    let mut stubborn = trapping_trainer(&t_log, "'' TERM");
    let mut saver = trapping_trainer(&s_log, &format!("'echo got > {}' USR1", mark.display()));
    let cfg = d.join("gte.yml");
    std::fs::write(
        &cfg,
        format!(
            "logs:\n  - {{path: '{}', run: t}}\n  - {{path: '{}', run: s}}\n\
             attribution:\n  interval: 200ms\n\
             alertmanager:\n  url: http://127.0.0.1:{am_port}\n  poll_interval: 1s\n\
             actions:\n\
             \x20 - name: stop-it\n    match: [alertname=TrainingRunHung]\n    runs: [t]\n    do: terminate\n    grace_period: 1s\n\
             \x20 - name: checkpoint\n    match: [alertname=TrainingRunHung]\n    runs: [s]\n    do: signal\n    signal: SIGUSR1\n",
            t_log.display(),
            s_log.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&["--config", cfg.to_str().unwrap(), "--no-gpu", "--no-host"]);
    let seen = wait_for(T, || {
        let m = daemon.scrape();
        value(&m, "training_run_paused", &[("run", "t")]) == Some(0.0)
            && value(&m, "training_run_paused", &[("run", "s")]) == Some(0.0)
    });
    assert!(seen, "{}", daemon.stderr());
    for run in ["t", "s"] {
        post_alert(
            am_port,
            &json!({"alertname": "TrainingRunHung", "run": run}),
            3600,
        );
    }
    // SIGTERM is ignored: SIGKILL after the grace period ends it
    let mut status = None;
    let killed = wait_for(T, || {
        status = stubborn.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(killed, "{}", daemon.stderr());
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.unwrap().signal(), Some(libc::SIGKILL));
    assert!(
        daemon.stderr().contains("sent SIGKILL"),
        "{}",
        daemon.stderr()
    );
    // the checkpointing trainer got SIGUSR1 and runs on
    let got = wait_for(T, || {
        std::fs::read_to_string(&mark).is_ok_and(|s| s.contains("got"))
    });
    assert!(got, "{}", daemon.stderr());
    assert!(
        saver.0.try_wait().unwrap().is_none(),
        "the signalled trainer died"
    );
    let m = daemon.scrape();
    assert_eq!(
        actions_total(&m, "terminate", "TrainingRunHung", "ok"),
        1.0,
        "{m}"
    );
    assert_eq!(
        actions_total(&m, "signal", "TrainingRunHung", "ok"),
        1.0,
        "{m}"
    );
}

#[test]
fn alertmanager_over_tls_with_a_client_certificate_and_basic_auth() {
    if !require_tool("prometheus-alertmanager") {
        return;
    }
    let pki = crate::security::pki();
    let d = pki.dir.path();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(
        d.join("am-web.yml"),
        format!(
            "tls_server_config:\n  cert_file: {0}/tls.crt\n  key_file: {0}/tls.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {0}/ca.crt\nbasic_auth_users:\n  gte: '{hash}'\n",
            d.display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("am.yml"),
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let port = free_port();
    let am = Proc::alertmanager(&d.join("am.yml"), d, port, Some(&d.join("am-web.yml")));
    std::fs::write(d.join("good"), "s3cret\n").unwrap();
    std::fs::write(d.join("bad"), "guess\n").unwrap();
    let daemon = |password: &str, client_cert: bool| {
        let cfg = d.join(format!("gte-{password}-{client_cert}.yml"));
        let cert = if client_cert {
            format!(
                "\n    cert_file: {0}/client.crt\n    key_file: {0}/client.key",
                d.display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &cfg,
            format!(
                "alertmanager:\n  url: https://127.0.0.1:{port}\n  poll_interval: 1s\n  basic_auth:\n    username: gte\n    password_file: {}/{password}\n  tls_config:\n    ca_file: {}/ca.crt{cert}\nactions:\n  - name: a\n    match: [alertname=A]\n    do: pause\n",
                d.display(),
                d.display()
            ),
        )
        .unwrap();
        Daemon::start(&["--config", cfg.to_str().unwrap(), "--no-gpu", "--no-host"])
    };
    let good = daemon("good", true);
    let wrong_password = daemon("bad", true);
    let no_cert = daemon("good", false);
    let up = |dm: &Daemon| value(&dm.scrape(), "gpu_train_exporter_alertmanager_up", &[]);
    let polled = |dm: &Daemon, n: f64| {
        value(
            &dm.scrape(),
            "gpu_train_exporter_alertmanager_polls_total",
            &[],
        )
        .unwrap_or(0.0)
            >= n
    };
    assert!(
        wait_for(T, || up(&good) == Some(1.0)),
        "{}\n{}",
        good.stderr(),
        am.output()
    );
    // the two others have polled as often since Alertmanager answered, and failed each time
    assert!(wait_for(T, || polled(&wrong_password, 3.0) && polled(&no_cert, 3.0)));
    assert_eq!(up(&wrong_password), Some(0.0));
    assert_eq!(up(&no_cert), Some(0.0));
    assert!(
        wrong_password.stderr().contains("HTTP 401"),
        "{}",
        wrong_password.stderr()
    );
    let m = no_cert.scrape();
    assert!(
        value(&m, "gpu_train_exporter_alertmanager_poll_errors_total", &[]).unwrap_or(0.0) >= 3.0,
        "{m}"
    );
}
