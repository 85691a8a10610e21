//! Sections 1-3: each row's repetitions (per-call overhead, start-up, memory), and whole runs on
//! a 1-call target.
use super::probe_json::{final_table, final_tables};
use super::proc::Proc;
use super::workloads::{Bench, Lang, Row, Tracer};
use anyhow::{anyhow, Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const REPS: usize = 5;
/// Calls per traced run. A probe hit costs 5-13 us in this VM, so a run traces for 0.5-3 s.
pub const TRACED_CALLS: u64 = 100_000;
/// Calls per untraced run: a call costs about 1 ns, so this many give a stable figure.
pub const UNTRACED_CALLS: u64 = 20_000_000;
/// No repetition starts after this much time (5 take about 150 s), leaving time for the rest.
const REPS_BUDGET: Duration = Duration::from_secs(5 * 60);
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Exit after SIGINT: this, plus DETACH_ALLOWANCE per attached probe.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Generous next to the ~0.11 s per uprobe that this kernel takes to detach.
const DETACH_ALLOWANCE: Duration = Duration::from_millis(300);

/// One repetition of one row.
#[derive(Default)]
pub struct Sample {
    pub ns_per_call: f64,
    pub announced: Option<Duration>,
    pub attached: Option<Duration>,
    /// SIGINT to the tool's exit.
    pub detached: Option<Duration>,
    pub peak_rss_kib: Option<u64>,
    /// Functions traced (scale runs: main.Work and what the glob matched) and attach sites.
    pub functions: Option<u64>,
    pub probes: Option<u64>,
    /// The tool's CPU time as a share of one core while tracing (scale runs).
    pub cpu_percent: Option<f64>,
    /// Something odd that does not void the numbers, e.g. a count that differs from the calls.
    pub warning: Option<String>,
}

/// Per row, its repetitions' samples or why each failed.
pub type Samples = Vec<Vec<Result<Sample, String>>>;

pub fn measure_rows(bench: &Bench, rows: &[Row], started: Instant) -> Samples {
    let mut samples: Samples = rows.iter().map(|_| Vec::new()).collect();
    for rep in 0..REPS {
        if rep > 0 && started.elapsed() > REPS_BUDGET {
            eprintln!("bench: time budget reached, stopping after {rep} repetitions");
            break;
        }
        for (row, out) in rows.iter().zip(&mut samples) {
            let sample = measure_row(bench, row, rep).map_err(|e| format!("{e:#}"));
            match &sample {
                Ok(s) => eprintln!(
                    "bench: rep {}/{REPS} {:<3} {:<58} {:>9.1} ns/call",
                    rep + 1,
                    row.lang.name(),
                    row.label,
                    s.ns_per_call
                ),
                Err(e) => {
                    eprintln!("bench: rep {}/{REPS} {:<3} {:<58} failed: {e}", rep + 1, row.lang.name(), row.label)
                }
            }
            out.push(sample);
        }
    }
    samples
}

fn measure_row(bench: &Bench, row: &Row, rep: usize) -> Result<Sample> {
    let copy = bench.private_copy(row.lang, &format!("{:?}-{:?}-{rep}", row.lang, row.id).replace(['(', ')'], ""))?;
    if let Tracer::Untraced = row.tracer {
        let ns_per_call = run_workload(&copy.0, row.lang, UNTRACED_CALLS)?;
        return Ok(Sample { ns_per_call, ..Sample::default() });
    }
    let mut tool = bench.start_tracer(&row.tracer, &copy.0)?;
    let ns_per_call = run_workload(&copy.0, row.lang, TRACED_CALLS)?;
    // Read before SIGINT: the peak while tracing, not while printing the tables at exit.
    let peak_rss_kib = tool.proc.peak_rss_kib().ok();
    let probes = attached_probes(&tool.proc.lines());
    let detached = tool.proc.interrupt_and_wait(exit_timeout(probes))?;
    let transcript = tool.proc.lines();
    let warning = match (probe_count(&transcript, row.lang.func()), &row.tracer) {
        (Some(n), _) if n != TRACED_CALLS => Some(format!("probe counted {n} of {TRACED_CALLS} calls")),
        (None, Tracer::Probe(_)) => Some(format!("probe printed no final JSON table for {}", row.lang.func())),
        _ => None,
    };
    Ok(Sample {
        ns_per_call,
        announced: tool.announced,
        attached: Some(tool.attached),
        detached: Some(detached),
        peak_rss_kib,
        probes,
        warning,
        ..Sample::default()
    })
}

/// Runs a workload to its end and returns the ns per call that it measured itself.
fn run_workload(binary: &Path, lang: Lang, calls: u64) -> Result<f64> {
    workload_result(start_workload(binary, lang.workload_args(calls))?)
}

pub fn start_workload(binary: &Path, args: Vec<String>) -> Result<Proc> {
    Proc::spawn("workload", Command::new(binary).args(args))
}

/// Waits for the workload's end and reads the ns per call that it measured itself.
pub fn workload_result(mut proc: Proc) -> Result<f64> {
    proc.run_to_end(WORKLOAD_TIMEOUT)?;
    let line = proc.lines().into_iter().find_map(|l| l.strip_prefix("ns_per_call:").map(str::to_owned));
    let line = line.ok_or_else(|| anyhow!("workload printed no `ns_per_call:` line{}", proc.tail()))?;
    line.trim().parse().with_context(|| format!("workload's ns_per_call `{line}`"))
}

/// The count in probe's final JSON table for `func`; None for bpftrace (no JSON tables).
fn probe_count(lines: &[String], func: &str) -> Option<u64> {
    let tables = final_tables(lines.iter().map(String::as_str)).ok()?;
    final_table(&tables, func).ok().map(|t| t.count)
}

/// N from probe's `probe: tracing ... (N probes); Ctrl-C to end` line (the line whose time is
/// the attach time; probe reports its probe count nowhere else), or from bpftrace's
/// `Attaching N probes...` line less the BEGIN probe that the bench adds.
pub fn attached_probes(lines: &[String]) -> Option<u64> {
    if let Some(line) = lines.iter().find(|l| l.starts_with("probe: tracing")) {
        let inside = &line[line.rfind('(')? + 1..];
        return inside.split_whitespace().next()?.parse().ok();
    }
    let line = lines.iter().find(|l| l.starts_with("Attaching "))?;
    let n: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(n.saturating_sub(1))
}

/// Wall time of whole runs on a 1-call C target (`-c 'cbench 1'`): probe's and bpftrace's.
pub struct OneCallRuns {
    pub probe: Vec<Result<f64, String>>,
    pub bpftrace: Vec<Result<f64, String>>,
}

pub fn measure_one_call_runs(bench: &Bench) -> OneCallRuns {
    let mut runs = OneCallRuns { probe: Vec::new(), bpftrace: Vec::new() };
    for rep in 0..REPS {
        let probe = one_call_run(bench, rep, |bin| {
            let mut cmd = Command::new(&bench.probe);
            cmd.args(["argdist", "--func", "work", "--arg", "0", "-c", &format!("{bin} 1")]);
            cmd
        });
        let bpftrace = one_call_run(bench, rep, |bin| {
            let mut cmd = Command::new("bpftrace");
            cmd.args(["-e", &format!("uprobe:{bin}:work {{ @h = hist(arg0); }}"), "-c", &format!("{bin} 1")]);
            cmd
        });
        for (name, r) in [("probe", &probe), ("bpftrace", &bpftrace)] {
            match r {
                Ok(ms) => eprintln!("bench: rep {}/{REPS} 1-call run, {name}: {ms:.0} ms", rep + 1),
                Err(e) => eprintln!("bench: rep {}/{REPS} 1-call run, {name}: failed: {e}", rep + 1),
            }
        }
        runs.probe.push(probe);
        runs.bpftrace.push(bpftrace);
    }
    runs
}

/// Milliseconds from starting the tool to its exit.
fn one_call_run(bench: &Bench, rep: usize, command: impl Fn(&str) -> Command) -> Result<f64, String> {
    let run = || -> Result<f64> {
        let copy = bench.private_copy(Lang::C, &format!("one-call-{rep}"))?;
        let mut proc = Proc::spawn("tool", &mut command(&copy.0.display().to_string()))?;
        Ok(proc.run_to_end(WORKLOAD_TIMEOUT)?.as_secs_f64() * 1e3)
    };
    run().map_err(|e| format!("{e:#}"))
}

/// How long to wait for a tool to exit after SIGINT: detaching takes time per probe.
pub fn exit_timeout(probes: Option<u64>) -> Duration {
    EXIT_TIMEOUT + DETACH_ALLOWANCE * probes.unwrap_or(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn reads_probe_s_count_and_probes() {
        let out = lines(
            "probe: 126 functions match encoding/json.*\n\
             probe: tracing latency of 127 functions in every process running /x (390 probes); Ctrl-C to end\n\
             {\"kind\":\"final\",\"elapsed_s\":2.5,\"function\":\"main.Work\",\"measured\":\"ret\",\"unit\":\"us\",\
             \"count\":100000,\"sum\":1200000,\"percentiles\":{\"p50\":11.5}}\n\
             {\"kind\":\"final\",\"elapsed_s\":2.5,\"function\":\"work\",\"measured\":\"arg0\",\"unit\":\"value\",\
             \"count\":7,\"sum\":7,\"min\":0,\"max\":2,\"unreadable\":0,\"buckets\":[]}",
        );
        assert_eq!(attached_probes(&out), Some(390));
        assert_eq!(probe_count(&out, "main.Work"), Some(100000));
        assert_eq!(probe_count(&out, "work"), Some(7));
        assert_eq!(probe_count(&out, "other"), None);
        assert_eq!(attached_probes(&lines("noise\nAttaching 128 probes...")), Some(127));
        assert_eq!(probe_count(&lines("noise\nAttaching 128 probes..."), "work"), None);
    }
}
