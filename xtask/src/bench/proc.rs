//! Child processes: tools and workloads with their output read as it comes, so that every wait
//! can time out and nothing outlives a failed measurement.
use crate::check;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// A child whose stdout and stderr lines are read by two threads, so its pipes never fill and
/// every wait can time out. Killed when dropped, unless it has exited: a failed measurement
/// leaves no tool attached and no workload running.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub started: Instant,
    pub incoming: Receiver<(Instant, String)>,
    /// Every line so far, with its time since start.
    pub transcript: Vec<(Duration, String)>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Proc> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {name} ({cmd:?})"))?;
        let (tx, incoming) = mpsc::channel();
        forward_lines(child.stdout.take().unwrap(), tx.clone());
        forward_lines(child.stderr.take().unwrap(), tx);
        Ok(Proc { name: name.to_string(), child, started, incoming, transcript: Vec::new() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time from start to the first line (on stdout or stderr) that `wanted` accepts.
    pub fn wait_for_line(&mut self, what: &str, timeout: Duration, wanted: impl Fn(&str) -> bool) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            if let Some((at, _)) = self.transcript[checked..].iter().find(|(_, l)| wanted(l)) {
                return Ok(*at);
            }
            checked = self.transcript.len();
            match self.incoming.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.record(line),
                Err(RecvTimeoutError::Timeout) => {
                    bail!("{}: no {what} after {timeout:?}{}", self.name, self.tail())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    bail!("{} exited ({status}) before {what}{}", self.name, self.tail())
                }
            }
        }
    }

    /// Waits for the exit, collects the rest of the output, and fails unless it exited with 0.
    /// Returns the time from start to exit.
    pub fn run_to_end(&mut self, timeout: Duration) -> Result<Duration> {
        let status = self.wait_exit(timeout)?;
        let took = self.started.elapsed();
        self.collect_rest();
        if !status.success() {
            bail!("{} failed ({status}){}", self.name, self.tail());
        }
        Ok(took)
    }

    /// SIGINT, as Ctrl-C would, then waits for the exit. Returns the time from signal to exit.
    pub fn interrupt_and_wait(&mut self, timeout: Duration) -> Result<Duration> {
        let sent = Instant::now();
        check(Command::new("kill").args(["-s", "INT", &self.pid().to_string()]))?;
        let status = self.wait_exit(timeout)?;
        let took = sent.elapsed();
        self.collect_rest();
        if !status.success() {
            bail!("{} failed after SIGINT ({status}){}", self.name, self.tail());
        }
        Ok(took)
    }

    /// Polls every millisecond (the resolution of the detach times).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.collect_available();
                bail!("{} still running after {timeout:?}{}", self.name, self.tail());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// After the exit: the readers end at EOF. Bounded, in case a grandchild holds the pipes.
    pub fn collect_rest(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(line) = self.incoming.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.record(line);
        }
    }

    pub fn collect_available(&mut self) {
        while let Ok(line) = self.incoming.try_recv() {
            self.record(line);
        }
    }

    pub fn record(&mut self, (at, line): (Instant, String)) {
        self.transcript.push((at.saturating_duration_since(self.started), line));
    }

    pub fn lines(&self) -> Vec<String> {
        self.transcript.iter().map(|(_, l)| l.clone()).collect()
    }

    /// The last lines of output, for error messages (stderr says why a tool failed).
    pub fn tail(&self) -> String {
        let last: Vec<&str> =
            self.transcript.iter().rev().map(|(_, l)| l.trim()).filter(|l| !l.is_empty()).take(2).collect();
        if last.is_empty() {
            String::new()
        } else {
            format!(": {}", last.into_iter().rev().collect::<Vec<_>>().join(" / "))
        }
    }

    /// VmHWM: the most resident memory the process has used so far.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM")?;
        Ok(line.split_whitespace().nth(1).context("VmHWM value")?.parse()?)
    }

    /// The share of one core that the process uses (user + system) over the next `window`.
    pub fn cpu_percent_over(&self, window: Duration) -> Result<f64> {
        let before = self.cpu_ticks()?;
        let start = Instant::now();
        std::thread::sleep(window);
        let ticks = self.cpu_ticks()? - before;
        let seconds = ticks as f64 / clock_ticks_per_second() as f64;
        Ok(100.0 * seconds / start.elapsed().as_secs_f64())
    }

    /// utime + stime of all the process's threads, in clock ticks.
    pub fn cpu_ticks(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // The command name may contain spaces; the fields after it start with the state (field 3),
        // so utime and stime (fields 14 and 15) are the 12th and 13th after it.
        let after_name = &stat[stat.rfind(')').context("/proc/PID/stat")? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |i: usize| -> Result<u64> { Ok(fields.get(i).context("/proc/PID/stat field")?.parse()?) };
        Ok(field(11)? + field(12)?)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends each line of `stream` with the time it was read (so waits see when it really came).
fn forward_lines(stream: impl Read + Send + 'static, tx: Sender<(Instant, String)>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
}

/// First line of a command's stdout, or "unknown".
pub fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// The unit of utime and stime in /proc/PID/stat.
pub fn clock_ticks_per_second() -> u64 {
    first_line("getconf", &["CLK_TCK"]).parse().unwrap_or(100)
}
