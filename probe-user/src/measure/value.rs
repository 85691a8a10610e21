//! `argdist`'s kind: the values of an argument or return value, as SystemTap's `@hist_log`
//! with count, exact 128-bit sum, min and max.
use super::{prometheus_buckets, Histogram, Measure, Measured, Programs};
use crate::render::hist_log;
use crate::session::KindMaps;
use anyhow::Result;
use probe_ebpf::{
    log2_bucket_range, ValueStats, LOG2_BUCKETS, MAP_VALUE_STATS, PROG_VALUE_UPROBE, PROG_VALUE_URETPROBE,
};
use serde::Serialize;

impl Measure for ValueStats {
    const EMPTY: Self = ValueStats::EMPTY;
    const PROGRAMS: Programs =
        Programs { map: MAP_VALUE_STATS, lost: None, uprobe: PROG_VALUE_UPROBE, uretprobe: PROG_VALUE_URETPROBE };

    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>> {
        maps.take_array_bank(bank, slots)
    }

    fn merge(&mut self, other: &Self) {
        ValueStats::merge(self, other)
    }
    fn is_empty(&self) -> bool {
        self.count == 0 && self.unreadable == 0
    }

    fn weight(&self) -> i128 {
        self.count as i128
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

    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS] {
        &self.buckets
    }

    const HISTOGRAM: (&'static str, &'static str) =
        ("probe_value", "Values of a traced function's argument or return value.");
    const COUNTERS: &'static [(&'static str, &'static str)] =
        &[("probe_value_unreadable", "Hits whose value could not be read (stack slot not readable).")];

    /// Every signed log2 bucket has a threshold, so the set never changes during a run.
    fn histogram(&self) -> Histogram {
        Histogram {
            sum: self.sum() as f64,
            count: self.count,
            buckets: prometheus_buckets(&self.buckets, 0..=LOG2_BUCKETS - 1, 1.0),
        }
    }
    fn counters(&self) -> Vec<u64> {
        vec![self.unreadable]
    }
    fn slot_labels(m: &Measured) -> Vec<(String, String)> {
        vec![("function".into(), m.function.clone()), ("measured".into(), m.what.clone())]
    }
}

/// `FUNC argN: min:-499 avg:8 max:497 count:1000` (avg truncated toward zero, like `@avg`).
pub fn summary_line(m: &Measured, s: &ValueStats) -> String {
    if s.count == 0 {
        return format!("{} {}: count:0", m.function, m.what);
    }
    let avg = s.sum() / s.count as i128;
    format!("{} {}: min:{} avg:{} max:{} count:{}", m.function, m.what, s.min, avg, s.max, s.count)
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
    out.push_str(&hist_log(&s.buckets));
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
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub unreadable: u64,
    pub buckets: Vec<JsonBucket>,
}

#[derive(Serialize)]
pub struct JsonBucket {
    pub low: i64,
    pub high: i64,
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
        min: (s.count > 0).then_some(s.min),
        max: (s.count > 0).then_some(s.max),
        unreadable: s.unreadable,
        buckets: s
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &count)| {
                let (low, high) = log2_bucket_range(i);
                JsonBucket { low, high, count }
            })
            .collect(),
    }
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
        let m = Measured { function: "main.ToString".into(), what: "arg0".into(), unit: None, top_values: 0 };
        assert_eq!(summary_line(&m, &s), "main.ToString arg0: min:-500 avg:0 max:499 count:1000");
    }
}
