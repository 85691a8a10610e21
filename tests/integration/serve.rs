//! `--serve`: a real Prometheus (Debian's package, scripts/setup.sh) scrapes `probe latency
//! --serve` on loopback, and its query API returns the target's exact call count and a median
//! inside the right bucket; the raw /metrics text passes `promtool check metrics`; argdist
//! values land under the right `le`; a busy or invalid address is bad input.
use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ends the process however the test ends (a failed assertion included).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Body of `GET path` as HTTP/1.0 (never chunked), or None if nothing listens yet.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Polls `check` every 200 ms until it returns Some, for at most a minute (slow CI included).
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus {
    _process: KillOnDrop,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on loopback with a temporary config and data directory, scraping
    /// `target_port` every second, and waits until it is ready.
    fn start(target_port: u16) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("probe-serve-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: probe\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let process = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus is installed (scripts/setup.sh test)");
        let prometheus = Prometheus { _process: KillOnDrop(process), port, dir };
        wait_for("Prometheus to be ready", || http_get(port, "/-/ready").filter(|(s, _)| *s == 200));
        prometheus
    }

    /// The single sample of an instant query, or None while it has no result.
    fn query(&self, promql: &str) -> Option<f64> {
        let (status, body) = http_get(self.port, &format!("/api/v1/query?query={}", percent_encode(promql)))?;
        assert_eq!(status, 200, "{promql}: {body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        let result = reply["data"]["result"].as_array().unwrap();
        assert!(result.len() <= 1, "{promql}: one series expected: {body}");
        result.first().map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads probe's stdout (its JSON tables) until the final table.
fn read_until_final_table(stdout: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "probe's stdout ended early: {all}");
        all.push_str(&line);
        if line.starts_with('{') && line.contains(r#""kind":"final""#) {
            return all;
        }
    }
}

/// Reads lines until one starts with `prefix`; returns them all.
fn read_until(reader: &mut impl BufRead, prefix: &str) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "ended before a line starting {prefix:?}: {all}");
        all.push_str(&line);
        if line.starts_with(prefix) {
            return all;
        }
    }
}

/// `(le, cumulative count)` of every `NAME_bucket` sample in an exposition text.
fn buckets(text: &str, name: &str) -> Vec<(f64, u64)> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .map(|l| {
            let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            (le, l.rsplit(' ').next().unwrap().parse().unwrap())
        })
        .collect()
}

fn sample(text: &str, name: &str) -> String {
    let line =
        text.lines().find(|l| l.starts_with(&format!("{name}{{"))).unwrap_or_else(|| panic!("no {name}: {text}"));
    line.rsplit(' ').next().unwrap().to_string()
}

fn promtool_check(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool comes with the prometheus package");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics: {said}\n{text}");
    assert_eq!(said.trim(), "", "promtool has remarks: {said}");
}

#[test]
fn prometheus_scrapes_exact_counts_and_the_median_bucket() {
    let target = target("latency");
    let port = free_port();
    let prometheus = Prometheus::start(port);
    let cmd = format!("{} -mode sleep", target.display());
    let addr = format!("127.0.0.1:{port}");
    let (child, mut stderr) =
        probe_background(&["latency", "--func", "Sleep2ms", "--unit", "ns", "--json", "--serve", &addr, "-c", &cmd]);
    let mut probe = KillOnDrop(child);
    let mut stdout = BufReader::new(probe.0.stdout.take().unwrap());
    let printed = read_until_final_table(&mut stdout);
    // With probe's JSON on stdout, the command's own output is on stderr.
    let calls = reported_calls(&read_until(&mut stderr, "Sleep2ms calls: "), "Sleep2ms");
    assert_eq!(calls, 200);
    let table = json_tables(&printed).pop().unwrap();
    assert_eq!(table["count"].as_u64().unwrap(), calls);
    let p50_ns = table["percentiles"]["p50"].as_f64().unwrap() as u64;
    assert!(p50_ns >= 2_000_000, "the target sleeps 2 ms per call: p50 {p50_ns} ns");

    // probe outlives its target; Prometheus gets the final totals at its next scrapes.
    let series = r#"function="main.Sleep2ms",job="probe""#;
    let count = wait_for("Prometheus to scrape the final count", || {
        prometheus.query(&format!("probe_latency_seconds_count{{{series}}}")).filter(|&c| c == calls as f64)
    });
    assert_eq!(count, calls as f64);
    // histogram_quantile interpolates inside the bucket holding the median call: the log2
    // bucket of nanoseconds that holds probe's own p50 (from its finer buckets).
    let median =
        prometheus.query(&format!("histogram_quantile(0.5, probe_latency_seconds_bucket{{{series}}})")).unwrap();
    let k = 63 - p50_ns.leading_zeros();
    let (low, high) = (((1u64 << k) - 1) as f64 / 1e9, ((1u64 << (k + 1)) - 1) as f64 / 1e9);
    assert!(low <= median && median <= high, "median {median} s outside the bucket ({low}, {high}] of p50 {p50_ns} ns");
    assert_eq!(prometheus.query(&format!("probe_latency_abandoned_total{{{series}}}")), Some(0.0));

    // The raw text: valid exposition, cumulative buckets ending at the exact count.
    let (status, text) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    promtool_check(&text);
    let b = buckets(&text, "probe_latency_seconds");
    assert_eq!(b.len(), 43);
    assert!(b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{text}");
    assert_eq!(b.last().unwrap(), &(f64::INFINITY, calls));
    assert_eq!(sample(&text, "probe_latency_seconds_count"), calls.to_string());
    let labels = format!(r#"{{function="main.Sleep2ms",binary="{}",pid=""#, target.canonicalize().unwrap().display());
    assert!(text.contains(&labels), "{text}");
    let sum: f64 = sample(&text, "probe_latency_seconds_sum").parse().unwrap();
    assert!(sum >= calls as f64 * 0.002, "each call sleeps 2 ms: sum {sum} s");

    interrupt(&probe.0);
    let status = probe.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_nothing_attached();
}

#[test]
fn argdist_values_land_under_the_right_le() {
    let target = target("tostring");
    let port = free_port();
    let cmd = format!("{} -rounds 2", target.display());
    let addr = format!("127.0.0.1:{port}");
    let (child, mut stderr) =
        probe_background(&["argdist", "--func", "ToString", "--arg", "0", "--serve", &addr, "-c", &cmd]);
    let mut probe = KillOnDrop(child);
    let mut line = String::new();
    while !line.contains("the target exited") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "probe ended without serving the final numbers");
    }
    let (status, text) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    promtool_check(&text);
    let values: Vec<i64> = (0..2).flat_map(|_| -500..=499).collect();
    assert_eq!(sample(&text, "probe_value_count"), "2000");
    assert_eq!(sample(&text, "probe_value_sum").parse::<f64>().unwrap(), -1000.0);
    assert_eq!(sample(&text, "probe_value_unreadable_total"), "0");
    let b = buckets(&text, "probe_value");
    assert_eq!(b.len(), 129, "every signed log2 bucket, then +Inf");
    for (le, cumulative) in b {
        let expected = values.iter().filter(|&&v| v as f64 <= le).count() as u64;
        assert_eq!(cumulative, expected, "le={le}");
    }
    assert!(text.contains(&format!(r#"measured="arg0",binary="{}",pid=""#, target.display())), "{text}");
    interrupt(&probe.0);
    assert_eq!(probe.0.wait().unwrap().code(), Some(0));
    assert_nothing_attached();
}

/// Scrapes the final numbers of `probe ARGS --serve` once its target has exited.
fn final_metrics(args: &[&str]) -> String {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (child, mut stderr) = probe_background(&[args, &["--serve", &addr]].concat());
    let mut probe = KillOnDrop(child);
    let mut line = String::new();
    while !line.contains("the target exited") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "probe ended without serving the final numbers");
    }
    let (status, text) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    promtool_check(&text);
    interrupt(&probe.0);
    assert_eq!(probe.0.wait().unwrap().code(), Some(0));
    text
}

#[test]
fn unsigned_values_and_strings_that_are_not_utf8_are_exported_as_they_are() {
    let target = target("ctypes");
    let t = target.to_string_lossy();
    // big(v): 3 calls with 2^64-1, 2 with 7. An unsigned histogram's last finite bucket is 2^64-1.
    let text = final_metrics(&["argdist", "--func", "big", "--arg", "v", "-c", &t]);
    let b = buckets(&text, "probe_value");
    assert_eq!(b.len(), 66, "a bucket from 0 up per power of two, 2^64-1, +Inf: {b:?}");
    assert_eq!(b[3], (7.0, 2));
    assert_eq!(b[b.len() - 3], ((i64::MAX as u64) as f64, 2), "nothing between 7 and 2^63");
    assert_eq!(b[b.len() - 2], (u64::MAX as f64, 5));
    assert_eq!(sample(&text, "probe_value_sum").parse::<f64>().unwrap(), 3.0 * u64::MAX as f64 + 14.0);
    // label(s): "\xff" 3 times, "\xfe" twice: two series, their bytes escaped.
    let text = final_metrics(&["argdist", "--func", "label", "--arg", "s", "--count", "-c", &t]);
    let calls: Vec<&str> = text.lines().filter(|l| l.starts_with("probe_value_calls_total{")).collect();
    assert_eq!(calls.len(), 2, "{text}");
    assert!(calls[0].contains(r#"value="\\xff"} 3"#) && calls[1].contains(r#"value="\\xfe"} 2"#), "{calls:?}");
    assert_nothing_attached();
}

/// Bad input, and the target never ran.
fn assert_rejected_unstarted(run: Run, needle: &str) {
    assert!(!run.stdout.contains("calls:"), "the target must not run: {}", run.stdout);
    assert_rejected(run, needle);
}

#[test]
fn busy_address_is_bad_input_with_nothing_attached() {
    let target = target("latency");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cmd = format!("{} -mode sleep", target.display());
    let run = probe(&["latency", "--func", "Sleep2ms", "--serve", &addr, "-c", &cmd]);
    assert_rejected_unstarted(run, &format!("--serve {addr}: cannot listen there (Address already in use"));
}

#[test]
fn invalid_address_is_bad_input() {
    let target = target("tostring");
    let run =
        probe(&["argdist", "--func", "ToString", "--arg", "0", "--serve", "nonsense", "-c", &target.to_string_lossy()]);
    assert_rejected_unstarted(
        run,
        "--serve nonsense: cannot listen there (invalid socket address); give a free HOST:PORT",
    );
}

#[test]
fn each_scrape_answers_with_the_maps_as_they_are_then() {
    // Issue 12: /metrics lagged the maps by up to a drain interval (here -i 600: ten minutes).
    let target = private_copy(&target("tostring"), "scrape");
    let path = target.to_string_lossy().to_string();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (child, stderr) =
        probe_background(&["argdist", "--func", "ToString", "--arg", "0", "-i", "600", "--serve", &addr, &path]);
    // Scrape after each run of the target; assert once probe has been stopped.
    let mut scrapes = Vec::new();
    for _ in 0..2 {
        let out = Command::new(&target).output().unwrap();
        let calls = String::from_utf8_lossy(&out.stdout).into_owned();
        let text = http_get(port, "/metrics").map(|(_, text)| text).unwrap_or_default();
        scrapes.push((calls, text));
    }
    interrupt(&child);
    let run = finish(child, stderr);
    std::fs::remove_file(&target).ok();
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (round, (calls, text)) in scrapes.iter().enumerate() {
        let round = round as u64 + 1;
        assert_eq!(reported_calls(calls, "ToString"), 1000);
        assert_eq!(sample(text, "probe_value_count"), (1000 * round).to_string(), "scrape after round {round}");
        assert_eq!(sample(text, "probe_value_sum").parse::<f64>().unwrap(), -500.0 * round as f64);
    }
    // The scrapes' drains belong to the one interval still open: it is printed at the end.
    let tables: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("main.ToString arg0:")).collect();
    assert_eq!(tables.len(), 2, "the last interval and the final table: {}", run.stdout);
    assert!(tables.iter().all(|l| l.contains("count:2000")), "{tables:?}");
    assert_nothing_attached();
}

/// Issue 24: a program named through a symlink (`/usr/bin/redis-server` -> `redis-check-rdb`)
/// is labelled as the user named it, the tracing line shows the file it leads to, and
/// `--serve :PORT` listens on every interface, as Prometheus users write it.
#[test]
fn a_symlinked_program_keeps_its_name_and_colon_port_means_every_interface() {
    let target = private_copy(&target("cvalues"), "linked");
    let link = target.with_file_name(format!("linked-name-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(target.file_name().unwrap(), &link).unwrap();
    let port = free_port();
    let mut probe = KillOnDrop(
        Command::new(probe_bin())
            .args(["latency", "--func", "work", "--serve", &format!(":{port}"), &link.to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(probe.0.stderr.take().unwrap());
    let started = read_until(&mut stderr, "probe: serving metrics at ");
    let running = format!("in every process running {} ({})", link.display(), target.display());
    assert!(started.contains(&running), "{started}");
    assert!(started.contains(&format!(":{port}/metrics")), "{started}");
    let out = Command::new(&link).arg("1").output().unwrap();
    assert_eq!(reported_calls(&String::from_utf8_lossy(&out.stdout), "work"), 1000);
    let (status, text) = http_get(port, "/metrics").expect("listening on 127.0.0.1 too");
    assert_eq!(status, 200);
    let series =
        format!(r#"probe_latency_seconds_count{{function="work",binary="{}",pid="all"}} 1000"#, link.display());
    assert!(text.lines().any(|l| l == series), "no `{series}` in\n{text}");
    interrupt(&probe.0);
    let status = probe.0.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&target).unwrap();
    assert_nothing_attached();
}
