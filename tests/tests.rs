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
// trainer formats: forcing one, Lightning's metrics.csv rewritten while followed
#[path = "it/formats.rs"]
mod formats;
// run attribution: real processes holding real logs, found in /proc, gone when they exit
#[path = "it/attribution.rs"]
mod attribution;
// alert rules and Alertmanager config: promtool/amtool checks, unit tests on real-log series
#[path = "it/alerts.rs"]
mod alerts;
// Grafana dashboards: JSON model, valid PromQL, only metrics the daemon serves
#[path = "it/dashboards.rs"]
mod dashboards;
// daemon + real Prometheus + real Alertmanager + Slack stand-in; dashboard queries return data
#[path = "it/alerting_e2e.rs"]
mod alerting_e2e;
// the README's example config and flag table stay true
#[path = "it/readme.rs"]
mod readme;
// the JSON API behind the live page, through the router
#[path = "it/api.rs"]
mod api;
// the live page in a real headless Chromium
#[path = "it/browser.rs"]
mod browser;
// the GPU collector through the fake NVML library: values, lost GPUs, XIDs, processes
#[path = "it/gpu.rs"]
mod gpu;
// the host collector against /proc
#[path = "it/host.rs"]
mod host;
// TLS, basic auth, client certificates, headers, slowloris, connection limits, escaping
#[path = "it/security.rs"]
mod security;
// deploy/ checked offline: manifests, PrometheusRule vs alerts/, systemd, Dockerfile, compose
#[path = "it/deploy.rs"]
mod deploy;
// soak: rotating logs at 10,000 lines/s under 100 scrapes/s; no record lost, RSS flat
#[path = "it/soak.rs"]
mod soak;
// faults: log dir deleted, log replaced by a directory, permission denied, short writes,
// 1,000 connections, GPU lost and NVML hanging
#[path = "it/faults.rs"]
mod faults;
// hostile log directories: a FIFO, /dev/zero, symlink loops and links out, truncation loops
#[path = "it/hostile_paths.rs"]
mod hostile_paths;
// the fuzz targets of fuzz/ on stable: corpus plus seeded mutations, bounded in time
#[path = "it/fuzz.rs"]
mod fuzz;
// SIGHUP reloads logs, rules and the web config; a bad config is refused; USR1/USR2 ignored
#[path = "it/reload.rs"]
mod reload;
// lines that once killed the daemon; a parser's panic costs one line, any other aborts
#[path = "it/parser_panics.rs"]
mod parser_panics;
