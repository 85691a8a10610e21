//! The tracing run shared by every command: hold or find the process, attach, wait for the
//! end (target exit, -d, Ctrl-C, SIGTERM) while printing -i tables, then detach and print.
use crate::calibrate::{self, Calibration, ShapeCost};
use crate::error::user;
use crate::features::{AttachStrategy, Kernel};
use crate::interrupt;
use crate::measure::{Measure, Measured};
use crate::options::RunOptions;
use crate::outputs::{self, Output};
use crate::plan::{describe_costs, Site};
use crate::process::{ChildStdout, ExitWatch, HeldChild};
use crate::session::{self, Keying, LoadConfig, Session};
use crate::target::callers::Callers;
use crate::target::{Scope, Target};
use anyhow::{Context, Result};
use probe_ebpf::{Filter, SpanShape, KEY_CALLER};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// What a command hands over: the target, its sites, and one label per value slot.
pub struct Job {
    pub target: Target,
    pub sites: Vec<Site>,
    /// What each slot measures, in slot order.
    pub measured: Vec<Measured>,
    /// Shown once tracing starts, e.g. "main.ToString arg0 (Go register ABI)".
    pub description: String,
    /// Latency: the probe shapes whose own cost is calibrated and subtracted (none: nothing
    /// is subtracted, as for argdist and `--raw`).
    pub shapes: Vec<SpanShape>,
    /// Keyed kinds (`--count`, `--by`): their map's size and key.
    pub keying: Keying,
    /// `--filter`: what a call must satisfy to be aggregated.
    pub filter: Filter,
}

/// Runs the job with kind of measurement `T` (its programs, map and tables).
pub fn run<T: Measure>(job: Job, options: &RunOptions) -> Result<()> {
    session::ensure_privileges()?;
    let kernel = Kernel::detect();
    kernel.ensure_supported()?;
    let Job { target, sites, measured, description, shapes, keying, filter } = job;
    // JSON on stdout stays parseable (`probe --json -c CMD | jq`): the command's own stdout
    // goes to stderr then, still on the terminal.
    let child_stdout =
        if options.json && options.output.is_none() { ChildStdout::ToStderr } else { ChildStdout::Inherit };
    // Fork before any thread exists (the runtime is built after).
    let mut child = match &target.scope {
        Scope::Launch { argv } => Some(HeldChild::spawn(&target.program().path, argv, child_stdout)?),
        _ => None,
    };
    let pid = match (&target.scope, &child) {
        (_, Some(c)) => Some(c.pid),
        (Scope::Pid(pid), None) => Some(*pid),
        _ => None,
    };
    let program = &target.program().path;
    let binary = std::fs::canonicalize(program).unwrap_or_else(|_| program.clone()).display().to_string();
    let scope_pid = if matches!(target.scope, Scope::AllProcesses) { None } else { pid };
    let mut outputs = outputs::build::<T>(options, &measured, &binary, scope_pid)?;
    let unit_ns = measured.first().and_then(|m| m.unit).map_or(1, |u| u.ns());
    // Calibration sites are latency sites: with latency's own programs and no filter (which
    // would apply to them too) they are loaded with the trace's (one load, one verification);
    // otherwise they are calibrated in a session of their own.
    let inline = (!shapes.is_empty() && T::PROGRAMS == Calibration::PROGRAMS && filter.is_empty())
        .then(|| Calibration::plan(&shapes, measured.len() as u32))
        .transpose()?;
    let own_sites = inline.as_ref().map_or(&[][..], |c| &c.sites[..]);
    let all_sites: Vec<Site> = sites.iter().chain(own_sites).cloned().collect();
    let calibration_slots = if inline.is_some() { Calibration::SLOTS } else { 0 };
    let slots = measured.len() as u32;
    let config = LoadConfig { programs: T::PROGRAMS, slots, keying, filter, calibration_slots, unit_ns };
    let strategy = kernel.strategy();
    warn_of_slow_detach(&kernel, strategy, sites.len());
    interrupt::install()?;
    // The probes' own cost, measured on probe's own functions with their own session, is
    // known and set before any site of the target is live.
    let mut session = Session::load(&all_sites, config, strategy)?;
    let (costs, calibration) = match &inline {
        Some(c) => {
            let own = Some(std::process::id() as i32);
            (c.run(&mut session, |s| s.attach_sites(sites.len()..all_sites.len(), own))?, None)
        }
        None => calibrate::measure(&shapes, strategy)?,
    };
    session.set_probe_costs(&calibrate::cost_table(&costs))?;
    if !interrupt::requested() {
        session.attach_sites(0..sites.len(), pid)?;
    }
    if child.is_some() && interrupt::requested() {
        // Never start the command half traced; dropping the held child ends it unstarted.
        let removal = finish_detach(session, calibration)?;
        return Err(user(format!("Ctrl-C while attaching: the command was not started{removal}")));
    }
    // After Ctrl-C while attaching there is no "tracing" line: the run ends at once.
    if !interrupt::requested() {
        announce(&target, pid, &description, &sites, &costs);
    }
    // Released after that line, so it always comes before anything the command prints.
    if let Some(c) = child.as_mut() {
        c.release()?;
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let refresh_requests = outputs.iter_mut().find_map(|o| o.take_refresh_requests());
    // --by caller: return addresses are named from the processes' memory maps, read while
    // they run.
    let callers = (keying.by_key == KEY_CALLER).then(|| Callers::new(&target.program().path));
    let mut feed = Feed { started: Instant::now(), drained: Vec::new(), pending: Vec::new(), outputs, callers };
    let target_exited = runtime.block_on(async {
        feed.start()?;
        let target_exited = trace_until_done(&mut session, pid, options, &mut feed, refresh_requests).await?;
        feed.finish(session.drain_final().await?)?;
        anyhow::Ok(target_exited)
    })?;
    let removal = finish_detach(session, calibration)?;
    if !removal.is_empty() {
        eprintln!("probe: {}", removal.trim_start_matches("; "));
    }
    if let Some(c) = child {
        c.reap_if_exited();
    }
    if target_exited && feed.outputs.iter().any(|o| o.outlives_target()) {
        let left = options.duration.map(|d| d.saturating_sub(feed.started.elapsed()));
        eprintln!("probe: the target exited; still serving its final numbers until Ctrl-C, SIGTERM or -d");
        runtime.block_on(until_stopped(left))?;
    }
    Ok(())
}

/// The `probe: tracing ...` line: what, in whom, how many probes and what they cost.
fn announce(target: &Target, pid: Option<i32>, description: &str, sites: &[Site], costs: &[ShapeCost]) {
    let libraries: Vec<String> = target.libraries().map(|l| l.display().to_string()).collect();
    let whom = match (&target.scope, pid) {
        // A library's probes fire in every process that maps it: say so.
        (Scope::AllProcesses, _) if !libraries.is_empty() => format!(
            "every process using {} (a shared library: not only {}; -p or -c limits it to one process)",
            libraries.join(", "),
            target.program().path.display()
        ),
        (Scope::AllProcesses, _) => format!("every process running {}", target.program().path.display()),
        (_, Some(pid)) => format!("pid {pid}"),
        _ => unreachable!(),
    };
    eprintln!(
        "probe: tracing {description} in {whom} ({}{}); Ctrl-C to end",
        describe_costs(sites),
        describe_calibration(costs)
    );
}

/// `"; probe cost 0.62us per call subtracted"`, per shape in use, or nothing without calibration.
fn describe_calibration(costs: &[ShapeCost]) -> String {
    if costs.is_empty() {
        return String::new();
    }
    let each: Vec<String> = costs.iter().map(|c| crate::histogram::Unit::Us.format(c.inside_ns)).collect();
    format!("; probe cost {} per call subtracted", each.join("/"))
}
/// Removing probes longer than this goes to the background, so the prompt comes back.
const FOREGROUND_DETACH: Duration = Duration::from_secs(1);

/// Warn before attaching more probes than this one at a time (no uprobe_multi link).
const WARN_SITES: usize = 300;

/// Detaches now when that is quick, else in a forked child. Returns what to tell the user
/// ("" when nothing), starting with "; ".
fn finish_detach(session: Session, calibration: Option<Session>) -> Result<String> {
    // The trace's own probes first, entries before exits (`Session::detach`).
    let mut sessions: Vec<Session> = std::iter::once(session).chain(calibration).collect();
    let estimate: Duration = sessions.iter().map(Session::detach_estimate).sum();
    let probes: usize = sessions.iter().map(Session::perf_probes).sum();
    if estimate <= FOREGROUND_DETACH {
        sessions.iter_mut().for_each(Session::detach);
        return Ok(String::new());
    }
    let pid = session::detach_in_background(sessions)?;
    Ok(format!(
        "; removing the {probes} probes takes the kernel about {} (one at a time, without a uprobe_multi \
         link); pid {pid} finishes it in the background and ignores Ctrl-C, which could not \
         speed it up",
        human_duration(estimate)
    ))
}

/// Tells what detaching will cost before attaching many probes one at a time.
fn warn_of_slow_detach(kernel: &Kernel, strategy: AttachStrategy, sites: usize) {
    if strategy != AttachStrategy::MultiLink && sites > WARN_SITES {
        eprintln!(
            "probe: warning: Linux {} {}: removing these {sites} probes will take about {} after the \
             run (in the background), while the target keeps paying for them; narrow the pattern to \
             avoid it",
            kernel.release,
            if kernel.uprobe_multi.present {
                "is told not to use its uprobe_multi link (PROBE_ATTACH)"
            } else {
                "has no uprobe_multi link (6.6+)"
            },
            human_duration(session::PERF_PROBE_DETACH * sites as u32)
        );
    }
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else {
        format!("{:.0} min", secs / 60.0)
    }
}

/// Completes at Ctrl-C, SIGTERM, or after `left` when given.
async fn until_stopped(left: Option<Duration>) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
        _ = sleep_until(left.map(|l| tokio::time::Instant::now() + l)) => {}
    }
    Ok(())
}

/// Returns whether the trace ended because the target exited.
async fn trace_until_done<T: Measure>(
    session: &mut Session,
    pid: Option<i32>,
    options: &RunOptions,
    feed: &mut Feed<T>,
    // Dropped on return: a scrape after that gets the (then final) totals without waiting.
    mut refresh_requests: Option<outputs::RefreshRequests>,
) -> Result<bool> {
    let watch = match pid.map(ExitWatch::new).transpose()? {
        Some(None) => return Ok(true), // exited between attaching and here: print what we have
        Some(Some(w)) => Some(w),
        None => None,
    };
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    if interrupt::requested() {
        return Ok(false); // Ctrl-C while attaching: end at once
    }
    let deadline = options.duration.map(|d| tokio::time::Instant::now() + d);
    // Drain every -i seconds, or every DEFAULT_PERIOD when an output besides the terminal
    // follows time.
    let period = match options.interval {
        Some(every) => Some(every),
        None if feed.outputs.len() > 1 => Some(outputs::DEFAULT_PERIOD),
        None => None,
    };
    let every = period.unwrap_or(Duration::from_secs(1 << 30));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // --by caller: the traced process's memory map, kept fresh while it runs (libraries it
    // loads later, and a `-c` command that exits before the tables are made).
    let watch_maps = feed.callers.is_some() && pid.is_some();
    let mut map_ticks = tokio::time::interval(MAP_SNAPSHOT_PERIOD);
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = exited(watch.as_ref()) => return Ok(true),
            _ = sleep_until(deadline) => break,
            _ = map_ticks.tick(), if watch_maps => feed.snapshot_maps(pid),
            _ = ticks.tick(), if period.is_some() => {
                feed.interval(session.drain_interval().await?)?;
            }
            Some(done) = next_request(refresh_requests.as_mut()) => {
                feed.refresh(session.drain_interval().await?)?;
                let _ = done.send(());
            }
        }
    }
    Ok(false)
}

/// How often `--by caller` reads the traced process's memory map.
const MAP_SNAPSHOT_PERIOD: Duration = Duration::from_millis(50);

/// Completes when the watched process exits; never without a process to watch.
async fn exited(watch: Option<&ExitWatch>) {
    match watch {
        Some(w) => w.exited().await,
        None => std::future::pending().await,
    }
}

/// The next request for fresh totals; never without an output that asks.
async fn next_request(requests: Option<&mut outputs::RefreshRequests>) -> Option<tokio::sync::oneshot::Sender<()>> {
    match requests {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Completes at the deadline; never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Feeds the outputs (the terminal first) and keeps the run's totals, once, so the final
/// tables cover the whole run and every output gets the same numbers.
struct Feed<T> {
    started: Instant,
    /// Everything in the intervals reported so far.
    drained: Vec<T>,
    /// Drained for a refresh (a scrape) since the last interval: part of the next one.
    pending: Vec<T>,
    outputs: Vec<Box<dyn Output<T>>>,
    /// `--by caller`: names return addresses before any output sees them.
    callers: Option<Callers>,
}

impl<T: Measure> Feed<T> {
    /// The drained values with their return addresses named.
    fn named(&mut self, mut values: Vec<T>) -> Vec<T> {
        if let Some(callers) = self.callers.as_mut() {
            values.iter_mut().for_each(|v| v.name_callers(callers));
        }
        values
    }

    /// Reads `pid`'s memory map now, if return addresses will need it.
    fn snapshot_maps(&mut self, pid: Option<i32>) {
        if let (Some(callers), Some(pid)) = (self.callers.as_mut(), pid) {
            callers.snapshot(pid as u32);
        }
    }

    fn start(&mut self) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.start())
    }

    fn interval(&mut self, values: Vec<T>) -> Result<()> {
        let values = self.named(values);
        let values = self.with_pending(values);
        self.drained.resize(values.len(), T::EMPTY);
        for (acc, v) in self.drained.iter_mut().zip(&values) {
            acc.merge(v);
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        self.outputs.iter_mut().try_for_each(|o| o.interval(elapsed, &values, &self.drained))
    }

    /// Values drained between intervals (for a scrape): kept for the next interval, and the
    /// outputs get the run's totals up to now.
    fn refresh(&mut self, values: Vec<T>) -> Result<()> {
        let values = self.named(values);
        self.pending = self.with_pending(values);
        let totals = self.totals_with(&self.pending);
        self.outputs.iter_mut().try_for_each(|o| o.refresh(&totals))
    }

    /// `values` plus what was drained for refreshes since the last interval, which it takes.
    fn with_pending(&mut self, mut values: Vec<T>) -> Vec<T> {
        for (v, p) in values.iter_mut().zip(std::mem::take(&mut self.pending)) {
            v.merge(&p);
        }
        values
    }

    /// The intervals so far plus `recent`.
    fn totals_with(&self, recent: &[T]) -> Vec<T> {
        let mut totals = recent.to_vec();
        for (t, drained) in totals.iter_mut().zip(&self.drained) {
            t.merge(drained);
        }
        totals
    }

    /// `last`: what was drained at the end, since the last interval (the last, shorter one).
    fn finish(&mut self, last: Vec<T>) -> Result<()> {
        let last = self.named(last);
        let last = self.with_pending(last);
        let totals = self.totals_with(&last);
        let elapsed = self.started.elapsed().as_secs_f64();
        self.outputs.iter_mut().try_for_each(|o| o.finish(elapsed, &last, &totals))
    }
}
