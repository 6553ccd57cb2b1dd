//! Configuration: command-line flags and the YAML file become one validated, immutable
//! [`Config`]. Every error names the flag or key and what is wrong; `main` exits 2 on them.
//!
//! Flags follow Prometheus exporter conventions (`--web.listen-address`, `--log.level`);
//! a flag given on the command line overrides the same setting in the file.
//!
//! Raw input first, then validation, as ripgrep's low and high arguments: [`cli`] holds the
//! flags as given, [`file`](mod@file) the YAML schema as written, [`web_file`] the exporter-toolkit web
//! config; this module turns them into [`Config`].

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub mod actions;
pub mod cli;
pub mod file;
pub mod web_file;

pub use crate::files::read_regular;

pub use self::cli::{Cli, Command, Flags};
pub use self::file::{
    parse_file, read_file, AttributionFile, File, GpuFile, HostFile, LimitsFile, LogFile, PodsFile,
    WebFile, MAX_CONFIG_BYTES,
};

use self::web_file::{Limits as WebLimits, WebConfig};
use crate::actions::ActionsOptions;
use crate::collector::{GpuOptions, HostOptions, PodsOptions};
use crate::parse::rules::{self, Rule};
use crate::parse::Format;
use crate::tail::{self, TailOptions};
use crate::training::Limits;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = ":9842";

pub use crate::attribution::identity::TORCH_MASTER_ENTRY;

/// The default sources of a run name, first set wins: torchrun, Slurm, `torch.distributed`
/// (see [`crate::attribution::identity`]).
pub const DEFAULT_RUN_FROM_ENV: [&str; 3] =
    ["TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", TORCH_MASTER_ENTRY];

/// Run attribution settings (see [`crate::attribution`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub enabled: bool,
    pub interval: Duration,
    pub procfs: PathBuf,
    /// Environment variables (or [`TORCH_MASTER_ENTRY`]) that name a run, first set wins;
    /// empty: runs are named from their log paths alone.
    pub run_from_env: Vec<String>,
}

/// A configured log source, tagged with its format.
pub type Source = tail::Source<Format>;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub telemetry_path: String,
    pub log_level: String,
    pub sources: Vec<Source>,
    pub limits: Limits,
    pub max_runs: usize,
    pub tail: TailOptions,
    /// TLS, basic auth and headers from the web config file (plain HTTP without one).
    pub web: WebConfig,
    pub web_limits: WebLimits,
    /// Compiled user rules.
    pub rules: Arc<Vec<Rule>>,
    pub attribution: Attribution,
    /// `None` when the GPU collector is off.
    pub gpu: Option<GpuOptions>,
    /// `None` when the host collector is off.
    pub host: Option<HostOptions>,
    /// `None` when the pods collector is off.
    pub pods: Option<PodsOptions>,
    /// `None` when no action on alerts is configured.
    pub actions: Option<ActionsOptions>,
}

/// A configuration error: the key or flag, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Reads a small regular text file; errors name `key` (the flag or key that gave the path).
pub(crate) fn read_text(path: &Path, key: &str, limit: u64) -> Result<String, ConfigError> {
    let bytes =
        read_regular(path, limit).map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
    String::from_utf8(bytes)
        .map_err(|_| invalid(key, format!("{}: is not UTF-8 text", path.display())))
}

impl Config {
    /// Builds the config from flags and, if `--config` was given, the file.
    pub fn from_flags(flags: &Flags) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(p) => read_file(p)?,
            None => File::default(),
        };
        let base = flags
            .config
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        Config::build_in(flags, file, base)
    }

    /// [`Config::build`], with a relative `web.config_file` taken from `base`.
    pub fn build_in(flags: &Flags, file: File, base: &Path) -> Result<Config, ConfigError> {
        let web_file = pick(
            ("--web.config.file", flags.web_config_file.clone().map(Some)),
            (
                "web.config_file",
                file.web.config_file.as_deref().map(|p| Some(base.join(p))),
            ),
            None,
        );
        let mut c = Config::build(flags, file)?;
        if let Some(p) = &web_file.value {
            c.web = web_file::load(p, web_file.name)?;
        }
        Ok(c)
    }

    /// Merges flags over the file and validates everything, section by section (in this
    /// order, so the first error reported is the first setting that is wrong).
    pub fn build(flags: &Flags, file: File) -> Result<Config, ConfigError> {
        let listen = listen(flags, &file.web)?;
        let telemetry_path = telemetry_path(flags, &file.web)?;
        let log_level = log_level(flags, file.log_level.as_deref())?;
        let sources = sources(flags, &file.logs)?;
        let idle = idle_timeout(flags, file.run_idle_timeout.as_deref())?;
        let (max_runs, limits) = run_limits(flags, &file.limits, idle)?;
        let tail = tail(flags, &file, idle)?;
        let web_limits = web_limits(flags, &file.web)?;
        let rules = rules::compile_all(&file.rules).map_err(|(k, m)| invalid(k, m))?;
        let attribution = attribution(flags, file.attribution)?;
        let actions = actions::build(
            file.alertmanager.as_ref(),
            &file.actions,
            &attribution.procfs,
        )?;
        if actions.is_some() && !attribution.enabled {
            return Err(invalid(
                "actions",
                "need run attribution, which is off (--no-attribution or attribution.enabled: false)",
            ));
        }
        Ok(Config {
            listen,
            telemetry_path,
            log_level,
            sources,
            limits,
            max_runs,
            tail,
            web: WebConfig::default(),
            web_limits,
            rules: Arc::new(rules),
            gpu: gpu(flags, &file.gpu, &attribution.procfs)?,
            attribution,
            host: host(flags, &file.host)?,
            pods: pods(flags, &file.pods)?,
            actions,
        })
    }
}

/// A setting's value and the name to put in an error about it: the flag's if it was given,
/// else the file key's (also when the value is the default, which stands in for the key).
struct Given<T> {
    value: T,
    name: &'static str,
}

/// The flag's value if given, else the file key's, else `default`; each side is
/// `(name, value)`, the name being the flag (`--web.listen-address`) or the key
/// (`web.listen_address`). Every "flag over file over default" choice goes through here.
fn pick<T>(
    flag: (&'static str, Option<T>),
    key: (&'static str, Option<T>),
    default: T,
) -> Given<T> {
    match (flag, key) {
        ((name, Some(value)), _) => Given { value, name },
        (_, (name, Some(value))) => Given { value, name },
        (_, (name, None)) => Given {
            value: default,
            name,
        },
    }
}

impl<T> Given<T> {
    /// Validates or converts the value; an error message becomes an error naming the flag
    /// or key the value came by.
    fn check<U>(self, f: impl FnOnce(T) -> Result<U, String>) -> Result<U, ConfigError> {
        let name = self.name;
        f(self.value).map_err(|m| invalid(name, m))
    }
}

/// `--web.listen-address`, `web.listen_address`.
fn listen(flags: &Flags, web: &WebFile) -> Result<SocketAddr, ConfigError> {
    pick(
        ("--web.listen-address", flags.listen_address.as_deref()),
        ("web.listen_address", web.listen_address.as_deref()),
        DEFAULT_LISTEN,
    )
    .check(parse_listen)
}

/// `--web.telemetry-path`, `web.telemetry_path`.
fn telemetry_path(flags: &Flags, web: &WebFile) -> Result<String, ConfigError> {
    pick(
        ("--web.telemetry-path", flags.telemetry_path.as_deref()),
        ("web.telemetry_path", web.telemetry_path.as_deref()),
        "/metrics",
    )
    .check(|p| match check_telemetry_path(p) {
        Ok(()) => Ok(p.to_string()),
        Err(m) => Err(format!("{p:?} {m}")),
    })
}

/// `--log.level`, `log_level`.
fn log_level(flags: &Flags, file: Option<&str>) -> Result<String, ConfigError> {
    pick(
        ("--log.level", flags.log_level.as_deref()),
        ("log_level", file),
        "info",
    )
    .check(|l| {
        if ["error", "warn", "info", "debug", "trace"].contains(&l) {
            Ok(l.to_string())
        } else {
            Err(format!(
                "{l:?} is not one of error, warn, info, debug, trace"
            ))
        }
    })
}

/// The file's `logs` (`logs[i].path`, ...), then the `--log` flags (`--log #n`).
fn sources(flags: &Flags, logs: &[LogFile]) -> Result<Vec<Source>, ConfigError> {
    let mut sources = Vec::new();
    for (i, l) in logs.iter().enumerate() {
        let format = match &l.format {
            Some(f) => f
                .parse()
                .map_err(|m| invalid(format!("logs[{i}].format"), m))?,
            None => Format::Auto,
        };
        if l.one_run && l.run.is_none() {
            return Err(invalid(
                format!("logs[{i}].one_run"),
                format!("needs logs[{i}].run: the name of the one run its files make"),
            ));
        }
        sources.push(Source {
            follow_symlinks_outside: l.follow_symlinks_outside,
            one_run: l.one_run,
            ..source(l.run.clone(), l.path.clone(), format, &format!("logs[{i}]"))?
        });
    }
    for (i, raw) in flags.logs.iter().enumerate() {
        let (run, path) = match raw.split_once('=') {
            Some((r, p)) if !r.contains('/') => (Some(r.to_string()), p.to_string()),
            _ => (None, raw.clone()),
        };
        sources.push(source(
            run,
            path,
            flags.format.unwrap_or_default(),
            &format!("--log #{}", i + 1),
        )?);
    }
    Ok(sources)
}

/// One log source; errors name `key.path` or `key.run`.
fn source(
    run: Option<String>,
    path: String,
    format: Format,
    key: &str,
) -> Result<Source, ConfigError> {
    if path.trim().is_empty() {
        return Err(invalid(format!("{key}.path"), "is empty"));
    }
    if crate::tail::discover::has_wildcard(&path) {
        crate::tail::discover::check(&path)
            .map_err(|e| invalid(format!("{key}.path"), format!("invalid glob {path:?}: {e}")))?;
    }
    if let Some(r) = &run {
        if r.is_empty() || r.len() > 128 || r.chars().any(|c| c.is_control()) {
            return Err(invalid(
                format!("{key}.run"),
                format!("{r:?} must be 1 to 128 printable characters"),
            ));
        }
    }
    Ok(Source {
        run,
        path,
        tag: format,
        follow_symlinks_outside: false,
        one_run: false,
    })
}

/// `--run.idle-timeout`, `run_idle_timeout`: a run is no longer active, and its files are
/// forgotten, after this long without a record.
fn idle_timeout(flags: &Flags, file: Option<&str>) -> Result<Duration, ConfigError> {
    pick(
        ("--run.idle-timeout", flags.idle_timeout.as_deref()),
        ("run_idle_timeout", file),
        "1h",
    )
    .check(|d| duration(d, secs(1)..=YEAR))
}

/// The most runs followed (`--limits.max-runs`, `limits.max_runs`) and the per-run limits:
/// keys (`--limits.max-keys-per-run`) and history (`--limits.history-bytes`).
fn run_limits(
    flags: &Flags,
    file: &LimitsFile,
    idle: Duration,
) -> Result<(usize, Limits), ConfigError> {
    let at_least_one = |n: usize| match n {
        0 => Err("must be at least 1".to_string()),
        n => Ok(n),
    };
    let max_runs = pick(
        ("--limits.max-runs", flags.max_runs),
        ("limits.max_runs", file.max_runs),
        256,
    )
    .check(at_least_one)?;
    let max_keys_per_run = pick(
        ("--limits.max-keys-per-run", flags.max_keys_per_run),
        ("limits.max_keys_per_run", file.max_keys_per_run),
        512,
    )
    .check(at_least_one)?;
    let history_bytes = pick(
        ("--limits.history-bytes", flags.history_bytes),
        ("limits.history_bytes", file.history_bytes),
        Limits::default().history_bytes,
    )
    .check(|n| match n {
        n if (1 << 20..=1 << 30).contains(&n) => Ok(n),
        _ => Err("must be between 1048576 (1 MiB) and 1073741824 (1 GiB)".to_string()),
    })?;
    Ok((
        max_runs,
        Limits {
            max_keys_per_run,
            idle_seconds: idle.as_secs_f64(),
            history_bytes,
            ..Limits::default()
        },
    ))
}

/// The tailer: `limits.max_line_bytes` (file only), `--tail.rescan-interval`,
/// `--tail.poll-interval`; a file is forgotten after the run idle timeout.
fn tail(flags: &Flags, file: &File, idle: Duration) -> Result<TailOptions, ConfigError> {
    let max_line_bytes = file.limits.max_line_bytes.unwrap_or(1 << 20);
    if !(1024..=64 << 20).contains(&max_line_bytes) {
        return Err(invalid(
            "limits.max_line_bytes",
            "must be between 1024 and 67108864",
        ));
    }
    let rescan = pick(
        ("--tail.rescan-interval", flags.rescan_interval.as_deref()),
        ("rescan_interval", file.rescan_interval.as_deref()),
        "5s",
    )
    .check(|d| duration(d, millis(100)..=HOUR))?;
    let poll = pick(
        ("--tail.poll-interval", flags.poll_interval.as_deref()),
        ("poll_interval", file.poll_interval.as_deref()),
        "250ms",
    )
    .check(|d| duration(d, millis(10)..=secs(60)))?;
    Ok(TailOptions {
        max_line_bytes,
        rescan,
        forget_after: idle,
        active_delay: poll,
        max_delay: (poll * 4).max(Duration::from_secs(1)),
        ..TailOptions::default()
    })
}

/// The bounds on clients: `--web.max-connections`, `--web.max-requests`,
/// `--web.read-header-timeout` (and their `web.*` keys).
fn web_limits(flags: &Flags, web: &WebFile) -> Result<WebLimits, ConfigError> {
    let default = WebLimits::default();
    Ok(WebLimits {
        max_connections: pick(
            ("--web.max-connections", flags.max_connections),
            ("web.max_connections", web.max_connections),
            default.max_connections,
        )
        .check(count)?,
        max_requests: pick(
            ("--web.max-requests", flags.max_requests),
            ("web.max_requests", web.max_requests),
            default.max_requests,
        )
        .check(count)?,
        header_timeout: pick(
            (
                "--web.read-header-timeout",
                flags.read_header_timeout.as_deref(),
            ),
            (
                "web.read_header_timeout",
                web.read_header_timeout.as_deref(),
            ),
            "10s",
        )
        .check(|d| duration(d, millis(100)..=secs(600)))?,
        ..default
    })
}

/// Run attribution: `--attribution.interval`, `--attribution.run-from-env`, `--path.procfs`,
/// `--no-attribution` (and their `attribution.*` keys).
fn attribution(flags: &Flags, file: AttributionFile) -> Result<Attribution, ConfigError> {
    let interval = pick(
        (
            "--attribution.interval",
            flags.attribution_interval.as_deref(),
        ),
        ("attribution.interval", file.interval.as_deref()),
        "5s",
    )
    .check(|d| duration(d, millis(100)..=HOUR))?;
    let run_from_env = pick(
        (
            "--attribution.run-from-env",
            (!flags.run_from_env.is_empty()).then(|| flags.run_from_env.clone()),
        ),
        ("attribution.run_from_env", file.run_from_env),
        DEFAULT_RUN_FROM_ENV.iter().map(|s| s.to_string()).collect(),
    )
    .check(|vars| {
        match vars
            .iter()
            .find(|v| !is_env_name(v) && v.as_str() != TORCH_MASTER_ENTRY)
        {
            Some(v) => Err(format!("{v:?} is not an environment variable name")),
            None => Ok(vars),
        }
    })?;
    Ok(Attribution {
        enabled: pick(
            ("--no-attribution", flags.no_attribution.then_some(false)),
            ("attribution.enabled", file.enabled),
            true,
        )
        .value,
        interval,
        procfs: pick(
            ("--path.procfs", flags.procfs.clone()),
            ("attribution.procfs", file.procfs),
            PathBuf::from("/proc"),
        )
        .value,
        run_from_env,
    })
}

/// A letter or `_`, then letters, digits and `_`.
fn is_env_name(v: &str) -> bool {
    v.bytes()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The GPU collector: `--gpu.interval`, `--nvml-library`, `--no-gpu` (and their `gpu.*`
/// keys), reading process names from attribution's `procfs`. `None` when it is off.
fn gpu(flags: &Flags, file: &GpuFile, procfs: &Path) -> Result<Option<GpuOptions>, ConfigError> {
    let interval = pick(
        ("--gpu.interval", flags.gpu_interval.as_deref()),
        ("gpu.interval", file.interval.as_deref()),
        "1s",
    )
    .check(|d| duration(d, millis(10)..=HOUR))?;
    let reprobe = pick(
        (
            "--gpu.reprobe-interval",
            flags.gpu_reprobe_interval.as_deref(),
        ),
        ("gpu.reprobe_interval", file.reprobe_interval.as_deref()),
        "10m",
    )
    .check(|d| duration(d, millis(100)..=24 * HOUR))?;
    // A blank file value counts as empty; a flag's is taken as given.
    let file_library = file.nvml_library.as_deref().map(|p| match p.trim() {
        "" => Some(PathBuf::new()),
        _ => Some(PathBuf::from(p)),
    });
    let library = pick(
        ("--nvml-library", flags.nvml_library.clone().map(Some)),
        ("gpu.nvml_library", file_library),
        None,
    )
    .check(|p| match p {
        Some(p) if p.as_os_str().is_empty() => Err("is empty".to_string()),
        p => Ok(p),
    })?;
    let kmsg = flags
        .gpu_kmsg
        .clone()
        .or_else(|| file.kmsg.clone())
        .unwrap_or_else(|| PathBuf::from("/dev/kmsg"));
    let kmsg = (!kmsg.as_os_str().is_empty()).then_some(kmsg);
    let enabled = pick(
        ("--no-gpu", flags.no_gpu.then_some(false)),
        ("gpu.enabled", file.enabled),
        true,
    );
    Ok(enabled.value.then_some(GpuOptions {
        library,
        interval,
        reprobe,
        kmsg,
        procfs: procfs.to_path_buf(),
    }))
}

/// The host collector: `--host.interval`, `--no-host` (and their `host.*` keys). `None`
/// when it is off.
fn host(flags: &Flags, file: &HostFile) -> Result<Option<HostOptions>, ConfigError> {
    let interval = pick(
        ("--host.interval", flags.host_interval.as_deref()),
        ("host.interval", file.interval.as_deref()),
        "5s",
    )
    .check(|d| duration(d, millis(100)..=HOUR))?;
    let enabled = pick(
        ("--no-host", flags.no_host.then_some(false)),
        ("host.enabled", file.enabled),
        true,
    );
    Ok(enabled.value.then_some(HostOptions { interval }))
}

/// The kubelet's pod-resources socket.
pub const DEFAULT_PODS_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// The pods collector: `--pods.socket`, `--pods.interval`, `--no-pods` (and their `pods.*`
/// keys). `None` when it is off; on but without the socket, it is off at start.
fn pods(flags: &Flags, file: &PodsFile) -> Result<Option<PodsOptions>, ConfigError> {
    let interval = pick(
        ("--pods.interval", flags.pods_interval.as_deref()),
        ("pods.interval", file.interval.as_deref()),
        "10s",
    )
    .check(|d| duration(d, millis(100)..=HOUR))?;
    let socket = pick(
        ("--pods.socket", flags.pods_socket.clone()),
        ("pods.socket", file.socket.clone()),
        PathBuf::from(DEFAULT_PODS_SOCKET),
    )
    .check(|p| match p.as_os_str().is_empty() {
        true => Err("is empty".to_string()),
        false => Ok(p),
    })?;
    let enabled = pick(
        ("--no-pods", flags.no_pods.then_some(false)),
        ("pods.enabled", file.enabled),
        true,
    );
    Ok(enabled.value.then_some(PodsOptions { socket, interval }))
}

const HOUR: Duration = Duration::from_secs(3600);
/// humantime's year (365.25 days), so that the bound reads `1year`.
const YEAR: Duration = Duration::from_secs(31_557_600);

const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Paths the daemon serves besides the metrics (the live page and the probe), and the
/// prefixes under which it serves more.
const RESERVED_PATHS: [&str; 4] = ["/", "/healthz", "/ui/app.js", "/ui/style.css"];
const RESERVED_PREFIXES: [&str; 2] = ["/api", "/ui"];

/// Whether `p` can be the telemetry path: segments of letters, digits, `-`, `.`, `_` and
/// `~` between single slashes (no route syntax such as `{x}` or `*x`), and none of the
/// daemon's other routes.
fn check_telemetry_path(p: &str) -> Result<(), String> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err("must start with / (a path such as /metrics)".into());
    };
    if p.len() > 256 {
        return Err("is longer than 256 bytes".into());
    }
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
    };
    if !rest.split('/').all(segment_ok) {
        return Err(
            "must be a path such as /metrics: letters, digits, '-', '.', '_' and '~' between \
             single slashes"
                .into(),
        );
    }
    let taken = RESERVED_PATHS.contains(&p)
        || RESERVED_PREFIXES
            .iter()
            .any(|r| p == *r || p.strip_prefix(r).is_some_and(|t| t.starts_with('/')));
    if taken {
        return Err(
            "is taken by the live page, its API or /healthz (/, /healthz, /ui/..., /api/...)"
                .into(),
        );
    }
    Ok(())
}

/// A count of connections or requests: between 1 and 65536.
fn count(n: usize) -> Result<usize, String> {
    if !(1..=65536).contains(&n) {
        return Err("must be between 1 and 65536".into());
    }
    Ok(n)
}

/// A duration such as `30s` or `1h`, greater than zero and within `range`.
fn duration(raw: &str, range: RangeInclusive<Duration>) -> Result<Duration, String> {
    let d = humantime::parse_duration(raw)
        .map_err(|e| format!("{raw:?} is not a duration such as 30s or 1h: {e}"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    if !range.contains(&d) {
        let (lo, hi) = (
            humantime::format_duration(*range.start()),
            humantime::format_duration(*range.end()),
        );
        return Err(format!("must be between {lo} and {hi}"));
    }
    Ok(d)
}

/// `:9842` (all interfaces), `127.0.0.1:9842`, `[::1]:9842`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not an address such as :9842 or 127.0.0.1:9842"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Result<Config, String> {
        let file = parse_file(yaml)?;
        Config::build(&Flags::default(), file).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = build("").unwrap();
        assert_eq!(c.listen.port(), 9842);
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.max_runs, 256);
        assert_eq!(c.limits.max_keys_per_run, 512);
        assert_eq!(c.limits.idle_seconds, 3600.0);
    }

    #[test]
    fn errors_name_the_key() {
        let e = build("lgos: []").unwrap_err();
        assert!(e.contains("lgos"), "{e}");
        let e = build("logs:\n  - path: /x\n    fromat: hf\n").unwrap_err();
        assert!(e.contains("fromat"), "{e}");
        let e = build("logs:\n  - path: /x\n    format: nope\n").unwrap_err();
        assert!(e.starts_with("logs[0].format"), "{e}");
        let e = build("run_idle_timeout: soon\n").unwrap_err();
        assert!(e.starts_with("run_idle_timeout"), "{e}");
        let e = build("web:\n  listen_address: nowhere\n").unwrap_err();
        assert!(e.starts_with("web.listen_address"), "{e}");
        let e = build("web:\n  max_connections: 0\n").unwrap_err();
        assert!(e.starts_with("web.max_connections"), "{e}");
        let e = build("web:\n  read_header_timeout: soon\n").unwrap_err();
        assert!(e.starts_with("web.read_header_timeout"), "{e}");
        let e = build("logs:\n  - path: '/x/[a'\n").unwrap_err();
        assert!(e.starts_with("logs[0].path"), "{e}");
        let e = build("gpu:\n  interval: 1ms\n").unwrap_err();
        assert!(e.starts_with("gpu.interval"), "{e}");
        let e = build("gpu:\n  reprobe_interval: 2d\n").unwrap_err();
        assert!(e.starts_with("gpu.reprobe_interval"), "{e}");
        let e = build("gpu:\n  intervall: 1s\n").unwrap_err();
        assert!(e.contains("intervall"), "{e}");
        let e = build("gpu:\n  nvml_library: ''\n").unwrap_err();
        assert!(e.starts_with("gpu.nvml_library"), "{e}");
        let e = build("host:\n  interval: soon\n").unwrap_err();
        assert!(e.starts_with("host.interval"), "{e}");
    }

    #[test]
    fn pods_socket_and_interval_from_file_and_flags() {
        let p = build("").unwrap().pods.unwrap();
        assert_eq!(p.socket, PathBuf::from(DEFAULT_PODS_SOCKET));
        assert_eq!(p.interval, Duration::from_secs(10));
        let file = "pods:\n  socket: /run/kubelet.sock\n  interval: 2s\n";
        let p = build(file).unwrap().pods.unwrap();
        assert_eq!(p.socket, PathBuf::from("/run/kubelet.sock"));
        assert_eq!(p.interval, Duration::from_secs(2));
        let flags = Flags {
            pods_socket: Some("/other.sock".into()),
            ..Flags::default()
        };
        let c = Config::build(&flags, parse_file(file).unwrap()).unwrap();
        assert_eq!(c.pods.unwrap().socket, PathBuf::from("/other.sock"));
        assert!(build("pods:\n  enabled: false\n").unwrap().pods.is_none());
        let no = Flags {
            no_pods: true,
            ..Flags::default()
        };
        assert!(Config::build(&no, File::default()).unwrap().pods.is_none());
        let e = build("pods:\n  interval: 1ms\n").unwrap_err();
        assert!(e.starts_with("pods.interval"), "{e}");
        let e = build("pods:\n  socket: ''\n").unwrap_err();
        assert!(e.starts_with("pods.socket"), "{e}");
    }

    #[test]
    fn collectors() {
        let c = build("").unwrap();
        let gpu = c.gpu.unwrap();
        assert_eq!(gpu.interval, Duration::from_secs(1));
        assert_eq!(gpu.reprobe, Duration::from_secs(600));
        assert_eq!(gpu.kmsg, Some(PathBuf::from("/dev/kmsg")));
        assert_eq!(gpu.library, None);
        assert!(c.host.is_some());
        let c = build("gpu:\n  enabled: false\nhost:\n  enabled: false\n").unwrap();
        assert!(c.gpu.is_none() && c.host.is_none());
        let c = build("gpu:\n  interval: 250ms\n  nvml_library: /opt/libnvidia-ml.so.1\n").unwrap();
        let gpu = c.gpu.unwrap();
        assert_eq!(gpu.interval, Duration::from_millis(250));
        assert_eq!(gpu.library, Some(PathBuf::from("/opt/libnvidia-ml.so.1")));
        let flags = Flags {
            no_gpu: true,
            gpu_interval: Some("2s".into()),
            ..Flags::default()
        };
        assert!(Config::build(&flags, File::default())
            .unwrap()
            .gpu
            .is_none());
    }

    #[test]
    fn rules_are_compiled_and_errors_name_the_rule() {
        let c = build(
            "rules:\n  - name: reward\n    pattern: 'reward=(?P<v>\\S+)'\n    value: v\n    runs: [grpo-*]\n",
        )
        .unwrap();
        assert_eq!(c.rules.len(), 1);
        let e = build("rules:\n  - name: a\n    pattern: '(?P<v>.)'\n    value: v\n  - name: b\n    pattern: '(['\n    value: v\n").unwrap_err();
        assert!(e.starts_with("rules[1].pattern: does not compile"), "{e}");
        let e = build("rules:\n  - name: a\n    pattern: x\n    valeu: v\n").unwrap_err();
        assert!(e.contains("valeu"), "{e}");
    }

    #[test]
    fn interval_bounds_name_the_key_that_was_given() {
        let flags = Flags {
            rescan_interval: Some("10ms".into()),
            ..Flags::default()
        };
        let e = Config::build(&flags, File::default())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--tail.rescan-interval: must be between 100ms and 1h");
        let e = build("poll_interval: 2m\n").unwrap_err();
        assert_eq!(e, "poll_interval: must be between 10ms and 1m");
        let e = build("attribution:\n  interval: 1ms\n").unwrap_err();
        assert_eq!(e, "attribution.interval: must be between 100ms and 1h");
    }

    fn with_path(p: &str) -> Result<Config, String> {
        let flags = Flags {
            telemetry_path: Some(p.into()),
            ..Flags::default()
        };
        Config::build(&flags, File::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn telemetry_paths_that_clash_or_break_the_router_are_refused() {
        let long = format!("/{}", "a".repeat(300));
        for p in [
            "/",
            "/healthz",
            "/ui/app.js",
            "/ui/style.css",
            "/ui",
            "/ui/x",
            "/api",
            "/api/",
            "/api/v1/runs",
            "/api/v1/gpus",
            "/{x}",
            "/{*x}",
            "/:x",
            "/*x",
            "/a//b",
            "/a/",
            "metrics",
            "",
            "/a b",
            "/./x",
            "/..",
            "/\u{e9}",
            "/m?x",
            &long,
        ] {
            let e = with_path(p).unwrap_err();
            assert!(e.starts_with("--web.telemetry-path"), "{p:?}: {e}");
        }
        for p in [
            "/metrics",
            "/prom",
            "/a/b.c",
            "/healthz2",
            "/apix",
            "/x-y_z~1",
        ] {
            assert!(with_path(p).is_ok(), "{p}");
        }
        // Whatever is accepted builds the router (whose route table panics on a clash).
        let alphabet = ['/', 'a', '{', '}', '*', ':', '.', '%'];
        let mut paths = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(longer);
        }
        for p in paths.iter().map(|p| format!("/{p}")) {
            if let Ok(c) = with_path(&p) {
                let state = Arc::new(crate::state::AppState::new(&c));
                let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::http::app(state)
                }));
                assert!(built.is_ok(), "{p:?} accepted but the router panics");
            }
        }
    }

    #[test]
    fn every_duration_is_bounded_above_and_below() {
        for key in [
            "run_idle_timeout",
            "rescan_interval",
            "poll_interval",
            "attribution.interval",
            "gpu.interval",
            "host.interval",
            "web.read_header_timeout",
        ] {
            let yaml = match key.split_once('.') {
                Some((a, b)) => format!("{a}:\n  {b}: 500000000000y\n"),
                None => format!("{key}: 500000000000y\n"),
            };
            let e = build(&yaml).unwrap_err();
            assert!(e.starts_with(&format!("{key}: must be between")), "{e}");
        }
        let e = build("web:\n  read_header_timeout: 1ns\n").unwrap_err();
        assert_eq!(e, "web.read_header_timeout: must be between 100ms and 10m");
    }

    #[test]
    fn flags_override_the_file() {
        let flags = Flags {
            listen_address: Some("127.0.0.1:1".into()),
            logs: vec!["sft=/a/*.log".into(), "/b/train.log".into()],
            ..Flags::default()
        };
        let file =
            parse_file("web:\n  listen_address: ':2'\nlogs:\n  - path: /c.log\n    run: c\n")
                .unwrap();
        let c = Config::build(&flags, file).unwrap();
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.sources.len(), 3);
        assert_eq!(c.sources[1].run.as_deref(), Some("sft"));
        assert_eq!(c.sources[2].run, None);
    }

    #[test]
    fn pick_takes_the_flag_then_the_key_then_the_default_and_names_where_it_came_from() {
        let g = pick(("--a.b", Some(1)), ("a.b", Some(2)), 3);
        assert_eq!((g.value, g.name), (1, "--a.b"));
        let g = pick(("--a.b", None), ("a.b", Some(2)), 3);
        assert_eq!((g.value, g.name), (2, "a.b"));
        let g = pick(("--a.b", None), ("a.b", None), 3);
        assert_eq!((g.value, g.name), (3, "a.b"));
    }

    #[test]
    fn limits_name_the_flag_or_the_key_that_was_given() {
        let flags = Flags {
            max_runs: Some(0),
            ..Flags::default()
        };
        let e = Config::build(&flags, File::default()).unwrap_err();
        assert_eq!(e.to_string(), "--limits.max-runs: must be at least 1");
        let e = build("limits:\n  max_keys_per_run: 0\n").unwrap_err();
        assert_eq!(e, "limits.max_keys_per_run: must be at least 1");
        let e = build("limits:\n  history_bytes: 1\n").unwrap_err();
        assert_eq!(
            e,
            "limits.history_bytes: must be between 1048576 (1 MiB) and 1073741824 (1 GiB)"
        );
        let e = build("limits:\n  max_line_bytes: 1\n").unwrap_err();
        assert_eq!(
            e,
            "limits.max_line_bytes: must be between 1024 and 67108864"
        );
        // a flag given stands over a wrong value in the file
        let flags = Flags {
            max_keys_per_run: Some(4),
            ..Flags::default()
        };
        let file = parse_file("limits:\n  max_keys_per_run: 0\n").unwrap();
        let c = Config::build(&flags, file).unwrap();
        assert_eq!(c.limits.max_keys_per_run, 4);
    }

    #[test]
    fn run_from_env_flags_replace_the_file_list_and_errors_name_the_one_used() {
        let e = build("attribution:\n  run_from_env: [SLURM_JOB_ID, 1X]\n").unwrap_err();
        assert_eq!(
            e,
            "attribution.run_from_env: \"1X\" is not an environment variable name"
        );
        let flags = Flags {
            run_from_env: vec!["RUN_ID".into()],
            ..Flags::default()
        };
        let file = parse_file("attribution:\n  run_from_env: [1X]\n").unwrap();
        let c = Config::build(&flags, file).unwrap();
        assert_eq!(c.attribution.run_from_env, ["RUN_ID"]);
        let flags = Flags {
            run_from_env: vec!["A-B".into()],
            ..Flags::default()
        };
        let e = Config::build(&flags, File::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--attribution.run-from-env: \"A-B\" is not an environment variable name"
        );
    }

    #[test]
    fn run_from_env_defaults_to_the_launchers_and_an_empty_list_turns_it_off() {
        let c = build("").unwrap();
        assert_eq!(
            c.attribution.run_from_env,
            [
                "TORCHELASTIC_RUN_ID",
                "SLURM_JOB_ID",
                "MASTER_ADDR:MASTER_PORT"
            ]
        );
        let c = build("attribution:\n  run_from_env: []\n").unwrap();
        assert!(c.attribution.run_from_env.is_empty());
        let c =
            build("attribution:\n  run_from_env: [RUN, \"MASTER_ADDR:MASTER_PORT\"]\n").unwrap();
        assert_eq!(c.attribution.run_from_env, ["RUN", TORCH_MASTER_ENTRY]);
        // the one pair entry there is, not any pair
        let e = build("attribution:\n  run_from_env: [\"A:B\"]\n").unwrap_err();
        assert_eq!(
            e,
            "attribution.run_from_env: \"A:B\" is not an environment variable name"
        );
    }

    #[test]
    fn switches_turn_a_part_off_over_the_file() {
        let flags = Flags {
            no_attribution: true,
            no_host: true,
            procfs: Some("/host/proc".into()),
            ..Flags::default()
        };
        let file =
            parse_file("attribution:\n  enabled: true\n  procfs: /x\nhost:\n  enabled: true\n")
                .unwrap();
        let c = Config::build(&flags, file).unwrap();
        assert!(!c.attribution.enabled && c.host.is_none());
        assert_eq!(c.attribution.procfs, PathBuf::from("/host/proc"));
        let c = build("attribution:\n  enabled: false\n").unwrap();
        assert!(!c.attribution.enabled);
        assert_eq!(c.attribution.procfs, PathBuf::from("/proc"));
    }

    #[test]
    fn the_gpu_collector_reads_process_names_from_the_same_procfs() {
        let flags = Flags {
            no_attribution: true,
            procfs: Some("/host/proc".into()),
            ..Flags::default()
        };
        let file = parse_file("attribution:\n  procfs: /x\n").unwrap();
        let c = Config::build(&flags, file).unwrap();
        assert_eq!(c.gpu.unwrap().procfs, PathBuf::from("/host/proc"));
        let c = build("attribution:\n  procfs: /x\n").unwrap();
        assert_eq!(c.gpu.unwrap().procfs, PathBuf::from("/x"));
        assert_eq!(
            build("").unwrap().gpu.unwrap().procfs,
            PathBuf::from("/proc")
        );
    }

    #[test]
    fn an_empty_nvml_library_names_the_flag_or_the_key() {
        let e = build("gpu:\n  nvml_library: '  '\n").unwrap_err();
        assert_eq!(e, "gpu.nvml_library: is empty");
        let flags = Flags {
            nvml_library: Some(PathBuf::new()),
            ..Flags::default()
        };
        let file = parse_file("gpu:\n  nvml_library: /lib/x.so\n").unwrap();
        let e = Config::build(&flags, file).unwrap_err();
        assert_eq!(e.to_string(), "--nvml-library: is empty");
    }
}
