//! A whole run's plan, complete, as a command hands it to `trace`: every site, each slot's
//! label, the probe shapes to calibrate and the map's sizing; warnings as they arise. Each
//! decision (which exit, the function limit, the rows shown, the display unit) is made here,
//! once, so no command patches a plan afterwards.
use super::events::{self, EventsAsk, EventsPlan};
use super::{inlined, latency_plan, value_plan, AlsoRead, LatencyPlan, Measured, Site, Value};
use crate::error::{user, UserError};
use crate::render::name_a_few;
use crate::resolve::elf::{Binary, Function, Runtime};
use crate::resolve::{Chosen, Target};
use crate::shared::{By, ExitMode, Unit};
use anyhow::Result;
use probe_ebpf::{Filter, SpanShape};

/// Keys a `--by` map holds per interval: processes or threads, far beyond what one run sees.
pub const BY_MAX_KEYS: u32 = 10_000;
/// (key, histogram bucket) pairs a `--by` map holds per interval: a key of latencies uses a
/// bucket per distinct (fine, `@hist_log`) pair its calls fell in, typically tens.
pub const BY_MAX_BUCKETS: u32 = 131_072;
/// Keys shown per function without --top.
pub const DEFAULT_TOP_KEYS: usize = 20;
/// Rows of a `--count` table without --top.
pub const DEFAULT_TOP_VALUES: usize = 20;
/// The value slot argdist aggregates into (one function, one value).
const ARGDIST_SLOT: u32 = 0;

/// What a keyed kind's map holds (nothing for the arrays).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keying {
    /// Distinct keys per bank.
    pub max_keys: u32,
    /// `--by` kinds: (key, histogram bucket) pairs per bank (`KeyedMap::WithBuckets`).
    pub max_buckets: u32,
    /// `--by` kinds: the `SlotKey::kind` their programs key by (0 for the others).
    pub by_key: u32,
    /// `--by stack`: 1 to walk frame pointers past the caller (0: the program keeps none).
    pub stack_walk: u32,
}

impl Keying {
    /// `--by`'s map, or (`--count`) `max_values` distinct values.
    fn of(by: Option<By>, max_values: u32) -> Keying {
        Keying {
            max_keys: if by.is_some() { BY_MAX_KEYS } else { max_values },
            max_buckets: BY_MAX_BUCKETS,
            by_key: by.map_or(0, By::key_kind),
            stack_walk: 1,
        }
    }
}

/// `--by stack`: whether `binary` keeps frame pointers, so its stacks can be walked past the
/// traced function's caller. Go does (amd64 and arm64). Elsewhere, from its functions' first
/// instructions: most of a program built with `-fno-omit-frame-pointer` set one up.
pub fn keeps_frame_pointers(binary: &Binary) -> bool {
    if matches!(binary.runtime, Runtime::Go(_)) {
        return true;
    }
    let sampled: Vec<&Function> = binary.functions().iter().filter(|f| f.size >= 16).take(400).collect();
    let with =
        sampled.iter().filter(|f| binary.code(f).is_ok_and(|code| crate::arch::sets_frame_pointer(&code))).count();
    !sampled.is_empty() && with * 2 >= sampled.len()
}

/// `--by stack` or events' `--stack` (`stacks`): 0 when the traced function's file keeps no
/// frame pointers (said once: its stacks are then its callers alone), else 1.
fn stack_walk(binary: &Binary, stacks: bool) -> u32 {
    if !stacks || keeps_frame_pointers(binary) {
        return 1;
    }
    eprintln!(
        "probe: warning: {} keeps no frame pointers (built without -fno-omit-frame-pointer), so its stacks \
         cannot be walked: each stack is the traced function's caller alone",
        binary.path.display()
    );
    0
}

/// `stack_walk` over the files of the functions measured: 0 if any keeps no frame pointers.
fn stack_walk_of_files(target: &Target, measured_in: &[Vec<(&Function, u32)>], stacks: bool) -> u32 {
    let files = measured_in.iter().enumerate().filter(|(_, f)| !f.is_empty());
    files.map(|(file, _)| stack_walk(target.file(file), stacks)).min().unwrap_or(1)
}

/// What a command hands over: the target, its sites, and one label per value slot.
pub struct Job {
    pub target: Target,
    pub sites: Vec<Site>,
    /// What each slot measures, in slot order.
    pub measured: Vec<Measured>,
    /// Shown once tracing starts, e.g. "main.ToString arg0 (Go register ABI)".
    pub description: String,
    /// Latency's display unit, the same for every slot (None: values, which have none).
    pub unit: Option<Unit>,
    /// Latency: the probe shapes whose own cost is calibrated and subtracted (none: nothing
    /// is subtracted, as for argdist and `--raw`).
    pub shapes: Vec<SpanShape>,
    /// Keyed kinds (`--count`, `--by`): their map's size and key.
    pub keying: Keying,
    /// `--filter`: what a call must satisfy to be aggregated.
    pub filter: Filter,
    /// The entry sites read the value from the process's memory (a stack word, a string's
    /// bytes): kernels with sleepable uprobes then get the programs that may fault a page in.
    pub reads_memory: bool,
    /// latency `--slower-than`/`--events`: the calls sent one by one, and what they carry.
    pub events: Option<EventsPlan>,
}

/// What `latency` was asked for, besides the functions.
pub struct LatencyAsk {
    pub exit: ExitMode,
    pub unit: Unit,
    /// `--raw`: no calibration, nothing subtracted.
    pub raw: bool,
    pub by: Option<By>,
    pub top: Option<usize>,
    pub filter: Filter,
    /// `--slower-than`/`--events`.
    pub events: Option<EventsAsk>,
}

/// Plans `latency` on every chosen function (`glob`: a glob chose it, so a function that
/// cannot be probed is skipped with a warning instead of ending the run).
pub fn latency_job(target: Target, chosen: &[(Chosen, bool)], ask: LatencyAsk) -> Result<Job> {
    let also = AlsoRead::of(&ask.filter, ask.by);
    let (mut sites, mut slots, mut skipped, mut shapes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The functions measured, by file: their inlined copies are found in one pass per file.
    let mut measured_in: Vec<Vec<(&Function, u32)>> = vec![Vec::new(); target.files()];
    let mut event_slots = Vec::new();
    let mut goid_offset = 0;
    for (c, glob) in chosen {
        let slot = slots.len() as u32;
        let binary = target.file(c.file);
        // The entry site must leave the arguments an event reads where they are.
        let mut also = also.clone();
        let slot_events = match &ask.events {
            Some(e) => {
                let s = events::slot_events(binary, &c.function, e)?;
                also.sources.extend(
                    s.sources
                        .args
                        .iter()
                        .take(s.args.len())
                        .filter_map(|&a| probe_ebpf::ValueCookie::decode(a).map(|cookie| cookie.source)),
                );
                if s.go && goid_offset == 0 {
                    goid_offset = events::goid_offset(binary)?.bytes();
                }
                Some(s)
            }
            None => None,
        };
        let plan = match latency_plan(binary, &c.function, slot, ask.exit, ask.unit, &also) {
            Ok(plan) => plan,
            Err(e) if *glob && e.downcast_ref::<UserError>().is_some() => {
                skipped.push((Skip::Cannot(why_not(&e, &c.function.name)), c.function.name.clone()));
                continue;
            }
            Err(e) => return Err(e),
        };
        match plan {
            LatencyPlan::Sites { measured, sites: s, shape, warning } => {
                if let Some(warning) = warning {
                    eprintln!("probe: warning: {warning}");
                }
                sites.extend(s);
                event_slots.extend(slot_events);
                measured_in[c.file].push((&c.function, slot));
                slots.push(measured);
                if !ask.raw && !shapes.contains(&shape) {
                    shapes.push(shape);
                }
            }
            LatencyPlan::Skip { function, reason } => skipped.push((Skip::Has(reason), function)),
        }
    }
    if slots.is_empty() {
        let (reason, function) = skipped.first().cloned().unwrap_or((Skip::Has("no function"), String::new()));
        return Err(user(format!("nothing to measure: {}; pick another function", reason.of(&function))));
    }
    for warning in skip_warnings(skipped) {
        eprintln!("probe: warning: {warning}");
    }
    let lacking = if ask.filter.is_empty() {
        "counted, not timed: an inlined copy has no entry or return of its own"
    } else {
        "counted, not timed nor filtered: an inlined copy has no entry or return of its own"
    };
    let mut budget = inlined::MAX_INLINED_SITES;
    for (file, functions) in measured_in.iter().enumerate().filter(|(_, f)| !f.is_empty()) {
        let planned = inlined::for_functions(target.file(file), functions, lacking, &mut budget);
        for ((_, slot), (inlined, summary)) in functions.iter().zip(planned) {
            sites.extend(inlined);
            slots[*slot as usize].inlined = summary;
        }
    }
    if ask.by.is_some() {
        let top = ask.top.unwrap_or(DEFAULT_TOP_KEYS);
        slots.iter_mut().for_each(|m| m.top_values = top);
    }
    let names: Vec<&str> = slots.iter().map(|m| m.function.as_str()).collect();
    let description = format!("latency of {}", name_a_few(&names, 5));
    let stacks = ask.by == Some(By::Stack) || ask.events.as_ref().is_some_and(|e| e.stack);
    let walk = stack_walk_of_files(&target, &measured_in, stacks);
    Ok(Job {
        target,
        sites,
        measured: slots,
        description,
        unit: Some(ask.unit),
        shapes,
        // Only `--by` makes latency's map keyed.
        keying: Keying { stack_walk: walk, ..Keying::of(ask.by, BY_MAX_KEYS) },
        filter: ask.filter,
        reads_memory: false,
        events: ask.events.map(|e| EventsPlan {
            min_ns: e.min_ns,
            every_call: e.every_call,
            slots: event_slots,
            goid_offset,
            stack: e.stack,
        }),
    })
}

/// What `argdist` was asked for, besides the function and its value.
pub struct ArgdistAsk {
    /// `--count`: calls per exact value (a string's bytes are read then).
    pub count: bool,
    pub max_values: u32,
    pub by: Option<By>,
    pub top: Option<usize>,
    pub filter: Filter,
    /// Said before tracing, once the plan holds (how the value was located).
    pub note: Option<String>,
}

/// Plans `argdist` on one function's `value`.
pub fn argdist_job(target: Target, chosen: &Chosen, value: Value, ask: ArgdistAsk) -> Result<Job> {
    let binary = target.file(chosen.file);
    let at_return = value.at_return();
    let also = AlsoRead::of(&ask.filter, ask.by);
    let mut plan = value_plan(binary, &chosen.function, value, ARGDIST_SLOT, &also)?;
    // Said once the plan holds: an error is one line, with nothing before it.
    if let Some(note) = ask.note {
        eprintln!("probe: {note}");
    }
    let description = format!("{} {} ({})", plan.measured.function, plan.measured.what, plan.abi);
    plan.measured.top_values = ask.top.unwrap_or(DEFAULT_TOP_VALUES);
    // `--by stack` walks into a per-CPU buffer, which a sleepable program (preemptible while it
    // runs) could share with another task on its CPU: the plain programs only, so a value on a
    // page not yet touched is counted unreadable instead of faulted in.
    let reads_memory = super::reads_memory(&plan.sites, ask.count) && ask.by != Some(By::Stack);
    let lacking = inlined_calls_lack(at_return, !ask.filter.is_empty());
    let mut budget = inlined::MAX_INLINED_SITES;
    let planned = inlined::for_functions(binary, &[(&chosen.function, ARGDIST_SLOT)], &lacking, &mut budget);
    if let Some((inlined, sites)) = planned.into_iter().next() {
        plan.measured.inlined = sites;
        plan.sites.extend(inlined);
    }
    let walk = stack_walk(binary, ask.by == Some(By::Stack));
    Ok(Job {
        target,
        sites: plan.sites,
        measured: vec![plan.measured],
        description,
        unit: None,
        shapes: Vec::new(),
        keying: Keying { stack_walk: walk, ..Keying::of(ask.by, ask.max_values) },
        filter: ask.filter,
        reads_memory,
        events: None,
    })
}

/// What argdist cannot have of a call of an inlined copy, which is only counted.
fn inlined_calls_lack(at_return: bool, filtered: bool) -> String {
    let what = if at_return { "results" } else { "arguments" };
    let filter = if filtered { ", so --filter is not applied to them" } else { "" };
    format!("counted; their {what} cannot be read{filter}")
}

/// Why a function was not measured.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Skip {
    /// It has what the plan names (`no RET instruction ...`).
    Has(&'static str),
    /// A probe cannot go on it, for this reason (e.g. an entry the kernel refuses).
    Cannot(String),
}

impl Skip {
    /// The reason as a sentence about `function`.
    fn of(&self, function: &str) -> String {
        match self {
            Skip::Has(reason) => format!("{function} has {reason}"),
            Skip::Cannot(why) => format!("{function} cannot be traced ({why})"),
        }
    }
}

/// A plan's error about `function` as a reason shared by other functions: without the name in
/// front and the advice at the end (`f: its first instruction is ...; trace its caller`).
fn why_not(e: &anyhow::Error, function: &str) -> String {
    let message = e.to_string();
    let why = message.strip_prefix(function).and_then(|m| m.strip_prefix(": ")).unwrap_or(&message);
    why.rsplit_once("; ").map_or(why, |(why, _advice)| why).to_string()
}

/// One line per reason, naming a few of the functions skipped for it.
fn skip_warnings(mut skipped: Vec<(Skip, String)>) -> Vec<String> {
    skipped.sort_by(|a, b| a.0.cmp(&b.0)); // stable: functions stay in their order
    skipped
        .chunk_by(|a, b| a.0 == b.0)
        .map(|group| match group {
            [(reason, function)] => format!("{}; not measured", reason.of(function)),
            _ => {
                let names: Vec<&str> = group.iter().map(|s| s.1.as_str()).collect();
                let what = match &group[0].0 {
                    Skip::Has(reason) => format!("have {reason}"),
                    Skip::Cannot(why) => format!("cannot be traced ({why})"),
                };
                format!("{} functions {what}, not measured: {}", group.len(), name_a_few(&names, 3))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_are_one_line_per_reason() {
        let no_ret = "no RET instruction (it only tail-calls or never returns)";
        let refused = Skip::Cannot("its first instruction is int3".into());
        let skipped = vec![
            (Skip::Has(no_ret), "a".to_string()),
            (Skip::Has("size 0"), "z".to_string()),
            (refused.clone(), "r".to_string()),
            (Skip::Has(no_ret), "b".to_string()),
        ]
        .into_iter()
        .chain((0..5).map(|i| (Skip::Has(no_ret), format!("f{i}"))))
        .chain((0..2).map(|i| (Skip::Cannot("x".into()), format!("x{i}"))))
        .collect();
        assert_eq!(
            skip_warnings(skipped),
            vec![
                format!("7 functions have {no_ret}, not measured: a, b, f0 and 4 more"),
                "z has size 0; not measured".to_string(),
                "r cannot be traced (its first instruction is int3); not measured".to_string(),
                "2 functions cannot be traced (x), not measured: x0, x1".to_string(),
            ]
        );
    }

    #[test]
    fn a_plan_error_becomes_a_reason_without_the_name_and_the_advice() {
        let e = crate::error::user("runtime.abort.abi0: its first instruction is int3; trace its caller");
        assert_eq!(why_not(&e, "runtime.abort.abi0"), "its first instruction is int3");
    }

    #[test]
    fn keyed_maps_are_sized_by_by_or_count() {
        let by = Keying::of(Some(By::Pid), 7);
        assert_eq!((by.max_keys, by.max_buckets, by.by_key), (BY_MAX_KEYS, BY_MAX_BUCKETS, By::Pid.key_kind()));
        let count = Keying::of(None, 7);
        assert_eq!((count.max_keys, count.by_key), (7, 0));
    }
}
