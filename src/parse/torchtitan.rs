//! torchtitan's metric line (after [`super::clean`] removed the ANSI colours, `[rank0]:`,
//! `[titan]` and the python-logging header):
//!
//! `step: 14  loss:  3.24405  grad_norm:  0.8319  memory:  9.46GiB(64.99%)  tps: 7,282  tflops: 0.52  mfu: 0.17%`
//!
//! `tps` (thousands separators allowed) is `tokens_per_second`; `memory` becomes
//! `memory_bytes` and `memory_ratio`, `mfu` becomes `mfu_ratio`; any other `key: value` pair is
//! kept as printed.

use std::borrow::Cow;

use super::lex::number::number;
use super::lex::number::percent;
use super::{Format, Record};

const GIB: f64 = (1u64 << 30) as f64;

/// What a line [`detect`] accepts starts with.
pub const FIRST_BYTES: &[u8] = b"s";

/// Cheap test for the start of a torchtitan line.
pub fn detect(text: &str) -> bool {
    text.starts_with("step:") && text.as_bytes().get(5).is_some_and(|c| *c == b' ')
}

/// Parses one torchtitan line; `None` if it is not one.
pub fn parse(text: &str) -> Option<Record<'_>> {
    let mut toks = text.split_whitespace();
    let mut rec = Record::new(Format::Torchtitan);
    let mut key: Option<&str> = None;
    for tok in toks.by_ref() {
        if let Some(k) = tok.strip_suffix(':') {
            key = Some(k);
            continue;
        }
        let Some(k) = key.take() else { continue };
        match k {
            "step" => rec.step = Some(tok.parse::<u64>().ok()? as f64),
            "loss" => rec.push("loss", number(tok)?),
            "grad_norm" => push(&mut rec, "grad_norm", tok),
            "tps" | "wps" => {
                let digits: String = tok.chars().filter(|c| *c != ',').collect();
                if let Some(v) = number(&digits) {
                    rec.push("tokens_per_second", v);
                }
            }
            "memory" => {
                // `9.46GiB(64.99%)`
                let (amount, pct) = tok.split_once('(').unwrap_or((tok, ""));
                if let Some(v) = amount.strip_suffix("GiB").and_then(number) {
                    rec.push("memory_bytes", (v * GIB).round());
                }
                if let Some(v) = pct.strip_suffix("%)").and_then(percent) {
                    rec.push("memory_ratio", v);
                }
            }
            "mfu" => {
                if let Some(v) = tok.strip_suffix('%').and_then(percent) {
                    rec.push("mfu_ratio", v);
                }
            }
            other => {
                let t = tok.trim_end_matches(',');
                if let Some(v) = number(t) {
                    rec.values.push((Cow::Borrowed(other), v));
                }
            }
        }
    }
    rec.step?;
    Some(rec)
}

fn push(rec: &mut Record<'_>, key: &'static str, tok: &str) {
    if let Some(v) = number(tok) {
        rec.push(key, v);
    }
}

stateless_format! {
    /// torchtitan lines: no state between lines.
    Torchtitan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::clean;

    #[test]
    fn colored_line_with_separators() {
        let raw = "[rank0]:[titan] 2026-05-18 16:04:46,338 - root - INFO - \x1b[31mstep: 14  \x1b[32mloss:  3.24405  \x1b[38;2;180;60;0mgrad_norm:  0.8319  \x1b[38;2;54;234;195mmemory:  9.46GiB(64.99%)  \x1b[34mtps: 7,282  \x1b[36mtflops: 0.52  \x1b[35mmfu: 0.17%\x1b[39m";
        let c = clean(raw.as_bytes());
        assert!(detect(&c.text), "{}", c.text);
        let r = parse(&c.text).unwrap();
        assert_eq!(r.step, Some(14.0));
        assert_eq!(r.get("loss"), Some(3.24405));
        assert_eq!(r.get("grad_norm"), Some(0.8319));
        assert_eq!(r.get("tokens_per_second"), Some(7282.0));
        assert_eq!(r.get("memory_bytes"), Some((9.46 * GIB).round()));
        assert_eq!(r.get("memory_ratio"), Some(0.6499));
        assert_eq!(r.get("tflops"), Some(0.52));
        assert_eq!(r.get("mfu_ratio"), Some(0.0017));
    }

    #[test]
    fn not_torchtitan() {
        assert!(!detect("step=35, skipped=0"));
        assert!(parse("step: soon").is_none());
    }
}
