//! What `cargo xtask` and the integration tests (tests/integration/support.rs) both need: where
//! the repository is, and the table of target programs (tests/targets/{c,cpp,go,rust}) built
//! into target/targets. xtask builds the table before the integration tests run, and the tests
//! build it on first use (a VM guest, which has no compilers, only checks the host built them).
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod oci;
pub mod targets;

/// The repository's root (this crate is xtask/helpers).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("xtask/helpers has two parents").to_path_buf()
}

/// target/targets, where the target programs are built; created if missing.
pub fn targets_dir() -> PathBuf {
    let dir = root().join("target/targets");
    std::fs::create_dir_all(&dir).expect("creating target/targets");
    dir
}

/// Go toolchains the Go targets are built with: Debian 12's, and two from bookworm-backports
/// (scripts/setup.sh installs them). Their prologues differ: 1.17-1.20 bodies start with
/// `SUBQ $n, SP`, 1.21 and later with `PUSHQ BP`.
pub const GO_VERSIONS: [&str; 3] = ["1.19", "1.21", "1.23"];

/// `go`: Debian's (None), or Go `version` from /usr/lib/go-<version> with no toolchain download.
pub fn go(version: Option<&str>) -> Command {
    match version {
        None => Command::new("go"),
        Some(version) => {
            let mut go = Command::new(format!("/usr/lib/go-{version}/bin/go"));
            go.env("GOTOOLCHAIN", "local");
            go
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_repository_and_its_targets() {
        assert!(root().join("Cargo.toml").is_file() && root().join("tests/targets/go").is_dir());
        assert!(targets_dir().ends_with("target/targets"));
    }

    #[test]
    fn builds_with_the_named_toolchain() {
        let go = go(Some("1.21"));
        assert_eq!(go.get_program(), "/usr/lib/go-1.21/bin/go");
        assert!(go.get_envs().any(|(k, v)| k == "GOTOOLCHAIN" && v == Some("local".as_ref())));
    }
}
