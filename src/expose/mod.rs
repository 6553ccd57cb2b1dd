//! Exposition: writes metric families in the Prometheus text format (0.0.4) or in
//! OpenMetrics 1.0, and the training families read from [`crate::training`].
//!
//! The values are computed at scrape time from shared state, so there is no registry of
//! live metric objects to keep in step with runs that come and go. Both formats come from one
//! writer: they differ only in the counter family name, the content type, the escaping of
//! `"` in HELP text (OpenMetrics escapes it, the text format must not) and `# EOF`.
//!
//! The encoder is written here rather than taken from the `prometheus-client` crate on
//! purpose: that crate (0.25) writes only OpenMetrics, so Prometheus servers that ask for the
//! text format would get a dialect they did not ask for, and it does not escape label values
//! or HELP text (prometheus/client_rust issue #151, open since 2023). Our label values and a
//! rule's HELP come from logs and configs that anyone who writes a log controls, so escaping
//! is not optional.

use std::fmt::Write as _;

pub mod actions;
pub mod exporter;

use crate::attribution::node::NodeRuns;
use crate::parse::events::EventKind;
use crate::parse::rules::{Rule, RuleKind};
use crate::training::{Known, Limits, RunState, SkipReason};

/// The exposition dialect a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Text,
    OpenMetrics,
}

impl Dialect {
    pub fn content_type(self) -> &'static str {
        match self {
            Dialect::Text => "text/plain; version=0.0.4; charset=utf-8",
            Dialect::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// Writes families and samples into a string buffer.
pub struct Encoder<'a> {
    out: &'a mut String,
    dialect: Dialect,
}

impl<'a> Encoder<'a> {
    pub fn new(out: &'a mut String, dialect: Dialect) -> Self {
        Encoder { out, dialect }
    }

    /// Starts a family. Counter names end in `_total`; OpenMetrics names the family without it.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let fam = match (self.dialect, kind) {
            (Dialect::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let t = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = write!(self.out, "# HELP {fam} ");
        escape_help(self.out, help, self.dialect);
        let _ = writeln!(self.out, "\n# TYPE {fam} {t}");
    }

    /// Writes one sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        write_value(self.out, value);
        self.out.push('\n');
    }

    /// Ends the exposition (`# EOF` in OpenMetrics).
    pub fn finish(self) {
        if self.dialect == Dialect::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
    }
}

/// Formats a float as Prometheus parses it: integers plainly, `NaN`, `+Inf`, `-Inf`.
pub fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == v.trunc() && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else if v.abs() >= 1e-4 && v.abs() < 1e15 {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

fn escape_label(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: `\` and newline escaped in both dialects; `"` only in OpenMetrics, whose
/// grammar escapes it there as in label values (the text format reads `\"` literally).
fn escape_help(out: &mut String, v: &str, dialect: Dialect) {
    for c in v.chars() {
        match c {
            '"' if dialect == Dialect::OpenMetrics => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// What the training families need to know beyond the runs themselves.
pub struct TrainingView<'a> {
    pub runs: &'a [(&'a str, &'a RunState)],
    pub limits: &'a Limits,
    pub now: f64,
    /// Leave out the series that depend on wall time (for `parse` and golden files).
    pub wall_clock: bool,
    /// The user rules, whose series the runs hold.
    pub rules: &'a [Rule],
    /// The runs of this node's GPU processes, by their environment (with wall time only).
    pub node: Option<&'a NodeRuns>,
}

/// A gauge with one series per run that has a value (`get`); no family when none has.
fn run_gauge(
    enc: &mut Encoder<'_>,
    runs: &[(&str, &RunState)],
    name: &str,
    help: &str,
    get: &dyn Fn(&RunState) -> Option<f64>,
) {
    if runs.iter().all(|(_, r)| get(r).is_none()) {
        return;
    }
    enc.family(name, help, Kind::Gauge);
    for (run, r) in runs {
        if let Some(v) = get(r) {
            enc.sample(name, &[("run", run)], v);
        }
    }
}

/// Writes every training family, each run a series, families in a fixed order.
pub fn encode_training(enc: &mut Encoder<'_>, view: &TrainingView<'_>) {
    let runs = view.runs;
    let gauge =
        |enc: &mut Encoder<'_>, name: &str, help: &str, get: &dyn Fn(&RunState) -> Option<f64>| {
            run_gauge(enc, runs, name, help, get)
        };
    gauge(enc, "training_step", "Latest optimizer step.", &|r| r.step);
    gauge(
        enc,
        "training_max_steps",
        "Total optimizer steps of the run, when known.",
        &|r| r.max_steps,
    );
    for k in Known::ALL {
        gauge(enc, k.family(), k.help(), &|r| r.get(k));
    }

    if runs.iter().any(|(_, r)| !r.metrics.is_empty()) {
        enc.family(
            "training_metric",
            "Latest value of every other numeric key a run logs, by key as printed.",
            Kind::Gauge,
        );
        for (run, r) in runs {
            for (key, v) in &r.metrics {
                enc.sample("training_metric", &[("run", run), ("key", key)], *v);
            }
        }
    }
    enc.family(
        "training_nonfinite_values_total",
        "NaN and infinite values seen, by run and key.",
        Kind::Counter,
    );
    for (run, r) in runs {
        for (key, n) in &r.nonfinite {
            enc.sample(
                "training_nonfinite_values_total",
                &[("run", run), ("key", key)],
                *n as f64,
            );
        }
    }

    let counter =
        |enc: &mut Encoder<'_>, name: &str, help: &str, get: &dyn Fn(&RunState) -> u64| {
            enc.family(name, help, Kind::Counter);
            for (run, r) in runs {
                enc.sample(name, &[("run", run)], get(r) as f64);
            }
        };
    counter(
        enc,
        "training_log_lines_total",
        "Lines read from the run's log.",
        &|r| r.lines,
    );
    counter(
        enc,
        "training_records_total",
        "Metric records parsed from the run's log.",
        &|r| r.records,
    );
    counter(
        enc,
        "training_parse_errors_total",
        "Lines that looked like records but could not be parsed.",
        &|r| r.parse_errors,
    );
    enc.family(
        "training_lines_skipped_total",
        "Lines skipped unread, by reason.",
        Kind::Counter,
    );
    for (run, r) in runs {
        for reason in SkipReason::ALL {
            enc.sample(
                "training_lines_skipped_total",
                &[("run", run), ("reason", reason.as_str())],
                r.skipped[reason as usize] as f64,
            );
        }
    }

    // from the first step on, at 0, so that `increase()` sees the first restart
    if runs.iter().any(|(_, r)| r.step.is_some()) {
        for (name, help, get) in [
            (
                "training_run_restarts_total",
                "Restarts of the run from a checkpoint: its step fell back below the highest it had reached.",
                (|r: &RunState| r.attempt.restarts as f64) as fn(&RunState) -> f64,
            ),
            (
                "training_steps_redone_total",
                "Steps done again after restarts: the highest step before each restart minus the step it resumed at, summed.",
                |r: &RunState| r.attempt.steps_redone,
            ),
        ] {
            enc.family(name, help, Kind::Counter);
            for (run, r) in runs {
                if r.step.is_some() {
                    enc.sample(name, &[("run", run)], get(r));
                }
            }
        }
    }

    encode_events(enc, view);

    if view.wall_clock {
        gauge(
            enc,
            "training_run_start_timestamp_seconds",
            "Unix time the first line of the run's current attempt was read (the first line of the log, or the line where a restart began).",
            &|r| r.attempt.started,
        );
        gauge(enc, "training_last_record_timestamp_seconds", "Unix time the run's last metric record was read (for records found at start-up: the file's modification time).", &|r| r.last_record);
        gauge(
            enc,
            "training_last_progress_timestamp_seconds",
            "Unix time the run's step last increased.",
            &|r| r.last_progress,
        );
        enc.family("training_run_active", "1 while the run is believed to be running: no end-of-training summary, and a live process holds its log or (when none is seen) recent activity.", Kind::Gauge);
        for (run, r) in runs {
            enc.sample(
                "training_run_active",
                &[("run", run)],
                if r.active(view.now, view.limits) {
                    1.0
                } else {
                    0.0
                },
            );
        }
        if runs.iter().any(|(_, r)| !r.holders.is_empty()) {
            enc.family(
                "training_run_process_info",
                "1 for each live process that holds the run's log file open.",
                Kind::Gauge,
            );
            let mut pid = String::new();
            for (run, r) in runs {
                for h in &r.holders {
                    pid.clear();
                    let _ = write!(pid, "{}", h.pid);
                    enc.sample(
                        "training_run_process_info",
                        &[("run", run), ("pid", &pid), ("command", &h.command)],
                        1.0,
                    );
                }
            }
        }
    }
    if view.wall_clock {
        encode_run_gpus(enc, view);
    }
    encode_rules(enc, view);
    enc.family(
        "training_run_finished",
        "1 once the run's end-of-training summary was read (and no step progress since).",
        Kind::Gauge,
    );
    for (run, r) in runs {
        enc.sample(
            "training_run_finished",
            &[("run", run)],
            if r.finished { 1.0 } else { 0.0 },
        );
    }
    enc.family(
        "training_run_info",
        "Identity of each run: its log path and format.",
        Kind::Gauge,
    );
    for (run, r) in runs {
        enc.sample(
            "training_run_info",
            &[
                ("run", run),
                ("path", &r.path),
                ("format", r.format.as_str()),
            ],
            1.0,
        );
    }
}

/// Crash and error events (`crate::parse::events`): `training_log_events_total{run,event}`,
/// at 0 for every well-known kind from a run's start so that `increase()` sees the first;
/// in the one-shot output (no wall clock, nothing scrapes it) only the kinds seen, so that a
/// log without errors prints no event series. The last error's `_info` and, with wall time,
/// its timestamp.
fn encode_events(enc: &mut Encoder<'_>, view: &TrainingView<'_>) {
    let runs = view.runs;
    let seen = |r: &RunState| r.events.iter().any(|&n| n > 0) || !r.rule_events.is_empty();
    if view.wall_clock || runs.iter().any(|(_, r)| seen(r)) {
        let name = "training_log_events_total";
        enc.family(
            name,
            "Crash and error events read from the run's log, by kind (oom, nccl_timeout, nccl_error, cuda_error, process_killed, exception, and the kinds user rules declare).",
            Kind::Counter,
        );
        for (run, r) in runs {
            for kind in EventKind::ALL {
                let n = r.events[kind as usize];
                if view.wall_clock || n > 0 {
                    enc.sample(name, &[("run", run), ("event", kind.as_str())], n as f64);
                }
            }
            for (event, n) in &r.rule_events {
                enc.sample(name, &[("run", run), ("event", event)], *n as f64);
            }
        }
    }
    if runs.iter().any(|(_, r)| r.last_error.is_some()) {
        let name = "training_run_last_error_info";
        enc.family(
            name,
            "1 for the cause of the run's latest crash: the first specific error (not the cascade after it), or torchrun's root cause; the message is the log line, `rank N: ` first when known, cut to 200 bytes; rank, when known, is the rank that printed it or that torchrun named.",
            Kind::Gauge,
        );
        let mut rank = String::new();
        for (run, r) in runs {
            if let Some(e) = &r.last_error {
                let message = e.label();
                let mut labels = vec![
                    ("run", *run),
                    ("event", e.event.as_str()),
                    ("message", &message),
                ];
                if e.rank.is_some() {
                    labels.push(("rank", rank_label(&mut rank, e.rank)));
                }
                enc.sample(name, &labels, 1.0);
            }
        }
        run_gauge(
            enc,
            runs,
            "training_run_last_error_step",
            "The run's step when the cause of its latest crash was read.",
            &|r| r.last_error.as_ref().and_then(|e| e.step),
        );
        if view.wall_clock {
            run_gauge(
                enc,
                runs,
                "training_run_last_error_timestamp_seconds",
                "Unix time the cause of the run's latest crash was read.",
                &|r| r.last_error.as_ref().map(|e| e.time),
            );
        }
    }
}

/// A rank's label value: empty when unknown.
fn rank_label(out: &mut String, v: Option<u32>) -> &str {
    out.clear();
    if let Some(v) = v {
        let _ = write!(out, "{v}");
    }
    out
}

/// The run ↔ GPU mapping (`training_run_gpu_info{run,gpu,uuid,rank,local_rank}`, one series
/// per GPU and run), `training_run_gpu_memory_used_bytes` of the runs followed here,
/// `training_run_world_size` and `training_run_node_info`. A run is a followed log (the GPUs
/// of its holders) or a name from the environment of this node's GPU processes; a log whose
/// writer has that name is exported under it, so the two meet in one series.
fn encode_run_gpus(enc: &mut Encoder<'_>, view: &TrainingView<'_>) {
    use std::collections::BTreeMap;
    type Gpu<'a> = (&'a str, Option<u32>, Option<u32>);
    let mut gpus: BTreeMap<(&str, u32), Gpu<'_>> = BTreeMap::new();
    let mut places: BTreeMap<&str, (Option<u32>, Option<u32>)> = BTreeMap::new();
    for (run, r) in view.runs {
        for g in &r.gpus {
            gpus.insert((run, g.index), (&g.uuid, g.rank, g.local_rank));
        }
        if !r.holders.is_empty() {
            let ws = r.holders.iter().find_map(|h| h.ranks.world_size);
            let node = r.holders.iter().filter_map(|h| h.ranks.node_rank).min();
            places.insert(run, (ws, node));
        }
    }
    if let Some(node) = view.node {
        for ((run, index), g) in &node.gpus {
            gpus.entry((run, *index))
                .or_insert((&g.uuid, g.rank, g.local_rank));
        }
        for (run, p) in &node.runs {
            let e = places.entry(run).or_insert((None, None));
            e.0 = e.0.or(p.world_size);
            e.1 = match (e.1, p.node_rank) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    let (mut idx, mut rank, mut local) = (String::new(), String::new(), String::new());
    if !gpus.is_empty() {
        enc.family(
            "training_run_gpu_info",
            "1 for each GPU a run computes on: the GPUs of the processes holding its log, and of every compute process whose environment names the run; rank and local_rank of its lowest-ranked process there, empty when unknown.",
            Kind::Gauge,
        );
        for ((run, index), (uuid, r, l)) in &gpus {
            idx.clear();
            let _ = write!(idx, "{index}");
            let r = rank_label(&mut rank, *r);
            let l = rank_label(&mut local, *l);
            enc.sample(
                "training_run_gpu_info",
                &[
                    ("run", run),
                    ("gpu", &idx),
                    ("uuid", uuid),
                    ("rank", r),
                    ("local_rank", l),
                ],
                1.0,
            );
        }
    }
    if view.runs.iter().any(|(_, r)| r.gpu_memory_bytes.is_some()) {
        enc.family(
            "training_run_gpu_memory_used_bytes",
            "GPU memory used by the run's processes, over all its GPUs.",
            Kind::Gauge,
        );
        for (run, r) in view.runs {
            if let Some(b) = r.gpu_memory_bytes {
                enc.sample(
                    "training_run_gpu_memory_used_bytes",
                    &[("run", run)],
                    b as f64,
                );
            }
        }
    }
    if places.values().any(|p| p.0.is_some()) {
        enc.family(
            "training_run_world_size",
            "Processes in the run over all its nodes (WORLD_SIZE, else SLURM_NTASKS), when its processes here say.",
            Kind::Gauge,
        );
        for (run, (ws, _)) in &places {
            if let Some(ws) = ws {
                enc.sample("training_run_world_size", &[("run", run)], *ws as f64);
            }
        }
    }
    if !places.is_empty() {
        enc.family(
            "training_run_node_info",
            "1 for each run with processes on this node; node_rank is its lowest node rank here (GROUP_RANK, NODE_RANK, SLURM_NODEID), empty when unknown.",
            Kind::Gauge,
        );
        for (run, (_, node)) in &places {
            let n = rank_label(&mut rank, *node);
            enc.sample(
                "training_run_node_info",
                &[("run", run), ("node_rank", n)],
                1.0,
            );
        }
    }
}

/// One family per user rule, one series per run and label values.
fn encode_rules(enc: &mut Encoder<'_>, view: &TrainingView<'_>) {
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(1 + crate::parse::rules::MAX_LABELS);
    for (i, rule) in view.rules.iter().enumerate() {
        let kind = match rule.kind {
            RuleKind::Gauge => Kind::Gauge,
            RuleKind::Counter => Kind::Counter,
        };
        enc.family(&rule.name, &rule.help, kind);
        for (run, r) in view.runs {
            for ((_, values), v) in r.rule_values.range((i, Vec::new())..(i + 1, Vec::new())) {
                labels.clear();
                labels.push(("run", run));
                for (name, value) in rule.labels.iter().zip(values) {
                    labels.push((name, value));
                }
                enc.sample(&rule.name, &labels, *v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_escaping() {
        let mut s = String::new();
        let mut e = Encoder::new(&mut s, Dialect::Text);
        e.family("x_total", "h\\elp\nline", Kind::Counter);
        e.sample("x_total", &[("key", "loss\"} 1e9 #\n\\")], f64::NAN);
        e.sample("x_total", &[], 9.77e-6);
        e.sample("x_total", &[], 1.885e12);
        e.sample("x_total", &[], 0.5);
        e.sample("x_total", &[], f64::NEG_INFINITY);
        e.finish();
        assert_eq!(
            s,
            "# HELP x_total h\\\\elp\\nline\n# TYPE x_total counter\nx_total{key=\"loss\\\"} 1e9 #\\n\\\\\"} NaN\nx_total 9.77e-6\nx_total 1885000000000\nx_total 0.5\nx_total -Inf\n"
        );
    }

    #[test]
    fn openmetrics_counter_family_and_eof() {
        let mut s = String::new();
        let mut e = Encoder::new(&mut s, Dialect::OpenMetrics);
        e.family("x_total", "h", Kind::Counter);
        e.sample("x_total", &[], 1.0);
        e.finish();
        assert_eq!(s, "# HELP x h\n# TYPE x counter\nx_total 1\n# EOF\n");
    }

    #[test]
    fn a_quote_in_help_is_escaped_in_openmetrics_only() {
        for (dialect, want) in [
            (Dialect::Text, "# HELP x say \"hi\" \\\\ ok\n"),
            (Dialect::OpenMetrics, "# HELP x say \\\"hi\\\" \\\\ ok\n"),
        ] {
            let mut s = String::new();
            let mut e = Encoder::new(&mut s, dialect);
            e.family("x", "say \"hi\" \\ ok", Kind::Gauge);
            assert!(s.starts_with(want), "{dialect:?}: {s}");
        }
    }

    #[test]
    fn restarts_from_the_first_step_and_the_attempts_start_with_wall_time_only() {
        let mut fresh = RunState::new("/l/a.log", crate::parse::Format::Hf);
        fresh.step = Some(3.0);
        fresh.attempt.started = Some(100.0);
        let mut resumed = RunState::new("/l/b.log", crate::parse::Format::Hf);
        resumed.step = Some(30.0);
        resumed.attempt.restarts = 2;
        resumed.attempt.steps_redone = 46.0;
        resumed.attempt.started = Some(200.0);
        let stepless = RunState::new("/l/c.log", crate::parse::Format::Auto);
        let encode = |wall_clock: bool| {
            let mut s = String::new();
            let mut e = Encoder::new(&mut s, Dialect::Text);
            encode_training(
                &mut e,
                &TrainingView {
                    runs: &[("a", &fresh), ("b", &resumed), ("c", &stepless)],
                    limits: &Limits::default(),
                    now: 250.0,
                    wall_clock,
                    rules: &[],
                    node: None,
                },
            );
            s
        };
        let daemon = encode(true);
        for line in [
            "training_run_restarts_total{run=\"a\"} 0\n",
            "training_run_restarts_total{run=\"b\"} 2\n",
            "training_steps_redone_total{run=\"a\"} 0\n",
            "training_steps_redone_total{run=\"b\"} 46\n",
            "training_run_start_timestamp_seconds{run=\"b\"} 200\n",
        ] {
            assert!(daemon.contains(line), "{line}");
        }
        // a run with no step yet has no restart series
        assert!(!daemon.contains("training_run_restarts_total{run=\"c\"}"));
        let oneshot = encode(false);
        assert!(!oneshot.contains("training_run_start_timestamp_seconds"));
        assert!(oneshot.contains("training_steps_redone_total{run=\"b\"} 46\n"));
    }

    #[test]
    fn run_processes_and_gpus() {
        use crate::attribution::{GpuProcesses, Holder};
        let mut r = RunState::new("/l/train.log", crate::parse::Format::Hf);
        r.set_holders(
            vec![Holder {
                pid: 7,
                command: "python3".into(),
                env_run: None,
                ranks: Default::default(),
            }],
            1.0,
        );
        r.set_gpus(&[GpuProcesses {
            index: 2,
            uuid: "GPU-2".into(),
            processes: vec![(7, Some(5 << 30))],
        }]);
        let mut s = String::new();
        let mut e = Encoder::new(&mut s, Dialect::Text);
        encode_training(
            &mut e,
            &TrainingView {
                runs: &[("sft", &r)],
                limits: &Limits::default(),
                now: 2.0,
                wall_clock: true,
                rules: &[],
                node: None,
            },
        );
        assert!(
            s.contains("training_run_process_info{run=\"sft\",pid=\"7\",command=\"python3\"} 1\n")
        );
        assert!(s.contains(
            "training_run_gpu_info{run=\"sft\",gpu=\"2\",uuid=\"GPU-2\",rank=\"\",local_rank=\"\"} 1\n"
        ));
        assert!(s.contains("training_run_gpu_memory_used_bytes{run=\"sft\"} 5368709120\n"));
        assert!(s.contains("training_run_active{run=\"sft\"} 1\n"));
    }

    fn training_text(runs: &[(&str, &RunState)], wall_clock: bool) -> String {
        let mut s = String::new();
        let mut e = Encoder::new(&mut s, Dialect::Text);
        encode_training(
            &mut e,
            &TrainingView {
                runs,
                limits: &Limits::default(),
                now: 100.0,
                wall_clock,
                rules: &[],
                node: None,
            },
        );
        s
    }

    #[test]
    fn event_counters_exist_at_zero_on_metrics_and_only_when_seen_in_parse_output() {
        let quiet = RunState::new("/l/a.log", crate::parse::Format::Hf);
        let mut crashed = RunState::new("/l/b.log", crate::parse::Format::Hf);
        let line = "RuntimeError: CUDA error: an illegal memory access was encountered\u{7}\"x\"";
        crashed.error_line(line.as_bytes(), line, 42.0);
        let live = training_text(&[("a", &quiet), ("b", &crashed)], true);
        for kind in EventKind::ALL {
            let want = format!(
                "training_log_events_total{{run=\"a\",event=\"{}\"}} 0\n",
                kind.as_str()
            );
            assert!(live.contains(&want), "{want} in {live}");
        }
        assert!(live.contains("training_log_events_total{run=\"b\",event=\"cuda_error\"} 1\n"));
        // the label is cleaned (control byte) and escaped (quotes)
        assert!(live.contains(
            "training_run_last_error_info{run=\"b\",event=\"cuda_error\",message=\"RuntimeError: CUDA error: an illegal memory access was encountered \\\"x\\\"\"} 1\n"
        ), "{live}");
        assert!(live.contains("training_run_last_error_timestamp_seconds{run=\"b\"} 42\n"));
        assert!(!live.contains("training_run_last_error_timestamp_seconds{run=\"a\"}"));
        let once = training_text(&[("a", &quiet), ("b", &crashed)], false);
        assert!(!once.contains("run=\"a\",event="), "{once}");
        assert!(once.contains("training_log_events_total{run=\"b\",event=\"cuda_error\"} 1\n"));
        assert!(!once.contains("training_run_last_error_timestamp_seconds"));
        // a log without errors prints no event family at all in parse output
        assert!(!training_text(&[("a", &quiet)], false).contains("training_log_events_total"));
        // the rank that printed the cause is its own label; none when unknown (run b above)
        let mut ranked = RunState::new("/l/c.log", crate::parse::Format::Hf);
        let raw = "[rank1]: torch.OutOfMemoryError: CUDA out of memory.";
        ranked.error_line(raw.as_bytes(), &raw[9..], 42.0);
        let live = training_text(&[("c", &ranked)], true);
        assert!(live.contains(
            "training_run_last_error_info{run=\"c\",event=\"oom\",message=\"rank 1: torch.OutOfMemoryError: CUDA out of memory.\",rank=\"1\"} 1\n"
        ), "{live}");
    }
}
