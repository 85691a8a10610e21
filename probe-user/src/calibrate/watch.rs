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
//! - how far the rounds stray from what is subtracted widens the resolution of the functions
//!   of that shape, and figures below it are marked as such.
//!
//! A probed call's cost to its callers stays the start-up one: measured again through a traced
//! caller of probe's own (the difference of its spans with one and with six calls), it was a
//! difference of two noisy spans, 10-70 us for a cost of 14 us here, and did worse.
use super::{call, recorded_round, typical_ns, SpanShape, Typical};
use crate::plan::{Resolution, ShapeCost};
use crate::session::{CalibrationRecords, ProbeCosts};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A calibrated shape and its calibration function's slot.
#[derive(Clone, Copy, Debug)]
pub struct Probed {
    pub shape: SpanShape,
    pub slot: u32,
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
    /// How far each of the last `KEPT_ROUNDS` rounds' inside cost was from the subtracted one
    /// (a trace can run for weeks: the resolution only widens, so older rounds have had their
    /// say).
    off_ns: std::collections::VecDeque<u64>,
}

impl Seen {
    /// Takes in a round's inside cost; returns whether the cost to subtract changed.
    fn round(&mut self, inside: Typical) -> bool {
        let before = self.inside_ns;
        // A quantile is a bucket's midpoint, up to 256 ns off here: only a mean lowers it.
        if let Typical::Mean(ns) = inside {
            self.inside_ns = self.inside_ns.min(ns);
        }
        if self.off_ns.len() == KEPT_ROUNDS {
            self.off_ns.pop_front();
        }
        self.off_ns.push_back(inside.ns().abs_diff(self.inside_ns));
        self.inside_ns != before
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
                let inside_ns = costs.iter().find(|c| c.shape == p.shape)?.inside_ns;
                Some(Seen { probed: p, inside_ns, off_ns: Default::default() })
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
            let Some(inside) = round(&s.probed, &records) else { continue };
            if s.round(inside) && costs.set(s.probed.shape.inside_cost_index(), s.inside_ns).is_err() {
                return; // the session is gone
            }
            let drift_ns = high(s.off_ns.make_contiguous());
            resolutions.iter().filter(|r| r.shape == Some(s.probed.shape)).for_each(|r| r.widen(drift_ns));
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

/// One round of `CALLS` calls of the shape's function: what its probes added inside each span
/// (their central mean); None when the round cannot tell (its calls were not all recorded: the
/// probes are going).
fn round(p: &Probed, records: &CalibrationRecords) -> Option<Typical> {
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
    Some(typical_ns(&fine, after.sum_ns - before.sum_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_in_a_dear_spell_is_undone_by_the_next_cheap_round() {
        let probed = Probed { shape: SpanShape::ALL[1], slot: 0 };
        let mut s = Seen { probed, inside_ns: 13_000, off_ns: Default::default() };
        assert!(s.round(Typical::Mean(9_300)));
        assert_eq!(s.inside_ns, 9_300, "the lowest mean");
        assert!(!s.round(Typical::Mean(9_400)));
        // A quantile (a bucket's midpoint) never lowers it; a dear round never raises it.
        assert!(!s.round(Typical::Quantile(8_959)));
        assert!(!s.round(Typical::Mean(12_900)));
        assert_eq!(s.inside_ns, 9_300);
        // How far each round was from what was subtracted after it.
        assert_eq!(s.off_ns, [0, 100, 341, 3_600]);
        assert_eq!(high(s.off_ns.make_contiguous()), 3_600);
        // Only the last rounds are kept: a trace may run for weeks.
        (0..2 * KEPT_ROUNDS).for_each(|_| {
            s.round(Typical::Mean(9_300));
        });
        assert_eq!((s.off_ns.len(), high(s.off_ns.make_contiguous())), (KEPT_ROUNDS, 0));
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
