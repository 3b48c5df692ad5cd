//! The clients of the HTTP API: `status`, `failover`, `failback`, `pin`, `unpin`,
//! `maintenance ...`, `review` and `audit list`, over one request helper.
//!
//! Every command has the same shape: build a request, send it, print the answer when it has
//! the expected status, and map the status to the exit code. [`call`] does all but the first
//! and the printing, so a new command is its flags, its request and its output.

use super::runtime;
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard::client::{exit, format_audit, format_services, Answer, Client};

/// Where the daemon is and who is asking.
#[derive(clap::Args, Clone)]
pub struct ApiArgs {
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
pub struct PublicArgs {
    /// What customers read (status page, feeds, Statuspage, customer e-mail) instead of the
    /// templates' words alone; the reason is never shown to them.
    #[arg(long)]
    public_message: Option<String>,
}

impl PublicArgs {
    pub(super) fn message(&self) -> Option<&str> {
        self.public_message.as_deref()
    }
}

/// Why an operator acts (internal) and the words customers read instead: every command
/// that changes a service's routes or state takes both.
#[derive(clap::Args, Clone)]
pub struct Why {
    /// Why: for the audit log and on-call, never shown to customers.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    public: PublicArgs,
}

impl Why {
    /// A request body: `reason` and `public_message` beside the command's own `fields`.
    fn body(&self, fields: Value) -> Value {
        let mut body = json!({ "reason": self.reason, "public_message": self.public.message() });
        if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        body
    }
}

/// `--side`: clap's value names and the API's `side` are both the snake_case names.
#[derive(Clone, Copy, ValueEnum, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SideArg {
    Primary,
    Backup,
}

#[derive(Subcommand)]
pub enum MaintenanceCommand {
    /// Enter maintenance now, until `stop` or for `--duration`.
    Start {
        service: String,
        /// How long, e.g. 2h (default: until `maintenance stop`).
        #[arg(long)]
        duration: Option<String>,
        #[command(flatten)]
        why: Why,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End maintenance now.
    Stop {
        service: String,
        #[command(flatten)]
        why: Why,
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
        #[command(flatten)]
        why: Why,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// One request to the daemon's API.
pub(super) struct Request {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

impl Request {
    pub(super) fn get(path: String) -> Request {
        Request {
            method: "GET",
            path,
            body: None,
        }
    }

    pub(super) fn post(path: String, body: Option<Value>) -> Request {
        Request {
            method: "POST",
            path,
            body,
        }
    }
}

/// A client for `api` and a runtime to drive it: exit 2 (usage) for a bad URL or CA file.
pub(super) fn connect(api: &ApiArgs) -> Result<(Client, tokio::runtime::Runtime), ExitCode> {
    let client = Client::new(&api.url, api.token.clone())
        .and_then(|c| match &api.ca_file {
            Some(path) => c.with_ca_file(path),
            None => Ok(c),
        })
        .map_err(|e| {
            eprintln!("switchboard: {e}");
            ExitCode::from(exit::USAGE)
        })?;
    Ok((client, runtime()?))
}

/// Sends `request`, hands the answer to `on_ok` when its status is `ok`, and maps the status
/// to the documented exit code; any other status's error is printed (with a hint when the
/// daemon wants a token and none was given), an unreachable daemon is exit 3.
pub(super) fn call(
    api: &ApiArgs,
    request: Request,
    ok: u16,
    on_ok: impl FnOnce(&Answer),
) -> ExitCode {
    let (client, rt) = match connect(api) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let answer = rt.block_on(client.send(request.method, &request.path, request.body.as_ref()));
    match answer {
        Ok(a) => {
            if a.status == ok {
                on_ok(&a);
            }
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

/// A path segment with the characters that would change the path percent-encoded.
pub(super) fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// `switchboard status`: the services table, or the API's JSON with `--json`.
pub fn status(api: &ApiArgs, json: bool) -> ExitCode {
    let code = call(
        api,
        Request::get("/api/v1/services".into()),
        200,
        |a| match (json, a.json()) {
            (true, _) | (false, None) => println!("{}", a.body.trim()),
            (false, Some(v)) => print!("{}", format_services(&v)),
        },
    );
    // In cluster mode, the cluster below the services (a single node answers 404: nothing).
    if code == ExitCode::SUCCESS && !json {
        if let Ok((client, rt)) = connect(api) {
            if let Ok(a) = rt.block_on(client.send("GET", "/api/v1/cluster", None)) {
                if let (200, Some(v)) = (a.status, a.json()) {
                    print!("{}", switchboard::client::format_cluster(&v));
                }
            }
        }
    }
    code
}

/// One operator command on a service (`POST /api/v1/services/{id}/{what}`), its result printed.
fn service_command(api: &ApiArgs, service: &str, what: &str, body: Value) -> ExitCode {
    let path = format!("/api/v1/services/{}/{what}", path_segment(service));
    call(api, Request::post(path, Some(body)), 200, print_applied)
}

pub fn failover(api: &ApiArgs, service: &str, why: &Why, force: bool) -> ExitCode {
    service_command(
        api,
        service,
        "failover",
        why.body(json!({ "force": force })),
    )
}

pub fn failback(api: &ApiArgs, service: &str, why: &Why) -> ExitCode {
    service_command(api, service, "failback", why.body(json!({})))
}

pub fn pin(
    api: &ApiArgs,
    service: &str,
    side: SideArg,
    until: Option<String>,
    why: &Why,
    force: bool,
) -> ExitCode {
    let side: &str = side.into();
    let body = why.body(json!({ "side": side, "until": until, "force": force }));
    service_command(api, service, "pin", body)
}

pub fn unpin(api: &ApiArgs, service: &str, why: &Why) -> ExitCode {
    service_command(api, service, "unpin", why.body(json!({})))
}

/// `switchboard maintenance start|stop|schedule`.
pub fn maintenance(command: MaintenanceCommand) -> ExitCode {
    match command {
        MaintenanceCommand::Start {
            service,
            duration,
            why,
            api,
        } => {
            let body = why.body(json!({ "action": "start", "duration": duration }));
            service_command(&api, &service, "maintenance", body)
        }
        MaintenanceCommand::Stop { service, why, api } => {
            let body = why.body(json!({ "action": "stop" }));
            service_command(&api, &service, "maintenance", body)
        }
        MaintenanceCommand::Schedule {
            service,
            starts_at,
            duration,
            why,
            api,
        } => {
            let body = why.body(json!({ "action": "schedule", "starts_at": starts_at,
                "duration": duration }));
            let path = format!("/api/v1/services/{}/maintenance", path_segment(&service));
            call(&api, Request::post(path, Some(body)), 201, |a| {
                if let Some(v) = a.json() {
                    println!(
                        "{}: maintenance window {} scheduled from {} to {}",
                        v["service"].as_str().unwrap_or("?"),
                        v["window_id"],
                        v["starts_at"].as_str().unwrap_or("?"),
                        v["ends_at"].as_str().unwrap_or("?")
                    );
                }
            })
        }
    }
}

/// `switchboard review`: acknowledges an automatic transition's audit record.
pub fn review(api: &ApiArgs, audit_id: i64, note: &str) -> ExitCode {
    let path = format!("/api/v1/audit/{audit_id}/review");
    call(
        api,
        Request::post(path, Some(json!({ "note": note }))),
        201,
        |_| {
            println!("audit record {audit_id} reviewed");
        },
    )
}

/// The daemon and the check's own token for `switchboard heartbeat` (not a token of the token
/// file: a heartbeat check has its own, so a job's credential can do nothing else).
#[derive(clap::Args, Clone)]
pub struct HeartbeatArgs {
    /// The daemon's base URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = switchboard::client::DEFAULT_URL)]
    url: String,
    /// The heartbeat check's token (prefer the environment variable: the command line is
    /// visible to other users of the machine).
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificates to verify an `https://` daemon with, instead of the public roots.
    #[arg(long, env = "SWITCHBOARD_CA_FILE")]
    ca_file: Option<PathBuf>,
}

/// `switchboard heartbeat CHECK [--down] [--message ...]`: one heartbeat, for cron jobs and
/// pipelines that would otherwise need curl. Exit 0 when it was recorded.
pub fn heartbeat(
    args: &HeartbeatArgs,
    check: &str,
    down: bool,
    message: Option<String>,
) -> ExitCode {
    if args.token.is_none() {
        eprintln!("switchboard: set SWITCHBOARD_HEARTBEAT_TOKEN to the check's heartbeat token");
        return ExitCode::from(exit::USAGE);
    }
    let api = ApiArgs {
        url: args.url.clone(),
        token: args.token.clone(),
        ca_file: args.ca_file.clone(),
    };
    let body = json!({ "status": if down { "down" } else { "up" }, "message": message });
    let path = format!("/api/v1/heartbeats/{}", path_segment(check));
    call(&api, Request::post(path, Some(body)), 200, |a| {
        let at = a
            .json()
            .and_then(|v| v["received_at"].as_str().map(str::to_string))
            .unwrap_or_default();
        println!("heartbeat for {check} recorded at {at}");
    })
}

/// `switchboard audit list`: the daemon's audit records, one line each.
pub fn audit_list(
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
    call(api, Request::get(path), 200, |a| {
        if json {
            print!("{}", a.body);
        } else {
            print!("{}", format_audit(&a.body));
        }
    })
}

/// Prints an operator command's result: the service's state and side, and its transitions.
pub(super) fn print_applied(a: &Answer) {
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
