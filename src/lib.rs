//! gpu-train-exporter: Prometheus metrics for GPU training nodes, from trainer logs and NVML.
//!
//! The pipeline, one module each:
//! [`tail`] finds and follows log files → [`parse`] turns lines into records →
//! [`training`] keeps each run's latest values → [`expose`] writes the exposition →
//! [`http`] serves it, behind [`http::server`] (TLS, auth, bounds on requests and bcrypt work).
//! [`config`] validates flags and the file; [`app`] wires it all and reloads on SIGHUP.
//! [`attribution`] finds the processes that hold each run's log open, through [`procfs`]
//! (the one reader of `/proc`, at `--path.procfs`). Beside the logs,
//! [`collector`] samples the GPUs (NVML) and the host in the background; [`clock`] is the
//! time they and the tailer wait on. [`actions`] polls Alertmanager and pauses, stops or
//! signals a run's local processes when one of its alerts fires.

pub mod actions;
pub mod app;
pub mod attribution;
pub mod clock;
pub mod collector;
pub mod config;
pub mod expose;
pub mod files;
pub mod http;
pub mod parse;
pub mod procfs;
pub mod state;
pub mod sync;
pub mod tail;
pub mod training;
