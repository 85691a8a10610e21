//! latency's programs: an entry pushes a frame per (process, goroutine or thread, function),
//! an exit pops it and records the duration less the probes' own calibrated cost, into the
//! function's aggregate (`pb_lat`) or one per `--by` key (`pb_lat_by`).
use crate::filtering::{filter_passes, Phase};
use crate::values::{by_key, keyed_stats};
use crate::{regs, site_cookie, EPOCH};
use aya_ebpf::{
    bindings::{pt_regs, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use probe_ebpf::{
    bank_index, EntryKey, EntryStack, Frame, LatencyCookie, LatencyStats, SlotKey, SpanShape, MAX_NESTING,
    PROBE_COSTS_LEN,
};

/// Display unit of latency tables in nanoseconds; set by the loader.
#[no_mangle]
static UNIT_NS: u64 = 1000;

/// Per-CPU latency aggregates at `bank_index(bank, slot)`; the loader sizes it to the number of
/// traced functions.
#[map]
static LATENCY_STATS: PerCpuArray<LatencyStats> = PerCpuArray::with_max_entries(2, 0);

/// In-flight calls per (process, goroutine or thread, function). Entries are created on first
/// use and removed when their stack empties, so the map holds only live nesting.
#[map]
static ENTRIES: HashMap<EntryKey, EntryStack> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

/// A zeroed EntryStack to insert from (it is too large for the 512-byte BPF stack).
#[map]
static EMPTY_STACK: PerCpuArray<EntryStack> = PerCpuArray::with_max_entries(1, 0);

/// What the probes cost, calibrated by the loader on this kernel at start-up: an inside and a
/// hit cost per `SpanShape` (see there). Zero means "subtract nothing".
#[map]
static PROBE_COSTS: Array<u64> = Array::with_max_entries(PROBE_COSTS_LEN, 0);

/// Per goroutine or thread (`EntryKey` with `slot` = `CONTEXT_SLOT`): the running total of the
/// hit costs of every measured call that returned on it. A call's exit subtracts what the
/// total grew by since its entry, so a caller is not charged for its callees' probes. LRU: a
/// context that is gone simply ages out (an evicted total reads as no growth).
#[map]
static HIT_COSTS: LruHashMap<EntryKey, u64> = LruHashMap::with_max_entries(65536, 0);

/// `EntryKey::slot` of a `HIT_COSTS` key: the goroutine or thread itself, not one function.
const CONTEXT_SLOT: u32 = u32::MAX;

/// Entry probes and RET-site exit probes of `latency`; the cookie says which.
#[uprobe]
pub fn pb_lat(ctx: ProbeContext) -> u32 {
    on_latency_site(ctx.regs, ctx.as_ptr(), latency_stats);
    0
}

/// Exit probes of non-Go functions, as a uretprobe.
#[uretprobe]
pub fn pb_lat_ret(ctx: RetProbeContext) -> u32 {
    on_latency_site(ctx.regs, ctx.as_ptr(), latency_stats);
    0
}

/// `latency --by`: as `pb_lat`, into one aggregate per (slot, `BY_KEY`).
#[uprobe]
pub fn pb_lat_by(ctx: ProbeContext) -> u32 {
    on_latency_site(ctx.regs, ctx.as_ptr(), latency_stats_by);
    0
}

#[uretprobe]
pub fn pb_lat_by_ret(ctx: RetProbeContext) -> u32 {
    on_latency_site(ctx.regs, ctx.as_ptr(), latency_stats_by);
    0
}

/// The slot's aggregate in the banked array.
#[inline(always)]
fn latency_stats(bank: u32, slot: u32, _regs: &pt_regs, _returned: bool) -> Option<*mut LatencyStats> {
    LATENCY_STATS.get_ptr_mut(bank_index(bank, slot))
}

/// The aggregate of the slot and the current `BY_KEY` (created on first use).
#[inline(always)]
fn latency_stats_by(bank: u32, slot: u32, regs: &pt_regs, returned: bool) -> Option<*mut LatencyStats> {
    keyed_stats(&LATENCY_STATS_BY, &EMPTY_LATENCY, &by_key(bank, slot, regs, returned))
}

/// One `LatencyStats` per (bank, slot, `BY_KEY`); sized by the loader.
#[map]
static LATENCY_STATS_BY: PerCpuHashMap<SlotKey, LatencyStats> = PerCpuHashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

/// A zeroed LatencyStats to insert from (far larger than the BPF stack).
#[map]
static EMPTY_LATENCY: PerCpuArray<LatencyStats> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn on_latency_site(
    regs: *mut pt_regs,
    ctx: *mut core::ffi::c_void,
    stats_of: impl Fn(u32, u32, &pt_regs, bool) -> Option<*mut LatencyStats>,
) {
    // An exit's time is taken as soon as the site is known to be an exit (only the cookie read
    // before it), an entry's last (in on_entry): what lies between the two timestamps of a call
    // is as little of the probes' own work as possible, and an entry reads the clock once.
    let site = LatencyCookie::decode(site_cookie(ctx));
    let exit_ns = if site.exit { unsafe { bpf_ktime_get_ns() } } else { 0 };
    let regs = unsafe { &*regs };
    if !site.exit && site.stack_check && regs::stack_check_taken(regs) {
        return; // the call grows its stack and comes back here: count it then
    }
    if !site.exit && !filter_passes(regs, Phase::Entry, 0) {
        return; // not a call to measure: no frame, so its exit matches nothing
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let (context, depth) = if site.go {
        // Key by goroutine (R14 holds g): goroutines move between threads. Depth from the
        // stack's top (g.stack.hi at offset 8) survives the runtime copying a growing stack.
        let g = regs::go_g(regs);
        let Ok(stack_hi) = (unsafe { bpf_probe_read_user((g + 8) as *const u64) }) else {
            return;
        };
        (g, stack_hi.wrapping_sub(regs::stack_pointer(regs)))
    } else {
        // A uretprobe fires after RET popped the return address: SP is 8 above the entry's.
        let sp = regs::stack_pointer(regs);
        let sp = if site.uretprobe { sp.wrapping_sub(regs::SP_MOVED_BY_RET) } else { sp };
        (pid_tgid & 0xffff_ffff, u64::MAX - sp)
    };
    let key = EntryKey { tgid: (pid_tgid >> 32) as u32, slot: site.slot, context };
    let bank = EPOCH.get(0).copied().unwrap_or(0);
    let Some(stats) = stats_of(bank, site.slot, regs, site.uretprobe) else {
        return;
    };
    let stats = unsafe { &mut *stats };
    if site.exit {
        on_exit(regs, &key, depth, exit_ns, site.uretprobe, stats);
    } else {
        on_entry(&key, depth, site.entry_stepped, stats);
    }
}

#[inline(always)]
fn context_key(key: &EntryKey) -> EntryKey {
    EntryKey { tgid: key.tgid, slot: CONTEXT_SLOT, context: key.context }
}

/// The context's `HIT_COSTS` total (0 if it has none yet).
#[inline(always)]
fn context_hits(context: &EntryKey) -> u64 {
    // The value is copied out at once; a concurrent update can only make it stale.
    unsafe { HIT_COSTS.get(context) }.copied().unwrap_or(0)
}

#[inline(always)]
fn probe_cost(index: u32) -> u64 {
    PROBE_COSTS.get(index).copied().unwrap_or(0)
}

#[inline(always)]
fn on_entry(key: &EntryKey, depth: u64, entry_stepped: bool, stats: &mut LatencyStats) {
    let stack = match ENTRIES.get_ptr_mut(key) {
        Some(s) => s,
        None => {
            let Some(empty) = EMPTY_STACK.get(0) else { return };
            if ENTRIES.insert(key, empty, BPF_NOEXIST as u64).is_err() {
                return;
            }
            let Some(s) = ENTRIES.get_ptr_mut(key) else { return };
            s
        }
    };
    let stack = unsafe { &mut *stack };
    // A new frame at `depth` means every remembered frame at the same depth or deeper is gone
    // (left by a panic or Goexit without reaching RET).
    stats.abandoned += pop_frames(stack, |d| d >= depth);
    let hits_ns = context_hits(&context_key(key));
    let len = unsafe { core::ptr::read_volatile(&stack.len) } as usize;
    match stack.frames.get_mut(len) {
        Some(frame) => {
            let entry_ns = unsafe { bpf_ktime_get_ns() };
            *frame = Frame { depth, entry_ns, hits_ns, entry_stepped: entry_stepped as u64 };
            stack.len = len as u64 + 1;
        }
        None => stats.too_deep += 1,
    }
}

#[inline(always)]
fn on_exit(regs: &pt_regs, key: &EntryKey, depth: u64, now: u64, uretprobe: bool, stats: &mut LatencyStats) {
    let Some(stack) = ENTRIES.get_ptr_mut(key) else { return };
    let stack = unsafe { &mut *stack };
    // Frames deeper than the returning one were abandoned.
    stats.abandoned += pop_frames(stack, |d| d > depth);
    let len = unsafe { core::ptr::read_volatile(&stack.len) } as usize;
    // `get(len - 1)` with a wrapping subtraction: one unsigned bound check that older
    // verifiers (before 6.8) can follow; `len > 0` then `len - 1` loses the lower bound there.
    if let Some(top) = stack.frames.get(len.wrapping_sub(1)) {
        // No match: the call began before the probes were attached.
        if top.depth == depth {
            let shape = SpanShape { entry_stepped: top.entry_stepped != 0, uretprobe };
            let context = context_key(key);
            let total = HIT_COSTS.get_ptr_mut(&context);
            let hits_now = total.map_or(0, |t| unsafe { *t });
            // Probes that fired inside this call (callees, recursion) cost it what the context's
            // total grew by; a total that went backwards was evicted: count nothing.
            let nested = if hits_now >= top.hits_ns { hits_now - top.hits_ns } else { 0 };
            let raw = now.wrapping_sub(top.entry_ns);
            let ns = raw.saturating_sub(probe_cost(shape.inside_cost_index()).saturating_add(nested));
            if filter_passes(regs, Phase::Exit, ns as i64) {
                stats.record(ns, unit_ns());
                stats.subtracted_ns = stats.subtracted_ns.wrapping_add(raw - ns);
            }
            stack.len = len as u64 - 1;
            // Charge this call's own probes to whatever encloses it on this goroutine or
            // thread: in place when the context has a total (no map update on the hot path).
            let hit = probe_cost(shape.hit_cost_index());
            match total {
                Some(t) => unsafe { *t = hits_now + hit },
                None if hit != 0 => {
                    let _ = HIT_COSTS.insert(&context, &hit, 0);
                }
                None => {}
            }
        }
    }
    if stack.len == 0 {
        let _ = ENTRIES.remove(key);
    }
}

/// Pops frames from the top while `gone(depth)` holds; returns how many.
#[inline(always)]
fn pop_frames(stack: &mut EntryStack, gone: impl Fn(u64) -> bool) -> u64 {
    let mut popped = 0;
    for _ in 0..MAX_NESTING {
        let len = unsafe { core::ptr::read_volatile(&stack.len) } as usize;
        // An empty stack wraps to an index past the end (see on_exit).
        let Some(top) = stack.frames.get(len.wrapping_sub(1)) else { break };
        if !gone(top.depth) {
            break;
        }
        stack.len = len as u64 - 1;
        popped += 1;
    }
    popped
}

#[inline(always)]
fn unit_ns() -> u64 {
    // Read through a volatile load so the loader's override is seen, not the default.
    unsafe { core::ptr::read_volatile(&UNIT_NS) }
}
