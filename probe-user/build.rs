//! Builds the eBPF object (probe-ebpf, bpfel target, pinned nightly) and hands its path to
//! the `probe` binary, which embeds it: one self-contained executable.
//!
//! The object is built for the architecture `probe` is compiled for: the programs read that
//! architecture's `pt_regs` (x86-64 or aarch64), selected by aya-ebpf's `bpf_target_arch` cfg.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const EBPF_TARGET: &str = "bpfel-unknown-none";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let ebpf_dir = manifest_dir.join("../probe-ebpf");
    for watched in ["src", "build.rs", "Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(watched).display());
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    // One eBPF target dir per architecture for every host profile, so debug, release and test
    // builds share it and the two architectures do not invalidate each other's build.
    let target_dir = match arch.as_str() {
        "x86_64" => manifest_dir.join("../target/ebpf"),
        "aarch64" => manifest_dir.join("../target/ebpf-aarch64"),
        other => panic!("probe supports x86_64 and aarch64, not {other}"),
    };
    let object = build_ebpf(&ebpf_dir, &target_dir, &arch);
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("probe.bpf.o");
    std::fs::copy(&object, &out).expect("copy eBPF object");
}

/// The eBPF crate's nightly, pinned once: the `channel` of probe-ebpf/rust-toolchain.toml.
fn pinned_nightly(ebpf_dir: &Path) -> String {
    let toml = std::fs::read_to_string(ebpf_dir.join("rust-toolchain.toml")).expect("probe-ebpf/rust-toolchain.toml");
    toml.lines()
        .find_map(|l| {
            l.trim().strip_prefix("channel")?.trim().strip_prefix('=').map(|v| v.trim().trim_matches('"').to_string())
        })
        .expect("a channel in probe-ebpf/rust-toolchain.toml")
}

fn build_ebpf(ebpf_dir: &Path, target_dir: &Path, arch: &str) -> PathBuf {
    let nightly = pinned_nightly(ebpf_dir);
    let mut cmd = Command::new("cargo");
    cmd.current_dir(ebpf_dir)
        .arg(format!("+{nightly}"))
        .args(["build", "--release", "--bins", "--target", EBPF_TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir);
    // The outer build's compiler settings are for the host; none of them may leak in.
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(key);
    }
    // x86-64 is aya-ebpf's default here (the host's arch); aarch64 needs the cfg in every crate,
    // probe-ebpf's own register reading included.
    if arch == "aarch64" {
        cmd.env("CARGO_ENCODED_RUSTFLAGS", "--cfg\x1fbpf_target_arch=\"aarch64\"");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for the eBPF crate ({e}); run scripts/setup.sh first"));
    if !status.success() {
        panic!(
            "building the eBPF crate failed; `scripts/setup.sh demo` installs {nightly} with rust-src \
             and bpf-linker, then retry"
        );
    }
    target_dir.join(EBPF_TARGET).join("release/probe-ebpf")
}
