//! The Grafana dashboards: their JSON model, every query valid PromQL (parsed with
//! `promql-parser`), and every metric a query or an alert rule names served by the real
//! daemon.
//!
//! The served names come from scraping the daemon, not from a list kept here: training
//! metrics from the daemon following fixture logs, GPU metrics from the daemon running on the
//! fake NVML library when the workspace has one (`tests/fake-nvml`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use promql_parser::parser::{self, Expr};

use crate::harness::{append, fixture, root, Daemon};

/// The dashboards and their stable uids.
pub const DASHBOARDS: [(&str, &str); 3] = [
    ("training.json", "gte-training"),
    ("gpu-node.json", "gte-gpu-node"),
    ("run.json", "gte-run"),
];

pub fn load(name: &str) -> serde_json::Value {
    let path = root().join("dashboards").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One query of a dashboard: where it is and its PromQL with Grafana's variables.
#[derive(Debug, Clone)]
pub struct Query {
    pub dashboard: &'static str,
    pub panel: String,
    pub expr: String,
}

/// Every PromQL expression of the dashboards: panel targets, the alert annotation, and the
/// selectors inside the variables' `label_values(...)`.
pub fn queries() -> Vec<Query> {
    let mut out = Vec::new();
    for (name, _) in DASHBOARDS {
        let d = load(name);
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(Query {
                    dashboard: name,
                    panel: p["title"].as_str().unwrap().to_string(),
                    expr: t["expr"].as_str().unwrap().to_string(),
                });
            }
        }
        for a in d["annotations"]["list"].as_array().unwrap() {
            if let Some(e) = a["expr"].as_str() {
                out.push(Query {
                    dashboard: name,
                    panel: format!("annotation {}", a["name"]),
                    expr: e.to_string(),
                });
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            let Some(q) = v["query"]["query"].as_str() else {
                continue;
            };
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.rsplit_once(','))
                .map(|(sel, _)| sel.trim().to_string())
                .unwrap_or_else(|| panic!("{name}: variable query {q}"));
            out.push(Query {
                dashboard: name,
                panel: format!("variable {}", v["name"]),
                expr: inner,
            });
        }
    }
    out
}

/// The query with Grafana's variables replaced: every multi-value variable by its "All"
/// regex and `$__rate_interval` by `rate_interval`.
pub fn substitute(expr: &str, rate_interval: &str) -> String {
    expr.replace("$__rate_interval", rate_interval)
        .replace("$instance", ".+")
        .replace("$run", ".+")
        .replace("$gpu", ".+")
        .replace("$key", ".+")
}

/// The metric names a PromQL expression selects.
pub fn metric_names(expr: &Expr, out: &mut BTreeSet<String>) {
    match expr {
        Expr::Aggregate(a) => {
            metric_names(&a.expr, out);
            if let Some(p) = &a.param {
                metric_names(p, out);
            }
        }
        Expr::Unary(u) => metric_names(&u.expr, out),
        Expr::Binary(b) => {
            metric_names(&b.lhs, out);
            metric_names(&b.rhs, out);
        }
        Expr::Paren(p) => metric_names(&p.expr, out),
        Expr::Subquery(s) => metric_names(&s.expr, out),
        Expr::VectorSelector(v) => {
            out.insert(v.name.clone().expect("every selector names its metric"));
        }
        Expr::MatrixSelector(m) => {
            out.insert(m.vs.name.clone().expect("every selector names its metric"));
        }
        Expr::Call(c) => {
            for a in &c.args.args {
                metric_names(a, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Metrics that Prometheus itself makes, not the daemon.
const PROMETHEUS_OWN: [&str; 2] = ["ALERTS", "up"];

/// Run-identity series served only where a run's processes carry `WORLD_SIZE` (or
/// `SLURM_NTASKS`): the daemon these tests start has the test process as the holder, whose
/// environment has none, so the check accepts exactly these names unserved.
/// `tests/it/cluster.rs` sees them served by three daemons under a real Prometheus.
pub const RUN_IDENTITY: [&str; 1] = ["training_run_world_size"];

/// Every expression of the shipped rule files, alerting and recording, as `(name, expr)`.
fn rule_exprs() -> Vec<(String, String)> {
    crate::alerts::all_rules()
        .into_iter()
        .map(|(_, r)| {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            (name.to_string(), r["expr"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The fake NVML library (`tests/fake-nvml`, see `harness::fake_nvml`), built, when the
/// workspace has one.
pub fn fake_nvml() -> Option<PathBuf> {
    root()
        .join("tests/fake-nvml/src/lib.rs")
        .exists()
        .then(crate::harness::fake_nvml::fake_lib)
}

/// A fake machine for the dashboards: two busy GPUs with NVLinks, PCIe counters, a process
/// each, a thermal clock event, an XID, an NVSwitch fabric and GPM, so that every GPU panel
/// and rule has data.
fn fake_machine() -> serde_json::Value {
    let pid = std::process::id();
    let gpu = |i: u64| {
        serde_json::json!({
            "uuid": format!("GPU-{i:08x}-1111-2222-3333-444455556666"),
            "pci_bus_id": format!("00000000:{:02X}:00.0", 0x18 + i),
            "utilization_gpu": 80 + i, "utilization_memory": 40 + i,
            "memory_total": 85_520_809_984u64, "memory_used": 40_000_000_000u64 + i,
            "power_mw": 500_000 + i, "power_limit_mw": 700_000, "energy_mj": 5_000_000 * (i + 1),
            "temperature_c": 70 + i, "sm_clock_mhz": 1_900, "mem_clock_mhz": 2_619,
            "pcie_tx_bytes": 1_000_000 + i, "pcie_rx_bytes": 2_000_000 + i,
            "nvlinks": [
                {"tx_kib": 1000 + i, "rx_kib": 2000 + i, "errors": {"crc_flit": i, "replay": 0}},
                {"tx_kib": 3000 + i, "rx_kib": 4000 + i, "errors": {"crc_flit": 0, "replay": 0}},
            ],
            // NVSwitch fabric registered and healthy, no recovery action, GPM on
            "fabric": {"state": 3, "status": 0, "health_mask": 2 | 2 << 2 | 2 << 4 | 2 << 6 | 1 << 8},
            "recovery_action": 0,
            "gpm": {"2": 70.0, "3": 40.0, "5": 55.0 + i as f64, "10": 50.0, "1": 90.0,
                    "13": 30.0, "12": 10.0, "11": 0.0, "20": 900.0, "21": 1100.0},
            "ecc_corrected": i, "ecc_uncorrected": 0,
            "clock_event_reasons": if i == 1 { 0x40 } else { 0 },
            "processes": [{"pid": pid, "used_memory": 30_000_000_000u64}],
        })
    };
    serde_json::json!({
        "driver_version": "550.54.15",
        "gpus": [gpu(0), gpu(1)],
        "xid_events": [{"gpu": 0, "xid": 13}],
    })
}

/// A log with a generic JSON-lines record carrying the throughput keys that the fixture
/// trainers do not print (steps, samples and tokens per second, and an MFU). Written whole, so calling
/// it again gives the same file.
pub fn throughput_log(dir: &Path) -> PathBuf {
    let p = dir.join("pretrain.jsonl");
    std::fs::write(
        &p,
        "{\"step\": 10, \"loss\": 3.25, \"steps_per_second\": 0.5, \"samples_per_second\": 64.5, \"tokens_per_second\": 132096.0, \"mfu_ratio\": 0.41}\n\
         {\"step\": 20, \"loss\": 3.125, \"steps_per_second\": 0.5, \"samples_per_second\": 65.0, \"tokens_per_second\": 133120.0, \"mfu_ratio\": 0.42}\n",
    )
    .unwrap();
    p
}

/// Opens the HF log and the throughput log from this process, which the fake NVML lists as
/// the compute process of both GPUs ([`fake_machine`]): the daemon's attribution then maps
/// runs hf and pretrain to the GPUs (`training_run_gpu_info`, `training_run_process_info`).
/// Call before the daemon starts; keep the files until it stops.
pub fn hold_logs(dir: &Path, hf_log: &Path) -> Vec<std::fs::File> {
    [hf_log.to_path_buf(), throughput_log(dir)]
        .iter()
        .map(|p| std::fs::File::open(p).unwrap())
        .collect()
}

/// The daemon's flags and environment for the dashboards' data: an HF log with evaluation,
/// ms-swift's logging.jsonl (keys such as token_acc), the throughput log, and the fake NVML
/// with [`fake_machine`] when there is one.
pub fn daemon_args(dir: &Path, hf_log: &Path) -> (Vec<String>, Vec<(String, String)>) {
    let mut args = vec![
        "--log".to_string(),
        format!("hf={}", hf_log.display()),
        "--log".to_string(),
        format!(
            "swift={}",
            fixture("ms-swift/output/v0-20261128-120712/logging.jsonl").display()
        ),
        "--log".to_string(),
        format!("pretrain={}", throughput_log(dir).display()),
    ];
    let mut env = Vec::new();
    if let Some(lib) = fake_nvml() {
        let cfg = dir.join("fake-nvml.json");
        std::fs::write(&cfg, fake_machine().to_string()).unwrap();
        args.push("--nvml-library".into());
        args.push(lib.display().to_string());
        env.push(("FAKE_NVML_CONFIG".to_string(), cfg.display().to_string()));
    }
    (args, env)
}

/// Starts the daemon with [`daemon_args`] and `extra` flags.
pub fn start_daemon(dir: &Path, hf_log: &Path, extra: &[&str]) -> Daemon {
    let (mut args, env) = daemon_args(dir, hf_log);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Daemon::start_env(&args, &env)
}

/// Whether a metric comes from the GPU or host collectors, which need NVML (or its fake).
pub fn needs_gpu(name: &str) -> bool {
    (name.starts_with("gpu_") && !name.starts_with("gpu_train_exporter_"))
        || name.starts_with("host_")
        || matches!(
            name,
            "gpu_train_exporter_nvml_up"
                | "gpu_train_exporter_collector_duration_seconds"
                | "gpu_train_exporter_collector_errors_total"
        )
}

#[test]
fn dashboards_use_the_current_json_model() {
    for (name, uid) in DASHBOARDS {
        let d = load(name);
        assert_eq!(d["uid"], uid, "{name}: stable uid");
        assert!(d["schemaVersion"].as_u64().unwrap() >= 39, "{name}");
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        let want: &[&str] = match name {
            "training.json" | "run.json" => &["datasource", "instance", "run"],
            _ => &["datasource", "instance", "gpu"],
        };
        for w in want {
            assert!(vars.contains(w), "{name}: variable {w} in {vars:?}");
        }
        let ds = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap();
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");

        let mut ids = BTreeSet::new();
        let mut types = BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{name}: duplicate id"
            );
            let ty = p["type"].as_str().unwrap();
            assert!(
                ["row", "timeseries", "stat", "state-timeline", "table"].contains(&ty),
                "{name}/{title}: panel type {ty}"
            );
            types.insert(ty);
            let g = &p["gridPos"];
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{name}/{title}: gridPos {g}"
            );
            if ty == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}/{title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}/{title}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}/{title}");
            }
        }
        for ty in ["timeseries", "stat", "state-timeline"] {
            assert!(types.contains(ty), "{name}: no {ty} panel");
        }
    }
}

#[test]
fn dashboards_show_what_the_issue_asks_for() {
    let titles = |name: &str| -> String {
        load(name)["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}\n", p["title"].as_str().unwrap()))
            .collect()
    };
    let t = titles("training.json");
    for want in [
        "Loss",
        "Learning rate",
        "Gradient norm",
        "ETA",
        "Throughput",
        "NaN/Inf values by key",
        "Other keys",
        "GPU utilization",
        "GPU memory used",
    ] {
        assert!(
            t.lines().any(|l| l == want),
            "training.json: no {want:?} panel"
        );
    }
    let g = titles("gpu-node.json");
    for want in [
        "Utilization",
        "Memory used",
        "Power",
        "Energy per interval",
        "Temperature",
        "SM clock",
        "NVLink transmit",
        "NVLink receive",
        "PCIe transmit",
        "PCIe receive",
        "Clock events (throttling)",
        "XID errors",
        "ECC errors",
        "Memory by process",
    ] {
        assert!(
            g.lines().any(|l| l == want),
            "gpu-node.json: no {want:?} panel"
        );
    }
    let r = titles("run.json");
    for want in [
        "GPUs",
        "Nodes",
        "World size",
        "Loss",
        "Step rate",
        "GPUs by node",
        "GPUs of the run",
        "Straggler score",
        "Utilization",
        "Power",
        "SM clock",
        "Temperature",
        "NVLink traffic by node",
        "PCIe traffic by node",
        "Energy per step",
        "Energy per token",
        "Active clock events",
        "Processes",
    ] {
        assert!(r.lines().any(|l| l == want), "run.json: no {want:?} panel");
    }
    // the run board picks one run from the mapping series that every node serves, and every
    // GPU query of it is joined to the run on (instance, gpu)
    let run = load("run.json");
    let var = run["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "run")
        .unwrap()
        .clone();
    assert_eq!(
        var["query"]["query"],
        "label_values(training_run_gpu_info, run)"
    );
    for q in queries().iter().filter(|q| q.dashboard == "run.json") {
        let mut names = BTreeSet::new();
        metric_names(
            &parser::parse(&substitute(&q.expr, "1m")).unwrap(),
            &mut names,
        );
        if names.iter().any(|n| n.starts_with("gpu_")) {
            assert!(
                names.contains("training_run_gpu_info") && q.expr.contains("on (instance, gpu)"),
                "run.json/{}: a GPU query not joined to the run: {}",
                q.panel,
                q.expr
            );
        }
    }
    let clock = load("gpu-node.json")["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Clock events (throttling)")
        .unwrap()["type"]
        .clone();
    assert_eq!(clock, "state-timeline");
}

#[test]
fn every_query_is_valid_promql_and_rates_use_rate_interval() {
    let qs = queries();
    assert!(qs.len() > 40, "{} queries", qs.len());
    for q in &qs {
        if q.expr.contains("rate(") || q.expr.contains("increase(") {
            assert!(
                q.expr.contains("[$__rate_interval]"),
                "{}/{}: rates use $__rate_interval: {}",
                q.dashboard,
                q.panel,
                q.expr
            );
        }
        let e = substitute(&q.expr, "1m");
        let ast = parser::parse(&e)
            .unwrap_or_else(|err| panic!("{}/{}: {e}: {err}", q.dashboard, q.panel));
        let mut names = BTreeSet::new();
        metric_names(&ast, &mut names);
        assert!(!names.is_empty(), "{}/{}: {e}", q.dashboard, q.panel);
    }
    // and the parser is not lenient
    assert!(parser::parse("rate(training_loss[5m]").is_err());
    assert!(parser::parse("sum by (run training_loss)").is_err());
}

/// The metric names in the daemon's exposition.
fn served_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[test]
fn every_query_names_only_metrics_the_daemon_serves() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("train.log");
    std::fs::copy(fixture("transformers/train-normal.log"), &hf).unwrap();
    // a NaN, so that the non-finite counter exists
    append(
        &hf,
        "{'loss': 'nan', 'grad_norm': 'nan', 'learning_rate': '1e-05', 'epoch': '1.6'}\n",
    );
    // an error, so that the last-error series exist
    append(
        &hf,
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB.\n",
    );
    let _held = hold_logs(dir.path(), &hf);
    let gpu = fake_nvml().is_some();
    // an action on alerts (that never acts: no run matches), so that its families are served
    let actions = dir.path().join("actions.yml");
    std::fs::write(
        &actions,
        format!(
            "alertmanager:\n  url: http://127.0.0.1:{}\n  poll_interval: 1s\nactions:\n  - name: hold\n    match: [alertname=TrainingLossNaN]\n    runs: [no-such-run]\n    do: pause\n",
            crate::harness::free_port()
        ),
    )
    .unwrap();
    let d = start_daemon(dir.path(), &hf, &["--config", actions.to_str().unwrap()]);

    // what the dashboards and rules name (where each is used first)
    let rules = rule_exprs().into_iter().map(|(alert, expr)| Query {
        dashboard: "alerts",
        panel: alert,
        expr,
    });
    let recorded = crate::alerts::recorded_names();
    let mut wanted: Vec<(String, String)> = Vec::new();
    let mut pending = BTreeSet::new();
    for q in queries().into_iter().chain(rules) {
        let ast = parser::parse(&substitute(&q.expr, "1m")).unwrap();
        let mut names = BTreeSet::new();
        metric_names(&ast, &mut names);
        for n in names {
            // what Prometheus makes itself, and what the shipped recording rules record
            // (their own expressions are checked here as rules)
            if PROMETHEUS_OWN.contains(&n.as_str()) || recorded.contains(&n) {
                continue;
            }
            if RUN_IDENTITY.contains(&n.as_str()) {
                // served once run identity lands
                pending.insert(n);
                continue;
            }
            if !gpu && needs_gpu(&n) {
                pending.insert(n);
                continue;
            }
            wanted.push((n, format!("{}/{}", q.dashboard, q.panel)));
        }
    }
    // the names served over the first seconds (some families need two samples)
    let mut served = BTreeSet::new();
    crate::harness::wait_for(std::time::Duration::from_secs(10), || {
        served.extend(served_names(&d.scrape()));
        wanted.iter().all(|(n, _)| served.contains(n))
    });
    assert!(served.contains("training_loss"), "{served:?}");
    for (n, place) in &wanted {
        assert!(
            served.contains(n),
            "{place}: {n} is not served by the daemon (served: {served:?})"
        );
    }
    if !pending.is_empty() {
        eprintln!("not checked until the fake NVML library exists (tests/fake-nvml) or run identity lands: {pending:?}");
    }
}
