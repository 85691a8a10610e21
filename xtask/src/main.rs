//! `cargo xtask <command>`: the project's one entry point for building, testing and demos.
//! `cargo xtask --help` lists the commands; each has its own `--help`.
mod bench;
mod cross;
mod doc_links;
mod fresh;
mod fuzz;
mod image;
mod modules;
mod vm;
mod vm_arm64;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
/// Shared with the integration tests (xtask/helpers).
use probe_helpers::{root, targets};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Build, test, demo and measure probe")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing (scripts/setup.sh) for the named groups (default: all of them);
    /// every other command installs its own group first
    Setup {
        /// demo, test, build, vm, arm64, bench, fuzz or all
        #[arg(value_parser = ["demo", "test", "build", "vm", "arm64", "bench", "fuzz", "all"])]
        groups: Vec<String>,
    },
    /// Setup if needed, then target/release/probe with the eBPF object embedded, and static
    /// (musl) binaries for x86-64 and aarch64 in target/<triple>/release/probe
    Build,
    /// Setup, formatting and clippy, unit tests, then integration tests that load real probes
    Test {
        /// Passed to the integration tests' harness (`cargo xtask test -- NAME`)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        extra: Vec<String>,
    },
    /// Which module imports which, per crate; fails on an import circle (also part of `test`)
    Modules {
        /// Another checkout to read (default: this one)
        checkout: Option<PathBuf>,
    },
    /// Build, then run probe with the given arguments (`cargo xtask run -- argdist ...`)
    Run {
        /// probe's arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The static x86-64 probe as an OCI image (from scratch, no container engine) in
    /// target/image/probe-VERSION.oci.tar, for `podman load -i` or `docker load -i`; checks
    /// deploy/kubernetes against the Kubernetes schemas
    Image,
    /// Build the seed's example programs and show probe on them
    Demo,
    /// Overhead, start-up, memory, scale, drain and accuracy next to bpftrace -> bench/RESULTS.md
    Bench(bench::Options),
    /// Run the ELF and .gopclntab fuzz targets for a while
    Fuzz {
        /// Seconds per fuzz target
        #[arg(default_value_t = 120)]
        secs: u64,
    },
    /// Each command's setup on a fresh Debian 12 root with qemu-utils from bookworm-backports,
    /// as this project's machine image has it (debootstrap; about 15 minutes)
    FreshMachine,
    /// The integration suite on another kernel in QEMU; `--arch arm64`: the static arm64 probe
    /// in an arm64 guest (TCG)
    VmTest {
        /// Which kernel: a Debian guest's (x86-64: 6.1, 5.10, or the host's alone; arm64: 6.1, 6.12)
        #[arg(long, default_value = "6.1", value_parser = ["6.1", "5.10", "6.12", "host"])]
        kernel: String,
        /// The guest's architecture
        #[arg(long, default_value = "x86-64", value_parser = ["x86-64", "arm64"])]
        arch: String,
    },
}

fn main() {
    let result = match Cli::parse().command {
        Task::Setup { groups } => {
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            setup(if groups.is_empty() { &["all"] } else { &groups })
        }
        Task::Build => cross::build_all(),
        Task::Test { extra } => test(&extra),
        Task::Modules { checkout } => modules::show(&checkout.unwrap_or_else(root)),
        Task::Run { args } => run(&args),
        Task::Demo => demo(),
        Task::Image => image::run(),
        Task::Bench(options) => bench::run(&options),
        Task::Fuzz { secs } => fuzz::run(secs),
        Task::FreshMachine => fresh::run(),
        Task::VmTest { kernel, arch } => match arch.as_str() {
            "arm64" => vm_arm64::run(&kernel),
            _ if kernel == "6.12" => Err(anyhow::anyhow!("--kernel 6.12 is an arm64 guest's; add --arch arm64")),
            _ => vm::run(&kernel),
        },
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
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

/// scripts/setup.sh installs what `groups` need and is missing; a second run takes about a
/// second. Each command asks only for its own groups, so a tool it does not run can never stop
/// it; a failed install names the command (this process's arguments).
fn setup(groups: &[&str]) -> Result<()> {
    let command: Vec<String> = std::env::args().skip(1).collect();
    check(
        Command::new("bash")
            .arg(root().join("scripts/setup.sh"))
            .args(groups)
            .env("PROBE_SETUP_FOR", format!("cargo xtask {}", command.join(" "))),
    )
}

/// Setup for `groups`, then target/release/probe.
fn build(groups: &[&str]) -> Result<PathBuf> {
    setup(groups)?;
    check(cargo().args(["build", "--release", "-p", "probe-user"]))?;
    Ok(root().join("target/release/probe"))
}

/// The workspace's own crates (vendor/aya is a patched copy of aya, left as upstream wrote it).
const OWN_PACKAGES: [&str; 8] = ["-p", "probe-user", "-p", "xtask", "-p", "probe-helpers", "-p", "probe-tests"];

/// House rules: rustfmt.toml's formatting and clippy without warnings. The eBPF crate builds
/// with its own nightly (no rustfmt component there), so its files go through rustfmt itself.
fn lint() -> Result<()> {
    modules::check(&root())?;
    println!("xtask: formatting (rustfmt.toml) and clippy, warnings denied");
    check(cargo().arg("fmt").args(OWN_PACKAGES).arg("--check"))?;
    let ebpf_sources = ["probe-ebpf/src/lib.rs", "probe-ebpf/src/main.rs"].map(|f| root().join(f));
    check(Command::new("rustfmt").args(["--check", "--edition", "2021"]).args(ebpf_sources).current_dir(root()))?;
    check(cargo().arg("clippy").args(OWN_PACKAGES).args(["--all-targets", "--release", "--", "-D", "warnings"]))
}

fn test(extra: &[String]) -> Result<()> {
    let links = doc_links::check(&root())?;
    println!("xtask: docs: {links} links in README.md and docs/*.md resolve");
    let probe = build(&["test"])?;
    lint()?;
    image::check_manifests()?;
    println!("xtask: unit tests (shared kernel/user crate)");
    check(
        cargo()
            .args(["test", "--lib", "--manifest-path", "probe-ebpf/Cargo.toml"])
            .arg("--target-dir")
            .arg(root().join("target/ebpf-host")),
    )?;
    println!("xtask: unit tests (probe)");
    check(cargo().args(["test", "--release", "-p", "probe-user"]))?;
    println!("xtask: unit tests (xtask and the helpers it shares with the integration tests)");
    check(cargo().args(["test", "--release", "-p", "xtask", "-p", "probe-helpers"]))?;
    integration_tests(&probe, extra)
}

fn integration_tests(probe: &Path, extra: &[String]) -> Result<()> {
    // tests/integration/old_userland.rs runs the static build on Debian 11.
    let static_probe = cross::build_static(&cross::X86_64)?;
    let started = std::time::Instant::now();
    let (built, all) = targets::build_all(targets::Group::Tests).map_err(anyhow::Error::msg)?;
    println!(
        "xtask: target programs: {built} of {all} built, the rest current ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    // tests/integration/containers.rs runs probe from its image, as a cluster would.
    let image = image::build()?;
    println!("xtask: integration tests (real probes on real targets, one at a time)");
    // One at a time: the tests assert that no probe program stays loaded after each run.
    check(
        cargo()
            .args(["test", "--release", "-p", "probe-tests", "--"])
            .arg("--test-threads=1")
            .args(extra)
            .env("PROBE_BIN", probe)
            .env("PROBE_STATIC_BIN", static_probe)
            .env("PROBE_IMAGE", image),
    )
}

fn run(args: &[String]) -> Result<()> {
    let probe = build(&["demo"])?;
    let status = Command::new(probe).args(args).status()?;
    std::process::exit(status.code().unwrap_or(1));
}

/// The target program `name` of the table (xtask/helpers/src/targets.rs), built into
/// target/targets if it is out of date.
fn target(name: &str) -> Result<PathBuf> {
    let output = targets::output(name).with_context(|| format!("{name} is not in the table of targets"))?;
    targets::build(&output, targets::Arch::Host, &output.path()).map_err(anyhow::Error::msg)?;
    Ok(output.path())
}

fn demo() -> Result<()> {
    let probe = build(&["demo"])?;
    let tostring = target("tostring")?;
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
    let regex = target("regex")?;
    let cmd = format!("{} -seconds 5", regex.display());
    show(
        "the seed's `stap main.stap 'process(...).function(\"main.UsingSubstring\")'`, which crashed \
         the program; probe uses RET probes, and the program runs to its end",
        &["latency", "--func", "main.UsingSubstring", "-c", &cmd],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Task, clap::Error> {
        Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn passes_what_follows_the_separator_on() {
        let Ok(Task::Test { extra }) = parse(&["test", "--", "--skip", "slow"]) else { panic!("test") };
        assert_eq!(extra, ["--skip", "slow"]);
        let Ok(Task::Test { extra }) = parse(&["test"]) else { panic!("test") };
        assert!(extra.is_empty());
        let Ok(Task::Run { args }) = parse(&["run", "--", "argdist", "--func", "f", "-c", "x"]) else { panic!("run") };
        assert_eq!(args, ["argdist", "--func", "f", "-c", "x"]);
    }

    #[test]
    fn reads_each_command_s_options() {
        assert!(matches!(parse(&["fuzz"]), Ok(Task::Fuzz { secs: 120 })));
        assert!(matches!(parse(&["fuzz", "30"]), Ok(Task::Fuzz { secs: 30 })));
        let Ok(Task::VmTest { kernel, arch }) = parse(&["vm-test", "--kernel", "5.10"]) else { panic!("vm-test") };
        assert_eq!((kernel.as_str(), arch.as_str()), ("5.10", "x86-64"));
        let Ok(Task::VmTest { kernel, .. }) = parse(&["vm-test"]) else { panic!("vm-test") };
        assert_eq!(kernel, "6.1");
        let Ok(Task::VmTest { kernel, arch }) = parse(&["vm-test", "--arch", "arm64", "--kernel", "6.12"]) else {
            panic!("vm-test arm64")
        };
        assert_eq!((kernel.as_str(), arch.as_str()), ("6.12", "arm64"));
        assert!(parse(&["vm-test", "--arch", "riscv"]).is_err());
        assert!(parse(&["vm-test", "--kernel", "4.19"]).is_err());
        assert!(parse(&["bench", "--no-scale"]).is_ok());
        assert!(matches!(parse(&["image"]), Ok(Task::Image)));
        assert!(parse(&["bench", "--fast"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
    }
}
