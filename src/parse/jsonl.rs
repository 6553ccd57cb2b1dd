//! JSON lines: one object per line, as ms-swift's `logging.jsonl`, LLaMA-Factory's
//! `trainer_log.jsonl` and generic trainers write them. The key vocabulary is the Hugging Face
//! family's (`global_step/max_steps`, `train_speed(iter/s)` ...), so the object is read by
//! [`super::hf`]'s mapping reader; lines that are not objects are not records.

use super::hf::Hf;
use super::{Cleaned, Event, Format, LineFormat, RecordCap};

/// The JSON-lines parser for one file.
#[derive(Debug)]
pub struct Jsonl(Hf);

impl Default for Jsonl {
    fn default() -> Self {
        Jsonl(Hf::new(Format::Jsonl))
    }
}

impl Jsonl {
    /// Caps what a record keeps of its line (see [`RecordCap`]).
    pub fn set_cap(&mut self, cap: RecordCap) {
        self.0.set_cap(cap);
    }

    /// Takes back a record's values buffer (see [`Hf::recycle`]).
    pub fn recycle(&mut self, values: Vec<(std::borrow::Cow<'_, str>, f64)>) {
        self.0.recycle(values);
    }
}

impl LineFormat for Jsonl {
    /// An object whose first key is double-quoted.
    fn detect(&self, text: &str) -> bool {
        text.starts_with('{') && super::lex::trim_start(&text[1..]).starts_with('"')
    }

    fn parse<'a>(&mut self, line: &'a Cleaned<'a>) -> Option<Event<'a>> {
        let text: &'a str = &line.text;
        if text.starts_with('{') {
            return self.0.mapping(text);
        }
        None
    }
}
