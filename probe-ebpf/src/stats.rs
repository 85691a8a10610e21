//! The per-CPU aggregates the array kinds keep: values, and latencies.
use crate::{fine_bucket, log2_bucket, FINE_BUCKETS, LOG2_BUCKETS};

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
    pub buckets: [u64; LOG2_BUCKETS],
}

impl ValueStats {
    pub const EMPTY: ValueStats =
        ValueStats { count: 0, sum_lo: 0, sum_hi: 0, min: 0, max: 0, unreadable: 0, buckets: [0; LOG2_BUCKETS] };

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
        // The optimiser proves log2_bucket() < 128 and drops the bounds check, but the BPF
        // verifier cannot follow that proof (it does not model the leading-zeros expansion).
        // A volatile round trip hides the range from the optimiser, so the check stays.
        let index = log2_bucket(v);
        let index = unsafe { core::ptr::read_volatile(&index) };
        if let Some(b) = self.buckets.get_mut(index) {
            *b += 1;
        }
    }

    /// Folds another aggregate (another CPU, another interval) into this one.
    pub fn merge(&mut self, other: &ValueStats) {
        if other.count > 0 {
            if self.count == 0 || other.min < self.min {
                self.min = other.min;
            }
            if self.count == 0 || other.max > self.max {
                self.max = other.max;
            }
        }
        self.count += other.count;
        self.unreadable += other.unreadable;
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
        fine: [0; FINE_BUCKETS],
    };

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
        let index = fine_bucket(ns);
        // See ValueStats::record: keep the bounds check for the verifier.
        let index = unsafe { core::ptr::read_volatile(&index) };
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
}
