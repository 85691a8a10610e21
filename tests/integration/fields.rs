//! `--arg PATH`: values inside the arguments (`r.URL.Path`, `cfg->limits.max`), followed from
//! a register through pointers with offsets from the DWARF, in the kernel. A Go HTTP server of
//! the targets drives itself with known requests and prints what its handler saw; a C target
//! passes nested structs and NULL pointers. Every call is counted under its value, or as
//! unreadable where a pointer on the path is nil, exactly.
use crate::support::*;
use std::collections::BTreeMap;

/// The target's own counts: its lines `WHAT KEY: N`.
fn printed(stdout: &str, what: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{what} ");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| l.rsplit_once(": "))
        .map(|(k, n)| (k.to_string(), n.parse().unwrap()))
        .collect()
}

/// `--count` table of the final JSON line: value (a string's text, or a number) -> calls.
fn counted(table: &serde_json::Value) -> BTreeMap<String, u64> {
    table["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|row| {
            let v = match &row["value"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (v, row["count"].as_u64().unwrap())
        })
        .collect()
}

/// Counts `arg` of `func` in the HTTP server `target`; returns the final table and the target's
/// own stdout (probe's stderr carries it with --json).
fn count_in(target: &std::path::Path, func: &str, arg: &str) -> (serde_json::Value, String) {
    let cmd = target.display().to_string();
    let run = probe(&["argdist", "--func", func, "--arg", arg, "--count", "--top", "100", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{arg}: {}", run.stderr);
    let tables = json_tables(&run.stdout);
    let last = tables.last().expect("a final table").clone();
    assert_eq!(last["kind"], "final");
    assert_eq!(last["lost"], 0, "{arg}");
    assert_eq!(last["other_values"], 0, "{arg}");
    (last, run.stderr)
}

fn http_servers() -> [std::path::PathBuf; 2] {
    [target("httpserver"), go_target_with("httpserver", "1.23")]
}

#[test]
fn go_request_paths_methods_lengths_and_header_counts_are_exact_on_two_go_versions() {
    for server in http_servers() {
        for (arg, what) in [
            ("r.URL.Path", "path"),
            ("r.Method", "method"),
            ("r.ContentLength", "content-length"),
            ("r.Header", "headers"),
        ] {
            let (table, out) = count_in(&server, "main.handle", arg);
            let expected = printed(&out, what);
            assert_eq!(expected.values().sum::<u64>(), 65, "{}: {out}", server.display());
            assert_eq!(counted(&table), expected, "{} {arg}", server.display());
            assert_eq!(table["count"], reported_calls(&out, "handle"));
            assert_eq!(table["unreadable"], 0);
            let label = if arg == "r.Header" { "len(r.Header)" } else { arg };
            assert_eq!(table["measured"], label);
        }
        assert_nothing_attached();
    }
}

#[test]
fn go_net_http_server_handler_sees_every_request_path() {
    for server in http_servers() {
        let (table, out) = count_in(&server, "net/http.serverHandler.ServeHTTP", "req.URL.Path");
        assert_eq!(counted(&table), printed(&out, "path"), "{}", server.display());
        assert_eq!(table["count"], 65);
        assert_nothing_attached();
    }
}

#[test]
fn a_nil_go_pointer_is_counted_as_unreadable_exactly() {
    let (table, out) = count_in(&target("httpserver"), "main.note", "r.Method");
    assert_eq!(reported_calls(&out, "note"), 68);
    assert_eq!(counted(&table), printed(&out, "method"));
    assert_eq!(table["unreadable"], 3, "note(nil) three times");
    assert_eq!(table["count"], 68);
    assert_nothing_attached();
}

#[test]
fn go_struct_fields_passed_in_registers_are_read_from_their_registers() {
    let server = target("httpserver");
    let (table, _) = count_in(&server, "main.limits", "l.Name");
    assert_eq!(counted(&table), BTreeMap::from([("lim".to_string(), 4)]));
    let (table, _) = count_in(&server, "main.limits", "l.Max");
    assert_eq!(counted(&table), (0..4).map(|i| ((100 * i).to_string(), 1)).collect());
    assert_nothing_attached();
}

#[test]
fn go_paths_filter_and_histogram_by_length() {
    let cmd = target("httpserver").display().to_string();
    let run = probe(&[
        "argdist",
        "--func",
        "main.handle",
        "--arg",
        "r.ContentLength",
        "--filter",
        "len(r.URL.Path) > 8",
        "--count",
        "--json",
        "-c",
        &cmd,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = json_tables(&run.stdout).pop().unwrap();
    // /api/users (10 bytes, GET: 0) and /api/orders (11, POST: 7); not /metrics (8) nor /.
    assert_eq!(counted(&table), BTreeMap::from([("0".to_string(), 30), ("7".to_string(), 20)]));
    // latency's filter reads the path at the entry too.
    let run = probe(&["latency", "--func", "main.handle", "--filter", "len(r.URL.Path) > 8", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json_tables(&run.stdout).pop().unwrap()["count"], 50);
    let run = probe(&["argdist", "--func", "main.handle", "--arg", "r.URL.Path", "--json", "-c", &cmd]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = json_tables(&run.stdout).pop().unwrap();
    assert_eq!(table["count"], 65);
    assert_eq!(table["min"].as_i64(), Some(1));
    assert_eq!(table["max"].as_i64(), Some(11));
    // 30*10 + 20*11 + 10*8 + 5*1
    assert_eq!(table["sum"].as_i64(), Some(605), "{table}");
    assert_nothing_attached();
}

#[test]
fn c_nested_structs_and_null_pointers_are_counted_exactly() {
    let cmd = target("cfields").display().to_string();
    let count = |arg: &str| {
        let run = probe(&["argdist", "--func", "apply", "--arg", arg, "--count", "--json", "-c", &cmd]);
        assert_eq!(run.code, 0, "{arg}: {}", run.stderr);
        let own = printed(&run.stderr, "apply");
        assert_eq!((own["calls"], own["null config"], own["null owner"]), (59, 4, 5), "{}", run.stderr);
        let table = json_tables(&run.stdout).pop().unwrap();
        assert_eq!(table["count"], 59, "{arg}");
        assert_eq!(table["lost"], 0);
        (counted(&table), table["unreadable"].as_u64().unwrap())
    };
    let map = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
    // A NULL config (4 calls) cannot be read through; both spellings of C's fields are taken.
    assert_eq!(count("cfg->limits.max"), (map(&[("10", 30), ("20", 20), ("30", 5)]), 4));
    assert_eq!(count("cfg.limits.min"), (map(&[("-1", 30), ("-2", 20), ("-3", 5)]), 4));
    assert_eq!(count("cfg->limits.bytes"), (map(&[("1099511627776", 30), ("7", 20), ("9", 5)]), 4));
    // Through a second pointer: also the 5 calls whose owner is NULL.
    assert_eq!(count("cfg->owner->uid"), (map(&[("1000", 30), ("1001", 20)]), 9));
    assert_eq!(count("cfg->owner->name"), (map(&[("alice", 30), ("bob", 20)]), 9));
    assert_nothing_attached();
}

#[test]
fn paths_that_cannot_be_read_are_refused_in_one_line() {
    let c = target("cfields").display().to_string();
    let go = target("httpserver").display().to_string();
    for (cmd, func, arg, says) in [
        (&c, "apply", "cfg->limts.max", "has no field limts; closest: limits"),
        (&c, "apply", "cfg->ratio", "floating-point"),
        (&c, "apply", "cfg->limits", "is a struct (struct limits): name one of its fields (min, max, bytes)"),
        (&go, "main.handle", "r.Body", "is an interface (io.ReadCloser): what it holds is unknown"),
        (&go, "main.handle", "r.URL.Pth", "has no field Pth; closest: Path"),
        (&go, "main.handle", "r.Header.x", "is a map (net/http.Header), which has no fields"),
    ] {
        let run = probe(&["argdist", "--func", func, "--arg", arg, "--count", "-c", cmd]);
        assert_eq!(run.code, 2, "{arg}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(run.stderr.contains(says), "{arg}: {}", run.stderr);
    }
    let nodebug = target("cfields-nodebug").display().to_string();
    let run = probe(&["argdist", "--func", "apply", "--arg", "cfg->limits.max", "-c", &nodebug]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("has no debug information") && run.stderr.contains("path"), "{}", run.stderr);
    let run = probe(&["list", &nodebug, "apply", "--fields", "cfg"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no debug information"), "{}", run.stderr);
    assert_nothing_attached();
}

#[test]
fn list_shows_the_fields_a_parameter_offers_one_level_at_a_time() {
    let go = target("httpserver").display().to_string();
    let run = probe(&["list", &go, "main.handle", "--fields", "r", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = json_tables(&run.stdout);
    let find = |path: &str| rows.iter().find(|r| r["path"] == path).unwrap_or_else(|| panic!("{path}: {}", run.stdout));
    assert_eq!(find("r.Method")["kind"], "string");
    assert_eq!(find("r.URL")["kind"], "pointer");
    assert_eq!(find("r.Header")["kind"], "map");
    assert_eq!(find("r.Body")["kind"], "interface");
    assert_eq!(find("r.ContentLength")["type"], "int64");
    let run = probe(&["list", &go, "main.handle", "--fields", "r.URL"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.lines().any(|l| l.starts_with("r.URL.Path ") && l.contains("string")), "{}", run.stdout);
    let c = target("cfields").display().to_string();
    let run = probe(&["list", &c, "apply", "--fields", "cfg->owner"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("cfg->owner->name") && run.stdout.contains("C string"), "{}", run.stdout);
    let run = probe(&["list", &c, "apply", "--fields", "cfg->ownr"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("closest: owner"), "{}", run.stderr);
}
