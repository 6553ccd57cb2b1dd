//! The tailer on real files, driven poll by poll: appends, partial lines, rotation (with the
//! inode checked), copytruncate, deletion and recreation, late files, new run directories,
//! and a model-based test of random write/rotate/truncate sequences.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use gpu_train_exporter::clock::Waker;
use gpu_train_exporter::tail::{FileEvent, Follower, Sink, Source, TailOptions, Tailer};

use crate::harness::append;

#[derive(Default)]
struct Collect {
    lines: BTreeMap<String, Vec<String>>,
    events: Vec<(String, FileEvent)>,
    forgotten: Vec<String>,
}

impl Sink<()> for Collect {
    fn open(&mut self, run: &str, _path: &Path, _tag: &()) -> bool {
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

fn tailer<T>(pattern: &str, run: Option<&str>) -> Tailer<T>
where
    T: Default + Clone + PartialEq + Send + Sync + 'static,
{
    Tailer::new(vec![source(run, pattern, false)], opts())
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
            tag: (),
            ..Source::default()
        }],
        TailOptions {
            forget_after: Duration::from_secs(3600),
            ..opts()
        },
    );
    let mut c = Collect::default();
    // time stepped by hand: gone at t0 + 1 s, kept until an hour later
    let t0 = Instant::now();
    t.poll_at(&mut c, t0);
    std::fs::remove_file(&p).unwrap();
    t.poll_at(&mut c, t0 + Duration::from_secs(1));
    assert!(c.forgotten.is_empty());
    t.poll_at(&mut c, t0 + Duration::from_secs(3600));
    assert!(c.forgotten.is_empty(), "gone 3599 s of 3600");
    t.poll_at(&mut c, t0 + Duration::from_secs(3601));
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

// ---- hostile log directories (issue 10): each test failed before its fix ----

/// A source with the default tag (`()` for [`Collect`], the automatic format for `Runs`).
fn source<T: Default>(run: Option<&str>, pattern: &str, outside: bool) -> Source<T> {
    Source {
        run: run.map(String::from),
        path: pattern.to_string(),
        tag: T::default(),
        follow_symlinks_outside: outside,
        one_run: false,
    }
}

/// Runs `f` on a thread and returns its result, or panics if it takes longer than `limit`
/// (a tailer blocked in `open(2)` or in an endless walk fails the test instead of hanging it).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what}: still running after {limit:?}"),
    }
}

fn mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success(), "mkfifo {}", p.display());
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::metadata(p).unwrap().file_type()
    ));
}

fn errors(c: &Collect, run: &str) -> Vec<String> {
    c.events
        .iter()
        .filter_map(|(r, e)| match e {
            FileEvent::Error(m) if r == run => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn polls(mut t: Tailer<()>, n: usize, what: &str) -> (Tailer<()>, Collect) {
    within(Duration::from_secs(5), what, move || {
        let mut c = Collect::default();
        for _ in 0..n {
            t.poll_once(&mut c);
        }
        (t, c)
    })
}

/// A FIFO matched by a glob blocked the tailer in `open(2)` forever.
#[test]
fn a_fifo_matched_by_a_glob_is_refused_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    // sorted first: before the fix the tailer blocked on it before reading the log
    mkfifo(&dir.path().join("0-pipe.log"));
    append(&dir.path().join("train.log"), "a\nb\n");
    let t = tailer(&format!("{}/*.log", dir.path().display()), None);
    let fifo = dir.path().join("0-pipe.log");
    let guard = FifoUnblocker(fifo);
    let (_, c) = polls(t, 5, "polling a glob that matches a FIFO");
    drop(guard);
    assert_eq!(lines(&c, "train"), ["a", "b"]);
    assert!(lines(&c, "0-pipe").is_empty());
    let e = errors(&c, "0-pipe");
    assert_eq!(
        e.len(),
        1,
        "one error reported for the FIFO: {:?}",
        c.events
    );
    assert!(e[0].contains("FIFO"), "{e:?}");
}

/// Opens a FIFO for writing when dropped, so that a reader blocked on it (the unfixed
/// tailer) is released once the test has failed.
struct FifoUnblocker(std::path::PathBuf);
impl Drop for FifoUnblocker {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000) // O_NONBLOCK: fails at once if no reader waits
            .open(&self.0);
    }
}

/// A symlink to /dev/zero pinned a core (a "truncation" and 256 KiB of zeros each poll);
/// a block device read the whole disk. Links allowed out of the directory here: what is
/// refused is the kind of file.
#[test]
fn a_symlink_to_dev_zero_or_a_block_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.log")).unwrap();
    let block = [
        "/dev/loop0",
        "/dev/vda",
        "/dev/sda",
        "/dev/nvme0n1",
        "/dev/zram0",
    ]
    .into_iter()
    .find(|p| {
        std::fs::metadata(p)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
    });
    if let Some(b) = block {
        std::os::unix::fs::symlink(b, dir.path().join("disk.log")).unwrap();
    } else {
        eprintln!("no block device here: only /dev/zero is checked");
    }
    let sock = std::os::unix::net::UnixListener::bind(dir.path().join("sock.log")).unwrap();
    append(&dir.path().join("train.log"), "a\n");
    let t = Tailer::new(
        vec![source(
            None,
            &format!("{}/*.log", dir.path().display()),
            true,
        )],
        opts(),
    );
    let (_, c) = polls(t, 5, "polling a link to /dev/zero");
    drop(sock);
    assert_eq!(lines(&c, "train"), ["a"]);
    let mut kinds = vec![("zero", "character device"), ("sock", "socket")];
    if block.is_some() {
        kinds.push(("disk", "block device"));
    }
    for (run, kind) in kinds {
        assert!(lines(&c, run).is_empty(), "{run}");
        let e = errors(&c, run);
        assert_eq!(e.len(), 1, "{run}: {:?}", c.events);
        assert!(e[0].contains(kind), "{run}: {e:?}");
    }
    assert!(
        !c.events
            .iter()
            .any(|(_, e)| matches!(e, FileEvent::Truncated { .. })),
        "{:?}",
        c.events
    );
}

/// The drain of a deleted file read without bound (`read(u64::MAX)`): with its writer still
/// writing it never ended. Now each poll keeps to its budget and the drain stops at the
/// size the file had when it was found gone.
#[test]
fn the_drain_of_a_deleted_file_is_budgeted_while_its_writer_goes_on() {
    use gpu_train_exporter::tail::follow::LineSink;
    use std::io::Write;
    struct Count(u64, Vec<FileEvent>);
    impl LineSink for Count {
        fn line(&mut self, _: &[u8]) {
            self.0 += 1;
        }
        fn too_long(&mut self) {}
        fn event(&mut self, e: FileEvent) {
            self.1.push(e);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train.log");
    let mut w = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .unwrap();
    let block = "0123456789abcdef\n".repeat(64 * 1024 / 17);
    w.write_all(block.as_bytes()).unwrap();
    let mut f = Follower::new(&p, 1 << 20);
    let mut c = Count(0, Vec::new());
    f.poll(&mut c, u64::MAX);
    // 4 MiB more, then the file is deleted while its writer keeps writing
    for _ in 0..64 {
        w.write_all(block.as_bytes()).unwrap();
    }
    std::fs::remove_file(&p).unwrap();
    // the poll that finds it gone: the drain's end is the size now
    let budget = 256 * 1024;
    let first = f.poll(&mut c, budget);
    assert!(first.more && first.bytes <= budget + 64 * 1024, "{first:?}");
    let mut read = first.bytes;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let block = block.clone();
        std::thread::spawn(move || {
            // bounded: at most 64 MiB more
            for _ in 0..1024 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                w.write_all(block.as_bytes()).unwrap();
            }
        })
    };
    let mut n = 1;
    while !c.1.contains(&FileEvent::Deleted) {
        n += 1;
        assert!(n <= 64, "the drain did not end: {read} bytes in {n} polls");
        let p = f.poll(&mut c, budget);
        assert!(
            p.bytes <= budget + 64 * 1024,
            "one poll read {} bytes",
            p.bytes
        );
        read += p.bytes;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(n > 1, "4 MiB drained over several polls");
    assert_eq!(
        64 * block.len() as u64,
        read,
        "the drain ends at the size at deletion"
    );
    assert_eq!(c.0, 65 * (block.len() as u64 / 17));
    assert!(f.is_missing());
}

/// Every truncation reaches the parser; after the first, those within a minute are flagged
/// `repeated`, so that the sink logs one line a minute, not one per poll.
#[test]
fn repeated_truncations_are_flagged_within_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("metrics.csv");
    std::fs::write(&p, "epoch,step\n0,1\n").unwrap();
    let mut t = tailer(p.to_str().unwrap(), Some("r"));
    let mut c = Collect::default();
    t.poll_once(&mut c);
    for k in 2..=6 {
        std::fs::write(&p, format!("epoch,step\n0,{k}\n")).unwrap();
        t.poll_once(&mut c);
    }
    let truncations: Vec<bool> = c
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            FileEvent::Truncated { repeated } => Some(*repeated),
            _ => None,
        })
        .collect();
    assert_eq!(truncations, [false, true, true, true, true]);
    assert_eq!(lines(&c, "r").last().map(String::as_str), Some("0,6"));
}

/// `**` followed directory symlinks: one loop link made the same file dozens of runs.
#[test]
fn double_star_does_not_descend_a_loop_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    append(&dir.path().join("a/b/train.log"), "x\n");
    std::os::unix::fs::symlink(".", dir.path().join("loop")).unwrap();
    std::os::unix::fs::symlink("..", dir.path().join("a/up")).unwrap();
    let t = tailer(&format!("{}/**/*.log", dir.path().display()), None);
    let (t, c) = polls(t, 2, "a ** glob over loop links");
    assert_eq!(
        t.file_count(),
        1,
        "{:?}",
        c.lines.keys().collect::<Vec<_>>()
    );
    assert_eq!(lines(&c, "a/b/train.log"), ["x"]);
}

/// Ten links to `.` under seven `*` levels make ten million paths: the walk stops at its
/// entry bound, and a file the bound left out is still found when the tree shrinks.
#[test]
fn a_symlink_tree_that_explodes_is_cut_at_the_entry_bound() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10 {
        std::os::unix::fs::symlink(".", dir.path().join(format!("l{i}"))).unwrap();
    }
    let pattern = format!("{}/*/*/*/*/*/*/*/train.log", dir.path().display());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let exp = gpu_train_exporter::tail::discover::expand(&pattern, 5_000, &stop).unwrap();
    assert!(exp.truncated && exp.entries == 5_000, "{exp:?}");
    let t = Tailer::new(
        vec![source(None, &pattern, false)],
        TailOptions {
            max_scan_entries: 5_000,
            ..opts()
        },
    );
    let (t, _) = polls(t, 3, "a glob over an exploding symlink tree");
    assert_eq!(t.file_count(), 0);
}

/// A Sink shared with the test while `Tailer::run` runs on its own thread.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Collect>>);
impl Sink<()> for Shared {
    fn open(&mut self, run: &str, path: &Path, tag: &()) -> bool {
        self.0.lock().unwrap().open(run, path, tag)
    }
    fn line(&mut self, run: &str, line: &[u8], time: f64) {
        self.0.lock().unwrap().line(run, line, time)
    }
    fn too_long(&mut self, run: &str) {
        self.0.lock().unwrap().too_long(run)
    }
    fn event(&mut self, run: &str, event: &FileEvent) {
        self.0.lock().unwrap().event(run, event)
    }
    fn forget(&mut self, run: &str) {
        self.0.lock().unwrap().forget(run)
    }
}

/// The scan ran on the polling thread: a walk without end froze every followed file, and
/// the stop flag was not seen until it ended. Here the walk never ends (no entry bound,
/// ten million paths): the log is followed all the same, and `run` returns within about
/// 100 ms of its stop flag.
#[test]
fn run_follows_files_while_a_scan_walks_and_stops_within_100ms() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    for i in 0..10 {
        std::os::unix::fs::symlink(".", tree.join(format!("l{i}"))).unwrap();
    }
    let log = dir.path().join("train.log");
    append(&log, "1\n");
    let mut t = Tailer::new(
        vec![
            source(Some("r"), log.to_str().unwrap(), false),
            source(
                None,
                &format!("{}/*/*/*/*/*/*/*/x.log", tree.display()),
                false,
            ),
        ],
        TailOptions {
            rescan: Duration::from_millis(100),
            active_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
            max_scan_entries: usize::MAX,
            ..TailOptions::default()
        },
    );
    let sink = Shared::default();
    let stop = std::sync::Arc::new(Waker::new());
    let (done_tx, done) = std::sync::mpsc::channel();
    let handle = {
        let (mut sink, stop) = (sink.clone(), stop.clone());
        std::thread::spawn(move || {
            t.run(&mut sink, &stop);
            let _ = done_tx.send(std::time::Instant::now());
        })
    };
    let seen = |n: usize| {
        crate::harness::wait_for(Duration::from_secs(3), || {
            lines(&sink.0.lock().unwrap(), "r").len() == n
        })
    };
    assert!(seen(1), "the log is read while the glob is walked");
    append(&log, "2\n3\n");
    assert!(seen(3), "and followed");
    // idle long enough for its poll interval to back off to the longest sleep
    std::thread::sleep(Duration::from_millis(1200));
    append(&log, "4\n");
    assert!(seen(4));
    let asked = std::time::Instant::now();
    stop.stop();
    let returned = done
        .recv_timeout(Duration::from_secs(3))
        .expect("run returns once its stop flag is set");
    let took = returned.duration_since(asked);
    eprintln!("run returned {took:?} after its stop flag");
    assert!(took < Duration::from_millis(150), "{took:?}");
    handle.join().unwrap();
}

/// wandb's `latest-run -> run-…` made the same file two runs. Keyed by device and inode, it
/// is one run, named by the path without a link; a new run moves the link and is one run
/// more.
#[test]
fn a_file_reached_through_a_symlinked_directory_is_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let wandb = dir.path().join("wandb");
    std::fs::create_dir_all(wandb.join("run-20260101_000000-a/files")).unwrap();
    append(
        &wandb.join("run-20260101_000000-a/files/output.log"),
        "a1\n",
    );
    std::os::unix::fs::symlink("run-20260101_000000-a", wandb.join("latest-run")).unwrap();
    let mut t = tailer(&format!("{}/*/files/output.log", wandb.display()), None);
    let mut c = Collect::default();
    t.poll_once(&mut c);
    t.poll_once(&mut c);
    assert_eq!(t.file_count(), 1);
    assert_eq!(
        c.lines.keys().collect::<Vec<_>>(),
        ["run-20260101_000000-a"]
    );
    assert_eq!(lines(&c, "run-20260101_000000-a"), ["a1"]);
    // the next run
    std::fs::create_dir_all(wandb.join("run-20260102_000000-b/files")).unwrap();
    append(
        &wandb.join("run-20260102_000000-b/files/output.log"),
        "b1\n",
    );
    std::fs::remove_file(wandb.join("latest-run")).unwrap();
    std::os::unix::fs::symlink("run-20260102_000000-b", wandb.join("latest-run")).unwrap();
    append(
        &wandb.join("run-20260101_000000-a/files/output.log"),
        "a2\n",
    );
    t.poll_once(&mut c);
    t.poll_once(&mut c);
    assert_eq!(t.file_count(), 2);
    assert_eq!(
        c.lines.keys().collect::<Vec<_>>(),
        ["run-20260101_000000-a", "run-20260102_000000-b"]
    );
    assert_eq!(lines(&c, "run-20260101_000000-a"), ["a1", "a2"]);
    assert_eq!(lines(&c, "run-20260102_000000-b"), ["b1"]);
}

fn runs_of(runs: &gpu_train_exporter::training::Runs) -> Vec<(String, u64)> {
    runs.runs
        .iter()
        .map(|(k, r)| (k.clone(), r.state.lines))
        .collect()
}

/// A file refused because `max_runs` was full was never offered again.
#[test]
fn a_run_refused_at_max_runs_is_taken_when_a_slot_frees() {
    use gpu_train_exporter::training::{Limits, Runs};
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "{\"loss\": 1}\n");
    append(&dir.path().join("b.log"), "{\"loss\": 2}\n{\"loss\": 3}\n");
    let mut t = Tailer::new(
        vec![source(
            None,
            &format!("{}/*.log", dir.path().display()),
            false,
        )],
        TailOptions {
            forget_after: Duration::from_millis(50),
            ..opts()
        },
    );
    let mut runs = Runs::new(Limits::default(), 1);
    t.poll_once(&mut runs);
    assert_eq!(runs_of(&runs), [("a".to_string(), 1)]);
    assert_eq!(t.refused_count(), 1);
    std::fs::remove_file(dir.path().join("a.log")).unwrap();
    let t0 = Instant::now();
    t.poll_at(&mut runs, t0);
    let later = t0 + Duration::from_millis(80);
    t.poll_at(&mut runs, later); // a is forgotten
    t.poll_at(&mut runs, later); // b is offered again
    t.poll_at(&mut runs, later);
    assert_eq!(runs_of(&runs), [("b".to_string(), 2)]);
    assert_eq!(t.refused_count(), 0);
}

/// A file refused because its run name was taken was never offered again.
#[test]
fn a_run_refused_for_its_name_is_taken_when_the_name_frees() {
    use gpu_train_exporter::training::{Limits, Runs};
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2) = (dir.path().join("d1"), dir.path().join("d2"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    append(&d1.join("x.log"), "{\"loss\": 1}\n");
    append(&d2.join("x.log"), "{\"loss\": 2}\n");
    // two globs that give their files one name: r/x
    let mut t = Tailer::new(
        vec![
            source(Some("r"), &format!("{}/*.log", d1.display()), false),
            source(Some("r"), &format!("{}/*.log", d2.display()), false),
        ],
        TailOptions {
            forget_after: Duration::from_millis(50),
            ..opts()
        },
    );
    let mut runs = Runs::new(Limits::default(), 10);
    t.poll_once(&mut runs);
    assert_eq!(
        runs.runs["r/x"].state.path,
        d1.join("x.log").to_string_lossy()
    );
    std::fs::remove_file(d1.join("x.log")).unwrap();
    let t0 = Instant::now();
    t.poll_at(&mut runs, t0);
    let later = t0 + Duration::from_millis(80);
    t.poll_at(&mut runs, later); // r/x is forgotten
    t.poll_at(&mut runs, later); // d2/x.log is offered again
    t.poll_at(&mut runs, later);
    assert_eq!(
        runs.runs["r/x"].state.path,
        d2.join("x.log").to_string_lossy()
    );
    assert_eq!(runs.runs["r/x"].state.lines, 1);
}

/// The refused set grew forever; it now holds only the refused paths still matched.
#[test]
fn the_refused_set_holds_only_paths_still_matched() {
    use gpu_train_exporter::training::{Limits, Runs};
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        append(&dir.path().join(format!("{i:02}.log")), "x\n");
    }
    let mut t = tailer(&format!("{}/*.log", dir.path().display()), None);
    let mut runs = Runs::new(Limits::default(), 1);
    t.poll_once(&mut runs);
    assert_eq!(t.refused_count(), 19);
    for i in 10..20 {
        std::fs::remove_file(dir.path().join(format!("{i:02}.log"))).unwrap();
    }
    t.poll_once(&mut runs);
    assert_eq!(t.refused_count(), 9);
    assert_eq!(
        runs.runs_dropped, 19,
        "a refused path is offered again only once a run is forgotten"
    );
}

/// A symlink out of the log directory let whoever writes there make the daemon read any
/// file. Refused (counted once), unless the source allows it.
#[test]
fn a_symlink_out_of_the_log_directory_is_refused_unless_allowed() {
    let top = tempfile::tempdir().unwrap();
    let (logs, secret) = (top.path().join("logs"), top.path().join("secret"));
    std::fs::create_dir_all(logs.join("run-1")).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    append(&secret.join("secret.json"), "{\"secret\": 42}\n");
    append(&logs.join("run-1/train.log"), "ok\n");
    // a link to a file, and a link to a directory matched by `*`
    std::os::unix::fs::symlink(secret.join("secret.json"), logs.join("run-1/x.log")).unwrap();
    std::os::unix::fs::symlink(&secret, logs.join("run-2")).unwrap();
    append(&secret.join("other.json"), "{\"secret\": 42}\n");
    std::os::unix::fs::symlink("other.json", secret.join("y.log")).unwrap();
    // a link that stays inside is followed
    std::os::unix::fs::symlink("train.log", logs.join("run-1/z.log")).unwrap();
    append(&logs.join("run-1/inside.txt"), "in\n");
    std::os::unix::fs::symlink("../run-1/inside.txt", logs.join("run-1/w.log")).unwrap();
    let pattern = format!("{}/*/*.log", logs.display());
    for outside in [false, true] {
        let t = Tailer::new(vec![source(None, &pattern, outside)], opts());
        let (_, c) = polls(t, 3, "links out of the log directory");
        assert_eq!(lines(&c, "run-1/train.log"), ["ok"]);
        assert_eq!(lines(&c, "run-1/w.log"), ["in"]);
        assert!(
            !c.lines.contains_key("run-1/z.log"),
            "the same file as train.log"
        );
        for run in ["run-1/x.log", "run-2/y.log"] {
            if outside {
                assert_eq!(lines(&c, run), ["{\"secret\": 42}"], "{run}");
                assert!(errors(&c, run).is_empty());
            } else {
                assert!(lines(&c, run).is_empty(), "{run}");
                let e = errors(&c, run);
                assert_eq!(e.len(), 1, "{run}: {:?}", c.events);
                assert!(e[0].contains("outside"), "{e:?}");
            }
        }
    }
}

/// /proc/uptime (size 0, new content at every read) was read again at every poll.
#[test]
fn a_procfs_file_is_refused_once() {
    let t = tailer("/proc/uptime", Some("up"));
    let (_, c) = polls(t, 5, "polling /proc/uptime");
    assert!(lines(&c, "up").is_empty(), "{:?}", lines(&c, "up"));
    let e = errors(&c, "up");
    assert_eq!(e.len(), 1, "{:?}", c.events);
    assert!(e[0].contains("procfs"), "{e:?}");
}

/// After a copytruncate, a writer without O_APPEND writes at its old offset: the hole
/// before its next line reads as NULs, which were glued onto that line.
#[test]
fn copytruncate_under_a_writer_without_o_append_skips_the_hole() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train.log");
    // a real writer that keeps its offset: opened for writing, not appending
    let mut w = std::fs::File::create(&p).unwrap();
    w.write_all(b"{\"loss\": 1}\n{\"loss\": 2}\n").unwrap();
    let mut t = tailer(p.to_str().unwrap(), Some("r"));
    let mut c = Collect::default();
    t.poll_once(&mut c);
    // logrotate's copytruncate
    std::fs::copy(&p, dir.path().join("train.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    w.write_all(b"{\"loss\": 3}\n").unwrap();
    let m = std::fs::metadata(&p).unwrap();
    assert_eq!(m.len(), 36, "the writer wrote past a hole");
    t.poll_once(&mut c);
    // and a truncation noticed before the writer's next line
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    t.poll_once(&mut c);
    w.write_all(b"{\"loss\": 4}\n").unwrap();
    t.poll_once(&mut c);
    assert_eq!(
        lines(&c, "r"),
        [
            "{\"loss\": 1}",
            "{\"loss\": 2}",
            "{\"loss\": 3}",
            "{\"loss\": 4}"
        ]
    );
}

/// File names that are not UTF-8 were never matched, without a word.
#[test]
fn a_file_name_that_is_not_utf8_is_matched() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"run-\xff\xfe.log");
    assert!(name.to_str().is_none());
    append(&dir.path().join(name), "x\n");
    let t = tailer(&format!("{}/run-*.log", dir.path().display()), None);
    let (t, c) = polls(t, 2, "a non-UTF-8 name");
    assert_eq!(t.file_count(), 1);
    assert_eq!(lines(&c, "\u{fffd}\u{fffd}"), ["x"]);
}

/// `run` on a manual waker reads only at a wake-up: a line appended while it waits is read
/// by the next cycle, and `wake(1)` returns once that cycle is done.
#[test]
fn run_on_a_manual_waker_reads_at_each_wake() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.log");
    append(&log, "1\n");
    let mut t = Tailer::new(
        vec![source(Some("r"), log.to_str().unwrap(), false)],
        opts(),
    );
    let sink = Shared::default();
    let waker = std::sync::Arc::new(Waker::manual());
    let handle = {
        let (mut sink, waker) = (sink.clone(), waker.clone());
        std::thread::spawn(move || t.run(&mut sink, &waker))
    };
    let read = || lines(&sink.0.lock().unwrap(), "r");
    // the scanner thread finds the file at a moment of its own: wake until it is followed
    let deadline = Instant::now() + Duration::from_secs(10);
    while read().is_empty() {
        assert!(Instant::now() < deadline, "never followed");
        assert!(waker.wake(1, Duration::from_secs(10)));
    }
    assert_eq!(read(), ["1"]);
    append(&log, "2\n3\n");
    let cycles = waker.cycles();
    assert_eq!(read(), ["1"], "read while waiting");
    assert!(waker.wake(1, Duration::from_secs(10)));
    assert_eq!(waker.cycles(), cycles + 1);
    assert_eq!(read(), ["1", "2", "3"]);
    waker.stop();
    handle.join().unwrap();
}

/// A one-run source: the real Hugging Face run killed at step 45 and resumed from
/// checkpoint-40, its two attempts written to two files (a restarted job's new log), is one
/// run with one restart and five steps redone, as when both attempts are in one file.
#[test]
fn a_restarted_jobs_new_log_continues_its_one_run() {
    use gpu_train_exporter::training::{Limits, Runs};
    use std::time::SystemTime;
    let real = std::fs::read(crate::harness::fixture(
        "transformers/train-resumed-real.log",
    ))
    .unwrap();
    // the second attempt's first output follows the first's last bar frame on one line
    let needle = b"[transformers] Model config: bos_token_id";
    let cut = real
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // attempt 2's file sorts first by name but was written later
    let (first, second) = (dir.path().join("z.log"), dir.path().join("a.log"));
    std::fs::write(&first, &real[..cut]).unwrap();
    std::fs::write(&second, &real[cut..]).unwrap();
    let set_mtime = |p: &Path, ago: u64| {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(ago))
            .unwrap();
    };
    set_mtime(&first, 600);
    set_mtime(&second, 300);
    let mut t = one_run_tailer(dir.path(), Duration::from_secs(60));
    let mut runs = Runs::new(Limits::default(), 10);
    let t0 = Instant::now();
    t.poll_at(&mut runs, t0); // the older file (attempt 1) is read
    assert_eq!(runs.runs.keys().collect::<Vec<_>>(), ["job"]);
    assert_eq!(runs.runs["job"].state.path, first.to_string_lossy());
    assert_eq!(runs.runs["job"].state.attempt.restarts, 0);
    t.poll_at(&mut runs, t0); // the newer one takes over
    t.poll_at(&mut runs, t0);
    let r = &runs.runs["job"].state;
    assert_eq!(r.path, second.to_string_lossy());
    assert_eq!(
        (r.attempt.restarts, r.attempt.steps_redone, r.step),
        (1, 5.0, Some(60.0))
    );
    assert_eq!(t.file_count(), 1);
    // the file handed over is not read again, even when it changes
    append(&first, "{'loss': 9.0, 'epoch': 0.01}\n");
    set_mtime(&first, 0);
    t.poll_at(&mut runs, t0);
    t.poll_at(&mut runs, t0);
    assert_eq!(runs.runs["job"].state.path, second.to_string_lossy());
    assert_eq!(runs.runs["job"].state.attempt.restarts, 1);
}

/// A one-run source's second file still written alongside the first (two writers, not a
/// restart) does not take the run: the first stays followed and nothing is read twice.
#[test]
fn a_one_run_file_still_written_keeps_its_run() {
    use gpu_train_exporter::training::{Limits, Runs};
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    append(&a, "{\"loss\": 1, \"step\": 1}\n");
    let mut t = one_run_tailer(dir.path(), Duration::from_secs(3600));
    let mut runs = Runs::new(Limits::default(), 10);
    t.poll_once(&mut runs);
    append(&b, "{\"loss\": 2, \"step\": 1}\n");
    append(&a, "{\"loss\": 3, \"step\": 2}\n");
    t.poll_once(&mut runs);
    t.poll_once(&mut runs);
    // the witness: a's second line was read; b never was
    let r = &runs.runs["job"].state;
    assert_eq!((r.lines, r.path.as_str()), (2, &*a.to_string_lossy()));
    assert_eq!(t.file_count(), 1);
}

/// A tailer of one one-run source, run `job`, over `dir/*.log`.
fn one_run_tailer<T>(dir: &Path, quiet: Duration) -> Tailer<T>
where
    T: Default + Clone + PartialEq + Send + Sync + 'static,
{
    let src = source(Some("job"), &format!("{}/*.log", dir.display()), false);
    Tailer::new(
        vec![Source {
            one_run: true,
            ..src
        }],
        TailOptions {
            handoff_quiet: quiet,
            ..opts()
        },
    )
}
