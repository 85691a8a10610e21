//! `probe completions SHELL` and `probe man [COMMAND]`: generated from the clap definitions,
//! checked with the tools that consume them (bash, groff).
use probe_tests::*;
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
    for option in ["--func <FUNC>", "--unit <UNIT>", "--serve <ADDR>", "-c, --command <CMD ARGS>", "-d, --duration <SECS>"] {
        assert!(latency.contains(option), "probe-latency(1) lacks {option}:\n{latency}");
    }
    let argdist = rendered_man(&["man", "argdist"]);
    assert!(argdist.contains("--arg <N>") && argdist.contains("--serve <ADDR>"), "{argdist}");
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
