//! The run on screen and its pool: start it, submit rows, type to tasks, retry, rerun,
//! and apply what the executor reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::executor::{Events, Executor, PoolConfig, TaskId};
use crate::model::store::journal::JournalWriter;
use crate::model::store::resume::Resumption;
use crate::model::{PoolPhase, RunRecord, TaskDraft};

use super::{
    EVENT_BUDGET, FRAME_TARGET, FRAME_WHILE_BUSY, LazyRows, MIN_EVENT_BUDGET, Notice, PoolscopeApp,
    Rerun, Row,
};

/// A run on screen: a pool started here (with its executor), or a record opened from a
/// file (a saved run, a GNU parallel joblog), which has none.
pub struct Run {
    pub(super) pool: Option<(Executor, Events)>,
    /// A watched Python program (File › Watch): its pools' events.
    pub(super) watched: Option<(crate::watch::Watch, Events)>,
    /// A past run's stored output was read for the all-tasks view.
    pub(super) all_output_read: bool,
    pub record: RunRecord,
    pub started: Instant,
    /// Run time at which the pool drained.
    pub finished: Option<Duration>,
    /// Where every attempt's full output is saved (read back when a dropped tail is
    /// looked at again).
    pub output_dir: Option<PathBuf>,
    /// The run's journal, written as events arrive (not for watched programs).
    pub(super) journal: Option<Arc<JournalWriter>>,
    /// A long list still going to the pool a batch at a time.
    pub(super) list: Option<super::list::ListRun>,
    /// A resumed run: the executor's events as the original run's.
    pub(super) resumption: Resumption,
    /// A resumed run's executor saves output here (its own task numbers); each file
    /// moves to the run's folder under the original number when its attempt ends.
    pub(super) resume_output: Option<PathBuf>,
    /// The id the pool gives the next task submitted (it numbers them from 1, in
    /// order): the journal lists tasks under it before they are submitted.
    pub(super) next_task: u64,
    /// Why the run was stopped by poolscope itself (its folder could not be written):
    /// what it cancels and kills for that stays unfinished in the journal.
    pub(super) stopped_for: Option<String>,
    /// Events were left for the next frame: the window is behind its pool.
    pub(super) behind: bool,
    /// A watched program's process group, ended by the orphan guard if the window is
    /// killed.
    pub(super) guarded: Option<(&'static crate::executor::watchdog::Watchdog, i32)>,
    /// The latest time [`Run::now`] gave: the clock never runs backwards.
    pub(super) shown: std::cell::Cell<Duration>,
    /// Its socket, while other terminals can drive it (`poolscope add`, `follow` …).
    pub(super) control: Option<crate::control::Control>,
}

impl Run {
    /// A finished record opened from a file.
    pub fn opened(record: RunRecord) -> Self {
        Self {
            pool: None,
            watched: None,
            all_output_read: false,
            finished: Some(record.last_event),
            record,
            started: Instant::now(),
            output_dir: None,
            journal: None,
            list: None,
            guarded: None,
            resumption: Resumption::default(),
            resume_output: None,
            next_task: 1,
            stopped_for: None,
            behind: false,
            shown: std::cell::Cell::default(),
            control: None,
        }
    }

    /// A run of a new executor, journaled in `dir` (where its output goes too).
    pub(super) fn live(pool: (Executor, Events), dir: PathBuf, journal: JournalWriter) -> Self {
        Self {
            pool: Some(pool),
            watched: None,
            all_output_read: false,
            record: RunRecord::default(),
            started: Instant::now(),
            finished: None,
            output_dir: Some(dir),
            journal: Some(Arc::new(journal)),
            list: None,
            guarded: None,
            resumption: Resumption::default(),
            resume_output: None,
            next_task: 1,
            stopped_for: None,
            behind: false,
            shown: std::cell::Cell::default(),
            control: None,
        }
    }

    /// Record an executor event (and journal it); the drain stops the run's clock.
    pub(super) fn apply(&mut self, event: &crate::executor::Event) {
        use crate::executor::EventKind;
        let Some(event) = self.resumption.translate(event) else {
            return;
        };
        self.record.apply(&event);
        if let Some(control) = &mut self.control {
            control.event(&event);
        }
        let stopped_by_us = self.stopped_for.is_some()
            && matches!(
                event.kind,
                EventKind::Cancelled { .. }
                    | EventKind::Finished {
                        outcome: crate::executor::Outcome::Killed,
                        ..
                    }
            );
        // A worker pool's workers exit after the drain: the journal has ended by then
        // (an event after its end marker would read as a run cut short).
        if let Some(journal) = &self.journal
            && !stopped_by_us
            && self.finished.is_none()
        {
            journal.record(&event);
        }
        if self.watched.is_some() {
            self.store_watched_output(&event);
        }
        match &event.kind {
            EventKind::Finished { task, attempt, .. } => self.move_resumed_output(*task, *attempt),
            EventKind::SaveFailed { path, error } => {
                self.stop_for(format!(
                    "cannot save output to {} ({error})",
                    path.display()
                ));
            }
            EventKind::Drained => {
                self.finished = Some(event.at);
                if let Some(journal) = &self.journal {
                    journal.end_soon(&self.record);
                }
            }
            _ => {}
        }
    }

    /// A watched program's output has no executor to save it: kept in the run's folder
    /// here, as the executor keeps a task's (ID.ATTEMPT.stdout and .stderr).
    fn store_watched_output(&mut self, event: &crate::executor::Event) {
        use std::io::Write;
        let crate::executor::EventKind::Output {
            task,
            attempt,
            stream,
            bytes,
        } = &event.kind
        else {
            return;
        };
        let Some(dir) = &self.output_dir else {
            return;
        };
        let path = stream.file_in(dir, *task, *attempt);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(bytes));
        if let Err(e) = written {
            self.stop_for(format!("cannot save output to {} ({e})", path.display()));
        }
    }

    /// The run's folder cannot be written (a full disk): stop the run, keep what was
    /// recorded. The first reason is kept for the user.
    pub(super) fn stop_for(&mut self, reason: String) {
        if self.stopped_for.is_some() {
            return;
        }
        if let Some(executor) = self.executor() {
            executor.terminate();
        }
        self.stopped_for = Some(reason);
    }

    /// A resumed attempt's output files, moved to where the run's own are.
    pub(super) fn move_resumed_output(&self, task: TaskId, attempt: u32) {
        let (Some(from), Some(to)) = (&self.resume_output, &self.output_dir) else {
            return;
        };
        let Some((new_task, new_attempt)) = self.resumption.executor_ids(task, attempt) else {
            return;
        };
        for stream in crate::executor::Stream::BOTH {
            let source = stream.file_in(from, new_task, new_attempt);
            if source.exists()
                && let Err(e) = move_or_append(&source, &stream.file_in(to, task, attempt))
            {
                log::warn!("cannot move {}: {e}", source.display());
            }
        }
    }

    /// What the panels read of it.
    pub fn view(&self) -> crate::ui::RunView<'_> {
        crate::ui::RunView {
            record: &self.record,
            now: self.now(),
            recorded: self.pool.is_none(),
            output_dir: self.output_dir.as_deref(),
        }
    }

    /// Shown as its record left it: read back from a file or a folder, nothing runs it.
    pub fn is_recorded(&self) -> bool {
        self.pool.is_none() && self.watched.is_none()
    }

    pub fn executor(&self) -> Option<&Executor> {
        self.pool.as_ref().map(|(e, _)| e)
    }

    /// The run's clock: it stops at the drain, and at the last event while an open pool
    /// has nothing to do (a finished run not yet closed) or the window is behind its
    /// events (the wall clock would run ahead of what is drawn, then jump back at the
    /// drain). It never runs backwards.
    pub fn now(&self) -> Duration {
        let last = self.record.last_event;
        let now = if let Some(end) = self.finished {
            end
        } else if self.pool.is_some()
            && (self.behind || self.active() == 0)
            && last > Duration::ZERO
        {
            last
        } else {
            self.started.elapsed()
        };
        let now = now.max(self.shown.get());
        self.shown.set(now);
        now
    }

    pub fn is_live(&self) -> bool {
        (self.pool.is_some() || self.watched.is_some()) && self.record.phase != PoolPhase::Finished
    }

    /// Where this run's events come from.
    pub(super) fn events(&self) -> Option<&Events> {
        self.pool
            .as_ref()
            .map(|(_, e)| e)
            .or(self.watched.as_ref().map(|(_, e)| e))
    }

    /// Stop a watched program (its pool goes with it).
    pub(super) fn stop_watched(&self) {
        if let Some((watch, _)) = &self.watched {
            watch.terminate();
        }
    }

    pub fn is_open(&self) -> bool {
        self.executor().is_some_and(|e| !e.is_closed())
    }

    /// Tasks queued, waiting or running (kept by the record: no pass over the tasks).
    pub fn active(&self) -> usize {
        self.record.unfinished() + self.list.as_ref().map_or(0, |l| l.waiting(&self.record))
    }

    /// Its tasks went to a Slurm cluster (they run on without poolscope).
    pub fn on_cluster(&self) -> bool {
        self.output_dir
            .as_deref()
            .is_some_and(crate::executor::backend::slurm::went_to_cluster)
    }
}

/// `source` becomes `target`, or goes on its end when `target` holds the first part of
/// the same attempt's output (one followed again after poolscope stopped watching).
fn move_or_append(source: &Path, target: &Path) -> std::io::Result<()> {
    if !target.exists() {
        return std::fs::rename(source, target);
    }
    let mut out = std::fs::OpenOptions::new().append(true).open(target)?;
    std::io::copy(&mut std::fs::File::open(source)?, &mut out)?;
    std::fs::remove_file(source)
}

impl PoolscopeApp {
    /// An open pool with nothing queued or running is a finished run the user has not
    /// closed: close it (its journal ends), keep it on screen, and let the next one start.
    pub(super) fn settle_idle_run(&mut self) {
        let Some(run) = &mut self.run else { return };
        if !run.is_open() || run.active() > 0 || run.watched.is_some() {
            return;
        }
        if let Some(executor) = run.executor() {
            executor.close();
        }
        run.record.phase = PoolPhase::Finished;
        run.finished = Some(run.record.last_event);
        if let Some(journal) = &run.journal {
            journal.end_soon(&run.record);
        }
        // Nothing runs in it: dropping the executor kills nothing.
        run.pool = None;
    }

    pub fn live_run(&self) -> Option<&Run> {
        self.run.as_ref().filter(|r| r.is_live())
    }

    /// Rows in the list (a shown record's tasks, made or not).
    pub fn row_count(&self) -> usize {
        self.lazy
            .count(self.run.as_ref().map(|r| &r.record))
            .unwrap_or(self.rows.len())
    }

    /// A shown record's tasks as rows: a record this big lists its tasks from the
    /// record as they are drawn, a smaller one as rows at once.
    pub(super) fn set_record_rows(&mut self, record: &RunRecord) {
        if record.task_count() > ROWS_MADE_AT_ONCE {
            self.lazy = LazyRows::Record;
            self.rows = Vec::new();
        } else {
            self.lazy = LazyRows::Made;
            self.rows = Row::of_record(record);
        }
    }

    /// The shown record's tasks made into rows, to be edited or run again.
    pub(super) fn make_rows(&mut self) {
        let record = self.run.as_ref().map(|r| &r.record);
        if self.lazy.count(record).is_some() {
            self.rows = self.lazy.make_all(record);
            self.lazy = LazyRows::Made;
        }
    }

    /// Rows not yet handed to the pool.
    pub fn pending_rows(&self) -> usize {
        self.rows.iter().filter(|r| r.task.is_none()).count()
    }

    /// Why Start cannot run now, in words.
    pub fn start_blocker(&self) -> Option<String> {
        if self.live_run().is_some() {
            return Some("a run is in progress: add tasks to it, or Terminate it first".into());
        }
        if self.row_count() == 0 {
            return Some("there are no tasks: add one first".into());
        }
        self.rows.iter().enumerate().find_map(|(i, r)| {
            r.draft
                .problem()
                .map(|p| format!("task {} cannot run: {p}", i + 1))
        })
    }

    /// Drain executor events within the frame budget. Returns whether events remain.
    pub fn pump_events(&mut self) -> bool {
        let Some(run) = &mut self.run else {
            return false;
        };
        let budget = FRAME_TARGET
            .saturating_sub(self.last_draw)
            .clamp(MIN_EVENT_BUDGET, EVENT_BUDGET);
        let deadline = Instant::now() + budget;
        let mut more = true;
        while Instant::now() < deadline {
            let Some(event) = run.events().and_then(Events::try_recv) else {
                more = false;
                break;
            };
            run.apply(&event);
        }
        run.behind = more;
        super::list::feed_pool(run);
        if let Some(journal) = &run.journal {
            journal.send();
            if run.stopped_for.is_none()
                && let Some(e) = journal.error()
            {
                run.stop_for(format!("cannot write the run's journal ({e})"));
            }
        }
        if let Some(reason) = run.stopped_for.clone()
            && self
                .notice
                .as_ref()
                .is_none_or(|n| !n.text.contains(&reason))
            && run.record.phase != PoolPhase::Finished
        {
            let dir = run
                .output_dir
                .as_ref()
                .map_or_else(String::new, |d| d.display().to_string());
            self.notice = Some(Notice {
                text: format!(
                    "The run was stopped: {reason}. What was recorded is intact in {dir}; \
                     make room and resume it from File › Past runs"
                ),
                is_error: true,
            });
        }
        let Some(run) = &mut self.run else {
            return more;
        };
        // A watched program that ended needs the orphan guard no more.
        if run.record.phase == PoolPhase::Finished
            && let Some((guard, group)) = run.guarded.take()
        {
            guard.untrack(group);
        }
        if let Some((watch, _)) = &run.watched
            && run.record.phase == PoolPhase::Finished
            && !watch.saw_inside()
            && !run.record.markers.is_empty()
            && self
                .notice
                .as_ref()
                .is_none_or(|n| !n.text.contains("nothing inside"))
        {
            let text = "The program ran, but nothing inside it was visible: its Python did not \
                        load the watch (python -I or -S, Python before 3.8, or not Python)";
            self.notice = Some(Notice {
                text: text.to_owned(),
                is_error: true,
            });
        }
        // A watched program's tasks are the table's rows, as they are submitted.
        if run.watched.is_some() && self.rows.len() < run.record.task_count() {
            let new =
                (self.rows.len()..run.record.task_count()).filter_map(|i| run.record.task_at(i));
            self.rows.extend(new.map(|t| Row {
                draft: TaskDraft::from_spec(&t.spec),
                task: Some(t.id),
            }));
        }
        more
    }

    /// Wait at most `timeout` for the next executor event and apply it (for tests and
    /// headless drivers that have nothing else to do meanwhile).
    pub fn wait_for_event(&mut self, timeout: Duration) -> bool {
        let Some(run) = &mut self.run else {
            return false;
        };
        let Some(event) = run.events().and_then(|events| events.recv_timeout(timeout)) else {
            return false;
        };
        run.apply(&event);
        if let Some(journal) = &run.journal {
            journal.send();
        }
        true
    }

    /// Act on the live pool, if there is one.
    pub(super) fn with_pool(&self, f: impl FnOnce(&Executor)) {
        if let Some(executor) = self.live_run().and_then(Run::executor) {
            f(executor);
        }
    }

    pub(super) fn task_command(
        &mut self,
        task: TaskId,
        f: impl FnOnce(&Executor) -> Result<(), crate::executor::CommandError>,
    ) {
        if let Some(executor) = self.run.as_ref().and_then(Run::executor)
            && let Err(e) = f(executor)
        {
            self.error(e.to_string());
        }
        self.selected = Some(task);
    }

    pub(super) fn start(&mut self, ctx: &egui::Context) {
        if let Some(reason) = self.start_blocker() {
            self.error(format!("Cannot start: {reason}"));
            return;
        }
        // Running the rows makes them the user's list; a long file's list runs as it is.
        let list = if let LazyRows::List(list) = &self.lazy {
            Some(Arc::clone(list))
        } else {
            self.make_rows();
            None
        };
        self.kept = None;
        let lock = match self.new_run_folder() {
            Ok(lock) => lock,
            Err(e) => {
                self.error(format!("Cannot start: {e}"));
                return;
            }
        };
        let output_dir = lock.dir().to_owned();
        let about = crate::model::store::journal::RunAbout {
            source: self.list_source(),
            workers: self.workers.clone(),
            chunk_size: self.chunk_size,
            watched: false,
        };
        let journal = match JournalWriter::create_about(lock, &about) {
            Ok(journal) => journal,
            Err(e) => {
                self.error(format!("Cannot start: {e}"));
                return;
            }
        };
        let waker_ctx = ctx.clone();
        let config = PoolConfig {
            size: self.pool_size,
            output_dir: Some(output_dir.clone()),
            create_empty_output_files: false,
            workers: self.workers.clone(),
            helper: self.options.helper.clone(),
            // The arrays' scripts, output and records go in the run's folder.
            slurm: self
                .slurm
                .clone()
                .map(|options| crate::executor::SlurmSettings {
                    options,
                    folder: crate::executor::backend::slurm::folder_of(&output_dir),
                    ..crate::executor::SlurmSettings::default()
                }),
            ..PoolConfig::default()
        };
        // A busy pool hands over events up to a thousand times a second; the window
        // redraws at most every FRAME_WHILE_BUSY for them (input still redraws at once).
        let waker = move || waker_ctx.request_repaint_after(FRAME_WHILE_BUSY);
        let (executor, events) = Executor::start(config, Some(Arc::new(waker)));
        let control = super::clients::listen(&output_dir, ctx);
        self.run = Some(Run {
            control,
            ..Run::live((executor, events), output_dir, journal)
        });
        for row in &mut self.rows {
            row.task = None;
        }
        self.selected = None;
        self.notice = None;
        // The list goes out as one map: on workers, in chunks (Python's default size
        // unless the file set one); tasks added later go one by one (apply_async).
        let count = list.as_ref().map_or(self.rows.len(), |l| l.len());
        let chunk = match self.workers {
            Some(_) => self.chunk_size.unwrap_or_else(|| {
                crate::model::formats::taskfile::python_chunksize(count, self.pool_size)
            }),
            None => 1,
        };
        if let Some(list) = list {
            self.start_list(list, chunk, ctx);
        } else {
            let all: Vec<usize> = (0..self.rows.len()).collect();
            self.submit_rows_in_chunks(&all, chunk);
        }
        // Show the first task's output at once: the demo then speaks for itself.
        self.selected = match &self.lazy {
            LazyRows::List(_) => Some(TaskId(1)),
            _ => self.rows.first().and_then(|r| r.task),
        };
        // The list that runs is saved now: after a crash, the next window has it.
        self.save_state_now = true;
    }

    /// What the list came from, as Past runs names it: its file, else its preset.
    pub(super) fn list_source(&self) -> Option<String> {
        match (&self.file, self.preset) {
            (Some(file), _) => Some(file.display().to_string()),
            (None, Some(preset)) => Some(format!("preset: {preset}")),
            (None, None) => None,
        }
    }

    /// Run a Python program (a shell command line) watched: its pools fill the timeline
    /// as they run. The task list stays as it is.
    pub(super) fn watch(&mut self, command: &str, ctx: &egui::Context) {
        if self.live_run().is_some() {
            self.error(
                "A run is in progress: wait for it or Terminate it before watching a program",
            );
            return;
        }
        // Kept with the other runs (Past runs lists it, with the program's output).
        let journal = self
            .new_run_folder()
            .map_err(|e| e.to_string())
            .and_then(|lock| {
                let about = crate::model::store::journal::RunAbout {
                    source: Some(command.to_owned()),
                    watched: true,
                    ..crate::model::store::journal::RunAbout::default()
                };
                JournalWriter::create_about(lock, &about).map_err(|e| e.to_string())
            });
        let journal = match journal {
            Ok(journal) => journal,
            Err(e) => {
                self.error(format!("Cannot watch: {e}"));
                return;
            }
        };
        let output_dir = journal.dir().to_owned();
        // The shim and its socket live in the run's own folder while it is watched.
        let dir = match crate::watch::folder_in(&output_dir) {
            Ok(dir) => dir,
            Err(e) => {
                self.error(format!("Cannot watch: no folder for the watch: {e}"));
                return;
            }
        };
        let waker_ctx = ctx.clone();
        let waker = move || waker_ctx.request_repaint_after(FRAME_WHILE_BUSY);
        let argv = ["/bin/sh".into(), "-c".into(), command.into()];
        match crate::watch::start_with(&argv, &dir, Some(Arc::new(waker)), true) {
            Ok((watch, events)) => {
                // The guard ends the program and all it started if the window is killed.
                let guarded = crate::executor::watchdog::shared().map(|guard| {
                    guard.track(watch.group().as_raw());
                    (guard, watch.group().as_raw())
                });
                self.kept = None;
                self.rows.clear();
                self.lazy = LazyRows::Made;
                self.file = None;
                self.run = Some(Run {
                    watched: Some((watch, events)),
                    record: RunRecord::default(),
                    finished: None,
                    output_dir: Some(output_dir),
                    journal: Some(Arc::new(journal)),
                    guarded,
                    ..Run::opened(RunRecord::default())
                });
                // The program's own output (task 0) is what a user looks for first.
                self.selected = Some(TaskId(0));
                self.notify(format!(
                    "Watching `{command}`: its pools appear as they run (by PID shows the workers)"
                ));
            }
            Err(e) => self.error(format!("Cannot watch `{command}`: {e}")),
        }
    }

    /// Write a built-in Python program to a private folder and watch it.
    pub(super) fn watch_preset(&mut self, index: usize, ctx: &egui::Context) {
        let Some(&(_, name, text)) = crate::model::formats::presets::WATCH_PRESETS.get(index)
        else {
            return;
        };
        let written = crate::watch::run_folder().and_then(|dir| {
            let path = dir.join(name);
            std::fs::write(&path, text).map(|()| path)
        });
        match written {
            Ok(path) => {
                let command = format!("python3 '{}'", path.display());
                self.watch_input.clone_from(&command);
                self.watch(&command, ctx);
            }
            Err(e) => self.error(format!("Cannot write the program to watch: {e}")),
        }
    }

    pub(super) fn submit_rows(&mut self, rows: &[usize]) {
        self.submit_rows_in_chunks(rows, 1);
    }

    pub(super) fn submit_rows_in_chunks(&mut self, rows: &[usize], chunk: usize) {
        if self.run.as_ref().is_none_or(|r| !r.is_live()) {
            self.error("No pool is running: press Start");
            return;
        }
        let mut specs = Vec::new();
        for &i in rows {
            let Some(row) = self.rows.get(i).filter(|r| r.task.is_none()) else {
                continue;
            };
            match row.draft.to_spec() {
                Ok(spec) => specs.push((i, spec)),
                Err(e) => {
                    self.error(format!("Task {} cannot run: {e}", i + 1));
                    return;
                }
            }
        }
        if let Err(e) = self.submit_specs(specs, chunk) {
            self.error(e);
        }
    }

    /// Submit rows' tasks (row index, spec) to the live pool, journaled first; each row
    /// is tied to its task. The pool's task numbers, or why nothing was submitted.
    pub(super) fn submit_specs(
        &mut self,
        specs: Vec<(usize, crate::executor::TaskSpec)>,
        chunk: usize,
    ) -> Result<Vec<TaskId>, String> {
        let Some(run) = self.run.as_ref().filter(|r| r.is_live()) else {
            return Err("No pool is running: press Start".into());
        };
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let Some(executor) = run.executor() else {
            return Err("This run has no pool to add to (a watched program's)".into());
        };
        if executor.is_closed() {
            // Before the journal: a refused task must not be listed there.
            return Err(format!(
                "Cannot add tasks: {}. Press Start for a new run.",
                crate::executor::CommandError::PoolClosed
            ));
        }
        let (rows, specs): (Vec<usize>, Vec<crate::executor::TaskSpec>) = specs.into_iter().unzip();
        // The journal lists them before any can start, under the run's numbers (a
        // resumed run's new tasks follow its old ones).
        if let Some(journal) = &run.journal {
            let listed: Vec<Arc<crate::executor::TaskSpec>> =
                specs.iter().cloned().map(Arc::new).collect();
            let first = run.resumption.original(TaskId(run.next_task), 0).0;
            if let Err(e) = journal.plan(first, &listed, run.now()) {
                return Err(format!("Cannot add tasks: the run's journal: {e}"));
            }
        }
        match executor.submit_map(specs, chunk) {
            Ok(ids) => {
                if let (Some(run), Some(last)) = (self.run.as_mut(), ids.last()) {
                    run.next_task = last.0 + 1;
                }
                for (&i, id) in rows.iter().zip(&ids) {
                    self.rows[i].task = Some(*id);
                }
                Ok(ids)
            }
            Err(e) => Err(format!("Cannot add tasks: {e}. Press Start for a new run.")),
        }
    }

    /// Type a line to a running task; in a pipe it is echoed into the console as input
    /// (a terminal echoes it by itself).
    pub(super) fn send_line(&mut self, task: TaskId, line: String) {
        let Some(run) = self.run.as_mut() else { return };
        let Some(executor) = run.executor() else {
            self.console.input = line;
            self.error("Not sent: this run's tasks take no typed input (a past or watched run)");
            return;
        };
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        match executor.write_stdin(task, bytes.clone()) {
            Ok(()) => {
                if run.record.task(task).is_some_and(|t| !t.spec.pty) {
                    run.record.record_input(task, &bytes);
                }
                if self.console.history.last() != Some(&line) && !line.is_empty() {
                    self.console.history.push(line);
                }
            }
            Err(e) => {
                // Keep what was typed so nothing is lost.
                self.console.input = line;
                self.error(format!("Could not send: {e}"));
            }
        }
    }

    /// A copy of a task's spec, from the run on screen.
    fn task_spec(&self, task: TaskId) -> Option<crate::executor::TaskSpec> {
        self.run
            .as_ref()
            .and_then(|r| r.record.task(task))
            .map(|t| (*t.spec).clone())
    }

    /// Run a copy of a task with output unbuffered, or in a terminal.
    pub(super) fn rerun(&mut self, task: TaskId, how: Rerun) {
        let Some(spec) = self.task_spec(task) else {
            return;
        };
        let spec = match how {
            Rerun::Unbuffered => spec.with_env("PYTHONUNBUFFERED", "1"),
            Rerun::InTerminal => {
                let mut spec = spec.with_pty();
                if spec.stdin == crate::executor::StdinMode::Null {
                    spec.stdin = crate::executor::StdinMode::Pipe;
                }
                spec
            }
        };
        self.add_and_run(&spec);
    }

    pub(super) fn retry(&mut self, task: TaskId) {
        if self.run.as_ref().is_some_and(|r| r.watched.is_some()) {
            self.error(
                "A watched program's task is a call inside that program: run the program \
                 again (File › Watch) to run it again",
            );
            return;
        }
        let Some(spec) = self.task_spec(task) else {
            return;
        };
        self.add_and_run(&spec);
    }

    /// A new row for `spec`, run at once if the pool is open (else on the next Start);
    /// the new task is selected.
    pub(super) fn add_and_run(&mut self, spec: &crate::executor::TaskSpec) {
        if self.refused_while_listing() {
            return;
        }
        self.make_rows();
        self.rows.push(Row {
            draft: TaskDraft::from_spec(spec),
            task: None,
        });
        let last = self.rows.len() - 1;
        if self.live_run().is_some_and(Run::is_open) {
            self.submit_rows(&[last]);
            self.selected = self.rows[last].task.or(self.selected);
        } else {
            self.notify("Added a copy of the task; press Start to run it");
        }
    }

    /// A run read back from its folder shows every task's output in the all-tasks view
    /// (its record holds none until asked).
    pub(super) fn restore_all_output(&mut self) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let wanted = self.console.all_tasks && run.is_recorded() && !run.all_output_read;
        let Some(dir) = run.output_dir.clone().filter(|_| wanted) else {
            return;
        };
        run.all_output_read = true;
        if let Err(e) = run.record.interleave_stored(&dir) {
            self.error(format!(
                "Cannot read the run's output back from {}: {e}",
                dir.display()
            ));
        }
    }

    /// A task whose output was dropped to keep memory within budget: read its newest
    /// output back from the run's files (a few MiB, only when the user selects it).
    pub(super) fn restore_output(&mut self, task: TaskId) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let Some(dir) = run.output_dir.clone() else {
            return;
        };
        if let Err(e) = run.record.restore_output(task, &dir) {
            self.error(format!(
                "Cannot read task {task}'s output back from {}: {e}",
                dir.display()
            ));
        }
    }
}

/// Most tasks of a shown record made into rows when it opens; a bigger one's rows are
/// made from the record as they are drawn.
pub(super) const ROWS_MADE_AT_ONCE: usize = 20_000;
