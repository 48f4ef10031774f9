//! The window's run driven from other terminals (`poolscope add`, `send`, `kill` …):
//! what a client asks is done as the window's own controls do it, so a task added from a
//! terminal is a row of the list and a line typed by `send` shows in the console.

use std::path::PathBuf;

use crate::control::{Control, Owner, PoolCommand, Shape};
use crate::executor::{TaskId, TaskSpec};
use crate::model::{RunRecord, TaskDraft};

use super::{PoolscopeApp, Row};

/// Listen for clients of a run started in the window (its folder `dir`).
pub(super) fn listen(dir: &std::path::Path, ctx: &egui::Context) -> Option<Control> {
    let ctx = ctx.clone();
    match Control::start(
        dir,
        "window",
        std::sync::Arc::new(move || ctx.request_repaint()),
    ) {
        Ok(control) => Some(control),
        Err(e) => {
            log::warn!("this run cannot be driven from other terminals: {e}");
            None
        }
    }
}

impl PoolscopeApp {
    /// Answer what clients asked since the last frame.
    pub(super) fn serve_clients(&mut self, ctx: &egui::Context) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        // A run that is over takes no more requests: `ls` no longer lists it.
        if !run.is_live() {
            run.control = None;
            return;
        }
        let Some(mut control) = run.control.take() else {
            return;
        };
        let served = control.serve(&mut Window { app: self, ctx });
        if let Some(run) = self.run.as_mut() {
            run.control = Some(control);
        }
        if served {
            ctx.request_repaint();
        }
    }
}

/// The window as a run's owner, for one frame's requests.
struct Window<'a> {
    app: &'a mut PoolscopeApp,
    ctx: &'a egui::Context,
}

impl Window<'_> {
    /// The pool's number for the run's task.
    fn executor_task(&self, task: TaskId) -> TaskId {
        self.app
            .run
            .as_ref()
            .map_or(task, |r| r.resumption.executor_task(task))
    }

    fn executor(&self) -> Result<&crate::executor::Executor, String> {
        self.app
            .run
            .as_ref()
            .and_then(super::Run::executor)
            .ok_or_else(|| "the window's run has no pool (a past or watched run)".to_owned())
    }
}

impl Owner for Window<'_> {
    fn record(&self) -> &RunRecord {
        static EMPTY: std::sync::OnceLock<RunRecord> = std::sync::OnceLock::new();
        self.app
            .run
            .as_ref()
            .map_or_else(|| EMPTY.get_or_init(RunRecord::default), |r| &r.record)
    }

    fn add(&mut self, specs: Vec<TaskSpec>) -> Result<(u64, u64), String> {
        if let Some(listing) = self.app.live_run().and_then(|r| r.list.as_ref()) {
            let (fed, total) = listing.progress();
            return Err(format!(
                "the window's list is still going to the pool ({fed} of {total} tasks queued): \
                 add once it is all queued"
            ));
        }
        self.app.make_rows();
        // After the tasks already submitted and before rows still being written: the
        // list reads in task order, and a row not submitted yet keeps its number.
        let at = self
            .app
            .rows
            .iter()
            .rposition(|r| r.task.is_some())
            .map_or(0, |i| i + 1);
        let count = specs.len();
        self.app.rows.splice(
            at..at,
            specs.iter().map(|spec| Row {
                draft: TaskDraft::from_spec(spec),
                task: None,
            }),
        );
        let shift = |row: usize| if row >= at { row + count } else { row };
        self.app.editing = self.app.editing.map(shift);
        let rows: Vec<(usize, TaskSpec)> = (at..).zip(specs).collect();
        match self.app.submit_specs(rows, 1) {
            Ok(ids) => {
                let run = self.app.run.as_ref();
                let first = ids.first().map_or(0, |&id| {
                    run.map_or(id, |r| r.resumption.original(id, 0).0).0
                });
                let last = first + ids.len().saturating_sub(1) as u64;
                self.app.notify(if first == last {
                    format!("Task {first} was added from another terminal")
                } else {
                    format!("Tasks {first} to {last} were added from another terminal")
                });
                Ok((first, ids.len() as u64))
            }
            Err(e) => {
                // Nothing half-added: the rows go with the refusal.
                self.app.rows.drain(at..at + count);
                self.app.editing = self
                    .app
                    .editing
                    .map(|row| if row >= at + count { row - count } else { row });
                Err(e)
            }
        }
    }

    fn send(&mut self, task: TaskId, bytes: Vec<u8>, eof: bool) -> Result<(), String> {
        let id = self.executor_task(task);
        let executor = self.executor()?;
        if !bytes.is_empty() {
            executor
                .write_stdin(id, bytes.clone())
                .map_err(|e| e.to_string())?;
        }
        if eof {
            executor.close_stdin(id).map_err(|e| e.to_string())?;
        }
        // The console shows it as if typed here (a terminal echoes by itself).
        if let Some(run) = self.app.run.as_mut()
            && !bytes.is_empty()
            && run.record.task(task).is_some_and(|t| !t.spec.pty)
        {
            run.record.record_input(task, &bytes);
        }
        Ok(())
    }

    fn command(&mut self, command: PoolCommand) -> Result<(), String> {
        use super::Action;
        match command {
            PoolCommand::Pause => self.app.apply(Action::Pause, self.ctx),
            PoolCommand::Resume => self.app.apply(Action::Resume, self.ctx),
            PoolCommand::Resize(size) => self.app.apply(Action::Resize(size), self.ctx),
            PoolCommand::Close => self.app.apply(Action::Close, self.ctx),
            PoolCommand::Terminate => self.app.apply(Action::Terminate, self.ctx),
            PoolCommand::Kill(task) => {
                let id = self.executor_task(task);
                self.executor()?.kill(id).map_err(|e| e.to_string())?;
            }
            PoolCommand::Signal(task, signal) => {
                let id = self.executor_task(task);
                self.executor()?
                    .signal(id, signal)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    fn shape(&self) -> Shape {
        let run = self.app.live_run();
        Shape {
            size: self.app.pool_size,
            mode: Shape::mode_of(self.app.slurm.is_some(), self.app.workers.is_some()),
            takes_tasks: run.is_some_and(|r| r.is_open() && r.list.is_none()),
            waiting: run.map_or(0, |r| r.record.tally().queued),
            most_waiting: crate::control::serve::MAX_WAITING,
        }
    }

    fn settled(&self) -> bool {
        self.app.run.as_ref().is_none_or(|r| {
            r.next_task <= 1
                || r.record
                    .task(r.resumption.original(TaskId(r.next_task - 1), 0).0)
                    .is_some()
        })
    }

    fn output_dir(&self) -> Option<PathBuf> {
        self.app.run.as_ref().and_then(|r| r.output_dir.clone())
    }
}
