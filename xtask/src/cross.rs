//! `cargo xtask build`: fully static (musl) `probe` binaries for x86-64 and aarch64, each with
//! the eBPF object for its architecture embedded (probe-user/build.rs picks it by target arch).
//! They run on any Linux userland, old glibc or none; `file` must say "statically linked".
use crate::{cargo, check, root};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// A Rust target `probe` ships for, and the linker that links it on this (x86-64 Debian) host.
pub struct StaticTarget {
    pub triple: &'static str,
    /// `None`: Rust's own choice (the host `cc`, with Rust's self-contained musl crt and libc).
    linker: Option<&'static str>,
}

pub const X86_64: StaticTarget = StaticTarget { triple: "x86_64-unknown-linux-musl", linker: None };
/// Debian's gcc-aarch64-linux-gnu (setup installs it): it links the aarch64 `probe` (libc and
/// crt are Rust's musl copies) and builds the arm64 VM's C targets.
pub const AARCH64_CC: &str = probe_helpers::targets::AARCH64_CC;
pub const AARCH64: StaticTarget = StaticTarget { triple: "aarch64-unknown-linux-musl", linker: Some(AARCH64_CC) };

/// The host build (the one the tests use), then both static binaries, each checked.
pub fn build_all() -> Result<()> {
    let host = crate::build(&["build"])?;
    println!("xtask: {}", host.display());
    for target in [X86_64, AARCH64] {
        let binary = build_static(&target)?;
        println!("xtask: {}: {}", binary.display(), describe(&binary)?);
    }
    Ok(())
}

/// `probe` for `target`, statically linked (checked), at target/<triple>/release/probe.
pub fn build_static(target: &StaticTarget) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "-p", "probe-user", "--target", target.triple]);
    let env_prefix = format!("CARGO_TARGET_{}", target.triple.to_uppercase().replace('-', "_"));
    if let Some(linker) = target.linker {
        cmd.env(format!("{env_prefix}_LINKER"), linker);
    }
    // Not position-independent: Rust's musl default is a static PIE, which `file` calls
    // "static-pie linked"; a plain static executable is what every loader and tool expects.
    cmd.env(format!("{env_prefix}_RUSTFLAGS"), "-C relocation-model=static");
    check(&mut cmd)
        .with_context(|| format!("{}: scripts/setup.sh installs the target and its linker", target.triple))?;
    let binary = root().join("target").join(target.triple).join("release/probe");
    let what = describe(&binary)?;
    if !what.contains("statically linked") || what.contains("interpreter") {
        bail!("{} is not statically linked: {what}", binary.display());
    }
    Ok(binary)
}

/// `file`'s description of `binary` (without the name).
fn describe(binary: &std::path::Path) -> Result<String> {
    let out = Command::new("file").arg("-b").arg(binary).output().context("running file")?;
    if !out.status.success() {
        bail!("file {} failed", binary.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
