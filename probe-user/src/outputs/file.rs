//! Output files are created before anything is attached, so a path that cannot be written
//! is bad input (exit 2) with nothing attached.
use crate::error::user;
use anyhow::Result;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Creates (or truncates) the file an option names.
pub fn create(path: &Path, option: &str) -> Result<File> {
    File::create(path)
        .map_err(|e| user(format!("{option} {}: cannot create the file ({e}); give a writable path", path.display())))
}

/// Creates an SVG file; the name must end in `.svg` (the only format written).
pub fn create_svg(path: &Path, option: &str) -> Result<File> {
    if path.extension().is_none_or(|e| !e.eq_ignore_ascii_case("svg")) {
        return Err(user(format!(
            "{option} {}: pictures are written as SVG; give a file name ending in .svg",
            path.display()
        )));
    }
    create(path, option)
}

/// Creates the file of `-o FILE` safely, as root may be asked to write anywhere: an existing
/// path must be a regular file (a FIFO, device or directory is refused) or a symlink of our
/// own (another user's symlink is refused, never followed). The new file is made beside it
/// with O_CREAT|O_EXCL|O_NOFOLLOW under a fresh name, then renamed over the path: rename
/// replaces whatever is there at that moment, a symlink swapped in included, and never writes
/// through it.
pub fn create_replacing(path: &Path, option: &str) -> Result<File> {
    let refuse = |why: &str| user(format!("{option} {}: {why}; give the path of a regular file", path.display()));
    let path = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if meta.uid() != unsafe { libc::geteuid() } {
                return Err(refuse("is another user's symbolic link, which probe does not follow"));
            }
            let target = std::fs::canonicalize(path).map_err(|_| refuse("is a symbolic link to nowhere"))?;
            match std::fs::metadata(&target) {
                Ok(m) if !m.is_file() => return Err(refuse("is a symbolic link to something other than a regular file")),
                _ => target,
            }
        }
        Ok(meta) if !meta.is_file() => return Err(refuse("exists and is not a regular file")),
        _ => path.to_path_buf(),
    };
    let temp = temp_beside(&path);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temp)
        .map_err(|e| user(format!("{option} {}: cannot create the file ({e}); give a writable path", path.display())))?;
    if let Err(e) = std::fs::rename(&temp, &path) {
        let _ = std::fs::remove_file(&temp);
        return Err(user(format!("{option} {}: cannot create the file ({e}); give a writable path", path.display())));
    }
    Ok(file)
}

/// `DIR/.NAME.probe-PID` next to `path`.
fn temp_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.probe-{}", std::process::id()))
}
