//! `latency --slower-than` and `--events`: the calls that leave the kernel one by one, through
//! a ring buffer, besides being counted in the histogram. Which calls (the threshold, the
//! filter) and their arguments are decided in the kernel; a call the buffer cannot take is
//! counted per slot in `EVENT_DROPS`, never silently lost.

/// Arguments an event carries at most (`--arg`, repeatable).
pub const MAX_EVENT_ARGS: usize = 4;
/// Bytes of a string argument an event carries (a C string: one fewer, and its NUL).
pub const EVENT_TEXT_BYTES: usize = 64;

/// One call, as the exit program sends it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) at the call's return.
    pub ktime_ns: u64,
    /// Its duration in nanoseconds, corrected for the probes' cost as the histogram's.
    pub latency_ns: u64,
    /// Go: the goroutine id read from `g` (`EVENT_GOID` says it was read).
    pub goid: u64,
    pub pid: u32,
    pub tid: u32,
    pub slot: u32,
    /// `EVENT_` bits: what was read.
    pub flags: u32,
    /// The slot's `--arg`s, read at the entry, as declared (`EventSources::args`).
    pub args: [i64; MAX_EVENT_ARGS],
    /// `--ret`: the result, read at the return.
    pub ret: i64,
    /// `--stack`: the call's stack, by its hash in `STACK_FRAMES` (`EVENT_STACK` says it was
    /// stored).
    pub stack: u64,
    /// A string argument's first bytes (`EventSources::text`), `text_len[i]` of them, read at
    /// the return from where the entry found the string (`EVENT_TEXT_CUT << i`: it is longer).
    pub text: [[u8; EVENT_TEXT_BYTES]; MAX_EVENT_ARGS],
    pub text_len: [u32; MAX_EVENT_ARGS],
}

/// `Event::flags`: the goroutine id was read.
pub const EVENT_GOID: u32 = 1;
/// The result was read.
pub const EVENT_RET: u32 = 2;
/// The entry's arguments were not found at the exit (their entry was evicted): `args` are 0.
pub const EVENT_ARGS_LOST: u32 = 4;
/// `--stack`: the stack was walked and stored under `Event::stack` (else it could not be: more
/// distinct stacks than probe keeps, or a hash collision).
pub const EVENT_STACK: u32 = 8;
/// `EVENT_ARG_READ << i`: argument i was read (else unreadable).
pub const EVENT_ARG_READ: u32 = 1 << 8;
/// `EVENT_TEXT_CUT << i`: string argument i is longer than the bytes the event has of it (a C
/// string: at least `EVENT_TEXT_BYTES - 1` bytes long).
pub const EVENT_TEXT_CUT: u32 = 1 << 16;

/// What the events of one slot read, at `EVENT_SOURCES[slot]`: `nargs` arguments at the
/// entry and (`ret` != 0) the result at the return, each a `ValueCookie` encoding (source and
/// width; its slot unused).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSources {
    pub args: [u64; MAX_EVENT_ARGS],
    pub result: u64,
    pub nargs: u32,
    pub ret: u32,
    /// Bit i: argument i is a string shown as its text (`args[i]` is where the string is: a Go
    /// string's registers, a C `char *`, or a path ending at either).
    pub text: u32,
    pub _pad: u32,
}

impl EventSources {
    pub const NONE: EventSources =
        EventSources { args: [0; MAX_EVENT_ARGS], result: 0, nargs: 0, ret: 0, text: 0, _pad: 0 };
}

/// The arguments of one in-flight call, stashed at its entry for its exit: keyed by the
/// call's `EntryKey` and frame depth, so recursive calls each have their own.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventArgsKey {
    pub tgid: u32,
    pub slot: u32,
    pub context: u64,
    pub depth: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventArgs {
    /// The values; a string's length (-1: a C string's, not known before its bytes are read).
    pub values: [i64; MAX_EVENT_ARGS],
    /// A string's address, its bytes read at the return (`EventSources::text`).
    pub text_at: [u64; MAX_EVENT_ARGS],
    /// `EVENT_ARG_READ << i` for each argument read.
    pub read: u32,
    pub _pad: u32,
}

impl EventArgs {
    pub const NONE: EventArgs =
        EventArgs { values: [0; MAX_EVENT_ARGS], text_at: [0; MAX_EVENT_ARGS], read: 0, _pad: 0 };
}

/// The settings of the events, a read-only global the loader sets (`GLOBAL_EVENTS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventConfig {
    /// Non-zero: send the calls of at least `min_ns` (after correction) to `EVENTS`.
    pub on: u32,
    /// Non-zero: some slot has `--arg`s, stashed at the entry.
    pub args: u32,
    pub min_ns: u64,
    /// Offset of `goid` in Go's `runtime.g` (0: not read).
    pub goid_offset: u64,
    /// Slots below this are the trace's (probe's own calibration slots come after).
    pub slots: u32,
    /// Non-zero: each event carries its stack (`--stack`).
    pub stack: u32,
    /// The most `--arg`s of any slot, and bit i if argument i of any slot is a string shown as
    /// text: read-only, so the verifier follows only the reads a run can make (a string's
    /// read, followed at every argument, added half a second to the start).
    pub nargs: u32,
    pub text: u32,
}

impl EventConfig {
    pub const OFF: EventConfig =
        EventConfig { on: 0, args: 0, min_ns: 0, goid_offset: 0, slots: 0, stack: 0, nargs: 0, text: 0 };
}
