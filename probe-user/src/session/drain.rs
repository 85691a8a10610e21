//! Reading the per-CPU maps exactly while the probes keep firing: the programs write one of two
//! banks (`probe_ebpf::bank_index` in the arrays, `SlotKey::bank` in the keyed maps); a drain
//! flips the epoch, waits until no program can still be writing the old bank, then sums it
//! over the CPUs and empties it. Each kind of measurement says which shape its maps have.
use super::{Aggregate, Pod, Session};
use anyhow::{Context, Result};
use aya::maps::{Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use probe_ebpf::{bank_index, Losses, SlotKey, StackFrames};
use std::time::Duration;

/// After flipping the epoch, programs that read the old one finish within microseconds; this
/// grace period is far longer, so the drained bank is complete.
const EPOCH_GRACE: Duration = Duration::from_millis(20);

/// The maps of the session's kind of measurement.
pub struct KindMaps {
    /// The banked array of aggregates, or the keyed hash map.
    pub(super) stats: Map,
    /// `--by`: the keys' histogram buckets (`probe_ebpf::BUCKET_WORD`).
    pub(super) buckets: Option<Map>,
    /// Keyed kinds: the calls dropped per reason, per slot and bank.
    pub(super) losses: Map,
    /// Calls counted at the traced functions' inlined copies, per slot and bank (every kind).
    pub(super) inlined: Map,
    /// `--by stack`: each distinct stack's frames, by hash (never drained).
    pub(super) stacks: Option<Map>,
    pub(super) cpus: usize,
    /// Display unit of latency tables, in nanoseconds.
    pub unit_ns: u64,
}

impl KindMaps {
    /// `--by stack`: the frames stored under `hash`, if any.
    pub fn stack_frames(&mut self, hash: u64) -> Option<StackFrames> {
        let map = self.stacks.as_mut()?;
        let frames: aya::maps::HashMap<&mut MapData, u64, Pod<StackFrames>> = aya::maps::HashMap::try_from(map).ok()?;
        frames.get(&hash, 0).ok().map(|f| f.0)
    }

    /// A banked array of `T`: one aggregate per slot, summed over the CPUs; the slots written
    /// are zeroed.
    pub fn take_array_bank<T: Aggregate + Copy>(&mut self, bank: u32, slots: u32) -> Result<Vec<T>> {
        let cpus = self.cpus;
        let mut stats: PerCpuArray<&mut MapData, Pod<T>> =
            PerCpuArray::try_from(&mut self.stats).context("the stats map of another kind")?;
        let mut out = Vec::with_capacity(slots as usize);
        for slot in 0..slots {
            let index = bank_index(bank, slot);
            let per_cpu = stats.get(&index, 0).context("reading the stats map")?;
            let mut sum = T::EMPTY;
            for cpu in per_cpu.iter() {
                sum.merge(&cpu.0);
            }
            if !sum.is_empty() {
                let zero = PerCpuValues::try_from(vec![Pod(T::EMPTY); cpus])?;
                stats.set(index, zero, 0).context("clearing the stats map")?;
            }
            out.push(sum);
        }
        Ok(out)
    }

    /// The calls counted at each slot's inlined copies, summed over the CPUs; the slots counted
    /// are zeroed.
    pub fn take_inlined_bank(&mut self, bank: u32, slots: u32) -> Result<Vec<u64>> {
        let cpus = self.cpus;
        let mut calls: PerCpuArray<&mut MapData, u64> =
            PerCpuArray::try_from(&mut self.inlined).context("the inlined calls map")?;
        let mut out = Vec::with_capacity(slots as usize);
        for slot in 0..slots {
            let index = bank_index(bank, slot);
            let sum: u64 = calls.get(&index, 0).context("reading the inlined calls map")?.iter().sum();
            if sum > 0 {
                calls.set(index, PerCpuValues::try_from(vec![0u64; cpus])?, 0).context("clearing inlined calls")?;
            }
            out.push(sum);
        }
        Ok(out)
    }

    /// A keyed map of `V` (a call count, or a key's summary): per slot, every key of the bank
    /// with its per-CPU values folded into an `A` by `fold`, and the calls dropped per reason.
    /// The bank's keys are deleted, its losses zeroed.
    pub fn take_keyed_bank<V: Copy + 'static, A: Clone>(
        &mut self,
        bank: u32,
        slots: u32,
        empty: A,
        fold: impl Fn(&mut A, &V),
    ) -> Result<Vec<Keyed<A>>> {
        let mut out: Vec<Keyed<A>> = (0..slots).map(|_| Keyed { keys: Vec::new(), losses: Losses::EMPTY }).collect();
        for (key, sum) in take_keys(&mut self.stats, bank, empty, fold)? {
            if let Some(slot) = out.get_mut(key.slot as usize) {
                slot.keys.push((key, sum));
            }
        }
        let cpus = self.cpus;
        let mut losses: PerCpuArray<&mut MapData, Pod<Losses>> =
            PerCpuArray::try_from(&mut self.losses).context("losses map")?;
        for (slot, keyed) in out.iter_mut().enumerate() {
            let index = bank_index(bank, slot as u32);
            for cpu in losses.get(&index, 0).context("reading the losses map")?.iter() {
                keyed.losses.merge(&cpu.0);
            }
            if !keyed.losses.is_empty() {
                let zero = PerCpuValues::try_from(vec![Pod(Losses::EMPTY); cpus])?;
                losses.set(index, zero, 0).context("clearing the losses map")?;
            }
        }
        Ok(out)
    }

    /// `--by`: every histogram bucket of the bank's keys, summed over the CPUs, as (bucket key,
    /// calls); the bank's buckets are deleted.
    pub fn take_bucket_bank(&mut self, bank: u32) -> Result<Vec<(SlotKey, u64)>> {
        let buckets = self.buckets.as_mut().context("a --by kind without its buckets map")?;
        take_keys(buckets, bank, 0u64, |sum, cpu: &u64| *sum += cpu)
    }
}

/// Every key of `bank` in a per-CPU hash map of `V`, its values folded from `empty` by `fold`;
/// each key is deleted once read.
fn take_keys<V: Copy + 'static, A: Clone>(
    map: &mut Map,
    bank: u32,
    empty: A,
    fold: impl Fn(&mut A, &V),
) -> Result<Vec<(SlotKey, A)>> {
    let mut map: PerCpuHashMap<&mut MapData, Pod<SlotKey>, Pod<V>> =
        PerCpuHashMap::try_from(map).context("the keyed map of another kind")?;
    // Keys first, then each one read and deleted: deleting while walking the keys would make
    // the kernel restart the walk.
    // A walk that fails part way must not pass for a complete one: the keys it missed would
    // be calls in no table.
    let keys: Vec<Pod<SlotKey>> = map.keys().collect::<Result<Vec<_>, _>>().context("listing the keyed map's keys")?;
    let keys: Vec<Pod<SlotKey>> = keys.into_iter().filter(|k| k.0.bank == bank & 1).collect();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let per_cpu = map.get(&key, 0).context("reading the keyed map")?;
        let mut sum = empty.clone();
        for cpu in per_cpu.iter() {
            fold(&mut sum, &cpu.0);
        }
        map.remove(&key).context("deleting a drained key")?;
        out.push((key.0, sum));
    }
    Ok(out)
}

/// One slot's keys of one bank, as the kernel kept them.
#[derive(Debug)]
pub struct Keyed<V> {
    pub keys: Vec<(SlotKey, V)>,
    /// Calls dropped before they reached a key, per reason.
    pub losses: Losses,
}
impl Session {
    /// One slot's aggregate in the bank being written, summed over the CPUs, without draining
    /// it: for probe's own calibration slots, which nothing else writes.
    pub fn peek_slot<T: Aggregate + Copy>(&self, slot: u32) -> Result<T> {
        let stats: PerCpuArray<&MapData, Pod<T>> =
            PerCpuArray::try_from(&self.maps.stats).context("the stats map of another kind")?;
        let per_cpu = stats.get(&bank_index(self.bank, slot), 0).context("reading the stats map")?;
        let mut sum = T::EMPTY;
        for cpu in per_cpu.iter() {
            sum.merge(&cpu.0);
        }
        Ok(sum)
    }

    /// The values since the last drain, per slot, while probes keep firing: flips the epoch so
    /// programs write the other bank, waits out the grace period, then empties the old bank.
    pub async fn drain_interval<T: Aggregate>(&mut self) -> Result<Vec<T>> {
        let old = self.flip_epoch().await?;
        T::take_bank(&mut self.maps, old, self.slots)
    }

    /// Everything not yet drained, per slot, up to this moment. Probes stay attached: the
    /// caller prints, then detaches, because the kernel takes ~0.1 s per probe to detach
    /// (an RCU grace period under a global lock each) and the result should not wait for it.
    pub async fn drain_final<T: Aggregate>(&mut self) -> Result<Vec<T>> {
        let last = self.flip_epoch().await?;
        let mut total = T::take_bank(&mut self.maps, last, self.slots)?;
        for (t, s) in total.iter_mut().zip(T::take_bank(&mut self.maps, self.bank, self.slots)?) {
            t.merge(&s);
        }
        Ok(total)
    }

    /// Makes the programs write the other bank and waits until none still writes the old one,
    /// which it returns.
    async fn flip_epoch(&mut self) -> Result<u32> {
        let old = self.bank;
        self.bank ^= 1;
        self.epoch.set(0, self.bank, 0).context("flipping the epoch")?;
        tokio::time::sleep(EPOCH_GRACE).await;
        Ok(old)
    }
}
