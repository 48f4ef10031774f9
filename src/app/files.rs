//! Task files, presets, file dialogs (with their typed-path fallback) and exports.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::model::formats::presets::PRESETS;
use crate::model::{RunRecord, TaskDraft, formats::taskfile};

use super::{ExportKind, FilePurpose, LazyRows, MAX_RECENT, PoolscopeApp, Row, Run, save_png};

pub(super) struct FileChoice {
    purpose: FilePurpose,
    path: Option<PathBuf>,
    /// How long the dialog was open: a "cancel" at once means none could open.
    open_for: Duration,
}

/// A dialog that answers faster than this never showed (no desktop portal).
pub(super) const DIALOG_NEVER_SHOWN: Duration = Duration::from_millis(300);

impl PoolscopeApp {
    pub(super) fn replace_rows(
        &mut self,
        drafts: Vec<TaskDraft>,
        file: Option<&taskfile::TaskFile>,
    ) {
        self.kept = None;
        self.preset = None;
        self.lazy = LazyRows::Made;
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
        self.slurm = file.and_then(|f| f.slurm.clone());
        self.selected = None;
        self.editing = None;
        if self.run.as_ref().is_some_and(|r| !r.is_live()) {
            self.run = None;
        }
    }

    pub(super) fn load_preset(&mut self, index: usize) {
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
                    file.tasks
                        .iter()
                        .map(|s| TaskDraft::from_spec(&s))
                        .collect(),
                    Some(&file),
                );
                self.file = None;
                self.preset = Some(label);
                self.notify(format!("Loaded preset: {label}"));
            }
            Err(e) => self.error(e.to_string()),
        }
    }

    /// Open a task file, a saved run or a GNU parallel joblog; on error the current
    /// list stays as it is.
    pub fn open(&mut self, path: &Path) {
        use crate::model::formats::runfile;
        if self.live_run().is_some() {
            self.error(
                "A run is in progress: wait for it or Terminate it before opening another list",
            );
            return;
        }
        // Whatever is opened now replaces a FIFO being read.
        self.feed = None;
        // A FIFO is read as it is written, never whole (that would wait for its end).
        if super::feed::is_fifo(path) {
            self.follow(path);
            return;
        }
        // A run's folder: its journal.
        if path.is_dir() {
            self.open_run(path);
            return;
        }
        // A run or a joblog is told by its start, and read as a stream: it can be
        // hundreds of megabytes.
        if runfile::is_record(path) {
            match runfile::load(path) {
                Ok(record) => self.show_record(record, path),
                Err(e) => self.error(format!(
                    "Could not open the file; the list is unchanged. {e}"
                )),
            }
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
        match taskfile::parse(&text, path) {
            // A template over a million values stays one: its rows are made as drawn.
            Ok(mut file) if file.tasks.len() > super::run::ROWS_MADE_AT_ONCE => {
                self.replace_rows(Vec::new(), Some(&file));
                self.lazy = LazyRows::List(std::sync::Arc::new(std::mem::take(&mut file.tasks)));
                self.file = Some(path.to_owned());
                self.remember(path);
                self.notify(format!(
                    "Opened {}: {} tasks",
                    path.display(),
                    self.row_count()
                ));
            }
            Ok(file) => {
                self.replace_rows(
                    file.tasks
                        .iter()
                        .map(|s| TaskDraft::from_spec(&s))
                        .collect(),
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
    pub(super) fn show_record(&mut self, record: RunRecord, path: &Path) {
        self.keep_list_while_viewing();
        self.set_record_rows(&record);
        if let Some(&(_, size)) = record.pool_sizes.iter().max_by_key(|(_, s)| *s) {
            self.pool_size = size.max(1);
        }
        let (tasks, failed) = (record.task_count(), record.failed());
        self.selected = record.task_at(0).map(|t| t.id);
        self.run = Some(Run::opened(record));
        self.timeline.view = None;
        self.file = None;
        self.remember(path);
        self.notify(format!(
            "Opened the run in {}: {tasks} tasks, {failed} failed",
            path.display()
        ));
    }

    pub(super) fn save(&mut self, path: &Path) {
        let record = self.run.as_ref().map(|r| &r.record);
        let drafts: Vec<TaskDraft> = match self.lazy.count(record) {
            Some(_) => self
                .lazy
                .make_all(record)
                .into_iter()
                .map(|r| r.draft)
                .collect(),
            None => self.rows.iter().map(|r| r.draft.clone()).collect(),
        };
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

    pub(super) fn remember(&mut self, path: &Path) {
        self.recent.retain(|p| p != path);
        self.recent.insert(0, path.to_owned());
        self.recent.truncate(MAX_RECENT);
    }

    /// Native file dialogs block, so they run on their own thread.
    pub(super) fn file_dialog(&mut self, purpose: FilePurpose) {
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
                    FilePurpose::Inputs => dialog
                        .add_filter("Text, one input per line", &["txt", "csv", "tsv", "list"])
                        .add_filter("All files", &["*"])
                        .pick_file(),
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

    /// Whether a file dialog is open (its answer not yet in).
    pub fn file_dialog_pending(&self) -> bool {
        self.file_dialog.is_some()
    }

    pub(super) fn poll_file_dialog(&mut self, ctx: &egui::Context) {
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
                        // No desktop portal: the path is typed in a window of our own.
                        self.dialog = Some(super::Dialog::TypePath(purpose));
                    }
                    return;
                };
                match purpose {
                    FilePurpose::Open => self.open(&path),
                    FilePurpose::SaveTasks => self.save(&path),
                    FilePurpose::Export(kind) => self.export(kind, &path, ctx),
                    FilePurpose::Inputs => self.load_inputs(&path),
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => self.file_dialog = None,
            Err(mpsc::TryRecvError::Empty) => {}
        }
    }

    /// The bulk-add window's inputs from `path`: kept beside what was typed, the window
    /// open again on them. A file that cannot be read changes nothing.
    pub(super) fn load_inputs(&mut self, path: &Path) {
        /// More than this is not one-per-line input a list should hold.
        const MOST: u64 = 64 << 20;
        let read = std::fs::metadata(path)
            .map_err(|e| e.to_string())
            .and_then(|meta| {
                if meta.len() > MOST {
                    Err(format!(
                        "it is {} MiB; inputs are read up to 64 MiB",
                        meta.len() >> 20
                    ))
                } else {
                    std::fs::read(path).map_err(|e| e.to_string())
                }
            })
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|e| {
                    let at = e.utf8_error().valid_up_to();
                    let line = e.as_bytes()[..at].split(|&b| b == b'\n').count();
                    format!("line {line} is not UTF-8 text")
                })
            });
        match read {
            Ok(text) => {
                let count = crate::model::formats::draft::BulkTemplate::inputs(&text).count();
                self.template.file = Some(crate::ui::actions::InputsFile {
                    path: path.to_owned(),
                    text,
                    count,
                });
                self.dialog = Some(super::Dialog::BulkAdd);
            }
            Err(e) => self.error(format!("Cannot read inputs from {}: {e}", path.display())),
        }
    }

    /// Write the current run out in one of the export formats.
    pub fn export(&mut self, kind: ExportKind, path: &Path, ctx: &egui::Context) {
        use crate::model::{formats::joblog, formats::runfile, formats::trace};
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
}
