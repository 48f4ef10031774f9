//! The task editor: every field of one task that has not been submitted yet, with room to
//! write (a multi-line command, stdin text, environment, working folder, timeout, tty),
//! beside the task list.

use std::path::PathBuf;

use egui::RichText;

use super::actions::Action;
use crate::model::{DraftStdin, TaskDraft};

/// Text being typed that is not yet a valid value (environment lines, a folder).
#[derive(Clone, Debug, Default)]
pub struct EditorState {
    /// The row these buffers belong to.
    row: Option<usize>,
    env: String,
    env_problem: Option<String>,
    cwd: String,
}

impl EditorState {
    /// Buffers filled from the draft when the editor moves to another row.
    fn follow(&mut self, row: usize, draft: &TaskDraft) {
        if self.row == Some(row) {
            return;
        }
        self.row = Some(row);
        self.env = env_text(&draft.env);
        self.env_problem = None;
        self.cwd = draft
            .cwd
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
    }

    /// The editor for row `row` (numbered from 0 as in the list).
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        row: usize,
        draft: &mut TaskDraft,
        workers: bool,
        actions: &mut Vec<Action>,
    ) {
        self.follow(row, draft);
        ui.horizontal(|ui| {
            ui.strong(format!("Task {} (not started)", row + 1));
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .button("Close")
                    .on_hover_text("Close the editor")
                    .clicked()
                {
                    actions.push(Action::Edit(None));
                }
            });
        });
        ui.separator();
        egui::ScrollArea::vertical()
            .id_salt("task editor")
            .auto_shrink(false)
            .show(ui, |ui| self.fields(ui, draft, workers));
    }

    fn fields(&mut self, ui: &mut egui::Ui, draft: &mut TaskDraft, workers: bool) {
        let width = ui.available_width();
        let label = ui.label("Name");
        ui.add(
            egui::TextEdit::singleline(&mut draft.name)
                .hint_text("shown on the timeline")
                .desired_width(width),
        )
        .labelled_by(label.id);
        let label = ui.label("Command (sh -c; several lines make a script)");
        ui.add(
            egui::TextEdit::multiline(&mut draft.command)
                .font(egui::TextStyle::Monospace)
                .desired_rows(5)
                .desired_width(width)
                .hint_text("python3 script.py {}"),
        )
        .labelled_by(label.id);
        ui.checkbox(&mut draft.pty, "Run in a terminal (tty)")
            .on_hover_text(
                "Prompts and line buffering as in a shell (python3 -i, bc, nslookup, top); \
                 stdout and stderr arrive merged",
            );
        ui.horizontal(|ui| {
            ui.label("Stdin");
            for mode in DraftStdin::ALL {
                ui.radio_value(&mut draft.stdin, mode, mode.label());
            }
        });
        if draft.stdin == DraftStdin::Preset {
            let label = ui.label("Text sent to stdin, then EOF (communicate())");
            ui.add(
                egui::TextEdit::multiline(&mut draft.input)
                    .font(egui::TextStyle::Monospace)
                    .desired_rows(3)
                    .desired_width(width),
            )
            .labelled_by(label.id);
        }
        ui.horizontal(|ui| {
            let label = ui.label("Timeout");
            ui.add(
                egui::TextEdit::singleline(&mut draft.timeout)
                    .hint_text("none")
                    .desired_width(70.0),
            )
            .labelled_by(label.id);
            ui.label("seconds");
        });
        let label = ui.label("Working folder");
        if ui
            .add(
                egui::TextEdit::singleline(&mut self.cwd)
                    .hint_text("poolscope's own")
                    .desired_width(width),
            )
            .labelled_by(label.id)
            .changed()
        {
            let typed = self.cwd.trim();
            draft.cwd = (!typed.is_empty()).then(|| PathBuf::from(typed));
        }
        let label = ui.label("Environment (one KEY=VALUE per line, added to poolscope's)");
        if ui
            .add(
                egui::TextEdit::multiline(&mut self.env)
                    .font(egui::TextStyle::Monospace)
                    .desired_rows(3)
                    .desired_width(width)
                    .hint_text("PYTHONUNBUFFERED=1"),
            )
            .labelled_by(label.id)
            .changed()
        {
            match parse_env(&self.env) {
                Ok(env) => {
                    draft.env = env;
                    self.env_problem = None;
                }
                Err(problem) => self.env_problem = Some(problem),
            }
        }
        if let Some(problem) = &self.env_problem {
            ui.label(RichText::new(problem).color(ui.visuals().error_fg_color));
        }
        if workers {
            ui.checkbox(&mut draft.own_process, "Own process (not on a worker)");
        }
        if let Some(problem) = draft.problem() {
            ui.label(
                RichText::new(format!("Cannot start: {problem}"))
                    .color(ui.visuals().error_fg_color),
            );
        }
    }
}

fn env_text(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `KEY=VALUE` lines (blank lines skipped); the first bad line is named.
pub fn parse_env(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| match line.split_once('=') {
            Some((key, value)) if valid_key(key.trim()) => {
                Ok((key.trim().to_owned(), value.to_owned()))
            }
            _ => Err(format!(
                "environment line {}: \"{line}\" is not KEY=VALUE (a key of letters, digits and _)",
                n + 1
            )),
        })
        .collect()
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_lines_parse_and_a_bad_one_is_named() {
        assert_eq!(
            parse_env("A=1\n\nB_2= two words\nEMPTY="),
            Ok(vec![
                ("A".into(), "1".into()),
                ("B_2".into(), " two words".into()),
                ("EMPTY".into(), String::new()),
            ])
        );
        let error = parse_env("A=1\nnot a pair").expect_err("bad line");
        assert!(error.contains("line 2"), "{error}");
        assert!(parse_env("1X=3").is_err());
        assert_eq!(
            parse_env(&env_text(&[("K".into(), "v=w".into())])),
            Ok(vec![("K".into(), "v=w".into())])
        );
    }
}
