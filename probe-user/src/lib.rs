//! probe: how long does a function take, and what values does it see, in any running Go, C,
//! C++ or Rust program. Data flows one way: cli -> options -> resolve -> plan -> session (attach,
//! drain) -> measure (the views of each kind of measurement) -> outputs; each module imports
//! only the ones before it, and the small types all of them name live in `shared`, which
//! imports none (`cargo xtask modules` shows the imports and checks both).
pub mod arch;
pub mod calibrate;
pub mod cli;
pub mod commands;
pub mod error;
pub mod features;
pub mod filter;
pub mod histogram;
pub mod interrupt;
pub mod measure;
pub mod multi_link;
pub mod once_per_call;
pub mod options;
pub mod outputs;
pub mod plan;
pub mod process;
pub mod render;
pub mod resolve;
pub mod session;
pub mod shared;
pub mod trace;

use clap::FromArgMatches;

/// Runs the command line and exits with its code (0, 1 failure, 2 bad input).
pub fn main_with_args() {
    let parsed = cli::command().try_get_matches().and_then(|m| cli::Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version: print and exit 0
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let word = args.first().cloned().unwrap_or_default();
            let sub = cli::command().get_subcommands().any(|c| c.get_name() == word).then_some(word.as_str());
            let message = match sub.and_then(|sub| cli::usage_error::forgotten_func(&cli::command(), sub, &args[1..])) {
                Some(hint) => hint,
                None => cli::usage_error::clap_error_line(&e.render().to_string(), sub),
            };
            eprintln!("probe: {message}");
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
    session::warm_up::reap();
    if let Err(err) = result {
        let (code, message) = error::report(&err);
        eprintln!("probe: {message}");
        std::process::exit(code);
    }
}
