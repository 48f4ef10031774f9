//! Pool size, Start / Pause / Close / Terminate, the pool's state and the last notice.

use crate::app::{Action, PoolStatus, PoolscopeApp};
use crate::executor::WorkerConfig;

impl PoolscopeApp {
    pub(in crate::app) fn controls(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        ui.add_space(4.0);
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Pool size");
            let mut size = self.pool_size;
            let response = ui
                .add(egui::DragValue::new(&mut size).range(1..=4096).speed(0.1))
                .labelled_by(label.id)
                .on_hover_text(
                    "Most tasks running at once. Changing it while running never kills a task.",
                );
            if response.changed() {
                actions.push(Action::Resize(size));
            }
            if self.pool_size == self.cpu_count {
                ui.weak(format!("(= CPU count, {})", self.cpu_count));
            } else if ui
                .small_button(format!("use CPU count ({})", self.cpu_count))
                .clicked()
            {
                actions.push(Action::Resize(self.cpu_count));
            }
            self.mode_controls(ui);

            let status = self.status();
            let live = self.live_run().is_some();
            if live {
                let pending = self.pending_rows();
                let open = self.live_run().is_some_and(crate::app::Run::is_open);
                if ui
                    .add_enabled(
                        pending > 0,
                        egui::Button::new(format!("Submit {pending} new")),
                    )
                    .on_hover_text("Add the tasks not yet in the pool (Ctrl+Enter)")
                    .clicked()
                {
                    actions.push(Action::SubmitPending);
                }
                if status == PoolStatus::Paused {
                    if ui.button("Resume").clicked() {
                        actions.push(Action::Resume);
                    }
                } else if ui
                    .add_enabled(open, egui::Button::new("Pause"))
                    .on_hover_text("Start no new task; running ones go on")
                    .clicked()
                {
                    actions.push(Action::Pause);
                }
                if ui
                    .add_enabled(open, egui::Button::new("Close"))
                    .on_hover_text("Accept no more tasks; the queue drains (Pool.close())")
                    .clicked()
                {
                    actions.push(Action::Close);
                }
                if ui
                    .button("Terminate")
                    .on_hover_text("Kill every running task and drop the queue (Pool.terminate())")
                    .clicked()
                {
                    actions.push(Action::Terminate);
                }
            } else {
                let blocker = self.start_blocker();
                let start = ui.add(egui::Button::new("Start"));
                crate::ui::mark(ui, "start", &start);
                let start = match &blocker {
                    Some(reason) => start.on_hover_text(format!("Cannot start: {reason}")),
                    None => start.on_hover_text("Run the tasks (Ctrl+Enter)"),
                };
                if start.clicked() {
                    // Start explains itself when blocked rather than doing nothing.
                    actions.push(Action::Start);
                }
            }
            ui.separator();
            let colour = match status {
                PoolStatus::Running => ui.visuals().hyperlink_color,
                PoolStatus::Paused | PoolStatus::Closed => ui.visuals().warn_fg_color,
                _ => ui.visuals().text_color(),
            };
            ui.label(
                egui::RichText::new(format!("Pool: {}", status.label()))
                    .color(colour)
                    .strong(),
            );
        });
        if let Some(notice) = self.notice.clone() {
            ui.horizontal(|ui| {
                let colour = if notice.is_error {
                    ui.visuals().error_fg_color
                } else {
                    ui.visuals().weak_text_color()
                };
                ui.label(egui::RichText::new(&notice.text).color(colour));
                if ui.small_button("dismiss").clicked() {
                    actions.push(Action::Dismiss);
                }
            });
        }
        ui.add_space(2.0);
    }

    /// Process per task, or persistent workers with Python's options. Set before Start.
    fn mode_controls(&mut self, ui: &mut egui::Ui) {
        ui.separator();
        let idle = self.live_run().is_none();
        ui.add_enabled_ui(idle, |ui| {
            let before = Mode::of(self);
            let mut mode = before;
            egui::ComboBox::from_id_salt("pool-mode")
                .selected_text(mode.label())
                .show_ui(ui, |ui| {
                    for (choice, hover) in [
                        (Mode::Processes, "A fresh process for every task (subprocess, xargs, GNU parallel)"),
                        (Mode::Workers, "One persistent worker per slot runs task after task: one PID, many tasks"),
                        (Mode::Slurm, "Each task an element of a Slurm job array, at most the pool size at once (needs sbatch here)"),
                        (Mode::SlurmWorkers, "One persistent worker per slot as a Slurm job; tasks go to the workers that have connected: many short tasks at worker speed (needs sbatch here)"),
                    ] {
                        ui.selectable_value(&mut mode, choice, choice.label())
                            .on_hover_text(hover);
                    }
                })
                .response
                .on_hover_text("How tasks run; the timeline by PID shows the difference");
            if mode != before {
                self.workers =
                    matches!(mode, Mode::Workers | Mode::SlurmWorkers).then(WorkerConfig::default);
                self.slurm = matches!(mode, Mode::Slurm | Mode::SlurmWorkers).then(Default::default);
            }
            if let Some(options) = self.slurm.as_mut() {
                let mut partition = options.partition.clone().unwrap_or_default();
                let label = ui.label("partition");
                if ui
                    .add(
                        egui::TextEdit::singleline(&mut partition)
                            .hint_text("default")
                            .desired_width(80.0),
                    )
                    .labelled_by(label.id)
                    .changed()
                {
                    let typed = partition.trim();
                    options.partition = (!typed.is_empty()).then(|| typed.to_owned());
                }
            }
            if let Some(config) = self.workers.as_mut() {
                let mut max = config.max_tasks.unwrap_or(0);
                let label = ui.label("maxtasksperchild");
                if ui
                    .add(egui::DragValue::new(&mut max).range(0..=1_000_000).speed(0.1))
                    .labelled_by(label.id)
                    .on_hover_text("Replace a worker after this many tasks (0: never)")
                    .changed()
                {
                    config.max_tasks = (max > 0).then_some(max);
                }
                let mut chunk = self.chunk_size.unwrap_or(0);
                let label = ui.label("chunksize");
                if ui
                    .add(egui::DragValue::new(&mut chunk).range(0..=1_000_000).speed(0.1))
                    .labelled_by(label.id)
                    .on_hover_text("Tasks handed to a worker at once at Start (0: Python's map default)")
                    .changed()
                {
                    self.chunk_size = (chunk > 0).then_some(chunk);
                }
            }
        });
        ui.separator();
    }
}

/// How tasks run, as the mode menu offers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Processes,
    Workers,
    Slurm,
    SlurmWorkers,
}

impl Mode {
    fn of(app: &PoolscopeApp) -> Self {
        match (&app.workers, &app.slurm) {
            (Some(_), Some(_)) => Mode::SlurmWorkers,
            (Some(_), None) => Mode::Workers,
            (None, Some(_)) => Mode::Slurm,
            (None, None) => Mode::Processes,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Processes => "Process per task",
            Mode::Workers => "Workers (Python Pool)",
            Mode::Slurm => "Slurm cluster (job array)",
            Mode::SlurmWorkers => "Slurm cluster (workers)",
        }
    }
}
