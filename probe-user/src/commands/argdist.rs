//! `probe argdist`: the distribution of an integer argument or return value of one function, as
//! a log2 histogram or (`--count`) calls per exact value.
use crate::cli::ArgdistArgs;
use crate::error::user;
use crate::filter::{self, FilterFor, FilterParams};
use crate::measure::breakdown::Breakdown;
use crate::measure::counts::ValueCounts;
use crate::options::RunOptions;
use crate::plan::{self, ArgdistAsk, Value};
use crate::resolve::abi::Abi;
use crate::resolve::params::Reading;
use crate::resolve::params::{self, Selection};
use crate::resolve::{split_list, Chosen, Target};
use crate::shared::ArgSpec;
use crate::trace;
use anyhow::Result;
use probe_ebpf::{Filter, ValueSource, ValueStats, Width};

/// A declared parameter or result: its value, or with --count a string's bytes. A Go string is
/// otherwise its length; `--string` on anything else is refused.
fn declared_value(measure: Reading, label: String, result: bool, args: &ArgdistArgs) -> Result<Value> {
    let name = label.strip_prefix("len(").and_then(|l| l.strip_suffix(')')).unwrap_or(&label).to_string();
    if measure.pointer_to_strings && (args.count || args.string) {
        return Err(user(format!(
            "--arg {name}: {name} points to char pointers (char **), not to a string: its bytes are addresses; \
             --count reads the strings of a char * parameter"
        )));
    }
    match measure.text {
        Some(text) if args.count => Ok(Value::Declared { source: text, width: Width::W64, label: name, result }),
        Some(ValueSource::CString { .. } | ValueSource::Path { .. }) if args.string && !measure.length => {
            Err(user(format!(
                "--arg {name} --string: a C string's length is not in a register; add --count to count its contents"
            )))
        }
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

pub fn run(args: &ArgdistArgs) -> Result<()> {
    if args.hdr_log.is_some() {
        return Err(user(
            "--hdr-log records latencies: HdrHistogram cannot hold argdist's negative values; use --json for argdist",
        ));
    }
    let options = RunOptions::check(&args.output, None)?;
    options.check_stack_outputs(args.by == Some(crate::shared::By::Stack))?;
    crate::session::warm_up::start();
    let mut target = Target::resolve(&args.target.spec(&args.select))?;
    let chosen = target.choose(&args.func).map_err(|e| match split_list(&args.func) {
        Some(names) => user(format!(
            "--func {}: argdist measures one function, and this names {}; run one argdist for each",
            args.func,
            names.len()
        )),
        None => e,
    })?;
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
    let filter = match &args.filter {
        Some(expr) => {
            let params = FilterParams::new(vec![(binary, &chosen.function)]);
            filter::parse(expr, FilterFor::Argdist { at_return: value.at_return(), value: value.width() }, &params)?
        }
        None => Filter::NONE,
    };
    let ask =
        ArgdistAsk { count: args.count, max_values: args.max_values, by: args.by, top: options.top, filter, note };
    let job = plan::argdist_job(target, chosen, value, ask)?;
    // The same sites whatever the kind: it decides which programs and map they feed.
    match (args.count, args.by) {
        (true, _) => trace::run::<ValueCounts>(job, &options),
        (false, Some(_)) => trace::run::<Breakdown<ValueStats>>(job, &options),
        (false, None) => trace::run::<ValueStats>(job, &options),
    }
}
