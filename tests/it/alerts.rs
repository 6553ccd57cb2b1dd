//! The alert rules and the Alertmanager config, checked with the real `promtool` and `amtool`.
//!
//! Besides the hand-written unit tests in `alerts/tests/`, the NaN and divergence alerts are
//! tested on series derived from real trainer logs: each log is fed through the library's own
//! parser and run state, one record per minute, and the resulting samples become a
//! `promtool test rules` file in a temp dir. A run that diverges must alert; healthy runs,
//! including one with very noisy loss and real GRPO and DPO runs (noisy reward, growing KL),
//! must stay silent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use gpu_train_exporter::parse::{clean, Event, Format, LineParser};
use gpu_train_exporter::training::{Known, Limits, RunState};

use crate::harness::{fixture, require_tool, root};

pub const INSTANCE: &str = "node1:9842";
pub const JOB: &str = "gpu-train-exporter";
const RUNBOOK: &str =
    "https://github.com/gpu-train-exporter/gpu-train-exporter/blob/main/docs/runbooks.md";

/// The shipped rule files.
pub fn rule_files() -> Vec<PathBuf> {
    ["training", "gpu", "run", "exporter"]
        .iter()
        .map(|n| root().join(format!("alerts/{n}.rules.yml")))
        .collect()
}

fn run_tool(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Every rule of the shipped files, alerting and recording, as `(file, rule mapping)`.
pub fn all_rules() -> Vec<(PathBuf, serde_json::Value)> {
    let mut out = Vec::new();
    for f in rule_files() {
        let doc: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for g in doc["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                out.push((f.clone(), r.clone()));
            }
        }
    }
    out
}

/// Every alerting rule, as `(group file, rule mapping)`.
fn rules() -> Vec<(PathBuf, serde_json::Value)> {
    all_rules()
        .into_iter()
        .filter(|(_, r)| r.get("record").is_none())
        .collect()
}

/// The names the shipped recording rules record.
pub fn recorded_names() -> std::collections::BTreeSet<String> {
    all_rules()
        .into_iter()
        .filter_map(|(_, r)| r["record"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn promtool_checks_the_rule_files() {
    if !require_tool("promtool") {
        return;
    }
    let out = run_tool(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .args(rule_files()),
    );
    assert_eq!(out.matches("SUCCESS").count(), rule_files().len(), "{out}");
}

#[test]
fn recording_rules_are_named_by_level_and_tested() {
    // level:metric[:operations], as the Prometheus naming practice has it, and every recorded
    // name appears in a promtool unit test (as an expression or through an alert it feeds)
    let tests: String = ["run"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(root().join(format!("alerts/tests/{n}.test.yml"))).unwrap()
        })
        .collect();
    let rules = all_rules();
    let names = recorded_names();
    assert!(names.len() >= 15, "{names:?}");
    // covered: named in a test, or read by an alert or recording rule that is covered
    let mut covered: std::collections::BTreeSet<&str> = rules
        .iter()
        .filter_map(|(_, r)| r["alert"].as_str().or(r["record"].as_str()))
        .filter(|n| tests.contains(n))
        .collect();
    loop {
        let before = covered.len();
        for (_, r) in &rules {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            if covered.contains(name) {
                let expr = r["expr"].as_str().unwrap();
                covered.extend(
                    names
                        .iter()
                        .map(String::as_str)
                        .filter(|n| expr.contains(n)),
                );
            }
        }
        if covered.len() == before {
            break;
        }
    }
    for n in &names {
        let parts: Vec<&str> = n.split(':').collect();
        assert!(
            (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty()),
            "{n} is not level:metric[:operations]"
        );
        assert!(
            covered.contains(n.as_str()),
            "{n}: recorded but never checked by a promtool test"
        );
    }
}

#[test]
fn every_alert_has_severity_summary_description_and_a_runbook_section() {
    let runbooks = std::fs::read_to_string(root().join("docs/runbooks.md")).unwrap();
    let sections: Vec<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let rules = rules();
    assert!(rules.len() >= 16, "{} rules", rules.len());
    for (file, r) in rules {
        let name = r["alert"]
            .as_str()
            .unwrap_or_else(|| panic!("{file:?}: {r}"));
        assert!(
            name.chars().next().unwrap().is_ascii_uppercase() && !name.contains(['_', ' ']),
            "{name} is not CamelCase"
        );
        let sev = r["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["critical", "warning", "info"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        let a = &r["annotations"];
        let summary = a["summary"].as_str().unwrap_or("");
        assert!(
            summary.ends_with('.') && !summary.contains("{{"),
            "{name}: the summary is one static sentence: {summary:?}"
        );
        let desc = a["description"].as_str().unwrap_or("");
        let absent = r["expr"].as_str().unwrap_or("").contains("absent(");
        assert!(
            absent || desc.contains("{{ $labels.instance }}"),
            "{name}: the description names the instance: {desc:?}"
        );
        let url = a["runbook_url"].as_str().unwrap_or("");
        let anchor = url
            .strip_prefix(&format!("{RUNBOOK}#"))
            .unwrap_or_else(|| panic!("{name}: runbook_url {url:?}"));
        assert!(
            sections.iter().any(|s| s == anchor),
            "{name}: no section '## ...' for #{anchor} in docs/runbooks.md"
        );
    }
}

#[test]
fn promtool_unit_tests_pass_and_cover_every_alert() {
    if !require_tool("promtool") {
        return;
    }
    let dir = root().join("alerts/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    let out = run_tool(
        Command::new("promtool")
            .arg("test")
            .arg("rules")
            .args(&files),
    );
    assert_eq!(out.matches("SUCCESS").count(), files.len(), "{out}");

    // each alert has a case where it fires (non-empty exp_alerts) and one where it does not,
    // here or in the log-derived tests below (NaN and divergence)
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for (_, r) in rules() {
        let name = r["alert"].as_str().unwrap();
        if matches!(name, "TrainingLossNaN" | "TrainingLossDiverging") {
            continue;
        }
        let cases: Vec<&str> = text
            .split("alertname: ")
            .skip(1)
            .filter(|c| c.lines().next() == Some(name))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "{name}: no case where it must stay silent"
        );
        assert!(
            cases.iter().any(|c| c.contains("exp_labels:")),
            "{name}: no case where it must fire"
        );
    }
}

/// The state of a run after each record of its log, one record per minute.
#[derive(Debug, Clone)]
struct Sample {
    loss: Option<f64>,
    eval_loss: Option<f64>,
    grad_norm: Option<f64>,
    step: Option<f64>,
    steps_per_second: Option<f64>,
    active: bool,
    last_progress: Option<f64>,
    nonfinite: BTreeMap<String, u64>,
    /// The keys served as `training_metric{key}` (reward, KL, eval accuracies ...).
    metrics: BTreeMap<String, f64>,
    finished: bool,
}

impl Sample {
    /// The keys whose NaN/Inf counter is above 0.
    fn nan_keys(&self) -> Vec<&str> {
        self.nonfinite
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

fn sample(s: &RunState, now: f64, limits: &Limits) -> Sample {
    Sample {
        loss: s.get(Known::Loss),
        eval_loss: s.get(Known::EvalLoss),
        grad_norm: s.get(Known::GradNorm),
        step: s.step,
        steps_per_second: s.get(Known::StepsPerSecond),
        active: s.active(now, limits),
        last_progress: s.last_progress,
        nonfinite: s.nonfinite.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        metrics: s.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        finished: s.finished,
    }
}

/// Feeds `text` through the parser and run state as the daemon does (lines split on `\n` and
/// `\r`), records one sample per record, minute `k` for the k-th record, then `tail` more
/// minutes with no new line (the idle limit applies).
fn replay(text: &[u8], tail: usize) -> Vec<Sample> {
    let limits = Limits::default();
    let mut parser = LineParser::new(Format::Auto);
    let mut state = RunState::new("log", gpu_train_exporter::parse::Format::Auto);
    let mut out = Vec::new();
    for raw in text.split(|&b| b == b'\n' || b == b'\r') {
        let cleaned = clean(raw);
        let Some(event) = parser.parse(&cleaned) else {
            continue;
        };
        let is_record = matches!(event, Event::Record(_));
        let now = out.len() as f64 * 60.0;
        state.apply(event, now, &limits);
        if is_record {
            out.push(sample(&state, now, &limits));
        }
    }
    for _ in 0..tail {
        let now = out.len() as f64 * 60.0;
        out.push(sample(&state, now, &limits));
    }
    out
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "_".into(),
        Some(v) if v.is_nan() => "NaN".into(),
        Some(v) if v == f64::INFINITY => "+Inf".into(),
        Some(v) if v == f64::NEG_INFINITY => "-Inf".into(),
        Some(v) => format!("{v}"),
    }
}

/// The input series of a promtool test for `run`, as the exporter would serve them.
fn input_series(run: &str, samples: &[Sample]) -> String {
    let labels = format!("instance=\"{INSTANCE}\",job=\"{JOB}\",run=\"{run}\"");
    let mut series: Vec<(String, Vec<Option<f64>>)> = vec![
        (
            format!("training_loss{{{labels}}}"),
            samples.iter().map(|s| s.loss).collect(),
        ),
        (
            format!("training_eval_loss{{{labels}}}"),
            samples.iter().map(|s| s.eval_loss).collect(),
        ),
        (
            format!("training_grad_norm{{{labels}}}"),
            samples.iter().map(|s| s.grad_norm).collect(),
        ),
        (
            format!("training_step{{{labels}}}"),
            samples.iter().map(|s| s.step).collect(),
        ),
        (
            format!("training_steps_per_second{{{labels}}}"),
            samples.iter().map(|s| s.steps_per_second).collect(),
        ),
        (
            format!("training_run_active{{{labels}}}"),
            samples
                .iter()
                .map(|s| Some(if s.active { 1.0 } else { 0.0 }))
                .collect(),
        ),
        (
            format!("training_last_progress_timestamp_seconds{{{labels}}}"),
            samples.iter().map(|s| s.last_progress).collect(),
        ),
        (
            format!("training_run_finished{{{labels}}}"),
            samples
                .iter()
                .map(|s| Some(if s.finished { 1.0 } else { 0.0 }))
                .collect(),
        ),
    ];
    let keys: std::collections::BTreeSet<&String> =
        samples.iter().flat_map(|s| s.nonfinite.keys()).collect();
    for key in keys {
        series.push((
            format!("training_nonfinite_values_total{{{labels},key=\"{key}\"}}"),
            samples
                .iter()
                .map(|s| s.nonfinite.get(key).map(|&c| c as f64))
                .collect(),
        ));
    }
    let keys: std::collections::BTreeSet<&String> =
        samples.iter().flat_map(|s| s.metrics.keys()).collect();
    for key in keys {
        series.push((
            format!("training_metric{{{labels},key=\"{key}\"}}"),
            samples
                .iter()
                .map(|s| s.metrics.get(key).copied())
                .collect(),
        ));
    }
    let mut out = String::new();
    for (name, values) in series {
        let values: Vec<String> = values.into_iter().map(fmt_value).collect();
        writeln!(
            out,
            "      - series: '{name}'\n        values: '{}'",
            values.join(" ")
        )
        .unwrap();
    }
    out
}

/// A promtool test file for `run` with the given test sections, run with the shipped
/// training rules. Returns promtool's output.
fn promtool_test(dir: &Path, run: &str, samples: &[Sample], checks: &str) -> String {
    let file = dir.join(format!("{}.test.yml", run.replace('/', "_")));
    let text = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - name: {run}\n    interval: 1m\n    input_series:\n{}{checks}",
        root().join("alerts/training.rules.yml").display(),
        input_series(run, samples),
    );
    std::fs::write(&file, text).unwrap();
    let out = Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool test rules {}:\n{text}",
        file.display()
    );
    text
}

/// A promql check: which alerts of `run` were ever firing up to the end of the series.
fn fired_alerts_check(run: &str, end_minute: usize, alerts: &[&str]) -> String {
    let mut s = format!(
        "    promql_expr_test:\n      - expr: 'max by (alertname, run) (max_over_time(ALERTS{{alertstate=\"firing\",run=\"{run}\"}}[1d]))'\n        eval_time: {end_minute}m\n        exp_samples:"
    );
    if alerts.is_empty() {
        s.push_str(" []\n");
    }
    s.push('\n');
    for a in alerts {
        writeln!(
            s,
            "          - labels: '{{alertname=\"{a}\",run=\"{run}\"}}'\n            value: 1"
        )
        .unwrap();
    }
    s
}

/// The exact TrainingLossNaN alerts expected at the first record that counted a NaN.
fn nan_alert_check(run: &str, samples: &[Sample]) -> (usize, String) {
    let k = samples
        .iter()
        .position(|s| !s.nan_keys().is_empty())
        .expect("the log has a NaN record");
    let mut s = format!(
        "    alert_rule_test:\n      - eval_time: {}m\n        alertname: TrainingLossNaN\n        exp_alerts: []\n      - eval_time: {k}m\n        alertname: TrainingLossNaN\n        exp_alerts:\n",
        k.saturating_sub(1)
    );
    for key in samples[k]
        .nonfinite
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, _)| k)
    {
        write!(
            s,
            "          - exp_labels: {{severity: critical, instance: \"{INSTANCE}\", job: {JOB}, run: \"{run}\", key: \"{key}\"}}\n            exp_annotations:\n              summary: A training run logged a NaN or infinite value.\n              description: 'Run {run} on {INSTANCE} logged a NaN or infinite {key} in the last 10 minutes.'\n              runbook_url: {RUNBOOK}#traininglossnan\n"
        )
        .unwrap();
    }
    (k, s)
}

fn log(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap()
}

#[test]
fn a_diverging_run_alerts_nan_and_divergence() {
    if !require_tool("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let samples = replay(&log("transformers/train-diverge.log"), 30);
    let (k, nan) = nan_alert_check("diverge", &samples);
    // the log: 6.02, 4.88, 4.62, 6.76, 1.885e12, then NaN; NaN is counted for loss and
    // grad_norm at the same record
    assert_eq!(k, 5, "first NaN record");
    assert_eq!(samples[k].nan_keys(), ["grad_norm", "loss"]);
    let end = samples.len() - 1;
    let checks = format!(
        "{nan}{}",
        fired_alerts_check(
            "diverge",
            end,
            &["TrainingLossDiverging", "TrainingLossNaN"]
        )
    );
    promtool_test(dir.path(), "diverge", &samples, &checks);
}

#[test]
fn the_filtered_nan_trap_still_alerts() {
    if !require_tool("promtool") {
        return;
    }
    // logging_nan_inf_filter=True: the loss reads 0 while grad_norm is nan
    let dir = tempfile::tempdir().unwrap();
    let samples = replay(&log("transformers/train-nan-filtered.log"), 30);
    let (k, nan) = nan_alert_check("filtered", &samples);
    assert_eq!(samples[k].nan_keys(), ["grad_norm"]);
    assert!(samples[k].loss.unwrap() > 1e11, "the blow-up record");
    assert!(samples[k + 1..]
        .iter()
        .filter(|s| !s.finished)
        .all(|s| s.loss == Some(0.0)));
    let end = samples.len() - 1;
    let checks = format!(
        "{nan}{}",
        fired_alerts_check(
            "filtered",
            end,
            &["TrainingLossDiverging", "TrainingLossNaN"]
        )
    );
    promtool_test(dir.path(), "filtered", &samples, &checks);
}

#[test]
fn healthy_runs_stay_silent_including_noisy_loss() {
    if !require_tool("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (run, rel, min_records) in [
        ("normal", "transformers/train-normal.log", 30),
        ("noisy", "transformers/train-noisy.log", 200),
        ("swift", "ms-swift/train.log", 20),
        (
            "swift-jsonl",
            "ms-swift/output/v0-20261128-120712/logging.jsonl",
            20,
        ),
        ("grpo", "trl/grpo.log", 60),
        ("dpo", "trl/dpo.log", 60),
    ] {
        // 90 more minutes after the end: finished runs do not stall, crash or slow down
        let samples = replay(&log(rel), 90);
        assert!(
            samples.len() - 90 >= min_records,
            "{rel}: {}",
            samples.len()
        );
        assert!(
            samples
                .iter()
                .all(|s| s.nonfinite.values().all(|&n| n == 0)),
            "{rel} has no NaN"
        );
        if run == "noisy" {
            // the noise is real: later records swing by more than 2x
            let losses: Vec<f64> = samples[100..200].iter().filter_map(|s| s.loss).collect();
            let (lo, hi) = losses
                .iter()
                .fold((f64::MAX, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            assert!(hi / lo > 2.0, "noisy: {lo}..{hi}");
        }
        if run == "grpo" {
            // the per-batch reward is noisy and the KL grows a hundredfold: what the reward
            // and KL alerts must not mistake for a collapse or a blow-up
            let series =
                |key: &str| -> Vec<f64> { samples[..60].iter().map(|s| s.metrics[key]).collect() };
            let reward = series("reward");
            let drops = reward.windows(2).filter(|w| w[1] < w[0] - 0.1).count();
            assert!(drops >= 5, "grpo reward drops by 0.1 or more: {drops}");
            let kl = series("kl");
            assert!(kl[59] > 100.0 * kl[0], "grpo kl {} -> {}", kl[0], kl[59]);
        }
        if run == "dpo" {
            let first = &samples[0].metrics;
            let last = &samples[samples.len() - 1].metrics;
            assert!(last["rewards/margins"] > first["rewards/margins"] + 0.1);
            assert!(samples.iter().any(|s| s.eval_loss.is_some()));
            assert!(last.contains_key("eval_rewards/accuracies"));
        }
        let end = samples.len() - 1;
        promtool_test(
            dir.path(),
            run,
            &samples,
            &fired_alerts_check(run, end, &[]),
        );
    }
}

/// The GRPO run's records while it trains (before its summary), then `extra` more minutes
/// of records made by `f` from the k-th training record, the step going on from the last.
fn grpo_then(extra: usize, f: impl Fn(usize, &Sample) -> Sample) -> Vec<Sample> {
    let samples: Vec<Sample> = replay(&log("trl/grpo.log"), 0)
        .into_iter()
        .filter(|s| !s.finished)
        .collect();
    assert_eq!(samples.len(), 60, "60 training records");
    let last = samples[59].step.unwrap();
    let mut out = samples.clone();
    for k in 0..extra {
        let mut s = f(k, &samples[k % 60]);
        s.step = Some(last + 1.0 + k as f64);
        s.active = true;
        s.finished = false;
        s.last_progress = Some((60 + k) as f64 * 60.0);
        out.push(s);
    }
    out
}

#[test]
fn a_real_grpo_reward_that_falls_back_to_its_start_collapses() {
    if !require_tool("promtool") {
        return;
    }
    // after its 60 steps the run goes on with the rewards of its first 30 again (0.04-0.39
    // around 0.17, against about 0.44 at the end): as noisy as before, at the level it began
    let samples = grpo_then(40, |_, s| s.clone());
    let dir = tempfile::tempdir().unwrap();
    let checks = format!(
        "    alert_rule_test:\n      - eval_time: 60m\n        alertname: TrainingRewardCollapse\n        exp_alerts: []\n{}",
        fired_alerts_check("grpo-collapse", samples.len() - 1, &["TrainingRewardCollapse"])
    );
    promtool_test(dir.path(), "grpo-collapse", &samples, &checks);
}

#[test]
fn a_real_grpo_kl_that_jumps_tenfold_diverges() {
    if !require_tool("promtool") {
        return;
    }
    // the last 20 records again with their KL ten times as high (about 6 instead of 0.6)
    let samples = grpo_then(20, |k, _| {
        let mut s = replay(&log("trl/grpo.log"), 0)[40 + k].clone();
        *s.metrics.get_mut("kl").unwrap() *= 10.0;
        s
    });
    let dir = tempfile::tempdir().unwrap();
    let checks = format!(
        "    alert_rule_test:\n      - eval_time: 60m\n        alertname: TrainingKlDivergence\n        exp_alerts: []\n{}",
        fired_alerts_check("grpo-kl", samples.len() - 1, &["TrainingKlDivergence"])
    );
    promtool_test(dir.path(), "grpo-kl", &samples, &checks);
}

#[test]
fn a_run_cut_short_stalls_then_crashes() {
    if !require_tool("promtool") {
        return;
    }
    // the normal log up to its 15th record: the process died there, no summary
    let text = log("transformers/train-normal.log");
    let mut records = 0;
    let mut cut = text.len();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        records += String::from_utf8_lossy(line).matches("{'loss'").count();
        if records >= 15 {
            cut = text
                .split(|&b| b == b'\n')
                .take(i + 1)
                .map(|l| l.len() + 1)
                .sum();
            break;
        }
    }
    let samples = replay(&text[..cut], 80);
    let gone = samples
        .iter()
        .position(|s| !s.active)
        .expect("the run goes inactive after the idle limit");
    assert!(gone >= 60, "active until the idle limit: {gone}");
    let dir = tempfile::tempdir().unwrap();
    let checks = format!(
        "    alert_rule_test:\n      - eval_time: {}m\n        alertname: TrainingRunCrashed\n        exp_alerts: []\n      - eval_time: {gone}m\n        alertname: TrainingRunCrashed\n        exp_alerts:\n          - exp_labels: {{severity: critical, instance: \"{INSTANCE}\", job: {JOB}, run: cut}}\n            exp_annotations:\n              summary: A training run stopped without its end-of-training summary.\n              description: 'Run cut on {INSTANCE} stopped being active without printing its end-of-training summary.'\n              runbook_url: {RUNBOOK}#trainingruncrashed\n      - eval_time: {}m\n        alertname: TrainingStalled\n        exp_alerts: []\n{}",
        gone - 1,
        gone,
        fired_alerts_check(
            "cut",
            samples.len() - 1,
            &["TrainingRunCrashed", "TrainingStalled"]
        )
    );
    promtool_test(dir.path(), "cut", &samples, &checks);
}

#[test]
fn amtool_checks_the_alertmanager_config() {
    if !require_tool("amtool") {
        return;
    }
    let out = run_tool(
        Command::new("amtool")
            .arg("check-config")
            .arg(root().join("alerts/alertmanager.yml")),
    );
    assert!(out.contains("SUCCESS"), "{out}");
    assert!(out.contains("2 inhibit rules"), "{out}");
    let cfg = std::fs::read_to_string(root().join("alerts/alertmanager.yml")).unwrap();
    assert!(
        cfg.contains("api_url_file:"),
        "the webhook URL comes from a file"
    );
    assert!(
        !cfg.contains("hooks.slack.com"),
        "no webhook URL in the config"
    );
}

#[test]
fn slack_templates_render_run_runbook_and_dashboard_links() {
    if !require_tool("amtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.json");
    let alert = serde_json::json!({
        "status": "firing",
        "labels": {"alertname": "TrainingLossNaN", "instance": INSTANCE, "job": JOB,
                   "run": "llama/v0-20261128", "key": "grad_norm", "severity": "critical"},
        "annotations": {
            "summary": "A training run logged a NaN or infinite value.",
            "description": "Run llama/v0-20261128 on node1:9842 logged a NaN or infinite grad_norm in the last 10 minutes.",
            "runbook_url": format!("{RUNBOOK}#traininglossnan")
        },
        "startsAt": "2026-11-28T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": "1"
    });
    let body = serde_json::json!({
        "receiver": "slack", "status": "firing", "alerts": [alert],
        "groupLabels": {"alertname": "TrainingLossNaN", "instance": INSTANCE},
        "commonLabels": {"alertname": "TrainingLossNaN", "instance": INSTANCE,
                         "severity": "critical", "run": "llama/v0-20261128"},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093"
    });
    std::fs::write(&data, body.to_string()).unwrap();
    let render = |name: &str| {
        run_tool(
            Command::new("amtool")
                .arg("template")
                .arg("render")
                .arg(format!(
                    "--template.glob={}",
                    root().join("alerts/templates/*.tmpl").display()
                ))
                .arg(format!("--template.data={}", data.display()))
                .arg(format!("--template.text={{{{ template \"{name}\" . }}}}")),
        )
    };
    assert_eq!(
        render("gte.slack.title").trim(),
        "[FIRING:1] TrainingLossNaN on node1:9842"
    );
    let text = render("gte.slack.text");
    assert!(
        text.contains("*CRITICAL* A training run logged a NaN or infinite value."),
        "{text}"
    );
    assert!(text.contains("run: `llama/v0-20261128`"), "{text}");
    assert!(
        text.contains(&format!("<{RUNBOOK}#traininglossnan|Runbook>")),
        "{text}"
    );
    assert!(
        text.contains("/d/gte-training/gpu-train-exporter-training?var-instance=node1%3A9842&var-run=llama%2Fv0-20261128|Dashboard>"),
        "{text}"
    );
    assert_eq!(render("gte.slack.color").trim(), "danger");
}

#[test]
fn slack_links_run_alerts_to_the_run_board_and_names_the_cause() {
    if !require_tool("amtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.json");
    let labels = serde_json::json!({"alertname": "TrainingRunHung", "instance": INSTANCE,
        "job": JOB, "run": "slurm-4242", "cause": "collective", "severity": "critical"});
    let alert = serde_json::json!({
        "status": "firing", "labels": labels,
        "annotations": {
            "summary": "A training run is hung in a collective operation.",
            "description": "Run slurm-4242 (log on node1:9842) has not advanced its step for 20m 0s.",
            "runbook_url": format!("{RUNBOOK}#trainingrunhung")
        },
        "startsAt": "2026-11-28T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": "1"
    });
    let body = serde_json::json!({
        "receiver": "slack", "status": "firing", "alerts": [alert],
        "groupLabels": {"alertname": "TrainingRunHung", "instance": INSTANCE},
        "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093"
    });
    std::fs::write(&data, body.to_string()).unwrap();
    let render = |name: &str| {
        run_tool(
            Command::new("amtool")
                .arg("template")
                .arg("render")
                .arg(format!(
                    "--template.glob={}",
                    root().join("alerts/templates/*.tmpl").display()
                ))
                .arg(format!("--template.data={}", data.display()))
                .arg(format!("--template.text={{{{ template \"{name}\" . }}}}")),
        )
    };
    let url = render("gte.dashboard_url");
    assert!(
        url.trim()
            .ends_with("/d/gte-run/gpu-train-exporter-run-across-nodes?var-run=slurm-4242"),
        "{url}"
    );
    let text = render("gte.slack.text");
    assert!(text.contains("cause: `collective`"), "{text}");
    assert!(
        text.contains(
            "/d/gte-run/gpu-train-exporter-run-across-nodes?var-run=slurm-4242|Dashboard>"
        ),
        "{text}"
    );
}

/// The Slack template names a crash's cause (the `event` label TrainingRunCrashed joins from
/// `training_run_last_error_info`) in the title and the text, and says nothing of a cause
/// when there is none.
#[test]
fn slack_message_names_a_crashs_cause() {
    if !require_tool("amtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let render = |labels: serde_json::Value, description: &str| -> String {
        let mut common =
            serde_json::json!({"alertname": "TrainingRunCrashed", "instance": "node1:9842"});
        if let Some(e) = labels.get("event") {
            common["event"] = e.clone();
        }
        let mut all = labels.clone();
        for (k, v) in common.as_object().unwrap() {
            all[k] = v.clone();
        }
        all["severity"] = "critical".into();
        let data = serde_json::json!({
            "receiver": "slack", "status": "firing", "groupLabels": {}, "commonAnnotations": {},
            "externalURL": "", "commonLabels": common,
            "alerts": [{"status": "firing", "labels": all, "annotations": {
                "summary": "A training run stopped without its end-of-training summary.",
                "description": description, "runbook_url": "https://example.com/r"}}],
        });
        let path = dir.path().join("data.json");
        std::fs::write(&path, data.to_string()).unwrap();
        run_tool(Command::new("amtool").args([
            "template",
            "render",
            &format!(
                "--template.glob={}",
                root().join("alerts/templates/slack.tmpl").display()
            ),
            "--template.text={{ template \"gte.slack.title\" . }}\n{{ template \"gte.slack.text\" . }}",
            &format!("--template.data={}", path.display()),
        ]))
    };
    let with = render(
        serde_json::json!({"run": "ddp", "event": "oom", "rank": "1", "message": "rank 1: torch.OutOfMemoryError: CUDA out of memory."}),
        "Run ddp on node1:9842 crashed: CUDA out of memory at step 137 (rank 1). Log: torch.OutOfMemoryError: CUDA out of memory.",
    );
    assert!(
        with.starts_with("[FIRING:1] TrainingRunCrashed (oom) on node1:9842"),
        "{with}"
    );
    assert!(with.contains("cause: `oom` rank: `1`"), "{with}");
    assert!(
        with.contains(
            "crashed: CUDA out of memory at step 137 (rank 1). Log: torch.OutOfMemoryError"
        ),
        "{with}"
    );
    let without = render(
        serde_json::json!({"run": "ddp"}),
        "Run ddp on node1:9842 stopped being active without printing its end-of-training summary.",
    );
    assert!(
        without.starts_with("[FIRING:1] TrainingRunCrashed on node1:9842"),
        "{without}"
    );
    assert!(!without.contains("cause:"), "{without}");
    assert!(!without.contains("rank:"), "{without}");
}
