//! The state the HTTP handlers read: the runs, the running collectors and the telemetry
//! path, and the rendering of every metric family from them. A scrape only reads: the join of
//! each run's log holders with the GPUs' compute processes is made by the attribution cycle
//! ([`crate::attribution::cycle`]), never here.

use std::sync::{Arc, Mutex};

use crate::actions::ActionsState;
use crate::clock::unix_now;
use crate::collector::{self, GpuCollector, HostCollector, PodsCollector};
use crate::config::Config;
use crate::expose::{self, Dialect, Encoder, TrainingView};
use crate::sync::lock;
use crate::training::Runs;

/// State shared by the HTTP handlers.
pub struct AppState {
    pub runs: Arc<Mutex<Runs>>,
    pub telemetry_path: String,
    /// The GPU collector, when on (`run` starts it).
    pub gpu: Option<GpuCollector>,
    /// The host collector, when on (`run` starts it).
    pub host: Option<HostCollector>,
    /// The pods collector, when on and the kubelet's socket exists (`run` starts it).
    pub pods: Option<PodsCollector>,
    /// What the actions on alerts did, when configured (`run` starts them).
    pub actions: Option<Arc<Mutex<ActionsState>>>,
}

impl AppState {
    pub fn new(config: &Config) -> Self {
        AppState {
            runs: Arc::new(Mutex::new(
                Runs::new(config.limits, config.max_runs).with_rules(config.rules.clone()),
            )),
            telemetry_path: config.telemetry_path.clone(),
            gpu: None,
            host: None,
            pods: None,
            actions: None,
        }
    }

    /// Renders every metric family.
    pub fn render(&self, dialect: Dialect) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let mut enc = Encoder::new(&mut out, dialect);
        {
            let runs = lock(&self.runs);
            let labelled = runs.labelled();
            let list: Vec<(&str, &_)> = labelled
                .iter()
                .map(|(k, r)| (k.as_ref(), &r.state))
                .collect();
            expose::encode_training(
                &mut enc,
                &TrainingView {
                    runs: &list,
                    limits: &runs.limits,
                    now: unix_now(),
                    wall_clock: true,
                    rules: &runs.rules,
                    node: Some(&runs.node),
                },
            );
            expose::exporter::encode(&mut enc, &runs, &labelled);
        }
        if let Some(a) = &self.actions {
            expose::actions::encode(&mut enc, &lock(a));
        }
        let collectors =
            collector::registry(self.gpu.as_ref(), self.host.as_ref(), self.pods.as_ref());
        collector::encode_all(&mut enc, &collectors);
        enc.finish();
        out
    }
}
