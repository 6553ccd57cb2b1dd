//! The fuzz targets of `fuzz/` on the stable toolchain: each runs over its corpus, then over
//! seeded random mutations of it (byte flips, insertions of format tokens and of multibyte
//! characters and Unicode whitespace, cuts, splices)
//! for `FUZZ_SECONDS` (default 2) per target. Not coverage-guided as `cargo fuzz` is
//! (`scripts/fuzz.sh` runs that where a nightly toolchain exists), but the same bodies,
//! and a failing input is written out so that it can be added to the corpus.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "../../fuzz/src/targets.rs"]
pub(crate) mod targets;

use crate::harness::root;

/// Tokens that matter to the parsers, inserted by the mutator.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"'",
    b"\"",
    b":",
    b",",
    b"[",
    b"]",
    b"\\",
    b"\x1b[",
    b"\x1b[A",
    b"\x1b[0m",
    b"|",
    b"%|",
    b"it/s",
    b"s/it",
    b"<",
    b"nan",
    b"inf",
    b"-inf",
    b"1e308",
    b"1e-400",
    b"0x",
    b"\n",
    b"\r",
    b"\t",
    b" ",
    b"\xff",
    b"\xc3",
    b"\0",
    b"---\n",
    b": ",
    b"- ",
    b"&a",
    b"*a",
    b"!!binary",
    b"loss",
    b"step",
    b"epoch",
    b"/",
    b"0:00:01",
    b"h",
    b"m",
    b"logs:\n  - path: ",
    b"limits:\n  max_runs: ",
    b"tls_server_config:\n  cert: |\n    -----BEGIN CERTIFICATE-----\n",
    b"99999999999999999999",
    b"-1",
];

/// Characters the mutator inserts whole: Unicode whitespace (which `str::trim` removes and
/// ASCII-only code does not) and multibyte characters, so that a byte offset taken from
/// ASCII assumptions lands inside one.
const CHARS: &[char] = &[
    '\u{a0}', '\u{85}', '\u{2000}', '\u{2003}', '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}',
    '\u{3000}', '\u{feff}', '\u{200b}', 'é', '€', '“', '’', '：', '损', '🔥',
];

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                input.drain(i..i + n);
            }
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(len + 1);
                input.splice(i..i, t.iter().copied());
            }
            4 if len > 0 => {
                // duplicate a slice (nesting, repeats)
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let piece = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, piece);
            }
            5 => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(input.len() + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            6 => {
                // a multibyte char or Unicode whitespace, most often right after a token
                // (`{`, a quote, `\r`, ESC) where the parsers look for the next byte
                let c = CHARS[rng.below(CHARS.len())];
                let mut buf = [0; 4];
                let c = c.encode_utf8(&mut buf).as_bytes();
                let after: Vec<usize> = (0..len)
                    .filter(|&i| b"{'\"\r\x1b".contains(&input[i]))
                    .map(|i| i + 1)
                    .collect();
                let at = if !after.is_empty() && rng.below(4) != 0 {
                    after[rng.below(after.len())]
                } else {
                    rng.below(len + 1)
                };
                input.splice(at..at, c.iter().copied());
            }
            _ if len > 0 => {
                input.truncate(rng.below(len));
            }
            _ => {}
        }
    }
    input.truncate(16 * 1024);
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = root().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn budget() -> Duration {
    let secs: f64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn run(target: &str, body: fn(&[u8])) {
    run_as(target, target, body)
}

/// Runs `body` on the corpus of `target`; a failure is reported and saved as `name`.
fn run_as(target: &str, name: &str, body: fn(&[u8])) {
    let seeds = corpus(target);
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} is empty");
    let check = |input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
            let out = std::env::temp_dir().join(format!("fuzz-crash-{name}"));
            std::fs::write(&out, input).unwrap();
            panic!(
                "fuzz target {name} failed on {input:?} (written to {}; add it to fuzz/corpus/{target})",
                out.display()
            );
        }
    };
    for s in &seeds {
        check(s);
    }
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15u64);
    let mut rng = Rng(seed ^ target.len() as u64);
    let start = Instant::now();
    let mut execs = 0u64;
    while start.elapsed() < budget() {
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..8 {
            mutate(&mut rng, &mut input, &seeds);
            check(&input);
            execs += 1;
        }
    }
    eprintln!("fuzz {target}: {execs} inputs in {:?}", start.elapsed());
    assert!(execs > 0);
}

#[test]
fn clean() {
    run("clean", targets::clean);
}

#[test]
fn mapping() {
    run("mapping", targets::mapping);
}

#[test]
fn tqdm() {
    run("tqdm", targets::tqdm);
}

#[test]
fn line_parser() {
    run("line_parser", targets::line_parser);
}

#[test]
fn config() {
    run("config", targets::config);
}

#[test]
fn web_config() {
    run("web_config", targets::web_config);
}

/// The mutator does reach inputs that a wrong body would fail on: a target that panics
/// on any `{` nested twice is caught.
#[test]
fn the_driver_finds_a_planted_bug() {
    fn planted(data: &[u8]) {
        assert!(!data.windows(2).any(|w| w == b"{{"), "planted");
    }
    let r = catch_unwind(|| run_as("mapping", "planted", planted));
    assert!(r.is_err(), "the mutation run missed a planted bug");
}
