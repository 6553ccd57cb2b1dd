//! What an action does to a run's local processes: stop and continue them, terminate them
//! (SIGTERM, then SIGKILL after a grace period), send them a signal, or run a command with
//! the alert and the run in its environment. Every action is logged at `warn` with its run,
//! alert, PIDs and result, and counted.
//!
//! Safety: a signal goes only to a member of the run's tree ([`crate::attribution::tree`]),
//! checked again against its start time just before it is sent, so a PID that exited and was
//! reused is never hit; PID 1 and the daemon itself are never in a tree.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::alertmanager::Alert;
use super::{Action, ActionsState, Do, Paused};
use crate::attribution::tree::{self, Member};
use crate::clock::unix_now;
use crate::procfs::Procfs;
use crate::sync::lock;

/// The most output of an `exec` command kept for the log, per stream.
const MAX_EXEC_OUTPUT: usize = 4096;

/// The signals an action may name, with or without `SIG`, in any case.
const SIGNALS: [(&str, i32); 14] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ABRT", libc::SIGABRT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("WINCH", libc::SIGWINCH),
    ("XCPU", libc::SIGXCPU),
];

/// A signal's number from its name (`SIGUSR1`, `usr1`); `None` for an unknown name.
pub fn signal_number(name: &str) -> Option<i32> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("SIG").unwrap_or(&n);
    SIGNALS.iter().find(|(s, _)| *s == n).map(|&(_, v)| v)
}

fn signal_name(sig: i32) -> String {
    SIGNALS
        .iter()
        .find(|(_, v)| *v == sig)
        .map_or_else(|| sig.to_string(), |(s, _)| format!("SIG{s}"))
}

/// How an action ended, as counted in `gpu_train_exporter_actions_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    DryRun,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::DryRun => "dry_run",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Sends `sig` to each of `members` that is still the process it was (same start time);
/// returns the PIDs signalled and the errors. A process gone meanwhile is not an error.
pub fn send(procfs: &Procfs, members: &[Member], sig: i32) -> (Vec<u32>, Vec<String>) {
    let mut sent = Vec::new();
    let mut errors = Vec::new();
    for m in members {
        match procfs.stat(m.pid) {
            Ok(st) if st.start_time == m.start_time => {}
            _ => continue,
        }
        let Ok(pid) = i32::try_from(m.pid) else {
            continue;
        };
        if pid <= 1 || m.pid == std::process::id() {
            continue;
        }
        // SAFETY: kill(2) with a checked PID > 1 and a valid signal number.
        let rc = unsafe { libc::kill(pid, sig) };
        if rc == 0 {
            sent.push(m.pid);
        } else {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                let hint = if e.raw_os_error() == Some(libc::EPERM) {
                    " (another user's process: the daemon needs CAP_KILL)"
                } else {
                    ""
                };
                errors.push(format!("{}: {e}{hint}", m.pid));
            }
        }
    }
    (sent, errors)
}

/// Runs actions and keeps the shared state (paused runs, counts) up to date.
pub struct Executor {
    pub procfs: Procfs,
    pub state: Arc<Mutex<ActionsState>>,
    pub own_pid: u32,
}

/// One action's context: the configured action, the alert, the run and its tree.
pub struct Context<'a> {
    pub action: &'a Action,
    pub alert: &'a Alert,
    pub run: &'a str,
    pub members: Vec<Member>,
    /// The attributed processes (the tree's roots).
    pub roots: &'a [u32],
}

impl Executor {
    /// The run's tree, from a fresh read of the process table.
    pub fn tree(&self, roots: &[u32]) -> Vec<Member> {
        match tree::read_table(&self.procfs) {
            Ok(t) => tree::build(&t, roots, self.own_pid),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the process table; no action taken");
                Vec::new()
            }
        }
    }

    fn count(&self, kind: &'static str, alert: &str, outcome: Outcome) {
        lock(&self.state).count(kind, alert, outcome);
    }

    fn log(
        &self,
        kind: &'static str,
        c: &Context<'_>,
        pids: &[u32],
        outcome: Outcome,
        detail: &str,
    ) {
        tracing::warn!(
            action = %c.action.name,
            what = kind,
            run = %c.run,
            alert = %c.alert.name(),
            fingerprint = %c.alert.fingerprint,
            pids = ?pids,
            result = outcome.label(),
            "{detail}"
        );
    }

    /// Counts and logs an alert that matched but leads to nothing (cooling down, already
    /// paused, no process left).
    pub fn skip(&self, c: &Context<'_>, why: &str) {
        let kind = c.action.what.kind();
        let pids: Vec<u32> = c.members.iter().map(|m| m.pid).collect();
        self.count(kind, c.alert.name(), Outcome::Skipped);
        self.log(kind, c, &pids, Outcome::Skipped, why);
    }

    /// Does what `c.action` says for its alert.
    pub fn act(&self, c: Context<'_>) {
        let kind = c.action.what.kind();
        let pids: Vec<u32> = c.members.iter().map(|m| m.pid).collect();
        if c.members.is_empty() {
            return self.skip(&c, "no process of the run left here");
        }
        if c.action.what == Do::Pause {
            // a run already paused is held by this alert too, not stopped again
            let held = lock(&self.state)
                .paused
                .get_mut(c.run)
                .map(|p| p.by.insert(c.alert.fingerprint.clone()))
                .is_some();
            if held {
                return self.skip(&c, "already paused; held until this alert resolves too");
            }
        }
        if c.action.dry_run {
            self.count(kind, c.alert.name(), Outcome::DryRun);
            self.log(kind, &c, &pids, Outcome::DryRun, "dry run: nothing done");
            return;
        }
        match &c.action.what {
            Do::Pause => self.pause(&c),
            Do::Terminate { grace } => self.terminate(&c, *grace),
            Do::Signal { signal } => {
                // a launcher dies of most signals (SIGUSR1's default): only the ranks get it
                let ranks: Vec<Member> =
                    c.members.iter().filter(|m| !m.launcher).copied().collect();
                let (sent, errors) = send(&self.procfs, &ranks, *signal);
                let outcome = outcome(&sent, &errors);
                self.count(kind, c.alert.name(), outcome);
                self.log(
                    kind,
                    &c,
                    &sent,
                    outcome,
                    &format!("sent {}{}", signal_name(*signal), failures(&errors)),
                );
            }
            Do::Exec { argv, timeout } => self.exec(&c, argv, *timeout, "firing"),
        }
    }

    fn pause(&self, c: &Context<'_>) {
        let (sent, errors) = send(&self.procfs, &c.members, libc::SIGSTOP);
        let outcome = outcome(&sent, &errors);
        if !sent.is_empty() {
            let held: Vec<Member> = c
                .members
                .iter()
                .filter(|m| sent.contains(&m.pid))
                .copied()
                .collect();
            lock(&self.state).paused.insert(
                c.run.to_string(),
                Paused {
                    alert: c.alert.name().to_string(),
                    action: c.action.name.clone(),
                    since: unix_now(),
                    members: held,
                    by: BTreeSet::from([c.alert.fingerprint.clone()]),
                },
            );
        }
        self.count("pause", c.alert.name(), outcome);
        self.log(
            "pause",
            c,
            &sent,
            outcome,
            &format!("stopped (SIGSTOP){}", failures(&errors)),
        );
    }

    /// Continues a paused run once no alert holds it any more.
    pub fn resume(&self, action: &Action, alert: &Alert, run: &str) {
        let members = {
            let mut st = lock(&self.state);
            let Some(p) = st.paused.get_mut(run) else {
                return;
            };
            p.by.remove(&alert.fingerprint);
            if !p.by.is_empty() {
                return;
            }
            st.paused.remove(run).map(|p| p.members).unwrap_or_default()
        };
        // the ranks first, then the launchers: a launcher never runs with stopped children
        let mut order = members.clone();
        order.sort_by_key(|m| (m.launcher, m.pid));
        let (sent, errors) = send(&self.procfs, &order, libc::SIGCONT);
        let outcome = if errors.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Failed
        };
        self.count("resume", alert.name(), outcome);
        let c = Context {
            action,
            alert,
            run,
            members,
            roots: &[],
        };
        self.log(
            "resume",
            &c,
            &sent,
            outcome,
            &format!(
                "continued (SIGCONT): the alert no longer fires{}",
                failures(&errors)
            ),
        );
    }

    fn terminate(&self, c: &Context<'_>, grace: Duration) {
        let (sent, errors) = send(&self.procfs, &c.members, libc::SIGTERM);
        // a stopped process only acts on SIGTERM once continued
        let _ = send(&self.procfs, &c.members, libc::SIGCONT);
        lock(&self.state).paused.remove(c.run);
        let outcome = outcome(&sent, &errors);
        self.count("terminate", c.alert.name(), outcome);
        self.log(
            "terminate",
            c,
            &sent,
            outcome,
            &format!(
                "sent SIGTERM; SIGKILL to what is left after {grace:?}{}",
                failures(&errors)
            ),
        );
        let procfs = self.procfs.clone();
        let members = c.members.clone();
        let run = c.run.to_string();
        let spawned = std::thread::Builder::new().name("terminate".into()).spawn(move || {
            std::thread::sleep(grace);
            let (killed, _) = send(&procfs, &members, libc::SIGKILL);
            if !killed.is_empty() {
                tracing::warn!(run = %run, pids = ?killed, "still running after the grace period: sent SIGKILL");
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the SIGKILL timer thread");
        }
    }

    /// Undoes an action whose alert no longer fires: continues a paused run, or runs an
    /// `exec` command again with `GTE_STATUS=resolved`.
    pub fn undo(&self, action: &Action, alert: &Alert, run: &str, roots: &[u32]) {
        match &action.what {
            Do::Pause if !action.dry_run => self.resume(action, alert, run),
            Do::Exec { argv, timeout } if !action.dry_run => {
                let members = self.tree(roots);
                let c = Context {
                    action,
                    alert,
                    run,
                    members,
                    roots,
                };
                self.exec(&c, argv, *timeout, "resolved")
            }
            _ => {}
        }
    }

    /// Runs `argv` on a thread of its own, with the alert and the run in its environment,
    /// killed after `timeout`; its output goes to the log, bounded.
    fn exec(&self, c: &Context<'_>, argv: &[String], timeout: Duration, status: &'static str) {
        let pids: Vec<u32> = c.members.iter().map(|m| m.pid).collect();
        let env = exec_env(&self.procfs, c, status);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let state = self.state.clone();
        let (name, alert, run, fp) = (
            c.action.name.clone(),
            c.alert.name().to_string(),
            c.run.to_string(),
            c.alert.fingerprint.clone(),
        );
        let argv0 = argv[0].clone();
        let spawned = std::thread::Builder::new()
            .name("exec".into())
            .spawn(move || {
                let (outcome, detail) = run_bounded(&mut cmd, timeout);
                lock(&state).count("exec", &alert, outcome);
                tracing::warn!(
                    action = %name, what = "exec", run = %run, alert = %alert, fingerprint = %fp,
                    pids = ?pids, status, result = outcome.label(), command = %argv0, "{detail}"
                );
            });
        if let Err(e) = spawned {
            self.count("exec", c.alert.name(), Outcome::Failed);
            tracing::warn!(error = %e, "cannot start a thread for the exec action");
        }
    }

    /// Forgets paused runs whose processes have all exited.
    pub fn prune(&self) {
        let mut st = lock(&self.state);
        let procfs = &self.procfs;
        st.paused.retain(|_, p| {
            p.members.retain(|m| {
                procfs
                    .stat(m.pid)
                    .is_ok_and(|s| s.start_time == m.start_time)
            });
            !p.members.is_empty()
        });
    }
}

/// `ok` when at least one process got the signal and none refused it.
fn outcome(sent: &[u32], errors: &[String]) -> Outcome {
    if errors.is_empty() && !sent.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}

fn failures(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!("; failed: {}", errors.join(", "))
    }
}

/// The environment an `exec` command gets.
pub fn exec_env(procfs: &Procfs, c: &Context<'_>, status: &str) -> Vec<(String, String)> {
    let labels = serde_json::to_string(&c.alert.labels).unwrap_or_default();
    let pids: Vec<String> = c.members.iter().map(|m| m.pid.to_string()).collect();
    let mut env = vec![
        ("GTE_RUN".to_string(), c.run.to_string()),
        ("GTE_ALERT".into(), c.alert.name().to_string()),
        ("GTE_ALERT_FINGERPRINT".into(), c.alert.fingerprint.clone()),
        ("GTE_ALERT_LABELS".into(), labels),
        ("GTE_ALERT_STARTS_AT".into(), c.alert.starts_at.clone()),
        ("GTE_ACTION".into(), c.action.name.clone()),
        ("GTE_STATUS".into(), status.to_string()),
        ("GTE_PIDS".into(), pids.join(" ")),
    ];
    if let Ok(h) = procfs.hostname() {
        env.push(("GTE_NODE".into(), h));
    }
    // the scheduler's ids, from the first attributed process that has them
    for (var, out) in [
        ("SLURM_JOB_ID", "GTE_SLURM_JOB_ID"),
        ("TORCHELASTIC_RUN_ID", "GTE_TORCHELASTIC_RUN_ID"),
    ] {
        let found = c.roots.iter().find_map(|&pid| {
            let raw = procfs.environ(pid).ok()?;
            crate::attribution::identity::env_pairs(&raw)
                .into_iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        });
        if let Some(v) = found {
            env.push((out.into(), v));
        }
    }
    env
}

/// Runs `cmd` to its end or its timeout; the outcome and a line for the log with the start
/// of its output.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> (Outcome, String) {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (Outcome::Failed, format!("cannot start: {e}")),
    };
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            String::from_utf8_lossy(&kept).into_owned()
        })
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output: Vec<String> = readers
        .into_iter()
        .map(|r| r.join().unwrap_or_default())
        .collect();
    let text = output.join("").trim().replace('\n', " | ");
    match status {
        Some(s) if s.success() => (Outcome::Ok, format!("command ran: {text}")),
        Some(s) => (Outcome::Failed, format!("command failed ({s}): {text}")),
        None => (
            Outcome::Failed,
            format!("command killed after {timeout:?}: {text}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;

    #[test]
    fn signal_names_with_or_without_sig_in_any_case() {
        assert_eq!(signal_number("SIGUSR1"), Some(libc::SIGUSR1));
        assert_eq!(signal_number("usr1"), Some(libc::SIGUSR1));
        assert_eq!(signal_number(" SigTerm "), Some(libc::SIGTERM));
        assert_eq!(signal_number("SIGFOO"), None);
        assert_eq!(signal_number(""), None);
        assert_eq!(signal_name(libc::SIGUSR2), "SIGUSR2");
    }

    fn state_of(pid: u32) -> u8 {
        Procfs::default().stat(pid).unwrap().state
    }

    fn wait_state(pid: u32, want: impl Fn(u8) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if want(state_of(pid)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// A PID that is not the member it was (its start time differs) is never signalled.
    #[test]
    fn a_reused_pid_is_not_signalled() {
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = Procfs::default().stat(pid).unwrap().start_time;
        let stranger = Member {
            pid,
            start_time: start + 1,
            launcher: false,
        };
        let (sent, errors) = send(&Procfs::default(), &[stranger], libc::SIGSTOP);
        assert!(sent.is_empty() && errors.is_empty());
        // the witness: the same PID with its true start time is signalled
        let me = Member {
            pid,
            start_time: start,
            launcher: false,
        };
        assert_eq!(send(&Procfs::default(), &[me], libc::SIGSTOP).0, [pid]);
        assert!(wait_state(pid, |s| s == b'T'));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn exec_output_is_bounded_and_a_slow_command_is_killed() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "head -c 100000 /dev/zero | tr '\\0' x; echo; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (o, text) = run_bounded(&mut cmd, Duration::from_secs(10));
        assert_eq!(o, Outcome::Failed);
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.len() < MAX_EXEC_OUTPUT * 2 + 100, "{}", text.len());
        let mut slow = Command::new("sleep");
        slow.arg("30").stdout(Stdio::piped()).stderr(Stdio::piped());
        let t = Instant::now();
        let (o, text) = run_bounded(&mut slow, Duration::from_millis(200));
        assert_eq!(o, Outcome::Failed);
        assert!(text.contains("killed after"), "{text}");
        assert!(t.elapsed() < Duration::from_secs(10));
        let mut ok = Command::new("true");
        ok.stdout(Stdio::piped()).stderr(Stdio::piped());
        assert_eq!(run_bounded(&mut ok, Duration::from_secs(10)).0, Outcome::Ok);
    }

    fn executor() -> Executor {
        Executor {
            procfs: Procfs::default(),
            state: Arc::new(Mutex::new(ActionsState::default())),
            own_pid: std::process::id(),
        }
    }

    fn pause_action(dry_run: bool) -> Action {
        Action {
            name: "hold".into(),
            matchers: vec![],
            runs: vec![],
            what: Do::Pause,
            resume_on_resolve: true,
            dry_run,
            cooldown: Duration::ZERO,
        }
    }

    fn alert(fp: &str) -> Alert {
        Alert {
            fingerprint: fp.into(),
            labels: [("alertname".to_string(), "TrainingLossNaN".to_string())].into(),
            starts_at: String::new(),
        }
    }

    fn counts(e: &Executor) -> Vec<(&'static str, Outcome, u64)> {
        lock(&e.state)
            .counts
            .iter()
            .map(|((k, _, o), n)| (*k, *o, *n))
            .collect()
    }

    /// A dry run counts and does nothing; a real pause stops the tree and is held until the
    /// last alert holding it resolves; only the run's tree is touched.
    #[test]
    fn dry_run_then_pause_held_by_two_alerts_then_resume() {
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut other = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let e = executor();
        let roots = [child.id()];
        let ctx = |action, alert| Context {
            action,
            alert,
            run: "r",
            members: e.tree(&roots),
            roots: &roots,
        };
        let (dry, real) = (pause_action(true), pause_action(false));
        let (a1, a2) = (alert("f1"), alert("f2"));
        let (dry, real, a1, a2) = (&dry, &real, &a1, &a2);
        e.act(ctx(dry, a1));
        assert_eq!(counts(&e), [("pause", Outcome::DryRun, 1)]);
        assert!(lock(&e.state).paused.is_empty());
        e.act(ctx(real, a1));
        assert!(wait_state(child.id(), |s| s == b'T'));
        assert_eq!(lock(&e.state).paused["r"].members[0].pid, child.id());
        // a second alert joins the hold without signalling again
        e.act(ctx(real, a2));
        assert_eq!(
            counts(&e),
            [
                ("pause", Outcome::Ok, 1),
                ("pause", Outcome::DryRun, 1),
                ("pause", Outcome::Skipped, 1)
            ]
        );
        e.resume(real, a1, "r");
        assert_eq!(state_of(child.id()), b'T', "still held by f2");
        e.resume(real, a2, "r");
        assert!(wait_state(child.id(), |s| s != b'T'));
        assert!(lock(&e.state).paused.is_empty());
        assert_ne!(state_of(other.id()), b'T', "a process of no run");
        for c in [&mut child, &mut other] {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}
