//! `probe latency` end to end: exact counts, Go-safe exits, recursion, stack growth, goroutine
//! migration, panics, and durations checked against known sleeps.
use crate::support::*;
use serde_json::Value;

/// Runs `probe latency --json` on a Go scenario of tests/targets/go/latency, returns (the target's
/// output, which is on stderr when probe's JSON is on stdout, table).
fn go_scenario(mode: &str, func: &str, extra: &[&str]) -> (String, Value) {
    let target = target("latency");
    let cmd = format!("{} -mode {mode}", target.display());
    let mut args = vec!["latency", "--func", func, "--json", "-c", &cmd];
    args.extend_from_slice(extra);
    let run = probe(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{}", run.stdout);
    assert_percentiles_within_min_and_max(&tables[0]);
    assert_nothing_attached();
    (run.stderr, tables[0].clone())
}

/// Percentiles come from buckets but never lie outside the run's exact min and max (JSON's
/// `min` and `max` are the exact nanoseconds in the unit).
fn assert_percentiles_within_min_and_max(table: &Value) {
    if u(table, "count") == 0 {
        return;
    }
    let (min, max) = (f(table, "min"), f(table, "max"));
    for p in ["p50", "p90", "p99", "p99.9"] {
        let v = table["percentiles"][p].as_f64().unwrap();
        assert!(min <= v && v <= max, "{p} {v} outside [{min}, {max}]: {table}");
    }
}

fn u(table: &Value, field: &str) -> u64 {
    table[field].as_u64().unwrap_or_else(|| panic!("{field} in {table}"))
}

/// A number of a table in its unit (latency's min, max and sum have fractions but in ns).
fn f(table: &Value, field: &str) -> f64 {
    table[field].as_f64().unwrap_or_else(|| panic!("{field} in {table}"))
}

#[test]
fn seed_regex_program_survives_and_counts_are_exact() {
    // The program bpftrace's uretprobe kills with "unknown caller pc": 10 s, GC busy.
    let target = target("regex");
    let cmd = format!("{} -seconds 10", target.display());
    let run = probe(&["latency", "--func", "main.UsingSubstring", "--func", "UsingRegex", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("fatal error"), "{}", run.stderr);
    let substring = reported_calls(&run.stderr, "UsingSubstring");
    let regex = reported_calls(&run.stderr, "UsingRegex");
    assert!(substring > 1000 && regex > 1000, "{}", run.stdout);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 2);
    assert_eq!(tables[0]["function"], "main.UsingSubstring");
    assert_eq!(u(&tables[0], "count"), substring);
    assert_eq!(tables[1]["function"], "main.UsingRegex");
    assert_eq!(u(&tables[1], "count"), regex);
    for t in &tables {
        assert_eq!(u(t, "abandoned"), 0);
        assert_eq!(t["unit"], "us");
    }
    assert_nothing_attached();
}

#[test]
fn recursion_counts_every_call() {
    let (stdout, table) = go_scenario("fib", "Fib", &[]);
    assert_eq!(reported_calls(&stdout, "Fib"), 242785);
    assert_eq!(u(&table, "count"), 242785);
    assert_eq!(u(&table, "abandoned"), 0);
}

#[test]
fn stack_growth_is_not_counted_twice() {
    let (stdout, table) = go_scenario("grow", "Grow", &[]);
    let calls = reported_calls(&stdout, "Grow");
    assert_eq!(calls, 20 * 201);
    assert_eq!(u(&table, "count"), calls);
    assert_eq!(u(&table, "abandoned"), 0);
    assert_eq!(u(&table, "too_deep"), 0);
}

#[test]
fn goroutines_migrating_between_threads_are_timed_right() {
    let (stdout, table) = go_scenario("block", "Block", &["--unit", "us"]);
    assert_eq!(reported_calls(&stdout, "Block"), 200);
    assert_eq!(u(&table, "count"), 200);
    let (min, max) = (f(&table, "min"), f(&table, "max"));
    assert!(min >= 5000.0, "every call blocks 5 ms, min was {min} us");
    assert!(max < 1_000_000.0, "max {max} us is not sane for a 5 ms sleep");
}

#[test]
fn panics_are_counted_as_abandoned_and_do_not_skew_normal_calls() {
    let (stdout, table) = go_scenario("panic", "Risky", &[]);
    assert!(stdout.contains("Risky normal: 1000 panicked: 1000"), "{stdout}");
    assert_eq!(u(&table, "count"), 1000, "only calls that returned are measured");
    assert_eq!(u(&table, "abandoned"), 1000, "each panicked call is reported");
    let min = f(&table, "min");
    assert!(min >= 1000.0, "normal calls sleep 1 ms; min was {min} us");
    assert!(f(&table, "max") < 1_000_000.0);
}

#[test]
fn recursive_calls_left_by_one_panic_are_abandoned_together() {
    // Each round's ten nested frames are all gone at the next round's first entry, popped at
    // once from the middle of the stack; a frame the filter left out is not counted.
    for (filter, count, abandoned) in [(None, 10, 1000), (Some("n >= 5"), 5, 500), (Some("n < 3"), 3, 300)] {
        let extra: Vec<&str> = filter.map(|f| vec!["--filter", f]).unwrap_or_default();
        let (stdout, table) = go_scenario("dive", "main.Dive", &extra);
        assert_eq!(reported_calls(&stdout, "Dive"), 1010);
        assert_eq!((u(&table, "count"), u(&table, "abandoned")), (count, abandoned), "{filter:?}: {table}");
        assert_eq!(table["losses"], serde_json::json!({}), "{filter:?}");
    }
}

#[test]
fn known_duration_lands_in_the_right_percentile() {
    let (stdout, table) = go_scenario("sleep", "Sleep2ms", &["--unit", "ms"]);
    assert_eq!(reported_calls(&stdout, "Sleep2ms"), 200);
    assert_eq!(u(&table, "count"), 200);
    assert_eq!(table["unit"], "ms");
    let p50 = table["percentiles"]["p50"].as_f64().unwrap();
    assert!((2.0..=3.0).contains(&p50), "p50 {p50} ms for a 2 ms sleep");
}

#[test]
fn c_uretprobe_and_ret_probes_count_the_same() {
    let target = target("clatency");
    let mut counts = Vec::new();
    for exit in ["auto", "ret"] {
        let run = probe(&[
            "latency",
            "--exit",
            exit,
            "--func",
            "nap",
            "--func",
            "cfib",
            "--json",
            "-c",
            &target.to_string_lossy(),
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let tables = json_tables(&run.stdout);
        assert_eq!(u(&tables[0], "count"), reported_calls(&run.stderr, "nap"), "--exit {exit}");
        assert_eq!(u(&tables[1], "count"), reported_calls(&run.stderr, "cfib"), "--exit {exit}");
        assert!(f(&tables[0], "min") >= 100.0, "nap sleeps 100 us");
        counts.push((u(&tables[0], "count"), u(&tables[1], "count")));
        assert_nothing_attached();
    }
    assert_eq!(counts[0], counts[1]);
    assert_eq!(counts[0], (300, 8361));
}

#[test]
fn text_output_has_summary_percentiles_and_hist_log() {
    let target = target("latency");
    let cmd = format!("{} -mode sleep", target.display());
    let run = probe(&["latency", "--func", "Sleep2ms", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.stdout.lines().find(|l| l.starts_with("main.Sleep2ms: ")).expect(&run.stdout);
    for field in ["min:", "avg:", "max:", "count:200", "p50:", "p90:", "p99:", "p99.9:"] {
        assert!(summary.contains(field), "{field} missing in {summary}");
    }
    // min/avg/max like the percentiles: three significant digits (2.05ms would read 2050us).
    for field in ["min:", "avg:", "max:"] {
        let value = summary.split(' ').find_map(|w| w.strip_prefix(field)).unwrap();
        let number = value.strip_suffix("us").expect(summary);
        let significant = number.chars().filter(char::is_ascii_digit).skip_while(|&c| c == '0').count();
        assert!(significant >= 3 && number.parse::<f64>().is_ok(), "{field}{value} in {summary}");
    }
    // The table names its unit; 2.0-2.9 ms is the 2048 us row of the @hist_log table (its
    // label is right-aligned to the widest label, which a slow outlier can widen).
    assert!(run.stdout.contains(&format!(" (us) |{} count\n", "-".repeat(50))), "{}", run.stdout);
    assert!(run.stdout.lines().any(|l| l.trim_start().starts_with("2048 |@")), "{}", run.stdout);
    assert_nothing_attached();
}

#[test]
fn attaching_to_a_running_process_invents_no_abandoned_calls() {
    // Issue 12: with -p, entries attached before their RET probes made every call that
    // returned through a not-yet-attached RET look abandoned (3-8 per run here, 21% once).
    let target = target("regex");
    let mut app = std::process::Command::new(&target)
        .args(["-seconds", "30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = app.id().to_string();
    let mut counted = 0;
    for run_no in 0..5 {
        let run =
            probe(&["latency", "--func", "UsingRegex", "--func", "UsingSubstring", "--json", "-d", "1", "-p", &pid]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let tables = json_tables(&run.stdout);
        assert_eq!(tables.len(), 2, "{}", run.stdout);
        for t in &tables {
            assert_eq!(u(t, "abandoned"), 0, "run {run_no}: {t}");
            counted += u(t, "count");
        }
        assert_nothing_attached();
    }
    app.kill().ok();
    app.wait().ok();
    assert!(counted > 1000, "the runs timed only {counted} calls");
}

#[test]
fn c_recursion_deeper_than_the_uretprobe_limit_is_timed_whole() {
    // The kernel keeps at most 64 pending uretprobe returns per thread; deep(100) nests 101.
    let target = target("cdeep");
    let cmd = target.to_string_lossy().to_string();
    let run = probe(&["latency", "--func", "deep", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "deep"), 303);
    let table = &json_tables(&run.stdout)[0];
    assert_eq!(u(table, "count"), 303, "{table}");
    assert_eq!(u(table, "abandoned"), 0, "{table}");
    assert!(run.stderr.contains("3 probes"), "a recursive C function gets RET probes: {}", run.stderr);
    assert_nothing_attached();

    // Asked for uretprobes, the calls past the limit are accounted for and the user is told.
    let run = probe(&["latency", "--exit", "uretprobe", "--func", "deep", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("warning: deep calls itself"), "{}", run.stderr);
    let table = &json_tables(&run.stdout)[0];
    assert_eq!(u(table, "count") + u(table, "abandoned"), 303, "{table}");
    assert_nothing_attached();
}

#[test]
fn interval_tables_with_a_duration_add_up_to_the_final_one() {
    // Issue 12: `-d 3 -i 1` printed +1.0s and +2.0s only; the calls after the last tick were
    // in the final table and in no interval.
    let target = target("regex");
    let cmd = format!("{} -seconds 4", target.display());
    let run = probe(&["latency", "--func", "UsingSubstring", "--json", "-d", "2.5", "-i", "1", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    let (intervals, finals): (Vec<_>, Vec<_>) = tables.iter().partition(|t| t["kind"] == "interval");
    // +1s, +2s and the last half second (fewer only if ticks ran late on a slow machine).
    assert!(intervals.len() >= 2, "{}", run.stdout);
    let sum = |field: &str| intervals.iter().map(|t| u(t, field)).sum::<u64>();
    assert_eq!(finals.len(), 1);
    assert!(u(finals[0], "count") > 0);
    assert_eq!(sum("count"), u(finals[0], "count"));
    assert_eq!(sum("abandoned"), u(finals[0], "abandoned"));
    assert_nothing_attached();

    // Text: one time stamp per interval block, and the blocks add up to the final one.
    let run = probe(&["latency", "--func", "UsingSubstring", "-d", "2.5", "-i", "1", "-c", &cmd]);
    let stamps = run.stdout.lines().filter(|l| l.contains(" (+")).count();
    let counts: Vec<u64> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("main.UsingSubstring: "))
        .map(|l| l.split("count:").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    let (last, blocks) = counts.split_last().unwrap();
    assert!(stamps >= 2 && stamps == blocks.len(), "{}", run.stdout);
    assert_eq!(blocks.iter().sum::<u64>(), *last, "{}", run.stdout);
    assert_nothing_attached();
}
