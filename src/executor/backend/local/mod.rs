//! Local child processes, all served by the dispatcher's one readiness loop: each task
//! leads its own process group; its pipes are watched by epoll, and so is a pidfd for
//! its exit wherever the end of its output does not already tell of it, so an exit is
//! noticed the moment it matters and no thread exists per task.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rustix::process::PidfdFlags;

mod pty;
mod spawn;

use super::{Backend, Control, Ctx, LaunchError, LaunchRequest};
use crate::executor::command::CommandError;
use crate::executor::event::Stream;
use crate::executor::reactor::Interest;
use crate::executor::report::{RawExit, Report};
use crate::executor::task::{Background, Invocation, StdinMode, TaskId};

/// Largest single read; pipes that fill up are grown to this size.
const READ_CHUNK: usize = 1024 * 1024;
/// Most bytes waiting to be written to one task's stdin before a write is refused.
pub const STDIN_QUEUE_LIMIT: usize = 1024 * 1024;
/// Most bytes read from one stream in one readiness turn, so one flooding task cannot
/// starve the others (or a kill) on the same loop.
const READS_PER_TURN: usize = 4;
/// How long a child whose output closed is waited for to finish its exit.
const REAP_SOON_FOR: Duration = Duration::from_micros(200);
/// How often a child whose exit could not be watched (epoll refused its pidfd) is
/// looked at instead.
const EXIT_POLL_EVERY: Duration = Duration::from_millis(10);
/// A task still running this long after its start has its exit watched too, so that a
/// leader whose output is held open by what it left behind is reaped when it exits (not
/// left a zombie until that output closes). Shorter tasks never pay for the watch.
const WATCH_EXIT_AFTER: Duration = Duration::from_millis(50);
/// Exits that come due within this much of each other are set up together (one timer
/// wake-up for many tasks).
const WATCH_EXIT_SLACK: Duration = Duration::from_millis(10);

/// Runs tasks as local child processes.
#[derive(Default)]
pub struct LocalBackend {
    procs: HashMap<u64, Proc>,
    by_attempt: crate::executor::task::AttemptMap<u64>,
    next_key: u64,
    buf: Vec<u8>,
    /// Output streams taken off the loop while the consumer is behind.
    parked: Vec<(u64, usize)>,
    /// Process groups whose leader ended its task (`background = "kill"`) but which
    /// still had members: SIGKILL is due at this time.
    lingering: Vec<(Pid, Instant)>,
    /// Made at the first start (it reads the environment then).
    spawner: Option<spawn::Spawner>,
    /// Children whose exit epoll could not watch: looked at on this timer instead.
    exit_polls: Vec<(u64, Instant)>,
    /// Children whose exit is not watched yet, in start order, with when it will be
    /// ([`WATCH_EXIT_AFTER`]); those that ended meanwhile are passed over.
    exit_watch_due: VecDeque<(u64, Instant)>,
}

/// Builtins and keywords whose meaning in `sh` differs from (or has no) program on `PATH`.
const SHELL_ONLY: &[&str] = &[
    "!", ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done",
    "echo", "elif", "else", "esac", "eval", "exec", "exit", "export", "false", "fc", "fg", "fi",
    "for", "getopts", "hash", "if", "jobs", "kill", "local", "printf", "pwd", "read", "readonly",
    "return", "set", "shift", "test", "then", "time", "times", "trap", "type", "ulimit", "umask",
    "unalias", "unset", "until", "wait", "while",
];

// Token layout: the process key, then which of its descriptors.
const PIDFD: u64 = 0;
const OUT: u64 = 1; // OUT + stream index (1 = stdout, 2 = stderr)
const STDIN: u64 = 3;

fn token(key: u64, which: u64) -> u64 {
    key << 2 | which
}

/// One running attempt's process and descriptors.
struct Proc {
    task: TaskId,
    attempt: u32,
    pgid: Pid,
    pidfd: Option<OwnedFd>,
    /// Whether epoll watches the pidfd. A task that waits for its output to close
    /// (the default) is watched only once its output has closed and it has not exited
    /// at once, or once it has run [`WATCH_EXIT_AFTER`]: a short task's end comes as
    /// that end of file, which saves two epoll changes per task and the exiting child's
    /// wake-up of this thread through it.
    exit_watched: bool,
    exit: Option<RawExit>,
    /// stdout, stderr (a terminal has only the first).
    out: [Option<OutPipe>; 2],
    stdin: Option<StdinPipe>,
    stdin_bytes: u64,
    background: Background,
    /// Keeps a terminal open while the task runs.
    _terminal: Option<pty::Terminal>,
}

struct OutPipe {
    fd: OwnedFd,
    stream: Stream,
    grown: bool,
}

struct StdinPipe {
    fd: OwnedFd,
    queue: VecDeque<u8>,
    close_when_written: bool,
    watching: bool,
    /// A terminal: closing types end-of-file instead of closing a pipe.
    terminal: bool,
}

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
        let runnable = program.contains('/') || self.spawner().ok()?.on_path(program);
        runnable.then(|| words.iter().map(|w| (*w).to_owned()).collect())
    }

    /// What starts the pool's children, made at the first need (it reads the
    /// environment then).
    fn spawner(&mut self) -> Result<&mut spawn::Spawner, LaunchError> {
        match &mut self.spawner {
            Some(spawner) => Ok(spawner),
            none => Ok(none.insert(
                spawn::Spawner::new()
                    .map_err(|e| LaunchError::from_io("cannot prepare to start tasks", &e))?,
            )),
        }
    }

    /// Start a pipe-connected child; returns it with its pipes.
    fn spawn_piped(
        &mut self,
        request: LaunchRequest<'_>,
        helper: &std::path::Path,
        guard_token: Option<&str>,
    ) -> Result<Spawned, LaunchError> {
        let spec = request.spec;
        let direct = match &spec.invocation {
            Invocation::Shell(line) => self.direct_argv(line),
            Invocation::Program { .. } | Invocation::Builtin(_) => None,
        };
        let builtin;
        let (program, args): (&str, Vec<&str>) = match (&spec.invocation, &direct) {
            (_, Some(argv)) => (
                argv[0].as_str(),
                argv[1..].iter().map(String::as_str).collect(),
            ),
            (Invocation::Shell(line), None) => ("/bin/sh", vec!["-c", line.as_str()]),
            (Invocation::Program { program, args }, None) => {
                (program.as_str(), args.iter().map(String::as_str).collect())
            }
            (Invocation::Builtin(_), None) => {
                builtin = spec.invocation.argv(helper);
                (
                    builtin.0.as_str(),
                    builtin.1.iter().map(String::as_str).collect(),
                )
            }
        };
        let spawner = self.spawner()?;
        let slot = request.slot.to_string();
        let task = request.task.0.to_string();
        let mut env: Vec<(&str, &str)> = Vec::with_capacity(3 + spec.env.len());
        env.push(("POOLSCOPE_SLOT", &slot));
        env.push(("POOLSCOPE_TASK_ID", &task));
        env.extend(guard_token.map(|token| (crate::executor::watchdog::TOKEN_VAR, token)));
        env.extend(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = spawner
            .spawn(&spawn::Plan {
                program,
                args: &args,
                env: &env,
                cwd: spec.cwd.as_deref(),
                stdin_piped: !matches!(spec.stdin, StdinMode::Null),
            })
            .map_err(|e| LaunchError::from_io("", &e))?;
        Ok(Spawned {
            pid: child.pid,
            pidfd: Some(child.pidfd),
            out: [Some(child.stdout), Some(child.stderr)],
            stdin: child.stdin,
            terminal: None,
        })
    }

    /// Watch a started child: its pidfd, its pipes, its stdin. On error nothing is
    /// watched and the caller kills and reaps the child.
    fn attach(
        key: u64,
        request: LaunchRequest<'_>,
        spawned: &mut Spawned,
        ctx: &Ctx<'_>,
    ) -> std::io::Result<Proc> {
        let pid = rustix::process::Pid::from_raw(spawned.pid as i32)
            .ok_or_else(|| std::io::Error::other("the child has no process id"))?;
        let pidfd = match spawned.pidfd.take() {
            Some(pidfd) => pidfd,
            None => rustix::process::pidfd_open(pid, PidfdFlags::empty())?,
        };
        let mut out: [Option<OutPipe>; 2] = [None, None];
        for (i, fd) in spawned.out.iter_mut().enumerate() {
            if let Some(fd) = fd.take() {
                rustix::io::ioctl_fionbio(&fd, true)?;
                out[i] = Some(OutPipe {
                    fd,
                    stream: if i == 0 {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    },
                    grown: false,
                });
            }
        }
        let mut stdin = match spawned.stdin.take() {
            Some(fd) => {
                rustix::io::ioctl_fionbio(&fd, true)?;
                Some(StdinPipe {
                    fd,
                    queue: VecDeque::new(),
                    close_when_written: false,
                    watching: false,
                    terminal: spawned.terminal.is_some(),
                })
            }
            None => None,
        };
        match (&request.spec.stdin, stdin.as_mut()) {
            (StdinMode::Preset(text), Some(pipe)) => {
                pipe.queue.extend(text);
                // A terminal stays open after typed-ahead text: an end-of-file typed
                // before the program set up its terminal can be lost.
                pipe.close_when_written = !pipe.terminal;
            }
            (StdinMode::Null, Some(pipe)) if pipe.terminal => {
                pipe.close_when_written = true;
            }
            _ => {}
        }
        // Register last, all or nothing: a failure leaves nothing watched. The exit is
        // watched now when it alone ends the task, or when no output will tell of it.
        let exit_watched =
            request.spec.background == Background::Kill || out.iter().all(Option::is_none);
        let mut watched: Vec<&OwnedFd> = Vec::new();
        let result = (|| {
            if exit_watched {
                ctx.watch(&pidfd, token(key, PIDFD), Interest::Read)?;
                watched.push(&pidfd);
            }
            for (i, pipe) in out.iter().enumerate() {
                if let Some(pipe) = pipe {
                    ctx.watch(&pipe.fd, token(key, OUT + i as u64), Interest::Read)?;
                    watched.push(&pipe.fd);
                }
            }
            Ok::<(), std::io::Error>(())
        })();
        if let Err(e) = result {
            for fd in watched {
                ctx.unwatch(fd);
            }
            return Err(e);
        }
        Ok(Proc {
            task: request.task,
            attempt: request.attempt,
            pgid: Pid::from_raw(spawned.pid as i32),
            pidfd: Some(pidfd),
            exit_watched,
            exit: None,
            out,
            stdin,
            stdin_bytes: 0,
            background: request.spec.background,
            _terminal: spawned.terminal.take(),
        })
    }

    fn read_output(&mut self, key: u64, index: usize, ctx: &mut Ctx<'_>) {
        let Some(proc) = self.procs.get_mut(&key) else {
            return;
        };
        let mut over_budget = false;
        for _ in 0..READS_PER_TURN {
            let Some(pipe) = proc.out[index].as_mut() else {
                break;
            };
            match read_into(&pipe.fd, &mut self.buf) {
                Ok([]) => {
                    close_output(proc, index, ctx);
                    break;
                }
                Ok(bytes) => {
                    let n = bytes.len();
                    // A pipe that filled its default 64 KiB: grow it, so a fast producer
                    // is read in large pieces. Refused (a per-user limit) is harmless.
                    if !pipe.grown && n >= 64 * 1024 {
                        pipe.grown = true;
                        let _ = rustix::pipe::fcntl_setpipe_size(&pipe.fd, READ_CHUNK);
                    }
                    ctx.report(Report::Output {
                        task: proc.task,
                        attempt: proc.attempt,
                        stream: pipe.stream,
                        bytes: bytes.to_vec(),
                    });
                    if !ctx.output_allowed() {
                        over_budget = true;
                        break;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                // EIO: a terminal whose last holder is gone; anything else ends it too.
                Err(_) => {
                    close_output(proc, index, ctx);
                    break;
                }
            }
        }
        if over_budget {
            self.park_all(ctx);
        }
    }

    /// Take every output stream off the loop until the consumer catches up.
    fn park_all(&mut self, ctx: &Ctx<'_>) {
        for (&key, proc) in &self.procs {
            for (i, pipe) in proc.out.iter().enumerate() {
                if let Some(pipe) = pipe
                    && !self.parked.contains(&(key, i))
                {
                    ctx.unwatch(&pipe.fd);
                    self.parked.push((key, i));
                }
            }
        }
    }

    fn reap(&mut self, key: u64, ctx: &mut Ctx<'_>) {
        let Some(proc) = self.procs.get_mut(&key) else {
            return;
        };
        let Some(pidfd) = proc.pidfd.as_ref() else {
            return;
        };
        let Some(status) = super::exited(pidfd, &format_args!("task {}", proc.task)) else {
            return;
        };
        // A child not waited for until its exec (see `spawn`) may have failed it.
        let not_started = self
            .spawner
            .as_mut()
            .and_then(|s| s.settled(proc.pgid.as_raw().cast_unsigned()))
            .and_then(Result::err);
        let exit = match (
            status.exit_status(),
            status.terminating_signal(),
            not_started,
        ) {
            (_, _, Some(e)) => RawExit::NotStarted(LaunchError::from_io("", &e).to_string()),
            (Some(code), _, None) if status.exited() => RawExit::Code(code),
            (_, Some(sig), None) => RawExit::Signal(sig),
            _ => RawExit::Code(-1),
        };
        // Off epoll before closing (see `close_output`: a new child may hold a copy).
        if proc.exit_watched {
            ctx.unwatch(pidfd);
        }
        proc.pidfd = None;
        proc.exit = Some(exit);
        if proc.background == Background::Kill {
            // The leader's exit ends the task: take what is already written, then end
            // whatever it left behind and free the slot now.
            for index in 0..2 {
                if proc.out[index].is_some() {
                    drain_now(proc, index, &mut self.buf, ctx);
                    close_output(proc, index, ctx);
                }
            }
            self.parked.retain(|&(k, _)| k != key);
            if killpg(proc.pgid, Signal::SIGTERM).is_ok() {
                self.lingering
                    .push((proc.pgid, Instant::now() + ctx.kill_grace()));
            }
        }
        // The exit closed the child's ends of its pipes (unless something else holds
        // them): read to EOF now rather than waking up again for it.
        for index in 0..2 {
            self.read_output(key, index, ctx);
        }
        self.finish_if_done(key, ctx);
    }

    /// Reap a child whose output just closed. Usually its exit closed it, and the exit
    /// is then microseconds from done (a process closes its files before it tells its
    /// parent; this thread, woken by the first pipe it closed, may have taken its CPU):
    /// the CPU is given back (yield) and the child reaped, rather than sleeping until
    /// its pidfd wakes this thread again. A child that closed its output and runs on is
    /// left to the pidfd after a moment.
    fn reap_soon(&mut self, key: u64, ctx: &mut Ctx<'_>) {
        let since = Instant::now();
        loop {
            self.reap(key, ctx);
            let reaped = self.procs.get(&key).is_none_or(|p| p.exit.is_some());
            if reaped {
                return;
            }
            if since.elapsed() >= REAP_SOON_FOR {
                self.watch_exit(key, ctx);
                return;
            }
            std::thread::yield_now();
        }
    }

    /// From now on learn of the child's exit from its pidfd (or, if epoll refuses it,
    /// from a timer).
    fn watch_exit(&mut self, key: u64, ctx: &mut Ctx<'_>) {
        let Some(proc) = self.procs.get_mut(&key) else {
            return;
        };
        let Some(pidfd) = proc.pidfd.as_ref() else {
            return;
        };
        if proc.exit_watched {
            return;
        }
        match ctx.watch(pidfd, token(key, PIDFD), Interest::Read) {
            Ok(()) => proc.exit_watched = true,
            // Asked again (its output closed, then its 50 ms passed): one poll is enough.
            Err(_) if self.exit_polls.iter().any(|&(k, _)| k == key) => {}
            Err(e) => {
                log::warn!(
                    "task {}: cannot watch its exit ({e}); looking now and then",
                    proc.task
                );
                self.exit_polls
                    .push((key, Instant::now() + EXIT_POLL_EVERY));
            }
        }
    }

    /// The attempt is over once the leader is reaped and its output is closed.
    fn finish_if_done(&mut self, key: u64, ctx: &mut Ctx<'_>) {
        let done = self
            .procs
            .get(&key)
            .is_some_and(|p| p.exit.is_some() && p.out.iter().all(Option::is_none));
        if !done {
            return;
        }
        let Some(mut proc) = self.procs.remove(&key) else {
            return;
        };
        self.by_attempt.remove(&(proc.task, proc.attempt));
        if let Some(stdin) = proc.stdin.take() {
            close_stdin_fd(&stdin, ctx);
        }
        if !self.lingering.iter().any(|&(pgid, _)| pgid == proc.pgid) {
            ctx.guard().remove(proc.pgid.as_raw());
        }
        ctx.report(Report::Ended {
            task: proc.task,
            attempt: proc.attempt,
            exit: proc.exit.take().unwrap_or(RawExit::Code(-1)),
            stdin_bytes: proc.stdin_bytes,
            at: None,
        });
    }

    /// Write what is queued for a task's stdin, as far as the pipe takes it.
    fn flush_stdin(&mut self, key: u64, ctx: &mut Ctx<'_>) {
        let Some(proc) = self.procs.get_mut(&key) else {
            return;
        };
        let Some(pipe) = proc.stdin.as_mut() else {
            return;
        };
        let mut error = None;
        while !pipe.queue.is_empty() {
            let (front, _) = pipe.queue.as_slices();
            match rustix::io::write(&pipe.fd, front) {
                Ok(n) => {
                    pipe.queue.drain(..n);
                    proc.stdin_bytes += n as u64;
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    error = Some(describe_write_error(e));
                    break;
                }
            }
        }
        if error.is_none() && !(pipe.queue.is_empty() && pipe.close_when_written) {
            let want = !pipe.queue.is_empty();
            if want != pipe.watching {
                pipe.watching = want;
                if !want {
                    ctx.unwatch(&pipe.fd);
                } else if let Err(e) = ctx.watch(&pipe.fd, token(key, STDIN), Interest::Write) {
                    log::error!("task {}: cannot watch stdin: {e}", proc.task);
                }
            }
            return;
        }
        if error.is_none() && pipe.terminal {
            // End of file typed into the terminal: after a newline, Ctrl-D (VEOF's
            // default), as a user would press it.
            let _ = rustix::io::write(&pipe.fd, b"\n\x04");
        }
        if let Some(pipe) = proc.stdin.take() {
            close_stdin_fd(&pipe, ctx);
        }
        ctx.report(Report::StdinClosed {
            task: proc.task,
            attempt: proc.attempt,
            error,
        });
    }
}

/// A child just started, with the descriptors to watch.
struct Spawned {
    pid: u32,
    /// From the spawn itself; a terminal's child gets one after.
    pidfd: Option<OwnedFd>,
    out: [Option<OwnedFd>; 2],
    stdin: Option<OwnedFd>,
    terminal: Option<pty::Terminal>,
}

fn close_output(proc: &mut Proc, index: usize, ctx: &Ctx<'_>) {
    if let Some(pipe) = proc.out[index].take() {
        // Taken off epoll before it is closed: our close is not always the last one. A
        // child just spawned holds a copy of every descriptor until its exec closes them
        // (its parent runs on before that), and epoll keeps reporting a file that is
        // still open somewhere: the loop spun on a closed pipe's end of file until then.
        ctx.unwatch(&pipe.fd);
    }
}

fn close_stdin_fd(pipe: &StdinPipe, ctx: &Ctx<'_>) {
    if pipe.watching {
        ctx.unwatch(&pipe.fd);
    }
}

/// Read what a pipe holds right now, without waiting for more.
fn drain_now(proc: &Proc, index: usize, buf: &mut Vec<u8>, ctx: &mut Ctx<'_>) {
    let Some(pipe) = proc.out[index].as_ref() else {
        return;
    };
    while let Ok(bytes) = read_into(&pipe.fd, buf) {
        if bytes.is_empty() {
            break;
        }
        ctx.report(Report::Output {
            task: proc.task,
            attempt: proc.attempt,
            stream: pipe.stream,
            bytes: bytes.to_vec(),
        });
    }
}

/// Read what `fd` has into `buf` (cleared first), up to [`READ_CHUNK`]. The buffer is
/// never zeroed: zeroing a megabyte cost every pool 256 page faults, however little its
/// tasks wrote.
fn read_into<'b>(fd: &OwnedFd, buf: &'b mut Vec<u8>) -> rustix::io::Result<&'b [u8]> {
    buf.clear();
    buf.reserve_exact(READ_CHUNK);
    let (filled, _) = rustix::io::read(fd, &mut buf.spare_capacity_mut()[..READ_CHUNK])?;
    Ok(filled)
}

fn describe_write_error(e: rustix::io::Errno) -> String {
    if e == rustix::io::Errno::PIPE {
        "the task closed its input (broken pipe)".to_owned()
    } else {
        std::io::Error::from(e).to_string()
    }
}

/// Kill a child that was started but could not be watched, and reap it.
fn abandon(pid: u32) {
    let pid = Pid::from_raw(pid as i32);
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

impl Backend for LocalBackend {
    fn launch(&mut self, request: LaunchRequest<'_>, ctx: &mut Ctx<'_>) -> Result<(), LaunchError> {
        let token = ctx.guard().token();
        ctx.guard().spawning();
        // Its start is when it was asked for, not when this thread got back to it (a
        // loaded machine can hold this thread up while the child runs on).
        let asked_at = Instant::now();
        let spawned = if request.spec.pty {
            pty::spawn(request, ctx.helper(), token)
                .map(|t| Spawned {
                    pid: t.pid,
                    pidfd: None,
                    out: [Some(t.reader), None],
                    stdin: Some(t.writer),
                    terminal: Some(t.terminal),
                })
                .map_err(LaunchError::from)
        } else {
            self.spawn_piped(request, ctx.helper(), token)
        };
        let mut spawned = spawned.inspect_err(|_| ctx.guard().spawned(None))?;
        ctx.guard().spawned(Some(spawned.pid as i32));
        let key = self.next_key;
        self.next_key += 1;
        let proc = match Self::attach(key, request, &mut spawned, ctx) {
            Ok(proc) => proc,
            Err(e) => {
                abandon(spawned.pid);
                ctx.guard().remove(spawned.pid as i32);
                return Err(LaunchError::from_io("cannot watch the started process", &e));
            }
        };
        ctx.report(Report::Started {
            task: request.task,
            attempt: request.attempt,
            pid: Some(spawned.pid),
            at: Some(asked_at),
            slot: None,
            host: None,
        });
        self.by_attempt.insert((request.task, request.attempt), key);
        let has_queue = proc
            .stdin
            .as_ref()
            .is_some_and(|p| !p.queue.is_empty() || p.close_when_written);
        if !proc.exit_watched {
            self.exit_watch_due
                .push_back((key, Instant::now() + WATCH_EXIT_AFTER));
        }
        self.procs.insert(key, proc);
        if has_queue {
            self.flush_stdin(key, ctx);
        }
        if !ctx.output_allowed() {
            self.park_all(ctx);
        }
        Ok(())
    }

    fn control(
        &mut self,
        task: TaskId,
        attempt: u32,
        control: Control<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CommandError> {
        let key = *self
            .by_attempt
            .get(&(task, attempt))
            .ok_or(CommandError::NotRunning(task))?;
        let proc = self
            .procs
            .get_mut(&key)
            .ok_or(CommandError::NotRunning(task))?;
        match control {
            Control::Signal(signal) => match killpg(proc.pgid, signal) {
                // The group is already gone: nothing left to signal.
                Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
                Err(e) => Err(CommandError::Signal(task, e.to_string())),
            },
            Control::Write(bytes) => {
                let pipe = proc
                    .stdin
                    .as_mut()
                    .filter(|p| !p.close_when_written)
                    .ok_or(CommandError::StdinNotOpen(task))?;
                if pipe.queue.len() + bytes.len() > STDIN_QUEUE_LIMIT {
                    return Err(CommandError::StdinFull {
                        task,
                        queued: pipe.queue.len(),
                    });
                }
                pipe.queue.extend(bytes);
                self.flush_stdin(key, ctx);
                Ok(())
            }
            Control::CloseStdin => {
                let pipe = proc
                    .stdin
                    .as_mut()
                    .filter(|p| !p.close_when_written)
                    .ok_or(CommandError::StdinNotOpen(task))?;
                pipe.close_when_written = true;
                self.flush_stdin(key, ctx);
                Ok(())
            }
        }
    }

    fn ready(&mut self, token: u64, ctx: &mut Ctx<'_>) {
        let key = token >> 2;
        match token & 3 {
            PIDFD => self.reap(key, ctx),
            STDIN => self.flush_stdin(key, ctx),
            which => {
                self.read_output(key, (which - OUT) as usize, ctx);
                let outputs_closed = self
                    .procs
                    .get(&key)
                    .is_some_and(|p| p.exit.is_none() && p.out.iter().all(Option::is_none));
                if outputs_closed {
                    self.reap_soon(key, ctx);
                }
                self.finish_if_done(key, ctx);
            }
        }
    }

    fn resume_output(&mut self, ctx: &mut Ctx<'_>) {
        for (key, index) in std::mem::take(&mut self.parked) {
            if let Some(pipe) = self.procs.get(&key).and_then(|p| p.out[index].as_ref())
                && let Err(e) = ctx.watch(&pipe.fd, token(key, OUT + index as u64), Interest::Read)
            {
                log::error!("cannot watch output again: {e}");
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let lingering = self.lingering.iter().map(|&(_, at)| at);
        let watch = self.exit_watch_due.front().map(|&(_, at)| at);
        lingering
            .chain(self.exit_polls.iter().map(|&(_, at)| at))
            .chain(watch)
            .min()
    }

    fn on_deadline(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        while let Some(&(key, at)) = self.exit_watch_due.front()
            && at <= now + WATCH_EXIT_SLACK
        {
            self.exit_watch_due.pop_front();
            if self.procs.get(&key).is_some_and(|p| p.exit.is_none()) {
                self.watch_exit(key, ctx);
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.exit_polls)
            .into_iter()
            .partition(|&(_, at)| at <= now);
        self.exit_polls = later;
        for (key, _) in due {
            self.reap(key, ctx);
            if self.procs.get(&key).is_some_and(|p| p.exit.is_none()) {
                self.exit_polls.push((key, now + EXIT_POLL_EVERY));
            }
        }
        self.lingering.retain(|&(pgid, at)| {
            if at > now {
                return true;
            }
            let _ = killpg(pgid, Signal::SIGKILL);
            ctx.guard().remove(pgid.as_raw());
            false
        });
    }

    fn shutdown(&mut self, ctx: &mut Ctx<'_>) {
        // Groups left behind by `background = "kill"` tasks: no grace at the end.
        for (pgid, _) in self.lingering.drain(..) {
            let _ = killpg(pgid, Signal::SIGKILL);
            ctx.guard().remove(pgid.as_raw());
        }
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
