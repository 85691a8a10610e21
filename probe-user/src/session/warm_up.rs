//! Uprobe registration kept warm while probe prepares. Linux registers a uprobe under the write
//! side of a per-CPU rw-semaphore (`dup_mmap_sem`, which every fork reads); taking it after a
//! quiet spell waits for an RCU grace period, 6-25 ms here, and the semaphore stays ready for
//! writers only until a grace period or two after the last registration. So from the start
//! of a command a helper process registers a uprobe on a function of probe's own that never
//! runs, and again every `REARM` until the sites are attached: the grace period passes while
//! probe reads the target and the verifier checks the programs, not after. (bpftrace waits.)
//!
//! A process of its own, not a thread: removing a uprobe waits for two more grace periods
//! (tens of milliseconds each), which the helper's exit pays, not probe's. Its uprobes are
//! perf events of the `uprobe` PMU for the helper alone, never hit. Nothing depends on it:
//! where it cannot register, attaching just waits as before.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

/// Under the ~20 ms the semaphore stays ready after a registration.
const REARM: Duration = Duration::from_millis(8);
/// At most this many (about half a second): a start slower than that waits once more.
const MAX_REGISTRATIONS: usize = 64;

/// The write end of the pipe the helper watches: closed by `stop` (or by probe's exit).
static STOP: Mutex<Option<OwnedFd>> = Mutex::new(None);
/// The helper's pid, for the test.
static HELPER: Mutex<Option<i32>> = Mutex::new(None);

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

/// Starts the helper (a grandchild, so that nobody has to wait for it); it stops by itself
/// after `MAX_REGISTRATIONS`, at `stop`, or when probe exits.
pub fn start() {
    let Some(pmu) = uprobe_pmu() else { return };
    let (Ok(exe), Ok(offset)) = (super::own::executable(), super::own::file_offset_of(never_runs as *const () as u64))
    else {
        return;
    };
    let Ok(path) = std::ffi::CString::new(exe.into_os_string().into_encoded_bytes()) else { return };
    // Everything the helper uses is made before fork: after it, only system calls.
    let attr = PerfEventAttr {
        kind: pmu,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        flags: DISABLED,
        config1: path.as_ptr() as u64,
        config2: offset,
        ..Default::default()
    };
    let mut ends = [0; 2];
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    let (watch, keep) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    let mut pids = [0; 2];
    if unsafe { libc::pipe2(pids.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    let (pid_read, pid_write) = unsafe { (OwnedFd::from_raw_fd(pids[0]), OwnedFd::from_raw_fd(pids[1])) };
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe {
            let helper = libc::fork();
            if helper == 0 {
                register_until_stopped(&attr, ends[0], ends[1]);
            }
            libc::write(pid_write.as_raw_fd(), (&helper as *const i32).cast(), 4);
            libc::_exit(0);
        }
    }
    if child < 0 {
        return;
    }
    drop(pid_write);
    drop(watch);
    let mut helper = 0i32;
    unsafe {
        libc::waitpid(child, std::ptr::null_mut(), 0);
        libc::read(pid_read.as_raw_fd(), (&mut helper as *mut i32).cast(), 4);
    }
    if let (Ok(mut stop), Ok(mut pid)) = (STOP.lock(), HELPER.lock()) {
        *stop = Some(keep);
        *pid = (helper > 0).then_some(helper);
    }
}

/// The helper: its standard files on /dev/null and every other file closed (probe's output
/// must not stay open in it), then a registration every `REARM` until the pipe `watch` hangs
/// up or says anything.
unsafe fn register_until_stopped(attr: &PerfEventAttr, watch: i32, probe_end: i32) -> ! {
    libc::close(probe_end);
    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
    if null >= 0 {
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
    }
    let watch = match libc::dup2(watch, 3) {
        3 => 3,
        _ => watch,
    };
    // close_range (Linux 5.9+); without it the files stay open until the helper ends.
    libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
    let mut wait = libc::pollfd { fd: watch, events: libc::POLLIN, revents: 0 };
    for _ in 0..MAX_REGISTRATIONS {
        // pid 0, cpu -1: this process, on any CPU; no group.
        let (pid, cpu, group): (libc::c_int, libc::c_int, libc::c_int) = (0, -1, -1);
        if libc::syscall(libc::SYS_perf_event_open, attr as *const PerfEventAttr, pid, cpu, group, FD_CLOEXEC) < 0 {
            break;
        }
        if libc::poll(&mut wait, 1, REARM.as_millis() as i32) != 0 {
            break;
        }
    }
    libc::_exit(0)
}

/// Ends the warm-up: the sites are attached.
pub fn stop() {
    if let Ok(mut stop) = STOP.lock() {
        stop.take();
    }
}

/// The `uprobe` PMU's perf event type (Linux 4.17+), if the kernel has it.
fn uprobe_pmu() -> Option<u32> {
    std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type").ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    fn perf_events(pid: i32) -> usize {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
        fds.flatten()
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:[perf_event]"))
            .count()
    }

    /// Gone, or a zombie waiting for whoever adopted it.
    fn ended(pid: i32) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.is_empty() || status.contains("State:\tZ")
    }

    /// The helper registers uprobes again and again until stopped, then ends; it holds none of
    /// probe's files (tests run as root).
    #[test]
    fn the_helper_registers_again_and_again_until_stopped() {
        assert!(super::uprobe_pmu().is_some(), "this kernel has no uprobe PMU");
        super::start();
        let helper = super::HELPER.lock().unwrap().expect("the helper started");
        let deadline = Instant::now() + Duration::from_secs(5);
        while perf_events(helper) < 3 {
            assert!(Instant::now() < deadline, "no uprobe registered again within 5 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        let files: Vec<String> = std::fs::read_dir(format!("/proc/{helper}/fd"))
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_link(e.path()).unwrap().to_string_lossy().into_owned())
            .filter(|t| t != "anon_inode:[perf_event]" && t != "/dev/null" && !t.starts_with("pipe:"))
            .collect();
        assert!(files.is_empty(), "the helper holds {files:?}");
        super::stop();
        // Left running, it would make MAX_REGISTRATIONS (one every REARM) before ending.
        let (deadline, mut most) = (Instant::now() + Duration::from_secs(10), 0);
        while !ended(helper) {
            most = most.max(perf_events(helper));
            assert!(Instant::now() < deadline, "the helper still runs 10 s after stop");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(most < super::MAX_REGISTRATIONS / 2, "{most} registrations: it went on after stop");
    }
}
