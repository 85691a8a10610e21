//! Go-specific facts read from a binary: is it Go, and which Go version built it.
use object::{Object, ObjectSection, ObjectSymbol, ReadRef};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
}

impl GoVersion {
    /// Go 1.17 introduced the register-based calling convention on amd64.
    pub fn has_register_abi(self) -> bool {
        self >= GoVersion { major: 1, minor: 17 }
    }

    /// Parses "go1.19.8", "go1.21rc2", "devel go1.22-..." and the like.
    pub fn parse(s: &str) -> Option<GoVersion> {
        let s = &s[s.find("go1")? + 2..];
        let mut parts = s.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(GoVersion { major, minor })
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go{}.{}", self.major, self.minor)
    }
}

pub fn is_go<'d, R: ReadRef<'d>>(file: &object::File<'d, R>) -> bool {
    file.section_by_name(".go.buildinfo").is_some()
        || file.section_by_name(".gopclntab").is_some()
        || file.symbols().any(|s| s.name() == Ok("runtime.buildVersion"))
}

const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";

/// What `go version -m` shows: the toolchain version and the main module's path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoBuildInfo {
    /// E.g. "go1.19.8"; `None` when the build info cannot be read.
    pub version_string: Option<String>,
    pub version: Option<GoVersion>,
    pub module: Option<String>,
}

/// Reads `.go.buildinfo`. Go 1.18+ stores the version and module info inline (flag bit 2);
/// older versions store pointers to Go string headers, resolved with `read_vaddr`.
pub fn build_info<'d, R: ReadRef<'d>>(
    file: &object::File<'d, R>,
    read_vaddr: impl Fn(u64, usize) -> Option<&'d [u8]>,
) -> GoBuildInfo {
    let Some((version, modinfo)) = read_build_strings(file, read_vaddr) else {
        return GoBuildInfo::default();
    };
    // modinfo lines: "path\t<main package>", "mod\t<module>\t<version>", "dep\t...", ...
    // A program built outside module mode (Debian's Prometheus) has a path and no mod line.
    let line = |prefix: &str| modinfo.lines().find_map(|l| l.strip_prefix(prefix));
    let module = line("mod\t").or_else(|| line("path\t"));
    GoBuildInfo {
        version: GoVersion::parse(&version),
        module: module.and_then(|m| m.split('\t').next()).map(str::to_string),
        version_string: Some(version),
    }
}

fn read_build_strings<'d, R: ReadRef<'d>>(
    file: &object::File<'d, R>,
    read_vaddr: impl Fn(u64, usize) -> Option<&'d [u8]>,
) -> Option<(String, String)> {
    let section = file.section_by_name(".go.buildinfo")?;
    let info = section.data().ok()?;
    if info.len() < 32 || !info.starts_with(BUILDINFO_MAGIC) {
        return None;
    }
    let ptr_size = info[14] as usize;
    let flags = info[15];
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if flags & 2 != 0 {
        let (len, used) = uvarint(&info[32..])?;
        let start = 32 + used;
        let version = info.get(start..start.checked_add(len as usize)?)?;
        let rest = &info[start + len as usize..];
        let modinfo =
            uvarint(rest).and_then(|(len, used)| rest.get(used..used.checked_add(len as usize)?)).unwrap_or_default();
        return Some((text(version), text(strip_sentinels(modinfo))));
    }
    if flags & 1 != 0 || !(ptr_size == 8 || ptr_size == 4) {
        return None; // big-endian: not an x86-64 program
    }
    let word = |b: &[u8]| -> Option<u64> {
        let mut buf = [0u8; 8];
        buf[..ptr_size].copy_from_slice(b.get(..ptr_size)?);
        Some(u64::from_le_bytes(buf))
    };
    let go_string = |at: u64| -> Option<&'d [u8]> {
        let header = read_vaddr(at, 2 * ptr_size)?;
        read_vaddr(word(header)?, word(&header[ptr_size..])? as usize)
    };
    let version = go_string(word(&info[16..])?)?;
    let modinfo = word(&info[16 + ptr_size..]).and_then(go_string).unwrap_or_default();
    Some((text(version), text(strip_sentinels(modinfo))))
}

/// The linker wraps the module info in two 16-byte binary markers (Go's `debug/buildinfo`
/// strips them the same way: when the text is long enough and a newline precedes the end marker).
fn strip_sentinels(b: &[u8]) -> &[u8] {
    if b.len() >= 33 && b[b.len() - 17] == b'\n' {
        &b[16..b.len() - 16]
    } else {
        b
    }
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(GoVersion::parse("go1.19.8"), Some(GoVersion { major: 1, minor: 19 }));
        assert_eq!(GoVersion::parse("go1.21rc2"), Some(GoVersion { major: 1, minor: 21 }));
        assert_eq!(GoVersion::parse("devel go1.22-abc"), Some(GoVersion { major: 1, minor: 22 }));
        assert!(GoVersion::parse("go1.16.3").map(|v| !v.has_register_abi()).unwrap());
        assert!(GoVersion::parse("go1.17").map(|v| v.has_register_abi()).unwrap());
        assert_eq!(GoVersion::parse("gcc"), None);
    }
}

/// Where a goroutine's id is in its `runtime.g`, and how that was learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoidOffset {
    /// From the binary's DWARF (the `goid` member of `runtime.g`).
    Dwarf(u64),
    /// From the table of Go versions (`goid_offset_of_version`): a binary without DWARF.
    Version(u64),
}

impl GoidOffset {
    pub fn bytes(self) -> u64 {
        match self {
            GoidOffset::Dwarf(o) | GoidOffset::Version(o) => o,
        }
    }
}

/// `runtime.g`'s `goid` offset on 64-bit targets for the Go versions whose layout probe has
/// checked against their DWARF (tests: Go 1.19, 1.21, 1.23): 152 up to Go 1.22, 160 from 1.23,
/// which added `syscallbp` before it. Other versions: unknown (a stripped binary of one is refused).
pub fn goid_offset_of_version(version: GoVersion) -> Option<u64> {
    match (version.major, version.minor) {
        (1, 17..=22) => Some(152),
        (1, 23) => Some(160),
        _ => None,
    }
}
