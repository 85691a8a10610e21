//! A process's memory map (`/proc/PID/maps`): which file is mapped where. A path may hold
//! spaces, and ends with ` (deleted)` once the file was removed or replaced while mapped; such a
//! file is read through `/proc/PID/map_files/START-END` (or `/proc/PID/exe`), which open the
//! very file the process maps, as perf does.
use std::path::PathBuf;

/// One file-backed mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub executable: bool,
    pub offset: u64,
    /// The file's device (major, minor) and inode: which file, whatever its path says now.
    pub file: (u32, u32, u64),
    /// The path the file had when mapped, without ` (deleted)`.
    pub path: PathBuf,
    /// The path no longer names this file (removed, or replaced by another one).
    pub deleted: bool,
}

impl Mapping {
    /// The link that opens this mapping's own file while the process lives.
    pub fn map_files(&self, pid: u32) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", self.start, self.end))
    }
}

/// The file-backed mappings of `pid`, in address order.
pub fn read(pid: u32) -> std::io::Result<Vec<Mapping>> {
    Ok(std::fs::read_to_string(format!("/proc/{pid}/maps"))?.lines().filter_map(parse_line).collect())
}

/// `start-end perms offset dev inode path`: the first five fields are separated by spaces
/// (the inode's column is padded), the path is the rest of the line, spaces included.
pub fn parse_line(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_start();
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (word, after) = trimmed.split_at(end);
        rest = after;
        Some(word).filter(|w| !w.is_empty())
    };
    let (range, perms, offset, dev, inode) = (field()?, field()?, field()?, field()?, field()?);
    let path = rest.trim_start();
    if !path.starts_with('/') {
        return None; // anonymous, [stack], [vdso], ...
    }
    let (path, deleted) = match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    };
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        executable: perms.contains('x'),
        offset: u64::from_str_radix(offset, 16).ok()?,
        file: (u32::from_str_radix(major, 16).ok()?, u32::from_str_radix(minor, 16).ok()?, inode.parse().ok()?),
        path: PathBuf::from(path),
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_their_spaces_and_lose_the_deleted_mark() {
        let m = parse_line("5581a000-5581b000 r-xp 00002000 fe:01 123                       /opt/my app/bin (deleted)")
            .unwrap();
        assert_eq!((m.start, m.end, m.offset, m.file), (0x5581a000, 0x5581b000, 0x2000, (0xfe, 1, 123)));
        assert_eq!((m.path, m.deleted, m.executable), (PathBuf::from("/opt/my app/bin"), true, true));
        let m = parse_line("7f00-7f01 r--p 00000000 08:02 99  /usr/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        assert_eq!(
            (m.path.to_str(), m.deleted, m.executable),
            (Some("/usr/lib/x86_64-linux-gnu/libc.so.6"), false, false)
        );
        assert_eq!(m.map_files(42), PathBuf::from("/proc/42/map_files/7f00-7f01"));
        assert!(parse_line("7ffd0000-7ffd1000 rw-p 00000000 00:00 0  [stack]").is_none());
        assert!(parse_line("7f000000-7f001000 r-xp 00000000 00:00 0").is_none());
    }

    #[test]
    fn this_process_maps_its_own_executable() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let maps = read(std::process::id()).unwrap();
        assert!(maps.iter().any(|m| m.executable && m.path == exe && !m.deleted), "{maps:?}");
    }
}
