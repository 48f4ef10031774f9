//! `poolscope ls / add / status / follow / log / send / kill / signal / pause / resume /
//! resize / close / terminate`: drive a live run (the window's, `poolscope run`'s) from
//! another terminal, through its socket.

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::control::client::{Connection, find_run, live_runs};
use crate::control::protocol::{
    ADD_BATCH, MAX_TEXT_INPUT, NewStdin, NewTask, Reply, Request, RunInfo, TaskStatus,
};
use crate::model::formats::gnu_parallel::ArgumentReader;
use crate::model::store::runs::{self, RunRoot};

/// The client commands alone: a script that adds tasks one `poolscope add` at a time
/// pays for parsing these, not `run`'s hundred options (a third of the command's time).
#[derive(Parser, Debug)]
#[command(name = "poolscope", version = super::VERSION)]
pub struct ClientCli {
    #[command(subcommand)]
    pub command: ClientCommand,
}

/// Whether `word` (the first argument) names a client command.
pub fn is_client_command(word: &str) -> bool {
    matches!(
        word,
        "ls" | "add"
            | "status"
            | "follow"
            | "log"
            | "send"
            | "kill"
            | "signal"
            | "pause"
            | "resume"
            | "resize"
            | "close"
            | "terminate"
    )
}

/// Which run a client talks to.
#[derive(Args, Clone, Debug, Default)]
pub struct Target {
    /// The run: its ID as `poolscope ls` shows it (a unique part of it, such as its PID,
    /// will do) or its folder [default: the one live run].
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Where runs are kept [default: the platform's data directory].
    #[arg(long, value_name = "DIR", env = "POOLSCOPE_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
}

/// How an added task's input is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StdinChoice {
    /// Kept open: type to it with `poolscope send` (or the window's input box).
    Interactive,
    /// What this command reads on its own stdin, then end of file.
    Text,
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// List this user's live runs (the window's and `poolscope run`'s).
    Ls {
        #[arg(long)]
        json: bool,
        /// Where runs are kept [default: the platform's data directory].
        #[arg(long, value_name = "DIR", env = "POOLSCOPE_RUN_DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Add a task to a live run: `poolscope add -- CMD ARGS…`; with no command, one task
    /// per line of stdin (as `poolscope run` reads them). Prints the new tasks' numbers.
    Add {
        #[command(flatten)]
        target: Target,
        /// The task's name in the list and on the timeline [default: its command].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Its input: `interactive` (kept open for `poolscope send`) or `text` (this
        /// command's stdin) [default: none].
        #[arg(long, value_enum, value_name = "HOW")]
        stdin: Option<StdinChoice>,
        /// The command and its arguments (run by /bin/sh, in this folder).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
    /// Show a live run's tasks (or these): state, slot, PID, times, outcome.
    Status {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
        #[arg(value_name = "TASK")]
        tasks: Vec<u64>,
    },
    /// Print a task's output as it comes, until it ends; exits with its exit code.
    Follow {
        #[command(flatten)]
        target: Target,
        task: u64,
    },
    /// Print what a task printed so far.
    Log {
        #[command(flatten)]
        target: Target,
        task: u64,
    },
    /// Type a line to an interactive task (as in the window's input box).
    Send {
        #[command(flatten)]
        target: Target,
        task: u64,
        /// The text (a newline is added).
        text: Option<String>,
        /// Close the task's input after (it reads end of file).
        #[arg(long)]
        eof: bool,
        /// Add no newline to the text.
        #[arg(short = 'n', long)]
        no_newline: bool,
    },
    /// End tasks (SIGTERM to their process groups, SIGKILL after the grace period).
    Kill {
        #[command(flatten)]
        target: Target,
        #[arg(required = true, value_name = "TASK")]
        tasks: Vec<u64>,
    },
    /// Send a signal to tasks' process groups: `poolscope signal INT 3`.
    Signal {
        #[command(flatten)]
        target: Target,
        /// INT, TERM, USR1, SIGHUP, 9 …
        signal: String,
        #[arg(required = true, value_name = "TASK")]
        tasks: Vec<u64>,
    },
    /// Start no new task until `poolscope resume`.
    Pause {
        #[command(flatten)]
        target: Target,
    },
    /// Start tasks again after `poolscope pause`.
    Resume {
        #[command(flatten)]
        target: Target,
    },
    /// Change the pool size.
    Resize {
        #[command(flatten)]
        target: Target,
        size: usize,
    },
    /// Take no more tasks: the run ends when its queue is done (a served run too).
    Close {
        #[command(flatten)]
        target: Target,
    },
    /// Kill the running tasks and drop the queue.
    Terminate {
        #[command(flatten)]
        target: Target,
    },
}

/// The runs folder: `--run-dir`, else the platform's (looked at, not made).
fn root_of(run_dir: Option<&PathBuf>) -> Result<PathBuf> {
    let root = match run_dir {
        Some(dir) => dir.clone(),
        None => runs::default_root()?,
    };
    Ok(RunRoot::existing(&root)?)
}

fn connect(target: &Target) -> Result<Connection> {
    // A run's folder given as a path needs no runs folder (another root, a test).
    let dir = match target.run.as_deref() {
        Some(run) if run.contains('/') => PathBuf::from(run),
        run => find_run(&root_of(target.run_dir.as_ref())?, run)?,
    };
    Ok(Connection::open(&dir)?)
}

/// Ask, expecting a plain `ok`.
fn simple(target: &Target, request: &Request) -> Result<u8> {
    connect(target)?.ask(request)?;
    Ok(0)
}

pub fn main(command: ClientCommand) -> Result<u8> {
    match command {
        ClientCommand::Ls { json, run_dir } => ls(run_dir.as_ref(), json),
        ClientCommand::Add {
            target,
            name,
            stdin,
            command,
        } => add(&target, name, stdin, &command),
        ClientCommand::Status {
            target,
            json,
            tasks,
        } => status(&target, json, tasks),
        ClientCommand::Follow { target, task } => output(&target, &Request::Follow { task }),
        ClientCommand::Log { target, task } => output(&target, &Request::Log { task }).map(|_| 0),
        ClientCommand::Send {
            target,
            task,
            text,
            eof,
            no_newline,
        } => {
            if text.is_none() && !eof {
                bail!("give the text to send, or --eof to close the task's input");
            }
            let mut text = text.unwrap_or_default();
            if !(no_newline || text.is_empty() && eof) {
                text.push('\n');
            }
            simple(&target, &Request::Send { task, text, eof })
        }
        ClientCommand::Kill { target, tasks } => simple(&target, &Request::Kill { tasks }),
        ClientCommand::Signal {
            target,
            signal,
            tasks,
        } => simple(&target, &Request::Signal { tasks, signal }),
        ClientCommand::Pause { target } => simple(&target, &Request::Pause),
        ClientCommand::Resume { target } => simple(&target, &Request::Resume),
        ClientCommand::Resize { target, size } => simple(&target, &Request::Resize { size }),
        ClientCommand::Close { target } => simple(&target, &Request::Close),
        ClientCommand::Terminate { target } => simple(&target, &Request::Terminate),
    }
}

fn ls(run_dir: Option<&PathBuf>, json: bool) -> Result<u8> {
    let found = live_runs(&root_of(run_dir)?);
    for dir in &found.silent {
        eprintln!(
            "poolscope: run {} did not answer: it may be stopped (SIGSTOP, Ctrl-Z), or out \
             of file descriptors",
            dir.display()
        );
    }
    for (dir, why) in &found.busy {
        eprintln!("poolscope: run {}: {why}", dir.display());
    }
    let runs = found.live;
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &runs)?;
        writeln!(out)?;
        return Ok(0);
    }
    if runs.is_empty() && found.silent.is_empty() && found.busy.is_empty() {
        eprintln!("poolscope: no live run");
        return Ok(0);
    }
    writeln!(
        out,
        "{:<28} {:<8} {:>7} {:>5} {:<9} {:<8} {:>7} {:>7} {:>9} {:>6}",
        "ID", "WHERE", "PID", "POOL", "MODE", "PHASE", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED"
    )?;
    for RunInfo {
        id,
        place,
        pid,
        size,
        mode,
        phase,
        counts,
        ..
    } in &runs
    {
        writeln!(
            out,
            "{id:<28} {place:<8} {pid:>7} {size:>5} {mode:<9} {phase:<8} {:>7} {:>7} {:>9} {:>6}",
            counts.queued, counts.running, counts.succeeded, counts.failed
        )?;
    }
    Ok(0)
}

/// `--stdin text`: this command's stdin, at most [`MAX_TEXT_INPUT`] bytes (an endless
/// producer is refused once past it, not read to the end); UTF-8 travels as text, other
/// bytes as base64.
fn text_input() -> Result<NewStdin> {
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_TEXT_INPUT as u64 + 1)
        .read_to_end(&mut bytes)
        .context("--stdin text: reading stdin")?;
    if bytes.len() > MAX_TEXT_INPUT {
        bail!(
            "--stdin text: stdin holds more than {} MiB, the most given with a task; put it \
             in a file the command reads (poolscope add -- 'CMD < FILE')",
            MAX_TEXT_INPUT >> 20
        );
    }
    Ok(match String::from_utf8(bytes) {
        Ok(text) => NewStdin::Text(text),
        Err(e) => {
            use base64::Engine as _;
            NewStdin::Base64(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()))
        }
    })
}

fn add(
    target: &Target,
    name: Option<String>,
    stdin: Option<StdinChoice>,
    command: &[String],
) -> Result<u8> {
    let cwd = std::env::current_dir().ok();
    let input = match stdin {
        None => NewStdin::None,
        Some(StdinChoice::Interactive) => NewStdin::Interactive,
        Some(StdinChoice::Text) => {
            if command.is_empty() {
                bail!("--stdin text gives stdin to the command: give the command after --");
            }
            text_input()?
        }
    };
    let mut connection = connect(target)?;
    let mut out = io::stdout().lock();
    if !command.is_empty() {
        let task = NewTask {
            command: command_line(command),
            name,
            cwd,
            stdin: input,
        };
        let reply = connection.ask(&Request::Add { tasks: vec![task] })?;
        if let Reply::Full { waiting } = reply {
            bail!(
                "the run's queue is full: {waiting} tasks wait to start; add again when \
                 some have started"
            );
        }
        print_added(&mut out, &reply)?;
        return Ok(0);
    }
    if io::stdin().is_terminal() {
        bail!("give a command (poolscope add -- CMD ARGS…), or commands on stdin, one per line");
    }
    if name.is_some() {
        bail!("--name names one task: give its command after --");
    }
    // One task per line, as `run` reads them (a line too long, or not text, is refused
    // by its number), sent a batch at a time; each batch's numbers are printed as the
    // run answers. A full queue is waited on, as a full pipe is.
    let mut lines = ArgumentReader::new(io::stdin().lock(), "stdin", false);
    let mut batch = Vec::with_capacity(ADD_BATCH.min(1024));
    let mut sent = 0usize;
    let mut said_full = false;
    loop {
        let line = lines.next_argument()?;
        if let Some(command) = &line
            && !command.trim().is_empty()
        {
            batch.push(NewTask {
                command: command.trim_end_matches('\r').to_owned(),
                name: None,
                cwd: cwd.clone(),
                stdin: input.clone(),
            });
        }
        if batch.len() >= ADD_BATCH || (line.is_none() && !batch.is_empty()) {
            sent += batch.len();
            let request = Request::Add {
                tasks: std::mem::take(&mut batch),
            };
            loop {
                match connection.ask(&request)? {
                    Reply::Full { waiting } => {
                        if !std::mem::replace(&mut said_full, true) {
                            eprintln!(
                                "poolscope: the run's queue is full ({waiting} tasks wait to \
                                 start): waiting for room"
                            );
                        }
                        std::thread::sleep(FULL_RETRY);
                    }
                    reply => {
                        print_added(&mut out, &reply)?;
                        break;
                    }
                }
            }
        }
        if line.is_none() {
            break;
        }
    }
    if sent == 0 {
        bail!("stdin held no commands");
    }
    Ok(0)
}

/// The shell line of `add -- CMD ARGS…`: one word is a command line as written
/// (`add -- 'make && make test'`); several are a program and its arguments, each kept
/// as it is (`add -- sh -c 'a; b'`).
fn command_line(words: &[String]) -> String {
    match words {
        [line] => line.clone(),
        words => words
            .iter()
            .map(|w| crate::executor::task::shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// How often an `add` from stdin asks a full run again.
const FULL_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

fn print_added(out: &mut impl Write, reply: &Reply) -> Result<()> {
    match reply {
        Reply::Added { first, count: 1 } => writeln!(out, "{first}")?,
        Reply::Added { first, count } => writeln!(out, "{first}-{}", first + count - 1)?,
        other => bail!("unexpected reply to add: {other:?}"),
    }
    Ok(())
}

fn status(target: &Target, json: bool, tasks: Vec<u64>) -> Result<u8> {
    let mut connection = connect(target)?;
    connection.send(&Request::Status { tasks })?;
    let line = connection.raw_reply()?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    if json {
        // The tasks as the run wrote them: a 100 000-task answer is not decoded here.
        #[derive(serde::Deserialize)]
        struct Raw<'a> {
            #[serde(borrow)]
            status: Option<&'a serde_json::value::RawValue>,
            error: Option<String>,
        }
        let raw: Raw<'_> = serde_json::from_slice(&line).context("the run's answer")?;
        if let Some(error) = raw.error {
            bail!(error);
        }
        let tasks = raw.status.context("the run's answer has no tasks")?;
        out.write_all(tasks.get().as_bytes())?;
        writeln!(out)?;
        out.flush()?;
        return Ok(0);
    }
    let tasks = match serde_json::from_slice::<Reply>(&line).context("the run's answer")? {
        Reply::Status(tasks) => tasks,
        Reply::Error(e) => bail!(e),
        other => bail!("unexpected reply to status: {other:?}"),
    };
    writeln!(
        out,
        "{:>6} {:<9} {:>4} {:>7} {:>9} {:>9} {:<14} NAME",
        "ID", "STATE", "SLOT", "PID", "STARTED", "RUNTIME", "OUTCOME"
    )?;
    for task in &tasks {
        write_status(&mut out, task)?;
    }
    out.flush()?;
    Ok(0)
}

fn write_status(out: &mut impl Write, t: &TaskStatus) -> io::Result<()> {
    let dash = || "-".to_owned();
    let runtime = t
        .started
        .map(|s| format!("{:.2}s", t.ended.unwrap_or(s).max(s) - s))
        .filter(|_| t.ended.is_some())
        .unwrap_or_else(dash);
    writeln!(
        out,
        "{:>6} {:<9} {:>4} {:>7} {:>9} {:>9} {:<14} {}",
        t.id,
        t.state,
        t.slot.map_or_else(dash, |s| s.to_string()),
        t.pid.map_or_else(dash, |p| p.to_string()),
        t.started.map_or_else(dash, |s| format!("{s:.2}s")),
        runtime,
        t.outcome.clone().unwrap_or_else(dash),
        crate::model::shown(&t.name, 80)
    )
}

/// `log` and `follow`: the task's output on this terminal's stdout and stderr; the exit
/// status is the task's (0 while it runs, for `log`).
fn output(target: &Target, request: &Request) -> Result<u8> {
    let mut connection = connect(target)?;
    // A follow waits as long as its task runs.
    connection.bounded(matches!(request, Request::Log { .. }));
    connection.send(request)?;
    let (mut stdout, mut stderr) = (io::stdout().lock(), io::stderr().lock());
    loop {
        match connection.reply()? {
            Reply::Output(chunk) => {
                let bytes = chunk.data();
                let written = match chunk.stream.as_str() {
                    "stdout" => stdout.write_all(&bytes).and_then(|()| stdout.flush()),
                    "stderr" | "note" => stderr.write_all(&bytes),
                    _ => Ok(()),
                };
                if written.is_err() {
                    // Nobody reads any more (`| head`): as a closed pipe ends a program.
                    return Ok(141);
                }
            }
            Reply::Ok => return Ok(0),
            Reply::End {
                outcome,
                code,
                signal,
            } => {
                if let Some(code) = code {
                    return Ok(u8::try_from(code).unwrap_or(1));
                }
                eprintln!("poolscope: the task ended: {outcome}");
                // As a shell reports a command a signal ended: 128 + its number.
                return Ok(signal.and_then(|s| u8::try_from(128 + s).ok()).unwrap_or(1));
            }
            other => bail!("unexpected reply: {other:?}"),
        }
    }
}
