//! The lexers formats share: the one-line mapping scanner (Python dict reprs and JSON),
//! the tqdm bar, numbers, percentages and durations. Pure functions over `&str`; a format
//! calls them, they know no format.

pub mod mapping;
pub mod number;
pub mod tqdm;

/// `str::trim_start`, with the ASCII case done byte by byte: Unicode's whitespace table is
/// consulted only when a non-ASCII byte comes first.
#[inline]
pub fn trim_start(s: &str) -> &str {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_ascii_space(b[i]) {
        i += 1;
    }
    match b.get(i) {
        Some(&c) if c >= 0x80 => s[i..].trim_start(),
        _ => &s[i..],
    }
}

/// `str::trim_end`, ASCII first (see [`trim_start`]).
#[inline]
pub fn trim_end(s: &str) -> &str {
    let b = s.as_bytes();
    let mut n = b.len();
    while n > 0 && is_ascii_space(b[n - 1]) {
        n -= 1;
    }
    match n.checked_sub(1).map(|i| b[i]) {
        Some(c) if c >= 0x80 => s[..n].trim_end(),
        _ => &s[..n],
    }
}

/// `str::trim`, ASCII first (see [`trim_start`]).
#[inline]
pub fn trim(s: &str) -> &str {
    trim_end(trim_start(s))
}

/// The ASCII characters `char::is_whitespace` accepts: space and `\t` to `\r`.
#[inline]
fn is_ascii_space(c: u8) -> bool {
    c == b' ' || (b'\t'..=b'\r').contains(&c)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn trims_are_std_trims(s in "[ \t\n\x0b\x0c\r\u{a0}\u{3000}\u{85}a-z█]{0,12}") {
            prop_assert_eq!(super::trim(&s), s.trim());
            prop_assert_eq!(super::trim_start(&s), s.trim_start());
            prop_assert_eq!(super::trim_end(&s), s.trim_end());
        }
    }
}
