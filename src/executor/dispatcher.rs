//! The dispatcher thread: one readiness loop owns the pool state, starts tasks through a
//! backend, serves every task's pipes and exit through the same epoll, turns process
//! ends into outcomes, and runs the only timers (task timeouts and the TERM→KILL grace
//! period). A freed slot is refilled in the same turn of the loop that saw its task end.

use std::fs::File;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::backend::{Backend, Control, Ctx, GroupGuard, LaunchError, LaunchRequest};
use super::command::CommandError;
use super::event::{EventKind, HaltReason, Outcome, Stream};
use super::reactor::{EventBuffer, Reactor, WAKE_TOKEN};
use super::report::{RawExit, Remote, Report};
use super::scheduler::{Scheduler, Slot};
use super::sink::EventSink;
use super::task::{TaskId, TaskMaker, TaskSpec};
use super::{HaltPolicy, PoolConfig, Shared};

type Reply<T> = Sender<Result<T, CommandError>>;

/// Messages into the dispatcher: commands from handles, and reports from backend threads.
pub(crate) enum Msg {
    Submit {
        tasks: Submitted,
        /// Hand them to workers this many at a time (a map's chunks); 1: one by one.
        chunk_size: usize,
        reply: Reply<Vec<TaskId>>,
    },
    Close,
    Terminate,
    Kill {
        task: TaskId,
        reply: Reply<()>,
    },
    WriteStdin {
        task: TaskId,
        bytes: Vec<u8>,
        reply: Reply<()>,
    },
    CloseStdin {
        task: TaskId,
        reply: Reply<()>,
    },
    Signal {
        task: TaskId,
        signal: Signal,
        reply: Reply<()>,
    },
    Resize(usize),
    Pause,
    Resume,
    /// The executor is dropped: terminate, wait for every process, then stop.
    Shutdown,
    /// Stop following, leaving what runs elsewhere (a cluster's elements) running.
    Detach,
}

/// Tasks handed to the pool: their specs, or how to make them.
pub(crate) enum Submitted {
    Specs(Vec<TaskSpec>),
    /// `maker`'s tasks from `first` on, made already for their events.
    Made {
        maker: Arc<dyn TaskMaker>,
        first: usize,
        specs: Vec<Arc<TaskSpec>>,
    },
}

impl Submitted {
    fn len(&self) -> usize {
        match self {
            Self::Specs(specs) => specs.len(),
            Self::Made { specs, .. } => specs.len(),
        }
    }

    /// Each task's spec now (for its `Queued` event) and what the queue keeps of it.
    fn into_pending(self) -> Box<dyn Iterator<Item = (Arc<TaskSpec>, PendingSpec)>> {
        match self {
            Self::Specs(specs) => Box::new(specs.into_iter().map(|spec| {
                let spec = Arc::new(spec);
                (Arc::clone(&spec), PendingSpec::Ready(spec))
            })),
            Self::Made {
                maker,
                first,
                specs,
            } => {
                Box::new(specs.into_iter().enumerate().map(move |(i, spec)| {
                    (spec, PendingSpec::Later(Arc::clone(&maker), first + i))
                }))
            }
        }
    }
}

/// A waiting task's spec, or how to make it again when it is about to run.
enum PendingSpec {
    Ready(Arc<TaskSpec>),
    Later(Arc<dyn TaskMaker>, usize),
}

impl PendingSpec {
    fn made(self) -> Arc<TaskSpec> {
        match self {
            Self::Ready(spec) => spec,
            Self::Later(maker, index) => Arc::new(maker.make(index)),
        }
    }
}

/// Why poolscope itself ended an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KillReason {
    User,
    Timeout,
    /// Setting the attempt up failed after it had started (its output files).
    Setup(String),
}

struct Pending {
    task: TaskId,
    attempt: u32,
    spec: PendingSpec,
    /// Tasks of one chunk go to one slot together (a retry goes alone).
    chunk: Option<u64>,
    /// It runs as a process of its own even on a worker pool (`process = true`): it is
    /// never handed to a busy slot ahead of its turn, where it would start at once.
    alone: bool,
}

struct Active {
    attempt: u32,
    slot: Slot,
    spec: Arc<TaskSpec>,
    /// The backend has reported it running.
    started: bool,
    /// When it started, on the run's clock.
    started_at: Duration,
    /// Output reported before `Started` (a remote backend's race), held to keep order.
    early: Vec<Report>,
    kill: Option<KillReason>,
    timeout_at: Option<Instant>,
    escalate_at: Option<Instant>,
    /// `--results`: this attempt's stdout and stderr files.
    files: Option<OutputFiles>,
}

pub(crate) struct Dispatcher<B: Backend> {
    /// Samples running tasks' CPU time and memory. First, so it is stopped before the
    /// event stream ends (fields drop in order).
    usage: super::usage::Sampler,
    backend: B,
    config: PoolConfig,
    sched: Scheduler<Pending>,
    active: super::task::TaskMap<Active>,
    next_id: u64,
    state: Lifecycle,
    failures: u32,
    sink: EventSink,
    shared: Arc<Shared>,
    reactor: Reactor,
    remote: Remote,
    /// What the backends' own threads (and the usage sampler) report.
    remote_reports: Receiver<Report>,
    guard: GroupGuard,
    reports: Vec<Report>,
    helper: PathBuf,
    /// Attempts that have a timeout or a kill escalation pending.
    timed: super::task::TaskSet,
    /// Attempts holding each busy slot (more than one for a chunk), by slot.
    slot_holders: Vec<usize>,
    /// The rest of the chunk each slot runs, handed to it [`CHUNK_WINDOW`] at a time (a
    /// slot with some holds it once more): a 125 000-task chunk is not 125 000 running
    /// attempts at once.
    chunk_rest: Vec<std::collections::VecDeque<Pending>>,
    next_chunk: u64,
    /// How long tasks have been taking lately (for [`Self::prefetch`]).
    recent_runtime: Option<Duration>,
    /// The machine refused to start more (file descriptors, processes): the pool runs
    /// at what it allows, trying one more now and then.
    limit: Option<MachineLimit>,
    /// The last turn stopped starting tasks with more ready (see [`FAILED_STARTS_PER_TURN`]).
    more_ready: bool,
}

/// Most tasks that fail to start (no such program) in one turn of the loop: the rest wait
/// for the next turn, after what became ready meanwhile (5000 failing tasks in a row held
/// up the ends of the tasks running beside them for 0.37 s).
const FAILED_STARTS_PER_TURN: usize = 64;

/// Where the machine's limit stands.
struct MachineLimit {
    /// The user was told.
    told: bool,
    /// When to try one more task than run now.
    probe_at: Instant,
    /// Since when nothing of the pool runs and still nothing can start.
    stuck_since: Option<Instant>,
}

/// How often a pool held back by the machine tries to start one more task.
const LIMIT_PROBE: Duration = Duration::from_secs(1);
/// With nothing of its own running, how soon the pool tries again.
const LIMIT_RETRY: Duration = Duration::from_millis(100);
/// With nothing of its own running, how long the pool waits for the machine before what
/// it has queued fails.
const LIMIT_GIVE_UP: Duration = Duration::from_secs(10);

/// A slot is given ahead of time as many tasks as recently ran in this long.
const PREFETCH_WINDOW: Duration = Duration::from_millis(1);
/// Most attempts of one chunk handed to its slot at once; the rest follow as these end.
const CHUNK_WINDOW: usize = 2048;

/// Where the pool is in its life, as the dispatcher sees it.
#[derive(Default)]
#[allow(clippy::struct_excessive_bools)] // independent lifecycle flags, not a state enum
struct Lifecycle {
    closed: bool,
    shutting_down: bool,
    /// Terminated or halted: nothing new starts, nothing is retried.
    stopped: bool,
    drained_sent: bool,
    /// Left its tasks to run on (a cluster): it is not drained, only no longer followed.
    detached: bool,
}

impl<B: Backend> Dispatcher<B> {
    pub(crate) fn new(
        backend: B,
        config: PoolConfig,
        sink: EventSink,
        reactor: Reactor,
        (remote, remote_reports): (Remote, Receiver<Report>),
        shared: Arc<Shared>,
    ) -> Self {
        let mut sched = Scheduler::new(config.size);
        sched.set_paused(config.start_paused);
        sink.budget().set_waker(remote.waker.clone());
        let helper = config.helper.clone().unwrap_or_else(super::helper_program);
        let usage = super::usage::Sampler::start(remote.clone());
        Self {
            backend,
            config,
            sched,
            active: super::task::TaskMap::default(),
            next_id: 1,
            state: Lifecycle::default(),
            failures: 0,
            sink,
            shared,
            reactor,
            remote,
            remote_reports,
            guard: GroupGuard::watched(),
            usage,
            reports: Vec::new(),
            helper,
            timed: super::task::TaskSet::default(),
            slot_holders: Vec::new(),
            chunk_rest: Vec::new(),
            next_chunk: 0,
            recent_runtime: None,
            more_ready: false,
            limit: None,
        }
    }

    /// The pool's thread could not start: say so as the pool's last event.
    pub(crate) fn fail(mut self, reason: String) {
        self.shared.set_failed(&reason);
        self.sink.send(EventKind::Failed { reason });
        self.sink.flush();
    }

    /// Runs the loop. Whatever happens in it, even a panic, every task's process group
    /// is killed before this returns, and the error is reported as an event.
    pub(crate) fn run(mut self, inbox: &Receiver<Msg>) {
        let result = catch_unwind(AssertUnwindSafe(|| self.run_loop(inbox)));
        let failure = match result {
            Ok(Ok(())) => None,
            // The machine refused what the pool needs (a worker, its epoll): said plainly.
            Ok(Err(reason)) => Some(reason),
            Err(panic) => Some(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned()),
            ),
        };
        if let Some(reason) = failure {
            self.guard.kill_all();
            log::info!("the pool failed: {reason}; every task was killed");
            self.shared.set_failed(&reason);
            self.sink.send(EventKind::Failed { reason });
        }
        self.sink.flush();
        self.sink.budget().disable();
    }

    fn run_loop(&mut self, inbox: &Receiver<Msg>) -> Result<(), String> {
        self.sink.send_at(
            Duration::ZERO,
            EventKind::PoolStarted {
                wall_clock: super::sink::WallAnchor::get().wall_of(self.sink.start()),
                size: self.sched.size(),
            },
        );
        let size = self.sched.size();
        self.with_ctx(|b, ctx| b.start(size, ctx))
            .map_err(|reason| format!("the pool could not start: {reason}"))?;
        let mut events = EventBuffer::new();
        let mut tokens = Vec::new();
        loop {
            self.start_ready();
            self.check_drained();
            if self.state.shutting_down && self.active.is_empty() {
                self.with_ctx(B::shutdown);
                self.process_reports();
                return Ok(());
            }
            if self.sink.budget().take_reopened() {
                self.with_ctx(B::resume_output);
            }
            // Events wait to be handed over in batches while tasks run; the last task's
            // end goes at once (its consumer is likely waiting for it, to end the run or
            // to give it more).
            if self.active.is_empty() && self.sched.queued() == 0 && self.sink.flush_due().is_some()
            {
                self.sink.flush();
            } else {
                self.sink.flush_if_due();
            }
            let timeout = self
                .next_timer()
                .into_iter()
                .chain(self.sink.flush_due())
                .chain(self.more_ready.then(Instant::now))
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()));
            self.reactor
                .wait(&mut events, &mut tokens, timeout)
                .map_err(|e| format!("the pool's readiness loop failed: {e}"))?;
            for &token in &tokens {
                if token == WAKE_TOKEN {
                    if !self.drain_inbox(inbox) {
                        // Every handle is gone: nobody can close the pool any more.
                        self.state.shutting_down = true;
                        self.terminate();
                    }
                } else {
                    self.with_ctx(|b, ctx| b.ready(token, ctx));
                }
                self.process_reports();
            }
            self.fire_timers();
        }
    }

    /// Handle every queued message, and what threads reported; false once every
    /// sender of messages is gone.
    fn drain_inbox(&mut self, inbox: &Receiver<Msg>) -> bool {
        // One at a time, as each came: a start releases the output held before it,
        // which must go before the next report (the attempt's end).
        let reported: Vec<Report> = self.remote_reports.try_iter().collect();
        for report in reported {
            self.reports.push(report);
            self.process_reports();
        }
        loop {
            match inbox.try_recv() {
                Ok(msg) => {
                    self.handle(msg);
                    self.process_reports();
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Call the backend with a context, keeping its reports for [`process_reports`].
    fn with_ctx<T>(&mut self, f: impl FnOnce(&mut B, &mut Ctx<'_>) -> T) -> T {
        let mut ctx = Ctx {
            reactor: &self.reactor,
            reports: &mut self.reports,
            remote: &self.remote,
            budget: self.sink.budget(),
            guard: &self.guard,
            kill_grace: self.config.kill_grace,
            helper: &self.helper,
            tag: 0,
        };
        f(&mut self.backend, &mut ctx)
    }

    fn control(&mut self, task: TaskId, control: Control<'_>) -> Result<(), CommandError> {
        let attempt = self.active_mut(task)?.attempt;
        self.with_ctx(|b, ctx| b.control(task, attempt, control, ctx))
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Submit {
                tasks,
                chunk_size,
                reply,
            } => {
                let result = self.submit(tasks, chunk_size);
                self.answer(&reply, result);
            }
            Msg::Close => self.close(),
            Msg::Terminate => self.terminate(),
            Msg::Detach if !self.backend.runs_here() => self.detach(),
            // This machine's processes cannot be left unwatched (the orphan guard would
            // end them anyway): as when the executor is dropped.
            Msg::Detach | Msg::Shutdown => {
                self.state.shutting_down = true;
                // Whoever reads events may be going away too: never hold output back
                // while we wait for the tasks to end.
                self.sink.budget().disable();
                self.terminate();
            }
            Msg::Kill { task, reply } => {
                let mut result = self.active_mut(task).map(|_| ());
                if result.is_ok() {
                    self.kill(task, KillReason::User);
                } else if result == Err(CommandError::NotRunning(task))
                    && self.sched.remove_queued(|p| p.task == task).is_some()
                {
                    // Still queued: it never starts.
                    self.sink.send(EventKind::Cancelled { task });
                    result = Ok(());
                }
                self.answer(&reply, result);
            }
            Msg::WriteStdin { task, bytes, reply } => {
                let result = self.control(task, Control::Write(&bytes));
                self.answer(&reply, result);
            }
            Msg::CloseStdin { task, reply } => {
                let result = self.control(task, Control::CloseStdin);
                self.answer(&reply, result);
            }
            Msg::Signal {
                task,
                signal,
                reply,
            } => {
                let result = self.control(task, Control::Signal(signal));
                self.answer(&reply, result);
            }
            Msg::Resize(size) => {
                self.sched.resize(size.clamp(1, super::MAX_POOL_SIZE));
                let size = self.sched.size();
                self.with_ctx(|b, ctx| b.resize(size, ctx));
                self.sink.send(EventKind::Resized { size });
            }
            Msg::Pause => {
                if !self.sched.is_paused() {
                    self.sched.set_paused(true);
                    self.with_ctx(|b, ctx| b.paused(true, ctx));
                    self.sink.send(EventKind::Paused);
                }
            }
            Msg::Resume => {
                if self.sched.is_paused() {
                    self.sched.set_paused(false);
                    self.with_ctx(|b, ctx| b.paused(false, ctx));
                    self.sink.send(EventKind::Resumed);
                }
            }
        }
    }

    /// Reply to a command once the events it caused are visible to the consumer, so a
    /// caller that got its answer also sees what happened.
    fn answer<T>(&mut self, reply: &Reply<T>, result: Result<T, CommandError>) {
        self.process_reports();
        self.sink.flush();
        let _ = reply.send(result);
    }

    /// Turn what the backend reported into events, in the order it happened, holding
    /// back anything an attempt reports before it is known to run.
    fn process_reports(&mut self) {
        while !self.reports.is_empty() {
            let reports = std::mem::take(&mut self.reports);
            for report in reports {
                self.apply_report(report);
            }
        }
    }

    fn current(&mut self, task: TaskId, attempt: u32) -> Option<&mut Active> {
        self.active.get_mut(&task).filter(|a| a.attempt == attempt)
    }

    fn apply_report(&mut self, report: Report) {
        match report {
            Report::Waiting {
                task,
                attempt,
                state,
            } => {
                if let Some(a) = self.current(task, attempt) {
                    let slot = a.slot;
                    self.sink.send(EventKind::Waiting {
                        task,
                        attempt,
                        slot,
                        state,
                    });
                }
            }
            Report::Started {
                task,
                attempt,
                pid,
                at,
                slot,
                host,
            } => {
                if let Some(slot) = slot {
                    self.move_to_slot(task, attempt, slot);
                }
                self.started(task, attempt, pid, host, at);
            }
            Report::Output {
                task,
                attempt,
                stream,
                bytes,
            } => self.output(task, attempt, stream, bytes),
            Report::StdinClosed {
                task,
                attempt,
                error,
            } => {
                if let Some(a) = self.current(task, attempt) {
                    if !a.started {
                        a.early.push(Report::StdinClosed {
                            task,
                            attempt,
                            error,
                        });
                        return;
                    }
                    self.sink.send(EventKind::StdinClosed {
                        task,
                        attempt,
                        error,
                    });
                }
            }
            Report::Ended {
                task,
                attempt,
                exit,
                stdin_bytes,
                at,
            } => self.ended(task, attempt, exit, stdin_bytes, at),
            Report::CommandStarted { task, attempt, pid } => {
                if self.current(task, attempt).is_some_and(|a| a.started) {
                    self.sink
                        .send(EventKind::CommandStarted { task, attempt, pid });
                }
            }
            Report::Usage { samples } => self.usage_sampled(samples),
            Report::Worker {
                slot,
                pid,
                at,
                change,
            } => {
                // Exact times: a worker's life does not step the concurrency counts, so
                // it need not be in order with the tasks' events.
                let at = self.stamp(at);
                self.sink
                    .send_at_exactly(at, EventKind::Worker { slot, pid, change });
            }
        }
    }

    /// Output read from a task: saved to its files (if any) and sent on; held back until
    /// its start is known.
    fn output(&mut self, task: TaskId, attempt: u32, stream: Stream, bytes: Vec<u8>) {
        let Some(a) = self.current(task, attempt) else {
            return;
        };
        if !a.started {
            a.early.push(Report::Output {
                task,
                attempt,
                stream,
                bytes,
            });
            return;
        }
        if let Some(files) = &mut a.files
            && let Err((path, e)) = files.write(stream, &bytes)
        {
            log::error!("task {task}: cannot save output to {}: {e}", path.display());
            a.files = None;
            self.sink.send(EventKind::SaveFailed {
                path,
                error: e.to_string(),
            });
        }
        self.sink.send(EventKind::Output {
            task,
            attempt,
            stream,
            bytes,
        });
    }

    /// A sampling round: only attempts still running (and known to have started).
    fn usage_sampled(&mut self, mut samples: Vec<super::event::UsageSample>) {
        samples.retain(|s| {
            self.active
                .get(&s.task)
                .is_some_and(|a| a.attempt == s.attempt && a.started)
        });
        if !samples.is_empty() {
            self.sink.send(EventKind::Usage { samples });
        }
    }

    /// An event time from a backend's own clock, else now.
    fn stamp(&self, at: Option<Instant>) -> Duration {
        at.map_or_else(
            || self.sink.now(),
            |at| at.saturating_duration_since(self.sink.start()),
        )
    }

    /// The backend says where the attempt really runs (a cluster packs its elements
    /// into the pool's lanes as they start).
    fn move_to_slot(&mut self, task: TaskId, attempt: u32, slot: usize) {
        let Some(old) = self
            .active
            .get_mut(&task)
            .filter(|a| a.attempt == attempt && !a.started)
            .map(|a| std::mem::replace(&mut a.slot, slot))
        else {
            return;
        };
        if old != slot {
            self.hold(slot);
            self.let_go(old);
        }
    }

    fn started(
        &mut self,
        task: TaskId,
        attempt: u32,
        pid: Option<u32>,
        host: Option<String>,
        at: Option<Instant>,
    ) {
        let at = self.stamp(at);
        let first_report = self
            .active
            .get(&task)
            .is_some_and(|a| a.attempt == attempt && !a.started);
        // A PID on another machine (a cluster worker's) would name a process here.
        if first_report
            && self.backend.runs_here()
            && host.is_none()
            && let Some(pid) = pid.and_then(|p| i32::try_from(p).ok())
        {
            // Its process group (each task, each worker leads its own).
            self.usage.watch(pid, task, attempt);
        }
        let output_dir = self.config.output_dir.clone();
        let Some(a) = self.current(task, attempt) else {
            return;
        };
        if a.started {
            return;
        }
        a.started = true;
        a.started_at = at;
        a.timeout_at = a.spec.timeout.and_then(|t| Instant::now().checked_add(t));
        let timed = a.timeout_at.is_some();
        let slot = a.slot;
        let early = std::mem::take(&mut a.early);
        if timed {
            self.timed.insert(task);
        }
        self.sink.send_at(
            at,
            EventKind::Started {
                task,
                attempt,
                slot,
                pid,
                host,
            },
        );
        if let Some(dir) = output_dir {
            let mut files = OutputFiles::new(dir, task, attempt);
            let created = if self.config.create_empty_output_files {
                files.create_both()
            } else {
                Ok(())
            };
            match created {
                Ok(()) => {
                    if let Some(a) = self.current(task, attempt) {
                        a.files = Some(files);
                    }
                }
                Err(e) => {
                    let reason =
                        format!("cannot create output files in {}: {e}", files.dir.display());
                    log::error!("task {task}: {reason}");
                    self.kill(task, KillReason::Setup(reason));
                }
            }
        }
        self.reports.extend(early);
    }

    fn active_mut(&mut self, task: TaskId) -> Result<&mut Active, CommandError> {
        if task.0 == 0 || task.0 >= self.next_id {
            return Err(CommandError::UnknownTask(task));
        }
        self.active
            .get_mut(&task)
            .ok_or(CommandError::NotRunning(task))
    }

    fn submit(&mut self, tasks: Submitted, chunk_size: usize) -> Result<Vec<TaskId>, CommandError> {
        if self.state.closed {
            return Err(CommandError::PoolClosed);
        }
        let mut ids = Vec::with_capacity(tasks.len());
        let chunk_size = chunk_size.max(1);
        let total = tasks.len();
        for (i, (spec, pending_spec)) in tasks.into_pending().enumerate() {
            if i % chunk_size == 0 {
                self.next_chunk += 1;
            }
            let task = TaskId(self.next_id);
            self.next_id += 1;
            let alone = spec.own_process;
            self.sink.send(EventKind::Queued { task, spec });
            self.sched.push(Pending {
                task,
                attempt: 1,
                spec: pending_spec,
                chunk: (chunk_size > 1 && !alone).then_some(self.next_chunk),
                alone,
            });
            ids.push(task);
            // A chunk is announced once its last task is queued.
            let len = i % chunk_size + 1;
            let chunk_ends = len == chunk_size || i + 1 == total;
            if chunk_size > 1 && chunk_ends && len > 1 {
                self.sink.send(EventKind::Chunk {
                    first: ids[i + 1 - len],
                    len,
                });
            }
        }
        self.state.drained_sent = false;
        Ok(ids)
    }

    fn close(&mut self) {
        if !self.state.closed {
            self.state.closed = true;
            self.shared.closed.store(true, Ordering::Release);
            self.sink.send(EventKind::Closed);
        }
    }

    fn cancel_queue(&mut self) {
        self.state.stopped = true;
        for pending in self.sched.drain_queue() {
            self.sink.send(EventKind::Cancelled { task: pending.task });
        }
        for slot in 0..self.chunk_rest.len() {
            if self.chunk_rest[slot].is_empty() {
                continue;
            }
            for pending in std::mem::take(&mut self.chunk_rest[slot]) {
                self.sink.send(EventKind::Cancelled { task: pending.task });
            }
            self.let_go(slot);
        }
    }

    fn terminate(&mut self) {
        self.close();
        self.cancel_queue();
        let running: Vec<TaskId> = self.active.keys().copied().collect();
        for task in running {
            self.kill(task, KillReason::User);
        }
        self.sink.send(EventKind::Terminated);
    }

    /// TERM to the whole group now, KILL after the grace period if anything is left.
    fn kill(&mut self, task: TaskId, reason: KillReason) {
        let grace = self.config.kill_grace;
        let Some(active) = self.active.get_mut(&task) else {
            return;
        };
        let attempt = active.attempt;
        if active.kill.is_none() {
            active.kill = Some(reason);
        }
        if !grace.is_zero() && active.escalate_at.is_none() {
            active.escalate_at = Instant::now().checked_add(grace);
            self.timed.insert(task);
        }
        let first = if grace.is_zero() {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        if let Err(e) =
            self.with_ctx(|b, ctx| b.control(task, attempt, Control::Signal(first), ctx))
        {
            log::warn!("task {task}: {first} failed: {e}");
        }
        // A stopped group keeps SIGTERM pending until it is continued (as pueue does).
        if first == Signal::SIGTERM {
            let _ = self
                .with_ctx(|b, ctx| b.control(task, attempt, Control::Signal(Signal::SIGCONT), ctx));
        }
    }

    fn start_ready(&mut self) {
        let mut launched = self.top_up_chunks();
        let mut failed = 0;
        self.more_ready = false;
        while let Some((pending, slot)) = self.sched.start_next() {
            let chunk = pending.chunk;
            let task = pending.task;
            if !self.launch(pending, slot) {
                break;
            }
            launched = true;
            if !self.active.contains_key(&task) {
                failed += 1;
                if failed >= FAILED_STARTS_PER_TURN {
                    self.more_ready = true;
                    break;
                }
            }
            // The rest of its chunk goes to the same slot, in order: a window of it now,
            // the rest as that window ends.
            while let Some(next) = self
                .sched
                .take_next_if(|p| chunk.is_some() && p.chunk == chunk)
            {
                if self.slot_holders.get(slot).copied().unwrap_or(0) >= CHUNK_WINDOW {
                    if self.chunk_rest.len() <= slot {
                        self.chunk_rest.resize_with(slot + 1, Default::default);
                    }
                    if self.chunk_rest[slot].is_empty() {
                        self.hold(slot);
                    }
                    self.chunk_rest[slot].push_back(next);
                } else if !self.launch(next, slot) {
                    break;
                }
            }
            self.process_reports();
        }
        launched |= self.prefetch();
        launched |= self.launch_ahead();
        if launched {
            self.with_ctx(B::launched);
            self.process_reports();
        }
    }

    /// Each slot whose chunk's window has half ended gets the next part of its chunk.
    fn top_up_chunks(&mut self) -> bool {
        let mut launched = false;
        for slot in 0..self.chunk_rest.len() {
            if self.chunk_rest[slot].is_empty()
                || self.slot_holders.get(slot).copied().unwrap_or(0) > CHUNK_WINDOW / 2
            {
                continue;
            }
            while self.slot_holders[slot] <= CHUNK_WINDOW {
                let Some(next) = self.chunk_rest[slot].pop_front() else {
                    break;
                };
                if !self.launch(next, slot) {
                    break;
                }
                launched = true;
            }
            if self.chunk_rest[slot].is_empty() {
                self.let_go(slot);
            }
        }
        launched
    }

    /// With a long queue, give each busy slot of a backend that runs tasks back to back
    /// (persistent workers) its next task now: the worker starts it the moment the
    /// current one ends, with no round trip. Only with a backlog of more than two tasks
    /// per slot, so a short list still goes to whichever slot frees first.
    fn prefetch(&mut self) -> bool {
        // Worth it only for tasks so short that a round trip to the worker is a large
        // part of them: as many as run in a millisecond, none for longer tasks (a
        // task queued behind a long one would wait while another worker idles).
        let depth = match self.recent_runtime {
            Some(t) if self.backend.prefetch() > 0 => {
                let fits = PREFETCH_WINDOW.as_nanos() / t.as_nanos().max(1);
                usize::try_from(fits)
                    .unwrap_or(usize::MAX)
                    .min(self.backend.prefetch())
            }
            _ => 0,
        };
        let size = self.sched.size();
        if depth == 0 || self.sched.is_paused() || self.sched.queued() <= 2 * size {
            return false;
        }
        // A slot running a task of its own process has an idle worker: what it was
        // handed would start at once, one more than the pool size.
        let alone: std::collections::HashSet<Slot> = self
            .active
            .values()
            .filter(|a| a.spec.own_process)
            .map(|a| a.slot)
            .collect();
        let slots: Vec<Slot> = self
            .slot_holders
            .iter()
            .enumerate()
            .filter(|&(slot, &n)| slot < size && n > 0 && n <= depth.div_ceil(2))
            .map(|(slot, _)| slot)
            .filter(|slot| !alone.contains(slot))
            .collect();
        let mut launched = false;
        for slot in slots {
            // Top the slot up in one go: fewer, larger hand-overs.
            while self.slot_holders.get(slot).copied().unwrap_or(0) <= depth {
                let Some(next) = self.sched.take_next_if(|p| p.chunk.is_none() && !p.alone) else {
                    break;
                };
                if !self.launch(next, slot) {
                    break;
                }
                launched = true;
            }
        }
        self.process_reports();
        launched
    }

    /// A backend that keeps the pool size itself (a throttled job array) gets every
    /// queued task now, spread over the slots; it reports the lane each really ran on.
    fn launch_ahead(&mut self) -> bool {
        if !self.backend.launches_ahead() || self.sched.is_paused() {
            return false;
        }
        let size = self.sched.size().max(1);
        let mut launched = false;
        let mut slot = 0;
        while let Some(next) = self.sched.take_next_if(|_| true) {
            if !self.launch(next, slot % size) {
                break;
            }
            slot += 1;
            launched = true;
        }
        launched
    }

    /// One more attempt holds `slot`.
    fn hold(&mut self, slot: Slot) {
        if self.slot_holders.len() <= slot {
            self.slot_holders.resize(slot + 1, 0);
        }
        self.slot_holders[slot] += 1;
    }

    /// An attempt on `slot` is over: the slot is free once its last attempt is.
    fn let_go(&mut self, slot: Slot) {
        if let Some(n) = self.slot_holders.get_mut(slot).filter(|n| **n > 0) {
            *n -= 1;
            if *n == 0 {
                self.sched.release(slot);
            }
        }
    }

    /// Hand an attempt to the backend; false when the machine had no room for it (it is
    /// back at the head of the queue).
    fn launch(&mut self, pending: Pending, slot: Slot) -> bool {
        let Pending {
            task,
            attempt,
            spec,
            chunk,
            alone,
        } = pending;
        let spec = spec.made();
        self.hold(slot);
        self.active.insert(
            task,
            Active {
                attempt,
                slot,
                spec: Arc::clone(&spec),
                started: false,
                started_at: Duration::ZERO,
                early: Vec::new(),
                kill: None,
                timeout_at: None,
                escalate_at: None,
                files: None,
            },
        );
        let request = LaunchRequest {
            task,
            attempt,
            slot,
            spec: &spec,
        };
        let error = match self.with_ctx(|b, ctx| b.launch(request, ctx)) {
            Ok(()) => {
                if let Some(limit) = &mut self.limit {
                    limit.stuck_since = None;
                }
                return true;
            }
            Err(error) => error,
        };
        // Whatever it reported before failing is void: it never ran.
        self.reports
            .retain(|r| !matches!(r, Report::Started { task: t, .. } if *t == task));
        self.active.remove(&task);
        self.let_go(slot);
        match error {
            LaunchError::Busy(reason) => {
                self.sched.push_front(Pending {
                    task,
                    attempt,
                    spec: PendingSpec::Ready(spec),
                    chunk,
                    alone,
                });
                self.machine_limit(&reason);
                false
            }
            LaunchError::Failed(reason) => {
                self.finish(task, attempt, spec, Outcome::FailedToSpawn(reason), 0, None);
                true
            }
        }
    }

    /// The machine refused one more task: run at what runs now, tell the user once,
    /// and try one more now and then. With
    /// nothing of the pool running, the queue fails if the machine stays full for
    /// [`LIMIT_GIVE_UP`].
    fn machine_limit(&mut self, reason: &str) {
        let now = Instant::now();
        let running = self.sched.running();
        self.sched.set_cap(Some(running));
        let limit = self.limit.get_or_insert(MachineLimit {
            told: false,
            probe_at: now,
            stuck_since: None,
        });
        // Once, as GNU parallel warns once: later probes move the limit by one or two.
        if !limit.told {
            limit.told = true;
            log::info!("the machine allows {running} tasks at once: {reason}");
            self.sink.send(EventKind::Limited {
                running,
                reason: reason.to_owned(),
            });
        }
        if running > 0 {
            limit.stuck_since = None;
            limit.probe_at = now + LIMIT_PROBE;
            return;
        }
        limit.probe_at = now + LIMIT_RETRY;
        let since = *limit.stuck_since.get_or_insert(now);
        if now.duration_since(since) < LIMIT_GIVE_UP {
            return;
        }
        // Nothing of the pool has run for that long and still nothing can start: what
        // is queued fails now, each task saying why (failed one by one, a 500-task queue
        // took 5000 s), and so does what comes while it lasts; a start ends it.
        let reason = format!("{reason} (waited {} s for room)", LIMIT_GIVE_UP.as_secs());
        while let Some(head) = self.sched.take_next_if(|_| true) {
            self.finish(
                head.task,
                head.attempt,
                head.spec.made(),
                Outcome::FailedToSpawn(reason.clone()),
                0,
                None,
            );
        }
    }

    fn ended(
        &mut self,
        task: TaskId,
        attempt: u32,
        exit: RawExit,
        stdin_bytes: u64,
        at: Option<Instant>,
    ) {
        if self.current(task, attempt).is_none() {
            return;
        }
        let Some(active) = self.active.remove(&task) else {
            return;
        };
        self.usage.unwatch(task, attempt);
        self.let_go(active.slot);
        if active.started {
            let ran = self.stamp(at).saturating_sub(active.started_at);
            // A moving average over the last few dozen tasks.
            self.recent_runtime = Some(match self.recent_runtime {
                Some(avg) => (avg * 31 + ran) / 32,
                None => ran,
            });
        }
        if !active.started && matches!(active.kill, Some(KillReason::User)) {
            // Handed out (to a worker's queue, to a cluster's) and ended before it
            // started: it never ran, so it is cancelled as a queued task is, and a resume
            // runs it.
            let at = self.stamp(at);
            self.sink.send_at(at, EventKind::Cancelled { task });
            return;
        }
        let outcome = match (active.kill, exit) {
            (Some(KillReason::User), _) => Outcome::Killed,
            (Some(KillReason::Timeout), _) | (None, RawExit::TimedOut) => Outcome::TimedOut,
            (Some(KillReason::Setup(reason)), _) | (None, RawExit::NotStarted(reason)) => {
                Outcome::FailedToSpawn(reason)
            }
            (None, RawExit::Code(code)) => Outcome::Exited(code),
            (None, RawExit::Signal(sig)) => Outcome::Signaled(sig),
            (None, RawExit::WorkerLost(reason)) => Outcome::WorkerLost(reason),
            (None, RawExit::Scheduler(state)) => Outcome::Scheduler(state),
        };
        self.finish(task, attempt, active.spec, outcome, stdin_bytes, at);
    }

    fn finish(
        &mut self,
        task: TaskId,
        attempt: u32,
        spec: Arc<TaskSpec>,
        outcome: Outcome,
        stdin_bytes: u64,
        at: Option<Instant>,
    ) {
        let at = self.stamp(at);
        let failed = !outcome.is_success();
        let will_retry = failed
            && outcome != Outcome::Killed
            && !self.state.stopped
            && attempt <= self.config.retries;
        if will_retry {
            let alone = spec.own_process;
            self.sched.push(Pending {
                task,
                attempt: attempt + 1,
                spec: PendingSpec::Ready(spec),
                chunk: None,
                alone,
            });
        }
        self.sink.send_at(
            at,
            EventKind::Finished {
                task,
                attempt,
                outcome,
                stdin_bytes,
                will_retry,
            },
        );
        if failed && !will_retry {
            self.failures += 1;
            self.apply_halt_policy();
        }
    }

    fn apply_halt_policy(&mut self) {
        let (now, limit) = match self.config.halt {
            HaltPolicy::Never => return,
            HaltPolicy::Soon { fail } => (false, fail),
            HaltPolicy::Now { fail } => (true, fail),
        };
        if self.failures == limit.max(1) {
            self.sink.send(EventKind::Halted {
                reason: HaltReason::Failures(self.failures),
            });
            if now {
                self.terminate();
            } else {
                self.close();
                self.cancel_queue();
            }
        }
    }

    /// Stop following the pool's tasks without ending them: they go on where they run,
    /// and their records there (the run folder) let a later pool follow them again.
    /// What is still queued here stays queued in the run record, for a resume to start.
    fn detach(&mut self) {
        self.state.detached = true;
        self.state.shutting_down = true;
        self.state.closed = true;
        self.shared.closed.store(true, Ordering::Release);
        self.active.clear();
        self.timed.clear();
        self.sink.flush();
        // Nothing more will happen in this pool: joiners must not wait for it.
        self.shared.set_drained();
    }

    fn check_drained(&mut self) {
        let idle = self.state.closed
            && self.sched.queued() == 0
            && self.active.is_empty()
            && self
                .chunk_rest
                .iter()
                .all(std::collections::VecDeque::is_empty);
        if idle && !self.state.drained_sent && !self.state.detached {
            self.state.drained_sent = true;
            self.sink.send(EventKind::Drained);
            self.with_ctx(B::drained);
            self.process_reports();
            // Joiners wake now: what they read next must already be there.
            self.sink.flush();
            self.shared.set_drained();
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let probe = self
            .limit
            .as_ref()
            .filter(|_| self.sched.queued() > 0 && self.sched.cap().is_some())
            .map(|l| l.probe_at);
        self.timed
            .iter()
            .filter_map(|t| self.active.get(t))
            .flat_map(|a| [a.escalate_at, a.timeout_at.filter(|_| a.kill.is_none())])
            .flatten()
            .chain(self.backend.deadline())
            .chain(probe)
            .chain(self.usage.due())
            .min()
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        // Held back by the machine: try one more than runs now.
        if let Some(limit) = &mut self.limit
            && limit.probe_at <= now
            && let Some(cap) = self.sched.cap()
        {
            limit.probe_at = now + LIMIT_PROBE;
            self.sched.set_cap(Some(cap.max(self.sched.running()) + 1));
        }
        let mut timed_out = Vec::new();
        let mut escalate = Vec::new();
        // Only attempts with a timer are looked at: a map's thousands of handed-out tasks
        // cost nothing here.
        let active = &mut self.active;
        self.timed.retain(|task| active.contains_key(task));
        for task in &self.timed {
            let Some(active) = self.active.get_mut(task) else {
                continue;
            };
            if active.escalate_at.is_some_and(|t| t <= now) {
                active.escalate_at = None;
                escalate.push((*task, active.attempt));
            }
            if active.kill.is_none() && active.timeout_at.is_some_and(|t| t <= now) {
                timed_out.push(*task);
            }
        }
        for (task, attempt) in escalate {
            log::info!("task {task}: still alive after the grace period, sending SIGKILL");
            let kill = Control::Signal(Signal::SIGKILL);
            if let Err(e) = self.with_ctx(|b, ctx| b.control(task, attempt, kill, ctx)) {
                log::warn!("task {task}: SIGKILL failed: {e}");
            }
        }
        for task in timed_out {
            self.kill(task, KillReason::Timeout);
        }
        if self.backend.deadline().is_some_and(|t| t <= now) {
            self.with_ctx(|b, ctx| b.on_deadline(now, ctx));
        }
        self.usage.start_if_due(now);
        self.process_reports();
    }
}

/// One attempt's saved output: `DIR/ID.ATTEMPT.stdout` and `.stderr`, each opened
/// on demand.
struct OutputFiles {
    dir: PathBuf,
    task: TaskId,
    attempt: u32,
    open: [Option<File>; 2],
}

impl OutputFiles {
    fn new(dir: PathBuf, task: TaskId, attempt: u32) -> Self {
        Self {
            dir,
            task,
            attempt,
            open: [None, None],
        }
    }

    fn open(&mut self, stream: Stream) -> std::io::Result<&mut File> {
        let index = stream.index();
        if self.open[index].is_none() {
            let path = self.path(stream);
            // The folder is made once, by the first file that finds it missing. Output is
            // private: folders 0700, files 0600 (tasks print tokens and paths).
            let create = || {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
            };
            let file = match create() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&self.dir)?;
                    create()?
                }
                other => other?,
            };
            self.open[index] = Some(file);
        }
        Ok(self.open[index].as_mut().expect("opened above"))
    }

    fn create_both(&mut self) -> std::io::Result<()> {
        self.open(Stream::Stdout)?;
        self.open(Stream::Stderr)?;
        Ok(())
    }

    /// Append to a stream's file; a failure names the file.
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), (PathBuf, std::io::Error)> {
        self.open(stream)
            .and_then(|file| file.write_all(bytes))
            .map_err(|e| (self.path(stream), e))
    }

    fn path(&self, stream: Stream) -> PathBuf {
        stream.file_in(&self.dir, self.task, self.attempt)
    }
}
