//! Names of the maps, programs and globals in the eBPF object, shared so a rename cannot
//! split the kernel side from the loader.

/// Array kinds: `argdist` values and `latency`.
pub const MAP_VALUE_STATS: &str = "VALUE_STATS";
pub const PROG_VALUE_UPROBE: &str = "pb_value";
pub const PROG_VALUE_URETPROBE: &str = "pb_value_ret";
pub const MAP_LATENCY_STATS: &str = "LATENCY_STATS";
pub const PROG_LATENCY_UPROBE: &str = "pb_lat";
pub const PROG_LATENCY_URETPROBE: &str = "pb_lat_ret";

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
pub const PROG_LATENCY_BY_URETPROBE: &str = "pb_lat_by_ret";
/// Calls a full keyed map could not take, per slot and bank (`bank_index`).
pub const MAP_KEYS_LOST: &str = "KEYS_LOST";

/// The bank the programs write (`bank_index`, `SlotKey::bank`).
pub const MAP_EPOCH: &str = "EPOCH";
/// latency's in-flight calls and the probes' own costs.
pub const MAP_ENTRIES: &str = "ENTRIES";
pub const MAP_EMPTY_STACK: &str = "EMPTY_STACK";
pub const MAP_PROBE_COSTS: &str = "PROBE_COSTS";
pub const MAP_HIT_COSTS: &str = "HIT_COSTS";

/// Globals the loader sets: latency's display unit in nanoseconds, the `SlotKey::kind` the
/// `--by` programs key by, and the `--filter` (`Filter`).
pub const GLOBAL_UNIT_NS: &str = "UNIT_NS";
pub const GLOBAL_BY_KEY: &str = "BY_KEY";
pub const GLOBAL_FILTER: &str = "FILTER";
/// Globals of the one-program-per-site mode for kernels without BPF cookies: a non-zero
/// `COOKIE_IS_FIXED` makes the programs use `FIXED_COOKIE` instead of the attach cookie.
pub const GLOBAL_COOKIE_IS_FIXED: &str = "COOKIE_IS_FIXED";
pub const GLOBAL_FIXED_COOKIE: &str = "FIXED_COOKIE";

/// Maps shared by every copy of the programs in that mode.
pub const SHARED_MAPS: [&str; 11] = [
    MAP_VALUE_STATS,
    MAP_LATENCY_STATS,
    MAP_VALUE_COUNTS,
    MAP_VALUE_STATS_BY,
    MAP_LATENCY_STATS_BY,
    MAP_KEYS_LOST,
    MAP_EPOCH,
    MAP_ENTRIES,
    MAP_EMPTY_STACK,
    MAP_PROBE_COSTS,
    MAP_HIT_COSTS,
];
