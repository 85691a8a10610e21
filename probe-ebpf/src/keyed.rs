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
/// `--by`: the process (tgid), the thread (tid), or the thread's name (16 bytes).
pub const KEY_PID: u32 = 2;
pub const KEY_TID: u32 = 3;
pub const KEY_COMM: u32 = 4;
/// A string's bytes (`len` of them; `KEY_TEXT_TRUNCATED`: the first `KEY_BYTES` of a longer one).
pub const KEY_TEXT: u32 = 6;
pub const KEY_TEXT_TRUNCATED: u32 = 7;
/// `--by caller`: the return address (`words[0]`) in process `words[1]`, symbolised by the loader.
pub const KEY_CALLER: u32 = 5;

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
