//! `latency`'s kind: how long calls take, with the `@hist_log` view in the display unit, exact
//! nanosecond min/avg/max, percentiles from the fine buckets, and what the probes' own
//! calibrated cost took out.
use super::value::json_table;
use super::{prometheus_buckets, Histogram, Measure, Measured, Programs};
use crate::histogram::{Percentiles, Unit};
use crate::render::hist_log_titled;
use crate::session::KindMaps;
use anyhow::Result;
use probe_ebpf::{
    fine_bucket_range, log2_bucket, LatencyStats, FINE_BUCKETS, LOG2_BUCKETS, MAP_LATENCY_STATS, PROG_LATENCY_UPROBE,
    PROG_LATENCY_URETPROBE, ZERO_BUCKET,
};

/// Highest log2 bucket of nanoseconds with its own Prometheus threshold: 2^41 ..= 2^42-1 ns, so
/// the last finite `le` is about 73 minutes. Longer calls count in `+Inf` (and `_count`,
/// `_sum`) only: 43 series per function instead of 65.
const LATENCY_TOP_BUCKET: usize = ZERO_BUCKET + 1 + 41;

impl Measure for LatencyStats {
    const EMPTY: Self = LatencyStats::EMPTY;
    const PROGRAMS: Programs =
        Programs { map: MAP_LATENCY_STATS, lost: None, uprobe: PROG_LATENCY_UPROBE, uretprobe: PROG_LATENCY_URETPROBE };

    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>> {
        maps.take_array_bank(bank, slots)
    }

    fn merge(&mut self, other: &Self) {
        LatencyStats::merge(self, other)
    }
    fn is_empty(&self) -> bool {
        self.in_unit.count == 0 && self.abandoned == 0 && self.too_deep == 0
    }

    fn weight(&self) -> i128 {
        // The exact total in ns (the display unit's sum truncates every call).
        self.sum_ns as i128
    }
    fn calls(&self) -> u64 {
        self.in_unit.count
    }
    fn text(&self, m: &Measured) -> String {
        let unit = m.unit.unwrap_or(Unit::Us);
        let v = &self.in_unit;
        let mut out = match self.sum_ns.checked_div(v.count) {
            None => format!("{}: count:0", m.function),
            Some(avg_ns) => {
                let p = Percentiles::of(self);
                format!(
                    "{}: min:{} avg:{} max:{} count:{} p50:{} p90:{} p99:{} p99.9:{}",
                    m.function,
                    unit.format(self.min_ns),
                    unit.format(avg_ns),
                    unit.format(self.max_ns),
                    v.count,
                    unit.format(p.p50),
                    unit.format(p.p90),
                    unit.format(p.p99),
                    unit.format(p.p999),
                )
            }
        };
        if self.abandoned > 0 {
            out.push_str(&format!(" abandoned:{}", self.abandoned));
        }
        if self.too_deep > 0 {
            out.push_str(&format!(" too_deep:{}", self.too_deep));
        }
        if v.count > 0 && self.subtracted_ns > 0 {
            let per_call = self.subtracted_ns / v.count;
            out.push_str(&format!(" (probe cost {} subtracted per call)", unit.format(per_call)));
        }
        out.push('\n');
        out.push_str(&hist_log_titled(&v.buckets, &format!("value ({})", unit.suffix())));
        out
    }

    fn json(&self, kind: &str, elapsed_s: f64, m: &Measured) -> String {
        let unit = m.unit.unwrap_or(Unit::Us);
        let mut table = serde_json::to_value(json_table(kind, elapsed_s, m, &self.in_unit)).expect("JSON");
        let p = (self.in_unit.count > 0).then(|| Percentiles::of(self));
        let obj = table.as_object_mut().expect("object");
        obj.remove("unreadable");
        obj.insert("unit".into(), unit.suffix().into());
        obj.insert("abandoned".into(), self.abandoned.into());
        obj.insert("too_deep".into(), self.too_deep.into());
        // What the probes' calibrated cost took out of these calls, in all (0 with --raw).
        obj.insert("subtracted_ns".into(), self.subtracted_ns.into());
        obj.insert(
            "percentiles".into(),
            serde_json::json!({
                "p50": p.as_ref().map(|p| unit.from_ns(p.p50)),
                "p90": p.as_ref().map(|p| unit.from_ns(p.p90)),
                "p99": p.as_ref().map(|p| unit.from_ns(p.p99)),
                "p99.9": p.as_ref().map(|p| unit.from_ns(p.p999)),
            }),
        );
        table.to_string()
    }

    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS] {
        &self.in_unit.buckets
    }
    fn fine_ns(&self) -> Option<&[u64; FINE_BUCKETS]> {
        Some(&self.fine)
    }

    const HISTOGRAM: (&'static str, &'static str) =
        ("probe_latency_seconds", "Time from entry to return of a traced function.");
    const COUNTERS: &'static [(&'static str, &'static str)] = &[
        ("probe_latency_abandoned", "Calls left without returning (panic, Goexit, longjmp); not in the histogram."),
        ("probe_latency_too_deep", "Calls not timed because recursion was deeper than probe follows."),
    ];

    /// From the fine nanosecond buckets (exact whatever `--unit` says), folded into log2
    /// buckets: a fine bucket never spans two powers of two.
    fn histogram(&self) -> Histogram {
        let mut log2 = [0u64; LOG2_BUCKETS];
        for (i, &count) in self.fine.iter().enumerate().filter(|(_, &c)| c > 0) {
            let (low, _) = fine_bucket_range(i);
            log2[log2_bucket(low.min(i64::MAX as u64) as i64)] += count;
        }
        Histogram {
            sum: self.sum_ns as f64 / 1e9,
            count: self.in_unit.count,
            buckets: prometheus_buckets(&log2, ZERO_BUCKET + 1..=LATENCY_TOP_BUCKET, 1e9),
        }
    }
    fn counters(&self) -> Vec<u64> {
        vec![self.abandoned, self.too_deep]
    }
    fn slot_labels(m: &Measured) -> Vec<(String, String)> {
        vec![("function".into(), m.function.clone())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Measure;

    #[test]
    fn latency_summary_has_three_significant_digits_and_the_table_its_unit() {
        let mut s = LatencyStats::EMPTY;
        for ns in [5_210, 5_480, 7_730, 1_564_000] {
            s.record(ns, 1_000);
        }
        let m = Measured { function: "f".into(), what: "latency".into(), unit: Some(Unit::Us), top_values: 0 };
        let text = s.text(&m);
        let mut lines = text.lines();
        let summary = lines.next().unwrap();
        assert!(summary.starts_with("f: min:5.21us avg:396us max:1564us count:4 p50:"), "{summary}");
        let header = lines.next().unwrap();
        assert!(header.starts_with("value (us) |---"), "{header}");
        assert_eq!(lines.next().unwrap(), "         1 |                                                   0");
        assert!(text.contains("         4 |@@@                                                3\n"), "{text}");
    }
}
