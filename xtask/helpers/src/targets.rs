//! The one table of target programs: every program the integration tests, the benchmark and the
//! arm64 guest trace, with its language, source under tests/targets, flags and Go toolchains.
//! `build_all` builds a group of them into target/targets up front; a build is skipped while its
//! output is newer than its sources and was made by the same command (a stamp file beside it),
//! so a rerun costs a few `stat`s.
use crate::{root, targets_dir, GO_VERSIONS};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    /// `cc -O2 FLAGS -o OUT tests/targets/SOURCE`
    C,
    /// `c++ -O2 FLAGS -o OUT tests/targets/SOURCE`
    Cpp,
    /// `rustc -O FLAGS -o OUT tests/targets/SOURCE`
    Rust,
    /// `go build FLAGS -o OUT .` in tests/targets/SOURCE
    Go,
}

/// Who uses a target: the integration tests (built before they run), or the benchmark alone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Group {
    Tests,
    Bench,
}

/// One row of the table.
#[derive(Debug)]
pub struct Target {
    /// The output under target/targets; Go builds with a toolchain of `go` add `-go<version>`.
    pub name: &'static str,
    pub lang: Lang,
    /// Relative to tests/targets: a file (C, C++, Rust) or a folder (Go).
    pub source: &'static str,
    /// `{dir}` stands for the folder the output goes to (libmain links the library beside it).
    pub flags: &'static [&'static str],
    /// Go only: the toolchains. "" is Debian's `go` (output `name`), a version is
    /// /usr/lib/go-<version> (output `name-go<version>`).
    pub go: &'static [&'static str],
    pub group: Group,
}

const fn c(name: &'static str, source: &'static str, flags: &'static [&'static str]) -> Target {
    Target { name, lang: Lang::C, source, flags, go: &[], group: Group::Tests }
}

const fn go(
    name: &'static str,
    source: &'static str,
    flags: &'static [&'static str],
    go: &'static [&'static str],
) -> Target {
    Target { name, lang: Lang::Go, source, flags, go, group: Group::Tests }
}

/// Debian's `go` and every version of GO_VERSIONS.
const EVERY_GO: &[&str] = &["", GO_VERSIONS[0], GO_VERSIONS[1], GO_VERSIONS[2]];
const DEBIAN_GO: &[&str] = &[""];
const STRIPPED: &[&str] = &["-ldflags=-s -w"];

/// Every target program. Several rows build one source differently (stripped, PIE, without
/// debug information, another Go): each is its own file, so uprobes on one never see another's.
pub const TARGETS: &[Target] = &[
    c("cvalues", "c/cvalues.c", &["-g"]),
    c("cvalues-nodebug", "c/cvalues.c", &["-g0"]),
    c("cvalues-pie", "c/cvalues.c", &["-pie"]),
    c("cvalues-nopie", "c/cvalues.c", &["-no-pie"]),
    c("cdeep", "c/cdeep.c", &["-g"]),
    c("clatency", "c/clatency.c", &["-g"]),
    c("cparams", "c/cparams.c", &["-g"]),
    c("cparams-nodebug", "c/cparams.c", &["-g0"]),
    c("cstrings", "c/cstrings.c", &["-g"]),
    c("cfields", "c/cfields.c", &["-g"]),
    c("cfields-nodebug", "c/cfields.c", &["-g0"]),
    c("ctypes", "c/ctypes.c", &["-g"]),
    c("cinline", "c/cinline.c", &["-g"]),
    c("callers", "c/callers.c", &["-g"]),
    c("threads", "c/threads.c", &["-g", "-pthread"]),
    c("losses", "c/losses.c", &["-g", "-pthread"]),
    c("logevent", "c/logevent.c", &["-g"]),
    c("cevents", "c/cevents.c", &["-g"]),
    c("oddities", "c/oddities.c", &["-g"]),
    c("atomic_entry", "c/atomic_entry.c", &["-g"]),
    c("entry_shapes", "c/entry_shapes.c", &["-g"]),
    c("cstacks", "c/cstacks.c", &["-g", "-fno-omit-frame-pointer"]),
    c("cstacks-nofp", "c/cstacks.c", &["-g", "-fomit-frame-pointer"]),
    c("truth", "c/truth.c", &["-g"]),
    c("truth-c", "c/truth.c", &["-g", "-fno-omit-frame-pointer"]),
    c("truth-cet", "c/truth.c", &["-g", "-fno-omit-frame-pointer", "-fcf-protection=full"]),
    c("libprobevalues.so", "c/libvalues/libprobevalues.c", &["-shared", "-fPIC"]),
    // Loads the library above through its `$ORIGIN` RUNPATH.
    c("libmain", "c/libvalues/libmain.c", &["-L{dir}", "-lprobevalues", "-Wl,-rpath,$ORIGIN"]),
    Target { name: "geo", lang: Lang::Cpp, source: "cpp/geo.cpp", flags: &[], go: &[], group: Group::Tests },
    Target { name: "geo-g", lang: Lang::Cpp, source: "cpp/geo.cpp", flags: &["-g"], go: &[], group: Group::Tests },
    Target { name: "rvalues", lang: Lang::Rust, source: "rust/values.rs", flags: &[], go: &[], group: Group::Tests },
    Target {
        name: "rvalues-g",
        lang: Lang::Rust,
        source: "rust/values.rs",
        flags: &["-g"],
        go: &[],
        group: Group::Tests,
    },
    go("tostring", "go/tostring", &[], EVERY_GO),
    go("tostring-stripped", "go/tostring", STRIPPED, DEBIAN_GO),
    go("latency", "go/latency", &[], EVERY_GO),
    go("goasm", "go/goasm", &[], DEBIAN_GO),
    go("goasm-stripped", "go/goasm", STRIPPED, DEBIAN_GO),
    go("goparams", "go/goparams", &[], EVERY_GO),
    go("goparams-stripped", "go/goparams", STRIPPED, DEBIAN_GO),
    go("gonames", "go/gonames", &[], EVERY_GO),
    go("gotypes", "go/gotypes", &[], &["", "1.23"]),
    go("strings", "go/strings", &[], &["", "1.23"]),
    go("httpserver", "go/httpserver", &[], &["", "1.23"]),
    go("inl", "go/inl", &[], &[GO_VERSIONS[0], GO_VERSIONS[1], GO_VERSIONS[2]]),
    go("inl-stripped", "go/inl", STRIPPED, DEBIAN_GO),
    go("inl-pie", "go/inl", &["-buildmode=pie"], DEBIAN_GO),
    go("stacks", "go/stacks", &[], &["", "1.23"]),
    go("allocs", "go/allocs", &[], &["", "1.23"]),
    go("regex", "go/regex", &[], DEBIAN_GO),
    go("many", "go/many", &[], DEBIAN_GO),
    go("sleeper", "go/sleeper", &[], DEBIAN_GO),
    go("events", "go/events", &[], &["", "1.23"]),
    go("events-stripped", "go/events", STRIPPED, DEBIAN_GO),
    // Go's truth twins (C's `truth` is above).
    go("truth", "go/truth", &[], &[GO_VERSIONS[0], GO_VERSIONS[1], GO_VERSIONS[2]]),
    Target {
        name: "bench/gobench",
        lang: Lang::Go,
        source: "go/gobench",
        flags: &[],
        go: &["", "1.23"],
        group: Group::Bench,
    },
    Target { name: "bench/cbench", lang: Lang::C, source: "c/cbench.c", flags: &[], go: &[], group: Group::Bench },
    Target {
        name: "bench/cbench-push",
        lang: Lang::C,
        source: "c/cbench.c",
        flags: &["-DFRAME", "-fno-omit-frame-pointer"],
        go: &[],
        group: Group::Bench,
    },
];

/// The architecture a program is built for: this host's, or arm64 for the arm64 guest (Go with
/// GOARCH=arm64, C statically with Debian's cross gcc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arch {
    Host,
    Arm64,
}

/// Debian's gcc-aarch64-linux-gnu (setup installs it).
pub const AARCH64_CC: &str = "aarch64-linux-gnu-gcc";

/// One file the table builds: a row, and for Go the toolchain ("" for Debian's).
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub target: &'static Target,
    pub go: &'static str,
}

impl Output {
    /// Its file name under the output folder (`tostring`, `tostring-go1.23`, `bench/cbench`).
    pub fn name(&self) -> String {
        match self.go {
            "" => self.target.name.to_string(),
            version => format!("{}-go{version}", self.target.name),
        }
    }

    /// Where the host build goes: target/targets/<name>.
    pub fn path(&self) -> PathBuf {
        targets_dir().join(self.name())
    }

    /// The command that builds it as `out` for `arch`, unrun.
    pub fn command(&self, arch: Arch, out: &Path) -> Command {
        let t = self.target;
        let dir = out.parent().unwrap_or(Path::new(".")).display().to_string();
        let flags: Vec<String> = t.flags.iter().map(|f| f.replace("{dir}", &dir)).collect();
        let source = root().join("tests/targets").join(t.source);
        let mut cmd = match t.lang {
            Lang::Go => {
                let mut go = crate::go((!self.go.is_empty()).then_some(self.go));
                go.arg("build").args(&flags).arg("-o").arg(out).arg(".").current_dir(&source);
                if arch == Arch::Arm64 {
                    go.env("GOARCH", "arm64").env("CGO_ENABLED", "0").env("GOTOOLCHAIN", "local");
                }
                return go;
            }
            Lang::C if arch == Arch::Arm64 => {
                let mut cc = Command::new(AARCH64_CC);
                cc.args(["-O2", "-static"]);
                cc
            }
            Lang::C => {
                let mut cc = Command::new("cc");
                cc.arg("-O2");
                cc
            }
            Lang::Cpp => {
                let mut cxx = Command::new("c++");
                cxx.arg("-O2");
                cxx
            }
            Lang::Rust => {
                let mut rustc = Command::new("rustc");
                rustc.arg("-O");
                rustc
            }
        };
        // Libraries (`-l`) and linker options after the source, as the linker reads them in order.
        let (before, after): (Vec<&String>, Vec<&String>) =
            flags.iter().partition(|f| !f.starts_with("-l") && !f.starts_with("-Wl,") && !f.starts_with("-L"));
        cmd.args(before).arg("-o").arg(out).arg(source).args(after);
        cmd
    }

    /// The files the build reads: the source file, or every file of the Go folder.
    pub fn sources(&self) -> Vec<PathBuf> {
        let source = root().join("tests/targets").join(self.target.source);
        let mut files = Vec::new();
        collect_files(&source, &mut files);
        files
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) {
    match std::fs::read_dir(path) {
        Ok(entries) => entries.flatten().for_each(|e| collect_files(&e.path(), out)),
        Err(_) => out.push(path.to_path_buf()),
    }
}

/// Every output of the table's rows of `group`, in table order (a library before its program).
pub fn outputs(group: Group) -> Vec<Output> {
    TARGETS.iter().filter(|t| t.group == group).flat_map(outputs_of).collect()
}

fn outputs_of(target: &'static Target) -> Vec<Output> {
    match target.lang {
        Lang::Go => target.go.iter().map(|&go| Output { target, go }).collect(),
        _ => vec![Output { target, go: "" }],
    }
}

/// The output named `name` (`cvalues`, `tostring-go1.23`), if the table has it.
pub fn output(name: &str) -> Option<Output> {
    TARGETS.iter().flat_map(outputs_of).find(|o| o.name() == name)
}

/// Builds `output` as `out` for `arch` unless `out` is newer than its sources and its stamp
/// (`out.cmd`) records the same command. Returns whether it ran the build.
pub fn build(output: &Output, arch: Arch, out: &Path) -> Result<bool, String> {
    let mut cmd = output.command(arch, out);
    let described = format!("{cmd:?}");
    let stamp = out.with_file_name(format!("{}.cmd", out.file_name().unwrap_or_default().to_string_lossy()));
    if up_to_date(out, &output.sources(), &stamp, &described) {
        return Ok(false);
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    let result = cmd.output().map_err(|e| format!("{described}: {e}"))?;
    if !result.status.success() {
        return Err(format!("{described}: {}", String::from_utf8_lossy(&result.stderr)));
    }
    std::fs::write(&stamp, &described).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    Ok(true)
}

fn up_to_date(out: &Path, sources: &[PathBuf], stamp: &Path, command: &str) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(out) else { return false };
    std::fs::read_to_string(stamp).is_ok_and(|s| s == command)
        && sources.iter().all(|s| modified(s).is_some_and(|m| m <= built))
}

/// Builds every output of `group` for this host into target/targets; returns how many were
/// out of date (and so built) and how many there are.
pub fn build_all(group: Group) -> Result<(usize, usize), String> {
    let all = outputs(group);
    let mut built = 0;
    for output in &all {
        built += usize::from(build(output, Arch::Host, &output.path())?);
    }
    Ok((built, all.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_has_one_name_and_a_source_that_exists() {
        let mut names = std::collections::BTreeSet::new();
        for group in [Group::Tests, Group::Bench] {
            for o in outputs(group) {
                assert!(names.insert(o.name()), "{} twice in the table", o.name());
                assert!(!o.sources().is_empty() && o.sources().iter().all(|s| s.is_file()), "{}", o.name());
            }
        }
        let folders = ["c", "cpp", "go", "rust"];
        assert!(TARGETS.iter().all(|t| folders.iter().any(|f| t.source.starts_with(&format!("{f}/")))));
    }

    #[test]
    fn names_and_commands_follow_the_row() {
        let go123 = output("tostring-go1.23").unwrap();
        assert_eq!(go123.command(Arch::Host, Path::new("/o/t")).get_program(), "/usr/lib/go-1.23/bin/go");
        let debian = output("tostring").unwrap().command(Arch::Arm64, Path::new("/o/t"));
        assert_eq!(debian.get_program(), "go");
        assert!(debian.get_envs().any(|(k, v)| k == "GOARCH" && v == Some("arm64".as_ref())));
        assert!(debian.get_current_dir().unwrap().ends_with("tests/targets/go/tostring"));
        let main = output("libmain").unwrap().command(Arch::Host, Path::new("/o/libmain"));
        let args: Vec<_> = main.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[..3], ["-O2", "-o", "/o/libmain"]);
        assert!(args[3].ends_with("tests/targets/c/libvalues/libmain.c"));
        assert_eq!(args[4..], ["-L/o", "-lprobevalues", "-Wl,-rpath,$ORIGIN"]);
        let arm = output("cvalues").unwrap().command(Arch::Arm64, Path::new("/o/c"));
        assert_eq!(arm.get_program(), AARCH64_CC);
        assert!(output("truth").is_some_and(|o| o.target.lang == Lang::C));
        assert!(output("nonexistent").is_none());
    }

    #[test]
    fn a_build_is_skipped_while_its_output_is_current() {
        let out = targets_dir().join("stamp-check/cvalues");
        let _ = std::fs::remove_dir_all(out.parent().unwrap());
        let cvalues = output("cvalues").unwrap();
        assert_eq!(build(&cvalues, Arch::Host, &out), Ok(true));
        assert_eq!(build(&cvalues, Arch::Host, &out), Ok(false));
        let nodebug = output("cvalues-nodebug").unwrap();
        assert_eq!(build(&nodebug, Arch::Host, &out), Ok(true), "another command rebuilds");
        std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
    }
}
