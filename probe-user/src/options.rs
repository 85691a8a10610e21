//! The run's options, checked once before anything is attached: durations as `Duration`s, the
//! files each output writes, and nothing read from clap's structs after this point.
use crate::cli::OutputArgs;
use crate::error::user;
use anyhow::Result;
use std::path::{Path, PathBuf};
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
    /// `--by stack`: --folded FILE (`-`: stdout), --flamegraph FILE.svg, --pprof FILE.
    pub folded: Option<PathBuf>,
    pub flamegraph: Option<PathBuf>,
    pub pprof: Option<PathBuf>,
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
            folded: args.folded.clone(),
            flamegraph: args.flamegraph.clone(),
            pprof: args.pprof.clone(),
        };
        let files = [
            ("-o", &options.output),
            ("--hdr-log", &options.hdr_log),
            ("--heatmap", &options.heatmap),
            ("--plot", &options.plot),
            ("--folded", &options.folded.clone().filter(|p| p.as_os_str() != "-")),
            ("--flamegraph", &options.flamegraph),
            ("--pprof", &options.pprof),
        ];
        let named: Vec<(&str, &PathBuf)> = files.iter().filter_map(|(o, p)| Some((*o, p.as_ref()?))).collect();
        for (i, (first, path)) in named.iter().enumerate() {
            let Some((second, other)) = named[i + 1..].iter().find(|(_, p)| same_file(p, path)) else { continue };
            return Err(user(match path == other {
                true => format!("{first} and {second} both write {}; give each its own file", path.display()),
                false => format!(
                    "{first} {} and {second} {} are one file ({}); give each its own file",
                    path.display(),
                    other.display(),
                    written_at(path).display()
                ),
            }));
        }
        Ok(options)
    }

    /// The stack outputs need `--by stack`: one line naming the first given, and the fix.
    pub fn check_stack_outputs(&self, by_stack: bool) -> Result<()> {
        let given = [("--folded", &self.folded), ("--flamegraph", &self.flamegraph), ("--pprof", &self.pprof)];
        match given.iter().find(|(_, p)| p.is_some()) {
            Some((option, _)) if !by_stack => {
                Err(user(format!("{option} writes stacks, which only --by stack collects; add --by stack")))
            }
            _ => Ok(()),
        }
    }
}

/// The same path, or two names of one file, existing or about to be: the same place once
/// symlinks and `..` are followed (`/x/a.svg`, `/x/../x/a.svg`, a link to it), or one inode.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    a == b || written_at(a) == written_at(b) || inode(a).is_some_and(|x| inode(b) == Some(x))
}

/// Where a file output writes: the end of the symlinks from `path` (as file.rs follows them),
/// in its directory's canonical path; the path itself when that cannot be told.
fn written_at(path: &Path) -> PathBuf {
    let mut at = path.to_path_buf();
    for _ in 0..40 {
        let Ok(link) = std::fs::read_link(&at) else { break };
        at = match at.parent() {
            Some(dir) => dir.join(link),
            None => link,
        };
    }
    let dir = match at.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match (std::fs::canonicalize(&dir), at.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => at,
    }
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
            folded: None,
            flamegraph: None,
            pprof: None,
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

    /// Two names of one file that does not exist yet: through `..`, or a symlink of ours.
    #[test]
    fn aliases_of_one_output_file_are_one_file() {
        let dir = std::env::temp_dir().join(format!("probe-options-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let plain = dir.join("a.svg");
        let dotted = dir.join("sub/../a.svg");
        assert!(same_file(&plain, &dotted));
        let link = dir.join("link.svg");
        std::os::unix::fs::symlink("a.svg", &link).unwrap();
        assert!(same_file(&plain, &link) && same_file(&link, &dotted));
        assert!(!same_file(&plain, &dir.join("b.svg")));
        let a = OutputArgs { output: Some(dotted.clone()), plot: Some(link.clone()), ..args() };
        let e = RunOptions::check(&a, None).unwrap_err().to_string();
        let want = format!(
            "-o {} and --plot {} are one file ({}); give each its own file",
            dotted.display(),
            link.display(),
            std::fs::canonicalize(&dir).unwrap().join("a.svg").display()
        );
        assert_eq!(e, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
