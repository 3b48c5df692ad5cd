//! The command line: clap's definition of every command, and the dispatch to one file per family.
//!
//! `run.rs` (run, check, probe and the daemon's runtime), `demo.rs`, `simulate.rs`,
//! `token.rs`, `audit.rs` (verify, export, config, diff and bundle read the database; `keygen`
//! writes a key file; `list` asks the daemon),
//! `email.rs`, and the clients of the HTTP API: `client.rs` (one request, its answer
//! printed, its status mapped to the exit code, written once for every command) and
//! `drill.rs`. Exit codes: 0 success, 1 failure or refusal, 2 usage or config error, 3 the
//! daemon unreachable or the caller not authorised (`switchboard::client::exit`).

mod audit;
mod client;
mod demo;
mod drill;
mod email;
mod run;
mod simulate;
mod token;

use clap::{Parser, Subcommand};
use client::{ApiArgs, SideArg, Why};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchboard::config::Config;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Keeps customer-facing support channels reachable"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
    },
    /// Run the daemon against a simulated support site with a scripted outage (offline).
    Demo {
        /// Three nodes on a local three-member etcd (Debian's etcd-server): the leader is
        /// killed during the outage and a follower takes over.
        #[arg(long)]
        cluster: bool,
        /// With --cluster: stop after this many cycles (default: repeat until Ctrl-C).
        #[arg(long, requires = "cluster", value_parser = clap::value_parser!(u32).range(1..))]
        cycles: Option<u32>,
        /// With --cluster: the etcd server binary (default: etcd on the PATH, else /usr/bin/etcd).
        #[arg(long, requires = "cluster")]
        etcd: Option<PathBuf>,
    },
    /// Validate the configuration: exit 0 when valid, 1 with `file:line: message` lines when not.
    Check {
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
    },
    /// Drive the real decision core over simulated months and compare it with a plain
    /// "N consecutive failures" policy on the same probe data.
    Simulate(simulate::Options),
    /// Run one check once: exit 0 on success, 1 on failure, 2 on a usage or config error.
    Probe {
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
        /// The check's name.
        check: String,
        /// Print one JSON object instead of the human-readable report.
        #[arg(long)]
        json: bool,
    },
    /// Check or export the tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Manage control-API tokens.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Every service's state, side and holds (client of the HTTP API).
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Start, follow, abort and list drills (client of the HTTP API).
    Drill {
        #[command(subcommand)]
        command: drill::DrillCommand,
    },
    /// Switch a service to its backup now (client of the HTTP API).
    Failover {
        service: String,
        #[command(flatten)]
        why: Why,
        /// Admin only: switch even to a backup whose checks are down.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Switch a service back to its primary now (client of the HTTP API).
    Failback {
        service: String,
        #[command(flatten)]
        why: Why,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Hold a service's routes on one side, whatever its checks say (client of the HTTP API).
    Pin {
        service: String,
        #[arg(long, value_enum)]
        side: SideArg,
        /// When the pin ends by itself: RFC 3339 (2026-12-01T18:00:00Z) or a duration from now (2h).
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        why: Why,
        /// Admin only: pin to a backup whose checks are down.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Release a pin: the automatic rules decide again (client of the HTTP API).
    Unpin {
        service: String,
        #[command(flatten)]
        why: Why,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Start, stop or schedule maintenance of a service (client of the HTTP API).
    Maintenance {
        #[command(subcommand)]
        command: client::MaintenanceCommand,
    },
    /// Acknowledge an automatic transition's audit record with a note (client of the HTTP API).
    Review {
        /// The audit record's id (`switchboard audit list --pending-review`).
        audit_id: i64,
        #[arg(long)]
        note: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Report that a job ran, to its heartbeat check (client of the HTTP API; the token is
    /// the check's own, from SWITCHBOARD_HEARTBEAT_TOKEN).
    Heartbeat {
        /// The heartbeat check's name.
        check: String,
        /// The job ran and failed: the check fails with `--message`.
        #[arg(long)]
        down: bool,
        /// What the job says (at most 500 characters), shown with the check's outcome.
        #[arg(long)]
        message: Option<String>,
        #[command(flatten)]
        api: client::HeartbeatArgs,
    },
    /// E-mail tools.
    Email {
        #[command(subcommand)]
        command: email::EmailCommand,
    },
}

impl Command {
    /// Runs the command and returns its exit code.
    pub fn run(self) -> ExitCode {
        match self {
            Command::Run { config } => run::run(&config),
            Command::Demo {
                cluster,
                cycles,
                etcd,
            } => demo::run(cluster.then_some(switchboard::demo::cluster::Options { cycles, etcd })),
            Command::Check { config } => run::check(&config),
            Command::Simulate(options) => simulate::run(options),
            Command::Probe {
                config,
                check,
                json,
            } => run::probe(&config, &check, json),
            Command::Audit { command } => audit::run(command),
            Command::Token { command } => token::run(command),
            Command::Status { api, json } => client::status(&api, json),
            Command::Drill { command } => drill::run(command),
            Command::Failover {
                service,
                why,
                force,
                api,
            } => client::failover(&api, &service, &why, force),
            Command::Failback { service, why, api } => client::failback(&api, &service, &why),
            Command::Pin {
                service,
                side,
                until,
                why,
                force,
                api,
            } => client::pin(&api, &service, side, until, &why, force),
            Command::Unpin { service, why, api } => client::unpin(&api, &service, &why),
            Command::Maintenance { command } => client::maintenance(command),
            Command::Review {
                audit_id,
                note,
                api,
            } => client::review(&api, audit_id, &note),
            Command::Heartbeat {
                check,
                down,
                message,
                api,
            } => client::heartbeat(&api, &check, down, message),
            Command::Email { command } => email::run(command),
        }
    }
}

/// Loads the configuration for a command, printing the diagnostics and answering `code`
/// when it is invalid (commands differ: 1 where the config is the subject, 2 where it is input).
fn load_config(path: &Path, code: u8) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(code)
    })
}

/// A multi-threaded tokio runtime for one command; exit code 2 when it cannot start.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::from(2)
        })
}
