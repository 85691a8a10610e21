//! arm64 machine-code facts, the counterpart of x86_64/ (the interface is arch/mod.rs): the Go stack-check
//! prologue, every RET, and how the kernel handles a uprobe on each instruction. arm64
//! instructions are fixed 4-byte little-endian words, so every aligned word is an instruction
//! boundary and no decoder library is needed.
//!
//! The kernel's arm64 uprobes (arch/arm64/kernel/probes/decode-insn.c, `arm_probe_decode_insn`)
//! simulate branches (B, BL, B.cond, CBZ/CBNZ, TBZ/TBNZ, BR/BLR/RET) and ADR/ADRP in the trap
//! handler; they refuse literal loads, exclusive loads and stores, exception-generating and
//! system-register-writing instructions, and most hints; everything else is single-stepped out
//! of line.
use super::{EntrySite, Handling, Moved};
use anyhow::{bail, Result};

/// `(mask, value)` pairs: an instruction matches when `word & mask == value`.
type Pattern = (u32, u32);

const B_BL: Pattern = (0x7c00_0000, 0x1400_0000);
const BL: Pattern = (0xfc00_0000, 0x9400_0000);
const B_COND: Pattern = (0xff00_0010, 0x5400_0000);
const CBZ_CBNZ: Pattern = (0x7e00_0000, 0x3400_0000);
const TBZ_TBNZ: Pattern = (0x7e00_0000, 0x3600_0000);
/// BR, BLR and RET (no pointer authentication).
const BR_BLR_RET: Pattern = (0xff9f_fc1f, 0xd61f_0000);
const RET: Pattern = (0xffff_fc1f, 0xd65f_0000);
const ADR_ADRP: Pattern = (0x1f00_0000, 0x1000_0000);

/// The branch, exception and system class, in which only the simulated branches and a few
/// system instructions are accepted.
const CLASS_BRANCH_SYS: Pattern = (0x1c00_0000, 0x1400_0000);
const EXCEPTION: Pattern = (0xff00_0000, 0xd400_0000);
const MSR_IMM: Pattern = (0xfff8_f01f, 0xd500_401f);
const MSR_REG: Pattern = (0xfff0_0000, 0xd510_0000);
const MRS: Pattern = (0xfff0_0000, 0xd530_0000);
const HINT: Pattern = (0xffff_f01f, 0xd503_201f);
/// Unconditional branches to a register (with or without pointer authentication, ERET).
const BRANCH_REG: Pattern = (0xfe00_0000, 0xd600_0000);
/// MRS of DAIF, the one MRS the kernel refuses.
const MRS_DAIF: u32 = 0xd53b_4220;

/// LDR (literal), LDRSW (literal), PRFM (literal): PC-relative, so not steppable out of line.
const LDR_LITERAL: Pattern = (0xbf00_0000, 0x1800_0000);
const LDRSW_LITERAL: Pattern = (0xff00_0000, 0x9800_0000);
const PRFM_LITERAL: Pattern = (0xff00_0000, 0xd800_0000);
/// Load/store exclusive (and the acquire/release forms in that group).
const EXCLUSIVE: Pattern = (0x3f00_0000, 0x0800_0000);

/// Hints the kernel single-steps: NOP, the PAC hints that only sign (PACIASP and friends,
/// XPACLRI) and BTI. Their CRm:op2 numbers.
const STEPPABLE_HINTS: &[u32] = &[0, 7, 8, 10, 24, 25, 26, 27, 32, 34, 36, 38];

/// The Go stack check loads `g.stackguard0` (offset 16 from g, in R28): `MOVD 16(R28), R16`.
const LOAD_STACKGUARD: Pattern = (0xffff_ffe0, 0xf940_0b80);
/// `BLS morestack`: B.cond with condition LS (0b1001).
const B_LS: Pattern = (0xff00_001f, 0x5400_0009);
/// The stack check sits in the first few instructions; looking further finds unrelated code.
const PROLOGUE_WINDOW: usize = 8;

fn is(word: u32, (mask, value): Pattern) -> bool {
    word & mask == value
}

/// The instruction words of `code` at 4-byte steps from `addr`, with their addresses.
fn words(code: &[u8], addr: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
    code.chunks_exact(4)
        .enumerate()
        .map(move |(n, w)| (addr + 4 * n as u64, u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
}

/// Whether the kernel simulates the instruction in its trap handler (no out-of-line step).
fn is_simulated(word: u32) -> bool {
    [B_BL, B_COND, CBZ_CBNZ, TBZ_TBNZ, BR_BLR_RET, ADR_ADRP].iter().any(|&p| is(word, p))
}

/// How the kernel handles a uprobe on the instruction at the start of `code`.
pub fn probe_handling(code: &[u8]) -> Handling {
    let Some((_, word)) = words(code, 0).next() else { return Handling::Refused("a truncated instruction") };
    word_handling(word)
}

fn word_handling(word: u32) -> Handling {
    if is_simulated(word) {
        return Handling::Emulated;
    }
    if is(word, CLASS_BRANCH_SYS) {
        if is(word, EXCEPTION) {
            return Handling::Refused("an exception-generating instruction (SVC, BRK, HLT, ...)");
        }
        if is(word, MSR_IMM) || is(word, MSR_REG) {
            return Handling::Refused("a system-register write (MSR)");
        }
        if is(word, MRS) && word & !0x1f == MRS_DAIF {
            return Handling::Refused("a read of the interrupt mask (MRS DAIF)");
        }
        if is(word, HINT) && !STEPPABLE_HINTS.contains(&((word >> 5) & 0x7f)) {
            return Handling::Refused("a hint instruction the kernel cannot single-step");
        }
        if is(word, BRANCH_REG) {
            return Handling::Refused("an authenticated branch or return (RETAA, BRAA, ERET, ...)");
        }
        return Handling::SingleStepped;
    }
    if [LDR_LITERAL, LDRSW_LITERAL, PRFM_LITERAL].iter().any(|&p| is(word, p)) {
        return Handling::Refused("a PC-relative literal load");
    }
    if is(word, EXCLUSIVE) {
        return Handling::Refused("an exclusive or acquire/release load or store (an atomic sequence)");
    }
    Handling::SingleStepped
}

/// The `BLS` of a Go function's `MOVD 16(R28), R16; CMP R16, RSP; BLS morestack` check (large
/// frames compare `SUB $n, RSP, R17` instead), if it has one: NOSPLIT and assembly functions
/// do not. At the BLS the flags hold the compare's result, which the programs test.
fn go_stack_check_branch(code: &[u8], addr: u64) -> Option<u64> {
    let window: Vec<(u64, u32)> = words(code, addr).take(PROLOGUE_WINDOW).collect();
    let load = window.iter().position(|&(_, w)| is(w, LOAD_STACKGUARD))?;
    window[load + 1..]
        .iter()
        .find(|&&(_, w)| is(w, B_LS) || is_simulated(w))
        .filter(|&&(_, w)| is(w, B_LS))
        .map(|&(a, _)| a)
}

/// Where a function's entry probe goes on arm64: a Go function's stack-check `BLS` (simulated,
/// and hits where it is taken are ignored: the call starts again after growing its stack),
/// otherwise the first instruction.
pub fn entry_site(code: &[u8], addr: u64, go: bool) -> Result<EntrySite, String> {
    if go {
        if let Some(branch) = go_stack_check_branch(code, addr) {
            return Ok(EntrySite { addr: branch, handling: Handling::Emulated, stack_check: true, moved: Moved::NONE });
        }
    }
    match probe_handling(code) {
        Handling::Refused(what) => Err(format!("its first instruction is {what}, which the kernel refuses to probe")),
        handling => Ok(EntrySite { addr, handling, stack_check: false, moved: Moved::NONE }),
    }
}

/// Addresses of every RET in the function: every aligned word that encodes one (arm64 code
/// has no variable-length instructions to misalign a probe). Fails on a size that is not a
/// whole number of instructions.
pub fn ret_addresses(code: &[u8], addr: u64) -> Result<Vec<u64>> {
    if !code.len().is_multiple_of(4) || !addr.is_multiple_of(4) {
        bail!("arm64 code at {addr:#x} of {} bytes is not whole 4-byte instructions", code.len());
    }
    Ok(words(code, addr).filter(|&(_, w)| is(w, RET)).map(|(a, _)| a).collect())
}

/// Whether the function calls itself directly (a BL into its own bytes).
pub fn calls_itself(code: &[u8], addr: u64) -> bool {
    let end = addr + code.len() as u64;
    words(code, addr).any(|(at, w)| {
        // imm26, in instructions, sign-extended.
        let offset = (((w & 0x03ff_ffff) << 6) as i32 >> 6) as i64 * 4;
        is(w, BL) && (addr..end).contains(&at.wrapping_add_signed(offset))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    // main.ToString of tests/targets/go/tostring built with GOARCH=arm64 (Go 1.19).
    const GO_PROLOGUE: &[u32] = &[
        0xf940_0b90, // ldr x16, [x28, #16]
        0xeb30_63ff, // cmp sp, x16
        0x5400_0289, // b.ls +0x50
        0xf81b_0ffe, // str x30, [sp, #-80]!
        0xf81f_83fd, // stur x29, [sp, #-8]
        0xd100_23fd, // sub x29, sp, #0x8
        0xd65f_03c0, // ret
    ];
    // A large frame: the compare uses R17 = RSP - n.
    const GO_LARGE_FRAME: &[u32] = &[
        0xf940_0b90, // ldr x16, [x28, #16]
        0xd100_43f1, // sub x17, sp, #0x10
        0xeb10_023f, // cmp x17, x16
        0x5400_27e9, // b.ls
        0xf817_0ffe, // str x30, [sp, #-144]!
    ];

    #[test]
    fn go_entry_is_the_stack_check_branch() {
        let site = entry_site(&bytes(GO_PROLOGUE), 0x9b3f0, true).unwrap();
        assert_eq!(
            site,
            EntrySite { addr: 0x9b3f8, handling: Handling::Emulated, stack_check: true, moved: Moved::NONE }
        );
        let site = entry_site(&bytes(GO_LARGE_FRAME), 0x11060, true).unwrap();
        assert_eq!(
            site,
            EntrySite { addr: 0x1106c, handling: Handling::Emulated, stack_check: true, moved: Moved::NONE }
        );
    }

    #[test]
    fn c_entry_is_the_first_instruction() {
        // stp x29, x30, [sp, #-16]!: single-stepped.
        let code = bytes(&[0xa9bf_7bfd, 0x9100_03fd, 0xd65f_03c0]);
        let site = entry_site(&code, 0x1000, false).unwrap();
        assert_eq!(
            site,
            EntrySite { addr: 0x1000, handling: Handling::SingleStepped, stack_check: false, moved: Moved::NONE }
        );
        // Without a stack check, a Go function starts at its first instruction too.
        let site = entry_site(&code, 0x1000, true).unwrap();
        assert!(!site.stack_check);
    }

    #[test]
    fn rets_are_every_aligned_ret_word() {
        let code = bytes(GO_PROLOGUE);
        assert_eq!(ret_addresses(&code, 0x9b3f0).unwrap(), vec![0x9b408]);
        // ret x1 counts; retaa (pointer authentication) is a different instruction.
        assert_eq!(ret_addresses(&bytes(&[0xd65f_0020, 0xd65f_0bff]), 0).unwrap(), vec![0]);
        assert!(ret_addresses(&code[..6], 0).is_err());
    }

    #[test]
    fn handling_follows_the_kernel_decoder() {
        let of = |w: u32| word_handling(w);
        for simulated in [
            0x1400_0001, // b
            0x9400_0001, // bl
            0x5400_0289, // b.ls
            0xb400_0040, // cbz x0
            0x3700_0040, // tbnz w0, #0
            0xd61f_0200, // br x16
            0xd63f_0200, // blr x16
            0xd65f_03c0, // ret
            0x9000_0001, // adrp x1
        ] {
            assert_eq!(of(simulated), Handling::Emulated, "{simulated:#010x}");
        }
        for stepped in [
            0xa9bf_7bfd, // stp x29, x30, [sp, #-16]!
            0xd100_23fd, // sub x29, sp, #8
            0xf940_0b90, // ldr x16, [x28, #16]
            0xd503_201f, // nop
            0xd503_233f, // paciasp
            0xd503_245f, // bti c
            0xd53b_d040, // mrs x0, tpidr_el0
        ] {
            assert_eq!(of(stepped), Handling::SingleStepped, "{stepped:#010x}");
        }
        for refused in [
            0x5800_0040, // ldr x0, literal
            0xc85f_7c20, // ldxr x0, [x1]
            0xd400_0001, // svc #0
            0xd420_0000, // brk #0
            0xd51b_4220, // msr daif, x0
            0xd53b_4220, // mrs x0, daif
            0xd503_23bf, // autiasp
            0xd65f_0bff, // retaa
        ] {
            assert!(matches!(of(refused), Handling::Refused(_)), "{refused:#010x}");
        }
    }

    #[test]
    fn recursion_is_a_bl_into_the_function() {
        // 0x1000: bl 0x1000 (offset 0); 0x1004: bl 0x2000 (elsewhere).
        assert!(calls_itself(&bytes(&[0x9400_0000, 0xd65f_03c0]), 0x1000));
        assert!(!calls_itself(&bytes(&[0xd503_201f, 0x9400_03ff, 0xd65f_03c0]), 0x1000));
    }
}
