//! `cargo xtask <command>`: the project's one entry point for building, testing and demos.
//!
//!   build   setup if needed, then target/release/probe with the eBPF object embedded, and
//!           static (musl) binaries for x86-64 and aarch64 in target/<triple>/release/probe
//!   test    setup, unit tests, then integration tests that load real probes
//!   run     build, then run probe with the given arguments (`cargo xtask run -- argdist ...`)
//!   demo    build the seed's example programs and show probe on them
//!   bench   overhead, start-up, memory, scale, drain and accuracy next to bpftrace
//!           -> bench/RESULTS.md (`--no-scale` skips the scale runs)
//!   fuzz    run the ELF and .gopclntab fuzz targets for a while (`cargo xtask fuzz [SECS]`)
//!   vm-test the integration suite on another kernel in QEMU (`--kernel 6.1|5.10|host`);
//!           `--arch arm64 [--kernel 6.1|6.12]`: the static arm64 probe in an arm64 guest
mod bench;
mod cross;
mod fuzz;
mod vm;
mod vm_arm64;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("build") => cross::build_all(),
        Some("test") => test(&args[1..]),
        Some("run") => run(&args[1..]),
        Some("demo") => demo(),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("vm-test") => vm::run(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <setup|build|test|run|demo|bench|fuzz|vm-test> [-- probe args]");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn check(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// scripts/setup.sh installs only what is missing; a second run takes a fraction of a second.
fn setup() -> Result<()> {
    check(Command::new("bash").arg(root().join("scripts/setup.sh")))
}

fn build() -> Result<PathBuf> {
    setup()?;
    check(cargo().args(["build", "--release", "-p", "probe-user"]))?;
    Ok(root().join("target/release/probe"))
}

/// The workspace's own crates (vendor/aya is a patched copy of aya, left as upstream wrote it).
const OWN_PACKAGES: [&str; 6] = ["-p", "probe-user", "-p", "xtask", "-p", "probe-tests"];

/// House rules: rustfmt.toml's formatting and clippy without warnings. The eBPF crate builds
/// with its own nightly (no rustfmt component there), so its files go through rustfmt itself.
fn lint() -> Result<()> {
    println!("xtask: formatting (rustfmt.toml) and clippy, warnings denied");
    check(cargo().arg("fmt").args(OWN_PACKAGES).arg("--check"))?;
    let ebpf_sources = ["probe-ebpf/src/lib.rs", "probe-ebpf/src/main.rs"].map(|f| root().join(f));
    check(Command::new("rustfmt").args(["--check", "--edition", "2021"]).args(ebpf_sources).current_dir(root()))?;
    check(cargo().arg("clippy").args(OWN_PACKAGES).args(["--all-targets", "--release", "--", "-D", "warnings"]))
}

fn test(extra: &[String]) -> Result<()> {
    let probe = build()?;
    lint()?;
    println!("xtask: unit tests (shared kernel/user crate)");
    check(
        cargo()
            .args(["test", "--lib", "--manifest-path", "probe-ebpf/Cargo.toml"])
            .arg("--target-dir")
            .arg(root().join("target/ebpf-host")),
    )?;
    println!("xtask: unit tests (probe)");
    check(cargo().args(["test", "--release", "-p", "probe-user"]))?;
    integration_tests(&probe, extra)
}

fn integration_tests(probe: &Path, extra: &[String]) -> Result<()> {
    // tests/old_userland.rs runs the static build on Debian 11.
    let static_probe = cross::build_static(&cross::X86_64)?;
    println!("xtask: integration tests (real probes on real targets, one at a time)");
    // One at a time: the tests assert that no probe program stays loaded after each run.
    check(
        cargo()
            .args(["test", "--release", "-p", "probe-tests", "--"])
            .arg("--test-threads=1")
            .args(extra)
            .env("PROBE_BIN", probe)
            .env("PROBE_STATIC_BIN", static_probe),
    )
}

fn run(args: &[String]) -> Result<()> {
    let probe = build()?;
    let args = args.strip_prefix(&["--".to_string()]).unwrap_or(args);
    let status = Command::new(probe).args(args).status()?;
    std::process::exit(status.code().unwrap_or(1));
}

/// Builds a Go program from tests/targets/<name> into target/targets/<name>.
fn go_target(name: &str) -> Result<PathBuf> {
    go_build(Command::new("go"), name, name)
}

/// Builds a Go program from tests/targets/<name> with Go `version` (/usr/lib/go-<version>, from
/// setup) into target/targets/<name>-go<version>.
fn go_target_with(name: &str, version: &str) -> Result<PathBuf> {
    let mut go = Command::new(format!("/usr/lib/go-{version}/bin/go"));
    go.env("GOTOOLCHAIN", "local");
    go_build(go, name, &format!("{name}-go{version}"))
}

fn go_build(mut go: Command, name: &str, output: &str) -> Result<PathBuf> {
    let out = root().join("target/targets").join(output);
    check(
        go.args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(root().join("tests/targets").join(name))
            .stdout(Stdio::null()),
    )?;
    Ok(out)
}

fn demo() -> Result<()> {
    let probe = build()?;
    let tostring = go_target("tostring")?;
    let show = |title: &str, args: &[&str]| -> Result<()> {
        let quoted: Vec<String> =
            args.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { a.to_string() }).collect();
        println!("\n$ probe {}", quoted.join(" "));
        println!("# {title}");
        check(Command::new(&probe).args(args))
    };
    let cmd = format!("{} -rounds 1", tostring.display());
    show(
        "the seed's `stap -c ./systemtap02` on ToString: every value -500..=499 once",
        &["argdist", "--func", "ToString", "--arg", "0", "-c", &cmd],
    )?;
    show(
        "the same with --json: one object per table",
        &["argdist", "--func", "main.ToString", "--arg", "0", "--json", "-c", &cmd],
    )?;
    let regex = go_target("regex")?;
    let cmd = format!("{} -seconds 5", regex.display());
    show(
        "the seed's `stap main.stap 'process(...).function(\"main.UsingSubstring\")'`, which crashed \
         the program; probe uses RET probes, and the program runs to its end",
        &["latency", "--func", "main.UsingSubstring", "-c", &cmd],
    )?;
    Ok(())
}
