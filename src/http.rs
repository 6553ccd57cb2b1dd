//! The HTTP surface: `/metrics` (Prometheus text or OpenMetrics, by `Accept`), `/healthz`,
//! the live page at `/` (its script and style compiled in: no CDN, no network) and the JSON
//! API under `/api/v1/`. Handlers see only the shared [`AppState`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api;
use crate::app::AppState;
use crate::metrics::Dialect;

/// The router, with every route the daemon serves.
pub fn app(state: Arc<AppState>) -> Router {
    let path = state.telemetry_path.clone();
    Router::new()
        .route("/", get(page))
        .route("/ui/app.js", get(script))
        .route("/ui/style.css", get(style))
        .route("/api/v1/runs", get(api::runs))
        .route("/api/v1/runs/{run}/series", get(api::series))
        .route("/api/v1/gpus", get(api::gpus))
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

async fn page(State(state): State<Arc<AppState>>) -> Html<String> {
    Html(include_str!("page/index.html").replace("__METRICS_PATH__", &state.telemetry_path))
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("page/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("page/style.css"),
    )
}
