//! The uprobe_multi link (Linux 6.6+): one `BPF_LINK_CREATE` attaches a program at every
//! offset of one file, each with its cookie, and closing the link removes them all with one
//! RCU grace period, where perf-event uprobes wait for one each (~0.1 s per probe). aya 0.14
//! cannot create this link, so it is done here with the raw syscall; the program must have
//! been loaded with `UProbe::load_for_uprobe_multi` (vendor/aya/PATCHED.md).
use std::ffi::CString;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_LINK_CREATE: libc::c_long = 28;
pub const BPF_TRACE_UPROBE_MULTI: u32 = 48;
/// `uprobe_multi.flags`: fire on return (a uretprobe at each offset, i.e. function entries).
const BPF_F_UPROBE_MULTI_RETURN: u32 = 1;

/// `union bpf_attr`'s `link_create` with its `uprobe_multi` member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct LinkCreateUprobeMulti {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    path: u64,
    offsets: u64,
    ref_ctr_offsets: u64,
    cookies: u64,
    cnt: u32,
    multi_flags: u32,
    pid: u32,
    _pad: u32,
}

/// Where and how one link attaches: every (file offset, cookie) in `points`, in that order.
pub struct MultiPoints<'a> {
    pub path: &'a Path,
    pub points: &'a [(u64, u64)],
    /// Uretprobes (fire when the function at each offset returns) instead of uprobes.
    pub on_return: bool,
    /// Only this process (all its threads); `None`: every process running the file.
    pub pid: Option<u32>,
}

/// Attaches `program` at every point with one link; dropping the returned fd detaches them all.
/// The kernel registers the offsets in array order, so earlier points go live first.
pub fn attach(program: BorrowedFd<'_>, target: &MultiPoints<'_>) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let path = CString::new(target.path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let offsets: Vec<u64> = target.points.iter().map(|p| p.0).collect();
    let cookies: Vec<u64> = target.points.iter().map(|p| p.1).collect();
    let attr = LinkCreateUprobeMulti {
        prog_fd: program.as_raw_fd() as u32,
        attach_type: BPF_TRACE_UPROBE_MULTI,
        path: path.as_ptr() as u64,
        offsets: offsets.as_ptr() as u64,
        cookies: cookies.as_ptr() as u64,
        cnt: offsets.len() as u32,
        multi_flags: if target.on_return { BPF_F_UPROBE_MULTI_RETURN } else { 0 },
        pid: target.pid.unwrap_or(0),
        ..Default::default()
    };
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            &attr as *const LinkCreateUprobeMulti,
            std::mem::size_of::<LinkCreateUprobeMulti>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::LinkCreateUprobeMulti;

    #[test]
    fn layout_matches_the_kernel_uapi() {
        // link_create.uprobe_multi: path at 16, offsets 24, ref_ctr_offsets 32, cookies 40,
        // cnt 48, flags 52, pid 56.
        assert_eq!(std::mem::offset_of!(LinkCreateUprobeMulti, path), 16);
        assert_eq!(std::mem::offset_of!(LinkCreateUprobeMulti, cookies), 40);
        assert_eq!(std::mem::offset_of!(LinkCreateUprobeMulti, cnt), 48);
        assert_eq!(std::mem::offset_of!(LinkCreateUprobeMulti, multi_flags), 52);
        assert_eq!(std::mem::offset_of!(LinkCreateUprobeMulti, pid), 56);
    }
}
