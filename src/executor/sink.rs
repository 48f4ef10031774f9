//! The outgoing side of the executor: a channel of stamped events, a waker so a GUI can
//! repaint without polling, and a byte budget that bounds how much output can sit in the
//! channel when the consumer falls behind.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::event::{Event, EventKind};
use super::reactor::LoopWaker;

/// Called after events are sent, from executor threads. A GUI passes a closure that
/// calls `request_repaint`.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Output bytes sent but not yet received. While it is over the limit the executor
/// stops reading task output (the tasks then wait on their pipes, exactly as under a
/// shell), so a stalled consumer costs at most about `limit` bytes of memory. The loop
/// is never blocked: it is woken when the consumer has caught up.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    limit: usize,
    used: AtomicUsize,
    /// The executor is waiting for room.
    starved: AtomicBool,
    disabled: AtomicBool,
    waker: Mutex<Option<LoopWaker>>,
}

impl OutputBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(64 * 1024),
            used: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
            disabled: AtomicBool::new(false),
            waker: Mutex::new(None),
        }
    }

    pub(crate) fn set_waker(&self, waker: LoopWaker) {
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker);
    }

    /// Whether more output may be read now. When not, the consumer's next release that
    /// leaves half the budget free wakes the loop.
    pub(crate) fn has_room(&self) -> bool {
        if self.disabled.load(Ordering::Acquire) || self.used.load(Ordering::Acquire) < self.limit {
            return true;
        }
        self.starved.store(true, Ordering::Release);
        // The consumer may have caught up between the two loads: look again.
        self.used.load(Ordering::Acquire) < self.limit
    }

    /// Whether the loop may resume reading (and was waiting to).
    pub(crate) fn take_reopened(&self) -> bool {
        let open = self.disabled.load(Ordering::Acquire)
            || self.used.load(Ordering::Acquire) <= self.limit / 2;
        open && self.starved.swap(false, Ordering::AcqRel)
    }

    fn acquire(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    fn release(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::AcqRel);
        let after = before.saturating_sub(bytes);
        if after <= self.limit / 2 && self.starved.load(Ordering::Acquire) {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(waker) = &*self.waker.lock().unwrap_or_else(PoisonError::into_inner) {
            waker.wake();
        }
    }

    /// Nobody will read any more: never hold output back again.
    pub(crate) fn disable(&self) {
        self.disabled.store(true, Ordering::Release);
        if self.starved.load(Ordering::Acquire) {
            self.wake();
        }
    }
}

/// Longest time an event waits to be handed over while the pool is busy.
const FLUSH_INTERVAL: Duration = Duration::from_millis(1);
/// The same while events come fast (the last hand-over carried [`BUSY_BATCH`] or more):
/// each hand-over wakes the consumer, whose thread then takes a core from the tasks
/// (3000 trivial tasks on 2 slots took 4.5% longer with a hand-over every millisecond).
/// A few events at a time (a line typed to a task and its answer) still go within 1 ms.
const BUSY_FLUSH_INTERVAL: Duration = Duration::from_millis(8);
const BUSY_BATCH: usize = 16;

/// The dispatcher's outgoing side. Events are collected during one turn of the loop and
/// handed over together, so a busy pool wakes its consumer (and a window's repaint) once
/// per turn, not once per event.
pub struct EventSink {
    tx: Sender<Vec<Event>>,
    batch: Vec<Event>,
    last_flush: Instant,
    /// How long events may wait now: [`FLUSH_INTERVAL`] or [`BUSY_FLUSH_INTERVAL`].
    interval: Duration,
    start: Instant,
    waker: Option<Waker>,
    budget: Arc<OutputBudget>,
    last_at: Duration,
    /// A second way into the consumer's channel, for [`Nudge`]s; let go of with the sink,
    /// so the consumer still learns that the executor is gone.
    nudges: Arc<Mutex<Option<Sender<Vec<Event>>>>>,
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.nudges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// Wakes a consumer waiting in [`Events::wait`] with no event ([`Waited::Nudged`]): a
/// request from a client of the run wants an answer. Does nothing once the executor is
/// gone.
#[derive(Clone)]
pub struct Nudge(Arc<Mutex<Option<Sender<Vec<Event>>>>>);

impl Nudge {
    pub fn nudge(&self) {
        if let Some(tx) = &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = tx.send(Vec::new());
        }
    }
}

impl EventSink {
    pub(crate) fn new(start: Instant, waker: Option<Waker>, budget_bytes: usize) -> (Self, Events) {
        let (tx, rx) = mpsc::channel();
        let budget = Arc::new(OutputBudget::new(budget_bytes));
        let nudges = Arc::new(Mutex::new(Some(tx.clone())));
        let sink = Self {
            tx,
            batch: Vec::new(),
            last_flush: start,
            interval: FLUSH_INTERVAL,
            start,
            waker,
            budget: Arc::clone(&budget),
            last_at: Duration::ZERO,
            nudges: Arc::clone(&nudges),
        };
        let events = Events {
            rx,
            ready: RefCell::new(VecDeque::new()),
            budget,
            nudges,
            nudged: std::cell::Cell::new(false),
        };
        (sink, events)
    }

    /// Time since the run started: the clock of every event.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn send(&mut self, kind: EventKind) {
        let at = self.now();
        self.send_at(at, kind);
    }

    /// Send with a time of the caller's that may be earlier than events already sent,
    /// for events that do not step the pool's concurrency (a worker's initializer).
    pub fn send_at_exactly(&mut self, at: Duration, kind: EventKind) {
        self.batch.push(Event { at, kind });
    }

    /// Send with a time of the caller's (a worker's clock). Times never go back: an
    /// earlier one is raised to the last sent, so the record's steps stay in order.
    pub fn send_at(&mut self, at: Duration, kind: EventKind) {
        let at = at.max(self.last_at);
        self.last_at = at;
        if let EventKind::Output { bytes, .. } = &kind {
            self.budget.acquire(bytes.len());
        }
        self.batch.push(Event { at, kind });
    }

    /// When collected events are due: at most [`FLUSH_INTERVAL`] after the last hand-over
    /// ([`BUSY_FLUSH_INTERVAL`] while they come fast), so a busy pool wakes its consumer
    /// at most about a thousand times a second (125 under a flood of events), and an
    /// idle one at once.
    pub(crate) fn flush_due(&self) -> Option<Instant> {
        (!self.batch.is_empty()).then(|| self.last_flush + self.interval)
    }

    /// Flush if the interval has passed.
    pub fn flush_if_due(&mut self) {
        if self.flush_due().is_some_and(|due| due <= Instant::now()) {
            self.flush();
        }
    }

    /// Hand what was collected to the consumer now.
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.batch.is_empty() {
            return;
        }
        self.interval = if self.batch.len() >= BUSY_BATCH {
            BUSY_FLUSH_INTERVAL
        } else {
            FLUSH_INTERVAL
        };
        // A consumer that hung up is not an error: the run goes on without a viewer.
        let _ = self.tx.send(std::mem::take(&mut self.batch));
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
    rx: Receiver<Vec<Event>>,
    /// The rest of the batch being read.
    ready: RefCell<VecDeque<Event>>,
    budget: Arc<OutputBudget>,
    nudges: Arc<Mutex<Option<Sender<Vec<Event>>>>>,
    /// A nudge was taken off the channel by a call that returns only events: the next
    /// [`Events::wait`] reports it at once instead of sleeping through it.
    nudged: std::cell::Cell<bool>,
}

impl Events {
    /// A way to wake this consumer's [`Events::wait`] from another thread.
    pub fn nudge(&self) -> Nudge {
        Nudge(Arc::clone(&self.nudges))
    }

    fn next_ready(&self) -> Option<Event> {
        let event = self.ready.borrow_mut().pop_front()?;
        if let EventKind::Output { bytes, .. } = &event.kind {
            self.budget.release(bytes.len());
        }
        Some(event)
    }

    fn refill(&self, batch: Vec<Event>) -> Option<Event> {
        if batch.is_empty() {
            self.nudged.set(true);
            return None;
        }
        {
            let mut ready = self.ready.borrow_mut();
            if ready.is_empty() {
                // The batch itself is read from, not a copy of it: the events of a list
                // of 125 000 tasks queued at once would be held twice.
                *ready = VecDeque::from(batch);
            } else {
                ready.extend(batch);
            }
        }
        self.next_ready()
    }

    /// Blocks until the next event; `None` once the executor is gone and all is read.
    pub fn recv(&self) -> Option<Event> {
        loop {
            if let Some(event) = self.next_ready() {
                return Some(event);
            }
            let batch = self.rx.recv().ok()?;
            if let Some(event) = self.refill(batch) {
                return Some(event);
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        loop {
            if let Some(event) = self.next_ready() {
                return Some(event);
            }
            match self.rx.try_recv() {
                Ok(batch) => {
                    if let Some(event) = self.refill(batch) {
                        return Some(event);
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return None,
            }
        }
    }

    /// Waits at most `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        match self.wait(timeout) {
            Waited::Event(event) => Some(event),
            Waited::TimedOut | Waited::Nudged | Waited::Closed => None,
        }
    }

    /// Waits at most `timeout` for the next event, telling a timeout from the end.
    pub fn wait(&self, timeout: Duration) -> Waited {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(event) = self.next_ready() {
                return Waited::Event(event);
            }
            if self.nudged.replace(false) {
                return Waited::Nudged;
            }
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            match self.rx.recv_timeout(left) {
                Ok(batch) => {
                    if let Some(event) = self.refill(batch) {
                        return Waited::Event(event);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Waited::TimedOut,
                Err(RecvTimeoutError::Disconnected) => return Waited::Closed,
            }
        }
    }
}

/// What [`Events::wait`] got.
#[derive(Debug)]
pub enum Waited {
    Event(Event),
    TimedOut,
    /// Woken by a [`Nudge`], with no event.
    Nudged,
    /// The executor is gone and every event was read.
    Closed,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.budget.disable();
    }
}

/// This process's monotonic clock and the wall clock read at one moment: conversions
/// between them (a pool's wall-clock start, a cluster launcher's stamps) use a pair read
/// tightly, so none is off by a preemption between its two readings (on a loaded
/// machine, a tenth of a second). The pair is read again after [`ANCHOR_FOR`]: the wall
/// clock may be stepped (a virtual machine's is, to its host's).
#[derive(Clone, Copy, Debug)]
pub struct WallAnchor {
    instant: Instant,
    /// Since the Unix epoch.
    wall: Duration,
}

/// How long one reading of the two clocks is used.
const ANCHOR_FOR: Duration = Duration::from_secs(1);

impl WallAnchor {
    /// The anchor of this process, read again when it is older than [`ANCHOR_FOR`].
    pub fn get() -> Self {
        static ANCHOR: Mutex<Option<WallAnchor>> = Mutex::new(None);
        let mut anchor = ANCHOR.lock().unwrap_or_else(PoisonError::into_inner);
        match *anchor {
            Some(a) if a.instant.elapsed() < ANCHOR_FOR => a,
            _ => *anchor.insert(Self::read()),
        }
    }

    /// The tightest of a few readings: the wall clock between two monotonic ones.
    fn read() -> Self {
        let wall_now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        };
        let mut best: Option<(Duration, Self)> = None;
        for _ in 0..8 {
            let before = Instant::now();
            let wall = wall_now();
            let gap = before.elapsed();
            if best.as_ref().is_none_or(|(g, _)| gap < *g) {
                let instant = before + gap / 2;
                best = Some((gap, Self { instant, wall }));
            }
        }
        best.map_or_else(
            || Self {
                instant: Instant::now(),
                wall: wall_now(),
            },
            |(_, anchor)| anchor,
        )
    }

    /// The instant of this process's clock at a wall-clock time (since the epoch).
    pub fn instant_of(&self, since_epoch: Duration) -> Instant {
        match since_epoch.checked_sub(self.wall) {
            Some(after) => self.instant + after,
            None => self
                .instant
                .checked_sub(self.wall.saturating_sub(since_epoch))
                .unwrap_or(self.instant),
        }
    }

    /// The wall-clock time of an instant of this process's clock.
    pub fn wall_of(&self, instant: Instant) -> std::time::SystemTime {
        let since_epoch = match instant.checked_duration_since(self.instant) {
            Some(after) => self.wall + after,
            None => self
                .wall
                .saturating_sub(self.instant.saturating_duration_since(instant)),
        };
        std::time::UNIX_EPOCH + since_epoch
    }
}

#[cfg(test)]
mod anchor_tests {
    use super::*;

    #[test]
    fn a_wall_time_and_its_instant_convert_both_ways() {
        let anchor = WallAnchor::get();
        let now = Instant::now();
        let wall = anchor
            .wall_of(now)
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch");
        let back = anchor.instant_of(wall);
        let off = if back > now { back - now } else { now - back };
        assert!(off < Duration::from_micros(2), "{off:?}");
        // Before the anchor, too.
        let earlier = now.checked_sub(Duration::from_millis(1)).unwrap_or(now);
        let wall = anchor
            .wall_of(earlier)
            .duration_since(std::time::UNIX_EPOCH)
            .expect("epoch");
        let back = anchor.instant_of(wall);
        let off = if back > earlier {
            back - earlier
        } else {
            earlier - back
        };
        assert!(off < Duration::from_micros(2), "{off:?}");
    }
}
