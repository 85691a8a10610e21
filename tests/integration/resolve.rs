//! Finding the function in real binaries: PIE and non-PIE, shared libraries, stripped Go,
//! C++ and Rust names, globs, separate debug files, `probe list`, and sudo's user for `-c`;
//! and names as people already type them: library functions as BCC and bpftrace name them, Go
//! method names, and `probe list` headers.
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Exact argdist of `--arg N` over one round of -500..=499 (times `factor`).
fn assert_round(run: &Run, function: &str, measured: &str, factor: i64) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = &json_tables(&run.stdout)[0];
    assert_eq!(table["function"], function);
    assert_eq!(table["measured"], measured);
    assert_eq!(table["count"].as_u64().unwrap(), 1000);
    assert_eq!(json_buckets(table), expected_buckets((-500..500).map(|v| v * factor)));
    assert_nothing_attached();
}

#[test]
fn pie_and_non_pie_c_programs() {
    for name in ["cvalues-pie", "cvalues-nopie"] {
        let bin = target(name);
        let run = probe(&["argdist", "--func", "work", "--arg", "1", "--json", "-c", &bin.to_string_lossy()]);
        assert_eq!(reported_calls(&run.stderr, "work"), 1000);
        assert_round(&run, "work", "arg1", 2);
    }
}

#[test]
fn shared_library_function_by_path_with_c() {
    let (lib, main) = libvalues("resolve");
    let func = format!("{}:lib_work", lib.display());
    let run = probe(&["argdist", "--func", &func, "--arg", "0", "--json", "-c", &main.to_string_lossy()]);
    assert_eq!(reported_calls(&run.stderr, "lib_work"), 1000);
    assert_round(&run, "lib_work", "arg0", 1);
}

#[test]
fn shared_library_function_by_name_with_p() {
    let (_, main) = libvalues("resolve");
    // The dynamic linker maps the library before probe reads /proc/PID/maps.
    let (mut app, pid) = spawn_waiting_with_library(&main, "libprobevalues.so");
    let (child, stderr) =
        probe_background(&["argdist", "--func", "libprobevalues.so:lib_work", "--arg", "0", "--json", "-p", &pid]);
    std::io::Write::write_all(app.stdin.as_mut().unwrap(), b"go\n").unwrap();
    let app_out = app.wait_with_output().unwrap();
    let run = finish(child, stderr);
    assert_eq!(reported_calls(&String::from_utf8_lossy(&app_out.stdout), "lib_work"), 1000);
    assert_round(&run, "lib_work", "arg0", 1);
}

#[test]
fn libc_function_from_the_linker_cache_counts_only_the_traced_process() {
    // Every process on the machine uses libc; the -c scope must keep only ours.
    let (_, main) = libvalues("resolve");
    let cmd = format!("{} 4", main.display());
    let run = probe(&["latency", "--func", "libc.so.6:getppid", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "getppid"), 2000);
    assert_eq!(json_tables(&run.stdout)[0]["count"].as_u64().unwrap(), 2000);
    assert_nothing_attached();
}

#[test]
fn stripped_and_unstripped_go_agree() {
    let unstripped = target("tostring");
    let stripped = target("tostring-stripped");
    let mut counts = Vec::new();
    for bin in [&unstripped, &stripped] {
        let cmd = format!("{} -rounds 2", bin.display());
        let run = probe(&["argdist", "--func", "ToString", "--arg", "0", "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let table = &json_tables(&run.stdout)[0];
        assert_eq!(table["function"], "main.ToString");
        counts.push((table["count"].as_u64().unwrap(), json_buckets(table)));
        let lat = probe(&["latency", "--func", "ToString", "--json", "-c", &cmd]);
        assert_eq!(json_tables(&lat.stdout)[0]["count"].as_u64().unwrap(), 2000, "{}", lat.stderr);
        assert_nothing_attached();
    }
    assert_eq!(counts[0], counts[1]);
    assert_eq!(counts[0].0, 2000);

    let list = |bin: &Path| {
        let run = probe(&["list", &bin.to_string_lossy(), "main.*", "--json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        json_tables(&run.stdout)
            .iter()
            .map(|r| (r["name"].as_str().unwrap().to_string(), r["address"].as_u64().unwrap(), r["rets"].clone()))
            .collect::<Vec<_>>()
    };
    let names = list(&unstripped);
    assert!(names.iter().any(|(n, _, _)| n == "main.ToString"));
    assert_eq!(names, list(&stripped), "probe list: same functions, addresses and RETs");
    let header = probe(&["list", &stripped.to_string_lossy(), "main.*"]);
    assert!(header.stdout.contains("Go go1."), "{}", header.stdout);
    assert!(header.stdout.contains("module tostring"), "{}", header.stdout);
    assert!(header.stdout.contains(".gopclntab (stripped binary)"), "{}", header.stdout);
}

#[test]
fn stripped_go_assembly_keeps_its_stack_abi() {
    let stripped = target("goasm-stripped");
    let run = probe(&["argdist", "--func", "Scale", "--arg", "0", "--json", "-c", &stripped.to_string_lossy()]);
    assert!(run.stderr.contains("Go stack ABI"), "{}", run.stderr);
    assert_round(&run, "main.Scale.abi0", "arg0", 1);
}

#[test]
fn cpp_method_by_demangled_name() {
    let bin = target("geo");
    for name in ["geo::Scaler::scale", "Scaler::scale", "geo::Scaler::scale(long)"] {
        let run = probe(&["argdist", "--func", name, "--arg", "1", "--json", "-c", &bin.to_string_lossy()]);
        assert_eq!(reported_calls(&run.stderr, "scale"), 1000);
        assert_round(&run, "geo::Scaler::scale(long)", "arg1", 1);
    }
}

#[test]
fn rust_function_by_demangled_name() {
    let bin = target("rvalues");
    let run = probe(&["argdist", "--func", "values::scale", "--ret", "--json", "-c", &bin.to_string_lossy()]);
    assert_eq!(reported_calls(&run.stderr, "scale"), 1000);
    assert_round(&run, "values::scale", "ret", 2);
}

#[test]
fn glob_attaches_to_every_match() {
    let target = target("regex");
    let cmd = format!("{} -seconds 2", target.display());
    let run = probe(&["latency", "--func", "main.Using*", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("probe: 2 functions match main.Using*"), "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    let functions: Vec<&str> = tables.iter().map(|t| t["function"].as_str().unwrap()).collect();
    assert_eq!(functions, ["main.UsingRegex", "main.UsingSubstring"]);
    assert_eq!(tables[0]["count"].as_u64().unwrap(), reported_calls(&run.stderr, "UsingRegex"));
    assert_eq!(tables[1]["count"].as_u64().unwrap(), reported_calls(&run.stderr, "UsingSubstring"));
    assert_nothing_attached();
}

#[test]
fn symbols_from_a_gnu_debuglink_file() {
    let dir = targets_dir().join("debuglink");
    std::fs::create_dir_all(&dir).unwrap();
    let full = target("cvalues");
    let bin = dir.join("cvalues-stripped");
    let debug = dir.join("cvalues-stripped.debug");
    build(Command::new("objcopy").arg("--only-keep-debug").arg(&full).arg(&debug), &debug);
    build(Command::new("objcopy").arg("--strip-all").arg(&full).arg(&bin), &bin);
    build(Command::new("objcopy").arg("--add-gnu-debuglink").arg(&debug).arg(&bin).current_dir(&dir), &bin);
    let list = probe(&["list", &bin.to_string_lossy(), "work"]);
    assert!(list.stdout.contains(&format!("debug file {}", debug.display())), "{}", list.stdout);
    let run = probe(&["argdist", "--func", "work", "--arg", "0", "--json", "-c", &bin.to_string_lossy()]);
    assert_round(&run, "work", "arg0", 1);
}

#[test]
fn command_runs_as_the_sudo_user() {
    let target = target("cvalues");
    let out = Command::new(probe_bin())
        .args(["argdist", "--func", "work", "--arg", "0", "-c"])
        .arg(&target)
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("uid: 65534"), "{stdout}");
    assert!(stdout.contains("count:1000"), "{stdout}");
    assert_nothing_attached();
}

/// `probe list` names the main module (or main package path) of a stripped Go program whose
/// build info has no `mod` line, as `go version -m` does: Debian's Prometheus.
#[test]
fn list_shows_the_main_module_of_stripped_prometheus() {
    let prometheus = "/usr/bin/prometheus";
    let path = "github.com/prometheus/prometheus/cmd/prometheus";
    if !prebuilt() {
        // What Go's own reader says (a VM guest has no Go toolchain; the host run checks it).
        let go = Command::new("go").args(["version", "-m", prometheus]).output().expect("go version -m");
        let go = String::from_utf8_lossy(&go.stdout);
        assert_eq!(go.lines().find_map(|l| l.trim().strip_prefix("path\t")), Some(path), "{go}");
    }
    let run = probe(&["list", prometheus, "main.main"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let header = run.stdout.lines().next().unwrap();
    assert!(header.contains(&format!("(module {path})")), "{header}");
    assert!(header.contains(".gopclntab (stripped binary)"), "{header}");
}

/// Exact argdist of `--arg 1` over one round of -500..=499 (the receiver is argument 0).
fn assert_scrape_round(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "scrape"), 1000);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{}", run.stdout);
    assert_eq!(tables[0]["function"], "example.com/gonames/scrape.(*targetScraper).scrape");
    assert_eq!(tables[0]["count"].as_u64().unwrap(), 1000);
    assert_eq!(json_buckets(&tables[0]), expected_buckets(-500..500));
    assert_nothing_attached();
}

/// Go methods as people write them: the package and `(*T)` literally, by suffix at a package
/// or identifier boundary, without the pointer receiver's parentheses, or as a glob.
#[test]
fn go_method_names_with_pointer_receivers() {
    let bin = target("gonames");
    let bin = bin.to_string_lossy();
    for func in [
        "example.com/gonames/scrape.(*targetScraper).scrape",
        "scrape.(*targetScraper).scrape",
        "(*targetScraper).scrape",
        "scrape.targetScraper.scrape",
        "*/scrape.(*targetScraper).s*",
    ] {
        let run = probe(&["argdist", "--func", func, "--arg", "1", "--json", "-c", &bin]);
        assert_scrape_round(&run);
    }
    // Not at a boundary: `Scraper).scrape` is the end of an identifier, not a name.
    let run = probe(&["argdist", "--func", "Scraper).scrape", "--arg", "1", &bin]);
    assert_rejected(&run, "no such function in");
}

#[test]
fn a_glob_without_matches_names_the_closest() {
    let bin = target("gonames");
    let run = probe(&["latency", "--func", "*(*targetScraper).scrpe*", &bin.to_string_lossy()]);
    assert_rejected(&run, "--func *(*targetScraper).scrpe*: no function matches in");
    assert!(run.stderr.contains("; closest: example.com/gonames/scrape.(*targetScraper).scrape"), "{}", run.stderr);
}

/// `\*` is a literal star: no Go function has one, so the name is not found (and not a glob).
#[test]
fn escaped_wildcards_are_literal() {
    let bin = target("gonames");
    let run = probe(&["latency", "--func", r"scrape.\*", &bin.to_string_lossy()]);
    assert_rejected(&run, r"--func scrape.\*: no such function in");
}

/// The libvalues target (libmain, which loads libprobevalues.so through its `$ORIGIN` RUNPATH),
/// built into a directory of its own so that uprobes on its files see no other test's runs.
fn libvalues(tag: &str) -> (PathBuf, PathBuf) {
    libvalues_in(&targets_dir().join(format!("libvalues-{tag}")))
}

/// The count of the one JSON table, checked against the target's own count (on stderr: with
/// `--json` on stdout, a `-c` command's stdout goes to stderr).
fn assert_counted(run: &Run, function: &str, label: &str, calls: u64) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{}", run.stdout);
    assert_eq!(tables[0]["function"], function);
    assert_eq!(reported_calls(&run.stderr, label), calls);
    assert_eq!(tables[0]["count"].as_u64().unwrap(), calls);
    assert_nothing_attached();
}

/// Library functions as BCC (`c:getppid`), bpftrace (`libc:getppid`, a short name) and the
/// file name (`libc.so.6:getppid`) write them, and a bare name the program imports: found in
/// the program's libraries as the loader finds them (libprobevalues.so only through `$ORIGIN`,
/// it is in no cache), counted in the traced process only.
#[test]
fn library_functions_named_as_bcc_and_bpftrace_do() {
    let (_, main) = libvalues("forms");
    let cmd = format!("{} 2", main.display());
    for func in ["c:getppid", "libc:getppid", "libc.so.6:getppid", "getppid"] {
        let run = probe(&["latency", "--func", func, "--json", "-c", &cmd]);
        assert_counted(&run, "getppid", "getppid", 1000);
    }
    for func in ["probevalues:lib_work", "libprobevalues:lib_work", "libprobevalues.so:lib_work", "lib_work"] {
        let run = probe(&["argdist", "--func", func, "--arg", "0", "--json", "-c", &cmd]);
        assert_counted(&run, "lib_work", "lib_work", 2000);
        assert_eq!(json_buckets(&json_tables(&run.stdout)[0]), expected_buckets((-500..500).chain(-500..500)));
    }
}

/// With -p, a bare imported name is found among the libraries mapped in that process.
#[test]
fn imported_function_of_a_running_process() {
    let (_, main) = libvalues("pid");
    let (mut app, pid) = spawn_waiting_with_library(&main, "libprobevalues.so");
    let (child, stderr) = probe_background(&["argdist", "--func", "lib_work", "--arg", "0", "--json", "-p", &pid]);
    std::io::Write::write_all(app.stdin.as_mut().unwrap(), b"go\n").unwrap();
    let app_out = app.wait_with_output().unwrap();
    let run = finish(child, stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&String::from_utf8_lossy(&app_out.stdout), "lib_work"), 1000);
    let table = &json_tables(&run.stdout)[0];
    assert_eq!(table["function"], "lib_work");
    assert_eq!(json_buckets(table), expected_buckets(-500..500));
    assert_nothing_attached();
}

/// `--func LIB:FUNC BINARY`: the library BINARY loads (found through its `$ORIGIN` RUNPATH),
/// in every process that maps it: a library's uprobe fires for every process using the file.
#[test]
fn library_function_with_binary_traces_every_process_using_the_library() {
    let (_, main) = libvalues("binary");
    let (child, stderr) = probe_background(&[
        "argdist",
        "--func",
        "probevalues:lib_work",
        "--arg",
        "0",
        "--json",
        &main.to_string_lossy(),
    ]);
    let mut total = 0;
    for rounds in ["1", "2"] {
        let out = Command::new(&main).arg(rounds).output().unwrap();
        total += reported_calls(&String::from_utf8_lossy(&out.stdout), "lib_work");
    }
    interrupt(&child);
    let run = finish(child, stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total, 3000);
    assert_eq!(json_tables(&run.stdout)[0]["count"].as_u64().unwrap(), total);
    assert_nothing_attached();
}

/// `probe list` takes a library's name as `--func LIB:FUNC` does, and on a program whose
/// code is in its libraries says which ones; a bare name it lacks says the same.
#[test]
fn list_libraries_by_name_and_programs_whose_code_is_in_them() {
    for name in ["libc.so.6", "libc", "c"] {
        let run = probe(&["list", name, "getppid", "--json"]);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        let rows = json_tables(&run.stdout);
        assert_eq!(rows.len(), 1, "{name}: {}", run.stdout);
        assert_eq!(rows[0]["name"], "getppid");
    }
    let (lib, main) = libvalues("list");
    let stripped = main.with_file_name("libmain-stripped");
    build(Command::new("objcopy").arg("--strip-all").arg(&main).arg(&stripped), &stripped);
    let run = probe(&["list", &stripped.to_string_lossy()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let note = run.stdout.lines().nth(1).unwrap();
    assert!(note.starts_with("# its code is mostly in its libraries"), "{}", run.stdout);
    assert!(note.contains(&lib.canonicalize().unwrap().display().to_string()), "{note}");
    assert!(note.contains("libc.so.6"), "{note}");
    let run = probe(&["latency", "--func", "nosuch", "-c", &stripped.to_string_lossy()]);
    assert_rejected(
        &run,
        "defines no functions of its own, its code is in its libraries (libprobevalues.so, libc.so.6)",
    );
}

/// A real distribution program: Debian's sqlite3 is stripped and its code is in
/// libsqlite3.so.0. `sqlite3_step` named as bpftrace (`libsqlite3:`), as BCC (`sqlite3:`) and
/// bare (imported) resolves to the same library function and counts the same calls: one per
/// row of the SELECT plus its end, one for each other statement, at least 6 here.
#[test]
fn sqlite3_step_in_debians_sqlite3() {
    let cmd = "sqlite3 :memory: 'create table t(x); insert into t values (1),(2),(3); select x from t;'";
    let mut counts = Vec::new();
    for func in ["libsqlite3:sqlite3_step", "sqlite3:sqlite3_step", "sqlite3_step"] {
        let run = probe(&["latency", "--func", func, "--json", "-c", cmd]);
        assert_eq!(run.code, 0, "{func}: {}", run.stderr);
        assert!(run.stderr.contains("\n1\n2\n3\n"), "{func}: the rows, on stderr: {}", run.stderr);
        let tables = json_tables(&run.stdout);
        assert_eq!(tables.len(), 1, "{}", run.stdout);
        assert_eq!(tables[0]["function"], "sqlite3_step");
        counts.push(tables[0]["count"].as_u64().unwrap());
        assert_nothing_attached();
    }
    assert!(counts[0] >= 6, "{counts:?}");
    assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
}
