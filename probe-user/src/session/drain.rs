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
    /// The bank's keys are zeroed to `zero` (as the programs create them), its losses zeroed.
    pub fn take_keyed_bank<V: Copy + 'static, A: Clone>(
        &mut self,
        bank: u32,
        slots: u32,
        zero: V,
        empty: A,
        fold: impl Fn(&mut A, &V),
    ) -> Result<Vec<Keyed<A>>> {
        let mut out: Vec<Keyed<A>> = (0..slots).map(|_| Keyed { keys: Vec::new(), losses: Losses::EMPTY }).collect();
        for (key, sum) in take_keys(&mut self.stats, bank, zero, empty, fold)? {
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
    /// calls); the bank's buckets are zeroed.
    pub fn take_bucket_bank(&mut self, bank: u32) -> Result<Vec<(SlotKey, u64)>> {
        let buckets = self.buckets.as_mut().context("a --by kind without its buckets map")?;
        let mut counters: aya::maps::HashMap<&mut MapData, Pod<SlotKey>, u64> =
            aya::maps::HashMap::try_from(buckets).context("the buckets map")?;
        // As `take_keys`, for counters all CPUs share.
        let keys = bank_keys(counters.keys(), bank)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let calls = counters.get(&key, 0).context("reading the buckets map")?;
            if calls == 0 {
                counters.remove(&key).context("deleting an idle bucket")?;
                continue;
            }
            counters.insert(key, 0, 0).context("zeroing a drained bucket")?;
            out.push((key.0, calls));
        }
        Ok(out)
    }
}

/// Every key of `bank` in a per-CPU hash map of `V` that holds anything, its values folded
/// from `empty` by `fold`. A key read is zeroed in place, not deleted: the programs find it
/// again in the bank's next interval instead of allocating it anew. Linux 6.1's per-CPU
/// allocator, asked for thousands of new keys a second by the drains' deletions, sometimes had
/// none for a program (200 threads keyed by tid, `-i 0.2`: 35 calls of 150,000 counted under
/// `keys_no_memory`). A key that stayed empty for a whole interval of its bank is deleted, so
/// keys that went away (an exited thread) give their room back.
fn take_keys<V: Copy + 'static, A: Clone>(
    map: &mut Map,
    bank: u32,
    zero: V,
    empty: A,
    fold: impl Fn(&mut A, &V),
) -> Result<Vec<(SlotKey, A)>> {
    let mut map: PerCpuHashMap<&mut MapData, Pod<SlotKey>, Pod<V>> =
        PerCpuHashMap::try_from(map).context("the keyed map of another kind")?;
    // Keys first, then each one read and zeroed or deleted: deleting while walking the keys
    // would make the kernel restart the walk.
    let keys = bank_keys(map.keys(), bank)?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let per_cpu = map.get(&key, 0).context("reading the keyed map")?;
        if per_cpu.iter().all(|cpu| same_bytes(&cpu.0, &zero)) {
            map.remove(&key).context("deleting an idle key")?;
            continue;
        }
        let mut sum = empty.clone();
        for cpu in per_cpu.iter() {
            fold(&mut sum, &cpu.0);
        }
        let zeroes = PerCpuValues::try_from(vec![Pod(zero); per_cpu.len()])?;
        map.insert(key, zeroes, 0).context("zeroing a drained key")?;
        out.push((key.0, sum));
    }
    Ok(out)
}

/// The keys of `bank` in a keyed map's walk. A walk that fails part way must not pass for a
/// complete one: the keys it missed would be calls in no table.
fn bank_keys<E: std::error::Error + Send + Sync + 'static>(
    walk: impl Iterator<Item = Result<Pod<SlotKey>, E>>,
    bank: u32,
) -> Result<Vec<Pod<SlotKey>>> {
    let keys: Vec<Pod<SlotKey>> = walk.collect::<Result<_, _>>().context("listing a keyed map's keys")?;
    Ok(keys.into_iter().filter(|k| k.0.bank == bank & 1).collect())
}

/// Whether two plain values (the maps' `#[repr(C)]` aggregates) hold the same bytes.
fn same_bytes<V: Copy>(a: &V, b: &V) -> bool {
    let size = std::mem::size_of::<V>();
    // SAFETY: both are initialised values of a padding-free `Copy` type read as bytes.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a as *const V as *const u8, size),
            std::slice::from_raw_parts(b as *const V as *const u8, size),
        )
    };
    a == b
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

#[cfg(test)]
mod tests {
    use super::*;
    use probe_ebpf::LatencySummary;

    #[test]
    fn a_bank_takes_its_own_keys_and_a_broken_walk_is_an_error() {
        let key = |bank, v| Ok::<_, std::io::Error>(Pod(SlotKey::integer(bank, 0, v)));
        let keys = bank_keys([key(0, 1), key(1, 2), key(0, 3)].into_iter(), 2).unwrap();
        assert_eq!(keys.iter().map(|k| k.0.words[0]).collect::<Vec<_>>(), [1, 3]);
        let broken = [key(0, 1), Err(std::io::Error::other("walk cut short"))];
        assert!(bank_keys(broken.into_iter(), 0).is_err());
    }

    #[test]
    fn an_idle_key_is_one_that_holds_what_the_programs_create_it_with() {
        let empty = LatencySummary::EMPTY;
        assert!(same_bytes(&empty, &LatencySummary::EMPTY));
        assert!(!same_bytes(&LatencySummary { count: 1, ..empty }, &empty));
        assert!(!same_bytes(&LatencySummary { abandoned: 1, ..empty }, &empty));
        assert!(same_bytes(&0u64, &0) && !same_bytes(&7u64, &0));
    }
}
