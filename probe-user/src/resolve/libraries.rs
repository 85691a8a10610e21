//! Shared libraries: which file a library name means for a program (searched as the dynamic
//! loader searches) or for a running process (its memory map), and the linker cache.
use super::elf::{Binary, Dynamic};
use crate::error::user;
use anyhow::Result;
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the loader looks after its cache (Debian's multiarch directories first).
#[cfg(target_arch = "x86_64")]
const DEFAULT_DIRS: &[&str] =
    &["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
#[cfg(target_arch = "aarch64")]
const DEFAULT_DIRS: &[&str] =
    &["/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];

/// A library file is read whole to find its own DT_NEEDED; larger files are not libraries.
const MAX_LIBRARY_BYTES: u64 = 1 << 30;

/// How people name a library: BCC's `c` and bpftrace's `libc` both mean `libc.so.6`; a name
/// already starting with `lib` or `ld-`, or naming a `.so` file, stays as it is.
pub fn canonical_name(lib: &str) -> String {
    if lib.contains('/') || lib.contains(".so") || lib.starts_with("lib") || lib.starts_with("ld-") {
        lib.to_string()
    } else {
        format!("lib{lib}")
    }
}

/// `libc` names `libc.so.6`, `libc.so.6` itself; `libc` does not name `libcrypt.so.1`.
pub fn name_matches(file_name: &str, lib: &str) -> bool {
    file_name == lib || file_name.strip_prefix(lib).is_some_and(|rest| rest.starts_with(".so") || rest.starts_with('.'))
}

/// The libraries a program loads, in the dynamic loader's order: breadth first over DT_NEEDED,
/// each name searched in the needing file's DT_RPATH (and the program's; only without a
/// DT_RUNPATH), LD_LIBRARY_PATH, the needing file's DT_RUNPATH, the linker cache, then the
/// default directories. Names that cannot be found are left out (the loader would fail).
pub fn load_order(program: &Path, dynamic: &Dynamic) -> Vec<PathBuf> {
    let mut order: Vec<PathBuf> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<(PathBuf, Dynamic)> = VecDeque::from([(program.to_path_buf(), dynamic.clone())]);
    while let Some((needer, needer_dynamic)) = queue.pop_front() {
        for name in &needer_dynamic.needed {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(path) = locate(name, &needer, &needer_dynamic, program, dynamic) else { continue };
            if order.contains(&path) {
                continue;
            }
            let library_dynamic = read_dynamic(&path);
            order.push(path.clone());
            queue.push_back((path, library_dynamic));
        }
    }
    order
}

/// The file the loader would pick for DT_NEEDED `name` of `needer`.
fn locate(
    name: &str,
    needer: &Path,
    needer_dynamic: &Dynamic,
    program: &Path,
    program_dynamic: &Dynamic,
) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|p| is_x86_64_elf(p));
    }
    let origin = |of: &Path| of.canonicalize().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let expand = |dir: &str, of: &Path| -> Option<PathBuf> {
        if dir.contains("$ORIGIN") || dir.contains("${ORIGIN}") {
            let o = origin(of)?.display().to_string();
            Some(PathBuf::from(dir.replace("${ORIGIN}", &o).replace("$ORIGIN", &o)))
        } else {
            Some(PathBuf::from(dir))
        }
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    if needer_dynamic.runpath.is_empty() {
        dirs.extend(needer_dynamic.rpath.iter().filter_map(|d| expand(d, needer)));
        if program_dynamic.runpath.is_empty() {
            dirs.extend(program_dynamic.rpath.iter().filter_map(|d| expand(d, program)));
        }
    }
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.extend(needer_dynamic.runpath.iter().filter_map(|d| expand(d, needer)));
    let found_in_dirs = dirs.iter().map(|d| d.join(name)).find(|p| is_x86_64_elf(p));
    found_in_dirs
        .or_else(|| cache().iter().find(|e| e.name == name && e.x86_64).map(|e| e.path.clone()))
        .or_else(|| DEFAULT_DIRS.iter().map(|d| Path::new(d).join(name)).find(|p| is_x86_64_elf(p)))
}

/// A regular file starting like a 64-bit ELF file of probe's architecture (x86-64, or arm64 for
/// an arm64 probe; the loader skips other ones).
fn is_x86_64_elf(path: &Path) -> bool {
    use std::io::Read;
    if !path.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok()
        && head.starts_with(b"\x7fELF\x02")
        && u16::from_le_bytes([head[18], head[19]]) == crate::arch::ELF_MACHINE
}

fn read_dynamic(path: &Path) -> Dynamic {
    let regular = path.metadata().is_ok_and(|m| m.is_file() && m.len() <= MAX_LIBRARY_BYTES);
    match regular.then(|| std::fs::read(path).ok()).flatten() {
        Some(data) => Dynamic::read(&data),
        None => Dynamic::default(),
    }
}

/// The file `lib` names in a program's load order.
pub fn in_program(program: &Path, dynamic: &Dynamic, lib: &str) -> Option<PathBuf> {
    load_order(program, dynamic).into_iter().find(|p| file_name_matches(p, lib))
}

fn file_name_matches(path: &Path, lib: &str) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| name_matches(n, lib))
}

/// A library mapped in a process: its name, and where it is read (`path`, or the mapping
/// itself when that path no longer names the file the process maps: deleted or replaced, as a
/// library upgraded under a running server is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub path: PathBuf,
    pub through: PathBuf,
}

impl Mapped {
    pub fn open(&self) -> Result<Binary> {
        Binary::open_through(&self.through, &self.path)
    }
}

/// The shared libraries mapped in a process, in the program's load order first, then the
/// rest (opened later with dlopen) in address order.
pub fn of_process(pid: i32, program: &Path, dynamic: &Dynamic) -> Result<Vec<Mapped>> {
    let mapped = mapped_files(pid)?;
    let mut order: Vec<Mapped> =
        load_order(program, dynamic).into_iter().filter_map(|p| mapped.iter().find(|m| m.path == p).cloned()).collect();
    for m in mapped {
        let library = m.path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(".so"));
        if library && !order.contains(&m) && m.path != program {
            order.push(m);
        }
    }
    Ok(order)
}

/// Files mapped in a process (`/proc/PID/maps`), each once, in address order.
fn mapped_files(pid: i32) -> Result<Vec<Mapped>> {
    let maps =
        super::maps::read(pid as u32).map_err(|e| user(format!("-p {pid}: cannot read its memory map ({e})")))?;
    let mut files: Vec<Mapped> = Vec::new();
    for m in maps {
        if !files.iter().any(|f| f.path == m.path) {
            let through = if m.deleted { m.map_files(pid as u32) } else { m.path.clone() };
            files.push(Mapped { path: m.path, through });
        }
    }
    Ok(files)
}

/// The library's file as mapped in the process (`/proc/PID/maps`).
pub fn in_process(pid: i32, lib: &str) -> Result<Mapped> {
    mapped_files(pid)?
        .into_iter()
        .find(|m| file_name_matches(&m.path, lib))
        .ok_or_else(|| user(format!("{lib}: not loaded by process {pid}; check /proc/{pid}/maps for its name")))
}

/// One library of the dynamic linker's cache (`ldconfig -p`).
struct CacheEntry {
    name: String,
    x86_64: bool,
    path: PathBuf,
}

/// The linker cache, read once.
fn cache() -> &'static [CacheEntry] {
    static CACHE: OnceLock<Vec<CacheEntry>> = OnceLock::new();
    CACHE.get_or_init(|| {
        // root's PATH usually has /sbin, a sudo or CI environment may not.
        let Some(out) = ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"]
            .iter()
            .find_map(|cmd| std::process::Command::new(cmd).arg("-p").output().ok())
        else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (head, path) = l.split_once(" => ")?;
                let name = head.split_whitespace().next()?.to_string();
                Some(CacheEntry {
                    name,
                    x86_64: head.contains(crate::arch::LDCONFIG_TAG),
                    path: PathBuf::from(path.trim()),
                })
            })
            .collect()
    })
}

/// The library's file from the dynamic linker's cache (`ldconfig -p`), x86-64 first.
pub fn in_cache(lib: &str) -> Result<PathBuf> {
    let mut matches: Vec<&CacheEntry> = cache().iter().filter(|e| name_matches(&e.name, lib)).collect();
    matches.sort_by_key(|e| !e.x86_64);
    matches
        .first()
        .map(|e| e.path.clone())
        .ok_or_else(|| user(format!("{lib}: not in the linker cache (ldconfig -p); give the library's path")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names_as_bcc_and_bpftrace_write_them() {
        assert_eq!(canonical_name("c"), "libc");
        assert_eq!(canonical_name("libc"), "libc");
        assert_eq!(canonical_name("libc.so.6"), "libc.so.6");
        assert_eq!(canonical_name("sqlite3"), "libsqlite3");
        assert_eq!(canonical_name("ld-linux-x86-64.so.2"), "ld-linux-x86-64.so.2");
        assert!(name_matches("libc.so.6", "libc"));
        assert!(name_matches("libc.so.6", "libc.so.6"));
        assert!(name_matches("libsqlite3.so.0", "libsqlite3"));
        assert!(!name_matches("libcrypt.so.1", "libc"));
    }

    /// This test program's own libraries, as `ldd` lists them: libc among them, found in a
    /// real directory.
    #[test]
    fn load_order_of_this_test_program_has_libc() {
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(&exe).unwrap();
        let order = load_order(&exe, &Dynamic::read(&data));
        assert!(order.iter().any(|p| file_name_matches(p, "libc.so.6") && p.is_file()), "{order:?}");
    }
}
