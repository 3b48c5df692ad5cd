//! The auditor's checklist (issue 16 point 8) as one test through the real daemon: a failover and failback, a live drill, a manual failover with a reason, a review and a reload, then `switchboard audit export` answering each question an auditor asks.
//!
//! Real parts: the binary, aiosmtpd taking the e-mail (its Maildir is what "the message went
//! out" is checked against), a webhook receiver on loopback, the binary's own `audit export`
//! and `audit verify` on the database the daemon writes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::http::Receiver;
use crate::support::{control, daemon, smtp};

use control::{all_healthy, audit, json, request, wait_drill};
use daemon::{wait_until, Daemon, Target};
use serde_json::Value;

const SERVICE: &str = "ticket-submission";
const LIMIT: Duration = Duration::from_secs(60);

/// `switchboard audit ARGS --config main`: (exit code, stdout, stderr).
fn audit_cli(main: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("audit")
        .args(args)
        .arg("--config")
        .arg(main)
        .output()
        .expect("run switchboard audit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The export, parsed: every line must be one JSON object.
fn export(main: &Path) -> Vec<Value> {
    let (code, out, err) = audit_cli(main, &["export", "--format", "jsonl"]);
    assert_eq!(code, 0, "audit export: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn post(d: &Daemon, token: &str, path: &str, body: &str) -> daemon::Response {
    request("POST", &d.url(path), Some(token), Some(body))
}

/// The transition records among `recs`.
fn transitions(recs: &[Value]) -> Vec<&Value> {
    recs.iter().filter(|r| r["kind"] == "transition").collect()
}

/// The check grounds of a transition record (`detail.grounds` of kind `check`).
fn checks_cited(r: &Value) -> Vec<&Value> {
    r["detail"]["grounds"]
        .as_array()
        .map(|g| g.iter().filter(|g| g["kind"] == "check").collect())
        .unwrap_or_default()
}

#[test]
fn an_auditor_gets_every_answer_from_the_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = smtp::SmtpServer::start(&dir.path().join("maildir"));
    let target = Target::start();
    let hooks = Receiver::start(0);
    let email = format!("transport = \"smtp\"\nsmtp_url = \"{}\"", smtp.url());
    let (main, port, t) = control::prepare(dir.path(), &target, Some(&email));
    let svc = dir.path().join("probes/ticket-submission.toml");
    let mut text = std::fs::read_to_string(&svc).expect("service file");
    text = text.replacen(
        "recovery_hold",
        "drill_targets = { switch = \"5s\", notify = \"30s\" }\nrecovery_hold",
        1,
    );
    text.push_str(&format!(
        "\n[[on_switch]]\nid = \"banner\"\nurl = \"{}\"\n",
        hooks.url
    ));
    std::fs::write(&svc, text).expect("write service");
    // The chain is keyed (`[audit] key_file`), as an auditor expects of tamper evidence.
    let key = dir.path().join("audit.key");
    let made = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["audit", "keygen"])
        .arg(&key)
        .output()
        .expect("audit keygen");
    assert!(made.status.success(), "{made:?}");
    let mut main_text = std::fs::read_to_string(&main).expect("main config");
    main_text.push_str("\n[audit]\nkey_file = \"audit.key\"\n");
    std::fs::write(&main, main_text).expect("write main config");
    let d = Daemon::start_with(&main, port, &[], Some(&dir.path().join("daemon.log")));
    let (primary, backup) = (target.url("/form"), target.url("/backup"));
    wait_until("checks healthy", LIMIT, || {
        all_healthy(&d, &t.viewer, SERVICE)
    });

    // 1. An automatic failover and failback: the primary form breaks, then recovers.
    target.set_down(true);
    wait_until("failed over", LIMIT, || {
        d.location("submit-ticket") == backup
    });
    target.set_down(false);
    wait_until("failed back", LIMIT, || {
        d.location("submit-ticket") == primary
    });
    wait_until("operational", LIMIT, || {
        control::service(&d, &t.viewer, SERVICE)["state"] == "operational"
    });

    // 2. A live drill, judged against its targets.
    let r = post(
        &d,
        &t.operator,
        "/api/v1/drills",
        &format!(
            r#"{{"service":"{SERVICE}","mode":"live","duration":"4s","reason":"Q4 failover drill","ticket":"OPS-77"}}"#
        ),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let drill_id = json(&r)["id"].as_str().expect("drill id").to_owned();
    let report = wait_drill(&d, &t.operator, &drill_id);
    assert_eq!(report["status"], "pass", "{report:#}");
    wait_until("operational after the drill", LIMIT, || {
        control::service(&d, &t.viewer, SERVICE)["state"] == "operational"
    });

    // 3. A manual failover with a reason, and the manual failback that ends it (the checks do
    //    not change, so nothing automatic follows it).
    let r = post(
        &d,
        &t.operator,
        &format!("/api/v1/services/{SERVICE}/failover"),
        r#"{"reason":"INC-4711: vendor reports form errors in eu-west","public_message":"We moved you to our backup form."}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.location("submit-ticket"), backup);
    let r = post(
        &d,
        &t.operator,
        &format!("/api/v1/services/{SERVICE}/failback"),
        r#"{"reason":"INC-4711: vendor fixed the form"}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.location("submit-ticket"), primary);

    // 4. The automatic failover is reviewed.
    let pending = audit(&d, &t.viewer, "?pending_review=true&limit=1000");
    let failover_id = pending
        .iter()
        .find(|r| r["cause"] == "primary_down" && r["to"] == "failed_over")
        .and_then(|r| r["id"].as_i64())
        .expect("the automatic failover awaits review");
    let r = post(
        &d,
        &t.operator,
        &format!("/api/v1/audit/{failover_id}/review"),
        r#"{"note":"form vendor outage, matches INC-4700"}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");

    // 5. A reload of a good configuration, and one of a bad one (kept out with diagnostics).
    let r = request("POST", &d.url("/-/reload"), Some(&t.admin), None);
    assert_eq!(r.status, 200, "{r:?}");
    let broken = dir.path().join("probes/broken.toml");
    std::fs::write(
        &broken,
        "[service]\nid = \"broken\"\nfailback = \"sometimes\"\n",
    )
    .expect("write broken");
    let r = request("POST", &d.url("/-/reload"), Some(&t.admin), None);
    assert_eq!(r.status, 422, "{r:?}");
    std::fs::remove_file(&broken).expect("remove broken");

    // Every message out: each one in the Maildir has its proof in the chain.
    let mut recs = Vec::new();
    wait_until("every announcement delivered and proven", LIMIT, || {
        recs = export(&main);
        let proven: BTreeSet<String> = recs
            .iter()
            .filter(|r| r["kind"] == "announcement_delivered")
            .filter_map(|r| r["detail"]["message_id"].as_str().map(str::to_owned))
            .collect();
        let arrived = smtp.messages();
        let webhooks = recs
            .iter()
            .filter(|r| {
                r["kind"] == "announcement_delivered" && r["detail"]["channel"] == "webhook"
            })
            .count();
        !arrived.is_empty()
            && arrived.iter().all(|m| {
                smtp::parse_mail(m)
                    .header("Message-ID")
                    .is_some_and(|id| proven.contains(id))
            })
            && webhooks >= 6
            && daemon::metric(&d, "switchboard_outbox_backlog ") == Some(0.0)
    });
    recs = export(&main);
    let by_id = |id: i64| recs.iter().find(|r| r["id"] == id);
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let node = node.trim();
    let ts = transitions(&recs);

    // What, when, where: every change names its service, states, time, node and routes.
    assert!(ts.len() >= 7, "{ts:#?}");
    for r in &ts {
        assert_eq!(r["service"], SERVICE, "{r}");
        assert!(r["from"].is_string() && r["to"].is_string(), "{r}");
        assert!(r["at"].as_str().is_some_and(|a| a.ends_with('Z')), "{r}");
        assert_eq!(r["node"], node, "{r}");
        for side in ["routes_before", "routes_after"] {
            let to = r[side]["submit-ticket"].as_str().unwrap_or_default();
            assert!(to == primary || to == backup, "{side}: {r}");
        }
    }

    // Who and why: the operator's name and reason on the manual failover; `system` and the
    // rule's reason on automatic ones; the public words beside the reason, not instead of it.
    let manual = ts
        .iter()
        .find(|r| r["actor"] == "olga" && r["to"] == "failed_over")
        .expect("the manual failover");
    assert_eq!(
        manual["reason"],
        "INC-4711: vendor reports form errors in eu-west"
    );
    assert_eq!(manual["cause"], "operator");
    assert_eq!(
        manual["detail"]["public_message"],
        "We moved you to our backup form."
    );
    assert!(
        ts.iter().any(|r| r["actor"] == "olga"
            && r["from"] == "failed_over"
            && r["reason"] == "INC-4711: vendor fixed the form"),
        "the manual failback: {ts:#?}"
    );
    for r in ts.iter().filter(|r| r["actor"] == "system") {
        assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    }

    // Evidence: every automatic transition rests on the checks' verdicts, each with where and
    // when it was seen, its outcome and the streak that crossed its threshold.
    let automatic: Vec<&&Value> = ts.iter().filter(|r| r["actor"] == "system").collect();
    assert!(automatic.len() >= 4, "{automatic:#?}");
    for r in &automatic {
        let lines = r["evidence"].as_array().map_or(0, Vec::len);
        assert!(lines > 0, "evidence lines: {r}");
        let cited = checks_cited(r);
        assert!(!cited.is_empty(), "no check cited: {r}");
        for c in &cited {
            assert!(
                c["check"] == "ticket-form" || c["check"] == "backup-form",
                "{c}"
            );
            if c["health"] != "unknown" {
                assert_eq!(c["vantage"], node, "{c}");
                assert!(c["at"].is_string() && c["outcome"].is_string(), "{c}");
                let (streak, threshold) = (c["streak"].as_u64(), c["threshold"].as_u64());
                assert!(
                    threshold >= Some(1) && streak >= threshold,
                    "the streak crossed its threshold: {c}"
                );
            }
        }
    }
    let real_failover = by_id(failover_id).expect("the automatic failover's record");
    assert!(
        checks_cited(real_failover)
            .iter()
            .any(|c| c["check"] == "ticket-form"
                && c["health"] == "down"
                && c["outcome"].as_str().is_some_and(|o| o.contains("failed"))
                && c["streak"].as_u64() >= Some(2)),
        "the failover cites the failing form and its streak of failures: {real_failover}"
    );
    assert!(
        checks_cited(real_failover)
            .iter()
            .any(|c| c["check"] == "backup-form" && c["health"] == "healthy"),
        "the failover cites the backup verified healthy: {real_failover}"
    );
    let failbacks: Vec<&&Value> = automatic
        .iter()
        .filter(|r| r["to"] == "operational" && r["cause"] == "recovery_hold_elapsed")
        .copied()
        .collect();
    assert_eq!(failbacks.len(), 1, "the automatic failback: {ts:#?}");
    for f in &failbacks {
        assert!(
            checks_cited(f).iter().any(|c| c["check"] == "ticket-form"
                && c["health"] == "healthy"
                && c["streak"].as_u64() >= Some(1)),
            "a failback cites the primary healthy: {f}"
        );
    }

    // Drill or real: the drill's own transitions say so, and the real ones have real causes.
    let drill_in = ts
        .iter()
        .find(|r| r["to"] == "drill")
        .expect("into the drill");
    assert_eq!(drill_in["actor"], "olga");
    assert_eq!(drill_in["reason"], "Q4 failover drill");
    assert!(ts
        .iter()
        .any(|r| r["from"] == "drill" && r["cause"] == "drill_deadline"));
    assert_eq!(real_failover["cause"], "primary_down");

    // Announcement proof: every e-mail that arrived has its Message-ID and the server's reply
    // in the chain, linked to the transition record it announces; each webhook its status.
    let delivered: Vec<&Value> = recs
        .iter()
        .filter(|r| r["kind"] == "announcement_delivered")
        .collect();
    for m in smtp.messages() {
        let mail = smtp::parse_mail(&m);
        let id = mail.header("Message-ID").expect("Message-ID");
        let proof = delivered
            .iter()
            .find(|r| r["detail"]["message_id"] == id)
            .unwrap_or_else(|| panic!("no proof of {id}"));
        assert!(
            proof["detail"]["reply"]
                .as_str()
                .is_some_and(|r| r.starts_with("250")),
            "{proof}"
        );
        let announced = proof["detail"]["transition_record"]
            .as_i64()
            .and_then(by_id)
            .expect("the announced transition's record");
        assert_eq!(announced["kind"], "transition");
        assert_eq!(
            announced["transition_id"], proof["detail"]["transition_id"],
            "{proof}"
        );
        assert!(proof["id"].as_i64() > announced["id"].as_i64());
    }
    let hooks_proven: Vec<&&Value> = delivered
        .iter()
        .filter(|r| r["detail"]["channel"] == "webhook")
        .collect();
    assert_eq!(
        hooks_proven.len(),
        hooks.requests().len(),
        "{hooks_proven:#?}"
    );
    for h in &hooks_proven {
        assert!(
            h["detail"]["http_status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s)),
            "{h}"
        );
    }

    // Post-hoc review: who reviewed which automatic transition, and what they found.
    let review = recs
        .iter()
        .find(|r| r["kind"] == "review")
        .expect("the review");
    assert_eq!(review["detail"]["reviews"], failover_id);
    assert_eq!(review["actor"], "olga");
    assert!(review.to_string().contains("INC-4700"), "{review}");

    // Drill times against targets: each step with its target, time, verdict; the result.
    let drill = recs
        .iter()
        .find(|r| r["detail"]["command"] == "drill_report")
        .expect("the drill report's record");
    let dd = &drill["detail"];
    assert_eq!(dd["drill"], drill_id.as_str());
    assert_eq!(dd["mode"], "live");
    assert_eq!(dd["result"], "pass");
    assert_eq!(dd["targets"]["switch_seconds"], 5.0);
    assert_eq!(dd["targets"]["notify_seconds"], 30.0);
    let steps = dd["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 7, "{dd:#}");
    for s in steps {
        let target = s["target_seconds"].as_f64().expect("a target");
        let expected = if s["target"] == "drill_targets.notify" {
            30.0
        } else {
            assert_eq!(s["target"], "drill_targets.switch", "{s}");
            5.0
        };
        assert_eq!(target, expected, "{s}");
        assert_eq!(s["status"], "pass", "{s}");
        let took = s["duration_seconds"].as_f64().expect("measured");
        assert!(took <= target && s["within_target"] == true, "{s}");
    }

    // Configuration in force: every record names the version it was decided under, and the
    // accepted reload is audited with who did it.
    for r in &recs {
        assert!(
            r["config_version"].as_str().is_some_and(|v| v.len() >= 12),
            "{r}"
        );
    }
    let reload = recs
        .iter()
        .find(|r| r["kind"] == "operator_action" && r["detail"]["command"] == "reload")
        .expect("the reload's record");
    assert_eq!(reload["actor"], "adam");
    // Configuration in force: the version every record names is stored whole and printed by
    // `audit config`; the refused reload is a `config_rejected` record with the diagnostics.
    let versions: BTreeSet<&str> = recs
        .iter()
        .filter_map(|r| r["config_version"].as_str())
        .collect();
    for v in &versions {
        let (code, out, err) = audit_cli(&main, &["config", v]);
        assert_eq!(code, 0, "audit config {v}: {err}");
        assert!(out.contains("ticket-submission"), "audit config {v}: {out}");
    }
    let rejected = recs
        .iter()
        .find(|r| r["kind"] == "config_rejected")
        .expect("the refused reload's record");
    assert!(
        rejected.to_string().contains("broken.toml:3"),
        "the diagnostics: {rejected}"
    );

    // Tamper evidence: every record is sealed with the key, and the chain verifies with it.
    assert!(
        recs.iter().all(|r| r["mac"].is_string()),
        "every record keyed"
    );
    let db = dir.path().join("var/switchboard.db");
    let verify_db = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["audit", "verify", "--db"])
            .arg(&db)
            .args(extra)
            .output()
            .expect("audit verify");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let key_arg = key.to_str().expect("utf-8 path");
    let (code, out) = verify_db(&["--key-file", key_arg]);
    assert_eq!(code, 0, "audit verify --key-file: {out}");

    // Standard format: every exported line validates against the published JSON Schema.
    let jsonl = dir.path().join("export.jsonl");
    let (code, out, err) = audit_cli(&main, &["export", "--format", "jsonl"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(&jsonl, out).expect("write export");
    let schema = crate::support::repo("docs/audit-record.schema.json");
    let checked = crate::audit_keyed::python(
        crate::audit_keyed::SCHEMA_PY,
        &[schema.to_str().unwrap(), jsonl.to_str().unwrap()],
    );
    assert_eq!(
        checked.trim(),
        recs.len().to_string(),
        "every line validated"
    );

    // The chain the daemon wrote verifies.
    let (code, out, err) = audit_cli(&main, &["verify"]);
    assert_eq!(code, 0, "audit verify: {out}{err}");
    // Standard formats: JSON Lines parsed above; CSV with its header and one row per record.
    let (code, csv, err) = audit_cli(&main, &["export", "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        csv.starts_with(&switchboard::audit::CSV_COLUMNS.join(",")),
        "{csv}"
    );
    assert!(csv.contains("announcement_delivered"), "{csv}");

    // A wholesale rewrite with every hash recomputed (without the key) is caught by the key.
    drop(d);
    crate::audit_keyed::python(
        crate::audit_keyed::RECOMPUTE_PY,
        &[db.to_str().unwrap(), "keep"],
    );
    let (code, out) = verify_db(&["--key-file", key_arg]);
    assert_eq!(code, 1, "a recomputed chain must fail with the key: {out}");
}
