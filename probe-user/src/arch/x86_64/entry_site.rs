//! Where a function's entry probe goes on x86-64: the cheapest instruction that every call
//! passes exactly once, in the state of the function's start as far as the probe's program can
//! tell. The kernel emulates a uprobe on `jmp`, `call`, `jcc`, `nop` and `push reg` (about 1 us
//! here) and single-steps every other instruction out of line (a second exception, 5-15 us
//! under virtualisation, varying per hit by microseconds), so skipping a few instructions that
//! change nothing the probe reads makes a call both cheaper and measurable.
use super::{decode, go_stack_check_branch, probe_handling};
use crate::arch::{EntrySite, Handling, Moved};
use iced_x86::{FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register};
use probe_ebpf::{Reg, ValueSource};
use std::collections::HashSet;

/// Instructions looked at from the first when searching an equivalent, cheaper entry site
/// (16 finds 0.1% more emulated entries than 8 on Prometheus, caddy and redis-server).
const ENTRY_LOOKAHEAD: usize = 8;

/// What the entry program reads at its site besides SP (a frame's depth, stack arguments, the
/// return address) and, in Go, R14 (g): the instructions skipped to reach a cheaper site must
/// leave it as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// Registers read there that must keep their value: a filter's arguments.
    pub registers: Vec<Register>,
    /// Registers of the value argdist measures: a skipped instruction may overwrite one after
    /// a full 64-bit `mov` copied it, and the program then reads the copy (`EntrySite::moved`).
    pub movable: Vec<Register>,
    /// Memory read there (a stack argument, a string's bytes, the return address at SP): the
    /// skipped instructions write none.
    pub memory: bool,
    /// Nothing there depends on SP (argdist reading only registers): the skipped instructions
    /// may move it (`sub $8,%rsp` before a `call`). A latency frame's depth, a uretprobe's
    /// return address and memory reads (stack arguments) all depend on it.
    pub sp_unused: bool,
}

impl Reads {
    /// What the programs read at an entry site: `also` (a filter's arguments), the return
    /// address at SP (`--by caller`), and `value`, the value argdist measures there (None for
    /// latency and uretprobes, which depend on SP).
    pub fn of(also: &[ValueSource], return_address: bool, value: Option<ValueSource>) -> Reads {
        let mut reads = Reads { memory: return_address, sp_unused: value.is_some(), ..Reads::default() };
        for (n, source) in also.iter().chain(value.as_ref()).enumerate() {
            let registers = if n < also.len() { &mut reads.registers } else { &mut reads.movable };
            match *source {
                ValueSource::Reg(r) => registers.push(register(r)),
                ValueSource::GoString { ptr, len } => {
                    registers.extend([register(ptr), register(len)]);
                    reads.memory = true;
                }
                ValueSource::CString { ptr } => {
                    registers.push(register(ptr));
                    reads.memory = true;
                }
                ValueSource::Path { base, .. } => {
                    registers.push(register(base));
                    reads.memory = true;
                }
                ValueSource::Stack { .. } | ValueSource::CStringOnStack { .. } => reads.memory = true,
                ValueSource::Arm64Reg(_) => {}
            }
        }
        reads
    }
}

/// `source` read where the instructions before the entry site `moved` its registers.
pub fn moved_source(source: ValueSource, moved: &Moved) -> ValueSource {
    let to = |r: Reg| reg(moved.find(register(r))).expect("moved only to a readable register");
    match source {
        ValueSource::Reg(r) => ValueSource::Reg(to(r)),
        ValueSource::GoString { ptr, len } => ValueSource::GoString { ptr: to(ptr), len: to(len) },
        ValueSource::CString { ptr } => ValueSource::CString { ptr: to(ptr) },
        ValueSource::Path { base, index } => ValueSource::Path { base: to(base), index },
        other => other,
    }
}

fn register(r: Reg) -> Register {
    READABLE[Reg::ALL.iter().position(|&x| x == r).expect("every Reg is readable")]
}

fn reg(r: Register) -> Option<Reg> {
    READABLE.iter().position(|&x| x == r).map(|n| Reg::ALL[n])
}

/// Registers the programs can read a value from, in the order of `Reg::ALL`: a copy elsewhere
/// is lost.
const READABLE: [Register; 10] = [
    Register::RAX,
    Register::RBX,
    Register::RCX,
    Register::RDX,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
];

/// Chooses the entry probe's instruction, as cheap as is equivalent to the function's start:
/// - Go with a stack check: the check's `JBE` (emulated), the program ignoring taken jumps,
///   so a call whose stack grows still counts once;
/// - otherwise the first instruction the kernel emulates (`push`, `jmp`, `call`, `jcc`, `nop`)
///   of the straight-line start, when every instruction before it leaves what the program
///   reads as it was (see `changes_nothing_read`) and no jump lands on it or between: every
///   call then passes it exactly once, in the state of the function's start (Go's leaf
///   `xor %eax,%eax; jmp`, Redis's `movabs $..,%rax; push %rbp`, `endbr64; push %rbp`);
/// - else the first instruction, or if the kernel refuses it (e.g. `LOCK ADD`) the first it
///   does not refuse on the same terms (or, for Go, the one after the stack check).
///
/// `whole`: `code` is the whole function, so every jump inside it is seen; otherwise (a symbol
/// without a size) only NOPs and refused instructions are skipped. Fails with the reason when
/// no instruction qualifies.
pub fn entry_site(code: &[u8], addr: u64, go: bool, reads: &Reads, whole: bool) -> Result<EntrySite, String> {
    let mut start = addr;
    if go {
        if let Some(branch) = go_stack_check_branch(code, addr) {
            let at = (branch.ip() - addr) as usize;
            let handling = probe_handling(&code[at..]);
            if handling.is_emulated() {
                return Ok(EntrySite { addr: branch.ip(), handling, stack_check: true, moved: Moved::NONE });
            }
            start = branch.next_ip();
        }
    }
    let targets = branch_targets(code, addr);
    let from = (start - addr) as usize;
    let window: Vec<Instruction> = decode(&code[from..], start).take(ENTRY_LOOKAHEAD + 1).collect();
    let handling_of = |i: &Instruction| probe_handling(&code[(i.ip() - addr) as usize..]);
    let first =
        window.first().filter(|i| i.mnemonic() != Mnemonic::INVALID).ok_or("its first instruction does not decode")?;
    let first_handling = handling_of(first);
    let mut values = Holders::new(&reads.movable);
    // The first instruction the kernel does not refuse, in case none is emulated.
    let mut fallback = None;
    for (n, i) in window.iter().enumerate() {
        if n > 0 {
            let skipped = &window[n - 1];
            // A refused instruction is skipped whenever that is equivalent (the only other
            // choice is to refuse the function); a probe-able one only where it cannot fault.
            let refused = matches!(handling_of(skipped), Handling::Refused(_));
            let may_skip = refused || is_no_op(skipped) || (whole && (!go || cannot_fault(skipped)));
            if !may_skip
                || targets.contains(&i.ip())
                || !changes_nothing_read(skipped, go, reads)
                || !values.follow(skipped)
            {
                break;
            }
        }
        if i.mnemonic() == Mnemonic::INVALID {
            break;
        }
        let site = |handling| EntrySite { addr: i.ip(), handling, stack_check: false, moved: values.moved() };
        match handling_of(i) {
            Handling::Emulated => return Ok(site(Handling::Emulated)),
            Handling::Refused(_) => {}
            handling => {
                fallback.get_or_insert(site(handling));
            }
        }
    }
    match (fallback, first_handling) {
        (Some(site), _) => Ok(site),
        (None, Handling::Refused(what)) => Err(format!(
            "its first instruction is {what}, which the kernel refuses to probe, and no later \
             instruction is equivalent"
        )),
        (None, handling) => Ok(EntrySite { addr: first.ip(), handling, stack_check: false, moved: Moved::NONE }),
    }
}

/// Where the measured value's registers are, instruction after instruction: each starts in
/// its own register, a full 64-bit `mov` to another readable register adds a holder, and any
/// other write to a register removes it as a holder.
struct Holders {
    /// (the register at the start, the registers holding its value now)
    values: Vec<(Register, Vec<Register>)>,
}

impl Holders {
    fn new(registers: &[Register]) -> Holders {
        Holders { values: registers.iter().map(|&r| (r.full_register(), vec![r.full_register()])).collect() }
    }

    /// Updates the holders past `i`; false if a value is in no readable register any more.
    fn follow(&mut self, i: &Instruction) -> bool {
        let copy = (i.mnemonic() == Mnemonic::Mov
            && i.op_count() == 2
            && i.op0_kind() == OpKind::Register
            && i.op1_kind() == OpKind::Register
            && i.op0_register().is_gpr64()
            && i.op1_register().is_gpr64())
        .then(|| (i.op0_register(), i.op1_register()));
        let mut factory = InstructionInfoFactory::new();
        let written: Vec<Register> = factory
            .info(i)
            .used_registers()
            .iter()
            .filter(|r| writes(r.access()))
            .map(|r| r.register().full_register())
            .collect();
        for (_, holders) in &mut self.values {
            let copied = copy.is_some_and(|(_, from)| holders.contains(&from));
            holders.retain(|h| !written.contains(h));
            if let (true, Some((to, _))) = (copied, copy) {
                if READABLE.contains(&to) {
                    holders.push(to);
                }
            }
        }
        self.values.iter().all(|(_, holders)| !holders.is_empty())
    }

    /// The values not in their own register any more, and where each is.
    fn moved(&self) -> Moved {
        let mut moved = Moved::NONE;
        let elsewhere = self.values.iter().filter(|(r, holders)| !holders.contains(r));
        for (slot, (r, holders)) in moved.0.iter_mut().zip(elsewhere) {
            *slot = Some((*r, holders[0]));
        }
        moved
    }
}

/// `ENDBR64` and NOPs: they change no register, flag or memory.
fn is_no_op(i: &Instruction) -> bool {
    matches!(i.mnemonic(), Mnemonic::Endbr64 | Mnemonic::Nop)
}

/// Whether an instruction skipped over leaves the entry probe's inputs as they were: no
/// control flow, no write to SP (unless `reads.sp_unused`), R14 (Go's g) or a register in
/// `reads.registers`, and no write to memory when `reads.memory`. (The measured value's own
/// registers are followed by `Holders`.)
fn changes_nothing_read(i: &Instruction, go: bool, reads: &Reads) -> bool {
    if i.mnemonic() == Mnemonic::INVALID || i.flow_control() != FlowControl::Next {
        return false;
    }
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(i);
    let clobbers = info.used_registers().iter().any(|r| {
        let full = r.register().full_register();
        writes(r.access())
            && ((full == Register::RSP && (!reads.sp_unused || reads.memory))
                || (go && full == Register::R14)
                || reads.registers.iter().any(|k| k.full_register() == full))
    });
    let memory_written = reads.memory && info.used_memory().iter().any(|m| writes(m.access()));
    !clobbers && !memory_written
}

fn writes(access: OpAccess) -> bool {
    !matches!(access, OpAccess::Read | OpAccess::CondRead | OpAccess::NoMemAccess | OpAccess::None)
}

/// Whether an instruction cannot fault: memory touched only at a fixed address (a global,
/// RIP-relative; FS/GS thread-local data) or through SP, never through a pointer that may be
/// nil, and no division. In Go a fault is a panic the program may recover from: a call that
/// faults before an entry probe placed after it would be counted nowhere (on it, it counts, as
/// `abandoned` in latency). Elsewhere a fault ends the program (SIGSEGV, SIGFPE), so
/// instructions that may fault are skipped there too.
fn cannot_fault(i: &Instruction) -> bool {
    if matches!(i.mnemonic(), Mnemonic::Div | Mnemonic::Idiv) {
        return false;
    }
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(i);
    info.used_memory().iter().filter(|m| m.access() != OpAccess::NoMemAccess).all(|m| {
        // iced resolves RIP-relative operands to their address: no base, no index.
        matches!(m.base(), Register::RSP | Register::None) && m.index() == Register::None
    })
}

/// Addresses inside the function that a jump in it can land on: an entry site there would
/// fire again without a new call.
fn branch_targets(code: &[u8], addr: u64) -> HashSet<u64> {
    let end = addr + code.len() as u64;
    decode(code, addr)
        .filter(|i| matches!(i.flow_control(), FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch))
        .map(|i| i.near_branch_target())
        .filter(|t| (addr..end).contains(t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::GO_PROLOGUE;

    fn keeping(r: Register) -> Reads {
        Reads { registers: vec![r], ..Reads::default() }
    }

    fn at(addr: u64, handling: Handling, stack_check: bool) -> EntrySite {
        EntrySite { addr, handling, stack_check, moved: Moved::NONE }
    }

    #[test]
    fn go_entry_after_a_stack_check_the_kernel_would_refuse_to_emulate() {
        // The same prologue with a 66-prefixed JBE, which the kernel refuses: the body's first
        // instruction (after the check) instead, as a probe at the first byte would fire again
        // each time the stack grows (morestack jumps back to the function start).
        let mut code = GO_PROLOGUE.to_vec();
        code.insert(4, 0x66);
        let site = entry_site(&code, 0x1000, true, &Reads::default(), true).unwrap();
        assert_eq!(site, at(0x1007, Handling::Emulated, false));
    }

    #[test]
    fn nosplit_entry_is_start() {
        let code = [0x48, 0x8b, 0x44, 0x24, 0x08, 0xc3]; // mov rax,[rsp+8]; ret
        let site = entry_site(&code, 0x2000, true, &Reads::default(), true).unwrap();
        assert_eq!(site, at(0x2000, Handling::SingleStepped, false));
    }

    #[test]
    fn go_entry_is_the_emulated_stack_check_branch() {
        let site = entry_site(GO_PROLOGUE, 0x1000, true, &Reads::default(), true).unwrap();
        assert_eq!(site, at(0x1004, Handling::Emulated, true));
    }

    #[test]
    fn endbr64_then_push_probes_the_push() {
        let code = [0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3];
        let site = entry_site(&code, 0x3000, false, &Reads::default(), true).unwrap();
        assert_eq!(site, at(0x3004, Handling::Emulated, false));
        // endbr64 then mov: nothing cheaper follows, so the first instruction, as before.
        let code = [0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x89, 0xf8, 0xc3];
        assert_eq!(entry_site(&code, 0x3000, false, &Reads::default(), true).unwrap().addr, 0x3000);
    }

    #[test]
    fn a_refused_atomic_start_moves_to_the_next_instruction_unless_it_matters() {
        // lock addq $1, 0x10(%rip); mov %rdi,%rax; ret
        let code = [0xf0, 0x48, 0x83, 0x05, 0x10, 0, 0, 0, 0x01, 0x48, 0x89, 0xf8, 0xc3];
        let site = entry_site(&code, 0x4000, false, &keeping(Register::RDI), true).unwrap();
        assert_eq!(site, at(0x4009, Handling::SingleStepped, false));
        // lock xadd %rdi, (%rsi) writes RDI: not equivalent for an argdist on RDI.
        let code = [0xf0, 0x48, 0x0f, 0xc1, 0x3e, 0x48, 0x89, 0xf8, 0xc3];
        assert!(entry_site(&code, 0x4000, false, &keeping(Register::RDI), true).is_err());
        assert_eq!(entry_site(&code, 0x4000, false, &Reads::default(), true).unwrap().addr, 0x4005);
        // The next instruction is a loop head: a probe there would fire per iteration.
        let code = [0xf0, 0x48, 0x83, 0x05, 0x10, 0, 0, 0, 0x01, 0x48, 0xff, 0xcf, 0x75, 0xfb, 0xc3];
        assert!(entry_site(&code, 0x4000, false, &Reads::default(), true).is_err());
    }

    const LATENCY: Reads = Reads { registers: Vec::new(), movable: Vec::new(), memory: false, sp_unused: false };

    fn site(code: &[u8], go: bool, reads: &Reads) -> (u64, Handling) {
        let site = entry_site(code, 0x5000, go, reads, true).unwrap();
        (site.addr - 0x5000, site.handling)
    }

    fn argdist(r: Register) -> Reads {
        Reads { movable: vec![r], sp_unused: true, ..Reads::default() }
    }

    #[test]
    fn a_go_leaf_enters_on_its_first_emulated_instruction() {
        // Go 1.19 leaf: xor %eax,%eax; jmp cond; body: inc; cond: cmp; jl body; ret
        let code = [
            0x31, 0xc0, // xor %eax,%eax
            0xeb, 0x03, // jmp +3
            0x48, 0xff, 0xc0, // inc %rax (loop body)
            0x48, 0x39, 0xd8, // cmp %rbx,%rax
            0x7c, 0xf8, // jl body
            0xc3,
        ];
        assert_eq!(site(&code, true, &LATENCY), (2, Handling::Emulated));
        // argdist on RBX: the xor leaves it; on RAX it does not, so the first instruction.
        assert_eq!(site(&code, true, &argdist(Register::RBX)), (2, Handling::Emulated));
        assert_eq!(site(&code, true, &argdist(Register::RAX)), (0, Handling::SingleStepped));
        // A filter's argument must keep its own register.
        assert_eq!(site(&code, true, &keeping(Register::RAX)), (0, Handling::SingleStepped));
    }

    #[test]
    fn an_argument_copied_before_it_is_overwritten_is_read_from_the_copy() {
        // Go 1.19's Leaf01us: mov %rax,%rcx; or $1,%rax; xor %edx,%edx; jmp cond
        let code = [0x48, 0x89, 0xc1, 0x48, 0x83, 0xc8, 0x01, 0x31, 0xd2, 0xeb, 0x00, 0xc3];
        let found = entry_site(&code, 0x6000, true, &argdist(Register::RAX), true).unwrap();
        assert_eq!((found.addr, found.handling), (0x6009, Handling::Emulated));
        assert_eq!(found.moved, Moved([Some((Register::RAX, Register::RCX)), None]));
        // A 32-bit copy (mov %eax,%ecx) is no copy of a 64-bit value; nor is a copy to R12,
        // which the programs cannot read.
        let code = [0x89, 0xc1, 0x48, 0x83, 0xc8, 0x01, 0xeb, 0x00, 0xc3];
        assert_eq!(site(&code, true, &argdist(Register::RAX)), (0, Handling::SingleStepped));
        let code = [0x49, 0x89, 0xc4, 0x48, 0x83, 0xc8, 0x01, 0xeb, 0x00, 0xc3];
        assert_eq!(site(&code, true, &argdist(Register::RAX)), (0, Handling::SingleStepped));
        // Unmoved, nothing to say.
        assert_eq!(entry_site(&code, 0x6000, true, &argdist(Register::RBX), true).unwrap().moved, Moved::NONE);
    }

    #[test]
    fn redis_zmalloc_enters_on_its_push() {
        // movabs $0x7ffffffffffffffe,%rax; push %rbp; mov %rdi,%rbp; ...
        let code = [0x48, 0xb8, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x55, 0x48, 0x89, 0xfd, 0x5d, 0xc3];
        assert_eq!(site(&code, false, &LATENCY), (10, Handling::Emulated));
        assert_eq!(site(&code, false, &argdist(Register::RDI)), (10, Handling::Emulated));
        assert_eq!(site(&code, false, &argdist(Register::RAX)), (0, Handling::SingleStepped));
    }

    #[test]
    fn sp_is_kept_where_anything_depends_on_it() {
        // sub $8,%rsp; call f; add $8,%rsp; ret
        let code = [0x48, 0x83, 0xec, 0x08, 0xe8, 0, 0, 0, 0, 0x48, 0x83, 0xc4, 0x08, 0xc3];
        assert_eq!(site(&code, false, &LATENCY), (0, Handling::SingleStepped));
        assert_eq!(site(&code, false, &argdist(Register::RDI)), (4, Handling::Emulated));
        // A stack argument or the return address is read through SP: it must stay.
        let memory = Reads { memory: true, ..argdist(Register::RDI) };
        assert_eq!(site(&code, false, &memory), (0, Handling::SingleStepped));
    }

    #[test]
    fn go_keeps_g_and_every_call_that_may_panic_before_the_site() {
        // mov (%rax),%rcx; jmp elsewhere: a nil receiver panics on the load, which Go can
        // recover from: that call must still meet the entry probe. C would die there.
        let code = [0x48, 0x8b, 0x08, 0xe9, 0, 0, 0, 0];
        assert_eq!(site(&code, true, &LATENCY), (0, Handling::SingleStepped));
        assert_eq!(site(&code, false, &LATENCY), (3, Handling::Emulated));
        // mov %fs:-8,%r14; push %rbp: R14 is Go's g, not C's.
        let code = [0x64, 0x4c, 0x8b, 0x34, 0x25, 0xf8, 0xff, 0xff, 0xff, 0x55, 0x5d, 0xc3];
        assert_eq!(site(&code, true, &LATENCY), (0, Handling::SingleStepped));
        assert_eq!(site(&code, false, &LATENCY), (9, Handling::Emulated));
        // Loads of globals and the stack cannot fault: skipped in Go too.
        let code = [0x48, 0x8b, 0x05, 0x10, 0, 0, 0, 0x48, 0x8b, 0x4c, 0x24, 0x08, 0xeb, 0x00, 0xc3];
        assert_eq!(site(&code, true, &LATENCY), (12, Handling::Emulated));
    }

    #[test]
    fn no_site_past_a_jump_target_or_a_size_less_symbol() {
        // xor %eax,%eax; L: inc %rax; cmp %rbx,%rax; jne L; ret: the jne fires per iteration.
        let code = [0x31, 0xc0, 0x48, 0xff, 0xc0, 0x48, 0x39, 0xd8, 0x75, 0xf8, 0xc3];
        assert_eq!(site(&code, false, &LATENCY), (0, Handling::SingleStepped));
        // movabs; push, but the symbol has no size: jumps into the rest are unknown.
        let code = [0x48, 0xb8, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x55, 0x5d, 0xc3];
        assert_eq!(entry_site(&code, 0x5000, false, &LATENCY, false).unwrap().addr, 0x5000);
    }
}
