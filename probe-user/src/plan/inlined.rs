//! The probes that count the calls of a traced function's inlined copies: one per copy, at an
//! instruction of its caller that runs exactly once per call (`once_per_call`). A copy has no
//! entry, return or arguments of its own in the machine code, so these probes only count;
//! copies without such an instruction are reported, not probed.
use super::InlinedSites;
use super::{Site, SiteKind};
use crate::once_per_call::{counting_site, Copy, CountingSite};
use crate::resolve::elf::{Binary, Function, Runtime};
use crate::resolve::inlined::{self, InlinedCopy};
use anyhow::Result;
use std::borrow::Cow;
use std::ops::Range;

/// A function's inlined copies: the sites counting their calls, and those that cannot be.
#[derive(Debug, Default)]
pub struct InlinedPlan {
    pub sites: Vec<Site>,
    /// Copies whose calls cannot be counted ...
    pub uncounted: usize,
    /// ... and why (the first reason met).
    pub why: Option<&'static str>,
}

/// Plans the counting of the inlined copies of each of `functions` (with its slot, the sites'
/// cookie): one plan per function, in order. An error: the file's tables that say where the
/// copies are are damaged.
pub fn inlined_plans(binary: &Binary, functions: &[(&Function, u32)]) -> Result<Vec<InlinedPlan>> {
    let chosen: Vec<&Function> = functions.iter().map(|(f, _)| *f).collect();
    let copies = inlined::copies(binary, &chosen)?;
    Ok(copies.into_iter().zip(functions).map(|(copies, &(_, slot))| plan_copies(binary, copies, slot)).collect())
}

fn plan_copies(binary: &Binary, copies: Vec<InlinedCopy>, slot: u32) -> InlinedPlan {
    let go = matches!(binary.runtime, Runtime::Go(_));
    let mut plan = InlinedPlan::default();
    for copy in copies {
        let site = counting_site_of(binary, &copy, go).and_then(|s| {
            let file_offset =
                binary.code_offset(s.addr).map_err(|_| "its counting instruction is not in loaded code")?;
            Ok(Site {
                path: binary.path.clone(),
                kind: SiteKind::InlinedCall,
                file_offset,
                cookie: u64::from(slot),
                handling: s.handling,
                exit: false,
            })
        });
        match site {
            Ok(site) => plan.sites.push(site),
            Err(why) => {
                plan.uncounted += 1;
                plan.why.get_or_insert(why);
            }
        }
    }
    plan
}

/// Where `copy`'s calls can be counted, from the code of the functions holding it: its caller,
/// and any other function one of its ranges is in (C's `.cold` parts).
fn counting_site_of(binary: &Binary, copy: &InlinedCopy, go: bool) -> Result<CountingSite, &'static str> {
    if copy.caller.is_empty() {
        return Err("no function symbol holds it");
    }
    let mut holders: Vec<Range<u64>> = vec![copy.caller.clone()];
    for r in &copy.body {
        if holders.iter().any(|h| h.start <= r.start && r.end <= h.end) {
            continue;
        }
        let holder = binary
            .functions()
            .iter()
            .find(|f| f.size > 0 && f.addr <= r.start && r.end <= f.addr + f.size)
            .ok_or("part of its code is in no function symbol")?;
        holders.push(holder.addr..holder.addr + holder.size);
    }
    let code: Vec<(u64, Cow<'_, [u8]>)> = holders
        .iter()
        .map(|h| binary.read_vaddr(h.start, h.end - h.start).map(|bytes| (h.start, bytes)))
        .collect::<Option<_>>()
        .ok_or("its caller's code is not in the file")?;
    let functions: Vec<(u64, &[u8])> = code.iter().map(|(addr, bytes)| (*addr, &bytes[..])).collect();
    counting_site(&Copy { functions: &functions, body: &copy.body, mark: copy.mark, go })
}

/// Counting sites of more inlined copies than this in one run are not attached: each is a probe
/// in the traced program's hot paths (`--func 'runtime.*'` would find tens of thousands).
pub const MAX_INLINED_SITES: usize = 1000;

/// The sites counting the inlined copies of each of `functions` (with its slot) in `binary`,
/// and what its tables say of them (`lacking`: what their calls lack for this measurement);
/// within `budget` sites, which it draws down. Copies that cannot be found are one warning on
/// stderr, and count nothing.
pub fn for_functions(
    binary: &Binary,
    functions: &[(&Function, u32)],
    lacking: &str,
    budget: &mut usize,
) -> Vec<(Vec<Site>, Option<InlinedSites>)> {
    let plans = match inlined_plans(binary, functions) {
        Ok(plans) => plans,
        Err(e) => {
            eprintln!(
                "probe: warning: cannot read where {} inlined its functions ({e:#}); calls of inlined copies are \
                 not counted",
                binary.path.display()
            );
            return functions.iter().map(|_| (Vec::new(), None)).collect();
        }
    };
    plans.into_iter().map(|plan| within_budget(plan, lacking, budget)).collect()
}

/// The plan's sites, unless more than `budget` remain, and what the tables say.
fn within_budget(plan: InlinedPlan, lacking: &str, budget: &mut usize) -> (Vec<Site>, Option<InlinedSites>) {
    if plan.sites.is_empty() && plan.uncounted == 0 {
        return (Vec::new(), None);
    }
    let mut sites = InlinedSites {
        counted: plan.sites.len(),
        uncounted: plan.uncounted,
        why: plan.why.map(str::to_string),
        lacking: lacking.to_string(),
    };
    if plan.sites.len() > *budget {
        sites.uncounted += sites.counted;
        sites.counted = 0;
        sites.why = Some(format!("probe counts at most {MAX_INLINED_SITES} inlined sites in a run"));
        return (Vec::new(), Some(sites));
    }
    *budget -= plan.sites.len();
    (plan.sites, Some(sites))
}
