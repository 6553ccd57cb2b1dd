//! Numbers as trainers print them: Python/JSON floats with `nan`/`inf`, percentages, and
//! durations (`3h 54m 2s`, `0:01:30`). Shared by every format.

/// Parses a numeric token as Python or JSON print it: `1e-05`, `nan`, `-inf`, `NaN`,
/// `Infinity`. `None`, `True` and friends are not numbers.
pub fn number(tok: &str) -> Option<f64> {
    let first = *tok.as_bytes().first()?;
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.' | b'n' | b'N' | b'i' | b'I'))
    {
        return None;
    }
    float(tok)
}

/// `s.parse::<f64>()`, with the plain decimals trainers print most (`0.5`, `1.05`, `-3.2`,
/// `1234`) read directly: up to 15 digits are exact in an `f64`, and one division by an exact
/// power of ten rounds correctly, so the result is the standard parser's bit for bit.
/// Everything else (exponents, `nan`, long mantissas) goes to the standard parser.
pub fn float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    match decimal_prefix(b) {
        Some((v, n)) if n == b.len() => Some(v),
        // after a digit, only an exponent (or a second dot, refused) can still make a
        // number (`nan` and `inf` start with a letter): `41s` and `1h 2m` are not
        Some((_, n)) if !matches!(b[n], b'e' | b'E' | b'+' | b'-' | b'.') => None,
        _ => s.parse().ok(),
    }
}

/// A plain decimal at the start of `b` (`-12.5`, `0.0001`, `3.`): its value and length, when
/// it has 1 to 15 digits (exact in an `f64`, so one division by a power of ten rounds as the
/// standard parser does). What follows it is the caller's business.
#[inline(always)]
pub fn decimal_prefix(b: &[u8]) -> Option<(f64, usize)> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let neg = b.first() == Some(&b'-');
    let mut i = usize::from(neg);
    // integer digits, then a dot and fraction digits, into one mantissa (wrapping: beyond
    // 15 digits the answer is None anyway)
    let mut mantissa = 0u64;
    let start = i;
    // eight digits at a time while there are (the same value, modulo 2^64, as one by one)
    while let Some(v) = eight_digits(b, i) {
        mantissa = mantissa.wrapping_mul(100_000_000).wrapping_add(v);
        i += 8;
    }
    while i < b.len() && b[i].is_ascii_digit() {
        mantissa = mantissa
            .wrapping_mul(10)
            .wrapping_add(u64::from(b[i] - b'0'));
        i += 1;
    }
    let mut digits = i - start;
    let mut frac = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while let Some(v) = eight_digits(b, i) {
            mantissa = mantissa.wrapping_mul(100_000_000).wrapping_add(v);
            i += 8;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            mantissa = mantissa
                .wrapping_mul(10)
                .wrapping_add(u64::from(b[i] - b'0'));
            i += 1;
        }
        frac = i - start;
        digits += frac;
    }
    if digits == 0 || digits > 15 {
        return None;
    }
    let v = mantissa as f64 / POW10[frac];
    Some((if neg { -v } else { v }, i))
}

/// The value of the eight ASCII digits at `b[i..i + 8]`, when there are eight bytes there
/// and all are digits: one load and three multiplications instead of eight steps (the
/// trick of simdjson's `parse_eight_digits_unrolled`).
#[inline(always)]
fn eight_digits(b: &[u8], i: usize) -> Option<u64> {
    let chunk = b.get(i..i + 8)?;
    let w = u64::from_le_bytes(chunk.try_into().ok()?);
    // every byte is 0x30..=0x39: its high nibble is 3, and adding 6 keeps it so
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    if w & HIGH != ZEROS || w.wrapping_add(0x0606_0606_0606_0606) & HIGH != ZEROS {
        return None;
    }
    // the first digit is the lowest byte: pairs, then fours, then the eight
    let v = w - ZEROS;
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF)
}

/// A printed percentage as a ratio, correctly rounded (`64.99` → 0.6499, not
/// 0.6498999999999999 as `64.99 / 100.0` gives).
pub fn percent(s: &str) -> Option<f64> {
    let v = number(s)?;
    if !v.is_finite() {
        return Some(v / 100.0);
    }
    let mut buf = [0u8; 64];
    let n = s.len();
    if n + 3 > buf.len() || s.contains(['e', 'E']) {
        return Some(v / 100.0);
    }
    buf[..n].copy_from_slice(s.as_bytes());
    buf[n..n + 3].copy_from_slice(b"e-2");
    std::str::from_utf8(&buf[..n + 3]).ok()?.parse().ok()
}

/// Parses printed durations into seconds: `3h 54m 2s`, `41.23s`, `1d 2h`, `0:01:30`,
/// `1 day, 2:03:04`.
pub fn duration_seconds(s: &str) -> Option<f64> {
    plain_units(s.as_bytes()).or_else(|| general_duration(s))
}

/// [`duration_seconds`] of any shape but the plain one ([`plain_units`]).
fn general_duration(s: &str) -> Option<f64> {
    let s = super::trim(s);
    if s.is_empty() {
        return None;
    }
    // a byte search: `:` is ASCII, so it is `s.contains(':')`
    if super::find_byte(b':', s.as_bytes()).is_some() {
        let (days, clock) = match s.split_once(", ") {
            Some((d, c)) => (d.split_whitespace().next()?.parse::<f64>().ok()?, c),
            None => (0.0, s),
        };
        let mut total = 0.0;
        for part in clock.split(':') {
            total = total * 60.0 + float(super::trim(part))?;
        }
        return Some(days * 86400.0 + total);
    }
    // `3h 54m 2s`: numbers each followed by its unit, spaces anywhere
    let mut total = 0.0;
    let mut num: Option<usize> = None;
    // the number so far when it is digits alone (nearly always): its value, read as it goes
    let mut int: u64 = 0;
    let mut plain = true;
    let mut seen = false;
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'0'..=b'9' => {
                if num.is_none() {
                    num = Some(i);
                    int = 0;
                    plain = true;
                }
                int = int.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            }
            b'.' => {
                num.get_or_insert(i);
                plain = false;
            }
            b'd' | b'h' | b'm' | b's' => {
                // the number's digits and dots, any spaces among them left out; up to 15
                // digits alone are exact in an `f64`, as `float` reads them
                let start = num.take()?;
                let v = if plain && i - start <= 15 {
                    int as f64
                } else {
                    number_between(s, start, i)?
                };
                total += v * match c {
                    b'd' => 86400.0,
                    b'h' => 3600.0,
                    b'm' => 60.0,
                    _ => 1.0,
                };
                seen = true;
            }
            b' ' => plain &= num.is_none(),
            _ => return None,
        }
    }
    (seen && num.is_none()).then_some(total)
}

/// A string value that may be a number or a duration: `number(trim(s))`, else
/// `duration_seconds(s)`. A duration in its plain shape (`1h 2m 3s`, `41s`) is never a
/// number (its first digits run into a unit letter), so it is read as one first.
pub fn number_or_duration(s: &str) -> Option<f64> {
    if let Some(v) = plain_units(s.as_bytes()) {
        return Some(v);
    }
    number(super::trim(s)).or_else(|| general_duration(s))
}

/// `3h 54m 2s` in the shape trainers print it, read in one pass: groups of 1 to 15 digits,
/// each followed by its unit, one space between groups, nothing else. The same sum, added
/// in the same order, as [`duration_seconds`]' general reading; `None` for any other shape
/// (left to that reading).
#[inline]
fn plain_units(b: &[u8]) -> Option<f64> {
    let mut total = 0.0;
    let mut i = 0;
    loop {
        let (int, end) = digits::<15>(b, i)?;
        i = end;
        let unit = match b.get(i)? {
            b'd' => 86400.0,
            b'h' => 3600.0,
            b'm' => 60.0,
            b's' => 1.0,
            _ => return None,
        };
        total += int as f64 * unit;
        i += 1;
        match b.get(i) {
            None => return Some(total),
            Some(b' ') => i += 1,
            Some(_) => return None,
        }
    }
}

/// The 1 to `MAX` digits at `b[i..]` (at most 18: no overflow), and where they end; `None`
/// for none or more.
#[inline(always)]
pub(super) fn digits<const MAX: usize>(b: &[u8], mut i: usize) -> Option<(u64, usize)> {
    let start = i;
    let mut v: u64 = 0;
    while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        v = v * 10 + u64::from(c - b'0');
        i += 1;
        if i - start > MAX {
            return None;
        }
    }
    (i > start).then_some((v, i))
}

/// The number written by the digits and dots of `s[start..end]`, spaces skipped (`1 2h` is
/// twelve hours, as a printed duration once read).
fn number_between(s: &str, start: usize, end: usize) -> Option<f64> {
    let part = &s[start..end];
    if !part.contains(' ') {
        return float(part);
    }
    let joined: String = part.chars().filter(|&c| c != ' ').collect();
    float(&joined)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// The first version, with a `String` per number: the reference.
    mod reference {
        pub fn duration_seconds(s: &str) -> Option<f64> {
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            if s.contains(':') {
                let (days, clock) = match s.split_once(", ") {
                    Some((d, c)) => (d.split_whitespace().next()?.parse::<f64>().ok()?, c),
                    None => (0.0, s),
                };
                let mut total = 0.0;
                for part in clock.split(':') {
                    total = total * 60.0 + part.trim().parse::<f64>().ok()?;
                }
                return Some(days * 86400.0 + total);
            }
            let mut total = 0.0;
            let mut num = String::new();
            let mut seen = false;
            for c in s.chars() {
                match c {
                    '0'..='9' | '.' => num.push(c),
                    'd' | 'h' | 'm' | 's' => {
                        let v: f64 = num.parse().ok()?;
                        num.clear();
                        total += v * match c {
                            'd' => 86400.0,
                            'h' => 3600.0,
                            'm' => 60.0,
                            _ => 1.0,
                        };
                        seen = true;
                    }
                    ' ' => {}
                    _ => return None,
                }
            }
            (seen && num.is_empty()).then_some(total)
        }
    }

    /// `decimal_prefix` as first written, a digit at a time: the reference.
    fn decimal_prefix_by_digit(b: &[u8]) -> Option<(f64, usize)> {
        let neg = b.first() == Some(&b'-');
        let mut i = usize::from(neg);
        let mut mantissa = 0u64;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            mantissa = mantissa
                .wrapping_mul(10)
                .wrapping_add(u64::from(b[i] - b'0'));
            i += 1;
        }
        let mut digits = i - start;
        let mut frac = 0;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                mantissa = mantissa
                    .wrapping_mul(10)
                    .wrapping_add(u64::from(b[i] - b'0'));
                i += 1;
            }
            frac = i - start;
            digits += frac;
        }
        if digits == 0 || digits > 15 {
            return None;
        }
        let v = mantissa as f64 / 10f64.powi(frac as i32);
        Some((if neg { -v } else { v }, i))
    }

    #[test]
    fn eight_digits_reads_eight_digits_only() {
        assert_eq!(super::eight_digits(b"12345678", 0), Some(12_345_678));
        assert_eq!(super::eight_digits(b"x00000009", 1), Some(9));
        assert_eq!(super::eight_digits(b"99999999", 0), Some(99_999_999));
        assert_eq!(super::eight_digits(b"1234567", 0), None);
        for bad in [
            b"1234567/",
            b"1234567:",
            b"/1234567",
            b"1234 678",
            b"12345\xb078",
        ] {
            assert_eq!(super::eight_digits(bad, 0), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn decimal_prefix_is_the_digit_by_digit_reading(
            s in "-?[0-9]{0,20}(\\.[0-9]{0,20})?[,} eE/:0-9a.]{0,3}",
            junk in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let mut b = s.into_bytes();
            b.extend(junk);
            let ours = super::decimal_prefix(&b).map(|(v, n)| (v.to_bits(), n));
            let reference = decimal_prefix_by_digit(&b).map(|(v, n)| (v.to_bits(), n));
            prop_assert_eq!(ours, reference, "{:?}", b);
        }

        #[test]
        fn a_number_or_a_duration_reads_as_the_number_then_the_duration(
            s in "[0-9 .:,dhmsaye+-]{0,14}|(nan|inf|[0-9]{1,3}[dhms]|[0-9]{1,3}[.][0-9])( [0-9]{1,3}[dhms]){0,3}",
        ) {
            prop_assert_eq!(
                super::number_or_duration(&s).map(f64::to_bits),
                super::number(super::super::trim(&s))
                    .or_else(|| super::duration_seconds(&s))
                    .map(f64::to_bits)
            );
        }

        #[test]
        fn durations_read_as_the_reference_does(s in "[0-9 .:,dhmsay]{0,14}") {
            prop_assert_eq!(
                super::duration_seconds(&s).map(f64::to_bits),
                reference::duration_seconds(&s).map(f64::to_bits)
            );
        }

        #[test]
        fn float_is_the_standard_parser(s in "-?[0-9]{0,18}(\\.[0-9]{0,18})?|[-+.0-9eEnaifhms _]{0,8}") {
            let ours = super::float(&s);
            let std = s.parse::<f64>().ok();
            prop_assert_eq!(ours.map(f64::to_bits), std.map(f64::to_bits), "{:?}", s);
        }
    }
}
