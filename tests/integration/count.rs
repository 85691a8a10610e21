//! `probe argdist --count`: calls per exact value, through the keyed per-CPU hash map and its
//! two-bank drain. Every call is accounted for: under its value, or as lost when the map is full.
use crate::support::*;
use std::collections::BTreeMap;

/// The final table's values as value -> calls, checking that nothing was left out of them.
fn counted(table: &serde_json::Value) -> BTreeMap<i64, u64> {
    table["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|row| (row["value"].as_i64().unwrap(), row["count"].as_u64().unwrap()))
        .collect()
}

/// Each round of tostring passes every value -500..=499 exactly once.
fn each_value(times: u64) -> BTreeMap<i64, u64> {
    (-500..=499).map(|v| (v, times)).collect()
}

#[test]
fn go_values_are_counted_exactly_on_two_go_versions() {
    for target in [target("tostring"), go_target_with("tostring", "1.23")] {
        let cmd = format!("{} -rounds 3", target.display());
        let run =
            probe(&["argdist", "--func", "ToString", "--arg", "0", "--count", "--top", "1000", "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(reported_calls(&run.stderr, "ToString"), 3000);
        let tables = json_tables(&run.stdout);
        let table = &tables[0];
        assert_eq!(table["count"], 3000);
        assert_eq!(table["distinct"], 1000);
        assert_eq!(table["other_values"], 0);
        assert_eq!(table["lost"], 0);
        assert_eq!(counted(table), each_value(3));
        assert_nothing_attached();
    }
}

#[test]
fn c_return_values_are_counted_exactly_and_shown_most_frequent_first() {
    let target = target("cvalues");
    let cmd = format!("{} 2", target.display());
    let run = probe(&["argdist", "--func", "work", "--ret", "--count", "--top", "3", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stdout, "work"), 2000); // text mode: the target's stdout is ours
                                                           // work(v) returns 3v: every value twice; ties in order of value.
    let expected = "work ret: count:2000 values:1000\n\
                    value  count\n\
                    -1500      2\n\
                    -1497      2\n\
                    -1494      2\n\
                    (997 other values: 1994 calls; --top N shows more)\n";
    assert!(run.stdout.contains(expected), "{}", run.stdout);
    assert_nothing_attached();
}

#[test]
fn interval_tables_add_up_to_the_final_one_value_by_value() {
    let target = target("tostring");
    let cmd = format!("{} -rounds 12 -pause-ms 100", target.display());
    let args = ["argdist", "--func", "ToString", "--arg", "0", "--count", "--top", "1000", "--json", "-i", "0.2"];
    let run = probe(&[&args[..], &["-c", &cmd]].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "ToString"), 12_000);
    let tables = json_tables(&run.stdout);
    let (intervals, last) = tables.split_at(tables.len() - 1);
    assert!(intervals.len() >= 3, "several intervals: {}", intervals.len());
    let mut summed: BTreeMap<i64, u64> = BTreeMap::new();
    for table in intervals {
        assert_eq!(table["kind"], "interval");
        assert_eq!(table["other_values"], 0);
        for (v, c) in counted(table) {
            *summed.entry(v).or_default() += c;
        }
    }
    assert_eq!(last[0]["kind"], "final");
    assert_eq!(summed, each_value(12), "the intervals add up to every call");
    assert_eq!(counted(&last[0]), each_value(12));
    assert_nothing_attached();
}

#[test]
fn a_full_map_counts_the_other_calls_as_lost() {
    let target = target("tostring");
    let cmd = format!("{} -rounds 3", target.display());
    let run =
        probe(&["argdist", "--func", "ToString", "--arg", "0", "--count", "--max-values", "10", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = &json_tables(&run.stdout)[0];
    let distinct = table["distinct"].as_u64().unwrap();
    // The map holds two intervals' worth of keys: at most 20 values here.
    assert!((10..=20).contains(&distinct), "{table}");
    let shown: u64 = counted(table).values().sum();
    let lost = table["lost"].as_u64().unwrap();
    assert_eq!(shown + table["other_count"].as_u64().unwrap() + lost, 3000, "{table}");
    assert_eq!(lost, 3000 - 3 * distinct, "each value that fit was counted 3 times: {table}");
    assert!(run.stdout.contains("\"lost\":"), "{}", run.stdout);
    assert_nothing_attached();
}

#[test]
fn bad_count_options_are_one_line_and_exit_2() {
    let target = target("tostring");
    let t = target.to_string_lossy();
    for (args, needle) in [
        (vec!["argdist", "--func", "ToString", "--arg", "0", "--max-values", "5", &t], "--count"),
        (vec!["argdist", "--func", "ToString", "--arg", "0", "--count", "--max-values", "0", &t], "--max-values"),
    ] {
        assert_rejected(probe(&args), needle);
    }
}

/// The strings the targets pass, with their calls per round; the long one is cut to 64 bytes.
fn string_table(table: &serde_json::Value) -> Vec<(String, bool, u64)> {
    table["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|r| (r["value"].as_str().unwrap().to_string(), r["truncated"] == true, r["count"].as_u64().unwrap()))
        .collect()
}

fn expected_strings(rounds: u64) -> Vec<(String, bool, u64)> {
    let cut = format!("/{}", "x".repeat(63));
    vec![
        ("/api/users".into(), false, 30 * rounds),
        ("/metrics".into(), false, 20 * rounds),
        (cut, true, 7 * rounds),
        (String::new(), false, 5 * rounds),
    ]
}

#[test]
fn go_strings_are_counted_by_their_bytes_on_two_go_versions() {
    for target in [target("strings"), go_target_with("strings", "1.23")] {
        let cmd = format!("{} -rounds 2", target.display());
        let run = probe(&["argdist", "--func", "Handle", "--arg", "0", "--string", "--count", "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(reported_calls(&run.stderr, "Handle"), 124);
        let table = &json_tables(&run.stdout)[0];
        assert_eq!((table["count"].as_u64(), table["unreadable"].as_u64()), (Some(124), Some(0)));
        assert_eq!(string_table(table), expected_strings(2));
        // Without --count, a Go string is its length; a filter on it keeps the empty ones.
        let run = probe(&["argdist", "--func", "Handle", "--arg", "0", "--string", "--json", "-c", &cmd]);
        let table = &json_tables(&run.stdout)[0];
        assert_eq!((table["count"].as_u64(), table["max"].as_i64()), (Some(124), Some(100)));
        let args = ["argdist", "--func", "Handle", "--arg", "0", "--string", "--count", "--filter", "value == 0"];
        let run = probe(&[&args[..], &["--json", "-c", &cmd]].concat());
        assert_eq!(string_table(&json_tables(&run.stdout)[0]), vec![(String::new(), false, 10)]);
        // By name, with the string's declared type (DWARF): len(path) filters on its length.
        let args = ["argdist", "--func", "Handle", "--arg", "path", "--count", "--filter", "len(path) > 9"];
        let run = probe(&[&args[..], &["--json", "-c", &cmd]].concat());
        let want: Vec<_> = expected_strings(2).into_iter().filter(|s| s.0 == "/api/users" || s.1).collect();
        assert_eq!(string_table(&json_tables(&run.stdout)[0]), want, "{}", run.stderr);
        assert_nothing_attached();
    }
}

#[test]
fn c_strings_are_counted_up_to_their_nul() {
    let target = target("cstrings");
    let cmd = target.to_string_lossy().to_string();
    let run = probe(&["argdist", "--func", "handle", "--arg", "0", "--string", "--count", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "handle"), 62);
    assert_eq!(string_table(&json_tables(&run.stdout)[0]), expected_strings(1));
    // Without --count there is no number to measure: one line, exit 2.
    assert_rejected(probe(&["argdist", "--func", "handle", "--arg", "0", "--string", "-c", &cmd]), "add --count");
}
