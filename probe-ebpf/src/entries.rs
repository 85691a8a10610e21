//! latency's in-flight calls (a stack of frames per function and goroutine or thread) and the
//! probes' own cost that is subtracted from them.

/// How one measured call is bracketed by probes, which decides what the probes themselves add
/// to its measured duration: the entry probe's instruction is emulated by the kernel or
/// single-stepped out of line (a second trap), the exit is a RET probe or a uretprobe, and a
/// Go function's probes also read the goroutine's stack bounds (`g.stack.hi`) from its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanShape {
    pub entry_stepped: bool,
    pub uretprobe: bool,
    pub go: bool,
}

impl SpanShape {
    /// Every shape a trace can have (Go code never gets a uretprobe).
    pub const ALL: [SpanShape; 6] = [
        SpanShape { entry_stepped: false, uretprobe: false, go: false },
        SpanShape { entry_stepped: true, uretprobe: false, go: false },
        SpanShape { entry_stepped: false, uretprobe: true, go: false },
        SpanShape { entry_stepped: true, uretprobe: true, go: false },
        SpanShape { entry_stepped: false, uretprobe: false, go: true },
        SpanShape { entry_stepped: true, uretprobe: false, go: true },
    ];

    #[inline(always)]
    pub fn index(self) -> u32 {
        self.entry_stepped as u32 | (self.uretprobe as u32) << 1 | (self.go as u32) << 2
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
        8 + self.index()
    }
}

/// Entries of `PROBE_COSTS`: an inside and a hit cost per `SpanShape` index (8 each, the
/// two of Go with a uretprobe unused). All zero (`--raw`, or not calibrated) means durations
/// are recorded as measured.
pub const PROBE_COSTS_LEN: u32 = 16;

/// Frames remembered per (process, goroutine or thread, function): recursion deeper than
/// this is counted in `too_deep`, not measured.
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
    /// 1 when the entry probe's instruction is single-stepped (`SpanShape::entry_stepped`);
    /// `STACKED` in the marker `Frame::stacked`.
    pub entry_stepped: u64,
}

/// `Frame::entry_stepped` of the marker that says a context's calls are in a nested stack.
const STACKED: u64 = u64::MAX;

impl Frame {
    /// The frame of a call `--filter` left out: it keeps its place in the stack, so its return
    /// (or, after a panic, the next call at its depth) finds it rather than another call's
    /// frame, and it is neither timed nor counted as abandoned. A clock reading is never 0.
    #[inline(always)]
    pub fn filtered_out(depth: u64) -> Frame {
        Frame { depth, entry_ns: 0, hits_ns: 0, entry_stepped: 0 }
    }

    #[inline(always)]
    pub fn is_filtered_out(&self) -> bool {
        self.entry_ns == 0
    }

    /// What the outermost in-flight call's place holds while calls of the same function nest
    /// inside it (recursion): the frames, that one's included, are then in an `EntryStack`.
    #[inline(always)]
    pub fn stacked() -> Frame {
        Frame { depth: 0, entry_ns: 0, hits_ns: 0, entry_stepped: STACKED }
    }

    #[inline(always)]
    pub fn is_stacked(&self) -> bool {
        self.entry_stepped == STACKED
    }
}

/// A call in flight as latency's `ENTRIES` map keeps the outermost one per function and
/// goroutine or thread: its frame, and the arguments its event shows (`--slower-than --arg`),
/// kept with it so that stashing them costs no map operation of its own. Calls nested inside
/// it (recursion) keep theirs in `EVENT_ARGS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub frame: Frame,
    pub args: crate::EventArgs,
}

impl Entry {
    /// The marker of `Frame::stacked`.
    #[inline(always)]
    pub fn stacked() -> Entry {
        Entry { frame: Frame::stacked(), args: crate::EventArgs::NONE }
    }
}

/// The in-flight calls of one function nested in itself on one goroutine or thread, outermost
/// first: their depths increase strictly from the bottom (an entry first pops every frame at
/// its depth or deeper), which lets a probe find the frames it pops by bisection.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryStack {
    pub len: u64,
    /// Scratch of the programs' bisection (the frames known to stay). It lives here, in the
    /// map, not in a register: read back, it is a number the verifier does not know, so it
    /// follows each step of the search once rather than once per position it can reach.
    pub kept: u64,
    pub frames: [Frame; MAX_NESTING],
    /// `measured[i]`: how many of `frames[0..=i]` are measured calls (not left out by the
    /// filter), so the abandoned frames among those popped are counted without a loop.
    pub measured: [u16; MAX_NESTING],
}

impl EntryStack {
    /// How many of the bottom `n` frames are measured calls.
    #[inline(always)]
    pub fn measured_below(&self, n: usize) -> u64 {
        // `n == 0` wraps to an index past the end: none.
        self.measured.get(n.wrapping_sub(1)).map_or(0, |&m| m as u64)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use crate::*;

    #[test]
    fn span_shapes_index_both_cost_halves_of_the_table() {
        let mut seen = std::vec::Vec::new();
        for s in SpanShape::ALL {
            seen.push(s.inside_cost_index());
            seen.push(s.hit_cost_index());
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 2 * SpanShape::ALL.len());
        assert!(seen.iter().all(|&i| i < PROBE_COSTS_LEN));
        assert!(SpanShape::ALL.iter().all(|s| s.inside_cost_index() < 8 && s.hit_cost_index() >= 8));
    }
}
