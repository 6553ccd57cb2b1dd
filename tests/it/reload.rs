//! SIGHUP to the real daemon: the config file, its logs and rules, and the web config are
//! read again; an invalid config is refused and the running one stays; SIGUSR1 and SIGUSR2
//! are logged and ignored.

use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(10);

fn records(d: &Daemon, run: &str) -> Option<f64> {
    value(&d.scrape(), "training_records_total", &[("run", run)])
}

#[test]
fn sighup_reloads_logs_and_rules_and_keeps_unchanged_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a.log"),
        dir.path().join("b.log"),
        dir.path().join("c.log"),
    );
    append(&a, "{'loss': 2.0}\n{'loss': 1.5}\n");
    append(&b, "{'loss': 3.0}\n");
    append(&c, "{'loss': 4.0}\n");
    let cfg = dir.path().join("config.yml");
    let logs = |names: &[(&str, &std::path::Path)]| -> String {
        let mut s = String::from("logs:\n");
        for (run, p) in names {
            s.push_str(&format!("  - path: {}\n    run: {run}\n", p.display()));
        }
        s
    };
    std::fs::write(&cfg, logs(&[("a", &a), ("b", &b), ("c", &c)])).unwrap();
    let mut d = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    assert!(wait_for(T, || records(&d, "a") == Some(2.0)
        && records(&d, "b") == Some(1.0)
        && records(&d, "c") == Some(1.0)));
    // a's log is deleted: its run lives on with its counters, and a run made anew from its
    // source could not have them.
    std::fs::remove_file(&a).unwrap();
    assert!(d.wait_log("log file deleted", 1, T), "{}", d.stderr());

    // b leaves the config, a rule comes in.
    std::fs::write(
        &cfg,
        format!(
            "{}rules:\n  - name: rollout_reward\n    pattern: 'reward=(?P<v>\\S+)'\n    \
             value: v\n",
            logs(&[("a", &a), ("c", &c)])
        ),
    )
    .unwrap();
    d.signal(1);
    assert!(d.wait_log("configuration reloaded", 1, T), "{}", d.stderr());
    append(&c, "rollout 7 reward=0.75\n");
    assert_eq!(
        d.wait_value("rollout_reward", &[("run", "c")], 0.75, T),
        Some(0.75),
        "{}",
        d.stderr()
    );
    let m = d.scrape();
    assert_eq!(
        value(&m, "training_records_total", &[("run", "a")]),
        Some(2.0)
    );
    assert_eq!(
        value(&m, "training_records_total", &[("run", "b")]),
        None,
        "{m}"
    );
    assert_eq!(
        value(&m, "training_records_total", &[("run", "c")]),
        Some(1.0)
    );
    assert!(d.stderr().contains("logs removed"), "{}", d.stderr());

    // A broken config is refused: the daemon goes on with the running one.
    std::fs::write(&cfg, "logs: [\n").unwrap();
    d.signal(1);
    assert!(
        d.wait_log("configuration reload refused", 1, T),
        "{}",
        d.stderr()
    );
    append(&c, "rollout 8 reward=0.5\n");
    assert_eq!(
        d.wait_value("rollout_reward", &[("run", "c")], 0.5, T),
        Some(0.5)
    );
    assert!(d.child_alive());

    // SIGUSR1 and SIGUSR2 are logged and ignored.
    d.signal(10);
    d.signal(12);
    assert!(d.wait_log("SIGUSR1 ignored", 1, T), "{}", d.stderr());
    assert!(d.wait_log("SIGUSR2 ignored", 1, T), "{}", d.stderr());
    assert!(d.child_alive());
    assert_eq!(d.get("/healthz").0, 200);
    let status = d.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sighup_reloads_the_web_config_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )
    .unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, "web:\n  config_file: web.yml\n").unwrap();
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let (status, head, _) = http_get_with(d.port, "/metrics", &[]).unwrap();
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("x-frame-options: deny"));

    // Basic auth switched on, and two settings that need a restart changed.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
    std::fs::write(
        &cfg,
        "web:\n  config_file: web.yml\n  telemetry_path: /prom\n  max_requests: 7\n",
    )
    .unwrap();
    d.signal(1);
    assert!(d.wait_log("configuration reloaded", 1, T), "{}", d.stderr());
    let log = d.stderr();
    assert!(log.contains("basic-auth users added: prometheus"), "{log}");
    assert!(log.contains("response headers changed"), "{log}");
    assert!(
        log.contains("web.telemetry_path") && log.contains("takes effect after a restart"),
        "{log}"
    );
    assert!(log.contains("web.max_requests"), "{log}");
    let (status, head, _) = http_get_with(d.port, "/metrics", &[]).unwrap();
    assert_eq!(status, 401, "{head}");
    assert!(!head.to_ascii_lowercase().contains("x-frame-options"));
    // "prometheus:s3cret"
    let auth = "Basic cHJvbWV0aGV1czpzM2NyZXQ=";
    let (status, _, body) = http_get_with(d.port, "/metrics", &[("Authorization", auth)]).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("gpu_train_exporter_build_info"));
    assert_eq!(d.get("/healthz").0, 200);
}
