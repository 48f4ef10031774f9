//! The console: the selected task's output as it arrives (stdout, stderr in the error
//! colour, typed input marked), an input box that types to the running task, and an
//! all-tasks view that interleaves every task's lines with an `[id]` prefix.

use std::borrow::Cow;
use std::time::Duration;

use egui::text::LayoutJob;
use egui::{FontId, Key, TextFormat};

use super::theme::state_text;
use crate::app::{Action, PoolscopeApp, Rerun};
use crate::executor::StdinMode;
use crate::model::{Channel, TaskRecord, TaskState};

/// Most output laid out at once; the rest is in the run's output files.
const SHOWN_BYTES: usize = 1024 * 1024;
const SHOWN_LINES: usize = 5000;
/// A pipe task silent for this long may be block-buffering its output.
const QUIET_HINT_AFTER: Duration = Duration::from_millis(1500);

/// What the console keeps between frames.
#[derive(Clone, Debug, Default)]
pub struct ConsoleState {
    pub input: String,
    pub history: Vec<String>,
    /// Position while browsing history with Up/Down.
    history_pos: Option<usize>,
    pub find: String,
    pub all_tasks: bool,
}

/// Terminal output as plain text: escape sequences removed, and of a line rewritten with
/// carriage returns (progress bars, prompts redrawn) only what is finally on screen.
pub fn clean_line(text: &str) -> Cow<'_, str> {
    let needs = text.contains('\u{1b}') || text.contains('\r');
    if !needs {
        return Cow::Borrowed(text);
    }
    let trimmed = text.trim_end_matches('\r');
    let last_write = trimmed.rsplit('\r').next().unwrap_or(trimmed);
    // The stripper drops every control character, TAB included: keep the TABs.
    let pieces: Vec<String> = last_write
        .split('\t')
        .map(strip_ansi_escapes::strip_str)
        .collect();
    Cow::Owned(pieces.join("\t"))
}

/// Why the input box is off, in words; `None` when typing reaches the task.
pub fn input_blocker(task: &TaskRecord) -> Option<&'static str> {
    match task.state {
        TaskState::Running if task.stdin_open => None,
        TaskState::Running => Some(if matches!(task.spec.stdin, StdinMode::Pipe) {
            "stdin is closed (EOF was sent)"
        } else {
            "this task's stdin is not interactive: set Stdin to \"interactive\" (or run it in a terminal) and retry"
        }),
        TaskState::Queued | TaskState::Waiting(_) | TaskState::Retrying => {
            Some("the task has not started yet")
        }
        TaskState::Done(_) | TaskState::Cancelled | TaskState::Lost => {
            Some("the task is not running")
        }
    }
}

impl PoolscopeApp {
    pub(super) fn console_panel(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        let run = self.run.as_ref();
        let task = self
            .selected
            .and_then(|id| run.and_then(|r| r.record.task(id)));
        console_header(ui, &mut self.console, task);
        let Some(run) = run else {
            return;
        };
        let from_file = run.executor().is_none();
        let find = self.console.find.trim().to_owned();
        let (mut rows, hidden) = console_rows(run, task, self.console.all_tasks);
        if !find.is_empty() {
            rows.retain(|(text, _)| text.contains(&find));
        }
        let copy_text = || {
            rows.iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        ui.horizontal(|ui| {
            if ui
                .small_button("Copy all")
                .on_hover_text("Copy the lines shown to the clipboard")
                .clicked()
            {
                ui.ctx().copy_text(copy_text());
            }
            if let Some(dir) = &run.output_dir
                && ui
                    .small_button("Output files")
                    .on_hover_text(format!(
                        "Show the run's folder: each attempt's full output is ID.ATTEMPT.stdout \
                         and .stderr in {}",
                        dir.display()
                    ))
                    .clicked()
            {
                actions.push(Action::Reveal(dir.clone()));
            }
            if !find.is_empty() {
                ui.weak(format!("{} matching lines", rows.len()));
            }
            if hidden > 0 {
                ui.weak(format!(
                    "… {hidden} earlier bytes are in the run's output files"
                ));
            }
        });
        if let Some(task) = task.filter(|_| !self.console.all_tasks) {
            quiet_hint(ui, task, run.now(), actions);
        }
        let input_height = if from_file || self.console.all_tasks {
            0.0
        } else {
            30.0
        };
        let font = FontId::monospace(12.0);
        let row_height = ui.fonts_mut(|f| f.row_height(&font));
        let visuals = ui.visuals().clone();
        egui::ScrollArea::both()
            .id_salt(("console", self.console.all_tasks, task.map(|t| t.id.0)))
            .auto_shrink(false)
            .max_height((ui.available_height() - input_height).max(row_height * 2.0))
            .stick_to_bottom(true)
            .show_rows(ui, row_height, rows.len().max(1), |ui, range| {
                if rows.is_empty() {
                    ui.weak(if from_file {
                        "(no output stored for this task)"
                    } else {
                        "(no output yet)"
                    });
                    return;
                }
                // Only the visible rows are laid out, so megabytes of output stay smooth.
                let mut job = LayoutJob::default();
                for (text, channel) in &rows[range] {
                    let colour = match channel {
                        Channel::Stdout => visuals.text_color(),
                        Channel::Stderr => visuals.error_fg_color,
                        Channel::Input => visuals.hyperlink_color,
                    };
                    job.append(text, 0.0, TextFormat::simple(font.clone(), colour));
                    job.append("\n", 0.0, TextFormat::simple(font.clone(), colour));
                }
                ui.add(egui::Label::new(job).selectable(true).extend());
            });
        if let Some(task) = task.filter(|_| !from_file && !self.console.all_tasks) {
            let task = task.clone();
            self.input_row(ui, &task, actions);
        }
    }

    fn input_row(&mut self, ui: &mut egui::Ui, task: &TaskRecord, actions: &mut Vec<Action>) {
        let blocker = input_blocker(task);
        ui.horizontal(|ui| {
            let running = task.state == TaskState::Running;
            let label = ui.label("Input");
            let edit = egui::TextEdit::singleline(&mut self.console.input)
                .hint_text("type to the task; Enter sends the line")
                .font(egui::TextStyle::Monospace)
                .desired_width(
                    (ui.available_width() - if blocker.is_some() { 520.0 } else { 190.0 })
                        .max(120.0),
                );
            let response = ui
                .add_enabled(blocker.is_none(), edit)
                .labelled_by(label.id);
            if response.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) && blocker.is_none()
            {
                let line = std::mem::take(&mut self.console.input);
                self.console.history_pos = None;
                actions.push(Action::SendLine(task.id, line));
                response.request_focus();
            }
            if response.has_focus() {
                self.browse_history(ui);
            }
            if ui
                .add_enabled(blocker.is_none(), egui::Button::new("EOF"))
                .on_hover_text("Close the task's stdin (Ctrl-D)")
                .clicked()
            {
                actions.push(Action::CloseStdin(task.id));
            }
            if ui
                .add_enabled(running, egui::Button::new("Ctrl-C"))
                .on_hover_text("Send SIGINT to the task's process group")
                .clicked()
            {
                actions.push(Action::Interrupt(task.id));
            }
            if ui.add_enabled(running, egui::Button::new("Kill")).clicked() {
                actions.push(Action::Kill(task.id));
            }
            if let Some(reason) = blocker {
                ui.weak(format!("Input is off: {reason}"));
            }
        });
    }

    fn browse_history(&mut self, ui: &egui::Ui) {
        let (up, down) = ui.input(|i| (i.key_pressed(Key::ArrowUp), i.key_pressed(Key::ArrowDown)));
        let history = &self.console.history;
        if history.is_empty() || !(up || down) {
            return;
        }
        let pos = match (self.console.history_pos, up) {
            (None, true) => Some(history.len() - 1),
            (Some(p), true) => Some(p.saturating_sub(1)),
            (Some(p), false) if p + 1 < history.len() => Some(p + 1),
            (_, false) => None,
        };
        self.console.history_pos = pos;
        self.console.input = pos.map(|p| history[p].clone()).unwrap_or_default();
    }
}

fn console_header(ui: &mut egui::Ui, console: &mut ConsoleState, task: Option<&TaskRecord>) {
    ui.horizontal(|ui| {
        ui.checkbox(&mut console.all_tasks, "all tasks");
        match (console.all_tasks, task) {
            (true, _) => {
                ui.strong("Console: every task, [id] before each line");
            }
            (false, Some(task)) => {
                ui.strong(format!("Console of task {}: {}", task.id, task.spec.name));
                ui.weak(format!("[{}]", state_text(&task.state)));
                if let Some(outcome) = task.outcome() {
                    ui.weak(outcome.to_string());
                }
            }
            (false, None) => {
                ui.weak("Console: select a task to see and type to it.");
            }
        }
        ui.add(
            egui::TextEdit::singleline(&mut console.find)
                .hint_text("find in output")
                .desired_width(140.0),
        );
    });
}

/// The lines to show: the task's (with how many earlier bytes are not shown), or every
/// task's, interleaved with an `[id]` prefix.
fn console_rows(
    run: &crate::app::Run,
    task: Option<&TaskRecord>,
    all_tasks: bool,
) -> (Vec<(String, Channel)>, u64) {
    if all_tasks {
        let rows = run
            .record
            .interleaved
            .lines
            .iter()
            .map(|(id, channel, text)| (format!("[{id}] {}", clean_line(text)), *channel))
            .collect();
        return (rows, 0);
    }
    let Some(task) = task else {
        return (Vec::new(), 0);
    };
    let lines = task.output.tail_lines(SHOWN_BYTES, SHOWN_LINES);
    let rows = (0..lines.lines.len())
        .map(|i| {
            let (text, channel) = lines.line(i);
            (clean_line(&text).into_owned(), channel)
        })
        .collect();
    (rows, lines.hidden)
}

/// A pipe task that has said nothing for a while may be holding its output in a buffer:
/// say so, and offer the two cures.
fn quiet_hint(ui: &mut egui::Ui, task: &TaskRecord, now: Duration, actions: &mut Vec<Action>) {
    let Some(attempt) = task.last_attempt() else {
        return;
    };
    let silent = task.output.held() == 0 && task.output.dropped() == 0;
    if task.state != TaskState::Running
        || task.spec.pty
        || !silent
        || attempt.runtime(now) < QUIET_HINT_AFTER
    {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.label(
            egui::RichText::new(
                "No output yet. Writing to a pipe, many programs (Python among them) keep output in a buffer until they exit.",
            )
            .color(ui.visuals().warn_fg_color),
        );
        if ui.small_button("Rerun with PYTHONUNBUFFERED=1").clicked() {
            actions.push(Action::Rerun(task.id, Rerun::Unbuffered));
        }
        if ui.small_button("Rerun in a terminal").clicked() {
            actions.push(Action::Rerun(task.id, Rerun::InTerminal));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_noise_is_cleaned() {
        assert_eq!(clean_line("\u{1b}[1;32mok\u{1b}[0m"), "ok");
        assert_eq!(clean_line("10%\r50%\r100%"), "100%");
        assert_eq!(clean_line(">>> 42\r"), ">>> 42");
        assert_eq!(
            clean_line("example.test\tmail exchanger = 50 mail.example.test.\r"),
            "example.test\tmail exchanger = 50 mail.example.test."
        );
        assert_eq!(
            clean_line("\u{1b}[1mServer:\u{1b}[0m\t127.0.0.1"),
            "Server:\t127.0.0.1"
        );
        assert!(matches!(clean_line("plain"), Cow::Borrowed("plain")));
    }
}
