//! The task list: an editor for tasks not yet submitted, live status for the rest.

use egui::{RichText, Sense};
use egui_extras::{Column, TableBuilder};

use crate::app::{Action, LazyRows, PoolscopeApp, Row, Run, SortKey, StateFilter};
use crate::model::{DraftStdin, TaskRecord, TaskState};
use crate::ui::theme::{duration, state_colour, state_text};

const ROW_HEIGHT: f32 = 24.0;
/// The splitter above the list stops here: its toolbar, the header and five rows (and
/// the sideways scroll bar).
pub const LIST_MIN: f32 = 40.0 + 20.0 + 5.0 * ROW_HEIGHT + 24.0;

fn matches_filter(filter: StateFilter, state: Option<&TaskState>) -> bool {
    match filter {
        StateFilter::All => true,
        StateFilter::Pending => {
            matches!(
                state,
                None | Some(TaskState::Queued | TaskState::Waiting(_))
            )
        }
        StateFilter::Running => matches!(state, Some(TaskState::Running | TaskState::Retrying)),
        StateFilter::Succeeded => matches!(state, Some(TaskState::Done(o)) if o.is_success()),
        StateFilter::Failed => {
            matches!(state, Some(TaskState::Done(o)) if !o.is_success())
                || matches!(state, Some(TaskState::Cancelled | TaskState::Lost))
        }
    }
}

fn state_rank(state: Option<&TaskState>) -> u8 {
    match state {
        Some(TaskState::Running | TaskState::Retrying) => 0,
        Some(TaskState::Queued | TaskState::Waiting(_)) => 1,
        None => 2,
        Some(TaskState::Done(o)) if !o.is_success() => 3,
        Some(TaskState::Cancelled | TaskState::Lost) => 4,
        Some(TaskState::Done(_)) => 5,
    }
}

/// Row indices to show, filtered and sorted.
/// Rows not made (`lazy`) are found in the run's record by position. `None`: every
/// row, in order.
fn visible_rows(
    rows: &[Row],
    lazy: &LazyRows,
    run: Option<&Run>,
    filter: StateFilter,
    sort: SortKey,
) -> Option<Vec<usize>> {
    // Looked up by position, without making a done task whole (a sort looks at every
    // row every frame).
    let position = |i: usize| {
        let run = run?;
        match lazy {
            LazyRows::Made => Some((run, run.record.position(rows[i].task?)?)),
            _ => Some((run, lazy.position(&run.record, i)?)),
        }
    };
    let count = lazy.count(run.map(|r| &r.record)).unwrap_or(rows.len());
    let state_of = |i: usize| position(i).and_then(|(run, p)| run.record.state_at(p));
    let attempts_of = |i: usize| position(i).map(|(run, p)| run.record.attempts_at(p));
    if filter == StateFilter::All && sort == SortKey::Order {
        // The common case needs no look-up, nor a list, per row (the list can be two
        // million long).
        return None;
    }
    let mut order: Vec<usize> = (0..count)
        .filter(|&i| matches_filter(filter, state_of(i).as_deref()))
        .collect();
    let now = run.map(Run::now).unwrap_or_default();
    match sort {
        SortKey::Order => {}
        SortKey::Started => order.sort_by_key(|&i| {
            attempts_of(i)
                .and_then(|a| a.first().map(|a| a.started))
                .unwrap_or(now * 2)
        }),
        SortKey::Runtime => order.sort_by_key(|&i| {
            std::cmp::Reverse(
                attempts_of(i)
                    .and_then(|a| a.last().map(|a| a.runtime(now)))
                    .unwrap_or_default(),
            )
        }),
        SortKey::State => order.sort_by_key(|&i| state_rank(state_of(i).as_deref())),
    }
    Some(order)
}

impl PoolscopeApp {
    pub(in crate::app) fn task_table(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        self.table_toolbar(ui, actions);
        ui.separator();
        let lazy = &self.lazy;
        let row_count = self.row_count();
        let order = visible_rows(&self.rows, lazy, self.run.as_ref(), self.filter, self.sort);
        let live_open = self.live_run().is_some_and(Run::is_open);
        // A watched program's tasks are calls inside it: nothing here can stop or rerun one.
        let watched = self.run.as_ref().is_some_and(|r| r.watched.is_some());
        let run = self.run.as_ref();
        let selected = self.selected;
        let rows = &mut self.rows;
        let rows_fit = &mut self.layout.list_rows_fit;
        let available = ui.available_height();
        // Narrow windows scroll sideways rather than hiding the status columns.
        egui::ScrollArea::horizontal()
            .id_salt("tasks-h")
            .show(ui, |ui| {
                TableBuilder::new(ui)
                    .id_salt("tasks")
                    .striped(true)
                    .sense(Sense::click())
                    .resizable(true)
                    .auto_shrink(false)
                    .max_scroll_height(available)
                    .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
                    .column(Column::exact(30.0))
                    .column(Column::initial(130.0).at_least(60.0).clip(true))
                    .column(Column::initial(220.0).at_least(80.0).clip(true))
                    .column(Column::initial(84.0).clip(true))
                    .column(Column::exact(56.0))
                    .column(Column::initial(120.0).at_least(60.0).clip(true))
                    .column(Column::exact(34.0))
                    .column(Column::exact(56.0))
                    .column(Column::exact(62.0))
                    .column(Column::exact(70.0))
                    .column(Column::initial(96.0).clip(true))
                    .column(Column::initial(110.0).clip(true))
                    .column(Column::remainder().at_least(150.0))
                    .header(20.0, |mut header| {
                        for title in [
                            "#",
                            "Name",
                            "Command",
                            "Stdin",
                            "Timeout",
                            "State",
                            "Slot",
                            "PID",
                            "Started",
                            "Runtime",
                            "CPU · RSS",
                            "Outcome",
                            "Actions",
                        ] {
                            header.col(|ui| {
                                ui.strong(title);
                            });
                        }
                    })
                    .body(|mut body| {
                        *rows_fit = body.ui_mut().clip_rect().height() / ROW_HEIGHT;
                        let shown = order.as_ref().map_or(row_count, Vec::len);
                        body.rows(ROW_HEIGHT, shown, |mut table_row| {
                            let i = order
                                .as_ref()
                                .map_or(table_row.index(), |o| o[table_row.index()]);
                            // A row not made is made for the frame it is drawn in.
                            let mut made = None;
                            let row = match lazy {
                                LazyRows::Made => &mut rows[i],
                                _ => match made.insert(lazy.row(run.map(|r| &r.record), i)) {
                                    Some(row) => row,
                                    None => return,
                                },
                            };
                            draw_row(
                                &mut table_row,
                                i,
                                row,
                                run,
                                selected,
                                (live_open, watched),
                                actions,
                            );
                        });
                    });
            });
    }

    fn table_toolbar(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        // One row at any width (what does not fit is clipped): the list below keeps
        // its place.
        ui.horizontal(|ui| {
            if ui.button("+ Add task").clicked() {
                actions.push(Action::AddRow);
            }
            ui.separator();
            ui.label("Template");
            ui.add(
                egui::TextEdit::singleline(&mut self.template.command)
                    .hint_text("template command, {} = value")
                    .desired_width(160.0),
            );
            ui.label("over");
            ui.add(
                egui::TextEdit::singleline(&mut self.template.over)
                    .hint_text("range or list")
                    .desired_width(90.0),
            );
            let count =
                crate::model::formats::draft::template_values(&self.template.over).map(|v| v.len());
            let label = match &count {
                Ok(n) => format!("Add {n} tasks"),
                Err(_) => "Add tasks".to_owned(),
            };
            let button = ui.button(label);
            let button = match &count {
                Err(e) => button.on_hover_text(e),
                Ok(_) => button.on_hover_text("1..10 excludes 10, 1..=10 includes it; or a, b, c"),
            };
            if button.clicked() {
                actions.push(Action::AddFromTemplate);
            }
            let bulk = ui
                .button("Bulk add…")
                .on_hover_text("A command template over inputs pasted or read from a file");
            crate::ui::mark(ui, "bulk-add-open", &bulk);
            if bulk.clicked() {
                actions.push(Action::BulkAddDialog);
            }
            ui.separator();
            let label = ui.label("Show");
            egui::ComboBox::from_id_salt("show")
                .selected_text(self.filter.label())
                .show_ui(ui, |ui| {
                    for f in StateFilter::ALL {
                        ui.selectable_value(&mut self.filter, f, f.label());
                    }
                })
                .response
                .labelled_by(label.id);
            let label = ui.label("sort by");
            egui::ComboBox::from_id_salt("sort by")
                .selected_text(self.sort.label())
                .show_ui(ui, |ui| {
                    for s in SortKey::ALL {
                        ui.selectable_value(&mut self.sort, s, s.label());
                    }
                })
                .response
                .labelled_by(label.id);
        });
    }
}

/// One row: editable cells while the task is not submitted, its live status after.
fn draw_row(
    table_row: &mut egui_extras::TableRow<'_, '_>,
    i: usize,
    row: &mut Row,
    run: Option<&Run>,
    selected: Option<crate::executor::TaskId>,
    (live_open, watched): (bool, bool),
    actions: &mut Vec<Action>,
) {
    let task = row.task.and_then(|id| run.and_then(|r| r.record.task(id)));
    let task = task.as_deref();
    let now = run.map(Run::now).unwrap_or_default();
    table_row.set_selected(row.task.is_some() && row.task == selected);
    draft_cells(table_row, i, row, actions);
    table_row.col(|ui| {
        if let Some(task) = task {
            let colour = state_colour(ui.visuals(), Some(&task.state));
            ui.label(RichText::new(state_text(&task.state)).color(colour));
        } else if let Some(problem) = row.draft.problem() {
            ui.label(
                RichText::new(format!("invalid: {problem}")).color(ui.visuals().error_fg_color),
            )
            .on_hover_text(problem);
        } else {
            ui.weak("not started");
        }
    });
    attempt_cells(table_row, task, now);
    let task_controls = task.filter(|_| !watched);
    table_row.col(|ui| {
        if task.is_none() || task_controls.is_some() {
            row_actions(ui, i, row, task_controls, live_open, actions);
        }
    });
    if table_row.response().clicked() {
        actions.push(match row.task {
            Some(id) => Action::Select(id),
            None => Action::Edit(Some(i)),
        });
    }
}

/// The cells a user writes: number, name, command, stdin, timeout (editable until the
/// task is submitted).
fn draft_cells(
    table_row: &mut egui_extras::TableRow<'_, '_>,
    i: usize,
    row: &mut Row,
    actions: &mut Vec<Action>,
) {
    let editable = row.task.is_none();
    table_row.col(|ui| {
        match row.task {
            Some(id) => ui.label(id.to_string()),
            None => ui.weak(format!("{}", i + 1)),
        };
    });
    table_row.col(|ui| {
        // A task with no name of its own is named by its command (as on its bar).
        let unnamed = row
            .draft
            .command
            .trim()
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        if editable {
            let hint = if unnamed.is_empty() {
                "name"
            } else {
                unnamed.as_str()
            };
            ui.add(egui::TextEdit::singleline(&mut row.draft.name).hint_text(hint));
        } else if row.draft.name.is_empty() {
            ui.weak(unnamed);
        } else {
            ui.label(&row.draft.name);
        }
    });
    table_row.col(|ui| {
        let one_line = !row.draft.command.trim().contains('\n');
        if editable && one_line {
            ui.add(
                egui::TextEdit::singleline(&mut row.draft.command)
                    .hint_text("command")
                    .font(egui::TextStyle::Monospace)
                    .desired_width(f32::INFINITY),
            );
        } else {
            // A script shows as its first line; the editor (or the tooltip) has it all.
            let shown = ui
                .add(
                    egui::Label::new(
                        RichText::new(command_summary(&row.draft.command)).monospace(),
                    )
                    .truncate()
                    .sense(Sense::click()),
                )
                .on_hover_text(&row.draft.command);
            if editable && shown.clicked() {
                actions.push(Action::Edit(Some(i)));
            }
        }
    });
    table_row.col(|ui| stdin_cell(ui, i, &row.draft, editable, actions));
    table_row.col(|ui| {
        if editable {
            ui.add(egui::TextEdit::singleline(&mut row.draft.timeout).hint_text("timeout s"));
        } else {
            ui.label(&row.draft.timeout);
        }
    });
}

/// A command in one line: its first line, and how many more there are.
pub fn command_summary(command: &str) -> String {
    let mut lines = command.trim().lines();
    let first = lines.next().unwrap_or_default();
    match lines.count() {
        0 => first.to_owned(),
        1 => format!("{first} … (+1 line)"),
        more => format!("{first} … (+{more} lines)"),
    }
}

/// The cells of its latest attempt: slot, PID, start, run time, cost, outcome.
fn attempt_cells(
    table_row: &mut egui_extras::TableRow<'_, '_>,
    task: Option<&TaskRecord>,
    now: std::time::Duration,
) {
    let attempt = task.and_then(TaskRecord::last_attempt);
    table_row.col(|ui| {
        if let Some(slot) = attempt.and_then(|a| a.slot) {
            ui.label(slot.to_string());
        }
    });
    table_row.col(|ui| {
        if let Some(pid) = attempt.and_then(|a| a.pid) {
            ui.label(pid.to_string());
        }
    });
    table_row.col(|ui| {
        if let Some(a) = attempt {
            ui.label(format!("+{}", duration(a.started)));
        }
    });
    table_row.col(|ui| {
        if let Some(a) = attempt {
            ui.label(duration(a.runtime(now)));
        }
    });
    table_row.col(|ui| {
        if let Some(a) = attempt
            && (a.usage.peak_rss > 0 || !a.usage.cpu.is_zero())
        {
            let share = a.usage.mean_share(a.runtime(now)) * 100.0;
            ui.label(format!(
                "{share:.0}% · {}",
                crate::ui::theme::bytes(a.usage.peak_rss)
            ))
            .on_hover_text(crate::ui::theme::usage(a, now).unwrap_or_default());
        }
    });
    table_row.col(|ui| {
        if let Some(t) = task {
            let text = t.outcome().map(ToString::to_string).unwrap_or_default();
            let colour = state_colour(ui.visuals(), Some(&t.state));
            let retries = if t.attempts.len() > 1 {
                format!(" (attempt {})", t.attempts.len())
            } else {
                String::new()
            };
            ui.label(RichText::new(format!("{text}{retries}")).color(colour))
                .on_hover_text(&text);
        }
    });
}

/// How the task's stdin is set, in a word (and "tty" for a terminal); a click opens the
/// editor, where it is set.
fn stdin_cell(
    ui: &mut egui::Ui,
    i: usize,
    draft: &crate::model::TaskDraft,
    editable: bool,
    actions: &mut Vec<Action>,
) {
    let mode = match draft.stdin {
        DraftStdin::Null => "none",
        DraftStdin::Pipe => "typed",
        DraftStdin::Preset => "text",
    };
    let text = if draft.pty {
        format!("{mode} · tty")
    } else {
        mode.to_owned()
    };
    let hover = match draft.stdin {
        DraftStdin::Null => "stdin: none (/dev/null)".to_owned(),
        DraftStdin::Pipe => "stdin: kept open, type to the task in the console".to_owned(),
        DraftStdin::Preset => format!("stdin: this text, then EOF:\n{}", draft.input),
    };
    let label = ui
        .add(egui::Label::new(text).truncate().sense(Sense::click()))
        .on_hover_text(if editable {
            format!("{hover}\n(click to change it in the editor)")
        } else {
            hover
        });
    if editable && label.clicked() {
        actions.push(Action::Edit(Some(i)));
    }
}

fn row_actions(
    ui: &mut egui::Ui,
    i: usize,
    row: &Row,
    task: Option<&TaskRecord>,
    live_open: bool,
    actions: &mut Vec<Action>,
) {
    match (row.task, task.map(|t| &t.state)) {
        (None, _) => {
            if ui
                .small_button("Edit")
                .on_hover_text("Every field of this task, with room to write")
                .clicked()
            {
                actions.push(Action::Edit(Some(i)));
            }
            if live_open
                && ui
                    .small_button("Run")
                    .on_hover_text("Add this task to the running pool")
                    .clicked()
            {
                actions.push(Action::SubmitRow(i));
            }
            if row.draft.is_python()
                && ui
                    .small_button("Watch")
                    .on_hover_text(
                        "Run this Python program watched: its own pools (multiprocessing, \
                         concurrent.futures) appear on the timeline as they run",
                    )
                    .clicked()
            {
                actions.push(Action::Watch(row.draft.command.clone()));
            }
            ui.menu_button("⋯", |ui| {
                if ui.button("Move up").clicked() {
                    actions.push(Action::MoveRow(i, -1));
                }
                if ui.button("Move down").clicked() {
                    actions.push(Action::MoveRow(i, 1));
                }
                if ui.button("Duplicate").clicked() {
                    actions.push(Action::DuplicateRow(i));
                }
                if ui.button("Remove").clicked() {
                    actions.push(Action::RemoveRow(i));
                }
            })
            .response
            .on_hover_text("Move, duplicate or remove this task");
        }
        (Some(id), Some(TaskState::Running)) => {
            if ui
                .small_button("Ctrl-C")
                .on_hover_text("Send SIGINT to the task's process group")
                .clicked()
            {
                actions.push(Action::Interrupt(id));
            }
            if ui
                .small_button("Kill")
                .on_hover_text("SIGTERM, then SIGKILL after a grace period")
                .clicked()
            {
                actions.push(Action::Kill(id));
            }
        }
        (Some(id), Some(TaskState::Done(_) | TaskState::Cancelled | TaskState::Lost)) => {
            let retry = ui
                .small_button("Retry")
                .on_hover_text("Run this task again")
                .clicked();
            if retry {
                actions.push(Action::Retry(id));
            }
        }
        _ => {}
    }
}
