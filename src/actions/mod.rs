//! Actions on alerts: pause, terminate, signal or hand off a run when one of its alerts fires,
//! on every node where the run has processes.
//!
//! Pull, not push: each daemon polls Alertmanager ([`alertmanager`]) for firing alerts with a
//! `run` label, so one alert raised from rank 0's node reaches every node of the run, and
//! each acts on its own local processes of that run ([`crate::attribution::tree`]). No
//! endpoint that can signal processes is added to the daemon, and Alertmanager's silences
//! and inhibitions are honoured for free: a silenced alert is not in the answer.
//!
//! The loop: poll → [`plan::Planner`] (which alert instance triggers which action, once per
//! fingerprint, bounded by a cool-down, undone on resolve) → [`act::Executor`] (the signals
//! and commands), whose results the scrape reads from [`ActionsState`].

pub mod act;
pub mod alertmanager;
pub mod matcher;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::act::{Context, Executor, Outcome};
use self::alertmanager::{AlertmanagerOptions, Client};
use self::matcher::Matcher;
use self::plan::{Planner, Step};
use crate::attribution::tree::Member;
use crate::clock::Waker;
use crate::sync::lock;
use crate::training::Runs;

/// What an action does.
#[derive(Debug, Clone, PartialEq)]
pub enum Do {
    /// SIGSTOP to the run's local tree (launcher included); SIGCONT on resolve when asked.
    Pause,
    /// SIGTERM, then SIGKILL to what is left after `grace`.
    Terminate { grace: Duration },
    /// This signal to the run's ranks (not to its launcher).
    Signal { signal: i32 },
    /// A command, with the alert and the run in its environment, killed after `timeout`.
    Exec {
        argv: Vec<String>,
        timeout: Duration,
    },
}

impl Do {
    /// The action's kind, as the `action` label of `gpu_train_exporter_actions_total` says it.
    pub fn kind(&self) -> &'static str {
        match self {
            Do::Pause => "pause",
            Do::Terminate { .. } => "terminate",
            Do::Signal { .. } => "signal",
            Do::Exec { .. } => "exec",
        }
    }
}

/// One configured action.
#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    /// Alertmanager matchers; all must hold.
    pub matchers: Vec<Matcher>,
    /// Globs over run names; one must match.
    pub runs: Vec<glob::Pattern>,
    pub what: Do,
    pub resume_on_resolve: bool,
    pub dry_run: bool,
    pub cooldown: Duration,
}

/// The validated `alertmanager:` and `actions:` sections.
#[derive(Debug, Clone)]
pub struct ActionsOptions {
    pub alertmanager: AlertmanagerOptions,
    pub actions: Vec<Action>,
    /// The procfs whose processes are signalled (the attribution's).
    pub procfs: PathBuf,
}

/// A run whose local processes this daemon holds stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Paused {
    /// The alert that paused it, and the action.
    pub alert: String,
    pub action: String,
    /// Unix time of the pause.
    pub since: f64,
    pub members: Vec<Member>,
    /// The fingerprints of the firing alerts that hold it; it continues when none is left.
    pub by: BTreeSet<String>,
}

/// What the scrape, the API and the page read of the actions.
#[derive(Debug, Default)]
pub struct ActionsState {
    /// By run label.
    pub paused: BTreeMap<String, Paused>,
    /// `(action kind, alertname, outcome)` → count.
    pub counts: BTreeMap<(&'static str, String, Outcome), u64>,
    /// Whether the last poll got an answer (`None` before the first).
    pub alertmanager_up: Option<bool>,
    pub polls: u64,
    pub poll_errors: u64,
    /// The runs with processes on this node at the last poll (their `training_run_paused`
    /// is served, 0 or 1).
    pub local_runs: BTreeSet<String>,
}

impl ActionsState {
    /// Counts one action of `kind` for `alert` that ended in `outcome`.
    pub fn count(&mut self, kind: &'static str, alert: &str, outcome: Outcome) {
        *self
            .counts
            .entry((kind, alert.to_string(), outcome))
            .or_insert(0) += 1;
    }

    /// The state before the first poll: the counters of each action whose `match` names
    /// one alert (`alertname="X"`) at 0 for every result, so that a first failure is an
    /// increase Prometheus can see (and dashboards have the series from the start).
    pub fn new(opts: &ActionsOptions) -> Self {
        use self::act::Outcome::{DryRun, Failed, Ok, Skipped};
        let mut st = ActionsState::default();
        for a in &opts.actions {
            let Some(alert) = a
                .matchers
                .iter()
                .find(|m| m.name == "alertname" && m.op == matcher::Op::Equal)
            else {
                continue;
            };
            let mut kinds = vec![a.what.kind()];
            if a.resume_on_resolve && a.what == Do::Pause {
                kinds.push("resume");
            }
            for kind in kinds {
                for outcome in [Ok, DryRun, Failed, Skipped] {
                    st.counts.insert((kind, alert.value.clone(), outcome), 0);
                }
            }
        }
        st
    }
}

/// The runs with processes on this node, by label: their log's holders and the GPU compute
/// processes named by their environment.
pub fn local_runs(runs: &Runs) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (label, r) in runs.labelled() {
        let pids: Vec<u32> = r.state.holders.iter().map(|h| h.pid).collect();
        if !pids.is_empty() {
            out.entry(label.into_owned()).or_default().extend(pids);
        }
    }
    for (name, place) in &runs.node.runs {
        if !place.pids.is_empty() {
            out.entry(name.clone())
                .or_default()
                .extend(place.pids.iter().copied());
        }
    }
    for pids in out.values_mut() {
        pids.sort_unstable();
        pids.dedup();
    }
    out
}

/// Polls and acts until `waker` stops.
pub fn run(
    opts: &ActionsOptions,
    runs: &Mutex<Runs>,
    state: &Arc<Mutex<ActionsState>>,
    waker: &Waker,
) {
    let client = match Client::new(opts.alertmanager.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "actions off: cannot build the Alertmanager client");
            return;
        }
    };
    let exec = Executor {
        procfs: crate::procfs::Procfs::new(&opts.procfs),
        state: state.clone(),
        own_pid: std::process::id(),
    };
    let mut planner = Planner::default();
    let mut failing: Option<String> = None;
    loop {
        let polled = client.firing();
        let local = local_runs(&lock(runs));
        let names: BTreeSet<String> = local.keys().cloned().collect();
        {
            let mut st = lock(state);
            st.polls += 1;
            st.alertmanager_up = Some(polled.is_ok());
            st.poll_errors += u64::from(polled.is_err());
            st.local_runs = names.clone();
        }
        match polled {
            Ok(alerts) => {
                if failing.take().is_some() {
                    tracing::info!("Alertmanager answers again");
                }
                for step in planner.plan(&opts.actions, &alerts, &names, Instant::now()) {
                    perform(&exec, opts, &local, step);
                }
            }
            Err(e) => {
                // logged once per distinct error, not at every poll
                if failing.as_deref() != Some(e.as_str()) {
                    tracing::warn!(error = %e, "cannot poll Alertmanager; no action is taken or undone until it answers");
                    failing = Some(e);
                }
            }
        }
        exec.prune();
        if !waker.sleep_until(Instant::now() + opts.alertmanager.poll_interval) {
            return;
        }
    }
}

fn perform(exec: &Executor, opts: &ActionsOptions, local: &BTreeMap<String, Vec<u32>>, step: Step) {
    let none = Vec::new();
    match step {
        Step::Act { action, alert, run } => {
            let roots = local.get(&run).unwrap_or(&none);
            let members = exec.tree(roots);
            let action = &opts.actions[action];
            exec.act(Context {
                action,
                alert: &alert,
                run: &run,
                members,
                roots,
            });
        }
        Step::Skip { action, alert, run } => {
            let action = &opts.actions[action];
            let c = Context {
                action,
                alert: &alert,
                run: &run,
                members: Vec::new(),
                roots: &none,
            };
            exec.skip(
                &c,
                &format!(
                    "cooling down ({:?} after the last action on this run)",
                    action.cooldown
                ),
            );
        }
        Step::Undo { action, alert, run } => {
            let roots = local.get(&run).unwrap_or(&none);
            exec.undo(&opts.actions[action], &alert, &run, roots);
        }
    }
}
