//! The first ten minutes on a real program (issue 24): names as Go spells them, exact JSON in
//! every unit, a process named instead of numbered, a program found in PATH, lists of
//! functions, a binary deleted or replaced while it runs, a glob with one function that cannot
//! be probed, and the smaller things a newcomer meets first.
use crate::support::*;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The exact name of a Go value method is that method, not also the pointer wrapper Go
/// generates beside it (`net/http.serverHandler.ServeHTTP` and `(*serverHandler).ServeHTTP`).
#[test]
fn an_exact_go_name_is_not_ambiguous_with_its_pointer_wrapper() {
    let method = "example.com/gonames/scrape.serverHandler.ServeHTTP";
    let wrapper = "example.com/gonames/scrape.(*serverHandler).ServeHTTP";
    for version in GO_VERSIONS {
        let bin = go_target_with("gonames", version);
        let bin = bin.to_string_lossy();
        for (func, traced) in [
            (method, method),
            ("scrape.serverHandler.ServeHTTP", method),
            ("scrape.(*serverHandler).ServeHTTP", wrapper),
        ] {
            let run = probe(&["latency", "--func", func, "--json", "-c", &bin]);
            assert_eq!(run.code, 0, "go{version} {func}: {}", run.stderr);
            let tables = json_tables(&run.stdout);
            assert_eq!(tables.len(), 1, "{}", run.stdout);
            assert_eq!(tables[0]["function"], traced, "go{version} {func}");
            assert_eq!(tables[0]["count"].as_u64().unwrap(), reported_calls(&run.stderr, "ServeHTTP"));
            assert_eq!(reported_calls(&run.stderr, "ServeHTTP"), 300);
        }
    }
    assert_nothing_attached();
}

/// `latency --json` in every unit: `sum`, `min` and `max` come from the exact nanoseconds
/// (`sum_ns`, `min_ns`, `max_ns`), not from calls each cut to the unit first. work01us takes
/// about 0.1 us: cut to whole microseconds, its sum and min were 0.
#[test]
fn latency_json_sums_come_from_nanoseconds_in_every_unit() {
    let target = target("truth");
    let cmd = format!("{} -calls 300", target.display());
    for (unit, per) in [("ns", 1u64), ("us", 1_000), ("ms", 1_000_000)] {
        let run = probe(&["latency", "--func", "work01us", "--unit", unit, "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "{unit}: {}", run.stderr);
        let tables = json_tables(&run.stdout);
        let t = &tables[0];
        let count = t["count"].as_u64().unwrap();
        assert_eq!(count, reported_calls(&run.stderr, "work01us"));
        let (sum_ns, min_ns, max_ns) =
            (t["sum_ns"].as_u64().unwrap(), t["min_ns"].as_u64().unwrap(), t["max_ns"].as_u64().unwrap());
        let in_unit = |ns: u64| ns as f64 / per as f64;
        assert_eq!(t["sum"].as_f64().unwrap(), in_unit(sum_ns), "{unit}: {t}");
        assert_eq!(t["min"].as_f64().unwrap(), in_unit(min_ns), "{unit}: {t}");
        assert_eq!(t["max"].as_f64().unwrap(), in_unit(max_ns), "{unit}: {t}");
        if unit == "ns" {
            assert_eq!((t["sum"].as_u64(), t["min"].as_u64()), (Some(sum_ns), Some(min_ns)), "integers in ns");
        }
        // Each call's value cut to the unit is in its bucket: the nanoseconds lie between the
        // buckets' bounds, and the extremes in the first and last bucket.
        let buckets = json_buckets(t);
        let low: u64 = buckets.iter().map(|((l, _), c)| *l as u64 * per * c).sum();
        let high: u64 = buckets.iter().map(|((_, h), c)| (*h as u64 + 1) * per * c).sum();
        assert!(low <= sum_ns && sum_ns < high, "{unit}: sum_ns {sum_ns} outside {low}..{high}");
        let ((first, first_high), _) = buckets.first_key_value().unwrap();
        let ((last, last_high), _) = buckets.last_key_value().unwrap();
        assert!(*first as u64 * per <= min_ns && min_ns < (*first_high as u64 + 1) * per, "{unit}: {t}");
        assert!(*last as u64 * per <= max_ns && max_ns < (*last_high as u64 + 1) * per, "{unit}: {t}");
        assert!(min_ns <= max_ns && min_ns * count <= sum_ns && sum_ns <= max_ns * count);
    }
    assert_nothing_attached();
}

/// The tracing line's cost is per traced call (its own probes); a summary's is per call of that
/// function, its traced callees' probes included: outer10 calls work1us ten times, so more is
/// taken from each of its calls than from work1us's.
#[test]
fn the_cost_line_and_the_summary_say_what_each_figure_is() {
    let target = target("truth");
    let cmd = format!("{} -calls 100", target.display());
    let run = probe(&["latency", "--func", "outer10", "--func", "work1us", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tracing = run.stderr.lines().find(|l| l.starts_with("probe: tracing")).unwrap();
    assert!(
        tracing.contains(" per traced call subtracted, more from calls that make traced calls, resolution "),
        "{tracing}"
    );
    for function in ["outer10", "work1us"] {
        let summary = run.stdout.lines().find(|l| l.starts_with(&format!("{function}: "))).unwrap();
        assert!(summary.contains(" subtracted per call, traced callees' probes included, resolution "), "{summary}");
    }
    let run = probe(&["latency", "--func", "outer10", "--func", "work1us", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    let per_call = |f: &str| {
        let t = tables.iter().find(|t| t["function"] == f).unwrap();
        t["subtracted_ns"].as_u64().unwrap() / t["count"].as_u64().unwrap()
    };
    assert_eq!(reported_calls(&run.stderr, "work1us total"), 1100);
    assert!(per_call("outer10") > per_call("work1us"), "{}", run.stdout);
    assert_nothing_attached();
}

/// `probe list FILE WORD` matching nothing says that a pattern matches the whole name, how many
/// `*WORD` matches, and the closest names, as `--func` does.
#[test]
fn list_without_matches_offers_the_star_and_the_closest_names() {
    let bin = target("gonames");
    let run = probe(&["list", &bin.to_string_lossy(), "ServeHTTP"]);
    assert_rejected(
        &run,
        "matches ServeHTTP (a pattern matches the whole name: '*ServeHTTP' matches 3 functions); closest: \
         example.com/gonames/internal/caddyserver/modules/caddyhttp/reverseproxy.(*Handler).ServeHTTP, \
         example.com/gonames/scrape.(*serverHandler).ServeHTTP, example.com/gonames/scrape.serverHandler.ServeHTTP",
    );
    let run = probe(&["list", &bin.to_string_lossy(), "*ServeHTTP"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().filter(|l| l.ends_with("ServeHTTP")).count(), 3, "{}", run.stdout);
}

/// `cvalues 1 --wait` started as `name` (a copy of the target under that name, in a directory
/// of its own for `copy`): it calls `work` 1000 times once a line arrives.
fn waiting_cvalues_named(name: &str, copy: u32) -> (PathBuf, Child) {
    let dir = targets_dir().join(format!("named-{}-{copy}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join(name);
    std::fs::copy(target("cvalues"), &program).unwrap();
    let child =
        Command::new(&program).args(["1", "--wait"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim() != name {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (program, child)
}

/// Lets a waiting target run and returns its output.
fn release(mut app: Child) -> String {
    app.stdin.take().unwrap().write_all(b"go\n").unwrap();
    String::from_utf8_lossy(&app.wait_with_output().unwrap().stdout).into_owned()
}

/// `-p NAME` traces the one process of that name, as `pidof NAME` finds it.
#[test]
fn a_process_is_found_by_its_name() {
    let name = format!("pname{}", std::process::id() % 100_000);
    let (copy, app) = waiting_cvalues_named(&name, 0);
    let (probe, stderr) = probe_background(&["argdist", "--func", "work", "--arg", "0", "--json", "-p", &name]);
    let output = release(app);
    std::fs::remove_dir_all(copy.parent().unwrap()).unwrap();
    let run = finish(probe, stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(reported_calls(&output, "work"), 1000);
    assert_eq!(tables[0]["count"].as_u64().unwrap(), 1000);
    assert_eq!(json_buckets(&tables[0]), expected_buckets(-500..500));
    assert_nothing_attached();
}

/// Two processes of one name, or none: one line each, nothing attached.
#[test]
fn a_name_of_no_process_or_of_several_is_refused() {
    let name = format!("ptwo{}", std::process::id() % 100_000);
    let (copy_one, one) = waiting_cvalues_named(&name, 1);
    let (copy_two, two) = waiting_cvalues_named(&name, 2);
    let run = probe(&["latency", "--func", "work", "-p", &name]);
    let pids = [one.id().min(two.id()), one.id().max(two.id())];
    assert_rejected(&run, &format!("-p {name}: 2 processes are named {name} (pids {}, {});", pids[0], pids[1]));
    for app in [one, two] {
        release(app);
    }
    for copy in [copy_one, copy_two] {
        std::fs::remove_dir_all(copy.parent().unwrap()).unwrap();
    }
    let run = probe(&["latency", "--func", "work", "-p", &name]);
    assert_rejected(&run, &format!("-p {name}: no running process is named {name}; give its PID (`pgrep -a {name}`"));
}

/// BINARY given as a bare name that is no file here is looked up in PATH, as a shell would.
#[test]
fn a_binary_named_alone_is_found_in_path() {
    let name = format!("pathcv{}", std::process::id());
    let (copy, app) = waiting_cvalues_named(&name[..15.min(name.len())], 3);
    let dir = copy.parent().unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut probe = Command::new(probe_bin())
        .args(["argdist", "--func", "work", "--arg", "0", "--json", copy.file_name().unwrap().to_str().unwrap()])
        .env("PATH", path)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(probe.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.contains(&format!("every process running {}", copy.display())), "{line}");
    let output = release(app);
    std::fs::remove_dir_all(dir).unwrap();
    interrupt(&probe);
    let run = finish(probe, stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(reported_calls(&output, "work"), 1000);
    assert_eq!(json_tables(&run.stdout)[0]["count"].as_u64().unwrap(), 1000);
    assert_nothing_attached();
}

/// `--func a,b` is the list of a and b for latency (one table each, exact); argdist, which
/// measures one function, says so.
#[test]
fn a_comma_list_of_functions() {
    let target = target("truth");
    let cmd = format!("{} -calls 100", target.display());
    let run = probe(&["latency", "--func", "work10us,work01us", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    let names: Vec<&str> = tables.iter().map(|t| t["function"].as_str().unwrap()).collect();
    assert_eq!(names, ["work10us", "work01us"]);
    for t in &tables {
        let function = t["function"].as_str().unwrap();
        assert_eq!(t["count"].as_u64().unwrap(), reported_calls(&run.stderr, function), "{function}");
    }
    let run = probe(&["argdist", "--func", "work10us,work01us", "--arg", "0", "-c", &cmd]);
    assert_rejected(&run, "--func work10us,work01us: argdist measures one function, and this names 2");
}

/// A process whose program was replaced on disk while it runs (its path now names another
/// file, and the directory's name has a space): probes go into the file it runs, and `--by
/// caller` names its callers from that file, not from the one now at the path, even when the
/// process is gone before probe's first look at it after the "tracing" line.
#[test]
fn a_program_replaced_while_it_runs_is_traced_and_its_callers_named() {
    let dir = targets_dir().join(format!("replaced dir {}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("callers");
    std::fs::copy(target("callers"), &program).unwrap();
    let app =
        Command::new(&program).args(["2", "--wait"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let pid = app.id().to_string();
    while !std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default().contains("replaced dir") {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let replacement = dir.join("callers.new");
    std::fs::copy(target("cvalues"), &replacement).unwrap();
    std::fs::rename(&replacement, &program).unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.to_string_lossy().ends_with(" (deleted)"), "{}", exe.display());
    let (probe, stderr) = probe_background(&["latency", "--func", "leaf", "--by", "caller", "--json", "-p", &pid]);
    // The process ends before probe's loop runs at all (probe is stopped meanwhile): what names
    // the callers was read before the "tracing" line.
    unsafe { libc::kill(probe.id() as i32, libc::SIGSTOP) };
    let output = release(app);
    unsafe { libc::kill(probe.id() as i32, libc::SIGCONT) };
    let run = finish(probe, stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (alpha, beta) = (reported_calls(&output, "alpha"), reported_calls(&output, "beta"));
    assert_eq!((alpha, beta), (600, 1500));
    let tables = json_tables(&run.stdout);
    // Heaviest (most total time) first: either may be, so compare by caller.
    let mut calls: Vec<(&str, u64)> =
        tables.iter().map(|t| (t["by"]["caller"].as_str().unwrap(), t["count"].as_u64().unwrap())).collect();
    calls.sort();
    assert_eq!(calls, [("alpha", alpha), ("beta", beta)], "{}", run.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_nothing_attached();
}

/// A glob with a function whose entry the kernel refuses (refused_loop): that one is skipped
/// with the one-line warning other skips get, the others are measured.
#[test]
fn a_glob_skips_a_function_that_cannot_be_probed() {
    let target = target("oddities");
    let run = probe(&["latency", "--func", "*_loop", "--json", "-c", &target.to_string_lossy()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.lines().any(|l| l
            == "probe: warning: refused_loop cannot be traced (its first instruction is a LOCK-prefixed (atomic) \
                instruction, which the kernel refuses to probe, and no later instruction is equivalent); not measured"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("probe: 2 functions match *_loop\n"), "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{}", run.stdout);
    assert_eq!(tables[0]["function"], "plain_loop");
    // With --json the command's own output is on stderr.
    assert_eq!(tables[0]["count"].as_u64().unwrap(), reported_calls(&run.stderr, "plain_loop"));
    assert_eq!(reported_calls(&run.stderr, "plain_loop"), 100);
    // Named exactly, it is still an error.
    let run = probe(&["latency", "--func", "refused_loop", &target.to_string_lossy()]);
    assert_rejected(&run, "refused_loop: its first instruction is a LOCK-prefixed (atomic) instruction");
}

/// `-d` and `-i` take units as `--filter` does; a glob of one says "1 function matches".
#[test]
fn durations_take_units_and_one_match_is_singular() {
    let target = target("tostring");
    let t = target.to_string_lossy();
    let run = probe_within(30, &["latency", "--func", "main.ToStr*", "-d", "300ms", "-i", "0.1s", &t]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.starts_with("probe: 1 function matches main.ToStr*\n"), "{}", run.stderr);
    assert!(run.stdout.contains("main.ToString: count:0"), "{}", run.stdout);
    assert_nothing_attached();
}

/// `latency --help` shows examples (as its man page does), `--by` lists `caller`, and
/// latency's `--top` does not speak of argdist's `--count`.
#[test]
fn help_has_examples_and_says_what_each_command_takes() {
    let latency = probe(&["latency", "--help"]);
    assert_eq!(latency.code, 0);
    let examples = latency.stdout.split("Examples:\n").nth(1).expect("an Examples section");
    assert!(examples.contains("    probe latency --func main.UsingSubstring -c './regex -seconds 5'\n"), "{examples}");
    let top = latency.stdout.split("--top <N>").nth(1).unwrap().split("\n\n").next().unwrap();
    assert!(!top.contains("--count") && top.contains("with the most total time"), "{top}");
    for command in ["latency", "argdist"] {
        let help = probe(&[command, "--help"]).stdout;
        let by = help.split("--by <KEY>").nth(1).unwrap().split("\n\n").next().unwrap();
        assert!(by.contains("calling function"), "{command}: {by}");
    }
    let argdist = probe(&["argdist", "--help"]).stdout;
    assert!(argdist.contains("Examples:\n"), "{argdist}");
}

/// The same SVG title rules on a real run: a long Go name is never cut at the front or the
/// back of the picture (usvg lays the text out with the system's fonts).
#[test]
fn picture_titles_fit_their_panels() {
    use resvg::usvg;
    let bin = target("gonames");
    let dir = targets_dir().join(format!("titles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (heatmap, plot) = (dir.join("heatmap.svg"), dir.join("plot.svg"));
    let run = probe(&[
        "latency",
        "--func",
        "(*Handler).ServeHTTP",
        "--heatmap",
        heatmap.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        "-c",
        &bin.to_string_lossy(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for svg in [&heatmap, &plot] {
        let text = std::fs::read_to_string(svg).unwrap();
        assert!(text.contains("reverseproxy.(*Handler).ServeHTTP latency"), "{text}");
        assert!(text.contains(if svg == &plot { "latency: 200 calls" } else { "calls per interval and bucket" }));
        let mut options = usvg::Options::default();
        options.fontdb_mut().load_system_fonts();
        options.fontdb_mut().set_sans_serif_family("DejaVu Sans");
        let tree = usvg::Tree::from_str(&text, &options).unwrap();
        let width = tree.size().width();
        let mut texts = 0;
        each_text(tree.root(), &mut |b: usvg::Rect| {
            texts += 1;
            assert!(b.left() >= 0.0 && b.right() <= width, "{}: text at {b:?} outside 0..{width}", svg.display());
        });
        assert!(texts > 3, "{}: no text laid out", svg.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert_nothing_attached();
}

fn each_text(group: &resvg::usvg::Group, f: &mut dyn FnMut(resvg::usvg::Rect)) {
    for node in group.children() {
        match node {
            resvg::usvg::Node::Group(g) => each_text(g, f),
            resvg::usvg::Node::Text(t) => f(t.abs_bounding_box()),
            _ => {}
        }
    }
}

/// `-o FILE` on a full file system (a small tmpfs mounted here): the run ends with one line
/// naming the file and the reason, exit code 1, instead of exit 0 and an empty file.
#[test]
fn a_full_disk_under_the_output_is_an_error() {
    let mount = FullTmpfs::new("full");
    let target = target("cvalues");
    let t = target.to_string_lossy();
    for (json, output) in [(false, "-o"), (true, "-o"), (false, "--hdr-log")] {
        let file = mount.dir.join("out");
        let mut args = vec!["latency", "--func", "work", "-c", &t, output, file.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let run = probe(&args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        let last = run.stderr.lines().last().unwrap();
        assert_eq!(
            last,
            format!(
                "probe: {output} {}: cannot write it (No space left on device (os error 28)); what it holds is \
                 incomplete: free some space or give another path",
                file.display()
            )
        );
        assert_nothing_attached();
    }
    // stdout on a full device (the test's redirection, not probe's file).
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = Command::new(probe_bin())
        .args(["latency", "--func", "work", "--json", "-c", &t])
        .stdin(Stdio::null())
        .stdout(full)
        .output()
        .unwrap();
    let run: Run = out.into();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.ends_with("probe: stdout: cannot write it (No space left on device (os error 28)); what it holds is incomplete: free some space or give another path\n"), "{}", run.stderr);
    assert_nothing_attached();
}

/// A tmpfs of 16 KiB mounted under target/targets, filled to the last byte; unmounted on drop.
struct FullTmpfs {
    dir: PathBuf,
}

impl FullTmpfs {
    fn new(tag: &str) -> FullTmpfs {
        let dir = targets_dir().join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"]).arg(&dir).status().unwrap();
        assert!(status.success(), "mount a tmpfs on {}", dir.display());
        let mount = FullTmpfs { dir };
        let mut fill = std::fs::File::create(mount.dir.join("fill")).unwrap();
        let block = [0u8; 4096];
        while fill.write_all(&block).is_ok() {}
        let _ = fill.write_all(&[0]);
        mount
    }
}

impl Drop for FullTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}
