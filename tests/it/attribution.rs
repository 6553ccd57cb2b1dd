//! Run attribution with real processes: a launcher and the children that inherit its log
//! (as with `torchrun ... > train.log`) are found in /proc, keep the run active, and vanish
//! from /metrics when they exit; a run name can come from the writer's environment.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(15);

/// `sh` with two `sleep` children, all writing to `log`, in their own process group; the
/// variables that name a run by default are this test's `env` alone, not the test runner's.
fn launcher(log: &Path, env: &[(&str, &str)]) -> Child {
    let out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    Command::new("sh")
        .args(["-c", "sleep 60 & sleep 60 & wait"])
        .env_remove("TORCHELASTIC_RUN_ID")
        .env_remove("SLURM_JOB_ID")
        .env_remove("MASTER_ADDR")
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
    let (log, child) = held_train_log(dir.path());
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
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let (log, child) = held_train_log(dir.path());
    let sh = child.id();
    let me = std::process::id(); // on a GPU, but not a holder of the log
    let gpu = |i: usize, processes: serde_json::Value| json!({"name": "NVIDIA H100", "uuid": format!("GPU-{i}"), "processes": processes});
    let mut cfg = json!({"driver_version": "550.54.15", "gpus": [
        gpu(0, json!([{"pid": me, "used_memory": 7u64 << 30}])),
        gpu(1, json!([])),
    ]});
    let f = on_fake_gpus(&cfg, &log);
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

/// Under MIG, NVML lists a GPU's compute processes per MIG device: the run join sees them
/// on their parent GPU, with the memory of each.
#[test]
fn a_runs_processes_on_mig_instances_are_on_their_parent_gpu() {
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let (log, child) = held_train_log(dir.path());
    let sh = child.id();
    let mig = |gi: u32, pid: u32, gib: u64| {
        json!({"gpu_instance": gi, "compute_instance": 0, "profile": "3g.71gb",
               "memory_total": 71u64 << 30, "memory_used": gib << 30,
               "processes": [{"pid": pid, "used_memory": gib << 30}]})
    };
    let cfg = json!({"driver_version": "550.54.15", "gpus": [
        {"name": "NVIDIA H200", "uuid": "GPU-0"},
        {"name": "NVIDIA H200", "uuid": "GPU-1", "mig_mode": true,
         "mig_instances": [mig(1, sh, 3), mig(2, 4_000_031, 5)]},
    ]});
    let f = on_fake_gpus(&cfg, &log);
    let want = (3u64 << 30) as f64;
    assert_eq!(
        f.daemon.wait_value(
            "training_run_gpu_memory_used_bytes",
            &[("run", "train")],
            want,
            T
        ),
        Some(want),
        "{}",
        f.daemon.scrape()
    );
    let m = f.daemon.scrape();
    assert_eq!(
        value(
            &m,
            "training_run_gpu_info",
            &[("run", "train"), ("gpu", "1"), ("uuid", "GPU-1")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(samples(&m, "training_run_gpu_info").len(), 1, "{m}");
    kill_group(child);
}

/// `train.log` in `dir`, with one record, and a launcher holding it open.
fn held_train_log(dir: &Path) -> (std::path::PathBuf, Child) {
    let log = dir.join("train.log");
    std::fs::write(&log, "{'loss': 2.0, 'step': 1}\n").unwrap();
    let child = launcher(&log, &[]);
    (log, child)
}

/// A daemon on the fake GPUs of `cfg`, following `log` as run `train`, attributing every
/// 100 ms.
fn on_fake_gpus(cfg: &serde_json::Value, log: &std::path::Path) -> crate::gpu::Fake {
    let arg = format!("train={}", log.display());
    crate::gpu::Fake::start(
        cfg,
        &[
            "--no-host",
            "--log",
            &arg,
            "--attribution.interval",
            "100ms",
        ],
    )
}

/// A `sleep` with `env` as its only environment, in its own process group.
fn ranked(env: &[(&str, &str)]) -> Child {
    Command::new("sleep")
        .arg("60")
        .env_clear()
        .envs(env.iter().copied())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// The labels of every `training_run_gpu_info` series, as (run, gpu, uuid, rank, local_rank).
fn run_gpus(m: &str) -> Vec<[String; 5]> {
    let mut v: Vec<_> = samples(m, "training_run_gpu_info")
        .into_iter()
        .map(|(l, v)| {
            assert_eq!(v, 1.0);
            let get = |name: &str| {
                l.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("no {name} in {l:?}"))
            };
            ["run", "gpu", "uuid", "rank", "local_rank"].map(get)
        })
        .collect();
    v.sort();
    v
}

fn row(run: &str, gpu: &str, rank: &str, local: &str) -> [String; 5] {
    [run, gpu, &format!("GPU-{gpu}"), rank, local].map(str::to_string)
}

#[test]
fn gpu_processes_of_a_run_whose_log_is_on_another_node_are_named_and_ranked() {
    use crate::gpu::Fake;
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    // a log of another run, nobody writing it: this node does not have the job's log
    let idle = dir.path().join("idle.log");
    std::fs::write(&idle, "{'loss': 3.0, 'step': 1}\n").unwrap();
    // node 1 of a Slurm job of 16 ranks, launched by torchrun: its ranks 8 and 9
    let job = |rank: &'static str, local: &'static str| {
        ranked(&[
            ("SLURM_JOB_ID", "991"),
            ("SLURM_NODEID", "1"),
            ("RANK", rank),
            ("LOCAL_RANK", local),
            ("WORLD_SIZE", "16"),
        ])
    };
    let (a, b) = (job("8", "0"), job("9", "1"));
    // a plain torch.distributed job beside it, and a process no variable names
    let torch = ranked(&[
        ("MASTER_ADDR", "10.1.2.3"),
        ("MASTER_PORT", "29500"),
        ("RANK", "3"),
    ]);
    let anonymous = ranked(&[("PATH", "/bin")]);
    let gpu = |i: usize, pids: &[u32]| {
        let processes: Vec<_> = pids
            .iter()
            .map(|p| json!({"pid": p, "used_memory": 1u64 << 30}))
            .collect();
        json!({"name": "NVIDIA H100", "uuid": format!("GPU-{i}"), "processes": processes})
    };
    let cfg = json!({"driver_version": "550.54.15", "gpus": [
        gpu(0, &[a.id()]),
        gpu(1, &[b.id()]),
        gpu(2, &[torch.id(), anonymous.id()]),
        gpu(3, &[anonymous.id()]),
    ]});
    let arg = format!("idle={}", idle.display());
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
    let want = vec![
        row("991", "0", "8", "0"),
        row("991", "1", "9", "1"),
        row("torch-10.1.2.3-29500", "2", "3", ""),
    ];
    let mut m = String::new();
    assert!(
        wait_for(T, || {
            m = f.daemon.scrape();
            run_gpus(&m) == want
        }),
        "{m}"
    );
    assert_eq!(
        value(&m, "training_run_world_size", &[("run", "991")]),
        Some(16.0)
    );
    assert_eq!(
        value(
            &m,
            "training_run_node_info",
            &[("run", "991"), ("node_rank", "1")]
        ),
        Some(1.0)
    );
    // what its environment does not say is not made up
    assert_eq!(
        value(
            &m,
            "training_run_node_info",
            &[("run", "torch-10.1.2.3-29500"), ("node_rank", "")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "training_run_world_size",
            &[("run", "torch-10.1.2.3-29500")]
        ),
        None
    );
    // no run label on the GPU series themselves (the collector's, not the exporter's own)
    let gpu_lines: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("gpu_") && !l.starts_with("gpu_train_exporter_"))
        .collect();
    assert!(
        gpu_lines.iter().any(|l| l.contains("uuid=\"GPU-1\"")),
        "{m}"
    );
    for l in gpu_lines {
        assert!(!l.contains("run=\"") && !l.contains(",run="), "{l}");
    }
    // the idle log is still a run of its own, on no GPU
    assert_eq!(
        value(&m, "training_run_info", &[("run", "idle")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "gpu_train_exporter_process_environ_errors_total", &[]),
        Some(0.0)
    );
    // a rank exits: its GPU's mapping goes at the next cycle, while NVML still lists it
    kill_group(b);
    let want = vec![
        row("991", "0", "8", "0"),
        row("torch-10.1.2.3-29500", "2", "3", ""),
    ];
    assert!(
        wait_for(T, || {
            m = f.daemon.scrape();
            run_gpus(&m) == want
        }),
        "{m}"
    );
    for c in [a, torch, anonymous] {
        kill_group(c);
    }
}

#[test]
fn a_followed_log_whose_writer_has_the_jobs_identity_shares_its_run_label() {
    use crate::gpu::Fake;
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    std::fs::write(&log, "{'loss': 2.0, 'step': 7}\n").unwrap();
    // rank 0 writes the log (its launcher and children inherit it); rank 1 on the same node
    // does not hold it
    let env = [
        ("TORCHELASTIC_RUN_ID", "llama-70b"),
        ("RANK", "0"),
        ("LOCAL_RANK", "0"),
        ("WORLD_SIZE", "2"),
        ("GROUP_RANK", "0"),
    ];
    let writer = launcher(&log, &env);
    let other = ranked(&[
        ("TORCHELASTIC_RUN_ID", "llama-70b"),
        ("RANK", "1"),
        ("LOCAL_RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("GROUP_RANK", "0"),
    ]);
    let cfg = json!({"driver_version": "550.54.15", "gpus": [
        {"name": "NVIDIA H100", "uuid": "GPU-0", "processes": [{"pid": writer.id(), "used_memory": 2u64 << 30}]},
        {"name": "NVIDIA H100", "uuid": "GPU-1", "processes": [{"pid": other.id(), "used_memory": 3u64 << 30}]},
    ]});
    let arg = format!("node-a={}", log.display());
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
    let want = vec![
        row("llama-70b", "0", "0", "0"),
        row("llama-70b", "1", "1", "1"),
    ];
    let mut m = String::new();
    assert!(
        wait_for(T, || {
            m = f.daemon.scrape();
            run_gpus(&m) == want && value(&m, "training_step", &[("run", "llama-70b")]) == Some(7.0)
        }),
        "{m}"
    );
    // the log's series are under the job's name; its path-derived name stays in the info
    assert_eq!(value(&m, "training_step", &[("run", "node-a")]), None);
    let info = samples(&m, "training_run_info");
    assert_eq!(info.len(), 1, "{m}");
    assert!(info[0]
        .0
        .iter()
        .any(|(k, v)| k == "path" && v == &log.display().to_string()));
    assert_eq!(pids(&m, "llama-70b").len(), 3);
    // the holders' memory is the log's run's: the writer's GPU only
    assert_eq!(
        value(
            &m,
            "training_run_gpu_memory_used_bytes",
            &[("run", "llama-70b")]
        ),
        Some((2u64 << 30) as f64)
    );
    assert_eq!(
        value(&m, "training_run_world_size", &[("run", "llama-70b")]),
        Some(2.0)
    );
    assert_eq!(samples(&m, "training_run_node_info").len(), 1, "{m}");
    assert_eq!(
        value(
            &m,
            "training_run_node_info",
            &[("run", "llama-70b"), ("node_rank", "0")]
        ),
        Some(1.0)
    );
    kill_group(writer);
    kill_group(other);
}

#[test]
fn a_gpu_process_whose_environment_cannot_be_read_is_counted_and_mapped_to_no_run() {
    use crate::gpu::Fake;
    use serde_json::json;

    // a procfs of two processes: one readable, one whose environ cannot be read
    let dir = tempfile::tempdir().unwrap();
    let procfs = dir.path().join("proc");
    std::fs::create_dir_all(procfs.join("4001")).unwrap();
    std::fs::write(
        procfs.join("4001/environ"),
        b"SLURM_JOB_ID=5\0SLURM_PROCID=3\0SLURM_LOCALID=1\0SLURM_NTASKS=8\0",
    )
    .unwrap();
    std::fs::create_dir_all(procfs.join("4002/environ")).unwrap();
    let log = dir.path().join("idle.log");
    std::fs::write(&log, "{'loss': 3.0, 'step': 1}\n").unwrap();
    let cfg = json!({"driver_version": "550.54.15", "gpus": [
        {"name": "NVIDIA H100", "uuid": "GPU-0", "processes": [{"pid": 4001, "used_memory": 1u64 << 30}]},
        {"name": "NVIDIA H100", "uuid": "GPU-1", "processes": [{"pid": 4002, "used_memory": 1u64 << 30}]},
    ]});
    let arg = format!("idle={}", log.display());
    let root = procfs.display().to_string();
    let f = Fake::start(
        &cfg,
        &[
            "--no-host",
            "--log",
            &arg,
            "--path.procfs",
            &root,
            "--attribution.interval",
            "100ms",
        ],
    );
    let mut m = String::new();
    assert!(
        wait_for(T, || {
            m = f.daemon.scrape();
            value(&m, "gpu_train_exporter_process_environ_errors_total", &[])
                .is_some_and(|n| n >= 1.0)
        }),
        "{m}"
    );
    // the cycle that counted it mapped the readable one (Slurm's names) and not it
    assert_eq!(run_gpus(&m), [row("5", "0", "3", "1")], "{m}");
    assert_eq!(
        value(&m, "training_run_world_size", &[("run", "5")]),
        Some(8.0)
    );
}
