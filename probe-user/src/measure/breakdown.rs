//! `--by pid|tid|comm`: one aggregate of the underlying kind (values or latency) per process,
//! thread or thread name, from a keyed per-CPU hash map drained with the two-bank epoch. The
//! text shows the heaviest keys' tables; JSON has one object per key, with a `by` field.
use super::{Histogram, Measure, Measured, Programs};
use crate::session::KindMaps;
use crate::target::callers::Callers;
use anyhow::Result;
use probe_ebpf::{
    LatencyStats, SlotKey, ValueStats, FINE_BUCKETS, KEY_CALLER, KEY_COMM, KEY_PID, KEY_TID, LOG2_BUCKETS,
    MAP_KEYS_LOST, MAP_LATENCY_STATS_BY, MAP_VALUE_STATS_BY, PROG_LATENCY_BY_UPROBE, PROG_LATENCY_BY_URETPROBE,
    PROG_VALUE_BY_UPROBE, PROG_VALUE_BY_URETPROBE,
};
use std::collections::BTreeMap;
use std::fmt;

/// Keys a `--by` map holds per interval: processes or threads, far beyond what one run sees.
pub const BY_MAX_KEYS: u32 = 10_000;
/// Keys shown per function without --top.
pub const DEFAULT_TOP_KEYS: usize = 20;

/// What `--by` breaks a table down by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// The process (its pid)
    Pid,
    /// The thread (its tid; for Go, the thread the call returned on)
    Tid,
    /// The thread's name (`comm`, as `ps -T` shows it)
    Comm,
    /// The calling function (from the return address, symbolised)
    Caller,
}

impl By {
    /// The `SlotKey::kind` the programs build.
    pub fn key_kind(self) -> u32 {
        match self {
            By::Pid => KEY_PID,
            By::Tid => KEY_TID,
            By::Comm => KEY_COMM,
            By::Caller => KEY_CALLER,
        }
    }
}

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
                ByKey::Comm(String::from_utf8_lossy(&name[..end]).into_owned())
            }
        }
    }

    fn plural(&self) -> &'static str {
        match self {
            ByKey::Pid(_) => "processes",
            ByKey::Tid(_) => "threads",
            ByKey::Comm(_) => "thread names",
            ByKey::ReturnAddress { .. } | ByKey::Caller(_) => "callers",
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            ByKey::Pid(p) => serde_json::json!({ "pid": p }),
            ByKey::Tid(t) => serde_json::json!({ "tid": t }),
            ByKey::Comm(c) => serde_json::json!({ "comm": c }),
            ByKey::ReturnAddress { addr, .. } => serde_json::json!({ "caller": format!("{addr:#x}") }),
            ByKey::Caller(c) => serde_json::json!({ "caller": c }),
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
        }
    }
}

/// The kinds that can be broken down, with the programs and map that do it.
pub trait BrokenDown: Measure + Copy {
    const BY_PROGRAMS: Programs;
}

impl BrokenDown for ValueStats {
    const BY_PROGRAMS: Programs = Programs {
        map: MAP_VALUE_STATS_BY,
        lost: Some(MAP_KEYS_LOST),
        uprobe: PROG_VALUE_BY_UPROBE,
        uretprobe: PROG_VALUE_BY_URETPROBE,
    };
}

impl BrokenDown for LatencyStats {
    const BY_PROGRAMS: Programs = Programs {
        map: MAP_LATENCY_STATS_BY,
        lost: Some(MAP_KEYS_LOST),
        uprobe: PROG_LATENCY_BY_UPROBE,
        uretprobe: PROG_LATENCY_BY_URETPROBE,
    };
}

/// One slot's aggregates per key, and their total.
#[derive(Clone, Debug)]
pub struct Breakdown<T> {
    pub tables: BTreeMap<ByKey, T>,
    /// Calls a full map could not count under their key (they are in no table).
    pub lost: u64,
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

impl<T: BrokenDown> Measure for Breakdown<T> {
    const EMPTY: Self = Breakdown { tables: BTreeMap::new(), lost: 0, total: T::EMPTY };
    const PROGRAMS: Programs = T::BY_PROGRAMS;

    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>> {
        let drained = maps.take_keyed_bank::<T>(bank, slots, |sum, cpu| sum.merge(cpu))?;
        Ok(drained
            .into_iter()
            .map(|slot| {
                let mut breakdown = Breakdown { lost: slot.lost, ..Self::EMPTY };
                // A key whose calls were all filtered out at their exit holds nothing.
                for (key, stats) in slot.keys.iter().filter(|(_, stats)| !stats.is_empty()) {
                    breakdown.add(ByKey::of(key), stats);
                }
                breakdown
            })
            .collect())
    }

    fn name_callers(&mut self, callers: &mut Callers) {
        if !self.tables.keys().any(|k| matches!(k, ByKey::ReturnAddress { .. })) {
            return;
        }
        // Calls from several places in one function join its table.
        for (key, stats) in std::mem::take(&mut self.tables) {
            let key = match key {
                ByKey::ReturnAddress { pid, addr } => ByKey::Caller(callers.name(pid, addr)),
                other => other,
            };
            self.tables.entry(key).or_insert(T::EMPTY).merge(&stats);
        }
    }

    fn merge(&mut self, other: &Self) {
        for (key, stats) in &other.tables {
            self.add(key.clone(), stats);
        }
        self.lost += other.lost;
    }
    fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.lost == 0
    }

    fn weight(&self) -> i128 {
        self.total.weight()
    }
    fn calls(&self) -> u64 {
        self.total.calls() + self.lost
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
        if self.lost > 0 {
            out.push_str(&format!(
                "warning: {} calls of {} not broken down: more keys than the map holds\n",
                self.lost, m.function
            ));
        }
        out
    }

    /// One object per key (all of them), each the underlying kind's with `by` (and `lost`).
    fn json(&self, kind: &str, elapsed_s: f64, m: &Measured) -> String {
        let objects: Vec<String> = self
            .heaviest()
            .into_iter()
            .map(|(key, stats)| {
                let mut table: serde_json::Value = serde_json::from_str(&stats.json(kind, elapsed_s, m)).expect("JSON");
                let obj = table.as_object_mut().expect("object");
                obj.insert("by".into(), key.json());
                obj.insert("lost".into(), self.lost.into());
                table.to_string()
            })
            .collect();
        if objects.is_empty() {
            return self.total.json(kind, elapsed_s, m);
        }
        objects.join("\n")
    }

    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS] {
        self.total.log2_buckets()
    }
    fn fine_ns(&self) -> Option<&[u64; FINE_BUCKETS]> {
        self.total.fine_ns()
    }

    const HISTOGRAM: (&'static str, &'static str) = T::HISTOGRAM;
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
