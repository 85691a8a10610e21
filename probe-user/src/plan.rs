//! Planning: from a resolved function and what to measure, the exact attach sites (file
//! offsets, probe kind, cookie). Everything that decides correctness is decided here, before
//! anything touches the kernel.
use crate::abi::Abi;
use crate::disasm;
use crate::error::user;
use crate::render::Measured;
use crate::target::elf::{Binary, Function};
use anyhow::{Context, Result};
use probe_ebpf::{Reg, ValueCookie, ValueSource};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// A plain uprobe at an instruction.
    Uprobe,
    /// A uretprobe on the function (fires on return). Never planned for Go code.
    Uretprobe,
}

#[derive(Clone, Debug)]
pub struct Site {
    pub file_offset: u64,
    pub kind: SiteKind,
    pub cookie: u64,
}

/// What `argdist` measures.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    Arg(u32),
    Ret,
}

/// The probes for one measured value of one function.
#[derive(Debug)]
pub struct ValuePlan {
    pub measured: Measured,
    pub abi: Abi,
    pub sites: Vec<Site>,
}

/// Plans `argdist` on `function`, aggregating into value slot `slot`.
pub fn value_plan(binary: &Binary, function: &Function, value: Value, slot: u32) -> Result<ValuePlan> {
    let abi = Abi::of(binary, &function.name);
    let site = |addr: u64, kind: SiteKind, source: ValueSource| -> Result<Site> {
        Ok(Site {
            file_offset: binary.code_offset(addr)?,
            kind,
            cookie: ValueCookie { slot, source }.encode(),
        })
    };
    let (what, sites) = match value {
        Value::Arg(n) => {
            let source = abi.arg_source(n)?;
            let entry = if abi.is_go() {
                disasm::go_body_entry(binary.code(function)?, function.addr)
            } else {
                function.addr
            };
            (format!("arg{n}"), vec![site(entry, SiteKind::Uprobe, source)?])
        }
        Value::Ret => match abi {
            Abi::SystemV => (
                "ret".to_string(),
                vec![site(function.addr, SiteKind::Uretprobe, ValueSource::Reg(Reg::Rax))?],
            ),
            Abi::GoRegister => {
                // No uretprobe on Go code: it crashes the program. Probe every RET instead;
                // the first result is in RAX there.
                let rets = disasm::ret_addresses(binary.code(function)?, function.addr)
                    .with_context(|| format!("decoding {}", function.name))?;
                if rets.is_empty() {
                    return Err(user(format!(
                        "--ret: {} has no RET instruction (it only tail-calls); trace its callee instead",
                        function.name
                    )));
                }
                let sites = rets
                    .into_iter()
                    .map(|a| site(a, SiteKind::Uprobe, ValueSource::Reg(Reg::Rax)))
                    .collect::<Result<_>>()?;
                ("ret".to_string(), sites)
            }
            Abi::GoStack => {
                return Err(user(format!(
                    "--ret: {} uses the Go stack ABI, whose result slot probe cannot locate; \
                     measure a register-ABI function (Go >= 1.17, no .abi0 suffix) instead",
                    function.name
                )))
            }
        },
    };
    Ok(ValuePlan { measured: Measured { function: function.name.clone(), what }, abi, sites })
}
