//! Where the calls of an inlined copy can be counted: an instruction that runs exactly once per
//! call. A copy has no entry of its own, so probe counts its calls only where the machine code
//! shows such an instruction, and otherwise says they could not be counted:
//! - Go's inline mark, when the compiler emitted it as a NOP of its own: it sits where the call
//!   begins, in the caller's flow, once per call;
//! - otherwise, the instruction of the copy that runs before all its others on every path (it
//!   dominates them in the caller's flow graph), when nothing inside the copy leads back to it
//!   (no loop of the inlined function starts there) and no jump lands where it is not known (a
//!   jump through a table). Every instruction of its basic block then runs once per call that
//!   runs any of the copy's code. For Go, that block must not be the function's first, which
//!   runs again when the stack grows.
//!
//! Of the equivalent instructions, the cheapest to probe is chosen (one the kernel emulates).
#[cfg(target_arch = "x86_64")]
use crate::arch::x86_64::probe_handling;
use crate::arch::Handling;
use std::ops::Range;

/// The instruction to count an inlined copy's calls at, and how the kernel handles a probe
/// there; or why there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountingSite {
    pub addr: u64,
    pub handling: Handling,
}

/// What is known of one copy: the code of the functions holding it (address, bytes), its
/// instructions, and Go's inline mark.
pub struct Copy<'a> {
    pub functions: &'a [(u64, &'a [u8])],
    pub body: &'a [Range<u64>],
    pub mark: Option<u64>,
    /// Go: the function holding it re-runs its first block when its stack grows.
    pub go: bool,
}

#[cfg(target_arch = "aarch64")]
pub fn counting_site(_copy: &Copy<'_>) -> Result<CountingSite, &'static str> {
    Err("probe finds the instruction that counts an inlined copy's calls on x86-64 only")
}

#[cfg(target_arch = "x86_64")]
pub fn counting_site(copy: &Copy<'_>) -> Result<CountingSite, &'static str> {
    let code = Flow::decode(copy.functions)?;
    if let Some(mark) = copy.mark.filter(|&m| code.is_dedicated_mark(m, copy.body)) {
        return code.site_at(mark);
    }
    if copy.body.is_empty() {
        return Err("the compiler merged its instructions into its caller's");
    }
    let entry = code.entry(copy.body)?;
    let block = code.blocks[code.block[entry]].clone();
    if copy.go && code.block[entry] == code.root {
        return Err("its code is in its caller's first block, which runs again when the stack grows");
    }
    block
        .map(|i| code.site_at(code.insns[i].ip()))
        .filter_map(Result::ok)
        .min_by_key(|s| !s.handling.is_emulated())
        .ok_or("the kernel refuses a probe on every instruction that runs once per call")
}

#[cfg(target_arch = "x86_64")]
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};

/// The decoded functions: their instructions in address order, the basic blocks, and which
/// block dominates which (from the first function's entry).
#[cfg(target_arch = "x86_64")]
struct Flow<'a> {
    functions: &'a [(u64, &'a [u8])],
    insns: Vec<Instruction>,
    /// Per instruction, the instructions control can come from.
    preds: Vec<Vec<usize>>,
    /// Basic blocks as ranges of instruction indexes, and each instruction's block.
    blocks: Vec<Range<usize>>,
    block: Vec<usize>,
    /// The block of the first function's entry, and each block's immediate dominator (`None`:
    /// not reachable from there).
    root: usize,
    idom: Vec<Option<usize>>,
}

#[cfg(target_arch = "x86_64")]
impl<'a> Flow<'a> {
    fn decode(functions: &'a [(u64, &'a [u8])]) -> Result<Flow<'a>, &'static str> {
        let mut insns = Vec::new();
        for &(addr, bytes) in functions {
            let mut decoder = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
            while decoder.can_decode() {
                let i = decoder.decode();
                if i.mnemonic() == Mnemonic::INVALID {
                    return Err("its caller's code does not decode");
                }
                if i.flow_control() == FlowControl::IndirectBranch {
                    return Err("its caller jumps through a table, so where its jumps land is not known");
                }
                insns.push(i);
            }
        }
        insns.sort_by_key(|i| i.ip());
        let n = insns.len();
        let index_of = |ip: u64| insns.binary_search_by_key(&ip, |i| i.ip()).ok();
        let (mut preds, mut leaders) = (vec![Vec::new(); n], vec![false; n]);
        for &(addr, _) in functions {
            if let Some(i) = index_of(addr) {
                leaders[i] = true; // entered by its callers
            }
        }
        for (i, insn) in insns.iter().enumerate() {
            let contiguous = insns.get(i + 1).is_some_and(|next| next.ip() == insn.next_ip());
            let falls_through = !matches!(
                insn.flow_control(),
                FlowControl::UnconditionalBranch
                    | FlowControl::Return
                    | FlowControl::Interrupt
                    | FlowControl::Exception
            );
            if falls_through && contiguous {
                preds[i + 1].push(i);
            }
            if insn.flow_control() != FlowControl::Next && i + 1 < n {
                leaders[i + 1] = true; // after a branch, call or return
            }
            if matches!(insn.flow_control(), FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch) {
                if let Some(t) = index_of(insn.near_branch_target()) {
                    preds[t].push(i);
                    leaders[t] = true;
                }
            }
        }
        for i in 1..n {
            leaders[i] |= insns[i - 1].next_ip() != insns[i].ip(); // a gap (another function)
        }
        let mut blocks: Vec<Range<usize>> = Vec::new();
        let mut block = vec![0; n];
        for i in 0..n {
            if leaders[i] || i == 0 {
                blocks.push(i..i + 1);
            } else if let Some(last) = blocks.last_mut() {
                last.end = i + 1;
            }
            block[i] = blocks.len() - 1;
        }
        let root = functions.first().and_then(|&(addr, _)| index_of(addr)).map_or(0, |i| block[i]);
        let mut flow = Flow { functions, insns, preds, blocks, block, root, idom: Vec::new() };
        flow.idom = flow.dominators();
        Ok(flow)
    }

    /// Immediate dominators of the blocks (Cooper, Harvey and Kennedy's iteration over the
    /// blocks in reverse postorder).
    fn dominators(&self) -> Vec<Option<usize>> {
        let count = self.blocks.len();
        let block_preds: Vec<Vec<usize>> =
            self.blocks.iter().map(|b| self.preds[b.start].iter().map(|&p| self.block[p]).collect()).collect();
        let mut succs = vec![Vec::new(); count];
        for (b, ps) in block_preds.iter().enumerate() {
            for &p in ps {
                succs[p].push(b);
            }
        }
        // Reverse postorder from the root, iteratively.
        let (mut order, mut seen, mut stack) = (Vec::new(), vec![false; count], vec![(self.root, 0)]);
        seen[self.root] = true;
        while let Some((b, next)) = stack.pop() {
            if let Some(&s) = succs[b].get(next) {
                stack.push((b, next + 1));
                if !seen[s] {
                    seen[s] = true;
                    stack.push((s, 0));
                }
            } else {
                order.push(b);
            }
        }
        order.reverse();
        let mut rank = vec![usize::MAX; count];
        for (r, &b) in order.iter().enumerate() {
            rank[b] = r;
        }
        let mut idom: Vec<Option<usize>> = vec![None; count];
        idom[self.root] = Some(self.root);
        let intersect = |idom: &[Option<usize>], mut a: usize, mut b: usize| {
            while a != b {
                while rank[a] > rank[b] {
                    a = idom[a].expect("processed");
                }
                while rank[b] > rank[a] {
                    b = idom[b].expect("processed");
                }
            }
            a
        };
        let mut changed = true;
        while changed {
            changed = false;
            for &b in order.iter().skip(1) {
                let mut new = None;
                for &p in &block_preds[b] {
                    if idom[p].is_some() {
                        new = Some(new.map_or(p, |n| intersect(&idom, p, n)));
                    }
                }
                if new.is_some() && idom[b] != new {
                    idom[b] = new;
                    changed = true;
                }
            }
        }
        idom
    }

    /// Whether instruction `a` runs before `b` on every path from the root to `b`.
    fn dominates(&self, a: usize, b: usize) -> bool {
        let (block_a, mut block_b) = (self.block[a], self.block[b]);
        if block_a == block_b {
            return a <= b;
        }
        while let Some(up) = self.idom[block_b] {
            if up == block_a {
                return true;
            }
            if up == block_b {
                return false; // the root
            }
            block_b = up;
        }
        false
    }

    fn index(&self, ip: u64) -> Option<usize> {
        self.insns.binary_search_by_key(&ip, |i| i.ip()).ok()
    }

    fn bytes_at(&self, ip: u64) -> &'a [u8] {
        self.functions
            .iter()
            .find(|(addr, bytes)| *addr <= ip && ip < addr + bytes.len() as u64)
            .map_or(&[], |(addr, bytes)| &bytes[(ip - addr) as usize..])
    }

    fn site_at(&self, ip: u64) -> Result<CountingSite, &'static str> {
        match probe_handling(self.bytes_at(ip)) {
            Handling::Refused(_) => Err("the kernel refuses a probe on the instruction that runs once per call"),
            handling => Ok(CountingSite { addr: ip, handling }),
        }
    }

    /// Go's inline mark as the compiler emits it when no other instruction can carry it: a
    /// 1-byte NOP of the caller's own (outside the copy), that is not the never-run NOP after
    /// a final call that does not return.
    fn is_dedicated_mark(&self, mark: u64, body: &[Range<u64>]) -> bool {
        let Some(i) = self.index(mark) else { return false };
        let after = self.insns.get(i + 1).map(Instruction::mnemonic);
        self.bytes_at(mark).first() == Some(&0x90)
            && !body.iter().any(|r| r.contains(&mark))
            && !matches!(after, None | Some(Mnemonic::Int3))
    }

    /// The instruction of `body` every call of the copy enters it at: an instruction control
    /// enters the copy at, that runs before every other instruction of the copy, and that
    /// nothing inside the copy leads back to.
    fn entry(&self, body: &[Range<u64>]) -> Result<usize, &'static str> {
        if body.iter().any(|r| self.index(r.start).is_none()) {
            return Err("its code does not start on an instruction of its caller");
        }
        let inside = |i: usize| body.iter().any(|r| r.contains(&self.insns[i].ip()));
        let members: Vec<usize> = (0..self.insns.len()).filter(|&i| inside(i)).collect();
        let reachable = |i: usize| self.idom[self.block[i]].is_some();
        let entered = |i: usize| self.preds[i].is_empty() || self.preds[i].iter().any(|&p| !inside(p));
        let entry = members
            .iter()
            .copied()
            .filter(|&e| reachable(e) && entered(e))
            .find(|&e| members.iter().all(|&x| !reachable(x) || self.dominates(e, x)))
            .ok_or("no instruction of its code runs before all the others")?;
        if self.preds[entry].iter().any(|&p| inside(p)) {
            return Err("its code loops back to its first instruction");
        }
        Ok(entry)
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    // Go 1.19's main.main of tests/targets/inl, its first loop, `sink += small(i)`: small is
    // inlined as the LEAQ, and the compiler merged its inline mark into the ADDQ.
    const LOOP: &[u8] = &[
        0x31, 0xc9, // 9d: xor ecx,ecx
        0x90, // 9f: nop
        0xeb, 0x18, // a0: jmp ba
        0x48, 0x8d, 0x1c, 0x49, // a2: lea rbx,[rcx+rcx*2]   (small's body)
        0x48, 0x03, 0x1d, 0x33, 0x88, 0x0d, 0x00, // a6: add rbx,[rip+0xd8833]   (its mark)
        0x48, 0xff, 0xc3, // ad: inc rbx
        0x48, 0x89, 0x1d, 0x29, 0x88, 0x0d, 0x00, // b0: mov [rip+0xd8829],rbx
        0x48, 0xff, 0xc1, // b7: inc rcx
        0x48, 0x39, 0xc8, // ba: cmp rax,rcx
        0x7f, 0xe3, // bd: jg a2
        0xc3, // bf: ret
    ];

    fn site(body: &[(u64, u64)], mark: Option<u64>, go: bool) -> Result<CountingSite, &'static str> {
        let functions = [(0x9d, LOOP)];
        let body: Vec<Range<u64>> = body.iter().map(|&(start, end)| start..end).collect();
        counting_site(&Copy { functions: &functions, body: &body, mark, go })
    }

    #[test]
    fn a_copy_in_a_loop_counts_in_its_own_block() {
        // a2..=b7 runs once per iteration, so once per call; none of it is emulated: its
        // first instruction. C, without a mark, the same.
        let at_lea = Ok(CountingSite { addr: 0xa2, handling: Handling::SingleStepped });
        assert_eq!(site(&[(0xa2, 0xa6)], Some(0xa6), true), at_lea);
        assert_eq!(site(&[(0xa2, 0xa6)], None, false), at_lea);
        // Its code split by an instruction of the caller's (the ADDQ..MOVQ): still entered
        // first at the LEAQ, which runs before the rest.
        assert_eq!(site(&[(0xa2, 0xa6), (0xb7, 0xba)], Some(0xa6), true), at_lea);
    }

    #[test]
    fn a_dedicated_nop_mark_counts_there() {
        // The compiler's own NOP for a mark is where the call begins (taken on its word).
        assert_eq!(
            site(&[(0xa2, 0xa6)], Some(0x9f), true),
            Ok(CountingSite { addr: 0x9f, handling: Handling::Emulated })
        );
    }

    #[test]
    fn a_loop_inside_the_copy_or_two_ways_in_count_nothing() {
        // The copy holds the loop's back edge: its entry (the CMP) is reached again from it.
        assert_eq!(site(&[(0xa2, 0xbf)], None, false), Err("its code loops back to its first instruction"));
        // Entered at the LEAQ and at the RET, neither always before the other.
        assert_eq!(
            site(&[(0xa2, 0xa6), (0xbf, 0xc0)], None, false),
            Err("no instruction of its code runs before all the others")
        );
    }

    #[test]
    fn a_go_copy_in_the_first_block_counts_nothing() {
        // A Go function's first block runs again after morestack; C's does not.
        assert!(site(&[(0x9d, 0x9f)], None, true).is_err());
        assert_eq!(site(&[(0x9d, 0x9f)], None, false), Ok(CountingSite { addr: 0x9f, handling: Handling::Emulated }));
    }
}
