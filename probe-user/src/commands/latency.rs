//! `probe latency`: how long functions take, with percentiles, never crashing a Go program.
use crate::cli::LatencyArgs;
use crate::filter::{self, FilterFor, FilterParams};
use crate::measure::breakdown::Breakdown;
use crate::options::RunOptions;
use crate::plan::{self, LatencyAsk};
use crate::resolve::Target;
use crate::trace;
use anyhow::Result;
use probe_ebpf::{Filter, LatencyStats};

pub fn run(args: &LatencyArgs) -> Result<()> {
    let options = RunOptions::check(&args.output, args.hdr_log.clone())?;
    options.check_stack_outputs(args.by == Some(crate::shared::By::Stack))?;
    let mut target = Target::resolve(&args.target.spec(&args.select))?;
    let chosen = target.choose_all(&args.func)?;
    let filter = match &args.filter {
        Some(expr) => {
            let functions = chosen.iter().map(|(c, _)| (target.file(c.file), &c.function)).collect();
            filter::parse(expr, FilterFor::Latency, &FilterParams::new(functions))?
        }
        None => Filter::NONE,
    };
    let ask = LatencyAsk { exit: args.exit, unit: args.unit, raw: args.raw, by: args.by, top: options.top, filter };
    let job = plan::latency_job(target, &chosen, ask)?;
    match args.by {
        Some(_) => trace::run::<Breakdown<LatencyStats>>(job, &options),
        None => trace::run::<LatencyStats>(job, &options),
    }
}
