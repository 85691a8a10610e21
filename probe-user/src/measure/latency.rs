//! `latency`'s kind: how long calls take, with the `@hist_log` view in the display unit, exact
//! nanosecond min/avg/max, percentiles from the fine buckets, and what the probes' own
//! calibrated cost took out.
use super::value::json_table;
use super::{
    losses_json, losses_text, prometheus_buckets, Aggregate, Histogram, KeyedMap, Measure, Measured, Programs,
};
use crate::histogram::Percentiles;
use crate::render::hist_log_titled;
use crate::session::KindMaps;
use crate::shared::Unit;
use anyhow::Result;
use probe_ebpf::{
    fine_bucket_range, log2_bucket, LatencyStats, Losses, FINE_BUCKETS, LOG2_BUCKETS, MAP_LATENCY_STATS,
    PROG_LATENCY_EXIT, PROG_LATENCY_UPROBE, PROG_LATENCY_URETPROBE, ZERO_BUCKET,
};

/// Highest log2 bucket of nanoseconds with its own Prometheus threshold: 2^41 ..= 2^42-1 ns, so
/// the last finite `le` is about 73 minutes. Longer calls count in `+Inf` (and `_count`,
/// `_sum`) only: 43 series per function instead of 65.
const LATENCY_TOP_BUCKET: usize = ZERO_BUCKET + 1 + 41;

/// The resolution of these calls' corrected durations (see `Resolution::of_calls`).
trait Resolved {
    fn resolution_ns(&self, m: &Measured) -> u64;
}

impl Resolved for LatencyStats {
    fn resolution_ns(&self, m: &Measured) -> u64 {
        let per_call = self.subtracted_ns.checked_div(self.in_unit.count).unwrap_or(0);
        m.resolution.of_calls(per_call)
    }
}

impl Aggregate for LatencyStats {
    const EMPTY: Self = LatencyStats::EMPTY;
    const PROGRAMS: Programs = Programs {
        map: MAP_LATENCY_STATS,
        keyed: KeyedMap::No,
        uprobe: PROG_LATENCY_UPROBE,
        exit: PROG_LATENCY_EXIT,
        uretprobe: PROG_LATENCY_URETPROBE,
    };
    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>> {
        maps.take_array_bank(bank, slots)
    }
    fn merge(&mut self, other: &Self) {
        LatencyStats::merge(self, other)
    }
    fn is_empty(&self) -> bool {
        self.in_unit.count == 0 && self.abandoned == 0 && self.too_deep == 0 && self.losses.is_empty()
    }
}

impl Measure for LatencyStats {
    fn weight(&self) -> i128 {
        // The exact total in ns (the display unit's sum truncates every call).
        self.sum_ns as i128
    }
    fn stack_sum(&self) -> i128 {
        self.sum_ns as i128
    }
    const STACK_SUM: (&'static str, &'static str) = ("time", "nanoseconds");
    fn calls(&self) -> u64 {
        self.in_unit.count
    }
    fn text(&self, m: &Measured) -> String {
        let unit = m.unit.unwrap_or(Unit::Us);
        let v = &self.in_unit;
        // No figure finer than the probes' cost can be told: see Resolution.
        let resolution = self.resolution_ns(m);
        let format = |ns: u64| unit.format_within(ns, resolution);
        let mut out = match self.sum_ns.checked_div(v.count) {
            None => format!("{}: count:0", m.function),
            Some(avg_ns) => {
                let p = Percentiles::of(self);
                format!(
                    "{}: min:{} avg:{} max:{} count:{} p50:{} p90:{} p99:{} p99.9:{}",
                    m.function,
                    format(self.min_ns),
                    format(avg_ns),
                    format(self.max_ns),
                    v.count,
                    format(p.p50),
                    format(p.p90),
                    format(p.p99),
                    format(p.p999),
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
            // Per call of this function: its own probes' cost, and that of every traced call
            // made inside it (so a caller of traced functions has more taken out).
            let per_call = self.subtracted_ns / v.count;
            out.push_str(&format!(
                " (probe cost {} subtracted per call, traced callees' probes included, resolution {})",
                unit.format(per_call),
                unit.format(resolution)
            ));
        }
        out.push('\n');
        out.push_str(&losses_text(&m.function, &self.losses));
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
        // From the exact nanoseconds, whatever the unit: `in_unit` truncates every call to the
        // unit before summing (a 0.859us mean read as 0.333us), as `@hist_log`'s buckets must.
        let called = self.in_unit.count > 0;
        obj.insert("sum".into(), in_unit_exactly(unit, self.sum_ns));
        obj.insert("min".into(), if called { in_unit_exactly(unit, self.min_ns) } else { serde_json::Value::Null });
        obj.insert("max".into(), if called { in_unit_exactly(unit, self.max_ns) } else { serde_json::Value::Null });
        obj.insert("sum_ns".into(), self.sum_ns.into());
        obj.insert("min_ns".into(), called.then_some(self.min_ns).into());
        obj.insert("max_ns".into(), called.then_some(self.max_ns).into());
        obj.insert("abandoned".into(), self.abandoned.into());
        obj.insert("too_deep".into(), self.too_deep.into());
        obj.insert("losses".into(), losses_json(&self.losses));
        // What the probes' calibrated cost took out of these calls, in all (0 with --raw), and
        // how finely their corrected durations can be told (0: nothing calibrated).
        obj.insert("subtracted_ns".into(), self.subtracted_ns.into());
        obj.insert("resolution_ns".into(), self.resolution_ns(m).into());
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

    fn losses(&self) -> &Losses {
        &self.losses
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

/// `ns` nanoseconds in `unit` as a JSON number, without losing the fraction: an integer in
/// ns, else `ns / 1000` or `ns / 1000000` (0.859 for 859 ns in us).
fn in_unit_exactly(unit: Unit, ns: u64) -> serde_json::Value {
    match unit {
        Unit::Ns => ns.into(),
        _ => unit.from_ns(ns).into(),
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
        let m = Measured {
            function: "f".into(),
            what: "latency".into(),
            unit: Some(Unit::Us),
            top_values: 0,
            ..Default::default()
        };
        let text = s.text(&m);
        let mut lines = text.lines();
        let summary = lines.next().unwrap();
        assert!(summary.starts_with("f: min:5.21us avg:396us max:1564us count:4 p50:"), "{summary}");
        let header = lines.next().unwrap();
        assert!(header.starts_with("value (us) |---"), "{header}");
        assert_eq!(lines.next().unwrap(), "         1 |                                                   0");
        assert!(text.contains("         4 |@@@                                                3\n"), "{text}");
    }

    /// Calls shorter than the unit still add up: the sum, min and max come from nanoseconds.
    #[test]
    fn json_sums_are_exact_in_every_unit() {
        let mut s = LatencyStats::EMPTY;
        for ns in [247, 859, 1_471] {
            s.record(ns, 1_000);
        }
        let m = Measured {
            function: "f".into(),
            what: "latency".into(),
            unit: Some(Unit::Us),
            top_values: 0,
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::from_str(&s.json("final", 1.0, &m)).unwrap();
        assert_eq!(
            (json["sum"].as_f64(), json["min"].as_f64(), json["max"].as_f64()),
            (Some(2.577), Some(0.247), Some(1.471))
        );
        assert_eq!(
            (json["sum_ns"].as_u64(), json["min_ns"].as_u64(), json["max_ns"].as_u64()),
            (Some(2577), Some(247), Some(1471))
        );
        let m = Measured { unit: Some(Unit::Ns), ..m };
        let json: serde_json::Value = serde_json::from_str(&s.json("final", 1.0, &m)).unwrap();
        assert_eq!(
            (json["sum"].as_u64(), json["min"].as_u64(), json["max"].as_u64()),
            (Some(2577), Some(247), Some(1471))
        );
        let empty: serde_json::Value = serde_json::from_str(&LatencyStats::EMPTY.json("final", 1.0, &m)).unwrap();
        assert!(empty["min"].is_null() && empty["min_ns"].is_null() && empty["sum"] == 0, "{empty}");
    }
}
