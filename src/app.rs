//! Wiring and lifecycle: builds the shared state, starts the tailer thread, the GPU and host
//! collectors and the HTTP server, and stops them on SIGTERM or SIGINT. Also the one-shot
//! `parse` mode.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

use crate::attribution::{GpuProcesses, Scanner};
use crate::collector::gpu::GpuSnapshot;
use crate::collector::{self, GpuCollector, HostCollector, Stop, Worker};
use crate::config::Config;
use crate::metrics::{self, Dialect, Encoder, Kind, TrainingView};
use crate::parse::rules::Rule;
use crate::parse::Format;
use crate::tail::{self, Source, TailOptions, Tailer};
use crate::training::{lock, Limits, Run, Runs};
use std::borrow::Cow;

/// The git revision the binary was built from (`unknown` outside a checkout).
pub const REVISION: &str = env!("GTE_REVISION");

/// State shared by the HTTP handlers.
pub struct AppState {
    pub runs: Arc<Mutex<Runs>>,
    pub telemetry_path: String,
    /// The GPU collector, when on (`run` starts it).
    pub gpu: Option<GpuCollector>,
    /// The host collector, when on (`run` starts it).
    pub host: Option<HostCollector>,
}

impl AppState {
    pub fn new(config: &Config) -> Self {
        AppState {
            runs: Arc::new(Mutex::new(
                Runs::new(config.limits, config.max_runs).with_rules(config.rules.clone()),
            )),
            telemetry_path: config.telemetry_path.clone(),
            gpu: None,
            host: None,
        }
    }

    /// The GPUs for the live page's JSON API, from the GPU collector's latest snapshot
    /// (none when the collector is off or NVML is unavailable), each with its last hour:
    /// `[minutes relative to now, utilization, memory used / total]`.
    pub fn gpus_json(&self) -> Vec<serde_json::Value> {
        let Some(gpu) = &self.gpu else {
            return Vec::new();
        };
        let snap = gpu.snapshot();
        let now = tail::unix_now();
        if !snap.nvml_up {
            return Vec::new();
        }
        snap.gpus
            .iter()
            .map(|g| {
                serde_json::json!({
                    "gpu": g.index,
                    "name": g.name,
                    "uuid": g.uuid,
                    "up": g.up,
                    "utilization_ratio": g.utilization,
                    "memory_utilization_ratio": g.memory_utilization,
                    "memory_used_bytes": g.memory_used_bytes,
                    "memory_total_bytes": g.memory_total_bytes,
                    "temperature_celsius": g.temperature_celsius,
                    "power_watts": g.power_watts,
                    "history": gpu.history(g.index).into_iter().map(|(t, u, m)| {
                        serde_json::json!([(t - now) / 60.0, u, m])
                    }).collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    /// Renders every metric family.
    pub fn render(&self, dialect: Dialect) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let mut enc = Encoder::new(&mut out, dialect);
        {
            let mut runs = lock(&self.runs);
            if let Some(g) = &self.gpu {
                let gpus = gpu_processes(&g.snapshot());
                for r in runs.runs.values_mut() {
                    r.state.set_gpus(&gpus);
                }
            }
            let labelled = runs.labelled();
            let list: Vec<(&str, &_)> = labelled
                .iter()
                .map(|(k, r)| (k.as_ref(), &r.state))
                .collect();
            metrics::encode_training(
                &mut enc,
                &TrainingView {
                    runs: &list,
                    limits: &runs.limits,
                    now: tail::unix_now(),
                    wall_clock: true,
                    rules: &runs.rules,
                },
            );
            encode_self(&mut enc, &runs, &labelled);
        }
        if let Some(g) = &self.gpu {
            g.encode(&mut enc);
        }
        if let Some(h) = &self.host {
            h.encode(&mut enc);
        }
        collector::encode_self(&mut enc, self.gpu.as_ref(), self.host.as_ref());
        enc.finish();
        out
    }
}

/// The GPU collector's compute processes as the plain data the run join takes.
fn gpu_processes(snap: &GpuSnapshot) -> Vec<GpuProcesses> {
    snap.gpus
        .iter()
        .map(|g| GpuProcesses {
            index: g.index,
            uuid: g.uuid.clone(),
            processes: g
                .processes
                .iter()
                .map(|p| (p.pid, p.used_memory_bytes))
                .collect(),
        })
        .collect()
}

fn encode_self(enc: &mut Encoder<'_>, runs: &Runs, labelled: &[(Cow<'_, str>, &Run)]) {
    enc.family(
        "gpu_train_exporter_build_info",
        "Version and git revision of the running exporter.",
        Kind::Gauge,
    );
    enc.sample(
        "gpu_train_exporter_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", REVISION),
        ],
        1.0,
    );
    enc.family(
        "gpu_train_exporter_runs",
        "Runs currently followed.",
        Kind::Gauge,
    );
    enc.sample("gpu_train_exporter_runs", &[], runs.runs.len() as f64);
    enc.family(
        "gpu_train_exporter_runs_dropped_total",
        "Log files not followed because the run limit was reached.",
        Kind::Counter,
    );
    enc.sample(
        "gpu_train_exporter_runs_dropped_total",
        &[],
        runs.runs_dropped as f64,
    );
    enc.family(
        "gpu_train_exporter_keys_dropped_total",
        "Keys not recorded because the per-run key limit or key length limit was reached.",
        Kind::Counter,
    );
    for (name, r) in labelled {
        enc.sample(
            "gpu_train_exporter_keys_dropped_total",
            &[("run", name)],
            r.state.keys_dropped as f64,
        );
    }
    enc.family(
        "gpu_train_exporter_log_read_errors_total",
        "Errors reading a run's log file (permission denied, not a file, I/O).",
        Kind::Counter,
    );
    for (name, r) in labelled {
        enc.sample(
            "gpu_train_exporter_log_read_errors_total",
            &[("run", name)],
            r.read_errors as f64,
        );
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    let mut state = AppState::new(&config);
    state.gpu = config.gpu.clone().map(GpuCollector::start);
    state.host = config.host.clone().map(HostCollector::start);
    let state = Arc::new(state);
    if config.sources.is_empty() {
        tracing::warn!(
            "no logs configured (--log or logs: in --config); serving exporter metrics only"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tailer = {
        let runs = state.runs.clone();
        let stop = stop.clone();
        let mut tailer = Tailer::new(config.sources.clone(), config.tail);
        std::thread::Builder::new()
            .name("tailer".into())
            .spawn(move || {
                let mut sink: &Mutex<Runs> = &runs;
                tailer.run(&mut sink, &stop);
            })
            .context("starting the tailer thread")?
    };

    let attribution = if config.attribution.enabled {
        let runs = state.runs.clone();
        let settings = config.attribution.clone();
        Worker::spawn("attribution", move |stop| {
            attribute_loop(&runs, &settings, stop)
        })
    } else {
        None
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!(
            address = %listener.local_addr()?,
            path = %config.telemetry_path,
            tls = config.web.tls.is_some(),
            basic_auth = !config.web.users.is_empty(),
            "listening"
        );
        crate::web::serve(
            listener,
            crate::http::app(state.clone()),
            &config.web,
            config.web_limits,
            shutdown_signal(),
        )
        .await
        .context("serving HTTP")
    });
    stop.store(true, Ordering::Relaxed);
    tailer.thread().unpark(); // ends its sleep at once
    let _ = tailer.join();
    if let Some(a) = attribution {
        a.stop();
    }
    if let Ok(mut state) = Arc::try_unwrap(state) {
        if let Some(g) = state.gpu.take() {
            g.stop();
        }
        if let Some(h) = state.host.take() {
            h.stop();
        }
    }
    tracing::info!("stopped");
    result
}

/// Scans /proc every interval for the processes holding each run's log, until `stop`.
/// The lock is held only to read the paths and to store the result, never during the scan.
fn attribute_loop(runs: &Mutex<Runs>, settings: &crate::config::Attribution, stop: &Stop) {
    let scanner = Scanner::new(&settings.procfs, settings.run_from_env.clone());
    let mut warned = false;
    loop {
        let (names, paths): (Vec<String>, Vec<PathBuf>) = lock(runs)
            .runs
            .iter()
            .map(|(n, r)| (n.clone(), PathBuf::from(&r.state.path)))
            .unzip();
        match scanner.scan(&paths) {
            Ok(scan) => {
                if scan.unreadable > 0 && !warned {
                    warned = true;
                    tracing::info!(processes = scan.unreadable, "some processes' open files cannot be read (other users'); their runs fall back to the idle timeout");
                }
                let now = tail::unix_now();
                let mut runs = lock(runs);
                for (name, holders) in names.iter().zip(scan.holders) {
                    if let Some(r) = runs.runs.get_mut(name) {
                        r.state.set_holders(holders, now);
                    }
                }
            }
            Err(e) => {
                if !warned {
                    warned = true;
                    tracing::warn!(procfs = %settings.procfs.display(), error = %e, "cannot scan procfs; run liveness falls back to the idle timeout");
                }
            }
        }
        if !stop.sleep_until(std::time::Instant::now() + settings.interval) {
            return;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// One-shot mode: reads `files` to their end and returns the exposition of what they hold.
/// Each file is a run named as the path was given. Wall-clock series are left out so that
/// the output depends on the files alone.
pub fn parse_files(
    files: &[PathBuf],
    format: Format,
    limits: Limits,
    opts: TailOptions,
    rules: Arc<Vec<Rule>>,
) -> anyhow::Result<String> {
    for f in files {
        let meta = std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?;
        if let Some(why) = tail::follow::not_regular(&meta) {
            anyhow::bail!("cannot read {}: {why}", f.display());
        }
    }
    let sources: Vec<Source> = files
        .iter()
        .map(|f| Source {
            run: Some(f.display().to_string()),
            path: f.display().to_string(),
            format,
            // named on the command line: wherever it leads
            follow_symlinks_outside: true,
        })
        .collect();
    let mut runs = Runs::new(limits, usize::MAX).with_rules(rules);
    let mut tailer = Tailer::new(sources, opts);
    tailer.read_to_end(&mut runs);
    let mut out = String::new();
    let mut enc = Encoder::new(&mut out, Dialect::Text);
    let list: Vec<(&str, &_)> = runs
        .runs
        .iter()
        .map(|(k, r)| (k.as_str(), &r.state))
        .collect();
    metrics::encode_training(
        &mut enc,
        &TrainingView {
            runs: &list,
            limits: &limits,
            now: 0.0,
            wall_clock: false,
            rules: &runs.rules,
        },
    );
    enc.finish();
    Ok(out)
}
