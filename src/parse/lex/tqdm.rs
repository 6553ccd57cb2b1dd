//! tqdm progress bars: `Train:  30%|███       | 30/100 [00:04<00:38,  7.02it/s, loss=0.3]`.
//!
//! The Hugging Face Trainer prints no step in its metric dicts; the step comes from its
//! training bar in the same stream. Pure parsing only: choosing which bar is the training
//! bar is [`crate::training`]'s job, with [`Bar::is_training_candidate`] as the hint.

use super::number::{digits, float};

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
        let d = super::trim(self.desc);
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
///
/// tqdm redraws its bar several times per physical line, so this runs more often than any
/// other parser: it works on bytes (`memchr` for the separators, digits by hand) and falls
/// back to Unicode's whitespace rules only where a non-ASCII byte is at an edge. Its result is
/// the straightforward `str` version's, kept in the tests as the reference.
pub fn parse(s: &str) -> Option<Bar<'_>> {
    // every bar has a `|`
    let first = super::find_byte(b'|', s.as_bytes())?;
    plain(s, first).or_else(|| general(s))
}

/// The shape nearly every redraw has, ` 12%|█▊        | 24/200 [...]`, read in one pass:
/// nothing but a percentage before the first `|` (so no description), plain digits for the
/// counts. `first` is the first `|`. The bar [`general`] reads, or `None` when the line is
/// not of that shape (for [`general`] to decide): every test below keeps to a case where
/// [`general`] makes the same choice.
#[inline]
fn plain(s: &str, first: usize) -> Option<Bar<'_>> {
    let b = s.as_bytes();
    if !b[..first]
        .iter()
        .all(|&c| c.is_ascii_digit() || c == b'%' || c == b' ')
    {
        return None;
    }
    // the first `|` opens no counts when what follows it (past spaces) cannot start them:
    // the next `|` is the one
    let mut i = first + 1;
    if b.get(i) == Some(&b' ') {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if b.get(i).is_some_and(|&c| COUNT_BYTE[usize::from(c)]) {
            return None;
        }
    }
    let bar = first + 1 + super::find_byte(b'|', &b[first + 1..])?;
    if b.get(bar + 1) != Some(&b' ') {
        return None;
    }
    let mut i = bar + 2;
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    // `N/T [`
    let (n, slash) = digits::<18>(b, i)?;
    if b.get(slash) != Some(&b'/') {
        return None;
    }
    let (total, end) = digits::<18>(b, slash + 1)?;
    if b.get(end) != Some(&b' ') || b.get(end + 1) != Some(&b'[') {
        return None;
    }
    let open = end + 1;
    let close = open + super::find_byte(b']', &b[open..])?;
    let (rate, postfix) = rate_and_postfix(&s[open + 1..close]);
    Some(Bar {
        desc: "",
        n,
        total: Some(total),
        rate,
        postfix,
    })
}

/// The rate and the postfix from what the bar's brackets hold: `elapsed, rate, postfix...`.
#[inline]
fn rate_and_postfix(inside: &str) -> (Option<f64>, &str) {
    // `elapsed, rate` alone (no postfix), the rate a plain decimal and its unit: read in one
    // pass. The first `,` followed by a space is the first `", "`, and a rate of that shape
    // holds no other, so this is what the general reading below gives.
    let b = inside.as_bytes();
    if let Some(comma) = super::find_byte(b',', b) {
        if b.get(comma + 1) == Some(&b' ') {
            if let Some(rate) = plain_rate(&b[comma + 2..]) {
                return (rate, "");
            }
        }
    }
    match split_comma(inside) {
        None => (None, ""),
        Some((_elapsed, rest)) => match split_comma(rest) {
            None => (parse_rate(rest), ""),
            Some((rate, postfix)) => (parse_rate(rate), super::trim(postfix)),
        },
    }
}

/// Any bar: the counts wherever the first `| N/T [` is, the description before them.
fn general(s: &str) -> Option<Bar<'_>> {
    let b = s.as_bytes();
    // a bar has `| N/T [` (tqdm's default): find the counts before the bracket
    let (counts_start, open) = find_counts(b)?;
    // the counts are ASCII digits, `/`, `?` and spaces
    let counts = &b[counts_start..open];
    let slash = super::find_byte(b'/', counts)?;
    let n = int(&counts[..slash])?;
    let total = match trim_spaces(&counts[slash + 1..]) {
        b"?" => None,
        t => Some(int(t)?),
    };
    let close = open + super::find_byte(b']', &b[open..])?;
    let (rate, postfix) = rate_and_postfix(&s[open + 1..close]);
    // description: before `NN%|` or before the first `|`
    let head = &b[..counts_start];
    let first_bar = super::find_byte(b'|', head).unwrap_or(head.len());
    let mut desc = super::trim_end(&s[..first_bar]);
    let d = desc.as_bytes();
    // the last byte that is not a digit, `%` or space ends a character (every byte after it
    // is ASCII), which need not be one byte long
    match d
        .iter()
        .rposition(|&c| !(c.is_ascii_digit() || c == b'%' || c == b' '))
    {
        Some(last) => {
            let tail = trim_spaces(&d[last + 1..]);
            if tail.ends_with(b"%") || tail.is_empty() {
                desc = &desc[..last + 1];
            }
        }
        None => desc = "",
    }
    let desc = super::trim(super::trim(desc).trim_end_matches(':'));
    Some(Bar {
        desc,
        n,
        total,
        rate,
        postfix,
    })
}

/// The bytes of a bar's counts (`N/T`, `N/?`, spaces): a table, so that the scan of the
/// counts costs one load and one test per byte.
const COUNT_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = true;
        c += 1;
    }
    t[b'/' as usize] = true;
    t[b'?' as usize] = true;
    t[b' ' as usize] = true;
    t
};

/// Finds `| N/T [` and returns (start of N, index of `[`).
#[inline]
fn find_counts(b: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(p) = super::find_byte(b'|', &b[from..]).map(|p| p + from) {
        if b.get(p + 1) != Some(&b' ') {
            from = p + 1;
            continue;
        }
        let start = p + 2;
        let mut i = start;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let mut j = i;
        let mut slash = false;
        while j < b.len() && COUNT_BYTE[usize::from(b[j])] {
            if b[j] == b' ' && b.get(j + 1) == Some(&b'[') {
                break;
            }
            slash |= b[j] == b'/';
            j += 1;
        }
        if j > i && slash && b.get(j) == Some(&b' ') && b.get(j + 1) == Some(&b'[') {
            return Some((i, j + 1));
        }
        from = start;
    }
    None
}

/// Splits at the first `", "`.
#[inline]
fn split_comma(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = super::find_byte(b',', &b[from..]).map(|i| i + from) {
        if b.get(i + 1) == Some(&b' ') {
            return Some((&s[..i], &s[i + 2..]));
        }
        from = i + 1;
    }
    None
}

/// ASCII spaces off both ends (the counts hold no other whitespace).
#[inline]
fn trim_spaces(mut b: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' '] = b {
        b = rest;
    }
    b
}

/// A count: decimal digits within spaces, as `u64::from_str` reads them after a trim.
#[inline]
fn int(b: &[u8]) -> Option<u64> {
    let b = trim_spaces(b);
    if b.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// ` 1.24s/it` or `7.02it/s`: spaces, a plain decimal, the unit and nothing else. The rate
/// [`parse_rate`] reads (`Some(None)` when it reads none), or `None` for another shape.
#[inline]
fn plain_rate(b: &[u8]) -> Option<Option<f64>> {
    let mut i = 0;
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let (v, n) = super::number::decimal_prefix(&b[i..])?;
    match &b[i + n..] {
        b"it/s" => Some(Some(v)),
        b"s/it" => Some((v > 0.0).then(|| 1.0 / v)),
        _ => None,
    }
}

#[inline]
fn parse_rate(s: &str) -> Option<f64> {
    let s = super::trim(s);
    // `7.02it/s`, `1.01s/it`: a plain decimal right before the unit, read in one pass (the
    // value `float` gives it); anything else the general way below
    if let Some((v, n)) = super::number::decimal_prefix(s.as_bytes()) {
        match &s.as_bytes()[n..] {
            b"it/s" => return Some(v),
            b"s/it" => return (v > 0.0).then(|| 1.0 / v),
            _ => {}
        }
    }
    if let Some(v) = s.strip_suffix("it/s") {
        return float(super::trim(v)).filter(|v: &f64| v.is_finite());
    }
    if let Some(v) = s.strip_suffix("s/it") {
        let v: f64 = float(super::trim(v))?;
        return (v > 0.0).then(|| 1.0 / v);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain `str` parser that [`parse`] must agree with.
    mod reference {
        use super::super::{parse_rate, Bar};

        /// Parses a bar anywhere in `s` (text may follow the bar: tqdm redraws share lines with
        /// warnings). Returns `None` when `s` holds no bar.
        pub(super) fn parse(s: &str) -> Option<Bar<'_>> {
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
                while j < b.len()
                    && (b[j].is_ascii_digit() || b[j] == b'/' || b[j] == b'?' || b[j] == b' ')
                {
                    if b[j] == b' ' && b.get(j + 1) == Some(&b'[') {
                        break;
                    }
                    j += 1;
                }
                if j > i
                    && b.get(j) == Some(&b' ')
                    && b.get(j + 1) == Some(&b'[')
                    && s[i..j].contains('/')
                {
                    return Some((i, j + 1));
                }
                from = start;
            }
            None
        }
    }

    /// The rate as read before its one-pass case: [`parse_rate`] must agree with it.
    fn reference_rate(s: &str) -> Option<f64> {
        let s = s.trim();
        if let Some(v) = s.strip_suffix("it/s") {
            return s_float(v.trim()).filter(|v: &f64| v.is_finite());
        }
        if let Some(v) = s.strip_suffix("s/it") {
            let v: f64 = s_float(v.trim())?;
            return (v > 0.0).then(|| 1.0 / v);
        }
        None
    }

    fn s_float(s: &str) -> Option<f64> {
        crate::parse::lex::number::float(s)
    }

    proptest! {
        #[test]
        fn rates_read_as_before(s in "[ ]?[-+]?[0-9]{0,4}[.]?[0-9]{0,4}(e-?[0-9])?[ ]?(it/s|s/it|it|/s)?[ ]?") {
            prop_assert_eq!(parse_rate(&s).map(f64::to_bits), reference_rate(&s).map(f64::to_bits), "{:?}", s);
        }

        #[test]
        fn a_plain_rate_reads_as_parse_rate(s in "[ ]{0,3}[-+]?[0-9]{0,4}[.]?[0-9]{0,4}(it/s|s/it|it|/s)?[ ]?") {
            if let Some(rate) = plain_rate(s.as_bytes()) {
                prop_assert_eq!(rate.map(f64::to_bits), parse_rate(&s).map(f64::to_bits), "{:?}", s);
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference_on_bar_like_text(
            s in "[ 0-9/?|\\[\\],:%a-zA-Z.<>=█▊\u{a0}\u{3000}\u{fffd}\t]{0,48}"
        ) {
            prop_assert_eq!(parse(&s), reference::parse(&s));
        }

        #[test]
        fn agrees_with_the_reference_on_bars(
            desc in "(|Train|Epoch [0-9]|Map \\(x\\)|[a-z\u{3000}]{0,4}):? {0,2}",
            pct in "[0-9 ]{0,4}%?",
            fill in "[█▊ ]{0,5}",
            n in "[0-9 ]{1,4}",
            total in "[0-9?]{1,4}",
            inside in "[0-9:<?,. a-z/=\u{a0}]{0,30}",
            after in "[a-z ]{0,5}",
        ) {
            let s = format!("{desc}{pct}|{fill}| {n}/{total} [{inside}]{after}");
            prop_assert_eq!(parse(&s), reference::parse(&s));
        }
    }

    #[test]
    fn description_ending_in_a_multibyte_character() {
        // found by fuzzing: `60\u{96}%|` cut inside the character before the percentage
        let b =
            parse(" 60\u{fffd}%|\u{2588}\u{2588}    | 180/300 [01:26<02:26,  1.22s/it]").unwrap();
        assert_eq!((b.n, b.total), (180, Some(300)));
    }

    #[test]
    fn plain_rates_are_read_in_one_pass() {
        assert_eq!(plain_rate(b"  1.25s/it"), Some(Some(0.8)));
        assert_eq!(plain_rate(b" 7.02it/s"), Some(Some(7.02)));
        assert_eq!(plain_rate(b" 0s/it"), Some(None));
        assert_eq!(plain_rate(b" 7.02it/s, loss=1"), None);
        assert_eq!(plain_rate(b" ?it/s"), None);
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
