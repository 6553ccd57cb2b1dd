//! The JSON API through the router (axum's `oneshot`, no socket).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gpu_train_exporter::config::{Config, Flags};
use gpu_train_exporter::parse::Format;
use gpu_train_exporter::state::AppState;
use gpu_train_exporter::tail::Sink;
use gpu_train_exporter::training::lock;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

fn state_with(run: &str, lines: &[&str]) -> Arc<AppState> {
    let config = Config::build(&Flags::default(), Default::default()).unwrap();
    let state = Arc::new(AppState::new(&config));
    {
        let mut runs = lock(&state.runs);
        assert!(runs.open(run, std::path::Path::new("/logs/x.log"), &Format::Auto));
        let now = gpu_train_exporter::clock::unix_now();
        for l in lines {
            runs.line(run, l.as_bytes(), now);
        }
    }
    state
}

async fn get(state: &Arc<AppState>, uri: &str) -> (StatusCode, Value) {
    let resp = gpu_train_exporter::http::app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn runs_lists_latest_values_and_state() {
    let state = state_with(
        "sft/v0",
        &[
            "{'loss': 2.0, 'learning_rate': 1e-05, 'global_step/max_steps': '10/100', 'train_speed(iter/s)': 2.0}",
            "{'loss': 'nan', 'grad_norm': 'nan', 'global_step/max_steps': '20/100', 'train_speed(iter/s)': 2.0}",
            "{'eval_loss': 1.5, 'global_step/max_steps': '20/100'}",
        ],
    );
    let (status, v) = get(&state, "/api/v1/runs").await;
    assert_eq!(status, StatusCode::OK);
    let run = &v["runs"][0];
    assert_eq!(run["run"], "sft/v0");
    assert_eq!(run["state"], "running");
    assert_eq!(run["loss"], "NaN");
    assert_eq!(run["eval_loss"], 1.5);
    assert_eq!(run["step"], 20.0);
    assert_eq!(run["max_steps"], 100.0);
    assert_eq!(run["nonfinite_total"], 2);
    assert_eq!(run["eta_seconds"], 40.0);
    assert_eq!(run["records"], 3);
    let keys: Vec<&str> = run["history_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"loss") && keys.contains(&"eval_loss"),
        "{keys:?}"
    );
    // no error printed: the counters at 0, no cause
    assert_eq!(run["events"]["oom"], 0);
    assert_eq!(run["events"]["exception"], 0);
    assert!(run["last_error"].is_null());
}

#[tokio::test]
async fn runs_carry_the_cause_of_the_crash() {
    let state = state_with(
        "ddp",
        &[
            "{'loss': 2.0, 'global_step/max_steps': '137/300'}",
            "[rank1]: Traceback (most recent call last):",
            "[rank1]:   File \"/w/train.py\", line 9, in <module>",
            "[rank1]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB.",
            "[rank0]: Traceback (most recent call last):",
            "[rank0]: RuntimeError: Connection closed by peer [10.0.0.2]:29681",
        ],
    );
    let (_, v) = get(&state, "/api/v1/runs").await;
    let run = &v["runs"][0];
    assert_eq!(run["events"]["oom"], 1);
    assert_eq!(run["events"]["exception"], 1);
    let e = &run["last_error"];
    assert_eq!(e["event"], "oom");
    assert_eq!(e["rank"], 1);
    assert_eq!(e["step"], 137.0);
    assert_eq!(
        e["message"],
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB."
    );
    assert!(e["time"].as_f64().unwrap() > 1.0e9);
}

#[tokio::test]
async fn series_by_step_with_nan_markers_and_encoded_run_names() {
    let state = state_with(
        "sft/v0",
        &[
            "{'loss': 2.0, 'global_step/max_steps': '10/100'}",
            "{'loss': 1.5, 'global_step/max_steps': '20/100'}",
            "{'loss': 'inf', 'global_step/max_steps': '30/100'}",
        ],
    );
    let (status, v) = get(&state, "/api/v1/runs/sft%2Fv0/series?key=loss").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["points"], serde_json::json!([[10.0, 2.0], [20.0, 1.5]]));
    assert_eq!(v["nonfinite"], serde_json::json!([[30.0, "+Inf"]]));
    let (status, _) = get(&state, "/api/v1/runs/nope/series?key=loss").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&state, "/api/v1/runs/sft%2Fv0/series?key=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn finished_runs_are_finished() {
    let state = state_with(
        "r",
        &[
            "{'loss': 2.0, 'step': 1}",
            "{'train_runtime': 5.0, 'train_loss': 2.0}",
        ],
    );
    let (_, v) = get(&state, "/api/v1/runs").await;
    assert_eq!(v["runs"][0]["state"], "finished");
    assert_eq!(v["runs"][0]["active"], false);
}

#[tokio::test]
async fn page_and_assets_are_compiled_in() {
    let config = Config::build(&Flags::default(), Default::default()).unwrap();
    let state = Arc::new(AppState::new(&config));
    for (uri, ctype, needle) in [
        ("/", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "/api/v1/runs"),
        ("/ui/style.css", "text/css", ".runs {"),
    ] {
        let resp = gpu_train_exporter::http::app(state.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(ctype));
        let body = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(body.contains(needle), "{uri}");
        // the SVG namespace is a name, not a request
        let rest = body.replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !rest.contains("http://") && !rest.contains("https://"),
            "{uri} must not load anything from the network"
        );
    }
}
