//! Output files, created safely by a process that usually runs as root: never through a
//! symlink another user owns, never into a FIFO, device or other non-regular file, and always
//! before anything is attached, so a path that cannot be written is bad input (exit 2) with
//! nothing attached.
use crate::error::user;
use anyhow::Result;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Symlinks followed from the given path before giving up (as the kernel's ELOOP limit).
const MAX_LINKS: usize = 40;

/// Creates the output file an option names, as a new regular file at `path`: made under a
/// temporary name in the same directory (`O_CREAT | O_EXCL | O_NOFOLLOW`, so it is a file of
/// our own), then renamed over `path`, which replaces whatever entry is there without writing
/// through it. `path` may be absent, a regular file, or a symlink of our own (followed, with
/// the same rules at its end); anything else is refused with one line naming the problem.
pub fn create_output(path: &Path, option: &str) -> Result<File> {
    let fail = |problem: String| user(format!("{option} {}: {problem}", path.display()));
    let target = resolve_own_links(path).map_err(fail)?;
    let (dir, name) = split(&target).map_err(fail)?;
    let (temp_path, file) = create_temporary(&dir, &name).map_err(fail)?;
    if let Err(e) = std::fs::rename(&temp_path, &target) {
        let _ = std::fs::remove_file(&temp_path);
        return Err(fail(format!("cannot create the file ({e}); give a writable path")));
    }
    Ok(file)
}

/// Writing an output failed (a full disk, a quota): one line naming the output (`-o FILE`,
/// `stdout`) and the reason. The run ends; its file is incomplete.
pub fn write_failed(output: &str, e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "{output}: cannot write it ({e}); what it holds is incomplete: free some space or give another path"
    )
}

/// Creates an SVG output file; the name must end in `.svg` (the only format written).
pub fn create_svg(path: &Path, option: &str) -> Result<File> {
    if path.extension().is_none_or(|e| !e.eq_ignore_ascii_case("svg")) {
        return Err(user(format!(
            "{option} {}: pictures are written as SVG; give a file name ending in .svg",
            path.display()
        )));
    }
    create_output(path, option)
}

/// Where the file will be: `path`, or the end of the symlinks from it when they are our own.
/// Fails for a link owned by another user, a non-regular file, or too many links.
fn resolve_own_links(path: &Path) -> Result<PathBuf, String> {
    let euid = unsafe { libc::geteuid() };
    let mut at = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(at),
            Err(e) => return Err(format!("cannot inspect it ({e}); give a writable path")),
        };
        let kind = meta.file_type();
        if kind.is_file() {
            return Ok(at);
        }
        if !kind.is_symlink() {
            return Err(format!("{} is not a regular file; give the path of a regular file", described(&at, path)));
        }
        if meta.uid() != euid {
            return Err(format!(
                "{} is a symlink owned by another user (uid {}), which probe never writes through; \
                 remove it or give another path",
                described(&at, path),
                meta.uid()
            ));
        }
        let link = std::fs::read_link(&at).map_err(|e| format!("cannot read the symlink ({e})"))?;
        at = match at.parent() {
            Some(dir) => dir.join(link),
            None => link,
        };
    }
    Err("too many levels of symlinks; give the path of a regular file".into())
}

/// "it", or the link's end when it differs from what the user gave.
fn described(at: &Path, given: &Path) -> String {
    if at == given {
        "it".into()
    } else {
        format!("its link target {}", at.display())
    }
}

fn split(path: &Path) -> Result<(PathBuf, OsString), String> {
    let name = path.file_name().ok_or("names no file; give a file path")?.to_os_string();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// A new, empty file of our own in `dir` under an unused temporary name.
fn create_temporary(dir: &Path, name: &OsString) -> Result<(PathBuf, File), String> {
    let mut last_error = None;
    for attempt in 0..100u32 {
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".probe-{}-{attempt}", std::process::id()));
        let temp_path = dir.join(temp_name);
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true) // O_CREAT | O_EXCL: never an existing file or link
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o644)
            .open(&temp_path);
        match opened {
            Ok(file) => return Ok((temp_path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(format!("cannot create the file ({e}); give a writable path")),
        }
    }
    Err(format!(
        "cannot create the file ({}); give a writable path",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("probe-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_a_regular_file_and_follows_our_own_link() {
        let dir = scratch("own");
        let real = dir.join("real.log");
        std::fs::write(&real, "old").unwrap();
        create_output(&real, "--x").unwrap().write_all(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        let link = dir.join("link.log");
        std::os::unix::fs::symlink("real.log", &link).unwrap();
        create_output(&link, "--x").unwrap().write_all(b"via link").unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "via link");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = scratch("odd");
        let err = create_output(&dir, "--x").unwrap_err().to_string();
        assert!(err.contains("is not a regular file"), "{err}");
        let err = create_output(Path::new("/dev/full"), "--x").unwrap_err().to_string();
        assert!(err.contains("is not a regular file"), "{err}");
        let err = create_output(&dir.join("missing/dir/f"), "--x").unwrap_err().to_string();
        assert!(err.contains("cannot create the file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
