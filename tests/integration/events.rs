//! `latency --slower-than` and `--events`: the slow calls one by one, with their arguments,
//! result and goroutine as the target itself prints them; events the ring buffer cannot take
//! are counted, and the tables still count every call.
use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::BufRead;
use std::process::{Command, Stdio};

/// `probe_ebpf::EVENT_TEXT_BYTES`: the bytes of a string an event carries.
const EVENT_TEXT_BYTES: usize = 64;

/// `key=value` of a line's words, as a number.
fn field(line: &str, key: &str) -> i64 {
    let prefix = format!("{key}=");
    let word = line.split_whitespace().find_map(|w| w.strip_prefix(&prefix));
    word.unwrap_or_else(|| panic!("no {key}= in {line}")).parse().unwrap()
}

type Call = (i64, i64, i64, i64);

/// The target's own `KIND call: ...` lines as (id, n, ret, `who`).
fn calls_of(output: &str, kind: &str, who: &str) -> BTreeSet<Call> {
    output
        .lines()
        .filter(|l| l.starts_with(&format!("{kind} call: ")))
        .map(|l| (field(l, "id"), field(l, "n"), field(l, "ret"), field(l, who)))
        .collect()
}

/// The events are the target's 7 slow calls, plus only calls the target itself timed at 1 ms or
/// more (a fast call descheduled on a busy machine is slow, and reported as such; on a quiet
/// machine there are none).
fn assert_events_are_the_slow_calls(got: &BTreeSet<Call>, output: &str, who: &str, events: usize) {
    let slow = calls_of(output, "slow", who);
    let late = calls_of(output, "late", who);
    assert_eq!(slow.len(), 7, "{output}");
    assert!(slow.is_subset(got), "missing slow calls: {:?}", slow.difference(got).collect::<Vec<_>>());
    let extra: Vec<&Call> = got.difference(&slow).collect();
    assert!(extra.iter().all(|c| late.contains(c)), "events of calls that were not slow: {extra:?}; {output}");
    assert_eq!(events, got.len(), "one event per call");
    if !extra.is_empty() {
        eprintln!("{} calls descheduled for 1 ms or more, reported as slow: {extra:?}", extra.len());
    }
}

fn events(stdout: &str) -> Vec<Value> {
    json_tables(stdout).into_iter().filter(|v| v["kind"] == "event").collect()
}

fn final_table(stdout: &str) -> Value {
    json_tables(stdout).into_iter().find(|v| v["kind"] == "final").expect("a final table")
}

fn summary(stdout: &str) -> Value {
    json_tables(stdout).into_iter().find(|v| v["kind"] == "events").expect("the events summary")
}

/// 10,000 calls of Go's main.Work, 7 of them sleeping 2 ms: exactly those 7 events, with the
/// arguments, result and goroutine ids the target printed, and the stacks they came from, on
/// an old and a new Go.
#[test]
fn go_slow_calls_are_the_seven_with_their_arguments_and_goroutines() {
    for program in [target("events"), go_target_with("events", "1.23")] {
        let path = program.to_str().unwrap();
        // Favoured: on a busy machine a fast call preempted for a scheduler tick would be slow.
        let run = probe_favoured(&[
            "latency",
            "--func",
            "main.Work",
            "--slower-than",
            "1ms",
            "--arg",
            "id",
            "--arg",
            "n",
            "--ret",
            "--stack",
            "--json",
            "-c",
            path,
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        // With --json the command's stdout goes to stderr.
        let got: BTreeSet<(i64, i64, i64, i64)> = events(&run.stdout)
            .iter()
            .map(|e| {
                assert!(e["latency_ns"].as_u64().unwrap() > 1_000_000, "{e}");
                assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
                // Called from the worker goroutine's function, which the runtime started.
                let stack: Vec<&str> = e["stack"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
                assert_eq!(stack.first(), Some(&"main.main.func1"), "{e}");
                assert!(stack.last().unwrap().starts_with("runtime.goexit"), "{e}");
                let args = &e["args"];
                let g = e["goroutine"].as_i64().unwrap_or_else(|| panic!("no goroutine: {e}"));
                (args["id"].as_i64().unwrap(), args["n"].as_i64().unwrap(), e["ret"]["ret"].as_i64().unwrap(), g)
            })
            .collect();
        let n = events(&run.stdout).len();
        assert_events_are_the_slow_calls(&got, &run.stderr, "goroutine", n);
        let s = summary(&run.stdout);
        assert_eq!((s["printed"].as_u64(), s["dropped"].as_u64()), (Some(n as u64), Some(0)));
        assert_eq!(final_table(&run.stdout)["count"].as_u64(), Some(reported_calls(&run.stderr, "Work")));
        assert_nothing_attached();
    }
}

/// The same in C, as text: its 7 slow calls with their thread, arguments and result, each with
/// its stack on the lines below it.
#[test]
fn c_slow_calls_are_the_seven_with_their_arguments_and_thread() {
    let program = target("cevents");
    let run = probe_favoured(&[
        "latency",
        "--func",
        "work",
        "--slower-than",
        "1ms",
        "--arg",
        "id",
        "--arg",
        "n",
        "--ret",
        "--stack",
        "-c",
        program.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let all: Vec<&str> = run.stdout.lines().collect();
    for (i, _) in all.iter().enumerate().filter(|(_, l)| l.contains(" work ") && l.contains(" pid=")) {
        assert_eq!(all.get(i + 1), Some(&"    main"), "its caller under each call: {}", run.stdout);
    }
    let lines: Vec<&str> = run.stdout.lines().filter(|l| l.contains(" work ") && l.contains(" pid=")).collect();
    let got: BTreeSet<(i64, i64, i64, i64)> =
        lines.iter().map(|l| (field(l, "id"), field(l, "n"), field(l, "ret"), field(l, "tid"))).collect();
    assert_events_are_the_slow_calls(&got, &run.stdout, "tid", lines.len());
    assert!(lines.iter().all(|l| !l.contains("goroutine")), "C has no goroutines: {lines:?}");
    let summary = format!("events of work: {} printed, 0 dropped", lines.len());
    assert!(run.stdout.contains(&summary), "{}", run.stdout);
    assert!(run.stdout.contains("count:10000 "), "{}", run.stdout);
}

/// A burst larger than a (test-sized) ring buffer: every call is printed or counted as
/// dropped, and the table counts them all.
#[test]
fn a_burst_past_the_buffer_counts_its_dropped_events_and_every_call() {
    let program = target("cevents");
    let out = Command::new(probe_bin())
        .args(["latency", "--func", "tick", "--events", "--json", "-c"])
        .arg(format!("{} burst 200000", program.display()))
        .env("PROBE_TEST_MAP_SIZES", "EVENTS=4096")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run: Run = out.into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = reported_calls(&run.stderr, "tick");
    assert_eq!(calls, 200_000);
    let s = summary(&run.stdout);
    let (printed, dropped) = (s["printed"].as_u64().unwrap(), s["dropped"].as_u64().unwrap());
    assert_eq!(printed, events(&run.stdout).len() as u64);
    assert!(dropped > 0, "a 4 KiB buffer took all {printed} events");
    assert_eq!(printed + dropped, calls, "every call printed or counted as dropped");
    assert_eq!(final_table(&run.stdout)["count"].as_u64(), Some(calls));
    assert!(run.stderr.contains(&format!("{dropped} events dropped")), "{}", run.stderr);
    assert_nothing_attached();
}

/// JSON lines come as the calls return, readable while probe still runs.
#[test]
fn json_events_are_readable_while_the_trace_runs() {
    let program = target("sleeper");
    let mut app = Command::new(&program).args(["-sleep", "20s"]).stdout(Stdio::null()).spawn().unwrap();
    let pid = app.id().to_string();
    let (mut child, stderr) =
        probe_background(&["latency", "--func", "main.Nap", "--slower-than", "500us", "--json", "-p", &pid]);
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(child.try_wait().unwrap().is_none(), "probe ended before its first event was read");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((event["kind"].as_str(), event["function"].as_str()), (Some("event"), Some("main.Nap")), "{line}");
    assert!(event["goroutine"].as_u64().is_some(), "{line}");
    interrupt(&child);
    let run = finish(child, stderr);
    let _ = app.kill();
    let _ = app.wait();
    assert!(run.stderr.lines().all(|l| !l.contains("error")), "{}", run.stderr);
    assert_nothing_attached();
}

#[test]
fn bad_combinations_are_one_line() {
    let c = target("cevents");
    let c = c.to_str().unwrap();
    let go = target("events");
    let go = go.to_str().unwrap();
    for (args, needle) in [
        (vec!["--func", "work", "--arg", "id", "-c", c], "add --slower-than DURATION or --events"),
        (vec!["--func", "work", "--ret", "-c", c], "add --slower-than DURATION or --events"),
        (vec!["--func", "work", "--stack", "-c", c], "add --slower-than DURATION or --events"),
        (vec!["--func", "work", "--slower-than", "1ms", "--events", "-c", c], "cannot be used with"),
        (vec!["--func", "work", "--slower-than", "0ms", "-c", c], "is not a duration"),
        (vec!["--func", "work", "--slower-than", "5", "-c", c], "is not a duration"),
        (
            vec![
                "--func", "work", "--events", "--arg", "0", "--arg", "1", "--arg", "0", "--arg", "1", "--arg", "0",
                "-c", c,
            ],
            "at most 4 arguments",
        ),
        (vec!["--func", "main.Work", "--slower-than", "1ms", "--arg", "nosuch", "-c", go], "nosuch"),
    ] {
        let mut all = vec!["latency"];
        all.extend(args);
        assert_rejected(probe(&all), needle);
    }
}

/// A stripped Go 1.19 program: no DWARF, so the goroutine id's place comes from its Go
/// version, and the arguments are the register words by position.
#[test]
fn a_stripped_go_program_has_goroutine_ids_from_its_version() {
    let program = target("events-stripped");
    let run = probe_favoured(&[
        "latency",
        "--func",
        "main.Work",
        "--slower-than",
        "1ms",
        "--arg",
        "0",
        "--arg",
        "1",
        "--ret",
        "--json",
        "-c",
        program.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got: BTreeSet<Call> = events(&run.stdout)
        .iter()
        .map(|e| {
            let g = e["goroutine"].as_i64().unwrap_or_else(|| panic!("no goroutine: {e}"));
            (
                e["args"]["arg0"].as_i64().unwrap(),
                e["args"]["arg1"].as_i64().unwrap(),
                e["ret"]["ret"].as_i64().unwrap(),
                g,
            )
        })
        .collect();
    assert_events_are_the_slow_calls(&got, &run.stderr, "goroutine", events(&run.stdout).len());
    assert_nothing_attached();
}

/// A stripped program of a Go version whose `runtime.g` probe does not know: one line, not
/// goroutine ids read from the wrong place.
#[test]
fn goroutine_ids_that_cannot_be_known_are_refused() {
    let stripped = std::fs::read(target("events-stripped")).unwrap();
    let (from, to) = (b"go1.19.", b"go1.99.");
    let mut patched = stripped.clone();
    let mut replaced = 0;
    for i in 0..patched.len() - from.len() {
        if &patched[i..i + from.len()] == from {
            patched[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
        }
    }
    assert!(replaced > 0, "no Go version string in the stripped program");
    let path = targets_dir().join(format!("events-go1.99-{}", std::process::id()));
    std::fs::write(&path, &patched).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = probe(&["latency", "--func", "main.Work", "--slower-than", "1ms", "-c", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_rejected(run, "goroutine ids of");
}

/// Recursion: main.Deep(255) calls itself down to Deep(0), ten times. Each of the 2,560
/// events shows its own call's argument (the outermost call's kept with its entry, the nested
/// ones' stashed per depth), in the order the calls return.
#[test]
fn each_recursive_call_shows_its_own_argument() {
    let target = go_target_with("truth", "1.23");
    let cmd = format!("{} -calls 200", target.display());
    let run = probe(&["latency", "--func", "main.Deep", "--events", "--arg", "n", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let seen: Vec<i64> = events(&run.stdout).iter().map(|e| e["args"]["n"].as_i64().expect("n read")).collect();
    let made = reported_calls(&run.stderr, "Deep");
    assert_eq!(seen.len() as u64, made);
    let expected: Vec<i64> = (0..made as i64).map(|i| i % 256).collect();
    assert_eq!(seen, expected);
    assert_nothing_attached();
}

/// A string argument is shown as its text, read where the entry found it: Go's `Handle(path
/// string)` (Go 1.19 and 1.23) and C's `handle(const char *path)` each get exactly the paths
/// and counts the targets pass, the 100-byte one cut to the bytes an event has and marked.
#[test]
fn string_arguments_are_shown_as_their_text() {
    let long = format!("/{}", "x".repeat(99));
    let cut_go = long[..EVENT_TEXT_BYTES].to_string();
    let cut_c = long[..EVENT_TEXT_BYTES - 1].to_string();
    for (program, func, cut) in [
        (target("strings"), "Handle", &cut_go),
        (go_target_with("strings", "1.23"), "Handle", &cut_go),
        (target("cstrings"), "handle", &cut_c),
    ] {
        let run =
            probe(&["latency", "--func", func, "--events", "--arg", "path", "--json", "-c", program.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let mut seen: std::collections::BTreeMap<(String, bool), u64> = Default::default();
        for e in events(&run.stdout) {
            let path = e["args"]["path"].as_str().unwrap_or_else(|| panic!("path not read: {e}")).to_string();
            let is_cut = e.get("cut").is_some_and(|c| c == &serde_json::json!(["path"]));
            *seen.entry((path, is_cut)).or_default() += 1;
        }
        let expected: std::collections::BTreeMap<(String, bool), u64> = [
            (("/api/users".to_string(), false), 30),
            (("/metrics".to_string(), false), 20),
            ((String::new(), false), 5),
            ((cut.clone(), true), 7),
        ]
        .into_iter()
        .collect();
        assert_eq!(seen, expected, "{}", run.stdout);
        assert_eq!(reported_calls(&run.stderr, func), 62);
    }
    // Text: quoted and escaped as --count shows strings, `...` after a cut one.
    let run = probe(&[
        "latency",
        "--func",
        "handle",
        "--events",
        "--arg",
        "path",
        "-c",
        target("cstrings").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.matches(" path=\"/metrics\"\n").count(), 20, "{}", run.stdout);
    assert_eq!(run.stdout.matches(&format!(" path=\"{cut_c}\"...\n")).count(), 7, "{}", run.stdout);
    assert_nothing_attached();
}
