//! `probe doctor`: what this kernel offers, the attach strategy probe will use, and a real
//! self-test: probe attaches to a function of its own binary, calls it, and checks the count.
use crate::calibrate;
use crate::features::{AttachStrategy, Kernel};
use crate::plan::Keying;
use crate::plan::{self, Value};
use crate::resolve::{elf::Binary, find_function};
use crate::session::Aggregate;
use crate::session::{self, LoadConfig, Session};
use crate::shared::Unit;
use anyhow::{bail, Context, Result};
use probe_ebpf::{Filter, SpanShape, ValueStats};
use std::path::Path;

/// Calls the self-test makes; the values are 1..=CALLS.
const CALLS: i64 = 100;

pub fn run() -> Result<()> {
    println!("probe {}", env!("CARGO_PKG_VERSION"));
    let kernel = Kernel::detect();
    println!("kernel: Linux {}", kernel.release);
    // Without privileges, what is found by loading a BPF program cannot be seen: not "no".
    let privileged = session::privileged();
    for f in kernel.all_features() {
        let mark = match (f.present, f.seen_with_bpf && !privileged) {
            (_, true) => " ? ",
            (true, false) => "yes",
            (false, false) => "no ",
        };
        println!("  [{mark}] {:<28} (Linux {}): {}", f.name, f.since, f.role);
    }
    if !privileged {
        println!("  [ ? ]: not known without root: only root (or CAP_BPF) may load the BPF program that finds it");
    }
    session::ensure_privileges()?;
    kernel.ensure_supported()?;
    let strategy = kernel.strategy();
    println!("attach strategy: {}", describe(strategy));
    let (count, sum) = self_test(strategy)?;
    let expected_sum = CALLS * (CALLS + 1) / 2;
    if count != CALLS as u64 || sum != expected_sum as i128 {
        bail!("self-test: {CALLS} calls with values 1..={CALLS} were seen as count {count}, sum {sum}");
    }
    println!("self-test: {CALLS} calls traced, {count} counted, values sum {sum}: ok");
    println!("probe costs on this kernel (calibrated now; latency subtracts them, --raw does not):");
    let calibrated = calibrate::measure(&SpanShape::ALL, strategy)?;
    for c in calibrated.costs {
        let entry = if c.shape.entry_stepped { "single-stepped entry" } else { "emulated entry" };
        let exit = if c.shape.uretprobe { "uretprobe" } else { "RET probe" };
        let exit = if c.shape.go { format!("{exit} (Go)") } else { exit.to_string() };
        println!(
            "  {:<44} {:>8} inside each call (spread {}), {:>8} per call to its callers (spread {})",
            format!("{entry} + {exit}:"),
            Unit::Us.format(c.inside_ns),
            Unit::Us.format(c.inside_spread_ns),
            Unit::Us.format(c.hit_ns),
            Unit::Us.format(c.hit_spread_ns)
        );
    }
    Ok(())
}

fn describe(strategy: AttachStrategy) -> &'static str {
    match strategy {
        AttachStrategy::MultiLink => "one program per kind, one uprobe_multi link per file, a BPF cookie per site",
        AttachStrategy::Cookies => {
            "one program per kind, a BPF cookie per site (no uprobe_multi link, or PROBE_ATTACH=cookies)"
        }
        AttachStrategy::ProgramPerSite => "one program copy per site (no BPF cookies, or PROBE_ATTACH=per-site)",
    }
}

/// The function the self-test traces: not inlined, its argument used so it is kept.
#[no_mangle]
#[inline(never)]
pub extern "C" fn probe_doctor_self_test(value: i64) -> i64 {
    std::hint::black_box(value)
}

/// Traces arg0 of `probe_doctor_self_test` in this process while calling it CALLS times.
fn self_test(strategy: AttachStrategy) -> Result<(u64, i128)> {
    let exe = std::fs::read_link("/proc/self/exe").context("finding probe's own binary")?;
    let binary = Binary::open(Path::new(&exe))?;
    let function = find_function(&binary, "probe_doctor_self_test")?;
    let plan = plan::value_plan(&binary, function, Value::Arg(0), 0, &Default::default())?;
    let config = LoadConfig {
        programs: ValueStats::PROGRAMS,
        slots: 1,
        keying: Keying::default(),
        filter: Filter::NONE,
        calibration_slots: 0,
        unit_ns: 1,
        cgroup: 0,
        events: probe_ebpf::EventConfig::OFF,
        event_sources: Vec::new(),
        event_buffer: 0,
    };
    let pid = std::process::id() as i32;
    let mut session = Session::attach(&plan.sites, Some(pid), config, strategy)?;
    for v in 1..=CALLS {
        probe_doctor_self_test(std::hint::black_box(v));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stats: Vec<ValueStats> = runtime.block_on(session.drain_final())?;
    session.detach();
    let s = stats.first().context("self-test slot")?;
    Ok((s.count, s.sum()))
}
