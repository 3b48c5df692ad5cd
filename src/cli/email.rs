//! `switchboard email test`: one message through the configured transport, the reply printed.

use super::load_config;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum EmailCommand {
    /// Send a test message through the configured transport (primary relay, then backup)
    /// and print the server's answer; exit 1 when it was not accepted.
    Test {
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Recipient of the test message.
        #[arg(long)]
        to: String,
    },
}

pub fn run(command: EmailCommand) -> ExitCode {
    match command {
        EmailCommand::Test { config, to } => test(&config, &to),
    }
}

/// Sends the test message through the real transport (primary relay, then backup).
fn test(config: &Path, to: &str) -> ExitCode {
    let config = match load_config(config, 1) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mailer = match switchboard::announce::Mailer::from_config(&config.email) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("email test: {e}");
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("email test: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(mailer.send_test(to)) {
        Ok(reply) => {
            println!("{reply}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("email test to {to} via {} failed: {e}", mailer.describe());
            ExitCode::from(1)
        }
    }
}
