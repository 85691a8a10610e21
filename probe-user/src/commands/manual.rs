//! `probe completions SHELL` and `probe man [COMMAND]`: shell completion scripts and man pages
//! generated from the clap definitions, so they never disagree with `--help`.
use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::error::user;
use anyhow::Result;
use clap::CommandFactory;
use std::io::Write;

pub fn completions(args: &CompletionsArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut Cli::command(), "probe", &mut out);
    out.flush()?;
    Ok(())
}

/// The page of `probe`, or of one command as `probe-COMMAND(1)`, in roff on stdout.
pub fn man(args: &ManArgs) -> Result<()> {
    let probe = Cli::command();
    let page = match &args.command {
        None => probe,
        Some(name) => {
            let names: Vec<&str> = probe.get_subcommands().map(|c| c.get_name()).collect();
            let Some(command) = probe.find_subcommand(name) else {
                return Err(user(format!("man {name}: no such command; one of: {}", names.join(", "))));
            };
            // clap names are &'static without its `string` feature; this runs once per process.
            command.clone().name(&*format!("probe-{name}").leak())
        }
    };
    let sections = Sections { subcommands: page.has_subcommands(), version: page.get_version().is_some() };
    let examples = examples(args.command.as_deref());
    let mut out = std::io::stdout().lock();
    render_with_examples(clap_mangen::Man::new(page), examples, sections, &mut out)?;
    out.flush()?;
    Ok(())
}

/// An example: what it does, and the command line.
type Example = (&'static str, &'static str);

const SEED_ARGDIST: Example = (
    "The seed's value distribution: every argument of main.ToString, as SystemTap's @hist_log",
    "probe argdist --func ToString --arg 0 -c './tostring -rounds 1'",
);
const SEED_LATENCY: Example = (
    "The seed's latency without uretprobes (they crash Go programs): RET probes instead",
    "probe latency --func main.UsingSubstring -c './regex -seconds 5'",
);
const LIBRARY: Example = (
    "A library function, named as BCC (c:malloc) or bpftrace (libc:malloc) would, in one process",
    "probe argdist --func c:malloc --arg 0 -p $(pgrep -o sqlite3)",
);
const GLOB: Example = (
    "Every function matching a glob, one table each, for 10 seconds",
    "probe latency --func 'main.Using*' -d 10 ./regex",
);
const GO_METHOD: Example = (
    "A Go method with a pointer receiver, in every process running the file",
    "probe latency --func '(*targetScraper).scrape' /usr/bin/prometheus",
);
const SERVE: Example = (
    "Serve the totals to Prometheus while tracing",
    "probe latency --func Sleep2ms --serve 127.0.0.1:9464 -c './latency -mode sleep'",
);
const JSON_FILE: Example = (
    "JSON tables into a file (the command's own output stays on the terminal)",
    "probe latency --func main.UsingSubstring --json -o regex.json -c './regex -seconds 5'",
);
const LIST: Example = ("The functions of a library, and of a stripped Go program", "probe list libc.so.6 'mall*'");
const LIST_GO: Example = ("", "probe list /usr/bin/prometheus 'main.*'");

/// The EXAMPLES of a page: `probe(1)` shows the main scenarios, each command its own.
fn examples(command: Option<&str>) -> &'static [Example] {
    match command {
        None => &[SEED_ARGDIST, SEED_LATENCY, LIBRARY, GLOB, SERVE, LIST],
        Some("latency") => &[SEED_LATENCY, GLOB, GO_METHOD, LIBRARY, SERVE, JSON_FILE],
        Some("argdist") => &[SEED_ARGDIST, LIBRARY, SERVE],
        Some("list") => &[LIST, LIST_GO],
        Some(_) => &[],
    }
}

/// Text for roff: backslashes doubled, `-` as a real minus (so the commands can be copied),
/// and no line starting with a control character.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Which of clap_mangen's optional sections a page has.
struct Sections {
    subcommands: bool,
    version: bool,
}

/// clap_mangen's sections in its order, with EXAMPLES before VERSION.
fn render_with_examples(
    man: clap_mangen::Man,
    examples: &[Example],
    sections: Sections,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    if sections.subcommands {
        man.render_subcommands_section(out)?;
    }
    if !examples.is_empty() {
        writeln!(out, ".SH EXAMPLES")?;
        for (what, line) in examples {
            if !what.is_empty() {
                writeln!(out, ".PP\n{}", roff_text(what))?;
            }
            writeln!(out, ".PP\n.RS 4\n.nf\n{}\n.fi\n.RE", roff_text(line))?;
        }
    }
    if sections.version {
        man.render_version_section(out)?;
    }
    Ok(())
}
