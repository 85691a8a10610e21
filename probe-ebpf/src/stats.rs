//! The per-CPU aggregates the array kinds keep: values, and latencies.
use crate::{
    fine_bucket, latency_bucket_indexes, log2_bucket, log2_bucket_unsigned, opaque, LatencySummary, Losses,
    ValueSummary, FINE_BUCKETS, LOG2_BUCKETS,
};

/// Per-CPU aggregate of the values one site group saw: exact count, 128-bit sum, min, max and
/// the `@hist_log` buckets. Zero-initialised by the kernel; `count == 0` means "no values".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueStats {
    pub count: u64,
    /// Sum as a 128-bit two's complement number split in two words (BPF has no i128 add).
    pub sum_lo: u64,
    pub sum_hi: i64,
    pub min: i64,
    pub max: i64,
    /// Hits whose value could not be read (a stack slot that faulted). Not in `count`.
    pub unreadable: u64,
    /// 1 when the values are unsigned 64-bit integers (`record_unsigned`): `min`, `max` and the
    /// sum hold their bits, and bucket 0 holds the values from 2^63 up (`log2_bucket_unsigned`).
    pub unsigned: u64,
    /// Calls dropped before their value was recorded, per reason (`losses`). Unused in
    /// `LatencyStats::in_unit` (latency keeps its own).
    pub losses: Losses,
    pub buckets: [u64; LOG2_BUCKETS],
}

impl ValueStats {
    pub const EMPTY: ValueStats = ValueStats {
        count: 0,
        sum_lo: 0,
        sum_hi: 0,
        min: 0,
        max: 0,
        unreadable: 0,
        unsigned: 0,
        losses: Losses::EMPTY,
        buckets: [0; LOG2_BUCKETS],
    };

    /// A keyed summary's values, its histogram still to add (`add_bucket`).
    pub fn from_summary(s: &ValueSummary) -> ValueStats {
        let ValueSummary { count, sum_lo, sum_hi, min, max, unreadable, unsigned } = *s;
        ValueStats { count, sum_lo, sum_hi, min, max, unreadable, unsigned, ..ValueStats::EMPTY }
    }

    /// Adds one unsigned 64-bit value (a `Width::U64` site).
    #[inline(always)]
    pub fn record_unsigned(&mut self, v: u64) {
        self.unsigned = 1;
        if self.count == 0 || v < self.min as u64 {
            self.min = v as i64;
        }
        if self.count == 0 || v > self.max as u64 {
            self.max = v as i64;
        }
        self.count += 1;
        let (lo, carry) = self.sum_lo.overflowing_add(v);
        self.sum_lo = lo;
        self.sum_hi = self.sum_hi.wrapping_add(carry as i64);
        let index = opaque(log2_bucket_unsigned(v) as u64) as usize;
        if let Some(b) = self.buckets.get_mut(index) {
            *b += 1;
        }
    }

    /// `record_unsigned` for a value read as `i64` (its bits) when `unsigned`, else `record`.
    #[inline(always)]
    pub fn record_as(&mut self, v: i64, unsigned: bool) {
        if unsigned {
            self.record_unsigned(v as u64)
        } else {
            self.record(v)
        }
    }

    /// The smallest and largest value, as the numbers they are.
    pub fn min_max(&self) -> (i128, i128) {
        if self.unsigned != 0 {
            (self.min as u64 as i128, self.max as u64 as i128)
        } else {
            (self.min as i128, self.max as i128)
        }
    }

    /// Adds `calls` to the bucket of a `value_bucket` code (an unknown code adds nothing).
    pub fn add_bucket(&mut self, code: u64, calls: u64) {
        if let Some(b) = self.buckets.get_mut(code as usize) {
            *b += calls;
        }
    }

    /// Adds one value. Used by the kernel program on its per-CPU copy.
    #[inline(always)]
    pub fn record(&mut self, v: i64) {
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        if self.count == 0 || v > self.max {
            self.max = v;
        }
        self.count += 1;
        let (lo, carry) = self.sum_lo.overflowing_add(v as u64);
        self.sum_lo = lo;
        self.sum_hi = self.sum_hi.wrapping_add((v >> 63) + carry as i64);
        // Opaque, so the bounds check stays and the verifier checks only it (`opaque`).
        let index = opaque(log2_bucket(v) as u64) as usize;
        if let Some(b) = self.buckets.get_mut(index) {
            *b += 1;
        }
    }

    /// Folds another aggregate (another CPU, another interval) into this one.
    pub fn merge(&mut self, other: &ValueStats) {
        self.unsigned |= other.unsigned;
        if other.count > 0 {
            let (min, max) = other.min_max();
            let (my_min, my_max) = self.min_max();
            if self.count == 0 || min < my_min {
                self.min = other.min;
            }
            if self.count == 0 || max > my_max {
                self.max = other.max;
            }
        }
        self.count += other.count;
        self.unreadable += other.unreadable;
        self.losses.merge(&other.losses);
        let sum = self.sum().wrapping_add(other.sum());
        self.sum_lo = sum as u64;
        self.sum_hi = (sum >> 64) as i64;
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
    }

    pub fn sum(&self) -> i128 {
        ((self.sum_hi as i128) << 64) | self.sum_lo as i128
    }
}

/// Per-CPU latency aggregate of one function: the `@hist_log` view in the display unit
/// (count, sum, min, max of truncated durations, as SystemTap computes them), the fine
/// nanosecond buckets for percentiles, and the entries abandoned without a return.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyStats {
    /// The durations as SystemTap's `@hist_log` sees them: in the display unit, truncated.
    pub in_unit: ValueStats,
    /// Entries whose frame was left without reaching RET (panic, Goexit, longjmp).
    pub abandoned: u64,
    /// Entries not recorded because the per-goroutine/thread nesting stack was full.
    pub too_deep: u64,
    /// Exact sum of the recorded durations in nanoseconds (`in_unit`'s sum is in the display
    /// unit, truncated per call); wraps after 584 years of total time.
    pub sum_ns: u64,
    /// Nanoseconds of the probes' own cost taken out of the recorded durations (see
    /// `SpanShape`): the summary shows it per call.
    pub subtracted_ns: u64,
    /// Exact shortest and longest durations in nanoseconds (`in_unit`'s are truncated to the
    /// display unit), for a summary with three significant digits; valid when count > 0.
    pub min_ns: u64,
    pub max_ns: u64,
    /// Calls dropped before they could be timed, per reason (`losses`).
    pub losses: Losses,
    pub fine: [u64; FINE_BUCKETS],
}

impl LatencyStats {
    pub const EMPTY: LatencyStats = LatencyStats {
        in_unit: ValueStats::EMPTY,
        abandoned: 0,
        too_deep: 0,
        sum_ns: 0,
        subtracted_ns: 0,
        min_ns: 0,
        max_ns: 0,
        losses: Losses::EMPTY,
        fine: [0; FINE_BUCKETS],
    };

    /// A keyed summary's latencies in display unit `unit_ns`, its histograms still to add
    /// (`add_bucket`). Truncating to the unit keeps order, so the unit's min and max are the
    /// nanoseconds' truncated.
    pub fn from_summary(s: &LatencySummary, unit_ns: u64) -> LatencyStats {
        let unit = unit_ns.max(1);
        let in_unit = ValueStats {
            count: s.count,
            sum_lo: s.unit_sum,
            min: (s.min_ns / unit) as i64,
            max: (s.max_ns / unit) as i64,
            ..ValueStats::EMPTY
        };
        LatencyStats {
            in_unit,
            abandoned: s.abandoned,
            too_deep: s.too_deep,
            sum_ns: s.sum_ns,
            subtracted_ns: s.subtracted_ns,
            min_ns: s.min_ns,
            max_ns: s.max_ns,
            ..LatencyStats::EMPTY
        }
    }

    /// Adds `calls` to the two buckets of a `latency_bucket` code (unknown ones add nothing).
    pub fn add_bucket(&mut self, code: u64, calls: u64) {
        let (fine, in_unit) = latency_bucket_indexes(code);
        if let (Some(f), Some(u)) = (self.fine.get_mut(fine), self.in_unit.buckets.get_mut(in_unit)) {
            *f += calls;
            *u += calls;
        }
    }

    /// Adds one call of `ns` nanoseconds; `unit_ns` is the display unit (1, 1000, 1000000).
    #[inline(always)]
    pub fn record(&mut self, ns: u64, unit_ns: u64) {
        if self.in_unit.count == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        if ns > self.max_ns {
            self.max_ns = ns;
        }
        self.in_unit.record((ns / unit_ns.max(1)) as i64);
        self.sum_ns = self.sum_ns.wrapping_add(ns);
        let index = opaque(fine_bucket(ns) as u64) as usize;
        if let Some(b) = self.fine.get_mut(index) {
            *b += 1;
        }
    }

    pub fn merge(&mut self, other: &LatencyStats) {
        if other.in_unit.count > 0 {
            if self.in_unit.count == 0 || other.min_ns < self.min_ns {
                self.min_ns = other.min_ns;
            }
            self.max_ns = self.max_ns.max(other.max_ns);
        }
        self.in_unit.merge(&other.in_unit);
        self.abandoned += other.abandoned;
        self.too_deep += other.too_deep;
        self.losses.merge(&other.losses);
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
        self.subtracted_ns = self.subtracted_ns.wrapping_add(other.subtracted_ns);
        for (mine, theirs) in self.fine.iter_mut().zip(other.fine.iter()) {
            *mine += theirs;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use crate::*;

    #[test]
    fn stats_record_and_merge() {
        let mut a = ValueStats::EMPTY;
        let mut b = ValueStats::EMPTY;
        for v in -500..0 {
            a.record(v);
        }
        for v in 0..500 {
            b.record(v);
        }
        b.record(i64::MAX);
        b.record(i64::MAX);
        a.merge(&b);
        assert_eq!(a.count, 1002);
        assert_eq!(a.min, -500);
        assert_eq!(a.max, i64::MAX);
        assert_eq!(a.sum(), -500 + 2 * i64::MAX as i128);
        assert_eq!(a.buckets.iter().sum::<u64>(), 1002);
    }

    #[test]
    fn latency_sum_is_exact_nanoseconds_whatever_the_unit() {
        let mut a = LatencyStats::EMPTY;
        let mut b = LatencyStats::EMPTY;
        a.record(1_999, 1_000);
        b.record(2_500, 1_000);
        a.merge(&b);
        assert_eq!(a.sum_ns, 4_499);
        assert_eq!((a.min_ns, a.max_ns), (1_999, 2_500));
        assert_eq!(a.in_unit.sum(), 3, "display unit (us), truncated per call");
    }

    /// What a keyed summary and its bucket counts add up to is what the whole aggregate
    /// records, in every unit.
    #[test]
    fn keyed_summaries_and_buckets_rebuild_the_whole_aggregates() {
        let durations = [0u64, 1, 999, 1_000, 1_023, 1_999, 2_500, 15_999, 16_000, 1 << 40, i64::MAX as u64];
        for unit in [1u64, 1_000, 1_000_000] {
            let mut whole = LatencyStats::EMPTY;
            let mut summary = LatencySummary::EMPTY;
            let mut buckets = std::collections::BTreeMap::new();
            for &ns in &durations {
                whole.record(ns, unit);
                summary.record(ns, unit);
                *buckets.entry(latency_bucket(ns, unit)).or_insert(0u64) += 1;
            }
            let mut rebuilt = LatencyStats::from_summary(&summary, unit);
            for (&code, &calls) in &buckets {
                rebuilt.add_bucket(code, calls);
            }
            assert_eq!(rebuilt, whole, "unit {unit}");
        }
        let values = [i64::MIN, -3, 0, 1, 7, 4096, i64::MAX];
        let (mut whole, mut summary) = (ValueStats::EMPTY, ValueSummary::EMPTY);
        let mut rebuilt_buckets = [0u64; LOG2_BUCKETS];
        for &v in &values {
            whole.record(v);
            summary.record(v);
            rebuilt_buckets[value_bucket(v, false) as usize] += 1;
        }
        let mut rebuilt = ValueStats::from_summary(&summary);
        for (code, &calls) in rebuilt_buckets.iter().enumerate().filter(|(_, &c)| c > 0) {
            rebuilt.add_bucket(code as u64, calls);
        }
        assert_eq!(rebuilt, whole);
        let (mut whole, mut summary) = (ValueStats::EMPTY, ValueSummary::EMPTY);
        for v in [u64::MAX, 3, 1 << 63] {
            whole.record_unsigned(v);
            summary.record_unsigned(v);
        }
        let mut rebuilt = ValueStats::from_summary(&summary);
        rebuilt.add_bucket(value_bucket(3, true), 1);
        rebuilt.add_bucket(value_bucket(u64::MAX as i64, true), 2);
        assert_eq!(rebuilt, whole);
    }

    #[test]
    fn unsigned_values_keep_their_order_sum_and_bucket() {
        let mut a = ValueStats::EMPTY;
        let mut b = ValueStats::EMPTY;
        a.record_unsigned(5);
        a.record_unsigned(u64::MAX);
        b.record_unsigned(1 << 63);
        b.record_unsigned(0);
        a.merge(&b);
        assert_eq!(a.min_max(), (0, u64::MAX as i128));
        assert_eq!(a.sum(), 5 + u64::MAX as i128 + (1i128 << 63));
        assert_eq!(a.buckets[crate::UNSIGNED_HIGH_BUCKET], 2);
        assert_eq!(a.buckets[crate::ZERO_BUCKET], 1);
        let mut signed = ValueStats::EMPTY;
        signed.record_as(-1, false);
        assert_eq!(signed.min_max(), (-1, -1));
    }
}
