//! The window: its panels laid out and its menus and dialogs. Each piece reads the app's
//! state and returns [`Action`]s, applied by the app; the panels themselves (console,
//! editor, timeline) are in `ui/` and never see the app.

mod controls;
mod status;
mod table;

use std::path::PathBuf;

use egui::{Key, KeyboardShortcut, Modifiers};

use super::{Action, Dialog, FilePurpose, PoolscopeApp};
use crate::model::formats::presets::PRESETS;
use crate::ui::{Marks, TIMELINE_MIN, console, expand_home, fill_exactly, mark, short};

impl PoolscopeApp {
    /// Lay out the whole window; the actions are applied by the caller.
    pub fn draw(&mut self, ui: &mut egui::Ui) -> Vec<Action> {
        let began = std::time::Instant::now();
        let actions = self.lay_out(ui);
        self.last_draw = began.elapsed();
        actions
    }

    fn lay_out(&mut self, ui: &mut egui::Ui) -> Vec<Action> {
        let mut actions = Vec::new();
        // Named widgets are this frame's only (a closed menu's items are gone).
        ui.ctx()
            .data_mut(|d| d.remove::<Marks>(egui::Id::unique("marks")));
        shortcuts(ui, self, &mut actions);
        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui, &mut actions));
        egui::Panel::top("controls").show(ui, |ui| self.controls(ui, &mut actions));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui, &mut actions));
        // Sizes are the user's: each resizable panel gets exactly what its splitter says
        // (its content scrolls or clips inside, never pushes), and the splitters stop
        // where the task list would show fewer than five rows or the console fewer than
        // six lines.
        let room = ui.available_height();
        let console_max = (room - TIMELINE_MIN - table::LIST_MIN).max(console::CONSOLE_MIN);
        egui::Panel::bottom("output")
            .resizable(true)
            .default_size((room * 0.36).clamp(console::CONSOLE_MIN, console_max))
            .size_range(console::CONSOLE_MIN..=console_max)
            .show(ui, |ui| {
                let mut lines_fit = 0.0;
                let rect = fill_exactly(ui, |ui| {
                    lines_fit = self.console.show(
                        ui,
                        self.run.as_ref().map(super::Run::view),
                        self.selected,
                        &mut actions,
                    );
                });
                self.layout.console = rect;
                self.layout.console_lines_fit = lines_fit;
            });
        egui::CentralPanel::default().show(ui, |ui| {
            let centre = ui.available_height();
            let timeline_max = (centre - table::LIST_MIN).max(TIMELINE_MIN);
            egui::Panel::top("timeline")
                .resizable(true)
                .default_size((centre * 0.5).clamp(TIMELINE_MIN, timeline_max))
                .size_range(TIMELINE_MIN..=timeline_max)
                .show(ui, |ui| {
                    let rect = fill_exactly(ui, |ui| self.timeline_panel(ui, &mut actions));
                    self.layout.timeline = rect;
                });
            let editing = self
                .editing
                .filter(|&i| self.rows.get(i).is_some_and(|r| r.task.is_none()));
            if let Some(i) = editing {
                let workers = self.workers.is_some();
                egui::Panel::right("editor")
                    .resizable(true)
                    .default_size(380.0)
                    .size_range(260.0..=(ui.available_width() * 0.6).max(260.0))
                    .show(ui, |ui| {
                        fill_exactly(ui, |ui| {
                            self.editor
                                .show(ui, i, &mut self.rows[i].draft, workers, &mut actions);
                        });
                    });
            }
            let rect = fill_exactly(ui, |ui| self.task_table(ui, &mut actions));
            self.layout.list = rect;
        });
        if let Some(dialog) = self.dialog.clone() {
            let ctx = ui.ctx().clone();
            self.dialog_ui(&ctx, &dialog, &mut actions);
        }
        actions
    }

    fn timeline_panel(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        let Some(run) = &self.run else {
            ui.add_space(8.0);
            ui.weak("Timeline: press Start to watch the pool at work. Each lane is a worker slot; each bar a task.");
            return;
        };
        let live = run.is_live();
        let clicked = self
            .timeline
            .show(ui, &run.record, run.now(), live, self.selected);
        if let Some(task) = clicked {
            actions.push(Action::Select(task));
        }
    }

    fn menu_bar(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        egui::MenuBar::new().ui(ui, |ui| {
            let file_menu = ui.menu_button("File", |ui| {
                if ui
                    .button("Open…  (Ctrl+O)")
                    .on_hover_text("A task file (.toml), a saved run, or a GNU parallel joblog")
                    .clicked()
                {
                    actions.push(Action::OpenDialog);
                }
                let typed = ui
                    .button("Open a typed path…")
                    .on_hover_text("Type the path (or pick a recent file) instead of browsing");
                mark(ui, "open-typed-path", &typed);
                if typed.clicked() {
                    actions.push(Action::TypePath(FilePurpose::Open));
                }
                ui.menu_button("Recent files", |ui| {
                    if self.recent.is_empty() {
                        ui.label("none yet");
                    }
                    for path in &self.recent {
                        if ui.button(path.display().to_string()).clicked() {
                            actions.push(Action::Open(path.clone()));
                        }
                    }
                });
                ui.separator();
                if ui.button("Save  (Ctrl+S)").clicked() {
                    actions.push(Action::Save);
                }
                if ui.button("Save as…").clicked() {
                    actions.push(Action::SaveAsDialog);
                }
                ui.separator();
                ui.menu_button("Past runs", |ui| self.past_runs_menu(ui, actions));
                let watch = ui.button("Watch a Python program…").on_hover_text(
                    "Runs the command unchanged; its multiprocessing Pool, Process and \
                     ProcessPoolExecutor appear on the timeline",
                );
                mark(ui, "watch-program", &watch);
                if watch.clicked() {
                    actions.push(Action::WatchDialog);
                }
            });
            mark(ui, "file-menu", &file_menu.response);
            ui.menu_button("Export", |ui| self.export_menu(ui, actions));
            ui.menu_button("Presets", |ui| {
                for (i, (label, _, _)) in PRESETS.iter().enumerate() {
                    if ui.button(*label).clicked() {
                        actions.push(Action::LoadPreset(i));
                    }
                }
                ui.separator();
                ui.weak("Watch a real Python program:");
                for (i, (label, _, _)) in crate::model::formats::presets::WATCH_PRESETS
                    .iter()
                    .enumerate()
                {
                    if ui.button(*label).clicked() {
                        actions.push(Action::WatchPreset(i));
                    }
                }
            });
            if let Some(file) = &self.file {
                ui.separator();
                ui.weak(file.display().to_string());
            }
        });
    }

    fn export_menu(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        let has_run = self.run.is_some();
        for kind in super::ExportKind::ALL {
            if ui
                .add_enabled(has_run, egui::Button::new(kind.label()))
                .clicked()
            {
                actions.push(Action::ExportDialog(kind));
            }
        }
    }

    /// Where a path is typed when no native file dialog can open (no desktop portal),
    /// or when the user prefers typing: a window of its own, so a click in the field
    /// does not close it as a menu would.
    fn path_window(
        &mut self,
        ctx: &egui::Context,
        purpose: FilePurpose,
        actions: &mut Vec<Action>,
    ) {
        let (title, verb) = match purpose {
            FilePurpose::Open => ("Open a file".to_owned(), "Open"),
            FilePurpose::SaveTasks => ("Save the task list".to_owned(), "Save"),
            FilePurpose::Export(kind) => (
                format!("Export: {}", kind.label().trim_end_matches('…')),
                "Export",
            ),
            FilePurpose::Inputs => ("Read inputs from a file".to_owned(), "Read"),
        };
        let modal = egui::Modal::new(egui::Id::unique("type-a-path")).show(ctx, |ui| {
            ui.set_width(520.0);
            ui.heading(title);
            ui.weak("A task file (.toml), a saved run or a joblog; ~ is your home folder.");
            let path = expand_home(self.path_input.trim());
            let entered = typed_field(
                ui,
                ("Path", "path-field"),
                egui::TextEdit::singleline(&mut self.path_input).hint_text("/path/to/file"),
            );
            let chosen = |path: PathBuf| match purpose {
                FilePurpose::Open => Action::Open(path),
                FilePurpose::SaveTasks => Action::SaveAs(path),
                FilePurpose::Export(kind) => Action::Export(kind, path),
                FilePurpose::Inputs => Action::LoadInputs(path),
            };
            ui.horizontal(|ui| {
                let go = ui.add_enabled(path.is_some(), egui::Button::new(verb));
                mark(ui, "path-go", &go);
                if let Some(path) = &path
                    && (go.clicked() || entered)
                {
                    actions.push(chosen(path.clone()));
                }
                if ui.button("Cancel").clicked() {
                    actions.push(Action::CancelDialog);
                }
            });
            if !self.recent.is_empty() {
                ui.separator();
                ui.weak(if purpose == FilePurpose::Open {
                    "Recent files (click to open):"
                } else {
                    "Recent files (click to use the path):"
                });
                for recent in &self.recent {
                    if ui.button(recent.display().to_string()).clicked() {
                        if purpose == FilePurpose::Open {
                            actions.push(chosen(recent.clone()));
                        } else {
                            self.path_input = recent.display().to_string();
                        }
                    }
                }
            }
        });
        if modal.should_close() {
            actions.push(Action::CancelDialog);
        }
    }

    /// Bulk add: a command template over inputs pasted or read from a file, one per
    /// line, made into commands as GNU parallel makes them, with a preview.
    fn bulk_window(&mut self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        let modal = egui::Modal::new(egui::Id::unique("bulk-add")).show(ctx, |ui| {
            ui.set_width(620.0);
            ui.heading("Add tasks from a template");
            ui.label(
                "One task per input line, as GNU parallel makes them: {} is the input \
                 (quoted for the shell), {.} without its extension, {/} its file name, \
                 {//} its folder, {/.} the name without extension, {#} the task's number, \
                 {1} {2} … its columns. A command without any gets the input appended.",
            );
            let form = &mut self.template;
            typed_field(
                ui,
                ("Command", "bulk-command"),
                egui::TextEdit::singleline(&mut form.command)
                    .hint_text("convert {} {.}.jpg")
                    .font(egui::TextStyle::Monospace),
            );
            typed_field(
                ui,
                ("Column separator", "bulk-colsep"),
                egui::TextEdit::singleline(&mut form.colsep)
                    .hint_text("optional regular expression, e.g. , or \\t")
                    .font(egui::TextStyle::Monospace),
            );
            ui.label("Inputs, one per line:");
            egui::ScrollArea::vertical()
                .id_salt("bulk-inputs-scroll")
                .max_height(160.0)
                .show(ui, |ui| {
                    let inputs = ui.add(
                        egui::TextEdit::multiline(&mut form.inputs)
                            .id(egui::Id::unique("bulk-inputs"))
                            .hint_text("a.png\nb.png\nc.png")
                            .font(egui::TextStyle::Monospace)
                            .desired_rows(6)
                            .desired_width(f32::INFINITY),
                    );
                    mark(ui, "bulk-inputs", &inputs);
                });
            ui.horizontal(|ui| {
                if ui.button("Read from a file…").clicked() {
                    actions.push(Action::InputsDialog);
                }
                if ui.button("Type its path…").clicked() {
                    actions.push(Action::TypePath(FilePurpose::Inputs));
                }
                let mut clear = false;
                if let Some(file) = &form.file {
                    ui.weak(format!(
                        "+ {} inputs from {}",
                        file.count,
                        file.path.display()
                    ));
                    clear = ui
                        .small_button("✕")
                        .on_hover_text("Drop the file's inputs")
                        .clicked();
                }
                if clear {
                    form.file = None;
                }
            });
            ui.separator();
            let count = bulk_preview(ui, form);
            ui.horizontal(|ui| {
                let add =
                    ui.add_enabled(count > 0, egui::Button::new(format!("Add {count} tasks")));
                mark(ui, "bulk-add", &add);
                if add.clicked() {
                    actions.push(Action::AddFromInputs);
                }
                if ui.button("Cancel").clicked() {
                    actions.push(Action::CancelDialog);
                }
            });
        });
        if modal.should_close() {
            actions.push(Action::CancelDialog);
        }
    }

    /// File › Watch: a command line (a Python program) run watched, in a window of its own.
    fn watch_window(&mut self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        let modal = egui::Modal::new(egui::Id::unique("watch-a-program")).show(ctx, |ui| {
            ui.set_width(520.0);
            ui.heading("Watch a Python program");
            ui.label(
                "The command runs unchanged; its multiprocessing Pool, Process and \
                 ProcessPoolExecutor appear on the timeline, and its own output in the \
                 console as task \"main\".",
            );
            let entered = typed_field(
                ui,
                ("Command", "watch-field"),
                egui::TextEdit::singleline(&mut self.watch_input)
                    .hint_text("python3 script.py")
                    .font(egui::TextStyle::Monospace),
            );
            let command = self.watch_input.trim().to_owned();
            ui.horizontal(|ui| {
                let go = ui.add_enabled(!command.is_empty(), egui::Button::new("Watch"));
                mark(ui, "watch-go", &go);
                if !command.is_empty() && (go.clicked() || entered) {
                    actions.push(Action::Watch(command.clone()));
                }
                if ui.button("Cancel").clicked() {
                    actions.push(Action::CancelDialog);
                }
            });
            ui.separator();
            ui.weak("Or one of the built-in programs:");
            for (i, (label, _, _)) in crate::model::formats::presets::WATCH_PRESETS
                .iter()
                .enumerate()
            {
                if ui.button(*label).clicked() {
                    actions.push(Action::WatchPreset(i));
                }
            }
        });
        if modal.should_close() {
            actions.push(Action::CancelDialog);
        }
    }

    /// Recent runs (newest first): open one on the timeline, with its output.
    fn past_runs_menu(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        let runs = self.past_runs().to_vec();
        if runs.is_empty() {
            ui.weak("No runs yet: each run is kept here once started.");
        }
        for run in runs {
            let ago = run.started.elapsed().unwrap_or_default();
            let ago = crate::ui::theme::duration(std::time::Duration::from_secs(ago.as_secs()));
            let what = match &run.ended {
                Some(end) => format!(
                    "{} tasks: {} ok, {} failed{}",
                    end.tasks,
                    end.succeeded,
                    end.failed,
                    if end.lost > 0 {
                        format!(", {} lost", end.lost)
                    } else {
                        String::new()
                    }
                ),
                None => "did not end cleanly (or still runs)".to_owned(),
            };
            let name = match (&run.about.source, run.about.watched) {
                (Some(source), true) => format!("watched `{}`", short(source, 48)),
                (Some(source), false) => short(source, 48),
                (None, _) => "a list".to_owned(),
            };
            ui.horizontal(|ui| {
                if ui
                    .button(format!("{name} · {ago} ago · {what}"))
                    .on_hover_text(run.dir.display().to_string())
                    .clicked()
                {
                    actions.push(Action::OpenRun(run.dir.clone()));
                }
                if ui
                    .small_button("Folder")
                    .on_hover_text("Show its output files")
                    .clicked()
                {
                    actions.push(Action::Reveal(run.dir.clone()));
                }
            });
        }
        ui.separator();
        ui.horizontal(|ui| {
            let label = ui.label("Keep the last");
            ui.add(egui::DragValue::new(&mut self.keep_runs).range(1..=10_000))
                .labelled_by(label.id);
            ui.label("runs, in at most");
            ui.add(
                egui::DragValue::new(&mut self.max_runs_mb)
                    .range(0..=1_000_000)
                    .custom_formatter(|mb, _| {
                        if mb < 1.0 {
                            "any size".to_owned()
                        } else {
                            format!("{mb:.0} MB")
                        }
                    })
                    .custom_parser(|text| {
                        let text = text.trim().trim_end_matches("MB").trim();
                        if text.starts_with("any") {
                            Some(0.0)
                        } else {
                            text.parse().ok()
                        }
                    }),
            )
            .on_hover_text("Older runs go first; drag to 0 for no size cap");
        });
    }

    fn dialog_ui(&mut self, ctx: &egui::Context, dialog: &Dialog, actions: &mut Vec<Action>) {
        match dialog {
            Dialog::TypePath(purpose) => self.path_window(ctx, *purpose, actions),
            Dialog::Watch => self.watch_window(ctx, actions),
            Dialog::BulkAdd => self.bulk_window(ctx, actions),
            Dialog::QuitWhileRunning => {
                let running = self.run.as_ref().map_or(0, super::Run::active);
                let on_cluster = self.run.as_ref().is_some_and(super::Run::on_cluster);
                let modal = egui::Modal::new(egui::Id::unique("quit-while-running")).show(ctx, |ui| {
                    ui.heading("Tasks are still running");
                    ui.label(if on_cluster {
                        format!(
                            "{running} task(s) are running or queued on the Slurm cluster. They can run on without poolscope: the next start offers to follow them again."
                        )
                    } else {
                        format!(
                            "{running} task(s) are running or queued. Quitting terminates them all (and their child processes)."
                        )
                    });
                    ui.horizontal(|ui| {
                        if on_cluster
                            && ui
                                .button("Leave them on the cluster and quit")
                                .on_hover_text("Nothing is cancelled; Resume at the next start reattaches")
                                .clicked()
                        {
                            actions.push(Action::LeaveOnClusterAndQuit);
                        }
                        let terminate = if on_cluster { "Cancel them and quit" } else { "Terminate and quit" };
                        if ui.button(terminate).clicked() {
                            actions.push(Action::ConfirmQuit);
                        }
                        if ui.button("Cancel").clicked() {
                            actions.push(Action::CancelDialog);
                        }
                    });
                });
                if modal.should_close() {
                    actions.push(Action::CancelDialog);
                }
            }
            Dialog::Recover { dir, summary } => {
                let modal = egui::Modal::new(egui::Id::unique("recover-run")).show(ctx, |ui| {
                    ui.heading("A run did not end cleanly");
                    if crate::executor::backend::slurm::went_to_cluster(dir) {
                        ui.label("poolscope stopped following this run while its tasks were on the Slurm cluster:");
                        ui.label(summary);
                        ui.label("Resume follows the tasks still there (nothing is submitted twice) and runs what was never submitted.");
                    } else {
                        ui.label("poolscope stopped (killed or crashed) while this run was going:");
                        ui.label(summary);
                    }
                    ui.horizontal(|ui| {
                        let resume = ui
                            .button("Resume it")
                            .on_hover_text("Run the tasks that did not finish, as new attempts of the same run");
                        mark(ui, "recover-resume", &resume);
                        if resume.clicked() {
                            actions.push(Action::ResumeRun(dir.clone()));
                        }
                        if ui.button("Open it").on_hover_text("See it on the timeline as it was").clicked() {
                            actions.push(Action::OpenRun(dir.clone()));
                        }
                        if ui
                            .button("Close it as it is")
                            .on_hover_text("Keep it as it is; it is not offered again")
                            .clicked()
                        {
                            actions.push(Action::CloseRun(dir.clone()));
                        }
                        if ui.button("Later").clicked() {
                            actions.push(Action::CancelDialog);
                        }
                    });
                });
                if modal.should_close() {
                    actions.push(Action::CancelDialog);
                }
            }
        }
    }
}

/// A labelled one-line field that takes the keyboard when its window opens (nothing
/// else has it); whether Enter was pressed in it.
fn typed_field(
    ui: &mut egui::Ui,
    (label, name): (&str, &'static str),
    edit: egui::TextEdit<'_>,
) -> bool {
    let field = ui
        .horizontal(|ui| {
            let label = ui.label(label);
            ui.add(edit.id(egui::Id::unique(name)).desired_width(f32::INFINITY))
                .labelled_by(label.id)
        })
        .inner;
    mark(ui, name, &field);
    let entered = field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
    if !entered && ui.ctx().memory(|m| m.focused().is_none()) {
        field.request_focus();
    }
    entered
}

fn shortcuts(ui: &egui::Ui, app: &PoolscopeApp, actions: &mut Vec<Action>) {
    let ctrl = |key| KeyboardShortcut::new(Modifiers::COMMAND, key);
    ui.input_mut(|i| {
        if i.consume_shortcut(&ctrl(Key::O)) {
            actions.push(Action::OpenDialog);
        }
        if i.consume_shortcut(&ctrl(Key::S)) {
            actions.push(Action::Save);
        }
        if i.consume_shortcut(&ctrl(Key::Enter)) {
            if app.live_run().is_some() {
                actions.push(Action::SubmitPending);
            } else {
                actions.push(Action::Start);
            }
        }
        if app.dialog.is_some() && i.consume_key(Modifiers::NONE, Key::Escape) {
            actions.push(Action::CancelDialog);
        }
    });
}

/// The bulk-add window's preview: the first commands its template makes; returns how
/// many tasks it makes in all.
fn bulk_preview(ui: &mut egui::Ui, form: &crate::ui::actions::TemplateForm) -> usize {
    /// Commands shown before adding.
    const PREVIEW: usize = 5;
    // Only the first inputs are made into commands: a file of millions is counted
    // once, when read, and the window stays quick.
    let preview =
        crate::model::formats::draft::BulkTemplate::new(&form.command, &form.colsep).map(|bulk| {
            let first: Vec<String> = form
                .bulk_inputs()
                .take(PREVIEW)
                .zip(1..)
                .map(|(input, seq)| bulk.command(&bulk.columns(input), seq))
                .collect();
            (first, form.bulk_input_count())
        });
    match preview {
        Ok((first, total)) => {
            ui.label(match total {
                0 => "Preview: no inputs yet".to_owned(),
                n if n > PREVIEW => format!("Preview (the first {PREVIEW} of {n}):"),
                n => format!("Preview ({n}):"),
            });
            for command in &first {
                let line = ui.monospace(crate::model::shown(command, 200));
                mark(ui, "bulk-preview", &line);
            }
            total
        }
        Err(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
            0
        }
    }
}
