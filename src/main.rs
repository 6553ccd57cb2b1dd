//! The `gpu-train-exporter` binary: flags → [`Config`] → [`app::run`]. Configuration errors
//! exit with code 2 and one message naming the key; runtime errors exit with 1.
//!
//! Panics: the release profile unwinds, and the first thing `main` does is install
//! [`guard::abort_on_panic_outside_parsers`]. A panic in a parser unwinds to the
//! [`guard::contain`] around it: that line is counted in `training_parse_errors_total`, the
//! run's first such failure is logged, and the daemon goes on. A panic anywhere else (the
//! server, the tailer, the collectors, a run's state) prints its message and aborts the
//! process, as with `panic = "abort"`: a daemon with a dead thread serves stale data, while
//! an exit is seen and restarted by the supervisor.

use std::process::ExitCode;

use clap::Parser;
use gpu_train_exporter::app;
use gpu_train_exporter::config::{self, Cli, Command, Config, Flags};
use gpu_train_exporter::parse::guard;
use gpu_train_exporter::training::Limits;

fn main() -> ExitCode {
    guard::abort_on_panic_outside_parsers();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            // Exactly what the daemon checks at start with `--config FILE`.
            let flags = Flags {
                config: Some(file.clone()),
                ..Flags::default()
            };
            match Config::from_flags(&flags) {
                Ok(c) => {
                    println!(
                        "{}: ok ({} log source(s), {} rule(s), {} action(s))",
                        file.display(),
                        c.sources.len(),
                        c.rules.len(),
                        c.actions.as_ref().map_or(0, |a| a.actions.len())
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => config_error(e),
            }
        }
        Some(Command::Parse {
            format,
            config,
            files,
        }) => {
            let (limits, tail, rules) = match config {
                Some(p) => {
                    match config::read_file(&p).and_then(|f| Config::build(&Flags::default(), f)) {
                        Ok(c) => (c.limits, c.tail, c.rules),
                        Err(e) => return config_error(e),
                    }
                }
                None => (Limits::default(), Default::default(), Default::default()),
            };
            match app::parse_files(&files, format.unwrap_or_default(), limits, tail, rules) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gpu-train-exporter: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            let config = match Config::from_flags(&cli.flags) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            init_logging(&config.log_level);
            let flags = cli.flags;
            match app::run(config, Box::new(move || Config::from_flags(&flags))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("gpu-train-exporter: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn config_error(e: config::ConfigError) -> ExitCode {
    eprintln!("gpu-train-exporter: config error: {e}");
    ExitCode::from(2)
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("gpu_train_exporter={level},warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
