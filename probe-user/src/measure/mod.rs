//! One module per kind of measurement. A kind owns everything that must agree about it: the
//! per-CPU map its programs write and the programs' names, how two aggregates merge, its text
//! and JSON tables, the distribution the file outputs draw, and its Prometheus metrics. A
//! command picks a kind (`trace::run::<LatencyStats>`); the plan says only where a site is and
//! whether it is a return probe, so a site can never be given the program of another kind.
use crate::histogram::Unit;
use crate::plan::SiteKind;
use crate::session::KindMaps;
use crate::target::callers::Callers;
use anyhow::Result;
use probe_ebpf::{FINE_BUCKETS, LOG2_BUCKETS};
use std::fmt;

pub mod breakdown;
pub mod counts;
pub mod latency;
pub mod value;

/// What was measured at a traced function, for labels and JSON.
#[derive(Clone, Debug)]
pub struct Measured {
    pub function: String,
    /// "arg0", "arg1", ..., "ret" or "latency".
    pub what: String,
    /// Display unit of the table (latency only).
    pub unit: Option<Unit>,
    /// Rows of a table of exact values (`--count`): the most frequent, the rest summed.
    pub top_values: usize,
}

/// The eBPF side of a kind: its aggregate map and its two programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Programs {
    /// The banked per-CPU array of aggregates (`probe_ebpf::bank_index`), or the keyed per-CPU
    /// hash map (`probe_ebpf::SlotKey`).
    pub map: &'static str,
    /// Keyed kinds: the banked array of calls the full hash map could not take.
    pub lost: Option<&'static str>,
    /// At an instruction: entries, RET sites, after-prologue sites.
    pub uprobe: &'static str,
    /// On return (uretprobe; never on Go code).
    pub uretprobe: &'static str,
}

impl Programs {
    /// The program to attach at a site of this kind.
    pub fn for_site(&self, kind: SiteKind) -> &'static str {
        match kind {
            SiteKind::Uprobe => self.uprobe,
            SiteKind::Uretprobe => self.uretprobe,
        }
    }
}

/// A histogram ready for Prometheus' encoder: each bucket's own count (the encoder makes them
/// cumulative), ordered by upper bound, ending with `+Inf`.
#[derive(Debug, PartialEq)]
pub struct Histogram {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

/// A kind of measurement: the per-slot aggregate its programs keep, and all its views.
pub trait Measure: Clone + fmt::Debug + Send + Sync + 'static {
    const EMPTY: Self;
    const PROGRAMS: Programs;

    /// Takes bank `bank` of the kind's maps (no program writes it any more): one aggregate per
    /// slot, summed over the CPUs; the bank is left empty.
    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>>;

    fn merge(&mut self, other: &Self);
    /// Names the return addresses a `--by caller` breakdown holds (nothing for other kinds).
    fn name_callers(&mut self, _callers: &mut Callers) {}
    /// Nothing recorded (no value, no abandoned call).
    fn is_empty(&self) -> bool;

    /// What tables are sorted by, largest first: total time (latency) or count (values).
    fn weight(&self) -> i128;
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
    /// Kinds that count calls per key (`--count`): the counter family (name without `_total`,
    /// help, the key's label) ...
    const KEYED_COUNTER: Option<(&'static str, &'static str, &'static str)> = None;
    /// ... and every key's calls, most first.
    fn keyed_counts(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
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
