//! User rules: a regular expression with named captures that sets a metric, for any log line
//! no built-in format reads (mtail's idea, without a program to write).
//!
//! Patterns use the `regex` crate, which matches in linear time: no pattern can backtrack
//! catastrophically on a hostile line. Guard rails: a pattern is at most [`MAX_PATTERN_BYTES`]
//! long and its compiled program at most [`MAX_PROGRAM_BYTES`]; every rule is compiled when
//! the config is loaded (`check-config` reports `rules[i].pattern`); metric and label names
//! follow Prometheus naming and may not take the exporter's own prefixes.

use std::collections::BTreeSet;

use regex::{Regex, RegexBuilder};

use super::lex::number::number;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Largest compiled pattern accepted.
pub const MAX_PROGRAM_BYTES: usize = 1 << 20;
/// Most label captures per rule.
pub const MAX_LABELS: usize = 8;
/// Name prefixes that belong to the exporter's own families: every family it serves starts
/// with one (the training state, vLLM's engine statistics, the GPU and host collectors, the
/// exporter itself), so a rule can never write a second family of the same name.
pub const RESERVED_PREFIXES: &[&str] = &[
    "training_",
    "inference_",
    "gpu_train_exporter_",
    "gpu_",
    "host_",
];

/// Gauge (the value replaces the last) or counter (the value, or 1, is added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Gauge,
    Counter,
}

/// A rule as written in the config file.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Metric name (`_total` for counters).
    pub name: String,
    /// Regular expression with named captures (`(?P<name>...)`).
    pub pattern: String,
    /// `gauge` (default) or `counter`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The capture holding the value; required for gauges, optional for counters (1 per match).
    pub value: Option<String>,
    /// Captures that become labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Run names or globs the rule applies to; all runs when empty.
    #[serde(default)]
    pub runs: Vec<String>,
    /// HELP text.
    pub help: Option<String>,
    /// An error event kind a match also is (`training_log_events_total{event}`, and a
    /// candidate for `training_run_last_error_info`): lower case, digits and `_`.
    pub event: Option<String>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub help: String,
    pub kind: RuleKind,
    regex: Regex,
    value: Option<usize>,
    /// Label names and their capture indexes.
    pub labels: Vec<String>,
    label_groups: Vec<usize>,
    runs: Vec<glob::Pattern>,
    /// The event kind a match is, from `event:`.
    pub event: Option<String>,
}

/// Longest event kind name a rule may declare.
pub const MAX_EVENT_BYTES: usize = 32;

/// A rule error: the key under `rules[i]` and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub key: &'static str,
    pub message: String,
}

fn err(key: &'static str, message: impl Into<String>) -> RuleError {
    RuleError {
        key,
        message: message.into(),
    }
}

/// Whether `s` is a valid Prometheus metric name.
pub fn valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Whether `s` is a valid Prometheus label name that a rule may set.
pub fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !s.starts_with("__")
}

impl Rule {
    /// Validates and compiles one rule.
    pub fn compile(spec: &RuleSpec) -> Result<Rule, RuleError> {
        let kind = match spec.kind.as_deref() {
            None | Some("gauge") => RuleKind::Gauge,
            Some("counter") => RuleKind::Counter,
            Some(other) => {
                return Err(err(
                    "type",
                    format!("{other:?} is not one of gauge, counter"),
                ))
            }
        };
        let name = &spec.name;
        if !valid_metric_name(name) {
            return Err(err(
                "name",
                format!("{name:?} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
            ));
        }
        if let Some(p) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(*p)) {
            return Err(err(
                "name",
                format!("{name:?}: names starting with {p:?} belong to the exporter"),
            ));
        }
        match (kind, name.ends_with("_total")) {
            (RuleKind::Counter, false) => {
                return Err(err("name", format!("counter {name:?} must end in _total")))
            }
            (RuleKind::Gauge, true) => {
                return Err(err(
                    "name",
                    format!("{name:?}: only counters end in _total"),
                ))
            }
            _ => {}
        }
        if spec.pattern.is_empty() {
            return Err(err("pattern", "is empty"));
        }
        if spec.pattern.len() > MAX_PATTERN_BYTES {
            return Err(err(
                "pattern",
                format!(
                    "is {} bytes long; at most {MAX_PATTERN_BYTES} are allowed",
                    spec.pattern.len()
                ),
            ));
        }
        let regex = RegexBuilder::new(&spec.pattern)
            .size_limit(MAX_PROGRAM_BYTES)
            .dfa_size_limit(MAX_PROGRAM_BYTES)
            .build()
            .map_err(|e| err("pattern", format!("does not compile: {e}")))?;
        let group = |key: &'static str, cap: &str| -> Result<usize, RuleError> {
            regex
                .capture_names()
                .position(|n| n == Some(cap))
                .ok_or_else(|| {
                    err(
                        key,
                        format!("{cap:?} is not a named capture of the pattern"),
                    )
                })
        };
        let value = match (&spec.value, kind) {
            (Some(v), _) => Some(group("value", v)?),
            (None, RuleKind::Counter) => None,
            (None, RuleKind::Gauge) => {
                return Err(err(
                    "value",
                    "a gauge needs the name of the capture that holds its value",
                ))
            }
        };
        if spec.labels.len() > MAX_LABELS {
            return Err(err(
                "labels",
                format!("at most {MAX_LABELS} labels per rule"),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut label_groups = Vec::new();
        for l in &spec.labels {
            if !valid_label_name(l) || l == "run" {
                return Err(err(
                    "labels",
                    format!("{l:?} is not a label name a rule may set (not `run`, not `__*`)"),
                ));
            }
            if !seen.insert(l) {
                return Err(err("labels", format!("{l:?} is listed twice")));
            }
            label_groups.push(group("labels", l)?);
        }
        if let Some(e) = &spec.event {
            let ok = e.len() <= MAX_EVENT_BYTES
                && e.starts_with(|c: char| c.is_ascii_lowercase())
                && e.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(err(
                    "event",
                    format!("{e:?} is not an event name ([a-z][a-z0-9_]*, at most {MAX_EVENT_BYTES} bytes)"),
                ));
            }
        }
        let mut runs = Vec::new();
        for r in &spec.runs {
            runs.push(
                glob::Pattern::new(r)
                    .map_err(|e| err("runs", format!("invalid glob {r:?}: {e}")))?,
            );
        }
        Ok(Rule {
            name: name.clone(),
            help: spec
                .help
                .clone()
                .unwrap_or_else(|| format!("User rule: {}", spec.pattern)),
            kind,
            regex,
            value,
            labels: spec.labels.clone(),
            label_groups,
            runs,
            event: spec.event.clone(),
        })
    }

    /// Whether the rule applies to `run`.
    pub fn applies_to(&self, run: &str) -> bool {
        self.runs.is_empty() || self.runs.iter().any(|p| p.matches(run))
    }

    /// Matches one line: the label values and the value (1 for a counter without a value
    /// capture). `None` when the line does not match or the value is not a number.
    pub fn apply<'a>(&self, text: &'a str) -> Option<(Vec<&'a str>, f64)> {
        let caps = self.regex.captures(text)?;
        let v = match self.value {
            Some(i) => number(caps.get(i)?.as_str().trim())?,
            None => 1.0,
        };
        let labels = self
            .label_groups
            .iter()
            .map(|&i| caps.get(i).map_or("", |m| m.as_str()))
            .collect();
        Some((labels, v))
    }
}

/// Compiles every rule; errors carry `rules[i].key`.
pub fn compile_all(specs: &[RuleSpec]) -> Result<Vec<Rule>, (String, String)> {
    let mut out: Vec<Rule> = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let rule = Rule::compile(s).map_err(|e| (format!("rules[{i}].{}", e.key), e.message))?;
        // OpenMetrics names a counter's family without `_total`: `x` and `x_total` collide
        let family = |n: &str| n.strip_suffix("_total").unwrap_or(n).to_owned();
        if out.iter().any(|r| family(&r.name) == family(&rule.name)) {
            return Err((
                format!("rules[{i}].name"),
                format!("{:?} is already the name of an earlier rule", rule.name),
            ));
        }
        out.push(rule);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, pattern: &str) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            pattern: pattern.into(),
            value: Some("v".into()),
            ..RuleSpec::default()
        }
    }

    #[test]
    fn gauge_with_labels() {
        let mut s = spec("rollout_reward", r"reward=(?P<v>\S+) env=(?P<env>\w+)");
        s.labels = vec!["env".into()];
        s.runs = vec!["grpo-*".into()];
        let r = Rule::compile(&s).unwrap();
        assert_eq!(
            r.apply("step 3 reward=0.75 env=math"),
            Some((vec!["math"], 0.75))
        );
        assert_eq!(r.apply("reward=abc env=x"), None);
        assert_eq!(r.apply("nothing"), None);
        assert!(r.applies_to("grpo-7"));
        assert!(!r.applies_to("sft"));
    }

    #[test]
    fn counter_without_value_counts_matches() {
        let s = RuleSpec {
            name: "oom_errors_total".into(),
            pattern: "CUDA out of memory".into(),
            kind: Some("counter".into()),
            ..RuleSpec::default()
        };
        let r = Rule::compile(&s).unwrap();
        assert_eq!(r.kind, RuleKind::Counter);
        assert_eq!(
            r.apply("torch.OutOfMemoryError: CUDA out of memory."),
            Some((vec![], 1.0))
        );
    }

    #[test]
    fn guard_rails() {
        let key = |s: RuleSpec| Rule::compile(&s).unwrap_err().key;
        assert_eq!(key(spec("x", "(?P<v>[")), "pattern");
        assert_eq!(
            key(spec("x", &"a".repeat(MAX_PATTERN_BYTES + 1))),
            "pattern"
        );
        // a program far over the size limit
        assert_eq!(key(spec("x", r"(?P<v>\w{1000}){1000}")), "pattern");
        assert_eq!(key(spec("training_loss", "(?P<v>.)")), "name");
        assert_eq!(key(spec("gpu_temp", "(?P<v>.)")), "name");
        // the host collector's families
        assert_eq!(key(spec("host_load1", "(?P<v>.)")), "name");
        assert_eq!(key(spec("host_x", "(?P<v>.)")), "name");
        assert_eq!(key(spec("inference_x", "(?P<v>.)")), "name");
        assert!(Rule::compile(&spec("hostname_len", "(?P<v>.)")).is_ok());
        assert_eq!(key(spec("1bad", "(?P<v>.)")), "name");
        assert_eq!(key(spec("x_total", "(?P<v>.)")), "name");
        assert_eq!(key(spec("x", "(?P<w>.)")), "value");
        let mut s = spec("x", "(?P<v>.)(?P<run>.)");
        s.labels = vec!["run".into()];
        assert_eq!(key(s), "labels");
        let mut s = spec("x", "(?P<v>.)");
        s.kind = Some("histogram".into());
        assert_eq!(key(s), "type");
        let mut s = spec("x", "(?P<v>.)");
        s.runs = vec!["[".into()];
        assert_eq!(key(s), "runs");
        let mut s = spec("x", "(?P<v>.)");
        s.event = Some("Bad-Name".into());
        assert_eq!(key(s), "event");
        let e = compile_all(&[spec("a", "(?P<v>.)"), spec("a", "(?P<v>.)")]).unwrap_err();
        assert_eq!(e.0, "rules[1].name");
        let mut c = spec("a_total", "(?P<v>.)");
        c.kind = Some("counter".into());
        let e = compile_all(&[spec("a", "(?P<v>.)"), c]).unwrap_err();
        assert_eq!(e.0, "rules[1].name");
    }
}
