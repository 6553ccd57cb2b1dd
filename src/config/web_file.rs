//! The `--web.config.file` of the Prometheus exporter-toolkit, read and validated into a
//! [`WebConfig`] (TLS with rustls, optional client certificates, bcrypt basic-auth users,
//! extra response headers), and the bounds on clients ([`Limits`]) the flags set. Every error
//! names its key. The listener that applies them is [`crate::http::server`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::ConfigError;

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

/// The highest bcrypt cost accepted: each check at cost 14 takes about a second of a core;
/// above it a check takes many seconds (cost 31: days), and every unknown user name or wrong
/// password pays it.
pub const MAX_BCRYPT_COST: u32 = 14;

/// The validated web config: what the server needs, ready to use.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// user → bcrypt hash. Empty: no authentication.
    pub users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A bcrypt hash of a password no one has, at the users' highest cost, made at load:
    /// checked for unknown user names so that they take as long as a wrong password.
    pub(crate) dummy: String,
    /// A digest of the TLS settings and of the certificate, key and CA bytes: tells a reload
    /// whether TLS changed.
    pub(crate) tls_digest: Option<u64>,
}

/// Limits on what clients can make the server hold. Connections themselves cost little;
/// what costs is bounded: requests being handled (each holds a rendered exposition until it
/// is sent) and bcrypt checks (tens of milliseconds of a core each).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once, a guard against running out of file descriptors. At
    /// the cap a new connection closes the one idle longest (keep-alive, or still sending
    /// its headers); one with a request in flight is never closed for it.
    pub max_connections: usize,
    /// Most requests handled at once (from their headers to the end of their response);
    /// more wait up to [`QUEUE_WAIT`](crate::http::server::QUEUE_WAIT), then are answered 503. `/healthz` is not counted.
    pub max_requests: usize,
    /// Deadline for the TLS handshake and for each request's headers, which is also how long
    /// a keep-alive connection may stay idle.
    pub header_timeout: Duration,
    /// A connection is closed after this long whatever it does (keep-alive included).
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_requests: 40,
            header_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(300),
        }
    }
}

/// The largest web config, certificate, key or CA file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Reads and validates a web config file (given by the flag or config key `key`). Relative
/// paths inside it are taken from the file's own directory, as the exporter-toolkit does.
pub fn load(path: &Path, key: &str) -> Result<WebConfig, ConfigError> {
    let text = super::read_text(path, key, MAX_FILE_BYTES)?;
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
    let (tls, tls_digest) = match file.tls_server_config {
        Some(t) => {
            let (cfg, digest) = tls_config(t, base)?;
            (Some(Arc::new(cfg)), Some(digest))
        }
        None => (None, None),
    };
    let cost = users_cost(&file.basic_auth_users)?;
    let headers = headers(&file.http_server_config.headers)?;
    let dummy = if file.basic_auth_users.is_empty() {
        String::new()
    } else {
        bcrypt::hash("not a password", cost)
            .map_err(|e| invalid("basic_auth_users", format!("cannot hash: {e}")))?
    };
    Ok(WebConfig {
        tls,
        users: file.basic_auth_users,
        headers,
        dummy,
        tls_digest,
    })
}

/// Checks `basic_auth_users` (`basic_auth_users.NAME`): user names, bcrypt hashes and
/// their cost; returns the highest cost (0 without users).
fn users_cost(users: &BTreeMap<String, String>) -> Result<u32, ConfigError> {
    let mut cost = 0;
    for (user, hash) in users {
        let key = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') {
            return Err(invalid(
                &key,
                "a user name must be non-empty and hold no ':'",
            ));
        }
        let Ok(parts) = hash.parse::<bcrypt::HashParts>() else {
            return Err(invalid(
                &key,
                "is not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            ));
        };
        if parts.get_cost() > MAX_BCRYPT_COST {
            return Err(invalid(
                &key,
                format!(
                    "bcrypt cost {} is above {MAX_BCRYPT_COST}: every check would take seconds \
                     of a core (use 10 to 12: htpasswd -nBC 10)",
                    parts.get_cost()
                ),
            ));
        }
        cost = cost.max(parts.get_cost());
    }
    Ok(cost)
}

/// The `http_server_config.headers` (`http_server_config.headers.NAME`): only the allowed
/// names, each under its canonical spelling, with valid values.
fn headers(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in headers {
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
        // every allowed name is a valid header name; `from_bytes` lowercases it
        let name = HeaderName::from_bytes(canonical.as_bytes())
            .map_err(|_| invalid(&key, "is not a valid header name"))?;
        out.push((name, v));
    }
    Ok(out)
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads a certificate, key or CA file: a regular file of at most 1 MiB, never a FIFO
/// (which would block) or a device (which would never end).
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    super::read_regular(path, MAX_FILE_BYTES)
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

/// The rustls config, and a digest of everything it was made from.
fn tls_config(t: TlsFile, base: &Path) -> Result<(rustls::ServerConfig, u64), ConfigError> {
    use std::hash::{Hash as _, Hasher as _};
    let cert_pem = read_pem(base, t.cert_file.as_deref(), t.cert.as_deref(), "cert_file")?;
    let key_pem = read_pem(base, t.key_file.as_deref(), t.key.as_deref(), "key_file")?;
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    (&cert_pem, &key_pem, format!("{t:?}")).hash(&mut digest);
    let (certs, key) = certificates(&cert_pem, &key_pem)?;
    let versions = versions(&t)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| invalid("tls_server_config.min_version", e.to_string()))?;
    let builder = match client_verifier(&t, base, provider)? {
        None => builder.with_no_client_auth(),
        Some((verifier, ca_pem)) => {
            ca_pem.hash(&mut digest);
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(
            "tls_server_config.key_file",
            format!("does not match cert_file or is unusable: {e}"),
        )
    })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((cfg, digest.finish()))
}

/// The server's certificate chain and private key, from their PEM text.
fn certificates(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
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
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        invalid(
            "tls_server_config.key_file",
            format!("no PEM private key: {e}"),
        )
    })?;
    Ok((certs, key))
}

/// The TLS versions offered: `min_version` to `max_version`, TLS 1.2 and 1.3 by default.
fn versions(t: &TlsFile) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, ConfigError> {
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
    Ok(
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(n, _)| (min..=max).contains(n))
            .map(|(_, v)| v)
            .collect(),
    )
}

/// A client certificate verifier, and the bytes of the CA file it trusts.
type ClientAuth = (Arc<dyn ClientCertVerifier>, Vec<u8>);

/// The client certificate verifier that `client_auth_type` asks for, and the CA file's
/// bytes (for the digest); `None` for `NoClientCert`.
fn client_verifier(
    t: &TlsFile,
    base: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<ClientAuth>, ConfigError> {
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    match auth {
        "NoClientCert" => {
            if t.client_ca_file.is_some() {
                return Err(invalid(
                    "tls_server_config.client_ca_file",
                    "needs client_auth_type VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                ));
            }
            Ok(None)
        }
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {
            let Some(ca) = &t.client_ca_file else {
                return Err(invalid(
                    "tls_server_config.client_ca_file",
                    format!("is required with client_auth_type {auth}"),
                ));
            };
            let (roots, pem) = client_roots(&resolve(base, ca), ca)?;
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if auth == "VerifyClientCertIfGiven" {
                v.allow_unauthenticated()
            } else {
                v
            };
            let v = v
                .build()
                .map_err(|e| invalid("tls_server_config.client_ca_file", e.to_string()))?;
            Ok(Some((v, pem)))
        }
        other => Err(invalid(
            "tls_server_config.client_auth_type",
            format!(
                "{other:?} is not supported; use NoClientCert, VerifyClientCertIfGiven or \
                 RequireAndVerifyClientCert"
            ),
        )),
    }
}

/// The client CAs from `client_ca_file` (`path`, written `ca` in the file), and its bytes.
fn client_roots(path: &Path, ca: &str) -> Result<(rustls::RootCertStore, Vec<u8>), ConfigError> {
    let pem = read_small(path)
        .map_err(|e| invalid("tls_server_config.client_ca_file", format!("{ca}: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c =
            c.map_err(|e| invalid("tls_server_config.client_ca_file", format!("not PEM: {e}")))?;
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
    Ok((roots, pem))
}
