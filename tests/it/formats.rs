//! Trainer formats beyond the golden files: forcing a format, and Lightning's `metrics.csv`
//! rewritten whole while the daemon follows it.

use std::time::Duration;

use crate::harness::*;

#[test]
fn a_forced_format_ignores_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mixed.log");
    std::fs::write(
        &log,
        "iteration 10/ 100 | lm loss: 2.5E+00 |\n\
         steps: 11 loss: 0.5 iter time (s): 1.0 samples/sec: 8.0\n\
         {'loss': 0.25}\n",
    )
    .unwrap();
    let p = log.to_str().unwrap();
    let out = run(&["parse", "--format", "megatron", p]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let r = [("run", p)];
    assert_eq!(value(&text, "training_loss", &r), Some(2.5));
    assert_eq!(value(&text, "training_records_total", &r), Some(1.0));
    let out = run(&["parse", p]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(value(&text, "training_loss", &r), Some(0.25));
    assert_eq!(value(&text, "training_records_total", &r), Some(3.0));
    let out = run(&["parse", "--format", "nope", p]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn lightning_csv_rewritten_whole_is_not_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("metrics.csv");
    std::fs::write(&csv, "epoch,step,train_loss\r\n0,9,0.5\r\n0,19,0.4\r\n").unwrap();
    let arg = format!("csv={}", csv.display());
    let d = Daemon::start(&["--log", &arg]);
    let r = [("run", "csv")];
    let t = Duration::from_secs(10);
    d.wait_value("training_records_total", &r, 2.0, t);
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&csv).unwrap());
    // what CSVLogger does when `val_loss` first appears: rewrite the file in place with the
    // wider header (O_TRUNC, same inode), then append the new row
    std::fs::write(
        &csv,
        "epoch,step,train_loss,val_loss\r\n0,9,0.5,\r\n0,19,0.4,\r\n0,19,,0.45\r\n",
    )
    .unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&csv).unwrap()),
        ino
    );
    d.wait_value("training_eval_loss", &r, 0.45, t);
    append(&csv, "1,29,0.3,\r\n");
    d.wait_value("training_step", &r, 29.0, t);
    let m = d.scrape();
    assert_eq!(value(&m, "training_records_total", &r), Some(4.0));
    assert_eq!(value(&m, "training_loss", &r), Some(0.3));
    assert_eq!(value(&m, "training_parse_errors_total", &r), Some(0.0));
}
