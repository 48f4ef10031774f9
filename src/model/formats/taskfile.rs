//! Task files (TOML): pool settings, defaults, and a list of tasks, where a task may be a
//! template expanded over a list or a range (GNU parallel's `:::`, Python's
//! `for i in range(5)`). Every error names the file, the line and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::executor::{
    Background, Builtin, BuiltinKind, HaltPolicy, Invocation, Span, StdinMode, TaskSpec,
    WorkerConfig,
};

/// A loaded task file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskFile {
    /// `None`: the number of CPUs.
    pub pool_size: Option<usize>,
    pub retries: u32,
    pub halt: HaltPolicy,
    pub kill_grace: Option<Duration>,
    /// `[pool] mode = "workers"`: persistent workers with these settings.
    pub workers: Option<WorkerConfig>,
    /// `[pool] chunksize`: tasks handed to a worker at once; `None`: Python's default.
    pub chunk_size: Option<usize>,
    /// `[pool] backend = "slurm"`: run on a Slurm cluster, with the `[slurm]` options.
    pub slurm: Option<crate::executor::backend::slurm::SlurmOptions>,
    pub tasks: TaskList,
}

/// A file's tasks as written: a template over a range or a list stays its template and
/// its values, and each task is made as it is read, so a million-value range costs its
/// template, not a million specs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskList {
    entries: Vec<Entry>,
    /// Where each entry's tasks start in the list, for [`get`](Self::get).
    starts: Vec<usize>,
    len: usize,
}

/// One `[[task]]`: one task, or a template and the values it runs over.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    base: TaskSpec,
    values: Values,
    /// The template names its tasks itself (else each is named by its command).
    explicit_name: bool,
    /// Inputs are arguments, added at the end of a command without `{}`.
    append: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Values {
    One,
    List(Vec<String>),
    Range { start: i64, step: i64, count: usize },
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::One => 1,
            Values::List(list) => list.len(),
            Values::Range { count, .. } => *count,
        }
    }
}

impl Entry {
    fn task(&self, i: usize) -> TaskSpec {
        let flags = (self.explicit_name, self.append);
        match &self.values {
            Values::One => self.base.clone(),
            Values::List(list) => expand(&self.base, &list[i], i + 1, flags),
            Values::Range { start, step, .. } => {
                let value =
                    start + step * i64::try_from(i).expect("a range has at most i64 values");
                expand(&self.base, &value.to_string(), i + 1, flags)
            }
        }
    }
}

impl TaskList {
    /// These tasks, each one its own entry.
    pub fn from_specs(specs: impl IntoIterator<Item = TaskSpec>) -> Self {
        let entries: Vec<Entry> = specs
            .into_iter()
            .map(|base| Entry {
                base,
                values: Values::One,
                explicit_name: true,
                append: false,
            })
            .collect();
        Self {
            len: entries.len(),
            starts: (0..entries.len()).collect(),
            entries,
        }
    }

    fn push(&mut self, entry: Entry) {
        self.starts.push(self.len);
        self.len += entry.values.len();
        self.entries.push(entry);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The task at this place in the list, made now.
    pub fn get(&self, index: usize) -> Option<TaskSpec> {
        if index >= self.len {
            return None;
        }
        // The last entry starting at or before `index` (an empty entry starts where
        // the next one does, and is skipped by taking the last).
        let entry = self.starts.partition_point(|&start| start <= index) - 1;
        Some(self.entries[entry].task(index - self.starts[entry]))
    }

    /// Every task, in order, each made as it is reached.
    pub fn iter(&self) -> impl Iterator<Item = TaskSpec> + '_ {
        self.entries
            .iter()
            .flat_map(|entry| (0..entry.values.len()).map(|i| entry.task(i)))
    }

    pub fn to_vec(&self) -> Vec<TaskSpec> {
        self.iter().collect()
    }

    /// Tasks without a timeout of their own get this one.
    pub fn set_default_timeout(&mut self, timeout: Duration) {
        for entry in &mut self.entries {
            entry.base.timeout.get_or_insert(timeout);
        }
    }

    /// Every task, owned and made as it is taken: what a run hands its pool a batch at
    /// a time.
    pub fn into_stream(self) -> TaskStream {
        TaskStream {
            list: self,
            entry: 0,
            within: 0,
        }
    }
}

impl crate::executor::TaskMaker for TaskList {
    fn make(&self, index: usize) -> TaskSpec {
        self.get(index)
            .expect("the pool asks only for the indexes it was handed, all in the list")
    }
}

/// A task list's tasks, owned and made one at a time.
#[derive(Debug)]
pub struct TaskStream {
    list: TaskList,
    entry: usize,
    within: usize,
}

impl Iterator for TaskStream {
    type Item = TaskSpec;

    fn next(&mut self) -> Option<TaskSpec> {
        loop {
            let entry = self.list.entries.get(self.entry)?;
            if self.within < entry.values.len() {
                self.within += 1;
                return Some(entry.task(self.within - 1));
            }
            self.entry += 1;
            self.within = 0;
        }
    }
}

impl TaskFile {
    /// How many tasks go to a worker at once: the file's, else Python's `Pool.map`
    /// default for this many tasks and workers.
    pub fn chunk_size_for(&self, workers: usize) -> usize {
        self.chunk_size
            .unwrap_or_else(|| python_chunksize(self.tasks.len(), workers))
    }
}

/// Python's `Pool.map` default: `ceil(tasks / (4 * workers))`, at least 1.
pub fn python_chunksize(tasks: usize, workers: usize) -> usize {
    tasks.div_ceil(4 * workers.max(1)).max(1)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TaskFileError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for TaskFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    pool: Option<RawPool>,
    slurm: Option<RawSlurm>,
    defaults: Option<RawDefaults>,
    #[serde(default, rename = "task")]
    tasks: Vec<Spanned<RawTask>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    size: Option<Spanned<i64>>,
    retries: Option<Spanned<i64>>,
    halt: Option<Spanned<String>>,
    kill_grace: Option<Spanned<f64>>,
    mode: Option<Spanned<String>>,
    maxtasksperchild: Option<Spanned<i64>>,
    initializer: Option<Spanned<RawJob>>,
    chunksize: Option<Spanned<i64>>,
    backend: Option<Spanned<String>>,
}

/// `[slurm]`: what every task asks of the cluster (Slurm's own spellings).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlurm {
    partition: Option<String>,
    time: Option<String>,
    cpus_per_task: Option<u32>,
    mem: Option<String>,
    #[serde(default)]
    sbatch_args: Vec<String>,
    /// Workers on the cluster connect to this host (`mode = "workers"`).
    workers_host: Option<String>,
}

/// A built-in job or a command, where one job is expected (`initializer`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    command: Option<String>,
    builtin: Option<Spanned<String>>,
    seconds: Option<Spanned<toml::Value>>,
    seed: Option<i64>,
    rounds: Option<Spanned<i64>>,
    message: Option<String>,
    code: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    timeout: Option<Spanned<f64>>,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    stdin: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Option<String>,
    command: Option<Spanned<String>>,
    program: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<String>,
    inputs: Option<Spanned<Vec<toml::Value>>>,
    range: Option<Spanned<Vec<i64>>>,
    stdin: Option<Spanned<String>>,
    input: Option<String>,
    timeout: Option<Spanned<f64>>,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    pty: bool,
    background: Option<Spanned<String>>,
    builtin: Option<Spanned<String>>,
    seconds: Option<Spanned<toml::Value>>,
    seed: Option<i64>,
    rounds: Option<Spanned<i64>>,
    message: Option<String>,
    code: Option<i64>,
    /// In worker-pool mode, run as a process of its own anyway.
    #[serde(default)]
    process: bool,
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn error(
        &self,
        offset: Option<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> TaskFileError {
        TaskFileError {
            path: self.path.to_owned(),
            line: offset.map(|o| self.line_of(o)),
            field: (!field.is_empty()).then(|| field.to_owned()),
            message: message.into(),
        }
    }
}

/// A file's text, or an error naming the file.
pub fn read_text(path: &Path) -> Result<String, TaskFileError> {
    std::fs::read_to_string(path).map_err(|e| TaskFileError {
        path: path.to_owned(),
        line: None,
        field: None,
        message: format!("cannot read the file: {e}"),
    })
}

/// Read and parse a task file.
pub fn load(path: &Path) -> Result<TaskFile, TaskFileError> {
    parse(&read_text(path)?, path)
}

/// Parse task file text; `path` is used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<TaskFile, TaskFileError> {
    let ctx = Ctx { path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_owned();
        // serde names the offending key between backticks: "unknown field `comand`, …".
        let field = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("");
        ctx.error(e.span().map(|s| s.start), field, message.clone())
    })?;

    let mut file = TaskFile::default();
    if let Some(pool) = &raw.pool {
        if let Some(size) = &pool.size {
            file.pool_size = Some(
                crate::executor::user_pool_size(*size.get_ref())
                    .map_err(|e| ctx.error(Some(size.span().start), "pool.size", e))?,
            );
        }
        if let Some(retries) = &pool.retries {
            file.retries = u32::try_from(*retries.get_ref()).map_err(|_| {
                ctx.error(
                    Some(retries.span().start),
                    "pool.retries",
                    "retries must be 0 or more",
                )
            })?;
        }
        if let Some(halt) = &pool.halt {
            file.halt = halt
                .get_ref()
                .parse()
                .map_err(|e: String| ctx.error(Some(halt.span().start), "pool.halt", e))?;
        }
        if let Some(grace) = &pool.kill_grace {
            file.kill_grace = Some(seconds(&ctx, grace, "pool.kill_grace", true)?);
        }
        file.workers = worker_settings(&ctx, pool)?;
        if let Some(chunk) = &pool.chunksize {
            file.chunk_size = Some(
                usize::try_from(*chunk.get_ref())
                    .ok()
                    .filter(|&c| c >= 1)
                    .ok_or_else(|| {
                        ctx.error(
                            Some(chunk.span().start),
                            "pool.chunksize",
                            "chunksize must be 1 or more",
                        )
                    })?,
            );
        }
    }
    file.slurm = slurm_settings(&ctx, raw.pool.as_ref(), raw.slurm)?;
    let defaults = raw.defaults.unwrap_or_default();
    let default_timeout = defaults
        .timeout
        .as_ref()
        .map(|t| seconds(&ctx, t, "defaults.timeout", false))
        .transpose()?;
    let default_stdin = defaults
        .stdin
        .as_ref()
        .map(|s| stdin_kind(&ctx, s, "defaults.stdin"))
        .transpose()?;

    let defaults = Defaults {
        timeout: default_timeout,
        stdin: default_stdin,
        cwd: defaults.cwd,
        env: defaults.env,
    };
    for (index, task) in raw.tasks.iter().enumerate() {
        file.tasks.push(parse_task(&ctx, index, task, &defaults)?);
    }
    if file.tasks.is_empty() {
        return Err(ctx.error(
            None,
            "task",
            "the file has no tasks: add at least one [[task]]",
        ));
    }
    Ok(file)
}

/// `[defaults]`, already checked.
struct Defaults {
    timeout: Option<Duration>,
    stdin: Option<StdinKind>,
    cwd: Option<String>,
    env: BTreeMap<String, String>,
}

/// One `[[task]]` entry: one task, or several when it is a template.
#[allow(clippy::too_many_lines)] // one check per field, each with its own error
fn parse_task(
    ctx: &Ctx<'_>,
    index: usize,
    task: &Spanned<RawTask>,
    defaults: &Defaults,
) -> Result<Entry, TaskFileError> {
    let at = Some(task.span().start);
    let field = |name: &str| format!("task[{index}].{name}");
    let task = task.get_ref();
    let builtin = builtin_job(
        ctx,
        &JobFields {
            builtin: task.builtin.as_ref(),
            seconds: task.seconds.as_ref(),
            seed: task.seed,
            rounds: task.rounds.as_ref(),
            message: task.message.as_ref(),
            code: task.code,
        },
        &field(""),
    )?;
    let invocation = match (&task.command, &task.program) {
        _ if builtin.is_some() => {
            if let Some(c) = task.command.as_ref().or(task.program.as_ref()) {
                return Err(ctx.error(
                    Some(c.span().start),
                    &field("builtin"),
                    "a task has one of `command`, `program` or `builtin`",
                ));
            }
            Invocation::Builtin(builtin.expect("checked above"))
        }
        (Some(_), Some(p)) => {
            return Err(ctx.error(
                Some(p.span().start),
                &field("program"),
                "a task has either `command` (run by sh -c) or `program`, not both",
            ));
        }
        (None, None) => {
            return Err(ctx.error(
                at,
                &field("command"),
                "the task has no `command` (or `program`, or `builtin`)",
            ));
        }
        (Some(c), None) => {
            if c.get_ref().trim().is_empty() {
                return Err(ctx.error(
                    Some(c.span().start),
                    &field("command"),
                    "the command is empty",
                ));
            }
            Invocation::Shell(c.get_ref().clone())
        }
        (None, Some(p)) => {
            if p.get_ref().trim().is_empty() {
                return Err(ctx.error(
                    Some(p.span().start),
                    &field("program"),
                    "the program is empty",
                ));
            }
            Invocation::Program {
                program: p.get_ref().clone(),
                args: task.args.clone(),
            }
        }
    };
    let timeout = match &task.timeout {
        Some(t) => Some(seconds(ctx, t, &field("timeout"), false)?),
        None => defaults.timeout,
    };
    let stdin_kind = match &task.stdin {
        Some(s) => Some(stdin_kind(ctx, s, &field("stdin"))?),
        None => defaults.stdin,
    };
    let stdin = match (&task.input, stdin_kind) {
        (Some(_), Some(StdinKind::Null)) => {
            return Err(ctx.error(
                task.stdin.as_ref().map(|s| s.span().start).or(at),
                &field("input"),
                "`input` is written to stdin, so `stdin` cannot be \"null\"",
            ));
        }
        (Some(text), _) => StdinMode::Preset(text.clone().into_bytes()),
        (None, Some(StdinKind::Pipe)) => StdinMode::Pipe,
        (None, _) => StdinMode::Null,
    };
    let mut env: Vec<(String, String)> = defaults.env.clone().into_iter().collect();
    env.extend(task.env.clone());
    let invocation = match invocation {
        // A single built-in job announces itself by its name.
        Invocation::Builtin(mut b) if task.inputs.is_none() && task.range.is_none() => {
            b.label = task.name.clone().unwrap_or_default();
            Invocation::Builtin(b)
        }
        other => other,
    };
    let base = TaskSpec {
        name: task
            .name
            .clone()
            .unwrap_or_else(|| invocation.display_line()),
        invocation,
        cwd: task
            .cwd
            .clone()
            .or_else(|| defaults.cwd.clone())
            .map(PathBuf::from),
        env,
        stdin: if task.pty && stdin == StdinMode::Null {
            StdinMode::Pipe
        } else {
            stdin
        },
        timeout,
        pty: task.pty,
        background: background(ctx, task.background.as_ref(), &field("background"))?,
        own_process: task.process,
    };
    Ok(Entry {
        base,
        values: inputs(ctx, task, index)?,
        explicit_name: task.name.is_some(),
        // A range repeats a command that does not use its number (`sleep 1` over
        // range [0, 20] is twenty `sleep 1`); inputs are arguments, added at the end
        // when there is no `{}`, as GNU parallel does.
        append: task.inputs.is_some(),
    })
}

/// `[pool] backend` and the `[slurm]` table: `Some` options for the slurm backend.
fn slurm_settings(
    ctx: &Ctx<'_>,
    pool: Option<&RawPool>,
    slurm: Option<RawSlurm>,
) -> Result<Option<crate::executor::backend::slurm::SlurmOptions>, TaskFileError> {
    let backend = pool.and_then(|p| p.backend.as_ref());
    let on_slurm = match backend.map(|b| (b, b.get_ref().as_str())) {
        None | Some((_, "local")) => false,
        Some((_, "slurm")) => true,
        Some((b, other)) => {
            return Err(ctx.error(
                Some(b.span().start),
                "pool.backend",
                format!("expected \"local\" or \"slurm\", got {other:?}"),
            ));
        }
    };
    if !on_slurm {
        return Ok(None);
    }
    let slurm = slurm.unwrap_or(RawSlurm {
        partition: None,
        time: None,
        cpus_per_task: None,
        mem: None,
        sbatch_args: Vec::new(),
        workers_host: None,
    });
    Ok(Some(crate::executor::backend::slurm::SlurmOptions {
        partition: slurm.partition,
        time_limit: slurm.time,
        cpus_per_task: slurm.cpus_per_task,
        mem: slurm.mem,
        extra: slurm.sbatch_args,
        workers_host: slurm.workers_host,
    }))
}

/// `[pool]` worker settings: `mode`, `maxtasksperchild`, `initializer`.
fn worker_settings(ctx: &Ctx<'_>, pool: &RawPool) -> Result<Option<WorkerConfig>, TaskFileError> {
    let workers = match pool.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "processes")) => false,
        Some((_, "workers")) => true,
        Some((m, other)) => {
            return Err(ctx.error(
                Some(m.span().start),
                "pool.mode",
                format!("expected \"processes\" or \"workers\", got {other:?}"),
            ));
        }
    };
    let max_tasks = pool
        .maxtasksperchild
        .as_ref()
        .map(|m| {
            u32::try_from(*m.get_ref())
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    ctx.error(
                        Some(m.span().start),
                        "pool.maxtasksperchild",
                        "maxtasksperchild must be 1 or more",
                    )
                })
        })
        .transpose()?;
    let initializer = match &pool.initializer {
        None => None,
        Some(init) => {
            let raw = init.get_ref();
            let job = builtin_job(
                ctx,
                &JobFields {
                    builtin: raw.builtin.as_ref(),
                    seconds: raw.seconds.as_ref(),
                    seed: raw.seed,
                    rounds: raw.rounds.as_ref(),
                    message: raw.message.as_ref(),
                    code: raw.code,
                },
                "pool.initializer.",
            )?;
            match (job, &raw.command) {
                (Some(job), None) => Some(Invocation::Builtin(job)),
                (None, Some(line)) if !line.trim().is_empty() => {
                    Some(Invocation::Shell(line.clone()))
                }
                _ => {
                    return Err(ctx.error(
                        Some(init.span().start),
                        "pool.initializer",
                        "give either `command = \"...\"` or `builtin = \"...\"`",
                    ));
                }
            }
        }
    };
    if !workers && (max_tasks.is_some() || initializer.is_some()) {
        let at = pool
            .maxtasksperchild
            .as_ref()
            .map(|m| m.span().start)
            .or(pool.initializer.as_ref().map(|i| i.span().start));
        return Err(ctx.error(
            at,
            "pool.mode",
            "maxtasksperchild and initializer need persistent workers: add mode = \"workers\"",
        ));
    }
    Ok(workers.then_some(WorkerConfig {
        max_tasks,
        initializer,
        ..WorkerConfig::default()
    }))
}

/// The fields that describe a built-in job.
struct JobFields<'a> {
    builtin: Option<&'a Spanned<String>>,
    seconds: Option<&'a Spanned<toml::Value>>,
    seed: Option<i64>,
    rounds: Option<&'a Spanned<i64>>,
    message: Option<&'a String>,
    code: Option<i64>,
}

/// `builtin = "noop" | "sleep" | "cpu" | "print" | "fail" | "crash"` with its fields.
fn builtin_job(
    ctx: &Ctx<'_>,
    f: &JobFields<'_>,
    prefix: &str,
) -> Result<Option<Builtin>, TaskFileError> {
    let Some(kind) = f.builtin else {
        return Ok(None);
    };
    let at = Some(kind.span().start);
    let span = |what: &str| -> Result<Span, TaskFileError> {
        let Some(value) = f.seconds else {
            return Err(ctx.error(
                at,
                &format!("{prefix}seconds"),
                format!("`{what}` needs `seconds`: a number, or [min, max] for a random time"),
            ));
        };
        let field = format!("{prefix}seconds");
        let bad = |message: String| ctx.error(Some(value.span().start), &field, message);
        let number = |v: &toml::Value| -> Result<Duration, TaskFileError> {
            let n = match v {
                toml::Value::Float(x) => *x,
                toml::Value::Integer(i) => *i as f64,
                other => return Err(bad(format!("expected a number, got {other}"))),
            };
            crate::executor::user_seconds(n, true).map_err(bad)
        };
        let (min, max) = match value.get_ref() {
            toml::Value::Array(pair) if pair.len() == 2 => (number(&pair[0])?, number(&pair[1])?),
            toml::Value::Array(_) => {
                return Err(bad("expected [min, max]".to_owned()));
            }
            single => {
                let t = number(single)?;
                (t, t)
            }
        };
        if max < min {
            return Err(bad("the maximum is below the minimum".to_owned()));
        }
        Ok(Span {
            min,
            max,
            seed: f.seed.unwrap_or(0) as u64,
        })
    };
    let kind = match kind.get_ref().as_str() {
        "noop" => BuiltinKind::Noop,
        "sleep" => BuiltinKind::Sleep(span("sleep")?),
        "cpu" => match f.rounds {
            Some(r) => BuiltinKind::Spin(u64::try_from(*r.get_ref()).map_err(|_| {
                ctx.error(
                    Some(r.span().start),
                    &format!("{prefix}rounds"),
                    "rounds must be 0 or more",
                )
            })?),
            None => BuiltinKind::Cpu(span("cpu")?),
        },
        "print" => BuiltinKind::Print(f.message.cloned().unwrap_or_default()),
        "fail" => BuiltinKind::Fail(
            f.code
                .and_then(|c| i32::try_from(c).ok())
                .filter(|c| (1..=255).contains(c))
                .unwrap_or(1),
        ),
        "crash" => BuiltinKind::Crash,
        other => {
            return Err(ctx.error(
                at,
                &format!("{prefix}builtin"),
                format!(
                    "unknown built-in job {other:?}: expected noop, sleep, cpu, print, fail or crash"
                ),
            ));
        }
    };
    Ok(Some(Builtin::new(kind, "")))
}

/// `background = "wait" | "kill"`; absent means wait.
fn background(
    ctx: &Ctx<'_>,
    value: Option<&Spanned<String>>,
    field: &str,
) -> Result<Background, TaskFileError> {
    match value.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "wait")) => Ok(Background::Wait),
        Some((_, "kill")) => Ok(Background::Kill),
        Some((v, other)) => Err(ctx.error(
            Some(v.span().start),
            field,
            format!("expected \"wait\" or \"kill\", got {other:?}"),
        )),
    }
}

#[derive(Clone, Copy)]
enum StdinKind {
    Null,
    Pipe,
}

fn stdin_kind(
    ctx: &Ctx<'_>,
    value: &Spanned<String>,
    field: &str,
) -> Result<StdinKind, TaskFileError> {
    match value.get_ref().as_str() {
        "null" => Ok(StdinKind::Null),
        "pipe" => Ok(StdinKind::Pipe),
        other => Err(ctx.error(
            Some(value.span().start),
            field,
            format!("stdin must be \"null\" or \"pipe\" (use `input = \"...\"` for preset text), got \"{other}\""),
        )),
    }
}

fn seconds(
    ctx: &Ctx<'_>,
    value: &Spanned<f64>,
    field: &str,
    zero_ok: bool,
) -> Result<Duration, TaskFileError> {
    crate::executor::user_seconds(*value.get_ref(), zero_ok)
        .map_err(|message| ctx.error(Some(value.span().start), field, message))
}

/// Most values one range runs over: its tasks are made as they run, but a window lists
/// every one as a row.
const MAX_RANGE: usize = 10_000_000;

/// The values a template task is expanded over, if it is a template.
fn inputs(ctx: &Ctx<'_>, task: &RawTask, index: usize) -> Result<Values, TaskFileError> {
    match (&task.inputs, &task.range) {
        (Some(_), Some(r)) => Err(ctx.error(
            Some(r.span().start),
            &format!("task[{index}].range"),
            "use either `inputs` or `range`, not both",
        )),
        (Some(list), None) => {
            if list.get_ref().is_empty() {
                return Err(ctx.error(
                    Some(list.span().start),
                    &format!("task[{index}].inputs"),
                    "the list is empty",
                ));
            }
            Ok(Values::List(
                list.get_ref()
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            ))
        }
        (None, Some(range)) => {
            let field = format!("task[{index}].range");
            let bad = |msg: &str| ctx.error(Some(range.span().start), &field, msg.to_owned());
            let (start, end, step) = match range.get_ref().as_slice() {
                [end] => (0, *end, 1),
                [start, end] => (*start, *end, 1),
                [start, end, step] => (*start, *end, *step),
                _ => {
                    return Err(bad(
                        "expected [end], [start, end] or [start, end, step] (end excluded, as in Python)",
                    ));
                }
            };
            if step == 0 {
                return Err(bad("the step cannot be 0"));
            }
            // Python's len(range(start, end, step)).
            let (span, stride) = if step > 0 {
                (i128::from(end) - i128::from(start), i128::from(step))
            } else {
                (i128::from(start) - i128::from(end), -i128::from(step))
            };
            let count = if span <= 0 {
                0
            } else {
                (span + stride - 1) / stride
            };
            if count == 0 {
                return Err(bad("the range is empty"));
            }
            if count > MAX_RANGE as i128 {
                return Err(bad(&format!("the range has more than {MAX_RANGE} values")));
            }
            Ok(Values::Range {
                start,
                step,
                count: usize::try_from(count).expect("at most MAX_RANGE"),
            })
        }
        (None, None) => Ok(Values::One),
    }
}

/// `{}` becomes the input, `{#}` its 1-based position; with `append`, a command with no
/// `{}` gets the input appended, as GNU parallel does.
fn expand(
    base: &TaskSpec,
    value: &str,
    seq: usize,
    (explicit_name, append): (bool, bool),
) -> TaskSpec {
    // Made for each of up to a million tasks (twice: for the journal, for the pool):
    // a field with no placeholder is copied, not searched and rebuilt twice.
    let fill = |s: &str| {
        if !s.contains('{') {
            return s.to_owned();
        }
        let numbered = if s.contains("{#}") {
            std::borrow::Cow::Owned(s.replace("{#}", &seq.to_string()))
        } else {
            std::borrow::Cow::Borrowed(s)
        };
        numbered.replace("{}", value)
    };
    let invocation = match &base.invocation {
        Invocation::Shell(line) if line.contains("{}") || !append => Invocation::Shell(fill(line)),
        Invocation::Shell(line) => Invocation::Shell(format!("{} {value}", fill(line))),
        Invocation::Program { program, args } => {
            let mut args: Vec<String> = args.iter().map(|a| fill(a)).collect();
            if append && !base.invocation.display_line().contains("{}") {
                args.push(value.to_owned());
            }
            Invocation::Program {
                program: fill(program),
                args,
            }
        }
        Invocation::Builtin(b) => Invocation::Builtin(crate::executor::Builtin {
            kind: match &b.kind {
                crate::executor::BuiltinKind::Print(m) => {
                    crate::executor::BuiltinKind::Print(fill(m))
                }
                kind => kind.clone(),
            },
            label: if b.label.is_empty() {
                value.to_owned()
            } else {
                fill(&b.label)
            },
        }),
    };
    let name = if explicit_name {
        fill(&base.name)
    } else {
        invocation.display_line()
    };
    let stdin = match &base.stdin {
        StdinMode::Preset(text) => {
            StdinMode::Preset(fill(&String::from_utf8_lossy(text)).into_bytes())
        }
        other => other.clone(),
    };
    // Field by field: `..base.clone()` would copy the name and command only to drop them.
    TaskSpec {
        name,
        invocation,
        stdin,
        cwd: base.cwd.clone(),
        env: base.env.clone(),
        timeout: base.timeout,
        pty: base.pty,
        background: base.background,
        own_process: base.own_process,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<TaskFile, TaskFileError> {
        parse(text, Path::new("t.toml"))
    }

    #[test]
    fn any_task_of_a_list_is_made_by_its_place_as_reading_in_order_makes_it() {
        // The pool makes a waiting chunk's tasks again by their place in the list.
        let file = parse_str(
            "[[task]]\ncommand = \"one\"\n[[task]]\ncommand = \"echo {}\"\ninputs = [\"a\", \"b\"]\n[[task]]\ncommand = \"two\"\n[[task]]\nbuiltin = \"noop\"\nrange = [3]\n",
        )
        .expect("valid");
        let in_order: Vec<TaskSpec> = file.tasks.iter().collect();
        assert_eq!(in_order.len(), 7);
        for (i, task) in in_order.iter().enumerate() {
            assert_eq!(file.tasks.get(i).as_ref(), Some(task), "task {i}");
            assert_eq!(&crate::executor::TaskMaker::make(&file.tasks, i), task);
        }
        assert!(file.tasks.get(7).is_none());
    }

    #[test]
    fn a_range_is_made_as_it_is_read_and_counts_like_python() {
        let file = parse_str(
            "[[task]]\ncommand = \"echo {}\"\nrange = [10, 0, -3]\n[[task]]\nbuiltin = \"noop\"\nrange = [9000000]\n",
        )
        .expect("valid");
        // range(10, 0, -3) is 10, 7, 4, 1; nine million noop tasks are counted, not made.
        assert_eq!(file.tasks.len(), 4 + 9_000_000);
        let first: Vec<String> = file.tasks.iter().take(5).map(|t| t.name).collect();
        assert_eq!(first[..4], ["echo 10", "echo 7", "echo 4", "echo 1"]);
        assert_eq!(file.tasks.get(3).expect("task").name, "echo 1");
        let mut owned = file.tasks.clone().into_stream().skip(3);
        assert_eq!(owned.next().expect("task").name, "echo 1");
        assert_eq!(owned.next().expect("task").name, first[4]);
        let last = file.tasks.get(4 + 8_999_999).expect("the last task");
        assert_eq!(last.name, first[4].replace('0', "8999999"));
        assert!(file.tasks.get(4 + 9_000_000).is_none());
        let too_many = parse_str("[[task]]\nbuiltin = \"noop\"\nrange = [0, 20000000]\n");
        assert!(too_many.is_err_and(|e| e.to_string().contains("more than 10000000 values")));
        let empty = parse_str("[[task]]\ncommand = \"x\"\nrange = [0, 5, -1]\n");
        assert!(empty.is_err_and(|e| e.to_string().contains("the range is empty")));
    }

    #[test]
    fn range_template_expands_like_python_range() {
        let file = parse_str(
            "[pool]\nsize = 4\n[[task]]\nname = \"task {}\"\ncommand = \"echo {} of {#}\"\nrange = [0, 5]\n",
        )
        .expect("valid");
        assert_eq!(file.pool_size, Some(4));
        assert_eq!(file.tasks.len(), 5);
        assert_eq!(file.tasks.get(0).expect("task").name, "task 0");
        assert_eq!(
            file.tasks.get(4).expect("task").invocation,
            Invocation::Shell("echo 4 of 5".into())
        );
    }

    #[test]
    fn a_range_repeats_a_command_that_does_not_use_its_number() {
        let file =
            parse_str("[[task]]\ncommand = \"sleep 0.01\"\nrange = [0, 3]\n").expect("valid");
        assert_eq!(file.tasks.len(), 3);
        for task in file.tasks.iter() {
            assert_eq!(task.invocation, Invocation::Shell("sleep 0.01".into()));
        }
    }

    #[test]
    fn inputs_without_placeholder_are_appended() {
        let file =
            parse_str("[[task]]\ncommand = \"sleep\"\ninputs = [1, \"2\"]\n").expect("valid");
        assert_eq!(
            file.tasks.get(1).expect("task").invocation,
            Invocation::Shell("sleep 2".into())
        );
    }

    #[test]
    fn input_text_means_preset_stdin() {
        let file = parse_str("[[task]]\nprogram = \"cat\"\ninput = \"hi\\n\"\n").expect("valid");
        assert_eq!(
            file.tasks.get(0).expect("task").stdin,
            StdinMode::Preset(b"hi\n".to_vec())
        );
    }
}

#[derive(serde::Serialize)]
struct OutFile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<OutPool>,
    task: Vec<OutTask<'a>>,
}

#[derive(serde::Serialize)]
struct OutPool {
    size: usize,
}

#[derive(serde::Serialize)]
struct OutTask<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stdin: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pty: bool,
}

/// A task file for the editor's tasks, readable by [`parse`]. Drafts must be valid.
pub fn to_toml(
    pool_size: Option<usize>,
    drafts: &[crate::model::TaskDraft],
) -> Result<String, String> {
    use crate::model::DraftStdin;
    let mut tasks = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.iter().enumerate() {
        let spec = d.to_spec().map_err(|e| format!("task {}: {e}", i + 1))?;
        tasks.push(OutTask {
            name: d.name.trim(),
            command: &d.command,
            stdin: (d.stdin == DraftStdin::Pipe).then_some("pipe"),
            input: (d.stdin == DraftStdin::Preset).then_some(d.input.as_str()),
            timeout: spec.timeout.map(|t| t.as_secs_f64()),
            cwd: d.cwd.as_ref().map(|c| c.display().to_string()),
            env: d
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            pty: d.pty,
        });
    }
    let file = OutFile {
        pool: pool_size.map(|size| OutPool { size }),
        task: tasks,
    };
    toml::to_string(&file).map_err(|e| e.to_string())
}

/// Write a file so that a crash never leaves it half written: a temporary file in the
/// same folder, then a rename over the target.
pub fn save_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "tasks".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod write_tests {
    use super::*;
    use crate::model::{DraftStdin, TaskDraft};

    #[test]
    fn saved_drafts_load_back_the_same() {
        let drafts = vec![
            TaskDraft {
                name: "greet".into(),
                timeout: "2.5".into(),
                ..TaskDraft::shell("echo 'hi \"there\"'")
            },
            TaskDraft {
                stdin: DraftStdin::Preset,
                input: "2^10\nquit\n".into(),
                ..TaskDraft::shell("bc -q")
            },
            TaskDraft {
                stdin: DraftStdin::Pipe,
                ..TaskDraft::shell("cat")
            },
        ];
        let text = to_toml(Some(3), &drafts).expect("valid");
        let file = parse(&text, Path::new("saved.toml")).expect("loads back");
        assert_eq!(file.pool_size, Some(3));
        let back: Vec<TaskDraft> = file
            .tasks
            .iter()
            .map(|s| TaskDraft::from_spec(&s))
            .collect();
        assert_eq!(back, drafts);
    }

    #[test]
    fn atomic_save_replaces_the_file_whole() {
        let dir = std::env::temp_dir().join(format!("poolscope-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.toml");
        save_atomic(&path, "one").expect("save");
        save_atomic(&path, "two").expect("save");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "two");
        assert_eq!(
            std::fs::read_dir(&dir).expect("dir").count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
