//! `argdist`'s kind: the values of an argument or return value, as SystemTap's `@hist_log`
//! with count, exact 128-bit sum, min and max.
use super::{
    losses_json, losses_text, prometheus_buckets, Aggregate, Histogram, KeyedMap, Measure, Measured, Programs,
};
use crate::render::{hist_log, hist_log_unsigned};
use crate::session::KindMaps;
use anyhow::Result;
use probe_ebpf::{
    log2_bucket_range_of, log2_buckets_in_order, Losses, ValueStats, LOG2_BUCKETS, MAP_VALUE_STATS, PROG_VALUE_UPROBE,
    PROG_VALUE_URETPROBE,
};
use serde::Serialize;

impl Aggregate for ValueStats {
    const EMPTY: Self = ValueStats::EMPTY;
    const PROGRAMS: Programs = Programs {
        map: MAP_VALUE_STATS,
        keyed: KeyedMap::No,
        uprobe: PROG_VALUE_UPROBE,
        exit: PROG_VALUE_UPROBE,
        uretprobe: PROG_VALUE_URETPROBE,
    };
    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>> {
        maps.take_array_bank(bank, slots)
    }
    fn merge(&mut self, other: &Self) {
        ValueStats::merge(self, other)
    }
    fn is_empty(&self) -> bool {
        self.count == 0 && self.unreadable == 0 && self.losses.is_empty()
    }
}

impl Measure for ValueStats {
    fn weight(&self) -> i128 {
        self.count as i128
    }
    fn stack_sum(&self) -> i128 {
        self.sum()
    }
    fn calls(&self) -> u64 {
        self.count
    }
    fn text(&self, m: &Measured) -> String {
        text_block(m, self)
    }
    fn json(&self, kind: &str, elapsed_s: f64, m: &Measured) -> String {
        serde_json::to_string(&json_table(kind, elapsed_s, m, self)).expect("JSON of plain data")
    }

    fn losses(&self) -> &Losses {
        &self.losses
    }

    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS] {
        &self.buckets
    }

    const HISTOGRAM: (&'static str, &'static str) =
        ("probe_value", "Values of a traced function's argument or return value.");
    const COUNTERS: &'static [(&'static str, &'static str)] =
        &[("probe_value_unreadable", "Hits whose value could not be read (stack slot not readable).")];

    /// Every signed log2 bucket has a threshold, so the set never changes during a run.
    fn histogram(&self) -> Histogram {
        value_histogram(&self.buckets, self.sum(), self.count, self.unsigned != 0)
    }
    fn counters(&self) -> Vec<u64> {
        vec![self.unreadable]
    }
    fn slot_labels(m: &Measured) -> Vec<(String, String)> {
        vec![("function".into(), m.function.clone()), ("measured".into(), m.what.clone())]
    }
}

/// Prometheus' histogram of values: a threshold per signed log2 bucket; unsigned 64-bit values
/// have one per bucket from 0 up, the last 2^64-1.
pub fn value_histogram(buckets: &[u64; LOG2_BUCKETS], sum: i128, count: u64, unsigned: bool) -> Histogram {
    if !unsigned {
        return Histogram { sum: sum as f64, count, buckets: prometheus_buckets(buckets, 0..=LOG2_BUCKETS - 1, 1.0) };
    }
    let mut out: Vec<(f64, u64)> =
        log2_buckets_in_order(true).map(|i| (log2_bucket_range_of(i, true).1 as f64, buckets[i])).collect();
    out.push((f64::INFINITY, 0));
    Histogram { sum: sum as f64, count, buckets: out }
}

/// `FUNC argN: min:-499 avg:8 max:497 count:1000` (avg truncated toward zero, like `@avg`).
pub fn summary_line(m: &Measured, s: &ValueStats) -> String {
    if s.count == 0 {
        return format!("{} {}: count:0", m.function, m.what);
    }
    let avg = s.sum() / s.count as i128;
    let (min, max) = s.min_max();
    format!("{} {}: min:{min} avg:{avg} max:{max} count:{}", m.function, m.what, s.count)
}

/// The text block for one table: summary, `@hist_log` table, and a note on unreadable values.
pub fn text_block(m: &Measured, s: &ValueStats) -> String {
    let mut out = summary_line(m, s);
    out.push('\n');
    if s.unreadable > 0 {
        out.push_str(&format!(
            "warning: {} hits of {} could not read {} (stack slot not readable)\n",
            s.unreadable, m.function, m.what
        ));
    }
    out.push_str(&losses_text(&m.function, &s.losses));
    out.push_str(&match s.unsigned != 0 {
        true => hist_log_unsigned(&s.buckets),
        false => hist_log(&s.buckets),
    });
    out
}

/// One JSON document per table. Field names are part of the CLI contract (README).
#[derive(Serialize)]
pub struct JsonTable<'a> {
    /// "interval" or "final".
    pub kind: &'a str,
    /// Seconds since tracing started, at the end of this table's span.
    pub elapsed_s: f64,
    pub function: &'a str,
    pub measured: &'a str,
    pub unit: &'a str,
    pub count: u64,
    /// Decimal string when it does not fit an i64 (it is a 128-bit sum).
    pub sum: serde_json::Value,
    /// As the values are: signed, or unsigned 64-bit (up to 2^64-1).
    pub min: Option<i128>,
    pub max: Option<i128>,
    pub unreadable: u64,
    /// Calls dropped before they reached the table, by reason (`{}` when none).
    pub losses: serde_json::Value,
    pub buckets: Vec<JsonBucket>,
}

#[derive(Serialize)]
pub struct JsonBucket {
    pub low: i128,
    pub high: i128,
    pub count: u64,
}

pub fn json_table<'a>(kind: &'a str, elapsed_s: f64, m: &'a Measured, s: &ValueStats) -> JsonTable<'a> {
    let sum = s.sum();
    JsonTable {
        kind,
        elapsed_s,
        function: &m.function,
        measured: &m.what,
        unit: "value",
        count: s.count,
        sum: match i64::try_from(sum) {
            Ok(v) => v.into(),
            Err(_) => sum.to_string().into(),
        },
        min: (s.count > 0).then_some(s.min_max().0),
        max: (s.count > 0).then_some(s.min_max().1),
        unreadable: s.unreadable,
        losses: losses_json(&s.losses),
        buckets: json_buckets(&s.buckets, s.unsigned != 0),
    }
}

/// The buckets with values, in value order.
pub fn json_buckets(buckets: &[u64; LOG2_BUCKETS], unsigned: bool) -> Vec<JsonBucket> {
    log2_buckets_in_order(unsigned)
        .filter(|&i| buckets[i] > 0)
        .map(|i| {
            let (low, high) = log2_bucket_range_of(i, unsigned);
            JsonBucket { low, high, count: buckets[i] }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_truncates_average_toward_zero() {
        let mut s = ValueStats::EMPTY;
        for v in -500..=499 {
            s.record(v);
        }
        let m = Measured {
            function: "main.ToString".into(),
            what: "arg0".into(),
            unit: None,
            top_values: 0,
            ..Default::default()
        };
        assert_eq!(summary_line(&m, &s), "main.ToString arg0: min:-500 avg:0 max:499 count:1000");
    }
}
