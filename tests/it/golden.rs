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
    "transformers/train-resumed-real.log",
    "ms-swift/train.log",
    "ms-swift/train-hub-check-offline.log",
    "ms-swift/output/v0-20261128-120712/logging.jsonl",
    "megatron/pretrain-gpt.log",
    "deepspeed/train.log",
    "torchtitan/train.log",
    "vllm/serve.log",
    "vllm/serve-v0.log",
    "sglang/server.log",
    "nanogpt/train.log",
    "lightning/train-tqdm.log",
    "lightning/train-rich.log",
    "lightning/train-rich-terminal.log",
    "lightning/metrics.csv",
    "crash/torchrun-oom-rank1.log",
    "crash/torchrun-sigkill.log",
    "crash/startup-import.log",
    "crash/nccl-timeout.log",
    "crash/captured/single-oom.log",
    "crash/captured/torchrun-oom-rank1.log",
    "crash/captured/torchrun-sigkill.log",
    "crash/captured/startup-import.log",
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
fn transformers_resumed_real() {
    let out = check_golden("transformers/train-resumed-real.log");
    let run = [("run", "transformers/train-resumed-real.log")];
    // killed after the bar showed 45/60, resumed from checkpoint-40 (the bar jumps to 41/60)
    assert_eq!(value(&out, "training_run_restarts_total", &run), Some(1.0));
    assert_eq!(value(&out, "training_steps_redone_total", &run), Some(5.0));
    assert_eq!(value(&out, "training_step", &run), Some(60.0));
    // 9 records before the kill (steps 5-45), 4 after (45-60, 45 logged again), the summary
    assert_eq!(value(&out, "training_records_total", &run), Some(14.0));
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

/// Rich's bar with a terminal forced (`FORCE_COLOR=1`) but the output in a file: every batch
/// redraws the frame (ESC[2K, ESC[1A), metrics wrapped onto the lines below the bar. Only the
/// redraws that change a value are records; the last frame's values, rounded to `.3f` as the
/// bar shows them, are the run's.
#[test]
fn lightning_rich_bar_with_a_forced_terminal() {
    let rel = "lightning/train-rich-terminal.log";
    let out = check_golden(rel);
    let run = [("run", rel)];
    assert_eq!(value(&out, "training_loss", &run), Some(0.004));
    assert_eq!(value(&out, "training_eval_loss", &run), Some(0.004));
    assert_eq!(value(&out, "training_epoch", &run), Some(2.0));
    assert_eq!(value(&out, "training_step", &run), None);
    assert_eq!(value(&out, "training_parse_errors_total", &run), Some(0.0));
    // every redraw is a frame of two or three lines; the redraws that repeat the values
    // before them are no records
    let text = std::fs::read_to_string(root().join("tests/fixtures").join(rel)).unwrap();
    let frames = text.matches("Epoch ").count();
    let frame_lines =
        frames + text.matches("train_loss: ").count() + text.matches("val_loss: ").count();
    let records = value(&out, "training_records_total", &run).unwrap() as usize;
    assert!(frames > 30, "{frames} frames");
    assert!(
        records >= 3 && records < frames && records * 3 < frame_lines,
        "{records} records of {frame_lines} frame lines"
    );
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

/// The event counts of a run in `parse` output, by kind.
fn events_of(out: &str, run: &str) -> Vec<(String, f64)> {
    samples(out, "training_log_events_total")
        .into_iter()
        .filter(|(l, _)| l.iter().any(|(k, v)| k == "run" && v == run))
        .map(|(l, v)| {
            let e = l.iter().find(|(k, _)| k == "event").unwrap().1.clone();
            (e, v)
        })
        .collect()
}

/// The `(event, message)` labels of the run's last error.
fn last_error(out: &str) -> Vec<(String, String)> {
    samples(out, "training_run_last_error_info")
        .into_iter()
        .map(|(l, v)| {
            assert_eq!(v, 1.0);
            let get = |n: &str| l.iter().find(|(k, _)| k == n).unwrap().1.clone();
            (get("event"), get("message"))
        })
        .collect()
}

/// The `rank` label of the run's last error, `None` when the series has none.
fn last_error_rank(out: &str) -> Option<String> {
    let mut all = samples(out, "training_run_last_error_info");
    assert_eq!(all.len(), 1, "{out}");
    let (labels, _) = all.remove(0);
    labels
        .into_iter()
        .find(|(k, _)| k == "rank")
        .map(|(_, v)| v)
}

#[test]
fn crash_under_torchrun_names_rank_1s_oom_not_rank_0s_cascade() {
    let out = check_golden("crash/torchrun-oom-rank1.log");
    let run = "crash/torchrun-oom-rank1.log";
    // rank 1's OOM and rank 0's `Connection closed by peer`; torchrun's own
    // ChildFailedError is its report, not a third event
    assert_eq!(
        events_of(&out, run),
        [("oom".to_string(), 1.0), ("exception".to_string(), 1.0)]
    );
    let e = last_error(&out);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "oom");
    assert!(
        e[0].1.starts_with(
            "rank 1: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB."
        ),
        "{}",
        e[0].1
    );
    assert!(e[0].1.len() <= 200 && !e[0].1.contains("Connection closed"));
    assert_eq!(
        value(&out, "training_run_last_error_step", &[("run", run)]),
        Some(137.0)
    );
    assert_eq!(last_error_rank(&out).as_deref(), Some("1"));
    // wall-clock series stay out of the one-shot output
    assert!(!out.contains("training_run_last_error_timestamp_seconds"));
}

#[test]
fn crash_by_sigkill_is_torchruns_root_cause() {
    let out = check_golden("crash/torchrun-sigkill.log");
    let run = "crash/torchrun-sigkill.log";
    assert_eq!(events_of(&out, run), [("process_killed".to_string(), 1.0)]);
    assert_eq!(
        last_error(&out),
        [(
            "process_killed".to_string(),
            "rank 1: Signal 9 (SIGKILL) received by PID 4244".to_string()
        )]
    );
    assert_eq!(last_error_rank(&out).as_deref(), Some("1"));
}

#[test]
fn crash_at_startup_is_the_tracebacks_last_line() {
    let out = check_golden("crash/startup-import.log");
    assert_eq!(
        last_error(&out),
        [(
            "exception".to_string(),
            "ModuleNotFoundError: No module named 'flash_attn'".to_string()
        )]
    );
    // no step was reached: no step series for the error; one process: no rank
    assert!(!out.contains("training_run_last_error_step"));
    assert_eq!(last_error_rank(&out), None);
}

#[test]
fn nccl_watchdog_timeout_is_one_event() {
    let out = check_golden("crash/nccl-timeout.log");
    let run = "crash/nccl-timeout.log";
    assert_eq!(events_of(&out, run), [("nccl_timeout".to_string(), 1.0)]);
    let e = last_error(&out);
    assert_eq!(e[0].0, "nccl_timeout");
    assert!(e[0]
        .1
        .contains("Watchdog caught collective operation timeout"));
}

// Captured logs (tests/fixtures/crash/captured/, written by scripts/make-crash-fixtures.py
// with a real torch): the same crashes as the constructed ones above, byte for byte.

#[test]
fn captured_single_process_oom_in_a_callback_is_the_cause() {
    let out = check_golden("crash/captured/single-oom.log");
    let run = "crash/captured/single-oom.log";
    assert_eq!(events_of(&out, run), [("oom".to_string(), 1.0)]);
    let e = last_error(&out);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "oom");
    // one process: no rank prefix
    assert!(
        e[0].1.starts_with(
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 "
        ),
        "{}",
        e[0].1
    );
    // the three dict lines before the crash are still read
    assert_eq!(value(&out, "training_loss", &[("run", run)]), Some(0.8545));
    assert_eq!(
        value(&out, "training_records_total", &[("run", run)]),
        Some(3.0)
    );
}

#[test]
fn captured_torchrun_oom_names_rank_1_not_rank_0s_gloo_cascade_or_sigterm() {
    let out = check_golden("crash/captured/torchrun-oom-rank1.log");
    let run = "crash/captured/torchrun-oom-rank1.log";
    // rank 0's `Connection closed by peer` is an exception of its own; its SIGTERM, which
    // torchrun lists under `Failures:` before the root cause, is not a killed process
    assert_eq!(
        events_of(&out, run),
        [("oom".to_string(), 1.0), ("exception".to_string(), 1.0)]
    );
    let e = last_error(&out);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "oom");
    assert!(
        e[0].1.starts_with(
            "rank 1: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 1 "
        ),
        "{}",
        e[0].1
    );
    assert!(e[0].1.len() <= 200 && !e[0].1.contains("Connection closed"));
}

#[test]
fn captured_torchrun_sigkill_names_rank_1_not_rank_0s_sigterm() {
    let out = check_golden("crash/captured/torchrun-sigkill.log");
    let run = "crash/captured/torchrun-sigkill.log";
    // rank 0's gloo traceback counts as an exception; the kill is torchrun's root cause
    assert_eq!(
        events_of(&out, run),
        [
            ("process_killed".to_string(), 1.0),
            ("exception".to_string(), 1.0)
        ]
    );
    assert_eq!(
        last_error(&out),
        [(
            "process_killed".to_string(),
            "rank 1: Signal 9 (SIGKILL) received by PID 21268".to_string()
        )]
    );
}

#[test]
fn captured_startup_import_error_is_the_tracebacks_last_line() {
    let out = check_golden("crash/captured/startup-import.log");
    assert_eq!(
        last_error(&out),
        [(
            "exception".to_string(),
            "ModuleNotFoundError: No module named 'flash_attn_nonexistent'".to_string()
        )]
    );
    assert!(!out.contains("training_run_last_error_step"));
}
