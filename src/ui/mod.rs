//! The window's panels. Each reads the app state and returns the user's [`Action`]s;
//! nothing here blocks or talks to processes directly.

pub mod console;
mod controls;
pub mod editor;
mod status;
mod table;
pub mod theme;
pub mod timeline;

use egui::{Key, KeyboardShortcut, Modifiers};

use crate::app::{Action, Dialog, PoolscopeApp};
use crate::model::presets::PRESETS;

impl PoolscopeApp {
    /// Lay out the whole window; the actions are applied by the caller.
    pub fn draw(&mut self, ui: &mut egui::Ui) -> Vec<Action> {
        let mut actions = Vec::new();
        shortcuts(ui, self, &mut actions);
        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui, &mut actions));
        egui::Panel::top("controls").show(ui, |ui| self.controls(ui, &mut actions));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui, &mut actions));
        // A third of the window for the console (a dozen lines at 1280×800); the user
        // drags its top edge, and egui remembers it between sessions.
        let console_height = (ui.available_height() * 0.36).max(220.0);
        egui::Panel::bottom("output")
            .resizable(true)
            .default_size(console_height)
            .min_size(120.0)
            .show(ui, |ui| {
                self.console
                    .show(ui, self.run.as_ref(), self.selected, &mut actions);
            });
        egui::CentralPanel::default().show(ui, |ui| {
            // The timeline and the task list share the centre; the user drags the line
            // between them (egui remembers it, between sessions too).
            let half = (ui.available_height() * 0.5).max(160.0);
            egui::Panel::top("timeline")
                .resizable(true)
                .default_size(half)
                .min_size(140.0)
                .show(ui, |ui| {
                    self.timeline_panel(ui, &mut actions);
                    // The panel keeps the height it was given (a panel shrinks to what
                    // its content used, and the timeline may use a little less).
                    ui.allocate_space(egui::vec2(0.0, ui.available_height()));
                });
            let editing = self
                .editing
                .filter(|&i| self.rows.get(i).is_some_and(|r| r.task.is_none()));
            if let Some(i) = editing {
                let workers = self.workers.is_some();
                egui::Panel::right("editor")
                    .resizable(true)
                    .default_size(380.0)
                    .min_size(260.0)
                    .show(ui, |ui| {
                        self.editor
                            .show(ui, i, &mut self.rows[i].draft, workers, &mut actions);
                    });
            }
            self.task_table(ui, &mut actions);
        });
        if let Some(dialog) = self.dialog.clone() {
            self.dialog_ui(ui.ctx(), &dialog, &mut actions);
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
            ui.menu_button("File", |ui| {
                if ui
                    .button("Open…  (Ctrl+O)")
                    .on_hover_text("A task file (.toml), a saved run, or a GNU parallel joblog")
                    .clicked()
                {
                    actions.push(Action::OpenDialog);
                }
                if ui.button("Save  (Ctrl+S)").clicked() {
                    actions.push(Action::Save);
                }
                if ui.button("Save as…").clicked() {
                    actions.push(Action::SaveAsDialog);
                }
                ui.menu_button("Past runs", |ui| self.past_runs_menu(ui, actions));
                // Native dialogs need a desktop portal; a typed path always works.
                ui.separator();
                self.watch_field(ui, actions);
                ui.separator();
                self.path_field(ui);
                ui.horizontal(|ui| {
                    let path = self.path_input.trim();
                    if ui
                        .add_enabled(!path.is_empty(), egui::Button::new("Open path"))
                        .clicked()
                    {
                        actions.push(Action::Open(path.into()));
                    }
                    if ui
                        .add_enabled(!path.is_empty(), egui::Button::new("Save to path"))
                        .clicked()
                    {
                        actions.push(Action::SaveAs(path.into()));
                    }
                });
                ui.separator();
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
            });
            ui.menu_button("Export", |ui| self.export_menu(ui, actions));
            ui.menu_button("Presets", |ui| {
                for (i, (label, _, _)) in PRESETS.iter().enumerate() {
                    if ui.button(*label).clicked() {
                        actions.push(Action::LoadPreset(i));
                    }
                }
                ui.separator();
                ui.weak("Watch a real Python program:");
                for (i, (label, _, _)) in crate::model::presets::WATCH_PRESETS.iter().enumerate() {
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

    /// Native dialogs need a desktop portal; a typed path always works (File, Export).
    fn path_field(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let label = ui.label("Path");
            ui.add(
                egui::TextEdit::singleline(&mut self.path_input)
                    .hint_text("or type a file path")
                    .desired_width(220.0),
            )
            .labelled_by(label.id);
        });
    }

    fn export_menu(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        let has_run = self.run.is_some();
        for kind in crate::app::ExportKind::ALL {
            if ui
                .add_enabled(has_run, egui::Button::new(kind.label()))
                .clicked()
            {
                actions.push(Action::ExportDialog(kind));
            }
        }
        ui.separator();
        self.path_field(ui);
        let path = self.path_input.trim().to_owned();
        ui.horizontal_wrapped(|ui| {
            for kind in crate::app::ExportKind::ALL {
                if ui
                    .add_enabled(
                        has_run && !path.is_empty(),
                        egui::Button::new(format!("{} to the path", kind.short_label())),
                    )
                    .clicked()
                {
                    actions.push(Action::Export(kind, path.clone().into()));
                }
            }
        });
    }

    /// File › Watch: a command line to run watched.
    fn watch_field(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        ui.label("Watch a Python program (its real pools, live):")
            .on_hover_text(
                "Runs the command unchanged; its multiprocessing Pool, Process and \
                 ProcessPoolExecutor appear on the timeline",
            );
        ui.horizontal(|ui| {
            let label = ui.label("Command");
            ui.add(egui::TextEdit::singleline(&mut self.watch_input).desired_width(220.0))
                .labelled_by(label.id);
            let command = self.watch_input.trim();
            if ui
                .add_enabled(!command.is_empty(), egui::Button::new("Watch"))
                .clicked()
            {
                actions.push(Action::Watch(command.to_owned()));
            }
        });
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
            ui.horizontal(|ui| {
                if ui
                    .button(format!("{ago} ago · {what}"))
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
                    .suffix(" MB"),
            )
            .on_hover_text("0: no size cap; older runs go first");
        });
    }

    fn dialog_ui(&self, ctx: &egui::Context, dialog: &Dialog, actions: &mut Vec<Action>) {
        match dialog {
            Dialog::QuitWhileRunning => {
                let running = self.run.as_ref().map_or(0, crate::app::Run::active);
                let on_cluster = self.run.as_ref().is_some_and(crate::app::Run::on_cluster);
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
                        if ui
                            .button("Resume it")
                            .on_hover_text("Run the tasks that did not finish, as new attempts of the same run")
                            .clicked()
                        {
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
