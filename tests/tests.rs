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
// the README's example config and flag table stay true
#[path = "it/readme.rs"]
mod readme;
