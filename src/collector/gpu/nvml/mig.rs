//! MIG: the mode of a GPU, followed from cycle to cycle, and its MIG devices, each read into
//! a plain [`MigSample`] (identity, memory, processes and the GPM values of its GPU
//! instance).

use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::{Device, Nvml};

use std::collections::HashMap;

use super::gpm::{gpm_ready, mig_gpm};
use super::{call, compute_processes, Call, CallErrors, Dev, ProcessNames};
use crate::collector::gpu::model::{MigSample, GPM_FAMILIES};

/// Reads the MIG mode (`None`: the GPU has none) and follows a change of it. A failed read
/// keeps the mode last read.
pub(super) fn mig_mode(dev: &mut Dev<'_>, errors: &CallErrors, lost: &mut bool) -> Option<bool> {
    let read = call(dev, errors, lost, Call::MigMode, |d| d.mig_mode());
    let absent = dev.absent & Call::MigMode.bit() != 0;
    let on = match read {
        Some(m) => m.current == nvml_wrapper_sys::bindings::NVML_DEVICE_MIG_ENABLE,
        None if absent => false,
        None => dev.mig,
    };
    if on != dev.mig {
        dev.mig_changed(on);
    }
    (!absent).then_some(on)
}

/// The MIG profile a MIG device's name ends with: `1g.18gb` of `NVIDIA H200 MIG 1g.18gb`,
/// `1c.3g.20gb` of `NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb`; empty when the name names none.
fn mig_profile(name: &str) -> &str {
    name.rsplit_once("MIG ")
        .and_then(|(_, p)| p.split_whitespace().next())
        .unwrap_or("")
}

/// `nvmlDeviceGetGpuInstanceId` or (`compute`) `nvmlDeviceGetComputeInstanceId` of a MIG
/// device.
fn instance_id(nvml: &Nvml, m: &Device<'_>, compute: bool) -> Result<u32, NvmlError> {
    let lib = nvml.lib();
    let sym = if compute {
        nvml_sym(lib.nvmlDeviceGetComputeInstanceId.as_ref())?
    } else {
        nvml_sym(lib.nvmlDeviceGetGpuInstanceId.as_ref())?
    };
    let mut id = 0;
    // SAFETY: a live MIG device handle and a valid out-pointer.
    unsafe { nvml_try(sym(m.handle(), &mut id))? };
    Ok(id)
}

/// The MIG devices of a GPU with MIG on: every slot up to NVML's maximum, empty slots
/// (`NOT_FOUND`) skipped, and per device its ids, profile, UUID, memory, compute processes
/// and its GPU instance's GPM values. A device whose ids cannot be read is left out; a
/// value that cannot be read leaves only that value out.
pub(super) fn mig_instances<'n>(
    nvml: &'n Nvml,
    dev: &mut Dev<'n>,
    errors: &CallErrors,
    lost: &mut bool,
    names: &mut ProcessNames,
) -> Vec<MigSample> {
    let Some(slots) = call(dev, errors, lost, Call::MigCount, |d| d.mig_device_count()) else {
        return Vec::new();
    };
    let gpm_on = gpm_ready(nvml, dev, errors, lost);
    let mut out = Vec::new();
    // GPM is per GPU instance: one pair per instance and cycle, shared by its compute
    // instances.
    let mut gpm_of: HashMap<u32, [Option<f64>; GPM_FAMILIES.len()]> = HashMap::new();
    for slot in 0..slots.min(64) {
        let got = call(dev, errors, lost, Call::MigHandle, |d| {
            match d.mig_device_by_index(slot) {
                Err(NvmlError::NotFound) => Ok(None),
                r => r.map(Some),
            }
        });
        let Some(Some(m)) = got else { continue };
        let ids = call(dev, errors, lost, Call::GpuInstanceId, |_| {
            instance_id(nvml, &m, false)
        })
        .and_then(|gi| {
            call(dev, errors, lost, Call::ComputeInstanceId, |_| {
                instance_id(nvml, &m, true)
            })
            .map(|ci| (gi, ci))
        });
        let Some((gi, ci)) = ids else { continue };
        let mut x = MigSample::new(gi, ci);
        if let Some(n) = call(dev, errors, lost, Call::Name, |_| m.name()) {
            x.profile = mig_profile(&n).to_string();
        }
        x.uuid = call(dev, errors, lost, Call::Uuid, |_| m.uuid()).unwrap_or_default();
        if let Some(mem) = call(dev, errors, lost, Call::Memory, |_| m.memory_info()) {
            x.memory_used_bytes = Some(mem.used);
            x.memory_free_bytes = Some(mem.free);
            x.memory_total_bytes = Some(mem.total);
            x.memory_reserved_bytes = Some(mem.reserved);
        }
        if let Some(procs) = call(dev, errors, lost, Call::Processes, |_| {
            m.running_compute_processes()
        }) {
            x.processes = compute_processes(nvml, dev, errors, names, procs);
        }
        if gpm_on {
            x.gpm = *gpm_of
                .entry(gi)
                .or_insert_with(|| mig_gpm(nvml, dev, errors, lost, gi));
        }
        out.push(x);
        if *lost {
            break;
        }
    }
    dev.mig_gpm.retain(|gi, _| gpm_of.contains_key(gi));
    dev.mig_gpm_absent.retain(|gi| gpm_of.contains_key(gi));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mig_profile_is_the_word_after_mig_in_the_name() {
        assert_eq!(mig_profile("NVIDIA H200 MIG 1g.18gb"), "1g.18gb");
        assert_eq!(mig_profile("NVIDIA H100 80GB HBM3 MIG 3g.40gb"), "3g.40gb");
        assert_eq!(
            mig_profile("NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb"),
            "1c.3g.20gb"
        );
        assert_eq!(
            mig_profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me"),
            "1g.10gb+me"
        );
        assert_eq!(mig_profile("A100-SXM4-40GB MIG 2g.10gb Device"), "2g.10gb");
        assert_eq!(mig_profile("NVIDIA H200"), "");
        assert_eq!(mig_profile("NVIDIA H200 MIG "), "");
        assert_eq!(mig_profile(""), "");
    }
}
