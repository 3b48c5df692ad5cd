//! Slack through a bot: the real daemon posts Block Kit messages with `chat.postMessage` to a
//! local receiver playing Slack's Web API. The failover opens a thread; after a kill -9 and a
//! restart the recovery is posted as replies to the stored `ts`; the next incident opens a
//! thread of its own; the bot token appears in no log line, error or database file.

use crate::support::daemon::{self, Daemon, Target};
use crate::support::http::{Request, SlackApi};
use std::time::Duration;

const TOKEN: &str = "xoxb-111-222-s3cr3tT0ken";

fn body(r: &Request) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("a JSON body")
}

fn subject(r: &Request) -> String {
    body(r)["text"].as_str().unwrap_or("").to_owned()
}

/// `[chat]` for a bot posting to `api`, its token in the environment variable `TEST_SLACK_TOKEN`.
fn chat_table(api: &SlackApi) -> String {
    format!(
        "transport = \"file\"\ndir = \"var/mail\"\n\n[chat]\nchannel = \"C0SUPPORT\"\nbot_token_env = \"TEST_SLACK_TOKEN\"\napi_base = \"{}\"\n",
        api.base
    )
}

#[test]
fn one_thread_per_incident_kept_across_a_restart() {
    let api = SlackApi::start(TOKEN);
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = daemon::write_config_with(
        dir.path(),
        &target,
        &chat_table(&api),
        "var/switchboard.db",
        "2s",
    );
    let log = dir.path().join("daemon.log");
    let env = [("TEST_SLACK_TOKEN", TOKEN)];
    let mut d = Daemon::start_with(&config, port, &env, Some(&log));
    daemon::wait_until("primary in use", Duration::from_secs(30), || {
        d.location("submit-ticket") == target.url("/form")
    });

    target.set_down(true);
    daemon::wait_until("the failover posted", Duration::from_secs(30), || {
        !api.requests().is_empty()
    });
    // Let the outbox mark the row delivered before the crash.
    std::thread::sleep(Duration::from_secs(1));
    let first = api.requests()[0].clone();
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/api/chat.postMessage")
    );
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(first.header("Authorization"), Some(bearer.as_str()));
    let b = body(&first);
    assert_eq!(b["channel"], "C0SUPPORT");
    assert!(
        b.get("thread_ts").is_none(),
        "the first message opens the thread: {b:#}"
    );
    assert!(subject(&first).contains("switched to backup"), "{b:#}");
    assert_eq!(b["blocks"][0]["type"], "header", "{b:#}");
    let thread = "1700000000.000001";

    // A crash, and a new process: the thread is read back from the database.
    d.kill9();
    let d = Daemon::start_with(&config, port, &env, Some(&dir.path().join("daemon2.log")));
    target.set_down(false);
    daemon::wait_until("the failback posted", Duration::from_secs(40), || {
        api.requests()
            .iter()
            .any(|r| subject(r).contains("back on primary"))
    });
    let incident: Vec<Request> = api.requests();
    for r in &incident[1..] {
        assert_eq!(
            body(r)["thread_ts"],
            thread,
            "every later message of the incident is a reply: {}",
            subject(r)
        );
    }
    assert!(incident.len() >= 2, "{incident:#?}");
    // Only the message that ends the incident is also shown in the channel.
    for r in &incident[1..] {
        let broadcast = body(r)["reply_broadcast"] == true;
        assert_eq!(
            broadcast,
            subject(r).contains("back on primary"),
            "{}",
            subject(r)
        );
    }

    // The next incident starts a thread of its own, whose replies follow it.
    let before = incident.len();
    target.set_down(true);
    daemon::wait_until(
        "the second failover posted",
        Duration::from_secs(30),
        || {
            api.requests()[before..]
                .iter()
                .any(|r| subject(r).contains("switched to backup"))
        },
    );
    let second = api.requests()[before].clone();
    assert!(
        subject(&second).contains("switched to backup"),
        "{}",
        subject(&second)
    );
    assert!(
        body(&second).get("thread_ts").is_none(),
        "a new incident is not a reply to the last one's thread"
    );
    drop(d);

    // The token is nowhere but in the requests to Slack.
    for file in [
        "daemon.log",
        "daemon2.log",
        "var/switchboard.db",
        "var/switchboard.db-wal",
    ] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cr3tT0ken"),
            "the bot token is in {file}"
        );
    }
}

#[test]
fn a_refused_token_is_reported_without_the_token() {
    let api = SlackApi::start("xoxb-the-right-one");
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = daemon::write_config(dir.path(), &target, &chat_table(&api));
    let log = dir.path().join("daemon.log");
    let d = Daemon::start_with(&config, port, &[("TEST_SLACK_TOKEN", TOKEN)], Some(&log));
    target.set_down(true);
    daemon::wait_until("the refusal logged", Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("chat.postMessage refused: invalid_auth")
    });
    drop(d);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("s3cr3tT0ken"),
        "the token is in the log:\n{text}"
    );
    let db = std::fs::read(dir.path().join("var/switchboard.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("var/switchboard.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!String::from_utf8_lossy(&bytes).contains("s3cr3tT0ken"));
    }
}
