//! Wiring and lifecycle: builds the shared state, starts the tailer thread and the HTTP
//! server, and stops both on SIGTERM or SIGINT. Also the one-shot `parse` mode.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

use crate::config::Config;
use crate::metrics::{self, Dialect, Encoder, Kind, TrainingView};
use crate::parse::rules::Rule;
use crate::parse::Format;
use crate::tail::{self, Source, TailOptions, Tailer};
use crate::training::{lock, Limits, Runs};

/// The git revision the binary was built from (`unknown` outside a checkout).
pub const REVISION: &str = env!("GTE_REVISION");

/// State shared by the HTTP handlers.
pub struct AppState {
    pub runs: Arc<Mutex<Runs>>,
    pub telemetry_path: String,
}

impl AppState {
    pub fn new(config: &Config) -> Self {
        AppState {
            runs: Arc::new(Mutex::new(
                Runs::new(config.limits, config.max_runs).with_rules(config.rules.clone()),
            )),
            telemetry_path: config.telemetry_path.clone(),
        }
    }

    /// Renders every metric family.
    pub fn render(&self, dialect: Dialect) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let mut enc = Encoder::new(&mut out, dialect);
        {
            let runs = lock(&self.runs);
            let list: Vec<(&str, &_)> = runs
                .runs
                .iter()
                .map(|(k, r)| (k.as_str(), &r.state))
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
            encode_self(&mut enc, &runs);
        }
        enc.finish();
        out
    }
}

fn encode_self(enc: &mut Encoder<'_>, runs: &Runs) {
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
    for (name, r) in &runs.runs {
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
    for (name, r) in &runs.runs {
        enc.sample(
            "gpu_train_exporter_log_read_errors_total",
            &[("run", name)],
            r.read_errors as f64,
        );
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    let state = Arc::new(AppState::new(&config));
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

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!(address = %listener.local_addr()?, path = %config.telemetry_path, "listening");
        axum::serve(listener, crate::http::app(state.clone()))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP")
    });
    stop.store(true, Ordering::Relaxed);
    let _ = tailer.join();
    tracing::info!("stopped");
    result
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
        if meta.is_dir() {
            anyhow::bail!("cannot read {}: is a directory", f.display());
        }
    }
    let sources: Vec<Source> = files
        .iter()
        .map(|f| Source {
            run: Some(f.display().to_string()),
            path: f.display().to_string(),
            format,
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
