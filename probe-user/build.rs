//! Builds the eBPF object (probe-ebpf, bpfel target, pinned nightly) and hands its path to
//! the `probe` binary, which embeds it: one self-contained executable.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const NIGHTLY: &str = "nightly-2026-05-19";
const EBPF_TARGET: &str = "bpfel-unknown-none";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let ebpf_dir = manifest_dir.join("../probe-ebpf");
    for watched in ["src", "Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(watched).display());
    }
    // One eBPF target dir for every host profile, so debug, release and test builds share it.
    let target_dir = manifest_dir.join("../target/ebpf");
    let object = build_ebpf(&ebpf_dir, &target_dir);
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("probe.bpf.o");
    std::fs::copy(&object, &out).expect("copy eBPF object");
}

fn build_ebpf(ebpf_dir: &Path, target_dir: &Path) -> PathBuf {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(ebpf_dir)
        .arg(format!("+{NIGHTLY}"))
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
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for the eBPF crate ({e}); run scripts/setup.sh first"));
    if !status.success() {
        panic!(
            "building the eBPF crate failed; `scripts/setup.sh` installs {NIGHTLY} with rust-src \
             and bpf-linker, then retry"
        );
    }
    target_dir.join(EBPF_TARGET).join("release/probe-ebpf")
}
