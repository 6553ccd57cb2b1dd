//! One training run across three nodes, on loopback: three daemons, each with a fake NVML of
//! four GPUs whose compute processes are real children carrying one Slurm job's identity and
//! their own ranks; only node 0's rank 0 writes the log, which node 0 follows. A real
//! Prometheus scrapes the three every second with the shipped run rules
//! (`alerts/run.rules.yml`, unchanged).
//!
//! Checked through Prometheus' query API: the run's 12 GPUs on 3 instances, ranks and node
//! ranks as the environments say; the per-run recording rules equal the sums of the fakes'
//! values; the training series of node 0 and the GPU series of nodes 1 and 2 join under the
//! one `run`; and a GPU whose power and SM clock drop gets the lowest straggler score. The
//! alerts' `for:` timing is the promtool unit tests' (`alerts/run.test.yml`), not this one's.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::alerting_e2e::{query, Proc};
use crate::gpu::Fake;
use crate::harness::fake_nvml::uuid;
use crate::harness::{free_port, require_tool, root, wait_for, Guard};

/// The Slurm job all 12 ranks belong to: its id is the run label.
const JOB: &str = "7001";
const NODES: usize = 3;
const GPUS_PER_NODE: usize = 4;
const WORLD: usize = NODES * GPUS_PER_NODE;
/// The GPU made the straggler: node 1's GPU 2, rank 6.
const SLOW: (usize, usize) = (1, 2);

const T: Duration = Duration::from_secs(20);

/// Rank `rank` of the job: a `sleep` with the job's environment alone, stdout to `log` when
/// given (that rank writes the training log and holds it open).
fn rank_process(rank: usize, log: Option<&std::path::Path>) -> Guard {
    let (node, local) = (rank / GPUS_PER_NODE, rank % GPUS_PER_NODE);
    let mut cmd = Command::new("sleep");
    cmd.arg("120")
        .env_clear()
        .env("SLURM_JOB_ID", JOB)
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", local.to_string())
        .env("WORLD_SIZE", WORLD.to_string())
        .env("GROUP_RANK", node.to_string())
        .process_group(0);
    if let Some(log) = log {
        let out = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        cmd.stdout(out);
    }
    Guard(cmd.spawn().expect("spawn a rank"))
}

/// GPU `local` of node `node` computing for process `pid`: power, SM clock and memory
/// distinct per GPU (the rank's watts and megahertz above a base), utilization the same.
fn gpu(node: usize, local: usize, pid: u32) -> Value {
    let g = node * GPUS_PER_NODE + local;
    json!({
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": uuid(g),
        "pci_bus_id": format!("00000000:{:02X}:00.0", 0x18 + local),
        "utilization_gpu": 90,
        "memory_used": 1_000_000_000u64 * (g as u64 + 1),
        "power_mw": 500_000 + g * 1_000,
        "power_limit_mw": 700_000,
        "sm_clock_mhz": 1_900 + g,
        "processes": [{"pid": pid, "used_memory": 1u64 << 30}],
    })
}

/// The one value of an instant query that must return one sample.
fn scalar(port: u16, q: &str) -> Option<f64> {
    let r = query(port, q);
    (r.len() == 1).then(|| r[0]["value"][1].as_str().unwrap().parse().unwrap())
}

/// Every sample of `q` as (labels, value).
fn vector(port: u16, q: &str) -> Vec<(Value, f64)> {
    query(port, q)
        .into_iter()
        .map(|s| {
            let v = s["value"][1].as_str().unwrap().parse().unwrap();
            (s["metric"].clone(), v)
        })
        .collect()
}

/// The `rank` label of the sample of `q` with the lowest value.
fn lowest_rank(port: u16, q: &str) -> Option<(String, f64)> {
    vector(port, q)
        .into_iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(l, v)| (l["rank"].as_str().unwrap_or_default().to_string(), v))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn three_nodes_one_run_twelve_gpus_and_the_slow_gpu_is_the_straggler() {
    if !require_tool("prometheus") {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // rank 0 writes the log on node 0; the other 11 ranks write nothing
    let log = d.join("train.log");
    std::fs::write(
        &log,
        "{'loss': 2.5, 'grad_norm': 1.25, 'learning_rate': 1e-05, 'epoch': 0.1}\n",
    )
    .unwrap();
    let ranks: Vec<Guard> = (0..WORLD)
        .map(|r| rank_process(r, (r == 0).then_some(log.as_path())))
        .collect();

    // the three nodes: four GPUs each, GPU i computing for local rank i
    let configs: Vec<Value> = (0..NODES)
        .map(|n| {
            let gpus: Vec<Value> = (0..GPUS_PER_NODE)
                .map(|i| gpu(n, i, ranks[n * GPUS_PER_NODE + i].0.id()))
                .collect();
            json!({"driver_version": "550.54.15", "gpus": gpus})
        })
        .collect();
    let log_arg = format!("train={}", log.display());
    let nodes: Vec<Fake> = configs
        .iter()
        .enumerate()
        .map(|(n, cfg)| {
            let mut args = vec!["--no-host", "--attribution.interval", "100ms"];
            if n == 0 {
                args.extend(["--log", &log_arg]);
            }
            Fake::start(cfg, &args)
        })
        .collect();
    let instances: Vec<String> = nodes
        .iter()
        .map(|f| format!("127.0.0.1:{}", f.daemon.port))
        .collect();

    // Prometheus scraping the three with the shipped run rules
    let prom_port = free_port();
    let prom_cfg = d.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: gpu-train-exporter\n    static_configs:\n      - targets: [{}]\n",
            root().join("alerts/run.rules.yml").display(),
            instances
                .iter()
                .map(|i| format!("'{i}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .unwrap();
    let mut prom = Proc::prometheus(&prom_cfg, d, prom_port);
    prom.wait_ready("prometheus");
    let p = prom_port;
    let run = format!("run=\"{JOB}\"");
    let daemons_stderr = || Fake::stderr_of(&nodes);

    // the run has 12 GPUs on 3 instances, and the recording rules say so
    let found = wait_for(T, || {
        scalar(p, &format!("count(training_run_gpu_info{{{run}}})")) == Some(WORLD as f64)
            && scalar(p, &format!("run:gpus:count{{{run}}}")) == Some(WORLD as f64)
            && scalar(p, &format!("run:nodes:count{{{run}}}")) == Some(NODES as f64)
            && scalar(p, &format!("training_loss{{{run}}}")).is_some()
    });
    assert!(
        found,
        "the run is not whole in Prometheus: {:?}\n{}\n{}",
        vector(p, "training_run_gpu_info"),
        prom.output(),
        daemons_stderr()
    );
    assert_eq!(
        scalar(
            p,
            &format!("count(count by (instance) (training_run_gpu_info{{{run}}}))")
        ),
        Some(NODES as f64)
    );
    // each mapping series sits on its node's instance, with the ranks its process has
    let mut seen: Vec<(usize, usize, String)> =
        vector(p, &format!("training_run_gpu_info{{{run}}}"))
            .into_iter()
            .map(|(l, v)| {
                assert_eq!(v, 1.0, "{l}");
                let text = |k: &str| l[k].as_str().unwrap_or_else(|| panic!("no {k}: {l}"));
                let node = instances
                    .iter()
                    .position(|i| i == text("instance"))
                    .unwrap_or_else(|| panic!("unknown instance: {l}"));
                let local: usize = text("local_rank").parse().unwrap();
                assert_eq!(text("gpu"), local.to_string(), "{l}");
                assert_eq!(text("uuid"), uuid(node * GPUS_PER_NODE + local), "{l}");
                (node, local, text("rank").to_string())
            })
            .collect();
    seen.sort();
    let want: Vec<(usize, usize, String)> = (0..WORLD)
        .map(|r| (r / GPUS_PER_NODE, r % GPUS_PER_NODE, r.to_string()))
        .collect();
    assert_eq!(seen, want);
    for (n, instance) in instances.iter().enumerate() {
        let sel = format!("{run},instance=\"{instance}\"");
        let info = vector(p, &format!("training_run_node_info{{{sel}}}"));
        assert_eq!(info.len(), 1, "node {n}: {info:?}");
        assert_eq!(info[0].0["node_rank"], n.to_string(), "{info:?}");
        assert_eq!(
            scalar(p, &format!("training_run_world_size{{{sel}}}")),
            Some(WORLD as f64),
            "node {n}"
        );
    }

    // the per-run aggregates equal the sums of the fakes' values
    let sum = |field: &str| -> f64 {
        configs
            .iter()
            .flat_map(|c| c["gpus"].as_array().unwrap().iter())
            .map(|g| g[field].as_f64().unwrap())
            .sum()
    };
    let watts = sum("power_mw") / 1000.0;
    let bytes = sum("memory_used");
    let mut last = (None, None);
    let aggregates = wait_for(T, || {
        last = (
            scalar(p, &format!("run:gpu_power_watts:sum{{{run}}}")),
            scalar(p, &format!("run:gpu_memory_used_bytes:sum{{{run}}}")),
        );
        last.0.is_some_and(|v| close(v, watts)) && last.1.is_some_and(|v| close(v, bytes))
    });
    assert!(
        aggregates,
        "run aggregates {last:?}, the fakes sum to {watts} W and {bytes} bytes"
    );
    assert_eq!(
        scalar(p, &format!("run:gpu_utilization_ratio:avg5m{{{run}}}")),
        Some(0.9)
    );

    // node 0's loss and the GPU series of all three nodes, one run: the join through
    // training_run_gpu_info gives the loss beside GPUs of every instance
    let loss = vector(p, &format!("training_loss{{{run}}}"));
    assert_eq!(loss.len(), 1, "{loss:?}");
    assert_eq!(loss[0].0["instance"], instances[0].as_str());
    assert_eq!(loss[0].1, 2.5);
    let joined = vector(
        p,
        &format!(
            "count by (instance, run) (
               (training_run_gpu_info{{{run}}} * on (instance, gpu) group_left () gpu_power_watts)
               * on (run) group_left () max by (run) (training_loss)
             )"
        ),
    );
    let mut by_instance: Vec<(String, f64)> = joined
        .iter()
        .map(|(l, v)| (l["instance"].as_str().unwrap().to_string(), *v))
        .collect();
    by_instance.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(String, f64)> = instances
        .iter()
        .map(|i| (i.clone(), GPUS_PER_NODE as f64))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(by_instance, want, "{joined:?}");

    // before: the lowest score is rank 0's, the GPU with the least power and clock
    let score = format!("run_gpu:gpu_straggler_score{{{run}}}");
    let mut low = None;
    let scored = wait_for(T, || {
        low = lowest_rank(p, &score);
        vector(p, &score).len() == WORLD && low.as_ref().is_some_and(|(r, _)| r == "0")
    });
    assert!(scored, "lowest before: {low:?}: {:?}", vector(p, &score));

    // node 1's GPU 2 drops its power and SM clock: its score becomes the run's lowest
    let (sn, si) = SLOW;
    let slow_rank = (sn * GPUS_PER_NODE + si).to_string();
    let mut cfg = configs[sn].clone();
    cfg["gpus"][si]["power_mw"] = json!(150_000);
    cfg["gpus"][si]["sm_clock_mhz"] = json!(900);
    nodes[sn].set(&cfg);
    let straggling = wait_for(T, || {
        low = lowest_rank(p, &score);
        low.as_ref()
            .is_some_and(|(r, v)| r == &slow_rank && *v > 0.0 && *v < 0.9)
    });
    assert!(
        straggling,
        "lowest after the drop: {low:?}: {:?}",
        vector(p, &score)
    );
    for signal in ["power", "sm_clock"] {
        let q = format!("run_gpu:gpu_straggler_ratio{{{run},signal=\"{signal}\"}}");
        let l = lowest_rank(p, &q);
        assert_eq!(
            l.as_ref().map(|(r, _)| r.as_str()),
            Some(slow_rank.as_str()),
            "{signal}: {:?}",
            vector(p, &q)
        );
    }
    let slow = vector(
        p,
        &format!("run_gpu:gpu_straggler_score{{{run},rank=\"{slow_rank}\"}}"),
    );
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert_eq!(slow[0].0["instance"], instances[sn].as_str());
    assert_eq!(slow[0].0["uuid"], uuid(sn * GPUS_PER_NODE + si));

    eprintln!(
        "three nodes, one run of {WORLD} GPUs: {:.1} s in all",
        t0.elapsed().as_secs_f64()
    );
    drop(prom);
    drop(nodes);
    drop(ranks);
}
