//! The task list being edited: rows added, duplicated, moved, removed, expanded from a
//! template, and the row open in the task editor (which follows its task as rows move).

use super::{Action, PoolscopeApp, Row};

impl PoolscopeApp {
    /// An action on the rows (see [`Action`]); others are ignored.
    pub(super) fn edit_rows(&mut self, action: &Action) {
        match *action {
            Action::AddRow => self.rows.push(Row::default()),
            Action::DuplicateRow(i) => {
                if let Some(row) = self.rows.get(i) {
                    let copy = Row {
                        draft: row.draft.clone(),
                        task: None,
                    };
                    self.rows.insert(i + 1, copy);
                    self.editing = self.editing.map(|e| if e > i { e + 1 } else { e });
                }
            }
            Action::RemoveRow(i) if i < self.rows.len() && self.rows[i].task.is_none() => {
                self.rows.remove(i);
                // The editor stays on the same task, or closes with it.
                self.editing = match self.editing {
                    Some(e) if e == i => None,
                    Some(e) if e > i => Some(e - 1),
                    other => other,
                };
            }
            Action::MoveRow(i, delta) => {
                let j = i.checked_add_signed(delta).filter(|&j| j < self.rows.len());
                if let Some(j) = j {
                    self.rows.swap(i, j);
                    self.editing = self.editing.map(|e| match e {
                        e if e == i => j,
                        e if e == j => i,
                        e => e,
                    });
                }
            }
            Action::AddFromTemplate => {
                match crate::model::formats::draft::expand_template(
                    &self.template.command,
                    &self.template.over,
                ) {
                    Ok(drafts) => {
                        let n = drafts.len();
                        self.rows
                            .extend(drafts.into_iter().map(|draft| Row { draft, task: None }));
                        if self.template.command.contains("{}") {
                            self.notify(format!("Added {n} tasks from the template"));
                        } else {
                            // As GNU parallel does; said, because it may surprise.
                            self.notify(format!(
                                "Added {n} tasks; the command has no {{}}, so each value was added at its end (as GNU parallel does)"
                            ));
                        }
                    }
                    Err(e) => self.error(format!("template: {e}")),
                }
            }
            Action::AddFromInputs => {
                let form = &self.template;
                let made =
                    crate::model::formats::draft::BulkTemplate::new(&form.command, &form.colsep)
                        .map(|bulk| {
                            let groups: Vec<Vec<String>> = form
                                .bulk_inputs()
                                .map(|input| bulk.columns(input))
                                .collect();
                            bulk.drafts(&groups)
                        });
                match made {
                    Ok(drafts) if drafts.is_empty() => {
                        self.error("bulk add: no inputs: paste some, one per line, or read a file");
                    }
                    Ok(drafts) => {
                        let n = drafts.len();
                        self.rows
                            .extend(drafts.into_iter().map(|draft| Row { draft, task: None }));
                        self.dialog = None;
                        self.notify(format!("Added {n} tasks from the template"));
                    }
                    Err(e) => self.error(format!("bulk add: {e}")),
                }
            }
            Action::Edit(row) => {
                self.editing = row.filter(|&i| self.rows.get(i).is_some_and(|r| r.task.is_none()));
            }
            _ => {}
        }
    }
}
