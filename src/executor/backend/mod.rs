//! Backends start the work. The dispatcher decides *what* runs and *when*; a backend
//! decides *how*: a local child process per task today, persistent workers or a Slurm
//! job array next, behind the same commands and events.
//!
//! A backend lives on the dispatcher's thread and is driven by it: [`Backend::launch`]
//! hands it an attempt, [`Backend::ready`] says that a descriptor it watches is ready,
//! [`Backend::on_deadline`] that a time it asked for has come. It answers with
//! [`Report`]s: an attempt is running ([`Report::Started`], which starts the timeout
//! clock), output, stdin closed, the attempt is over. Threads of its own (a scheduler
//! poller) report through a [`Remote`].

pub mod local;
pub mod slurm;
pub mod workers;

// What backends report, in a room of its own: the dispatcher and the usage sampler read
// it without depending on the backends' insides.
pub use super::report::{RawExit, Remote, Report};

use std::collections::HashSet;
use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::command::CommandError;
use super::reactor::{Interest, Reactor};
use super::sink::OutputBudget;
use super::task::{TaskId, TaskSpec};

/// Why an attempt could not be started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// The machine is short of something a running task gives back when it ends (file
    /// descriptors, processes, memory): the attempt waits for that, it does not fail.
    #[error("{0}")]
    Busy(String),
    /// It cannot start as given (no such program, no such folder): it fails.
    #[error("{0}")]
    Failed(String),
}

impl LaunchError {
    /// An OS error at start-up, sorted: too many open files (the process's or the
    /// system's), too many processes (`EAGAIN` from fork or clone), no memory.
    pub fn from_io(context: &str, e: &io::Error) -> Self {
        let reason = if context.is_empty() {
            e.to_string()
        } else {
            format!("{context}: {e}")
        };
        let scarce = [
            libc_errno::EMFILE,
            libc_errno::ENFILE,
            libc_errno::EAGAIN,
            libc_errno::ENOMEM,
        ];
        if e.raw_os_error().is_some_and(|code| scarce.contains(&code)) {
            Self::Busy(reason)
        } else {
            Self::Failed(reason)
        }
    }
}

/// The error numbers of scarce resources (Linux's values, through rustix).
mod libc_errno {
    pub const EMFILE: i32 = rustix::io::Errno::MFILE.raw_os_error();
    pub const ENFILE: i32 = rustix::io::Errno::NFILE.raw_os_error();
    pub const EAGAIN: i32 = rustix::io::Errno::AGAIN.raw_os_error();
    pub const ENOMEM: i32 = rustix::io::Errno::NOMEM.raw_os_error();
}

impl From<String> for LaunchError {
    fn from(reason: String) -> Self {
        Self::Failed(reason)
    }
}

impl From<&str> for LaunchError {
    fn from(reason: &str) -> Self {
        Self::Failed(reason.to_owned())
    }
}

/// One attempt to start.
#[derive(Clone, Copy, Debug)]
pub struct LaunchRequest<'a> {
    pub task: TaskId,
    pub attempt: u32,
    pub slot: usize,
    pub spec: &'a TaskSpec,
}

/// What the dispatcher asks of one running attempt. Task-scoped: a backend must refuse
/// (with [`CommandError::NotRunning`]) an attempt that is over, so a kill never reaches
/// a later task on a reused worker.
#[derive(Debug)]
pub enum Control<'a> {
    /// Send a signal to everything the attempt runs (its process group).
    Signal(Signal),
    /// Queue bytes for its stdin.
    Write(&'a [u8]),
    /// Close its stdin once what is queued is written.
    CloseStdin,
}

/// The exit status behind a readable pidfd, if the process has exited; `what` names it
/// in the log when waiting fails.
pub(crate) fn exited(
    pidfd: &std::os::fd::OwnedFd,
    what: &dyn std::fmt::Display,
) -> Option<rustix::process::WaitIdStatus> {
    use rustix::process::{WaitId, WaitIdOptions};
    match rustix::process::waitid(
        WaitId::PidFd(pidfd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
    ) {
        Ok(status) => status,
        Err(rustix::io::Errno::INTR) => None,
        Err(e) => {
            log::error!("{what}: waitid failed: {e}");
            None
        }
    }
}

/// Every process group a backend has started and not yet seen end, so that whatever
/// happens to the dispatcher (even a panic) they can be killed and none is left running.
/// Each change is mirrored to the orphan guard ([`super::watchdog`]), which ends them if
/// poolscope itself is killed.
#[derive(Clone, Default)]
pub struct GroupGuard {
    groups: Arc<Mutex<HashSet<i32>>>,
    dog: Option<&'static super::watchdog::Watchdog>,
}

impl GroupGuard {
    /// A guard whose groups the process's orphan guard also knows (if it has one).
    pub fn watched() -> Self {
        Self {
            groups: Arc::default(),
            dog: super::watchdog::shared(),
        }
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn add(&self, pgid: i32) {
        // Under the lock, so the orphan guard sees the changes in the same order.
        let mut groups = self.groups();
        if groups.insert(pgid)
            && let Some(dog) = self.dog
        {
            dog.track(pgid);
        }
    }

    /// A task is about to be spawned: the orphan guard hears it first, so a task
    /// poolscope dies too soon to register is still found (by [`Self::token`]).
    pub fn spawning(&self) {
        if let Some(dog) = self.dog {
            dog.spawning();
        }
    }

    /// The spawn announced by [`Self::spawning`] is over: its group (`None`: it failed)
    /// is registered first, then the announcement is taken back.
    pub fn spawned(&self, pgid: Option<i32>) {
        if let Some(pgid) = pgid {
            self.add(pgid);
        }
        if let Some(dog) = self.dog {
            dog.spawned();
        }
    }

    /// What each task carries in `POOLSCOPE_GUARD` (no guard: nothing).
    pub fn token(&self) -> Option<&str> {
        self.dog.map(super::watchdog::Watchdog::token)
    }

    pub fn remove(&self, pgid: i32) {
        let mut groups = self.groups();
        if groups.remove(&pgid)
            && let Some(dog) = self.dog
        {
            dog.untrack(pgid);
        }
    }

    pub fn len(&self) -> usize {
        self.groups().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// SIGKILL every group, then reap the leaders (they are this process's children).
    pub(crate) fn kill_all(&self) {
        let groups: Vec<i32> = self.groups().drain().collect();
        for &pgid in &groups {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        for &pgid in &groups {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pgid), None);
            if let Some(dog) = self.dog {
                dog.untrack(pgid);
            }
        }
    }
}

impl std::fmt::Debug for GroupGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupGuard")
            .field("groups", &*self.groups())
            .field("orphan_guard", &self.dog.is_some())
            .finish()
    }
}

/// What a backend may use while the dispatcher drives it.
pub struct Ctx<'a> {
    pub(crate) reactor: &'a Reactor,
    pub(crate) reports: &'a mut Vec<Report>,
    pub(crate) remote: &'a Remote,
    pub(crate) budget: &'a OutputBudget,
    pub(crate) guard: &'a GroupGuard,
    pub(crate) kill_grace: Duration,
    pub(crate) helper: &'a std::path::Path,
    /// Added to every token this backend watches with: a backend made of two (workers
    /// with tasks in processes of their own) tells its halves' tokens apart by it.
    pub(crate) tag: u64,
}

impl Ctx<'_> {
    /// Have [`Backend::ready`] called with `token` when `fd` is ready. Tokens are the
    /// backend's own; `u64::MAX` is reserved.
    pub fn watch(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        debug_assert_ne!(token | self.tag, super::reactor::WAKE_TOKEN);
        self.reactor.watch(fd, token | self.tag, interest)
    }

    /// Stop watching `fd` (always before closing a descriptor that has dups).
    pub fn unwatch(&self, fd: impl AsFd) {
        self.reactor.unwatch(fd);
    }

    pub fn report(&mut self, report: Report) {
        self.reports.push(report);
    }

    /// A handle for the backend's own threads.
    pub fn remote(&self) -> Remote {
        self.remote.clone()
    }

    /// False while the consumer is behind on output: stop reading output (the producer
    /// then waits on its pipe, as under a shell) until [`Backend::resume_output`].
    pub fn output_allowed(&self) -> bool {
        self.budget.has_room()
    }

    /// Register process groups here as soon as they exist; remove them once they end.
    pub fn guard(&self) -> &GroupGuard {
        self.guard
    }

    /// The same context for one half of a composite backend: its tokens carry `tag`.
    pub(crate) fn tagged(&mut self, tag: u64) -> Ctx<'_> {
        Ctx {
            reactor: self.reactor,
            reports: self.reports,
            remote: self.remote,
            budget: self.budget,
            guard: self.guard,
            kill_grace: self.kill_grace,
            helper: self.helper,
            tag,
        }
    }

    /// The poolscope binary, which runs built-in jobs and persistent workers.
    pub fn helper(&self) -> &std::path::Path {
        self.helper
    }

    /// The pool's TERM → KILL grace period.
    pub fn kill_grace(&self) -> Duration {
        self.kill_grace
    }
}

pub trait Backend: Send + 'static {
    /// Called once on the dispatcher's thread before anything is launched.
    fn start(&mut self, _size: usize, _ctx: &mut Ctx<'_>) -> Result<(), String> {
        Ok(())
    }

    /// Start (or submit) one attempt. Must not block on the task. Report
    /// [`Report::Started`] once it runs (at once, for a local process). An `Err` is the
    /// reason it could not be started; nothing of it may be left running then.
    /// [`LaunchError::Busy`] puts it back at the head of the queue until a task ends.
    fn launch(&mut self, request: LaunchRequest<'_>, ctx: &mut Ctx<'_>) -> Result<(), LaunchError>;

    /// Act on one attempt. Refuse attempts that are over with `NotRunning`.
    fn control(
        &mut self,
        task: TaskId,
        attempt: u32,
        control: Control<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CommandError>;

    /// A descriptor watched with `token` is ready.
    fn ready(&mut self, _token: u64, _ctx: &mut Ctx<'_>) {}

    /// The output budget has room again: read what was left waiting.
    fn resume_output(&mut self, _ctx: &mut Ctx<'_>) {}

    /// The earliest time the backend wants [`Backend::on_deadline`] called.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    fn on_deadline(&mut self, _now: Instant, _ctx: &mut Ctx<'_>) {}

    /// The pool size changed (a job array's throttle follows it).
    fn resize(&mut self, _size: usize, _ctx: &mut Ctx<'_>) {}

    /// Whether it keeps the pool size itself (a cluster's throttled job array): it is
    /// then handed every queued task at once, and starts them as slots free up.
    fn launches_ahead(&self) -> bool {
        false
    }

    /// Whether an attempt's PID is a process group on this machine (its CPU and memory
    /// can be read from `/proc`); not for a cluster's elements.
    fn runs_here(&self) -> bool {
        true
    }

    /// The pool was paused or resumed (a backend that launches ahead holds or releases
    /// what it has not started).
    fn paused(&mut self, _paused: bool, _ctx: &mut Ctx<'_>) {}

    /// At most how many attempts beyond the running one a slot may be given ahead of
    /// time (a worker's queue); 0 for backends that start each attempt at once.
    fn prefetch(&self) -> usize {
        0
    }

    /// A run of [`Backend::launch`] calls is over (one turn of the loop, or one chunk of
    /// a map): send what was batched.
    fn launched(&mut self, _ctx: &mut Ctx<'_>) {}

    /// The pool is closed and every task is over: nothing more will be launched.
    fn drained(&mut self, _ctx: &mut Ctx<'_>) {}

    /// The pool is over: every attempt has ended. Release workers, stop threads.
    fn shutdown(&mut self, _ctx: &mut Ctx<'_>) {}
}
