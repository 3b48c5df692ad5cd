//! `switchboard audit verify|export` on a real SQLite file: records written through the Store API, then tampered with directly in SQL.
//!
//! Each tampering case edits, deletes, reorders or inserts rows the way someone with the
//! database file would (dropping the append-only triggers first, as they would have to),
//! and expects exit 1 naming the first bad record. The export tests pin the exact output,
//! hashes included, and re-check every hash with an independent implementation (Python's
//! `json` and `hashlib`) following the recipe documented in `src/audit.rs`.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::Command;
use switchboard::audit::{AuditContext, NewAuditRecord, KIND_OPERATOR_ACTION};
use switchboard::clock::Timestamp;
use switchboard::failover::{Cause, State, Transition};
use switchboard::store::{NewAnnouncement, Store};

/// 2023-11-14T22:13:20.000Z
const T0: i64 = 1_700_000_000_000;

/// A temp dir with a valid config whose `[storage] path` is `var/switchboard.db`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("probes")).expect("mkdir probes");
        std::fs::write(
            dir.path().join("switchboard.toml"),
            r#"probes = "probes"
[server]
listen = "127.0.0.1:1"
[storage]
path = "var/switchboard.db"
[email]
from = "Support Status <status@example.com>"
transport = "file"
dir = "var/mail"
[audiences]
oncall = ["support-oncall@example.com"]
customers = ["support-announce@example.com"]
drill = ["support-ops@example.com"]
[status_page]
title = "Audit test"
"#,
        )
        .expect("write config");
        Fixture { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("switchboard.toml")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("var/switchboard.db")
    }

    /// Runs `switchboard audit ARGS --config <config>`: (exit code, stdout, stderr).
    fn audit(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("audit")
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .expect("run switchboard audit");
        (
            out.status.code().expect("exit code"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs SQL against the database file as an outsider would, triggers dropped first.
    fn tamper(&self, sql: &str) {
        let conn = Connection::open(self.db()).expect("open the database directly");
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;",
        )
        .expect("drop triggers");
        conn.execute_batch(sql).expect("tamper");
    }
}

fn routes(target: &str) -> std::collections::BTreeMap<String, String> {
    [("submit-ticket".to_owned(), target.to_owned())].into()
}

const PRIMARY: &str = "https://support.example.com/hc/en-us/requests/new";
const BACKUP: &str = "https://forms.example.net/support";

fn transition(from: State, to: State, cause: Cause, at: i64, reason: &str) -> Transition {
    Transition {
        service: "ticket-submission".into(),
        from,
        to,
        cause,
        at: Timestamp(at),
        actor: "system".into(),
        reason: reason.into(),
        evidence: vec!["ticket-form: down (HTTP 503 — \"Service Unavailable\")".into()],
        public_message: None,
    }
}

/// Writes four known records: failover, recovering, failback (transitions) and an operator
/// action. Returns them as the store read them back.
fn write_known_records(db: &Path) -> Vec<switchboard::audit::AuditRecord> {
    let store = Store::open(db).expect("open store");
    store
        .ensure_service("ticket-submission", Timestamp(T0))
        .expect("ensure");
    let ctx = |before: &str, after: &str| AuditContext {
        config_version: "cfg-0123456789ab".into(),
        node: "vantage-eu-1".into(),
        routes_before: routes(before),
        routes_after: routes(after),
        grounds: Vec::new(),
    };
    let ann = NewAnnouncement {
        audience: "oncall".into(),
        channel: "email".into(),
        kind: "failover".into(),
        recipients: vec!["support-oncall@example.com".into()],
        subject: "s".into(),
        text: "t".into(),
        html: None,
    };
    store
        .commit_transition(
            &transition(
                State::Operational,
                State::FailedOver,
                Cause::PrimaryDown,
                T0 + 1_000,
                "primary down, backup healthy",
            ),
            ctx(PRIMARY, BACKUP),
            std::slice::from_ref(&ann),
        )
        .expect("failover");
    store
        .commit_transition(
            &transition(
                State::FailedOver,
                State::Recovering,
                Cause::PrimaryRecovered,
                T0 + 60_000,
                "primary healthy again; holding",
            ),
            ctx(BACKUP, BACKUP),
            &[],
        )
        .expect("recovering");
    store
        .commit_transition(
            &transition(
                State::Recovering,
                State::Operational,
                Cause::RecoveryHoldElapsed,
                T0 + 120_000,
                "recovery hold elapsed",
            ),
            ctx(BACKUP, PRIMARY),
            std::slice::from_ref(&ann),
        )
        .expect("failback");
    store
        .append_audit(&NewAuditRecord {
            kind: KIND_OPERATOR_ACTION.into(),
            at: Timestamp(T0 + 180_000),
            actor: "alice".into(),
            service: Some("ticket-submission".into()),
            reason: "pin, \"just in case\"\nsecond line".into(),
            config_version: "cfg-0123456789ab".into(),
            node: "vantage-eu-1".into(),
            detail: serde_json::json!({"side": "backup", "command": "pin"}),
        })
        .expect("operator action");
    store
        .audit_rows(None)
        .expect("read back")
        .into_iter()
        .map(|r| r.expect("readable"))
        .collect()
}

fn setup() -> (Fixture, Vec<switchboard::audit::AuditRecord>) {
    let f = Fixture::new();
    let recs = write_known_records(&f.db());
    assert_eq!(recs.len(), 4);
    (f, recs)
}

/// Asserts `audit verify` fails with exit 1 and that its report contains every `needle`.
fn assert_broken(f: &Fixture, needles: &[&str]) {
    let (code, out, err) = f.audit(&["verify"]);
    assert_eq!(code, 1, "verify must fail; stdout: {out} stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "report should contain {n:?}:\n{err}");
    }
}

#[test]
fn an_untampered_log_verifies_and_prints_the_last_hash() {
    let (f, recs) = setup();
    let (code, out, err) = f.audit(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!(
            "audit: 4 records, chain intact, last hash {}\n",
            recs[3].hash
        )
    );
}

#[test]
fn an_edited_record_is_named_as_edited() {
    let (f, _) = setup();
    f.tamper("UPDATE audit SET reason = 'routine maintenance' WHERE id = 2");
    assert_broken(
        &f,
        &[
            "record 2 (ticket-submission, 2023-11-14T22:14:20.000Z)",
            "hash mismatch",
            "edited",
        ],
    );
}

#[test]
fn an_edited_timestamp_or_evidence_is_caught_too() {
    let (f, _) = setup();
    f.tamper("UPDATE audit SET at_ms = at_ms + 1 WHERE id = 3");
    assert_broken(&f, &["record 3 (ticket-submission", "hash mismatch"]);

    let (f, _) = setup();
    f.tamper("UPDATE audit SET evidence = '[]' WHERE id = 1");
    assert_broken(&f, &["record 1 (ticket-submission", "hash mismatch"]);

    let (f, _) = setup();
    f.tamper("UPDATE audit SET evidence = 'not json' WHERE id = 1");
    assert_broken(&f, &["record 1 (ticket-submission", "not valid JSON"]);
}

#[test]
fn a_deleted_record_is_named_as_deleted() {
    let (f, _) = setup();
    f.tamper("DELETE FROM audit WHERE id = 2");
    assert_broken(
        &f,
        &[
            "record 3 (ticket-submission, 2023-11-14T22:15:20.000Z)",
            "ids jump from 1 to 3",
            "record 2 was deleted",
        ],
    );
}

#[test]
fn a_deleted_newest_record_is_named_as_deleted() {
    let (f, _) = setup();
    f.tamper("DELETE FROM audit WHERE id = 4");
    assert_broken(&f, &["record 4", "was deleted"]);
}

#[test]
fn reordered_records_are_named_at_the_first_moved_one() {
    let (f, _) = setup();
    f.tamper(
        "UPDATE audit SET id = -2 WHERE id = 2;
         UPDATE audit SET id = 2 WHERE id = 3;
         UPDATE audit SET id = 3 WHERE id = -2;",
    );
    assert_broken(
        &f,
        &[
            // Record 2 now holds what was record 3 (the failback, at +120 s).
            "record 2 (ticket-submission, 2023-11-14T22:15:20.000Z)",
            "prev_hash",
            "does not match the hash of record 1",
            "reordered",
        ],
    );
}

#[test]
fn a_deletion_hidden_by_renumbering_is_a_broken_link() {
    let (f, _) = setup();
    f.tamper(
        "DELETE FROM audit WHERE id = 2;
         UPDATE audit SET id = id - 1 WHERE id > 2;
         UPDATE sqlite_sequence SET seq = 3 WHERE name = 'audit';",
    );
    assert_broken(&f, &["record 2 (", "does not match the hash of record 1"]);
}

#[test]
fn a_forged_record_appended_with_a_made_up_hash_is_caught() {
    let (f, recs) = setup();
    f.tamper(&format!(
        "INSERT INTO audit (id, kind, at_ms, node, actor, service, reason, evidence,
            routes_before, routes_after, config_version, detail, prev_hash, hash)
         VALUES (5, 'operator_action', {}, 'vantage-eu-1', 'mallory', 'ticket-submission',
            'nothing happened', '[]', '{{}}', '{{}}', 'cfg', '{{}}', '{}', '{}')",
        T0 + 200_000,
        recs[3].hash,
        "ab".repeat(32)
    ));
    assert_broken(&f, &["record 5 (ticket-submission", "hash mismatch"]);
}

#[test]
fn editing_the_transitions_table_instead_of_the_ledger_is_caught() {
    let (f, _) = setup();
    f.tamper("UPDATE transitions SET reason = 'operator error' WHERE id = 2");
    assert_broken(
        &f,
        &[
            "transition 2 (ticket-submission, 2023-11-14T22:14:20.000Z)",
            "reason",
            "transitions table was edited",
        ],
    );

    let (f, _) = setup();
    f.tamper("DELETE FROM outbox WHERE transition_id = 3; DELETE FROM transitions WHERE id = 3");
    assert_broken(&f, &["transition 3", "deleted"]);
}

#[test]
fn verify_refuses_a_missing_database_with_exit_2() {
    let f = Fixture::new();
    let (code, _, err) = f.audit(&["verify"]);
    assert_eq!(code, 2);
    assert!(err.contains("no database at"), "{err}");
}

#[test]
fn verify_runs_read_only_and_leaves_the_file_untouched() {
    let (f, _) = setup();
    let before = std::fs::read(f.db()).expect("read db");
    let (code, _, _) = f.audit(&["verify"]);
    assert_eq!(code, 0);
    assert_eq!(std::fs::read(f.db()).expect("read db"), before);
}

/// The exact JSON Lines export of the four known records. The hashes are golden values: a
/// change to the canonical form (and so to every existing chain) must show up here.
fn expected_jsonl(recs: &[switchboard::audit::AuditRecord]) -> String {
    let h: Vec<&str> = recs.iter().map(|r| r.hash.as_str()).collect();
    let zeros = "0".repeat(64);
    let ev = r#"["ticket-form: down (HTTP 503 — \"Service Unavailable\")"]"#;
    let rt = |t: &str| format!(r#"{{"submit-ticket":"{t}"}}"#);
    let tr = |id: usize,
              at: &str,
              from: &str,
              to: &str,
              cause: &str,
              reason: &str,
              b: &str,
              a: &str,
              prev: &str| {
        format!(
            r#"{{"id":{id},"kind":"transition","at":"{at}","node":"vantage-eu-1","actor":"system","service":"ticket-submission","from":"{from}","to":"{to}","cause":"{cause}","reason":"{reason}","evidence":{ev},"routes_before":{},"routes_after":{},"config_version":"cfg-0123456789ab","transition_id":{id},"detail":{{}},"prev_hash":"{prev}","hash":"{}"}}"#,
            rt(b),
            rt(a),
            h[id - 1]
        ) + "\n"
    };
    tr(
        1,
        "2023-11-14T22:13:21.000Z",
        "operational",
        "failed_over",
        "primary_down",
        "primary down, backup healthy",
        PRIMARY,
        BACKUP,
        &zeros,
    ) + &tr(
        2,
        "2023-11-14T22:14:20.000Z",
        "failed_over",
        "recovering",
        "primary_recovered",
        "primary healthy again; holding",
        BACKUP,
        BACKUP,
        h[0],
    ) + &tr(
        3,
        "2023-11-14T22:15:20.000Z",
        "recovering",
        "operational",
        "recovery_hold_elapsed",
        "recovery hold elapsed",
        BACKUP,
        PRIMARY,
        h[1],
    ) + &format!(
        r#"{{"id":4,"kind":"operator_action","at":"2023-11-14T22:16:20.000Z","node":"vantage-eu-1","actor":"alice","service":"ticket-submission","from":null,"to":null,"cause":null,"reason":"pin, \"just in case\"\nsecond line","evidence":[],"routes_before":{{}},"routes_after":{{}},"config_version":"cfg-0123456789ab","transition_id":null,"detail":{{"command":"pin","side":"backup"}},"prev_hash":"{}","hash":"{}"}}"#,
        h[2], h[3]
    ) + "\n"
}

const GOLDEN: [&str; 4] = [
    "c5d957d4e00d906ebc25e5235461d330b978d200567e1f7d75e1481b4d83793e",
    "c8bff5d8fd7431d94cd7a18ca8d8a972ccbd79375eb3a1a464838840f161fb24",
    "f9c777c617028c7ceb965eaa7470e3870ace88f2f6c2dc0848b79629fc98a9d0",
    "0c598172157a60999a870844ec02602636d2f11a638eafb9ec323adfec2f4241",
];

#[test]
fn jsonl_export_is_exact_and_the_hashes_are_golden() {
    let (f, recs) = setup();
    // Golden: computed once from the documented recipe; these must never change silently.
    let hashes: Vec<&str> = recs.iter().map(|r| r.hash.as_str()).collect();
    assert_eq!(hashes, GOLDEN);
    let (code, out, err) = f.audit(&["export", "--format", "jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, expected_jsonl(&recs));
}

/// Recomputes every exported hash with Python, following only the recipe in `src/audit.rs`.
const RECHECK_PY: &str = r#"
import hashlib, json, sys
prev = "0" * 64
n = 0
for line in sys.stdin:
    obj = json.loads(line)
    h = obj.pop("hash")
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canon.encode("utf-8")).hexdigest() == h, ("hash", obj["id"])
    assert obj["prev_hash"] == prev, ("prev_hash", obj["id"])
    prev = h
    n += 1
print(n)
"#;

#[test]
fn exported_hashes_verify_with_an_independent_implementation() {
    let (f, _) = setup();
    let (code, out, _) = f.audit(&["export", "--format", "jsonl"]);
    assert_eq!(code, 0);
    let mut py = Command::new("python3")
        .args(["-c", RECHECK_PY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed (the test script installs it)");
    use std::io::Write;
    py.stdin
        .take()
        .expect("stdin")
        .write_all(out.as_bytes())
        .expect("write export");
    let res = py.wait_with_output().expect("python3");
    assert!(
        res.status.success(),
        "python recheck failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&res.stdout).trim(), "4");
}

#[test]
fn csv_export_is_exact_with_rfc4180_quoting() {
    let (f, recs) = setup();
    let (code, out, err) = f.audit(&["export", "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    let h: Vec<&str> = recs.iter().map(|r| r.hash.as_str()).collect();
    let zeros = "0".repeat(64);
    let ev = r#""[""ticket-form: down (HTTP 503 — \""Service Unavailable\"")""]""#;
    let rt = |t: &str| format!(r#""{{""submit-ticket"":""{t}""}}""#);
    let expected = [
        "id,kind,at,node,actor,service,from,to,cause,reason,evidence,routes_before,routes_after,config_version,transition_id,detail,prev_hash,hash,key_id,mac".to_owned(),
        format!("1,transition,2023-11-14T22:13:21.000Z,vantage-eu-1,system,ticket-submission,operational,failed_over,primary_down,\"primary down, backup healthy\",{ev},{},{},cfg-0123456789ab,1,{{}},{zeros},{},,", rt(PRIMARY), rt(BACKUP), h[0]),
        format!("2,transition,2023-11-14T22:14:20.000Z,vantage-eu-1,system,ticket-submission,failed_over,recovering,primary_recovered,primary healthy again; holding,{ev},{},{},cfg-0123456789ab,2,{{}},{},{},,", rt(BACKUP), rt(BACKUP), h[0], h[1]),
        format!("3,transition,2023-11-14T22:15:20.000Z,vantage-eu-1,system,ticket-submission,recovering,operational,recovery_hold_elapsed,recovery hold elapsed,{ev},{},{},cfg-0123456789ab,3,{{}},{},{},,", rt(BACKUP), rt(PRIMARY), h[1], h[2]),
        format!("4,operator_action,2023-11-14T22:16:20.000Z,vantage-eu-1,alice,ticket-submission,,,,\"pin, \"\"just in case\"\"\nsecond line\",[],{{}},{{}},cfg-0123456789ab,,\"{{\"\"command\"\":\"\"pin\"\",\"\"side\"\":\"\"backup\"\"}}\",{},{},,", h[2], h[3]),
    ]
    .map(|l| l + "\r\n")
    .concat();
    assert_eq!(out, expected);
}

#[test]
fn since_filters_by_time_in_both_forms() {
    let (f, recs) = setup();
    let ids = |args: &[&str]| -> Vec<i64> {
        let (code, out, err) = f.audit(args);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("JSON line")["id"]
                    .as_i64()
                    .expect("id")
            })
            .collect()
    };
    let base = ["export", "--format", "jsonl", "--since"];
    assert_eq!(
        ids(&[&base[..], &["2023-11-14T22:14:20Z"]].concat()),
        [2, 3, 4]
    );
    assert_eq!(
        ids(&[&base[..], &["2023-11-14T22:14:20.001Z"]].concat()),
        [3, 4]
    );
    // The known records are from 2023: none is younger than a day, all younger than 100 years.
    assert_eq!(ids(&[&base[..], &["1day"]].concat()), Vec::<i64>::new());
    assert_eq!(ids(&[&base[..], &["36500d ago"]].concat()), [1, 2, 3, 4]);
    assert_eq!(recs.len(), 4);

    let (code, _, err) = f.audit(&["export", "--format", "jsonl", "--since", "last tuesday"]);
    assert_eq!(code, 2);
    assert!(err.contains("--since \"last tuesday\""), "{err}");
}

// Issue 16 point 2: delivery proof is chained. The real outbox delivers to a real SMTP server
// (aiosmtpd), and the real binary's export shows each final result as its own record, linked
// to the transition it announces.

/// The exported records of `f`, parsed, with `audit verify` passing first.
fn exported(f: &Fixture) -> Vec<serde_json::Value> {
    let (code, out, err) = f.audit(&["verify"]);
    assert_eq!(code, 0, "verify: {out}{err}");
    let (code, out, err) = f.audit(&["export", "--format", "jsonl"]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Commits a failover of `ticket-submission` with an e-mail to on-call and customers.
fn commit_failover_with_mail(store: &Store) -> i64 {
    let now = Timestamp::now();
    store
        .ensure_service("ticket-submission", now)
        .expect("ensure");
    let t = Transition {
        at: now,
        ..transition(
            State::Operational,
            State::FailedOver,
            Cause::PrimaryDown,
            0,
            "primary down; backup healthy",
        )
    };
    let mail = |audience: &str, to: &str| NewAnnouncement {
        audience: audience.into(),
        channel: "email".into(),
        kind: "failover".into(),
        recipients: vec![to.into()],
        subject: format!("switched ({audience})"),
        text: "use the backup".into(),
        html: None,
    };
    store
        .commit_transition(
            &t,
            "cfg-0123456789ab",
            &[
                mail("oncall", "support-oncall@example.com"),
                mail("customers", "support-announce@example.com"),
            ],
        )
        .expect("commit")
        .transition_id
}

fn mailer(url: &str) -> switchboard::announce::Mailer {
    let cfg = switchboard::config::EmailConfig::new(
        "Support Status <status@example.com>",
        switchboard::config::EmailTransport::Smtp { url: url.into() },
    );
    switchboard::announce::Mailer::with_password(&cfg, None).expect("mailer")
}

#[tokio::test]
async fn each_accepted_email_is_chained_with_its_message_id_and_the_servers_reply() {
    use crate::support::smtp;
    let f = Fixture::new();
    let maildir = f.dir.path().join("maildir");
    let server = smtp::SmtpServer::start(&maildir);
    let store = std::sync::Arc::new(Store::open(&f.db()).expect("store"));
    let tid = commit_failover_with_mail(&store);
    let handle = switchboard::store::StoreHandle::shared(store.clone());
    let done = switchboard::announce::outbox::deliver_due(
        &handle,
        &mailer(&server.url()),
        Timestamp(i64::MAX),
        10,
    )
    .await
    .expect("deliver");
    assert_eq!(done.len(), 2);
    assert!(
        done.iter()
            .all(|d| d.result.is_ok() && d.audited == Some("announcement_delivered")),
        "{done:?}"
    );
    drop(handle);
    drop(store);

    let arrived: Vec<String> = server
        .messages()
        .iter()
        .map(|m| {
            smtp::parse_mail(m)
                .header("Message-ID")
                .expect("Message-ID")
                .to_owned()
        })
        .collect();
    let recs = exported(&f);
    let transition_record = recs
        .iter()
        .find(|r| r["kind"] == "transition")
        .expect("the transition's record");
    let proofs: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["kind"] == "announcement_delivered")
        .collect();
    assert_eq!(proofs.len(), 2, "{recs:#?}");
    for p in &proofs {
        let d = &p["detail"];
        let id = d["message_id"].as_str().expect("message_id");
        assert!(
            arrived.iter().any(|a| a == id),
            "{id} not among {arrived:?}"
        );
        // What aiosmtpd answered to the message's DATA.
        assert!(
            d["reply"].as_str().is_some_and(|r| r.starts_with("250")),
            "{d}"
        );
        assert_eq!(d["transition_id"], tid);
        assert_eq!(d["transition_record"], transition_record["id"]);
        assert_eq!(p["service"], "ticket-submission");
        assert!(p["id"].as_i64() > transition_record["id"].as_i64());
    }
    let audiences: std::collections::BTreeSet<&str> = proofs
        .iter()
        .filter_map(|p| p["detail"]["audience"].as_str())
        .collect();
    assert_eq!(audiences, ["customers", "oncall"].into());
}

#[tokio::test]
async fn an_email_given_up_is_chained_with_its_last_error() {
    use crate::support::smtp;
    let f = Fixture::new();
    let refusing = smtp::RefusingServer::start(f.dir.path(), "rcpt");
    let store = std::sync::Arc::new(Store::open(&f.db()).expect("store"));
    let tid = commit_failover_with_mail(&store);
    let handle = switchboard::store::StoreHandle::shared(store.clone());
    // A give-up age of zero: the first refusal is the last attempt.
    let done = switchboard::announce::outbox::deliver_due_with(
        &handle,
        &mailer(&format!("smtp://127.0.0.1:{}", refusing.port)),
        Timestamp(i64::MAX),
        10,
        std::time::Duration::ZERO,
    )
    .await
    .expect("deliver");
    assert_eq!(done.len(), 2);
    assert!(
        done.iter()
            .all(|d| d.given_up && d.audited == Some("announcement_given_up")),
        "{done:?}"
    );
    drop(handle);
    drop(store);
    let recs = exported(&f);
    let gone: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["kind"] == "announcement_given_up")
        .collect();
    assert_eq!(gone.len(), 2, "{recs:#?}");
    for g in gone {
        assert_eq!(g["detail"]["transition_id"], tid);
        let err = g["detail"]["last_error"].as_str().unwrap_or_default();
        assert!(err.contains("554"), "the server's refusal: {err}");
        assert!(
            g["reason"]
                .as_str()
                .is_some_and(|r| r.contains("given up after 1 attempt")),
            "{g}"
        );
    }
}

#[tokio::test]
async fn a_statuspage_push_is_chained_with_its_http_status_and_incident_id() {
    use switchboard::announce::outbox::{deliver_due, Transports};
    use switchboard::announce::statuspage_push::{self, StatuspagePush};
    use switchboard::announce::webhook::Webhooks;
    use switchboard::announce::{Kind, Mailer};
    use switchboard::config::StatuspagePushConfig;
    use tokio::io::AsyncWriteExt;

    // A Statuspage API on loopback: the incident is created (201 with its id), then resolved.
    let api = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", api.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = api.accept().await {
            if crate::support::http::read_async(&mut s).await.is_none() {
                continue;
            }
            n += 1;
            let (status, body) = if n == 1 {
                (201, r#"{"id":"inc-audit-1"}"#)
            } else {
                (200, r#"{"id":"inc-audit-1","status":"resolved"}"#)
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });

    let f = Fixture::new();
    let store = std::sync::Arc::new(Store::open(&f.db()).expect("store"));
    let now = Timestamp::now();
    store
        .ensure_service("ticket-submission", now)
        .expect("ensure");
    let mut ids = Vec::new();
    for (i, (from, to, cause)) in [
        (State::Operational, State::FailedOver, Cause::PrimaryDown),
        (
            State::FailedOver,
            State::Operational,
            Cause::RecoveryHoldElapsed,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let t = Transition {
            at: now.plus(std::time::Duration::from_millis(i as u64)),
            ..transition(from, to, cause, 0, "r")
        };
        let row = statuspage_push::plan(Kind::of(&t), &t, "cmp-1", "Ticket submission", "words")
            .expect("a statuspage row");
        ids.push(
            store
                .commit_transition(&t, "cfg-0123456789ab", &[row])
                .expect("commit")
                .transition_id,
        );
    }
    let handle = switchboard::store::StoreHandle::shared(store.clone());
    let file = switchboard::config::EmailConfig::new(
        "status@example.com",
        switchboard::config::EmailTransport::File {
            dir: f.dir.path().join("mail"),
        },
    );
    let transports = Transports {
        mailer: Mailer::with_password(&file, None).expect("mailer"),
        webhooks: Webhooks::default(),
        statuspage: Some(StatuspagePush::new(
            StatuspagePushConfig {
                page_id: "pg1".into(),
                api_base: format!("{base}/v1"),
                // Set for the whole test process by `support::TEST_ENV`.
                api_key_env: "SWITCHBOARD_TEST_STATUSPAGE_KEY_A".into(),
            },
            handle.clone(),
        )),
        chat: None,
        zendesk: None,
    };
    // The resolve waits for the opening (one stream), so two passes send both.
    for _ in 0..2 {
        let done = deliver_due(&handle, &transports, Timestamp(i64::MAX), 10)
            .await
            .expect("deliver");
        assert!(done.iter().all(|d| d.result.is_ok()), "{done:?}");
    }
    drop(transports);
    drop(handle);
    drop(store);

    let recs = exported(&f);
    let pushes: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["kind"] == "announcement_delivered" && r["detail"]["channel"] == "statuspage")
        .collect();
    assert_eq!(pushes.len(), 2, "{recs:#?}");
    let seen: Vec<(i64, u64, &str)> = pushes
        .iter()
        .map(|p| {
            (
                p["detail"]["transition_id"].as_i64().unwrap_or(0),
                p["detail"]["http_status"].as_u64().unwrap_or(0),
                p["detail"]["incident_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(ids[0], 201, "inc-audit-1"), (ids[1], 200, "inc-audit-1")]
    );
}
