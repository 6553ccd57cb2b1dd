//! The exporter's own families (`gpu_train_exporter_*` of the runs: build info, runs
//! followed and dropped, keys dropped, log bytes read and read errors, attribution scans and
//! unreadable process environments),
//! beside the training families.

use std::borrow::Cow;

use super::{Encoder, Kind};
use crate::training::{Run, Runs};

/// The git revision the binary was built from (`unknown` outside a checkout).
pub const REVISION: &str = env!("GTE_REVISION");

/// Writes the exporter's own run-related families; `labelled` are the runs under their
/// exported labels.
pub fn encode(enc: &mut Encoder<'_>, runs: &Runs, labelled: &[(Cow<'_, str>, &Run)]) {
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
    if let Some(n) = runs.attribution_cycles {
        enc.family(
            "gpu_train_exporter_attribution_cycles_total",
            "Attribution scans of the procfs completed (absent when attribution is off).",
            Kind::Counter,
        );
        enc.sample("gpu_train_exporter_attribution_cycles_total", &[], n as f64);
        enc.family(
            "gpu_train_exporter_process_environ_errors_total",
            "Reads of a GPU compute process's environment that failed (another user's process, without the capabilities): such a process is mapped to no run.",
            Kind::Counter,
        );
        enc.sample(
            "gpu_train_exporter_process_environ_errors_total",
            &[],
            runs.environ_errors as f64,
        );
    }
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
        "gpu_train_exporter_log_bytes_read_total",
        "Bytes read from the run's log file, a partial last line included.",
        Kind::Counter,
    );
    for (name, r) in labelled {
        enc.sample(
            "gpu_train_exporter_log_bytes_read_total",
            &[("run", name)],
            r.bytes_read as f64,
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
