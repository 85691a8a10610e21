//! Prometheus metrics of the traced functions: one histogram per function with cumulative
//! `le` buckets taken from the kernel's log2 buckets, and the counters beside it. Encoding is
//! left to `prometheus-client`; this module only says what each aggregate exposes.
use crate::render::Measured;
use probe_ebpf::{
    fine_bucket_range, log2_bucket, log2_bucket_range, LatencyStats, ValueStats, LOG2_BUCKETS, ZERO_BUCKET,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Highest log2 bucket of nanoseconds with its own latency threshold: 2^41 ..= 2^42-1 ns, so
/// the last finite `le` is about 73 minutes. Longer calls count in `+Inf` (and `_count`,
/// `_sum`) only: 43 series per function instead of 65.
const LATENCY_TOP_BUCKET: usize = ZERO_BUCKET + 1 + 41;

/// A histogram ready for the encoder: each bucket's own count (the encoder makes them
/// cumulative), ordered by upper bound, ending with `+Inf`.
#[derive(Debug, PartialEq)]
pub struct Histogram {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

/// What one per-slot aggregate exposes. Metric names follow Prometheus conventions: base units
/// (seconds), `_total` on counters (added by the encoder).
pub trait Exposed: Copy + fmt::Debug + Send + Sync + 'static {
    /// Name and help of the histogram family.
    const HISTOGRAM: (&'static str, &'static str);
    /// Name (without `_total`) and help of each counter family, in `counters()` order.
    const COUNTERS: &'static [(&'static str, &'static str)];
    fn histogram(&self) -> Histogram;
    fn counters(&self) -> Vec<u64>;
    /// The labels that tell this slot from the others of the same run.
    fn slot_labels(m: &Measured) -> Vec<(String, String)>;
}

impl Exposed for LatencyStats {
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
            count: self.value.count,
            buckets: buckets(&log2, ZERO_BUCKET + 1..=LATENCY_TOP_BUCKET, 1e9),
        }
    }

    fn counters(&self) -> Vec<u64> {
        vec![self.abandoned, self.overflow]
    }

    fn slot_labels(m: &Measured) -> Vec<(String, String)> {
        vec![("function".into(), m.function.clone())]
    }
}

impl Exposed for ValueStats {
    const HISTOGRAM: (&'static str, &'static str) =
        ("probe_value", "Values of a traced function's argument or return value.");
    const COUNTERS: &'static [(&'static str, &'static str)] =
        &[("probe_value_unreadable", "Hits whose value could not be read (stack slot not readable).")];

    /// Every signed log2 bucket has a threshold, so the set never changes during a run.
    fn histogram(&self) -> Histogram {
        Histogram {
            sum: self.sum() as f64,
            count: self.count,
            buckets: buckets(&self.buckets, 0..=LOG2_BUCKETS - 1, 1.0),
        }
    }

    fn counters(&self) -> Vec<u64> {
        vec![self.unreadable]
    }

    fn slot_labels(m: &Measured) -> Vec<(String, String)> {
        vec![("function".into(), m.function.clone()), ("measured".into(), m.what.clone())]
    }
}

/// One bucket per log2 bucket in `thresholds`, its `le` the bucket's highest value divided by
/// `per_unit` (integer values, so `v <= le` holds exactly for the values it counts). Counts below
/// the first threshold join the first bucket, counts above the last go to `+Inf`.
fn buckets(log2: &[u64; LOG2_BUCKETS], thresholds: std::ops::RangeInclusive<usize>, per_unit: f64) -> Vec<(f64, u64)> {
    let (first, last) = (*thresholds.start(), *thresholds.end());
    let mut out: Vec<(f64, u64)> = thresholds.map(|i| (log2_bucket_range(i).1 as f64 / per_unit, log2[i])).collect();
    out[0].1 += log2[..first].iter().sum::<u64>();
    out.push((f64::INFINITY, log2[last + 1..].iter().sum()));
    out
}

/// Labels of every series of one run, per slot: the slot's own, then the binary and the pid
/// (`all` when every process running the binary is traced).
pub fn labels<T: Exposed>(slots: &[Measured], binary: &str, pid: Option<i32>) -> Vec<Vec<(String, String)>> {
    let pid = pid.map_or("all".to_string(), |p| p.to_string());
    slots
        .iter()
        .map(|m| {
            let mut l = T::slot_labels(m);
            l.push(("binary".into(), binary.to_string()));
            l.push(("pid".into(), pid.clone()));
            l
        })
        .collect()
}

/// Encodes the run's totals at each scrape.
#[derive(Debug)]
pub struct Totals<T> {
    pub labels: Vec<Vec<(String, String)>>,
    pub values: Arc<Mutex<Vec<T>>>,
}

impl<T: Exposed> Collector for Totals<T> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // Held while encoding: the runtime has one thread, so this never waits.
        let values = self.values.lock().expect("no panic while holding the totals");
        let (name, help) = T::HISTOGRAM;
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, v) in self.labels.iter().zip(values.iter()) {
            let h = v.histogram();
            family.encode_family(labels)?.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
        let counters: Vec<Vec<u64>> = values.iter().map(|v| v.counters()).collect();
        for (i, (name, help)) in T::COUNTERS.iter().enumerate() {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, c) in self.labels.iter().zip(&counters) {
                family.encode_family(labels)?.encode_counter::<NoLabelSet, u64, u64>(&c[i], None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn exposition<T: Exposed>(values: Vec<T>, slots: &[Measured]) -> String {
        let mut registry = Registry::default();
        let labels = labels::<T>(slots, "/bin/app", Some(42));
        registry.register_collector(Box::new(Totals { labels, values: Arc::new(Mutex::new(values)) }));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    }

    #[test]
    fn latency_buckets_are_seconds_cumulative_and_exact() {
        let mut s = LatencyStats::EMPTY;
        for ns in [0, 1, 2, 3, 1_000, 1_023, 1_024, 2_000_000] {
            s.record(ns, 1_000);
        }
        s.abandoned = 3;
        let m = Measured { function: "main.F".into(), what: "latency".into(), unit: None };
        let text = exposition(vec![s], &[m]);
        let labels = r#"function="main.F",binary="/bin/app",pid="42""#;
        assert_eq!(line(&text, "probe_latency_seconds_count{"), format!("probe_latency_seconds_count{{{labels}}} 8"));
        assert_eq!(
            line(&text, "probe_latency_seconds_sum{"),
            format!("probe_latency_seconds_sum{{{labels}}} 0.002003053")
        );
        // 0 and 1 ns are <= 1 ns; 2 and 3 <= 3 ns; 1000 and 1023 <= 1023 ns; 1024 <= 2047 ns.
        for (le, cumulative) in
            [("1e-09", 2), ("3e-09", 4), ("1.023e-06", 6), ("2.047e-06", 7), ("0.002097151", 8), ("+Inf", 8)]
        {
            let want = format!("probe_latency_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            assert!(text.lines().any(|l| l == want), "no `{want}` in\n{text}");
        }
        assert_eq!(text.matches("probe_latency_seconds_bucket{").count(), 43);
        assert!(text.contains("# TYPE probe_latency_abandoned_total counter\n"), "{text}");
        assert!(text.contains(&format!("probe_latency_abandoned_total{{{labels}}} 3\n")), "{text}");
        assert!(text.contains(&format!("probe_latency_too_deep_total{{{labels}}} 0\n")), "{text}");
    }

    #[test]
    fn calls_longer_than_the_last_threshold_count_in_inf_only() {
        let mut s = LatencyStats::EMPTY;
        s.record(1 << 42, 1);
        let h = s.histogram();
        assert_eq!(h.buckets.len(), 43);
        assert_eq!(h.buckets[41], (4398046511103e-9, 0));
        assert_eq!(h.buckets[42], (f64::INFINITY, 1));
    }

    #[test]
    fn signed_values_have_monotonic_thresholds() {
        let mut s = ValueStats::EMPTY;
        for v in [-300, -1, 0, 5, 5, i64::MIN] {
            s.record(v);
        }
        let h = s.histogram();
        assert_eq!(h.count, 6);
        assert_eq!(h.buckets.len(), LOG2_BUCKETS + 1);
        assert!(h.buckets.windows(2).all(|w| w[0].0 < w[1].0), "{:?}", h.buckets);
        let count_at = |le: f64| h.buckets.iter().find(|b| b.0 == le).unwrap().1;
        assert_eq!(count_at(i64::MIN as f64), 1);
        assert_eq!(count_at(-256.0), 1); // -511 ..= -256
        assert_eq!(count_at(-1.0), 1);
        assert_eq!(count_at(0.0), 1);
        assert_eq!(count_at(7.0), 2); // 4 ..= 7
        let m = Measured { function: "main.ToString".into(), what: "arg0".into(), unit: None };
        let text = exposition(vec![s], &[m]);
        assert!(
            text.contains(
                r#"probe_value_bucket{function="main.ToString",measured="arg0",binary="/bin/app",pid="42",le="-256"} 2"#
            ),
            "{text}"
        );
    }
}
