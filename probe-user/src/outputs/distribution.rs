//! What the file outputs read from a slot's aggregate, for `argdist` values and latencies alike.
use probe_ebpf::{LatencyStats, ValueStats, FINE_BUCKETS, LOG2_BUCKETS};

pub trait Distribution {
    /// The `@hist_log` buckets (latency: of durations in the display unit).
    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS];
    /// Latency's nanosecond buckets (16 per power of two); `None` for argdist values.
    fn fine_ns(&self) -> Option<&[u64; FINE_BUCKETS]>;
}

impl Distribution for ValueStats {
    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS] {
        &self.buckets
    }
    fn fine_ns(&self) -> Option<&[u64; FINE_BUCKETS]> {
        None
    }
}

impl Distribution for LatencyStats {
    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS] {
        &self.value.buckets
    }
    fn fine_ns(&self) -> Option<&[u64; FINE_BUCKETS]> {
        Some(&self.fine)
    }
}
