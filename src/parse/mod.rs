//! Pure line parsers: one cleaned line in, at most one [`Event`] out.
//!
//! [`clean`] strips decoration; [`lex`] holds the lexers formats share (the dict/JSON
//! scanner, the tqdm bar, numbers). Each trainer format is one file implementing
//! [`LineFormat`] and keeping its own per-file state: [`hf`], [`jsonl`], [`megatron`],
//! [`deepspeed`], [`torchtitan`], [`vllm`], [`sglang`], [`nanogpt`], [`lightning`]; the
//! [`formats!`] table registers them (one line each) and [`LineParser`] dispatches a line to
//! the configured format, or detects it per line. [`rules`] holds the users' regex rules. Nothing here knows about
//! files, metrics or time. [`guard`] contains a parser's panic to the line it was reading.

/// A format that keeps no state between lines: a unit struct whose [`LineFormat`] is its
/// file's `detect(text)`, `parse(text) -> Option<Record>` and `FIRST_BYTES` (declared
/// before the format modules that use it).
macro_rules! stateless_format {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $name;

        impl $crate::parse::LineFormat for $name {
            fn detect(&self, text: &str) -> bool {
                detect(text)
            }

            fn first_bytes(&self) -> Option<&'static [u8]> {
                Some(FIRST_BYTES)
            }

            fn parse<'a>(
                &mut self,
                line: &'a $crate::parse::Cleaned<'a>,
            ) -> Option<$crate::parse::Event<'a>> {
                parse(&line.text).map($crate::parse::Event::Record)
            }
        }
    };
}

pub mod clean;
pub mod deepspeed;
pub mod events;
pub mod guard;
pub mod hf;
pub mod jsonl;
pub mod lex;
pub mod lightning;
pub mod megatron;
pub mod nanogpt;
pub mod rules;
pub mod sglang;
pub mod torchtitan;
pub mod vllm;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

pub use clean::{clean, Cleaned};
use lex::tqdm;

/// One trainer format: which lines are its own, how one is read, and the state it keeps for
/// the file it reads (Lightning's CSV header, say). A format knows nothing of files or time.
pub trait LineFormat {
    /// Whether a cleaned, non-empty line is this format's, by a cheap check of its start (no
    /// search through the line where it can be helped): `Auto` asks each format in turn.
    fn detect(&self, text: &str) -> bool;

    /// The bytes a line this format detects can start with, when there are few (`None`:
    /// any line may be its). `Auto` asks `detect` only of the formats a line's first byte
    /// allows.
    fn first_bytes(&self) -> Option<&'static [u8]> {
        None
    }

    /// Reads one of its lines.
    fn parse<'a>(&mut self, line: &'a Cleaned<'a>) -> Option<Event<'a>>;

    /// The file was rewritten in place or truncated (`replaced == false`), or another file
    /// now sits at its path: per-file state follows.
    fn file_changed(&mut self, _replaced: bool) {}
}

/// The format registry: one line per format (its variant, its name in the config, its
/// parser, and whether `Auto` tries its `detect`, in this order). Generates [`Format`] and
/// the per-file set of parsers.
macro_rules! formats {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, $parser:ty, detected: $detected:literal; )*) => {
        /// A log format. `Auto` detects per line.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub enum Format {
            #[default]
            Auto,
            $( $(#[$doc])* $variant, )*
        }

        impl Format {
            pub const ALL: &'static [Format] = &[Format::Auto, $( Format::$variant ),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    Format::Auto => "auto",
                    $( Format::$variant => $name, )*
                }
            }
        }

        /// Every format's parser with its state for one file.
        #[derive(Debug, Default)]
        #[allow(non_snake_case)]
        struct Parsers {
            $( $variant: $parser, )*
        }

        impl Parsers {
            /// The formats `Auto` tries, and whether it does.
            const TRIED: &'static [(Format, bool)] = &[$( (Format::$variant, $detected) ),*];

            fn get(&mut self, format: Format) -> Option<&mut dyn LineFormat> {
                match format {
                    Format::Auto => None,
                    $( Format::$variant => Some(&mut self.$variant), )*
                }
            }

            fn file_changed(&mut self, replaced: bool) {
                $( self.$variant.file_changed(replaced); )*
            }
        }
    };
}

formats! {
    /// Hugging Face Trainer / TRL / ms-swift / axolotl console: printed dicts and tqdm bars.
    /// `Auto` reads a line starting with `{` and every undetected line this way.
    Hf => "hf", hf::Hf, detected: false;
    /// One JSON object per line: ms-swift `logging.jsonl`, LLaMA-Factory, generic. `Auto`
    /// tells it from a printed dict by the first key's quote.
    Jsonl => "jsonl", jsonl::Jsonl, detected: false;
    /// Megatron-LM `iteration N/ M | ...` and validation lines.
    Megatron => "megatron", megatron::Megatron, detected: true;
    /// DeepSpeed engine, throughput-timer and pipeline-engine lines.
    Deepspeed => "deepspeed", deepspeed::Deepspeed, detected: true;
    /// torchtitan `step: N  loss: ...` lines.
    Torchtitan => "torchtitan", torchtitan::Torchtitan, detected: true;
    /// vLLM engine statistics.
    Vllm => "vllm", vllm::Vllm, detected: true;
    /// SGLang scheduler `Prefill batch` / `Decode batch` statistics.
    Sglang => "sglang", sglang::Sglang, detected: true;
    /// nanoGPT-style `iter N: loss …, time …ms, mfu …%` and `step N: train loss …, val loss …`.
    Nanogpt => "nanogpt", nanogpt::Nanogpt, detected: true;
    /// PyTorch Lightning: tqdm bar postfix, the Rich bar's final frame and `CSVLogger`'s
    /// `metrics.csv`.
    Lightning => "lightning", lightning::Lightning, detected: true;
}

impl Format {
    /// Whether this format's tqdm bars count epochs rather than steps once it has printed
    /// a record (Lightning's epoch bar).
    pub fn bars_count_epochs(self) -> bool {
        matches!(self, Format::Lightning)
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

/// Parses the lines of one file in its configured format, or in the one each line shows
/// (`Auto`). Holds every format's per-file state.
#[derive(Debug)]
pub struct LineParser {
    format: Format,
    parsers: Parsers,
    /// By a line's first byte: the formats `Auto` asks, as bits over [`Parsers::TRIED`].
    tried: [u16; 256],
}

impl LineParser {
    pub fn new(format: Format) -> Self {
        let mut parsers = Parsers::default();
        if format == Format::Auto {
            // printed dicts and JSON lines told apart by the quote
            parsers.Hf = hf::Hf::new(Format::Auto);
        }
        let mut tried = [0u16; 256];
        for (bit, &(f, detected)) in Parsers::TRIED.iter().enumerate() {
            let Some(parser) = parsers.get(f).filter(|_| detected) else {
                continue;
            };
            match parser.first_bytes() {
                Some(first) => first
                    .iter()
                    .for_each(|&c| tried[usize::from(c)] |= 1 << bit),
                None => tried.iter_mut().for_each(|t| *t |= 1 << bit),
            }
        }
        LineParser {
            format,
            parsers,
            tried,
        }
    }

    /// Caps what a mapping record keeps of its line (see [`RecordCap`]).
    pub fn with_cap(mut self, cap: RecordCap) -> Self {
        self.parsers.Hf.set_cap(cap);
        self.parsers.Jsonl.set_cap(cap);
        self
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The file was truncated or rewritten in place (`replaced == false`), or replaced by
    /// another file: per-file state follows.
    pub fn file_changed(&mut self, replaced: bool) {
        self.parsers.file_changed(replaced);
    }

    /// Takes back a record's values once read, for the next record's buffer.
    pub fn recycle(&mut self, values: Vec<(Cow<'_, str>, f64)>) {
        match self.format {
            Format::Jsonl => self.parsers.Jsonl.recycle(values),
            _ => self.parsers.Hf.recycle(values),
        }
    }

    /// Parses one cleaned line.
    pub fn parse<'a>(&mut self, line: &'a Cleaned<'a>) -> Option<Event<'a>> {
        let text: &'a str = &line.text;
        #[cfg(feature = "fault-injection")]
        guard::fault::parser(text);
        let first = *text.as_bytes().first()?;
        if let Some(parser) = self.parsers.get(self.format) {
            return parser.parse(line);
        }
        if first == b'{' {
            return self.parsers.Hf.mapping(text);
        }
        // the formats this first byte allows, in the registry's order
        let mut tried = self.tried[usize::from(first)];
        while tried != 0 {
            let (format, _) = Parsers::TRIED[tried.trailing_zeros() as usize];
            tried &= tried - 1;
            let parser = self.parsers.get(format)?;
            if parser.detect(text) {
                return parser.parse(line);
            }
        }
        self.bar(line)
    }

    /// A tqdm bar in a log of no known format yet: Lightning's epoch bar carries metrics,
    /// any other may be the Hugging Face training bar.
    fn bar<'a>(&mut self, line: &'a Cleaned<'a>) -> Option<Event<'a>> {
        let bar = tqdm::parse(&line.text)?;
        if line.cursor_up {
            return None;
        }
        if let Some(event) = self.parsers.Lightning.bar(&bar) {
            return event;
        }
        hf::progress(&bar)
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
            "Prefill batch",
            "Decode batch [",
            "Decode batch [1",
            "Decode batch, : ,: , #token: ",
            "iter 1: ",
            "iter 1: loss",
            "step 1: , , val loss ,",
            "iter 99999999999999999999999: loss 1",
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

    /// Whether a format `Auto` asks by first byte would be skipped on a line it detects.
    fn skipped_though_detected(text: &str) -> Option<Format> {
        let mut parsers = Parsers::default();
        let first = *text.as_bytes().first()?;
        Parsers::TRIED.iter().find_map(|&(f, tried)| {
            let p = parsers.get(f)?;
            let allowed = p.first_bytes().is_none_or(|b| b.contains(&first));
            (tried && p.detect(text) && !allowed).then_some(f)
        })
    }

    proptest::proptest! {
        /// `Auto` asks a format's `detect` only of lines starting with one of its first
        /// bytes: no line a format detects starts otherwise.
        #[test]
        fn formats_detect_only_lines_of_their_first_bytes(
            head in proptest::prop_oneof![
                proptest::strategy::Just(""),
                proptest::strategy::Just("iteration "),
                proptest::strategy::Just("validation loss at "),
                proptest::strategy::Just("step="),
                proptest::strategy::Just("epoch="),
                proptest::strategy::Just("steps: "),
                proptest::strategy::Just("12/34, SamplesPerSec="),
                proptest::strategy::Just("step: "),
                proptest::strategy::Just("Avg prompt throughput:"),
                proptest::strategy::Just("Engine 0: Avg prompt throughput:"),
                proptest::strategy::Just("Prefill batch"),
                proptest::strategy::Just("Decode batch [3],"),
                proptest::strategy::Just("iter 3: "),
                proptest::strategy::Just("step 3: "),
            ],
            before in "[0-9a-zA-Z:,. /=\\[\\]]{0,2}",
            tail in "[ -~█é]{0,24}",
        ) {
            for text in [format!("{head}{tail}"), format!("{before}{head}{tail}")] {
                proptest::prop_assert_eq!(skipped_though_detected(&text), None, "{:?}", text);
            }
        }
    }

    #[test]
    fn a_line_of_each_format_is_detected_by_its_first_byte() {
        for line in [
            "iteration 1/ 10 | lm loss: 1.0 |",
            "validation loss at iteration 2 | lm loss value: 1.0 |",
            "step=3, skipped=0, lr=[1e-4, 1e-4]",
            "epoch=0/micro_step=4/global_step=4, RunningAvgSamplesPerSec=7.86",
            "0/25, SamplesPerSec=12.3",
            "steps: 100 loss: 0.3120 iter time (s): 0.522 samples/sec: 245.1",
            "step:  1  loss:  2.0",
            "Avg prompt throughput: 1.0 tokens/s, Running: 1 reqs",
            "Engine 000: Avg prompt throughput: 1.0 tokens/s",
            "Prefill batch. #new-seq: 1",
            "Decode batch [1], #running-req: 1",
            "iter 10: loss 2.0, time 10.00ms, mfu 1.00%",
            "step 10: train loss 2.0, val loss 2.1",
        ] {
            assert_eq!(skipped_though_detected(line), None, "{line}");
            assert!(
                Parsers::TRIED.iter().any(|&(f, tried)| tried
                    && Parsers::default().get(f).is_some_and(|p| p.detect(line))),
                "{line} is detected"
            );
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
