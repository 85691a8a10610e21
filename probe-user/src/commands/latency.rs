//! `probe latency`: how long functions take, with percentiles, never crashing a Go program.
use crate::cli::LatencyArgs;
use crate::error::user;
use crate::plan::{self, LatencyPlan};
use crate::target::{is_glob, Target, MAX_FUNCTIONS};
use crate::trace::{self, Job};
use anyhow::Result;
use probe_ebpf::LatencyStats;

pub fn run(args: &LatencyArgs) -> Result<()> {
    let mut target = Target::resolve(&args.target)?;
    let mut chosen = Vec::new();
    for query in &args.func {
        let found = target.choose(query)?;
        if is_glob(query) {
            eprintln!("probe: {} function{} match {query}", found.len(), if found.len() == 1 { "" } else { "s" });
        }
        for c in found {
            let duplicate = chosen.iter().any(|d: &crate::target::Chosen| {
                d.file == c.file && d.function.addr == c.function.addr
            });
            if !duplicate {
                chosen.push(c);
            }
        }
    }
    if chosen.len() > MAX_FUNCTIONS {
        return Err(user(format!(
            "{} functions selected, more than the {MAX_FUNCTIONS} probe traces at once; narrow the patterns",
            chosen.len()
        )));
    }
    let (mut sites, mut slots, mut skipped, mut shapes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in &chosen {
        let slot = slots.len() as u32;
        match plan::latency_plan(target.file(c.file), &c.function, slot, args.exit, args.unit)? {
            LatencyPlan::Sites { measured, sites: s, shape, warning } => {
                if let Some(warning) = warning {
                    eprintln!("probe: warning: {warning}");
                }
                sites.extend(s);
                slots.push(measured);
                if !args.raw && !shapes.contains(&shape) {
                    shapes.push(shape);
                }
            }
            LatencyPlan::Skip(reason) => skipped.push(reason),
        }
    }
    if slots.is_empty() {
        let reason = skipped.first().cloned().unwrap_or_default();
        return Err(user(format!("nothing to measure: {reason}; pick another function")));
    }
    for reason in skipped {
        eprintln!("probe: warning: {reason}; not measured");
    }
    let names: Vec<&str> = slots.iter().take(5).map(|m| m.function.as_str()).collect();
    let more = if slots.len() > 5 { format!(" and {} more", slots.len() - 5) } else { String::new() };
    let description = format!("latency of {}{more}", names.join(", "));
    let job = Job { target, sites, slots, description, unit_ns: args.unit.ns(), shapes };
    let output = crate::cli::OutputArgs { hdr_log: args.hdr_log.clone(), ..args.output.clone() };
    trace::run::<LatencyStats>(job, &output)
}
