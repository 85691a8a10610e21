//! `cargo xtask bench`: what tracing with probe costs on this machine, next to bpftrace.
//!
//!   1. per-call overhead on a traced Go and C loop (traced minus untraced ns per call), also as a
//!      ratio to the empty-uprobe floor (the kernel's trap, which no tool can avoid);
//!   2. start-up: tool start to probes attached, and a whole `-c` run on a 1-call target;
//!   3. peak RSS of the tool while tracing;
//!   4. scale: 1, ~100 and ~1000 Go functions at once (attach, detach, per-call overhead);
//!   5. drain: the CPU the probe process itself uses with `-i 1` (measured in the scale runs);
//!   6. accuracy: corrected latency against functions that time themselves (accuracy.rs);
//!   7. programs nobody here wrote: single-stepped entries, Redis's requests/s (real.rs);
//!
//! and, after memory (3b), a big stripped Go program (Debian's /usr/bin/prometheus, 63k
//! functions): `probe list` time and peak RSS, and peak RSS tracing 20 functions in it.
//!
//! The rows of 1-3 are the median of REPS repetitions, run interleaved (repetition 1 of every
//! row, then repetition 2, ...) so that drift in this VM's speed spreads over all rows instead of
//! biasing one. The scale runs run once each: without a uprobe_multi link the kernel takes ~0.1 s
//! per uprobe to detach here, so ~1000 functions (~2800 probes) take minutes. Numbers are reported, never
//! asserted: the targets are printed next to them.
//! A row that fails shows `n/a (reason)` and the bench goes on. The report is printed and
//! written to bench/RESULTS.md.
//!
//! One file per part: workloads.rs (what runs and what traces it), measure.rs (sections 1-3),
//! scale.rs (4 and 5), big_go.rs (3b), accuracy.rs (6), proc.rs (child processes), stats.rs,
//! report.rs and table.rs (the markdown), probe_json.rs (probe's `--json` output, read with serde).
mod accuracy;
mod big_go;
mod measure;
mod probe_json;
mod proc;
mod real;
mod report;
mod scale;
mod stats;
mod table;
mod workloads;

use crate::{build, root};
use anyhow::{bail, Context, Result};
use big_go::measure_big_go;
use measure::{measure_one_call_runs, measure_rows};
use proc::first_line;
use report::{Machine, Report};
use scale::{measure_scale, scale_runs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use workloads::{rows, Bench, Workloads};

#[derive(clap::Args)]
pub struct Options {
    /// Leave out section 4's scale runs: hundreds of probes, which on kernels without
    /// uprobe_multi take minutes to detach and slow every other uprobe user of the host meanwhile
    #[arg(long)]
    no_scale: bool,
}

pub fn run(options: &Options) -> Result<()> {
    let with_scale = !options.no_scale;
    let started = Instant::now();
    let probe = build(&["bench"])?;
    require_bpftrace()?;
    let bench = Bench { probe, trixie: trixie_root(), workloads: Workloads::build()?, scratch: fresh_scratch_dir()? };
    let rows = rows();
    let samples = measure_rows(&bench, &rows, started);
    let one_call = measure_one_call_runs(&bench);
    let accuracy = accuracy::measure(&bench.probe, &accuracy::targets()?);
    let scale_runs = if with_scale { scale_runs() } else { Vec::new() };
    let scale = measure_scale(&bench, &scale_runs, started);
    let big = measure_big_go(&bench);
    let real = real::measure_real(&bench);
    let mut machine = Machine::describe(started);
    if let Some(root) = &bench.trixie {
        machine.bpftrace = format!("{}; {} in a Debian 13 chroot", machine.bpftrace, trixie_bpftrace_version(root));
    }
    let report =
        Report { machine, rows: &rows, samples, one_call, accuracy, scale_runs: &scale_runs, scale, big, real }
            .render();
    let _ = std::fs::remove_dir_all(&bench.scratch);

    println!("{report}");
    let out = root().join("bench/RESULTS.md");
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("bench: wrote {} after {:.0} s", out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Where the Debian 13 chroot is: $PROBE_BENCH_TRIXIE, else ~/.cache/probe/trixie. Made with
/// `debootstrap --variant=minbase --include=bpftrace trixie DIR`. bpftrace runs chrooted there and
/// must see the traced binary as the same file, so the workloads are copied into DIR/tmp.
fn trixie_root() -> Option<PathBuf> {
    let dir = std::env::var_os("PROBE_BENCH_TRIXIE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/probe/trixie")))?;
    dir.join("usr/bin/bpftrace").exists().then_some(dir)
}

/// `bpftrace --version` inside the chroot.
fn trixie_bpftrace_version(root: &Path) -> String {
    first_line("chroot", &[&root.display().to_string(), "bpftrace", "--version"])
}

fn require_bpftrace() -> Result<()> {
    let out = Command::new("bpftrace").arg("--version").output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!("bpftrace is needed for the comparison rows (scripts/setup.sh installs it)"),
    }
}

/// Private copies of the workloads live here; emptied first, in case a killed run left some.
fn fresh_scratch_dir() -> Result<PathBuf> {
    let dir = root().join("target/bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
