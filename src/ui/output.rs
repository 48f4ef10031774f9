//! The selected task's output as it arrives: stdout and stderr in arrival order, stderr
//! in the error colour, partial lines shown at once.

use egui::text::LayoutJob;
use egui::{FontId, TextFormat};

use super::theme::state_text;
use crate::app::{Action, PoolscopeApp};
use crate::executor::Stream;

/// Most bytes laid out at once; the rest is in the run's output files.
const SHOWN_BYTES: usize = 1024 * 1024;
const SHOWN_LINES: usize = 5000;

impl PoolscopeApp {
    pub(super) fn output_panel(&self, ui: &mut egui::Ui, _actions: &mut [Action]) {
        let task = self
            .selected
            .and_then(|id| self.run.as_ref().and_then(|r| r.record.task(id)));
        let Some(task) = task else {
            ui.add_space(4.0);
            ui.weak("Output: select a task to see what it prints.");
            return;
        };
        ui.horizontal(|ui| {
            ui.strong(format!("Output of task {}: {}", task.id, task.spec.name));
            ui.weak(format!("[{}]", state_text(&task.state)));
            if let Some(outcome) = task.outcome() {
                ui.weak(outcome.to_string());
            }
        });
        let lines = task.output.tail_lines(SHOWN_BYTES, SHOWN_LINES);
        if lines.hidden > 0 {
            ui.weak(format!(
                "… {} earlier bytes are in the run's output files",
                lines.hidden
            ));
        }
        if lines.lines.is_empty() {
            let from_file = self.run.as_ref().is_some_and(|r| r.executor().is_none());
            ui.weak(if from_file {
                "(no output stored for this task)"
            } else {
                "(no output yet)"
            });
            return;
        }
        let font = FontId::monospace(12.0);
        let row_height = ui.fonts_mut(|f| f.row_height(&font));
        let normal = ui.visuals().text_color();
        let error = ui.visuals().error_fg_color;
        // Only the visible rows are laid out, so megabytes of output stay smooth.
        egui::ScrollArea::both()
            .id_salt(("output", task.id.0))
            .auto_shrink(false)
            .stick_to_bottom(true)
            .show_rows(ui, row_height, lines.lines.len(), |ui, rows| {
                let mut job = LayoutJob::default();
                for i in rows {
                    let (text, stream) = lines.line(i);
                    let colour = if stream == Stream::Stderr {
                        error
                    } else {
                        normal
                    };
                    job.append(&text, 0.0, TextFormat::simple(font.clone(), colour));
                    job.append("\n", 0.0, TextFormat::simple(font.clone(), colour));
                }
                ui.add(egui::Label::new(job).selectable(true).extend());
            });
    }
}
