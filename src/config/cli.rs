//! The command line: the subcommands and the daemon's flags (clap), as given. Every daemon
//! flag is optional so that [`Config::build`](super::Config::build) can tell a flag that was
//! given from one that was not, and let the file's value stand. Nothing is validated here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::parse::Format;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "gpu-train-exporter",
    version,
    about = "Prometheus exporter for GPU training nodes: NVML counters and training metrics from trainer logs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file; exit 0 if valid, 2 if not.
    CheckConfig { file: PathBuf },
    /// Read logs to their end, print the metrics they produce and exit.
    Parse {
        /// Force a format instead of detecting it per line.
        #[arg(long, value_parser = parse_format)]
        format: Option<Format>,
        /// Use this config's limits and settings.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log files; each is its own run, named as given.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Daemon flags. Every one is optional so that the file's value stands unless a flag is given.
#[derive(Debug, Clone, Default, Args)]
pub struct Flags {
    /// YAML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A log to follow: `RUN=PATH_OR_GLOB`, or `PATH_OR_GLOB` alone. Repeatable.
    #[arg(long = "log", value_name = "RUN=PATH_OR_GLOB")]
    pub logs: Vec<String>,
    /// Format of the `--log` files (auto detects per line).
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    pub format: Option<Format>,
    /// Address to listen on [default: :9842].
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Path under which to expose metrics [default: /metrics].
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    pub telemetry_path: Option<String>,
    /// Web config file (exporter-toolkit format): TLS, basic auth, response headers.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Most connections open at once; at the cap the connection idle longest is closed to
    /// make room [default: 1024].
    #[arg(long = "web.max-connections", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most requests handled at once; more wait up to 1s, then get 503 [default: 40].
    #[arg(long = "web.max-requests", value_name = "N")]
    pub max_requests: Option<usize>,
    /// Deadline for a client's TLS handshake and request headers [default: 10s].
    #[arg(long = "web.read-header-timeout", value_name = "DURATION")]
    pub read_header_timeout: Option<String>,
    /// Log level of the daemon's own messages: error, warn, info, debug [default: info].
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Most runs followed at once [default: 256].
    #[arg(long = "limits.max-runs", value_name = "N")]
    pub max_runs: Option<usize>,
    /// Most distinct keys per run [default: 512].
    #[arg(long = "limits.max-keys-per-run", value_name = "N")]
    pub max_keys_per_run: Option<usize>,
    /// Bytes the live page's history may hold, all runs together; past it every series is
    /// decimated evenly [default: 33554432 (32 MiB)].
    #[arg(long = "limits.history-bytes", value_name = "BYTES")]
    pub history_bytes: Option<usize>,
    /// A run with no record for this long is no longer active [default: 1h].
    #[arg(long = "run.idle-timeout", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// How often globs are re-scanned for new files [default: 5s].
    #[arg(long = "tail.rescan-interval", value_name = "DURATION")]
    pub rescan_interval: Option<String>,
    /// How often a growing log is read; an idle one backs off to 4x this, at least 1s
    /// [default: 250ms].
    #[arg(long = "tail.poll-interval", value_name = "DURATION")]
    pub poll_interval: Option<String>,
    /// Root of the procfs read to find the processes holding each log and the names of the
    /// GPU compute processes [default: /proc].
    #[arg(long = "path.procfs", value_name = "PATH")]
    pub procfs: Option<PathBuf>,
    /// How often /proc is scanned for the processes holding each log [default: 5s].
    #[arg(long = "attribution.interval", value_name = "DURATION")]
    pub attribution_interval: Option<String>,
    /// An environment variable of the writer process that names the run (e.g. SLURM_JOB_ID).
    /// Repeatable; the first one set wins.
    #[arg(long = "attribution.run-from-env", value_name = "VAR")]
    pub run_from_env: Vec<String>,
    /// Do not scan /proc: run liveness comes from the idle timeout alone.
    #[arg(long = "no-attribution")]
    pub no_attribution: bool,
    /// The NVML library to load [default: libnvidia-ml.so.1].
    #[arg(long = "nvml-library", value_name = "PATH")]
    pub nvml_library: Option<PathBuf>,
    /// Turn the GPU collector off.
    #[arg(long = "no-gpu")]
    pub no_gpu: bool,
    /// How often the GPUs are sampled [default: 1s].
    #[arg(long = "gpu.interval", value_name = "DURATION")]
    pub gpu_interval: Option<String>,
    /// How often a GPU family found unsupported is asked again [default: 10m].
    #[arg(long = "gpu.reprobe-interval", value_name = "DURATION")]
    pub gpu_reprobe_interval: Option<String>,
    /// The kernel log read for XIDs NVML does not deliver; empty turns it off [default: /dev/kmsg].
    #[arg(long = "gpu.kmsg", value_name = "PATH")]
    pub gpu_kmsg: Option<PathBuf>,
    /// Turn the host collector off.
    #[arg(long = "no-host")]
    pub no_host: bool,
    /// How often the host is sampled [default: 5s].
    #[arg(long = "host.interval", value_name = "DURATION")]
    pub host_interval: Option<String>,
    /// The kubelet's pod-resources socket, read to map GPUs to pods; the mapping is off
    /// when it does not exist [default: /var/lib/kubelet/pod-resources/kubelet.sock].
    #[arg(long = "pods.socket", value_name = "PATH")]
    pub pods_socket: Option<PathBuf>,
    /// How often the kubelet is asked which pod holds each GPU [default: 10s].
    #[arg(long = "pods.interval", value_name = "DURATION")]
    pub pods_interval: Option<String>,
    /// Turn the pods collector off.
    #[arg(long = "no-pods")]
    pub no_pods: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}
