//! The run's options, checked once before anything is attached: durations as `Duration`s, the
//! files each output writes, and nothing read from clap's structs after this point.
use crate::cli::OutputArgs;
use crate::error::user;
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// -d: stop after this long.
    pub duration: Option<Duration>,
    /// -i: print (and feed the outputs) each interval.
    pub interval: Option<Duration>,
    /// --json: one JSON document per table.
    pub json: bool,
    /// -o: probe's tables go to this file instead of stdout.
    pub output: Option<PathBuf>,
    /// --all: with several functions, also the tables of those never called.
    pub all: bool,
    /// --top N: with several functions, only the N heaviest tables.
    pub top: Option<usize>,
    /// --serve ADDR: Prometheus metrics there.
    pub serve: Option<String>,
    /// latency --hdr-log FILE.
    pub hdr_log: Option<PathBuf>,
    /// --heatmap FILE.svg.
    pub heatmap: Option<PathBuf>,
    /// --plot FILE.svg.
    pub plot: Option<PathBuf>,
}

impl RunOptions {
    /// From the command line; `hdr_log` is latency's own option. Two outputs may not write one
    /// file: the second would replace the first's work at the end of the run.
    pub fn check(args: &OutputArgs, hdr_log: Option<PathBuf>) -> Result<RunOptions> {
        let options = RunOptions {
            duration: args.duration.map(Duration::from_secs_f64),
            interval: args.interval.map(Duration::from_secs_f64),
            json: args.json,
            output: args.output.clone(),
            all: args.all,
            top: args.top.map(|n| n as usize),
            serve: args.serve.clone(),
            hdr_log,
            heatmap: args.heatmap.clone(),
            plot: args.plot.clone(),
        };
        let files = [
            ("-o", &options.output),
            ("--hdr-log", &options.hdr_log),
            ("--heatmap", &options.heatmap),
            ("--plot", &options.plot),
        ];
        let named: Vec<(&str, &PathBuf)> = files.iter().filter_map(|(o, p)| Some((*o, p.as_ref()?))).collect();
        for (i, (first, path)) in named.iter().enumerate() {
            if let Some((second, _)) = named[i + 1..].iter().find(|(_, p)| same_file(p, path)) {
                return Err(user(format!(
                    "{first} and {second} both write {}; give each its own file",
                    path.display()
                )));
            }
        }
        Ok(options)
    }
}

/// The same path, or two names of one existing file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> OutputArgs {
        OutputArgs {
            duration: Some(1.5),
            interval: None,
            json: false,
            output: None,
            all: false,
            top: Some(3),
            heatmap: None,
            plot: None,
            serve: None,
        }
    }

    #[test]
    fn durations_and_counts_are_checked_types() {
        let o = RunOptions::check(&args(), None).unwrap();
        assert_eq!(o.duration, Some(Duration::from_millis(1500)));
        assert_eq!(o.top, Some(3));
    }

    #[test]
    fn two_outputs_may_not_write_one_file() {
        let a = OutputArgs { output: Some("t.svg".into()), plot: Some("t.svg".into()), ..args() };
        let e = RunOptions::check(&a, None).unwrap_err().to_string();
        assert_eq!(e, "-o and --plot both write t.svg; give each its own file");
        let b = OutputArgs { heatmap: Some("h.svg".into()), plot: Some("p.svg".into()), ..args() };
        assert!(RunOptions::check(&b, Some("h.svg".into())).is_err());
        assert!(RunOptions::check(&b, Some("l.hlog".into())).is_ok());
    }
}
