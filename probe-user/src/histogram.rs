//! Latency numbers for people: display units and percentiles from the kernel's fine buckets
//! (through an HdrHistogram).
use hdrhistogram::Histogram;
use probe_ebpf::{fine_bucket_range, LatencyStats, FINE_BUCKETS};

/// p50, p90, p99 and p99.9 in nanoseconds.
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
}

impl Percentiles {
    /// Each fine bucket (at most 1/16 of a power of two wide) enters the HdrHistogram at its
    /// midpoint, so a percentile is off by at most half a bucket: about 3%. A bucket's midpoint
    /// can lie beyond the run's exact extremes (one call: p50 below min), so every percentile
    /// is clamped to the exact `[min_ns, max_ns]` the kernel kept.
    pub fn of(stats: &LatencyStats) -> Percentiles {
        let h = ns_histogram(&stats.fine);
        let (min, max) = (stats.min_ns.min(stats.max_ns), stats.max_ns);
        let at = |q: f64| h.value_at_quantile(q).clamp(min, max);
        Percentiles { p50: at(0.50), p90: at(0.90), p99: at(0.99), p999: at(0.999) }
    }
}

/// The fine buckets as an HdrHistogram of nanoseconds: each bucket enters at its midpoint, with
/// its exact count.
pub fn ns_histogram(fine: &[u64; FINE_BUCKETS]) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).expect("3 significant digits is valid");
    for (i, &count) in fine.iter().enumerate().filter(|(_, &c)| c > 0) {
        let (low, high) = fine_bucket_range(i);
        let _ = h.record_n(low + (high - low) / 2, count);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::Unit;

    #[test]
    fn figures_are_printed_no_finer_than_their_resolution() {
        assert_eq!(Unit::Us.format_within(7_812, 0), "7.81us");
        assert_eq!(Unit::Us.format_within(7_812, 312), "7.8us");
        assert_eq!(Unit::Us.format_within(7_812, 5_000), "8us");
        assert_eq!(Unit::Us.format_within(1_147_000, 50_000), "1150us");
        assert_eq!(Unit::Us.format_within(655, 60), "0.66us");
        assert_eq!(Unit::Us.format_within(40, 60), "<0.06us");
        assert_eq!(Unit::Us.format_within(0, 312), "<0.4us");
        assert_eq!(Unit::Ms.format_within(1_000, 12_000), "<0.02ms");
        assert_eq!(Unit::Ns.format_within(7_812, 312), "7800ns");
        assert_eq!(Unit::Ms.format_within(2_163_000, 312), "2.16ms");
    }

    #[test]
    fn percentiles_land_within_a_few_percent() {
        let mut s = LatencyStats::EMPTY;
        for ns in 1..=100_000u64 {
            s.record(ns * 100, 1000); // 100 ns .. 10 ms, uniform
        }
        let p = Percentiles::of(&s);
        for (got, want) in [(p.p50, 5_000_000.0), (p.p90, 9_000_000.0), (p.p99, 9_900_000.0)] {
            let err = (got as f64 - want).abs() / want;
            assert!(err < 0.04, "percentile {got} vs {want}: {:.1}% off", err * 100.0);
        }
    }

    #[test]
    fn percentiles_stay_within_min_and_max() {
        // One call of 3,388,400 ns: its fine bucket's midpoint is below it (issue 12 saw
        // `min:3388us max:3388us count:1 p50:3342us`).
        let mut one = LatencyStats::EMPTY;
        one.record(3_388_400, 1000);
        let p = Percentiles::of(&one);
        for q in [p.p50, p.p90, p.p99, p.p999] {
            assert_eq!(Unit::Us.format(q), "3388us");
        }
        // Calls just under 50 us: the bucket midpoint and HdrHistogram's rounding gave 50.2us.
        let mut near = LatencyStats::EMPTY;
        for ns in [40_100, 45_000, 49_900] {
            near.record(ns, 1000);
        }
        let p = Percentiles::of(&near);
        assert!(p.p90 <= 49_900 && p.p50 >= 40_100, "p50 {} p90 {}", p.p50, p.p90);
    }

    #[test]
    fn formats_three_significant_digits() {
        assert_eq!(Unit::Ms.format(2_051_000), "2.05ms");
        assert_eq!(Unit::Us.format(586_400), "586us");
        assert_eq!(Unit::Us.format(12_340), "12.3us");
        assert_eq!(Unit::Us.format(1_234), "1.23us");
        assert_eq!(Unit::Us.format(105), "0.105us");
        assert_eq!(Unit::Us.format(5), "0.005us");
        assert_eq!(Unit::Us.format(0), "0.00us");
        assert_eq!(Unit::Ns.format(98), "98ns"); // whole nanoseconds are the resolution
        assert_eq!(Unit::Ns.format(7), "7ns");
        assert_eq!(Unit::Ms.format(123_456), "0.123ms");
    }
}
