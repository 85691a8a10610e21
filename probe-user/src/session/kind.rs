//! What the session needs of a kind of measurement: its map and programs, and how to take and
//! merge its aggregates. The views (text, JSON, metrics) are the kind's own (`measure`).
use super::KindMaps;
use crate::plan::{Site, SiteKind};
use anyhow::Result;

/// How a kind's map is keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyedMap {
    /// A banked array: one aggregate per slot (`probe_ebpf::bank_index`), which counts its
    /// slot's dropped calls too.
    No,
    /// A per-CPU hash map by `probe_ebpf::SlotKey`; dropped calls in `LOSSES`.
    Yes,
    /// As `Yes`, with each key's histogram buckets in this second map (`BUCKET_WORD`).
    WithBuckets(&'static str),
}

/// The eBPF side of a kind: its aggregate map and its two programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Programs {
    /// The banked per-CPU array of aggregates (`probe_ebpf::bank_index`), or the keyed per-CPU
    /// hash map (`probe_ebpf::SlotKey`).
    pub map: &'static str,
    pub keyed: KeyedMap,
    /// At an instruction: entries, after-prologue sites ...
    pub uprobe: &'static str,
    /// ... and at exit instructions (RET sites): latency's exit half is a program of its own
    /// (the verifier then follows each half alone); the other kinds' is `uprobe`.
    pub exit: &'static str,
    /// On return (uretprobe; never on Go code).
    pub uretprobe: &'static str,
}

impl Programs {
    /// The program to attach at a site of this kind.
    pub fn for_site(&self, site: &Site) -> &'static str {
        match site.kind {
            SiteKind::Uprobe if site.exit => self.exit,
            SiteKind::Uprobe => self.uprobe,
            SiteKind::Uretprobe => self.uretprobe,
            SiteKind::InlinedCall => probe_ebpf::PROG_INLINED,
        }
    }

    /// The same with the entry program's sleepable twin, which may fault in a page the traced
    /// process has not touched yet (kernels with sleepable uprobes); `None` when it has none.
    pub fn with_sleepable_entries(self) -> Option<Programs> {
        let twin = probe_ebpf::sleepable_twin(self.uprobe)?;
        let exit = if self.exit == self.uprobe { twin } else { self.exit };
        Some(Programs { uprobe: twin, exit, ..self })
    }
}

/// The kernel side of a kind of measurement: the per-slot aggregate its programs keep.
pub trait Aggregate: Clone + Send + Sync + 'static {
    const EMPTY: Self;
    const PROGRAMS: Programs;

    /// Takes bank `bank` of the kind's maps (no program writes it any more): one aggregate per
    /// slot, summed over the CPUs; the bank is left empty.
    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>>;

    fn merge(&mut self, other: &Self);
    /// Nothing recorded (no value, no abandoned call).
    fn is_empty(&self) -> bool;
}
