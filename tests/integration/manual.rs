//! `probe completions SHELL` and `probe man [COMMAND]`: generated from the clap definitions,
//! checked with the tools that consume them (bash, groff).
use crate::support::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `program args` with `input` on stdin; returns stdout, asserting success.
fn pipe(program: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup.sh installs it)"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{program} {args:?} warns: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// What bash's completion function offers for `words` (the last one being completed).
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let words_list = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
    let (cur, prev) = (words[words.len() - 1], words[words.len() - 2]);
    let program = format!(
        "eval \"$(cat)\"\nCOMP_WORDS=({words_list}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}\n\
         _probe probe '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words.len() - 1,
        words.join(" ")
    );
    pipe("bash", &["-c", &program], script).lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_is_valid_and_completes_commands_and_options() {
    let run = probe(&["completions", "bash"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    pipe("bash", &["-n"], &run.stdout);
    assert_eq!(bash_completes(&run.stdout, &["probe", "la"]), ["latency"]);
    assert_eq!(bash_completes(&run.stdout, &["probe", "ar"]), ["argdist"]);
    assert_eq!(bash_completes(&run.stdout, &["probe", "latency", "--se"]), ["--serve"]);
    assert_eq!(bash_completes(&run.stdout, &["probe", "argdist", "--re"]), ["--ret"]);
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    for shell in ["zsh", "fish"] {
        let run = probe(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        for word in ["latency", "argdist", "list", "serve", "func"] {
            assert!(run.stdout.contains(word), "{shell} script lacks {word}");
        }
    }
}

/// The page rendered as a terminal shows it, without bold or underline escapes.
fn rendered_man(args: &[&str]) -> String {
    let run = probe(args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    pipe("groff", &["-man", "-Tutf8", "-P-cbou", "-ww"], &run.stdout)
}

#[test]
fn man_pages_render_with_groff_and_show_the_options() {
    let page = rendered_man(&["man"]);
    assert!(page.starts_with("probe(1)"), "{page}");
    for command in ["latency", "argdist", "list", "completions", "man"] {
        assert!(page.contains(&format!("\n       probe-{command}(1)\n")), "probe(1) lists {command}:\n{page}");
    }
    let latency = rendered_man(&["man", "latency"]);
    assert!(latency.starts_with("probe-latency(1)"), "{latency}");
    for option in
        ["--func <FUNC>", "--unit <UNIT>", "--serve <ADDR>", "-c, --command <CMD ARGS>", "-d, --duration <SECS>"]
    {
        assert!(latency.contains(option), "probe-latency(1) lacks {option}:\n{latency}");
    }
    let argdist = rendered_man(&["man", "argdist"]);
    assert!(argdist.contains("--arg <N|NAME>") && argdist.contains("--serve <ADDR>"), "{argdist}");
}

#[test]
fn man_page_of_an_unknown_command_is_bad_input() {
    let run = probe(&["man", "nosuch"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "probe: man nosuch: no such command; one of: latency, argdist, list, doctor, completions, man\n"
    );
}

/// `--func` documents every way of naming a function, in --help and in the man pages.
#[test]
fn help_and_man_pages_document_the_forms_of_func() {
    let forms = [
        "LIB:FUNC",
        "c:malloc",
        "libc:malloc",
        "libsqlite3:sqlite3_step",
        "(*targetScraper).scrape",
        "`(*T)` is literal",
        "Glob on the whole name",
        "a literal *",
        "unique suffix",
    ];
    for command in ["latency", "argdist"] {
        let help = probe(&[command, "--help"]);
        assert_eq!(help.code, 0, "{}", help.stderr);
        // Without hyphenation, so names stay whole when lines are filled.
        let roff = probe(&["man", command]).stdout;
        let page = pipe("groff", &["-man", "-Tutf8", "-P-cbou", "-ww", "-rHY=0"], &roff);
        for form in forms {
            assert!(help.stdout.contains(form), "probe {command} --help lacks {form}:\n{}", help.stdout);
            // The page fills lines: compare with runs of spaces squeezed.
            let squeezed = page.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(squeezed.contains(form), "probe-{command}(1) lacks {form}:\n{page}");
        }
    }
}

/// argdist always refuses --hdr-log (its values can be negative): its help does not offer it,
/// latency's does; given anyway, it is still refused with the reason.
#[test]
fn argdist_help_does_not_offer_hdr_log() {
    let argdist = probe(&["argdist", "--help"]);
    assert!(!argdist.stdout.contains("hdr-log"), "{}", argdist.stdout);
    assert!(!rendered_man(&["man", "argdist"]).contains("hdr-log"));
    assert!(probe(&["latency", "--help"]).stdout.contains("--hdr-log <FILE>"));
    assert!(rendered_man(&["man", "latency"]).contains("--hdr-log <FILE>"));
}

/// The pages end with EXAMPLES: the seed's two scenarios, a library function, a glob, --serve.
#[test]
fn man_pages_have_examples() {
    let page = rendered_man(&["man"]);
    let examples = &page[page.find("\nEXAMPLES\n").expect(&page)..];
    for line in [
        "probe argdist --func ToString --arg 0 -c './tostring -rounds 1'",
        "probe latency --func main.UsingSubstring -c './regex -seconds 5'",
        "probe argdist --func c:malloc --arg 0 -p $(pgrep -o sqlite3)",
        "probe latency --func 'main.Using*' -d 10 ./regex",
        "probe latency --func Sleep2ms --serve 127.0.0.1:9464 -c './latency -mode sleep'",
    ] {
        assert!(examples.contains(&format!("\n           {line}\n")), "probe(1) EXAMPLES lack {line}:\n{examples}");
    }
    for command in ["latency", "argdist", "list"] {
        let page = rendered_man(&["man", command]);
        assert!(page.contains("\nEXAMPLES\n"), "probe-{command}(1) has no EXAMPLES:\n{page}");
    }
}
