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
//! uprobe_multi links (Linux 6.6+) of an empty program for the helper alone, never hit: perf
//! events of the `uprobe` PMU would do too, but Linux removes those holding the global
//! `event_mutex` through the grace periods, stalling every other tool's probes meanwhile.
//! Nothing depends on it: where it cannot register, attaching just waits as before.
use crate::multi_link::MultiPoints;
use std::mem::size_of;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

/// Under the ~20 ms the semaphore stays ready after a registration.
const REARM: Duration = Duration::from_millis(8);
/// At most this many (about half a second): a start slower than that waits once more.
const MAX_REGISTRATIONS: usize = 64;

/// The write end of the pipe the helper watches: closed by `stop` (or by probe's exit).
static STOP: Mutex<Option<OwnedFd>> = Mutex::new(None);
/// The helper's pid, until it is collected.
static HELPER: Mutex<Option<i32>> = Mutex::new(None);

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_KPROBE: u32 = 2;
/// `r0 = 0; exit`.
const EMPTY_PROGRAM: [u64; 2] = [0xb7, 0x95];

/// The never-run function the warm-up uprobes sit on.
#[inline(never)]
extern "C" fn never_runs() {
    std::hint::black_box(());
}

/// Starts the helper, a child that `reap` collects; it stops by itself after
/// `MAX_REGISTRATIONS`, at `stop`, or when probe exits. Without the privileges to load a
/// program there is nothing to warm: no helper.
pub fn start() {
    if !super::privileged() {
        return;
    }
    let (Ok(exe), Ok(offset)) = (super::own::executable(), super::own::file_offset_of(never_runs as *const () as u64))
    else {
        return;
    };
    // Everything the helper uses is made before fork: after it, only system calls (and the
    // link's small buffers, which glibc's fork-safe malloc gives).
    let program = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_KPROBE,
        insn_cnt: EMPTY_PROGRAM.len() as u32,
        insns: EMPTY_PROGRAM.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        prog_name: *b"probe_warm_up\0\0\0",
        expected_attach_type: crate::multi_link::BPF_TRACE_UPROBE_MULTI,
        ..Default::default()
    };
    let mut ends = [0; 2];
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    let (watch, keep) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    let helper = unsafe { libc::fork() };
    if helper == 0 {
        unsafe { register_until_stopped(&program, &exe, offset, ends[0], ends[1]) };
    }
    drop(watch);
    if helper < 0 {
        return;
    }
    if let (Ok(mut stop), Ok(mut pid)) = (STOP.lock(), HELPER.lock()) {
        *stop = Some(keep);
        *pid = Some(helper);
    }
}

/// Collects the helper once it has ended (its uprobes' removal keeps it a few grace periods
/// after `stop`), without waiting; true when no helper is left. Called as probe exits: a
/// helper still ending then is left to init, which collects orphans.
pub fn reap() -> bool {
    stop();
    let Ok(mut helper) = HELPER.lock() else { return true };
    let Some(pid) = *helper else { return true };
    if unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == 0 {
        return false; // still ending
    }
    *helper = None;
    true
}

/// The helper: its standard files on /dev/null and every other file closed (probe's output
/// must not stay open in it), then a registration every `REARM` until the pipe `watch` hangs
/// up or says anything.
unsafe fn register_until_stopped(
    program: &ProgLoadAttr,
    exe: &std::path::Path,
    offset: u64,
    watch: i32,
    probe_end: i32,
) -> ! {
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
    let fd = libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, program as *const ProgLoadAttr, size_of::<ProgLoadAttr>());
    if fd < 0 {
        libc::_exit(0);
    }
    let program = BorrowedFd::borrow_raw(fd as i32);
    let points = [(offset, 0)];
    let only_here = MultiPoints { path: exe, points: &points, on_return: false, pid: Some(libc::getpid() as u32) };
    let mut wait = libc::pollfd { fd: watch, events: libc::POLLIN, revents: 0 };
    for _ in 0..MAX_REGISTRATIONS {
        match crate::multi_link::attach(program, &only_here) {
            Ok(link) => std::mem::forget(link), // removed at the helper's exit
            Err(_) => break,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    fn links(pid: i32) -> usize {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
        fds.flatten()
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:bpf_link"))
            .count()
    }

    /// The helper registers uprobes again and again until stopped, then ends and is collected;
    /// it holds none of probe's files (tests run as root).
    #[test]
    fn the_helper_registers_again_and_again_until_stopped() {
        super::start();
        let helper = super::HELPER.lock().unwrap().expect("the helper started");
        let deadline = Instant::now() + Duration::from_secs(5);
        while links(helper) < 3 {
            assert!(Instant::now() < deadline, "no uprobe registered again within 5 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        let files: Vec<String> = std::fs::read_dir(format!("/proc/{helper}/fd"))
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_link(e.path()).unwrap().to_string_lossy().into_owned())
            .filter(|t| !t.starts_with("anon_inode:bpf") && t != "/dev/null" && !t.starts_with("pipe:"))
            .collect();
        assert!(files.is_empty(), "the helper holds {files:?}");
        super::stop();
        // Left running, it would make MAX_REGISTRATIONS (one every REARM) before ending.
        let (deadline, mut most) = (Instant::now() + Duration::from_secs(10), 0);
        while !super::reap() {
            most = most.max(links(helper));
            assert!(Instant::now() < deadline, "the helper still runs 10 s after stop");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(!std::path::Path::new(&format!("/proc/{helper}")).exists(), "reaped, yet still there");
        assert!(most < super::MAX_REGISTRATIONS / 2, "{most} registrations: it went on after stop");
    }
}
