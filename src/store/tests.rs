//! Tests of the SQLite store: migrations, services, transitions, the outbox, the audit chain and the file guard.

use super::open::{AUDIT_SCHEMA, MIGRATIONS};
use super::*;
use crate::audit::{self, AuditContext, AuditRecord, NewAuditRecord, Verdict};
use crate::failover::Cause;
use rusqlite::Connection;
use std::time::Duration;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn transition(service: &str, from: State, to: State, at: Timestamp) -> Transition {
    Transition {
        service: service.to_owned(),
        from,
        to,
        cause: if to == State::FailedOver {
            Cause::PrimaryDown
        } else {
            Cause::RecoveryHoldElapsed
        },
        at,
        actor: "system".to_owned(),
        reason: "portal form failing".to_owned(),
        evidence: vec!["portal-form: down (connect: connection refused)".to_owned()],
        public_message: None,
    }
}

fn announcement(audience: &str) -> NewAnnouncement {
    NewAnnouncement {
        audience: audience.to_owned(),
        channel: "email".to_owned(),
        kind: "failover".to_owned(),
        recipients: vec![format!("{audience}@example.com")],
        subject: format!("subject for {audience}"),
        text: "text".to_owned(),
        html: Some("<p>html</p>".to_owned()),
    }
}

fn failover(store: &Store, at: Timestamp) -> CommittedTransition {
    let t = transition(
        "ticket-submission",
        State::Operational,
        State::FailedOver,
        at,
    );
    store
        .commit_transition(
            &t,
            "cfg-v1",
            &[announcement("oncall"), announcement("customers")],
        )
        .expect("commit")
}

#[test]
fn migrations_set_the_schema_version_and_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/switchboard.db");
    // The newest migration, whichever it is: every one applies on a fresh file.
    let newest = MIGRATIONS.last().map(|(v, _)| *v).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), newest);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), newest);
}

#[test]
fn refuses_a_schema_newer_than_this_build() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Store::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let err = Store::open(&path).unwrap_err();
    let newest = MIGRATIONS.last().map(|(v, _)| *v).unwrap();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                known
            } if known == newest
        ),
        "{err}"
    );
}

#[test]
fn a_version_3_outbox_is_rebuilt_with_its_rows_and_learns_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        // A database as version 3 left it, with one pending row.
        let mut conn = Connection::open(&path).unwrap();
        for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 3) {
            conn.execute_batch(sql).unwrap();
            if *v == AUDIT_SCHEMA {
                let tx = conn.transaction().unwrap();
                audit_log::backfill(&tx).unwrap();
                tx.commit().unwrap();
            }
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO transitions (service, from_state, to_state, cause, actor, reason,
               at_ms, evidence, config_version)
             VALUES ('svc', 'operational', 'failed_over', 'primary_down', 'system', 'r', 5, '[]', 'v');
             INSERT INTO outbox (transition_id, audience, channel, message_id, recipients,
               subject, body_text, created_at_ms, next_attempt_at_ms)
             VALUES (1, 'oncall', 'email', '<t1.oncall.svc@switchboard>', '[\"a@example.com\"]',
               's', 't', 5, 5);",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let newest = MIGRATIONS.last().map(|(v, _)| *v).unwrap();
    assert_eq!(store.schema_version().unwrap(), newest);
    // Migration 7 gave the old file an instance id, and the pending row kept its
    // Message-ID through both rebuilds: a retry after the upgrade is still recognisable.
    assert_eq!(store.instance_id().len(), 16);
    let rows = store.announcements(1).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].message_id, "<t1.oncall.svc@switchboard>");
    assert_eq!(rows[0].kind, "");
    store.mark_given_up(rows[0].id, T0, "relay gone").unwrap();
    let row = store.outbox_item(rows[0].id).unwrap().unwrap();
    assert_eq!(row.status, OutboxStatus::GivenUp);
    assert_eq!(row.given_up_at, Some(T0));
    assert_eq!(store.outbox_backlog().unwrap(), (0, None));
}

#[test]
fn a_later_message_to_the_same_audience_and_channel_waits_for_the_earlier_one() {
    let store = Store::open_in_memory().unwrap();
    let first = failover(&store, T0);
    let back = transition(
        "ticket-submission",
        State::FailedOver,
        State::Operational,
        Timestamp(T0.0 + 1000),
    );
    let second = store
        .commit_transition(&back, "v", &[announcement("customers")])
        .unwrap();
    // The failover's customers mail failed and waits for its retry.
    let retry_at = Timestamp(T0.0 + 60_000);
    store
        .mark_failed(first.outbox_ids[1], T0, "down", retry_at)
        .unwrap();
    let due = |now| -> Vec<i64> {
        store
            .due_announcements(now, 10)
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect()
    };
    // The failback mail is due by time, but must not overtake the failover mail.
    assert_eq!(due(Timestamp(T0.0 + 2000)), vec![first.outbox_ids[0]]);
    assert_eq!(
        due(retry_at),
        vec![first.outbox_ids[0], first.outbox_ids[1]]
    );
    store
        .mark_delivered(first.outbox_ids[1], retry_at, "250")
        .unwrap();
    store
        .mark_delivered(first.outbox_ids[0], retry_at, "250")
        .unwrap();
    assert_eq!(due(retry_at), vec![second.outbox_ids[0]]);
    // A given-up row no longer holds the stream up.
    store
        .mark_given_up(second.outbox_ids[0], retry_at, "gone")
        .unwrap();
    assert!(due(Timestamp(i64::MAX)).is_empty());
}

#[test]
fn a_notice_hangs_off_the_latest_transition_with_its_own_message_id() {
    let store = Store::open_in_memory().unwrap();
    let mut notice = announcement("oncall");
    notice.kind = "flapping".into();
    assert!(matches!(
        store.enqueue_notice("ticket-submission", T0, std::slice::from_ref(&notice)),
        Err(StoreError::NoTransition(_))
    ));
    let c = failover(&store, T0);
    let ids = store
        .enqueue_notice("ticket-submission", T0, &[notice])
        .unwrap();
    let rows = store.announcements(c.transition_id).unwrap();
    assert_eq!(rows.len(), 3);
    let flap = rows.iter().find(|r| r.id == ids[0]).unwrap();
    assert_eq!(flap.kind, "flapping");
    assert_eq!(
        flap.message_id,
        store.message_ids().for_transition(
            c.transition_id,
            "oncall.flapping",
            "email",
            "ticket-submission",
            T0
        )
    );
    assert!(flap
        .message_id
        .starts_with(&format!("<t{}.oncall_flapping.", c.transition_id)));
}

#[test]
fn the_open_statuspage_incident_is_remembered_and_forgotten() {
    let store = Store::open_in_memory().unwrap();
    assert_eq!(store.statuspage_incident("svc").unwrap(), None);
    store
        .set_statuspage_incident("svc", Some("inc1"), T0)
        .unwrap();
    store
        .set_statuspage_incident("svc", Some("inc2"), T0)
        .unwrap();
    assert_eq!(
        store.statuspage_incident("svc").unwrap().as_deref(),
        Some("inc2")
    );
    store.set_statuspage_incident("svc", None, T0).unwrap();
    assert_eq!(store.statuspage_incident("svc").unwrap(), None);
}

#[test]
fn ensure_service_inserts_operational_once_then_returns_the_stored_one() {
    let store = Store::open_in_memory().unwrap();
    let first = store.ensure_service("ticket-submission", T0).unwrap();
    assert_eq!(
        first,
        ServiceRecord {
            id: "ticket-submission".into(),
            state: State::Operational,
            since: T0,
            cause: "startup".into(),
            created_at: T0,
        }
    );
    let later = Timestamp(T0.0 + 60_000);
    assert_eq!(
        store.ensure_service("ticket-submission", later).unwrap(),
        first
    );
    assert_eq!(store.load_services().unwrap(), vec![first]);
}

#[test]
fn holds_are_saved_replaced_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    {
        let store = Store::open(&path).expect("open");
        assert_eq!(store.holds("tickets").expect("read"), None);
        store
            .set_holds("tickets", "{\"flapping\":false}", T0)
            .expect("save");
        store
            .set_holds("tickets", "{\"flapping\":true}", T0)
            .expect("replace");
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(
        store.holds("tickets").expect("read").as_deref(),
        Some("{\"flapping\":true}")
    );
}

#[test]
fn state_and_outbox_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.db");
    let committed = {
        let store = Store::open(&path).unwrap();
        store.ensure_service("ticket-submission", T0).unwrap();
        failover(&store, Timestamp(T0.0 + 5_000))
    };

    let store = Store::open(&path).unwrap();
    let services = store.load_services().unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].state, State::FailedOver);
    assert_eq!(services[0].since, Timestamp(T0.0 + 5_000));
    assert_eq!(services[0].cause, "primary_down");
    assert_eq!(services[0].created_at, T0);
    // ensure_service after a restart keeps the stored state: nothing is re-announced.
    assert_eq!(
        store
            .ensure_service("ticket-submission", Timestamp(T0.0 + 9_000))
            .unwrap()
            .state,
        State::FailedOver
    );

    let history = store.transitions(Some("ticket-submission"), 10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id, committed.transition_id);
    assert_eq!(history[0].config_version, "cfg-v1");
    assert_eq!(
        history[0].transition,
        transition(
            "ticket-submission",
            State::Operational,
            State::FailedOver,
            Timestamp(T0.0 + 5_000)
        )
    );
    assert_eq!(
        store.outbox_backlog().unwrap(),
        (2, Some(Timestamp(T0.0 + 5_000)))
    );
}

#[test]
fn a_failing_announcement_insert_rolls_back_the_whole_transition() {
    let store = Store::open_in_memory().unwrap();
    store.ensure_service("ticket-submission", T0).unwrap();
    let t = transition(
        "ticket-submission",
        State::Operational,
        State::FailedOver,
        Timestamp(T0.0 + 1),
    );
    // Two announcements to the same audience and channel violate the outbox's
    // uniqueness rule on the second insert, after the transition row was written.
    let err = store
        .commit_transition(
            &t,
            "cfg",
            &[announcement("customers"), announcement("customers")],
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Sqlite(_)), "{err}");

    assert!(store.transitions(None, 10).unwrap().is_empty());
    assert_eq!(store.outbox_backlog().unwrap(), (0, None));
    let svc = store.service("ticket-submission").unwrap().unwrap();
    assert_eq!(svc.state, State::Operational);
    assert_eq!(svc.cause, "startup");
}

#[test]
fn a_transition_from_a_state_the_service_is_not_in_is_refused() {
    let store = Store::open_in_memory().unwrap();
    store.ensure_service("ticket-submission", T0).unwrap();
    let t = transition(
        "ticket-submission",
        State::FailedOver,
        State::Operational,
        Timestamp(T0.0 + 1),
    );
    let err = store.commit_transition(&t, "cfg", &[]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::StateMismatch {
                stored: State::Operational,
                from: State::FailedOver,
                ..
            }
        ),
        "{err}"
    );
    assert!(store.transitions(None, 10).unwrap().is_empty());
}

#[test]
fn a_drill_may_end_interrupted_and_older_drills_survive_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let row = crate::store::DrillRow {
        id: "d1".into(),
        service: "svc".into(),
        mode: "dry_run".into(),
        actor: "olga".into(),
        reason: "r".into(),
        ticket: None,
        started_at: T0,
        deadline: T0,
        ended_at: None,
        status: "running".into(),
        report: "{}".into(),
    };
    store.insert_drill(&row).unwrap();
    store
        .update_drill("d1", "interrupted", Some(T0), "{}")
        .unwrap();
    assert_eq!(store.drill("d1").unwrap().unwrap().status, "interrupted");
    assert!(store.update_drill("d1", "nonsense", None, "{}").is_err());
}

#[test]
fn a_transition_for_an_unknown_service_creates_it() {
    let store = Store::open_in_memory().unwrap();
    failover(&store, T0);
    let svc = store.service("ticket-submission").unwrap().unwrap();
    assert_eq!(svc.state, State::FailedOver);
    assert_eq!(svc.created_at, T0);
}

#[test]
fn message_ids_are_stable_and_unique_per_transition_and_audience() {
    let store = Store::open_in_memory().unwrap();
    let first = failover(&store, T0);
    let back = transition(
        "ticket-submission",
        State::FailedOver,
        State::Operational,
        Timestamp(T0.0 + 1_000),
    );
    let second = store
        .commit_transition(&back, "cfg-v1", &[announcement("customers")])
        .unwrap();

    let a = store.announcements(first.transition_id).unwrap();
    let b = store.announcements(second.transition_id).unwrap();
    let tid = first.transition_id;
    let inst = store.instance_id().to_owned();
    assert_eq!(inst.len(), 16, "a random 64-bit id in hex: {inst}");
    // T0 in base 36.
    let t0 = "loyw3v28";
    assert_eq!(
        a.iter().map(|i| i.message_id.as_str()).collect::<Vec<_>>(),
        vec![
            format!("<t{tid}.oncall.ticket-submission.{t0}.{inst}@switchboard.invalid>"),
            format!("<t{tid}.customers.ticket-submission.{t0}.{inst}@switchboard.invalid>"),
        ]
    );
    assert_ne!(a[1].message_id, b[0].message_id);
    // The id is a function of stored values: recomputing it gives the same value.
    assert_eq!(
        a[1].message_id,
        store
            .message_ids()
            .for_transition(tid, "customers", "email", "ticket-submission", T0)
    );
    store.set_message_id_domain("example.com");
    assert_eq!(
        store
            .message_ids()
            .for_transition(7, "oncall", "webhook", "a b", Timestamp(35)),
        format!("<t7.oncall.webhook.a_b.z.{inst}@example.com>")
    );
    // Another database: another instance id, so the same first transition gets another id.
    let other = Store::open_in_memory().unwrap();
    assert_ne!(other.instance_id(), inst);
    assert_eq!(a.iter().map(|i| i.id).collect::<Vec<_>>(), first.outbox_ids);
}

#[test]
fn outbox_items_come_due_fail_with_backoff_and_deliver_once() {
    let store = Store::open_in_memory().unwrap();
    let c = failover(&store, T0);
    let due = store.due_announcements(T0, 10).unwrap();
    assert_eq!(due.len(), 2);
    let item = &due[0];
    assert_eq!(item.status, OutboxStatus::Pending);
    assert_eq!(item.attempts, 0);
    assert_eq!(item.service, "ticket-submission");
    assert_eq!(item.recipients, vec!["oncall@example.com".to_string()]);
    assert_eq!(item.html.as_deref(), Some("<p>html</p>"));
    assert_eq!(
        store.due_announcements(Timestamp(T0.0 - 1), 10).unwrap(),
        vec![]
    );
    assert_eq!(store.due_announcements(T0, 1).unwrap().len(), 1);

    let retry_at = Timestamp(T0.0 + 1_000);
    store
        .mark_failed(item.id, T0, "connection refused", retry_at)
        .unwrap();
    let failed = store.outbox_item(item.id).unwrap().unwrap();
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.status, OutboxStatus::Pending);
    assert_eq!(failed.next_attempt_at, retry_at);
    assert_eq!(failed.last_error.as_deref(), Some("connection refused"));
    // Not due again until its retry time.
    let due_ids = |now| -> Vec<i64> {
        store
            .due_announcements(now, 10)
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect()
    };
    assert_eq!(due_ids(T0), vec![c.outbox_ids[1]]);
    assert_eq!(due_ids(retry_at), vec![c.outbox_ids[1], c.outbox_ids[0]]);

    store.mark_delivered(item.id, retry_at, "250 OK").unwrap();
    // Marking again is harmless and changes nothing.
    store
        .mark_delivered(item.id, Timestamp(retry_at.0 + 5), "again")
        .unwrap();
    let done = store.outbox_item(item.id).unwrap().unwrap();
    assert_eq!(done.status, OutboxStatus::Delivered);
    assert_eq!(done.attempts, 2);
    assert_eq!(done.delivered_at, Some(retry_at));
    assert_eq!(done.detail.as_deref(), Some("250 OK"));
    assert_eq!(due_ids(Timestamp(i64::MAX)), vec![c.outbox_ids[1]]);
    assert_eq!(store.outbox_backlog().unwrap(), (1, Some(T0)));

    assert!(matches!(
        store.mark_delivered(9_999, T0, "x"),
        Err(StoreError::NoSuchOutboxItem(9_999))
    ));
    assert!(matches!(
        store.mark_failed(9_999, T0, "x", T0),
        Err(StoreError::NoSuchOutboxItem(9_999))
    ));
}

#[test]
fn transitions_are_listed_newest_last_and_filtered_by_service() {
    let store = Store::open_in_memory().unwrap();
    for i in 0..3 {
        let (from, to) = if i % 2 == 0 {
            (State::Operational, State::FailedOver)
        } else {
            (State::FailedOver, State::Operational)
        };
        store
            .commit_transition(&transition("a", from, to, Timestamp(i)), "v", &[])
            .unwrap();
    }
    store
        .commit_transition(
            &transition("b", State::Operational, State::FailedOver, Timestamp(10)),
            "v",
            &[],
        )
        .unwrap();
    let all = store.transitions(None, 10).unwrap();
    assert_eq!(
        all.iter()
            .map(|r| r.transition.service.as_str())
            .collect::<Vec<_>>(),
        ["a", "a", "a", "b"]
    );
    let last_two_of_a = store.transitions(Some("a"), 2).unwrap();
    assert_eq!(
        last_two_of_a
            .iter()
            .map(|r| r.transition.at)
            .collect::<Vec<_>>(),
        [Timestamp(1), Timestamp(2)]
    );
}

fn audit_ctx() -> AuditContext {
    AuditContext {
        config_version: "cfg-v2".into(),
        node: "node-a".into(),
        routes_before: [("submit-ticket".to_owned(), "https://p".to_owned())].into(),
        routes_after: [("submit-ticket".to_owned(), "https://b".to_owned())].into(),
        grounds: Vec::new(),
    }
}

fn records(store: &Store) -> Vec<AuditRecord> {
    store
        .audit_rows(None)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn a_transition_writes_one_chained_audit_record_with_its_context() {
    let store = Store::open_in_memory().unwrap();
    let t = transition(
        "ticket-submission",
        State::Operational,
        State::FailedOver,
        T0,
    );
    let c = store
        .commit_transition(&t, audit_ctx(), &[announcement("oncall")])
        .unwrap();
    let back = transition(
        "ticket-submission",
        State::FailedOver,
        State::Operational,
        T0.plus(Duration::from_secs(60)),
    );
    store.commit_transition(&back, "cfg-v2", &[]).unwrap();

    let recs = records(&store);
    assert_eq!(recs.len(), 2);
    let r = &recs[0];
    assert_eq!(
        (r.id, r.kind.as_str(), r.transition_id, r.at),
        (1, "transition", Some(c.transition_id), T0)
    );
    assert_eq!(r.node, "node-a");
    assert_eq!(r.actor, "system");
    assert_eq!(r.service.as_deref(), Some("ticket-submission"));
    assert_eq!(
        (r.from.as_deref(), r.to.as_deref()),
        (Some("operational"), Some("failed_over"))
    );
    assert_eq!(r.cause.as_deref(), Some("primary_down"));
    assert_eq!(r.evidence, t.evidence);
    assert_eq!(r.routes_before, audit_ctx().routes_before);
    assert_eq!(r.routes_after, audit_ctx().routes_after);
    assert_eq!(r.config_version, "cfg-v2");
    assert_eq!(r.prev_hash, audit::GENESIS_HASH);
    assert_eq!(r.hash, r.compute_hash());
    assert_eq!(recs[1].prev_hash, r.hash);
    assert!(
        recs[1].routes_after.is_empty(),
        "a bare config version records no routes"
    );
    assert!(matches!(
        store.verify_audit().unwrap(),
        Verdict::Intact { records: 2, last_hash: Some(ref h) } if *h == recs[1].hash
    ));
}

#[test]
fn a_rolled_back_transition_leaves_no_audit_record() {
    let store = Store::open_in_memory().unwrap();
    let t = transition(
        "ticket-submission",
        State::Operational,
        State::FailedOver,
        T0,
    );
    store
        .commit_transition(
            &t,
            audit_ctx(),
            &[announcement("customers"), announcement("customers")],
        )
        .unwrap_err();
    assert!(records(&store).is_empty());
    // The id of the rolled-back record is not "issued": the next one is still 1.
    store.commit_transition(&t, audit_ctx(), &[]).unwrap();
    assert_eq!(records(&store)[0].id, 1);
    assert!(matches!(
        store.verify_audit().unwrap(),
        Verdict::Intact { records: 1, .. }
    ));
}

#[test]
fn operator_actions_join_the_same_chain() {
    let store = Store::open_in_memory().unwrap();
    failover(&store, T0);
    let rec = store
        .append_audit(&NewAuditRecord {
            kind: audit::KIND_OPERATOR_ACTION.into(),
            at: T0.plus(Duration::from_secs(1)),
            actor: "alice".into(),
            service: Some("ticket-submission".into()),
            reason: "pin to backup during vendor maintenance".into(),
            config_version: "cfg-v1".into(),
            node: "node-a".into(),
            detail: serde_json::json!({"command": "pin", "side": "backup"}),
        })
        .unwrap();
    assert_eq!(rec.id, 2);
    assert_eq!(rec.prev_hash, records(&store)[0].hash);
    assert_eq!(records(&store)[1], rec);
    assert!(matches!(
        store.verify_audit().unwrap(),
        Verdict::Intact { records: 2, .. }
    ));
}

#[test]
fn audit_rows_cannot_be_updated_or_deleted_through_sql_by_accident() {
    let store = Store::open_in_memory().unwrap();
    failover(&store, T0);
    let conn = store.conn();
    for sql in ["UPDATE audit SET reason = 'x'", "DELETE FROM audit"] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[test]
fn migrating_a_version_1_database_backfills_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        // A database as the previous release left it: schema 1 with one transition.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0].1).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute(
            "INSERT INTO transitions (service, from_state, to_state, cause, actor, reason, at_ms, evidence, config_version)
             VALUES ('s', 'operational', 'failed_over', 'primary_down', 'system', 'r', 5, '[\"e\"]', 'v1')",
            [],
        )
        .unwrap();
    }
    assert!(matches!(
        Store::open_read_only(&path).unwrap_err(),
        StoreError::NoAuditLog { found: 1 }
    ));
    let store = Store::open(&path).unwrap();
    let recs = records(&store);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].transition_id, Some(1));
    assert_eq!(recs[0].evidence, vec!["e".to_string()]);
    assert_eq!(recs[0].detail, serde_json::json!({"backfilled": true}));
    assert!(matches!(
        store.verify_audit().unwrap(),
        Verdict::Intact { records: 1, .. }
    ));
    drop(store);
    let ro = Store::open_read_only(&path).unwrap();
    assert!(matches!(
        ro.verify_audit().unwrap(),
        Verdict::Intact { records: 1, .. }
    ));
}

#[test]
fn a_removed_database_file_fails_the_commit_instead_of_writing_into_the_void() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/switchboard.db");
    let store = Store::open(&path).unwrap();
    store.ensure_service("ticket-submission", T0).unwrap();
    std::fs::remove_dir_all(dir.path().join("var")).unwrap();
    let t = transition(
        "ticket-submission",
        State::Operational,
        State::FailedOver,
        T0,
    );
    let err = store.commit_transition(&t, audit_ctx(), &[]).unwrap_err();
    assert!(matches!(err, StoreError::FileGone { .. }), "{err}");
    assert!(err.to_string().contains("is gone"), "{err}");
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}

#[test]
fn a_delivery_and_a_give_up_are_chained_with_their_proof_and_linked_to_their_transition() {
    let store = Store::open_in_memory().unwrap();
    store.ensure_service("ticket-submission", T0).unwrap();
    let t = transition(
        "ticket-submission",
        State::Operational,
        State::FailedOver,
        T0,
    );
    let mut hook = announcement("customers");
    hook.channel = "webhook".into();
    hook.recipients = vec!["banner".into()];
    let c = store
        .commit_transition(&t, audit_ctx(), &[announcement("oncall"), hook])
        .unwrap();
    let at = Timestamp(T0.0 + 700);
    let row = store.outbox_item(c.outbox_ids[0]).unwrap().unwrap();
    assert!(store
        .mark_delivered(c.outbox_ids[0], at, "250 2.0.0 Ok: queued as 4F2")
        .unwrap());
    // Marking it again changes nothing and proves nothing twice.
    assert!(!store.mark_delivered(c.outbox_ids[0], at, "again").unwrap());
    store
        .mark_failed(c.outbox_ids[1], at, "answered 503, not 2xx", at)
        .unwrap();
    assert!(store
        .mark_given_up(
            c.outbox_ids[1],
            Timestamp(at.0 + 1),
            "answered 503, not 2xx"
        )
        .unwrap());
    assert!(!store
        .mark_given_up(c.outbox_ids[1], Timestamp(at.0 + 2), "x")
        .unwrap());

    let recs = records(&store);
    let kinds: Vec<&str> = recs.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "transition",
            audit::KIND_ANNOUNCEMENT_DELIVERED,
            audit::KIND_ANNOUNCEMENT_GIVEN_UP
        ]
    );
    let (tr, delivered, given_up) = (&recs[0], &recs[1], &recs[2]);
    for r in [delivered, given_up] {
        // Linked to the transition and its record, not through the transition column
        // (which `verify` cross-checks one to one with the transitions table).
        assert_eq!(r.transition_id, None);
        assert_eq!(r.detail["transition_id"], c.transition_id);
        assert_eq!(r.detail["transition_record"], tr.id);
        assert_eq!(
            r.detail["transitions"],
            serde_json::json!([c.transition_id])
        );
        assert_eq!(r.service.as_deref(), Some("ticket-submission"));
        assert_eq!(
            (r.node.as_str(), r.config_version.as_str()),
            ("node-a", "cfg-v2")
        );
    }
    assert_eq!(delivered.at, at);
    assert_eq!(delivered.detail["message_id"], row.message_id.as_str());
    assert_eq!(delivered.detail["reply"], "250 2.0.0 Ok: queued as 4F2");
    assert_eq!(
        delivered.detail["recipients"],
        serde_json::json!(["oncall@example.com"])
    );
    assert_eq!(delivered.detail["attempts"], 1);
    assert_eq!(
        delivered.reason,
        "e-mail to oncall accepted: 250 2.0.0 Ok: queued as 4F2"
    );
    assert_eq!(given_up.detail["last_error"], "answered 503, not 2xx");
    assert_eq!(given_up.detail["attempts"], 2);
    assert_eq!(given_up.detail["channel"], "webhook");
    assert!(matches!(
        store.verify_audit().unwrap(),
        Verdict::Intact { .. }
    ));
    // A restart counts them as the live metric did: one record per final result.
    let facts = store.metric_facts().unwrap();
    let count = |kind: &str| {
        facts
            .audit_records
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, n)| *n)
    };
    assert_eq!(count(audit::KIND_ANNOUNCEMENT_DELIVERED), Some(1));
    assert_eq!(count(audit::KIND_ANNOUNCEMENT_GIVEN_UP), Some(1));
    assert_eq!(count(audit::KIND_TRANSITION), Some(1));
}

#[test]
fn a_statuspage_receipt_keeps_the_incident_id_and_the_http_status() {
    let store = Store::open_in_memory().unwrap();
    let c = failover(&store, T0);
    let receipt = Receipt {
        incident_id: Some("inc42".into()),
        ..Receipt::http(201, "201 POST /pages/p1/incidents".into())
    };
    store.mark_delivered(c.outbox_ids[0], T0, receipt).unwrap();
    let recs = records(&store);
    let r = recs.last().unwrap();
    assert_eq!(r.kind, audit::KIND_ANNOUNCEMENT_DELIVERED);
    assert_eq!(r.detail["http_status"], 201);
    assert_eq!(r.detail["incident_id"], "inc42");
}
