//! Calling conventions: where the N-th integer argument and the return value live.
use crate::error::user;
use crate::resolve::elf::{Binary, Runtime};
use anyhow::Result;
use probe_ebpf::{Reg, ValueSource};
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

/// x86-64: Go's register ABI passes integers in these, System V in these (also what
/// resolve::params lays declared parameters out in, which it does for x86-64 only).
pub(crate) const X86_GO_REGISTER_ARGS: [Reg; 9] =
    [Reg::Rax, Reg::Rbx, Reg::Rcx, Reg::Rdi, Reg::Rsi, Reg::R8, Reg::R9, Reg::R10, Reg::R11];
pub(crate) const X86_SYSV_ARGS: [Reg; 6] = [Reg::Rdi, Reg::Rsi, Reg::Rdx, Reg::Rcx, Reg::R8, Reg::R9];
#[cfg(target_arch = "x86_64")]
const GO_REGISTER_ARGS: [Reg; 9] = X86_GO_REGISTER_ARGS;
#[cfg(target_arch = "x86_64")]
const SYSV_ARGS: [Reg; 6] = X86_SYSV_ARGS;
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
        Abi::of_runtime(&binary.runtime, function_name)
    }

    /// The convention of `function_name` in a program of this runtime (what decides it, apart
    /// from the file: testable without one).
    fn of_runtime(runtime: &Runtime, function_name: &str) -> Abi {
        match runtime {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::report;
    use crate::resolve::go::{GoBuildInfo, GoVersion};

    fn go(version: Option<(u32, u32)>) -> Runtime {
        let version = version.map(|(major, minor)| GoVersion { major, minor });
        Runtime::Go(GoBuildInfo { version, ..GoBuildInfo::default() })
    }

    fn regs(abi: Abi, n: u32) -> Vec<ValueSource> {
        (0..n).map(|i| abi.arg_source(i).unwrap()).collect()
    }

    #[test]
    fn go_1_17_and_later_pass_arguments_in_nine_registers() {
        use Reg::*;
        let expected = [Rax, Rbx, Rcx, Rdi, Rsi, R8, R9, R10, R11].map(ValueSource::Reg);
        assert_eq!(regs(Abi::GoRegister, 9), expected);
    }

    #[test]
    fn system_v_passes_arguments_in_six_registers() {
        use Reg::*;
        assert_eq!(regs(Abi::SystemV, 6), [Rdi, Rsi, Rdx, Rcx, R8, R9].map(ValueSource::Reg));
    }

    #[test]
    fn go_stack_arguments_are_words_above_the_return_address() {
        assert_eq!(Abi::GoStack.arg_source(0).unwrap(), ValueSource::Stack { offset: 8 });
        assert_eq!(Abi::GoStack.arg_source(1).unwrap(), ValueSource::Stack { offset: 16 });
        assert_eq!(Abi::GoStack.arg_source(15).unwrap(), ValueSource::Stack { offset: 128 });
    }

    #[test]
    fn an_argument_past_the_last_is_bad_input_naming_the_range() {
        for (abi, first_out, message) in [
            (Abi::GoRegister, 9, "--arg 9: out of range for the Go register ABI (integer arguments 0..=8)"),
            (Abi::SystemV, 6, "--arg 6: out of range for the System V ABI (integer arguments 0..=5)"),
            (Abi::GoStack, 16, "--arg 16: out of range for the Go stack ABI (integer arguments 0..=15)"),
        ] {
            for n in [first_out, first_out + 1, u32::MAX] {
                let (code, line) = report(&abi.arg_source(n).unwrap_err());
                assert_eq!(code, 2, "{abi} --arg {n}: bad input, exit code 2");
                assert!(!line.contains('\n'), "one line: {line}");
                assert!(line.ends_with("; pick a smaller N"), "{line}");
                if n == first_out {
                    assert!(line.starts_with(message), "{line}");
                }
            }
        }
    }

    #[test]
    fn the_runtime_and_the_name_decide_the_convention() {
        assert_eq!(Abi::of_runtime(&Runtime::Native, "main"), Abi::SystemV);
        assert_eq!(Abi::of_runtime(&Runtime::Native, "f.abi0"), Abi::SystemV);
        assert_eq!(Abi::of_runtime(&go(Some((1, 19))), "main.ToString"), Abi::GoRegister);
        assert_eq!(Abi::of_runtime(&go(Some((1, 17))), "main.ToString"), Abi::GoRegister);
        assert_eq!(Abi::of_runtime(&go(Some((1, 16))), "main.ToString"), Abi::GoStack);
        // Assembly functions keep the stack ABI in every Go version.
        assert_eq!(Abi::of_runtime(&go(Some((1, 23))), "main.Add.abi0"), Abi::GoStack);
        // A Go program whose version cannot be read: the register ABI of every Go built today.
        assert_eq!(Abi::of_runtime(&go(None), "main.ToString"), Abi::GoRegister);
        assert!(Abi::GoRegister.is_go() && Abi::GoStack.is_go() && !Abi::SystemV.is_go());
    }
}
