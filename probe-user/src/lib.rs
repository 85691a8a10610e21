//! probe: how long does a function take, and what values does it see, in any running Go, C,
//! C++ or Rust program. Data flows one way: cli -> options, target -> plan -> session (attach,
//! drain) -> outputs, each kind of measurement (measure/) owning its map, programs and views.
pub mod abi;
pub mod arch;
pub mod calibrate;
pub mod cli;
pub mod commands;
pub mod disasm;
pub mod disasm_arm64;
pub mod error;
pub mod features;
pub mod filter;
pub mod histogram;
pub mod interrupt;
pub mod measure;
pub mod multi_link;
pub mod options;
pub mod outputs;
pub mod plan;
pub mod process;
pub mod render;
pub mod session;
pub mod target;
pub mod trace;

use clap::{CommandFactory, Parser};

/// Runs the command line and exits with its code (0, 1 failure, 2 bad input).
pub fn main_with_args() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version: print and exit 0
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            let word = std::env::args().nth(1).unwrap_or_default();
            let sub = cli::Cli::command().get_subcommands().any(|c| c.get_name() == word).then_some(word.as_str());
            eprintln!("probe: {}", error::clap_error_line(&e.render().to_string(), sub));
            std::process::exit(error::EXIT_USAGE);
        }
    };
    let result = match &cli.command {
        cli::Command::Argdist(args) => commands::argdist::run(args),
        cli::Command::Latency(args) => commands::latency::run(args),
        cli::Command::List(args) => commands::list::run(args),
        cli::Command::Doctor => commands::doctor::run(),
        cli::Command::Completions(args) => commands::manual::completions(args),
        cli::Command::Man(args) => commands::manual::man(args),
    };
    if let Err(err) = result {
        let (code, message) = error::report(&err);
        eprintln!("probe: {message}");
        std::process::exit(code);
    }
}
