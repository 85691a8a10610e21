//! The saved user registers a program reads, for the architecture the object is built for
//! (aya-ebpf's `bpf_target_arch` cfg; probe-user's build.rs sets it for aarch64, and x86-64
//! is the default). Everything architecture-specific in the programs is here.
use aya_ebpf::bindings::pt_regs;
use probe_ebpf::Reg;

/// Loads the u64 at byte `offset` of the context with one instruction of its own. Picking one
/// of several registers by a runtime number must stay one fixed-offset load per choice: the
/// compiler would otherwise merge the choices into one load at a computed offset from the
/// context, which the verifier rejects ("dereference of modified ctx ptr"); no two of these
/// asm blocks are alike, so none are merged.
macro_rules! ctx_u64 {
    ($regs:expr, $offset:expr) => {{
        let value: u64;
        unsafe {
            core::arch::asm!(
                "{value} = *(u64 *)({regs} + {offset})",
                value = out(reg) value,
                regs = in(reg) $regs as *const pt_regs,
                offset = const $offset,
                options(pure, readonly, nostack),
            )
        };
        value
    }};
}

#[cfg(not(bpf_target_arch = "aarch64"))]
mod arch {
    use super::*;
    use core::mem::offset_of;

    #[inline(always)]
    pub fn register(regs: &pt_regs, r: Reg) -> Option<u64> {
        Some(match r {
            Reg::Rax => ctx_u64!(regs, offset_of!(pt_regs, rax)),
            Reg::Rbx => ctx_u64!(regs, offset_of!(pt_regs, rbx)),
            Reg::Rcx => ctx_u64!(regs, offset_of!(pt_regs, rcx)),
            Reg::Rdx => ctx_u64!(regs, offset_of!(pt_regs, rdx)),
            Reg::Rsi => ctx_u64!(regs, offset_of!(pt_regs, rsi)),
            Reg::Rdi => ctx_u64!(regs, offset_of!(pt_regs, rdi)),
            Reg::R8 => ctx_u64!(regs, offset_of!(pt_regs, r8)),
            Reg::R9 => ctx_u64!(regs, offset_of!(pt_regs, r9)),
            Reg::R10 => ctx_u64!(regs, offset_of!(pt_regs, r10)),
            Reg::R11 => ctx_u64!(regs, offset_of!(pt_regs, r11)),
        })
    }

    /// An arm64 register: not in this object's pt_regs.
    #[inline(always)]
    pub fn arm64_register(_regs: &pt_regs, _n: u8) -> Option<u64> {
        None
    }

    #[inline(always)]
    pub fn stack_pointer(regs: &pt_regs) -> u64 {
        regs.rsp
    }

    /// The frame pointer (RBP): at the sites probe uses (entries before the prologue, RET
    /// instructions, uretprobes) the caller's frame, whose saved RBP is at [RBP] and whose own
    /// return address is at [RBP+8].
    #[inline(always)]
    pub fn frame_pointer(regs: &pt_regs) -> u64 {
        regs.rbp
    }

    /// R14 holds the current goroutine in Go's register ABI on amd64.
    #[inline(always)]
    pub fn go_g(regs: &pt_regs) -> u64 {
        regs.r14
    }

    #[inline(always)]
    pub fn stack_check_taken(regs: &pt_regs) -> bool {
        probe_ebpf::stack_check_taken(regs.eflags)
    }

    /// The first integer result (RAX), at a RET or a uretprobe.
    #[inline(always)]
    pub fn return_value(regs: &pt_regs) -> u64 {
        regs.rax
    }

    /// Where the current call returns to (`--by caller`): at a uretprobe the instruction
    /// pointer is there already; at an entry or a RET (before SP moves) it is on top of the stack.
    #[inline(always)]
    pub fn return_address(regs: &pt_regs, returned: bool) -> u64 {
        if returned {
            regs.rip
        } else {
            unsafe { aya_ebpf::helpers::bpf_probe_read_user(regs.rsp as *const u64) }.unwrap_or(0)
        }
    }

    /// RET pops the return address: a uretprobe sees SP 8 above the entry's.
    pub const SP_MOVED_BY_RET: u64 = 8;
}

#[cfg(bpf_target_arch = "aarch64")]
mod arch {
    use super::*;
    use aya_ebpf::bindings::user_pt_regs;
    use core::mem::offset_of;

    /// The kernel's arm64 `pt_regs` starts with the `user_pt_regs` layout (x0-x30, sp, pc,
    /// pstate); aya's binding of `pt_regs` itself is opaque there.
    #[inline(always)]
    fn user(regs: &pt_regs) -> &user_pt_regs {
        unsafe { &*(regs as *const pt_regs as *const user_pt_regs) }
    }

    /// Byte offset of Xn in the saved registers.
    const fn x(n: usize) -> usize {
        offset_of!(user_pt_regs, regs) + 8 * n
    }

    /// An x86-64 register: not in this object's pt_regs.
    #[inline(always)]
    pub fn register(_regs: &pt_regs, _r: Reg) -> Option<u64> {
        None
    }

    /// Xn for n < 16 (the registers arguments are passed in).
    #[inline(always)]
    pub fn arm64_register(regs: &pt_regs, n: u8) -> Option<u64> {
        Some(match n {
            0 => ctx_u64!(regs, x(0)),
            1 => ctx_u64!(regs, x(1)),
            2 => ctx_u64!(regs, x(2)),
            3 => ctx_u64!(regs, x(3)),
            4 => ctx_u64!(regs, x(4)),
            5 => ctx_u64!(regs, x(5)),
            6 => ctx_u64!(regs, x(6)),
            7 => ctx_u64!(regs, x(7)),
            8 => ctx_u64!(regs, x(8)),
            9 => ctx_u64!(regs, x(9)),
            10 => ctx_u64!(regs, x(10)),
            11 => ctx_u64!(regs, x(11)),
            12 => ctx_u64!(regs, x(12)),
            13 => ctx_u64!(regs, x(13)),
            14 => ctx_u64!(regs, x(14)),
            15 => ctx_u64!(regs, x(15)),
            _ => return None,
        })
    }

    #[inline(always)]
    pub fn stack_pointer(regs: &pt_regs) -> u64 {
        user(regs).sp
    }

    /// The frame pointer (X29): as on x86-64, the saved X29 at [X29] and the frame's return
    /// address at [X29+8], in Go's frames and in AAPCS64's alike.
    #[inline(always)]
    pub fn frame_pointer(regs: &pt_regs) -> u64 {
        user(regs).regs[29]
    }

    /// R28 holds the current goroutine in Go's register ABI on arm64.
    #[inline(always)]
    pub fn go_g(regs: &pt_regs) -> u64 {
        user(regs).regs[28]
    }

    #[inline(always)]
    pub fn stack_check_taken(regs: &pt_regs) -> bool {
        probe_ebpf::stack_check_taken_arm64(user(regs).pstate)
    }

    /// The first integer result (X0), at a RET or a uretprobe.
    #[inline(always)]
    pub fn return_value(regs: &pt_regs) -> u64 {
        user(regs).regs[0]
    }

    /// Where the current call returns to (`--by caller`): at a uretprobe the program counter is
    /// there already; at an entry or a RET it is the link register (X30).
    #[inline(always)]
    pub fn return_address(regs: &pt_regs, returned: bool) -> u64 {
        if returned {
            user(regs).pc
        } else {
            user(regs).regs[30]
        }
    }

    /// RET branches to LR and leaves SP alone: a uretprobe sees the entry's SP.
    pub const SP_MOVED_BY_RET: u64 = 0;
}

pub use arch::*;
