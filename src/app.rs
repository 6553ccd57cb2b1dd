//! Wiring and lifecycle: builds the shared state, starts the tailer thread, the GPU, host and pods
//! collectors and the HTTP server, reloads the configuration on SIGHUP (logs, rules and the
//! web config; the rest is logged as needing a restart), and stops on SIGTERM or SIGINT
//! within about a second, never waiting on a blocked thread or a slow client. Also the
//! one-shot `parse` mode.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::clock::Waker;
use crate::collector::{GpuCollector, HostCollector, PodsCollector, Worker};
use crate::config::{Config, ConfigError, Source};
use crate::expose::{self, Dialect, Encoder, TrainingView};
use crate::http::server::Web;
use crate::parse::rules::Rule;
use crate::parse::Format;
use crate::state::AppState;
use crate::sync::lock;
use crate::tail::{self, SourcesSlot, TailOptions, Tailer};
use crate::training::{Limits, Runs};

/// Reads the configuration again, as at start (the same flags): what SIGHUP puts in force.
pub type Reload = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// How long the background threads get to stop once the server has. A thread blocked in a
/// read (a FIFO, a hung NFS server, NVML) is left to the process exit.
const THREADS_STOP: Duration = Duration::from_millis(400);

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the configuration through
/// `reload`. Shutdown takes at most about a second, whatever the clients and the threads do.
pub fn run(config: Config, reload: Reload) -> anyhow::Result<()> {
    let mut state = AppState::new(&config);
    state.gpu = config.gpu.clone().map(GpuCollector::start);
    state.host = config.host.clone().map(HostCollector::start);
    state.pods = config.pods.clone().and_then(|opts| {
        let gpus = state.gpu.as_ref().map(GpuCollector::reader);
        PodsCollector::start(opts, gpus)
    });
    state.actions = config
        .actions
        .as_ref()
        .map(|a| Arc::new(Mutex::new(crate::actions::ActionsState::new(a))));
    let state = Arc::new(state);
    if config.sources.is_empty() {
        tracing::warn!(
            "no logs configured (--log or logs: in --config); serving exporter metrics only"
        );
    }
    let tail_waker = Arc::new(Waker::new());
    let mut tailer = Tailer::new(config.sources.clone(), config.tail);
    let sources = tailer.sources_slot();
    let tailer = {
        let runs = state.runs.clone();
        let waker = tail_waker.clone();
        std::thread::Builder::new()
            .name("tailer".into())
            .spawn(move || {
                let mut sink: &Mutex<Runs> = &runs;
                tailer.run(&mut sink, &waker);
            })
            .context("starting the tailer thread")?
    };

    let attribution = if config.attribution.enabled {
        let runs = state.runs.clone();
        let settings = config.attribution.clone();
        let gpus = state.gpu.as_ref().map(GpuCollector::reader);
        Worker::spawn("attribution", move |stop| {
            crate::attribution::cycle::run(&runs, &settings, gpus.as_ref(), stop)
        })
    } else {
        None
    };

    let actions = match (&config.actions, &state.actions) {
        (Some(opts), Some(shared)) => {
            let (opts, runs, shared) = (opts.clone(), state.runs.clone(), shared.clone());
            tracing::info!(
                actions = opts.actions.len(),
                alertmanager = %opts.alertmanager.urls.join(", "),
                "acting on alerts"
            );
            Worker::spawn("actions", move |stop| {
                crate::actions::run(&opts, &runs, &shared, stop)
            })
        }
        _ => None,
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let web = Web::new(&config.web, config.web_limits);
    let reloader = Arc::new(Reloader {
        load: reload,
        started: config.clone(),
        current: Mutex::new(config.clone()),
        runs: state.runs.clone(),
        sources,
        web: web.clone(),
    });
    let result = rt.block_on(async {
        // Before the socket listens: from then on SIGHUP and SIGUSR1/2 never kill the daemon.
        let signals = Signals::new().context("installing signal handlers")?;
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
        let wake = Arc::new(tokio::sync::Notify::new());
        let reloads = tokio::spawn(reload_loop(reloader, wake.clone()));
        let served = crate::http::server::serve(
            listener,
            crate::http::app(state.clone()),
            web,
            signals.until_stop(wake),
        )
        .await;
        reloads.abort();
        served.context("serving HTTP")
    });
    // Tasks still running (a request past the drain) are dropped; a bcrypt check or a
    // render on a blocking thread is not waited for.
    rt.shutdown_timeout(Duration::from_millis(50));
    // ends the tailer's sleep at once
    tail_waker.stop();
    // Each part stops on a thread of its own, all at once, and is waited for until a
    // deadline: one blocked part neither delays the others nor the exit.
    let (done, stopped) = std::sync::mpsc::channel::<()>();
    let mut parts: Vec<Box<dyn FnOnce() + Send>> = vec![Box::new(move || {
        let _ = tailer.join();
    })];
    if let Some(a) = attribution {
        parts.push(Box::new(move || a.stop()));
    }
    if let Some(a) = actions {
        parts.push(Box::new(move || a.stop()));
    }
    if let Ok(mut state) = Arc::try_unwrap(state) {
        if let Some(g) = state.gpu.take() {
            parts.push(Box::new(move || g.stop()));
        }
        if let Some(h) = state.host.take() {
            parts.push(Box::new(move || h.stop()));
        }
        if let Some(p) = state.pods.take() {
            parts.push(Box::new(move || p.stop()));
        }
    }
    let mut waiting = 0;
    for part in parts {
        let done = done.clone();
        let spawned = std::thread::Builder::new()
            .name("stop".into())
            .spawn(move || {
                part();
                let _ = done.send(());
            });
        waiting += usize::from(spawned.is_ok());
    }
    let deadline = std::time::Instant::now() + THREADS_STOP;
    while waiting > 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if stopped.recv_timeout(left).is_err() {
            tracing::warn!(
                "a background thread did not stop within {THREADS_STOP:?} (blocked in a read?); \
                 exiting without it"
            );
            break;
        }
        waiting -= 1;
    }
    tracing::info!("stopped");
    result
}

/// The signals the daemon handles: SIGTERM and SIGINT stop it, SIGHUP reloads the
/// configuration, SIGUSR1 and SIGUSR2 are logged and ignored (their default would kill it).
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Handles signals until SIGTERM or SIGINT; each SIGHUP wakes `reload`.
    async fn until_stop(mut self, reload: Arc<tokio::sync::Notify>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => break tracing::info!("SIGTERM: shutting down"),
                _ = self.int.recv() => break tracing::info!("SIGINT: shutting down"),
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    reload.notify_one();
                }
                _ = self.usr1.recv() => {
                    tracing::info!("SIGUSR1 ignored (SIGHUP reloads the configuration)")
                }
                _ = self.usr2.recv() => {
                    tracing::info!("SIGUSR2 ignored (SIGHUP reloads the configuration)")
                }
            }
        }
    }
}

/// Runs one reload per wake-up, one at a time (SIGHUPs during a reload make one more).
async fn reload_loop(reloader: Arc<Reloader>, wake: Arc<tokio::sync::Notify>) {
    loop {
        wake.notified().await;
        let r = reloader.clone();
        // Reading files and hashing the dummy password take a blocking thread.
        let _ = tokio::task::spawn_blocking(move || r.reload()).await;
    }
}

/// What a reload reaches: the config in force, and the parts that take a new one.
struct Reloader {
    load: Reload,
    /// The config at start, for the settings that need a restart.
    started: Config,
    current: Mutex<Config>,
    runs: Arc<Mutex<Runs>>,
    sources: SourcesSlot<Format>,
    web: Arc<Web>,
}

impl Reloader {
    /// Reads and validates the configuration again and puts in force what can change
    /// while running: the logs followed, the user rules and the web config (TLS, users,
    /// headers). An invalid configuration is refused and the running one stays.
    fn reload(&self) {
        let new = match (self.load)() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "configuration reload refused; the running configuration stays");
                return;
            }
        };
        for setting in restart_only(&self.started, &new) {
            tracing::warn!(
                setting,
                "changed in the configuration; takes effect after a restart"
            );
        }
        let mut current = lock(&self.current);
        let mut changes = Vec::new();
        let same_rules = current.rules.len() == new.rules.len()
            && current
                .rules
                .iter()
                .zip(new.rules.iter())
                .all(|(a, b)| format!("{a:?}") == format!("{b:?}"));
        if !same_rules {
            lock(&self.runs).set_rules(new.rules.clone());
            changes.push(format!(
                "rules: {} (were {})",
                new.rules.len(),
                current.rules.len()
            ));
        }
        let paths = |a: &[Source], b: &[Source]| -> Vec<String> {
            a.iter()
                .filter(|s| !b.contains(s))
                .map(|s| s.path.clone())
                .collect()
        };
        let added = paths(&new.sources, &current.sources);
        let removed = paths(&current.sources, &new.sources);
        if !added.is_empty() || !removed.is_empty() {
            *lock(&self.sources) = Some(new.sources.clone());
            if !added.is_empty() {
                changes.push(format!("logs added: {}", added.join(", ")));
            }
            if !removed.is_empty() {
                changes.push(format!(
                    "logs removed (their runs are dropped): {}",
                    removed.join(", ")
                ));
            }
        }
        changes.extend(self.web.reload(&new.web));
        if changes.is_empty() {
            tracing::info!("configuration reloaded: nothing changed");
        } else {
            tracing::info!(changes = %changes.join("; "), "configuration reloaded");
        }
        *current = new;
    }
}

/// The settings that differ between `running` and `new` but take a restart to change.
fn restart_only(running: &Config, new: &Config) -> Vec<&'static str> {
    fn differ(a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let (a, b) = (running, new);
    [
        ("web.listen_address", differ(&a.listen, &b.listen)),
        (
            "web.telemetry_path",
            differ(&a.telemetry_path, &b.telemetry_path),
        ),
        (
            "web.max_connections, web.max_requests, web.read_header_timeout",
            differ(&a.web_limits, &b.web_limits),
        ),
        ("log_level", differ(&a.log_level, &b.log_level)),
        (
            "limits, run_idle_timeout",
            differ(&(a.limits, a.max_runs), &(b.limits, b.max_runs)),
        ),
        (
            "rescan_interval, poll_interval, limits.max_line_bytes",
            differ(&a.tail, &b.tail),
        ),
        ("attribution", differ(&a.attribution, &b.attribution)),
        ("gpu", differ(&a.gpu, &b.gpu)),
        ("host", differ(&a.host, &b.host)),
        ("pods", differ(&a.pods, &b.pods)),
        ("alertmanager, actions", differ(&a.actions, &b.actions)),
    ]
    .into_iter()
    .filter(|(_, d)| *d)
    .map(|(k, _)| k)
    .collect()
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
            tag: format,
            // named on the command line: wherever it leads
            follow_symlinks_outside: true,
            one_run: false,
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
    expose::encode_training(
        &mut enc,
        &TrainingView {
            runs: &list,
            limits: &limits,
            now: 0.0,
            wall_clock: false,
            rules: &runs.rules,
            node: None,
        },
    );
    enc.finish();
    Ok(out)
}
