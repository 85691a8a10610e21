//! `--by caller`: the function a return address is in. An address in a live process is looked
//! up in its memory map (which file, at which offset), then in that file's symbols; once the
//! process is gone, only a program that runs at its link addresses (Go's default) can still be
//! read, and anything else is shown as the bare address.
//!
//! A file is known by its device and inode, not its path: a program replaced on disk while it
//! runs (its path now names another file) is read through the mapping itself
//! (`/proc/PID/map_files`), held open from the first time the map is read.
use super::elf::{Binary, Function, Runtime};
use super::inlined::InlineTrees;
use super::maps::{self, Mapping};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A file's functions by address, for lookups.
struct Symbols {
    binary: Binary,
    /// (address, size, index in `binary.functions()`), by address.
    by_addr: Vec<(u64, u64, usize)>,
    /// `--by stack` on Go: the inline trees, read at the first stack (None: not read yet).
    inline: Option<Option<InlineTrees>>,
}

impl Symbols {
    fn of(binary: Binary) -> Symbols {
        let mut by_addr: Vec<(u64, u64, usize)> =
            binary.functions().iter().enumerate().map(|(i, f)| (f.addr, f.size.max(1), i)).collect();
        by_addr.sort_unstable();
        Symbols { binary, by_addr, inline: None }
    }

    /// The functions at return address `vaddr`, innermost first: the calls the compiler
    /// inlined there (Go's inline trees), then the function whose code holds it.
    fn frames_at(&mut self, vaddr: u64) -> Option<Vec<String>> {
        let name = self.function_at(vaddr)?.name.clone();
        let mut frames = Vec::new();
        if matches!(self.binary.runtime, Runtime::Go(_)) {
            let binary = &self.binary;
            let trees = self.inline.get_or_insert_with(|| InlineTrees::of(binary).ok());
            if let Some(trees) = trees {
                // The call instruction is just before the return address.
                frames = trees.at(binary, vaddr.saturating_sub(1));
            }
        }
        frames.push(name);
        Some(frames)
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

/// Which file: device (major, minor) and inode, as the memory map gives them.
type FileId = (u32, u32, u64);

pub struct Callers {
    /// The traced program (where it is read): used at its link addresses when no map says
    /// otherwise.
    program: PathBuf,
    /// Opened files (None: not readable as an ELF file).
    files: HashMap<FileId, Option<Symbols>>,
    /// The program, read without a map.
    program_symbols: Option<Option<Symbols>>,
    /// Each executable file mapped, opened through its mapping while the process ran.
    held: HashMap<FileId, File>,
    /// The last memory map read of each process (executable mappings).
    maps: HashMap<u32, Vec<Mapping>>,
    /// `--by stack`: each return address's frames, once named.
    frames: HashMap<(u32, u64), Vec<String>>,
}

impl Callers {
    pub fn new(program: &Path) -> Callers {
        Callers {
            program: program.to_path_buf(),
            files: HashMap::new(),
            program_symbols: None,
            held: HashMap::new(),
            maps: HashMap::new(),
            frames: HashMap::new(),
        }
    }

    /// `--by stack`: the functions of a stack in process `pid` walked as return addresses (the
    /// traced function's caller first), inlined Go calls expanded; `truncated` adds a last
    /// frame saying the walk stopped before the stack's end.
    pub fn stack(&mut self, pid: u32, addrs: &[u64], truncated: bool) -> Vec<String> {
        let mut out = Vec::new();
        for &addr in addrs {
            if let Some(frames) = self.frames.get(&(pid, addr)) {
                out.extend(frames.iter().cloned());
                continue;
            }
            let frames = self.frames_at(pid, addr);
            out.extend(frames.iter().cloned());
            self.frames.insert((pid, addr), frames);
        }
        if truncated {
            out.push("[truncated]".into());
        }
        out
    }

    fn frames_at(&mut self, pid: u32, addr: u64) -> Vec<String> {
        if addr == 0 {
            return vec!["?".into()];
        }
        if !self.maps.get(&pid).is_some_and(|m| covers(m, addr)) {
            self.snapshot(pid);
        }
        let mapping = self.maps.get(&pid).and_then(|m| m.iter().find(|m| m.start <= addr && addr < m.end)).cloned();
        let found = match mapping {
            Some(m) => self.symbols(&m).and_then(|s| {
                let vaddr = s.binary.code_vaddr(addr - m.start + m.offset)?;
                s.frames_at(vaddr)
            }),
            None => {
                let program = &self.program;
                self.program_symbols
                    .get_or_insert_with(|| Binary::open(program).ok().map(Symbols::of))
                    .as_mut()
                    .filter(|s| s.binary.loads_at_link_addresses())
                    .and_then(|s| s.frames_at(addr))
            }
        };
        found.unwrap_or_else(|| vec![format!("{addr:#x}")])
    }

    /// Reads the memory map of `pid` now, while it runs (`-c` programs may exit before the
    /// tables are made), and holds each newly mapped file open. Kept if the process is gone.
    /// Returns whether the map held any executable file (none: gone, or not yet mapped).
    pub fn snapshot(&mut self, pid: u32) -> bool {
        let Ok(map) = maps::read(pid) else { return false };
        let map: Vec<Mapping> = map.into_iter().filter(|m| m.executable).collect();
        if map.is_empty() {
            return false;
        }
        for m in &map {
            if let std::collections::hash_map::Entry::Vacant(held) = self.held.entry(m.file) {
                if let Ok(file) = File::open(m.map_files(pid)) {
                    held.insert(file);
                }
            }
        }
        self.maps.insert(pid, map);
        true
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
                .symbols(&m)
                .map(|s| &*s)
                .and_then(|s| Some((s, s.binary.code_vaddr(addr - m.start + m.offset)?)))
                .and_then(|(s, vaddr)| s.function_at(vaddr))
                .map(|f| f.name.clone()),
            None => {
                let program = &self.program;
                self.program_symbols
                    .get_or_insert_with(|| Binary::open(program).ok().map(Symbols::of))
                    .as_ref()
                    .filter(|s| s.binary.loads_at_link_addresses())
                    .and_then(|s| s.function_at(addr))
                    .map(|f| f.name.clone())
            }
        };
        found.unwrap_or_else(|| format!("{addr:#x}"))
    }

    /// The symbols of a mapping's file: through the descriptor held for it, or by its path
    /// while that still names it.
    fn symbols(&mut self, m: &Mapping) -> Option<&mut Symbols> {
        let held = self.held.get(&m.file).map(|f| PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())));
        self.files
            .entry(m.file)
            .or_insert_with(|| {
                let binary = match held {
                    Some(fd) => Binary::open_through(&fd, &m.path),
                    None if !m.deleted => Binary::open(&m.path),
                    None => return None,
                };
                binary.ok().map(Symbols::of)
            })
            .as_mut()
    }
}

fn covers(map: &[Mapping], addr: u64) -> bool {
    map.iter().any(|m| m.start <= addr && addr < m.end)
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
}
