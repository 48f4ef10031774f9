//! What the executor reports: every event is stamped with the time since the run started.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::task::{TaskId, TaskSpec};

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    /// `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// Its place in a pair kept per stream (`[stdout, stderr]`).
    pub fn index(self) -> usize {
        usize::from(self == Stream::Stderr)
    }

    /// Where a run's folder keeps an attempt's output of this stream:
    /// `DIR/ID.ATTEMPT.stdout` (and `.stderr`).
    pub fn file_in(self, dir: &std::path::Path, task: TaskId, attempt: u32) -> std::path::PathBuf {
        dir.join(format!("{task}.{attempt}.{}", self.name()))
    }
}

/// How one attempt of a task ended. Kept apart, never collapsed into "failed".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The process exited by itself with this code.
    Exited(i32),
    /// The process was ended by a signal nobody in poolscope sent (or one sent with
    /// "send signal", like SIGINT).
    Signaled(i32),
    /// Ended by the user (kill, terminate, or a halt policy).
    Killed,
    /// Ended because it ran past its timeout.
    TimedOut,
    /// The process could not be started; the OS reason.
    FailedToSpawn(String),
    /// The process running the task (a worker, a node) went away mid-task.
    WorkerLost(String),
    /// A cluster scheduler ended the attempt in this state (`PREEMPTED`, `NODE_FAIL`).
    Scheduler(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Exited(0))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(code) => write!(f, "exit {code}"),
            Outcome::Signaled(sig) => write!(f, "signal {}", signal_name(*sig)),
            Outcome::Killed => f.write_str("killed"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::FailedToSpawn(reason) => write!(f, "failed to start: {reason}"),
            Outcome::WorkerLost(reason) => write!(f, "worker lost: {reason}"),
            Outcome::Scheduler(state) => write!(f, "scheduler: {state}"),
        }
    }
}

/// `SIGTERM`-style name of a signal number, or the number when unknown.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| sig.to_string(), |s| s.as_str().to_owned())
}

/// What happened to a persistent worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerChange {
    Started,
    /// Its initializer began (Python's `Pool(initializer=...)`).
    InitStarted,
    /// Its initializer ended; `error` says how it failed.
    InitEnded {
        error: Option<String>,
    },
    /// It is gone: `retired` after its `maxtasksperchild` or at the pool's end, else
    /// lost (`how`: a signal or an exit status).
    Exited {
        how: String,
        retired: bool,
    },
}

/// Why the pool stopped starting tasks before the queue was empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaltReason {
    /// The stop-on-failure policy was triggered after this many failed tasks.
    Failures(u32),
}

/// One thing that happened, `at` this long after the run started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub at: Duration,
    pub kind: EventKind,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum EventKind {
    /// The first event of every run: when it started on the wall clock, and the pool size.
    PoolStarted {
        wall_clock: SystemTime,
        size: usize,
    },
    Queued {
        task: TaskId,
        spec: Arc<TaskSpec>,
    },
    /// Tasks `first` to `first + len - 1` (just queued) go to a worker together: one
    /// chunk of a map.
    Chunk {
        first: TaskId,
        len: usize,
    },
    /// Handed to the backend, which has not started it yet (a cluster queue); `state`
    /// in the backend's words. Local processes go straight to `Started`.
    Waiting {
        task: TaskId,
        attempt: u32,
        slot: usize,
        state: String,
    },
    /// Running from now on (the timeout clock starts here). Always before the attempt's
    /// output and its `Finished`.
    Started {
        task: TaskId,
        attempt: u32,
        slot: usize,
        /// The OS process running it (a worker's for persistent workers), if known.
        pid: Option<u32>,
        /// The machine running it, when not this one (a cluster node).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// What running attempts cost so far (CPU time and resident memory of each one's
    /// process group), sampled together a few times a second.
    Usage {
        samples: Vec<UsageSample>,
    },
    /// A persistent worker started an external command for the attempt: its PID.
    CommandStarted {
        task: TaskId,
        attempt: u32,
        pid: u32,
    },
    Output {
        task: TaskId,
        attempt: u32,
        stream: Stream,
        bytes: Vec<u8>,
    },
    /// The task's stdin is closed (by request, after preset text, or because the task
    /// stopped reading). `error` says why a write failed, if one did.
    StdinClosed {
        task: TaskId,
        attempt: u32,
        error: Option<String>,
    },
    /// The attempt is over: the process is reaped and its output pipes are drained.
    Finished {
        task: TaskId,
        attempt: u32,
        outcome: Outcome,
        /// Bytes written to the task's stdin.
        stdin_bytes: u64,
        /// Another attempt of the same task has been queued.
        will_retry: bool,
    },
    /// A queued task that will never run (terminate, halt).
    Cancelled {
        task: TaskId,
    },
    /// The record of a running attempt stops here: poolscope ended (killed, crashed)
    /// while it ran, so how it ended is unknown. Written when a run is recovered from its
    /// journal; no executor sends it.
    Lost {
        task: TaskId,
        attempt: u32,
    },
    Resized {
        size: usize,
    },
    Paused,
    Resumed,
    /// No more tasks are accepted; the queue drains.
    Closed,
    /// Running tasks were killed and the queue dropped.
    Terminated,
    Halted {
        reason: HaltReason,
    },
    /// The pool is closed and every task is over: nothing more will happen.
    Drained,
    /// A persistent worker's life (worker-pool mode): its start, its initializer, its
    /// end.
    Worker {
        slot: usize,
        pid: u32,
        change: WorkerChange,
    },
    /// Something happened to the pool as a whole at this moment (a watched program's
    /// `close()`, `join()`): drawn as a marker on the timeline.
    Marker {
        label: String,
    },
    /// A task's output could not be saved to its file (`--results`, the run's folder):
    /// what is in the file is cut short. Sent once per file.
    SaveFailed {
        path: std::path::PathBuf,
        error: String,
    },
    /// The machine refused to start more processes (too many open files, too many
    /// processes): the pool runs at most `running` tasks at once until one ends; the rest
    /// wait. Sent once, when the limit is first met.
    Limited {
        running: usize,
        reason: String,
    },
    /// The pool failed: it could not start (the machine refused it a thread or
    /// descriptors), or the executor itself failed (a bug). Every task was killed;
    /// nothing more will happen.
    Failed {
        reason: String,
    },
}

impl EventKind {
    /// The task an event is about, if any.
    pub fn task(&self) -> Option<TaskId> {
        match self {
            EventKind::Queued { task, .. }
            | EventKind::Waiting { task, .. }
            | EventKind::Started { task, .. }
            | EventKind::CommandStarted { task, .. }
            | EventKind::Output { task, .. }
            | EventKind::StdinClosed { task, .. }
            | EventKind::Finished { task, .. }
            | EventKind::Lost { task, .. }
            | EventKind::Cancelled { task } => Some(*task),
            _ => None,
        }
    }
}

/// One task's cost so far, at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSample {
    pub task: TaskId,
    pub attempt: u32,
    /// CPU time used since it started (all its processes).
    pub cpu: Duration,
    /// Resident memory now, in bytes (all its processes).
    pub rss: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_words() {
        assert_eq!(Outcome::Signaled(15).to_string(), "signal SIGTERM");
        assert_eq!(Outcome::Exited(3).to_string(), "exit 3");
        assert_eq!(Outcome::TimedOut.to_string(), "timed out");
        assert!(!Outcome::Killed.is_success());
    }
}
