//! What the running kernel offers, probed at start-up (never guessed from the version), and the
//! attach strategy that follows from it. `probe doctor` prints the same facts.
use crate::error::user;
use anyhow::Result;
use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{is_helper_supported, is_map_supported, BpfHelper};
use std::path::Path;

/// One kernel facility probe may use, with the release that brought it (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub since: &'static str,
    pub present: bool,
    /// What probe does with it, or without it.
    pub role: &'static str,
    /// Found by loading a BPF program, which only root (or CAP_BPF) may: without, `present`
    /// is false whatever the kernel has.
    pub seen_with_bpf: bool,
}

#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r`, e.g. "6.1.0-50-cloud-amd64".
    pub release: String,
    pub uprobe_events: Feature,
    pub probe_read_user: Feature,
    pub cookies: Feature,
    pub uprobe_multi: Feature,
    pub sleepable_uprobes: Feature,
}

/// How sites get told apart in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachStrategy {
    /// One program of each kind, one uprobe_multi link per file and program with a BPF
    /// cookie per site (6.6+): attaching and detaching thousands of sites takes milliseconds.
    MultiLink,
    /// One program of each kind, a BPF cookie per attached site (5.15+).
    Cookies,
    /// One copy of the program per site with the site's cookie built in (older kernels).
    ProgramPerSite,
}

impl Kernel {
    /// Probes what every run depends on: two tiny program loads and a look at sysfs.
    pub fn detect() -> Kernel {
        raise_memlock_limit();
        let helper = |h: BpfHelper| matches!(is_helper_supported(ProgramType::KProbe, h), Ok(true));
        Kernel {
            release: Kernel::release(),
            uprobe_events: Feature {
                name: "uprobe events",
                since: "3.5 (CONFIG_UPROBE_EVENTS)",
                present: Path::new("/sys/bus/event_source/devices/uprobe").exists(),
                role: "required: every probe is a uprobe",
                seen_with_bpf: false,
            },
            probe_read_user: Feature {
                name: "bpf_probe_read_user",
                since: "5.5",
                present: helper(BpfHelper::BPF_FUNC_probe_read_user),
                role: "required: reads stack arguments and Go's goroutine stack bounds",
                seen_with_bpf: true,
            },
            cookies: Feature {
                name: "BPF cookies on uprobes",
                since: "5.15",
                present: helper(BpfHelper::BPF_FUNC_get_attach_cookie) && aya::features().bpf_perf_link(),
                role: "one program for all sites; without: one program copy per site",
                seen_with_bpf: true,
            },
            uprobe_multi: Feature {
                name: "uprobe_multi link",
                since: "6.6",
                present: uprobe_multi_link_supported(),
                role: "one link per file for all sites: attach and detach in milliseconds; \
                       without: ~0.1 s per probe to detach",
                seen_with_bpf: true,
            },
            sleepable_uprobes: Feature {
                name: "sleepable uprobe programs",
                since: "6.0",
                present: sleepable_uprobes_supported(),
                role: "reads a string or stack value on a page the program has not touched yet; \
                       without: such a read is counted as unreadable",
                seen_with_bpf: true,
            },
        }
    }

    /// Every feature, the ones a run does not need probed too (for `probe doctor`).
    pub fn all_features(&self) -> Vec<Feature> {
        vec![
            self.uprobe_events,
            self.probe_read_user,
            self.cookies,
            Feature {
                name: "uretprobe syscall (x86-64)",
                since: "6.11",
                present: kallsyms_has("__x64_sys_uretprobe"),
                role: "faster uretprobes on C/C++/Rust (the kernel uses it by itself)",
                seen_with_bpf: false,
            },
            self.uprobe_multi,
            self.sleepable_uprobes,
            Feature {
                name: "BPF ring buffer",
                since: "5.8",
                present: matches!(is_map_supported(MapType::RingBuf), Ok(true)),
                role: "not needed: probe aggregates in the kernel and sends no events",
                seen_with_bpf: true,
            },
        ]
    }

    /// Fails with one line naming the kernel and the missing feature when probe cannot work.
    pub fn ensure_supported(&self) -> Result<()> {
        for f in [&self.uprobe_events, &self.probe_read_user] {
            if !f.present {
                return Err(user(format!(
                    "Linux {} lacks {} (Linux {}), which probe needs; run it on a newer kernel",
                    self.release, f.name, f.since
                )));
            }
        }
        Ok(())
    }

    /// The best the kernel has: uprobe_multi links, else cookies, else a program per site.
    /// `PROBE_ATTACH=cookies` or `PROBE_ATTACH=per-site` forces an older path, so the paths
    /// older kernels take are tested on new ones too.
    pub fn strategy(&self) -> AttachStrategy {
        let forced = std::env::var("PROBE_ATTACH").unwrap_or_default();
        let cookies = self.cookies.present && forced != "per-site";
        let multi = cookies && self.uprobe_multi.present && forced != "cookies";
        if multi {
            AttachStrategy::MultiLink
        } else if cookies {
            AttachStrategy::Cookies
        } else {
            AttachStrategy::ProgramPerSite
        }
    }
}

impl Kernel {
    /// Whether to load the sleepable programs that fault pages in: where the kernel has them,
    /// unless `PROBE_SLEEPABLE=no` asks for the plain ones (as older kernels get), so that
    /// path is tested on new kernels too.
    pub fn use_sleepable(&self) -> bool {
        self.sleepable_uprobes.present && std::env::var("PROBE_SLEEPABLE").as_deref() != Ok("no")
    }
}

/// Kernels before 5.11 charge BPF maps and programs to RLIMIT_MEMLOCK (often 64 KiB), not
/// to the memory cgroup; lift it, as libbpf-based tools do. Harmless where it is not used.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

impl Kernel {
    /// `uname -r`.
    pub fn release() -> String {
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut uts) } != 0 {
            return "unknown".into();
        }
        let bytes: Vec<u8> = uts.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The uretprobe syscall cannot be probed by calling it (outside a uretprobe trampoline the
/// kernel kills the caller with SIGILL), so look for its entry point instead.
fn kallsyms_has(symbol: &str) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else {
        return false;
    };
    text.lines().any(|l| l.rsplit(' ').next() == Some(symbol))
}

/// libbpf's probe: a kprobe program loaded for BPF_TRACE_UPROBE_MULTI, then a link on "/" that
/// a kernel with the link type rejects with EBADF (not a regular file), and others with EINVAL.
fn uprobe_multi_link_supported() -> bool {
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_TRACE_UPROBE_MULTI: u32 = 48;
    // mov r0, 0; exit
    let insns = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let Some(prog) = load_kprobe_program(&insns, |load| put_u32(load, 68, BPF_TRACE_UPROBE_MULTI))
    // expected_attach_type
    else {
        return false;
    };
    let path = c"/";
    let offset: u64 = 0;
    let mut link = [0u8; 128];
    put_u32(&mut link, 0, prog as u32); // prog_fd
    put_u32(&mut link, 8, BPF_TRACE_UPROBE_MULTI); // attach_type
    put_u64(&mut link, 16, path.as_ptr() as u64); // uprobe_multi.path
    put_u64(&mut link, 24, &offset as *const u64 as u64); // uprobe_multi.offsets
    put_u32(&mut link, 48, 1); // uprobe_multi.cnt
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_CREATE, link.as_ptr(), link.len()) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    unsafe {
        if fd >= 0 {
            libc::close(fd as i32);
        }
        libc::close(prog as i32);
    }
    fd < 0 && errno == Some(libc::EBADF)
}

/// Whether a uprobe program may be sleepable and fault pages in: a kprobe-type program loaded
/// with BPF_F_SLEEPABLE that calls `bpf_copy_from_user` (kernels without sleepable uprobes
/// refuse the flag for this program type, and older ones the helper).
fn sleepable_uprobes_supported() -> bool {
    const BPF_F_SLEEPABLE: u32 = 1 << 4;
    // r1 = r10; r1 += -8; r2 = 8; r3 = 0; call bpf_copy_from_user (148); r0 = 0; exit
    let insns = [
        0x0000_0000_0000_a1bf,
        0xffff_fff8_0000_0107,
        0x0000_0008_0000_02b7,
        0x0000_0000_0000_03b7,
        0x0000_0094_0000_0085,
        0x0000_0000_0000_00b7,
        0x0000_0000_0000_0095,
    ];
    let Some(prog) = load_kprobe_program(&insns, |load| put_u32(load, 44, BPF_F_SLEEPABLE))
    // prog_flags
    else {
        return false;
    };
    unsafe { libc::close(prog as i32) };
    true
}

/// Loads a GPL kprobe-type program of `insns`, `attrs` setting the load attributes it tests;
/// its descriptor, or None when the kernel refuses it.
fn load_kprobe_program(insns: &[u64], attrs: impl FnOnce(&mut [u8])) -> Option<libc::c_long> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_KPROBE: u32 = 2;
    let license = c"GPL";
    let mut load = [0u8; 128];
    put_u32(&mut load, 0, BPF_PROG_TYPE_KPROBE);
    put_u32(&mut load, 4, insns.len() as u32);
    put_u64(&mut load, 8, insns.as_ptr() as u64);
    put_u64(&mut load, 16, license.as_ptr() as u64);
    attrs(&mut load);
    let prog = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, load.as_ptr(), load.len()) };
    (prog >= 0).then_some(prog)
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::report;

    fn kernel(read_user: bool, cookies: bool) -> Kernel {
        kernel_with_multi(read_user, cookies, false)
    }

    fn kernel_with_multi(read_user: bool, cookies: bool, multi: bool) -> Kernel {
        let f = |name, present| Feature { name, since: "x", present, role: "", seen_with_bpf: false };
        Kernel {
            release: "5.4.0-test".into(),
            uprobe_events: f("uprobe events", true),
            probe_read_user: Feature { since: "5.5", ..f("bpf_probe_read_user", read_user) },
            cookies: f("BPF cookies on uprobes", cookies),
            uprobe_multi: f("uprobe_multi link", multi),
            sleepable_uprobes: f("sleepable uprobe programs", multi),
        }
    }

    #[test]
    fn a_missing_required_feature_is_one_line_naming_kernel_and_feature() {
        let err = kernel(false, false).ensure_supported().unwrap_err();
        assert_eq!(
            report(&err),
            (
                2,
                "Linux 5.4.0-test lacks bpf_probe_read_user (Linux 5.5), which probe needs; \
                 run it on a newer kernel"
                    .to_string()
            )
        );
        assert!(kernel(true, false).ensure_supported().is_ok());
    }

    #[test]
    fn strategy_follows_cookies_and_multi_links() {
        assert_eq!(kernel(true, true).strategy(), AttachStrategy::Cookies);
        assert_eq!(kernel(true, false).strategy(), AttachStrategy::ProgramPerSite);
        assert_eq!(kernel_with_multi(true, true, true).strategy(), AttachStrategy::MultiLink);
    }
}
