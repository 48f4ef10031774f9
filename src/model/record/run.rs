//! The record of a run, built only from executor events, so the GUI, the CLI and the
//! exports all see the same facts.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::executor::{Event, EventKind, Outcome, Stream, TaskId, TaskSpec};

use super::compact::TaskStore;
use super::stats::Level;
use super::tail::{Channel, OutputTail};

/// Default bytes of output kept in memory per task (the full output is on disk).
pub const DEFAULT_TAIL_BYTES: usize = 4 * 1024 * 1024;
/// Default bytes of output kept in memory for all tasks together: past it, finished
/// tasks' tails are dropped first (oldest first; they can be read back from their
/// output files), then the growing task's own.
pub const DEFAULT_TAIL_BUDGET: usize = 256 * 1024 * 1024;
/// Most finished tasks whose output tails are held in memory (the oldest go first; the
/// output files keep them), so a long run's finished tasks stay compact.
pub const MAX_HELD_TAILS: usize = 50_000;

/// A task as the record gives it out: borrowed while the record holds it whole, made
/// from its compact form otherwise.
pub type TaskRef<'a> = Cow<'a, TaskRecord>;

/// One attempt to run a task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub slot: Option<usize>,
    pub pid: Option<u32>,
    /// The machine it ran on, when not this one (a cluster node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// On a persistent worker, the process of the external command it ran for the task.
    #[serde(default)]
    pub command_pid: Option<u32>,
    pub started: Duration,
    pub ended: Option<Duration>,
    pub outcome: Option<Outcome>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub stdin_bytes: u64,
    /// What it cost, as sampled while it ran.
    #[serde(default)]
    pub usage: Usage,
}

/// An attempt's CPU time and memory, from the usage samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time of its process group, at the last sample.
    pub cpu: Duration,
    /// The most resident memory seen, in bytes.
    pub peak_rss: u64,
    /// (sample time, cores in use since the sample before): its CPU share over time.
    pub shares: Vec<(Duration, f32)>,
}

impl Usage {
    /// The share of one core it used over `runtime` (1.0: a whole core).
    pub fn mean_share(&self, runtime: Duration) -> f64 {
        if runtime.is_zero() {
            0.0
        } else {
            self.cpu.as_secs_f64() / runtime.as_secs_f64()
        }
    }
}

impl Attempt {
    /// Attempt `number`, begun at `started`: nowhere yet, nothing counted.
    pub(crate) fn begun(number: u32, started: Duration) -> Self {
        Self {
            number,
            slot: None,
            pid: None,
            host: None,
            command_pid: None,
            started,
            ended: None,
            outcome: None,
            stdout_bytes: 0,
            stderr_bytes: 0,
            stdin_bytes: 0,
            usage: Usage::default(),
        }
    }

    /// Whether a process really ran (it had a slot); false for a failed start.
    pub fn ran(&self) -> bool {
        self.slot.is_some()
    }

    pub fn runtime(&self, now: Duration) -> Duration {
        self.ended.unwrap_or(now).saturating_sub(self.started)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    Queued,
    /// Handed to the backend, not running yet (a cluster queue's state, e.g. `PENDING`).
    Waiting(String),
    Running,
    /// Between a failed attempt and its retry.
    Retrying,
    Done(Outcome),
    /// Never ran: the pool was terminated or halted first.
    Cancelled,
    /// Was running when poolscope's record of the run stopped (poolscope was killed or
    /// crashed): neither failed nor succeeded. Only a recovered run has such tasks.
    Lost,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub spec: Arc<TaskSpec>,
    pub queued: Duration,
    pub attempts: Vec<Attempt>,
    pub state: TaskState,
    pub stdin_open: bool,
    pub output: OutputTail,
    /// The first task of the chunk it went to a worker with (a map's chunk), if any.
    #[serde(default)]
    pub chunk: Option<TaskId>,
    /// A terminal task's screen, once its output draws on the screen (`top`).
    #[serde(skip)]
    pub screen: Option<crate::model::terminal::screen::TermScreen>,
}

impl TaskRecord {
    pub fn last_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// Attempt `number` (the latest ones are searched first: they are the ones that
    /// change).
    fn attempt_mut(&mut self, number: u32) -> Option<&mut Attempt> {
        self.attempts.iter_mut().rev().find(|a| a.number == number)
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.state {
            TaskState::Done(o) => Some(o),
            _ => None,
        }
    }
}

/// Add an attempt with room for exactly it: a `Vec`'s first push reserves four, which
/// for a million finished tasks was 600 MB of attempts never made.
fn push_attempt(attempts: &mut Vec<Attempt>, attempt: Attempt) {
    attempts.reserve_exact(1);
    attempts.push(attempt);
}

/// Where the pool is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolPhase {
    Running,
    Paused,
    /// Closed: accepts no more tasks, the queue drains.
    Closed,
    Finished,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub wall_clock_start: Option<SystemTime>,
    /// (when, size): the pool size over time.
    pub pool_sizes: Vec<(Duration, usize)>,
    pub phase: PoolPhase,
    /// In queue order, done ones compact; read through [`RunRecord::tasks`] and
    /// [`RunRecord::task`].
    tasks: TaskStore,
    /// (task, attempt number) in completion order: the joblog's order.
    completions: Completions,
    pub last_event: Duration,
    /// Every task's output, whole lines in arrival order (GNU parallel's `--tag` view).
    #[serde(skip)]
    pub interleaved: Interleaved,
    /// Bumped by every event that changes tasks or attempts (not by output), so views
    /// can cache what they derive from the record.
    #[serde(default)]
    pub revision: u64,
    /// The executor itself failed (every task was killed): why.
    #[serde(default)]
    pub failure: Option<String>,
    /// Persistent workers (worker-pool mode), in start order.
    #[serde(default)]
    pub workers: Vec<WorkerLife>,
    /// Moments of the pool as a whole (a watched program's `close()`, `join()`).
    #[serde(default)]
    pub markers: Vec<(Duration, String)>,
    /// Cores in use by the pool's tasks at each usage sample (the concurrency strip's
    /// second line).
    #[serde(default)]
    pub cpu_in_use: Vec<(Duration, f32)>,
    tail_bytes: usize,
    /// Most output bytes held in all tails together.
    #[serde(skip, default = "default_budget")]
    tail_budget: usize,
    #[serde(skip)]
    tails_held: usize,
    /// Finished tasks whose tails are held, oldest first: the first to drop.
    #[serde(skip)]
    evictable: std::collections::VecDeque<TaskId>,
    /// Tasks queued or running (not done, not cancelled).
    #[serde(skip)]
    unfinished: usize,
    /// How many tasks are in each state, kept as states change.
    #[serde(skip)]
    tally: Tally,
    /// Run times of finished tasks, for the ETA's median.
    #[serde(skip)]
    runtimes: super::stats::RunningMedian,
    /// Tells records apart (a view's caches belong to one record).
    #[serde(skip, default = "next_uid")]
    uid: u64,
    /// Tasks whose attempts changed, in event order: views catch up from a cursor.
    #[serde(skip)]
    changes: Vec<TaskId>,
    /// Changes dropped from the front (views that fell that far behind rebuild).
    #[serde(skip)]
    changes_dropped: usize,
    /// Concurrency and summary kept up to date event by event (records built from
    /// events; imported ones have none and are computed once).
    #[serde(skip)]
    live: Option<LiveStats>,
    /// Count output bytes only (headless runs print or save output instead).
    #[serde(skip)]
    discard_output: bool,
    /// Keep tasks' output but not the all-tasks view (a headless run's clients read a
    /// task's own).
    #[serde(skip)]
    no_interleaved: bool,
}

/// (task, attempt) pairs in order, packed into one `u64` each where the task id is
/// below 2^40 and the attempt below 2^24 (the others, a watched program's processes,
/// wait in `wide`); saved as the pairs.
#[derive(Clone, Debug, Default)]
struct Completions {
    packed: Vec<u64>,
    wide: Vec<(TaskId, u32)>,
}

/// In `packed`: the next pair is in `wide`.
const WIDE: u64 = u64::MAX;

impl Completions {
    fn push(&mut self, (task, attempt): (TaskId, u32)) {
        if task.0 < 1 << 40 && attempt < 1 << 24 {
            self.packed.push((task.0 << 24) | u64::from(attempt));
        } else {
            self.packed.push(WIDE);
            self.wide.push((task, attempt));
        }
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = (TaskId, u32)> + '_ {
        let mut wide = self.wide.iter();
        self.packed.iter().map(move |&c| {
            if c == WIDE {
                wide.next().copied().unwrap_or((TaskId(0), 0))
            } else {
                (TaskId(c >> 24), (c & 0xff_ffff) as u32)
            }
        })
    }
}

impl FromIterator<(TaskId, u32)> for Completions {
    fn from_iter<I: IntoIterator<Item = (TaskId, u32)>>(pairs: I) -> Self {
        let mut completions = Self::default();
        for pair in pairs {
            completions.push(pair);
        }
        completions
    }
}

impl Serialize for Completions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Completions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<(TaskId, u32)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// One persistent worker's life, on the run's clock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerLife {
    pub slot: usize,
    pub pid: u32,
    pub started: Duration,
    /// Its initializer: from, to (`None` while it runs), and how it failed.
    pub init: Option<(Duration, Option<Duration>)>,
    pub init_error: Option<String>,
    pub ended: Option<Duration>,
    /// How it ended (`exit 0`, `SIGKILL`) and whether it was retired on purpose.
    pub how: Option<(String, bool)>,
}

fn next_uid() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// How many tasks are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Queued, waiting in a backend, or between a failed attempt and its retry.
    pub queued: usize,
    pub running: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub lost: usize,
    /// Of the failed: ended by the user (Kill, Terminate), not by a fault of their own.
    pub killed: usize,
}

impl Tally {
    fn is_killed(state: &TaskState) -> bool {
        matches!(state, TaskState::Done(Outcome::Killed))
    }

    fn slot(&mut self, state: &TaskState) -> &mut usize {
        match state {
            TaskState::Queued | TaskState::Waiting(_) | TaskState::Retrying => &mut self.queued,
            TaskState::Running => &mut self.running,
            TaskState::Done(o) if o.is_success() => &mut self.succeeded,
            TaskState::Done(_) => &mut self.failed,
            TaskState::Cancelled => &mut self.cancelled,
            TaskState::Lost => &mut self.lost,
        }
    }

    fn count(tasks: &TaskStore) -> Self {
        let mut tally = Self::default();
        for state in (0..tasks.len()).filter_map(|i| tasks.state(i)) {
            *tally.slot(&state) += 1;
            tally.killed += usize::from(Self::is_killed(&state));
        }
        tally
    }
}

/// Running and waiting counts and the summary's sums, updated per event, so a view's
/// work per frame does not grow with the number of finished tasks.
#[derive(Clone, Debug, Default)]
pub struct LiveStats {
    pub levels: Vec<Level>,
    running: u32,
    waiting: u32,
    pub max_running: u32,
    pub first_start: Option<Duration>,
    pub last_end: Option<Duration>,
    /// Run time of finished attempts.
    pub busy_finished: Duration,
    /// Sum of the start times of running attempts (their run time is `n * now - sum`).
    start_sum: Duration,
    pub total_queue_wait: Duration,
}

impl LiveStats {
    fn step(&mut self, at: Duration, running: i32, waiting: i32) {
        self.running = self.running.saturating_add_signed(running);
        self.waiting = self.waiting.saturating_add_signed(waiting);
        self.max_running = self.max_running.max(self.running);
        let level = Level {
            at: at.as_secs_f64(),
            running: self.running,
            waiting: self.waiting,
        };
        match self.levels.last_mut() {
            Some(last) if (last.at - level.at).abs() < 1e-9 => *last = level,
            _ => self.levels.push(level),
        }
    }

    /// Run time of every attempt so far, the running ones up to `now`.
    pub fn busy(&self, now: Duration) -> Duration {
        (self.busy_finished + now * self.running).saturating_sub(self.start_sum)
    }

    /// The end of the run so far: now while something runs.
    pub fn last(&self, now: Duration) -> Option<Duration> {
        if self.running > 0 {
            Some(now)
        } else {
            self.last_end
        }
    }
}

fn default_budget() -> usize {
    DEFAULT_TAIL_BUDGET
}

impl Default for RunRecord {
    fn default() -> Self {
        Self::new(DEFAULT_TAIL_BYTES)
    }
}

impl RunRecord {
    pub fn new(tail_bytes: usize) -> Self {
        Self {
            wall_clock_start: None,
            pool_sizes: Vec::new(),
            phase: PoolPhase::Running,
            tasks: TaskStore::new(tail_bytes),
            completions: Completions::default(),
            last_event: Duration::ZERO,
            interleaved: Interleaved::default(),
            revision: 0,
            failure: None,
            workers: Vec::new(),
            markers: Vec::new(),
            cpu_in_use: Vec::new(),
            tail_bytes,
            tail_budget: DEFAULT_TAIL_BUDGET,
            tails_held: 0,
            evictable: std::collections::VecDeque::new(),
            unfinished: 0,
            tally: Tally::default(),
            runtimes: super::stats::RunningMedian::default(),
            uid: next_uid(),
            changes: Vec::new(),
            changes_dropped: 0,
            live: Some(LiveStats::default()),
            discard_output: false,
            no_interleaved: false,
        }
    }

    /// Hold at most `bytes` of output across all tasks (see [`DEFAULT_TAIL_BUDGET`]).
    #[must_use]
    pub fn with_tail_budget(mut self, bytes: usize) -> Self {
        self.tail_budget = bytes;
        self
    }

    /// Identifies this record among all records of the process.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// The tasks whose attempts changed since `cursor` (a count of changes, see
    /// [`Self::changes_total`]), in order; `None` if that is further back than is kept.
    pub fn changes_since(&self, cursor: usize) -> Option<&[TaskId]> {
        self.changes
            .get(cursor.checked_sub(self.changes_dropped)?..)
    }

    /// (task, attempt) in the order attempts ended: the joblog's order.
    pub fn completions(&self) -> impl ExactSizeIterator<Item = (TaskId, u32)> + '_ {
        self.completions.iter()
    }

    /// How many changes there have been.
    pub fn changes_total(&self) -> usize {
        self.changes_dropped + self.changes.len()
    }

    fn note_change(&mut self, task: TaskId) {
        // Kept for views to catch up from; a view further behind than this rebuilds.
        const KEPT: usize = 1 << 19;
        if self.changes.len() >= KEPT {
            self.changes.drain(..KEPT / 2);
            self.changes_dropped += KEPT / 2;
        }
        self.changes.push(task);
    }

    /// Incremental statistics, for records built from events.
    pub fn live_stats(&self) -> Option<&LiveStats> {
        self.live.as_ref()
    }

    /// Tasks that are queued, waiting or running: nothing is live when this is 0.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    /// Output bytes held in memory across all tasks.
    pub fn tails_held(&self) -> usize {
        self.tails_held
    }

    /// Push output into a task's tail and keep every tail together within the budget.
    fn hold_output(&mut self, task: TaskId, channel: Channel, bytes: &[u8]) {
        let Some(index) = self.tasks.position(task) else {
            return;
        };
        let Some(task) = self.tasks.get_mut(index) else {
            return;
        };
        if task.spec.pty && channel == Channel::Stdout {
            if task.screen.is_none() && crate::model::terminal::screen::draws_on_screen(bytes) {
                task.screen = Some(crate::model::terminal::screen::TermScreen::new());
            }
            if let Some(screen) = &mut task.screen {
                screen.feed(bytes);
            }
        }
        let before = task.output.held();
        task.output.push(channel, bytes);
        self.tails_held = self.tails_held + task.output.held() - before;
        let budget = self.tail_budget;
        self.evict_tails(|held, _| held > budget);
        if self.tails_held > self.tail_budget
            && let Some(task) = self.tasks.get_mut(index)
        {
            // Running tasks alone are over the budget: the one growing gives way.
            let excess = self.tails_held - self.tail_budget;
            let output = &mut task.output;
            let keep = output.held().saturating_sub(excess);
            let held = output.held();
            output.shrink_to(keep);
            self.tails_held -= held - output.held();
        }
    }

    /// Drop the oldest finished tasks' tails while `over(bytes held, tails held)` says
    /// so; a task whose tail is gone is kept compact.
    fn evict_tails(&mut self, over: impl Fn(usize, usize) -> bool) {
        while over(self.tails_held, self.evictable.len()) {
            let Some(old) = self.evictable.pop_front() else {
                break;
            };
            let Some(i) = self.tasks.position(old) else {
                continue;
            };
            if let Some(t) = self.tasks.get_mut(i) {
                self.tails_held -= t.output.held();
                t.output.evict();
            }
            self.settle(i);
        }
    }

    /// Keep a task compact if it is done and holds nothing a row cannot say.
    fn settle(&mut self, index: usize) {
        let done = self
            .tasks
            .state(index)
            .is_some_and(|s| matches!(*s, TaskState::Done(_) | TaskState::Cancelled));
        if done {
            self.tasks.compact(index);
        }
    }

    /// Read an evicted task's newest output back from its files in `dir` (as written by
    /// the executor's `output_dir`). Does nothing for a task that holds its output.
    pub fn restore_output(&mut self, task: TaskId, dir: &std::path::Path) -> std::io::Result<()> {
        let limit = self.tail_bytes;
        let Some(t) = self.task(task) else {
            return Ok(());
        };
        let Some(attempt) = t.last_attempt().map(|a| a.number) else {
            return Ok(());
        };
        if !t.output.is_evicted() {
            return Ok(());
        }
        let read = |stream: Stream| read_tail(&stream.file_in(dir, task, attempt), limit);
        let (stdout, stderr) = (read(Stream::Stdout)?, read(Stream::Stderr)?);
        let stderr_share = stderr.len().min(limit / 2);
        let stdout = &stdout[stdout.len().saturating_sub(limit - stderr_share)..];
        let stderr = &stderr[stderr.len() - stderr_share..];
        if let Some(t) = self.task_mut(task) {
            t.output.restore(stdout, stderr);
            let held = t.output.held();
            self.tails_held += held;
            self.evictable.push_back(task);
        }
        Ok(())
    }

    /// The all-tasks view of a run read back from its folder: each task's stored output
    /// (its last attempt), tasks in the order they started. Lines carry no times on
    /// disk, so one task's lines follow another's rather than interleave.
    pub fn interleave_stored(&mut self, dir: &std::path::Path) -> std::io::Result<()> {
        let mut order: Vec<(Duration, TaskId, u32)> = self
            .attempts_by_task()
            .filter_map(|(id, attempts)| attempts.last().map(|a| (a.started, id, a.number)))
            .collect();
        order.sort_unstable();
        let share = (INTERLEAVED_BYTES / order.len().max(1)).max(MAX_LINE);
        self.interleaved = Interleaved::default();
        for (_, task, attempt) in order {
            for stream in Stream::BOTH {
                let bytes = read_tail(&stream.file_in(dir, task, attempt), share)?;
                self.interleaved.push(task, stream.into(), &bytes);
            }
            self.interleaved.flush(task);
        }
        Ok(())
    }

    /// A record that counts output bytes but keeps none of them.
    pub fn without_output() -> Self {
        Self {
            discard_output: true,
            ..Self::new(0)
        }
    }

    /// From now on keep each task's own output (up to `tail_bytes`, `budget` in all) but
    /// not the all-tasks view: what a headless run holds for the clients that read a
    /// task's output (`poolscope log`, `follow`).
    pub fn keep_task_output(&mut self, tail_bytes: usize, budget: usize) {
        self.discard_output = false;
        self.no_interleaved = true;
        self.tail_bytes = tail_bytes;
        self.tail_budget = budget;
        self.tasks.set_tail_limit(tail_bytes);
    }

    /// A finished record made elsewhere (an imported joblog, a saved run).
    pub fn from_parts(
        wall_clock_start: Option<SystemTime>,
        pool_sizes: Vec<(Duration, usize)>,
        tasks: Vec<TaskRecord>,
        completions: Vec<(TaskId, u32)>,
    ) -> Self {
        let mut builder = Self::finished_builder();
        for task in tasks {
            builder.push(task);
        }
        builder.finish(wall_clock_start, pool_sizes, completions)
    }

    /// A finished run made a task at a time, each kept compact as it comes (a joblog of
    /// millions of lines is never all whole tasks at once).
    pub fn finished_builder() -> FinishedBuilder {
        FinishedBuilder {
            store: TaskStore::new(DEFAULT_TAIL_BYTES),
            last_event: Duration::ZERO,
        }
    }

    /// Count the tasks' states and run times again, and keep the done ones compact
    /// (after deserialising).
    pub fn reindex(&mut self) {
        self.tally = Tally::count(&self.tasks);
        self.runtimes = super::stats::RunningMedian::default();
        for i in 0..self.tasks.len() {
            let done = self
                .tasks
                .state(i)
                .is_some_and(|s| matches!(*s, TaskState::Done(_)));
            if let (true, Some(a)) = (done, self.tasks.attempts(i).last()) {
                self.runtimes.push(a.runtime(a.started));
            }
            self.settle(i);
        }
    }

    /// How many tasks are in each state.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// The median run time of finished tasks.
    pub fn median_runtime(&self) -> Option<Duration> {
        self.runtimes.median()
    }

    /// Move a task to `state`, keeping the tally.
    fn set_state(&mut self, index: usize, state: TaskState) {
        let Some(task) = self.tasks.get_mut(index) else {
            return;
        };
        *self.tally.slot(&task.state) -= 1;
        *self.tally.slot(&state) += 1;
        self.tally.killed -= usize::from(Tally::is_killed(&task.state));
        self.tally.killed += usize::from(Tally::is_killed(&state));
        task.state = state;
    }

    /// A task by id.
    pub fn task(&self, id: TaskId) -> Option<TaskRef<'_>> {
        self.tasks.position(id).and_then(|i| self.task_at(i))
    }

    /// Room for `more` tasks, when it is known how many are coming (a task list).
    pub fn reserve_tasks(&mut self, more: usize) {
        self.tasks.reserve(more);
    }

    /// How many tasks the run has (queued, running or done).
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// The task at `position` in queue order.
    pub fn task_at(&self, position: usize) -> Option<TaskRef<'_>> {
        self.tasks.get(position)
    }

    /// Every attempt of every task, with its task, in queue order.
    pub fn attempts(&self) -> impl Iterator<Item = (TaskId, Attempt)> + '_ {
        self.attempts_by_task()
            .flat_map(|(id, attempts)| attempts.into_owned().into_iter().map(move |a| (id, a)))
    }

    /// Each task's attempts (without making done tasks whole), in queue order.
    pub fn attempts_by_task(&self) -> impl Iterator<Item = (TaskId, Cow<'_, [Attempt]>)> + '_ {
        (0..self.tasks.len()).filter_map(|i| Some((self.tasks.id(i)?, self.tasks.attempts(i))))
    }

    /// The tasks in `state` (looked at without making done ones whole).
    pub fn tasks_in(&self, state: &TaskState) -> impl Iterator<Item = TaskRef<'_>> + '_ {
        let wanted = state.clone();
        (0..self.tasks.len())
            .filter(move |&i| self.tasks.state(i).is_some_and(|s| *s == wanted))
            .map(|i| self.tasks.at(i))
    }

    /// How many tasks went to a worker in the chunk that starts with `first`.
    pub fn chunk_len(&self, first: TaskId) -> usize {
        let Some(start) = self.tasks.position(first) else {
            return 0;
        };
        (start..self.tasks.len())
            .take_while(|&i| self.tasks.chunk(i) == Some(first))
            .count()
    }

    /// Where a task is in queue order.
    pub fn position(&self, id: TaskId) -> Option<usize> {
        self.tasks.position(id)
    }

    /// The attempts of the task at `position` (without making a done task whole).
    pub fn attempts_at(&self, position: usize) -> Cow<'_, [Attempt]> {
        self.tasks.attempts(position)
    }

    /// The id of the task at `position`.
    pub fn id_at(&self, position: usize) -> Option<TaskId> {
        self.tasks.id(position)
    }

    /// The chunk of the task at `position` (without making a done task whole).
    pub fn chunk_at(&self, position: usize) -> Option<TaskId> {
        self.tasks.chunk(position)
    }

    /// What the task at `position` runs (without making a done task whole).
    pub fn invocation_at(&self, position: usize) -> Option<Cow<'_, crate::executor::Invocation>> {
        self.tasks.invocation(position)
    }

    /// When the task at `position` was queued (without making a done task whole).
    pub fn queued_at(&self, position: usize) -> Option<Duration> {
        self.tasks.queued(position)
    }

    /// The state of the task at `position` (without making a done task whole).
    pub fn state_at(&self, position: usize) -> Option<Cow<'_, TaskState>> {
        self.tasks.state(position)
    }

    /// Every task, in queue order.
    pub fn tasks(&self) -> impl DoubleEndedIterator<Item = TaskRef<'_>> + ExactSizeIterator + '_ {
        let tasks = &self.tasks;
        (0..tasks.len()).map(|i| tasks.at(i))
    }

    fn task_mut(&mut self, id: TaskId) -> Option<&mut TaskRecord> {
        let i = self.tasks.position(id)?;
        self.tasks.get_mut(i)
    }

    /// Attempt `number` of a task (without making a done task whole).
    pub fn attempt(&self, id: TaskId, number: u32) -> Option<Attempt> {
        self.attempts_at(self.position(id)?)
            .iter()
            .find(|a| a.number == number)
            .cloned()
    }

    fn attempt_mut(&mut self, id: TaskId, number: u32) -> Option<&mut Attempt> {
        self.task_mut(id)?.attempt_mut(number)
    }

    /// A `Started` for an attempt already running here: one followed again after
    /// poolscope stopped watching it (a cluster element reattached). It goes on as the
    /// same attempt, from its first start; where it runs is brought up to date.
    fn continue_attempt(
        &mut self,
        task: TaskId,
        number: u32,
        slot: usize,
        pid: Option<u32>,
        host: Option<&String>,
    ) -> bool {
        let Some(a) = self.attempt_mut(task, number).filter(|a| a.ended.is_none()) else {
            return false;
        };
        a.slot = Some(slot);
        a.pid = pid.or(a.pid);
        if let Some(host) = host {
            a.host = Some(host.clone());
        }
        if let Some(i) = self.tasks.position(task) {
            self.set_state(i, TaskState::Running);
        }
        true
    }

    /// The attempts still open (to be followed again when the run goes on).
    pub fn open_attempts(&self) -> impl Iterator<Item = (TaskId, u32)> + '_ {
        self.attempts_by_task().filter_map(|(id, attempts)| {
            let a = attempts.last().filter(|a| a.ended.is_none())?;
            Some((id, a.number))
        })
    }

    pub fn count(&self, pred: impl Fn(&TaskState) -> bool) -> usize {
        (0..self.tasks.len())
            .filter_map(|i| self.tasks.state(i))
            .filter(|s| pred(s))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.tally.failed
    }

    fn worker_changed(
        &mut self,
        at: Duration,
        slot: usize,
        pid: u32,
        change: &crate::executor::WorkerChange,
    ) {
        use crate::executor::WorkerChange;
        if *change == WorkerChange::Started {
            self.workers.push(WorkerLife {
                slot,
                pid,
                started: at,
                init: None,
                init_error: None,
                ended: None,
                how: None,
            });
            return;
        }
        let Some(w) = self.workers.iter_mut().rev().find(|w| w.pid == pid) else {
            return;
        };
        match change {
            WorkerChange::Started => {}
            WorkerChange::InitStarted => w.init = Some((at, None)),
            WorkerChange::InitEnded { error } => {
                w.init = Some((w.init.map_or(at, |(from, _)| from), Some(at)));
                w.init_error.clone_from(error);
            }
            WorkerChange::Exited { how, retired } => {
                w.ended = Some(at);
                w.how = Some((how.clone(), *retired));
            }
        }
    }

    pub fn succeeded(&self) -> usize {
        self.tally.succeeded
    }

    #[allow(clippy::too_many_lines)] // one short arm per kind of event
    pub fn apply(&mut self, event: &Event) {
        // Whole microseconds, as a done task's row keeps them: a bar found by its start
        // while it runs is found by the same start once done.
        let at = Duration::from_micros(u64::try_from(event.at.as_micros()).unwrap_or(u64::MAX));
        self.last_event = self.last_event.max(at);
        if !matches!(event.kind, EventKind::Output { .. }) {
            self.revision += 1;
        }
        match &event.kind {
            EventKind::PoolStarted { wall_clock, size } => {
                // A resumed run's pool runs again, whatever its last one ended as.
                self.phase = PoolPhase::Running;
                self.wall_clock_start = Some(*wall_clock);
                self.pool_sizes.push((at, *size));
            }
            EventKind::Queued { task, spec } => {
                self.unfinished += 1;
                if let Some(live) = &mut self.live {
                    live.step(at, 0, 1);
                }
                self.tally.queued += 1;
                self.tasks.push(TaskRecord {
                    id: *task,
                    spec: Arc::clone(spec),
                    queued: at,
                    attempts: Vec::new(),
                    state: TaskState::Queued,
                    stdin_open: false,
                    output: OutputTail::new(self.tail_bytes),
                    chunk: None,
                    screen: None,
                });
                // Waiting, it is kept as a row (a million queued at once).
                self.tasks.compact(self.tasks.len() - 1);
            }
            EventKind::CommandStarted { task, attempt, pid } => {
                if let Some(a) = self.attempt_mut(*task, *attempt) {
                    a.command_pid = Some(*pid);
                }
            }
            EventKind::Chunk { first, len } => {
                if let Some(start) = self.tasks.position(*first) {
                    for i in start..(start + len).min(self.tasks.len()) {
                        self.tasks.set_chunk(i, *first);
                    }
                }
            }
            EventKind::Waiting { task, state, .. } => {
                if let Some(i) = self.tasks.position(*task) {
                    self.set_state(i, TaskState::Waiting(state.clone()));
                }
            }
            EventKind::Started {
                task,
                attempt,
                slot,
                pid,
                host,
            } => {
                self.note_change(*task);
                if self.continue_attempt(*task, *attempt, *slot, *pid, host.as_ref()) {
                    return;
                }
                let position = self.tasks.position(*task);
                if let (Some(i), Some(live)) = (position, self.live.as_mut())
                    && let Some(t) = self.tasks.get_mut(i)
                {
                    let first = !t.attempts.iter().any(Attempt::ran);
                    if first {
                        live.total_queue_wait += at.saturating_sub(t.queued);
                    }
                    live.first_start.get_or_insert(at);
                    live.start_sum += at;
                    live.step(at, 1, if first { -1 } else { 0 });
                }
                if let Some(i) = position {
                    self.set_state(i, TaskState::Running);
                }
                if let Some(t) = self.task_mut(*task) {
                    t.stdin_open = matches!(t.spec.stdin, crate::executor::StdinMode::Pipe);
                    // A new attempt starts on a fresh terminal.
                    t.screen = None;
                    push_attempt(
                        &mut t.attempts,
                        Attempt {
                            slot: Some(*slot),
                            pid: *pid,
                            host: host.clone(),
                            ..Attempt::begun(*attempt, at)
                        },
                    );
                }
            }
            EventKind::Output {
                task,
                attempt,
                stream,
                bytes,
            } => {
                let keep = !self.discard_output;
                if keep {
                    if !self.no_interleaved {
                        self.interleaved.push(*task, (*stream).into(), bytes);
                    }
                    self.hold_output(*task, (*stream).into(), bytes);
                }
                if let Some(a) = self.attempt_mut(*task, *attempt) {
                    match stream {
                        Stream::Stdout => a.stdout_bytes += bytes.len() as u64,
                        Stream::Stderr => a.stderr_bytes += bytes.len() as u64,
                    }
                }
                self.settle_task(*task);
            }
            EventKind::StdinClosed { task, .. } => {
                if let Some(t) = self.task_mut(*task) {
                    t.stdin_open = false;
                }
            }
            EventKind::Finished {
                task,
                attempt,
                outcome,
                stdin_bytes,
                will_retry,
            } => self.finish(at, *task, *attempt, outcome, *stdin_bytes, *will_retry),
            EventKind::Cancelled { task } => {
                self.unfinished = self.unfinished.saturating_sub(1);
                let never_ran = self
                    .task(*task)
                    .is_some_and(|t| !t.attempts.iter().any(Attempt::ran));
                if let (true, Some(live)) = (never_ran, self.live.as_mut()) {
                    live.step(at, 0, -1);
                }
                if let Some(i) = self.tasks.position(*task) {
                    self.set_state(i, TaskState::Cancelled);
                    self.settle(i);
                }
            }
            EventKind::Lost { task, attempt } => self.lost(at, *task, *attempt),
            EventKind::Usage { samples } => self.used(at, samples),
            EventKind::Resized { size } => self.pool_sizes.push((at, *size)),
            EventKind::Paused => self.phase = PoolPhase::Paused,
            EventKind::Resumed => self.phase = PoolPhase::Running,
            EventKind::Closed => self.phase = PoolPhase::Closed,
            EventKind::Drained => self.phase = PoolPhase::Finished,
            EventKind::Worker { slot, pid, change } => self.worker_changed(at, *slot, *pid, change),
            EventKind::Marker { label } => self.markers.push((at, label.clone())),
            EventKind::Failed { reason } => {
                self.phase = PoolPhase::Finished;
                self.failure = Some(reason.clone());
            }
            // The machine's limit, where the pool met it: a marker across the timeline.
            EventKind::Limited { running, .. } => self
                .markers
                .push((at, format!("the machine allows {running} at once"))),
            EventKind::Terminated | EventKind::Halted { .. } | EventKind::SaveFailed { .. } => {}
        }
    }

    /// What the user typed to a task, shown in its console as input.
    pub fn record_input(&mut self, task: TaskId, bytes: &[u8]) {
        if !self.no_interleaved {
            self.interleaved.push(task, Channel::Input, bytes);
        }
        self.hold_output(task, Channel::Input, bytes);
    }

    fn finish(
        &mut self,
        at: Duration,
        task: TaskId,
        attempt: u32,
        outcome: &Outcome,
        stdin_bytes: u64,
        will_retry: bool,
    ) {
        self.note_change(task);
        let position = self.tasks.position(task);
        if let (Some(i), Some(live)) = (position, self.live.as_mut())
            && let Some(t) = self.tasks.get_mut(i)
        {
            match t.attempts.iter().find(|a| a.number == attempt && a.ran()) {
                Some(a) => {
                    live.busy_finished += at.saturating_sub(a.started);
                    live.start_sum = live.start_sum.saturating_sub(a.started);
                    live.last_end = Some(live.last_end.map_or(at, |e| e.max(at)));
                    live.step(at, -1, 0);
                }
                // Never started, and no earlier attempt did: it stops waiting when
                // settled (unless it is tried again).
                None if !will_retry && !t.attempts.iter().any(Attempt::ran) => {
                    live.step(at, 0, -1);
                }
                None => {}
            }
        }
        let Some(t) = self.task_mut(task) else {
            return;
        };
        if !t.attempts.iter().any(|a| a.number == attempt) {
            // Failed to start: the attempt never got a Started event.
            push_attempt(&mut t.attempts, Attempt::begun(attempt, at));
        }
        if let Some(a) = t.attempt_mut(attempt) {
            a.ended = Some(at);
            a.outcome = Some(outcome.clone());
            a.stdin_bytes = stdin_bytes;
        }
        t.stdin_open = false;
        self.interleaved.flush(task);
        let Some(index) = position else {
            return;
        };
        let state = if will_retry {
            TaskState::Retrying
        } else {
            TaskState::Done(outcome.clone())
        };
        self.set_state(index, state);
        self.completions.push((task, attempt));
        if will_retry {
            return;
        }
        self.unfinished = self.unfinished.saturating_sub(1);
        let Some(t) = self.tasks.get_mut(index) else {
            return;
        };
        if let Some(a) = t.last_attempt() {
            self.runtimes.push(a.runtime(a.started));
        }
        if t.output.held() > 0 {
            self.evictable.push_back(task);
            // Past so many held tails the oldest go (their files keep them), so a long
            // run's finished tasks stay compact.
            self.evict_tails(|_, count| count > MAX_HELD_TAILS);
        } else {
            self.settle(index);
        }
    }

    /// [`Self::settle`] by id.
    fn settle_task(&mut self, task: TaskId) {
        if let Some(i) = self.tasks.position(task) {
            self.settle(i);
        }
    }

    fn used(&mut self, at: Duration, samples: &[crate::executor::event::UsageSample]) {
        let mut cores = 0.0f32;
        for s in samples {
            let Some(a) = self.attempt_mut(s.task, s.attempt) else {
                continue;
            };
            let (since, before) = a
                .usage
                .shares
                .last()
                .map_or((a.started, Duration::ZERO), |&(t, _)| (t, a.usage.cpu));
            let span = at.saturating_sub(since).as_secs_f32();
            let share = if span > 0.0 {
                s.cpu.saturating_sub(before).as_secs_f32() / span
            } else {
                0.0
            };
            a.usage.cpu = a.usage.cpu.max(s.cpu);
            a.usage.peak_rss = a.usage.peak_rss.max(s.rss);
            a.usage.shares.push((at, share));
            cores += share;
        }
        self.cpu_in_use.push((at, cores));
    }

    fn lost(&mut self, at: Duration, task: TaskId, attempt: u32) {
        let Some(index) = self.tasks.position(task) else {
            return;
        };
        self.note_change(task);
        let Some(t) = self.tasks.get_mut(index) else {
            return;
        };
        let Some(a) = t.attempt_mut(attempt) else {
            return;
        };
        if a.ended.is_some() {
            return;
        }
        a.ended = Some(at);
        if let Some(live) = self.live.as_mut() {
            live.busy_finished += at.saturating_sub(a.started);
            live.start_sum = live.start_sum.saturating_sub(a.started);
            live.last_end = Some(live.last_end.map_or(at, |e| e.max(at)));
            live.step(at, -1, 0);
        }
        t.stdin_open = false;
        self.set_state(index, TaskState::Lost);
        self.unfinished = self.unfinished.saturating_sub(1);
    }

    /// An attempt's CPU time and peak memory, without its samples (a run loaded from its
    /// journal).
    pub fn set_usage(&mut self, task: TaskId, attempt: u32, cpu: Duration, peak_rss: u64) {
        if let Some(a) = self.attempt_mut(task, attempt) {
            a.usage.cpu = cpu;
            a.usage.peak_rss = peak_rss;
        }
        self.settle_task(task);
    }

    /// Byte counts of an attempt's output whose bytes are not replayed (a run loaded
    /// from its journal: the bytes are in the run's files).
    pub fn count_output(&mut self, task: TaskId, attempt: u32, stdout: u64, stderr: u64) {
        if let Some(a) = self.attempt_mut(task, attempt) {
            a.stdout_bytes = stdout;
            a.stderr_bytes = stderr;
        }
        self.settle_task(task);
    }

    /// The largest number of attempts running at the same instant (a slot handed over
    /// at one instant is not an overlap).
    pub fn max_concurrency(&self) -> usize {
        super::stats::max_running(&super::stats::concurrency(self, self.last_event))
    }
}

/// The last `limit` bytes of a file; an absent file is empty output.
fn read_tail(path: &std::path::Path, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(limit as u64)))?;
    let mut bytes = Vec::new();
    file.take(limit as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Most bytes of whole lines kept in the all-tasks view.
const INTERLEAVED_BYTES: usize = 2 * 1024 * 1024;
/// Longest line kept in the all-tasks view; longer ones are cut.
const MAX_LINE: usize = 4096;

/// Whole lines from every task in arrival order; a partial line waits for its end (or
/// its task's end) so lines of different tasks never mix.
#[derive(Clone, Debug, Default)]
pub struct Interleaved {
    pub lines: std::collections::VecDeque<(TaskId, Channel, String)>,
    bytes: usize,
    partial: HashMap<(TaskId, Channel), Vec<u8>>,
}

impl Interleaved {
    fn push(&mut self, task: TaskId, channel: Channel, bytes: &[u8]) {
        let pending = self.partial.entry((task, channel)).or_default();
        let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') else {
            pending.extend_from_slice(bytes);
            if pending.len() > MAX_LINE {
                // Output with no newline in sight (binary, a progress bar): show it in
                // pieces rather than holding it all back.
                let piece = std::mem::take(pending);
                self.add(task, channel, &piece[..MAX_LINE.min(piece.len())]);
            }
            return;
        };
        let mut complete = std::mem::take(pending);
        complete.extend_from_slice(&bytes[..last_newline]);
        pending.extend_from_slice(&bytes[last_newline + 1..]);
        for line in complete.split(|&b| b == b'\n') {
            self.add(task, channel, &line[..line.len().min(MAX_LINE)]);
        }
    }

    fn add(&mut self, task: TaskId, channel: Channel, line: &[u8]) {
        let text = String::from_utf8_lossy(line).into_owned();
        self.bytes += text.len();
        self.lines.push_back((task, channel, text));
        while self.bytes > INTERLEAVED_BYTES {
            match self.lines.pop_front() {
                Some((_, _, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// The task is over: its unfinished lines are complete now.
    fn flush(&mut self, task: TaskId) {
        for channel in [Channel::Stdout, Channel::Stderr, Channel::Input] {
            if let Some(rest) = self.partial.remove(&(task, channel))
                && !rest.is_empty()
            {
                self.add(task, channel, &rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_lines_of_two_tasks_never_mix() {
        let mut log = Interleaved::default();
        let (a, b) = (TaskId(1), TaskId(2));
        log.push(a, Channel::Stdout, b"one from a, ");
        log.push(b, Channel::Stdout, b"one from b\nhalf ");
        log.push(a, Channel::Stdout, b"still a\n");
        log.flush(b);
        let lines: Vec<(u64, &str)> = log
            .lines
            .iter()
            .map(|(t, _, l)| (t.0, l.as_str()))
            .collect();
        assert_eq!(
            lines,
            vec![(2, "one from b"), (1, "one from a, still a"), (2, "half ")]
        );
    }

    fn event(at_ms: u64, kind: EventKind) -> Event {
        Event {
            at: Duration::from_millis(at_ms),
            kind,
        }
    }

    fn run_task(record: &mut RunRecord, id: u64, bytes: &[u8], finish: bool) {
        let task = TaskId(id);
        let spec = Arc::new(crate::executor::TaskSpec::shell("true"));
        record.apply(&event(id, EventKind::Queued { task, spec }));
        let started = EventKind::Started {
            task,
            attempt: 1,
            slot: 0,
            pid: None,
            host: None,
        };
        record.apply(&event(id, started));
        let output = EventKind::Output {
            task,
            attempt: 1,
            stream: Stream::Stdout,
            bytes: bytes.to_vec(),
        };
        record.apply(&event(id, output));
        if finish {
            let finished = EventKind::Finished {
                task,
                attempt: 1,
                outcome: Outcome::Exited(0),
                stdin_bytes: 0,
                will_retry: false,
            };
            record.apply(&event(id, finished));
        }
    }

    #[test]
    fn a_finished_run_whose_pool_starts_again_is_running() {
        let mut record = RunRecord::new(1000);
        record.apply(&event(1, EventKind::Drained));
        assert_eq!(record.phase, PoolPhase::Finished);
        let started = EventKind::PoolStarted {
            wall_clock: std::time::SystemTime::now(),
            size: 2,
        };
        record.apply(&event(2, started));
        assert_eq!(
            record.phase,
            PoolPhase::Running,
            "ls shows a resumed run running"
        );
    }

    #[test]
    fn all_tails_together_stay_within_the_budget_oldest_finished_first() {
        let mut record = RunRecord::new(1000).with_tail_budget(2500);
        run_task(&mut record, 1, &[b'a'; 1000], true);
        run_task(&mut record, 2, &[b'b'; 1000], true);
        assert_eq!(record.tails_held(), 2000);
        run_task(&mut record, 3, &[b'c'; 1000], false);
        assert_eq!(record.tails_held(), 2000, "task 1's tail was dropped");
        let one = &record.task(TaskId(1)).expect("task 1").output;
        assert!(one.is_evicted() && one.held() == 0);
        assert_eq!(record.task(TaskId(2)).expect("task 2").output.held(), 1000);
        // The files still hold it: looking at task 1 reads it back.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("1.1.stdout"), [b'a'; 1000]).expect("write");
        record
            .restore_output(TaskId(1), dir.path())
            .expect("restore");
        let one = &record.task(TaskId(1)).expect("task 1").output;
        assert_eq!(one.stream_bytes(Stream::Stdout), vec![b'a'; 1000]);
        assert!(!one.is_evicted());
    }

    #[test]
    fn running_tasks_over_the_budget_give_way_themselves() {
        let mut record = RunRecord::new(1000).with_tail_budget(1500);
        run_task(&mut record, 1, &[b'a'; 1000], false);
        run_task(&mut record, 2, &[b'b'; 1000], false);
        assert_eq!(record.tails_held(), 1500);
        assert_eq!(record.task(TaskId(2)).expect("task 2").output.held(), 500);
    }

    #[test]
    fn output_without_newlines_stays_bounded_in_the_interleaved_view() {
        let mut log = Interleaved::default();
        let chunk = vec![b'y'; 64 * 1024];
        for _ in 0..200 {
            log.push(TaskId(1), Channel::Stdout, &chunk);
        }
        assert!(log.bytes <= INTERLEAVED_BYTES);
        assert!(
            log.partial
                .values()
                .all(|p| p.len() <= MAX_LINE + chunk.len())
        );
    }
}

#[cfg(test)]
mod completion_tests {
    use super::*;

    #[test]
    fn completions_keep_their_order_packed_or_not() {
        let pairs = [
            (TaskId(1), 1),
            (TaskId(1 << 40), 1),
            (TaskId(7), 3),
            (TaskId(5), 1 << 24),
            (TaskId(2), 1),
        ];
        let completions: Completions = pairs.into_iter().collect();
        assert_eq!(completions.iter().collect::<Vec<_>>(), pairs);
        let json = serde_json::to_string(&completions).expect("saves");
        let back: Completions = serde_json::from_str(&json).expect("loads");
        assert_eq!(back.iter().collect::<Vec<_>>(), pairs);
    }
}

/// See [`RunRecord::finished_builder`].
pub struct FinishedBuilder {
    store: TaskStore,
    last_event: Duration,
}

/// A done task that ran once, as a shell command, on this machine, with no input: what a
/// joblog line says, kept as a row without being made a whole task first.
pub struct DoneShell<'a> {
    pub id: TaskId,
    pub command: &'a str,
    pub started: Duration,
    pub ended: Duration,
    pub outcome: &'a Outcome,
    pub stdout_bytes: u64,
    pub slot: usize,
}

impl FinishedBuilder {
    /// Keep `task` as a row; false (nothing kept) where a row cannot say it.
    pub fn push_done_shell(&mut self, task: &DoneShell<'_>) -> bool {
        if !self.store.push_done_shell(task) {
            return false;
        }
        self.last_event = self.last_event.max(task.ended);
        true
    }

    /// Room for `tasks` more tasks whose shell commands take about `command_bytes`.
    pub fn reserve(&mut self, tasks: usize, command_bytes: usize) {
        self.store.reserve(tasks);
        // Each command is kept with a byte of kind and a few of length.
        self.store.reserve_spec_bytes(command_bytes + tasks * 4);
    }

    pub fn push(&mut self, task: TaskRecord) {
        let ended = task.attempts.iter().filter_map(|a| a.ended).max();
        self.last_event = self.last_event.max(ended.unwrap_or_default());
        let done = matches!(task.state, TaskState::Done(_) | TaskState::Cancelled);
        let position = self.store.len();
        self.store.push(task);
        if done {
            self.store.compact(position);
        }
    }

    pub fn finish(
        self,
        wall_clock_start: Option<SystemTime>,
        pool_sizes: Vec<(Duration, usize)>,
        completions: Vec<(TaskId, u32)>,
    ) -> RunRecord {
        let mut record = RunRecord {
            wall_clock_start,
            pool_sizes,
            phase: PoolPhase::Finished,
            tasks: self.store,
            completions: completions.into_iter().collect(),
            last_event: self.last_event,
            revision: 1,
            // Made elsewhere: its statistics are computed from its tasks, once.
            live: None,
            ..RunRecord::new(DEFAULT_TAIL_BYTES)
        };
        record.reindex();
        record
    }
}
