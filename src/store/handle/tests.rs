//! Tests of the writer thread and the read-only readers behind `StoreHandle`.

use super::*;
use crate::failover::{Cause, State};
use std::time::Duration;

const T0: Timestamp = Timestamp(1_700_000_000_000);
/// Long enough for a loaded CI machine, short enough that a blocked read fails the test.
const PATIENCE: Duration = Duration::from_secs(5);

fn failover(service: &str, from: State) -> Transition {
    Transition {
        service: service.to_owned(),
        from,
        to: State::FailedOver,
        cause: Cause::PrimaryDown,
        at: T0,
        actor: "system".to_owned(),
        reason: "portal form failing".to_owned(),
        evidence: vec!["portal-form: down".to_owned()],
        public_message: None,
    }
}

fn action(n: usize) -> NewAuditRecord {
    NewAuditRecord {
        kind: crate::audit::KIND_OPERATOR_ACTION.to_owned(),
        at: T0,
        actor: "test".to_owned(),
        service: None,
        reason: String::new(),
        config_version: "cfg".to_owned(),
        node: "node-a".to_owned(),
        detail: serde_json::json!({ "n": n }),
    }
}

#[tokio::test]
async fn reads_proceed_while_a_write_transaction_is_held_open() {
    let dir = tempfile::tempdir().unwrap();
    let handle = StoreHandle::open(&dir.path().join("switchboard.db")).unwrap();
    handle
        .write(|s| s.ensure_service("committed", T0))
        .await
        .unwrap();

    // A write that opens its transaction, writes, and then waits to be told to commit.
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let write = handle.write(move |s| {
        let mut conn = s.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO services (id, state, since_ms, cause, created_at_ms)
             VALUES ('uncommitted', 'operational', 0, 'startup', 0)",
            [],
        )?;
        let _ = held_tx.send(());
        let _ = release_rx.recv_timeout(PATIENCE);
        tx.commit()?;
        Ok::<_, StoreError>(())
    });
    held_rx.await.unwrap();

    // With one connection behind one mutex this read would wait for the commit.
    let seen = tokio::time::timeout(PATIENCE, handle.read(|s| s.load_services()))
        .await
        .expect("a read waited for the writer")
        .unwrap();
    let ids: Vec<_> = seen.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["committed"], "a reader saw an uncommitted row");

    release_tx.send(()).unwrap();
    write.await.unwrap();
    let seen = handle.read(|s| s.load_services()).await.unwrap();
    assert_eq!(
        seen.len(),
        2,
        "the commit awaited before a read is visible to it"
    );
}

#[tokio::test]
async fn writes_run_in_the_order_they_were_called_not_awaited() {
    let handle = StoreHandle::start(Store::open_in_memory().unwrap());
    let pending: Vec<_> = (0..40).map(|n| handle.append_audit(action(n))).collect();
    // Awaited newest first: had a job been queued at its first poll, ids would run backwards.
    let mut ids = Vec::new();
    for p in pending.into_iter().rev() {
        ids.push(p.await.unwrap().id);
    }
    ids.reverse();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let rows = handle.read(|s| s.audit_rows(None)).await.unwrap();
    let order: Vec<i64> = rows
        .into_iter()
        .map(|r| r.unwrap().detail["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, (0..40).collect::<Vec<i64>>());
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_writer_thread() {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let handle = StoreHandle::shared(store.clone());
    let copy = handle.clone();
    copy.write(|s| s.ensure_service("a", T0)).await.unwrap();
    drop(handle);
    // One clone left: the writer still holds the store.
    copy.write(|s| s.ensure_service("b", T0)).await.unwrap();
    assert_eq!(Arc::strong_count(&store), 2);
    drop(copy);
    let stopped = tokio::time::timeout(PATIENCE, async {
        while Arc::strong_count(&store) > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        stopped.is_ok(),
        "the writer thread kept the store after the last handle went"
    );
}

#[tokio::test]
async fn errors_come_back_as_the_store_errors_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/switchboard.db");
    let handle = StoreHandle::open(&path).unwrap();
    handle
        .write(|s| s.ensure_service("ticket-submission", T0))
        .await
        .unwrap();

    let err = handle
        .commit_transition(
            failover("ticket-submission", State::Drill),
            "cfg".into(),
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StateMismatch { .. }), "{err}");

    // Another error type that wraps `StoreError` passes through unchanged.
    let draft = handle.append_audit(action(0)).await.unwrap();
    let err = handle
        .write(move |s| s.review(999, "alice", "looked at it", &draft))
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::store::ReviewError::NotFound(999)),
        "{err}"
    );

    // The deleted-file guard still holds behind the handle.
    std::fs::remove_dir_all(dir.path().join("var")).unwrap();
    let err = handle
        .commit_transition(
            failover("ticket-submission", State::Operational),
            "cfg".into(),
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::FileGone { .. }), "{err}");
}

#[tokio::test]
async fn a_reader_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let handle = StoreHandle::open(&dir.path().join("switchboard.db")).unwrap();
    let err = handle
        .read(|s| s.ensure_service("sneaky", T0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Sqlite(_)), "{err}");
    assert!(handle.read(|s| s.load_services()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_panicking_write_answers_writer_gone_and_the_next_write_runs() {
    let handle = StoreHandle::start(Store::open_in_memory().unwrap());
    let err = handle
        .write(|_| -> Result<(), StoreError> { panic!("a bug in a job") })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::WriterGone), "{err}");
    let rec = handle.write(|s| s.ensure_service("a", T0)).await.unwrap();
    assert_eq!(rec.id, "a");
}

#[test]
fn a_thread_outside_the_runtime_writes_and_reads_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let handle = StoreHandle::open(&dir.path().join("switchboard.db")).unwrap();
    let h = handle.clone();
    let seen = std::thread::spawn(move || {
        h.write_blocking(|s| s.ensure_service("added-by-reload", T0))?;
        h.read_blocking(|s| s.load_services())
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, "added-by-reload");
}

#[tokio::test]
async fn a_reader_never_reads_from_a_deleted_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let handle = StoreHandle::open(&dir.path().join("var/switchboard.db")).unwrap();
    handle.write(|s| s.ensure_service("a", T0)).await.unwrap();
    // The read leaves its connection in the pool, still open on the file.
    assert_eq!(handle.read(|s| s.load_services()).await.unwrap().len(), 1);
    std::fs::remove_dir_all(dir.path().join("var")).unwrap();
    let err = handle.read(|s| s.load_services()).await.unwrap_err();
    assert!(matches!(err, StoreError::NoDatabase { .. }), "{err}");
}
