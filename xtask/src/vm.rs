//! `cargo xtask vm-test [--kernel 6.1|5.10|host]`: the integration suite on another kernel.
//!
//! The host suite runs first: it is the baseline, and it builds every target program into
//! target/targets. Then a Debian kernel (downloaded once, cached under ~/.cache/probe/vm) boots
//! under QEMU with an initramfs holding busybox, `probe`, the integration test executables,
//! the targets and the libraries they link, all at their host paths. A tiny /init mounts
//! proc/sys/debugfs/tracefs/bpffs, runs each test executable, and writes the number of failed
//! executables to a second serial port; that number, not the console text, is the verdict.
use crate::{cargo, check, integration_tests, root};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A Debian kernel we can boot: its suite's cloud image (virtio, serial console, BPF, uprobes).
struct DebianKernel {
    label: &'static str,
    suite: &'static str,
}

const KERNELS: [DebianKernel; 2] =
    [DebianKernel { label: "6.1", suite: "bookworm" }, DebianKernel { label: "5.10", suite: "bullseye" }];
pub(crate) const MIRROR: &str = "http://deb.debian.org/debian";
const METAPACKAGE: &str = "linux-image-cloud-amd64";
/// Printed by the guest's /init first: a KVM guest that has not printed it by then is stuck
/// (nested virtualisation on some hosts hangs at "Booting from ROM"), so we fall back to TCG.
const BOOT_MARKER: &str = "probe-vm: init started";
const KVM_BOOT_TIMEOUT: Duration = Duration::from_secs(20);
const GUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `label`: a label of KERNELS, or "host" (clap accepts only those).
pub fn run(label: &str) -> Result<()> {
    let probe = crate::build(&["vm"])?;
    // PROBE_VM_TESTS=NAME,...: only those test executables, in the guest only (the targets
    // must exist from an earlier run): a quick loop while debugging one kernel.
    let only: Option<Vec<String>> =
        std::env::var("PROBE_VM_TESTS").ok().map(|v| v.split(',').map(|s| format!("{s}-")).collect());
    if only.is_none() {
        println!("xtask: integration tests on the host (baseline; builds the target programs)");
        integration_tests(&probe, &[])?;
    }
    if label == "host" {
        return Ok(());
    }
    let kernel = KERNELS
        .iter()
        .find(|k| k.label == label)
        .with_context(|| format!("--kernel {label}: unknown; use 6.1, 5.10 or host"))?;
    let vmlinuz = fetch_kernel(kernel)?;
    let mut tests = test_executables()?;
    if let Some(only) = &only {
        tests.retain(|t| only.iter().any(|o| t.file_name().is_some_and(|n| n.to_string_lossy().starts_with(o))));
    }
    let initrd = build_initramfs(&probe, &tests)?;
    let failed = boot(&vmlinuz, &initrd)?;
    if failed > 0 {
        bail!("{failed} of {} test executables failed in the Linux {label} guest", tests.len());
    }
    println!("xtask: all {} integration test executables passed on Linux {label} (guest)", tests.len());
    Ok(())
}

pub(crate) fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/probe/vm")
}

/// The suite's current cloud kernel image, downloaded and checked against the archive's
/// SHA256 once, then reused (also offline).
fn fetch_kernel(kernel: &DebianKernel) -> Result<PathBuf> {
    let dir = cache_dir().join(kernel.label);
    let vmlinuz = dir.join("vmlinuz");
    if vmlinuz.exists() {
        return Ok(vmlinuz);
    }
    std::fs::create_dir_all(&dir)?;
    debian_kernel(kernel.suite, "amd64", METAPACKAGE, &dir)
}

/// The kernel image `metapackage` of Debian `suite` depends on, for `arch`: downloaded, checked
/// against the archive's SHA256 (`vm_arm64::fetch_deb`), and kept as dir/vmlinuz.
pub(crate) fn debian_kernel(suite: &str, arch: &str, metapackage: &str, dir: &Path) -> Result<PathBuf> {
    println!("xtask: fetching Debian {suite}'s {metapackage} ({arch})");
    let index = download_text(&format!("{MIRROR}/dists/{suite}/main/binary-{arch}/Packages.xz"))?;
    let meta = stanza(&index, metapackage).context("metapackage not in the index")?;
    let image =
        field(meta, "Depends").and_then(|d| d.split([',', ' ']).next()).context("metapackage without Depends")?;
    let unpacked = crate::vm_arm64::fetch_deb(&index, image, dir)?;
    let boot = std::fs::read_dir(unpacked.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .context("no vmlinuz in the package")?;
    let vmlinuz = dir.join("vmlinuz");
    std::fs::copy(&boot, &vmlinuz)?;
    std::fs::write(dir.join("version"), format!("{image}\n"))?;
    std::fs::remove_dir_all(&unpacked)?;
    Ok(vmlinuz)
}

pub(crate) fn download_text(url: &str) -> Result<String> {
    let mut curl = Command::new("curl").args(["-fsSL", url]).stdout(Stdio::piped()).spawn()?;
    let xz = Command::new("xz").arg("-dc").stdin(curl.stdout.take().context("curl stdout")?).output()?;
    if !curl.wait()?.success() || !xz.status.success() {
        bail!("downloading {url} failed");
    }
    Ok(String::from_utf8(xz.stdout)?)
}

/// The control stanza of `package` in a Debian Packages index.
pub(crate) fn stanza<'a>(index: &'a str, package: &str) -> Option<&'a str> {
    let header = format!("Package: {package}\n");
    index.split("\n\n").find(|s| s.starts_with(&header))
}

pub(crate) fn field<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
    stanza.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The integration test executables cargo built (same profile as the host run).
fn test_executables() -> Result<Vec<PathBuf>> {
    let json = output(cargo().args(["test", "--release", "-p", "probe-tests", "--no-run", "--message-format=json"]))?;
    let mut tests: Vec<PathBuf> = json
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| l.split("\"executable\":\"").nth(1)?.split('"').next().map(PathBuf::from))
        .collect();
    tests.sort();
    tests.dedup();
    tests.retain(|t| !host_only(t));
    if tests.is_empty() {
        bail!("cargo built no integration test executables");
    }
    Ok(tests)
}

/// Test executables that check the host's userland, not the kernel: tests/old_userland.rs
/// runs the static build in the host's Debian 11 chroot (already run by the host baseline).
fn host_only(test: &Path) -> bool {
    let name = test.file_name().unwrap_or_default().to_string_lossy();
    let host_only = name.starts_with("old_userland-");
    if host_only {
        println!("xtask: {name} is not run in the guest: it checks an older userland, which the host suite did");
    }
    host_only
}

/// Builds the guest's initramfs (gzip'd newc cpio) and returns its path.
fn build_initramfs(probe: &Path, tests: &[PathBuf]) -> Result<PathBuf> {
    let work = root().join("target/vm");
    let tree = work.join("initramfs");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    std::fs::create_dir_all(&tree)?;
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    files.insert(probe.to_path_buf());
    files.extend(tests.iter().cloned());
    let targets = root().join("target/targets");
    for entry in walk(&targets)? {
        // The benchmark's own builds are not used by the tests.
        if !entry.starts_with(targets.join("bench")) {
            files.insert(entry);
        }
    }
    // Sources the tests hand to probe as inputs that are not programs.
    files.extend(walk(&root().join("tests/targets"))?);
    // `probe -c` with LIB:FUNC asks the linker cache; the C targets need their libraries.
    for extra in ["/etc/ld.so.cache", "/sbin/ldconfig", "/etc/passwd", "/etc/group"] {
        if Path::new(extra).exists() {
            files.insert(PathBuf::from(extra));
        }
    }
    // Tools the tests run besides probe: a real Prometheus and promtool (tests/serve.rs), bash
    // and groff for the completion script and man pages (tests/manual.rs), Debian's sqlite3 for
    // library function names (tests/names.rs).
    for tool in ["bash", "prometheus", "promtool", "groff", "troff", "grotty", "sqlite3"] {
        files.insert(host_tool(tool)?);
    }
    for dir in ["/usr/share/groff", "/etc/groff"] {
        files.extend(walk(Path::new(dir))?);
    }
    let libraries: BTreeSet<PathBuf> = files.iter().flat_map(|f| shared_libraries(f)).collect();
    files.extend(libraries);
    for file in &files {
        copy_into(&tree, file)?;
    }
    copy_into(&tree, Path::new("/bin/busybox"))?;
    for dir in ["proc", "sys", "dev", "tmp", "root", "usr/bin", "usr/sbin", "sbin"] {
        std::fs::create_dir_all(tree.join(dir))?;
    }
    let init = init_script(probe, tests);
    std::fs::write(tree.join("init"), init)?;
    check(Command::new("chmod").arg("+x").arg(tree.join("init")))?;
    let initrd = work.join("initrd.gz");
    let cpio = Command::new("sh")
        .arg("-c")
        .arg(format!("find . | cpio -o -H newc --quiet | gzip -1 > {}", initrd.display()))
        .current_dir(&tree)
        .status()?;
    if !cpio.success() {
        bail!("building the initramfs failed");
    }
    let size = std::fs::metadata(&initrd)?.len();
    println!("xtask: initramfs {} ({} files, {:.1} MiB)", initrd.display(), files.len(), size as f64 / 1048576.0);
    Ok(initrd)
}

/// A tool's path on the host, from PATH (scripts/setup.sh installs them).
fn host_tool(name: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not installed; run scripts/setup.sh"))
}

/// The regular files below `dir` (links to them included). FIFOs, sockets and devices that
/// tests leave behind are passed over: copying a FIFO would wait for a writer forever.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            out.extend(walk(&path)?);
        } else if std::fs::metadata(&path).is_ok_and(|m| m.is_file() || m.is_dir()) {
            out.push(path);
        }
    }
    Ok(out)
}

/// Libraries and the dynamic loader a dynamically linked ELF file needs, from `ldd`.
fn shared_libraries(file: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("ldd").arg(file).output() else { return Vec::new() };
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Copies `file` to the same absolute path inside `tree`, following symlinks, so compiled-in
/// paths (the tests' CARGO_MANIFEST_DIR, library paths) hold in the guest.
pub(crate) fn copy_into(tree: &Path, file: &Path) -> Result<()> {
    let dest = tree.join(file.strip_prefix("/").unwrap_or(file));
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // A link to a directory (groff's `current`) stays a link; other links are copied through.
    if file.is_symlink() && file.is_dir() {
        std::os::unix::fs::symlink(std::fs::read_link(file)?, &dest)?;
        return Ok(());
    }
    std::fs::copy(file, &dest).with_context(|| format!("copying {} into the initramfs", file.display()))?;
    Ok(())
}

/// The guest's /init: mounts, runs every test executable one test at a time, reports the
/// number that failed on /dev/ttyS1, powers off.
fn init_script(probe: &Path, tests: &[PathBuf]) -> String {
    let root = root();
    let mut s = format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
echo "{BOOT_MARKER}"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# No tmpfs on /tmp: the initramfs is writable already, and the tree may live under /tmp.
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || mount -t tracefs tracefs /sys/kernel/debug/tracing
mount -t bpf bpf /sys/fs/bpf
# Loopback: tests/serve.rs scrapes probe's /metrics with Prometheus on 127.0.0.1.
ip link set lo up
echo "probe-vm: Linux $(uname -r), $(nproc) CPUs"
export PROBE_BIN={probe} PROBE_PREBUILT_TARGETS=1
cd {root}
# A program this kernel refuses: the end of the verifier's log, for the console.
PROBE_VERIFIER_LOG=/verifier.log {probe} doctor
[ -s /verifier.log ] && tail -n 80 /verifier.log
failed=0
"#,
        probe = probe.display(),
        root = root.display(),
    );
    for test in tests {
        let name = test.file_name().unwrap_or_default().to_string_lossy();
        s.push_str(&format!(
            "echo \"probe-vm: running {name}\"\nif ! {} --test-threads=1; then failed=$((failed+1)); echo \"probe-vm: FAILED {name}\"; fi\n",
            test.display()
        ));
    }
    s.push_str("echo \"probe-vm: $failed failed\"\necho \"probe-vm-result $failed\" > /dev/ttyS1\nsync\npoweroff -f\n");
    s
}

/// Boots the guest (KVM if it works here, TCG otherwise) and returns how many test
/// executables failed, as the guest reported on its second serial port.
fn boot(vmlinuz: &Path, initrd: &Path) -> Result<u32> {
    let result = root().join("target/vm/result");
    let kvm_usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if kvm_usable {
        match run_qemu(vmlinuz, initrd, &result, "kvm", Some(KVM_BOOT_TIMEOUT))? {
            Some(failed) => return Ok(failed),
            None => println!(
                "xtask: the KVM guest printed nothing in {}s (nested virtualisation hangs here); \
                 falling back to TCG",
                KVM_BOOT_TIMEOUT.as_secs()
            ),
        }
    } else {
        println!("xtask: /dev/kvm is not usable here; using TCG (software emulation)");
    }
    // One emulator thread: multi-threaded TCG leaves stale translations of the uprobe
    // out-of-line slots across vCPUs and crashes traced programs (REFERENCE.md, section 6).
    run_qemu(vmlinuz, initrd, &result, "tcg,thread=single", None)?.context("the TCG guest did not boot")
}

/// Runs QEMU to the end; `None` if `boot_timeout` passed before the guest's init spoke.
fn run_qemu(
    vmlinuz: &Path,
    initrd: &Path,
    result: &Path,
    accel: &str,
    boot_timeout: Option<Duration>,
) -> Result<Option<u32>> {
    let _ = std::fs::remove_file(result);
    println!("xtask: booting {} with -accel {accel}", vmlinuz.display());
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", accel, "-smp", "2", "-m", "3072", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        // ttyS0 is the console (with QEMU's monitor); ttyS1 carries only the verdict.
        .args(["-serial", "mon:stdio", "-serial"])
        .arg(format!("file:{}", result.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting qemu-system-x86_64 (scripts/setup.sh installs it)")?;
    let console = qemu.stdout.take().context("qemu stdout")?;
    let (booted_tx, booted_rx) = mpsc::channel();
    let echo = std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        for line in BufReader::new(console).lines().map_while(Result::ok) {
            let line = line.replace('\r', "");
            if line.contains(BOOT_MARKER) {
                let _ = booted_tx.send(());
            }
            let _ = writeln!(stdout, "guest| {line}");
        }
    });
    if let Some(timeout) = boot_timeout {
        if booted_rx.recv_timeout(timeout).is_err() {
            let _ = qemu.kill();
            let _ = qemu.wait();
            let _ = echo.join();
            return Ok(None);
        }
    }
    loop {
        if let Some(status) = qemu.try_wait()? {
            let _ = echo.join();
            println!("xtask: guest ended after {:.0}s ({status})", started.elapsed().as_secs_f64());
            break;
        }
        if started.elapsed() > GUEST_TIMEOUT {
            let _ = qemu.kill();
            bail!("the guest ran longer than {} minutes; killed", GUEST_TIMEOUT.as_secs() / 60);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = std::fs::read_to_string(result).unwrap_or_default();
    let failed = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("probe-vm-result "))
        .and_then(|n| n.trim().parse().ok())
        .context("the guest reported no result (it crashed, or the tests hung)")?;
    Ok(Some(failed))
}
