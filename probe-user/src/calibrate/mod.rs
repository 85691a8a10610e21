//! What the probes themselves cost, measured at start-up on this kernel, so `latency` reports
//! the function's own time and not the tracer's.
//!
//! A uprobe is a trap: the kernel's work after the entry probe took its timestamp, and before
//! the exit probe took its own, lands inside every measured span; and every probe that fires
//! inside a call (its callees', a recursion's) adds its whole cost to that call. Both depend on
//! the kernel, the machine and on how the entry instruction is handled (emulated or
//! single-stepped) and how the exit is observed (RET probe or uretprobe): the `SpanShape`.
//!
//! probe carries one tiny function per shape, with exactly that shape's instructions. For each
//! shape in use it times calls to that function without probes, attaches the same programs the
//! trace uses (in probe's own process only), and calls it again:
//! - the durations the programs record for a function that does nothing are the *inside* cost;
//! - the extra time a call takes, as the caller sees it, is the *hit* cost of one probed call.
//!
//! The programs subtract the inside cost from every call of that shape, and from each call the
//! hit costs of the probed calls that returned inside it on the same goroutine or thread. While
//! the trace runs, `watch` measures the inside cost again (it moves on a virtual machine) and
//! states what that does to the resolution. `CostPlan` decides where the calibration sites are
//! loaded: with the trace's own programs when they are latency's, unfiltered, or apart.
use crate::arch::Handling;
use crate::features::AttachStrategy;
use crate::histogram::ns_histogram;
use crate::plan::Keying;
use crate::plan::{Resolution, ShapeCost, Site, SiteKind};
use crate::session::{Aggregate, Programs};
use crate::session::{LoadConfig, Session};
use anyhow::{bail, Result};
use probe_ebpf::{
    fine_bucket, fine_bucket_range, Filter, LatencyCookie, LatencyStats, SpanShape, FINE_BUCKETS, PROBE_COSTS_LEN,
};
use std::time::Instant;

mod watch;
pub use watch::CostWatch;

/// A global function of the calibration's assembly: its label, body and ELF symbol size.
macro_rules! cal_fn {
    ($name:literal, $($line:literal),+) => {
        concat!(
            ".p2align 4\n.globl ", $name, "\n.type ", $name, ", @function\n", $name, ":\n",
            $($line, "\n",)+
            ".size ", $name, ", . - ", $name, "\n"
        )
    };
}

// One function per shape. An emulated entry is `push %rbp` (the C and Go >= 1.21 prologue), a
// single-stepped one `mov` (any other instruction costs the same second trap); the exit is the
// `ret` (a RET probe) or the return address (a uretprobe, attached at the entry). Go's shapes
// have functions of their own, called through `probe_cal_go_call` with R14 (Go's g) pointing at
// `PROBE_CAL_FAKE_G`: their probes run the Go path of the programs, which reads the
// goroutine's stack bounds from memory (about 0.3 us more per call here than the C path).
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.probe_calibration,\"ax\",@progbits",
    cal_fn!("probe_cal_emulated_ret", "push %rbp", "pop %rbp", "ret"),
    cal_fn!("probe_cal_stepped_ret", "mov %rdi, %rax", "ret"),
    cal_fn!("probe_cal_emulated_uret", "push %rbp", "pop %rbp", "ret"),
    cal_fn!("probe_cal_stepped_uret", "mov %rdi, %rax", "ret"),
    cal_fn!("probe_cal_go_emulated_ret", "push %rbp", "pop %rbp", "ret"),
    cal_fn!("probe_cal_go_stepped_ret", "mov %rdi, %rax", "ret"),
    // probe_cal_go_call(v, f): f(v) with R14 = &PROBE_CAL_FAKE_G, R14 kept for the caller.
    cal_fn!("probe_cal_go_call", "push %r14", "lea PROBE_CAL_FAKE_G(%rip), %r14", "call *%rsi", "pop %r14", "ret"),
    ".popsection",
    options(att_syntax)
);

// arm64: an emulated (simulated) entry is a branch (`b` to the next instruction: Go's entry
// site is its stack check's `b.ls`), a single-stepped one `mov`; `ret` is simulated there. Go's
// g is X28.
#[cfg(target_arch = "aarch64")]
std::arch::global_asm!(
    ".pushsection .text.probe_calibration,\"ax\",@progbits",
    cal_fn!("probe_cal_emulated_ret", "b .+4", "ret"),
    cal_fn!("probe_cal_stepped_ret", "mov x0, x0", "ret"),
    cal_fn!("probe_cal_emulated_uret", "b .+4", "ret"),
    cal_fn!("probe_cal_stepped_uret", "mov x0, x0", "ret"),
    cal_fn!("probe_cal_go_emulated_ret", "b .+4", "ret"),
    cal_fn!("probe_cal_go_stepped_ret", "mov x0, x0", "ret"),
    cal_fn!(
        "probe_cal_go_call",
        "stp x28, x30, [sp, #-16]!",
        "adrp x28, PROBE_CAL_FAKE_G",
        "add x28, x28, :lo12:PROBE_CAL_FAKE_G",
        "blr x1",
        "ldp x28, x30, [sp], #16",
        "ret"
    ),
    ".popsection",
);

/// What Go's g points at while a Go shape is calibrated: the programs read `g.stack.hi` at
/// offset 8 (any value serves: a frame's depth is measured from it at entry and exit alike).
#[no_mangle]
static PROBE_CAL_FAKE_G: [u64; 2] = [0, 1 << 47];

/// Offsets of the `ret` in the emulated-entry and the stepped-entry functions.
#[cfg(target_arch = "x86_64")]
const RET_OFFSETS: (u64, u64) = (2, 3);
#[cfg(target_arch = "aarch64")]
const RET_OFFSETS: (u64, u64) = (4, 4);

type CalFn = unsafe extern "C" fn(u64) -> u64;

extern "C" {
    fn probe_cal_emulated_ret(v: u64) -> u64;
    fn probe_cal_stepped_ret(v: u64) -> u64;
    fn probe_cal_emulated_uret(v: u64) -> u64;
    fn probe_cal_stepped_uret(v: u64) -> u64;
    fn probe_cal_go_emulated_ret(v: u64) -> u64;
    fn probe_cal_go_stepped_ret(v: u64) -> u64;
    fn probe_cal_go_call(v: u64, f: CalFn) -> u64;
}

/// One call of the shape's calibration function, as the traced code would call it.
fn call(shape: SpanShape, v: u64) -> u64 {
    let (function, _) = function_of(shape);
    let v = std::hint::black_box(v);
    // SAFETY: the calibration functions only move a register (or push and pop one) and return.
    unsafe {
        if shape.go {
            // The probes read the fake g with bpf_probe_read_user, which cannot fault a page
            // in: read here first, so its page is mapped (untouched, whether it was depended
            // on where the linker put it, and every call of a run could be lost).
            std::hint::black_box(std::ptr::read_volatile(&PROBE_CAL_FAKE_G[1]));
            probe_cal_go_call(v, function)
        } else {
            function(v)
        }
    }
}

/// Calls timed per round, after `WARM_UP` untimed ones (the first hit maps the kernel's
/// out-of-line page into the process). The inside cost is the lowest over `ROUNDS` of the
/// rounds' typical duration (`typical_ns`): a busy machine (another process on the core or its sibling, an
/// interrupt) makes some calls and some rounds slower, never faster, and what the probes add to
/// a span on a quiet core is what is subtracted from every span. The slowest shape (two
/// single-steps) takes about 6 ms in all.
const CALLS: usize = 60;
const ROUNDS: usize = 5;
const WARM_UP: usize = 20;
const QUANTILE: f64 = 0.25;

/// The calibration function of a shape and the offset of its `ret` from its start.
fn function_of(shape: SpanShape) -> (CalFn, u64) {
    match (shape.entry_stepped, shape.uretprobe, shape.go) {
        (false, false, false) => (probe_cal_emulated_ret, RET_OFFSETS.0),
        (true, false, false) => (probe_cal_stepped_ret, RET_OFFSETS.1),
        (false, true, _) => (probe_cal_emulated_uret, RET_OFFSETS.0),
        (true, true, _) => (probe_cal_stepped_uret, RET_OFFSETS.1),
        (false, false, true) => (probe_cal_go_emulated_ret, RET_OFFSETS.0),
        (true, false, true) => (probe_cal_go_stepped_ret, RET_OFFSETS.1),
    }
}

/// How a trace's probe costs are measured: not at all (no shapes: argdist, `--raw`); on
/// calibration sites loaded with the trace's own programs (one load, one verification), which
/// needs latency's programs and no `--filter` or cgroup (they would apply to those sites too);
/// or else in a session of their own.
pub enum CostPlan {
    Nothing,
    WithTheTrace(Calibration),
    Apart(Vec<SpanShape>),
}

impl CostPlan {
    /// The plan for a trace of `slots` slots run by `programs`; `unfiltered`: every call of
    /// every process counts (no `--filter`, no cgroup).
    pub fn choose(shapes: &[SpanShape], programs: Programs, unfiltered: bool, slots: u32) -> Result<CostPlan> {
        Ok(if shapes.is_empty() {
            CostPlan::Nothing
        } else if programs == Calibration::PROGRAMS && unfiltered {
            CostPlan::WithTheTrace(Calibration::plan(shapes, slots)?)
        } else {
            CostPlan::Apart(shapes.to_vec())
        })
    }

    /// The calibration sites the trace's session loads after its own.
    pub fn sites(&self) -> &[Site] {
        match self {
            CostPlan::WithTheTrace(c) => &c.sites,
            _ => &[],
        }
    }

    /// The slots the trace's session keeps after its own for the calibration.
    pub fn slots(&self) -> u32 {
        match self {
            CostPlan::WithTheTrace(_) => Calibration::SLOTS,
            _ => 0,
        }
    }

    /// Measures the costs and sets them in `session` (loaded with `self.sites()` from
    /// `first_site` on), before any of the trace's sites is attached.
    pub fn run(self, session: &mut Session, first_site: usize, strategy: AttachStrategy) -> Result<Calibrated> {
        let calibrated = match self {
            CostPlan::Nothing => Calibrated::default(),
            CostPlan::WithTheTrace(c) => {
                let own = Some(std::process::id() as i32);
                let sites = first_site..first_site + c.sites.len();
                c.run(session, |s| s.attach_sites(sites, own))?
            }
            CostPlan::Apart(shapes) => measure(&shapes, strategy)?,
        };
        session.set_probe_costs(&cost_table(&calibrated.costs))?;
        Ok(calibrated)
    }
}

/// What a calibration measured, and what it needs to keep measuring while the trace runs.
#[derive(Default)]
pub struct Calibrated {
    pub costs: Vec<ShapeCost>,
    /// The calibration's own session, when it has one: still attached (see `measure`).
    pub apart: Option<Session>,
    /// Each calibrated shape's slot and untraced time.
    probed: Vec<watch::Probed>,
}

impl Calibrated {
    /// Watches the costs while the trace runs (`watch.rs`), widening `resolutions` by what
    /// they do; `session`: the trace's. Nothing to watch without calibration.
    pub fn watch(&self, session: &Session, resolutions: Vec<Resolution>) -> Result<Option<CostWatch>> {
        if self.probed.is_empty() {
            return Ok(None);
        }
        let records = self.apart.as_ref().unwrap_or(session).calibration_records()?;
        Ok(Some(CostWatch::start(&self.probed, &self.costs, (records, session.probe_costs()?), resolutions)))
    }
}

/// Measures the costs of `shapes` in a session of their own, on probe's own functions in this
/// process. The session is returned still attached: on kernels that remove probes one at a
/// time (~0.1 s each), the trace removes it at its end with its own, not before it starts.
pub fn measure(shapes: &[SpanShape], strategy: AttachStrategy) -> Result<Calibrated> {
    if shapes.is_empty() {
        return Ok(Calibrated::default());
    }
    let calibration = Calibration::plan(shapes, 0)?;
    let config = LoadConfig {
        programs: Calibration::PROGRAMS,
        slots: 0,
        calibration_slots: Calibration::SLOTS,
        keying: Keying::default(),
        filter: Filter::NONE,
        unit_ns: 1,
        cgroup: 0,
        events: probe_ebpf::EventConfig::OFF,
        event_sources: Vec::new(),
        event_buffer: 0,
    };
    let mut session = Session::load(&calibration.sites, config, strategy)?;
    let own = std::process::id() as i32;
    let calibrated = calibration.run(&mut session, |s| s.attach_sites(0..calibration.sites.len(), Some(own)))?;
    Ok(Calibrated { apart: Some(session), ..calibrated })
}

/// The calibration sites of the shapes in use.
pub struct Calibration {
    shapes: Vec<SpanShape>,
    /// Slot of the first shape's stats; the shapes follow in order.
    first_slot: u32,
    pub sites: Vec<Site>,
}

impl Calibration {
    /// The programs and map the calibration sites use: latency's.
    pub const PROGRAMS: Programs = LatencyStats::PROGRAMS;

    /// Slots the calibration needs after the trace's own.
    pub const SLOTS: u32 = SpanShape::ALL.len() as u32;

    /// Plans probes on probe's own calibration functions for `shapes`, into slots from
    /// `first_slot` on.
    pub fn plan(shapes: &[SpanShape], first_slot: u32) -> Result<Calibration> {
        let mut shapes = shapes.to_vec();
        shapes.sort();
        shapes.dedup();
        let exe = crate::session::own::executable()?;
        let mut sites = Vec::new();
        for (i, &shape) in shapes.iter().enumerate() {
            let slot = first_slot + i as u32;
            let (function, ret_offset) = function_of(shape);
            let entry = crate::session::own::file_offset_of(function as *const () as u64)?;
            let cookie = |exit: bool| {
                let uretprobe = exit && shape.uretprobe;
                LatencyCookie {
                    slot,
                    exit,
                    go: shape.go,
                    uretprobe,
                    stack_check: false,
                    entry_stepped: shape.entry_stepped,
                    raw: true,
                }
                .encode()
            };
            let handling = if shape.entry_stepped { Handling::SingleStepped } else { Handling::Emulated };
            let site = |kind, file_offset, exit: bool, handling| Site {
                path: exe.clone(),
                kind,
                file_offset,
                cookie: cookie(exit),
                handling,
                exit,
            };
            sites.push(site(SiteKind::Uprobe, entry, false, handling));
            sites.push(if shape.uretprobe {
                site(SiteKind::Uretprobe, entry, true, handling)
            } else {
                site(SiteKind::Uprobe, entry + ret_offset, true, Handling::SingleStepped)
            });
        }
        Ok(Calibration { shapes, first_slot, sites })
    }

    /// Measures each shape's costs. `attach` attaches this calibration's sites (in this process
    /// only); their cookies say `raw`, so nothing is subtracted from them.
    pub fn run(&self, session: &mut Session, attach: impl FnOnce(&mut Session) -> Result<()>) -> Result<Calibrated> {
        let untraced: Vec<u64> =
            self.shapes.iter().map(|&s| (0..ROUNDS).map(|_| median_call_ns(s)).min().unwrap_or(0)).collect();
        attach(session)?;
        if crate::interrupt::requested() {
            return Ok(Calibrated::default()); // Ctrl-C while attaching: the run ends, nothing to calibrate
        }
        let mut costs = Vec::with_capacity(self.shapes.len());
        for (i, (&shape, &untraced)) in self.shapes.iter().zip(&untraced).enumerate() {
            let slot = self.first_slot + i as u32;
            for v in 0..WARM_UP {
                call(shape, v as u64);
            }
            let mut typical = Vec::with_capacity(ROUNDS);
            let mut medians = Vec::with_capacity(ROUNDS);
            let mut all_calls = Vec::with_capacity(ROUNDS * CALLS);
            let mut recorded = [0u64; FINE_BUCKETS];
            for _ in 0..ROUNDS {
                let before: LatencyStats = session.peek_slot(slot)?;
                let mut times = call_times(shape, CALLS);
                let after: LatencyStats = session.peek_slot(slot)?;
                let round = recorded_round(&before, &after, shape, CALLS)?;
                typical.push(typical_ns(&round, after.sum_ns - before.sum_ns));
                recorded.iter_mut().zip(round).for_each(|(all, r)| *all += r);
                times.sort_unstable();
                medians.push(times[CALLS / 2]);
                all_calls.extend(times);
            }
            let inside_ns = lowest(&typical);
            // A call's whole probe cost is subtracted once per enclosed call, so a bias would
            // multiply: the median of the rounds' medians, not a low quantile.
            medians.sort_unstable();
            let traced_ns = medians[ROUNDS / 2];
            // The caller sees at least what the span shows; timing noise must not say less.
            let hit_ns = traced_ns.saturating_sub(untraced).max(inside_ns);
            all_calls.sort_unstable();
            let spread = |sorted: &[u64]| sorted[sorted.len() * 9 / 10] - sorted[sorted.len() / 10];
            let inside = ns_histogram(&recorded);
            // No finer than the fine bucket the inside cost falls in: the programs' histogram
            // cannot tell durations within one apart.
            let (low, high) = fine_bucket_range(fine_bucket(inside_ns));
            let inside_spread_ns = (inside.value_at_quantile(0.9) - inside.value_at_quantile(0.1)).max(high - low + 1);
            costs.push(ShapeCost { shape, inside_ns, hit_ns, inside_spread_ns, hit_spread_ns: spread(&all_calls) });
        }
        let probed = self
            .shapes
            .iter()
            .zip(untraced)
            .enumerate()
            .map(|(i, (&shape, untraced_ns))| watch::Probed { shape, slot: self.first_slot + i as u32, untraced_ns })
            .collect();
        Ok(Calibrated { costs, apart: None, probed })
    }
}

/// The `PROBE_COSTS` table for the programs.
fn cost_table(costs: &[ShapeCost]) -> [u64; PROBE_COSTS_LEN as usize] {
    let mut table = [0; PROBE_COSTS_LEN as usize];
    for c in costs {
        table[c.shape.inside_cost_index() as usize] = c.inside_ns;
        table[c.shape.hit_cost_index() as usize] = c.hit_ns;
    }
    table
}

/// What one round's probes added inside its spans: the exact mean of the calls between the
/// round's 10th and 90th percentile buckets (the round's exact sum less the calls outside
/// them, each at its bucket's midpoint). A fine bucket is 512 ns wide at a single-stepped
/// entry's 9 us: its midpoint alone was 200-250 ns off. A round with a call more than 4 times
/// the typical one (an interrupt, another process) gets its `QUANTILE` instead.
fn typical_ns(round: &[u64; FINE_BUCKETS], sum_ns: u64) -> Typical {
    let h = ns_histogram(round);
    let (first, last) = (fine_bucket(h.value_at_quantile(0.1)), fine_bucket(h.value_at_quantile(0.9)));
    let limit = 4 * fine_bucket_range(last).1;
    let (mut others_ns, mut central) = (0u64, 0u64);
    for (i, &n) in round.iter().enumerate().filter(|(_, &n)| n > 0) {
        let (low, high) = fine_bucket_range(i);
        if (first..=last).contains(&i) {
            central += n;
        } else if high > limit {
            return Typical::Quantile(h.value_at_quantile(QUANTILE));
        } else {
            others_ns += n * (low + (high - low) / 2);
        }
    }
    match sum_ns.checked_sub(others_ns).and_then(|ns| ns.checked_div(central)) {
        Some(mean) if (fine_bucket_range(first).0..=fine_bucket_range(last).1).contains(&mean) => Typical::Mean(mean),
        _ => Typical::Quantile(h.value_at_quantile(QUANTILE)),
    }
}

/// A round's typical duration: its central calls' mean, or where that cannot be had, a
/// quantile (a bucket's midpoint). The rounds' means are preferred: the two do not mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Typical {
    Mean(u64),
    Quantile(u64),
}

impl Typical {
    fn ns(self) -> u64 {
        match self {
            Typical::Mean(ns) | Typical::Quantile(ns) => ns,
        }
    }
}

/// The lowest of the rounds' means, or without any, of their quantiles.
fn lowest(rounds: &[Typical]) -> u64 {
    rounds.iter().min().map_or(0, |t| t.ns())
}

/// The durations (fine buckets) the programs recorded between two readings of a calibration
/// slot, which must have recorded exactly one round of calls.
fn recorded_round(
    before: &LatencyStats,
    after: &LatencyStats,
    shape: SpanShape,
    calls: usize,
) -> Result<[u64; FINE_BUCKETS]> {
    let recorded = after.in_unit.count - before.in_unit.count;
    if recorded != calls as u64 {
        bail!("calibration: {calls} calls of probe's own {shape:?} function were recorded {recorded} times");
    }
    let mut fine = after.fine;
    for (f, b) in fine.iter_mut().zip(before.fine.iter()) {
        *f -= b;
    }
    Ok(fine)
}

/// The time of each of `calls` calls of the shape's function, as its caller sees it.
fn call_times(shape: SpanShape, calls: usize) -> Vec<u64> {
    (0..calls)
        .map(|v| {
            let start = Instant::now();
            call(shape, v as u64);
            start.elapsed().as_nanos() as u64
        })
        .collect()
}

/// The median time of one call of the shape's function, as its caller sees it.
fn median_call_ns(shape: SpanShape) -> u64 {
    let mut times = call_times(shape, CALLS);
    times.sort_unstable();
    times[CALLS / 2]
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn calibration_functions_have_the_instructions_their_shape_names() {
        for shape in SpanShape::ALL {
            let (function, ret_offset) = function_of(shape);
            let code = unsafe { std::slice::from_raw_parts(function as *const u8, ret_offset as usize + 1) };
            let handling = crate::arch::code::probe_handling(code);
            assert_eq!(handling.is_emulated(), !shape.entry_stepped, "{shape:?}: {code:02x?}");
            assert_eq!(code[ret_offset as usize], 0xc3, "{shape:?}: ret at +{ret_offset}");
        }
    }

    #[test]
    fn the_costs_are_measured_with_the_trace_only_where_its_programs_time_every_call() {
        let shapes = [SpanShape::ALL[1], SpanShape::ALL[0], SpanShape::ALL[1]];
        let latency = Calibration::PROGRAMS;
        match CostPlan::choose(&shapes, latency, true, 3).unwrap() {
            CostPlan::WithTheTrace(c) => {
                // One entry and one exit site per distinct shape, in slots after the trace's 3.
                assert_eq!((c.sites.len(), c.first_slot, c.shapes.len()), (4, 3, 2));
                assert!(c.sites.iter().all(|s| LatencyCookie::decode(s.cookie).slot >= 3));
            }
            _ => panic!("latency's programs, no filter: calibrated with the trace"),
        }
        let plan = CostPlan::choose(&shapes, latency, false, 3).unwrap();
        assert!(matches!(&plan, CostPlan::Apart(s) if s.len() == 3), "a filter applies to every site");
        assert_eq!((plan.sites().len(), plan.slots()), (0, 0));
        let other = <crate::measure::fake::Calls as Aggregate>::PROGRAMS;
        assert!(matches!(CostPlan::choose(&shapes, other, true, 3).unwrap(), CostPlan::Apart(_)));
        let none = CostPlan::choose(&[], latency, true, 3).unwrap();
        assert!(matches!(none, CostPlan::Nothing) && none.sites().is_empty() && none.slots() == 0);
    }

    #[test]
    fn own_code_has_a_file_offset() {
        let offset = crate::session::own::file_offset_of(probe_cal_emulated_ret as *const () as u64).unwrap();
        let exe = std::fs::read(crate::session::own::executable().unwrap()).unwrap();
        assert_eq!(&exe[offset as usize..offset as usize + 3], &[0x55, 0x5d, 0xc3]);
    }
}
