//! `probe argdist`: the distribution of an integer argument or return value of one function, as
//! a log2 histogram or (`--count`) calls per exact value.
use crate::abi::Abi;
use crate::cli::{ArgSpec, ArgdistArgs};
use crate::error::user;
use crate::filter::{self, FilterFor, FilterParams};
use crate::measure::breakdown::{Breakdown, By, BY_MAX_KEYS};
use crate::measure::counts::ValueCounts;
use crate::options::RunOptions;
use crate::plan::{self, Value};
use crate::session::Keying;
use crate::target::params::Measure;
use crate::target::params::{self, Selection};
use crate::target::{Chosen, Target};
use crate::trace::{self, Job};
use anyhow::Result;
use probe_ebpf::{Filter, ValueSource, ValueStats, Width};

/// The value slot argdist aggregates into (one function, one value).
const SLOT: u32 = 0;

/// A declared parameter or result: its value, or with --count a string's bytes. A Go string is
/// otherwise its length; `--string` on anything else is refused.
fn declared_value(measure: Measure, label: String, result: bool, args: &ArgdistArgs) -> Result<Value> {
    let name = label.strip_prefix("len(").and_then(|l| l.strip_suffix(')')).unwrap_or(&label).to_string();
    match measure.text {
        Some(text) if args.count => Ok(Value::Declared { source: text, width: Width::W64, label: name, result }),
        Some(ValueSource::CString { .. }) if args.string => Err(user(format!(
            "--arg {name} --string: a C string's length is not in a register; add --count to count its contents"
        ))),
        None if args.string => {
            Err(user(format!("--string: {name} is not a string (probe list --params shows its type)")))
        }
        _ => Ok(Value::Declared { source: measure.source, width: measure.width, label, result }),
    }
}

/// `--arg N --string`: a Go string is two register words (pointer, length); a C string is a
/// pointer, and only its bytes can be counted (its length is nowhere without reading it).
fn string_value(target: &Target, chosen: &Chosen, n: u32, count: bool) -> Result<Value> {
    let abi = Abi::of(target.file(chosen.file), &chosen.function.name);
    match abi {
        Abi::GoRegister => Ok(Value::Text { ptr: n, len: Some(n + 1) }),
        Abi::SystemV if count => Ok(Value::Text { ptr: n, len: None }),
        Abi::SystemV => Err(user(format!(
            "--arg {n} --string: a C string's length is not in a register; add --count to count its contents"
        ))),
        Abi::GoStack => Err(user(format!(
            "--arg {n} --string: {} passes strings on the stack ({abi}); measure the length word --arg {} instead",
            chosen.function.name,
            n + 1
        ))),
    }
}

/// Rows of a `--count` table without --top.
const DEFAULT_TOP_VALUES: usize = 20;

pub fn run(args: &ArgdistArgs) -> Result<()> {
    if args.hdr_log.is_some() {
        return Err(user(
            "--hdr-log records latencies: HdrHistogram cannot hold argdist's negative values; use --json for argdist",
        ));
    }
    let options = RunOptions::check(&args.output, None)?;
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
        Selection::Declared { measure, label, result } => (declared_value(measure, label, result, args)?, None),
        Selection::Words { note } => match &args.arg {
            Some(ArgSpec::Position(n)) if args.string => (string_value(&target, chosen, *n, args.count)?, Some(note)),
            Some(ArgSpec::Position(n)) => (Value::Arg(*n), Some(note)),
            _ => (Value::Ret, Some(note)),
        },
    };
    let at_return = matches!(value, Value::Ret | Value::Declared { result: true, .. });
    let mut plan = plan::value_plan(binary, &chosen.function, value, SLOT)?;
    let filter = match &args.filter {
        Some(expr) => {
            let params = FilterParams::new(vec![(binary, &chosen.function)]);
            filter::parse(expr, FilterFor::Argdist { at_return }, &params)?
        }
        None => Filter::NONE,
    };
    // Said once the plan holds: an error is one line, with nothing before it.
    if let Some(note) = note {
        eprintln!("probe: {note}");
    }
    let description = format!("{} {} ({})", plan.measured.function, plan.measured.what, plan.abi);
    plan.measured.top_values = options.top.unwrap_or(DEFAULT_TOP_VALUES);
    let job = Job {
        target,
        sites: plan.sites,
        measured: vec![plan.measured],
        description,
        shapes: Vec::new(),
        keying: Keying {
            max_keys: if args.by.is_some() { BY_MAX_KEYS } else { args.max_values },
            by_key: args.by.map_or(0, By::key_kind),
        },
        filter,
    };
    // The same sites whatever the kind: it decides which programs and map they feed.
    match (args.count, args.by) {
        (true, _) => trace::run::<ValueCounts>(job, &options),
        (false, Some(_)) => trace::run::<Breakdown<ValueStats>>(job, &options),
        (false, None) => trace::run::<ValueStats>(job, &options),
    }
}
