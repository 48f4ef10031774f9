//! The selected task's output as it arrives: stdout and stderr in arrival order, stderr
//! in the error colour, partial lines shown at once.

use egui::text::LayoutJob;
use egui::{FontId, TextFormat};

use super::theme::state_text;
use crate::app::{Action, PoolscopeApp};
use crate::executor::Stream;

/// Most bytes laid out at once; the rest is in the run's output files.
const SHOWN_BYTES: usize = 256 * 1024;

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
        let mut job = LayoutJob::default();
        let font = FontId::monospace(12.0);
        let normal = ui.visuals().text_color();
        let error = ui.visuals().error_fg_color;
        let total = task.output.held();
        let mut skip = total.saturating_sub(SHOWN_BYTES);
        if task.output.dropped() > 0 || skip > 0 {
            let hidden = task.output.dropped() + skip as u64;
            job.append(
                &format!("… {hidden} earlier bytes are in the run's output files …\n"),
                0.0,
                TextFormat::simple(font.clone(), ui.visuals().weak_text_color()),
            );
        }
        for (stream, bytes) in task.output.chunks() {
            let bytes = if skip >= bytes.len() {
                skip -= bytes.len();
                continue;
            } else {
                let b = &bytes[skip..];
                skip = 0;
                b
            };
            let colour = if stream == Stream::Stderr {
                error
            } else {
                normal
            };
            job.append(
                &String::from_utf8_lossy(bytes),
                0.0,
                TextFormat::simple(font.clone(), colour),
            );
        }
        if total == 0 {
            job.append(
                "(no output yet)",
                0.0,
                TextFormat::simple(font, ui.visuals().weak_text_color()),
            );
        }
        egui::ScrollArea::both()
            .id_salt(("output", task.id.0))
            .auto_shrink(false)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                ui.add(egui::Label::new(job).selectable(true));
            });
    }
}
