//! What the GPU collector knows, as plain data: one [`GpuSnapshot`] per cycle, with a
//! [`GpuSample`] per GPU. No NVML type appears here, so the rest of the program (the
//! encoder, the JSON API, the run join) reads GPUs without knowing NVML.

use std::collections::BTreeMap;

/// One compute process on a GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProcess {
    pub pid: u32,
    /// The basename of `argv[0]` from the configured procfs (else its `comm`), else NVML's
    /// process name, else empty.
    pub command: String,
    /// `None` when NVML cannot tell (for example inside some containers).
    pub used_memory_bytes: Option<u64>,
}

/// One MIG device of a GPU with MIG on: a compute instance of a GPU instance, with what
/// NVML answers per instance (memory, GPM, compute processes).
#[derive(Debug, Clone, PartialEq)]
pub struct MigSample {
    pub gpu_instance: u32,
    pub compute_instance: u32,
    /// The profile NVML names the device by (`1g.18gb` in `NVIDIA H200 MIG 1g.18gb`); empty
    /// when its name says none.
    pub profile: String,
    /// The MIG device's own `MIG-…` UUID.
    pub uuid: String,
    /// The memory of its GPU instance.
    pub memory_used_bytes: Option<u64>,
    pub memory_free_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub memory_reserved_bytes: Option<u64>,
    /// GPM values of its GPU instance by [`GPM_FAMILIES`], from the last two GPM samples of
    /// that instance; all `None` before a pair exists.
    pub gpm: [Option<f64>; GPM_FAMILIES.len()],
    pub processes: Vec<GpuProcess>,
}

impl MigSample {
    /// An instance with nothing known yet but its ids.
    pub fn new(gpu_instance: u32, compute_instance: u32) -> Self {
        MigSample {
            gpu_instance,
            compute_instance,
            profile: String::new(),
            uuid: String::new(),
            memory_used_bytes: None,
            memory_free_bytes: None,
            memory_total_bytes: None,
            memory_reserved_bytes: None,
            gpm: [None; GPM_FAMILIES.len()],
            processes: Vec::new(),
        }
    }
}

/// One NVLink's cumulative data counters.
#[derive(Debug, Clone, PartialEq)]
pub struct NvLinkSample {
    pub link: u32,
    pub transmit_bytes: Option<u64>,
    pub receive_bytes: Option<u64>,
    /// Error counters by [`NVLINK_ERROR_TYPES`] (same order); `None` where not reported.
    pub errors: [Option<u64>; NVLINK_ERROR_TYPES.len()],
    /// Data rates between the last two GPM samples (Hopper and later).
    pub transmit_bytes_per_second: Option<f64>,
    pub receive_bytes_per_second: Option<f64>,
}

impl NvLinkSample {
    /// A link with nothing known yet.
    pub fn new(link: u32) -> Self {
        NvLinkSample {
            link,
            transmit_bytes: None,
            receive_bytes: None,
            errors: [None; NVLINK_ERROR_TYPES.len()],
            transmit_bytes_per_second: None,
            receive_bytes_per_second: None,
        }
    }
}

/// The `type` label values of `gpu_nvlink_errors_total`, in the order of
/// [`NvLinkSample::errors`].
pub const NVLINK_ERROR_TYPES: [&str; 4] = ["crc_flit", "crc_data", "replay", "recovery"];

/// NVSwitch fabric registration and health (`nvmlDeviceGetGpuFabricInfoV`), for a GPU whose
/// state is not `NOT_SUPPORTED`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fabric {
    /// `NVML_GPU_FABRIC_STATE_*`: 1 not started, 2 in progress, 3 completed.
    pub state: u32,
    /// The registration's NVML return code (0: success).
    pub status: u32,
    /// `NVML_GPU_FABRIC_HEALTH_MASK_*` fields.
    pub health_mask: u32,
}

/// The `state` label values of `gpu_fabric_state`, by `NVML_GPU_FABRIC_STATE_*` (1–3).
pub const FABRIC_STATES: [(u32, &str); 3] =
    [(1, "not_started"), (2, "in_progress"), (3, "completed")];

/// The `issue` label values of `gpu_fabric_health_issue`: shift and width of each field of
/// the health mask, and the value that means "no" (0 is always "not supported").
pub const FABRIC_ISSUES: [(&str, u32, u32, u32); 5] = [
    ("degraded_bandwidth", 0, 0x3, 2),
    ("route_recovery", 2, 0x3, 2),
    ("route_unhealthy", 4, 0x3, 2),
    ("access_timeout_recovery", 6, 0x3, 2),
    ("incorrect_configuration", 8, 0xf, 1),
];

/// The `action` label values of `gpu_recovery_action`, by `NVML_GPU_RECOVERY_ACTION_*`.
pub const RECOVERY_ACTIONS: [&str; 5] = [
    "none",
    "gpu_reset",
    "node_reboot",
    "drain_p2p",
    "drain_and_reset",
];

/// Row remapping state (Ampere and later).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemappedRows {
    pub correctable: u32,
    pub uncorrectable: u32,
    pub pending: bool,
    pub failure: bool,
}

/// The latest values of one GPU. Every value is `None` when the GPU does not support it,
/// when its call failed this cycle, or when the GPU is lost (`up == false`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSample {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub up: bool,
    /// Unix time this GPU's values were read (the start of its last completed sample; the
    /// collector's start while none has completed).
    pub sampled_at: Option<f64>,
    /// 0–1.
    pub utilization: Option<f64>,
    /// 0–1: the fraction of time device memory was read or written.
    pub memory_utilization: Option<f64>,
    pub memory_used_bytes: Option<u64>,
    pub memory_free_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub memory_reserved_bytes: Option<u64>,
    pub power_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    pub energy_joules: Option<f64>,
    pub temperature_celsius: Option<f64>,
    /// Device memory (HBM) temperature.
    pub memory_temperature_celsius: Option<f64>,
    pub sm_clock_hertz: Option<f64>,
    /// The highest SM clock the GPU can run at.
    pub sm_clock_max_hertz: Option<f64>,
    pub memory_clock_hertz: Option<f64>,
    pub pcie_transmit_bytes: Option<u64>,
    pub pcie_receive_bytes: Option<u64>,
    /// PCIe replays since the driver was loaded.
    pub pcie_replay_errors: Option<u64>,
    pub nvlinks: Vec<NvLinkSample>,
    pub ecc_corrected: Option<u64>,
    pub ecc_uncorrected: Option<u64>,
    pub remapped_rows: Option<RemappedRows>,
    pub fabric: Option<Fabric>,
    /// GPM profiling values by [`GPM_FAMILIES`] (same order), from the last two GPM
    /// samples; all `None` before a pair exists (the first sample, after a reset).
    pub gpm: [Option<f64>; GPM_FAMILIES.len()],
    /// The driver's recommended recovery action (`NVML_GPU_RECOVERY_ACTION_*`, an index of
    /// [`RECOVERY_ACTIONS`]).
    pub recovery_action: Option<u32>,
    /// Seconds the clocks were held down since the driver was loaded, by reason of
    /// [`VIOLATION_REASONS`] (same order); `None` for a reason the GPU does not report.
    pub violation_seconds: [Option<f64>; VIOLATION_REASONS.len()],
    /// NVML's clocks event (throttle) reason bits.
    pub clock_event_reasons: Option<u64>,
    /// Its compute processes; under MIG they are those of its instances (in `mig`), and
    /// this list is empty.
    pub processes: Vec<GpuProcess>,
    /// Whether MIG is on (`None`: the GPU has no MIG mode). While it is on, the memory,
    /// GPM and process values are per instance, in `mig`, and the GPU's own are `None`.
    pub mig_enabled: Option<bool>,
    pub mig: Vec<MigSample>,
}

impl GpuSample {
    /// The sample without its values: identity, `up` and the time they were read, for a GPU
    /// whose values are too old to serve.
    pub fn without_values(&self) -> GpuSample {
        GpuSample {
            index: self.index,
            uuid: self.uuid.clone(),
            name: self.name.clone(),
            pci_bus_id: self.pci_bus_id.clone(),
            up: self.up,
            sampled_at: self.sampled_at,
            ..GpuSample::default()
        }
    }

    /// Every compute process on the GPU, its MIG instances' included: what the run join and
    /// the process attribution read.
    pub fn all_processes(&self) -> impl Iterator<Item = &GpuProcess> {
        self.processes
            .iter()
            .chain(self.mig.iter().flat_map(|m| &m.processes))
    }

    /// Device memory in use and installed: the GPU's own, else (under MIG) the sums over its
    /// GPU instances (compute instances of one GPU instance share its memory).
    pub fn memory_in_use(&self) -> (Option<u64>, Option<u64>) {
        if self.memory_used_bytes.is_some() || self.mig.is_empty() {
            return (self.memory_used_bytes, self.memory_total_bytes);
        }
        let mut seen = Vec::new();
        let (mut used, mut total) = (Some(0u64), Some(0u64));
        for m in &self.mig {
            if seen.contains(&m.gpu_instance) {
                continue;
            }
            seen.push(m.gpu_instance);
            used = used.zip(m.memory_used_bytes).map(|(a, b)| a + b);
            total = total.zip(m.memory_total_bytes).map(|(a, b)| a + b);
        }
        (used, total)
    }
}

/// XID errors seen on one GPU for one XID code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct XidCount {
    pub count: u64,
    /// Unix time the last one arrived.
    pub last_seconds: f64,
}

/// Everything the collector knows, as plain data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSnapshot {
    pub nvml_up: bool,
    pub driver_version: String,
    pub gpus: Vec<GpuSample>,
    /// Unix time the last cycle finished.
    pub sampled_at: Option<f64>,
    /// How long the last cycle took.
    pub cycle_seconds: Option<f64>,
    /// `(gpu index, xid)` → count and last time.
    pub xids: BTreeMap<(u32, u64), XidCount>,
    /// XID errors from a device handle no GPU had, by xid.
    pub xids_unattributed: BTreeMap<u64, u64>,
}

impl GpuSnapshot {
    /// The GPU with this NVML index.
    pub fn gpu(&self, index: u32) -> Option<&GpuSample> {
        self.gpus.iter().find(|g| g.index == index)
    }
}

/// The throttle reasons as NVML numbers them, with their label values.
pub const CLOCK_EVENT_REASONS: [(u64, &str); 9] = [
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake"),
    (0x100, "display_clock_setting"),
];

/// The GPM (GPU Performance Monitoring, Hopper and later) families: name, help, and the
/// scale from NVML's unit (percent, MiB/s) to the family's (ratio, bytes/s).
pub const GPM_FAMILIES: [(&str, &str, f64); 10] = [
    (
        "gpu_sm_active_ratio",
        "Fraction of time at least one warp was resident on an SM, averaged over SMs (GPM SM_UTIL).",
        0.01,
    ),
    (
        "gpu_sm_occupancy_ratio",
        "Resident warps as a fraction of the SMs' maximum (GPM SM_OCCUPANCY).",
        0.01,
    ),
    (
        "gpu_tensor_active_ratio",
        "Fraction of time any tensor pipe was active (GPM ANY_TENSOR_UTIL).",
        0.01,
    ),
    (
        "gpu_dram_active_ratio",
        "Fraction of peak device memory bandwidth used (GPM DRAM_BW_UTIL).",
        0.01,
    ),
    (
        "gpu_graphics_engine_active_ratio",
        "Fraction of time the graphics or compute engine was active (GPM GRAPHICS_UTIL).",
        0.01,
    ),
    (
        "gpu_fp16_active_ratio",
        "Fraction of time the FP16 pipe was active (GPM FP16_UTIL).",
        0.01,
    ),
    (
        "gpu_fp32_active_ratio",
        "Fraction of time the FP32 pipe was active (GPM FP32_UTIL).",
        0.01,
    ),
    (
        "gpu_fp64_active_ratio",
        "Fraction of time the FP64 pipe was active (GPM FP64_UTIL).",
        0.01,
    ),
    (
        "gpu_pcie_transmit_bytes_per_second",
        "PCIe bytes sent per second between the last two GPM samples (GPM PCIE_TX_PER_SEC).",
        1_048_576.0,
    ),
    (
        "gpu_pcie_receive_bytes_per_second",
        "PCIe bytes received per second between the last two GPM samples (GPM PCIE_RX_PER_SEC).",
        1_048_576.0,
    ),
];

/// The reasons of `gpu_violation_seconds_total`, in the order of NVML's
/// `NVML_PERF_POLICY_*` (0–5).
pub const VIOLATION_REASONS: [&str; 6] = [
    "power",
    "thermal",
    "sync_boost",
    "board_limit",
    "low_utilization",
    "reliability",
];

/// Seconds between two points of a GPU's last-hour history (the live page's chart).
pub const HISTORY_STEP_SECONDS: f64 = 10.0;
/// Points kept per GPU: one hour.
pub const HISTORY_POINTS: usize = 360;

/// One history point: Unix time, utilization (0–1), memory used / total (0–1).
pub type HistoryPoint = (f64, Option<f64>, Option<f64>);

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, bytes: u64) -> GpuProcess {
        GpuProcess {
            pid,
            command: String::new(),
            used_memory_bytes: Some(bytes),
        }
    }

    /// Under MIG the processes and memory are the instances': a GPU's processes list them
    /// all, and its memory sums each GPU instance once (its compute instances share it).
    #[test]
    fn a_mig_gpu_shows_its_instances_processes_and_memory() {
        let mut a = MigSample::new(1, 0);
        a.processes = vec![process(10, 1)];
        a.memory_used_bytes = Some(3);
        a.memory_total_bytes = Some(20);
        let mut a2 = MigSample::new(1, 1);
        a2.processes = vec![process(11, 2)];
        a2.memory_used_bytes = Some(3);
        a2.memory_total_bytes = Some(20);
        let mut b = MigSample::new(2, 0);
        b.memory_used_bytes = Some(4);
        b.memory_total_bytes = Some(40);
        let g = GpuSample {
            mig_enabled: Some(true),
            mig: vec![a, a2, b],
            ..GpuSample::default()
        };
        let pids: Vec<u32> = g.all_processes().map(|p| p.pid).collect();
        assert_eq!(pids, [10, 11]);
        assert_eq!(g.memory_in_use(), (Some(7), Some(60)));
        // without MIG, the GPU's own
        let whole = GpuSample {
            processes: vec![process(12, 5)],
            memory_used_bytes: Some(9),
            memory_total_bytes: Some(80),
            ..GpuSample::default()
        };
        assert_eq!(whole.all_processes().count(), 1);
        assert_eq!(whole.memory_in_use(), (Some(9), Some(80)));
        // an instance that cannot tell its memory: unknown, not a smaller sum
        let mut c = MigSample::new(3, 0);
        c.memory_total_bytes = Some(10);
        let partial = GpuSample { mig: vec![c], ..g };
        assert_eq!(partial.memory_in_use(), (None, Some(10)));
    }
}
