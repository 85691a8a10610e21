//! Small types every layer names, from the command line to the outputs: display units, how
//! `latency` observes returns, `--by`, and what to trace. This module depends on no other of
//! probe's, so any module may use it without pointing back up.
use probe_ebpf::{KEY_CALLER, KEY_COMM, KEY_PID, KEY_STACK, KEY_TID};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Unit {
    Ns,
    Us,
    Ms,
}

impl Unit {
    pub fn ns(self) -> u64 {
        match self {
            Unit::Ns => 1,
            Unit::Us => 1_000,
            Unit::Ms => 1_000_000,
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Us => "us",
            Unit::Ms => "ms",
        }
    }

    pub fn from_ns(self, ns: u64) -> f64 {
        ns as f64 / self.ns() as f64
    }

    /// A duration in this unit with three significant digits, e.g. `2.05ms`, `586us`,
    /// `0.105us`, down to whole nanoseconds (`0.005us`, `0ns`).
    pub fn format(self, ns: u64) -> String {
        let v = self.from_ns(ns);
        let ns_decimals = self.ns().ilog10() as usize; // more would print fractions of a ns
        let decimals = if v >= 1.0 {
            2usize.saturating_sub(v.log10().floor() as usize)
        } else if v > 0.0 {
            3 + (-v.log10()).floor() as usize // 0.105: the first digit after the point counts
        } else {
            2
        };
        let decimals = decimals.min(ns_decimals);
        format!("{v:.decimals$}{}", self.suffix())
    }
}

impl Unit {
    /// A duration that is only known to within `resolution_ns`: below it, `<` and the
    /// resolution rounded up to one digit (`<0.4us` within 312 ns); otherwise rounded to the resolution's leading digit and printed
    /// with no more digits than that (`7.8us` for 7,812 ns within 300 ns). A resolution of 0
    /// (`--raw`, nothing calibrated) changes nothing.
    pub fn format_within(self, ns: u64, resolution_ns: u64) -> String {
        if resolution_ns == 0 {
            return self.format(ns);
        }
        let step = 10f64.powi(self.from_ns(resolution_ns).log10().floor() as i32);
        let wanted = (-step.log10().round()).max(0.0) as usize;
        if ns < resolution_ns {
            // The resolution itself to one digit, rounded up: still a true bound.
            let bound = (self.from_ns(resolution_ns) / step).ceil() * step;
            return format!("<{bound:.wanted$}{}", self.suffix());
        }
        let v = (self.from_ns(ns) / step).round() * step;
        let shown = self.format(ns);
        let digits = shown.trim_end_matches(self.suffix()).split_once('.').map_or(0, |(_, d)| d.len());
        let decimals = digits.min(wanted);
        format!("{v:.decimals$}{}", self.suffix())
    }
}

/// How `latency` observes a function's return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExitMode {
    /// RET probes for Go, uretprobes for everything else.
    Auto,
    /// A plain uprobe on every RET instruction.
    Ret,
    /// A uretprobe (refused for Go: it crashes the program).
    Uretprobe,
}

/// What `--by` breaks a table down by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// The process (its pid)
    Pid,
    /// The thread (its tid; for Go, the thread the call returned on)
    Tid,
    /// The thread's name (`comm`, as `ps -T` shows it)
    Comm,
    /// The calling function (from the return address, symbolised)
    Caller,
    /// The whole user stack (frame pointers, inlined Go frames expanded): with --folded,
    /// --flamegraph, --pprof
    Stack,
}

impl By {
    /// The `SlotKey::kind` the programs build.
    pub fn key_kind(self) -> u32 {
        match self {
            By::Pid => KEY_PID,
            By::Tid => KEY_TID,
            By::Comm => KEY_COMM,
            By::Caller => KEY_CALLER,
            By::Stack => KEY_STACK,
        }
    }
}

/// `-p`: a process by its id or its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Process {
    Pid(i32),
    Name(String),
}

/// What to trace, as the command line gave it: a command to launch, a running process, or
/// every process running a file (`within` one container or cgroup, if given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    Command(String),
    Process(Process),
    Binary { path: PathBuf, within: Option<Within> },
}

/// `--container` or `--cgroup`: the processes running BINARY that are traced are those of one
/// container, or of one cgroup v2 and the cgroups below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Within {
    /// A running container's id, unique id prefix or name.
    Container(String),
    /// A directory of the cgroup v2 hierarchy, or the path /proc/PID/cgroup shows after `0::`.
    Cgroup(PathBuf),
}

/// A parameter as `--arg` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgSpec {
    /// 0-based position as declared.
    Position(u32),
    /// The name in the source.
    Name(String),
}
