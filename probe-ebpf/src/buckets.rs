//! The bucket math: SystemTap's signed log2 buckets, latency's log-linear nanosecond buckets,
//! and where a slot's bank lives in a banked array.

/// Number of signed log2 buckets, as in SystemTap's `@hist_log`.
pub const LOG2_BUCKETS: usize = 128;
/// The bucket that holds 0. Bucket `ZERO_BUCKET + 1 + k` holds 2^k ..= 2^(k+1)-1, bucket
/// `ZERO_BUCKET - 1 - k` holds -(2^(k+1)-1) ..= -2^k.
pub const ZERO_BUCKET: usize = 64;

/// Index of `slot` in bank `bank` of a stats map (`VALUE_STATS`, `LATENCY_STATS`).
///
/// Every stats map holds two banks per slot, interleaved, and the loader sizes it to
/// `2 * slots`. `EPOCH[0] & 1` names the bank the programs write; the loader flips the epoch
/// at each interval and drains the other bank, so interval tables are exact without resetting
/// a map that programs are writing.
#[inline(always)]
pub fn bank_index(bank: u32, slot: u32) -> u32 {
    slot * 2 + (bank & 1)
}

/// `v`, unchanged, but opaque to the optimiser and to the BPF verifier alike: written to the
/// stack in two halves and read back whole, which the verifier can only take as any number.
/// For a bucket index: the optimiser would otherwise prove it in range and drop the bounds
/// check the verifier needs (it cannot follow that proof), and the verifier, once the index
/// must be checked, keeps the value it came from exact back through every comparison on the
/// way (the min and max updates), so each combination of their outcomes was a state of its own:
/// latency's exit program took it 9,985 instructions to follow, 4,344 with this (and a
/// `log2_bucket` without branches). For what a program carries past a long walk (`--by
/// stack`'s frames): the paths that differ only in it reach the walk as one.
#[inline(always)]
pub fn opaque(v: u64) -> u64 {
    #[repr(C, align(8))]
    struct Halves([u32; 2]);
    let words: [u32; 2] = unsafe { core::mem::transmute(v) };
    let mut halves = Halves([0; 2]);
    unsafe {
        core::ptr::write_volatile(&mut halves.0[0], words[0]);
        core::ptr::write_volatile(&mut halves.0[1], words[1]);
        core::ptr::read_volatile(&halves as *const Halves as *const u64)
    }
}

/// SystemTap's `@hist_log` bucket for a signed 64-bit value (0..=127).
#[inline(always)]
pub fn log2_bucket(v: i64) -> usize {
    // Without a branch (each one a path more for the verifier to follow in every program that
    // records a value): |v| in 2^k ..= 2^(k+1)-1 is k + 1 buckets from zero, 0 is 0 buckets
    // away, and a negative value's side is the other (`^ sign - sign` negates when sign is -1).
    // |i64::MIN| = 2^63 fits in u64.
    let away = 64 - v.unsigned_abs().leading_zeros() as i64;
    let sign = v >> 63;
    (ZERO_BUCKET as i64 + ((away ^ sign) - sign)) as usize
}

/// Where an unsigned 64-bit value's `@hist_log` bucket is: as `log2_bucket` below 2^63; the
/// values from 2^63 up, which no signed bucket holds, in bucket 0 (no unsigned value is
/// negative, so bucket 0 is free in an unsigned histogram).
#[inline(always)]
pub fn log2_bucket_unsigned(v: u64) -> usize {
    if v > i64::MAX as u64 {
        UNSIGNED_HIGH_BUCKET
    } else {
        log2_bucket(v as i64)
    }
}

/// The bucket an unsigned histogram keeps its values from 2^63 up in (`log2_bucket_unsigned`).
pub const UNSIGNED_HIGH_BUCKET: usize = 0;

/// Inclusive value range of bucket `index` of a signed or an unsigned histogram.
pub fn log2_bucket_range_of(index: usize, unsigned: bool) -> (i128, i128) {
    if unsigned && index == UNSIGNED_HIGH_BUCKET {
        return (1 << 63, u64::MAX as i128);
    }
    let (low, high) = log2_bucket_range(index);
    (low as i128, high as i128)
}

/// The buckets of a signed or an unsigned histogram in the order of their values.
pub fn log2_buckets_in_order(unsigned: bool) -> impl Iterator<Item = usize> {
    let (first, high) = if unsigned { (ZERO_BUCKET, Some(UNSIGNED_HIGH_BUCKET)) } else { (0, None) };
    (first..LOG2_BUCKETS).chain(high)
}

/// Inclusive value range `(low, high)` that bucket `index` counts.
pub fn log2_bucket_range(index: usize) -> (i64, i64) {
    if index == ZERO_BUCKET {
        return (0, 0);
    }
    if index > ZERO_BUCKET {
        let k = (index - ZERO_BUCKET - 1) as u32;
        let low = 1i128 << k;
        (low as i64, ((low << 1) - 1) as i64)
    } else {
        let k = (ZERO_BUCKET - 1 - index) as u32;
        let high = -(1i128 << k);
        let low = (-((1i128 << (k + 1)) - 1)).max(i64::MIN as i128);
        (low as i64, high as i64)
    }
}

/// The label SystemTap prints for bucket `index`: 0, 2^k or -2^k.
pub fn log2_bucket_label(index: usize) -> i64 {
    let (low, high) = log2_bucket_range(index);
    if index >= ZERO_BUCKET {
        low
    } else {
        high
    }
}

/// Latency: log-linear buckets of nanoseconds, 16 per power of two, for percentiles within a
/// few percent. Values below 16 ns have a bucket each.
pub const FINE_SUB_BITS: u32 = 4;
pub const FINE_SUB: usize = 1 << FINE_SUB_BITS;
pub const FINE_BUCKETS: usize = FINE_SUB + (64 - FINE_SUB_BITS as usize) * FINE_SUB;

/// Log-linear bucket of a duration in nanoseconds (0..FINE_BUCKETS).
#[inline(always)]
pub fn fine_bucket(ns: u64) -> usize {
    if ns < FINE_SUB as u64 {
        return ns as usize;
    }
    let k = 63 - ns.leading_zeros(); // >= FINE_SUB_BITS
    let sub = (ns >> (k - FINE_SUB_BITS)) as usize & (FINE_SUB - 1);
    FINE_SUB + (k - FINE_SUB_BITS) as usize * FINE_SUB + sub
}

/// Inclusive nanosecond range of fine bucket `index`.
pub fn fine_bucket_range(index: usize) -> (u64, u64) {
    if index < FINE_SUB {
        return (index as u64, index as u64);
    }
    let k = ((index - FINE_SUB) / FINE_SUB) as u32 + FINE_SUB_BITS;
    let sub = ((index - FINE_SUB) % FINE_SUB) as u64;
    let width = 1u64 << (k - FINE_SUB_BITS);
    let low = (1u64 << k) + sub * width;
    (low, low + (width - 1))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use crate::*;

    /// The obvious definition, written independently of `log2_bucket`.
    fn reference_bucket(v: i64) -> usize {
        let v = v as i128;
        if v == 0 {
            return 64;
        }
        let mut k = 0usize;
        while (1i128 << (k + 1)) <= v.abs() {
            k += 1;
        }
        if v > 0 {
            65 + k
        } else {
            63 - k
        }
    }

    fn boundary_values() -> std::vec::Vec<i64> {
        let mut vs = std::vec![0, 1, -1, 2, -2, 3, -3, i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1];
        for k in 0..63 {
            let p = 1i64 << k;
            for v in [p - 1, p, p + 1] {
                vs.push(v);
                vs.push(-v);
            }
        }
        vs
    }

    #[test]
    fn an_opaque_value_is_the_value() {
        for v in [0, 1, 127, 128, 975, u32::MAX as u64, 1 << 32, u64::MAX] {
            assert_eq!(opaque(v), v);
        }
    }

    #[test]
    fn bucket_matches_reference_at_boundaries() {
        for v in boundary_values() {
            assert_eq!(log2_bucket(v), reference_bucket(v), "value {v}");
        }
    }

    #[test]
    fn bucket_extremes() {
        assert_eq!(log2_bucket(i64::MIN), 0);
        assert_eq!(log2_bucket(i64::MAX), 127);
        assert_eq!(log2_bucket(0), 64);
        assert_eq!(log2_bucket(1), 65);
        assert_eq!(log2_bucket(-1), 63);
        assert_eq!(log2_bucket(3), 66);
        assert_eq!(log2_bucket(-3), 62);
    }

    #[test]
    fn ranges_contain_exactly_their_values() {
        for v in boundary_values() {
            let (low, high) = log2_bucket_range(log2_bucket(v));
            assert!(low <= v && v <= high, "{v} not in {low}..={high}");
        }
        for i in 0..LOG2_BUCKETS {
            let (low, high) = log2_bucket_range(i);
            assert_eq!(log2_bucket(low), i);
            assert_eq!(log2_bucket(high), i);
            if i + 1 < LOG2_BUCKETS {
                assert_eq!(high as i128 + 1, log2_bucket_range(i + 1).0 as i128, "gap after {i}");
            }
        }
        assert_eq!(log2_bucket_range(55), (-511, -256));
        assert_eq!(log2_bucket_label(55), -256);
        assert_eq!(log2_bucket_label(0), i64::MIN);
    }

    #[test]
    fn unsigned_values_from_2_pow_63_have_their_own_bucket_last() {
        assert_eq!(log2_bucket_unsigned(u64::MAX), UNSIGNED_HIGH_BUCKET);
        assert_eq!(log2_bucket_unsigned(1 << 63), UNSIGNED_HIGH_BUCKET);
        assert_eq!(log2_bucket_unsigned((1 << 63) - 1), 127);
        assert_eq!(log2_bucket_unsigned(5), log2_bucket(5));
        assert_eq!(log2_bucket_range_of(0, true), (1 << 63, u64::MAX as i128));
        assert_eq!(log2_bucket_range_of(0, false), (i64::MIN as i128, i64::MIN as i128));
        let order: std::vec::Vec<usize> = log2_buckets_in_order(true).collect();
        assert_eq!((order[0], order[order.len() - 2], order[order.len() - 1]), (ZERO_BUCKET, 127, 0));
        let mut previous = -1;
        for i in order {
            let (low, high) = log2_bucket_range_of(i, true);
            assert_eq!(low, previous + 1, "bucket {i} follows the one before");
            previous = high;
        }
        assert_eq!(previous, u64::MAX as i128);
        assert_eq!(log2_buckets_in_order(false).count(), LOG2_BUCKETS);
    }

    #[test]
    fn fine_buckets_are_contiguous_and_tight() {
        assert_eq!(fine_bucket(0), 0);
        assert_eq!(fine_bucket(15), 15);
        assert_eq!(fine_bucket(16), 16);
        assert_eq!(fine_bucket(u64::MAX), FINE_BUCKETS - 1);
        let mut next = 0u64;
        for i in 0..FINE_BUCKETS {
            let (low, high) = fine_bucket_range(i);
            assert_eq!(low, next, "bucket {i} starts where {} ended", i.saturating_sub(1));
            assert_eq!(fine_bucket(low), i);
            assert_eq!(fine_bucket(high), i);
            // Width at most 1/16 of the low bound: percentiles within about 6%.
            assert!(low < 16 || (high - low + 1) * 16 <= low, "bucket {i} too wide");
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "buckets cover all of u64");
    }
}
