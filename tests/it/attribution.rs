//! Run attribution with real processes: a launcher and the children that inherit its log
//! (as with `torchrun ... > train.log`) are found in /proc, keep the run active, and vanish
//! from /metrics when they exit; a run name can come from the writer's environment.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(15);

/// `sh` with two `sleep` children, all writing to `log`, in their own process group.
fn launcher(log: &Path, env: &[(&str, &str)]) -> Child {
    let out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    Command::new("sh")
        .args(["-c", "sleep 60 & sleep 60 & wait"])
        .envs(env.iter().copied())
        .stdout(out)
        .process_group(0)
        .spawn()
        .unwrap()
}

/// Kills the launcher's whole process group and reaps the launcher.
fn kill_group(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
}

fn pids(m: &str, run: &str) -> Vec<(String, String)> {
    let mut v: Vec<_> = samples(m, "training_run_process_info")
        .into_iter()
        .filter(|(l, _)| l.iter().any(|(k, v)| k == "run" && v == run))
        .map(|(l, _)| {
            let get = |name: &str| l.iter().find(|(k, _)| k == name).unwrap().1.clone();
            (get("pid"), get("command"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn launcher_and_children_are_found_and_disappear_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    let idle = dir.path().join("idle.log");
    std::fs::write(&log, "{'loss': 2.0, 'step': 1}\n").unwrap();
    std::fs::write(&idle, "{'loss': 3.0, 'step': 1}\n").unwrap();
    let child = launcher(&log, &[]);
    let sh_pid = child.id().to_string();
    let d = Daemon::start(&[
        "--log",
        &format!("train={}", log.display()),
        "--log",
        &format!("idle={}", idle.display()),
        "--attribution.interval",
        "100ms",
    ]);
    let mut m = String::new();
    assert!(
        wait_for(T, || {
            m = d.scrape();
            pids(&m, "train").len() == 3
        }),
        "{m}"
    );
    let found = pids(&m, "train");
    assert!(
        found.contains(&(sh_pid.clone(), "sh".to_string())),
        "{found:?}"
    );
    assert_eq!(found.iter().filter(|(_, c)| c == "sleep").count(), 2);
    // the daemon itself reads the file but is not a holder; the idle file has none
    let own = d.child.id().to_string();
    assert!(!found.iter().any(|(p, _)| *p == own));
    assert!(pids(&m, "idle").is_empty());
    assert_eq!(
        value(&m, "training_run_active", &[("run", "train")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "training_run_active", &[("run", "idle")]),
        Some(1.0)
    );

    // a crash: every holder exits without the summary → 0 at once, series gone
    kill_group(child);
    assert!(
        wait_for(T, || {
            m = d.scrape();
            pids(&m, "train").is_empty()
        }),
        "{m}"
    );
    assert_eq!(
        value(&m, "training_run_active", &[("run", "train")]),
        Some(0.0)
    );
    assert!(samples(&m, "training_run_process_info").is_empty());
    // a file no process keeps open keeps the idle-timeout rule
    assert_eq!(
        value(&m, "training_run_active", &[("run", "idle")]),
        Some(1.0)
    );

    // a new writer appears: active again
    let child = launcher(&log, &[]);
    assert!(wait_for(T, || pids(&d.scrape(), "train").len() == 3));
    assert_eq!(
        value(&d.scrape(), "training_run_active", &[("run", "train")]),
        Some(1.0)
    );
    kill_group(child);
}

#[test]
fn run_name_from_the_writers_environment() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    std::fs::write(&log, "{'loss': 2.0, 'step': 7}\n").unwrap();
    let child = launcher(&log, &[("SLURM_JOB_ID", "4242"), ("OTHER", "x")]);
    let d = Daemon::start(&[
        "--log",
        &format!("node-a={}", log.display()),
        "--attribution.interval",
        "100ms",
        "--attribution.run-from-env",
        "TORCHELASTIC_RUN_ID",
        "--attribution.run-from-env",
        "SLURM_JOB_ID",
    ]);
    let got = d.wait_value("training_step", &[("run", "4242")], 7.0, T);
    assert_eq!(got, Some(7.0), "{}", d.scrape());
    let m = d.scrape();
    // every series moved to the job's name
    assert_eq!(value(&m, "training_step", &[("run", "node-a")]), None);
    assert_eq!(pids(&m, "4242").len(), 3);
    // the live page's API uses the same name
    let (_, api) = d.get("/api/v1/runs");
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["runs"][0]["run"], "4242", "{api}");
    assert_eq!(d.get("/api/v1/runs/4242/series?key=loss").0, 200);
    // the name sticks after the writers exit, so a crash is reported under it
    kill_group(child);
    assert_eq!(
        d.wait_value("training_run_active", &[("run", "4242")], 0.0, T),
        Some(0.0)
    );
}

#[test]
fn two_logs_whose_writers_share_a_job_id_get_distinct_run_labels() {
    if !require_tool("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    std::fs::write(&a, "{'loss': 2.0, 'step': 7}\n").unwrap();
    std::fs::write(&b, "{'loss': 3.0, 'step': 9}\n").unwrap();
    // a third log whose path-derived name is the job id itself
    let c = dir.path().join("77.log");
    std::fs::write(&c, "{'loss': 4.0, 'step': 11}\n").unwrap();
    let (ca, cb) = (
        launcher(&a, &[("SLURM_JOB_ID", "77")]),
        launcher(&b, &[("SLURM_JOB_ID", "77")]),
    );
    let d = Daemon::start(&[
        "--log",
        &format!("{}/*.log", dir.path().display()),
        "--attribution.interval",
        "100ms",
        "--attribution.run-from-env",
        "SLURM_JOB_ID",
    ]);
    // positive witness: both writers' environments were read (two suffixed labels appear)
    let deadline = std::time::Instant::now() + T;
    let steps = |m: &str| -> Vec<(String, f64)> {
        let mut v: Vec<_> = samples(m, "training_step")
            .into_iter()
            .map(|(l, v)| {
                let run = l.iter().find(|(k, _)| k == "run").unwrap().1.clone();
                (run, v)
            })
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let mut m = d.scrape();
    while steps(&m)
        .iter()
        .filter(|(r, _)| r.starts_with("77~"))
        .count()
        < 2
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        m = d.scrape();
    }
    let got = steps(&m);
    // the path-derived run `77` keeps its name; the two job-77 logs each get `77~HASH`
    assert_eq!(got.len(), 3, "{m}");
    assert_eq!(got[0], ("77".to_string(), 11.0), "{m}");
    assert!(
        got[1].0.starts_with("77~") && got[2].0.starts_with("77~"),
        "{m}"
    );
    assert_ne!(got[1].0, got[2].0, "{m}");
    let mut by_step: Vec<f64> = got[1..].iter().map(|(_, v)| *v).collect();
    by_step.sort_by(f64::total_cmp);
    assert_eq!(by_step, [7.0, 9.0], "{m}");
    // the same labels on the next scrape, and an exposition Prometheus accepts
    assert_eq!(steps(&d.scrape()), got);
    let report = promtool_check_metrics(&m);
    assert!(report.is_empty(), "promtool check metrics:\n{report}");
    // training_run_info keeps each log's own path
    let paths: Vec<String> = samples(&m, "training_run_info")
        .into_iter()
        .filter_map(|(l, _)| l.iter().find(|(k, _)| k == "path").map(|p| p.1.clone()))
        .collect();
    for f in [&a, &b, &c] {
        assert!(paths.contains(&f.display().to_string()), "{m}");
    }
    kill_group(ca);
    kill_group(cb);
}

#[test]
fn attribution_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    std::fs::write(&log, "{'loss': 2.0, 'step': 1}\n").unwrap();
    let child = launcher(&log, &[]);
    let spec = format!("train={}", log.display());
    let args = ["--log", &spec, "--attribution.interval", "100ms"];
    let off = Daemon::start(&[&args[..], &["--no-attribution"]].concat());
    // the witness: a daemon started later with attribution on, on the same log, has scanned
    // twice and found the launcher (and the first daemon, which follows the log too), so the
    // first had the time and the processes to do so
    let on = Daemon::start(&args);
    let sh = (child.id().to_string(), "sh".to_string());
    let mut m = String::new();
    assert!(
        wait_for(T, || {
            m = on.scrape();
            value(&m, "gpu_train_exporter_attribution_cycles_total", &[]) >= Some(2.0)
                && pids(&m, "train").contains(&sh)
        }),
        "{m}"
    );
    off.wait_value("training_step", &[("run", "train")], 1.0, T);
    let m = off.scrape();
    assert!(samples(&m, "training_run_process_info").is_empty(), "{m}");
    assert_eq!(
        value(&m, "gpu_train_exporter_attribution_cycles_total", &[]),
        None,
        "{m}"
    );
    kill_group(child);
}

#[test]
fn a_runs_gpus_come_from_nvml_processes_joined_with_its_holders() {
    use crate::gpu::Fake;
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    std::fs::write(&log, "{'loss': 2.0, 'step': 1}\n").unwrap();
    let child = launcher(&log, &[]);
    let sh = child.id();
    let me = std::process::id(); // on a GPU, but not a holder of the log
    let gpu = |i: usize, processes: serde_json::Value| json!({"name": "NVIDIA H100", "uuid": format!("GPU-{i}"), "processes": processes});
    let mut cfg = json!({"driver_version": "550.54.15", "gpus": [
        gpu(0, json!([{"pid": me, "used_memory": 7u64 << 30}])),
        gpu(1, json!([])),
    ]});
    let arg = format!("train={}", log.display());
    let f = Fake::start(
        &cfg,
        &[
            "--no-host",
            "--log",
            &arg,
            "--attribution.interval",
            "100ms",
        ],
    );
    let mut m = String::new();
    assert!(
        wait_for(T, || {
            m = f.daemon.scrape();
            pids(&m, "train").len() == 3
        }),
        "{m}"
    );
    // no holder is on a GPU yet
    assert!(samples(&m, "training_run_gpu_info").is_empty(), "{m}");
    let sleep: u32 = pids(&m, "train")
        .iter()
        .find(|(_, c)| c == "sleep")
        .unwrap()
        .0
        .parse()
        .unwrap();
    cfg["gpus"][1]["processes"] = json!([
        {"pid": sh, "used_memory": 3u64 << 30},
        {"pid": sleep, "used_memory": 1u64 << 30},
    ]);
    f.set(&cfg);
    let want = (4u64 << 30) as f64;
    assert_eq!(
        f.daemon.wait_value(
            "training_run_gpu_memory_used_bytes",
            &[("run", "train")],
            want,
            T
        ),
        Some(want)
    );
    let m = f.daemon.scrape();
    assert_eq!(
        value(
            &m,
            "training_run_gpu_info",
            &[("run", "train"), ("gpu", "1"), ("uuid", "GPU-1")]
        ),
        Some(1.0)
    );
    // GPU 0 runs only a process that does not hold the log
    assert_eq!(samples(&m, "training_run_gpu_info").len(), 1);

    // the run's processes exit: its GPU series go with them, even while NVML still lists
    // the (stale) PIDs
    kill_group(child);
    assert!(
        wait_for(T, || {
            let m = f.daemon.scrape();
            samples(&m, "training_run_gpu_info").is_empty()
                && samples(&m, "training_run_gpu_memory_used_bytes").is_empty()
        }),
        "{}",
        f.daemon.scrape()
    );
}
