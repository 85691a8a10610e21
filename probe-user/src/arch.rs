//! The architecture this `probe` is built for, which is the one it traces: its embedded eBPF
//! object reads that architecture's saved registers (probe-user/build.rs), so an x86-64 probe
//! traces x86-64 programs and an aarch64 probe aarch64 ones. `code` is the machine-code module
//! of that architecture (`ret_addresses`, `calls_itself`, `probe_handling`, `entry_site`).
use probe_ebpf::ValueSource;

#[cfg(target_arch = "x86_64")]
pub use crate::disasm as code;
#[cfg(target_arch = "aarch64")]
pub use crate::disasm_arm64 as code;

#[cfg(target_arch = "x86_64")]
pub const ELF_ARCHITECTURE: object::Architecture = object::Architecture::X86_64;
#[cfg(target_arch = "aarch64")]
pub const ELF_ARCHITECTURE: object::Architecture = object::Architecture::Aarch64;

#[cfg(target_arch = "x86_64")]
pub const NAME: &str = "x86-64";
#[cfg(target_arch = "aarch64")]
pub const NAME: &str = "arm64";

/// Where a function's first integer result is at a RET (Go's register ABI and the C ABI agree).
#[cfg(target_arch = "x86_64")]
pub const RETURN_VALUE: ValueSource = ValueSource::Reg(probe_ebpf::Reg::Rax);
#[cfg(target_arch = "aarch64")]
pub const RETURN_VALUE: ValueSource = ValueSource::Arm64Reg(0);

/// What the kernel does with a RET probe: x86-64 single-steps RET; arm64 simulates it.
#[cfg(target_arch = "x86_64")]
pub const RET_HANDLING: crate::disasm::Handling = crate::disasm::Handling::SingleStepped;
#[cfg(target_arch = "aarch64")]
pub const RET_HANDLING: crate::disasm::Handling = crate::disasm::Handling::Emulated;

/// `e_machine` of the programs and libraries this probe traces (EM_X86_64, EM_AARCH64).
#[cfg(target_arch = "x86_64")]
pub const ELF_MACHINE: u16 = 62;
#[cfg(target_arch = "aarch64")]
pub const ELF_MACHINE: u16 = 183;

/// How `ldconfig -p` tags this architecture's libraries, e.g. `(libc6,x86-64)`.
#[cfg(target_arch = "x86_64")]
pub const LDCONFIG_TAG: &str = "x86-64";
#[cfg(target_arch = "aarch64")]
pub const LDCONFIG_TAG: &str = "AArch64";
