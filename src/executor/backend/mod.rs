//! Backends start the processes. The dispatcher decides *what* runs and *when*; a backend
//! decides *how*: a local child process today, persistent workers or a Slurm job array
//! later, behind the same commands and events.

pub mod local;
mod pty;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::Sender;

use nix::sys::signal::Signal;

use super::dispatcher::Msg;
use super::event::EventKind;
use super::sink::EventSink;
use super::task::{TaskId, TaskSpec};

/// How a process ended, as the OS reports it, before the dispatcher turns it into an
/// [`Outcome`](super::Outcome) (it alone knows whether a kill was asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawExit {
    Code(i32),
    Signal(i32),
}

/// One attempt to start.
#[derive(Clone, Copy, Debug)]
pub struct LaunchRequest<'a> {
    pub task: TaskId,
    pub attempt: u32,
    pub slot: usize,
    pub spec: &'a TaskSpec,
}

/// Controls a started attempt: signals go to its whole process group.
pub trait ProcessControl: Send {
    fn signal(&self, signal: Signal) -> io::Result<()>;
}

/// What to send to a task's stdin writer.
#[derive(Debug)]
pub enum StdinCommand {
    Write(Vec<u8>),
}

/// A started attempt, as the dispatcher keeps it.
pub struct Launched {
    pub pid: u32,
    pub control: Box<dyn ProcessControl>,
    /// Dropping this sender closes the task's stdin; `None` when stdin is not a pipe kept
    /// open (null, or preset text already on its way).
    pub stdin: Option<Sender<StdinCommand>>,
    /// Bytes written to stdin so far (the joblog's `Send`).
    pub stdin_bytes: Arc<AtomicU64>,
}

/// Where a backend reports what its processes do.
#[derive(Clone)]
pub struct Reporter {
    pub(crate) sink: EventSink,
    pub(crate) inbox: Sender<Msg>,
    pub(crate) output_dir: Option<PathBuf>,
}

impl Reporter {
    /// Output as it arrives (partial lines included).
    pub fn output(&self, event: EventKind) {
        self.sink.send(event);
    }

    /// The attempt is over: process reaped and its output drained.
    pub fn ended(&self, task: TaskId, attempt: u32, exit: RawExit) {
        let _ = self.inbox.send(Msg::Ended {
            task,
            attempt,
            exit,
        });
    }

    /// The attempt's stdin is closed; `error` says why a write failed.
    pub fn stdin_ended(&self, task: TaskId, attempt: u32, error: Option<String>) {
        let _ = self.inbox.send(Msg::StdinEnded {
            task,
            attempt,
            error,
        });
    }

    pub fn output_dir(&self) -> Option<&PathBuf> {
        self.output_dir.as_ref()
    }
}

pub trait Backend: Send + 'static {
    /// Start one attempt. Must not block on the task; report its end through `reporter`.
    /// An `Err` is the OS reason the process could not start.
    fn launch(
        &mut self,
        request: LaunchRequest<'_>,
        reporter: &Reporter,
    ) -> Result<Launched, String>;
}
