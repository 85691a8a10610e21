//! The static x86-64 `probe` (musl, from `cargo xtask build`) on an older userland: Debian 11
//! (glibc 2.31) in a chroot that scripts/setup.sh makes with debootstrap from Debian's packages,
//! on this machine's kernel. The glibc build (target/release/probe) needs glibc 2.34 and does not
//! start there; that is checked too, so the chroot is shown to be the old userland it claims.
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Debian 11 root: $PROBE_BULLSEYE_ROOT, else /var/tmp/probe-bullseye (setup.sh's choice).
fn bullseye_root() -> PathBuf {
    let dir = std::env::var_os("PROBE_BULLSEYE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/probe-bullseye"));
    let version = std::fs::read_to_string(dir.join("etc/debian_version")).unwrap_or_else(|e| {
        panic!(
            "no Debian 11 chroot at {} ({e}): scripts/setup.sh makes it with `debootstrap --variant=minbase \
             bullseye`",
            dir.display()
        )
    });
    assert!(version.starts_with("11."), "{} holds Debian {version}, not Debian 11", dir.display());
    dir
}

/// The static build under test (`cargo xtask test` sets PROBE_STATIC_BIN).
fn static_probe() -> PathBuf {
    let path = std::env::var_os("PROBE_STATIC_BIN").map(PathBuf::from).unwrap_or_else(|| {
        panic!("PROBE_STATIC_BIN is not set: run `cargo xtask test`, or set it to a `cargo xtask build` musl binary")
    });
    assert!(path.is_file(), "PROBE_STATIC_BIN {} does not exist", path.display());
    path
}

/// A scratch directory inside the chroot, removed when dropped.
struct Scratch {
    host: PathBuf,
    /// The same directory as the chroot sees it.
    inside: PathBuf,
}

impl Scratch {
    fn new(root: &Path, tag: &str) -> Scratch {
        let inside = PathBuf::from(format!("/tmp/probe-old-userland-{tag}-{}", std::process::id()));
        let host = root.join(inside.strip_prefix("/").unwrap());
        let _ = std::fs::remove_dir_all(&host);
        std::fs::create_dir_all(&host).unwrap();
        Scratch { host, inside }
    }

    /// Copies `file` in; returns its path inside the chroot.
    fn add(&self, file: &Path, name: &str) -> String {
        std::fs::copy(file, self.host.join(name)).unwrap_or_else(|e| panic!("copying {}: {e}", file.display()));
        self.inside.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.host);
    }
}

/// Runs `args` chrooted into `root`, with /proc, /sys and /dev mounted in a private mount
/// namespace of its own (the mounts go away with it; nothing changes on the host).
fn in_chroot(root: &Path, args: &[&str]) -> Run {
    let script = r#"set -e
root="$1"; shift
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
exec chroot "$root" "$@""#;
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux)")
        .into()
}

#[test]
fn glibc_build_does_not_start_on_debian_11() {
    let root = bullseye_root();
    let scratch = Scratch::new(&root, "glibc");
    let probe = scratch.add(&probe_bin(), "probe");
    let run = in_chroot(&root, &[&probe, "--version"]);
    assert_ne!(run.code, 0, "the glibc build started on Debian 11: {}", run.stdout);
    assert!(run.stderr.contains("GLIBC_2.3"), "{}", run.stderr);
}

#[test]
fn static_build_traces_go_arguments_on_debian_11() {
    let root = bullseye_root();
    let scratch = Scratch::new(&root, "argdist");
    let probe = scratch.add(&static_probe(), "probe");
    let target = scratch.add(&target("tostring"), "tostring");
    let cmd = format!("{target} -rounds 2");
    let run = in_chroot(&root, &[&probe, "argdist", "--func", "ToString", "--arg", "0", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "ToString"), 2000);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{}", run.stdout);
    let table = &tables[0];
    let values: Vec<i64> = (0..2).flat_map(|_| -500..=499).collect();
    assert_eq!(table["function"], "main.ToString");
    assert_eq!(table["count"].as_u64().unwrap(), 2000);
    assert_eq!(table["sum"].as_i64().unwrap(), values.iter().sum::<i64>());
    assert_eq!(table["min"].as_i64().unwrap(), -500);
    assert_eq!(table["max"].as_i64().unwrap(), 499);
    assert_eq!(table["unreadable"].as_u64().unwrap(), 0);
    assert_eq!(json_buckets(table), expected_buckets(values), "buckets");
    assert_nothing_attached();
}

#[test]
fn static_build_times_go_calls_on_debian_11() {
    let root = bullseye_root();
    let scratch = Scratch::new(&root, "latency");
    let probe = scratch.add(&static_probe(), "probe");
    let target = scratch.add(&target("tostring"), "tostring");
    let cmd = format!("{target} -rounds 1");
    let run = in_chroot(&root, &[&probe, "latency", "--func", "main.ToString", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "ToString"), 1000);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{}", run.stdout);
    assert_eq!(tables[0]["function"], "main.ToString");
    assert_eq!(tables[0]["count"].as_u64().unwrap(), 1000);
    assert_eq!(tables[0]["abandoned"].as_u64().unwrap(), 0);
    assert_nothing_attached();
}
