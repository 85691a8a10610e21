//! The kernel session: loads the embedded eBPF object, attaches the planned sites, drains the
//! per-CPU maps, and detaches. Dropping it detaches everything; nothing is pinned, so nothing
//! outlives the process.
use crate::error::user;
use crate::features::AttachStrategy;
use crate::multi_link::{self, MultiPoints};
use crate::plan::{Keying, Site};
use anyhow::{Context, Result};
use aya::maps::{Array, Map, MapData};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope};
use aya::programs::{ProbeKind, UProbe};
use aya::Ebpf;
use probe_ebpf::{
    EventConfig, EventSources, Filter, StackFrames, MAP_EPOCH, MAP_EVENTS, MAP_EVENT_DROPS, MAP_EVENT_SOURCES,
    MAP_INLINED_CALLS, MAP_LOSSES, MAP_PROBE_COSTS, PROBE_COSTS_LEN,
};
use std::num::NonZeroU32;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

mod costs;
mod drain;
mod kind;
mod loader;
pub mod own;
mod privileges;
pub mod warm_up;
pub use costs::{CalibrationRecords, ProbeCosts};
pub use drain::{Keyed, KindMaps};
pub use kind::{Aggregate, KeyedMap, Programs};
pub use privileges::{ensure_privileges, privileged};

/// What removing one perf-event uprobe costs here: an RCU grace period under a global mutex
/// (bench/RESULTS.md). uprobe_multi links remove all their sites with one.
pub const PERF_PROBE_DETACH: Duration = Duration::from_millis(107);

/// A shared map value type as an aya `Pod` (the trait is foreign to the shared crate).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub(crate) struct Pod<T>(pub(crate) T);
unsafe impl<T: Copy + 'static> aya::Pod for Pod<T> {}

/// Load-time settings of the eBPF object.
pub struct LoadConfig {
    /// The kind of measurement's map and programs (`Measure::PROGRAMS`).
    pub programs: Programs,
    /// Number of value slots (argdist) or traced functions (latency).
    pub slots: u32,
    /// Keyed kinds: how big their map is and what it is keyed by.
    pub keying: Keying,
    /// `--filter`: what a call must satisfy to be aggregated.
    pub filter: Filter,
    /// Slots after `slots` for probe's own calibration sites, loaded with the trace's when they
    /// use the same programs: written, never drained.
    pub calibration_slots: u32,
    /// Display unit of latency tables, in nanoseconds.
    pub unit_ns: u64,
    /// `--cgroup`/`--container`: the cgroup v2 id whose processes are measured (0: all).
    pub cgroup: u64,
    /// latency `--slower-than`/`--events`: their settings (`EventConfig::OFF`: none), what each
    /// slot's events read, and the ring buffer's size in bytes.
    pub events: EventConfig,
    pub event_sources: Vec<EventSources>,
    pub event_buffer: u32,
}

/// The ring buffer the calls of `--slower-than`/`--events` leave the kernel through, and the
/// calls it could not take, per slot.
pub struct EventMaps {
    pub ring: aya::maps::RingBuf<MapData>,
    pub drops: aya::maps::PerCpuArray<MapData, u64>,
    /// `--stack`: each stack's frames, by the hash an event carries.
    pub(crate) stacks: Option<aya::maps::HashMap<MapData, u64, Pod<StackFrames>>>,
}

impl EventMaps {
    /// The calls the ring buffer could not take, per slot, summed over the CPUs.
    pub fn dropped(&self, slots: u32) -> Result<Vec<u64>> {
        (0..slots)
            .map(|slot| Ok(self.drops.get(&slot, 0).context("reading the dropped events")?.iter().sum()))
            .collect()
    }

    /// The frames stored under an event's stack hash.
    pub fn stack_frames(&self, hash: u64) -> Option<StackFrames> {
        self.stacks.as_ref()?.get(&hash, 0).ok().map(|f| f.0)
    }
}

impl LoadConfig {
    /// Entries of the kind's map: two banks of slots, or of keys.
    fn map_entries(&self) -> u32 {
        match self.programs.keyed {
            KeyedMap::No => 2 * (self.slots + self.calibration_slots).max(1),
            KeyedMap::Yes | KeyedMap::WithBuckets(_) => 2 * self.keying.max_keys.max(1),
        }
    }
}

pub struct Session {
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
    programs: Programs,
    /// The kind's maps, read by the kind when drained (`drain.rs`).
    maps: KindMaps,
    epoch: Array<MapData, u32>,
    probe_costs: Array<MapData, u64>,
    bank: u32,
    slots: u32,
    /// `--slower-than`/`--events`: until the run takes them (`take_events`).
    events: Option<EventMaps>,
}

impl Session {
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
            AttachStrategy::MultiLink => vec![loader::load_shared(sites, &config, true)?],
            AttachStrategy::Cookies => vec![loader::load_shared(sites, &config, false)?],
            AttachStrategy::ProgramPerSite => loader::load_per_site(sites, &config)?,
        };
        if ebpfs.is_empty() && crate::interrupt::requested() {
            return Err(user("Ctrl-C while loading the programs; nothing was attached"));
        }
        // Every copy shares these maps; any copy's handle will do.
        let first = ebpfs.first_mut().context("no sites to attach")?;
        let stats = first.take_map(config.programs.map).context("stats map")?;
        let buckets = match config.programs.keyed {
            KeyedMap::WithBuckets(name) => Some(first.take_map(name).context("buckets map")?),
            _ => None,
        };
        let losses = first.take_map(MAP_LOSSES).context("losses map")?;
        let inlined = first.take_map(MAP_INLINED_CALLS).context("inlined calls map")?;
        let stacks = match config.keying.by_key {
            probe_ebpf::KEY_STACK => Some(first.take_map(probe_ebpf::MAP_STACK_FRAMES).context("stack frames map")?),
            _ => None,
        };
        let epoch = Array::try_from(first.take_map(MAP_EPOCH).context("epoch map")?)?;
        let probe_costs = Array::try_from(first.take_map(MAP_PROBE_COSTS).context("probe costs map")?)?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        let events = match config.events.on {
            0 => None,
            _ => {
                let mut sources: Array<MapData, Pod<EventSources>> =
                    Array::try_from(first.take_map(MAP_EVENT_SOURCES).context("event sources map")?)?;
                for (slot, s) in config.event_sources.iter().enumerate() {
                    sources.set(slot as u32, Pod(*s), 0).context("writing the event sources")?;
                }
                let ring = aya::maps::RingBuf::try_from(first.take_map(MAP_EVENTS).context("events map")?)?;
                let drops =
                    aya::maps::PerCpuArray::try_from(first.take_map(MAP_EVENT_DROPS).context("event drops map")?)?;
                let stacks = match config.events.stack {
                    0 => None,
                    // The same map as `--by stack`'s, opened again when that one has it.
                    _ => Some(aya::maps::HashMap::try_from(match &stacks {
                        Some(Map::HashMap(data)) => Map::HashMap(duplicate(data)?),
                        _ => first.take_map(probe_ebpf::MAP_STACK_FRAMES).context("stack frames map")?,
                    })?),
                };
                Some(EventMaps { ring, drops, stacks })
            }
        };
        Ok(Session {
            sites: sites.to_vec(),
            strategy,
            links: Vec::new(),
            ebpfs,
            entry_links: Vec::new(),
            perf_probes: 0,
            programs: config.programs,
            maps: KindMaps { stats, buckets, losses, inlined, stacks, cpus, unit_ns: config.unit_ns },
            epoch,
            probe_costs,
            bank: 0,
            slots: config.slots,
            events,
        })
    }

    /// `--slower-than`/`--events`: the ring buffer and drop counts, once.
    pub fn take_events(&mut self) -> Option<EventMaps> {
        self.events.take()
    }

    /// Attaches the loaded sites `which` (indexes into the sites given at load), for process
    /// `pid` or for all; their exits before their entries. With uprobe_multi, one link per file
    /// and program; otherwise one perf event per site, stopping at once on Ctrl-C.
    pub fn attach_sites(&mut self, which: std::ops::Range<usize>, pid: Option<i32>) -> Result<()> {
        if self.strategy == AttachStrategy::MultiLink {
            let ebpf = self.ebpfs.first_mut().context("no program loaded")?;
            let links = attach_multi(ebpf, self.programs, &self.sites[which], pid)?;
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
            let program: &mut UProbe = ebpf.program_mut(self.programs.for_site(site)).context("program")?.try_into()?;
            let point = UProbeAttachPoint { location: UProbeAttachLocation::AbsoluteOffset(site.file_offset), cookie };
            let link = program.attach(point, &site.path, scope).map_err(|e| attach_error(e, &site.path, pid))?;
            self.perf_probes += 1;
            if !site.exit {
                self.entry_links.push((object, self.programs.for_site(site), link));
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

    /// Another handle on what latency's calibration slots record, for a thread of its own.
    pub fn calibration_records(&self) -> Result<CalibrationRecords> {
        match &self.maps.stats {
            Map::PerCpuArray(data) => CalibrationRecords::new(data),
            _ => anyhow::bail!("calibration records: not latency's programs"),
        }
    }

    /// Another handle on the costs the programs subtract, for a thread of its own.
    pub fn probe_costs(&self) -> Result<ProbeCosts> {
        use aya::maps::IterableMap;
        ProbeCosts::new(self.probe_costs.map())
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
}

/// Hands the sessions' probes to a forked child that removes them and exits, so the caller can
/// exit at once; returns the child's pid. The child leaves the terminal's session and ignores
/// Ctrl-C and hang-ups: stopping it would only move the same wait into the kernel's cleanup of
/// its files, so it always finishes the removal.
pub fn detach_in_background(mut sessions: Vec<Session>) -> Result<i32> {
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
        sessions.iter_mut().for_each(Session::detach);
        unsafe { libc::_exit(0) };
    }
    // Our copies of the descriptors close when we exit, quickly: the child still holds the
    // probes, so the kernel removes nothing until it closes its own.
    std::mem::forget(sessions);
    Ok(pid)
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

/// One uprobe_multi link per file and program, the sites' cookies attached. Exits go live
/// before entries (the links of exits alone first, RET sites before entries within a link),
/// so a call that enters after attaching is always seen returning.
fn attach_multi(ebpf: &mut Ebpf, programs: Programs, sites: &[Site], pid: Option<i32>) -> Result<Vec<OwnedFd>> {
    let mut groups: Vec<(&Path, &str)> = sites.iter().map(|s| (s.path.as_path(), programs.for_site(s))).collect();
    groups.sort();
    groups.dedup();
    let mut ordered = Vec::with_capacity(groups.len());
    for (path, name) in groups {
        let program: &UProbe = ebpf.program(name).context("program")?.try_into()?;
        let on_return = matches!(program.kind(), ProbeKind::Return);
        let mut points: Vec<(bool, u64, u64)> = sites
            .iter()
            .filter(|s| s.path == path && programs.for_site(s) == name)
            .map(|s| (!s.exit, s.file_offset, s.cookie))
            .collect();
        points.sort_by_key(|p| p.0); // exits (false) first, stable otherwise
        let has_entries = points.iter().any(|p| p.0);
        ordered.push((has_entries, path, name, on_return, points));
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

/// Another handle on a map (a duplicated descriptor): for another thread, or another view.
fn duplicate(map: &MapData) -> Result<MapData> {
    let fd = map.fd().as_fd().try_clone_to_owned().context("duplicating a map's descriptor")?;
    Ok(MapData::from_fd(fd)?)
}
