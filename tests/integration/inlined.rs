//! Calls of inlined copies. tests/targets/go/inl and tests/targets/c/cinline.c call `small`
//! 2000 times: 1000 where the compiler inlined it, 1000 through a func value or function
//! pointer, which reach its out-of-line copy. The probes on that copy see the 1000 real calls
//! with their values; the inlined ones are counted at one instruction per copy, and one line
//! (one JSON field) says how many, and what cannot be had of them.
use crate::support::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;

const N: u64 = 1000;

/// The target's own line about its calls (on stderr with --json, where its stdout goes).
fn assert_target_counted(output: &str, label: &str, n: u64) {
    let line = format!("{label} calls: {} (inlined {n}, real {n})", 2 * n);
    assert!(output.contains(&line), "the target did not print `{line}`: {output}");
}

/// argdist of `function`'s first argument: the real calls' values exactly (0..N once each),
/// and N more calls counted at its one inlined site, in JSON and in the text's one line.
fn assert_argdist_counts_inlined_calls(target: &Path, function: &str, label: &str, attach: &str) {
    let cmd = format!("{} {N}", target.display());
    let out = Command::new(probe_bin())
        .args(["argdist", "--func", function, "--arg", "0", "--json", "-c", &cmd])
        .env("PROBE_ATTACH", attach)
        .output()
        .unwrap();
    let run: Run = out.into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_target_counted(&run.stderr, label, N);
    let tables = json_tables(&run.stdout);
    let [table] = tables.as_slice() else { panic!("one table expected: {}", run.stdout) };
    assert_eq!(table["count"], N, "{table}");
    assert_eq!(table["sum"], N * (N - 1) / 2, "{table}");
    assert_eq!((table["min"].as_i64(), table["max"].as_i64()), (Some(0), Some(N as i64 - 1)), "{table}");
    assert_eq!(json_buckets(table), expected_buckets(0..N as i64), "{table}");
    assert_eq!(table["inlined"], json!({"sites": 1, "calls": N, "uncounted_sites": 0}), "{target:?} {attach}");
    assert_nothing_attached();
}

#[test]
fn go_inlined_calls_are_counted_with_every_go_version() {
    for version in GO_VERSIONS {
        let target = go_target_with("inl", version);
        assert_argdist_counts_inlined_calls(&target, "main.small", "small", "");
        // The text: the real calls' summary, then the one line under the table.
        let run = probe(&["argdist", "--func", "main.small", "--arg", "0", "-c", &format!("{} {N}", target.display())]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stdout.contains("main.small arg0: min:0 avg:499 max:999 count:1000\n"), "{}", run.stdout);
        let line = "main.small: 1000 more calls at 1 inlined site (counted; their arguments cannot be read)\n";
        assert!(run.stdout.contains(line), "Go {version}: {}", run.stdout);
        assert_nothing_attached();
    }
}

#[test]
fn c_inlined_calls_are_counted() {
    let target = target("cinline");
    assert_argdist_counts_inlined_calls(&target, "small", "small", "");
}

#[test]
fn every_attach_strategy_counts_inlined_calls() {
    // perf-event uprobes with cookies (5.15+) and a program copy per site (older kernels).
    let go = go_target_with("inl", "1.23");
    let c = target("cinline");
    for attach in ["cookies", "per-site"] {
        assert_argdist_counts_inlined_calls(&go, "main.small", "small", attach);
        assert_argdist_counts_inlined_calls(&c, "small", "small", attach);
    }
}

#[test]
fn stripped_and_position_independent_go_programs_tell_where_they_inlined() {
    // No .symtab and no DWARF: the inline trees are found from the runtime's module data.
    let stripped = target("inl-stripped");
    assert_argdist_counts_inlined_calls(&stripped, "main.small", "small", "");
    // -buildmode=pie: the table is in .data.rel.ro.gopclntab, the module data relocated at
    // load time (zero in the file), and go.func.* found by its symbol.
    let pie = target("inl-pie");
    assert_argdist_counts_inlined_calls(&pie, "main.small", "small", "");
}

#[test]
fn a_copy_left_without_instructions_is_reported_not_counted() {
    // gcc folds merged(i) = 3i + 1 into an induction variable of its loop: the copy has no
    // instruction of its own, so its calls cannot be counted, and the line says so.
    let target = target("cinline");
    let cmd = format!("{} {N}", target.display());
    let run = probe(&["argdist", "--func", "merged", "--arg", "0", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_target_counted(&run.stdout, "merged", N);
    assert!(run.stdout.contains("merged arg0: min:0 avg:499 max:999 count:1000\n"), "{}", run.stdout);
    let line = "merged: inlined at 1 site whose calls cannot be counted (the compiler merged its instructions into \
                its caller's)\n";
    assert!(run.stdout.contains(line), "{}", run.stdout);
    let run = probe(&["argdist", "--func", "merged", "--arg", "0", "--json", "-c", &cmd]);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables[0]["inlined"], json!({"sites": 0, "calls": 0, "uncounted_sites": 1}), "{}", run.stdout);
    assert_nothing_attached();
}

#[test]
fn latency_says_how_many_inlined_calls_it_could_not_time() {
    for (target, function) in [(go_target_with("inl", "1.19"), "main.small"), (target("cinline"), "small")] {
        let cmd = format!("{} {N}", target.display());
        let run = probe(&["latency", "--func", function, "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_target_counted(&run.stderr, "small", N);
        let table = &json_tables(&run.stdout)[0];
        assert_eq!(table["count"], N, "{table}");
        assert_eq!(table["inlined"], json!({"sites": 1, "calls": N, "uncounted_sites": 0}), "{table}");
        let run = probe(&["latency", "--func", function, "-c", &cmd]);
        let line = format!(
            "{function}: 1000 more calls at 1 inlined site (counted, not timed: an inlined copy has no entry or \
             return of its own)\n"
        );
        assert!(run.stdout.contains(&line), "{}", run.stdout);
        assert_nothing_attached();
    }
}

#[test]
fn interval_tables_add_up_to_the_inlined_calls_of_the_run() {
    // Long enough for several 50 ms intervals: each interval's inlined calls are its own, and
    // they add up to the final table's, as the real calls do.
    let n = 20_000u64;
    let target = go_target_with("inl", "1.23");
    let cmd = format!("{} {n}", target.display());
    let run = probe(&["argdist", "--func", "main.small", "--arg", "0", "--json", "-i", "0.05", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_target_counted(&run.stderr, "small", n);
    let tables = json_tables(&run.stdout);
    let (intervals, finals): (Vec<_>, Vec<_>) = tables.iter().partition(|t| t["kind"] == "interval");
    assert!(intervals.len() >= 2, "{} intervals: {}", intervals.len(), run.stdout);
    let inlined = |t: &serde_json::Value| t["inlined"]["calls"].as_u64().unwrap();
    assert_eq!(intervals.iter().map(|t| inlined(t)).sum::<u64>(), n);
    assert_eq!(intervals.iter().map(|t| t["count"].as_u64().unwrap()).sum::<u64>(), n);
    assert_eq!((finals[0]["count"].as_u64(), inlined(finals[0])), (Some(n), n));
    assert_nothing_attached();
}

#[test]
fn probe_list_shows_inlined_sites_per_function() {
    for (target, glob, small, caller) in [
        (go_target_with("inl", "1.21"), "main.*", "main.small", "main.main"),
        (target("cinline"), "*", "small", "main"),
    ] {
        let run = probe(&["list", &target.to_string_lossy(), glob, "--json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let rows = json_tables(&run.stdout);
        let sites = |name: &str| rows.iter().find(|r| r["name"] == name).map(|r| r["inlined_sites"].clone());
        assert_eq!(sites(small), Some(json!(1)), "{}", run.stdout);
        assert_eq!(sites(caller), Some(json!(0)), "{}", run.stdout);
        let text = probe(&["list", &target.to_string_lossy(), glob]);
        assert!(text.stdout.lines().nth(1).is_some_and(|h| h.contains(" INLINED NAME")), "{}", text.stdout);
        let row = text.stdout.lines().find(|l| l.ends_with(&format!(" {small}"))).unwrap();
        assert!(row.ends_with(&format!(" 1 {small}")), "{row}");
    }
}
