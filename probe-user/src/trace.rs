//! The tracing run shared by every command: hold or find the process, attach, wait for the
//! end (target exit, -d, Ctrl-C, SIGTERM) while printing -i tables, then detach and print.
use crate::calibrate::{self, Calibration, ShapeCost};
use crate::cli::OutputArgs;
use crate::error::user;
use crate::features::{AttachStrategy, Kernel};
use crate::interrupt;
use crate::outputs::metrics::Exposed;
use crate::outputs::{self, Distribution, Output};
use crate::plan::{describe_costs, Site};
use crate::process::{ChildStdout, ExitWatch, HeldChild};
use crate::render::Measured;
use crate::render::Report;
use crate::session::{self, Aggregate, LoadConfig, Session};
use crate::target::{Scope, Target};
use anyhow::{Context, Result};
use probe_ebpf::SpanShape;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// What a command hands over: the target, its sites, and one label per value slot.
pub struct Job {
    pub target: Target,
    pub sites: Vec<Site>,
    pub slots: Vec<Measured>,
    /// Shown once tracing starts, e.g. "main.ToString arg0 (Go register ABI)".
    pub description: String,
    /// Display unit of latency values in nanoseconds (1 for argdist).
    pub unit_ns: u64,
    /// Latency: the probe shapes whose own cost is calibrated and subtracted (none: nothing
    /// is subtracted, as for argdist and `--raw`).
    pub shapes: Vec<SpanShape>,
}

pub fn run<T: Aggregate + Report + Distribution + Exposed>(job: Job, output: &OutputArgs) -> Result<()> {
    session::ensure_privileges()?;
    let kernel = Kernel::detect();
    kernel.ensure_supported()?;
    let Job { target, sites, slots, description, unit_ns, shapes } = job;
    let stream = outputs::stream(output)?;
    // JSON on stdout stays parseable (`probe --json -c CMD | jq`): the command's own stdout
    // goes to stderr then, still on the terminal.
    let child_stdout =
        if output.json && output.output.is_none() { ChildStdout::ToStderr } else { ChildStdout::Inherit };
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
    let mut outputs = outputs::build::<T>(output, &slots, &binary, scope_pid)?;
    let calibration = match shapes.is_empty() {
        true => None,
        false => Some(Calibration::plan(&shapes, slots.len() as u32)?),
    };
    let own_sites = calibration.as_ref().map_or(&[][..], |c| &c.sites[..]);
    let all_sites: Vec<Site> = sites.iter().chain(own_sites).cloned().collect();
    let calibration_slots = if calibration.is_some() { Calibration::SLOTS } else { 0 };
    let config = LoadConfig { slots: slots.len() as u32, calibration_slots, unit_ns };
    let strategy = kernel.strategy();
    warn_of_slow_detach(&kernel, strategy, sites.len());
    interrupt::install()?;
    let mut session = Session::<T>::load(&all_sites, config, strategy)?;
    // The probes' own cost is known and set before any site of the target is live.
    let mut costs = Vec::new();
    if let Some(calibration) = &calibration {
        let own = std::process::id() as i32;
        costs = calibration.run(&mut session, |s| s.attach_sites(sites.len()..all_sites.len(), Some(own)))?;
        session.set_probe_costs(&calibrate::cost_table(&costs))?;
    }
    if !interrupt::requested() {
        session.attach_sites(0..sites.len(), pid)?;
    }
    if child.is_some() && interrupt::requested() {
        // Never start the command half traced; dropping the held child ends it unstarted.
        let removal = finish_detach(session)?;
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
    let mut printer = Printer {
        slots,
        json: output.json,
        all: output.all,
        top: output.top.map(|n| n as usize),
        print_intervals: output.interval.is_some(),
        started: Instant::now(),
        drained: Vec::new(),
        pending: Vec::new(),
        outputs,
        stream,
    };
    let target_exited = runtime.block_on(async {
        printer.start()?;
        let target_exited = trace_until_done(&mut session, pid, output, &mut printer, refresh_requests).await?;
        printer.finish(session.drain_final().await?)?;
        anyhow::Ok(target_exited)
    })?;
    let removal = finish_detach(session)?;
    if !removal.is_empty() {
        eprintln!("probe: {}", removal.trim_start_matches("; "));
    }
    if let Some(c) = child {
        c.reap_if_exited();
    }
    if target_exited && printer.outputs.iter().any(|o| o.outlives_target()) {
        let left = output.duration.map(|d| Duration::from_secs_f64(d).saturating_sub(printer.started.elapsed()));
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
fn finish_detach<T: Aggregate>(mut session: Session<T>) -> Result<String> {
    let estimate = session.detach_estimate();
    let probes = session.perf_probes();
    if estimate <= FOREGROUND_DETACH {
        session.detach();
        return Ok(String::new());
    }
    let pid = session.detach_in_background()?;
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
async fn trace_until_done<T: Aggregate + Report>(
    session: &mut Session<T>,
    pid: Option<i32>,
    output: &OutputArgs,
    printer: &mut Printer<T>,
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
    let deadline = output.duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    // Drain every -i seconds, or every DEFAULT_PERIOD when only an output follows time.
    let period = match output.interval {
        Some(secs) => Some(Duration::from_secs_f64(secs)),
        None if !printer.outputs.is_empty() => Some(outputs::DEFAULT_PERIOD),
        None => None,
    };
    let every = period.unwrap_or(Duration::from_secs(1 << 30));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = exited(watch.as_ref()) => return Ok(true),
            _ = sleep_until(deadline) => break,
            _ = ticks.tick(), if period.is_some() => {
                printer.interval(session.drain_interval().await?)?;
            }
            Some(done) = next_request(refresh_requests.as_mut()) => {
                printer.refresh(session.drain_interval().await?)?;
                let _ = done.send(());
            }
        }
    }
    Ok(false)
}

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

/// Prints tables in the chosen format and feeds the other outputs. The run's totals are kept
/// here, once, so the final table covers the whole run and every output gets them as well.
struct Printer<T> {
    slots: Vec<Measured>,
    json: bool,
    /// --all: text includes the functions never called.
    all: bool,
    /// --top N: text shows only the N heaviest tables.
    top: Option<usize>,
    /// -i was given: print each interval's table.
    print_intervals: bool,
    started: Instant,
    /// Everything in the intervals reported so far.
    drained: Vec<T>,
    /// Drained for a refresh (a scrape) since the last interval: part of the next one.
    pending: Vec<T>,
    outputs: Vec<Box<dyn Output<T>>>,
    /// stdout, or the `-o` file.
    stream: Box<dyn std::io::Write>,
}

impl<T: Aggregate + Report> Printer<T> {
    fn start(&mut self) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.start())
    }

    fn interval(&mut self, values: Vec<T>) -> Result<()> {
        let values = self.with_pending(values);
        if self.print_intervals {
            self.print("interval", &values);
        }
        self.drained.resize(values.len(), T::EMPTY);
        for (acc, v) in self.drained.iter_mut().zip(&values) {
            acc.merge(v);
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        for o in &mut self.outputs {
            o.interval(elapsed, &values, &self.drained)?;
        }
        Ok(())
    }

    /// Values drained between intervals (for a scrape): kept for the next interval, and the
    /// outputs get the run's totals up to now.
    fn refresh(&mut self, values: Vec<T>) -> Result<()> {
        self.pending = self.with_pending(values);
        let mut totals = self.pending.clone();
        for (t, drained) in totals.iter_mut().zip(&self.drained) {
            t.merge(drained);
        }
        self.outputs.iter_mut().try_for_each(|o| o.refresh(&totals))
    }

    /// `values` plus what was drained for refreshes since the last interval, which it takes.
    fn with_pending(&mut self, mut values: Vec<T>) -> Vec<T> {
        for (v, p) in values.iter_mut().zip(std::mem::take(&mut self.pending)) {
            v.merge(&p);
        }
        values
    }

    /// `last`: what was drained at the end, since the last interval. With -i it is printed as
    /// the last (shorter) interval first, so the interval tables add up to the final one.
    fn finish(&mut self, last: Vec<T>) -> Result<()> {
        let last = self.with_pending(last);
        if self.print_intervals {
            self.print("interval", &last);
        }
        let mut totals = last.clone();
        for (t, drained) in totals.iter_mut().zip(&self.drained) {
            t.merge(drained);
        }
        self.print("final", &totals);
        let elapsed = self.started.elapsed().as_secs_f64();
        self.outputs.iter_mut().try_for_each(|o| o.finish(elapsed, &last, &totals))
    }

    fn print(&mut self, kind: &str, values: &[T]) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut out = String::new();
        if !self.json && kind == "interval" {
            out.push_str(&format!("{} (+{elapsed:.1}s)\n", wall_clock()));
        }
        if self.json {
            for (m, s) in self.slots.iter().zip(values) {
                out.push_str(&s.json(kind, elapsed, m));
                out.push('\n');
            }
        } else {
            out.push_str(&self.text(values));
        }
        let _ = self.stream.write_all(out.as_bytes());
        let _ = self.stream.flush();
    }
}

impl<T: Aggregate + Report> Printer<T> {
    /// The text tables, heaviest first. With several functions, those never called are left
    /// out (unless --all) and named in one line, and --top cuts the rest.
    fn text(&self, values: &[T]) -> String {
        if self.slots.len() <= 1 {
            return self.slots.iter().zip(values).map(|(m, v)| v.text(m)).collect();
        }
        let mut order: Vec<usize> = (0..values.len().min(self.slots.len())).collect();
        // Stable: equal weights keep the order the functions were given or found in.
        order.sort_by_key(|&i| std::cmp::Reverse(values[i].weight()));
        let (shown, never): (Vec<usize>, Vec<usize>) =
            order.into_iter().partition(|&i| self.all || !values[i].is_empty());
        let cut = self.top.unwrap_or(usize::MAX).min(shown.len());
        let mut out: String = shown[..cut].iter().map(|&i| values[i].text(&self.slots[i])).collect();
        if cut < shown.len() {
            out.push_str(&format!(
                "({} more function{} not shown: --top {cut})\n",
                shown.len() - cut,
                if shown.len() - cut == 1 { "" } else { "s" }
            ));
        }
        if !never.is_empty() {
            let names: Vec<&str> = never.iter().map(|&i| self.slots[i].function.as_str()).collect();
            out.push_str(&format!(
                "({} of {} functions never called, not shown: {}; --all shows them)\n",
                never.len(),
                self.slots.len(),
                name_a_few(&names, 3)
            ));
        }
        out
    }
}

/// "a, b, c and 7 more".
pub fn name_a_few(names: &[&str], few: usize) -> String {
    let mut text = names[..names.len().min(few)].join(", ");
    if names.len() > few {
        text.push_str(&format!(" and {} more", names.len() - few));
    }
    text
}

/// Local time as HH:MM:SS.
fn wall_clock() -> String {
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&now, &mut tm) };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}
