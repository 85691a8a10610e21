//! Command-line interface (clap). One struct per command; shared target and output options.
pub mod usage_error;

use crate::shared::{ArgSpec, By, ExitMode, Process, TargetSpec, Unit, Within};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// How `--func` may name a function; the same text in `--help` and the man pages (a macro so
/// `concat!` can put it under each command's first line).
macro_rules! func_forms {
    () => {
        "Forms (quote anything with *, ? or ( for the shell):

Name or suffix: main.ToString, or a unique suffix starting after a `.`, `::` or `/` (ToString, \
Scaler::scale); Go's `.abi0` and C++ parameter lists may be left out.

Go methods: 'scrape.(*targetScraper).scrape', '(*targetScraper).scrape' or \
scrape.targetScraper.scrape; `(*T)` is literal, never a glob, and the package path may be left out.

Glob on the whole name: 'main.Using*', 'fmt.?print*': `*` any run of characters, `?` one; \
`\\*`, `\\?` and `\\\\` are a literal *, ? and backslash.

LIB:FUNC, a function of a shared library: c:malloc (c is libc, as in BCC), libc:malloc, \
libc.so.6:malloc, libsqlite3:sqlite3_step (as in bpftrace), /path/libfoo.so:foo. It is the library \
the program loads: with -c or BINARY found as the dynamic loader finds it, with -p the one mapped \
in the process.

A function the program imports (malloc) may also be named alone: it is found in the program's \
libraries the same way."
    };
}

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
    /// Program or shared library: a path, or a library's name (libc.so.6, libc, c, libsqlite3)
    pub binary: PathBuf,
    /// Only functions matching this glob (`*`, `?`; `(*` and `\\*` are literal), e.g. 'main.*'
    pub glob: Option<String>,
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
    /// Also show each function's parameters and results as declared (name, type, kind, where
    /// they are), from the debug information (DWARF) where the file has it
    #[arg(long)]
    pub params: bool,
    /// The fields a parameter, or a path into one, offers one level down (`r`, `r.URL`,
    /// `cfg->limits`), with their types: what `--arg PATH` can read. GLOB must name one function
    #[arg(long, value_name = "PATH")]
    pub fields: Option<String>,
}

/// latency's `--top` (the shared help speaks of argdist's `--count`).
const LATENCY_TOP_HELP: &str = "With several functions: print only the N tables with the most total time; with --by, \
                                also the N heaviest keys of each (default 20)";

#[derive(Args, Debug)]
#[command(mut_arg("top", |a| a.help(LATENCY_TOP_HELP)))]
pub struct LatencyArgs {
    /// Function to time (repeat for several): a name, a suffix, a glob or LIB:FUNC
    #[arg(long, value_name = "FUNC", required = true, long_help = FUNC_LONG_HELP_LATENCY)]
    pub func: Vec<String>,
    /// Unit of the table and summary
    #[arg(long, value_enum, default_value = "us")]
    pub unit: Unit,
    /// How returns are observed: auto = RET probes for Go, uretprobes otherwise
    #[arg(long, value_enum, default_value = "auto")]
    pub exit: ExitMode,
    /// Report durations as measured, without subtracting the probes' own cost (calibrated at
    /// start-up on this kernel) and with every digit, where corrected figures are printed no
    /// finer than the resolution the calibration gives (`p50:<0.6us`)
    #[arg(long)]
    pub raw: bool,
    /// One table per process, thread, thread name or calling function (the --top heaviest, 20
    /// by default)
    #[arg(long, value_enum, value_name = "KEY")]
    pub by: Option<By>,
    /// Aggregate only the calls for which EXPR holds, evaluated in the kernel: `COND && ...`
    /// (at most 4) with COND `argN|ret|value|pid|tid|latency OP NUMBER`, OP one of
    /// == != < <= > >=, e.g. 'arg1 > 100 && pid == 123' or 'latency > 1ms'
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Write each interval's latencies (ns) to FILE in HdrHistogram's interval log format
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Print each call slower than DURATION (1ms, 250us, 2s) as it returns: wall-clock time,
    /// pid, tid, goroutine, latency (corrected as in the tables), --arg and --ret values; decided
    /// in the kernel; the tables still count every call
    #[arg(long, value_name = "DURATION", value_parser = slower_than_ns, conflicts_with = "events")]
    pub slower_than: Option<u64>,
    /// Print every call as it returns, as --slower-than does the slow ones (each costs probe
    /// a ring buffer write and a line: calls the buffer cannot take are counted as dropped)
    #[arg(long)]
    pub events: bool,
    /// With --slower-than or --events: a parameter each printed call shows, by name or position
    /// as declared (repeat, up to 4), read as argdist reads it (a slice: its length; a string:
    /// its text, the first 64 bytes)
    #[arg(long = "arg", value_name = "N|NAME", allow_negative_numbers = true, value_parser = arg_spec)]
    pub args: Vec<ArgSpec>,
    /// With --slower-than or --events: also show the result; `--ret=N`: the N-th result
    #[arg(long, value_name = "N", num_args = 0..=1, require_equals = true, default_missing_value = "0")]
    pub ret: Option<u32>,
    /// With --slower-than or --events: also show each printed call's stack, walked by frame
    /// pointers as --by stack walks it (inlined Go calls expanded)
    #[arg(long)]
    pub stack: bool,
}

const FUNC_LONG_HELP_LATENCY: &str =
    concat!("Function to time; repeat for several (one table each). A glob times every match.\n\n", func_forms!());
const FUNC_LONG_HELP_ARGDIST: &str = concat!("The function (one: a glob must match exactly one).\n\n", func_forms!());

/// `argdist --count`: distinct values the kernel keeps per interval by default, and at most
/// (each costs the kernel about 100 bytes per CPU).
pub const DEFAULT_MAX_VALUES: u32 = 10_000;
pub const MAX_VALUES: u32 = 1_000_000;

#[derive(Args, Debug)]
pub struct ArgdistArgs {
    /// Function: a name, a suffix (`ToString` finds `main.ToString`), a glob or LIB:FUNC
    #[arg(long, value_name = "FUNC", long_help = FUNC_LONG_HELP_ARGDIST)]
    pub func: String,
    /// Measure a parameter: by its name (`number`), or by its position as declared (0-based, a
    /// method's receiver first), or a path into one (`r.URL.Path`, `cfg->limits.max`; `probe
    /// list BINARY FUNC --fields r` shows the fields). A string or slice (and a map a path ends
    /// at) is measured by its length. Without debug information (stripped C), N is the N-th
    /// integer argument register
    #[arg(
        long,
        value_name = "N|NAME",
        required_unless_present = "ret",
        conflicts_with = "ret",
        allow_negative_numbers = true,
        value_parser = arg_spec
    )]
    pub arg: Option<ArgSpec>,
    /// Measure the return value; `--ret=N`: the N-th result (Go functions can have several)
    #[arg(long, value_name = "N", num_args = 0..=1, require_equals = true, default_missing_value = "0")]
    pub ret: Option<u32>,
    /// Read --arg N as a string: a C `char *` (with --count), or a Go string (words N and N+1:
    /// its bytes with --count, else its length)
    #[arg(long, requires = "arg")]
    pub string: bool,
    /// Count calls per exact value (a `value count` table of the --top most frequent, 20 by
    /// default, and the rest summed) instead of a log2 histogram
    #[arg(long)]
    pub count: bool,
    /// With --count: distinct values kept per interval (calls with further values are counted
    /// as lost, never dropped silently)
    #[arg(long, value_name = "N", requires = "count", default_value_t = DEFAULT_MAX_VALUES,
          value_parser = clap::value_parser!(u32).range(1..=MAX_VALUES as i64))]
    pub max_values: u32,
    /// One table per process, thread, thread name or calling function (the --top heaviest, 20
    /// by default)
    #[arg(long, value_enum, value_name = "KEY", conflicts_with = "count")]
    pub by: Option<By>,
    /// Aggregate only the calls for which EXPR holds, evaluated in the kernel: `COND && ...`
    /// (at most 4) with COND `argN|ret|value|pid|tid|latency OP NUMBER`, OP one of
    /// == != < <= > >=, e.g. 'arg1 > 100 && pid == 123' or 'latency > 1ms'
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Accepted only to be refused with a clear message: argdist values can be negative, which
    /// an HdrHistogram cannot hold (hidden from --help, which lists what argdist does).
    #[arg(long, value_name = "FILE", hide = true)]
    pub hdr_log: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// Launch this command (split like a shell would), trace it from its first instruction until it exits
    #[arg(short = 'c', long = "command", value_name = "CMD ARGS")]
    pub command: Option<String>,
    /// Trace one running process: its PID, or its name as pidof finds it (one process only)
    #[arg(short = 'p', long = "pid", value_name = "PID|NAME", value_parser = process)]
    pub pid: Option<Process>,
    /// Trace every process running this file, already running or started later; a bare name
    /// that is no file here is looked up in PATH
    #[arg(value_name = "BINARY")]
    pub binary: Option<PathBuf>,
}

/// Which of the processes running BINARY are measured: those of one container or cgroup.
#[derive(Args, Debug, Clone, Default)]
pub struct SelectArgs {
    /// Measure only the processes of this running container (podman, Docker, containerd or
    /// CRI-O; by id, a unique id prefix, or a podman, CRI-O or Docker name), those it starts
    /// later included; BINARY is then the program's path inside the container
    #[arg(long, value_name = "ID|NAME", conflicts_with_all = ["cgroup", "command", "pid"])]
    pub container: Option<String>,
    /// Measure only the processes in this cgroup v2 or below it, those started later included:
    /// a directory of the v2 hierarchy (/sys/fs/cgroup/..., /sys/fs/cgroup/unified/... on hybrid
    /// systems) or the path /proc/PID/cgroup shows after `0::`; BINARY is read through the root
    /// of a process in it
    #[arg(long, value_name = "PATH", conflicts_with_all = ["command", "pid"])]
    pub cgroup: Option<PathBuf>,
}

impl SelectArgs {
    fn within(&self) -> Option<Within> {
        match (&self.container, &self.cgroup) {
            (Some(query), _) => Some(Within::Container(query.clone())),
            (None, Some(path)) => Some(Within::Cgroup(path.clone())),
            (None, None) => None,
        }
    }
}

impl TargetArgs {
    /// What to trace (clap requires exactly one of the three; `select` only with BINARY).
    pub fn spec(&self, select: &SelectArgs) -> TargetSpec {
        match (&self.command, &self.pid, &self.binary) {
            (Some(cmd), _, _) => TargetSpec::Command(cmd.clone()),
            (None, Some(process), _) => TargetSpec::Process(process.clone()),
            (None, None, given) => {
                TargetSpec::Binary { path: given.clone().expect("clap requires one target"), within: select.within() }
            }
        }
    }
}

/// `-p 1234` or `-p redis-server`; anything that looks like a number is one.
fn process(s: &str) -> Result<Process, String> {
    if s.is_empty() {
        return Err("give a PID or a process name".into());
    }
    if s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') {
        return s.parse::<i32>().map(Process::Pid).map_err(|_| format!("`{s}` is not a process id"));
    }
    Ok(Process::Name(s.to_string()))
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Stop after this long: seconds, or with a unit (500ms, 5s, 2m, 1h)
    #[arg(short = 'd', long = "duration", value_name = "SECS", value_parser = positive_secs)]
    pub duration: Option<f64>,
    /// Print a timestamped table every SECS seconds (values of that interval); units as for -d
    #[arg(short = 'i', long = "interval", value_name = "SECS", value_parser = positive_secs)]
    pub interval: Option<f64>,
    /// One JSON object per table instead of text (on stdout, or in the -o file)
    #[arg(long)]
    pub json: bool,
    /// Write probe's tables (text or --json) to FILE instead of stdout (created anew; an
    /// existing symlink or non-regular file is refused)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With several functions: also print the tables of functions never called (by default
    /// left out and named in one line)
    #[arg(long)]
    pub all: bool,
    /// With --count: the N most frequent values; with --by: the N heaviest keys (default 20)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub top: Option<u32>,
    /// Write a heatmap of the values over time (x: -i intervals, y: log2 buckets) as SVG
    #[arg(long, value_name = "FILE.svg")]
    pub heatmap: Option<PathBuf>,
    /// Write a bar chart of the final histogram as SVG
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// With --by stack: write the stacks folded (`outer;...;caller;func CALLS`, one per line)
    /// to FILE, or to stdout after the tables with `-`
    #[arg(long, value_name = "FILE")]
    pub folded: Option<PathBuf>,
    /// With --by stack: write a flame graph of the calls per stack as SVG (inferno)
    #[arg(long, value_name = "FILE.svg")]
    pub flamegraph: Option<PathBuf>,
    /// With --by stack: write a gzipped pprof profile (calls, and latency's time or argdist's
    /// sum per stack) for `go tool pprof`
    #[arg(long, value_name = "FILE")]
    pub pprof: Option<PathBuf>,
    /// Serve the run's totals at http://ADDR/metrics for Prometheus (e.g. 127.0.0.1:9464, or
    /// :9464 for every interface);
    /// probe keeps serving after the target exits, until Ctrl-C, SIGTERM or -d
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

/// Longest -d or -i accepted: about 31 years, far beyond any trace, well inside what timers hold.
const MAX_SECS: f64 = 1e9;

/// Seconds, or a number with a unit as `--filter` takes them (`500ms`, `5s`) and `m`, `h`.
fn positive_secs(s: &str) -> Result<f64, String> {
    let units = [("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
    let (number, per) = units
        .iter()
        .find_map(|&(unit, per)| {
            s.strip_suffix(unit).filter(|n| n.ends_with(|c: char| c.is_ascii_digit() || c == '.')).map(|n| (n, per))
        })
        .unwrap_or((s, 1.0));
    match number.parse::<f64>().map(|v| v * per) {
        Ok(v) if v > 0.0 && v.is_finite() && v < MAX_SECS => Ok(v),
        Ok(v) if v >= MAX_SECS => Err(format!("`{s}` seconds is longer than probe waits (less than 1e9 s)")),
        _ => Err(format!("`{s}` is not a positive duration: seconds, or a number with a unit (500ms, 5s, 2m, 1h)")),
    }
}

/// `--slower-than`: a duration with its unit (ns, us, ms, s), in nanoseconds; more than 0.
fn slower_than_ns(s: &str) -> Result<u64, String> {
    let bad =
        || format!("`{s}` is not a duration: a number with a unit (250us, 1.5ms, 2s); --events prints every call");
    let split = s.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let per = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return Err(bad()),
    };
    match number.parse::<f64>() {
        Ok(n) if n > 0.0 && n * per < 1e18 => Ok((n * per).round() as u64),
        _ => Err(bad()),
    }
}

/// `--arg N` or `--arg NAME` (SystemTap's `$NAME` too): negative numbers reach this parser
/// (instead of looking like an unknown option) so the message can say what an argument number is.
fn arg_spec(s: &str) -> Result<ArgSpec, String> {
    let name = s.strip_prefix('$').unwrap_or(s);
    // A path into the parameter too: `r.URL.Path`, `cfg->limits.max`.
    let is_name = name.replace("->", ".").split('.').all(|part| {
        part.starts_with(|c: char| c.is_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    });
    match s.parse::<u32>() {
        Ok(n) => Ok(ArgSpec::Position(n)),
        Err(_) if is_name => Ok(ArgSpec::Name(name.to_string())),
        Err(_) => Err(format!(
            "`{s}` is not an argument number (0 for the first, 1, 2, ...) nor a parameter name or a path into one \
             (`r.URL.Path`; `probe list BINARY --params` shows them)"
        )),
    }
}

/// An example: what it does, and the command line.
pub type Example = (&'static str, &'static str);

const SEED_ARGDIST: Example = (
    "The seed's value distribution: every argument of main.ToString, as SystemTap's @hist_log",
    "probe argdist --func ToString --arg 0 -c './tostring -rounds 1'",
);
const SEED_LATENCY: Example = (
    "The seed's latency without uretprobes (they crash Go programs): RET probes instead",
    "probe latency --func main.UsingSubstring -c './regex -seconds 5'",
);
const LIBRARY: Example = (
    "A library function, named as BCC (c:malloc) or bpftrace (libc:malloc) would, in one process",
    "probe argdist --func c:malloc --arg 0 -p $(pgrep -o sqlite3)",
);
const GLOB: Example = (
    "Every function matching a glob, one table each, for 10 seconds",
    "probe latency --func 'main.Using*' -d 10 ./regex",
);
const GO_METHOD: Example = (
    "A Go method with a pointer receiver, in every process running the file",
    "probe latency --func '(*targetScraper).scrape' /usr/bin/prometheus",
);
const SERVE: Example = (
    "Serve the totals to Prometheus while tracing",
    "probe latency --func Sleep2ms --serve 127.0.0.1:9464 -c './latency -mode sleep'",
);
const JSON_FILE: Example = (
    "JSON tables into a file (the command's own output stays on the terminal)",
    "probe latency --func main.UsingSubstring --json -o regex.json -c './regex -seconds 5'",
);
const LIST: Example = ("The functions of a library, and of a stripped Go program", "probe list libc.so.6 'mall*'");
const LIST_GO: Example = ("", "probe list /usr/bin/prometheus 'main.*'");

/// The EXAMPLES of a page: `probe(1)` shows the main scenarios, each command its own.
pub fn examples(command: Option<&str>) -> &'static [Example] {
    match command {
        None => &[SEED_ARGDIST, SEED_LATENCY, LIBRARY, GLOB, SERVE, LIST],
        Some("latency") => &[SEED_LATENCY, GLOB, GO_METHOD, LIBRARY, SERVE, JSON_FILE],
        Some("argdist") => &[SEED_ARGDIST, LIBRARY, SERVE],
        Some("list") => &[LIST, LIST_GO],
        Some(_) => &[],
    }
}

/// The command line's definition with each command's examples under its `--help` (the same
/// examples as its man page).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    let names: Vec<String> = cli.get_subcommands().map(|c| c.get_name().to_string()).collect();
    for name in names {
        let shown = examples(Some(&name));
        if shown.is_empty() {
            continue;
        }
        let mut text = String::from("Examples:\n");
        for (what, line) in shown {
            if !what.is_empty() {
                text.push_str(&format!("  {what}\n"));
            }
            text.push_str(&format!("    {line}\n"));
        }
        let text = text.trim_end().to_string();
        cli = cli.mut_subcommand(&name, |c| c.after_help(text.clone()).after_long_help(text));
    }
    cli
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_a_unit() {
        for (text, secs) in [("5", 5.0), ("0.5", 0.5), ("5s", 5.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0)] {
            assert_eq!(positive_secs(text), Ok(secs), "{text}");
        }
        for text in ["0", "-1", "5x", "ms", "s", "inf", "5 s", ""] {
            assert!(positive_secs(text).is_err(), "{text}");
        }
    }

    #[test]
    fn slower_than_takes_a_positive_duration_with_a_unit() {
        assert_eq!(slower_than_ns("1ms"), Ok(1_000_000));
        assert_eq!(slower_than_ns("1.5us"), Ok(1500));
        assert_eq!(slower_than_ns("2s"), Ok(2_000_000_000));
        for bad in ["0ms", "5", "-1ms", "1h", "ms", ""] {
            assert!(slower_than_ns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_process_is_a_number_or_a_name() {
        assert_eq!(process("123"), Ok(Process::Pid(123)));
        assert_eq!(process("redis-server"), Ok(Process::Name("redis-server".into())));
        assert!(process("12x").is_err() && process("").is_err());
    }
}
