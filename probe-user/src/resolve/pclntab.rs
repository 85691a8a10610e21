//! Go's function table (`.gopclntab`): names, entries and ends of every Go function, present
//! even in binaries stripped with `-ldflags='-s -w'`. Layouts by magic:
//! 0xfffffffb Go 1.2-1.15, 0xfffffffa Go 1.16-1.17, 0xfffffff0 Go 1.18-1.19, 0xfffffff1 Go 1.20+.
//! Every offset is bounds-checked: a table that lies gives an error, never a wrong function.
use anyhow::{bail, ensure, Context, Result};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoFunc {
    /// As in the symbol table: assembly (ABI0) functions get their `.abi0` suffix back.
    pub name: String,
    pub entry: u64,
    /// Start of the next function: includes the INT3 padding after this one.
    pub end: u64,
    /// `_func.args`: the bytes of its argument frame: arguments laid out as on the stack, then
    /// results (ABI0: all of them; ABIInternal: those assigned to the stack), as measured with
    /// Go 1.19 and 1.23.
    pub args: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Layout {
    Go12,
    Go116,
    Go118,
    Go120,
}

impl Layout {
    /// Offset of `_func.flag` in a function record (Go 1.17+; 1.16 has padding there).
    fn flag_offset(self, ptr_size: usize) -> Option<usize> {
        match self {
            Layout::Go12 => None,
            Layout::Go116 => Some(ptr_size + 4 * 8 + 1),
            Layout::Go118 => Some(4 + 4 * 8 + 1),
            Layout::Go120 => Some(4 + 4 * 9 + 1), // startLine was added before funcID
        }
    }
}

/// `funcFlag_ASM`: the function is written in assembly, so it uses the stack ABI (ABI0).
const FUNC_FLAG_ASM: u64 = 1 << 2;

/// Refuse absurd tables (a lying header could claim billions of functions).
const MAX_FUNCS: u64 = 4_000_000;

pub(super) struct Reader<'a> {
    data: &'a [u8],
    ptr_size: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn uint(&self, off: usize, size: usize) -> Result<u64> {
        let b = self
            .data
            .get(off..off.checked_add(size).context("offset overflow")?)
            .with_context(|| format!("pclntab read past its end at {off:#x}"))?;
        let mut buf = [0u8; 8];
        buf[..size].copy_from_slice(b);
        Ok(u64::from_le_bytes(buf))
    }

    fn word(&self, off: usize) -> Result<u64> {
        self.uint(off, self.ptr_size)
    }

    pub(super) fn u32(&self, off: usize) -> Result<u64> {
        self.uint(off, 4)
    }

    /// The bytes from `off` to the end of the table.
    pub(super) fn tail(&self, off: usize) -> Result<&'a [u8]> {
        self.data.get(off..).with_context(|| format!("pclntab offset {off:#x} past its end"))
    }

    /// The i-th pointer-sized header field after the 8-byte preamble.
    fn header(&self, i: usize) -> Result<usize> {
        usize::try_from(self.word(8 + i * self.ptr_size)?).context("header field too large")
    }

    pub(super) fn cstr(&self, off: usize) -> Result<String> {
        let tail = self.data.get(off..).context("name offset past the table")?;
        let len = tail.iter().position(|&b| b == 0).context("unterminated function name")?;
        Ok(String::from_utf8_lossy(&tail[..len]).into_owned())
    }
}

/// A checked `.gopclntab` header: where the names, the function table and its records, and
/// (Go 1.16+) the pc-value tables are.
pub(super) struct Table<'a> {
    pub(super) r: Reader<'a>,
    pub(super) layout: Layout,
    pub(super) nfunc: usize,
    names_base: usize,
    functab: usize,
    /// Function records are relative to this (the function table, or the table start in 1.2).
    records_base: usize,
    text_start: u64,
    /// Bytes of one entry field in the function table (a u32 offset in 1.18+, else a word).
    entry_size: usize,
    /// Start of the pc-value tables (`pctab`); 0 for Go 1.2-1.15.
    pub(super) pctab: usize,
}

impl<'a> Table<'a> {
    /// Parses the header. `text_address` (the `.text` section's address) stands in for a Go
    /// 1.18+ header's text start when that field is left to a dynamic relocation (PIE) and
    /// reads as 0.
    pub(super) fn parse(data: &'a [u8], text_address: u64) -> Result<Table<'a>> {
        ensure!(data.len() >= 16, "pclntab too short");
        let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
        let layout = match magic {
            0xfffffffb => Layout::Go12,
            0xfffffffa => Layout::Go116,
            0xfffffff0 => Layout::Go118,
            0xfffffff1 => Layout::Go120,
            _ => bail!("unknown pclntab magic {magic:#x}"),
        };
        ensure!(data[4] == 0 && data[5] == 0, "bad pclntab header padding");
        let ptr_size = data[7] as usize;
        ensure!(ptr_size == 8, "pclntab pointer size {ptr_size}, expected 8 (x86-64)");
        let r = Reader { data, ptr_size };

        let nfunc = r.word(8)?;
        ensure!(nfunc <= MAX_FUNCS, "pclntab claims {nfunc} functions");
        // Every Go program has functions (runtime ones at least): a count of 0 is damage.
        ensure!(nfunc > 0, "pclntab's function count is 0");
        let nfunc = nfunc as usize;
        // Per layout: where names live, where the function table is, how entries are stored.
        let (names_base, functab, text_start, entry_size, pctab) = match layout {
            // nfunc, then functab right after the header: (entry pc, funcoff) words.
            Layout::Go12 => (0usize, 8 + ptr_size, 0u64, ptr_size, 0),
            // nfunc, nfiles, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset.
            Layout::Go116 => (r.header(2)?, r.header(6)?, 0, ptr_size, r.header(5)?),
            // nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset.
            Layout::Go118 | Layout::Go120 => (r.header(3)?, r.header(7)?, r.word(8 + 2 * ptr_size)?, 4, r.header(6)?),
        };
        let text_start = if text_start == 0 { text_address } else { text_start };
        let records_base = if layout == Layout::Go12 { 0 } else { functab };
        Ok(Table { r, layout, nfunc, names_base, functab, records_base, text_start, entry_size, pctab })
    }

    /// Function records store their entry as a u32 offset from the text start (1.18+).
    fn relative_entries(&self) -> bool {
        matches!(self.layout, Layout::Go118 | Layout::Go120)
    }

    /// The entry address of function `i` (`i == nfunc`: the end of the last one).
    pub(super) fn entry(&self, i: usize) -> Result<u64> {
        let v = self.r.uint(self.functab + i * 2 * self.entry_size, self.entry_size)?;
        Ok(if self.relative_entries() { self.text_start.checked_add(v).context("entry overflow")? } else { v })
    }

    /// The offset of function `i`'s record (`_func`), checked against its table entry.
    pub(super) fn record(&self, i: usize) -> Result<usize> {
        let funcoff = self.r.uint(self.functab + i * 2 * self.entry_size + self.entry_size, self.entry_size)? as usize;
        let record = self.records_base.checked_add(funcoff).context("record offset overflow")?;
        // The record starts with the entry (u32 offset in 1.18+, a word before), then nameoff.
        let record_entry = if self.relative_entries() {
            self.text_start.checked_add(self.r.u32(record)?).context("entry overflow")?
        } else {
            self.r.word(record)?
        };
        ensure!(record_entry == self.entry(i)?, "pclntab record of #{i} disagrees with its table entry");
        Ok(record)
    }

    /// Offset of the name offset in a record (after the entry field).
    fn nameoff_at(&self, record: usize) -> usize {
        record + if self.relative_entries() { 4 } else { self.r.ptr_size }
    }

    /// The function name at `nameoff` in the name table.
    pub(super) fn name(&self, nameoff: u64) -> Result<String> {
        self.r.cstr(self.names_base.checked_add(nameoff as usize).context("name offset overflow")?)
    }

    /// The name offset of the function whose record is at `record`.
    pub(super) fn nameoff(&self, record: usize) -> Result<u64> {
        self.r.u32(self.nameoff_at(record))
    }

    /// `_func.args` of the function whose record is at `record` (right after the name offset).
    fn args(&self, record: usize) -> Result<u32> {
        Ok(self.r.u32(self.nameoff_at(record) + 4)? as u32)
    }

    /// The index of the function entering at `entry`, found by bisection (entries ascend).
    fn index_of(&self, entry: u64) -> Result<Option<usize>> {
        let (mut low, mut high) = (0, self.nfunc);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.entry(middle)? < entry {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok((low < self.nfunc && self.entry(low)? == entry).then_some(low))
    }
}

/// Each function's `_func.args` by entry, or (`only`) that one function's: its names are not
/// read, which the whole list of `functions` costs (milliseconds on a small program).
pub fn args_sizes(data: &[u8], text_address: u64, only: Option<u64>) -> Result<HashMap<u64, u32>> {
    let table = Table::parse(data, text_address)?;
    let indexes: Vec<usize> = match only {
        Some(entry) => table.index_of(entry)?.into_iter().collect(),
        None => (0..table.nfunc).collect(),
    };
    indexes.into_iter().map(|i| Ok((table.entry(i)?, table.args(table.record(i)?)?))).collect()
}

/// Parses the table. `text_address` (the `.text` section's address) stands in for a Go 1.18+
/// header's text start when that field is left to a dynamic relocation (PIE) and reads as 0.
pub fn functions(data: &[u8], text_address: u64) -> Result<Vec<GoFunc>> {
    let table = Table::parse(data, text_address)?;
    let (r, layout, ptr_size) = (&table.r, table.layout, table.r.ptr_size);
    let mut out = Vec::with_capacity(table.nfunc);
    let mut previous = 0u64;
    for i in 0..table.nfunc {
        let entry = table.entry(i)?;
        let end = table.entry(i + 1)?;
        ensure!(entry >= previous && end >= entry, "pclntab entries out of order at #{i}");
        previous = entry;
        let record = table.record(i)?;
        let nameoff = table.nameoff(record)?;
        let args = table.args(record)?;
        let mut name = table.name(nameoff)?;
        if let Some(flag_at) = layout.flag_offset(ptr_size) {
            // Package-less assembly helpers (`aeshashbody`) carry no suffix in `.symtab` either.
            if r.uint(record + flag_at, 1)? & FUNC_FLAG_ASM != 0 && name.contains('.') {
                name.push_str(".abi0");
            }
        }
        out.push(GoFunc { name, entry, end, args });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(functions(&[], 0).is_err());
        assert!(functions(&[0xff; 64], 0).is_err());
        let mut lying = vec![0u8; 128];
        lying[0..4].copy_from_slice(&0xfffffff0u32.to_le_bytes());
        lying[7] = 8;
        lying[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // nfunc
        assert!(functions(&lying, 0).is_err());
        lying[8..16].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(functions(&lying, 0).unwrap_err().to_string(), "pclntab's function count is 0");
        lying[8..16].copy_from_slice(&3u64.to_le_bytes());
        lying[8 + 7 * 8..8 + 8 * 8].copy_from_slice(&0xffff_ffffu64.to_le_bytes()); // functab
        assert!(functions(&lying, 0).is_err());
    }
}
