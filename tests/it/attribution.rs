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
    // the name sticks after the writers exit, so a crash is reported under it
    kill_group(child);
    assert_eq!(
        d.wait_value("training_run_active", &[("run", "4242")], 0.0, T),
        Some(0.0)
    );
}

#[test]
fn attribution_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    std::fs::write(&log, "{'loss': 2.0, 'step': 1}\n").unwrap();
    let child = launcher(&log, &[]);
    let d = Daemon::start(&[
        "--log",
        &format!("train={}", log.display()),
        "--no-attribution",
    ]);
    d.wait_value("training_step", &[("run", "train")], 1.0, T);
    std::thread::sleep(Duration::from_millis(300));
    assert!(samples(&d.scrape(), "training_run_process_info").is_empty());
    kill_group(child);
}
