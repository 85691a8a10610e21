//! Calling conventions: where the N-th integer argument and the return value live.
use crate::error::user;
use crate::target::elf::{Binary, Runtime};
use anyhow::Result;
#[cfg(target_arch = "x86_64")]
use probe_ebpf::Reg;
use probe_ebpf::ValueSource;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    /// Go >= 1.17 ABIInternal on amd64.
    GoRegister,
    /// Go < 1.17, and assembly (`.abi0`) functions: arguments on the stack at SP+8, SP+16, ...
    GoStack,
    /// C, C++, Rust and everything else.
    SystemV,
}

#[cfg(target_arch = "x86_64")]
const GO_REGISTER_ARGS: [Reg; 9] =
    [Reg::Rax, Reg::Rbx, Reg::Rcx, Reg::Rdi, Reg::Rsi, Reg::R8, Reg::R9, Reg::R10, Reg::R11];
#[cfg(target_arch = "x86_64")]
const SYSV_ARGS: [Reg; 6] = [Reg::Rdi, Reg::Rsi, Reg::Rdx, Reg::Rcx, Reg::R8, Reg::R9];
/// arm64: Go's register ABI passes integers in R0-R15, AAPCS64 (C) in X0-X7.
#[cfg(target_arch = "aarch64")]
const GO_REGISTER_ARGS: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
#[cfg(target_arch = "aarch64")]
const SYSV_ARGS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

#[cfg(target_arch = "x86_64")]
fn register_source(r: Reg) -> ValueSource {
    ValueSource::Reg(r)
}
#[cfg(target_arch = "aarch64")]
fn register_source(n: u8) -> ValueSource {
    ValueSource::Arm64Reg(n)
}
/// Stack-ABI words probe will read; beyond this a typo is likelier than a real argument.
const GO_STACK_MAX_ARGS: u32 = 16;

impl Abi {
    pub fn of(binary: &Binary, function_name: &str) -> Abi {
        match &binary.runtime {
            Runtime::Native => Abi::SystemV,
            Runtime::Go(_) if function_name.ends_with(".abi0") => Abi::GoStack,
            // Unknown version: every Go that can still be built today uses the register ABI.
            Runtime::Go(info) if info.version.is_none_or(|v| v.has_register_abi()) => Abi::GoRegister,
            Runtime::Go(_) => Abi::GoStack,
        }
    }

    pub fn is_go(self) -> bool {
        self != Abi::SystemV
    }

    /// Where argument `n` (0-based) is at the function's entry (before it moves SP).
    pub fn arg_source(self, n: u32) -> Result<ValueSource> {
        let out_of_range = |max: usize| {
            user(format!(
                "--arg {n}: out of range for the {self} (integer arguments 0..={}); pick a smaller N",
                max - 1
            ))
        };
        match self {
            Abi::GoRegister => GO_REGISTER_ARGS
                .get(n as usize)
                .map(|&r| register_source(r))
                .ok_or_else(|| out_of_range(GO_REGISTER_ARGS.len())),
            Abi::SystemV => {
                SYSV_ARGS.get(n as usize).map(|&r| register_source(r)).ok_or_else(|| out_of_range(SYSV_ARGS.len()))
            }
            Abi::GoStack if n < GO_STACK_MAX_ARGS => Ok(ValueSource::Stack { offset: 8 + 8 * n }),
            Abi::GoStack => Err(out_of_range(GO_STACK_MAX_ARGS as usize)),
        }
    }
}

impl fmt::Display for Abi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Abi::GoRegister => "Go register ABI",
            Abi::GoStack => "Go stack ABI",
            #[cfg(target_arch = "x86_64")]
            Abi::SystemV => "System V ABI",
            #[cfg(target_arch = "aarch64")]
            Abi::SystemV => "AAPCS64 ABI",
        })
    }
}
