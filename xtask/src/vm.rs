//! `cargo xtask vm-test [--kernel 6.1|5.10|host]`: the integration suite on another kernel.
//!
//! The host suite runs first: it is the baseline, and it builds every target program into
//! target/targets. Then a Debian kernel (downloaded once, cached under ~/.cache/probe/vm) boots
//! under QEMU with an initramfs holding busybox, `probe`, the integration test executable,
//! the targets and the libraries they link, all at their host paths. A tiny /init mounts
//! proc/sys/debugfs/tracefs/bpffs, runs the test executable once per module (feature), and
//! writes the number of failed modules to a second serial port; that number, not the console
//! text, is the verdict.
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
    // PROBE_VM_TESTS=MODULE,...: only those test modules, in the guest only (the targets
    // must exist from an earlier run): a quick loop while debugging one kernel.
    let only: Option<Vec<String>> =
        std::env::var("PROBE_VM_TESTS").ok().map(|v| v.split(',').map(String::from).collect());
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
    let tests = test_executable()?;
    let mut modules = test_modules(&tests)?;
    if let Some(only) = &only {
        modules.retain(|m| only.contains(m));
    }
    let initrd = build_initramfs(&probe, &tests, &modules)?;
    let failed = boot(&vmlinuz, &initrd)?;
    if failed > 0 {
        bail!("{failed} of {} test modules failed in the Linux {label} guest", modules.len());
    }
    println!("xtask: all {} integration test modules passed on Linux {label} (guest)", modules.len());
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
/// against the archive's SHA256 (`fetch_deb`), and kept as dir/vmlinuz.
pub(crate) fn debian_kernel(suite: &str, arch: &str, metapackage: &str, dir: &Path) -> Result<PathBuf> {
    println!("xtask: fetching Debian {suite}'s {metapackage} ({arch})");
    let index = download_text(&format!("{MIRROR}/dists/{suite}/main/binary-{arch}/Packages.xz"))?;
    let meta = stanza(&index, metapackage).context("metapackage not in the index")?;
    let image =
        field(meta, "Depends").and_then(|d| d.split([',', ' ']).next()).context("metapackage without Depends")?;
    let unpacked = fetch_deb(&index, image, dir)?;
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

/// Downloads `package` from the index into `dir`, checks its SHA256, unpacks it into dir/deb.
pub(crate) fn fetch_deb(index: &str, package: &str, dir: &Path) -> Result<PathBuf> {
    let stanza = stanza(index, package).with_context(|| format!("{package} not in the index"))?;
    let (file, sha256) = (field(stanza, "Filename").context("Filename")?, field(stanza, "SHA256").context("SHA256")?);
    let deb = dir.join(Path::new(file).file_name().context("file name")?);
    println!("xtask: downloading {file}");
    check(Command::new("curl").args(["-fsSL", "-o"]).arg(&deb).arg(format!("{MIRROR}/{file}")))?;
    let sum = output(Command::new("sha256sum").arg(&deb))?;
    if sum.split_whitespace().next() != Some(sha256) {
        std::fs::remove_file(&deb)?;
        bail!("{file}: SHA256 differs from the archive's index");
    }
    let unpacked = dir.join("deb");
    let _ = std::fs::remove_dir_all(&unpacked);
    check(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    std::fs::remove_file(&deb)?;
    Ok(unpacked)
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

/// The integration test executable cargo built (same profile as the host run).
fn test_executable() -> Result<PathBuf> {
    let json = output(cargo().args(["test", "--release", "-p", "probe-tests", "--no-run", "--message-format=json"]))?;
    let mut tests: Vec<PathBuf> = json
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| l.split("\"executable\":\"").nth(1)?.split('"').next().map(PathBuf::from))
        .collect();
    tests.sort();
    tests.dedup();
    match tests.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one integration test executable, cargo built {tests:?}"),
    }
}

/// The executable's modules (`argdist`, `latency`, ...), from its own `--list`, except those
/// that check the host's userland, not the kernel.
fn test_modules(tests: &Path) -> Result<Vec<String>> {
    let listed = output(Command::new(tests).args(["--list", "--format", "terse"]))?;
    let modules = modules_of(&listed);
    for module in modules.iter().filter(|m| HOST_ONLY.contains(&m.as_str())) {
        println!("xtask: {module}:: is not run in the guest: it checks an older userland, which the host suite did");
    }
    Ok(modules.into_iter().filter(|m| !HOST_ONLY.contains(&m.as_str())).collect())
}

/// Modules the guest cannot run, already run by the host suite: tests/integration/old_userland.rs
/// runs the static build in the host's Debian 11 chroot; tests/integration/containers.rs needs
/// podman and runc, which the guest's busybox root does not have.
const HOST_ONLY: [&str; 2] = ["old_userland", "containers"];

/// The modules of a libtest `--list --format terse` (`module::test: test` lines), in order.
fn modules_of(listed: &str) -> Vec<String> {
    let mut modules: Vec<String> = Vec::new();
    for line in listed.lines().filter(|l| l.ends_with(": test")) {
        if let Some((module, _)) = line.split_once("::") {
            if !modules.iter().any(|m| m == module) {
                modules.push(module.to_string());
            }
        }
    }
    modules
}

/// Builds the guest's initramfs (gzip'd newc cpio) and returns its path.
fn build_initramfs(probe: &Path, tests: &Path, modules: &[String]) -> Result<PathBuf> {
    let work = root().join("target/vm");
    let tree = work.join("initramfs");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    std::fs::create_dir_all(&tree)?;
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    files.insert(probe.to_path_buf());
    files.insert(tests.to_path_buf());
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
    // Tools the tests run besides probe: a real Prometheus and promtool (tests/integration/serve.rs), bash
    // and groff for the completion script and man pages (tests/integration/manual.rs), Debian's sqlite3 for
    // library function names (tests/integration/resolve.rs).
    for tool in ["bash", "prometheus", "promtool", "groff", "troff", "grotty", "sqlite3"] {
        files.insert(host_tool(tool)?);
    }
    // `go tool pprof` reads --pprof's profiles (tests/integration/stacks.rs): the guest has no
    // Go toolchain, only its pprof program, which the tests find through PROBE_PPROF.
    files.insert(pprof_tool()?);
    // usvg lays out the SVGs' text with the system's fonts (tests/integration/usability.rs).
    for dir in ["/usr/share/groff", "/etc/groff", "/usr/share/fonts/truetype/dejavu"] {
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
    let init = init_script(probe, tests, modules);
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
/// The program `go tool pprof` runs: `$(go env GOTOOLDIR)/pprof`.
fn pprof_tool() -> Result<PathBuf> {
    let out = std::process::Command::new("go")
        .args(["env", "GOTOOLDIR"])
        .output()
        .context("go is not installed; run scripts/setup.sh")?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("pprof");
    anyhow::ensure!(path.is_file(), "{}: no pprof program in Go's tool folder", path.display());
    Ok(path)
}

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

/// The guest's /init: mounts, runs the test executable once per module, one test at a time,
/// reports the number of modules that failed on /dev/ttyS1, powers off.
fn init_script(probe: &Path, tests: &Path, modules: &[String]) -> String {
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
# Loopback: tests/integration/serve.rs scrapes probe's /metrics with Prometheus on 127.0.0.1.
ip link set lo up
echo "probe-vm: Linux $(uname -r), $(nproc) CPUs"
export PROBE_BIN={probe} PROBE_PREBUILT_TARGETS=1 PROBE_PPROF={pprof}
cd {root}
# A program this kernel refuses: the end of the verifier's log, for the console.
PROBE_VERIFIER_LOG=/verifier.log {probe} doctor
[ -s /verifier.log ] && tail -n 80 /verifier.log
failed=0
"#,
        probe = probe.display(),
        root = root.display(),
        pprof = pprof_tool().map(|p| p.display().to_string()).unwrap_or_default(),
    );
    for module in modules {
        s.push_str(&format!(
            "echo \"probe-vm: running {module}::\"\nif ! {} --test-threads=1 {module}::; then failed=$((failed+1)); echo \"probe-vm: FAILED {module}::\"; fi\n",
            tests.display()
        ));
    }
    s.push_str("echo \"probe-vm: $failed failed\"\necho \"probe-vm-result $failed\" > /dev/ttyS1\nsync\npoweroff -f\n");
    s
}

/// Boots the guest (KVM if it works here, TCG otherwise) and returns how many test
/// modules failed, as the guest reported on its second serial port.
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
    // out-of-line slots across vCPUs and crashes traced programs (a Go program with entry
    // uprobes crashed in 3 of 4 runs under `-accel tcg -smp 2`; with `thread=single`, 16 of 16
    // ran clean). An emulator artefact, not the kernel's.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_come_from_the_test_list_in_order() {
        let listed = "argdist::go_exact: test\nargdist::c_exact: test\nby::by_pid: test\nold_userland::static: test\n";
        assert_eq!(modules_of(listed), ["argdist", "by", "old_userland"]);
        let init = init_script(Path::new("/p/probe"), Path::new("/t/integration-1"), &["by".into()]);
        assert!(init.contains("if ! /t/integration-1 --test-threads=1 by::; then failed=$((failed+1))"), "{init}");
    }
}
