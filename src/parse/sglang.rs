//! SGLang's scheduler statistics (after [`super::clean`] removed its `[2025-01-01 12:00:00
//! TP0] ` header), as `log_prefill_stats` and `log_decode_stats` print them:
//!
//! - `Prefill batch, #new-seq: 1, #new-token: 512, #cached-token: 0, token usage: 0.01,
//!   #running-req: 0, #queue-req: 0,`
//! - `Decode batch, #running-req: 8, #token: 4096, token usage: 0.05, cuda graph: True, gen
//!   throughput (token/s): 812.45, #queue-req: 0,`
//!
//! Older releases write `Prefill batch.` and `Decode batch.`; `SGLANG_LOG_FORWARD_ITERS` adds
//! the forward count (`Decode batch [120],`), which is not a training step and is skipped.
//! `#running-req`, `#queue-req`, `gen throughput (token/s)`, `input throughput (token/s)`
//! (disaggregated prefill), `token usage` (already a 0-1 fraction of the KV pool) and the
//! old `cache hit rate` give the keys [`crate::training`] maps onto the `inference_*`
//! families; with hybrid pools (`full token usage`, `swa token usage`) the usage is the
//! larger, as SGLang's own gauge takes it. Every other field keeps its printed name, `#`
//! dropped and other punctuation made `_` (`#new-token` is `new_token`); `True` / `False`
//! are 1 / 0.

use std::borrow::Cow;

use super::lex::number::number;
use super::lex::number::percent;
use super::{Format, Record};

/// What a line [`detect`] accepts starts with.
pub const FIRST_BYTES: &[u8] = b"PD";

/// Cheap test for a scheduler statistics line: its first words and the separator after them.
pub fn detect(text: &str) -> bool {
    body(text).is_some()
}

/// The fields after `Prefill batch` / `Decode batch` and an optional ` [N]`.
fn body(text: &str) -> Option<&str> {
    let rest = text
        .strip_prefix("Prefill batch")
        .or_else(|| text.strip_prefix("Decode batch"))?;
    let rest = match rest.strip_prefix(" [") {
        Some(r) => {
            let (n, after) = r.split_once(']')?;
            if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            after
        }
        None => rest,
    };
    rest.strip_prefix(',').or_else(|| rest.strip_prefix('.'))
}

/// Parses one scheduler statistics line; `None` if it is not one.
pub fn parse(text: &str) -> Option<Record<'_>> {
    let fields = body(text)?;
    let mut rec = Record::new(Format::Sglang);
    let mut usage: Option<f64> = None;
    let mut hybrid_usage: Option<f64> = None;
    for field in fields.split(',') {
        let Some((key, val)) = field.trim().split_once(": ") else {
            continue;
        };
        let val = val.trim();
        let v = match val {
            "True" => Some(1.0),
            "False" => Some(0.0),
            _ => match val.strip_suffix('%') {
                Some(p) => percent(p),
                None => number(val),
            },
        };
        let Some(v) = v else { continue };
        let known: &'static str = match key {
            "#running-req" => "requests_running",
            "#queue-req" => "requests_waiting",
            "gen throughput (token/s)" => "generation_tokens_per_second",
            "input throughput (token/s)" => "prompt_tokens_per_second",
            "cache hit rate" => "prefix_cache_hit_ratio",
            "token usage" => {
                usage = Some(v);
                continue;
            }
            "#new-seq" => "new_seq",
            "#new-token" => "new_token",
            "#cached-token" => "cached_token",
            "#token" => "token",
            "cuda graph" => "cuda_graph",
            "accept len" => "accept_len",
            "accept rate" => "accept_rate",
            other => {
                if matches!(other, "full token usage" | "swa token usage") {
                    hybrid_usage = Some(hybrid_usage.map_or(v, |u: f64| u.max(v)));
                }
                let name = printed_name(other);
                if !name.is_empty() {
                    rec.values.push((Cow::Owned(name), v));
                }
                continue;
            }
        };
        rec.push(known, v);
    }
    if let Some(u) = usage.or(hybrid_usage) {
        rec.push("kv_cache_usage_ratio", u);
    }
    (!rec.values.is_empty()).then_some(rec)
}

/// `#prealloc-req` → `prealloc_req`, `full token usage` → `full_token_usage`.
fn printed_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.trim_start_matches('#').chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

stateless_format! {
    /// SGLang lines: no state between lines.
    Sglang
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::clean;

    #[test]
    fn prefill_line_behind_its_header() {
        let c = clean(b"[2026-05-18 16:04:46 TP0] Prefill batch, #new-seq: 3, #new-token: 1536, #cached-token: 128, token usage: 0.02, #running-req: 5, #queue-req: 7, ");
        assert!(detect(&c.text), "{}", c.text);
        let r = parse(&c.text).unwrap();
        assert_eq!(r.format, Format::Sglang);
        assert_eq!(r.get("new_seq"), Some(3.0));
        assert_eq!(r.get("new_token"), Some(1536.0));
        assert_eq!(r.get("cached_token"), Some(128.0));
        assert_eq!(r.get("kv_cache_usage_ratio"), Some(0.02));
        assert_eq!(r.get("requests_running"), Some(5.0));
        assert_eq!(r.get("requests_waiting"), Some(7.0));
        assert_eq!(r.values.len(), 6);
        assert_eq!(r.step, None);
    }

    #[test]
    fn decode_line_with_cuda_graph_and_forward_count() {
        let c = clean(b"[2026-05-18 16:04:47 DP0 TP1] Decode batch [240], #running-req: 8, #token: 4096, token usage: 0.05, cuda graph: True, gen throughput (token/s): 812.45, #queue-req: 0, ");
        assert!(detect(&c.text), "{}", c.text);
        let r = parse(&c.text).unwrap();
        assert_eq!(r.get("requests_running"), Some(8.0));
        assert_eq!(r.get("token"), Some(4096.0));
        assert_eq!(r.get("kv_cache_usage_ratio"), Some(0.05));
        assert_eq!(r.get("cuda_graph"), Some(1.0));
        assert_eq!(r.get("generation_tokens_per_second"), Some(812.45));
        assert_eq!(r.get("requests_waiting"), Some(0.0));
        assert_eq!(r.get("240"), None);
    }

    #[test]
    fn older_period_form_and_cache_hit_percent() {
        let r = parse("Prefill batch. #new-seq: 1, #new-token: 7, #cached-token: 0, cache hit rate: 12.50%, token usage: 0.00, #running-req: 0, #queue-req: 0").unwrap();
        assert_eq!(r.get("prefix_cache_hit_ratio"), Some(0.125));
        assert_eq!(r.get("kv_cache_usage_ratio"), Some(0.0));
        let r = parse("Decode batch. #running-req: 1, #token: 20, token usage: 0.00, cuda graph: False, gen throughput (token/s): 5.13, #queue-req: 0").unwrap();
        assert_eq!(r.get("cuda_graph"), Some(0.0));
        assert_eq!(r.get("generation_tokens_per_second"), Some(5.13));
    }

    #[test]
    fn hybrid_pools_take_the_larger_usage_and_keep_both() {
        let r = parse("Decode batch, #running-req: 2, #full token: 300, full token usage: 0.10, #swa token: 900, swa token usage: 0.30, cuda graph: True, gen throughput (token/s): 40.00, #queue-req: 1, ").unwrap();
        assert_eq!(r.get("kv_cache_usage_ratio"), Some(0.30));
        assert_eq!(r.get("full_token_usage"), Some(0.10));
        assert_eq!(r.get("swa_token_usage"), Some(0.30));
        assert_eq!(r.get("full_token"), Some(300.0));
        assert_eq!(r.get("swa_token"), Some(900.0));
    }

    #[test]
    fn disaggregated_prefill_throughput_is_the_prompt_rate() {
        let r = parse("Prefill batch, #new-seq: 1, #new-token: 64, #cached-token: 0, token usage: 0.01, #running-req: 0, #queue-req: 0, #prealloc-req: 2, #inflight-req: 1, input throughput (token/s): 1234.56, ").unwrap();
        assert_eq!(r.get("prompt_tokens_per_second"), Some(1234.56));
        assert_eq!(r.get("prealloc_req"), Some(2.0));
        assert_eq!(r.get("inflight_req"), Some(1.0));
    }

    #[test]
    fn not_sglang() {
        for l in [
            "Prefill batches are large",
            "Decode batch size 8",
            "Decode batch [x], #running-req: 1",
            "Decode batch [], #running-req: 1",
            "Prefill batch, nothing here",
        ] {
            assert!(parse(l).is_none(), "{l}");
        }
        assert!(!detect("Prefill batches are large"));
        assert!(!detect("Avg prompt throughput: 1"));
        assert_eq!(printed_name("#pre-allocated usage"), "pre_allocated_usage");
        assert_eq!(printed_name("#"), "");
    }
}
