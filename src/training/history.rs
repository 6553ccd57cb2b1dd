//! Bounded per-key history for the live page: every record's value by step, downsampled so
//! that a run of any length keeps at most about 2,000 points per series and spikes survive.
//!
//! Values go into buckets of `stride` records; each bucket keeps its lowest and highest
//! point (and its first non-finite value, as a marker). When the buckets are full, adjacent
//! pairs merge and the stride doubles, so the whole run stays evenly covered. Up to
//! `2 * MAX_BUCKETS` records the series is exact.
//!
//! Memory is bounded globally, not only per series: the owner of all the series (the runs)
//! gives each the same bucket cap, [`fair_buckets`] of a byte budget, and lowers it with
//! [`Series::limit`] as series are added, so that many runs decimate evenly instead of
//! growing without bound. [`Series::bytes`] is what a series is accounted.

/// Buckets per series; each yields at most two points.
pub const MAX_BUCKETS: usize = 1000;

/// The fewest buckets the budget decimates a series to (64 points). When the budget cannot
/// give every series this many, no new series is started.
pub const MIN_BUCKETS: usize = 32;

/// Bytes of one bucket.
pub const BUCKET_BYTES: usize = std::mem::size_of::<Bucket>();

/// Bytes a series is accounted besides its buckets, for a key of `key_len` bytes: the key,
/// the map entry holding it and the allocator's headers.
pub fn series_overhead(key_len: usize) -> usize {
    key_len + std::mem::size_of::<String>() + std::mem::size_of::<Series>() + 48
}

/// The buckets each of `series` series may hold when they share `budget` bytes, of which
/// `overhead` go to their [`series_overhead`]: at most [`MAX_BUCKETS`], and 0 when not even
/// one bucket each fits.
pub fn fair_buckets(budget: usize, series: usize, overhead: usize) -> usize {
    if series == 0 {
        return MAX_BUCKETS;
    }
    (budget.saturating_sub(overhead) / series / BUCKET_BYTES).min(MAX_BUCKETS)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    min: (f32, f32),
    max: (f32, f32),
    /// The first NaN or infinite value in the bucket: its step and value.
    nonfinite: Option<(f32, f32)>,
    finite: bool,
    count: u32,
}

impl Bucket {
    fn new(x: f32, y: f32) -> Self {
        let finite = y.is_finite();
        Bucket {
            min: (x, y),
            max: (x, y),
            nonfinite: (!finite).then_some((x, y)),
            finite,
            count: 1,
        }
    }

    fn add(&mut self, x: f32, y: f32) {
        self.count += 1;
        if !y.is_finite() {
            self.nonfinite.get_or_insert((x, y));
            return;
        }
        if !self.finite {
            self.min = (x, y);
            self.max = (x, y);
            self.finite = true;
            return;
        }
        if y < self.min.1 {
            self.min = (x, y);
        }
        if y >= self.max.1 {
            self.max = (x, y);
        }
    }

    fn merge(&mut self, o: &Bucket) {
        self.count = self.count.saturating_add(o.count);
        if self.nonfinite.is_none() {
            self.nonfinite = o.nonfinite;
        }
        if !o.finite {
            return;
        }
        if !self.finite {
            self.min = o.min;
            self.max = o.max;
            self.finite = true;
            return;
        }
        if o.min.1 < self.min.1 {
            self.min = o.min;
        }
        if o.max.1 >= self.max.1 {
            self.max = o.max;
        }
    }
}

/// One key's history.
#[derive(Debug, Clone, Default)]
pub struct Series {
    buckets: Vec<Bucket>,
    stride: u32,
}

impl Series {
    pub fn new() -> Self {
        Series {
            buckets: Vec::new(),
            stride: 1,
        }
    }

    /// Adds one record's value at step `x`, keeping at most [`MAX_BUCKETS`] buckets.
    pub fn push(&mut self, x: f64, y: f64) {
        self.push_within(x, y, MAX_BUCKETS);
    }

    /// Adds one record's value at step `x`, keeping at most `cap` buckets (at least 2).
    /// Returns the bytes the series grew by: its buckets are allocated as needed, doubling,
    /// never past `cap`.
    pub fn push_within(&mut self, x: f64, y: f64, cap: usize) -> usize {
        let cap = cap.clamp(2, MAX_BUCKETS);
        let (x, y) = (x as f32, y as f32);
        if let Some(b) = self.buckets.last_mut() {
            if b.count < self.stride {
                b.add(x, y);
                return 0;
            }
        }
        while self.buckets.len() >= cap {
            self.compact();
            if let Some(b) = self.buckets.last_mut() {
                if b.count < self.stride {
                    b.add(x, y);
                    return 0;
                }
            }
        }
        let before = self.buckets.capacity();
        if self.buckets.len() == before {
            let len = self.buckets.len();
            self.buckets.reserve_exact(len.max(4).min(cap - len));
        }
        self.buckets.push(Bucket::new(x, y));
        (self.buckets.capacity() - before) * BUCKET_BYTES
    }

    /// Decimates the series to at most `cap` buckets (at least 2) and releases what it held
    /// beyond them.
    pub fn limit(&mut self, cap: usize) {
        let cap = cap.clamp(2, MAX_BUCKETS);
        while self.buckets.len() > cap {
            self.compact();
        }
        if self.buckets.capacity() > cap {
            self.buckets.shrink_to(cap);
        }
    }

    /// Merges neighbouring buckets in place: half the buckets, twice the stride.
    fn compact(&mut self) {
        let n = self.buckets.len();
        for i in 0..n.div_ceil(2) {
            let mut b = self.buckets[2 * i];
            if let Some(o) = self.buckets.get(2 * i + 1) {
                b.merge(o);
            }
            self.buckets[i] = b;
        }
        self.buckets.truncate(n.div_ceil(2));
        self.stride = self.stride.saturating_mul(2);
    }

    /// Records per bucket.
    pub fn stride(&self) -> u32 {
        self.stride
    }

    /// The finite points in step order: each bucket's low and high.
    pub fn points(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(self.buckets.len() * 2);
        for b in self.buckets.iter().filter(|b| b.finite) {
            let (a, c) = if b.min.0 <= b.max.0 {
                (b.min, b.max)
            } else {
                (b.max, b.min)
            };
            out.push((a.0 as f64, a.1 as f64));
            if c != a {
                out.push((c.0 as f64, c.1 as f64));
            }
        }
        out
    }

    /// Steps where a NaN or infinite value was logged (the first per bucket), with the value.
    pub fn nonfinite(&self) -> Vec<(f64, f64)> {
        self.buckets
            .iter()
            .filter_map(|b| b.nonfinite)
            .map(|(x, y)| (x as f64, y as f64))
            .collect()
    }

    /// Buckets in use.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Heap bytes of the buckets.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * BUCKET_BYTES
    }

    /// Bytes accounted to the series stored under `key`: its buckets and its overhead.
    pub fn bytes(&self, key: &str) -> usize {
        self.heap_bytes() + series_overhead(key.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_up_to_twice_the_buckets() {
        let mut s = Series::new();
        for i in 0..2000 {
            s.push(i as f64, (i % 7) as f64);
        }
        let p = s.points();
        assert_eq!(p.len(), 2000);
        assert_eq!(p[1999], (1999.0, (1999 % 7) as f64));
    }

    #[test]
    fn bounded_and_spikes_survive() {
        let mut s = Series::new();
        for i in 0..1_000_000u32 {
            let y = if i == 777_777 {
                1e12
            } else {
                1.0 + (i % 10) as f64 * 0.01
            };
            s.push(i as f64, y);
        }
        let p = s.points();
        assert!(p.len() <= 2 * MAX_BUCKETS, "{}", p.len());
        assert!(p.len() >= MAX_BUCKETS / 2);
        assert!(
            p.iter()
                .any(|&(x, y)| x == 777_777.0 && y == f64::from(1e12_f32)),
            "the spike is kept"
        );
        assert!(p.windows(2).all(|w| w[0].0 <= w[1].0), "in step order");
        // evenly covered: the first and last steps are there
        assert_eq!(p[0].0, 0.0);
        assert!(p.last().unwrap().0 > 999_000.0);
    }

    #[test]
    fn nan_is_a_marker_not_a_point() {
        let mut s = Series::new();
        s.push(1.0, 2.0);
        s.push(2.0, f64::NAN);
        s.push(3.0, f64::INFINITY);
        assert_eq!(s.points(), vec![(1.0, 2.0)]);
        let nf = s.nonfinite();
        assert_eq!(nf.len(), 2);
        assert!(nf[0].1.is_nan() && nf[0].0 == 2.0);
        assert_eq!(nf[1], (3.0, f64::INFINITY));
    }
}
