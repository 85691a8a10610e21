//! A kind of measurement for unit tests: each slot counts calls and shows them as
//! `FUNCTION calls: N`, so what feeds and orders the tables is checked without a kernel.
use super::{Histogram, Measure};
use crate::plan::Measured;
use crate::session::{Aggregate, KeyedMap, KindMaps, Programs};
use anyhow::{bail, Result};
use probe_ebpf::{Losses, LOG2_BUCKETS};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls(pub u64);

static NO_BUCKETS: [u64; LOG2_BUCKETS] = [0; LOG2_BUCKETS];
static NO_LOSSES: Losses = Losses::EMPTY;

impl Aggregate for Calls {
    const EMPTY: Self = Calls(0);
    const PROGRAMS: Programs =
        Programs { map: "FAKE", keyed: KeyedMap::No, uprobe: "fake", exit: "fake", uretprobe: "fake_ret" };
    fn take_bank(_maps: &mut KindMaps, _bank: u32, _slots: u32) -> Result<Vec<Self>> {
        bail!("the test kind has no map")
    }
    fn merge(&mut self, other: &Self) {
        self.0 += other.0;
    }
    fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

impl Measure for Calls {
    fn weight(&self) -> i128 {
        self.0 as i128
    }
    fn calls(&self) -> u64 {
        self.0
    }
    fn text(&self, m: &Measured) -> String {
        format!("{} calls: {}\n", m.function, self.0)
    }
    fn json(&self, kind: &str, _elapsed_s: f64, m: &Measured) -> String {
        format!(r#"{{"type":"{kind}","function":"{}","calls":{}}}"#, m.function, self.0)
    }
    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS] {
        &NO_BUCKETS
    }
    const HISTOGRAM: (&'static str, &'static str) = ("test_calls", "calls");
    const COUNTERS: &'static [(&'static str, &'static str)] = &[];
    fn histogram(&self) -> Histogram {
        Histogram { sum: self.0 as f64, count: self.0, buckets: vec![(f64::INFINITY, self.0)] }
    }
    fn counters(&self) -> Vec<u64> {
        Vec::new()
    }
    fn slot_labels(m: &Measured) -> Vec<(String, String)> {
        vec![("function".into(), m.function.clone())]
    }
    fn losses(&self) -> &Losses {
        &NO_LOSSES
    }
}

/// One label per function name, in slot order.
pub fn slots(names: &[&str]) -> Vec<Measured> {
    names.iter().map(|n| Measured { function: n.to_string(), ..Default::default() }).collect()
}

/// Calls per slot.
pub fn calls(counts: &[u64]) -> Vec<Calls> {
    counts.iter().map(|&n| Calls(n)).collect()
}
