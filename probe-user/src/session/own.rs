//! probe's own code as a uprobe target (its calibration functions, the warm-up's).
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// probe's own executable, as the kernel names the file (uprobes are per inode).
pub fn executable() -> Result<PathBuf> {
    std::fs::read_link("/proc/self/exe").context("finding probe's own binary")
}

/// The file offset of one of probe's own code addresses: from the mapping that holds it in
/// /proc/self/maps, so it holds for PIE and non-PIE builds and for stripped binaries alike.
pub fn file_offset_of(addr: u64) -> Result<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("reading /proc/self/maps")?;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms), Some(offset)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end), Ok(offset)) =
            (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16), u64::from_str_radix(offset, 16))
        else {
            continue;
        };
        if perms.contains('x') && (start..end).contains(&addr) {
            return Ok(addr - start + offset);
        }
    }
    bail!("probe's own code at {addr:#x} is in no mapping of /proc/self/maps")
}
