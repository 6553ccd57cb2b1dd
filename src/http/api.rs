//! The JSON API behind the live page, also useful on its own:
//! `/api/v1/runs` (every run's latest values and state), `/api/v1/runs/{run}/series?key=K`
//! (one key's downsampled history by step) and `/api/v1/gpus`.
//!
//! JSON has no NaN: non-finite values are the strings `"NaN"`, `"+Inf"`, `"-Inf"`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::unix_now;
use crate::state::AppState;
use crate::training::{lock, Known, Limits, RunState};

/// A run with no step progress for this long while active is shown as stalled.
pub const STALL_SECONDS: f64 = 600.0;

/// A number, or its name when it is not finite.
pub fn num(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        json!(v)
    }
}

fn opt(v: Option<f64>) -> Value {
    v.map(num).unwrap_or(Value::Null)
}

/// How the page should show a run: `running`, `stalled`, `finished` or `stopped` (went
/// quiet without its end-of-training summary: crashed, killed or hung).
pub fn run_state(r: &RunState, now: f64, limits: &Limits) -> &'static str {
    if r.finished {
        "finished"
    } else if !r.active(now, limits) {
        "stopped"
    } else if r.last_progress.is_some_and(|t| now - t > STALL_SECONDS) {
        "stalled"
    } else {
        "running"
    }
}

fn eta(r: &RunState) -> Option<f64> {
    if let Some(t) = r.metrics.get("remaining_time") {
        return Some(*t);
    }
    let (step, max, sps) = (r.step?, r.max_steps?, r.get(Known::StepsPerSecond)?);
    (sps > 0.0 && max >= step).then(|| (max - step) / sps)
}

fn run_json(name: &str, r: &RunState, now: f64, limits: &Limits) -> Value {
    let nonfinite: serde_json::Map<String, Value> = r
        .nonfinite
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let metrics: serde_json::Map<String, Value> = r
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), num(*v)))
        .collect();
    json!({
        "run": name,
        "path": r.path,
        "format": r.format.as_str(),
        "state": run_state(r, now, limits),
        "active": r.active(now, limits),
        "finished": r.finished,
        "step": opt(r.step),
        "max_steps": opt(r.max_steps),
        "epoch": opt(r.get(Known::Epoch)),
        "loss": opt(r.get(Known::Loss)),
        "eval_loss": opt(r.get(Known::EvalLoss)),
        "learning_rate": opt(r.get(Known::LearningRate)),
        "grad_norm": opt(r.get(Known::GradNorm)),
        "samples_per_second": opt(r.get(Known::SamplesPerSecond)),
        "steps_per_second": opt(r.get(Known::StepsPerSecond)),
        "tokens_per_second": opt(r.get(Known::TokensPerSecond)),
        "eta_seconds": opt(eta(r)),
        "records": r.records,
        "lines": r.lines,
        "parse_errors": r.parse_errors,
        "nonfinite_total": r.nonfinite.values().sum::<u64>(),
        "nonfinite": nonfinite,
        "metrics": metrics,
        "last_record": opt(r.last_record),
        "last_progress": opt(r.last_progress),
        "history_keys": r.history.keys().collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/runs`
pub async fn runs(State(state): State<Arc<AppState>>) -> Json<Value> {
    let now = unix_now();
    let runs = lock(&state.runs);
    // the same run labels as /metrics (a writer's environment may rename a run)
    let list: Vec<Value> = runs
        .labelled()
        .iter()
        .map(|(k, r)| run_json(k, &r.state, now, &runs.limits))
        .collect();
    Json(json!({ "now": now, "runs": list }))
}

#[derive(Deserialize)]
pub struct SeriesQuery {
    key: String,
}

/// `GET /api/v1/runs/{run}/series?key=K`
pub async fn series(
    State(state): State<Arc<AppState>>,
    Path(run): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Response {
    let runs = lock(&state.runs);
    let labelled = runs.labelled();
    let Some(r) = labelled.iter().find(|(k, _)| *k == run).map(|(_, r)| r) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no run {run:?}") })),
        )
            .into_response();
    };
    let Some(s) = r.state.history.get(&q.key) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("run {run:?} has no history for key {:?}", q.key) })),
        )
            .into_response();
    };
    let points: Vec<Value> = s.points().into_iter().map(|(x, y)| json!([x, y])).collect();
    let nonfinite: Vec<Value> = s
        .nonfinite()
        .into_iter()
        .map(|(x, y)| json!([x, num(y)]))
        .collect();
    Json(json!({ "run": run, "key": q.key, "stride": s.stride(), "points": points, "nonfinite": nonfinite })).into_response()
}

/// `GET /api/v1/gpus`
pub async fn gpus(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "gpus": gpus_json(&state) }))
}

/// The GPUs for the live page's JSON API, from the GPU collector's latest snapshot
/// (none when the collector is off or NVML is unavailable), each with its last hour:
/// `[minutes relative to now, utilization, memory used / total]`.
pub fn gpus_json(state: &AppState) -> Vec<serde_json::Value> {
    let Some(gpu) = &state.gpu else {
        return Vec::new();
    };
    let snap = gpu.snapshot();
    let now = unix_now();
    if !snap.nvml_up {
        return Vec::new();
    }
    snap.gpus
        .iter()
        .map(|g| {
            serde_json::json!({
                "gpu": g.index,
                "name": g.name,
                "uuid": g.uuid,
                "up": g.up,
                "utilization_ratio": g.utilization,
                "memory_utilization_ratio": g.memory_utilization,
                "memory_used_bytes": g.memory_used_bytes,
                "memory_total_bytes": g.memory_total_bytes,
                "temperature_celsius": g.temperature_celsius,
                "power_watts": g.power_watts,
                "history": gpu.history(g.index).into_iter().map(|(t, u, m)| {
                    serde_json::json!([(t - now) / 60.0, u, m])
                }).collect::<Vec<_>>(),
            })
        })
        .collect()
}
