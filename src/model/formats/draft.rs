//! Tasks as the editor holds them: text fields a user types into, checked on the way to
//! a [`TaskSpec`]. Kept here (no GUI code) so task files and tests share them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::executor::{Builtin, Invocation, StdinMode, TaskSpec};
use crate::model::formats::gnu_parallel as gnu;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DraftStdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// Kept open: type to the task while it runs.
    Pipe,
    /// The `input` text is sent, then stdin is closed (`communicate()`).
    Preset,
}

impl DraftStdin {
    pub const ALL: [DraftStdin; 3] = [DraftStdin::Null, DraftStdin::Pipe, DraftStdin::Preset];

    pub fn label(self) -> &'static str {
        match self {
            DraftStdin::Null => "none",
            DraftStdin::Pipe => "interactive",
            DraftStdin::Preset => "preset text",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskDraft {
    pub name: String,
    /// A shell command line (`sh -c`).
    pub command: String,
    pub stdin: DraftStdin,
    /// Text for [`DraftStdin::Preset`].
    pub input: String,
    /// Seconds, empty for none.
    pub timeout: String,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// Run in a pseudo-terminal (interactive programs: prompts, line buffering).
    pub pty: bool,
    /// The built-in job this row came from; it runs as long as `command` still reads
    /// as that job (edited, the row is a shell command).
    pub builtin: Option<Builtin>,
    /// In worker-pool mode, run as a process of its own anyway.
    pub own_process: bool,
}

impl TaskDraft {
    /// Whether the command runs a Python program (`python3 x.py`, `/usr/bin/python -m m`,
    /// `env python3 …`): one that File › Watch can look inside.
    pub fn is_python(&self) -> bool {
        let mut words = self.command.split_whitespace();
        let mut first = words.next().unwrap_or("");
        if first.rsplit('/').next() == Some("env") {
            first = words
                .find(|w| !w.starts_with('-') && !w.contains('='))
                .unwrap_or("");
        }
        let program = first.rsplit('/').next().unwrap_or("");
        let versioned = program
            .strip_prefix("python")
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'));
        versioned && self.builtin.is_none()
    }

    pub fn shell(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            ..Self::default()
        }
    }

    pub fn from_spec(spec: &TaskSpec) -> Self {
        let command = spec.invocation.display_line();
        let (stdin, input) = match &spec.stdin {
            StdinMode::Null => (DraftStdin::Null, String::new()),
            StdinMode::Pipe => (DraftStdin::Pipe, String::new()),
            StdinMode::Preset(text) => (
                DraftStdin::Preset,
                String::from_utf8_lossy(text).into_owned(),
            ),
        };
        Self {
            name: if spec.name == command {
                String::new()
            } else {
                spec.name.clone()
            },
            command,
            stdin,
            input,
            timeout: spec
                .timeout
                .map(|t| format_seconds(t.as_secs_f64()))
                .unwrap_or_default(),
            cwd: spec.cwd.clone(),
            env: spec.env.clone(),
            pty: spec.pty,
            builtin: match &spec.invocation {
                Invocation::Builtin(b) => Some(b.clone()),
                _ => None,
            },
            own_process: spec.own_process,
        }
    }

    fn timeout_value(&self) -> Result<Option<Duration>, String> {
        let text = self.timeout.trim();
        if text.is_empty() {
            return Ok(None);
        }
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(Some(Duration::from_secs_f64(v))),
            _ => Err(format!(
                "timeout must be a positive number of seconds, not \"{text}\""
            )),
        }
    }

    /// What stops this task from running, in words; `None` when it is fine.
    pub fn problem(&self) -> Option<String> {
        self.to_spec().err()
    }

    pub fn to_spec(&self) -> Result<TaskSpec, String> {
        if self.command.trim().is_empty() {
            return Err("the command is empty".to_owned());
        }
        let timeout = self.timeout_value()?;
        let command = self.command.clone();
        Ok(TaskSpec {
            name: if self.name.trim().is_empty() {
                command.clone()
            } else {
                self.name.clone()
            },
            invocation: match &self.builtin {
                Some(b) if b.to_string() == command => Invocation::Builtin(b.clone()),
                _ => Invocation::Shell(command),
            },
            cwd: self.cwd.clone(),
            env: self.env.clone(),
            stdin: match self.stdin {
                // A terminal with nothing to type into is rarely what anyone wants.
                DraftStdin::Null if self.pty => StdinMode::Pipe,
                DraftStdin::Null => StdinMode::Null,
                DraftStdin::Pipe => StdinMode::Pipe,
                DraftStdin::Preset => StdinMode::Preset(self.input.clone().into_bytes()),
            },
            timeout,
            pty: self.pty,
            background: crate::executor::Background::Wait,
            own_process: self.own_process,
        })
    }
}

fn format_seconds(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Values to expand a template over: `1..10` (end excluded), `1..=10`, or `a, b, c`.
pub fn template_values(over: &str) -> Result<Vec<String>, String> {
    let over = over.trim();
    if over.is_empty() {
        return Err("give a range like 1..10 or a list like a, b, c".to_owned());
    }
    if let Some((start, end)) = over.split_once("..") {
        let (end, inclusive) = match end.strip_prefix('=') {
            Some(e) => (e, true),
            None => (end, false),
        };
        let parse = |s: &str| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| format!("\"{}\" is not a whole number", s.trim()))
        };
        let (start, end) = (parse(start)?, parse(end)?);
        let end = if inclusive { end + 1 } else { end };
        if end <= start {
            return Err(format!("the range {over} is empty"));
        }
        if end - start > 100_000 {
            return Err(format!("the range {over} has more than 100 000 values"));
        }
        return Ok((start..end).map(|v| v.to_string()).collect());
    }
    Ok(over
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

/// One draft per value, the command made as GNU parallel makes it: `{}` is the value
/// (shell-quoted), `{.}` `{/}` `{//}` `{/.}` its path forms, `{#}` its 1-based position;
/// a command without any has the value appended.
pub fn expand_template(command: &str, over: &str) -> Result<Vec<TaskDraft>, String> {
    let values = template_values(over)?;
    let groups: Vec<Vec<String>> = values.into_iter().map(|v| vec![v]).collect();
    Ok(BulkTemplate::new(command, "")?.drafts(&groups))
}

/// A command template over inputs pasted or read from a file, one per line (the
/// window's bulk-add): GNU parallel's replacement strings and quoting, as
/// `poolscope run CMD :::: FILE` makes them.
pub struct BulkTemplate {
    composer: gnu::Composer,
    colsep: Option<regex::Regex>,
}

impl BulkTemplate {
    /// `command` as typed (one shell line); `colsep` splits each input into `{1}` `{2}`
    /// … (empty: not split).
    pub fn new(command: &str, colsep: &str) -> Result<Self, String> {
        if command.trim().is_empty() {
            return Err("the template command is empty".to_owned());
        }
        let colsep = (!colsep.is_empty())
            .then(|| regex::Regex::new(colsep))
            .transpose()
            .map_err(|e| format!("the column separator is not a regular expression: {e}"))?;
        let composer = gnu::Composer::new(&[command.to_owned()], &gnu::Options::default())
            .map_err(|e| e.to_string())?;
        Ok(Self { composer, colsep })
    }

    /// The inputs of `text`: its non-empty lines.
    pub fn inputs(text: &str) -> impl Iterator<Item = &str> {
        text.lines().filter(|line| !line.trim().is_empty())
    }

    /// One input split into its columns.
    pub fn columns(&self, input: &str) -> Vec<String> {
        gnu::columns(input.to_owned(), self.colsep.as_ref())
    }

    /// The command for the `seq`th group (from 1).
    pub fn command(&self, group: &[String], seq: u64) -> String {
        self.composer.compose(group, seq)
    }

    /// One draft per group, named by its arguments.
    pub fn drafts(&self, groups: &[Vec<String>]) -> Vec<TaskDraft> {
        groups
            .iter()
            .zip(1..)
            .map(|(group, seq)| TaskDraft {
                name: gnu::tag(group),
                ..TaskDraft::shell(self.command(group, seq))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_programs_are_recognised_for_watching() {
        for yes in [
            "python3 seed.py",
            "/usr/bin/python3.12 -m pool",
            "env PYTHONHASHSEED=0 python x.py",
        ] {
            assert!(TaskDraft::shell(yes).is_python(), "{yes}");
        }
        for no in ["echo python", "pythonista", "sh run.sh", ""] {
            assert!(!TaskDraft::shell(no).is_python(), "{no}");
        }
    }

    #[test]
    fn bulk_templates_quote_and_split_as_parallel_does() {
        let bulk = BulkTemplate::new("convert {} {.}.jpg", "").expect("valid");
        let groups = |bulk: &BulkTemplate, text| {
            BulkTemplate::inputs(text)
                .map(|input| bulk.columns(input))
                .collect::<Vec<_>>()
        };
        let drafts = bulk.drafts(&groups(&bulk, "a b.png\n\nc.png\n"));
        let commands: Vec<&str> = drafts.iter().map(|d| d.command.as_str()).collect();
        assert_eq!(
            commands,
            ["convert 'a b.png' 'a b'.jpg", "convert c.png c.jpg"]
        );
        assert_eq!(drafts[0].name, "a b.png");
        let columns = BulkTemplate::new("echo {2}-{1}", ",").expect("valid");
        assert_eq!(
            columns.drafts(&groups(&columns, "x, y\n"))[0].command,
            "echo y-x"
        );
        assert!(BulkTemplate::new("echo", "(").is_err());
        assert!(BulkTemplate::new(" ", "").is_err());
    }

    #[test]
    fn templates_expand_over_ranges_and_lists() {
        let drafts = expand_template("sleep {}", "1..4").expect("valid");
        let commands: Vec<&str> = drafts.iter().map(|d| d.command.as_str()).collect();
        assert_eq!(commands, ["sleep 1", "sleep 2", "sleep 3"]);
        assert_eq!(
            expand_template("echo", "a, b").expect("valid")[1].command,
            "echo b"
        );
        assert_eq!(template_values("1..=3").expect("valid"), ["1", "2", "3"]);
        assert!(template_values("5..1").is_err());
        assert!(template_values("x..3").expect_err("bad").contains("\"x\""));
    }

    #[test]
    fn invalid_drafts_say_why() {
        assert_eq!(
            TaskDraft::shell("  ").problem().as_deref(),
            Some("the command is empty")
        );
        let d = TaskDraft {
            timeout: "soon".into(),
            ..TaskDraft::shell("true")
        };
        assert!(d.problem().expect("invalid").contains("timeout"));
        assert!(
            TaskDraft {
                timeout: "2.5".into(),
                ..TaskDraft::shell("true")
            }
            .problem()
            .is_none()
        );
    }

    #[test]
    fn specs_round_trip_through_drafts() {
        let spec = TaskSpec::shell("echo hi")
            .with_name("greet")
            .with_timeout(Duration::from_millis(1500));
        let draft = TaskDraft::from_spec(&spec);
        assert_eq!(draft.timeout, "1.5");
        assert_eq!(draft.to_spec().expect("valid"), spec);
    }
}
