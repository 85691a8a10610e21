//! Uprobe registration kept warm while probe prepares. Linux registers a uprobe under the write
//! side of a per-CPU rw-semaphore (`dup_mmap_sem`, which every fork reads); taking it after a
//! quiet spell waits for an RCU grace period, 6-25 ms here, and the semaphore stays ready for
//! writers only until a grace period or two after the last registration. So from the start
//! of a command a thread registers a uprobe on a function of probe's own that never runs, and
//! again every `REARM` until the sites are attached: the grace period passes while probe reads
//! the target and the verifier checks the programs, not after. (bpftrace waits for it.)
//!
//! The uprobes are perf events of the `uprobe` PMU for probe's process alone; they are never
//! hit, and go when probe exits (closing one here would block for two more grace periods).
//! Nothing depends on this: where it cannot register, attaching just waits as before.
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Under the ~20 ms the semaphore stays ready after a registration.
const REARM: Duration = Duration::from_millis(8);
/// At most this many (about half a second): a start slower than that waits once more.
const MAX_REGISTRATIONS: usize = 64;

static STOP: AtomicBool = AtomicBool::new(false);

/// `struct perf_event_attr` up to `config2` (`PERF_ATTR_SIZE_VER1`, which every kernel takes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    /// The uprobe PMU's file path.
    config1: u64,
    /// Its file offset.
    config2: u64,
}

/// `perf_event_attr.flags`: bit 0, created disabled (it never counts anything).
const DISABLED: u64 = 1;

/// `PERF_FLAG_FD_CLOEXEC`.
const FD_CLOEXEC: libc::c_ulong = 8;

/// The never-run function the warm-up uprobes sit on.
#[inline(never)]
extern "C" fn never_runs() {
    std::hint::black_box(());
}

/// Starts the warm-up thread; stops by itself after `MAX_REGISTRATIONS`, or at `stop`.
pub fn start() {
    let Some(pmu) = uprobe_pmu() else { return };
    let (Ok(exe), Ok(offset)) = (super::own::executable(), super::own::file_offset_of(never_runs as *const () as u64))
    else {
        return;
    };
    let Ok(path) = std::ffi::CString::new(exe.into_os_string().into_encoded_bytes()) else { return };
    let _ = std::thread::Builder::new().name("warm-up".into()).spawn(move || {
        let attr = PerfEventAttr {
            kind: pmu,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            flags: DISABLED,
            config1: path.as_ptr() as u64,
            config2: offset,
            ..Default::default()
        };
        let mut registered = Vec::with_capacity(MAX_REGISTRATIONS);
        while !STOP.load(Ordering::Relaxed) && registered.len() < MAX_REGISTRATIONS {
            // pid 0, cpu -1: this process, on any CPU; no group.
            let (pid, cpu, group): (libc::c_int, libc::c_int, libc::c_int) = (0, -1, -1);
            let fd = unsafe {
                libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfEventAttr, pid, cpu, group, FD_CLOEXEC)
            };
            if fd < 0 {
                break;
            }
            registered.push(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            std::thread::sleep(REARM);
        }
        std::mem::forget(registered);
    });
}

/// Ends the warm-up: the sites are attached.
pub fn stop() {
    STOP.store(true, Ordering::Relaxed);
}

/// The `uprobe` PMU's perf event type (Linux 4.17+), if the kernel has it.
fn uprobe_pmu() -> Option<u32> {
    std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type").ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    fn perf_events() -> usize {
        let fds = std::fs::read_dir("/proc/self/fd").unwrap();
        fds.flatten()
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:[perf_event]"))
            .count()
    }

    /// The thread registers uprobes until stopped, then no more (tests run as root).
    #[test]
    fn registers_again_and_again_until_stopped() {
        assert!(super::uprobe_pmu().is_some(), "this kernel has no uprobe PMU");
        let before = perf_events();
        super::start();
        let deadline = Instant::now() + Duration::from_secs(5);
        while perf_events() < before + 3 {
            assert!(Instant::now() < deadline, "no uprobe registered again within 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        super::stop();
        std::thread::sleep(super::REARM * 3);
        let stopped = perf_events();
        std::thread::sleep(super::REARM * 3);
        assert_eq!(perf_events(), stopped, "registered after stop");
        assert!(stopped - before <= super::MAX_REGISTRATIONS);
    }
}
