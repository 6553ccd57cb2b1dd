//! The GPU families of the exposition, written from a [`GpuSnapshot`]: identity and `up`
//! for every GPU, values only for the GPUs that answer, XID counts, per-process memory and
//! the time of the last sample. A family with no series is left out.
//!
//! Under MIG the memory, GPM and process families have one series set per MIG device, with
//! the parent's `gpu` and `uuid` and the labels `gpu_instance`, `compute_instance` and
//! `mig_profile`; the parent has none of its own there, so that a `sum()` counts each byte
//! once.

use super::model::{
    GpuSample, GpuSnapshot, MigSample, NvLinkSample, CLOCK_EVENT_REASONS, FABRIC_ISSUES,
    FABRIC_STATES, GPM_FAMILIES, NVLINK_ERROR_TYPES, RECOVERY_ACTIONS, VIOLATION_REASONS,
};
use crate::expose::{Encoder, Kind};

/// A GPU that answers NVML, with its index as a label value.
type Up<'a> = (&'a GpuSample, &'a str);

/// Writes the GPU families from a snapshot; nothing when NVML is not up.
pub fn encode(enc: &mut Encoder<'_>, snap: &GpuSnapshot) {
    if !snap.nvml_up {
        return;
    }
    let idx: Vec<String> = snap.gpus.iter().map(|g| g.index.to_string()).collect();
    let up: Vec<Up<'_>> = snap
        .gpus
        .iter()
        .zip(&idx)
        .filter(|(g, _)| g.up)
        .map(|(g, i)| (g, i.as_str()))
        .collect();
    identity(enc, snap, &idx);
    simple(enc, &up);
    mig_enabled(enc, &up);
    gpm(enc, &up);
    nvlinks(enc, &up);
    nvlink_rates(enc, &up);
    nvlink_errors(enc, &up);
    ecc(enc, &up);
    remapped_rows(enc, &up);
    clock_events(enc, &up);
    violations(enc, &up);
    fabric(enc, &up);
    recovery_action(enc, &up);
    xids(enc, snap);
    xids_unattributed(enc, snap);
    processes(enc, &up);
    last_sample(enc, snap, &idx);
}

/// `gpu_info` and `gpu_up`, for every GPU found, lost ones included.
fn identity(enc: &mut Encoder<'_>, snap: &GpuSnapshot, idx: &[String]) {
    let gpus = &snap.gpus;
    if gpus.is_empty() {
        return;
    }
    enc.family("gpu_info", "Identity of each GPU; always 1.", Kind::Gauge);
    for (g, i) in gpus.iter().zip(idx) {
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
    for (g, i) in gpus.iter().zip(idx) {
        enc.sample(
            "gpu_up",
            &[("gpu", i), ("uuid", &g.uuid)],
            if g.up { 1.0 } else { 0.0 },
        );
    }
}

type Getter = fn(&GpuSample) -> Option<f64>;

/// The families of one value per GPU, labelled by `gpu` and `uuid` alone.
const SIMPLE: [(&str, &str, Kind, Getter); 19] = [
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
        "gpu_memory_temperature_celsius",
        "Device memory (HBM) temperature.",
        Kind::Gauge,
        |g| g.memory_temperature_celsius,
    ),
    (
        "gpu_sm_clock_hertz",
        "Current SM clock.",
        Kind::Gauge,
        |g| g.sm_clock_hertz,
    ),
    (
        "gpu_sm_clock_max_hertz",
        "Highest SM clock the GPU can run at.",
        Kind::Gauge,
        |g| g.sm_clock_max_hertz,
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
        "gpu_pcie_replay_errors_total",
        "PCIe replays (link-level retransmissions) since the driver was loaded.",
        Kind::Counter,
        |g| g.pcie_replay_errors.map(|v| v as f64),
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

type MigGetter = fn(&MigSample) -> Option<f64>;

/// The [`SIMPLE`] families that MIG devices have too, with their values there.
const MIG_SIMPLE: [(&str, MigGetter); 4] = [
    ("gpu_memory_used_bytes", |m| {
        m.memory_used_bytes.map(|v| v as f64)
    }),
    ("gpu_memory_free_bytes", |m| {
        m.memory_free_bytes.map(|v| v as f64)
    }),
    ("gpu_memory_total_bytes", |m| {
        m.memory_total_bytes.map(|v| v as f64)
    }),
    ("gpu_memory_reserved_bytes", |m| {
        m.memory_reserved_bytes.map(|v| v as f64)
    }),
];

/// A MIG device's label values: GPU instance, compute instance.
fn mig_ids(m: &MigSample) -> (String, String) {
    (m.gpu_instance.to_string(), m.compute_instance.to_string())
}

/// Writes one value of GPU `i` or, with `mig`, of that MIG device of it.
fn sample_of(
    enc: &mut Encoder<'_>,
    name: &str,
    (g, i): &Up<'_>,
    mig: Option<&MigSample>,
    extra: &[(&str, &str)],
    v: f64,
) {
    let mut labels = vec![("gpu", *i), ("uuid", g.uuid.as_str())];
    let ids;
    if let Some(m) = mig {
        ids = mig_ids(m);
        labels.extend([
            ("gpu_instance", ids.0.as_str()),
            ("compute_instance", ids.1.as_str()),
            ("mig_profile", m.profile.as_str()),
        ]);
    }
    labels.extend_from_slice(extra);
    enc.sample(name, &labels, v);
}

/// The [`SIMPLE`] families, per MIG device for those of [`MIG_SIMPLE`].
fn simple(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    for (name, help, kind, get) in SIMPLE {
        let mig_get = MIG_SIMPLE.iter().find(|(n, _)| *n == name).map(|(_, f)| *f);
        let mig_any = |g: &GpuSample| mig_get.is_some_and(|f| g.mig.iter().any(|m| f(m).is_some()));
        if up.iter().all(|(g, _)| get(g).is_none() && !mig_any(g)) {
            continue;
        }
        enc.family(name, help, kind);
        for u in up {
            if let Some(v) = get(u.0) {
                sample_of(enc, name, u, None, &[], v);
            }
            let Some(f) = mig_get else { continue };
            for m in &u.0.mig {
                if let Some(v) = f(m) {
                    sample_of(enc, name, u, Some(m), &[], v);
                }
            }
        }
    }
}

/// `gpu_mig_enabled`, for the GPUs that have a MIG mode.
fn mig_enabled(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    const NAME: &str = "gpu_mig_enabled";
    if up.iter().all(|(g, _)| g.mig_enabled.is_none()) {
        return;
    }
    enc.family(
        NAME,
        "1 while MIG is on (memory, GPM and process series are then per MIG instance), 0 while it is off.",
        Kind::Gauge,
    );
    for (g, i) in up {
        if let Some(on) = g.mig_enabled {
            enc.sample(
                NAME,
                &[("gpu", i), ("uuid", &g.uuid)],
                if on { 1.0 } else { 0.0 },
            );
        }
    }
}

/// The GPM families, per GPU or per MIG device, each left out where nothing has a GPM pair.
fn gpm(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    for (k, (name, help, _)) in GPM_FAMILIES.iter().enumerate() {
        if up
            .iter()
            .all(|(g, _)| g.gpm[k].is_none() && g.mig.iter().all(|m| m.gpm[k].is_none()))
        {
            continue;
        }
        enc.family(name, help, Kind::Gauge);
        for u in up {
            if let Some(v) = u.0.gpm[k] {
                sample_of(enc, name, u, None, &[], v);
            }
            for m in &u.0.mig {
                if let Some(v) = m.gpm[k] {
                    sample_of(enc, name, u, Some(m), &[], v);
                }
            }
        }
    }
}

/// The per-link NVLink data counters, one family per direction.
fn nvlinks(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
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
        for (g, i) in up {
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
}

/// The per-link NVLink data rates from GPM, one family per direction.
fn nvlink_rates(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    for (name, help, tx) in [
        (
            "gpu_nvlink_transmit_bytes_per_second",
            "Data bytes sent per second over each NVLink between the last two GPM samples.",
            true,
        ),
        (
            "gpu_nvlink_receive_bytes_per_second",
            "Data bytes received per second over each NVLink between the last two GPM samples.",
            false,
        ),
    ] {
        let get = |l: &NvLinkSample| {
            if tx {
                l.transmit_bytes_per_second
            } else {
                l.receive_bytes_per_second
            }
        };
        if !up
            .iter()
            .any(|(g, _)| g.nvlinks.iter().any(|l| get(l).is_some()))
        {
            continue;
        }
        enc.family(name, help, Kind::Gauge);
        for (g, i) in up {
            for l in &g.nvlinks {
                if let Some(v) = get(l) {
                    let link = l.link.to_string();
                    enc.sample(name, &[("gpu", i), ("uuid", &g.uuid), ("link", &link)], v);
                }
            }
        }
    }
}

/// `gpu_nvlink_errors_total` per link and error type.
fn nvlink_errors(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    const NAME: &str = "gpu_nvlink_errors_total";
    if !up.iter().any(|(g, _)| {
        g.nvlinks
            .iter()
            .any(|l| l.errors.iter().any(Option::is_some))
    }) {
        return;
    }
    enc.family(
        NAME,
        "NVLink data-link errors per link since the driver was loaded, by type (CRC flit, CRC data, replay, recovery).",
        Kind::Counter,
    );
    for (g, i) in up {
        for l in &g.nvlinks {
            let link = l.link.to_string();
            for (v, t) in l.errors.iter().zip(NVLINK_ERROR_TYPES) {
                if let Some(v) = v {
                    enc.sample(
                        NAME,
                        &[("gpu", i), ("uuid", &g.uuid), ("link", &link), ("type", t)],
                        *v as f64,
                    );
                }
            }
        }
    }
}

/// The NVSwitch fabric families: registration state (one series per state, 1 for the
/// current one), the registration's status code and the health issues the GPU reports.
fn fabric(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    let with: Vec<_> = up
        .iter()
        .filter_map(|(g, i)| Some((*g, *i, g.fabric?)))
        .collect();
    if with.is_empty() {
        return;
    }
    enc.family(
        "gpu_fabric_state",
        "NVSwitch fabric registration state of the GPU: 1 for the current state.",
        Kind::Gauge,
    );
    for (g, i, f) in &with {
        for (code, state) in FABRIC_STATES {
            enc.sample(
                "gpu_fabric_state",
                &[("gpu", i), ("uuid", &g.uuid), ("state", state)],
                if f.state == code { 1.0 } else { 0.0 },
            );
        }
    }
    enc.family(
        "gpu_fabric_registration_status",
        "NVML return code of the GPU's fabric registration (0: success).",
        Kind::Gauge,
    );
    for (g, i, f) in &with {
        enc.sample(
            "gpu_fabric_registration_status",
            &[("gpu", i), ("uuid", &g.uuid)],
            f64::from(f.status),
        );
    }
    let reported = |mask: u32, shift: u32, width: u32| (mask >> shift) & width != 0;
    if !with.iter().any(|(_, _, f)| {
        FABRIC_ISSUES
            .iter()
            .any(|(_, shift, width, _)| reported(f.health_mask, *shift, *width))
    }) {
        return;
    }
    enc.family(
        "gpu_fabric_health_issue",
        "1 while the fabric reports the issue for the GPU (health mask), 0 while it reports none; issues the driver does not report are left out.",
        Kind::Gauge,
    );
    for (g, i, f) in &with {
        for (issue, shift, width, no) in FABRIC_ISSUES {
            let v = (f.health_mask >> shift) & width;
            if v != 0 {
                enc.sample(
                    "gpu_fabric_health_issue",
                    &[("gpu", i), ("uuid", &g.uuid), ("issue", issue)],
                    if v == no { 0.0 } else { 1.0 },
                );
            }
        }
    }
}

/// `gpu_recovery_action`: one series per action, 1 for the one the driver recommends.
fn recovery_action(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    const NAME: &str = "gpu_recovery_action";
    if !up.iter().any(|(g, _)| g.recovery_action.is_some()) {
        return;
    }
    enc.family(
        NAME,
        "The driver's recommended recovery action for the GPU: 1 for the current one (none, gpu_reset, node_reboot, drain_p2p, drain_and_reset).",
        Kind::Gauge,
    );
    for (g, i) in up {
        if let Some(a) = g.recovery_action {
            for (k, action) in RECOVERY_ACTIONS.iter().enumerate() {
                enc.sample(
                    NAME,
                    &[("gpu", i), ("uuid", &g.uuid), ("action", action)],
                    if a as usize == k { 1.0 } else { 0.0 },
                );
            }
        }
    }
}

/// `gpu_ecc_errors_total` by type.
fn ecc(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    if !up.iter().any(|(g, _)| g.ecc_corrected.is_some()) {
        return;
    }
    enc.family(
        "gpu_ecc_errors_total",
        "Memory ECC errors since the driver was loaded (volatile counters), by type.",
        Kind::Counter,
    );
    for (g, i) in up {
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

/// `gpu_remapped_rows` by the kind of error.
fn remapped_rows(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    if !up.iter().any(|(g, _)| g.remapped_rows.is_some()) {
        return;
    }
    enc.family(
        "gpu_remapped_rows",
        "Memory rows remapped, by the kind of error that caused it.",
        Kind::Gauge,
    );
    for (g, i) in up {
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

/// `gpu_violation_seconds_total`, one series per reason the GPU reports.
fn violations(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    const NAME: &str = "gpu_violation_seconds_total";
    if !up
        .iter()
        .any(|(g, _)| g.violation_seconds.iter().any(Option::is_some))
    {
        return;
    }
    enc.family(
        NAME,
        "Time the clocks were held down since the driver was loaded, by reason.",
        Kind::Counter,
    );
    for (g, i) in up {
        for (v, reason) in g.violation_seconds.iter().zip(VIOLATION_REASONS) {
            if let Some(v) = v {
                enc.sample(
                    NAME,
                    &[("gpu", i), ("uuid", &g.uuid), ("reason", reason)],
                    *v,
                );
            }
        }
    }
}

/// `gpu_clock_event_active`, one series per known reason.
fn clock_events(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    if !up.iter().any(|(g, _)| g.clock_event_reasons.is_some()) {
        return;
    }
    enc.family(
        "gpu_clock_event_active",
        "1 while the clock event (throttle) reason holds the clocks down, by reason.",
        Kind::Gauge,
    );
    for (g, i) in up {
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

/// The XID counts and last times, lost GPUs included.
fn xids(enc: &mut Encoder<'_>, snap: &GpuSnapshot) {
    if snap.xids.is_empty() {
        return;
    }
    let uuid_of = |index: u32| snap.gpu(index).map(|g| g.uuid.as_str()).unwrap_or("");
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

/// `gpu_xid_unattributed_errors_total`: XIDs from a device handle no GPU had.
fn xids_unattributed(enc: &mut Encoder<'_>, snap: &GpuSnapshot) {
    const NAME: &str = "gpu_xid_unattributed_errors_total";
    if snap.xids_unattributed.is_empty() {
        return;
    }
    enc.family(
        NAME,
        "XID errors from a device handle that no GPU had (a GPU reset or added since the event set was built), by XID code.",
        Kind::Counter,
    );
    for (xid, n) in &snap.xids_unattributed {
        enc.sample(NAME, &[("xid", &xid.to_string())], *n as f64);
    }
}

/// `gpu_process_memory_used_bytes`, for the processes whose memory NVML can tell, per GPU
/// or per MIG device.
fn processes(enc: &mut Encoder<'_>, up: &[Up<'_>]) {
    const NAME: &str = "gpu_process_memory_used_bytes";
    if !up
        .iter()
        .any(|(g, _)| g.all_processes().any(|p| p.used_memory_bytes.is_some()))
    {
        return;
    }
    enc.family(
        NAME,
        "Device memory used by each compute process.",
        Kind::Gauge,
    );
    for u in up {
        let on_gpu = u.0.processes.iter().map(|p| (None, p));
        let on_mig =
            u.0.mig
                .iter()
                .flat_map(|m| m.processes.iter().map(move |p| (Some(m), p)));
        for (m, p) in on_gpu.chain(on_mig) {
            if let Some(b) = p.used_memory_bytes {
                let pid = p.pid.to_string();
                sample_of(
                    enc,
                    NAME,
                    u,
                    m,
                    &[("pid", &pid), ("command", &p.command)],
                    b as f64,
                );
            }
        }
    }
}

/// `gpu_last_sample_timestamp_seconds` per GPU, lost ones included: when its values were
/// last read. A GPU that stops answering (a wedged driver call) keeps its old time, and its
/// values are left out once they are three intervals old.
fn last_sample(enc: &mut Encoder<'_>, snap: &GpuSnapshot, idx: &[String]) {
    const NAME: &str = "gpu_last_sample_timestamp_seconds";
    if snap.gpus.iter().all(|g| g.sampled_at.is_none()) {
        return;
    }
    enc.family(
        NAME,
        "Unix time the GPU's values were last read.",
        Kind::Gauge,
    );
    for (g, i) in snap.gpus.iter().zip(idx) {
        if let Some(t) = g.sampled_at {
            enc.sample(NAME, &[("gpu", i), ("uuid", &g.uuid)], t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::gpu::model::{NvLinkSample, XidCount};
    use crate::expose::Dialect;
    use std::collections::BTreeMap;

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
                    sampled_at: Some(1700000000.5),
                    utilization: Some(0.5),
                    nvlinks: vec![NvLinkSample {
                        transmit_bytes: Some(2048),
                        errors: [None, None, Some(4), None],
                        ..NvLinkSample::new(3)
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
            xids_unattributed: BTreeMap::new(),
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
# TYPE gpu_nvlink_errors_total counter
gpu_nvlink_errors_total{gpu=\"0\",uuid=\"GPU-a\",link=\"3\",type=\"replay\"} 4
# TYPE gpu_xid_errors_total counter
gpu_xid_errors_total{gpu=\"1\",uuid=\"GPU-b\",xid=\"79\"} 2
# TYPE gpu_xid_last_timestamp_seconds gauge
gpu_xid_last_timestamp_seconds{gpu=\"1\",uuid=\"GPU-b\",xid=\"79\"} 1700000000
# TYPE gpu_last_sample_timestamp_seconds gauge
gpu_last_sample_timestamp_seconds{gpu=\"0\",uuid=\"GPU-a\"} 1700000000.5
"
        );
        snap.nvml_up = false;
        assert_eq!(render(&snap), "");
    }

    #[test]
    fn mig_devices_carry_the_parents_labels_and_their_instance() {
        let mut a = MigSample::new(1, 0);
        a.profile = "1g.18gb".into();
        a.memory_used_bytes = Some(5);
        a.gpm[0] = Some(0.25);
        a.processes = vec![crate::collector::gpu::model::GpuProcess {
            pid: 42,
            command: "python".into(),
            used_memory_bytes: Some(3),
        }];
        let mut b = MigSample::new(2, 0);
        b.profile = "3g.71gb".into();
        b.memory_used_bytes = Some(7);
        let snap = GpuSnapshot {
            nvml_up: true,
            gpus: vec![GpuSample {
                index: 0,
                uuid: "GPU-a".into(),
                up: true,
                power_watts: Some(100.0),
                mig_enabled: Some(true),
                mig: vec![a, b],
                ..GpuSample::default()
            }],
            ..GpuSnapshot::default()
        };
        let out = render(&snap);
        let mig = "gpu=\"0\",uuid=\"GPU-a\",gpu_instance=";
        for line in [
            "gpu_power_watts{gpu=\"0\",uuid=\"GPU-a\"} 100".to_string(),
            "gpu_mig_enabled{gpu=\"0\",uuid=\"GPU-a\"} 1".to_string(),
            format!("gpu_memory_used_bytes{{{mig}\"1\",compute_instance=\"0\",mig_profile=\"1g.18gb\"}} 5"),
            format!("gpu_memory_used_bytes{{{mig}\"2\",compute_instance=\"0\",mig_profile=\"3g.71gb\"}} 7"),
            format!("gpu_sm_active_ratio{{{mig}\"1\",compute_instance=\"0\",mig_profile=\"1g.18gb\"}} 0.25"),
            format!("gpu_process_memory_used_bytes{{{mig}\"1\",compute_instance=\"0\",mig_profile=\"1g.18gb\",pid=\"42\",command=\"python\"}} 3"),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
        }
        assert_eq!(out.matches("gpu_memory_used_bytes{").count(), 2, "{out}");
        assert_eq!(out.matches("gpu_sm_active_ratio{").count(), 1, "{out}");
        assert!(!out.contains("gpu_utilization_ratio"), "{out}");
    }
}
