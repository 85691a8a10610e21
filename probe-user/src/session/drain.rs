//! Reading the per-CPU maps exactly while the probes keep firing: the programs write one of two
//! banks (`probe_ebpf::bank_index` in the arrays, `SlotKey::bank` in the keyed maps); a drain
//! flips the epoch, waits until no program can still be writing the old bank, then sums it
//! over the CPUs and empties it. Each kind of measurement says which shape its maps have.
use super::{Pod, Session};
use crate::measure::Measure;
use anyhow::{Context, Result};
use aya::maps::{Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use probe_ebpf::{bank_index, SlotKey};
use std::time::Duration;

/// After flipping the epoch, programs that read the old one finish within microseconds; this
/// grace period is far longer, so the drained bank is complete.
const EPOCH_GRACE: Duration = Duration::from_millis(20);

/// The maps of the session's kind of measurement.
pub struct KindMaps {
    /// The banked array of aggregates, or the keyed hash map.
    pub(super) stats: Map,
    /// Keyed kinds: calls the full hash map could not take, per slot and bank.
    pub(super) lost: Option<Map>,
    pub(super) cpus: usize,
}

impl KindMaps {
    /// A banked array of `T`: one aggregate per slot, summed over the CPUs; the slots written
    /// are zeroed.
    pub fn take_array_bank<T: Measure + Copy>(&mut self, bank: u32, slots: u32) -> Result<Vec<T>> {
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

    /// A keyed map of `V` (a call count, or a whole aggregate): per slot, every key of the bank
    /// with its values summed over the CPUs by `merge`, and the calls lost to a full map. The
    /// bank's keys are deleted, its lost counters zeroed.
    pub fn take_keyed_bank<V: Copy + 'static>(
        &mut self,
        bank: u32,
        slots: u32,
        merge: impl Fn(&mut V, &V),
    ) -> Result<Vec<Keyed<V>>> {
        let mut out: Vec<Keyed<V>> = (0..slots).map(|_| Keyed { keys: Vec::new(), lost: 0 }).collect();
        let mut map: PerCpuHashMap<&mut MapData, Pod<SlotKey>, Pod<V>> =
            PerCpuHashMap::try_from(&mut self.stats).context("the keyed map of another kind")?;
        // Keys first, then each one read and deleted: deleting while walking the keys would
        // make the kernel restart the walk.
        let keys: Vec<Pod<SlotKey>> = map.keys().filter_map(|k| k.ok()).filter(|k| k.0.bank == bank & 1).collect();
        for key in keys {
            let per_cpu = map.get(&key, 0).context("reading the keyed map")?;
            let mut cpus = per_cpu.iter();
            let Some(first) = cpus.next() else { continue };
            let mut sum = first.0;
            for cpu in cpus {
                merge(&mut sum, &cpu.0);
            }
            map.remove(&key).context("deleting a drained key")?;
            if let Some(slot) = out.get_mut(key.0.slot as usize) {
                slot.keys.push((key.0, sum));
            }
        }
        let cpus = self.cpus;
        let lost_map = self.lost.as_mut().context("a keyed kind without its lost-keys map")?;
        let mut lost: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(lost_map).context("lost-keys map")?;
        for (slot, keyed) in out.iter_mut().enumerate() {
            let index = bank_index(bank, slot as u32);
            keyed.lost = lost.get(&index, 0).context("reading the lost-keys map")?.iter().sum();
            if keyed.lost > 0 {
                lost.set(index, PerCpuValues::try_from(vec![0u64; cpus])?, 0).context("clearing lost keys")?;
            }
        }
        Ok(out)
    }
}

/// One slot's keys of one bank, as the kernel kept them.
#[derive(Debug)]
pub struct Keyed<V> {
    pub keys: Vec<(SlotKey, V)>,
    /// Calls whose key the full map could not take.
    pub lost: u64,
}
impl Session {
    /// One slot's aggregate in the bank being written, summed over the CPUs, without draining
    /// it: for probe's own calibration slots, which nothing else writes.
    pub fn peek_slot<T: Measure + Copy>(&self, slot: u32) -> Result<T> {
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
    pub async fn drain_interval<T: Measure>(&mut self) -> Result<Vec<T>> {
        let old = self.flip_epoch().await?;
        T::take_bank(&mut self.maps, old, self.slots)
    }

    /// Everything not yet drained, per slot, up to this moment. Probes stay attached: the
    /// caller prints, then detaches, because the kernel takes ~0.1 s per probe to detach
    /// (an RCU grace period under a global lock each) and the result should not wait for it.
    pub async fn drain_final<T: Measure>(&mut self) -> Result<Vec<T>> {
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
