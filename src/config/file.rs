//! The YAML config file's schema, as written: every setting optional, unknown keys refused.
//! The text is read into a tree first and the tree into [`File`] through
//! `serde_path_to_error`, so that a type error names its key (`limits.max_runs: ...`).
//! Values are validated by [`Config::build`](super::Config::build), not here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{read_text, ConfigError};
use crate::parse::rules::RuleSpec;

/// The largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// The YAML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub web: WebFile,
    pub log_level: Option<String>,
    #[serde(default)]
    pub logs: Vec<LogFile>,
    #[serde(default)]
    pub limits: LimitsFile,
    pub run_idle_timeout: Option<String>,
    pub rescan_interval: Option<String>,
    pub poll_interval: Option<String>,
    /// User rules: regexes that set metrics.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub attribution: AttributionFile,
    #[serde(default)]
    pub gpu: GpuFile,
    #[serde(default)]
    pub host: HostFile,
    #[serde(default)]
    pub pods: PodsFile,
    /// The Alertmanager the actions poll.
    pub alertmanager: Option<AlertmanagerFile>,
    /// What to do to a run when its alert fires.
    #[serde(default)]
    pub actions: Vec<ActionFile>,
}

/// `alertmanager:`, shaped as Prometheus's `alertmanager_config` client settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerFile {
    pub url: Option<String>,
    pub urls: Option<Vec<String>>,
    pub poll_interval: Option<String>,
    pub timeout: Option<String>,
    pub basic_auth: Option<BasicAuthFile>,
    pub bearer_token_file: Option<PathBuf>,
    pub authorization: Option<AuthorizationFile>,
    pub tls_config: Option<ClientTlsFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthFile {
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationFile {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsFile {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: Option<bool>,
}

/// One entry of `actions:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionFile {
    pub name: Option<String>,
    /// Alertmanager matchers, all of which must hold.
    #[serde(rename = "match", default)]
    pub matchers: Vec<String>,
    /// Globs over run names (all runs when absent).
    pub runs: Option<Vec<String>>,
    /// `pause`, `terminate`, `signal` or `exec`.
    #[serde(rename = "do")]
    pub what: Option<String>,
    pub signal: Option<String>,
    pub exec: Option<Vec<String>>,
    /// How long an `exec` command may run.
    pub timeout: Option<String>,
    /// How long `terminate` waits after SIGTERM before SIGKILL.
    pub grace_period: Option<String>,
    pub resume_on_resolve: Option<bool>,
    pub dry_run: Option<bool>,
    pub cooldown: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributionFile {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
    pub procfs: Option<PathBuf>,
    /// `[]` turns naming runs from the environment off.
    pub run_from_env: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuFile {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
    pub reprobe_interval: Option<String>,
    pub kmsg: Option<PathBuf>,
    pub nvml_library: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodsFile {
    pub enabled: Option<bool>,
    pub socket: Option<PathBuf>,
    pub interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFile {
    pub listen_address: Option<String>,
    pub telemetry_path: Option<String>,
    /// Path of the web config file (TLS, basic auth); relative to this file's directory.
    pub config_file: Option<String>,
    pub max_connections: Option<usize>,
    pub max_requests: Option<usize>,
    pub read_header_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    pub path: String,
    pub run: Option<String>,
    pub format: Option<String>,
    /// Follow symbolic links that lead out of the path's base directory.
    #[serde(default)]
    pub follow_symlinks_outside: bool,
    /// Every file the path matches is the one run named `run`, followed oldest first.
    #[serde(default)]
    pub one_run: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_runs: Option<usize>,
    pub max_keys_per_run: Option<usize>,
    pub max_line_bytes: Option<usize>,
    pub history_bytes: Option<usize>,
}

/// Reads and parses a config file (no validation of values yet).
pub fn read_file(path: &Path) -> Result<File, ConfigError> {
    let text = read_text(path, "--config", MAX_CONFIG_BYTES)?;
    parse_file(&text).map_err(|message| ConfigError::File {
        path: path.display().to_string(),
        message,
    })
}

/// Parses config YAML; unknown keys are errors. YAML is read into a tree first, then the
/// tree into [`File`], so that a type error names its key (`limits.max_runs: ...`).
pub fn parse_file(text: &str) -> Result<File, String> {
    if text.trim().is_empty() {
        return Ok(File::default());
    }
    let tree: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
        // the first line of the YAML error holds the position and the reason
        e.to_string()
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .trim_start_matches("error: ")
            .to_string()
    })?;
    if tree.is_null() {
        return Ok(File::default());
    }
    serde_path_to_error::deserialize::<_, File>(tree).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}
