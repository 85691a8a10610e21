//! Whether this process may load BPF programs and attach uprobes, checked before anything else.
use crate::error::user;
use anyhow::Result;

/// Fails with a clear message unless we may load BPF programs and attach uprobes.
pub fn ensure_privileges() -> Result<()> {
    if privileged() {
        Ok(())
    } else {
        Err(user("needs root, or CAP_BPF and CAP_PERFMON, to load eBPF programs; run it with sudo"))
    }
}

/// Whether this process may load BPF programs and attach uprobes: CAP_SYS_ADMIN, or CAP_BPF
/// with CAP_PERFMON, in its effective set.
pub fn privileged() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}
