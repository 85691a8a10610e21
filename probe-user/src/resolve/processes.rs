//! `-p NAME`: the one running process of that name, found as `pidof` finds it (its thread
//! name, or the file name of its argv[0] or of its executable), so `-p redis-server` works.
use crate::error::user;
use anyhow::Result;
use std::path::Path;

/// The pid of the only process named `name` (probe itself left out); bad input when there is
/// none or several.
pub fn named(name: &str) -> Result<i32> {
    let pids = pids_named(name);
    match pids.as_slice() {
        [pid] => Ok(*pid),
        [] => Err(user(format!(
            "-p {name}: no running process is named {name}; give its PID (`pgrep -a {}` lists candidates)",
            shell_word(name)
        ))),
        many => {
            let shown: Vec<String> = many.iter().take(10).map(i32::to_string).collect();
            let more = if many.len() > 10 { format!(" and {} more", many.len() - 10) } else { String::new() };
            Err(user(format!(
                "-p {name}: {} processes are named {name} (pids {}{more}); give one PID, or BINARY to trace \
                 every process running the file",
                many.len(),
                shown.join(", ")
            )))
        }
    }
}

/// Every process named `name`, in pid order.
fn pids_named(name: &str) -> Vec<i32> {
    let own = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != own && is_named(pid, name))
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether process `pid` is called `name`: its thread name (15 bytes at most, as the kernel
/// keeps it), or the last path element of its argv[0] or of its executable. Kernel threads
/// (no command line and no executable) never match. A process in the middle of its exec has
/// its new name and executable before its command line (empty until the new program's stack is
/// set up): it matches by those.
fn is_named(pid: i32, name: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    if cmdline.is_empty() && exe.is_none() {
        return false;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let comm_matches = comm.trim_end_matches('\n') == truncated(name, 15);
    let argv0 = String::from_utf8_lossy(cmdline.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
    let argv0_matches = last_element(&argv0) == Some(name);
    let exe_name = exe.as_deref().and_then(Path::file_name).and_then(|n| n.to_str());
    let exe_matches = exe_name.map(|n| n.strip_suffix(" (deleted)").unwrap_or(n)) == Some(name);
    comm_matches || argv0_matches || exe_matches
}

/// The first `bytes` bytes of `name` (whole characters).
fn truncated(name: &str, bytes: usize) -> &str {
    let mut end = name.len().min(bytes);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// `/usr/bin/redis-server *:6379` (a command line a program rewrote) -> `redis-server`.
fn last_element(argv0: &str) -> Option<&str> {
    let first_word = argv0.split(' ').next()?;
    first_word.rsplit('/').next().filter(|n| !n.is_empty())
}

/// `name` quoted for a shell when it needs it.
fn shell_word(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:+".contains(c)) {
        name.to_string()
    } else {
        format!("'{}'", name.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_as_pidof_does() {
        assert_eq!(last_element("/usr/bin/redis-server *:6379"), Some("redis-server"));
        assert_eq!(last_element("redis-server"), Some("redis-server"));
        assert_eq!(truncated("a-very-long-program-name", 15), "a-very-long-pro");
        assert_eq!(shell_word("redis-server"), "redis-server");
        assert_eq!(shell_word("my app"), "'my app'");
    }

    #[test]
    fn a_child_is_found_by_its_name() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        // The exec may not have happened yet: wait for the name.
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim() != "sleep" {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(is_named(pid, "sleep") && !is_named(pid, "slee"));
        assert!(pids_named("sleep").contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
