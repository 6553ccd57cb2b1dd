//! The Alertmanager API v2 client: `GET /api/v2/alerts` for the firing alerts that carry a
//! `run` label, with the client settings of Prometheus's `alertmanager_config` (several URLs
//! for an HA pair, basic auth or a bearer token read from a file at every poll so a rotated
//! secret is picked up, a CA and a client certificate, a timeout).
//!
//! Only alerts that Alertmanager reports `active` (neither silenced nor inhibited, and already
//! processed) are returned: a silence is how a human says "leave this run alone".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The largest answer read (a few thousand alerts fit easily).
const MAX_BODY_BYTES: u64 = 16 << 20;
/// The largest credentials file read.
const MAX_SECRET_BYTES: u64 = 64 << 10;

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    Basic {
        username: String,
        password: Secret,
    },
    /// `Authorization: TYPE CREDENTIALS` (`Bearer` for `bearer_token_file`).
    Header {
        kind: String,
        credentials: Secret,
    },
}

/// A secret given inline or, better, in a file read at each poll.
#[derive(Clone, PartialEq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("<secret>"),
            Secret::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

impl Secret {
    /// The secret's text, without the file's trailing newline.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => crate::files::read_regular(p, MAX_SECRET_BYTES)
                .map_err(|e| format!("{}: {e}", p.display()))
                .and_then(|b| {
                    String::from_utf8(b).map_err(|_| format!("{}: not UTF-8", p.display()))
                })
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string()),
        }
    }
}

/// TLS settings for an `https://` Alertmanager, PEM contents read when the config is built.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientTls {
    /// CA certificates that sign the server's (the web PKI's roots when empty).
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and its key, for mutual TLS.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
    pub insecure_skip_verify: bool,
}

/// The validated client settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerOptions {
    /// Base URLs (`http://host:9093`, no trailing slash), tried in order until one answers.
    pub urls: Vec<String>,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub auth: Option<Auth>,
    pub tls: ClientTls,
}

/// A firing alert, as the actions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub starts_at: String,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default, rename = "startsAt")]
    starts_at: String,
    #[serde(default)]
    status: WireStatus,
}

#[derive(Deserialize, Default)]
struct WireStatus {
    #[serde(default)]
    state: String,
}

/// Parses an `/api/v2/alerts` answer, keeping the active alerts with a fingerprint and a
/// non-empty `run` label.
pub fn parse_alerts(body: &str) -> Result<Vec<Alert>, String> {
    let wire: Vec<Wire> =
        serde_json::from_str(body).map_err(|e| format!("not an alert list: {e}"))?;
    Ok(wire
        .into_iter()
        .filter(|w| {
            w.status.state == "active"
                && !w.fingerprint.is_empty()
                && w.labels.get("run").is_some_and(|r| !r.is_empty())
        })
        .map(|w| Alert {
            fingerprint: w.fingerprint,
            labels: w.labels,
            starts_at: w.starts_at,
        })
        .collect())
}

/// A client for the configured Alertmanagers.
pub struct Client {
    options: AlertmanagerOptions,
    agent: ureq::Agent,
}

impl Client {
    /// Builds the HTTP agent; `Err` names what in the TLS material cannot be used.
    pub fn new(options: AlertmanagerOptions) -> Result<Client, String> {
        let tls = tls_config(&options.tls)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(options.timeout))
            .user_agent(concat!("gpu-train-exporter/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .new_agent();
        Ok(Client { options, agent })
    }

    /// The firing alerts with a `run` label, from the first Alertmanager that answers;
    /// `Err` lists why each failed.
    pub fn firing(&self) -> Result<Vec<Alert>, String> {
        let mut errors = Vec::new();
        for url in &self.options.urls {
            match self.get(url) {
                Ok(alerts) => return Ok(alerts),
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        Err(errors.join("; "))
    }

    fn get(&self, base: &str) -> Result<Vec<Alert>, String> {
        let mut req = self
            .agent
            .get(format!("{base}/api/v2/alerts"))
            .query("active", "true")
            .query("silenced", "false")
            .query("inhibited", "false")
            .query("unprocessed", "false")
            .query("filter", "run=~\".+\"")
            .header("Accept", "application/json");
        match &self.options.auth {
            None => {}
            Some(Auth::Basic { username, password }) => {
                use base64::Engine as _;
                let pair = format!("{username}:{}", password.read()?);
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                req = req.header("Authorization", format!("Basic {b64}"));
            }
            Some(Auth::Header { kind, credentials }) => {
                req = req.header("Authorization", format!("{kind} {}", credentials.read()?));
            }
        }
        let mut resp = req.call().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if status != 200 {
            let head: String = body.chars().take(200).collect();
            return Err(format!("HTTP {status}: {}", head.trim()));
        }
        parse_alerts(&body)
    }
}

/// The TLS configuration for the agent.
fn tls_config(t: &ClientTls) -> Result<ureq::tls::TlsConfig, String> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let mut b = TlsConfig::builder().disable_verification(t.insecure_skip_verify);
    // the certificates of a PEM file (its other sections ignored)
    let certs_of = |pem: &[u8]| -> Vec<Certificate<'static>> {
        ureq::tls::parse_pem(pem)
            .filter_map(|i| match i {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect()
    };
    if let Some(pem) = &t.ca_pem {
        let certs = certs_of(pem);
        if certs.is_empty() {
            return Err("tls_config.ca_file: no PEM certificate in it".into());
        }
        b = b.root_certs(RootCerts::new_with_certs(&certs));
    }
    if let Some((chain, key)) = &t.client {
        let certs = certs_of(chain);
        if certs.is_empty() {
            return Err("tls_config.cert_file: no PEM certificate in it".into());
        }
        let key = PrivateKey::from_pem(key)
            .map_err(|e| format!("tls_config.key_file: no usable PEM private key: {e}"))?;
        b = b.client_cert(Some(ClientCert::new_with_certs(&certs, key)));
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_alerts_with_a_run_are_kept() {
        let body = r#"[
          {"fingerprint":"a1","labels":{"alertname":"TrainingLossNaN","run":"r1"},
           "startsAt":"2026-12-03T10:00:00Z","status":{"state":"active","silencedBy":[],"inhibitedBy":[]}},
          {"fingerprint":"a2","labels":{"alertname":"TrainingLossNaN","run":"r2"},
           "status":{"state":"suppressed","silencedBy":["s"],"inhibitedBy":[]}},
          {"fingerprint":"a3","labels":{"alertname":"GpuLost"},"status":{"state":"active"}},
          {"fingerprint":"a4","labels":{"alertname":"X","run":""},"status":{"state":"active"}},
          {"labels":{"alertname":"X","run":"r3"},"status":{"state":"active"}},
          {"fingerprint":"a6","labels":{"alertname":"X","run":"r4"},"status":{"state":"unprocessed"}}
        ]"#;
        let alerts = parse_alerts(body).unwrap();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].fingerprint, "a1");
        assert_eq!(alerts[0].name(), "TrainingLossNaN");
        assert_eq!(alerts[0].starts_at, "2026-12-03T10:00:00Z");
        assert!(parse_alerts("{}")
            .unwrap_err()
            .contains("not an alert list"));
    }

    #[test]
    fn a_secret_file_is_read_without_its_newline_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "s3cret\n").unwrap();
        assert_eq!(Secret::File(p.clone()).read().unwrap(), "s3cret");
        assert_eq!(format!("{:?}", Secret::Inline("pw".into())), "<secret>");
        std::fs::remove_file(&p).unwrap();
        assert!(Secret::File(p).read().is_err());
    }
}
