//! `StoreHandle`: the one way async code reaches the store — a writer thread fed by a channel, and read-only connections for readers.
//!
//! Why a thread and not a task: a commit ends in an fsync (`synchronous=FULL`), which can take
//! a long time on a busy or failing disk. On a plain `std::thread` that wait never occupies a
//! tokio worker, so probes, the core and the HTTP side keep running while the disk is slow.
//!
//! Why one writer: SQLite admits one writer at a time anyway. Giving the write connection to
//! one thread that takes jobs from a channel makes the order of writes the order of the calls
//! (a job is queued when `write` is called, not when its future is first polled), and no
//! caller ever blocks a thread waiting for a lock another caller holds.
//!
//! Why separate readers: with WAL, a reader sees the last committed state while the writer
//! writes, so the API and the status page never wait behind a commit. Readers borrow a
//! read-only connection from a small pool for one call, run on tokio's blocking pool: a pool
//! rather than one fixed connection, so that concurrent requests do not queue behind each
//! other, and rather than one connection per call, because opening one costs a file open and
//! a schema parse. Connections are opened when no idle one is left and at most `MAX_IDLE` are
//! kept. A read-only connection cannot write: a write sent through `read` by mistake fails
//! loudly (`SQLITE_READONLY`) instead of bypassing the writer.
//!
//! What stays true (ARCHITECTURE.md, "Write before acting"): the caller still awaits the
//! commit before acting on it; `Store` keeps the deleted-file guard and the audit record in
//! the transition's transaction; migrations run once, on the writer's connection, at open.
//! An in-memory database (tests, dry runs) has no second connection to read through, so its
//! reads go to the writer.
//!
//! Converting a call site (mechanical): with `store: StoreHandle`,
//! - `block_in_place(|| store.X(&a, &b))` or a plain `store.X(..)` in async code, when `X`
//!   writes: `store.write(move |s| s.X(&a, &b)).await`, arguments moved in owned; the named
//!   `commit_transition(_with)`, `append_audit` and `enqueue_notice_with` take them owned;
//! - the same when `X` only reads: `store.read(move |s| s.X(&a)).await`;
//! - `spawn_blocking(move || store.X(..)).await` (a `Result<Result<..>, JoinError>`):
//!   `store.read(..)` or `store.write(..)`, one `Result` less to unwrap;
//! - on a thread of its own (reload preparation): `write_blocking` / `read_blocking`;
//! - several calls that must see each other (a review, then the count of pending reviews):
//!   one `write` closure making both calls;
//! - at start, before the runtime's tasks run: keep the synchronous `Store` calls, then
//!   `StoreHandle::start(store)`.
//!
//! Errors are the ones the `Store` method returns (`StoreError`, or a type that wraps it such
//! as `ReviewError`); `StoreError::WriterGone` is the only new one.

use super::{Store, StoreError};
use crate::audit::{AuditContext, AuditRecord, NewAuditRecord};
use crate::clock::Timestamp;
use crate::failover::Transition;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use tracing::error;

use super::groups::NewPart;
use super::{CommittedTransition, NewAnnouncement};

/// The most idle read-only connections kept for reuse.
const MAX_IDLE: usize = 4;

/// One unit of work for the writer thread, and what the writer wraps it in.
type Job = Box<dyn FnOnce(&Store, Option<&dyn Around>) + Send>;

/// What the writer does around each job in cluster mode (`replica::Replicator`): opens an
/// outer transaction before, and after, hands the rows the job changed to the replicated log
/// and commits (or rolls back and fails the job when the log refuses them).
pub trait Around: Send + Sync {
    fn before(&self, store: &Store) -> Result<(), StoreError>;
    fn after(&self, store: &Store) -> Result<(), StoreError>;
    /// The job panicked: roll back.
    fn abort(&self, store: &Store);
}

/// A cheap, cloneable way into the store for async code. The writer thread stops when the
/// last clone is dropped (after the jobs already queued), closing the write connection.
#[derive(Clone)]
pub struct StoreHandle {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: mpsc::Sender<Job>,
    readers: Readers,
}

/// Where reads go.
enum Readers {
    /// Read-only connections to the database file.
    File {
        path: PathBuf,
        idle: Mutex<Vec<Store>>,
    },
    /// An in-memory database: the writer answers reads too.
    Writer,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle").finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Opens (creating and migrating) the database at `path` on a new writer thread, which
    /// owns the write connection from then on.
    pub fn open(path: &Path) -> Result<StoreHandle, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let owned = path.to_path_buf();
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || match Store::open(&owned) {
                Ok(store) => {
                    let _ = tx.send(Ok(()));
                    writer_loop(Arc::new(store), queue, None);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|_| StoreError::WriterGone)?;
        rx.recv().map_err(|_| StoreError::WriterGone)??;
        Ok(StoreHandle::with_jobs(jobs, Some(path.to_path_buf())))
    }

    /// Hands an opened store (set up synchronously at start: Message-ID domain, spill replay,
    /// restored services) to a new writer thread.
    pub fn start(store: Store) -> StoreHandle {
        StoreHandle::shared(Arc::new(store))
    }

    /// A writer thread over a store that other code still reaches directly. For the shell
    /// while its call sites move to the handle, and for tests: writes from both sides are
    /// still serialised, by the store's own connection lock.
    pub fn shared(store: Arc<Store>) -> StoreHandle {
        StoreHandle::around(store, None)
    }

    /// `shared`, with every write job wrapped in `around` (cluster mode: replicated through
    /// etcd before it commits). Jobs queued with `write_local` are not wrapped.
    pub fn around(store: Arc<Store>, around: Option<Arc<dyn Around>>) -> StoreHandle {
        let path = store.path().map(Path::to_path_buf);
        let (jobs, queue) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(store, queue, around));
        if let Err(e) = spawned {
            // The queue's receiver went with the closure: every call answers `WriterGone`.
            error!("cannot start the store's writer thread: {e}");
        }
        StoreHandle::with_jobs(jobs, path)
    }

    fn with_jobs(jobs: mpsc::Sender<Job>, path: Option<PathBuf>) -> StoreHandle {
        let readers = match path {
            Some(path) => Readers::File {
                path,
                idle: Mutex::new(Vec::new()),
            },
            None => Readers::Writer,
        };
        StoreHandle {
            inner: Arc::new(Inner { jobs, readers }),
        }
    }

    /// Runs `f` on the writer thread, after every write queued before it. The job is queued
    /// now, when `write` is called; the returned future only waits for its answer, and
    /// dropping it does not take the write back.
    pub fn write<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        F: FnOnce(&Store) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let answer = self.queue(f, true);
        async move {
            match answer {
                Some(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err(StoreError::WriterGone.into())),
                None => Err(StoreError::WriterGone.into()),
            }
        }
    }

    /// [`StoreHandle::write`] for a thread outside the async runtime (the reload's own thread,
    /// a command-line tool): blocks the calling thread until the writer answers. Panics when
    /// called from async code, which must use `write`.
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Store) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        match self.queue(f, true) {
            Some(rx) => rx
                .blocking_recv()
                .unwrap_or_else(|_| Err(StoreError::WriterGone.into())),
            None => Err(StoreError::WriterGone.into()),
        }
    }

    /// [`StoreHandle::write`] of rows only this node keeps (probe history, the replicated
    /// log's own applying): never wrapped in the cluster's replication.
    pub fn write_local<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        F: FnOnce(&Store) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let answer = self.queue(f, false);
        async move {
            match answer {
                Some(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err(StoreError::WriterGone.into())),
                None => Err(StoreError::WriterGone.into()),
            }
        }
    }

    /// Queues `f` for the writer (`wrapped`: inside the cluster's `Around`, if any); `None`
    /// when the writer is gone.
    fn queue<T, E, F>(
        &self,
        f: F,
        wrapped: bool,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<T, E>>>
    where
        F: FnOnce(&Store) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |s: &Store, around: Option<&dyn Around>| {
            let result = match around.filter(|_| wrapped) {
                None => f(s),
                Some(a) => match a.before(s) {
                    Err(e) => Err(e.into()),
                    Ok(()) => {
                        let done = f(s);
                        // What the job wrote goes to the log even when it then failed, as it
                        // would have stayed written on a single node.
                        match (a.after(s), done) {
                            (Ok(()), done) => done,
                            (Err(e), Ok(_)) => Err(e.into()),
                            (Err(_), Err(e)) => Err(e),
                        }
                    }
                },
            };
            // The caller may have stopped waiting; the write is done either way.
            let _ = tx.send(result);
        });
        self.inner.jobs.send(job).ok().map(|()| rx)
    }

    /// Runs `f` on a read-only connection, beside the writer: it sees every commit that was
    /// awaited before it was called, and never waits for one in progress.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Store) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        if let Readers::Writer = self.inner.readers {
            return self.write(f).await;
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.read_file(f))
            .await
            .unwrap_or_else(|_| Err(StoreError::WriterGone.into()))
    }

    /// [`StoreHandle::read`] for a thread outside the async runtime; blocks it meanwhile.
    pub fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Store) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        match self.inner.readers {
            Readers::Writer => self.write_blocking(f),
            Readers::File { .. } => self.inner.read_file(f),
        }
    }

    /// [`Store::commit_transition_with`] on the writer: the transition, its audit record, its
    /// incident change, its outbox rows and its waiting parts in one transaction. Await it
    /// before acting on the transition.
    pub fn commit_transition_with(
        &self,
        t: Transition,
        audit: AuditContext,
        announcements: Vec<NewAnnouncement>,
        parts: Vec<NewPart>,
    ) -> impl Future<Output = Result<CommittedTransition, StoreError>> + Send + 'static {
        self.write(move |s| s.commit_transition_with(&t, audit, &announcements, &parts))
    }

    /// [`Store::commit_transition`] on the writer.
    pub fn commit_transition(
        &self,
        t: Transition,
        audit: AuditContext,
        announcements: Vec<NewAnnouncement>,
    ) -> impl Future<Output = Result<CommittedTransition, StoreError>> + Send + 'static {
        self.commit_transition_with(t, audit, announcements, Vec::new())
    }

    /// [`Store::append_audit`] on the writer.
    pub fn append_audit(
        &self,
        r: NewAuditRecord,
    ) -> impl Future<Output = Result<AuditRecord, StoreError>> + Send + 'static {
        self.write(move |s| s.append_audit(&r))
    }

    /// [`Store::enqueue_notice_with`] on the writer.
    pub fn enqueue_notice_with(
        &self,
        service: String,
        at: Timestamp,
        announcements: Vec<NewAnnouncement>,
        parts: Vec<NewPart>,
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send + 'static {
        self.write(move |s| s.enqueue_notice_with(&service, at, &announcements, &parts))
    }
}

impl Inner {
    /// Runs `f` on a pooled read-only connection, on the calling thread.
    fn read_file<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Store) -> Result<T, E>,
        E: From<StoreError>,
    {
        let Readers::File { path, idle } = &self.readers else {
            unreachable!("only a handle over a file reads through read-only connections");
        };
        let pooled = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let store = match pooled {
            Some(s) if s.check_file().is_ok() => s,
            // The file at the path is not the one these connections read (replaced, or
            // deleted): none of them is kept, and a new one opens what is there now, or fails.
            Some(_) => {
                idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                Store::open_read_only(path)?
            }
            None => Store::open_read_only(path)?,
        };
        let out = f(&store);
        let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(store);
        }
        out
    }
}

impl From<Arc<Store>> for StoreHandle {
    fn from(store: Arc<Store>) -> StoreHandle {
        StoreHandle::shared(store)
    }
}

/// The writer thread: runs jobs in the order they were queued until every handle is gone.
fn writer_loop(store: Arc<Store>, queue: mpsc::Receiver<Job>, around: Option<Arc<dyn Around>>) {
    for job in queue {
        // A panicking job must not take the writer down with it: its caller gets
        // `WriterGone` (its reply channel is dropped) and later jobs still run. A panic cannot
        // leave a transaction half-written: a dropped `Transaction` rolls back, and so does
        // the cluster's outer one.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job(&store, around.as_deref())
        }));
        if ran.is_err() {
            if let Some(a) = &around {
                a.abort(&store);
            }
            error!("a store write panicked; the writer carries on with the next one");
        }
    }
}

#[cfg(test)]
mod tests;
