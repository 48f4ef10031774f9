//! Local child processes: each task leads its own process group, its stdout and stderr
//! are read by one monitor thread (poll on both pipes), and it is reaped by that same
//! thread, so an exit is noticed by `waitpid`, never by a timer.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::{ChildStderr, ChildStdout, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use process_wrap::std::{ChildWrapper, CommandWrap, ProcessGroup};

use super::{Backend, LaunchRequest, Launched, ProcessControl, RawExit, Reporter, StdinCommand};
use crate::executor::event::{EventKind, Stream};
use crate::executor::task::{Invocation, StdinMode, TaskId};

const READ_CHUNK: usize = 64 * 1024;

/// Runs tasks as local child processes.
#[derive(Debug, Default)]
pub struct LocalBackend {
    /// Whether a bare program name resolves on `PATH` (looked up once per name).
    on_path: HashMap<String, bool>,
}

/// Builtins and keywords whose meaning in `sh` differs from (or has no) program on `PATH`.
const SHELL_ONLY: &[&str] = &[
    "!", ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done",
    "echo", "elif", "else", "esac", "eval", "exec", "exit", "export", "false", "fc", "fg", "fi",
    "for", "getopts", "hash", "if", "jobs", "kill", "local", "printf", "pwd", "read", "readonly",
    "return", "set", "shift", "test", "then", "time", "times", "trap", "type", "ulimit", "umask",
    "unalias", "unset", "until", "wait", "while",
];

impl LocalBackend {
    /// The argv `sh -c LINE` would exec, when the line is only plain words (no quoting,
    /// expansion, redirection or control operators) naming a program rather than a
    /// builtin. Starting it directly saves a shell per task and changes nothing else:
    /// it is exactly what `sh` would run.
    fn direct_argv(&mut self, line: &str) -> Option<Vec<String>> {
        let plain = |w: &str| {
            w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@".contains(&b))
        };
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let program = *words.first()?;
        if !words.iter().all(|w| plain(w)) || program.contains('=') || SHELL_ONLY.contains(&program)
        {
            return None;
        }
        let runnable = if program.contains('/') {
            true
        } else {
            *self
                .on_path
                .entry(program.to_owned())
                .or_insert_with(|| on_path(program))
        };
        runnable.then(|| words.iter().map(|w| (*w).to_owned()).collect())
    }
}

fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

pub(super) struct GroupControl {
    pub(super) pgid: Pid,
}

impl ProcessControl for GroupControl {
    fn signal(&self, signal: Signal) -> io::Result<()> {
        match killpg(self.pgid, signal) {
            // The group is already gone: nothing left to signal.
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Backend for LocalBackend {
    fn launch(
        &mut self,
        request: LaunchRequest<'_>,
        reporter: &Reporter,
    ) -> Result<Launched, String> {
        let spec = request.spec;
        if spec.pty {
            return super::pty::launch(request, reporter);
        }
        let direct = match &spec.invocation {
            Invocation::Shell(line) => self.direct_argv(line),
            Invocation::Program { .. } => None,
        };
        let (program, args): (&str, Vec<&str>) = match (&spec.invocation, &direct) {
            (_, Some(argv)) => (
                argv[0].as_str(),
                argv[1..].iter().map(String::as_str).collect(),
            ),
            (Invocation::Shell(line), None) => ("/bin/sh", vec!["-c", line.as_str()]),
            (Invocation::Program { program, args }, None) => {
                (program.as_str(), args.iter().map(String::as_str).collect())
            }
        };
        let stdin = match spec.stdin {
            StdinMode::Null => Stdio::null(),
            StdinMode::Pipe | StdinMode::Preset(_) => Stdio::piped(),
        };
        let mut command = CommandWrap::with_new(program, |c| {
            c.args(&args)
                .stdin(stdin)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .env("POOLSCOPE_SLOT", request.slot.to_string())
                .env("POOLSCOPE_TASK_ID", request.task.0.to_string())
                .envs(spec.env.iter().map(|(k, v)| (k, v)));
            if let Some(dir) = &spec.cwd {
                c.current_dir(dir);
            }
        });
        // `ProcessGroup` sets the group with `Command::process_group`, which keeps std on
        // the posix_spawn path (no fork of a large parent).
        command.wrap(ProcessGroup::leader());
        let mut child = command.spawn().map_err(|e| e.to_string())?;
        let pid = child.id();

        let files = open_output_files(reporter, request.task, request.attempt)
            .map_err(|e| format!("cannot create output files: {e}"))?;
        let stdout = child.stdout().take();
        let stderr = child.stderr().take();
        let stdin_pipe = child.stdin().take();

        let stdin_bytes = Arc::new(AtomicU64::new(0));
        let stdin = match (&spec.stdin, stdin_pipe) {
            (StdinMode::Pipe, Some(pipe)) => {
                let (tx, rx) = mpsc::channel();
                if let Err(e) = spawn_stdin_writer(request, pipe, None, rx, &stdin_bytes, reporter)
                {
                    log::error!("task {}: cannot start stdin writer: {e}", request.task);
                }
                Some(tx)
            }
            (StdinMode::Preset(text), Some(pipe)) => {
                // The sender is dropped at once: the writer sends the text, then closes.
                let (_, rx) = mpsc::channel();
                if let Err(e) = spawn_stdin_writer(
                    request,
                    pipe,
                    Some(text.clone()),
                    rx,
                    &stdin_bytes,
                    reporter,
                ) {
                    log::error!("task {}: cannot start stdin writer: {e}", request.task);
                }
                None
            }
            _ => None,
        };

        let monitor = Monitor {
            task: request.task,
            attempt: request.attempt,
            child,
            stdout,
            stderr,
            files,
            reporter: reporter.clone(),
        };
        let spawned = thread::Builder::new()
            .name(format!("poolscope-task-{}", request.task))
            .spawn(move || monitor.run());
        if let Err(e) = spawned {
            // No thread to reap it: take the group down now rather than leak it.
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            return Err(format!("cannot start monitor thread: {e}"));
        }
        Ok(Launched {
            pid,
            control: Box::new(GroupControl {
                pgid: Pid::from_raw(pid as i32),
            }),
            stdin,
            stdin_bytes,
        })
    }
}

pub(super) fn open_output_files(
    reporter: &Reporter,
    task: TaskId,
    attempt: u32,
) -> io::Result<Option<[File; 2]>> {
    let Some(dir) = reporter.output_dir() else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir)?;
    let out = File::create(dir.join(format!("{task}.{attempt}.stdout")))?;
    let err = File::create(dir.join(format!("{task}.{attempt}.stderr")))?;
    Ok(Some([out, err]))
}

/// Writes what the console sends to a task's stdin (a pipe, or a terminal) on a thread
/// of its own, counting the bytes; when the sender is dropped the writer is dropped too,
/// which closes the pipe (or types end-of-file into the terminal).
pub(super) fn spawn_stdin_writer<W: Write + Send + 'static>(
    request: LaunchRequest<'_>,
    mut pipe: W,
    preset: Option<Vec<u8>>,
    commands: Receiver<StdinCommand>,
    written: &Arc<AtomicU64>,
    reporter: &Reporter,
) -> io::Result<()> {
    let (task, attempt) = (request.task, request.attempt);
    let written = Arc::clone(written);
    let reporter = reporter.clone();
    let write = move |pipe: &mut W, bytes: &[u8]| -> io::Result<()> {
        pipe.write_all(bytes)?;
        pipe.flush()?;
        written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    };
    let body = move || {
        let mut error = None;
        if let Some(text) = preset {
            error = write(&mut pipe, &text).err();
        }
        if error.is_none() {
            for StdinCommand::Write(bytes) in &commands {
                if let Err(e) = write(&mut pipe, &bytes) {
                    error = Some(e);
                    break;
                }
            }
        }
        drop(pipe);
        reporter.stdin_ended(task, attempt, error.map(|e| describe_write_error(&e)));
    };
    thread::Builder::new()
        .name(format!("poolscope-stdin-{task}"))
        .spawn(body)
        .map(|_| ())
}

fn describe_write_error(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::BrokenPipe {
        "the task closed its input (broken pipe)".to_owned()
    } else {
        e.to_string()
    }
}

/// Owns a running child: forwards its output, then reaps it.
struct Monitor {
    task: TaskId,
    attempt: u32,
    child: Box<dyn ChildWrapper>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    files: Option<[File; 2]>,
    reporter: Reporter,
}

impl Monitor {
    fn run(mut self) {
        let mut buf = vec![0u8; READ_CHUNK];
        while self.stdout.is_some() || self.stderr.is_some() {
            let ready = match self.wait_readable() {
                Ok(ready) => ready,
                Err(e) => {
                    log::error!("task {}: poll failed: {e}", self.task);
                    break;
                }
            };
            for stream in ready {
                self.read_once(stream, &mut buf);
            }
        }
        let exit = match self.child.wait() {
            Ok(status) => raw_exit(status),
            Err(e) => {
                log::error!("task {}: wait failed: {e}", self.task);
                RawExit::Code(-1)
            }
        };
        self.reporter.ended(self.task, self.attempt, exit);
    }

    /// Which open pipes have data (or EOF) to read.
    fn wait_readable(&self) -> nix::Result<Vec<Stream>> {
        let mut streams = Vec::with_capacity(2);
        let mut fds = Vec::with_capacity(2);
        if let Some(out) = &self.stdout {
            streams.push(Stream::Stdout);
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
        }
        if let Some(err) = &self.stderr {
            streams.push(Stream::Stderr);
            fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
        }
        loop {
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(streams
            .into_iter()
            .zip(&fds)
            .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(s, _)| s)
            .collect())
    }

    fn read_once(&mut self, stream: Stream, buf: &mut [u8]) {
        let (pipe_result, file_index) = match stream {
            Stream::Stdout => (self.stdout.as_mut().map(|p| p.read(buf)), 0),
            Stream::Stderr => (self.stderr.as_mut().map(|p| p.read(buf)), 1),
        };
        match pipe_result {
            Some(Ok(n)) if n > 0 => {
                if let Some(files) = &mut self.files
                    && let Err(e) = files[file_index].write_all(&buf[..n])
                {
                    log::error!("task {}: cannot save output: {e}", self.task);
                    self.files = None;
                }
                self.reporter.output(EventKind::Output {
                    task: self.task,
                    attempt: self.attempt,
                    stream,
                    bytes: buf[..n].to_vec(),
                });
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            // EOF or a broken pipe: this stream is done.
            _ => match stream {
                Stream::Stdout => self.stdout = None,
                Stream::Stderr => self.stderr = None,
            },
        }
    }
}

fn raw_exit(status: std::process::ExitStatus) -> RawExit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => RawExit::Code(code),
        (None, Some(sig)) => RawExit::Signal(sig),
        (None, None) => RawExit::Code(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_program_lines_skip_the_shell() {
        let mut b = LocalBackend::default();
        assert_eq!(
            b.direct_argv("/bin/true"),
            Some(vec!["/bin/true".to_owned()])
        );
        assert_eq!(
            b.direct_argv("sleep  0.1"),
            Some(vec!["sleep".to_owned(), "0.1".to_owned()])
        );
        for shell_line in [
            "exit 3",
            "echo hi",
            "sleep 1; echo x",
            "cat $HOME",
            "ls *",
            "FOO=1 env",
            "true > out",
            "a 'quoted'",
            "sleep 1 &",
            "no-such-program-poolscope",
        ] {
            assert_eq!(b.direct_argv(shell_line), None, "{shell_line}");
        }
    }
}
