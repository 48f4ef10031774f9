//! The outgoing side of the executor: a channel of stamped events, a waker so a GUI can
//! repaint without polling, and a byte budget that bounds how much output can sit in the
//! channel when the consumer falls behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::event::{Event, EventKind};

/// Called after events are sent, from executor threads. A GUI passes a closure that
/// calls `request_repaint`.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Output bytes sent but not yet received. Readers wait while it is over the limit, so a
/// stalled consumer costs at most `limit` bytes of memory (the child then blocks on its
/// pipe, exactly as it would under a shell).
#[derive(Debug)]
pub(crate) struct OutputBudget {
    limit: usize,
    used: Mutex<usize>,
    freed: Condvar,
    disabled: AtomicBool,
}

impl OutputBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(64 * 1024),
            used: Mutex::new(0),
            freed: Condvar::new(),
            disabled: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn acquire(&self, bytes: usize) {
        let mut used = self.lock();
        while *used > 0 && *used + bytes > self.limit && !self.disabled.load(Ordering::Acquire) {
            // Bounded wait so a consumer that went away (disable) is noticed.
            used = self
                .freed
                .wait_timeout(used, Duration::from_millis(100))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        *used += bytes;
    }

    fn release(&self, bytes: usize) {
        let mut used = self.lock();
        *used = used.saturating_sub(bytes);
        self.freed.notify_all();
    }

    /// Nobody will read any more: never block a reader again.
    pub(crate) fn disable(&self) {
        self.disabled.store(true, Ordering::Release);
        self.freed.notify_all();
    }
}

/// Cloned into every executor thread that reports something.
#[derive(Clone)]
pub struct EventSink {
    tx: Sender<Event>,
    start: Instant,
    waker: Option<Waker>,
    budget: Arc<OutputBudget>,
}

impl EventSink {
    pub(crate) fn new(start: Instant, waker: Option<Waker>, budget_bytes: usize) -> (Self, Events) {
        let (tx, rx) = mpsc::channel();
        let budget = Arc::new(OutputBudget::new(budget_bytes));
        let sink = Self {
            tx,
            start,
            waker,
            budget: Arc::clone(&budget),
        };
        (sink, Events { rx, budget })
    }

    /// Time since the run started: the clock of every event.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn send(&self, kind: EventKind) {
        self.send_at(self.now(), kind);
    }

    pub fn send_at(&self, at: Duration, kind: EventKind) {
        if let EventKind::Output { bytes, .. } = &kind {
            self.budget.acquire(bytes.len());
        }
        // A consumer that hung up is not an error: the run goes on without a viewer.
        let _ = self.tx.send(Event { at, kind });
        if let Some(waker) = &self.waker {
            waker();
        }
    }

    pub(crate) fn budget(&self) -> &Arc<OutputBudget> {
        &self.budget
    }
}

/// The receiving end of a run's events.
pub struct Events {
    rx: Receiver<Event>,
    budget: Arc<OutputBudget>,
}

impl Events {
    fn account(&self, event: Event) -> Event {
        if let EventKind::Output { bytes, .. } = &event.kind {
            self.budget.release(bytes.len());
        }
        event
    }

    /// Blocks until the next event; `None` once the executor is gone and all is read.
    pub fn recv(&self) -> Option<Event> {
        self.rx.recv().ok().map(|e| self.account(e))
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        match self.rx.try_recv() {
            Ok(e) => Some(self.account(e)),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }

    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        match self.rx.recv_timeout(timeout) {
            Ok(e) => Some(self.account(e)),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.budget.disable();
    }
}
