//! Golden tests (mtail's one-shot style): `parse` on each real trainer log, compared with a
//! reviewed expected file, plus targeted assertions on the values that matter.
//!
//! To review a change: `GOLDEN_UPDATE=1 cargo test golden` writes `*.actual` files beside
//! the expected ones; diff them by hand and copy over only what is right. A mismatch prints
//! a unified diff (expected file first); a file under `tests/golden/` that no entry of
//! `GOLDEN` produces fails `no_orphan_golden_files`.

use crate::harness::*;

fn parse_fixture(rel: &str) -> String {
    let out = std::process::Command::new(bin())
        .current_dir(root().join("tests/fixtures"))
        .args(["parse", rel])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every trainer log with a reviewed expected file, one file under `tests/golden/` each.
/// `check_golden` refuses a log that is not listed, and the orphan test below reads the
/// same list, so a golden file no test produces is found.
const GOLDEN: &[&str] = &[
    "transformers/train-normal.log",
    "transformers/train-diverge.log",
    "transformers/train-resumed.log",
    "ms-swift/train.log",
    "ms-swift/train-hub-check-offline.log",
    "ms-swift/output/v0-20261128-120712/logging.jsonl",
    "megatron/pretrain-gpt.log",
    "deepspeed/train.log",
    "torchtitan/train.log",
    "vllm/serve.log",
    "vllm/serve-v0.log",
    "lightning/train-tqdm.log",
    "lightning/metrics.csv",
];

/// The file name of `rel`'s expected output under `tests/golden/`.
fn golden_name(rel: &str) -> String {
    format!("{}.prom", rel.replace('/', "__"))
}

fn check_golden(rel: &str) -> String {
    assert!(
        GOLDEN.contains(&rel),
        "{rel} is not in GOLDEN: list it there"
    );
    let got = parse_fixture(rel);
    let expected_path = root().join("tests/golden").join(golden_name(rel));
    if std::env::var("GOLDEN_UPDATE").is_ok() {
        std::fs::write(expected_path.with_extension("prom.actual"), &got).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
    if got != expected {
        let expected_name = expected_path.display().to_string();
        let diff = similar::TextDiff::from_lines(&expected, &got)
            .unified_diff()
            .header(&expected_name, &format!("parse {rel}"))
            .to_string();
        panic!("{rel}: output differs from {expected_name}:\n{diff}");
    }
    got
}

#[test]
fn every_listed_log_matches_its_golden_file() {
    for rel in GOLDEN {
        check_golden(rel);
    }
}

#[test]
fn no_orphan_golden_files() {
    let produced: Vec<String> = GOLDEN.iter().map(|rel| golden_name(rel)).collect();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(root().join("tests/golden")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        // review copies written under GOLDEN_UPDATE
        if name.ends_with(".actual") {
            continue;
        }
        if !produced.contains(&name) {
            orphans.push(name);
        }
    }
    assert!(
        orphans.is_empty(),
        "golden files no entry of GOLDEN produces: {orphans:?}"
    );
}

#[test]
fn transformers_normal() {
    let out = check_golden("transformers/train-normal.log");
    let run = [("run", "transformers/train-normal.log")];
    assert_eq!(value(&out, "training_loss", &run), Some(1.563));
    assert_eq!(value(&out, "training_step", &run), Some(300.0));
    assert_eq!(value(&out, "training_max_steps", &run), Some(300.0));
    // the last eval is trainer.evaluate()'s raw-float dict after the summary
    assert_eq!(
        value(&out, "training_eval_loss", &run),
        Some(1.500596284866333)
    );
    assert_eq!(
        value(&out, "training_metric", &[run[0], ("key", "train_loss")]),
        Some(2.568)
    );
    // 30 logging dicts + 6 eval dicts + summary + final evaluate; TrainOutput(...) is not one
    assert_eq!(value(&out, "training_records_total", &run), Some(38.0));
    // the watched keys' counters exist at 0 from their first value
    let nonfinite = samples(&out, "training_nonfinite_values_total");
    assert_eq!(nonfinite.len(), 3);
    assert!(nonfinite.iter().all(|(_, v)| *v == 0.0));
    assert_eq!(value(&out, "training_run_finished", &run), Some(1.0));
}

#[test]
fn transformers_diverge() {
    let out = check_golden("transformers/train-diverge.log");
    let run = ("run", "transformers/train-diverge.log");
    assert!(value(&out, "training_loss", &[run]).unwrap().is_nan());
    // loss is nan from step 50 on: 26 logging dicts of 30; 6 evals + the final evaluate
    assert_eq!(
        value(
            &out,
            "training_nonfinite_values_total",
            &[run, ("key", "loss")]
        ),
        Some(26.0)
    );
    assert_eq!(
        value(
            &out,
            "training_nonfinite_values_total",
            &[run, ("key", "grad_norm")]
        ),
        Some(26.0)
    );
    assert_eq!(
        value(
            &out,
            "training_nonfinite_values_total",
            &[run, ("key", "eval_loss")]
        ),
        Some(7.0)
    );
    assert_eq!(value(&out, "training_learning_rate", &[run]), Some(14.95));
}

#[test]
fn swift_console() {
    let out = check_golden("ms-swift/train.log");
    let run = [("run", "ms-swift/train.log")];
    assert_eq!(value(&out, "training_step", &run), Some(100.0));
    assert_eq!(value(&out, "training_max_steps", &run), Some(100.0));
    assert_eq!(value(&out, "training_loss", &run), Some(2.11));
    assert_eq!(value(&out, "training_eval_loss", &run), Some(2.092));
    assert_eq!(
        value(
            &out,
            "training_metric",
            &[run[0], ("key", "eval_token_acc")]
        ),
        Some(0.6833)
    );
    // train_speed(s/it) 0.04193 in the last dict
    let sps = value(&out, "training_steps_per_second", &run).unwrap();
    assert!((sps - 1.0 / 0.04193).abs() < 1e-9, "{sps}");
}

#[test]
fn swift_console_offline_hub_check() {
    let out = check_golden("ms-swift/train-hub-check-offline.log");
    let run = [("run", "ms-swift/train-hub-check-offline.log")];
    assert_eq!(value(&out, "training_step", &run), Some(100.0));
    assert_eq!(value(&out, "training_parse_errors_total", &run), Some(0.0));
}

#[test]
fn swift_logging_jsonl_does_not_replay_history() {
    let rel = "ms-swift/output/v0-20261128-120712/logging.jsonl";
    let out = check_golden(rel);
    let run = [("run", rel)];
    // 20 train records, 4 evals, the summary and the final line: 27 lines, 27 records; the
    // log_history in the final line is skipped, so the loss stays at the last record's
    assert_eq!(value(&out, "training_records_total", &run), Some(27.0));
    assert_eq!(value(&out, "training_loss", &run), Some(2.10989571));
    assert_eq!(
        value(&out, "training_metric", &[run[0], ("key", "best_metric")]),
        Some(2.09178305)
    );
}

#[test]
fn megatron_iterations_validation_and_nan() {
    let rel = "megatron/pretrain-gpt.log";
    let out = check_golden(rel);
    let run = ("run", rel);
    assert_eq!(value(&out, "training_loss", &[run]), Some(1.818812));
    assert_eq!(value(&out, "training_learning_rate", &[run]), Some(1.42e-5));
    assert_eq!(value(&out, "training_max_steps", &[run]), Some(100.0));
    assert_eq!(value(&out, "training_eval_loss", &[run]), Some(6.912345));
    assert_eq!(
        value(&out, "training_metric", &[run, ("key", "test_loss")]),
        Some(1.79)
    );
    // iteration 40 printed no loss, `grad norm: nan` and one nan iteration
    for key in ["loss", "grad_norm"] {
        assert_eq!(
            value(
                &out,
                "training_nonfinite_values_total",
                &[run, ("key", key)]
            ),
            Some(1.0)
        );
    }
    // 6 iteration lines (with and without timestamps) + 2 validation lines
    assert_eq!(value(&out, "training_records_total", &[run]), Some(7.0));
    assert!(out.contains("format=\"megatron\""));
}

#[test]
fn deepspeed_all_forms() {
    let rel = "deepspeed/train.log";
    let out = check_golden(rel);
    let run = ("run", rel);
    assert_eq!(value(&out, "training_step", &[run]), Some(30.0));
    assert_eq!(value(&out, "training_learning_rate", &[run]), Some(4.34e-6));
    assert_eq!(value(&out, "training_loss", &[run]), Some(0.312));
    assert_eq!(value(&out, "training_steps_per_second", &[run]), Some(2.0));
    assert_eq!(
        value(
            &out,
            "training_metric",
            &[run, ("key", "memory_max_allocated_bytes")]
        ),
        Some(63.5 * (1u64 << 30) as f64)
    );
    assert_eq!(value(&out, "training_records_total", &[run]), Some(6.0));
}

#[test]
fn torchtitan_colours_and_separators() {
    let rel = "torchtitan/train.log";
    let out = check_golden(rel);
    let run = ("run", rel);
    assert_eq!(value(&out, "training_step", &[run]), Some(20.0));
    assert!(value(&out, "training_loss", &[run]).unwrap().is_nan());
    assert_eq!(
        value(&out, "training_tokens_per_second", &[run]),
        Some(12_345_678.0)
    );
    assert_eq!(
        value(&out, "training_metric", &[run, ("key", "memory_ratio")]),
        Some(0.6499)
    );
    assert_eq!(value(&out, "training_records_total", &[run]), Some(3.0));
}

#[test]
fn vllm_engine_stats_both_forms() {
    let out = check_golden("vllm/serve.log");
    let run = [("run", "vllm/serve.log")];
    assert_eq!(
        value(&out, "inference_prompt_tokens_per_second", &run),
        Some(1254.4)
    );
    assert_eq!(value(&out, "inference_requests_waiting", &run), Some(4.0));
    assert_eq!(
        value(&out, "inference_kv_cache_usage_ratio", &run),
        Some(0.579)
    );
    assert_eq!(
        value(&out, "inference_prefix_cache_hit_ratio", &run),
        Some(0.405)
    );
    let out = check_golden("vllm/serve-v0.log");
    let run = [("run", "vllm/serve-v0.log")];
    // `Pending` is the older name of `Waiting`
    assert_eq!(value(&out, "inference_requests_waiting", &run), Some(2.0));
    assert_eq!(value(&out, "inference_requests_running", &run), Some(3.0));
    assert_eq!(value(&out, "inference_prefix_cache_hit_ratio", &run), None);
}

#[test]
fn lightning_bar_postfix() {
    let rel = "lightning/train-tqdm.log";
    let out = check_golden(rel);
    let run = [("run", rel)];
    assert_eq!(value(&out, "training_loss", &run), Some(0.0476));
    assert_eq!(value(&out, "training_eval_loss", &run), Some(0.094));
    assert_eq!(value(&out, "training_epoch", &run), Some(3.0));
    // the epoch bar counts batches, not steps
    assert_eq!(value(&out, "training_step", &run), None);
    assert_eq!(value(&out, "training_max_steps", &run), None);
}

#[test]
fn lightning_metrics_csv() {
    let rel = "lightning/metrics.csv";
    let out = check_golden(rel);
    let run = [("run", rel)];
    // header + 24 rows, CRLF
    assert_eq!(value(&out, "training_log_lines_total", &run), Some(25.0));
    assert_eq!(value(&out, "training_records_total", &run), Some(24.0));
    assert_eq!(value(&out, "training_step", &run), Some(199.0));
    assert_eq!(
        value(&out, "training_eval_loss", &run),
        Some(0.09399781376123428)
    );
    assert_eq!(value(&out, "training_parse_errors_total", &run), Some(0.0));
}
