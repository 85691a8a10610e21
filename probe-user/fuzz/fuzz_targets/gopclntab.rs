//! Any bytes as a `.gopclntab`: an error or a list of functions with entry <= end, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use probe_user::resolve::pclntab;

fuzz_target!(|data: &[u8]| {
    if let Ok(functions) = pclntab::functions(data, 0x401000) {
        for f in functions {
            assert!(f.entry <= f.end);
        }
    }
});
