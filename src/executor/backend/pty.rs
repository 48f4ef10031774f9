//! Tasks in a pseudo-terminal (portable-pty): the program sees a terminal, so prompts
//! appear and output is line-buffered as in a shell. stdout and stderr arrive merged as
//! one stream. The child leads its own session, hence its own process group, so signals
//! and kills reach everything it started.
//!
//! portable-pty starts the child with fork (it needs `setsid` and a controlling terminal
//! before exec); pty tasks are interactive and few, so the fork cost of a large parent is
//! paid rarely.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::thread;

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};

use super::local::{GroupControl, open_output_files, spawn_stdin_writer};
use super::{LaunchRequest, Launched, RawExit, Reporter, StdinCommand};
use crate::executor::event::{EventKind, Stream};
use crate::executor::task::{Invocation, StdinMode};

/// A terminal of a sensible size: what most programs assume when they know nothing else.
const SIZE: PtySize = PtySize {
    rows: 40,
    cols: 120,
    pixel_width: 0,
    pixel_height: 0,
};

/// The command line, environment and folder of a terminal task.
fn command(request: LaunchRequest<'_>) -> CommandBuilder {
    let spec = request.spec;
    let mut command = match &spec.invocation {
        Invocation::Shell(line) => {
            let mut c = CommandBuilder::new("/bin/sh");
            c.args(["-c", line]);
            c
        }
        Invocation::Program { program, args } => {
            let mut c = CommandBuilder::new(program);
            c.args(args);
            c
        }
    };
    // A plain terminal: fewer escape sequences to clean up, and no pager surprises.
    command.env("TERM", "dumb");
    command.env("PAGER", "cat");
    command.env("POOLSCOPE_SLOT", request.slot.to_string());
    command.env("POOLSCOPE_TASK_ID", request.task.0.to_string());
    for (k, v) in &spec.env {
        command.env(k, v);
    }
    match &spec.cwd {
        Some(dir) => command.cwd(dir),
        None => {
            if let Ok(dir) = std::env::current_dir() {
                command.cwd(dir);
            }
        }
    }
    command
}

pub(super) fn launch(request: LaunchRequest<'_>, reporter: &Reporter) -> Result<Launched, String> {
    let spec = request.spec;
    let pair = native_pty_system()
        .openpty(SIZE)
        .map_err(|e| format!("cannot open a terminal: {e}"))?;
    let command = command(request);
    let child = pair
        .slave
        .spawn_command(command)
        .map_err(|e| e.to_string())?;
    // Only the child keeps the terminal's slave side open, so the reader sees EOF
    // (EIO on Linux) once it and everything it started are gone.
    drop(pair.slave);
    let pid = child
        .process_id()
        .ok_or("the terminal's child has no process id")?;
    let files = open_output_files(reporter, request.task, request.attempt)
        .map_err(|e| format!("cannot create output files: {e}"))?;
    let reader = pair.master.try_clone_reader().map_err(|e| e.to_string())?;
    let writer = pair.master.take_writer().map_err(|e| e.to_string())?;

    let stdin_bytes = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<StdinCommand>();
    let (preset, keep_open) = match &spec.stdin {
        StdinMode::Null => (None, false),
        StdinMode::Pipe => (None, true),
        // Typed ahead, and the terminal stays open: an end-of-file typed before the
        // program has set up its terminal can be lost, so end the text with the
        // program's own quit command (`exit`, `quit`) or press EOF.
        StdinMode::Preset(text) => (Some(text.clone()), true),
    };
    // Dropping the terminal's writer at the end types end-of-file (Ctrl-D).
    spawn_stdin_writer(request, writer, preset, rx, &stdin_bytes, reporter)
        .map_err(|e| format!("cannot start the terminal writer: {e}"))?;
    let (task, attempt) = (request.task, request.attempt);

    let out_reporter = reporter.clone();
    let spawned = thread::Builder::new()
        .name(format!("poolscope-pty-{task}"))
        .spawn(move || {
            let master = pair.master; // keep the terminal alive while reading
            pump(reader, files, &out_reporter, task, attempt);
            drop(master);
            drop(child);
            let exit = match waitpid(Pid::from_raw(pid as i32), None) {
                Ok(WaitStatus::Exited(_, code)) => RawExit::Code(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => RawExit::Signal(sig as i32),
                other => {
                    log::error!("task {task}: unexpected wait result {other:?}");
                    RawExit::Code(-1)
                }
            };
            out_reporter.ended(task, attempt, exit);
        });
    if let Err(e) = spawned {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        return Err(format!("cannot start the terminal reader: {e}"));
    }
    Ok(Launched {
        pid,
        control: Box::new(GroupControl {
            pgid: Pid::from_raw(pid as i32),
        }),
        stdin: keep_open.then_some(tx),
        stdin_bytes,
    })
}

/// Forward everything the terminal prints until it closes.
fn pump(
    mut reader: Box<dyn Read + Send>,
    mut files: Option<[File; 2]>,
    reporter: &Reporter,
    task: crate::executor::TaskId,
    attempt: u32,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some([out, _]) = &mut files
                    && let Err(e) = out.write_all(&buf[..n])
                {
                    log::error!("task {task}: cannot save output: {e}");
                    files = None;
                }
                reporter.output(EventKind::Output {
                    task,
                    attempt,
                    stream: Stream::Stdout,
                    bytes: buf[..n].to_vec(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // EIO: the last process holding the terminal is gone.
            Err(_) => break,
        }
    }
}
