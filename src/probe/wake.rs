//! Absorbs a probe's wake-ups of itself: a future that wakes its own task while being polled is polled again in place instead of being sent back through the scheduler.
//!
//! A probe drives its hyper connection and its request on one task (`http/connection.rs`),
//! so handing the request to the connection, and the response back, wakes the very task that
//! is running. Tokio treats a task woken while it runs as a yield: it goes to the back of the
//! worker's queue, and a queued task makes the worker wake a parked one to steal it (a futex
//! wake-up, a context switch on each side, often the probe moving to the other core). As
//! deployed, with probes spread over time and the workers mostly parked, that was two to
//! three futex calls per probe and the largest share of the daemon's own cost per plain HTTP
//! probe. Here such a wake only sets a flag and the future is polled again at once; a wake
//! that comes from elsewhere (the I/O driver, a timer, another thread) or after the poll
//! reaches the task as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Polls in place at most this many times in a row; past that a self-wake is passed on, so a
/// future that yields on purpose (a spent cooperative budget) still lets other tasks run.
const MAX_POLLS_IN_PLACE: u32 = 16;

/// What the wrapped future's waker shares with the poll in progress.
struct Shared {
    /// True while `SelfWakes::poll` is polling the inner future.
    polling: AtomicBool,
    /// A wake arrived while polling.
    woken: AtomicBool,
    /// The task's own waker, for wakes that arrive between polls.
    task: Mutex<Option<Waker>>,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst pairs with the poll's store of `polling` and load of `woken`: either the poll
        // sees this wake and polls again, or this sees the poll finished and wakes the task.
        if self.polling.load(Ordering::SeqCst) {
            self.woken.store(true, Ordering::SeqCst);
            if self.polling.load(Ordering::SeqCst) {
                return;
            }
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// `future`, with the wakes it causes itself while being polled absorbed (see the module's
/// doc comment). Its output is the inner future's.
pub struct SelfWakes<F> {
    inner: Pin<Box<F>>,
    shared: Arc<Shared>,
    waker: Waker,
}

impl<F: Future> SelfWakes<F> {
    pub fn new(future: F) -> SelfWakes<F> {
        let shared = Arc::new(Shared {
            polling: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        SelfWakes {
            inner: Box::pin(future),
            waker: Waker::from(shared.clone()),
            shared,
        }
    }
}

impl<F: Future> Future for SelfWakes<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        {
            let mut task = this.shared.task.lock().unwrap_or_else(|e| e.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..MAX_POLLS_IN_PLACE {
            this.shared.woken.store(false, Ordering::SeqCst);
            this.shared.polling.store(true, Ordering::SeqCst);
            let poll = this.inner.as_mut().poll(&mut inner_cx);
            this.shared.polling.store(false, Ordering::SeqCst);
            if poll.is_ready() {
                return poll;
            }
            if !this.shared.woken.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        // Still waking itself: let the scheduler run others first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Wakes itself `n` times while polled, then finishes; counts its polls.
    struct Yields {
        n: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for Yields {
        type Output = usize;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.n == 0 {
                return Poll::Ready(7);
            }
            self.n -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Counts the wakes the task itself receives.
    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn self_wakes_are_polled_in_place_and_never_reach_the_task() {
        let polls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(SelfWakes::new(Yields {
            n: 3,
            polls: polls.clone()
        }));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(7));
        assert_eq!(polls.load(Ordering::SeqCst), 4);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_future_that_keeps_yielding_still_yields_to_the_scheduler() {
        let polls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(SelfWakes::new(Yields {
            n: 100,
            polls: polls.clone()
        }));
        assert!(f.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), MAX_POLLS_IN_PLACE as usize);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken once to yield");
    }

    #[tokio::test]
    async fn a_wake_from_elsewhere_after_the_poll_reaches_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let handle = tokio::spawn(SelfWakes::new(rx));
        tokio::task::yield_now().await;
        tx.send(5).expect("receiver alive");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), handle)
            .await
            .expect("woken, not stuck")
            .expect("no panic");
        assert_eq!(got.ok(), Some(5));
    }
}
