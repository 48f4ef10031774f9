//! Resuming a run: its unfinished tasks run again as new attempts of the same tasks, on
//! the same timeline.
//!
//! A new executor numbers its tasks from 1 and its clock from its own start. A
//! [`Resumption`] turns its events into the original run's: task N becomes the N-th task
//! resumed, attempt K becomes the task's attempt count so far plus K, and times move by
//! the wall-clock distance between the two starts.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use crate::executor::{Event, EventKind, TaskId, TaskSpec};
use crate::model::record::run::{RunRecord, TaskState};

/// Which tasks of a run to run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeWhat {
    /// Those that never finished: queued, cancelled, or lost when poolscope stopped.
    Unfinished,
    /// Those and the ones that failed.
    UnfinishedAndFailed,
}

/// Maps a resuming executor's events onto the original run.
#[derive(Clone, Debug, Default)]
pub struct Resumption {
    /// New task N is `tasks[N-1]`: the original id and how many attempts it had.
    tasks: Vec<(TaskId, u32)>,
    offset: Duration,
    /// The run's tasks before this resumption: a task added while it runs (by a client,
    /// a retry) is numbered after them, new task `K + j` being the run's `added_after +
    /// j` (K: the tasks resumed).
    added_after: u64,
    /// The tasks whose last attempt may go on where it was handed (all but those
    /// cancelled before they started).
    goes_on: std::collections::HashSet<TaskId>,
}

impl Resumption {
    /// The tasks of `record` to run again (their specs, in order) and the mapping, for an
    /// executor started now.
    pub fn plan(record: &RunRecord, what: ResumeWhat) -> (Vec<TaskSpec>, Self) {
        let again = |state: &TaskState| match state {
            TaskState::Done(outcome) => {
                what == ResumeWhat::UnfinishedAndFailed && !outcome.is_success()
            }
            _ => true,
        };
        let mut specs = Vec::new();
        let mut tasks = Vec::new();
        let mut goes_on = std::collections::HashSet::new();
        for t in record.tasks().filter(|t| again(&t.state)) {
            let attempts = t.attempts.iter().map(|a| a.number).max().unwrap_or(0);
            // An attempt still open (followed again where it runs) goes on as itself;
            // one cancelled before it started (its element gone from the cluster's
            // queue) is not followed: the task runs again.
            let cancelled = t.state == TaskState::Cancelled;
            let open = !cancelled && t.attempts.last().is_some_and(|a| a.ended.is_none());
            if !cancelled {
                goes_on.insert(t.id);
            }
            specs.push((*t.spec).clone());
            tasks.push((t.id, attempts - u32::from(open)));
        }
        let offset = record
            .wall_clock_start
            .and_then(|start| SystemTime::now().duration_since(start).ok())
            .unwrap_or(record.last_event);
        let added_after = record
            .id_at(record.task_count().saturating_sub(1))
            .map_or(0, |t| t.0);
        (
            specs,
            Self {
                tasks,
                offset,
                added_after,
                goes_on,
            },
        )
    }

    /// Whether what the run's `task` was handed to (a cluster's queue) may still run it,
    /// to be followed there: not when it was cancelled before it started.
    pub fn goes_on(&self, task: TaskId) -> bool {
        self.goes_on.contains(&task)
    }

    /// Not a resumption: the executor's tasks are the run's own.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The original task and attempt of the new executor's `task` and `attempt`.
    pub fn original(&self, task: TaskId, attempt: u32) -> (TaskId, u32) {
        let resumed = self.tasks.len() as u64;
        if self.tasks.is_empty() {
            return (task, attempt);
        }
        if task.0 > resumed {
            return (TaskId(self.added_after + (task.0 - resumed)), attempt);
        }
        usize::try_from(task.0)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.tasks.get(i))
            .map_or((task, attempt), |&(id, before)| (id, before + attempt))
    }

    /// The resuming executor's task and attempt for the run's `task` and `attempt`.
    pub fn executor_ids(&self, task: TaskId, attempt: u32) -> Option<(TaskId, u32)> {
        if self.tasks.is_empty() {
            return Some((task, attempt));
        }
        if task.0 > self.added_after {
            return Some((
                TaskId(self.tasks.len() as u64 + (task.0 - self.added_after)),
                attempt,
            ));
        }
        let i = self.tasks.iter().position(|&(id, _)| id == task)?;
        let before = self.tasks[i].1;
        Some((TaskId(i as u64 + 1), attempt.checked_sub(before)?))
    }

    /// The resuming executor's number for the run's `task` (the same when nothing is
    /// resumed, or when the task is not one the executor has).
    pub fn executor_task(&self, task: TaskId) -> TaskId {
        self.executor_ids(task, 0).map_or(task, |(id, _)| id)
    }

    /// The original task of each of the resuming executor's tasks, in its order (task N
    /// is the N-th).
    pub fn originals(&self) -> Vec<TaskId> {
        self.tasks.iter().map(|&(id, _)| id).collect()
    }

    /// How far the original run's clock is ahead of the resuming executor's.
    pub fn offset(&self) -> Duration {
        self.offset
    }

    /// `event` as the original run's, or `None` for what the run already has (its start,
    /// its tasks being queued).
    pub fn translate<'e>(&self, event: &'e Event) -> Option<Cow<'e, Event>> {
        if self.tasks.is_empty() {
            return Some(Cow::Borrowed(event));
        }
        let resumed = self.tasks.len() as u64;
        match &event.kind {
            EventKind::PoolStarted { .. } => return None,
            // A task added while the resumed run runs is new to it; the rest it has.
            EventKind::Queued { task, .. } | EventKind::Chunk { first: task, .. }
                if task.0 <= resumed =>
            {
                return None;
            }
            _ => {}
        }
        let mut kind = event.kind.clone();
        match &mut kind {
            EventKind::Queued { task, .. } | EventKind::Chunk { first: task, .. } => {
                *task = self.original(*task, 0).0;
            }
            EventKind::Waiting { task, attempt, .. }
            | EventKind::Started { task, attempt, .. }
            | EventKind::CommandStarted { task, attempt, .. }
            | EventKind::Output { task, attempt, .. }
            | EventKind::StdinClosed { task, attempt, .. }
            | EventKind::Finished { task, attempt, .. }
            | EventKind::Lost { task, attempt } => {
                (*task, *attempt) = self.original(*task, *attempt);
            }
            EventKind::Cancelled { task } => *task = self.original(*task, 0).0,
            EventKind::Usage { samples } => {
                for s in samples {
                    (s.task, s.attempt) = self.original(s.task, s.attempt);
                }
            }
            _ => {}
        }
        Some(Cow::Owned(Event {
            at: event.at + self.offset,
            kind,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::Outcome;

    fn event(at_ms: u64, kind: EventKind) -> Event {
        Event {
            at: Duration::from_millis(at_ms),
            kind,
        }
    }

    fn three_tasks() -> RunRecord {
        let mut record = RunRecord::without_output();
        record.apply(&event(
            0,
            EventKind::PoolStarted {
                wall_clock: SystemTime::now() - Duration::from_secs(10),
                size: 2,
            },
        ));
        for i in 1..=3 {
            record.apply(&event(
                0,
                EventKind::Queued {
                    task: TaskId(i),
                    spec: std::sync::Arc::new(TaskSpec::shell(format!("echo {i}"))),
                },
            ));
        }
        for i in 1..=2 {
            record.apply(&event(
                1,
                EventKind::Started {
                    task: TaskId(i),
                    attempt: 1,
                    slot: 0,
                    pid: None,
                    host: None,
                },
            ));
        }
        record.apply(&event(
            2,
            EventKind::Finished {
                task: TaskId(1),
                attempt: 1,
                outcome: Outcome::Exited(1),
                stdin_bytes: 0,
                will_retry: false,
            },
        ));
        record.apply(&event(
            3,
            EventKind::Lost {
                task: TaskId(2),
                attempt: 1,
            },
        ));
        record
    }

    #[test]
    fn an_attempt_still_running_elsewhere_goes_on_as_itself() {
        // One task started and never lost: a cluster element followed again.
        let mut record = RunRecord::without_output();
        record.apply(&event(
            0,
            EventKind::PoolStarted {
                wall_clock: SystemTime::now() - Duration::from_secs(10),
                size: 1,
            },
        ));
        let spec = std::sync::Arc::new(TaskSpec::shell("sleep 60"));
        let task = TaskId(1);
        record.apply(&event(0, EventKind::Queued { task, spec }));
        let started = |host: Option<&str>| EventKind::Started {
            task,
            attempt: 1,
            slot: 0,
            pid: Some(7),
            host: host.map(str::to_owned),
        };
        record.apply(&event(1, started(None)));
        let (specs, resume) = Resumption::plan(&record, ResumeWhat::Unfinished);
        assert_eq!(specs.len(), 1);
        assert_eq!(resume.original(task, 1), (task, 1), "the same attempt");
        record.apply(
            &resume
                .translate(&event(5, started(Some("node7"))))
                .expect("kept"),
        );
        let finished = EventKind::Finished {
            task,
            attempt: 1,
            outcome: Outcome::Exited(0),
            stdin_bytes: 0,
            will_retry: false,
        };
        record.apply(&resume.translate(&event(9, finished)).expect("kept"));
        let t = record.task(task).expect("task");
        assert_eq!(t.attempts.len(), 1, "{:?}", t.attempts);
        let a = &t.attempts[0];
        assert_eq!(a.started, Duration::from_millis(1), "from its first start");
        assert_eq!(a.host.as_deref(), Some("node7"));
        assert_eq!(t.outcome(), Some(&Outcome::Exited(0)));
    }

    #[test]
    fn unfinished_tasks_come_back_as_their_next_attempt() {
        let record = three_tasks();
        let (specs, resume) = Resumption::plan(&record, ResumeWhat::Unfinished);
        // Task 1 finished (failed); 2 was lost, 3 never started.
        assert_eq!(specs.len(), 2);
        assert_eq!(resume.original(TaskId(1), 1), (TaskId(2), 2));
        assert_eq!(resume.original(TaskId(2), 1), (TaskId(3), 1));
        let (specs, resume) = Resumption::plan(&record, ResumeWhat::UnfinishedAndFailed);
        assert_eq!(specs.len(), 3);
        assert_eq!(resume.original(TaskId(1), 1), (TaskId(1), 2));
    }

    #[test]
    fn events_move_to_the_original_tasks_and_clock() {
        let record = three_tasks();
        let (_, resume) = Resumption::plan(&record, ResumeWhat::Unfinished);
        let started = event(
            5,
            EventKind::Started {
                task: TaskId(1),
                attempt: 1,
                slot: 1,
                pid: Some(42),
                host: None,
            },
        );
        let moved = resume.translate(&started).expect("kept");
        assert!(moved.at >= Duration::from_secs(10), "{:?}", moved.at);
        assert!(matches!(
            moved.kind,
            EventKind::Started {
                task: TaskId(2),
                attempt: 2,
                ..
            }
        ));
        let queued = event(
            0,
            EventKind::Queued {
                task: TaskId(1),
                spec: std::sync::Arc::new(TaskSpec::shell("x")),
            },
        );
        assert!(resume.translate(&queued).is_none(), "the run has its tasks");
    }
}
