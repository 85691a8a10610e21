//! `probe argdist`: the distribution of an integer argument or return value of one function.
use crate::cli::{ArgSpec, ArgdistArgs};
use crate::error::user;
use crate::plan::{self, Value};
use crate::target::params::{self, Selection};
use crate::target::Target;
use crate::trace::{self, Job};
use anyhow::Result;
use probe_ebpf::ValueStats;

/// The value slot argdist aggregates into (one function, one value).
const SLOT: u32 = 0;

pub fn run(args: &ArgdistArgs) -> Result<()> {
    if args.hdr_log.is_some() {
        return Err(user(
            "--hdr-log records latencies: HdrHistogram cannot hold argdist's negative values; use --json for argdist",
        ));
    }
    let mut target = Target::resolve(&args.target)?;
    let chosen = target.choose(&args.func)?;
    let [chosen] = chosen.as_slice() else {
        let names: Vec<&str> = chosen.iter().take(10).map(|c| c.function.name.as_str()).collect();
        return Err(user(format!(
            "--func {}: argdist measures one function but {} match ({}); give one name",
            args.func,
            chosen.len(),
            names.join(", ")
        )));
    };
    let binary = target.file(chosen.file);
    let (value, note) = match params::select(binary, &chosen.function, args.arg.as_ref(), args.ret)? {
        Selection::Declared { measure, label, result } => {
            (Value::Declared { source: measure.source, width: measure.width, label, result }, None)
        }
        Selection::Words { note } => match &args.arg {
            Some(ArgSpec::Position(n)) => (Value::Arg(*n), Some(note)),
            _ => (Value::Ret, Some(note)),
        },
    };
    let plan = plan::value_plan(binary, &chosen.function, value, SLOT)?;
    // Said once the plan holds: an error is one line, with nothing before it.
    if let Some(note) = note {
        eprintln!("probe: {note}");
    }
    let description = format!("{} {} ({})", plan.measured.function, plan.measured.what, plan.abi);
    let job =
        Job { target, sites: plan.sites, slots: vec![plan.measured], description, unit_ns: 1, shapes: Vec::new() };
    trace::run::<ValueStats>(job, &args.output)
}
