//! `cargo xtask vm-test --arch arm64 [--kernel 6.1|6.12]`: the static arm64 `probe` (from
//! `cargo xtask build`) on a Debian arm64 kernel under qemu-system-aarch64 (`-M virt -cpu max`,
//! single-threaded TCG: this host is x86-64, and multi-threaded TCG corrupts uprobes'
//! out-of-line slots; see vm.rs).
//!
//! The guest traces arm64 programs cross-built here from the table of targets
//! (xtask/helpers/src/targets.rs): Go (GOARCH=arm64, Debian's 1.19 and 1.21/1.23 from
//! backports) and C (aarch64-linux-gnu-gcc -static), the ones the checks name. Each check is one probe command whose
//! output must hold the exact numbers the program's calls give (counts, sums, min, max), so the
//! arm64 register ABIs (Go R0-R15, AAPCS64 X0-X7), the Go stack-check `BLS`, goroutine keying by
//! R28, RET probes, uretprobes and the architecture check on foreign binaries each run for real.
//! The integration test executables are not run in this guest: they build their target programs
//! with the host's compilers (x86-64); docs/kernels.md says so.
//!
//! Verdict: the virt machine has one UART, so /init prints `probe-vm-result-<nonce> FAILED
//! TOTAL` on the console; the nonce is new for each run, so no program's output can forge it.
use crate::cross;
use crate::vm::{cache_dir, copy_into, download_text, fetch_deb, MIRROR};
use crate::{check, root};
use anyhow::{bail, Context, Result};
use probe_helpers::targets::{self, Arch};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian suites whose generic arm64 kernel we boot (PL011 console, BPF, BTF and uprobes built in).
const KERNELS: [(&str, &str); 2] = [("6.1", "bookworm"), ("6.12", "trixie")];
const METAPACKAGE: &str = "linux-image-arm64";
const GUEST_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Where the cross-built programs live in the guest.
const GUEST_TARGETS: &str = "/targets";

/// `label`: the Debian arm64 kernel (6.1 or 6.12).
pub fn run(label: &str) -> Result<()> {
    let (_, suite) = KERNELS
        .iter()
        .find(|(l, _)| *l == label)
        .with_context(|| format!("--kernel {label}: unknown for arm64; use 6.1 or 6.12"))?;
    crate::setup(&["arm64"])?;
    let probe = cross::build_static(&cross::AARCH64)?;
    let checks = checks();
    let targets = cross_build_targets(&checks)?;
    let vmlinuz = fetch_kernel(label, suite)?;
    let busybox = fetch_busybox()?;
    let nonce = format!("{:x}{:x}", std::process::id(), now_nanos());
    let initrd = build_initramfs(&probe, &targets, &busybox, &checks, &nonce)?;
    let (failed, total) = boot(&vmlinuz, &initrd, &nonce)?;
    if failed > 0 {
        bail!("{failed} of {total} arm64 checks failed in the Linux {label} arm64 guest");
    }
    println!("xtask: all {total} arm64 checks passed on Linux {label} (arm64 guest, TCG)");
    Ok(())
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// The arm64 builds of the programs the checks trace (rows of the table of targets,
/// xtask/helpers/src/targets.rs), in target/vm-arm64/targets.
fn cross_build_targets(checks: &[Check]) -> Result<Vec<PathBuf>> {
    let dir = root().join("target/vm-arm64/targets");
    let mut built = Vec::new();
    for name in programs(checks) {
        let row = targets::output(&name).with_context(|| format!("{name}: not in the table of targets"))?;
        let out = dir.join(&name);
        targets::build(&row, Arch::Arm64, &out).map_err(anyhow::Error::msg)?;
        built.push(out);
    }
    Ok(built)
}

/// The programs the checks name (`/targets/NAME`), each once.
fn programs(checks: &[Check]) -> Vec<String> {
    let prefix = format!("{GUEST_TARGETS}/");
    let mut names: Vec<String> = checks
        .iter()
        .flat_map(|c| c.args.iter().flat_map(|a| a.split_whitespace()))
        .filter_map(|w| w.strip_prefix(&prefix).map(String::from))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One probe command in the guest and what its output (stdout and stderr) must contain.
struct Check {
    name: &'static str,
    args: Vec<String>,
    code: i32,
    expect: Vec<&'static str>,
}

fn checks() -> Vec<Check> {
    let t = |name: &str| format!("{GUEST_TARGETS}/{name}");
    let cmd = |program: &str, args: &str| format!("{} {args}", t(program));
    let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let with_c = |s: &str, c: String| {
        let mut v = words(s);
        v.push("-c".into());
        v.push(c);
        v
    };
    let mut checks = vec![Check {
        name: "doctor self-test",
        args: words("doctor"),
        code: 0,
        expect: vec!["self-test: 100 calls traced, 100 counted, values sum 5050: ok"],
    }];
    // Go register ABI (arg 0 in R0), entry on the stack check's BLS.
    for go in ["go1.19", "go1.23"] {
        let tostring = format!("tostring-{go}");
        checks.push(Check {
            name: if go == "go1.19" { "go1.19 argdist arg0" } else { "go1.23 argdist arg0" },
            args: with_c("argdist --func ToString --arg 0 --json", cmd(&tostring, "-rounds 2")),
            code: 0,
            expect: vec![
                "ToString calls: 2000",
                "\"count\":2000",
                "\"sum\":-1000",
                "\"min\":-500",
                "\"max\":499",
                "\"unreadable\":0",
            ],
        });
        checks.push(Check {
            name: if go == "go1.19" { "go1.19 latency (RET probes)" } else { "go1.23 latency (RET probes)" },
            args: with_c("latency --func main.ToString --json", cmd(&tostring, "-rounds 1")),
            code: 0,
            expect: vec!["ToString calls: 1000", "\"count\":1000", "\"abandoned\":0"],
        });
        let latency = format!("latency-{go}");
        checks.push(Check {
            name: if go == "go1.19" { "go1.19 stacks grow and move" } else { "go1.23 stacks grow and move" },
            args: with_c("latency --func main.Grow --json", cmd(&latency, "-mode grow")),
            code: 0,
            expect: vec!["Grow calls: 4020", "\"count\":4020", "\"abandoned\":0"],
        });
        checks.push(Check {
            name: if go == "go1.19" {
                "go1.19 goroutines keyed by g (R28)"
            } else {
                "go1.23 goroutines keyed by g (R28)"
            },
            args: with_c("latency --func main.Block --json", cmd(&latency, "-mode block")),
            code: 0,
            expect: vec!["Block calls: 200", "\"count\":200", "\"abandoned\":0"],
        });
    }
    checks.push(Check {
        name: "go1.21 argdist arg0",
        args: with_c("argdist --func ToString --arg 0 --json", cmd("tostring-go1.21", "-rounds 1")),
        code: 0,
        expect: vec!["ToString calls: 1000", "\"count\":1000", "\"sum\":-500", "\"unreadable\":0"],
    });
    checks.push(Check {
        name: "stripped Go (.gopclntab) argdist arg0",
        args: with_c("argdist --func ToString --arg 0 --json", cmd("tostring-stripped", "-rounds 1")),
        code: 0,
        expect: vec!["ToString calls: 1000", "\"count\":1000", "\"sum\":-500", "\"min\":-500", "\"max\":499"],
    });
    // The result (a string's data pointer) is in R0 at each RET: every call is counted.
    checks.push(Check {
        name: "Go argdist --ret (RET probes, R0)",
        args: with_c("argdist --func ToString --ret --json", cmd("tostring-go1.19", "-rounds 2")),
        code: 0,
        expect: vec!["ToString calls: 2000", "\"measured\":\"ret\"", "\"count\":2000", "\"unreadable\":0"],
    });
    checks.push(Check {
        name: "list: a Go entry on its BLS, simulated",
        args: words("list --json /targets/tostring-go1.19 main.ToString"),
        code: 0,
        expect: vec!["\"name\":\"main.ToString\"", "\"rets\":1", "\"abi\":\"Go register ABI\",\"entry\":\"emulated\""],
    });
    // AAPCS64: work(v, 2v) returns 3v.
    checks.push(Check {
        name: "C argdist arg1 (X1)",
        args: with_c("argdist --func work --arg 1 --json", cmd("cvalues", "1")),
        code: 0,
        expect: vec!["work calls: 1000", "\"count\":1000", "\"sum\":-1000", "\"min\":-1000", "\"max\":998"],
    });
    checks.push(Check {
        name: "C argdist --ret (uretprobe, X0)",
        args: with_c("argdist --func work --ret --json", cmd("cvalues", "1")),
        code: 0,
        expect: vec!["work calls: 1000", "\"count\":1000", "\"sum\":-1500", "\"min\":-1500", "\"max\":1497"],
    });
    checks.push(Check {
        name: "C latency (uretprobe)",
        args: with_c("latency --func work --json", cmd("cvalues", "1")),
        code: 0,
        expect: vec!["work calls: 1000", "\"count\":1000", "\"abandoned\":0"],
    });
    checks.push(Check {
        name: "C latency (RET probes)",
        args: with_c("latency --func work --exit ret --json", cmd("cvalues", "1")),
        code: 0,
        expect: vec!["work calls: 1000", "\"count\":1000", "\"abandoned\":0"],
    });
    checks.push(Check {
        name: "an x86-64 binary is refused",
        args: words("list /x86-64/busybox"),
        code: 2,
        expect: vec!["this probe traces arm64 programs only"],
    });
    checks
}

/// The generic arm64 kernel of `suite`, downloaded once (SHA256 checked against the archive's
/// index) and cached in ~/.cache/probe/vm/arm64-LABEL/vmlinuz.
fn fetch_kernel(label: &str, suite: &str) -> Result<PathBuf> {
    let dir = cache_dir().join(format!("arm64-{label}"));
    let vmlinuz = dir.join("vmlinuz");
    if vmlinuz.exists() {
        return Ok(vmlinuz);
    }
    std::fs::create_dir_all(&dir)?;
    crate::vm::debian_kernel(suite, "arm64", METAPACKAGE, &dir)
}

/// Debian 12's static busybox for arm64 (the guest's shell and tools), cached like the kernels.
fn fetch_busybox() -> Result<PathBuf> {
    let dir = cache_dir().join("arm64-busybox");
    let busybox = dir.join("busybox");
    if busybox.exists() {
        return Ok(busybox);
    }
    std::fs::create_dir_all(&dir)?;
    let index = download_text(&format!("{MIRROR}/dists/bookworm/main/binary-arm64/Packages.xz"))?;
    let unpacked = fetch_deb(&index, "busybox-static", &dir)?;
    std::fs::copy(unpacked.join("bin/busybox"), &busybox)?;
    std::fs::remove_dir_all(&unpacked)?;
    Ok(busybox)
}

fn build_initramfs(
    probe: &Path,
    targets: &[PathBuf],
    busybox: &Path,
    checks: &[Check],
    nonce: &str,
) -> Result<PathBuf> {
    let work = root().join("target/vm-arm64");
    let tree = work.join("initramfs");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    for dir in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "root", "targets", "x86-64"] {
        std::fs::create_dir_all(tree.join(dir))?;
    }
    std::fs::copy(busybox, tree.join("bin/busybox"))?;
    std::fs::copy(probe, tree.join("bin/probe"))?;
    for target in targets {
        std::fs::copy(target, tree.join("targets").join(target.file_name().context("name")?))?;
    }
    // The host's busybox: a static x86-64 program the arm64 probe must refuse.
    std::fs::copy("/bin/busybox", tree.join("x86-64/busybox"))?;
    copy_into(&tree, Path::new("/etc/passwd"))?;
    copy_into(&tree, Path::new("/etc/group"))?;
    std::fs::write(tree.join("init"), init_script(checks, nonce))?;
    check(Command::new("chmod").arg("+x").arg(tree.join("init")))?;
    let initrd = work.join("initrd.gz");
    let cpio = Command::new("sh")
        .arg("-c")
        .arg(format!("find . | cpio -o -H newc --quiet | gzip -1 > {}", initrd.display()))
        .current_dir(&tree)
        .status()?;
    if !cpio.success() {
        bail!("building the arm64 initramfs failed");
    }
    Ok(initrd)
}

/// Single-quoted for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn init_script(checks: &[Check], nonce: &str) -> String {
    let mut s = String::from(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || mount -t tracefs tracefs /sys/kernel/debug/tracing
mount -t bpf bpf /sys/fs/bpf
echo "probe-vm: Linux $(uname -r) $(uname -m), $(nproc) CPUs"
failed=0
total=0
"#,
    );
    for c in checks {
        let args: Vec<String> = c.args.iter().map(|a| quote(a)).collect();
        let wants: Vec<String> = c.expect.iter().map(|w| quote(w)).collect();
        s.push_str(&format!(
            r#"total=$((total+1))
echo "probe-vm: check {name}"
start=$(date +%s)
probe {args} >/tmp/out 2>/tmp/err
code=$?
cat /tmp/err /tmp/out
ok=1
[ "$code" = {code} ] || {{ ok=0; echo "probe-vm: exit code $code, expected {code}"; }}
for want in {wants}; do grep -qF -- "$want" /tmp/out /tmp/err || {{ ok=0; echo "probe-vm: missing: $want"; }}; done
if [ $ok = 1 ]; then echo "probe-vm: ok {name} ($(( $(date +%s) - start )) s)"; else failed=$((failed+1)); echo "probe-vm: FAILED {name}"; fi
"#,
            name = c.name,
            args = args.join(" "),
            code = c.code,
            wants = wants.join(" "),
        ));
    }
    s.push_str(&format!(
        "echo \"probe-vm: $failed of $total failed\"\necho \"probe-vm-result-{nonce} $failed $total\"\nsync\npoweroff -f\n"
    ));
    s
}

/// Boots the guest and returns (failed, total) as its /init reported them.
fn boot(vmlinuz: &Path, initrd: &Path, nonce: &str) -> Result<(u32, u32)> {
    println!("xtask: booting {} under qemu-system-aarch64 (TCG, one thread)", vmlinuz.display());
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-aarch64")
        .args(["-M", "virt", "-cpu", "max", "-accel", "tcg,thread=single", "-smp", "2", "-m", "2048"])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyAMA0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting qemu-system-aarch64 (scripts/setup.sh installs qemu-system-arm)")?;
    let console = qemu.stdout.take().context("qemu stdout")?;
    let marker = format!("probe-vm-result-{nonce} ");
    let reader = std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        let mut result = None;
        for line in BufReader::new(console).lines().map_while(Result::ok) {
            let line = line.replace('\r', "");
            if let Some(rest) = line.find(&marker).map(|at| &line[at + marker.len()..]) {
                let mut n = rest.split_whitespace().map(|w| w.parse::<u32>());
                if let (Some(Ok(failed)), Some(Ok(total))) = (n.next(), n.next()) {
                    result = Some((failed, total));
                }
            }
            let _ = writeln!(stdout, "guest| {line}");
        }
        result
    });
    loop {
        if let Some(status) = qemu.try_wait()? {
            println!("xtask: arm64 guest ended after {:.0}s ({status})", started.elapsed().as_secs_f64());
            break;
        }
        if started.elapsed() > GUEST_TIMEOUT {
            let _ = qemu.kill();
            let _ = qemu.wait();
            bail!("the arm64 guest ran longer than {} minutes; killed", GUEST_TIMEOUT.as_secs() / 60);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let result = reader.join().map_err(|_| anyhow::anyhow!("console reader panicked"))?;
    result.context("the arm64 guest reported no result (it crashed, or a check hung)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every check names programs of the table, built for arm64; names are unique and say
    /// what is checked.
    #[test]
    fn every_check_traces_a_program_of_the_table_built_for_arm64() {
        let checks = checks();
        let programs = programs(&checks);
        assert_eq!(
            programs,
            [
                "cvalues",
                "latency-go1.19",
                "latency-go1.23",
                "tostring-go1.19",
                "tostring-go1.21",
                "tostring-go1.23",
                "tostring-stripped"
            ]
        );
        for name in &programs {
            let row = targets::output(name).unwrap_or_else(|| panic!("{name} is not in the table"));
            let cmd = row.command(Arch::Arm64, Path::new("/tmp/out"));
            let arm64 = cmd.get_program() == targets::AARCH64_CC
                || cmd.get_envs().any(|(k, v)| k == "GOARCH" && v == Some("arm64".as_ref()));
            assert!(arm64, "{name}: {cmd:?}");
        }
        let mut names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), checks.len(), "check names are unique");
        assert!(checks.iter().all(|c| !c.expect.is_empty()), "every check expects something");
    }

    /// The guest's script runs every check and compares its exit code and output.
    #[test]
    fn init_runs_each_check_and_reports_the_verdict() {
        let checks = checks();
        let init = init_script(&checks, "n0nce");
        assert_eq!(init.matches("total=$((total+1))").count(), checks.len());
        assert!(init.contains("probe 'list' '/x86-64/busybox' >/tmp/out 2>/tmp/err"), "{init}");
        assert!(init.contains("[ \"$code\" = 2 ]"), "{init}");
        assert!(init.contains("echo \"probe-vm-result-n0nce $failed $total\""), "{init}");
    }
}
