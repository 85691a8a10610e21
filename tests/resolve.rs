//! Finding the function in real binaries: PIE and non-PIE, shared libraries, stripped Go,
//! C++ and Rust names, globs, separate debug files, `probe list`, and sudo's user for `-c`.
use probe_tests::*;
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
    for (name, flag) in [("cvalues-pie", "-pie"), ("cvalues-nopie", "-no-pie")] {
        let bin = targets_dir().join(name);
        build(Command::new("cc").args(["-O2", flag, "-o"]).arg(&bin).arg(root().join("tests/targets/cvalues.c")), &bin);
        let run = probe(&["argdist", "--func", "work", "--arg", "1", "--json", "-c", &bin.to_string_lossy()]);
        assert_eq!(reported_calls(&run.stderr, "work"), 1000);
        assert_round(&run, "work", "arg1", 2);
    }
}

fn libvalues() -> (PathBuf, PathBuf) {
    libvalues_in(&targets_dir())
}

#[test]
fn shared_library_function_by_path_with_c() {
    let (lib, main) = libvalues();
    let func = format!("{}:lib_work", lib.display());
    let run = probe(&["argdist", "--func", &func, "--arg", "0", "--json", "-c", &main.to_string_lossy()]);
    assert_eq!(reported_calls(&run.stderr, "lib_work"), 1000);
    assert_round(&run, "lib_work", "arg0", 1);
}

#[test]
fn shared_library_function_by_name_with_p() {
    let (_, main) = libvalues();
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
    let (_, main) = libvalues();
    let cmd = format!("{} 4", main.display());
    let run = probe(&["latency", "--func", "libc.so.6:getppid", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&run.stderr, "getppid"), 2000);
    assert_eq!(json_tables(&run.stdout)[0]["count"].as_u64().unwrap(), 2000);
    assert_nothing_attached();
}

#[test]
fn stripped_and_unstripped_go_agree() {
    let unstripped = go_target("tostring");
    let stripped = go_target_stripped("tostring", "tostring-stripped");
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
    let stripped = go_target_stripped("goasm", "goasm-stripped");
    let run = probe(&["argdist", "--func", "Scale", "--arg", "0", "--json", "-c", &stripped.to_string_lossy()]);
    assert!(run.stderr.contains("Go stack ABI"), "{}", run.stderr);
    assert_round(&run, "main.Scale.abi0", "arg0", 1);
}

#[test]
fn cpp_method_by_demangled_name() {
    let bin = targets_dir().join("geo");
    build(Command::new("c++").args(["-O2", "-o"]).arg(&bin).arg(root().join("tests/targets/cpp/geo.cpp")), &bin);
    for name in ["geo::Scaler::scale", "Scaler::scale", "geo::Scaler::scale(long)"] {
        let run = probe(&["argdist", "--func", name, "--arg", "1", "--json", "-c", &bin.to_string_lossy()]);
        assert_eq!(reported_calls(&run.stderr, "scale"), 1000);
        assert_round(&run, "geo::Scaler::scale(long)", "arg1", 1);
    }
}

#[test]
fn rust_function_by_demangled_name() {
    let bin = targets_dir().join("rvalues");
    build(Command::new("rustc").args(["-O", "-o"]).arg(&bin).arg(root().join("tests/targets/rust/values.rs")), &bin);
    let run = probe(&["argdist", "--func", "values::scale", "--ret", "--json", "-c", &bin.to_string_lossy()]);
    assert_eq!(reported_calls(&run.stderr, "scale"), 1000);
    assert_round(&run, "values::scale", "ret", 2);
}

#[test]
fn glob_attaches_to_every_match() {
    let target = go_target("regex");
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
    let full = dir.join("cvalues-full");
    let bin = dir.join("cvalues-stripped");
    let debug = dir.join("cvalues-stripped.debug");
    build(Command::new("cc").args(["-O2", "-g", "-o"]).arg(&full).arg(root().join("tests/targets/cvalues.c")), &full);
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
    let target = c_target("cvalues", &[]);
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
