//! Line cleaning: turns one physical line of a console log into the text the parsers read.
//!
//! Trainers' output reaches us through terminals, containers and launchers that decorate it:
//! ANSI colours (24-bit too), cursor movement from nested tqdm bars (`ESC[A`), container
//! timestamps, `[rank0]:` from torchrun, `[INFO:swift]`, python-logging headers. This module
//! removes those so that one parser per trainer sees the trainer's own text. It is pure and
//! allocation-free unless the line holds an escape sequence.

use std::borrow::Cow;

use super::lex;

/// A cleaned line.
#[derive(Debug, PartialEq)]
pub struct Cleaned<'a> {
    /// The text with escapes and known prefixes removed, trimmed.
    pub text: Cow<'a, str>,
    /// The line contained a cursor-up sequence (`ESC[A`): tqdm draws nested bars that way.
    pub cursor_up: bool,
}

/// Cleans one line. Invalid UTF-8 is decoded lossily.
pub fn clean(raw: &[u8]) -> Cleaned<'_> {
    clean_read(raw, Bytes::of(raw))
}

/// What one pass over a raw line found: whether it looks binary, and whether it holds an
/// escape (`ESC`), the one byte [`clean`] looks for before anything else.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bytes {
    pub binary: bool,
    pub escape: bool,
}

impl Bytes {
    /// Reads the line once. `binary`: it holds NUL or most of its bytes are control
    /// characters.
    #[inline]
    pub fn of(raw: &[u8]) -> Bytes {
        // byte-wide sums over chunks of 255 (no overflow) let the compiler use 16 lanes; NUL
        // is a control byte too, so a line with none (nearly every line) is text at once
        let (control, escapes) = raw
            .chunks(255)
            .map(|c| {
                let (n, e) = c.iter().fold((0u8, 0u8), |(n, e), &b| {
                    (
                        n + u8::from((b < 0x20) & (b != b'\t') & (b != 0x1b)),
                        e + u8::from(b == 0x1b),
                    )
                });
                (n as usize, e as usize)
            })
            .fold((0, 0), |(n, e), (cn, ce)| (n + cn, e + ce));
        Bytes {
            binary: control > 0
                && (raw.contains(&0) || (raw.len() >= 8 && control * 4 > raw.len())),
            escape: escapes > 0,
        }
    }
}

/// [`clean`], with what [`Bytes::of`] found in `raw` already known.
pub fn clean_read(raw: &[u8], bytes: Bytes) -> Cleaned<'_> {
    // SIMD validation (tqdm bars are full of multi-byte block characters); the lossy
    // decoder only when it fails
    let text = match simdutf8::basic::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(raw),
    };
    // the lossy decoder keeps every ASCII byte: the escapes are those of `raw`
    let (text, cursor_up) = if bytes.escape {
        let (s, up) = strip_ansi(&text);
        (Cow::Owned(s), up)
    } else {
        (text, false)
    };
    let text = match text {
        Cow::Borrowed(s) => Cow::Borrowed(strip_prefixes(s)),
        Cow::Owned(s) => {
            let stripped = strip_prefixes(&s);
            if stripped.len() == s.len() {
                Cow::Owned(s)
            } else {
                Cow::Owned(stripped.to_owned())
            }
        }
    };
    Cleaned { text, cursor_up }
}

/// True for lines that are binary rather than text: they hold NUL or most of their bytes
/// are control characters.
pub fn looks_binary(raw: &[u8]) -> bool {
    Bytes::of(raw).binary
}

/// Removes ANSI/VT escape sequences: CSI (`ESC [ ... final`), OSC (`ESC ] ... BEL|ESC \`)
/// and two-byte escapes. Returns the text and whether a cursor-up CSI was seen.
fn strip_ansi(s: &str) -> (String, bool) {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut up = false;
    let mut i = 0;
    let mut start = 0;
    while i < b.len() {
        if b[i] != 0x1b {
            i += 1;
            continue;
        }
        out.push_str(&s[start..i]);
        i += 1;
        match b.get(i) {
            Some(b'[') => {
                i += 1;
                // parameters and intermediates, then one final byte in 0x40..=0x7e
                while i < b.len() && (0x20..=0x3f).contains(&b[i]) {
                    i += 1;
                }
                // a final byte outside 0x40..=0x7e (say, the start of a UTF-8 character)
                // ends a broken sequence without being part of it
                if i < b.len() && (0x40..=0x7e).contains(&b[i]) {
                    if b[i] == b'A' {
                        up = true;
                    }
                    i += 1;
                }
            }
            Some(b']') => {
                i += 1;
                while i < b.len() {
                    if b[i] == 0x07 {
                        i += 1;
                        break;
                    }
                    if b[i] == 0x1b && b.get(i + 1) == Some(&b'\\') {
                        i += 2;
                        break;
                    }
                    i += 1;
                }
            }
            Some(c) if c.is_ascii() => i += 1,
            _ => {}
        }
        start = i;
    }
    out.push_str(&s[start.min(s.len())..]);
    (out, up)
}

const LEVELS: &[&str] = &[
    "DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "NOTICE", "TRACE",
];

fn is_level(s: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s))
}

/// Strips known prefixes repeatedly: `2026-11-28T12:00:00.123Z [stdout F] `, `[rank0]:`,
/// `[2024-04-06 03:02:12]`, `[INFO:swift]`, `[INFO]`, `[engine.py:123:step]`, `[titan]`,
/// `2026-11-28 12:00:00,123 | INFO | name |` and `... - name - INFO -`.
pub fn strip_prefixes(mut s: &str) -> &str {
    s = lex::trim(s);
    for _ in 0..8 {
        let stripped = strip_one(s);
        // nothing stripped: `s` is trimmed already
        if stripped.len() == s.len() {
            break;
        }
        s = lex::trim_start(stripped);
    }
    lex::trim_end(s)
}

fn strip_one(s: &str) -> &str {
    let b = s.as_bytes();
    match b.first() {
        Some(b'[') => strip_bracket(s),
        Some(c) if c.is_ascii_digit() => strip_timestamp_header(s),
        Some(b'(') => strip_process_tag(s),
        Some(c) if c.is_ascii_uppercase() => strip_level_date_header(s),
        _ => s,
    }
}

/// `(APIServer pid=2110) ` and `(EngineCore_0 pid=7) `: vLLM's process tags.
fn strip_process_tag(s: &str) -> &str {
    // a byte search: `)` is ASCII
    let Some(end) = lex::find_byte(b')', s.as_bytes()) else {
        return s;
    };
    let inner = &s[1..end];
    match inner.split_once(" pid=") {
        Some((name, pid))
            if name
                .split(' ')
                .all(|w| is_word(w) || w.starts_with("rank="))
                && !pid.is_empty()
                && pid.bytes().all(|c| c.is_ascii_digit()) =>
        {
            &s[end + 1..]
        }
        _ => s,
    }
}

/// `INFO 05-18 16:04:46 [loggers.py:123] ` and `INFO 08-20 10:23:30 metrics.py:351] `:
/// vLLM's (glog-like) header, a level, a date without the year, the source location.
fn strip_level_date_header(s: &str) -> &str {
    let Some((level, rest)) = s.split_once(' ') else {
        return s;
    };
    let b = rest.as_bytes();
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let date = d(0)
        && d(1)
        && b.get(2) == Some(&b'-')
        && d(3)
        && d(4)
        && b.get(5) == Some(&b' ')
        && d(6)
        && d(7)
        && b.get(8) == Some(&b':')
        && d(9)
        && d(10)
        && b.get(11) == Some(&b':')
        && d(12)
        && d(13);
    if !is_level(level) || !date {
        return s;
    }
    let mut n = 14;
    if b.get(n) == Some(&b'.') {
        n += 1;
        while d(n) {
            n += 1;
        }
    }
    let rest = rest[n..].trim_start();
    // `[file.py:123] ` or `file.py:123] `
    let loc = rest.strip_prefix('[').unwrap_or(rest);
    match loc.split_once("] ") {
        Some((file, after)) if is_file_line(file) => after,
        _ => rest,
    }
}

/// `[...]` tokens that are decoration: a timestamp (alone or followed by SGLang's parallel
/// ranks, `[2025-01-01 12:00:00 DP0 TP1]`), a level, `rankN`, `LEVEL:name`,
/// `file.py:12:func`, or one short word (`[titan]`, `[transformers]`).
fn strip_bracket(s: &str) -> &str {
    // a byte search: `]` is ASCII (and `[` one byte)
    let Some(end) = lex::find_byte(b']', &s.as_bytes()[1..]).map(|e| e + 1) else {
        return s;
    };
    let inner = &s[1..end];
    if inner.is_empty() || inner.len() > 64 {
        return s;
    }
    let ok = timestamp_len(inner.as_bytes()).is_some_and(|n| is_parallel_ranks(&inner[n..]))
        || is_level(inner)
        || is_rank(inner)
        || is_level_colon_name(inner)
        || is_file_line(inner)
        || is_word(inner);
    if !ok {
        return s;
    }
    let mut rest = &s[end + 1..];
    if let Some(r) = rest.strip_prefix(':') {
        rest = r;
    }
    rest
}

/// Nothing, or SGLang's process tags after the timestamp: ` TP0`, ` DP0 PP1 TP2 EP0`,
/// ` ATTN_CP0 MOE_DP1` (upper-case letters or `_`, then the rank's digits, one space before
/// each).
fn is_parallel_ranks(s: &str) -> bool {
    s.split(' ').skip(1).all(|tag| {
        let digits = tag.trim_start_matches(|c: char| c.is_ascii_uppercase() || c == '_');
        let name = &tag[..tag.len() - digits.len()];
        name.len() >= 2
            && name.as_bytes()[0].is_ascii_uppercase()
            && !digits.is_empty()
            && digits.bytes().all(|c| c.is_ascii_digit())
    }) && (s.is_empty() || s.starts_with(' '))
}

fn is_rank(s: &str) -> bool {
    // `rank`, `default` or `rank ` in any case (compared in place: the prefixes are ASCII,
    // so what follows one starts on a character boundary), then digits
    ["rank", "default", "rank "].iter().any(|p| {
        let b = s.as_bytes();
        b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p.as_bytes()) && {
            let n = &s[p.len()..];
            !n.is_empty() && n.trim().bytes().all(|c| c.is_ascii_digit())
        }
    })
}

fn is_level_colon_name(s: &str) -> bool {
    s.split_once(':')
        .is_some_and(|(l, n)| is_level(l) && is_word(n))
}

fn is_file_line(s: &str) -> bool {
    let mut parts = s.split(':');
    let (Some(file), Some(line)) = (parts.next(), parts.next()) else {
        return false;
    };
    file.ends_with(".py") && !line.is_empty() && line.bytes().all(|c| c.is_ascii_digit())
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
}

/// A leading timestamp, then an optional container stream tag or python-logging fields.
fn strip_timestamp_header(s: &str) -> &str {
    let Some(n) = timestamp_len(s.as_bytes()) else {
        return s;
    };
    let mut rest = &s[n..];
    // CRI log format: `<time> stdout F <text>`
    for stream in [" stdout ", " stderr "] {
        if let Some(r) = rest.strip_prefix(stream) {
            if let Some(r) = r.strip_prefix("F ").or_else(|| r.strip_prefix("P ")) {
                return r;
            }
            return r;
        }
    }
    // `date | LEVEL | name | msg` (loguru and many python-logging formats)
    if let Some(r) = rest.strip_prefix(" | ") {
        return skip_fields(r, " | ");
    }
    // `date - name - LEVEL - msg` (python-logging's common format, torchtitan)
    if let Some(r) = rest.strip_prefix(" - ") {
        return skip_fields(r, " - ");
    }
    if let Some(r) = rest.strip_prefix(' ') {
        rest = r;
    }
    rest
}

/// Skips up to three separator-delimited header fields, provided a log level is among them.
fn skip_fields<'a>(s: &'a str, sep: &str) -> &'a str {
    let mut cur = s;
    for _ in 0..3 {
        let Some((field, rest)) = cur.split_once(sep) else {
            return s;
        };
        if is_level(field.trim()) {
            // python logging puts the name after the level in `|` formats
            if sep == " | " {
                if let Some((name, after)) = rest.split_once(sep) {
                    if !name.contains(' ') && name.len() <= 64 {
                        return after;
                    }
                }
            }
            return rest;
        }
        cur = rest;
    }
    s
}

/// Length of a timestamp at the start of `b`: `YYYY-MM-DD[T ]HH:MM:SS[.,frac][Z|±HH:MM]`.
pub fn timestamp_len(b: &[u8]) -> Option<usize> {
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10))
    {
        return None;
    }
    if !matches!(b.get(10), Some(b'T') | Some(b' ')) {
        return None;
    }
    if !(digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return None;
    }
    let mut n = 19;
    if matches!(b.get(n), Some(b'.') | Some(b',')) && b.get(n + 1).is_some_and(u8::is_ascii_digit) {
        n += 1;
        while b.get(n).is_some_and(u8::is_ascii_digit) {
            n += 1;
        }
    }
    match b.get(n) {
        Some(b'Z') => n += 1,
        Some(b'+') | Some(b'-') if digits(n + 1..n + 3) => {
            n += 3;
            if b.get(n) == Some(&b':') {
                n += 1;
            }
            if digits(n..n + 2) {
                n += 2;
            }
        }
        _ => {}
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// `is_rank` compares in place what the first version compared after lowercasing a
        /// copy.
        #[test]
        fn is_rank_reads_as_the_lowercased_copy(
            s in "(rank|RANK|Rank|default|DEFAULT|rank |Rank |ran|x)?[ 0-9a-zé]{0,4}",
        ) {
            let l = s.to_ascii_lowercase();
            let reference = ["rank", "default", "rank "].iter().any(|p| {
                l.strip_prefix(p)
                    .is_some_and(|n| !n.is_empty() && n.trim().bytes().all(|c| c.is_ascii_digit()))
            });
            proptest::prop_assert_eq!(is_rank(&s), reference, "{:?}", s);
        }
    }

    #[test]
    fn ranks_in_any_case() {
        assert!(is_rank("Rank 0") && is_rank("rank1") && is_rank("DEFAULT3"));
        assert!(!is_rank("Rank") && !is_rank("rank x"));
    }

    #[test]
    fn csi_whose_final_byte_starts_a_utf8_character() {
        // found by fuzzing: the broken sequence must not cut the character in two
        let raw = "bar ?it/s\u{e0}]\x1b[\u{f1}A".as_bytes();
        let c = clean(raw);
        assert!(c.text.ends_with('A'), "{:?}", c.text);
        assert!(!c.cursor_up);
    }

    fn c(s: &str) -> String {
        clean(s.as_bytes()).text.into_owned()
    }

    #[test]
    fn strips_ansi_including_truecolor_and_cursor_up() {
        let line = "\x1b[A{'eval_loss': '3.823'}";
        let out = clean(line.as_bytes());
        assert_eq!(out.text, "{'eval_loss': '3.823'}");
        assert!(out.cursor_up);
        assert_eq!(
            c("\x1b[38;2;255;0;0mstep: 14\x1b[39m  loss: 3.2"),
            "step: 14  loss: 3.2"
        );
        assert!(!clean(b"\x1b[32mok\x1b[0m").cursor_up);
    }

    #[test]
    fn strips_common_prefixes() {
        assert_eq!(c("[rank0]: {'loss': 1}"), "{'loss': 1}");
        assert_eq!(
            c("[rank3]:[titan] 2026-05-18 16:04:46,338 - root - INFO - step: 14"),
            "step: 14"
        );
        assert_eq!(c("[INFO:swift] {'loss': 1}"), "{'loss': 1}");
        assert_eq!(
            c("2026-11-28T12:07:12.123456789Z stdout F {'loss': 1}"),
            "{'loss': 1}"
        );
        assert_eq!(c("2026-11-28T12:07:12+02:00 {'loss': 1}"), "{'loss': 1}");
        assert_eq!(
            c("2026-11-28 12:07:12,123 | INFO | trainer | {'loss': 1}"),
            "{'loss': 1}"
        );
        assert_eq!(
            c(" [2024-04-06 03:02:12] iteration 71/ 100 |"),
            "iteration 71/ 100 |"
        );
        assert_eq!(
            c("[2024-04-06 03:02:12,345] [INFO] [logging.py:96:log_dist] [Rank 0] step=35"),
            "step=35"
        );
        assert_eq!(
            c("(APIServer pid=2110) INFO 05-18 16:04:46 [loggers.py:123] Engine 000: x"),
            "Engine 000: x"
        );
        assert_eq!(
            c("INFO 08-20 10:23:30.123 metrics.py:351] Avg prompt throughput: 1"),
            "Avg prompt throughput: 1"
        );
        // SGLang: the timestamp, then the scheduler's parallel ranks when there are several
        assert_eq!(
            c("[2026-05-18 16:04:46 TP0] Decode batch, #running-req: 1"),
            "Decode batch, #running-req: 1"
        );
        assert_eq!(
            c("[2026-05-18 16:04:46 DP1 PP0 TP3 EP3] Prefill batch, #new-seq: 1"),
            "Prefill batch, #new-seq: 1"
        );
        assert_eq!(c("[2026-05-18 16:04:46] Prefill batch"), "Prefill batch");
        // not decoration: kept
        assert_eq!(
            c("[2026-05-18 16:04:46 tp0] x"),
            "[2026-05-18 16:04:46 tp0] x"
        );
        assert_eq!(
            c("[2026-05-18 16:04:46 TP] x"),
            "[2026-05-18 16:04:46 TP] x"
        );
        assert_eq!(
            c("[2026-05-18 16:04:46 loss 0.5] x"),
            "[2026-05-18 16:04:46 loss 0.5] x"
        );
        assert_eq!(
            c("[2026-05-18 16:04:46  TP0] x"),
            "[2026-05-18 16:04:46  TP0] x"
        );
        assert_eq!(c("INFO is fine"), "INFO is fine");
        assert_eq!(c("(VllmWorker rank=1 pid=7) x"), "x");
        assert_eq!(c("(note: pid=3) x"), "(note: pid=3) x");
        assert_eq!(c("[1, 2, 3]"), "[1, 2, 3]");
        assert_eq!(c("2026 was a year"), "2026 was a year");
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        let out = clean(b"loss \xff\xfe end");
        assert!(out.text.contains('\u{fffd}'));
    }

    #[test]
    fn binary_detection() {
        assert!(looks_binary(b"abc\0def"));
        assert!(looks_binary(&[1, 2, 3, 4, 5, 6, 7, 8, 9]));
        assert!(!looks_binary(b"{'loss': 1.0}"));
    }
}
