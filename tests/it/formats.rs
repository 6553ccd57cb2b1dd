//! Trainer formats beyond the golden files: forcing a format, and Lightning's `metrics.csv`
//! rewritten whole while the daemon follows it.

use std::time::Duration;

use crate::harness::*;

#[test]
fn a_forced_format_ignores_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mixed.log");
    std::fs::write(
        &log,
        "iteration 10/ 100 | lm loss: 2.5E+00 |\n\
         steps: 11 loss: 0.5 iter time (s): 1.0 samples/sec: 8.0\n\
         {'loss': 0.25}\n",
    )
    .unwrap();
    let p = log.to_str().unwrap();
    let out = run(&["parse", "--format", "megatron", p]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let r = [("run", p)];
    assert_eq!(value(&text, "training_loss", &r), Some(2.5));
    assert_eq!(value(&text, "training_records_total", &r), Some(1.0));
    let out = run(&["parse", p]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(value(&text, "training_loss", &r), Some(0.25));
    assert_eq!(value(&text, "training_records_total", &r), Some(3.0));
    let out = run(&["parse", "--format", "nope", p]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn lightning_csv_rewritten_whole_is_not_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("metrics.csv");
    std::fs::write(&csv, "epoch,step,train_loss\r\n0,9,0.5\r\n0,19,0.4\r\n").unwrap();
    let arg = format!("csv={}", csv.display());
    let d = Daemon::start(&["--log", &arg]);
    let r = [("run", "csv")];
    let t = Duration::from_secs(10);
    d.wait_value("training_records_total", &r, 2.0, t);
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&csv).unwrap());
    // what CSVLogger does when `val_loss` first appears: rewrite the file in place with the
    // wider header (O_TRUNC, same inode), then append the new row
    std::fs::write(
        &csv,
        "epoch,step,train_loss,val_loss\r\n0,9,0.5,\r\n0,19,0.4,\r\n0,19,,0.45\r\n",
    )
    .unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&csv).unwrap()),
        ino
    );
    d.wait_value("training_eval_loss", &r, 0.45, t);
    append(&csv, "1,29,0.3,\r\n");
    d.wait_value("training_step", &r, 29.0, t);
    let m = d.scrape();
    assert_eq!(value(&m, "training_records_total", &r), Some(4.0));
    assert_eq!(value(&m, "training_loss", &r), Some(0.3));
    assert_eq!(value(&m, "training_parse_errors_total", &r), Some(0.0));
}

#[test]
fn user_rules_checked_by_check_config_and_shown_by_parse() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("grpo.log");
    let other = dir.path().join("other.log");
    let lines = "rollout 1 reward=0.25 env=math\n\
                 \x1b[32mrollout 2 reward=0.75 env=code\x1b[0m\n\
                 rollout 3 reward=0.5 env=math\n\
                 [rank0]: Retrying NCCL op\n\
                 Retrying NCCL op\n\
                 {'loss': 1.5}\n";
    std::fs::write(&log, lines).unwrap();
    std::fs::write(&other, lines).unwrap();
    let config = dir.path().join("rules.yaml");
    std::fs::write(
        &config,
        r#"rules:
  - name: rollout_reward
    help: Latest rollout reward by environment.
    pattern: 'reward=(?P<reward>\S+) env=(?P<env>\w+)'
    value: reward
    labels: [env]
    runs: ["*grpo.log"]
  - name: nccl_retries_total
    type: counter
    pattern: '^Retrying NCCL'
"#,
    )
    .unwrap();
    let out = run(&["check-config", config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 rule(s)"));

    let (l, o) = (log.to_str().unwrap(), other.to_str().unwrap());
    let out = run(&["parse", "--config", config.to_str().unwrap(), l, o]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# TYPE rollout_reward gauge\n"), "{text}");
    assert!(text.contains("# HELP rollout_reward Latest rollout reward by environment.\n"));
    assert_eq!(
        value(&text, "rollout_reward", &[("run", l), ("env", "math")]),
        Some(0.5)
    );
    assert_eq!(
        value(&text, "rollout_reward", &[("run", l), ("env", "code")]),
        Some(0.75)
    );
    // scoped: the other run has no reward series, but the unscoped counter counts in both
    // (the `[rank0]:` prefix is stripped before rules see the line)
    assert_eq!(samples(&text, "rollout_reward").len(), 2);
    for r in [l, o] {
        assert_eq!(value(&text, "nccl_retries_total", &[("run", r)]), Some(2.0));
        // the built-in parsers still read the same lines
        assert_eq!(value(&text, "training_loss", &[("run", r)]), Some(1.5));
    }

    // a broken rule: exit 2, the message names the rule's key
    std::fs::write(
        &config,
        "rules:\n  - name: ok\n    pattern: '(?P<v>\\d+)'\n    value: v\n  - name: bad\n    pattern: '(?P<v>[0-9'\n    value: v\n",
    )
    .unwrap();
    for args in [
        vec!["check-config", config.to_str().unwrap()],
        vec!["parse", "--config", config.to_str().unwrap(), l],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("rules[1].pattern"), "{err}");
    }
    std::fs::write(
        &config,
        "rules:\n  - name: training_loss\n    pattern: '(?P<v>\\d+)'\n    value: v\n",
    )
    .unwrap();
    let out = run(&["check-config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rules[0].name"));
}

/// A counter rule fed `nan`, a negative and an infinite increment skips them, counts them as
/// parse errors and goes on counting.
#[test]
fn a_counter_rule_is_not_poisoned_by_nan_or_a_negative_increment() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("r.log");
    std::fs::write(
        &log,
        "tokens=5\ntokens=nan\ntokens=-3\ntokens=inf\ntokens=2\n",
    )
    .unwrap();
    let config = dir.path().join("rules.yaml");
    std::fs::write(
        &config,
        "rules:\n  - name: tokens_seen_total\n    type: counter\n    pattern: 'tokens=(?P<count>\\S+)'\n    value: count\n",
    )
    .unwrap();
    let l = log.to_str().unwrap();
    let out = run(&["parse", "--config", config.to_str().unwrap(), l]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        value(&text, "tokens_seen_total", &[("run", l)]),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "training_parse_errors_total", &[("run", l)]),
        Some(3.0)
    );
}

/// Every family the daemon serves (training, vLLM, GPU, host, its own) starts with a prefix
/// that user rules may not take, so a rule can never collide with one.
#[test]
fn every_family_the_daemon_serves_has_a_prefix_rules_may_not_take() {
    use gpu_train_exporter::parse::rules::RESERVED_PREFIXES;

    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("train.log");
    std::fs::copy(fixture("transformers/train-diverge.log"), &hf).unwrap();
    let (mut args, env) = crate::dashboards::daemon_args(dir.path(), &hf);
    let config = dir.path().join("rules.yaml");
    std::fs::write(
        &config,
        "rules:\n  - name: user_rule_total\n    type: counter\n    pattern: 'loss'\n",
    )
    .unwrap();
    let kubelet = crate::pods::Kubelet::start(crate::pods::pods(vec![crate::pods::pod(
        "ns",
        "p",
        "c",
        &[("nvidia.com/gpu", &["GPU-0"])],
    )]));
    for a in [
        "--log".to_string(),
        format!("vllm={}", fixture("vllm/serve.log").display()),
        "--config".to_string(),
        config.display().to_string(),
        "--attribution.interval".to_string(),
        "100ms".to_string(),
        "--pods.socket".to_string(),
        kubelet.socket().to_string(),
    ] {
        args.push(a);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = Daemon::start_env(&args, &env);
    // witnesses of each subsystem (some families need a second sample)
    let witnesses = [
        "training_loss",
        "inference_requests_running",
        "gpu_power_watts",
        "gpu_xid_errors_total",
        "host_memory_used_bytes",
        "gpu_pod_info",
        "gpu_train_exporter_build_info",
        "user_rule_total",
    ];
    let mut families = std::collections::BTreeSet::new();
    let all_seen = wait_for(Duration::from_secs(20), || {
        for l in d.scrape().lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                families.insert(rest.split(' ').next().unwrap().to_string());
            }
        }
        witnesses.iter().all(|w| families.contains(*w))
    });
    assert!(all_seen, "{families:?}");
    let foreign: Vec<&String> = families
        .iter()
        .filter(|f| *f != "user_rule_total")
        .filter(|f| !RESERVED_PREFIXES.iter().any(|p| f.starts_with(p)))
        .collect();
    assert!(
        foreign.is_empty(),
        "not reserved for the daemon: {foreign:?}"
    );
}
