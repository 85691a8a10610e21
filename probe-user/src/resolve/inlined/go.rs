//! Go's inline trees (Go 1.18+), from `.gopclntab`: for every function, the calls the compiler
//! inlined into it (its `FUNCDATA_InlTree`, in `go:func.*`) and which of its instructions
//! belong to each (its `PCDATA_InlTreeIndex` pc-value table). Each tree entry names the inlined
//! function and its `parentPc`: the offset in the caller of the instruction that marks the call
//! (the compiler's inline mark). Layouts, from the Go runtime (`runtime/symtab.go`,
//! `symtabinl.go`) and linker (`cmd/link/internal/ld/pcln.go`):
//! - `_func`: entryOff, nameOff, args, deferreturn, pcsp, pcfile, pcln, npcdata, cuOffset
//!   (u32 each), Go 1.20+ startLine (i32), then funcID, flag, a pad byte and nfuncdata (u8
//!   each); then npcdata u32 offsets into `pctab`, then nfuncdata u32 offsets from `go:func.*`
//!   (`!0`: none).
//! - an entry: Go 1.18-1.19 parent (i16), funcID, pad, file, line, nameOff, parentPc (20
//!   bytes); Go 1.20+ funcID, 3 pad bytes, nameOff, parentPc, startLine (16 bytes), its parent
//!   being the tree index at the caller's `parentPc`.
//!
//! The linker keeps only the entries whose inlined body left instructions (and their
//! ancestors): a call whose body was optimised away entirely is in no table, and its calls
//! cannot be counted. The tree's length is the largest index the pc table names, plus one.
use super::super::elf::{Binary, Function};
use super::super::pclntab::{Layout, Table};
use super::InlinedCopy;
use anyhow::{bail, ensure, Context, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;

const PCDATA_INL_TREE_INDEX: usize = 2;
const FUNCDATA_INL_TREE: usize = 3;
/// Bytes per instruction step in pc-value tables: 1 on x86-64, 4 on arm64.
const PC_QUANTUM: u64 = if cfg!(target_arch = "aarch64") { 4 } else { 1 };
/// A pc table longer than its function has steps is damaged; stop there.
const MAX_STEPS: usize = 1 << 20;

/// Offsets in a `_func` record that differ by layout.
struct Record {
    npcdata: usize,
    nfuncdata: usize,
    /// Where the pcdata offsets start (after nfuncdata).
    pcdata: usize,
    /// Bytes of one inline tree entry.
    entry_size: usize,
}

impl Record {
    fn of(layout: Layout) -> Option<Record> {
        match layout {
            Layout::Go118 => Some(Record { npcdata: 28, nfuncdata: 39, pcdata: 40, entry_size: 20 }),
            Layout::Go120 => Some(Record { npcdata: 28, nfuncdata: 43, pcdata: 44, entry_size: 16 }),
            Layout::Go12 | Layout::Go116 => None,
        }
    }
}

/// Every inlined call of `functions`, with its instructions: one list per function.
pub(super) fn copies(binary: &Binary, functions: &[&Function]) -> Result<Vec<Vec<InlinedCopy>>> {
    let mut out = vec![Vec::new(); functions.len()];
    // Tree entries name functions by their name's offset, as their own records do.
    let wanted = |table: &Table<'_>| -> Result<Option<HashMap<u64, usize>>> {
        let mut index = HashMap::new();
        for (i, f) in functions.iter().enumerate() {
            if let Some(name_off) = name_off_at(table, f.addr)? {
                index.insert(name_off, i);
            }
        }
        Ok(Some(index))
    };
    let mut add = |_, i: Option<usize>, caller, mark, body| {
        if let Some(i) = i {
            let callee = functions[i].name.clone();
            out[i].push(InlinedCopy { callee, caller, mark: Some(mark), entry_pc: None, body });
        }
    };
    walk(binary, true, &wanted, &mut add, &mut |_| Ok(()))?;
    Ok(out)
}

/// How many inlined call sites each function has, by its entry address (functions without
/// any left out).
pub(super) fn sites_per_function(binary: &Binary) -> Result<HashMap<u64, usize>> {
    // Counted by the callee's name offset, then given to the functions whose records have it.
    let per_offset: RefCell<HashMap<u64, usize>> = RefCell::default();
    let mut per_function = HashMap::new();
    let mut count = |name_off, _, _, _, _| *per_offset.borrow_mut().entry(name_off).or_insert(0) += 1;
    let mut by_entry = |table: &Table<'_>| -> Result<()> {
        let per_offset = per_offset.borrow();
        for i in 0..table.nfunc {
            if let Some(&count) = per_offset.get(&table.nameoff(table.record(i)?)?) {
                per_function.insert(table.entry(i)?, count);
            }
        }
        Ok(())
    };
    walk(binary, false, &|_| Ok(None), &mut count, &mut by_entry)?;
    Ok(per_function)
}

/// `--by stack`: a Go program's inline trees, to say which calls the compiler inlined at an
/// instruction. Holds `.gopclntab` (read once); each tree is read from the file when asked.
pub struct InlineTrees {
    data: Vec<u8>,
    text: u64,
    gofunc: u64,
}

impl InlineTrees {
    /// The program's tables, or why they cannot be read (Go before 1.18, no `.gopclntab`).
    pub fn of(binary: &Binary) -> Result<InlineTrees> {
        let table = binary.section(".gopclntab").or_else(|| binary.section(".data.rel.ro.gopclntab"));
        let Some((pclntab_addr, data)) = table else { bail!("it has no .gopclntab") };
        let text = binary.section_address(".text").unwrap_or(0);
        let layout = Table::parse(&data, text)?.layout;
        ensure!(Record::of(layout).is_some(), "its Go version is older than 1.18");
        let gofunc = gofunc_address(binary, pclntab_addr, layout).context("cannot find go:func.*")?;
        Ok(InlineTrees { data: data.into_owned(), text, gofunc })
    }

    /// The functions inlined at instruction `pc` (a link address), innermost first: empty when
    /// `pc` is in no inlined body (or the tables say nothing of it).
    pub fn at(&self, binary: &Binary, pc: u64) -> Vec<String> {
        self.try_at(binary, pc).unwrap_or_default()
    }

    fn try_at(&self, binary: &Binary, pc: u64) -> Result<Vec<String>> {
        let table = Table::parse(&self.data, self.text)?;
        let record = Record::of(table.layout).context("layout")?;
        // The function holding pc: the last whose entry is at or before it.
        let (mut low, mut high) = (0, table.nfunc);
        while low < high {
            let mid = (low + high) / 2;
            if table.entry(mid)? <= pc {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let Some(i) = low.checked_sub(1) else { return Ok(Vec::new()) };
        let (entry, end) = (table.entry(i)?, table.entry(i + 1)?);
        if pc >= end {
            return Ok(Vec::new());
        }
        let at = table.record(i)?;
        let npcdata = table.r.u32(at + record.npcdata)? as usize;
        let nfuncdata = table.r.uint(at + record.nfuncdata, 1)? as usize;
        if npcdata <= PCDATA_INL_TREE_INDEX || nfuncdata <= FUNCDATA_INL_TREE {
            return Ok(Vec::new());
        }
        let pc_table = table.r.u32(at + record.pcdata + 4 * PCDATA_INL_TREE_INDEX)? as usize;
        let tree = table.r.u32(at + record.pcdata + 4 * npcdata + 4 * FUNCDATA_INL_TREE)?;
        if pc_table == 0 || tree == u64::from(u32::MAX) {
            return Ok(Vec::new());
        }
        let ranges = pc_values(table.r.tail(table.pctab.checked_add(pc_table).context("pc table")?)?, entry, end)?;
        let value_at = |pc: u64| ranges.iter().find(|r| r.0.contains(&pc)).map_or(-1, |r| r.1);
        let Some(len) = ranges.iter().map(|r| r.1).max().filter(|&m| m >= 0).map(|m| m as usize + 1) else {
            return Ok(Vec::new());
        };
        let data = binary
            .read_vaddr(self.gofunc + tree, (len * record.entry_size) as u64)
            .context("the inline tree is not in the file")?;
        let entries = Tree { data: &data, size: record.entry_size, layout: table.layout };
        let mut names = Vec::new();
        let mut index = value_at(pc);
        // Parents come before their children: at most `len` steps.
        for _ in 0..len {
            if index < 0 {
                break;
            }
            let k = index as usize;
            names.push(table.name(entries.name_off(k)?)?);
            let parent = if table.layout == Layout::Go118 {
                (entries.u32_at(k, 0)? as u16) as i16 as i32
            } else {
                value_at(entry + entries.parent_pc(k)?)
            };
            ensure!(parent < index, "inline tree entry {k} has a later parent");
            index = parent;
        }
        Ok(names)
    }
}

/// The name offset of the function whose entry is `addr`, from its own record.
fn name_off_at(table: &Table<'_>, addr: u64) -> Result<Option<u64>> {
    let (mut low, mut high) = (0, table.nfunc);
    while low < high {
        let mid = (low + high) / 2;
        match table.entry(mid)?.cmp(&addr) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
            std::cmp::Ordering::Equal => return Ok(Some(table.nameoff(table.record(mid)?)?)),
        }
    }
    Ok(None)
}

/// What the walk tells of one inlined call: its callee's name offset and index among those
/// wanted, its caller's code, its mark, and (when asked) its instructions.
type Visit<'f> = dyn FnMut(u64, Option<usize>, Range<u64>, u64, Vec<Range<u64>>) + 'f;

/// Which callees a walk is for, from the table: name offset -> index, or `None` for all.
type Wanted<'f> = dyn Fn(&Table<'_>) -> Result<Option<HashMap<u64, usize>>> + 'f;

/// Calls `visit` for every inlined call in the program whose callee is `wanted`, with its
/// body's instructions when `bodies` (counting sites needs none). Each function's tree is read
/// from the file on its own: all of `go:func.*` (4.5 MB of Prometheus's 50) is not kept.
/// `after` sees the table once every call was visited.
fn walk(
    binary: &Binary,
    bodies: bool,
    wanted: &Wanted<'_>,
    visit: &mut Visit<'_>,
    after: &mut dyn FnMut(&Table<'_>) -> Result<()>,
) -> Result<()> {
    // Position-independent programs keep it where it can be relocated.
    let table = binary.section(".gopclntab").or_else(|| binary.section(".data.rel.ro.gopclntab"));
    let Some((pclntab_addr, data)) = table else { bail!("it has no .gopclntab") };
    let text = binary.section_address(".text").unwrap_or(0);
    let table = Table::parse(&data, text)?;
    let Some(record) = Record::of(table.layout) else {
        bail!("its Go version is older than 1.18, whose inline trees probe does not read")
    };
    let gofunc = gofunc_address(binary, pclntab_addr, table.layout)
        .context("cannot find go:func.* (its function data) in this Go program")?;
    let wanted = wanted(&table)?;
    // The functions with an inline tree, in the order of their trees, read a window at a time.
    let mut with_trees = Vec::new();
    for i in 0..table.nfunc {
        let at = table.record(i)?;
        let npcdata = table.r.u32(at + record.npcdata)? as usize;
        let nfuncdata = table.r.uint(at + record.nfuncdata, 1)? as usize;
        if npcdata <= PCDATA_INL_TREE_INDEX || nfuncdata <= FUNCDATA_INL_TREE {
            continue;
        }
        let pc_table = table.r.u32(at + record.pcdata + 4 * PCDATA_INL_TREE_INDEX)? as usize;
        let tree = table.r.u32(at + record.pcdata + 4 * npcdata + 4 * FUNCDATA_INL_TREE)?;
        if pc_table != 0 && tree != u64::from(u32::MAX) {
            with_trees.push((tree, i, pc_table));
        }
    }
    with_trees.sort_unstable();
    let mut trees = Window { binary, at: 0, bytes: Vec::new() };
    for (tree, i, pc_table) in with_trees {
        let (entry, end) = (table.entry(i)?, table.entry(i + 1)?);
        let pcs = table.r.tail(table.pctab.checked_add(pc_table).context("pc table offset")?)?;
        // The tree's length is the table's highest index + 1; its ranges are kept only for a
        // tree with an entry wanted (nearly none when looking for one function's copies).
        let mut highest = -1;
        each_pc_value(pcs, entry, end, |_, value| highest = highest.max(value))?;
        let Some(len) = (highest >= 0).then(|| highest as usize + 1) else { continue };
        let mut ranges = None;
        let bytes = (len * record.entry_size) as u64;
        let data = trees
            .read(gofunc + tree, bytes)
            .with_context(|| format!("the inline tree of the function at {entry:#x} is not in the file"))?;
        let entries = Tree { data, size: record.entry_size, layout: table.layout };
        let mut parents: Option<Vec<i32>> = None;
        for k in 0..len {
            let name_off = entries.name_off(k)?;
            let index = match &wanted {
                Some(wanted) => match wanted.get(&name_off) {
                    Some(&i) => Some(i),
                    None => continue,
                },
                None => None,
            };
            let mark = entry.checked_add(entries.parent_pc(k)?).context("parentPc overflow")?;
            ensure!(mark < end, "inline tree entry {k} of the function at {entry:#x} marks a call past its end");
            let mut body = Vec::new();
            if bodies {
                let ranges = match ranges {
                    Some(ref r) => r,
                    None => ranges.insert(pc_values(pcs, entry, end)?),
                };
                let parents = match parents {
                    Some(ref p) => p,
                    None => parents.insert(entries.parents(len, ranges, entry)?),
                };
                body.extend(ranges.iter().filter(|r| descends_from(r.1, k, parents)).map(|r| r.0.clone()));
            }
            visit(name_off, index, entry..end, mark, body);
        }
    }
    after(&table)
}

/// Reads `go:func.*` a window at a time: the trees are read in about the order they are laid
/// out, and holding all of it (4.5 MB of Prometheus's 50) is not needed.
struct Window<'b> {
    binary: &'b Binary,
    at: u64,
    bytes: Vec<u8>,
}

impl Window<'_> {
    const SIZE: u64 = 64 << 10;

    fn read(&mut self, addr: u64, len: u64) -> Option<&[u8]> {
        let end = addr.checked_add(len)?;
        if addr < self.at || end > self.at + self.bytes.len() as u64 {
            // As much as the window holds, or (near a segment's end) just what is asked.
            let wide = self.binary.read_vaddr(addr, len.max(Self::SIZE));
            self.bytes = wide.or_else(|| self.binary.read_vaddr(addr, len))?.into_owned();
            self.at = addr;
        }
        let start = (addr - self.at) as usize;
        self.bytes.get(start..start + len as usize)
    }
}

/// One function's inline tree entries, read from `go:func.*`.
struct Tree<'a> {
    data: &'a [u8],
    size: usize,
    layout: Layout,
}

impl Tree<'_> {
    fn u32_at(&self, k: usize, field: usize) -> Result<u64> {
        let off = k.checked_mul(self.size).context("tree index")? + field;
        let b = self.data.get(off..off + 4).context("inline tree entry past its end")?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64)
    }

    fn name_off(&self, k: usize) -> Result<u64> {
        self.u32_at(k, if self.layout == Layout::Go118 { 12 } else { 4 })
    }

    fn parent_pc(&self, k: usize) -> Result<u64> {
        self.u32_at(k, if self.layout == Layout::Go118 { 16 } else { 8 })
    }

    /// Each entry's parent index (-1: the function itself). Go 1.18-1.19 store it; Go 1.20+
    /// say it by the tree index in force at the entry's `parentPc`.
    fn parents(&self, len: usize, ranges: &[(Range<u64>, i32)], entry: u64) -> Result<Vec<i32>> {
        (0..len)
            .map(|k| {
                let parent = if self.layout == Layout::Go118 {
                    (self.u32_at(k, 0)? as u16) as i16 as i32
                } else {
                    let pc = entry + self.parent_pc(k)?;
                    ranges.iter().find(|r| r.0.contains(&pc)).map_or(-1, |r| r.1)
                };
                ensure!(parent < k as i32, "inline tree entry {k} has parent {parent}, not an earlier entry");
                Ok(parent)
            })
            .collect()
    }
}

/// Whether tree index `index` is `k` or nested inside it.
fn descends_from(mut index: i32, k: usize, parents: &[i32]) -> bool {
    // Parents come before their children, so the walk ends.
    while index >= 0 {
        if index as usize == k {
            return true;
        }
        index = parents.get(index as usize).copied().unwrap_or(-1);
    }
    false
}

/// Decodes a pc-value table (the runtime's `pcvalue`): from the function's entry, steps of
/// (zig-zag value delta, pc delta), each value in force up to the new pc. Returns the ranges
/// with their values, within `entry..end`.
fn pc_values(p: &[u8], entry: u64, end: u64) -> Result<Vec<(Range<u64>, i32)>> {
    let mut out = Vec::new();
    each_pc_value(p, entry, end, |pcs, value| out.push((pcs, value)))?;
    Ok(out)
}

/// The same, each range and value given to `f` as it is read.
fn each_pc_value(mut p: &[u8], entry: u64, end: u64, mut f: impl FnMut(Range<u64>, i32)) -> Result<()> {
    let (mut pc, mut value) = (entry, -1i32);
    for step in 0..MAX_STEPS {
        let (delta, n) = uvarint(p)?;
        if delta == 0 && step > 0 {
            return Ok(());
        }
        p = &p[n..];
        value = value.wrapping_add((-((delta & 1) as i32)) ^ ((delta >> 1) as i32));
        let (pc_delta, n) = uvarint(p)?;
        p = &p[n..];
        let next = pc.checked_add(u64::from(pc_delta) * PC_QUANTUM).context("pc overflow")?;
        ensure!(next <= end, "a pc table runs past its function's end");
        f(pc..next, value);
        pc = next;
    }
    bail!("a pc table has more than {MAX_STEPS} steps")
}

/// A 32-bit varint (the runtime's `readvarint`), and its length.
fn uvarint(p: &[u8]) -> Result<(u32, usize)> {
    let mut v = 0u32;
    for (i, &b) in p.iter().enumerate().take(5) {
        v |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    bail!("a pc table ends inside a number")
}

/// `go:func.*`: the address the function data offsets are from. From the runtime's module
/// data, found in `.noptrdata` by its first field (the address of `.gopclntab`) and checked by
/// its second (the function name table inside it); for a position-independent program, whose
/// module data is relocated at load time, from the symbol table.
fn gofunc_address(binary: &Binary, pclntab: u64, layout: Layout) -> Option<u64> {
    // moduledata: pcHeader, then 6 slices (funcnametab, cutab, filetab, pctab, pclntable, ftab),
    // findfunctab, minpc, maxpc, text, etext, noptrdata, enoptrdata, data, edata, bss, ebss,
    // noptrbss, enoptrbss, (Go 1.20+: covctrs, ecovctrs), end, gcdata, gcbss, types, etypes,
    // rodata, gofunc: word 38, or 40 in Go 1.20+.
    let gofunc_word = if layout == Layout::Go120 { 40 } else { 38 };
    let from_module_data = binary.section(".noptrdata").and_then(|(_, data)| {
        let words: Vec<u64> =
            data.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))).collect();
        (0..words.len().saturating_sub(gofunc_word))
            .find(|&i| words[i] == pclntab && words[i + 1] > pclntab && words[i + 1] - pclntab < 1 << 32)
            .map(|i| words[i + gofunc_word])
            .filter(|&g| g != 0)
    });
    from_module_data.or_else(|| {
        let name = if layout == Layout::Go120 { "go:func.*" } else { "go.func.*" };
        binary.symbol_address(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_values_follow_the_runtime_encoding() {
        // From entry 0x100: value -1+1=0 for 4 bytes, +2 (zig-zag 4) = 2 for 3 bytes, -3
        // (zig-zag 5) = -1 for 0x81 bytes (a two-byte varint), then the end.
        let table = [0x02, 0x04, 0x04, 0x03, 0x05, 0x81, 0x01, 0x00];
        let ranges = pc_values(&table, 0x100, 0x200).unwrap();
        assert_eq!(ranges, vec![(0x100..0x104, 0), (0x104..0x107, 2), (0x107..0x188, -1)]);
        assert!(pc_values(&table, 0x100, 0x150).is_err(), "past the function's end");
        assert!(pc_values(&[0x02, 0x84], 0x100, 0x200).is_err(), "cut inside a varint");
    }

    #[test]
    fn nesting_follows_parents() {
        // 0: a call in the function; 1: a call inside 0; 2: another call in the function.
        let parents = [-1, 0, -1];
        assert!(descends_from(1, 0, &parents));
        assert!(descends_from(0, 0, &parents));
        assert!(!descends_from(2, 0, &parents));
        assert!(!descends_from(-1, 0, &parents));
    }
}
