//! Watching the probes' cost while the trace runs, to state the resolution it really has.
//!
//! A trap's cost is no constant of the machine. On a virtual CPU, where single-stepping exits
//! to the hypervisor, the cost inside a span of a single-stepped entry moved between 9.2 and
//! 13 us here from one tenth of a second to the next, on either CPU, while probe's start-up
//! calibration (5 ms) saw one of the two: a function read 3-4 us off, below a stated
//! resolution of 0.5 us. Following the cost per CPU and subtracting the latest did worse (it
//! moves faster than a round can follow). So a thread measures it again every `PERIOD` (a
//! short round on probe's calibration functions, whose probes stay attached):
//! - the inside cost subtracted is the lowest any round saw, as at start-up, where a start in
//!   the dear state had subtracted 13 us from every call for the whole run;
//! - a probed call's cost to its callers (the hit cost) is timed by the round's caller, as at
//!   start-up, and what is charged is likewise the lowest any round saw (never below the inside
//!   cost). The start-up calibration met a dear spell in 5 of 12 runs here (a Go RET-probe
//!   call's hit 8.6-9.8 us against 6.6), sometimes with its inside cost unmoved, and a caller of
//!   ten traced callees then read 0 for 8.2 us of its own under a stated 7.8 us. (Measured
//!   instead as the difference of a traced caller's spans with one and with six calls, it was
//!   the difference of two noisy spans, 10-70 us for a cost of 14 us, and did worse.);
//! - how far the rounds' inside cost strays from what is subtracted widens the resolution of
//!   the functions of that shape, and how far their hit strays, relative to the one charged,
//!   widens what traced callees add to any function's: a program calling its functions in a
//!   tight loop keeps its traps cheap, one calling them now and then meets the dear state (here
//!   the first 20 or more traps on a CPU after a tenth of a second without), and which its
//!   calls met cannot be told. Figures below the resolution are marked as such.
//!
//! The first rounds go to every CPU one after another, so that a start in a dear spell is
//! undone within milliseconds, not tenths of a second.
use super::{call, call_times, recorded_round, typical_ns, SpanShape, Typical};
use crate::plan::{Resolution, ShapeCost};
use crate::session::{CalibrationRecords, ProbeCosts};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A calibrated shape, its calibration function's slot and the function's untraced call time.
#[derive(Clone, Copy, Debug)]
pub struct Probed {
    pub shape: SpanShape,
    pub slot: u32,
    pub untraced_ns: u64,
}

/// Time between two rounds.
const PERIOD: Duration = Duration::from_millis(100);

/// Rounds whose drift is weighed (the last 10 s).
const KEPT_ROUNDS: usize = 100;

/// Calls per round and shape: about 0.3 ms of one CPU for a single-stepped shape here, every
/// `PERIOD`.
const CALLS: usize = 20;

/// The thread watching the cost; it ends at `stop`.
pub struct CostWatch {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// What a shape's rounds saw, and what is subtracted now.
struct Seen {
    probed: Probed,
    /// The inside cost subtracted.
    inside_ns: u64,
    /// The hit cost charged to callers.
    hit_ns: u64,
    /// How far each of the last `KEPT_ROUNDS` rounds' inside cost was from the subtracted one
    /// (a trace can run for weeks: the resolution only widens, so older rounds have had their
    /// say).
    off_ns: VecDeque<u64>,
    /// The same for the hit cost.
    hit_off_ns: VecDeque<u64>,
}

impl Seen {
    /// A shape calibrated at start-up to `inside_ns` and `hit_ns`, before any round.
    fn new(probed: Probed, inside_ns: u64, hit_ns: u64) -> Seen {
        Seen { probed, inside_ns, hit_ns, off_ns: VecDeque::new(), hit_off_ns: VecDeque::new() }
    }

    /// Takes in a round: its inside cost and its calls' median time as their caller saw them.
    /// Returns whether the costs to subtract changed.
    fn round(&mut self, Round { inside, call_ns }: Round) -> bool {
        let before = (self.inside_ns, self.hit_ns);
        // A quantile is a bucket's midpoint, up to 256 ns off here: only a mean lowers it.
        if let Typical::Mean(ns) = inside {
            self.inside_ns = self.inside_ns.min(ns);
        }
        // A caller sees at least what the span shows.
        let hit_ns = call_ns.saturating_sub(self.probed.untraced_ns).max(self.inside_ns);
        self.hit_ns = self.hit_ns.min(hit_ns);
        keep(&mut self.off_ns, inside.ns().abs_diff(self.inside_ns));
        keep(&mut self.hit_off_ns, hit_ns.abs_diff(self.hit_ns));
        (self.inside_ns, self.hit_ns) != before
    }

    /// How far the hit cost strayed, relative to the one charged.
    fn hit_drift(&mut self) -> f64 {
        high(self.hit_off_ns.make_contiguous()) as f64 / self.hit_ns.max(1) as f64
    }
}

/// Keeps `off` as the last of the `KEPT_ROUNDS` rounds' figures.
fn keep(offs: &mut VecDeque<u64>, off: u64) {
    if offs.len() == KEPT_ROUNDS {
        offs.pop_front();
    }
    offs.push_back(off);
}

impl CostWatch {
    /// Starts watching the shapes of `costs` (subtracted since start-up, in `maps`' costs);
    /// what it sees widens `resolutions`.
    pub fn start(
        probed: &[Probed],
        costs: &[ShapeCost],
        maps: (CalibrationRecords, ProbeCosts),
        resolutions: Vec<Resolution>,
    ) -> CostWatch {
        let seen: Vec<Seen> = probed
            .iter()
            .filter_map(|&p| {
                let cost = costs.iter().find(|c| c.shape == p.shape)?;
                Some(Seen::new(p, cost.inside_ns, cost.hit_ns))
            })
            .collect();
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("probe-cost-watch".into())
            .spawn(move || watch(seen, maps, &resolutions, &stopped))
            .ok();
        CostWatch { stop, thread }
    }

    /// Ends the watch (within one round) and waits for it: the resolutions are final.
    pub fn stop(self) {}
}

impl Drop for CostWatch {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        if let Ok(mut s) = stopped.lock() {
            *s = true;
        }
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A round per shape now and every `PERIOD` until stopped, each widening the resolutions.
fn watch(
    mut seen: Vec<Seen>,
    (records, mut costs): (CalibrationRecords, ProbeCosts),
    resolutions: &[Resolution],
    stop: &(Mutex<bool>, Condvar),
) {
    // A thread's first round costs more (its first uprobe hits set up its state in the
    // kernel): not counted.
    for s in &seen {
        let _ = round(&s.probed, &records);
    }
    // A dear spell is one CPU's: the rounds go to each CPU in turn.
    let cpus = allowed_cpus();
    for turn in 0.. {
        if let Some(&cpu) = cpus.get(turn % cpus.len().max(1)) {
            pin(cpu);
        }
        for s in &mut seen {
            let Some(seen_now) = round(&s.probed, &records) else { continue };
            if s.round(seen_now) && set(&mut costs, s).is_err() {
                return; // the session is gone
            }
            let drift_ns = high(s.off_ns.make_contiguous());
            resolutions.iter().filter(|r| r.shape == Some(s.probed.shape)).for_each(|r| r.widen(drift_ns));
            // Any function may have callees of this shape.
            let hit_drift = s.hit_drift();
            resolutions.iter().for_each(|r| r.widen_hits(hit_drift));
        }
        if turn + 1 < cpus.len() {
            continue; // the first pass: every CPU at once
        }
        let (stopped, wake) = stop;
        let Ok(guard) = stopped.lock() else { return };
        match wake.wait_timeout_while(guard, PERIOD, |stopped| !*stopped) {
            Ok((s, _)) if !*s => {}
            _ => return,
        }
    }
}

/// The CPUs in probe's affinity mask.
fn allowed_cpus() -> Vec<usize> {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect()
}

/// Moves the calling thread to `cpu`.
fn pin(cpu: usize) {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// How far the rounds strayed: their 90th percentile (all of them up to ten rounds), so one
/// round disturbed by something else does not decide it in a long run.
fn high(offs: &[u64]) -> u64 {
    let mut sorted = offs.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => 0,
        n if n <= 10 => sorted[n - 1],
        n => sorted[n * 9 / 10],
    }
}

/// Writes the costs a shape's rounds settled on where the programs read them.
fn set(costs: &mut ProbeCosts, s: &Seen) -> anyhow::Result<()> {
    costs.set(s.probed.shape.inside_cost_index(), s.inside_ns)?;
    costs.set(s.probed.shape.hit_cost_index(), s.hit_ns)
}

/// What one round saw: what the probes added inside each span (their central mean), and the
/// median time of a call as its caller saw it.
#[derive(Clone, Copy, Debug)]
struct Round {
    inside: Typical,
    call_ns: u64,
}

/// One round of `CALLS` calls of the shape's function; None when the round cannot tell (its
/// calls were not all recorded: the probes are going).
fn round(p: &Probed, records: &CalibrationRecords) -> Option<Round> {
    // Untimed: the first calls after a move to another CPU find its caches cold.
    (0..2).for_each(|v| {
        call(p.shape, v);
    });
    let before = records.total(p.slot).ok()?;
    let mut times = call_times(p.shape, CALLS);
    let after = records.total(p.slot).ok()?;
    let fine = recorded_round(&before, &after, p.shape, CALLS).ok()?;
    times.sort_unstable();
    Some(Round { inside: typical_ns(&fine, after.sum_ns - before.sum_ns), call_ns: times[CALLS / 2] })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round whose inside cost is `inside` and whose calls took `call_ns` each.
    fn seen(inside: Typical, call_ns: u64) -> Round {
        Round { inside, call_ns }
    }

    #[test]
    fn a_start_in_a_dear_spell_is_undone_by_the_next_cheap_round() {
        let mut s = Seen::new(Probed { shape: SpanShape::ALL[1], slot: 0, untraced_ns: 100 }, 13_000, 20_000);
        assert!(s.round(seen(Typical::Mean(9_300), 17_100)));
        assert_eq!((s.inside_ns, s.hit_ns), (9_300, 17_000), "the lowest mean and call time");
        assert!(!s.round(seen(Typical::Mean(9_400), 17_200)));
        // A quantile (a bucket's midpoint) never lowers the inside cost; a dear round raises
        // neither.
        assert!(!s.round(seen(Typical::Quantile(8_959), 18_000)));
        assert!(!s.round(seen(Typical::Mean(12_900), 25_000)));
        assert_eq!((s.inside_ns, s.hit_ns), (9_300, 17_000));
        // How far each round was from what was subtracted after it.
        assert_eq!(s.off_ns, [0, 100, 341, 3_600]);
        assert_eq!(high(s.off_ns.make_contiguous()), 3_600);
        // The calls as their caller saw them, likewise: the dear round strayed 8 us of 17.
        assert_eq!(s.hit_off_ns, [0, 100, 900, 7_900]);
        assert!((s.hit_drift() - 7_900.0 / 17_000.0).abs() < 1e-9);
        // Only the last rounds are kept: a trace may run for weeks.
        (0..2 * KEPT_ROUNDS).for_each(|_| {
            s.round(seen(Typical::Mean(9_300), 17_100));
        });
        assert_eq!((s.off_ns.len(), high(s.off_ns.make_contiguous())), (KEPT_ROUNDS, 0));
    }

    #[test]
    fn a_call_is_never_charged_less_than_what_its_span_shows() {
        let mut s = Seen::new(Probed { shape: SpanShape::ALL[0], slot: 0, untraced_ns: 500 }, 1_200, 8_900);
        // A cheap round lowers the hit cost to what its caller saw beyond the untraced call.
        assert!(s.round(seen(Typical::Mean(1_200), 7_100)));
        assert_eq!(s.hit_ns, 6_600);
        // Timing noise (a call faster than its own untraced time) stops at the inside cost.
        assert!(s.round(seen(Typical::Mean(1_190), 300)));
        assert_eq!((s.inside_ns, s.hit_ns), (1_190, 1_190));
    }

    #[test]
    fn one_stray_round_in_many_does_not_decide_the_drift() {
        assert_eq!(high(&[]), 0);
        assert_eq!(high(&[5, 900, 7]), 900, "up to ten rounds: the farthest");
        let mut many = vec![100u64; 19];
        many.push(20_000);
        assert_eq!(high(&many), 100, "twenty rounds: the 90th percentile");
    }
}
