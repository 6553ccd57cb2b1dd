//! A scanner for one-line mappings: Python dict reprs (`{'loss': 0.5, 'grad_norm': nan}`,
//! `{'loss': '5.951'}`) and JSON objects (`{"loss": NaN}`), with one grammar for both.
//!
//! Trainers print these two shapes for nearly every record, and both carry tokens that strict
//! parsers reject (`nan`, `inf`, `None`, bare `NaN`/`Infinity`). Nested values (`log_history`,
//! `mom=[[...]]`, `tensor(...)`) are skipped whole, never replayed. Pure, no allocation
//! unless a string holds an escape; [`scan_each`] streams the pairs, so a huge line costs
//! no more than itself.

use std::borrow::Cow;

use super::number::number;

/// One value of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A bare number, including `nan`, `inf`, `-Infinity`.
    Num(f64),
    /// A quoted string (transformers 5.x quotes every number).
    Str(Cow<'a, str>),
    /// `None`, `null`, booleans, nested containers, calls: present, but not a metric.
    Other,
}

/// Why a line that looked like a mapping is not one.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Scans `s`, which must be a whole mapping, appending `(key, value)` pairs to `out`.
pub fn scan<'a>(s: &'a str, out: &mut Vec<(Cow<'a, str>, Value<'a>)>) -> Result<(), Malformed> {
    scan_each(s, |k, v| out.push((k, v)))
}

/// Scans `s`, which must be a whole mapping, handing each `(key, value)` pair to `pair` in
/// order as it is read: nothing is collected, whatever the number of pairs. On an error
/// the pairs before it have been handed over.
pub fn scan_each<'a>(
    s: &'a str,
    pair: impl FnMut(Cow<'a, str>, Value<'a>),
) -> Result<(), Malformed> {
    scan_each_with(s, &mut Keys::default(), pair)
}

/// The keys of the last mapping a reader scanned, by position: nearly every line of a log
/// repeats the keys of the one before, in the same order, and comparing a key's bytes with
/// the one remembered costs less than searching for its closing quote.
#[derive(Debug, Default)]
pub struct Keys {
    /// Per position: the opening quote and the key's bytes (no escape in them).
    at: Vec<(u8, Vec<u8>)>,
}

impl Keys {
    /// Positions remembered, and the longest key remembered (longer ones are scanned).
    const POSITIONS: usize = 64;
    const KEY_BYTES: usize = 64;

    /// The length of the key remembered at `idx` when `rest` (what follows the opening
    /// quote `q`) starts with it and the closing quote. That key holds neither `q` nor a
    /// backslash, so the string read ends exactly there.
    #[inline(always)]
    fn matches(&self, idx: usize, q: u8, rest: &[u8]) -> Option<usize> {
        let (quote, key) = self.at.get(idx)?;
        let n = key.len();
        (*quote == q && rest.get(n) == Some(&q) && rest[..n] == key[..]).then_some(n)
    }

    /// Remembers the unescaped key at `idx`.
    fn set(&mut self, idx: usize, q: u8, key: &[u8]) {
        if idx >= Self::POSITIONS || key.len() > Self::KEY_BYTES {
            return;
        }
        if idx >= self.at.len() {
            self.at.resize_with(idx + 1, Default::default);
        }
        let (quote, k) = &mut self.at[idx];
        *quote = q;
        k.clear();
        k.extend_from_slice(key);
    }
}

/// [`scan_each`], the keys of the mapping before (`keys`) read by comparison; `keys` then
/// holds this mapping's. The pairs are the same as [`scan_each`]'s.
pub fn scan_each_with<'a>(
    s: &'a str,
    keys: &mut Keys,
    mut pair: impl FnMut(Cow<'a, str>, Value<'a>),
) -> Result<(), Malformed> {
    let mut p = Parser {
        s,
        b: s.as_bytes(),
        i: 0,
    };
    p.ws();
    p.expect(b'{')?;
    p.ws();
    if p.eat(b'}') {
        return p.end();
    }
    let mut idx = 0;
    loop {
        p.ws();
        let key = match p.peek() {
            Some(q @ (b'\'' | b'"')) => {
                let start = p.i + 1;
                if let Some(n) = keys.matches(idx, q, &p.b[start..]) {
                    // quotes are ASCII: both ends are character boundaries
                    p.i = start + n + 1;
                    Cow::Borrowed(&p.s[start..start + n])
                } else {
                    let key = p.string()?;
                    if let Cow::Borrowed(k) = &key {
                        keys.set(idx, q, k.as_bytes());
                    }
                    key
                }
            }
            _ => return Err(Malformed("expected a quoted key")),
        };
        idx += 1;
        p.ws();
        p.expect(b':')?;
        p.ws();
        let value = p.value()?;
        pair(key, value);
        p.ws();
        match p.next() {
            Some(b',') => {
                p.ws();
                if p.eat(b'}') {
                    return p.end();
                }
            }
            Some(b'}') => return p.end(),
            _ => return Err(Malformed("expected ',' or '}'")),
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), Malformed> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(Malformed(match c {
                b'{' => "expected '{'",
                b':' => "expected ':'",
                _ => "unexpected character",
            }))
        }
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn end(&mut self) -> Result<(), Malformed> {
        self.ws();
        if self.i >= self.b.len() {
            Ok(())
        } else {
            Err(Malformed("text after the closing '}'"))
        }
    }

    #[inline(always)]
    fn string(&mut self) -> Result<Cow<'a, str>, Malformed> {
        let q = self.next().unwrap_or(b'"');
        let start = self.i;
        let mut escaped = false;
        loop {
            // to the closing quote or the next escape
            let Some(at) = self.b.get(self.i..).and_then(|rest| find2(rest, q, b'\\')) else {
                return Err(Malformed("unterminated string"));
            };
            self.i += at + 1;
            if self.b[self.i - 1] == q {
                break;
            }
            escaped = true;
            self.i += 1;
        }
        let raw = &self.s[start..self.i - 1];
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        unescape(raw).map(Cow::Owned)
    }

    #[inline(always)]
    fn value(&mut self) -> Result<Value<'a>, Malformed> {
        match self.peek() {
            None => Err(Malformed("missing value")),
            Some(b'\'') | Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'{') | Some(b'[') | Some(b'(') => {
                self.skip_nested()?;
                Ok(Value::Other)
            }
            Some(_) => {
                let start = self.i;
                // the common case, a plain decimal, read in one pass (the same value as the
                // token read whole below)
                if let Some((v, n)) = super::number::decimal_prefix(&self.b[start..]) {
                    if matches!(self.b.get(start + n), Some(b',' | b'}' | b' ' | b'\t')) {
                        self.i += n;
                        return Ok(Value::Num(v));
                    }
                }
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b'(' | b' ' | b'\t') {
                        break;
                    }
                    self.i += 1;
                }
                let tok = &self.s[start..self.i];
                if self.peek() == Some(b'(') {
                    // a call such as tensor(0.5) or datetime.datetime(...)
                    self.skip_nested()?;
                    return Ok(Value::Other);
                }
                if tok.is_empty() {
                    return Err(Malformed("missing value"));
                }
                Ok(match number(tok) {
                    Some(v) => Value::Num(v),
                    None => Value::Other,
                })
            }
        }
    }

    /// Skips a balanced `{...}`, `[...]` or `(...)`, strings included.
    fn skip_nested(&mut self) -> Result<(), Malformed> {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'\'' | b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' | b'(' => depth += 1,
                b'}' | b']' | b')' => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or(Malformed("unbalanced brackets"))?;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        Err(Malformed("unbalanced brackets"))
    }
}

/// The first `x` or `y` in `b`, eight bytes at a time (keys and values are short: a
/// vectorised search would spend more on its setup than on the search).
#[inline(always)]
fn find2(b: &[u8], x: u8, y: u8) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // the lowest zero byte of `v` is the lowest set high bit (bits above it may be wrong)
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let (rx, ry) = (ONES * u64::from(x), ONES * u64::from(y));
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let hit = zero(w ^ rx) | zero(w ^ ry);
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(|&c| c == x || c == y).map(|p| p + i)
}

/// Decodes a quoted string's escapes: JSON's (`\n`, `\uXXXX`, surrogate pairs for the
/// characters beyond the Basic Multilingual Plane) and Python's (`\xXX`, `\UXXXXXXXX`).
/// A `\u`, `\x` or `\U` without its hex digits, a lone surrogate or a code point that is no
/// character makes the string malformed: guessing would invent a key (`"\u00zz"` once became
/// the empty key).
fn unescape(raw: &str) -> Result<String, Malformed> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('x') => out.push(char_of(hex(&mut chars, 2)?)?),
            Some('U') => out.push(char_of(hex(&mut chars, 8)?)?),
            Some('u') => {
                let u = hex(&mut chars, 4)?;
                let code = match u {
                    0xD800..=0xDBFF => {
                        // a high surrogate: only with the low one that completes it
                        let rest = chars.as_str();
                        let low = rest
                            .strip_prefix("\\u")
                            .ok_or(Malformed("lone surrogate in a \\u escape"))?;
                        chars = low.chars();
                        let l = hex(&mut chars, 4)?;
                        if !(0xDC00..=0xDFFF).contains(&l) {
                            return Err(Malformed("lone surrogate in a \\u escape"));
                        }
                        0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(Malformed("lone surrogate in a \\u escape")),
                    _ => u,
                };
                out.push(char_of(code)?);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// The next `n` characters as hexadecimal digits.
fn hex(chars: &mut std::str::Chars<'_>, n: usize) -> Result<u32, Malformed> {
    let mut v = 0u32;
    for _ in 0..n {
        let d = chars
            .next()
            .and_then(|c| c.to_digit(16))
            .ok_or(Malformed("invalid hex digits in an escape"))?;
        v = v * 16 + d;
    }
    Ok(v)
}

fn char_of(code: u32) -> Result<char, Malformed> {
    char::from_u32(code).ok_or(Malformed("escape is not a Unicode character"))
}

#[cfg(test)]
mod find2_tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn finds_what_a_plain_search_finds(b in proptest::collection::vec(prop_oneof![Just(b'\''), Just(b'\\'), Just(b'a'), Just(0x80u8), Just(0u8), any::<u8>()], 0..40)) {
            let plain = b.iter().position(|&c| c == b'\'' || c == b'\\');
            prop_assert_eq!(super::find2(&b, b'\'', b'\\'), plain);
        }
    }
}

#[cfg(test)]
mod keys_tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs_of(r: Result<(), Malformed>, v: Vec<(Cow<'_, str>, Value<'_>)>) -> String {
        format!("{r:?} {v:?}")
    }

    proptest! {
        /// Lines read one after another with the keys remembered give what each read alone
        /// gives: keys that repeat, change, grow, shrink, hold quotes or escapes.
        #[test]
        fn remembered_keys_read_as_a_fresh_scan(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    ("[ab'\\\"\\\\]{0,4}", prop_oneof![Just('\''), Just('"')], "[0-9]{1,3}|'x'|\"y\""),
                    0..5,
                ),
                1..6,
            ),
            junk in "[ ,}'\"a]{0,2}",
        ) {
            let mut keys = Keys::default();
            for line in &lines {
                let mut s = String::from("{");
                for (k, q, v) in line {
                    s.push(*q);
                    s.push_str(k);
                    s.push(*q);
                    s.push_str(": ");
                    s.push_str(v);
                    s.push_str(", ");
                }
                s.push_str(&junk);
                s.push('}');
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let ra = scan_each(&s, |k, v| a.push((k, v)));
                let rb = scan_each_with(&s, &mut keys, |k, v| b.push((k, v)));
                prop_assert_eq!(pairs_of(ra, a), pairs_of(rb, b), "{}", s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, Value<'_>)> {
        let mut v = Vec::new();
        scan(s, &mut v).expect("scans");
        v.into_iter().map(|(k, v)| (k.into_owned(), v)).collect()
    }

    #[test]
    fn python_dict_raw_floats_with_nan() {
        let p = pairs("{'loss': 0.2051, 'grad_norm': nan, 'learning_rate': 9.77e-06, 'epoch': 0.53, 'x': -inf, 'y': None}");
        assert_eq!(p[0], ("loss".into(), Value::Num(0.2051)));
        assert!(matches!(p[1].1, Value::Num(v) if v.is_nan()));
        assert_eq!(p[2].1, Value::Num(9.77e-06));
        assert_eq!(p[4].1, Value::Num(f64::NEG_INFINITY));
        assert_eq!(p[5].1, Value::Other);
    }

    #[test]
    fn python_dict_quoted_values_and_nested() {
        let p = pairs("{'loss': '5.951', 'memory/max_active (GiB)': '12.5', 'mom': [[0.9, 0.95]], 't': tensor(1.0, device='cuda:0'), 'q': \"it's\"}");
        assert_eq!(p[0].1, Value::Str("5.951".into()));
        assert_eq!(p[1].0, "memory/max_active (GiB)");
        assert_eq!(p[2].1, Value::Other);
        assert_eq!(p[3].1, Value::Other);
        assert_eq!(p[4].1, Value::Str("it's".into()));
    }

    #[test]
    fn json_with_bare_nan_and_infinity() {
        let p = pairs(
            r#"{"loss": NaN, "g": Infinity, "h": -Infinity, "s": "a\"b", "log_history": [{"loss": 1.0}]}"#,
        );
        assert!(matches!(p[0].1, Value::Num(v) if v.is_nan()));
        assert_eq!(p[1].1, Value::Num(f64::INFINITY));
        assert_eq!(p[2].1, Value::Num(f64::NEG_INFINITY));
        assert_eq!(p[3].1, Value::Str("a\"b".into()));
        assert_eq!(p[4].1, Value::Other);
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn escapes_decode_or_make_the_line_malformed() {
        let key = |s: &str| {
            let mut v = Vec::new();
            scan(s, &mut v).map(|()| v[0].0.clone().into_owned())
        };
        assert_eq!(key(r#"{"caf\u00e9": 1}"#), Ok("café".into()));
        assert_eq!(key(r#"{"\u00C9": 1}"#), Ok("É".into()));
        // a surrogate pair is one character beyond the BMP
        assert_eq!(key(r#"{"a\ud83d\ude00b": 1}"#), Ok("a😀b".into()));
        // Python's escapes
        assert_eq!(key(r"{'\x41\U0001F600': 1}"), Ok("A😀".into()));
        assert_eq!(key(r#"{"a\"b\\c\/d": 1}"#), Ok(r#"a"b\c/d"#.into()));
        for bad in [
            r#"{"\u00zz": 1}"#,
            r#"{"\u00": 1}"#,
            r#"{"\u": 1}"#,
            r#"{"\u00e": 1}"#,
            r#"{"\u+0ff": 1}"#,
            // lone surrogates: high without its low, low alone, high then a non-surrogate
            r#"{"\ud83d": 1}"#,
            r#"{"\ud83dx": 1}"#,
            r#"{"\ude00": 1}"#,
            r#"{"\ud83d\u0041": 1}"#,
            r#"{"\ud83d\ud83d": 1}"#,
            r#"{"\ud83d\uzzzz": 1}"#,
            r"{'\xg1': 1}",
            r"{'\U00110000': 1}",
            r"{'\U0000D800': 1}",
            // in a value or a nested value too
            r#"{"a": "\u00zz"}"#,
            r#"{"a": [{"b": "\ud800"}]}"#,
        ] {
            assert!(key(bad).is_err(), "{bad}: {:?}", key(bad));
        }
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        for bad in [
            "{'loss': }",
            "{'loss' 1}",
            "{'loss': 1",
            "{'a': [1, 2}",
            "{'a': 'x",
            "{loss: 1}",
            "{'a': 1} trailing",
            "{'a': 1,,}",
        ] {
            let mut v = Vec::new();
            assert!(scan(bad, &mut v).is_err(), "{bad}");
        }
    }
}
