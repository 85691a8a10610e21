//! `probe argdist` end to end: real uprobes on real programs, exact numbers.
use crate::support::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Each round of the targets passes every value -500..=499 exactly once.
fn round_values() -> impl Iterator<Item = i64> {
    -500..=499
}

fn values_for(rounds: usize, f: impl Fn(i64) -> i64 + Copy) -> Vec<i64> {
    (0..rounds).flat_map(|_| round_values().map(f)).collect()
}

/// Checks one final JSON table against the exact values the target passed.
fn assert_table(table: &serde_json::Value, function: &str, measured: &str, values: &[i64]) {
    assert_eq!(table["kind"], "final");
    assert_eq!(table["function"], function);
    assert_eq!(table["measured"], measured);
    assert_eq!(table["count"].as_u64().unwrap(), values.len() as u64, "count");
    assert_eq!(table["sum"].as_i64().unwrap(), values.iter().sum::<i64>(), "sum");
    assert_eq!(table["min"].as_i64().unwrap(), *values.iter().min().unwrap(), "min");
    assert_eq!(table["max"].as_i64().unwrap(), *values.iter().max().unwrap(), "max");
    assert_eq!(table["unreadable"].as_u64().unwrap(), 0);
    assert_eq!(json_buckets(table), expected_buckets(values.iter().copied()), "buckets");
}

#[test]
fn go_register_abi_argument_is_exact() {
    let target = target("tostring");
    let cmd = format!("{} -rounds 3", target.display());
    let run = probe(&["argdist", "--func", "ToString", "--arg", "0", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = reported_calls(&run.stderr, "ToString");
    assert_eq!(calls, 3000);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1);
    assert_table(&tables[0], "main.ToString", "arg0", &values_for(3, |v| v));
    assert_nothing_attached();
}

#[test]
fn go_text_output_is_the_hist_log_table() {
    let target = target("tostring");
    let run = probe(&["argdist", "--func", "main.ToString", "--arg", "0", "-c", &target.to_string_lossy()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("main.ToString arg0: min:-500 avg:0 max:499 count:1000\n"), "{}", run.stdout);
    // One round: -256 row counts -500..=-256 (245 values), the 256 row 256..=499 (244).
    let expected_rows = [
        "value |-------------------------------------------------- count",
        "-1024 |                                                     0",
        " -512 |                                                     0",
        " -256 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@  245",
        " -128 |@@@@@@@@@@@@@@@@@@@@@@@@@                          128",
        "    0 |                                                     1",
        "  256 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@   244",
        " 1024 |                                                     0",
    ];
    for row in expected_rows {
        assert!(run.stdout.lines().any(|l| l == row), "missing row {row:?} in\n{}", run.stdout);
    }
    assert_nothing_attached();
}

#[test]
fn c_system_v_arguments_and_return_value_are_exact() {
    let target = target("cvalues");
    let cmd = format!("{} 2", target.display());
    for (flag, measured, f) in [
        (["--arg", "0"].as_slice(), "arg0", (|v| v) as fn(i64) -> i64),
        (["--arg", "1"].as_slice(), "arg1", |v| 2 * v),
        (["--ret"].as_slice(), "ret", |v| 3 * v),
    ] {
        let mut args = vec!["argdist", "--func", "work", "--json", "-c", &cmd];
        args.extend_from_slice(flag);
        let run = probe(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(reported_calls(&run.stderr, "work"), 2000);
        assert_table(&json_tables(&run.stdout)[0], "work", measured, &values_for(2, f));
        assert_nothing_attached();
    }
}

#[test]
fn go_assembly_stack_abi_argument_is_exact() {
    let target = target("goasm");
    let cmd = format!("{} -rounds 2", target.display());
    let run = probe(&["argdist", "--func", "Scale", "--arg", "0", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("Go stack ABI"), "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "Scale"), 2000);
    assert_table(&json_tables(&run.stdout)[0], "main.Scale.abi0", "arg0", &values_for(2, |v| v));
    assert_nothing_attached();
}

#[test]
fn go_return_value_through_ret_probes_is_exact() {
    // ToString returns a string: its DWARF says so, and --ret measures its length (the second
    // result word, RBX at the RETs); RAX, what --ret read before parameters were typed, holds
    // its data pointer. The program keeps running and exits normally.
    let target = target("tostring");
    let cmd = format!("{} -rounds 2", target.display());
    let run = probe(&["argdist", "--func", "ToString", "--ret", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "ToString"), 2000);
    let tables = json_tables(&run.stdout);
    assert_table(&tables[0], "main.ToString", "len(ret)", &values_for(2, |v| v.to_string().len() as i64));
    assert_nothing_attached();
}

#[test]
fn pid_mode_traces_a_running_process_until_it_exits() {
    let target = target("tostring");
    let mut app = Command::new(&target)
        .args(["-wait", "-rounds", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = app.id().to_string();
    let (probe_child, stderr) =
        probe_background(&["argdist", "--func", "ToString", "--arg", "0", "--json", "-p", &pid]);
    app.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let app_out = app.wait_with_output().unwrap();
    let run = finish(probe_child, stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&String::from_utf8_lossy(&app_out.stdout), "ToString"), 2000);
    assert_table(&json_tables(&run.stdout)[0], "main.ToString", "arg0", &values_for(2, |v| v));
    assert_nothing_attached();
}

#[test]
fn bare_binary_traces_processes_started_after_attaching() {
    let target = private_copy(&target("tostring"), "bare");
    let path = target.to_string_lossy().to_string();
    let (probe_child, stderr) =
        probe_background(&["argdist", "--func", "ToString", "--arg", "0", "--json", "-d", "60", &path]);
    let mut calls = 0;
    for _ in 0..2 {
        let out = Command::new(&target).output().unwrap();
        calls += reported_calls(&String::from_utf8_lossy(&out.stdout), "ToString");
    }
    interrupt(&probe_child);
    let run = finish(probe_child, stderr);
    std::fs::remove_file(&target).ok();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(calls, 2000);
    assert_table(&json_tables(&run.stdout)[0], "main.ToString", "arg0", &values_for(2, |v| v));
    assert_nothing_attached();
}

#[test]
fn interval_tables_add_up_to_the_final_one() {
    let target = target("tostring");
    // 1.5 s whatever a call costs: probes on emulated instructions made 300,000 calls too quick.
    let cmd = format!("{} -rounds 15 -pause-ms 100", target.display());
    let run = probe(&["argdist", "--func", "ToString", "--arg", "0", "--json", "-i", "0.2", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = reported_calls(&run.stderr, "ToString");
    let tables = json_tables(&run.stdout);
    let (intervals, finals): (Vec<_>, Vec<_>) = tables.iter().partition(|t| t["kind"] == "interval");
    assert!(intervals.len() >= 2, "expected several interval tables, got {}", intervals.len());
    assert_eq!(finals.len(), 1);
    let interval_sum: u64 = intervals.iter().map(|t| t["count"].as_u64().unwrap()).sum();
    let final_count = finals[0]["count"].as_u64().unwrap();
    assert_eq!(final_count, calls, "final table counts every call");
    assert_eq!(interval_sum, final_count, "the last, partial interval is printed too");
    assert_table(finals[0], "main.ToString", "arg0", &values_for(15, |v| v));
    assert_nothing_attached();
}

#[test]
fn c_return_value_of_recursion_deeper_than_the_uretprobe_limit_counts_every_call() {
    // deep(100) nests 101 calls, past the kernel's 64 pending uretprobe returns per thread.
    let target = target("cdeep");
    let run = probe(&["argdist", "--func", "deep", "--ret", "--json", "-c", &target.to_string_lossy()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "deep"), 303);
    // deep(n) returns n: 0..=100, three times.
    let values: Vec<i64> = (0..3).flat_map(|_| 0..=100).collect();
    assert_table(&json_tables(&run.stdout)[0], "deep", "ret", &values);
    assert_nothing_attached();
}
