//! Globs over hundreds of functions: one uprobe_multi link per file where the kernel has it,
//! exact counts for every function, tables people can read (heaviest first, never-called
//! functions summarised in one line), and, where probes are removed one at a time, removal in
//! a background process that leaves nothing attached.
use probe_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// tests/targets/many: main.F000 ... main.F299, F<i> called (i % 5) times per round.
const FUNCS: usize = 300;
const ROUNDS: u64 = 3;

fn expected_calls(i: usize) -> u64 {
    (i % 5) as u64 * ROUNDS
}

fn command(target: &Path) -> String {
    format!("{} -rounds {ROUNDS}", target.display())
}

#[test]
fn a_glob_of_300_functions_counts_every_one_exactly_and_leaves_nothing_attached() {
    let target = go_target("many");
    let run = probe(&["latency", "--func", "main.F*", "--json", "-c", &command(&target)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("300 functions match main.F*"), "{}", run.stderr);
    // Each function has an entry probe and two RET probes.
    assert!(run.stderr.contains("(900 probes)"), "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), FUNCS, "JSON keeps every table, never-called ones included");
    for i in 0..FUNCS {
        let name = format!("F{i:03}");
        let table = tables.iter().find(|t| t["function"] == format!("main.{name}")).expect("a table per function");
        assert_eq!(reported_calls(&run.stdout, &name), expected_calls(i));
        assert_eq!(table["count"].as_u64(), Some(expected_calls(i)), "{name}: {table}");
        assert_eq!(table["abandoned"].as_u64(), Some(0), "{name}: {table}");
    }
    assert_nothing_attached();
}

/// `main.F001: min:4us avg:6us max:70us count:100 ...` -> (name, avg, count).
fn summary(line: &str) -> Option<(&str, u64, u64)> {
    let (name, rest) = line.split_once(": min:")?;
    let field = |key: &str| -> Option<u64> {
        let v = rest.split_whitespace().find_map(|w| w.strip_prefix(key))?;
        v.trim_end_matches("us").parse().ok()
    };
    Some((name, field("avg:")?, field("count:")?))
}

#[test]
fn glob_text_is_heaviest_first_and_names_never_called_functions_in_one_line() {
    let target = go_target("many");
    let run = probe(&["latency", "--func", "main.F*", "-c", &command(&target)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables: Vec<(&str, u64, u64)> = run.stdout.lines().filter_map(summary).collect();
    assert_eq!(tables.len(), FUNCS / 5 * 4, "only the functions that were called:\n{}", run.stdout);
    assert!(!run.stdout.contains("count:0"), "{}", run.stdout);
    for (name, _, count) in &tables {
        let i: usize = name.trim_start_matches("main.F").parse().unwrap();
        assert_eq!(*count, expected_calls(i), "{name}");
    }
    // avg is the total divided by count, rounded down: total lies in [avg*count, (avg+1)*count).
    for pair in tables.windows(2) {
        let ((a, a_avg, a_count), (b, b_avg, b_count)) = (pair[0], pair[1]);
        assert!((a_avg + 1) * a_count > b_avg * b_count, "{a} is printed before {b} but took less in total");
    }
    let never = "(60 of 300 functions never called, not shown: main.F000, main.F005, main.F010 and 57 more; \
                 --all shows them)";
    assert_eq!(run.stdout.lines().filter(|l| l.starts_with('(')).collect::<Vec<_>>(), vec![never]);

    let top = probe(&["latency", "--func", "main.F*", "--top", "5", "-c", &command(&target)]);
    assert_eq!(top.code, 0, "{}", top.stderr);
    assert_eq!(top.stdout.lines().filter_map(summary).count(), 5, "{}", top.stdout);
    assert!(top.stdout.contains("(235 more functions not shown: --top 5)\n"), "{}", top.stdout);

    let all = probe(&["latency", "--func", "main.F*", "--all", "-c", &command(&target)]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    let zero = all.stdout.lines().filter(|l| l.starts_with("main.F") && l.ends_with(": count:0")).count();
    assert_eq!((all.stdout.lines().filter_map(summary).count(), zero), (240, 60), "{}", all.stdout);
    assert!(!all.stdout.contains("never called"), "{}", all.stdout);
    assert_nothing_attached();
}

#[test]
fn many_functions_without_ret_are_one_warning() {
    // runtime.* has dozens of functions that never return (throw, abort, goexit...).
    let target = go_target("many");
    let run = probe(&["latency", "--func", "runtime.*", "--json", "-c", &command(&target)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let no_ret: Vec<&str> = run.stderr.lines().filter(|l| l.contains("no RET instruction")).collect();
    assert_eq!(no_ret.len(), 1, "{}", run.stderr);
    assert!(no_ret[0].starts_with("probe: warning: ") && no_ret[0].contains(" more"), "{}", no_ret[0]);
    assert_nothing_attached();
}

#[test]
fn removal_one_probe_at_a_time_goes_to_the_background_and_leaves_nothing_attached() {
    // Ten functions, 30 perf-event probes: ~3 s to remove, more than probe waits for.
    let target = go_target("many");
    for strategy in ["per-site", "cookies"] {
        let out = Command::new(probe_bin())
            .args(["latency", "--func", "main.F00*", "--json", "-c", &command(&target)])
            .env("PROBE_ATTACH", strategy)
            .output()
            .unwrap();
        let run: Run = out.into();
        assert_eq!(run.code, 0, "{strategy}: {}", run.stderr);
        let tables = json_tables(&run.stdout);
        assert_eq!(tables.len(), 10);
        for (i, table) in tables.iter().enumerate() {
            assert_eq!(table["count"].as_u64(), Some(expected_calls(i)), "{strategy}: {table}");
        }
        // "... pid 1234 finishes it in the background ..."
        let pid: i32 = run
            .stderr
            .split("pid ")
            .last()
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{strategy}: no background pid in: {}", run.stderr));
        assert!(run.stderr.contains("removing the 30 probes takes the kernel about 3 s"), "{}", run.stderr);
        let deadline = Instant::now() + Duration::from_secs(120);
        while alive(pid) {
            assert!(Instant::now() < deadline, "{strategy}: the background removal (pid {pid}) did not end");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_nothing_attached();
    }
}

/// Running, not exited (a zombie waiting for a reaper has exited).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}
