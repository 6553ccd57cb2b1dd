//! The JSON API behind the live page, also useful on its own:
//! `/api/v1/runs` (every run's latest values and state), `/api/v1/runs/{run}/series?key=K`
//! (one key's downsampled history by step) and `/api/v1/gpus`. The bodies are the structs of
//! [`types`]; the handlers here only fill them in from the shared state.
//!
//! JSON has no NaN: non-finite values are the strings `"NaN"`, `"+Inf"`, `"-Inf"`.

pub mod types;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::actions::Paused;
use crate::clock::unix_now;
use crate::parse::events::EventKind;
use crate::state::AppState;
use crate::sync::lock;
use crate::training::{Known, Limits, RunState};

use types::{
    ErrorResponse, GpuBody, GpusResponse, LastErrorBody, MigBody, Num, PausedBody, RunBody,
    RunsResponse, SeriesResponse,
};

/// A run with no step progress for this long while active is shown as stalled.
pub const STALL_SECONDS: f64 = 600.0;

fn opt(v: Option<f64>) -> Option<Num> {
    v.map(Num)
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

fn run_body<'a>(
    name: &'a str,
    r: &'a RunState,
    now: f64,
    limits: &Limits,
    paused: Option<&Paused>,
) -> RunBody<'a> {
    RunBody {
        run: name,
        path: &r.path,
        format: r.format.as_str(),
        state: run_state(r, now, limits),
        active: r.active(now, limits),
        finished: r.finished,
        step: opt(r.step),
        max_steps: opt(r.max_steps),
        epoch: opt(r.get(Known::Epoch)),
        loss: opt(r.get(Known::Loss)),
        eval_loss: opt(r.get(Known::EvalLoss)),
        learning_rate: opt(r.get(Known::LearningRate)),
        grad_norm: opt(r.get(Known::GradNorm)),
        samples_per_second: opt(r.get(Known::SamplesPerSecond)),
        steps_per_second: opt(r.get(Known::StepsPerSecond)),
        tokens_per_second: opt(r.get(Known::TokensPerSecond)),
        eta_seconds: opt(eta(r)),
        records: r.records,
        lines: r.lines,
        parse_errors: r.parse_errors,
        nonfinite_total: r.nonfinite.values().sum(),
        nonfinite: &r.nonfinite,
        metrics: r
            .metrics
            .iter()
            .map(|(k, v)| (k.as_str(), Num(*v)))
            .collect(),
        last_record: opt(r.last_record),
        last_progress: opt(r.last_progress),
        history_keys: r.history.keys().map(String::as_str).collect(),
        events: EventKind::ALL
            .iter()
            .map(|k| (k.as_str(), r.events[*k as usize]))
            .chain(r.rule_events.iter().map(|(k, n)| (k.as_str(), *n)))
            .collect(),
        last_error: r.last_error.as_ref().map(|e| LastErrorBody {
            event: &e.event,
            message: &e.message,
            rank: e.rank,
            step: opt(e.step),
            time: Num(e.time),
        }),
        paused: paused.map(|p| PausedBody {
            alert: p.alert.clone(),
            action: p.action.clone(),
            since: Num(p.since),
            pids: p.members.iter().map(|m| m.pid).collect(),
        }),
    }
}

/// `GET /api/v1/runs`
pub async fn runs(State(state): State<Arc<AppState>>) -> Response {
    let now = unix_now();
    let runs = lock(&state.runs);
    // the same run labels as /metrics (a writer's environment may rename a run)
    let labelled = runs.labelled();
    let actions = state.actions.as_ref().map(|a| lock(a));
    let body = RunsResponse {
        now,
        runs: labelled
            .iter()
            .map(|(k, r)| {
                let paused = actions.as_ref().and_then(|a| a.paused.get(k.as_ref()));
                run_body(k, &r.state, now, &runs.limits, paused)
            })
            .collect(),
    };
    Json(body).into_response()
}

#[derive(Deserialize)]
pub struct SeriesQuery {
    key: String,
}

fn not_found(error: String) -> Response {
    (StatusCode::NOT_FOUND, Json(ErrorResponse { error })).into_response()
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
        return not_found(format!("no run {run:?}"));
    };
    let Some(s) = r.state.history.get(&q.key) else {
        return not_found(format!("run {run:?} has no history for key {:?}", q.key));
    };
    let body = SeriesResponse {
        run: &run,
        key: &q.key,
        stride: s.stride(),
        points: s.points(),
        nonfinite: s
            .nonfinite()
            .into_iter()
            .map(|(x, y)| (x, Num(y)))
            .collect(),
    };
    Json(body).into_response()
}

/// `GET /api/v1/gpus`: the GPUs of the GPU collector's latest snapshot (none when the
/// collector is off or NVML is unavailable), each with its last hour.
pub async fn gpus(State(state): State<Arc<AppState>>) -> Response {
    let Some(gpu) = &state.gpu else {
        return Json(GpusResponse { gpus: Vec::new() }).into_response();
    };
    let snap = gpu.snapshot();
    let now = unix_now();
    let gpus = if snap.nvml_up {
        snap.gpus
            .iter()
            .map(|g| {
                let (memory_used_bytes, memory_total_bytes) = g.memory_in_use();
                GpuBody {
                    gpu: g.index,
                    name: &g.name,
                    uuid: &g.uuid,
                    up: g.up,
                    utilization_ratio: g.utilization,
                    memory_utilization_ratio: g.memory_utilization,
                    memory_used_bytes,
                    memory_total_bytes,
                    temperature_celsius: g.temperature_celsius,
                    power_watts: g.power_watts,
                    history: gpu
                        .history(g.index)
                        .into_iter()
                        .map(|(t, u, m)| ((t - now) / 60.0, u, m))
                        .collect(),
                    mig_instances: g
                        .mig
                        .iter()
                        .map(|m| MigBody {
                            gpu_instance: m.gpu_instance,
                            compute_instance: m.compute_instance,
                            profile: &m.profile,
                            uuid: &m.uuid,
                            memory_used_bytes: m.memory_used_bytes,
                            memory_total_bytes: m.memory_total_bytes,
                        })
                        .collect(),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Json(GpusResponse { gpus }).into_response()
}
