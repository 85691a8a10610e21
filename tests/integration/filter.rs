//! `--filter`: conditions evaluated in the kernel before aggregation; the tables hold exactly
//! the calls that satisfy them.
use crate::support::*;

#[test]
fn argdist_keeps_only_the_values_in_range() {
    let target = target("tostring");
    let cmd = format!("{} -rounds 2", target.display());
    let filter = "value >= 100 && value < 200";
    let run = probe(&["argdist", "--func", "ToString", "--arg", "0", "--filter", filter, "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "ToString"), 2000);
    let table = &json_tables(&run.stdout)[0];
    assert_eq!(
        (table["count"].as_u64(), table["min"].as_i64(), table["max"].as_i64()),
        (Some(200), Some(100), Some(199))
    );
    assert_eq!(table["sum"], 2 * (100..200).sum::<i64>());
    // The same by the parameter's name (the target has DWARF).
    let filter = "number >= 100 && number < 200";
    let run = probe(&["argdist", "--func", "ToString", "--arg", "number", "--filter", filter, "--json", "-c", &cmd]);
    assert_eq!(json_tables(&run.stdout)[0]["count"], 200, "{}", run.stderr);
    assert_nothing_attached();
}

#[test]
fn latency_filters_on_arguments_at_entry_and_the_return_value_at_exit() {
    let target = target("cvalues");
    let cmd = format!("{} 2", target.display());
    // work(v, 2v) returns 3v: v < 0 and 3v < -3 hold for v in -500..=-2, twice.
    let run = probe(&["latency", "--func", "work", "--filter", "arg0 < 0 && ret < -3", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "work"), 2000);
    assert_eq!(json_tables(&run.stdout)[0]["count"], 998);
    assert_nothing_attached();
}

#[test]
fn latency_of_recursive_calls_by_argument_and_by_duration() {
    let target = target("clatency");
    let cmd = target.to_string_lossy().to_string();
    let count = |filter: &str, func: &str| {
        let run = probe(&["latency", "--func", func, "--filter", filter, "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(reported_calls(&run.stderr, "nap"), 300);
        json_tables(&run.stdout)[0]["count"].as_u64().unwrap()
    };
    // cfib(18) makes fib(19) = 4181 calls with n < 2 and one with n == 18.
    assert_eq!(count("arg0 < 2", "cfib"), 4181);
    assert_eq!(count("arg0 == 18", "cfib"), 1);
    // Every nap sleeps at least 100 us.
    assert_eq!(count("latency >= 90us", "nap"), 300);
    assert_eq!(count("latency < 90us", "nap"), 0);
    assert_nothing_attached();
}

#[test]
fn counts_and_breakdowns_are_filtered_too() {
    let target = target("tostring");
    let cmd = format!("{} -rounds 3", target.display());
    let run = probe(&[
        "argdist",
        "--func",
        "ToString",
        "--arg",
        "0",
        "--count",
        "--filter",
        "value == -7",
        "--json",
        "-c",
        &cmd,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = &json_tables(&run.stdout)[0];
    assert_eq!((table["count"].as_u64(), table["distinct"].as_u64()), (Some(3000 / 1000), Some(1)));
    assert_eq!(table["values"][0]["value"], -7);
    let run =
        probe(&["argdist", "--func", "ToString", "--arg", "0", "--by", "pid", "--filter", "pid == 1", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("main.ToString arg0: count:0\n"), "{}", run.stdout);
    assert_nothing_attached();
}

#[test]
fn bad_filters_are_one_line_and_exit_2() {
    let target = target("tostring");
    let t = target.to_string_lossy();
    for (command, filter, needle) in [
        ("argdist", "arg0 >> 3", "`>>` is not a comparison"),
        ("argdist", "latency > 1ms", "latency is what `probe latency` measures"),
        ("latency", "latency > 5", "needs a unit"),
        ("latency", "size == 0", "main.ToString has no parameter named size; did you mean number?"),
    ] {
        let mut args = vec![command, "--func", "ToString", "--filter", filter, &t];
        if command == "argdist" {
            args.extend(["--arg", "0"]);
        }
        let run = probe(&args);
        assert!(run.stderr.starts_with(&format!("probe: --filter '{filter}': ")), "{}", run.stderr);
        assert_rejected(run, needle);
    }
}

#[test]
fn a_panic_under_a_filter_is_abandoned_never_a_latency() {
    // Risky(fail) panics when fail is true (every other call); the others sleep 1 ms. A call the
    // filter leaves out keeps its place in the frame stack: its return is not taken for the
    // return of the call that panicked before it at the same depth.
    let target = target("latency");
    let cmd = format!("{} -mode panic", target.display());
    for (filter, count, abandoned) in [("fail == 1", 0, 1000), ("fail == 0", 1000, 0)] {
        let run = probe(&["latency", "--func", "main.Risky", "--filter", filter, "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stderr.contains("Risky normal: 1000 panicked: 1000"), "{}", run.stderr);
        let table = &json_tables(&run.stdout)[0];
        assert_eq!((table["count"].as_u64(), table["abandoned"].as_u64()), (Some(count), Some(abandoned)), "{filter}");
        assert_eq!(table["losses"], serde_json::json!({}), "{filter}");
    }
    assert_nothing_attached();
}
