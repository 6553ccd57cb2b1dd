//! The attribution cycle: every interval, scans the procfs for the processes holding each
//! run's log, stores them in the run, and joins them with the GPU collector's compute
//! processes, so that a scrape only reads what this cycle wrote.

use std::path::PathBuf;
use std::sync::Mutex;

use super::{GpuProcesses, Scanner};
use crate::clock::{unix_now, Waker};
use crate::collector::gpu::{GpuReader, GpuSnapshot};
use crate::config::Attribution;
use crate::training::{lock, Runs};

/// Scans /proc every interval for the processes holding each run's log, until `stop`.
/// The lock is held only to read the paths and to store the result, never during the scan.
pub fn run(runs: &Mutex<Runs>, settings: &Attribution, gpus: Option<&GpuReader>, stop: &Waker) {
    let scanner = Scanner::new(&settings.procfs, settings.run_from_env.clone());
    let mut warned = false;
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
                let mut runs = lock(runs);
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
        if !stop.sleep_until(std::time::Instant::now() + settings.interval) {
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
                .processes
                .iter()
                .map(|p| (p.pid, p.used_memory_bytes))
                .collect(),
        })
        .collect()
}
