//! Which action to take for which alert, from one poll to the next: pure, with time passed
//! in, so that the rules are unit-tested without Alertmanager or processes.
//!
//! - An alert instance (its fingerprint) triggers each matching action once per node, for a
//!   run that has processes on this node; alerts for runs elsewhere are not ours.
//! - After an action has acted on a run, a new alert instance for the same action and run
//!   within the action's `cooldown` is skipped (counted once), so a flapping alert cannot
//!   stop and continue a run every few seconds.
//! - An instance that is gone from the firing list (resolved, silenced, inhibited) is
//!   forgotten; an action with `resume_on_resolve` is then undone.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::alertmanager::Alert;
use super::matcher::all_match;
use super::Action;

/// What to do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Run action `action` for `alert` on `run`.
    Act {
        action: usize,
        alert: Alert,
        run: String,
    },
    /// Action `action` matched `alert` on `run` but is cooling down.
    Skip {
        action: usize,
        alert: Alert,
        run: String,
    },
    /// `alert` (fingerprint `fingerprint`) no longer fires: undo action `action` on `run`.
    Undo {
        action: usize,
        alert: Alert,
        run: String,
    },
}

/// What is remembered of an alert instance that has been handled.
#[derive(Debug, Clone)]
struct Handled {
    alert: Alert,
    run: String,
    /// Whether the action ran (so there is something to undo).
    acted: bool,
}

/// The memory of handled alert instances and of when each action last acted on each run.
#[derive(Debug, Default)]
pub struct Planner {
    handled: HashMap<(usize, String), Handled>,
    last_acted: HashMap<(usize, String), Instant>,
}

/// Whether `action` applies to `alert` for `run`.
pub fn selects(action: &Action, alert: &Alert, run: &str) -> bool {
    all_match(&action.matchers, &alert.labels) && action.runs.iter().any(|g| g.matches(run))
}

impl Planner {
    /// The steps for one successful poll that returned `firing`, where `local` are the runs
    /// with processes on this node.
    pub fn plan(
        &mut self,
        actions: &[Action],
        firing: &[Alert],
        local: &BTreeSet<String>,
        now: Instant,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut live: BTreeSet<(usize, &str)> = BTreeSet::new();
        for alert in firing {
            let Some(run) = alert.labels.get("run") else {
                continue;
            };
            for (i, action) in actions.iter().enumerate() {
                if !selects(action, alert, run) {
                    continue;
                }
                live.insert((i, alert.fingerprint.as_str()));
                let key = (i, alert.fingerprint.clone());
                if self.handled.contains_key(&key) || !local.contains(run) {
                    continue;
                }
                let cooling = self
                    .last_acted
                    .get(&(i, run.clone()))
                    .is_some_and(|&t| now.saturating_duration_since(t) < action.cooldown);
                let step = if cooling {
                    Step::Skip {
                        action: i,
                        alert: alert.clone(),
                        run: run.clone(),
                    }
                } else {
                    self.last_acted.insert((i, run.clone()), now);
                    Step::Act {
                        action: i,
                        alert: alert.clone(),
                        run: run.clone(),
                    }
                };
                self.handled.insert(
                    key,
                    Handled {
                        alert: alert.clone(),
                        run: run.clone(),
                        acted: !cooling,
                    },
                );
                steps.push(step);
            }
        }
        // in a fixed order (the map's is not)
        let mut gone: Vec<(usize, String)> = self
            .handled
            .keys()
            .filter(|(i, fp)| !live.contains(&(*i, fp.as_str())))
            .cloned()
            .collect();
        gone.sort();
        for key in gone {
            let Some(h) = self.handled.remove(&key) else {
                continue;
            };
            if h.acted && actions.get(key.0).is_some_and(|a| a.resume_on_resolve) {
                steps.push(Step::Undo {
                    action: key.0,
                    alert: h.alert,
                    run: h.run,
                });
            }
        }
        // cool-downs long past are forgotten (a daemon of months, runs by the thousand)
        let longest = actions.iter().map(|a| a.cooldown).max().unwrap_or_default();
        self.last_acted
            .retain(|_, t| now.saturating_duration_since(*t) < longest + Duration::from_secs(1));
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{matcher::Matcher, Do};

    fn action(matchers: &[&str], runs: &[&str], cooldown: u64, resume: bool) -> Action {
        Action {
            name: "a".into(),
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            runs: runs
                .iter()
                .map(|g| glob::Pattern::new(g).unwrap())
                .collect(),
            what: Do::Pause,
            resume_on_resolve: resume,
            dry_run: false,
            cooldown: Duration::from_secs(cooldown),
        }
    }

    fn alert(fp: &str, name: &str, run: &str) -> Alert {
        Alert {
            fingerprint: fp.into(),
            labels: [("alertname", name), ("run", run)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts_at: String::new(),
        }
    }

    fn local(runs: &[&str]) -> BTreeSet<String> {
        runs.iter().map(|r| r.to_string()).collect()
    }

    /// (kind, action, fingerprint, run) of each step.
    fn kinds(steps: &[Step]) -> Vec<(&'static str, usize, String, String)> {
        steps
            .iter()
            .map(|s| match s {
                Step::Act { action, alert, run } => {
                    ("act", *action, alert.fingerprint.clone(), run.clone())
                }
                Step::Skip { action, alert, run } => {
                    ("skip", *action, alert.fingerprint.clone(), run.clone())
                }
                Step::Undo { action, alert, run } => {
                    ("undo", *action, alert.fingerprint.clone(), run.clone())
                }
            })
            .collect()
    }

    fn act(i: usize, fp: &str, run: &str) -> (&'static str, usize, String, String) {
        ("act", i, fp.into(), run.into())
    }

    #[test]
    fn selection_by_matchers_and_run_globs() {
        let actions = [
            action(&["alertname=TrainingLossNaN"], &["*"], 0, false),
            action(&["alertname=~\"Training.*\""], &["sft-*"], 0, false),
            action(&["alertname=GpuLost"], &["*"], 0, false),
        ];
        let mut p = Planner::default();
        let t = Instant::now();
        let steps = p.plan(
            &actions,
            &[
                alert("f1", "TrainingLossNaN", "sft-7"),
                alert("f2", "TrainingLossNaN", "pre-1"),
                alert("f3", "TrainingStalled", "elsewhere"),
            ],
            &local(&["sft-7", "pre-1"]),
            t,
        );
        assert_eq!(
            kinds(&steps),
            [
                act(0, "f1", "sft-7"),
                act(1, "f1", "sft-7"),
                act(0, "f2", "pre-1")
            ]
        );
    }

    #[test]
    fn once_per_fingerprint_while_it_fires() {
        let actions = [action(&["alertname=A"], &["*"], 0, false)];
        let mut p = Planner::default();
        let t = Instant::now();
        let firing = [alert("f1", "A", "r")];
        assert_eq!(
            kinds(&p.plan(&actions, &firing, &local(&["r"]), t)),
            [act(0, "f1", "r")]
        );
        for s in 1..5 {
            let later = t + Duration::from_secs(s);
            assert!(p.plan(&actions, &firing, &local(&["r"]), later).is_empty());
        }
        // resolved, then firing again (same labels: the same fingerprint): a new instance
        assert!(p
            .plan(&actions, &[], &local(&["r"]), t + Duration::from_secs(6))
            .is_empty());
        assert_eq!(
            kinds(&p.plan(
                &actions,
                &firing,
                &local(&["r"]),
                t + Duration::from_secs(7)
            )),
            [act(0, "f1", "r")]
        );
    }

    #[test]
    fn an_alert_for_a_run_not_here_waits_until_its_processes_are() {
        let actions = [action(&["alertname=A"], &["*"], 0, false)];
        let mut p = Planner::default();
        let t = Instant::now();
        let firing = [alert("f1", "A", "r")];
        assert!(p.plan(&actions, &firing, &local(&["other"]), t).is_empty());
        assert_eq!(
            kinds(&p.plan(&actions, &firing, &local(&["r"]), t)),
            [act(0, "f1", "r")]
        );
    }

    #[test]
    fn cooldown_skips_new_instances_once_then_allows_after() {
        let actions = [action(&["alertname=~\"A|B\""], &["*"], 60, false)];
        let mut p = Planner::default();
        let t = Instant::now();
        let l = local(&["r"]);
        assert_eq!(
            kinds(&p.plan(&actions, &[alert("f1", "A", "r")], &l, t)),
            [act(0, "f1", "r")]
        );
        let both = [alert("f1", "A", "r"), alert("f2", "B", "r")];
        let t10 = t + Duration::from_secs(10);
        assert_eq!(
            kinds(&p.plan(&actions, &both, &l, t10)),
            [("skip", 0, "f2".into(), "r".into())]
        );
        // counted once, not at every poll
        assert!(p
            .plan(&actions, &both, &l, t10 + Duration::from_secs(5))
            .is_empty());
        // another run is not cooling down
        assert_eq!(
            kinds(&p.plan(&actions, &[alert("f3", "A", "q")], &local(&["q"]), t10)),
            [act(0, "f3", "q")]
        );
        // past the cool-down, a new instance acts
        let t70 = t + Duration::from_secs(70);
        assert_eq!(
            kinds(&p.plan(&actions, &[alert("f4", "B", "r")], &l, t70)),
            [act(0, "f4", "r")]
        );
    }

    #[test]
    fn resolve_undoes_only_what_acted_and_only_when_asked() {
        let actions = [
            action(&["alertname=A"], &["*"], 60, true),
            action(&["alertname=A"], &["*"], 0, false),
        ];
        let mut p = Planner::default();
        let t = Instant::now();
        let l = local(&["r"]);
        p.plan(&actions, &[alert("f1", "A", "r")], &l, t);
        // f2 is skipped by the first (cooling down) and acted on by the second
        p.plan(
            &actions,
            &[alert("f1", "A", "r"), alert("f2", "A", "r")],
            &l,
            t,
        );
        let steps = p.plan(&actions, &[], &l, t + Duration::from_secs(1));
        assert_eq!(kinds(&steps), [("undo", 0, "f1".into(), "r".into())]);
        assert!(p
            .plan(&actions, &[], &l, t + Duration::from_secs(2))
            .is_empty());
    }
}
