//! Crash and error events: the lines with which PyTorch, NCCL, CUDA, torchrun and Python
//! say that a run is dying, and why.
//!
//! [`KINDS`] is the table of event kinds and the fixed strings that mark each; one
//! Aho-Corasick pass (a DFA) over a line finds any of them (no regular expression runs per
//! line), and only over the lines no format read as a metric record or a progress bar: an
//! error is never one of those, and they are nearly every line of a log.
//! [`Tracker`] adds the two things a single line cannot tell: a Python traceback is one event,
//! its final `SomeError: message` line, and its body (which may quote
//! `raise RuntimeError("CUDA out of memory")`) is not read; torchrun's `Root Cause (first
//! observed failure):` block names the rank and exit code of the failure that started a
//! multi-rank crash. Which event is the cause of a crash is decided by the run's state
//! (`crate::training`), from what this module reports.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

/// A well-known event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    Oom,
    NcclTimeout,
    NcclError,
    CudaError,
    ProcessKilled,
    Exception,
}

pub const KIND_COUNT: usize = 6;

impl EventKind {
    pub const ALL: [EventKind; KIND_COUNT] = [
        EventKind::Oom,
        EventKind::NcclTimeout,
        EventKind::NcclError,
        EventKind::CudaError,
        EventKind::ProcessKilled,
        EventKind::Exception,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Oom => "oom",
            EventKind::NcclTimeout => "nccl_timeout",
            EventKind::NcclError => "nccl_error",
            EventKind::CudaError => "cuda_error",
            EventKind::ProcessKilled => "process_killed",
            EventKind::Exception => "exception",
        }
    }

    /// A specific cause (out of memory, a collective timing out, a CUDA fault) outranks a
    /// generic one (an exception, a killed process) as the cause of a crash.
    pub fn specific(self) -> bool {
        !matches!(self, EventKind::ProcessKilled | EventKind::Exception)
    }
}

/// The fixed strings that mark each kind, in the order a line is classified: a line that
/// holds marks of two kinds (`CUDA error: out of memory`) is the first kind's.
pub const KINDS: &[(EventKind, &[&str])] = &[
    (
        EventKind::Oom,
        &[
            // torch.OutOfMemoryError / RuntimeError: CUDA out of memory. Tried to allocate ...
            "CUDA out of memory",
            "CUBLAS_STATUS_ALLOC_FAILED",
            "CUDA error: out of memory",
        ],
    ),
    (
        // [E ProcessGroupNCCL.cpp:...] [Rank 0] Watchdog caught collective operation timeout:
        // WorkNCCL(SeqNum=..., OpType=ALLREDUCE, ..., Timeout(ms)=600000) ran for ... milliseconds
        EventKind::NcclTimeout,
        &["Watchdog caught collective operation timeout"],
    ),
    (
        EventKind::NcclError,
        &[
            "NCCL error",
            "ncclInternalError",
            "ncclSystemError",
            "ncclUnhandledCudaError",
            "ncclInvalidUsage",
            "ncclRemoteError",
            " NCCL WARN ",
        ],
    ),
    (
        EventKind::CudaError,
        &[
            "CUDA error: ",
            "device-side assert triggered",
            "unspecified launch failure",
            "uncorrectable ECC error",
        ],
    ),
];

static MATCHER: LazyLock<(AhoCorasick, Vec<EventKind>)> = LazyLock::new(|| {
    let mut needles = Vec::new();
    let mut kinds = Vec::new();
    for (kind, marks) in KINDS {
        for m in *marks {
            needles.push(*m);
            kinds.push(*kind);
        }
    }
    // a DFA: one table step per byte, for the lines no format reads as a record
    let ac = AhoCorasick::builder()
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(&needles)
        .expect("the event table's fixed strings build");
    (ac, kinds)
});

/// The kind of one line by the table alone (no state), the first kind of [`KINDS`] whose
/// marks it holds; a shell's report of a process it saw killed (`Killed`) is
/// `process_killed`.
pub fn classify(text: &str) -> Option<EventKind> {
    let (ac, kinds) = &*MATCHER;
    let found = ac
        .find_iter(text)
        .map(|m| kinds[m.pattern().as_usize()])
        .min();
    if found.is_some() {
        return found;
    }
    if shell_killed(text) {
        return Some(EventKind::ProcessKilled);
    }
    None
}

/// `Killed` alone (what a shell prints when the OOM killer takes its child), or the shell's
/// long form `bash: line 1:  4242 Killed   python train.py`.
fn shell_killed(text: &str) -> bool {
    if text == "Killed" {
        return true;
    }
    let shell = ["bash:", "sh:", "/bin/sh:", "/bin/bash:", "/usr/bin/bash:"];
    shell.iter().any(|s| text.starts_with(s)) && text.split_whitespace().any(|w| w == "Killed")
}

/// What one line says, read with the lines before it.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// An event: its kind, the line that says it, and the rank that printed it (`[rank1]:`).
    Event {
        kind: EventKind,
        message: String,
        rank: Option<u32>,
    },
    /// torchrun's `Root Cause (first observed failure)` block: the failed rank, its exit
    /// code, and its `traceback :` line (`Signal 9 (SIGKILL) received by PID 7`).
    RootCause {
        rank: Option<u32>,
        exitcode: Option<i64>,
        message: String,
    },
}

/// Lines a traceback may have before it is given up on (a traceback cut off by a kill).
const MAX_TRACEBACK_LINES: usize = 2000;
/// Ranks whose tracebacks are followed at the same time.
const MAX_OPEN_TRACEBACKS: usize = 64;

/// Per-file state: the tracebacks open, by rank, and torchrun's root-cause block.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    /// (rank, lines read) of each traceback being read.
    tracebacks: Vec<(Option<u32>, usize)>,
    root: Option<RootBlock>,
}

#[derive(Debug, Clone, Default)]
struct RootBlock {
    rank: Option<u32>,
    exitcode: Option<i64>,
    message: String,
    lines: usize,
}

/// The rank of a line printed with torchrun's or PyTorch's `[rankN]:` prefix.
pub fn rank_prefix(raw: &[u8]) -> Option<u32> {
    let rest = raw.strip_prefix(b"[rank")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || rest.get(end) != Some(&b']') {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Whether `text` is the last line of a traceback: `Name: message` or a bare `Name`, where
/// `Name` is a dotted Python name whose last part starts with a capital
/// (`torch.OutOfMemoryError`, `ModuleNotFoundError`, `KeyboardInterrupt`).
fn exception_line(text: &str) -> bool {
    let name = match text.find(": ") {
        Some(i) => &text[..i],
        None => text.strip_suffix(':').unwrap_or(text),
    };
    let last = name.rsplit('.').next().unwrap_or("");
    !name.is_empty()
        && name.len() <= 200
        && last.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

impl Tracker {
    /// Reads one cleaned line (`text`), printed by `rank` when known.
    pub fn line(&mut self, text: &str, rank: Option<u32>) -> Option<Found> {
        if text.is_empty() && self.root.is_none() && self.tracebacks.is_empty() {
            // nothing to count a line in, and an empty line classifies as nothing: the
            // cleared tqdm line before each printed record is one of these
            return None;
        }
        if let Some(found) = self.root_line(text) {
            return found;
        }
        if text.starts_with("Traceback (most recent call last)") {
            if let Some(i) = self.tracebacks.iter().position(|(r, _)| *r == rank) {
                self.tracebacks[i].1 = 0;
            } else if self.tracebacks.len() < MAX_OPEN_TRACEBACKS {
                self.tracebacks.push((rank, 0));
            }
            return None;
        }
        if let Some(i) = self.tracebacks.iter().position(|(r, _)| *r == rank) {
            self.tracebacks[i].1 += 1;
            if self.tracebacks[i].1 > MAX_TRACEBACK_LINES {
                self.tracebacks.swap_remove(i);
                return None;
            }
            if text.starts_with("File \"") || !exception_line(text) {
                return None;
            }
            self.tracebacks.swap_remove(i);
            let name = text.split(": ").next().unwrap_or(text);
            if name.ends_with("ChildFailedError") || name.ends_with("ChildFailedError:") {
                // torchrun's own report: its root-cause block says what failed
                return None;
            }
            let kind = classify(text).unwrap_or(EventKind::Exception);
            return Some(Found::Event {
                kind,
                message: text.to_string(),
                rank,
            });
        }
        let kind = classify(text)?;
        Some(Found::Event {
            kind,
            message: text.to_string(),
            rank,
        })
    }

    /// The root-cause block's lines; `Some(found)` when the line belongs to it.
    fn root_line(&mut self, text: &str) -> Option<Option<Found>> {
        if text.starts_with("Root Cause (first observed failure)") {
            self.root = Some(RootBlock::default());
            return Some(None);
        }
        let b = self.root.as_mut()?;
        b.lines += 1;
        let field = |key: &str| -> Option<&str> {
            let rest = text.strip_prefix(key)?;
            Some(rest.trim_start().strip_prefix(':')?.trim())
        };
        if text.starts_with("===") || b.lines > 16 {
            let b = self.root.take()?;
            return Some(Some(Found::RootCause {
                rank: b.rank,
                exitcode: b.exitcode,
                message: b.message,
            }));
        }
        if let Some(v) = field("rank") {
            b.rank = v.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(v) = field("exitcode") {
            b.exitcode = v.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(v) = field("traceback") {
            b.message = v.to_string();
        }
        Some(None)
    }
}

/// A message made fit for a label value: control characters become spaces, and it is cut to
/// at most `max` bytes at a character boundary.
pub fn label_message(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.trim().chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_classifies_the_real_messages() {
        let k = |s: &str| classify(s).map(EventKind::as_str);
        assert_eq!(k("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.15 GiB"), Some("oom"));
        assert_eq!(k("RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), Some("oom"));
        assert_eq!(k("[E ProcessGroupNCCL.cpp:563] [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=5, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600351 milliseconds before timing out."), Some("nccl_timeout"));
        assert_eq!(k("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.20.5"), Some("nccl_error"));
        assert_eq!(
            k("node1:1234:1290 [1] NCCL WARN NET/IB : Got completion with error 12"),
            Some("nccl_error")
        );
        assert_eq!(
            k("RuntimeError: CUDA error: an illegal memory access was encountered"),
            Some("cuda_error")
        );
        assert_eq!(
            k("RuntimeError: CUDA error: device-side assert triggered"),
            Some("cuda_error")
        );
        assert_eq!(k("Killed"), Some("process_killed"));
        assert_eq!(
            k("bash: line 1:  4242 Killed                  python train.py"),
            Some("process_killed")
        );
        assert_eq!(k("{'loss': 1.2, 'grad_norm': 0.3}"), None);
        assert_eq!(k(""), None, "an empty line is skipped unclassified");
        assert_eq!(k("Killed the old checkpoint writer"), None);
    }

    #[test]
    fn a_traceback_is_its_last_line_and_its_body_is_not_read() {
        let mut t = Tracker::default();
        let lines = [
            "Traceback (most recent call last):",
            "File \"/w/train.py\", line 40, in on_step_end",
            "raise RuntimeError(\"CUDA out of memory. Tried to allocate 2.00 GiB\")",
            "ValueError: not an OOM",
        ];
        let found: Vec<_> = lines.iter().filter_map(|l| t.line(l, None)).collect();
        assert_eq!(
            found,
            [Found::Event {
                kind: EventKind::Exception,
                message: "ValueError: not an OOM".into(),
                rank: None
            }]
        );
        // the last line names the kind when the table knows it
        t.line("Traceback (most recent call last):", Some(1));
        let f = t.line("ModuleNotFoundError: No module named 'flash_attn'", Some(0));
        assert!(f.is_none(), "rank 0 is not in a traceback: {f:?}");
        let f = t.line("torch.OutOfMemoryError: CUDA out of memory.", Some(1));
        assert!(matches!(
            f,
            Some(Found::Event {
                kind: EventKind::Oom,
                rank: Some(1),
                ..
            })
        ));
    }

    #[test]
    fn torchruns_root_cause_block() {
        let mut t = Tracker::default();
        let lines = [
            "Root Cause (first observed failure):",
            "[0]:",
            "time      : 2026-12-03_07:41:00",
            "host      : node1",
            "rank      : 1 (local_rank: 1)",
            "exitcode  : -9 (pid: 4242)",
            "error_file: <N/A>",
            "traceback : Signal 9 (SIGKILL) received by PID 4242",
            "============================================================",
        ];
        let found: Vec<_> = lines.iter().filter_map(|l| t.line(l, None)).collect();
        assert_eq!(
            found,
            [Found::RootCause {
                rank: Some(1),
                exitcode: Some(-9),
                message: "Signal 9 (SIGKILL) received by PID 4242".into()
            }]
        );
    }

    #[test]
    fn rank_prefixes_and_label_messages() {
        assert_eq!(rank_prefix(b"[rank12]: x"), Some(12));
        assert_eq!(rank_prefix(b"[rank]: x"), None);
        assert_eq!(rank_prefix(b"rank1 x"), None);
        assert_eq!(label_message("a\tb\u{7}c", 200), "a b c");
        let m = label_message(&"é".repeat(150), 201);
        assert_eq!(m.len(), 200);
    }
}
