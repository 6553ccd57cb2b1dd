//! PyTorch Lightning: the tqdm bar's postfix and `CSVLogger`'s `metrics.csv`.
//!
//! - The bar: `Epoch 0:  78%|...| 50/64 [00:03<00:00, 16.30it/s, v_num=0, train_loss=0.122,
//!   val_loss=0.127]`. Its counts are batches within the epoch, not optimizer steps, so it gives
//!   the epoch and the postfix values, never the step. tqdm redraws the bar many times per
//!   second: a record is made only when the postfix changes.
//! - `metrics.csv`: a header row (the column names, sorted), then one row per `log` call with
//!   empty cells for the columns that row does not have; train and val rows interleave; CRLF.
//!   When a new column appears Lightning rewrites the whole file with the wider header. The
//!   tailer reports that as a truncation or rewrite; [`Csv::reset`] then makes the parser skip
//!   the rows it already counted once the new header shows the old columns are all still there.
//!
//! Key mapping: `train_loss` (and `loss`, `train_loss_step`) → `loss`, `val_loss` →
//! `eval_loss`, `lr*` (`lr`, `lr-AdamW`) → `learning_rate`, `step` → the step, `epoch`; every
//! other column as printed.

use std::borrow::Cow;

use super::lex::number::number;
use super::lex::tqdm::{self, Bar};
use super::{Cleaned, Event, Format, LineFormat, Record};

fn key_of(k: &str) -> Cow<'static, str> {
    Cow::Borrowed(match k {
        "train_loss" | "loss" | "train_loss_step" => "loss",
        "val_loss" => "eval_loss",
        "epoch" => "epoch",
        k if k == "lr" || k.starts_with("lr-") || k.starts_with("lr_") => "learning_rate",
        k => return Cow::Owned(k.to_owned()),
    })
}

/// The bar's epoch when it is Lightning's training bar with a postfix (`Epoch 3`).
pub fn bar_epoch(bar: &Bar<'_>) -> Option<f64> {
    let n = bar.desc.strip_prefix("Epoch ")?;
    if !bar.postfix.contains('=') {
        return None;
    }
    n.split('/').next()?.trim().parse().ok()
}

/// A record from the bar's postfix.
pub fn bar_record<'a>(bar: &Bar<'a>, epoch: f64) -> Option<Record<'a>> {
    let mut rec = Record::new(Format::Lightning);
    rec.push("epoch", epoch);
    for item in bar.postfix.split(", ") {
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if k == "v_num" {
            continue;
        }
        if let Some(v) = number(v.trim()) {
            let key = match key_of(k) {
                Cow::Borrowed(b) => Cow::Borrowed(b),
                Cow::Owned(_) => Cow::Borrowed(k),
            };
            rec.values.push((key, v));
        }
    }
    Some(rec)
}

/// Lightning's parser state for one file: the `metrics.csv` header, and the last bar postfix
/// (tqdm redraws the bar many times per second; a record is made only when it changes).
#[derive(Debug, Default)]
pub struct Lightning {
    csv: Csv,
    last_postfix: String,
}

impl Lightning {
    /// A tqdm bar: `Some` when it is Lightning's epoch bar with a postfix (its record, or
    /// `None` when the postfix is unchanged), `None` when it is some other bar.
    pub fn bar<'a>(&mut self, bar: &Bar<'a>) -> Option<Option<Event<'a>>> {
        let epoch = bar_epoch(bar)?;
        if self.last_postfix.len() == bar.desc.len() + bar.postfix.len()
            && self.last_postfix.starts_with(bar.desc)
            && self.last_postfix.ends_with(bar.postfix)
        {
            return Some(None);
        }
        self.last_postfix.clear();
        self.last_postfix.push_str(bar.desc);
        self.last_postfix.push_str(bar.postfix);
        Some(bar_record(bar, epoch).map(Event::Record))
    }
}

impl LineFormat for Lightning {
    /// A `metrics.csv` header, or any line once a header was read.
    fn detect(&self, text: &str) -> bool {
        self.csv.active() || Csv::is_header(text)
    }

    fn parse<'a>(&mut self, line: &'a Cleaned<'a>) -> Option<Event<'a>> {
        let text: &'a str = &line.text;
        if Csv::is_header(text) {
            self.csv.header(text);
            return None;
        }
        if self.csv.active() {
            if let Some(e) = self.csv.row(text) {
                return Some(e);
            }
        }
        let bar = tqdm::parse(text)?;
        if line.cursor_up {
            return None;
        }
        self.bar(&bar).flatten()
    }

    fn file_changed(&mut self, replaced: bool) {
        if replaced {
            self.csv.forget();
        } else {
            self.csv.reset();
        }
        self.last_postfix.clear();
    }
}

/// Parser state for `metrics.csv`.
#[derive(Debug, Default)]
struct Csv {
    header: Vec<String>,
    /// Data rows read from the current file (those skipped after a rewrite included).
    rows: u64,
    /// Rows still to skip: they were counted before the file was rewritten.
    skip: u64,
    /// The file was truncated or rewritten: the next header decides whether rows repeat.
    pending_rewrite: bool,
}

impl Csv {
    /// Whether a header has been read.
    pub fn active(&self) -> bool {
        !self.header.is_empty()
    }

    /// A header row: column names only, among them `step` or `epoch`.
    pub fn is_header(text: &str) -> bool {
        // every column name starts with a letter: most lines fail on their first byte
        if !text.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            || text.contains(' ')
            || !text.contains(',')
        {
            return false;
        }
        let mut known = false;
        for f in text.split(',') {
            let b = f.as_bytes();
            if b.is_empty() || !b[0].is_ascii_alphabetic() {
                return false;
            }
            known |= f == "step" || f == "epoch";
        }
        known
    }

    /// A header row; returns true when it was taken.
    pub fn header(&mut self, text: &str) {
        let new: Vec<String> = text.split(',').map(str::to_owned).collect();
        if self.pending_rewrite && self.header.iter().all(|c| new.contains(c)) {
            self.skip = self.rows;
        } else {
            self.skip = 0;
        }
        self.rows = 0;
        self.pending_rewrite = false;
        self.header = new;
    }

    /// A data row, when a header is known.
    pub fn row<'a>(&mut self, text: &'a str) -> Option<Event<'a>> {
        let b = text.as_bytes().first()?;
        if !(b.is_ascii_digit() || matches!(b, b',' | b'-' | b'.' | b'n' | b'i')) {
            return None;
        }
        let n = text.split(',').count();
        if n != self.header.len() {
            return Some(Event::Malformed("CSV row does not match the header"));
        }
        self.rows += 1;
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        let mut rec = Record::new(Format::Lightning);
        for (col, cell) in self.header.iter().zip(text.split(',')) {
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            let Some(v) = number(cell) else {
                return Some(Event::Malformed("CSV cell is not a number"));
            };
            if col == "step" {
                rec.step = Some(v);
            } else {
                rec.values.push((key_of(col), v));
            }
        }
        Some(Event::Record(rec))
    }

    /// The file was truncated or rewritten in place.
    pub fn reset(&mut self) {
        self.pending_rewrite = true;
    }

    /// A different file now sits at the path.
    pub fn forget(&mut self) {
        *self = Csv::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_postfix() {
        let bar = tqdm::parse("Epoch 0:  78%|███████▊  | 50/64 [00:03<00:00, 16.30it/s, v_num=0, train_loss=0.122, val_loss=0.127]").unwrap();
        let e = bar_epoch(&bar).unwrap();
        let r = bar_record(&bar, e).unwrap();
        assert_eq!(r.get("epoch"), Some(0.0));
        assert_eq!(r.get("loss"), Some(0.122));
        assert_eq!(r.get("eval_loss"), Some(0.127));
        assert_eq!(r.get("v_num"), None);
        assert_eq!(r.step, None);
        let plain = tqdm::parse(" 10%|█ | 30/300 [00:04<00:38,  7.02it/s]").unwrap();
        assert_eq!(bar_epoch(&plain), None);
    }

    #[test]
    fn csv_rows_and_rewrite() {
        let mut c = Csv::default();
        assert!(Csv::is_header("epoch,lr,step,train_loss"));
        assert!(!Csv::is_header("a,b"));
        assert!(!Csv::is_header("epoch, lr"));
        c.header("epoch,lr,step,train_loss");
        let Some(Event::Record(r)) = c.row("0,0.003,9,0.25") else {
            panic!()
        };
        assert_eq!(r.step, Some(9.0));
        assert_eq!(r.get("learning_rate"), Some(0.003));
        assert_eq!(r.get("loss"), Some(0.25));
        assert!(matches!(c.row("0,0.003"), Some(Event::Malformed(_))));
        assert!(c.row("0,,19,0.2").is_some());
        // rewritten with a new column: the two rows come again and are skipped
        c.reset();
        c.header("epoch,lr,step,train_loss,val_loss");
        assert!(c.row("0,0.003,9,0.25,").is_none());
        assert!(c.row("0,,19,0.2,").is_none());
        let Some(Event::Record(r)) = c.row("0,,19,,0.3") else {
            panic!()
        };
        assert_eq!(r.get("eval_loss"), Some(0.3));
        // truncated and restarted with other columns: a new file, nothing skipped
        c.reset();
        c.header("epoch,step,acc");
        assert!(c.row("0,1,0.5").is_some());
    }
}
