//! Bounded per-key history for the live page: every record's value by step, downsampled so
//! that a run of any length keeps at most about 2,000 points per series and spikes survive.
//!
//! Values go into buckets of `stride` records; each bucket keeps its lowest and highest
//! point (and its first non-finite value, as a marker). When the buckets are full, adjacent
//! pairs merge and the stride doubles, so the whole run stays evenly covered. Up to
//! `2 * MAX_BUCKETS` records the series is exact.

/// Buckets per series; each yields at most two points.
pub const MAX_BUCKETS: usize = 1000;

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
        self.count += o.count;
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

    /// Adds one record's value at step `x`.
    pub fn push(&mut self, x: f64, y: f64) {
        let (x, y) = (x as f32, y as f32);
        match self.buckets.last_mut() {
            Some(b) if b.count < self.stride => b.add(x, y),
            _ => {
                if self.buckets.len() >= MAX_BUCKETS {
                    self.compact();
                    return self.push(x as f64, y as f64);
                }
                self.buckets.push(Bucket::new(x, y));
            }
        }
    }

    fn compact(&mut self) {
        let merged: Vec<Bucket> = self
            .buckets
            .chunks(2)
            .map(|pair| {
                let mut b = pair[0];
                if let Some(o) = pair.get(1) {
                    b.merge(o);
                }
                b
            })
            .collect();
        self.buckets = merged;
        self.stride *= 2;
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

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
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
