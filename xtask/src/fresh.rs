//! `cargo xtask fresh-machine`: does every command's setup work on a machine of this project's
//! image with nothing of ours installed? It makes a Debian 12 root (debootstrap, minbase) with
//! `qemu-utils` from bookworm-backports preinstalled, as the image has it (and no backports
//! source, as the image has none), then for each xtask command takes a fresh copy of that root
//! and runs setup's package steps for that command alone (`scripts/setup.sh --packages-only
//! GROUP`). Setup checks every tool it installs; after it, a smoke check uses the tools the
//! command runs (compile a C and a Go program, start QEMU, ...), and the packages the command must
//! not pull in are checked absent. The Rust pieces (rustup's nightly, bpf-linker) are the host's
//! and not repeated. Downloads are shared between the copies (one apt archive cache).
use crate::{check, root};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const MIRROR: &str = "http://deb.debian.org/debian";

/// One xtask command as a fresh machine meets it.
struct Case {
    command: &'static str,
    group: &'static str,
    /// Shell commands run in the root after setup; each must exit 0.
    smoke: &'static [&'static str],
    /// Packages this command must not install.
    absent: &'static [&'static str],
}

/// What only vm-test, bench or the static builds need: the demo installs none of it.
const NOT_FOR_DEMO: &[&str] = &[
    "qemu-system-x86",
    "qemu-system-arm",
    "busybox-static",
    "cpio",
    "debootstrap",
    "prometheus",
    "bpftrace",
    "gcc-aarch64-linux-gnu",
    "golang-1.21-go",
    "golang-1.23-go",
    "caddy",
    "redis-server",
];

const HELLO_C: &str = "printf '#include <stdio.h>\\nint main(void){puts(\"hi\");return 0;}\\n' > /tmp/h.c";
const HELLO_GO: &str =
    "mkdir -p /tmp/hg && cd /tmp/hg && printf 'package main\\nfunc main(){println(\"hi\")}\\n' > m.go";

const CASES: &[Case] = &[
    Case {
        command: "demo",
        group: "demo",
        smoke: &[
            "cc --version >/dev/null",
            HELLO_C,
            "cc -O2 -o /tmp/h /tmp/h.c && /tmp/h",
            HELLO_GO,
            "cd /tmp/hg && HOME=/root GOCACHE=/tmp/gocache go build -o hg m.go && ./hg",
        ],
        absent: NOT_FOR_DEMO,
    },
    Case {
        command: "test",
        group: "test",
        smoke: &[
            HELLO_GO,
            "cd /tmp/hg && for v in 1.21 1.23; do GOTOOLCHAIN=local HOME=/root GOCACHE=/tmp/gocache /usr/lib/go-$v/bin/go build -o hg$v m.go && ./hg$v || exit 1; done",
            "bpftrace --version",
            "prometheus --version 2>&1 | head -1",
            "promtool --version 2>&1 | head -1",
            "echo 'int main(){}' | c++ -x c++ -o /tmp/cxx - && objcopy --strip-all /tmp/cxx",
            "sqlite3 --version && groff --version | head -1 && file /bin/true && debootstrap --version",
        ],
        absent: &["qemu-system-x86", "qemu-system-arm", "gcc-aarch64-linux-gnu"],
    },
    Case {
        command: "build",
        group: "build",
        smoke: &["aarch64-linux-gnu-gcc --version | head -1", "file /bin/true"],
        absent: &["qemu-system-x86", "qemu-system-arm", "prometheus", "bpftrace"],
    },
    Case {
        command: "vm-test",
        group: "vm",
        smoke: &[
            "qemu-system-x86_64 --version | head -1",
            "busybox --help | head -1 && cpio --version | head -1 && curl --version | head -1 && xz --version | head -1",
        ],
        absent: &["qemu-system-arm", "gcc-aarch64-linux-gnu"],
    },
    Case {
        command: "vm-test --arch arm64",
        group: "arm64",
        smoke: &[
            "qemu-system-aarch64 --version | head -1",
            HELLO_C,
            // The static arm64 C targets need the arm64 C library's headers and archive.
            "aarch64-linux-gnu-gcc -static -O2 -o /tmp/h-arm64 /tmp/h.c && file /tmp/h-arm64 | grep -q 'ARM aarch64.*statically linked'",
            HELLO_GO,
            "cd /tmp/hg && GOARCH=arm64 GOTOOLCHAIN=local HOME=/root GOCACHE=/tmp/gocache /usr/lib/go-1.23/bin/go build -o hg-arm64 m.go",
        ],
        absent: &["qemu-system-x86", "prometheus", "bpftrace"],
    },
    Case {
        command: "bench",
        group: "bench",
        smoke: &["/usr/bin/time -f %e true", "bpftrace --version", "caddy version", "redis-benchmark --version"],
        absent: &["qemu-system-x86", "qemu-system-arm"],
    },
    Case { command: "fuzz", group: "fuzz", smoke: &["objcopy --version | head -1"], absent: NOT_FOR_DEMO },
];

pub fn run() -> Result<()> {
    let dir = cache_dir();
    let base = base_root(&dir)?;
    let archives = dir.join("archives");
    std::fs::create_dir_all(archives.join("partial"))?;
    let mut failures = Vec::new();
    let started = Instant::now();
    for case in CASES {
        let began = Instant::now();
        let result = run_case(case, &base, &dir, &archives);
        let secs = began.elapsed().as_secs();
        match result {
            Ok(installed) => println!(
                "fresh-machine: cargo xtask {}: setup installed {installed} packages, checks passed ({secs} s)",
                case.command
            ),
            Err(e) => {
                println!("fresh-machine: cargo xtask {}: FAILED ({secs} s): {e:#}", case.command);
                failures.push(case.command);
            }
        }
    }
    if let Err(e) = refusal_names_package_reason_and_command(&base, &dir, &archives) {
        println!("fresh-machine: a failed install: FAILED: {e:#}");
        failures.push("(a failed install's message)");
    }
    let secs = started.elapsed().as_secs();
    if !failures.is_empty() {
        bail!(
            "on a fresh Debian 12 root, setup failed for: cargo xtask {} ({secs} s)",
            failures.join(", cargo xtask ")
        );
    }
    println!(
        "fresh-machine: every command's setup passed on a fresh Debian 12 root with backports' qemu-utils ({secs} s)"
    );
    Ok(())
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/probe/fresh-machine")
}

/// The image as it comes: Debian 12 minbase plus qemu-utils from bookworm-backports, whose
/// source list is then removed again. Made once under a temporary name.
fn base_root(dir: &Path) -> Result<PathBuf> {
    let base = dir.join("bookworm");
    if base.join("etc/probe-fresh-base").exists() {
        return Ok(base);
    }
    let partial = dir.join("bookworm.partial");
    remove_tree(&partial)?;
    std::fs::create_dir_all(dir)?;
    println!("fresh-machine: making a Debian 12 root (debootstrap --variant=minbase bookworm), once");
    check(Command::new("debootstrap").args(["--variant=minbase", "bookworm"]).arg(&partial).arg(MIRROR))?;
    let sources = partial.join("etc/apt/sources.list.d/image-backports.list");
    std::fs::write(&sources, format!("deb {MIRROR} bookworm-backports main\n"))?;
    {
        let root = Mounted::new(&partial, None)?;
        root.sh("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports qemu-utils >/dev/null && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb")?;
    }
    std::fs::remove_file(&sources)?;
    std::fs::write(partial.join("etc/probe-fresh-base"), "Debian 12 minbase + qemu-utils from bookworm-backports\n")?;
    std::fs::rename(&partial, &base)?;
    Ok(base)
}

/// A fresh copy of the base, setup for one command, its smoke checks; returns how many packages
/// setup installed.
fn run_case(case: &Case, base: &Path, dir: &Path, archives: &Path) -> Result<usize> {
    let scratch = dir.join(format!("scratch-{}", case.group));
    remove_tree(&scratch)?;
    check(Command::new("cp").arg("-a").arg(base).arg(&scratch))?;
    let result = (|| {
        let chroot = Mounted::new(&scratch, Some(archives))?;
        let before = chroot.packages()?;
        std::fs::create_dir_all(scratch.join("tmp/probe/scripts"))?;
        std::fs::copy(root().join("scripts/setup.sh"), scratch.join("tmp/probe/scripts/setup.sh"))?;
        chroot
            .sh(&format!(
                "PROBE_SETUP_FOR='cargo xtask {}' bash /tmp/probe/scripts/setup.sh --packages-only {}",
                case.command, case.group
            ))
            .context("scripts/setup.sh")?;
        for smoke in case.smoke {
            chroot.sh(smoke).with_context(|| format!("after setup: `{smoke}`"))?;
        }
        let after = chroot.packages()?;
        let wrong: Vec<&str> = case.absent.iter().copied().filter(|p| after.iter().any(|a| a == p)).collect();
        if !wrong.is_empty() {
            bail!("setup installed {} which cargo xtask {} does not run", wrong.join(", "), case.command);
        }
        Ok(after.len().saturating_sub(before.len()))
    })();
    remove_tree(&scratch)?;
    result
}

/// What setup did before it chose QEMU's suite: Debian 12's QEMU on this image, which apt
/// refuses (backports' qemu-utils breaks it). Setup must stop with one line that names the
/// package, apt's reason and the command.
fn refusal_names_package_reason_and_command(base: &Path, dir: &Path, archives: &Path) -> Result<()> {
    let scratch = dir.join("scratch-refusal");
    remove_tree(&scratch)?;
    check(Command::new("cp").arg("-a").arg(base).arg(&scratch))?;
    let result = (|| {
        let _mounted = Mounted::new(&scratch, Some(archives))?;
        std::fs::create_dir_all(scratch.join("tmp/probe/scripts"))?;
        std::fs::copy(root().join("scripts/setup.sh"), scratch.join("tmp/probe/scripts/setup.sh"))?;
        let out = Command::new("chroot")
            .arg(&scratch)
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "PROBE_QEMU_SUITE=default",
            ])
            .args([
                "PROBE_SETUP_FOR=cargo xtask vm-test",
                "bash",
                "/tmp/probe/scripts/setup.sh",
                "--packages-only",
                "vm",
            ])
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("setup: error:")).collect();
        println!(
            "fresh-machine: Debian 12's own QEMU on this image, as setup used to install it:\n  {}",
            error.join("\n  ")
        );
        let line = match error.as_slice() {
            [line] if !out.status.success() => *line,
            _ => bail!("expected setup to fail with one error line; exit {}, stderr: {stderr}", out.status),
        };
        for needle in ["qemu-system-x86", "apt:", "cargo xtask vm-test"] {
            if !line.contains(needle) {
                bail!("the error line does not name {needle:?}: {line}");
            }
        }
        Ok(())
    })();
    remove_tree(&scratch)?;
    result
}

/// Removes a scratch root, never while anything is mounted under it (a bind of /dev or /sys
/// would take the host's with it).
fn remove_tree(path: &Path) -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    if let Some(point) = mounts.lines().filter_map(|l| l.split(' ').nth(1)).find(|p| Path::new(p).starts_with(path)) {
        bail!("{point} is still mounted; not removing {}", path.display());
    }
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// A root with /proc, /dev and /sys mounted (and the shared apt cache), unmounted on drop.
struct Mounted {
    root: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Mounted {
    fn new(root: &Path, archives: Option<&Path>) -> Result<Mounted> {
        let mut mounted = Mounted { root: root.to_path_buf(), mounts: Vec::new() };
        std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).context("copying /etc/resolv.conf")?;
        mounted.mount(&["-t", "proc", "proc"], "proc")?;
        mounted.mount(&["--rbind", "/dev"], "dev")?;
        mounted.mount(&["--rbind", "/sys"], "sys")?;
        if let Some(archives) = archives {
            mounted.mount(&["--bind", &archives.display().to_string()], "var/cache/apt/archives")?;
        }
        Ok(mounted)
    }

    fn mount(&mut self, args: &[&str], at: &str) -> Result<()> {
        let point = self.root.join(at);
        std::fs::create_dir_all(&point)?;
        check(Command::new("mount").args(args).arg(&point))?;
        self.mounts.push(point);
        Ok(())
    }

    /// `sh -c SCRIPT` in the root with a clean environment, its output passed through.
    fn sh(&self, script: &str) -> Result<()> {
        let status = Command::new("chroot")
            .arg(&self.root)
            .args(["/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"])
            .args(["LANG=C.UTF-8", "/bin/sh", "-c", script])
            .status()
            .context("running chroot")?;
        if !status.success() {
            bail!("exited with {status}");
        }
        Ok(())
    }

    /// The installed packages' names.
    fn packages(&self) -> Result<Vec<String>> {
        let out = Command::new("chroot")
            .arg(&self.root)
            .args(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().filter(|l| l.ends_with("ii ")).filter_map(|l| l.split(' ').next()).map(String::from).collect())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for point in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-R").arg("-l").arg(point).status();
        }
    }
}
