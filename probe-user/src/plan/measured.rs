//! What the plan says each slot measures, for the tables' labels, units and notes; latency's
//! resolution is settled here once the probes' costs are calibrated.
use crate::shared::Unit;
use probe_ebpf::SpanShape;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// What was measured at a traced function, for labels and JSON.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub function: String,
    /// "arg0", "arg1", ..., "ret" or "latency".
    pub what: String,
    /// Display unit of the table (latency only).
    pub unit: Option<Unit>,
    /// Rows of a table of exact values (`--count`): the most frequent, the rest summed.
    pub top_values: usize,
    /// The function's inlined copies, when it has any (`inlined::WithInlined` reports them).
    pub inlined: Option<InlinedSites>,
    /// Latency: how finely the corrected durations can be told, once calibrated.
    pub resolution: Resolution,
}

/// What the probes' cost calibration says about one function's corrected durations, known
/// once it has run (after the tables' outputs exist: every clone of a `Measured` shares it).
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    /// How its calls are bracketed by probes (None: not latency).
    pub shape: Option<SpanShape>,
    spreads: Arc<OnceLock<Spreads>>,
    /// How far the cost inside this shape's spans was seen to move from the one subtracted
    /// while the trace ran (`calibrate::watch`), in ns: it widens the resolution.
    drift_ns: Arc<AtomicU64>,
    /// How far a probed call's cost to its callers (of any shape) was seen to move from the
    /// one charged, relative to it, in millionths: it widens what callees add.
    hit_drift_ppm: Arc<AtomicU64>,
}

/// What a single-stepped probed call costs the traced program can differ from what it costs
/// probe's calibration functions by this share, and no round of probe's sees it: 1.3 us more on
/// a 13 us hit, on either CPU, through a dear spell of a VM (docs/how-it-works.md). A caller's
/// traced callees and a recursion's inner calls add theirs up (ten callees: 13 us; the 128
/// levels inside the middle level of a 256-deep recursion: 0.13 ms), so the cost subtracted for
/// them is uncertain by at least this share of it.
const STEPPED_HIT_UNSEEN: f64 = 0.1;

/// The calibrated cost inside this function's calls and its spread, and the spread of a probed
/// call's cost relative to that cost (for the callees and recursion inside a call).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spreads {
    pub inside_ns: u64,
    pub inside_spread_ns: u64,
    pub hit_relative_spread: f64,
}

impl Resolution {
    pub fn of_shape(shape: SpanShape) -> Resolution {
        Resolution { shape: Some(shape), ..Resolution::default() }
    }

    /// Widens it to how far the cost inside this function's shape strayed since start-up.
    pub fn widen(&self, drift_ns: u64) {
        self.drift_ns.fetch_max(drift_ns, Ordering::Relaxed);
    }

    /// Widens what its traced callees add to it: a probed call's cost to its caller strayed
    /// this share of the cost charged.
    pub fn widen_hits(&self, relative: f64) {
        self.hit_drift_ppm.fetch_max((relative * 1e6).round() as u64, Ordering::Relaxed);
    }

    /// Settles it from the calibrated costs of every shape in use: this function's own, and
    /// the largest relative spread of any (its callees may be of any shape), at least
    /// `STEPPED_HIT_UNSEEN` for a shape whose probes single-step.
    pub fn settle(&self, costs: &[ShapeCost]) {
        let own = costs.iter().find(|c| Some(c.shape) == self.shape);
        let relative = |c: &ShapeCost| {
            let spread = if c.hit_ns == 0 { 0.0 } else { c.hit_spread_ns as f64 / c.hit_ns as f64 };
            let steps = c.shape.entry_stepped || !c.shape.uretprobe; // a RET probe is single-stepped
            if steps {
                spread.max(STEPPED_HIT_UNSEEN)
            } else {
                spread
            }
        };
        if let Some(own) = own {
            let hit_relative_spread = costs.iter().map(relative).fold(0.0, f64::max);
            let spreads =
                Spreads { inside_ns: own.inside_ns, inside_spread_ns: own.inside_spread_ns, hit_relative_spread };
            let _ = self.spreads.set(spreads);
        }
    }

    /// The resolution of calls that had `subtracted_per_call_ns` taken out on average (0 when
    /// nothing was calibrated, `--raw`): the spread of their own probes' cost, and that of the
    /// callees' probes whose cost was subtracted too.
    pub fn of_calls(&self, subtracted_per_call_ns: u64) -> u64 {
        let Some(s) = self.spreads.get() else { return 0 };
        if subtracted_per_call_ns == 0 {
            return 0;
        }
        let nested = subtracted_per_call_ns.saturating_sub(s.inside_ns) as f64;
        let hit_relative = s.hit_relative_spread.max(self.hit_drift_ppm.load(Ordering::Relaxed) as f64 / 1e6);
        s.inside_spread_ns.max(self.drift_ns.load(Ordering::Relaxed)) + (nested * hit_relative).round() as u64
    }
}

/// What one shape's probes cost, in nanoseconds, and how much that varies from call to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeCost {
    pub shape: SpanShape,
    /// Inside each measured span of this shape.
    pub inside_ns: u64,
    /// Added by one probed call of this shape to whatever encloses it.
    pub hit_ns: u64,
    /// The spread (p90 - p10) of what the probes added inside the calibration's spans: a
    /// corrected duration is uncertain by about this much, and no finer figure means anything.
    pub inside_spread_ns: u64,
    /// The spread (p90 - p10) of one probed call's whole cost, as its caller saw it.
    pub hit_spread_ns: u64,
}

/// A traced function's inlined copies, as planned (in `Measured`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlinedSites {
    /// Copies whose calls are counted (one probe each).
    pub counted: usize,
    /// Copies whose calls cannot be counted ...
    pub uncounted: usize,
    /// ... and why (the first reason met).
    pub why: Option<String>,
    /// What an inlined call lacks for this measurement, e.g. "their arguments cannot be read".
    pub lacking: String,
}

impl InlinedSites {
    /// `"main.small: 1000 more calls at 1 inlined site (counted; their arguments cannot be
    /// read)"`, then any copies not counted and why; one line.
    pub fn line(&self, function: &str, calls: u64) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let why = self.why.as_deref().unwrap_or("unknown");
        let (counted, uncounted) = (self.counted, self.uncounted);
        let mut line = if counted > 0 {
            let mut text = format!(
                "{function}: {calls} more calls at {counted} inlined site{} ({})",
                plural(counted),
                self.lacking
            );
            if uncounted > 0 {
                text.push_str(&format!(
                    "; and at {uncounted} more inlined site{} whose calls cannot be counted ({why})",
                    plural(uncounted)
                ));
            }
            text
        } else {
            format!(
                "{function}: inlined at {uncounted} site{} whose calls cannot be counted ({why})",
                plural(uncounted)
            )
        };
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_seen_to_stray_widens_the_resolution_of_every_copy() {
        let shape = SpanShape::ALL[1];
        let resolution = Resolution::of_shape(shape);
        let shown = resolution.clone(); // what an output holds
        let cost = ShapeCost { shape, inside_ns: 9_200, hit_ns: 10_400, inside_spread_ns: 512, hit_spread_ns: 1_040 };
        resolution.settle(&[cost]);
        assert_eq!(shown.of_calls(9_200), 512);
        assert_eq!(shown.of_calls(9_200 + 10 * 10_400), 512 + 10 * 1_040);
        resolution.widen(3_700);
        assert_eq!(shown.of_calls(9_200), 3_700);
        resolution.widen(1_000); // never narrower
        assert_eq!(shown.of_calls(9_200 + 10 * 10_400), 3_700 + 10 * 1_040);
        assert_eq!(shown.of_calls(0), 0, "nothing subtracted (--raw): nothing to resolve");
    }

    /// A resolution settled from one shape's costs: inside, hit, and their spreads.
    fn settled(shape: SpanShape, [inside_ns, hit_ns, inside_spread_ns, hit_spread_ns]: [u64; 4]) -> Resolution {
        let resolution = Resolution::of_shape(shape);
        resolution.settle(&[ShapeCost { shape, inside_ns, hit_ns, inside_spread_ns, hit_spread_ns }]);
        resolution
    }

    #[test]
    fn callees_probes_that_single_step_are_uncertain_by_a_tenth_of_their_cost_at_least() {
        // A Go caller (RET probes, single-stepped) of ten traced callees, calibrated calm.
        let go = settled(SpanShape::ALL[4], [13_000, 14_000, 300, 280]);
        assert_eq!(go.of_calls(13_000), 300, "its own probes: their spread");
        assert_eq!(go.of_calls(13_000 + 10 * 14_000), 300 + 14_000);
        // C with uretprobes on `push` entries: nothing single-stepped, the spread alone.
        let c = settled(SpanShape::ALL[2], [700, 1_000, 60, 20]);
        assert_eq!(c.of_calls(700 + 10 * 1_000), 60 + 200);
        // The watch saw a probed call cost its caller 36% more than charged (a dear spell):
        // the callees' part widens by that share, the function's own probes' part does not.
        go.widen_hits(0.36);
        go.widen_hits(0.2); // never narrower
        assert_eq!(go.of_calls(13_000), 300);
        assert_eq!(go.of_calls(13_000 + 10 * 14_000), 300 + 50_400);
    }
}
