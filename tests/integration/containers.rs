//! Choosing processes by container and cgroup, for real: podman runs the Go target in two
//! containers of one image (so both run the same file, and a probe on it is hit by both), and
//! probe itself runs from its image (`cargo xtask image`) in a third, privileged, in the host's
//! PID namespace, as a DaemonSet runs it. `--container` and `--cgroup` must count every call of
//! the chosen container and none of the other's. A cgroup the test makes itself checks the
//! same without a container engine, with a process that joins the cgroup after probe started.
use crate::support::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Calls of each round of tests/targets/go/tostring.
const ROUND: u64 = 1000;

fn podman() -> Command {
    let mut podman = Command::new("podman");
    // runc, not Debian's default crun: crun refuses a hybrid cgroup layout whose v2 hierarchy
    // holds a controller (hugetlb on this machine); runc also makes the container's v2 cgroup.
    podman.args(["--runtime", "runc"]);
    podman
}

/// `podman run` options for every container here. Podman's default limits (1048576 open
/// files) exceed what root may set without CAP_SYS_RESOURCE, which a CI machine that is itself a
/// container lacks; these fit everywhere. No network: nothing here needs one.
const RUN: &[&str] = &["run", "--rm", "--network=none", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"];

fn checked(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (tests/integration/containers.rs needs podman: scripts/setup.sh test)")
    });
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// probe's image, built by `cargo xtask image` (`cargo xtask test` builds it and names it in
/// PROBE_IMAGE), loaded into podman once; returns its name.
fn probe_image() -> &'static str {
    static LOADED: OnceLock<String> = OnceLock::new();
    LOADED.get_or_init(|| {
        let archive = std::env::var_os("PROBE_IMAGE")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join(format!("target/image/probe-{}.oci.tar", env!("CARGO_PKG_VERSION"))));
        assert!(archive.exists(), "{}: no image of probe; `cargo xtask image` builds it", archive.display());
        let loaded = checked(podman().args(["load", "-i"]).arg(&archive));
        let name = loaded.lines().find_map(|l| l.strip_prefix("Loaded image: ")).expect("podman load names the image");
        name.trim().to_string()
    })
}

/// tests/targets/go/tostring, statically linked (the image has nothing else), as an image of its
/// own written the way `cargo xtask image` writes probe's.
fn target_image() -> &'static str {
    static LOADED: OnceLock<String> = OnceLock::new();
    LOADED.get_or_init(|| {
        let binary = targets_dir().join("tostring-static");
        let tostring = probe_helpers::targets::output("tostring").expect("tostring is in the table");
        let mut go = tostring.command(probe_helpers::targets::Arch::Host, &binary);
        build(go.env("CGO_ENABLED", "0"), &binary);
        let name = format!("localhost/probe-test-tostring:{}", std::process::id());
        let image = probe_helpers::oci::Image {
            name: name.clone(),
            files: vec![probe_helpers::oci::ImageFile { path: "tostring".into(), source: binary, mode: 0o755 }],
            dirs: Vec::new(),
            entrypoint: vec!["/tostring".into()],
            labels: Vec::new(),
        };
        let archive = targets_dir().join(format!("tostring-{}.oci.tar", std::process::id()));
        probe_helpers::oci::write_archive(&image, &archive).unwrap();
        checked(podman().args(["load", "-i"]).arg(&archive));
        std::fs::remove_file(&archive).unwrap();
        name
    })
}

/// A container running `tostring -wait -rounds N`: it calls nothing until `go`.
struct Target {
    name: String,
    rounds: u64,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl Target {
    fn start(tag: &str, rounds: u64) -> Target {
        let name = format!("probe-test-{tag}-{}", std::process::id());
        let mut child = podman()
            .args(RUN)
            .args(["-i", "--name", &name, target_image(), "-wait", "-rounds", &rounds.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("podman run");
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take().unwrap());
        let target = Target { name, rounds, child, stdin, stdout };
        let deadline = Instant::now() + Duration::from_secs(60);
        while target.pid().is_none() {
            assert!(Instant::now() < deadline, "container {} did not start", target.name);
            std::thread::sleep(Duration::from_millis(50));
        }
        target
    }

    /// The host pid of the container's tostring, once it runs.
    fn pid(&self) -> Option<i32> {
        let out = podman().args(["inspect", "--format", "{{.State.Pid}}", &self.name]).output().ok()?;
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok().filter(|&p| p > 0)?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        exe.ends_with("tostring").then_some(pid)
    }

    fn id(&self) -> String {
        checked(podman().args(["inspect", "--format", "{{.Id}}", &self.name])).trim().to_string()
    }

    /// Its cgroup v2 path below the hierarchy's root, as /proc/PID/cgroup shows it.
    fn cgroup(&self) -> String {
        let text = std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid().unwrap())).unwrap();
        text.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 path").to_string()
    }

    fn go(&mut self) {
        writeln!(self.stdin.take().unwrap()).unwrap();
    }

    /// The calls it reports once it exits; they must be all of its rounds.
    fn calls(mut self) -> u64 {
        let mut out = String::new();
        self.stdout.read_to_string(&mut out).unwrap();
        assert!(self.child.wait().unwrap().success(), "{}: {out}", self.name);
        let calls = reported_calls(&out, "ToString");
        assert_eq!(calls, self.rounds * ROUND);
        calls
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).stderr(Stdio::null()).stdout(Stdio::null()).status();
    }
}

/// probe from its image, privileged in the host's PID namespace, with the host's cgroup
/// hierarchy and podman's container list (for names) mounted read-only where probe looks.
fn probe_in_container(args: &[&str]) -> (Child, BufReader<std::process::ChildStderr>) {
    let name = format!("probe-test-probe-{}", std::process::id());
    let mut child = podman()
        .args(RUN)
        .args(["--name", &name, "--privileged", "--pid=host"])
        .args(["-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"])
        .args(["-v", "/var/lib/containers/storage:/var/lib/containers/storage:ro"])
        .arg(probe_image())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podman run probe");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = String::new();
    while !lines.contains("probe: tracing") && stderr.read_line(&mut lines).unwrap() > 0 {}
    assert!(lines.contains("probe: tracing"), "probe did not start tracing: {lines}");
    (child, stderr)
}

/// The single table's count of a `--json` run.
fn counted(run: &Run) -> u64 {
    assert_eq!(run.code, 0, "probe failed: {}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "one table: {}", run.stdout);
    assert_eq!((&tables[0]["abandoned"], &tables[0]["too_deep"]), (&0.into(), &0.into()), "{}", run.stdout);
    tables[0]["count"].as_u64().unwrap()
}

/// Two containers run the same file (3 and 5 rounds); probe selects one of them with the
/// arguments `select` gives (options and BINARY); returns (count, the chosen container's calls, the other's).
fn trace_one_of_two(select: impl Fn(&Target) -> Vec<String>) -> (u64, u64, u64) {
    let mut chosen = Target::start("chosen", 3);
    let mut other = Target::start("other", 5);
    let mut args = vec!["latency".to_string(), "--json".into(), "--func".into(), "ToString".into()];
    args.extend(select(&chosen));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (probe, stderr) = probe_in_container(&args);
    chosen.go();
    other.go();
    let (mine, theirs) = (chosen.calls(), other.calls());
    interrupt(&probe); // podman passes SIGINT on to probe
    let run = finish(probe, stderr);
    assert_nothing_attached();
    (counted(&run), mine, theirs)
}

#[test]
fn container_by_name_counts_only_its_processes() {
    let (count, mine, theirs) = trace_one_of_two(|t| vec!["--container".into(), t.name.clone(), "/tostring".into()]);
    assert_eq!((count, mine, theirs), (3 * ROUND, 3 * ROUND, 5 * ROUND));
}

#[test]
fn container_by_id_prefix_counts_only_its_processes() {
    let (count, mine, _) =
        trace_one_of_two(|t| vec!["--container".into(), t.id()[..12].to_string(), "/tostring".into()]);
    assert_eq!(count, mine);
}

#[test]
fn cgroup_of_a_container_counts_only_its_processes() {
    let (count, mine, _) = trace_one_of_two(|t| vec!["--cgroup".into(), t.cgroup(), "/tostring".into()]);
    assert_eq!(count, mine);
}

/// As the DaemonSet runs it: the cgroup holding every container (podman's parent, as
/// Kubernetes' kubepods) counts every process running the file, in whichever container.
#[test]
fn cgroup_of_all_containers_counts_every_one_running_the_file() {
    let (count, mine, theirs) = trace_one_of_two(|t| {
        let cgroup = t.cgroup();
        let parent = cgroup.rsplit_once('/').expect("a container's cgroup has a parent").0.to_string();
        vec!["--cgroup".into(), parent, "/tostring".into()]
    });
    assert_eq!(count, mine + theirs);
}

/// The control: without a selection the same probe, on the same file, counts both containers,
/// so the counts above are the selection's doing.
#[test]
fn without_a_selection_both_containers_are_counted() {
    let (count, mine, theirs) = trace_one_of_two(|t| {
        // The file as the host sees it, through the container's root (probe's own root holds
        // only probe).
        vec![format!("/proc/{}/root/tostring", t.pid().unwrap())]
    });
    assert_eq!(count, mine + theirs);
}

/// The cgroup v2 hierarchy, as mounted here (/sys/fs/cgroup/unified on a hybrid system).
fn v2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = info.lines().find_map(|l| {
        let (fields, rest) = l.split_once(" - ")?;
        (rest.split_whitespace().next()? == "cgroup2").then(|| fields.split_whitespace().nth(4).unwrap().to_string())
    });
    PathBuf::from(mount.expect("a cgroup v2 hierarchy mounted"))
}

/// A cgroup of the test's own, removed when dropped (its processes gone by then).
struct Cgroup(PathBuf);

impl Cgroup {
    fn new() -> Cgroup {
        let dir = v2_mount().join(format!("probe-test-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Cgroup(dir)
    }

    fn enter(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn waiting(program: &Path, rounds: u64) -> Child {
    Command::new(program)
        .args(["-wait", "-rounds", &rounds.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn release_and_count(mut child: Child) -> u64 {
    writeln!(child.stdin.take().unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    reported_calls(&String::from_utf8_lossy(&out.stdout), "ToString")
}

/// Without a container engine: two processes of one file, one moved into a cgroup before
/// probe starts, a third moved in after it attached. Only the two in the cgroup are counted.
#[test]
fn cgroup_counts_its_processes_and_those_that_join_later() {
    let program = private_copy(&target("tostring"), "cgroup");
    let cgroup = Cgroup::new();
    let inside = waiting(&program, 2);
    let outside = waiting(&program, 3);
    cgroup.enter(inside.id());
    let dir = cgroup.0.to_str().unwrap().to_string();
    let (probe, stderr) =
        probe_background(&["latency", "--json", "--func", "ToString", "--cgroup", &dir, program.to_str().unwrap()]);
    let later = waiting(&program, 4);
    cgroup.enter(later.id());
    let calls = [release_and_count(inside), release_and_count(outside), release_and_count(later)];
    assert_eq!(calls, [2 * ROUND, 3 * ROUND, 4 * ROUND]);
    interrupt(&probe);
    let run = finish(probe, stderr);
    assert_eq!(counted(&run), (2 + 4) * ROUND, "{}", run.stderr);
    assert_nothing_attached();
    std::fs::remove_file(&program).unwrap();
}

/// argdist's programs check the cgroup too, before anything is counted: the value of every
/// call of the processes in the cgroup is in the histogram, and no call of the one outside is
/// counted anywhere (not in the table, not as unreadable or dropped).
#[test]
fn argdist_under_cgroup_counts_only_its_processes() {
    let program = private_copy(&target("tostring"), "argdist-cgroup");
    let cgroup = Cgroup::new();
    let inside = waiting(&program, 2);
    let outside = waiting(&program, 3);
    cgroup.enter(inside.id());
    let dir = cgroup.0.to_str().unwrap().to_string();
    let (probe, stderr) = probe_background(&[
        "argdist",
        "--json",
        "--func",
        "ToString",
        "--arg",
        "0",
        "--cgroup",
        &dir,
        program.to_str().unwrap(),
    ]);
    let later = waiting(&program, 4);
    cgroup.enter(later.id());
    let calls = [release_and_count(inside), release_and_count(outside), release_and_count(later)];
    assert_eq!(calls, [2 * ROUND, 3 * ROUND, 4 * ROUND]);
    interrupt(&probe);
    let run = finish(probe, stderr);
    assert_eq!(run.code, 0, "probe failed: {}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "one table: {}", run.stdout);
    assert_eq!(tables[0]["count"].as_u64(), Some((2 + 4) * ROUND), "{}", run.stdout);
    assert_eq!(tables[0]["unreadable"].as_u64(), Some(0), "{}", run.stdout);
    let losses = &tables[0]["losses"];
    assert!(losses.is_null() || losses.as_object().is_some_and(|o| o.is_empty()), "{}", run.stdout);
    assert!(!run.stderr.contains("not counted"), "{}", run.stderr);
    assert_nothing_attached();
    std::fs::remove_file(&program).unwrap();
}

/// Bad selections: one line naming the problem and the fix, exit 2, nothing attached.
#[test]
fn bad_selections_are_refused() {
    let program = target("tostring");
    let program = program.to_str().unwrap();
    let latency = |select: &[&str], binary: &str| {
        let mut args = vec!["latency", "--func", "ToString"];
        args.extend(select);
        args.push(binary);
        probe(&args)
    };
    assert_rejected(latency(&["--cgroup", "/no/such/cgroup"], program), "no such cgroup");
    assert_rejected(latency(&["--cgroup", "/etc/passwd"], program), "not a directory");
    assert_rejected(latency(&["--cgroup", "/proc"], program), "not in a cgroup file system");
    assert_rejected(
        latency(&["--container", "probe-test-no-such-container"], program),
        "no running container has this id or name",
    );
    // A cgroup with a process: BINARY is read inside it, so it must be absolute there, and exist.
    let cgroup = Cgroup::new();
    let mut inside = waiting(&target("tostring"), 1);
    cgroup.enter(inside.id());
    let dir = cgroup.0.to_str().unwrap();
    assert_rejected(latency(&["--cgroup", dir], "tostring"), "give its absolute path there");
    assert_rejected(
        latency(&["--cgroup", dir], "/no/such/program"),
        "give the program's path as the container sees it",
    );
    inside.kill().unwrap();
    inside.wait().unwrap();
}
