//! Values inside the arguments (`--arg 'r.URL.Path'`, `cfg->limits.max`): a path of pointers
//! followed from a register, with offsets the loader found in the DWARF. The loader fills
//! `FIELD_PATHS` (a read-only global, so the verifier sees constants); a site's cookie names
//! its base register and its path's index (`ValueSource::Path`). Every path is bounded: at most
//! `MAX_DEREFS` pointers are followed, each read checked; a nil pointer on the way (or memory
//! that cannot be read) makes the value unreadable, counted as such.

/// Pointers a path follows after its base register, at most.
pub const MAX_DEREFS: usize = 4;
/// Paths one run reads (argdist's value, its string, and the filter's conditions).
pub const MAX_PATHS: usize = 8;

/// What the path ends at.
/// An integer of the cookie's `Width`, at the leaf's offset.
pub const LEAF_INTEGER: u32 = 0;
/// A Go string (pointer, length) at the leaf's offset: its bytes (`--count`), as a number its length.
pub const LEAF_GO_STRING: u32 = 1;
/// A C `char *` at the leaf's offset: the NUL-terminated string it points to (`--count` only).
pub const LEAF_C_STRING: u32 = 2;

/// One path: from the base register's pointer `p`, `derefs` times `p = *(p + offsets[i])`, then
/// the leaf at `p + leaf_offset`. A nil `p` makes the value unreadable, except the last one when
/// `nil_is_zero` (a Go map: a nil map's length is 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPath {
    pub derefs: u32,
    pub leaf: u32,
    pub nil_is_zero: u32,
    pub _pad: u32,
    pub offsets: [u64; MAX_DEREFS],
    pub leaf_offset: u64,
}

impl FieldPath {
    pub const NONE: FieldPath =
        FieldPath { derefs: 0, leaf: LEAF_INTEGER, nil_is_zero: 0, _pad: 0, offsets: [0; MAX_DEREFS], leaf_offset: 0 };
}

/// The loader's paths, indexed by `ValueSource::Path::index`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPaths {
    pub paths: [FieldPath; MAX_PATHS],
}

impl FieldPaths {
    pub const NONE: FieldPaths = FieldPaths { paths: [FieldPath::NONE; MAX_PATHS] };
}
