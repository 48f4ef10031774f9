//! The owner's side: requests answered against the run's record and pool, by whoever
//! holds them (the window, `poolscope run`), through the [`Owner`] it implements; and
//! followers fed with the output events as the owner applies them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::Receiver;

use crate::executor::{Event, EventKind, Outcome, Signal, StdinMode, Stream, TaskId, TaskSpec};
use crate::model::{Channel, RunRecord, TaskState};

use super::protocol::{
    Counts, NewStdin, NewTask, OutputChunk, Reply, Request, RunInfo, TaskStatus,
};
use super::server::{Bound, Incoming, Responder, Server, Wake};

/// Output bytes a follower may fall behind by (its client reads slower than the task
/// prints): the run never holds more for a slow reader. Past it, a follower of a run
/// that keeps output files catches up from them; without files it is dropped.
const MAX_BEHIND: usize = 64 << 20;
/// Most tasks waiting to start that a run holds by default: an add beyond them is
/// refused with [`Reply::Full`] (`yes | poolscope add` waits instead of filling the
/// memory).
pub const MAX_WAITING: usize = 1_000_000;

/// A pool command from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolCommand {
    Pause,
    Resume,
    Resize(usize),
    Close,
    Terminate,
    Kill(TaskId),
    Signal(TaskId, Signal),
}

/// What the owner of a live run does for its clients. Task ids are the run's (the
/// record's), as the client sees them.
pub trait Owner {
    fn record(&self) -> &RunRecord;
    /// Queue tasks (journaled before any can start); the ids of the first and how many.
    fn add(&mut self, specs: Vec<TaskSpec>) -> Result<(u64, u64), String>;
    /// Type to a task, and close its input after when `eof`.
    fn send(&mut self, task: TaskId, bytes: Vec<u8>, eof: bool) -> Result<(), String>;
    fn command(&mut self, command: PoolCommand) -> Result<(), String>;
    /// Pool size, mode, whether it takes tasks now.
    fn shape(&self) -> Shape;
    /// Where attempts' output files are, if the run keeps them.
    fn output_dir(&self) -> Option<PathBuf>;
    /// Whether the record has every task handed to the pool (the pool's word of a
    /// task it took comes a moment after it took it): until then, what reads tasks
    /// waits, so a `status` right after an `add` lists what was added.
    fn settled(&self) -> bool;
}

/// How an owner's pool stands.
#[derive(Clone, Debug)]
pub struct Shape {
    pub size: usize,
    pub mode: &'static str,
    pub takes_tasks: bool,
    /// Tasks queued and not started (those held back too).
    pub waiting: usize,
    /// Most tasks that may wait; an add beyond is [`Reply::Full`].
    pub most_waiting: usize,
}

impl Shape {
    /// The mode as `ls` names it: a cluster's, persistent workers', or a process each.
    pub fn mode_of(slurm: bool, workers: bool) -> &'static str {
        match (slurm, workers) {
            (true, true) => "slurm workers",
            (true, false) => "slurm",
            (false, true) => "workers",
            (false, false) => "processes",
        }
    }
}

/// A client following a task's output.
struct Follower {
    reply: Responder,
    /// Where the task's output files are, if the run keeps them.
    files: Option<PathBuf>,
    attempt: u32,
    /// Bytes of each stream (stdout, stderr) of the attempt: sent, and seen by the run.
    sent: [u64; 2],
    seen: [u64; 2],
}

impl Follower {
    /// Send what the files hold past what was sent (the file answer comes after the
    /// lines already handed over); `false` once the client is gone.
    fn catch_up(&mut self, task: TaskId) -> bool {
        if self.sent == self.seen {
            return true;
        }
        let Some(dir) = &self.files else {
            return true;
        };
        for stream in Stream::BOTH {
            let i = stream.index();
            let path = stream.file_in(dir, task, self.attempt);
            let (start, len) = (self.sent[i], self.seen[i] - self.sent[i]);
            if !self.reply.send_file(stream.name(), path, start, len) {
                return false;
            }
        }
        self.sent = self.seen;
        true
    }

    /// [`Self::catch_up`] once the client has read what it was sent (one file answer
    /// for all it missed, not one per chunk); `false` once the client is gone.
    fn catch_up_when_read(&mut self, task: TaskId) -> bool {
        self.reply.behind() > 0 || self.catch_up(task)
    }
}

/// A live run's socket and the clients following its tasks.
pub struct Control {
    server: Server,
    incoming: Receiver<Incoming>,
    followers: HashMap<TaskId, Vec<Follower>>,
    /// `window` or `headless`.
    place: &'static str,
    dir: PathBuf,
    /// Requests that read tasks, waiting for the record to have them all.
    deferred: Vec<(Request, Responder)>,
}

/// Whether a request reads or acts on the run's tasks.
fn reads_tasks(request: &Request) -> bool {
    !matches!(
        request,
        Request::Info
            | Request::Add { .. }
            | Request::Pause
            | Request::Resume
            | Request::Resize { .. }
            | Request::Close
            | Request::Terminate
    )
}

/// A run's socket, bound and listening, not answered yet: clients that come meanwhile
/// wait in its backlog.
pub struct BoundControl {
    bound: Bound,
    dir: PathBuf,
}

impl BoundControl {
    /// The run's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Answer the clients from now on.
    pub fn start(self, place: &'static str, wake: Wake) -> std::io::Result<Control> {
        let (server, incoming) = self.bound.serve(wake)?;
        Ok(Control {
            server,
            incoming,
            followers: HashMap::new(),
            place,
            dir: self.dir,
            deferred: Vec::new(),
        })
    }
}

impl Control {
    /// Listen in the run's folder `dir`.
    pub fn start(dir: &Path, place: &'static str, wake: Wake) -> std::io::Result<Self> {
        Self::bind(dir)?.start(place, wake)
    }

    /// The socket in the run's folder `dir`, with no thread to answer it yet (its
    /// descriptor taken while the run has them to spare).
    pub fn bind(dir: &Path) -> std::io::Result<BoundControl> {
        // Clients in other folders read this path from `ls`: it must not be relative.
        let dir = std::path::absolute(dir)?;
        Ok(BoundControl {
            bound: Server::bind(&dir)?,
            dir,
        })
    }

    pub fn socket(&self) -> &Path {
        self.server.path()
    }

    /// Answer every request waiting; whether there were any.
    pub fn serve(&mut self, owner: &mut dyn Owner) -> bool {
        // Followers left behind that have read what they were sent, while their task
        // is quiet.
        for (task, followers) in &mut self.followers {
            followers.retain_mut(|f| f.catch_up_when_read(*task));
        }
        let mut any = !self.deferred.is_empty();
        if any && owner.settled() {
            for (request, reply) in std::mem::take(&mut self.deferred) {
                self.answer(owner, request, reply);
            }
        }
        while let Ok(Incoming { request, reply }) = self.incoming.try_recv() {
            any = true;
            if reads_tasks(&request) && !(self.deferred.is_empty() && owner.settled()) {
                self.deferred.push((request, reply));
                continue;
            }
            self.answer(owner, request, reply);
        }
        any
    }

    /// An event the owner applied (with the run's task ids): output for followers, and
    /// the end of the tasks they follow.
    pub fn event(&mut self, event: &Event) {
        if self.followers.is_empty() {
            return;
        }
        match &event.kind {
            EventKind::Output {
                task,
                attempt,
                stream,
                bytes,
            } => {
                let Some(followers) = self.followers.get_mut(task) else {
                    return;
                };
                let i = stream.index();
                followers.retain_mut(|f| {
                    if f.attempt != *attempt {
                        // A retry: its output is in files of its own.
                        f.attempt = *attempt;
                        f.sent = [0; 2];
                        f.seen = [0; 2];
                    }
                    let lagging = f.sent != f.seen;
                    f.seen[i] += bytes.len() as u64;
                    if lagging || f.reply.behind() > MAX_BEHIND {
                        if f.files.is_none() {
                            f.reply.send(Reply::Error(format!(
                                "this client fell {} MiB behind the task's output and was \
                                 dropped (the run keeps no output files to catch up from)",
                                MAX_BEHIND >> 20
                            )));
                            return false;
                        }
                        // Left to the files.
                        return f.catch_up_when_read(*task);
                    }
                    f.sent[i] += bytes.len() as u64;
                    f.reply
                        .send(Reply::Output(OutputChunk::new(stream.name(), bytes)))
                });
            }
            EventKind::Finished {
                task,
                outcome,
                will_retry: false,
                ..
            } => {
                if let Some(followers) = self.followers.remove(task) {
                    for mut f in followers {
                        if f.catch_up(*task) {
                            f.reply.send(end_of(Some(outcome)));
                        }
                    }
                }
            }
            EventKind::Cancelled { task } => {
                if let Some(followers) = self.followers.remove(task) {
                    for f in followers {
                        f.reply.send(end_of(None));
                    }
                }
            }
            _ => {}
        }
    }

    fn answer(&mut self, owner: &mut dyn Owner, request: Request, reply: Responder) {
        let answer = match request {
            Request::Info => Ok(Reply::Info(self.info(owner))),
            Request::Add { tasks } => add(owner, tasks),
            Request::Status { tasks } => status(owner.record(), &tasks).map(Reply::Status),
            Request::Log { task } => {
                let dir = owner.output_dir();
                let record = owner.record();
                known(record, task).map(|task| {
                    replay(record, task, dir.as_deref(), &reply);
                    ended(record, task).unwrap_or(Reply::Ok)
                })
            }
            Request::Follow { task } => {
                let dir = owner.output_dir();
                let record = owner.record();
                match known(record, task) {
                    Ok(task) => {
                        let (attempt, seen) = replay(record, task, dir.as_deref(), &reply);
                        if let Some(end) = ended(record, task) {
                            Ok(end)
                        } else {
                            self.followers.entry(task).or_default().push(Follower {
                                reply,
                                files: dir,
                                attempt,
                                sent: seen,
                                seen,
                            });
                            return;
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Request::Send { task, text, eof } => known(owner.record(), task)
                .and_then(|task| owner.send(task, text.into_bytes(), eof))
                .map(|()| Reply::Ok),
            Request::Kill { tasks } => each_task(owner, &tasks, PoolCommand::Kill),
            Request::Signal { tasks, signal } => match parse_signal(&signal) {
                Ok(signal) => each_task(owner, &tasks, |t| PoolCommand::Signal(t, signal)),
                Err(e) => Err(e),
            },
            Request::Pause => owner.command(PoolCommand::Pause).map(|()| Reply::Ok),
            Request::Resume => owner.command(PoolCommand::Resume).map(|()| Reply::Ok),
            Request::Resize { size } => {
                crate::executor::user_pool_size(i64::try_from(size).unwrap_or(i64::MAX))
                    .and_then(|size| owner.command(PoolCommand::Resize(size)))
                    .map(|()| Reply::Ok)
            }
            Request::Close => owner.command(PoolCommand::Close).map(|()| Reply::Ok),
            Request::Terminate => owner.command(PoolCommand::Terminate).map(|()| Reply::Ok),
        };
        reply.send(answer.unwrap_or_else(Reply::Error));
    }

    fn info(&self, owner: &dyn Owner) -> RunInfo {
        let record = owner.record();
        let shape = owner.shape();
        // The record keeps these counts event by event: no pass over the tasks.
        let tally = record.tally();
        let counts = Counts {
            queued: tally.queued,
            running: tally.running,
            succeeded: tally.succeeded,
            failed: tally.failed + tally.lost,
            cancelled: tally.cancelled,
        };
        RunInfo {
            id: self
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: self.dir.clone(),
            place: self.place.to_owned(),
            pid: std::process::id(),
            size: shape.size,
            mode: shape.mode.to_owned(),
            phase: format!("{:?}", record.phase).to_lowercase(),
            takes_tasks: shape.takes_tasks,
            counts,
        }
    }
}

/// The reply that ends a follow: how the task ended (`None`: it never ran).
fn end_of(outcome: Option<&Outcome>) -> Reply {
    Reply::End {
        outcome: outcome.map_or_else(|| "cancelled".to_owned(), ToString::to_string),
        code: match outcome {
            Some(Outcome::Exited(code)) => Some(*code),
            _ => None,
        },
        signal: match outcome {
            Some(Outcome::Signaled(signal)) => Some(*signal),
            // Ended by `kill` (SIGTERM first), as a shell reports it: 143.
            Some(Outcome::Killed) => Some(Signal::SIGTERM as i32),
            _ => None,
        },
    }
}

/// The end reply of a task that is over, or `None` while it may still run.
fn ended(record: &RunRecord, task: TaskId) -> Option<Reply> {
    match &record.task(task)?.state {
        TaskState::Done(outcome) => Some(end_of(Some(outcome))),
        TaskState::Cancelled => Some(end_of(None)),
        TaskState::Lost => Some(Reply::End {
            outcome: "lost".to_owned(),
            code: None,
            signal: None,
        }),
        _ => None,
    }
}

fn known(record: &RunRecord, task: u64) -> Result<TaskId, String> {
    let id = TaskId(task);
    if record.task(id).is_some() {
        Ok(id)
    } else {
        Err(match record.task_count() {
            0 => format!("there is no task {task}: the run has no tasks yet"),
            n => format!(
                "there is no task {task}: the run's tasks are {} to {}",
                record.id_at(0).map_or(1, |t| t.0),
                record.id_at(n - 1).map_or(n as u64, |t| t.0)
            ),
        })
    }
}

/// What the run has of a task's output: what the record holds, in arrival order; when
/// it dropped some and `dir` has the last attempt's files, those files (stdout, then
/// stderr, read by the client's thread). The last attempt and its bytes per stream so
/// far: where a follow goes on from.
fn replay(
    record: &RunRecord,
    task: TaskId,
    dir: Option<&Path>,
    reply: &Responder,
) -> (u32, [u64; 2]) {
    let Some(t) = record.task(task) else {
        return (0, [0; 2]);
    };
    let last = t.last_attempt();
    let at = last.map_or((0, [0; 2]), |a| {
        (a.number, [a.stdout_bytes, a.stderr_bytes])
    });
    if t.output.dropped() > 0
        && let (Some(dir), Some(attempt)) = (dir, last)
    {
        for stream in Stream::BOTH {
            let path = stream.file_in(dir, task, attempt.number);
            reply.send_file(stream.name(), path, 0, at.1[stream.index()]);
        }
        return at;
    }
    if t.output.dropped() > 0 {
        reply.send(Reply::Output(OutputChunk::new(
            "note",
            format!(
                "(the first {} bytes of its output were not kept: the run keeps no output \
                 files)\n",
                t.output.dropped()
            )
            .as_bytes(),
        )));
    }
    for (channel, bytes) in t.output.chunks() {
        let name = match channel {
            Channel::Stdout => "stdout",
            Channel::Stderr => "stderr",
            Channel::Input => "input",
        };
        reply.send(Reply::Output(OutputChunk::new(name, bytes)));
    }
    at
}

fn add(owner: &mut dyn Owner, tasks: Vec<NewTask>) -> Result<Reply, String> {
    if tasks.is_empty() {
        return Err("nothing to add: give a command".into());
    }
    let mut specs = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.into_iter().enumerate() {
        if task.command.trim().is_empty() {
            return Err(format!(
                "task {} of the request has an empty command",
                i + 1
            ));
        }
        if task.command.contains('\0') {
            return Err(format!(
                "task {} of the request has a NUL byte in its command",
                i + 1
            ));
        }
        let mut spec = TaskSpec::shell(task.command);
        if let Some(name) = task.name {
            spec.name = name;
        }
        spec.cwd = task.cwd;
        spec.stdin = match task.stdin {
            NewStdin::None => StdinMode::Null,
            NewStdin::Interactive => StdinMode::Pipe,
            NewStdin::Text(text) => StdinMode::Preset(text.into_bytes()),
            NewStdin::Base64(encoded) => {
                use base64::Engine as _;
                StdinMode::Preset(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .map_err(|e| format!("task {} of the request: its input: {e}", i + 1))?,
                )
            }
        };
        specs.push(spec);
    }
    let shape = owner.shape();
    if !shape.takes_tasks {
        return Err("this run takes no more tasks: it was closed, or it is ending".into());
    }
    // An add larger than the limit still goes into an empty queue: it is never refused
    // for ever.
    if shape.waiting + specs.len() > shape.most_waiting && shape.waiting > 0 {
        return Ok(Reply::Full {
            waiting: shape.waiting,
        });
    }
    owner
        .add(specs)
        .map(|(first, count)| Reply::Added { first, count })
}

/// One command per task; the first refusal is the answer.
fn each_task(
    owner: &mut dyn Owner,
    tasks: &[u64],
    command: impl Fn(TaskId) -> PoolCommand,
) -> Result<Reply, String> {
    if tasks.is_empty() {
        return Err("name the tasks (their numbers, as status shows them)".into());
    }
    for &task in tasks {
        let task = known(owner.record(), task)?;
        owner.command(command(task))?;
    }
    Ok(Reply::Ok)
}

/// `INT`, `SIGINT`, `sigint` or `2`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let upper = text.trim().to_ascii_uppercase();
    if let Ok(number) = upper.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("no signal number {number}"));
    }
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| format!("no signal named {text}"))
}

fn status(record: &RunRecord, wanted: &[u64]) -> Result<Vec<TaskStatus>, String> {
    let positions: Vec<usize> = if wanted.is_empty() {
        (0..record.task_count()).collect()
    } else {
        wanted
            .iter()
            .map(|&t| {
                known(record, t).and_then(|id| record.position(id).ok_or_else(|| t.to_string()))
            })
            .collect::<Result<_, _>>()?
    };
    Ok(positions
        .into_iter()
        .filter_map(|i| record.task_at(i))
        .map(|t| task_status(&t))
        .collect())
}

fn task_status(t: &crate::model::TaskRecord) -> TaskStatus {
    let last = t.last_attempt();
    let state = match &t.state {
        TaskState::Queued => "queued",
        TaskState::Waiting(_) => "waiting",
        TaskState::Running => "running",
        TaskState::Retrying => "retrying",
        TaskState::Done(o) if o.is_success() => "succeeded",
        TaskState::Done(_) => "failed",
        TaskState::Cancelled => "cancelled",
        TaskState::Lost => "lost",
    };
    let outcome = t
        .outcome()
        .or_else(|| last.and_then(|a| a.outcome.as_ref()));
    TaskStatus {
        id: t.id.0,
        name: t.spec.name.clone(),
        command: t.spec.invocation.display_line(),
        state: state.to_owned(),
        attempts: t.attempts.len() as u32,
        slot: last.and_then(|a| a.slot),
        pid: last.and_then(|a| a.pid),
        host: last.and_then(|a| a.host.clone()),
        queued: t.queued.as_secs_f64(),
        started: last.filter(|a| a.ran()).map(|a| a.started.as_secs_f64()),
        ended: last.and_then(|a| a.ended).map(|e| e.as_secs_f64()),
        outcome: outcome.map(ToString::to_string),
        exit_code: match outcome {
            Some(Outcome::Exited(code)) => Some(*code),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_read_as_a_shell_user_writes_them() {
        assert_eq!(parse_signal("INT"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("FLY").is_err_and(|e| e.contains("FLY")));
        assert!(parse_signal("99").is_err_and(|e| e.contains("99")));
    }
}
