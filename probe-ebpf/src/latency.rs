//! latency's programs: an entry pushes a frame per (process, goroutine or thread, function),
//! an exit pops it and records the duration less the probes' own calibrated cost, into the
//! function's aggregate (`pb_lat`) or one per `--by` key (`pb_lat_by`). A call dropped on the
//! way is counted under its reason (`Losses`); a call of a process outside `--cgroup` or
//! `--container` is not traced at all, so it is not one of them.
use crate::call_events;
use crate::cgroup::in_selected_cgroup;
use crate::values::{by_key, count_in_bucket, keyed_value, lose, lose_many, BUCKETS_BY};
use crate::verdict::{filter_verdict, Phase, Verdict};
use crate::{regs, site_cookie, EPOCH};
use aya_ebpf::{
    bindings::{pt_regs, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use core::cell::Cell;
use probe_ebpf::{
    bank_index, in_flight_loss, latency_bucket, opaque, Entry, EntryKey, EntryStack, EventArgs, Frame, LatencyCookie,
    LatencyStats, LatencySummary, SlotKey, SpanShape, LOSS_FILTER_UNREADABLE, LOSS_GOROUTINE_UNREADABLE,
    LOSS_IN_FLIGHT_NO_MEMORY, LOSS_UNMATCHED_RETURN, MAX_NESTING, PROBE_COSTS_LEN,
};

/// Display unit of latency tables in nanoseconds; set by the loader.
#[no_mangle]
static UNIT_NS: u64 = 1000;

/// Per-CPU latency aggregates at `bank_index(bank, slot)`; the loader sizes it to the number of
/// traced functions.
#[map]
static LATENCY_STATS: PerCpuArray<LatencyStats> = PerCpuArray::with_max_entries(2, 0);

/// The outermost in-flight call per (process, goroutine or thread, function), inserted at its
/// entry and removed at its exit, so the map holds only live calls. Nearly every call is not
/// nested in another of the same function: it costs a 32-byte frame here, from memory the map
/// holds ready (preallocated: no allocation on the hot path; ~3.5 ms of every start to make
/// 65,536 ready, but Linux 6.1's element caches ran dry when 200 threads entered at once, and
/// `--by` lost calls as `keys_no_memory`). When a call of the same function
/// nests inside (recursion), the frame moves to the bottom of a stack in `NESTED` and this
/// place holds `Frame::stacked` until that stack empties.
#[map]
static ENTRIES: HashMap<EntryKey, Entry> = HashMap::with_max_entries(65536, 0);

/// The in-flight calls of a function that nests in itself, per (process, goroutine or
/// thread, function): created at the first nested entry, removed with the `ENTRIES` marker
/// when the stack empties. Not preallocated: each stack is 8 KiB.
#[map]
static NESTED: HashMap<EntryKey, EntryStack> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

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

/// The errno of a map insert refused because the key is there (`BPF_NOEXIST`).
const EEXIST: i64 = 17;

/// `EntryKey::slot` of a `HIT_COSTS` key: the goroutine or thread itself, not one function.
const CONTEXT_SLOT: u32 = u32::MAX;

// An entry and an exit are programs of their own: each holds only its half of the work, so the
// verifier follows half the paths at load time (most of probe's start-up is that verification).

/// Entry probes of `latency`.
#[uprobe]
pub fn pb_lat(ctx: ProbeContext) -> u32 {
    on_latency_site(ctx.regs, ctx.as_ptr(), ENTRY, &Slots);
    0
}

/// Exit probes at a function's `RET` instructions (every Go function's exit).
#[uprobe]
pub fn pb_lat_exit(ctx: ProbeContext) -> u32 {
    on_latency_site(ctx.regs, ctx.as_ptr(), EXIT, &Slots);
    0
}

/// Exit probes of non-Go functions, as a uretprobe.
#[uretprobe]
pub fn pb_lat_ret(ctx: RetProbeContext) -> u32 {
    on_latency_site(ctx.regs, ctx.as_ptr(), EXIT, &Slots);
    0
}

/// `latency --by`: as `pb_lat`, into one aggregate per (slot, `BY_KEY`).
#[uprobe]
pub fn pb_lat_by(ctx: ProbeContext) -> u32 {
    on_latency_site(ctx.regs, ctx.as_ptr(), ENTRY, &Keys::new());
    0
}

#[uprobe]
pub fn pb_lat_by_exit(ctx: ProbeContext) -> u32 {
    on_latency_site(ctx.regs, ctx.as_ptr(), EXIT, &Keys::new());
    0
}

#[uretprobe]
pub fn pb_lat_by_ret(ctx: RetProbeContext) -> u32 {
    on_latency_site(ctx.regs, ctx.as_ptr(), EXIT, &Keys::new());
    0
}

/// `on_latency_site`'s `exit`: which half a program holds.
const ENTRY: bool = false;
const EXIT: bool = true;

/// `latency --by`: one `LatencySummary` per (bank, slot, `BY_KEY`), its buckets in
/// `BUCKETS_BY`; sized by the loader.
#[map]
static LATENCY_STATS_BY: PerCpuHashMap<SlotKey, LatencySummary> = PerCpuHashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

/// Where a site's calls, and the calls it drops, are counted: the slot's aggregate, or one per
/// `--by` key.
trait Aggregates {
    /// Records one call of `ns` nanoseconds (`subtracted` taken out for the probes), or counts
    /// it under the reason it cannot be.
    fn record(&self, site: &Site, regs: &pt_regs, ns: u64, subtracted: u64);
    /// Counts `calls` frames left without returning, seen at this site.
    fn abandoned(&self, site: &Site, regs: &pt_regs, calls: u64);
    /// Counts a call not timed because its nesting is deeper than `MAX_NESTING`.
    fn too_deep(&self, site: &Site, regs: &pt_regs);
    /// Counts a call dropped for `reason` (a `LOSS_` constant).
    fn lose(&self, site: &Site, reason: usize);
    /// At the end of every run of a program: adds what the run counted where it has not yet.
    fn finish(&self, site: &Site, regs: &pt_regs);
}

/// The site being run, and the bank it writes.
struct Site {
    cookie: LatencyCookie,
    bank: u32,
}

/// The slot's `LATENCY_STATS`, which always exists: losses are counted in it.
struct Slots;

impl Slots {
    #[inline(always)]
    fn stats(site: &Site) -> Option<&'static mut LatencyStats> {
        let stats = LATENCY_STATS.get_ptr_mut(bank_index(site.bank, site.cookie.slot))?;
        // Per-CPU value: no other program touches it while this one runs on this CPU.
        Some(unsafe { &mut *stats })
    }
}

impl Aggregates for Slots {
    #[inline(always)]
    fn record(&self, site: &Site, _regs: &pt_regs, ns: u64, subtracted: u64) {
        if let Some(stats) = Self::stats(site) {
            stats.record(ns, unit_ns());
            stats.subtracted_ns = stats.subtracted_ns.wrapping_add(subtracted);
        }
    }

    #[inline(always)]
    fn abandoned(&self, site: &Site, _regs: &pt_regs, calls: u64) {
        if let Some(stats) = Self::stats(site) {
            stats.abandoned += calls;
        }
    }

    #[inline(always)]
    fn too_deep(&self, site: &Site, _regs: &pt_regs) {
        if let Some(stats) = Self::stats(site) {
            stats.too_deep += 1;
        }
    }

    #[inline(always)]
    fn lose(&self, site: &Site, reason: usize) {
        if let Some(stats) = Self::stats(site) {
            stats.losses.count(reason);
        }
    }

    #[inline(always)]
    fn finish(&self, _site: &Site, _regs: &pt_regs) {}
}

/// `--by`: the key's `LatencySummary` and `BUCKETS_BY` counts, created on first use; a key
/// that cannot be had counts the call in `LOSSES` under the reason why. What a run counts is
/// gathered in its own `Tally` (on its stack) and added under the key once, at its end
/// (`finish`), read back opaque: the key (for `--by stack` a walk of up to 64 frames) is then
/// made at one place, which the verifier follows once for all the paths that lead there. Made
/// wherever a call was counted, the exit program took it 35,413 instructions to follow.
struct Keys {
    tally: Cell<Tally>,
}

/// One run's counts for its key (`Keys`).
#[derive(Clone, Copy)]
struct Tally {
    /// 1 when a call of `ns` nanoseconds (`subtracted` taken out) is to be recorded.
    recorded: u64,
    ns: u64,
    subtracted: u64,
    abandoned: u64,
    too_deep: u64,
}

impl Keys {
    #[inline(always)]
    fn new() -> Keys {
        Keys { tally: Cell::new(Tally { recorded: 0, ns: 0, subtracted: 0, abandoned: 0, too_deep: 0 }) }
    }

    #[inline(always)]
    fn summary(site: &Site, regs: &pt_regs) -> Result<(SlotKey, &'static mut LatencySummary), usize> {
        let key = by_key(site.bank, site.cookie.slot, regs, site.cookie.uretprobe)?;
        let summary = keyed_value(&LATENCY_STATS_BY, &key, &LatencySummary::EMPTY)?;
        Ok((key, unsafe { &mut *summary }))
    }
}

impl Aggregates for Keys {
    #[inline(always)]
    fn record(&self, _site: &Site, _regs: &pt_regs, ns: u64, subtracted: u64) {
        self.tally.set(Tally { recorded: 1, ns, subtracted, ..self.tally.get() });
    }

    #[inline(always)]
    fn abandoned(&self, _site: &Site, _regs: &pt_regs, calls: u64) {
        let t = self.tally.get();
        self.tally.set(Tally { abandoned: t.abandoned + calls, ..t });
    }

    #[inline(always)]
    fn too_deep(&self, _site: &Site, _regs: &pt_regs) {
        let t = self.tally.get();
        self.tally.set(Tally { too_deep: t.too_deep + 1, ..t });
    }

    #[inline(always)]
    fn lose(&self, site: &Site, reason: usize) {
        lose(site.bank, site.cookie.slot, reason);
    }

    #[inline(always)]
    fn finish(&self, site: &Site, regs: &pt_regs) {
        let t = self.tally.get();
        let (recorded, abandoned, too_deep) = (opaque(t.recorded), opaque(t.abandoned), opaque(t.too_deep));
        if recorded == 0 && abandoned == 0 && too_deep == 0 {
            return; // nothing counted: no key to make
        }
        let (ns, subtracted) = (opaque(t.ns), opaque(t.subtracted));
        let (key, summary) = match Self::summary(site, regs) {
            Ok(found) => found,
            Err(reason) => return lose_many(site.bank, site.cookie.slot, reason, recorded + abandoned + too_deep),
        };
        summary.abandoned += abandoned;
        summary.too_deep += too_deep;
        if recorded == 0 {
            return;
        }
        // Both the summary and the bucket, or neither: a table always adds up.
        let unit = unit_ns();
        match keyed_value(&BUCKETS_BY, &key.bucket(latency_bucket(ns, unit)), &0) {
            Ok(bucket) => {
                summary.record(ns, unit);
                summary.subtracted_ns = summary.subtracted_ns.wrapping_add(subtracted);
                count_in_bucket(bucket);
            }
            Err(reason) => self.lose(site, reason),
        }
    }
}

#[inline(always)]
fn on_latency_site(regs: *mut pt_regs, ctx: *mut core::ffi::c_void, exit: bool, aggregates: &impl Aggregates) {
    // An exit's time is taken as soon as the site is known to be an exit (only the cookie read
    // before it), an entry's last (in on_entry): what lies between the two timestamps of a call
    // is as little of the probes' own work as possible, and an entry reads the clock once.
    // The program, not the cookie, says which half this is (the cookie's `exit` agrees).
    let cookie = LatencyCookie { exit, ..LatencyCookie::decode(site_cookie(ctx)) };
    let exit_ns = if exit { unsafe { bpf_ktime_get_ns() } } else { 0 };
    // Before anything is counted: a process outside --cgroup/--container is not traced, entry
    // and exit alike (checked after the exit's clock read, so not inside the measured time).
    if !in_selected_cgroup() {
        return;
    }
    let regs = unsafe { &*regs };
    if !exit && cookie.stack_check && regs::stack_check_taken(regs) {
        return; // the call grows its stack and comes back here: count it then
    }
    let site = Site { cookie, bank: EPOCH.get(0).copied().unwrap_or(0) };
    // A call the filter leaves out still gets a frame (`Frame::filtered_out`).
    let measured = exit
        || match filter_verdict(regs, Phase::Entry, 0) {
            Verdict::Pass => true,
            Verdict::Fail => false,
            Verdict::Unreadable => {
                aggregates.lose(&site, LOSS_FILTER_UNREADABLE);
                false
            }
        };
    let pid_tgid = bpf_get_current_pid_tgid();
    let (context, depth) = if cookie.go {
        // Key by goroutine (R14 holds g): goroutines move between threads. Depth from the
        // stack's top (g.stack.hi at offset 8) survives the runtime copying a growing stack.
        let g = regs::go_g(regs);
        let Ok(stack_hi) = (unsafe { bpf_probe_read_user((g + 8) as *const u64) }) else {
            // Counted once, at the entry. An exit that cannot read it has no frame to find: its
            // entry was counted here too, or its frame is counted as abandoned later.
            if !exit && measured {
                aggregates.lose(&site, LOSS_GOROUTINE_UNREADABLE);
            }
            return;
        };
        (g, stack_hi.wrapping_sub(regs::stack_pointer(regs)))
    } else {
        // A uretprobe fires after RET popped the return address: SP is 8 above the entry's.
        let sp = regs::stack_pointer(regs);
        let sp = if cookie.uretprobe { sp.wrapping_sub(regs::SP_MOVED_BY_RET) } else { sp };
        (pid_tgid & 0xffff_ffff, u64::MAX - sp)
    };
    let key = EntryKey { tgid: (pid_tgid >> 32) as u32, slot: cookie.slot, context };
    if exit {
        on_exit(regs, &site, &key, depth, exit_ns, aggregates);
    } else {
        // Before the entry's clock read: outside the timed span.
        // Made once, here: the BPF stack has no room for a second copy.
        let mut entry = Entry {
            args: if measured { call_events::entry_args(regs, &key) } else { EventArgs::NONE },
            frame: Frame::filtered_out(depth),
        };
        on_entry(regs, &site, &key, depth, measured, &mut entry, aggregates);
    }
    aggregates.finish(&site, regs);
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

/// The `PROBE_COSTS` entry at `index`. The index is hidden from the verifier (`noise` is any
/// value it cannot know, xor-ed in and out): it would otherwise follow the rest of the program
/// once per shape the index can be, since a constant array key is a fact it keeps.
#[inline(always)]
fn probe_cost(index: u32, noise: u64) -> u64 {
    let hidden = (index as u64 ^ core::hint::black_box(noise)) ^ core::hint::black_box(noise);
    PROBE_COSTS.get((hidden as u32) & (PROBE_COSTS_LEN - 1)).copied().unwrap_or(0)
}

/// The context's stack of nested calls, created empty on first use; or the reason it cannot be.
#[inline(always)]
fn nested_stack(key: &EntryKey) -> Result<&'static mut EntryStack, usize> {
    if let Some(stack) = NESTED.get_ptr_mut(key) {
        return Ok(unsafe { &mut *stack });
    }
    let empty = EMPTY_STACK.get(0).ok_or(LOSS_IN_FLIGHT_NO_MEMORY)?;
    // Only this goroutine or thread inserts its own key, so nobody can have inserted it meanwhile.
    NESTED.insert(key, empty, BPF_NOEXIST as u64).map_err(|e| in_flight_loss(e as i64))?;
    let stack = NESTED.get_ptr_mut(key).ok_or(LOSS_IN_FLIGHT_NO_MEMORY)?;
    Ok(unsafe { &mut *stack })
}

/// The frame of a call entering now (its clock read last), or of one the filter left out.
#[inline(always)]
fn new_frame(site: &Site, depth: u64, hits_ns: u64, measured: bool) -> Frame {
    if !measured {
        return Frame::filtered_out(depth);
    }
    let entry_ns = unsafe { bpf_ktime_get_ns() };
    Frame { depth, entry_ns, hits_ns, entry_stepped: site.cookie.entry_stepped as u64 }
}

#[inline(always)]
fn on_entry(
    regs: &pt_regs,
    site: &Site,
    key: &EntryKey,
    depth: u64,
    measured: bool,
    entry: &mut Entry,
    aggregates: &impl Aggregates,
) {
    let hits_ns = context_hits(&context_key(key));
    // No call of this function in flight here is the common case: one insert, no lookup first.
    entry.frame = new_frame(site, depth, hits_ns, measured);
    match ENTRIES.insert(key, &*entry, BPF_NOEXIST as u64) {
        Ok(()) => return,
        Err(e) if e as i64 != -EEXIST => {
            if measured {
                aggregates.lose(site, in_flight_loss(e as i64));
            }
            return;
        }
        Err(_) => {} // a call of this function is in flight here
    }
    let Some(outer) = ENTRIES.get_ptr_mut(key) else {
        // Removed since the insert said it was there (never: only this context removes it).
        return if measured {
            aggregates.lose(site, LOSS_IN_FLIGHT_NO_MEMORY)
        } else {
        };
    };
    let outer = unsafe { &mut *outer };
    if !outer.frame.is_stacked() && outer.frame.depth >= depth {
        // The call remembered here is gone (left by a panic or Goexit without reaching RET):
        // this one takes its place.
        if !outer.frame.is_filtered_out() {
            aggregates.abandoned(site, regs, 1);
        }
        outer.args = entry.args;
        outer.frame = new_frame(site, depth, hits_ns, measured);
        return;
    }
    let stack = match nested_stack(key) {
        Ok(stack) => stack,
        // A call left out by the filter is not lost: it was never to be measured.
        Err(reason) if measured => return aggregates.lose(site, reason),
        Err(_) => return,
    };
    if !outer.frame.is_stacked() {
        // The first call nested inside the remembered one: both go to the stack, the outer
        // one at its bottom (its arguments to where nested calls keep theirs).
        stack.frames[0] = outer.frame;
        stack.measured[0] = !outer.frame.is_filtered_out() as u16;
        stack.len = 1;
        if !outer.frame.is_filtered_out() {
            call_events::stash_args(key, outer.frame.depth, &outer.args);
        }
        *outer = Entry::stacked();
    }
    if measured {
        call_events::stash_args(key, depth, &entry.args);
    }
    enter_nested(regs, site, key, stack, depth, hits_ns, measured, aggregates);
}

/// An entry while calls of the same function are in flight on this context, in `stack`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn enter_nested(
    regs: &pt_regs,
    site: &Site,
    key: &EntryKey,
    stack: &mut EntryStack,
    depth: u64,
    hits_ns: u64,
    measured: bool,
    aggregates: &impl Aggregates,
) {
    // A new frame at `depth` means every remembered frame at the same depth or deeper is gone
    // (left by a panic or Goexit without reaching RET).
    let abandoned = pop_frames(stack, |d| d >= depth);
    if abandoned > 0 {
        aggregates.abandoned(site, regs, abandoned);
    }
    let len = unsafe { core::ptr::read_volatile(&stack.len) } as usize;
    match stack.frames.get_mut(len) {
        Some(frame) => {
            *frame = new_frame(site, depth, hits_ns, measured);
            let below = stack.measured_below(len) as u16;
            if let Some(m) = stack.measured.get_mut(len) {
                *m = below + measured as u16;
            }
            stack.len = len as u64 + 1;
        }
        None => {
            if measured {
                aggregates.too_deep(site, regs);
            }
            // Not timed, but its entry and exit probes still fire inside every frame around
            // it: charge them as those of a timed call (an exit this deep is a RET probe: the
            // kernel keeps at most 64 uretprobe returns per thread).
            let shape = SpanShape { entry_stepped: site.cookie.entry_stepped, uretprobe: false, go: site.cookie.go };
            charge_hit(&context_key(key), None, probe_cost(shape.hit_cost_index(), hits_ns));
        }
    }
}

/// Adds one call's `hit` cost to its goroutine's or thread's running total (`total`, if the
/// caller has it at hand): the frames around the call subtract what it grew by.
#[inline(always)]
fn charge_hit(context: &EntryKey, total: Option<*mut u64>, hit: u64) {
    // In place when the context has a total (no map update on the hot path).
    match total.or_else(|| HIT_COSTS.get_ptr_mut(context)) {
        Some(t) => unsafe { *t += hit },
        None if hit != 0 => {
            let _ = HIT_COSTS.insert(context, &hit, 0);
        }
        None => {}
    }
}

#[inline(always)]
fn on_exit(regs: &pt_regs, site: &Site, key: &EntryKey, depth: u64, now: u64, aggregates: &impl Aggregates) {
    let Some(outer) = ENTRIES.get_ptr_mut(key) else {
        // Nothing in flight here: the call began before the entry probes were live, or its
        // entry was dropped (and counted) there.
        return aggregates.lose(site, LOSS_UNMATCHED_RETURN);
    };
    // Read in place, removed after (only this context removes its key): the BPF stack has no
    // room for a copy.
    let outer = unsafe { &*outer };
    // The returning call's frame and where it was: one `on_matched_exit` below for both
    // places, so the verifier follows the recording of a call once, not once per place.
    let (top, args, nested) = if outer.frame.is_stacked() {
        let Some(stack) = NESTED.get_ptr_mut(key) else {
            // The marker without its stack (never left so): start afresh.
            let _ = ENTRIES.remove(key);
            return aggregates.lose(site, LOSS_UNMATCHED_RETURN);
        };
        let stack = unsafe { &mut *stack };
        match pop_returning(regs, site, depth, stack, aggregates) {
            Some(top) => (top, None, Some(stack)),
            None => return remove_if_empty(key, stack),
        }
    } else if outer.frame.depth == depth {
        (outer.frame, Some(&outer.args), None)
    } else {
        if outer.frame.depth < depth {
            // A deeper call whose entry is not remembered (it began before the probes were
            // attached, or its entry was counted as lost): the remembered one is still running.
            return aggregates.lose(site, LOSS_UNMATCHED_RETURN);
        }
        let filtered_out = outer.frame.is_filtered_out();
        let _ = ENTRIES.remove(key);
        // A return from further out than the remembered call: that call was abandoned, and
        // this one began before the probes were attached.
        if !filtered_out {
            aggregates.abandoned(site, regs, 1);
        }
        return aggregates.lose(site, LOSS_UNMATCHED_RETURN);
    };
    on_matched_exit(regs, site, key, &top, args, now, aggregates);
    match nested {
        Some(stack) => remove_if_empty(key, stack),
        None => {
            let _ = ENTRIES.remove(key);
        }
    }
}

/// The returning call's frame, popped from the context's `NESTED` stack; `None` if the stack
/// has none for it. Frames deeper than it were abandoned.
#[inline(always)]
fn pop_returning(
    regs: &pt_regs,
    site: &Site,
    depth: u64,
    stack: &mut EntryStack,
    aggregates: &impl Aggregates,
) -> Option<Frame> {
    let abandoned = pop_frames(stack, |d| d > depth);
    if abandoned > 0 {
        aggregates.abandoned(site, regs, abandoned);
    }
    let len = unsafe { core::ptr::read_volatile(&stack.len) } as usize;
    // `get(len - 1)` with a wrapping subtraction: one unsigned bound check that older
    // verifiers (before 6.8) can follow; `len > 0` then `len - 1` loses the lower bound there.
    match stack.frames.get(len.wrapping_sub(1)) {
        Some(top) if top.depth == depth => {
            let top = *top;
            stack.len = len as u64 - 1;
            Some(top)
        }
        // A full stack: this call's entry was counted as too deep.
        _ if len >= MAX_NESTING => None,
        // No frame of this call: it began before the probes were attached.
        _ => {
            aggregates.lose(site, LOSS_UNMATCHED_RETURN);
            None
        }
    }
}

/// Once a context's nested calls have all returned, its stack and marker go.
#[inline(always)]
fn remove_if_empty(key: &EntryKey, stack: &EntryStack) {
    if stack.len == 0 {
        let _ = NESTED.remove(key);
        let _ = ENTRIES.remove(key);
    }
}

/// The exit of the call whose frame `top` was just popped: its probes' cost charged to what
/// encloses it, then its duration, unless the filter left it out; `args`: its event's
/// arguments when its `Entry` kept them.
#[inline(always)]
fn on_matched_exit(
    regs: &pt_regs,
    site: &Site,
    key: &EntryKey,
    top: &Frame,
    args: Option<&EventArgs>,
    now: u64,
    aggregates: &impl Aggregates,
) {
    let shape =
        SpanShape { entry_stepped: top.entry_stepped != 0, uretprobe: site.cookie.uretprobe, go: site.cookie.go };
    let context = context_key(key);
    let total = HIT_COSTS.get_ptr_mut(&context);
    let hits_now = total.map_or(0, |t| unsafe { *t });
    // Charged first, and the event sent before the call is recorded: what tells one path here
    // from another (the total found or not, the shape, Go or not, the arguments kept or not)
    // is then spent before the recording, and the verifier follows the recording once for
    // all of them, not once for each combination.
    charge_hit(&context, total, probe_cost(shape.hit_cost_index(), now));
    if top.is_filtered_out() {
        return;
    }
    // Probes that fired inside this call (callees, recursion) cost it what the context's
    // total grew by before this call's own charge; a total that went backwards was evicted:
    // count nothing.
    let nested = if hits_now >= top.hits_ns { hits_now - top.hits_ns } else { 0 };
    let raw = now.wrapping_sub(top.entry_ns);
    // Probe's calibration sites measure the cost itself: nothing taken out (a mask, not a
    // branch: the verifier follows one path).
    let keep = (site.cookie.raw as u64).wrapping_sub(1);
    let ns = raw.saturating_sub(probe_cost(shape.inside_cost_index(), now).saturating_add(nested) & keep);
    let verdict = filter_verdict(regs, Phase::Exit, ns as i64);
    let passed = matches!(verdict, Verdict::Pass);
    call_events::on_return(regs, key, top.depth, ns, now, site.cookie.go, site.cookie.uretprobe, passed, args);
    match verdict {
        Verdict::Pass => aggregates.record(site, regs, ns, raw - ns),
        Verdict::Fail => {}
        Verdict::Unreadable => aggregates.lose(site, LOSS_FILTER_UNREADABLE),
    }
}

/// Pops the frames from the top that `gone(depth)` says are gone; returns how many of them
/// were measured calls (a frame the filter left out is not counted as abandoned). Depths
/// increase from the bottom, so the frames kept are found by bisection: 9 steps for 256
/// frames, where a loop popping one frame at a time made the verifier follow 256 iterations
/// (most of its work on the latency programs, and of probe's start-up).
#[inline(always)]
fn pop_frames(stack: &mut EntryStack, gone: impl Fn(u64) -> bool) -> u64 {
    let len = unsafe { core::ptr::read_volatile(&stack.len) } as usize;
    // Nearly always the top frame stays (nothing was abandoned): no search. An empty stack
    // wraps to an index past the end (see `pop_returning`).
    match stack.frames.get(len.wrapping_sub(1)) {
        Some(top) if gone(top.depth) => {}
        _ => return 0,
    }
    stack.kept = 0;
    let mut step = MAX_NESTING;
    while step > 0 {
        let kept = unsafe { core::ptr::read_volatile(&stack.kept) } as usize;
        let more = kept.wrapping_add(step);
        // `frames[more - 1]` stays, and with it every frame below.
        if more <= len {
            if let Some(frame) = stack.frames.get(more.wrapping_sub(1)) {
                if !gone(frame.depth) {
                    stack.kept = more as u64;
                }
            }
        }
        step /= 2;
    }
    let kept = (unsafe { core::ptr::read_volatile(&stack.kept) } as usize).min(len);
    let abandoned = stack.measured_below(len).saturating_sub(stack.measured_below(kept));
    stack.len = kept as u64;
    abandoned
}

#[inline(always)]
fn unit_ns() -> u64 {
    // Read through a volatile load so the loader's override is seen, not the default.
    unsafe { core::ptr::read_volatile(&UNIT_NS) }
}
