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
        /// Simulate the services, checks and thresholds of this configuration instead of the
        /// built-in set (`--services` is then unused).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Share of probes failing at random as a fraction (0.03 = 3 %); wins over --noise-percent.
        #[arg(long)]
        noise: Option<f64>,
        /// Months of 30 days; wins over --days.
        #[arg(long)]
        months: Option<u32>,
        /// True outages (1 minute to 4 hours) per service-month.
        #[arg(long, default_value_t = 8)]
        outages: u32,
        /// Bursts of 1-8 s where every primary probe fails, per service-month.
        #[arg(long, default_value_t = 30)]
        bursts: u32,
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
    /// Manage control-API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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
        command: DrillCommand,
    },
    /// Switch a service to its backup now (client of the HTTP API).
    Failover {
        service: String,
        /// Why: for the audit log and on-call, never shown to customers.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        public: PublicArgs,
        /// Admin only: switch even to a backup whose checks are down.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Switch a service back to its primary now (client of the HTTP API).
    Failback {
        service: String,
        /// Why: for the audit log and on-call, never shown to customers.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        public: PublicArgs,
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
        /// Why: for the audit log and on-call, never shown to customers.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        public: PublicArgs,
        /// Admin only: pin to a backup whose checks are down.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Release a pin: the automatic rules decide again (client of the HTTP API).
    Unpin {
        service: String,
        /// Why: for the audit log and on-call, never shown to customers.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        public: PublicArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Start, stop or schedule maintenance of a service (client of the HTTP API).
    Maintenance {
        #[command(subcommand)]
        command: MaintenanceCommand,
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
    /// E-mail tools.
    Email {
        #[command(subcommand)]
        command: EmailCommand,
    },
}

/// Where the daemon is and who is asking.
#[derive(clap::Args, Clone)]
struct ApiArgs {
    /// The daemon's base URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = switchboard::client::DEFAULT_URL)]
    url: String,
    /// A bearer token from `switchboard token new` (prefer the environment variable: the
    /// command line is visible to other users of the machine).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificates to verify an `https://` daemon with, instead of the public roots.
    #[arg(long, env = "SWITCHBOARD_CA_FILE")]
    ca_file: Option<PathBuf>,
}

/// Words for customers beside the internal `--reason`.
#[derive(clap::Args, Clone)]
struct PublicArgs {
    /// What customers read (status page, feeds, Statuspage, customer e-mail) instead of the
    /// templates' words alone; the reason is never shown to them.
    #[arg(long)]
    public_message: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SideArg {
    Primary,
    Backup,
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// Enter maintenance now, until `stop` or for `--duration`.
    Start {
        service: String,
        /// How long, e.g. 2h (default: until `maintenance stop`).
        #[arg(long)]
        duration: Option<String>,
        /// Why: for the audit log and on-call, never shown to customers.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        public: PublicArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End maintenance now.
    Stop {
        service: String,
        /// Why: for the audit log and on-call, never shown to customers.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        public: PublicArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Plan a one-off window; the status page lists it until it ends.
    Schedule {
        service: String,
        /// RFC 3339 (2026-12-05T02:00:00Z) or a duration from now (3h).
        #[arg(long)]
        starts_at: String,
        /// How long, e.g. 2h.
        #[arg(long)]
        duration: String,
        /// Why: for the audit log and on-call, never shown to customers.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        public: PublicArgs,
        #[command(flatten)]
        api: ApiArgs,
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
enum TokenCommand {
    /// Create a token, print it once, store only its SHA-256 in `[auth] tokens_file`.
    New {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Viewer,
    Operator,
    Admin,
}

#[derive(Subcommand)]
enum DrillCommand {
    /// Start a drill; prints its id. Exit 0 started, 1 refused, 2 usage, 3 unreachable/auth.
    Start {
        service: String,
        /// How long until the automatic revert, e.g. 10m (1s to 24h).
        #[arg(long)]
        duration: String,
        #[arg(long)]
        reason: String,
        /// Every step but the route switch and external pushes.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        ticket: Option<String>,
        #[command(flatten)]
        public: PublicArgs,
        /// Follow the drill until its report is complete (exit 1 if it failed).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a drill's steps; with --wait, follow them until the report is complete.
    Status {
        id: String,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Abort a running drill (the service reverts now).
    Abort {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        public: PublicArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Recent drills, newest first.
    List {
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
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
    /// Audit records from the daemon, oldest first (client of the HTTP API).
    List {
        /// Only automatic transitions nobody has reviewed yet.
        #[arg(long)]
        pending_review: bool,
        #[arg(long)]
        service: Option<String>,
        /// RFC 3339 or a duration ago (24h).
        #[arg(long)]
        since: Option<String>,
        /// At most this many records (1 to 10000; default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Print the API's JSON lines instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
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
                for w in c.warnings() {
                    eprintln!("warning: {w}");
                }
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
            config,
            noise,
            months,
            outages,
            bursts,
        } => {
            let noise = noise.unwrap_or(noise_percent / 100.0);
            if !(0.0..=1.0).contains(&noise) {
                eprintln!("--noise is a fraction from 0 to 1 (0.03 = 3 %), not {noise}");
                return ExitCode::from(2);
            }
            let p = switchboard::sim::Params {
                days: months.map_or(days, |m| m.saturating_mul(30)),
                services,
                seed,
                noise,
                outages,
                bursts,
                ..Default::default()
            };
            match config {
                None => {
                    let rows = switchboard::sim::simulate(&p);
                    print!("{}", switchboard::sim::report(&p, &rows));
                }
                Some(path) => {
                    let config = match Config::load(&path) {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!("{e}");
                            return ExitCode::from(2);
                        }
                    };
                    let runs = switchboard::sim::simulate_config(&p, &config);
                    let source = path.display().to_string();
                    print!("{}", switchboard::sim::report_config(&p, &source, &runs));
                }
            }
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
                // Installed before the daemon starts, so a SIGHUP never kills it (the default).
                let hangup =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
                switchboard::app::run_with(config, None, stop, move |handle| {
                    if let Some(hangup) = hangup {
                        tokio::spawn(reload_on_sighup(hangup, handle));
                    }
                })
                .await
                .map_err(|e| e.to_string())
            })
        }
        Command::Token {
            command: TokenCommand::New { name, role, config },
        } => token_new(&config, &name, role),
        Command::Status { api, json } => client(&api, |c| async move {
            let a = c.send("GET", "/api/v1/services", None).await?;
            if a.status == 200 {
                match (json, a.json()) {
                    (true, _) | (false, None) => println!("{}", a.body.trim()),
                    (false, Some(v)) => print!("{}", switchboard::client::format_services(&v)),
                }
            }
            Ok(a)
        }),
        Command::Failover {
            service,
            reason,
            public,
            force,
            api,
        } => client(&api, |c| async move {
            let body = serde_json::json!({ "reason": reason, "force": force,
                "public_message": public.public_message });
            let path = format!("/api/v1/services/{}/failover", path_segment(&service));
            let a = c.send("POST", &path, Some(&body)).await?;
            print_applied(&a);
            Ok(a)
        }),
        Command::Failback {
            service,
            reason,
            public,
            api,
        } => client(&api, |c| async move {
            let body =
                serde_json::json!({ "reason": reason, "public_message": public.public_message });
            let path = format!("/api/v1/services/{}/failback", path_segment(&service));
            let a = c.send("POST", &path, Some(&body)).await?;
            print_applied(&a);
            Ok(a)
        }),
        Command::Pin {
            service,
            side,
            until,
            reason,
            public,
            force,
            api,
        } => {
            let side = match side {
                SideArg::Primary => "primary",
                SideArg::Backup => "backup",
            };
            let body = serde_json::json!({ "side": side, "until": until, "reason": reason,
                "public_message": public.public_message, "force": force });
            service_command(&api, &service, "pin", body)
        }
        Command::Unpin {
            service,
            reason,
            public,
            api,
        } => {
            let body =
                serde_json::json!({ "reason": reason, "public_message": public.public_message });
            service_command(&api, &service, "unpin", body)
        }
        Command::Maintenance { command } => maintenance(command),
        Command::Review {
            audit_id,
            note,
            api,
        } => client(&api, |c| async move {
            let body = serde_json::json!({ "note": note });
            let a = c
                .send(
                    "POST",
                    &format!("/api/v1/audit/{audit_id}/review"),
                    Some(&body),
                )
                .await?;
            if a.status == 201 {
                println!("audit record {audit_id} reviewed");
            }
            Ok(a)
        }),
        Command::Drill { command } => drill(command),
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

/// `switchboard token new`: the token goes to stdout once; only its hash is stored.
fn token_new(config: &std::path::Path, name: &str, role: RoleArg) -> ExitCode {
    use switchboard::api::auth::{new_token, Role};
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(path) = config.auth.tokens_file.clone() else {
        eprintln!(
            "{}: no [auth] tokens_file; add one (e.g. tokens_file = \"tokens.toml\") first",
            config.source.display()
        );
        return ExitCode::from(2);
    };
    let role = match role {
        RoleArg::Viewer => Role::Viewer,
        RoleArg::Operator => Role::Operator,
        RoleArg::Admin => Role::Admin,
    };
    match new_token(&path, name, role) {
        Ok(token) => {
            println!("{token}");
            eprintln!(
                "token {name:?} ({role}) added to {}; it is shown only this once, only its SHA-256 is stored",
                path.display()
            );
            audit_token_created(&config, name, role);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard token new: {e}");
            ExitCode::from(
                if matches!(e, switchboard::api::auth::TokenError::Duplicate { .. }) {
                    1
                } else {
                    2
                },
            )
        }
    }
}

/// Records the new token (its name and role, never the token) in the audit chain, with the
/// local user as the actor. The token is already usable; a failure here is reported, not fatal.
fn audit_token_created(config: &Config, name: &str, role: switchboard::api::auth::Role) {
    use switchboard::cluster::Coordinator;
    let store = match switchboard::store::Store::open(&config.storage.path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: the token was created but not audited: {e}");
            return;
        }
    };
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let rec = switchboard::audit::NewAuditRecord {
        kind: switchboard::audit::KIND_OPERATOR_ACTION.to_string(),
        at: switchboard::clock::Timestamp::now(),
        actor: format!("cli:{user}"),
        service: None,
        reason: format!("API token {name:?} created"),
        config_version: config.version.clone(),
        node: switchboard::cluster::SingleNode::from_host()
            .node()
            .to_string(),
        detail: serde_json::json!({ "command": "token_new", "token": name, "role": role.as_str() }),
    };
    if let Err(e) = store.append_audit(&rec) {
        eprintln!("warning: the token was created but not audited: {e}");
    }
}

async fn reload_on_sighup(
    mut hangup: tokio::signal::unix::Signal,
    handle: switchboard::app::CoreHandle,
) {
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        // The core logs the outcome (and the diagnostics of an invalid file) itself.
        let _ = handle.reload("SIGHUP").await;
    }
}

/// A path segment with the characters that would change the path percent-encoded.
fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Runs one client interaction and maps its answer to the documented exit codes.
fn client<F, Fut>(api: &ApiArgs, body: F) -> ExitCode
where
    F: FnOnce(switchboard::client::Client) -> Fut,
    Fut: std::future::Future<
        Output = Result<switchboard::client::Answer, switchboard::client::ClientError>,
    >,
{
    use switchboard::client::{exit, Client};
    let c = match Client::new(&api.url, api.token.clone()).and_then(|c| match &api.ca_file {
        Some(path) => c.with_ca_file(path),
        None => Ok(c),
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(body(c)) {
        Ok(a) => {
            if !(200..300).contains(&a.status) {
                eprintln!("switchboard: {} ({})", a.error_message(), a.status);
                if a.status == 401 && api.token.is_none() {
                    eprintln!("set SWITCHBOARD_TOKEN to a token from `switchboard token new`");
                }
            }
            ExitCode::from(exit::of_status(a.status))
        }
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::from(exit::UNREACHABLE)
        }
    }
}

fn print_applied(a: &switchboard::client::Answer) {
    if a.status != 200 {
        return;
    }
    let Some(v) = a.json() else { return };
    let transitions: Vec<String> = v["transitions"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| {
                    format!(
                        "{} -> {}",
                        t["from"].as_str().unwrap_or("?"),
                        t["to"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "{}: {} (routes on {}){}",
        v["service"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?"),
        v["side"].as_str().unwrap_or("?"),
        if transitions.is_empty() {
            "; no change".to_string()
        } else {
            format!("; {}", transitions.join(", "))
        }
    );
}

/// `switchboard drill ...`.
fn drill(command: DrillCommand) -> ExitCode {
    use switchboard::client::{format_drill, Client};
    match command {
        DrillCommand::Start {
            service,
            duration,
            reason,
            dry_run,
            ticket,
            public,
            wait,
            api,
        } => {
            let mut id = None;
            let code = client(&api, |c: Client| {
                let id = &mut id;
                async move {
                    let body = serde_json::json!({
                        "service": service,
                        "mode": if dry_run { "dry_run" } else { "live" },
                        "duration": duration,
                        "reason": reason,
                        "ticket": ticket,
                        "public_message": public.public_message,
                    });
                    let a = c.send("POST", "/api/v1/drills", Some(&body)).await?;
                    if let Some(v) = a.json().filter(|_| a.status == 201) {
                        *id = v["id"].as_str().map(str::to_string);
                        if wait {
                            eprint!("{}", format_drill(&v));
                        } else {
                            print!("{}", format_drill(&v));
                        }
                    }
                    Ok(a)
                }
            });
            match (wait, id) {
                (true, Some(id)) => follow(&api, &id, false),
                (false, Some(id)) => {
                    println!("follow it with: switchboard drill status {id} --wait");
                    code
                }
                _ => code,
            }
        }
        DrillCommand::Status {
            id,
            wait,
            json,
            api,
        } => {
            if wait {
                follow(&api, &id, json)
            } else {
                client(&api, |c| async move {
                    let a = c
                        .send(
                            "GET",
                            &format!("/api/v1/drills/{}", path_segment(&id)),
                            None,
                        )
                        .await?;
                    if let Some(v) = a.json().filter(|_| a.status == 200) {
                        if json {
                            println!("{}", a.body.trim());
                        } else {
                            print!("{}", format_drill(&v));
                        }
                    }
                    Ok(a)
                })
            }
        }
        DrillCommand::Abort {
            id,
            reason,
            public,
            api,
        } => client(&api, |c| async move {
            let body = (reason.is_some() || public.public_message.is_some()).then(
                || serde_json::json!({ "reason": reason, "public_message": public.public_message }),
            );
            let path = format!("/api/v1/drills/{}/abort", path_segment(&id));
            let a = c.send("POST", &path, body.as_ref()).await?;
            print_applied(&a);
            Ok(a)
        }),
        DrillCommand::List { service, api } => client(&api, |c| async move {
            let q = service
                .map(|s| format!("?service={}", path_segment(&s)))
                .unwrap_or_default();
            let a = c.send("GET", &format!("/api/v1/drills{q}"), None).await?;
            if let Some(v) = a.json().filter(|_| a.status == 200) {
                println!(
                    "{:<34} {:<24} {:<8} {:<8} {:<26} REASON",
                    "ID", "SERVICE", "MODE", "STATUS", "STARTED"
                );
                for d in v["drills"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "{:<34} {:<24} {:<8} {:<8} {:<26} {}",
                        d["id"].as_str().unwrap_or("?"),
                        d["service"].as_str().unwrap_or("?"),
                        d["mode"].as_str().unwrap_or("?"),
                        d["status"].as_str().unwrap_or("?"),
                        d["started_at"].as_str().unwrap_or("?"),
                        d["reason"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(a)
        }),
    }
}

/// One operator command on a service (`POST /api/v1/services/{id}/{what}`), its result printed.
fn service_command(api: &ApiArgs, service: &str, what: &str, body: serde_json::Value) -> ExitCode {
    let path = format!("/api/v1/services/{}/{what}", path_segment(service));
    client(api, |c| async move {
        let a = c.send("POST", &path, Some(&body)).await?;
        print_applied(&a);
        Ok(a)
    })
}

/// `switchboard maintenance start|stop|schedule`.
fn maintenance(command: MaintenanceCommand) -> ExitCode {
    match command {
        MaintenanceCommand::Start {
            service,
            duration,
            reason,
            public,
            api,
        } => {
            let body = serde_json::json!({ "action": "start", "duration": duration,
                "reason": reason, "public_message": public.public_message });
            service_command(&api, &service, "maintenance", body)
        }
        MaintenanceCommand::Stop {
            service,
            reason,
            public,
            api,
        } => {
            let body = serde_json::json!({ "action": "stop", "reason": reason,
                "public_message": public.public_message });
            service_command(&api, &service, "maintenance", body)
        }
        MaintenanceCommand::Schedule {
            service,
            starts_at,
            duration,
            reason,
            public,
            api,
        } => client(&api, |c| async move {
            let body = serde_json::json!({ "action": "schedule", "starts_at": starts_at,
                "duration": duration, "reason": reason, "public_message": public.public_message });
            let path = format!("/api/v1/services/{}/maintenance", path_segment(&service));
            let a = c.send("POST", &path, Some(&body)).await?;
            if let Some(v) = a.json().filter(|_| a.status == 201) {
                println!(
                    "{}: maintenance window {} scheduled from {} to {}",
                    v["service"].as_str().unwrap_or("?"),
                    v["window_id"],
                    v["starts_at"].as_str().unwrap_or("?"),
                    v["ends_at"].as_str().unwrap_or("?")
                );
            }
            Ok(a)
        }),
    }
}

/// `switchboard audit list`: the daemon's audit records, one line each.
fn audit_list(
    api: &ApiArgs,
    pending_review: bool,
    service: Option<String>,
    since: Option<String>,
    limit: Option<u32>,
    json: bool,
) -> ExitCode {
    let mut query = Vec::new();
    if pending_review {
        query.push("pending_review=true".to_string());
    }
    if let Some(s) = service {
        query.push(format!("service={}", path_segment(&s)));
    }
    if let Some(s) = since {
        query.push(format!("since={}", path_segment(&s)));
    }
    if let Some(n) = limit {
        query.push(format!("limit={n}"));
    }
    let path = if query.is_empty() {
        "/api/v1/audit".to_string()
    } else {
        format!("/api/v1/audit?{}", query.join("&"))
    };
    client(api, |c| async move {
        let a = c.send("GET", &path, None).await?;
        if a.status == 200 {
            if json {
                print!("{}", a.body);
            } else {
                print!("{}", switchboard::client::format_audit(&a.body));
            }
        }
        Ok(a)
    })
}

/// Polls a drill, printing each step as it finishes, until its report is complete. Exit 0
/// pass, 1 fail or aborted, or the client exit code of a failed request.
fn follow(api: &ApiArgs, id: &str, json: bool) -> ExitCode {
    use switchboard::client::{exit, format_drill, Client};
    let c = match Client::new(&api.url, api.token.clone()).and_then(|c| match &api.ca_file {
        Some(path) => c.with_ca_file(path),
        None => Ok(c),
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let path = format!("/api/v1/drills/{}", path_segment(id));
    rt.block_on(async move {
        let mut shown = std::collections::BTreeSet::new();
        loop {
            let a = match c.send("GET", &path, None).await {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    return ExitCode::from(exit::UNREACHABLE);
                }
            };
            if a.status != 200 {
                eprintln!("switchboard: {} ({})", a.error_message(), a.status);
                return ExitCode::from(exit::of_status(a.status));
            }
            let Some(v) = a.json() else {
                eprintln!("switchboard: the daemon answered something that is not JSON");
                return ExitCode::from(exit::REFUSED);
            };
            for s in v["steps"].as_array().cloned().unwrap_or_default() {
                let name = s["name"].as_str().unwrap_or("?").to_string();
                if s["status"] != "pending" && shown.insert(name.clone()) && !json {
                    println!(
                        "{:<8} {:<22} {}",
                        s["status"].as_str().unwrap_or("?"),
                        name,
                        s["detail"].as_str().unwrap_or("")
                    );
                }
            }
            let status = v["status"].as_str().unwrap_or("running");
            if status != "running" {
                if json {
                    println!("{}", a.body.trim());
                } else {
                    print!("\n{}", format_drill(&v));
                }
                return ExitCode::from(if status == "pass" {
                    exit::OK
                } else {
                    exit::REFUSED
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
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
        match serde_json::to_value(&outcome)
            .map(|v| with_thresholds(v, check))
            .and_then(|v| serde_json::to_string_pretty(&v))
        {
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

/// Adds the check's thresholds to `probe --json`: one probe has no noise history, so its
/// effective failure threshold is the configured one; adaptive confirmation may raise it up
/// to `failure_threshold_max` in the running daemon (`switchboard status` shows it live).
fn with_thresholds(
    mut v: serde_json::Value,
    check: &switchboard::config::CheckSpec,
) -> serde_json::Value {
    let t = check.thresholds();
    if let Some(o) = v.as_object_mut() {
        o.insert("confirmation".into(), check.confirmation.as_str().into());
        o.insert("failure_threshold".into(), check.failure_threshold.into());
        o.insert(
            "effective_failure_threshold".into(),
            check.failure_threshold.max(1).into(),
        );
        o.insert("failure_threshold_max".into(), t.max_failures().into());
        o.insert("success_threshold".into(), check.success_threshold.into());
    }
    v
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
        // `list` asks the daemon rather than reading the database file.
        AuditCommand::List {
            pending_review,
            service,
            since,
            limit,
            json,
            api,
        } => {
            return audit_list(
                api,
                *pending_review,
                service.clone(),
                since.clone(),
                *limit,
                *json,
            )
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
        // Invariant: `list` returned above, before any database was opened.
        AuditCommand::List { .. } => unreachable!("audit list is answered by the daemon"),
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
