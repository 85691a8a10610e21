//! The workloads (Go and C loops whose traced function starts with an emulated or a
//! single-stepped instruction), the rows that trace them, and starting a tool on one.
use super::proc::Proc;
use crate::target;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// Printed by a BEGIN probe. bpftrace prints "Attaching N probes..." before it attaches and
/// fires BEGIN after every probe is attached, so this line is the moment it is really tracing.
const BPFTRACE_READY: &str = "bench: attached";

/// A workload: a language, and the build that decides the traced function's first
/// instructions (what the kernel emulates or single-steps; see docs/how-it-works.md).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    /// Debian 12's Go: bodies start with `SUBQ $n, SP` after the stack check.
    Go,
    /// Go 1.23 (bookworm-backports): bodies start with `PUSHQ BP`.
    Go123,
    /// gcc -O2: `work` starts with `lea`, single-stepped.
    C,
    /// gcc -O2 -DFRAME -fno-omit-frame-pointer: `work` starts with `push %rbp`, emulated.
    CPush,
    /// Debian 12's Go, `-path`: the loop calls `WorkPath(o *Outer)`, whose number is `o.In.N`
    /// (a path of two pointers, `--arg o.In.N`, next to the pointer itself, `--arg 0`).
    GoPath,
}

impl Lang {
    const ALL: [Lang; 5] = [Lang::Go, Lang::Go123, Lang::C, Lang::CPush, Lang::GoPath];

    pub fn name(self) -> &'static str {
        match self {
            Lang::Go => "Go 1.19",
            Lang::Go123 => "Go 1.23",
            Lang::C => "C (`lea` entry)",
            Lang::CPush => "C (`push` entry)",
            Lang::GoPath => "Go 1.19 (pointer argument)",
        }
    }

    pub fn is_go(self) -> bool {
        matches!(self, Lang::Go | Lang::Go123 | Lang::GoPath)
    }

    /// The function that the workload's loop calls.
    pub fn func(self) -> &'static str {
        if self == Lang::GoPath {
            "main.WorkPath"
        } else if self.is_go() {
            "main.Work"
        } else {
            "work"
        }
    }

    /// bpftrace's name for the function's first integer argument.
    pub fn bpftrace_arg0(self) -> &'static str {
        if self.is_go() {
            r#"reg("ax")"# // Go's register ABI: arg 0 in RAX
        } else {
            "arg0"
        }
    }

    /// Arguments that make the workload call its function `calls` times.
    pub fn workload_args(self, calls: u64) -> Vec<String> {
        if self == Lang::GoPath {
            vec!["-path".into(), "-calls".into(), calls.to_string()]
        } else if self.is_go() {
            vec!["-calls".into(), calls.to_string()]
        } else {
            vec![calls.to_string()]
        }
    }
}

pub struct Workloads {
    pub go: PathBuf,
    pub go123: PathBuf,
    pub c: PathBuf,
    pub c_push: PathBuf,
}

impl Workloads {
    /// Builds the table's bench rows (tests/targets/go/gobench, tests/targets/c/cbench.c) into
    /// target/targets/bench/.
    pub fn build() -> Result<Workloads> {
        Ok(Workloads {
            go: target("bench/gobench")?,
            go123: target("bench/gobench-go1.23")?,
            c: target("bench/cbench")?,
            c_push: target("bench/cbench-push")?,
        })
    }

    pub fn path(&self, lang: Lang) -> &Path {
        match lang {
            Lang::Go | Lang::GoPath => &self.go,
            Lang::Go123 => &self.go123,
            Lang::C => &self.c,
            Lang::CPush => &self.c_push,
        }
    }
}

/// What a row measures; the report looks rows up by it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Id {
    Untraced,
    /// bpftrace with an empty uprobe action: the trap alone.
    Floor,
    BpftraceHist,
    ProbeArgdist,
    /// `--by stack` (issue 26) next to bpftrace's `@[ustack] = count()`.
    BpftraceUstack,
    ProbeArgdistStack,
    /// argdist reading a path of two pointers (`--arg o.In.N`).
    ProbeArgdistPath,
    BpftraceLatency,
    ProbeLatency,
    /// `latency --slower-than` with no call slow enough: what the events cost a fast call.
    ProbeSlowerThan,
}

/// How a row traces its workload. Tools trace every process running the binary's path.
pub enum Tracer {
    Untraced,
    /// probe's arguments; the binary's path is appended.
    Probe(Vec<String>),
    /// A bpftrace program; `$BIN` stands for the binary's path.
    Bpftrace(String),
    /// The same with the current bpftrace (0.23) of a Debian 13 chroot (`Bench::trixie`); the
    /// traced file is copied into the chroot, since a uprobe is on a file.
    BpftraceChroot(String),
}

pub struct Row {
    pub lang: Lang,
    pub id: Id,
    pub label: String,
    pub tracer: Tracer,
}

pub fn probe_args(args: &[&str]) -> Tracer {
    Tracer::Probe(args.iter().map(|a| a.to_string()).collect())
}

/// Every row of the interleaved measurement, in the order they run and are reported.
pub fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for lang in Lang::ALL {
        let f = lang.func();
        let arg0 = lang.bpftrace_arg0();
        let mut row = |id, label: String, tracer| rows.push(Row { lang, id, label, tracer });
        row(Id::Untraced, "untraced".into(), Tracer::Untraced);
        row(Id::Floor, "bpftrace `uprobe {}` (floor)".into(), Tracer::Bpftrace(format!("uprobe:$BIN:{f} {{}}")));
        if lang == Lang::GoPath {
            // A path's cost next to a register argument's, on the same function.
            row(
                Id::ProbeArgdist,
                format!("probe argdist --func {f} --arg 0"),
                probe_args(&["argdist", "--func", f, "--arg", "0"]),
            );
            row(
                Id::ProbeArgdistPath,
                format!("probe argdist --func {f} --arg o.In.N"),
                probe_args(&["argdist", "--func", f, "--arg", "o.In.N"]),
            );
            continue;
        }
        row(
            Id::BpftraceHist,
            format!("bpftrace `hist({arg0})`"),
            Tracer::Bpftrace(format!("uprobe:$BIN:{f} {{ @h = hist({arg0}); }}")),
        );
        row(
            Id::ProbeArgdist,
            format!("probe argdist --func {f} --arg 0"),
            probe_args(&["argdist", "--func", f, "--arg", "0"]),
        );
        row(
            Id::BpftraceUstack,
            "bpftrace `@[ustack] = count()`".into(),
            Tracer::Bpftrace(format!("uprobe:$BIN:{f} {{ @[ustack] = count(); }}")),
        );
        row(
            Id::ProbeArgdistStack,
            format!("probe argdist --func {f} --arg 0 --by stack"),
            probe_args(&["argdist", "--func", f, "--arg", "0", "--by", "stack"]),
        );
        // No bpftrace latency row for Go: a uretprobe crashes Go programs.
        if !lang.is_go() {
            row(
                Id::BpftraceLatency,
                "bpftrace uprobe+uretprobe `hist(nsecs - @s[tid])`".into(),
                Tracer::Bpftrace(format!(
                    "uprobe:$BIN:{f} {{ @s[tid] = nsecs; }} \
                     uretprobe:$BIN:{f} {{ @h = hist(nsecs - @s[tid]); delete(@s[tid]); }}"
                )),
            );
        }
        let exits = if lang.is_go() { "RET probes" } else { "uretprobe" };
        row(Id::ProbeLatency, format!("probe latency --func {f} ({exits})"), probe_args(&["latency", "--func", f]));
        row(
            Id::ProbeSlowerThan,
            format!("probe latency --func {f} --slower-than 1s --arg 0 (no call that slow)"),
            probe_args(&["latency", "--func", f, "--slower-than", "1s", "--arg", "0"]),
        );
    }
    rows
}

/// The tools and workloads every measurement uses.
pub struct Bench {
    pub probe: PathBuf,
    /// A Debian 13 (trixie) root with bpftrace, for rows with the current bpftrace.
    pub trixie: Option<PathBuf>,
    pub workloads: Workloads,
    pub scratch: PathBuf,
}

impl Bench {
    /// A private copy of a workload for one run. Uprobes are per file, so a tool attached to the
    /// copy sees only this run's process, and a tool left over from a failed run slows nothing else.
    pub fn private_copy(&self, lang: Lang, tag: &str) -> Result<PrivateCopy> {
        self.private_copy_in(&self.scratch, lang, tag)
    }

    /// The same in another directory (inside the Debian 13 chroot for its bpftrace).
    pub fn private_copy_in(&self, dir: &Path, lang: Lang, tag: &str) -> Result<PrivateCopy> {
        let src = self.workloads.path(lang);
        let path = dir.join(format!("bench-{tag}-{}", src.file_name().unwrap().to_string_lossy()));
        std::fs::copy(src, &path).with_context(|| format!("copying {}", src.display()))?;
        Ok(PrivateCopy(path))
    }

    /// Starts a tool on `binary` and waits until its probes are attached.
    pub fn start_tracer(&self, tracer: &Tracer, binary: &Path) -> Result<Tracing> {
        let bin = binary.display().to_string();
        match tracer {
            Tracer::Untraced => bail!("nothing to start for an untraced row"),
            Tracer::Probe(args) => {
                // --json: the bench reads probe's final tables with serde (probe_json.rs).
                let mut proc = Proc::spawn("probe", Command::new(&self.probe).args(args).arg("--json").arg(&bin))?;
                let attached = proc
                    .wait_for_line("the `probe: tracing` line", ATTACH_TIMEOUT, |l| l.starts_with("probe: tracing"))?;
                Ok(Tracing { proc, announced: None, attached })
            }
            Tracer::Bpftrace(script) | Tracer::BpftraceChroot(script) => {
                let chroot = matches!(tracer, Tracer::BpftraceChroot(_));
                let bin = match (&self.trixie, chroot) {
                    (Some(root), true) => format!("/{}", binary.strip_prefix(root)?.display()),
                    (None, true) => bail!("no Debian 13 chroot with bpftrace (set PROBE_BENCH_TRIXIE)"),
                    _ => bin,
                };
                let program = format!("BEGIN {{ printf(\"{BPFTRACE_READY}\\n\"); }} {}", script.replace("$BIN", &bin));
                let mut command = match (&self.trixie, chroot) {
                    (Some(root), true) => {
                        // A private mount namespace: /proc, /sys and /dev appear in the chroot
                        // and vanish with the process. Each exec keeps the pid, so SIGINT
                        // reaches bpftrace itself.
                        let mut c = Command::new("unshare");
                        c.args(["--mount", "--propagation", "private", "sh", "-c"])
                            .arg(
                                "for d in proc sys dev; do mount --rbind /$d \"$0/$d\" || exit 1; done; \
                                 exec chroot \"$0\" bpftrace -e \"$1\"",
                            )
                            .arg(root)
                            .arg(&program);
                        c
                    }
                    _ => {
                        let mut c = Command::new("bpftrace");
                        c.arg("-e").arg(&program);
                        c
                    }
                };
                let mut proc = Proc::spawn("bpftrace", &mut command)?;
                let announced =
                    proc.wait_for_line("the `Attaching` line", ATTACH_TIMEOUT, |l| l.starts_with("Attaching "))?;
                let attached = proc.wait_for_line("its BEGIN probe", ATTACH_TIMEOUT, |l| l == BPFTRACE_READY)?;
                Ok(Tracing { proc, announced: Some(announced), attached })
            }
        }
    }
}

/// Removed when dropped.
pub struct PrivateCopy(pub PathBuf);

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A tool whose probes are attached.
pub struct Tracing {
    pub proc: Proc,
    /// Start to bpftrace's "Attaching N probes..." line.
    pub announced: Option<Duration>,
    /// Start to the probes being attached.
    pub attached: Duration,
}
