//! Section 7 of the bench: programs nobody here wrote. How many functions' entry
//! probes the kernel would single-step (`probe list --json`), at the function's first
//! instruction and where probe places them, and what a value histogram of a hot C function
//! costs a real server: Redis's requests/s (redis-benchmark) untraced, under
//! `probe argdist --func zmalloc --arg 0 -p PID` and under bpftrace's `hist(arg0)` at
//! zmalloc's first instruction, interleaved.
use super::measure::EXIT_TIMEOUT;
use super::probe_json::{parse_lines, ListedFunction};
use super::proc::Proc;
use super::stats::{summarize, Measured};
use super::table::{na, stat_cell, Table};
use super::workloads::{Bench, ATTACH_TIMEOUT};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Programs from Debian's packages (scripts/setup.sh installs them for the bench).
pub const PROGRAMS: &[&str] = &["/usr/bin/prometheus", "/usr/bin/caddy", "/usr/bin/redis-server"];
const REDIS_REPS: usize = 5;
const REDIS_PORT: &str = "16379";

pub struct Real {
    /// Per program: (functions, entries the kernel emulates, single-stepped, refused,
    /// emulated only because probe skipped the first instructions).
    pub entries: Vec<(&'static str, Result<[usize; 5], String>)>,
    /// Redis: SET and GET requests/s, untraced, under probe and under bpftrace.
    pub redis: [Vec<Result<f64, String>>; 6],
}

pub fn measure_real(bench: &Bench) -> Real {
    let entries = PROGRAMS.iter().map(|&p| (p, entry_counts(&bench.probe, p).map_err(|e| format!("{e:#}")))).collect();
    let mut redis: [Vec<Result<f64, String>>; 6] = Default::default();
    match Redis::start() {
        Ok(server) => {
            for _ in 0..REDIS_REPS {
                let untraced = requests_per_second();
                let traced = traced_requests_per_second(&bench.probe, server.pid());
                let bpftraced = bpftraced_requests_per_second(server.pid());
                for (i, r) in [untraced, traced, bpftraced].into_iter().enumerate() {
                    let (set, get) = match r {
                        Ok((s, g)) => (Ok(s), Ok(g)),
                        Err(e) => (Err(format!("{e:#}")), Err(format!("{e:#}"))),
                    };
                    redis[2 * i].push(set);
                    redis[2 * i + 1].push(get);
                }
            }
        }
        Err(e) => redis.iter_mut().for_each(|r| r.push(Err(format!("{e:#}")))),
    }
    eprintln!("bench: real programs measured");
    Real { entries, redis }
}

/// `probe list --json`: how many functions, and how the kernel handles each one's entry probe.
fn entry_counts(probe: &Path, program: &str) -> Result<[usize; 5]> {
    if !Path::new(program).exists() {
        bail!("{program} is not installed (scripts/setup.sh installs it)");
    }
    let out = Command::new(probe).args(["list", program, "--json"]).output().context("running probe list")?;
    if !out.status.success() {
        bail!("probe list {program} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let functions: Vec<ListedFunction> = parse_lines(String::from_utf8_lossy(&out.stdout).lines())?;
    let count = |entry: &str| functions.iter().filter(|f| f.entry == entry).count();
    let moved = functions.iter().filter(|f| f.entry_moved).count();
    Ok([functions.len(), count("emulated"), count("single-stepped"), count("refused"), moved])
}

/// A redis-server on 127.0.0.1, without persistence, ended when dropped.
struct Redis(Child);

impl Redis {
    fn start() -> Result<Redis> {
        let child = Command::new("redis-server")
            .args(["--port", REDIS_PORT, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (scripts/setup.sh installs it)")?;
        let redis = Redis(child);
        let started = Instant::now();
        while Command::new("redis-cli").args(["-p", REDIS_PORT, "ping"]).output().map_or(true, |o| !o.status.success())
        {
            if started.elapsed() > Duration::from_secs(5) {
                bail!("redis-server did not answer on port {REDIS_PORT}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(redis)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// redis-benchmark's SET and GET requests/s (50,000 requests each, 10 clients).
fn requests_per_second() -> Result<(f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args(["-p", REDIS_PORT, "-q", "-n", "50000", "-c", "10", "-t", "set,get"])
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let rate = |name: &str| -> Result<f64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}: ")) && l.contains("requests per second"))
            .with_context(|| format!("no {name} line from redis-benchmark"))?;
        Ok(line.split_whitespace().nth(1).context("rate")?.parse()?)
    };
    Ok((rate("SET")?, rate("GET")?))
}

/// The same under `probe argdist --func zmalloc --arg 0 -p PID`, attached first.
fn traced_requests_per_second(probe: &Path, pid: u32) -> Result<(f64, f64)> {
    let mut cmd = Command::new(probe);
    cmd.args(["argdist", "--func", "zmalloc", "--arg", "0", "-p", &pid.to_string()]);
    let mut proc = Proc::spawn("probe argdist", &mut cmd)?;
    proc.wait_for_line("the `probe: tracing` line", ATTACH_TIMEOUT, |l| l.starts_with("probe: tracing"))?;
    let rates = requests_per_second();
    proc.interrupt_and_wait(EXIT_TIMEOUT)?;
    rates
}

/// The same under bpftrace's histogram of zmalloc's first argument: its uprobe sits on the
/// first instruction, the `movabs` the kernel single-steps.
fn bpftraced_requests_per_second(pid: u32) -> Result<(f64, f64)> {
    let script = format!(
        "BEGIN {{ printf(\"{READY}\\n\"); }} uprobe:/usr/bin/redis-server:zmalloc /pid == {pid}/ {{ @ = hist(arg0); }}"
    );
    let mut cmd = Command::new("bpftrace");
    cmd.args(["-e", &script]);
    let mut proc = Proc::spawn("bpftrace", &mut cmd)?;
    proc.wait_for_line("its BEGIN probe", ATTACH_TIMEOUT, |l| l == READY)?;
    let rates = requests_per_second();
    proc.interrupt_and_wait(EXIT_TIMEOUT)?;
    rates
}

/// Printed by bpftrace's BEGIN probe, which fires once every probe is attached.
const READY: &str = "bench: attached";

impl Real {
    pub fn render(&self) -> String {
        let mut t = Table::new(&[
            "program",
            "functions",
            "entry emulated",
            "single-stepped",
            "refused",
            "of which emulated past the start",
            "single-stepped or refused at the first instruction",
            "single-stepped or refused where probe places it",
        ]);
        let share = |n: usize, all: usize| format!("{:.1}%", 100.0 * n as f64 / all.max(1) as f64);
        for (program, counts) in &self.entries {
            match counts {
                Ok([all, emulated, stepped, refused, moved]) => t.row(vec![
                    format!("`{program}`"),
                    all.to_string(),
                    emulated.to_string(),
                    stepped.to_string(),
                    refused.to_string(),
                    moved.to_string(),
                    share(stepped + refused + moved, *all),
                    share(stepped + refused, *all),
                ]),
                Err(e) => {
                    let mut row = vec![format!("`{program}`"), na(e)];
                    row.resize(8, String::new());
                    t.row(row)
                }
            }
        }
        let mut r = Table::new(&["Redis", "SET requests/s", "GET requests/s"]);
        let cell = |m: &Measured| stat_cell(m, |v| format!("{v:.0}"));
        for (label, set, get) in [
            ("untraced", &self.redis[0], &self.redis[1]),
            ("`probe argdist --func zmalloc --arg 0 -p PID`", &self.redis[2], &self.redis[3]),
            ("bpftrace `uprobe:...:zmalloc { @ = hist(arg0) }`", &self.redis[4], &self.redis[5]),
        ] {
            r.row(vec![label.to_string(), cell(&summarize(set.clone())), cell(&summarize(get.clone()))]);
        }
        format!(
            "## 7. Programs nobody here wrote\n\n\
             Entry probes as `probe list --json` places them: the kernel emulates a few \
             instructions (jmp, call, jcc, nop, push) and single-steps the rest, several \
             microseconds more per call here. A probe at a function's first instruction (where \
             bpftrace's `uprobe:BIN:FUNC` puts it) is single-stepped where the functions `emulated past the start` begin with an \
             instruction the kernel steps (`movabs`, `mov`, `xor`, `lea`, ...) that changes \
             nothing probe reads: probe's entry is the first emulated instruction after it.\n\n{}\n\
             Redis (Debian's redis-server on 127.0.0.1, no persistence): redis-benchmark \
             `-n 50000 -c 10 -t set,get`, untraced and traced, interleaved, medians of \
             {REDIS_REPS} [min-max]. `zmalloc` starts `movabs $..,%rax; push %rbp`: probe's \
             entry is the emulated push; bpftrace's is the single-stepped `movabs`.\n\n{}\n",
            t.render(),
            r.render()
        )
    }
}
