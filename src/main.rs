//! The `switchboard` binary: parses the command line, loads config, runs, maps errors to exit codes.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard::config::Config;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Keeps customer-facing support channels reachable"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
    },
    /// Run the daemon against a simulated support site with a scripted outage (offline).
    Demo,
    /// Validate the configuration: exit 0 when valid, 1 with `file:line: message` lines when not.
    Check {
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
    },
    /// Drive the real decision core over simulated months and compare it with a plain
    /// "N consecutive failures" policy on the same probe data.
    Simulate {
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, default_value_t = 4)]
        services: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of probes failing at random, in percent.
        #[arg(long, default_value_t = 3.0)]
        noise_percent: f64,
    },
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
        command: AuditCommand,
    },
    /// E-mail tools.
    Email {
        #[command(subcommand)]
        command: EmailCommand,
    },
}

#[derive(Subcommand)]
enum EmailCommand {
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

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain: exit 0 when intact, 1 naming the first bad record, 2 when the
    /// database cannot be read.
    Verify {
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Read this database file instead of `[storage] path` (e.g. a copy handed to an auditor).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Print every record, hash and prev_hash included, one per line (JSON Lines) or row (CSV).
    Export {
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Read this database file instead of `[storage] path` (e.g. a copy handed to an auditor).
        #[arg(long)]
        db: Option<PathBuf>,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only records at or after this time: RFC 3339 (2026-11-28T17:00:00Z) or a duration ago (24h, "7d ago").
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Jsonl,
    Csv,
}

/// `switchboard email test`: one message through the real transport, the reply printed.
fn email_test(config: &std::path::Path, to: &str) -> ExitCode {
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!("{}", c.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("{} problem(s) found", e.diagnostics.len());
                ExitCode::from(1)
            }
        },
        Command::Probe {
            config,
            check,
            json,
        } => probe(&config, &check, json),
        Command::Email {
            command: EmailCommand::Test { config, to },
        } => email_test(&config, &to),
        Command::Simulate {
            days,
            services,
            seed,
            noise_percent,
        } => {
            let p = switchboard::sim::Params {
                days,
                services,
                seed,
                noise: noise_percent / 100.0,
                ..Default::default()
            };
            let rows = switchboard::sim::simulate(&p);
            print!("{}", switchboard::sim::report(&p, &rows));
            ExitCode::SUCCESS
        }
        Command::Run { config } => {
            init_logging(false);
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            daemon(|stop| async move {
                switchboard::app::run(config, None, stop)
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Command::Audit { command } => audit(command),
        Command::Demo => {
            init_logging(true);
            daemon(|stop| async move {
                switchboard::demo::run(stop)
                    .await
                    .map_err(|e| e.to_string())
            })
        }
    }
}

fn probe(config: &std::path::Path, name: &str, json: bool) -> ExitCode {
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(check) = config.check(name) else {
        let known: Vec<&str> = config.checks().map(|c| c.name.as_str()).collect();
        eprintln!(
            "no check named {name:?}; known checks: {}",
            known.join(", ")
        );
        return ExitCode::from(2);
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = rt.block_on(switchboard::probe::run(check));
    if json {
        match serde_json::to_string_pretty(&outcome) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cannot encode outcome: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", switchboard::probe::report::human(&outcome));
    }
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `switchboard audit`: reads the database read-only, so it can run beside the daemon and
/// never changes the evidence it examines.
fn audit(command: AuditCommand) -> ExitCode {
    use switchboard::audit::{self, Format, Verdict};
    use switchboard::store::Store;
    let (config, db) = match &command {
        AuditCommand::Verify { config, db } | AuditCommand::Export { config, db, .. } => {
            (config, db)
        }
    };
    let path = match db {
        Some(p) => p.clone(),
        None => match Config::load(config) {
            Ok(c) => c.storage.path.clone(),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
    };
    let store = match Store::open_read_only(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard audit: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        AuditCommand::Verify { .. } => match store.verify_audit() {
            Ok(v @ Verdict::Intact { .. }) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Ok(v @ Verdict::Broken(_)) => {
                eprintln!("{v}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("switchboard audit: {}: {e}", path.display());
                ExitCode::from(2)
            }
        },
        AuditCommand::Export { format, since, .. } => {
            let since = match since
                .map(|s| audit::parse_since(&s, switchboard::clock::Timestamp::now()))
                .transpose()
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("switchboard audit export: {e}");
                    return ExitCode::from(2);
                }
            };
            let rows = match store.audit_rows(since) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("switchboard audit: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            };
            let mut records = Vec::with_capacity(rows.len());
            for row in rows {
                match row {
                    Ok(r) => records.push(r),
                    // Exporting around a damaged record would hand the auditor a log with a
                    // silent hole; refuse and point at `verify`.
                    Err(u) => {
                        eprintln!(
                            "switchboard audit export: record {} cannot be read: {}; run `switchboard audit verify`",
                            u.id, u.problem
                        );
                        return ExitCode::from(1);
                    }
                }
            }
            let format = match format {
                ExportFormat::Jsonl => Format::Jsonl,
                ExportFormat::Csv => Format::Csv,
            };
            print!("{}", audit::export(&records, format));
            ExitCode::SUCCESS
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::from(2)
        })
}

/// Runs `body` on a runtime with a shutdown signal that turns true on Ctrl-C or SIGTERM.
fn daemon<F, Fut>(body: F) -> ExitCode
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
        match body(rx).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("switchboard: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging(demo: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,hyper=warn,lettre=warn"));
    // Logs go to stderr, as a daemon's should; stdout stays for command output.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if demo {
        builder
            .with_timer(Elapsed(std::time::Instant::now()))
            .init();
    } else {
        builder.init();
    }
}

/// Demo log times: seconds since start, to a tenth, easy to follow against the narration.
struct Elapsed(std::time::Instant);

impl tracing_subscriber::fmt::time::FormatTime for Elapsed {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{:6.1}s", self.0.elapsed().as_secs_f64())
    }
}
