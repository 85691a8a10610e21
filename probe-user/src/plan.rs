//! Planning: from a resolved function and what to measure, the exact attach sites (file
//! offsets, probe kind, cookie). Everything that decides correctness is decided here, before
//! anything touches the kernel.
use crate::abi::Abi;
use crate::disasm;
use crate::error::user;
use crate::render::Measured;
use crate::target::elf::{Binary, Function};
use anyhow::{Context, Result};
use probe_ebpf::{
    LatencyCookie, Reg, ValueCookie, ValueSource, PROG_LATENCY_UPROBE, PROG_LATENCY_URETPROBE,
    PROG_VALUE_UPROBE, PROG_VALUE_URETPROBE,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// A plain uprobe at an instruction.
    Uprobe,
    /// A uretprobe on the function (fires on return). Never planned for Go code.
    Uretprobe,
}

#[derive(Clone, Debug)]
pub struct Site {
    /// The file (program or library) the offset is in.
    pub path: std::path::PathBuf,
    /// Name of the eBPF program to attach (probe_ebpf::PROG_*); it decides uprobe or uretprobe.
    pub program: &'static str,
    pub file_offset: u64,
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
            path: binary.path.clone(),
            program: match kind {
                SiteKind::Uprobe => PROG_VALUE_UPROBE,
                SiteKind::Uretprobe => PROG_VALUE_URETPROBE,
            },
            file_offset: binary.code_offset(addr)?,
            cookie: ValueCookie { slot, source }.encode(),
        })
    };
    let (what, sites) = match value {
        Value::Arg(n) => {
            let source = abi.arg_source(n)?;
            let entry = if abi.is_go() {
                disasm::go_body_entry(&binary.code(function)?, function.addr)
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
                let rets = disasm::ret_addresses(&binary.code(function)?, function.addr)
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
    Ok(ValuePlan { measured: Measured { function: function.name.clone(), what, unit: None }, abi, sites })
}

/// How `latency` observes a function's return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExitMode {
    /// RET probes for Go, uretprobes for everything else.
    Auto,
    /// A plain uprobe on every RET instruction.
    Ret,
    /// A uretprobe (refused for Go: it crashes the program).
    Uretprobe,
}

/// The probes measuring one function's latency, or why it cannot be measured.
pub enum LatencyPlan {
    Sites { measured: Measured, sites: Vec<Site> },
    /// Nothing can be attached: `function` `has` `reason` (e.g. "no RET instruction ...").
    Skip { function: String, reason: &'static str },
}

/// Plans `latency` on `function` into latency slot `slot`.
pub fn latency_plan(
    binary: &Binary,
    function: &Function,
    slot: u32,
    exit: ExitMode,
    unit: crate::histogram::Unit,
) -> Result<LatencyPlan> {
    let go = Abi::of(binary, &function.name).is_go();
    let use_rets = go || exit == ExitMode::Ret;
    if go && exit == ExitMode::Uretprobe {
        return Err(user(format!(
            "--exit uretprobe: {} is Go code, and a uretprobe crashes Go programs \
             (\"unknown caller pc\"); use --exit auto",
            function.name
        )));
    }
    let cookie = |exit: bool, uretprobe: bool| LatencyCookie { slot, exit, go, uretprobe }.encode();
    if function.size == 0 {
        return Ok(LatencyPlan::Skip {
            function: function.name.clone(),
            reason: "size 0 in the symbol table (instructions unknown)",
        });
    }
    let code = binary.code(function)?;
    let entry = if go { disasm::go_body_entry(&code, function.addr) } else { function.addr };
    let mut sites = vec![Site {
        path: binary.path.clone(),
        program: PROG_LATENCY_UPROBE,
        file_offset: binary.code_offset(entry)?,
        cookie: cookie(false, false),
    }];
    if use_rets {
        let rets = disasm::ret_addresses(&code, function.addr)
            .with_context(|| format!("decoding {}", function.name))?;
        if rets.is_empty() {
            return Ok(LatencyPlan::Skip {
                function: function.name.clone(),
                reason: "no RET instruction (it only tail-calls or never returns)",
            });
        }
        for ret in rets {
            sites.push(Site {
                path: binary.path.clone(),
                program: PROG_LATENCY_UPROBE,
                file_offset: binary.code_offset(ret)?,
                cookie: cookie(true, false),
            });
        }
    } else {
        sites.push(Site {
            path: binary.path.clone(),
            program: PROG_LATENCY_URETPROBE,
            file_offset: binary.code_offset(function.addr)?,
            cookie: cookie(true, true),
        });
    }
    let measured = Measured { function: function.name.clone(), what: "latency".into(), unit: Some(unit) };
    Ok(LatencyPlan::Sites { measured, sites })
}
