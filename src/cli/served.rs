//! A headless run's side of its socket: what `poolscope add`, `send`, `kill` … do to a
//! `poolscope run`.

use std::sync::Arc;

use crate::control::{Owner, PoolCommand, Shape};
use crate::executor::{Executor, TaskId, TaskSpec};
use crate::model::RunRecord;
use crate::model::store::journal::JournalWriter;
use crate::model::store::resume::Resumption;

/// Tasks clients added, and whether the run still takes more.
pub struct Additions {
    /// Added while the run's own list still goes to the pool: they queue behind it (the
    /// pool numbers tasks in the order it gets them, and the journal has the list's
    /// numbers already).
    pub held: Vec<Vec<TaskSpec>>,
    /// The run's number for the next task added (or read from stdin).
    pub next_id: u64,
    /// `run --serve`: the run stays open until a client closes it.
    pub serve: bool,
    /// A client closed the run: it takes no more.
    pub closed: bool,
    /// Most added tasks that may wait to start (`--queue-limit`).
    pub most_waiting: usize,
}

impl Additions {
    /// For a run whose own list is `listed` tasks (none when they come from stdin).
    pub fn new(resumption: &Resumption, listed: usize, serve: bool, most_waiting: usize) -> Self {
        Self {
            held: Vec::new(),
            next_id: resumption.original(TaskId(listed as u64 + 1), 0).0.0,
            serve,
            closed: false,
            most_waiting,
        }
    }
}

/// The run loop's state, lent to the socket while it answers.
pub struct Headless<'a> {
    pub record: &'a mut RunRecord,
    pub executor: &'a Executor,
    pub journal: Option<&'a JournalWriter>,
    pub resumption: &'a Resumption,
    pub additions: &'a mut Additions,
    /// Tasks handed to the pool and not over.
    pub in_flight: &'a mut usize,
    /// Tasks handed to the pool, and those of them the record has.
    pub handed: &'a mut usize,
    pub queued_seen: usize,
    /// The run's own list still goes to the pool.
    pub listing: bool,
    /// The run's own tasks are all handed over (the list, stdin).
    pub input_over: bool,
    pub interrupted: bool,
    pub mode: &'static str,
    pub results: Option<&'a std::path::Path>,
    /// Called with how many tasks were added (the progress bar grows).
    pub grew: &'a dyn Fn(usize),
}

impl Headless<'_> {
    fn executor_task(&self, task: TaskId) -> TaskId {
        self.resumption.executor_task(task)
    }
}

impl Owner for Headless<'_> {
    fn record(&self) -> &RunRecord {
        self.record
    }

    fn add(&mut self, specs: Vec<TaskSpec>) -> Result<(u64, u64), String> {
        let count = specs.len();
        let first = self.additions.next_id;
        if let Some(journal) = self.journal {
            let listed: Vec<Arc<TaskSpec>> = specs.iter().cloned().map(Arc::new).collect();
            journal
                .plan(TaskId(first), &listed, self.record.last_event)
                .map_err(|e| format!("cannot add: the run's journal: {e}"))?;
        }
        if self.listing {
            self.additions.held.push(specs);
        } else {
            self.executor
                .submit(specs)
                .map_err(|e| format!("cannot add: {e}"))?;
            *self.in_flight += count;
            *self.handed += count;
        }
        self.additions.next_id += count as u64;
        (self.grew)(count);
        Ok((first, count as u64))
    }

    fn send(&mut self, task: TaskId, bytes: Vec<u8>, eof: bool) -> Result<(), String> {
        let id = self.executor_task(task);
        if !bytes.is_empty() {
            self.executor
                .write_stdin(id, bytes.clone())
                .map_err(|e| e.to_string())?;
            if self.record.task(task).is_some_and(|t| !t.spec.pty) {
                self.record.record_input(task, &bytes);
            }
        }
        if eof {
            self.executor.close_stdin(id).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn command(&mut self, command: PoolCommand) -> Result<(), String> {
        match command {
            PoolCommand::Pause => self.executor.pause(),
            PoolCommand::Resume => self.executor.resume(),
            PoolCommand::Resize(size) => self.executor.resize(size),
            // The run's own tasks still run; it ends when they are done.
            PoolCommand::Close => self.additions.closed = true,
            PoolCommand::Terminate => {
                self.additions.closed = true;
                self.additions.held.clear();
                self.executor.terminate();
            }
            PoolCommand::Kill(task) => {
                let id = self.executor_task(task);
                self.executor.kill(id).map_err(|e| e.to_string())?;
            }
            PoolCommand::Signal(task, signal) => {
                let id = self.executor_task(task);
                self.executor
                    .signal(id, signal)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    fn shape(&self) -> Shape {
        let size = self.record.pool_sizes.last().map_or(0, |&(_, size)| size);
        let work_left = !self.input_over || *self.in_flight > 0 || !self.additions.held.is_empty();
        Shape {
            size,
            mode: self.mode,
            takes_tasks: !self.additions.closed
                && !self.interrupted
                && !self.executor.is_closed()
                && (self.additions.serve || work_left),
            waiting: self.record.tally().queued
                + self.additions.held.iter().map(Vec::len).sum::<usize>(),
            most_waiting: self.additions.most_waiting,
        }
    }

    fn settled(&self) -> bool {
        self.queued_seen >= *self.handed
    }

    fn output_dir(&self) -> Option<std::path::PathBuf> {
        self.results.map(std::path::Path::to_owned)
    }
}
