//! Processes: starting a command held before exec until probes are attached, and noticing when
//! a traced process exits (pidfd, so it works for children and strangers alike).
use crate::error::user;
use anyhow::{Context, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Where a launched command's stdout goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStdout {
    /// probe's own stdout.
    Inherit,
    /// probe's stderr, so that probe's stdout carries only its JSON.
    ToStderr,
}

/// A forked child blocked before `execvp`, waiting for `release`.
pub struct HeldChild {
    pub pid: i32,
    go: Option<OwnedFd>,
    exec_error: OwnedFd,
    program: String,
}

fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe2");
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl HeldChild {
    /// Forks; the child waits on a pipe, then execs `argv`. Call before starting threads.
    pub fn spawn(program: &std::path::Path, argv: &[String], stdout: ChildStdout) -> Result<HeldChild> {
        // Everything the child needs is allocated before fork: after it only syscalls.
        let path = CString::new(program.as_os_str().as_encoded_bytes()).context("program path")?;
        let args: Vec<CString> =
            argv.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>().context("argument")?;
        let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        arg_ptrs.push(std::ptr::null());
        let drop_to = sudo_user()?;
        let (go_read, go_write) = pipe_cloexec()?;
        let (err_read, err_write) = pipe_cloexec()?;

        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork");
        }
        if pid == 0 {
            unsafe {
                drop(go_write);
                let mut byte = 0u8;
                // EOF without the byte: probe gave up (attach failed); never run untraced.
                if libc::read(go_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) != 1 {
                    libc::_exit(127);
                }
                if let Some((uid, gid)) = drop_to {
                    // Group first: after setuid we may no longer change it.
                    if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                        let errno = *libc::__errno_location();
                        libc::write(err_write.as_raw_fd(), (&errno as *const i32).cast(), 4);
                        libc::_exit(127);
                    }
                }
                if stdout == ChildStdout::ToStderr && libc::dup2(2, 1) < 0 {
                    let errno = *libc::__errno_location();
                    libc::write(err_write.as_raw_fd(), (&errno as *const i32).cast(), 4);
                    libc::_exit(127);
                }
                libc::execv(path.as_ptr(), arg_ptrs.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(err_write.as_raw_fd(), (&errno as *const i32).cast(), 4);
                libc::_exit(127);
            }
        }
        drop(go_read);
        drop(err_write);
        Ok(HeldChild { pid, go: Some(go_write), exec_error: err_read, program: argv[0].clone() })
    }

    /// Lets the child exec. Fails (bad input) if exec failed.
    pub fn release(&mut self) -> Result<()> {
        if let Some(go) = self.go.take() {
            unsafe { libc::write(go.as_raw_fd(), b"g".as_ptr().cast(), 1) };
        }
        let mut errno = 0i32;
        let n = unsafe { libc::read(self.exec_error.as_raw_fd(), (&mut errno as *mut i32).cast(), 4) };
        if n == 4 {
            self.reap();
            return Err(user(format!(
                "-c: cannot start `{}`: {}; check the command",
                self.program,
                std::io::Error::from_raw_os_error(errno)
            )));
        }
        Ok(())
    }

    /// Collects the child's exit status if it has exited; a command still running (the
    /// trace ended by -d or Ctrl-C) is left to run on, untraced.
    pub fn reap_if_exited(&self) {
        let mut status = 0;
        unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
    }

    /// Waits for the child's exit and returns its status (blocking).
    pub fn reap(&self) -> i32 {
        let mut status = 0;
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        status
    }
}

/// Under `sudo`, the user who ran it: `-c` commands run as that user, not as root. A
/// malformed or half-set SUDO_UID/SUDO_GID is refused rather than silently running as root.
fn sudo_user() -> Result<Option<(libc::uid_t, libc::gid_t)>> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let (uid, gid) = (std::env::var_os("SUDO_UID"), std::env::var_os("SUDO_GID"));
    if uid.is_none() && gid.is_none() {
        return Ok(None);
    }
    let uid = sudo_id("SUDO_UID", uid)?;
    let gid = sudo_id("SUDO_GID", gid)?;
    Ok((uid != 0).then_some((uid, gid)))
}

/// One of sudo's id variables as a number (a decimal id below 2^32 - 1, which means "none").
fn sudo_id(name: &str, value: Option<std::ffi::OsString>) -> Result<u32> {
    let Some(value) = value else {
        return Err(user(format!(
            "SUDO_UID and SUDO_GID come together, but {name} is not set, so -c cannot tell whom to \
             run the command as; unset both to run it as root, or set both to numeric ids"
        )));
    };
    let text = value.to_string_lossy();
    match text.parse::<u32>() {
        Ok(id) if id != u32::MAX && text.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err(user(format!(
            "{name}={text:?} is not a user or group id, so -c cannot tell whom to run the command as; \
             unset SUDO_UID and SUDO_GID to run it as root, or set both to numeric ids"
        ))),
    }
}

impl Drop for HeldChild {
    fn drop(&mut self) {
        // Never released: it exits at once without running anything.
        if self.go.take().is_some() {
            self.reap();
        }
    }
}

/// A process handle that becomes readable when the process exits.
pub struct ExitWatch {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

impl ExitWatch {
    /// `Ok(None)` when the process is already gone.
    pub fn new(pid: i32) -> Result<Option<ExitWatch>> {
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            return Ok(None);
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        // SAFETY: we own the pidfd and it stays open as long as the AsyncFd holds it.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }
            .map_err(|e| anyhow::anyhow!("watching pid {pid}: {e}"))?;
        Ok(Some(ExitWatch { fd }))
    }

    pub async fn exited(&self) {
        let _ = self.fd.readable().await;
    }
}
