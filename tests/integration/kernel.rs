//! What probe learns about the kernel: `probe doctor` (features, strategy, a real self-test),
//! and the one-program-per-site strategy that kernels without BPF cookies (before 5.15) get,
//! forced here with PROBE_ATTACH=per-site so it is tested on every kernel.
use crate::support::*;
use std::process::Command;

fn doctor(per_site: bool) -> Run {
    let mut cmd = Command::new(probe_bin());
    cmd.arg("doctor");
    if per_site {
        cmd.env("PROBE_ATTACH", "per-site");
    }
    cmd.output().expect("run probe doctor").into()
}

#[test]
fn doctor_lists_features_and_passes_its_self_test() {
    let run = doctor(false);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(run.stdout.contains(&format!("kernel: Linux {}", release.trim())), "{}", run.stdout);
    for feature in ["uprobe events", "bpf_probe_read_user", "BPF cookies on uprobes", "uprobe_multi link"] {
        assert!(run.stdout.contains(feature), "{feature} missing:\n{}", run.stdout);
    }
    assert!(run.stdout.contains("self-test: 100 calls traced, 100 counted, values sum 5050: ok"), "{}", run.stdout);
    // The probes' own cost, calibrated on every shape: each line says what is subtracted and
    // how much it varies (the resolution).
    let costs: Vec<&str> = run.stdout.lines().filter(|l| l.contains(" inside each call (spread ")).collect();
    assert_eq!(costs.len(), 6, "{}", run.stdout);
    for shape in
        ["emulated entry + RET probe:", "emulated entry + RET probe (Go):", "single-stepped entry + uretprobe:"]
    {
        assert!(costs.iter().any(|l| l.contains(shape)), "{shape} missing:\n{}", run.stdout);
    }
    assert!(costs.iter().all(|l| l.contains("per call to its callers (spread ")), "{}", run.stdout);
    assert_nothing_attached();
}

#[test]
fn doctor_self_test_with_a_program_per_site() {
    let run = doctor(true);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("attach strategy: one program copy per site"), "{}", run.stdout);
    assert!(run.stdout.contains("self-test: 100 calls traced, 100 counted, values sum 5050: ok"), "{}", run.stdout);
    assert_nothing_attached();
}

#[test]
fn latency_with_a_program_per_site_is_exact_and_leaves_no_pins() {
    // Fib(25) recursion: entry + every RET of a Go function, each site its own program copy.
    let target = target("latency");
    let cmd = format!("{} -mode fib", target.display());
    let pins_before = bpffs_entries();
    let out = Command::new(probe_bin())
        .args(["latency", "--func", "main.Fib", "--json", "-c", &cmd])
        .env("PROBE_ATTACH", "per-site")
        .output()
        .unwrap();
    let run: Run = out.into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = &json_tables(&run.stdout)[0];
    assert_eq!(table["count"].as_u64().unwrap(), reported_calls(&run.stderr, "Fib"));
    assert_eq!(table["abandoned"].as_u64().unwrap(), 0);
    // The shared maps were pinned in a bpffs private to probe's own mount namespace.
    assert_eq!(bpffs_entries(), pins_before);
    assert_nothing_attached();
}

fn bpffs_entries() -> Vec<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}
