//! `probe latency`: how long functions take, with percentiles, never crashing a Go program.
use crate::cli::LatencyArgs;
use crate::error::user;
use crate::plan::{self, LatencyPlan};
use crate::target::{find_function, Target};
use crate::trace::{self, Job};
use anyhow::Result;
use probe_ebpf::LatencyStats;

pub fn run(args: &LatencyArgs) -> Result<()> {
    let target = Target::resolve(&args.target)?;
    let mut functions = Vec::new();
    for query in &args.func {
        let f = find_function(&target.binary, query)?.clone();
        if !functions.contains(&f) {
            functions.push(f);
        }
    }
    let (mut sites, mut slots) = (Vec::new(), Vec::new());
    for function in &functions {
        let slot = slots.len() as u32;
        match plan::latency_plan(&target.binary, function, slot, args.exit, args.unit)? {
            LatencyPlan::Sites { measured, sites: s } => {
                sites.extend(s);
                slots.push(measured);
            }
            LatencyPlan::Skip(warning) => eprintln!("probe: warning: {warning}"),
        }
    }
    if slots.is_empty() {
        return Err(user("no function left to measure; pick functions that return"));
    }
    let names: Vec<&str> = slots.iter().map(|m| m.function.as_str()).collect();
    let description = format!("latency of {}", names.join(", "));
    let job = Job { target, sites, slots, description, unit_ns: args.unit.ns() };
    trace::run::<LatencyStats>(job, &args.output)
}
