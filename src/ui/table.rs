//! The task list: an editor for tasks not yet submitted, live status for the rest.

use egui::{RichText, Sense};
use egui_extras::{Column, TableBuilder};

use super::theme::{duration, state_colour, state_text};
use crate::app::{Action, PoolscopeApp, Row, Run, SortKey, StateFilter};
use crate::model::{DraftStdin, TaskRecord, TaskState};

const ROW_HEIGHT: f32 = 24.0;

fn matches_filter(filter: StateFilter, task: Option<&TaskRecord>) -> bool {
    let state = task.map(|t| &t.state);
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

fn state_rank(task: Option<&TaskRecord>) -> u8 {
    match task.map(|t| &t.state) {
        Some(TaskState::Running | TaskState::Retrying) => 0,
        Some(TaskState::Queued | TaskState::Waiting(_)) => 1,
        None => 2,
        Some(TaskState::Done(o)) if !o.is_success() => 3,
        Some(TaskState::Cancelled | TaskState::Lost) => 4,
        Some(TaskState::Done(_)) => 5,
    }
}

/// Row indices to show, filtered and sorted.
fn visible_rows(rows: &[Row], run: Option<&Run>, filter: StateFilter, sort: SortKey) -> Vec<usize> {
    let task_of = |i: usize| {
        rows[i]
            .task
            .and_then(|id| run.and_then(|r| r.record.task(id)))
    };
    if filter == StateFilter::All && sort == SortKey::Order {
        // The common case needs no look-up per row (the list can be 100 000 long).
        return (0..rows.len()).collect();
    }
    let mut order: Vec<usize> = (0..rows.len())
        .filter(|&i| matches_filter(filter, task_of(i)))
        .collect();
    let now = run.map(Run::now).unwrap_or_default();
    match sort {
        SortKey::Order => {}
        SortKey::Started => order.sort_by_key(|&i| {
            task_of(i)
                .and_then(|t| t.attempts.first())
                .map_or(now * 2, |a| a.started)
        }),
        SortKey::Runtime => order.sort_by_key(|&i| {
            std::cmp::Reverse(
                task_of(i)
                    .and_then(|t| t.last_attempt())
                    .map(|a| a.runtime(now))
                    .unwrap_or_default(),
            )
        }),
        SortKey::State => order.sort_by_key(|&i| state_rank(task_of(i))),
    }
    order
}

impl PoolscopeApp {
    pub(super) fn task_table(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        self.table_toolbar(ui, actions);
        ui.separator();
        let order = visible_rows(&self.rows, self.run.as_ref(), self.filter, self.sort);
        let live_open = self.live_run().is_some_and(Run::is_open);
        let run = self.run.as_ref();
        let selected = self.selected;
        let rows = &mut self.rows;
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
                    .body(|body| {
                        body.rows(ROW_HEIGHT, order.len(), |mut table_row| {
                            let i = order[table_row.index()];
                            draw_row(
                                &mut table_row,
                                i,
                                &mut rows[i],
                                run,
                                selected,
                                live_open,
                                actions,
                            );
                        });
                    });
            });
    }

    fn table_toolbar(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        ui.horizontal_wrapped(|ui| {
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
            let count = crate::model::draft::template_values(&self.template.over).map(|v| v.len());
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
            ui.separator();
            egui::ComboBox::from_label("show")
                .selected_text(self.filter.label())
                .show_ui(ui, |ui| {
                    for f in StateFilter::ALL {
                        ui.selectable_value(&mut self.filter, f, f.label());
                    }
                });
            egui::ComboBox::from_label("sort by")
                .selected_text(self.sort.label())
                .show_ui(ui, |ui| {
                    for s in SortKey::ALL {
                        ui.selectable_value(&mut self.sort, s, s.label());
                    }
                });
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
    live_open: bool,
    actions: &mut Vec<Action>,
) {
    let task = row.task.and_then(|id| run.and_then(|r| r.record.task(id)));
    let now = run.map(Run::now).unwrap_or_default();
    table_row.set_selected(row.task.is_some() && row.task == selected);
    draft_cells(table_row, i, row);
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
    table_row.col(|ui| row_actions(ui, i, row, task, live_open, actions));
    if table_row.response().clicked()
        && let Some(id) = row.task
    {
        actions.push(Action::Select(id));
    }
}

/// The cells a user writes: number, name, command, stdin, timeout (editable until the
/// task is submitted).
fn draft_cells(table_row: &mut egui_extras::TableRow<'_, '_>, i: usize, row: &mut Row) {
    let editable = row.task.is_none();
    table_row.col(|ui| {
        match row.task {
            Some(id) => ui.label(id.to_string()),
            None => ui.weak(format!("{}", i + 1)),
        };
    });
    table_row.col(|ui| {
        if editable {
            ui.add(egui::TextEdit::singleline(&mut row.draft.name).hint_text("name"));
        } else {
            ui.label(&row.draft.name);
        }
    });
    table_row.col(|ui| {
        if editable {
            // Multi-line so a script's newlines survive editing; one row shown.
            ui.add(
                egui::TextEdit::multiline(&mut row.draft.command)
                    .hint_text("command")
                    .font(egui::TextStyle::Monospace)
                    .desired_rows(1)
                    .desired_width(f32::INFINITY),
            );
        } else {
            ui.monospace(row.draft.command.trim())
                .on_hover_text(&row.draft.command);
        }
    });
    table_row.col(|ui| stdin_cell(ui, &mut row.draft, editable));
    table_row.col(|ui| {
        if editable {
            ui.add(egui::TextEdit::singleline(&mut row.draft.timeout).hint_text("timeout s"));
        } else {
            ui.label(&row.draft.timeout);
        }
    });
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

fn stdin_cell(ui: &mut egui::Ui, draft: &mut crate::model::TaskDraft, editable: bool) {
    if !editable {
        ui.label(if draft.pty {
            format!("{} (tty)", draft.stdin.label())
        } else {
            draft.stdin.label().to_owned()
        });
        return;
    }
    ui.toggle_value(&mut draft.pty, "tty").on_hover_text(
        "Run in a terminal: prompts and line buffering as in a shell (python3 -i, bc, nslookup); stdout and stderr arrive merged",
    );
    let next = DraftStdin::ALL[(DraftStdin::ALL
        .iter()
        .position(|s| *s == draft.stdin)
        .unwrap_or(0)
        + 1)
        % 3];
    if ui
        .small_button(draft.stdin.label())
        .on_hover_text(format!("stdin: click for \"{}\"", next.label()))
        .clicked()
    {
        draft.stdin = next;
    }
    if draft.stdin == DraftStdin::Preset {
        // One line here; `\n` stands for a newline.
        let mut escaped = draft.input.replace('\n', "\\n");
        if ui
            .add(
                egui::TextEdit::singleline(&mut escaped)
                    .hint_text("input text")
                    .desired_width(60.0),
            )
            .changed()
        {
            draft.input = escaped.replace("\\n", "\n");
        }
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
            if ui.small_button("↑").on_hover_text("Move up").clicked() {
                actions.push(Action::MoveRow(i, -1));
            }
            if ui.small_button("↓").on_hover_text("Move down").clicked() {
                actions.push(Action::MoveRow(i, 1));
            }
            if ui.small_button("Dup").on_hover_text("Duplicate").clicked() {
                actions.push(Action::DuplicateRow(i));
            }
            if ui.small_button("Del").on_hover_text("Remove").clicked() {
                actions.push(Action::RemoveRow(i));
            }
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
