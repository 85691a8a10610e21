//! probe: how long does a function take, and what values does it see, in any running Go, C,
//! C++ or Rust program. Data flows one way: cli -> target -> plan -> session -> render.
mod abi;
mod cli;
mod commands;
mod disasm;
mod error;
mod histogram;
mod plan;
mod process;
mod render;
mod session;
mod target;
mod trace;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let result = match &cli.command {
        cli::Command::Argdist(args) => commands::argdist::run(args),
        cli::Command::Latency(args) => commands::latency::run(args),
        cli::Command::List(args) => commands::list::run(args),
    };
    if let Err(err) = result {
        let (code, message) = error::report(&err);
        eprintln!("probe: {message}");
        std::process::exit(code);
    }
}
