//! Why a call the programs saw is in no table: every early return of a program that drops a
//! call counts it under one of these reasons, per slot, so a table and its reasons always add up
//! to the calls made.
//!
//! The array kinds keep them in their aggregate (`ValueStats::losses`, `LatencyStats::losses`);
//! the keyed kinds, whose aggregate may be what could not be had, in the `LOSSES` array at
//! `bank_index(bank, slot)`.

/// A keyed map refused a new key: it holds as many as it may (`-E2BIG`).
pub const LOSS_KEYS_FULL: usize = 0;
/// A keyed map refused a new key for want of kernel memory (`-ENOMEM`, or any other error).
pub const LOSS_KEYS_NO_MEMORY: usize = 1;
/// latency: the in-flight calls map refused a new goroutine or thread: it is full (`-E2BIG`).
pub const LOSS_IN_FLIGHT_FULL: usize = 2;
/// latency: ... for want of kernel memory (`-ENOMEM`, or any other error).
pub const LOSS_IN_FLIGHT_NO_MEMORY: usize = 3;
/// latency on Go: the goroutine's stack bounds (behind R14's g) could not be read.
pub const LOSS_GOROUTINE_UNREADABLE: usize = 4;
/// `--filter`: an argument a condition compares could not be read, so the call could not be
/// judged.
pub const LOSS_FILTER_UNREADABLE: usize = 5;
/// latency: a return with no entry recorded for it. Not a lost call of the traced span: the
/// call began before the entry probes were live (expected right after attaching to a running
/// process), or its entry is already counted under another reason.
pub const LOSS_UNMATCHED_RETURN: usize = 6;
/// A keyed map took a new key, which was gone when looked up at once: only a drain deletes
/// keys, and it deletes those of the bank no program writes any more, so a program that ran
/// past the drain's grace period.
pub const LOSS_KEY_VANISHED: usize = 7;
/// `--by stack`: the call's stack could not be stored (more distinct stacks than the map of
/// frames holds, no kernel memory, or another stack with the same 64-bit hash).
pub const LOSS_STACK_NOT_STORED: usize = 8;
/// Reasons a slot counts.
pub const LOSS_REASONS: usize = 9;

/// Per slot (and bank): how many calls were dropped for each reason.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Losses {
    pub counts: [u64; LOSS_REASONS],
}

/// A reason's name in JSON and Prometheus labels, and what the text says of its calls.
pub struct LossReason {
    pub index: usize,
    pub name: &'static str,
    pub text: &'static str,
    /// Whether its calls were made while tracing (a return without an entry was not).
    pub lost: bool,
}

/// Every reason, in the order the summary lists them.
pub const LOSS_REASON_NAMES: [LossReason; 9] = [
    LossReason {
        index: LOSS_KEYS_FULL,
        name: "keys_full",
        text: "not counted under their key: more distinct keys than the map holds (--count: --max-values)",
        lost: true,
    },
    LossReason {
        index: LOSS_KEYS_NO_MEMORY,
        name: "keys_no_memory",
        text: "not counted: the kernel had no memory for a new key",
        lost: true,
    },
    LossReason {
        index: LOSS_IN_FLIGHT_FULL,
        name: "in_flight_full",
        text: "not timed: more goroutines or threads inside traced functions at once than probe follows",
        lost: true,
    },
    LossReason {
        index: LOSS_IN_FLIGHT_NO_MEMORY,
        name: "in_flight_no_memory",
        text: "not timed: the kernel had no memory to remember their entry",
        lost: true,
    },
    LossReason {
        index: LOSS_GOROUTINE_UNREADABLE,
        name: "goroutine_unreadable",
        text: "not timed: their goroutine's stack bounds could not be read",
        lost: true,
    },
    LossReason {
        index: LOSS_FILTER_UNREADABLE,
        name: "filter_unreadable",
        text: "not judged: an argument the --filter compares could not be read",
        lost: true,
    },
    LossReason {
        index: LOSS_KEY_VANISHED,
        name: "key_vanished",
        text: "not counted: their new key was drained as it was made",
        lost: true,
    },
    LossReason {
        index: LOSS_STACK_NOT_STORED,
        name: "stack_not_stored",
        text:
            "not counted: their stack could not be stored (more distinct stacks than probe keeps, or no kernel memory)",
        lost: true,
    },
    LossReason {
        index: LOSS_UNMATCHED_RETURN,
        name: "unmatched_returns",
        text: "without a recorded entry: calls already running when tracing began",
        lost: false,
    },
];

/// The errno of a map insert the kernel refused because the map is full.
const E2BIG: i64 = 7;

impl Losses {
    pub const EMPTY: Losses = Losses { counts: [0; LOSS_REASONS] };

    /// Counts one call under `reason` (one of the `LOSS_` constants; any other counts nothing).
    #[inline(always)]
    pub fn count(&mut self, reason: usize) {
        self.add(reason, 1);
    }

    /// Counts `calls` calls under `reason`.
    #[inline(always)]
    pub fn add(&mut self, reason: usize, calls: u64) {
        if let Some(c) = self.counts.get_mut(reason) {
            *c += calls;
        }
    }

    pub fn merge(&mut self, other: &Losses) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }

    /// Calls made while tracing that are in no table (every reason but unmatched returns).
    pub fn lost(&self) -> u64 {
        LOSS_REASON_NAMES.iter().filter(|r| r.lost).map(|r| self.counts[r.index]).sum()
    }

    /// The reasons with calls, in summary order.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static LossReason, u64)> + '_ {
        LOSS_REASON_NAMES.iter().map(|r| (r, self.counts[r.index])).filter(|&(_, n)| n > 0)
    }
}

/// The reason to count a call under when inserting a new key failed with `error` (a negative
/// errno): a full map, or anything else (the kernel's allocation, `-ENOMEM`).
#[inline(always)]
pub fn key_loss(error: i64) -> usize {
    if error == -E2BIG {
        LOSS_KEYS_FULL
    } else {
        LOSS_KEYS_NO_MEMORY
    }
}

/// `key_loss` for latency's in-flight calls map.
#[inline(always)]
pub fn in_flight_loss(error: i64) -> usize {
    if error == -E2BIG {
        LOSS_IN_FLIGHT_FULL
    } else {
        LOSS_IN_FLIGHT_NO_MEMORY
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn every_reason_has_one_name_and_the_errors_their_reason() {
        let mut seen: std::vec::Vec<usize> = LOSS_REASON_NAMES.iter().map(|r| r.index).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), LOSS_REASON_NAMES.len());
        assert!(seen.iter().all(|&i| i < LOSS_REASONS));
        assert_eq!(key_loss(-7), LOSS_KEYS_FULL);
        assert_eq!(key_loss(-12), LOSS_KEYS_NO_MEMORY);
        assert_eq!(in_flight_loss(-7), LOSS_IN_FLIGHT_FULL);
        assert_eq!(in_flight_loss(-12), LOSS_IN_FLIGHT_NO_MEMORY);
    }

    #[test]
    fn unmatched_returns_are_shown_but_not_lost() {
        let mut l = Losses::EMPTY;
        l.count(LOSS_UNMATCHED_RETURN);
        l.count(LOSS_KEYS_FULL);
        l.count(LOSS_KEYS_FULL);
        l.count(LOSS_REASONS); // out of range: nothing
        let mut m = Losses::EMPTY;
        m.merge(&l);
        assert_eq!(m.lost(), 2);
        let names: std::vec::Vec<(&str, u64)> = m.nonzero().map(|(r, n)| (r.name, n)).collect();
        assert_eq!(names, [("keys_full", 2), ("unmatched_returns", 1)]);
    }
}
