//! What the kernel programs and the `probe` loader must agree on, in one place:
//! map layouts, the attach-cookie encoding and the bucket math.
//!
//! This lib is plain `no_std` Rust with no dependencies. The eBPF object (src/main.rs) and
//! probe-user both compile it, so the two sides can never disagree.
#![no_std]

/// Number of signed log2 buckets, as in SystemTap's `@hist_log`.
pub const LOG2_BUCKETS: usize = 128;
/// The bucket that holds 0. Bucket `ZERO_BUCKET + 1 + k` holds 2^k ..= 2^(k+1)-1, bucket
/// `ZERO_BUCKET - 1 - k` holds -(2^(k+1)-1) ..= -2^k.
pub const ZERO_BUCKET: usize = 64;

/// Map names, shared so a rename cannot split the two sides.
pub const MAP_VALUE_STATS: &str = "VALUE_STATS";
pub const MAP_EPOCH: &str = "EPOCH";
/// Program names in the object (also what `bpftool prog` shows).
pub const PROG_VALUE_UPROBE: &str = "pb_value";
pub const PROG_VALUE_URETPROBE: &str = "pb_value_ret";

/// Index of `slot` in bank `bank` of a stats map (`VALUE_STATS`, `LATENCY_STATS`).
///
/// Every stats map holds two banks per slot, interleaved, and the loader sizes it to
/// `2 * slots`. `EPOCH[0] & 1` names the bank the programs write; the loader flips the epoch
/// at each interval and drains the other bank, so interval tables are exact without resetting
/// a map that programs are writing.
#[inline(always)]
pub fn bank_index(bank: u32, slot: u32) -> u32 {
    slot * 2 + (bank & 1)
}

/// SystemTap's `@hist_log` bucket for a signed 64-bit value (0..=127).
#[inline(always)]
pub fn log2_bucket(v: i64) -> usize {
    if v == 0 {
        return ZERO_BUCKET;
    }
    // floor(log2 |v|); |i64::MIN| = 2^63 fits in u64.
    let k = 63 - v.unsigned_abs().leading_zeros() as usize;
    if v > 0 {
        ZERO_BUCKET + 1 + k
    } else {
        ZERO_BUCKET - 1 - k
    }
}

/// Inclusive value range `(low, high)` that bucket `index` counts.
pub fn log2_bucket_range(index: usize) -> (i64, i64) {
    if index == ZERO_BUCKET {
        return (0, 0);
    }
    if index > ZERO_BUCKET {
        let k = (index - ZERO_BUCKET - 1) as u32;
        let low = 1i128 << k;
        (low as i64, ((low << 1) - 1) as i64)
    } else {
        let k = (ZERO_BUCKET - 1 - index) as u32;
        let high = -(1i128 << k);
        let low = (-((1i128 << (k + 1)) - 1)).max(i64::MIN as i128);
        (low as i64, high as i64)
    }
}

/// The label SystemTap prints for bucket `index`: 0, 2^k or -2^k.
pub fn log2_bucket_label(index: usize) -> i64 {
    let (low, high) = log2_bucket_range(index);
    if index >= ZERO_BUCKET {
        low
    } else {
        high
    }
}

/// Per-CPU aggregate of the values one site group saw: exact count, 128-bit sum, min, max and
/// the `@hist_log` buckets. Zero-initialised by the kernel; `count == 0` means "no values".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueStats {
    pub count: u64,
    /// Sum as a 128-bit two's complement number split in two words (BPF has no i128 add).
    pub sum_lo: u64,
    pub sum_hi: i64,
    pub min: i64,
    pub max: i64,
    /// Hits whose value could not be read (a stack slot that faulted). Not in `count`.
    pub unreadable: u64,
    pub buckets: [u64; LOG2_BUCKETS],
}

impl ValueStats {
    pub const EMPTY: ValueStats =
        ValueStats { count: 0, sum_lo: 0, sum_hi: 0, min: 0, max: 0, unreadable: 0, buckets: [0; LOG2_BUCKETS] };

    /// Adds one value. Used by the kernel program on its per-CPU copy.
    #[inline(always)]
    pub fn record(&mut self, v: i64) {
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        if self.count == 0 || v > self.max {
            self.max = v;
        }
        self.count += 1;
        let (lo, carry) = self.sum_lo.overflowing_add(v as u64);
        self.sum_lo = lo;
        self.sum_hi = self.sum_hi.wrapping_add((v >> 63) + carry as i64);
        // The optimiser proves log2_bucket() < 128 and drops the bounds check, but the BPF
        // verifier cannot follow that proof (it does not model the leading-zeros expansion).
        // A volatile round trip hides the range from the optimiser, so the check stays.
        let index = log2_bucket(v);
        let index = unsafe { core::ptr::read_volatile(&index) };
        if let Some(b) = self.buckets.get_mut(index) {
            *b += 1;
        }
    }

    /// Folds another aggregate (another CPU, another interval) into this one.
    pub fn merge(&mut self, other: &ValueStats) {
        if other.count > 0 {
            if self.count == 0 || other.min < self.min {
                self.min = other.min;
            }
            if self.count == 0 || other.max > self.max {
                self.max = other.max;
            }
        }
        self.count += other.count;
        self.unreadable += other.unreadable;
        let sum = self.sum().wrapping_add(other.sum());
        self.sum_lo = sum as u64;
        self.sum_hi = (sum >> 64) as i64;
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
    }

    pub fn sum(&self) -> i128 {
        ((self.sum_hi as i128) << 64) | self.sum_lo as i128
    }
}

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
}

/// What one attach site measures, carried in its BPF attach cookie so a single program serves
/// every site. Layout: bits 0..16 slot, 16..20 source kind (0 x86-64 register, 1 stack, 2 arm64
/// register), bit 20 the site is a Go stack-check branch, 24..32 register, 32..64 stack offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueCookie {
    pub slot: u32,
    pub source: ValueSource,
    /// The site is the conditional jump of a Go stack check: see `stack_check_taken`.
    pub stack_check: bool,
}

impl ValueCookie {
    pub fn encode(self) -> u64 {
        let slot = (self.slot as u64) & 0xffff;
        let check = (self.stack_check as u64) << 20;
        match self.source {
            ValueSource::Reg(r) => slot | check | ((r as u64) << 24),
            ValueSource::Stack { offset } => slot | (1 << 16) | check | ((offset as u64) << 32),
            ValueSource::Arm64Reg(n) => slot | (2 << 16) | check | ((n as u64) << 24),
        }
    }

    #[inline(always)]
    pub fn decode(cookie: u64) -> Option<ValueCookie> {
        let slot = (cookie & 0xffff) as u32;
        let source = match (cookie >> 16) & 0xf {
            0 => ValueSource::Reg(Reg::from_u8((cookie >> 24) as u8)?),
            1 => ValueSource::Stack { offset: (cookie >> 32) as u32 },
            2 if ((cookie >> 24) as u8) < ARM64_VALUE_REGS => ValueSource::Arm64Reg((cookie >> 24) as u8),
            _ => return None,
        };
        Some(ValueCookie { slot, source, stack_check: cookie & (1 << 20) != 0 })
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

/// Latency: log-linear buckets of nanoseconds, 16 per power of two, for percentiles within a
/// few percent. Values below 16 ns have a bucket each.
pub const FINE_SUB_BITS: u32 = 4;
pub const FINE_SUB: usize = 1 << FINE_SUB_BITS;
pub const FINE_BUCKETS: usize = FINE_SUB + (64 - FINE_SUB_BITS as usize) * FINE_SUB;

/// Log-linear bucket of a duration in nanoseconds (0..FINE_BUCKETS).
#[inline(always)]
pub fn fine_bucket(ns: u64) -> usize {
    if ns < FINE_SUB as u64 {
        return ns as usize;
    }
    let k = 63 - ns.leading_zeros(); // >= FINE_SUB_BITS
    let sub = (ns >> (k - FINE_SUB_BITS)) as usize & (FINE_SUB - 1);
    FINE_SUB + (k - FINE_SUB_BITS) as usize * FINE_SUB + sub
}

/// Inclusive nanosecond range of fine bucket `index`.
pub fn fine_bucket_range(index: usize) -> (u64, u64) {
    if index < FINE_SUB {
        return (index as u64, index as u64);
    }
    let k = ((index - FINE_SUB) / FINE_SUB) as u32 + FINE_SUB_BITS;
    let sub = ((index - FINE_SUB) % FINE_SUB) as u64;
    let width = 1u64 << (k - FINE_SUB_BITS);
    let low = (1u64 << k) + sub * width;
    (low, low + (width - 1))
}

/// Per-CPU latency aggregate of one function: the `@hist_log` view in the display unit
/// (count, sum, min, max of truncated durations, as SystemTap computes them), the fine
/// nanosecond buckets for percentiles, and the entries abandoned without a return.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyStats {
    pub value: ValueStats,
    /// Entries whose frame was left without reaching RET (panic, Goexit, longjmp).
    pub abandoned: u64,
    /// Entries not recorded because the per-goroutine/thread nesting stack was full.
    pub overflow: u64,
    /// Exact sum of the recorded durations in nanoseconds (`value`'s sum is in the display
    /// unit, truncated per call); wraps after 584 years of total time.
    pub sum_ns: u64,
    /// Nanoseconds of the probes' own cost taken out of the recorded durations (see
    /// `SpanShape`): the summary shows it per call.
    pub subtracted_ns: u64,
    /// Exact shortest and longest durations in nanoseconds (`value`'s are truncated to the
    /// display unit), for a summary with three significant digits; valid when count > 0.
    pub min_ns: u64,
    pub max_ns: u64,
    pub fine: [u64; FINE_BUCKETS],
}

impl LatencyStats {
    pub const EMPTY: LatencyStats = LatencyStats {
        value: ValueStats::EMPTY,
        abandoned: 0,
        overflow: 0,
        sum_ns: 0,
        subtracted_ns: 0,
        min_ns: 0,
        max_ns: 0,
        fine: [0; FINE_BUCKETS],
    };

    /// Adds one call of `ns` nanoseconds; `unit_ns` is the display unit (1, 1000, 1000000).
    #[inline(always)]
    pub fn record(&mut self, ns: u64, unit_ns: u64) {
        if self.value.count == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        if ns > self.max_ns {
            self.max_ns = ns;
        }
        self.value.record((ns / unit_ns.max(1)) as i64);
        self.sum_ns = self.sum_ns.wrapping_add(ns);
        let index = fine_bucket(ns);
        // See ValueStats::record: keep the bounds check for the verifier.
        let index = unsafe { core::ptr::read_volatile(&index) };
        if let Some(b) = self.fine.get_mut(index) {
            *b += 1;
        }
    }

    pub fn merge(&mut self, other: &LatencyStats) {
        if other.value.count > 0 {
            if self.value.count == 0 || other.min_ns < self.min_ns {
                self.min_ns = other.min_ns;
            }
            self.max_ns = self.max_ns.max(other.max_ns);
        }
        self.value.merge(&other.value);
        self.abandoned += other.abandoned;
        self.overflow += other.overflow;
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
        self.subtracted_ns = self.subtracted_ns.wrapping_add(other.subtracted_ns);
        for (mine, theirs) in self.fine.iter_mut().zip(other.fine.iter()) {
            *mine += theirs;
        }
    }
}

pub const MAP_LATENCY_STATS: &str = "LATENCY_STATS";
pub const PROG_LATENCY_UPROBE: &str = "pb_lat";
pub const PROG_LATENCY_URETPROBE: &str = "pb_lat_ret";
/// Name of the global holding the display unit in nanoseconds.
pub const GLOBAL_UNIT_NS: &str = "UNIT_NS";
/// Globals of the one-program-per-site mode for kernels without BPF cookies: a non-zero
/// `COOKIE_IS_FIXED` makes the programs use `FIXED_COOKIE` instead of the attach cookie.
pub const GLOBAL_COOKIE_IS_FIXED: &str = "COOKIE_IS_FIXED";
pub const GLOBAL_FIXED_COOKIE: &str = "FIXED_COOKIE";
/// Maps shared by every copy of the programs in that mode.
pub const MAP_ENTRIES: &str = "ENTRIES";
pub const MAP_EMPTY_STACK: &str = "EMPTY_STACK";
pub const MAP_PROBE_COSTS: &str = "PROBE_COSTS";
pub const MAP_HIT_COSTS: &str = "HIT_COSTS";
pub const SHARED_MAPS: [&str; 7] =
    [MAP_VALUE_STATS, MAP_LATENCY_STATS, MAP_EPOCH, MAP_ENTRIES, MAP_EMPTY_STACK, MAP_PROBE_COSTS, MAP_HIT_COSTS];

/// How one measured call is bracketed by probes, which decides what the probes themselves add
/// to its measured duration: the entry probe's instruction is emulated by the kernel or
/// single-stepped out of line (a second trap), and the exit is a RET probe or a uretprobe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanShape {
    pub entry_stepped: bool,
    pub uretprobe: bool,
}

impl SpanShape {
    pub const ALL: [SpanShape; 4] = [
        SpanShape { entry_stepped: false, uretprobe: false },
        SpanShape { entry_stepped: true, uretprobe: false },
        SpanShape { entry_stepped: false, uretprobe: true },
        SpanShape { entry_stepped: true, uretprobe: true },
    ];

    #[inline(always)]
    pub fn index(self) -> u32 {
        self.entry_stepped as u32 | (self.uretprobe as u32) << 1
    }

    /// `PROBE_COSTS` index of the nanoseconds this shape's probes add inside the span they
    /// time (the entry probe's work after its timestamp, the exit probe's before its own).
    #[inline(always)]
    pub fn inside_cost_index(self) -> u32 {
        self.index()
    }

    /// `PROBE_COSTS` index of the nanoseconds one call's entry and exit probes add, in all, to
    /// whatever encloses the call: subtracted from the callers measured on the same goroutine
    /// or thread.
    #[inline(always)]
    pub fn hit_cost_index(self) -> u32 {
        4 + self.index()
    }
}

/// Entries of `PROBE_COSTS`: an inside and a hit cost per `SpanShape`. All zero (`--raw`, or
/// not calibrated) means durations are recorded as measured.
pub const PROBE_COSTS_LEN: u32 = 8;

/// Frames remembered per (process, goroutine or thread, function): recursion deeper than
/// this is counted in `overflow`, not measured.
pub const MAX_NESTING: usize = 256;

/// Key of the in-flight entries of one function on one goroutine (Go: the g pointer) or
/// thread (everything else).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryKey {
    pub tgid: u32,
    pub slot: u32,
    pub context: u64,
}

/// One in-flight call: its frame's depth on its stack and its entry time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Distance of the frame from the stack's base (deeper frames are larger). For Go it is
    /// `g.stack.hi - SP`, which stays the same when the runtime moves a growing stack.
    pub depth: u64,
    pub entry_ns: u64,
    /// The goroutine's or thread's `HIT_COSTS` counter at entry: what it has grown by at the
    /// exit is the cost of the probes that fired inside this call.
    pub hits_ns: u64,
    /// 1 when the entry probe's instruction is single-stepped (`SpanShape::entry_stepped`).
    pub entry_stepped: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryStack {
    pub len: u64,
    pub frames: [Frame; MAX_NESTING],
}

/// What a latency attach site is, carried in its cookie. Layout: bits 0..24 slot, bit 24 exit,
/// bit 25 Go (key by goroutine), bit 26 uretprobe (SP is 8 above the entry's), bit 27 the entry
/// is a Go stack-check branch (`stack_check_taken`), bit 28 the entry's instruction is
/// single-stepped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyCookie {
    pub slot: u32,
    pub exit: bool,
    pub go: bool,
    pub uretprobe: bool,
    pub stack_check: bool,
    pub entry_stepped: bool,
}

impl LatencyCookie {
    pub fn encode(self) -> u64 {
        (self.slot as u64 & 0xff_ffff)
            | (self.exit as u64) << 24
            | (self.go as u64) << 25
            | (self.uretprobe as u64) << 26
            | (self.stack_check as u64) << 27
            | (self.entry_stepped as u64) << 28
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
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// The obvious definition, written independently of `log2_bucket`.
    fn reference_bucket(v: i64) -> usize {
        let v = v as i128;
        if v == 0 {
            return 64;
        }
        let mut k = 0usize;
        while (1i128 << (k + 1)) <= v.abs() {
            k += 1;
        }
        if v > 0 {
            65 + k
        } else {
            63 - k
        }
    }

    fn boundary_values() -> std::vec::Vec<i64> {
        let mut vs = std::vec![0, 1, -1, 2, -2, 3, -3, i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1];
        for k in 0..63 {
            let p = 1i64 << k;
            for v in [p - 1, p, p + 1] {
                vs.push(v);
                vs.push(-v);
            }
        }
        vs
    }

    #[test]
    fn bucket_matches_reference_at_boundaries() {
        for v in boundary_values() {
            assert_eq!(log2_bucket(v), reference_bucket(v), "value {v}");
        }
    }

    #[test]
    fn bucket_extremes() {
        assert_eq!(log2_bucket(i64::MIN), 0);
        assert_eq!(log2_bucket(i64::MAX), 127);
        assert_eq!(log2_bucket(0), 64);
        assert_eq!(log2_bucket(1), 65);
        assert_eq!(log2_bucket(-1), 63);
        assert_eq!(log2_bucket(3), 66);
        assert_eq!(log2_bucket(-3), 62);
    }

    #[test]
    fn ranges_contain_exactly_their_values() {
        for v in boundary_values() {
            let (low, high) = log2_bucket_range(log2_bucket(v));
            assert!(low <= v && v <= high, "{v} not in {low}..={high}");
        }
        for i in 0..LOG2_BUCKETS {
            let (low, high) = log2_bucket_range(i);
            assert_eq!(log2_bucket(low), i);
            assert_eq!(log2_bucket(high), i);
            if i + 1 < LOG2_BUCKETS {
                assert_eq!(high as i128 + 1, log2_bucket_range(i + 1).0 as i128, "gap after {i}");
            }
        }
        assert_eq!(log2_bucket_range(55), (-511, -256));
        assert_eq!(log2_bucket_label(55), -256);
        assert_eq!(log2_bucket_label(0), i64::MIN);
    }

    #[test]
    fn stats_record_and_merge() {
        let mut a = ValueStats::EMPTY;
        let mut b = ValueStats::EMPTY;
        for v in -500..0 {
            a.record(v);
        }
        for v in 0..500 {
            b.record(v);
        }
        b.record(i64::MAX);
        b.record(i64::MAX);
        a.merge(&b);
        assert_eq!(a.count, 1002);
        assert_eq!(a.min, -500);
        assert_eq!(a.max, i64::MAX);
        assert_eq!(a.sum(), -500 + 2 * i64::MAX as i128);
        assert_eq!(a.buckets.iter().sum::<u64>(), 1002);
    }

    #[test]
    fn latency_sum_is_exact_nanoseconds_whatever_the_unit() {
        let mut a = LatencyStats::EMPTY;
        let mut b = LatencyStats::EMPTY;
        a.record(1_999, 1_000);
        b.record(2_500, 1_000);
        a.merge(&b);
        assert_eq!(a.sum_ns, 4_499);
        assert_eq!((a.min_ns, a.max_ns), (1_999, 2_500));
        assert_eq!(a.value.sum(), 3, "display unit (us), truncated per call");
    }

    #[test]
    fn cookie_round_trips() {
        for c in [
            ValueCookie { slot: 3, source: ValueSource::Reg(Reg::R11), stack_check: false },
            ValueCookie { slot: 0, source: ValueSource::Reg(Reg::Rax), stack_check: true },
            ValueCookie { slot: 63, source: ValueSource::Stack { offset: 8 }, stack_check: false },
            ValueCookie { slot: 1, source: ValueSource::Stack { offset: 0xffff_fff8 }, stack_check: true },
        ] {
            assert_eq!(ValueCookie::decode(c.encode()), Some(c));
        }
        assert_eq!(ValueCookie::decode(3 << 16), None); // no such source kind (2 is an arm64 register)
    }

    #[test]
    fn fine_buckets_are_contiguous_and_tight() {
        assert_eq!(fine_bucket(0), 0);
        assert_eq!(fine_bucket(15), 15);
        assert_eq!(fine_bucket(16), 16);
        assert_eq!(fine_bucket(u64::MAX), FINE_BUCKETS - 1);
        let mut next = 0u64;
        for i in 0..FINE_BUCKETS {
            let (low, high) = fine_bucket_range(i);
            assert_eq!(low, next, "bucket {i} starts where {} ended", i.saturating_sub(1));
            assert_eq!(fine_bucket(low), i);
            assert_eq!(fine_bucket(high), i);
            // Width at most 1/16 of the low bound: percentiles within about 6%.
            assert!(low < 16 || (high - low + 1) * 16 <= low, "bucket {i} too wide");
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "buckets cover all of u64");
    }

    #[test]
    fn latency_cookie_round_trips() {
        for c in [
            LatencyCookie { slot: 0, exit: false, go: true, uretprobe: false, stack_check: true, entry_stepped: false },
            LatencyCookie {
                slot: 999,
                exit: true,
                go: false,
                uretprobe: true,
                stack_check: false,
                entry_stepped: true,
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
            let cookie = ValueCookie { slot: 1, source: ValueSource::Arm64Reg(n), stack_check: true };
            assert_eq!(ValueCookie::decode(cookie.encode()), Some(cookie));
        }
        let beyond = ValueCookie { slot: 1, source: ValueSource::Arm64Reg(ARM64_VALUE_REGS), stack_check: false };
        assert_eq!(ValueCookie::decode(beyond.encode()), None);
    }

    #[test]
    fn span_shapes_index_both_cost_halves_of_the_table() {
        let mut seen = std::vec::Vec::new();
        for s in SpanShape::ALL {
            seen.push(s.inside_cost_index());
            seen.push(s.hit_cost_index());
        }
        seen.sort();
        assert_eq!(seen, (0..PROBE_COSTS_LEN).collect::<std::vec::Vec<_>>());
    }
}
