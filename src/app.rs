//! The workbench application: its state, what the user's actions do, and the eframe glue.
//! Panels live in `ui/`; they read this state and return [`Action`]s, applied here.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::executor::{Events, Executor, PoolConfig, Signal, TaskId, WorkerConfig};
use crate::model::journal::JournalWriter;
use crate::model::presets::{DEFAULT_PRESET, PRESETS};
use crate::model::resume::{ResumeWhat, Resumption};
use crate::model::{PoolPhase, RunRecord, TaskDraft, taskfile};

/// Time per frame spent applying executor events; the rest waits for the next frame.
const EVENT_BUDGET: Duration = Duration::from_millis(8);
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
}

/// One editor row, and the task it became once submitted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Row {
    pub draft: TaskDraft,
    #[serde(skip)]
    pub task: Option<TaskId>,
}

/// A run on screen: a pool started here (with its executor), or a record opened from a
/// file (a saved run, a GNU parallel joblog), which has none.
pub struct Run {
    pool: Option<(Executor, Events)>,
    /// A watched Python program (File › Watch): its pools' events.
    watched: Option<(crate::watch::Watch, Events)>,
    pub record: RunRecord,
    pub started: Instant,
    /// Run time at which the pool drained.
    pub finished: Option<Duration>,
    /// Where every attempt's full output is saved (read back when a dropped tail is
    /// looked at again).
    pub output_dir: Option<PathBuf>,
    /// The run's journal, written as events arrive (not for watched programs).
    journal: Option<JournalWriter>,
    /// A resumed run: the executor's events as the original run's.
    resumption: Resumption,
    /// A resumed run's executor saves output here (its own task numbers); each file
    /// moves to the run's folder under the original number when its attempt ends.
    resume_output: Option<PathBuf>,
}

impl Run {
    /// A finished record opened from a file.
    pub fn opened(record: RunRecord) -> Self {
        Self {
            pool: None,
            watched: None,
            finished: Some(record.last_event),
            record,
            started: Instant::now(),
            output_dir: None,
            journal: None,
            resumption: Resumption::default(),
            resume_output: None,
        }
    }

    /// A run of a new executor, journaled in `dir` (where its output goes too).
    fn live(pool: (Executor, Events), dir: PathBuf, journal: JournalWriter) -> Self {
        Self {
            pool: Some(pool),
            watched: None,
            record: RunRecord::default(),
            started: Instant::now(),
            finished: None,
            output_dir: Some(dir),
            journal: Some(journal),
            resumption: Resumption::default(),
            resume_output: None,
        }
    }

    /// Record an executor event (and journal it); the drain stops the run's clock.
    fn apply(&mut self, event: &crate::executor::Event) {
        use crate::executor::EventKind;
        let Some(event) = self.resumption.translate(event) else {
            return;
        };
        self.record.apply(&event);
        if let Some(journal) = &self.journal {
            journal.record(&event);
        }
        match &event.kind {
            EventKind::Finished { task, attempt, .. } => self.move_resumed_output(*task, *attempt),
            EventKind::Drained => {
                self.finished = Some(event.at);
                if let Some(journal) = &self.journal {
                    journal.end_soon(&self.record);
                }
            }
            _ => {}
        }
    }

    /// A resumed attempt's output files, moved to where the run's own are.
    fn move_resumed_output(&self, task: TaskId, attempt: u32) {
        let (Some(from), Some(to)) = (&self.resume_output, &self.output_dir) else {
            return;
        };
        let Some((new_task, new_attempt)) = self.resumption.executor_ids(task, attempt) else {
            return;
        };
        for stream in ["stdout", "stderr"] {
            let source = from.join(format!("{new_task}.{new_attempt}.{stream}"));
            if source.exists()
                && let Err(e) =
                    std::fs::rename(&source, to.join(format!("{task}.{attempt}.{stream}")))
            {
                log::warn!("cannot move {}: {e}", source.display());
            }
        }
    }

    pub fn executor(&self) -> Option<&Executor> {
        self.pool.as_ref().map(|(e, _)| e)
    }

    /// The run's clock: it stops at the drain, and at the last event while an open pool
    /// has nothing to do (a finished run not yet closed).
    pub fn now(&self) -> Duration {
        if let Some(end) = self.finished {
            return end;
        }
        if self.pool.is_some() && self.active() == 0 && self.record.last_event > Duration::ZERO {
            return self.record.last_event;
        }
        self.started.elapsed()
    }

    pub fn is_live(&self) -> bool {
        (self.pool.is_some() || self.watched.is_some()) && self.record.phase != PoolPhase::Finished
    }

    /// Where this run's events come from.
    fn events(&self) -> Option<&Events> {
        self.pool
            .as_ref()
            .map(|(_, e)| e)
            .or(self.watched.as_ref().map(|(_, e)| e))
    }

    /// Stop a watched program (its pool goes with it).
    fn stop_watched(&self) {
        if let Some((watch, _)) = &self.watched {
            watch.terminate();
        }
    }

    pub fn is_open(&self) -> bool {
        self.executor().is_some_and(|e| !e.is_closed())
    }

    /// Tasks queued, waiting or running (kept by the record: no pass over the tasks).
    pub fn active(&self) -> usize {
        self.record.unfinished()
    }
}

/// What the pool is doing, as shown to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolStatus {
    Idle,
    Running,
    /// Open, every task done: more can be added.
    Waiting,
    Paused,
    /// Closed, still draining.
    Closed,
    Finished,
}

impl PoolStatus {
    pub fn label(self) -> &'static str {
        match self {
            PoolStatus::Idle => "idle",
            PoolStatus::Running => "running",
            PoolStatus::Waiting => "open, all done: add tasks or Close",
            PoolStatus::Paused => "paused",
            PoolStatus::Closed => "closed, draining",
            PoolStatus::Finished => "finished",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub is_error: bool,
}

/// A user's request, collected while drawing and applied afterwards.
#[must_use]
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Start,
    SubmitPending,
    SubmitRow(usize),
    Pause,
    Resume,
    Close,
    Terminate,
    Resize(usize),
    Kill(TaskId),
    Interrupt(TaskId),
    Retry(TaskId),
    Select(TaskId),
    AddRow,
    DuplicateRow(usize),
    RemoveRow(usize),
    MoveRow(usize, isize),
    AddFromTemplate,
    LoadPreset(usize),
    OpenDialog,
    Open(PathBuf),
    /// Run this command line (a Python program) and show what its pools do.
    Watch(String),
    /// Watch one of the built-in Python programs.
    WatchPreset(usize),
    Save,
    SaveAsDialog,
    SaveAs(PathBuf),
    ExportDialog(ExportKind),
    /// Type a line (a newline is added) to a running task.
    SendLine(TaskId, String),
    CloseStdin(TaskId),
    Rerun(TaskId, Rerun),
    Export(ExportKind, PathBuf),
    ConfirmQuit,
    CancelDialog,
    /// A past run, from its journal: open it, go on with it, or close it as it is.
    OpenRun(PathBuf),
    ResumeRun(PathBuf),
    CloseRun(PathBuf),
    /// Show a folder (a run's, the runs root) in the file manager.
    Reveal(PathBuf),
    Dismiss,
}

/// How to run a task again when its output seems stuck in a pipe buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rerun {
    /// With `PYTHONUNBUFFERED=1`.
    Unbuffered,
    /// In a pseudo-terminal.
    InTerminal,
}

/// Which modal is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dialog {
    QuitWhileRunning,
    /// A run that did not end cleanly (poolscope was killed or crashed): what it holds.
    Recover {
        dir: PathBuf,
        summary: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateForm {
    pub command: String,
    pub over: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateFilter {
    #[default]
    All,
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl StateFilter {
    pub const ALL: [StateFilter; 5] = [
        StateFilter::All,
        StateFilter::Pending,
        StateFilter::Running,
        StateFilter::Succeeded,
        StateFilter::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            StateFilter::All => "all",
            StateFilter::Pending => "not started",
            StateFilter::Running => "running",
            StateFilter::Succeeded => "succeeded",
            StateFilter::Failed => "failed",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Order,
    Started,
    Runtime,
    State,
}

impl SortKey {
    pub const ALL: [SortKey; 4] = [
        SortKey::Order,
        SortKey::Started,
        SortKey::Runtime,
        SortKey::State,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Order => "list order",
            SortKey::Started => "start time",
            SortKey::Runtime => "runtime",
            SortKey::State => "state",
        }
    }
}

/// What eframe persists between sessions.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Saved {
    rows: Vec<Row>,
    pool_size: Option<usize>,
    recent: Vec<PathBuf>,
    file: Option<PathBuf>,
    workers: Option<WorkerConfig>,
    chunk_size: Option<usize>,
    #[serde(default)]
    keep_runs: Option<usize>,
    #[serde(default)]
    max_runs_mb: u64,
}

const STORAGE_KEY: &str = "poolscope";

pub struct PoolscopeApp {
    pub rows: Vec<Row>,
    pub pool_size: usize,
    /// `None`: a process per task; `Some`: persistent workers (Python's `Pool`).
    pub workers: Option<WorkerConfig>,
    /// Tasks handed to a worker at once at Start; `None`: Python's `map` default.
    pub chunk_size: Option<usize>,
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
    pub dialog: Option<Dialog>,
    file_dialog: Option<Receiver<FileChoice>>,
    options: AppOptions,
    autostarted: bool,
    quitting: bool,
    screenshot_requested: bool,
    screenshot_saved: Arc<AtomicBool>,
    opened: Instant,
    /// The process exit code once the app quits by itself (`--exit-when-done`).
    pub exit_code: Arc<AtomicU8>,
    /// Set from a signal handler: terminate the tasks and quit.
    pub interrupted: Arc<AtomicBool>,
    /// How many past runs are kept under the run root (older ones are removed).
    pub keep_runs: usize,
    /// And at most this many MB of them (0: no cap).
    pub max_runs_mb: u64,
    past_runs: Option<(Instant, Vec<crate::model::runs::RunSummary>)>,
}

impl Action {
    /// Whether it starts, loads or opens something in place of the current run.
    fn replaces_the_run(&self) -> bool {
        matches!(
            self,
            Action::Start
                | Action::Watch(_)
                | Action::WatchPreset(_)
                | Action::LoadPreset(_)
                | Action::Open(_)
                | Action::OpenRun(_)
                | Action::ResumeRun(_)
        )
    }
}

/// What a file dialog was opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilePurpose {
    /// A task file, a saved run or a GNU parallel joblog.
    Open,
    SaveTasks,
    Export(ExportKind),
}

/// Ways to write the current run out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    /// The full record, to open again later.
    Run,
    ChromeTrace,
    Joblog,
    Csv,
    /// A picture of the timeline.
    TimelinePng,
}

impl ExportKind {
    pub const ALL: [ExportKind; 5] = [
        ExportKind::Run,
        ExportKind::ChromeTrace,
        ExportKind::Joblog,
        ExportKind::Csv,
        ExportKind::TimelinePng,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ExportKind::Run => "Save run (to open later)…",
            ExportKind::ChromeTrace => "Chrome trace (Perfetto)…",
            ExportKind::Joblog => "GNU parallel joblog…",
            ExportKind::Csv => "CSV…",
            ExportKind::TimelinePng => "Timeline as PNG…",
        }
    }

    /// The kind in a word or two, for "… to the path".
    pub fn short_label(self) -> &'static str {
        match self {
            ExportKind::Run => "Run",
            ExportKind::ChromeTrace => "Trace",
            ExportKind::Joblog => "Joblog",
            ExportKind::Csv => "CSV",
            ExportKind::TimelinePng => "PNG",
        }
    }

    fn file_name(self) -> (&'static str, &'static str, &'static str) {
        match self {
            ExportKind::Run => ("run.poolscope.json", "poolscope run", "json"),
            ExportKind::ChromeTrace => ("trace.json", "Chrome trace", "json"),
            ExportKind::Joblog => ("joblog.tsv", "Joblog", "tsv"),
            ExportKind::Csv => ("run.csv", "CSV", "csv"),
            ExportKind::TimelinePng => ("timeline.png", "PNG image", "png"),
        }
    }
}

struct FileChoice {
    purpose: FilePurpose,
    path: Option<PathBuf>,
    /// How long the dialog was open: a "cancel" at once means none could open.
    open_for: Duration,
}

/// A dialog that answers faster than this never showed (no desktop portal).
const DIALOG_NEVER_SHOWN: Duration = Duration::from_millis(300);

impl PoolscopeApp {
    /// A fresh app: the given file, else the seed's Pool demo.
    pub fn new(options: AppOptions) -> Self {
        let cpu_count = num_cpus::get();
        let mut app = Self {
            rows: Vec::new(),
            pool_size: cpu_count,
            workers: None,
            chunk_size: None,
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
            },
            filter: StateFilter::All,
            sort: SortKey::Order,
            timeline: crate::ui::timeline::TimelineState::default(),
            console: crate::ui::console::ConsoleState::default(),
            dialog: None,
            file_dialog: None,
            options,
            autostarted: false,
            quitting: false,
            screenshot_requested: false,
            screenshot_saved: Arc::new(AtomicBool::new(false)),
            opened: Instant::now(),
            exit_code: Arc::new(AtomicU8::new(0)),
            interrupted: Arc::new(AtomicBool::new(false)),
            keep_runs: DEFAULT_KEEP_RUNS,
            max_runs_mb: 0,
            past_runs: None,
        };
        match app.options.file.clone() {
            Some(path) => app.open(&path),
            None => app.load_preset(DEFAULT_PRESET),
        }
        // A scripted window (autostart, exit when done) has nobody to ask.
        let scripted = app.options.autostart || app.options.exit_when_done;
        if !scripted {
            app.offer_recovery();
        }
        app
    }

    fn run_root(&self) -> Result<crate::model::runs::RunRoot, crate::model::runs::RunRootError> {
        let root = match &self.options.run_dir {
            Some(dir) => dir.clone(),
            None => crate::model::runs::default_root()?,
        };
        crate::model::runs::RunRoot::open(&root)
    }

    /// The newest run that did not end cleanly, offered to open, resume or close.
    fn offer_recovery(&mut self) {
        let Ok(root) = self.run_root() else {
            return;
        };
        let Some(dir) = root.unfinished(5).into_iter().next() else {
            return;
        };
        let summary = match crate::model::journal::load(&dir) {
            Ok(loaded) => {
                let tally = loaded.record.tally();
                let when = loaded
                    .record
                    .wall_clock_start
                    .map_or_else(String::new, |t| {
                        let ago = t.elapsed().unwrap_or_default();
                        format!(", started {} ago", crate::ui::theme::duration(ago))
                    });
                format!(
                    "{}{when}: {} tasks, {} succeeded, {} failed, {} lost (running when it \
                     stopped), {} never started.",
                    dir.display(),
                    loaded.record.tasks.len(),
                    tally.succeeded,
                    tally.failed,
                    tally.lost,
                    tally.queued + tally.cancelled,
                )
            }
            Err(e) => format!("{}: {e}", dir.display()),
        };
        self.dialog = Some(Dialog::Recover { dir, summary });
    }

    /// Load a run from its journal in `dir`: rows for its tasks, its output read back
    /// from its files.
    fn load_run(&mut self, dir: &Path) -> Option<crate::model::journal::Loaded> {
        self.dialog = None;
        if self.live_run().is_some() {
            self.error("A run is in progress: wait for it or Terminate it first");
            return None;
        }
        match crate::model::journal::load(dir) {
            Ok(loaded) => {
                if !loaded.dropped.is_empty() {
                    log::warn!("{}: {}", dir.display(), loaded.dropped.join("; "));
                }
                Some(loaded)
            }
            Err(e) => {
                self.error(format!("Cannot open the run: {e}"));
                None
            }
        }
    }

    fn show_run(&mut self, run: Run) {
        self.rows = run
            .record
            .tasks
            .iter()
            .map(|t| Row {
                draft: TaskDraft::from_spec(&t.spec),
                task: Some(t.id),
            })
            .collect();
        self.file = None;
        self.timeline.view = None;
        self.selected = run.record.tasks.first().map(|t| t.id);
        self.run = Some(run);
    }

    fn open_run(&mut self, dir: &Path) {
        let Some(loaded) = self.load_run(dir) else {
            return;
        };
        let lost = loaded.lost();
        let dropped = loaded.dropped.len();
        let mut run = Run::opened(loaded.record);
        run.output_dir = Some(dir.to_owned());
        self.show_run(run);
        self.notify(format!(
            "Opened the run in {}: {lost} task(s) lost where its record stops{}",
            dir.display(),
            if dropped > 0 {
                format!("; {dropped} cut-off line(s) of its journal dropped")
            } else {
                String::new()
            }
        ));
    }

    /// Reopen `dir`'s journal for more (after its last whole line), with the lost
    /// attempts written first.
    fn reopen_journal(
        &mut self,
        dir: &Path,
        loaded: &crate::model::journal::Loaded,
    ) -> Option<JournalWriter> {
        let path = dir.join(crate::model::journal::JOURNAL_FILE);
        let reopened = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(loaded.whole_len))
            .map_err(|e| e.to_string())
            .and_then(|()| JournalWriter::create(dir, true).map_err(|e| e.to_string()));
        match reopened {
            Ok(journal) => {
                for event in &loaded.lost_events {
                    journal.record(event);
                }
                Some(journal)
            }
            Err(e) => {
                self.error(format!("Cannot write {}: {e}", path.display()));
                None
            }
        }
    }

    /// Run again what did not finish, as new attempts of the same run.
    fn resume_run(&mut self, dir: &Path, ctx: &egui::Context) {
        let Some(loaded) = self.load_run(dir) else {
            return;
        };
        let Some(journal) = self.reopen_journal(dir, &loaded) else {
            return;
        };
        let (specs, resumption) = Resumption::plan(&loaded.record, ResumeWhat::Unfinished);
        let count = specs.len();
        let resume_output = dir.join(format!(
            "resume-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        ));
        let waker_ctx = ctx.clone();
        let waker = move || waker_ctx.request_repaint_after(FRAME_WHILE_BUSY);
        let config = PoolConfig {
            size: self.pool_size,
            output_dir: Some(resume_output.clone()),
            create_empty_output_files: false,
            ..PoolConfig::default()
        };
        let (executor, events) = Executor::start(config, Some(Arc::new(waker)));
        if let Err(e) = executor.submit_map(specs, 1) {
            self.error(format!("Cannot resume: {e}"));
            return;
        }
        executor.close();
        let started = Instant::now()
            .checked_sub(resumption.offset())
            .unwrap_or_else(Instant::now);
        let run = Run {
            pool: Some((executor, events)),
            finished: None,
            started,
            output_dir: Some(dir.to_owned()),
            journal: Some(journal),
            resumption,
            resume_output: Some(resume_output),
            ..Run::opened(loaded.record)
        };
        self.show_run(run);
        self.notify(format!(
            "Resuming the run in {}: {count} task(s) that did not finish run again",
            dir.display()
        ));
    }

    /// Keep the run as it is: its lost attempts and an end marker go into its journal,
    /// so it is not offered again.
    fn close_run(&mut self, dir: &Path) {
        let Some(loaded) = self.load_run(dir) else {
            return;
        };
        if let Some(journal) = self.reopen_journal(dir, &loaded) {
            journal.end_soon(&loaded.record);
            // Dropping waits for the writer: not on the window's thread.
            let _ = std::thread::Builder::new()
                .name("poolscope-journal-close".into())
                .spawn(move || drop(journal));
        }
        self.notify(format!("Closed the run in {} as it is", dir.display()));
    }

    /// Like [`new`](Self::new), restoring the last list, pool size and recent files
    /// unless a file was given on the command line.
    pub fn with_storage(options: AppOptions, storage: Option<&dyn eframe::Storage>) -> Self {
        let restore = options.file.is_none();
        let mut app = Self::new(options);
        if let Some(saved) = storage.and_then(|s| eframe::get_value::<Saved>(s, STORAGE_KEY)) {
            app.recent = saved.recent;
            app.keep_runs = saved.keep_runs.unwrap_or(DEFAULT_KEEP_RUNS).max(1);
            app.max_runs_mb = saved.max_runs_mb;
            if restore && !saved.rows.is_empty() {
                app.rows = saved.rows;
                app.file = saved.file;
                if let Some(size) = saved.pool_size {
                    app.pool_size = size.max(1);
                }
                app.workers = saved.workers;
                app.chunk_size = saved.chunk_size;
            }
        }
        app
    }

    pub fn status(&self) -> PoolStatus {
        let Some(run) = &self.run else {
            return PoolStatus::Idle;
        };
        match run.record.phase {
            PoolPhase::Finished => PoolStatus::Finished,
            PoolPhase::Closed => PoolStatus::Closed,
            PoolPhase::Paused => PoolStatus::Paused,
            PoolPhase::Running if run.active() == 0 => PoolStatus::Waiting,
            PoolPhase::Running => PoolStatus::Running,
        }
    }

    /// An open pool with nothing queued or running is a finished run the user has not
    /// closed: close it (its journal ends), keep it on screen, and let the next one start.
    fn settle_idle_run(&mut self) {
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

    /// Rows not yet handed to the pool.
    pub fn pending_rows(&self) -> usize {
        self.rows.iter().filter(|r| r.task.is_none()).count()
    }

    /// Why Start cannot run now, in words.
    pub fn start_blocker(&self) -> Option<String> {
        if self.live_run().is_some() {
            return Some("a run is in progress: add tasks to it, or Terminate it first".into());
        }
        if self.rows.is_empty() {
            return Some("there are no tasks: add one first".into());
        }
        self.rows.iter().enumerate().find_map(|(i, r)| {
            r.draft
                .problem()
                .map(|p| format!("task {} cannot run: {p}", i + 1))
        })
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

    /// Drain executor events within the frame budget. Returns whether events remain.
    pub fn pump_events(&mut self) -> bool {
        let Some(run) = &mut self.run else {
            return false;
        };
        let deadline = Instant::now() + EVENT_BUDGET;
        let mut more = true;
        while Instant::now() < deadline {
            let Some(event) = run.events().and_then(Events::try_recv) else {
                more = false;
                break;
            };
            run.apply(&event);
        }
        if let Some(journal) = &run.journal {
            journal.send();
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
        if run.watched.is_some() && self.rows.len() < run.record.tasks.len() {
            let new = &run.record.tasks[self.rows.len()..];
            self.rows.extend(new.iter().map(|t| Row {
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

    pub fn apply(&mut self, action: Action, ctx: &egui::Context) {
        // A finished run whose pool is still open must not block the next one.
        if action.replaces_the_run() {
            self.settle_idle_run();
        }
        match action {
            Action::Start => self.start(ctx),
            Action::SubmitPending => {
                let rows: Vec<usize> = (0..self.rows.len())
                    .filter(|&i| self.rows[i].task.is_none())
                    .collect();
                self.submit_rows(&rows);
            }
            Action::SubmitRow(i) => self.submit_rows(&[i]),
            Action::Pause => self.with_pool(|e| e.pause()),
            Action::Resume => self.with_pool(|e| e.resume()),
            Action::Close => self.with_pool(|e| e.close()),
            Action::Terminate => {
                if let Some(run) = &self.run {
                    run.stop_watched();
                }
                self.with_pool(|e| e.terminate());
            }
            Action::Watch(command) => self.watch(&command, ctx),
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
            Action::AddRow => self.rows.push(Row::default()),
            Action::DuplicateRow(i) => {
                if let Some(row) = self.rows.get(i) {
                    let copy = Row {
                        draft: row.draft.clone(),
                        task: None,
                    };
                    self.rows.insert(i + 1, copy);
                }
            }
            Action::RemoveRow(i) => {
                if i < self.rows.len() && self.rows[i].task.is_none() {
                    self.rows.remove(i);
                }
            }
            Action::MoveRow(i, delta) => {
                let j = i.checked_add_signed(delta).filter(|&j| j < self.rows.len());
                if let Some(j) = j {
                    self.rows.swap(i, j);
                }
            }
            Action::AddFromTemplate => {
                match crate::model::draft::expand_template(
                    &self.template.command,
                    &self.template.over,
                ) {
                    Ok(drafts) => {
                        let n = drafts.len();
                        self.rows
                            .extend(drafts.into_iter().map(|draft| Row { draft, task: None }));
                        self.notify(format!("added {n} tasks from the template"));
                    }
                    Err(e) => self.error(format!("template: {e}")),
                }
            }
            Action::LoadPreset(i) => self.load_preset(i),
            Action::OpenDialog => self.file_dialog(FilePurpose::Open),
            Action::Open(path) => self.open(&path),
            Action::Save => match self.file.clone() {
                Some(path) => self.save(&path),
                None => self.file_dialog(FilePurpose::SaveTasks),
            },
            Action::SaveAsDialog => self.file_dialog(FilePurpose::SaveTasks),
            Action::ExportDialog(kind) => self.file_dialog(FilePurpose::Export(kind)),
            Action::Export(kind, path) => self.export(kind, &path, ctx),
            Action::SendLine(task, line) => self.send_line(task, line),
            Action::CloseStdin(task) => self.task_command(task, |e| e.close_stdin(task)),
            Action::Rerun(task, how) => self.rerun(task, how),
            Action::SaveAs(path) => self.save(&path),
            Action::ConfirmQuit => {
                self.dialog = None;
                self.quit(ctx);
            }
            Action::CancelDialog => self.dialog = None,
            Action::OpenRun(dir) => self.open_run(&dir),
            Action::ResumeRun(dir) => self.resume_run(&dir, ctx),
            Action::CloseRun(dir) => self.close_run(&dir),
            Action::Reveal(path) => self.reveal(&path),
            Action::Dismiss => self.notice = None,
        }
    }

    /// Act on the live pool, if there is one.
    fn with_pool(&self, f: impl FnOnce(&Executor)) {
        if let Some(executor) = self.live_run().and_then(Run::executor) {
            f(executor);
        }
    }

    fn task_command(
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

    /// A private folder for the next run's output, under the run root (checked each time:
    /// an unwritable or foreign root is an error before any task starts).
    fn new_run_folder(&self) -> Result<PathBuf, crate::model::runs::RunRootError> {
        let root = self.run_root()?;
        // The user's policy: room for this run among the newest `keep_runs`.
        root.prune(
            self.keep_runs.saturating_sub(1),
            (self.max_runs_mb > 0).then_some(self.max_runs_mb << 20),
        );
        root.new_run()
    }

    /// The past runs the File menu lists, read again at most every 2 s while shown.
    pub fn past_runs(&mut self) -> &[crate::model::runs::RunSummary] {
        let stale = self
            .past_runs
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > Duration::from_secs(2));
        if stale {
            let runs = self.run_root().map(|r| r.recent(12)).unwrap_or_default();
            self.past_runs = Some((Instant::now(), runs));
        }
        self.past_runs.as_ref().map_or(&[], |(_, runs)| runs)
    }

    /// Show a folder in the desktop's file manager (`xdg-open`), without waiting for it.
    fn reveal(&mut self, path: &Path) {
        match std::process::Command::new("xdg-open")
            .arg(path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(mut child) => {
                let _ = std::thread::Builder::new()
                    .name("poolscope-reveal".into())
                    .spawn(move || child.wait());
                self.notify(format!("Opened {}", path.display()));
            }
            Err(e) => self.error(format!(
                "Cannot open a file manager (xdg-open: {e}); the folder is {}",
                path.display()
            )),
        }
    }

    fn start(&mut self, ctx: &egui::Context) {
        if let Some(reason) = self.start_blocker() {
            self.error(format!("Cannot start: {reason}"));
            return;
        }
        let output_dir = match self.new_run_folder() {
            Ok(dir) => dir,
            Err(e) => {
                self.error(format!("Cannot start: {e}"));
                return;
            }
        };
        let journal = match JournalWriter::create(&output_dir, false) {
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
            ..PoolConfig::default()
        };
        // A busy pool hands over events up to a thousand times a second; the window
        // redraws at most every FRAME_WHILE_BUSY for them (input still redraws at once).
        let waker = move || waker_ctx.request_repaint_after(FRAME_WHILE_BUSY);
        let (executor, events) = Executor::start(config, Some(Arc::new(waker)));
        self.run = Some(Run::live((executor, events), output_dir, journal));
        for row in &mut self.rows {
            row.task = None;
        }
        self.selected = None;
        self.notice = None;
        let all: Vec<usize> = (0..self.rows.len()).collect();
        // The list goes out as one map: on workers, in chunks (Python's default size
        // unless the file set one); tasks added later go one by one (apply_async).
        let chunk = match self.workers {
            Some(_) => self.chunk_size.unwrap_or_else(|| {
                crate::model::taskfile::python_chunksize(all.len(), self.pool_size)
            }),
            None => 1,
        };
        self.submit_rows_in_chunks(&all, chunk);
        // Show the first task's output at once: the demo then speaks for itself.
        self.selected = self.rows.first().and_then(|r| r.task);
    }

    /// Run a Python program (a shell command line) watched: its pools fill the timeline
    /// as they run. The task list stays as it is.
    fn watch(&mut self, command: &str, ctx: &egui::Context) {
        if self.live_run().is_some() {
            self.error(
                "A run is in progress: wait for it or Terminate it before watching a program",
            );
            return;
        }
        let dir = match crate::watch::run_folder() {
            Ok(dir) => dir,
            Err(e) => {
                self.error(format!("Cannot watch: no folder for the watch: {e}"));
                return;
            }
        };
        let waker_ctx = ctx.clone();
        let waker = move || waker_ctx.request_repaint_after(FRAME_WHILE_BUSY);
        let argv = ["/bin/sh".into(), "-c".into(), command.into()];
        match crate::watch::start(&argv, &dir, Some(Arc::new(waker))) {
            Ok((watch, events)) => {
                self.rows.clear();
                self.file = None;
                self.run = Some(Run {
                    watched: Some((watch, events)),
                    record: RunRecord::default(),
                    finished: None,
                    ..Run::opened(RunRecord::default())
                });
                self.selected = None;
                self.notify(format!(
                    "Watching `{command}`: its pools appear as they run (by PID shows the workers)"
                ));
            }
            Err(e) => self.error(format!("Cannot watch `{command}`: {e}")),
        }
    }

    /// Write a built-in Python program to a private folder and watch it.
    fn watch_preset(&mut self, index: usize, ctx: &egui::Context) {
        let Some(&(_, name, text)) = crate::model::presets::WATCH_PRESETS.get(index) else {
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

    fn submit_rows(&mut self, rows: &[usize]) {
        self.submit_rows_in_chunks(rows, 1);
    }

    fn submit_rows_in_chunks(&mut self, rows: &[usize], chunk: usize) {
        let Some(run) = self.run.as_ref().filter(|r| r.is_live()) else {
            self.error("No pool is running: press Start");
            return;
        };
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
        if specs.is_empty() {
            return;
        }
        let Some(executor) = run.executor() else {
            return;
        };
        match executor.submit_map(specs.iter().map(|(_, s)| s.clone()).collect(), chunk) {
            Ok(ids) => {
                for ((i, _), id) in specs.iter().zip(ids) {
                    self.rows[*i].task = Some(id);
                }
            }
            Err(e) => self.error(format!("Cannot add tasks: {e}. Press Start for a new run.")),
        }
    }

    /// Type a line to a running task; in a pipe it is echoed into the console as input
    /// (a terminal echoes it by itself).
    fn send_line(&mut self, task: TaskId, line: String) {
        let Some(run) = self.run.as_mut() else { return };
        let Some(executor) = run.executor() else {
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

    /// Run a copy of a task with output unbuffered, or in a terminal.
    fn rerun(&mut self, task: TaskId, how: Rerun) {
        let Some(spec) = self
            .run
            .as_ref()
            .and_then(|r| r.record.task(task))
            .map(|t| (*t.spec).clone())
        else {
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

    fn retry(&mut self, task: TaskId) {
        if self.run.as_ref().is_some_and(|r| r.watched.is_some()) {
            self.error(
                "A watched program's task is a call inside that program: run the program \
                 again (File › Watch) to run it again",
            );
            return;
        }
        let Some(spec) = self
            .run
            .as_ref()
            .and_then(|r| r.record.task(task))
            .map(|t| (*t.spec).clone())
        else {
            return;
        };
        self.add_and_run(&spec);
    }

    /// A new row for `spec`, run at once if the pool is open (else on the next Start);
    /// the new task is selected.
    fn add_and_run(&mut self, spec: &crate::executor::TaskSpec) {
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

    fn replace_rows(&mut self, drafts: Vec<TaskDraft>, file: Option<&taskfile::TaskFile>) {
        self.rows = drafts
            .into_iter()
            .map(|draft| Row { draft, task: None })
            .collect();
        self.pool_size = file
            .and_then(|f| f.pool_size)
            .unwrap_or(self.cpu_count)
            .max(1);
        self.workers = file.and_then(|f| f.workers.clone());
        self.chunk_size = file.and_then(|f| f.chunk_size);
        self.selected = None;
        if self.run.as_ref().is_some_and(|r| !r.is_live()) {
            self.run = None;
        }
    }

    fn load_preset(&mut self, index: usize) {
        let Some(&(label, name, text)) = PRESETS.get(index) else {
            return;
        };
        if self.live_run().is_some() {
            self.error(
                "A run is in progress: wait for it or Terminate it before loading another list",
            );
            return;
        }
        match taskfile::parse(text, Path::new(name)) {
            Ok(file) => {
                self.replace_rows(
                    file.tasks.iter().map(TaskDraft::from_spec).collect(),
                    Some(&file),
                );
                self.file = None;
                self.notify(format!("Loaded preset: {label}"));
            }
            Err(e) => self.error(e.to_string()),
        }
    }

    /// Open a task file, a saved run or a GNU parallel joblog; on error the current
    /// list stays as it is.
    pub fn open(&mut self, path: &Path) {
        use crate::model::runfile;
        if self.live_run().is_some() {
            self.error(
                "A run is in progress: wait for it or Terminate it before opening another list",
            );
            return;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                self.error(format!(
                    "Could not open {}; the list is unchanged: {e}",
                    path.display()
                ));
                return;
            }
        };
        if runfile::looks_like_run(&text) || runfile::looks_like_joblog(&text) {
            match runfile::load(path) {
                Ok(record) => self.show_record(record, path),
                Err(e) => self.error(format!(
                    "Could not open the file; the list is unchanged. {e}"
                )),
            }
            return;
        }
        match taskfile::parse(&text, path) {
            Ok(file) => {
                self.replace_rows(
                    file.tasks.iter().map(TaskDraft::from_spec).collect(),
                    Some(&file),
                );
                self.file = Some(path.to_owned());
                self.remember(path);
                self.notify(format!("Opened {}", path.display()));
            }
            Err(e) => self.error(format!(
                "Could not open the file; the list is unchanged. {e}"
            )),
        }
    }

    /// Show a finished record from a file: its timeline, and its tasks as rows (Start
    /// runs them again).
    fn show_record(&mut self, record: RunRecord, path: &Path) {
        self.rows = record
            .tasks
            .iter()
            .map(|t| Row {
                draft: TaskDraft::from_spec(&t.spec),
                task: Some(t.id),
            })
            .collect();
        if let Some(&(_, size)) = record.pool_sizes.iter().max_by_key(|(_, s)| *s) {
            self.pool_size = size.max(1);
        }
        let (tasks, failed) = (record.tasks.len(), record.failed());
        self.selected = record.tasks.first().map(|t| t.id);
        self.run = Some(Run::opened(record));
        self.timeline.view = None;
        self.file = None;
        self.remember(path);
        self.notify(format!(
            "Opened the run in {}: {tasks} tasks, {failed} failed",
            path.display()
        ));
    }

    fn save(&mut self, path: &Path) {
        let drafts: Vec<TaskDraft> = self.rows.iter().map(|r| r.draft.clone()).collect();
        let size = (self.pool_size != self.cpu_count).then_some(self.pool_size);
        let result = taskfile::to_toml(size, &drafts)
            .and_then(|text| taskfile::save_atomic(path, &text).map_err(|e| e.to_string()));
        match result {
            Ok(()) => {
                self.file = Some(path.to_owned());
                self.remember(path);
                self.notify(format!("Saved {}", path.display()));
            }
            Err(e) => self.error(format!("Could not save {}: {e}", path.display())),
        }
    }

    fn remember(&mut self, path: &Path) {
        self.recent.retain(|p| p != path);
        self.recent.insert(0, path.to_owned());
        self.recent.truncate(MAX_RECENT);
    }

    /// Native file dialogs block, so they run on their own thread.
    fn file_dialog(&mut self, purpose: FilePurpose) {
        if self.file_dialog.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let start_dir = self
            .file
            .as_ref()
            .and_then(|f| f.parent().map(Path::to_owned));
        let spawned = std::thread::Builder::new()
            .name("poolscope-file-dialog".into())
            .spawn(move || {
                let opened = Instant::now();
                let mut dialog = rfd::FileDialog::new();
                if let Some(dir) = start_dir {
                    dialog = dialog.set_directory(dir);
                }
                let path = match purpose {
                    FilePurpose::Open => dialog
                        .add_filter(
                            "Task files, runs, joblogs",
                            &["toml", "json", "tsv", "log", "txt"],
                        )
                        .add_filter("All files", &["*"])
                        .pick_file(),
                    FilePurpose::SaveTasks => dialog
                        .add_filter("Task files", &["toml"])
                        .set_file_name("tasks.toml")
                        .save_file(),
                    FilePurpose::Export(kind) => {
                        let (name, what, ext) = kind.file_name();
                        dialog
                            .add_filter(what, &[ext])
                            .set_file_name(name)
                            .save_file()
                    }
                };
                let _ = tx.send(FileChoice {
                    purpose,
                    path,
                    open_for: opened.elapsed(),
                });
            });
        match spawned {
            Ok(_) => self.file_dialog = Some(rx),
            Err(e) => self.error(format!("Cannot open a file dialog: {e}")),
        }
    }

    fn poll_file_dialog(&mut self, ctx: &egui::Context) {
        let Some(rx) = &self.file_dialog else {
            return;
        };
        match rx.try_recv() {
            Ok(FileChoice {
                purpose,
                path,
                open_for,
            }) => {
                self.file_dialog = None;
                let Some(path) = path else {
                    if open_for < DIALOG_NEVER_SHOWN {
                        self.error(
                            "No file dialog could open (this desktop has no file-dialog \
                             portal): type a path in the menu instead",
                        );
                    }
                    return;
                };
                match purpose {
                    FilePurpose::Open => self.open(&path),
                    FilePurpose::SaveTasks => self.save(&path),
                    FilePurpose::Export(kind) => self.export(kind, &path, ctx),
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => self.file_dialog = None,
            Err(mpsc::TryRecvError::Empty) => {}
        }
    }

    /// Write the current run out in one of the export formats.
    pub fn export(&mut self, kind: ExportKind, path: &Path, ctx: &egui::Context) {
        use crate::model::{joblog, runfile, trace};
        let Some(run) = &self.run else {
            self.error("Nothing to export yet: start a run or open one");
            return;
        };
        if kind == ExportKind::TimelinePng {
            let Some(rect) = self.timeline.last_rect else {
                self.error("The timeline is not on screen");
                return;
            };
            save_png(ctx, path.to_owned(), Some(rect), None);
            self.notify(format!("Saving the timeline to {}", path.display()));
            return;
        }
        let record = &run.record;
        let mut bytes = Vec::new();
        let written = match kind {
            ExportKind::Run => runfile::write(record, &mut bytes),
            ExportKind::ChromeTrace => trace::write(record, &mut bytes),
            ExportKind::Joblog => joblog::write(record, &mut bytes),
            ExportKind::Csv => runfile::write_csv(record, &mut bytes),
            ExportKind::TimelinePng => Ok(()),
        };
        let text = String::from_utf8_lossy(&bytes);
        match written.and_then(|()| taskfile::save_atomic(path, &text)) {
            Ok(()) => self.notify(format!("Exported {}", path.display())),
            Err(e) => self.error(format!("Could not write {}: {e}", path.display())),
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
        self.poll_file_dialog(ctx);
        if let Some(command) = self.options.watch.clone().filter(|_| !self.autostarted) {
            self.autostarted = true;
            self.watch(&command, ctx);
        } else if self.options.autostart && !self.autostarted {
            self.autostarted = true;
            self.start(ctx);
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

    /// `--exit-when-done` and `--screenshot`.
    fn automation(&mut self, ctx: &egui::Context) {
        if self.screenshot_saved.load(Ordering::Acquire) {
            self.screenshot_saved.store(false, Ordering::Release);
            self.quit(ctx);
            return;
        }
        let done = self.run.as_ref().is_some_and(|r| r.active() == 0) && self.pending_rows() == 0;
        if self.options.exit_when_done
            && done
            && let Some(executor) = self
                .live_run()
                .filter(|r| r.is_open())
                .and_then(Run::executor)
        {
            executor.close();
        }
        let finished = self.run.as_ref().is_some_and(|r| !r.is_live());
        if let Some(path) = self.options.screenshot.clone() {
            let due = match self.options.screenshot_after {
                Some(after) => self.opened.elapsed() >= after,
                None => finished,
            };
            if due && !self.screenshot_requested {
                self.screenshot_requested = true;
                self.request_screenshot(ctx, path);
            } else if !due {
                ctx.request_repaint_after(TICK);
            }
            return;
        }
        if self.options.exit_when_done && finished && !self.quitting {
            let failed = self.run.as_ref().map_or(0, |r| r.record.failed());
            self.exit_code
                .store(u8::from(failed > 0), Ordering::Release);
            self.quit(ctx);
        }
    }

    fn request_screenshot(&self, ctx: &egui::Context, path: PathBuf) {
        let saved = Arc::clone(&self.screenshot_saved);
        let exit_code = Arc::clone(&self.exit_code);
        let failed = self.run.as_ref().map_or(0, |r| r.record.failed());
        let done = move |result: Result<(), String>| {
            let code = match result {
                Ok(()) => u8::from(failed > 0),
                Err(_) => 3,
            };
            exit_code.store(code, Ordering::Release);
            saved.store(true, Ordering::Release);
        };
        let crop = if self.options.screenshot_timeline {
            self.timeline.last_rect
        } else {
            None
        };
        save_png(ctx, path, crop, Some(Box::new(done)));
    }

    fn to_saved(&self) -> Saved {
        // A watched program's rows are its function calls, not commands to run again.
        let watched = self.run.as_ref().is_some_and(|r| r.watched.is_some());
        Saved {
            rows: self
                .rows
                .iter()
                .filter(|_| !watched)
                .map(|r| Row {
                    draft: r.draft.clone(),
                    task: None,
                })
                .collect(),
            pool_size: Some(self.pool_size),
            recent: self.recent.clone(),
            file: self.file.clone(),
            workers: self.workers.clone(),
            chunk_size: self.chunk_size,
            keep_runs: Some(self.keep_runs),
            max_runs_mb: self.max_runs_mb,
        }
    }
}

type PngDone = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Save what the window shows (or the `crop` part of it, in points) as a PNG once the
/// next frame is rendered; `done` hears how it went.
fn save_png(ctx: &egui::Context, path: PathBuf, crop: Option<egui::Rect>, done: Option<PngDone>) {
    let waker = ctx.clone();
    let pixels_per_point = ctx.pixels_per_point();
    let once = Mutex::new(Some((path, done)));
    ctx.request_screenshot(move |image| {
        let Some((path, done)) = once.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        let image = match crop {
            Some(rect) => Arc::new(image.region(&rect, Some(pixels_per_point))),
            None => image,
        };
        let pixels: Vec<u8> = image
            .pixels
            .iter()
            .flat_map(egui::Color32::to_srgba_unmultiplied)
            .collect();
        let [w, h] = image.size;
        let result =
            image::save_buffer(&path, &pixels, w as u32, h as u32, image::ColorType::Rgba8)
                .map_err(|e| e.to_string());
        match &result {
            Ok(()) => log::info!("saved {}", path.display()),
            Err(e) => log::error!("cannot save {}: {e}", path.display()),
        }
        if let Some(done) = done {
            done(result);
        }
        waker.request_repaint();
    });
}

/// Where a run's full output goes: a fresh folder under the system temp dir.
impl PoolscopeApp {
    /// A task whose output was dropped to keep memory within budget: read its newest
    /// output back from the run's files (a few MiB, only when the user selects it).
    fn restore_output(&mut self, task: TaskId) {
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

impl eframe::App for PoolscopeApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        PoolscopeApp::logic(self, ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let actions = self.draw(ui);
        for action in actions {
            self.apply(action, ui.ctx());
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
