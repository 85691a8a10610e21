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
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(page).render(&mut out)?;
    out.flush()?;
    Ok(())
}
