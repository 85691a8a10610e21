//! Names of the maps, programs and globals in the eBPF object, shared so a rename cannot
//! split the kernel side from the loader.

/// Array kinds: `argdist` values and `latency`.
pub const MAP_VALUE_STATS: &str = "VALUE_STATS";
pub const PROG_VALUE_UPROBE: &str = "pb_value";
pub const PROG_VALUE_URETPROBE: &str = "pb_value_ret";
pub const MAP_LATENCY_STATS: &str = "LATENCY_STATS";
pub const PROG_LATENCY_UPROBE: &str = "pb_lat";
pub const PROG_LATENCY_EXIT: &str = "pb_lat_exit";
pub const PROG_LATENCY_URETPROBE: &str = "pb_lat_ret";
/// Sleepable twins of the entry programs that read memory (Linux 6.0+): they may fault in a
/// page the traced process has not touched yet (a string literal at its first use).
pub const PROG_VALUE_UPROBE_SLEEPABLE: &str = "pb_value_s";
pub const PROG_VALUE_BY_UPROBE_SLEEPABLE: &str = "pb_value_by_s";
pub const PROG_COUNT_UPROBE_SLEEPABLE: &str = "pb_count_s";

/// The sleepable twin of an entry program, if it has one.
pub fn sleepable_twin(program: &str) -> Option<&'static str> {
    match program {
        PROG_VALUE_UPROBE => Some(PROG_VALUE_UPROBE_SLEEPABLE),
        PROG_VALUE_BY_UPROBE => Some(PROG_VALUE_BY_UPROBE_SLEEPABLE),
        PROG_COUNT_UPROBE => Some(PROG_COUNT_UPROBE_SLEEPABLE),
        _ => None,
    }
}

/// Keyed kinds (see `keyed`): `argdist --count` ...
pub const MAP_VALUE_COUNTS: &str = "VALUE_COUNTS";
pub const PROG_COUNT_UPROBE: &str = "pb_count";
pub const PROG_COUNT_URETPROBE: &str = "pb_count_ret";
/// ... and `--by`, whose programs key by the `BY_KEY` global.
pub const MAP_VALUE_STATS_BY: &str = "VALUE_STATS_BY";
pub const MAP_LATENCY_STATS_BY: &str = "LATENCY_STATS_BY";
pub const PROG_VALUE_BY_UPROBE: &str = "pb_value_by";
pub const PROG_VALUE_BY_URETPROBE: &str = "pb_value_by_ret";
pub const PROG_LATENCY_BY_UPROBE: &str = "pb_lat_by";
pub const PROG_LATENCY_BY_EXIT: &str = "pb_lat_by_exit";
pub const PROG_LATENCY_BY_URETPROBE: &str = "pb_lat_by_ret";
/// `--by`'s histogram buckets, one count per (key, bucket) (`BUCKET_WORD`).
pub const MAP_BUCKETS_BY: &str = "BUCKETS_BY";
/// The keyed kinds' dropped calls per reason, per slot and bank (`Losses`, `bank_index`).
pub const MAP_LOSSES: &str = "LOSSES";
/// `--by stack`: each distinct stack's frames, under its hash (`StackFrames`), and the per-CPU
/// place a stack is walked into.
pub const MAP_STACK_FRAMES: &str = "STACK_FRAMES";
pub const MAP_STACK_SCRATCH: &str = "STACK_SCRATCH";
/// `--count`: where the length of a C string longer than a key is found (4 KiB per CPU).
pub const MAP_SCAN: &str = "SCAN";

/// Calls of a function's inlined copies, counted at one instruction per copy (the site's
/// cookie is the function's slot), per slot and bank (`bank_index`).
pub const MAP_INLINED_CALLS: &str = "INLINED_CALLS";
pub const PROG_INLINED: &str = "pb_inlined";

/// The bank the programs write (`bank_index`, `SlotKey::bank`).
pub const MAP_EPOCH: &str = "EPOCH";
/// latency's in-flight calls (the outermost per function and context; stacks of nested ones)
/// and the probes' own costs.
pub const MAP_ENTRIES: &str = "ENTRIES";
pub const MAP_NESTED: &str = "NESTED";
pub const MAP_EMPTY_STACK: &str = "EMPTY_STACK";
pub const MAP_PROBE_COSTS: &str = "PROBE_COSTS";
pub const MAP_HIT_COSTS: &str = "HIT_COSTS";
/// `latency --slower-than`/`--events`: the ring buffer the calls leave through (its size in
/// bytes), the calls it could not take per slot, each slot's `EventSources`, and the
/// arguments stashed at entries (`EventArgsKey`).
pub const MAP_EVENTS: &str = "EVENTS";
pub const MAP_EVENT_DROPS: &str = "EVENT_DROPS";
pub const MAP_EVENT_SOURCES: &str = "EVENT_SOURCES";
pub const MAP_EVENT_ARGS: &str = "EVENT_ARGS";
/// The events' settings (`EventConfig`).
pub const GLOBAL_EVENTS: &str = "EVENTS_CONFIG";

/// Globals the loader sets: latency's display unit in nanoseconds, the `SlotKey::kind` the
/// `--by` programs key by, and the `--filter` (`Filter`).
pub const GLOBAL_UNIT_NS: &str = "UNIT_NS";
pub const GLOBAL_BY_KEY: &str = "BY_KEY";
pub const GLOBAL_FILTER: &str = "FILTER";
/// `--by stack`: 1 to follow frame pointers past the caller (0: the program keeps none).
pub const GLOBAL_STACK_WALK: &str = "STACK_WALK";
/// `--by stack`: distinct stacks kept (`MAP_STACK_FRAMES`' size).
pub const MAX_STACKS: u32 = 16384;
/// The paths into arguments (`FieldPaths`).
pub const GLOBAL_FIELD_PATHS: &str = "FIELD_PATHS";
/// `--cgroup`/`--container`: the cgroup v2 id whose processes (and its descendants') are
/// measured; 0 for every process.
pub const GLOBAL_CGROUP: &str = "CGROUP";
/// How deep below the root of the cgroup v2 hierarchy the programs look for that cgroup among
/// a task's ancestors (systemd's and Kubernetes' deepest are about 6).
pub const MAX_CGROUP_LEVELS: u32 = 32;
/// Globals of the one-program-per-site mode for kernels without BPF cookies: a non-zero
/// `COOKIE_IS_FIXED` makes the programs use `FIXED_COOKIE` instead of the attach cookie.
pub const GLOBAL_COOKIE_IS_FIXED: &str = "COOKIE_IS_FIXED";
pub const GLOBAL_FIXED_COOKIE: &str = "FIXED_COOKIE";

/// Maps shared by every copy of the programs in that mode (every map: a copy's own would cost
/// its size again per site).
pub const SHARED_MAPS: [&str; 21] = [
    MAP_VALUE_STATS,
    MAP_LATENCY_STATS,
    MAP_VALUE_COUNTS,
    MAP_VALUE_STATS_BY,
    MAP_LATENCY_STATS_BY,
    MAP_BUCKETS_BY,
    MAP_LOSSES,
    MAP_SCAN,
    MAP_EPOCH,
    MAP_ENTRIES,
    MAP_NESTED,
    MAP_EMPTY_STACK,
    MAP_PROBE_COSTS,
    MAP_HIT_COSTS,
    MAP_INLINED_CALLS,
    MAP_STACK_FRAMES,
    MAP_STACK_SCRATCH,
    MAP_EVENTS,
    MAP_EVENT_DROPS,
    MAP_EVENT_SOURCES,
    MAP_EVENT_ARGS,
];
