//! Pure line parsers: one cleaned line in, at most one [`Event`] out.
//!
//! [`clean`] strips decoration; each trainer format has its own file (Hugging Face dicts in
//! [`dict`], [`megatron`], [`deepspeed`], [`torchtitan`], [`vllm`], [`lightning`]);
//! [`LineParser`] picks the format per line by cheap prefix checks (or uses the one the config
//! forces). [`rules`] holds the users' regex rules. Nothing here knows about files, metrics or
//! time. [`guard`] contains a parser's panic to the line it was reading.

pub mod clean;
pub mod deepspeed;
pub mod dict;
pub mod guard;
pub mod lex;
pub mod lightning;
pub mod megatron;
pub mod rules;
pub mod torchtitan;
pub mod vllm;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

pub use clean::{clean, Cleaned};
use lex::tqdm;

/// A log format. `Auto` detects per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Auto,
    /// Hugging Face Trainer / TRL / ms-swift / axolotl console: printed dicts and tqdm bars.
    Hf,
    /// One JSON object per line: ms-swift `logging.jsonl`, LLaMA-Factory, generic.
    Jsonl,
    /// Megatron-LM `iteration N/ M | ...` and validation lines.
    Megatron,
    /// DeepSpeed engine, throughput-timer and pipeline-engine lines.
    Deepspeed,
    /// torchtitan `step: N  loss: ...` lines.
    Torchtitan,
    /// vLLM engine statistics.
    Vllm,
    /// PyTorch Lightning: tqdm bar postfix and `CSVLogger`'s `metrics.csv`.
    Lightning,
}

impl Format {
    pub const ALL: &'static [Format] = &[
        Format::Auto,
        Format::Hf,
        Format::Jsonl,
        Format::Megatron,
        Format::Deepspeed,
        Format::Torchtitan,
        Format::Vllm,
        Format::Lightning,
    ];

    /// Whether this format's tqdm bars count epochs rather than steps once it has printed
    /// a record (Lightning's epoch bar).
    pub fn bars_count_epochs(self) -> bool {
        matches!(self, Format::Lightning)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Hf => "hf",
            Format::Jsonl => "jsonl",
            Format::Megatron => "megatron",
            Format::Deepspeed => "deepspeed",
            Format::Torchtitan => "torchtitan",
            Format::Vllm => "vllm",
            Format::Lightning => "lightning",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .iter()
            .copied()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.as_str()).collect();
                format!(
                    "unknown format {s:?}, expected one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// A metric record: the values one log line reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    /// Which parser produced it, for `training_run_info`.
    pub format: Format,
    /// Values by key; the well-known keys are normalised (`loss`, `learning_rate`, ...),
    /// every other key is as printed. Non-finite values are kept.
    pub values: Vec<(Cow<'a, str>, f64)>,
    pub step: Option<f64>,
    pub max_steps: Option<f64>,
    /// The end-of-training summary (`train_runtime` ...).
    pub end_of_training: bool,
    /// Values the line held that its [`RecordCap`] left out (keys past the cap, too long).
    pub dropped: u64,
}

/// Bounds what one record keeps of its line, so that a line of millions of pairs costs its
/// own bytes rather than a list of every pair: the first `max_keys` distinct keys (besides
/// those `always` keeps) are kept, later new keys are dropped and counted in
/// [`Record::dropped`]. Below the cap a record is exactly the line's pairs in order.
#[derive(Debug, Clone, Copy)]
pub struct RecordCap {
    /// Distinct keys kept besides the `always` ones.
    pub max_keys: usize,
    /// Longer keys are dropped and counted.
    pub max_key_bytes: usize,
    /// Keys kept whatever the count (the well-known ones; a small vocabulary).
    pub always: fn(&str) -> bool,
}

impl RecordCap {
    /// No cap.
    pub const NONE: RecordCap = RecordCap {
        max_keys: usize::MAX,
        max_key_bytes: usize::MAX,
        always: |_| false,
    };
}

impl Default for RecordCap {
    fn default() -> Self {
        RecordCap::NONE
    }
}

impl<'a> Record<'a> {
    pub fn new(format: Format) -> Self {
        Record {
            format,
            values: Vec::new(),
            step: None,
            max_steps: None,
            end_of_training: false,
            dropped: 0,
        }
    }

    pub fn push(&mut self, key: &'static str, v: f64) {
        self.values.push((Cow::Borrowed(key), v));
    }

    /// The value of `key`, if the record has it.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Progress from a training-candidate tqdm bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub n: u64,
    pub total: Option<u64>,
    pub rate: Option<f64>,
}

/// What one line said.
#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    Record(Record<'a>),
    Progress(Progress),
    /// The line looked like a record but could not be parsed.
    Malformed(&'static str),
}

/// Parses the lines of one file. Holds per-file parser state: the CSV header of a
/// `metrics.csv`, the last Lightning bar postfix.
#[derive(Debug, Default)]
pub struct LineParser {
    format: Format,
    pairs_buf: usize,
    cap: RecordCap,
    csv: lightning::Csv,
    last_postfix: String,
}

impl LineParser {
    pub fn new(format: Format) -> Self {
        LineParser {
            format,
            pairs_buf: 16,
            ..LineParser::default()
        }
    }

    /// Caps what a mapping record keeps of its line (see [`RecordCap`]).
    pub fn with_cap(mut self, cap: RecordCap) -> Self {
        self.cap = cap;
        self
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The file was truncated or rewritten in place (`rewritten`), or replaced by another
    /// file: per-file state follows.
    pub fn file_changed(&mut self, replaced: bool) {
        if replaced {
            self.csv.forget();
        } else {
            self.csv.reset();
        }
        self.last_postfix.clear();
    }

    /// Which format a line is, by cheap prefix checks (no regex, no allocation).
    fn detect(&self, text: &str) -> Format {
        let b = text.as_bytes();
        match b[0] {
            b'{' => Format::Hf,
            b'i' | b'v' if megatron::detect(text) => Format::Megatron,
            b's' | b'e' | b'0'..=b'9' if deepspeed::detect(text) => Format::Deepspeed,
            b's' if torchtitan::detect(text) => Format::Torchtitan,
            b'E' | b'A' if vllm::detect(text) => Format::Vllm,
            _ if self.csv.active() || lightning::Csv::is_header(text) => Format::Lightning,
            _ => Format::Hf,
        }
    }

    /// Parses one cleaned line.
    pub fn parse<'a>(&mut self, line: &'a Cleaned<'a>) -> Option<Event<'a>> {
        let text: &'a str = &line.text;
        #[cfg(feature = "fault-injection")]
        guard::fault::parser(text);
        let first = *text.as_bytes().first()?;
        let format = match self.format {
            Format::Auto => self.detect(text),
            f => f,
        };
        let record = |r: Option<Record<'a>>| r.map(Event::Record);
        match format {
            Format::Auto | Format::Hf | Format::Jsonl => {
                if first == b'{' {
                    return self.mapping(text);
                }
                self.bar(line)
            }
            Format::Megatron => record(megatron::parse(text)),
            Format::Deepspeed => record(deepspeed::parse(text)),
            Format::Torchtitan => record(torchtitan::parse(text)),
            Format::Vllm => record(vllm::parse(text)),
            Format::Lightning => {
                if lightning::Csv::is_header(text) {
                    self.csv.header(text);
                    return None;
                }
                if self.csv.active() {
                    if let Some(e) = self.csv.row(text) {
                        return Some(e);
                    }
                }
                self.bar(line)
            }
        }
    }

    /// A tqdm bar: the training bar's progress, or Lightning's postfix metrics.
    fn bar<'a>(&mut self, line: &'a Cleaned<'a>) -> Option<Event<'a>> {
        let text: &'a str = &line.text;
        if !matches!(self.format, Format::Auto | Format::Hf | Format::Lightning) {
            return None;
        }
        let bar = tqdm::parse(text)?;
        if line.cursor_up {
            return None;
        }
        if self.format != Format::Hf {
            if let Some(epoch) = lightning::bar_epoch(&bar) {
                if self.last_postfix.len() == bar.desc.len() + bar.postfix.len()
                    && self.last_postfix.starts_with(bar.desc)
                    && self.last_postfix.ends_with(bar.postfix)
                {
                    return None;
                }
                self.last_postfix.clear();
                self.last_postfix.push_str(bar.desc);
                self.last_postfix.push_str(bar.postfix);
                return lightning::bar_record(&bar, epoch).map(Event::Record);
            }
            if self.format == Format::Lightning {
                return None;
            }
        }
        if !bar.is_training_candidate() {
            return None;
        }
        Some(Event::Progress(Progress {
            n: bar.n,
            total: bar.total,
            rate: bar.rate,
        }))
    }

    fn mapping<'a>(&mut self, text: &'a str) -> Option<Event<'a>> {
        // `text[0]` is `{`; the key's quote is the first character after any whitespace,
        // Unicode's included (`{\u{a0}'loss': ...` looks like a record and is reported as a
        // malformed one), so what follows it is sliced from `after`, never from `text` by a
        // byte count
        let after = lex::trim_start(&text[1..]);
        let quote = after.as_bytes().first().copied();
        let format = match (self.format, quote) {
            (Format::Jsonl, _) => Format::Jsonl,
            (Format::Hf, _) => Format::Hf,
            (_, Some(b'"')) => Format::Jsonl,
            (_, Some(b'\'')) => Format::Hf,
            // `{}`, `{` alone (a pretty-printed config) or `{foo}`: not a record
            _ => return None,
        };
        if !text.ends_with('}') {
            // a record cut short (a crash mid-write) or a multi-line dump
            return (matches!(quote, Some(b'"') | Some(b'\'')) && after[1..].contains(':'))
                .then_some(Event::Malformed("record does not end with '}'"));
        }
        // the pairs go into the record as they are scanned, within the cap: never a list of
        // every pair of a huge line
        match dict::scan_record(text, format, &self.cap, self.pairs_buf) {
            Err(e) => Some(Event::Malformed(e.0)),
            Ok(r) => {
                let r = r?;
                self.pairs_buf = self.pairs_buf.max(r.values.len()).min(64);
                Some(Event::Record(r))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Option<Event<'static>> {
        let cleaned: &'static Cleaned<'static> = Box::leak(Box::new(clean(Box::leak(
            line.as_bytes().to_vec().into_boxed_slice(),
        ))));
        LineParser::new(Format::Auto).parse(cleaned)
    }

    #[test]
    fn detects_dicts_json_and_bars() {
        match parse("{'loss': 0.5}") {
            Some(Event::Record(r)) => assert_eq!(r.format, Format::Hf),
            other => panic!("{other:?}"),
        }
        match parse(r#"{"loss": 0.5}"#) {
            Some(Event::Record(r)) => assert_eq!(r.format, Format::Jsonl),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(parse(" 10%|█ | 30/300 [00:04<00:38,  7.02it/s]"), Some(Event::Progress(p)) if p.n == 30)
        );
        // nested evaluation bar: carries ESC[A
        assert_eq!(
            parse(" 60%|██████    | 3/5 [00:00<00:00, 25.61it/s]\x1b[A"),
            None
        );
        assert_eq!(parse("{"), None);
        assert_eq!(parse("plain text"), None);
    }

    #[test]
    fn no_format_panics_on_odd_lines() {
        let odd = [
            "iteration ",
            "iteration /",
            "iteration 1/ | : | lm loss: |",
            "validation loss at ",
            "validation loss at iteration x",
            "step=",
            "step=[",
            "epoch=0/",
            "0/",
            "0/1, SamplesPerSec=",
            "steps: ",
            "steps: 1 loss:",
            "step: ",
            "step: 1 memory: GiB(",
            "step: 1 tps: ,,,",
            "Engine 0: Avg prompt throughput:",
            "Avg prompt throughput: %, Running: ",
            "epoch,step",
            ",,,",
            "Epoch 1: 50%|█| 1/2 [00:00<00:00, 1it/s, =, a=]",
            "Epoch : 50%|█| 1/2 [00:00<00:00, 1it/s, x=1]",
            "é",
            "\u{fffd}=\u{fffd}",
        ];
        for f in Format::ALL {
            let mut p = LineParser::new(*f);
            for l in odd {
                let c = clean(l.as_bytes());
                let _ = p.parse(&c);
                // and after a CSV header
                let h = clean(b"epoch,step");
                let _ = p.parse(&h);
                let _ = p.parse(&c);
                p.file_changed(false);
            }
        }
        let mut p = LineParser::new(Format::Lightning);
        let h = clean(b"epoch,step");
        assert_eq!(p.parse(&h), None);
        let row = clean(b"1,2,3");
        assert!(matches!(p.parse(&row), Some(Event::Malformed(_))));
    }

    /// Every non-ASCII space `char::is_whitespace` knows of: each is more than one byte.
    const UNICODE_SPACES: &[char] = &[
        '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}',
        '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}', '\u{2009}', '\u{200a}', '\u{2028}',
        '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
    ];

    #[test]
    fn unicode_space_after_the_brace_is_not_sliced_into() {
        // `{\xc2\xa0"` aborted the daemon: the quote was looked for after a Unicode trim,
        // then the text sliced two bytes in, inside the space
        for &sp in UNICODE_SPACES {
            assert!(sp.is_whitespace() && sp.len_utf8() > 1, "{sp:?}");
            let cut = [
                format!("{{{sp}\""),
                format!("{{{sp}'"),
                format!("{{{sp}{sp}\""),
            ];
            let partial = [
                format!("{{{sp}'loss': 0.5,"),
                format!("[rank0]: {{{sp}'loss': 0.5,"),
                format!("{{{sp}\"loss\": 0.5,"),
            ];
            let whole = [
                format!("{{{sp}'loss': 0.5}}"),
                format!("[rank0]: {{{sp}\"loss\": 0.5}}"),
            ];
            for f in Format::ALL {
                for l in cut.iter().chain(&partial).chain(&whole) {
                    let c = clean(l.as_bytes());
                    let _ = LineParser::new(*f).parse(&c);
                }
            }
            for l in &cut {
                assert_eq!(parse(l), None, "{l:?}");
            }
            // looks like a record cut short, or one the scanner cannot read: counted
            for l in partial.iter().chain(&whole) {
                assert!(matches!(parse(l), Some(Event::Malformed(_))), "{l:?}");
            }
        }
    }

    #[test]
    fn malformed_records_are_reported() {
        assert!(matches!(
            parse("{'loss': 0.5, 'grad"),
            Some(Event::Malformed(_))
        ));
        assert!(matches!(parse("{'loss': }"), Some(Event::Malformed(_))));
    }
}
