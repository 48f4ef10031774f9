//! Tasks in a pseudo-terminal (portable-pty): the program sees a terminal, so prompts
//! appear and output is line-buffered as in a shell. stdout and stderr arrive merged as
//! one stream. The child leads its own session, hence its own process group, so signals
//! and kills reach everything it started. The terminal's master side is served by the
//! same readiness loop as pipes (two dups of it: one read, one written).
//!
//! portable-pty starts the child with fork (it needs `setsid` and a controlling terminal
//! before exec); pty tasks are interactive and few, so the fork cost of a large parent is
//! paid rarely.

use std::os::fd::{BorrowedFd, OwnedFd};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

use crate::executor::backend::LaunchRequest;

/// A child started in a terminal: its PID, the terminal's two dups (read, written), and
/// what keeps the terminal open.
pub(super) struct InTerminal {
    pub(super) pid: u32,
    pub(super) reader: OwnedFd,
    pub(super) writer: OwnedFd,
    pub(super) terminal: Terminal,
}

/// A terminal of a sensible size: what most programs assume when they know nothing else.
const SIZE: PtySize = PtySize {
    rows: crate::executor::TERMINAL_ROWS,
    cols: crate::executor::TERMINAL_COLS,
    pixel_width: 0,
    pixel_height: 0,
};

/// Keeps the terminal's master side (and the child's handle) alive while the task runs.
pub(crate) struct Terminal {
    _master: Box<dyn MasterPty + Send>,
    _child: Box<dyn Child + Send + Sync>,
}

/// The command line, environment and folder of a terminal task.
fn command(
    request: LaunchRequest<'_>,
    helper: &std::path::Path,
    token: Option<&str>,
) -> CommandBuilder {
    let spec = request.spec;
    let (program, args) = spec.invocation.argv(helper);
    let mut command = CommandBuilder::new(program);
    command.args(args);
    // A colour terminal, as the console draws colours and keeps a screen grid for
    // programs that draw on the screen (top); no pager waiting for a key.
    command.env("TERM", "xterm-256color");
    command.env("PAGER", "cat");
    command.env("POOLSCOPE_SLOT", request.slot.to_string());
    command.env("POOLSCOPE_TASK_ID", request.task.0.to_string());
    if let Some(token) = token {
        command.env(crate::executor::watchdog::TOKEN_VAR, token);
    }
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

/// Our own descriptor for the master side, so the loop can watch it.
fn dup_master(master: &dyn MasterPty) -> Result<OwnedFd, String> {
    let raw = master
        .as_raw_fd()
        .ok_or("the terminal has no file descriptor")?;
    #[allow(unsafe_code)]
    // SAFETY: `master` owns `raw` and outlives this borrow; the dup is ours to own.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| format!("cannot use the terminal: {e}"))
}

pub(super) fn spawn(
    request: LaunchRequest<'_>,
    helper: &std::path::Path,
    token: Option<&str>,
) -> Result<InTerminal, String> {
    let pair = native_pty_system()
        .openpty(SIZE)
        .map_err(|e| format!("cannot open a terminal: {e}"))?;
    let reader = dup_master(&*pair.master)?;
    let writer = dup_master(&*pair.master)?;
    let child = pair
        .slave
        .spawn_command(command(request, helper, token))
        .map_err(|e| e.to_string())?;
    // Only the child keeps the terminal's slave side open, so the reader sees EOF
    // (EIO on Linux) once it and everything it started are gone.
    drop(pair.slave);
    let Some(pid) = child.process_id() else {
        return Err("the terminal's child has no process id".into());
    };
    Ok(InTerminal {
        pid,
        reader,
        writer,
        terminal: Terminal {
            _master: pair.master,
            _child: child,
        },
    })
}
