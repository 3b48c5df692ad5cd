//! Help Center notices (`[[on_switch]] kind = "zendesk_article"`) against a fake Zendesk on
//! loopback that checks method, path, `Authorization: Bearer` and the JSON body: through the
//! real outbox (access tokens refreshed when expired and after a 401, a 429 and a 500 retried
//! without repeating a request already answered), and through the real daemon (a failover
//! puts the notice up, a kill -9 and restart later the failback restores the original, with
//! the refresh token Zendesk rotated read back from the store).

use crate::support::daemon::{self, Daemon, Target};
use crate::support::zendesk::{
    FakeZendesk, ARTICLE, CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH, LOCALE, ORIGINAL_BODY,
    ORIGINAL_TITLE,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard::announce::outbox::{self, Delivery};
use switchboard::announce::zendesk::{self, ZendeskArticles};
use switchboard::clock::Timestamp;
use switchboard::config::{Secret, ZendeskArticleSpec, ZendeskOAuth};
use switchboard::failover::{Cause, Side, State, Transition};
use switchboard::store::{Store, StoreHandle};
use switchboard::view::RouteView;
use tokio::sync::{mpsc, watch, Notify};

const BACKUP: &str = "https://forms.example.net/support";

fn translation_path() -> String {
    format!("/api/v2/help_center/articles/{ARTICLE}/translations/{LOCALE}")
}

fn article_path() -> String {
    format!("/api/v2/help_center/articles/{ARTICLE}")
}

/// The spec of the article on `fake`, its secrets in files under `dir`.
fn spec(fake: &FakeZendesk, dir: &Path) -> ZendeskArticleSpec {
    std::fs::write(dir.join("client.secret"), format!("{CLIENT_SECRET}\n")).unwrap();
    std::fs::write(dir.join("refresh.token"), format!("{FIRST_REFRESH}\n")).unwrap();
    ZendeskArticleSpec {
        id: "hc-notice".into(),
        base_url: fake.base.clone(),
        article_id: ARTICLE,
        locale: LOCALE.into(),
        title: "{{ service_name }} is on its backup".into(),
        body: "<p>Please use <a href=\"{{ target }}\">the backup form</a>.</p>".into(),
        promote: true,
        oauth: ZendeskOAuth {
            client_id: CLIENT_ID.into(),
            client_secret: Secret::File(dir.join("client.secret")),
            refresh_token: Secret::File(dir.join("refresh.token")),
        },
        timeout: Duration::from_secs(5),
    }
}

fn transition(from: State, to: State) -> Transition {
    Transition {
        service: "ticket-submission".into(),
        from,
        to,
        cause: Cause::PrimaryDown,
        at: Timestamp::now(),
        actor: "system".into(),
        reason: "portal-form: HTTP 503".into(),
        evidence: vec![],
        public_message: None,
    }
}

/// Commits `t` with the article's row for routes now on `side`.
fn commit(store: &Store, spec: &ZendeskArticleSpec, t: &Transition, side: Side) {
    let routes = [RouteView {
        id: "submit-ticket".into(),
        service: "ticket-submission".into(),
        primary: "https://support.example.com/new".into(),
        backup: BACKUP.into(),
        active: side,
    }];
    let rows = zendesk::plan(std::slice::from_ref(spec), t, "Ticket submission", &routes);
    store.commit_transition(t, "cfg", &rows).unwrap();
}

/// Waits for the next successful delivery, collecting the failed attempts before it.
async fn next_ok(rx: &mut mpsc::UnboundedReceiver<Delivery>, failed: &mut Vec<String>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let d = rx.recv().await.expect("outbox alive");
            match &d.result {
                Ok(_) => return d,
                Err(e) => failed.push(e.clone()),
            }
        }
    })
    .await
    .expect("a delivery within 30 s")
}

#[tokio::test]
async fn a_notice_and_its_restore_through_the_outbox_refresh_tokens_and_retry_without_repeating() {
    let fake = FakeZendesk::start();
    // Access tokens that expire at once: each request first refreshes (no 401 needed).
    fake.set_expires_in(0);
    // A 429 on the notice's translation and a 500 on the promotion, once each.
    fake.fail_once("PUT", &translation_path(), 429, Some(1));
    fake.fail_once("PUT", &article_path(), 500, None);
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(&fake, dir.path());
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    store
        .ensure_service("ticket-submission", Timestamp::now())
        .unwrap();
    commit(
        &store,
        &spec,
        &transition(State::Operational, State::FailedOver),
        Side::Backup,
    );

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let transport = ZendeskArticles::new([&spec], StoreHandle::shared(store.clone()));
    let task = tokio::spawn(outbox::run(
        StoreHandle::shared(store.clone()),
        Arc::new(transport),
        wake.clone(),
        tx,
        stop_rx,
    ));
    wake.notify_one();
    let mut failed = Vec::new();
    let notice = next_ok(&mut rx, &mut failed).await;
    assert_eq!(
        failed,
        [
            format!(
                "429 rate limited on PUT {}; retrying after 1s",
                translation_path()
            ),
            format!(
                "500 on PUT {}: {{\"error\":\"scripted failure\"}}",
                article_path()
            ),
        ]
    );
    assert_eq!(
        notice.result.as_deref(),
        Ok(format!("200 PUT article {ARTICLE} promoted").as_str())
    );
    let (title, body, promoted) = fake.article();
    assert_eq!(title, "Ticket submission is on its backup");
    assert_eq!(
        body,
        "<p>Please use <a href=\"https:&#x2f;&#x2f;forms.example.net&#x2f;support\">the backup form</a>.</p>"
    );
    assert!(promoted);
    // The original was read once and each change written once, though the row was tried
    // three times: the retries resumed after the last step Zendesk had answered.
    assert_eq!(
        fake.api_calls(),
        [
            format!("GET {} -> 200", translation_path()),
            format!("GET {} -> 200", article_path()),
            format!("PUT {} -> 429", translation_path()),
            format!("PUT {} -> 200", translation_path()),
            format!("PUT {} -> 500", article_path()),
            format!("PUT {} -> 200", article_path()),
        ]
    );
    // Expired access tokens were refreshed before use: one refresh per request, no 401.
    assert_eq!(fake.refreshes(), 6);
    assert!(fake.seen().iter().all(|s| s.status != 401));

    // Tokens now last; the restore's first request finds its token revoked (401): it
    // refreshes once and sends the request again.
    fake.set_expires_in(7200);
    fake.fail_once("PUT", &translation_path(), 401, None);
    commit(
        &store,
        &spec,
        &transition(State::FailedOver, State::Operational),
        Side::Primary,
    );
    wake.notify_one();
    let restore = next_ok(&mut rx, &mut failed).await;
    assert_eq!(
        failed.len(),
        2,
        "the 401 is not a failed attempt: {failed:?}"
    );
    assert_eq!(
        restore.result.as_deref(),
        Ok(format!("200 PUT translation {LOCALE}; 200 PUT article {ARTICLE} unpromoted").as_str())
    );
    assert_eq!(
        fake.article(),
        (ORIGINAL_TITLE.to_owned(), ORIGINAL_BODY.to_owned(), false)
    );
    let seen = fake.seen();
    let tail: Vec<(String, u16, Option<String>)> = seen[seen.len() - 5..]
        .iter()
        .map(|s| (s.path.clone(), s.status, s.authorization.clone()))
        .collect();
    let bearer = |n: u32| Some(format!("Bearer at-{n}-live"));
    assert_eq!(
        tail,
        [
            ("/oauth/tokens".to_owned(), 200, None),
            (translation_path(), 401, bearer(7)),
            ("/oauth/tokens".to_owned(), 200, None),
            (translation_path(), 200, bearer(8)),
            (article_path(), 200, bearer(8)),
        ]
    );
    // Every token request sent the grant, the client and the refresh token Zendesk had
    // rotated to last (the n-th refresh hands out `rt-n-rotated` and `at-n-live`); every
    // API request carried the access token granted last.
    let mut grants = 0;
    for s in &seen {
        if s.path == "/oauth/tokens" {
            let expected = match grants {
                0 => FIRST_REFRESH.to_owned(),
                n => format!("rt-{n}-rotated"),
            };
            assert_eq!(s.method, "POST");
            assert_eq!(s.authorization, None);
            assert_eq!(
                s.body,
                serde_json::json!({
                    "grant_type": "refresh_token",
                    "refresh_token": expected,
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                }),
                "{seen:#?}"
            );
            grants += 1;
        } else {
            assert_eq!(s.authorization, bearer(grants), "{s:?}");
        }
    }
    assert_eq!(grants, 8);
    // The rotated refresh token is kept where a restart finds it.
    assert_eq!(
        store
            .zendesk_refresh_token(&sha256_hex(FIRST_REFRESH))
            .unwrap()
            .as_deref(),
        Some("rt-8-rotated")
    );
    assert_eq!(fake.current_refresh(), "rt-8-rotated");
    drop(stop);
    let _ = task.await;
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The `[[on_switch]]` entry of the daemon test: the client secret from the environment, the
/// refresh token from a file beside the configuration.
fn article_entry(fake: &FakeZendesk) -> String {
    format!(
        r#"
[[on_switch]]
kind = "zendesk_article"
id = "hc-notice"
base_url = "{base}"
article_id = {ARTICLE}
locale = "{LOCALE}"
title = "{{{{ service_name }}}}: we are on our backup"
body = "<p>Please use <a href=\"{{{{ target }}}}\">our backup form</a>.</p>{{% if public_message %}}<p>{{{{ public_message }}}}</p>{{% endif %}}"
client_id = "{CLIENT_ID}"
client_secret_env = "TEST_ZENDESK_CLIENT_SECRET"
refresh_token_file = "../zendesk.refresh"
"#,
        base = fake.base
    )
}

#[test]
fn a_failover_puts_the_notice_up_and_the_failback_restores_the_original_after_a_restart() {
    let fake = FakeZendesk::start();
    // The promotion fails once: the retry must not write the translation again.
    fake.fail_once("PUT", &article_path(), 500, None);
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start();
    let (config, port) = daemon::write_config_with(
        dir.path(),
        &target,
        daemon::FILE_MAIL,
        "var/switchboard.db",
        "2s",
    );
    let service = dir.path().join("probes/ticket-submission.toml");
    let mut text = std::fs::read_to_string(&service).unwrap();
    text.push_str(&article_entry(&fake));
    std::fs::write(&service, text).unwrap();
    std::fs::write(dir.path().join("zendesk.refresh"), FIRST_REFRESH).unwrap();
    let env = [("TEST_ZENDESK_CLIENT_SECRET", CLIENT_SECRET)];
    let logs = [
        dir.path().join("daemon1.log"),
        dir.path().join("daemon2.log"),
    ];
    let mut d = Daemon::start_with(&config, port, &env, Some(&logs[0]));
    daemon::wait_until("primary in use", Duration::from_secs(30), || {
        d.location("submit-ticket") == target.url("/form")
    });
    assert!(fake.seen().is_empty(), "nothing is sent before a switch");

    target.set_down(true);
    let notice_title = "Ticket submission: we are on our backup";
    daemon::wait_until(
        "the notice up and promoted",
        Duration::from_secs(40),
        || {
            let (title, _, promoted) = fake.article();
            title == notice_title && promoted
        },
    );
    let (_, body, _) = fake.article();
    let escaped = target.url("/backup").replace('/', "&#x2f;");
    assert_eq!(
        body,
        format!("<p>Please use <a href=\"{escaped}\">our backup form</a>.</p>")
    );
    // Let the outbox record the delivery before the crash.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        fake.api_calls(),
        [
            format!("GET {} -> 200", translation_path()),
            format!("GET {} -> 200", article_path()),
            format!("PUT {} -> 200", translation_path()),
            format!("PUT {} -> 500", article_path()),
            format!("PUT {} -> 200", article_path()),
        ],
        "one write of the notice, the promotion retried"
    );
    let notice_put = fake
        .seen()
        .into_iter()
        .find(|s| s.method == "PUT" && s.path == translation_path())
        .expect("the notice's PUT");
    assert_eq!(
        notice_put.body,
        serde_json::json!({"translation": {"title": notice_title, "body": body}})
    );
    assert_eq!(
        notice_put.authorization.as_deref(),
        Some("Bearer at-1-live")
    );

    // A crash, and a new process: the access token is gone from memory, and the configured
    // refresh token no longer works (Zendesk rotated it): the stored one must be used.
    d.kill9();
    assert_ne!(fake.current_refresh(), FIRST_REFRESH);
    let d = Daemon::start_with(&config, port, &env, Some(&logs[1]));
    target.set_down(false);
    daemon::wait_until("the original restored", Duration::from_secs(40), || {
        fake.article() == (ORIGINAL_TITLE.to_owned(), ORIGINAL_BODY.to_owned(), false)
    });
    std::thread::sleep(Duration::from_secs(1));
    let calls = fake.api_calls();
    assert_eq!(
        calls[5..],
        [
            format!("PUT {} -> 200", translation_path()),
            format!("PUT {} -> 200", article_path()),
        ],
        "{calls:#?}"
    );
    let seen = fake.seen();
    let tokens: Vec<(String, u16)> = seen
        .iter()
        .filter(|s| s.path == "/oauth/tokens")
        .map(|s| {
            (
                s.body["refresh_token"].as_str().unwrap_or("").to_owned(),
                s.status,
            )
        })
        .collect();
    assert_eq!(
        tokens,
        [
            (FIRST_REFRESH.to_owned(), 200),
            ("rt-1-rotated".to_owned(), 200)
        ],
        "one refresh per process, the second with the rotated token"
    );
    let restore = &seen[seen.len() - 2];
    assert_eq!(
        restore.body,
        serde_json::json!({"translation": {"title": ORIGINAL_TITLE, "body": ORIGINAL_BODY}})
    );
    assert_eq!(restore.authorization.as_deref(), Some("Bearer at-2-live"));
    drop(d);

    // Both deliveries are in the audit chain with Zendesk's answers (an auditor's export
    // needs none of the secrets).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["audit", "export", "--format", "jsonl", "--config"])
        .arg(&config)
        .env_remove("TEST_ZENDESK_CLIENT_SECRET")
        .output()
        .expect("audit export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let receipts: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "announcement_delivered" && r["detail"]["channel"] == "zendesk")
        .map(|r| {
            (
                r["detail"]["message_kind"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                r["detail"]["reply"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        receipts,
        [
            (
                "failover".to_owned(),
                format!("200 PUT article {ARTICLE} promoted")
            ),
            (
                "failback".to_owned(),
                format!("200 PUT translation {LOCALE}; 200 PUT article {ARTICLE} unpromoted")
            ),
        ]
    );
    // No secret in any log line.
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        for secret in [
            CLIENT_SECRET,
            FIRST_REFRESH,
            "rt-1-rotated",
            "at-1-live",
            "at-2-live",
        ] {
            assert!(!text.contains(secret), "{secret} in {}", log.display());
        }
    }
}
