//! `cargo xtask fuzz [SECS]`: runs each fuzz target of probe-user/fuzz (cargo-fuzz, libFuzzer)
//! for SECS seconds (default 120), seeded with the test programs. Not part of `test`: fuzzing
//! takes minutes and finds nothing new on most runs.
use crate::{build, check, root, target};
use anyhow::Result;
use std::path::Path;
use std::process::Command;

/// cargo-fuzz needs a nightly: the eBPF crate's, pinned in probe-ebpf/rust-toolchain.toml.
fn nightly() -> Result<String> {
    let toml = std::fs::read_to_string(root().join("probe-ebpf/rust-toolchain.toml"))?;
    toml.lines()
        .find_map(|l| l.trim().strip_prefix("channel")?.trim().strip_prefix('=').map(|v| v.trim().trim_matches('"')))
        .map(|channel| format!("+{channel}"))
        .ok_or_else(|| anyhow::anyhow!("no channel in probe-ebpf/rust-toolchain.toml"))
}

pub fn run(secs: u64) -> Result<()> {
    build(&["fuzz"])?; // setup, and the eBPF object the fuzzed crate embeds
    if Command::new("cargo").args(["fuzz", "--version"]).output().map_or(true, |o| !o.status.success()) {
        check(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz = root().join("probe-user/fuzz");
    seed_corpus(&fuzz)?;
    let nightly = nightly()?;
    for (target, max_len) in [("elf_functions", "1400000"), ("gopclntab", "400000")] {
        println!("xtask: fuzzing {target} for {secs} s");
        check(
            Command::new("cargo")
                .current_dir(&fuzz)
                .args([nightly.as_str(), "fuzz", "run", "-O", target])
                .arg(fuzz.join("corpus").join(target))
                .arg("--")
                .arg(format!("-max_total_time={secs}"))
                .arg(format!("-max_len={max_len}"))
                .arg("-rss_limit_mb=4096"),
        )?;
    }
    Ok(())
}

/// Real inputs to start from: a Go program (with its .gopclntab alone for that target) and
/// the C test programs.
fn seed_corpus(fuzz: &Path) -> Result<()> {
    let elf = fuzz.join("corpus/elf_functions");
    let pcln = fuzz.join("corpus/gopclntab");
    std::fs::create_dir_all(&elf)?;
    std::fs::create_dir_all(&pcln)?;
    let go = target("tostring")?;
    std::fs::copy(&go, elf.join("tostring"))?;
    check(
        Command::new("objcopy")
            .args(["-O", "binary", "--only-section=.gopclntab"])
            .arg(&go)
            .arg(pcln.join("tostring.gopclntab")),
    )?;
    std::fs::copy(target("cvalues")?, elf.join("cvalues"))?;
    Ok(())
}
