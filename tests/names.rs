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

/// Runs probe, expects exit 2 with a single `probe: ...` line containing `needle`.
fn assert_rejected(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "exit code; stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got: {}", run.stderr);
    assert!(lines[0].starts_with("probe: ") && lines[0].contains(needle), "expected {needle:?} in: {}", lines[0]);
    assert_nothing_attached();
}

/// Exact argdist of `--arg 1` over one round of -500..=499 (the receiver is argument 0).
fn assert_scrape_round(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stdout, "scrape"), 1000);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{}", run.stdout);
    assert_eq!(tables[0]["function"], "example.com/gonames/scrape.(*targetScraper).scrape");
    assert_eq!(tables[0]["count"].as_u64().unwrap(), 1000);
    assert_eq!(json_buckets(&tables[0]), expected_buckets(-500..500));
    assert_nothing_attached();
}

/// Go methods as people write them: the package and `(*T)` literally, by suffix at a package
/// or identifier boundary, without the pointer receiver's parentheses, or as a glob.
#[test]
fn go_method_names_with_pointer_receivers() {
    let bin = go_target("gonames");
    let bin = bin.to_string_lossy();
    for func in [
        "example.com/gonames/scrape.(*targetScraper).scrape",
        "scrape.(*targetScraper).scrape",
        "(*targetScraper).scrape",
        "scrape.targetScraper.scrape",
        "*/scrape.(*targetScraper).s*",
    ] {
        let run = probe(&["argdist", "--func", func, "--arg", "1", "--json", "-c", &bin]);
        assert_scrape_round(&run);
    }
    // Not at a boundary: `Scraper).scrape` is the end of an identifier, not a name.
    let run = probe(&["argdist", "--func", "Scraper).scrape", "--arg", "1", &bin]);
    assert_rejected(&run, "no such function in");
}

#[test]
fn a_glob_without_matches_names_the_closest() {
    let bin = go_target("gonames");
    let run = probe(&["latency", "--func", "*(*targetScraper).scrpe*", &bin.to_string_lossy()]);
    assert_rejected(&run, "--func *(*targetScraper).scrpe*: no function matches in");
    assert!(run.stderr.contains("; closest: example.com/gonames/scrape.(*targetScraper).scrape"), "{}", run.stderr);
}

/// `\*` is a literal star: no Go function has one, so the name is not found (and not a glob).
#[test]
fn escaped_wildcards_are_literal() {
    let bin = go_target("gonames");
    let run = probe(&["latency", "--func", r"scrape.\*", &bin.to_string_lossy()]);
    assert_rejected(&run, r"--func scrape.\*: no such function in");
}
