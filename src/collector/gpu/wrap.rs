//! Hardware byte counters that wrap, turned into counters that only rise.
//!
//! `nvml.h` says the PCIe byte counters (fields 197/198) "can be wrapped" and gives no
//! width; the NVLink data counters (138/139) give none either. The width is taken from the
//! `valueType` NVML declares with each value (an `unsigned int` wraps at 2³², an
//! `unsigned long long` at 2⁶⁴), and each reading adds its difference from the previous one
//! modulo that width to a 64-bit total. A 64-bit counter that goes down was reset (the
//! driver was reloaded): the reading is then counted from zero. More than one wrap between
//! two readings cannot be seen: a 32-bit byte counter at a PCIe Gen5 ×16 line rate
//! (~64 GB/s) wraps every ~67 ms, which is why the GPM rates are the figure to use where a
//! GPU has them.

/// Bits of a field value of NVML `valueType` `value_type` (`NVML_VALUE_TYPE_*`); 64 for the
/// types that do not wrap as counters (double, signed).
pub fn value_bits(value_type: u32) -> u32 {
    match value_type {
        1 => 32,
        2 => std::ffi::c_ulong::BITS,
        6 => 16,
        _ => 64,
    }
}

/// One wrapping counter, accumulated.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Unwrapped {
    /// The last raw reading and its width.
    last: Option<(u64, u32)>,
    total: u64,
}

impl Unwrapped {
    /// Takes a raw reading `bits` wide and returns the total so far. The first reading is
    /// the total as it stands (NVML counts from the driver's load).
    pub fn update(&mut self, raw: u64, bits: u32) -> u64 {
        let delta = match self.last {
            None => {
                self.total = raw;
                0
            }
            Some((_, prev_bits)) if prev_bits != bits => {
                // The declared type changed (a driver update): start over from the reading.
                self.total = raw;
                0
            }
            Some((prev, _)) if raw >= prev => raw - prev,
            Some((prev, _)) if bits < 64 => (raw + (1u64 << bits)).wrapping_sub(prev),
            Some(_) => raw,
        };
        self.total = self.total.wrapping_add(delta);
        self.last = Some((raw, bits));
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_32_bit_counter_that_wraps_keeps_rising() {
        let mut c = Unwrapped::default();
        assert_eq!(c.update(4_294_967_000, 32), 4_294_967_000);
        // 296 bytes to the wrap, then 100 more.
        assert_eq!(c.update(100, 32), 4_294_967_396);
        assert_eq!(c.update(600, 32), 4_294_967_896);
        // A second wrap.
        assert_eq!(c.update(50, 32), 4_294_967_896 + (4_294_967_296 - 600) + 50);
    }

    #[test]
    fn a_64_bit_counter_that_goes_down_was_reset() {
        let mut c = Unwrapped::default();
        assert_eq!(c.update(1_000, 64), 1_000);
        assert_eq!(c.update(1_500, 64), 1_500);
        assert_eq!(c.update(200, 64), 1_700);
    }

    #[test]
    fn a_change_of_width_starts_over() {
        let mut c = Unwrapped::default();
        c.update(1_000, 32);
        assert_eq!(c.update(7, 64), 7);
        assert_eq!(c.update(9, 64), 9);
    }

    #[test]
    fn widths_follow_the_declared_type() {
        assert_eq!(value_bits(1), 32);
        assert_eq!(value_bits(3), 64);
        assert_eq!(value_bits(6), 16);
        assert_eq!(value_bits(0), 64);
    }
}
