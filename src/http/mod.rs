//! The HTTP surface: `/metrics` (Prometheus text or OpenMetrics, negotiated from `Accept`
//! with its q-values; gzip-compressed when `Accept-Encoding` allows it), `/healthz`, the
//! live page at `/` (its script and style compiled in: no CDN, no network) and the JSON API
//! under `/api/v1/`. Handlers see only the shared [`AppState`].

pub mod api;
pub mod server;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::expose::Dialect;
use crate::state::AppState;

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

/// The gzip level of `/metrics`: the fastest. On 64 runs × 512 keys of random values
/// (2.8 MB) it gives 477 KB in 50 ms where level 6 gives 444 KB in 90 ms (`gzip -1`/`-6`).
const GZIP_LEVEL: u32 = 1;

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let text = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    let dialect = negotiate(text(header::ACCEPT));
    let gzip = accepts_gzip(text(header::ACCEPT_ENCODING));
    // Rendering (megabytes at the caps) and compressing run off the async threads, so that
    // other connections are served meanwhile.
    let body = tokio::task::spawn_blocking(move || {
        let out = state.render(dialect);
        if gzip {
            compress(out.as_bytes()).ok_or(out.into_bytes())
        } else {
            Err(out.into_bytes())
        }
    })
    .await;
    let (body, encoding) = match body {
        Ok(Ok(zipped)) => (zipped, Some("gzip")),
        Ok(Err(plain)) => (plain, None),
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n").into_response(),
    };
    let mut resp = ([(header::CONTENT_TYPE, dialect.content_type())], body).into_response();
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(e) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
    }
    resp
}

fn compress(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 8),
        flate2::Compression::new(GZIP_LEVEL),
    );
    z.write_all(data).ok()?;
    z.finish().ok()
}

/// The elements of a header list (`a;q=0.5, b`): each lower-cased name and its q-value (1
/// when absent; 0 when it is not a number from 0 to 1).
fn elements(v: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    v.split(',').filter_map(|item| {
        let mut parts = item.split(';');
        let name = parts.next()?.trim().to_ascii_lowercase();
        if name.is_empty() {
            return None;
        }
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
            })
            .next()
            .map_or(1.0, |v| {
                v.parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
                    .unwrap_or(0.0)
            });
        Some((name, q))
    })
}

/// Picks the exposition dialect from `Accept` (RFC 9110 §12.5.1): each dialect takes the
/// q-value of the most specific range that matches it, and OpenMetrics is served only when
/// its q-value is above zero and above the text format's, or equal to it and asked for by
/// name (`*/*` alone gets the text format). No `Accept`: the text format.
pub fn negotiate(accept: Option<&str>) -> Dialect {
    const OPENMETRICS: &str = "application/openmetrics-text";
    const TEXT: &str = "text/plain";
    // (specificity: 3 exact, 2 type/*, 1 */*, 0 unmatched; q-value)
    let (mut om, mut text) = ((0u8, 0.0f32), (0u8, 0.0f32));
    for (range, q) in elements(accept.unwrap_or("")) {
        for (best, ty) in [(&mut om, OPENMETRICS), (&mut text, TEXT)] {
            let specificity = if range == ty {
                3
            } else if range == "*/*" {
                1
            } else if range
                .strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with('/') && ty.starts_with(prefix))
            {
                2
            } else {
                0
            };
            if specificity > best.0 {
                *best = (specificity, q);
            } else if specificity == best.0 && specificity > 0 {
                best.1 = best.1.max(q);
            }
        }
    }
    if om.1 > 0.0 && (om.1 > text.1 || (om.1 == text.1 && om.0 == 3)) {
        Dialect::OpenMetrics
    } else {
        Dialect::Text
    }
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*` with a q-value above zero).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let (mut gzip, mut any) = (None, None);
    for (coding, q) in elements(accept_encoding.unwrap_or("")) {
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => any = Some(q),
            _ => {}
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_negotiated_with_q_values() {
        let om = Dialect::OpenMetrics;
        let text = Dialect::Text;
        for (accept, want) in [
            (None, text),
            (Some(""), text),
            (Some("*/*"), text),
            (Some("text/plain"), text),
            (Some("application/openmetrics-text"), om),
            (
                Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
                om,
            ),
            // Prometheus 2.x and 3.x
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                om,
            ),
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
                     text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,*/*;q=0.1",
                ),
                om,
            ),
            (Some("application/openmetrics-text;q=0"), text),
            (Some("application/openmetrics-text; q=0.0, */*"), text),
            (
                Some("application/openmetrics-text;q=0.2,text/plain;q=0.9"),
                text,
            ),
            (Some("text/plain;q=0.1, application/*;q=0.5"), om),
            (Some("application/openmetrics-text;q=nonsense"), text),
            (Some("application/openmetrics-text, text/plain"), om),
        ] {
            assert_eq!(negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn gzip_only_when_accepted() {
        for (v, want) in [
            (None, false),
            (Some("gzip"), true),
            (Some("gzip, deflate, br"), true),
            (Some("GZIP;q=0.5"), true),
            (Some("deflate"), false),
            (Some("gzip;q=0"), false),
            (Some("*"), true),
            (Some("*;q=0"), false),
            (Some("gzip;q=0, *"), false),
            (Some("identity"), false),
        ] {
            assert_eq!(accepts_gzip(v), want, "{v:?}");
        }
        let data = "training_loss{run=\"a\"} 1.5\n".repeat(1000);
        let z = compress(data.as_bytes()).unwrap();
        assert!(z.len() * 10 < data.len(), "{} -> {}", data.len(), z.len());
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&z[..]), &mut out).unwrap();
        assert_eq!(out, data);
    }
}
