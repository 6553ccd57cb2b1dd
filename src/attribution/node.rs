//! The runs this node's GPUs compute for: every NVML compute process named by its
//! environment ([`super::identity`]), whether or not the run's log is written on this node.
//! This is what lets Prometheus join a run's GPUs across all its nodes through one small
//! mapping series per GPU and run (`training_run_gpu_info`), instead of a `run` label on
//! every GPU series.
//!
//! [`node_runs`] is the join, pure but for the `identify` it is given; the attribution cycle
//! gives it the procfs reader and stores the result for the scrape to read.

use std::collections::{BTreeMap, HashMap};

use super::identity::Ranks;
use super::GpuProcesses;

/// One GPU a run computes on, with the lowest known rank of the run's processes on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGpu {
    pub uuid: String,
    pub rank: Option<u32>,
    pub local_rank: Option<u32>,
}

/// A run's place on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePlace {
    pub world_size: Option<u32>,
    /// The lowest known node rank of its processes here.
    pub node_rank: Option<u32>,
    /// Its GPU compute processes here, ascending.
    pub pids: Vec<u32>,
}

/// What the last attribution cycle found on this node's GPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRuns {
    /// By run name and GPU index.
    pub gpus: BTreeMap<(String, u32), NodeGpu>,
    pub runs: BTreeMap<String, NodePlace>,
}

/// How reading one process's identity ended.
pub enum Identified {
    /// Its run name, when its environment has one, and its ranks.
    Known(Option<String>, Ranks),
    /// The process is gone: nothing to say.
    Gone,
    /// Its environment could not be read (another user's, without the capabilities).
    Unreadable,
}

/// Keeps the lower of two optional ranks, a known one before an unknown one.
fn lower(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Names the run of every compute process of `gpus` through `identify` (asked once per
/// PID). Returns the runs and the number of processes whose environment could not be read,
/// which get no mapping (never a guess).
pub fn node_runs(
    gpus: &[GpuProcesses],
    mut identify: impl FnMut(u32) -> Identified,
) -> (NodeRuns, u64) {
    let mut seen: HashMap<u32, Option<(String, Ranks)>> = HashMap::new();
    let mut out = NodeRuns::default();
    let mut unreadable = 0;
    for g in gpus {
        for &(pid, _) in &g.processes {
            let id = seen.entry(pid).or_insert_with(|| match identify(pid) {
                Identified::Known(run, ranks) => run.map(|r| (r, ranks)),
                Identified::Gone => None,
                Identified::Unreadable => {
                    unreadable += 1;
                    None
                }
            });
            let Some((run, ranks)) = id else {
                continue;
            };
            let gpu = out
                .gpus
                .entry((run.clone(), g.index))
                .or_insert_with(|| NodeGpu {
                    uuid: g.uuid.clone(),
                    rank: None,
                    local_rank: None,
                });
            if ranks.rank.is_some() && (gpu.rank.is_none() || ranks.rank < gpu.rank) {
                gpu.rank = ranks.rank;
                gpu.local_rank = ranks.local_rank;
            }
            let place = out.runs.entry(run.clone()).or_default();
            place.world_size = place.world_size.or(ranks.world_size);
            place.node_rank = lower(place.node_rank, ranks.node_rank);
            if let Err(i) = place.pids.binary_search(&pid) {
                place.pids.insert(i, pid);
            }
        }
    }
    (out, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gpu_of_each_run_once_with_its_lowest_rank() {
        let gpus = [
            GpuProcesses {
                index: 0,
                uuid: "GPU-a".into(),
                processes: vec![(10, None), (11, None), (20, None)],
            },
            GpuProcesses {
                index: 1,
                uuid: "GPU-b".into(),
                processes: vec![(12, None), (30, None), (40, None)],
            },
        ];
        let r = |rank: u32, node: u32| Ranks {
            rank: Some(rank),
            local_rank: Some(rank % 8),
            world_size: Some(16),
            node_rank: Some(node),
            local_world_size: None,
        };
        let mut asked = Vec::new();
        let (node, unreadable) = node_runs(&gpus, |pid| {
            asked.push(pid);
            match pid {
                10 => Identified::Known(Some("77".into()), r(9, 1)),
                11 => Identified::Known(Some("77".into()), r(8, 1)),
                12 => Identified::Known(Some("77".into()), Ranks::default()),
                20 => Identified::Known(None, r(0, 0)),
                30 => Identified::Unreadable,
                _ => Identified::Gone,
            }
        });
        assert_eq!(asked, [10, 11, 20, 12, 30, 40]);
        assert_eq!(unreadable, 1);
        let key = |i: u32| ("77".to_string(), i);
        assert_eq!(
            node.gpus.keys().cloned().collect::<Vec<_>>(),
            [key(0), key(1)]
        );
        assert_eq!(
            node.gpus[&key(0)],
            NodeGpu {
                uuid: "GPU-a".into(),
                rank: Some(8),
                local_rank: Some(0)
            }
        );
        assert_eq!(
            node.gpus[&key(1)],
            NodeGpu {
                uuid: "GPU-b".into(),
                rank: None,
                local_rank: None
            }
        );
        assert_eq!(
            node.runs["77"],
            NodePlace {
                world_size: Some(16),
                node_rank: Some(1),
                pids: vec![10, 11, 12],
            }
        );
        assert_eq!(node.runs.len(), 1);
    }
}
