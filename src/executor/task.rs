//! What a task is: the description a user submits, independent of how it is run.

use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use super::builtin::{Builtin, BuiltinKind, Span};

/// The hidden argument that makes the poolscope binary run one built-in job and exit.
pub const BUILTIN_ROLE: &str = "__builtin";

/// Task identity, assigned by the executor at submit time, 1-based and in submit order
/// (GNU parallel's `Seq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub u64);

/// A map keyed by task: task ids are small sequential numbers, so a multiplicative hash
/// spreads them well at a fraction of `SipHash`'s cost (every event looks a task up).
pub type TaskMap<V> = std::collections::HashMap<TaskId, V, BuildHasherDefault<TaskIdHasher>>;
/// A set of tasks, hashed like [`TaskMap`].
pub type TaskSet = std::collections::HashSet<TaskId, BuildHasherDefault<TaskIdHasher>>;
/// A map keyed by attempt (task and attempt number), hashed like [`TaskMap`]: a backend
/// looks one up for every report of every task.
pub type AttemptMap<V> =
    std::collections::HashMap<(TaskId, u32), V, BuildHasherDefault<TaskIdHasher>>;
/// A set of attempts, hashed like [`TaskMap`].
pub type AttemptSet = std::collections::HashSet<(TaskId, u32), BuildHasherDefault<TaskIdHasher>>;

#[derive(Default)]
pub struct TaskIdHasher(u64);

impl Hasher for TaskIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: sequential ids land far apart, in the high bits too.
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u32(&mut self, n: u32) {
        // An attempt number, after its task's id.
        self.write_u64(u64::from(n));
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How the task's process is started.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Invocation {
    /// A command line run by `sh -c` (pipes, `;`, `$$` work as in a shell).
    Shell(String),
    /// A program and its arguments, started directly with no shell in between.
    Program { program: String, args: Vec<String> },
    /// A built-in job: run inside a persistent worker, or as `poolscope __builtin` in
    /// process-per-task mode.
    Builtin(Builtin),
}

impl Invocation {
    /// Whether `name` is this invocation's [`display_line`](Self::display_line), found
    /// without making the line (asked of every task a record or journal keeps).
    pub fn is_display_line(&self, name: &str) -> bool {
        /// Takes what is written off the front of a string; fails where it differs.
        struct Prefix<'a>(&'a str);
        impl fmt::Write for Prefix<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 = self.0.strip_prefix(s).ok_or(fmt::Error)?;
                Ok(())
            }
        }
        match self {
            Invocation::Shell(line) => line == name,
            Invocation::Builtin(builtin) => {
                let mut rest = Prefix(name);
                fmt::write(&mut rest, format_args!("{builtin}")).is_ok() && rest.0.is_empty()
            }
            Invocation::Program { .. } => self.display_line() == name,
        }
    }

    /// The command as a user would type it (shell line, or program and quoted args).
    pub fn display_line(&self) -> String {
        match self {
            Invocation::Shell(line) => line.clone(),
            Invocation::Program { program, args } => {
                let mut out = shell_quote(program);
                for arg in args {
                    out.push(' ');
                    out.push_str(&shell_quote(arg));
                }
                out
            }
            Invocation::Builtin(builtin) => {
                // Sized once: a million task names are made this way.
                let mut line = String::with_capacity(32 + builtin.label.len());
                let _ = fmt::write(&mut line, format_args!("{builtin}"));
                line
            }
        }
    }

    /// The program and arguments that run it as a process of its own; `helper` is the
    /// poolscope binary (for built-in jobs).
    pub fn argv(&self, helper: &std::path::Path) -> (String, Vec<String>) {
        match self {
            Invocation::Shell(line) => ("/bin/sh".to_owned(), vec!["-c".to_owned(), line.clone()]),
            Invocation::Program { program, args } => (program.clone(), args.clone()),
            Invocation::Builtin(builtin) => (
                helper.to_string_lossy().into_owned(),
                vec![BUILTIN_ROLE.to_owned(), builtin.to_arg()],
            ),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Invocation::Shell(line) => line.trim().is_empty(),
            Invocation::Program { program, .. } => program.trim().is_empty(),
            Invocation::Builtin(_) => false,
        }
    }
}

pub(crate) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What the task's standard input is connected to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StdinMode {
    /// `/dev/null`: the task reads EOF at once.
    #[default]
    Null,
    /// A pipe kept open for later writes until closed by a command (an interactive session).
    Pipe,
    /// This text is written, then stdin is closed (Python's `communicate()`).
    Preset(Vec<u8>),
}

/// What ends a task whose own process has exited while something it started in the
/// background still holds its output open (`cmd &`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    /// The task lasts until every process holding its output has closed it (GNU
    /// parallel's behaviour): its slot stays taken, its output is complete.
    #[default]
    Wait,
    /// The task ends when its own process exits: what it left running is sent SIGTERM
    /// (SIGKILL after the grace period) and the slot is free at once.
    Kill,
}

/// Everything needed to run one task.
/// Where a long list's tasks come from: each is made when the pool reaches it, so the
/// tasks waiting in the pool (a map's chunks held for their workers) cost a few bytes
/// each rather than their specs.
pub trait TaskMaker: Send + Sync {
    /// The task at `index`, for an index the submitter handed over.
    fn make(&self, index: usize) -> TaskSpec;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    pub invocation: Invocation,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub stdin: StdinMode,
    pub timeout: Option<Duration>,
    /// Run in a pseudo-terminal: the program sees a terminal (prompts, line buffering),
    /// stdout and stderr arrive merged, and stdin stays open for typing.
    #[serde(default)]
    pub pty: bool,
    /// What ends the task when background processes outlive it.
    #[serde(default)]
    pub background: Background,
    /// In worker-pool mode, run this task as a process of its own anyway (to see both
    /// modes side by side, or for a task that needs stdin or a terminal).
    #[serde(default)]
    pub own_process: bool,
}

impl TaskSpec {
    /// A shell command line with default settings; the name is the command itself.
    pub fn shell(line: impl Into<String>) -> Self {
        let line = line.into();
        Self {
            name: line.clone(),
            invocation: Invocation::Shell(line),
            cwd: None,
            env: Vec::new(),
            stdin: StdinMode::Null,
            timeout: None,
            pty: false,
            background: Background::Wait,
            own_process: false,
        }
    }

    /// `name` running `invocation`, with nothing else set.
    pub fn plain(name: String, invocation: Invocation) -> Self {
        Self {
            name,
            invocation,
            ..Self::shell(String::new())
        }
    }

    /// Nothing is set but its name and invocation (what [`TaskSpec::plain`] makes): the
    /// compact record and journal keep such a spec as those two alone.
    pub fn is_plain(&self) -> bool {
        self.cwd.is_none()
            && self.env.is_empty()
            && self.stdin == StdinMode::Null
            && self.timeout.is_none()
            && !self.pty
            && self.background == Background::Wait
            && !self.own_process
    }

    /// A program with arguments, started without a shell.
    pub fn program<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let invocation = Invocation::Program {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        };
        Self {
            name: invocation.display_line(),
            invocation,
            cwd: None,
            env: Vec::new(),
            stdin: StdinMode::Null,
            timeout: None,
            pty: false,
            background: Background::Wait,
            own_process: false,
        }
    }

    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    #[must_use]
    pub fn with_stdin(mut self, stdin: StdinMode) -> Self {
        self.stdin = stdin;
        self
    }

    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Run in a pseudo-terminal (see [`TaskSpec::pty`]).
    #[must_use]
    pub fn with_pty(mut self) -> Self {
        self.pty = true;
        self
    }

    #[must_use]
    pub fn with_background(mut self, background: Background) -> Self {
        self.background = background;
        self
    }

    #[must_use]
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    #[must_use]
    pub fn with_cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_lines_quote_what_a_shell_would_split() {
        let spec = TaskSpec::program("echo", ["a b", "it's", "plain"]);
        assert_eq!(
            spec.invocation.display_line(),
            r"echo 'a b' 'it'\''s' plain"
        );
    }

    #[test]
    fn a_name_is_the_display_line_only_when_every_character_is() {
        let job = Invocation::Builtin(crate::executor::Builtin::new(
            crate::executor::BuiltinKind::Print("hi".into()),
            "7",
        ));
        let line = job.display_line();
        assert!(job.is_display_line(&line));
        assert!(!job.is_display_line(&line[..line.len() - 1]), "a prefix");
        assert!(!job.is_display_line(&format!("{line}x")), "a longer name");
        assert!(!job.is_display_line(""));
        let program = TaskSpec::program("echo", ["a b"]).invocation;
        assert!(program.is_display_line("echo 'a b'"));
        assert!(!program.is_display_line("echo a b"));
        assert!(Invocation::Shell("ls".into()).is_display_line("ls"));
    }
}
