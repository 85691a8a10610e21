//! A site's value as the programs read it: from a register or the user stack, extended from
//! the integer's width. Shared by the value programs and the filter's conditions.
use crate::{regs, user_memory};
use aya_ebpf::bindings::pt_regs;
use probe_ebpf::{
    FieldPath, FieldPaths, Reg, ValueCookie, ValueSource, Width, LEAF_GO_STRING, LEAF_INTEGER, MAX_DEREFS, MAX_PATHS,
};

/// The paths into arguments, set by the loader (`probe_ebpf::GLOBAL_FIELD_PATHS`).
#[no_mangle]
static FIELD_PATHS: FieldPaths = FieldPaths::NONE;

/// The site's value: its source read, and extended from the integer's width.
#[inline(always)]
pub(crate) fn read_value(regs: &pt_regs, site: &ValueCookie) -> Option<i64> {
    read_value_faulting::<false>(regs, site)
}

/// `read_value`, in a sleepable program (`FAULT`) faulting in a stack page not yet mapped.
#[inline(always)]
pub(crate) fn read_value_faulting<const FAULT: bool>(regs: &pt_regs, site: &ValueCookie) -> Option<i64> {
    if let ValueSource::Path { base, index } = site.source {
        return read_path::<FAULT>(regs, base, index, site.width);
    }
    read_source::<FAULT>(regs, site.source).map(|v| site.width.extend(v as u64))
}

#[inline(always)]
fn read_source<const FAULT: bool>(regs: &pt_regs, source: ValueSource) -> Option<i64> {
    let v = match source {
        ValueSource::Reg(r) => regs::register(regs, r)?,
        ValueSource::Arm64Reg(n) => regs::arm64_register(regs, n)?,
        ValueSource::Stack { offset } => {
            user_memory::read::<u64, FAULT>(regs::stack_pointer(regs).wrapping_add(offset as u64))?
        }
        // As a number, a Go string is its length; a C string has none without reading it.
        ValueSource::GoString { len, .. } => regs::register(regs, len)?,
        ValueSource::CString { .. } | ValueSource::CStringOnStack { .. } => return None,
        ValueSource::Path { .. } => return None, // read by `read_value_faulting`, with its width
    };
    Some(v as i64)
}

/// Path `index` of the loader's table.
#[inline(always)]
pub(crate) fn field_path(index: u8) -> Option<FieldPath> {
    let i = index as usize;
    if i >= MAX_PATHS {
        return None;
    }
    // Volatile, so the loader's paths are read rather than the defaults.
    Some(unsafe { core::ptr::read_volatile(&FIELD_PATHS.paths[i & (MAX_PATHS - 1)]) })
}

/// Where a path's leaf is: the pointers from register `base` followed (`FieldPath`), the
/// leaf's offset added. `Err(())`: a nil or unreadable pointer on the way; `Ok(None)`: the last
/// pointer is nil and the path says that is 0 (a nil Go map).
#[inline(always)]
pub(crate) fn follow<const FAULT: bool>(regs: &pt_regs, base: Reg, path: &FieldPath) -> Result<Option<u64>, ()> {
    let mut p = regs::register(regs, base).ok_or(())?;
    for i in 0..MAX_DEREFS {
        if i as u32 >= path.derefs {
            break;
        }
        if p == 0 {
            return Err(());
        }
        p = user_memory::read::<u64, FAULT>(p.wrapping_add(path.offsets[i])).ok_or(())?;
    }
    if p == 0 {
        return if path.nil_is_zero != 0 { Ok(None) } else { Err(()) };
    }
    Ok(Some(p.wrapping_add(path.leaf_offset)))
}

/// A path's value as a number: its integer of `width`, or a Go string's length.
#[inline(always)]
fn read_path<const FAULT: bool>(regs: &pt_regs, base: Reg, index: u8, width: Width) -> Option<i64> {
    let path = field_path(index)?;
    let Some(at) = follow::<FAULT>(regs, base, &path).ok()? else {
        return Some(0);
    };
    let raw = if path.leaf == LEAF_GO_STRING {
        user_memory::read::<u64, FAULT>(at.wrapping_add(8))?
    } else if path.leaf != LEAF_INTEGER {
        return None;
    } else {
        match width.bytes() {
            1 => user_memory::read::<u8, FAULT>(at)? as u64,
            2 => user_memory::read::<u16, FAULT>(at)? as u64,
            4 => user_memory::read::<u32, FAULT>(at)? as u64,
            _ => user_memory::read::<u64, FAULT>(at)?,
        }
    };
    Some(width.extend(raw))
}
