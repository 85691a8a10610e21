//! Every call a program drops is counted under its reason (`losses` in JSON, a `warning:` line
//! in text), so a table and its reasons add up to the calls the target made. Each test forces
//! one reason for real: maps made small (`PROBE_TEST_MAP_SIZES`, for tests only), a goroutine
//! register that does not hold the goroutine, an argument past the end of the stack, a call in
//! flight before probe attached.
use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// probe with `PROBE_TEST_MAP_SIZES=sizes`, run to completion.
fn probe_with_maps(sizes: &str, args: &[&str]) -> Run {
    let out = Command::new(probe_bin())
        .args(args)
        .env("PROBE_TEST_MAP_SIZES", sizes)
        .stdin(Stdio::null())
        .output()
        .expect("run probe");
    out.into()
}

fn u(table: &Value, field: &str) -> u64 {
    table[field].as_u64().unwrap_or_else(|| panic!("no {field} in {table}"))
}

/// The final JSON tables of a run, which must have succeeded.
fn finals(run: &Run) -> Vec<Value> {
    assert_eq!(run.code, 0, "{}", run.stderr);
    json_tables(&run.stdout).into_iter().filter(|t| t["kind"] == "final").collect()
}

#[test]
fn full_keyed_maps_count_the_other_calls_as_keys_full() {
    let target = target("threads");
    // 4 threads, 100 calls each; room for 2 keys, or for 3 (key, bucket) pairs.
    let cmd = format!("{} 4 10 10", target.display());
    for (sizes, command) in [
        ("LATENCY_STATS_BY=2", "latency"),
        ("BUCKETS_BY=3", "latency"),
        ("VALUE_STATS_BY=2", "argdist"),
        ("BUCKETS_BY=3", "argdist"),
    ] {
        let mut args = vec![command, "--func", "tleaf", "--by", "tid", "--json", "-c", &cmd];
        if command == "argdist" {
            args.extend(["--arg", "0"]);
        }
        let run = probe_with_maps(sizes, &args);
        let tables = finals(&run);
        assert_eq!(reported_calls(&run.stderr, "tleaf"), 400);
        let counted: u64 = tables.iter().map(|t| u(t, "count")).sum();
        let full = u(&tables[0]["losses"], "keys_full");
        assert!(full > 0, "{sizes} {command}: {}", run.stdout);
        assert_eq!(counted + full, 400, "{sizes} {command}: {}", run.stdout);
        assert!(tables.iter().all(|t| u(t, "lost") == full && t["losses"] == json!({ "keys_full": full })));
        if sizes.ends_with("_BY=2") {
            assert_eq!((tables.len(), full), (2, 200), "two threads' keys fit: {}", run.stdout);
        }
    }
    assert_nothing_attached();
}

#[test]
fn calls_in_flight_beyond_the_entries_map_are_counted_and_their_returns_noted() {
    let target = target("losses");
    // Every round 4 threads are inside held() at once; the map holds one of them. --raw: the
    // probes' cost, measured again while the trace runs, would take that one entry now and then.
    let cmd = format!("{} held 4 10", target.display());
    let run = probe_with_maps("ENTRIES=1", &["latency", "--raw", "--func", "held", "--json", "-c", &cmd]);
    let table = &finals(&run)[0];
    assert_eq!(reported_calls(&run.stderr, "held"), 40);
    assert_eq!(u(table, "count"), 10, "{table}");
    assert_eq!(table["losses"], json!({ "in_flight_full": 30, "unmatched_returns": 30 }));
    let run = probe_with_maps("ENTRIES=1", &["latency", "--raw", "--func", "held", "-c", &cmd]);
    assert!(run.stdout.contains(
        "warning: held: 30 calls not timed: more goroutines or threads inside traced functions at once than probe follows\n"
    ), "{}", run.stdout);
    assert!(run.stdout.contains("note: held: 30 returns without a recorded entry: calls already running when tracing began, or whose entry is counted above\n"), "{}", run.stdout);
    assert_nothing_attached();
}

#[test]
fn a_goroutine_that_cannot_be_read_is_counted_once_per_call() {
    // Inner runs with R14 set to 8 by its assembly caller, where probe reads the goroutine.
    let target = target("goasm");
    let cmd = format!("{} -clobbered 100", target.display());
    let run = probe(&["latency", "--func", "main.Inner", "--json", "-c", &cmd]);
    let table = &finals(&run)[0];
    assert_eq!(reported_calls(&run.stderr, "Inner"), 100);
    assert_eq!((u(table, "count"), u(table, "abandoned")), (0, 0), "{table}");
    assert_eq!(table["losses"], json!({ "goroutine_unreadable": 100 }));
    assert_nothing_attached();
}

#[test]
fn a_filter_that_cannot_read_its_argument_counts_the_call() {
    // seven()'s 7th argument would be past the end of its stack: it cannot be read.
    let target = target("losses");
    let cmd = format!("{} edge 50", target.display());
    let unreadable = json!({ "filter_unreadable": 50 });
    let run = probe(&["latency", "--func", "seven", "--filter", "arg6 > 0", "--json", "-c", &cmd]);
    assert_eq!(reported_calls(&run.stderr, "seven"), 50);
    let table = &finals(&run)[0];
    assert_eq!((u(table, "count"), &table["losses"]), (0, &unreadable), "{table}");
    // --count's `count` is every call, those in no table included.
    for (kind, count) in [(&[][..], 0), (&["--by", "tid"], 0), (&["--count"], 50)] {
        let mut args = vec!["argdist", "--func", "seven", "--arg", "0", "--filter", "arg6 > 0", "--json", "-c", &cmd];
        args.extend(kind);
        let tables = finals(&probe(&args));
        assert_eq!(tables.len(), 1, "{kind:?}");
        assert_eq!((u(&tables[0], "count"), &tables[0]["losses"]), (count, &unreadable), "{kind:?}: {}", tables[0]);
    }
    // Measuring the argument itself: each hit is unreadable, as before.
    let tables = finals(&probe(&["argdist", "--func", "seven", "--arg", "6", "--json", "-c", &cmd]));
    assert_eq!((u(&tables[0], "count"), u(&tables[0], "unreadable")), (0, 50));
    assert_nothing_attached();
}

#[test]
fn a_call_in_flight_when_probe_attaches_returns_unmatched_and_is_not_lost() {
    let target = target("losses");
    let mut app =
        Command::new(&target).args(["blocked", "3"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(app.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // The first call waits for a line on stdin, inside blocked(), while probe attaches: wait
    // until the target sleeps there (it runs from its "ready" until it reads).
    let pid = app.id().to_string();
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") S ") {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // RET probes see that call return (a uretprobe is set at the entry, which it never saw).
    let (probe, stderr) = probe_background(&["latency", "--func", "blocked", "--exit", "ret", "--json", "-p", &pid]);
    app.stdin.take().unwrap().write_all(b"one\ntwo\nthree\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(reported_calls(&rest, "blocked"), 3);
    app.wait().unwrap();
    let run = finish(probe, stderr);
    let table = &finals(&run)[0];
    assert_eq!((u(table, "count"), u(table, "abandoned")), (2, 0), "{table}");
    assert_eq!(table["losses"], json!({ "unmatched_returns": 1 }));
    assert_nothing_attached();
}
