//! Per-run training state: the latest values, the counters and the progress timestamps that
//! `/metrics` reports for each run.
//!
//! The tailer feeds parser [`Event`]s into a [`RunState`]; the exposition code reads it. Caps
//! on keys live here so that a log cannot grow our memory without bound.

pub mod attempt;
pub mod errors;
pub mod history;
pub mod keys;
pub mod known;

use std::collections::BTreeMap;

pub use attempt::Attempt;
pub use errors::{LastError, MAX_ERROR_MESSAGE_BYTES};
pub use keys::KeyMap;
pub use known::{Known, KNOWN_COUNT};

use std::path::Path;
use std::sync::Mutex;

use std::sync::Arc;

use self::history::Series;
use crate::attribution::{self, GpuProcesses, Holder, RunGpu};
use crate::parse::events::{self, KIND_COUNT};
use crate::parse::guard;
use crate::parse::rules::{Rule, RuleKind};
use crate::parse::{clean, Event, Format, LineParser, Progress, Record, RecordCap};
use crate::tail::{self, FileEvent};

/// Keys beyond the well-known ones whose history is kept per run (the live page's small
/// charts). A key's history holds at most 36 KB for a run of any length, less when the
/// global budget ([`Limits::history_bytes`]) is shared by many runs.
pub const MAX_HISTORY_OTHER_KEYS: usize = 16;

/// Limits applied to what logs can create.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_keys_per_run: usize,
    /// Longest key kept, in bytes.
    pub max_key_bytes: usize,
    /// A run is active while its last activity is younger than this (seconds).
    pub idle_seconds: f64,
    /// Bytes the page's history may hold, all runs together: past it every series is
    /// decimated evenly (see [`crate::training::history`]).
    pub history_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_keys_per_run: 512,
            max_key_bytes: 128,
            idle_seconds: 3600.0,
            history_bytes: 32 << 20,
        }
    }
}

/// Why a line was skipped (`training_lines_skipped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    /// Longer than the line limit (1 MiB by default): dropped unread.
    TooLong,
    /// NUL bytes or mostly control characters.
    Binary,
}

impl SkipReason {
    pub const ALL: [SkipReason; 2] = [SkipReason::TooLong, SkipReason::Binary];
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooLong => "too_long",
            SkipReason::Binary => "binary",
        }
    }
}

/// Everything we know about one run.
#[derive(Debug, Clone)]
pub struct RunState {
    pub path: String,
    /// `auto` until the first record, then the format that parsed it.
    pub format: Format,
    pub step: Option<f64>,
    pub max_steps: Option<f64>,
    pub known: [Option<f64>; KNOWN_COUNT],
    /// Every other numeric key, as printed.
    pub metrics: KeyMap<f64>,
    pub nonfinite: KeyMap<u64>,
    /// User rule series: (rule index, label values) → value.
    pub rule_values: BTreeMap<(usize, Vec<String>), f64>,
    pub lines: u64,
    pub records: u64,
    pub parse_errors: u64,
    pub skipped: [u64; 2],
    pub keys_dropped: u64,
    pub last_record: Option<f64>,
    pub last_progress: Option<f64>,
    /// The end-of-training summary was seen (and no progress since).
    pub finished: bool,
    /// Live processes holding the log open, from the last attribution scan.
    pub holders: Vec<Holder>,
    /// When the last holder was seen gone (unix seconds); cleared when one appears.
    pub holders_gone_at: Option<f64>,
    /// The run name from the writer's environment, once found (it sticks).
    pub env_run: Option<String>,
    /// GPUs the holders compute on, and the GPU memory they use (from NVML's processes).
    pub gpus: Vec<RunGpu>,
    pub gpu_memory_bytes: Option<u64>,
    /// Per-key history by step for the live page: the well-known keys and the first
    /// [`MAX_HISTORY_OTHER_KEYS`] others.
    pub history: KeyMap<Series>,
    history_other: usize,
    /// Bytes accounted to `history` ([`Series::bytes`]), and the part that is overhead.
    history_bytes: usize,
    history_overhead: usize,
    /// Buckets each series may hold and series that may still be started: set by the owner
    /// of all runs from the global budget (unbounded for a run on its own).
    history_cap: usize,
    history_room: usize,
    step_from_records: bool,
    rate_from_records: bool,
    bar_total: Option<u64>,
    /// The file's bars are Lightning's: their counts are batches within an epoch, not steps.
    bars_are_epochs: bool,
    /// Where the last record of each format (a log interleaves them: the Trainer's dicts
    /// and DeepSpeed's engine lines) has its keys in the maps above, by position.
    slots: Vec<(Format, Vec<KeySlots>)>,
    /// The entry of `slots` the record being applied uses.
    slots_in: usize,
    /// Crash and error events seen, by well-known kind ([`EventKind`] as index).
    pub events: [u64; KIND_COUNT],
    /// Events of the kinds user rules declare (`event:`), by name.
    pub rule_events: BTreeMap<String, u64>,
    /// The cause of the run's latest crash: see [`RunState::error_found`].
    pub last_error: Option<LastError>,
    /// Tracebacks open and torchrun's root-cause block, for the event lines.
    tracker: events::Tracker,
    /// The first error of each rank since the last one's crash began (bounded by ranks).
    crash_errors: Vec<LastError>,
    /// Restarts from a checkpoint and the work they redid (see [`Attempt`]).
    pub attempt: Attempt,
}

impl RunState {
    pub fn new(path: impl Into<String>, format: Format) -> Self {
        RunState {
            path: path.into(),
            format,
            step: None,
            max_steps: None,
            known: [None; KNOWN_COUNT],
            metrics: KeyMap::new(),
            nonfinite: KeyMap::new(),
            rule_values: BTreeMap::new(),
            lines: 0,
            records: 0,
            parse_errors: 0,
            skipped: [0; 2],
            keys_dropped: 0,
            last_record: None,
            last_progress: None,
            finished: false,
            holders: Vec::new(),
            holders_gone_at: None,
            env_run: None,
            gpus: Vec::new(),
            gpu_memory_bytes: None,
            history: KeyMap::new(),
            history_other: 0,
            history_bytes: 0,
            history_overhead: 0,
            history_cap: history::MAX_BUCKETS,
            history_room: usize::MAX,
            step_from_records: false,
            rate_from_records: false,
            bar_total: None,
            bars_are_epochs: false,
            slots: Vec::new(),
            slots_in: 0,
            events: [0; KIND_COUNT],
            rule_events: BTreeMap::new(),
            last_error: None,
            tracker: events::Tracker::default(),
            crash_errors: Vec::new(),
            attempt: Attempt::default(),
        }
    }

    pub fn get(&self, k: Known) -> Option<f64> {
        self.known[k as usize]
    }

    pub fn skip(&mut self, reason: SkipReason) {
        self.skipped[reason as usize] += 1;
    }

    /// Whether the run is believed to be running at `now` (unix seconds): no end-of-training
    /// summary, and a live process holds the log; with no holder, not when the holders exited
    /// after the last activity (a crash), else while the last activity is recent.
    pub fn active(&self, now: f64, limits: &Limits) -> bool {
        if self.finished {
            return false;
        }
        if !self.holders.is_empty() {
            return true;
        }
        let last = match (self.last_record, self.last_progress) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return false,
            },
        };
        if self.holders_gone_at.is_some_and(|gone| last <= gone) {
            return false;
        }
        now - last < limits.idle_seconds
    }

    /// Records the processes an attribution scan found holding the log at `now`.
    pub fn set_holders(&mut self, holders: Vec<Holder>, now: f64) {
        if holders.is_empty() {
            if !self.holders.is_empty() {
                self.holders_gone_at = Some(now);
            }
        } else {
            self.holders_gone_at = None;
            if self.env_run.is_none() {
                self.env_run = holders.iter().find_map(|h| h.env_run.clone());
            }
        }
        self.holders = holders;
        if self.holders.is_empty() {
            self.gpus.clear();
            self.gpu_memory_bytes = None;
        }
    }

    /// Joins the holders with the GPUs' compute processes (NVML's view).
    pub fn set_gpus(&mut self, gpus: &[GpuProcesses]) {
        let (used, memory) = attribution::join_gpus(&self.holders, gpus);
        self.gpus = used;
        self.gpu_memory_bytes = memory;
    }

    /// Applies one parser event read at `now`. Returns the number of keys the caps dropped.
    pub fn apply(&mut self, event: Event<'_>, now: f64, limits: &Limits) -> u64 {
        match event {
            Event::Record(mut r) => self.record(&mut r, now, limits),
            Event::Progress(p) => {
                self.progress(p, now);
                0
            }
            Event::Malformed(_) => {
                self.parse_errors += 1;
                0
            }
        }
    }

    /// Applies a user rule's match. Returns the number of series the key cap dropped.
    ///
    /// A counter only goes up: an increment that is not finite or is negative would poison
    /// it for good (`x + NaN` stays NaN, and a decrease reads as a reset), so it is skipped
    /// and counted as a parse error, and the counter goes on from its last value.
    pub fn rule_match(
        &mut self,
        rule: usize,
        kind: RuleKind,
        labels: &[&str],
        v: f64,
        limits: &Limits,
    ) -> u64 {
        if kind == RuleKind::Counter && !(v.is_finite() && v >= 0.0) {
            self.parse_errors += 1;
            return 0;
        }
        // a lookup without allocating: label values are compared as strings
        let found = self
            .rule_values
            .range_mut((rule, Vec::new())..(rule + 1, Vec::new()))
            .find(|((_, have), _)| have.iter().map(String::as_str).eq(labels.iter().copied()));
        if let Some((_, slot)) = found {
            match kind {
                RuleKind::Gauge => *slot = v,
                RuleKind::Counter => *slot += v,
            }
            return 0;
        }
        if self.rule_values.len() >= limits.max_keys_per_run
            || labels.iter().any(|l| l.len() > limits.max_key_bytes)
        {
            self.keys_dropped += 1;
            return 1;
        }
        let key = (rule, labels.iter().map(|s| s.to_string()).collect());
        self.rule_values.insert(key, v);
        0
    }

    /// Sets the step, from the training bar (`bar`) or a record.
    fn set_step(&mut self, step: f64, now: f64, bar: bool) {
        if self.step.is_none_or(|s| step > s) {
            self.last_progress = Some(now);
            self.finished = false;
        }
        self.step = Some(step);
        self.attempt.step(step, now, bar);
    }

    fn progress(&mut self, p: Progress, now: f64) {
        let Some(total) = p.total else { return };
        if self.bars_are_epochs {
            return;
        }
        match self.bar_total {
            None => self.bar_total = Some(total),
            Some(t) if t == total => {}
            // a new training bar (a second `train()` in the same process) starts at 0; after
            // the end-of-training summary a bar is `evaluate()`'s, never the training bar
            Some(_) if p.n == 0 && !self.finished => {
                self.bar_total = Some(total);
                // a new training of its own length, not a resumed one: no restart
                self.attempt.new_training();
            }
            Some(_) => return,
        }
        if !self.step_from_records {
            self.attempt.bar_frame(p.n, now);
            self.set_step(p.n as f64, now, true);
            self.max_steps = Some(total as f64);
        }
        let rate_ok = self.attempt.bar_rate_ok(p.n);
        if let (Some(rate), false, true) = (p.rate, self.rate_from_records, rate_ok) {
            self.known[Known::StepsPerSecond as usize] = Some(rate);
        }
    }

    /// The file was rotated or truncated: a restarted job may write its new attempt there.
    pub fn file_changed(&mut self) {
        self.attempt.file_changed = true;
    }

    /// Notes the read time of a line (the start of the first attempt, and of an attempt
    /// that begins in a replaced file).
    fn line_read(&mut self, now: f64) {
        let a = &mut self.attempt;
        if a.started.is_none() {
            a.started = Some(now);
        }
        if a.file_changed {
            a.file_changed = false;
            a.candidate_start = Some(now);
        }
    }

    /// Adds a value to its key's history (`known`: the key is a well-known one).
    fn remember(&mut self, key: &str, known: bool, x: f64, v: f64) {
        if let Some(s) = self.history.get_mut(key) {
            self.history_bytes += s.push_within(x, v, self.history_cap);
            return;
        }
        if self.history_room == 0 {
            // the budget is spread as thin as it goes: no new series until runs go
            return;
        }
        if !known {
            if self.history_other >= MAX_HISTORY_OTHER_KEYS {
                return;
            }
            self.history_other += 1;
        }
        self.history_room -= 1;
        let mut s = Series::new();
        s.push_within(x, v, self.history_cap);
        self.history_bytes += s.bytes(key);
        self.history_overhead += history::series_overhead(key.len());
        self.history.insert(key.to_string(), s);
    }

    /// Bytes accounted to the run's history.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// Decimates every series of the run to at most `cap` buckets.
    fn limit_history(&mut self, cap: usize) {
        self.history_cap = cap;
        let mut bytes = 0;
        self.history.for_each_mut(|k, s| {
            s.limit(cap);
            bytes += s.bytes(k);
        });
        self.history_bytes = bytes;
    }

    /// Applies a record read at `now` (see [`RunState::apply`]); its values are drained,
    /// their buffer left for the parser to reuse.
    pub fn record(&mut self, r: &mut Record<'_>, now: f64, limits: &Limits) -> u64 {
        self.records += 1;
        self.last_record = Some(now);
        if self.format == Format::Auto {
            self.format = r.format;
        }
        if r.format.bars_count_epochs() && !self.bars_are_epochs {
            // what the epoch bar said before its first postfix was not a step
            self.bars_are_epochs = true;
            if !self.step_from_records {
                self.step = None;
                self.max_steps = None;
                self.bar_total = None;
                self.attempt.void();
            }
            if !self.rate_from_records {
                self.known[Known::StepsPerSecond as usize] = None;
            }
        }
        if let Some(m) = r.max_steps {
            self.max_steps = Some(m);
        }
        if let Some(s) = r.step {
            self.step_from_records = true;
            self.set_step(s, now, false);
        }
        let x = self.step.unwrap_or(self.records as f64);
        // what the record's cap left out of its line
        let mut dropped = r.dropped;
        self.slots_in = match self.slots.iter().position(|(f, _)| *f == r.format) {
            Some(at) => at,
            None => {
                self.slots.push((r.format, Vec::new()));
                self.slots.len() - 1
            }
        };
        for (i, (key, v)) in r.values.drain(..).enumerate() {
            if key.len() > limits.max_key_bytes {
                dropped += 1;
                continue;
            }
            let slots = self.slots_of(i, &key);
            let known = slots.known;
            match slots.history {
                Some(h) => {
                    self.history_bytes += self.history.at_mut(h).push_within(x, v, self.history_cap)
                }
                None => {
                    self.remember(&key, known.is_some(), x, v);
                    self.cache(i, |s, run| s.history = run.history.slot(&key));
                }
            }
            // the well-known keys' counters exist from their first value, at 0, so that
            // `increase()` sees the first NaN; other keys' appear with their first NaN
            let bump = u64::from(!v.is_finite());
            if bump > 0 || known.is_some_and(Known::watched) {
                if let Some(n) = slots.nonfinite {
                    *self.nonfinite.at_mut(n) += bump;
                } else if let Some(c) = self.nonfinite.get_mut(key.as_ref()) {
                    *c += bump;
                } else if self.nonfinite.len() < limits.max_keys_per_run {
                    self.nonfinite.insert(key.to_string(), bump);
                    self.cache(i, |s, run| s.nonfinite = run.nonfinite.slot(&key));
                } else if bump > 0 {
                    dropped += 1;
                }
            }
            if let Some(k) = known {
                if k == Known::StepsPerSecond {
                    self.rate_from_records = true;
                }
                self.known[k as usize] = Some(v);
            } else if let Some(m) = slots.metric {
                *self.metrics.at_mut(m) = v;
            } else if let Some(m) = self.metrics.slot(&key) {
                // a key another format's record added since this position was remembered
                *self.metrics.at_mut(m) = v;
                self.cache(i, |s, _| s.metric = Some(m));
            } else if self.metrics.len() < limits.max_keys_per_run {
                self.metrics.insert(key.to_string(), v);
                self.cache(i, |s, run| s.metric = run.metrics.slot(&key));
            } else {
                dropped += 1;
            }
        }
        if r.end_of_training {
            self.finished = true;
        }
        self.keys_dropped += dropped;
        dropped
    }
}

/// Where the key at one position of the last record (of a format) sits in each of a run's
/// maps. Nearly every record of a run has the keys of the one before of its format, in the
/// same order: with this, such a record costs one comparison per key instead of a lookup in
/// each map.
#[derive(Debug, Clone, Default)]
struct KeySlots {
    key: String,
    known: Option<Known>,
    history: Option<usize>,
    nonfinite: Option<usize>,
    metric: Option<usize>,
}

/// Positions of a record whose slots are remembered (a record's first keys).
const CACHED_POSITIONS: usize = 64;

impl RunState {
    /// The slots of `key`, the `i`-th key of a record: remembered when the last record had
    /// the same key there, else looked up (and remembered).
    fn slots_of(&mut self, i: usize, key: &str) -> KeySlots {
        let at = self.slots_in;
        if let Some(s) = self.slots[at].1.get(i) {
            if s.key == key {
                return KeySlots {
                    key: String::new(),
                    ..*s
                };
            }
        }
        let found = KeySlots {
            key: String::new(),
            known: Known::from_key(key),
            history: self.history.slot(key),
            nonfinite: self.nonfinite.slot(key),
            metric: self.metrics.slot(key),
        };
        if i < CACHED_POSITIONS {
            let slots = &mut self.slots[at].1;
            if i >= slots.len() {
                slots.resize_with(i + 1, KeySlots::default);
            }
            let s = &mut slots[i];
            s.key.clear();
            s.key.push_str(key);
            s.known = found.known;
            s.history = found.history;
            s.nonfinite = found.nonfinite;
            s.metric = found.metric;
        }
        found
    }

    /// Updates the remembered slots of position `i` after a map gained its key.
    fn cache(&mut self, i: usize, set: impl FnOnce(&mut KeySlots, &RunState)) {
        let at = self.slots_in;
        if i < self.slots[at].1.len() {
            let mut s = std::mem::take(&mut self.slots[at].1[i]);
            set(&mut s, self);
            self.slots[at].1[i] = s;
        }
    }
}

/// All runs, fed by the tailer. Implements [`tail::Sink`]: each line is cleaned, parsed with
/// its file's parser and applied to its run.
#[derive(Debug)]
pub struct Runs {
    pub limits: Limits,
    pub max_runs: usize,
    pub runs: BTreeMap<String, Run>,
    /// Files refused because `max_runs` was reached.
    pub runs_dropped: u64,
    /// Attribution scans completed; `None` while attribution is not running.
    pub attribution_cycles: Option<u64>,
    /// The runs this node's GPU compute processes belong to, by their environment, from the
    /// last attribution cycle (logs followed here or not).
    pub node: attribution::node::NodeRuns,
    /// GPU compute processes whose environment could not be read, over all cycles.
    pub environ_errors: u64,
    /// User rules, applied to the cleaned lines of the runs they are scoped to.
    pub rules: Arc<Vec<Rule>>,
    /// Every run's history together: bytes accounted, the overhead part, series, and the
    /// buckets each series may hold within `limits.history_bytes`.
    history_bytes: usize,
    history_overhead: usize,
    history_series: usize,
    history_cap: usize,
    /// [`Runs::history_room`]'s last answer, and the overhead, series, budget and key size
    /// it was computed from: it changes only when a history grows, and a division per line
    /// shows in the parse's wall time.
    room: (usize, [usize; 4]),
}

/// One run: its state and the parser of its file.
#[derive(Debug)]
pub struct Run {
    pub state: RunState,
    parser: LineParser,
    /// Read errors on the run's file (permission denied, a directory ...).
    pub read_errors: u64,
    /// Bytes read from the run's file, partial lines included.
    pub bytes_read: u64,
    warned_keys: bool,
    /// A parser panicked on a line of this run's file (logged once).
    warned_panic: bool,
    /// Indexes of the user rules scoped to this run.
    rules: Vec<usize>,
}

impl Run {
    /// A parser panicked on a line of this run: the line counts as a parse error; the run's
    /// first such failure is logged.
    /// Applies one line to its run (named `run`), with the daemon's `rules` and `limits`.
    fn line(&mut self, run: &str, line: &[u8], time: f64, rules: &[Rule], limits: &Limits) {
        let r = self;
        r.state.lines += 1;
        r.state.line_read(time);
        let bytes = clean::Bytes::of(line);
        if bytes.binary {
            r.state.skip(SkipReason::Binary);
            return;
        }
        #[cfg(feature = "fault-injection")]
        crate::parse::guard::fault::outside(line);
        // the parsers' work on the line, contained: a panic in one costs this line alone
        let cleaned = match guard::contain(|| clean::clean_read(line, bytes)) {
            Ok(c) => c,
            Err(panic) => return r.parser_failed(run, panic),
        };
        let parser = &mut r.parser;
        let state = &mut r.state;
        let parsed = guard::contain(|| {
            let hits: Vec<_> = if r.rules.is_empty() {
                Vec::new()
            } else {
                (r.rules.iter())
                    .filter_map(|&i| Some((i, rules[i].apply(&cleaned.text)?)))
                    .collect()
            };
            let event = parser.parse(&cleaned);
            // an error is never a metric record or a progress bar: the lines a format reads
            // as one (nearly every line) are not searched for events
            if !matches!(event, Some(Event::Record(_) | Event::Progress(_))) {
                state.error_line(line, &cleaned.text, time);
            }
            (hits, event)
        });
        let (hits, event) = match parsed {
            Ok(parsed) => parsed,
            Err(panic) => return r.parser_failed(run, panic),
        };
        let mut dropped = 0;
        for (i, (labels, v)) in hits {
            let kind = rules[i].kind;
            dropped += r.state.rule_match(i, kind, &labels, v, limits);
            if let Some(name) = rules[i].event.as_deref() {
                r.state.rule_event(name, line, &cleaned.text, time);
            }
        }
        match event {
            Some(Event::Record(mut rec)) => {
                dropped += r.state.record(&mut rec, time, limits);
                r.parser.recycle(rec.values);
            }
            Some(event) => dropped += r.state.apply(event, time, limits),
            None => {}
        }
        if dropped > 0 && !r.warned_keys {
            r.warned_keys = true;
            tracing::warn!(run, max_keys = limits.max_keys_per_run, "key limit reached; further keys are counted in gpu_train_exporter_keys_dropped_total");
        }
    }

    fn parser_failed(&mut self, run: &str, panic: guard::ParserPanic) {
        self.state.parse_errors += 1;
        if !self.warned_panic {
            self.warned_panic = true;
            tracing::error!(run, path = %self.state.path, error = %panic, "a parser failed on a line of this log: the line is skipped and counted in training_parse_errors_total (further failures in this run are counted, not logged)");
        }
    }
}

impl Runs {
    pub fn new(limits: Limits, max_runs: usize) -> Self {
        Runs {
            limits,
            max_runs,
            runs: BTreeMap::new(),
            runs_dropped: 0,
            attribution_cycles: None,
            node: Default::default(),
            environ_errors: 0,
            rules: Arc::new(Vec::new()),
            history_bytes: 0,
            history_overhead: 0,
            history_series: 0,
            history_cap: history::MAX_BUCKETS,
            room: (0, [usize::MAX; 4]),
        }
    }

    /// Bytes accounted to every run's history: at most `limits.history_bytes` once a line
    /// has been applied.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// Series that may still be started with every series keeping at least
    /// [`history::MIN_BUCKETS`] buckets within the budget.
    fn history_room(&mut self) -> usize {
        let from = [
            self.history_overhead,
            self.history_series,
            self.limits.history_bytes,
            self.limits.max_key_bytes,
        ];
        if self.room.1 != from {
            let floor = history::MIN_BUCKETS * history::BUCKET_BYTES;
            let used = self.history_overhead + self.history_series * floor;
            let one = floor + history::series_overhead(self.limits.max_key_bytes);
            self.room = (self.limits.history_bytes.saturating_sub(used) / one, from);
        }
        self.room.0
    }

    /// Gives every series the same share of the budget: the buckets `history_series` series
    /// may each hold, every series above it decimated (a run idle for days as much as a
    /// busy one), the accounted bytes recounted.
    fn rebalance_history(&mut self) {
        let cap = history::fair_buckets(
            self.limits.history_bytes,
            self.history_series,
            self.history_overhead,
        );
        let lowered = cap < self.history_cap;
        self.history_cap = cap;
        if !lowered && self.history_bytes <= self.limits.history_bytes {
            return;
        }
        let mut bytes = 0;
        for r in self.runs.values_mut() {
            r.state.limit_history(cap);
            bytes += r.state.history_bytes;
        }
        self.history_bytes = bytes;
    }

    /// Sets the user rules (before any file is opened).
    pub fn with_rules(mut self, rules: Arc<Vec<Rule>>) -> Self {
        self.rules = rules;
        self
    }

    /// Replaces the user rules while running (a config reload). A rule defined exactly as
    /// before keeps its series in every run; a changed or removed rule's series are dropped.
    pub fn set_rules(&mut self, rules: Arc<Vec<Rule>>) {
        let same = |a: &Rule, b: &Rule| format!("{a:?}") == format!("{b:?}");
        let moved: Vec<Option<usize>> = self
            .rules
            .iter()
            .map(|old| rules.iter().position(|new| same(old, new)))
            .collect();
        for (name, r) in self.runs.iter_mut() {
            let values = std::mem::take(&mut r.state.rule_values);
            r.state.rule_values = values
                .into_iter()
                .filter_map(|((i, labels), v)| {
                    Some(((moved.get(i).copied().flatten()?, labels), v))
                })
                .collect();
            r.rules = (0..rules.len())
                .filter(|&i| rules[i].applies_to(name))
                .collect();
        }
        self.rules = rules;
    }

    /// The runs with the label each is exported under: its name, or the run name its writer's
    /// environment gave. Labels are unique in every case: names from paths are unique already
    /// and are never taken by an environment name; when an environment name is taken (two logs
    /// whose writers share `SLURM_JOB_ID=77`, or a path-derived run called `77`), the first run
    /// by name keeps it and each other becomes `77~` and 16 hex digits of a hash of its own
    /// name ([`unique_label`]), stable across scrapes and restarts.
    pub fn labelled(&self) -> Vec<(std::borrow::Cow<'_, str>, &Run)> {
        use std::borrow::Cow;
        let mut taken: std::collections::BTreeSet<Cow<'_, str>> = self
            .runs
            .iter()
            .filter(|(_, r)| r.state.env_run.is_none())
            .map(|(name, _)| Cow::Borrowed(name.as_str()))
            .collect();
        let mut out = Vec::with_capacity(self.runs.len());
        for (name, r) in &self.runs {
            let label = match &r.state.env_run {
                None => Cow::Borrowed(name.as_str()),
                Some(env) if !taken.contains(env.as_str()) => {
                    taken.insert(Cow::Borrowed(env.as_str()));
                    Cow::Borrowed(env.as_str())
                }
                Some(env) => {
                    let label = unique_label(env, name, |l| taken.contains(l));
                    taken.insert(Cow::Owned(label.clone()));
                    Cow::Owned(label)
                }
            };
            out.push((label, r));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Total keys dropped by the per-run cap, over all runs.
    pub fn keys_dropped(&self) -> u64 {
        self.runs.values().map(|r| r.state.keys_dropped).sum()
    }
}

/// The label for a run named `name` whose environment name `env` is taken: `env~HASH` with
/// 16 hex digits of a hash of `name` (cut so that it stays within the bound of a run name),
/// and in the unlikely case that is taken too, a counter after it until `is_taken` says no.
pub fn unique_label(env: &str, name: &str, is_taken: impl Fn(&str) -> bool) -> String {
    let suffix = format!("~{:016x}", tail::discover::name_hash(name));
    let mut base = String::with_capacity(tail::discover::MAX_RUN_NAME_BYTES);
    for c in env.chars() {
        if base.len() + c.len_utf8() + suffix.len() > tail::discover::MAX_RUN_NAME_BYTES {
            break;
        }
        base.push(c);
    }
    base.push_str(&suffix);
    let mut label = base.clone();
    let mut n = 1u64;
    while is_taken(&label) {
        n += 1;
        label = format!("{base}.{n}");
    }
    label
}

impl tail::Sink<Format> for Runs {
    fn open(&mut self, run: &str, path: &Path, format: &Format) -> bool {
        let format = *format;
        if let Some(existing) = self.runs.get(run) {
            if existing.state.path != path.to_string_lossy() {
                tracing::warn!(run, path = %path.display(), other = %existing.state.path, "two files map to the same run name; ignoring the second");
                return false;
            }
            return true;
        }
        if self.runs.len() >= self.max_runs {
            if self.runs_dropped == 0 {
                tracing::warn!(run, path = %path.display(), max_runs = self.max_runs, "run limit reached; further runs are counted in gpu_train_exporter_runs_dropped_total");
            }
            self.runs_dropped += 1;
            return false;
        }
        tracing::info!(run, path = %path.display(), %format, "following log");
        self.runs.insert(
            run.to_string(),
            Run {
                state: RunState::new(path.to_string_lossy(), format),
                parser: LineParser::new(format).with_cap(RecordCap {
                    max_keys: self.limits.max_keys_per_run,
                    max_key_bytes: self.limits.max_key_bytes,
                    always: |k| Known::from_key(k).is_some(),
                }),
                read_errors: 0,
                bytes_read: 0,
                warned_keys: false,
                warned_panic: false,
                rules: (0..self.rules.len())
                    .filter(|&i| self.rules[i].applies_to(run))
                    .collect(),
            },
        );
        true
    }

    fn line(&mut self, run: &str, line: &[u8], time: f64) {
        let room = self.history_room();
        let Some(r) = self.runs.get_mut(run) else {
            return;
        };
        r.state.history_cap = self.history_cap;
        r.state.history_room = room;
        let before = (
            r.state.history_bytes,
            r.state.history_overhead,
            r.state.history.len(),
        );
        r.line(run, line, time, &self.rules, &self.limits);
        // a line only grows a run's history; the budget is enforced before the next one
        self.history_bytes += r.state.history_bytes - before.0;
        self.history_overhead += r.state.history_overhead - before.1;
        self.history_series += r.state.history.len() - before.2;
        if self.history_bytes > self.limits.history_bytes {
            self.rebalance_history();
        }
    }

    fn too_long(&mut self, run: &str) {
        if let Some(r) = self.runs.get_mut(run) {
            r.state.lines += 1;
            r.state.skip(SkipReason::TooLong);
        }
    }

    fn read(&mut self, run: &str, bytes: u64) {
        if let Some(r) = self.runs.get_mut(run) {
            r.bytes_read += bytes;
        }
    }

    fn event(&mut self, run: &str, event: &FileEvent) {
        let Some(r) = self.runs.get_mut(run) else {
            return;
        };
        match event {
            FileEvent::Error(msg) => {
                r.read_errors += 1;
                tracing::warn!(run, path = %r.state.path, error = %msg, "cannot read log");
            }
            FileEvent::Deleted => tracing::info!(run, path = %r.state.path, "log file deleted"),
            FileEvent::Rotated => {
                r.parser.file_changed(true);
                r.state.file_changed();
                tracing::info!(run, path = %r.state.path, "log file rotated")
            }
            FileEvent::Truncated { repeated } => {
                r.parser.file_changed(false);
                r.state.file_changed();
                if !repeated {
                    tracing::info!(run, path = %r.state.path, "log file truncated")
                }
            }
            FileEvent::Replaced { by } => {
                // the new file is read from its start, as a rotated one
                r.state.path = by.to_string_lossy().into_owned();
                r.parser.file_changed(true);
                r.state.file_changed();
            }
            FileEvent::Opened => {}
        }
    }

    fn forget(&mut self, run: &str) {
        tracing::info!(
            run,
            "log gone past the idle limit or no longer configured; dropping the run's series"
        );
        if let Some(r) = self.runs.remove(run) {
            self.history_bytes -= r.state.history_bytes;
            self.history_overhead -= r.state.history_overhead;
            self.history_series -= r.state.history.len();
            // the others' series may grow back into the share it leaves
            self.history_cap = history::fair_buckets(
                self.limits.history_bytes,
                self.history_series,
                self.history_overhead,
            );
        }
    }
}

/// Shares [`Runs`] between the tailer thread and the HTTP server.
impl tail::Sink<Format> for &Mutex<Runs> {
    fn open(&mut self, run: &str, path: &Path, format: &Format) -> bool {
        lock(self).open(run, path, format)
    }
    fn line(&mut self, run: &str, line: &[u8], time: f64) {
        lock(self).line(run, line, time)
    }
    fn too_long(&mut self, run: &str) {
        lock(self).too_long(run)
    }
    fn read(&mut self, run: &str, bytes: u64) {
        lock(self).read(run, bytes)
    }
    fn event(&mut self, run: &str, event: &FileEvent) {
        lock(self).event(run, event)
    }
    fn forget(&mut self, run: &str) {
        lock(self).forget(run)
    }
}

pub use crate::sync::lock;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::events::EventKind;

    fn feed(run: &mut RunState, lines: &[&str], now: f64) {
        let mut p = LineParser::new(Format::Auto);
        for l in lines {
            let c = clean(l.as_bytes());
            if let Some(e) = p.parse(&c) {
                run.apply(e, now, &Limits::default());
            }
        }
    }

    #[test]
    fn hf_step_comes_from_the_training_bar_not_the_eval_bar() {
        let mut r = RunState::new("x", Format::Auto);
        feed(
            &mut r,
            &[
                " 3%|▎         | 10/300 [00:03<02:14,  2.16it/s]",
                "{'loss': '5.951', 'grad_norm': '2.706', 'learning_rate': '0.000225', 'epoch': '0.05155'}",
                " 40%|████      | 2/5 [00:00<00:00, 13.44it/s]\x1b[A",
            ],
            100.0,
        );
        assert_eq!((r.step, r.max_steps), (Some(10.0), Some(300.0)));
        assert_eq!(r.get(Known::Loss), Some(5.951));
        assert_eq!(r.get(Known::StepsPerSecond), Some(2.16));
        assert_eq!(r.format, Format::Hf);
        assert_eq!(r.last_progress, Some(100.0));
    }

    #[test]
    fn a_resumed_hf_bar_counts_one_restart_and_its_jump_is_no_throughput() {
        let mut r = RunState::new("x", Format::Auto);
        let bar = |n: u64, rate: &str| format!(" 50%|#    | {n}/600 [00:10<00:10, {rate}it/s]");
        let mut lines = vec![" 0%|          | 0/600 [00:00<?, ?it/s]".to_string()];
        lines.extend((1..=340).map(|n| bar(n, " 3.10")));
        feed(
            &mut r,
            &lines.iter().map(String::as_str).collect::<Vec<_>>(),
            1.0,
        );
        assert_eq!((r.attempt.restarts, r.step), (0, Some(340.0)));
        // an evaluation in between: a nested bar and an eval record change nothing
        feed(
            &mut r,
            &[
                "  0%|          | 0/5 [00:00<?, ?it/s]\x1b[A",
                " 40%|####      | 2/5 [00:00<00:00, 13.44it/s]\x1b[A",
                "{'eval_loss': '3.823', 'eval_runtime': '0.246', 'epoch': '0.2577'}",
            ],
            2.0,
        );
        assert_eq!((r.attempt.restarts, r.step), (0, Some(340.0)));
        // the job restarts from checkpoint-300: the bar opens again and jumps to 301
        feed(
            &mut r,
            &[
                "  Continuing training from checkpoint, will skip to saved global_step",
                "  0%|          | 0/600 [00:00<?, ?it/s]",
                " 50%|#####     | 301/600 [00:00<00:00, 2853.35it/s]",
            ],
            5.0,
        );
        assert_eq!(r.attempt.restarts, 1);
        assert_eq!(r.attempt.steps_redone, 40.0);
        assert_eq!(r.attempt.started, Some(5.0));
        assert_eq!(r.step, Some(301.0));
        assert_eq!(r.get(Known::StepsPerSecond), Some(3.10));
        feed(&mut r, &[&bar(302, "900.0"), &bar(303, " 3.20")], 6.0);
        assert_eq!(r.get(Known::StepsPerSecond), Some(3.20));
        assert_eq!(r.attempt.restarts, 1);
    }

    #[test]
    fn a_step_falling_back_in_records_is_a_restart_and_a_second_train_is_not() {
        let mut r = RunState::new("x", Format::Auto);
        let rec = |s: u32| format!("{{\"loss\": 1.0, \"step\": {s}}}");
        let lines: Vec<String> = [10, 20, 30, 40, 20, 30, 50].map(rec).into();
        feed(
            &mut r,
            &lines.iter().map(String::as_str).collect::<Vec<_>>(),
            1.0,
        );
        assert_eq!((r.attempt.restarts, r.attempt.steps_redone), (1, 20.0));
        // a second `train()` in the same process: a bar of another length from 0
        let mut r = RunState::new("y", Format::Auto);
        feed(
            &mut r,
            &[
                "  0%|          | 0/300 [00:00<?, ?it/s]",
                " 50%|#####     | 150/300 [00:30<00:30, 5.00it/s]",
                "100%|##########| 300/300 [01:00<00:00, 5.00it/s]",
                "  0%|          | 0/100 [00:00<?, ?it/s]",
                "  5%|#         | 5/100 [00:01<00:19, 5.00it/s]",
            ],
            1.0,
        );
        assert_eq!((r.attempt.restarts, r.step), (0, Some(5.0)));
    }

    #[test]
    fn a_restarted_job_writing_a_replaced_file_counts_from_the_new_files_first_line() {
        use crate::tail::Sink;
        let mut runs = Runs::new(Limits::default(), 4);
        let path = Path::new("job/train.log");
        assert!(runs.open("job", path, &Format::Auto));
        for (i, s) in [10, 20, 30, 40].iter().enumerate() {
            let line = format!("{{\"loss\": 1.0, \"step\": {s}}}");
            runs.line("job", line.as_bytes(), 100.0 + i as f64);
        }
        let state = |runs: &Runs| runs.runs["job"].state.attempt.clone();
        assert_eq!(
            (state(&runs).restarts, state(&runs).started),
            (0, Some(100.0))
        );
        // the job restarts and truncates its log: start-up noise, then the resumed steps
        runs.event("job", &FileEvent::Truncated { repeated: false });
        runs.line("job", b"loading checkpoint-20", 200.0);
        runs.line("job", b"{\"loss\": 1.0, \"step\": 25}", 230.0);
        let a = state(&runs);
        assert_eq!(
            (a.restarts, a.steps_redone, a.started),
            (1, 15.0, Some(200.0))
        );
        // the new attempt's progress is no restart, and its start stays
        runs.line("job", b"{\"loss\": 1.0, \"step\": 30}", 240.0);
        let a = state(&runs);
        assert_eq!((a.restarts, a.started), (1, Some(200.0)));
    }

    #[test]
    fn filtered_nan_counts_grad_norm() {
        let mut r = RunState::new("x", Format::Auto);
        feed(
            &mut r,
            &["{'loss': '0', 'grad_norm': 'nan', 'learning_rate': '1e-05'}"],
            1.0,
        );
        assert_eq!(r.get(Known::Loss), Some(0.0));
        assert_eq!(r.nonfinite.get("grad_norm"), Some(&1));
        assert!(r.get(Known::GradNorm).unwrap().is_nan());
    }

    #[test]
    fn summary_ends_the_run_and_new_progress_restarts_it() {
        let lim = Limits::default();
        let mut r = RunState::new("x", Format::Auto);
        feed(&mut r, &["{'loss': 1.0, 'step': 5}"], 10.0);
        assert!(r.active(20.0, &lim));
        assert!(!r.active(10.0 + 3600.0, &lim));
        feed(&mut r, &["{'train_runtime': 9.0, 'train_loss': 1.0}"], 11.0);
        assert!(!r.active(12.0, &lim));
        feed(&mut r, &["{'loss': 1.0, 'step': 6}"], 13.0);
        assert!(r.active(14.0, &lim));
    }

    #[test]
    fn epoch_bars_opening_again_before_the_first_record_are_no_restart() {
        let mut r = RunState::new("x", Format::Auto);
        feed(
            &mut r,
            &[
                "Epoch 0:   0%|          | 0/64 [00:00<?, ?it/s]",
                "Epoch 0:  50%|█████     | 32/64 [00:01<00:01, 20.00it/s]",
                "Epoch 0: 100%|██████████| 64/64 [00:03<00:00, 20.00it/s]",
                "Epoch 1:   0%|          | 0/64 [00:00<?, ?it/s]",
                "Epoch 1:  50%|█████     | 32/64 [00:01<00:01, 20.00it/s]",
            ],
            1.0,
        );
        let seen = r.attempt.restarts;
        feed(
            &mut r,
            &["Epoch 1:  52%|█████▏    | 33/64 [00:01<00:01, 20.00it/s, v_num=0, train_loss=0.4]"],
            2.0,
        );
        assert_eq!(
            (r.attempt.restarts, r.attempt.steps_redone),
            (0, 0.0),
            "{seen}"
        );
        assert_eq!(r.step, None);
    }

    #[test]
    fn lightning_epoch_bars_give_no_step() {
        let mut r = RunState::new("x", Format::Auto);
        feed(
            &mut r,
            &[
                "Epoch 0:   2%|▏         | 1/64 [00:00<00:05, 11.70it/s]",
                "Epoch 0:   2%|▏         | 1/64 [00:00<00:05, 11.66it/s, v_num=0, train_loss=0.422]",
                "Epoch 1:   3%|▎         | 2/64 [00:00<00:05, 12.09it/s]",
            ],
            1.0,
        );
        assert_eq!((r.step, r.max_steps), (None, None));
        assert_eq!(r.get(Known::StepsPerSecond), None);

        assert_eq!(r.get(Known::Loss), Some(0.422));
        assert_eq!(r.get(Known::Epoch), Some(0.0));
        assert_eq!(r.format, Format::Lightning);
    }

    #[test]
    fn labels_from_the_environment_are_unique_in_every_case() {
        use crate::tail::Sink;
        let mut runs = Runs::new(Limits::default(), 16);
        // two logs whose writers share SLURM_JOB_ID=77, path-derived runs called `77` and
        // `77/b/train.log` (what `ENV/NAME` would have made of the second)
        for name in [
            "a/train.log",
            "b/train.log",
            "77",
            "77/b/train.log",
            "c/train.log",
        ] {
            assert!(runs.open(name, Path::new(name), &Format::Auto));
        }
        let env = |runs: &mut Runs, name: &str, v: &str| {
            let h = Holder {
                pid: 1,
                command: "python".into(),
                env_run: Some(v.into()),
                ranks: Default::default(),
            };
            runs.runs
                .get_mut(name)
                .unwrap()
                .state
                .set_holders(vec![h], 1.0);
        };
        env(&mut runs, "a/train.log", "77");
        env(&mut runs, "b/train.log", "77");
        env(&mut runs, "c/train.log", "job");
        let labels = |runs: &Runs| -> Vec<String> {
            runs.labelled().iter().map(|(l, _)| l.to_string()).collect()
        };
        let first = labels(&runs);
        let hash = |n: &str| format!("{:016x}", crate::tail::discover::name_hash(n));
        assert_eq!(
            first,
            [
                "77".to_string(),
                "77/b/train.log".to_string(),
                format!("77~{}", hash("a/train.log")),
                format!("77~{}", hash("b/train.log")),
                "job".to_string(),
            ]
        );
        // the path-derived `77` keeps its name; no two labels are equal; stable across scrapes
        let unique: std::collections::BTreeSet<_> = first.iter().collect();
        assert_eq!(unique.len(), first.len());
        assert_eq!(labels(&runs), first);
        // a taken suffixed label makes a counter, never a duplicate
        let taken = format!("77~{}", hash("x"));
        let l = unique_label("77", "x", |c| c == taken);
        assert_eq!(l, format!("{taken}.2"));
        // a long environment name stays within a run name's bound
        let long = "j".repeat(128);
        let l = unique_label(&long, "x", |_| false);
        assert!(l.len() <= crate::tail::discover::MAX_RUN_NAME_BYTES, "{l}");
        assert!(l.ends_with(&hash("x")));
    }

    #[test]
    fn holders_decide_liveness_and_gpus_follow_them() {
        let lim = Limits::default();
        let mut r = RunState::new("x", Format::Auto);
        feed(&mut r, &["{'loss': 1.0, 'step': 5}"], 10.0);
        let h = Holder {
            pid: 42,
            command: "python".into(),
            env_run: Some("job-1".into()),
            ranks: Default::default(),
        };
        r.set_holders(vec![h.clone()], 11.0);
        // held: active even past the idle limit
        assert!(r.active(10.0 + 2.0 * 3600.0, &lim));
        assert_eq!(r.env_run.as_deref(), Some("job-1"));
        r.set_gpus(&[GpuProcesses {
            index: 3,
            uuid: "GPU-x".into(),
            processes: vec![(42, Some(1024))],
        }]);
        assert_eq!(r.gpus.len(), 1);
        assert_eq!(r.gpu_memory_bytes, Some(1024));
        // every holder gone without the summary: inactive at once, GPUs gone, name kept
        r.set_holders(vec![], 12.0);
        assert!(!r.active(12.5, &lim));
        assert!(r.gpus.is_empty() && r.gpu_memory_bytes.is_none());
        assert_eq!(r.env_run.as_deref(), Some("job-1"));
        // a writer that does not keep the file open appends later: the idle rule again
        feed(&mut r, &["{'loss': 1.0, 'step': 6}"], 13.0);
        assert!(r.active(14.0, &lim));
    }

    #[test]
    fn a_counter_rule_skips_nonfinite_and_negative_increments_and_goes_on() {
        let lim = Limits::default();
        let mut r = RunState::new("x", Format::Auto);
        let c = RuleKind::Counter;
        let at = |r: &RunState| r.rule_values.get(&(0, vec!["a".to_string()])).copied();
        // a bad first increment creates nothing
        assert_eq!(r.rule_match(0, c, &["a"], f64::NAN, &lim), 0);
        assert_eq!(at(&r), None);
        r.rule_match(0, c, &["a"], 2.0, &lim);
        for bad in [f64::NAN, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
            r.rule_match(0, c, &["a"], bad, &lim);
        }
        r.rule_match(0, c, &["a"], 3.0, &lim);
        assert_eq!(at(&r), Some(5.0));
        assert_eq!(r.parse_errors, 5);
        // a gauge takes any value, NaN included
        r.rule_match(1, RuleKind::Gauge, &["a"], -1.0, &lim);
        r.rule_match(1, RuleKind::Gauge, &["a"], f64::NAN, &lim);
        assert!(r.rule_values[&(1, vec!["a".to_string()])].is_nan());
        assert_eq!(r.parse_errors, 5);
    }

    #[test]
    fn key_cap_drops_and_counts() {
        let lim = Limits {
            max_keys_per_run: 3,
            ..Limits::default()
        };
        let mut r = RunState::new("x", Format::Auto);
        let mut p = LineParser::new(Format::Auto);
        let line = "{'a': 1, 'b': 2, 'c': 3, 'd': 4, 'e': 5, 'loss': 1}";
        let c = clean(line.as_bytes());
        let dropped = r.apply(p.parse(&c).unwrap(), 0.0, &lim);
        assert_eq!(dropped, 2);
        assert_eq!(r.metrics.len(), 3);
        assert_eq!(r.get(Known::Loss), Some(1.0));
    }

    fn error_lines(r: &mut RunState, lines: &[&str], now: f64) {
        for l in lines {
            let c = clean(l.as_bytes());
            r.error_line(l.as_bytes(), &c.text, now);
        }
    }

    #[test]
    fn root_cause_wins_over_the_cascade_in_either_order() {
        // rank 0's cascade printed before rank 1's OOM: the specific error is the cause
        let mut r = RunState::new("x", Format::Auto);
        error_lines(
            &mut r,
            &[
                "[rank0]: Traceback (most recent call last):",
                "[rank1]: Traceback (most recent call last):",
                "[rank0]: RuntimeError: Connection closed by peer [10.0.0.1]:1",
                "[rank1]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 MiB.",
            ],
            5.0,
        );
        let e = r.last_error.clone().unwrap();
        assert_eq!((e.event.as_str(), e.rank), ("oom", Some(1)));
        assert_eq!(r.events[EventKind::Exception as usize], 1);
        // two generic errors: torchrun's root-cause block picks rank 1's
        let mut r = RunState::new("x", Format::Auto);
        let block = [
            "Root Cause (first observed failure):",
            "rank      : 1 (local_rank: 1)",
            "exitcode  : 1 (pid: 9)",
            "traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html",
            "============================================================",
        ];
        error_lines(
            &mut r,
            &[
                "[rank0]: Traceback (most recent call last):",
                "[rank0]: RuntimeError: Connection closed by peer",
                "[rank1]: Traceback (most recent call last):",
                "[rank1]: ValueError: bad batch",
            ],
            5.0,
        );
        assert_eq!(r.last_error.as_ref().unwrap().rank, Some(0));
        error_lines(&mut r, &block, 6.0);
        let e = r.last_error.clone().unwrap();
        assert_eq!(e.label(), "rank 1: ValueError: bad batch");
        assert_eq!(e.time, 5.0);
    }

    #[test]
    fn a_new_crash_after_progress_replaces_the_last() {
        let mut r = RunState::new("x", Format::Auto);
        feed(&mut r, &["{'loss': 1.0, 'step': 5}"], 1.0);
        error_lines(
            &mut r,
            &["torch.OutOfMemoryError: CUDA out of memory."],
            2.0,
        );
        // the same crash: a generic error after it is the cascade
        error_lines(&mut r, &["Killed"], 3.0);
        assert_eq!(r.last_error.as_ref().unwrap().event, "oom");
        // resumed and past the error: the next crash's first error is the cause
        feed(&mut r, &["{'loss': 1.0, 'step': 6}"], 4.0);
        error_lines(&mut r, &["Killed"], 5.0);
        let e = r.last_error.clone().unwrap();
        assert_eq!(
            (e.event.as_str(), e.step, e.time),
            ("process_killed", Some(6.0), 5.0)
        );
        assert_eq!(r.events[EventKind::ProcessKilled as usize], 2);
        assert_eq!(r.events[EventKind::Oom as usize], 1);
    }

    #[test]
    fn a_rule_declares_an_event_kind() {
        use crate::parse::rules::RuleSpec;
        use crate::tail::Sink;
        let spec = RuleSpec {
            name: "xid_total".into(),
            pattern: "NVRM: Xid".into(),
            kind: Some("counter".into()),
            event: Some("xid".into()),
            ..RuleSpec::default()
        };
        let rules = Arc::new(vec![Rule::compile(&spec).unwrap()]);
        let mut runs = Runs::new(Limits::default(), 4).with_rules(rules);
        assert!(runs.open("r", Path::new("r"), &Format::Auto));
        runs.line(
            "r",
            b"NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.",
            7.0,
        );
        runs.line("r", b"{'loss': 1.0}", 8.0);
        let s = &runs.runs["r"].state;
        assert_eq!(s.rule_events.get("xid"), Some(&1));
        let e = s.last_error.as_ref().unwrap();
        assert_eq!((e.event.as_str(), e.time), ("xid", 7.0));
        assert!(e.message.contains("fallen off the bus"));
    }
}
