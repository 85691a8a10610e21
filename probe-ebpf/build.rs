//! bpf-linker asks LLVM by default to copy memory "in order", which also leaves every
//! `memset` a call of a byte-at-a-time loop: the verifier then follows each zeroed key and
//! value byte by byte, on every path that reaches it (most of its work on latency's programs,
//! and so of probe's start-up). Without that option, LLVM writes small constant-size
//! zeroings and copies as plain loads and stores.
fn main() {
    println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}
