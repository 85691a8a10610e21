//! `--by stack`: the user stack of the current call, walked by frame pointers, stored once per
//! distinct stack in `STACK_FRAMES` under a hash of its frames; the call's key holds the hash.
//!
//! The walk starts from the return address (at SP at an entry or a RET, the instruction
//! pointer at a uretprobe: the traced function's caller, which a frame-pointer walk alone
//! misses at a function's entry, where the frame pointer has not been pushed yet), then
//! follows the caller's frame pointer: [FP] is the next frame pointer and [FP+8] that frame's
//! return address. Each step is one bounded read of user memory; the walk ends at a zero or
//! unaligned frame pointer, one that does not move up the stack, or `MAX_STACK_FRAMES`.
use crate::regs;
use aya_ebpf::{
    bindings::{pt_regs, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::bpf_probe_read_user,
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use probe_ebpf::{StackFrames, LOSS_STACK_NOT_STORED, MAX_STACK_FRAMES, STACK_TRUNCATED};

/// Whether the walk follows frame pointers past the return address; set by the loader (0: the
/// program keeps none, so only the caller is known).
#[no_mangle]
static STACK_WALK: u32 = 1;

// The walk masks indexes with MAX_STACK_FRAMES - 1.
const _: () = assert!(MAX_STACK_FRAMES.is_power_of_two());

/// Each distinct stack's frames, by hash; never drained (a stack's key may be drained and
/// made again, its frames stay). Sized by the loader.
#[map]
static STACK_FRAMES: HashMap<u64, StackFrames> = HashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

/// Where this CPU walks a stack (too large for the 512-byte BPF stack).
#[map]
static STACK_SCRATCH: PerCpuArray<StackFrames> = PerCpuArray::with_max_entries(1, 0);

/// The hash of the current call's user stack in process `tgid`, its frames stored; or the loss
/// reason when they cannot be (the map is full, or holds another stack under the same hash).
#[inline(always)]
pub(crate) fn stack_hash(regs: &pt_regs, returned: bool, tgid: u64) -> Result<u64, usize> {
    let scratch = STACK_SCRATCH.get_ptr_mut(0).ok_or(LOSS_STACK_NOT_STORED)?;
    let stack = unsafe { &mut *scratch };
    stack.tgid = tgid;
    stack.flags = 0;
    let first = regs::return_address(regs, returned);
    stack.frames[0] = first;
    let mut len = 1usize;
    let mut hash = mix(0x9e37_79b9_7f4a_7c15 ^ tgid, first);
    let walk = unsafe { core::ptr::read_volatile(&STACK_WALK) } != 0;
    let mut fp = if walk { regs::frame_pointer(regs) } else { 0 };
    for i in 1..MAX_STACK_FRAMES + 1 {
        if fp == 0 || fp & 7 != 0 {
            break;
        }
        let Ok(pair) = (unsafe { bpf_probe_read_user(fp as *const [u64; 2]) }) else {
            break;
        };
        let (next, ret) = (pair[0], pair[1]);
        if ret == 0 {
            break;
        }
        if i >= MAX_STACK_FRAMES {
            stack.flags = STACK_TRUNCATED;
            break;
        }
        // Masked, not only compared: Linux 6.1's verifier lost the index's lower bound in the
        // loop LLVM made of a checked index ("min value is outside of the allowed memory range").
        stack.frames[i & (MAX_STACK_FRAMES - 1)] = ret;
        len = i + 1;
        hash = mix(hash, ret);
        if next <= fp {
            break;
        }
        fp = next;
    }
    stack.len = len as u64;
    hash = mix(hash, len as u64 | stack.flags << 32);
    // Stored already, or stored by another CPU since the lookup (or a stack with the same
    // hash): the frames say which. One comparison for both, so the verifier walks its loop
    // once.
    let stored = match unsafe { STACK_FRAMES.get(&hash) } {
        Some(stored) => stored,
        None => match STACK_FRAMES.insert(&hash, &*stack, BPF_NOEXIST as u64) {
            Ok(()) => return Ok(hash),
            Err(_) => unsafe { STACK_FRAMES.get(&hash) }.ok_or(LOSS_STACK_NOT_STORED)?,
        },
    };
    if same(stored, stack) {
        Ok(hash)
    } else {
        Err(LOSS_STACK_NOT_STORED)
    }
}

/// Whether two walks are the same stack, frame for frame.
#[inline(always)]
fn same(a: &StackFrames, b: &StackFrames) -> bool {
    if a.tgid != b.tgid || a.len != b.len || a.flags != b.flags {
        return false;
    }
    for i in 0..MAX_STACK_FRAMES {
        // Read afresh each time (volatile): with `len` in a register, LLVM counts the loop
        // down from it, and Linux 6.1's verifier then reads past the frames (len is not
        // bounded by 64 there); this way the index is the loop's, bounded by MAX_STACK_FRAMES.
        if i as u64 >= unsafe { core::ptr::read_volatile(&a.len) } {
            break;
        }
        if a.frames[i] != b.frames[i] {
            return false;
        }
    }
    true
}

/// One step of a 64-bit hash (a multiply-xorshift, as in splitmix64).
#[inline(always)]
fn mix(h: u64, v: u64) -> u64 {
    let mut x = (h ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 29)
}
