//! What a probe site is, whatever the architecture: how the kernel handles the instruction,
//! and where a function's entry probe goes.
use iced_x86::Register;

/// What the kernel does with a uprobe on an instruction: a few instructions are emulated in the
/// trap handler; every other one is copied out of line and
/// single-stepped, a second exception that costs several microseconds under virtualisation;
/// some are refused outright (the attach fails, or with -c the probe is silently never
/// installed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Handling {
    Emulated,
    SingleStepped,
    Refused(&'static str),
}

impl Handling {
    pub fn is_emulated(self) -> bool {
        self == Handling::Emulated
    }
}

/// Where a function's entry probe goes, and what the kernel does there (x86-64: chosen by
/// x86_64/entry_site.rs; arm64: aarch64.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntrySite {
    pub addr: u64,
    pub handling: Handling,
    /// The site is the `JBE` of a Go stack check: hits where the jump is taken are ignored.
    pub stack_check: bool,
    /// Registers of the measured value that the instructions before the site copied elsewhere
    /// and then overwrote: read the copy there.
    pub moved: Moved,
}

/// Up to two (the register at the function's start, the register holding its value at the
/// entry site); a Go string has two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved(pub [Option<(Register, Register)>; 2]);

impl Moved {
    pub const NONE: Moved = Moved([None, None]);

    /// Where the value that was in `r` at the start is at the site.
    pub fn find(&self, r: Register) -> Register {
        self.0.iter().flatten().find(|(from, _)| *from == r).map_or(r, |&(_, to)| to)
    }
}
