//! Megatron-LM: the `iteration N/ M | key: value | ...` lines of `training_log` and the
//! `validation loss at iteration N ... | lm loss value: X | lm loss PPL: Y |` lines.
//!
//! Megatron prints a loss only when it is positive, so a NaN loss vanishes from the line; what
//! remains is `number of nan iterations: N` and `grad norm: nan`. A line reporting NaN
//! iterations without a loss therefore yields `loss = NaN`, which the state counts in
//! `training_nonfinite_values_total{key="loss"}`.

use std::borrow::Cow;

use super::lex::number::number;
use super::{Format, Record};

/// What a line [`detect`] accepts starts with.
pub const FIRST_BYTES: &[u8] = b"iv";

/// Cheap test for the start of a Megatron line (after prefix cleaning).
pub fn detect(text: &str) -> bool {
    text.starts_with("iteration ") || text.starts_with("validation loss at ")
}

/// Parses one Megatron line; `None` if it is not one.
pub fn parse(text: &str) -> Option<Record<'_>> {
    if let Some(rest) = text.strip_prefix("iteration ") {
        iteration(rest)
    } else if let Some(rest) = text.strip_prefix("validation loss at ") {
        validation(rest)
    } else {
        None
    }
}

/// Splits on `|` with memchr (the lines are long: a dozen fields).
fn fields(s: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut bars = memchr::memchr_iter(b'|', s.as_bytes());
    std::iter::from_fn(move || {
        let end = bars.next().unwrap_or(s.len());
        if start > s.len() {
            return None;
        }
        let f = &s[start..end];
        start = end + 1;
        Some(f)
    })
}

/// `key: value`, split at the last colon (keys hold none, `(TFLOP/s/GPU)` aside).
fn key_value(field: &str) -> Option<(&str, &str)> {
    let c = memchr::memrchr(b':', field.as_bytes())?;
    Some((field[..c].trim_ascii(), field[c + 1..].trim_ascii()))
}

fn iteration(rest: &str) -> Option<Record<'_>> {
    let mut fields = fields(rest);
    let (n, m) = fields.next()?.split_once('/')?;
    let (n, m) = (n.trim_ascii(), m.trim_ascii());
    let mut rec = Record::new(Format::Megatron);
    rec.step = Some(n.parse::<u64>().ok()? as f64);
    rec.max_steps = m.parse::<u64>().ok().map(|m| m as f64);
    let mut loss_seen = false;
    let mut nan_iterations = 0.0;
    for field in fields {
        let Some((key, val)) = key_value(field) else {
            continue;
        };
        let Some(v) = number(val) else {
            continue;
        };
        match key {
            "learning rate" => rec.push("learning_rate", v),
            "lm loss" => {
                loss_seen = true;
                rec.push("loss", v);
            }
            "grad norm" => rec.push("grad_norm", v),
            "elapsed time per iteration (ms)" => {
                if v > 0.0 {
                    rec.push("steps_per_second", 1000.0 / v);
                }
            }
            "number of nan iterations" => {
                nan_iterations = v;
                rec.values.push((Cow::Borrowed(key), v));
            }
            _ => rec.values.push((Cow::Borrowed(key), v)),
        }
    }
    if nan_iterations > 0.0 && !loss_seen {
        rec.push("loss", f64::NAN);
    }
    Some(rec)
}

/// `iteration 1000 on validation set | lm loss value: 2.1E+00 | lm loss PPL: 8.1E+00 |`
fn validation(rest: &str) -> Option<Record<'_>> {
    let rest = rest.strip_prefix("iteration ")?;
    let mut fields = fields(rest);
    let head = fields.next()?;
    let (n, set) = head.trim().split_once(' ')?;
    let test = set.contains("test");
    let mut rec = Record::new(Format::Megatron);
    rec.step = Some(n.parse::<u64>().ok()? as f64);
    for field in fields {
        let Some((key, val)) = key_value(field) else {
            continue;
        };
        let Some(v) = number(val) else {
            continue;
        };
        let out: Cow<'_, str> = match (key, test) {
            ("lm loss value", false) => Cow::Borrowed("eval_loss"),
            ("lm loss PPL", false) => Cow::Borrowed("eval_ppl"),
            ("lm loss value", true) => Cow::Borrowed("test_loss"),
            ("lm loss PPL", true) => Cow::Borrowed("test_ppl"),
            (k, _) => {
                let prefix = if test { "test " } else { "eval " };
                let k = k.strip_suffix(" value").unwrap_or(k);
                Cow::Owned(format!("{prefix}{k}"))
            }
        };
        rec.values.push((out, v));
    }
    Some(rec)
}

stateless_format! {
    /// Megatron-LM lines: no state between lines.
    Megatron
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "iteration       71/     100 | consumed samples:         9088 | elapsed time per iteration (ms): 5361.6 | throughput per GPU (TFLOP/s/GPU): 243.6 | learning rate: 1.420000E-05 | global batch size:   128 | lm loss: 1.818812E+00 | load_balancing_loss: 1.013377E+00 | loss scale: 1.0 | grad norm: 1.300 | num zeros: 0.0 | number of skipped iterations:   0 | number of nan iterations:   0 |";

    #[test]
    fn iteration_line() {
        assert!(detect(LINE));
        let r = parse(LINE).unwrap();
        assert_eq!((r.step, r.max_steps), (Some(71.0), Some(100.0)));
        assert_eq!(r.get("loss"), Some(1.818812));
        assert_eq!(r.get("learning_rate"), Some(1.42e-5));
        assert_eq!(r.get("grad_norm"), Some(1.3));
        assert_eq!(r.get("steps_per_second"), Some(1000.0 / 5361.6));
        assert_eq!(r.get("throughput per GPU (TFLOP/s/GPU)"), Some(243.6));
        assert_eq!(r.get("load_balancing_loss"), Some(1.013377));
        assert_eq!(r.get("consumed samples"), Some(9088.0));
        assert_eq!(r.get("elapsed time per iteration (ms)"), None);
    }

    #[test]
    fn nan_iteration_without_loss_is_a_nan_loss() {
        let r = parse("iteration 5/ 10 | learning rate: 1.000E-04 | loss scale: 1.0 | grad norm: nan | number of skipped iterations: 1 | number of nan iterations: 1 |").unwrap();
        assert!(r.get("loss").unwrap().is_nan());
        assert!(r.get("grad_norm").unwrap().is_nan());
        assert_eq!(r.get("number of nan iterations"), Some(1.0));
    }

    #[test]
    fn validation_line() {
        let r = parse("validation loss at iteration 1000 on validation set | lm loss value: 2.100000E+00 | lm loss PPL: 8.166170E+00 | ").unwrap();
        assert_eq!(r.step, Some(1000.0));
        assert_eq!(r.get("eval_loss"), Some(2.1));
        assert_eq!(r.get("eval_ppl"), Some(8.16617));
        let r = parse("validation loss at iteration 1000 on test set | lm loss value: 2.2E+00 |")
            .unwrap();
        assert_eq!(r.get("test_loss"), Some(2.2));
        assert_eq!(r.get("eval_loss"), None);
    }

    #[test]
    fn not_megatron() {
        assert!(parse("iteration over the dataset").is_none());
        assert!(!detect("step: 1"));
    }
}
