//! The keyed audit chain, its anchors, the configuration history and the evidence bundle, through the real binary.
//!
//! The recomputation test does what the issue describes an attacker doing: rewrite every row
//! of the `audit` table and recompute every hash (in Python, from the documented recipe),
//! which the unkeyed chain cannot tell from the original; with the key, `audit verify` names
//! the first rewritten record. The daemon test runs a real daemon with `[audit] key_file` and
//! `anchor_file`, a failover and failback, a rejected and an accepted SIGHUP reload, and then
//! uses the auditor's tools with the webhook secret the configuration names left unset.

use crate::support::daemon::{
    metric, read_dir_texts, stored_transitions, wait_until, write_config, Daemon, Target, FILE_MAIL,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use switchboard::audit::{AuditContext, NewAuditRecord, KIND_AUDIT_KEY, KIND_OPERATOR_ACTION};
use switchboard::clock::Timestamp;
use switchboard::config::AuditKey;
use switchboard::failover::{Cause, State, Transition};
use switchboard::store::Store;

/// 2023-11-14T22:13:20.000Z
const T0: i64 = 1_700_000_000_000;

/// Runs `switchboard ARGS` with `env` added: (exit code, stdout, stderr).
fn switchboard(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run switchboard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs a Python script with `args`, asserting it succeeds; its stdout.
pub(crate) fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 is needed (the test script installs it)");
    assert!(
        out.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn transition(from: State, to: State, cause: Cause, at: i64) -> Transition {
    Transition {
        service: "ticket-submission".into(),
        from,
        to,
        cause,
        at: Timestamp(at),
        actor: "system".into(),
        reason: format!("{} -> {}", from.as_str(), to.as_str()),
        evidence: vec!["ticket-form: down (HTTP 503)".into()],
        public_message: None,
    }
}

/// A database with two records written before a key was configured, then the key's
/// `audit_key` record (3) and three keyed records (4..6). Returns (db, key file).
fn keyed_database(dir: &Path) -> (PathBuf, PathBuf) {
    let db = dir.join("switchboard.db");
    let key_file = dir.join("audit.key");
    let (code, out, err) = switchboard(&["audit", "keygen", s(&key_file)], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let key = AuditKey::read(&key_file).expect("the generated key reads back");
    let store = Store::open(&db).expect("open store");
    store
        .ensure_service("ticket-submission", Timestamp(T0))
        .expect("ensure");
    let ctx = AuditContext::from("cfg-1");
    let op = |at: i64, reason: &str| NewAuditRecord {
        kind: KIND_OPERATOR_ACTION.into(),
        at: Timestamp(at),
        actor: "alice".into(),
        service: Some("ticket-submission".into()),
        reason: reason.into(),
        config_version: "cfg-1".into(),
        node: "node-a".into(),
        detail: serde_json::json!({"command": "pin"}),
    };
    store
        .append_audit(&op(T0, "before the key"))
        .expect("unkeyed 1");
    store
        .commit_transition(
            &transition(
                State::Operational,
                State::FailedOver,
                Cause::PrimaryDown,
                T0 + 1,
            ),
            &ctx,
            &[],
        )
        .expect("unkeyed 2");
    let note = NewAuditRecord {
        kind: KIND_AUDIT_KEY.into(),
        reason: "keyed from here".into(),
        ..op(T0 + 2, "")
    };
    let rec = store
        .start_audit_key(Some(&key), &note)
        .expect("start keyed")
        .expect("an audit_key record is written for a new key");
    assert_eq!((rec.id, rec.mac.is_some()), (3, true));
    store
        .commit_transition(
            &transition(
                State::FailedOver,
                State::Operational,
                Cause::PrimaryRecovered,
                T0 + 3,
            ),
            &ctx,
            &[],
        )
        .expect("keyed 4");
    store
        .append_audit(&op(T0 + 4, "routine pin"))
        .expect("keyed 5");
    store.append_audit(&op(T0 + 5, "unpin")).expect("keyed 6");
    // A second start with the same key adds nothing: the head is keyed already.
    assert!(store
        .start_audit_key(Some(&key), &note)
        .expect("same key")
        .is_none());
    // Another key, or none, cannot extend this chain.
    let other = AuditKey::parse(&[7u8; 32]).expect("key");
    let e = store.start_audit_key(Some(&other), &note).unwrap_err();
    assert!(e.to_string().contains("authenticated with key"), "{e}");
    let e = store.start_audit_key(None, &note).unwrap_err();
    assert!(e.to_string().contains("no [audit] key_file"), "{e}");
    (db, key_file)
}

/// Rewrites every audit row (record 5's reason changed) and recomputes every hash and link
/// from the documented recipe, as someone with the database file but without the key would.
/// `strip` also removes the MACs.
pub(crate) const RECOMPUTE_PY: &str = r#"
import datetime, hashlib, json, sqlite3, sys
db, strip = sys.argv[1], sys.argv[2] == "strip"
c = sqlite3.connect(db)
c.executescript("DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;")
cols = ["id", "kind", "at_ms", "node", "actor", "service", "from_state", "to_state", "cause",
        "reason", "evidence", "routes_before", "routes_after", "config_version",
        "transition_id", "detail"]
rows = c.execute("SELECT " + ",".join(cols) + " FROM audit ORDER BY id").fetchall()
prev = "0" * 64
for row in rows:
    r = dict(zip(cols, row))
    if r["id"] == 5:
        r["reason"] = "nothing to see here"
    at = datetime.datetime.fromtimestamp(r["at_ms"] // 1000, datetime.timezone.utc)
    obj = {
        "id": r["id"], "kind": r["kind"],
        "at": at.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (r["at_ms"] % 1000),
        "node": r["node"], "actor": r["actor"], "service": r["service"],
        "from": r["from_state"], "to": r["to_state"], "cause": r["cause"],
        "reason": r["reason"], "evidence": json.loads(r["evidence"]),
        "routes_before": json.loads(r["routes_before"]),
        "routes_after": json.loads(r["routes_after"]),
        "config_version": r["config_version"], "transition_id": r["transition_id"],
        "detail": json.loads(r["detail"]), "prev_hash": prev,
    }
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h = hashlib.sha256(canon.encode("utf-8")).hexdigest()
    c.execute("UPDATE audit SET reason = ?, prev_hash = ?, hash = ? WHERE id = ?",
              (r["reason"], prev, h, r["id"]))
    if strip:
        c.execute("UPDATE audit SET key_id = NULL, mac = NULL WHERE id = ?", (r["id"],))
    prev = h
c.commit()
print(len(rows))
"#;

#[test]
fn keygen_writes_a_private_key_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("k");
    let (code, out, _) = switchboard(&["audit", "keygen", s(&f)], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("key id "), "{out}");
    let meta = std::fs::metadata(&f).expect("key file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&f).expect("read");
    assert_eq!(text.trim().len(), 64, "32 random bytes as hex: {text}");
    assert!(text.trim().chars().all(|c| c.is_ascii_hexdigit()));
    let (code, _, err) = switchboard(&["audit", "keygen", s(&f)], &[]);
    assert_eq!(code, 2, "an existing key is never overwritten: {err}");
    assert_eq!(std::fs::read_to_string(&f).expect("read"), text);
}

#[test]
fn verify_says_where_the_keyed_part_starts_and_what_it_could_not_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, key) = keyed_database(dir.path());
    let (code, out, err) = switchboard(
        &["audit", "verify", "--db", s(&db), "--key-file", s(&key)],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("audit: 6 records, chain intact, last hash "),
        "{out}"
    );
    assert!(
        err.contains("authenticated: records 3..6 carry MACs that verify with key"),
        "{err}"
    );
    assert!(
        err.contains("not authenticated: records 1..2 were written before the key was configured"),
        "{err}"
    );

    // Without the key: intact as far as it can tell, and it says what it could not check.
    let (code, out, err) = switchboard(&["audit", "verify", "--db", s(&db)], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("NOT checked: records 3..6 carry MACs")
            && err.contains("a wholesale recomputation of the chain would not be detected"),
        "{err}"
    );
    assert!(err.contains("anchors: none given"), "{err}");

    // Another key is named as such, not as tampering.
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "cd".repeat(32)).expect("write");
    let (code, _, err) = switchboard(
        &["audit", "verify", "--db", s(&db), "--key-file", s(&wrong)],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("record 3") && err.contains("not with the given key"),
        "{err}"
    );

    // A key file that is too short is a usage error, not a verdict.
    std::fs::write(&wrong, "short").expect("write");
    let (code, _, err) = switchboard(
        &["audit", "verify", "--db", s(&db), "--key-file", s(&wrong)],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least 32 random bytes"), "{err}");
}

#[test]
fn a_wholesale_recomputation_passes_without_the_key_and_fails_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, key) = keyed_database(dir.path());
    let (_, before, _) = switchboard(
        &["audit", "export", "--db", s(&db), "--format", "jsonl"],
        &[],
    );
    let head: serde_json::Value =
        serde_json::from_str(before.lines().last().expect("records")).expect("JSON");
    let anchor = format!("6:{}", &head["hash"].as_str().expect("hash")[..12]);
    assert_eq!(python(RECOMPUTE_PY, &[s(&db), "keep"]).trim(), "6");

    // The recomputed chain is self-consistent: hashes and links alone cannot tell.
    let (code, out, err) = switchboard(&["audit", "verify", "--db", s(&db)], &[]);
    assert_eq!(code, 0, "hashes alone pass a recomputation: {out}{err}");
    assert!(err.contains("NOT checked"), "{err}");

    // With the key, the first rewritten record is named.
    let (code, out, err) = switchboard(
        &["audit", "verify", "--db", s(&db), "--key-file", s(&key)],
        &[],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("chain BROKEN at record 5 (ticket-submission, 2023-11-14T22:13:20.004Z)")
            && err.contains("MAC does not verify with the key"),
        "{err}"
    );

    // Without the key, an anchor taken before the rewrite catches it too.
    let (code, _, err) = switchboard(
        &["audit", "verify", "--db", s(&db), "--anchor", &anchor],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("record 6 (") && err.contains("differs from the anchor (--anchor 6:"),
        "{err}"
    );
}

#[test]
fn stripping_every_mac_is_caught_with_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, key) = keyed_database(dir.path());
    python(RECOMPUTE_PY, &[s(&db), "strip"]);
    let (code, _, err) = switchboard(
        &["audit", "verify", "--db", s(&db), "--key-file", s(&key)],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no record carries a MAC"), "{err}");
}

#[test]
fn an_anchor_file_catches_a_cut_off_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, key) = keyed_database(dir.path());
    let (_, out, _) = switchboard(
        &["audit", "export", "--db", s(&db), "--format", "jsonl"],
        &[],
    );
    let anchors = dir.path().join("anchors.jsonl");
    let lines: String = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
            format!(
                "{{\"sequence\":{},\"hash\":\"{}\"}}\n",
                v["id"],
                v["hash"].as_str().unwrap()
            )
        })
        .collect();
    std::fs::write(&anchors, lines).expect("write anchors");
    let (code, _, err) = switchboard(
        &[
            "audit",
            "verify",
            "--db",
            s(&db),
            "--key-file",
            s(&key),
            "--anchor-file",
            s(&anchors),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("anchors: 6 compared"), "{err}");

    // The newest record removed and the id counter wound back: every remaining MAC still
    // verifies, but the anchor of record 6 has nothing to match.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch(
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id = 6;
         UPDATE sqlite_sequence SET seq = 5 WHERE name = 'audit';",
    )
    .expect("tamper");
    drop(conn);
    let (code, _, err) = switchboard(
        &["audit", "verify", "--db", s(&db), "--key-file", s(&key)],
        &[],
    );
    assert_eq!(code, 0, "a clean cut verifies on the key alone: {err}");
    let (code, _, err) = switchboard(
        &[
            "audit",
            "verify",
            "--db",
            s(&db),
            "--anchor-file",
            s(&anchors),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("record 6: anchored (") && err.contains("the chain ends at record 5"),
        "{err}"
    );
    std::fs::write(&anchors, "not json\n").expect("write");
    let (code, _, err) = switchboard(
        &[
            "audit",
            "verify",
            "--db",
            s(&db),
            "--anchor-file",
            s(&anchors),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("anchors.jsonl:1: not a JSON line"), "{err}");
}

/// Checks every line of `jsonl` against the shipped schema with Python's `jsonschema`.
pub(crate) const SCHEMA_PY: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1], encoding="utf-8"))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
n = 0
for i, line in enumerate(open(sys.argv[2], encoding="utf-8"), 1):
    errors = sorted(v.iter_errors(json.loads(line)), key=str)
    assert not errors, (i, [e.message for e in errors])
    n += 1
# The schema is strict: a record with a field it does not describe is refused.
bad = json.loads(open(sys.argv[2], encoding="utf-8").readline())
bad["surprise"] = 1
assert list(v.iter_errors(bad)), "unknown field accepted"
print(n)
"#;

/// Opens a bundle with Python's `tarfile` (no Switchboard involved), validates its records
/// against the schema it carries, and prints what it holds.
const BUNDLE_PY: &str = r#"
import io, json, sys, tarfile, jsonschema
t = tarfile.open(sys.argv[1], "r:gz")
names = sorted(t.getnames())
read = lambda n: t.extractfile("audit-bundle/" + n).read().decode("utf-8")
schema = json.loads(read("audit-record.schema.json"))
v = jsonschema.Draft202012Validator(schema)
recs = [json.loads(l) for l in read("records.jsonl").splitlines()]
for r in recs:
    assert not list(v.iter_errors(r)), r["id"]
csv_rows = read("records.csv").count("\r\n") - 1
print(json.dumps({
    "names": names, "records": len(recs), "csv_rows": csv_rows,
    "verify": read("verify.txt"), "readme": read("README.txt"),
    "kinds": sorted({r["kind"] for r in recs}),
}))
"#;

#[test]
fn a_keyed_daemon_anchors_its_head_keeps_its_configuration_history_and_bundles_the_evidence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let target = Target::start();
    let (main, port) = write_config(root, &target, FILE_MAIL);
    let (code, _, err) = switchboard(&["audit", "keygen", s(&root.join("audit.key"))], &[]);
    assert_eq!(code, 0, "{err}");
    let mut text = std::fs::read_to_string(&main).expect("read");
    text.push_str(
        "[audit]\nkey_file = \"audit.key\"\nanchor_file = \"anchors.jsonl\"\nanchor_interval = \"1s\"\n",
    );
    std::fs::write(&main, text).expect("write");
    // A webhook whose secret comes from the environment: the daemon has it, the auditor not.
    let service = root.join("probes/ticket-submission.toml");
    let service_text = std::fs::read_to_string(&service).expect("read");
    std::fs::write(
        &service,
        format!(
            "{service_text}\n[[on_switch]]\nid = \"banner\"\nurl = \"{}\"\nheaders = {{ Authorization = \"Bearer ${{SB_AUDIT_TEST_HOOK_TOKEN}}\" }}\n",
            target.url("/hook")
        ),
    )
    .expect("write");
    let env = [("SB_AUDIT_TEST_HOOK_TOKEN", "hook-secret-value")];
    let log = root.join("daemon.log");
    let mut d = Daemon::start_with(&main, port, &env, Some(&log));
    let db = root.join("var/switchboard.db");

    target.set_down(true);
    wait_until("failover", Duration::from_secs(30), || {
        stored_transitions(&db)
            .iter()
            .any(|(_, to)| to == "failed_over")
    });
    target.set_down(false);
    wait_until("failback", Duration::from_secs(30), || {
        stored_transitions(&db)
            .last()
            .is_some_and(|(_, to)| to == "operational")
    });

    // The head as a metric: its sequence, and its short hash as a label.
    wait_until("head metric", Duration::from_secs(15), || {
        metric(&d, "switchboard_audit_head_sequence") >= Some(4.0)
    });
    let m = d.metrics();
    let info = m
        .lines()
        .find(|l| l.starts_with("switchboard_audit_head_info{"))
        .expect("head info series");
    assert!(info.ends_with(" 1") && info.contains("hash=\""), "{info}");
    // On-call e-mail carries the head as a footer.
    wait_until("on-call mail", Duration::from_secs(15), || {
        read_dir_texts(&root.join("var/mail")).iter().any(|m| {
            m.contains("support-oncall@example.com") && m.contains("Audit chain head: record ")
        })
    });

    // A rejected reload, then an accepted one.
    let pid = d.child.id() as libc::pid_t;
    let good = std::fs::read_to_string(&service).expect("read");
    std::fs::write(
        &service,
        good.replace("recovery_hold = \"2s\"", "recovery_hold = \"soon\""),
    )
    .expect("write");
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_until("rejected reload", Duration::from_secs(20), || {
        metric(&d, "switchboard_config_reloads_total{result=\"failure\"}") == Some(1.0)
    });
    std::fs::write(
        &service,
        good.replace("recovery_hold = \"2s\"", "recovery_hold = \"3s\""),
    )
    .expect("write");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_until("accepted reload", Duration::from_secs(20), || {
        metric(&d, "switchboard_config_reloads_total{result=\"success\"}") == Some(2.0)
    });
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = d.child.wait().expect("wait");
    assert!(status.success(), "clean exit: {status:?}");

    // The head at shutdown in the log and the anchor file.
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.contains("audit chain head (shutdown): record "),
        "{logged}"
    );
    assert!(!logged.contains("hook-secret-value"));
    let anchors = std::fs::read_to_string(root.join("anchors.jsonl")).expect("anchor file");
    let last: serde_json::Value =
        serde_json::from_str(anchors.lines().last().expect("anchors")).expect("JSON");
    assert_eq!(last["why"], "shutdown", "{anchors}");
    assert!(
        anchors.lines().any(|l| l.contains("\"why\":\"interval\"")),
        "{anchors}"
    );

    // The auditor's tools, without the webhook secret: the daemon's own loader refuses the
    // configuration, the auditor's does not.
    let cfg = s(&main);
    let (code, _, err) = switchboard(&["check", "--config", cfg], &[]);
    assert_eq!(code, 1, "the daemon needs the secret: {err}");
    let (code, out, err) = switchboard(
        &[
            "audit",
            "verify",
            "--config",
            cfg,
            "--anchor-file",
            s(&root.join("anchors.jsonl")),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let head = last["sequence"].as_i64().expect("sequence");
    assert!(
        err.contains(&format!(
            "authenticated: records 1..{head} carry MACs that verify with key"
        )),
        "the configuration's key file is used when readable: {err}"
    );
    assert!(err.contains("compared, each matches the chain"), "{err}");

    let (code, export, err) = switchboard(
        &["audit", "export", "--config", cfg, "--format", "jsonl"],
        &[],
    );
    assert_eq!(code, 0, "export needs no secret: {err}");
    let recs: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(
        recs[0]["kind"], "audit_key",
        "the keyed part starts at record 1"
    );
    assert!(recs
        .iter()
        .all(|r| r["mac"].is_string() && r["key_id"].is_string()));
    let rejected = recs
        .iter()
        .find(|r| r["kind"] == "config_rejected")
        .expect("the rejected reload is audited");
    assert_eq!(rejected["actor"], "SIGHUP", "{rejected}");
    let diagnostics = rejected["detail"]["diagnostics"].to_string();
    assert!(
        diagnostics.contains("ticket-submission.toml:") && diagnostics.contains("soon"),
        "{rejected}"
    );
    let export_file = root.join("export.jsonl");
    std::fs::write(&export_file, &export).expect("write export");
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/audit-record.schema.json");
    assert_eq!(
        python(SCHEMA_PY, &[s(&schema), s(&export_file)]).trim(),
        recs.len().to_string()
    );

    // The configuration history: the version at start, the rejected one, the accepted one.
    let (code, list, err) = switchboard(&["audit", "config", "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    let versions: Vec<&str> = list
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(versions.len(), 3, "{list}");
    assert!(
        list.lines()
            .next()
            .unwrap_or("")
            .contains("applied start by system"),
        "{list}"
    );
    assert!(list.contains("rejected reload by SIGHUP"), "{list}");
    let first = recs[0]["config_version"].as_str().expect("version");
    assert_eq!(
        versions[0], first,
        "records name the stored version: {list}"
    );
    let (code, shown, err) = switchboard(&["audit", "config", "--config", cfg, &first[..10]], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        shown.contains("==> probes/ticket-submission.toml (sha256 "),
        "{shown}"
    );
    assert!(shown.contains("recovery_hold = \"2s\""), "{shown}");
    assert!(
        shown.contains("Bearer ${SB_AUDIT_TEST_HOOK_TOKEN}")
            && !shown.contains("hook-secret-value"),
        "references stay references: {shown}"
    );
    let newest = versions[2];
    let (code, diff, err) = switchboard(&["audit", "diff", "--config", cfg, first, newest], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        diff.contains("--- a/probes/ticket-submission.toml (")
            && diff.contains("-recovery_hold = \"2s\"\n+recovery_hold = \"3s\"\n"),
        "{diff}"
    );
    let (code, _, err) = switchboard(&["audit", "config", "--config", cfg, "ffffffffff"], &[]);
    assert_eq!(code, 1, "{err}");

    // One archive for the auditor, read with Python's tarfile alone.
    let bundle = root.join("evidence.tar.gz");
    let (code, _, err) = switchboard(
        &[
            "audit",
            "bundle",
            "--config",
            cfg,
            "--since",
            "90d",
            "-o",
            s(&bundle),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value =
        serde_json::from_str(&python(BUNDLE_PY, &[s(&bundle)])).expect("bundle summary");
    assert_eq!(b["records"], recs.len(), "{b}");
    assert_eq!(b["csv_rows"], recs.len(), "{b}");
    let names = b["names"].to_string();
    for n in [
        "audit-bundle/README.txt",
        "audit-bundle/records.jsonl",
        "audit-bundle/records.csv",
        "audit-bundle/audit-record.schema.json",
        "audit-bundle/verify.txt",
        &format!("audit-bundle/configs/{}.txt", &first[..12]),
        &format!("audit-bundle/configs/{}.json", &newest[..12]),
    ] {
        assert!(names.contains(n), "{n} in {names}");
    }
    assert!(
        b["verify"].as_str().unwrap_or("").contains("chain intact")
            && b["verify"]
                .as_str()
                .unwrap_or("")
                .contains("authenticated: records 1.."),
        "{b}"
    );
    assert!(
        b["readme"].as_str().unwrap_or("").contains("hmac.new(key"),
        "{b}"
    );
    let (code, _, _) = switchboard(
        &[
            "audit",
            "bundle",
            "--config",
            cfg,
            "--since",
            "90d",
            "-o",
            s(&bundle),
        ],
        &[],
    );
    assert_eq!(code, 2, "an existing archive is not overwritten");

    // `switchboard token new` audits from its own process: with the key, so the chain stays
    // whole.
    let mut text = std::fs::read_to_string(&main).expect("read");
    text.push_str("[auth]\ntokens_file = \"tokens.toml\"\n");
    std::fs::write(&main, text).expect("write");
    let (code, _, err) = switchboard(
        &[
            "token", "new", "auditor", "--role", "viewer", "--config", cfg,
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("not audited"), "{err}");
    let (code, _, err) = switchboard(&["audit", "verify", "--config", cfg], &[]);
    assert_eq!(code, 0, "the token's record is keyed too: {err}");
    let (_, export, _) = switchboard(
        &["audit", "export", "--config", cfg, "--format", "jsonl"],
        &[],
    );
    let token_rec: serde_json::Value =
        serde_json::from_str(export.lines().last().expect("records")).expect("JSON");
    assert_eq!(token_rec["detail"]["command"], "token_new", "{token_rec}");
    assert!(token_rec["mac"].is_string(), "{token_rec}");

    // The keyed chain cannot be extended without its key: the daemon refuses to start.
    let text = std::fs::read_to_string(&main).expect("read");
    let without_key = text.replace("key_file = \"audit.key\"\n", "");
    std::fs::write(&main, without_key).expect("write");
    let mut run = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config", cfg])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard");
    let started = std::time::Instant::now();
    let mut exited = run.try_wait().expect("try_wait");
    while exited.is_none() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
        exited = run.try_wait().expect("try_wait");
    }
    if exited.is_none() {
        let _ = run.kill();
        let _ = run.wait();
        panic!("the daemon started on a keyed chain without its key");
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(!exited.expect("exited").success(), "{err}");
    assert!(err.contains("no [audit] key_file is configured"), "{err}");
}

/// Reads a bundle's drill reports and records with Python's `tarfile` alone.
const BUNDLE_DRILLS_PY: &str = r#"
import json, sys, tarfile
t = tarfile.open(sys.argv[1], "r:gz")
names = [n for n in t.getnames() if n.startswith("audit-bundle/drills/")]
drills = [json.loads(t.extractfile(n).read()) for n in sorted(names)]
recs = t.extractfile("audit-bundle/records.jsonl").read().decode().splitlines()
print(json.dumps({"drills": drills, "records": [json.loads(l)["id"] for l in recs]}))
"#;

#[test]
fn a_bundle_holds_the_periods_records_and_drill_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, key) = keyed_database(dir.path());
    let store = Store::open(&db).expect("open");
    let now = Timestamp::now().0;
    let drill = |id: &str, started: i64| {
        switchboard::store::DrillRow {
        id: id.into(),
        service: "ticket-submission".into(),
        mode: "dry_run".into(),
        actor: "olga".into(),
        reason: "Q4 drill".into(),
        ticket: Some("CHG-7".into()),
        started_at: Timestamp(started),
        deadline: Timestamp(started + 600_000),
        ended_at: Some(Timestamp(started + 30_000)),
        status: "pass".into(),
        report: r#"{"result":"pass","steps":[{"step":"decision","target_seconds":5,"seconds":0.2,"passed":true}]}"#.into(),
    }
    };
    store
        .insert_drill(&drill("drill-recent", now - 86_400_000))
        .expect("drill");
    store
        .insert_drill(&drill("drill-old", T0))
        .expect("old drill");
    drop(store);
    let bundle = dir.path().join("b.tar.gz");
    let (code, _, err) = switchboard(
        &[
            "audit",
            "bundle",
            "--db",
            s(&db),
            "--key-file",
            s(&key),
            "--since",
            "30d",
            "-o",
            s(&bundle),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value =
        serde_json::from_str(&python(BUNDLE_DRILLS_PY, &[s(&bundle)])).expect("JSON");
    // The known records are from 2023: outside a 30-day period.
    assert_eq!(b["records"], serde_json::json!([]), "{b}");
    let drills = b["drills"].as_array().expect("drills");
    assert_eq!(drills.len(), 1, "only the period's drill: {b}");
    assert_eq!(drills[0]["id"], "drill-recent");
    assert_eq!(drills[0]["ticket"], "CHG-7");
    assert_eq!(drills[0]["report"]["steps"][0]["target_seconds"], 5);

    let bundle = dir.path().join("all.tar.gz");
    let (code, _, err) = switchboard(
        &[
            "audit",
            "bundle",
            "--db",
            s(&db),
            "--since",
            "36500d",
            "-o",
            s(&bundle),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value =
        serde_json::from_str(&python(BUNDLE_DRILLS_PY, &[s(&bundle)])).expect("JSON");
    assert_eq!(b["records"], serde_json::json!([1, 2, 3, 4, 5, 6]), "{b}");
    assert_eq!(b["drills"].as_array().map(Vec::len), Some(2), "{b}");
}

/// Starts the daemon on `main`, waits for it to serve, and stops it with SIGTERM.
fn run_once(main: &Path, port: u16) {
    let mut d = Daemon::start(main, port);
    let pid = d.child.id() as libc::pid_t;
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(d.child.wait().expect("wait").success());
}

#[test]
fn stored_configurations_keep_secrets_out_and_an_edited_one_breaks_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let target = Target::start();
    let (main, port) = write_config(root, &target, FILE_MAIL);
    run_once(&main, port);
    // The same files with a chat webhook, whose URL is a secret written in the file.
    let secret_url = "http://127.0.0.1:9/hooks/T000/SECRET-chat-token-42";
    let mut text = std::fs::read_to_string(&main).expect("read");
    text.push_str(&format!("[chat]\nwebhook_url = \"{secret_url}\"\n"));
    std::fs::write(&main, text).expect("write");
    run_once(&main, port);

    let cfg = s(&main);
    let (code, list, err) = switchboard(&["audit", "config", "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    let versions: Vec<&str> = list
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(versions.len(), 2, "{list}");
    let (code, shown, err) = switchboard(&["audit", "config", "--config", cfg, versions[1]], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !shown.contains("SECRET-chat-token-42")
            && shown.contains("webhook_url = \"<redacted: [chat] webhook_url>\"")
            && shown.contains("# redacted: [chat] webhook_url in switchboard.toml"),
        "{shown}"
    );
    let (code, out, err) = switchboard(&["audit", "verify", "--config", cfg], &[]);
    assert_eq!(code, 0, "a redacted version is not tampering: {out}{err}");

    // Someone edits the stored copy of the first version: it no longer hashes to its name.
    let db = root.join("var/switchboard.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let changed = conn
        .execute(
            "UPDATE config_versions SET contents = replace(contents, 'failover_when = \\\"any\\\"', 'failover_when = \\\"all\\\"') WHERE version = ?1",
            [versions[0]],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    drop(conn);
    let (code, _, err) = switchboard(&["audit", "verify", "--config", cfg], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("configuration version {}", versions[0]))
            && err.contains("a stored file was edited"),
        "{err}"
    );
}
