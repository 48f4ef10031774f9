//! The run journal: an append-only file in the run's folder, one JSON line per event that
//! matters, from which the run record (and so every export) is rebuilt after the fact,
//! even after poolscope was killed mid-run.
//!
//! Format, version 1 (`journal.jsonl`):
//! - line 1, a header: `{"poolscope_journal":1}`;
//! - then `{"at":NANOS,"e":EVENT}` per event: an executor [`Event`] as serde writes it,
//!   `at` in nanoseconds since the run started. Output is not in the journal (its bytes
//!   are in the run's files); each attempt's byte counts ride on its `Finished` line as
//!   `"out":[STDOUT,STDERR]`;
//! - `{"end":true}` when the run ended cleanly (the pool drained and poolscope saw it).
//!
//! Flush policy: lines are written to the OS after every event that changes a task's
//! state (started, finished, cancelled) or the pool's, so a crash of poolscope loses
//! nothing it had seen. Against a crash of the machine the file is `fdatasync`ed at most
//! once a second while anything is new: at most the last second is lost; tasks about to
//! be submitted (a plan) are synced the moment after they are written. Writing happens
//! on a thread of its own, so the window never waits for the disk.
//!
//! Loading drops a line cut off by a crash (or any line that does not parse) and says
//! which; a journal without its end marker is a run that did not end cleanly: its tasks
//! that were running are marked lost where the record stops.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::runs::RunLock;
use crate::executor::{Event, EventKind, Stream, TaskId};
use crate::model::record::run::{RunRecord, TaskState};

pub const JOURNAL_FILE: &str = "journal.jsonl";
/// 2: the common events are short arrays (`["q",…]`, `["s",…]`, `["f",…]`); a version 1
/// journal (objects only) still loads.
pub const VERSION: u32 = 2;
/// Longest time written lines wait for `fdatasync`.
const SYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A write that failed, in words that name the file.
    #[error("{0}")]
    Write(String),
    #[error("{}: not a poolscope journal (the first line is not its header)", path.display())]
    NotAJournal { path: PathBuf },
    #[error(
        "{}: journal version {found} is newer than this poolscope reads ({VERSION}); \
         update poolscope to open it",
        path.display()
    )]
    TooNew { path: PathBuf, found: u32 },
}

#[derive(Serialize, Deserialize)]
struct Header {
    poolscope_journal: u32,
    #[serde(default, skip_serializing_if = "RunAbout::is_empty")]
    about: RunAbout,
}

/// What a run was, beyond its tasks: where its list came from and how it ran, so the
/// Past runs list can name it and a resume goes on as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAbout {
    /// A task file's path, a preset's name, or the watched command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// On persistent workers (Python's `Pool`), with these settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<crate::executor::WorkerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<usize>,
    /// A watched program's pools (nothing to resume: the program ran them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub watched: bool,
}

impl RunAbout {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The `about` of the journal in `dir`, from its first line only.
    pub fn read(dir: &Path) -> Option<Self> {
        use std::io::BufRead;
        let file = std::fs::File::open(dir.join(JOURNAL_FILE)).ok()?;
        let mut first = String::new();
        std::io::Read::take(std::io::BufReader::new(file), 64 * 1024)
            .read_line(&mut first)
            .ok()?;
        serde_json::from_str::<Header>(first.trim_end())
            .ok()
            .map(|h| h.about)
    }
}

#[derive(Serialize, Deserialize)]
struct Line {
    at: u64,
    e: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    out: Option<[u64; 2]>,
    /// On a `Finished` line: the attempt's CPU time (ns) and peak memory (bytes). The
    /// samples themselves are not journaled (several a second per task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usage: Option<[u64; 2]>,
}

/// The three events a million-task run is made of, as short arrays (about 30 bytes
/// each, where the objects took 70 to 220; times in microseconds): a task queued with
/// nothing but its command set, an attempt started here, an attempt that exited by
/// itself (with its output byte counts).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Short {
    /// ("q", at, task, command): a shell command named by itself
    Queued(String, u64, u64, String),
    /// ("i", at, task, invocation): named by itself (a built-in job)
    Invoked(String, u64, u64, crate::executor::Invocation),
    /// ("n", at, task, name, invocation): with a name of its own
    Named(String, u64, u64, String, crate::executor::Invocation),
    /// ("s", at, task, attempt, slot, pid)
    Started(String, u64, u64, u32, usize, Option<u32>),
    /// ("f", at, task, attempt, exit code, stdout bytes, stderr bytes)
    Finished(String, u64, u64, u32, i32, u64, u64),
}

impl Short {
    /// The short form of `line`, if it has one.
    fn of(line: &Line) -> Option<Self> {
        let at = line.at / 1000;
        match &line.e {
            EventKind::Queued { task, spec } if spec.is_plain() => Some(match &spec.invocation {
                crate::executor::Invocation::Shell(command) if *command == spec.name => {
                    Short::Queued("q".into(), at, task.0, command.clone())
                }
                invocation if invocation.is_display_line(&spec.name) => {
                    Short::Invoked("i".into(), at, task.0, invocation.clone())
                }
                invocation => Short::Named(
                    "n".into(),
                    at,
                    task.0,
                    spec.name.clone(),
                    invocation.clone(),
                ),
            }),
            EventKind::Started {
                task,
                attempt,
                slot,
                pid,
                host: None,
            } => Some(Short::Started(
                "s".into(),
                at,
                task.0,
                *attempt,
                *slot,
                *pid,
            )),
            EventKind::Finished {
                task,
                attempt,
                outcome: crate::executor::Outcome::Exited(code),
                stdin_bytes: 0,
                will_retry: false,
            } if line.usage.is_none() => {
                let [out, err] = line.out.unwrap_or_default();
                Some(Short::Finished(
                    "f".into(),
                    at,
                    task.0,
                    *attempt,
                    *code,
                    out,
                    err,
                ))
            }
            _ => None,
        }
    }

    /// The line it stands for; `None` for an unknown tag.
    fn line(self) -> Option<Line> {
        let (at, e, out) = match self {
            Short::Queued(tag, at, task, command) if tag == "q" => (
                at,
                EventKind::Queued {
                    task: TaskId(task),
                    spec: Arc::new(crate::executor::TaskSpec::shell(command)),
                },
                None,
            ),
            Short::Invoked(tag, at, task, invocation) if tag == "i" => (
                at,
                EventKind::Queued {
                    task: TaskId(task),
                    spec: Arc::new(crate::executor::TaskSpec::plain(
                        invocation.display_line(),
                        invocation,
                    )),
                },
                None,
            ),
            Short::Named(tag, at, task, name, invocation) if tag == "n" => (
                at,
                EventKind::Queued {
                    task: TaskId(task),
                    spec: Arc::new(crate::executor::TaskSpec::plain(name, invocation)),
                },
                None,
            ),
            Short::Started(tag, at, task, attempt, slot, pid) if tag == "s" => (
                at,
                EventKind::Started {
                    task: TaskId(task),
                    attempt,
                    slot,
                    pid,
                    host: None,
                },
                None,
            ),
            Short::Finished(tag, at, task, attempt, code, out, err) if tag == "f" => (
                at,
                EventKind::Finished {
                    task: TaskId(task),
                    attempt,
                    outcome: crate::executor::Outcome::Exited(code),
                    stdin_bytes: 0,
                    will_retry: false,
                },
                Some([out, err]),
            ),
            _ => return None,
        };
        Some(Line {
            at: at.saturating_mul(1000),
            e,
            out,
            usage: None,
        })
    }
}

/// The end marker, with the run's counts (the Runs list reads them from the file's
/// tail without loading the journal).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub end: bool,
    #[serde(default)]
    pub tasks: usize,
    #[serde(default)]
    pub succeeded: usize,
    #[serde(default)]
    pub failed: usize,
    #[serde(default)]
    pub lost: usize,
}

impl End {
    pub fn of(record: &RunRecord) -> Self {
        let tally = record.tally();
        Self {
            end: true,
            tasks: record.task_count(),
            succeeded: tally.succeeded,
            failed: tally.failed,
            lost: tally.lost,
        }
    }
}

enum Msg {
    /// What was recorded since the last batch (one wake-up and one write for many).
    Batch(Vec<Msg>),
    Event(Event),
    Output {
        task: TaskId,
        attempt: u32,
        stream: Stream,
        len: u64,
    },
    /// Tasks about to be submitted: written and synced before the answer.
    Plan {
        plan: Plan,
        queued: Vec<Event>,
        reply: Sender<Result<(), String>>,
    },
    End(End),
    /// Answered once everything sent before it is in the OS's hands.
    Barrier(Sender<()>),
}

/// A plan line: the next `count` tasks from `first` are listed after it. A journal cut
/// off while listing them (poolscope killed mid-list) shows which are missing.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Plan {
    first: u64,
    count: u64,
}

#[derive(Serialize, Deserialize)]
struct PlanLine {
    plan: Plan,
}

/// Room kept on the run's disk for the journal's last lines: when the disk fills, this
/// file is deleted and what ends the run (the outcomes of tasks that end meanwhile)
/// still fits.
pub const RESERVE_FILE: &str = "journal.reserve";
const RESERVE_BYTES: u64 = 256 * 1024;

/// Tasks listed in the journal at once by [`JournalWriter::plan_list`] (one sync each).
const PLAN_BATCH: usize = 16 * 1024;

/// Writes one run's journal on a thread of its own. It holds the run's lock: while it
/// lives, no other poolscope resumes or removes the run.
pub struct JournalWriter {
    tx: Sender<Msg>,
    pending: Mutex<Vec<Msg>>,
    error: Arc<Mutex<Option<String>>>,
    /// The writer until its thread starts, with the first event handed over: the plans
    /// before it (a run's list) are written by the caller, with no thread to start and
    /// wait for between poolscope's start and its first task.
    idle: Mutex<Option<Idle>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    /// Last: released only after the writer has finished.
    _lock: RunLock,
}

impl JournalWriter {
    /// Start a new journal in the locked run folder (0600). The header is written at
    /// once, so a folder that cannot be written is an error before any task starts.
    pub fn create(lock: RunLock) -> Result<Self, JournalError> {
        Self::open(lock, None, &RunAbout::default())
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// [`Self::create`], with what the run is (named in Past runs, kept for a resume).
    pub fn create_about(lock: RunLock, about: &RunAbout) -> Result<Self, JournalError> {
        Self::open(lock, None, about)
    }

    /// Go on writing a run's journal after its first `whole_len` bytes (its whole lines;
    /// a line cut off by a crash is dropped).
    pub fn reopen(lock: RunLock, whole_len: u64) -> Result<Self, JournalError> {
        Self::open(lock, Some(whole_len), &RunAbout::default())
    }

    fn open(lock: RunLock, keep: Option<u64>, about: &RunAbout) -> Result<Self, JournalError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = lock.dir().to_owned();
        let path = dir.join(JOURNAL_FILE);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.mode(0o600).append(true);
        match keep {
            Some(_) => options.create(true),
            None => options.create_new(true),
        };
        let mut file = options.open(&path).map_err(io)?;
        if let Some(len) = keep
            && file.metadata().map_err(io)?.len() > len
        {
            file.set_len(len).map_err(io)?;
        }
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            let header = serde_json::to_string(&Header {
                poolscope_journal: VERSION,
                about: about.clone(),
            })
            .map_err(|e| io(e.into()))?;
            writeln!(file, "{header}").map_err(io)?;
        }
        let committed = file.metadata().map_err(io)?.len();
        let reserve = dir.join(RESERVE_FILE);
        reserve_room(&reserve).map_err(|source| JournalError::Io {
            path: reserve.clone(),
            source,
        })?;
        let (tx, rx) = mpsc::channel();
        let error = Arc::new(Mutex::new(None));
        let writer = Writer {
            file,
            buf: Vec::with_capacity(FLUSH_AT),
            committed,
            path: path.clone(),
            reserve: Some(reserve),
            counts: HashMap::new(),
            usage: HashMap::new(),
            planned: Vec::new(),
            urgent: false,
        };
        Ok(Self {
            tx,
            pending: Mutex::new(Vec::new()),
            error,
            idle: Mutex::new(Some(Idle {
                writer,
                rx,
                planned: false,
                broken: false,
            })),
            thread: Mutex::new(None),
            path,
            _lock: lock,
        })
    }

    /// The writer's thread, started if it was not; what it cannot start is the
    /// journal's error (the run stops as on a full disk).
    fn started(&self) -> &Sender<Msg> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(idle) = idle {
            let error = Arc::clone(&self.error);
            let spawned = std::thread::Builder::new()
                .name("poolscope-journal".into())
                .spawn(move || write_loop(idle, &error));
            match spawned {
                Ok(thread) => {
                    *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
                }
                Err(e) => keep_first(
                    &self.error,
                    format!("cannot start the journal's thread: {e}"),
                ),
            }
        }
        &self.tx
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write down the tasks about to be submitted (ids `first`, `first + 1`, …, as the
    /// pool will number them), written to the file before any of them can start (and
    /// synced right after): a resume then knows every task of the run, whatever happens
    /// to poolscope next. The pool's own `Queued` events for them are not written again.
    pub fn plan(
        &self,
        first: TaskId,
        specs: &[Arc<crate::executor::TaskSpec>],
        at: Duration,
    ) -> Result<(), JournalError> {
        self.send();
        let queued = (first.0..)
            .zip(specs)
            .map(|(id, spec)| Event {
                at,
                kind: EventKind::Queued {
                    task: TaskId(id),
                    spec: Arc::clone(spec),
                },
            })
            .collect();
        let plan = Plan {
            first: first.0,
            count: specs.len() as u64,
        };
        if let Some(idle) = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            // Nothing else is on its way to the file: written here, synced by the
            // writer's thread as it starts (while the tasks start).
            let answer = idle
                .writer
                .plan_answer(plan, queued, &mut idle.broken, &self.error);
            idle.planned |= answer.is_ok();
            return answer.map_err(JournalError::Write);
        }
        let (reply, answer) = mpsc::channel();
        let stopped =
            || JournalError::Write(format!("{}: its writer has stopped", self.path.display()));
        self.started()
            .send(Msg::Plan {
                plan,
                queued,
                reply,
            })
            .map_err(|_| stopped())?;
        answer
            .recv()
            .map_err(|_| stopped())?
            .map_err(JournalError::Write)
    }

    /// [`plan`](Self::plan) the first `count` tasks of `list` (ids from `first`), a
    /// batch at a time, each batch made as it is written: a million tasks are never all
    /// in memory. `planned` hears how many are written after each batch, and planning
    /// stops early when it answers `false`.
    pub fn plan_list(
        &self,
        first: TaskId,
        list: &dyn crate::executor::TaskMaker,
        count: usize,
        at: Duration,
        mut planned: impl FnMut(usize) -> bool,
    ) -> Result<(), JournalError> {
        let mut done = 0;
        while done < count {
            let end = count.min(done + PLAN_BATCH);
            let batch: Vec<Arc<crate::executor::TaskSpec>> =
                (done..end).map(|i| Arc::new(list.make(i))).collect();
            self.plan(TaskId(first.0 + done as u64), &batch, at)?;
            done = end;
            if !planned(done) {
                break;
            }
        }
        Ok(())
    }

    /// Journal `event` (output only as byte counts). It goes to the writer with the
    /// next [`JournalWriter::send`] (or once 256 wait).
    pub fn record(&self, event: &Event) {
        let msg = match &event.kind {
            EventKind::Output {
                task,
                attempt,
                stream,
                bytes,
            } => Msg::Output {
                task: *task,
                attempt: *attempt,
                stream: *stream,
                len: bytes.len() as u64,
            },
            _ => Msg::Event(event.clone()),
        };
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.push(msg);
            pending.len() >= 256
        };
        if full {
            self.send();
        }
    }

    /// Hand what was recorded to the writer: call when the events at hand are done.
    pub fn send(&self) {
        let batch =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if !batch.is_empty() {
            let _ = self.started().send(Msg::Batch(batch));
        }
    }

    /// Hand what was recorded to the writer and wait until it is written (to the OS, not
    /// synced): what a killed poolscope leaves in the joblog is then in the journal too.
    pub fn written(&self) {
        self.send();
        let (reply, answer) = mpsc::channel();
        if self.started().send(Msg::Barrier(reply)).is_ok() {
            let _ = answer.recv();
        }
    }

    /// The first write that failed (a full disk), naming the file: the run must stop.
    /// What was written before it is intact, and the lines after it go to the room the
    /// journal kept, as long as it lasts.
    pub fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The run ended cleanly: the end marker (with `record`'s counts) goes to the writer,
    /// which writes and syncs it on its own; [`JournalWriter::finish`] (or dropping this)
    /// waits for it, and the window's thread never does.
    pub fn end_soon(&self, record: &RunRecord) {
        self.send();
        let _ = self.started().send(Msg::End(End::of(record)));
    }

    /// Wait for the writer to have written (and, after [`JournalWriter::end_soon`],
    /// synced) everything; an error names the journal and what failed.
    pub fn finish(mut self) -> Result<(), String> {
        self.join();
        self.error().map_or(Ok(()), Err)
    }

    fn join(&mut self) {
        self.send();
        // A journal nothing was handed to still ends as one: its reserve goes.
        self.started();
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // Closing the channel ends the loop once what was sent is written.
            let (dead, _) = mpsc::channel();
            drop(std::mem::replace(&mut self.tx, dead));
            let _ = thread.join();
        }
    }
}

impl Drop for JournalWriter {
    /// Without [`JournalWriter::end_soon`] the journal has no end marker: the run reads as one
    /// that did not end cleanly.
    fn drop(&mut self) {
        self.join();
    }
}

/// Set `RESERVE_BYTES` aside in `path` (allocated, not a sparse file).
fn reserve_room(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let have = file.metadata()?.len();
    if have >= RESERVE_BYTES {
        return Ok(());
    }
    match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, RESERVE_BYTES) {
        Ok(()) => Ok(()),
        // A file system without fallocate: write the room out.
        Err(rustix::io::Errno::OPNOTSUPP) => {
            let mut file = file;
            file.write_all(&vec![0; usize::try_from(RESERVE_BYTES - have).unwrap_or(0)])?;
            file.sync_data()
        }
        Err(e) => Err(e.into()),
    }
}

/// Lines wait in memory until this many bytes (or a state change) are at hand.
const FLUSH_AT: usize = 64 * 1024;

/// A journal's writer before its thread starts.
struct Idle {
    writer: Writer,
    rx: Receiver<Msg>,
    /// A plan was written meanwhile (and is not synced yet).
    planned: bool,
    /// A plan broke the journal meanwhile: nothing more is written.
    broken: bool,
}

fn write_loop(idle: Idle, error: &Mutex<Option<String>>) {
    let Idle {
        writer,
        rx,
        planned,
        broken,
    } = idle;
    // Plans after the first are synced by a thread of their own: the writer goes on
    // writing the events that follow (a task's end, already shown to a client) while the
    // disk syncs. The first is synced here, while its tasks start: a run of one list
    // needs no such thread.
    std::thread::scope(|scope| {
        let mut plans = u64::from(planned);
        let mut tried = false;
        let mut plan_sync: Option<mpsc::Sender<()>> = None;
        let mut sync_aside = move |writer: &Writer| -> bool {
            plans += 1;
            if plans == 1 {
                return false;
            }
            if !std::mem::replace(&mut tried, true)
                && let Ok(file) = writer.file.try_clone()
            {
                let (tx, wake) = mpsc::channel::<()>();
                let path = writer.path.clone();
                plan_sync = std::thread::Builder::new()
                    .name("poolscope-journal-sync".into())
                    .spawn_scoped(scope, move || {
                        while wake.recv().is_ok() {
                            // One sync covers every plan written before it.
                            while wake.try_recv().is_ok() {}
                            if let Err(e) = file.sync_data() {
                                keep_first(error, format!("{}: {e}", path.display()));
                            }
                        }
                    })
                    .ok()
                    .map(|_| tx);
            }
            plan_sync.as_ref().is_some_and(|tx| tx.send(()).is_ok())
        };
        write_events(writer, &rx, error, (planned, broken), &mut sync_aside);
        // The sync thread ends once its channel closes: the scope waits for it.
        drop(sync_aside);
    });
}

fn write_events(
    mut writer: Writer,
    rx: &Receiver<Msg>,
    error: &Mutex<Option<String>>,
    (planned, broken): (bool, bool),
    sync_aside: &mut dyn FnMut(&Writer) -> bool,
) {
    let mut synced = Instant::now();
    let mut dirty = false;
    let mut failed = broken;
    // Whether nothing more can be written: the error is kept (the first one), and the
    // writer goes on only while the lines it holds could still be written (the reserve).
    let give_up = |writer: &Writer, result: Result<(), WriteError>| -> bool {
        let Err(e) = result else {
            return false;
        };
        keep_first(error, e.describe(&writer.path));
        !writer.buf.is_empty()
    };
    // The plans written before this thread started.
    if planned && !failed {
        let result = writer.sync();
        failed = give_up(&writer, result);
    }
    loop {
        let msg = match rx.recv_timeout(SYNC_EVERY) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => {
                if dirty && !failed {
                    let result = writer.sync();
                    failed = give_up(&writer, result);
                    dirty = false;
                    synced = Instant::now();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Msg::Plan {
            plan,
            queued,
            reply,
        } = msg
        {
            let answer = writer.plan_answer(plan, queued, &mut failed, error);
            let planned = answer.is_ok();
            let _ = reply.send(answer);
            // Synced right after the answer, while the tasks start: a poolscope killed
            // meanwhile has them in the file already (the OS holds what was written),
            // and only a crash of the machine within this moment could lose them.
            // Handed to the sync thread, or synced here if there is none.
            if planned && !sync_aside(&writer) {
                let result = writer.sync();
                failed = give_up(&writer, result);
            }
            dirty = false;
            synced = Instant::now();
            continue;
        }
        if let Msg::Barrier(reply) = msg {
            if !failed {
                let result = writer.flush();
                failed = give_up(&writer, result);
            }
            let _ = reply.send(());
            continue;
        }
        if failed {
            continue;
        }
        let result = writer.write(msg).and_then(|()| {
            // Lines reach the OS once per batch that changed a task's or the pool's state.
            if std::mem::take(&mut writer.urgent) || writer.buf.len() >= FLUSH_AT {
                writer.flush()
            } else {
                Ok(())
            }
        });
        failed = give_up(&writer, result);
        if failed {
            continue;
        }
        dirty = true;
        if synced.elapsed() >= SYNC_EVERY {
            let result = writer.sync();
            failed = give_up(&writer, result);
            dirty = false;
            synced = Instant::now();
        }
    }
    if !failed {
        let result = writer.flush();
        give_up(&writer, result);
    }
    // A clean end gives the room back; after a failure it was already used.
    if let Some(reserve) = writer.reserve.take() {
        let _ = std::fs::remove_file(reserve);
    }
}

/// Keep `why` as the journal's error, unless one came first.
fn keep_first(error: &Mutex<Option<String>>, why: String) {
    let mut slot = error.lock().unwrap_or_else(PoisonError::into_inner);
    if slot.is_none() {
        *slot = Some(why);
    }
}

fn error_text(error: &Mutex<Option<String>>) -> String {
    error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| "an earlier write failed".to_owned())
}

/// Why a plan was not written.
enum PlanError {
    /// Nothing of it is in the file; the journal goes on.
    Refused(String),
    /// The journal cannot go on.
    Broken(WriteError),
}

enum WriteError {
    Serialize(serde_json::Error),
    /// What failed, naming the file.
    Disk(String),
}

impl Writer {
    /// Write a plan, as [`JournalWriter::plan`] answers it: refused, only these tasks
    /// are (cut back out; the run goes on); a write that breaks the journal keeps its
    /// error and sets `broken`, after which nothing more is written.
    fn plan_answer(
        &mut self,
        plan: Plan,
        queued: Vec<Event>,
        broken: &mut bool,
        error: &Mutex<Option<String>>,
    ) -> Result<(), String> {
        if *broken {
            return Err(error_text(error));
        }
        match self.plan(plan, queued) {
            Ok(()) => Ok(()),
            Err(PlanError::Refused(why)) => Err(why),
            Err(PlanError::Broken(e)) => {
                keep_first(error, e.describe(&self.path));
                *broken = true;
                Err(error_text(error))
            }
        }
    }
}

impl WriteError {
    /// What failed, naming the journal.
    fn describe(self, path: &Path) -> String {
        match self {
            Self::Serialize(e) => format!("{}: {e}", path.display()),
            Self::Disk(e) => e,
        }
    }
}

impl From<serde_json::Error> for WriteError {
    fn from(e: serde_json::Error) -> Self {
        Self::Serialize(e)
    }
}

/// The writer thread's state: the file, lines not yet written, and output byte counts
/// until their attempt ends.
struct Writer {
    file: File,
    /// Whole lines not yet handed to the OS.
    buf: Vec<u8>,
    /// Bytes of the file that are whole lines (a failed write is cut back to this).
    committed: u64,
    path: PathBuf,
    /// Room set aside for the last lines, until the disk fills.
    reserve: Option<PathBuf>,
    counts: HashMap<(TaskId, u32), [u64; 2]>,
    /// Each running attempt's CPU time and peak memory so far.
    usage: HashMap<(TaskId, u32), [u64; 2]>,
    /// Task ids already written by a plan (the pool's `Queued` for them is skipped).
    planned: Vec<std::ops::Range<u64>>,
    /// Something was written that must reach the OS now.
    urgent: bool,
}

impl Writer {
    fn line(&mut self, value: &impl Serialize) -> Result<(), WriteError> {
        serde_json::to_writer(&mut self.buf, value)?;
        self.buf.push(b'\n');
        Ok(())
    }

    /// Hand the waiting lines to the OS. When the disk is full, the reserve is given up
    /// and the lines written again into its room; the error is still reported (the run
    /// must stop), but nothing recorded so far is lost.
    fn flush(&mut self) -> Result<(), WriteError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let first = match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.committed += self.buf.len() as u64;
                self.buf.clear();
                return Ok(());
            }
            Err(e) => e,
        };
        let why = format!("{}: {first}", self.path.display());
        // A partial line would tear the journal: cut back to the last whole line.
        let _ = self.file.set_len(self.committed);
        if let Some(reserve) = self.reserve.take() {
            let _ = std::fs::remove_file(reserve);
            if self.file.write_all(&self.buf).is_ok() {
                self.committed += self.buf.len() as u64;
                self.buf.clear();
            } else {
                let _ = self.file.set_len(self.committed);
            }
        }
        Err(WriteError::Disk(why))
    }

    fn sync(&mut self) -> Result<(), WriteError> {
        self.flush()?;
        self.file
            .sync_data()
            .map_err(|e| WriteError::Disk(format!("{}: {e}", self.path.display())))
    }

    /// The plan line, then each task's `Queued` line, written: all of them or none (the
    /// loop syncs them once it has answered). A plan that does not reach the disk whole
    /// is cut back out of the file (nothing refused may be run by a resume), without the
    /// reserve (it stays for the run's own events), and the writer goes on: a later plan
    /// may find room again.
    fn plan(&mut self, plan: Plan, queued: Vec<Event>) -> Result<(), PlanError> {
        // What was recorded before the plan is the run's: it stays whatever happens next.
        self.flush().map_err(PlanError::Broken)?;
        if self.reserve.is_none() {
            let reserve = self.path.with_file_name(RESERVE_FILE);
            if let Err(e) = reserve_room(&reserve) {
                let _ = std::fs::remove_file(&reserve);
                return Err(PlanError::Refused(format!("{}: {e}", reserve.display())));
            }
            self.reserve = Some(reserve);
        }
        let planned = self.planned.clone();
        let before = self.committed;
        let result = self.write_plan(plan, queued);
        if let Err(e) = result {
            self.buf.clear();
            self.planned = planned;
            self.urgent = false;
            if let Err(cut) = self.file.set_len(before) {
                // The refused lines stay in the file: the journal cannot be trusted.
                return Err(PlanError::Broken(WriteError::Disk(format!(
                    "{}: {cut}",
                    self.path.display()
                ))));
            }
            self.committed = before;
            return Err(PlanError::Refused(match e {
                WriteError::Disk(e) => e,
                WriteError::Serialize(e) => e.to_string(),
            }));
        }
        Ok(())
    }

    fn write_plan(&mut self, plan: Plan, queued: Vec<Event>) -> Result<(), WriteError> {
        // Plans follow each other (a list's batches, one add after another): one range
        // keeps the check of every Queued event short.
        match self.planned.last_mut() {
            Some(last) if last.end == plan.first => last.end += plan.count,
            _ => self.planned.push(plan.first..plan.first + plan.count),
        }
        self.line(&PlanLine { plan })?;
        for event in queued {
            self.event(event)?;
            if self.buf.len() >= FLUSH_AT {
                self.write_out()?;
            }
        }
        self.write_out()
    }

    /// Hand the waiting lines to the OS, without the reserve's help.
    fn write_out(&mut self) -> Result<(), WriteError> {
        self.file
            .write_all(&self.buf)
            .map_err(|e| WriteError::Disk(format!("{}: {e}", self.path.display())))?;
        self.committed += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn write(&mut self, msg: Msg) -> Result<(), WriteError> {
        match msg {
            Msg::Batch(batch) => batch.into_iter().try_for_each(|m| self.write(m)),
            Msg::Output {
                task,
                attempt,
                stream,
                len,
            } => {
                self.counts.entry((task, attempt)).or_default()[stream.index()] += len;
                Ok(())
            }
            Msg::End(end) => {
                self.line(&end)?;
                self.flush()?;
                self.file
                    .sync_data()
                    .map_err(|e| WriteError::Disk(format!("{}: {e}", self.path.display())))
            }
            Msg::Event(event) => {
                if let EventKind::Queued { task, .. } = &event.kind
                    && self.planned.iter().any(|r| r.contains(&task.0))
                {
                    return Ok(());
                }
                self.event(event)
            }
            // Answered by the loop, never batched.
            Msg::Plan { .. } | Msg::Barrier(_) => Ok(()),
        }
    }

    fn event(&mut self, event: Event) -> Result<(), WriteError> {
        if let EventKind::Usage { samples } = &event.kind {
            for s in samples {
                let seen = self.usage.entry((s.task, s.attempt)).or_default();
                seen[0] = seen[0].max(u64::try_from(s.cpu.as_nanos()).unwrap_or(u64::MAX));
                seen[1] = seen[1].max(s.rss);
            }
            return Ok(());
        }
        let (out, usage) = match &event.kind {
            EventKind::Finished { task, attempt, .. } => (
                Some(self.counts.remove(&(*task, *attempt)).unwrap_or_default()),
                self.usage.remove(&(*task, *attempt)),
            ),
            _ => (None, None),
        };
        self.urgent |= !matches!(
            event.kind,
            EventKind::Queued { .. }
                | EventKind::Chunk { .. }
                | EventKind::CommandStarted { .. }
                | EventKind::Worker { .. }
                | EventKind::Marker { .. }
        );
        let line = Line {
            at: u64::try_from(event.at.as_nanos()).unwrap_or(u64::MAX),
            e: event.kind,
            out,
            usage,
        };
        match Short::of(&line) {
            Some(short) => self.line(&short),
            None => self.line(&line),
        }
    }
}

/// A run rebuilt from its journal.
pub struct Loaded {
    pub record: RunRecord,
    /// The journal's end marker is there: the run ended cleanly.
    pub clean: bool,
    /// Lines that were dropped: cut off by a crash, or not readable (line numbers and
    /// why).
    pub dropped: Vec<String>,
    /// Bytes of the file that are whole, readable lines (a resume appends after them).
    pub whole_len: u64,
    /// The `Lost` events applied because the run did not end cleanly (a resume writes
    /// them to the journal before its own).
    pub lost_events: Vec<Event>,
    /// Tasks the run planned that its journal does not list (it stopped while listing
    /// them): nobody can say what they were, so a resume cannot run them.
    pub unaccounted: u64,
    /// What the run was (its source, its mode).
    pub about: RunAbout,
}

impl Loaded {
    /// Tasks that ran and were running when the record stopped.
    pub fn lost(&self) -> usize {
        self.record.tally().lost
    }
}

/// Rebuild the run in `dir` from its journal. A run that did not end cleanly has its
/// running attempts marked lost at the last moment recorded.
pub fn load(dir: &Path) -> Result<Loaded, JournalError> {
    load_following(dir, |_| false)
}

/// Like [`load`], but the attempts of the tasks `elsewhere` says are still running where
/// they run (a cluster) are to be followed again: they stay open, not lost.
pub fn load_following(
    dir: &Path,
    elsewhere: impl Fn(crate::executor::TaskId) -> bool,
) -> Result<Loaded, JournalError> {
    let path = dir.join(JOURNAL_FILE);
    let text = std::fs::read(&path).map_err(|source| JournalError::Io {
        path: path.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&text);
    let mut lines = text.split_inclusive('\n');
    let header: Option<Header> = lines
        .next()
        .and_then(|l| serde_json::from_str(l.trim_end()).ok());
    let Some(header) = header else {
        return Err(JournalError::NotAJournal { path });
    };
    if header.poolscope_journal > VERSION {
        return Err(JournalError::TooNew {
            path,
            found: header.poolscope_journal,
        });
    }
    let mut record = RunRecord::without_output();
    let mut clean = false;
    let mut planned = Vec::new();
    let mut dropped = Vec::new();
    let mut whole_len = text.find('\n').map_or(0, |i| i + 1) as u64;
    for (i, raw) in lines.enumerate() {
        let number = i + 2;
        if !raw.ends_with('\n') {
            dropped.push(format!(
                "line {number} was cut off (poolscope stopped while writing it): dropped"
            ));
            break;
        }
        let line = raw.trim_end();
        if line.is_empty() {
            whole_len += raw.len() as u64;
            continue;
        }
        if line.starts_with("{\"end\"")
            && let Ok(end) = serde_json::from_str::<End>(line)
        {
            clean = end.end;
            whole_len += raw.len() as u64;
            continue;
        }
        if line.starts_with("{\"plan\"")
            && let Ok(PlanLine { plan }) = serde_json::from_str::<PlanLine>(line)
        {
            planned.push(plan.first..plan.first.saturating_add(plan.count));
            whole_len += raw.len() as u64;
            continue;
        }
        match event_line(line) {
            Ok(entry) => {
                // A resumed run goes on after an end marker.
                clean = false;
                if let (EventKind::Finished { task, attempt, .. }, Some([o, e])) =
                    (&entry.e, entry.out)
                {
                    record.count_output(*task, *attempt, o, e);
                }
                if let (EventKind::Finished { task, attempt, .. }, Some([cpu, peak])) =
                    (&entry.e, entry.usage)
                {
                    record.set_usage(*task, *attempt, Duration::from_nanos(cpu), peak);
                }
                record.apply(&Event {
                    at: Duration::from_nanos(entry.at),
                    kind: entry.e,
                });
            }
            Err(e) => dropped.push(format!("line {number} does not read ({e}): dropped")),
        }
        whole_len += raw.len() as u64;
    }
    let lost_events = if clean {
        Vec::new()
    } else {
        let mut lost = lost_events(&record);
        lost.retain(|e| !matches!(e.kind, EventKind::Lost { task, .. } if elsewhere(task)));
        lost
    };
    for event in &lost_events {
        record.apply(event);
    }
    // Planned tasks are listed one by one after their plan line: those missing were
    // never written down (poolscope stopped while listing them) and cannot be run again.
    let unaccounted = planned
        .into_iter()
        .flatten()
        .filter(|&id| record.task(TaskId(id)).is_none())
        .count() as u64;
    Ok(Loaded {
        record,
        clean,
        dropped,
        whole_len,
        lost_events,
        unaccounted,
        about: header.about,
    })
}

/// An event's line, short (an array) or whole (an object).
fn event_line(line: &str) -> Result<Line, serde_json::Error> {
    if line.starts_with('[') {
        serde_json::from_str::<Short>(line).and_then(|short| {
            short
                .line()
                .ok_or_else(|| serde::de::Error::custom("an unknown short line"))
        })
    } else {
        serde_json::from_str::<Line>(line)
    }
}

/// The events that close a record that stopped mid-run: each running attempt is lost at
/// the last moment recorded.
pub fn lost_events(record: &RunRecord) -> Vec<Event> {
    let at = record.last_event;
    record
        .tasks()
        .filter(|t| matches!(t.state, TaskState::Running | TaskState::Waiting(_)))
        .filter_map(|t| t.attempts.last().map(|a| (t.id, a.number)))
        .map(|(task, attempt)| Event {
            at,
            kind: EventKind::Lost { task, attempt },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{Outcome, TaskSpec};

    fn event(ms: u64, kind: EventKind) -> Event {
        Event {
            at: Duration::from_millis(ms),
            kind,
        }
    }

    /// A journal of two tasks: 1 finished, 2 still running.
    fn write_run(dir: &Path) {
        let lock = RunLock::acquire(dir).expect("lock");
        let journal = JournalWriter::create(lock).expect("journal");
        journal.record(&event(
            0,
            EventKind::PoolStarted {
                wall_clock: std::time::SystemTime::now(),
                size: 2,
            },
        ));
        for i in 1..=2 {
            journal.record(&event(
                0,
                EventKind::Queued {
                    task: TaskId(i),
                    spec: Arc::new(TaskSpec::shell(format!("echo {i}"))),
                },
            ));
            journal.record(&event(
                1,
                EventKind::Started {
                    task: TaskId(i),
                    attempt: 1,
                    slot: 0,
                    pid: Some(100),
                    host: None,
                },
            ));
        }
        journal.record(&event(
            2,
            EventKind::Output {
                task: TaskId(1),
                attempt: 1,
                stream: Stream::Stdout,
                bytes: b"1\n".to_vec(),
            },
        ));
        journal.record(&event(
            3,
            EventKind::Finished {
                task: TaskId(1),
                attempt: 1,
                outcome: Outcome::Exited(0),
                stdin_bytes: 0,
                will_retry: false,
            },
        ));
        drop(journal); // no end marker: poolscope stopped here
    }

    #[test]
    fn a_run_that_stopped_loads_with_its_running_task_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_run(dir.path());
        let loaded = load(dir.path()).expect("load");
        assert!(!loaded.clean);
        assert!(loaded.dropped.is_empty());
        assert_eq!(loaded.record.succeeded(), 1);
        assert_eq!(loaded.lost(), 1);
        let first = loaded.record.attempt(TaskId(1), 1).expect("attempt");
        assert_eq!(first.stdout_bytes, 2, "byte counts come back");
        let lost = loaded.record.task(TaskId(2)).expect("task 2");
        assert_eq!(lost.state, TaskState::Lost);
        assert_eq!(lost.attempts[0].ended, Some(Duration::from_millis(3)));
    }

    #[test]
    fn common_events_take_short_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_run(dir.path());
        let text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).expect("read");
        let short: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
        // Two queued, two started, one finished.
        assert_eq!(short.len(), 5, "{text}");
        assert!(short.iter().all(|l| l.len() <= 40), "{short:?}");
        assert!(text.contains(r#"["f",3000,1,1,0,2,0]"#), "{text}");
    }

    #[test]
    fn a_version_1_journal_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lines = [
            r#"{"poolscope_journal":1,"about":{"source":"commands from stdin"}}"#,
            r#"{"at":0,"e":{"Queued":{"task":1,"spec":{"name":"echo 1","invocation":{"Shell":"echo 1"},"cwd":null,"env":[],"stdin":"Null","timeout":null,"pty":false,"background":"wait","own_process":false}}}}"#,
            r#"{"at":0,"e":{"PoolStarted":{"wall_clock":{"secs_since_epoch":1796279378,"nanos_since_epoch":543174545},"size":2}}}"#,
            r#"{"at":4682403,"e":{"Started":{"task":1,"attempt":1,"slot":0,"pid":3529}}}"#,
            r#"{"at":6498549,"e":{"Finished":{"task":1,"attempt":1,"outcome":{"Exited":0},"stdin_bytes":0,"will_retry":false}},"out":[2,0]}"#,
            r#"{"at":7603117,"e":"Drained"}"#,
            r#"{"end":true,"tasks":1,"succeeded":1,"failed":0,"lost":0}"#,
        ];
        std::fs::write(dir.path().join(JOURNAL_FILE), lines.join("\n") + "\n").expect("write");
        let loaded = load(dir.path()).expect("load");
        assert!(
            loaded.clean && loaded.dropped.is_empty(),
            "{:?}",
            loaded.dropped
        );
        assert_eq!(loaded.record.succeeded(), 1);
        let task = loaded.record.task(TaskId(1)).expect("task 1");
        assert_eq!(task.spec.name, "echo 1");
        assert_eq!(task.attempts[0].pid, Some(3529));
        assert_eq!(task.attempts[0].stdout_bytes, 2);
    }

    #[test]
    fn a_journal_torn_mid_record_loads_and_says_what_it_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_run(dir.path());
        let path = dir.path().join(JOURNAL_FILE);
        let text = std::fs::read(&path).expect("read");
        // Cut the last record (task 1's end) in half.
        let last_start = text[..text.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .expect("lines")
            + 1;
        let cut = last_start + (text.len() - last_start) / 2;
        std::fs::write(&path, &text[..cut]).expect("write");
        let loaded = load(dir.path()).expect("a torn journal still loads");
        assert_eq!(loaded.dropped.len(), 1, "{:?}", loaded.dropped);
        assert!(
            loaded.dropped[0].contains("cut off"),
            "{:?}",
            loaded.dropped
        );
        assert_eq!(loaded.whole_len, last_start as u64);
        // Task 1's end was in the torn record: both were running when the record stops.
        assert_eq!(loaded.lost(), 2);
    }

    #[test]
    fn a_newer_journal_or_another_file_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(JOURNAL_FILE);
        std::fs::write(&path, "{\"poolscope_journal\":99}\n").expect("write");
        let err = load(dir.path()).err().expect("too new");
        assert!(err.to_string().contains("version 99 is newer"), "{err}");
        std::fs::write(&path, "hello\n").expect("write");
        let err = load(dir.path()).err().expect("not a journal");
        assert!(err.to_string().contains("not a poolscope journal"), "{err}");
    }

    #[test]
    fn a_full_disk_is_an_error_before_any_task_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/dev/full", dir.path().join(JOURNAL_FILE)).expect("link");
        let lock = RunLock::acquire(dir.path()).expect("lock");
        let err = JournalWriter::reopen(lock, 0).err().expect("no space");
        assert!(err.to_string().contains("No space left"), "{err}");
    }

    #[test]
    fn planned_tasks_are_on_disk_before_the_answer_and_not_written_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal =
            JournalWriter::create(RunLock::acquire(dir.path()).expect("lock")).expect("journal");
        let specs: Vec<Arc<TaskSpec>> = (1..=3)
            .map(|i| Arc::new(TaskSpec::shell(format!("echo {i}"))))
            .collect();
        journal
            .plan(TaskId(1), &specs, Duration::ZERO)
            .expect("plan");
        // In the file before the answer: a reader (a resume after a crash) sees them all now.
        let loaded = load(dir.path()).expect("load");
        assert_eq!(loaded.record.task_count(), 3);
        assert_eq!(loaded.unaccounted, 0);
        // The pool's own Queued events for them are not written again.
        for (i, spec) in (1..).zip(&specs) {
            journal.record(&event(
                1,
                EventKind::Queued {
                    task: TaskId(i),
                    spec: Arc::clone(spec),
                },
            ));
        }
        drop(journal);
        let loaded = load(dir.path()).expect("load");
        assert_eq!(loaded.record.task_count(), 3, "each task listed once");
        assert!(
            !dir.path().join(RESERVE_FILE).exists(),
            "the reserve is given back"
        );
    }

    #[test]
    fn a_plan_cut_off_by_a_crash_says_how_many_tasks_are_unaccounted_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal =
            JournalWriter::create(RunLock::acquire(dir.path()).expect("lock")).expect("journal");
        let specs: Vec<Arc<TaskSpec>> = (1..=5)
            .map(|i| Arc::new(TaskSpec::shell(format!("echo {i}"))))
            .collect();
        journal
            .plan(TaskId(1), &specs, Duration::ZERO)
            .expect("plan");
        drop(journal);
        // Cut the file after the third task's line, as a SIGKILL mid-list would.
        let path = dir.path().join(JOURNAL_FILE);
        let text = std::fs::read_to_string(&path).expect("read");
        let kept: String = text.split_inclusive('\n').take(2 + 3).collect();
        std::fs::write(&path, kept).expect("write");
        let loaded = load(dir.path()).expect("load");
        assert_eq!(loaded.record.task_count(), 3);
        assert_eq!(loaded.unaccounted, 2);
    }

    #[test]
    fn a_live_runs_journal_cannot_be_opened_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _journal =
            JournalWriter::create(RunLock::acquire(dir.path()).expect("lock")).expect("journal");
        let err = RunLock::acquire(dir.path()).expect_err("the run is live");
        assert!(err.to_string().contains("in use by poolscope"), "{err}");
    }
}
