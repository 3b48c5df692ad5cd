//! Statuspage and chat pushes through the real outbox against local HTTP servers (tokio on
//! 127.0.0.1) that check method, path, the `Authorization: OAuth` header and the JSON body,
//! answer 429 with `Retry-After`, and time each request as it arrives.

use crate::support::{daemon, http};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::announce::chat::Chat;
use switchboard::announce::outbox::{self, Transports};
use switchboard::announce::statuspage_push::StatuspagePush;
use switchboard::announce::webhook::Webhooks;
use switchboard::announce::{self, Channels, Delivery, Kind, Mailer, MessageContext, Templates};
use switchboard::clock::Timestamp;
use switchboard::config::{
    Audiences, ChatConfig, EmailConfig, EmailTransport, StatuspagePushConfig,
};
use switchboard::failover::{Cause, Side, State, Transition};
use switchboard::store::{OutboxStatus, Store, StoreHandle};
use switchboard::view::RouteView;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
    at: Instant,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A fake API on a loopback port: records every request and answers from a script
/// (status, extra headers, body); `200 {}` once the script is used up.
struct FakeApi {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeApi {
    async fn start(script: Vec<(u16, &'static str, &'static str)>) -> FakeApi {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let log = log.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let Some(request) = http::read_async(&mut s).await else {
                        return;
                    };
                    let at = Instant::now();
                    let body =
                        serde_json::from_slice(&request.body).unwrap_or(serde_json::Value::Null);
                    let http::Request {
                        method,
                        path,
                        headers,
                        ..
                    } = request;
                    log.lock().unwrap().push(Seen {
                        method,
                        path,
                        headers,
                        body,
                        at,
                    });
                    let (status, extra, reply) = script
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or((200, "", "{}"));
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = s.write_all(response.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        FakeApi { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn ctx(active: Side) -> MessageContext {
    MessageContext {
        service_name: "Ticket submission".into(),
        routes: vec![RouteView {
            id: "submit-ticket".into(),
            service: "ticket-submission".into(),
            primary: "https://support.example.com/new".into(),
            backup: "https://forms.example.net/support".into(),
            active,
        }],
        status_url: "http://127.0.0.1:9898/status".into(),
        go_base_url: "http://127.0.0.1:9898/go/".into(),
        runbook: None,
        api_url: "http://127.0.0.1:9898/api/v1".into(),
        holds: Vec::new(),
    }
}

fn transition(from: State, to: State, at: Timestamp) -> Transition {
    Transition {
        service: "ticket-submission".into(),
        from,
        to,
        cause: Cause::PrimaryDown,
        at,
        actor: "system".into(),
        reason: "failover_when = any: 1 of 1 primary checks down".into(),
        evidence: vec!["portal-form: down (HTTP 503)".into()],
        public_message: None,
    }
}

/// Commits a failover and then a failback, each with its planned push rows.
fn commit_failover_and_failback(store: &Store, chat: bool) {
    let audiences = Audiences::default();
    let templates = Templates::embedded();
    let channels = Channels {
        audiences: &audiences,
        templates: &templates,
        statuspage_component: Some("cmp-tickets"),
        chat,
    };
    let now = Timestamp::now();
    store.ensure_service("ticket-submission", now).unwrap();
    for (t, side) in [
        (
            transition(State::Operational, State::FailedOver, now),
            Side::Backup,
        ),
        (
            transition(
                State::FailedOver,
                State::Operational,
                now.plus(Duration::from_millis(1)),
            ),
            Side::Primary,
        ),
    ] {
        let rows = announce::plan_kind(Kind::of(&t), &t, &ctx(side), &channels);
        store.commit_transition(&t, "cfg", &rows).unwrap();
    }
}

/// Runs the outbox until `n` deliveries succeeded (failures collected too).
async fn run_outbox(
    store: Arc<Store>,
    transports: Transports,
    n: usize,
) -> (Vec<Delivery>, Vec<Delivery>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let task = tokio::spawn(outbox::run(
        StoreHandle::shared(store),
        Arc::new(transports),
        wake.clone(),
        tx,
        stop_rx,
    ));
    wake.notify_one();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    tokio::time::timeout(Duration::from_secs(30), async {
        while ok.len() < n {
            let d: Delivery = rx.recv().await.expect("outbox alive");
            if d.result.is_ok() {
                ok.push(d);
            } else {
                failed.push(d);
            }
        }
    })
    .await
    .expect("deliveries within 30 s");
    stop.send(true).unwrap();
    task.await.unwrap();
    (ok, failed)
}

fn transports(
    store: &Arc<Store>,
    mail: &std::path::Path,
    sp: Option<StatuspagePushConfig>,
    chat: Option<String>,
) -> Transports {
    let cfg = EmailConfig::new(
        "status@example.com",
        EmailTransport::File {
            dir: mail.to_path_buf(),
        },
    );
    Transports {
        mailer: Mailer::with_password(&cfg, None).unwrap(),
        webhooks: Webhooks::default(),
        statuspage: sp.map(|c| StatuspagePush::new(c, StoreHandle::shared(store.clone()))),
        chat: chat.map(|url| {
            Chat::new(ChatConfig {
                webhook_url: Some(url),
                bot: None,
            })
        }),
        zendesk: None,
    }
}

#[tokio::test]
async fn failover_opens_an_incident_after_a_429_and_failback_resolves_it_paced() {
    // Set before the tests start (`support::TEST_ENV`): the outbox reads it in this process.
    const KEY_ENV: &str = "SWITCHBOARD_TEST_STATUSPAGE_KEY_A";
    let api = FakeApi::start(vec![
        (429, "Retry-After: 2\r\n", r#"{"error":"rate limited"}"#),
        (
            201,
            "",
            r#"{"id":"inc42","name":"x","status":"identified"}"#,
        ),
        (200, "", r#"{"id":"inc42","status":"resolved"}"#),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    commit_failover_and_failback(&store, false);
    let sp = StatuspagePushConfig {
        page_id: "pg1".into(),
        api_base: format!("{}/v1", api.base),
        api_key_env: KEY_ENV.into(),
    };
    let (ok, failed) = run_outbox(
        store.clone(),
        transports(&store, dir.path(), Some(sp), None),
        2,
    )
    .await;

    // One 429, then each row delivered once.
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0]
        .result
        .as_ref()
        .unwrap_err()
        .starts_with("429 rate limited on POST /pages/pg1/incidents"));
    assert_eq!(
        ok[0].result.as_deref().unwrap(),
        "201 POST /pages/pg1/incidents"
    );
    assert_eq!(
        ok[1].result.as_deref().unwrap(),
        "200 PATCH /pages/pg1/incidents/inc42"
    );

    let seen = api.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    for s in &seen {
        assert_eq!(s.header("Authorization"), Some("OAuth key-abc123"));
        assert_eq!(s.header("Content-Type"), Some("application/json"));
    }
    let open = serde_json::json!({"incident": {
        "name": "Ticket submission: switched to a backup",
        "status": "identified",
        "body": "Ticket submission is not working right now, so we have switched to a backup.",
        "component_ids": ["cmp-tickets"],
        "components": {"cmp-tickets": "partial_outage"},
    }});
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v1/pages/pg1/incidents")
    );
    assert_eq!(seen[0].body, open);
    // The retry is the same request, after the Retry-After the server asked for.
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("POST", "/v1/pages/pg1/incidents")
    );
    assert_eq!(seen[1].body, open);
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(1950),
        "Retry-After: 2 honoured, waited {waited:?}"
    );
    // The failback resolves that same incident, one request, paced at least a second later.
    assert_eq!(
        (seen[2].method.as_str(), seen[2].path.as_str()),
        ("PATCH", "/v1/pages/pg1/incidents/inc42")
    );
    assert_eq!(
        seen[2].body,
        serde_json::json!({"incident": {
            "status": "resolved",
            "body": "Ticket submission is working again, and we have switched back to it.",
            "component_ids": ["cmp-tickets"],
            "components": {"cmp-tickets": "operational"},
        }})
    );
    let gap = seen[2].at - seen[1].at;
    assert!(
        gap >= Duration::from_millis(950),
        "paced to 1 request/s, gap {gap:?}"
    );
    // The incident is closed in the store too: the next failover opens a new one.
    assert_eq!(
        store.statuspage_incident("ticket-submission").unwrap(),
        None
    );
    assert_eq!(store.outbox_backlog().unwrap(), (0, None));
}

#[tokio::test]
async fn maintenance_sets_the_component_and_requests_stay_a_second_apart() {
    // Set before the tests start (`support::TEST_ENV`).
    const KEY_ENV: &str = "SWITCHBOARD_TEST_STATUSPAGE_KEY_B";
    let api = FakeApi::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let audiences = Audiences::default();
    let templates = Templates::embedded();
    let channels = Channels {
        audiences: &audiences,
        templates: &templates,
        statuspage_component: Some("cmp-m"),
        chat: false,
    };
    let now = Timestamp::now();
    store.ensure_service("ticket-submission", now).unwrap();
    let mut states = vec![State::Operational];
    for to in [
        State::Maintenance,
        State::Operational,
        State::Maintenance,
        State::Operational,
    ] {
        let t = transition(*states.last().unwrap(), to, now);
        let rows = announce::plan_kind(Kind::of(&t), &t, &ctx(Side::Backup), &channels);
        assert_eq!(rows.len(), 1);
        store.commit_transition(&t, "cfg", &rows).unwrap();
        states.push(to);
    }
    let sp = StatuspagePushConfig {
        page_id: "pg2".into(),
        api_base: format!("{}/v1", api.base),
        api_key_env: KEY_ENV.into(),
    };
    run_outbox(
        store.clone(),
        transports(&store, dir.path(), Some(sp), None),
        4,
    )
    .await;
    let seen = api.seen();
    let statuses: Vec<_> = seen
        .iter()
        .map(|s| {
            assert_eq!(
                (s.method.as_str(), s.path.as_str()),
                ("PATCH", "/v1/pages/pg2/components/cmp-m")
            );
            assert_eq!(s.header("Authorization"), Some("OAuth key-maint"));
            s.body["component"]["status"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        statuses,
        [
            "under_maintenance",
            "operational",
            "under_maintenance",
            "operational"
        ]
    );
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "gap {gap:?} between requests"
        );
    }
}

#[tokio::test]
async fn a_missing_api_key_keeps_the_row_pending_without_calling_the_api() {
    let api = FakeApi::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_in_memory().unwrap());
    commit_failover_and_failback(&store, false);
    let sp = StatuspagePushConfig {
        page_id: "pg1".into(),
        api_base: format!("{}/v1", api.base),
        api_key_env: "SWITCHBOARD_TEST_STATUSPAGE_KEY_UNSET".into(),
    };
    let t = transports(&store, dir.path(), Some(sp), None);
    let done = outbox::deliver_due(
        &StoreHandle::shared(store.clone()),
        &t,
        Timestamp::now(),
        10,
    )
    .await
    .unwrap();
    // Only the failover's row is due: the failback's waits behind it.
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0].result.as_ref().unwrap_err(),
        "environment variable SWITCHBOARD_TEST_STATUSPAGE_KEY_UNSET (the Statuspage API key) is not set"
    );
    assert!(api.seen().is_empty());
    let row = store.outbox_item(done[0].item.id).unwrap().unwrap();
    assert_eq!(row.status, OutboxStatus::Pending);
}

#[tokio::test]
async fn chat_gets_oncalls_news_as_slack_json_in_order_retrying_a_failure() {
    let chat = FakeApi::start(vec![(500, "", "oops")]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_in_memory().unwrap());
    commit_failover_and_failback(&store, true);
    let url = format!("{}/services/T000/B000/s3cr3t", chat.base);
    let t = transports(&store, dir.path(), None, Some(url));
    // Only chat is configured here; the statuspage rows fail and stay pending, which does
    // not hold up the chat stream (streams are per channel).
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let task = tokio::spawn(outbox::run(
        StoreHandle::shared(store.clone()),
        Arc::new(t),
        wake.clone(),
        tx,
        stop_rx,
    ));
    wake.notify_one();
    let mut chat_ok = Vec::new();
    let mut chat_failed = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while chat_ok.len() < 2 {
            let d = rx.recv().await.unwrap();
            if d.item.channel != "chat" {
                continue;
            }
            match &d.result {
                Ok(_) => chat_ok.push(d),
                Err(e) => {
                    // The webhook URL is a secret: errors name only the origin.
                    assert!(!e.contains("s3cr3t"), "{e}");
                    chat_failed.push(d)
                }
            }
        }
    })
    .await
    .expect("chat deliveries");
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(chat_failed.len(), 1);
    let seen = chat.seen();
    assert_eq!(seen.len(), 3, "one 500, then each message once");
    for s in &seen {
        assert_eq!(
            (s.method.as_str(), s.path.as_str()),
            ("POST", "/services/T000/B000/s3cr3t")
        );
        assert_eq!(s.header("Content-Type"), Some("application/json"));
    }
    let texts: Vec<&str> = seen
        .iter()
        .map(|s| s.body["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        seen[0].body, seen[1].body,
        "the retry repeats the same message"
    );
    // The notification text is the subject; the message itself is Block Kit.
    assert_eq!(
        texts[1],
        "[Switchboard] Ticket submission: switched to backup — use https://forms.example.net/support"
    );
    let blocks = seen[1].body["blocks"].as_array().expect("Block Kit blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], texts[1]);
    assert!(
        blocks.iter().any(|b| b["text"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("*Evidence*\n• portal-form: down (HTTP 503)"))),
        "{blocks:#?}"
    );
    assert!(
        texts[2].starts_with("[Switchboard] Ticket submission: back on primary"),
        "{}",
        texts[2]
    );
}

/// The real daemon, configured with `[statuspage_push]` and `[chat]`, fails over and back:
/// the page gets one incident opened and then resolved, chat gets both messages.
#[test]
fn the_daemon_pushes_its_failover_and_failback_to_statuspage_and_chat() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(FakeApi::start(vec![(201, "", r#"{"id":"inc7"}"#)]));
    let chat = rt.block_on(FakeApi::start(vec![]));
    let dir = tempfile::tempdir().unwrap();
    let target = daemon::Target::start();
    let (config, port) = daemon::write_config(
        dir.path(),
        &target,
        &format!(
            "transport = \"file\"\ndir = \"var/mail\"\n\n[statuspage_push]\npage_id = \"pgE2E\"\napi_base = \"{}/v1\"\napi_key_env = \"E2E_STATUSPAGE_KEY\"\n\n[chat]\nwebhook_url = \"{}/hooks/abc\"\n",
            api.base, chat.base
        ),
    );
    let svc = dir.path().join("probes/ticket-submission.toml");
    let text = std::fs::read_to_string(&svc).unwrap();
    std::fs::write(
        &svc,
        text.replace(
            "name = \"Ticket submission\"",
            "name = \"Ticket submission\"\nstatuspage_component = \"cmpE2E\"",
        ),
    )
    .unwrap();
    let d = daemon::Daemon::start_with(&config, port, &[("E2E_STATUSPAGE_KEY", "k-e2e")], None);
    daemon::wait_until("primary in use", Duration::from_secs(30), || {
        d.location("submit-ticket") == target.url("/form")
    });
    target.set_down(true);
    daemon::wait_until("incident opened", Duration::from_secs(30), || {
        !api.seen().is_empty()
    });
    target.set_down(false);
    daemon::wait_until("incident resolved", Duration::from_secs(40), || {
        api.seen().len() >= 2
    });
    daemon::wait_until("chat told twice", Duration::from_secs(30), || {
        chat.seen().len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));

    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v1/pages/pgE2E/incidents")
    );
    assert_eq!(
        seen[0].body["incident"]["components"]["cmpE2E"],
        "partial_outage"
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("PATCH", "/v1/pages/pgE2E/incidents/inc7")
    );
    assert_eq!(seen[1].body["incident"]["status"], "resolved");
    for s in &seen {
        assert_eq!(s.header("Authorization"), Some("OAuth k-e2e"));
    }
    let texts: Vec<String> = chat
        .seen()
        .iter()
        .map(|s| s.body["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(texts[0].contains("switched to backup"), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("back on primary")),
        "{texts:?}"
    );
    let m = daemon::get(&d.url("/metrics")).unwrap().body;
    assert!(
        m.lines().any(|l| l == r#"switchboard_announcements_total{audience="public",channel="statuspage",kind="failover",result="success"} 1"#),
        "{m}"
    );
    drop(d);
    drop(rt);
}
