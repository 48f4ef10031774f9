//! The executor: a bounded pool of child processes. No GUI code here; it is driven only
//! by typed commands (through [`Handle`]) and reports only typed [`Event`]s.

pub mod backend;
pub mod builtin;
pub mod command;
mod dispatcher;
pub mod event;
pub mod feeder;
pub mod reactor;
pub mod report;
pub mod scheduler;
pub mod sink;
mod stoppable;
pub mod task;
pub mod usage;
pub mod watchdog;
pub mod worker;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use backend::Backend;
pub use backend::local::LocalBackend;
pub use backend::workers::{WorkerBackend, WorkerPool};
pub use command::CommandError;
pub use event::{Event, EventKind, HaltReason, Outcome, Stream, WorkerChange, signal_name};
pub use nix::sys::signal::Signal;
pub use sink::{Events, Nudge, Waited, Waker};
pub use task::{
    Background, Builtin, BuiltinKind, Invocation, Span, StdinMode, TaskId, TaskMaker, TaskSpec,
};
pub use worker::WorkerConfig;

use dispatcher::{Dispatcher, Msg};
use reactor::{LoopWaker, Reactor};
use report::Remote;
use sink::EventSink;

/// Largest pool size accepted (`-j`, `pool.size`): far above what one machine runs at
/// once, low enough that a typo is caught.
pub const MAX_POOL_SIZE: usize = 100_000;
/// Longest timeout or kill grace period accepted: a year.
pub const MAX_DURATION: Duration = Duration::from_hours(366 * 24);

/// Seconds given by a user (a flag, a file field): finite, not negative, at most
/// [`MAX_DURATION`]. The error says what was wrong with the value.
pub fn user_seconds(value: f64, zero_ok: bool) -> Result<Duration, String> {
    if !value.is_finite() || value < 0.0 || (value == 0.0 && !zero_ok) {
        let wanted = if zero_ok { "0 or more" } else { "more than 0" };
        return Err(format!(
            "expected a number of seconds, {wanted}; got {value}"
        ));
    }
    if value > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "{value} seconds is more than a year (at most {} seconds)",
            MAX_DURATION.as_secs()
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// The size of the terminal a task runs in when it asks for one (rows, columns).
pub const TERMINAL_ROWS: u16 = 40;
pub const TERMINAL_COLS: u16 = 120;

/// A pool size given by a user: 1 to [`MAX_POOL_SIZE`].
pub fn user_pool_size(value: i64) -> Result<usize, String> {
    match usize::try_from(value) {
        Ok(size) if (1..=MAX_POOL_SIZE).contains(&size) => Ok(size),
        _ => Err(format!(
            "pool size must be between 1 and {MAX_POOL_SIZE}; got {value}"
        )),
    }
}

/// The poolscope binary that runs built-in jobs (`__builtin`) and persistent workers
/// (`__worker`): `$POOLSCOPE_HELPER` if set (a library host, a test), else this
/// executable.
pub fn helper_program() -> PathBuf {
    std::env::var_os("POOLSCOPE_HELPER")
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("poolscope"))
}

/// When to stop the pool because tasks fail (GNU parallel's `--halt`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HaltPolicy {
    #[default]
    Never,
    /// After `fail` failed tasks, start no new task; running ones finish.
    Soon { fail: u32 },
    /// After `fail` failed tasks, kill the running ones too.
    Now { fail: u32 },
}

impl FromStr for HaltPolicy {
    type Err = String;

    /// `never`, `soon,fail=N`, `now,fail=N` (GNU parallel's spelling).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "never" {
            return Ok(HaltPolicy::Never);
        }
        let bad =
            || format!("invalid halt policy `{s}`: expected never, soon,fail=N or now,fail=N");
        let (when, cond) = s.split_once(',').ok_or_else(bad)?;
        let count = cond
            .strip_prefix("fail=")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(bad)?;
        match when {
            "soon" => Ok(HaltPolicy::Soon { fail: count }),
            "now" => Ok(HaltPolicy::Now { fail: count }),
            _ => Err(bad()),
        }
    }
}

/// Settings of one run of the pool.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Most tasks running at once. Default: the number of CPUs.
    pub size: usize,
    /// Time between SIGTERM and SIGKILL when a task is killed.
    pub kill_grace: Duration,
    /// Extra attempts for a task that fails (not for one the user killed).
    pub retries: u32,
    pub halt: HaltPolicy,
    /// Where each attempt's full stdout and stderr are saved (`ID.ATTEMPT.stdout`).
    pub output_dir: Option<PathBuf>,
    /// Create both files for every attempt even when a stream stays empty (GNU parallel's
    /// `--results` layout). Off, a file appears with its stream's first byte: the window's
    /// run folder then costs no file creation for the many tasks that print nothing.
    pub create_empty_output_files: bool,
    /// Most output bytes waiting in the event channel before readers wait for the consumer.
    pub output_in_flight: usize,
    /// Start with dispatch paused (tasks queue up until resume).
    pub start_paused: bool,
    /// The poolscope binary that runs built-in jobs and workers; default:
    /// [`helper_program`].
    pub helper: Option<PathBuf>,
    /// `None`: a process per task. `Some`: persistent workers, one per slot (Python's
    /// `Pool`).
    pub workers: Option<WorkerConfig>,
    /// Run the tasks on a Slurm cluster (as job arrays) instead of this machine.
    pub slurm: Option<SlurmSettings>,
}

/// Where and how a run's tasks go to Slurm.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlurmSettings {
    pub options: backend::slurm::SlurmOptions,
    /// The arrays' scripts, output and records (a folder every node can see: the run's).
    pub folder: PathBuf,
    /// A resumed run: the original task of the executor's task N is `originals[N-1]`
    /// (empty: the same numbers).
    pub originals: Vec<TaskId>,
    /// A resumed run: elements already submitted for its tasks (by original task), to
    /// follow again instead of submitting anew.
    pub reattach: std::collections::HashMap<TaskId, backend::slurm::Submitted>,
}

impl Default for PoolConfig {
    /// As many slots as CPUs.
    fn default() -> Self {
        Self::of_size(num_cpus::get())
    }
}

impl PoolConfig {
    /// The defaults with `size` slots (without counting the CPUs, which reads the
    /// control groups' files: a tenth of a millisecond of a one-task run).
    pub fn of_size(size: usize) -> Self {
        Self {
            size,
            kill_grace: Duration::from_secs(1),
            retries: 0,
            halt: HaltPolicy::Never,
            output_dir: None,
            create_empty_output_files: true,
            output_in_flight: 32 * 1024 * 1024,
            start_paused: false,
            helper: None,
            workers: None,
            slurm: None,
        }
    }
}

/// State shared with handles without a round trip to the dispatcher.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    closed: AtomicBool,
    /// Why the pool could not go on (it could not start: no thread, no descriptors).
    failure: Mutex<Option<String>>,
    drained: Mutex<bool>,
    drained_cv: Condvar,
}

impl Shared {
    /// The pool failed: it accepts nothing more, and says why to whoever asks.
    fn set_failed(&self, reason: &str) {
        *self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.to_owned());
        self.closed.store(true, Ordering::Release);
        self.set_drained();
    }

    fn refusal(&self) -> CommandError {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .map_or(CommandError::PoolClosed, CommandError::PoolFailed)
    }

    fn set_drained(&self) {
        *self
            .drained
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.drained_cv.notify_all();
    }
}

/// Sends commands to a running pool. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Msg>,
    waker: LoopWaker,
    shared: Arc<Shared>,
}

impl Handle {
    fn ask<T>(
        &self,
        make: impl FnOnce(Sender<Result<T, CommandError>>) -> Msg,
    ) -> Result<T, CommandError> {
        let (reply, answer) = mpsc::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| CommandError::ExecutorGone)?;
        self.waker.wake();
        answer.recv().map_err(|_| CommandError::ExecutorGone)?
    }

    fn tell(&self, msg: Msg) {
        if self.tx.send(msg).is_ok() {
            self.waker.wake();
        }
    }

    /// Queue tasks (also while others run). Refused once the pool is closed.
    pub fn submit(&self, specs: Vec<TaskSpec>) -> Result<Vec<TaskId>, CommandError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.shared.refusal());
        }
        self.ask(|reply| Msg::Submit {
            tasks: dispatcher::Submitted::Specs(specs),
            chunk_size: 1,
            reply,
        })
    }

    /// Queue tasks as a map (Python's `Pool.map`): on persistent workers they are handed
    /// over `chunk_size` at a time, each chunk to one worker, run in order. In
    /// process-per-task mode this is [`submit`](Self::submit).
    pub fn submit_map(
        &self,
        specs: Vec<TaskSpec>,
        chunk_size: usize,
    ) -> Result<Vec<TaskId>, CommandError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.shared.refusal());
        }
        self.ask(|reply| Msg::Submit {
            tasks: dispatcher::Submitted::Specs(specs),
            chunk_size,
            reply,
        })
    }

    /// [`submit_map`](Self::submit_map) of `specs`, which are `maker`'s tasks from
    /// index `first` on: their `Queued` events take them, and the pool keeps only where
    /// each came from, making it again when it reaches it. A list of a million tasks
    /// can then wait in chunks of 125 000 for their workers without their specs held.
    pub fn submit_map_from(
        &self,
        maker: Arc<dyn TaskMaker>,
        first: usize,
        specs: Vec<Arc<TaskSpec>>,
        chunk_size: usize,
    ) -> Result<Vec<TaskId>, CommandError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.shared.refusal());
        }
        self.ask(|reply| Msg::Submit {
            tasks: dispatcher::Submitted::Made {
                maker,
                first,
                specs,
            },
            chunk_size,
            reply,
        })
    }

    pub fn submit_one(&self, spec: TaskSpec) -> Result<TaskId, CommandError> {
        Ok(self.submit(vec![spec])?[0])
    }

    /// Accept no more tasks; the queue drains.
    pub fn close(&self) {
        // Set here too, so a submit or join right after this call already sees it.
        self.shared.closed.store(true, Ordering::Release);
        self.tell(Msg::Close);
    }

    /// Stop following the pool, leaving its tasks running where they are when they run
    /// elsewhere (a Slurm cluster's elements: a later `--resume` of the run follows
    /// them again). Local tasks cannot be left behind: for them this terminates.
    /// No `Drained` follows; the executor stops.
    pub fn detach(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.tell(Msg::Detach);
    }

    /// Kill every running task and drop the queue.
    pub fn terminate(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.tell(Msg::Terminate);
    }

    /// Kill one task's process group (TERM, then KILL after the grace period).
    pub fn kill(&self, task: TaskId) -> Result<(), CommandError> {
        self.ask(|reply| Msg::Kill { task, reply })
    }

    /// Queue bytes for a running task's stdin. Write failures (the task stopped reading)
    /// arrive as a `StdinClosed` event with an error.
    pub fn write_stdin(&self, task: TaskId, bytes: Vec<u8>) -> Result<(), CommandError> {
        self.ask(|reply| Msg::WriteStdin { task, bytes, reply })
    }

    /// Close a running task's stdin (the task reads EOF).
    pub fn close_stdin(&self, task: TaskId) -> Result<(), CommandError> {
        self.ask(|reply| Msg::CloseStdin { task, reply })
    }

    /// Send a signal (SIGINT for Ctrl-C) to a running task's whole process group.
    pub fn signal(&self, task: TaskId, signal: Signal) -> Result<(), CommandError> {
        self.ask(|reply| Msg::Signal {
            task,
            signal,
            reply,
        })
    }

    /// Change the pool size. Growing starts queued tasks at once; shrinking kills nothing.
    pub fn resize(&self, size: usize) {
        self.tell(Msg::Resize(size));
    }

    pub fn pause(&self) {
        self.tell(Msg::Pause);
    }

    pub fn resume(&self) {
        self.tell(Msg::Resume);
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Wait until the closed pool has finished every task. Joining an open pool is an
    /// error, as in Python's `Pool.join()`.
    pub fn join(&self) -> Result<(), CommandError> {
        self.join_timeout(Duration::MAX).map(|_| ())
    }

    /// Like [`join`](Self::join), waiting at most `timeout`; `Ok(false)` when it ran out.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, CommandError> {
        if !self.is_closed() {
            return Err(CommandError::PoolStillOpen);
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut drained = self
            .shared
            .drained
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while !*drained {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_hours(1),
            };
            if wait.is_zero() {
                return Ok(false);
            }
            drained = self
                .shared
                .drained_cv
                .wait_timeout(drained, wait)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        Ok(true)
    }
}

/// A running pool. Dropping it terminates every task and waits until all are reaped.
pub struct Executor {
    handle: Handle,
    start: Instant,
    thread: Option<JoinHandle<()>>,
}

impl Executor {
    /// Start a pool: local child processes, or persistent workers when
    /// [`PoolConfig::workers`] is set; with [`PoolConfig::slurm`], on the cluster.
    pub fn start(config: PoolConfig, waker: Option<Waker>) -> (Self, Events) {
        match (config.slurm.clone(), config.workers.clone()) {
            // Workers on the cluster: each slot's relay brings its worker up (the first ones
            // as one job array, replacements as jobs of their own).
            (Some(slurm), Some(workers)) => {
                // Made once, before any relay starts (they would race to make it).
                if let Err(e) = backend::slurm::relay::ensure_secret(&slurm.folder) {
                    log::warn!("the run's secret in {}: {e}", slurm.folder.display());
                }
                let workers = WorkerConfig {
                    relay: Some(worker::RelayPlan {
                        folder: slurm.folder.clone(),
                        sbatch: slurm.options.sbatch_args(),
                        host: slurm.options.workers_host.clone(),
                        array: None,
                    }),
                    ..workers
                };
                Self::with_backend(WorkerPool::new(workers), config, waker)
            }
            (Some(slurm), None) => {
                Self::with_backend(backend::slurm::SlurmBackend::new(slurm), config, waker)
            }
            (None, Some(workers)) => Self::with_backend(WorkerPool::new(workers), config, waker),
            (None, None) => Self::with_backend(LocalBackend::default(), config, waker),
        }
    }

    pub fn with_backend<B: Backend>(
        backend: B,
        config: PoolConfig,
        waker: Option<Waker>,
    ) -> (Self, Events) {
        ignore_sigpipe();
        let start = Instant::now();
        let (mut sink, events) = EventSink::new(start, waker, config.output_in_flight);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        // Where the machine refuses what the pool needs (descriptors, a thread), the
        // pool fails at once with the reason as its only event: no panic.
        let (thread, loop_waker) = match Reactor::new() {
            Ok((reactor, loop_waker)) => {
                let (remote, reports) = Remote::new(loop_waker.clone());
                let dispatcher = Dispatcher::new(
                    backend,
                    config,
                    sink,
                    reactor,
                    (remote, reports),
                    Arc::clone(&shared),
                );
                // Handed over once the thread runs: if it cannot start, the dispatcher
                // is still here to say so.
                let (hand_over, taken) = mpsc::channel::<Dispatcher<B>>();
                let spawned = thread::Builder::new()
                    .name("poolscope-dispatch".into())
                    .spawn(move || {
                        if let Ok(dispatcher) = taken.recv() {
                            dispatcher.run(&rx);
                        }
                    });
                match spawned {
                    Ok(thread) => {
                        let _ = hand_over.send(dispatcher);
                        (Some(thread), loop_waker)
                    }
                    Err(e) => {
                        dispatcher.fail(format!("cannot start the pool's thread: {e}"));
                        (None, LoopWaker::none())
                    }
                }
            }
            Err(e) => {
                let reason = format!("cannot start the pool: {e}");
                shared.set_failed(&reason);
                sink.send(EventKind::Failed { reason });
                sink.flush();
                (None, LoopWaker::none())
            }
        };
        let executor = Self {
            handle: Handle {
                tx,
                waker: loop_waker,
                shared,
            },
            start,
            thread,
        };
        (executor, events)
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The instant every event's `at` is measured from.
    pub fn started_at(&self) -> Instant {
        self.start
    }

    /// Begin ending the pool (as dropping it does) without waiting: its thread winds
    /// down while the caller closes other things; dropping the executor then waits.
    pub fn shut_down_soon(&self) {
        self.handle.tell(Msg::Shutdown);
    }
}

impl std::ops::Deref for Executor {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.handle.tell(Msg::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writing to a task that has exited must be an error (EPIPE), never a process-killing
/// SIGPIPE. Rust binaries already ignore it; a host embedding the library might not.
#[allow(unsafe_code)]
fn ignore_sigpipe() {
    use nix::sys::signal::{SigHandler, signal};
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety rule applies.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) } {
        log::warn!("cannot ignore SIGPIPE: {e}");
    }
}
