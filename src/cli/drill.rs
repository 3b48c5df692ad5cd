//! `switchboard drill start|status|abort|list` (clients of the HTTP API), and following a
//! drill step by step until its report is complete.

use super::client::{call, connect, path_segment, print_applied, ApiArgs, PublicArgs, Request};
use clap::Subcommand;
use serde_json::json;
use std::process::ExitCode;
use switchboard::client::{exit, format_drill};

#[derive(Subcommand)]
pub enum DrillCommand {
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

pub fn run(command: DrillCommand) -> ExitCode {
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
            let body = json!({
                "service": service,
                "mode": if dry_run { "dry_run" } else { "live" },
                "duration": duration,
                "reason": reason,
                "ticket": ticket,
                "public_message": public.message(),
            });
            let mut id = None;
            let request = Request::post("/api/v1/drills".into(), Some(body));
            let code = call(&api, request, 201, |a| {
                if let Some(v) = a.json() {
                    id = v["id"].as_str().map(str::to_string);
                    // With --wait the report follows on stdout; the start goes to stderr.
                    if wait {
                        eprint!("{}", format_drill(&v));
                    } else {
                        print!("{}", format_drill(&v));
                    }
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
                return follow(&api, &id, json);
            }
            let path = format!("/api/v1/drills/{}", path_segment(&id));
            call(&api, Request::get(path), 200, |a| {
                if let Some(v) = a.json() {
                    if json {
                        println!("{}", a.body.trim());
                    } else {
                        print!("{}", format_drill(&v));
                    }
                }
            })
        }
        DrillCommand::Abort {
            id,
            reason,
            public,
            api,
        } => {
            let body = (reason.is_some() || public.message().is_some())
                .then(|| json!({ "reason": reason, "public_message": public.message() }));
            let path = format!("/api/v1/drills/{}/abort", path_segment(&id));
            call(&api, Request::post(path, body), 200, print_applied)
        }
        DrillCommand::List { service, api } => {
            let q = service
                .map(|s| format!("?service={}", path_segment(&s)))
                .unwrap_or_default();
            call(&api, Request::get(format!("/api/v1/drills{q}")), 200, |a| {
                let Some(v) = a.json() else { return };
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
            })
        }
    }
}

/// Polls a drill, printing each step as it finishes, until its report is complete. Exit 0
/// pass, 1 fail or aborted, or the client exit code of a failed request.
fn follow(api: &ApiArgs, id: &str, json: bool) -> ExitCode {
    let (c, rt) = match connect(api) {
        Ok(c) => c,
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
