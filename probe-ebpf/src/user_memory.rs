//! Reading the traced process's memory (stack arguments, strings, later values behind
//! pointers). A plain uprobe program cannot sleep, so it reads only pages already mapped: the
//! first read of a page the process has not touched yet (a string literal in `.rodata` at its
//! first use) fails. A sleepable program (`uprobe.s`, Linux 6.0+) may fault the page in with
//! `bpf_copy_from_user`, exactly as the process's own access would a moment later. Every read
//! takes `FAULT`: whether the program calling it is sleepable, so the helper only sleepable
//! programs may call is never in a program that is not.
use aya_ebpf::helpers::{bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes, generated::bpf_copy_from_user};
use core::mem::MaybeUninit;

/// The smallest page size of the supported architectures: a string starting less than its
/// maximum length before a multiple of it may continue on the next page.
const PAGE: u64 = 4096;

/// `size_of::<T>()` bytes at `src`.
#[inline(always)]
pub(crate) fn read<T, const FAULT: bool>(src: u64) -> Option<T> {
    let mut v: MaybeUninit<T> = MaybeUninit::uninit();
    // Same size: a T is its bytes.
    let bytes = unsafe { core::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, core::mem::size_of::<T>()) };
    read_buf::<FAULT>(src, bytes).then(|| unsafe { v.assume_init() })
}

/// `dst.len()` bytes at `src`; false when they cannot be read (and, with `FAULT`, not faulted in
/// either: an address the process could not read itself).
#[inline(always)]
pub(crate) fn read_buf<const FAULT: bool>(src: u64, dst: &mut [u8]) -> bool {
    if FAULT {
        unsafe { bpf_copy_from_user(dst.as_mut_ptr().cast(), dst.len() as u32, src as *const _) == 0 }
    } else {
        unsafe { bpf_probe_read_user_buf(src as *const u8, dst) }.is_ok()
    }
}

/// The NUL-terminated string at `src` into `buf` (cut to fit), returning its length without the
/// NUL. Its length is not known before reading it, so it cannot be copied with a fixed size
/// (that could run past the end of its mapping); with `FAULT`, when the first read fails the
/// pages it may span are faulted in, then it is read again.
#[inline(always)]
pub(crate) fn read_str<const FAULT: bool>(src: u64, buf: &mut [u8]) -> Option<usize> {
    if let Ok(s) = unsafe { bpf_probe_read_user_str_bytes(src as *const u8, buf) } {
        return Some(s.len());
    }
    if !FAULT {
        return None;
    }
    let mut byte = 0u8;
    if !read_buf::<true>(src, core::slice::from_mut(&mut byte)) {
        return None; // not even its first byte exists
    }
    let next_page = (src | (PAGE - 1)).wrapping_add(1);
    if next_page.wrapping_sub(src) < buf.len() as u64 {
        // The string may end before this page does: failing here is not an error.
        let _ = read_buf::<true>(next_page, core::slice::from_mut(&mut byte));
    }
    unsafe { bpf_probe_read_user_str_bytes(src as *const u8, buf) }.ok().map(|s| s.len())
}
