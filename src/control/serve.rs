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
use super::server::{Incoming, Responder, Server, Wake};

/// Output bytes a follower may fall behind by before it is dropped (its client reads
/// slower than the task prints): the run never holds more for a slow reader.
const MAX_BEHIND: usize = 64 << 20;
/// Most bytes of each stream `log` reads back from an output file.
const MAX_LOG_FROM_FILE: u64 = 64 << 20;

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
}

/// How an owner's pool stands.
#[derive(Clone, Debug)]
pub struct Shape {
    pub size: usize,
    pub mode: &'static str,
    pub takes_tasks: bool,
}

impl Shape {
    /// The mode as `ls` names it: a cluster's, persistent workers', or a process each.
    pub fn mode_of(slurm: bool, workers: bool) -> &'static str {
        if slurm {
            "slurm"
        } else if workers {
            "workers"
        } else {
            "processes"
        }
    }
}

/// A live run's socket and the clients following its tasks.
pub struct Control {
    server: Server,
    incoming: Receiver<Incoming>,
    followers: HashMap<TaskId, Vec<Responder>>,
    /// `window` or `headless`.
    place: &'static str,
    dir: PathBuf,
}

impl Control {
    /// Listen in the run's folder `dir`.
    pub fn start(dir: &Path, place: &'static str, wake: Wake) -> std::io::Result<Self> {
        let (server, incoming) = Server::start(dir, wake)?;
        Ok(Self {
            server,
            incoming,
            followers: HashMap::new(),
            place,
            dir: dir.to_owned(),
        })
    }

    pub fn socket(&self) -> &Path {
        self.server.path()
    }

    /// Answer every request waiting; whether there were any.
    pub fn serve(&mut self, owner: &mut dyn Owner) -> bool {
        let mut any = false;
        while let Ok(Incoming { request, reply }) = self.incoming.try_recv() {
            any = true;
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
                stream,
                bytes,
                ..
            } => {
                let Some(followers) = self.followers.get_mut(task) else {
                    return;
                };
                let name = stream_name(*stream);
                followers.retain(|f| {
                    if f.behind() > MAX_BEHIND {
                        f.send(Reply::Error(format!(
                            "this client fell {} MiB behind the task's output and was dropped",
                            MAX_BEHIND >> 20
                        )));
                        return false;
                    }
                    f.send(Reply::Output(OutputChunk::new(name, bytes)))
                });
            }
            EventKind::Finished {
                task,
                outcome,
                will_retry: false,
                ..
            } => {
                if let Some(followers) = self.followers.remove(task) {
                    for f in followers {
                        f.send(end_of(Some(outcome)));
                    }
                }
            }
            EventKind::Cancelled { task } => {
                if let Some(followers) = self.followers.remove(task) {
                    for f in followers {
                        f.send(end_of(None));
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
                match known(record, task) {
                    Ok(task) => {
                        replay(record, task, dir.as_deref(), &reply);
                        Ok(ended(record, task).unwrap_or(Reply::Ok))
                    }
                    Err(e) => Err(e),
                }
            }
            Request::Follow { task } => {
                let record = owner.record();
                match known(record, task) {
                    Ok(task) => {
                        replay(record, task, None, &reply);
                        if let Some(end) = ended(record, task) {
                            Ok(end)
                        } else {
                            self.followers.entry(task).or_default().push(reply);
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

fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
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

/// What the record holds of a task's output, in arrival order; when it dropped some
/// and `dir` has the attempt's files, the files instead (stdout, then stderr).
fn replay(record: &RunRecord, task: TaskId, dir: Option<&Path>, reply: &Responder) {
    let Some(t) = record.task(task) else {
        return;
    };
    if t.output.dropped() > 0
        && let (Some(dir), Some(attempt)) = (dir, t.last_attempt())
    {
        for stream in Stream::BOTH {
            let path = stream.file_in(dir, task, attempt.number);
            if let Some(bytes) = read_end(&path, MAX_LOG_FROM_FILE) {
                for piece in bytes.chunks(1 << 20) {
                    reply.send(Reply::Output(OutputChunk::new(stream_name(stream), piece)));
                }
            }
        }
        return;
    }
    if t.output.dropped() > 0 {
        reply.send(Reply::Output(OutputChunk::new(
            "note",
            format!(
                "(the first {} bytes of its output were not kept)\n",
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
}

/// The last `limit` bytes of a file, if it can be read.
fn read_end(path: &Path, limit: u64) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(limit))).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
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
        };
        specs.push(spec);
    }
    if !owner.shape().takes_tasks {
        return Err("this run takes no more tasks: it was closed, or it is ending".into());
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
