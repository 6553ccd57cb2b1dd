//! The attribution cycle: every interval, scans the procfs for the processes holding each
//! run's log, stores them in the run, and joins them with the GPU collector's compute
//! processes, so that a scrape only reads what this cycle wrote. It also names the run of
//! every GPU compute process from its environment ([`super::node`]), whether or not its log
//! is followed here. Each scan is counted
//! ([`Runs::attribution_cycles`]): the proof, for whoever waits on it, that a scan has
//! happened since.

use std::path::PathBuf;
use std::sync::Mutex;

use super::{node, GpuProcesses, Scanner};
use crate::clock::{unix_now, Waker};
use crate::collector::gpu::{GpuReader, GpuSnapshot};
use crate::config::Attribution;
use crate::procfs::Procfs;
use crate::sync::lock;
use crate::training::Runs;

/// Scans /proc every interval for the processes holding each run's log, until `waker` is
/// stopped (a manual waker: at each of its wake-ups). The lock is held only to read the
/// paths and to store the result, never during the scan.
pub fn run(runs: &Mutex<Runs>, settings: &Attribution, gpus: Option<&GpuReader>, waker: &Waker) {
    let scanner = Scanner::new(Procfs::new(&settings.procfs), settings.run_from_env.clone());
    let mut warned = false;
    let mut warned_env = false;
    lock(runs).attribution_cycles.get_or_insert(0);
    loop {
        let (names, paths): (Vec<String>, Vec<PathBuf>) = lock(runs)
            .runs
            .iter()
            .map(|(n, r)| (n.clone(), PathBuf::from(&r.state.path)))
            .unzip();
        match scanner.scan(&paths) {
            Ok(scan) => {
                if scan.unreadable > 0 && !warned {
                    warned = true;
                    tracing::info!(processes = scan.unreadable, "some processes' open files cannot be read (other users'); their runs fall back to the idle timeout");
                }
                let now = unix_now();
                let gpus = gpus.map(|g| gpu_processes(&g.snapshot()));
                let (node, unreadable) = match &gpus {
                    Some(gpus) => node::node_runs(gpus, |pid| scanner.identified(pid)),
                    None => Default::default(),
                };
                if unreadable > 0 && !warned_env {
                    warned_env = true;
                    tracing::info!(processes = unreadable, "some GPU processes' environments cannot be read (other users'); they are mapped to no run, counted in gpu_train_exporter_process_environ_errors_total");
                }
                let mut runs = lock(runs);
                runs.node = node;
                runs.environ_errors += unreadable;
                for (name, holders) in names.iter().zip(scan.holders) {
                    if let Some(r) = runs.runs.get_mut(name) {
                        r.state.set_holders(holders, now);
                        if let Some(gpus) = &gpus {
                            r.state.set_gpus(gpus);
                        }
                    }
                }
            }
            Err(e) => {
                if !warned {
                    warned = true;
                    tracing::warn!(procfs = %settings.procfs.display(), error = %e, "cannot scan procfs; run liveness falls back to the idle timeout");
                }
            }
        }
        *lock(runs).attribution_cycles.get_or_insert(0) += 1;
        if !waker.sleep_until(std::time::Instant::now() + settings.interval) {
            return;
        }
    }
}

/// The GPU collector's compute processes as the plain data the run join takes.
fn gpu_processes(snap: &GpuSnapshot) -> Vec<GpuProcesses> {
    snap.gpus
        .iter()
        .map(|g| GpuProcesses {
            index: g.index,
            uuid: g.uuid.clone(),
            processes: g
                .all_processes()
                .map(|p| (p.pid, p.used_memory_bytes))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Format;
    use crate::tail::Sink;
    use crate::training::Limits;
    use std::sync::Arc;
    use std::time::Duration;

    const T: Duration = Duration::from_secs(10);

    /// On a manual waker the cycle scans once at start and once per wake-up: a holder is
    /// seen after the first, and seen gone after the wake-up that follows its exit.
    #[test]
    fn each_wake_up_is_one_scan() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("train.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdout(file)
            .spawn()
            .unwrap();
        let runs = Arc::new(Mutex::new(Runs::new(Limits::default(), 4)));
        assert!(lock(&runs).open("r", &log, &Format::Auto));
        let settings = Attribution {
            enabled: true,
            interval: Duration::from_secs(3600),
            procfs: "/proc".into(),
            run_from_env: vec![],
        };
        let waker = Arc::new(Waker::manual());
        let worker = {
            let runs = runs.clone();
            crate::collector::Worker::spawn_with("attribution", waker.clone(), move |w| {
                run(&runs, &settings, None, w)
            })
            .unwrap()
        };
        let holders = || {
            let r = lock(&runs);
            let pids: Vec<u32> = r.runs["r"].state.holders.iter().map(|h| h.pid).collect();
            (pids, r.attribution_cycles)
        };
        assert!(waker.wait_cycles(1, T));
        // the child may not have opened its stdout yet at the first scan: wake until it has
        let deadline = std::time::Instant::now() + T;
        while holders().0.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the holder never seen"
            );
            assert!(waker.wake(1, T));
        }
        let cycles = waker.cycles();
        assert_eq!(holders(), (vec![child.id()], Some(cycles)));
        child.kill().unwrap();
        child.wait().unwrap();
        // reaped, but not scanned again yet
        assert_eq!(holders(), (vec![child.id()], Some(cycles)));
        assert!(waker.wake(1, T));
        assert_eq!(holders(), (vec![], Some(cycles + 1)));
        assert!(lock(&runs).runs["r"].state.holders_gone_at.is_some());
        worker.stop();
    }
}
