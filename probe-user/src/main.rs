//! The `probe` command; everything lives in the library (src/lib.rs) so fuzz targets can reach
//! the parsers.
fn main() {
    probe_user::main_with_args();
}
