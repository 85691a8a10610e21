//! The kernel side of probe: uprobe programs that aggregate in per-CPU maps.
//! Nothing is sent per event to user space; the loader reads the maps.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_attach_cookie, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::{Array, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use probe_ebpf::{value_index, Reg, ValueCookie, ValueSource, ValueStats, VALUE_BANKS, VALUE_SLOTS};

#[map]
static VALUE_STATS: PerCpuArray<ValueStats> =
    PerCpuArray::with_max_entries(VALUE_SLOTS * VALUE_BANKS, 0);

#[map]
static EPOCH: Array<u32> = Array::with_max_entries(1, 0);

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
    let Some(site) = ValueCookie::decode(unsafe { bpf_get_attach_cookie(ctx) }) else {
        return;
    };
    let bank = EPOCH.get(0).copied().unwrap_or(0);
    let Some(stats) = VALUE_STATS.get_ptr_mut(value_index(bank, site.slot)) else {
        return;
    };
    // Per-CPU value: no other program touches it while this one runs on this CPU.
    let stats = unsafe { &mut *stats };
    match read_source(regs, site.source) {
        Some(v) => stats.record(v),
        None => stats.unreadable += 1,
    }
}

#[inline(always)]
fn read_source(regs: *mut pt_regs, source: ValueSource) -> Option<i64> {
    let regs = unsafe { &*regs };
    let v = match source {
        ValueSource::Reg(r) => match r {
            Reg::Rax => regs.rax,
            Reg::Rbx => regs.rbx,
            Reg::Rcx => regs.rcx,
            Reg::Rdx => regs.rdx,
            Reg::Rsi => regs.rsi,
            Reg::Rdi => regs.rdi,
            Reg::R8 => regs.r8,
            Reg::R9 => regs.r9,
            Reg::R10 => regs.r10,
            Reg::R11 => regs.r11,
        },
        ValueSource::Stack { offset } => {
            let addr = regs.rsp.wrapping_add(offset as u64) as *const u64;
            unsafe { bpf_probe_read_user(addr) }.ok()?
        }
    };
    Some(v as i64)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
