//! What the panels may ask the app to do, and the small enums they show.

use std::path::PathBuf;

use crate::executor::TaskId;

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
    /// A past run on screen as its record left it (nothing runs).
    Recorded,
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
            PoolStatus::Recorded => "a past run, as recorded (Start runs its tasks again)",
        }
    }
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
    /// Open the bulk-add window: a command template over inputs pasted or read from a
    /// file.
    BulkAddDialog,
    /// Add the bulk-add window's tasks to the list.
    AddFromInputs,
    /// Choose the bulk-add window's inputs file in a file dialog.
    InputsDialog,
    /// Read the bulk-add window's inputs from this file.
    LoadInputs(PathBuf),
    LoadPreset(usize),
    OpenDialog,
    /// The window of its own where a path is typed (File › Type a path…, and where no
    /// native file dialog can open).
    TypePath(FilePurpose),
    /// The window where a command line to watch is typed.
    WatchDialog,
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
    /// Quit, leaving a cluster run's tasks on the cluster (Resume follows them again).
    LeaveOnClusterAndQuit,
    CancelDialog,
    /// A past run, from its journal: open it, go on with it, or close it as it is.
    OpenRun(PathBuf),
    ResumeRun(PathBuf),
    CloseRun(PathBuf),
    /// Show a folder (a run's, the runs root) in the file manager.
    Reveal(PathBuf),
    Dismiss,
    /// Open the task editor on a row not submitted yet, or close it.
    Edit(Option<usize>),
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
    /// A path typed for opening, saving or exporting, in a window of its own.
    TypePath(FilePurpose),
    /// A command line (a Python program) to watch.
    Watch,
    /// A command template over many inputs.
    BulkAdd,
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
    /// Bulk add: inputs typed or pasted, one per line.
    pub inputs: String,
    /// Bulk add: inputs read from a file, besides those typed.
    pub file: Option<InputsFile>,
    /// Bulk add: a regular expression splitting each input into `{1}` `{2}` …
    pub colsep: String,
}

impl TemplateForm {
    /// The bulk-add inputs: those typed, then the file's (each a non-empty line).
    pub fn bulk_inputs(&self) -> impl Iterator<Item = &str> {
        use crate::model::formats::draft::BulkTemplate;
        BulkTemplate::inputs(&self.inputs).chain(
            self.file
                .iter()
                .flat_map(|file| BulkTemplate::inputs(&file.text)),
        )
    }

    /// How many [`TemplateForm::bulk_inputs`] there are (the file's counted when read).
    pub fn bulk_input_count(&self) -> usize {
        crate::model::formats::draft::BulkTemplate::inputs(&self.inputs).count()
            + self.file.as_ref().map_or(0, |file| file.count)
    }
}

/// Bulk-add inputs read from a file: its text, and how many inputs it holds (counted
/// once, not every frame).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputsFile {
    pub path: PathBuf,
    pub text: String,
    pub count: usize,
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

impl Action {
    /// Whether it starts, loads or opens something in place of the current run.
    pub fn replaces_the_run(&self) -> bool {
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
    /// Inputs for the bulk-add window, one per line.
    Inputs,
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

    pub fn file_name(self) -> (&'static str, &'static str, &'static str) {
        match self {
            ExportKind::Run => ("run.poolscope.json", "poolscope run", "json"),
            ExportKind::ChromeTrace => ("trace.json", "Chrome trace", "json"),
            ExportKind::Joblog => ("joblog.tsv", "Joblog", "tsv"),
            ExportKind::Csv => ("run.csv", "CSV", "csv"),
            ExportKind::TimelinePng => ("timeline.png", "PNG image", "png"),
        }
    }
}
