//! Values read from memory the traced process has not touched yet: tests/targets/c/logevent.c
//! passes the literal "open" 200 times, and nothing reads its page of `.rodata` before the
//! first call, so when the first probe fires that page is not mapped. Where the kernel has
//! sleepable uprobe programs (Linux 6.0+), probe's program faults it in and counts all 200;
//! elsewhere the first read fails and is counted as unreadable, never dropped.
use crate::support::*;
use std::process::Command;

const CALLS: u64 = 200;

/// Whether `probe doctor` says this kernel has sleepable uprobe programs.
fn kernel_has_sleepable_uprobes() -> bool {
    let out = Command::new(probe_bin()).arg("doctor").output().expect("run probe doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("sleepable uprobe programs"), "{stdout}");
    stdout.contains("[yes] sleepable uprobe programs")
}

/// `argdist --count` of log_event's name with the attach strategy `attach` ("" for the
/// kernel's best), with sleepable programs or not: the calls counted under "open", and those
/// whose name was unreadable.
fn count_names(attach: &str, sleepable: bool) -> (u64, u64) {
    let target = target("logevent");
    let cmd = format!("{} {CALLS}", target.display());
    let out = Command::new(probe_bin())
        .args(["argdist", "--func", "log_event", "--arg", "name", "--count", "--json", "-c", &cmd])
        .env("PROBE_ATTACH", attach)
        .env("PROBE_SLEEPABLE", if sleepable { "" } else { "no" })
        .output()
        .expect("run probe");
    let run: Run = out.into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "log_event"), CALLS);
    let tables = json_tables(&run.stdout);
    let [table] = tables.as_slice() else { panic!("one table expected: {}", run.stdout) };
    // Every call is in the table: under its value or as unreadable.
    assert_eq!(table["count"], CALLS, "{table}");
    let values = table["values"].as_array().expect("values");
    let open = values.iter().find(|v| v["value"] == "open").map_or(0, |v| v["count"].as_u64().unwrap());
    assert_eq!(values.len(), usize::from(open > 0), "only \"open\" is ever passed: {table}");
    let unreadable = table["unreadable"].as_u64().unwrap();
    assert_eq!(open + unreadable, CALLS, "{table}");
    assert_nothing_attached();
    (open, unreadable)
}

#[test]
fn a_string_on_a_page_not_yet_touched_is_read_where_programs_may_sleep() {
    let sleepable = kernel_has_sleepable_uprobes();
    // Each strategy the kernel offers: uprobe_multi link, perf events with cookies, a program
    // per site (the last two forced, as older kernels would choose them).
    for attach in ["", "cookies", "per-site"] {
        for _ in 0..3 {
            let expected = if sleepable { (CALLS, 0) } else { (CALLS - 1, 1) };
            assert_eq!(count_names(attach, true), expected, "PROBE_ATTACH={attach}");
        }
    }
}

#[test]
fn without_sleepable_programs_the_first_read_is_unreadable_and_counted() {
    // The plain programs, as kernels before 6.0 get them: the first call's page is not mapped
    // yet, so its name reads as unreadable; the call is counted all the same.
    for attach in ["", "per-site"] {
        assert_eq!(count_names(attach, false), (CALLS - 1, 1), "PROBE_ATTACH={attach}");
    }
}
