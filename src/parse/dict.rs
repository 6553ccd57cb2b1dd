//! Key/value records: the Hugging Face Trainer's printed dict (transformers 4.x raw floats and
//! 5.x quoted strings), TRL/axolotl/ms-swift console dicts, ms-swift's `logging.jsonl`,
//! LLaMA-Factory's `trainer_log.jsonl` and generic JSON lines.
//!
//! All of them are one mapping per line; what differs is the key vocabulary, normalised here
//! onto the names [`crate::training`] knows: `loss`, `eval_loss`, `learning_rate`,
//! `grad_norm`, `epoch`, `*_per_second`, with the step and max steps pulled out.

use std::borrow::Cow;

use super::mapping::{self, Value};
use super::Record;

/// Builds a record from a scanned mapping. `None` when the mapping holds no number at all
/// (a config dump such as `{'device_map': 'cpu'}` is not a record).
pub fn record<'a>(
    pairs: Vec<(Cow<'a, str>, Value<'a>)>,
    format: &'static str,
) -> Option<Record<'a>> {
    let mut rec = Record::new(format);
    for (key, value) in pairs {
        let num = match &value {
            Value::Num(v) => Some(*v),
            Value::Str(s) => {
                if key == "global_step/max_steps" {
                    if let Some((a, b)) = s.split_once('/') {
                        rec.step = a.trim().parse().ok();
                        rec.max_steps = b.trim().parse().ok();
                    }
                    continue;
                }
                mapping::number(s.trim()).or_else(|| {
                    if key.ends_with("time") {
                        duration_seconds(s)
                    } else {
                        None
                    }
                })
            }
            Value::Other => None,
        };
        let Some(v) = num else { continue };
        match key.as_ref() {
            "step" | "global_step" | "current_steps" | "iteration" => rec.step = Some(v),
            "max_steps" | "total_steps" => rec.max_steps = Some(v),
            "lr" => rec.push("learning_rate", v),
            "train_speed(s/it)" => {
                if v > 0.0 {
                    rec.push("steps_per_second", 1.0 / v)
                }
            }
            "train_speed(iter/s)" => rec.push("steps_per_second", v),
            "train_runtime" => {
                rec.end_of_training = true;
                rec.values.push((key, v));
            }
            _ => rec.values.push((key, v)),
        }
    }
    if rec.values.is_empty() && rec.step.is_none() {
        return None;
    }
    Some(rec)
}

/// Parses printed durations into seconds: `3h 54m 2s`, `41.23s`, `1d 2h`, `0:01:30`,
/// `1 day, 2:03:04`.
pub fn duration_seconds(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.contains(':') {
        let (days, clock) = match s.split_once(", ") {
            Some((d, c)) => (d.split_whitespace().next()?.parse::<f64>().ok()?, c),
            None => (0.0, s),
        };
        let mut total = 0.0;
        for part in clock.split(':') {
            total = total * 60.0 + part.trim().parse::<f64>().ok()?;
        }
        return Some(days * 86400.0 + total);
    }
    let mut total = 0.0;
    let mut num = String::new();
    let mut seen = false;
    for c in s.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'd' | 'h' | 'm' | 's' => {
                let v: f64 = num.parse().ok()?;
                num.clear();
                total += v * match c {
                    'd' => 86400.0,
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                seen = true;
            }
            ' ' => {}
            _ => return None,
        }
    }
    (seen && num.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(line: &str) -> Option<Record<'_>> {
        let mut pairs = Vec::new();
        mapping::scan(line, &mut pairs).unwrap();
        record(pairs, "hf")
    }

    #[test]
    fn swift_dict() {
        let r = rec("{'loss': '5.655', 'learning_rate': '0.0009938', 'global_step/max_steps': '5/100', 'elapsed_time': '3h 54m 2s', 'remaining_time': '41.23s', 'train_speed(s/it)': '0.25'}").unwrap();
        assert_eq!((r.step, r.max_steps), (Some(5.0), Some(100.0)));
        assert_eq!(r.get("loss"), Some(5.655));
        assert_eq!(
            r.get("elapsed_time"),
            Some(3.0 * 3600.0 + 54.0 * 60.0 + 2.0)
        );
        assert_eq!(r.get("remaining_time"), Some(41.23));
        assert_eq!(r.get("steps_per_second"), Some(4.0));
        assert_eq!(r.get("train_speed(s/it)"), None);
    }

    #[test]
    fn llama_factory_line() {
        let r = rec(r#"{"current_steps": 10, "total_steps": 100, "loss": 1.2, "lr": 1e-5, "epoch": 0.1, "elapsed_time": "0:00:10", "remaining_time": "1 day, 0:01:30"}"#).unwrap();
        assert_eq!((r.step, r.max_steps), (Some(10.0), Some(100.0)));
        assert_eq!(r.get("learning_rate"), Some(1e-5));
        assert_eq!(r.get("elapsed_time"), Some(10.0));
        assert_eq!(r.get("remaining_time"), Some(86400.0 + 90.0));
    }

    #[test]
    fn summary_marks_end_and_config_dicts_are_not_records() {
        let r = rec("{'train_runtime': '96.35', 'train_loss': '2.568', 'epoch': '1.546'}").unwrap();
        assert!(r.end_of_training);
        assert!(rec("{'device_map': 'cpu', 'dtype': None}").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_seconds("0s"), Some(0.0));
        assert_eq!(duration_seconds("1d 2h"), Some(93600.0));
        assert_eq!(duration_seconds("soon"), None);
        assert_eq!(duration_seconds("12"), None);
    }
}
