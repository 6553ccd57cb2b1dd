//! The NVML calls: the only module of the crate that uses nvml-wrapper. It loads the
//! library, enumerates the GPUs, samples each into a plain [`GpuSample`], and registers for
//! XID events; everything it hands out is plain data.
//!
//! Each capability is probed on its first call per device: `NotSupported` or a symbol the
//! library lacks (`FailedToLoadSymbol`) makes that family absent for that GPU, logged once,
//! and never called again. Any other failure is counted in [`CallErrors`] (exposed as
//! `gpu_train_exporter_collector_errors_total{call}`) and leaves only that value out. A GPU
//! that answers `GPU_IS_LOST`, or whose handle cannot be had, reports `up == false` and no
//! other values, and is tried again 1 s doubling to 30 s apart. `UNINITIALIZED`,
//! `DRIVER_NOT_LOADED` and `LIB_RM_VERSION_MISMATCH` are not errors of one call: they ask
//! for NVML to be initialised again ([`Gpu::reinit`]).
//!
//! On a GPU with MIG on, memory, GPM and compute processes are read per MIG device (a
//! compute instance of a GPU instance), GPM through `nvmlGpmMigSampleGet` on the parent;
//! the parent's own memory, GPM and process list are not read. A change of MIG mode drops
//! the GPM pairs and asks every absent family again, so that the parent's families come
//! back as soon as MIG is turned off. The GPM sample pairs are in [`gpm`], the MIG mode
//! and devices in [`mig`].
//!
//! Per-link NVLink and cumulative PCIe counters and the memory temperature are NVML field
//! values read in one raw `nvmlDeviceGetFieldValues` call, because nvml-wrapper's
//! `field_values_for` never sets `scopeId` and so reads link 0 only.

mod gpm;
mod mig;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::c_int;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PerformancePolicy, TemperatureSensor,
};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::sys_exports::field_id::{
    NVML_FI_DEV_GET_GPU_RECOVERY_ACTION, NVML_FI_DEV_MEMORY_TEMP, NVML_FI_DEV_NVLINK_LINK_COUNT,
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
    NVML_FI_DEV_PCIE_COUNT_RX_BYTES, NVML_FI_DEV_PCIE_COUNT_TX_BYTES,
};
use nvml_wrapper::{Device, EventSet, Nvml};
use nvml_wrapper_sys::bindings::{nvmlFieldValue_t, nvmlTemperature_t};

use super::model::{
    Fabric, GpuProcess, GpuSample, NvLinkSample, RemappedRows, NVLINK_ERROR_TYPES,
    VIOLATION_REASONS,
};

use super::wrap::{value_bits, Unwrapped};
use super::xid::{EventSource, Wait};
use super::Backoff;
use crate::procfs::Procfs;
use crate::sync::lock;
use gpm::Gpm;
use mig::{mig_instances, mig_mode};

/// The NVML functions the collector calls, in the order of [`Call`]. They label
/// `gpu_train_exporter_collector_errors_total{call}`, and a test keeps the fake library's
/// exports in step with this list.
pub const CALLS: [&str; 36] = [
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
    "nvmlDeviceGetTemperatureV",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetMaxClockInfo",
    "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetPcieReplayCounter",
    "nvmlDeviceGetViolationStatus",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlSystemGetProcessName",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetNvLinkErrorCounter",
    "nvmlDeviceGetGpuFabricInfoV",
    "nvmlGpmQueryDeviceSupport",
    "nvmlGpmSampleGet",
    "nvmlGpmMetricsGet",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount",
    "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceGetGpuInstanceId",
    "nvmlDeviceGetComputeInstanceId",
    "nvmlGpmMigSampleGet",
    "nvmlDeviceRegisterEvents",
    "nvmlEventSetWait_v2",
];

/// Library-level functions called outside the sampling cycle (initialisation, the event
/// set's lifetime); not sampled per device, so not error labels.
pub const LIFECYCLE_CALLS: [&str; 7] = [
    "nvmlInit_v2",
    "nvmlShutdown",
    "nvmlSystemGetDriverVersion",
    "nvmlEventSetCreate",
    "nvmlEventSetFree",
    "nvmlGpmSampleAlloc",
    "nvmlGpmSampleFree",
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
    TemperatureLegacy,
    Clock,
    MaxClock,
    Ecc,
    RemappedRows,
    PcieReplay,
    Violation,
    ClockEvents,
    ClockEventsLegacy,
    Processes,
    ProcessName,
    FieldValues,
    NvLinkErrors,
    FabricInfo,
    GpmSupport,
    GpmSample,
    GpmMetrics,
    MigMode,
    MigCount,
    MigHandle,
    GpuInstanceId,
    ComputeInstanceId,
    GpmMigSample,
    RegisterEvents,
    EventWait,
}

impl Call {
    fn name(self) -> &'static str {
        CALLS[self as usize]
    }
    fn bit(self) -> u64 {
        1 << self as u64
    }
    /// The older function called when this one (NVML 13's name) is absent.
    fn fallback(self) -> Option<Call> {
        match self {
            Call::Temperature => Some(Call::TemperatureLegacy),
            Call::ClockEvents => Some(Call::ClockEventsLegacy),
            _ => None,
        }
    }
}

/// Failed calls so far, per NVML function of [`CALLS`]; shared by the sampling and the
/// XID threads.
#[derive(Debug)]
pub(super) struct CallErrors(Mutex<[u64; CALLS.len()]>);

impl Default for CallErrors {
    fn default() -> Self {
        CallErrors(Mutex::new([0; CALLS.len()]))
    }
}

impl CallErrors {
    fn count(&self, call: Call) {
        lock(&self.0)[call as usize] += 1;
    }

    /// Every sampled function with its failures so far, in the order of [`CALLS`].
    pub(super) fn by_call(&self) -> Vec<(&'static str, u64)> {
        let e = lock(&self.0);
        CALLS.iter().zip(e.iter()).map(|(c, n)| (*c, *n)).collect()
    }
}

/// A loaded and initialised NVML library.
pub(super) struct Library {
    nvml: Nvml,
    /// The path it was loaded from, for the logs.
    name: String,
}

impl Library {
    /// Loads and initialises NVML from `path` (`None`: nvml-wrapper's default,
    /// `libnvidia-ml.so.1`); the error is a one-line reason naming the library.
    pub(super) fn open(path: Option<&Path>) -> Result<Library, String> {
        let mut builder = Nvml::builder();
        if let Some(p) = path {
            builder.lib_path(p.as_os_str());
        }
        let name = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "libnvidia-ml.so.1".into());
        match builder.init() {
            Ok(nvml) => Ok(Library { nvml, name }),
            Err(e) => Err(format!(
                "cannot initialise NVML from {name}: {}",
                describe(&e)
            )),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The driver's version, empty if NVML cannot tell.
    pub(super) fn driver_version(&self) -> String {
        self.nvml.sys_driver_version().unwrap_or_default()
    }

    /// Enumerates the GPUs and reads their identity; their compute processes' names will be
    /// read from `procfs`. A GPU whose handle cannot be had is kept, with its index only, and
    /// its handle is tried again later; `known` gives the identity of the GPUs seen before a
    /// re-initialisation, for those that cannot tell it now. Fails, with why, when NVML
    /// cannot count the GPUs.
    pub(super) fn discover<'n>(
        &'n self,
        errors: &CallErrors,
        procfs: &Procfs,
        known: &BTreeMap<u32, GpuSample>,
        reprobe: Duration,
    ) -> Result<Vec<Gpu<'n>>, String> {
        let count = match self.nvml.device_count() {
            Ok(n) => n,
            Err(e) => {
                if reinit_class(&e).is_none() {
                    errors.count(Call::Count);
                }
                return Err(format!("cannot count GPUs: {e}"));
            }
        };
        Ok((0..count)
            .map(|index| {
                let mut gpu = Gpu {
                    nvml: &self.nvml,
                    dev: Dev::new(index, reprobe),
                    names: ProcessNames {
                        procfs: procfs.clone(),
                        cache: HashMap::new(),
                    },
                };
                if let Some(k) = known.get(&index) {
                    gpu.dev.identity.uuid = k.uuid.clone();
                    gpu.dev.identity.name = k.name.clone();
                    gpu.dev.identity.pci_bus_id = k.pci_bus_id.clone();
                }
                gpu.acquire(errors);
                gpu
            })
            .collect())
    }

    /// Registers every GPU of `targets` for XID events; `None`, logged, when no GPU can
    /// deliver them.
    pub(super) fn xid_events<'a>(
        &'a self,
        targets: &[(u32, usize)],
        errors: &'a CallErrors,
    ) -> Option<XidEvents<'a>> {
        let nvml = &self.nvml;
        let set = match nvml.create_event_set() {
            Ok(s) => s,
            Err(e) => {
                tracing::info!("XID events not available, gpu_xid_errors_total is left out: {e}");
                return None;
            }
        };
        let register = match nvml_sym(nvml.lib().nvmlDeviceRegisterEvents.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!("XID events not available, gpu_xid_errors_total is left out: {e}");
                return None;
            }
        };
        let mut registered = 0;
        for (index, handle) in targets {
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
                    errors.count(Call::RegisterEvents);
                    tracing::warn!(gpu = index, "cannot register for XID events: {e}");
                }
            }
        }
        if registered == 0 {
            return None;
        }
        tracing::info!("XID events followed on {registered} GPUs");
        Some(XidEvents {
            set,
            targets: targets.to_vec(),
            errors,
        })
    }
}

/// Seconds between two tries at a GPU's handle, first and at most.
const HANDLE_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// One GPU found, with what it was found to support; sampled by a thread of its own.
pub(super) struct Gpu<'n> {
    nvml: &'n Nvml,
    dev: Dev<'n>,
    names: ProcessNames,
}

impl Gpu<'_> {
    /// Its identity as known so far (index, and UUID, name and bus id once read).
    pub(super) fn identity(&self) -> &GpuSample {
        &self.dev.identity
    }

    /// Its device handle for XID events, as an integer another thread may hold (only passed
    /// back to NVML and compared); `None` while it has no handle or is lost.
    pub(super) fn event_handle(&self) -> Option<usize> {
        if self.dev.lost {
            return None;
        }
        // SAFETY: the handle is only passed back to NVML and compared.
        self.dev
            .device
            .as_ref()
            .map(|d| unsafe { d.handle() } as usize)
    }

    /// Why NVML must be initialised again, when a call of this GPU said so
    /// (`UNINITIALIZED`, `DRIVER_NOT_LOADED`, `LIB_RM_VERSION_MISMATCH`).
    pub(super) fn reinit(&self) -> Option<&str> {
        self.dev.reinit.as_deref()
    }

    /// Gets the GPU's handle (again), reads what identity is still missing and which
    /// field values to ask for. On failure the next try waits longer (1 s doubling to 30 s).
    fn acquire(&mut self, errors: &CallErrors) {
        let index = self.dev.identity.index;
        match self.nvml.device_by_index(index) {
            Ok(d) => {
                self.dev.device = Some(d);
                self.dev.lost = false;
            }
            Err(e) => {
                self.dev.device = None;
                let delay = self.dev.retry.next_delay();
                self.dev.retry_at = Some(Instant::now() + delay);
                match reinit_class(&e) {
                    Some(why) => self.dev.reinit = Some(why),
                    None => errors.count(Call::Handle),
                }
                if !self.dev.handle_warned {
                    self.dev.handle_warned = true;
                    tracing::warn!(
                        gpu = index,
                        "GPU reported as gpu_up 0: cannot get its handle ({e}); tried again, 1 s doubling to 30 s apart"
                    );
                }
                return;
            }
        }
        let (nvml, dev) = (self.nvml, &mut self.dev);
        let mut lost = false;
        if dev.identity.uuid.is_empty() {
            if let Some(u) = call(dev, errors, &mut lost, Call::Uuid, |d| d.uuid()) {
                dev.identity.uuid = u;
            }
        }
        if dev.identity.name.is_empty() {
            if let Some(n) = call(dev, errors, &mut lost, Call::Name, |d| d.name()) {
                dev.identity.name = n;
            }
        }
        if dev.identity.pci_bus_id.is_empty() {
            if let Some(p) = call(dev, errors, &mut lost, Call::Pci, |d| d.pci_info()) {
                dev.identity.pci_bus_id = p.bus_id;
            }
        }
        if dev.fields.is_empty() {
            let links = call(dev, errors, &mut lost, Call::FieldValues, |d| {
                let mut v = [request(NVML_FI_DEV_NVLINK_LINK_COUNT, 0)];
                field_values(nvml, d, &mut v)?;
                Ok(read_value(&v[0]).unwrap_or(0))
            })
            .unwrap_or(0)
            .min(64) as u32;
            dev.links = links;
            dev.fields = field_requests(links);
        }
        if lost {
            dev.mark_lost();
        } else {
            dev.retry = Backoff::new(HANDLE_RETRY.0, HANDLE_RETRY.1);
            if dev.handle_warned {
                dev.handle_warned = false;
                tracing::info!(gpu = index, "GPU handle obtained, sampling it again");
            }
        }
    }

    /// One cycle of this GPU. A GPU without a handle, or lost, is tried again only when its
    /// backoff allows (a lost GPU's calls can each take long) and reports `up == false`.
    pub(super) fn sample(&mut self, errors: &CallErrors) -> GpuSample {
        self.dev.reinit = None;
        if self.dev.device.is_none() || self.dev.lost {
            if self.dev.retry_at.is_some_and(|t| Instant::now() < t) {
                return self.dev.down();
            }
            self.acquire(errors);
            if self.dev.device.is_none() || self.dev.lost {
                return self.dev.down();
            }
        }
        self.dev.reprobe_if_due();
        let s = sample(self.nvml, &mut self.dev, errors, &mut self.names);
        let live: HashSet<u32> = s.all_processes().map(|p| p.pid).collect();
        self.names.cache.retain(|pid, _| live.contains(pid));
        s
    }
}

/// An event set registered for XID events on some GPUs (their index and handle).
pub(super) struct XidEvents<'a> {
    set: EventSet<'a>,
    targets: Vec<(u32, usize)>,
    errors: &'a CallErrors,
}

impl EventSource for XidEvents<'_> {
    fn wait(&mut self, timeout_ms: u32) -> Wait {
        match self.set.wait(timeout_ms) {
            Ok(ev) => {
                let Some(xid) = ev.event_data.map(|x| match x {
                    nvml_wrapper::enums::event::XidError::Value(v) => v,
                    nvml_wrapper::enums::event::XidError::Unknown => 999,
                }) else {
                    return Wait::Nothing;
                };
                // SAFETY: the handle is only compared, never dereferenced.
                let h = unsafe { ev.device.handle() } as usize;
                match self.targets.iter().find(|(_, x)| *x == h) {
                    Some((gpu, _)) => Wait::Xid { gpu: *gpu, xid },
                    None => Wait::Unknown { xid },
                }
            }
            Err(NvmlError::Timeout) => Wait::Nothing,
            Err(e) => {
                self.errors.count(Call::EventWait);
                Wait::Failed(e.to_string())
            }
        }
    }
}

/// What one device supports, learnt on first use.
struct Dev<'n> {
    /// `None` while its handle cannot be had.
    device: Option<Device<'n>>,
    identity: GpuSample,
    /// It answered `GPU_IS_LOST`: not called again before `retry_at`.
    lost: bool,
    /// When its handle (or a lost GPU) is tried next.
    retry_at: Option<Instant>,
    retry: Backoff,
    handle_warned: bool,
    /// Set by a call that says NVML must be initialised again.
    reinit: Option<String>,
    /// Bits of [`Call`]s found absent: asked again at `reprobe_at`.
    absent: u64,
    /// Bits of [`Call`]s whose symbol the library lacks: never asked again.
    missing: u64,
    /// Bits of calls whose absence was already logged.
    logged: u64,
    /// NVLink count, for the field requests to rebuild at a re-probe.
    links: u32,
    /// When the absent families are asked again (set once one is found absent).
    reprobe_at: Option<Instant>,
    reprobe: Duration,
    /// Fields, policies already logged as absent: `(field id, scope)`, policy bits.
    logged_fields: HashSet<(u32, u32)>,
    logged_policies: u8,
    /// Bits of calls whose failure was already logged.
    warned: u64,
    /// Bits of [`POLICIES`] that answered `NotSupported`.
    absent_policies: u8,
    /// GPM samples and the last values, once the GPU says it supports GPM.
    gpm: Option<Gpm<'n>>,
    /// MIG is on, as last read.
    mig: bool,
    /// Under MIG, the GPM samples and last values of each GPU instance, by its id.
    mig_gpm: HashMap<u32, Gpm<'n>>,
    /// The GPU instances whose GPM samples NVML does not answer (not supported, refused):
    /// asked again at the next re-probe.
    mig_gpm_absent: HashSet<u32>,
    /// Field-value requests still believed supported.
    fields: Vec<(Field, u32)>,
    /// The PCIe and NVLink byte counters, unwrapped, by field and link.
    counters: BTreeMap<(Field, u32), Unwrapped>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    MemoryTemp,
    PcieTx,
    PcieRx,
    NvLinkTx,
    NvLinkRx,
    RecoveryAction,
}

impl Field {
    const fn id(self) -> u32 {
        match self {
            Field::MemoryTemp => NVML_FI_DEV_MEMORY_TEMP,
            Field::PcieTx => NVML_FI_DEV_PCIE_COUNT_TX_BYTES,
            Field::PcieRx => NVML_FI_DEV_PCIE_COUNT_RX_BYTES,
            Field::NvLinkTx => NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
            Field::NvLinkRx => NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
            Field::RecoveryAction => NVML_FI_DEV_GET_GPU_RECOVERY_ACTION,
        }
    }
}

impl Dev<'_> {
    fn new(index: u32, reprobe: Duration) -> Self {
        Dev {
            device: None,
            identity: GpuSample {
                index,
                ..GpuSample::default()
            },
            lost: false,
            retry_at: None,
            retry: Backoff::new(HANDLE_RETRY.0, HANDLE_RETRY.1),
            handle_warned: false,
            reinit: None,
            absent: 0,
            missing: 0,
            logged: 0,
            links: 0,
            reprobe_at: None,
            reprobe,
            logged_fields: HashSet::new(),
            logged_policies: 0,
            warned: 0,
            absent_policies: 0,
            gpm: None,
            mig: false,
            mig_gpm: HashMap::new(),
            mig_gpm_absent: HashSet::new(),
            fields: Vec::new(),
            counters: BTreeMap::new(),
        }
    }

    /// A family was found absent: it is asked again after the re-probe interval.
    fn absent_found(&mut self) {
        if self.reprobe_at.is_none() {
            self.reprobe_at = Some(Instant::now() + self.reprobe);
        }
    }

    /// Asks the absent families again (not those whose symbol is missing), once the
    /// re-probe interval has passed since the first was found absent.
    fn reprobe_if_due(&mut self) {
        if self.reprobe_at.is_none_or(|t| Instant::now() < t) {
            return;
        }
        self.reprobe_now();
    }

    /// Asks every absent family again from the next call on (not those whose symbol is
    /// missing).
    fn reprobe_now(&mut self) {
        self.reprobe_at = None;
        self.absent &= self.missing;
        self.absent_policies = 0;
        self.mig_gpm_absent.clear();
        self.fields = field_requests(self.links);
    }

    /// The MIG mode changed to `on`: the GPM pairs are dropped (the first sample after the
    /// change produces nothing) and every absent family is asked again, since what NVML
    /// answers for the parent depends on the mode.
    fn mig_changed(&mut self, on: bool) {
        self.mig = on;
        self.forget_gpm();
        self.reprobe_now();
        tracing::info!(
            gpu = self.identity.index,
            "MIG {}: memory, GPM and processes are read {}",
            if on { "on" } else { "off" },
            if on {
                "per MIG instance"
            } else {
                "for the whole GPU"
            }
        );
    }

    /// What a GPU without values reports: its identity, `up == false`.
    fn down(&self) -> GpuSample {
        GpuSample {
            up: false,
            ..self.identity.clone()
        }
    }

    /// Drops the GPM pairs of the GPU and of its GPU instances: the first sample after a
    /// reset or a MIG change produces nothing.
    fn forget_gpm(&mut self) {
        if let Some(g) = &mut self.gpm {
            g.forget();
        }
        self.mig_gpm.clear();
    }

    /// It answered `GPU_IS_LOST`: try it again after the backoff. Its GPM pairs and byte
    /// counters start over.
    fn mark_lost(&mut self) {
        self.forget_gpm();
        self.counters.clear();
        if !self.lost {
            self.lost = true;
            tracing::warn!(gpu = self.identity.index, "GPU lost (GPU_IS_LOST), reported as gpu_up 0; tried again, 1 s doubling to 30 s apart");
        }
        let delay = self.retry.next_delay();
        self.retry_at = Some(Instant::now() + delay);
    }
}

/// The field values asked of a GPU with `links` NVLinks.
fn field_requests(links: u32) -> Vec<(Field, u32)> {
    let mut f = vec![
        (Field::MemoryTemp, 0),
        (Field::PcieTx, 0),
        (Field::PcieRx, 0),
        (Field::RecoveryAction, 0),
    ];
    for l in 0..links {
        f.push((Field::NvLinkTx, l));
        f.push((Field::NvLinkRx, l));
    }
    f
}

/// `NVML_ERROR_DEPRECATED`, which nvml-wrapper 0.13 does not name.
const DEPRECATED: u32 = nvml_wrapper_sys::bindings::nvmlReturn_enum_NVML_ERROR_DEPRECATED;

/// How an error of one call is taken.
#[derive(Debug, PartialEq)]
enum Class {
    /// The family is absent on this GPU (asked again every re-probe interval): the call
    /// is not supported, not found or deprecated in this driver.
    Absent,
    /// As absent, with one warning: the exporter lacks the privilege (MIG parents answer
    /// so to unprivileged callers).
    Denied,
    /// The library lacks the symbol: absent for the life of the process.
    Missing,
    Lost,
    /// NVML must be initialised again.
    Reinit,
    /// A failure: counted and logged once.
    Failed,
}

fn classify(e: &NvmlError) -> Class {
    match e {
        NvmlError::NotSupported | NvmlError::FunctionNotFound => Class::Absent,
        NvmlError::UnexpectedVariant(c) if *c == DEPRECATED => Class::Absent,
        NvmlError::NoPermission => Class::Denied,
        NvmlError::FailedToLoadSymbol(_) => Class::Missing,
        NvmlError::GpuLost => Class::Lost,
        e if reinit_class(e).is_some() => Class::Reinit,
        _ => Class::Failed,
    }
}

/// The errors after which NVML must be initialised again, with a one-line reason.
pub(super) fn reinit_class(e: &NvmlError) -> Option<String> {
    match e {
        NvmlError::Uninitialized | NvmlError::DriverNotLoaded | NvmlError::LibRmVersionMismatch => {
            Some(describe(e))
        }
        _ => None,
    }
}

/// Field ids 251–273 were renumbered by driver 580.82, and nvml-wrapper translates them
/// only in its own field-value reader, which the raw call here bypasses: stay off them.
const _: () = {
    let all = [
        Field::MemoryTemp,
        Field::PcieTx,
        Field::PcieRx,
        Field::NvLinkTx,
        Field::NvLinkRx,
        Field::RecoveryAction,
    ];
    let mut k = 0;
    while k < all.len() {
        let id = all[k].id();
        assert!(id < 251 || id > 273, "a field id in the renumbered range");
        k += 1;
    }
    assert!(NVML_FI_DEV_NVLINK_LINK_COUNT < 251 || NVML_FI_DEV_NVLINK_LINK_COUNT > 273);
};

/// A one-line reason for a failed initialisation.
fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(e) => format!("cannot load the library ({e})"),
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".into(),
        NvmlError::LibRmVersionMismatch => {
            "the NVML library and the loaded driver differ in version".into()
        }
        NvmlError::Uninitialized => "NVML is not initialised".into(),
        NvmlError::NoPermission => "permission denied".into(),
        e => e.to_string(),
    }
}

/// Makes one call unless its family is known absent or the GPU was lost this cycle.
fn call<'n, T>(
    dev: &mut Dev<'n>,
    errors: &CallErrors,
    lost: &mut bool,
    c: Call,
    f: impl FnOnce(&Device<'n>) -> Result<T, NvmlError>,
) -> Option<T> {
    if *lost || dev.reinit.is_some() || dev.absent & c.bit() != 0 {
        return None;
    }
    let e = match f(dev.device.as_ref()?) {
        Ok(v) => return Some(v),
        Err(e) => e,
    };
    let class = classify(&e);
    match class {
        Class::Absent | Class::Denied | Class::Missing => {
            dev.absent |= c.bit();
            if class == Class::Missing {
                dev.missing |= c.bit();
            } else {
                dev.absent_found();
            }
            if dev.logged & c.bit() == 0 {
                dev.logged |= c.bit();
                let gpu = dev.identity.index;
                let then = match c.fallback() {
                    Some(old) => format!("{} is called instead", old.name()),
                    None => "its series are left out".to_string(),
                };
                if class == Class::Denied {
                    tracing::warn!(
                        gpu,
                        call = c.name(),
                        "permission denied, {then} (asked again every {:?}): {e}",
                        dev.reprobe
                    );
                } else {
                    tracing::info!(
                        gpu,
                        call = c.name(),
                        "not available on this GPU, {then}: {e}"
                    );
                }
            }
            None
        }
        Class::Lost => {
            *lost = true;
            None
        }
        Class::Reinit => {
            dev.reinit = reinit_class(&e);
            None
        }
        Class::Failed => {
            errors.count(c);
            if dev.warned & c.bit() == 0 {
                dev.warned |= c.bit();
                tracing::warn!(gpu = dev.identity.index, call = c.name(), "NVML call failed (logged once, counted in gpu_train_exporter_collector_errors_total): {e}");
            }
            None
        }
    }
}

/// Makes call `c`, or its older [`Call::fallback`] where `c` is absent on this GPU.
fn call_or_older<'n, T>(
    dev: &mut Dev<'n>,
    errors: &CallErrors,
    lost: &mut bool,
    c: Call,
    new: impl FnOnce(&Device<'n>) -> Result<T, NvmlError>,
    old: impl FnOnce(&Device<'n>) -> Result<T, NvmlError>,
) -> Option<T> {
    if let Some(v) = call(dev, errors, lost, c, new) {
        return Some(v);
    }
    match c.fallback() {
        Some(older) if dev.absent & c.bit() != 0 => call(dev, errors, lost, older, old),
        _ => None,
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

/// `nvmlDeviceGetTemperatureV` (NVML 13; `nvmlDeviceGetTemperature` is deprecated there)
/// for the GPU sensor.
fn temperature_v(nvml: &Nvml, d: &Device<'_>) -> Result<f64, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetTemperatureV.as_ref())?;
    // SAFETY: a plain C struct for which all-zero bytes are valid.
    let mut t: nvmlTemperature_t = unsafe { std::mem::zeroed() };
    // NVML_STRUCT_VERSION(Temperature, 1)
    t.version = (std::mem::size_of::<nvmlTemperature_t>() as u32) | (1 << 24);
    t.sensorType = nvml_wrapper_sys::bindings::nvmlTemperatureSensors_enum_NVML_TEMPERATURE_GPU;
    // SAFETY: a live device handle and a valid, versioned out-struct.
    unsafe { nvml_try(sym(d.handle(), &mut t))? };
    Ok(f64::from(t.temperature))
}

/// `nvmlDeviceGetCurrentClocksEventReasons` (NVML 12.2+; the throttle-reasons call is
/// deprecated).
fn clocks_event_reasons(nvml: &Nvml, d: &Device<'_>) -> Result<u64, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetCurrentClocksEventReasons.as_ref())?;
    let mut r = 0;
    // SAFETY: a live device handle and a valid out-pointer.
    unsafe { nvml_try(sym(d.handle(), &mut r))? };
    Ok(r)
}

/// A temperature field, without trusting `valueType` (NVML r545 declared a wrong type for
/// `NVML_FI_DEV_MEMORY_TEMP`; DCGM works around it): the declared member first, then the
/// unsigned and the double members, the first that reads as a plausible temperature
/// (1–200 °C). A value no member makes plausible is an error.
fn read_celsius(v: &nvmlFieldValue_t) -> Result<f64, NvmlError> {
    nvml_try(v.nvmlReturn)?;
    let plausible = |t: &f64| (1.0..=200.0).contains(t);
    // SAFETY: every member of the union is plain data; a request starts all zero, so a
    // member wider than the one written reads the written bytes and zeros.
    let (ui, d) = unsafe { (f64::from(v.value.uiVal), v.value.dVal) };
    let declared = match v.valueType {
        0 => Some(d),
        _ => read_value(v).ok().map(|x| x as f64),
    };
    let others = [ui, d];
    declared
        .into_iter()
        .chain(others)
        .find(plausible)
        .ok_or(NvmlError::UnexpectedVariant(v.valueType))
}

/// The NVLink error counters of every link, in the order of [`NVLINK_ERROR_TYPES`]. The
/// call is absent for the GPU when it answers so for link 0's first counter; a single
/// counter a link does not report is left out.
fn nvlink_errors(
    nvml: &Nvml,
    dev: &mut Dev<'_>,
    errors: &CallErrors,
    lost: &mut bool,
    s: &mut GpuSample,
) {
    use nvml_wrapper_sys::bindings::*;
    const COUNTERS: [u32; NVLINK_ERROR_TYPES.len()] = [
        nvmlNvLinkErrorCounter_enum_NVML_NVLINK_ERROR_DL_CRC_FLIT,
        nvmlNvLinkErrorCounter_enum_NVML_NVLINK_ERROR_DL_CRC_DATA,
        nvmlNvLinkErrorCounter_enum_NVML_NVLINK_ERROR_DL_REPLAY,
        nvmlNvLinkErrorCounter_enum_NVML_NVLINK_ERROR_DL_RECOVERY,
    ];
    for link in 0..dev.links {
        let got = call(dev, errors, lost, Call::NvLinkErrors, |d| {
            let sym = nvml_sym(nvml.lib().nvmlDeviceGetNvLinkErrorCounter.as_ref())?;
            let mut out = [None; NVLINK_ERROR_TYPES.len()];
            for (k, counter) in COUNTERS.into_iter().enumerate() {
                let mut v = 0;
                // SAFETY: a live device handle and a valid out-pointer.
                match unsafe { nvml_try(sym(d.handle(), link, counter, &mut v)) } {
                    Ok(()) => out[k] = Some(v),
                    Err(e) if link == 0 && k == 0 => return Err(e),
                    Err(e) if matches!(classify(&e), Class::Absent | Class::Denied) => {}
                    Err(NvmlError::InvalidArg) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        });
        let Some(counts) = got else { return };
        match s.nvlinks.iter_mut().find(|n| n.link == link) {
            Some(e) => e.errors = counts,
            None => s.nvlinks.push(NvLinkSample {
                errors: counts,
                ..NvLinkSample::new(link)
            }),
        }
    }
}

/// `nvmlDeviceGetGpuFabricInfoV`, version 3, else 2 (drivers before r550); `None` for a GPU
/// not on an NVSwitch fabric (state `NOT_SUPPORTED`).
fn fabric_info(nvml: &Nvml, d: &Device<'_>) -> Result<Option<Fabric>, NvmlError> {
    use nvml_wrapper_sys::bindings::{
        nvmlGpuFabricInfoV_t, nvmlGpuFabricInfo_v2_t,
        nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH,
    };
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetGpuFabricInfoV.as_ref())?;
    let mut answer = Err(NvmlError::UnexpectedVariant(
        nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH,
    ));
    // SAFETY: a plain C struct for which all-zero bytes are valid.
    let mut f: nvmlGpuFabricInfoV_t = unsafe { std::mem::zeroed() };
    for version in [
        std::mem::size_of::<nvmlGpuFabricInfoV_t>() as u32 | (3 << 24),
        std::mem::size_of::<nvmlGpuFabricInfo_v2_t>() as u32 | (2 << 24),
    ] {
        f.version = version;
        // SAFETY: a live device handle and a versioned out-struct at least as large as
        // the version says.
        answer = unsafe { nvml_try(sym(d.handle(), &mut f)) };
        match &answer {
            Err(NvmlError::UnexpectedVariant(c))
                if *c == nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH => {}
            _ => break,
        }
    }
    answer?;
    if f.state == 0 {
        return Ok(None);
    }
    Ok(Some(Fabric {
        state: u32::from(f.state),
        status: f.status,
        health_mask: f.healthMask,
    }))
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
fn sample<'n>(
    nvml: &'n Nvml,
    dev: &mut Dev<'n>,
    errors: &CallErrors,
    names: &mut ProcessNames,
) -> GpuSample {
    let mut s = GpuSample {
        up: true,
        ..dev.identity.clone()
    };
    let mut lost = false;
    let l = &mut lost;
    s.mig_enabled = mig_mode(dev, errors, l);
    if let Some(u) = call(dev, errors, l, Call::Utilization, |d| d.utilization_rates()) {
        s.utilization = Some(u.gpu as f64 / 100.0);
        s.memory_utilization = Some(u.memory as f64 / 100.0);
    }
    // Under MIG the parent's memory is the whole device's: its instances' are read instead.
    if !dev.mig {
        if let Some(m) = call(dev, errors, l, Call::Memory, |d| d.memory_info()) {
            s.memory_used_bytes = Some(m.used);
            s.memory_free_bytes = Some(m.free);
            s.memory_total_bytes = Some(m.total);
            s.memory_reserved_bytes = Some(m.reserved);
        }
    }
    s.power_watts =
        call(dev, errors, l, Call::Power, |d| d.power_usage()).map(|mw| mw as f64 / 1000.0);
    s.power_limit_watts = call(dev, errors, l, Call::PowerLimit, |d| {
        d.enforced_power_limit()
    })
    .map(|mw| mw as f64 / 1000.0);
    s.energy_joules = call(dev, errors, l, Call::Energy, |d| {
        d.total_energy_consumption()
    })
    .map(|mj| mj as f64 / 1000.0);
    s.temperature_celsius = call_or_older(
        dev,
        errors,
        l,
        Call::Temperature,
        |d| temperature_v(nvml, d),
        |d| d.temperature(TemperatureSensor::Gpu).map(f64::from),
    );
    if let Some((sm, mem)) = call(dev, errors, l, Call::Clock, |d| {
        Ok((d.clock_info(Clock::SM)?, d.clock_info(Clock::Memory)?))
    }) {
        s.sm_clock_hertz = Some(sm as f64 * 1e6);
        s.memory_clock_hertz = Some(mem as f64 * 1e6);
    }
    s.sm_clock_max_hertz = call(dev, errors, l, Call::MaxClock, |d| {
        d.max_clock_info(Clock::SM)
    })
    .map(|mhz| mhz as f64 * 1e6);
    if let Some((c, u)) = call(dev, errors, l, Call::Ecc, |d| {
        Ok((
            d.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)?,
            d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)?,
        ))
    }) {
        s.ecc_corrected = Some(c);
        s.ecc_uncorrected = Some(u);
    }
    s.remapped_rows = call(dev, errors, l, Call::RemappedRows, |d| {
        remapped_rows(nvml, d)
    });
    s.pcie_replay_errors = call(dev, errors, l, Call::PcieReplay, |d| {
        d.pcie_replay_counter()
    })
    .map(u64::from);
    violations(dev, errors, l, &mut s);
    s.clock_event_reasons = call_or_older(
        dev,
        errors,
        l,
        Call::ClockEvents,
        |d| clocks_event_reasons(nvml, d),
        |d| d.current_throttle_reasons().map(|r| r.bits()),
    );
    sample_fields(nvml, dev, errors, l, &mut s);
    nvlink_errors(nvml, dev, errors, l, &mut s);
    if !dev.mig {
        gpm::gpm(nvml, dev, errors, l, &mut s);
    }
    s.fabric = call(dev, errors, l, Call::FabricInfo, |d| fabric_info(nvml, d)).flatten();
    if dev.mig {
        s.mig = mig_instances(nvml, dev, errors, l, names);
    } else if let Some(procs) = call(dev, errors, l, Call::Processes, |d| {
        d.running_compute_processes()
    }) {
        s.processes = compute_processes(nvml, dev, errors, names, procs);
    }
    if lost {
        dev.mark_lost();
        return dev.down();
    }
    s
}

/// The compute processes NVML listed, with their commands.
fn compute_processes(
    nvml: &Nvml,
    dev: &mut Dev<'_>,
    errors: &CallErrors,
    names: &mut ProcessNames,
    procs: Vec<ProcessInfo>,
) -> Vec<GpuProcess> {
    procs
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            command: names.get(p.pid, || nvml_name(nvml, dev, errors, p.pid)),
            used_memory_bytes: match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b),
                UsedGpuMemory::Unavailable => None,
            },
        })
        .collect()
}

/// The performance policies of [`VIOLATION_REASONS`], in its order.
const POLICIES: [PerformancePolicy; VIOLATION_REASONS.len()] = [
    PerformancePolicy::Power,
    PerformancePolicy::Thermal,
    PerformancePolicy::SyncBoost,
    PerformancePolicy::BoardLimit,
    PerformancePolicy::LowUtilization,
    PerformancePolicy::Reliability,
];

/// Violation time per policy (ns → s). A policy answering `NotSupported` is left out for
/// that GPU from then on; the others are still read.
fn violations(dev: &mut Dev<'_>, errors: &CallErrors, lost: &mut bool, s: &mut GpuSample) {
    for (k, policy) in POLICIES.into_iter().enumerate() {
        if dev.absent_policies & (1 << k) != 0 {
            continue;
        }
        let got = call(dev, errors, lost, Call::Violation, |d| {
            match d.violation_status(policy) {
                Err(e) if matches!(classify(&e), Class::Absent | Class::Denied) => Ok(None),
                r => r.map(Some),
            }
        });
        match got {
            Some(Some(v)) => s.violation_seconds[k] = Some(v.violation_time as f64 / 1e9),
            Some(None) => {
                dev.absent_policies |= 1 << k;
                dev.absent_found();
                if dev.logged_policies & (1 << k) == 0 {
                    dev.logged_policies |= 1 << k;
                    tracing::info!(
                        gpu = dev.identity.index,
                        reason = VIOLATION_REASONS[k],
                        "violation time not available on this GPU, its series is left out"
                    );
                }
            }
            None => {}
        }
    }
}

fn sample_fields(
    nvml: &Nvml,
    dev: &mut Dev<'_>,
    errors: &CallErrors,
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
    if call(dev, errors, lost, Call::FieldValues, |d| {
        field_values(nvml, d, &mut req)
    })
    .is_none()
    {
        return;
    }
    let mut keep = Vec::with_capacity(dev.fields.len());
    let mut found_absent = false;
    let fields = std::mem::take(&mut dev.fields);
    for ((field, link), v) in fields.iter().copied().zip(&req) {
        // A byte counter's exact total (the value below is its `f64`).
        let mut counter = 0;
        let read = match field {
            Field::MemoryTemp => read_celsius(v),
            Field::RecoveryAction => read_value(v).map(|x| x as f64),
            Field::PcieTx | Field::PcieRx | Field::NvLinkTx | Field::NvLinkRx => {
                read_value(v).map(|raw| {
                    let bits = value_bits(v.valueType);
                    if bits < 64 && !dev.counters.contains_key(&(field, link)) {
                        tracing::info!(
                            gpu = dev.identity.index,
                            field = v.fieldId,
                            link,
                            bits,
                            "byte counter declared {bits} bits wide: unwrapped, but more than \
                             one wrap between two readings is not seen; prefer the GPM rates"
                        );
                    }
                    let c = dev.counters.entry((field, link)).or_default();
                    counter = c.update(raw, bits);
                    counter as f64
                })
            }
        };
        let value = match read {
            Ok(x) => x,
            Err(e)
                if matches!(e, NvmlError::InvalidArg)
                    || matches!(classify(&e), Class::Absent | Class::Denied) =>
            {
                found_absent = true;
                if dev.logged_fields.insert((v.fieldId, link)) {
                    tracing::info!(
                        gpu = dev.identity.index,
                        field = v.fieldId,
                        link,
                        "field value not available on this GPU, its series are left out: {e}"
                    );
                }
                continue;
            }
            Err(NvmlError::GpuLost) => {
                *lost = true;
                keep.push((field, link));
                continue;
            }
            Err(_) => {
                errors.count(Call::FieldValues);
                keep.push((field, link));
                continue;
            }
        };
        keep.push((field, link));
        match field {
            Field::MemoryTemp => s.memory_temperature_celsius = Some(value),
            Field::PcieTx => s.pcie_transmit_bytes = Some(counter),
            Field::PcieRx => s.pcie_receive_bytes = Some(counter),
            Field::RecoveryAction => s.recovery_action = Some(value as u32),
            Field::NvLinkTx | Field::NvLinkRx => {
                let bytes = counter.saturating_mul(1024);
                let entry = match s.nvlinks.iter_mut().find(|n| n.link == link) {
                    Some(e) => e,
                    None => {
                        s.nvlinks.push(NvLinkSample::new(link));
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
    if found_absent {
        dev.absent_found();
    }
}

/// The commands of the compute processes, by PID, cached for the processes seen in the
/// last cycle.
struct ProcessNames {
    /// `--path.procfs`: a process's command is its `argv[0]` basename there, else its
    /// `PID/comm`.
    procfs: Procfs,
    cache: HashMap<u32, String>,
}

impl ProcessNames {
    /// The command of `pid`: its `argv[0]` basename (else `comm`) in the procfs, else
    /// `nvml_name()` (a process the procfs does not show: another PID namespace, or gone).
    fn get(&mut self, pid: u32, nvml_name: impl FnOnce() -> String) -> String {
        if let Some(n) = self.cache.get(&pid) {
            return n.clone();
        }
        let name = self.procfs.command(pid).unwrap_or_else(|_| nvml_name());
        self.cache.insert(pid, name.clone());
        name
    }
}

/// NVML's name for a process, empty when it has none.
fn nvml_name(nvml: &Nvml, dev: &mut Dev<'_>, errors: &CallErrors, pid: u32) -> String {
    let mut lost = false;
    call(dev, errors, &mut lost, Call::ProcessName, |_| {
        match nvml.sys_process_name(pid, 64) {
            Err(NvmlError::NotFound) => Ok(String::new()),
            r => r,
        }
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_temperature_is_read_whatever_type_nvml_declares() {
        // written as an unsigned int, declared as each type in turn
        for declared in 0..=6 {
            let mut v = request(NVML_FI_DEV_MEMORY_TEMP, 0);
            v.value.uiVal = 52;
            v.valueType = declared;
            assert_eq!(read_celsius(&v).unwrap(), 52.0, "declared {declared}");
        }
        // written as a double, declared as an unsigned int
        let mut v = request(NVML_FI_DEV_MEMORY_TEMP, 0);
        v.value.dVal = 47.5;
        v.valueType = 1;
        assert_eq!(read_celsius(&v).unwrap(), 47.5);
        // nothing plausible: an error, not a zero
        let mut v = request(NVML_FI_DEV_MEMORY_TEMP, 0);
        v.valueType = 1;
        assert!(read_celsius(&v).is_err());
    }

    #[test]
    fn error_classes() {
        assert_eq!(classify(&NvmlError::FunctionNotFound), Class::Absent);
        assert_eq!(
            classify(&NvmlError::UnexpectedVariant(DEPRECATED)),
            Class::Absent
        );
        assert_eq!(classify(&NvmlError::NoPermission), Class::Denied);
        assert_eq!(classify(&NvmlError::DriverNotLoaded), Class::Reinit);
        assert_eq!(classify(&NvmlError::LibRmVersionMismatch), Class::Reinit);
        assert_eq!(classify(&NvmlError::Uninitialized), Class::Reinit);
        assert_eq!(classify(&NvmlError::Unknown), Class::Failed);
    }
}
