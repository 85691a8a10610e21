//! Command-line interface (clap). One struct per command; shared target and output options.
use clap::{Args, Parser, Subcommand};
use crate::histogram::Unit;
use crate::plan::ExitMode;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "probe",
    version,
    about = "Function latency and argument distributions for running Go, C, C++ and Rust programs",
    after_help = "Run `probe <command> --help` for the options of each command."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Latency histogram and percentiles of functions (Go-safe: no uretprobes on Go code)
    Latency(LatencyArgs),
    /// Distribution of an integer argument or of the return value of a function
    Argdist(ArgdistArgs),
    /// The functions probe can trace in a binary or library (name, address, size, RETs, ABI)
    List(ListArgs),
    /// What this kernel offers probe, the attach strategy it picks, and a self-test
    Doctor,
    /// Print a shell completion script, e.g. `probe completions bash > /etc/bash_completion.d/probe`
    Completions(CompletionsArgs),
    /// Print the man page of probe, or of one command (probe-latency(1), ...), in roff
    Man(ManArgs),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The command whose page to print (latency, argdist, list, ...); none: probe(1)
    pub command: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Program or shared library
    pub binary: PathBuf,
    /// Only functions matching this glob (`*`, `?`), e.g. 'main.*'
    pub glob: Option<String>,
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LatencyArgs {
    /// Function to time (repeat for several): exact symbol name or a unique suffix after a `.`
    #[arg(long, value_name = "FUNC", required = true)]
    pub func: Vec<String>,
    /// Unit of the table and summary
    #[arg(long, value_enum, default_value = "us")]
    pub unit: Unit,
    /// How returns are observed: auto = RET probes for Go, uretprobes otherwise
    #[arg(long, value_enum, default_value = "auto")]
    pub exit: ExitMode,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct ArgdistArgs {
    /// Function: exact symbol name, or a unique suffix after a `.` (`ToString` finds `main.ToString`)
    #[arg(long, value_name = "FUNC")]
    pub func: String,
    /// Measure the N-th integer argument (0-based) in the function's calling convention
    #[arg(long, value_name = "N", required_unless_present = "ret", conflicts_with = "ret")]
    pub arg: Option<u32>,
    /// Measure the return value
    #[arg(long)]
    pub ret: bool,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// Launch this command (split like a shell would), trace it from its first instruction until it exits
    #[arg(short = 'c', long = "command", value_name = "CMD ARGS")]
    pub command: Option<String>,
    /// Trace one running process
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pid: Option<i32>,
    /// Trace every process running this file, already running or started later
    #[arg(value_name = "BINARY")]
    pub binary: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Stop after this many seconds
    #[arg(short = 'd', long = "duration", value_name = "SECS", value_parser = positive_secs)]
    pub duration: Option<f64>,
    /// Print a timestamped table every SECS seconds (values of that interval)
    #[arg(short = 'i', long = "interval", value_name = "SECS", value_parser = positive_secs)]
    pub interval: Option<f64>,
    /// One JSON object per table on stdout instead of text (always every table)
    #[arg(long)]
    pub json: bool,
    /// With several functions: also print the tables of functions never called (by default
    /// left out and named in one line)
    #[arg(long)]
    pub all: bool,
    /// With several functions: print only the N tables with the most total time (latency)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub top: Option<u32>,
    /// Write each interval's latencies (ns) to FILE in HdrHistogram's interval log format
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Write a heatmap of the values over time (x: -i intervals, y: log2 buckets) as SVG
    #[arg(long, value_name = "FILE.svg")]
    pub heatmap: Option<PathBuf>,
    /// Write a bar chart of the final histogram as SVG
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Serve the run's totals at http://ADDR/metrics for Prometheus (e.g. 127.0.0.1:9464);
    /// probe keeps serving after the target exits, until Ctrl-C, SIGTERM or -d
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v < 1e9 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}
