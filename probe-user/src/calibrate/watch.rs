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
//! - a probed call's cost, subtracted from its traced callers, is measured as a traced caller
//!   sees it (a traced function of probe's own calling the shape's function 1 or 6 times: the
//!   difference of its spans, per call), the median of the rounds'; the start-up figure, timed
//!   from an untraced caller, was 0.2-0.3 us per call dearer, which ten callees of a Go caller
//!   made 2-3 us too much;
//! - how far the rounds stray from what is subtracted widens the resolution of the functions
//!   of that shape, and figures below it are marked as such.
use super::{call, call_outer, recorded_round, typical_ns, SpanShape, Typical};
use crate::plan::{Resolution, ShapeCost};
use crate::session::{CalibrationRecords, ProbeCosts};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A calibrated shape: its calibration function's slot, and that of the traced outer function
/// that calls it.
#[derive(Clone, Copy, Debug)]
pub struct Probed {
    pub shape: SpanShape,
    pub slot: u32,
    pub outer_slot: u32,
}

/// Time between two rounds.
const PERIOD: Duration = Duration::from_millis(100);

/// Calls per round and shape: about 0.3 ms of one CPU for a single-stepped shape here, every
/// `PERIOD`.
const CALLS: usize = 20;

/// Calls of the outer function per group, and how many more callee calls the second group's
/// make: 8 x 1 + 8 x 6 calls, 0.6 ms more per round for a single-stepped shape here.
const OUTER_CALLS: usize = 8;
const MORE_CALLEES: u64 = 5;

/// The thread watching the cost; it ends at `stop`.
pub struct CostWatch {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// What a shape's rounds saw, and what is subtracted now.
struct Seen {
    probed: Probed,
    /// The costs subtracted.
    cost: ShapeCost,
    /// Every round's probed-call cost as a traced caller saw it.
    hits_ns: Vec<u64>,
    /// How far each round's costs were from the subtracted ones (the hit's relative to it).
    inside_off_ns: Vec<u64>,
    hit_off: Vec<f64>,
}

impl Seen {
    /// Takes in a round; returns whether the costs to subtract changed.
    fn round(&mut self, inside: Typical, hit_ns: Option<u64>) -> bool {
        let before = self.cost;
        // A quantile is a bucket's midpoint, up to 256 ns off here: only a mean lowers it.
        if let Typical::Mean(ns) = inside {
            self.cost.inside_ns = self.cost.inside_ns.min(ns);
        }
        self.inside_off_ns.push(inside.ns().abs_diff(self.cost.inside_ns));
        if let Some(hit_ns) = hit_ns {
            self.hits_ns.push(hit_ns);
            let mut hits = self.hits_ns.clone();
            hits.sort_unstable();
            // The lower median: of two rounds, the cheaper (a round is only ever made dearer).
            self.cost.hit_ns = hits[(hits.len() - 1) / 2].max(self.cost.inside_ns);
            self.hit_off.push(hit_ns.abs_diff(self.cost.hit_ns) as f64 / self.cost.hit_ns.max(1) as f64);
        }
        self.cost != before
    }
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
                let cost = *costs.iter().find(|c| c.shape == p.shape)?;
                Some(Seen { probed: p, cost, hits_ns: Vec::new(), inside_off_ns: Vec::new(), hit_off: Vec::new() })
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
    // A thread's first rounds cost more (its first uprobe hits set up its state in the kernel):
    // one round of each shape is not counted.
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
            let Some((inside, hit_ns)) = round(&s.probed, &records) else { continue };
            if s.round(inside, hit_ns) {
                let shape = s.probed.shape;
                let written = costs
                    .set(shape.inside_cost_index(), s.cost.inside_ns)
                    .and_then(|_| costs.set(shape.hit_cost_index(), s.cost.hit_ns));
                if written.is_err() {
                    return; // the session is gone
                }
            }
        }
        let hit_drift = seen.iter().map(|s| high(&s.hit_off)).fold(0.0, f64::max);
        for s in &seen {
            let drift_ns = high(&s.inside_off_ns);
            resolutions.iter().filter(|r| r.shape == Some(s.probed.shape)).for_each(|r| r.widen(drift_ns, hit_drift));
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
fn high<T: Copy + PartialOrd + Default>(offs: &[T]) -> T {
    let mut sorted = offs.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    match sorted.len() {
        0 => T::default(),
        n if n <= 10 => sorted[n - 1],
        n => sorted[n * 9 / 10],
    }
}

/// One round of `CALLS` calls of the shape's function: what its probes added inside each span
/// (their central mean), and what one call of it cost a traced caller (`nested_hit_ns`); None
/// when the round cannot tell (its calls were not all recorded: the probes are going).
fn round(p: &Probed, records: &CalibrationRecords) -> Option<(Typical, Option<u64>)> {
    // Untimed: the first calls after a move to another CPU find its caches cold.
    (0..2).for_each(|v| {
        call(p.shape, v);
    });
    let before = records.total(p.slot).ok()?;
    (0..CALLS as u64).for_each(|v| {
        call(p.shape, v);
    });
    let after = records.total(p.slot).ok()?;
    let fine = recorded_round(&before, &after, p.shape, CALLS).ok()?;
    let inside = typical_ns(&fine, after.sum_ns - before.sum_ns);
    Some((inside, nested_hit_ns(p, records)))
}

/// What one call of the shape's function costs a traced caller: the outer function's spans
/// (nothing subtracted) when it makes `1 + MORE_CALLEES` calls, less those when it makes one,
/// per call more. None without a mean for both (a bucket's midpoint is microseconds off there).
fn nested_hit_ns(p: &Probed, records: &CalibrationRecords) -> Option<u64> {
    let span = |callees: u64| {
        call_outer(p.shape, 0, callees);
        let before = records.total(p.outer_slot).ok()?;
        (0..OUTER_CALLS as u64).for_each(|v| {
            call_outer(p.shape, v, callees);
        });
        let after = records.total(p.outer_slot).ok()?;
        let fine = recorded_round(&before, &after, p.shape, OUTER_CALLS).ok()?;
        match typical_ns(&fine, after.sum_ns - before.sum_ns) {
            Typical::Mean(ns) => Some(ns),
            Typical::Quantile(_) => None,
        }
    };
    let (one, more) = (span(1)?, span(1 + MORE_CALLEES)?);
    Some(more.saturating_sub(one) / MORE_CALLEES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(inside_ns: u64, hit_ns: u64) -> Seen {
        let shape = SpanShape::ALL[1];
        let cost = ShapeCost { shape, inside_ns, hit_ns, inside_spread_ns: 512, hit_spread_ns: 600 };
        let probed = Probed { shape, slot: 0, outer_slot: 6 };
        Seen { probed, cost, hits_ns: Vec::new(), inside_off_ns: Vec::new(), hit_off: Vec::new() }
    }

    #[test]
    fn a_start_in_a_dear_spell_is_undone_by_the_next_cheap_round() {
        let mut s = seen(13_000, 14_500);
        assert!(s.round(Typical::Mean(9_300), Some(10_400)));
        assert_eq!((s.cost.inside_ns, s.cost.hit_ns), (9_300, 10_400), "the lowest mean inside");
        // The hit is the median of the rounds' as a traced caller saw it.
        assert!(s.round(Typical::Mean(9_400), Some(10_100)), "the lower median of 10.4 and 10.1");
        assert_eq!(s.cost.hit_ns, 10_100);
        assert!(!s.round(Typical::Mean(9_400), Some(10_000)));
        assert_eq!(s.cost.hit_ns, 10_100);
        // A quantile (a bucket's midpoint) never lowers it; a dear round never raises it; a
        // round without a traced caller's figure keeps the hit.
        assert!(!s.round(Typical::Quantile(8_959), None));
        assert!(!s.round(Typical::Mean(12_900), None));
        assert_eq!((s.cost.inside_ns, s.cost.hit_ns), (9_300, 10_100));
        // How far each round was from what was subtracted after it.
        assert_eq!(s.inside_off_ns, [0, 100, 100, 341, 3_600]);
        assert_eq!(high(&s.inside_off_ns), 3_600);
        assert_eq!(s.hit_off.len(), 3);
    }

    #[test]
    fn one_stray_round_in_many_does_not_decide_the_drift() {
        assert_eq!(high::<u64>(&[]), 0);
        assert_eq!(high(&[5, 900, 7]), 900, "up to ten rounds: the farthest");
        let mut many = vec![100u64; 19];
        many.push(20_000);
        assert_eq!(high(&many), 100, "twenty rounds: the 90th percentile");
    }
}
