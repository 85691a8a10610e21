//! `--cgroup` and `--container`: only the processes of one cgroup v2 (and of the cgroups below
//! it) are measured. Decided per hit from the current task's cgroup, so processes that start
//! in the cgroup after probe attached are measured too.
use aya_ebpf::helpers::bpf_get_current_ancestor_cgroup_id;
use probe_ebpf::MAX_CGROUP_LEVELS;

/// The selected cgroup's v2 id (the inode number of its directory), set by the loader; 0 means
/// every process. A read-only global: without a selection the verifier sees 0 and removes the
/// check below, helper call included.
#[no_mangle]
static CGROUP: u64 = 0;

/// Whether the current task is in the selected cgroup or below it: that cgroup is then one of
/// the task's ancestors (its own cgroup counts as one). Levels are counted from the root of the
/// hierarchy, so nothing depends on the cgroup namespace probe runs in.
#[inline(always)]
pub(crate) fn in_selected_cgroup() -> bool {
    // Volatile, so the loader's value is read rather than the default.
    let wanted = unsafe { core::ptr::read_volatile(&CGROUP) };
    if wanted == 0 {
        return true;
    }
    for level in 0..MAX_CGROUP_LEVELS {
        // 0 once `level` is deeper than the task's own cgroup: no ancestor matched.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == wanted {
            return true;
        }
        if id == 0 {
            return false;
        }
    }
    false
}
