//! The keyed aggregation shape: per-CPU hash maps keyed by (bank, slot, key), for what a fixed
//! array cannot hold (the exact values a function sees, and later strings and breakdowns).
//!
//! The bank is part of the key, so the loader drains exactly as it does the banked arrays: it
//! flips `EPOCH`, waits until no program can still write the old bank, then sums and deletes
//! every key of that bank. A program that cannot add a key (the map is full) counts the call
//! in the slot's `KEYS_LOST` entry (`bank_index`), so every call is accounted for.

/// Bytes a key can hold: a string longer than this is cut and marked truncated.
pub const KEY_BYTES: usize = 64;
const KEY_WORDS: usize = KEY_BYTES / 8;

/// What a `SlotKey` holds.
pub const KEY_INTEGER: u32 = 0;
/// The value could not be read (e.g. its stack slot was not readable).
pub const KEY_UNREADABLE: u32 = 1;
/// An unsigned 64-bit integer (a `Width::U64` value): `words[0]` holds its bits.
pub const KEY_UNSIGNED: u32 = 8;
/// `--by`: the process (tgid), the thread (tid), or the thread's name (16 bytes).
pub const KEY_PID: u32 = 2;
pub const KEY_TID: u32 = 3;
pub const KEY_COMM: u32 = 4;
/// A string's bytes (`len` of them; `KEY_TEXT_TRUNCATED`: the first `KEY_BYTES` of a longer one).
pub const KEY_TEXT: u32 = 6;
pub const KEY_TEXT_TRUNCATED: u32 = 7;
/// `--by caller`: the return address (`words[0]`) in process `words[1]`, symbolised by the loader.
pub const KEY_CALLER: u32 = 5;
/// `--by stack`: the user stack whose frames `STACK_FRAMES` holds under `words[0]` (their hash),
/// in process `words[1]`; read and symbolised by the loader.
pub const KEY_STACK: u32 = 9;

/// Return addresses a stack holds at most, the caller of the traced function first.
pub const MAX_STACK_FRAMES: usize = 64;
/// `StackFrames::flags`: the walk stopped at `MAX_STACK_FRAMES`, so outer frames are missing.
pub const STACK_TRUNCATED: u64 = 1;

/// One user stack, stored once under its hash (`KEY_STACK`): `len` return addresses, the
/// traced function's caller first, walked by frame pointers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackFrames {
    pub tgid: u64,
    pub len: u64,
    pub flags: u64,
    pub frames: [u64; MAX_STACK_FRAMES],
}

impl StackFrames {
    /// The return addresses in use (the caller first).
    pub fn addresses(&self) -> &[u64] {
        &self.frames[..(self.len as usize).min(MAX_STACK_FRAMES)]
    }
}

/// Key of a keyed map: the bank and slot as in the arrays, and the key within the slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    pub bank: u32,
    pub slot: u32,
    /// `KEY_INTEGER` or `KEY_UNREADABLE`.
    pub kind: u32,
    /// Bytes of `words` in use (8 for an integer).
    pub len: u32,
    pub words: [u64; KEY_WORDS],
}

impl SlotKey {
    #[inline(always)]
    pub fn integer(bank: u32, slot: u32, v: i64) -> SlotKey {
        let mut words = [0; KEY_WORDS];
        words[0] = v as u64;
        SlotKey { bank: bank & 1, slot, kind: KEY_INTEGER, len: 8, words }
    }

    #[inline(always)]
    pub fn unreadable(bank: u32, slot: u32) -> SlotKey {
        SlotKey { bank: bank & 1, slot, kind: KEY_UNREADABLE, len: 0, words: [0; KEY_WORDS] }
    }

    /// The integer this key holds, if it is one.
    pub fn as_integer(&self) -> Option<i64> {
        (self.kind == KEY_INTEGER).then_some(self.words[0] as i64)
    }

    /// The key's bytes, to write a string into.
    #[inline(always)]
    pub fn bytes_mut(&mut self) -> &mut [u8; KEY_BYTES] {
        // Same size, and u8 needs no alignment.
        unsafe { &mut *(self.words.as_mut_ptr() as *mut [u8; KEY_BYTES]) }
    }

    /// The key's bytes (a thread name: up to its first NUL).
    pub fn bytes(&self) -> [u8; KEY_BYTES] {
        let mut out = [0; KEY_BYTES];
        for (i, w) in self.words.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
        }
        out
    }
}

/// `--by` keys their aggregates in two maps of small values, never one of whole aggregates: a
/// per-CPU value of several kilobytes (a `LatencyStats`) is what a new key must allocate in the
/// kernel, and its per-CPU allocator, asked without sleeping, refuses units that large often
/// enough to lose calls (measured: thousands per run with 200 threads and `-i 0.2`). Small
/// units come from caches refilled in batches. So a key's count, sum, min and max are a
/// summary under its `SlotKey`, and each histogram bucket it uses is a count under the same
/// key with the bucket's code in `words[BUCKET_WORD]` (`--by` keys use the first two words).
pub const BUCKET_WORD: usize = 2;

impl SlotKey {
    /// The key of bucket `code` of this key's histogram.
    #[inline(always)]
    pub fn bucket(&self, code: u64) -> SlotKey {
        let mut key = *self;
        key.words[BUCKET_WORD] = code;
        key
    }

    /// A bucket's key split into its aggregate's key and the bucket's code.
    pub fn split_bucket(&self) -> (SlotKey, u64) {
        (self.bucket(0), self.words[BUCKET_WORD])
    }
}

/// `argdist --by`: a key's values without their histogram (see `BUCKET_WORD`); as `ValueStats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueSummary {
    pub count: u64,
    pub sum_lo: u64,
    pub sum_hi: i64,
    pub min: i64,
    pub max: i64,
    pub unreadable: u64,
    /// As `ValueStats::unsigned`.
    pub unsigned: u64,
}

/// `latency --by`: a key's latencies without their histograms (see `BUCKET_WORD`). Fields as
/// in `LatencyStats`; `unit_sum` is the sum of the durations in the display unit, truncated per
/// call (`LatencyStats::in_unit`'s sum).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub sum_ns: u64,
    pub unit_sum: u64,
    pub subtracted_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub abandoned: u64,
    pub too_deep: u64,
}

impl ValueSummary {
    pub const EMPTY: ValueSummary =
        ValueSummary { count: 0, sum_lo: 0, sum_hi: 0, min: 0, max: 0, unreadable: 0, unsigned: 0 };

    /// Adds one value; its bucket (`value_bucket`) is counted apart.
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
    }

    /// Adds one unsigned 64-bit value, as `ValueStats::record_unsigned`.
    #[inline(always)]
    pub fn record_unsigned(&mut self, v: u64) {
        self.unsigned = 1;
        if self.count == 0 || v < self.min as u64 {
            self.min = v as i64;
        }
        if self.count == 0 || v > self.max as u64 {
            self.max = v as i64;
        }
        self.count += 1;
        let (lo, carry) = self.sum_lo.overflowing_add(v);
        self.sum_lo = lo;
        self.sum_hi = self.sum_hi.wrapping_add(carry as i64);
    }
}

impl LatencySummary {
    pub const EMPTY: LatencySummary = LatencySummary {
        count: 0,
        sum_ns: 0,
        unit_sum: 0,
        subtracted_ns: 0,
        min_ns: 0,
        max_ns: 0,
        abandoned: 0,
        too_deep: 0,
    };

    /// Adds one call of `ns` nanoseconds; its buckets (`latency_bucket`) are counted apart.
    #[inline(always)]
    pub fn record(&mut self, ns: u64, unit_ns: u64) {
        if self.count == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        if ns > self.max_ns {
            self.max_ns = ns;
        }
        self.count += 1;
        self.sum_ns = self.sum_ns.wrapping_add(ns);
        self.unit_sum = self.unit_sum.wrapping_add(ns / unit_ns.max(1));
    }
}

/// The bucket code of a value: its `@hist_log` bucket (`unsigned`: of its bits as a u64).
#[inline(always)]
pub fn value_bucket(v: i64, unsigned: bool) -> u64 {
    if unsigned {
        crate::log2_bucket_unsigned(v as u64) as u64
    } else {
        crate::log2_bucket(v) as u64
    }
}

/// The bucket code of a duration: its fine bucket and, in bits 16 and up, its `@hist_log`
/// bucket in the display unit. One count per pair gives both histograms exactly (a fine bucket
/// may straddle a display-unit boundary, so neither can be derived from the other).
#[inline(always)]
pub fn latency_bucket(ns: u64, unit_ns: u64) -> u64 {
    let in_unit = (ns / unit_ns.max(1)) as i64;
    crate::fine_bucket(ns) as u64 | (crate::log2_bucket(in_unit) as u64) << 16
}

/// The (fine, `@hist_log`) buckets of a `latency_bucket` code.
pub fn latency_bucket_indexes(code: u64) -> (usize, usize) {
    ((code & 0xffff) as usize, (code >> 16 & 0xffff) as usize)
}
