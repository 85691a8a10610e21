//! Any bytes as an ELF file: reading functions, offsets, code and RETs must never panic, and
//! every site it would probe must be an instruction boundary inside an executable segment.
#![no_main]
use libfuzzer_sys::fuzz_target;
use probe_user::arch::x86_64 as disasm;
use probe_user::resolve::elf::Binary;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(binary) = Binary::parse(Path::new("fuzz-input"), data.to_vec()) else { return };
    for f in binary.functions().iter().take(64) {
        let Ok(code) = binary.code(f) else { continue };
        let entry = disasm::go_body_entry(&code, f.addr);
        assert!(entry >= f.addr && entry < f.addr + f.size);
        if let Ok(rets) = disasm::ret_addresses(&code, f.addr) {
            for r in rets {
                assert!(r >= f.addr && r < f.addr + f.size);
                assert!(binary.code_offset(r).is_ok());
            }
        }
    }
});
