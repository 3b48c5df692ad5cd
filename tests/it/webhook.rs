//! `on_switch` webhooks end to end: the real daemon fails over and calls a local HTTP server
//! with the templated body and a secret header from the environment, retrying until it is
//! accepted; the secret never reaches the log.

#[path = "support/daemon.rs"]
mod daemon;

use daemon::{wait_until, write_config, Daemon, Target};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Requests received: (request line + headers, body).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A webhook receiver that answers 503 to the first request and 200 after.
fn receiver() -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hooks/banner", l.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&raw).to_string();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let n = {
                let mut seen = log.lock().expect("lock");
                seen.push((head.to_string(), body.to_string()));
                seen.len()
            };
            let status = if n == 1 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

#[test]
fn a_failover_calls_the_webhook_with_its_template_and_secret_until_accepted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let target = Target::start();
    let (hook_url, seen) = receiver();
    let (config, port) = write_config(dir, &target, "transport = \"file\"\ndir = \"var/mail\"");
    let service = dir.join("probes/ticket-submission.toml");
    let mut text = std::fs::read_to_string(&service).expect("read");
    text.push_str(&format!(
        r#"
[[on_switch]]
id = "help-center-banner"
url = "{hook_url}"
headers = {{ Authorization = "Bearer ${{SB_TEST_BANNER_TOKEN}}" }}
body = '{{"banner": "{{{{service_name}}}} now uses its {{{{side}}}} route", "state": "{{{{to}}}}", "routes": {{{{routes}}}}}}'
"#
    ));
    std::fs::write(&service, text).expect("write");
    let secret = "s3cr3t-banner-token";
    let log = dir.join("daemon.log");
    let d = Daemon::start_with(
        &config,
        port,
        &[("SB_TEST_BANNER_TOKEN", secret)],
        Some(&log),
    );
    target.set_down(true);
    wait_until(
        "the webhook was retried after its 503 and accepted",
        Duration::from_secs(30),
        || seen.lock().expect("lock").len() >= 2,
    );
    let calls = seen.lock().expect("lock").clone();
    for (head, body) in &calls {
        assert!(head.starts_with("POST /hooks/banner "), "{head}");
        assert!(
            head.contains(&format!("authorization: Bearer {secret}"))
                || head.contains(&format!("Authorization: Bearer {secret}")),
            "{head}"
        );
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"));
        assert_eq!(v["banner"], "Ticket submission now uses its backup route");
        assert_eq!(v["state"], "failed_over");
        assert_eq!(v["routes"]["submit-ticket"], target.url("/backup").as_str());
    }
    assert_eq!(calls[0].1, calls[1].1, "a retry sends the same body");
    // Give the daemon a moment to log the accepted delivery, then check it never logged the secret.
    wait_until("delivery logged", Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("webhook help-center-banner")
    });
    drop(d);
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.contains("503"),
        "the refused attempt is logged:\n{logged}"
    );
    assert!(
        !logged.contains(secret),
        "the secret never reaches the log:\n{logged}"
    );
}

#[test]
fn a_webhook_needing_an_unset_variable_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, _) = write_config(
        dir.path(),
        &target,
        "transport = \"file\"\ndir = \"var/mail\"",
    );
    let service = dir.path().join("probes/ticket-submission.toml");
    let mut text = std::fs::read_to_string(&service).expect("read");
    text.push_str("\n[[on_switch]]\nurl = \"http://127.0.0.1:9/x\"\nheaders = { Authorization = \"Bearer ${SB_TEST_SURELY_UNSET}\" }\nbody = '{\"x\": \"{{nope}}\"}'\n");
    std::fs::write(&service, text).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs environment variable SB_TEST_SURELY_UNSET, which is not set"),
        "{err}"
    );
    assert!(err.contains("unknown placeholder(s) nope"), "{err}");
}
