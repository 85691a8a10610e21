//! `--by pid|tid|comm`: one table per process, thread or thread name, through the keyed
//! per-CPU hash maps of whole aggregates. The tables add up exactly to the calls made.
use probe_tests::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Starts `cvalues ROUNDS --wait`: it calls `work` ROUNDS * 1000 times once a line arrives.
fn waiting_cvalues(target: &std::path::Path, rounds: u32) -> std::process::Child {
    Command::new(target)
        .args([rounds.to_string(), "--wait".into()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn argdist_by_pid_gives_each_process_its_own_exact_table() {
    let target = c_target("cvalues", &[]);
    let (mut one, mut two) = (waiting_cvalues(&target, 1), waiting_cvalues(&target, 2));
    let (pid_one, pid_two) = (one.id(), two.id());
    let t = target.to_string_lossy();
    let (probe, stderr) = probe_background(&["argdist", "--func", "work", "--arg", "0", "--by", "pid", "--json", &t]);
    for app in [&mut one, &mut two] {
        app.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let (out_one, out_two) = (one.wait_with_output().unwrap(), two.wait_with_output().unwrap());
    assert_eq!(reported_calls(&String::from_utf8_lossy(&out_one.stdout), "work"), 1000);
    assert_eq!(reported_calls(&String::from_utf8_lossy(&out_two.stdout), "work"), 2000);
    interrupt(&probe);
    let run = finish(probe, stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 2, "{}", run.stdout);
    // Heaviest first: the process that made 2000 calls.
    assert_eq!(tables[0]["by"]["pid"], pid_two);
    assert_eq!(tables[0]["count"], 2000);
    assert_eq!(tables[0]["sum"], -1000); // twice -500..=499
    assert_eq!(tables[1]["by"]["pid"], pid_one);
    assert_eq!(tables[1]["count"], 1000);
    assert_eq!(tables[1]["min"], -500);
    assert_eq!(tables[1]["max"], 499);
    assert!(tables.iter().all(|t| t["lost"] == 0 && t["function"] == "work"));
    assert_nothing_attached();
}

#[test]
fn latency_by_tid_splits_a_go_program_and_adds_up_to_its_calls() {
    let target = go_target("regex");
    let cmd = format!("{} -seconds 1", target.display());
    let run = probe(&["latency", "--func", "main.UsingSubstring", "--by", "tid", "--top", "100", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = reported_calls(&run.stderr, "UsingSubstring");
    let tables = json_tables(&run.stdout);
    assert!(!tables.is_empty());
    let counted: u64 = tables.iter().map(|t| t["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, calls, "every call in one thread's table");
    let mut tids: Vec<u64> = tables.iter().map(|t| t["by"]["tid"].as_u64().unwrap()).collect();
    tids.dedup();
    assert_eq!(tids.len(), tables.len(), "one table per thread");
    assert!(tables.iter().all(|t| t["abandoned"] == 0 && t["unit"] == "us"));
    assert_nothing_attached();
}

#[test]
fn by_comm_names_the_thread_and_text_titles_each_table() {
    let target = c_target("cvalues", &[]);
    let cmd = format!("{} 2", target.display());
    let run = probe(&["argdist", "--func", "work", "--ret", "--by", "comm", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stdout, "work"), 2000);
    assert!(run.stdout.contains("work [comm cvalues] ret: min:-1500 avg:-1 max:1497 count:2000\n"), "{}", run.stdout);
    assert_nothing_attached();
}

#[test]
fn by_caller_names_the_calling_functions_of_a_c_program() {
    let target = c_target("callers", &[]);
    let cmd = format!("{} 2", target.display());
    for command in ["latency", "argdist"] {
        let mut args = vec![command, "--func", "leaf", "--by", "caller", "--json", "-c", &cmd];
        if command == "argdist" {
            args.extend(["--arg", "0"]);
        }
        let run = probe(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let (alpha, beta) = (reported_calls(&run.stderr, "alpha"), reported_calls(&run.stderr, "beta"));
        assert_eq!((alpha, beta), (600, 1500));
        let tables = json_tables(&run.stdout);
        let calls_from = |caller: &str| {
            let table = tables.iter().find(|t| t["by"]["caller"] == caller);
            table.unwrap_or_else(|| panic!("no table for {caller}: {}", run.stdout))["count"].as_u64().unwrap()
        };
        // beta's two call sites are one table; heaviest first.
        assert_eq!(tables.len(), 2, "{}", run.stdout);
        assert_eq!(tables[0]["by"]["caller"], "beta");
        assert_eq!((calls_from("alpha"), calls_from("beta")), (alpha, beta), "{command}");
        assert_nothing_attached();
    }
}

#[test]
fn by_caller_names_a_go_closure() {
    let target = go_target("regex");
    let cmd = format!("{} -seconds 1", target.display());
    let run = probe(&["latency", "--func", "main.UsingSubstring", "--by", "caller", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = reported_calls(&run.stdout, "UsingSubstring");
    let want = "main.UsingSubstring [caller main.main.func1]: ";
    let line = run.stdout.lines().find(|l| l.starts_with(want)).unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.contains(&format!(" count:{calls} ")), "{line}");
    assert_nothing_attached();
}

#[test]
fn bad_by_options_are_one_line_and_exit_2() {
    let target = go_target("tostring");
    let t = target.to_string_lossy();
    for (args, needle) in [
        (vec!["argdist", "--func", "ToString", "--arg", "0", "--by", "pid", "--count", &t], "--count"),
        (vec!["latency", "--func", "ToString", "--by", "goroutine", &t], "goroutine"),
    ] {
        assert_rejected(probe(&args), needle);
    }
}
