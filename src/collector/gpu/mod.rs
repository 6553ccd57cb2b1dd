//! GPU collector: the only module that talks to NVML (through nvml-wrapper).
//!
//! A background thread samples every GPU each interval into a [`GpuSnapshot`] of plain data;
//! a scrape formats the latest snapshot and never calls NVML, so scrape latency does not
//! grow with GPU count or with a slow driver. XID errors arrive through an NVML event set
//! waited on in a thread of its own and are counted, not overwritten.
//!
//! Each capability is probed on its first call per device: `NotSupported` or a symbol the
//! library lacks (`FailedToLoadSymbol`) makes that family absent for that GPU, logged once,
//! and never called again. Any other failure is counted in
//! `gpu_train_exporter_collector_errors_total{call}` and leaves only that value out. A GPU
//! that answers `GPU_IS_LOST` reports `gpu_up 0` and no other values until it answers again.
//!
//! Per-link NVLink and cumulative PCIe counters are NVML field values read with the raw
//! `nvmlDeviceGetFieldValues`, because nvml-wrapper's `field_values_for` never sets
//! `scopeId` and so reads link 0 only.

use super::{Stop, Worker};
use std::collections::{BTreeMap, HashMap};
use std::ffi::c_int;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::sys_exports::field_id::{
    NVML_FI_DEV_NVLINK_LINK_COUNT, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, NVML_FI_DEV_PCIE_COUNT_RX_BYTES,
    NVML_FI_DEV_PCIE_COUNT_TX_BYTES,
};
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::nvmlFieldValue_t;

use super::{unix_now, GpuOptions};
use crate::expose::{Encoder, Kind};

/// The NVML functions the collector calls, in the order of [`Call`]. They label
/// `gpu_train_exporter_collector_errors_total{call}`, and a test keeps the fake library's
/// exports in step with this list.
pub const CALLS: [&str; 20] = [
    "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetHandleByIndex_v2",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetName",
    "nvmlDeviceGetPciInfo_v3",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetMemoryInfo_v2",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlSystemGetProcessName",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceRegisterEvents",
    "nvmlEventSetWait_v2",
];

/// Library-level functions called outside the sampling cycle (initialisation, the event
/// set's lifetime); not sampled per device, so not error labels.
pub const LIFECYCLE_CALLS: [&str; 5] = [
    "nvmlInit_v2",
    "nvmlShutdown",
    "nvmlSystemGetDriverVersion",
    "nvmlEventSetCreate",
    "nvmlEventSetFree",
];

/// One sampled NVML function (an index into [`CALLS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Count,
    Handle,
    Uuid,
    Name,
    Pci,
    Utilization,
    Memory,
    Power,
    PowerLimit,
    Energy,
    Temperature,
    Clock,
    Ecc,
    RemappedRows,
    ClockEvents,
    Processes,
    ProcessName,
    FieldValues,
    RegisterEvents,
    EventWait,
}

impl Call {
    fn name(self) -> &'static str {
        CALLS[self as usize]
    }
    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// One compute process on a GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProcess {
    pub pid: u32,
    /// From `/proc/PID/comm`, else NVML's process name, else empty.
    pub command: String,
    /// `None` when NVML cannot tell (for example inside some containers).
    pub used_memory_bytes: Option<u64>,
}

/// One NVLink's cumulative data counters.
#[derive(Debug, Clone, PartialEq)]
pub struct NvLinkSample {
    pub link: u32,
    pub transmit_bytes: Option<u64>,
    pub receive_bytes: Option<u64>,
}

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
    pub sm_clock_hertz: Option<f64>,
    pub memory_clock_hertz: Option<f64>,
    pub pcie_transmit_bytes: Option<u64>,
    pub pcie_receive_bytes: Option<u64>,
    pub nvlinks: Vec<NvLinkSample>,
    pub ecc_corrected: Option<u64>,
    pub ecc_uncorrected: Option<u64>,
    pub remapped_rows: Option<RemappedRows>,
    /// NVML's clocks event (throttle) reason bits.
    pub clock_event_reasons: Option<u64>,
    pub processes: Vec<GpuProcess>,
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
}

impl GpuSnapshot {
    /// The GPU with this NVML index.
    pub fn gpu(&self, index: u32) -> Option<&GpuSample> {
        self.gpus.iter().find(|g| g.index == index)
    }
}

fn record_history(shared: &Shared, snap: &GpuSnapshot) {
    let t = snap.sampled_at.unwrap_or_else(unix_now);
    let mut history = crate::training::lock(&shared.history);
    for g in &snap.gpus {
        let mem = match (g.memory_used_bytes, g.memory_total_bytes) {
            (Some(u), Some(total)) if total > 0 => Some(u as f64 / total as f64),
            _ => None,
        };
        let h = history.entry(g.index).or_default();
        if h.len() >= HISTORY_POINTS {
            h.pop_front();
        }
        h.push_back((t, g.utilization, mem));
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

/// Seconds between two points of a GPU's last-hour history (the live page's chart).
pub const HISTORY_STEP_SECONDS: f64 = 10.0;
/// Points kept per GPU: one hour.
pub const HISTORY_POINTS: usize = 360;

/// One history point: Unix time, utilization (0–1), memory used / total (0–1).
pub type HistoryPoint = (f64, Option<f64>, Option<f64>);

struct Shared {
    snapshot: Mutex<Arc<GpuSnapshot>>,
    /// The last hour of utilization and memory per GPU index.
    history: Mutex<BTreeMap<u32, std::collections::VecDeque<HistoryPoint>>>,
    xids: Mutex<BTreeMap<(u32, u64), XidCount>>,
    errors: Mutex<[u64; CALLS.len()]>,
}

impl Shared {
    fn error(&self, call: Call) {
        crate::training::lock(&self.errors)[call as usize] += 1;
    }
}

/// Reads the GPU collector's latest snapshot; cloned to the threads that need it.
#[derive(Clone)]
pub struct GpuReader {
    shared: Arc<Shared>,
}

impl GpuReader {
    /// The latest snapshot, with the XID counts up to now.
    pub fn snapshot(&self) -> Arc<GpuSnapshot> {
        let snap = crate::training::lock(&self.shared.snapshot).clone();
        let xids = crate::training::lock(&self.shared.xids);
        if xids.is_empty() {
            return snap;
        }
        let mut s = (*snap).clone();
        s.xids = xids.clone();
        Arc::new(s)
    }
}

/// The running GPU collector. Dropping it stops its threads.
pub struct GpuCollector {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

impl GpuCollector {
    /// Loads NVML and starts sampling. Never fails: without NVML it logs why once and
    /// reports `nvml_up` false. Waits (up to 10 s) for the first cycle so that the first
    /// scrape already has values.
    pub fn start(opts: GpuOptions) -> GpuCollector {
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(Arc::new(GpuSnapshot::default())),
            history: Mutex::new(BTreeMap::new()),
            xids: Mutex::new(BTreeMap::new()),
            errors: Mutex::new([0; CALLS.len()]),
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let worker = {
            let shared = shared.clone();
            Worker::spawn("gpu", move |stop| run(opts, &shared, stop, ready_tx))
        };
        let _ = ready_rx.recv_timeout(Duration::from_secs(10));
        GpuCollector { shared, worker }
    }

    /// The latest snapshot, with the XID counts up to now.
    pub fn snapshot(&self) -> Arc<GpuSnapshot> {
        self.reader().snapshot()
    }

    /// A handle that reads the snapshots, for the threads that join them with runs.
    pub fn reader(&self) -> GpuReader {
        GpuReader {
            shared: self.shared.clone(),
        }
    }

    /// The last hour of one GPU's utilization and memory, oldest first, a point every
    /// [`HISTORY_STEP_SECONDS`].
    pub fn history(&self, index: u32) -> Vec<HistoryPoint> {
        crate::training::lock(&self.shared.history)
            .get(&index)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Failed calls so far, by NVML function (every sampled function once NVML is up).
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        if !crate::training::lock(&self.shared.snapshot).nvml_up {
            return Vec::new();
        }
        let e = crate::training::lock(&self.shared.errors);
        CALLS.iter().zip(e.iter()).map(|(c, n)| (*c, *n)).collect()
    }

    /// Writes the GPU families.
    pub fn encode(&self, enc: &mut Encoder<'_>) {
        encode(enc, &self.snapshot());
    }

    /// Stops the threads and waits for them (at most one event wait, 200 ms).
    pub fn stop(self) {
        if let Some(w) = self.worker {
            w.stop();
        }
    }
}

/// What one device supports, learnt on first use.
struct Dev<'n> {
    device: Device<'n>,
    identity: GpuSample,
    /// Bits of [`Call`]s (and of [`Field`]s, shifted) found absent.
    absent: u32,
    /// Bits of calls whose failure was already logged.
    warned: u32,
    /// Field-value requests still believed supported.
    fields: Vec<(Field, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    PcieTx,
    PcieRx,
    NvLinkTx,
    NvLinkRx,
}

impl Field {
    fn id(self) -> u32 {
        match self {
            Field::PcieTx => NVML_FI_DEV_PCIE_COUNT_TX_BYTES,
            Field::PcieRx => NVML_FI_DEV_PCIE_COUNT_RX_BYTES,
            Field::NvLinkTx => NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
            Field::NvLinkRx => NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
        }
    }
}

fn run(opts: GpuOptions, shared: &Shared, stop: &Stop, ready: mpsc::Sender<()>) {
    let mut builder = Nvml::builder();
    if let Some(p) = &opts.library {
        builder.lib_path(p.as_os_str());
    }
    let lib_name = opts
        .library
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "libnvidia-ml.so.1".into());
    let nvml = match builder.init() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(
                "GPU metrics absent: cannot initialise NVML from {lib_name}: {}",
                describe(&e)
            );
            let _ = ready.send(());
            return;
        }
    };
    let driver_version = nvml.sys_driver_version().unwrap_or_default();
    let mut devs = discover(&nvml, shared);
    tracing::info!(gpus = devs.len(), driver = %driver_version, library = %lib_name, "NVML initialised");
    let handles: Vec<(u32, usize)> = devs
        .iter()
        .map(|d| (d.identity.index, unsafe { d.device.handle() } as usize))
        .collect();
    let mut names: HashMap<u32, String> = HashMap::new();
    std::thread::scope(|s| {
        s.spawn(|| xid_loop(&nvml, &handles, shared, stop));
        let mut ready = Some(ready);
        let mut last_history: Option<Instant> = None;
        while !stop.is_set() {
            let started = Instant::now();
            let gpus: Vec<GpuSample> = devs
                .iter_mut()
                .map(|d| sample(&nvml, d, shared, &mut names))
                .collect();
            let live: std::collections::HashSet<u32> = gpus
                .iter()
                .flat_map(|g| g.processes.iter().map(|p| p.pid))
                .collect();
            names.retain(|pid, _| live.contains(pid));
            let snap = GpuSnapshot {
                nvml_up: true,
                driver_version: driver_version.clone(),
                gpus,
                sampled_at: Some(unix_now()),
                cycle_seconds: Some(started.elapsed().as_secs_f64()),
                xids: BTreeMap::new(),
            };
            if last_history
                .is_none_or(|t: Instant| t.elapsed().as_secs_f64() >= HISTORY_STEP_SECONDS)
            {
                last_history = Some(started);
                record_history(shared, &snap);
            }
            *crate::training::lock(&shared.snapshot) = Arc::new(snap);
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            stop.sleep_until(started + opts.interval);
        }
    });
}

/// A one-line reason for a failed initialisation.
fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(e) => format!("cannot load the library ({e})"),
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".into(),
        NvmlError::NoPermission => "permission denied".into(),
        e => e.to_string(),
    }
}

/// Enumerates the GPUs and reads their identity.
fn discover<'n>(nvml: &'n Nvml, shared: &Shared) -> Vec<Dev<'n>> {
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            shared.error(Call::Count);
            tracing::warn!("GPU metrics absent: cannot count GPUs: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                shared.error(Call::Handle);
                tracing::warn!(gpu = index, "GPU left out: cannot get its handle: {e}");
                continue;
            }
        };
        let mut dev = Dev {
            device,
            identity: GpuSample {
                index,
                ..GpuSample::default()
            },
            absent: 0,
            warned: 0,
            fields: Vec::new(),
        };
        let mut lost = false;
        dev.identity.uuid =
            call(&mut dev, shared, &mut lost, Call::Uuid, |d| d.uuid()).unwrap_or_default();
        dev.identity.name =
            call(&mut dev, shared, &mut lost, Call::Name, |d| d.name()).unwrap_or_default();
        dev.identity.pci_bus_id = call(&mut dev, shared, &mut lost, Call::Pci, |d| d.pci_info())
            .map(|p| p.bus_id)
            .unwrap_or_default();
        let links = call(&mut dev, shared, &mut lost, Call::FieldValues, |d| {
            let mut v = [request(NVML_FI_DEV_NVLINK_LINK_COUNT, 0)];
            field_values(nvml, d, &mut v)?;
            Ok(read_value(&v[0]).unwrap_or(0))
        })
        .unwrap_or(0)
        .min(64) as u32;
        dev.fields = vec![(Field::PcieTx, 0), (Field::PcieRx, 0)];
        for l in 0..links {
            dev.fields.push((Field::NvLinkTx, l));
            dev.fields.push((Field::NvLinkRx, l));
        }
        out.push(dev);
    }
    out
}

/// Makes one call unless its family is known absent or the GPU was lost this cycle.
fn call<'n, T>(
    dev: &mut Dev<'n>,
    shared: &Shared,
    lost: &mut bool,
    c: Call,
    f: impl FnOnce(&Device<'n>) -> Result<T, NvmlError>,
) -> Option<T> {
    if *lost || dev.absent & c.bit() != 0 {
        return None;
    }
    match f(&dev.device) {
        Ok(v) => Some(v),
        Err(e @ (NvmlError::NotSupported | NvmlError::FailedToLoadSymbol(_))) => {
            dev.absent |= c.bit();
            tracing::info!(
                gpu = dev.identity.index,
                call = c.name(),
                "not available on this GPU, its series are left out: {e}"
            );
            None
        }
        Err(NvmlError::GpuLost) => {
            *lost = true;
            None
        }
        Err(e) => {
            shared.error(c);
            if dev.warned & c.bit() == 0 {
                dev.warned |= c.bit();
                tracing::warn!(gpu = dev.identity.index, call = c.name(), "NVML call failed (logged once, counted in gpu_train_exporter_collector_errors_total): {e}");
            }
            None
        }
    }
}

fn request(field: u32, scope: u32) -> nvmlFieldValue_t {
    // SAFETY: a plain C struct for which all-zero bytes are valid.
    let mut v: nvmlFieldValue_t = unsafe { std::mem::zeroed() };
    v.fieldId = field;
    v.scopeId = scope;
    v
}

/// `nvmlDeviceGetFieldValues` with `scopeId` as set in each request.
fn field_values(nvml: &Nvml, d: &Device<'_>, v: &mut [nvmlFieldValue_t]) -> Result<(), NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetFieldValues.as_ref())?;
    // SAFETY: the handle is a live device of this `nvml`, the pointer and count describe
    // `v`, and NVML writes only inside those entries.
    unsafe { nvml_try(sym(d.handle(), v.len() as c_int, v.as_mut_ptr())) }
}

/// A field value as an integer, or the per-field error.
fn read_value(v: &nvmlFieldValue_t) -> Result<u64, NvmlError> {
    nvml_try(v.nvmlReturn)?;
    // SAFETY: `valueType` says which member of the union NVML wrote.
    unsafe {
        Ok(match v.valueType {
            0 => v.value.dVal.max(0.0) as u64,
            1 => v.value.uiVal as u64,
            // `c_ulong` is 32 bits on some targets.
            #[allow(clippy::unnecessary_cast)]
            2 => v.value.ulVal as u64,
            3 => v.value.ullVal,
            4 => v.value.sllVal.max(0) as u64,
            5 => v.value.siVal.max(0) as u64,
            6 => v.value.usVal as u64,
            _ => return Err(NvmlError::UnexpectedVariant(v.valueType)),
        })
    }
}

fn remapped_rows(nvml: &Nvml, d: &Device<'_>) -> Result<RemappedRows, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetRemappedRows.as_ref())?;
    let (mut c, mut u, mut p, mut f) = (0, 0, 0, 0);
    // SAFETY: a live device handle and four valid out-pointers.
    unsafe { nvml_try(sym(d.handle(), &mut c, &mut u, &mut p, &mut f))? };
    Ok(RemappedRows {
        correctable: c,
        uncorrectable: u,
        pending: p != 0,
        failure: f != 0,
    })
}

/// One cycle of one GPU.
fn sample(
    nvml: &Nvml,
    dev: &mut Dev<'_>,
    shared: &Shared,
    names: &mut HashMap<u32, String>,
) -> GpuSample {
    let mut s = GpuSample {
        up: true,
        ..dev.identity.clone()
    };
    let mut lost = false;
    let l = &mut lost;
    if let Some(u) = call(dev, shared, l, Call::Utilization, |d| d.utilization_rates()) {
        s.utilization = Some(u.gpu as f64 / 100.0);
        s.memory_utilization = Some(u.memory as f64 / 100.0);
    }
    if let Some(m) = call(dev, shared, l, Call::Memory, |d| d.memory_info()) {
        s.memory_used_bytes = Some(m.used);
        s.memory_free_bytes = Some(m.free);
        s.memory_total_bytes = Some(m.total);
        s.memory_reserved_bytes = Some(m.reserved);
    }
    s.power_watts =
        call(dev, shared, l, Call::Power, |d| d.power_usage()).map(|mw| mw as f64 / 1000.0);
    s.power_limit_watts = call(dev, shared, l, Call::PowerLimit, |d| {
        d.enforced_power_limit()
    })
    .map(|mw| mw as f64 / 1000.0);
    s.energy_joules = call(dev, shared, l, Call::Energy, |d| {
        d.total_energy_consumption()
    })
    .map(|mj| mj as f64 / 1000.0);
    s.temperature_celsius = call(dev, shared, l, Call::Temperature, |d| {
        d.temperature(TemperatureSensor::Gpu)
    })
    .map(f64::from);
    if let Some((sm, mem)) = call(dev, shared, l, Call::Clock, |d| {
        Ok((d.clock_info(Clock::SM)?, d.clock_info(Clock::Memory)?))
    }) {
        s.sm_clock_hertz = Some(sm as f64 * 1e6);
        s.memory_clock_hertz = Some(mem as f64 * 1e6);
    }
    if let Some((c, u)) = call(dev, shared, l, Call::Ecc, |d| {
        Ok((
            d.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)?,
            d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)?,
        ))
    }) {
        s.ecc_corrected = Some(c);
        s.ecc_uncorrected = Some(u);
    }
    s.remapped_rows = call(dev, shared, l, Call::RemappedRows, |d| {
        remapped_rows(nvml, d)
    });
    s.clock_event_reasons = call(dev, shared, l, Call::ClockEvents, |d| {
        d.current_throttle_reasons().map(|r| r.bits())
    });
    sample_fields(nvml, dev, shared, l, &mut s);
    if let Some(procs) = call(dev, shared, l, Call::Processes, |d| {
        d.running_compute_processes()
    }) {
        s.processes = procs
            .into_iter()
            .map(|p: ProcessInfo| GpuProcess {
                pid: p.pid,
                command: command(nvml, dev, shared, names, p.pid),
                used_memory_bytes: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b),
                    UsedGpuMemory::Unavailable => None,
                },
            })
            .collect();
    }
    if lost {
        return GpuSample {
            up: false,
            ..dev.identity.clone()
        };
    }
    s
}

fn sample_fields(
    nvml: &Nvml,
    dev: &mut Dev<'_>,
    shared: &Shared,
    lost: &mut bool,
    s: &mut GpuSample,
) {
    if dev.fields.is_empty() {
        return;
    }
    let mut req: Vec<nvmlFieldValue_t> = dev
        .fields
        .iter()
        .map(|(f, scope)| request(f.id(), *scope))
        .collect();
    if call(dev, shared, lost, Call::FieldValues, |d| {
        field_values(nvml, d, &mut req)
    })
    .is_none()
    {
        return;
    }
    let mut keep = Vec::with_capacity(dev.fields.len());
    for ((field, link), v) in dev.fields.iter().copied().zip(&req) {
        let value = match read_value(v) {
            Ok(x) => x,
            Err(NvmlError::NotSupported | NvmlError::InvalidArg) => {
                tracing::info!(
                    gpu = dev.identity.index,
                    field = v.fieldId,
                    link,
                    "field value not available on this GPU, its series are left out"
                );
                continue;
            }
            Err(NvmlError::GpuLost) => {
                *lost = true;
                keep.push((field, link));
                continue;
            }
            Err(_) => {
                shared.error(Call::FieldValues);
                keep.push((field, link));
                continue;
            }
        };
        keep.push((field, link));
        match field {
            Field::PcieTx => s.pcie_transmit_bytes = Some(value),
            Field::PcieRx => s.pcie_receive_bytes = Some(value),
            Field::NvLinkTx | Field::NvLinkRx => {
                let bytes = value.saturating_mul(1024);
                let entry = match s.nvlinks.iter_mut().find(|n| n.link == link) {
                    Some(e) => e,
                    None => {
                        s.nvlinks.push(NvLinkSample {
                            link,
                            transmit_bytes: None,
                            receive_bytes: None,
                        });
                        s.nvlinks.last_mut().expect("just pushed")
                    }
                };
                if field == Field::NvLinkTx {
                    entry.transmit_bytes = Some(bytes);
                } else {
                    entry.receive_bytes = Some(bytes);
                }
            }
        }
    }
    dev.fields = keep;
}

/// The command of a process: `/proc/PID/comm`, else NVML's name for it, cached per PID.
fn command(
    nvml: &Nvml,
    dev: &mut Dev<'_>,
    shared: &Shared,
    names: &mut HashMap<u32, String>,
    pid: u32,
) -> String {
    if let Some(n) = names.get(&pid) {
        return n.clone();
    }
    let name = match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(s) => s.trim_end_matches('\n').to_string(),
        Err(_) => {
            let mut lost = false;
            call(dev, shared, &mut lost, Call::ProcessName, |_| {
                match nvml.sys_process_name(pid, 64) {
                    Err(NvmlError::NotFound) => Ok(String::new()),
                    r => r,
                }
            })
            .unwrap_or_default()
        }
    };
    names.insert(pid, name.clone());
    name
}

/// Waits for XID events and counts them per GPU and code.
fn xid_loop(nvml: &Nvml, handles: &[(u32, usize)], shared: &Shared, stop: &Stop) {
    let set = match nvml.create_event_set() {
        Ok(s) => s,
        Err(e) => {
            tracing::info!("XID events not available, gpu_xid_errors_total is left out: {e}");
            return;
        }
    };
    let register = match nvml_sym(nvml.lib().nvmlDeviceRegisterEvents.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!("XID events not available, gpu_xid_errors_total is left out: {e}");
            return;
        }
    };
    let mut registered = 0;
    for (index, handle) in handles {
        // SAFETY: a live device handle and the live event set; registering events on a
        // device does not consume the set (unlike nvml-wrapper's `register_events`, which
        // frees it on failure, losing the GPUs registered before).
        let r = unsafe {
            nvml_try(register(
                *handle as _,
                EventTypes::CRITICAL_XID_ERROR.bits(),
                set.handle(),
            ))
        };
        match r {
            Ok(()) => registered += 1,
            Err(e @ (NvmlError::NotSupported | NvmlError::GpuLost)) => {
                tracing::info!(gpu = index, "no XID events from this GPU: {e}")
            }
            Err(e) => {
                shared.error(Call::RegisterEvents);
                tracing::warn!(gpu = index, "cannot register for XID events: {e}");
            }
        }
    }
    if registered == 0 {
        return;
    }
    let mut warned = false;
    while !stop.is_set() {
        match set.wait(200) {
            Ok(ev) => {
                let Some(xid) = ev.event_data.map(|x| match x {
                    nvml_wrapper::enums::event::XidError::Value(v) => v,
                    nvml_wrapper::enums::event::XidError::Unknown => 999,
                }) else {
                    continue;
                };
                // SAFETY: the handle is only compared, never dereferenced.
                let h = unsafe { ev.device.handle() } as usize;
                let Some((index, _)) = handles.iter().find(|(_, x)| *x == h) else {
                    continue;
                };
                tracing::warn!(gpu = index, xid, "XID error");
                let mut x = crate::training::lock(&shared.xids);
                let e = x.entry((*index, xid)).or_insert(XidCount {
                    count: 0,
                    last_seconds: 0.0,
                });
                e.count += 1;
                e.last_seconds = unix_now();
            }
            Err(NvmlError::Timeout) => {}
            Err(e) => {
                shared.error(Call::EventWait);
                if !warned {
                    warned = true;
                    tracing::warn!("waiting for XID events failed (logged once): {e}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Writes the GPU families from a snapshot; a family with no series is left out.
pub fn encode(enc: &mut Encoder<'_>, snap: &GpuSnapshot) {
    if !snap.nvml_up {
        return;
    }
    let gpus = &snap.gpus;
    let idx: Vec<String> = gpus.iter().map(|g| g.index.to_string()).collect();
    let up: Vec<(&GpuSample, &str)> = gpus
        .iter()
        .zip(&idx)
        .filter(|(g, _)| g.up)
        .map(|(g, i)| (g, i.as_str()))
        .collect();

    if !gpus.is_empty() {
        enc.family("gpu_info", "Identity of each GPU; always 1.", Kind::Gauge);
        for (g, i) in gpus.iter().zip(&idx) {
            enc.sample(
                "gpu_info",
                &[
                    ("gpu", i),
                    ("uuid", &g.uuid),
                    ("name", &g.name),
                    ("pci_bus_id", &g.pci_bus_id),
                    ("driver_version", &snap.driver_version),
                ],
                1.0,
            );
        }
        enc.family(
            "gpu_up",
            "1 while the GPU answers NVML, 0 once it is lost (its other series are then absent).",
            Kind::Gauge,
        );
        for (g, i) in gpus.iter().zip(&idx) {
            enc.sample(
                "gpu_up",
                &[("gpu", i), ("uuid", &g.uuid)],
                if g.up { 1.0 } else { 0.0 },
            );
        }
    }

    type Getter = fn(&GpuSample) -> Option<f64>;
    let simple: [(&str, &str, Kind, Getter); 16] = [
        (
            "gpu_utilization_ratio",
            "Fraction of time a kernel was running on the GPU over the last sample period (0-1).",
            Kind::Gauge,
            |g| g.utilization,
        ),
        (
            "gpu_memory_utilization_ratio",
            "Fraction of time device memory was read or written over the last sample period (0-1).",
            Kind::Gauge,
            |g| g.memory_utilization,
        ),
        (
            "gpu_memory_used_bytes",
            "Device memory in use.",
            Kind::Gauge,
            |g| g.memory_used_bytes.map(|v| v as f64),
        ),
        (
            "gpu_memory_free_bytes",
            "Device memory free.",
            Kind::Gauge,
            |g| g.memory_free_bytes.map(|v| v as f64),
        ),
        (
            "gpu_memory_total_bytes",
            "Device memory installed.",
            Kind::Gauge,
            |g| g.memory_total_bytes.map(|v| v as f64),
        ),
        (
            "gpu_memory_reserved_bytes",
            "Device memory reserved by the driver and firmware.",
            Kind::Gauge,
            |g| g.memory_reserved_bytes.map(|v| v as f64),
        ),
        ("gpu_power_watts", "Power draw.", Kind::Gauge, |g| {
            g.power_watts
        }),
        (
            "gpu_power_limit_watts",
            "Enforced power limit.",
            Kind::Gauge,
            |g| g.power_limit_watts,
        ),
        (
            "gpu_energy_joules_total",
            "Energy consumed since the driver was loaded.",
            Kind::Counter,
            |g| g.energy_joules,
        ),
        (
            "gpu_temperature_celsius",
            "GPU core temperature.",
            Kind::Gauge,
            |g| g.temperature_celsius,
        ),
        (
            "gpu_sm_clock_hertz",
            "Current SM clock.",
            Kind::Gauge,
            |g| g.sm_clock_hertz,
        ),
        (
            "gpu_memory_clock_hertz",
            "Current memory clock.",
            Kind::Gauge,
            |g| g.memory_clock_hertz,
        ),
        (
            "gpu_pcie_transmit_bytes_total",
            "Bytes sent over PCIe (NVML cumulative counter; may wrap).",
            Kind::Counter,
            |g| g.pcie_transmit_bytes.map(|v| v as f64),
        ),
        (
            "gpu_pcie_receive_bytes_total",
            "Bytes received over PCIe (NVML cumulative counter; may wrap).",
            Kind::Counter,
            |g| g.pcie_receive_bytes.map(|v| v as f64),
        ),
        (
            "gpu_remapped_rows_pending",
            "1 if a row remapping is pending (takes effect at the next GPU reset).",
            Kind::Gauge,
            |g| g.remapped_rows.map(|r| if r.pending { 1.0 } else { 0.0 }),
        ),
        (
            "gpu_remapped_rows_failed",
            "1 if a row remapping has failed.",
            Kind::Gauge,
            |g| g.remapped_rows.map(|r| if r.failure { 1.0 } else { 0.0 }),
        ),
    ];
    for (name, help, kind, get) in simple {
        if up.iter().all(|(g, _)| get(g).is_none()) {
            continue;
        }
        enc.family(name, help, kind);
        for (g, i) in &up {
            if let Some(v) = get(g) {
                enc.sample(name, &[("gpu", i), ("uuid", &g.uuid)], v);
            }
        }
    }

    for (name, help, tx) in [
        (
            "gpu_nvlink_transmit_bytes_total",
            "Data bytes sent over each NVLink.",
            true,
        ),
        (
            "gpu_nvlink_receive_bytes_total",
            "Data bytes received over each NVLink.",
            false,
        ),
    ] {
        let get = |l: &NvLinkSample| {
            if tx {
                l.transmit_bytes
            } else {
                l.receive_bytes
            }
        };
        if !up
            .iter()
            .any(|(g, _)| g.nvlinks.iter().any(|l| get(l).is_some()))
        {
            continue;
        }
        enc.family(name, help, Kind::Counter);
        let mut link = String::new();
        for (g, i) in &up {
            for l in &g.nvlinks {
                if let Some(v) = get(l) {
                    link.clear();
                    link.push_str(&l.link.to_string());
                    enc.sample(
                        name,
                        &[("gpu", i), ("uuid", &g.uuid), ("link", &link)],
                        v as f64,
                    );
                }
            }
        }
    }

    if up.iter().any(|(g, _)| g.ecc_corrected.is_some()) {
        enc.family(
            "gpu_ecc_errors_total",
            "Memory ECC errors since the driver was loaded (volatile counters), by type.",
            Kind::Counter,
        );
        for (g, i) in &up {
            for (t, v) in [
                ("corrected", g.ecc_corrected),
                ("uncorrected", g.ecc_uncorrected),
            ] {
                if let Some(v) = v {
                    enc.sample(
                        "gpu_ecc_errors_total",
                        &[("gpu", i), ("uuid", &g.uuid), ("type", t)],
                        v as f64,
                    );
                }
            }
        }
    }
    if up.iter().any(|(g, _)| g.remapped_rows.is_some()) {
        enc.family(
            "gpu_remapped_rows",
            "Memory rows remapped, by the kind of error that caused it.",
            Kind::Gauge,
        );
        for (g, i) in &up {
            if let Some(r) = g.remapped_rows {
                for (t, v) in [
                    ("correctable", r.correctable),
                    ("uncorrectable", r.uncorrectable),
                ] {
                    enc.sample(
                        "gpu_remapped_rows",
                        &[("gpu", i), ("uuid", &g.uuid), ("type", t)],
                        v as f64,
                    );
                }
            }
        }
    }
    if up.iter().any(|(g, _)| g.clock_event_reasons.is_some()) {
        enc.family(
            "gpu_clock_event_active",
            "1 while the clock event (throttle) reason holds the clocks down, by reason.",
            Kind::Gauge,
        );
        for (g, i) in &up {
            if let Some(bits) = g.clock_event_reasons {
                for (bit, reason) in CLOCK_EVENT_REASONS {
                    enc.sample(
                        "gpu_clock_event_active",
                        &[("gpu", i), ("uuid", &g.uuid), ("reason", reason)],
                        if bits & bit != 0 { 1.0 } else { 0.0 },
                    );
                }
            }
        }
    }

    if !snap.xids.is_empty() {
        let uuid_of = |index: u32| {
            gpus.iter()
                .find(|g| g.index == index)
                .map(|g| g.uuid.as_str())
                .unwrap_or("")
        };
        for (name, help, counter) in [
            (
                "gpu_xid_errors_total",
                "XID critical errors reported by the driver, by XID code.",
                true,
            ),
            (
                "gpu_xid_last_timestamp_seconds",
                "Unix time of the last XID error, by XID code.",
                false,
            ),
        ] {
            enc.family(
                name,
                help,
                if counter { Kind::Counter } else { Kind::Gauge },
            );
            for ((index, xid), c) in &snap.xids {
                let (i, x) = (index.to_string(), xid.to_string());
                enc.sample(
                    name,
                    &[("gpu", &i), ("uuid", uuid_of(*index)), ("xid", &x)],
                    if counter {
                        c.count as f64
                    } else {
                        c.last_seconds
                    },
                );
            }
        }
    }

    if up
        .iter()
        .any(|(g, _)| g.processes.iter().any(|p| p.used_memory_bytes.is_some()))
    {
        enc.family(
            "gpu_process_memory_used_bytes",
            "Device memory used by each compute process.",
            Kind::Gauge,
        );
        for (g, i) in &up {
            for p in &g.processes {
                if let Some(b) = p.used_memory_bytes {
                    let pid = p.pid.to_string();
                    enc.sample(
                        "gpu_process_memory_used_bytes",
                        &[
                            ("gpu", i),
                            ("uuid", &g.uuid),
                            ("pid", &pid),
                            ("command", &p.command),
                        ],
                        b as f64,
                    );
                }
            }
        }
    }

    if let Some(t) = snap.sampled_at {
        enc.family(
            "gpu_last_sample_timestamp_seconds",
            "Unix time the GPU values were last sampled.",
            Kind::Gauge,
        );
        enc.sample("gpu_last_sample_timestamp_seconds", &[], t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expose::Dialect;

    fn render(snap: &GpuSnapshot) -> String {
        let mut out = String::new();
        let mut enc = Encoder::new(&mut out, Dialect::Text);
        encode(&mut enc, snap);
        enc.finish();
        out.lines()
            .filter(|l| !l.starts_with("# HELP"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn a_lost_gpu_keeps_identity_up_and_xids_only() {
        let mut snap = GpuSnapshot {
            nvml_up: true,
            driver_version: "550.54.15".into(),
            gpus: vec![
                GpuSample {
                    index: 0,
                    uuid: "GPU-a".into(),
                    name: "H100".into(),
                    pci_bus_id: "00000000:18:00.0".into(),
                    up: true,
                    utilization: Some(0.5),
                    nvlinks: vec![NvLinkSample {
                        link: 3,
                        transmit_bytes: Some(2048),
                        receive_bytes: None,
                    }],
                    ..GpuSample::default()
                },
                GpuSample {
                    index: 1,
                    uuid: "GPU-b".into(),
                    up: false,
                    // A lost GPU's values are never encoded, even if some were set.
                    utilization: Some(0.9),
                    ..GpuSample::default()
                },
            ],
            sampled_at: Some(1700000000.5),
            cycle_seconds: Some(0.001),
            xids: BTreeMap::new(),
        };
        snap.xids.insert(
            (1, 79),
            XidCount {
                count: 2,
                last_seconds: 1700000000.0,
            },
        );
        assert_eq!(
            render(&snap),
            "# TYPE gpu_info gauge
gpu_info{gpu=\"0\",uuid=\"GPU-a\",name=\"H100\",pci_bus_id=\"00000000:18:00.0\",driver_version=\"550.54.15\"} 1
gpu_info{gpu=\"1\",uuid=\"GPU-b\",name=\"\",pci_bus_id=\"\",driver_version=\"550.54.15\"} 1
# TYPE gpu_up gauge
gpu_up{gpu=\"0\",uuid=\"GPU-a\"} 1
gpu_up{gpu=\"1\",uuid=\"GPU-b\"} 0
# TYPE gpu_utilization_ratio gauge
gpu_utilization_ratio{gpu=\"0\",uuid=\"GPU-a\"} 0.5
# TYPE gpu_nvlink_transmit_bytes_total counter
gpu_nvlink_transmit_bytes_total{gpu=\"0\",uuid=\"GPU-a\",link=\"3\"} 2048
# TYPE gpu_xid_errors_total counter
gpu_xid_errors_total{gpu=\"1\",uuid=\"GPU-b\",xid=\"79\"} 2
# TYPE gpu_xid_last_timestamp_seconds gauge
gpu_xid_last_timestamp_seconds{gpu=\"1\",uuid=\"GPU-b\",xid=\"79\"} 1700000000
# TYPE gpu_last_sample_timestamp_seconds gauge
gpu_last_sample_timestamp_seconds 1700000000.5
"
        );
        snap.nvml_up = false;
        assert_eq!(render(&snap), "");
    }

    #[test]
    fn field_values_are_read_by_their_type() {
        let mut v = request(NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 3);
        assert_eq!(v.scopeId, 3);
        v.valueType = 3;
        v.value.ullVal = u64::MAX - 1;
        assert_eq!(read_value(&v).unwrap(), u64::MAX - 1);
        v.valueType = 1;
        v.value.uiVal = 7;
        assert_eq!(read_value(&v).unwrap(), 7);
        v.valueType = 4;
        v.value.sllVal = -5;
        assert_eq!(read_value(&v).unwrap(), 0);
        v.valueType = 99;
        assert!(read_value(&v).is_err());
        v.valueType = 3;
        v.nvmlReturn = 3;
        assert!(matches!(read_value(&v), Err(NvmlError::NotSupported)));
    }
}
