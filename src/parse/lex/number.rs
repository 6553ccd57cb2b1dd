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
    tok.parse::<f64>().ok()
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
