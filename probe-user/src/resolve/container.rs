//! `--cgroup PATH` and `--container ID|NAME`: the processes of one cgroup v2 (and of every
//! cgroup below it) are the ones measured. The kernel programs compare the cgroup's id with the
//! current task's cgroup ancestors at every hit, so processes started later are included; here
//! the cgroup is found and checked, and the program's path is resolved inside the container
//! (through `/proc/PID/root` of one of its processes) so its own files and libraries are read.
use super::libraries::Mapped;
use crate::error::user;
use crate::shared::Within;
use anyhow::Result;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// statfs(2) magic numbers of the two cgroup file systems.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;

/// Where runtimes keep their containers' names: containers/storage (podman, CRI-O, buildah)
/// lists every container with its names; Docker keeps one config per container.
const STORAGE_LISTS: &str = "/var/lib/containers/storage";
const DOCKER_CONTAINERS: &str = "/var/lib/docker/containers";
/// Bounds on the runtime state files read as root (all are small JSON files).
const MAX_STATE_BYTES: u64 = 64 << 20;
/// Symbolic links followed inside a container's root before giving up (as the kernel's 40).
const MAX_LINKS: usize = 40;

/// The processes chosen by `--cgroup` or `--container`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The cgroup's v2 id (its directory's inode number), which the programs compare.
    pub cgroup_id: u64,
    /// The cgroup's path below the root of the v2 hierarchy, as /proc/PID/cgroup shows it.
    pub cgroup: String,
    /// Its directory, where its processes are listed.
    pub dir: PathBuf,
    /// `--container`: the container's full id.
    pub container: Option<String>,
    /// A process in the cgroup (the lowest pid, a container's first), through whose root the
    /// program and its libraries are read; none when the cgroup has no process yet.
    pub anchor: Option<i32>,
}

impl Selection {
    /// The selection the command line asks for.
    pub fn of(within: &Within) -> Result<Selection> {
        match within {
            Within::Container(query) => Selection::container(query),
            Within::Cgroup(path) => Selection::cgroup(path),
        }
    }

    /// `--cgroup PATH`: a directory of the cgroup v2 hierarchy, by its path here or by the path
    /// /proc/PID/cgroup shows (below the hierarchy's root).
    pub fn cgroup(path: &Path) -> Result<Selection> {
        let mount = v2_mount().ok_or_else(|| {
            user(format!(
                "--cgroup {}: this system has no cgroup v2 hierarchy mounted, and probe selects \
                 processes by their cgroup v2 id; mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) \
                 or trace the program without --cgroup",
                path.display()
            ))
        })?;
        let dir = cgroup_dir(path, &mount)?;
        let cgroup = below_root(&dir, &mount);
        let cgroup_id = std::fs::metadata(&dir).map_err(|e| unreadable("--cgroup", &dir, e))?.ino();
        let anchor = processes_in(&dir).into_iter().next();
        Ok(Selection { cgroup_id, cgroup, dir, container: None, anchor })
    }

    /// `--container ID|NAME`: a running container, by a unique prefix of its id or by its
    /// name (podman, CRI-O and Docker keep names in files probe reads); its cgroup is the one
    /// its runtime made for it, found among the cgroups of running processes.
    pub fn container(query: &str) -> Result<Selection> {
        let Some(mount) = v2_mount() else {
            return Err(user(format!(
                "--container {query}: this system has no cgroup v2 hierarchy mounted, and probe \
                 selects a container's processes by their cgroup v2 id; trace the program with -p PID instead"
            )));
        };
        let running = running_containers(&mount);
        let id = match container_id(query, &running)? {
            Some(id) => id,
            None => match named(query)? {
                Some(id) if running.contains_key(&id) => id,
                Some(id) => {
                    return Err(user(format!(
                        "--container {query}: container {} has no running process; start it, then run probe",
                        short(&id)
                    )))
                }
                None => {
                    return Err(user(format!(
                        "--container {query}: no running container has this id or name (read from the \
                         cgroup v2 hierarchy at {}, and the names in {STORAGE_LISTS} and {DOCKER_CONTAINERS}); \
                         `podman ps`, `docker ps` or `crictl ps` list them (probe in a container needs the \
                         host's cgroup hierarchy mounted at the same place)",
                        mount.display()
                    )))
                }
            },
        };
        let cgroup = running[&id].clone();
        let dir = mount.join(cgroup.trim_start_matches('/'));
        let cgroup_id = std::fs::metadata(&dir).map_err(|e| unreadable("--container", &dir, e))?.ino();
        let anchor = processes_in(&dir).into_iter().next();
        if anchor.is_none() {
            return Err(user(format!(
                "--container {query}: container {} has no running process; start it, then run probe",
                short(&id)
            )));
        }
        Ok(Selection { cgroup_id, cgroup, dir, container: Some(id), anchor })
    }

    /// Who is traced, for the `probe: tracing ...` line.
    pub fn describe(&self) -> String {
        match &self.container {
            Some(id) => format!("container {} (cgroup {})", short(id), self.cgroup),
            None => format!("cgroup {}", self.cgroup),
        }
    }

    /// The label every metric series carries under `--serve`.
    pub fn label(&self) -> (String, String) {
        match &self.container {
            Some(id) => ("container".into(), id.clone()),
            None => ("cgroup".into(), self.cgroup.clone()),
        }
    }

    /// The program's path as probe opens and attaches it: `binary` as the container's
    /// processes see it, read through the root of one of them (`/proc/PID/root`), its symbolic
    /// links followed inside that root. The first process whose root has it is used (a cgroup
    /// of many containers, such as a node's pods, holds other images too). With no process yet
    /// (an empty `--cgroup`), the path as it is here.
    pub fn program(&self, binary: &Path) -> Result<PathBuf> {
        let Some(pid) = self.anchor else {
            if self.container.is_some() {
                return Err(user("--container: the container has no running process; start it, then run probe"));
            }
            return Ok(binary.to_path_buf());
        };
        let option = if self.container.is_some() { "--container" } else { "--cgroup" };
        if !binary.is_absolute() {
            return Err(user(format!(
                "{option}: {} is read inside {}; give its absolute path there (e.g. /app/server)",
                binary.display(),
                self.describe()
            )));
        }
        let others = processes_in(&self.dir).into_iter().filter(|&p| p != pid);
        let candidates: Vec<i32> = std::iter::once(pid).chain(others).collect();
        let found = |p: i32| {
            let root = PathBuf::from(format!("/proc/{p}/root"));
            let inside = resolve_in_root(&root, binary).ok()?;
            Some(root.join(inside.strip_prefix("/").unwrap_or(&inside)))
        };
        // A process running the file first: where several images have a file at that path,
        // the one a process executes is the program meant.
        let running = candidates.iter().find_map(|&p| found(p).filter(|path| is_executable_of(path, p)));
        if let Some(path) = running.or_else(|| candidates.iter().find_map(|&p| found(p))) {
            return Ok(path);
        }
        // Nowhere: the first process's reason.
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let inside = resolve_in_root(&root, binary).map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                return user(format!(
                    "{option}: cannot read {} inside {} through {} ({e}); reading another process's \
                     files needs root or CAP_SYS_PTRACE",
                    binary.display(),
                    self.describe(),
                    root.display()
                ));
            }
            user(format!(
                "{option}: {} in {} (read through {}, and the roots of its other processes): {e}; give the \
                 program's path as the container sees it",
                binary.display(),
                self.describe(),
                root.display()
            ))
        })?;
        Ok(root.join(inside.strip_prefix("/").unwrap_or(&inside)))
    }
}

/// Whether process `pid` executes the file at `path`.
fn is_executable_of(path: &Path, pid: i32) -> bool {
    let (Ok(file), Ok(exe)) = (std::fs::metadata(path), std::fs::metadata(format!("/proc/{pid}/exe"))) else {
        return false;
    };
    file.dev() == exe.dev() && file.ino() == exe.ino()
}

/// Refuses a selection on a kernel whose uprobe programs cannot read a task's cgroup
/// ancestors (`bpf_get_current_ancestor_cgroup_id`, Linux 5.10 for tracing programs).
pub fn ensure_kernel_support(selection: &Selection) -> Result<()> {
    use aya::programs::ProgramType;
    use aya::sys::{is_helper_supported, BpfHelper};
    let helper = BpfHelper::BPF_FUNC_get_current_ancestor_cgroup_id;
    if matches!(is_helper_supported(ProgramType::KProbe, helper), Ok(true)) {
        return Ok(());
    }
    Err(user(format!(
        "Linux {} cannot tell a uprobe's process by cgroup (bpf_get_current_ancestor_cgroup_id, 5.10+), \
         which selecting {} needs; trace its processes with -p PID instead",
        crate::features::Kernel::release(),
        selection.describe()
    )))
}

/// The shared libraries a process of the selection maps (the first one running `program`,
/// else the first), each read through that process's root: the program's own DT_NEEDED
/// libraries first, in their order, then the rest as mapped.
pub fn libraries(selection: &Selection, program: &Path, needed: &[String]) -> Result<Vec<Mapped>> {
    let Some(pid) = runs(selection, program).or(selection.anchor) else {
        return Ok(Vec::new());
    };
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| {
        user(format!("{}: cannot read the memory map of its process {pid} ({e})", selection.describe()))
    })?;
    let mut files: Vec<PathBuf> = Vec::new();
    for path in maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.starts_with('/')) {
        let path = PathBuf::from(format!("/proc/{pid}/root{path}"));
        let library = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(".so"));
        if library && !files.contains(&path) {
            files.push(path);
        }
    }
    let rank = |p: &PathBuf| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        needed.iter().position(|n| n == name).unwrap_or(needed.len())
    };
    files.sort_by_key(rank); // stable: the rest keep the map's order
    Ok(files.into_iter().map(|path| Mapped { through: path.clone(), path }).collect())
}

/// The first process of the selection whose executable is `program` (the same file).
fn runs(selection: &Selection, program: &Path) -> Option<i32> {
    processes_in(&selection.dir).into_iter().find(|&pid| is_executable_of(program, pid))
}

fn unreadable(option: &str, path: &Path, e: std::io::Error) -> anyhow::Error {
    user(format!("{option}: cannot read {} ({e}); run probe as root", path.display()))
}

/// The first 12 characters of an id, as `podman ps` and `docker ps` show it.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
/// a hybrid system), from /proc/self/mountinfo.
fn v2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (mount, rest) = line.split_once(" - ")?;
        (rest.split_whitespace().next()? == "cgroup2").then(|| unescape(mount.split_whitespace().nth(4)?))?
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> Option<PathBuf> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Some(PathBuf::from(OsStr::from_bytes(&out)))
}

/// The cgroup v2 directory `--cgroup PATH` names: PATH itself, or PATH below the hierarchy's
/// root. A cgroup v1 directory, a file or anything else is refused, saying why.
fn cgroup_dir(path: &Path, mount: &Path) -> Result<PathBuf> {
    let below = mount.join(path.strip_prefix("/").unwrap_or(path));
    let dir = if path.is_absolute() && path.exists() { path.to_path_buf() } else { below.clone() };
    let meta = std::fs::metadata(&dir).map_err(|_| {
        user(format!(
            "--cgroup {}: no such cgroup (looked at {}); give a directory of the cgroup v2 hierarchy \
             (mounted at {}), or the path /proc/PID/cgroup shows after `0::`",
            path.display(),
            if dir == path { dir.display().to_string() } else { format!("{} and {}", path.display(), dir.display()) },
            mount.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(user(format!(
            "--cgroup {}: not a directory; give a cgroup's directory under {}",
            dir.display(),
            mount.display()
        )));
    }
    match fs_magic(&dir) {
        Some(CGROUP2_SUPER_MAGIC) => Ok(dir),
        Some(CGROUP_SUPER_MAGIC) => Err(user(format!(
            "--cgroup {}: a cgroup v1 directory; probe selects processes by their cgroup v2 id, so give the \
             same group in the v2 hierarchy at {}{}",
            dir.display(),
            mount.display(),
            v1_equivalent(&dir, mount).map(|p| format!(" ({})", p.display())).unwrap_or_default()
        ))),
        _ => Err(user(format!(
            "--cgroup {}: not in a cgroup file system; give a directory of the cgroup v2 hierarchy at {}",
            dir.display(),
            mount.display()
        ))),
    }
}

fn fs_magic(path: &Path) -> Option<i64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } == 0).then_some(stat.f_type as i64)
}

/// The v2 directory with the same path below its root as a v1 directory has below its
/// hierarchy's mount point (`/sys/fs/cgroup/memory/a/b` -> `/sys/fs/cgroup/unified/a/b`), if any.
fn v1_equivalent(dir: &Path, mount: &Path) -> Option<PathBuf> {
    let mut hierarchy = dir.to_path_buf();
    while let Some(parent) = hierarchy.parent() {
        if fs_magic(parent) != Some(CGROUP_SUPER_MAGIC) {
            break;
        }
        hierarchy = parent.to_path_buf();
    }
    let candidate = mount.join(dir.strip_prefix(&hierarchy).ok()?);
    (candidate != mount && candidate.is_dir()).then_some(candidate)
}

/// `/sys/fs/cgroup/unified/a/b` -> `/a/b`, as /proc/PID/cgroup writes it.
fn below_root(dir: &Path, mount: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mount = mount.canonicalize().unwrap_or_else(|_| mount.to_path_buf());
    match canonical.strip_prefix(&mount) {
        Ok(rest) => format!("/{}", rest.display()),
        Err(_) => dir.display().to_string(),
    }
}

/// Cgroup directories visited at most when walking the hierarchy (a busy Kubernetes node has
/// a few thousand).
const MAX_CGROUPS: usize = 100_000;

/// Calls `visit` on `dir` and each cgroup below it (not through symbolic links, at most
/// `MAX_CGROUP_LEVELS` deep); `visit` returns whether to look below the directory.
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path) -> bool) {
    let mut pending = vec![(dir.to_path_buf(), 0)];
    let mut visited = 0;
    while let Some((dir, depth)) = pending.pop() {
        visited += 1;
        if visited > MAX_CGROUPS || !visit(&dir) || depth >= probe_ebpf::MAX_CGROUP_LEVELS {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push((entry.path(), depth + 1));
            }
        }
    }
}

/// The processes in the cgroup at `dir` or below it (their `cgroup.procs`, so any cgroup
/// namespace probe runs in does not matter), lowest pid first.
fn processes_in(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    walk(dir, &mut |d| {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        true
    });
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The containers whose runtime made them a cgroup: full id -> that cgroup's path below the
/// hierarchy's root (`mount`).
fn running_containers(mount: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    walk(mount, &mut |dir| {
        let below = below_root(dir, mount);
        match container_cgroup(&below) {
            Some((id, cgroup)) => {
                found.entry(id).or_insert(cgroup);
                false // its own sub-cgroups name no other container
            }
            None => true,
        }
    });
    found
}

/// The container a cgroup path belongs to, and the container's own cgroup (the path up to the
/// component that names it). Runtimes name that component after the id: podman `libpod-ID`
/// (`.scope` under systemd), Docker `docker-ID.scope` or `/docker/ID`, containerd
/// `cri-containerd-ID.scope` or a bare `ID` under kubepods, CRI-O `crio-ID.scope`. Their
/// monitors' cgroups (`libpod-conmon-ID`, `crio-conmon-ID`) name no container.
fn container_cgroup(path: &str) -> Option<(String, String)> {
    let mut prefix = String::new();
    for component in path.split('/').filter(|c| !c.is_empty()) {
        prefix.push('/');
        prefix.push_str(component);
        let name = component.strip_suffix(".scope").unwrap_or(component);
        let id = ["libpod-", "docker-", "cri-containerd-", "crio-", ""]
            .iter()
            .find_map(|p| name.strip_prefix(p).filter(|rest| is_container_id(rest)));
        if let Some(id) = id {
            return Some((id.to_string(), prefix));
        }
    }
    None
}

/// Container ids are 64 lowercase hex digits (sha256), in every runtime above.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The running container whose id starts with `query`, if `query` can be an id prefix; an
/// ambiguous prefix is refused.
fn container_id(query: &str, running: &BTreeMap<String, String>) -> Result<Option<String>> {
    let query = query.to_ascii_lowercase();
    if query.is_empty() || query.len() > 64 || !query.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let matches: Vec<&String> = running.keys().filter(|id| id.starts_with(&query)).collect();
    match matches.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some((*id).clone())),
        many => Err(user(format!(
            "--container {query}: {} running containers have ids starting so ({}); give more of the id",
            many.len(),
            many.iter().map(|id| short(id)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The id of the container named `name`, from the runtimes' own records.
fn named(name: &str) -> Result<Option<String>> {
    let mut ids: Vec<String> = storage_names(name);
    ids.extend(docker_names(name));
    ids.sort();
    ids.dedup();
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(id.clone())),
        many => Err(user(format!(
            "--container {name}: {} containers have this name ({}); give the id",
            many.len(),
            many.iter().map(|id| short(id)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// A runtime's state file: a regular file within bounds, or nothing.
fn read_state(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    (meta.is_file() && meta.len() <= MAX_STATE_BYTES).then(|| std::fs::read(path).ok())?
}

/// containers/storage: `<driver>-containers/containers.json` lists `{"id", "names": [...]}`.
fn storage_names(name: &str) -> Vec<String> {
    let Ok(dirs) = std::fs::read_dir(STORAGE_LISTS) else { return Vec::new() };
    let mut ids = Vec::new();
    for dir in dirs.flatten().filter(|d| d.file_name().to_string_lossy().ends_with("-containers")) {
        let Some(data) = read_state(&dir.path().join("containers.json")) else { continue };
        let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(&data) else { continue };
        for container in &list {
            let names = container["names"].as_array().map(Vec::as_slice).unwrap_or_default();
            if names.iter().any(|n| n.as_str() == Some(name)) {
                ids.extend(container["id"].as_str().filter(|id| is_container_id(id)).map(String::from));
            }
        }
    }
    ids
}

/// Docker: `containers/ID/config.v2.json` holds `"Name": "/NAME"`.
fn docker_names(name: &str) -> Vec<String> {
    let Ok(dirs) = std::fs::read_dir(DOCKER_CONTAINERS) else { return Vec::new() };
    let wanted = format!("/{}", name.trim_start_matches('/'));
    dirs.flatten()
        .filter_map(|dir| {
            let id = dir.file_name().to_str().filter(|id| is_container_id(id))?.to_string();
            let config: serde_json::Value =
                serde_json::from_slice(&read_state(&dir.path().join("config.v2.json"))?).ok()?;
            (config["Name"].as_str() == Some(wanted.as_str())).then_some(id)
        })
        .collect()
}

/// `path` (absolute) as a process whose root is `root` sees it: each symbolic link is followed
/// inside `root`, an absolute link from `root` itself, `..` never above it. Returns the path
/// below `root` with no links left, so the kernel's own lookup of `root` + it (when attaching)
/// reaches the same file.
pub fn resolve_in_root(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let mut pending: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut resolved = PathBuf::from("/");
    let mut links = 0;
    while let Some(next) = pending.pop() {
        let mut components: Vec<Component> = next.components().collect();
        components.reverse();
        while let Some(component) = components.pop() {
            match component {
                Component::RootDir => resolved = PathBuf::from("/"),
                Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => {
                    let candidate = resolved.join(name);
                    let here = root.join(candidate.strip_prefix("/").unwrap_or(&candidate));
                    let meta = std::fs::symlink_metadata(&here)?;
                    if !meta.file_type().is_symlink() {
                        resolved = candidate;
                        continue;
                    }
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    // The rest of this path waits below the link's target.
                    let rest: PathBuf = components.iter().rev().collect();
                    pending.push(rest);
                    pending.push(std::fs::read_link(&here)?);
                    break;
                }
            }
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "220ba4af1ab8013ad104acb1ec924e74f7f4171c8b93b4b0c81cbb974b2a4d5e";

    #[test]
    fn each_runtime_s_layout_names_its_container() {
        let layouts = [
            format!("/libpod_parent/libpod-{ID}"),
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/cri-containerd-{ID}.scope"
            ),
            format!("/kubepods/besteffort/pod1a2b-3c/{ID}"),
            format!("/kubepods.slice/kubepods-pod1a2b.slice/crio-{ID}.scope"),
        ];
        for path in &layouts {
            let (id, cgroup) = container_cgroup(path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(id, ID);
            assert!(path.starts_with(&cgroup) && cgroup.contains(ID) && !cgroup.ends_with("/container"), "{cgroup}");
        }
        for monitor in [format!("/machine.slice/libpod-conmon-{ID}.scope"), format!("/crio-conmon-{ID}.scope")] {
            assert_eq!(container_cgroup(&monitor), None, "{monitor}");
        }
        assert_eq!(container_cgroup("/user.slice/user-0.slice/session-1.scope"), None);
        assert_eq!(container_cgroup("/"), None);
    }

    #[test]
    fn ids_are_matched_by_unique_prefix() {
        let other = format!("221{}", &ID[3..]);
        let running: BTreeMap<String, String> =
            [(ID.to_string(), "/a".to_string()), (other.clone(), "/b".to_string())].into();
        assert_eq!(container_id("220b", &running).unwrap().as_deref(), Some(ID));
        assert_eq!(container_id(&other.to_uppercase(), &running).unwrap(), Some(other));
        assert!(container_id("22", &running).unwrap_err().to_string().contains("2 running containers"));
        assert_eq!(container_id("web", &running).unwrap(), None);
        assert_eq!(container_id("fff", &running).unwrap(), None);
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape(r"/sys/fs/cgroup/unified").unwrap(), PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(unescape(r"/mnt/a\040b\134c").unwrap(), PathBuf::from(r"/mnt/a b\c"));
    }

    #[test]
    fn links_are_followed_inside_the_root() {
        let root = std::env::temp_dir().join(format!("probe-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("opt/app")).unwrap();
        std::fs::write(root.join("opt/app/server"), b"x").unwrap();
        // Absolute links point into the root, never at this machine's files.
        std::os::unix::fs::symlink("/opt/app/server", root.join("usr/bin/server")).unwrap();
        std::os::unix::fs::symlink("../opt", root.join("usr/o")).unwrap();
        std::os::unix::fs::symlink("/", root.join("up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let resolve = |p: &str| resolve_in_root(&root, Path::new(p));
        assert_eq!(resolve("/usr/bin/server").unwrap(), PathBuf::from("/opt/app/server"));
        assert_eq!(resolve("/usr/o/app/server").unwrap(), PathBuf::from("/opt/app/server"));
        assert_eq!(resolve("/up/../../up/opt/app/server").unwrap(), PathBuf::from("/opt/app/server"));
        assert_eq!(resolve("/loop").unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert!(resolve("/usr/bin/missing").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
