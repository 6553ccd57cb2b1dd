//! nanoGPT-style research scripts: the two lines karpathy/nanoGPT's `train.py` prints, which
//! its many forks keep:
//!
//! - `iter 100: loss 4.2345, time 12.34ms, mfu 45.67%` (every `log_interval` iterations)
//! - `step 250: train loss 1.9645, val loss 2.0608` (every `eval_interval`)
//!
//! `iter N` / `step N` is the step; `loss` and `train loss` are `loss`, `val loss` is
//! `eval_loss`; `time` (`ms` or `s`) becomes `iteration_time_seconds` and `mfu` becomes
//! `mfu_ratio`, as torchtitan's. nanoGPT prints `mfu -100.00%` until it has measured five
//! iterations (its running MFU starts at -1): a negative MFU is that placeholder and is
//! skipped. Any other `name value` field a fork adds is kept as printed (`lr` is
//! `learning_rate`).

use std::borrow::Cow;

use super::lex::number::number;
use super::lex::number::percent;
use super::{Format, Record};

/// What a line [`detect`] accepts starts with.
pub const FIRST_BYTES: &[u8] = b"is";

/// Cheap test for `iter N: ` or `step N: ` at the start of a line.
pub fn detect(text: &str) -> bool {
    head(text).is_some()
}

/// The step and the fields after `iter N: ` / `step N: `.
fn head(text: &str) -> Option<(u64, &str)> {
    let rest = text
        .strip_prefix("iter ")
        .or_else(|| text.strip_prefix("step "))?;
    let (n, fields) = rest.split_once(": ")?;
    if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((n.parse().ok()?, fields))
}

/// Parses one line; `None` if it is not one or holds no value.
pub fn parse(text: &str) -> Option<Record<'_>> {
    let (step, fields) = head(text)?;
    let mut rec = Record::new(Format::Nanogpt);
    rec.step = Some(step as f64);
    for field in fields.split(',') {
        let Some((name, val)) = field.trim().rsplit_once(' ') else {
            continue;
        };
        let name = name.trim_end_matches(':').trim();
        match name {
            "loss" | "train loss" => push(&mut rec, "loss", number(val)),
            "val loss" => push(&mut rec, "eval_loss", number(val)),
            "lr" => push(&mut rec, "learning_rate", number(val)),
            "time" => push(&mut rec, "iteration_time_seconds", seconds(val)),
            "mfu" => {
                let v = val.strip_suffix('%').and_then(percent);
                push(&mut rec, "mfu_ratio", v.filter(|v| *v >= 0.0));
            }
            "" => {}
            other => {
                let v = match val.strip_suffix('%') {
                    Some(p) => percent(p),
                    None => number(val),
                };
                if let Some(v) = v {
                    rec.values.push((Cow::Borrowed(other), v));
                }
            }
        }
    }
    (!rec.values.is_empty()).then_some(rec)
}

fn push(rec: &mut Record<'_>, key: &'static str, v: Option<f64>) {
    if let Some(v) = v {
        rec.push(key, v);
    }
}

/// `12.34ms` or `0.5s` in seconds.
fn seconds(val: &str) -> Option<f64> {
    match val.strip_suffix("ms") {
        Some(ms) => number(ms).map(|v| v / 1000.0),
        None => val.strip_suffix('s').and_then(number),
    }
}

stateless_format! {
    /// nanoGPT lines: no state between lines.
    Nanogpt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::clean;

    #[test]
    fn iteration_line() {
        let c = clean(b"iter 100: loss 4.2345, time 12.34ms, mfu 45.67%");
        assert!(detect(&c.text));
        let r = parse(&c.text).unwrap();
        assert_eq!(r.format, Format::Nanogpt);
        assert_eq!(r.step, Some(100.0));
        assert_eq!(r.get("loss"), Some(4.2345));
        assert_eq!(r.get("iteration_time_seconds"), Some(12.34 / 1000.0));
        assert_eq!(r.get("mfu_ratio"), Some(0.4567));
        assert_eq!(r.values.len(), 3);
    }

    #[test]
    fn placeholder_mfu_is_skipped() {
        let r = parse("iter 0: loss 4.2654, time 29890.03ms, mfu -100.00%").unwrap();
        assert_eq!(r.step, Some(0.0));
        assert_eq!(r.get("mfu_ratio"), None);
        assert_eq!(r.get("iteration_time_seconds"), Some(29.89003));
    }

    #[test]
    fn evaluation_line() {
        let r = parse("step 250: train loss 1.9645, val loss 2.0608").unwrap();
        assert_eq!(r.step, Some(250.0));
        assert_eq!(r.get("loss"), Some(1.9645));
        assert_eq!(r.get("eval_loss"), Some(2.0608));
        assert_eq!(r.values.len(), 2);
    }

    #[test]
    fn fork_fields_as_printed() {
        let r =
            parse("iter 7: loss 3.1000, time 1.5s, mfu 12.00%, lr 6.0e-04, tok/s 1234").unwrap();
        assert_eq!(r.get("iteration_time_seconds"), Some(1.5));
        assert_eq!(r.get("learning_rate"), Some(6.0e-4));
        assert_eq!(r.get("tok/s"), Some(1234.0));
    }

    #[test]
    fn not_nanogpt() {
        for l in [
            "step: 14  loss:  3.2",
            "steps: 1 loss: 0.3",
            "step=35, skipped=0",
            "iter_dt 7797.46ms; iter 2: train loss 2.60938",
            "iter x: loss 1",
            "iter : loss 1",
            "step 3: saving checkpoint",
            "iteration 71/ 100 | lm loss: 1.8",
        ] {
            assert!(parse(l).is_none(), "{l}");
        }
        assert!(!detect("step: 14  loss:  3.2"));
        assert!(!detect("iteration 71/ 100 |"));
    }
}
