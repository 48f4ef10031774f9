//! The console: the selected task's output as it arrives (stdout, stderr in the error
//! colour, typed input marked), an input box that types to the running task, and an
//! all-tasks view that interleaves every task's lines with an `[id]` prefix.

use std::borrow::Cow;
use std::time::Duration;

use egui::text::LayoutJob;
use egui::{Color32, FontId, Key, TextFormat};

use super::RunView;
use super::actions::{Action, Rerun};
use super::theme::{self, state_text};
use crate::executor::StdinMode;
use crate::executor::TaskId;
use crate::model::terminal::ansi::{self, TermStyle};
use crate::model::{Channel, TaskRecord, TaskState};

/// Most output laid out at once; the rest is in the run's output files.
const SHOWN_BYTES: usize = 1024 * 1024;
const SHOWN_LINES: usize = 5000;
/// A pipe task silent for this long may be block-buffering its output.
const QUIET_HINT_AFTER: Duration = Duration::from_millis(1500);
/// The console's splitter stops here: its header rows, six lines of output and the
/// input row.
pub const CONSOLE_MIN: f32 = 210.0;
/// The input box keeps one id whatever shows above it, so it keeps the keyboard focus
/// when a hint comes or goes (a line typed just then would be lost otherwise).
const INPUT_ID: &str = "console-input";

/// The console input box's id (it has the keyboard focus when typing goes to a task).
pub fn input_id() -> egui::Id {
    egui::Id::unique(INPUT_ID)
}

/// What the console keeps between frames.
#[derive(Clone, Debug, Default)]
pub struct ConsoleState {
    pub input: String,
    pub history: Vec<String>,
    /// Position while browsing history with Up/Down.
    history_pos: Option<usize>,
    pub find: String,
    pub all_tasks: bool,
    /// A screen-drawing terminal task shown as its lines rather than its screen.
    pub lines_view: bool,
    /// Typing that came after an Enter within one frame, handed to the box in the
    /// next frame (the box stops reading a frame's keys at Enter).
    deferred: Vec<egui::Event>,
}

/// One line of output into `job`, in its terminal colours; `base` where it has none.
/// A stderr line also has `shade` behind it (where its own colours set none), so it
/// reads apart from stdout printed in red.
fn append_line(
    job: &mut LayoutJob,
    raw: &str,
    (base, shade): (Color32, Option<Color32>),
    font: &FontId,
    dark_mode: bool,
) {
    let line = ansi::styled_line(raw);
    for (range, style) in &line.spans {
        let mut format = text_format(style, base, font, dark_mode);
        if let Some(shade) = shade
            && format.background == Color32::TRANSPARENT
        {
            format.background = shade;
        }
        job.append(&line.text[range.clone()], 0.0, format);
    }
    job.append("\n", 0.0, TextFormat::simple(font.clone(), base));
}

/// How a terminal style draws: its colours (swapped when inverse), bold as the strong
/// text colour where no colour is given, dim as faded.
fn text_format(style: &TermStyle, base: Color32, font: &FontId, dark_mode: bool) -> TextFormat {
    let colour = |c: Option<ansi::TermColour>| c.map(|c| theme::term_colour(c, dark_mode));
    let (mut fg, mut bg) = (colour(style.fg), colour(style.bg));
    if style.inverse {
        (fg, bg) = (bg.or(Some(base)), fg.or(Some(Color32::TRANSPARENT)));
        if bg == Some(Color32::TRANSPARENT) {
            bg = Some(if dark_mode {
                Color32::from_gray(20)
            } else {
                Color32::WHITE
            });
        }
    }
    let mut fg = fg.unwrap_or(base);
    if style.dim {
        fg = fg.gamma_multiply(0.6);
    }
    let mut format = TextFormat::simple(font.clone(), fg);
    if let Some(bg) = bg {
        format.background = bg;
    }
    if style.bold && style.fg.is_none() && !style.inverse {
        format.color = if dark_mode {
            Color32::WHITE
        } else {
            Color32::BLACK
        };
    }
    if style.italic {
        format.italics = true;
    }
    if style.underline {
        format.underline = egui::Stroke::new(1.0, fg);
    }
    format
}

/// What the console's body shows.
enum Body {
    /// A terminal task's screen.
    Screen(LayoutJob),
    /// Lines as received, with the scroll area's id and whether the run is from a file.
    Lines(
        Vec<(String, Channel)>,
        (&'static str, bool, Option<u64>),
        bool,
    ),
}

/// The output lines: only the visible rows are laid out, so megabytes stay smooth.
fn lines_view(
    ui: &mut egui::Ui,
    rows: &[(String, Channel)],
    salt: (&'static str, bool, Option<u64>),
    from_file: bool,
) -> f32 {
    let font = FontId::monospace(12.0);
    let row_height = ui.fonts_mut(|f| f.row_height(&font));
    let visuals = ui.visuals().clone();
    let mut lines_fit = 0.0;
    egui::ScrollArea::both()
        .id_salt(salt)
        .auto_shrink(false)
        .stick_to_bottom(true)
        .show_rows(ui, row_height, rows.len().max(1), |ui, range| {
            lines_fit = ui.clip_rect().height() / row_height;
            if rows.is_empty() {
                ui.weak(if from_file {
                    "(no output stored for this task)"
                } else {
                    "(no output yet)"
                });
                return;
            }
            let mut job = LayoutJob::default();
            for (raw, channel) in &rows[range] {
                let colours = match channel {
                    Channel::Stdout => (visuals.text_color(), None),
                    Channel::Stderr => (
                        visuals.error_fg_color,
                        Some(visuals.error_fg_color.gamma_multiply(0.18)),
                    ),
                    Channel::Input => (visuals.hyperlink_color, None),
                };
                append_line(&mut job, raw, colours, &font, visuals.dark_mode);
            }
            ui.add(egui::Label::new(job).selectable(true).extend());
        });
    lines_fit
}

/// A terminal task's screen grid laid out in its colours, with the cursor while it runs.
fn screen_job(visuals: &egui::Visuals, screen: &vt100::Screen, running: bool) -> LayoutJob {
    let font = FontId::monospace(12.0);
    let (dark_mode, base) = (visuals.dark_mode, visuals.text_color());
    let (rows, cols) = screen.size();
    let cursor = (running && !screen.hide_cursor()).then(|| screen.cursor_position());
    let mut job = LayoutJob::default();
    for row in 0..rows {
        let mut run = String::new();
        let mut run_style = TermStyle::default();
        for col in 0..cols {
            let Some(cell) = screen.cell(row, col) else {
                continue;
            };
            if cell.is_wide_continuation() {
                continue;
            }
            let mut style = cell_style(cell);
            if cursor == Some((row, col)) {
                style.inverse = !style.inverse;
            }
            if style != run_style && !run.is_empty() {
                job.append(&run, 0.0, text_format(&run_style, base, &font, dark_mode));
                run.clear();
            }
            run_style = style;
            run.push_str(if cell.has_contents() {
                cell.contents()
            } else {
                " "
            });
        }
        // Trailing blanks in the default style are not drawn.
        if run_style == TermStyle::default() {
            run.truncate(run.trim_end_matches(' ').len());
        }
        job.append(&run, 0.0, text_format(&run_style, base, &font, dark_mode));
        job.append("\n", 0.0, TextFormat::simple(font.clone(), base));
    }
    job
}

fn screen_view(ui: &mut egui::Ui, job: LayoutJob) -> f32 {
    let dark_mode = ui.visuals().dark_mode;
    let row_height = ui.fonts_mut(|f| f.row_height(&FontId::monospace(12.0)));
    let mut lines_fit = 0.0;
    egui::ScrollArea::both()
        .id_salt("terminal screen")
        .auto_shrink(false)
        .show(ui, |ui| {
            lines_fit = ui.clip_rect().height() / row_height;
            egui::Frame::NONE
                .fill(if dark_mode {
                    Color32::from_gray(12)
                } else {
                    Color32::from_gray(250)
                })
                .show(ui, |ui| {
                    ui.add(egui::Label::new(job).selectable(true).extend())
                });
        });
    lines_fit
}

fn cell_style(cell: &vt100::Cell) -> TermStyle {
    let colour = |c: vt100::Color| match c {
        vt100::Color::Default => None,
        vt100::Color::Idx(i) => Some(ansi::TermColour::Indexed(i)),
        vt100::Color::Rgb(r, g, b) => Some(ansi::TermColour::Rgb(r, g, b)),
    };
    TermStyle {
        fg: colour(cell.fgcolor()),
        bg: colour(cell.bgcolor()),
        bold: cell.bold(),
        dim: cell.dim(),
        italic: cell.italic(),
        underline: cell.underline(),
        inverse: cell.inverse(),
    }
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

impl ConsoleState {
    /// The console of the `selected` task of `run` (or of every task).
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        run: Option<RunView<'_>>,
        selected: Option<TaskId>,
        actions: &mut Vec<Action>,
    ) -> f32 {
        let task = selected.and_then(|id| run.and_then(|r| r.record.task(id)));
        let task = task.as_deref();
        console_header(ui, self, task);
        let Some(run) = run else {
            return 0.0;
        };
        let from_file = run.recorded;
        let all_tasks = self.all_tasks;
        let screen = task
            .filter(|_| !all_tasks)
            .and_then(|t| t.screen.as_ref().map(|screen| (t, screen)));
        if screen.is_some() {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.lines_view, false, "Screen")
                    .on_hover_text("The task's terminal as it shows now (it draws on the screen)");
                ui.selectable_value(&mut self.lines_view, true, "Lines")
                    .on_hover_text("Everything it wrote, line by line");
            });
        }
        let body = match screen {
            Some((task, screen)) if !self.lines_view => {
                let running = task.state == TaskState::Running;
                Body::Screen(screen_job(ui.visuals(), screen.screen(), running))
            }
            _ => {
                let rows = self.console_lines(ui, run, task, actions);
                let salt = ("console", all_tasks, task.map(|t| t.id.0));
                Body::Lines(rows, salt, from_file)
            }
        };
        let input_for = task.filter(|_| !from_file && !all_tasks).cloned();
        // Bottom-up, so the input row sits at the bottom and the output fills the rest
        // of the panel (whatever height the user dragged it to).
        ui.with_layout(egui::Layout::bottom_up(egui::Align::Min), |ui| {
            if let Some(task) = &input_for {
                self.input_row(ui, task, actions);
            }
            ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| match body {
                Body::Screen(job) => screen_view(ui, job),
                Body::Lines(rows, salt, from_file) => lines_view(ui, &rows, salt, from_file),
            })
            .inner
        })
        .inner
    }

    /// The buttons over the output, the hints, and the lines to show (found ones only
    /// when searching).
    fn console_lines(
        &self,
        ui: &mut egui::Ui,
        run: RunView<'_>,
        task: Option<&TaskRecord>,
        actions: &mut Vec<Action>,
    ) -> Vec<(String, Channel)> {
        let find = self.find.trim().to_owned();
        let (mut rows, hidden) = console_rows(run, task, self.all_tasks);
        if !find.is_empty() {
            rows.retain(|(raw, _)| ansi::plain_line(raw).contains(&find));
        }
        ui.horizontal(|ui| {
            if ui
                .small_button("Copy all")
                .on_hover_text("Copy the lines shown to the clipboard")
                .clicked()
            {
                let text: Vec<Cow<'_, str>> =
                    rows.iter().map(|(raw, _)| ansi::plain_line(raw)).collect();
                ui.ctx().copy_text(text.join("\n"));
            }
            if let Some(dir) = run.output_dir
                && ui
                    .small_button("Output files")
                    .on_hover_text(format!(
                        "Show the run's folder: each attempt's full output is ID.ATTEMPT.stdout \
                         and .stderr in {}",
                        dir.display()
                    ))
                    .clicked()
            {
                actions.push(Action::Reveal(dir.to_owned()));
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
        if let Some(task) = task.filter(|_| !self.all_tasks) {
            quiet_hint(ui, task, run.now, actions);
        }
        rows
    }

    /// One Enter per frame reaches the box: keys after it wait for the next frame, so
    /// lines typed faster than frames are drawn each arrive whole (egui's text box ends
    /// a frame's input at Enter and would drop the rest).
    fn one_line_per_frame(&mut self, ui: &egui::Ui) {
        let focused = ui.memory(|m| m.has_focus(input_id()));
        let deferred = std::mem::take(&mut self.deferred);
        ui.input_mut(|i| {
            if !deferred.is_empty() {
                let later = std::mem::replace(&mut i.events, deferred);
                i.events.extend(later);
            }
            if !focused {
                return;
            }
            let enter = i.events.iter().position(|e| {
                matches!(
                    e,
                    egui::Event::Key {
                        key: Key::Enter,
                        pressed: true,
                        ..
                    }
                )
            });
            if let Some(enter) = enter {
                self.deferred = i.events.split_off(enter + 1);
            }
        });
        if !self.deferred.is_empty() {
            ui.ctx().request_repaint();
        }
    }

    fn input_row(&mut self, ui: &mut egui::Ui, task: &TaskRecord, actions: &mut Vec<Action>) {
        let blocker = input_blocker(task);
        self.one_line_per_frame(ui);
        ui.horizontal(|ui| {
            let running = task.state == TaskState::Running;
            let label = ui.label("Input");
            let edit = egui::TextEdit::singleline(&mut self.input)
                .id(input_id())
                .hint_text("type here; Enter sends the line")
                .font(egui::TextStyle::Monospace)
                .desired_width(if blocker.is_some() {
                    (ui.available_width() * 0.4).max(120.0)
                } else {
                    (ui.available_width() - 190.0).max(120.0)
                });
            let response = ui
                .add_enabled(blocker.is_none(), edit)
                .labelled_by(label.id);
            super::mark(ui, "input", &response);
            if response.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) && blocker.is_none()
            {
                let line = std::mem::take(&mut self.input);
                self.history_pos = None;
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
                ui.add(
                    egui::Label::new(egui::RichText::new(format!("Input is off: {reason}")).weak())
                        .truncate(),
                );
            }
        });
    }

    fn browse_history(&mut self, ui: &egui::Ui) {
        let (up, down) = ui.input(|i| (i.key_pressed(Key::ArrowUp), i.key_pressed(Key::ArrowDown)));
        let history = &self.history;
        if history.is_empty() || !(up || down) {
            return;
        }
        let pos = match (self.history_pos, up) {
            (None, true) => Some(history.len() - 1),
            (Some(p), true) => Some(p.saturating_sub(1)),
            (Some(p), false) if p + 1 < history.len() => Some(p + 1),
            (_, false) => None,
        };
        self.history_pos = pos;
        self.input = pos.map(|p| history[p].clone()).unwrap_or_default();
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

/// The lines to show, as received (escape sequences and all): the task's (with how many
/// earlier bytes are not shown), or every task's, interleaved with an `[id]` prefix.
fn console_rows(
    run: RunView<'_>,
    task: Option<&TaskRecord>,
    all_tasks: bool,
) -> (Vec<(String, Channel)>, u64) {
    if all_tasks {
        let rows = run
            .record
            .interleaved
            .lines
            .iter()
            .map(|(id, channel, text)| (format!("[{id}] {text}"), *channel))
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
            (text.into_owned(), channel)
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
    // One line whatever the width: the output below keeps its place.
    ui.horizontal(|ui| {
        if ui.small_button("Rerun with PYTHONUNBUFFERED=1").clicked() {
            actions.push(Action::Rerun(task.id, Rerun::Unbuffered));
        }
        if ui.small_button("Rerun in a terminal").clicked() {
            actions.push(Action::Rerun(task.id, Rerun::InTerminal));
        }
        ui.add(
            egui::Label::new(
                egui::RichText::new(
                    "No output yet: writing to a pipe, many programs (Python among them) keep output in a buffer until they exit.",
                )
                .color(ui.visuals().warn_fg_color),
            )
            .truncate(),
        );
    });
}
