//! Loading the embedded eBPF object: once with BPF cookies, or once per site on kernels without
//! them (the maps then shared through a private bpffs), and one line when the kernel refuses.
use super::{KeyedMap, LoadConfig, Pod};
use crate::error::user;
use crate::plan::Site;
use anyhow::{Context, Result};
use aya::programs::UProbe;
use aya::{Ebpf, EbpfLoader};
use probe_ebpf::{
    GLOBAL_BY_KEY, GLOBAL_CGROUP, GLOBAL_COOKIE_IS_FIXED, GLOBAL_EVENTS, GLOBAL_FIELD_PATHS, GLOBAL_FILTER,
    GLOBAL_FIXED_COOKIE, GLOBAL_STACK_WALK, GLOBAL_UNIT_NS, KEY_STACK, MAP_ENTRIES, MAP_EVENTS, MAP_EVENT_ARGS,
    MAP_EVENT_DROPS, MAP_EVENT_SOURCES, MAP_HIT_COSTS, MAP_INLINED_CALLS, MAP_LATENCY_STATS, MAP_LATENCY_STATS_BY,
    MAP_LOSSES, MAP_STACK_FRAMES, MAX_STACKS, SHARED_MAPS,
};
use std::path::{Path, PathBuf};

static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));

/// The object loaded once, each program used by a site loaded once; sites get cookies.
pub(super) fn load_shared(sites: &[Site], config: &LoadConfig, for_multi_link: bool) -> Result<Ebpf> {
    let mut loader = in_private_mounts(|_| plain_loader());
    size_maps(&mut loader, config);
    let mut ebpf = loader
        .override_global(GLOBAL_UNIT_NS, &config.unit_ns, true)
        .override_global(GLOBAL_BY_KEY, &config.keying.by_key, true)
        .override_global(GLOBAL_STACK_WALK, &config.keying.stack_walk, true)
        .override_global(GLOBAL_FILTER, &Pod(config.filter), true)
        .override_global(GLOBAL_FIELD_PATHS, &Pod(crate::resolve::params::fields::table()), true)
        .override_global(GLOBAL_CGROUP, &config.cgroup, true)
        .override_global(GLOBAL_EVENTS, &Pod(config.events), true)
        .load(BPF_OBJECT)
        .context("loading the eBPF object")?;
    let mut names: Vec<&str> = sites.iter().map(|s| config.programs.for_site(s)).collect();
    names.sort();
    names.dedup();
    let programs: Vec<(&str, &mut aya::programs::Program)> =
        ebpf.programs_mut().filter(|(name, _)| names.contains(name)).collect();
    if programs.len() < names.len() {
        let missing = names.iter().find(|n| !programs.iter().any(|(name, _)| name == *n)).unwrap_or(&"?");
        anyhow::bail!("program {missing} missing from the eBPF object");
    }
    // Verified side by side (latency's exit takes the verifier ~10 ms, its entry ~3 ms).
    std::thread::scope(|scope| {
        let loads: Vec<_> = programs
            .into_iter()
            .map(|(name, program)| scope.spawn(move || load_program(name, program, for_multi_link)))
            .collect();
        loads.into_iter().try_for_each(|load| load.join().unwrap_or_else(|_| Err(anyhow::anyhow!("loading panicked"))))
    })?;
    Ok(ebpf)
}

fn load_program(name: &str, program: &mut aya::programs::Program, for_multi_link: bool) -> Result<()> {
    let program: &mut UProbe = program.try_into()?;
    let loaded = if for_multi_link { program.load_for_uprobe_multi() } else { program.load() };
    loaded.map_err(|e| load_error(name, e))
}

/// For kernels without BPF cookies: one copy of the object per site with the site's cookie
/// built in, all sharing one set of maps. The maps are shared by pinning them in a bpffs that
/// exists only in a private mount namespace, so the pins vanish with it: nothing outlives us.
pub(super) fn load_per_site(sites: &[Site], config: &LoadConfig) -> Result<Vec<Ebpf>> {
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
        let filter = Pod(config.filter);
        let events = Pod(config.events);
        let paths = Pod(crate::resolve::params::fields::table());
        for site in sites {
            if crate::interrupt::requested() {
                break; // attach_sites reports it; the sites without a copy stay unattached
            }
            let mut loader = plain_loader();
            size_maps(&mut loader, config);
            loader
                .override_global(GLOBAL_UNIT_NS, &config.unit_ns, true)
                .override_global(GLOBAL_BY_KEY, &config.keying.by_key, true)
                .override_global(GLOBAL_STACK_WALK, &config.keying.stack_walk, true)
                .override_global(GLOBAL_FILTER, &filter, true)
                .override_global(GLOBAL_FIELD_PATHS, &paths, true)
                .override_global(GLOBAL_CGROUP, &config.cgroup, true)
                .override_global(GLOBAL_EVENTS, &events, true)
                .override_global(GLOBAL_COOKIE_IS_FIXED, &1u32, true)
                .override_global(GLOBAL_FIXED_COOKIE, &site.cookie, true);
            for (map, path) in &pins {
                loader.map_pin_path(map, path.as_path());
            }
            let mut ebpf = loader.load(BPF_OBJECT).context("loading a copy of the eBPF object")?;
            let name = config.programs.for_site(site);
            let program: &mut UProbe = ebpf.program_mut(name).context("program")?.try_into()?;
            program.load().map_err(|e| load_error(name, e))?;
            ebpfs.push(ebpf);
        }
        Ok(ebpfs)
    })
}

/// Sizes the maps this command uses; the others keep their minimal size.
fn size_maps(loader: &mut EbpfLoader, config: &LoadConfig) {
    let slots = config.slots + config.calibration_slots;
    loader
        .map_max_entries(config.programs.map, config.map_entries())
        .map_max_entries(MAP_LOSSES, 2 * slots.max(1))
        .map_max_entries(MAP_INLINED_CALLS, 2 * slots.max(1));
    if let KeyedMap::WithBuckets(buckets) = config.programs.keyed {
        loader.map_max_entries(buckets, 2 * config.keying.max_buckets.max(1));
    }
    if !times_calls(config) {
        // latency's calls in flight, preallocated (about 6 ms to create at full size): one
        // entry each for the other kinds, whose programs never touch them.
        loader.map_max_entries(MAP_ENTRIES, 1).map_max_entries(MAP_HIT_COSTS, 1);
    }
    if config.keying.by_key == KEY_STACK || config.events.stack != 0 {
        loader.map_max_entries(MAP_STACK_FRAMES, MAX_STACKS);
    }
    if config.events.on != 0 {
        loader
            .map_max_entries(MAP_EVENTS, config.event_buffer)
            .map_max_entries(MAP_EVENT_DROPS, config.slots.max(1))
            .map_max_entries(MAP_EVENT_SOURCES, config.slots.max(1));
        if config.events.args != 0 {
            loader.map_max_entries(MAP_EVENT_ARGS, EVENT_ARGS_IN_FLIGHT);
        }
    }
    for (map, entries) in test_map_sizes() {
        loader.map_max_entries(map, entries);
    }
}

/// Whether the programs are latency's, which keep each call in flight.
fn times_calls(config: &LoadConfig) -> bool {
    [MAP_LATENCY_STATS, MAP_LATENCY_STATS_BY].contains(&config.programs.map)
}

/// Calls in flight whose `--arg`s are stashed for their event (as many as latency's entries).
const EVENT_ARGS_IN_FLIGHT: u32 = 65536;

/// For the tests only: `PROBE_TEST_MAP_SIZES=ENTRIES=1,LATENCY_STATS_BY=2` makes those maps
/// that small, so a test can fill them and see every call counted under its reason.
fn test_map_sizes() -> Vec<(&'static str, u32)> {
    let sizes = std::env::var("PROBE_TEST_MAP_SIZES").unwrap_or_default();
    sizes
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(map, n)| Some((*SHARED_MAPS.iter().find(|m| **m == map.trim())?, n.trim().parse().ok()?)))
        .collect()
}

/// Runs `f` in a private mount namespace, then returns to the original one. In it,
/// /sys/kernel/btf/vmlinux reads as empty: the programs use no CO-RE relocations, but aya
/// 0.14's `EbpfLoader::new()` always parses that file (about 35 ms and 15 MiB of peak memory at
/// every start), and there the parse fails at once. `f` also gets a fresh bpffs, private to
/// the namespace. Needs CAP_SYS_ADMIN and a single-threaded process (setns requires it);
/// without, `f` runs here with no bpffs.
pub(super) fn in_private_mounts<R>(f: impl FnOnce(Option<&Path>) -> R) -> R {
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
        // (tests/integration/old_userland.rs) would leave it, and find no target path afterwards.
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
            // For whoever debugs it: the whole log, where PROBE_VERIFIER_LOG names a file.
            if let Some(path) = std::env::var_os("PROBE_VERIFIER_LOG") {
                let _ = std::fs::write(path, &log);
            }
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

#[cfg(test)]
mod tests {
    use super::{verifier_verdict, BPF_OBJECT, SHARED_MAPS};

    /// Kernels without cookies load a copy of the object per site: a map not shared would be
    /// made again for every site (SCAN is 4 KiB per CPU, EMPTY_STACK 8 KiB).
    #[test]
    fn every_map_of_the_object_is_shared_by_the_copies() {
        use object::{Object, ObjectSection, ObjectSymbol};
        let file = object::File::parse(BPF_OBJECT).unwrap();
        let maps = file.section_by_name("maps").unwrap().index();
        let names: Vec<&str> =
            file.symbols().filter(|s| s.section_index() == Some(maps)).filter_map(|s| s.name().ok()).collect();
        assert!(names.len() >= SHARED_MAPS.len(), "{names:?}");
        for name in names {
            assert!(SHARED_MAPS.contains(&name), "{name} is not in SHARED_MAPS");
        }
    }

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
