//! DeepSpeed engine logs (after [`super::clean`] removed `[date] [INFO] [file:line:func]` and
//! `[Rank 0]`):
//!
//! - `step=35, skipped=0, lr=[2.17e-06, 2.17e-06], mom=[[0.9, 0.95], [0.9, 0.95]]`
//! - `epoch=0/micro_step=34/global_step=34, RunningAvgSamplesPerSec=7.86,
//!   CurrSamplesPerSec=8.01, MemAllocated=59.65GB, MaxMemAllocated=63.31GB`
//! - the older `0/25, SamplesPerSec=12.3` (epoch/global step)
//! - the pipeline engine's `steps: 100 loss: 0.3120 iter time (s): 0.522 samples/sec: 245.1`
//!
//! DeepSpeed's `GB` is GiB (it divides by 1024³); memory is reported in bytes.

use std::borrow::Cow;

use super::lex::number::number;
use super::lex::{find_byte, trim};
use super::{Format, Record};

const GIB: f64 = (1u64 << 30) as f64;

/// What a line [`detect`] accepts starts with.
pub const FIRST_BYTES: &[u8] = b"se0123456789";

/// Cheap test for the start of a DeepSpeed line (after prefix cleaning).
pub fn detect(text: &str) -> bool {
    // by the first byte: a tqdm bar (digits first) is asked only about the old form
    match text.as_bytes().first() {
        Some(b's') => text.starts_with("step=") || text.starts_with("steps: "),
        Some(b'e') => text.starts_with("epoch="),
        Some(c) if c.is_ascii_digit() => old_form(text.as_bytes()),
        _ => false,
    }
}

/// `E/S, SamplesPerSec=`, checked byte by byte from the start (tqdm bars start with digits
/// too, so no search through the line).
fn old_form(b: &[u8]) -> bool {
    let digits = |mut i: usize| {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    let Some(i) = digits(0) else { return false };
    if b.get(i) != Some(&b'/') {
        return false;
    }
    let Some(j) = digits(i + 1) else { return false };
    b[j..].starts_with(b", SamplesPerSec=")
}

/// Parses one DeepSpeed line; `None` if it is not one.
pub fn parse(text: &str) -> Option<Record<'_>> {
    if let Some(rest) = text.strip_prefix("steps: ") {
        return pipeline(rest);
    }
    let mut rec = Record::new(Format::Deepspeed);
    for item in items(text) {
        // `str::trim` and `split_once` by bytes (`=` and `/` are ASCII)
        let item = trim(item);
        if let Some(at) = find_byte(b'=', item.as_bytes()) {
            assign(&mut rec, trim(&item[..at]), trim(&item[at + 1..]));
        } else if let Some(at) = find_byte(b'/', item.as_bytes()) {
            // the old `epoch/global_step` form
            rec.push("epoch", trim(&item[..at]).parse().ok()?);
            rec.step = Some(trim(&item[at + 1..]).parse().ok()?);
        }
    }
    (rec.step.is_some() || !rec.values.is_empty()).then_some(rec)
}

/// Splits on `, ` and `/` outside brackets (`epoch=0/micro_step=34/global_step=34, lr=[a, b]`).
fn items(text: &str) -> impl Iterator<Item = &str> {
    let b = text.as_bytes();
    let mut depth = 0i32;
    let mut start = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() {
            let c = b[i];
            i += 1;
            match c {
                b'[' => depth += 1,
                b']' => depth -= 1,
                b',' if depth == 0 => {
                    let s = &text[start..i - 1];
                    start = i;
                    return Some(s);
                }
                // `/` separates items only when another `key=` follows
                b'/' if depth == 0 && text[i..].split(['/', ',']).next()?.contains('=') => {
                    let s = &text[start..i - 1];
                    start = i;
                    return Some(s);
                }
                _ => {}
            }
        }
        if start < b.len() {
            let s = &text[start..];
            start = b.len();
            return Some(s);
        }
        None
    })
}

fn assign<'a>(rec: &mut Record<'a>, key: &'a str, val: &'a str) {
    let first = |v: &str| -> Option<f64> {
        let v = v.trim_start_matches('[');
        let end = v.bytes().position(|c| c == b',' || c == b']');
        number(trim(&v[..end.unwrap_or(v.len())]))
    };
    match key {
        "step" | "global_step" => rec.step = number(val),
        "micro_step" | "mom" => {}
        "epoch" => {
            if let Some(v) = number(val) {
                rec.push("epoch", v)
            }
        }
        "lr" => {
            if let Some(v) = first(val) {
                rec.push("learning_rate", v)
            }
        }
        "CurrSamplesPerSec" | "SamplesPerSec" => {
            if let Some(v) = number(val) {
                rec.push("samples_per_second", v)
            }
        }
        "MemAllocated" | "MaxMemAllocated" => {
            if let Some(v) = val.strip_suffix("GB").and_then(number) {
                let k = if key == "MemAllocated" {
                    "memory_allocated_bytes"
                } else {
                    "memory_max_allocated_bytes"
                };
                rec.push(k, (v * GIB).round());
            }
        }
        _ => {
            if let Some(v) = number(val) {
                rec.values.push((Cow::Borrowed(key), v));
            }
        }
    }
}

/// `100 loss: 0.3120 iter time (s): 0.522 samples/sec: 245.1`
fn pipeline(rest: &str) -> Option<Record<'_>> {
    let (step, rest) = rest.trim_start().split_once(' ')?;
    let mut rec = Record::new(Format::Deepspeed);
    rec.step = Some(step.parse::<u64>().ok()? as f64);
    for (label, key) in [
        ("loss: ", "loss"),
        ("iter time (s): ", "iter"),
        ("samples/sec: ", "samples_per_second"),
    ] {
        let Some(p) = rest.find(label) else { continue };
        let tok = rest[p + label.len()..].split_whitespace().next();
        let Some(v) = tok.and_then(number) else {
            continue;
        };
        match key {
            "iter" => {
                if v > 0.0 {
                    rec.push("steps_per_second", 1.0 / v)
                }
            }
            k => rec.push(k, v),
        }
    }
    Some(rec)
}

stateless_format! {
    /// DeepSpeed lines: no state between lines.
    Deepspeed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::clean;

    fn p(line: &str) -> Record<'static> {
        let text: &'static str = Box::leak(clean(line.as_bytes()).text.into_owned().into());
        assert!(detect(text), "{text}");
        parse(text).unwrap()
    }

    #[test]
    fn step_line_behind_its_prefix() {
        let r = p("[2024-04-06 03:02:12,345] [INFO] [logging.py:96:log_dist] [Rank 0] step=35, skipped=0, lr=[2.17e-06, 2.17e-06], mom=[[0.9, 0.95], [0.9, 0.95]]");
        assert_eq!(r.step, Some(35.0));
        assert_eq!(r.get("learning_rate"), Some(2.17e-6));
        assert_eq!(r.get("skipped"), Some(0.0));
        assert_eq!(r.values.len(), 2);
    }

    #[test]
    fn throughput_line() {
        let r = p("[2024-04-06 03:02:12,345] [INFO] [timer.py:260:stop] epoch=0/micro_step=34/global_step=34, RunningAvgSamplesPerSec=7.86, CurrSamplesPerSec=8.01, MemAllocated=59.65GB, MaxMemAllocated=63.31GB");
        assert_eq!(r.step, Some(34.0));
        assert_eq!(r.get("epoch"), Some(0.0));
        assert_eq!(r.get("samples_per_second"), Some(8.01));
        assert_eq!(r.get("RunningAvgSamplesPerSec"), Some(7.86));
        assert_eq!(r.get("memory_allocated_bytes"), Some((59.65 * GIB).round()));
        assert_eq!(
            r.get("memory_max_allocated_bytes"),
            Some((63.31 * GIB).round())
        );
    }

    #[test]
    fn old_and_pipeline_forms() {
        let r = p("[2021-01-01 00:00:00,000] [INFO] [engine.py:1000:_take_model_step] 0/25, SamplesPerSec=12.5");
        assert_eq!(r.step, Some(25.0));
        assert_eq!(r.get("samples_per_second"), Some(12.5));
        let r = p("steps: 100 loss: 0.3120 iter time (s): 0.500 samples/sec: 245.1");
        assert_eq!(r.step, Some(100.0));
        assert_eq!(r.get("loss"), Some(0.312));
        assert_eq!(r.get("steps_per_second"), Some(2.0));
        assert_eq!(r.get("samples_per_second"), Some(245.1));
    }

    #[test]
    fn not_deepspeed() {
        assert!(!detect("10/100 done"));
        assert!(!detect("step: 14  loss: 3"));
    }
}
