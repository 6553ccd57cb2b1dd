//! The HTTP surface: `/metrics` (Prometheus text or OpenMetrics, by `Accept`), `/healthz`
//! and a landing page at `/`. Handlers see only the shared [`AppState`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;
use crate::metrics::Dialect;

/// The router, with every route the daemon serves.
pub fn app(state: Arc<AppState>) -> Router {
    let path = state.telemetry_path.clone();
    Router::new()
        .route("/", get(landing))
        .route(&path, get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let dialect = Dialect::from_accept(accept);
    let body = state.render(dialect);
    ([(header::CONTENT_TYPE, dialect.content_type())], body).into_response()
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn landing(State(state): State<Arc<AppState>>) -> Html<String> {
    let path = &state.telemetry_path;
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>gpu-train-exporter</title></head>\
         <body><h1>gpu-train-exporter</h1><p>Version {}</p><ul><li><a href=\"{path}\">Metrics</a></li>\
         <li><a href=\"/healthz\">Health</a></li></ul></body></html>",
        env!("CARGO_PKG_VERSION")
    ))
}
