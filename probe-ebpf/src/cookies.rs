//! What one attach site is, carried in its BPF cookie so one program serves every site: where
//! a value is read, and what a latency site does.

/// x86-64 registers a value can be read from. The union of the System V and Go register ABIs'
/// integer argument registers.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Rax = 0,
    Rbx = 1,
    Rcx = 2,
    Rdx = 3,
    Rsi = 4,
    Rdi = 5,
    R8 = 6,
    R9 = 7,
    R10 = 8,
    R11 = 9,
}

impl Reg {
    pub const ALL: [Reg; 10] =
        [Reg::Rax, Reg::Rbx, Reg::Rcx, Reg::Rdx, Reg::Rsi, Reg::Rdi, Reg::R8, Reg::R9, Reg::R10, Reg::R11];

    pub fn from_u8(v: u8) -> Option<Reg> {
        Reg::ALL.get(v as usize).copied()
    }
}

/// arm64 general registers a value can be read from: X0-X15 (AAPCS64 passes integers in X0-X7,
/// Go's register ABI in R0-R15).
pub const ARM64_VALUE_REGS: u8 = 16;

/// Where the measured value lives when the probe fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueSource {
    Reg(Reg),
    /// Xn of arm64, n < `ARM64_VALUE_REGS`. A separate kind, so the x86-64 object's register
    /// read stays one fixed-offset load per `Reg` (the verifier rejects computed offsets).
    Arm64Reg(u8),
    /// The 8 bytes at user stack pointer + offset.
    Stack {
        offset: u32,
    },
    /// A Go string in two registers: its bytes (`--count`), or as a number its length.
    GoString {
        ptr: Reg,
        len: Reg,
    },
    /// A NUL-terminated C string (`--count` only).
    CString {
        ptr: Reg,
    },
    /// A C string whose pointer is the 8 bytes at user stack pointer + offset (a 7th argument).
    CStringOnStack {
        offset: u32,
    },
    /// A value inside the argument `base` points to: path `index` of `FieldPaths`.
    Path {
        base: Reg,
        index: u8,
    },
}

/// How a value narrower than a register is read: the upper bits of a register (or the bytes
/// after it on the stack) are not part of it, and both ABIs leave them unspecified.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 64 bits, signed (or of unknown signedness: a register word).
    W64 = 0,
    I32 = 1,
    U32 = 2,
    I16 = 3,
    U16 = 4,
    I8 = 5,
    U8 = 6,
    /// 64 bits, unsigned: compared, aggregated and shown as unsigned (`ValueStats::unsigned`).
    U64 = 7,
}

impl Width {
    pub const ALL: [Width; 8] =
        [Width::W64, Width::I32, Width::U32, Width::I16, Width::U16, Width::I8, Width::U8, Width::U64];

    /// The width with discriminant `w`. Not `Width::ALL.get(w)`: for a 3-bit `w` the optimiser
    /// turns that into a read of a table in read-only data guarded only by `w != 7`, which
    /// verifiers before 6.8 cannot use to bound the read (Linux 6.1 refused the program).
    #[inline(always)]
    pub fn from_bits(w: u64) -> Option<Width> {
        if w > Width::U64 as u64 {
            return None;
        }
        // A discriminant of this `repr(u8)` enum, checked just above.
        Some(unsafe { core::mem::transmute::<u8, Width>(w as u8) })
    }

    /// Bytes of memory the value takes (8 for a whole word).
    #[inline(always)]
    pub fn bytes(self) -> u64 {
        let w = self as u64;
        if w == 0 || w == 7 {
            return 8;
        }
        4 >> ((w - 1) / 2)
    }

    /// The width of an integer of `size` bytes (1, 2, 4; anything else reads all 64 bits).
    pub fn of(size: u64, signed: bool) -> Width {
        match (size, signed) {
            (8, false) => Width::U64,
            (4, true) => Width::I32,
            (4, false) => Width::U32,
            (2, true) => Width::I16,
            (2, false) => Width::U16,
            (1, true) => Width::I8,
            (1, false) => Width::U8,
            _ => Width::W64,
        }
    }

    /// The value of the low bytes of `raw`, sign- or zero-extended.
    ///
    /// Arithmetic on the discriminant, not a `match`: the optimiser turns a `match` into a
    /// lookup table in read-only data indexed by the discriminant, whose range the verifiers
    /// before 6.8 cannot bound ("R2 max value is outside of the allowed memory range").
    /// Odd discriminants 1-5 are signed; 1-2 are 4 bytes wide, 3-4 two, 5-6 one; 0 and 7 all 8.
    /// A `U64` value keeps its bits in the i64: its readers know it is unsigned.
    #[inline(always)]
    pub fn extend(self, raw: u64) -> i64 {
        let w = self as u64;
        if w == 0 || w == 7 {
            return raw as i64;
        }
        let shift = 64 - (32 >> ((w - 1) / 2));
        let up = raw << shift;
        if w & 1 == 1 {
            (up as i64) >> shift
        } else {
            (up >> shift) as i64
        }
    }
}

/// What one attach site measures, carried in its BPF attach cookie so a single program serves
/// every site. Layout: bits 0..16 slot, 16..20 source kind (0 x86-64 register, 1 stack, 2 Go
/// string, 3 C string, 4 arm64 register, 5 C string pointer on the stack, 6 a path
/// from a register), bit 20 the site is a
/// Go stack-check branch, 21..24 width, 24..32 register (a string's pointer), 32..40 a Go
/// string's length register or a path's index, 32..64 stack offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueCookie {
    pub slot: u32,
    pub source: ValueSource,
    /// The site is the conditional jump of a Go stack check: see `stack_check_taken`.
    pub stack_check: bool,
    /// How much of the register or stack word is the value (integers narrower than 64 bits).
    pub width: Width,
}

impl ValueCookie {
    pub fn encode(self) -> u64 {
        let slot = (self.slot as u64) & 0xffff;
        let check = (self.stack_check as u64) << 20 | (self.width as u64) << 21;
        match self.source {
            ValueSource::Reg(r) => slot | check | ((r as u64) << 24),
            ValueSource::Stack { offset } => slot | (1 << 16) | check | ((offset as u64) << 32),
            ValueSource::GoString { ptr, len } => {
                slot | (2 << 16) | check | ((ptr as u64) << 24) | ((len as u64) << 32)
            }
            ValueSource::CString { ptr } => slot | (3 << 16) | check | ((ptr as u64) << 24),
            ValueSource::Arm64Reg(n) => slot | (4 << 16) | check | ((n as u64) << 24),
            ValueSource::CStringOnStack { offset } => slot | (5 << 16) | check | ((offset as u64) << 32),
            ValueSource::Path { base, index } => {
                slot | (6 << 16) | check | ((base as u64) << 24) | ((index as u64) << 32)
            }
        }
    }

    #[inline(always)]
    pub fn decode(cookie: u64) -> Option<ValueCookie> {
        let slot = (cookie & 0xffff) as u32;
        let source = match (cookie >> 16) & 0xf {
            0 => ValueSource::Reg(Reg::from_u8((cookie >> 24) as u8)?),
            1 => ValueSource::Stack { offset: (cookie >> 32) as u32 },
            2 => ValueSource::GoString {
                ptr: Reg::from_u8((cookie >> 24) as u8)?,
                len: Reg::from_u8((cookie >> 32) as u8)?,
            },
            3 => ValueSource::CString { ptr: Reg::from_u8((cookie >> 24) as u8)? },
            4 if ((cookie >> 24) as u8) < ARM64_VALUE_REGS => ValueSource::Arm64Reg((cookie >> 24) as u8),
            5 => ValueSource::CStringOnStack { offset: (cookie >> 32) as u32 },
            6 if (((cookie >> 32) & 0xff) as usize) < crate::MAX_PATHS => {
                ValueSource::Path { base: Reg::from_u8((cookie >> 24) as u8)?, index: ((cookie >> 32) & 0xff) as u8 }
            }
            _ => return None,
        };
        let width = Width::from_bits((cookie >> 21) & 0x7)?;
        Some(ValueCookie { slot, source, stack_check: cookie & (1 << 20) != 0, width })
    }
}

/// x86 EFLAGS bits the `JBE` of a Go stack check tests: carry and zero.
const EFLAGS_CF: u64 = 1 << 0;
const EFLAGS_ZF: u64 = 1 << 6;

/// At a Go stack check's `JBE` (probed because the kernel emulates a branch instead of
/// single-stepping it), whether the jump to `morestack` is about to be taken: the call will
/// grow its stack (or yield to a preemption request) and start again from its first byte, so
/// this hit must be ignored for the call to count once.
#[inline(always)]
pub fn stack_check_taken(eflags: u64) -> bool {
    eflags & (EFLAGS_CF | EFLAGS_ZF) != 0
}

/// arm64 PSTATE condition flags the `BLS` of a Go stack check tests: zero and carry.
const PSTATE_Z: u64 = 1 << 30;
const PSTATE_C: u64 = 1 << 29;

/// `stack_check_taken` for arm64's `CMP R16, RSP; BLS morestack`: BLS ("lower or same") is
/// taken when C is clear or Z is set.
#[inline(always)]
pub fn stack_check_taken_arm64(pstate: u64) -> bool {
    pstate & PSTATE_C == 0 || pstate & PSTATE_Z != 0
}

/// What a latency attach site is, carried in its cookie. Layout: bits 0..24 slot, bit 24 exit,
/// bit 25 Go (key by goroutine), bit 26 uretprobe (SP is 8 above the entry's), bit 27 the entry
/// is a Go stack-check branch (`stack_check_taken`), bit 28 the entry's instruction is
/// single-stepped, bit 29 the site is probe's own calibration function (`raw`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyCookie {
    pub slot: u32,
    pub exit: bool,
    pub go: bool,
    pub uretprobe: bool,
    pub stack_check: bool,
    pub entry_stepped: bool,
    /// Durations recorded as measured, nothing subtracted: probe's calibration sites, whose
    /// durations are the probes' cost being measured while the trace's are corrected by it.
    pub raw: bool,
}

impl LatencyCookie {
    pub fn encode(self) -> u64 {
        (self.slot as u64 & 0xff_ffff)
            | (self.exit as u64) << 24
            | (self.go as u64) << 25
            | (self.uretprobe as u64) << 26
            | (self.stack_check as u64) << 27
            | (self.entry_stepped as u64) << 28
            | (self.raw as u64) << 29
    }

    #[inline(always)]
    pub fn decode(cookie: u64) -> LatencyCookie {
        LatencyCookie {
            slot: (cookie & 0xff_ffff) as u32,
            exit: cookie & (1 << 24) != 0,
            go: cookie & (1 << 25) != 0,
            uretprobe: cookie & (1 << 26) != 0,
            stack_check: cookie & (1 << 27) != 0,
            entry_stepped: cookie & (1 << 28) != 0,
            raw: cookie & (1 << 29) != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn cookie_round_trips() {
        for c in [
            ValueCookie { slot: 3, source: ValueSource::Reg(Reg::R11), stack_check: false, width: Width::W64 },
            ValueCookie { slot: 0, source: ValueSource::Reg(Reg::Rax), stack_check: true, width: Width::W64 },
            ValueCookie { slot: 63, source: ValueSource::Stack { offset: 8 }, stack_check: false, width: Width::W64 },
            ValueCookie {
                slot: 1,
                source: ValueSource::Stack { offset: 0xffff_fff8 },
                stack_check: true,
                width: Width::W64,
            },
            ValueCookie {
                slot: 2,
                source: ValueSource::GoString { ptr: Reg::Rax, len: Reg::Rbx },
                stack_check: true,
                width: Width::W64,
            },
            ValueCookie {
                slot: 9,
                source: ValueSource::CString { ptr: Reg::Rsi },
                stack_check: false,
                width: Width::W64,
            },
        ] {
            assert_eq!(ValueCookie::decode(c.encode()), Some(c));
        }
        let on_stack = ValueCookie {
            slot: 4,
            source: ValueSource::CStringOnStack { offset: 8 },
            stack_check: false,
            width: Width::W64,
        };
        assert_eq!(ValueCookie::decode(on_stack.encode()), Some(on_stack));
        let path = ValueCookie {
            slot: 2,
            source: ValueSource::Path { base: Reg::Rax, index: 7 },
            stack_check: true,
            width: Width::U32,
        };
        assert_eq!(ValueCookie::decode(path.encode()), Some(path));
        assert_eq!(ValueCookie::decode((6 << 16) | (8 << 32)), None, "no such path");
        assert_eq!(ValueCookie::decode(7 << 16), None, "no such source kind");
        assert_eq!(ValueCookie::decode((2 << 16) | (10 << 32)), None, "no such length register");
        assert_eq!(ValueCookie::decode(7 << 21).map(|c| c.width), Some(Width::U64));
        let narrow = ValueCookie { slot: 1, source: ValueSource::Reg(Reg::Rdi), stack_check: false, width: Width::U8 };
        assert_eq!(ValueCookie::decode(narrow.encode()), Some(narrow));
        assert_eq!(Width::I32.extend(0xdead_beef_ffff_fffe), -2);
        assert_eq!(Width::U8.extend(0x1ff), 255);
        assert_eq!(Width::I8.extend(0x1ff), -1);
        assert_eq!(Width::W64.extend(u64::MAX), -1);
        assert!(Width::ALL.iter().all(|&w| Width::from_bits(w as u64) == Some(w)));
        assert_eq!(Width::from_bits(8), None);
        assert_eq!(Width::U64.extend(u64::MAX) as u64, u64::MAX);
        assert_eq!(Width::of(8, false), Width::U64);
        assert_eq!(Width::U32.extend(0xdead_beef_ffff_fffe), 0xffff_fffe);
        assert_eq!(Width::I16.extend(0x1_8000), -32768);
        assert_eq!(Width::U16.extend(0x1_8000), 32768);
        let bytes: [u64; 8] = Width::ALL.map(Width::bytes);
        assert_eq!(bytes, [8, 4, 4, 2, 2, 1, 1, 8]);
    }

    #[test]
    fn latency_cookie_round_trips() {
        for c in [
            LatencyCookie {
                slot: 0,
                exit: false,
                go: true,
                uretprobe: false,
                stack_check: true,
                entry_stepped: false,
                raw: true,
            },
            LatencyCookie {
                slot: 999,
                exit: true,
                go: false,
                uretprobe: true,
                stack_check: false,
                entry_stepped: true,
                raw: false,
            },
        ] {
            assert_eq!(LatencyCookie::decode(c.encode()), c);
        }
    }

    #[test]
    fn stack_check_is_taken_exactly_when_jbe_jumps() {
        // CMP SP, stackguard: below (CF) or equal (ZF) means morestack; above means the body.
        assert!(stack_check_taken(EFLAGS_CF));
        assert!(stack_check_taken(EFLAGS_ZF | 0x202));
        assert!(!stack_check_taken(0x202)); // IF and the always-one bit only
        assert!(!stack_check_taken(0x286)); // SF, PF: still above for an unsigned compare
    }

    #[test]
    fn arm64_bls_is_taken_when_lower_or_same() {
        // CMP R16, RSP with SP above the guard: C set, Z clear (higher): the body runs.
        assert!(!stack_check_taken_arm64(PSTATE_C));
        assert!(!stack_check_taken_arm64(PSTATE_C | (1 << 31) | 0x3c5)); // N and mode bits do not matter
        assert!(stack_check_taken_arm64(PSTATE_C | PSTATE_Z)); // equal
        assert!(stack_check_taken_arm64(0)); // lower: borrow, C clear
    }

    #[test]
    fn arm64_registers_travel_in_the_cookie() {
        for n in 0..ARM64_VALUE_REGS {
            let cookie =
                ValueCookie { slot: 1, source: ValueSource::Arm64Reg(n), stack_check: true, width: Width::W64 };
            assert_eq!(ValueCookie::decode(cookie.encode()), Some(cookie));
        }
        let beyond = ValueCookie {
            slot: 1,
            source: ValueSource::Arm64Reg(ARM64_VALUE_REGS),
            stack_check: false,
            width: Width::W64,
        };
        assert_eq!(ValueCookie::decode(beyond.encode()), None);
    }
}
