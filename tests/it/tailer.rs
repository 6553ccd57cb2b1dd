//! The tailer on real files, driven poll by poll: appends, partial lines, rotation (with the
//! inode checked), copytruncate, deletion and recreation, late files, new run directories,
//! and a model-based test of random write/rotate/truncate sequences.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use gpu_train_exporter::parse::Format;
use gpu_train_exporter::tail::{FileEvent, Sink, Source, TailOptions, Tailer};

use crate::harness::append;

#[derive(Default)]
struct Collect {
    lines: BTreeMap<String, Vec<String>>,
    events: Vec<(String, FileEvent)>,
    forgotten: Vec<String>,
}

impl Sink for Collect {
    fn open(&mut self, run: &str, _path: &Path, _format: Format) -> bool {
        self.lines.entry(run.to_string()).or_default();
        true
    }
    fn line(&mut self, run: &str, line: &[u8], _time: f64) {
        self.lines
            .entry(run.to_string())
            .or_default()
            .push(String::from_utf8_lossy(line).into_owned());
    }
    fn too_long(&mut self, _run: &str) {}
    fn event(&mut self, run: &str, event: &FileEvent) {
        self.events.push((run.to_string(), event.clone()));
    }
    fn forget(&mut self, run: &str) {
        self.forgotten.push(run.to_string());
    }
}

fn opts() -> TailOptions {
    TailOptions {
        rescan: Duration::ZERO,
        active_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        forget_after: Duration::from_secs(3600),
        ..TailOptions::default()
    }
}

fn tailer(pattern: &str, run: Option<&str>) -> Tailer {
    Tailer::new(
        vec![Source {
            run: run.map(String::from),
            path: pattern.to_string(),
            format: Format::Auto,
            ..Source::default()
        }],
        opts(),
    )
}

fn lines(c: &Collect, run: &str) -> Vec<String> {
    c.lines.get(run).cloned().unwrap_or_default()
}

#[test]
fn append_and_partial_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train.log");
    append(&p, "a\nb");
    let mut t = tailer(p.to_str().unwrap(), Some("r"));
    let mut c = Collect::default();
    t.poll_once(&mut c);
    assert_eq!(lines(&c, "r"), ["a"]);
    append(&p, "c\r");
    t.poll_once(&mut c);
    assert_eq!(lines(&c, "r"), ["a", "bc"]);
    append(&p, "d\n");
    t.poll_once(&mut c);
    assert_eq!(lines(&c, "r"), ["a", "bc", "d"]);
}

#[test]
fn rotation_reads_the_old_file_to_its_end_then_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train.log");
    append(&p, "1\n");
    let mut t = tailer(p.to_str().unwrap(), Some("r"));
    let mut c = Collect::default();
    t.poll_once(&mut c);
    let old_ino = std::fs::metadata(&p).unwrap().ino();
    append(&p, "2\n");
    std::fs::rename(&p, dir.path().join("train.log.1")).unwrap();
    // the writer still holds the old file for a moment
    append(&dir.path().join("train.log.1"), "3\n");
    append(&p, "4\n");
    let new_ino = std::fs::metadata(&p).unwrap().ino();
    assert_ne!(old_ino, new_ino, "rotation must produce a new inode");
    t.poll_once(&mut c);
    t.poll_once(&mut c);
    assert_eq!(lines(&c, "r"), ["1", "2", "3", "4"]);
    assert!(c.events.iter().any(|(_, e)| *e == FileEvent::Rotated));
}

#[test]
fn copytruncate_starts_again_from_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train.log");
    append(&p, "one\ntwo\n");
    let mut t = tailer(p.to_str().unwrap(), Some("r"));
    let mut c = Collect::default();
    t.poll_once(&mut c);
    std::fs::copy(&p, dir.path().join("train.log.1")).unwrap();
    let ino = std::fs::metadata(&p).unwrap().ino();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    append(&p, "x\n");
    assert_eq!(
        std::fs::metadata(&p).unwrap().ino(),
        ino,
        "copytruncate keeps the inode"
    );
    t.poll_once(&mut c);
    assert_eq!(lines(&c, "r"), ["one", "two", "x"]);
    assert!(c
        .events
        .iter()
        .any(|(_, e)| matches!(e, FileEvent::Truncated { .. })));
}

#[test]
fn delete_and_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train.log");
    append(&p, "a\n");
    let mut t = tailer(p.to_str().unwrap(), Some("r"));
    let mut c = Collect::default();
    t.poll_once(&mut c);
    std::fs::remove_file(&p).unwrap();
    t.poll_once(&mut c);
    assert!(c.events.iter().any(|(_, e)| *e == FileEvent::Deleted));
    append(&p, "b\n");
    t.poll_once(&mut c);
    assert_eq!(lines(&c, "r"), ["a", "b"]);
}

#[test]
fn deleted_file_is_forgotten_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train.log");
    append(&p, "a\n");
    let mut t = Tailer::new(
        vec![Source {
            run: Some("r".into()),
            path: p.display().to_string(),
            format: Format::Auto,
            ..Source::default()
        }],
        TailOptions {
            forget_after: Duration::from_millis(50),
            ..opts()
        },
    );
    let mut c = Collect::default();
    t.poll_once(&mut c);
    std::fs::remove_file(&p).unwrap();
    t.poll_once(&mut c);
    assert!(c.forgotten.is_empty());
    std::thread::sleep(Duration::from_millis(80));
    t.poll_once(&mut c);
    assert_eq!(c.forgotten, ["r"]);
    assert_eq!(t.file_count(), 0);
}

#[test]
fn file_that_appears_later() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("later.log");
    let mut t = tailer(p.to_str().unwrap(), None);
    let mut c = Collect::default();
    t.poll_once(&mut c);
    assert!(lines(&c, "later").is_empty());
    append(&p, "hello\n");
    t.poll_once(&mut c);
    assert_eq!(lines(&c, "later"), ["hello"]);
}

#[test]
fn glob_picks_up_a_new_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("output");
    std::fs::create_dir_all(out.join("v0-20261128-120712")).unwrap();
    append(
        &out.join("v0-20261128-120712/logging.jsonl"),
        "{\"loss\": 1}\n",
    );
    let mut t = tailer(&format!("{}/*/logging.jsonl", out.display()), Some("swift"));
    let mut c = Collect::default();
    t.poll_once(&mut c);
    assert_eq!(lines(&c, "swift/v0-20261128-120712").len(), 1);
    std::fs::create_dir_all(out.join("v1-20261128-130000")).unwrap();
    append(
        &out.join("v1-20261128-130000/logging.jsonl"),
        "{\"loss\": 2}\n",
    );
    t.poll_once(&mut c);
    assert_eq!(lines(&c, "swift/v1-20261128-130000"), ["{\"loss\": 2}"]);
}

/// Random appends (whole and partial lines), rotations and copytruncates, polled at random
/// points, against a model: every completed line exactly once, in order.
#[test]
fn model_random_write_rotate_truncate() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.log");
        append(&p, "");
        let mut t = tailer(p.to_str().unwrap(), Some("m"));
        let mut c = Collect::default();
        t.poll_once(&mut c); // the daemon opens the file before anything rotates it
        let mut expected = Vec::new();
        let mut pending = String::new();
        let mut counter = 0;
        let mut rotations = 0;
        let mut rotated_since_poll = false;
        for _ in 0..200 {
            match rnd(10) {
                0..=4 => {
                    for _ in 0..=rnd(3) {
                        counter += 1;
                        let line = format!("{round}-{counter}");
                        append(&p, &format!("{line}\n"));
                        expected.push(format!("{pending}{line}"));
                        pending.clear();
                    }
                }
                5 => {
                    counter += 1;
                    let part = format!("p{counter}-");
                    append(&p, &part);
                    pending.push_str(&part);
                }
                6 => {
                    // a path-based tailer sees at most one rotation per poll: a file rotated
                    // twice between polls loses the middle file, so poll between rotations
                    if rotated_since_poll {
                        t.poll_once(&mut c);
                    }
                    rotated_since_poll = true;
                    // rotate: the old file's partial line is finished when it is drained
                    if !pending.is_empty() {
                        expected.push(std::mem::take(&mut pending));
                    }
                    rotations += 1;
                    std::fs::rename(&p, dir.path().join(format!("m.log.{rotations}"))).unwrap();
                    append(&p, "");
                }
                7 => {
                    // copytruncate after everything written so far has been read
                    t.poll_once(&mut c);
                    rotated_since_poll = false;
                    if pending.is_empty() {
                        std::fs::OpenOptions::new()
                            .write(true)
                            .truncate(true)
                            .open(&p)
                            .unwrap();
                    }
                }
                _ => {
                    t.poll_once(&mut c);
                    rotated_since_poll = false;
                }
            }
        }
        t.poll_once(&mut c);
        t.poll_once(&mut c);
        assert_eq!(lines(&c, "m"), expected, "round {round}");
    }
}
