//! Where probes go and what they cost: entry probes on instructions the kernel emulates (on
//! every Go version's prologue, past ENDBR64, past an instruction the kernel refuses), and
//! latency with the probes' own cost subtracted, against functions that time themselves.
use crate::support::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn u(table: &Value, field: &str) -> u64 {
    table[field].as_u64().unwrap_or_else(|| panic!("{field} in {table}"))
}

/// The `probe: tracing ...` line of a run's stderr.
fn tracing_line(stderr: &str) -> &str {
    stderr.lines().find(|l| l.starts_with("probe: tracing")).unwrap_or_else(|| panic!("no tracing line: {stderr}"))
}

#[test]
fn go_entries_are_emulated_and_exact_on_every_go_version() {
    for version in GO_VERSIONS {
        // argdist: the stack check's JBE is the site, and it is emulated.
        let tostring = go_target_with("tostring", version);
        let cmd = format!("{} -rounds 2", tostring.display());
        let run = probe(&["argdist", "--func", "ToString", "--arg", "0", "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "Go {version}: {}", run.stderr);
        assert!(
            tracing_line(&run.stderr).contains("(1 probe: 1 emulated, 0 single-stepped)"),
            "Go {version}: {}",
            run.stderr
        );
        let table = &json_tables(&run.stdout)[0];
        assert_eq!(u(table, "count"), reported_calls(&run.stderr, "ToString"), "Go {version}");
        assert_eq!(u(table, "count"), 2000, "Go {version}");

        // latency: taken stack-check jumps (the stack grows, the call starts again) are ignored,
        // so every call counts once; recursion is exact.
        let latency = go_target_with("latency", version);
        for (mode, func, calls) in [("grow", "Grow", 20 * 201), ("fib", "Fib", 242_785)] {
            let cmd = format!("{} -mode {mode}", latency.display());
            let run = probe(&["latency", "--func", &format!("main.{func}"), "--json", "-c", &cmd]);
            assert_eq!(run.code, 0, "Go {version} {mode}: {}", run.stderr);
            assert!(tracing_line(&run.stderr).contains(": 1 emulated,"), "Go {version}: {}", run.stderr);
            let table = &json_tables(&run.stdout)[0];
            assert_eq!(reported_calls(&run.stderr, func), calls, "Go {version} {mode}");
            assert_eq!(u(table, "count"), calls, "Go {version} {mode}: {table}");
            assert_eq!(u(table, "abandoned"), 0, "Go {version} {mode}");
            assert_eq!(u(table, "too_deep"), 0, "Go {version} {mode}");
        }
        assert_nothing_attached();
    }
}

/// What a truth target run with `-twin` printed about one of its functions' untraced twin:
/// `NAME twin median_ns: N`.
fn twin_median(stdout: &str, name: &str) -> f64 {
    let prefix = format!("{name} twin median_ns: ");
    let line = stdout.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no `{prefix}`: {stdout}"));
    line[prefix.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

/// Runs a truth target under `probe latency` (corrected and `--raw`), checks every function's
/// count exactly and its corrected median against the truth: the median of its untraced twin,
/// which the target calls before every traced call (`-twin`), so the truth is measured at the
/// same moments as the traced calls. (An untraced run a second apart is no truth on a busy
/// machine: in one CI run Work10us's own median read 19.5, 24.7 and 10.7 us in three untraced
/// runs.) `functions` are (symbol, the name the target prints, its call-count label).
///
/// The medians are compared with generous bounds (the bench measures the real error): within
/// 35% or 400 ns, or within the resolution probe states for that function (`resolution_ns`:
/// what it cannot tell apart, e.g. a single-stepped entry's varying cost); the stated
/// resolution must also stay below the raw error, or it says nothing. The caller of ten traced
/// calls reads 5 to 10 times its own median raw, and its correction is ten calibrated probe
/// costs, so ten calibration errors: there the correction must take out at least two thirds of
/// what the probes added (or land within 60%). The calibration runs before the target, at
/// another moment: a function gets up to three attempts 5 s apart and passes in the first
/// where its bound holds.
fn check_against_truth(target: &Path, functions: &[(&str, &str, &str)]) {
    if prebuilt() {
        // In `cargo xtask vm-test`'s guest (single-threaded TCG: every instruction emulated, a
        // trap costs what it costs there) times say nothing about a machine: the counts and
        // the subtraction itself are still checked; the medians only on real CPUs.
        traced_runs(target, functions);
        return;
    }
    let mut pending: Vec<&(&str, &str, &str)> = functions.iter().collect();
    let mut report = Vec::new();
    for attempt in 0..3 {
        if attempt > 0 {
            // A slow spell of the host lasts seconds: let it pass rather than measure inside it.
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
        let (corrected, raw) = traced_runs(target, functions);
        let p50 = |t: &Value| t["percentiles"]["p50"].as_f64().unwrap();
        pending.retain(|&&(symbol, name, _)| {
            let (truth, raw_truth) = (twin_median(&corrected.stderr, name), twin_median(&raw.stderr, name));
            let table = table_of(&corrected, symbol);
            let (c, r) = (p50(&table), p50(&table_of(&raw, symbol)));
            let resolution = table["resolution_ns"].as_f64().unwrap();
            report.push(format!(
                "{symbol}: corrected p50 {c} ns (twin {truth} ns, resolution {resolution} ns), raw {r} ns (twin {raw_truth} ns)"
            ));
            let (error, raw_error) = (c - truth, r - raw_truth);
            let honest = resolution < raw_error.abs().max(1.0) && error.abs() <= resolution;
            if symbol.ends_with("uter10") {
                error.abs() > (0.6 * truth).max(raw_error / 3.0) && !honest
            } else {
                error.abs() > (0.35 * truth).max(400.0) && !honest
            }
        });
        if pending.is_empty() {
            return;
        }
        // Shown with --nocapture: how often a first attempt misses is worth knowing.
        eprintln!("attempt {} missed {pending:?}:\n{}", attempt + 1, report.join("\n"));
    }
    panic!("corrected medians off the functions' own: {pending:?}\n{}", report.join("\n"));
}

/// probe's runs of a truth target (with `-twin`), corrected and --raw, both checked exactly:
/// counts equal the target's, subtracted nanoseconds only without --raw.
fn traced_runs(target: &Path, functions: &[(&str, &str, &str)]) -> (Run, Run) {
    let cmd = format!("{} -twin", target.display());
    let mut args = vec!["latency", "--unit", "ns", "--json", "-c", &cmd];
    for (symbol, _, _) in functions {
        args.extend(["--func", symbol]);
    }
    let corrected = probe_favoured(&args);
    assert_eq!(corrected.code, 0, "{}", corrected.stderr);
    args.push("--raw");
    let raw = probe_favoured(&args);
    assert_eq!(raw.code, 0, "{}", raw.stderr);
    for &(symbol, _, calls_label) in functions {
        let (c, r) = (table_of(&corrected, symbol), table_of(&raw, symbol));
        assert_eq!(u(&c, "count"), reported_calls(&corrected.stderr, calls_label), "{symbol}");
        assert_eq!(u(&r, "count"), reported_calls(&raw.stderr, calls_label), "{symbol}");
        assert!(u(&c, "subtracted_ns") > 0, "{symbol}: nothing subtracted: {c}");
        assert_eq!(u(&r, "subtracted_ns"), 0, "{symbol}: --raw subtracted: {r}");
    }
    assert_nothing_attached();
    (corrected, raw)
}

fn table_of(run: &Run, symbol: &str) -> Value {
    json_tables(&run.stdout)
        .into_iter()
        .find(|t| t["function"].as_str().is_some_and(|f| f.ends_with(symbol)))
        .unwrap_or_else(|| panic!("no table for {symbol}: {}", run.stdout))
}

#[test]
fn go_corrected_latency_matches_what_the_functions_time_themselves() {
    let functions = [
        ("main.Work01us", "Work01us", "Work01us"),
        ("main.Work1us", "Work1us", "Work1us total"),
        ("main.Work10us", "Work10us", "Work10us"),
        ("main.Work100us", "Work100us", "Work100us"),
        // Ten traced Work1us calls inside: their probes must not be charged to it.
        ("main.Outer10", "Outer10", "Outer10"),
    ];
    for version in ["1.19", "1.23"] {
        check_against_truth(&go_target_with("truth", version), &functions);
    }
}

#[test]
fn go_leaf_latency_is_true_or_within_the_stated_resolution() {
    // No stack check: the entry moves to the first emulated instruction (Leaf*); Tiny has none
    // before its RET, so its entry stays single-stepped and its resolution says so.
    let functions = [
        ("main.Leaf01us", "Leaf01us", "Leaf01us"),
        ("main.Leaf05us", "Leaf05us", "Leaf05us"),
        ("main.Leaf4us", "Leaf4us", "Leaf4us"),
        ("main.Leaf40us", "Leaf40us", "Leaf40us"),
        ("main.Tiny", "Tiny", "Tiny"),
    ];
    for version in ["1.19", "1.23"] {
        check_against_truth(&go_target_with("truth", version), &functions);
    }
}

#[test]
fn recursion_is_true_within_its_resolution_and_too_deep_calls_are_counted() {
    // Every level of Deep(255) is a call (256 nested); each level's correction holds the probe
    // costs of every level inside it.
    for version in ["1.19", "1.23"] {
        check_against_truth(&go_target_with("truth", version), &[("main.Deep", "Deep", "Deep")]);
    }
    // Deeper recurses 300 deep: probe times the outer 256 levels and counts the rest.
    let target = go_target_with("truth", "1.19");
    let cmd = format!("{} -calls 200 -deeper", target.display());
    let run = probe(&["latency", "--unit", "ns", "--json", "--func", "main.Deep", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = &json_tables(&run.stdout)[0];
    let (deep, deeper) = (reported_calls(&run.stderr, "Deep"), reported_calls(&run.stderr, "Deeper"));
    assert_eq!((deep, deeper), (10 * 256, 10 * 301));
    assert_eq!(u(table, "too_deep"), 10 * 45, "{table}");
    assert_eq!(u(table, "count") + u(table, "too_deep"), deep + deeper, "{table}");
    assert_eq!(u(table, "abandoned"), 0, "{table}");
    assert_nothing_attached();
}

#[test]
fn c_single_stepped_entries_are_true_or_within_the_stated_resolution() {
    let target = target("truth-c");
    let list = probe(&["list", &target.to_string_lossy()]);
    for name in ["mov1us", "mov10us", "lea1us", "lea10us"] {
        let row = list.stdout.lines().find(|l| l.ends_with(&format!(" {name}"))).unwrap();
        assert!(row.contains("single-stepped"), "{}", list.stdout);
    }
    check_against_truth(
        &target,
        &[
            ("mov1us", "mov1us", "mov1us"),
            ("mov10us", "mov10us", "mov10us"),
            ("lea1us", "lea1us", "lea1us"),
            ("lea10us", "lea10us", "lea10us"),
        ],
    );
}

#[test]
fn c_corrected_latency_matches_what_the_functions_time_themselves() {
    let target = target("truth-c");
    check_against_truth(
        &target,
        &[
            ("work01us", "work01us", "work01us"),
            ("work1us", "work1us", "work1us total"),
            ("work10us", "work10us", "work10us"),
            ("work100us", "work100us", "work100us"),
            ("outer10", "outer10", "outer10"),
        ],
    );
}

#[test]
fn a_first_instruction_the_kernel_refuses_is_skipped_when_equivalent() {
    // bump() starts with `lock addq` (an atomic counter). Before, `-c` counted 0 calls
    // silently and `-p` failed with "Unknown error 524".
    let target = target("atomic_entry");
    let cmd = format!("{} 1000", target.display());
    let run = probe(&["argdist", "--func", "bump", "--arg", "0", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = &json_tables(&run.stdout)[0];
    assert_eq!(reported_calls(&run.stderr, "bump"), 1000);
    assert_eq!(u(table, "count"), 1000);
    assert_eq!(table["sum"].as_i64(), Some(999 * 1000 / 2));
    let run = probe(&["latency", "--func", "bump", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(u(&json_tables(&run.stdout)[0], "count"), 1000);
    let list = probe(&["list", &target.to_string_lossy(), "bump"]);
    let row = list.stdout.lines().find(|l| l.ends_with(" bump")).unwrap();
    assert!(row.contains("single-stepped"), "{}", list.stdout);
    assert_nothing_attached();
}

#[test]
fn endbr64_then_push_probes_the_emulated_push() {
    // -fcf-protection starts every function with ENDBR64 (single-stepped); the `push %rbp`
    // after it is emulated and equivalent.
    let target = target("truth-cet");
    if !prebuilt() {
        // What the compiler made of it (the VM guest has no objdump; it runs the same file).
        let dump = Command::new("objdump").args(["-d", "--no-show-raw-insn"]).arg(&target).output().unwrap();
        let dump = String::from_utf8_lossy(&dump.stdout);
        let body: Vec<&str> = dump.lines().skip_while(|l| !l.ends_with("<work10us>:")).skip(1).take(2).collect();
        assert!(body[0].contains("endbr64") && body[1].contains("push"), "{body:?}");
    }
    let cmd = format!("{} -calls 100", target.display());
    let run = probe(&["argdist", "--func", "work10us", "--arg", "0", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(tracing_line(&run.stderr).contains("(1 probe: 1 emulated, 0 single-stepped)"), "{}", run.stderr);
    assert_eq!(u(&json_tables(&run.stdout)[0], "count"), reported_calls(&run.stderr, "work10us"));
    assert_nothing_attached();
}

#[test]
fn entries_move_to_the_first_emulated_instruction_only_where_nothing_read_changes() {
    let target = target("entry_shapes");
    let n = 500i64;
    let cmd = format!("{} {n}", target.display());
    let list = probe(&["list", &target.to_string_lossy()]);
    let entry_of = |name: &str| {
        let row = list.stdout.lines().find(|l| l.ends_with(&format!(" {name}"))).unwrap_or_else(|| panic!("{name}"));
        row.split_whitespace().rev().nth(2).unwrap().to_string() // ENTRY, before INLINED and NAME
    };
    // (function, `probe list` = latency's entry, argdist's tracing line, latency's, arg0 = x)
    let cases = [
        ("movabs_push", "emulated", "1 emulated, 0 single-stepped", "2 emulated, 0 single-stepped"),
        ("clobbers_arg", "emulated", "0 emulated, 1 single-stepped", "2 emulated, 0 single-stepped"),
        ("copies_arg", "emulated", "1 emulated, 0 single-stepped", "2 emulated, 0 single-stepped"),
        ("stack_then_call", "single-stepped", "1 emulated, 0 single-stepped", "0 emulated, 2 single-stepped"),
    ];
    // JSON says how far in the entry is and whether it moved past a single-stepped start.
    let listed_json = probe(&["list", "--json", &target.to_string_lossy()]);
    let json_of = |name: &str| {
        json_tables(&listed_json.stdout).into_iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name}"))
    };
    for (name, offset, moved) in [("movabs_push", 10, true), ("clobbers_arg", 6, true), ("stack_then_call", 0, false)] {
        let f = json_of(name);
        assert_eq!((f["entry_offset"].as_u64(), f["entry_moved"].as_bool()), (Some(offset), Some(moved)), "{f}");
    }
    for (name, listed, argdist_costs, latency_costs) in cases {
        assert_eq!(entry_of(name), listed, "{name}: {}", list.stdout);
        // Every call seen once, with the argument it was called with (copies_arg's from RCX).
        let run = probe(&["argdist", "--func", name, "--arg", "0", "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        assert!(tracing_line(&run.stderr).contains(argdist_costs), "{name}: {}", run.stderr);
        let table = &json_tables(&run.stdout)[0];
        assert_eq!(u(table, "count"), reported_calls(&run.stderr, name), "{name}");
        assert_eq!(u(table, "count"), n as u64, "{name}");
        assert_eq!(table["sum"].as_i64(), Some(n * (n - 1) / 2), "{name}: {table}");
        assert_eq!(json_buckets(table), expected_buckets(0..n), "{name}");
        let run = probe(&["latency", "--func", name, "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        assert!(tracing_line(&run.stderr).contains(latency_costs), "{name}: {}", run.stderr);
        let table = &json_tables(&run.stdout)[0];
        assert_eq!((u(table, "count"), u(table, "abandoned")), (n as u64, 0), "{name}: {table}");
    }
    // A filter's argument must keep its register: clobbers_arg's latency then stays on `mov`.
    let run = probe(&["latency", "--func", "clobbers_arg", "--filter", "arg0 < 100", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(tracing_line(&run.stderr).contains("0 emulated, 2 single-stepped"), "{}", run.stderr);
    assert_eq!(u(&json_tables(&run.stdout)[0], "count"), 100);
    assert_nothing_attached();
}

#[test]
fn go_leaf_functions_enter_on_an_emulated_instruction_and_read_their_argument() {
    for version in GO_VERSIONS {
        let target = go_target_with("truth", version);
        let list = probe(&["list", &target.to_string_lossy(), "main.Leaf*"]);
        for leaf in ["Leaf01us", "Leaf05us", "Leaf4us", "Leaf40us"] {
            let row = list.stdout.lines().find(|l| l.ends_with(&format!(" main.{leaf}"))).unwrap();
            assert!(row.contains(" emulated "), "Go {version}: {}", list.stdout);
        }
        // A leaf's entry moved past its first instructions; a stack check's branch, where every
        // other Go function's entry is, is not counted as moved.
        let listed = probe(&["list", "--json", &target.to_string_lossy(), "main.*"]);
        let moved = |name: &str| {
            let f = json_tables(&listed.stdout).into_iter().find(|f| f["name"] == name).unwrap();
            (f["entry"].as_str().map(String::from), f["entry_moved"].as_bool())
        };
        assert_eq!(moved("main.Leaf4us"), (Some("emulated".into()), Some(true)), "Go {version}");
        assert_eq!(moved("main.Work1us"), (Some("emulated".into()), Some(false)), "Go {version}");
        // Its first instructions copy the argument (RAX) and then overwrite it: read the copy.
        let cmd = format!("{} -calls 300", target.display());
        let run = probe(&["argdist", "--func", "main.Leaf05us", "--arg", "0", "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "Go {version}: {}", run.stderr);
        assert!(tracing_line(&run.stderr).contains("(1 probe: 1 emulated, 0 single-stepped)"), "{}", run.stderr);
        let table = &json_tables(&run.stdout)[0];
        assert_eq!(u(table, "count"), reported_calls(&run.stderr, "Leaf05us"), "Go {version}");
        assert_eq!((u(table, "count"), table["sum"].as_i64()), (300, Some(300 * 220)), "Go {version}: {table}");
    }
    assert_nothing_attached();
}
