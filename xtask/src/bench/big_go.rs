//! Section 3b: a big stripped Go program (Debian's Prometheus): `probe list` on all of it, and
//! tracing 20 functions of a running instance.
use super::measure::{Sample, EXIT_TIMEOUT};
use super::probe_json::final_tables;
use super::proc::{first_line, Proc};
use super::workloads::{Bench, ATTACH_TIMEOUT};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Issue 14's targets for a big stripped Go program.
pub const BIG_GO: &str = "/usr/bin/prometheus";
pub const BIG_LIST_TARGET_MS: f64 = 500.0;
pub const BIG_RSS_TARGET_MIB: f64 = 30.0;
pub const BIG_REPS: usize = 3;
/// 20 functions of Prometheus's HTTP server, called by its self-scrape every second.
pub const BIG_FUNCS: &[&str] = &["net/http.(*response).*", "net/http.(*conn).serve", "net/http.(*conn).readRequest"];

#[derive(Default)]
pub struct BigGo {
    /// From `probe list`'s header line: "63170 functions from .gopclntab (stripped binary)".
    pub describe: String,
    pub version: String,
    /// `probe list`: (wall ms, peak RSS MiB) per run.
    pub list: Vec<Result<(f64, f64), String>>,
    pub trace: Vec<Result<Sample, String>>,
}

pub fn measure_big_go(bench: &Bench) -> BigGo {
    let mut big = BigGo::default();
    if !Path::new(BIG_GO).exists() {
        let missing = format!("{BIG_GO} is not installed (scripts/setup.sh installs it)");
        big.list.push(Err(missing.clone()));
        big.trace.push(Err(missing));
        return big;
    }
    big.describe =
        first_line(&bench.probe.display().to_string(), &["list", BIG_GO]).split("; ").nth(1).unwrap_or("").to_string();
    // "prometheus, version 2.42.0+ds (branch: ...)" -> "Prometheus 2.42.0+ds".
    let version = first_line(BIG_GO, &["--version"]);
    big.version = version
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .map_or(version.clone(), |v| format!("Prometheus {v}"));
    for _ in 0..BIG_REPS {
        big.list.push(big_list_once(bench).map_err(|e| format!("{e:#}")));
    }
    match start_prometheus(bench) {
        Ok(prometheus) => {
            for _ in 0..BIG_REPS {
                big.trace.push(big_trace_once(bench, prometheus.pid()).map_err(|e| format!("{e:#}")));
            }
        }
        Err(e) => big.trace.push(Err(format!("{e:#}"))),
    }
    eprintln!("bench: big Go program measured");
    big
}

/// `probe list` on the whole program under GNU time: (wall ms, peak RSS MiB).
fn big_list_once(bench: &Bench) -> Result<(f64, f64)> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "bench-time %e %M"])
        .arg(&bench.probe)
        .args(["list", BIG_GO])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running /usr/bin/time (GNU time)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find_map(|l| l.strip_prefix("bench-time ")).context("no GNU time line")?;
    let mut fields = line.split_whitespace().map(|f| f.parse::<f64>());
    match (fields.next(), fields.next()) {
        (Some(Ok(secs)), Some(Ok(kib))) if out.status.success() => Ok((secs * 1e3, kib / 1024.0)),
        _ => bail!("probe list failed: {stderr}"),
    }
}

/// How many functions probe traced: its final JSON tables, one per function.
fn traced_functions(lines: &[String]) -> Option<u64> {
    final_tables(lines.iter().map(String::as_str)).ok().map(|tables| tables.len() as u64)
}

/// Prometheus on a free loopback port with a temporary TSDB, scraping itself every second.
fn start_prometheus(bench: &Bench) -> Result<Proc> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = bench.scratch.join("prometheus");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      \
             - targets: ['127.0.0.1:{port}']\n"
        ),
    )?;
    let proc = Proc::spawn(
        "prometheus",
        Command::new(BIG_GO)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("prometheus did not listen on port {port} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A few self-scrapes, so its HTTP server code has run once before probe attaches.
    std::thread::sleep(Duration::from_secs(2));
    Ok(proc)
}

fn big_trace_once(bench: &Bench, pid: u32) -> Result<Sample> {
    let mut args: Vec<String> = vec!["latency".into()];
    for f in BIG_FUNCS {
        args.extend(["--func".to_string(), f.to_string()]);
    }
    // --json: the final tables say how many functions were traced (one table each).
    args.extend(["-p".to_string(), pid.to_string(), "--json".to_string()]);
    let mut proc = Proc::spawn("probe", Command::new(&bench.probe).args(&args))?;
    let attached =
        proc.wait_for_line("the `probe: tracing` line", ATTACH_TIMEOUT, |l| l.starts_with("probe: tracing"))?;
    std::thread::sleep(Duration::from_secs(3));
    let peak_rss_kib = Some(proc.peak_rss_kib()?);
    let detached = proc.interrupt_and_wait(EXIT_TIMEOUT)?;
    let functions = traced_functions(&proc.lines());
    Ok(Sample { attached: Some(attached), detached: Some(detached), peak_rss_kib, functions, ..Sample::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_traced_functions_by_their_final_tables() {
        let table = |kind: &str, f: &str| {
            format!(
                r#"{{"kind":"{kind}","elapsed_s":1.0,"function":"{f}","count":3,"sum":9,"percentiles":{{"p50":3.0}}}}"#
            )
        };
        let lines = vec![
            "probe: tracing latency of a, b and 1 more in pid 1 (9 probes); Ctrl-C to end".to_string(),
            table("interval", "a"),
            table("final", "a"),
            table("final", "b"),
            table("final", "c"),
        ];
        assert_eq!(traced_functions(&lines), Some(3));
        assert_eq!(traced_functions(&lines[..1]), Some(0));
    }
}
