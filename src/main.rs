//! The `switchboard` binary: parses the command line and runs the command; `cli/` holds one
//! file per command family and maps every outcome to the documented exit codes.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    cli::Cli::parse().command.run()
}
