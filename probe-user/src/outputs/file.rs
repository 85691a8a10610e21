//! Output files are created before anything is attached, so a path that cannot be written
//! is bad input (exit 2) with nothing attached.
use crate::error::user;
use anyhow::Result;
use std::fs::File;
use std::path::Path;

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
