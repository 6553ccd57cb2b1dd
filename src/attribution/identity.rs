//! Process identity from the environment: which training run a process belongs to and its
//! place in it (rank, local rank, world size, node rank), so that one job carries one `run`
//! label on every node, whether or not its log is written there.
//!
//! Everything here is pure: it takes a process's environment as `(variable, value)` pairs
//! ([`env_pairs`] splits `/proc/PID/environ`) and reads nothing.
//!
//! The run name comes from the first configured source that is set
//! (`attribution.run_from_env`, default [`crate::config::DEFAULT_RUN_FROM_ENV`]):
//! - `TORCHELASTIC_RUN_ID` (torchrun's `--rdzv-id`), except its placeholder `none`;
//! - `SLURM_JOB_ID`, with `.STEP` after it for a job step other than the first
//!   (`SLURM_STEP_ID` 1, 2 …): step 0, the one `srun` of most jobs, is the job id alone, as
//!   `squeue` shows it, and two steps of one job training side by side stay apart;
//! - the entry `MASTER_ADDR:MASTER_PORT` ([`TORCH_MASTER_ENTRY`]), which every
//!   rank of one `torch.distributed` job shares: `torch-ADDR-PORT`. A loopback address
//!   (`localhost`, `127.*`, `::1`: a single-node job) is replaced by this node's host name, so
//!   that two single-node jobs on two nodes are not taken for one; without a host name such a
//!   process has no run name;
//! - any other variable: its value.
//!
//! Ranks take torchrun's names first and Slurm's as the fallback.

/// The `attribution.run_from_env` entry that names a `torch.distributed` job from the
/// `MASTER_ADDR` and `MASTER_PORT` every rank shares (`torch-ADDR-PORT`).
pub const TORCH_MASTER_ENTRY: &str = "MASTER_ADDR:MASTER_PORT";

/// Longest run name accepted from an environment.
pub const MAX_ENV_RUN_BYTES: usize = 128;

/// Slurm step ids from here up are its special steps (batch, extern, interactive …).
const SLURM_SPECIAL_STEPS: u64 = 0xFFFF_FFF0;

/// A process's place in its run, each part when its environment says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ranks {
    /// `RANK`, else `SLURM_PROCID`.
    pub rank: Option<u32>,
    /// `LOCAL_RANK`, else `SLURM_LOCALID`.
    pub local_rank: Option<u32>,
    /// `WORLD_SIZE`, else `SLURM_NTASKS`.
    pub world_size: Option<u32>,
    /// `GROUP_RANK`, else `NODE_RANK`, else `SLURM_NODEID`, else `RANK / LOCAL_WORLD_SIZE`
    /// (torchrun's own definition of the group rank on nodes of equal size).
    pub node_rank: Option<u32>,
    /// `LOCAL_WORLD_SIZE`: ranks on this node.
    pub local_world_size: Option<u32>,
}

/// `/proc/PID/environ` (NUL-separated `KEY=value`) as pairs; entries without `=` or not
/// UTF-8 are left out.
pub fn env_pairs(b: &[u8]) -> Vec<(&str, &str)> {
    b.split(|&c| c == 0)
        .filter_map(|entry| {
            let eq = entry.iter().position(|&c| c == b'=')?;
            let k = std::str::from_utf8(&entry[..eq]).ok()?;
            let v = std::str::from_utf8(&entry[eq + 1..]).ok()?;
            (!k.is_empty()).then_some((k, v))
        })
        .collect()
}

/// The first non-empty value of `var`.
fn get<'a>(env: &[(&str, &'a str)], var: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, v)| *k == var && !v.is_empty())
        .map(|&(_, v)| v)
}

fn number(env: &[(&str, &str)], var: &str) -> Option<u32> {
    get(env, var)?.trim().parse().ok()
}

/// The run name from the first of `sources` the environment has (see the module doc), if
/// it is usable: printable and at most [`MAX_ENV_RUN_BYTES`]. `host` is this node's name,
/// for a loopback `MASTER_ADDR`.
pub fn run_identity(
    env: &[(&str, &str)],
    sources: &[String],
    host: Option<&str>,
) -> Option<String> {
    sources
        .iter()
        .find_map(|s| from_source(env, s, host))
        .filter(|s| s.len() <= MAX_ENV_RUN_BYTES && !s.chars().any(char::is_control))
}

fn from_source(env: &[(&str, &str)], source: &str, host: Option<&str>) -> Option<String> {
    match source {
        "TORCHELASTIC_RUN_ID" => get(env, source)
            .filter(|v| *v != "none")
            .map(str::to_string),
        "SLURM_JOB_ID" => {
            let job = get(env, source)?;
            match get(env, "SLURM_STEP_ID").and_then(|s| s.parse::<u64>().ok()) {
                Some(step) if step > 0 && step < SLURM_SPECIAL_STEPS => {
                    Some(format!("{job}.{step}"))
                }
                _ => Some(job.to_string()),
            }
        }
        TORCH_MASTER_ENTRY => {
            let addr = get(env, "MASTER_ADDR")?;
            let port = get(env, "MASTER_PORT")?;
            let addr = if is_loopback(addr) { host? } else { addr };
            Some(format!("torch-{addr}-{port}"))
        }
        var => get(env, var).map(str::to_string),
    }
}

fn is_loopback(addr: &str) -> bool {
    addr == "localhost" || addr == "::1" || addr.starts_with("127.")
}

/// The process's place in its run (see [`Ranks`]).
pub fn ranks(env: &[(&str, &str)]) -> Ranks {
    let first = |vars: &[&str]| vars.iter().find_map(|v| number(env, v));
    let rank = first(&["RANK", "SLURM_PROCID"]);
    let local_world_size = number(env, "LOCAL_WORLD_SIZE");
    let node_rank = first(&["GROUP_RANK", "NODE_RANK", "SLURM_NODEID"]).or_else(|| {
        match (number(env, "RANK"), local_world_size) {
            (Some(r), Some(n)) if n > 0 => Some(r / n),
            _ => None,
        }
    });
    Ranks {
        rank,
        local_rank: first(&["LOCAL_RANK", "SLURM_LOCALID"]),
        world_size: first(&["WORLD_SIZE", "SLURM_NTASKS"]),
        node_rank,
        local_world_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        crate::config::DEFAULT_RUN_FROM_ENV
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn torchrun_then_slurm_then_the_master_address() {
        let d = defaults();
        let id = |env: &[(&str, &str)]| run_identity(env, &d, Some("node7"));
        let torch = [
            ("TORCHELASTIC_RUN_ID", "llama-7b"),
            ("SLURM_JOB_ID", "4242"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29500"),
        ];
        assert_eq!(id(&torch).as_deref(), Some("llama-7b"));
        // torchrun's placeholder run id names nothing: Slurm's job id does
        let placeholder = [("TORCHELASTIC_RUN_ID", "none"), ("SLURM_JOB_ID", "4242")];
        assert_eq!(id(&placeholder).as_deref(), Some("4242"));
        // a later step of the job is told apart; step 0 and the special steps are the job
        for (step, want) in [
            ("0", "4242"),
            ("3", "4242.3"),
            ("4294967291", "4242"),
            ("batch", "4242"),
        ] {
            let env = [("SLURM_JOB_ID", "4242"), ("SLURM_STEP_ID", step)];
            assert_eq!(id(&env).as_deref(), Some(want), "step {step}");
        }
        let master = [("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "29500")];
        assert_eq!(id(&master).as_deref(), Some("torch-10.0.0.1-29500"));
        // a single-node job's loopback master is this node's, never a guess without its name
        let local = [("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];
        assert_eq!(id(&local).as_deref(), Some("torch-node7-29500"));
        assert_eq!(run_identity(&local, &d, None), None);
        assert_eq!(id(&[("MASTER_ADDR", "10.0.0.1")]), None);
        assert_eq!(id(&[("PATH", "/bin"), ("SLURM_JOB_ID", "")]), None);
        // a configured variable of one's own, and unusable values
        let own = vec!["RUN_NAME".to_string()];
        assert_eq!(
            run_identity(&[("RUN_NAME", "sft-3")], &own, None).as_deref(),
            Some("sft-3")
        );
        assert_eq!(run_identity(&[("RUN_NAME", "a\nb")], &own, None), None);
        let long = "j".repeat(MAX_ENV_RUN_BYTES + 1);
        assert_eq!(run_identity(&[("RUN_NAME", &long)], &own, None), None);
        assert_eq!(run_identity(&torch, &[], None), None);
    }

    #[test]
    fn ranks_take_torchrun_names_first_and_slurm_as_the_fallback() {
        let torchrun = [
            ("RANK", "13"),
            ("LOCAL_RANK", "5"),
            ("WORLD_SIZE", "16"),
            ("GROUP_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "8"),
            ("SLURM_PROCID", "1"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_NODEID", "7"),
        ];
        assert_eq!(
            ranks(&torchrun),
            Ranks {
                rank: Some(13),
                local_rank: Some(5),
                world_size: Some(16),
                node_rank: Some(1),
                local_world_size: Some(8),
            }
        );
        let slurm = [
            ("SLURM_PROCID", "9"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS", "32"),
            ("SLURM_NODEID", "4"),
        ];
        assert_eq!(
            ranks(&slurm),
            Ranks {
                rank: Some(9),
                local_rank: Some(1),
                world_size: Some(32),
                node_rank: Some(4),
                local_world_size: None,
            }
        );
        // NODE_RANK, then the group rank torchrun would compute
        assert_eq!(
            ranks(&[("NODE_RANK", "2"), ("RANK", "5")]).node_rank,
            Some(2)
        );
        assert_eq!(
            ranks(&[("RANK", "13"), ("LOCAL_WORLD_SIZE", "4")]).node_rank,
            Some(3)
        );
        // not numbers, or nodes of no size: unknown, never a division
        assert_eq!(
            ranks(&[("RANK", "x"), ("LOCAL_WORLD_SIZE", "0")]),
            Ranks {
                local_world_size: Some(0),
                ..Ranks::default()
            }
        );
        assert_eq!(
            ranks(&[("RANK", "7"), ("LOCAL_WORLD_SIZE", "0")]).node_rank,
            None
        );
    }

    #[test]
    fn environ_splits_into_pairs() {
        let b = b"PATH=/bin\0RANK=3\0junk\0=x\0BAD=\xff\0EMPTY=\0";
        assert_eq!(
            env_pairs(b),
            [("PATH", "/bin"), ("RANK", "3"), ("EMPTY", "")]
        );
    }
}
