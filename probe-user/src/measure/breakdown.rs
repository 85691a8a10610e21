//! `--by pid|tid|comm`: one aggregate of the underlying kind (values or latency) per process,
//! thread or thread name, from a keyed per-CPU hash map drained with the two-bank epoch. The
//! text shows the heaviest keys' tables; JSON has one object per key, with a `by` field.
use super::{losses_json, losses_text, Aggregate, Histogram, KeyedMap, Measure, Measured, Programs, StackRow};
use crate::resolve::callers::Callers;
use crate::session::KindMaps;
use anyhow::Result;
use probe_ebpf::{
    LatencyStats, LatencySummary, Losses, SlotKey, ValueStats, ValueSummary, FINE_BUCKETS, KEY_CALLER, KEY_PID,
    KEY_STACK, KEY_TID, LOG2_BUCKETS, MAP_BUCKETS_BY, MAP_LATENCY_STATS_BY, MAP_VALUE_STATS_BY, PROG_LATENCY_BY_EXIT,
    PROG_LATENCY_BY_UPROBE, PROG_LATENCY_BY_URETPROBE, PROG_VALUE_BY_UPROBE, PROG_VALUE_BY_URETPROBE, STACK_TRUNCATED,
};
use std::collections::BTreeMap;
use std::fmt;

/// One key of a breakdown, as shown.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ByKey {
    Pid(u32),
    Tid(u32),
    Comm(String),
    /// A return address in a process, as the kernel saw it; named by `name_callers`.
    ReturnAddress {
        pid: u32,
        addr: u64,
    },
    Caller(String),
    /// `--by stack`: the return addresses of a stack in a process (the caller first), as the
    /// kernel walked them; named by `name_callers`. `truncated`: deeper than the walk goes.
    Frames {
        pid: u32,
        addrs: Vec<u64>,
        truncated: bool,
    },
    /// A named stack: its functions, the traced function's caller first (inlined frames
    /// expanded).
    Stack(Vec<String>),
}

impl ByKey {
    fn of(key: &SlotKey) -> ByKey {
        match key.kind {
            KEY_PID => ByKey::Pid(key.words[0] as u32),
            KEY_TID => ByKey::Tid(key.words[0] as u32),
            KEY_CALLER => ByKey::ReturnAddress { pid: key.words[1] as u32, addr: key.words[0] },
            _ => {
                let bytes = key.bytes();
                let name = &bytes[..(key.len as usize).min(bytes.len())];
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                ByKey::Comm(super::counts::distinct(&name[..end]))
            }
        }
    }

    fn plural(&self) -> &'static str {
        match self {
            ByKey::Pid(_) => "processes",
            ByKey::Tid(_) => "threads",
            ByKey::Comm(_) => "thread names",
            ByKey::ReturnAddress { .. } | ByKey::Caller(_) => "callers",
            ByKey::Frames { .. } | ByKey::Stack(_) => "stacks",
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            ByKey::Pid(p) => serde_json::json!({ "pid": p }),
            ByKey::Tid(t) => serde_json::json!({ "tid": t }),
            ByKey::Comm(c) => serde_json::json!({ "comm": c }),
            ByKey::ReturnAddress { addr, .. } => serde_json::json!({ "caller": format!("{addr:#x}") }),
            ByKey::Caller(c) => serde_json::json!({ "caller": c }),
            ByKey::Frames { addrs, .. } => {
                serde_json::json!({ "stack": addrs.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>() })
            }
            ByKey::Stack(frames) => serde_json::json!({ "stack": frames }),
        }
    }
}

impl fmt::Display for ByKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByKey::Pid(p) => write!(f, "pid {p}"),
            ByKey::Tid(t) => write!(f, "tid {t}"),
            ByKey::Comm(c) => write!(f, "comm {c}"),
            ByKey::ReturnAddress { addr, .. } => write!(f, "caller {addr:#x}"),
            ByKey::Caller(c) => write!(f, "caller {c}"),
            ByKey::Frames { addrs, .. } => {
                let addrs: Vec<String> = addrs.iter().map(|a| format!("{a:#x}")).collect();
                write!(f, "stack {}", addrs.join(" <- "))
            }
            ByKey::Stack(frames) => write!(f, "stack {}", frames.join(" <- ")),
        }
    }
}

/// The kinds that can be broken down, with the programs and maps that do it: a summary per key
/// and a count per (key, bucket) (`probe_ebpf::BUCKET_WORD`), rebuilt into the kind's aggregate.
pub trait BrokenDown: Measure + Copy {
    const BY_PROGRAMS: Programs;
    /// The kernel's per-key value.
    type Summary: Copy + 'static;
    /// A new key's summary, as the programs insert it.
    const EMPTY_SUMMARY: Self::Summary;
    /// A key's aggregate from one CPU's summary, without its buckets.
    fn from_summary(s: &Self::Summary, unit_ns: u64) -> Self;
    /// Adds `calls` to the bucket(s) of a bucket key's code.
    fn add_bucket(&mut self, code: u64, calls: u64);
}

impl BrokenDown for ValueStats {
    const BY_PROGRAMS: Programs = Programs {
        map: MAP_VALUE_STATS_BY,
        keyed: KeyedMap::WithBuckets(MAP_BUCKETS_BY),
        uprobe: PROG_VALUE_BY_UPROBE,
        exit: PROG_VALUE_BY_UPROBE,
        uretprobe: PROG_VALUE_BY_URETPROBE,
    };
    type Summary = ValueSummary;
    const EMPTY_SUMMARY: ValueSummary = ValueSummary::EMPTY;
    fn from_summary(s: &ValueSummary, _unit_ns: u64) -> Self {
        ValueStats::from_summary(s)
    }
    fn add_bucket(&mut self, code: u64, calls: u64) {
        ValueStats::add_bucket(self, code, calls)
    }
}

impl BrokenDown for LatencyStats {
    const BY_PROGRAMS: Programs = Programs {
        map: MAP_LATENCY_STATS_BY,
        keyed: KeyedMap::WithBuckets(MAP_BUCKETS_BY),
        uprobe: PROG_LATENCY_BY_UPROBE,
        exit: PROG_LATENCY_BY_EXIT,
        uretprobe: PROG_LATENCY_BY_URETPROBE,
    };
    type Summary = LatencySummary;
    const EMPTY_SUMMARY: LatencySummary = LatencySummary::EMPTY;
    fn from_summary(s: &LatencySummary, unit_ns: u64) -> Self {
        LatencyStats::from_summary(s, unit_ns)
    }
    fn add_bucket(&mut self, code: u64, calls: u64) {
        LatencyStats::add_bucket(self, code, calls)
    }
}

/// One slot's aggregates per key, and their total.
#[derive(Clone, Debug)]
pub struct Breakdown<T> {
    pub tables: BTreeMap<ByKey, T>,
    /// Calls dropped before they reached a key's table, per reason.
    pub losses: Losses,
    /// Every key's aggregate merged: what Prometheus and the pictures show.
    pub total: T,
}

impl<T: BrokenDown> Breakdown<T> {
    fn add(&mut self, key: ByKey, stats: &T) {
        self.tables.entry(key).or_insert(T::EMPTY).merge(stats);
        self.total.merge(stats);
    }

    /// The keys heaviest first (ties in key order).
    fn heaviest(&self) -> Vec<(&ByKey, &T)> {
        let mut rows: Vec<(&ByKey, &T)> = self.tables.iter().collect();
        rows.sort_by_key(|(_, t)| std::cmp::Reverse(t.weight()));
        rows
    }
}

impl<T: BrokenDown> Aggregate for Breakdown<T> {
    const EMPTY: Self = Breakdown { tables: BTreeMap::new(), losses: Losses::EMPTY, total: T::EMPTY };
    const PROGRAMS: Programs = T::BY_PROGRAMS;
    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>> {
        let unit_ns = maps.unit_ns;
        let fold = |sum: &mut T, cpu: &T::Summary| sum.merge(&T::from_summary(cpu, unit_ns));
        let drained = maps.take_keyed_bank(bank, slots, T::EMPTY_SUMMARY, T::EMPTY, fold)?;
        let mut keys: BTreeMap<SlotKey, T> = BTreeMap::new();
        let mut losses = Vec::with_capacity(drained.len());
        for slot in drained {
            keys.extend(slot.keys);
            losses.push(slot.losses);
        }
        for (bucket, calls) in maps.take_bucket_bank(bank)? {
            let (key, code) = bucket.split_bucket();
            keys.entry(key).or_insert(T::EMPTY).add_bucket(code, calls);
        }
        let mut out: Vec<Self> = losses.into_iter().map(|losses| Breakdown { losses, ..Self::EMPTY }).collect();
        // A key whose calls were all filtered out at their exit holds nothing.
        for (key, stats) in keys.iter().filter(|(_, stats)| !stats.is_empty()) {
            if let Some(slot) = out.get_mut(key.slot as usize) {
                let by = match key.kind {
                    KEY_STACK => {
                        let frames = maps.stack_frames(key.words[0]);
                        ByKey::Frames {
                            pid: key.words[1] as u32,
                            addrs: frames.map_or_else(Vec::new, |f| f.addresses().to_vec()),
                            truncated: frames.is_some_and(|f| f.flags & STACK_TRUNCATED != 0),
                        }
                    }
                    _ => ByKey::of(key),
                };
                slot.add(by, stats);
            }
        }
        Ok(out)
    }
    fn merge(&mut self, other: &Self) {
        for (key, stats) in &other.tables {
            self.add(key.clone(), stats);
        }
        self.losses.merge(&other.losses);
    }
    fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.losses.is_empty()
    }
}

impl<T: BrokenDown> Measure for Breakdown<T> {
    fn name_callers(&mut self, callers: &mut Callers) {
        if !self.tables.keys().any(|k| matches!(k, ByKey::ReturnAddress { .. } | ByKey::Frames { .. })) {
            return;
        }
        // Calls from several places in one function join its table.
        for (key, stats) in std::mem::take(&mut self.tables) {
            let key = match key {
                ByKey::ReturnAddress { pid, addr } => ByKey::Caller(callers.name(pid, addr)),
                ByKey::Frames { pid, addrs, truncated } => ByKey::Stack(callers.stack(pid, &addrs, truncated)),
                other => other,
            };
            self.tables.entry(key).or_insert(T::EMPTY).merge(&stats);
        }
    }

    fn weight(&self) -> i128 {
        self.total.weight()
    }

    fn stacks(&self) -> Vec<StackRow> {
        let mut rows: Vec<StackRow> = self
            .tables
            .iter()
            .filter_map(|(key, stats)| match key {
                ByKey::Stack(frames) => {
                    Some(StackRow { frames: frames.clone(), calls: stats.calls(), sum: stats.stack_sum() })
                }
                _ => None,
            })
            .collect();
        rows.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.frames.cmp(&b.frames)));
        rows
    }
    fn calls(&self) -> u64 {
        self.total.calls() + self.losses.lost()
    }

    /// The heaviest keys' tables, each titled `FUNC [pid 123]`, and one line for the rest.
    fn text(&self, m: &Measured) -> String {
        if self.tables.is_empty() {
            return self.total.text(m);
        }
        let rows = self.heaviest();
        let shown = m.top_values.min(rows.len());
        let mut out = String::new();
        for (key, stats) in &rows[..shown] {
            let titled = Measured { function: format!("{} [{key}]", m.function), ..m.clone() };
            out.push_str(&stats.text(&titled));
        }
        if shown < rows.len() {
            let rest = &rows[shown..];
            let calls: u64 = rest.iter().map(|(_, t)| t.calls()).sum();
            out.push_str(&format!(
                "({} other {}: {calls} calls; --top N shows more)\n",
                rest.len(),
                rest[0].0.plural()
            ));
        }
        out.push_str(&losses_text(&m.function, &self.losses));
        out
    }

    /// One object per key (all of them), each the underlying kind's with `by`, and the
    /// function's calls in no table: `lost` in all and `losses` per reason. Without keys, the
    /// function's one (empty) table.
    fn json(&self, kind: &str, elapsed_s: f64, m: &Measured) -> String {
        let with_losses = |stats: &T, key: Option<&ByKey>| {
            let mut table: serde_json::Value = serde_json::from_str(&stats.json(kind, elapsed_s, m)).expect("JSON");
            let obj = table.as_object_mut().expect("object");
            if let Some(key) = key {
                obj.insert("by".into(), key.json());
            }
            obj.insert("lost".into(), self.losses.lost().into());
            obj.insert("losses".into(), losses_json(&self.losses));
            table.to_string()
        };
        let objects: Vec<String> =
            self.heaviest().into_iter().map(|(key, stats)| with_losses(stats, Some(key))).collect();
        if objects.is_empty() {
            return with_losses(&self.total, None);
        }
        objects.join("\n")
    }

    fn losses(&self) -> &Losses {
        &self.losses
    }

    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS] {
        self.total.log2_buckets()
    }
    fn fine_ns(&self) -> Option<&[u64; FINE_BUCKETS]> {
        self.total.fine_ns()
    }

    const HISTOGRAM: (&'static str, &'static str) = T::HISTOGRAM;
    const STACK_SUM: (&'static str, &'static str) = T::STACK_SUM;
    const COUNTERS: &'static [(&'static str, &'static str)] = T::COUNTERS;
    fn histogram(&self) -> Histogram {
        self.total.histogram()
    }
    fn counters(&self) -> Vec<u64> {
        self.total.counters()
    }
    fn slot_labels(m: &Measured) -> Vec<(String, String)> {
        T::slot_labels(m)
    }
}
