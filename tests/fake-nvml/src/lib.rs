//! A fake `libnvidia-ml.so` for the integration tests and the benchmark.
//!
//! It exports the NVML C functions the GPU collector calls, with the signatures of
//! `nvml-wrapper-sys` (the [`abi_check`] function assigns each export to the matching
//! `NvmlLib` field, so a signature that drifts from the bindings fails to compile).
//! Devices and values come from the JSON file named by `FAKE_NVML_CONFIG`, re-read when it
//! changes (checked at most every 20 ms), so a test can change values while the daemon runs:
//! N GPUs, any value, `NOT_SUPPORTED` or any error code for chosen calls, a GPU lost for
//! good or after K calls, XID events appended to a list the event set delivers in order,
//! compute processes, per-link NVLink counters, and delays per call (on every GPU or on one,
//! a wedged GPU). A GPU with `mig_mode` set has the MIG devices of `mig_instances`: their
//! handles answer the identity, memory, process and instance-id calls, `nvmlGpmMigSampleGet`
//! samples them, and the parent answers `NOT_SUPPORTED` for utilization, its own GPM
//! samples and its process list, as real NVML does under MIG. `init_error` makes `nvmlInit_v2` fail until the config drops it, and an
//! error under a GPU's `errors` for `nvmlDeviceGetHandleByIndex_v2` keeps its handle away.
//!
//! With `FAKE_NVML_TRACE=FILE` it appends the name of each function the first time it is
//! called, so a test can compare the calls made with the calls the collector declares.
//!
//! A missing symbol cannot be configured at run time (the exports are static); the tests
//! copy this library and rename one entry of its dynamic string table instead.

#![allow(non_snake_case, non_upper_case_globals, clippy::missing_safety_doc)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_int, c_uint, c_ulonglong};
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use nvml_wrapper_sys::bindings::field_id::*;
use nvml_wrapper_sys::bindings::*;
use serde::Deserialize;

/// The whole fake machine.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    driver_version: String,
    /// `nvmlInit_v2` fails with this return code.
    init_error: Option<u32>,
    gpus: Vec<Gpu>,
    /// Calls answering `NVML_ERROR_NOT_SUPPORTED` on every GPU.
    not_supported: Vec<String>,
    /// Calls answering this return code on every GPU.
    errors: BTreeMap<String, u32>,
    /// Milliseconds a call sleeps before answering.
    delays_ms: BTreeMap<String, u64>,
    /// XID events, delivered once each in order to a set that registered for them.
    xid_events: Vec<XidEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Gpu {
    name: String,
    uuid: Option<String>,
    pci_bus_id: Option<String>,
    utilization_gpu: u32,
    utilization_memory: u32,
    memory_total: u64,
    memory_used: u64,
    memory_reserved: u64,
    power_mw: u32,
    power_limit_mw: u32,
    energy_mj: u64,
    temperature_c: u32,
    /// Field `NVML_FI_DEV_MEMORY_TEMP`; absent answers `NOT_SUPPORTED`.
    memory_temperature_c: Option<u32>,
    /// The `valueType` declared with the memory temperature, which is written as an
    /// unsigned int whatever this says (NVML r545 declared a wrong one).
    memory_temperature_value_type: Option<u32>,
    sm_clock_mhz: u32,
    sm_clock_max_mhz: u32,
    mem_clock_mhz: u32,
    pcie_tx_bytes: Option<u64>,
    pcie_rx_bytes: Option<u64>,
    /// The `valueType` of the PCIe byte counters: an unsigned int (1) is written as 32 bits,
    /// so a test can make it wrap; the default is unsigned long long.
    pcie_value_type: Option<u32>,
    pcie_replays: u32,
    nvlinks: Vec<Link>,
    ecc_corrected: u64,
    ecc_uncorrected: u64,
    remapped_correctable: u32,
    remapped_uncorrectable: u32,
    remap_pending: bool,
    remap_failure: bool,
    clock_event_reasons: u64,
    /// `nvmlDeviceGetGpuFabricInfoV`; absent answers `NOT_SUPPORTED`.
    fabric: Option<FabricInfo>,
    /// GPM metric values (NVML units: percent, MiB/s) by metric id; absent: the GPU does
    /// not support GPM. A metric left out answers `NOT_SUPPORTED` in its entry.
    gpm: Option<BTreeMap<u32, f64>>,
    /// Field `NVML_FI_DEV_GET_GPU_RECOVERY_ACTION`; absent answers `NOT_SUPPORTED`.
    recovery_action: Option<u32>,
    /// Violation time in ns by reason (power, thermal, sync_boost, board_limit,
    /// low_utilization, reliability); a reason left out answers `NOT_SUPPORTED`.
    violations_ns: BTreeMap<String, u64>,
    processes: Vec<Process>,
    /// MIG is on (`nvmlDeviceGetMigMode`'s current mode).
    mig_mode: bool,
    /// The MIG devices while `mig_mode` is on, by slot of `nvmlDeviceGetMigDeviceHandleByIndex`.
    mig_instances: Vec<MigInstance>,
    not_supported: Vec<String>,
    errors: BTreeMap<String, u32>,
    /// Milliseconds a call on this GPU sleeps before answering (a wedged GPU).
    delays_ms: BTreeMap<String, u64>,
    lost: bool,
    /// The GPU answers `GPU_IS_LOST` once it has answered this many calls.
    lost_after_calls: Option<u64>,
}

impl Default for Gpu {
    fn default() -> Self {
        Gpu {
            name: "NVIDIA H100 80GB HBM3".into(),
            uuid: None,
            pci_bus_id: None,
            utilization_gpu: 0,
            utilization_memory: 0,
            memory_total: 85_520_809_984,
            memory_used: 0,
            memory_reserved: 0,
            power_mw: 70_000,
            power_limit_mw: 700_000,
            energy_mj: 0,
            temperature_c: 30,
            memory_temperature_c: None,
            memory_temperature_value_type: None,
            pcie_value_type: None,
            sm_clock_mhz: 1980,
            sm_clock_max_mhz: 1980,
            mem_clock_mhz: 2619,
            pcie_tx_bytes: None,
            pcie_rx_bytes: None,
            pcie_replays: 0,
            nvlinks: Vec::new(),
            ecc_corrected: 0,
            ecc_uncorrected: 0,
            remapped_correctable: 0,
            remapped_uncorrectable: 0,
            remap_pending: false,
            remap_failure: false,
            clock_event_reasons: 0,
            fabric: None,
            gpm: None,
            recovery_action: None,
            violations_ns: BTreeMap::new(),
            processes: Vec::new(),
            mig_mode: false,
            mig_instances: Vec::new(),
            not_supported: Vec::new(),
            errors: BTreeMap::new(),
            delays_ms: BTreeMap::new(),
            lost: false,
            lost_after_calls: None,
        }
    }
}

/// One MIG device (a compute instance of a GPU instance).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct MigInstance {
    gpu_instance: u32,
    compute_instance: u32,
    /// The profile NVML appends to the parent's name, e.g. `1g.18gb`.
    profile: String,
    uuid: Option<String>,
    memory_total: u64,
    memory_used: u64,
    memory_reserved: u64,
    processes: Vec<Process>,
    /// GPM metric values of its GPU instance by metric id; absent: no GPM samples.
    gpm: Option<BTreeMap<u32, f64>>,
    /// Calls on this MIG device answering this return code.
    errors: BTreeMap<String, u32>,
}

/// The calls a MIG parent does not answer (`NOT_SUPPORTED`) while MIG is on.
const MIG_PARENT_UNSUPPORTED: [&str; 3] = [
    "nvmlDeviceGetUtilizationRates",
    "nvmlGpmSampleGet",
    "nvmlDeviceGetComputeRunningProcesses_v3",
];

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Link {
    tx_kib: u64,
    rx_kib: u64,
    /// Error counters by `crc_flit`, `crc_data`, `replay`, `recovery`; one left out
    /// answers `NOT_SUPPORTED`.
    errors: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FabricInfo {
    state: u8,
    status: u32,
    health_mask: u32,
    health_summary: u8,
    /// The highest struct version the "driver" knows (2 or 3; default 3).
    max_version: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Process {
    pid: u32,
    /// Bytes; absent means NVML's "not available".
    used_memory: Option<u64>,
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct XidEvent {
    gpu: u32,
    xid: u64,
    /// Delivered from a device handle the library never gave out (a GPU reset since).
    #[serde(default)]
    unknown_handle: bool,
}

struct State {
    cfg: Config,
    stamp: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
    calls: Vec<u64>,
    xid_delivered: usize,
    /// GPUs registered for XID events on the (single) event set.
    xid_registered: BTreeSet<usize>,
    traced: BTreeSet<&'static str>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn config_path() -> Option<String> {
    std::env::var("FAKE_NVML_CONFIG").ok()
}

fn stamp(path: &str) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn load(path: Option<&str>) -> Config {
    let Some(path) = path else {
        return Config::default();
    };
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("fake-nvml: {path}: {e}");
                Config::default()
            }
        },
        Err(_) => Config::default(),
    }
}

/// Runs `f` on the state, loading or re-loading the config first when it changed.
fn with_state<R>(sym: &'static str, f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let path = config_path();
    let st = guard.get_or_insert_with(|| State {
        cfg: load(path.as_deref()),
        stamp: path.as_deref().and_then(stamp),
        checked: Some(Instant::now()),
        calls: Vec::new(),
        xid_delivered: 0,
        xid_registered: BTreeSet::new(),
        traced: BTreeSet::new(),
    });
    let due = st
        .checked
        .is_none_or(|t| t.elapsed() >= Duration::from_millis(20));
    if due {
        st.checked = Some(Instant::now());
        if let Some(p) = path.as_deref() {
            let now = stamp(p);
            if now != st.stamp {
                st.stamp = now;
                st.cfg = load(Some(p));
            }
        }
    }
    if st.calls.len() < st.cfg.gpus.len() {
        st.calls.resize(st.cfg.gpus.len(), 0);
    }
    if st.traced.insert(sym) {
        if let Ok(p) = std::env::var("FAKE_NVML_TRACE") {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let _ = writeln!(f, "{sym}");
            }
        }
    }
    f(st)
}

fn delay(sym: &'static str) {
    let ms = with_state(sym, |st| st.cfg.delays_ms.get(sym).copied());
    if let Some(ms) = ms {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn handle(index: usize) -> nvmlDevice_t {
    (index + 1) as nvmlDevice_t
}

/// The handle of MIG slot `slot` of GPU `index`: above every GPU handle, distinct per slot.
fn mig_handle(index: usize, slot: usize) -> nvmlDevice_t {
    (((index + 1) << 16) | (slot + 1)) as nvmlDevice_t
}

/// The GPU a handle belongs to, and the MIG slot for a MIG device's handle.
fn split(device: nvmlDevice_t) -> (usize, Option<usize>) {
    let h = device as usize;
    if h >> 16 == 0 {
        (h.wrapping_sub(1), None)
    } else {
        ((h >> 16) - 1, Some((h & 0xffff) - 1))
    }
}

fn index(device: nvmlDevice_t) -> usize {
    split(device).0
}

/// A call on one device: counts it, applies lost/unsupported/error settings, then `f`; a
/// MIG device's handle answers `INVALID_ARGUMENT`.
fn device_call(
    sym: &'static str,
    device: nvmlDevice_t,
    f: impl FnOnce(usize, &Gpu) -> nvmlReturn_t,
) -> nvmlReturn_t {
    any_call(sym, device, f, |_, _, _| {
        nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT
    })
}

/// A call that a GPU (`parent`) and a MIG device of it (`mig`) both answer. The GPU's
/// lost/unsupported/error settings apply to its MIG devices too; a MIG handle of a GPU
/// without MIG, or of a slot it lacks, answers `INVALID_ARGUMENT`.
fn any_call(
    sym: &'static str,
    device: nvmlDevice_t,
    parent: impl FnOnce(usize, &Gpu) -> nvmlReturn_t,
    mig: impl FnOnce(usize, &Gpu, &MigInstance) -> nvmlReturn_t,
) -> nvmlReturn_t {
    delay(sym);
    let own = with_state(sym, |st| {
        st.cfg
            .gpus
            .get(index(device))
            .and_then(|g| g.delays_ms.get(sym).copied())
    });
    if let Some(ms) = own {
        std::thread::sleep(Duration::from_millis(ms));
    }
    with_state(sym, |st| {
        let i = index(device);
        let Some(g) = st.cfg.gpus.get(i) else {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        };
        st.calls[i] += 1;
        if g.lost || g.lost_after_calls.is_some_and(|k| st.calls[i] > k) {
            return nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST;
        }
        if g.not_supported.iter().any(|s| s == sym) || st.cfg.not_supported.iter().any(|s| s == sym)
        {
            return nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
        }
        if let Some(e) = g.errors.get(sym).or_else(|| st.cfg.errors.get(sym)) {
            return *e;
        }
        match split(device).1 {
            None if g.mig_mode && MIG_PARENT_UNSUPPORTED.contains(&sym) => {
                nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED
            }
            None => parent(i, g),
            Some(slot) => match g.mig_instances.get(slot).filter(|_| g.mig_mode) {
                Some(m) => match m.errors.get(sym) {
                    Some(e) => *e,
                    None => mig(i, g, m),
                },
                None => nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT,
            },
        }
    })
}

/// Copies `s` into a C buffer of `len` bytes, NUL-terminated.
unsafe fn copy_str(s: &str, buf: *mut c_char, len: c_uint) -> nvmlReturn_t {
    if buf.is_null() {
        return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
    }
    let bytes = s.as_bytes();
    if bytes.len() + 1 > len as usize {
        return nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, bytes.len());
    *buf.add(bytes.len()) = 0;
    nvmlReturn_enum_NVML_SUCCESS
}

fn uuid(i: usize, g: &Gpu) -> String {
    g.uuid
        .clone()
        .unwrap_or_else(|| format!("GPU-00000000-0000-0000-0000-{:012x}", i))
}

fn bus_id(i: usize, g: &Gpu) -> String {
    g.pci_bus_id
        .clone()
        .unwrap_or_else(|| format!("00000000:{:02X}:00.0", 0x18 + i * 0x10))
}

#[no_mangle]
pub unsafe extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    delay("nvmlInit_v2");
    with_state("nvmlInit_v2", |st| {
        st.cfg.init_error.unwrap_or(nvmlReturn_enum_NVML_SUCCESS)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    with_state("nvmlShutdown", |_| nvmlReturn_enum_NVML_SUCCESS)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(
    version: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    let v = with_state("nvmlSystemGetDriverVersion", |st| {
        if st.cfg.driver_version.is_empty() {
            "550.54.15".to_string()
        } else {
            st.cfg.driver_version.clone()
        }
    });
    copy_str(&v, version, length)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    delay("nvmlDeviceGetCount_v2");
    let n = with_state("nvmlDeviceGetCount_v2", |st| st.cfg.gpus.len());
    *count = n as c_uint;
    nvmlReturn_enum_NVML_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    let got = with_state("nvmlDeviceGetHandleByIndex_v2", |st| {
        match st.cfg.gpus.get(index as usize) {
            None => Err(nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT),
            Some(g) => match g.errors.get("nvmlDeviceGetHandleByIndex_v2") {
                Some(e) => Err(*e),
                None => Ok(()),
            },
        }
    });
    if let Err(e) = got {
        return e;
    }
    *device = handle(index as usize);
    nvmlReturn_enum_NVML_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: nvmlDevice_t,
    out: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    any_call(
        "nvmlDeviceGetUUID",
        device,
        |i, g| copy_str(&uuid(i, g), out, length),
        |i, _, m| {
            let u = m.uuid.clone().unwrap_or_else(|| {
                format!(
                    "MIG-00000000-0000-{i:04x}-{:04x}-{:012x}",
                    m.gpu_instance, m.compute_instance
                )
            });
            copy_str(&u, out, length)
        },
    )
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: nvmlDevice_t,
    out: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    any_call(
        "nvmlDeviceGetName",
        device,
        |_, g| copy_str(&g.name, out, length),
        |_, g, m| copy_str(&format!("{} MIG {}", g.name, m.profile), out, length),
    )
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetPciInfo_v3", device, |i, g| {
        let p = &mut *pci;
        *p = std::mem::zeroed();
        let id = bus_id(i, g);
        for (dst, src) in p.busId.iter_mut().zip(id.bytes().take(31)) {
            *dst = src as c_char;
        }
        for (dst, src) in p.busIdLegacy.iter_mut().zip(id.bytes().skip(4).take(15)) {
            *dst = src as c_char;
        }
        p.bus = (0x18 + i * 0x10) as c_uint;
        p.pciDeviceId = 0x2330_10de;
        p.pciSubSystemId = 0x16c1_10de;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    out: *mut nvmlUtilization_t,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetUtilizationRates", device, |_, g| {
        (*out).gpu = g.utilization_gpu;
        (*out).memory = g.utilization_memory;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    out: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    let fill = |total: u64, used: u64, reserved: u64| {
        let want = (std::mem::size_of::<nvmlMemory_v2_t>() | (2 << 24)) as c_uint;
        if (*out).version != want {
            return nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
        }
        (*out).total = total;
        (*out).used = used;
        (*out).reserved = reserved;
        (*out).free = total.saturating_sub(used + reserved);
        nvmlReturn_enum_NVML_SUCCESS
    };
    any_call(
        "nvmlDeviceGetMemoryInfo_v2",
        device,
        |_, g| fill(g.memory_total, g.memory_used, g.memory_reserved),
        |_, _, m| fill(m.memory_total, m.memory_used, m.memory_reserved),
    )
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(
    device: nvmlDevice_t,
    out: *mut c_uint,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetPowerUsage", device, |_, g| {
        *out = g.power_mw;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetEnforcedPowerLimit(
    device: nvmlDevice_t,
    out: *mut c_uint,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetEnforcedPowerLimit", device, |_, g| {
        *out = g.power_limit_mw;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(
    device: nvmlDevice_t,
    out: *mut c_ulonglong,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetTotalEnergyConsumption", device, |_, g| {
        *out = g.energy_mj;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: nvmlDevice_t,
    sensor: nvmlTemperatureSensors_t,
    out: *mut c_uint,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetTemperature", device, |_, g| {
        if sensor != nvmlTemperatureSensors_enum_NVML_TEMPERATURE_GPU {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        *out = g.temperature_c;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperatureV(
    device: nvmlDevice_t,
    out: *mut nvmlTemperature_t,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetTemperatureV", device, |_, g| {
        let want = (std::mem::size_of::<nvmlTemperature_t>() | (1 << 24)) as c_uint;
        if (*out).version != want {
            return nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
        }
        if (*out).sensorType != nvmlTemperatureSensors_enum_NVML_TEMPERATURE_GPU {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        (*out).temperature = g.temperature_c as c_int;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(
    device: nvmlDevice_t,
    clock: nvmlClockType_t,
    out: *mut c_uint,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetClockInfo", device, |_, g| {
        *out = match clock {
            nvmlClockType_enum_NVML_CLOCK_SM => g.sm_clock_mhz,
            nvmlClockType_enum_NVML_CLOCK_MEM => g.mem_clock_mhz,
            _ => return nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED,
        };
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMaxClockInfo(
    device: nvmlDevice_t,
    clock: nvmlClockType_t,
    out: *mut c_uint,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetMaxClockInfo", device, |_, g| {
        *out = match clock {
            nvmlClockType_enum_NVML_CLOCK_SM => g.sm_clock_max_mhz,
            _ => return nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED,
        };
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEccErrors(
    device: nvmlDevice_t,
    error_type: nvmlMemoryErrorType_t,
    _counter_type: nvmlEccCounterType_t,
    out: *mut c_ulonglong,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetTotalEccErrors", device, |_, g| {
        *out = match error_type {
            nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_CORRECTED => g.ecc_corrected,
            nvmlMemoryErrorType_enum_NVML_MEMORY_ERROR_TYPE_UNCORRECTED => g.ecc_uncorrected,
            _ => return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT,
        };
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetRemappedRows(
    device: nvmlDevice_t,
    corr: *mut c_uint,
    unc: *mut c_uint,
    pending: *mut c_uint,
    failure: *mut c_uint,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetRemappedRows", device, |_, g| {
        *corr = g.remapped_correctable;
        *unc = g.remapped_uncorrectable;
        *pending = g.remap_pending as c_uint;
        *failure = g.remap_failure as c_uint;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPcieReplayCounter(
    device: nvmlDevice_t,
    out: *mut c_uint,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetPcieReplayCounter", device, |_, g| {
        *out = g.pcie_replays;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetViolationStatus(
    device: nvmlDevice_t,
    policy: nvmlPerfPolicyType_t,
    out: *mut nvmlViolationTime_t,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetViolationStatus", device, |_, g| {
        let reason = match policy {
            nvmlPerfPolicyType_enum_NVML_PERF_POLICY_POWER => "power",
            nvmlPerfPolicyType_enum_NVML_PERF_POLICY_THERMAL => "thermal",
            nvmlPerfPolicyType_enum_NVML_PERF_POLICY_SYNC_BOOST => "sync_boost",
            nvmlPerfPolicyType_enum_NVML_PERF_POLICY_BOARD_LIMIT => "board_limit",
            nvmlPerfPolicyType_enum_NVML_PERF_POLICY_LOW_UTILIZATION => "low_utilization",
            nvmlPerfPolicyType_enum_NVML_PERF_POLICY_RELIABILITY => "reliability",
            _ => return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT,
        };
        match g.violations_ns.get(reason) {
            Some(ns) => {
                *out = nvmlViolationTime_t {
                    referenceTime: 1,
                    violationTime: *ns,
                };
                nvmlReturn_enum_NVML_SUCCESS
            }
            None => nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED,
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksEventReasons(
    device: nvmlDevice_t,
    out: *mut c_ulonglong,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetCurrentClocksEventReasons", device, |_, g| {
        *out = g.clock_event_reasons;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksThrottleReasons(
    device: nvmlDevice_t,
    out: *mut c_ulonglong,
) -> nvmlReturn_t {
    device_call(
        "nvmlDeviceGetCurrentClocksThrottleReasons",
        device,
        |_, g| {
            *out = g.clock_event_reasons;
            nvmlReturn_enum_NVML_SUCCESS
        },
    )
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_t,
) -> nvmlReturn_t {
    let fill = |procs: &[Process], gi: u32, ci: u32| {
        let n = procs.len();
        if infos.is_null() || (*count as usize) < n {
            *count = n as c_uint;
            return if n == 0 {
                nvmlReturn_enum_NVML_SUCCESS
            } else {
                nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE
            };
        }
        for (k, p) in procs.iter().enumerate() {
            *infos.add(k) = nvmlProcessInfo_t {
                pid: p.pid,
                usedGpuMemory: p.used_memory.unwrap_or(u64::MAX),
                gpuInstanceId: gi,
                computeInstanceId: ci,
            };
        }
        *count = n as c_uint;
        nvmlReturn_enum_NVML_SUCCESS
    };
    any_call(
        "nvmlDeviceGetComputeRunningProcesses_v3",
        device,
        |_, g| fill(&g.processes, u32::MAX, u32::MAX),
        |_, _, m| fill(&m.processes, m.gpu_instance, m.compute_instance),
    )
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetProcessName(
    pid: c_uint,
    name: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    let found = with_state("nvmlSystemGetProcessName", |st| {
        st.cfg
            .gpus
            .iter()
            .flat_map(|g| {
                g.processes
                    .iter()
                    .chain(g.mig_instances.iter().flat_map(|m| &m.processes))
            })
            .find(|p| p.pid == pid)
            .and_then(|p| p.name.clone())
    });
    match found {
        Some(n) => copy_str(&n, name, length),
        None => nvmlReturn_enum_NVML_ERROR_NOT_FOUND,
    }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetFieldValues(
    device: nvmlDevice_t,
    count: c_int,
    values: *mut nvmlFieldValue_t,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetFieldValues", device, |_, g| {
        for k in 0..count.max(0) as usize {
            let v = &mut *values.add(k);
            v.timestamp = 1;
            v.latencyUsec = 0;
            v.valueType = nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
            let link = g.nvlinks.get(v.scopeId as usize);
            let got = match v.fieldId {
                NVML_FI_DEV_NVLINK_LINK_COUNT => {
                    v.valueType = nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT;
                    v.value.uiVal = g.nvlinks.len() as c_uint;
                    Ok(())
                }
                NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX => link
                    .map(|l| v.value.ullVal = l.tx_kib)
                    .ok_or(nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT),
                NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX => link
                    .map(|l| v.value.ullVal = l.rx_kib)
                    .ok_or(nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT),
                NVML_FI_DEV_MEMORY_TEMP => g
                    .memory_temperature_c
                    .map(|c| {
                        v.valueType = g
                            .memory_temperature_value_type
                            .unwrap_or(nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT);
                        v.value.uiVal = c;
                    })
                    .ok_or(nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED),
                NVML_FI_DEV_GET_GPU_RECOVERY_ACTION => g
                    .recovery_action
                    .map(|a| {
                        v.valueType = nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT;
                        v.value.uiVal = a;
                    })
                    .ok_or(nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED),
                NVML_FI_DEV_PCIE_COUNT_TX_BYTES => g
                    .pcie_tx_bytes
                    .map(|b| pcie_value(g, v, b))
                    .ok_or(nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED),
                NVML_FI_DEV_PCIE_COUNT_RX_BYTES => g
                    .pcie_rx_bytes
                    .map(|b| pcie_value(g, v, b))
                    .ok_or(nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED),
                _ => Err(nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED),
            };
            v.nvmlReturn = match got {
                Ok(()) => nvmlReturn_enum_NVML_SUCCESS,
                Err(e) => e,
            };
        }
        nvmlReturn_enum_NVML_SUCCESS
    })
}

/// Writes a PCIe byte count in the GPU's declared type (32 bits wrap).
unsafe fn pcie_value(g: &Gpu, v: &mut nvmlFieldValue_t, bytes: u64) {
    match g.pcie_value_type {
        Some(t) if t == nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT => {
            v.valueType = t;
            v.value.uiVal = bytes as c_uint;
        }
        _ => v.value.ullVal = bytes,
    }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetNvLinkErrorCounter(
    device: nvmlDevice_t,
    link: c_uint,
    counter: nvmlNvLinkErrorCounter_t,
    out: *mut c_ulonglong,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetNvLinkErrorCounter", device, |_, g| {
        let Some(l) = g.nvlinks.get(link as usize) else {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        };
        let name = match counter {
            nvmlNvLinkErrorCounter_enum_NVML_NVLINK_ERROR_DL_REPLAY => "replay",
            nvmlNvLinkErrorCounter_enum_NVML_NVLINK_ERROR_DL_RECOVERY => "recovery",
            nvmlNvLinkErrorCounter_enum_NVML_NVLINK_ERROR_DL_CRC_FLIT => "crc_flit",
            nvmlNvLinkErrorCounter_enum_NVML_NVLINK_ERROR_DL_CRC_DATA => "crc_data",
            _ => return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT,
        };
        match l.errors.get(name) {
            Some(v) => {
                *out = *v;
                nvmlReturn_enum_NVML_SUCCESS
            }
            None => nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED,
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuFabricInfoV(
    device: nvmlDevice_t,
    out: *mut nvmlGpuFabricInfoV_t,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetGpuFabricInfoV", device, |_, g| {
        let Some(f) = &g.fabric else {
            return nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
        };
        let v3 = (std::mem::size_of::<nvmlGpuFabricInfo_v3_t>() | (3 << 24)) as c_uint;
        let v2 = (std::mem::size_of::<nvmlGpuFabricInfo_v2_t>() | (2 << 24)) as c_uint;
        let version = (*out).version;
        let max = f.max_version.unwrap_or(3);
        if !(version == v2 || (version == v3 && max >= 3)) {
            return nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
        }
        (*out).state = f.state;
        (*out).status = f.status;
        (*out).healthMask = f.health_mask;
        if version == v3 {
            (*out).healthSummary = f.health_summary;
        }
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpmQueryDeviceSupport(
    device: nvmlDevice_t,
    out: *mut nvmlGpmSupport_t,
) -> nvmlReturn_t {
    device_call("nvmlGpmQueryDeviceSupport", device, |_, g| {
        if (*out).version != NVML_GPM_SUPPORT_VERSION {
            return nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
        }
        (*out).isSupportedDevice = g.gpm.is_some() as c_uint;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

/// A GPM sample buffer: which GPU (and GPU instance, for a MIG sample) filled it, and when.
struct GpmSample {
    device: Option<usize>,
    gpu_instance: Option<u32>,
    at: Option<Instant>,
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpmSampleAlloc(out: *mut nvmlGpmSample_t) -> nvmlReturn_t {
    with_state("nvmlGpmSampleAlloc", |_| ());
    let b = Box::new(GpmSample {
        device: None,
        gpu_instance: None,
        at: None,
    });
    *out = Box::into_raw(b) as nvmlGpmSample_t;
    nvmlReturn_enum_NVML_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpmSampleFree(sample: nvmlGpmSample_t) -> nvmlReturn_t {
    with_state("nvmlGpmSampleFree", |_| ());
    if sample.is_null() {
        return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
    }
    drop(Box::from_raw(sample as *mut GpmSample));
    nvmlReturn_enum_NVML_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpmSampleGet(
    device: nvmlDevice_t,
    sample: nvmlGpmSample_t,
) -> nvmlReturn_t {
    device_call("nvmlGpmSampleGet", device, |i, g| {
        if g.gpm.is_none() {
            return nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
        }
        let s = &mut *(sample as *mut GpmSample);
        s.device = Some(i);
        s.gpu_instance = None;
        s.at = Some(Instant::now());
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpmMigSampleGet(
    device: nvmlDevice_t,
    gpu_instance_id: c_uint,
    sample: nvmlGpmSample_t,
) -> nvmlReturn_t {
    device_call("nvmlGpmMigSampleGet", device, |i, g| {
        if !g.mig_mode {
            return nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
        }
        let Some(m) = g
            .mig_instances
            .iter()
            .find(|m| m.gpu_instance == gpu_instance_id)
        else {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        };
        if m.gpm.is_none() {
            return nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
        }
        let s = &mut *(sample as *mut GpmSample);
        s.device = Some(i);
        s.gpu_instance = Some(gpu_instance_id);
        s.at = Some(Instant::now());
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlGpmMetricsGet(req: *mut nvmlGpmMetricsGet_t) -> nvmlReturn_t {
    let r = &mut *req;
    if r.version != NVML_GPM_METRICS_GET_VERSION || r.sample1.is_null() || r.sample2.is_null() {
        return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
    }
    let (s1, s2) = (
        &*(r.sample1 as *const GpmSample),
        &*(r.sample2 as *const GpmSample),
    );
    // Two samples of one GPU, the second at least 100 ms after the first (NVML's rule).
    let (Some(d), Some(t1), Some(t2)) = (s1.device, s1.at, s2.at) else {
        return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
    };
    if s2.device != Some(d)
        || s2.gpu_instance != s1.gpu_instance
        || t2 < t1 + Duration::from_millis(100)
    {
        return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
    }
    with_state("nvmlGpmMetricsGet", |st| {
        let values = st.cfg.gpus.get(d).and_then(|g| match s1.gpu_instance {
            None => g.gpm.as_ref(),
            Some(gi) => g
                .mig_instances
                .iter()
                .find(|m| m.gpu_instance == gi)
                .and_then(|m| m.gpm.as_ref()),
        });
        let Some(values) = values else {
            return nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
        };
        for m in r.metrics.iter_mut().take(r.numMetrics as usize) {
            match values.get(&m.metricId) {
                Some(v) => {
                    m.value = *v;
                    m.nvmlReturn = nvmlReturn_enum_NVML_SUCCESS;
                }
                None => m.nvmlReturn = nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED,
            }
        }
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetMigMode", device, |_, g| {
        *current = g.mig_mode as c_uint;
        *pending = g.mig_mode as c_uint;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: nvmlDevice_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetMaxMigDeviceCount", device, |_, g| {
        *count = g.mig_instances.len().max(7) as c_uint;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: nvmlDevice_t,
    index: c_uint,
    out: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    device_call("nvmlDeviceGetMigDeviceHandleByIndex", device, |i, g| {
        if !g.mig_mode {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        if index as usize >= g.mig_instances.len() {
            return nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
        }
        *out = mig_handle(i, index as usize);
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> nvmlReturn_t {
    any_call(
        "nvmlDeviceGetGpuInstanceId",
        device,
        |_, _| nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT,
        |_, _, m| {
            *id = m.gpu_instance;
            nvmlReturn_enum_NVML_SUCCESS
        },
    )
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> nvmlReturn_t {
    any_call(
        "nvmlDeviceGetComputeInstanceId",
        device,
        |_, _| nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT,
        |_, _, m| {
            *id = m.compute_instance;
            nvmlReturn_enum_NVML_SUCCESS
        },
    )
}

const EVENT_SET: usize = 0x5e7;

#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetCreate(set: *mut nvmlEventSet_t) -> nvmlReturn_t {
    with_state("nvmlEventSetCreate", |st| {
        if let Some(e) = st.cfg.errors.get("nvmlEventSetCreate") {
            return *e;
        }
        *set = EVENT_SET as nvmlEventSet_t;
        nvmlReturn_enum_NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceRegisterEvents(
    device: nvmlDevice_t,
    types: c_ulonglong,
    set: nvmlEventSet_t,
) -> nvmlReturn_t {
    let ret = device_call("nvmlDeviceRegisterEvents", device, |_, _| {
        if set as usize != EVENT_SET {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        nvmlReturn_enum_NVML_SUCCESS
    });
    if ret == nvmlReturn_enum_NVML_SUCCESS && types & nvmlEventTypeXidCriticalError as u64 != 0 {
        with_state("nvmlDeviceRegisterEvents", |st| {
            st.xid_registered.insert(index(device));
        });
    }
    ret
}

#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetWait_v2(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeout_ms: c_uint,
) -> nvmlReturn_t {
    if set as usize != EVENT_SET {
        return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
    }
    let end = Instant::now() + Duration::from_millis(timeout_ms as u64);
    loop {
        let got = with_state("nvmlEventSetWait_v2", |st| {
            while let Some(e) = st.cfg.xid_events.get(st.xid_delivered) {
                st.xid_delivered += 1;
                if e.unknown_handle {
                    return Some((0xdead, e.xid));
                }
                if st.xid_registered.contains(&(e.gpu as usize)) {
                    return Some((e.gpu as usize, e.xid));
                }
            }
            None
        });
        if let Some((gpu, xid)) = got {
            *data = nvmlEventData_t {
                device: handle(gpu),
                eventType: nvmlEventTypeXidCriticalError as u64,
                eventData: xid,
                gpuInstanceId: u32::MAX,
                computeInstanceId: u32::MAX,
            };
            return nvmlReturn_enum_NVML_SUCCESS;
        }
        let now = Instant::now();
        if now >= end {
            return nvmlReturn_enum_NVML_ERROR_TIMEOUT;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(10)));
    }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetFree(set: nvmlEventSet_t) -> nvmlReturn_t {
    with_state("nvmlEventSetFree", |st| {
        if set as usize != EVENT_SET {
            return nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
        }
        st.xid_registered.clear();
        nvmlReturn_enum_NVML_SUCCESS
    })
}

/// Never called: fails to compile when an export's signature differs from the binding's.
#[allow(dead_code, unused_assignments)]
fn abi_check(lib: NvmlLib) {
    macro_rules! same {
        ($($name:ident),* $(,)?) => {$(
            let mut f = lib.$name.unwrap();
            f = $name;
            let _ = f;
        )*};
    }
    same!(
        nvmlInit_v2,
        nvmlShutdown,
        nvmlSystemGetDriverVersion,
        nvmlDeviceGetCount_v2,
        nvmlDeviceGetHandleByIndex_v2,
        nvmlDeviceGetUUID,
        nvmlDeviceGetName,
        nvmlDeviceGetPciInfo_v3,
        nvmlDeviceGetUtilizationRates,
        nvmlDeviceGetMemoryInfo_v2,
        nvmlDeviceGetPowerUsage,
        nvmlDeviceGetEnforcedPowerLimit,
        nvmlDeviceGetTotalEnergyConsumption,
        nvmlDeviceGetTemperature,
        nvmlDeviceGetTemperatureV,
        nvmlDeviceGetClockInfo,
        nvmlDeviceGetMaxClockInfo,
        nvmlDeviceGetTotalEccErrors,
        nvmlDeviceGetRemappedRows,
        nvmlDeviceGetPcieReplayCounter,
        nvmlDeviceGetViolationStatus,
        nvmlDeviceGetCurrentClocksThrottleReasons,
        nvmlDeviceGetCurrentClocksEventReasons,
        nvmlDeviceGetComputeRunningProcesses_v3,
        nvmlSystemGetProcessName,
        nvmlDeviceGetFieldValues,
        nvmlDeviceGetNvLinkErrorCounter,
        nvmlDeviceGetGpuFabricInfoV,
        nvmlGpmQueryDeviceSupport,
        nvmlGpmSampleAlloc,
        nvmlGpmSampleFree,
        nvmlGpmSampleGet,
        nvmlGpmMetricsGet,
        nvmlGpmMigSampleGet,
        nvmlDeviceGetMigMode,
        nvmlDeviceGetMaxMigDeviceCount,
        nvmlDeviceGetMigDeviceHandleByIndex,
        nvmlDeviceGetGpuInstanceId,
        nvmlDeviceGetComputeInstanceId,
        nvmlEventSetCreate,
        nvmlDeviceRegisterEvents,
        nvmlEventSetWait_v2,
        nvmlEventSetFree,
    );
}
