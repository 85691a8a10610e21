//! Names and output as people already type them (issue 13): library functions as BCC and
//! bpftrace name them, Go method names, `-o FILE`, readable numbers, and `probe list` headers.
use probe_tests::*;
use std::process::Command;

/// `probe list` names the main module (or main package path) of a stripped Go program whose
/// build info has no `mod` line, as `go version -m` does: Debian's Prometheus.
#[test]
fn list_shows_the_main_module_of_stripped_prometheus() {
    let prometheus = "/usr/bin/prometheus";
    let go = Command::new("go").args(["version", "-m", prometheus]).output().expect("go version -m");
    let go = String::from_utf8_lossy(&go.stdout);
    let path = go.lines().find_map(|l| l.trim().strip_prefix("path\t")).expect("go version -m shows a path");
    assert_eq!(path, "github.com/prometheus/prometheus/cmd/prometheus");
    let run = probe(&["list", prometheus, "main.main"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let header = run.stdout.lines().next().unwrap();
    assert!(header.contains(&format!("(module {path})")), "{header}");
    assert!(header.contains(".gopclntab (stripped binary)"), "{header}");
}
