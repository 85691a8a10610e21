//! `--by stack`: one table per user stack, counted in the kernel, exactly: the target programs
//! call their traced leaf along known paths and print how often each ran; the folded stacks,
//! the JSON tables and the pprof profile (read by `go tool pprof`) must say the same.
use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("probe-stacks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The folded file's lines, as (stack, calls).
fn folded(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not folded: {l}"));
            (stack.to_string(), n.parse().unwrap())
        })
        .collect()
}

/// The JSON tables' stacks (caller first, joined by `;`) and their counts; every table has no
/// call lost.
fn json_stacks(stdout: &str) -> BTreeMap<String, Value> {
    json_tables(stdout)
        .into_iter()
        .map(|t| {
            assert_eq!(t["lost"], 0, "{t}");
            let frames: Vec<&str> = t["by"]["stack"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
            (frames.join(";"), t)
        })
        .collect()
}

/// `go tool pprof -top` of a profile, sample `index`: each function's (flat, cum) as printed.
fn pprof_top(profile: &Path, index: &str) -> BTreeMap<String, (String, String)> {
    pprof_top_with(profile, index, &[])
}

fn pprof_top_with(profile: &Path, index: &str, more: &[&str]) -> BTreeMap<String, (String, String)> {
    // `go tool pprof`, or where there is no Go toolchain (the vm-test guest) the program it runs.
    let mut pprof = match std::env::var_os("PROBE_PPROF") {
        Some(program) => Command::new(program),
        None => {
            let mut go = Command::new("go");
            go.args(["tool", "pprof"]);
            go
        }
    };
    let out = pprof
        .args(["-top", "-nodecount=100", "-nodefraction=0", &format!("-sample_index={index}")])
        .args(more)
        .arg(profile)
        .output()
        .expect("go tool pprof");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() == 6 && cols[5].contains('.')).then(|| (cols[5].to_string(), (cols[0].into(), cols[3].into())))
        })
        .collect()
}

const GO_OUTER: &str = "runtime.goexit.abi0;runtime.main;main.main";

/// What the Go target's paths must give, folded, with the target's counts (scale 2).
fn go_expected(stderr: &str) -> BTreeMap<String, u64> {
    let (ab, c, d) = (
        reported_calls(stderr, "a->b->leaf"),
        reported_calls(stderr, "c->leaf"),
        reported_calls(stderr, "d->viaInline->leaf"),
    );
    assert_eq!((ab, c, d), (600, 200, 100), "{stderr}");
    BTreeMap::from([
        (format!("{GO_OUTER};main.a;main.b;main.leaf"), ab),
        (format!("{GO_OUTER};main.c;main.leaf"), c),
        // viaInline was inlined into d: its frame comes from the inline tree.
        (format!("{GO_OUTER};main.d;main.viaInline;main.leaf"), d),
    ])
}

fn go_latency_stacks(program: &Path, tag: &str) {
    let dir = scratch(tag);
    let (folded_path, pprof_path, svg) = (dir.join("f.txt"), dir.join("p.pb.gz"), dir.join("f.svg"));
    let cmd = format!("{} 2", program.display());
    let run = probe(&[
        "latency",
        "--func",
        "main.leaf",
        "--by",
        "stack",
        "--json",
        "--folded",
        folded_path.to_str().unwrap(),
        "--pprof",
        pprof_path.to_str().unwrap(),
        "--flamegraph",
        svg.to_str().unwrap(),
        "-c",
        &cmd,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected = go_expected(&run.stderr);
    assert_eq!(folded(&folded_path), expected);
    // JSON: the caller first, the traced function not repeated.
    let tables = json_stacks(&run.stdout);
    let counts: BTreeMap<String, u64> = tables
        .iter()
        .map(|(stack, t)| {
            let mut frames: Vec<&str> = stack.split(';').collect();
            frames.reverse();
            (format!("{};main.leaf", frames.join(";")), t["count"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(counts, expected);
    // pprof: calls per function as the target made them, and the time's total is the tables'.
    let top = pprof_top(&pprof_path, "calls");
    let cum = |f: &str| top.get(f).map(|t| t.1.clone()).unwrap_or_else(|| panic!("{f} not in {top:?}"));
    assert_eq!(top["main.leaf"], ("900".to_string(), "900".to_string()));
    assert_eq!((cum("main.a"), cum("main.b"), cum("main.c")), ("600".into(), "600".into(), "200".into()));
    assert_eq!((cum("main.d"), cum("main.viaInline"), cum("main.main")), ("100".into(), "100".into(), "900".into()));
    // A stack's time is in the profile when its calls took any once the probes' cost was taken
    // out: a leaf this short can read 0, below the resolution, where traps cost more than usual.
    let time = pprof_top(&pprof_path, "time");
    let via_inline = &tables["main.viaInline;main.d;main.main;runtime.main;runtime.goexit.abi0"];
    let via_inline_ns = via_inline["sum_ns"].as_u64().unwrap();
    assert_eq!(time.contains_key("main.viaInline"), via_inline_ns > 0, "{time:?} {via_inline}");
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.contains("<svg") && picture.contains("main.viaInline"), "{picture}");
    std::fs::remove_dir_all(dir).unwrap();
    assert_nothing_attached();
}

#[test]
fn go_latency_by_stack_is_exact_in_folded_json_and_pprof_on_go_1_19() {
    go_latency_stacks(&target("stacks"), "go119");
}

#[test]
fn go_latency_by_stack_is_exact_in_folded_json_and_pprof_on_go_1_23() {
    go_latency_stacks(&go_target_with("stacks", "1.23"), "go123");
}

#[test]
fn go_argdist_by_stack_sums_each_stacks_values() {
    let dir = scratch("argdist");
    let (folded_path, pprof_path) = (dir.join("f.txt"), dir.join("p.pb.gz"));
    let cmd = format!("{} 2", target("stacks").display());
    let run = probe(&[
        "argdist",
        "--func",
        "main.leaf",
        "--arg",
        "x",
        "--by",
        "stack",
        "--json",
        "--folded",
        folded_path.to_str().unwrap(),
        "--pprof",
        pprof_path.to_str().unwrap(),
        "-c",
        &cmd,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(folded(&folded_path), go_expected(&run.stderr));
    // Each path passes 0..n: its sum is n(n-1)/2.
    let tables = json_stacks(&run.stdout);
    let sum = |stack: &str| tables[stack]["sum"].as_i64().unwrap();
    assert_eq!(sum("main.b;main.a;main.main;runtime.main;runtime.goexit.abi0"), 600 * 599 / 2);
    assert_eq!(sum("main.c;main.main;runtime.main;runtime.goexit.abi0"), 200 * 199 / 2);
    assert_eq!(sum("main.viaInline;main.d;main.main;runtime.main;runtime.goexit.abi0"), 100 * 99 / 2);
    let sums = pprof_top(&pprof_path, "sum");
    // Printed with the sample type's unit after the number.
    assert_eq!(sums["main.leaf"].0, format!("{}value", 600 * 599 / 2 + 200 * 199 / 2 + 100 * 99 / 2));
    std::fs::remove_dir_all(dir).unwrap();
    assert_nothing_attached();
}

#[test]
fn c_with_frame_pointers_gives_its_whole_stacks() {
    let dir = scratch("cfp");
    let folded_path = dir.join("f.txt");
    let cmd = format!("{} 2", target("cstacks").display());
    let run =
        probe(&["latency", "--func", "leaf", "--by", "stack", "--folded", folded_path.to_str().unwrap(), "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("frame pointers"), "{}", run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    let (ab, c) = (reported_calls(&said, "a->b->leaf"), reported_calls(&said, "c->leaf"));
    assert_eq!((ab, c), (600, 200));
    let stacks = folded(&folded_path);
    // Above main, the C library's frames (which keep no frame pointers) end the walk.
    let ends: BTreeMap<String, u64> = stacks
        .iter()
        .map(|(stack, &n)| {
            let from_main = stack.find(";main;").map_or(stack.as_str(), |i| &stack[i + 1..]);
            (from_main.to_string(), n)
        })
        .collect();
    assert_eq!(ends, BTreeMap::from([("main;a;b;leaf".to_string(), ab), ("main;c;leaf".to_string(), c)]), "{stacks:?}");
    std::fs::remove_dir_all(dir).unwrap();
    assert_nothing_attached();
}

#[test]
fn c_without_frame_pointers_says_so_once_and_keeps_the_exact_caller() {
    let dir = scratch("cnofp");
    let folded_path = dir.join("f.txt");
    let cmd = format!("{} 2", target("cstacks-nofp").display());
    let run =
        probe(&["latency", "--func", "leaf", "--by", "stack", "--folded", folded_path.to_str().unwrap(), "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr.matches("keeps no frame pointers").count(), 1, "{}", run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    let (ab, c) = (reported_calls(&said, "a->b->leaf"), reported_calls(&said, "c->leaf"));
    assert_eq!((ab, c), (600, 200));
    assert_eq!(folded(&folded_path), BTreeMap::from([("b;leaf".to_string(), ab), ("c;leaf".to_string(), c)]));
    std::fs::remove_dir_all(dir).unwrap();
    assert_nothing_attached();
}

#[test]
fn stack_outputs_without_by_stack_or_a_writable_path_are_refused() {
    let t = target("stacks");
    let t = t.to_str().unwrap();
    for option in ["--pprof", "--folded", "--flamegraph"] {
        let file = if option == "--flamegraph" { "/tmp/x.svg" } else { "/tmp/x" };
        let run = probe(&["latency", "--func", "main.leaf", option, file, "-c", t]);
        assert_rejected(&run, &format!("{option} writes stacks, which only --by stack collects; add --by stack"));
        let run = probe(&["argdist", "--func", "main.leaf", "--arg", "x", "--by", "pid", option, file, "-c", t]);
        assert_rejected(&run, "add --by stack");
    }
    let run =
        probe(&["latency", "--func", "main.leaf", "--by", "stack", "--pprof", "/nonexistent/dir/p.pb.gz", "-c", t]);
    assert_rejected(&run, "--pprof /nonexistent/dir/p.pb.gz");
    let run = probe(&["latency", "--func", "main.leaf", "--by", "stack", "--flamegraph", "/tmp/f.png", "-c", t]);
    assert_rejected(&run, "give a file name ending in .svg");
    let run =
        probe(&["latency", "--func", "main.leaf", "--by", "stack", "--pprof", "/tmp/p", "--folded", "/tmp/p", "-c", t]);
    assert_rejected(&run, "give each its own file");
}

/// The seed's allocation profile: `argdist --func runtime.mallocgc --arg size --by stack` against
/// the Go runtime's own heap profile with every allocation recorded (`MemProfileRate = 1`).
fn allocations_match_the_runtimes_profile(program: &Path, tag: &str) {
    let dir = scratch(tag);
    let (heap, pprof_path) = (dir.join("heap.pb.gz"), dir.join("allocs.pb.gz"));
    let cmd = format!("{} {}", program.display(), heap.display());
    let run = probe(&[
        "argdist",
        "--func",
        "runtime.mallocgc",
        "--arg",
        "size",
        "--by",
        "stack",
        "--top",
        "10000",
        "--json",
        "--pprof",
        pprof_path.to_str().unwrap(),
        "-c",
        &cmd,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (a, b) = (reported_calls(&run.stderr, "allocA"), reported_calls(&run.stderr, "allocB"));
    let tables = json_stacks(&run.stdout);
    // Per allocating function: probe's calls and bytes asked for.
    let of = |f: &str| -> (u64, i64) {
        let under: Vec<&Value> = tables.iter().filter(|(s, _)| s.split(';').any(|x| x == f)).map(|(_, t)| t).collect();
        (
            under.iter().map(|t| t["count"].as_u64().unwrap()).sum(),
            under.iter().map(|t| t["sum"].as_i64().unwrap()).sum(),
        )
    };
    let ((calls_a, bytes_a), (calls_b, bytes_b)) = (of("main.allocA"), of("main.allocB"));
    assert_eq!((calls_a, calls_b), (a, b));
    assert_eq!(bytes_a, (100 + 101 + 102) * 100, "sizes 100, 101, 102 each 100 times");
    assert_eq!(bytes_b, 32 * 200, "a 32-byte struct");
    // The runtime's profile: the same objects, and bytes rounded up to its size classes.
    let objects = pprof_top(&heap, "alloc_objects");
    assert_eq!(objects["main.allocA"].1, a.to_string());
    assert_eq!(objects["main.allocB"].1, b.to_string());
    let space = pprof_top_with(&heap, "alloc_space", &["-unit=B"]);
    let bytes = |f: &str| space[f].1.trim_end_matches('B').parse::<i64>().unwrap();
    assert!((bytes_a..=bytes_a * 9 / 8).contains(&bytes("main.allocA")), "{space:?}");
    assert_eq!(bytes("main.allocB"), bytes_b, "32 bytes is a size class");
    // probe's own profile says the same per function.
    let calls = pprof_top(&pprof_path, "calls");
    assert_eq!(calls["main.allocA"].1, a.to_string());
    let sums = pprof_top_with(&pprof_path, "sum", &[]);
    assert_eq!(sums["main.allocB"].1, format!("{bytes_b}value"));
    std::fs::remove_dir_all(dir).unwrap();
    assert_nothing_attached();
}

#[test]
fn an_allocation_profile_matches_the_go_runtimes_on_go_1_19() {
    allocations_match_the_runtimes_profile(&target("allocs"), "allocs119");
}

#[test]
fn an_allocation_profile_matches_the_go_runtimes_on_go_1_23() {
    allocations_match_the_runtimes_profile(&go_target_with("allocs", "1.23"), "allocs123");
}

#[test]
fn stacks_that_find_no_room_are_counted_under_their_reason() {
    // Room for one stack: the first path's calls are in its table, the others' under
    // `stack_not_stored`, and together they are every call.
    let cmd = format!("{} 2", target("stacks").display());
    let out = Command::new(probe_bin())
        .args(["latency", "--func", "main.leaf", "--by", "stack", "--json", "-c", &cmd])
        .env("PROBE_TEST_MAP_SIZES", "STACK_FRAMES=1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let run: Run = out.into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{}", run.stdout);
    let t = &tables[0];
    assert_eq!(t["by"]["stack"][0], "main.b", "the first path made is the one stored");
    assert_eq!(t["count"], 600);
    assert_eq!(t["losses"]["stack_not_stored"], 300);
    assert_eq!(t["lost"], 300);
    assert_nothing_attached();
}
