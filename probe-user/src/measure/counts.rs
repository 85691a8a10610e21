//! `argdist --count`'s kind: how many calls saw each exact value (bpftrace's
//! `@[arg0] = count()`), from a keyed per-CPU hash map drained as exactly as the arrays. The
//! tables show the most frequent values and sum up the rest, so no call goes unaccounted.
use super::{prometheus_buckets, Histogram, Measure, Measured, Programs};
use crate::session::KindMaps;
use anyhow::Result;
use probe_ebpf::{
    log2_bucket, SlotKey, ValueStats, KEY_BYTES, KEY_TEXT, KEY_TEXT_TRUNCATED, KEY_UNREADABLE, LOG2_BUCKETS,
    MAP_KEYS_LOST, MAP_VALUE_COUNTS, PROG_COUNT_UPROBE, PROG_COUNT_URETPROBE,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// An exact value: an integer, or a string's bytes (the first `KEY_BYTES` of a longer one).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CountKey {
    Int(i64),
    Text { bytes: Vec<u8>, truncated: bool },
}

impl CountKey {
    fn of(key: &SlotKey) -> Option<CountKey> {
        match key.kind {
            KEY_TEXT | KEY_TEXT_TRUNCATED => {
                let bytes = key.bytes()[..(key.len as usize).min(KEY_BYTES)].to_vec();
                Some(CountKey::Text { bytes, truncated: key.kind == KEY_TEXT_TRUNCATED })
            }
            _ => key.as_integer().map(CountKey::Int),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            CountKey::Int(v) => (*v).into(),
            CountKey::Text { bytes, .. } => String::from_utf8_lossy(bytes).into(),
        }
    }
}

impl fmt::Display for CountKey {
    /// Integers as they are; strings quoted with Rust's escapes, `...` after a cut one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountKey::Int(v) => write!(f, "{v}"),
            CountKey::Text { bytes, truncated } => {
                write!(f, "{:?}{}", String::from_utf8_lossy(bytes), if *truncated { "..." } else { "" })
            }
        }
    }
}

/// Calls per exact value of one slot.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueCounts {
    pub counts: BTreeMap<CountKey, u64>,
    /// Hits whose value could not be read.
    pub unreadable: u64,
    /// Calls a full map could not count under their value (`--max-values`).
    pub lost: u64,
    /// The values' `@hist_log` buckets, kept in step with `counts` for the pictures.
    buckets: [u64; LOG2_BUCKETS],
}

impl ValueCounts {
    /// Every call: counted under its value, unreadable, or lost.
    pub fn calls(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.unreadable + self.lost
    }

    pub fn add(&mut self, value: i64, calls: u64) {
        self.add_key(CountKey::Int(value), calls);
    }

    fn add_key(&mut self, key: CountKey, calls: u64) {
        if let CountKey::Int(v) = key {
            self.buckets[log2_bucket(v)] += calls; // strings have no histogram
        }
        *self.counts.entry(key).or_insert(0) += calls;
    }

    /// The `top` most frequent values (ties: the smaller value first), and how many other
    /// values there were with how many calls.
    pub fn top(&self, top: usize) -> (Vec<(CountKey, u64)>, usize, u64) {
        let mut rows: Vec<(CountKey, u64)> = self.counts.iter().map(|(v, &c)| (v.clone(), c)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let rest = rows.split_off(top.min(rows.len()));
        (rows, rest.len(), rest.iter().map(|r| r.1).sum())
    }
}

impl Measure for ValueCounts {
    const EMPTY: Self = ValueCounts { counts: BTreeMap::new(), unreadable: 0, lost: 0, buckets: [0; LOG2_BUCKETS] };
    const PROGRAMS: Programs = Programs {
        map: MAP_VALUE_COUNTS,
        lost: Some(MAP_KEYS_LOST),
        uprobe: PROG_COUNT_UPROBE,
        uretprobe: PROG_COUNT_URETPROBE,
    };

    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>> {
        let drained = maps.take_keyed_bank::<u64>(bank, slots, |sum, cpu| *sum += cpu)?;
        Ok(drained
            .into_iter()
            .map(|slot| {
                let mut counts = ValueCounts { lost: slot.lost, ..ValueCounts::EMPTY };
                for (key, calls) in slot.keys {
                    match CountKey::of(&key) {
                        Some(k) => counts.add_key(k, calls),
                        None if key.kind == KEY_UNREADABLE => counts.unreadable += calls,
                        None => counts.lost += calls, // a key this build does not know
                    }
                }
                counts
            })
            .collect())
    }

    fn merge(&mut self, other: &Self) {
        for (v, &c) in &other.counts {
            self.add_key(v.clone(), c);
        }
        self.unreadable += other.unreadable;
        self.lost += other.lost;
    }
    fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.unreadable == 0 && self.lost == 0
    }

    fn weight(&self) -> i128 {
        self.calls() as i128
    }
    fn calls(&self) -> u64 {
        ValueCounts::calls(self)
    }

    /// `FUNC argN: count:229 values:37`, then a `value count` table of the most frequent.
    fn text(&self, m: &Measured) -> String {
        let mut out = format!("{} {}: count:{} values:{}\n", m.function, m.what, self.calls(), self.counts.len());
        let (rows, other_values, other_calls) = self.top(m.top_values);
        if !rows.is_empty() {
            let width = rows.iter().map(|r| r.0.to_string().chars().count()).max().unwrap_or(0).max("value".len());
            let count_width = rows.iter().map(|r| r.1.to_string().len()).max().unwrap_or(0).max("count".len());
            let strings = rows.iter().any(|r| matches!(r.0, CountKey::Text { .. }));
            match strings {
                true => out.push_str(&format!("{:<width$}  {:>count_width$}\n", "value", "count")),
                false => out.push_str(&format!("{:>width$}  {:>count_width$}\n", "value", "count")),
            }
            // Numbers right-aligned, strings left-aligned, as people read them.
            let strings = rows.iter().any(|r| matches!(r.0, CountKey::Text { .. }));
            for (v, c) in rows {
                let v = v.to_string();
                match strings {
                    true => out.push_str(&format!("{v:<width$}  {c:>count_width$}\n")),
                    false => out.push_str(&format!("{v:>width$}  {c:>count_width$}\n")),
                }
            }
        }
        if other_values > 0 {
            out.push_str(&format!(
                "({other_values} other value{}: {other_calls} calls; --top N shows more)\n",
                if other_values == 1 { "" } else { "s" }
            ));
        }
        if self.unreadable > 0 {
            out.push_str(&format!("warning: {} hits could not read {}\n", self.unreadable, m.what));
        }
        if self.lost > 0 {
            out.push_str(&format!(
                "warning: {} calls not counted by value: more distinct values than --max-values holds\n",
                self.lost
            ));
        }
        out.push('\n');
        out
    }

    fn json(&self, kind: &str, elapsed_s: f64, m: &Measured) -> String {
        let (rows, other_values, other_calls) = self.top(m.top_values);
        let table = JsonCounts {
            kind,
            elapsed_s,
            function: &m.function,
            measured: &m.what,
            unit: "value",
            count: self.calls(),
            distinct: self.counts.len(),
            values: rows
                .into_iter()
                .map(|(key, count)| JsonValueCount {
                    value: key.json(),
                    truncated: matches!(key, CountKey::Text { truncated: true, .. }),
                    count,
                })
                .collect(),
            other_values,
            other_count: other_calls,
            unreadable: self.unreadable,
            lost: self.lost,
        };
        serde_json::to_string(&table).expect("JSON of plain data")
    }

    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS] {
        &self.buckets
    }

    // The same families as the value histogram's (a scrape sees one `probe_value`), and one more.
    const HISTOGRAM: (&'static str, &'static str) = <ValueStats as Measure>::HISTOGRAM;
    const COUNTERS: &'static [(&'static str, &'static str)] = &[
        <ValueStats as Measure>::COUNTERS[0],
        ("probe_value_lost", "Calls not counted by value: more distinct values than --max-values holds."),
    ];

    fn histogram(&self) -> Histogram {
        let ints = self.counts.iter().filter_map(|(k, &c)| match k {
            CountKey::Int(v) => Some((*v, c)),
            CountKey::Text { .. } => None,
        });
        let (sum, count) = ints.fold((0i128, 0u64), |(s, n), (v, c)| (s + v as i128 * c as i128, n + c));
        Histogram { sum: sum as f64, count, buckets: prometheus_buckets(&self.buckets, 0..=LOG2_BUCKETS - 1, 1.0) }
    }
    fn counters(&self) -> Vec<u64> {
        vec![self.unreadable, self.lost]
    }
    fn slot_labels(m: &Measured) -> Vec<(String, String)> {
        vec![("function".into(), m.function.clone()), ("measured".into(), m.what.clone())]
    }

    const KEYED_COUNTER: Option<(&'static str, &'static str, &'static str)> =
        Some(("probe_value_calls", "Calls that saw each exact value (argdist --count; the most frequent).", "value"));
    fn keyed_counts(&self) -> Vec<(String, u64)> {
        let label = |k: &CountKey| match k {
            CountKey::Text { bytes, truncated } => {
                format!("{}{}", String::from_utf8_lossy(bytes), if *truncated { "..." } else { "" })
            }
            CountKey::Int(v) => v.to_string(),
        };
        self.top(usize::MAX).0.iter().map(|(k, c)| (label(k), *c)).collect()
    }
}

/// One JSON document per `--count` table. Field names are part of the CLI contract (README).
#[derive(Serialize)]
struct JsonCounts<'a> {
    kind: &'a str,
    elapsed_s: f64,
    function: &'a str,
    measured: &'a str,
    unit: &'a str,
    /// Every call: under a value, unreadable or lost.
    count: u64,
    /// Distinct values seen.
    distinct: usize,
    /// The most frequent values (`--top`), most frequent first.
    values: Vec<JsonValueCount>,
    other_values: usize,
    other_count: u64,
    unreadable: u64,
    lost: u64,
}

#[derive(Serialize)]
struct JsonValueCount {
    /// A number, or a string (invalid UTF-8 replaced).
    value: serde_json::Value,
    /// The string is the first 64 bytes of a longer one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(values: &[(i64, u64)]) -> ValueCounts {
        let mut c = ValueCounts::EMPTY;
        for &(v, n) in values {
            c.add(v, n);
        }
        c
    }

    #[test]
    fn top_values_by_count_then_value_and_the_rest_summed() {
        let c = counts(&[(24, 5), (16, 5), (8, 9), (1, 1), (2, 1)]);
        let int = CountKey::Int;
        assert_eq!(c.top(3), (vec![(int(8), 9), (int(16), 5), (int(24), 5)], 2, 2));
        assert_eq!(c.top(10).1, 0);
    }

    #[test]
    fn merging_adds_counts_and_buckets() {
        let mut a = counts(&[(16, 2), (-3, 1)]);
        a.merge(&counts(&[(16, 3), (17, 1)]));
        let int = CountKey::Int;
        assert_eq!(a.counts, BTreeMap::from([(int(-3), 1), (int(16), 5), (int(17), 1)]));
        assert_eq!(a.log2_buckets()[log2_bucket(16)], 6); // 16 and 17 share 16..=31
        assert_eq!(a.calls(), 7);
    }

    #[test]
    fn text_shows_the_top_rows_and_what_is_left() {
        let m = Measured { function: "malloc".into(), what: "arg0".into(), unit: None, top_values: 2 };
        let mut c = counts(&[(16, 200), (24, 200), (4096, 3)]);
        c.lost = 4;
        assert_eq!(
            c.text(&m),
            "malloc arg0: count:407 values:3\n\
             value  count\n   \
                16    200\n   \
                24    200\n\
             (1 other value: 3 calls; --top N shows more)\n\
             warning: 4 calls not counted by value: more distinct values than --max-values holds\n\n"
        );
    }
}
