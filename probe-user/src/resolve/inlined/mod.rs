//! Inlined copies of a function: the places where the compiler copied its body into a caller,
//! so those calls never enter the function itself and its probes never see them. Go says
//! where they are in `.gopclntab`'s inline trees (`go`), C and C++ in the DWARF's
//! `DW_TAG_inlined_subroutine` entries (`c`). Whether a copy's calls can be counted, and
//! where, is the plan's decision (`plan::inlined`).
use super::elf::{Binary, Function, Runtime};
use anyhow::Result;
use std::collections::HashMap;
use std::ops::Range;

mod c;
mod go;

pub use go::InlineTrees;

/// One inlined call site: a copy of `callee`'s body inside another function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlinedCopy {
    pub callee: String,
    /// The code of the (out-of-line) function the copy is in.
    pub caller: Range<u64>,
    /// Go: the caller's instruction the compiler marked as this call's site (`parentPc`).
    pub mark: Option<u64>,
    /// C: where the DWARF says the copy is entered (`DW_AT_entry_pc`, else its lowest address).
    pub entry_pc: Option<u64>,
    /// The copy's instructions (those of calls inlined into it included).
    pub body: Vec<Range<u64>>,
}

/// The inlined copies of each of `functions` in `binary`, with their instructions: one list
/// per function, in order (one pass over the file's tables for all of them).
pub fn copies(binary: &Binary, functions: &[&Function]) -> Result<Vec<Vec<InlinedCopy>>> {
    match binary.runtime {
        Runtime::Go(_) => go::copies(binary, functions),
        Runtime::Native => c::copies(binary, functions),
    }
}

/// How many inlined call sites each function has, by its address (for `probe list`; a
/// function without any is not in it); `None` when the file does not say (C without DWARF, Go
/// before 1.18).
pub fn sites_per_function(binary: &Binary) -> Option<HashMap<u64, usize>> {
    match binary.runtime {
        Runtime::Go(_) => go::sites_per_function(binary).ok(),
        Runtime::Native => {
            let mut per_name: HashMap<String, usize> = HashMap::new();
            for copy in c::all_copies(binary).ok()?? {
                *per_name.entry(copy.callee).or_insert(0) += 1;
            }
            let functions = binary.functions().iter();
            Some(functions.filter_map(|f| Some((f.addr, *per_name.get(&f.name)?))).collect())
        }
    }
}
