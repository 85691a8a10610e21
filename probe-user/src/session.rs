//! The kernel session: loads the embedded eBPF object, attaches the planned sites, drains the
//! per-CPU maps, and detaches. Dropping it detaches everything; nothing is pinned, so nothing
//! outlives the process.
use crate::error::user;
use crate::features::AttachStrategy;
use crate::multi_link::{self, MultiPoints};
use crate::plan::Site;
use anyhow::{Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope};
use aya::programs::{ProbeKind, UProbe};
use aya::{Ebpf, EbpfLoader};
use probe_ebpf::{
    bank_index, LatencyStats, ValueStats, GLOBAL_COOKIE_IS_FIXED, GLOBAL_FIXED_COOKIE, GLOBAL_UNIT_NS, MAP_EPOCH,
    MAP_LATENCY_STATS, MAP_PROBE_COSTS, MAP_VALUE_STATS, PROBE_COSTS_LEN, SHARED_MAPS,
};
use std::num::NonZeroU32;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));

/// After flipping the epoch, programs that read the old one finish within microseconds; this
/// grace period is far longer, so the drained bank is complete.
const EPOCH_GRACE: Duration = Duration::from_millis(20);

/// What removing one perf-event uprobe costs here: an RCU grace period under a global mutex
/// (bench/RESULTS.md). uprobe_multi links remove all their sites with one.
pub const PERF_PROBE_DETACH: Duration = Duration::from_millis(107);

/// A shared map value type as an aya `Pod` (the trait is foreign to the shared crate).
#[repr(transparent)]
#[derive(Clone, Copy)]
struct Pod<T>(T);
unsafe impl<T: Copy + 'static> aya::Pod for Pod<T> {}

/// A per-slot aggregate the kernel keeps in a banked per-CPU array.
pub trait Aggregate: Copy + 'static {
    const EMPTY: Self;
    const MAP: &'static str;
    fn merge(&mut self, other: &Self);
    fn is_empty(&self) -> bool;
    /// The aggregate as latency statistics, if that is what it is (probe's calibration).
    fn latency(&self) -> Option<&LatencyStats> {
        None
    }
}

impl Aggregate for ValueStats {
    const EMPTY: Self = ValueStats::EMPTY;
    const MAP: &'static str = MAP_VALUE_STATS;
    fn merge(&mut self, other: &Self) {
        ValueStats::merge(self, other)
    }
    fn is_empty(&self) -> bool {
        self.count == 0 && self.unreadable == 0
    }
}

impl Aggregate for LatencyStats {
    const EMPTY: Self = LatencyStats::EMPTY;
    const MAP: &'static str = MAP_LATENCY_STATS;
    fn merge(&mut self, other: &Self) {
        LatencyStats::merge(self, other)
    }
    fn is_empty(&self) -> bool {
        self.value.count == 0 && self.abandoned == 0 && self.overflow == 0
    }
    fn latency(&self) -> Option<&LatencyStats> {
        Some(self)
    }
}

/// Load-time settings of the eBPF object.
pub struct LoadConfig {
    /// Number of value slots (argdist) or traced functions (latency).
    pub slots: u32,
    /// Slots after those, for probe's own calibration functions: never drained.
    pub calibration_slots: u32,
    /// Display unit of latency tables, in nanoseconds.
    pub unit_ns: u64,
}

impl LoadConfig {
    fn map_slots(&self) -> u32 {
        self.slots + self.calibration_slots
    }
}

pub struct Session<T: Aggregate> {
    /// Every site this session may attach, in the order given at load; `attach` takes ranges.
    sites: Vec<Site>,
    strategy: AttachStrategy,
    /// uprobe_multi links, in the order they were made (exits first); empty without them.
    links: Vec<OwnedFd>,
    /// One object, or one per site without BPF cookies; empty once detached (the maps below
    /// stay readable).
    ebpfs: Vec<Ebpf>,
    /// The entry sites' perf-event links (object index, program, link), detached before the
    /// rest.
    entry_links: Vec<(usize, &'static str, UProbeLinkId)>,
    /// Probes attached one perf event each: each takes the kernel ~0.1 s to remove.
    perf_probes: usize,
    stats: PerCpuArray<MapData, Pod<T>>,
    epoch: Array<MapData, u32>,
    probe_costs: Array<MapData, u64>,
    bank: u32,
    slots: u32,
    cpus: usize,
}

/// Fails with a clear message unless we may load BPF programs and attach uprobes.
pub fn ensure_privileges() -> Result<()> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(user("needs root, or CAP_BPF and CAP_PERFMON, to load eBPF programs; run it with sudo"))
    }
}

impl<T: Aggregate> Session<T> {
    /// Loads the programs and attaches every site (each to its own file), for process `pid` or
    /// for all. On any failure the partly attached session is dropped, which detaches it.
    /// A Ctrl-C seen by `interrupt` stops attaching at once: the session then holds the sites
    /// attached so far, and the caller ends the run.
    pub fn attach(sites: &[Site], pid: Option<i32>, config: LoadConfig, strategy: AttachStrategy) -> Result<Self> {
        let mut session = Self::load(sites, config, strategy)?;
        session.attach_sites(0..sites.len(), pid)?;
        Ok(session)
    }

    /// Loads the programs for `sites` without attaching any: `attach_sites` attaches them, in
    /// as many steps as the caller needs (probe's own calibration sites first).
    pub fn load(sites: &[Site], config: LoadConfig, strategy: AttachStrategy) -> Result<Self> {
        let mut ebpfs = match strategy {
            AttachStrategy::MultiLink => vec![load_shared::<T>(sites, &config, true)?],
            AttachStrategy::Cookies => vec![load_shared::<T>(sites, &config, false)?],
            AttachStrategy::ProgramPerSite => load_per_site::<T>(sites, &config)?,
        };
        if ebpfs.is_empty() && crate::interrupt::requested() {
            return Err(user("Ctrl-C while loading the programs; nothing was attached"));
        }
        // Every copy shares these maps; any copy's handle will do.
        let first = ebpfs.first_mut().context("no sites to attach")?;
        let stats = PerCpuArray::try_from(first.take_map(T::MAP).context("stats map")?)?;
        let epoch = Array::try_from(first.take_map(MAP_EPOCH).context("epoch map")?)?;
        let probe_costs = Array::try_from(first.take_map(MAP_PROBE_COSTS).context("probe costs map")?)?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        Ok(Session {
            sites: sites.to_vec(),
            strategy,
            links: Vec::new(),
            ebpfs,
            entry_links: Vec::new(),
            perf_probes: 0,
            stats,
            epoch,
            probe_costs,
            bank: 0,
            slots: config.slots,
            cpus,
        })
    }

    /// Attaches the loaded sites `which` (indexes into the sites given at load), for process
    /// `pid` or for all; their exits before their entries. With uprobe_multi, one link per file
    /// and program; otherwise one perf event per site, stopping at once on Ctrl-C.
    pub fn attach_sites(&mut self, which: std::ops::Range<usize>, pid: Option<i32>) -> Result<()> {
        if self.strategy == AttachStrategy::MultiLink {
            let ebpf = self.ebpfs.first_mut().context("no program loaded")?;
            let links = attach_multi(ebpf, &self.sites[which], pid)?;
            self.links.extend(links);
            return Ok(());
        }
        let scope = match pid {
            Some(pid) => UProbeScope::OneProcess(NonZeroU32::new(pid as u32).context("pid 0")?),
            None => UProbeScope::AllProcesses,
        };
        let (first, count) = (which.start, which.len());
        for (n, (i, site)) in exits_first(&self.sites[which]).enumerate() {
            if crate::interrupt::requested() {
                eprintln!("probe: Ctrl-C while attaching: stopped after {n} of {count} probes");
                return Ok(());
            }
            let i = first + i;
            let (object, cookie) = match self.strategy {
                AttachStrategy::ProgramPerSite => (i, None),
                _ => (0, Some(site.cookie)),
            };
            let ebpf = self.ebpfs.get_mut(object).context("a site without its program")?;
            let program: &mut UProbe = ebpf.program_mut(site.program).context("program")?.try_into()?;
            let point = UProbeAttachPoint { location: UProbeAttachLocation::AbsoluteOffset(site.file_offset), cookie };
            let link = program.attach(point, &site.path, scope).map_err(|e| attach_error(e, &site.path, pid))?;
            self.perf_probes += 1;
            if !site.exit {
                self.entry_links.push((object, site.program, link));
            }
        }
        Ok(())
    }

    /// Sets what the programs subtract from each measured span (`probe_ebpf::PROBE_COSTS`).
    pub fn set_probe_costs(&mut self, costs: &[u64; PROBE_COSTS_LEN as usize]) -> Result<()> {
        for (i, cost) in costs.iter().enumerate() {
            self.probe_costs.set(i as u32, *cost, 0).context("writing the probe costs")?;
        }
        Ok(())
    }

    /// One slot's aggregate in the bank being written, summed over the CPUs, without draining
    /// it: for probe's own calibration slots, which nothing else writes.
    pub fn peek_slot(&self, slot: u32) -> Result<T> {
        let per_cpu = self.stats.get(&bank_index(self.bank, slot), 0).context("reading the stats map")?;
        let mut sum = T::EMPTY;
        for cpu in per_cpu.iter() {
            sum.merge(&cpu.0);
        }
        Ok(sum)
    }

    /// Roughly how long `detach` will take: nothing for uprobe_multi links, an RCU grace
    /// period under a global mutex (~0.1 s here) for every perf-event probe.
    pub fn detach_estimate(&self) -> Duration {
        PERF_PROBE_DETACH * self.perf_probes as u32
    }

    /// How many probes are attached one perf event each (none with uprobe_multi links).
    pub fn perf_probes(&self) -> usize {
        self.perf_probes
    }

    /// Detaches every probe now, entries first, so no call starts that its exit cannot see:
    /// links in the reverse of their making (entry links were made last), then perf events.
    /// The maps stay readable.
    pub fn detach(&mut self) {
        while self.links.pop().is_some() {}
        for (object, name, link) in self.entry_links.drain(..) {
            let program: Option<&mut UProbe> =
                self.ebpfs.get_mut(object).and_then(|e| e.program_mut(name)).and_then(|p| p.try_into().ok());
            // A link that will not detach here goes with its object just below.
            if let Some(program) = program {
                let _ = program.detach(link);
            }
        }
        self.ebpfs.clear();
        self.perf_probes = 0;
    }

    /// Hands the probes to a forked child that removes them and exits, so the caller can
    /// exit at once; returns the child's pid. The child leaves the terminal's session and
    /// ignores Ctrl-C and hang-ups: stopping it would only move the same wait into the
    /// kernel's cleanup of its files, so it always finishes the removal.
    pub fn detach_in_background(mut self) -> Result<i32> {
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            unsafe {
                libc::setsid();
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
            }
            keep_only_bpf_files();
            self.detach();
            unsafe { libc::_exit(0) };
        }
        // Our copies of the descriptors close when we exit, quickly: the child still holds
        // the probes, so the kernel removes nothing until it closes its own.
        std::mem::forget(self);
        Ok(pid)
    }

    /// The values since the last drain, per slot, while probes keep firing: flips the epoch so
    /// programs write the other bank, waits out the grace period, then empties the old bank.
    pub async fn drain_interval(&mut self) -> Result<Vec<T>> {
        let old = self.flip_epoch().await?;
        self.take_bank(old)
    }

    /// Everything not yet drained, per slot, up to this moment. Probes stay attached: the
    /// caller prints, then detaches, because the kernel takes ~0.1 s per probe to detach
    /// (an RCU grace period under a global lock each) and the result should not wait for it.
    pub async fn drain_final(&mut self) -> Result<Vec<T>> {
        let last = self.flip_epoch().await?;
        let mut total = self.take_bank(last)?;
        for (t, s) in total.iter_mut().zip(self.take_bank(self.bank)?) {
            t.merge(&s);
        }
        Ok(total)
    }

    /// Makes the programs write the other bank and waits until none still writes the old one,
    /// which it returns.
    async fn flip_epoch(&mut self) -> Result<u32> {
        let old = self.bank;
        self.bank ^= 1;
        self.epoch.set(0, self.bank, 0).context("flipping the epoch")?;
        tokio::time::sleep(EPOCH_GRACE).await;
        Ok(old)
    }

    /// Sums one bank over the CPUs and zeroes it.
    fn take_bank(&mut self, bank: u32) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(self.slots as usize);
        for slot in 0..self.slots {
            let index = bank_index(bank, slot);
            let per_cpu = self.stats.get(&index, 0).context("reading the stats map")?;
            let mut sum = T::EMPTY;
            for cpu in per_cpu.iter() {
                sum.merge(&cpu.0);
            }
            if !sum.is_empty() {
                let zero = PerCpuValues::try_from(vec![Pod(T::EMPTY); self.cpus])?;
                self.stats.set(index, zero, 0).context("clearing the stats map")?;
            }
            out.push(sum);
        }
        Ok(out)
    }
}

/// The sites with their index, exit sites first: attached in this order, an entry is only ever
/// recorded once every exit that could end its call is live. Attaching to a running process
/// (`-p`) entries first made each call that returned through a not-yet-attached RET look
/// abandoned when the next call at the same depth began.
fn exits_first(sites: &[Site]) -> impl Iterator<Item = (usize, &Site)> {
    let exits = sites.iter().enumerate().filter(|(_, s)| s.exit);
    exits.chain(sites.iter().enumerate().filter(|(_, s)| !s.exit))
}

/// In the background remover: stdin, stdout and stderr become /dev/null and every other file
/// but the BPF objects and perf events is closed, so nobody waiting for our output, a pipe's
/// end or a socket (--serve) waits for the removal too.
fn keep_only_bpf_files() {
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for std_fd in 0..3 {
                libc::dup2(null, std_fd);
            }
        }
    }
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<i32> = fds.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    for fd in fds.into_iter().filter(|&fd| fd > 2) {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        let target = target.to_string_lossy();
        if !(target.starts_with("anon_inode:bpf") || target.starts_with("anon_inode:[perf_event]")) {
            unsafe { libc::close(fd) };
        }
    }
}

/// The object loaded once, each program used by a site loaded once; sites get cookies.
fn load_shared<T: Aggregate>(sites: &[Site], config: &LoadConfig, for_multi_link: bool) -> Result<Ebpf> {
    let mut loader = in_private_mounts(|_| plain_loader());
    let mut ebpf = loader
        // Only this command's stats map grows; the other keeps its minimal size.
        .map_max_entries(T::MAP, 2 * config.map_slots())
        .override_global(GLOBAL_UNIT_NS, &config.unit_ns, true)
        .load(BPF_OBJECT)
        .context("loading the eBPF object")?;
    let mut programs: Vec<&str> = sites.iter().map(|s| s.program).collect();
    programs.sort();
    programs.dedup();
    for name in programs {
        let program: &mut UProbe = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing from the eBPF object"))?
            .try_into()?;
        let loaded = if for_multi_link { program.load_for_uprobe_multi() } else { program.load() };
        loaded.map_err(|e| load_error(name, e))?;
    }
    Ok(ebpf)
}

/// One uprobe_multi link per file and program, the sites' cookies attached. Exits go live
/// before entries (a return program's link first, RET sites before entries within a link),
/// so a call that enters after attaching is always seen returning.
fn attach_multi(ebpf: &mut Ebpf, sites: &[Site], pid: Option<i32>) -> Result<Vec<OwnedFd>> {
    let mut groups: Vec<(&Path, &'static str)> = sites.iter().map(|s| (s.path.as_path(), s.program)).collect();
    groups.sort();
    groups.dedup();
    let mut ordered = Vec::with_capacity(groups.len());
    for (path, name) in groups {
        let program: &UProbe = ebpf.program(name).context("program")?.try_into()?;
        let on_return = matches!(program.kind(), ProbeKind::Return);
        let mut points: Vec<(bool, u64, u64)> = sites
            .iter()
            .filter(|s| s.path == path && s.program == name)
            .map(|s| (!s.exit, s.file_offset, s.cookie))
            .collect();
        points.sort_by_key(|p| p.0); // exits (false) first, stable otherwise
        ordered.push((!on_return, path, name, on_return, points));
    }
    ordered.sort_by_key(|g| g.0);
    let mut links = Vec::with_capacity(ordered.len());
    for (_, path, name, on_return, points) in ordered {
        let program: &UProbe = ebpf.program(name).context("program")?.try_into()?;
        let fd = program.fd().context("program fd")?;
        let points: Vec<(u64, u64)> = points.iter().map(|p| (p.1, p.2)).collect();
        let target = MultiPoints { path, points: &points, on_return, pid: pid.map(|p| p as u32) };
        let link =
            multi_link::attach(fd.as_fd(), &target).map_err(|e| multi_attach_error(e, path, points.len(), pid))?;
        links.push(link);
    }
    Ok(links)
}

/// For kernels without BPF cookies: one copy of the object per site with the site's cookie
/// built in, all sharing one set of maps. The maps are shared by pinning them in a bpffs that
/// exists only in a private mount namespace, so the pins vanish with it: nothing outlives us.
fn load_per_site<T: Aggregate>(sites: &[Site], config: &LoadConfig) -> Result<Vec<Ebpf>> {
    in_private_mounts(|bpffs| {
        let Some(bpffs) = bpffs else {
            return Err(user(format!(
                "Linux {} has no BPF cookies (5.15+); probe then loads a program per site, which \
                 needs CAP_SYS_ADMIN for a private bpffs; run it as root",
                crate::features::Kernel::release()
            )));
        };
        let pins: Vec<(&str, PathBuf)> = SHARED_MAPS.iter().map(|m| (*m, bpffs.join(m))).collect();
        let mut ebpfs = Vec::with_capacity(sites.len());
        for site in sites {
            if crate::interrupt::requested() {
                break; // attach_sites reports it; the sites without a copy stay unattached
            }
            let mut loader = plain_loader();
            loader
                .map_max_entries(T::MAP, 2 * config.map_slots())
                .override_global(GLOBAL_UNIT_NS, &config.unit_ns, true)
                .override_global(GLOBAL_COOKIE_IS_FIXED, &1u32, true)
                .override_global(GLOBAL_FIXED_COOKIE, &site.cookie, true);
            for (map, path) in &pins {
                loader.map_pin_path(map, path.as_path());
            }
            let mut ebpf = loader.load(BPF_OBJECT).context("loading a copy of the eBPF object")?;
            let program: &mut UProbe = ebpf.program_mut(site.program).context("program")?.try_into()?;
            program.load().map_err(|e| load_error(site.program, e))?;
            ebpfs.push(ebpf);
        }
        Ok(ebpfs)
    })
}

/// Runs `f` in a private mount namespace, then returns to the original one. In it,
/// /sys/kernel/btf/vmlinux reads as empty: the programs use no CO-RE relocations, but aya
/// 0.14's `EbpfLoader::new()` always parses that file (about 35 ms and 15 MiB of peak memory at
/// every start), and there the parse fails at once. `f` also gets a fresh bpffs, private to
/// the namespace. Needs CAP_SYS_ADMIN and a single-threaded process (setns requires it);
/// without, `f` runs here with no bpffs.
fn in_private_mounts<R>(f: impl FnOnce(Option<&Path>) -> R) -> R {
    const VMLINUX_BTF: &std::ffi::CStr = c"/sys/kernel/btf/vmlinux";
    let (Ok(original), Ok(cwd), Ok(root)) =
        (std::fs::File::open("/proc/self/ns/mnt"), std::fs::File::open("."), std::fs::File::open("/"))
    else {
        return f(None);
    };
    use std::os::fd::AsRawFd;
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return f(None);
        }
        // Private first, so the mounts below can never propagate to the host.
        let private = libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0;
        let mut bpffs = None;
        if private {
            libc::mount(c"/dev/null".as_ptr(), VMLINUX_BTF.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null());
            // Any directory will do as the mount point: nobody else sees this namespace.
            for dir in [c"/sys/fs/bpf", c"/tmp", c"/"] {
                if libc::mount(c"bpf".as_ptr(), dir.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) == 0 {
                    bpffs = Some(Path::new(dir.to_str().unwrap_or("/")));
                    break;
                }
            }
        }
        let result = f(bpffs);
        // setns also moves the working directory to the namespace's root: restore it, since
        // relative target paths are resolved when attaching. If setns failed we stay in the
        // private namespace, which differs from the host's only by the hidden BTF file and bpffs.
        libc::setns(original.as_raw_fd(), libc::CLONE_NEWNS);
        // setns moves the root directory too, to the namespace's: a probe started in a chroot
        // (tests/old_userland.rs) would leave it, and find no target path afterwards.
        libc::fchdir(root.as_raw_fd());
        libc::chroot(c".".as_ptr());
        libc::fchdir(cwd.as_raw_fd());
        result
    }
}

fn plain_loader() -> EbpfLoader<'static> {
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    loader
}

/// One line for a program the kernel refused, never the whole verifier dump: the kernel, the
/// program and the verifier's verdict (its last message before the statistics).
fn load_error(program: &str, e: aya::programs::ProgramError) -> anyhow::Error {
    let release = crate::features::Kernel::release();
    match e {
        aya::programs::ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            anyhow::anyhow!(
                "Linux {release} refused probe's eBPF program {program} ({io_error}; verifier: {}); \
                 please report it with the output of `probe doctor`",
                verifier_verdict(&log)
            )
        }
        other => anyhow::Error::new(other).context(format!("loading {program} on Linux {release}")),
    }
}

/// The verifier's reason in its log: the last line that is neither an instruction trace
/// (`12: (bf) r1 = r2`) nor one of the closing statistics.
fn verifier_verdict(log: &str) -> &str {
    const STATS: [&str; 4] = ["verification time", "stack depth", "processed ", "max_states"];
    log.lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !STATS.iter().any(|s| l.starts_with(s)))
        .find(|l| !l.split(':').next().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())))
        .unwrap_or("no log")
}

fn attach_error(e: aya::programs::ProgramError, binary: &Path, pid: Option<i32>) -> anyhow::Error {
    if let Some(exited) = process_exited(pid) {
        return exited;
    }
    anyhow::Error::new(e).context(format!("attaching a uprobe to {}", binary.display()))
}

fn multi_attach_error(e: std::io::Error, binary: &Path, count: usize, pid: Option<i32>) -> anyhow::Error {
    if let Some(exited) = process_exited(pid) {
        return exited;
    }
    anyhow::Error::new(e).context(format!(
        "attaching {count} uprobes to {} with one uprobe_multi link on Linux {}",
        binary.display(),
        crate::features::Kernel::release()
    ))
}

fn process_exited(pid: Option<i32>) -> Option<anyhow::Error> {
    let pid = pid?;
    (!Path::new(&format!("/proc/{pid}")).exists())
        .then(|| user(format!("-p {pid}: the process exited before probes were attached; start it again")))
}

#[cfg(test)]
mod tests {
    use super::verifier_verdict;

    #[test]
    fn verifier_verdict_is_the_reason_not_the_trace() {
        // The tail of what Linux 6.1 printed for an earlier latency program.
        let log = "111: (67) r4 <<= 4                    ; R4_w=scalar()\n\
                   113: (0f) r5 += r4\n\
                   math between map_value pointer and register with unbounded min value is not allowed\n\
                   verification time 2381 usec\n\
                   stack depth 40\n\
                   processed 95 insns (limit 1000000) max_states_per_insn 0 total_states 8\n";
        assert_eq!(
            verifier_verdict(log),
            "math between map_value pointer and register with unbounded min value is not allowed"
        );
        assert_eq!(verifier_verdict(""), "no log");
    }
}
