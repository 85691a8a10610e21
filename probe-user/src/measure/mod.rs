//! One module per kind of measurement. A kind owns everything that must agree about it: the
//! per-CPU map its programs write and the programs' names, how two aggregates merge, its text
//! and JSON tables, the distribution the file outputs draw, and its Prometheus metrics. A
//! command picks a kind (`trace::run::<LatencyStats>`); the plan says only where a site is and
//! whether it is a return probe, so a site can never be given the program of another kind.
use crate::plan::Measured;
use crate::resolve::callers::Callers;
use crate::session::{Aggregate, KeyedMap, Programs};
use probe_ebpf::{Losses, FINE_BUCKETS, LOG2_BUCKETS};
use std::fmt;

pub mod breakdown;
pub mod counts;
#[cfg(test)]
pub mod fake;
pub mod inlined;
pub mod latency;
pub mod value;

/// A histogram ready for Prometheus' encoder: each bucket's own count (the encoder makes them
/// cumulative), ordered by upper bound, ending with `+Inf`.
#[derive(Debug, PartialEq)]
pub struct Histogram {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

/// A kind of measurement: the per-slot aggregate its programs keep, and all its views.
/// Its kernel side (map, programs, draining, merging) is `session::Aggregate`.
pub trait Measure: Aggregate + fmt::Debug {
    /// Names the return addresses a `--by caller` breakdown holds (nothing for other kinds).
    fn name_callers(&mut self, _callers: &mut Callers) {}

    /// What tables are sorted by, largest first: total time (latency) or count (values).
    fn weight(&self) -> i128;
    /// `--by stack`: each named stack's calls and sum, most calls first (nothing for other
    /// kinds).
    fn stacks(&self) -> Vec<StackRow> {
        Vec::new()
    }
    /// What a stack's pprof sum is: total nanoseconds (latency) or the values' sum (argdist).
    fn stack_sum(&self) -> i128 {
        0
    }
    /// The pprof sample type (name, unit) of `stack_sum`.
    const STACK_SUM: (&'static str, &'static str) = ("sum", "value");
    /// Calls recorded.
    fn calls(&self) -> u64;
    /// The text block: summary line and `@hist_log` table.
    fn text(&self, m: &Measured) -> String;
    /// One JSON document (a line) for the table; `kind` is "interval" or "final".
    fn json(&self, kind: &str, elapsed_s: f64, m: &Measured) -> String;

    /// The `@hist_log` buckets (latency: of durations in the display unit).
    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS];
    /// Latency's nanosecond buckets (16 per power of two); values have none.
    fn fine_ns(&self) -> Option<&[u64; FINE_BUCKETS]> {
        None
    }

    /// Name and help of the Prometheus histogram family. Names follow Prometheus conventions:
    /// base units (seconds), `_total` on counters (added by the encoder).
    const HISTOGRAM: (&'static str, &'static str);
    /// Name (without `_total`) and help of each counter family, in `counters()` order.
    const COUNTERS: &'static [(&'static str, &'static str)];
    fn histogram(&self) -> Histogram;
    fn counters(&self) -> Vec<u64>;
    /// The labels that tell this slot's series from the others of the same run.
    fn slot_labels(m: &Measured) -> Vec<(String, String)>;
    /// Calls dropped before they reached a table, per reason (`probe_ebpf::LOSS_REASON_NAMES`).
    fn losses(&self) -> &Losses;
    /// Kinds that count calls per key (`--count`): the counter family (name without `_total`,
    /// help, the key's label) ...
    const KEYED_COUNTER: Option<(&'static str, &'static str, &'static str)> = None;
    /// ... and every key's calls, most first.
    fn keyed_counts(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// `--by stack`: one stack's calls and their sum (nanoseconds, or values), for the stack outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackRow {
    /// The traced function's caller first, the outermost frame last.
    pub frames: Vec<String>,
    pub calls: u64,
    pub sum: i128,
}

/// One line per reason with calls: `warning: FUNC: N calls not counted: ...` for calls lost,
/// `note: ...` for returns of calls that began before tracing.
pub fn losses_text(function: &str, losses: &Losses) -> String {
    let mut out = String::new();
    for (reason, n) in losses.nonzero() {
        let plural = if n == 1 { "" } else { "s" };
        if reason.lost {
            out.push_str(&format!("warning: {function}: {n} call{plural} {}\n", reason.text));
        } else {
            // Unmatched returns, of calls that began before tracing; entries dropped for a
            // reason above return without a frame too.
            let or_dropped = if losses.lost() > 0 { ", or whose entry is counted above" } else { "" };
            out.push_str(&format!("note: {function}: {n} return{plural} {}{or_dropped}\n", reason.text));
        }
    }
    out
}

/// The JSON `losses` object: every reason with calls, by name (`{}` when none).
pub fn losses_json(losses: &Losses) -> serde_json::Value {
    losses.nonzero().map(|(reason, n)| (reason.name.to_string(), serde_json::Value::from(n))).collect()
}

/// Prometheus buckets: one per log2 bucket in `thresholds`, its `le` the bucket's highest value
/// divided by `per_unit` (integer values, so `v <= le` holds exactly for the values it counts).
/// Counts below the first threshold join the first bucket, counts above the last go to `+Inf`.
fn prometheus_buckets(
    log2: &[u64; LOG2_BUCKETS],
    thresholds: std::ops::RangeInclusive<usize>,
    per_unit: f64,
) -> Vec<(f64, u64)> {
    let (first, last) = (*thresholds.start(), *thresholds.end());
    let mut out: Vec<(f64, u64)> =
        thresholds.map(|i| (probe_ebpf::log2_bucket_range(i).1 as f64 / per_unit, log2[i])).collect();
    out[0].1 += log2[..first].iter().sum::<u64>();
    out.push((f64::INFINITY, log2[last + 1..].iter().sum()));
    out
}
