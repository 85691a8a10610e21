//! `probe latency`: how long functions take, with percentiles, never crashing a Go program.
use crate::cli::LatencyArgs;
use crate::error::user;
use crate::filter::{self, FilterFor, FilterParams};
use crate::measure::breakdown::{Breakdown, By, BY_MAX_KEYS, DEFAULT_TOP_KEYS};
use crate::options::RunOptions;
use crate::outputs::terminal::name_a_few;
use crate::plan::{self, LatencyPlan};
use crate::session::Keying;
use crate::target::{is_glob, Chosen, Target, MAX_FUNCTIONS};
use crate::trace::{self, Job};
use anyhow::Result;
use probe_ebpf::{Filter, LatencyStats};

pub fn run(args: &LatencyArgs) -> Result<()> {
    let options = RunOptions::check(&args.output, args.hdr_log.clone())?;
    let mut target = Target::resolve(&args.target)?;
    let mut chosen = Vec::new();
    for query in &args.func {
        let found = target.choose(query)?;
        if is_glob(query) {
            eprintln!("probe: {} function{} match {query}", found.len(), if found.len() == 1 { "" } else { "s" });
        }
        for c in found {
            let duplicate = chosen.iter().any(|d: &Chosen| d.file == c.file && d.function.addr == c.function.addr);
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
    let filter = match &args.filter {
        Some(expr) => {
            let functions = chosen.iter().map(|c| (target.file(c.file), &c.function)).collect();
            filter::parse(expr, FilterFor::Latency, &FilterParams::new(functions))?
        }
        None => Filter::NONE,
    };
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
            LatencyPlan::Skip { function, reason } => skipped.push((reason, function)),
        }
    }
    if slots.is_empty() {
        let (reason, function) = skipped.first().cloned().unwrap_or_default();
        return Err(user(format!("nothing to measure: {function} has {reason}; pick another function")));
    }
    for warning in skip_warnings(skipped) {
        eprintln!("probe: warning: {warning}");
    }
    let names: Vec<&str> = slots.iter().take(5).map(|m| m.function.as_str()).collect();
    let more = if slots.len() > 5 { format!(" and {} more", slots.len() - 5) } else { String::new() };
    let description = format!("latency of {}{more}", names.join(", "));
    let keying = Keying { max_keys: BY_MAX_KEYS, by_key: args.by.map_or(0, By::key_kind) };
    if args.by.is_some() {
        let top = options.top.unwrap_or(DEFAULT_TOP_KEYS);
        slots.iter_mut().for_each(|m| m.top_values = top);
    }
    let job = Job { target, sites, measured: slots, description, shapes, keying, filter };
    match args.by {
        Some(_) => trace::run::<Breakdown<LatencyStats>>(job, &options),
        None => trace::run::<LatencyStats>(job, &options),
    }
}

/// One line per reason, naming a few of the functions skipped for it.
fn skip_warnings(mut skipped: Vec<(&'static str, String)>) -> Vec<String> {
    skipped.sort_by_key(|s| s.0); // stable: functions stay in their order
    skipped
        .chunk_by(|a, b| a.0 == b.0)
        .map(|group| match group {
            [(reason, function)] => format!("{function} has {reason}; not measured"),
            _ => {
                let names: Vec<&str> = group.iter().map(|s| s.1.as_str()).collect();
                format!("{} functions have {}, not measured: {}", group.len(), group[0].0, name_a_few(&names, 3))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::skip_warnings;

    #[test]
    fn skips_are_one_line_per_reason() {
        let no_ret = "no RET instruction (it only tail-calls or never returns)";
        let skipped = vec![(no_ret, "a".to_string()), ("size 0", "z".to_string()), (no_ret, "b".to_string())]
            .into_iter()
            .chain((0..5).map(|i| (no_ret, format!("f{i}"))))
            .collect();
        assert_eq!(
            skip_warnings(skipped),
            vec![
                format!("7 functions have {no_ret}, not measured: a, b, f0 and 4 more"),
                "z has size 0; not measured".to_string(),
            ]
        );
    }
}
