//! GPM (GPU Performance Monitoring, Hopper and later): the sample buffers, the pair of
//! samples kept per GPU and per GPU instance under MIG (at least 100 ms apart, NVML's
//! minimum), and the metrics of each pair, scaled to the units of [`GPM_FAMILIES`]. The
//! first sample of a pair, after a reset or a MIG change, produces nothing.

use std::time::{Duration, Instant};

use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::Nvml;

use super::{call, classify, Call, CallErrors, Class, Dev};
use crate::collector::gpu::model::{GpuSample, NvLinkSample, GPM_FAMILIES};

/// NVML's minimum time between the two GPM samples of a pair.
const GPM_MIN_SPACING: Duration = Duration::from_millis(100);

/// The NVML metric ids of [`GPM_FAMILIES`], in its order.
const GPM_IDS: [u32; GPM_FAMILIES.len()] = {
    use nvml_wrapper_sys::bindings::*;
    [
        nvmlGpmMetricId_t_NVML_GPM_METRIC_SM_UTIL,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_SM_OCCUPANCY,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_ANY_TENSOR_UTIL,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_DRAM_BW_UTIL,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_GRAPHICS_UTIL,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_FP16_UTIL,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_FP32_UTIL,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_FP64_UTIL,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_PCIE_TX_PER_SEC,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_PCIE_RX_PER_SEC,
    ]
};

/// One GPM sample buffer, freed through the checked symbol when dropped (nvml-wrapper's
/// `GpmSample` frees through an unchecked one).
struct GpmBuf<'n> {
    nvml: &'n Nvml,
    raw: nvml_wrapper_sys::bindings::nvmlGpmSample_t,
}

// SAFETY: a sample buffer is plain memory owned by this value, used by one thread at a time.
unsafe impl Send for GpmBuf<'_> {}

impl<'n> GpmBuf<'n> {
    fn alloc(nvml: &'n Nvml) -> Result<Self, NvmlError> {
        // every GPM function used must be there before a buffer exists to be freed
        let lib = nvml.lib();
        nvml_sym(lib.nvmlGpmSampleFree.as_ref())?;
        nvml_sym(lib.nvmlGpmSampleGet.as_ref())?;
        nvml_sym(lib.nvmlGpmMetricsGet.as_ref())?;
        let alloc = nvml_sym(lib.nvmlGpmSampleAlloc.as_ref())?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        unsafe { nvml_try(alloc(&mut raw))? };
        Ok(GpmBuf { nvml, raw })
    }
}

impl Drop for GpmBuf<'_> {
    fn drop(&mut self) {
        if let Ok(free) = nvml_sym(self.nvml.lib().nvmlGpmSampleFree.as_ref()) {
            // SAFETY: a buffer allocated by nvmlGpmSampleAlloc, freed once.
            let _ = unsafe { free(self.raw) };
        }
    }
}

/// The two GPM buffers of a GPU, or of a GPU instance under MIG: the previous sample and
/// the one to take next.
pub(super) struct Gpm<'n> {
    bufs: [GpmBuf<'n>; 2],
    /// Which buffer holds the previous sample, and when it was taken.
    prev: Option<(usize, Instant)>,
    /// The values of the last pair, served while the next pair is under 100 ms apart.
    last: [Option<f64>; GPM_FAMILIES.len()],
    /// Per NVLink, transmit and receive bytes/s of the last pair (none for a GPU instance).
    last_links: Vec<(Option<f64>, Option<f64>)>,
}

impl<'n> Gpm<'n> {
    /// Two new buffers, no sample yet.
    fn alloc(nvml: &'n Nvml) -> Result<Self, NvmlError> {
        Ok(Gpm {
            bufs: [GpmBuf::alloc(nvml)?, GpmBuf::alloc(nvml)?],
            prev: None,
            last: [None; GPM_FAMILIES.len()],
            last_links: Vec::new(),
        })
    }

    /// A reset: the next sample starts a new pair and nothing is served until it is done.
    pub(super) fn forget(&mut self) {
        self.prev = None;
        self.last = [None; GPM_FAMILIES.len()];
        self.last_links.clear();
    }

    /// The buffer the next sample goes into (the one not holding the previous sample), or
    /// `None` while the previous sample is under 100 ms old: the last values are served
    /// meanwhile.
    fn next(&self, now: Instant) -> Option<nvml_wrapper_sys::bindings::nvmlGpmSample_t> {
        if gpm_step(self.prev.map(|(_, t)| t), now) == GpmStep::Wait {
            return None;
        }
        Some(self.bufs[self.prev.map_or(0, |(k, _)| 1 - k)].raw)
    }

    /// Records whether the sample into [`Gpm::next`]'s buffer was taken at `now`, and
    /// returns the (older, newer) samples of the pair whose metrics are due, if it completes
    /// one. A failed sample drops the pair.
    fn taken(
        &mut self,
        ok: bool,
        now: Instant,
    ) -> Option<(
        nvml_wrapper_sys::bindings::nvmlGpmSample_t,
        nvml_wrapper_sys::bindings::nvmlGpmSample_t,
    )> {
        if !ok {
            self.forget();
            return None;
        }
        let next = self.prev.map_or(0, |(k, _)| 1 - k);
        let pair = self
            .prev
            .map(|(k, _)| (self.bufs[k].raw, self.bufs[next].raw));
        self.prev = Some((next, now));
        pair
    }
}

/// What to do with the GPM buffers now: take no sample (the previous one is under 100 ms
/// old: serve the last values), take the first of a pair, or take one and compute the pair.
#[derive(Debug, PartialEq)]
enum GpmStep {
    Wait,
    First,
    Pair,
}

fn gpm_step(prev: Option<Instant>, now: Instant) -> GpmStep {
    match prev {
        None => GpmStep::First,
        Some(t) if now.duration_since(t) < GPM_MIN_SPACING => GpmStep::Wait,
        Some(_) => GpmStep::Pair,
    }
}

/// Whether GPM can be sampled on this GPU: its support asked once (absent, with one log
/// line saying why, where NVML says no or refuses) and its buffers allocated.
pub(super) fn gpm_ready<'n>(
    nvml: &'n Nvml,
    dev: &mut Dev<'n>,
    errors: &CallErrors,
    lost: &mut bool,
) -> bool {
    if dev.gpm.is_none() {
        let any_absent = Call::GpmSupport.bit() | Call::GpmSample.bit() | Call::GpmMetrics.bit();
        if dev.absent & any_absent != 0 {
            return false;
        }
        let supported = call(dev, errors, lost, Call::GpmSupport, |d| {
            let sym = nvml_sym(nvml.lib().nvmlGpmQueryDeviceSupport.as_ref())?;
            // SAFETY: a plain C struct for which all-zero bytes are valid.
            let mut q: nvml_wrapper_sys::bindings::nvmlGpmSupport_t = unsafe { std::mem::zeroed() };
            q.version = nvml_wrapper_sys::bindings::NVML_GPM_SUPPORT_VERSION;
            // SAFETY: a live device handle and a valid, versioned out-struct.
            unsafe { nvml_try(sym(d.handle(), &mut q))? };
            if q.isSupportedDevice == 0 {
                return Err(NvmlError::NotSupported);
            }
            Ok(())
        });
        if supported.is_none() {
            return false;
        }
        match Gpm::alloc(nvml) {
            Ok(g) => {
                dev.gpm = Some(g);
                tracing::info!(gpu = dev.identity.index, "GPM profiling metrics on");
            }
            Err(e) => {
                dev.absent |= Call::GpmSupport.bit();
                dev.absent_found();
                tracing::info!(
                    gpu = dev.identity.index,
                    "GPM profiling metrics left out: {e}"
                );
                return false;
            }
        }
    }
    true
}

/// GPM on this GPU ([`gpm_ready`]), a sample per cycle at least 100 ms after the previous,
/// and the metrics of each pair. The first sample of a pair produces nothing.
pub(super) fn gpm<'n>(
    nvml: &'n Nvml,
    dev: &mut Dev<'n>,
    errors: &CallErrors,
    lost: &mut bool,
    s: &mut GpuSample,
) {
    if !gpm_ready(nvml, dev, errors, lost) {
        return;
    }
    let Some(mut g) = dev.gpm.take() else {
        return;
    };
    let now = Instant::now();
    if let Some(raw) = g.next(now) {
        let taken = call(dev, errors, lost, Call::GpmSample, |d| {
            let sym = nvml_sym(nvml.lib().nvmlGpmSampleGet.as_ref())?;
            // SAFETY: a live device handle and a live sample buffer.
            unsafe { nvml_try(sym(d.handle(), raw)) }
        });
        if let Some((s1, s2)) = g.taken(taken.is_some(), now) {
            let links = dev.links.min(GPM_MAX_LINKS);
            (g.last, g.last_links) = call(dev, errors, lost, Call::GpmMetrics, |_| {
                gpm_metrics(nvml, s1, s2, links)
            })
            .unwrap_or(([None; GPM_FAMILIES.len()], Vec::new()));
        }
    }
    s.gpm = g.last;
    for (link, (tx, rx)) in (0u32..).zip(&g.last_links) {
        if tx.is_none() && rx.is_none() {
            continue;
        }
        let entry = match s.nvlinks.iter().position(|n| n.link == link) {
            Some(k) => &mut s.nvlinks[k],
            None => {
                s.nvlinks.push(NvLinkSample::new(link));
                s.nvlinks.last_mut().expect("just pushed")
            }
        };
        entry.transmit_bytes_per_second = *tx;
        entry.receive_bytes_per_second = *rx;
    }
    if dev.absent & (Call::GpmSample.bit() | Call::GpmMetrics.bit()) == 0 {
        dev.gpm = Some(g);
    }
}

/// The GPM values of GPU instance `gi` (`nvmlGpmMigSampleGet` on the parent): a sample per
/// cycle at least 100 ms after the previous, and the metrics of each pair; nothing from the
/// first sample of an instance, or after a failed one. An instance whose samples NVML does
/// not answer (not supported, refused) is left out until the next re-probe; the others
/// are still sampled.
pub(super) fn mig_gpm<'n>(
    nvml: &'n Nvml,
    dev: &mut Dev<'n>,
    errors: &CallErrors,
    lost: &mut bool,
    gi: u32,
) -> [Option<f64>; GPM_FAMILIES.len()] {
    const NONE: [Option<f64>; GPM_FAMILIES.len()] = [None; GPM_FAMILIES.len()];
    if dev.absent & (Call::GpmMigSample.bit() | Call::GpmMetrics.bit()) != 0
        || dev.mig_gpm_absent.contains(&gi)
    {
        return NONE;
    }
    let mut g = match dev.mig_gpm.remove(&gi) {
        Some(g) => g,
        None => match Gpm::alloc(nvml) {
            Ok(g) => g,
            Err(e) => {
                errors.count(Call::GpmMigSample);
                if dev.warned & Call::GpmMigSample.bit() == 0 {
                    dev.warned |= Call::GpmMigSample.bit();
                    tracing::warn!(
                        gpu = dev.identity.index,
                        gpu_instance = gi,
                        "cannot allocate GPM samples for a MIG instance: {e}"
                    );
                }
                return NONE;
            }
        },
    };
    let now = Instant::now();
    if let Some(raw) = g.next(now) {
        let taken = call(dev, errors, lost, Call::GpmMigSample, |d| {
            let sym = nvml_sym(nvml.lib().nvmlGpmMigSampleGet.as_ref())?;
            // SAFETY: a live device handle and a live sample buffer.
            match unsafe { nvml_try(sym(d.handle(), gi, raw)) } {
                Err(e) if matches!(classify(&e), Class::Absent | Class::Denied) => Ok(Some(e)),
                r => r.map(|()| None),
            }
        });
        let taken = match taken {
            Some(Some(e)) => {
                dev.mig_gpm_absent.insert(gi);
                dev.absent_found();
                if dev.logged & Call::GpmMigSample.bit() == 0 {
                    dev.logged |= Call::GpmMigSample.bit();
                    tracing::info!(
                        gpu = dev.identity.index,
                        gpu_instance = gi,
                        "GPM not available on this MIG instance, its GPM series are left out (asked again every {:?}): {e}",
                        dev.reprobe
                    );
                }
                return NONE;
            }
            t => t.is_some(),
        };
        if let Some((s1, s2)) = g.taken(taken, now) {
            g.last = call(dev, errors, lost, Call::GpmMetrics, |_| {
                gpm_metrics(nvml, s1, s2, 0)
            })
            .map_or(NONE, |(v, _)| v);
        }
    }
    let out = g.last;
    dev.mig_gpm.insert(gi, g);
    out
}

/// NVLinks with their own GPM rate metrics (`NVML_GPM_METRIC_NVLINK_L0..L17_*_PER_SEC`).
const GPM_MAX_LINKS: u32 = 18;

/// GPM's metric ids of link `l`'s receive and transmit rates (MiB/s).
const fn gpm_link_ids(l: u32) -> (u32, u32) {
    use nvml_wrapper_sys::bindings::*;
    (
        nvmlGpmMetricId_t_NVML_GPM_METRIC_NVLINK_L0_RX_PER_SEC + 2 * l,
        nvmlGpmMetricId_t_NVML_GPM_METRIC_NVLINK_L0_TX_PER_SEC + 2 * l,
    )
}

/// Per-link `(transmit, receive)` bytes/s.
type LinkRates = Vec<(Option<f64>, Option<f64>)>;

/// `nvmlGpmMetricsGet` for the metrics of [`GPM_FAMILIES`] and the rates of `links` NVLinks
/// between two samples, scaled; a metric NVML does not answer is `None`.
fn gpm_metrics(
    nvml: &Nvml,
    s1: nvml_wrapper_sys::bindings::nvmlGpmSample_t,
    s2: nvml_wrapper_sys::bindings::nvmlGpmSample_t,
    links: u32,
) -> Result<([Option<f64>; GPM_FAMILIES.len()], LinkRates), NvmlError> {
    use nvml_wrapper_sys::bindings::{nvmlGpmMetricsGet_t, NVML_GPM_METRICS_GET_VERSION};
    let sym = nvml_sym(nvml.lib().nvmlGpmMetricsGet.as_ref())?;
    // SAFETY: a plain C struct for which all-zero bytes are valid (null name pointers).
    let mut req: Box<nvmlGpmMetricsGet_t> = Box::new(unsafe { std::mem::zeroed() });
    req.version = NVML_GPM_METRICS_GET_VERSION;
    let ids: Vec<u32> = GPM_IDS
        .into_iter()
        .chain((0..links).flat_map(|l| {
            let (rx, tx) = gpm_link_ids(l);
            [tx, rx]
        }))
        .collect();
    req.numMetrics = ids.len() as u32;
    req.sample1 = s1;
    req.sample2 = s2;
    for (m, id) in req.metrics.iter_mut().zip(&ids) {
        m.metricId = *id;
    }
    // SAFETY: a valid, versioned request naming two live samples.
    unsafe { nvml_try(sym(&mut *req))? };
    let value = |m: &nvml_wrapper_sys::bindings::nvmlGpmMetric_t, scale: f64| {
        (m.nvmlReturn == 0 && m.value.is_finite() && m.value >= 0.0).then_some(m.value * scale)
    };
    let mut out = [None; GPM_FAMILIES.len()];
    for (k, m) in req.metrics.iter().take(GPM_IDS.len()).enumerate() {
        out[k] = value(m, GPM_FAMILIES[k].2);
    }
    let rates = req.metrics[GPM_IDS.len()..ids.len()]
        .chunks(2)
        .map(|p| (value(&p[0], 1_048_576.0), value(&p[1], 1_048_576.0)))
        .collect();
    Ok((out, rates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpm_pairs_are_at_least_100_ms_apart() {
        let t = Instant::now();
        assert_eq!(gpm_step(None, t), GpmStep::First);
        assert_eq!(
            gpm_step(Some(t), t + Duration::from_millis(99)),
            GpmStep::Wait
        );
        assert_eq!(
            gpm_step(Some(t), t + Duration::from_millis(100)),
            GpmStep::Pair
        );
    }
}
