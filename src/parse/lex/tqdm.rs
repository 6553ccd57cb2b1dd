//! tqdm progress bars: `Train:  30%|███       | 30/100 [00:04<00:38,  7.02it/s, loss=0.3]`.
//!
//! The Hugging Face Trainer prints no step in its metric dicts; the step comes from its
//! training bar in the same stream. Pure parsing only: choosing which bar is the training
//! bar is [`crate::training`]'s job, with [`Bar::is_training_candidate`] as the hint.

/// One rendered progress bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar<'a> {
    /// Text before the percentage, without its trailing colon (`Train`, `Epoch 0`, ``).
    pub desc: &'a str,
    pub n: u64,
    /// `None` for bars of unknown length (`0/?`).
    pub total: Option<u64>,
    /// Iterations per second, from `7.02it/s` or `1.5s/it`.
    pub rate: Option<f64>,
    /// The postfix after the rate: `v_num=0, train_loss=0.122`.
    pub postfix: &'a str,
}

impl Bar<'_> {
    /// Bars that may be a trainer's main bar: no description, `Train`, `Training`, or
    /// `Epoch N`. Evaluation, shard-writing and dataset-mapping bars are not.
    pub fn is_training_candidate(&self) -> bool {
        let d = self.desc.trim();
        d.is_empty()
            || d.eq_ignore_ascii_case("train")
            || d.eq_ignore_ascii_case("training")
            || d.strip_prefix("Epoch ").is_some_and(|n| {
                !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit() || c == b'/')
            })
    }
}

/// Parses a bar anywhere in `s` (text may follow the bar: tqdm redraws share lines with
/// warnings). Returns `None` when `s` holds no bar.
pub fn parse(s: &str) -> Option<Bar<'_>> {
    // A bar has `| N/T [` (tqdm's default) — find the counts before the bracket.
    let bracket = find_counts(s)?;
    let (counts_start, open) = bracket;
    let counts = s[counts_start..open].trim();
    let (n, total) = counts.split_once('/')?;
    let n: u64 = n.trim().parse().ok()?;
    let total = match total.trim() {
        "?" => None,
        t => Some(t.parse().ok()?),
    };
    let close = s[open..].find(']').map(|c| open + c)?;
    let inside = &s[open + 1..close];
    let mut parts = inside.splitn(3, ", ");
    let _elapsed = parts.next();
    let rate = parts.next().and_then(parse_rate);
    let postfix = parts.next().unwrap_or("").trim();
    // description: before `NN%|` or before the first `|`
    let head = &s[..counts_start];
    let first_bar = head.find('|').unwrap_or(head.len());
    let mut desc = head[..first_bar].trim_end();
    if let Some(pct) = desc.rfind(|c: char| !(c.is_ascii_digit() || c == '%' || c == ' ')) {
        // the end of that character, which need not be one byte long
        let end = pct + desc[pct..].chars().next().map_or(1, char::len_utf8);
        let tail = &desc[end..];
        if tail.trim().ends_with('%') || tail.trim().is_empty() {
            desc = &desc[..end];
        }
    } else {
        desc = "";
    }
    let desc = desc.trim().trim_end_matches(':').trim();
    Some(Bar {
        desc,
        n,
        total,
        rate,
        postfix,
    })
}

/// Finds `| N/T [` and returns (start of N, index of `[`).
fn find_counts(s: &str) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(p) = s[from..].find("| ").map(|p| p + from) {
        let start = p + 2;
        let mut i = start;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'/' || b[j] == b'?' || b[j] == b' ')
        {
            if b[j] == b' ' && b.get(j + 1) == Some(&b'[') {
                break;
            }
            j += 1;
        }
        if j > i && b.get(j) == Some(&b' ') && b.get(j + 1) == Some(&b'[') && s[i..j].contains('/')
        {
            return Some((i, j + 1));
        }
        from = start;
    }
    None
}

fn parse_rate(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("it/s") {
        return v.trim().parse().ok().filter(|v: &f64| v.is_finite());
    }
    if let Some(v) = s.strip_suffix("s/it") {
        let v: f64 = v.trim().parse().ok()?;
        return (v > 0.0).then(|| 1.0 / v);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_ending_in_a_multibyte_character() {
        // found by fuzzing: `60\u{96}%|` cut inside the character before the percentage
        let b =
            parse(" 60\u{fffd}%|\u{2588}\u{2588}    | 180/300 [01:26<02:26,  1.22s/it]").unwrap();
        assert_eq!((b.n, b.total), (180, Some(300)));
    }

    #[test]
    fn hf_bar() {
        let b = parse(" 10%|█         | 30/300 [00:04<00:38,  7.02it/s]").unwrap();
        assert_eq!(
            (b.desc, b.n, b.total, b.rate),
            ("", 30, Some(300), Some(7.02))
        );
        assert!(b.is_training_candidate());
    }

    #[test]
    fn swift_and_lightning_bars() {
        let b = parse("Train:  25%|██▌       | 25/100 [00:00<00:01, 52.16it/s]").unwrap();
        assert_eq!((b.desc, b.n, b.total), ("Train", 25, Some(100)));
        let b = parse("Epoch 0:  78%|███████▊  | 50/64 [00:03<00:00, 16.30it/s, v_num=0, train_loss=0.122, val_loss=0.127]").unwrap();
        assert_eq!((b.desc, b.n, b.total), ("Epoch 0", 50, Some(64)));
        assert_eq!(b.postfix, "v_num=0, train_loss=0.122, val_loss=0.127");
        assert!(b.is_training_candidate());
    }

    #[test]
    fn other_bars_are_not_training_bars() {
        let b =
            parse("Writing model shards: 100%|██████████| 1/1 [00:00<00:00, 597.91it/s]").unwrap();
        assert!(!b.is_training_candidate());
        let b = parse("Val:  92%|█████████▎| 37/40 [00:00<00:00, 233.60it/s]").unwrap();
        assert!(!b.is_training_candidate());
        let b = parse("Map (num_proc=1):   0%|          | 0/400 [00:00<?, ? examples/s]").unwrap();
        assert_eq!(b.rate, None);
        assert!(!b.is_training_candidate());
    }

    #[test]
    fn slow_bars_and_unknown_totals() {
        let b = parse(" 1%|          | 3/300 [00:10<10:00,  2.50s/it]").unwrap();
        assert_eq!(b.rate, Some(0.4));
        let b = parse("Training: |          | 0/? [00:00<?, ?it/s]").unwrap();
        assert_eq!((b.total, b.rate), (None, None));
    }

    #[test]
    fn text_after_bar_and_non_bars() {
        let b =
            parse("  0%|          | 0/300 [00:00<?, ?it/s][transformers] `loss_type=None` was set")
                .unwrap();
        assert_eq!((b.n, b.total), (0, Some(300)));
        assert!(parse("{'loss': 1}").is_none());
        assert!(parse("a | b | c").is_none());
    }
}
