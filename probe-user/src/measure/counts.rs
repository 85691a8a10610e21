//! `argdist --count`'s kind: how many calls saw each exact value (bpftrace's
//! `@[arg0] = count()`), from a keyed per-CPU hash map drained as exactly as the arrays. The
//! tables show the most frequent values and sum up the rest, so no call goes unaccounted.
use super::value::value_histogram;
use super::{losses_json, losses_text, Aggregate, Histogram, KeyedMap, Measure, Measured, Programs};
use crate::session::KindMaps;
use anyhow::Result;
use probe_ebpf::{
    log2_bucket, log2_bucket_unsigned, Losses, SlotKey, ValueStats, KEY_BYTES, KEY_TEXT, KEY_TEXT_TRUNCATED,
    KEY_UNREADABLE, KEY_UNSIGNED, LOG2_BUCKETS, LOSS_KEYS_FULL, MAP_VALUE_COUNTS, PROG_COUNT_UPROBE,
    PROG_COUNT_URETPROBE,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// An exact value: an integer (an unsigned 64-bit one apart), or a string's bytes (the first
/// `KEY_BYTES` of a longer one).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CountKey {
    Int(i64),
    Uint(u64),
    Text { bytes: Vec<u8>, truncated: bool },
}

impl CountKey {
    fn of(key: &SlotKey) -> Option<CountKey> {
        match key.kind {
            KEY_TEXT | KEY_TEXT_TRUNCATED => {
                let bytes = key.bytes()[..(key.len as usize).min(KEY_BYTES)].to_vec();
                Some(CountKey::Text { bytes, truncated: key.kind == KEY_TEXT_TRUNCATED })
            }
            KEY_UNSIGNED => Some(CountKey::Uint(key.words[0])),
            _ => key.as_integer().map(CountKey::Int),
        }
    }

    /// A number, or a string's text (`escaped`: only when its bytes are not UTF-8).
    pub fn json(&self) -> serde_json::Value {
        match self {
            CountKey::Int(v) => (*v).into(),
            CountKey::Uint(v) => (*v).into(),
            CountKey::Text { bytes, .. } => match std::str::from_utf8(bytes) {
                Ok(text) => text.into(),
                Err(_) => escaped(bytes).into(),
            },
        }
    }

    /// The Prometheus label: a number, or a string as it is with its backslashes doubled and
    /// `\xNN` for each byte that is not UTF-8, so that two strings are never one series (the
    /// encoder escapes the rest); `...` after a cut one.
    fn label(&self) -> String {
        match self {
            CountKey::Text { bytes, truncated } => {
                format!("{}{}", distinct(bytes), if *truncated { "..." } else { "" })
            }
            CountKey::Int(v) => v.to_string(),
            CountKey::Uint(v) => v.to_string(),
        }
    }
}

/// A string's bytes as text that tells every string from every other: UTF-8 as it is, with
/// Rust's escapes for quotes, backslashes and control characters, and `\xNN` for each byte that
/// is not UTF-8.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().chars().flat_map(char::escape_debug));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A string's bytes as text that tells every string from every other with the fewest escapes:
/// UTF-8 as it is with its backslashes doubled, and `\xNN` for each byte that is not UTF-8.
pub fn distinct(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        chunk.invalid().iter().for_each(|b| out.push_str(&format!("\\x{b:02x}")));
    }
    out
}

impl fmt::Display for CountKey {
    /// Integers as they are; strings quoted and `escaped`, `...` after a cut one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountKey::Int(v) => write!(f, "{v}"),
            CountKey::Uint(v) => write!(f, "{v}"),
            CountKey::Text { bytes, truncated } => {
                write!(f, "\"{}\"{}", escaped(bytes), if *truncated { "..." } else { "" })
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
    /// Calls dropped before they were counted under their value, per reason (`keys_full`: more
    /// distinct values than `--max-values`).
    pub losses: Losses,
    /// The values' `@hist_log` buckets, kept in step with `counts` for the pictures.
    buckets: [u64; LOG2_BUCKETS],
}

impl ValueCounts {
    /// Every call: counted under its value, unreadable, or lost.
    pub fn calls(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.unreadable + self.losses.lost()
    }

    pub fn add(&mut self, value: i64, calls: u64) {
        self.add_key(CountKey::Int(value), calls);
    }

    fn add_key(&mut self, key: CountKey, calls: u64) {
        // Strings have no histogram.
        match key {
            CountKey::Int(v) => self.buckets[log2_bucket(v)] += calls,
            CountKey::Uint(v) => self.buckets[log2_bucket_unsigned(v)] += calls,
            CountKey::Text { .. } => {}
        }
        *self.counts.entry(key).or_insert(0) += calls;
    }

    /// Whether the values are unsigned 64-bit integers (bucket 0 then holds those from 2^63).
    fn unsigned(&self) -> bool {
        self.counts.keys().any(|k| matches!(k, CountKey::Uint(_)))
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

impl Aggregate for ValueCounts {
    const EMPTY: Self =
        ValueCounts { counts: BTreeMap::new(), unreadable: 0, losses: Losses::EMPTY, buckets: [0; LOG2_BUCKETS] };
    const PROGRAMS: Programs = Programs {
        map: MAP_VALUE_COUNTS,
        keyed: KeyedMap::Yes,
        uprobe: PROG_COUNT_UPROBE,
        exit: PROG_COUNT_UPROBE,
        uretprobe: PROG_COUNT_URETPROBE,
    };
    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>> {
        let drained = maps.take_keyed_bank(bank, slots, 0u64, 0u64, |sum, cpu: &u64| *sum += cpu)?;
        Ok(drained
            .into_iter()
            .map(|slot| {
                let mut counts = ValueCounts { losses: slot.losses, ..ValueCounts::EMPTY };
                for (key, calls) in slot.keys {
                    match CountKey::of(&key) {
                        Some(k) => counts.add_key(k, calls),
                        None if key.kind == KEY_UNREADABLE => counts.unreadable += calls,
                        // A key this build does not know: never made by its own programs.
                        None => counts.losses.add(LOSS_KEYS_FULL, calls),
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
        self.losses.merge(&other.losses);
    }
    fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.unreadable == 0 && self.losses.is_empty()
    }
}

impl Measure for ValueCounts {
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
        out.push_str(&losses_text(&m.function, &self.losses));
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
                    utf8: match &key {
                        CountKey::Text { bytes, .. } => std::str::from_utf8(bytes).is_err().then_some(false),
                        _ => None,
                    },
                    truncated: matches!(key, CountKey::Text { truncated: true, .. }),
                    count,
                })
                .collect(),
            other_values,
            other_count: other_calls,
            unreadable: self.unreadable,
            lost: self.losses.lost(),
            losses: losses_json(&self.losses),
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
            CountKey::Int(v) => Some((*v as i128, c)),
            CountKey::Uint(v) => Some((*v as i128, c)),
            CountKey::Text { .. } => None,
        });
        let (sum, count) = ints.fold((0i128, 0u64), |(s, n), (v, c)| (s + v * c as i128, n + c));
        value_histogram(&self.buckets, sum, count, self.unsigned())
    }
    fn counters(&self) -> Vec<u64> {
        vec![self.unreadable, self.losses.lost()]
    }
    fn losses(&self) -> &Losses {
        &self.losses
    }
    fn slot_labels(m: &Measured) -> Vec<(String, String)> {
        vec![("function".into(), m.function.clone()), ("measured".into(), m.what.clone())]
    }

    const KEYED_COUNTER: Option<(&'static str, &'static str, &'static str)> =
        Some(("probe_value_calls", "Calls that saw each exact value (argdist --count; the most frequent).", "value"));
    fn keyed_counts(&self) -> Vec<(String, u64)> {
        self.top(usize::MAX).0.iter().map(|(k, c)| (k.label(), *c)).collect()
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
    /// Calls dropped before they were counted under a value, in all ...
    lost: u64,
    /// ... and per reason.
    losses: serde_json::Value,
}

#[derive(Serialize)]
struct JsonValueCount {
    /// A number, or a string: as it is when UTF-8, else `escaped` (and `utf8: false`).
    value: serde_json::Value,
    /// Present (false) when the string's bytes are not UTF-8: `value` is then escaped.
    #[serde(skip_serializing_if = "Option::is_none")]
    utf8: Option<bool>,
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
    fn strings_that_are_not_utf8_are_escaped_and_distinct() {
        let text = |bytes: &[u8]| CountKey::Text { bytes: bytes.to_vec(), truncated: false };
        let (ff, fe) = (text(b"\xff"), text(b"\xfe"));
        assert_eq!((ff.to_string(), fe.to_string()), (r#""\xff""#.to_string(), r#""\xfe""#.to_string()));
        assert_eq!((ff.json(), fe.json()), (r"\xff".into(), r"\xfe".into()));
        assert_eq!((ff.label(), fe.label()), (r"\xff".to_string(), r"\xfe".to_string()));
        // Valid UTF-8 is left alone in JSON (JSON escapes it), escaped in text, and in labels
        // only its backslashes (Prometheus' encoder escapes quotes and the backslashes again).
        let quoted = text("é \"\\".as_bytes());
        assert_eq!(quoted.json(), "é \"\\");
        assert_eq!(quoted.to_string(), r#""é \"\\""#);
        assert_eq!(quoted.label(), r#"é "\\"#);
        // Text that looks like an escape is told from the byte: its backslash is escaped.
        assert_ne!(text(br"\xff").label(), ff.label());
        assert_eq!(escaped(b"a\xffb\n"), r"a\xffb\n");
    }

    #[test]
    fn unsigned_values_are_numbers_up_to_2_pow_64() {
        let mut c = ValueCounts::EMPTY;
        c.add_key(CountKey::Uint(u64::MAX), 2);
        c.add_key(CountKey::Uint(7), 1);
        assert_eq!(c.top(1).0, vec![(CountKey::Uint(u64::MAX), 2)]);
        assert_eq!(CountKey::Uint(u64::MAX).json(), serde_json::json!(18446744073709551615u64));
        assert_eq!(c.histogram().buckets.last().unwrap(), &(f64::INFINITY, 0));
        assert_eq!(c.histogram().count, 3);
    }

    #[test]
    fn text_shows_the_top_rows_and_what_is_left() {
        let m = Measured {
            function: "malloc".into(),
            what: "arg0".into(),
            unit: None,
            top_values: 2,
            ..Default::default()
        };
        let mut c = counts(&[(16, 200), (24, 200), (4096, 3)]);
        c.losses.add(LOSS_KEYS_FULL, 4);
        assert_eq!(
            c.text(&m),
            "malloc arg0: count:407 values:3\n\
             value  count\n   \
                16    200\n   \
                24    200\n\
             (1 other value: 3 calls; --top N shows more)\n\
             warning: malloc: 4 calls not counted under their key: more distinct keys than the map holds \
             (--count: --max-values)\n\n"
        );
    }
}
