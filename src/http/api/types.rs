//! The JSON API's contract: one plain struct per response body, each field documented, so
//! what `/api/v1/` promises is written down in one place and the handlers only fill them in.
//!
//! Numbers that may be NaN or infinite are [`Num`]: JSON has no NaN, so non-finite values
//! are the strings `"NaN"`, `"+Inf"`, `"-Inf"`. An absent value is `null`, never a missing key.

use std::collections::BTreeMap;

use crate::training::KeyMap;

use serde::{Serialize, Serializer};

/// A number, or its name when it is not finite: `"NaN"`, `"+Inf"` or `"-Inf"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            s.serialize_f64(v)
        }
    }
}

/// `GET /api/v1/runs`.
#[derive(Debug, Serialize)]
pub struct RunsResponse<'a> {
    /// The server's clock when the list was taken, Unix seconds (the page measures ages from it).
    pub now: f64,
    /// Every run, under the same `run` label as `/metrics`, in that label order.
    pub runs: Vec<RunBody<'a>>,
}

/// One run's latest values and state, an element of [`RunsResponse::runs`].
#[derive(Debug, Serialize)]
pub struct RunBody<'a> {
    /// The run's label, the same as `/metrics` (a writer's environment may rename a run).
    pub run: &'a str,
    /// The log file the run is read from.
    pub path: &'a str,
    /// The log format in use (`hf`, `jsonl`, ...).
    pub format: &'static str,
    /// `running`, `stalled`, `finished` or `stopped` (quiet without an end-of-training summary).
    pub state: &'static str,
    /// Whether the log was written to recently enough for the run to count as active.
    pub active: bool,
    /// Whether the end-of-training summary was seen.
    pub finished: bool,
    /// The latest step, `null` before the first.
    pub step: Option<Num>,
    /// The planned number of steps, when the log says.
    pub max_steps: Option<Num>,
    /// The latest epoch.
    pub epoch: Option<Num>,
    /// The latest training loss.
    pub loss: Option<Num>,
    /// The latest evaluation loss.
    pub eval_loss: Option<Num>,
    /// The latest learning rate.
    pub learning_rate: Option<Num>,
    /// The latest gradient norm.
    pub grad_norm: Option<Num>,
    /// The latest throughput in samples per second.
    pub samples_per_second: Option<Num>,
    /// The latest throughput in steps per second.
    pub steps_per_second: Option<Num>,
    /// The latest throughput in tokens per second.
    pub tokens_per_second: Option<Num>,
    /// Seconds left: the log's own `remaining_time`, else from steps left and steps per second.
    pub eta_seconds: Option<Num>,
    /// Records (metric lines) parsed.
    pub records: u64,
    /// Lines read.
    pub lines: u64,
    /// Malformed records and unusable rule values, as `training_parse_errors_total`.
    pub parse_errors: u64,
    /// The sum of [`RunBody::nonfinite`].
    pub nonfinite_total: u64,
    /// NaN or infinite values logged, by key.
    pub nonfinite: &'a KeyMap<u64>,
    /// Every other key's latest value, by key.
    pub metrics: BTreeMap<&'a str, Num>,
    /// When the last record was read, Unix seconds.
    pub last_record: Option<Num>,
    /// When the step last moved forward, Unix seconds.
    pub last_progress: Option<Num>,
    /// The keys with a history, in key order: each is a valid `key=` of the series endpoint.
    pub history_keys: Vec<&'a str>,
    /// Crash and error events read from the log, by kind, as `training_log_events_total`
    /// (the well-known kinds always, at 0 too; the kinds user rules declare once seen).
    pub events: BTreeMap<&'a str, u64>,
    /// The cause of the run's latest crash, `null` when the log printed no error.
    pub last_error: Option<LastErrorBody<'a>>,
    /// Set while this daemon holds the run's local processes stopped after an alert
    /// (`actions:` with `do: pause`); `null` otherwise.
    pub paused: Option<PausedBody>,
}

/// A run paused by an action, [`RunBody::paused`]. A manual resume is `kill -CONT` of the
/// PIDs, or resolving or silencing the alert.
#[derive(Debug, Serialize)]
pub struct PausedBody {
    /// The alert that paused it (its `alertname`).
    pub alert: String,
    /// The configured action's name.
    pub action: String,
    /// When, Unix seconds.
    pub since: Num,
    /// The processes held stopped.
    pub pids: Vec<u32>,
}

/// The cause of a run's latest crash, [`RunBody::last_error`]: the first specific error of
/// the crash, not the cascade after it, or the rank torchrun's root-cause block names.
#[derive(Debug, Serialize)]
pub struct LastErrorBody<'a> {
    /// The event kind: `oom`, `nccl_timeout`, `nccl_error`, `cuda_error`, `process_killed`,
    /// `exception`, or a user rule's.
    pub event: &'a str,
    /// The log line that says it, cleaned and cut to 200 bytes (without the rank).
    pub message: &'a str,
    /// The rank that printed it or that torchrun named, when known.
    pub rank: Option<u32>,
    /// The run's step when it was read.
    pub step: Option<Num>,
    /// When it was read, Unix seconds.
    pub time: Num,
}

/// `GET /api/v1/runs/{run}/series?key=K`.
#[derive(Debug, Serialize)]
pub struct SeriesResponse<'a> {
    /// The run's label, as asked.
    pub run: &'a str,
    /// The key, as asked.
    pub key: &'a str,
    /// Records per bucket of the downsampled history.
    pub stride: u32,
    /// The finite values, `[step, value]`, in step order (each bucket's low and high).
    pub points: Vec<(f64, f64)>,
    /// Steps where a NaN or infinite value was logged, `[step, value]`, in step order.
    pub nonfinite: Vec<(f64, Num)>,
}

/// The body of a `404` from the API.
#[derive(Debug, Serialize)]
pub struct ErrorResponse {
    /// What was not found, for a person to read.
    pub error: String,
}

/// `GET /api/v1/gpus`.
#[derive(Debug, Serialize)]
pub struct GpusResponse<'a> {
    /// The GPUs of the collector's latest snapshot, by index; empty when the collector is off
    /// or NVML is unavailable.
    pub gpus: Vec<GpuBody<'a>>,
}

/// One GPU, an element of [`GpusResponse::gpus`]. Values the device did not give are `null`.
#[derive(Debug, Serialize)]
pub struct GpuBody<'a> {
    /// The NVML device index.
    pub gpu: u32,
    /// The product name (empty when the device is lost).
    pub name: &'a str,
    /// The device UUID (empty when the device is lost).
    pub uuid: &'a str,
    /// Whether the device answered in the last sample.
    pub up: bool,
    /// GPU utilization, 0–1.
    pub utilization_ratio: Option<f64>,
    /// The fraction of time device memory was read or written, 0–1.
    pub memory_utilization_ratio: Option<f64>,
    /// Device memory in use, bytes (under MIG, summed over the GPU instances).
    pub memory_used_bytes: Option<u64>,
    /// Device memory in all, bytes (under MIG, summed over the GPU instances).
    pub memory_total_bytes: Option<u64>,
    /// Die temperature, °C.
    pub temperature_celsius: Option<f64>,
    /// Power draw, watts.
    pub power_watts: Option<f64>,
    /// The last hour, oldest first: `[minutes relative to now (≤ 0), utilization 0–1,
    /// memory used / total]`.
    pub history: Vec<(f64, Option<f64>, Option<f64>)>,
    /// Its MIG devices while MIG is on; empty otherwise.
    pub mig_instances: Vec<MigBody<'a>>,
}

/// One MIG device of a GPU, an element of [`GpuBody::mig_instances`].
#[derive(Debug, Serialize)]
pub struct MigBody<'a> {
    pub gpu_instance: u32,
    pub compute_instance: u32,
    /// The MIG profile, e.g. `1g.18gb`.
    pub profile: &'a str,
    /// The MIG device's `MIG-…` UUID.
    pub uuid: &'a str,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn non_finite_numbers_are_named_and_absent_values_are_null() {
        assert_eq!(s(&Num(f64::NAN)), r#""NaN""#);
        assert_eq!(s(&Num(f64::INFINITY)), r#""+Inf""#);
        assert_eq!(s(&Num(f64::NEG_INFINITY)), r#""-Inf""#);
        assert_eq!(s(&Num(1.5)), "1.5");
        assert_eq!(s(&Num(20.0)), "20.0");
        let body = SeriesResponse {
            run: "r",
            key: "loss",
            stride: 2,
            points: vec![(10.0, 2.0)],
            nonfinite: vec![(30.0, Num(f64::NAN))],
        };
        assert_eq!(
            s(&body),
            r#"{"run":"r","key":"loss","stride":2,"points":[[10.0,2.0]],"nonfinite":[[30.0,"NaN"]]}"#
        );
        let gpu = GpuBody {
            gpu: 1,
            name: "",
            uuid: "",
            up: false,
            utilization_ratio: None,
            memory_utilization_ratio: None,
            memory_used_bytes: None,
            memory_total_bytes: None,
            temperature_celsius: None,
            power_watts: None,
            history: vec![(-1.0, None, Some(0.5))],
            mig_instances: vec![],
        };
        let v: serde_json::Value = serde_json::from_str(&s(&gpu)).unwrap();
        assert_eq!(v["utilization_ratio"], serde_json::Value::Null);
        assert!(v.as_object().unwrap().contains_key("power_watts"));
        assert_eq!(v["history"], serde_json::json!([[-1.0, null, 0.5]]));
    }
}
