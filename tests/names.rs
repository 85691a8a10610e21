//! Names and output as people already type them (issue 13): library functions as BCC and
//! bpftrace name them, Go method names, `-o FILE`, readable numbers, and `probe list` headers.
use probe_tests::*;
use std::process::Command;

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
    let bin = go_target("gonames");
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
    let bin = go_target("gonames");
    let run = probe(&["latency", "--func", "*(*targetScraper).scrpe*", &bin.to_string_lossy()]);
    assert_rejected(&run, "--func *(*targetScraper).scrpe*: no function matches in");
    assert!(run.stderr.contains("; closest: example.com/gonames/scrape.(*targetScraper).scrape"), "{}", run.stderr);
}

/// `\*` is a literal star: no Go function has one, so the name is not found (and not a glob).
#[test]
fn escaped_wildcards_are_literal() {
    let bin = go_target("gonames");
    let run = probe(&["latency", "--func", r"scrape.\*", &bin.to_string_lossy()]);
    assert_rejected(&run, r"--func scrape.\*: no such function in");
}

/// The libvalues target (libmain, which loads libprobevalues.so through its `$ORIGIN` RUNPATH),
/// built into a directory of its own so that uprobes on its files see no other test's runs.
fn libvalues(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    libvalues_in(&targets_dir().join(format!("names-{tag}")))
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

/// `--json -c CMD | jq`: probe's stdout carries only its JSON; the command's own stdout goes to
/// stderr, still on the terminal.
#[test]
fn json_on_stdout_is_never_mixed_with_the_commands_output() {
    let target = go_target("tostring");
    let run = probe(&["argdist", "--func", "ToString", "--arg", "0", "--json", "-c", &target.to_string_lossy()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for line in run.stdout.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not JSON on stdout: {line:?}");
    }
    assert_eq!(json_tables(&run.stdout).len(), 1);
    assert_eq!(reported_calls(&run.stderr, "ToString"), 1000);
    assert_nothing_attached();
}

/// `-o FILE`: probe's tables (JSON or text) go to the file, the command's output stays on stdout;
/// an existing regular file is replaced.
#[test]
fn output_file_gets_probes_tables_and_stdout_keeps_the_commands() {
    let target = go_target("tostring");
    let dir = targets_dir().join("names-output");
    std::fs::create_dir_all(&dir).unwrap();
    let (json, text) = (dir.join("tables.json"), dir.join("tables.txt"));
    std::fs::write(&json, "old content\n").unwrap();
    let run = probe(&[
        "argdist",
        "--func",
        "ToString",
        "--arg",
        "0",
        "--json",
        "-o",
        &json.to_string_lossy(),
        "-c",
        &target.to_string_lossy(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "ToString calls: 1000\n", "only the command's output on stdout");
    let written = std::fs::read_to_string(&json).unwrap();
    let tables = json_tables(&written);
    assert_eq!(written.lines().count(), 1, "{written}");
    assert_eq!(tables[0]["count"].as_u64().unwrap(), 1000);
    assert_eq!(json_buckets(&tables[0]), expected_buckets(-500..500));

    let run = probe(&[
        "argdist",
        "--func",
        "ToString",
        "--arg",
        "0",
        "-o",
        &text.to_string_lossy(),
        "-c",
        &target.to_string_lossy(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "ToString calls: 1000\n");
    let written = std::fs::read_to_string(&text).unwrap();
    assert!(written.starts_with("main.ToString arg0: min:-500 avg:0 max:499 count:1000\nvalue |"), "{written}");
    assert_nothing_attached();
}

/// Root writes `-o` files: never through another user's symlink, never into a FIFO or device;
/// refused before anything is attached, the symlink's target untouched.
#[test]
fn output_file_refuses_other_users_symlinks_and_non_regular_files() {
    let target = go_target("tostring");
    let dir = targets_dir().join("names-output-unsafe");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep me\n").unwrap();
    let link = dir.join("link.json");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let link_c = std::ffi::CString::new(link.to_string_lossy().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::lchown(link_c.as_ptr(), 65534, 65534) }, 0);
    let fifo = dir.join("fifo");
    let fifo_c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o644) }, 0);
    for (path, why) in [
        (&link, "it is a symlink owned by another user (uid 65534), which probe never writes through"),
        (&fifo, "it is not a regular file; give the path of a regular file"),
        (&std::path::PathBuf::from("/dev/null"), "it is not a regular file; give the path of a regular file"),
    ] {
        let run = probe(&[
            "argdist",
            "--func",
            "ToString",
            "--arg",
            "0",
            "-o",
            &path.to_string_lossy(),
            &target.to_string_lossy(),
            "-d",
            "5",
        ]);
        assert_rejected(&run, &format!("-o {}: {why}", path.display()));
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    std::fs::remove_dir_all(&dir).unwrap(); // the FIFO too, which `cargo xtask vm-test` copies
}

/// `probe list BIG | head -1`: the reader going away ends the listing quietly.
#[test]
fn list_into_a_closed_pipe_ends_quietly() {
    let mut child = Command::new(probe_bin())
        .args(["list", "/usr/bin/prometheus"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    assert!(first.starts_with("# /usr/bin/prometheus: Go go1."), "{first}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
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
