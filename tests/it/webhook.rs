//! `on_switch` webhooks end to end: the real daemon fails over and calls a local HTTP server
//! with the templated body and a secret header from the environment, retrying until it is
//! accepted; the secret never reaches the log.

use crate::support::daemon;
use crate::support::http::Receiver;

use daemon::{wait_until, write_config, Daemon, Target, FILE_MAIL};
use std::time::Duration;

#[test]
fn a_failover_calls_the_webhook_with_its_template_and_secret_until_accepted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let target = Target::start();
    let hooks = Receiver::start(1);
    let hook_url = &hooks.url;
    let (config, port) = write_config(dir, &target, FILE_MAIL);
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
        || hooks.requests().len() >= 2,
    );
    let calls = hooks.requests();
    for call in &calls {
        let (head, body) = (&call.head, call.body_text());
        assert!(head.starts_with("POST /hooks/banner "), "{head}");
        assert_eq!(
            call.header("authorization"),
            Some(format!("Bearer {secret}").as_str()),
            "{head}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"));
        assert_eq!(v["banner"], "Ticket submission now uses its backup route");
        assert_eq!(v["state"], "failed_over");
        assert_eq!(v["routes"]["submit-ticket"], target.url("/backup").as_str());
    }
    assert_eq!(calls[0].body, calls[1].body, "a retry sends the same body");
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
    let (config, _) = write_config(dir.path(), &target, FILE_MAIL);
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
