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

/// What the programs read at an entry site besides the value argdist measures: a filter's
/// arguments (`sources`), the return address, and (`--by stack`) the frame pointer.
pub struct AlsoReads<'a> {
    pub sources: &'a [ValueSource],
    pub return_address: bool,
    pub frame_pointer: bool,
}

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
    also: &AlsoReads<'_>,
    value: Option<ValueSource>,
) -> Result<(EntrySite, Option<ValueSource>), String> {
    #[cfg(target_arch = "x86_64")]
    {
        use x86_64::entry_site::{entry_site, moved_source, Reads};
        let mut reads = Reads::of(also.sources, also.return_address, value);
        if also.frame_pointer {
            reads.registers.push(iced_x86::Register::RBP);
        }
        entry_site(code, addr, go, &reads, whole).map(|site| (site, value.map(|v| moved_source(v, &site.moved))))
    }
    // arm64's entry site is a branch or the first instruction: nothing is skipped over, so
    // nothing read there can be clobbered or moved.
    #[cfg(target_arch = "aarch64")]
    {
        let _ = (whole, also);
        aarch64::entry_site(code, addr, go).map(|site| (site, value))
    }
}

/// Whether a function's code starts by setting up a frame pointer: `push %rbp; mov %rsp,%rbp`
/// (after an `endbr64`) on x86-64, `stp x29, x30, [sp, #-N]!; mov x29, sp` on arm64. A C
/// program built without `-fno-omit-frame-pointer` has almost none.
pub fn sets_frame_pointer(code: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let code = code.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa][..]).unwrap_or(code);
        code.starts_with(&[0x55, 0x48, 0x89, 0xe5])
    }
    #[cfg(target_arch = "aarch64")]
    {
        let word = |i: usize| code.get(i * 4..i * 4 + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
        // paciasp first, then STP x29, x30 pre-indexed and MOV x29, sp (ADD x29, sp, #0).
        let start = if word(0) == Some(0xd503233f) { 1 } else { 0 };
        let stp = word(start).is_some_and(|w| w & 0xffc07fff == 0xa9807bfd);
        stp && word(start + 1) == Some(0x910003fd)
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
