//! Prometheus metrics of the traced functions: one histogram per function with cumulative
//! `le` buckets taken from the kernel's log2 buckets, and the counters beside it. Encoding is
//! left to `prometheus-client`; each kind of measurement (measure/) says what it exposes.
use crate::measure::Measure;
use crate::plan::Measured;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Labels of every series of one run, per slot: the slot's own, then the binary and the pid
/// (`all` when every process running the binary is traced), then `extra` (`--container`'s id).
pub fn labels<T: Measure>(
    slots: &[Measured],
    binary: &str,
    pid: Option<i32>,
    extra: &[(String, String)],
) -> Vec<Vec<(String, String)>> {
    let pid = pid.map_or("all".to_string(), |p| p.to_string());
    slots
        .iter()
        .map(|m| {
            let mut l = T::slot_labels(m);
            l.push(("binary".into(), binary.to_string()));
            l.push(("pid".into(), pid.clone()));
            l.extend(extra.iter().cloned());
            l
        })
        .collect()
}

/// Encodes the run's totals at each scrape.
#[derive(Debug)]
pub struct Totals<T> {
    pub labels: Vec<Vec<(String, String)>>,
    pub values: Arc<Mutex<Vec<T>>>,
    /// Keyed counters (`--count`): the keys of each slot with a series of their own. A key
    /// joins when it is among the `top` most frequent, and keeps its series from then on, so
    /// every series only grows, as a counter must.
    pub exposed: Mutex<Vec<BTreeSet<String>>>,
    pub top: usize,
}

impl<T> Totals<T> {
    pub fn new(labels: Vec<Vec<(String, String)>>, values: Arc<Mutex<Vec<T>>>, top: usize) -> Totals<T> {
        let exposed = Mutex::new(vec![BTreeSet::new(); labels.len()]);
        Totals { labels, values, exposed, top }
    }
}

impl<T: Measure> Collector for Totals<T> {
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
        encode_losses(&mut encoder, &self.labels, &values)?;
        if let Some((name, help, key_label)) = T::KEYED_COUNTER {
            let mut exposed = self.exposed.lock().expect("no panic while holding the exposed keys");
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((labels, v), keys) in self.labels.iter().zip(values.iter()).zip(exposed.iter_mut()) {
                let counts = v.keyed_counts();
                keys.extend(counts.iter().take(self.top).map(|(k, _)| k.clone()));
                for (key, calls) in counts.iter().filter(|(k, _)| keys.contains(k)) {
                    let mut labels = labels.clone();
                    labels.push((key_label.to_string(), key.clone()));
                    family.encode_family(&labels)?.encode_counter::<NoLabelSet, u64, u64>(calls, None)?;
                }
            }
        }
        Ok(())
    }
}

/// Calls in no table, per slot and reason (`probe_ebpf::LOSS_REASON_NAMES`); a reason gets its
/// series once it has calls, so every series only grows.
fn encode_losses<T: Measure>(
    encoder: &mut DescriptorEncoder,
    labels: &[Vec<(String, String)>],
    values: &[T],
) -> Result<(), fmt::Error> {
    if values.iter().all(|v| v.losses().is_empty()) {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(LOSSES_COUNTER.0, LOSSES_COUNTER.1, None, MetricType::Counter)?;
    for (labels, v) in labels.iter().zip(values) {
        for (reason, calls) in v.losses().nonzero() {
            let mut labels = labels.clone();
            labels.push(("reason".into(), reason.name.into()));
            family.encode_family(&labels)?.encode_counter::<NoLabelSet, u64, u64>(&calls, None)?;
        }
    }
    Ok(())
}

/// Name (without `_total`) and help of the dropped calls' counter family.
const LOSSES_COUNTER: (&str, &str) = (
    "probe_calls_dropped",
    "Calls in no table, by reason; unmatched_returns are returns of calls that began before tracing.",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Aggregate;
    use probe_ebpf::{LatencyStats, ValueStats, LOG2_BUCKETS};
    use prometheus_client::registry::Registry;

    fn exposition<T: Measure>(values: Vec<T>, slots: &[Measured]) -> String {
        let mut registry = Registry::default();
        let labels = labels::<T>(slots, "/bin/app", Some(42), &[]);
        registry.register_collector(Box::new(Totals::new(labels, Arc::new(Mutex::new(values)), 20)));
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
        let m = Measured {
            function: "main.F".into(),
            what: "latency".into(),
            unit: None,
            top_values: 0,
            ..Default::default()
        };
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
        let m = Measured {
            function: "main.ToString".into(),
            what: "arg0".into(),
            unit: None,
            top_values: 0,
            ..Default::default()
        };
        let text = exposition(vec![s], &[m]);
        assert!(
            text.contains(
                r#"probe_value_bucket{function="main.ToString",measured="arg0",binary="/bin/app",pid="42",le="-256"} 2"#
            ),
            "{text}"
        );
    }

    #[test]
    fn a_container_s_id_labels_every_series() {
        let m = Measured { function: "main.F".into(), what: "latency".into(), ..Default::default() };
        let container = [("container".to_string(), "3f2a".to_string())];
        let labels = labels::<LatencyStats>(&[m], "/app/server", None, &container);
        let names: Vec<&str> = labels[0].iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["function", "binary", "pid", "container"]);
        assert_eq!(labels[0][3].1, "3f2a");
    }

    #[test]
    fn value_counts_expose_the_most_frequent_values_and_keep_their_series() {
        use crate::measure::counts::ValueCounts;
        let m = Measured {
            function: "malloc".into(),
            what: "arg0".into(),
            unit: None,
            top_values: 2,
            ..Default::default()
        };
        let labels = labels::<ValueCounts>(&[m], "/bin/app", None, &[]);
        let mut counts = ValueCounts::EMPTY;
        for (v, c) in [(16, 5), (24, 4), (32, 1)] {
            counts.add(v, c);
        }
        let values = Arc::new(Mutex::new(vec![counts]));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Totals::new(labels, values.clone(), 2)));
        let scrape = |registry: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::prometheus_text::encode(&mut text, registry).unwrap();
            text
        };
        let series = |v: &str| {
            format!(
                r#"probe_value_calls_total{{function="malloc",measured="arg0",binary="/bin/app",pid="all",value="{v}"}}"#
            )
        };
        let text = scrape(&registry);
        assert!(text.contains(&format!("{} 5\n", series("16"))), "{text}");
        assert!(text.contains(&format!("{} 4\n", series("24"))), "{text}");
        assert!(!text.contains(&series("32")), "{text}");
        // 32 overtakes 24: it gets a series, and 24 keeps its own.
        values.lock().unwrap()[0].add(32, 9);
        let text = scrape(&registry);
        assert!(text.contains(&format!("{} 10\n", series("32"))), "{text}");
        assert!(text.contains(&format!("{} 4\n", series("24"))), "{text}");
    }
}
