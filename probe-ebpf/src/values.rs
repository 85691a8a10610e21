//! argdist's programs: a value into its histogram (`pb_value`), into one per `--by` key
//! (`pb_value_by`), or counted per exact value or string (`pb_count`); and the keyed maps'
//! helpers the latency programs share. Each entry program has a sleepable twin (`_s`) that
//! may fault in the page a value is read from (`user_memory`); the loader uses it where the
//! kernel has sleepable uprobes and the value is read from memory.
use crate::cgroup::in_selected_cgroup;
use crate::reads::{field_path, follow, read_value_faulting};
use crate::user_memory;
use crate::verdict::{filter_verdict, Phase, Verdict};
use crate::{regs, site_cookie, EPOCH};
use aya_ebpf::{
    bindings::{pt_regs, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_user_str_bytes},
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use probe_ebpf::{
    bank_index, key_loss, opaque, value_bucket, Losses, Reg, SlotKey, ValueCookie, ValueSource, ValueStats,
    ValueSummary, Width, KEY_BYTES, KEY_CALLER, KEY_COMM, KEY_PID, KEY_STACK, KEY_TEXT, KEY_TEXT_TRUNCATED, KEY_TID,
    KEY_UNREADABLE, KEY_UNSIGNED, LEAF_C_STRING, LEAF_GO_STRING, LOSS_FILTER_UNREADABLE, LOSS_KEY_VANISHED,
};

/// Per-CPU value aggregates at `bank_index(bank, slot)`; the loader sizes it to the slots.
#[map]
static VALUE_STATS: PerCpuArray<ValueStats> = PerCpuArray::with_max_entries(2, 0);

/// Entry, RET-site and after-prologue probes: records the value named by the site's cookie.
#[uprobe]
pub fn pb_value(ctx: ProbeContext) -> u32 {
    record_value::<false>(ctx.regs, ctx.as_ptr());
    0
}

/// `pb_value` as a sleepable program: a stack argument on a page not yet mapped is faulted in.
#[uprobe(sleepable)]
pub fn pb_value_s(ctx: ProbeContext) -> u32 {
    record_value::<true>(ctx.regs, ctx.as_ptr());
    0
}

/// Return probes (uretprobe, never used on Go code): records the value named by the cookie.
#[uretprobe]
pub fn pb_value_ret(ctx: RetProbeContext) -> u32 {
    record_value::<false>(ctx.regs, ctx.as_ptr());
    0
}

#[inline(always)]
fn record_value<const FAULT: bool>(regs: *mut pt_regs, ctx: *mut core::ffi::c_void) {
    let Some(site) = value_site(regs, ctx) else {
        return;
    };
    // Read before the bank: a sleepable read may wait for a page, and the bank must be the
    // one being written when the call is added, not one drained meanwhile.
    let value = read_value_faulting::<FAULT>(unsafe { &*regs }, &site);
    let Some(stats) = VALUE_STATS.get_ptr_mut(bank_index(current_bank(), site.slot)) else {
        return;
    };
    // Per-CPU value: no other program touches it while this one runs on this CPU (nothing
    // below sleeps, so no other task runs this program on this CPU in between).
    let stats = unsafe { &mut *stats };
    match value {
        Some(v) => match filter_verdict(unsafe { &*regs }, Phase::All, v) {
            Verdict::Pass => stats.record_as(v, site.width == Width::U64),
            Verdict::Fail => {}
            Verdict::Unreadable => stats.losses.count(LOSS_FILTER_UNREADABLE),
        },
        None => stats.unreadable += 1,
    }
}

/// `argdist --by`: as `pb_value`, into one aggregate per (slot, `BY_KEY`).
#[uprobe]
pub fn pb_value_by(ctx: ProbeContext) -> u32 {
    record_value_by::<false>(ctx.regs, ctx.as_ptr(), false);
    0
}

/// `pb_value_by` as a sleepable program (see `pb_value_s`).
#[uprobe(sleepable)]
pub fn pb_value_by_s(ctx: ProbeContext) -> u32 {
    record_value_by::<true>(ctx.regs, ctx.as_ptr(), false);
    0
}

#[uretprobe]
pub fn pb_value_by_ret(ctx: RetProbeContext) -> u32 {
    record_value_by::<false>(ctx.regs, ctx.as_ptr(), true);
    0
}

/// `argdist --by`: one `ValueSummary` per (bank, slot, `BY_KEY`), its buckets in `BUCKETS_BY`;
/// sized by the loader.
#[map]
static VALUE_STATS_BY: PerCpuHashMap<SlotKey, ValueSummary> = PerCpuHashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

/// `--by`'s histogram buckets, value or latency: a count per bucket a key uses (`BUCKET_WORD`);
/// sized by the loader. One counter for all CPUs, added to atomically (`count_in_bucket`): a
/// per-CPU map allocates per-CPU memory for each new bucket, which Linux 6.1 often could not
/// give a program when 200 threads made new keys at once (calls lost as `keys_no_memory`);
/// plain memory it gives.
#[map]
pub(crate) static BUCKETS_BY: HashMap<SlotKey, u64> = HashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

/// Adds a call to a `BUCKETS_BY` counter, which other CPUs may add to at the same moment.
#[inline(always)]
pub(crate) fn count_in_bucket(bucket: *mut u64) {
    use core::intrinsics::{atomic_xadd, AtomicOrdering};
    // SAFETY: a value of the map, aligned and live while the program runs. (The eBPF target's
    // `AtomicU64` has no `fetch_add`; its result unused, this is the instruction every kernel
    // has, `lock xadd`.)
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(bucket, 1) };
}

#[inline(always)]
fn record_value_by<const FAULT: bool>(regs: *mut pt_regs, ctx: *mut core::ffi::c_void, returned: bool) {
    let Some(site) = value_site(regs, ctx) else {
        return;
    };
    let value = read_value_faulting::<FAULT>(unsafe { &*regs }, &site);
    let bank = current_bank();
    if let Some(v) = value {
        match filter_verdict(unsafe { &*regs }, Phase::All, v) {
            Verdict::Pass => {}
            Verdict::Fail => return, // filtered out before a key is made for it
            Verdict::Unreadable => return lose(bank, site.slot, LOSS_FILTER_UNREADABLE),
        }
    }
    // What the key's making must carry past it, opaque: the paths that read the value (one per
    // width and place, readable or not) then reach `--by stack`'s walk of up to 64 frames as
    // one, and the verifier follows the walk once, not once per path (3 times before).
    let unsigned = opaque((site.width == Width::U64) as u64) != 0;
    let readable = opaque(value.is_some() as u64) != 0;
    let v = opaque(value.unwrap_or(0) as u64) as i64;
    let key = match by_key(bank, site.slot, unsafe { &*regs }, returned) {
        Ok(key) => key,
        Err(reason) => return lose(bank, site.slot, reason),
    };
    let summary = match keyed_value(&VALUE_STATS_BY, &key, &ValueSummary::EMPTY) {
        Ok(s) => unsafe { &mut *s },
        Err(reason) => return lose(bank, site.slot, reason),
    };
    if !readable {
        summary.unreadable += 1;
        return;
    }
    // Both the summary and the bucket, or neither: a table always adds up.
    match keyed_value(&BUCKETS_BY, &key.bucket(value_bucket(v, unsigned)), &0) {
        Ok(bucket) => {
            if unsigned {
                summary.record_unsigned(v as u64);
            } else {
                summary.record(v);
            }
            count_in_bucket(bucket);
        }
        Err(reason) => lose(bank, site.slot, reason),
    }
}

/// What the `--by` programs key by (`SlotKey::kind`: pid, tid or comm); set by the loader.
#[no_mangle]
static BY_KEY: u32 = 0;

/// The `--by` key of the current call for `slot` in `bank`, or the loss reason when it cannot be
/// had (`--by stack`: its frames could not be stored). `returned`: a uretprobe hit, where the
/// instruction pointer is the return address; anywhere else probe puts sites (entries before
/// SP moves, RET instructions) the return address is at the top of the stack.
#[inline(always)]
pub(crate) fn by_key(bank: u32, slot: u32, regs: &pt_regs, returned: bool) -> Result<SlotKey, usize> {
    let kind = unsafe { core::ptr::read_volatile(&BY_KEY) };
    let mut key = SlotKey::integer(bank, slot, 0);
    key.kind = kind;
    let pid_tgid = bpf_get_current_pid_tgid();
    if kind == KEY_PID {
        key.words[0] = pid_tgid >> 32;
    } else if kind == KEY_TID {
        key.words[0] = pid_tgid & 0xffff_ffff;
    } else if kind == KEY_CALLER {
        key.words[0] = regs::return_address(regs, returned);
        key.words[1] = pid_tgid >> 32;
    } else if kind == KEY_STACK {
        key.words[0] = crate::stacks::stack_hash(regs, returned, pid_tgid >> 32)?;
        key.words[1] = pid_tgid >> 32;
    } else if kind == KEY_COMM {
        if let Ok(comm) = bpf_get_current_comm() {
            let mut low = [0u8; 8];
            let mut high = [0u8; 8];
            low.copy_from_slice(&comm[..8]);
            high.copy_from_slice(&comm[8..16]);
            key.words[0] = u64::from_ne_bytes(low);
            key.words[1] = u64::from_ne_bytes(high);
            key.len = 16;
        }
    }
    Ok(key)
}

/// The two shapes of keyed map: per-CPU values, and values all CPUs share (`BUCKETS_BY`).
pub(crate) trait KeyedMap<V> {
    fn value(&self, key: &SlotKey) -> Option<*mut V>;
    fn insert_new(&self, key: &SlotKey, value: &V) -> Result<(), i64>;
}

/// The same two calls on both shapes (aya's maps share no trait).
macro_rules! keyed_map {
    ($map:ident) => {
        impl<V> KeyedMap<V> for $map<SlotKey, V> {
            #[inline(always)]
            fn value(&self, key: &SlotKey) -> Option<*mut V> {
                self.get_ptr_mut(key)
            }
            #[inline(always)]
            fn insert_new(&self, key: &SlotKey, value: &V) -> Result<(), i64> {
                self.insert(key, value, BPF_NOEXIST as u64).map_err(|e| e as i64)
            }
        }
    };
}
keyed_map!(PerCpuHashMap);
keyed_map!(HashMap);

/// The value under `key` (this CPU's, in a per-CPU map), created from `empty` on first use; or
/// the reason the call cannot be counted under it (`key_loss`).
#[inline(always)]
pub(crate) fn keyed_value<V: Copy>(map: &impl KeyedMap<V>, key: &SlotKey, empty: &V) -> Result<*mut V, usize> {
    if let Some(value) = map.value(key) {
        return Ok(value);
    }
    // Inserted from the stack, not from `empty` itself: LLVM may give a constant the address of
    // a global with the same bytes, such as FIXED_COOKIE (0 by default), which the loader sets
    // per site on kernels without cookies (every new key then started at the site's cookie).
    let mut zero = core::mem::MaybeUninit::<V>::uninit();
    unsafe { core::ptr::write_volatile(zero.as_mut_ptr(), core::ptr::read(empty)) };
    // Fails if another CPU inserted it meanwhile (then it is there), or the map is full, or the
    // kernel had no memory for it.
    let inserted = map.insert_new(key, unsafe { zero.assume_init_ref() });
    match (map.value(key), inserted) {
        (Some(value), _) => Ok(value),
        (None, Err(e)) => Err(key_loss(e)),
        (None, Ok(())) => Err(LOSS_KEY_VANISHED),
    }
}

/// Counts a call the keyed kinds drop in the slot's `LOSSES` under `reason`.
#[inline(always)]
pub(crate) fn lose(bank: u32, slot: u32, reason: usize) {
    lose_many(bank, slot, reason, 1);
}

#[inline(always)]
pub(crate) fn lose_many(bank: u32, slot: u32, reason: usize, calls: u64) {
    if let Some(losses) = LOSSES.get_ptr_mut(bank_index(bank, slot)) {
        unsafe { (*losses).add(reason, calls) };
    }
}

/// A value site's cookie, or None when this hit must not count.
#[inline(always)]
fn value_site(regs: *mut pt_regs, ctx: *mut core::ffi::c_void) -> Option<ValueCookie> {
    let site = ValueCookie::decode(site_cookie(ctx))?;
    if !in_selected_cgroup() {
        return None; // a process outside --cgroup/--container: not one of those measured
    }
    if site.stack_check && regs::stack_check_taken(unsafe { &*regs }) {
        return None; // the call grows its stack and comes back here: count it then
    }
    Some(site)
}

/// The bank the programs write now. Read after any read that may sleep (see `record_value`).
#[inline(always)]
fn current_bank() -> u32 {
    EPOCH.get(0).copied().unwrap_or(0)
}

/// Calls per exact value (`argdist --count`), keyed by (bank, slot, value); sized by the loader.
#[map]
static VALUE_COUNTS: PerCpuHashMap<SlotKey, u64> = PerCpuHashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

/// The keyed kinds' dropped calls per reason, at `bank_index(bank, slot)`; sized by the loader.
#[map]
static LOSSES: PerCpuArray<Losses> = PerCpuArray::with_max_entries(2, 0);

/// Counts the value named by the site's cookie under its exact value.
#[uprobe]
pub fn pb_count(ctx: ProbeContext) -> u32 {
    count_value::<false>(ctx.regs, ctx.as_ptr());
    0
}

/// `pb_count` as a sleepable program: a string (or stack word) on a page the process has not
/// touched yet is faulted in and counted under its value, not as unreadable.
#[uprobe(sleepable)]
pub fn pb_count_s(ctx: ProbeContext) -> u32 {
    count_value::<true>(ctx.regs, ctx.as_ptr());
    0
}

/// Return probes (uretprobe, never used on Go code) of `pb_count`.
#[uretprobe]
pub fn pb_count_ret(ctx: RetProbeContext) -> u32 {
    count_value::<false>(ctx.regs, ctx.as_ptr());
    0
}

#[inline(always)]
fn count_value<const FAULT: bool>(regs: *mut pt_regs, ctx: *mut core::ffi::c_void) {
    let Some(site) = value_site(regs, ctx) else {
        return;
    };
    let regs = unsafe { &*regs };
    // A string's `value` is its whole length; an integer's, itself. The key gets its bank after
    // the read (see `record_value`).
    let (mut key, value) = match site.source {
        ValueSource::GoString { ptr, len } => match (regs::register(regs, ptr), regs::register(regs, len)) {
            (Some(ptr), Some(len)) => (text_key::<FAULT>(site.slot, ptr, Some(len)), len as i64),
            _ => (SlotKey::unreadable(0, site.slot), 0),
        },
        ValueSource::CString { ptr } => match regs::register(regs, ptr) {
            Some(ptr) => c_string_key::<FAULT>(site.slot, ptr),
            None => (SlotKey::unreadable(0, site.slot), 0),
        },
        ValueSource::CStringOnStack { offset } => {
            match user_memory::read::<u64, FAULT>(regs::stack_pointer(regs).wrapping_add(offset as u64)) {
                Some(ptr) => c_string_key::<FAULT>(site.slot, ptr),
                None => (SlotKey::unreadable(0, site.slot), 0),
            }
        }
        ValueSource::Path { base, index } if path_is_text(index) => {
            path_text_key::<FAULT>(regs, site.slot, base, index)
        }
        _ => match read_value_faulting::<FAULT>(regs, &site) {
            Some(v) => {
                let mut key = SlotKey::integer(0, site.slot, v);
                if site.width == Width::U64 {
                    key.kind = KEY_UNSIGNED;
                }
                (key, v)
            }
            None => (SlotKey::unreadable(0, site.slot), 0),
        },
    };
    let bank = current_bank();
    key.bank = bank & 1;
    if key.kind != KEY_UNREADABLE {
        match filter_verdict(regs, Phase::All, value) {
            Verdict::Pass => {}
            Verdict::Fail => return,
            Verdict::Unreadable => return lose(bank, site.slot, LOSS_FILTER_UNREADABLE),
        }
    }
    match keyed_value(&VALUE_COUNTS, &key, &0) {
        // Per-CPU values: this CPU's count is only ever written here, on this CPU.
        Ok(count) => unsafe { *count += 1 },
        Err(reason) => lose(bank, site.slot, reason),
    }
}

/// Whether path `index` ends at a string, counted by its bytes.
#[inline(always)]
fn path_is_text(index: u8) -> bool {
    field_path(index).is_some_and(|p| p.leaf == LEAF_GO_STRING || p.leaf == LEAF_C_STRING)
}

/// The key of the string a path ends at, and its length; unreadable when a pointer on the way
/// is nil or cannot be read.
#[inline(always)]
fn path_text_key<const FAULT: bool>(regs: &pt_regs, slot: u32, base: Reg, index: u8) -> (SlotKey, i64) {
    let unreadable = (SlotKey::unreadable(0, slot), 0);
    let Some(path) = field_path(index) else { return unreadable };
    let Ok(Some(at)) = follow::<FAULT>(regs, base, &path) else { return unreadable };
    if path.leaf == LEAF_GO_STRING {
        match user_memory::read::<[u64; 2], FAULT>(at) {
            Some([ptr, len]) => (text_key::<FAULT>(slot, ptr, Some(len)), len as i64),
            None => unreadable,
        }
    } else {
        match user_memory::read::<u64, FAULT>(at) {
            Some(ptr) if ptr != 0 => c_string_key::<FAULT>(slot, ptr),
            _ => unreadable,
        }
    }
}

/// The key of the C string at `ptr`, and its whole length (`c_string_length`).
#[inline(always)]
fn c_string_key<const FAULT: bool>(slot: u32, ptr: u64) -> (SlotKey, i64) {
    let key = text_key::<FAULT>(slot, ptr, None);
    let len = match key.kind {
        KEY_TEXT => key.len as i64,
        KEY_TEXT_TRUNCATED => c_string_length(ptr),
        _ => 0,
    };
    (key, len)
}

/// Bytes read at once to find the end of a C string longer than a key.
const SCAN_BYTES: usize = 4096;
/// Chunks read at most: a C string longer than `SCAN_CHUNKS * (SCAN_BYTES - 1)` bytes (65,520)
/// has that length as its `value`.
const SCAN_CHUNKS: usize = 16;

/// Where the length of a long C string is found (too large for the BPF stack).
#[map]
static SCAN: PerCpuArray<[u8; SCAN_BYTES]> = PerCpuArray::with_max_entries(1, 0);

/// The length of the C string at `ptr`, up to `SCAN_CHUNKS * (SCAN_BYTES - 1)`. Never faults a
/// page in: `SCAN` is per CPU, and a task sleeping in it would share it with the next one.
#[inline(always)]
fn c_string_length(ptr: u64) -> i64 {
    let Some(buf) = SCAN.get_ptr_mut(0) else { return KEY_BYTES as i64 + 1 };
    let buf = unsafe { &mut *buf };
    let mut len = 0u64;
    for _ in 0..SCAN_CHUNKS {
        // A chunk without a NUL is read as SCAN_BYTES - 1 bytes and a NUL put last.
        let Ok(read) = (unsafe { bpf_probe_read_user_str_bytes(ptr.wrapping_add(len) as *const u8, buf) }) else {
            break;
        };
        len += read.len() as u64;
        if read.len() < SCAN_BYTES - 1 {
            break;
        }
    }
    len as i64
}

/// The key of a string at `ptr`: `go_len` bytes of a Go string, or a C string up to its NUL;
/// the first `KEY_BYTES` of a longer one, marked truncated.
#[inline(always)]
fn text_key<const FAULT: bool>(slot: u32, ptr: u64, go_len: Option<u64>) -> SlotKey {
    let mut key = SlotKey::integer(0, slot, 0);
    key.kind = KEY_TEXT;
    key.len = 0;
    let read = match go_len {
        Some(len) => {
            let mut take = len as usize;
            if take > KEY_BYTES {
                take = KEY_BYTES;
                key.kind = KEY_TEXT_TRUNCATED;
            }
            key.len = take as u32;
            let bytes = key.bytes_mut();
            match bytes.get_mut(..take) {
                Some(dst) if !dst.is_empty() => user_memory::read_buf::<FAULT>(ptr, dst),
                _ => true,
            }
        }
        None => {
            // Room for one byte more than a key holds (and the NUL), to tell a 64-byte string
            // from a longer one.
            let mut buf = [0u8; KEY_BYTES + 2];
            match user_memory::read_str::<FAULT>(ptr, &mut buf) {
                Some(n) => {
                    if n > KEY_BYTES {
                        key.kind = KEY_TEXT_TRUNCATED;
                    }
                    key.len = n.min(KEY_BYTES) as u32;
                    let mut head = [0u8; KEY_BYTES];
                    head.copy_from_slice(&buf[..KEY_BYTES]);
                    *key.bytes_mut() = head;
                    true
                }
                None => false,
            }
        }
    };
    if read {
        key
    } else {
        SlotKey::unreadable(0, slot)
    }
}
