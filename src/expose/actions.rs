//! The families of the actions on alerts: which runs this daemon holds paused, what it did
//! (`gpu_train_exporter_actions_total{action, alert, result}`) and whether Alertmanager
//! answers its polls. Absent when no action is configured.

use super::{Encoder, Kind};
use crate::actions::ActionsState;

/// Writes the actions' families from `st`.
pub fn encode(enc: &mut Encoder<'_>, st: &ActionsState) {
    enc.family(
        "training_run_paused",
        "1 while this daemon holds the run's local processes stopped (SIGSTOP) after an alert, 0 for the other runs with processes here.",
        Kind::Gauge,
    );
    let mut runs: Vec<&String> = st.local_runs.iter().chain(st.paused.keys()).collect();
    runs.sort();
    runs.dedup();
    for run in runs {
        let paused = f64::from(u8::from(st.paused.contains_key(run)));
        enc.sample("training_run_paused", &[("run", run)], paused);
    }
    enc.family(
        "gpu_train_exporter_actions_total",
        "Actions on alerts, by kind (pause, resume, terminate, signal, exec), alert name and result (ok, dry_run, failed, skipped).",
        Kind::Counter,
    );
    for ((kind, alert, outcome), n) in &st.counts {
        enc.sample(
            "gpu_train_exporter_actions_total",
            &[
                ("action", kind),
                ("alert", alert),
                ("result", outcome.label()),
            ],
            *n as f64,
        );
    }
    if let Some(up) = st.alertmanager_up {
        enc.family(
            "gpu_train_exporter_alertmanager_up",
            "1 when the last poll of Alertmanager's API got an answer.",
            Kind::Gauge,
        );
        enc.sample(
            "gpu_train_exporter_alertmanager_up",
            &[],
            f64::from(u8::from(up)),
        );
    }
    enc.family(
        "gpu_train_exporter_alertmanager_polls_total",
        "Polls of Alertmanager's API for firing alerts.",
        Kind::Counter,
    );
    enc.sample(
        "gpu_train_exporter_alertmanager_polls_total",
        &[],
        st.polls as f64,
    );
    enc.family(
        "gpu_train_exporter_alertmanager_poll_errors_total",
        "Polls of Alertmanager's API that got no usable answer from any configured URL.",
        Kind::Counter,
    );
    enc.sample(
        "gpu_train_exporter_alertmanager_poll_errors_total",
        &[],
        st.poll_errors as f64,
    );
}
