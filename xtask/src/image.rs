//! `cargo xtask image`: an OCI image of the static x86-64 `probe` and nothing else (no shell, no
//! libraries: probe is statically linked), written without a container engine by
//! probe_helpers::oci, as an OCI archive that `podman load -i`, `docker load -i` and
//! `skopeo copy oci-archive:...` read.
use crate::{cross, root};
use anyhow::{Context, Result};
use probe_helpers::oci::{self, Image, ImageFile};
use std::path::PathBuf;
use std::process::Command;

/// The image's name once loaded (podman and Docker add nothing to a name with a registry).
pub fn name() -> String {
    format!("localhost/probe:{}", env!("CARGO_PKG_VERSION"))
}

/// target/image/probe-VERSION.oci.tar
pub fn archive_path() -> PathBuf {
    root().join(format!("target/image/probe-{}.oci.tar", env!("CARGO_PKG_VERSION")))
}

/// Builds the static binary (setup of `build` first), then the image; prints where and how big;
/// checks the manifests that deploy it.
pub fn run() -> Result<()> {
    crate::setup(&["build"])?;
    let archive = build()?;
    check_manifests()?;
    println!("xtask: load it with `podman load -i {}` (or docker load -i)", archive.display());
    Ok(())
}

/// The static binary and its image; returns the archive's path.
pub fn build() -> Result<PathBuf> {
    let binary = cross::build_static(&cross::X86_64)?;
    let archive = archive_path();
    std::fs::create_dir_all(archive.parent().expect("target/image")).context("creating target/image")?;
    let label = |k: &str, v: &str| (format!("org.opencontainers.image.{k}"), v.to_string());
    let image = Image {
        name: name(),
        files: vec![ImageFile { path: "probe".into(), source: binary, mode: 0o755 }],
        dirs: Vec::new(),
        entrypoint: vec!["/probe".into()],
        labels: vec![
            label("title", "probe"),
            label("version", env!("CARGO_PKG_VERSION")),
            label("description", "Function latency and argument distributions of running Go, C, C++ and Rust programs"),
            label("licenses", "MIT OR Apache-2.0"),
        ],
    };
    let written = oci::write_archive(&image, &archive).with_context(|| format!("writing {}", archive.display()))?;
    println!(
        "xtask: {} ({}): {} as an archive, layer {} gzipped, {} unpacked; image id {}",
        archive.display(),
        image.name,
        mib(written.archive_bytes),
        mib(written.layer_bytes),
        mib(written.unpacked_bytes),
        &written.config_digest["sha256:".len()..][..12]
    );
    Ok(archive)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The manifest checker: kubernetes-validate from PyPI, pinned, which ships the Kubernetes
/// JSON schemas inside the package (it checks offline, every field and type, strictly).
const VALIDATOR: &str = "kubernetes-validate";
const VALIDATOR_VERSION: &str = "1.37.0";
/// The Kubernetes versions the manifests are checked against: the validator's newest and
/// an older one still common in managed clusters.
const KUBERNETES: &[&str] = &["1.37.0", "1.28.0"];

/// deploy/kubernetes against the Kubernetes schemas (strict: unknown fields are errors).
pub fn check_manifests() -> Result<()> {
    let venv = root().join(format!("target/{VALIDATOR}-{VALIDATOR_VERSION}"));
    let validator = venv.join(format!("bin/{VALIDATOR}"));
    if !validator.exists() {
        crate::check(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv))?;
        crate::check(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            &format!("{VALIDATOR}=={VALIDATOR_VERSION}"),
        ]))?;
    }
    let dir = root().join("deploy/kubernetes");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    // kustomization.yaml is kustomize's, not a Kubernetes object.
    manifests.retain(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"));
    manifests.sort();
    for version in KUBERNETES {
        println!("xtask: deploy/kubernetes against the schemas of Kubernetes {version}");
        crate::check(Command::new(&validator).args(["--strict", "-k", version]).args(&manifests))?;
    }
    Ok(())
}
