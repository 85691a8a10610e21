//! x86-64 machine-code facts (the interface is arch/mod.rs) that decide where probes may go and what they cost: the Go
//! stack-check prologue, every RET (Go-safe exit sites, instead of uretprobes), and how the
//! kernel handles a uprobe on each instruction (emulated, single-stepped, or refused).
use super::Handling;
use anyhow::{bail, Result};
#[cfg(target_arch = "x86_64")]
pub mod entry_site;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register};

/// Offset of `g.stackguard0` in Go's g struct (R14 holds g in Go code).
const STACKGUARD0: u64 = 0x10;
/// The stack check sits in the first few instructions; looking further finds unrelated code.
const PROLOGUE_WINDOW: usize = 8;

pub fn decode(code: &[u8], addr: u64) -> impl Iterator<Item = Instruction> + '_ {
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    std::iter::from_fn(move || decoder.can_decode().then(|| decoder.decode()))
}

/// The conditional jump of a Go function's `CMP stackguard0; JBE morestack` check, if it has
/// one (NOSPLIT and assembly functions do not).
pub fn go_stack_check_branch(code: &[u8], addr: u64) -> Option<Instruction> {
    let window: Vec<Instruction> = decode(code, addr).take(PROLOGUE_WINDOW + 1).collect();
    for pair in window.windows(2) {
        let (check, branch) = (&pair[0], &pair[1]);
        if check.mnemonic() == Mnemonic::INVALID {
            break;
        }
        if is_stackguard_compare(check) && branch.flow_control() == FlowControl::ConditionalBranch {
            return Some(*branch);
        }
    }
    None
}

/// One-byte opcodes the kernel's x86-64 uprobe decoder refuses (besides the prefix bytes).
const REFUSED_OPCODES: &[u8] = &[
    0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x62, 0x6c, 0x6d, 0x6e, 0x6f, 0x82,
    0xc4, 0xc5, 0xcc, 0xcd, 0xce, 0xcf, 0xd4, 0xd5, 0xd6, 0xe4, 0xe5, 0xe6, 0xe7, 0xec, 0xed, 0xee, 0xef, 0xf1, 0xf4,
    0xfa, 0xfb,
];
/// Second bytes of `0F xx` opcodes it refuses (0F 38 and 0F 3A start three-byte opcodes, all
/// refused).
const REFUSED_0F_OPCODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x18, 0x24, 0x25, 0x26, 0x27,
    0x30, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x78, 0x79, 0x7a, 0x7b, 0x7c, 0x7d,
    0xa6, 0xa7, 0xae, 0xb8, 0xd0, 0xf0, 0xff,
];
const LEGACY_PREFIXES: &[u8] = &[0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3];

/// How the kernel handles a uprobe on the instruction encoded at the start of `bytes`.
pub fn probe_handling(bytes: &[u8]) -> Handling {
    let prefixes: Vec<u8> = bytes.iter().copied().take_while(|b| LEGACY_PREFIXES.contains(b)).collect();
    let mut rest = &bytes[prefixes.len()..];
    let rex = rest.first().copied().filter(|b| (0x40..=0x4f).contains(b));
    if rex.is_some() {
        rest = &rest[1..];
    }
    if prefixes.contains(&0xf0) {
        return Handling::Refused("a LOCK-prefixed (atomic) instruction");
    }
    if prefixes.iter().any(|p| [0x26, 0x2e, 0x36, 0x3e].contains(p)) {
        return Handling::Refused("an instruction with a segment prefix");
    }
    let Some(&opcode) = rest.first() else { return Handling::Refused("a truncated instruction") };
    let operand16 = prefixes.contains(&0x66);
    let branch_or_nop = match opcode {
        0x0f => match rest.get(1) {
            Some(&second) if REFUSED_0F_OPCODES.contains(&second) => {
                return Handling::Refused("an instruction the kernel cannot single-step")
            }
            Some(&second) => (0x80..=0x8f).contains(&second),
            None => return Handling::Refused("a truncated instruction"),
        },
        0xc4 | 0xc5 | 0x62 => return Handling::Refused("an AVX (VEX/EVEX-encoded) instruction"),
        op if REFUSED_OPCODES.contains(&op) => {
            return Handling::Refused("an instruction the kernel cannot single-step")
        }
        0xeb | 0xe9 | 0xe8 | 0x90 | 0x70..=0x7f => true,
        _ => false,
    };
    if branch_or_nop {
        // The kernel emulates jumps, calls, conditional jumps and NOP, but refuses them with an
        // operand-size prefix (66 90 is a common 2-byte NOP).
        return if operand16 { Handling::Refused("a 16-bit branch or NOP (66 prefix)") } else { Handling::Emulated };
    }
    // PUSH reg is emulated with no prefix, or REX.B alone (r8..r15).
    if (0x50..=0x57).contains(&opcode) && prefixes.is_empty() && rex.is_none_or(|r| r == 0x41) {
        return Handling::Emulated;
    }
    Handling::SingleStepped
}

fn is_stackguard_compare(i: &Instruction) -> bool {
    i.mnemonic() == Mnemonic::Cmp
        && (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory)
        && i.memory_base() == Register::R14
        && i.memory_index() == Register::None
        && i.memory_displacement64() == STACKGUARD0
}

/// Addresses of every RET in the function. Fails if the bytes do not decode cleanly, because
/// a probe placed off an instruction boundary would corrupt the traced program.
pub fn ret_addresses(code: &[u8], addr: u64) -> Result<Vec<u64>> {
    let mut rets = Vec::new();
    for i in decode(code, addr) {
        if i.mnemonic() == Mnemonic::INVALID {
            bail!("undecodable instruction at {:#x}", i.ip());
        }
        if i.mnemonic() == Mnemonic::Ret {
            rets.push(i.ip());
        }
    }
    Ok(rets)
}

/// Whether the function calls itself directly (a near CALL into its own bytes): such a
/// function can nest deeper than the kernel's 64 pending uretprobe returns per thread.
pub fn calls_itself(code: &[u8], addr: u64) -> bool {
    let end = addr + code.len() as u64;
    decode(code, addr).any(|i| {
        i.flow_control() == FlowControl::Call
            && i.op0_kind() == OpKind::NearBranch64
            && (addr..end).contains(&i.near_branch_target())
    })
}

#[cfg(test)]
// Go 1.19 prologue: cmp rsp,[r14+0x10]; jbe +N; push rbp; mov rbp,rsp; ...; ret
pub(crate) const GO_PROLOGUE: &[u8] = &[
    0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
    0x76, 0x08, // jbe +8
    0x55, // push rbp
    0x48, 0x89, 0xe5, // mov rbp, rsp
    0x5d, // pop rbp
    0xc3, // ret
    0x90, 0x90, // nop nop (morestack tail stand-in)
    0xe8, 0x00, 0x00, 0x00, 0x00, // call
    0xeb, 0xe8, // jmp start
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handling_follows_the_kernel_tables() {
        let cases: &[(&[u8], Handling)] = &[
            (&[0x55], Handling::Emulated),                        // push rbp
            (&[0x41, 0x57], Handling::Emulated),                  // push r15
            (&[0x48, 0x55], Handling::SingleStepped),             // REX.W push: not emulated
            (&[0x76, 0x08], Handling::Emulated),                  // jbe
            (&[0x0f, 0x86, 0, 0, 0, 0], Handling::Emulated),      // jbe rel32
            (&[0xe8, 0, 0, 0, 0], Handling::Emulated),            // call
            (&[0x90], Handling::Emulated),                        // nop
            (&[0xc3], Handling::SingleStepped),                   // ret
            (&[0x48, 0x83, 0xec, 0x18], Handling::SingleStepped), // sub rsp, 0x18
            (&[0xf3, 0x0f, 0x1e, 0xfa], Handling::SingleStepped), // endbr64
            (&[0x0f, 0x1f, 0x44, 0, 0], Handling::SingleStepped), // nopl
        ];
        for (bytes, want) in cases {
            assert_eq!(probe_handling(bytes), *want, "{bytes:02x?}");
        }
        for refused in [&[0xf0, 0x48, 0x83, 0x05, 0, 0, 0, 0, 1][..], &[0x66, 0x90], &[0x0f, 0x05], &[0xc5, 0xf8, 0x77]]
        {
            assert!(matches!(probe_handling(refused), Handling::Refused(_)), "{refused:02x?}");
        }
    }

    #[test]
    fn recursion_is_a_call_into_the_function_itself() {
        // push rbx; call 0x1000 (itself); pop rbx; ret
        let recursive = [0x53, 0xe8, 0xfa, 0xff, 0xff, 0xff, 0x5b, 0xc3];
        assert!(calls_itself(&recursive, 0x1000));
        // push rbx; call 0x2000 (elsewhere); pop rbx; ret
        let plain = [0x53, 0xe8, 0xfa, 0x0f, 0x00, 0x00, 0x5b, 0xc3];
        assert!(!calls_itself(&plain, 0x1000));
    }

    #[test]
    fn finds_every_ret() {
        assert_eq!(ret_addresses(GO_PROLOGUE, 0x1000).unwrap(), vec![0x100b]);
        let two = [0x85, 0xff, 0x74, 0x01, 0xc3, 0x31, 0xc0, 0xc3]; // test; je; ret; xor; ret
        assert_eq!(ret_addresses(&two, 0).unwrap(), vec![4, 7]);
    }
}
