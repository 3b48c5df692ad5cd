//! Holds through the real daemon: the recovery hold, a pin and maintenance are each shown with their end in `switchboard status`, `GET /api/v1/services/{id}` and the metrics, and in on-call's e-mail about an announced change.

use std::time::Duration;

use crate::support::control;
use crate::support::daemon;
use crate::support::smtp;

use control::{json, request, service};
use daemon::{metric, wait_until, Daemon, Target};

const SERVICE: &str = "ticket-submission";
const SVC: &str = "/api/v1/services/ticket-submission";

/// `switchboard status` as a viewer sees it.
fn status(d: &Daemon, token: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("status")
        .env("SWITCHBOARD_URL", &d.base)
        .env("SWITCHBOARD_TOKEN", token)
        .output()
        .expect("switchboard status");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The hold `hold` as every place shows it: its `until` in the API's `in_force` list (checked
/// against `switchboard status` and the metrics too).
fn shown(d: &Daemon, token: &str, hold: &str) -> Option<String> {
    let s = service(d, token, SERVICE);
    let h = s["holds"]["in_force"]
        .as_array()?
        .iter()
        .find(|h| h["hold"] == hold)?
        .clone();
    let until = h["until"].as_str().map(str::to_owned);
    let words = match &until {
        Some(t) => format!("{hold} until {t}"),
        None => format!("{hold} until an operator ends it"),
    };
    let text = status(d, token);
    assert!(text.contains(&words), "{words:?} not in:\n{text}");
    let series = format!("switchboard_service_hold{{hold=\"{hold}\",service=\"{SERVICE}\"}}");
    assert_eq!(metric(d, &series), Some(1.0), "{series}");
    let end = format!(
        "switchboard_service_hold_until_timestamp_seconds{{hold=\"{hold}\",service=\"{SERVICE}\"}}"
    );
    let end = metric(d, &end).unwrap_or(-1.0);
    assert_eq!(end > 1.7e9, until.is_some(), "end timestamp {end}");
    Some(until.unwrap_or_default())
}

#[test]
fn recovery_hold_pin_and_maintenance_are_shown_with_their_ends_everywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (main, port, t) = control::prepare(dir.path(), &target, None);
    // A long recovery hold, so the service stays recovering while we look.
    let svc = dir.path().join("probes/ticket-submission.toml");
    let text = std::fs::read_to_string(&svc).expect("service file");
    std::fs::write(
        &svc,
        text.replace("recovery_hold = \"2s\"", "recovery_hold = \"1h\""),
    )
    .expect("write service file");
    let d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));
    wait_until("checks healthy", Duration::from_secs(30), || {
        control::all_healthy(&d, &t.viewer, SERVICE)
    });
    for hold in ["flapping", "pin", "maintenance", "recovery_hold"] {
        let series = format!("switchboard_service_hold{{hold=\"{hold}\",service=\"{SERVICE}\"}}");
        assert_eq!(metric(&d, &series), Some(0.0), "{series} exported at 0");
    }

    // Failed over, then the primary recovers: failback waits for the recovery hold.
    target.set_down(true);
    wait_until("failed over", Duration::from_secs(30), || {
        d.location("submit-ticket") == target.url("/backup")
    });
    target.set_down(false);
    wait_until("recovering", Duration::from_secs(30), || {
        service(&d, &t.viewer, SERVICE)["state"] == "recovering"
    });
    let until = shown(&d, &t.viewer, "recovery_hold").expect("recovery hold shown");
    assert!(until.starts_with("20"), "{until}");
    let s = service(&d, &t.viewer, SERVICE);
    assert_eq!(
        s["holds"]["recovery_hold"]["until"],
        until.as_str(),
        "{s:#}"
    );
    // A pin with an end replaces the recovery hold (the operator holds the routes).
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/pin")),
        Some(&t.operator),
        Some(r#"{"reason":"keep the backup while we watch","side":"backup","until":"30m"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let until = shown(&d, &t.viewer, "pin").expect("pin shown");
    assert_eq!(
        service(&d, &t.viewer, SERVICE)["holds"]["pin"]["until"],
        until.as_str()
    );
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/unpin")),
        Some(&t.operator),
        Some(r#"{"reason":"seen enough"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(shown(&d, &t.viewer, "pin").is_none());

    // Maintenance with an end.
    let r = request(
        "POST",
        &d.url(&format!("{SVC}/maintenance")),
        Some(&t.operator),
        Some(r#"{"reason":"form upgrade","action":"start","duration":"1h"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(json(&r)["state"], "maintenance");
    let until = shown(&d, &t.viewer, "maintenance").expect("maintenance shown");
    assert_eq!(
        service(&d, &t.viewer, SERVICE)["holds"]["maintenance"]["until"],
        until.as_str()
    );
    // On-call's e-mail about the change says which hold applies and until when.
    let want =
        format!("Hold: maintenance: automatic rules paused, customers on the backup until {until}");
    wait_until("the maintenance e-mail", Duration::from_secs(30), || {
        std::fs::read_dir(dir.path().join("mail"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| smtp::parse_mail(&e.path()))
            .any(|m| {
                m.header("To") == Some("support-oncall@example.com")
                    && m.part("text/plain").is_some_and(|t| t.contains(&want))
            })
    });
    assert_eq!(
        metric(
            &d,
            &format!("switchboard_service_hold{{hold=\"recovery_hold\",service=\"{SERVICE}\"}}")
        ),
        Some(0.0),
        "the recovery hold ended with the recovery"
    );
}
