//! The integration tests: one binary, one module per area (ripgrep's layout).

// shared helpers: temp dirs, the daemon binary on a loopback port, scraping
#[path = "it/harness.rs"]
mod harness;

// `parse` on the real trainer logs against reviewed expected files
#[path = "it/golden.rs"]
mod golden;
// following real files: append, partial lines, rotation, truncation, deletion, new runs
#[path = "it/tailer.rs"]
mod tailer;
// bad input and bad config: counted, skipped, exit code 2, never a crash
#[path = "it/bad_input.rs"]
mod bad_input;
// the daemon end to end: flags, /metrics, /healthz, OpenMetrics, promtool
#[path = "it/daemon.rs"]
mod daemon;
// TLS, basic auth, client certificates, headers, slowloris, connection limits, escaping
#[path = "it/security.rs"]
mod security;
// deploy/ checked offline: manifests, PrometheusRule vs alerts/, systemd, Dockerfile, compose
#[path = "it/deploy.rs"]
mod deploy;
// soak: rotating logs at 10,000 lines/s under 100 scrapes/s; no record lost, RSS flat
#[path = "it/soak.rs"]
mod soak;
// faults: log dir deleted, log replaced by a directory, permission denied, short writes, 1,000 connections
#[path = "it/faults.rs"]
mod faults;
// the fuzz targets of fuzz/ on stable: corpus plus seeded mutations, bounded in time
#[path = "it/fuzz.rs"]
mod fuzz;
