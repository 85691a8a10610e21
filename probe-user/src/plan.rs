//! Planning: from a resolved function and what to measure, the exact attach sites (file
//! offsets, probe kind, cookie). Everything that decides correctness is decided here, before
//! anything touches the kernel.
use crate::arch::{EntrySite, Handling};
use crate::error::user;
use crate::resolve::abi::Abi;
use crate::resolve::elf::{Binary, Function};
use crate::shared::{By, ExitMode};
use anyhow::{Context, Result};
use probe_ebpf::{Filter, LatencyCookie, SpanShape, ValueCookie, ValueSource, Width, OPERAND_ARG};

pub mod events;
pub mod inlined;
mod job;
mod measured;

pub use job::{argdist_job, latency_job, ArgdistAsk, Job, Keying, LatencyAsk, DEFAULT_TOP_KEYS};
pub use measured::{InlinedSites, Measured, Resolution, ShapeCost, Spreads};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SiteKind {
    /// A plain uprobe at an instruction.
    Uprobe,
    /// A uretprobe on the function (fires on return). Never planned for Go code.
    Uretprobe,
    /// A plain uprobe in a caller that counts the calls of an inlined copy (`plan::inlined`),
    /// whatever the kind of measurement.
    InlinedCall,
}

#[derive(Clone, Debug)]
pub struct Site {
    /// The file (program or library) the offset is in.
    pub path: std::path::PathBuf,
    /// A uprobe at the offset or a uretprobe on the function; the kind of measurement's
    /// `Programs` names the program.
    pub kind: SiteKind,
    pub file_offset: u64,
    pub cookie: u64,
    /// What the kernel does with the probe's instruction: emulated ones are cheap.
    pub handling: Handling,
    /// An exit site (RET or uretprobe). Exits are attached before and detached after entries,
    /// so no entry is ever recorded whose return could go unseen: with a running process
    /// (`-p`), such an entry would later be popped and counted as abandoned.
    pub exit: bool,
}

/// How many of `sites` the kernel emulates and how many it single-steps, for the user:
/// `"3 probes: 1 emulated, 2 single-stepped"`.
pub fn describe_costs(sites: &[Site]) -> String {
    let emulated = sites.iter().filter(|s| s.handling.is_emulated()).count();
    let plural = if sites.len() == 1 { "" } else { "s" };
    format!("{} probe{plural}: {emulated} emulated, {} single-stepped", sites.len(), sites.len() - emulated)
}

/// What the programs read at an entry site besides SP, Go's g and the value argdist measures
/// there: a filter's arguments, and with `--by caller` the return address at SP. The
/// instructions skipped to reach a cheaper entry site must leave all of it as it was.
#[derive(Clone, Debug, Default)]
pub struct AlsoRead {
    pub sources: Vec<ValueSource>,
    pub return_address: bool,
    /// `--by stack`: the frame pointer, where the walk starts.
    pub frame_pointer: bool,
}

impl AlsoRead {
    pub fn of(filter: &Filter, by: Option<By>) -> AlsoRead {
        let sources = filter
            .conditions
            .iter()
            .filter(|c| c.operand == OPERAND_ARG)
            .filter_map(|c| ValueCookie::decode(c.source))
            .map(|cookie| cookie.source)
            .collect();
        let stack = by == Some(By::Stack);
        AlsoRead { sources, return_address: stack || by == Some(By::Caller), frame_pointer: stack }
    }
}

/// The entry probe's site for `function`, or one clear error naming the function. `value`: the
/// value argdist reads there, which the instructions skipped over may move to another register
/// (returned: where to read it at the site); None for latency and uretprobes (SP matters).
fn entry_site(
    binary: &Binary,
    function: &Function,
    go: bool,
    also: &AlsoRead,
    value: Option<ValueSource>,
) -> Result<(EntrySite, Option<ValueSource>)> {
    let code = binary.entry_code(function)?;
    let whole = function.size > 0;
    let reads = crate::arch::AlsoReads {
        sources: &also.sources,
        return_address: also.return_address,
        frame_pointer: also.frame_pointer,
    };
    crate::arch::entry_site(&code, function.addr, go, whole, &reads, value)
        .map_err(|why| user(format!("{}: {why}; trace its caller or another function", function.name)))
}

/// What the kernel does with a RET probe (single-stepped on x86-64, simulated on arm64).
const RET_HANDLING: Handling = crate::arch::RET_HANDLING;

/// What `argdist` measures.
#[derive(Clone, Debug)]
pub enum Value {
    /// The N-th integer argument register (or stack word) of the ABI: no declared types known.
    Arg(u32),
    /// The first integer result register.
    Ret,
    /// A declared parameter or result (`result`), located by resolve::params; `label` names it.
    Declared { source: ValueSource, width: Width, label: String, result: bool },
    /// A string argument read at the entry (`--count`): the register words of its pointer and,
    /// for a Go string, its length (a C string ends at its NUL).
    Text { ptr: u32, len: Option<u32> },
}

impl Value {
    /// Read at the function's exits (a result), not at its entry (an argument).
    pub fn at_return(&self) -> bool {
        matches!(self, Value::Ret | Value::Declared { result: true, .. })
    }

    /// The width the value is read with: as declared, else a whole register word.
    pub fn width(&self) -> Width {
        match self {
            Value::Declared { width, .. } => *width,
            _ => Width::W64,
        }
    }
}

/// The probes for one measured value of one function.
#[derive(Debug)]
pub struct ValuePlan {
    pub measured: Measured,
    pub abi: Abi,
    pub sites: Vec<Site>,
}

/// What an entry site of `value` reads, and its label.
fn entry_source(abi: Abi, value: &Value) -> Result<(String, ValueSource)> {
    let register = |n: u32| match abi.arg_source(n)? {
        ValueSource::Reg(r) => Ok(r),
        _ => Err(user(format!("a string argument on the stack ({abi}) cannot be read as text; count its length"))),
    };
    Ok(match *value {
        Value::Arg(n) => (format!("arg{n}"), abi.arg_source(n)?),
        Value::Text { ptr, len: Some(len) } => {
            (format!("arg{ptr}"), ValueSource::GoString { ptr: register(ptr)?, len: register(len)? })
        }
        Value::Text { ptr, len: None } => match abi.arg_source(ptr)? {
            // A 7th argument and after: the pointer is on the stack.
            ValueSource::Stack { offset } => (format!("arg{ptr}"), ValueSource::CStringOnStack { offset }),
            _ => (format!("arg{ptr}"), ValueSource::CString { ptr: register(ptr)? }),
        },
        Value::Declared { source, ref label, .. } => (label.clone(), source),
        Value::Ret => unreachable!("read at the exits"),
    })
}

/// Plans `argdist` on `function`, aggregating into value slot `slot`.
///
/// `also`: what the programs read at the entry besides the value (see `AlsoRead`).
pub fn value_plan(binary: &Binary, function: &Function, value: Value, slot: u32, also: &AlsoRead) -> Result<ValuePlan> {
    let abi = Abi::of(binary, &function.name);
    let (width, ret_source) = match &value {
        Value::Declared { width, source, .. } => (*width, *source),
        _ => (Width::W64, crate::arch::RETURN_VALUE),
    };
    let at_return = value.at_return();
    let ret_label = match &value {
        Value::Declared { label, .. } => label.clone(),
        _ => "ret".to_string(),
    };
    let site =
        |addr: u64, kind: SiteKind, source: ValueSource, handling: Handling, stack_check: bool| -> Result<Site> {
            Ok(Site {
                exit: at_return,
                path: binary.source.clone(),
                kind,
                file_offset: binary.code_offset(addr)?,
                cookie: ValueCookie { slot, source, stack_check, width }.encode(),
                handling,
            })
        };
    let (what, sites) = match value {
        Value::Arg(_) | Value::Text { .. } | Value::Declared { result: false, .. } => {
            let (what, source) = entry_source(abi, &value)?;
            let (entry, source) = entry_site(binary, function, abi.is_go(), also, Some(source))?;
            let source = source.expect("an entry value");
            (what, vec![site(entry.addr, SiteKind::Uprobe, source, entry.handling, entry.stack_check)?])
        }
        Value::Ret | Value::Declared { result: true, .. } => match abi {
            Abi::SystemV if !may_nest_past_uretprobe_limit(binary, function) => {
                // The uretprobe's own trap is at the entry site too: put it where the kernel
                // emulates (SP is the same there, so the return address is found).
                let (entry, _) = entry_site(binary, function, false, also, None)?;
                (ret_label.clone(), vec![site(entry.addr, SiteKind::Uretprobe, ret_source, entry.handling, false)?])
            }
            Abi::SystemV | Abi::GoRegister => {
                // No uretprobe on Go code: it crashes the program. Nor on recursive code: the
                // kernel drops uretprobe returns nested deeper than 64 in a thread. Probe every
                // RET instead; the first result is in RAX (X0 on arm64) there.
                let rets = crate::arch::code::ret_addresses(&binary.code(function)?, function.addr)
                    .with_context(|| format!("decoding {}", function.name))?;
                if rets.is_empty() {
                    return Err(user(format!(
                        "--ret: {} has no RET instruction (it only tail-calls); trace its callee instead",
                        function.name
                    )));
                }
                let sites = rets
                    .into_iter()
                    .map(|a| site(a, SiteKind::Uprobe, ret_source, RET_HANDLING, false))
                    .collect::<Result<_>>()?;
                (ret_label.clone(), sites)
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
    Ok(ValuePlan {
        measured: Measured { function: function.name.clone(), what, unit: None, top_values: 0, ..Default::default() },
        abi,
        sites,
    })
}

/// Whether value sites read from the process's memory: a stack word, a path into an argument,
/// or (`counting`) a
/// string's bytes. Registers, and a Go string's length, are in the probe's saved registers.
pub fn reads_memory(sites: &[Site], counting: bool) -> bool {
    let values = sites.iter().filter(|s| s.kind != SiteKind::InlinedCall);
    values.filter_map(|s| ValueCookie::decode(s.cookie)).any(|c| match c.source {
        ValueSource::Stack { .. } | ValueSource::CStringOnStack { .. } | ValueSource::Path { .. } => true,
        ValueSource::GoString { .. } | ValueSource::CString { .. } => counting,
        ValueSource::Reg(_) | ValueSource::Arm64Reg(_) => false,
    })
}

/// The probes measuring one function's latency, or why it cannot be measured.
pub enum LatencyPlan {
    /// `shape` says how its calls are bracketed by probes, which decides their own cost;
    /// `warning`: what the user should know about these numbers before reading them.
    Sites { measured: Measured, sites: Vec<Site>, shape: SpanShape, warning: Option<String> },
    /// Nothing can be attached: `function` `has` `reason` (e.g. "no RET instruction ...").
    Skip { function: String, reason: &'static str },
}

/// Plans `latency` on `function` into latency slot `slot`.
pub fn latency_plan(
    binary: &Binary,
    function: &Function,
    slot: u32,
    exit: ExitMode,
    unit: crate::shared::Unit,
    also: &AlsoRead,
) -> Result<LatencyPlan> {
    let go = Abi::of(binary, &function.name).is_go();
    let recursive = !go && may_nest_past_uretprobe_limit(binary, function);
    let use_rets = go || exit == ExitMode::Ret || (exit == ExitMode::Auto && recursive);
    let warning = (recursive && !use_rets).then(|| {
        format!(
            "{} calls itself, and the kernel drops uretprobe returns nested deeper than 64 in a \
             thread: such calls are not timed and show as abandoned; --exit auto or ret times them all",
            function.name
        )
    });
    if go && exit == ExitMode::Uretprobe {
        return Err(user(format!(
            "--exit uretprobe: {} is Go code, and a uretprobe crashes Go programs \
             (\"unknown caller pc\"); use --exit auto",
            function.name
        )));
    }
    if function.size == 0 && use_rets {
        return Ok(LatencyPlan::Skip {
            function: function.name.clone(),
            reason: "size 0 in the symbol table (instructions unknown)",
        });
    }
    let (entry, _) = entry_site(binary, function, go, also, None)?;
    let shape = SpanShape { entry_stepped: !entry.handling.is_emulated(), uretprobe: !use_rets, go };
    let cookie = |exit: bool| {
        let uretprobe = exit && shape.uretprobe;
        let (stack_check, entry_stepped) = (entry.stack_check, shape.entry_stepped);
        LatencyCookie { slot, exit, go, uretprobe, stack_check, entry_stepped, raw: false }.encode()
    };
    let mut sites = vec![Site {
        path: binary.source.clone(),
        kind: SiteKind::Uprobe,
        file_offset: binary.code_offset(entry.addr)?,
        cookie: cookie(false),
        handling: entry.handling,
        exit: false,
    }];
    if use_rets {
        let code = binary.code(function)?;
        let rets = crate::arch::code::ret_addresses(&code, function.addr)
            .with_context(|| format!("decoding {}", function.name))?;
        if rets.is_empty() {
            return Ok(LatencyPlan::Skip {
                function: function.name.clone(),
                reason: "no RET instruction (it only tail-calls or never returns)",
            });
        }
        for ret in rets {
            sites.push(Site {
                path: binary.source.clone(),
                kind: SiteKind::Uprobe,
                file_offset: binary.code_offset(ret)?,
                cookie: cookie(true),
                handling: RET_HANDLING,
                exit: true,
            });
        }
    } else {
        // At the entry site, so the kernel traps once per call for both probes (and SP there
        // is the function's, so the return address is where the uretprobe looks).
        sites.push(Site {
            path: binary.source.clone(),
            kind: SiteKind::Uretprobe,
            file_offset: binary.code_offset(entry.addr)?,
            cookie: cookie(true),
            handling: entry.handling,
            exit: true,
        });
    }
    let measured = Measured {
        function: function.name.clone(),
        what: "latency".into(),
        unit: Some(unit),
        top_values: 0,
        inlined: None,
        resolution: Resolution::of_shape(shape),
    };
    Ok(LatencyPlan::Sites { measured, sites, shape, warning })
}

/// Whether a function calls itself, so one thread can have more than the 64 pending uretprobe
/// returns the kernel keeps (it drops deeper ones, logging only "omit uretprobe due to
/// nestedness limit"). Such functions get RET probes. Indirect recursion is not seen here; the
/// summary warns when uretprobe exits lost calls (see render).
fn may_nest_past_uretprobe_limit(binary: &Binary, function: &Function) -> bool {
    binary.code(function).is_ok_and(|code| crate::arch::code::calls_itself(&code, function.addr))
}

#[cfg(test)]
mod tests {
    //! Plans for functions of this very test binary whose instructions are known exactly:
    //! calibrate.rs's assembly functions (`push %rbp; pop %rbp; ret` and `mov %rdi,%rax; ret`).
    use super::*;
    use crate::resolve::find_function;
    use crate::shared::Unit;
    use probe_ebpf::Reg;

    fn this_binary() -> Binary {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        Binary::open(&exe).unwrap()
    }

    fn latency_sites(binary: &Binary, name: &str, exit: ExitMode) -> (Vec<Site>, SpanShape) {
        let function = find_function(binary, name).unwrap();
        match latency_plan(binary, function, 7, exit, Unit::Us, &AlsoRead::default()).unwrap() {
            LatencyPlan::Sites { sites, shape, warning: None, .. } => (sites, shape),
            LatencyPlan::Sites { warning: Some(w), .. } => panic!("unexpected warning: {w}"),
            LatencyPlan::Skip { reason, .. } => panic!("skipped: {reason}"),
        }
    }

    #[test]
    fn latency_with_ret_probes_enters_on_the_emulated_push_and_exits_at_the_ret() {
        let binary = this_binary();
        let function = find_function(&binary, "probe_cal_emulated_ret").unwrap();
        let entry = binary.code_offset(function.addr).unwrap();
        let (sites, shape) = latency_sites(&binary, "probe_cal_emulated_ret", ExitMode::Ret);
        assert_eq!(shape, SpanShape { entry_stepped: false, uretprobe: false, go: false });
        assert_eq!(sites.len(), 2);
        let (enter, leave) = (&sites[0], &sites[1]);
        assert_eq!((enter.kind, enter.exit, enter.file_offset), (SiteKind::Uprobe, false, entry));
        assert_eq!(enter.handling, Handling::Emulated);
        // push (1 byte), pop (1 byte), then the RET.
        assert_eq!((leave.kind, leave.exit, leave.file_offset), (SiteKind::Uprobe, true, entry + 2));
        let cookie = LatencyCookie::decode(leave.cookie);
        assert_eq!((cookie.slot, cookie.exit, cookie.go, cookie.uretprobe), (7, true, false, false));
        assert!(!LatencyCookie::decode(enter.cookie).exit);
    }

    #[test]
    fn latency_of_c_code_uses_one_uretprobe_at_the_entry_site_and_knows_a_stepped_entry() {
        let binary = this_binary();
        let (sites, shape) = latency_sites(&binary, "probe_cal_stepped_uret", ExitMode::Auto);
        assert_eq!(shape, SpanShape { entry_stepped: true, uretprobe: true, go: false });
        assert_eq!(sites.len(), 2);
        assert_eq!(sites[0].handling, Handling::SingleStepped);
        assert_eq!((sites[1].kind, sites[1].exit), (SiteKind::Uretprobe, true));
        assert_eq!(sites[1].file_offset, sites[0].file_offset, "one trap serves both probes");
        assert!(LatencyCookie::decode(sites[1].cookie).uretprobe);
    }

    #[test]
    fn argdist_reads_system_v_registers_and_the_return_value_by_uretprobe() {
        let binary = this_binary();
        let function = find_function(&binary, "probe_cal_emulated_ret").unwrap();
        let plan = value_plan(&binary, function, Value::Arg(1), 3, &AlsoRead::default()).unwrap();
        assert_eq!(plan.abi, Abi::SystemV);
        assert_eq!(plan.measured.what, "arg1");
        let [site] = plan.sites.as_slice() else { panic!("one site: {:?}", plan.sites) };
        assert_eq!((site.kind, site.exit), (SiteKind::Uprobe, false));
        let cookie = ValueCookie::decode(site.cookie).unwrap();
        assert_eq!((cookie.slot, cookie.source, cookie.stack_check), (3, ValueSource::Reg(Reg::Rsi), false));

        let plan = value_plan(&binary, function, Value::Ret, 0, &AlsoRead::default()).unwrap();
        let [site] = plan.sites.as_slice() else { panic!("one site: {:?}", plan.sites) };
        assert_eq!((site.kind, site.exit), (SiteKind::Uretprobe, true));
        assert_eq!(ValueCookie::decode(site.cookie).unwrap().source, ValueSource::Reg(Reg::Rax));
    }

    #[test]
    fn an_argument_past_the_registers_is_refused_by_name() {
        let binary = this_binary();
        let function = find_function(&binary, "probe_cal_emulated_ret").unwrap();
        let e = value_plan(&binary, function, Value::Arg(6), 0, &AlsoRead::default()).unwrap_err().to_string();
        assert!(e.contains("--arg 6: out of range for the System V ABI"), "{e}");
    }

    #[test]
    fn costs_are_described_per_kind_of_instruction() {
        let binary = this_binary();
        let (sites, _) = latency_sites(&binary, "probe_cal_emulated_ret", ExitMode::Ret);
        assert_eq!(describe_costs(&sites), "2 probes: 1 emulated, 1 single-stepped");
    }
}
