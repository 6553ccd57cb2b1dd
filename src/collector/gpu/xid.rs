//! XID errors: the driver's critical error events, counted per GPU and XID code.
//!
//! Events are waited for in a thread of their own, apart from the sampling cycle, and are
//! counted, not overwritten, so that a scrape sees every one since the start. The waiting
//! itself is NVML's ([`EventSource`] is implemented by the NVML module); this module keeps
//! the counts and the loop, which knows nothing of NVML.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::model::XidCount;
use crate::clock::unix_now;
use crate::sync::lock;

/// What one wait for an event brought.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Wait {
    /// An XID error on the GPU of this NVML index.
    Xid { gpu: u32, xid: u64 },
    /// An XID error from a device handle not in the set's GPUs (one reset or added since
    /// the set was built): counted apart, not dropped.
    Unknown { xid: u64 },
    /// The wait timed out, or the event was not an XID error.
    Nothing,
    /// The wait failed (already counted by the source), with why.
    Failed(String),
}

/// Where XID events come from.
pub(super) trait EventSource {
    /// Waits up to `timeout_ms` for the next event.
    fn wait(&mut self, timeout_ms: u32) -> Wait;
}

/// The XID errors seen so far, by `(gpu index, xid)`, and those of unknown devices by xid.
#[derive(Debug, Default)]
pub(super) struct Xids(
    Mutex<BTreeMap<(u32, u64), XidCount>>,
    Mutex<BTreeMap<u64, u64>>,
    /// The last XID per `(gpu, xid)` and where it came from, for [`Xids::record_from`].
    Mutex<BTreeMap<(u32, u64), (Source, f64)>>,
);

/// Where an XID was read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Source {
    Nvml,
    KernelLog,
}

/// Seconds within which the same XID on the same GPU from the other source is the same
/// event.
const SAME_EVENT_SECONDS: f64 = 5.0;

impl Xids {
    /// Counts one XID error on `gpu`, arrived at Unix time `now`.
    pub(super) fn record(&self, gpu: u32, xid: u64, now: f64) {
        let mut x = lock(&self.0);
        let e = x.entry((gpu, xid)).or_insert(XidCount {
            count: 0,
            last_seconds: 0.0,
        });
        e.count += 1;
        e.last_seconds = now;
    }

    /// Counts one XID error on `gpu` read from `source`, unless the other source reported
    /// the same XID on the same GPU less than 5 s before (then it is that event). False when
    /// it was not counted.
    pub(super) fn record_from(&self, gpu: u32, xid: u64, source: Source, now: f64) -> bool {
        {
            let mut last = lock(&self.2);
            if let Some((other, t)) = last.get(&(gpu, xid)).copied() {
                if other != source && now - t < SAME_EVENT_SECONDS {
                    last.remove(&(gpu, xid));
                    return false;
                }
            }
            last.insert((gpu, xid), (source, now));
        }
        self.record(gpu, xid, now);
        true
    }

    /// Counts one XID error from a device handle no GPU has.
    pub(super) fn record_unknown(&self, xid: u64) {
        *lock(&self.1).entry(xid).or_default() += 1;
    }

    /// The counts of XID errors from unknown devices, by xid.
    pub(super) fn unknown(&self) -> BTreeMap<u64, u64> {
        lock(&self.1).clone()
    }

    /// The counts so far; `None` when there are none.
    pub(super) fn counts(&self) -> Option<BTreeMap<(u32, u64), XidCount>> {
        let x = lock(&self.0);
        (!x.is_empty()).then(|| x.clone())
    }
}

/// Waits for XID events and counts them while `go_on` says so. A failed wait is logged
/// (once while `warned`) and ends the watch, so that the caller builds the event set again.
pub(super) fn watch(
    events: &mut dyn EventSource,
    xids: &Xids,
    go_on: &dyn Fn() -> bool,
    warned: &mut bool,
) {
    while go_on() {
        match events.wait(200) {
            Wait::Xid { gpu, xid } => {
                if xids.record_from(gpu, xid, Source::Nvml, unix_now()) {
                    tracing::warn!(gpu, xid, "XID error");
                }
            }
            Wait::Unknown { xid } => {
                tracing::warn!(xid, "XID error from a device handle no GPU has (counted in gpu_xid_unattributed_errors_total)");
                xids.record_unknown(xid);
            }
            Wait::Nothing => {}
            Wait::Failed(e) => {
                if !*warned {
                    *warned = true;
                    tracing::warn!("waiting for XID events failed (logged once), the event set is built again: {e}");
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Waker;
    use std::collections::VecDeque;

    /// Plays back a script of waits, then stops the loop.
    struct Script<'a> {
        waits: VecDeque<Wait>,
        stop: &'a Waker,
        calls: usize,
    }

    impl EventSource for Script<'_> {
        fn wait(&mut self, _timeout_ms: u32) -> Wait {
            self.calls += 1;
            self.waits.pop_front().unwrap_or_else(|| {
                self.stop.stop();
                Wait::Nothing
            })
        }
    }

    #[test]
    fn an_xid_from_both_sources_counts_once() {
        let x = Xids::default();
        assert!(x.record_from(0, 79, Source::KernelLog, 100.0));
        assert!(!x.record_from(0, 79, Source::Nvml, 101.0), "the same event");
        assert!(x.record_from(0, 79, Source::Nvml, 102.0), "a second event");
        assert!(
            x.record_from(0, 79, Source::Nvml, 102.5),
            "same source: another event"
        );
        assert!(
            x.record_from(0, 79, Source::KernelLog, 110.0),
            "too late to be the same"
        );
        assert!(x.record_from(1, 79, Source::Nvml, 110.5), "another GPU");
        let c = x.counts().unwrap();
        assert_eq!(c[&(0, 79)].count, 4);
        assert_eq!(c[&(1, 79)].count, 1);
    }

    #[test]
    fn xids_are_counted_per_gpu_and_code_across_timeouts_and_failures() {
        let stop = Waker::new();
        let xids = Xids::default();
        assert_eq!(xids.counts(), None);
        let mut script = Script {
            waits: VecDeque::from([
                Wait::Xid { gpu: 1, xid: 79 },
                Wait::Nothing,
                Wait::Failed("unknown error".into()),
                Wait::Xid { gpu: 1, xid: 79 },
                Wait::Unknown { xid: 79 },
                Wait::Xid { gpu: 0, xid: 31 },
            ]),
            stop: &stop,
            calls: 0,
        };
        let before = unix_now();
        let mut warned = false;
        let go_on = || !stop.is_stopped();
        watch(&mut script, &xids, &go_on, &mut warned);
        // the failed wait ended the watch, for the caller to build the set again
        assert_eq!(script.calls, 3);
        assert!(warned);
        watch(&mut script, &xids, &go_on, &mut warned);
        // every scripted wait was made, and the loop ended on the stop
        assert_eq!(script.calls, 7);
        assert_eq!(xids.unknown(), BTreeMap::from([(79, 1)]));
        let counts = xids.counts().unwrap();
        assert_eq!(
            counts.keys().copied().collect::<Vec<_>>(),
            vec![(0, 31), (1, 79)]
        );
        assert_eq!(counts[&(1, 79)].count, 2);
        assert_eq!(counts[&(0, 31)].count, 1);
        assert!(counts[&(1, 79)].last_seconds >= before);
    }
}
