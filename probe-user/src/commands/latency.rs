//! `probe latency`: how long functions take, with percentiles, never crashing a Go program.
use crate::cli::LatencyArgs;
use crate::error::user;
use crate::filter::{self, FilterFor, FilterParams};
use crate::measure::breakdown::Breakdown;
use crate::options::RunOptions;
use crate::plan::events::EventsAsk;
use crate::plan::{self, LatencyAsk};
use crate::resolve::Target;
use crate::trace;
use anyhow::Result;
use probe_ebpf::{Filter, LatencyStats};

pub fn run(args: &LatencyArgs) -> Result<()> {
    let options = RunOptions::check(&args.output, args.hdr_log.clone())?;
    options.check_stack_outputs(args.by == Some(crate::shared::By::Stack))?;
    crate::session::warm_up::start();
    let mut target = Target::resolve(&args.target.spec(&args.select))?;
    let chosen = target.choose_all(&args.func)?;
    let filter = match &args.filter {
        Some(expr) => {
            let functions = chosen.iter().map(|(c, _)| (target.file(c.file), &c.function)).collect();
            filter::parse(expr, FilterFor::Latency, &FilterParams::new(functions))?
        }
        None => Filter::NONE,
    };
    let events = events_ask(args)?;
    let ask =
        LatencyAsk { exit: args.exit, unit: args.unit, raw: args.raw, by: args.by, top: options.top, filter, events };
    let job = plan::latency_job(target, &chosen, ask)?;
    match args.by {
        Some(_) => trace::run::<Breakdown<LatencyStats>>(job, &options),
        None => trace::run::<LatencyStats>(job, &options),
    }
}

/// `--slower-than`/`--events` and what each printed call shows; `--arg`/`--ret` alone are
/// refused (they name what an event shows).
fn events_ask(args: &LatencyArgs) -> Result<Option<EventsAsk>> {
    let (min_ns, every_call) = match (args.slower_than, args.events) {
        // Strictly slower: the kernel sends calls of at least `min_ns`.
        (Some(ns), _) => (ns + 1, false),
        (None, true) => (0, true),
        (None, false) => {
            if let Some(spec) = args.args.first() {
                let name = match spec {
                    crate::shared::ArgSpec::Position(n) => n.to_string(),
                    crate::shared::ArgSpec::Name(name) => name.clone(),
                };
                return Err(user(format!(
                    "--arg {name}: names what each printed call shows; add --slower-than DURATION or --events \
                     (argdist --arg gives its distribution)"
                )));
            }
            if args.ret.is_some() {
                return Err(user(
                    "--ret: shows the result of each printed call; add --slower-than DURATION or --events \
                     (argdist --ret gives its distribution)",
                ));
            }
            if args.stack {
                return Err(user(
                    "--stack: shows the stack of each printed call; add --slower-than DURATION or --events \
                     (--by stack gives a table per stack)",
                ));
            }
            return Ok(None);
        }
    };
    Ok(Some(EventsAsk { min_ns, every_call, args: args.args.clone(), ret: args.ret, stack: args.stack }))
}
