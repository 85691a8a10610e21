//! argdist's programs: a value into its histogram (`pb_value`), into one per `--by` key
//! (`pb_value_by`), or counted per exact value or string (`pb_count`); and the keyed maps'
//! helpers the latency programs share.
use crate::filtering::{filter_passes, Phase};
use crate::{regs, site_cookie, EPOCH};
use aya_ebpf::{
    bindings::{pt_regs, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_buf,
        bpf_probe_read_user_str_bytes,
    },
    macros::{map, uprobe, uretprobe},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use probe_ebpf::{
    bank_index, SlotKey, ValueCookie, ValueSource, ValueStats, KEY_BYTES, KEY_CALLER, KEY_COMM, KEY_INTEGER, KEY_PID,
    KEY_TEXT, KEY_TEXT_TRUNCATED, KEY_TID, KEY_UNREADABLE,
};

/// Per-CPU value aggregates at `bank_index(bank, slot)`; the loader sizes it to the slots.
#[map]
static VALUE_STATS: PerCpuArray<ValueStats> = PerCpuArray::with_max_entries(2, 0);

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
pub(crate) fn by_key(bank: u32, slot: u32, regs: &pt_regs, returned: bool) -> SlotKey {
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
pub(crate) fn keyed_stats<V>(map: &PerCpuHashMap<SlotKey, V>, empty: &PerCpuArray<V>, key: &SlotKey) -> Option<*mut V> {
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
pub(crate) static KEYS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

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
pub(crate) fn read_value(regs: &pt_regs, site: &ValueCookie) -> Option<i64> {
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
