//! Property tests over every parser entry point: the bodies of the fuzz targets
//! (`fuzz/src/targets.rs`) on arbitrary strings built to hit the places where a byte
//! offset can fall inside a character: multibyte UTF-8 and Unicode whitespace right after
//! `{`, after `[rank0]: {`, around quotes, next to `\r` and ESC sequences. No panic, and
//! each body's own assertions hold.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

// the same bodies the fuzz targets and the stable mutation run use
use crate::fuzz::targets;

/// Whitespace that `str::trim` removes and ASCII-only code does not: every one of them is
/// more than one byte long.
const UNICODE_SPACE: &[char] = &[
    '\u{a0}', '\u{85}', '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}',
    '\u{2006}', '\u{2007}', '\u{2008}', '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{3000}',
];

/// Multibyte characters of each length, and ones that look like quotes or separators.
const MULTIBYTE: &[char] = &[
    'é', 'ß', 'λ', 'ж', '€', '…', '“', '”', '‘', '’', '：', '，', '｛', '损', '失', '🔥', '𝟘',
    '\u{feff}', '\u{200b}', '\u{fffd}',
];

/// Tokens of the log formats, written before or after the characters above.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[rank0]: {",
    "[rank0]: ",
    "'",
    "\"",
    "'loss': ",
    "\"loss\": ",
    "0.5",
    ", ",
    ": ",
    ":",
    "[",
    "]",
    "\r",
    "\n",
    "\t",
    " ",
    "\x1b[",
    "\x1b[A",
    "\x1b[2K",
    "\x1b[0m",
    "\x1b]0;",
    "\x07",
    "\x1b",
    "%|",
    "|",
    "it/s",
    "s/it",
    "<",
    "nan",
    "1e308",
    "0:00:01",
    "- ",
    "logs:\n  - path: ",
];

/// One piece of an input: mostly the biased characters and tokens, sometimes any char.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(UNICODE_SPACE).prop_map(String::from),
        2 => prop::sample::select(MULTIBYTE).prop_map(String::from),
        4 => prop::sample::select(TOKENS).prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ]
}

/// A line: a format's opening (`{`, `[rank0]: {`, a quote, ...), then Unicode whitespace or
/// a multibyte char right after it, then a run of pieces.
fn line() -> impl Strategy<Value = String> {
    let start =
        prop::sample::select(&["{", "[rank0]: {", "{'", "{\"", "'", "\"", "\r", "\x1b[", ""][..]);
    let right_after = prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(UNICODE_SPACE),
            1 => prop::sample::select(MULTIBYTE),
        ],
        0..4,
    );
    let rest = prop::collection::vec(piece(), 0..24);
    (start, right_after, rest).prop_map(|(s, after, rest)| {
        let mut out = String::from(s);
        out.extend(after);
        out.extend(rest);
        out
    })
}

/// Runs `body` on `cases` generated lines; proptest shrinks a failure to a small input.
fn check(name: &str, cases: u32, body: fn(&[u8])) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&line(), |s| {
        body(s.as_bytes());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

#[test]
fn line_parser_takes_any_string() {
    check("line_parser", 512, targets::line_parser);
}

#[test]
fn mapping_takes_any_string() {
    check("mapping", 512, targets::mapping);
}

#[test]
fn tqdm_takes_any_string() {
    check("tqdm", 512, targets::tqdm);
}

#[test]
fn clean_takes_any_string() {
    check("clean", 512, targets::clean);
}

#[test]
fn config_takes_any_string() {
    check("config", 256, targets::config);
}

#[test]
fn web_config_takes_any_string() {
    check("web_config", 256, targets::web_config);
}

/// The strategy does reach the inputs it is built for: a body that panics on Unicode
/// whitespace right after `{` is caught.
#[test]
fn the_strategy_finds_a_planted_bug() {
    fn planted(data: &[u8]) {
        let s = std::str::from_utf8(data).unwrap();
        if let Some(i) = s.find('{') {
            assert!(!s[i + 1..].starts_with(UNICODE_SPACE), "planted");
        }
    }
    let r = std::panic::catch_unwind(|| check("planted", 256, planted));
    assert!(r.is_err(), "the property run missed a planted bug");
}
