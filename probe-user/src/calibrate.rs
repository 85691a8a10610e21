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
//! hit costs of the probed calls that returned inside it on the same goroutine or thread.
use crate::disasm::Handling;
use crate::features::AttachStrategy;
use crate::histogram::ns_histogram;
use crate::measure::{Measure, Programs};
use crate::plan::{Site, SiteKind};
use crate::session::{Keying, LoadConfig, Session};
use anyhow::{bail, Context, Result};
use probe_ebpf::{Filter, LatencyCookie, LatencyStats, SpanShape, PROBE_COSTS_LEN};
use std::path::PathBuf;
use std::time::Instant;

// One function per shape. An emulated entry is `push %rbp` (the C and Go >= 1.21 prologue), a
// single-stepped one `mov` (any other instruction costs the same second trap); the exit is the
// `ret` (a RET probe) or the return address (a uretprobe, attached at the entry).
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.probe_calibration,\"ax\",@progbits",
    ".p2align 4",
    ".globl probe_cal_emulated_ret",
    ".type probe_cal_emulated_ret, @function",
    "probe_cal_emulated_ret:",
    "push %rbp",
    "pop %rbp",
    "ret",
    ".size probe_cal_emulated_ret, . - probe_cal_emulated_ret",
    ".p2align 4",
    ".globl probe_cal_stepped_ret",
    ".type probe_cal_stepped_ret, @function",
    "probe_cal_stepped_ret:",
    "mov %rdi, %rax",
    "ret",
    ".size probe_cal_stepped_ret, . - probe_cal_stepped_ret",
    ".p2align 4",
    ".globl probe_cal_emulated_uret",
    ".type probe_cal_emulated_uret, @function",
    "probe_cal_emulated_uret:",
    "push %rbp",
    "pop %rbp",
    "ret",
    ".size probe_cal_emulated_uret, . - probe_cal_emulated_uret",
    ".p2align 4",
    ".globl probe_cal_stepped_uret",
    ".type probe_cal_stepped_uret, @function",
    "probe_cal_stepped_uret:",
    "mov %rdi, %rax",
    "ret",
    ".size probe_cal_stepped_uret, . - probe_cal_stepped_uret",
    ".popsection",
    options(att_syntax)
);

// arm64: an emulated (simulated) entry is a branch (`b` to the next instruction: Go's entry
// site is its stack check's `b.ls`), a single-stepped one `mov`; `ret` is simulated there.
#[cfg(target_arch = "aarch64")]
std::arch::global_asm!(
    ".pushsection .text.probe_calibration,\"ax\",@progbits",
    ".p2align 4",
    ".globl probe_cal_emulated_ret",
    ".type probe_cal_emulated_ret, @function",
    "probe_cal_emulated_ret:",
    "b .+4",
    "ret",
    ".size probe_cal_emulated_ret, . - probe_cal_emulated_ret",
    ".p2align 4",
    ".globl probe_cal_stepped_ret",
    ".type probe_cal_stepped_ret, @function",
    "probe_cal_stepped_ret:",
    "mov x0, x0",
    "ret",
    ".size probe_cal_stepped_ret, . - probe_cal_stepped_ret",
    ".p2align 4",
    ".globl probe_cal_emulated_uret",
    ".type probe_cal_emulated_uret, @function",
    "probe_cal_emulated_uret:",
    "b .+4",
    "ret",
    ".size probe_cal_emulated_uret, . - probe_cal_emulated_uret",
    ".p2align 4",
    ".globl probe_cal_stepped_uret",
    ".type probe_cal_stepped_uret, @function",
    "probe_cal_stepped_uret:",
    "mov x0, x0",
    "ret",
    ".size probe_cal_stepped_uret, . - probe_cal_stepped_uret",
    ".popsection",
);

/// Offsets of the `ret` in the emulated-entry and the stepped-entry functions.
#[cfg(target_arch = "x86_64")]
const RET_OFFSETS: (u64, u64) = (2, 3);
#[cfg(target_arch = "aarch64")]
const RET_OFFSETS: (u64, u64) = (4, 4);

extern "C" {
    fn probe_cal_emulated_ret(v: u64) -> u64;
    fn probe_cal_stepped_ret(v: u64) -> u64;
    fn probe_cal_emulated_uret(v: u64) -> u64;
    fn probe_cal_stepped_uret(v: u64) -> u64;
}

/// Calls timed per round, after `WARM_UP` untimed ones (the first hit maps the kernel's
/// out-of-line page into the process). The inside cost is the lowest over `ROUNDS` of the
/// rounds' `QUANTILE`: a busy machine (another process on the core or its sibling, an
/// interrupt) makes some calls and some rounds slower, never faster, and what the probes add to
/// a span on a quiet core is what is subtracted from every span. The slowest shape (two
/// single-steps) takes about 6 ms in all.
const CALLS: usize = 60;
const ROUNDS: usize = 5;
const WARM_UP: usize = 20;
const QUANTILE: f64 = 0.25;

/// The calibration function of a shape and the offset of its `ret` from its start.
fn function_of(shape: SpanShape) -> (unsafe extern "C" fn(u64) -> u64, u64) {
    match (shape.entry_stepped, shape.uretprobe) {
        (false, false) => (probe_cal_emulated_ret, RET_OFFSETS.0),
        (true, false) => (probe_cal_stepped_ret, RET_OFFSETS.1),
        (false, true) => (probe_cal_emulated_uret, RET_OFFSETS.0),
        (true, true) => (probe_cal_stepped_uret, RET_OFFSETS.1),
    }
}

/// What one shape's probes cost, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeCost {
    pub shape: SpanShape,
    /// Inside each measured span of this shape.
    pub inside_ns: u64,
    /// Added by one probed call of this shape to whatever encloses it.
    pub hit_ns: u64,
}

/// Measures the costs of `shapes` in a session of their own, on probe's own functions in this
/// process. The session is returned still attached: on kernels that remove probes one at a
/// time (~0.1 s each), the trace removes it at its end with its own, not before it starts.
pub fn measure(shapes: &[SpanShape], strategy: AttachStrategy) -> Result<(Vec<ShapeCost>, Option<Session>)> {
    if shapes.is_empty() {
        return Ok((Vec::new(), None));
    }
    let calibration = Calibration::plan(shapes, 0)?;
    let config = LoadConfig {
        programs: Calibration::PROGRAMS,
        slots: 0,
        calibration_slots: Calibration::SLOTS,
        keying: Keying::default(),
        filter: Filter::NONE,
        unit_ns: 1,
    };
    let mut session = Session::load(&calibration.sites, config, strategy)?;
    let own = std::process::id() as i32;
    let costs = calibration.run(&mut session, |s| s.attach_sites(0..calibration.sites.len(), Some(own)))?;
    Ok((costs, Some(session)))
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
        let exe = own_executable()?;
        let mut sites = Vec::new();
        for (i, &shape) in shapes.iter().enumerate() {
            let slot = first_slot + i as u32;
            let (function, ret_offset) = function_of(shape);
            let entry = file_offset_of(function as *const () as u64)?;
            let cookie = |exit: bool| {
                let uretprobe = exit && shape.uretprobe;
                LatencyCookie {
                    slot,
                    exit,
                    go: false,
                    uretprobe,
                    stack_check: false,
                    entry_stepped: shape.entry_stepped,
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
    /// only); the programs must be subtracting nothing yet.
    pub fn run(
        &self,
        session: &mut Session,
        attach: impl FnOnce(&mut Session) -> Result<()>,
    ) -> Result<Vec<ShapeCost>> {
        let untraced: Vec<u64> =
            self.shapes.iter().map(|&s| (0..ROUNDS).map(|_| median_call_ns(s)).min().unwrap_or(0)).collect();
        attach(session)?;
        if crate::interrupt::requested() {
            return Ok(Vec::new()); // Ctrl-C while attaching: the run ends, nothing to calibrate
        }
        let mut costs = Vec::with_capacity(self.shapes.len());
        for (i, (&shape, &untraced)) in self.shapes.iter().zip(&untraced).enumerate() {
            let slot = self.first_slot + i as u32;
            let (function, _) = function_of(shape);
            for v in 0..WARM_UP {
                unsafe { function(std::hint::black_box(v as u64)) };
            }
            let mut inside_ns = u64::MAX;
            let mut traced = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                let before: LatencyStats = session.peek_slot(slot)?;
                traced.push(median_call_ns(shape));
                let after: LatencyStats = session.peek_slot(slot)?;
                inside_ns = inside_ns.min(typical_recorded_ns(&before, &after, shape)?);
            }
            // A call's whole probe cost is subtracted once per enclosed call, so a bias would
            // multiply: the median of the rounds' medians, not a low quantile.
            traced.sort_unstable();
            let traced_ns = traced[ROUNDS / 2];
            // The caller sees at least what the span shows; timing noise must not say less.
            let hit_ns = traced_ns.saturating_sub(untraced).max(inside_ns);
            costs.push(ShapeCost { shape, inside_ns, hit_ns });
        }
        Ok(costs)
    }
}

/// The `PROBE_COSTS` table for the programs.
pub fn cost_table(costs: &[ShapeCost]) -> [u64; PROBE_COSTS_LEN as usize] {
    let mut table = [0; PROBE_COSTS_LEN as usize];
    for c in costs {
        table[c.shape.inside_cost_index() as usize] = c.inside_ns;
        table[c.shape.hit_cost_index() as usize] = c.hit_ns;
    }
    table
}

/// The `QUANTILE` of the durations the programs recorded between two readings of a
/// calibration slot, which must have recorded exactly one round of calls.
fn typical_recorded_ns(before: &LatencyStats, after: &LatencyStats, shape: SpanShape) -> Result<u64> {
    let recorded = after.in_unit.count - before.in_unit.count;
    if recorded != CALLS as u64 {
        bail!("calibration: {CALLS} calls of probe's own {shape:?} function were recorded {recorded} times");
    }
    let mut fine = after.fine;
    for (f, b) in fine.iter_mut().zip(before.fine.iter()) {
        *f -= b;
    }
    Ok(ns_histogram(&fine).value_at_quantile(QUANTILE))
}

/// The median time of one call of the shape's function, as its caller sees it.
fn median_call_ns(shape: SpanShape) -> u64 {
    let (function, _) = function_of(shape);
    let mut times: Vec<u64> = (0..CALLS)
        .map(|v| {
            let start = Instant::now();
            unsafe { function(std::hint::black_box(v as u64)) };
            start.elapsed().as_nanos() as u64
        })
        .collect();
    times.sort_unstable();
    times[CALLS / 2]
}

/// probe's own executable, as the kernel names the file (uprobes are per inode).
fn own_executable() -> Result<PathBuf> {
    std::fs::read_link("/proc/self/exe").context("finding probe's own binary")
}

/// The file offset of one of probe's own code addresses: from the mapping that holds it in
/// /proc/self/maps, so it holds for PIE and non-PIE builds and for stripped binaries alike.
fn file_offset_of(addr: u64) -> Result<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("reading /proc/self/maps")?;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms), Some(offset)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end), Ok(offset)) =
            (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16), u64::from_str_radix(offset, 16))
        else {
            continue;
        };
        if perms.contains('x') && (start..end).contains(&addr) {
            return Ok(addr - start + offset);
        }
    }
    bail!("probe's own code at {addr:#x} is in no mapping of /proc/self/maps")
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
    fn own_code_has_a_file_offset() {
        let offset = file_offset_of(probe_cal_emulated_ret as *const () as u64).unwrap();
        let exe = std::fs::read(own_executable().unwrap()).unwrap();
        assert_eq!(&exe[offset as usize..offset as usize + 3], &[0x55, 0x5d, 0xc3]);
    }
}
