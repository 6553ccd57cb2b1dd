//! The integration tests: one binary, one module per area (ripgrep's layout).

// shared helpers (the benchmarks use them too): temp dirs, the daemon binary on a loopback
// port, HTTP, exposition samples, the fake NVML library and machines
mod harness;

// `parse` on the real trainer logs against reviewed expected files
mod golden;
// following real files: append, partial lines, rotation, truncation, deletion, new runs
mod tailer;
// bad input and bad config: counted, skipped, exit code 2, never a crash
mod bad_input;
// the daemon end to end: flags, /metrics, /healthz, OpenMetrics, promtool
mod daemon;
// trainer formats: forcing one, Lightning's metrics.csv rewritten while followed
mod formats;
// run attribution: real processes holding real logs, found in /proc, gone when they exit
mod attribution;
// alert rules and Alertmanager config: promtool/amtool checks, unit tests on real-log series
mod alerts;
// Grafana dashboards: JSON model, valid PromQL, only metrics the daemon serves
mod dashboards;
// daemon + real Prometheus + real Alertmanager + Slack stand-in; dashboard queries return data
mod alerting_e2e;
// actions on alerts: real Prometheus + Alertmanager, real processes paused, resumed,
// counted in a dry run, and one alert acting on three nodes
mod actions;
// three daemons as three nodes of one run + real Prometheus with the run rules: the joins,
// the aggregates, the straggler
mod cluster;
// the README's example config and flag table stay true
mod readme;
// the JSON API behind the live page, through the router
mod api;
// the live page in a real headless Chromium
mod browser;
// the GPU collector through the fake NVML library: values, lost GPUs, XIDs, processes
mod gpu;
// the host collector against /proc
mod host;
// the pods collector against a stand-in kubelet serving the pod-resources API on a unix socket
mod pods;
// TLS, basic auth, client certificates, headers, slowloris, connection limits, escaping
mod security;
// deploy/ checked offline: manifests, PrometheusRule vs alerts/, systemd, Dockerfile, compose
mod deploy;
// soak: rotating logs at 10,000 lines/s under 100 scrapes/s; no record lost, RSS flat
mod soak;
// faults: log dir deleted, log replaced by a directory, permission denied, short writes,
// 1,000 connections, GPU lost and NVML hanging
mod faults;
// hostile log directories: a FIFO, /dev/zero, symlink loops and links out, truncation loops
mod hostile_paths;
// the fuzz targets of fuzz/ on stable: corpus plus seeded mutations, bounded in time
mod fuzz;
// every parser entry point on arbitrary strings biased to multibyte UTF-8 and Unicode whitespace
mod properties;
// SIGHUP reloads logs, rules and the web config; a bad config is refused; USR1/USR2 ignored
mod reload;
// lines that once killed the daemon; a parser's panic costs one line, any other aborts
mod parser_panics;
