//! `--hdr-log`, `--heatmap` and `--plot` end to end: the HDR log read back with the
//! `hdrhistogram` crate's own interval log reader, the SVGs parsed with usvg and rendered to PNG
//! with resvg, every number checked against the JSON tables of the same run and the target's
//! own call counts. And where tables go: `--json` on stdout never mixed with the command's
//! output, `-o FILE` (never through another user's symlink, never into a special file).
use crate::support::*;
use base64::Engine;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use resvg::{tiny_skia, usvg};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const FUNCTIONS: [&str; 2] = ["main.UsingSubstring", "main.UsingRegex"];

/// Where the files of a test go (kept after the run, for a look).
fn out_dir() -> PathBuf {
    let dir = root().join("target/outputs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One traced run of the seed's regex program with every output at once (shared by the tests
/// below: it takes 10 s): `-i 0.5 --json`, both functions.
struct RegexRun {
    /// The target's output (on stderr: probe's JSON is on stdout).
    target_output: String,
    tables: Vec<Value>,
    hdr_log: PathBuf,
    heatmap: PathBuf,
    plot: PathBuf,
}

fn regex_run() -> &'static RegexRun {
    static RUN: OnceLock<RegexRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = out_dir();
        let (hdr_log, heatmap, plot) =
            (dir.join("regex.hdr"), dir.join("regex-heatmap.svg"), dir.join("regex-plot.svg"));
        let cmd = format!("{} -seconds 10", target("regex").display());
        let run = probe(&[
            "latency",
            "--func",
            FUNCTIONS[0],
            "--func",
            FUNCTIONS[1],
            "-i",
            "0.5",
            "--json",
            "--hdr-log",
            hdr_log.to_str().unwrap(),
            "--heatmap",
            heatmap.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
            "-c",
            &cmd,
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_nothing_attached();
        let tables = json_tables(&run.stdout);
        RegexRun { target_output: run.stderr, tables, hdr_log, heatmap, plot }
    })
}

fn count(table: &Value) -> u64 {
    table["count"].as_u64().unwrap()
}

/// The `final` table of a function.
fn final_table<'a>(tables: &'a [Value], function: &str) -> &'a Value {
    tables.iter().find(|t| t["kind"] == "final" && t["function"] == function).unwrap()
}

/// The buckets (low -> count) of each span the outputs saw for a function: every `interval`
/// table, then the last, partial interval (the final table minus all intervals).
fn spans(tables: &[Value], function: &str) -> Vec<std::collections::BTreeMap<i64, u64>> {
    let by_low = |t: &Value| json_buckets(t).into_iter().map(|((low, _), c)| (low, c)).collect();
    let mut spans: Vec<std::collections::BTreeMap<i64, u64>> =
        tables.iter().filter(|t| t["kind"] == "interval" && t["function"] == function).map(by_low).collect();
    let mut last: std::collections::BTreeMap<i64, u64> = by_low(final_table(tables, function));
    for span in &spans {
        for (low, c) in span {
            *last.get_mut(low).unwrap() -= c;
        }
    }
    last.retain(|_, c| *c > 0);
    spans.push(last);
    spans
}

#[test]
fn hdr_log_reads_back_with_the_counts_of_every_interval() {
    let run = regex_run();
    let log = std::fs::read(&run.hdr_log).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(text.starts_with("#[Histogram log format version 1.3]\n"), "{text}");
    assert!(text.contains("#[StartTime: ") && text.contains("#[BaseTime: "), "{text}");

    let mut deserializer = Deserializer::new();
    let mut read: Vec<(String, f64, f64, u64)> = Vec::new(); // tag, start, length, count
    for entry in IntervalLogIterator::new(&log) {
        if let LogEntry::Interval(interval) = entry.expect("a well-formed interval log") {
            let bytes = base64::engine::general_purpose::STANDARD.decode(interval.encoded_histogram()).unwrap();
            let h: hdrhistogram::Histogram<u64> = deserializer.deserialize(&mut &bytes[..]).unwrap();
            let tag = interval.tag().expect("every interval is tagged").as_str().to_string();
            let (start, length) = (interval.start_timestamp().as_secs_f64(), interval.duration().as_secs_f64());
            read.push((tag, start, length, h.len()));
        }
    }

    for (function, label) in FUNCTIONS.iter().zip(["UsingSubstring", "UsingRegex"]) {
        let expected: Vec<u64> =
            spans(&run.tables, function).iter().map(|s| s.values().sum()).filter(|&c| c > 0).collect();
        let logged: Vec<&(String, f64, f64, u64)> = read.iter().filter(|r| r.0 == *function).collect();
        assert_eq!(logged.iter().map(|r| r.3).collect::<Vec<_>>(), expected, "{function}: counts per interval");
        let total: u64 = logged.iter().map(|r| r.3).sum();
        assert_eq!(total, reported_calls(&run.target_output, label), "{function}: total of the log");
        assert_eq!(total, count(final_table(&run.tables, function)));
        // Intervals follow each other: each starts where the one before ended (3 decimals).
        for pair in logged.windows(2) {
            let end = pair[0].1 + pair[0].2;
            assert!((pair[1].1 - end).abs() < 0.0015, "{function}: gap between {:?} and {:?}", pair[0], pair[1]);
        }
    }
    assert_eq!(
        read.len(),
        FUNCTIONS.iter().map(|f| spans(&run.tables, f).iter().filter(|s| !s.is_empty()).count()).sum::<usize>()
    );
}

/// A parsed and rendered picture: its filled, non-white shapes without outline (bounding-box centre and
/// colour) and the rendered pixels.
struct Picture {
    filled: Vec<Shape>,
    pixmap: tiny_skia::Pixmap,
    text: String,
}

/// Parses an SVG with usvg, renders it with resvg and writes the PNG next to it.
fn render(svg: &Path) -> Picture {
    let text = std::fs::read_to_string(svg).unwrap();
    let mut options = usvg::Options::default();
    options.fontdb_mut().load_system_fonts();
    options.fontdb_mut().set_sans_serif_family("DejaVu Sans");
    let tree = usvg::Tree::from_str(&text, &options).expect("the SVG parses");
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.save_png(svg.with_extension("png")).unwrap();
    let mut filled = Vec::new();
    collect_filled(tree.root(), &mut filled);
    Picture { filled, pixmap, text }
}

/// A filled shape: the centre of its bounding box and its colour.
struct Shape {
    centre: (f32, f32),
    colour: (u8, u8, u8),
}

fn collect_filled(group: &usvg::Group, out: &mut Vec<Shape>) {
    for node in group.children() {
        match node {
            usvg::Node::Group(g) => collect_filled(g, out),
            // Cells and bars are filled without an outline (lines have a stroke and usvg gives
            // them SVG's default black fill).
            usvg::Node::Path(p) if p.stroke().is_none() => {
                if let Some(usvg::Paint::Color(c)) = p.fill().map(|f| f.paint()) {
                    if (c.red, c.green, c.blue) != (255, 255, 255) {
                        let b = p.abs_bounding_box();
                        let centre = ((b.left() + b.right()) / 2.0, (b.top() + b.bottom()) / 2.0);
                        out.push(Shape { centre, colour: (c.red, c.green, c.blue) });
                    }
                }
            }
            _ => {}
        }
    }
}

/// Every filled shape shows in the rendered PNG with its own colour at its centre.
fn assert_rendered(picture: &Picture) {
    for &Shape { centre: (x, y), colour: (r, g, b) } in &picture.filled {
        let px = picture.pixmap.pixel(x as u32, y as u32).unwrap();
        let got = (px.red(), px.green(), px.blue());
        let close = |a: u8, b: u8| a.abs_diff(b) <= 60; // bars are drawn at 80% opacity on white
        assert!(
            close(got.0, r) && close(got.1, g) && close(got.2, b),
            "pixel at ({x}, {y}) is {got:?}, shape is {:?}",
            (r, g, b)
        );
    }
}

#[test]
fn heatmap_has_one_cell_per_non_empty_bucket_of_every_interval() {
    let run = regex_run();
    let picture = render(&run.heatmap);
    let expected: usize = FUNCTIONS.iter().map(|f| spans(&run.tables, f).iter().map(|s| s.len()).sum::<usize>()).sum();
    assert_eq!(picture.filled.len(), expected, "cells in {}", run.heatmap.display());
    assert_rendered(&picture);
    for function in FUNCTIONS {
        assert!(picture.text.contains(function), "no panel for {function}");
    }
}

#[test]
fn plot_has_one_bar_per_non_empty_bucket_of_the_final_histogram() {
    let run = regex_run();
    let picture = render(&run.plot);
    let expected: usize = FUNCTIONS.iter().map(|f| json_buckets(final_table(&run.tables, f)).len()).sum();
    assert_eq!(picture.filled.len(), expected, "bars in {}", run.plot.display());
    assert_rendered(&picture);
}

#[test]
fn argdist_pictures_show_the_seed_tables_nineteen_buckets() {
    let (plot, heatmap) = (out_dir().join("tostring-plot.svg"), out_dir().join("tostring-heatmap.svg"));
    let cmd = format!("{} -rounds 100", target("tostring").display());
    let run = probe(&[
        "argdist",
        "--func",
        "ToString",
        "--arg",
        "0",
        "-i",
        "0.5",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
        "--heatmap",
        heatmap.to_str().unwrap(),
        "-c",
        &cmd,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_nothing_attached();
    assert_eq!(reported_calls(&run.stderr, "ToString"), 100_000);
    let tables = json_tables(&run.stdout);
    // -500..=499: -256 .. -1, 0, 1 .. 256 (SystemTap's rows), 9 + 1 + 9 buckets.
    assert_eq!(json_buckets(final_table(&tables, "main.ToString")).len(), 19);

    let bars = render(&plot);
    assert_eq!(bars.filled.len(), 19, "bars in {}", plot.display());
    assert_rendered(&bars);
    assert!(bars.text.contains("main.ToString arg0: 100000 calls"), "caption");

    let cells = render(&heatmap);
    let expected: usize = spans(&tables, "main.ToString").iter().map(|s| s.len()).sum();
    assert_eq!(cells.filled.len(), expected, "cells in {}", heatmap.display());
    assert_rendered(&cells);
}

/// Bad output options fail before anything is attached: exit 2, one line naming the fix.
fn assert_refused(args: &[&str], message: &str) {
    let target = target("tostring");
    let mut all = args.to_vec();
    all.push(target.to_str().unwrap());
    all.extend(["-d", "5"]);
    let run = probe(&all);
    assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    assert_nothing_attached();
}

#[test]
fn unwritable_output_paths_are_bad_input() {
    let missing = "/nonexistent-dir/out";
    for option in ["--hdr-log", "--heatmap", "--plot"] {
        let path = format!("{missing}{}", if option == "--hdr-log" { ".hdr" } else { ".svg" });
        let message = format!("probe: {option} {path}: cannot create the file (No such file or directory (os error 2)); give a writable path");
        assert_refused(&["latency", "--func", "ToString", option, &path], &message);
    }
}

#[test]
fn pictures_must_be_svg_files() {
    for option in ["--heatmap", "--plot"] {
        let path = out_dir().join("picture.png");
        let _ = std::fs::remove_file(&path);
        let message =
            format!("{option} {}: pictures are written as SVG; give a file name ending in .svg", path.display());
        assert_refused(&["latency", "--func", "ToString", option, path.to_str().unwrap()], &message);
        assert!(!path.exists(), "{option} created {}", path.display());
    }
}

#[test]
fn hdr_log_refuses_argdist_values() {
    let path = out_dir().join("argdist.hdr");
    let _ = std::fs::remove_file(&path);
    assert_refused(
        &["argdist", "--func", "ToString", "--arg", "0", "--hdr-log", path.to_str().unwrap()],
        "--hdr-log records latencies: HdrHistogram cannot hold argdist's negative values; use --json for argdist",
    );
    assert!(!path.exists());
}

/// `assert_refused`, with a deadline: opening a FIFO for writing would hang.
fn assert_refused_soon(args: &[&str], message: &str) {
    let target = target("tostring");
    let mut all = args.to_vec();
    all.push(target.to_str().unwrap());
    all.extend(["-d", "5"]);
    let run = probe_within(20, &all);
    assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    assert_nothing_attached();
}

#[test]
fn output_files_never_go_through_another_users_symlink() {
    // A nobody-owned symlink to a root file must never make an output overwrite the root file
    // (this VM has fs.protected_symlinks=0, so nothing else stops it).
    let dir = out_dir().join(format!("symlinks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let precious = dir.join("precious.txt");
    std::fs::write(&precious, "root's own file").unwrap();
    for (option, name) in
        [("--hdr-log", "link.hdr"), ("--heatmap", "heat.svg"), ("--plot", "plot.svg"), ("-o", "link.json")]
    {
        let link = dir.join(name);
        std::os::unix::fs::symlink(&precious, &link).unwrap();
        let c_link = std::ffi::CString::new(link.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::lchown(c_link.as_ptr(), 65534, 65534) }, 0);
        let message = format!(
            "probe: {option} {}: it is a symlink owned by another user (uid 65534), which probe never writes through",
            link.display()
        );
        assert_refused_soon(&["latency", "--func", "ToString", option, link.to_str().unwrap()], &message);
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "root's own file", "{option}");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "{option}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_files_are_never_written_into_special_files() {
    // `--hdr-log /proc/sys/kernel/hostname` would rename the host; /proc/self/comm (probe's own
    // thread name) stands in for it here. Each is refused before anything is attached.
    assert_refused_soon(
        &["latency", "--func", "ToString", "--hdr-log", "/proc/self/comm"],
        "--hdr-log /proc/self/comm: cannot create the file",
    );
    assert_refused_soon(
        &["latency", "--func", "ToString", "--hdr-log", "/dev/full"],
        "--hdr-log /dev/full: it is not a regular file; give the path of a regular file",
    );
    let fifo = out_dir().join(format!("fifo-{}.svg", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    for option in ["--plot", "-o"] {
        let message = format!("{option} {}: it is not a regular file; give the path of a regular file", fifo.display());
        assert_refused_soon(&["latency", "--func", "ToString", option, fifo.to_str().unwrap()], &message);
    }
    assert_refused_soon(
        &["latency", "--func", "ToString", "-o", "/dev/null"],
        "-o /dev/null: it is not a regular file; give the path of a regular file",
    );
    std::fs::remove_file(&fifo).unwrap();
}

/// `--json -c CMD | jq`: probe's stdout carries only its JSON; the command's own stdout goes to
/// stderr, still on the terminal.
#[test]
fn json_on_stdout_is_never_mixed_with_the_commands_output() {
    let target = target("tostring");
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
    let target = target("tostring");
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
