//! Sections 4 and 5: probe and bpftrace on 1, ~100 and ~1000 functions at once (attach, detach,
//! per-call overhead), and the CPU time of probe's drain meanwhile.
use super::measure::{attached_probes, exit_timeout, start_workload, workload_result, Sample};
use super::probe_json::{parse_lines, ListedFunction};
use super::workloads::{probe_args, Bench, Lang, Tracer};
use anyhow::{bail, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole bench should end within this: a scale run predicted to end later is skipped.
const TOTAL_BUDGET: Duration = Duration::from_secs(15 * 60);
/// Assumed per-probe detach time until a scale run has measured it.
const DETACH_GUESS: Duration = Duration::from_millis(150);
/// How long a scale run's workload runs, and its probe's CPU time (the drain) is sampled.
pub const SCALE_WINDOW: Duration = Duration::from_secs(5);
/// Globs over the big Go workload's functions for the scale runs: ~100 and ~1000 functions
/// (`fmt.*` is only ~60 functions in this binary).
const GLOB_100: &str = "encoding/json.*";
pub const GLOB_1000: &str = "net/http.*";
pub const DRAIN_TARGET_PERCENT: f64 = 1.0;

/// One scale run: a tool on main.Work plus every function a glob matches in the Go workload.
pub struct ScaleRun {
    pub label: String,
    pub tracer: Tracer,
    pub glob: Option<&'static str>,
}

impl ScaleRun {
    pub fn is_probe(&self) -> bool {
        matches!(self.tracer, Tracer::Probe(_))
    }
}

/// probe on 1, ~100 and ~1000 functions, each with `-i 1` so the run also measures the drain;
/// bpftrace on the ~100 for comparison (entry uprobes only: it has no Go-safe exit probes).
pub fn scale_runs() -> Vec<ScaleRun> {
    let probe = |glob: Option<&'static str>| {
        let mut args = vec!["latency", "--func", "main.Work"];
        args.extend(glob.map(|g| ["--func", g]).into_iter().flatten());
        args.extend(["-i", "1"]);
        let label = format!("probe {}", args.iter().map(|a| quoted(a)).collect::<Vec<_>>().join(" "));
        ScaleRun { label, tracer: probe_args(&args), glob }
    };
    vec![
        probe(None),
        probe(Some(GLOB_100)),
        ScaleRun {
            label: format!("bpftrace `uprobe:main.Work,uprobe:{GLOB_100} {{}}`"),
            tracer: Tracer::Bpftrace(format!("uprobe:$BIN:main.Work,uprobe:$BIN:{GLOB_100} {{}}")),
            glob: Some(GLOB_100),
        },
        probe(Some(GLOB_1000)),
        // bpftrace 0.23 (Debian 13) attaches a wildcard with one uprobe_multi link, as probe does.
        ScaleRun {
            label: format!("bpftrace 0.23 `uprobe:main.Work,uprobe:{GLOB_100} {{}}`"),
            tracer: Tracer::BpftraceChroot(format!("uprobe:$BIN:main.Work,uprobe:$BIN:{GLOB_100} {{}}")),
            glob: Some(GLOB_100),
        },
        ScaleRun {
            label: format!("bpftrace 0.23 `uprobe:main.Work,uprobe:{GLOB_1000} {{}}`"),
            tracer: Tracer::BpftraceChroot(format!("uprobe:$BIN:main.Work,uprobe:$BIN:{GLOB_1000} {{}}")),
            glob: Some(GLOB_1000),
        },
    ]
}

pub fn quoted(arg: &str) -> String {
    if arg.contains(['*', '?', ' ']) {
        format!("'{arg}'")
    } else {
        arg.to_string()
    }
}

/// Runs each scale run once, skipping one that would end past TOTAL_BUDGET.
pub fn measure_scale(bench: &Bench, runs: &[ScaleRun], started: Instant) -> Vec<Result<Sample, String>> {
    // Per tool: probe's uprobe_multi links detach in one go, bpftrace 0.17's probes one by one.
    let mut detach_per_probe = [DETACH_GUESS; 3];
    let mut samples = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let tool = match run.tracer {
            Tracer::Probe(_) => 0,
            Tracer::BpftraceChroot(_) => 2,
            _ => 1,
        };
        let sample = within_budget(bench, run, detach_per_probe[tool], started)
            .and_then(|()| scale_once(bench, run, i))
            .map_err(|e| format!("{e:#}"));
        match &sample {
            Ok(s) => {
                if let (Some(detached), Some(probes)) = (s.detached, s.probes.filter(|&p| p > 0)) {
                    detach_per_probe[tool] = detached / probes as u32;
                }
                eprintln!(
                    "bench: scale {:<62} {:>9.1} ns/call, {} probes, detach {:.1} s",
                    run.label,
                    s.ns_per_call,
                    s.probes.unwrap_or(0),
                    s.detached.unwrap_or_default().as_secs_f64()
                );
            }
            Err(e) => eprintln!("bench: scale {:<62} failed: {e}", run.label),
        }
        samples.push(sample);
    }
    samples
}

/// Fails (the run is skipped) if attaching, tracing and detaching this run's probes, at the
/// per-probe detach time seen so far, would end the bench past TOTAL_BUDGET.
fn within_budget(bench: &Bench, run: &ScaleRun, detach_per_probe: Duration, started: Instant) -> Result<()> {
    // Best effort: without a probe count from `probe list`, run anyway.
    let Ok(probes) = planned_probes(bench, run) else { return Ok(()) };
    let predicted = SCALE_WINDOW + Duration::from_secs(5) + detach_per_probe * probes as u32;
    if started.elapsed() + predicted > TOTAL_BUDGET {
        bail!(
            "skipped: its ~{probes} probes would take ~{:.0} s to detach at {:.0} ms per probe, \
             past the bench's {:.0} s budget",
            (detach_per_probe * probes as u32).as_secs_f64(),
            detach_per_probe.as_secs_f64() * 1e3,
            TOTAL_BUDGET.as_secs_f64()
        );
    }
    Ok(())
}

/// The probes a scale run will attach: probe's go on each function's entry and every RET
/// (functions without a RET are skipped), bpftrace's on entries only. main.Work has one RET.
fn planned_probes(bench: &Bench, run: &ScaleRun) -> Result<u64> {
    let listed = match run.glob {
        Some(glob) => listed_functions(bench, glob)?,
        None => Vec::new(),
    };
    Ok(probes_for(run.is_probe(), &listed))
}

/// main.Work's probes plus those of the `listed` functions, for probe or for bpftrace.
fn probes_for(is_probe: bool, listed: &[ListedFunction]) -> u64 {
    let (work, per_function): (u64, fn(u64) -> u64) =
        if is_probe { (2, |rets| if rets > 0 { 1 + rets } else { 0 }) } else { (1, |_| 1) };
    work + listed.iter().map(|f| per_function(f.rets.unwrap_or(0))).sum::<u64>()
}

/// The Go workload's functions that `glob` matches, from `probe list --json`.
fn listed_functions(bench: &Bench, glob: &str) -> Result<Vec<ListedFunction>> {
    let out = Command::new(&bench.probe)
        .args(["list", "--json"])
        .arg(bench.workloads.path(Lang::Go))
        .arg(glob)
        .stderr(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("probe list failed");
    }
    parse_lines(String::from_utf8_lossy(&out.stdout).lines())
}

/// Attaches, runs the Go workload for SCALE_WINDOW while sampling the tool's CPU time (its
/// drain: probe prints a table every second), then detaches.
fn scale_once(bench: &Bench, run: &ScaleRun, index: usize) -> Result<Sample> {
    let copy = match (&run.tracer, &bench.trixie) {
        (Tracer::BpftraceChroot(_), Some(root)) => {
            bench.private_copy_in(&root.join("tmp"), Lang::Go, &format!("scale-{index}"))?
        }
        _ => bench.private_copy(Lang::Go, &format!("scale-{index}"))?,
    };
    let mut tool = bench.start_tracer(&run.tracer, &copy.0)?;
    let probes = match run.tracer {
        // bpftrace 0.23 says "Attaching 3 probes" for BEGIN and two wildcards: count the
        // functions its wildcards cover (one entry probe each) as probe would.
        Tracer::BpftraceChroot(_) => planned_probes(bench, run).ok(),
        _ => attached_probes(&tool.proc.lines()),
    };
    // A little longer than the window, so the window sees the workload running throughout.
    let seconds = (SCALE_WINDOW + Duration::from_millis(500)).as_secs_f64().to_string();
    let workload = start_workload(&copy.0, vec!["-seconds".into(), seconds])?;
    let cpu_percent = tool.proc.cpu_percent_over(SCALE_WINDOW)?;
    let ns_per_call = workload_result(workload)?;
    let peak_rss_kib = tool.proc.peak_rss_kib().ok();
    let detached = tool.proc.interrupt_and_wait(exit_timeout(probes))?;
    // Every run traces main.Work too, and for probe every function its glob matches (what
    // `probe list GLOB` lists); bpftrace puts one probe on each function.
    let functions = match (run.is_probe(), run.glob) {
        (true, Some(glob)) => Some(listed_functions(bench, glob)?.len() as u64 + 1),
        (true, None) => Some(1),
        (false, _) => Some(probes.unwrap_or(0)),
    };
    Ok(Sample {
        ns_per_call,
        attached: Some(tool.attached),
        detached: Some(detached),
        peak_rss_kib,
        functions,
        probes,
        cpu_percent: Some(cpu_percent),
        ..Sample::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_plans_an_entry_and_each_ret_and_bpftrace_an_entry() {
        let listed: Vec<ListedFunction> = [Some(1), Some(3), Some(0), None]
            .map(|rets| ListedFunction { rets, entry: String::new(), entry_moved: false })
            .into();
        // main.Work: entry + 1 RET; then 2 + 4, and nothing for the functions without a RET.
        assert_eq!(probes_for(true, &listed), 2 + 2 + 4);
        assert_eq!(probes_for(false, &listed), 1 + 4);
        assert_eq!(probes_for(true, &[]), 2);
        assert_eq!(probes_for(false, &[]), 1);
    }
}
