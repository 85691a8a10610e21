//! `probe completions SHELL` and `probe man [COMMAND]`: shell completion scripts and man pages
//! generated from the clap definitions, so they never disagree with `--help`.
use crate::cli::{examples, Cli, CompletionsArgs, Example, ManArgs};
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
