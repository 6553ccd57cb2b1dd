//! vLLM's periodic engine statistics (after [`super::clean`] removed `INFO 05-18 16:04:46
//! [loggers.py:116]` and `(APIServer pid=1)`):
//!
//! - V1: `Engine 000: Avg prompt throughput: 1254.4 tokens/s, Avg generation throughput: 29.2
//!   tokens/s, Running: 10 reqs, Waiting: 4 reqs, GPU KV cache usage: 57.9%, Prefix cache hit
//!   rate: 40.5%`
//! - V0: `Avg prompt throughput: ... Running: 1 reqs, Swapped: 0 reqs, Pending: 3 reqs, GPU KV
//!   cache usage: 0.1%, CPU KV cache usage: 0.0%.`
//!
//! The six well-known values get keys that [`crate::training`] maps onto the `inference_*`
//! families; `Swapped` and the CPU cache usage are kept as `requests_swapped` and
//! `cpu_kv_cache_usage_ratio`. Percentages become ratios.

use std::borrow::Cow;

use super::lex::number::number;
use super::lex::number::percent;
use super::{Format, Record};

/// What a line [`detect`] accepts starts with.
pub const FIRST_BYTES: &[u8] = b"AE";

/// Cheap test for an engine statistics line.
pub fn detect(text: &str) -> bool {
    text.starts_with("Avg prompt throughput:")
        || (text.starts_with("Engine ") && text.contains(": Avg prompt throughput:"))
}

/// Parses one engine statistics line; `None` if it is not one.
pub fn parse(text: &str) -> Option<Record<'_>> {
    let start = text.find("Avg prompt throughput:")?;
    let mut rec = Record::new(Format::Vllm);
    for field in text[start..].split(", ") {
        let Some((key, val)) = field.rsplit_once(": ") else {
            continue;
        };
        let val = val.trim().trim_end_matches('.');
        let (num, unit) = match val.split_once(' ') {
            Some((n, u)) => (n, u),
            None => match val.strip_suffix('%') {
                Some(n) => (n, "%"),
                None => (val, ""),
            },
        };
        let parsed = if unit == "%" {
            percent(num)
        } else {
            number(num)
        };
        let Some(v) = parsed else { continue };
        let k: &'static str = match key.trim() {
            "Avg prompt throughput" => "prompt_tokens_per_second",
            "Avg generation throughput" => "generation_tokens_per_second",
            "Running" => "requests_running",
            "Waiting" | "Pending" => "requests_waiting",
            "Swapped" => "requests_swapped",
            "GPU KV cache usage" => "kv_cache_usage_ratio",
            "CPU KV cache usage" => "cpu_kv_cache_usage_ratio",
            "Prefix cache hit rate" => "prefix_cache_hit_ratio",
            other => {
                rec.values.push((Cow::Borrowed(other), v));
                continue;
            }
        };
        rec.push(k, v);
    }
    (!rec.values.is_empty()).then_some(rec)
}

stateless_format! {
    /// vLLM lines: no state between lines.
    Vllm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::clean;

    #[test]
    fn v1_engine_line() {
        let c = clean(b"(APIServer pid=2110) INFO 05-18 16:04:46 [loggers.py:123] Engine 000: Avg prompt throughput: 1254.4 tokens/s, Avg generation throughput: 29.2 tokens/s, Running: 10 reqs, Waiting: 4 reqs, GPU KV cache usage: 57.9%, Prefix cache hit rate: 40.5%");
        assert!(detect(&c.text), "{}", c.text);
        let r = parse(&c.text).unwrap();
        assert_eq!(r.get("prompt_tokens_per_second"), Some(1254.4));
        assert_eq!(r.get("generation_tokens_per_second"), Some(29.2));
        assert_eq!(r.get("requests_running"), Some(10.0));
        assert_eq!(r.get("requests_waiting"), Some(4.0));
        assert_eq!(r.get("kv_cache_usage_ratio"), Some(0.579));
        assert_eq!(r.get("prefix_cache_hit_ratio"), Some(0.405));
        assert_eq!(r.values.len(), 6);
    }

    #[test]
    fn v0_line_with_swapped_and_pending() {
        let c = clean(b"INFO 08-20 10:23:30 metrics.py:351] Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 152.3 tokens/s, Running: 3 reqs, Swapped: 1 reqs, Pending: 2 reqs, GPU KV cache usage: 10.5%, CPU KV cache usage: 0.0%.");
        assert!(detect(&c.text), "{}", c.text);
        let r = parse(&c.text).unwrap();
        assert_eq!(r.get("requests_waiting"), Some(2.0));
        assert_eq!(r.get("requests_swapped"), Some(1.0));
        assert_eq!(r.get("kv_cache_usage_ratio"), Some(0.105));
        assert_eq!(r.get("cpu_kv_cache_usage_ratio"), Some(0.0));
    }
}
