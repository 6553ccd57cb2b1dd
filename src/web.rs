//! The listener's security: the `--web.config.file` of the Prometheus exporter-toolkit
//! (TLS with rustls, optional client certificates, bcrypt basic auth, extra response
//! headers), and the limits that keep a misbehaving client from holding the daemon: a
//! deadline for the TLS handshake and request headers (no slowloris), a bounded number of
//! connections served at once, and a bounded connection lifetime.
//!
//! The file is the one node_exporter users already have:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/gte/tls.crt
//!   key_file: /etc/gte/tls.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: /etc/gte/ca.crt                # with the Verify… types
//!   min_version: TLS12                             # optional: TLS12 or TLS13
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$...                         # bcrypt hash
//! ```
//!
//! It is read and checked once, at start (and by `check-config`); every error names the key.
//! `/healthz` answers without credentials so that liveness probes need no secret; it says
//! nothing but `ok`.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::ConfigError;

/// Headers that `http_server_config.headers` may set (the exporter-toolkit's list).
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// The web config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfigFile {
    pub tls_server_config: Option<TlsFile>,
    #[serde(default)]
    pub http_server_config: HttpFile,
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// Accepted for compatibility; the daemon speaks HTTP/1.1.
    pub http2: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The validated web config: what the server needs, ready to use.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// user → bcrypt hash. Empty: no authentication.
    pub users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Deadline for the TLS handshake and for each request's headers.
    pub header_timeout: Duration,
    /// A connection is closed after this long whatever it does (keep-alive included).
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 128,
            header_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(300),
        }
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Reads and validates a web config file. Relative paths inside it are taken from the
/// file's own directory, as the exporter-toolkit does.
pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    from_str(&text, path.parent().unwrap_or(Path::new("."))).map_err(|e| match e {
        ConfigError::Invalid { key, message } => ConfigError::File {
            path: path.display().to_string(),
            message: if key == "." {
                message
            } else {
                format!("{key}: {message}")
            },
        },
        other => other,
    })
}

/// Parses and validates web config text; relative file names are taken from `base`.
pub fn from_str(text: &str, base: &Path) -> Result<WebConfig, ConfigError> {
    let file: WebConfigFile = if text.trim().is_empty() {
        WebConfigFile::default()
    } else {
        // Through a tree, as the main config, so that a type error names its key.
        let tree: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
            let first = e.to_string();
            invalid(".", first.lines().next().unwrap_or("invalid YAML"))
        })?;
        serde_path_to_error::deserialize::<_, WebConfigFile>(tree)
            .map_err(|e| invalid(&e.path().to_string(), e.into_inner().to_string()))?
    };
    build(file, base)
}

/// Validates a parsed web config; relative file names are resolved against `base`.
pub fn build(file: WebConfigFile, base: &Path) -> Result<WebConfig, ConfigError> {
    let tls = match file.tls_server_config {
        Some(t) => Some(Arc::new(tls_config(t, base)?)),
        None => None,
    };
    for (user, hash) in &file.basic_auth_users {
        let key = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') {
            return Err(invalid(
                &key,
                "a user name must be non-empty and hold no ':'",
            ));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(invalid(
                &key,
                "is not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            ));
        }
    }
    let mut headers = Vec::new();
    for (name, value) in &file.http_server_config.headers {
        let key = format!("http_server_config.headers.{name}");
        let Some(canonical) = ALLOWED_HEADERS
            .iter()
            .find(|h| h.eq_ignore_ascii_case(name))
        else {
            return Err(invalid(
                &key,
                format!("may not be set; allowed: {}", ALLOWED_HEADERS.join(", ")),
            ));
        };
        let v = HeaderValue::from_str(value)
            .map_err(|_| invalid(&key, "is not a valid header value"))?;
        headers.push((HeaderName::from_static(lower(canonical)), v));
    }
    Ok(WebConfig {
        tls,
        users: file.basic_auth_users,
        headers,
    })
}

fn lower(h: &'static str) -> &'static str {
    match h {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads a certificate or key file: a regular file of at most 1 MiB (not a device or a
/// pipe that would never end).
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    const LIMIT: u64 = 1 << 20;
    let f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    f.take(LIMIT + 1).read_to_end(&mut out)?;
    if out.len() as u64 > LIMIT {
        return Err(io::Error::other("larger than 1 MiB"));
    }
    Ok(out)
}

fn read_pem(
    base: &Path,
    file: Option<&str>,
    inline: Option<&str>,
    key: &str,
) -> Result<Vec<u8>, ConfigError> {
    let stem = key.trim_end_matches("_file");
    match (file, inline) {
        (Some(_), Some(_)) => Err(invalid(
            &format!("tls_server_config.{key}"),
            format!("give either {key} or {stem}, not both"),
        )),
        (Some(f), None) => read_small(&resolve(base, f))
            .map_err(|e| invalid(&format!("tls_server_config.{key}"), format!("{f}: {e}"))),
        (None, Some(pem)) => Ok(pem.as_bytes().to_vec()),
        (None, None) => Err(invalid(
            &format!("tls_server_config.{key}"),
            "is required when tls_server_config is given",
        )),
    }
}

fn tls_config(t: TlsFile, base: &Path) -> Result<rustls::ServerConfig, ConfigError> {
    let cert_pem = read_pem(base, t.cert_file.as_deref(), t.cert.as_deref(), "cert_file")?;
    let key_pem = read_pem(base, t.key_file.as_deref(), t.key.as_deref(), "key_file")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            invalid(
                "tls_server_config.cert_file",
                format!("not PEM certificates: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(invalid(
            "tls_server_config.cert_file",
            "holds no PEM certificate",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        invalid(
            "tls_server_config.key_file",
            format!("no PEM private key: {e}"),
        )
    })?;

    let versions: Vec<&'static rustls::SupportedProtocolVersion> = {
        let v = |s: &Option<String>, key: &str, default: u8| -> Result<u8, ConfigError> {
            match s.as_deref() {
                None => Ok(default),
                Some("TLS12") => Ok(12),
                Some("TLS13") => Ok(13),
                Some(o) => Err(invalid(
                    &format!("tls_server_config.{key}"),
                    format!("{o:?} is not TLS12 or TLS13 (older versions are not offered)"),
                )),
            }
        };
        let min = v(&t.min_version, "min_version", 12)?;
        let max = v(&t.max_version, "max_version", 13)?;
        if min > max {
            return Err(invalid(
                "tls_server_config.min_version",
                "is above max_version",
            ));
        }
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(n, _)| (min..=max).contains(n))
            .map(|(_, v)| v)
            .collect()
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| invalid("tls_server_config.min_version", e.to_string()))?;

    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth {
        "NoClientCert" => {
            if t.client_ca_file.is_some() {
                return Err(invalid(
                    "tls_server_config.client_ca_file",
                    "needs client_auth_type VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                ));
            }
            builder.with_no_client_auth()
        }
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {
            let Some(ca) = &t.client_ca_file else {
                return Err(invalid(
                    "tls_server_config.client_ca_file",
                    format!("is required with client_auth_type {auth}"),
                ));
            };
            let pem = read_small(&resolve(base, ca))
                .map_err(|e| invalid("tls_server_config.client_ca_file", format!("{ca}: {e}")))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| {
                    invalid("tls_server_config.client_ca_file", format!("not PEM: {e}"))
                })?;
                roots
                    .add(c)
                    .map_err(|e| invalid("tls_server_config.client_ca_file", e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(invalid(
                    "tls_server_config.client_ca_file",
                    "holds no PEM certificate",
                ));
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if auth == "VerifyClientCertIfGiven" {
                v.allow_unauthenticated()
            } else {
                v
            };
            let v = v
                .build()
                .map_err(|e| invalid("tls_server_config.client_ca_file", e.to_string()))?;
            builder.with_client_cert_verifier(v)
        }
        other => {
            return Err(invalid(
                "tls_server_config.client_auth_type",
                format!(
                    "{other:?} is not supported; use NoClientCert, VerifyClientCertIfGiven or \
                     RequireAndVerifyClientCert"
                ),
            ))
        }
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(
            "tls_server_config.key_file",
            format!("does not match cert_file or is unusable: {e}"),
        )
    })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Basic-auth state: the users and a cache of credentials already verified, because a
/// bcrypt check costs tens of milliseconds and Prometheus sends the same ones every scrape.
struct Auth {
    users: BTreeMap<String, String>,
    /// A hash of a password no one has, checked for unknown users so that a wrong user
    /// name takes as long as a wrong password.
    dummy: String,
    verified: Mutex<HashSet<(String, String)>>,
    /// bcrypt checks running at once: a flood of wrong passwords costs at most this many
    /// cores, however many connections carry it.
    checks: Semaphore,
}

async fn check_auth(auth: &Auth, value: Option<HeaderValue>) -> bool {
    let Some(value) = value else {
        return false;
    };
    let Some((user, pass)) = value.to_str().ok().and_then(decode_basic) else {
        return false;
    };
    let pair = (user, pass);
    if crate::training::lock(&auth.verified).contains(&pair) {
        return true;
    }
    let (known, hash) = match auth.users.get(&pair.0) {
        Some(h) => (true, h.clone()),
        None => (false, auth.dummy.clone()),
    };
    let pass = pair.1.clone();
    let Ok(_slot) = auth.checks.acquire().await else {
        return false;
    };
    let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
        && known;
    if ok {
        let mut cache = crate::training::lock(&auth.verified);
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(pair);
    }
    ok
}

fn decode_basic(v: &str) -> Option<(String, String)> {
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64_decode(b64.trim())?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Standard base64 with padding (RFC 4648), enough for an `Authorization` header.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 != 0 || s.len() > 4096 {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    Some(out)
}

struct Layers {
    auth: Option<Auth>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

async fn guard(State(layers): State<Arc<Layers>>, req: Request, next: Next) -> Response {
    let open = req.uri().path() == "/healthz";
    let mut resp = match &layers.auth {
        Some(auth)
            if !open
                && !check_auth(auth, req.headers().get(header::AUTHORIZATION).cloned()).await =>
        {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic")],
                "Unauthorized\n",
            )
                .into_response()
        }
        _ => next.run(req).await,
    };
    for (k, v) in &layers.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

/// Wraps the router with basic auth and the configured headers.
pub fn protect(router: Router, web: &WebConfig) -> Router {
    let layers = Arc::new(Layers {
        auth: (!web.users.is_empty()).then(|| Auth {
            users: web.users.clone(),
            dummy: {
                let cost = web
                    .users
                    .values()
                    .find_map(|h| h.parse::<bcrypt::HashParts>().ok())
                    .map_or(bcrypt::DEFAULT_COST, |p| p.get_cost());
                bcrypt::hash("not a password", cost).unwrap_or_default()
            },
            verified: Mutex::new(HashSet::new()),
            checks: Semaphore::new(2),
        }),
        headers: web.headers.clone(),
    });
    router.layer(axum::middleware::from_fn_with_state(layers, guard))
}

/// Serves `router` on `listener` (TLS if configured) until `shutdown` completes, then lets
/// the connections in flight finish their request (at most `header_timeout` more).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: &WebConfig,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let router = protect(router, web);
    let tls = web.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (tcp, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let work = async {
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => {
                                serve_connection(TokioIo::new(stream), router, limits, &mut stop)
                                    .await
                            }
                            Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                    None => serve_connection(TokioIo::new(tcp), router, limits, &mut stop).await,
                }
            };
            let _ = tokio::time::timeout(limits.max_connection_age, work).await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Wait for the connections in flight, bounded.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.header_timeout, slots.acquire_many(all)).await;
    Ok(())
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    router: Router,
    limits: Limits,
    stop: &mut watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("connection: {e}");
            }
        }
        _ = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<WebConfig, String> {
        let f: WebConfigFile = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        build(f, Path::new("/nonexistent")).map_err(|e| e.to_string())
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("YQ=").is_none());
        assert!(base64_decode("Y===").is_none());
        assert!(base64_decode("YQ==YQ==").is_none());
        assert!(base64_decode("!!!!").is_none());
        assert_eq!(
            decode_basic("Basic dXNlcjpwYTpzcw==").unwrap(),
            ("user".into(), "pa:ss".into())
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("basic_auth_users:\n  bob: plain\n").unwrap_err();
        assert!(e.starts_with("basic_auth_users.bob"), "{e}");
        let e = parse("http_server_config:\n  headers:\n    Server: x\n").unwrap_err();
        assert!(e.starts_with("http_server_config.headers.Server"), "{e}");
        let e = parse("tls_server_config:\n  key_file: k\n").unwrap_err();
        assert!(e.starts_with("tls_server_config.cert_file"), "{e}");
        let e = parse("tls_server_config:\n  cert_file: c\n  key_file: k\n").unwrap_err();
        assert!(e.starts_with("tls_server_config.cert_file"), "{e}");
        let e = parse("tls_server_config:\n  cipher_suites: []\n").unwrap_err();
        assert!(e.contains("cipher_suites"), "{e}");
    }

    #[test]
    fn certificate_paths_must_be_small_regular_files() {
        let e = parse("tls_server_config:\n  cert_file: /dev/zero\n  key_file: /dev/zero\n")
            .unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn headers_and_users_accepted() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let w = parse(&format!(
            "http_server_config:\n  headers:\n    x-frame-options: deny\nbasic_auth_users:\n  \
             p: '{hash}'\n"
        ))
        .unwrap();
        assert_eq!(w.headers[0].0.as_str(), "x-frame-options");
        assert_eq!(w.users.len(), 1);
        assert!(w.tls.is_none());
    }
}
