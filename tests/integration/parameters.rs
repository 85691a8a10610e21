//! Parameters as declared (`--arg NAME`, `--arg N` counting declared parameters with a
//! method's receiver first, `--ret=N`): exact values on Go (register ABI, three toolchains,
//! stripped) and C (with and without DWARF) targets, and `probe list --params`.
use crate::support::*;
use serde_json::Value;

/// Every round of the targets calls each function once for every v in -500..=499.
fn values(f: impl Fn(i64) -> i64) -> Vec<i64> {
    (-500..500).map(f).collect()
}

/// One run's final JSON table checked against the exact values the target passed.
fn assert_exact(run: &Run, function: &str, measured: &str, expected: &[i64]) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = json_tables(&run.stdout);
    assert_eq!(tables.len(), 1, "{}", run.stdout);
    let table = &tables[0];
    assert_eq!(table["function"], function);
    assert_eq!(table["measured"], measured);
    assert_eq!(table["count"].as_u64().unwrap(), expected.len() as u64, "count of {measured}");
    assert_eq!(table["sum"].as_i64().unwrap(), expected.iter().sum::<i64>(), "sum of {measured}");
    assert_eq!(table["min"].as_i64().unwrap(), *expected.iter().min().unwrap(), "min of {measured}");
    assert_eq!(table["max"].as_i64().unwrap(), *expected.iter().max().unwrap(), "max of {measured}");
    assert_eq!(json_buckets(table), expected_buckets(expected.iter().copied()), "buckets of {measured}");
    assert_nothing_attached();
}

fn argdist(binary: &std::path::Path, func: &str, what: &[&str]) -> Run {
    let mut args = vec!["argdist", "--func", func];
    args.extend_from_slice(what);
    let binary = binary.to_string_lossy();
    args.extend_from_slice(&["--json", "-c", &binary]);
    probe(&args)
}

/// goparams' Handle(path string, sizes []int, code int32, ratio float64, ok bool, tag uint8).
fn handle_return(v: i64) -> i64 {
    let (path, sizes, code, tag) = ((v + 500) % 37, (v + 500) % 11, v * 1000, v.rem_euclid(256));
    if v % 2 == 0 {
        path + sizes + code + v / 2 + tag
    } else {
        0
    }
}

type Case = (&'static str, &'static [&'static str], &'static str, &'static str, fn(i64) -> i64);

/// (function, options, reported function, measured label, value for v).
const GO_CASES: [Case; 16] = [
    ("Handle", &["--arg", "path"], "main.(*Server).Handle", "len(path)", |v| (v + 500) % 37),
    // Position 1 is path (the receiver is 0), whatever registers path's words are in.
    ("Handle", &["--arg", "1"], "main.(*Server).Handle", "len(arg1)", |v| (v + 500) % 37),
    ("Handle", &["--arg", "sizes"], "main.(*Server).Handle", "len(sizes)", |v| (v + 500) % 11),
    // int32: negative values read negative (the register's upper half is not part of it).
    ("Handle", &["--arg", "code"], "main.(*Server).Handle", "code", |v| v * 1000),
    ("Handle", &["--arg", "ok"], "main.(*Server).Handle", "ok", |v| (v % 2 == 0) as i64),
    ("Handle", &["--arg", "tag"], "main.(*Server).Handle", "tag", |v| v.rem_euclid(256)),
    ("Handle", &["--ret"], "main.(*Server).Handle", "ret", handle_return),
    // Many's 10th and 11th integers do not fit in the 9 registers: the stack.
    ("Many", &["--arg", "k"], "main.Many", "k", |v| 2 * v),
    ("Many", &["--arg", "10"], "main.Many", "arg10", |v| 3 * v),
    // After a struct (2 registers) and an [3]int (stack), n takes the third register.
    ("Mixed", &["--arg", "n"], "main.Mixed", "n", |v| v * 60),
    ("Mixed", &["--ret"], "main.Mixed", "len(ret)", |v| (2 * v).to_string().len() as i64),
    ("Mixed", &["--ret=1"], "main.Mixed", "ret1", |v| 60 * v),
    // After an interface (2 registers).
    ("Describe", &["--arg", "n"], "main.Describe", "n", |v| v),
    // After a blank parameter, which Go before 1.23 leaves out of the DWARF: x is in RBX, as
    // only the DWARF's location list says (read only for such functions: params::signature).
    ("Blank", &["--arg", "x"], "main.Blank", "x", |v| 5 * v),
    // A string that does not fit in the one register left goes to the stack (its length at
    // SP+16); the integer after it still takes that register.
    ("Spill", &["--arg", "s"], "main.Spill", "len(s)", |v| (v + 500) % 37),
    ("Spill", &["--arg", "t"], "main.Spill", "t", |v| 9 * v),
];

#[test]
fn go_parameters_by_name_and_declared_position_are_exact() {
    let target = target("goparams");
    for (func, what, function, measured, f) in GO_CASES {
        let run = argdist(&target, func, what);
        assert_exact(&run, function, measured, &values(f));
    }
}

#[test]
fn go_parameters_are_exact_with_go_1_21_and_1_23() {
    for version in ["1.21", "1.23"] {
        let target = go_target_with("goparams", version);
        for (func, what, function, measured, f) in GO_CASES {
            let run = argdist(&target, func, what);
            assert_exact(&run, function, measured, &values(f));
        }
    }
}

#[test]
fn blank_parameters_count_in_positions_where_the_dwarf_has_them() {
    // Go 1.23's DWARF declares `_` (as `~p0`); 1.19's does not, and positions are then refused
    // (tests/integration/bad_input.rs), while names still work (above).
    let target = go_target_with("goparams", "1.23");
    assert_exact(&argdist(&target, "Blank", &["--arg", "1"]), "main.Blank", "arg1", &values(|v| 5 * v));
    assert_exact(&argdist(&target, "Blank", &["--arg", "0"]), "main.Blank", "arg0", &values(|v| v));
}

#[test]
fn seed_number_by_name() {
    // The seed's SystemTap script reads `$number`.
    let target = target("tostring");
    for name in ["number", "$number"] {
        let run = probe(&["argdist", "--func", "ToString", "--arg", name, "-c", &target.to_string_lossy()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(run.stdout.contains("main.ToString number: min:-500 avg:0 max:499 count:1000\n"), "{}", run.stdout);
        assert_nothing_attached();
    }
}

#[test]
fn stripped_go_keeps_register_words_and_says_so() {
    let target = target("goparams-stripped");
    // Without DWARF, N counts register words: receiver (0), path's pointer (1), its length (2).
    let run = argdist(&target, "Handle", &["--arg", "2"]);
    assert!(run.stderr.contains("has no debug information (DWARF; built with -ldflags=-s -w?)"), "{}", run.stderr);
    assert!(run.stderr.contains("--arg N counts integer register words"), "{}", run.stderr);
    assert_exact(&run, "main.(*Server).Handle", "arg2", &values(|v| (v + 500) % 37));
}

/// cparams' handle(int code, const char *path, double ratio, struct pair p, unsigned char tag,
/// struct big b, long last) returns code - tag + (p.a + b.z + last) + (int)ratio + 1.
fn c_handle_return(v: i64) -> i64 {
    3 * v - v.rem_euclid(256) + 11 * v + v / 2 + 1
}

const C_CASES: [Case; 8] = [
    ("handle", &["--arg", "code"], "handle", "code", |v| 3 * v),
    ("handle", &["--arg", "tag"], "handle", "tag", |v| v.rem_euclid(256)),
    // ratio goes to XMM0 and p to RDX+RCX, so last is in R9 and b on the stack.
    ("handle", &["--arg", "last"], "handle", "last", |v| 7 * v),
    ("handle", &["--arg", "6"], "handle", "arg6", |v| 7 * v),
    ("handle", &["--ret"], "handle", "ret", c_handle_return),
    // make returns a struct in memory: its hidden pointer takes RDI.
    ("make", &["--arg", "seed"], "make", "seed", |v| v),
    ("make", &["--arg", "s"], "make", "s", |v| v * 60),
    // The seventh integer is on the stack.
    ("seven", &["--arg", "g"], "seven", "g", |v| -11 * v),
];

#[test]
fn c_parameters_by_name_and_declared_position_are_exact() {
    let target = target("cparams");
    for (func, what, function, measured, f) in C_CASES {
        let run = argdist(&target, func, what);
        assert_exact(&run, function, measured, &values(f));
    }
}

#[test]
fn c_without_debug_information_keeps_argument_registers_and_says_so() {
    let target = target("cparams-nodebug");
    let run = argdist(&target, "seven", &["--arg", "0"]);
    assert!(run.stderr.contains("has no debug information (DWARF; stripped or built without -g)"), "{}", run.stderr);
    assert!(run.stderr.contains("--arg N counts integer argument registers"), "{}", run.stderr);
    assert_exact(&run, "seven", "arg0", &values(|v| v));
}

fn listed(binary: &std::path::Path, glob: &str) -> Vec<Value> {
    let run = probe(&["list", &binary.to_string_lossy(), glob, "--params", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `[(position, name, type, kind, location)]` of a listed function's params or results.
fn rows(function: &Value, key: &str) -> Vec<(u64, String, String, String, String)> {
    function[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {function}"))
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (p["position"].as_u64().unwrap(), s("name"), s("type"), s("kind"), s("location"))
        })
        .collect()
}

fn row(position: u64, name: &str, ty: &str, kind: &str, location: &str) -> (u64, String, String, String, String) {
    (position, name.into(), ty.into(), kind.into(), location.into())
}

#[test]
fn list_shows_declared_parameters() {
    let go = listed(&target("goparams"), "main.Mixed");
    assert_eq!(go.len(), 1);
    assert_eq!(
        rows(&go[0], "params"),
        [
            row(0, "p", "main.Point", "struct(16)", "rax+rbx"),
            row(1, "arr", "[3]int", "array[3]", "sp+8"),
            row(2, "n", "int16", "i16", "rcx"),
        ]
    );
    assert_eq!(
        rows(&go[0], "results"),
        [row(0, "ret", "string", "string", "rax+rbx"), row(1, "ret1", "int", "i64", "rcx")]
    );
    let handle = &listed(&target("goparams"), "main.(*Server).Handle")[0];
    assert_eq!(rows(handle, "params")[0], row(0, "s", "*main.Server", "pointer", "rax"));
    assert_eq!(rows(handle, "params")[4], row(4, "ratio", "float64", "f64", "xmm"));

    let c = listed(&target("cparams"), "handle");
    assert_eq!(
        rows(&c[0], "params"),
        [
            row(0, "code", "int", "i32", "rdi"),
            row(1, "path", "const char *", "pointer", "rsi"),
            row(2, "ratio", "double", "f64", "xmm"),
            row(3, "p", "struct pair", "struct(16)", "rdx+rcx"),
            row(4, "tag", "unsigned char", "u8", "r8"),
            row(5, "b", "struct big", "struct(24)", "sp+8"),
            row(6, "last", "long int", "i64", "r9"),
        ]
    );
    assert_eq!(rows(&c[0], "results"), [row(0, "ret", "int", "i32", "rax")]);

    // Stripped: the functions, no parameters, and a note saying why.
    let stripped = target("goparams-stripped");
    let run = probe(&["list", &stripped.to_string_lossy(), "main.Mixed", "--params"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("main.Mixed\n"), "{}", run.stdout);
    assert!(!run.stdout.contains("    arg"), "{}", run.stdout);
    assert!(run.stderr.contains("has no debug information (DWARF): parameters are not known"), "{}", run.stderr);
}

#[test]
fn cpp_this_comes_first_and_rust_parameters_by_name() {
    let geo = target("geo-g");
    for (what, measured) in [(["--arg", "v"], "v"), (["--arg", "1"], "arg1")] {
        assert_exact(&argdist(&geo, "Scaler::scale", &what), "geo::Scaler::scale(long)", measured, &values(|v| v));
    }
    let listed = listed(&geo, "geo::Scaler::scale(long)");
    assert_eq!(rows(&listed[0], "params")[0], row(0, "this", "const struct Scaler *", "pointer", "rdi"));

    let rust = target("rvalues-g");
    assert_exact(&argdist(&rust, "values::scale", &["--arg", "v"]), "values::scale", "v", &values(|v| v));
    assert_exact(&argdist(&rust, "values::scale", &["--ret"]), "values::scale", "ret", &values(|v| 2 * v));
}
