//! Persistent workers (Python's `multiprocessing.Pool`): one worker process per slot,
//! started with the pool, each running the tasks handed to it one after another, so one
//! PID runs many tasks. Tasks reach a worker in batches (a map's chunk) over a pipe;
//! its reports come back, batched, with its own timestamps. See [`crate::executor::worker`].
//!
//! Where Python's `Pool` hangs when a worker dies mid-task, and `concurrent.futures`
//! fails every pending task, here only the task it was running fails (`WorkerLost`):
//! a replacement worker starts on the same slot and takes over the tasks the dead one
//! had not started.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rustix::process::PidfdFlags;

use super::{Backend, Control, Ctx, LaunchError, LaunchRequest, RawExit, Report};
use crate::executor::command::CommandError;
use crate::executor::event::{WorkerChange, signal_name};
use crate::executor::reactor::Interest;
use crate::executor::scheduler::Slot;
use crate::executor::task::{AttemptMap, AttemptSet, Invocation, StdinMode, TaskId};
use crate::executor::worker::{
    ArrayPlace, FromWorker, Job, PROTOCOL_VERSION, RelayPlan, ReportReader, ToWorker, WORKER_ROLE,
    WorkerConfig, WorkerExit, encode, monotonic_ns,
};

/// Tasks a cluster worker holds at once when they are short: enough that it never waits
/// for the round trip, few enough that a worker that connects late gets its share.
const CLUSTER_DEPTH: usize = 8;
/// Below this, a task is short enough to queue behind another on a cluster worker.
const SHORT_TASK: Duration = Duration::from_millis(20);
/// Extra time relays get at the end to cancel their workers' jobs.
const RELAY_GRACE: Duration = Duration::from_secs(5);
/// Workers started with the pool; above this, slots get theirs when first used.
const EAGER_WORKERS: usize = 512;

/// How long a worker may be stopped (SIGSTOP) while it holds tasks before it is lost.
pub const STOPPED_LIMIT: Duration = Duration::from_secs(10);
/// How often workers that hold tasks are looked at for being stopped.
const STOPPED_CHECK: Duration = Duration::from_millis(250);
/// Workers that end before saying hello, in a row, after which no more are started:
/// whatever runs as the worker is not one (a wrong helper binary, a broken
/// interpreter), and each new one would only fail the next task a few ms later.
const START_FAILURES: u32 = 3;

// Token layout: the worker key, then which of its descriptors.
const PIDFD: u64 = 0;
const REPORTS: u64 = 1;
const JOBS: u64 = 2;

fn token(key: u64, which: u64) -> u64 {
    key << 2 | which
}

/// Runs tasks on persistent worker processes.
pub struct WorkerBackend {
    config: WorkerConfig,
    workers: HashMap<Slot, Worker>,
    slot_of: HashMap<u64, Slot>,
    next_key: u64,
    size: usize,
    /// Workers' clock (`CLOCK_MONOTONIC` ns) and `Instant` read at the same moment.
    clock: (Instant, u64),
    /// Attempts ended here (killed before they started) that a worker may still report.
    void: AttemptSet,
    /// The slot whose worker holds each attempt handed out and not yet ended.
    placed: AttemptMap<Slot>,
    stopping: bool,
    buf: Vec<u8>,
    /// When workers were last looked at for being stopped.
    checked: Instant,
    /// Workers in a row that ended before saying hello.
    start_failures: u32,
    /// Why no worker can start: every task from now on fails with it, at once.
    cannot_start: Option<String>,
    /// Workers on a cluster: tasks not yet given to a worker. They go to whichever
    /// worker has connected and has room, not to a slot fixed in advance: a worker job
    /// may wait in the cluster's queue for ever.
    unplaced: VecDeque<Job>,
    /// Workers on a cluster: how long tasks have been taking (a running mean), which
    /// decides how many a worker may hold at once.
    recent_task_ns: Option<u64>,
}

struct Worker {
    key: u64,
    pid: u32,
    pidfd: Option<OwnedFd>,
    jobs: Option<OwnedFd>,
    reports: Option<OwnedFd>,
    reader: ReportReader,
    /// Encoded frames not yet taken by the pipe.
    out: Vec<u8>,
    watching_jobs: bool,
    /// Launched in this turn, sent by [`Backend::launched`].
    batch: Vec<Job>,
    /// Sent and not finished, in order: the first may be running.
    assigned: VecDeque<Job>,
    running: Option<(TaskId, u32)>,
    /// Process group of the external command it runs.
    child: Option<i32>,
    /// A task on it was ended by signalling the worker itself (an in-process job).
    signalled_for: Option<(TaskId, u32)>,
    /// A signal for its command, asked for before the worker said which group that is
    /// (sent when it does: signalling the worker would orphan the command).
    pending_signal: Option<Signal>,
    retiring: bool,
    /// Seen stopped (`T` in /proc) since then, while it held tasks.
    stopped_since: Option<Instant>,
    /// Why poolscope gave it up (killed it): what its task's failure says.
    lost: Option<String>,
    /// It said hello: it is a worker, and anything it was given it may have run.
    greeted: bool,
    /// A worker on a cluster node (behind its relay, which is `pid`): its own PID and host.
    remote: Option<(u32, String)>,
    /// When its running task started (its clock, ns).
    started_ns: u64,
}

impl Worker {
    /// The PID its tasks run in: the worker's own, wherever it runs.
    fn shown_pid(&self) -> u32 {
        self.remote.as_ref().map_or(self.pid, |(pid, _)| *pid)
    }
}

impl WorkerBackend {
    pub fn new(config: WorkerConfig) -> Self {
        Self {
            config,
            workers: HashMap::new(),
            slot_of: HashMap::new(),
            next_key: 0,
            size: 0,
            clock: (Instant::now(), monotonic_ns()),
            void: AttemptSet::default(),
            placed: AttemptMap::default(),
            stopping: false,
            buf: vec![0; 1 << 20],
            checked: Instant::now(),
            start_failures: 0,
            cannot_start: None,
            unplaced: VecDeque::new(),
            recent_task_ns: None,
        }
    }
}

/// A worker's timestamp as an `Instant`, by a pair of readings of both clocks.
fn instant((base, base_ns): (Instant, u64), ns: u64) -> Instant {
    if ns >= base_ns {
        base + Duration::from_nanos(ns - base_ns)
    } else {
        base.checked_sub(Duration::from_nanos(base_ns - ns))
            .unwrap_or(base)
    }
}

impl WorkerBackend {
    fn spawn(&mut self, slot: Slot, ctx: &mut Ctx<'_>) -> Result<(), LaunchError> {
        self.spawn_placed(slot, None, ctx)
    }

    /// Start `slot`'s worker; on a cluster, `array` makes its relay's worker an element of
    /// the pool's first job array rather than a job of its own.
    fn spawn_placed(
        &mut self,
        slot: Slot,
        array: Option<ArrayPlace>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), LaunchError> {
        let config = match (array, &self.config.relay) {
            (Some(place), Some(plan)) => serde_json::to_string(&WorkerConfig {
                relay: Some(RelayPlan {
                    array: Some(place),
                    ..plan.clone()
                }),
                ..self.config.clone()
            }),
            _ => serde_json::to_string(&self.config),
        }
        .map_err(|e| e.to_string())?;
        let mut command = Command::new(ctx.helper());
        command
            .arg(WORKER_ROLE)
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("POOLSCOPE_SLOT", slot.to_string())
            .process_group(0);
        if let Some(token) = ctx.guard().token() {
            command.env(crate::executor::watchdog::TOKEN_VAR, token);
        }
        ctx.guard().spawning();
        let mut child = command.spawn().map_err(|e| {
            ctx.guard().spawned(None);
            let context = format!("cannot start a worker ({})", ctx.helper().display());
            LaunchError::from_io(&context, &e)
        })?;
        let pid = child.id();
        ctx.guard().spawned(Some(pid as i32));
        let jobs = child.stdin.take().map(OwnedFd::from);
        let reports = child.stdout.take().map(OwnedFd::from);
        drop(child);
        let key = self.next_key;
        self.next_key += 1;
        let attach = || -> std::io::Result<OwnedFd> {
            let raw = rustix::process::Pid::from_raw(pid as i32)
                .ok_or_else(|| std::io::Error::other("the worker has no process id"))?;
            let pidfd = rustix::process::pidfd_open(raw, PidfdFlags::empty())?;
            for fd in jobs.iter().chain(reports.iter()) {
                rustix::io::ioctl_fionbio(fd, true)?;
            }
            if let Some(fd) = &reports {
                ctx.watch(fd, token(key, REPORTS), Interest::Read)?;
            }
            ctx.watch(&pidfd, token(key, PIDFD), Interest::Read)?;
            Ok(pidfd)
        };
        let pidfd = match attach() {
            Ok(pidfd) => pidfd,
            Err(e) => {
                if let Some(fd) = &reports {
                    ctx.unwatch(fd);
                }
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
                ctx.guard().remove(pid as i32);
                return Err(LaunchError::from_io("cannot watch a worker", &e));
            }
        };
        self.slot_of.insert(key, slot);
        // A relay is not the worker: the worker's life is drawn once it says hello.
        if !self.on_cluster() {
            ctx.report(Report::Worker {
                slot,
                pid,
                at: None,
                change: WorkerChange::Started,
            });
        }
        self.workers.insert(
            slot,
            Worker {
                key,
                pid,
                pidfd: Some(pidfd),
                jobs,
                reports,
                reader: ReportReader::default(),
                out: Vec::new(),
                watching_jobs: false,
                batch: Vec::new(),
                assigned: VecDeque::new(),
                running: None,
                child: None,
                signalled_for: None,
                pending_signal: None,
                retiring: false,
                stopped_since: None,
                lost: None,
                greeted: false,
                remote: None,
                started_ns: 0,
            },
        );
        Ok(())
    }

    /// Write what is queued for a worker, as far as its pipe takes it.
    fn write_jobs(&mut self, slot: Slot, ctx: &mut Ctx<'_>) {
        let Some(w) = self.workers.get_mut(&slot) else {
            return;
        };
        let Some(fd) = &w.jobs else {
            w.out.clear();
            return;
        };
        while !w.out.is_empty() {
            match rustix::io::write(fd, &w.out) {
                Ok(n) => {
                    w.out.drain(..n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    // The worker is gone: its exit is handled through its pidfd.
                    w.out.clear();
                }
            }
        }
        let want = !w.out.is_empty();
        if want != w.watching_jobs {
            w.watching_jobs = want;
            if want {
                if let Err(e) = ctx.watch(fd, token(w.key, JOBS), Interest::Write) {
                    log::error!("worker {}: cannot watch its job pipe: {e}", w.pid);
                }
            } else {
                ctx.unwatch(fd);
            }
        }
    }

    fn send(&mut self, slot: Slot, message: &ToWorker, ctx: &mut Ctx<'_>) {
        if let Some(w) = self.workers.get_mut(&slot) {
            encode(message, &mut w.out);
        }
        self.write_jobs(slot, ctx);
    }

    fn read_reports(&mut self, slot: Slot, ctx: &mut Ctx<'_>) {
        loop {
            let Some(w) = self.workers.get_mut(&slot) else {
                return;
            };
            let Some(fd) = &w.reports else {
                return;
            };
            match rustix::io::read(fd, &mut self.buf[..]) {
                Ok(0) => {
                    ctx.unwatch(fd);
                    w.reports = None;
                    break;
                }
                Ok(n) => {
                    w.reader.extend(&self.buf[..n]);
                    self.handle_reports(slot, ctx);
                    if n < self.buf.len() {
                        break;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
    }

    fn handle_reports(&mut self, slot: Slot, ctx: &mut Ctx<'_>) {
        loop {
            let Some(w) = self.workers.get_mut(&slot) else {
                return;
            };
            let message = match w.reader.next_report() {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    log::error!("worker {}: {e}; stopping it", w.pid);
                    kill_worker(w.pid, w.child);
                    return;
                }
            };
            self.handle(slot, message, ctx);
        }
    }

    fn handle(&mut self, slot: Slot, message: FromWorker, ctx: &mut Ctx<'_>) {
        let Some(w) = self.workers.get_mut(&slot) else {
            return;
        };
        let pid = w.shown_pid();
        match message {
            FromWorker::Hello { version, .. } if version != PROTOCOL_VERSION => {
                log::error!(
                    "worker {pid} speaks protocol {version}, not {PROTOCOL_VERSION}: stopping it"
                );
                w.lost = Some(format!(
                    "it speaks protocol {version}, not {PROTOCOL_VERSION} (another poolscope's worker)"
                ));
                let _ = killpg(Pid::from_raw(w.pid as i32), Signal::SIGKILL);
            }
            FromWorker::Hello {
                pid: worker_pid,
                host: Some(host),
                ..
            } => self.cluster_hello(slot, worker_pid, host, ctx),
            FromWorker::Hello { .. } => {
                w.greeted = true;
                self.start_failures = 0;
            }
            FromWorker::Lost { why } => w.lost = Some(why),
            FromWorker::Initialized {
                from_ns,
                to_ns,
                error,
            } => {
                if let Some(error) = &error {
                    log::warn!("worker {pid}: its initializer failed: {error}");
                }
                ctx.report(Report::Worker {
                    slot,
                    pid,
                    at: Some(instant(self.clock, from_ns)),
                    change: WorkerChange::InitStarted,
                });
                ctx.report(Report::Worker {
                    slot,
                    pid,
                    at: Some(instant(self.clock, to_ns)),
                    change: WorkerChange::InitEnded { error },
                });
            }
            FromWorker::Started {
                task,
                attempt,
                at_ns,
            } => self.started(slot, (TaskId(task), attempt), at_ns, ctx),
            FromWorker::Child {
                task,
                attempt,
                pid: child,
            } => {
                w.child = Some(child as i32);
                ctx.guard().add(child as i32);
                if let Some(signal) = w.pending_signal.take() {
                    let _ = killpg(Pid::from_raw(child as i32), signal);
                }
                ctx.report(Report::CommandStarted {
                    task: TaskId(task),
                    attempt,
                    pid: child,
                });
            }
            FromWorker::Output {
                task,
                attempt,
                stream,
                bytes,
            } => ctx.report(Report::Output {
                task: TaskId(task),
                attempt,
                stream,
                bytes,
            }),
            FromWorker::Finished {
                task,
                attempt,
                at_ns,
                exit,
            } => {
                if w.remote.is_some() {
                    let took = at_ns.saturating_sub(w.started_ns);
                    self.recent_task_ns =
                        Some(self.recent_task_ns.map_or(took, |m| (m * 7 + took) / 8));
                }
                self.finished(slot, (TaskId(task), attempt), at_ns, exit, ctx);
                self.place(ctx);
            }
            FromWorker::Retiring => w.retiring = true,
        }
    }

    /// A worker started a task.
    fn started(
        &mut self,
        slot: Slot,
        (task, attempt): (TaskId, u32),
        at_ns: u64,
        ctx: &mut Ctx<'_>,
    ) {
        let void = self.is_void(task, attempt);
        let Some(w) = self.workers.get_mut(&slot) else {
            return;
        };
        w.running = Some((task, attempt));
        w.started_ns = at_ns;
        w.pending_signal = None;
        if !void {
            let host = w.remote.as_ref().map(|(_, host)| host.clone());
            ctx.report(Report::Started {
                task,
                attempt,
                pid: Some(w.shown_pid()),
                at: Some(instant(self.clock, at_ns)),
                // On a cluster a task goes to any worker: its lane is that one's.
                slot: host.is_some().then_some(slot),
                host,
            });
        }
    }

    /// A worker on a cluster node connected (through its relay): its life is drawn from
    /// now, under its own PID, and it gets tasks.
    fn cluster_hello(&mut self, slot: Slot, pid: u32, host: String, ctx: &mut Ctx<'_>) {
        let Some(w) = self.workers.get_mut(&slot) else {
            return;
        };
        w.greeted = true;
        w.remote = Some((pid, host));
        self.start_failures = 0;
        ctx.report(Report::Worker {
            slot,
            pid,
            at: None,
            change: WorkerChange::Started,
        });
        self.place(ctx);
    }

    /// A worker finished a task.
    fn finished(
        &mut self,
        slot: Slot,
        (task, attempt): (TaskId, u32),
        at_ns: u64,
        exit: WorkerExit,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(w) = self.workers.get_mut(&slot) else {
            return;
        };
        w.running = None;
        if let Some(child) = w.child.take() {
            ctx.guard().remove(child);
        }
        if let Some(i) = w
            .assigned
            .iter()
            .position(|j| (TaskId(j.task), j.attempt) == (task, attempt))
        {
            w.assigned.remove(i);
        }
        if !self.take_void(task, attempt) {
            let exit = match exit {
                WorkerExit::Code(code) => RawExit::Code(code),
                WorkerExit::Signal(sig) => RawExit::Signal(sig),
            };
            let at = Some(instant(self.clock, at_ns));
            self.end(task, attempt, exit, at, ctx);
        }
    }

    /// Report an attempt over: it is on no worker any more.
    fn end(
        &mut self,
        task: TaskId,
        attempt: u32,
        exit: RawExit,
        at: Option<Instant>,
        ctx: &mut Ctx<'_>,
    ) {
        self.placed.remove(&(task, attempt));
        ctx.report(Report::Ended {
            task,
            attempt,
            exit,
            stdin_bytes: 0,
            at,
        });
    }

    /// A worker has exited: end what it was running, and hand what it had not started
    /// to a new worker on the same slot.
    fn reap(&mut self, slot: Slot, ctx: &mut Ctx<'_>) {
        // Everything it reported before exiting is still in its pipe.
        self.read_reports(slot, ctx);
        let Some(w) = self.workers.get_mut(&slot) else {
            return;
        };
        let Some(pidfd) = w.pidfd.as_ref() else {
            return;
        };
        let Some(status) = super::exited(pidfd, &format_args!("worker {}", w.pid)) else {
            return;
        };
        let Some(w) = self.workers.remove(&slot) else {
            return;
        };
        self.slot_of.remove(&w.key);
        for fd in [&w.pidfd, &w.reports].into_iter().flatten() {
            ctx.unwatch(fd);
        }
        if w.watching_jobs
            && let Some(fd) = &w.jobs
        {
            ctx.unwatch(fd);
        }
        ctx.guard().remove(w.pid as i32);
        if let Some(child) = w.child {
            // An external command outlives a killed worker: end it too.
            let _ = killpg(Pid::from_raw(child), Signal::SIGKILL);
            ctx.guard().remove(child);
        }
        let how = match (&w.lost, status.exit_status(), status.terminating_signal()) {
            (Some(why), ..) => why.clone(),
            (None, _, Some(sig)) => signal_name(sig),
            (None, Some(code), _) => format!("exit {code}"),
            _ => "ended".to_owned(),
        };
        let retired = (w.retiring || self.stopping) && status.exit_status() == Some(0);
        ctx.report(Report::Worker {
            slot,
            pid: w.shown_pid(),
            at: None,
            change: WorkerChange::Exited {
                how: how.clone(),
                retired,
            },
        });
        let mut left: VecDeque<Job> = w.assigned;
        if !w.greeted && !self.stopping && self.start_failed(&how, &mut left, ctx) {
            return;
        }
        // Jobs run in order: a worker that died (rather than retired) was on its first
        // job, even if it had no time to say so. That job is lost, not handed on.
        let running = w.running.filter(|_| w.greeted).or_else(|| {
            (!w.retiring && w.greeted)
                .then(|| left.front().map(|j| (TaskId(j.task), j.attempt)))
                .flatten()
        });
        if let Some((task, attempt)) = running {
            left.retain(|j| (TaskId(j.task), j.attempt) != (task, attempt));
            if !self.void.remove(&(task, attempt)) {
                let exit = match (w.signalled_for, status.terminating_signal()) {
                    (Some(target), Some(sig)) if target == (task, attempt) => RawExit::Signal(sig),
                    _ => RawExit::WorkerLost(how.clone()),
                };
                self.end(task, attempt, exit, None, ctx);
            }
        } else if w.greeted && !w.retiring && !self.stopping {
            log::warn!(
                "worker {} on slot {slot} ended ({how}) between tasks",
                w.pid
            );
        }
        left.retain(|j| !self.void.remove(&(TaskId(j.task), j.attempt)));
        if self.on_cluster() {
            // Not started: they go to whichever worker has room first.
            for job in left.drain(..).rev() {
                self.placed.remove(&(TaskId(job.task), job.attempt));
                self.unplaced.push_front(job);
            }
            self.place(ctx);
        }
        let wanted = !self.stopping && slot < self.size;
        if left.is_empty() && !wanted {
            return;
        }
        match self.spawn(slot, ctx) {
            Ok(()) => {
                if !left.is_empty() {
                    if let Some(w) = self.workers.get_mut(&slot) {
                        w.assigned.extend(left.iter().cloned());
                    }
                    self.send(slot, &ToWorker::Run(left.into()), ctx);
                }
            }
            Err(e) => {
                log::error!("slot {slot}: {e}");
                for job in left {
                    let exit = RawExit::WorkerLost(format!("no worker to run it: {e}"));
                    self.end(TaskId(job.task), job.attempt, exit, None, ctx);
                }
            }
        }
    }

    /// A worker ended before saying hello: it ran nothing, so its jobs go to the next
    /// one; after [`START_FAILURES`] in a row, none will start, and its jobs and every
    /// later task fail at once, saying why. True when no new worker is to be started.
    fn start_failed(&mut self, how: &str, left: &mut VecDeque<Job>, ctx: &mut Ctx<'_>) -> bool {
        self.start_failures += 1;
        if self.start_failures < START_FAILURES {
            if self.on_cluster() {
                log::warn!("a worker job ended before connecting ({how}): starting another");
            } else {
                log::warn!("a worker ended ({how}) before saying hello: starting another");
            }
            return false;
        }
        let why = if self.on_cluster() {
            format!(
                "worker jobs cannot start: {START_FAILURES} in a row ended before connecting (last: {how})"
            )
        } else {
            let helper = ctx.helper().display().to_string();
            format!(
                "workers cannot start: {START_FAILURES} in a row ended ({how}) before saying hello; is {helper} poolscope's own worker?"
            )
        };
        log::error!("{why}");
        let unplaced: Vec<Job> = self.unplaced.drain(..).collect();
        for job in left.drain(..).chain(unplaced) {
            let (task, attempt) = (TaskId(job.task), job.attempt);
            if !self.void.remove(&(task, attempt)) {
                self.end(task, attempt, RawExit::WorkerLost(why.clone()), None, ctx);
            }
        }
        self.cannot_start = Some(why);
        true
    }

    /// Whether the attempt was ended here before it started (checked per report: no
    /// hashing while nothing was).
    fn is_void(&self, task: TaskId, attempt: u32) -> bool {
        !self.void.is_empty() && self.void.contains(&(task, attempt))
    }

    fn take_void(&mut self, task: TaskId, attempt: u32) -> bool {
        !self.void.is_empty() && self.void.remove(&(task, attempt))
    }

    /// Give up the workers that have been stopped (SIGSTOP) for the limit while holding
    /// tasks: SIGKILL them (and their command), so their task fails as `worker lost`
    /// and a new worker takes the slot and what it had not started.
    fn check_stopped(&mut self, now: Instant) {
        self.checked = now;
        let limit = self.config.stopped_limit.unwrap_or(STOPPED_LIMIT);
        for w in self.workers.values_mut() {
            if w.assigned.is_empty() || w.lost.is_some() {
                w.stopped_since = None;
                continue;
            }
            if !is_stopped(w.pid) {
                w.stopped_since = None;
                continue;
            }
            let since = *w.stopped_since.get_or_insert(now);
            if now.duration_since(since) >= limit {
                log::info!(
                    "worker {} has been stopped for {:.1} s: giving it up",
                    w.pid,
                    limit.as_secs_f64()
                );
                w.lost = Some(format!(
                    "stopped (SIGSTOP) for {:.1} s, not answering",
                    limit.as_secs_f64()
                ));
                kill_worker(w.pid, w.child);
            }
        }
    }

    fn on_cluster(&self) -> bool {
        self.config.relay.is_some()
    }

    /// Give unplaced tasks to the connected workers with room (a few each, so a task
    /// is there when the one before ends, and a late worker still gets its share).
    fn place(&mut self, ctx: &mut Ctx<'_>) {
        if self.unplaced.is_empty() {
            return;
        }
        let mut slots: Vec<Slot> = self
            .workers
            .iter()
            .filter(|(_, w)| w.greeted && !w.retiring && w.lost.is_none())
            .map(|(&s, _)| s)
            .collect();
        slots.sort_unstable();
        // Long tasks one at a time (a queued one would wait behind a running one while
        // another worker idles); short ones a few at a time (the round trip would idle
        // the worker between them).
        let depth = match self.recent_task_ns {
            Some(ns) if ns < SHORT_TASK.as_nanos() as u64 => CLUSTER_DEPTH,
            _ => 1,
        };
        for slot in slots {
            let Some(w) = self.workers.get_mut(&slot) else {
                continue;
            };
            let room = depth.saturating_sub(w.assigned.len());
            let take = room.min(self.unplaced.len());
            if take == 0 {
                continue;
            }
            let jobs: Vec<Job> = self.unplaced.drain(..take).collect();
            for job in &jobs {
                self.placed.insert((TaskId(job.task), job.attempt), slot);
            }
            w.assigned.extend(jobs.iter().cloned());
            self.send(slot, &ToWorker::Run(jobs), ctx);
        }
    }

    /// Ask every worker to leave after its current task.
    fn stop_all(&mut self, ctx: &mut Ctx<'_>) {
        self.stopping = true;
        let slots: Vec<Slot> = self.workers.keys().copied().collect();
        for slot in slots {
            self.send(slot, &ToWorker::Stop, ctx);
        }
    }
}

impl Backend for WorkerBackend {
    fn start(&mut self, size: usize, ctx: &mut Ctx<'_>) -> Result<(), String> {
        self.size = size;
        let eager = size.min(EAGER_WORKERS);
        // One submission (one job array) for the first workers on a cluster, as large as
        // the cluster allows arrays (the rest go as jobs of their own); its elements are
        // told apart from another pool's by the cohort.
        let in_array = if self.on_cluster() {
            eager.min(super::slurm::max_array_size())
        } else {
            0
        };
        let cohort = format!("{}-{}", std::process::id(), monotonic_ns());
        for slot in 0..eager {
            let array = (slot < in_array).then(|| ArrayPlace {
                cohort: cohort.clone(),
                size: in_array as u32,
                index: slot as u32,
            });
            match self.spawn_placed(slot, array, ctx) {
                Ok(()) => {}
                // The machine allows fewer workers for now: the rest start when a task
                // is handed to their slot, and wait for room then.
                Err(LaunchError::Busy(reason)) => {
                    log::info!("{reason}: {slot} workers started ahead");
                    break;
                }
                Err(LaunchError::Failed(reason)) => return Err(reason),
            }
        }
        Ok(())
    }

    fn launch(&mut self, request: LaunchRequest<'_>, ctx: &mut Ctx<'_>) -> Result<(), LaunchError> {
        let spec = request.spec;
        if spec.pty || spec.stdin != StdinMode::Null {
            return Err(LaunchError::Failed(
                "a task on a persistent worker has no terminal and no stdin: give it `process = true` or use process mode"
                    .to_owned(),
            ));
        }
        if let Some(why) = &self.cannot_start {
            return Err(LaunchError::Failed(why.clone()));
        }
        self.stopping = false;
        if !self.workers.contains_key(&request.slot) {
            self.spawn(request.slot, ctx)?;
        }
        let job = Job {
            task: request.task.0,
            attempt: request.attempt,
            invocation: spec.invocation.clone(),
            cwd: spec.cwd.clone(),
            env: spec.env.clone(),
        };
        if self.on_cluster() {
            self.unplaced.push_back(job);
        } else if let Some(w) = self.workers.get_mut(&request.slot) {
            w.batch.push(job);
            self.placed
                .insert((request.task, request.attempt), request.slot);
        }
        Ok(())
    }

    fn prefetch(&self) -> usize {
        256
    }

    fn launched(&mut self, ctx: &mut Ctx<'_>) {
        let slots: Vec<Slot> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.batch.is_empty())
            .map(|(&s, _)| s)
            .collect();
        for slot in slots {
            let Some(w) = self.workers.get_mut(&slot) else {
                continue;
            };
            let batch = std::mem::take(&mut w.batch);
            w.assigned.extend(batch.iter().cloned());
            self.send(slot, &ToWorker::Run(batch), ctx);
        }
        self.place(ctx);
    }

    fn control(
        &mut self,
        task: TaskId,
        attempt: u32,
        control: Control<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CommandError> {
        let signal = match control {
            Control::Signal(signal) => signal,
            Control::Write(_) | Control::CloseStdin => {
                return Err(CommandError::StdinNotOpen(task));
            }
        };
        if let Some(i) = self
            .unplaced
            .iter()
            .position(|j| (TaskId(j.task), j.attempt) == (task, attempt))
        {
            self.unplaced.remove(i);
            self.end(task, attempt, RawExit::Signal(signal as i32), None, ctx);
            return Ok(());
        }
        let w = self
            .placed
            .get(&(task, attempt))
            .and_then(|slot| self.workers.get_mut(slot))
            .ok_or(CommandError::NotRunning(task))?;
        if w.running == Some((task, attempt)) {
            // An external command leads its own group; an in-process job is the worker.
            let in_process = w.assigned.iter().any(|j| {
                (TaskId(j.task), j.attempt) == (task, attempt)
                    && matches!(j.invocation, Invocation::Builtin(_))
            });
            let target = if let Some(child) = w.child {
                Some(child)
            } else if in_process || w.remote.is_some() {
                // A cluster worker's command is signalled by ending its relay.
                w.signalled_for = Some((task, attempt));
                Some(w.pid as i32)
            } else {
                // Started, but not reported yet (the worker may be stopped between the
                // two): the command may already be its child; if not, it gets the
                // signal when the worker names it.
                let spawned = children_of(w.pid);
                if spawned.is_empty() {
                    w.pending_signal = Some(signal);
                }
                spawned.first().copied()
            };
            let sent = target.map_or(Ok(()), |target| {
                killpg(Pid::from_raw(target), signal)
                    .map_err(|e| CommandError::Signal(task, e.to_string()))
            });
            // A stopped worker cannot see its command end: ending a task continues it.
            if matches!(signal, Signal::SIGTERM | Signal::SIGKILL | Signal::SIGCONT) {
                let _ = killpg(Pid::from_raw(w.pid as i32), Signal::SIGCONT);
            }
            return sent;
        }
        // Not started yet: it ends now. If it was already sent, the worker may still run
        // it; what it reports of it is dropped.
        if let Some(i) = w
            .batch
            .iter()
            .position(|j| (TaskId(j.task), j.attempt) == (task, attempt))
        {
            w.batch.remove(i);
        } else {
            self.void.insert((task, attempt));
        }
        self.end(task, attempt, RawExit::Signal(signal as i32), None, ctx);
        Ok(())
    }

    fn ready(&mut self, token: u64, ctx: &mut Ctx<'_>) {
        let Some(&slot) = self.slot_of.get(&(token >> 2)) else {
            return;
        };
        match token & 3 {
            PIDFD => self.reap(slot, ctx),
            REPORTS => self.read_reports(slot, ctx),
            JOBS => self.write_jobs(slot, ctx),
            _ => {}
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.workers
            .values()
            .any(|w| !w.assigned.is_empty())
            .then(|| self.checked + STOPPED_CHECK)
    }

    fn on_deadline(&mut self, now: Instant, _ctx: &mut Ctx<'_>) {
        if now >= self.checked + STOPPED_CHECK {
            self.check_stopped(now);
        }
    }

    fn resize(&mut self, size: usize, ctx: &mut Ctx<'_>) {
        self.size = size;
        let idle_above: Vec<Slot> = self
            .workers
            .iter()
            .filter(|&(&s, w)| s >= size && w.assigned.is_empty() && w.batch.is_empty())
            .map(|(&s, _)| s)
            .collect();
        for slot in idle_above {
            self.send(slot, &ToWorker::Stop, ctx);
        }
        for slot in 0..size.min(EAGER_WORKERS) {
            if !self.workers.contains_key(&slot)
                && let Err(e) = self.spawn(slot, ctx)
            {
                log::error!("slot {slot}: {e}");
            }
        }
    }

    fn drained(&mut self, ctx: &mut Ctx<'_>) {
        self.stop_all(ctx);
    }

    fn shutdown(&mut self, ctx: &mut Ctx<'_>) {
        self.stop_all(ctx);
        let mut grace = ctx.kill_grace();
        if self.on_cluster() {
            // Relays cancel their worker's job on SIGTERM (a job still pending would
            // never hear the stop); `scancel` takes a moment of its own.
            for w in self.workers.values() {
                let _ = killpg(Pid::from_raw(w.pid as i32), Signal::SIGTERM);
            }
            grace += RELAY_GRACE;
        }
        // Give them the grace period to leave, then kill what is left; reap all.
        let deadline = Instant::now() + grace;
        let pids: Vec<u32> = self.workers.values().map(|w| w.pid).collect();
        for pid in pids {
            let pid = Pid::from_raw(pid as i32);
            loop {
                match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                        kill_worker(pid.as_raw() as u32, None);
                        let _ = nix::sys::wait::waitpid(pid, None);
                        break;
                    }
                    _ => break,
                }
            }
            ctx.guard().remove(pid.as_raw());
        }
        for (&slot, w) in &self.workers {
            ctx.report(Report::Worker {
                slot,
                pid: w.shown_pid(),
                at: None,
                change: WorkerChange::Exited {
                    how: "stopped".to_owned(),
                    retired: true,
                },
            });
        }
        for w in self.workers.values() {
            if let Some(child) = w.child {
                let _ = killpg(Pid::from_raw(child), Signal::SIGKILL);
                ctx.guard().remove(child);
            }
        }
        self.workers.clear();
        self.slot_of.clear();
    }
}

/// Worker-pool mode as [`Executor::start`](crate::executor::Executor::start) runs it:
/// persistent workers, plus a process of its own for a task that asks for one
/// ([`TaskSpec::own_process`](crate::executor::TaskSpec::own_process)), so both kinds
/// can run side by side in one pool.
pub struct WorkerPool {
    workers: WorkerBackend,
    processes: super::local::LocalBackend,
    /// Attempts running as processes of their own.
    in_process: AttemptSet,
}

/// Tokens of the own-process half.
const PROCESS_TAG: u64 = 1 << 62;

impl WorkerPool {
    pub fn new(config: WorkerConfig) -> Self {
        Self {
            workers: WorkerBackend::new(config),
            processes: super::local::LocalBackend::default(),
            in_process: AttemptSet::default(),
        }
    }
}

impl Backend for WorkerPool {
    fn start(&mut self, size: usize, ctx: &mut Ctx<'_>) -> Result<(), String> {
        self.workers.start(size, ctx)
    }

    fn launch(&mut self, request: LaunchRequest<'_>, ctx: &mut Ctx<'_>) -> Result<(), LaunchError> {
        if request.spec.own_process {
            self.processes
                .launch(request, &mut ctx.tagged(PROCESS_TAG))?;
            self.in_process.insert((request.task, request.attempt));
            Ok(())
        } else {
            self.workers.launch(request, ctx)
        }
    }

    fn prefetch(&self) -> usize {
        self.workers.prefetch()
    }

    fn launched(&mut self, ctx: &mut Ctx<'_>) {
        self.workers.launched(ctx);
    }

    fn control(
        &mut self,
        task: TaskId,
        attempt: u32,
        control: Control<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CommandError> {
        if self.in_process.contains(&(task, attempt)) {
            self.processes
                .control(task, attempt, control, &mut ctx.tagged(PROCESS_TAG))
        } else {
            self.workers.control(task, attempt, control, ctx)
        }
    }

    fn ready(&mut self, token: u64, ctx: &mut Ctx<'_>) {
        if token & PROCESS_TAG != 0 {
            let mut half = ctx.tagged(PROCESS_TAG);
            self.processes.ready(token & !PROCESS_TAG, &mut half);
            // An ended attempt is no longer one of ours.
            for report in half.reports.iter() {
                if let Report::Ended { task, attempt, .. } = report {
                    self.in_process.remove(&(*task, *attempt));
                }
            }
        } else {
            self.workers.ready(token, ctx);
        }
    }

    fn resume_output(&mut self, ctx: &mut Ctx<'_>) {
        self.processes.resume_output(&mut ctx.tagged(PROCESS_TAG));
    }

    fn deadline(&self) -> Option<Instant> {
        self.processes
            .deadline()
            .into_iter()
            .chain(self.workers.deadline())
            .min()
    }

    fn on_deadline(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.processes
            .on_deadline(now, &mut ctx.tagged(PROCESS_TAG));
        self.workers.on_deadline(now, ctx);
    }

    fn resize(&mut self, size: usize, ctx: &mut Ctx<'_>) {
        self.workers.resize(size, ctx);
    }

    fn drained(&mut self, ctx: &mut Ctx<'_>) {
        self.workers.drained(ctx);
    }

    fn shutdown(&mut self, ctx: &mut Ctx<'_>) {
        self.processes.shutdown(&mut ctx.tagged(PROCESS_TAG));
        self.workers.shutdown(ctx);
    }
}

/// SIGKILL a worker and the commands it started, even one it had no time to report (it
/// was stopped, or killed, between starting a command and saying so): each leads its
/// own group, found among the worker's children before the worker goes.
fn kill_worker(pid: u32, reported_child: Option<i32>) {
    let mut groups = children_of(pid);
    groups.extend(reported_child);
    for group in groups {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// A local process's children (each command a worker starts leads its own group).
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Whether a process is stopped (`T`, or `t` under a debugger) by its /proc entry.
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold any
        // character: read after the last ')'.
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state == "T" || state == "t")
    })
}
