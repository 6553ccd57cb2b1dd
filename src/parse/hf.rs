//! The Hugging Face family: the Trainer's console (transformers 4.x raw floats and 5.x quoted
//! strings) and what prints the same way (TRL, axolotl, ms-swift's console): one printed dict
//! per record, the step from the training tqdm bar in the same stream.
//!
//! The dict's key vocabulary is normalised here onto the names [`crate::training`] knows:
//! `loss`, `eval_loss`, `learning_rate`, `grad_norm`, `epoch`, `*_per_second`, with the step and
//! max steps pulled out. JSON lines ([`super::jsonl`]: ms-swift's `logging.jsonl`,
//! LLaMA-Factory's `trainer_log.jsonl`) share that vocabulary and this reader; the mapping
//! grammar itself is [`super::lex::mapping`]'s.

use std::borrow::Cow;
use std::collections::HashMap;

use super::lex::mapping::{self, Malformed, Value};
use super::lex::number::{float, number, number_or_duration};
use super::lex::tqdm::{self, Bar};
use super::lex::trim;
use super::{Cleaned, Event, Format, LineFormat, Progress, Record, RecordCap};

/// The Hugging Face console parser for one file: the cap on a record's keys, and the size
/// of the last record (the next one's first allocation).
#[derive(Debug)]
pub struct Hf {
    /// `Hf` or `Jsonl` when the config names the format, `Auto` to tell them by the quote.
    format: Format,
    cap: RecordCap,
    pairs_buf: usize,
    /// The keys of the last mapping, for the next one's scan.
    keys: mapping::Keys,
    /// A record's values buffer handed back once read ([`Hf::recycle`]), for the next one.
    spare: Vec<(Cow<'static, str>, f64)>,
}

impl Default for Hf {
    fn default() -> Self {
        Hf::new(Format::Hf)
    }
}

impl Hf {
    /// A reader of mappings labelled `format` (`Auto`: by the first key's quote).
    pub fn new(format: Format) -> Self {
        Hf {
            format,
            cap: RecordCap::NONE,
            pairs_buf: 16,
            keys: mapping::Keys::default(),
            spare: Vec::new(),
        }
    }

    /// Takes back a record's values buffer, so that the next record reuses its allocation.
    pub fn recycle(&mut self, values: Vec<(Cow<'_, str>, f64)>) {
        if values.capacity() > self.spare.capacity() {
            self.spare = recycle(values);
        }
    }

    /// Caps what a record keeps of its line (see [`RecordCap`]).
    pub fn set_cap(&mut self, cap: RecordCap) {
        self.cap = cap;
    }

    /// A line that starts with `{`: a record, a record cut short, or no record at all.
    pub fn mapping<'a>(&mut self, text: &'a str) -> Option<Event<'a>> {
        // `text[0]` is `{`; the key's quote is the first character after any whitespace,
        // Unicode's included (`{\u{a0}'loss': ...` looks like a record and is reported as a
        // malformed one), so what follows it is sliced from `after`, never from `text` by a
        // byte count
        let after = super::lex::trim_start(&text[1..]);
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
        let spare = recycle(std::mem::take(&mut self.spare));
        match scan_record_with(
            text,
            format,
            &self.cap,
            spare,
            self.pairs_buf,
            &mut self.keys,
        ) {
            Err(e) => Some(Event::Malformed(e.0)),
            Ok(r) => {
                let r = r?;
                self.pairs_buf = self.pairs_buf.max(r.values.len()).min(64);
                Some(Event::Record(r))
            }
        }
    }
}

/// A bar's progress when it may be the trainer's main bar (the state picks which one is).
pub fn progress<'a>(bar: &Bar<'_>) -> Option<Event<'a>> {
    bar.is_training_candidate()
        .then_some(Event::Progress(Progress {
            n: bar.n,
            total: bar.total,
            rate: bar.rate,
        }))
}

impl LineFormat for Hf {
    /// A printed dict, or a tqdm bar.
    fn detect(&self, text: &str) -> bool {
        text.starts_with('{') || tqdm::parse(text).is_some()
    }

    fn parse<'a>(&mut self, line: &'a Cleaned<'a>) -> Option<Event<'a>> {
        let text: &'a str = &line.text;
        if text.starts_with('{') {
            return self.mapping(text);
        }
        let bar = tqdm::parse(text)?;
        if line.cursor_up {
            // a nested bar (evaluation inside training) is drawn below the main one
            return None;
        }
        progress(&bar)
    }
}

/// Builds a record from a scanned mapping. `None` when the mapping holds no number at all
/// (a config dump such as `{'device_map': 'cpu'}` is not a record).
pub fn record<'a>(pairs: Vec<(Cow<'a, str>, Value<'a>)>, format: Format) -> Option<Record<'a>> {
    let mut b = Builder::new(format, RecordCap::NONE, Vec::new(), pairs.len());
    for (key, value) in pairs {
        b.pair(key, value);
    }
    b.finish()
}

/// Scans the mapping `text` into a record, pair by pair, keeping what `cap` allows:
/// memory stays within the cap's keys whatever the line holds. `hint` is the values
/// expected (their first allocation).
pub fn scan_record<'a>(
    text: &'a str,
    format: Format,
    cap: &RecordCap,
    hint: usize,
) -> Result<Option<Record<'a>>, Malformed> {
    let keys = &mut mapping::Keys::default();
    scan_record_with(text, format, cap, Vec::new(), hint, keys)
}

/// An emptied values buffer, of any lifetime, as one of another: the allocation is reused
/// (collecting a vector's own emptied iterator into elements of the same layout).
fn recycle<'b>(mut values: Vec<(Cow<'_, str>, f64)>) -> Vec<(Cow<'b, str>, f64)> {
    values.clear();
    values
        .into_iter()
        .map(|_| (Cow::Borrowed(""), 0.0))
        .collect()
}

/// [`scan_record`] into the buffer `values`, with the keys of the mapping before
/// remembered (see [`mapping::Keys`]).
fn scan_record_with<'a>(
    text: &'a str,
    format: Format,
    cap: &RecordCap,
    values: Vec<(Cow<'a, str>, f64)>,
    hint: usize,
    keys: &mut mapping::Keys,
) -> Result<Option<Record<'a>>, Malformed> {
    let mut b = Builder::new(format, *cap, values, hint);
    mapping::scan_each_with(text, keys, |key, value| b.pair(key, value))?;
    Ok(b.finish())
}

/// A record being built from a mapping's pairs, within a [`RecordCap`].
struct Builder<'a> {
    rec: Record<'a>,
    cap: RecordCap,
    /// Values held of keys the cap does not always keep.
    others: usize,
    /// Once the record holds `cap.max_keys` values: the index of each key in it, the
    /// record's duplicates merged (the last value wins), so that it grows by new keys only.
    index: Option<HashMap<Cow<'a, str>, usize>>,
}

impl<'a> Builder<'a> {
    fn new(format: Format, cap: RecordCap, values: Vec<(Cow<'a, str>, f64)>, hint: usize) -> Self {
        let mut rec = Record::new(format);
        rec.values = values;
        rec.values.reserve(hint.min(cap.max_keys).min(64));
        Builder {
            rec,
            cap,
            others: 0,
            index: None,
        }
    }

    fn pair(&mut self, key: Cow<'a, str>, value: Value<'a>) {
        let num = match &value {
            Value::Num(v) => Some(*v),
            Value::Str(s) => {
                if key == "global_step/max_steps" {
                    // `s.split_once('/')` by a byte search (`/` is ASCII: never inside a
                    // character)
                    if let Some(at) = super::lex::find_byte(b'/', s.as_bytes()) {
                        let (a, b) = (&s[..at], &s[at + 1..]);
                        self.rec.step = float(trim(a));
                        self.rec.max_steps = float(trim(b));
                    }
                    return;
                }
                if key.ends_with("time") {
                    number_or_duration(s)
                } else {
                    number(trim(s))
                }
            }
            Value::Other => None,
        };
        let Some(v) = num else { return };
        match key.as_ref() {
            "step" | "global_step" | "current_steps" | "iteration" => self.rec.step = Some(v),
            "max_steps" | "total_steps" => self.rec.max_steps = Some(v),
            "lr" => self.value(Cow::Borrowed("learning_rate"), v),
            "train_speed(s/it)" => {
                if v > 0.0 {
                    self.value(Cow::Borrowed("steps_per_second"), 1.0 / v)
                }
            }
            "train_speed(iter/s)" => self.value(Cow::Borrowed("steps_per_second"), v),
            "train_runtime" => {
                self.rec.end_of_training = true;
                self.value(key, v);
            }
            _ => self.value(key, v),
        }
    }

    /// Adds one value within the cap.
    fn value(&mut self, key: Cow<'a, str>, v: f64) {
        if key.len() > self.cap.max_key_bytes {
            self.rec.dropped += 1;
            return;
        }
        if self.index.is_none() && self.rec.values.len() < self.cap.max_keys {
            // below the cap every key is kept; `others` is counted when the index is built
            self.rec.values.push((key, v));
            return;
        }
        let index = self.index.get_or_insert_with(|| {
            // merge the duplicates so far: each key once, where it first came, its last value
            let values = std::mem::take(&mut self.rec.values);
            let mut index: HashMap<Cow<'a, str>, usize> = HashMap::with_capacity(values.len() * 2);
            self.others = 0;
            for (k, v) in values {
                match index.get(k.as_ref()) {
                    Some(&i) => self.rec.values[i].1 = v,
                    None => {
                        self.others += usize::from(!(self.cap.always)(&k));
                        index.insert(k.clone(), self.rec.values.len());
                        self.rec.values.push((k, v));
                    }
                }
            }
            index
        });
        if let Some(&i) = index.get(key.as_ref()) {
            self.rec.values[i].1 = v;
        } else if (self.cap.always)(&key) || self.others < self.cap.max_keys {
            self.others += usize::from(!(self.cap.always)(&key));
            index.insert(key.clone(), self.rec.values.len());
            self.rec.values.push((key, v));
        } else {
            self.rec.dropped += 1;
        }
    }

    fn finish(self) -> Option<Record<'a>> {
        let rec = self.rec;
        if rec.values.is_empty() && rec.step.is_none() && rec.dropped == 0 {
            return None;
        }
        Some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::super::lex::number::duration_seconds;
    use super::*;

    fn rec(line: &str) -> Option<Record<'_>> {
        let mut pairs = Vec::new();
        mapping::scan(line, &mut pairs).unwrap();
        record(pairs, Format::Hf)
    }

    #[test]
    fn swift_dict() {
        let r = rec("{'loss': '5.655', 'learning_rate': '0.0009938', 'global_step/max_steps': '5/100', 'elapsed_time': '3h 54m 2s', 'remaining_time': '41.23s', 'train_speed(s/it)': '0.25'}").unwrap();
        assert_eq!((r.step, r.max_steps), (Some(5.0), Some(100.0)));
        assert_eq!(r.get("loss"), Some(5.655));
        assert_eq!(
            r.get("elapsed_time"),
            Some(3.0 * 3600.0 + 54.0 * 60.0 + 2.0)
        );
        assert_eq!(r.get("remaining_time"), Some(41.23));
        assert_eq!(r.get("steps_per_second"), Some(4.0));
        assert_eq!(r.get("train_speed(s/it)"), None);
    }

    #[test]
    fn llama_factory_line() {
        let r = rec(r#"{"current_steps": 10, "total_steps": 100, "loss": 1.2, "lr": 1e-5, "epoch": 0.1, "elapsed_time": "0:00:10", "remaining_time": "1 day, 0:01:30"}"#).unwrap();
        assert_eq!((r.step, r.max_steps), (Some(10.0), Some(100.0)));
        assert_eq!(r.get("learning_rate"), Some(1e-5));
        assert_eq!(r.get("elapsed_time"), Some(10.0));
        assert_eq!(r.get("remaining_time"), Some(86400.0 + 90.0));
    }

    #[test]
    fn summary_marks_end_and_config_dicts_are_not_records() {
        let r = rec("{'train_runtime': '96.35', 'train_loss': '2.568', 'epoch': '1.546'}").unwrap();
        assert!(r.end_of_training);
        assert!(rec("{'device_map': 'cpu', 'dtype': None}").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_seconds("0s"), Some(0.0));
        assert_eq!(duration_seconds("1d 2h"), Some(93600.0));
        assert_eq!(duration_seconds("soon"), None);
        assert_eq!(duration_seconds("12"), None);
    }
}
