//! What `cargo xtask` and the integration tests (tests/support) both need: where the repository
//! is, and the commands that build the target programs of tests/targets into target/targets.
//! The commands are returned unrun: xtask runs them with its errors, the tests with theirs (and a
//! VM guest, which has no compilers, not at all).
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Where a Go target built with `version` goes: target/targets/<output>, or <output>-go<version>.
pub fn go_output(output: &str, version: Option<&str>) -> PathBuf {
    match version {
        None => targets_dir().join(output),
        Some(version) => targets_dir().join(format!("{output}-go{version}")),
    }
}

/// `go build FLAGS -o OUT .` in tests/targets/<name>.
pub fn go_build(mut go: Command, name: &str, out: &Path, flags: &[&str]) -> Command {
    go.arg("build").args(flags).arg("-o").arg(out).arg(".").current_dir(root().join("tests/targets").join(name));
    go
}

/// `cc -O2 FLAGS -o OUT SOURCE` for a C file under tests/targets (`source` relative to it).
pub fn cc(source: &str, out: &Path, flags: &[&str]) -> Command {
    let mut cc = Command::new("cc");
    cc.arg("-O2").args(flags).arg("-o").arg(out).arg(root().join("tests/targets").join(source));
    cc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_repository_and_its_targets() {
        assert!(root().join("Cargo.toml").is_file() && root().join("tests/targets").is_dir());
        assert!(targets_dir().ends_with("target/targets"));
        assert!(go_output("truth", Some("1.23")).ends_with("target/targets/truth-go1.23"));
        assert!(go_output("truth", None).ends_with("target/targets/truth"));
    }

    #[test]
    fn builds_with_the_named_toolchain() {
        let go = go(Some("1.21"));
        assert_eq!(go.get_program(), "/usr/lib/go-1.21/bin/go");
        assert!(go.get_envs().any(|(k, v)| k == "GOTOOLCHAIN" && v == Some("local".as_ref())));
        let build = go_build(go, "truth", Path::new("/tmp/out"), &["-ldflags=-s -w"]);
        let args: Vec<_> = build.get_args().collect();
        assert_eq!(args, ["build", "-ldflags=-s -w", "-o", "/tmp/out", "."]);
        assert_eq!(build.get_current_dir(), Some(root().join("tests/targets/truth").as_path()));
        let cc = cc("truth.c", Path::new("/tmp/c"), &["-g"]);
        let args: Vec<_> = cc.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[..4], ["-O2", "-g", "-o", "/tmp/c"]);
        assert!(args[4].ends_with("tests/targets/truth.c"));
    }
}
