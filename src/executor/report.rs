//! What backends report about attempts ([`Report`]), from the dispatcher's thread or
//! from threads of their own through a [`Remote`]. A room of its own below the backends,
//! the dispatcher and the usage sampler, so that each depends on it and none on another.

use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use super::event::{Stream, UsageSample, WorkerChange};
use super::reactor::LoopWaker;
use super::task::TaskId;

/// How an attempt ended, as the backend sees it, before the dispatcher turns it into an
/// [`Outcome`](super::event::Outcome) (it alone knows whether a kill was asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawExit {
    Code(i32),
    Signal(i32),
    /// The process that ran the task (a worker, a node) went away mid-task.
    WorkerLost(String),
    /// A cluster scheduler ended the attempt in this state (`PREEMPTED`, `NODE_FAIL`).
    Scheduler(String),
    /// A cluster scheduler ended it at its time limit.
    TimedOut,
    /// Its program could not be started after all (learnt once the process that was to
    /// exec it had exited): why.
    NotStarted(String),
}

/// What a backend tells the dispatcher about an attempt.
#[derive(Debug)]
pub enum Report {
    /// Accepted but not running yet (in a cluster queue); `state` in the scheduler's words.
    Waiting {
        task: TaskId,
        attempt: u32,
        state: String,
    },
    /// Running from now on. `pid` is the process that runs it (a worker's, for a
    /// persistent worker), `None` when the backend cannot know it.
    Started {
        task: TaskId,
        attempt: u32,
        pid: Option<u32>,
        /// When it started by the clock of whoever ran it (a worker's own timestamp);
        /// `None`: when the report is seen.
        at: Option<Instant>,
        /// The lane it really runs on, when the backend (a cluster throttling a job
        /// array) knows better than the slot it was launched with.
        slot: Option<usize>,
        /// The machine it runs on, when not this one (a cluster node).
        host: Option<String>,
    },
    Output {
        task: TaskId,
        attempt: u32,
        stream: Stream,
        bytes: Vec<u8>,
    },
    StdinClosed {
        task: TaskId,
        attempt: u32,
        error: Option<String>,
    },
    /// A persistent worker started an external command for a running attempt.
    CommandStarted {
        task: TaskId,
        attempt: u32,
        pid: u32,
    },
    /// Each running task's CPU time and memory so far (the usage sampler's round).
    Usage { samples: Vec<UsageSample> },
    /// A persistent worker's life changed, at this time by its own clock (else now).
    Worker {
        slot: usize,
        pid: u32,
        at: Option<Instant>,
        change: WorkerChange,
    },
    /// Over: the process is reaped and its output drained (or the worker is gone).
    Ended {
        task: TaskId,
        attempt: u32,
        exit: RawExit,
        stdin_bytes: u64,
        at: Option<Instant>,
    },
}

/// Reports from a backend's own threads: queued for the dispatcher, which is woken.
#[derive(Clone)]
pub struct Remote {
    pub(crate) reports: Sender<Report>,
    pub(crate) waker: LoopWaker,
}

impl Remote {
    /// A handle whose reports arrive on the returned receiver, `waker` woken for each.
    pub(crate) fn new(waker: LoopWaker) -> (Self, Receiver<Report>) {
        let (reports, inbox) = std::sync::mpsc::channel();
        (Self { reports, waker }, inbox)
    }

    pub fn report(&self, report: Report) {
        if self.reports.send(report).is_ok() {
            self.waker.wake();
        }
    }
}
