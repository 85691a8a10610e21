//! `probe latency` end to end: exact counts, Go-safe exits, recursion, stack growth, goroutine
//! migration, panics, and durations checked against known sleeps.
use probe_tests::*;
use serde_json::Value;

/// Runs `probe latency --json` on a Go scenario of tests/targets/latency, returns (the target's
/// output, which is on stderr when probe's JSON is on stdout, table).
fn go_scenario(mode: &str, func: &str, extra: &[&str]) -> (String, Value) {
    let target = go_target("latency");
    let cmd = format!("{} -mode {mode}", target.display());
    let mut args = vec!["latency", "--func", func, "--json", "-c", &cmd];
    args.extend_from_slice(extra);
    let run = probe(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{}", run.stdout);
    assert_nothing_attached();
    (run.stderr, tables[0].clone())
}

fn u(table: &Value, field: &str) -> u64 {
    table[field].as_u64().unwrap_or_else(|| panic!("{field} in {table}"))
}

#[test]
fn seed_regex_program_survives_and_counts_are_exact() {
    // The program bpftrace's uretprobe kills with "unknown caller pc": 10 s, GC busy.
    let target = go_target("regex");
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
    let (min, max) = (u(&table, "min"), u(&table, "max"));
    assert!(min >= 5000, "every call blocks 5 ms, min was {min} us");
    assert!(max < 1_000_000, "max {max} us is not sane for a 5 ms sleep");
}

#[test]
fn panics_are_counted_as_abandoned_and_do_not_skew_normal_calls() {
    let (stdout, table) = go_scenario("panic", "Risky", &[]);
    assert!(stdout.contains("Risky normal: 1000 panicked: 1000"), "{stdout}");
    assert_eq!(u(&table, "count"), 1000, "only calls that returned are measured");
    assert_eq!(u(&table, "abandoned"), 1000, "each panicked call is reported");
    let min = u(&table, "min");
    assert!(min >= 1000, "normal calls sleep 1 ms; min was {min} us");
    assert!(u(&table, "max") < 1_000_000);
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
    let target = c_target("clatency", &[]);
    let mut counts = Vec::new();
    for exit in ["auto", "ret"] {
        let run = probe(&[
            "latency", "--exit", exit, "--func", "nap", "--func", "cfib", "--json", "-c", &target.to_string_lossy(),
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let tables = json_tables(&run.stdout);
        assert_eq!(u(&tables[0], "count"), reported_calls(&run.stderr, "nap"), "--exit {exit}");
        assert_eq!(u(&tables[1], "count"), reported_calls(&run.stderr, "cfib"), "--exit {exit}");
        assert!(u(&tables[0], "min") >= 100, "nap sleeps 100 us");
        counts.push((u(&tables[0], "count"), u(&tables[1], "count")));
        assert_nothing_attached();
    }
    assert_eq!(counts[0], counts[1]);
    assert_eq!(counts[0], (300, 8361));
}

#[test]
fn text_output_has_summary_percentiles_and_hist_log() {
    let target = go_target("latency");
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
    // The table names its unit; 2.0-2.9 ms is the 2048 us row of the @hist_log table.
    assert!(run.stdout.contains(&format!("\nvalue (us) |{} count\n", "-".repeat(50))), "{}", run.stdout);
    assert!(run.stdout.lines().any(|l| l.starts_with("      2048 |@")), "{}", run.stdout);
    assert_nothing_attached();
}
