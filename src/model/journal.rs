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
//! once a second while anything is new: at most the last second is lost. Writing happens
//! on a thread of its own, so the window never waits for the disk.
//!
//! Loading drops a line cut off by a crash (or any line that does not parse) and says
//! which; a journal without its end marker is a run that did not end cleanly: its tasks
//! that were running are marked lost where the record stops.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::run::{RunRecord, TaskState};
use crate::executor::{Event, EventKind, Stream, TaskId};

pub const JOURNAL_FILE: &str = "journal.jsonl";
pub const VERSION: u32 = 1;
/// Longest time written lines wait for `fdatasync`.
const SYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a poolscope journal (the first line is not its header)")]
    NotAJournal { path: PathBuf },
    #[error(
        "{path}: journal version {found} is newer than this poolscope reads ({VERSION}); \
         update poolscope to open it"
    )]
    TooNew { path: PathBuf, found: u32 },
}

#[derive(Serialize, Deserialize)]
struct Header {
    poolscope_journal: u32,
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
            tasks: record.tasks.len(),
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
    End(End),
}

/// Writes one run's journal on a thread of its own.
pub struct JournalWriter {
    tx: Sender<Msg>,
    pending: Mutex<Vec<Msg>>,
    error: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl JournalWriter {
    /// Start the journal in `dir` (a new file, 0600, or appended to with `append`). The
    /// header is written at once, so a folder that cannot be written is an error before
    /// any task starts.
    pub fn create(dir: &Path, append: bool) -> Result<Self, JournalError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(JOURNAL_FILE);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.mode(0o600);
        if append {
            options.append(true).create(true);
        } else {
            options.write(true).create_new(true);
        }
        let mut file = options.open(&path).map_err(io)?;
        if !append || file.metadata().map_err(io)?.len() == 0 {
            let header = serde_json::to_string(&Header {
                poolscope_journal: VERSION,
            })
            .map_err(|e| io(e.into()))?;
            writeln!(file, "{header}").map_err(io)?;
        }
        let (tx, rx) = mpsc::channel();
        let error = Arc::new(Mutex::new(None));
        let thread_error = Arc::clone(&error);
        let thread = std::thread::Builder::new()
            .name("poolscope-journal".into())
            .spawn(move || write_loop(file, &rx, &thread_error))
            .map_err(io)?;
        Ok(Self {
            tx,
            pending: Mutex::new(Vec::new()),
            error,
            thread: Some(thread),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
            let _ = self.tx.send(Msg::Batch(batch));
        }
    }

    /// The first write that failed (a full disk): what was written before it is intact.
    pub fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The run ended cleanly: write the end marker (with `record`'s counts), sync, and
    /// wait for the writer.
    pub fn end(mut self, record: &RunRecord) -> Result<(), String> {
        self.send();
        let _ = self.tx.send(Msg::End(End::of(record)));
        self.join();
        self.error().map_or(Ok(()), Err)
    }

    /// [`JournalWriter::end`] without waiting (the window's thread never waits for the
    /// disk): the writer finishes on its own, and dropping this waits for it.
    pub fn end_soon(&self, record: &RunRecord) {
        self.send();
        let _ = self.tx.send(Msg::End(End::of(record)));
    }

    fn join(&mut self) {
        self.send();
        if let Some(thread) = self.thread.take() {
            // Closing the channel ends the loop once what was sent is written.
            let (dead, _) = mpsc::channel();
            drop(std::mem::replace(&mut self.tx, dead));
            let _ = thread.join();
        }
    }
}

impl Drop for JournalWriter {
    /// Without [`JournalWriter::end`] the journal has no end marker: the run reads as one
    /// that did not end cleanly.
    fn drop(&mut self) {
        self.join();
    }
}

fn write_loop(file: File, rx: &Receiver<Msg>, error: &Mutex<Option<String>>) {
    let mut writer = Writer {
        out: BufWriter::with_capacity(64 * 1024, file),
        counts: HashMap::new(),
        usage: HashMap::new(),
        urgent: false,
    };
    let mut synced = Instant::now();
    let mut dirty = false;
    let mut failed = false;
    loop {
        let msg = match rx.recv_timeout(SYNC_EVERY) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => {
                if dirty && !failed {
                    failed |= sync(&mut writer.out, error);
                    dirty = false;
                    synced = Instant::now();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if failed {
            continue;
        }
        let result = writer.write(msg).and_then(|()| {
            // Lines reach the OS once per batch that changed a task's or the pool's state.
            if std::mem::take(&mut writer.urgent) {
                writer.out.flush()
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            *error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
            failed = true;
            continue;
        }
        dirty = true;
        if synced.elapsed() >= SYNC_EVERY {
            failed |= sync(&mut writer.out, error);
            dirty = false;
            synced = Instant::now();
        }
    }
    if !failed {
        let _ = writer.out.flush();
    }
}

/// The writer thread's state: the file, and output byte counts until their attempt ends.
struct Writer {
    out: BufWriter<File>,
    counts: HashMap<(TaskId, u32), [u64; 2]>,
    /// Each running attempt's CPU time and peak memory so far.
    usage: HashMap<(TaskId, u32), [u64; 2]>,
    /// Something was written that must reach the OS now.
    urgent: bool,
}

impl Writer {
    fn write(&mut self, msg: Msg) -> std::io::Result<()> {
        match msg {
            Msg::Batch(batch) => batch.into_iter().try_for_each(|m| self.write(m)),
            Msg::Output {
                task,
                attempt,
                stream,
                len,
            } => {
                self.counts.entry((task, attempt)).or_default()
                    [usize::from(stream == Stream::Stderr)] += len;
                Ok(())
            }
            Msg::End(end) => {
                let line = serde_json::to_string(&end)?;
                writeln!(self.out, "{line}")?;
                self.out.flush()?;
                self.out.get_ref().sync_data()
            }
            Msg::Event(event) => {
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
                let text = serde_json::to_string(&line)?;
                writeln!(self.out, "{text}")
            }
        }
    }
}

/// Flush and `fdatasync`; whether it failed (the error is kept).
fn sync(out: &mut BufWriter<File>, error: &Mutex<Option<String>>) -> bool {
    match out.flush().and_then(|()| out.get_ref().sync_data()) {
        Ok(()) => false,
        Err(e) => {
            *error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
            true
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
        if let Ok(end) = serde_json::from_str::<End>(line) {
            clean = end.end;
            whole_len += raw.len() as u64;
            continue;
        }
        match serde_json::from_str::<Line>(line) {
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
    Ok(Loaded {
        record,
        clean,
        dropped,
        whole_len,
        lost_events,
    })
}

/// The events that close a record that stopped mid-run: each running attempt is lost at
/// the last moment recorded.
pub fn lost_events(record: &RunRecord) -> Vec<Event> {
    let at = record.last_event;
    record
        .tasks
        .iter()
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
        let journal = JournalWriter::create(dir, false).expect("journal");
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
        let err = JournalWriter::create(dir.path(), true)
            .err()
            .expect("no space");
        assert!(err.to_string().contains("No space left"), "{err}");
    }
}
