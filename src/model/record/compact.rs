//! The run record's tasks in the memory a million of them can afford: a task is kept
//! whole while it runs, and while it waits or once it is done, as a fixed-size row of
//! integers with its spec encoded in one shared byte store (about 80 bytes, plus its
//! command). What a row cannot say (a retry, a host, CPU samples, output still held, a
//! terminal screen) keeps the task whole. A row is made whole again on demand.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::executor::task::TaskMap;
use crate::executor::{Invocation, Outcome, TaskId, TaskSpec};

use super::run::{Attempt, TaskRecord, TaskState, Usage};
use super::tail::OutputTail;

/// No value in a `u32` field of a row.
const NONE: u32 = u32::MAX;
/// Never started, in a row's `started`.
const NEVER: u64 = u64::MAX;

/// A done task as integers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Row {
    id: TaskId,
    /// Where its spec starts in the [`SpecStore`] (past 4 GiB of specs, tasks stay
    /// whole).
    spec: u32,
    queued_us: u64,
    started_us: u64,
    ended_us: u64,
    stdout_bytes: u32,
    stderr_bytes: u32,
    pid: u32,
    slot: u32,
    /// How far back its chunk's first task is (`NONE`: not in a chunk).
    chunk_back: u32,
    code: i32,
    outcome: OutcomeKind,
    state: RowState,
    /// Its output was dropped from memory (read back from its files).
    evicted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowState {
    Queued,
    Done,
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutcomeKind {
    Exited,
    Signaled,
    Killed,
    TimedOut,
}

impl OutcomeKind {
    /// The kind and code a row keeps for `outcome`; none for one a row cannot say.
    fn of(outcome: &Outcome) -> Option<(Self, i32)> {
        Some(match outcome {
            Outcome::Exited(code) => (Self::Exited, *code),
            Outcome::Signaled(sig) => (Self::Signaled, *sig),
            Outcome::Killed => (Self::Killed, 0),
            Outcome::TimedOut => (Self::TimedOut, 0),
            _ => return None,
        })
    }
}

#[derive(Clone)]
enum Slot {
    /// With where its spec is stored, if it was a row before (it is not stored again).
    Whole(Box<TaskRecord>, Option<u64>),
    Row(Row),
}

/// Every task of a run in queue order, found by id without a map while ids follow on
/// from the first (as the executor numbers them).
#[derive(Clone, Default)]
pub(super) struct TaskStore {
    slots: Vec<Slot>,
    specs: SpecStore,
    /// Ids of `slots[..dense]` are `first_id + position`.
    first_id: u64,
    dense: usize,
    /// Positions of the tasks after the first id out of sequence.
    sparse: TaskMap<usize>,
    /// Output kept per task in memory, for tails made again from rows.
    tail_limit: usize,
}

impl std::fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskStore({} tasks)", self.slots.len())
    }
}

/// Saved as the list of whole tasks it stands for.
impl serde::Serialize for TaskStore {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq((0..self.len()).map(|i| self.at(i)))
    }
}

impl<'de> serde::Deserialize<'de> for TaskStore {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tasks = Vec::<TaskRecord>::deserialize(deserializer)?;
        let mut store = TaskStore::new(super::run::DEFAULT_TAIL_BYTES);
        for task in tasks {
            store.push(task);
        }
        Ok(store)
    }
}

impl TaskStore {
    /// Room for `more` tasks now, rather than by doubling as they come (which holds
    /// the old and the new rows at once: a third more at a million tasks).
    pub fn reserve(&mut self, more: usize) {
        self.slots.reserve_exact(more);
    }

    /// Room for about this many more bytes of commands and names, when it is known
    /// (a file read twice): the store does not double past what it needs.
    pub fn reserve_spec_bytes(&mut self, more: usize) {
        self.specs.bytes.reserve_exact(more);
    }

    pub fn new(tail_limit: usize) -> Self {
        Self {
            tail_limit,
            ..Self::default()
        }
    }

    /// Output kept per task from now on (tasks made whole later get this limit).
    pub fn set_tail_limit(&mut self, tail_limit: usize) {
        self.tail_limit = tail_limit;
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn position(&self, id: TaskId) -> Option<usize> {
        let dense =
            id.0.checked_sub(self.first_id)
                .and_then(|p| usize::try_from(p).ok())
                .filter(|&p| p < self.dense);
        dense.or_else(|| self.sparse.get(&id).copied())
    }

    pub fn push(&mut self, task: TaskRecord) {
        self.index(task.id);
        self.slots.push(Slot::Whole(Box::new(task), None));
    }

    /// Where the next task pushed, `id`, is found.
    fn index(&mut self, id: TaskId) {
        let position = self.slots.len();
        if position == 0 {
            self.first_id = id.0;
        }
        if self.dense == position && id.0 == self.first_id + position as u64 {
            self.dense += 1;
        } else {
            self.sparse.insert(id, position);
        }
    }

    /// Push a done task straight as a row (as [`Row::of`] would make it from the whole
    /// task); false, and nothing pushed, where a row cannot say it.
    pub fn push_done_shell(&mut self, task: &super::run::DoneShell<'_>) -> bool {
        let (Some((outcome, code)), Some(started_us), Some(ended_us), Ok(stdout_bytes), Ok(slot)) = (
            OutcomeKind::of(task.outcome),
            micros(task.started),
            micros(task.ended),
            u32::try_from(task.stdout_bytes),
            u32::try_from(task.slot),
        ) else {
            return false;
        };
        // Checked before the command is stored: a task refused stores nothing.
        if slot == NONE {
            return false;
        }
        let Ok(spec) = u32::try_from(self.specs.put_plain_shell(task.command)) else {
            return false;
        };
        self.index(task.id);
        self.slots.push(Slot::Row(Row {
            id: task.id,
            spec,
            // A joblog says when a job started, not when it was queued.
            queued_us: started_us,
            started_us,
            ended_us,
            stdout_bytes,
            stderr_bytes: 0,
            pid: NONE,
            slot,
            chunk_back: NONE,
            code,
            outcome,
            state: RowState::Done,
            evicted: false,
        }));
        true
    }

    pub fn get(&self, position: usize) -> Option<Cow<'_, TaskRecord>> {
        (position < self.slots.len()).then(|| self.at(position))
    }

    /// The task at `position`, which must be below [`Self::len`].
    pub fn at(&self, position: usize) -> Cow<'_, TaskRecord> {
        match &self.slots[position] {
            Slot::Whole(task, _) => Cow::Borrowed(task),
            Slot::Row(row) => Cow::Owned(self.whole_from(row)),
        }
    }

    /// The task at `position`, made whole to be changed.
    pub fn get_mut(&mut self, position: usize) -> Option<&mut TaskRecord> {
        let slot = self.slots.get_mut(position)?;
        if let Slot::Row(row) = slot {
            let whole = Self::whole_from_parts(&self.specs, self.tail_limit, row);
            *slot = Slot::Whole(Box::new(whole), Some(u64::from(row.spec)));
        }
        match slot {
            Slot::Whole(task, _) => Some(task),
            Slot::Row(_) => None,
        }
    }

    /// Put the task at `position` in the chunk that starts with `first` (a row stays
    /// one).
    pub fn set_chunk(&mut self, position: usize, first: TaskId) {
        match self.slots.get_mut(position) {
            Some(Slot::Row(row)) => match row.id.0.checked_sub(first.0).map(u32::try_from) {
                Some(Ok(back)) if back != NONE => row.chunk_back = back,
                _ => {
                    if let Some(task) = self.get_mut(position) {
                        task.chunk = Some(first);
                    }
                }
            },
            Some(Slot::Whole(task, _)) => task.chunk = Some(first),
            None => {}
        }
    }

    /// The task's state without making it whole.
    pub fn state(&self, position: usize) -> Option<Cow<'_, TaskState>> {
        match self.slots.get(position)? {
            Slot::Whole(task, _) => Some(Cow::Borrowed(&task.state)),
            Slot::Row(row) => Some(Cow::Owned(row.state())),
        }
    }

    /// The task's attempts without its spec.
    pub fn attempts(&self, position: usize) -> Cow<'_, [Attempt]> {
        match self.slots.get(position) {
            Some(Slot::Whole(task, _)) => Cow::Borrowed(&task.attempts),
            Some(Slot::Row(row)) => Cow::Owned(row.attempt().into_iter().collect()),
            None => Cow::Borrowed(&[]),
        }
    }

    /// The chunk the task went to a worker with, without making it whole.
    pub fn chunk(&self, position: usize) -> Option<TaskId> {
        match self.slots.get(position)? {
            Slot::Whole(task, _) => task.chunk,
            Slot::Row(row) => {
                (row.chunk_back != NONE).then(|| TaskId(row.id.0 - u64::from(row.chunk_back)))
            }
        }
    }

    /// What the task runs, without making it whole.
    pub fn invocation(&self, position: usize) -> Option<Cow<'_, crate::executor::Invocation>> {
        match self.slots.get(position)? {
            Slot::Whole(task, _) => Some(Cow::Borrowed(&task.spec.invocation)),
            Slot::Row(row) => Some(Cow::Owned(self.specs.invocation(u64::from(row.spec)))),
        }
    }

    /// When the task was queued, without making it whole.
    pub fn queued(&self, position: usize) -> Option<Duration> {
        match self.slots.get(position)? {
            Slot::Whole(task, _) => Some(task.queued),
            Slot::Row(row) => Some(Duration::from_micros(row.queued_us)),
        }
    }

    pub fn id(&self, position: usize) -> Option<TaskId> {
        match self.slots.get(position)? {
            Slot::Whole(task, _) => Some(task.id),
            Slot::Row(row) => Some(row.id),
        }
    }

    /// Keep a waiting or done task as a row if a row can say all of it; true if it is
    /// one now.
    pub fn compact(&mut self, position: usize) -> bool {
        let Some(slot) = self.slots.get_mut(position) else {
            return false;
        };
        let Slot::Whole(task, stored) = slot else {
            return true;
        };
        let Some(row) = Row::of(task, *stored, &mut self.specs) else {
            return false;
        };
        *slot = Slot::Row(row);
        true
    }

    fn whole_from(&self, row: &Row) -> TaskRecord {
        Self::whole_from_parts(&self.specs, self.tail_limit, row)
    }

    fn whole_from_parts(specs: &SpecStore, tail_limit: usize, row: &Row) -> TaskRecord {
        let mut output = OutputTail::new(tail_limit);
        if row.evicted {
            output.evict();
        }
        TaskRecord {
            id: row.id,
            spec: Arc::new(specs.get(u64::from(row.spec))),
            queued: Duration::from_micros(row.queued_us),
            attempts: row.attempt().into_iter().collect(),
            state: row.state(),
            stdin_open: false,
            output,
            chunk: (row.chunk_back != NONE).then(|| TaskId(row.id.0 - u64::from(row.chunk_back))),
            screen: None,
        }
    }
}

fn micros(d: Duration) -> Option<u64> {
    u64::try_from(d.as_micros()).ok().filter(|&us| us != NEVER)
}

impl Row {
    /// A row for a waiting or done task, if one can say all of it; its spec is
    /// stored unless it already is (at `stored`).
    fn of(task: &TaskRecord, stored: Option<u64>, specs: &mut SpecStore) -> Option<Self> {
        if task.screen.is_some() || task.stdin_open || task.output.held() > 0 {
            return None;
        }
        let (state, outcome, code) = match &task.state {
            TaskState::Queued => (RowState::Queued, OutcomeKind::Killed, 0),
            TaskState::Cancelled => (RowState::Cancelled, OutcomeKind::Killed, 0),
            TaskState::Done(outcome) => {
                let (kind, code) = OutcomeKind::of(outcome)?;
                (RowState::Done, kind, code)
            }
            _ => return None,
        };
        let chunk_back = match task.chunk {
            None => NONE,
            Some(first) => u32::try_from(task.id.0.checked_sub(first.0)?)
                .ok()
                .filter(|&b| b != NONE)?,
        };
        let mut row = Row {
            id: task.id,
            spec: 0,
            queued_us: micros(task.queued)?,
            started_us: NEVER,
            ended_us: 0,
            stdout_bytes: 0,
            stderr_bytes: 0,
            pid: NONE,
            slot: NONE,
            chunk_back,
            code,
            outcome,
            state,
            evicted: task.output.is_evicted(),
        };
        match task.attempts.as_slice() {
            [] => {}
            [a] => {
                let plain = a.number == 1
                    && a.host.is_none()
                    && a.command_pid.is_none()
                    && a.stdin_bytes == 0
                    && a.usage == Usage::default()
                    && a.outcome.as_ref() == task.outcome();
                if !plain || state != RowState::Done {
                    return None;
                }
                row.started_us = micros(a.started)?;
                row.ended_us = micros(a.ended?)?;
                row.stdout_bytes = u32::try_from(a.stdout_bytes).ok()?;
                row.stderr_bytes = u32::try_from(a.stderr_bytes).ok()?;
                row.pid = a
                    .pid
                    .map_or(Some(NONE), |p| Some(p).filter(|&p| p != NONE))?;
                row.slot = a
                    .slot
                    .map_or(Some(NONE), |s| u32::try_from(s).ok().filter(|&s| s != NONE))?;
            }
            _ => return None,
        }
        row.spec = u32::try_from(stored.unwrap_or_else(|| specs.put(&task.spec))).ok()?;
        Some(row)
    }

    fn outcome(&self) -> Outcome {
        match self.outcome {
            OutcomeKind::Exited => Outcome::Exited(self.code),
            OutcomeKind::Signaled => Outcome::Signaled(self.code),
            OutcomeKind::Killed => Outcome::Killed,
            OutcomeKind::TimedOut => Outcome::TimedOut,
        }
    }

    fn state(&self) -> TaskState {
        match self.state {
            RowState::Queued => TaskState::Queued,
            RowState::Done => TaskState::Done(self.outcome()),
            RowState::Cancelled => TaskState::Cancelled,
        }
    }

    fn attempt(&self) -> Option<Attempt> {
        (self.started_us != NEVER).then(|| Attempt {
            slot: (self.slot != NONE).then_some(self.slot as usize),
            pid: (self.pid != NONE).then_some(self.pid),
            ended: Some(Duration::from_micros(self.ended_us)),
            outcome: Some(self.outcome()),
            stdout_bytes: u64::from(self.stdout_bytes),
            stderr_bytes: u64::from(self.stderr_bytes),
            ..Attempt::begun(1, Duration::from_micros(self.started_us))
        })
    }
}

/// Specs of done tasks, encoded one after another in one buffer: a plain shell command
/// costs its length and two bytes.
#[derive(Clone, Default)]
struct SpecStore {
    bytes: Vec<u8>,
    /// The last spec stored and where (a retry or a repeated command is stored once).
    last: Option<(Arc<TaskSpec>, u64)>,
}

/// How a spec is encoded: a shell line with nothing else set and named by itself; a
/// name and an invocation (as JSON) with nothing else set; the whole spec as JSON.
const PLAIN_SHELL: u8 = 0;
const NAMED: u8 = 1;
const FULL: u8 = 2;
/// A built-in job named by itself (a range of them): its kind as JSON, then its label.
const BUILTIN: u8 = 3;
/// A name and a program with its arguments, nothing else set: each as bytes, no JSON (a
/// watched map records 100 000 of these, and each is read back when its task starts).
const PROGRAM: u8 = 4;

impl SpecStore {
    fn put(&mut self, spec: &Arc<TaskSpec>) -> u64 {
        if let Some((last, at)) = &self.last
            && Arc::ptr_eq(last, spec)
        {
            return *at;
        }
        let at = self.bytes.len() as u64;
        let plain = spec.is_plain();
        match &spec.invocation {
            Invocation::Shell(line) if plain && *line == spec.name => {
                self.put_plain_shell(line);
            }
            Invocation::Builtin(job) if plain && spec.invocation.is_display_line(&spec.name) => {
                self.bytes.push(BUILTIN);
                let json = serde_json::to_vec(&job.kind).unwrap_or_default();
                self.put_bytes(&json);
                self.put_bytes(job.label.as_bytes());
            }
            Invocation::Program { program, args } if plain => {
                self.bytes.push(PROGRAM);
                self.put_bytes(spec.name.as_bytes());
                self.put_bytes(program.as_bytes());
                self.put_len(args.len());
                for arg in args {
                    self.put_bytes(arg.as_bytes());
                }
            }
            invocation if plain => {
                self.bytes.push(NAMED);
                self.put_bytes(spec.name.as_bytes());
                let json = serde_json::to_vec(invocation).unwrap_or_default();
                self.put_bytes(&json);
            }
            _ => {
                self.bytes.push(FULL);
                let json = serde_json::to_vec(spec.as_ref()).unwrap_or_default();
                self.put_bytes(&json);
            }
        }
        self.last = Some((Arc::clone(spec), at));
        at
    }

    /// Store a shell command with nothing else set, named by itself.
    fn put_plain_shell(&mut self, line: &str) -> u64 {
        let at = self.bytes.len() as u64;
        self.bytes.push(PLAIN_SHELL);
        self.put_bytes(line.as_bytes());
        at
    }

    fn put_bytes(&mut self, bytes: &[u8]) {
        self.put_len(bytes.len());
        self.bytes.extend_from_slice(bytes);
    }

    fn put_len(&mut self, mut len: usize) {
        // LEB128: seven bits a byte, the high bit says more follow.
        while len >= 0x80 {
            self.bytes.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        self.bytes.push(len as u8);
    }

    fn take_len(&self, at: &mut usize) -> usize {
        let (mut len, mut shift) = (0usize, 0);
        while let Some(&b) = self.bytes.get(*at) {
            *at += 1;
            len |= usize::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        len
    }

    fn take_bytes(&self, at: &mut usize) -> &[u8] {
        let len = self.take_len(at);
        let end = at.saturating_add(len).min(self.bytes.len());
        let bytes = &self.bytes[*at..end];
        *at = end;
        bytes
    }

    fn get(&self, at: u64) -> TaskSpec {
        match self.decode(at, true) {
            Decoded::Whole(spec) => spec,
            Decoded::Plain(name, invocation) => {
                let name = name.unwrap_or_else(|| invocation.display_line());
                TaskSpec::plain(name, invocation)
            }
        }
    }

    /// What the spec at `at` runs, without its name (which a built-in job's would have
    /// to format): the timeline asks this of every task that changed.
    fn invocation(&self, at: u64) -> Invocation {
        match self.decode(at, false) {
            Decoded::Whole(spec) => spec.invocation,
            Decoded::Plain(_, invocation) => invocation,
        }
    }

    /// The spec at `at`: whole, or a plain one's invocation and (`with_name`, where it is
    /// stored) its name; a plain spec with no name stored is named by its display line.
    fn decode(&self, at: u64, with_name: bool) -> Decoded {
        let mut at = at as usize;
        let kind = self.bytes.get(at).copied();
        at += 1;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let name = |at: &mut usize| {
            let bytes = self.take_bytes(at);
            with_name.then(|| text(bytes))
        };
        match kind {
            Some(PLAIN_SHELL) => {
                let line = text(self.take_bytes(&mut at));
                Decoded::Plain(with_name.then(|| line.clone()), Invocation::Shell(line))
            }
            Some(NAMED) => {
                let name = name(&mut at);
                let invocation = serde_json::from_slice(self.take_bytes(&mut at))
                    .unwrap_or_else(|_| Invocation::Shell(String::new()));
                Decoded::Plain(name, invocation)
            }
            Some(PROGRAM) => {
                let name = name(&mut at);
                let program = text(self.take_bytes(&mut at));
                let count = self.take_len(&mut at);
                // No more arguments than bytes left: a damaged count cannot ask for more.
                let mut args =
                    Vec::with_capacity(count.min(self.bytes.len() - at.min(self.bytes.len())));
                for _ in 0..count {
                    args.push(text(self.take_bytes(&mut at)));
                }
                let invocation = Invocation::Program { program, args };
                Decoded::Plain(name, invocation)
            }
            Some(BUILTIN) => {
                let kind = serde_json::from_slice(self.take_bytes(&mut at));
                let label = text(self.take_bytes(&mut at));
                let invocation = match kind {
                    Ok(kind) => Invocation::Builtin(crate::executor::Builtin::new(kind, label)),
                    Err(_) => Invocation::Shell(String::new()),
                };
                Decoded::Plain(None, invocation)
            }
            _ => Decoded::Whole(
                serde_json::from_slice(self.take_bytes(&mut at))
                    .unwrap_or_else(|_| TaskSpec::shell(String::new())),
            ),
        }
    }
}

/// A spec read back from the store.
enum Decoded {
    Whole(TaskSpec),
    /// A plain spec: its name where it was stored and asked for, and its invocation.
    Plain(Option<String>, Invocation),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(id: u64, spec: TaskSpec, outcome: Outcome) -> TaskRecord {
        TaskRecord {
            id: TaskId(id),
            spec: Arc::new(spec),
            queued: Duration::from_micros(5),
            attempts: vec![Attempt {
                slot: Some(1),
                pid: Some(4242),
                ended: Some(Duration::from_micros(900)),
                outcome: Some(outcome.clone()),
                stdout_bytes: 12,
                ..Attempt::begun(1, Duration::from_micros(10))
            }],
            state: TaskState::Done(outcome),
            stdin_open: false,
            output: OutputTail::new(64),
            chunk: Some(TaskId(id - 1)),
            screen: None,
        }
    }

    fn same(a: &TaskRecord, b: &TaskRecord) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.spec, b.spec);
        assert_eq!(a.queued, b.queued);
        assert_eq!(a.state, b.state);
        assert_eq!(a.chunk, b.chunk);
        assert_eq!(a.attempts.len(), b.attempts.len());
        for (x, y) in a.attempts.iter().zip(&b.attempts) {
            assert_eq!(
                (x.number, x.slot, x.pid, x.started, x.ended, &x.outcome),
                (y.number, y.slot, y.pid, y.started, y.ended, &y.outcome)
            );
            assert_eq!(
                (x.stdout_bytes, x.stderr_bytes),
                (y.stdout_bytes, y.stderr_bytes)
            );
        }
    }

    #[test]
    fn a_done_task_reads_back_as_it_was() {
        let mut timed = TaskSpec::shell("sleep 9");
        timed.timeout = Some(Duration::from_secs(1));
        let job = |kind, label: &str| {
            let invocation = Invocation::Builtin(crate::executor::Builtin::new(kind, label));
            TaskSpec::plain(invocation.display_line(), invocation)
        };
        let specs = [
            TaskSpec::shell("echo 1"),
            TaskSpec::shell("echo é ünïcode").with_name("renamed"),
            TaskSpec::program("/bin/echo", ["a b", "c"]),
            TaskSpec::program("noop", Vec::<String>::new()).with_name("noop()"),
            TaskSpec::program("f", ["x".repeat(300), String::new(), "ü".into()]).with_name("f(…)"),
            timed,
            job(crate::executor::BuiltinKind::Noop, "41"),
            job(crate::executor::BuiltinKind::Print("hi {}".into()), "é"),
            job(crate::executor::BuiltinKind::Fail(3), "").with_name("named"),
        ];
        let mut store = TaskStore::new(64);
        let mut originals = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let outcome =
                [Outcome::Exited(0), Outcome::Exited(3), Outcome::Signaled(9)][i % 3].clone();
            let task = done(i as u64 + 7, spec, outcome);
            originals.push(task.clone());
            store.push(task);
            assert!(store.compact(i), "task {i} fits a row");
        }
        for (i, original) in originals.iter().enumerate() {
            same(original, &store.get(i).expect("there"));
            assert_eq!(
                store.invocation(i).as_deref(),
                Some(&original.spec.invocation),
                "what task {i} runs, read alone"
            );
            assert_eq!(store.position(original.id), Some(i));
        }
    }

    #[test]
    fn what_a_row_cannot_say_stays_whole() {
        let mut store = TaskStore::new(64);
        let mut retried = done(1, TaskSpec::shell("x"), Outcome::Exited(0));
        retried.attempts[0].number = 2;
        store.push(retried);
        let mut lost = done(2, TaskSpec::shell("x"), Outcome::Exited(0));
        lost.state = TaskState::Lost;
        store.push(lost);
        let mut spawn = done(3, TaskSpec::shell("x"), Outcome::FailedToSpawn("no".into()));
        spawn.attempts[0].outcome = Some(Outcome::FailedToSpawn("no".into()));
        store.push(spawn);
        let mut holding = done(4, TaskSpec::shell("x"), Outcome::Exited(0));
        holding
            .output
            .push(super::super::tail::Channel::Stdout, b"kept\n");
        store.push(holding);
        for i in 0..4 {
            assert!(!store.compact(i), "task {i} stays whole");
        }
        assert_eq!(store.get(1).expect("there").state, TaskState::Lost);
    }

    #[test]
    fn a_waiting_task_is_a_row_and_keeps_its_chunk() {
        let mut store = TaskStore::new(64);
        for id in 1..=3 {
            let mut task = done(
                id + 1,
                TaskSpec::shell(format!("job {id}")),
                Outcome::Exited(0),
            );
            (task.attempts, task.state, task.chunk) = (Vec::new(), TaskState::Queued, None);
            store.push(task);
            assert!(store.compact(id as usize - 1), "a waiting task fits a row");
        }
        for i in 0..3 {
            store.set_chunk(i, TaskId(2));
        }
        let third = store.get(2).expect("there");
        assert_eq!(
            (third.chunk, &third.state),
            (Some(TaskId(2)), &TaskState::Queued)
        );
        assert_eq!(third.spec.name, "job 3");
        // It starts: whole again, and done, a row again with its spec stored once.
        let stored = store.specs.bytes.len();
        let task = store.get_mut(2).expect("there");
        task.state = TaskState::Done(Outcome::Exited(0));
        task.attempts = done(4, TaskSpec::shell("x"), Outcome::Exited(0)).attempts;
        assert!(store.compact(2));
        assert_eq!(store.specs.bytes.len(), stored, "not stored again");
        assert_eq!(store.get(2).expect("there").spec.name, "job 3");
    }

    #[test]
    fn a_row_takes_64_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }

    #[test]
    fn ids_out_of_sequence_are_still_found() {
        let mut store = TaskStore::new(64);
        for id in [1, 2, 3, 10, 4] {
            store.push(done(id, TaskSpec::shell("x"), Outcome::Exited(0)));
        }
        for (i, id) in [1, 2, 3, 10, 4].into_iter().enumerate() {
            assert_eq!(store.position(TaskId(id)), Some(i));
        }
        assert_eq!(store.position(TaskId(5)), None);
    }

    #[test]
    fn a_row_made_whole_to_change_keeps_what_it_said() {
        let mut store = TaskStore::new(64);
        let task = done(1, TaskSpec::shell("echo hi"), Outcome::Exited(0));
        store.push(task.clone());
        assert!(store.compact(0));
        let whole = store.get_mut(0).expect("there");
        same(&task, whole);
        whole.state = TaskState::Queued;
        assert_eq!(*store.state(0).expect("there"), TaskState::Queued);
    }
}
