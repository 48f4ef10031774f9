//! The workbench application: its state, what the user's actions do, and the eframe glue.
//! Panels live in `ui/`; they read this state and return [`Action`]s, applied here.
//!
//! Its rooms: `window` (the panels laid out, menus, dialogs), `run` (the run on screen and its
//! pool: start, submit, type, retry), `past_runs` (run folders: recovery, resume, open),
//! `files` (task files, presets, file dialogs, exports), `automation` (scripted windows
//! and PNG capture), `persist` (what is kept between sessions).

mod automation;
mod clients;
mod feed;
mod files;
mod list;
mod past_runs;
mod persist;
mod rows;
mod run;
mod window;

pub use crate::ui::actions::{
    Action, Dialog, ExportKind, FilePurpose, PoolStatus, Rerun, SortKey, StateFilter, TemplateForm,
};
use automation::save_png;
use files::FileChoice;
pub use list::LazyRows;
use persist::STORAGE_KEY;
pub use persist::make_state_private;
pub use run::Run;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::executor::{Signal, TaskId, WorkerConfig};
use crate::model::formats::presets::DEFAULT_PRESET;
use crate::model::{PoolPhase, RunRecord, TaskDraft};

/// Time per frame spent applying executor events at most; the rest waits for the next
/// frame.
const EVENT_BUDGET: Duration = Duration::from_millis(8);
/// A frame's whole time (60 Hz, with a millisecond left for the paint): events get what
/// drawing the last frame left of it, down to [`MIN_EVENT_BUDGET`], so a window behind
/// a million-task pool still draws at 60 Hz while it catches up.
const FRAME_TARGET: Duration = Duration::from_millis(15);
const MIN_EVENT_BUDGET: Duration = Duration::from_millis(4);
/// While tasks run, runtimes tick at this rate.
const TICK: Duration = Duration::from_millis(250);
/// Shortest time between two frames drawn only because executor events arrived.
const FRAME_WHILE_BUSY: Duration = TICK;
const MAX_RECENT: usize = 8;
const DEFAULT_KEEP_RUNS: usize = 100;

/// Command-line options of the GUI.
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// Load this task file instead of the last list.
    pub file: Option<PathBuf>,
    /// Press Start as soon as the window opens.
    pub autostart: bool,
    /// Close the pool and quit when every task is over.
    pub exit_when_done: bool,
    /// Save a PNG of the window (when the run is done, or after `screenshot_after`), then quit.
    pub screenshot: Option<PathBuf>,
    pub screenshot_after: Option<Duration>,
    /// The screenshot shows only the timeline (the same crop as Export → Timeline as PNG).
    pub screenshot_timeline: bool,
    /// Watch this command line (a Python program) as soon as the window opens.
    pub watch: Option<String>,
    /// Where runs are kept; `None`: the platform's data directory.
    pub run_dir: Option<PathBuf>,
    /// Keep what the window shows in this JSON file (see `automation::state_dump`).
    pub state_dump: Option<PathBuf>,
    /// The poolscope binary that runs built-in jobs and workers; `None`: this
    /// executable (a test binary names the real one).
    pub helper: Option<PathBuf>,
    /// `file`, already read as a record (`poolscope view` checks it on the terminal
    /// first): shown as it is, not read again.
    pub preloaded: Option<std::sync::Arc<std::sync::Mutex<Option<RunRecord>>>>,
}

/// What a scripted window has done already.
#[derive(Clone, Copy, Debug, Default)]
struct Scripted {
    autostarted: bool,
    screenshot_requested: bool,
}

/// One editor row, and the task it became once submitted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Row {
    pub draft: TaskDraft,
    #[serde(skip)]
    pub task: Option<TaskId>,
}

impl Row {
    /// The row of a record's task at `position`, tied to its task (Start runs it
    /// again).
    pub fn at(record: &RunRecord, position: usize) -> Option<Row> {
        record.task_at(position).map(|t| Row {
            draft: TaskDraft::from_spec(&t.spec),
            task: Some(t.id),
        })
    }

    /// A record's tasks as rows.
    pub fn of_record(record: &RunRecord) -> Vec<Row> {
        (0..record.task_count())
            .filter_map(|i| Row::at(record, i))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub is_error: bool,
}

pub struct PoolscopeApp {
    pub rows: Vec<Row>,
    /// A FIFO being read: its lines join the list and run as they arrive.
    feed: Option<feed::LineFeed>,
    /// Why the FIFO's reading stopped on a bad line: a scripted window exits with 1.
    feed_failed: Option<String>,
    /// The rows are made as they are drawn, from a shown record (a joblog of two million
    /// lines is not two million drafts) or a long task list; `rows` is filled when they
    /// are edited.
    pub lazy: LazyRows,
    pub pool_size: usize,
    /// `None`: a process per task; `Some`: persistent workers (Python's `Pool`).
    pub workers: Option<WorkerConfig>,
    /// Tasks handed to a worker at once at Start; `None`: Python's `map` default.
    pub chunk_size: Option<usize>,
    /// `Some`: tasks run on a Slurm cluster, as job arrays, with these options.
    pub slurm: Option<crate::executor::backend::slurm::SlurmOptions>,
    pub cpu_count: usize,
    pub run: Option<Run>,
    pub selected: Option<TaskId>,
    pub notice: Option<Notice>,
    pub file: Option<PathBuf>,
    pub recent: Vec<PathBuf>,
    /// The File menu's typed path (for desktops without a file-dialog portal).
    pub path_input: String,
    /// The File menu's command line to watch (a Python program).
    pub watch_input: String,
    pub template: TemplateForm,
    pub filter: StateFilter,
    pub sort: SortKey,
    pub timeline: crate::ui::timeline::TimelineState,
    pub console: crate::ui::console::ConsoleState,
    /// The row open in the task editor (a task not submitted yet).
    pub editing: Option<usize>,
    pub editor: crate::ui::editor::EditorState,
    pub dialog: Option<Dialog>,
    /// Where the resizable panels were drawn last frame.
    pub layout: crate::ui::PanelRects,
    file_dialog: Option<Receiver<FileChoice>>,
    options: AppOptions,
    /// What a scripted window (`--autostart`, `--screenshot`) has done already.
    scripted: Scripted,
    quitting: bool,
    screenshot_saved: Arc<AtomicBool>,
    opened: Instant,
    /// The process exit code once the app quits by itself (`--exit-when-done`).
    pub exit_code: Arc<AtomicU8>,
    /// Set from a signal handler: terminate the tasks and quit.
    pub interrupted: Arc<AtomicBool>,
    /// The user's list (and its settings) while the rows show a run being viewed.
    kept: Option<persist::Saved>,
    /// How many past runs are kept under the run root (older ones are removed).
    pub keep_runs: usize,
    /// And at most this many MB of them (0: no cap).
    pub max_runs_mb: u64,
    past_runs: Option<(Instant, Vec<crate::model::store::runs::RunSummary>)>,
    /// The state dump last written (rewritten only when it changes).
    last_dump: String,
    /// The preset the list came from (none once a file is opened).
    pub preset: Option<&'static str>,
    /// Save the window's state at the end of this frame (a run just started).
    save_state_now: bool,
    /// How long the last frame took to lay out (see [`FRAME_TARGET`]).
    last_draw: Duration,
}

impl PoolscopeApp {
    /// A fresh app: the given file, else the seed's Pool demo.
    pub fn new(options: AppOptions) -> Self {
        let cpu_count = num_cpus::get();
        let mut app = Self {
            rows: Vec::new(),
            feed: None,
            feed_failed: None,
            lazy: LazyRows::Made,
            pool_size: cpu_count,
            workers: None,
            chunk_size: None,
            slurm: None,
            cpu_count,
            run: None,
            selected: None,
            notice: None,
            file: None,
            recent: Vec::new(),
            path_input: String::new(),
            watch_input: "python3 script.py".to_owned(),
            template: TemplateForm {
                command: "sleep {}".into(),
                over: "1..4".into(),
                ..TemplateForm::default()
            },
            filter: StateFilter::All,
            sort: SortKey::Order,
            timeline: crate::ui::timeline::TimelineState::default(),
            console: crate::ui::console::ConsoleState::default(),
            editing: None,
            editor: crate::ui::editor::EditorState::default(),
            dialog: None,
            layout: crate::ui::PanelRects::default(),
            file_dialog: None,
            options,
            scripted: Scripted::default(),
            quitting: false,
            screenshot_saved: Arc::new(AtomicBool::new(false)),
            opened: Instant::now(),
            exit_code: Arc::new(AtomicU8::new(0)),
            interrupted: Arc::new(AtomicBool::new(false)),
            keep_runs: DEFAULT_KEEP_RUNS,
            max_runs_mb: 0,
            past_runs: None,
            kept: None,
            last_dump: String::new(),
            preset: None,
            save_state_now: false,
            last_draw: Duration::ZERO,
        };
        let preloaded = app
            .options
            .preloaded
            .take()
            .and_then(|p| p.lock().ok().and_then(|mut r| r.take()));
        match (app.options.file.clone(), preloaded) {
            (Some(path), Some(record)) => app.show_record(record, &path),
            (Some(path), None) => app.open(&path),
            (None, _) => app.load_preset(DEFAULT_PRESET),
        }
        // A scripted window (autostart, exit when done) has nobody to ask.
        let scripted = app.options.autostart || app.options.exit_when_done;
        if !scripted {
            app.offer_recovery();
        }
        app
    }

    pub fn status(&self) -> PoolStatus {
        let Some(run) = &self.run else {
            return PoolStatus::Idle;
        };
        match run.record.phase {
            PoolPhase::Finished => PoolStatus::Finished,
            // A past run shown as its record left it (it may have stopped mid-run).
            _ if run.is_recorded() => PoolStatus::Recorded,
            PoolPhase::Closed => PoolStatus::Closed,
            PoolPhase::Paused => PoolStatus::Paused,
            PoolPhase::Running if run.active() == 0 => PoolStatus::Waiting,
            PoolPhase::Running => PoolStatus::Running,
        }
    }

    fn notify(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            is_error: false,
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            is_error: true,
        });
    }

    pub fn apply(&mut self, action: Action, ctx: &egui::Context) {
        // A finished run whose pool is still open must not block the next one.
        if action.replaces_the_run() {
            self.settle_idle_run();
        }
        if list::changes_rows(&action) && self.refused_while_listing() {
            return;
        }
        match action {
            Action::Start => self.start(ctx),
            Action::SubmitPending => {
                self.make_rows();
                let rows: Vec<usize> = (0..self.rows.len())
                    .filter(|&i| self.rows[i].task.is_none())
                    .collect();
                self.submit_rows(&rows);
            }
            Action::SubmitRow(i) => self.submit_rows(&[i]),
            Action::Pause => self.with_pool(|e| e.pause()),
            Action::Resume => self.with_pool(|e| e.resume()),
            Action::Close => self.close_pool(),
            Action::Terminate => {
                if let Some(run) = &self.run {
                    run.stop_watched();
                }
                self.with_pool(|e| e.terminate());
            }
            Action::Watch(command) => {
                if self.dialog == Some(Dialog::Watch) {
                    self.dialog = None;
                }
                self.watch(&command, ctx);
            }
            Action::WatchPreset(i) => self.watch_preset(i, ctx),
            Action::Resize(size) => {
                self.pool_size = size.max(1);
                let size = self.pool_size;
                self.with_pool(|e| e.resize(size));
            }
            Action::Kill(task) => self.task_command(task, |e| e.kill(task)),
            Action::Interrupt(task) => self.task_command(task, |e| e.signal(task, Signal::SIGINT)),
            Action::Retry(task) => self.retry(task),
            Action::Select(task) => {
                self.selected = Some(task);
                self.restore_output(task);
            }
            Action::AddRow
            | Action::DuplicateRow(_)
            | Action::RemoveRow(_)
            | Action::MoveRow(..)
            | Action::AddFromTemplate
            | Action::AddFromInputs
            | Action::Edit(_) => {
                self.make_rows();
                self.edit_rows(&action);
            }
            Action::LoadPreset(i) => self.load_preset(i),
            Action::OpenDialog => self.file_dialog(FilePurpose::Open),
            Action::TypePath(purpose) => self.dialog = Some(Dialog::TypePath(purpose)),
            Action::WatchDialog => self.dialog = Some(Dialog::Watch),
            bulk @ (Action::BulkAddDialog | Action::InputsDialog | Action::LoadInputs(_)) => {
                self.bulk_add(bulk);
            }
            Action::Open(path) => {
                self.close_path_dialog();
                self.open(&path);
            }
            Action::Save => match self.file.clone() {
                Some(path) => self.save(&path),
                None => self.file_dialog(FilePurpose::SaveTasks),
            },
            Action::SaveAsDialog => self.file_dialog(FilePurpose::SaveTasks),
            Action::ExportDialog(kind) => self.file_dialog(FilePurpose::Export(kind)),
            Action::Export(kind, path) => {
                self.close_path_dialog();
                self.export(kind, &path, ctx);
            }
            Action::SendLine(task, line) => self.send_line(task, line),
            Action::CloseStdin(task) => self.task_command(task, |e| e.close_stdin(task)),
            Action::Rerun(task, how) => self.rerun(task, how),
            Action::SaveAs(path) => {
                self.close_path_dialog();
                self.save(&path);
            }
            Action::ConfirmQuit => {
                self.dialog = None;
                self.quit(ctx);
            }
            Action::LeaveOnClusterAndQuit => self.leave_on_cluster_and_quit(ctx),
            Action::CancelDialog => self.dialog = None,
            Action::OpenRun(dir) => self.open_run(&dir),
            Action::ResumeRun(dir) => self.resume_run(&dir, ctx),
            Action::CloseRun(dir) => self.close_run(&dir),
            Action::Reveal(path) => self.reveal(&path),
            Action::Dismiss => self.notice = None,
        }
    }

    /// Quit, leaving a cluster run's tasks on the cluster.
    fn leave_on_cluster_and_quit(&mut self, ctx: &egui::Context) {
        self.dialog = None;
        self.quitting = true;
        if let Some(executor) = self.run.as_ref().and_then(Run::executor) {
            // No end marker follows: the next start offers the run for Resume.
            executor.detach();
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    /// The bulk-add window: opened, its inputs file chosen or read.
    fn bulk_add(&mut self, action: Action) {
        match action {
            Action::BulkAddDialog => self.dialog = Some(Dialog::BulkAdd),
            Action::InputsDialog => self.file_dialog(FilePurpose::Inputs),
            Action::LoadInputs(path) => {
                self.close_path_dialog();
                self.load_inputs(&path);
            }
            _ => {}
        }
    }

    fn close_path_dialog(&mut self) {
        if matches!(self.dialog, Some(Dialog::TypePath(_))) {
            self.dialog = None;
        }
    }

    /// Terminate whatever runs and close the window.
    fn quit(&mut self, ctx: &egui::Context) {
        self.quitting = true;
        if let Some(run) = &self.run {
            run.stop_watched();
            if let Some(executor) = run.executor() {
                executor.terminate();
            }
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    /// Everything that is not drawing: events, dialogs, window close, automation.
    pub fn logic(&mut self, ctx: &egui::Context) {
        if self.interrupted.load(Ordering::Acquire) && !self.quitting {
            self.exit_code.store(130, Ordering::Release);
            self.quit(ctx);
        }
        if self.pump_events() {
            ctx.request_repaint();
        }
        self.serve_clients(ctx);
        self.pump_feed(ctx);
        self.poll_file_dialog(ctx);
        self.restore_all_output();
        if let Some(command) = self
            .options
            .watch
            .clone()
            .filter(|_| !self.scripted.autostarted)
        {
            self.scripted.autostarted = true;
            self.watch(&command, ctx);
        } else if self.options.autostart && !self.scripted.autostarted {
            self.scripted.autostarted = true;
            // A FIFO's first lines start the pool themselves.
            if self.feed.is_none() {
                self.start(ctx);
            }
        }
        let running = self
            .run
            .as_ref()
            .is_some_and(|r| r.is_live() && r.active() > 0);
        if running {
            ctx.request_repaint_after(TICK);
        }
        if ctx.input(|i| i.viewport().close_requested()) && running && !self.quitting {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.dialog = Some(Dialog::QuitWhileRunning);
        }
        self.automation(ctx);
    }
}

impl eframe::App for PoolscopeApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        PoolscopeApp::logic(self, ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let actions = self.draw(ui);
        for action in actions {
            self.apply(action, ui.ctx());
        }
        if std::mem::take(&mut self.save_state_now)
            && let Some(storage) = frame.storage_mut()
        {
            eframe::set_value(storage, STORAGE_KEY, &self.to_saved());
            storage.flush();
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.to_saved());
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Dropping the executor kills every task group and reaps it before we exit.
        self.run = None;
    }
}
