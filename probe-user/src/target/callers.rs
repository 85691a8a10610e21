//! `--by caller`: the function a return address is in. An address in a live process is looked
//! up in its memory map (which file, at which offset), then in that file's symbols; once the
//! process is gone, only a program that runs at its link addresses (Go's default) can still be
//! read, and anything else is shown as the bare address.
use super::elf::{Binary, Function};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One executable mapping of a process: `start..end` holds the file from `offset`.
#[derive(Clone, Debug)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: PathBuf,
}

/// A file's functions by address, for lookups.
struct Symbols {
    binary: Binary,
    /// (address, size, index in `binary.functions()`), by address.
    by_addr: Vec<(u64, u64, usize)>,
}

impl Symbols {
    fn of(binary: Binary) -> Symbols {
        let mut by_addr: Vec<(u64, u64, usize)> =
            binary.functions().iter().enumerate().map(|(i, f)| (f.addr, f.size.max(1), i)).collect();
        by_addr.sort_unstable();
        Symbols { binary, by_addr }
    }

    /// The function whose code holds `vaddr`. A return address can be one past a call at the
    /// very end of a function (a call to a function that never returns): look one byte back.
    fn function_at(&self, vaddr: u64) -> Option<&Function> {
        let at = vaddr.saturating_sub(1);
        let i = self.by_addr.partition_point(|&(addr, _, _)| addr <= at).checked_sub(1)?;
        let (addr, size, index) = self.by_addr[i];
        (at < addr + size).then(|| &self.binary.functions()[index])
    }
}

pub struct Callers {
    /// The traced program: read at its link addresses when no map says otherwise.
    program: PathBuf,
    /// Opened files (None: not readable as an ELF file).
    files: HashMap<PathBuf, Option<Symbols>>,
    /// The last memory map read of each process.
    maps: HashMap<u32, Vec<Mapping>>,
}

impl Callers {
    pub fn new(program: &Path) -> Callers {
        Callers { program: program.to_path_buf(), files: HashMap::new(), maps: HashMap::new() }
    }

    /// Reads the memory map of `pid` now, while it runs (`-c` programs may exit before the
    /// tables are made). Kept if the process is gone.
    pub fn snapshot(&mut self, pid: u32) {
        if let Some(map) = read_maps(pid) {
            self.maps.insert(pid, map);
        }
    }

    /// The name of the function holding return address `addr` in process `pid`.
    pub fn name(&mut self, pid: u32, addr: u64) -> String {
        if addr == 0 {
            return "?".into();
        }
        if !self.maps.get(&pid).is_some_and(|m| covers(m, addr)) {
            self.snapshot(pid);
        }
        let mapping = self.maps.get(&pid).and_then(|m| m.iter().find(|m| m.start <= addr && addr < m.end)).cloned();
        let found = match mapping {
            Some(m) => self
                .symbols(&m.path)
                .and_then(|s| Some((s, s.binary.code_vaddr(addr - m.start + m.offset)?)))
                .and_then(|(s, vaddr)| s.function_at(vaddr))
                .map(|f| f.name.clone()),
            None => {
                let program = self.program.clone();
                self.symbols(&program)
                    .filter(|s| s.binary.loads_at_link_addresses())
                    .and_then(|s| s.function_at(addr))
                    .map(|f| f.name.clone())
            }
        };
        found.unwrap_or_else(|| format!("{addr:#x}"))
    }

    fn symbols(&mut self, path: &Path) -> Option<&Symbols> {
        self.files.entry(path.to_path_buf()).or_insert_with(|| Binary::open(path).ok().map(Symbols::of)).as_ref()
    }
}

fn covers(map: &[Mapping], addr: u64) -> bool {
    map.iter().any(|m| m.start <= addr && addr < m.end)
}

/// The executable file mappings of `pid` (`/proc/PID/maps`: `start-end perms offset dev inode
/// path`), or None if it cannot be read (the process is gone).
fn read_maps(pid: u32) -> Option<Vec<Mapping>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let maps: Vec<Mapping> = text.lines().filter_map(parse_line).collect();
    (!maps.is_empty()).then_some(maps)
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (range, perms, offset) = (fields.next()?, fields.next()?, fields.next()?);
    let path = fields.nth(2)?;
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path: PathBuf::from(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn caller_of_this_test() -> u64 {
        // A return address in this test function's caller: our own frame's return address is
        // awkward to read portably, so use an address inside a known function instead.
        caller_of_this_test as *const () as u64 + 1
    }

    #[test]
    fn an_address_in_this_process_is_named_through_its_memory_map() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let mut callers = Callers::new(&exe);
        let name = callers.name(std::process::id(), caller_of_this_test());
        assert!(name.ends_with("caller_of_this_test"), "{name}");
        assert_eq!(callers.name(std::process::id(), 0), "?");
    }

    #[test]
    fn maps_lines_keep_executable_file_mappings() {
        let m = parse_line("5581a000-5581b000 r-xp 00002000 fe:01 123  /usr/bin/app").unwrap();
        assert_eq!((m.start, m.end, m.offset), (0x5581a000, 0x5581b000, 0x2000));
        assert!(parse_line("7ffd0000-7ffd1000 rw-p 00000000 00:00 0  [stack]").is_none());
        assert!(parse_line("7f000000-7f001000 r-xp 00000000 00:00 0").is_none());
    }
}
