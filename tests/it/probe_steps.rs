//! Multi-step HTTP checks against a real ticket form on 127.0.0.1 (an axum/hyper server started
//! by each test): the form page carries a CSRF token in its HTML and sets a session cookie, a
//! JSON document names the form id, and the submit endpoint answers 201 only with the right
//! token, form id and cookie. Checks are loaded from TOML, as users write them.

use crate::support::check::{self, run};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::config::CheckSpec;
use switchboard::probe::{ErrorClass, Outcome};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

/// The ticket form's server side: one CSRF token per session.
#[derive(Default)]
struct Site {
    sessions: Mutex<HashMap<String, String>>,
    next: AtomicU64,
    submits: AtomicU64,
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == "session")
        .map(|(_, v)| v.to_string())
}

async fn form(State(site): State<Arc<Site>>) -> Response {
    let n = site.next.fetch_add(1, Ordering::SeqCst);
    let (session, token) = (format!("s{n}"), format!("tok+{n}/x="));
    site.sessions
        .lock()
        .unwrap()
        .insert(session.clone(), token.clone());
    (
        [(
            header::SET_COOKIE,
            format!("session={session}; Path=/; HttpOnly"),
        )],
        axum::response::Html(format!(
            "<form method=\"post\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
             <input name=\"request_subject\"></form>"
        )),
    )
        .into_response()
}

async fn form_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"form": {"id": "f-42", "fields": ["subject", "description"]}}"#,
    )
        .into_response()
}

/// 201 with the session's token and the right form, 401 without a session, 403 otherwise.
async fn submit(
    State(site): State<Arc<Site>>,
    Path(form): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    site.submits.fetch_add(1, Ordering::SeqCst);
    let Some(session) = session_of(&headers) else {
        return StatusCode::UNAUTHORIZED;
    };
    let expected = site.sessions.lock().unwrap().get(&session).cloned();
    let sent: Option<String> = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    match (expected, sent) {
        (Some(e), Some(s)) if e == s && form == "f-42" => StatusCode::CREATED,
        _ => StatusCode::FORBIDDEN,
    }
}

/// A login-like hop: sets a cookie on a 302, which the redirected request must carry.
async fn start() -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, "/whoami"),
            (header::SET_COOKIE, "started=yes; Path=/"),
        ],
    )
        .into_response()
}

async fn whoami(headers: HeaderMap) -> Response {
    let cookies = headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("")
        .to_string();
    if cookies.contains("started=yes") {
        (StatusCode::OK, cookies).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

/// A hostile form: its "token" carries a line break and a header of its own.
async fn injecting_form() -> axum::response::Html<&'static str> {
    axum::response::Html("<input name=\"csrf\" value=\"abc\r\nX-Injected: 1\">")
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(10)).await;
    "too late"
}

/// Starts the site on a free loopback port; it stops when the test's runtime ends.
async fn site() -> (SocketAddr, Arc<Site>) {
    let site = Arc::new(Site::default());
    let app = Router::new()
        .route("/hc/requests/new", get(form))
        .route("/api/form.json", get(form_json))
        .route("/forms/{id}/submit", post(submit))
        .route("/slow", get(slow))
        .route("/start", get(start))
        .route("/whoami", get(whoami))
        .route("/injecting-form", get(injecting_form))
        .with_state(site.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, site)
}

/// Loads one check (TOML, after `[[check]]`) in a service file and returns it.
fn load(check: &str) -> CheckSpec {
    let (_dir, checks) = check::load(&format!("[[check]]\n{check}"), &[]);
    checks.into_iter().next().expect("one check")
}

/// The shipped flow: load the form (CSRF by regex), read the form id (JSON), submit.
fn flow(base: &str, submit_host: &str, token: &str) -> String {
    format!(
        r#"name = "ticket-form-canary"
timeout = "5s"

[[check.step]]
name = "load-form"
url = "{base}/hc/requests/new"
conditions = ["[STATUS] == 200", "[BODY] == pat(*request_subject*)"]
extract = {{ csrf = 'regex:name="csrf" value="([^"]+)"' }}

[[check.step]]
name = "form-config"
url = "{base}/api/form.json"
conditions = ["[STATUS] == 200"]
extract = {{ form_id = "json:$.form.id" }}

[[check.step]]
name = "submit"
method = "POST"
url = "{submit_host}/forms/${{form_id}}/submit"
headers = {{ Content-Type = "application/x-www-form-urlencoded" }}
body = "csrf={token}&subject=canary"
conditions = ["[STATUS] == any(201, 302)"]
"#
    )
}

fn step_names(o: &Outcome) -> Vec<&str> {
    o.steps.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test]
async fn the_form_flow_succeeds_with_token_form_id_and_session_cookie() {
    let (addr, site) = site().await;
    let base = format!("http://{addr}");
    let o = run(&load(&flow(&base, &base, "${csrf|url}"))).await;
    assert!(o.success, "{o:#?}");
    assert_eq!(step_names(&o), ["load-form", "form-config", "submit"]);
    assert_eq!(o.status, Some(201), "the check's status is the last step's");
    assert_eq!(o.steps[0].extracted, ["csrf"]);
    assert_eq!(o.steps[1].extracted, ["form_id"], "JSON path extraction");
    assert_eq!(site.submits.load(Ordering::SeqCst), 1);
    for step in &o.steps {
        assert!(step.success && step.error.is_none(), "{step:#?}");
        assert!(!step.conditions.is_empty() && step.conditions.iter().all(|c| c.success));
        assert!(
            step.phases.connect > Duration::ZERO,
            "each step has its own timings"
        );
    }
    assert_eq!(
        o.steps[2].conditions[0].resolved,
        "[STATUS] (201) == any(201, 302)"
    );
    // The check's phases add up its steps'; its duration covers them all.
    let connect: Duration = o.steps.iter().map(|s| s.phases.connect).sum();
    assert_eq!(o.phases.connect, connect);
    assert!(o.duration >= o.steps.iter().map(|s| s.duration).sum::<Duration>());
    // The check's conditions are the steps', each named by its step.
    assert!(o
        .conditions
        .iter()
        .any(|c| c.resolved == "submit: [STATUS] (201) == any(201, 302)"));
}

#[tokio::test]
async fn a_wrong_token_fails_the_check_naming_the_submit_step() {
    let (addr, _) = site().await;
    let base = format!("http://{addr}");
    let o = run(&load(&flow(&base, &base, "not-the-token"))).await;
    assert!(!o.success);
    assert_eq!(o.status, Some(403));
    let e = o.error.as_ref().expect("error");
    assert_eq!(e.class, ErrorClass::Conditions);
    assert!(e.message.starts_with("step \"submit\": "), "{}", e.message);
    assert!(e.message.contains("[STATUS] (403)"), "{}", e.message);
    assert_eq!(
        o.steps.iter().map(|s| s.success).collect::<Vec<_>>(),
        [true, true, false]
    );
}

#[tokio::test]
async fn the_session_cookie_is_not_sent_to_another_host() {
    let (addr, _) = site().await;
    let base = format!("http://{addr}");
    // Same server, other host name: the cookie belongs to 127.0.0.1, so the jar withholds it
    // and the server sees a submit without a session.
    let other = format!("http://localhost:{}", addr.port());
    let o = run(&load(&flow(&base, &other, "${csrf|url}"))).await;
    assert!(!o.success, "{o:#?}");
    assert_eq!(o.status, Some(401), "no session cookie reached the server");
    let e = o.error.as_ref().expect("error");
    assert!(e.message.starts_with("step \"submit\": "), "{}", e.message);
}

#[tokio::test]
async fn an_extraction_that_finds_nothing_names_the_step_and_variable() {
    let (addr, site) = site().await;
    let base = format!("http://{addr}");
    let check = flow(&base, &base, "${csrf|url}").replace(
        r#"regex:name="csrf" value="([^"]+)""#,
        r#"regex:name="authenticity_token" value="([^"]+)""#,
    );
    let o = run(&load(&check)).await;
    assert!(!o.success);
    let e = o.error.as_ref().expect("error");
    assert!(
        e.message.starts_with("step \"load-form\": extract csrf: "),
        "{}",
        e.message
    );
    assert!(e.message.contains("found no match"), "{}", e.message);
    assert_eq!(step_names(&o), ["load-form"], "later steps do not run");
    assert_eq!(o.status, Some(200), "the page itself answered");
    assert_eq!(site.submits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_missing_json_path_names_the_step_and_variable() {
    let (addr, _) = site().await;
    let base = format!("http://{addr}");
    let check = flow(&base, &base, "${csrf|url}").replace("json:$.form.id", "[BODY].form.uuid");
    let o = run(&load(&check)).await;
    let e = o.error.as_ref().expect("error");
    assert!(
        e.message.starts_with(
            "step \"form-config\": extract form_id: [BODY].form.uuid is not in the JSON body"
        ),
        "{}",
        e.message
    );
    assert_eq!(step_names(&o), ["load-form", "form-config"]);
}

#[tokio::test]
async fn a_step_timeout_ends_that_step_within_the_check_timeout() {
    let (addr, _) = site().await;
    let base = format!("http://{addr}");
    let check = load(&format!(
        r#"name = "slow-flow"
timeout = "4s"

[[check.step]]
name = "load-form"
url = "{base}/hc/requests/new"

[[check.step]]
name = "slow"
url = "{base}/slow"
timeout = "500ms"
"#
    ));
    let started = Instant::now();
    let o = run(&check).await;
    let took = started.elapsed();
    let e = o.error.as_ref().expect("error");
    assert_eq!(e.class, ErrorClass::Timeout);
    assert!(
        e.message
            .starts_with("step \"slow\": timed out after 500ms"),
        "{}",
        e.message
    );
    assert!(
        took < Duration::from_secs(3),
        "the step's own 500ms ended it, not the check's 4s: {took:?}"
    );
    assert_eq!(step_names(&o), ["load-form", "slow"]);
    assert!(o.steps[0].success);
}

#[tokio::test]
async fn the_whole_sequence_never_outlives_the_check_timeout() {
    let (addr, _) = site().await;
    let base = format!("http://{addr}");
    // No step timeouts: the hanging second step gets what is left of the check's second.
    let check = load(&format!(
        r#"name = "hanging-flow"
timeout = "1s"

[[check.step]]
name = "load-form"
url = "{base}/hc/requests/new"

[[check.step]]
name = "slow"
url = "{base}/slow"

[[check.step]]
name = "never"
url = "{base}/hc/requests/new"
"#
    ));
    let started = Instant::now();
    let o = run(&check).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1) + Duration::from_millis(900),
        "bounded by the check's timeout: {took:?}"
    );
    let e = o.error.as_ref().expect("error");
    assert_eq!(e.class, ErrorClass::Timeout);
    assert!(e.message.starts_with("step \"slow\": "), "{}", e.message);
    assert_eq!(step_names(&o), ["load-form", "slow"]);
    assert!(!o.success);
}

#[tokio::test]
async fn the_json_output_keeps_the_top_level_fields_and_adds_steps() {
    let (addr, _) = site().await;
    let base = format!("http://{addr}");
    let o = run(&load(&flow(&base, &base, "${csrf|url}"))).await;
    let v = serde_json::to_value(&o).expect("serializes");
    for field in check::OUTCOME_FIELDS {
        assert!(v.get(field).is_some(), "{field} missing: {v}");
    }
    let steps = v["steps"].as_array().expect("steps array");
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[2]["name"], "submit");
    assert_eq!(steps[2]["status"], 201);
    assert!(steps[2]["phases"]["processing"].as_f64().is_some());
    assert_eq!(steps[0]["extracted"][0], "csrf");
    // Extracted values (a CSRF token here) never appear in the output.
    assert!(!v.to_string().contains("tok+"), "{v}");
}

#[tokio::test]
async fn a_cookie_set_on_a_redirect_is_sent_on_the_next_hop() {
    let (addr, _) = site().await;
    let base = format!("http://{addr}");
    let o = run(&load(&format!(
        r#"name = "login"
[[check.step]]
name = "start"
url = "{base}/start"
conditions = ["[STATUS] == 200", "[BODY] == started=yes"]
"#
    )))
    .await;
    assert!(o.success, "{o:#?}");
    assert_eq!(o.redirects, 1);
}

#[tokio::test]
async fn an_extracted_value_cannot_inject_a_header() {
    let (addr, site) = site().await;
    let base = format!("http://{addr}");
    let o = run(&load(&format!(
        r#"name = "hostile"
[[check.step]]
name = "load"
url = "{base}/injecting-form"
extract = {{ csrf = 'regex:value="([^"]+)"' }}

[[check.step]]
name = "submit"
method = "POST"
url = "{base}/forms/f-42/submit"
headers = {{ X-Csrf = "${{csrf}}" }}
"#
    )))
    .await;
    assert!(!o.success);
    let e = o.error.as_ref().expect("error");
    assert_eq!(e.class, ErrorClass::Protocol, "{e:?}");
    assert!(
        e.message
            .starts_with("step \"submit\": invalid request: invalid value for header x-csrf"),
        "{}",
        e.message
    );
    assert_eq!(site.submits.load(Ordering::SeqCst), 0, "nothing was sent");
}
