//! The lexers formats share: the one-line mapping scanner (Python dict reprs and JSON),
//! the tqdm bar, numbers, percentages and durations. Pure functions over `&str`; a format
//! calls them, they know no format.

pub mod mapping;
pub mod number;
pub mod tqdm;

/// The first `x` in `b`, eight bytes at a time: the searches in a line are short, where a
/// vectorised search spends more on its setup than on the search.
#[inline(always)]
pub fn find_byte(x: u8, b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let rx = ONES * u64::from(x);
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let v = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) ^ rx;
        // the lowest zero byte of `v` is the lowest set high bit (bits above it may be wrong)
        let hit = v.wrapping_sub(ONES) & !v & HIGH;
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(|&c| c == x).map(|p| p + i)
}

/// `str::trim_start`, with the ASCII case done byte by byte: Unicode's whitespace table is
/// consulted only when a non-ASCII byte comes first.
#[inline(always)]
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
#[inline(always)]
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
#[inline(always)]
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
        fn find_byte_finds_what_a_plain_search_finds(
            b in proptest::collection::vec(prop_oneof![Just(b'|'), Just(0x7cu8 ^ 0x80), Just(0u8), any::<u8>()], 0..40)
        ) {
            prop_assert_eq!(super::find_byte(b'|', &b), b.iter().position(|&c| c == b'|'));
        }

        #[test]
        fn trims_are_std_trims(s in "[ \t\n\x0b\x0c\r\u{a0}\u{3000}\u{85}a-z█]{0,12}") {
            prop_assert_eq!(super::trim(&s), s.trim());
            prop_assert_eq!(super::trim_start(&s), s.trim_start());
            prop_assert_eq!(super::trim_end(&s), s.trim_end());
        }
    }
}
