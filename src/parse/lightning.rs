//! PyTorch Lightning: the tqdm bar's postfix and `CSVLogger`'s `metrics.csv`.
//!
//! - The bar: `Epoch 0:  78%|...| 50/64 [00:03<00:00, 16.30it/s, v_num=0, train_loss=0.122,
//!   val_loss=0.127]`. Its counts are batches within the epoch, not optimizer steps, so it gives
//!   the epoch and the postfix values, never the step. tqdm redraws the bar many times per
//!   second: a record is made only when the postfix changes.
//! - Rich's bar (`RichProgressBar`, the default when `rich` is installed), as it reaches a
//!   file when output is redirected: one final frame, `Epoch 3/-2 ━━━━ 8/8 0:00:00 • 0:00:00
//!   150.23it/s v_num: 0.000` with the metrics Rich wrapped onto the lines below it
//!   (`train_loss: 0.048`, `val_loss: 0.094`; a `key:` may end one line and its value start
//!   the next). The frame's lines are read while each is nothing but `key: number` pairs; each
//!   gives a record with the epoch. The values are rounded as the bar shows them
//!   (`metrics_format`, `.3f` by default). With a terminal forced (`FORCE_COLOR=1`) Rich
//!   redraws the frame on every batch, each redraw after `ESC[2K ESC[1A ESC[2K`: every
//!   redraw is read so, and a line repeating the values read before it is no record.
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
use std::cell::Cell;

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

/// The first line of Rich's training bar, `Epoch 3/-2 ━━━━ 8/8 0:00:00 • 0:00:00 150.23it/s
/// v_num: 0.000`: the epoch and the text after the speed, where the metrics start.
pub fn rich_bar(text: &str) -> Option<(f64, &str)> {
    let rest = text.strip_prefix("Epoch ")?;
    let (epoch, rest) = rest.split_once(' ')?;
    let epoch: u64 = epoch.split('/').next()?.parse().ok()?;
    let (bar, rest) = rest.trim_start().split_once(' ')?;
    if bar.is_empty() || !bar.chars().all(|c| matches!(c, '━' | '╺' | '╸' | '─')) {
        return None;
    }
    let (counts, rest) = rest.trim_start().split_once(' ')?;
    let (n, total) = counts.split_once('/')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(n) || !(digits(total) || total == "--") {
        return None;
    }
    let speed = rest.find("it/s")?;
    Some((epoch as f64, &rest[speed + 4..]))
}

/// Reads `key: number` pairs, `pending` when the line starts with the value of a key the line
/// before ended with. `Some(whether a key is left waiting for its value)` when the whole
/// line is such pairs; `each` gets every pair (the key `None` for the pending one).
fn rich_pairs<'a>(
    text: &'a str,
    mut pending: bool,
    mut each: impl FnMut(Option<&'a str>, f64),
) -> Option<bool> {
    let mut key: Option<&'a str> = None;
    let mut any = false;
    for tok in text.split_whitespace() {
        any = true;
        if pending || key.is_some() {
            each(key.take(), number(tok)?);
            pending = false;
        } else {
            let k = tok.strip_suffix(':').filter(|k| !k.is_empty())?;
            key = Some(k);
        }
    }
    any.then_some(key.is_some())
}

/// Where a Rich frame is in the lines of one file.
#[derive(Debug, Default)]
struct Rich {
    /// The lines so far were a frame: the next one may go on with it. A `Cell` because
    /// `detect`, which sees the lines another format does not take, ends the frame too.
    active: Cell<bool>,
    epoch: f64,
    /// The key the last line ended with, its value on the next.
    key: Option<String>,
    /// The last value read of each key (at most [`MAX_SEEN`]): with a terminal, Rich redraws
    /// the whole frame on every batch, and a line that repeats what the frames before it
    /// showed is no new record.
    seen: Vec<(String, f64)>,
}

/// How many keys' last values [`Rich`] keeps to tell a redraw from a change.
const MAX_SEEN: usize = 64;

impl Rich {
    /// Whether the line is a frame's first line or goes on with the current frame.
    fn takes(&self, text: &str) -> bool {
        if text.starts_with("Epoch ") && rich_bar(text).is_some() {
            return true;
        }
        let goes_on =
            self.active.get() && rich_pairs(text, self.key.is_some(), |_, _| {}).is_some();
        self.active.set(goes_on);
        goes_on
    }

    /// A frame's line as a record (`Some(None)` when it repeats the values the frames before
    /// it showed); `None` (and the frame ended) when it is not a frame's line.
    fn line<'a>(&mut self, text: &'a str) -> Option<Option<Record<'a>>> {
        let (metrics, pending) = match rich_bar(text) {
            Some((epoch, metrics)) => {
                self.epoch = epoch;
                self.key = None;
                (metrics, false)
            }
            None if self.takes(text) => (text, self.key.is_some()),
            None => return None,
        };
        self.active.set(true);
        let mut rec = Record::new(Format::Lightning);
        rec.push("epoch", self.epoch);
        let waiting = self.key.take();
        let left = rich_pairs(metrics, pending, |k, v| {
            let key = match k {
                Some(k) => k,
                None => waiting.as_deref().unwrap_or_default(),
            };
            if key != "v_num" && !key.is_empty() {
                let key = match (key_of(key), k) {
                    (Cow::Borrowed(b), _) => Cow::Borrowed(b),
                    (Cow::Owned(_), Some(k)) => Cow::Borrowed(k),
                    (owned, None) => owned,
                };
                rec.values.push((key, v));
            }
        });
        // (`None` only on the bar's own line, whose metrics are read up to the first word
        // that is not a pair)
        if left == Some(true) {
            let last = metrics.split_whitespace().next_back().unwrap_or_default();
            self.key = Some(last.trim_end_matches(':').to_owned());
        }
        Some(self.changed(&rec).then_some(rec))
    }

    /// Whether the record shows a value other than the last one read for its key (a key not
    /// seen before included), remembering its values.
    fn changed(&mut self, rec: &Record<'_>) -> bool {
        let mut changed = false;
        for (k, v) in &rec.values {
            match self.seen.iter_mut().find(|(seen, _)| seen == k) {
                Some((_, last)) if last.to_bits() == v.to_bits() => {}
                Some((_, last)) => {
                    *last = *v;
                    changed = true;
                }
                None => {
                    if self.seen.len() < MAX_SEEN {
                        self.seen.push((k.to_string(), *v));
                    }
                    changed = true;
                }
            }
        }
        changed
    }

    fn reset(&mut self) {
        self.active.set(false);
        self.key = None;
        self.seen.clear();
    }
}

/// Lightning's parser state for one file: the `metrics.csv` header, the last bar postfix
/// (tqdm redraws the bar many times per second; a record is made only when it changes), and
/// where a Rich frame is.
#[derive(Debug, Default)]
pub struct Lightning {
    csv: Csv,
    last_postfix: String,
    rich: Rich,
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
    /// A `metrics.csv` header, or any line once a header was read; a Rich bar's line.
    fn detect(&self, text: &str) -> bool {
        self.csv.active() || Csv::is_header(text) || self.rich.takes(text)
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
        if let Some(rec) = self.rich.line(text) {
            return rec.map(Event::Record);
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
        self.rich.reset();
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

    fn rich_lines(lines: &[&str]) -> Vec<Option<Vec<(String, f64)>>> {
        let mut p = Lightning::default();
        lines
            .iter()
            .map(|l| {
                let c = crate::parse::clean(l.as_bytes());
                let taken = p.detect(&c.text);
                match p.parse(&c) {
                    Some(Event::Record(r)) => {
                        assert!(taken, "{l}");
                        Some(r.values.iter().map(|(k, v)| (k.to_string(), *v)).collect())
                    }
                    _ => None,
                }
            })
            .collect()
    }

    fn kv(pairs: &[(&str, f64)]) -> Option<Vec<(String, f64)>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    #[test]
    fn rich_final_frame_wrapped_over_lines() {
        let got = rich_lines(&[
            "`Trainer.fit` stopped: `max_steps=200` reached.",
            "Epoch 3/-2 ━━━━━━━━━━━━━━━━━ 8/8 0:00:00 • 0:00:00 150.23it/s v_num: 0.000      ",
            "                                                              train_loss: 0.048 ",
            "                                                              val_loss: 0.094   ",
            "metrics.csv: /data/logs/metrics.csv",
            "val_mae: 0.5",
        ]);
        assert_eq!(got[0], None);
        assert_eq!(got[1], kv(&[("epoch", 3.0)]));
        assert_eq!(got[2], kv(&[("epoch", 3.0), ("loss", 0.048)]));
        assert_eq!(got[3], kv(&[("epoch", 3.0), ("eval_loss", 0.094)]));
        assert_eq!(got[4], None);
        // the frame ended: a later pair is not the bar's
        assert_eq!(got[5], None);
    }

    /// With a terminal forced (`FORCE_COLOR=1`), Rich redraws the frame on every batch: the
    /// tailer splits the redraws at `\r`, each after `ESC[2K ESC[1A ESC[2K` (erase, cursor up).
    #[test]
    fn rich_terminal_redraws_make_a_record_only_when_a_value_changes() {
        let got = rich_lines(&[
            "\x1b[2KEpoch 0/2  \x1b[35m━━━━\x1b[0m\x1b[35m╺\x1b[0m\x1b[90m━━━━\x1b[0m 2/8 \x1b[2m0:00:00 • 0:00:01\x1b[0m \x1b[2;4m36.48it/s\x1b[0m \x1b[3mv_num: 0.000       \x1b[0m",
            "                 \x1b[3mtrain_loss: 0.163  \x1b[0m",
            "\x1b[2K\x1b[1A\x1b[2KEpoch 0/2  ━━━━━━╺━━ 3/8 0:00:00 • 0:00:01 31.69it/s v_num: 0.000",
            "                 train_loss: 0.163  ",
            "\x1b[2K\x1b[1A\x1b[2KEpoch 0/2  ━━━━━━━╸━ 4/8 0:00:00 • 0:00:01 31.93it/s v_num: 0.000",
            "                 train_loss: 0.032  ",
            "Validation ━━━━━━━━━╺━━━━━━━━ 1/2 0:00:00 • -:--:-- 0.00it/s",
            "\x1b[2K\x1b[1A\x1b[2KEpoch 1/2  ━━━━━━━━━ 0/8 0:00:00 • 0:00:00 0.00it/s v_num: 0.000",
            "                 train_loss: 0.032  ",
            "                 val_loss: 0.020    ",
        ]);
        assert_eq!(got[0], kv(&[("epoch", 0.0)]));
        assert_eq!(got[1], kv(&[("epoch", 0.0), ("loss", 0.163)]));
        // the redraw of the same values
        assert_eq!(got[2], None);
        assert_eq!(got[3], None);
        assert_eq!(got[4], None);
        assert_eq!(got[5], kv(&[("epoch", 0.0), ("loss", 0.032)]));
        assert_eq!(got[6], None);
        assert_eq!(got[7], kv(&[("epoch", 1.0)]));
        assert_eq!(got[8], None);
        assert_eq!(got[9], kv(&[("epoch", 1.0), ("eval_loss", 0.02)]));
    }

    #[test]
    fn rich_pair_split_across_lines_and_on_the_bar_line() {
        let got = rich_lines(&[
            "Epoch 12/19 ━━━━━━━━━━━╺━━━━━ 5/8 0:00:03 • 0:00:02 1.52it/s v_num: 1.000 train_loss:",
            "0.512 val_acc: 0.875 lr-Adam:",
            "0.001",
        ]);
        assert_eq!(got[0], kv(&[("epoch", 12.0)]));
        assert_eq!(
            got[1],
            kv(&[("epoch", 12.0), ("loss", 0.512), ("val_acc", 0.875)])
        );
        assert_eq!(got[2], kv(&[("epoch", 12.0), ("learning_rate", 0.001)]));
        assert_eq!(
            rich_lines(&[
                "Epoch 0/1 ━━━━ 8/-- 0:00:01 • -:--:-- 3.00it/s train_loss: 0.25 val_loss: 0.5"
            ])[0],
            kv(&[("epoch", 0.0), ("loss", 0.25), ("eval_loss", 0.5)])
        );
    }

    #[test]
    fn not_a_rich_bar() {
        for l in [
            "Epoch 3: 100%|█| 8/8 [00:00<00:00, 11.36it/s, v_num=0]",
            "Epoch 3/-2 ==== 8/8 0:00:00 • 0:00:00 150.23it/s",
            "Epoch x ━━━━ 8/8 0:00:00 • 0:00:00 150.23it/s",
            "Epoch 3 ━━━━ 8 0:00:00 150.23it/s",
            "Epoch 3 ━━━━ 8/8 0:00:00",
            "Validation ━━━━ 2/2 0:00:00 • 0:00:00 90.00it/s",
        ] {
            assert_eq!(rich_bar(l), None, "{l}");
        }
        // no frame yet: a pair alone is nobody's
        assert_eq!(rich_lines(&["train_loss: 0.048"])[0], None);
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
