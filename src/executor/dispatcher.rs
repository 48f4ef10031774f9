//! The dispatcher thread: owns the pool state, starts tasks through a backend, turns
//! process ends into outcomes, and runs the only timers (task timeouts and the TERM→KILL
//! grace period). Child exits arrive as messages from the backend, so a freed slot is
//! refilled the moment its task is reaped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;

use super::backend::{Backend, LaunchRequest, Launched, RawExit, Reporter, StdinCommand};
use super::event::{EventKind, HaltReason, Outcome};
use super::scheduler::{Scheduler, Slot};
use super::sink::EventSink;
use super::task::{TaskId, TaskSpec};
use super::{CommandError, HaltPolicy, PoolConfig, Shared};

type Reply<T> = Sender<Result<T, CommandError>>;

/// Messages into the dispatcher: commands from handles, and reports from backends.
pub(crate) enum Msg {
    Submit {
        specs: Vec<TaskSpec>,
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
    Ended {
        task: TaskId,
        attempt: u32,
        exit: RawExit,
    },
    StdinEnded {
        task: TaskId,
        attempt: u32,
        error: Option<String>,
    },
}

/// Why poolscope itself ended an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KillReason {
    User,
    Timeout,
}

struct Pending {
    task: TaskId,
    attempt: u32,
    spec: Arc<TaskSpec>,
}

struct Active {
    attempt: u32,
    slot: Slot,
    spec: Arc<TaskSpec>,
    launched: Launched,
    kill: Option<KillReason>,
    timeout_at: Option<Instant>,
    escalate_at: Option<Instant>,
}

#[allow(clippy::struct_excessive_bools)] // independent lifecycle flags, not a state enum
pub(crate) struct Dispatcher<B: Backend> {
    backend: B,
    config: PoolConfig,
    sched: Scheduler<Pending>,
    active: HashMap<TaskId, Active>,
    next_id: u64,
    closed: bool,
    shutting_down: bool,
    /// Terminated or halted: nothing new starts, nothing is retried.
    stopped: bool,
    drained_sent: bool,
    failures: u32,
    sink: EventSink,
    reporter: Reporter,
    shared: Arc<Shared>,
}

impl<B: Backend> Dispatcher<B> {
    pub(crate) fn new(
        backend: B,
        config: PoolConfig,
        sink: EventSink,
        inbox: Sender<Msg>,
        shared: Arc<Shared>,
    ) -> Self {
        let mut sched = Scheduler::new(config.size);
        sched.set_paused(config.start_paused);
        let reporter = Reporter {
            sink: sink.clone(),
            inbox,
            output_dir: config.output_dir.clone(),
        };
        Self {
            backend,
            config,
            sched,
            active: HashMap::new(),
            next_id: 1,
            closed: false,
            shutting_down: false,
            stopped: false,
            drained_sent: false,
            failures: 0,
            sink,
            reporter,
            shared,
        }
    }

    pub(crate) fn run(mut self, inbox: &Receiver<Msg>) {
        self.sink.send_at(
            Duration::ZERO,
            EventKind::PoolStarted {
                wall_clock: SystemTime::now() - self.sink.now(),
                size: self.sched.size(),
            },
        );
        loop {
            self.start_ready();
            self.check_drained();
            if self.shutting_down && self.active.is_empty() {
                break;
            }
            let msg = match self.next_timer() {
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    match inbox.recv_timeout(wait) {
                        Ok(msg) => Some(msg),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match inbox.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => break,
                },
            };
            match msg {
                Some(msg) => self.handle(msg),
                None => self.fire_timers(),
            }
        }
        self.sink.budget().disable();
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Submit { specs, reply } => {
                let _ = reply.send(self.submit(specs));
            }
            Msg::Close => self.close(),
            Msg::Terminate => self.terminate(),
            Msg::Shutdown => {
                self.shutting_down = true;
                // Whoever reads events may be going away too: never let a reader wait on
                // them while we wait for the readers' tasks to end.
                self.sink.budget().disable();
                self.terminate();
            }
            Msg::Kill { task, reply } => {
                let result = self.active_mut(task).map(|_| ());
                if result.is_ok() {
                    self.kill(task, KillReason::User);
                }
                let _ = reply.send(result);
            }
            Msg::WriteStdin { task, bytes, reply } => {
                let result = self.active_mut(task).and_then(|a| {
                    let stdin = a
                        .launched
                        .stdin
                        .as_ref()
                        .ok_or(CommandError::StdinNotOpen(task))?;
                    stdin
                        .send(StdinCommand::Write(bytes))
                        .map_err(|_| CommandError::StdinNotOpen(task))
                });
                let _ = reply.send(result);
            }
            Msg::CloseStdin { task, reply } => {
                let result = self.active_mut(task).and_then(|a| {
                    a.launched
                        .stdin
                        .take()
                        .map(drop)
                        .ok_or(CommandError::StdinNotOpen(task))
                });
                let _ = reply.send(result);
            }
            Msg::Signal {
                task,
                signal,
                reply,
            } => {
                let result = self.active_mut(task).and_then(|a| {
                    a.launched
                        .control
                        .signal(signal)
                        .map_err(|e| CommandError::Signal(task, e.to_string()))
                });
                let _ = reply.send(result);
            }
            Msg::Resize(size) => {
                self.sched.resize(size);
                self.sink.send(EventKind::Resized {
                    size: self.sched.size(),
                });
            }
            Msg::Pause => {
                if !self.sched.is_paused() {
                    self.sched.set_paused(true);
                    self.sink.send(EventKind::Paused);
                }
            }
            Msg::Resume => {
                if self.sched.is_paused() {
                    self.sched.set_paused(false);
                    self.sink.send(EventKind::Resumed);
                }
            }
            Msg::Ended {
                task,
                attempt,
                exit,
            } => self.ended(task, attempt, exit),
            Msg::StdinEnded {
                task,
                attempt,
                error,
            } => {
                if let Some(a) = self.active.get_mut(&task)
                    && a.attempt == attempt
                {
                    a.launched.stdin = None;
                    self.sink.send(EventKind::StdinClosed {
                        task,
                        attempt,
                        error,
                    });
                }
            }
        }
    }

    fn active_mut(&mut self, task: TaskId) -> Result<&mut Active, CommandError> {
        if task.0 == 0 || task.0 >= self.next_id {
            return Err(CommandError::UnknownTask(task));
        }
        self.active
            .get_mut(&task)
            .ok_or(CommandError::NotRunning(task))
    }

    fn submit(&mut self, specs: Vec<TaskSpec>) -> Result<Vec<TaskId>, CommandError> {
        if self.closed {
            return Err(CommandError::PoolClosed);
        }
        let mut ids = Vec::with_capacity(specs.len());
        for spec in specs {
            let task = TaskId(self.next_id);
            self.next_id += 1;
            let spec = Arc::new(spec);
            self.sink.send(EventKind::Queued {
                task,
                spec: Arc::clone(&spec),
            });
            self.sched.push(Pending {
                task,
                attempt: 1,
                spec,
            });
            ids.push(task);
        }
        self.drained_sent = false;
        Ok(ids)
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.shared.closed.store(true, Ordering::Release);
            self.sink.send(EventKind::Closed);
        }
    }

    fn cancel_queue(&mut self) {
        self.stopped = true;
        for pending in self.sched.drain_queue() {
            self.sink.send(EventKind::Cancelled { task: pending.task });
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
        if active.kill.is_none() {
            active.kill = Some(reason);
        }
        let first = if grace.is_zero() {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        if let Err(e) = active.launched.control.signal(first) {
            log::warn!("task {task}: {first} failed: {e}");
        }
        if !grace.is_zero() && active.escalate_at.is_none() {
            active.escalate_at = Some(Instant::now() + grace);
        }
    }

    fn start_ready(&mut self) {
        while let Some((pending, slot)) = self.sched.start_next() {
            self.launch(pending, slot);
        }
    }

    fn launch(&mut self, pending: Pending, slot: Slot) {
        let Pending {
            task,
            attempt,
            spec,
        } = pending;
        let request = LaunchRequest {
            task,
            attempt,
            slot,
            spec: &spec,
        };
        match self.backend.launch(request, &self.reporter) {
            Ok(launched) => {
                self.sink.send(EventKind::Started {
                    task,
                    attempt,
                    slot,
                    pid: launched.pid,
                });
                let timeout_at = spec.timeout.map(|t| Instant::now() + t);
                self.active.insert(
                    task,
                    Active {
                        attempt,
                        slot,
                        spec,
                        launched,
                        kill: None,
                        timeout_at,
                        escalate_at: None,
                    },
                );
            }
            Err(reason) => {
                self.sched.release(slot);
                self.finish(task, attempt, spec, Outcome::FailedToSpawn(reason), 0);
            }
        }
    }

    fn ended(&mut self, task: TaskId, attempt: u32, exit: RawExit) {
        let Some(active) = self.active.remove(&task) else {
            return;
        };
        debug_assert_eq!(active.attempt, attempt);
        self.sched.release(active.slot);
        let outcome = match (active.kill, exit) {
            (Some(KillReason::User), _) => Outcome::Killed,
            (Some(KillReason::Timeout), _) => Outcome::TimedOut,
            (None, RawExit::Code(code)) => Outcome::Exited(code),
            (None, RawExit::Signal(sig)) => Outcome::Signaled(sig),
        };
        let stdin_bytes = active.launched.stdin_bytes.load(Ordering::Relaxed);
        self.finish(task, attempt, active.spec, outcome, stdin_bytes);
    }

    fn finish(
        &mut self,
        task: TaskId,
        attempt: u32,
        spec: Arc<TaskSpec>,
        outcome: Outcome,
        stdin_bytes: u64,
    ) {
        let failed = !outcome.is_success();
        let will_retry =
            failed && outcome != Outcome::Killed && !self.stopped && attempt <= self.config.retries;
        if will_retry {
            self.sched.push(Pending {
                task,
                attempt: attempt + 1,
                spec,
            });
        }
        self.sink.send(EventKind::Finished {
            task,
            attempt,
            outcome,
            stdin_bytes,
            will_retry,
        });
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

    fn check_drained(&mut self) {
        let idle = self.closed && self.sched.queued() == 0 && self.active.is_empty();
        if idle && !self.drained_sent {
            self.drained_sent = true;
            self.sink.send(EventKind::Drained);
            self.shared.set_drained();
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.active
            .values()
            .flat_map(|a| [a.escalate_at, a.timeout_at.filter(|_| a.kill.is_none())])
            .flatten()
            .min()
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut timed_out = Vec::new();
        for (task, active) in &mut self.active {
            if active.escalate_at.is_some_and(|t| t <= now) {
                active.escalate_at = None;
                log::info!("task {task}: still alive after the grace period, sending SIGKILL");
                if let Err(e) = active.launched.control.signal(Signal::SIGKILL) {
                    log::warn!("task {task}: SIGKILL failed: {e}");
                }
            }
            if active.kill.is_none() && active.timeout_at.is_some_and(|t| t <= now) {
                timed_out.push(*task);
            }
        }
        for task in timed_out {
            self.kill(task, KillReason::Timeout);
        }
    }
}
