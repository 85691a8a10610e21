//! The tracing run shared by every command: hold or find the process, attach, wait for the
//! end (target exit, -d, Ctrl-C, SIGTERM) while printing -i tables, then detach and print.
use crate::cli::OutputArgs;
use crate::features::Kernel;
use crate::outputs::metrics::Exposed;
use crate::outputs::{self, Distribution, Output};
use crate::plan::Site;
use crate::process::{ExitWatch, HeldChild};
use crate::render::Measured;
use crate::render::Report;
use crate::session::{self, Aggregate, LoadConfig, Session};
use crate::target::{Scope, Target};
use anyhow::{Context, Result};
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
}

pub fn run<T: Aggregate + Report + Distribution + Exposed>(job: Job, output: &OutputArgs) -> Result<()> {
    session::ensure_privileges()?;
    let kernel = Kernel::detect();
    kernel.ensure_supported()?;
    let Job { target, sites, slots, description, unit_ns } = job;
    // Fork before any thread exists (the runtime is built after).
    let mut child = match &target.scope {
        Scope::Launch { argv } => Some(HeldChild::spawn(&target.program().path, argv)?),
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
    let config = LoadConfig { slots: slots.len() as u32, unit_ns };
    let mut session = Session::<T>::attach(&sites, pid, config, kernel.strategy())?;
    if let Some(c) = child.as_mut() {
        c.release()?;
    }
    let whom = match (&target.scope, pid) {
        (Scope::AllProcesses, _) => format!("every process running {}", target.program().path.display()),
        (_, Some(pid)) => format!("pid {pid}"),
        _ => unreachable!(),
    };
    let announcement = format!(
        "probe: tracing {description} in {whom} ({} probe{}); Ctrl-C to end",
        sites.len(),
        if sites.len() == 1 { "" } else { "s" }
    );

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let refresh_requests = outputs.iter_mut().find_map(|o| o.take_refresh_requests());
    let mut printer = Printer {
        slots,
        json: output.json,
        print_intervals: output.interval.is_some(),
        started: Instant::now(),
        drained: Vec::new(),
        pending: Vec::new(),
        outputs,
    };
    let target_exited = runtime.block_on(async {
        let mut stop = StopSignals::new()?;
        // Only now does "Ctrl-C to end" hold: before the handlers, Ctrl-C kills probe outright
        // (the kernel then detaches everything, but no table is printed).
        eprintln!("{announcement}");
        printer.start()?;
        let target_exited = trace_until_done(&mut session, pid, output, &mut printer, refresh_requests, &mut stop).await?;
        printer.finish(session.drain_final().await?)?;
        anyhow::Ok(target_exited)
    })?;
    if sites.len() > 20 {
        eprintln!("probe: detaching {} probes (the kernel takes about 0.1 s for each)", sites.len());
    }
    session.detach();
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
    stop: &mut StopSignals,
) -> Result<bool> {
    let watch = match pid.map(ExitWatch::new).transpose()? {
        Some(None) => return Ok(true), // exited between attaching and here: print what we have
        Some(Some(w)) => Some(w),
        None => None,
    };
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
            _ = stop.interrupt.recv() => break,
            _ = stop.terminate.recv() => break,
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

/// SIGINT and SIGTERM, caught from before tracing is announced until it ends.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("SIGTERM handler")?,
        })
    }
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
    /// -i was given: print each interval's table.
    print_intervals: bool,
    started: Instant,
    /// Everything in the intervals reported so far.
    drained: Vec<T>,
    /// Drained for a refresh (a scrape) since the last interval: part of the next one.
    pending: Vec<T>,
    outputs: Vec<Box<dyn Output<T>>>,
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

    fn print(&self, kind: &str, values: &[T]) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut out = String::new();
        if !self.json && kind == "interval" {
            out.push_str(&format!("{} (+{elapsed:.1}s)\n", wall_clock()));
        }
        for (m, s) in self.slots.iter().zip(values) {
            if self.json {
                out.push_str(&s.json(kind, elapsed, m));
                out.push('\n');
            } else {
                out.push_str(&s.text(m));
            }
        }
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

/// Local time as HH:MM:SS.
fn wall_clock() -> String {
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&now, &mut tm) };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}
