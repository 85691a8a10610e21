//! `latency --slower-than` / `--events`: what each traced function's events read (its `--arg`s
//! as declared, its result with `--ret`) and where a Go program keeps a goroutine's id.
use crate::error::user;
use crate::resolve::abi::Abi;
use crate::resolve::elf::{Binary, Function, Runtime};
use crate::resolve::go::{goid_offset_of_version, GoidOffset};
use crate::resolve::params::{self, Reading, Selection};
use crate::shared::ArgSpec;
use anyhow::Result;
use probe_ebpf::{EventSources, ValueCookie, ValueSource, Width, MAX_EVENT_ARGS};

/// What latency was asked to send per call.
#[derive(Clone, Debug, Default)]
pub struct EventsAsk {
    /// Calls of at least this many nanoseconds (after correction) are sent.
    pub min_ns: u64,
    /// `--events`: every call (`min_ns` 0).
    pub every_call: bool,
    pub args: Vec<ArgSpec>,
    pub ret: Option<u32>,
    /// `--stack`: each event carries its stack.
    pub stack: bool,
}

/// One value an event shows: its label and how to print it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    pub label: String,
    /// Unsigned 64-bit (a pointer, a `uint64`): printed as such.
    pub unsigned: bool,
    /// A string shown as its text (its first `EVENT_TEXT_BYTES` bytes).
    pub text: bool,
}

/// What one function's events carry.
#[derive(Clone, Debug)]
pub struct SlotEvents {
    pub sources: EventSources,
    pub args: Vec<Shown>,
    pub ret: Option<Shown>,
    /// Go code: its events carry the goroutine id.
    pub go: bool,
}

/// The events of a whole run.
#[derive(Clone, Debug)]
pub struct EventsPlan {
    pub min_ns: u64,
    pub every_call: bool,
    /// Per slot, in slot order.
    pub slots: Vec<SlotEvents>,
    /// Offset of `goid` in `runtime.g` (0: no Go function is traced).
    pub goid_offset: u64,
    /// `--stack`: each event carries its stack.
    pub stack: bool,
}

impl EventsPlan {
    /// Whether any slot stashes arguments at its entry.
    pub fn reads_args(&self) -> bool {
        self.slots.iter().any(|s| s.sources.nargs > 0)
    }
}

fn encode(source: ValueSource, width: Width) -> u64 {
    ValueCookie { slot: 0, source, stack_check: false, width }.encode()
}

/// Where `function`'s `--arg`s and `--ret` are, as argdist would read them.
pub fn slot_events(binary: &Binary, function: &Function, ask: &EventsAsk) -> Result<SlotEvents> {
    if ask.args.len() > MAX_EVENT_ARGS {
        return Err(user(format!(
            "--arg given {} times: an event carries at most {MAX_EVENT_ARGS} arguments; drop some",
            ask.args.len()
        )));
    }
    let abi = Abi::of(binary, &function.name);
    let mut sources = EventSources::NONE;
    let mut args = Vec::new();
    for (i, spec) in ask.args.iter().enumerate() {
        let (source, width, label) = match params::select(binary, function, Some(spec), None)? {
            // A string: its text, read where it is (not its length, as a histogram has it).
            Selection::Declared { measure: Reading { text: Some(at), .. }, label, .. } => {
                sources.text |= 1 << i;
                let name = label.strip_prefix("len(").and_then(|l| l.strip_suffix(')')).unwrap_or(&label);
                sources.args[i] = encode(at, Width::W64);
                args.push(Shown { label: name.to_string(), unsigned: false, text: true });
                continue;
            }
            Selection::Declared { measure, label, .. } => (measure.source, measure.width, label),
            Selection::Words { .. } => match spec {
                ArgSpec::Position(n) => (abi.arg_source(*n)?, Width::W64, format!("arg{n}")),
                ArgSpec::Name(name) => {
                    return Err(user(format!(
                        "--arg {name}: {} has no declared parameters (no debug information); name it by position, \
                         --arg N",
                        function.name
                    )))
                }
            },
        };
        sources.args[i] = encode(source, width);
        args.push(Shown { label, unsigned: width == Width::U64, text: false });
    }
    sources.nargs = args.len() as u32;
    let ret = match ask.ret {
        None => None,
        Some(_) if abi == Abi::GoStack => {
            return Err(user(format!(
                "--ret: {} uses the Go stack ABI, whose result slot probe cannot locate; drop --ret for it",
                function.name
            )))
        }
        Some(n) => {
            let (source, width, label) = match params::select(binary, function, None, Some(n))? {
                Selection::Declared { measure, label, .. } => (measure.source, measure.width, label),
                Selection::Words { .. } => (crate::arch::RETURN_VALUE, Width::W64, "ret".to_string()),
            };
            sources.result = encode(source, width);
            sources.ret = 1;
            Some(Shown { label, unsigned: width == Width::U64, text: false })
        }
    };
    Ok(SlotEvents { sources, args, ret, go: abi.is_go() })
}

/// Where the Go program `binary` keeps a goroutine's id, or one line saying why it cannot be
/// known (a stripped binary of a Go version whose layout probe does not know).
pub fn goid_offset(binary: &Binary) -> Result<GoidOffset> {
    let version = match &binary.runtime {
        Runtime::Go(info) => info.version,
        Runtime::Native => None,
    };
    // A DWARF that cannot be read is as none: the version table may still know.
    if let Ok(Some(offset)) = crate::resolve::dwarf::struct_field_offset(&binary.source, "runtime.g", "goid") {
        return Ok(GoidOffset::Dwarf(offset));
    }
    if let Some(offset) = version.and_then(goid_offset_of_version) {
        return Ok(GoidOffset::Version(offset));
    }
    let built = match version {
        Some(v) => format!("built by {v}, a Go version whose runtime.g layout probe does not know"),
        None => "of an unknown Go version".to_string(),
    };
    Err(user(format!(
        "--slower-than/--events: the goroutine ids of {} cannot be known: it has no DWARF (stripped) and is {built}; \
         trace a build with debug information (no -ldflags=-s -w)",
        binary.path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::go::GoVersion;

    #[test]
    fn goid_offsets_are_known_per_version() {
        let v = |minor| GoVersion { major: 1, minor };
        assert_eq!(goid_offset_of_version(v(19)), Some(152));
        assert_eq!(goid_offset_of_version(v(21)), Some(152));
        assert_eq!(goid_offset_of_version(v(23)), Some(160));
        assert_eq!(goid_offset_of_version(v(30)), None);
    }
}
