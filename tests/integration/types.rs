//! Values read, compared, aggregated and shown as their declared types: a C `int` or Go `int32`
//! result is negative in `--filter 'ret < 0'`, `--ret=N` filters on result N, an unsigned
//! 64-bit value is a number up to 2^64-1 everywhere, a `const char *` on the stack is a string,
//! a `char **` is not one, and strings that are not UTF-8 stay distinct.
use crate::support::*;
use serde_json::{json, Value};

/// The one final JSON table of a run that must have succeeded, with the target's stderr.
fn final_table(args: &[&str]) -> (Value, String) {
    let run = probe(args);
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    let table = json_tables(&run.stdout).into_iter().find(|t| t["kind"] == "final").expect("a final table");
    (table, run.stderr)
}

fn count(table: &Value) -> u64 {
    table["count"].as_u64().unwrap()
}

#[test]
fn results_are_compared_as_declared_c_int_and_go_int32() {
    let c = target("ctypes");
    let c = c.to_string_lossy();
    // neg() returns an int -1..-5 ten times: RAX's upper half is not part of it.
    for (filter, calls) in [("ret < 0", 10), ("ret > 0", 0), ("ret >= -5 && ret <= -1", 10)] {
        let (table, stderr) = final_table(&["latency", "--func", "neg", "--filter", filter, "--json", "-c", &c]);
        assert_eq!(reported_calls(&stderr, "neg"), 10);
        assert_eq!(count(&table), calls, "latency --filter '{filter}'");
    }
    let (table, _) = final_table(&["argdist", "--func", "neg", "--ret", "--filter", "ret < 0", "--json", "-c", &c]);
    assert_eq!((count(&table), &table["min"], &table["max"]), (10, &json!(-5), &json!(-1)));
    for go in [target("gotypes"), go_target_with("gotypes", "1.23")] {
        let go = go.to_string_lossy();
        let (table, stderr) =
            final_table(&["latency", "--func", "main.Neg", "--filter", "ret < 0", "--json", "-c", &go]);
        assert_eq!((reported_calls(&stderr, "Neg"), count(&table)), (10, 10), "{go}");
        // Pair returns (0, -1..-5): --ret=1 filters on its second result, not on the first.
        let args = ["argdist", "--func", "main.Pair", "--ret=1", "--filter", "ret < 0", "--json", "-c", &go];
        let (table, _) = final_table(&args);
        assert_eq!((count(&table), &table["min"], &table["max"]), (10, &json!(-5), &json!(-1)), "{go}");
    }
    assert_nothing_attached();
}

#[test]
fn unsigned_64_bit_values_are_numbers_up_to_2_pow_64() {
    let max = json!(u64::MAX);
    let c = target("ctypes");
    let go = target("gotypes");
    for (target, func) in [(c.to_string_lossy(), "big"), (go.to_string_lossy(), "main.Big")] {
        // 3 calls with 2^64-1, 2 with 7.
        let (table, _) = final_table(&["argdist", "--func", func, "--arg", "v", "--json", "-c", &target]);
        assert_eq!((count(&table), &table["min"], &table["max"]), (5, &json!(7), &max), "{func}");
        assert_eq!(table["sum"], json!((3 * u64::MAX as u128 + 14).to_string()), "{func}");
        let top = &table["buckets"][1];
        assert_eq!((&top["low"], &top["high"], &top["count"]), (&json!(1u64 << 63), &max, &json!(3)), "{func}");
        let (table, _) =
            final_table(&["argdist", "--func", func, "--arg", "v", "--filter", "v > 5", "--json", "-c", &target]);
        assert_eq!(count(&table), 5, "{func}: 2^64-1 > 5");
        let (table, _) = final_table(&["argdist", "--func", func, "--arg", "v", "--count", "--json", "-c", &target]);
        assert_eq!(table["values"], json!([{ "value": max, "count": 3 }, { "value": 7, "count": 2 }]), "{func}");
        let run = probe(&["argdist", "--func", func, "--arg", "v", "-c", &target]);
        assert!(run.stdout.contains(&format!("min:7 avg:11068046444225730971 max:{} count:5\n", u64::MAX)));
        assert!(run.stdout.contains("9223372036854775808 |@@@ "), "{}", run.stdout);
    }
    assert_nothing_attached();
}

#[test]
fn a_c_string_on_the_stack_is_read_as_a_string_and_char_pointers_pointers_are_refused() {
    let c = target("ctypes");
    let c = c.to_string_lossy();
    // named()'s 7th parameter, a const char *, is passed on the stack.
    let (table, stderr) = final_table(&["argdist", "--func", "named", "--arg", "name", "--count", "--json", "-c", &c]);
    assert_eq!(reported_calls(&stderr, "named"), 5);
    assert_eq!(table["values"], json!([{ "value": "alpha", "count": 3 }, { "value": "beta", "count": 2 }]));
    let (table, _) =
        final_table(&["argdist", "--func", "named", "--arg", "6", "--string", "--count", "--json", "-c", &c]);
    assert_eq!(table["values"][0], json!({ "value": "alpha", "count": 3 }), "by position");
    assert_rejected(
        probe(&["argdist", "--func", "argv_count", "--arg", "argv", "--count", "-c", &c]),
        "argv points to char pointers (char **), not to a string",
    );
}

#[test]
fn strings_that_are_not_utf8_are_shown_escaped_and_distinct() {
    let c = target("ctypes");
    let c = c.to_string_lossy();
    // label() is called with "\xff" 3 times and "\xfe" twice.
    let (table, _) = final_table(&["argdist", "--func", "label", "--arg", "s", "--count", "--json", "-c", &c]);
    assert_eq!(
        table["values"],
        json!([{ "value": r"\xff", "utf8": false, "count": 3 }, { "value": r"\xfe", "utf8": false, "count": 2 }])
    );
    let run = probe(&["argdist", "--func", "label", "--arg", "s", "--count", "-c", &c]);
    assert!(run.stdout.contains("value   count\n\"\\xff\"      3\n\"\\xfe\"      2\n"), "{}", run.stdout);
    assert_nothing_attached();
}

#[test]
fn a_strings_value_is_its_whole_length() {
    // Go: a 100-byte path 7 times a round; C: the same path 7 times. A key holds 64 bytes.
    let go = target("strings");
    let cmd = format!("{} -rounds 2", go.display());
    let (table, _) = final_table(&[
        "argdist",
        "--func",
        "Handle",
        "--arg",
        "0",
        "--string",
        "--count",
        "--filter",
        "value > 70",
        "--json",
        "-c",
        &cmd,
    ]);
    assert_eq!((count(&table), &table["values"][0]["truncated"]), (14, &json!(true)), "{table}");
    let c = target("cstrings");
    let c = c.to_string_lossy();
    for (filter, calls) in [("value > 70", 7), ("value == 100", 7), ("value > 100", 0)] {
        let args = ["argdist", "--func", "handle", "--arg", "0", "--string", "--count", "--filter", filter];
        let (table, _) = final_table(&[&args[..], &["--json", "-c", &c]].concat());
        assert_eq!(count(&table), calls, "{filter}");
    }
    assert_nothing_attached();
}
