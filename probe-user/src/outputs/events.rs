//! `latency --slower-than` / `--events`: each call the kernel sends, one line as it comes (text,
//! or one JSON object per line with `--json`), flushed at once so a reader sees it while the
//! trace runs; at the end, per function, how many were printed and how many the ring buffer
//! could not take.
use crate::measure::counts::CountKey;
use crate::plan::events::{EventsPlan, Shown, SlotEvents};
use crate::resolve::callers::Callers;
use crate::session::EventMaps;
use crate::shared::Unit;
use anyhow::Result;
use probe_ebpf::{
    Event, EVENT_ARGS_LOST, EVENT_ARG_READ, EVENT_GOID, EVENT_RET, EVENT_STACK, EVENT_TEXT_BYTES, EVENT_TEXT_CUT,
    STACK_TRUNCATED,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How one run's events are written.
#[derive(Clone)]
pub struct EventFormat {
    pub json: bool,
    pub unit: Unit,
    /// Per slot: the function's name and what its events carry.
    pub slots: Vec<(String, SlotEvents)>,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC (what `bpf_ktime_get_ns` reads), in nanoseconds.
    pub wall_offset_ns: i128,
    /// `--stack`: the traced program, whose stacks' addresses are named.
    pub stacks_of: Option<PathBuf>,
}

impl EventFormat {
    pub fn new(
        json: bool,
        unit: Unit,
        functions: &[String],
        plan: &EventsPlan,
        program: &std::path::Path,
    ) -> EventFormat {
        let slots = functions.iter().cloned().zip(plan.slots.iter().cloned()).collect();
        let stacks_of = plan.stack.then(|| program.to_path_buf());
        EventFormat { json, unit, slots, wall_offset_ns: wall_offset_ns(), stacks_of }
    }

    /// One event as a line (with its newline); with `--stack`, its stack's functions (None:
    /// not stored) on the lines after it, or in JSON's `stack`.
    pub fn line(&self, e: &Event, stack: Option<&[String]>) -> String {
        let Some((function, slot)) = self.slots.get(e.slot as usize) else {
            return String::new();
        };
        let wall_ns = e.ktime_ns as i128 + self.wall_offset_ns;
        let value = |v: i64, shown: &Shown| -> serde_json::Value {
            if shown.unsigned {
                (v as u64).into()
            } else {
                v.into()
            }
        };
        // Each argument as JSON and as text (`?`: not read).
        let args: Vec<(&str, Option<(serde_json::Value, String)>)> = slot
            .args
            .iter()
            .enumerate()
            .map(|(i, shown)| {
                let read = e.flags & (EVENT_ARG_READ << i) != 0 && e.flags & EVENT_ARGS_LOST == 0;
                let shown_value = || {
                    if shown.text {
                        let len = (e.text_len[i] as usize).min(EVENT_TEXT_BYTES);
                        let cut = e.flags & (EVENT_TEXT_CUT << i) != 0;
                        let text = CountKey::Text { bytes: e.text[i][..len].to_vec(), truncated: cut };
                        (text.json(), text.to_string())
                    } else {
                        let v = value(e.args[i], shown);
                        let text = v.to_string();
                        (v, text)
                    }
                };
                (shown.label.as_str(), read.then(shown_value))
            })
            .collect();
        let ret = slot
            .ret
            .as_ref()
            .map(|shown| (shown.label.as_str(), (e.flags & EVENT_RET != 0).then(|| value(e.ret, shown))));
        let goid = (slot.go && e.flags & EVENT_GOID != 0).then_some(e.goid);
        if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("kind".into(), "event".into());
            obj.insert("time".into(), rfc3339(wall_ns).into());
            obj.insert("function".into(), function.clone().into());
            obj.insert("pid".into(), e.pid.into());
            obj.insert("tid".into(), e.tid.into());
            if slot.go {
                obj.insert("goroutine".into(), goid.into());
            }
            obj.insert("latency_ns".into(), e.latency_ns.into());
            obj.insert("latency".into(), self.unit.from_ns(e.latency_ns).into());
            obj.insert("unit".into(), self.unit.suffix().into());
            if !slot.args.is_empty() {
                let mut a = serde_json::Map::new();
                for (label, v) in &args {
                    a.insert(label.to_string(), v.as_ref().map_or(serde_json::Value::Null, |(json, _)| json.clone()));
                }
                obj.insert("args".into(), a.into());
                // The string arguments longer than the bytes shown.
                let cut: Vec<&str> = (slot.args.iter().enumerate())
                    .filter(|(i, shown)| shown.text && e.flags & (EVENT_TEXT_CUT << i) != 0)
                    .map(|(_, shown)| shown.label.as_str())
                    .collect();
                if !cut.is_empty() {
                    obj.insert("cut".into(), cut.into());
                }
            }
            if let Some((label, v)) = &ret {
                obj.insert("ret".into(), serde_json::json!({ *label: v }));
            }
            if self.stacks_of.is_some() {
                obj.insert("stack".into(), stack.map(|s| s.to_vec()).into());
            }
            let mut line = serde_json::Value::Object(obj).to_string();
            line.push('\n');
            return line;
        }
        let mut line =
            format!("{} {} {} pid={} tid={}", clock(wall_ns), function, self.unit.format(e.latency_ns), e.pid, e.tid);
        if slot.go {
            match goid {
                Some(g) => line.push_str(&format!(" goroutine={g}")),
                None => line.push_str(" goroutine=?"),
            }
        }
        for (label, v) in &args {
            line.push_str(&format!(" {label}={}", v.as_ref().map_or("?", |(_, text)| text.as_str())));
        }
        if let Some((label, v)) = &ret {
            line.push_str(&format!(" => {label}={}", v.as_ref().map_or("?".to_string(), |v| v.to_string())));
        }
        line.push('\n');
        if self.stacks_of.is_some() {
            // Indented under the call, its caller first, as bpftrace prints `ustack`.
            match stack {
                Some(frames) => frames.iter().for_each(|f| line.push_str(&format!("    {f}\n"))),
                None => line.push_str("    [stack not stored: more distinct stacks than probe keeps]\n"),
            }
        }
        line
    }

    /// The end of the run: per function, the events printed and those the buffer dropped.
    pub fn summary(&self, printed: &[u64], dropped: &[u64]) -> String {
        let mut out = String::new();
        for (i, (function, _)) in self.slots.iter().enumerate() {
            let (p, d) = (printed.get(i).copied().unwrap_or(0), dropped.get(i).copied().unwrap_or(0));
            if self.json {
                out.push_str(
                    &serde_json::json!({"kind": "events", "function": function, "printed": p, "dropped": d})
                        .to_string(),
                );
                out.push('\n');
            } else {
                out.push_str(&format!("events of {function}: {p} printed, {d} dropped (ring buffer full)\n"));
            }
        }
        out
    }
}

/// Reads the ring buffer on a thread of its own until stopped, writing each event to stdout.
pub struct EventReader {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(Vec<u64>, EventMaps)>>,
}

impl EventReader {
    pub fn start(mut maps: EventMaps, format: EventFormat) -> EventReader {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let mut printed = vec![0u64; format.slots.len()];
            // Named while the processes run, on this thread, as each event comes.
            let mut callers = format.stacks_of.as_deref().map(Callers::new);
            let fd = maps.ring.as_raw_fd();
            let mut out = std::io::stdout();
            let mut broken = false;
            loop {
                // The last pass after the stop: everything sent before it is read.
                let last = stopping.load(Ordering::Acquire);
                let mut text = String::new();
                loop {
                    let e: Event = {
                        let Some(item) = maps.ring.next() else { break };
                        if item.len() < std::mem::size_of::<Event>() {
                            continue;
                        }
                        // The kernel wrote one `Event`; read it unaligned from the buffer, which
                        // takes it back here.
                        unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Event) }
                    };
                    if let Some(n) = printed.get_mut(e.slot as usize) {
                        *n += 1;
                    }
                    let stack = callers.as_mut().and_then(|callers| {
                        let frames = maps.stack_frames(e.stack).filter(|_| e.flags & EVENT_STACK != 0)?;
                        Some(callers.stack(e.pid, frames.addresses(), frames.flags & STACK_TRUNCATED != 0))
                    });
                    text.push_str(&format.line(&e, stack.as_deref()));
                    if text.len() > 1 << 16 {
                        broken |= write(&mut out, &text, broken);
                        text.clear();
                    }
                }
                if !text.is_empty() {
                    broken |= write(&mut out, &text, broken);
                }
                if last {
                    break;
                }
                let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                unsafe { libc::poll(&mut pfd, 1, 50) };
            }
            Ok((printed, maps))
        });
        EventReader { stop, thread }
    }

    /// Stops reading once everything sent so far is written; returns the events printed per
    /// slot and the maps (for the drop counts).
    pub fn finish(self) -> Result<(Vec<u64>, EventMaps)> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().map_err(|_| anyhow::anyhow!("the events reader panicked"))?
    }
}

/// Writes and flushes; returns whether stdout is closed (`| head`), after which nothing is
/// written but the events are still counted.
fn write(out: &mut std::io::Stdout, text: &str, broken: bool) -> bool {
    if broken {
        return true;
    }
    let mut lock = out.lock();
    lock.write_all(text.as_bytes()).and_then(|_| lock.flush()).is_err()
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC now.
fn wall_offset_ns() -> i128 {
    let read = |clock| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    };
    read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC)
}

/// Local time of day with microseconds, `23:10:01.123456`.
fn clock(wall_ns: i128) -> String {
    let secs = wall_ns.div_euclid(1_000_000_000) as libc::time_t;
    let micros = wall_ns.rem_euclid(1_000_000_000) / 1000;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    format!("{:02}:{:02}:{:02}.{micros:06}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// UTC, `2026-12-03T23:10:01.123456789Z`.
fn rfc3339(wall_ns: i128) -> String {
    let secs = wall_ns.div_euclid(1_000_000_000) as libc::time_t;
    let nanos = wall_ns.rem_euclid(1_000_000_000);
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::gmtime_r(&secs, &mut tm) };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_ebpf::{EventSources, MAX_EVENT_ARGS};

    fn format(json: bool) -> EventFormat {
        let slot = SlotEvents {
            sources: EventSources::NONE,
            args: vec![
                Shown { label: "n".into(), unsigned: false, text: false },
                Shown { label: "p".into(), unsigned: true, text: false },
            ],
            ret: Some(Shown { label: "ret".into(), unsigned: false, text: false }),
            go: true,
        };
        EventFormat {
            json,
            unit: Unit::Us,
            slots: vec![("main.Work".into(), slot)],
            wall_offset_ns: 0,
            stacks_of: None,
        }
    }

    fn event() -> Event {
        let mut args = [0; MAX_EVENT_ARGS];
        args[0] = -3;
        args[1] = -1;
        Event {
            ktime_ns: 1_700_000_000_123_456_789,
            latency_ns: 2_104_000,
            goid: 18,
            pid: 10,
            tid: 11,
            slot: 0,
            flags: EVENT_GOID | EVENT_RET | EVENT_ARG_READ | (EVENT_ARG_READ << 1),
            args,
            ret: 5,
            stack: 0,
            text: [[0; EVENT_TEXT_BYTES]; MAX_EVENT_ARGS],
            text_len: [0; MAX_EVENT_ARGS],
        }
    }

    #[test]
    fn an_event_is_one_json_object_with_its_fields() {
        let line = format(true).line(&event(), None);
        assert!(line.ends_with('\n') && line.lines().count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "event");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!((v["pid"].as_u64(), v["tid"].as_u64(), v["goroutine"].as_u64()), (Some(10), Some(11), Some(18)));
        assert_eq!(v["latency_ns"], 2_104_000);
        assert_eq!(v["args"]["n"], -3);
        assert_eq!(v["args"]["p"], u64::MAX);
        assert_eq!(v["ret"]["ret"], 5);
    }

    #[test]
    fn an_event_is_one_text_line_and_unread_values_are_marked() {
        let mut e = event();
        e.flags &= !(EVENT_ARG_READ << 1) & !EVENT_GOID;
        let line = format(false).line(&e, None);
        assert!(line.contains(" main.Work 2104us pid=10 tid=11 goroutine=? n=-3 p=? => ret=5\n"), "{line}");
        let summary = format(false).summary(&[7], &[2]);
        assert_eq!(summary, "events of main.Work: 7 printed, 2 dropped (ring buffer full)\n");
    }
}
