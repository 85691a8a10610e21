//! `probe argdist`: the distribution of an integer argument or return value of one function.
use crate::cli::ArgdistArgs;
use crate::plan::{self, Value};
use crate::target::{find_function, Target};
use crate::trace::{self, Job};
use anyhow::Result;
use probe_ebpf::ValueStats;

/// The value slot argdist aggregates into (one function, one value).
const SLOT: u32 = 0;

pub fn run(args: &ArgdistArgs) -> Result<()> {
    let target = Target::resolve(&args.target)?;
    let function = find_function(&target.binary, &args.func)?.clone();
    let value = match args.arg {
        Some(n) => Value::Arg(n),
        None => Value::Ret,
    };
    let plan = plan::value_plan(&target.binary, &function, value, SLOT)?;
    let description = format!("{} {} ({})", plan.measured.function, plan.measured.what, plan.abi);
    let job = Job { target, sites: plan.sites, slots: vec![plan.measured], description, unit_ns: 1 };
    trace::run::<ValueStats>(job, &args.output)
}
