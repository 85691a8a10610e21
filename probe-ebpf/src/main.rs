//! The kernel side of probe: uprobe programs that aggregate in per-CPU maps.
//! Nothing is sent per event to user space; the loader reads the maps.
#![no_std]
#![no_main]
// BPF inline asm (regs.rs: one fixed-offset context load per register).
#![feature(asm_experimental_arch)]

mod regs;

use aya_ebpf::{
    bindings::{pt_regs, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{
        bpf_get_attach_cookie, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
    },
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use probe_ebpf::{
    bank_index, EntryKey, EntryStack, Filter, Frame, LatencyCookie, LatencyStats, Reg, SlotKey, SpanShape, ValueCookie,
    ValueSource, ValueStats, KEY_BYTES, KEY_CALLER, KEY_COMM, KEY_INTEGER, KEY_PID, KEY_TEXT, KEY_TEXT_TRUNCATED,
    KEY_TID, KEY_UNREADABLE, MAX_NESTING, OPERAND_ARG, OPERAND_NONE, OPERAND_PID, OPERAND_RET, OPERAND_TID,
    PROBE_COSTS_LEN,
};

/// Per-CPU value aggregates at `bank_index(bank, slot)`; the loader sizes it to the slots.
#[map]
static VALUE_STATS: PerCpuArray<ValueStats> = PerCpuArray::with_max_entries(2, 0);

#[map]
static EPOCH: Array<u32> = Array::with_max_entries(1, 0);

/// Set by the loader on kernels without BPF cookies (before 5.15), which get one copy of each
/// program per site with that site's cookie as a constant here. The values live in frozen
/// read-only data, so the verifier knows them and removes the `bpf_get_attach_cookie` call
/// those kernels would reject as an unknown helper.
#[no_mangle]
static COOKIE_IS_FIXED: u32 = 0;
#[no_mangle]
static FIXED_COOKIE: u64 = 0;

/// The site's cookie: the one attached with the probe, or this copy's constant.
#[inline(always)]
fn site_cookie(ctx: *mut core::ffi::c_void) -> u64 {
    // Volatile reads, so the loader's values are used rather than the defaults above.
    if unsafe { core::ptr::read_volatile(&COOKIE_IS_FIXED) } != 0 {
        unsafe { core::ptr::read_volatile(&FIXED_COOKIE) }
    } else {
        unsafe { bpf_get_attach_cookie(ctx) }
    }
}

/// Entry, RET-site and after-prologue probes: records the value named by the site's cookie.
#[uprobe]
pub fn pb_value(ctx: ProbeContext) -> u32 {
    record_value(ctx.regs, ctx.as_ptr());
    0
}

/// Return probes (uretprobe, never used on Go code): records the value named by the cookie.
#[uretprobe]
pub fn pb_value_ret(ctx: RetProbeContext) -> u32 {
    record_value(ctx.regs, ctx.as_ptr());
    0
}

#[inline(always)]
fn record_value(regs: *mut pt_regs, ctx: *mut core::ffi::c_void) {
    let Some((site, bank)) = value_site(regs, ctx) else {
        return;
    };
    let Some(stats) = VALUE_STATS.get_ptr_mut(bank_index(bank, site.slot)) else {
        return;
    };
    // Per-CPU value: no other program touches it while this one runs on this CPU.
    let stats = unsafe { &mut *stats };
    match read_value(unsafe { &*regs }, &site) {
        Some(v) if filter_passes(unsafe { &*regs }, Phase::All, v) => stats.record(v),
        Some(_) => {}
        None => stats.unreadable += 1,
    }
}

/// `argdist --by`: as `pb_value`, into one aggregate per (slot, `BY_KEY`).
#[uprobe]
pub fn pb_value_by(ctx: ProbeContext) -> u32 {
    record_value_by(ctx.regs, ctx.as_ptr(), false);
    0
}

#[uretprobe]
pub fn pb_value_by_ret(ctx: RetProbeContext) -> u32 {
    record_value_by(ctx.regs, ctx.as_ptr(), true);
    0
}

/// One `ValueStats` per (bank, slot, `BY_KEY`); sized by the loader.
#[map]
static VALUE_STATS_BY: PerCpuHashMap<SlotKey, ValueStats> = PerCpuHashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

/// A zeroed ValueStats to insert from (larger than the BPF stack).
#[map]
static EMPTY_VALUE: PerCpuArray<ValueStats> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn record_value_by(regs: *mut pt_regs, ctx: *mut core::ffi::c_void, returned: bool) {
    let Some((site, bank)) = value_site(regs, ctx) else {
        return;
    };
    let value = read_value(unsafe { &*regs }, &site);
    if value.is_some_and(|v| !filter_passes(unsafe { &*regs }, Phase::All, v)) {
        return; // filtered out before a key is made for it
    }
    let Some(stats) = keyed_stats(&VALUE_STATS_BY, &EMPTY_VALUE, &by_key(bank, site.slot, unsafe { &*regs }, returned))
    else {
        return;
    };
    let stats = unsafe { &mut *stats };
    match value {
        Some(v) => stats.record(v),
        None => stats.unreadable += 1,
    }
}

/// What the `--by` programs key by (`SlotKey::kind`: pid, tid or comm); set by the loader.
#[no_mangle]
static BY_KEY: u32 = 0;

/// The `--by` key of the current call for `slot` in `bank`. `returned`: a uretprobe hit, where
/// the instruction pointer is the return address; anywhere else probe puts sites (entries before
/// SP moves, RET instructions) the return address is at the top of the stack.
#[inline(always)]
fn by_key(bank: u32, slot: u32, regs: &pt_regs, returned: bool) -> SlotKey {
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
    key
}

/// The per-CPU aggregate under `key`, created from `empty` on first use. None when the map is
/// full: the call is then counted in `KEYS_LOST`.
#[inline(always)]
fn keyed_stats<V>(map: &PerCpuHashMap<SlotKey, V>, empty: &PerCpuArray<V>, key: &SlotKey) -> Option<*mut V> {
    if let Some(stats) = map.get_ptr_mut(key) {
        return Some(stats);
    }
    let zero = empty.get(0)?;
    // Fails if another CPU inserted it meanwhile (then it is there) or the map is full.
    let _ = map.insert(key, zero, BPF_NOEXIST as u64);
    let stats = map.get_ptr_mut(key);
    if stats.is_none() {
        if let Some(lost) = KEYS_LOST.get_ptr_mut(bank_index(key.bank, key.slot)) {
            unsafe { *lost += 1 };
        }
    }
    stats
}

/// A value site's cookie and the bank to write, or None when this hit must not count.
#[inline(always)]
fn value_site(regs: *mut pt_regs, ctx: *mut core::ffi::c_void) -> Option<(ValueCookie, u32)> {
    let site = ValueCookie::decode(site_cookie(ctx))?;
    if site.stack_check && regs::stack_check_taken(unsafe { &*regs }) {
        return None; // the call grows its stack and comes back here: count it then
    }
    Some((site, EPOCH.get(0).copied().unwrap_or(0)))
}

/// Calls per exact value (`argdist --count`), keyed by (bank, slot, value); sized by the loader.
#[map]
static VALUE_COUNTS: PerCpuHashMap<SlotKey, u64> = PerCpuHashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

/// Calls a full keyed map could not count under their key, at `bank_index(bank, slot)`.
#[map]
static KEYS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// Counts the value named by the site's cookie under its exact value.
#[uprobe]
pub fn pb_count(ctx: ProbeContext) -> u32 {
    count_value(ctx.regs, ctx.as_ptr());
    0
}

/// Return probes (uretprobe, never used on Go code) of `pb_count`.
#[uretprobe]
pub fn pb_count_ret(ctx: RetProbeContext) -> u32 {
    count_value(ctx.regs, ctx.as_ptr());
    0
}

#[inline(always)]
fn count_value(regs: *mut pt_regs, ctx: *mut core::ffi::c_void) {
    let Some((site, bank)) = value_site(regs, ctx) else {
        return;
    };
    let regs = unsafe { &*regs };
    let key = match site.source {
        ValueSource::GoString { ptr, len } => match (regs::register(regs, ptr), regs::register(regs, len)) {
            (Some(ptr), Some(len)) => text_key(bank, site.slot, ptr, Some(len)),
            _ => SlotKey::unreadable(bank, site.slot),
        },
        ValueSource::CString { ptr } => match regs::register(regs, ptr) {
            Some(ptr) => text_key(bank, site.slot, ptr, None),
            None => SlotKey::unreadable(bank, site.slot),
        },
        _ => match read_value(regs, &site) {
            Some(v) => SlotKey::integer(bank, site.slot, v),
            None => SlotKey::unreadable(bank, site.slot),
        },
    };
    // A string's `value` is its length (as far as it was read, for a C string).
    let value = if key.kind == KEY_INTEGER { key.words[0] as i64 } else { key.len as i64 };
    if key.kind != KEY_UNREADABLE && !filter_passes(regs, Phase::All, value) {
        return;
    }
    count_key(&VALUE_COUNTS, &key);
}

/// The key of a string at `ptr`: `go_len` bytes of a Go string, or a C string up to its NUL;
/// the first `KEY_BYTES` of a longer one, marked truncated.
#[inline(always)]
fn text_key(bank: u32, slot: u32, ptr: u64, go_len: Option<u64>) -> SlotKey {
    let mut key = SlotKey::integer(bank, slot, 0);
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
                Some(dst) if !dst.is_empty() => unsafe { bpf_probe_read_user_buf(ptr as *const u8, dst) }.is_ok(),
                _ => true,
            }
        }
        None => {
            // Room for one byte more than a key holds (and the NUL), to tell a 64-byte string
            // from a longer one.
            let mut buf = [0u8; KEY_BYTES + 2];
            match unsafe { bpf_probe_read_user_str_bytes(ptr as *const u8, &mut buf) } {
                Ok(s) => {
                    let n = s.len();
                    if n > KEY_BYTES {
                        key.kind = KEY_TEXT_TRUNCATED;
                    }
                    key.len = n.min(KEY_BYTES) as u32;
                    let mut head = [0u8; KEY_BYTES];
                    head.copy_from_slice(&buf[..KEY_BYTES]);
                    *key.bytes_mut() = head;
                    true
                }
                Err(_) => false,
            }
        }
    };
    if read {
        key
    } else {
        SlotKey::unreadable(bank, slot)
    }
}

/// Adds one call under `key`. Per-CPU values: this CPU's count is only ever written here, on
/// this CPU, so a plain increment is exact. A key new to the map is inserted; if another CPU
/// inserted it first, its value on this CPU starts at zero and is incremented in place.
#[inline(always)]
fn count_key(map: &PerCpuHashMap<SlotKey, u64>, key: &SlotKey) {
    if let Some(count) = map.get_ptr_mut(key) {
        unsafe { *count += 1 };
        return;
    }
    if map.insert(key, &1, BPF_NOEXIST as u64).is_ok() {
        return;
    }
    match map.get_ptr_mut(key) {
        Some(count) => unsafe { *count += 1 },
        // The map is full: the call is still counted, as lost.
        None => {
            if let Some(lost) = KEYS_LOST.get_ptr_mut(bank_index(key.bank, key.slot)) {
                unsafe { *lost += 1 };
            }
        }
    }
}

/// The site's value: its source read, and extended from the integer's width.
#[inline(always)]
fn read_value(regs: &pt_regs, site: &ValueCookie) -> Option<i64> {
    read_source(regs, site.source).map(|v| site.width.extend(v as u64))
}

#[inline(always)]
fn read_source(regs: &pt_regs, source: ValueSource) -> Option<i64> {
    let v = match source {
        ValueSource::Reg(r) => regs::register(regs, r)?,
        ValueSource::Arm64Reg(n) => regs::arm64_register(regs, n)?,
        ValueSource::Stack { offset } => {
            let addr = regs::stack_pointer(regs).wrapping_add(offset as u64) as *const u64;
            unsafe { bpf_probe_read_user(addr) }.ok()?
        }
        // As a number, a Go string is its length; a C string has none without reading it.
        ValueSource::GoString { len, .. } => regs::register(regs, len)?,
        ValueSource::CString { .. } => return None,
    };
    Some(v as i64)
}

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

/// `--filter`, set by the loader (all conditions unused by default).
#[no_mangle]
static FILTER: Filter = Filter::NONE;

/// Where a filter is evaluated: argdist's one site, or a latency entry or exit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    All,
    Entry,
    Exit,
}

/// Whether every condition of `FILTER` decided in `phase` holds. `value` is argdist's
/// measured value, or at a latency exit the call's duration in nanoseconds.
#[inline(always)]
fn filter_passes(regs: &pt_regs, phase: Phase, value: i64) -> bool {
    // Volatile, so the loader's conditions are read rather than the defaults.
    let filter = unsafe { core::ptr::read_volatile(&FILTER) };
    for c in filter.conditions.iter() {
        if c.operand == OPERAND_NONE
            || (phase == Phase::Entry && !c.at_entry())
            || (phase == Phase::Exit && c.at_entry())
        {
            continue;
        }
        let pid_tgid = bpf_get_current_pid_tgid();
        let v = match c.operand {
            OPERAND_PID => (pid_tgid >> 32) as i64,
            OPERAND_TID => (pid_tgid & 0xffff_ffff) as i64,
            OPERAND_RET => regs::return_value(regs) as i64,
            OPERAND_ARG => match ValueCookie::decode(c.source).and_then(|s| read_value(regs, &s)) {
                Some(v) => v,
                None => return false, // an argument that cannot be read selects nothing
            },
            _ => value, // OPERAND_VALUE, OPERAND_LATENCY
        };
        if !c.holds(v) {
            return false;
        }
    }
    true
}

#[inline(always)]
fn unit_ns() -> u64 {
    // Read through a volatile load so the loader's override is seen, not the default.
    unsafe { core::ptr::read_volatile(&UNIT_NS) }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
