//! `switchboard demo`: the real daemon against a simulated support site on loopback, with a
//! scripted outage that repeats until Ctrl-C. Needs no network and no set-up.
//!
//! `cluster.rs` is `switchboard demo --cluster`: three nodes on a local etcd (`etcd.rs`)
//! against the same site and configuration, the leader killed during the outage.

pub mod cluster;
pub mod etcd;

use crate::app;
use crate::config::Config;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo set-up: {0}")]
    Io(#[from] std::io::Error),
    #[error("demo config is invalid (a bug): {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    App(#[from] app::AppError),
    #[error("{0}; `apt-get install etcd-server` installs it (Debian), or name the binary with --etcd PATH")]
    EtcdMissing(String),
    #[error(transparent)]
    Etcd(#[from] etcd::LocalEtcdError),
    #[error("{what} exited unexpectedly ({status}); the demo stops. The last lines of its log:\n{log_tail}")]
    ChildDied {
        what: String,
        status: String,
        log_tail: String,
    },
    #[error("gave up waiting for {what} after {within:?}; the demo stops")]
    Timeout { what: String, within: Duration },
    #[error("demo HTTP client: {0}")]
    Http(#[from] crate::announce::http::HttpError),
}

/// The simulated support site's one switch: is the ticket form answering? It also keeps the
/// CSRF token of each form session, so the canary check's submit step is really verified.
#[derive(Default)]
pub(crate) struct Site {
    pub(crate) ticket_form_down: AtomicBool,
    sessions: std::sync::Mutex<std::collections::HashMap<String, String>>,
    next_session: std::sync::atomic::AtomicU64,
}

/// The id the simulated help centre gives its ticket form.
const FORM_ID: &str = "360001";

const PAGE: &str =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
<body><main><h1>{title}</h1>{body}</main></body></html>";

fn page(title: &str, body: &str) -> Html<String> {
    Html(PAGE.replace("{title}", title).replace("{body}", body))
}

fn site_router(site: Arc<Site>) -> Router {
    Router::new()
        .route(
            "/hc/en-us",
            get(|| async { page("Example Support", "<p>How can we help?</p>") }),
        )
        .route("/hc/en-us/requests/new", get(ticket_form))
        .route(
            "/api/v2/ticket_forms/default.json",
            get(|| async {
                axum::Json(serde_json::json!({"ticket_form": {"id": FORM_ID.parse::<u64>().unwrap_or(0)}}))
            }),
        )
        .route("/sandbox/forms/{id}/submit", post(sandbox_submit))
        .route(
            "/forms/support",
            get(|| async {
                page(
                    "Contact support (backup form)",
                    "<form method=\"post\"><input name=\"request_subject\"><textarea name=\"request_description\"></textarea><button>Send</button></form>",
                )
            }),
        )
        .route(
            "/book",
            get(|| async { page("Book a call with support", "<p>Pick a time.</p>") }),
        )
        .route(
            "/book-backup",
            get(|| async { page("Book a call (backup calendar)", "<p>Pick a time.</p>") }),
        )
        .with_state(site)
}

async fn ticket_form(State(site): State<Arc<Site>>) -> Response {
    if site.ticket_form_down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream connect error").into_response();
    }
    // A new session per visit, with its own CSRF token, as a help centre hands them out.
    let n = site.next_session.fetch_add(1, Ordering::SeqCst);
    let session = format!("demo-{n}");
    let token = format!("{:016x}", rand::random::<u64>());
    if let Ok(mut sessions) = site.sessions.lock() {
        // Bounded: the demo runs for as long as someone watches it.
        if sessions.len() > 1000 {
            sessions.clear();
        }
        sessions.insert(session.clone(), token.clone());
    }
    (
        [(
            axum::http::header::SET_COOKIE,
            format!("_help_session={session}; Path=/; HttpOnly"),
        )],
        page(
            "Submit a request",
            &format!("<form method=\"post\"><input type=\"hidden\" name=\"authenticity_token\" value=\"{token}\"><input name=\"request_subject\"><textarea name=\"request_description\"></textarea><button>Submit</button></form>"),
        ),
    )
        .into_response()
}

/// The sandbox submit endpoint: 201 only with the session cookie, its CSRF token and the
/// right form id, as the real form would accept a request; 503 while the form is down.
async fn sandbox_submit(
    State(site): State<Arc<Site>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: String,
) -> StatusCode {
    if site.ticket_form_down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let session = headers
        .get(axum::http::header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| {
            c.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| *k == "_help_session")
                .map(|(_, v)| v.to_string())
        });
    let Some(session) = session else {
        return StatusCode::UNAUTHORIZED;
    };
    let expected = site
        .sessions
        .lock()
        .ok()
        .and_then(|s| s.get(&session).cloned());
    let sent = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "authenticity_token")
        .map(|(_, v)| v.into_owned());
    match (expected, sent) {
        (Some(e), Some(s)) if e == s && id == FORM_ID => StatusCode::CREATED,
        _ => StatusCode::FORBIDDEN,
    }
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

/// Writes the demo's configuration: three services on the simulated site, fast timings.
pub(crate) fn write_config(dir: &Path, site: &str, listen: &str) -> std::io::Result<PathBuf> {
    let main = dir.join("switchboard.toml");
    write(
        &main,
        &format!(
            r#"# Written by `switchboard demo`.
probes = "probes"

[server]
listen = "{listen}"

[storage]
path = "var/switchboard.db"

[email]
from = "Support Status <status@example.com>"
transport = "file"
dir = "var/mail"
# Shorter than the defaults (30s, 2m) so the demo's 18-second outage shows both: on-call
# hears within seconds in one grouped e-mail, customers once the change has lasted 15 s.
group_window = "5s"
customer_delay = "15s"

[audiences]
oncall = ["support-oncall@example.com"]
customers = ["support-announce@example.com"]
drill = ["support-ops@example.com"]

[status_page]
title = "Example Support Status (demo)"

[auth]
tokens_file = "tokens.toml"

[defaults]
interval = "2s"
timeout = "1s"
retry_interval = "1s"
failure_threshold = 3
success_threshold = 2
"#
        ),
    )?;
    write(
        &dir.join("probes/ticket-submission.toml"),
        &format!(
            r#"[service]
id = "ticket-submission"
name = "Ticket submission"
failover_when = "any"
failback = "auto"
recovery_hold = "10s"

[[check]]
name = "ticket-form"
url = "{site}/hc/en-us/requests/new"
conditions = ["[STATUS] == 200", "[BODY] == pat(*request_subject*)", "[RESPONSE_TIME] < 800"]

# The form as a customer uses it: load, take the CSRF token and form id, submit a canary.
[[check]]
name = "ticket-form-canary"

[[check.step]]
name = "load-form"
url = "{site}/hc/en-us/requests/new"
conditions = ["[STATUS] == 200"]
extract = {{ csrf = 'regex:name="authenticity_token" value="([^"]+)"' }}

[[check.step]]
name = "form-config"
url = "{site}/api/v2/ticket_forms/default.json"
extract = {{ form_id = "json:$.ticket_form.id" }}

[[check.step]]
name = "submit-canary"
method = "POST"
url = "{site}/sandbox/forms/${{form_id}}/submit"
headers = {{ Content-Type = "application/x-www-form-urlencoded" }}
body = "authenticity_token=${{csrf|url}}&request_subject=Switchboard+canary"
conditions = ["[STATUS] == any(201, 302)"]

[[check]]
name = "backup-form"
role = "backup"
url = "{site}/forms/support"
conditions = ["[STATUS] == 200", "[BODY] == pat(*request_subject*)"]

[[route]]
id = "submit-ticket"
primary = "{site}/hc/en-us/requests/new"
backup = "{site}/forms/support"
"#
        ),
    )?;
    write(
        &dir.join("probes/support-portal.toml"),
        &format!(
            r#"[service]
id = "support-portal"
name = "Support portal"

[[check]]
name = "portal-home"
url = "{site}/hc/en-us"
conditions = ["[STATUS] == 200"]

[[route]]
id = "help-center"
primary = "{site}/hc/en-us"
backup = "{site}/forms/support"
"#
        ),
    )?;
    write(
        &dir.join("probes/scheduling.toml"),
        &format!(
            r#"[service]
id = "scheduling"
name = "Scheduling page"

[[check]]
name = "booking-page"
url = "{site}/book"
conditions = ["[STATUS] == 200"]

[[check]]
name = "backup-calendar"
role = "backup"
url = "{site}/book-backup"
conditions = ["[STATUS] == 200"]

[[route]]
id = "book-a-call"
primary = "{site}/book"
backup = "{site}/book-backup"
"#
        ),
    )?;
    Ok(main)
}

pub(crate) fn say(text: &str) {
    println!("\x1b[1;36m[demo]\x1b[0m {text}");
}

/// Serves the simulated support site on a free loopback port until `shutdown` turns true:
/// its switch and its URL.
pub(crate) async fn start_site(
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(Arc<Site>, String)> {
    let site = Arc::new(Site::default());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = site_router(site.clone());
    let mut stop = shutdown;
    tokio::spawn(async move {
        let stop = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await;
    });
    Ok((site, url))
}

/// Runs the demo until `shutdown` turns true.
pub async fn run(shutdown: watch::Receiver<bool>) -> Result<(), DemoError> {
    let dir = std::env::temp_dir().join(format!("switchboard-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let (site, site_url) = start_site(shutdown.clone()).await?;

    // Port 9898 as in the docs when free; any free port otherwise.
    let listener = match TcpListener::bind("127.0.0.1:9898").await {
        Ok(l) => l,
        Err(_) => TcpListener::bind("127.0.0.1:0").await?,
    };
    let listen = listener.local_addr()?.to_string();
    let main = write_config(&dir, &site_url, &listen)?;
    // A throwaway operator token (in this run's temporary directory, stored hashed like any
    // other) so the control API, drills and the CLI clients can be tried against the demo.
    let token = crate::api::auth::new_token(
        &dir.join("tokens.toml"),
        "demo-operator",
        crate::api::auth::Role::Operator,
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let config = Config::load(&main)?;
    let base = config.server.public_url.clone();

    say(&format!(
        "A simulated support site runs at {site_url} (portal, ticket form, backup form, booking page); the ticket-form-canary check loads the form, takes its CSRF token and form id, and submits a canary request."
    ));
    say(&format!(
        "Switchboard's config was written to {}",
        main.display()
    ));
    say(&format!("Status page:      {base}/status"));
    say(&format!(
        "Ticket redirect:  {base}/go/submit-ticket   (customers' link; 307 to the active form)"
    ));
    say(&format!(
        "Statuspage JSON:  {base}/api/v2/summary.json    Metrics: {base}/metrics"
    ));
    say(&format!(
        "E-mails are written as .eml files to {}",
        dir.join("var/mail").display()
    ));
    // The drill is of the scheduling page, which the script never breaks: a drill of the
    // ticket form would be refused whenever the scripted outage has it failed over (a drill
    // starts only from operational), so this command works whenever it is run.
    say(&format!(
        "Try a drill of the scheduling page, any time (operator token for this demo only):  SWITCHBOARD_URL={base} SWITCHBOARD_TOKEN={token} switchboard drill start scheduling --duration 20s --reason \"demo drill\" --dry-run --wait"
    ));
    say("(A drill of ticket-submission works too, but only while it is operational: it is refused while the scripted outage has it failed over or recovering.)");
    say("In 8 s the ticket form will break; watch Switchboard notice, confirm and switch. Ctrl-C to stop.");

    let script_site = site.clone();
    let mut script_stop = shutdown.clone();
    tokio::spawn(async move {
        let script = async {
            loop {
                tokio::time::sleep(Duration::from_secs(8)).await;
                script_site.ticket_form_down.store(true, Ordering::SeqCst);
                say("The ticket form now answers 503: customers cannot submit requests.");
                tokio::time::sleep(Duration::from_secs(18)).await;
                script_site.ticket_form_down.store(false, Ordering::SeqCst);
                say("The ticket form is fixed. Switchboard switches back once it has been healthy for the 10 s recovery hold.");
                tokio::time::sleep(Duration::from_secs(20)).await;
                say("Cycle complete. The outage repeats in 8 s (Ctrl-C to stop).");
            }
        };
        tokio::select! {
            _ = script => {}
            _ = script_stop.wait_for(|s| *s) => {}
        }
    });

    app::run(config, Some(listener), shutdown).await?;
    say(&format!("Stopped. Files are kept in {}", dir.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's own config against its own simulated site: the canary flow passes while the
    /// form works and fails at its first step while the form is down.
    #[tokio::test]
    async fn the_demo_canary_submits_the_simulated_form() {
        let site = Arc::new(Site::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let router = site_router(site.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let main = write_config(dir.path(), &url, "127.0.0.1:0").expect("config written");
        let config = Config::load(&main).expect("demo config is valid");
        let check = config
            .check("ticket-form-canary")
            .expect("demo has the canary");

        let o = crate::probe::run(check).await;
        assert!(o.success, "{o:#?}");
        assert_eq!(o.status, Some(201));
        assert_eq!(o.steps.len(), 3);

        site.ticket_form_down.store(true, Ordering::SeqCst);
        let o = crate::probe::run(check).await;
        assert!(!o.success);
        let e = o.error.expect("error");
        assert!(
            e.message.starts_with("step \"load-form\": "),
            "{}",
            e.message
        );
    }
}
