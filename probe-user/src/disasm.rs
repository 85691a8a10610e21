//! x86-64 machine-code facts that decide where probes may go: the first instruction after a Go
//! stack-check prologue, and every RET (Go-safe exit sites, instead of uretprobes).
use anyhow::{bail, Result};
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register};

/// Offset of `g.stackguard0` in Go's g struct (R14 holds g in Go code).
const STACKGUARD0: u64 = 0x10;
/// The stack check sits in the first few instructions; looking further finds unrelated code.
const PROLOGUE_WINDOW: usize = 8;

fn decode(code: &[u8], addr: u64) -> impl Iterator<Item = Instruction> + '_ {
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    std::iter::from_fn(move || decoder.can_decode().then(|| decoder.decode()))
}

/// Where a Go function's body starts: the instruction after the `CMP stackguard0; JBE` check.
/// A probe there fires once per call, while one at the first byte fires again each time the
/// stack grows (morestack jumps back to the function start). Functions without the check
/// (NOSPLIT, assembly) start at `addr`.
pub fn go_body_entry(code: &[u8], addr: u64) -> u64 {
    let window: Vec<Instruction> = decode(code, addr).take(PROLOGUE_WINDOW + 1).collect();
    for pair in window.windows(2) {
        let (check, branch) = (&pair[0], &pair[1]);
        if check.mnemonic() == Mnemonic::INVALID {
            break;
        }
        if is_stackguard_compare(check) && branch.flow_control() == FlowControl::ConditionalBranch {
            return branch.next_ip();
        }
    }
    addr
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
mod tests {
    use super::*;

    // Go 1.19 prologue: cmp rsp,[r14+0x10]; jbe +N; push rbp; mov rbp,rsp; ...; ret
    const GO_PROLOGUE: &[u8] = &[
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

    #[test]
    fn go_entry_is_after_stack_check() {
        assert_eq!(go_body_entry(GO_PROLOGUE, 0x1000), 0x1006);
    }

    #[test]
    fn nosplit_entry_is_start() {
        let code = [0x48, 0x8b, 0x44, 0x24, 0x08, 0xc3]; // mov rax,[rsp+8]; ret
        assert_eq!(go_body_entry(&code, 0x2000), 0x2000);
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
