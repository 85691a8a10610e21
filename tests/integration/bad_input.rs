//! Bad input: one clear line on stderr, exit code 2, no panic, nothing left attached.
use crate::support::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

fn argdist_on(binary: &str, func: &str, arg: &str) -> Run {
    probe(&["argdist", "--func", func, "--arg", arg, binary])
}

#[test]
fn not_root() {
    let target = target("tostring");
    let out = Command::new(probe_bin())
        .args(["argdist", "--func", "ToString", "--arg", "0"])
        .arg(&target)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_rejected(Run::from(out), "needs root, or CAP_BPF and CAP_PERFMON");
}

#[test]
fn missing_file() {
    assert_rejected(argdist_on("/nonexistent/app", "main", "0"), "/nonexistent/app: no such file");
}

#[test]
fn not_an_elf_file() {
    let text = root().join("tests/targets/c/cvalues.c");
    assert_rejected(argdist_on(&text.to_string_lossy(), "work", "0"), "not an ELF file");
}

#[test]
fn not_a_regular_file() {
    // A directory, a device, and a FIFO (which must not make probe wait for a writer).
    let fifo = targets_dir().join(format!("fifo-{}", std::process::id()));
    let path = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let fifo_name = fifo.to_string_lossy();
    for (file, what) in [("/tmp", "a directory"), ("/dev/null", "a character device"), (&fifo_name, "a FIFO")] {
        assert_rejected(argdist_on(file, "work", "0"), &format!("{file}: {what}, not a program"));
    }
    std::fs::remove_file(&fifo).unwrap();
}

#[test]
fn top_zero_is_a_usage_error() {
    let target = target("tostring");
    let run = probe(&["latency", "--func", "ToString", "--top", "0", &target.to_string_lossy()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--top"), "{}", run.stderr);
}

#[test]
fn not_x86_64() {
    let target = target("cvalues");
    let mut bytes = std::fs::read(&target).unwrap();
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes()); // e_machine = EM_AARCH64
    let foreign = target.with_file_name("cvalues-aarch64");
    std::fs::write(&foreign, bytes).unwrap();
    assert_rejected(argdist_on(&foreign.to_string_lossy(), "work", "0"), "x86-64 programs only");
}

#[test]
fn function_not_found_names_the_closest() {
    let target = target("tostring");
    let run = argdist_on(&target.to_string_lossy(), "ToStrin", "0");
    assert_rejected(run, "no such function");
    let run = argdist_on(&target.to_string_lossy(), "ToStrin", "0");
    assert!(run.stderr.contains("main.ToString"), "{}", run.stderr);
}

#[test]
fn ambiguous_function_lists_the_matches() {
    let target = target("tostring");
    let run = argdist_on(&target.to_string_lossy(), "String", "0");
    assert_rejected(run, "ambiguous");
}

#[test]
fn argument_out_of_range_for_the_abi() {
    // With DWARF, N counts declared parameters (issue 16); without it, register words.
    let go = target("tostring");
    assert_rejected(argdist_on(&go.to_string_lossy(), "ToString", "9"), "no parameter 9 as declared");
    let go = target("tostring-stripped");
    assert_rejected(argdist_on(&go.to_string_lossy(), "ToString", "9"), "out of range for the Go register ABI");
    let c = target("cvalues-nodebug");
    assert_rejected(argdist_on(&c.to_string_lossy(), "work", "6"), "out of range for the System V ABI");
}

#[test]
fn pid_that_does_not_exist() {
    let pid = (4_000_000..).find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()).unwrap();
    let run = probe(&["argdist", "--func", "x", "--arg", "0", "-p", &pid.to_string()]);
    assert_rejected(run, "no such process");
}

#[test]
fn pid_that_has_exited() {
    // A zombie: the process has exited but is not reaped, so its /proc entry remains.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let run = probe(&["argdist", "--func", "x", "--arg", "0", "-p", &pid.to_string()]);
    child.wait().unwrap();
    assert_rejected(run, "exited");
}

#[test]
fn command_that_cannot_start() {
    let run = probe(&["argdist", "--func", "x", "--arg", "0", "-c", "/nonexistent/cmd --flag"]);
    assert_rejected(run, "cannot start `/nonexistent/cmd`");
    let run = probe(&["argdist", "--func", "x", "--arg", "0", "-c", "no-such-command-anywhere"]);
    assert_rejected(run, "cannot start `no-such-command-anywhere`");
}

#[test]
fn go_stack_abi_return_value_is_refused() {
    let target = target("goasm");
    let run = probe(&["argdist", "--func", "Scale", "--ret", &target.to_string_lossy()]);
    assert_rejected(run, "Go stack ABI");
}

#[test]
fn missing_target_is_a_usage_error() {
    let run = probe(&["argdist", "--func", "x", "--arg", "0"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("required"), "{}", run.stderr);
}

#[test]
fn uretprobe_on_go_code_is_refused() {
    let target = target("latency");
    let run = probe(&["latency", "--exit", "uretprobe", "--func", "Fib", &target.to_string_lossy()]);
    assert_rejected(run, "crashes Go programs");
}

#[test]
fn truncated_elf() {
    let target = target("cvalues");
    let bytes = std::fs::read(&target).unwrap();
    let cut = target.with_file_name("cvalues-truncated");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    assert_rejected(argdist_on(&cut.to_string_lossy(), "work", "0"), "corrupt or truncated");
}

#[test]
fn gopclntab_that_lies() {
    let stripped = corruptible_copy("tostring-lying");
    let mut bytes = std::fs::read(&stripped).unwrap();
    // Find .gopclntab's header (magic 0xfffffff0) and point its function table past the end.
    let magic = 0xfffffff0u32.to_le_bytes();
    let at = bytes.windows(8).position(|w| w[..4] == magic && w[4..8] == [0, 0, 1, 8]).unwrap();
    bytes[at + 8 + 7 * 8..at + 8 + 8 * 8].copy_from_slice(&(u32::MAX as u64).to_le_bytes());
    std::fs::write(&stripped, bytes).unwrap();
    assert_rejected(argdist_on(&stripped.to_string_lossy(), "ToString", "0"), "corrupt or truncated");
}

#[test]
fn function_in_a_data_section() {
    let target = target("oddities");
    assert_rejected(argdist_on(&target.to_string_lossy(), "data_not_code", "0"), "not in executable code");
}

#[test]
fn function_of_size_zero_cannot_have_its_returns_found() {
    let target = target("oddities");
    let run = probe(&["latency", "--exit", "ret", "--func", "sizeless", &target.to_string_lossy()]);
    assert_rejected(run, "sizeless has size 0");
}

#[test]
fn first_instruction_the_kernel_refuses_without_an_equivalent_next_one() {
    // `lock incq (%rsi)`, then a loop head: a probe there would fire once per iteration.
    let target = target("oddities");
    assert_rejected(argdist_on(&target.to_string_lossy(), "refused_loop", "0"), "refuses to probe");
}

#[test]
fn glob_matching_too_many_functions() {
    // 10,050 functions in one library: more than probe attaches at once.
    let dir = root().join("target/targets");
    let src = dir.join("many.c");
    let body: String = (0..10_050).map(|i| format!("long f{i}(long x) {{ return x + {i}; }}\n")).collect();
    std::fs::write(&src, body).unwrap();
    let lib = dir.join("libmany.so");
    build(Command::new("cc").args(["-O0", "-shared", "-fPIC", "-o"]).arg(&lib).arg(&src), &lib);
    let run = probe(&["latency", "--func", "f*", &lib.to_string_lossy()]);
    assert_rejected(run, "functions, more than the 10000 probe traces at once");
}

#[test]
fn glob_matching_nothing() {
    let target = target("tostring");
    let run = probe(&["latency", "--func", "main.Nothing*", &target.to_string_lossy()]);
    assert_rejected(run, "--func main.Nothing*: no function matches in");
}

#[test]
fn library_the_program_does_not_load() {
    let target = target("cvalues");
    let run = probe(&["latency", "--func", "nosuchlib:f", &target.to_string_lossy()]);
    let message = format!(
        "libnosuchlib: {} does not load it and the linker cache (ldconfig -p) has no such library; \
         check the name (`ldd {}` lists what it loads) or give the library's path",
        target.display(),
        target.display()
    );
    assert_rejected(run, &message);
}

#[test]
fn only_regular_files_are_read_as_binaries() {
    // Issue 12: `probe list /dev/zero` read until the OOM killer came; a FIFO hung.
    assert_rejected(probe_within(10, &["list", "/dev/zero"]), "/dev/zero: a character device, not a program");
    let fifo = targets_dir().join(format!("fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let c_path = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let fifo_arg = fifo.to_string_lossy().to_string();
    assert_rejected(probe_within(10, &["list", &fifo_arg]), "a FIFO, not a program");
    assert_rejected(probe_within(10, &["latency", "--func", "f", &fifo_arg]), "a FIFO, not a program");
    std::fs::remove_file(&fifo).unwrap();
    let dir = targets_dir().to_string_lossy().to_string();
    assert_rejected(probe_within(10, &["list", &dir]), "a directory, not a program");
}

#[test]
fn a_file_too_large_for_a_program_is_not_read() {
    // Sparse: 5 GiB long, no disk used; it starts like an ELF file.
    let huge = targets_dir().join(format!("huge-{}", std::process::id()));
    let file = std::fs::File::create(&huge).unwrap();
    std::io::Write::write_all(&mut &file, b"\x7fELF").unwrap();
    file.set_len(5 << 30).unwrap();
    let run = probe_within(10, &["list", &huge.to_string_lossy()]);
    std::fs::remove_file(&huge).unwrap();
    assert_rejected(run, "5368709120 bytes, larger than any program probe reads (4 GiB)");
}

#[test]
fn malformed_sudo_ids_are_refused_not_run_as_root() {
    // Issue 12: a malformed SUDO_UID/SUDO_GID silently ran the -c command as root.
    let target = target("cdeep");
    let cmd = target.to_string_lossy().to_string();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("SUDO_UID", "abc"), ("SUDO_GID", "1000")], r#"SUDO_UID="abc" is not a user or group id"#),
        (&[("SUDO_UID", "1000"), ("SUDO_GID", "10x")], r#"SUDO_GID="10x" is not a user or group id"#),
        (&[("SUDO_UID", "-1"), ("SUDO_GID", "-1")], r#"SUDO_UID="-1" is not a user or group id"#),
        (&[("SUDO_UID", "1000")], "SUDO_GID is not set"),
    ];
    for (vars, needle) in cases {
        let out = Command::new(probe_bin())
            .args(["latency", "--func", "deep", "-c", &cmd])
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let run: Run = out.into();
        assert!(!run.stdout.contains("deep calls"), "{vars:?}: the command ran: {}", run.stdout);
        assert_rejected(run, needle);
    }
}

#[test]
fn command_line_errors_are_one_line() {
    // Issue 12: clap's errors took 3-7 lines; `-d 1e30` said "is not a positive number".
    let target = target("tostring");
    let t = target.to_string_lossy().to_string();
    let cases: [(&[&str], &str); 9] = [
        (
            &["latency", "--func", "ToString", "-d", "0", &t],
            "`0` is not a positive duration: seconds, or a number with a unit (500ms, 5s, 2m, 1h); see `probe latency --help`",
        ),
        (&["latency", "--func", "ToString", "-d", "5x", &t], "`5x` is not a positive duration"),
        (&["latency", "--func", "ToString", "-d", "ms", &t], "`ms` is not a positive duration"),
        (&["latency", "--func", "ToString", "-i", "-1", &t], "see `probe latency --help`"),
        (&["latency", "--func", "ToString", "-d", "1e30", &t], "`1e30` seconds is longer than probe waits"),
        (&["argdist", "--func", "ToString", "--arg", "-1", &t], "`-1` is not an argument number (0 for the first"),
        (&["latency", "--func", "ToString", "--unit", "s", &t], "[possible values: ns, us, ms]"),
        (&["latency", "--func", "ToString", "--bogus", &t], "unexpected argument '--bogus'"),
        (&["latency", "--func", "ToString"], "required arguments were not provided: <--command"),
    ];
    for (args, needle) in cases {
        assert_rejected(probe(args), needle);
    }
}

#[test]
fn empty_function_name_is_named_as_such() {
    // Issue 12: `--func ''` said "ambiguous, 327 functions match".
    let target = target("tostring");
    let t = target.to_string_lossy().to_string();
    assert_rejected(probe(&["latency", "--func", "", &t]), "--func '': no function name given");
    assert_rejected(argdist_on(&t, "", "0"), "--func '': no function name given");
}

#[test]
fn truncated_go_binary_names_the_corruption() {
    // Issue 12: cut by 1,000 bytes, the symbol table at the end was lost quietly and every
    // name was "not found".
    let bytes = std::fs::read(target("tostring")).unwrap();
    let cut = targets_dir().join("tostring-cut");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let run = argdist_on(&cut.to_string_lossy(), "ToString", "0");
    assert_rejected(run, "past the end of the file");
}

#[test]
fn zeroed_gopclntab_count_names_the_corruption() {
    let stripped = corruptible_copy("tostring-zero-count");
    let mut bytes = std::fs::read(&stripped).unwrap();
    let magic = 0xfffffff0u32.to_le_bytes();
    let at = bytes.windows(8).position(|w| w[..4] == magic && w[4..8] == [0, 0, 1, 8]).unwrap();
    bytes[at + 8..at + 16].copy_from_slice(&0u64.to_le_bytes()); // nfunc
    std::fs::write(&stripped, bytes).unwrap();
    assert_rejected(argdist_on(&stripped.to_string_lossy(), "ToString", "0"), "pclntab's function count is 0");
    assert_rejected(probe(&["list", &stripped.to_string_lossy()]), "pclntab's function count is 0");
}

/// Parameters by name or declared position (issue 16): each mistake is one line, exit 2.
#[test]
fn parameters_that_cannot_be_measured_are_named() {
    let go = target("goparams");
    let go = go.to_string_lossy();
    let c = target("cparams");
    let c = c.to_string_lossy();
    let stripped = target("goparams-stripped");
    let stripped = stripped.to_string_lossy();
    let cases: [(&str, &str, &str, &str); 10] = [
        (&go, "Handle", "pth", "has no parameter named pth; did you mean path?"),
        (&go, "Handle", "ratio", "floating-point values are in XMM registers, which uprobes do not save"),
        (&c, "handle", "ratio", "floating-point values are in XMM registers, which uprobes do not save"),
        (&go, "Handle", "7", "no parameter 7 as declared (main.(*Server).Handle's parameters: s *main.Server, path"),
        (&go, "Describe", "v", "is an interface (interface {})"),
        (&go, "Mixed", "p", "p is a struct passed by value (main.Point)"),
        (&c, "handle", "b", "b is a struct passed by value (struct big)"),
        (&stripped, "Handle", "path", "has no debug information (DWARF; built with -ldflags=-s -w?)"),
        (&c, "scaled.constprop.0", "x", "is a copy the compiler specialised (.constprop, .isra, .part or .cold)"),
        (&c, "seven", "a-b", "`a-b` is not an argument number (0 for the first, 1, 2, ...) nor a parameter name"),
    ];
    for (binary, func, arg, needle) in cases {
        assert_rejected(argdist_on(binary, func, arg), needle);
    }
    assert_rejected(probe(&["argdist", "--func", "Mixed", "--ret=2", &go]), "--ret=2: no result 2 as declared");
    // Go 1.19 leaves the blank parameter out of the DWARF: a position could be off by one.
    assert_rejected(
        probe(&["argdist", "--func", "Blank", "--arg", "0", &go]),
        "main.Blank: its debug information leaves out some parameters (Go before 1.23 leaves out blank (_)",
    );
    assert_rejected(
        probe(&["argdist", "--func", "Mixed", "--ret=1", &stripped]),
        "without it only the first result (--ret) can be located",
    );
}

/// Issue 24: as another user, `-p` on root's process says probe needs root (it said "the
/// process may have exited"); `probe doctor` shows what only root can see as unknown, not
/// missing.
#[test]
fn not_root_with_a_pid_and_doctor_say_root_is_needed() {
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let as_nobody = |args: &[&str]| -> Run {
        let out = Command::new(probe_bin()).args(args).uid(65534).gid(65534).stdin(Stdio::null()).output().unwrap();
        out.into()
    };
    let run = as_nobody(&["latency", "--func", "main", "-p", &pid]);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_rejected(run, &format!("-p {pid}: probe needs root, or CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE"));
    let run = as_nobody(&["doctor"]);
    assert_rejected(&run, "needs root, or CAP_BPF and CAP_PERFMON, to load eBPF programs; run it with sudo");
    for feature in ["bpf_probe_read_user", "BPF cookies on uprobes", "uprobe_multi link", "BPF ring buffer"] {
        let line = run.stdout.lines().find(|l| l.contains(feature)).unwrap_or_else(|| panic!("{}", run.stdout));
        assert!(line.starts_with("  [ ? ] "), "{line}");
    }
    assert!(run.stdout.contains("  [ ? ]: not known without root"), "{}", run.stdout);
    assert!(run.stdout.contains("  [yes] uprobe events"), "{}", run.stdout);
}

/// Issue 24: a function named without --func (`probe latency getCommand -p PID`) is pointed
/// out with the command line that works, not a conflict between -p and BINARY.
#[test]
fn a_function_without_func_gets_the_fixed_command_line() {
    let cases: [(&[&str], &str); 3] = [
        (&["latency", "getCommand", "-p", "123"], "`getCommand` is read as the program to trace; name the function with --func: `probe latency --func getCommand -p 123`"),
        (&["latency", "-d", "5", "getCommand", "/usr/bin/redis-server"], "`probe latency -d 5 --func getCommand /usr/bin/redis-server`"),
        (&["argdist", "ToString", "--arg", "0", "-c", "./app -x"], "`probe argdist --func ToString --arg 0 -c './app -x'`"),
    ];
    for (args, needle) in cases {
        assert_rejected(probe(args), needle);
    }
}

/// Issue 24: two outputs naming one file through `..` or a symlink were not caught, and the
/// SVG silently replaced the tables.
#[test]
fn aliases_of_one_output_file_are_refused() {
    let dir = targets_dir().join(format!("aliases-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let target = target("tostring");
    let t = target.to_string_lossy().to_string();
    let (plain, dotted, link) = (dir.join("a.svg"), dir.join("sub/../a.svg"), dir.join("link.svg"));
    std::os::unix::fs::symlink("a.svg", &link).unwrap();
    let real = std::fs::canonicalize(&dir).unwrap().join("a.svg");
    for other in [&dotted, &link] {
        // -d: where the check misses the alias, the run ends (and the test fails) instead of tracing on.
        let (o, plot) = (plain.to_str().unwrap(), other.to_str().unwrap());
        let run = probe(&["latency", "--func", "ToString", "-d", "1", "-o", o, "--plot", plot, &t]);
        let message = format!(
            "-o {} and --plot {} are one file ({}); give each its own file",
            plain.display(),
            other.display(),
            real.display()
        );
        assert_rejected(run, &message);
    }
    assert!(!plain.exists(), "nothing written before the check");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 24: `--1` was read as 1 and `0x-1` as -1; a line break made a two-line error.
#[test]
fn malformed_filter_numbers_and_line_breaks_are_refused() {
    let target = target("tostring");
    let t = target.to_string_lossy().to_string();
    for (filter, needle) in [
        ("value > --1", "--filter 'value > --1': value > --1: `--1` is not an integer"),
        ("value == 0x-1", "--filter 'value == 0x-1': value == 0x-1: `0x-1` is not an integer"),
        ("pid > -+1", "`-+1` is not an integer"),
        // Over two lines, an error is still one line.
        ("valu > 1\n&& pid > 1", "--filter 'valu > 1 && pid > 1': valu > 1: "),
        ("value > 1\u{1b}", r"--filter 'value > 1\u{1b}': a control character in the expression"),
    ] {
        let run = probe(&["argdist", "--func", "ToString", "--arg", "0", "-d", "1", "--filter", filter, &t]);
        assert_rejected(run, needle);
    }
}

/// A copy of the stripped Go target as `name`, for a test to corrupt (the table's build stays
/// intact for the others).
fn corruptible_copy(name: &str) -> std::path::PathBuf {
    let copy = targets_dir().join(name);
    std::fs::copy(target("tostring-stripped"), &copy).unwrap();
    copy
}
