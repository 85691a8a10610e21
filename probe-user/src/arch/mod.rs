//! The architecture this `probe` is built for, which is the one it traces: its embedded eBPF
//! object reads that architecture's saved registers (probe-user/build.rs), so an x86-64 probe
//! traces x86-64 programs and an aarch64 probe aarch64 ones. This module is the one interface
//! to the machine code, and the one place that picks the architecture: `code` is its module
//! (`ret_addresses`, `calls_itself`, `probe_handling`), `entry_site` where an entry probe goes.
//! Both machine-code modules are built on every host, so each is unit-tested everywhere.
pub mod aarch64;
mod site;
pub mod x86_64;

pub use site::{EntrySite, Handling, Moved};

use probe_ebpf::ValueSource;

#[cfg(target_arch = "aarch64")]
pub use aarch64 as code;
#[cfg(target_arch = "x86_64")]
pub use x86_64 as code;

/// The entry probe's site in `code` (a function at `addr`; `whole`: its size is known), or why
/// there is none. The programs read there `also` (a filter's arguments), the return address
/// when `return_address`, and `value`, the value argdist measures (None for latency and
/// uretprobes, which depend on SP); returned with where `value` is at the site, since the
/// instructions skipped over may move it to another register.
pub fn entry_site(
    code: &[u8],
    addr: u64,
    go: bool,
    whole: bool,
    also: &[ValueSource],
    return_address: bool,
    value: Option<ValueSource>,
) -> Result<(EntrySite, Option<ValueSource>), String> {
    #[cfg(target_arch = "x86_64")]
    {
        use x86_64::entry_site::{entry_site, moved_source, Reads};
        let reads = Reads::of(also, return_address, value);
        entry_site(code, addr, go, &reads, whole).map(|site| (site, value.map(|v| moved_source(v, &site.moved))))
    }
    // arm64's entry site is a branch or the first instruction: nothing is skipped over, so
    // nothing read there can be clobbered or moved.
    #[cfg(target_arch = "aarch64")]
    {
        let _ = (whole, also, return_address);
        aarch64::entry_site(code, addr, go).map(|site| (site, value))
    }
}

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
pub const RET_HANDLING: Handling = Handling::SingleStepped;
#[cfg(target_arch = "aarch64")]
pub const RET_HANDLING: Handling = Handling::Emulated;

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
