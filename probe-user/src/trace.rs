//! The tracing run shared by every command: hold or find the process, attach, wait for the
//! end (target exit, -d, Ctrl-C, SIGTERM) while printing -i tables, then detach and print.
use crate::calibrate::{CostPlan, CostWatch};
use crate::error::user;
use crate::features::{AttachStrategy, Kernel};
use crate::interrupt;
use crate::measure::inlined::WithInlined;
use crate::measure::Measure;
use crate::options::RunOptions;
use crate::outputs::events::{EventFormat, EventReader};
use crate::outputs::{self, Output};
use crate::plan::events::EventsPlan;
use crate::plan::ShapeCost;
use crate::plan::{describe_costs, Job, Site};
use crate::process::{ChildStdout, ExitWatch, HeldChild};
use crate::resolve::callers::Callers;
use crate::resolve::{container, Scope, Target};
use crate::session::Programs;
use crate::session::{self, LoadConfig, Session};
use anyhow::{Context, Result};
use probe_ebpf::{EventConfig, KEY_CALLER, KEY_STACK};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// Runs the job with kind of measurement `K` (its programs, map and tables), and the calls of
/// the traced functions' inlined copies beside its tables.
pub fn run<K: Measure>(job: Job, options: &RunOptions) -> Result<()> {
    run_kind::<WithInlined<K>>(job, options)
}

/// The run in its four steps: load everything while nothing is attached, then measure the
/// probes' cost and attach, then trace until the end, then detach and say goodbye.
fn run_kind<T: Measure>(job: Job, options: &RunOptions) -> Result<()> {
    let prepared = prepare::<T>(job, options)?;
    let mut tracing = attach(prepared, options)?;
    let target_exited = tracing.trace_until_done(options)?;
    tracing.finish(target_exited, options)
}

/// A run whose programs are loaded, its command held before its first instruction, and
/// nothing attached yet.
struct Prepared<T> {
    job: Job,
    child: Option<HeldChild>,
    /// The process traced (`-p`, or the held `-c` command); None: every process.
    pid: Option<i32>,
    outputs: Vec<Box<dyn Output<T>>>,
    session: Session,
    costs: CostPlan,
    strategy: AttachStrategy,
}

/// Checks what the run needs, holds the command, opens the outputs and loads the programs.
fn prepare<T: Measure>(job: Job, options: &RunOptions) -> Result<Prepared<T>> {
    // The plan is made: the DWARF it read need not stay for the whole trace.
    crate::resolve::dwarf::forget_sections();
    session::ensure_privileges()?;
    let kernel = Kernel::detect();
    kernel.ensure_supported()?;
    let target = &job.target;
    // --cgroup/--container: checked in the kernel at every hit (0: every process).
    let cgroup = target.selection.as_ref().map_or(0, |s| s.cgroup_id);
    if let Some(selection) = &target.selection {
        container::ensure_kernel_support(selection)?;
    }
    // JSON on stdout stays parseable (`probe --json -c CMD | jq`): the command's own stdout
    // goes to stderr then, still on the terminal.
    let child_stdout =
        if options.json && options.output.is_none() { ChildStdout::ToStderr } else { ChildStdout::Inherit };
    // Fork before any thread exists (the runtime is built after).
    let child = match &target.scope {
        Scope::Launch { argv } => Some(HeldChild::spawn(&target.program().path, argv, child_stdout)?),
        _ => None,
    };
    let pid = match (&target.scope, &child) {
        (_, Some(c)) => Some(c.pid),
        (Scope::Pid(pid), None) => Some(*pid),
        _ => None,
    };
    // Labelled as the user named it (`/usr/bin/redis-server`, not the file the link leads to).
    let binary = target.program().path.display().to_string();
    let scope_pid = if matches!(target.scope, Scope::AllProcesses) { None } else { pid };
    let labels: Vec<(String, String)> = target.selection.iter().map(|s| s.label()).collect();
    let outputs = outputs::build::<T>(options, &job.measured, &binary, scope_pid, &labels)?;
    let slots = job.measured.len() as u32;
    let costs = CostPlan::choose(&job.shapes, T::PROGRAMS, job.filter.is_empty() && cgroup == 0, slots)?;
    let all_sites: Vec<Site> = job.sites.iter().chain(costs.sites()).cloned().collect();
    let (event_config, event_sources) = event_settings(job.events.as_ref(), slots);
    let config = |programs| LoadConfig {
        programs,
        slots,
        keying: job.keying,
        filter: job.filter,
        calibration_slots: costs.slots(),
        unit_ns: job.unit.map_or(1, |u| u.ns()),
        cgroup,
        events: event_config,
        event_sources: event_sources.clone(),
        event_buffer: event_buffer_bytes(job.events.as_ref()),
    };
    let strategy = kernel.strategy();
    warn_of_slow_detach(&kernel, strategy, job.sites.len());
    interrupt::install()?;
    let sleepable = T::PROGRAMS.with_sleepable_entries().filter(|_| job.reads_memory && kernel.use_sleepable());
    let session = load(&all_sites, T::PROGRAMS, sleepable, config, strategy, &kernel)?;
    Ok(Prepared { job, child, pid, outputs, session, costs, strategy })
}

/// A run whose probes are live (or that was interrupted while attaching) and whose command
/// runs.
struct Tracing<T> {
    job: Job,
    child: Option<HeldChild>,
    pid: Option<i32>,
    session: Session,
    /// The calibration's own session, when it had one: removed with the trace's.
    calibration: Option<Session>,
    /// Measures the probes' cost again while the trace runs: the tables' resolution.
    cost_watch: Option<CostWatch>,
    feed: Feed<T>,
    /// The calls sent one by one, read on a thread of their own, and how they are printed.
    events: Option<(EventReader, EventFormat)>,
    runtime: tokio::runtime::Runtime,
}

/// Measures the probes' own cost, attaches the sites, says so and lets the command start.
fn attach<T: Measure>(prepared: Prepared<T>, options: &RunOptions) -> Result<Tracing<T>> {
    let Prepared { job, mut child, pid, outputs, mut session, costs, strategy } = prepared;
    // The probes' own cost, measured on probe's own functions, is known and set before any
    // site of the target is live.
    let calibrated = costs.run(&mut session, job.sites.len(), strategy)?;
    job.measured.iter().for_each(|m| m.resolution.settle(&calibrated.costs));
    if !interrupt::requested() {
        session.attach_sites(0..job.sites.len(), pid)?;
    }
    crate::session::warm_up::stop();
    if child.is_some() && interrupt::requested() {
        // Never start the command half traced; dropping the held child ends it unstarted.
        let removal = finish_detach(session, calibrated.apart)?;
        return Err(user(format!("Ctrl-C while attaching: the command was not started{removal}")));
    }
    // --by caller: return addresses are named from the processes' memory maps, read while
    // they run.
    let program = &job.target.program().source;
    let mut callers = [KEY_CALLER, KEY_STACK].contains(&job.keying.by_key).then(|| Callers::new(program));
    if let (Some(callers), Some(pid), None) = (callers.as_mut(), pid, child.as_ref()) {
        // -p: the process may end as soon as the "tracing" line is out, before the loop's
        // first tick: its map is read before that line.
        callers.snapshot(pid as u32);
    }
    // After Ctrl-C while attaching there is no "tracing" line: the run ends at once.
    let mut cost_watch = None;
    if !interrupt::requested() {
        announce(&job.target, pid, &job.description, &job.sites, &calibrated.costs);
        let resolutions = job.measured.iter().map(|m| m.resolution.clone()).collect();
        cost_watch = calibrated.watch(&session, resolutions)?;
    }
    let calibration = calibrated.apart;
    let events = start_events(&mut session, &job, options);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut feed = Feed { started: Instant::now(), drained: Vec::new(), pending: Vec::new(), outputs, callers };
    // Released after that line, so it always comes before anything the command prints.
    if let Some(c) = child.as_mut() {
        c.release()?;
        // A command may be done before the first tick of the loop reads its map: read it now.
        feed.snapshot_after_exec(c.pid);
    }
    Ok(Tracing { job, child, pid, session, calibration, cost_watch, feed, events, runtime })
}

/// `--slower-than`/`--events`: the reader of the calls sent one by one, from now on.
fn start_events(session: &mut Session, job: &Job, options: &RunOptions) -> Option<(EventReader, EventFormat)> {
    let (maps, plan) = (session.take_events()?, job.events.as_ref()?);
    if plan.every_call {
        eprintln!(
            "probe: --events: every call goes through the ring buffer and becomes a line (a few \
             microseconds of probe's work each); calls it cannot take are counted as dropped; \
             --slower-than DURATION sends only the slow ones"
        );
    }
    let names: Vec<String> = job.measured.iter().map(|m| m.function.clone()).collect();
    let unit = job.unit.unwrap_or(crate::shared::Unit::Us);
    let format = EventFormat::new(options.json, unit, &names, plan, &job.target.program().source);
    Some((EventReader::start(maps, format.clone()), format))
}

impl<T: Measure> Tracing<T> {
    /// Feeds the outputs until the end (target exit, -d, Ctrl-C, SIGTERM), then the last
    /// drain: the events of the calls in the tables first, then the final tables. Returns
    /// whether the target exited.
    fn trace_until_done(&mut self, options: &RunOptions) -> Result<bool> {
        let Tracing { session, feed, events, pid, job, runtime, cost_watch, .. } = self;
        let refresh_requests = feed.outputs.iter_mut().find_map(|o| o.take_refresh_requests());
        runtime.block_on(async {
            feed.start()?;
            let target_exited = trace_until_done(session, *pid, options, feed, refresh_requests).await?;
            // The resolution is final before the final tables.
            if let Some(watch) = cost_watch.take() {
                watch.stop();
            }
            let last = session.drain_final().await?;
            // Every event of a call in the tables is printed before them, then what was dropped.
            if let Some((reader, format)) = events.take() {
                print_events_summary(reader, &format, job.measured.len() as u32)?;
            }
            feed.finish(last)?;
            anyhow::Ok(target_exited)
        })
    }

    /// Detaches, collects the command, and keeps serving the final numbers where an output
    /// outlives the target.
    fn finish(self, target_exited: bool, options: &RunOptions) -> Result<()> {
        let Tracing { child, session, calibration, feed, runtime, .. } = self;
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
}

/// The events' last lines: what was printed and, on stderr, what the ring buffer dropped.
fn print_events_summary(reader: EventReader, format: &EventFormat, slots: u32) -> Result<()> {
    let (printed, maps) = reader.finish()?;
    let dropped = maps.dropped(slots)?;
    let summary = format.summary(&printed, &dropped);
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, summary.as_bytes()).and_then(|_| std::io::Write::flush(&mut out));
    let lost: u64 = dropped.iter().sum();
    if lost > 0 {
        eprintln!(
            "probe: warning: {lost} events dropped: the ring buffer was full (the calls are in the tables); \
             a higher --slower-than sends fewer"
        );
    }
    Ok(())
}

/// The ring buffer of `--slower-than`/`--events`, in bytes (a power of two of pages). The
/// kernel maps all of it into probe at once, twice (a buffer that wraps reads as one piece), so
/// it is probe's memory from the start: `--events`, every call, 4 MiB (about 11,000 events of
/// 376 bytes between two reads of the user side, 50 ms apart); `--slower-than`, the slow ones,
/// 1 MiB (about 2,800).
fn event_buffer_bytes(events: Option<&EventsPlan>) -> u32 {
    match events {
        Some(plan) if plan.every_call => 4 << 20,
        _ => 1 << 20,
    }
}

/// The kernel's settings of the events, and each slot's sources (off without events).
fn event_settings(plan: Option<&EventsPlan>, slots: u32) -> (EventConfig, Vec<probe_ebpf::EventSources>) {
    let Some(plan) = plan else { return (EventConfig::OFF, Vec::new()) };
    let config = EventConfig {
        on: 1,
        args: plan.reads_args() as u32,
        min_ns: plan.min_ns,
        goid_offset: plan.goid_offset,
        slots,
        stack: plan.stack as u32,
        nargs: plan.slots.iter().map(|s| s.sources.nargs).max().unwrap_or(0),
        text: plan.slots.iter().fold(0, |text, s| text | s.sources.text),
    };
    (config, plan.slots.iter().map(|s| s.sources).collect())
}

/// Loads the programs: the `sleepable` ones when given, which may fault in the pages they
/// read; a kernel that has sleepable uprobes yet refuses them (say, one of their maps) gets
/// `programs`, and a warning that a page not yet touched then reads as unreadable.
fn load(
    sites: &[Site],
    programs: Programs,
    sleepable: Option<Programs>,
    config: impl Fn(Programs) -> LoadConfig,
    strategy: AttachStrategy,
    kernel: &Kernel,
) -> Result<Session> {
    let Some(sleepable) = sleepable else {
        return Session::load(sites, config(programs), strategy);
    };
    match Session::load(sites, config(sleepable), strategy) {
        Err(e) if !interrupt::requested() => {
            eprintln!(
                "probe: warning: Linux {} refused the sleepable programs ({e:#}); a value on a page the \
                 process has not touched yet is counted as unreadable",
                kernel.release
            );
            Session::load(sites, config(programs), strategy)
        }
        loaded => loaded,
    }
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
        (Scope::AllProcesses, _) => match &target.selection {
            Some(s) => {
                format!("every process of {} running {}", s.describe(), with_link_target(&target.program().path))
            }
            None => format!("every process running {}", with_link_target(&target.program().path)),
        },
        (_, Some(pid)) => format!("pid {pid}"),
        _ => unreachable!(),
    };
    eprintln!(
        "probe: tracing {description} in {whom} ({}{}); Ctrl-C to end",
        describe_costs(sites),
        describe_calibration(costs)
    );
}

/// `/usr/bin/redis-server (/usr/bin/redis-check-rdb)`: a path that is a symlink, with the file
/// it leads to (the one probed).
fn with_link_target(path: &std::path::Path) -> String {
    match std::fs::canonicalize(path) {
        Ok(real) if path.is_symlink() || real.file_name() != path.file_name() => {
            format!("{} ({})", path.display(), real.display())
        }
        _ => path.display().to_string(),
    }
}

/// `"; probe cost 0.62us per traced call subtracted, more from calls that make traced calls,
/// resolution 0.05us"`, per shape in use (`/` between them), or nothing without calibration. The figure is what a call's own probes
/// cost; a summary's (per call of its function) adds the probes of the traced calls inside it.
fn describe_calibration(costs: &[ShapeCost]) -> String {
    if costs.is_empty() {
        return String::new();
    }
    let each = |ns: fn(&ShapeCost) -> u64| {
        costs.iter().map(|c| crate::shared::Unit::Us.format(ns(c))).collect::<Vec<_>>().join("/")
    };
    format!(
        "; probe cost {} per traced call subtracted, more from calls that make traced calls, resolution {}",
        each(|c| c.inside_ns),
        each(|c| c.inside_spread_ns)
    )
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

/// How many times (0.1 ms apart) a command's map is read after its exec until its program
/// shows: the kernel maps it within microseconds; only a command gone by then (its map
/// empty) makes probe wait them all, 10 ms.
const EXEC_MAP_TRIES: u32 = 100;

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

    /// Reads a command's memory map as soon as its program is mapped, if return addresses will
    /// need it. Its exec has closed the descriptors it kept (how `release` knows it happened)
    /// just before the kernel maps the program, and a short command can end before the loop's
    /// first tick: its stacks would be addresses. Its libraries come with the later ticks.
    fn snapshot_after_exec(&mut self, pid: i32) {
        let Some(callers) = self.callers.as_mut() else { return };
        for _ in 0..EXEC_MAP_TRIES {
            if callers.snapshot(pid as u32) {
                return;
            }
            std::thread::sleep(Duration::from_micros(100));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::fake::{calls, Calls};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// An output that writes down what it is given, in a log shared by every output.
    struct Recorder {
        name: &'static str,
        log: Rc<RefCell<Vec<String>>>,
    }

    fn counts(values: &[Calls]) -> Vec<u64> {
        values.iter().map(|c| c.0).collect()
    }

    impl Output<Calls> for Recorder {
        fn interval(&mut self, _elapsed_s: f64, values: &[Calls], totals: &[Calls]) -> Result<()> {
            let line = format!("{} interval {:?} totals {:?}", self.name, counts(values), counts(totals));
            self.log.borrow_mut().push(line);
            Ok(())
        }
        fn finish(&mut self, _elapsed_s: f64, last: &[Calls], totals: &[Calls]) -> Result<()> {
            let line = format!("{} finish {:?} totals {:?}", self.name, counts(last), counts(totals));
            self.log.borrow_mut().push(line);
            Ok(())
        }
        fn refresh(&mut self, totals: &[Calls]) -> Result<()> {
            self.log.borrow_mut().push(format!("{} refresh totals {:?}", self.name, counts(totals)));
            Ok(())
        }
    }

    fn feed(names: &[&'static str]) -> (Feed<Calls>, Rc<RefCell<Vec<String>>>) {
        let log = Rc::new(RefCell::new(Vec::new()));
        let outputs =
            names.iter().map(|&name| Box::new(Recorder { name, log: log.clone() }) as Box<dyn Output<Calls>>).collect();
        (Feed { started: Instant::now(), drained: Vec::new(), pending: Vec::new(), outputs, callers: None }, log)
    }

    #[test]
    fn every_output_gets_each_interval_in_order_and_the_totals_add_up() {
        let (mut feed, log) = feed(&["terminal", "metrics"]);
        feed.interval(calls(&[1, 2])).unwrap();
        feed.interval(calls(&[3, 0])).unwrap();
        feed.finish(calls(&[1, 1])).unwrap();
        assert_eq!(
            *log.borrow(),
            [
                "terminal interval [1, 2] totals [1, 2]",
                "metrics interval [1, 2] totals [1, 2]",
                "terminal interval [3, 0] totals [4, 2]",
                "metrics interval [3, 0] totals [4, 2]",
                "terminal finish [1, 1] totals [5, 3]",
                "metrics finish [1, 1] totals [5, 3]",
            ]
        );
    }

    #[test]
    fn values_drained_for_a_scrape_join_the_next_interval_once() {
        let (mut feed, log) = feed(&["metrics"]);
        feed.interval(calls(&[1])).unwrap();
        feed.refresh(calls(&[2])).unwrap();
        feed.refresh(calls(&[1])).unwrap();
        feed.interval(calls(&[5])).unwrap();
        feed.refresh(calls(&[4])).unwrap();
        feed.finish(calls(&[0])).unwrap();
        // 1 + (2 + 1 + 5) + (4 + 0): every call once, in an interval or the last table.
        assert_eq!(
            *log.borrow(),
            [
                "metrics interval [1] totals [1]",
                "metrics refresh totals [3]",
                "metrics refresh totals [4]",
                "metrics interval [8] totals [9]",
                "metrics refresh totals [13]",
                "metrics finish [4] totals [13]",
            ]
        );
    }

    #[test]
    fn a_run_without_intervals_ends_with_one_table_of_everything() {
        let (mut feed, log) = feed(&["terminal"]);
        feed.finish(calls(&[7, 0, 2])).unwrap();
        assert_eq!(*log.borrow(), ["terminal finish [7, 0, 2] totals [7, 0, 2]"]);
    }
}
