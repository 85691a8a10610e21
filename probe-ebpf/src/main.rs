//! The kernel side of probe: uprobe programs that aggregate in per-CPU maps.
//! Nothing is sent per event to user space; the loader reads the maps.
#![no_std]
#![no_main]
// BPF inline asm (regs.rs: one fixed-offset context load per register).
#![feature(asm_experimental_arch)]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod regs;

mod call_events;
mod cgroup;
mod inlined_calls;
mod latency;
mod reads;
mod stacks;
mod user_memory;
mod values;
mod verdict;

use aya_ebpf::{helpers::bpf_get_attach_cookie, macros::map, maps::Array};

#[map]
pub(crate) static EPOCH: Array<u32> = Array::with_max_entries(1, 0);

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
pub(crate) fn site_cookie(ctx: *mut core::ffi::c_void) -> u64 {
    // Volatile reads, so the loader's values are used rather than the defaults above.
    if unsafe { core::ptr::read_volatile(&COOKIE_IS_FIXED) } != 0 {
        unsafe { core::ptr::read_volatile(&FIXED_COOKIE) }
    } else {
        unsafe { bpf_get_attach_cookie(ctx) }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
