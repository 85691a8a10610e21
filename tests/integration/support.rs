//! Helpers for the end-to-end tests: build the target programs, run `probe`, read its output,
//! and check that nothing stays loaded in the kernel afterwards.
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use probe_helpers::targets::{self, Group};

/// Shared with xtask (xtask/helpers): the repository, and the table of target programs.
pub use probe_helpers::{root, targets_dir, GO_VERSIONS};

/// The `probe` binary under test (`cargo xtask test` sets PROBE_BIN).
pub fn probe_bin() -> PathBuf {
    std::env::var_os("PROBE_BIN").map(PathBuf::from).unwrap_or_else(|| root().join("target/release/probe"))
}

/// Set in a VM guest (`cargo xtask vm-test`), which has no compilers: the target programs were
/// built by the host suite into target/targets, and the guest uses them as they are.
pub fn prebuilt() -> bool {
    std::env::var_os("PROBE_PREBUILT_TARGETS").is_some()
}

/// Every target program of the table (probe_helpers::targets), built once per run before the
/// first test uses one (`cargo xtask test` has built them already; then this only checks).
fn targets_built() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        if prebuilt() {
            let missing: Vec<String> =
                targets::outputs(Group::Tests).iter().filter(|o| !o.path().exists()).map(|o| o.name()).collect();
            if !missing.is_empty() {
                return Err(format!("prebuilt targets missing (run the host suite first): {missing:?}"));
            }
            return Ok(());
        }
        targets::build_all(Group::Tests).map(|_| ())
    });
    if let Err(e) = result {
        panic!("building the target programs: {e}");
    }
}

/// The target program `name` of the table: `cvalues`, `tostring-stripped`, `truth-c`, ...
pub fn target(name: &str) -> PathBuf {
    let output = targets::output(name).unwrap_or_else(|| panic!("{name} is not in probe_helpers::targets::TARGETS"));
    targets_built();
    output.path()
}

/// The Go program `name` built with Go `version` (one of GO_VERSIONS): `<name>-go<version>`.
pub fn go_target_with(name: &str, version: &str) -> PathBuf {
    target(&format!("{name}-go{version}"))
}

/// Runs a command that derives `output` from a target program (objcopy, a generated library),
/// unless the targets are prebuilt (a VM guest has no tools to run it: the host run made it).
pub fn build(cmd: &mut Command, output: &Path) {
    if prebuilt() {
        assert!(output.exists(), "prebuilt file {} is missing: run the host suite first", output.display());
        return;
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The libvalues target (`libmain`, which loads `libprobevalues.so` through its `$ORIGIN`
/// RUNPATH) copied into `dir`, so that uprobes on its files see no other test's runs.
/// Returns (library, program).
pub fn libvalues_in(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let copy = |name: &str| {
        let to = dir.join(name);
        let from = target(name);
        if from != to {
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
        }
        to
    };
    (copy("libprobevalues.so"), copy("libmain"))
}

/// A private copy of a binary: uprobes are per inode, so a copy keeps a test that traces
/// "every process running this file" from seeing any other test's processes.
pub fn private_copy(path: &Path, tag: &str) -> PathBuf {
    let copy =
        targets_dir().join(format!("{}-{tag}-{}", path.file_name().unwrap().to_string_lossy(), std::process::id()));
    std::fs::copy(path, &copy).unwrap();
    copy
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs probe to completion.
pub fn probe(args: &[&str]) -> Run {
    let out = Command::new(probe_bin()).args(args).stdin(Stdio::null()).output().expect("run probe");
    out.into()
}

/// probe with `args` at the highest CPU priority (nice -20, which its `-c` command inherits).
/// For the accuracy tests: a traced recursion spans milliseconds (every level's probes) where
/// its untraced twin takes microseconds, so on a busy machine (CI, other builds, busy loops)
/// the scheduler preempts the traced span and rarely the twin's, and the comparison measures
/// the machine's load instead of probe's subtraction.
pub fn probe_favoured(args: &[&str]) -> Run {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(probe_bin());
    command.args(args).stdin(Stdio::null());
    // SAFETY: setpriority is async-signal-safe; it only changes this child's own priority.
    unsafe {
        command.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS as _, 0, -20);
            Ok(())
        });
    }
    command.output().expect("run probe").into()
}

/// probe with `args`, its output piped, started.
fn spawn_probe(args: &[&str]) -> Child {
    Command::new(probe_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start probe")
}

/// Starts `program --wait` (it calls nothing until a line arrives on its stdin) and returns it
/// with its pid once `library` is mapped in it, so that probe finds the library in
/// /proc/PID/maps.
pub fn spawn_waiting_with_library(program: &Path, library: &str) -> (Child, String) {
    let app = Command::new(program).arg("--wait").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let pid = app.id().to_string();
    let maps = format!("/proc/{pid}/maps");
    while !std::fs::read_to_string(&maps).unwrap_or_default().contains(library) {
        std::thread::sleep(Duration::from_millis(10));
    }
    (app, pid)
}

/// Runs probe, killing it if it has not ended within `secs` (a hang is a failure, not a wait).
pub fn probe_within(secs: u64, args: &[&str]) -> Run {
    let mut child = spawn_probe(args);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("probe {args:?} still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap().into()
}

/// Starts probe in the background and waits until it reports its probes attached (notes such
/// as "has no debug information" may come before that line).
pub fn probe_background(args: &[&str]) -> (Child, BufReader<ChildStderr>) {
    let mut child = spawn_probe(args);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = String::new();
    while !lines.contains("probe: tracing") && stderr.read_line(&mut lines).unwrap() > 0 {}
    assert!(lines.contains("probe: tracing"), "probe did not start tracing: {lines}");
    (child, stderr)
}

/// Waits for a background probe to end and collects its output.
pub fn finish(child: Child, mut stderr: BufReader<ChildStderr>) -> Run {
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let mut run: Run = out.into();
    run.stderr = rest;
    run
}

pub fn interrupt(child: &Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

/// The number a target printed about itself, e.g. `ToString calls: 3000`.
pub fn reported_calls(stdout: &str, label: &str) -> u64 {
    let prefix = format!("{label} calls: ");
    let line = stdout.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| {
        panic!("target did not print `{prefix}`: {stdout}");
    });
    line[prefix.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

/// Every JSON object probe printed on stdout.
pub fn json_tables(stdout: &str) -> Vec<Value> {
    stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The inclusive range of SystemTap's log2 bucket holding `v`, computed the obvious way.
pub fn reference_bucket(v: i64) -> (i64, i64) {
    if v == 0 {
        return (0, 0);
    }
    let magnitude = (v as i128).abs();
    let mut low = 1i128;
    while low * 2 <= magnitude {
        low *= 2;
    }
    let high = low * 2 - 1;
    if v > 0 {
        (low as i64, high as i64)
    } else {
        ((-high).max(i64::MIN as i128) as i64, (-low) as i64)
    }
}

/// Expected `buckets` of a JSON table for these values: (low, high) -> count.
pub fn expected_buckets(values: impl IntoIterator<Item = i64>) -> BTreeMap<(i64, i64), u64> {
    let mut map = BTreeMap::new();
    for v in values {
        *map.entry(reference_bucket(v)).or_insert(0) += 1;
    }
    map
}

/// The `buckets` of a JSON table as (low, high) -> count.
pub fn json_buckets(table: &Value) -> BTreeMap<(i64, i64), u64> {
    table["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| ((b["low"].as_i64().unwrap(), b["high"].as_i64().unwrap()), b["count"].as_u64().unwrap()))
        .collect()
}

/// probe's BPF programs (names start with `pb_`) loaded in the kernel that no live process
/// holds: what a probe run would leave behind if it leaked (a pin, or a link without an owner).
/// Programs held by other running tools (another probe, a benchmark) are not ours to judge.
pub fn orphaned_probe_programs() -> Vec<String> {
    let held = programs_held_by_processes();
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("pb_")) && !held.contains(&p.id()))
        .map(|p| format!("{} (id {})", p.name_as_str().unwrap_or("?"), p.id()))
        .collect()
}

/// Program ids referenced by any process's file descriptors (program and link fds).
fn programs_held_by_processes() -> std::collections::HashSet<u32> {
    let mut held = std::collections::HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return held };
    for proc_dir in procs.flatten() {
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fdinfo")) else { continue };
        for fd in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(fd.path()) else { continue };
            for line in info.lines() {
                if let Some(id) = line.strip_prefix("prog_id:") {
                    if let Ok(id) = id.trim().parse() {
                        held.insert(id);
                    }
                }
            }
        }
    }
    held
}

/// Asserts that nothing of probe's stays loaded once it has exited (nothing is pinned; links
/// and programs go with the process). The kernel frees them asynchronously after the last fd
/// closes, so allow it a moment.
pub fn assert_nothing_attached() {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = orphaned_probe_programs();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "probe programs left loaded without an owner: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Expects bad input: exit code 2 and a single `probe: ...` line on stderr containing `needle`,
/// no panic, nothing left attached.
pub fn assert_rejected(run: impl std::borrow::Borrow<Run>, needle: &str) {
    let run = run.borrow();
    assert_eq!(run.code, 2, "exit code; stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got: {}", run.stderr);
    assert!(lines[0].starts_with("probe: "), "{}", lines[0]);
    assert!(lines[0].contains(needle), "expected {needle:?} in: {}", lines[0]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_nothing_attached();
}
