//! Persistent workers (Python `Pool` semantics): the poolscope binary in a hidden role,
//! started once per slot, running task after task in one process, so one PID runs many
//! tasks.
//!
//! The protocol runs over the worker's stdin (jobs in) and stdout (reports out), in
//! frames: a little-endian `u32` length, a kind byte, then the body. Output is sent as
//! raw bytes; everything else is JSON. The worker's first frame is [`FromWorker::Hello`]
//! with [`PROTOCOL_VERSION`]. Reports are buffered and sent in batches (at most
//! [`REPORT_INTERVAL`] apart, and before anything that may take long), so many tiny tasks
//! do not cost one round trip each.

use std::collections::VecDeque;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::event::Stream;
use super::task::Invocation;

/// The hidden argument that makes the poolscope binary a worker.
pub const WORKER_ROLE: &str = "__worker";
/// Bumped whenever a frame changes meaning; a worker of another version is refused.
pub const PROTOCOL_VERSION: u32 = 2;
/// Longest time a report waits in the worker's buffer while tasks keep finishing.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(1);
/// Largest frame accepted: a bound against a corrupt stream, far above any real one.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

const KIND_JSON: u8 = 0;
const KIND_OUTPUT: u8 = 1;
// The two reports every task sends, in fixed binary layouts (no JSON per task).
const KIND_STARTED: u8 = 2;
const KIND_FINISHED: u8 = 3;

/// How a worker behaves, given on its command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// Leave after this many tasks (Python's `maxtasksperchild`); a new worker replaces it.
    pub max_tasks: Option<u32>,
    /// Run once when the worker starts, before any task (Python's `initializer`).
    pub initializer: Option<Invocation>,
    /// A worker stopped (SIGSTOP, a debugger) this long while it holds tasks is lost:
    /// its task fails as `worker lost` and a new worker takes its slot [default: 10 s].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_limit: Option<std::time::Duration>,
    /// Workers on a cluster: this local process is a relay that submits the real worker
    /// as a Slurm job and passes frames between poolscope and it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayPlan>,
    /// A worker on a cluster node: where its relay listens (instead of stdin/stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectTo>,
}

/// How a relay gets its worker onto the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayPlan {
    /// The run's Slurm folder (on a filesystem the nodes see): job scripts, logs, the
    /// secret.
    pub folder: PathBuf,
    /// `sbatch` arguments from the run's `[slurm]` options.
    pub sbatch: Vec<String>,
    /// The host workers connect to (default: this machine's name).
    pub host: Option<String>,
    /// One of the pool's first relays, whose workers go to the cluster as one job array:
    /// which element is this relay's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayPlace>,
}

/// A relay's element of the job array that brings up the pool's first workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayPlace {
    /// Names this pool's array files in the Slurm folder (one pool's relays from another's).
    pub cohort: String,
    /// Elements in the array (the relays started with the pool).
    pub size: u32,
    /// This relay's element; relay 0 submits the array.
    pub index: u32,
}

/// Where a cluster worker connects, and the file that holds the run's secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectTo {
    pub address: String,
    pub secret_file: PathBuf,
}

/// One task handed to a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub task: u64,
    pub attempt: u32,
    pub invocation: Invocation,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run these, in order, after what was sent before (one chunk of a map).
    Run(Vec<Job>),
    /// Finish the current task, then leave.
    Stop,
}

/// How a task ended inside a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerExit {
    Code(i32),
    Signal(i32),
}

/// Times are the worker's `CLOCK_MONOTONIC` in nanoseconds (the clock of `Instant`).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    Hello {
        version: u32,
        pid: u32,
        /// A worker on another machine: its host name, its clock when it said hello
        /// (its times are mapped onto poolscope's by it), and the run's secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now_ns: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
    /// The initializer ran (from, to); `error` says how it failed.
    Initialized {
        from_ns: u64,
        to_ns: u64,
        error: Option<String>,
    },
    Started {
        task: u64,
        attempt: u32,
        at_ns: u64,
    },
    /// An external command runs as the worker's child, leading this process group.
    Child {
        task: u64,
        attempt: u32,
        pid: u32,
    },
    Output {
        task: u64,
        attempt: u32,
        stream: Stream,
        bytes: Vec<u8>,
    },
    Finished {
        task: u64,
        attempt: u32,
        at_ns: u64,
        exit: WorkerExit,
    },
    /// It ran its `max_tasks` and leaves; jobs it has not started must go elsewhere.
    Retiring,
    /// Said by a relay whose worker is gone: why (Slurm's word for the job's end).
    Lost {
        why: String,
    },
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Append one frame to `out`.
pub fn encode<T: Serialize>(message: &T, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(KIND_JSON);
    serde_json::to_writer(&mut *out, message).expect("protocol messages serialize");
    seal(out, at);
}

/// Append one report frame: binary for output and the per-task ones, JSON for the rest.
pub fn encode_report(message: &FromWorker, out: &mut Vec<u8>) {
    let (kind, task, attempt, at_ns) = match message {
        FromWorker::Output {
            task,
            attempt,
            stream,
            bytes,
        } => return encode_output(*task, *attempt, *stream, bytes, out),
        FromWorker::Started {
            task,
            attempt,
            at_ns,
        } => (KIND_STARTED, task, attempt, at_ns),
        FromWorker::Finished {
            task,
            attempt,
            at_ns,
            ..
        } => (KIND_FINISHED, task, attempt, at_ns),
        other => return encode(other, out),
    };
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&task.to_le_bytes());
    out.extend_from_slice(&attempt.to_le_bytes());
    out.extend_from_slice(&at_ns.to_le_bytes());
    if let FromWorker::Finished { exit, .. } = message {
        let (how, value) = match exit {
            WorkerExit::Code(c) => (0u8, *c),
            WorkerExit::Signal(s) => (1u8, *s),
        };
        out.push(how);
        out.extend_from_slice(&value.to_le_bytes());
    }
    seal(out, at);
}

fn encode_output(task: u64, attempt: u32, stream: Stream, bytes: &[u8], out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(KIND_OUTPUT);
    out.extend_from_slice(&task.to_le_bytes());
    out.extend_from_slice(&attempt.to_le_bytes());
    out.push(u8::from(stream == Stream::Stderr));
    out.extend_from_slice(bytes);
    seal(out, at);
}

fn seal(out: &mut [u8], at: usize) {
    let len = u32::try_from(out.len() - at - 4).expect("frames are below 4 GiB");
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The body of the whole frame at `from` in `buf` (then `from` is past it); `Ok(None)`
/// while it is incomplete.
fn next_frame<'a>(buf: &'a [u8], from: &mut usize) -> Result<Option<&'a [u8]>, String> {
    let rest = &buf[*from..];
    if rest.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(format!("bad frame length {len}"));
    }
    if rest.len() < 4 + len {
        return Ok(None);
    }
    *from += 4 + len;
    Ok(Some(&rest[4..4 + len]))
}

/// Take the first whole frame (a JSON one) off `buf`: `Ok(None)` while it is incomplete.
pub fn decode<T: for<'de> Deserialize<'de>>(buf: &mut Vec<u8>) -> Result<Option<T>, String> {
    let mut end = 0;
    let Some(body) = next_frame(buf, &mut end)? else {
        return Ok(None);
    };
    let message = match body[0] {
        KIND_JSON => serde_json::from_slice(&body[1..]).map_err(|e| format!("bad frame: {e}")),
        kind => Err(format!("unexpected frame kind {kind}")),
    };
    buf.drain(..end);
    message.map(Some)
}

/// The task and attempt at the head of a binary frame's body.
fn task_attempt(body: &[u8]) -> (u64, u32) {
    (
        u64::from_le_bytes(body[1..9].try_into().expect("8 bytes")),
        u32::from_le_bytes(body[9..13].try_into().expect("4 bytes")),
    )
}

/// Like [`decode`] for the worker's reports (output and per-task reports are binary),
/// reading at `from` without moving the buffer.
pub fn decode_report(buf: &[u8], from: &mut usize) -> Result<Option<FromWorker>, String> {
    let Some(body) = next_frame(buf, from)? else {
        return Ok(None);
    };
    let at_ns = |body: &[u8]| u64::from_le_bytes(body[13..21].try_into().expect("8 bytes"));
    match body[0] {
        KIND_JSON => serde_json::from_slice(&body[1..])
            .map(Some)
            .map_err(|e| format!("bad frame: {e}")),
        KIND_OUTPUT if body.len() >= 14 => {
            let (task, attempt) = task_attempt(body);
            Ok(Some(FromWorker::Output {
                task,
                attempt,
                stream: if body[13] == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                },
                bytes: body[14..].to_vec(),
            }))
        }
        KIND_STARTED if body.len() == 21 => {
            let (task, attempt) = task_attempt(body);
            Ok(Some(FromWorker::Started {
                task,
                attempt,
                at_ns: at_ns(body),
            }))
        }
        KIND_FINISHED if body.len() == 26 => {
            let (task, attempt) = task_attempt(body);
            let value = i32::from_le_bytes(body[22..26].try_into().expect("4 bytes"));
            Ok(Some(FromWorker::Finished {
                task,
                attempt,
                at_ns: at_ns(body),
                exit: if body[21] == 0 {
                    WorkerExit::Code(value)
                } else {
                    WorkerExit::Signal(value)
                },
            }))
        }
        kind => Err(format!(
            "unexpected frame kind {kind} ({} bytes)",
            body.len()
        )),
    }
}

/// The worker's side of its stdout: frames buffered and sent in batches.
struct Reporter {
    out: BufWriter<Box<dyn Write + Send>>,
    buf: Vec<u8>,
    last_flush: Instant,
}

impl Reporter {
    fn send(&mut self, message: &FromWorker) {
        encode_report(message, &mut self.buf);
    }

    fn output(&mut self, task: u64, attempt: u32, stream: Stream, bytes: &[u8]) {
        encode_output(task, attempt, stream, bytes, &mut self.buf);
    }

    fn flush_if_due(&mut self) -> io::Result<()> {
        if self.last_flush.elapsed() >= REPORT_INTERVAL || self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        self.buf.clear();
        self.last_flush = Instant::now();
        Ok(())
    }
}

/// A task's stdout inside the worker: each flush becomes an output report, sent at once
/// (a long task's first line shows while it runs).
struct TaskOutput<'a> {
    reporter: &'a Mutex<Reporter>,
    task: u64,
    attempt: u32,
    pending: Vec<u8>,
}

impl Write for TaskOutput<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let mut r = self.reporter.lock().unwrap_or_else(PoisonError::into_inner);
            r.output(self.task, self.attempt, Stream::Stdout, &self.pending);
            self.pending.clear();
            r.flush()?;
        }
        Ok(())
    }
}

/// `poolscope __worker CONFIG`: the worker process. Returns its exit status.
/// The configuration a worker (or relay) was started with: its second argument.
/// The worker's configuration: its JSON, or `@FILE` naming the file that holds it (an
/// element of a job array, whose relay writes it as it starts: waited for as long as a
/// worker tries to reach its relay).
pub fn config_from_args() -> Result<WorkerConfig, String> {
    let arg = std::env::args()
        .nth(2)
        .ok_or_else(|| "missing configuration".to_owned())?;
    let text = match arg.strip_prefix('@') {
        Some(path) => config_file(Path::new(path))?,
        None => arg,
    };
    serde_json::from_str(&text).map_err(|e| format!("bad configuration: {e}"))
}

fn config_file(path: &Path) -> Result<String, String> {
    let until = Instant::now() + CONNECT_FOR;
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) => return Ok(text),
            Err(e) if e.kind() != io::ErrorKind::NotFound || Instant::now() >= until => {
                return Err(format!("{}: {e}", path.display()));
            }
            // Written by a relay on another machine, seen through the shared filesystem:
            // no event says when it appears.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

pub fn main(config: &WorkerConfig) -> u8 {
    // Never outlive the pool (or relay) that started it, even if it is killed.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if rustix::process::getppid().is_none_or(|p| p.as_raw_nonzero().get() == 1) {
        return 1;
    }
    let (input, output, remote): (Box<dyn Read>, Box<dyn Write + Send>, _) = match &config.connect {
        None => (Box::new(io::stdin()), Box::new(io::stdout()), None),
        Some(to) => match connect(to) {
            Ok((stream, hello)) => match stream.try_clone() {
                Ok(writer) => {
                    watch_connection(&stream);
                    (Box::new(stream), Box::new(writer), Some(hello))
                }
                Err(e) => {
                    eprintln!("poolscope __worker: {e}");
                    return 1;
                }
            },
            Err(e) => {
                eprintln!("poolscope __worker: {e}");
                return 1;
            }
        },
    };
    let reporter = Mutex::new(Reporter {
        out: BufWriter::with_capacity(1 << 16, output),
        buf: Vec::new(),
        last_flush: Instant::now(),
    });
    let lock = || reporter.lock().unwrap_or_else(PoisonError::into_inner);
    lock().send(&remote.unwrap_or(FromWorker::Hello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
        host: None,
        now_ns: None,
        secret: None,
    }));
    if let Some(init) = &config.initializer {
        if lock().flush().is_err() {
            return 1;
        }
        let from_ns = monotonic_ns();
        let error = run_initializer(init);
        lock().send(&FromWorker::Initialized {
            from_ns,
            to_ns: monotonic_ns(),
            error: error.clone(),
        });
        if error.is_some() {
            let _ = lock().flush();
            return 1;
        }
    }
    let mut input = input;
    let mut inbuf = Vec::new();
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut done = 0u32;
    loop {
        let Some(job) = queue.pop_front() else {
            // Nothing to do: everything reported goes out before waiting.
            if lock().flush().is_err() {
                return 1;
            }
            match read_message(&mut input, &mut inbuf) {
                Some(ToWorker::Run(jobs)) => queue.extend(jobs),
                Some(ToWorker::Stop) | None => return 0,
            }
            continue;
        };
        let exit = run_job(&job, &reporter);
        let mut r = lock();
        r.send(&FromWorker::Finished {
            task: job.task,
            attempt: job.attempt,
            at_ns: monotonic_ns(),
            exit,
        });
        done += 1;
        if config.max_tasks.is_some_and(|max| done >= max) {
            r.send(&FromWorker::Retiring);
            let _ = r.flush();
            return 0;
        }
        // Running low: tell the pool now, so the next task arrives before this worker
        // waits for it. With a long queue, reports go out in batches.
        let sent = if queue.len() <= 1 {
            r.flush()
        } else {
            r.flush_if_due()
        };
        if sent.is_err() {
            return 1;
        }
    }
}

fn read_message(input: &mut impl Read, buf: &mut Vec<u8>) -> Option<ToWorker> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match decode::<ToWorker>(buf) {
            Ok(Some(message)) => return Some(message),
            Ok(None) => {}
            Err(e) => {
                eprintln!("poolscope __worker: {e}");
                return None;
            }
        }
        match input.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn run_job(job: &Job, reporter: &Mutex<Reporter>) -> WorkerExit {
    let lock = || reporter.lock().unwrap_or_else(PoisonError::into_inner);
    let long = !matches!(&job.invocation, Invocation::Builtin(b) if !b.reports_start_first());
    {
        let mut r = lock();
        r.send(&FromWorker::Started {
            task: job.task,
            attempt: job.attempt,
            at_ns: monotonic_ns(),
        });
        // Show the start at once when the task may take a while.
        if long {
            let _ = r.flush();
        }
    }
    match &job.invocation {
        Invocation::Builtin(builtin) => {
            let mut out = TaskOutput {
                reporter,
                task: job.task,
                attempt: job.attempt,
                pending: Vec::new(),
            };
            let code = builtin.run(&mut out);
            if !out.pending.is_empty() {
                lock().output(job.task, job.attempt, Stream::Stdout, &out.pending);
            }
            WorkerExit::Code(code)
        }
        command => run_command(job, command, reporter),
    }
}

/// An external command as the worker's child, in its own process group (so a kill of
/// the task reaches everything it started, and never the worker).
fn run_command(job: &Job, invocation: &Invocation, reporter: &Mutex<Reporter>) -> WorkerExit {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let lock = || reporter.lock().unwrap_or_else(PoisonError::into_inner);
    let (program, args) = invocation.argv(&super::helper_program());
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .env("POOLSCOPE_TASK_ID", job.task.to_string())
        .envs(job.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &job.cwd {
        command.current_dir(dir);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let message = format!("poolscope worker: cannot start the command: {e}\n");
            lock().output(job.task, job.attempt, Stream::Stderr, message.as_bytes());
            return WorkerExit::Code(127);
        }
    };
    CURRENT_CHILD.store(child.id() as i32, std::sync::atomic::Ordering::Relaxed);
    {
        let mut r = lock();
        r.send(&FromWorker::Child {
            task: job.task,
            attempt: job.attempt,
            pid: child.id(),
        });
        let _ = r.flush();
    }
    let forward = |pipe: &mut dyn Read, stream: Stream| {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut r = lock();
                    r.output(job.task, job.attempt, stream, &chunk[..n]);
                    let _ = r.flush();
                }
            }
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    std::thread::scope(|scope| {
        if let Some(err) = stderr.as_mut() {
            let forward = &forward;
            std::thread::Builder::new()
                .name("poolscope-worker-stderr".into())
                .spawn_scoped(scope, move || forward(err, Stream::Stderr))
                .expect("cannot start a thread");
        }
        if let Some(out) = stdout.as_mut() {
            forward(out, Stream::Stdout);
        }
    });
    let waited = child.wait();
    CURRENT_CHILD.store(0, std::sync::atomic::Ordering::Relaxed);
    match waited {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => WorkerExit::Code(code),
            (_, Some(sig)) => WorkerExit::Signal(sig),
            _ => WorkerExit::Code(-1),
        },
        Err(_) => WorkerExit::Code(-1),
    }
}

/// The process group of the command the worker runs now (0: none), for the connection
/// watcher to end when its relay is gone.
static CURRENT_CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// How long a cluster worker tries to reach its relay before it gives up.
const CONNECT_FOR: Duration = Duration::from_mins(1);

/// This machine's name (`uname -n`), as a cluster worker reports it and a relay offers it.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Reach the relay, and the hello that proves this worker belongs to the run.
fn connect(to: &ConnectTo) -> Result<(std::net::TcpStream, FromWorker), String> {
    let secret = std::fs::read_to_string(&to.secret_file).map_err(|e| {
        format!(
            "cannot read the run's secret {}: {e}",
            to.secret_file.display()
        )
    })?;
    let until = Instant::now() + CONNECT_FOR;
    let stream = loop {
        match std::net::TcpStream::connect(&to.address) {
            Ok(stream) => break stream,
            Err(e) if Instant::now() >= until => {
                return Err(format!(
                    "cannot reach poolscope at {} for {} s: {e}",
                    to.address,
                    CONNECT_FOR.as_secs()
                ));
            }
            // No event tells when a listener appears: try again shortly.
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let _ = stream.set_nodelay(true);
    let hello = FromWorker::Hello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
        host: Some(host_name()),
        now_ns: Some(monotonic_ns()),
        secret: Some(secret.trim().to_owned()),
    };
    Ok((stream, hello))
}

/// A cluster worker whose relay is gone (poolscope ended, or was killed) ends at once,
/// with the command it runs: nothing of the run is left on the node.
fn watch_connection(stream: &std::net::TcpStream) {
    let Ok(watched) = stream.try_clone() else {
        return;
    };
    let watch = move || {
        use rustix::event::{PollFd, PollFlags};
        loop {
            let mut fds = [PollFd::new(&watched, PollFlags::RDHUP)];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) if !fds[0].revents().is_empty() => break,
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
        }
        let child = CURRENT_CHILD.load(std::sync::atomic::Ordering::Relaxed);
        if child > 0 {
            let _ = killpg(Pid::from_raw(child), Signal::SIGKILL);
        }
        std::process::exit(1);
    };
    let _ = std::thread::Builder::new()
        .name("poolscope-worker-link".into())
        .spawn(watch);
}

/// Run the initializer; `Some(reason)` when it failed. A command's output goes to the
/// worker's stderr (the pool's log), not to any task.
fn run_initializer(init: &Invocation) -> Option<String> {
    match init {
        Invocation::Builtin(builtin) => match builtin.run(&mut io::sink()) {
            0 => None,
            code => Some(format!("exit {code}")),
        },
        command => {
            let (program, args) = command.argv(&super::helper_program());
            match Command::new(&program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
            {
                Ok(s) if s.success() => None,
                Ok(s) => Some(format!("{} ended with {s}", command.display_line())),
                Err(e) => Some(format!("cannot start {program}: {e}")),
            }
        }
    }
}

/// Shared for the backend: a report decoder that keeps its partial frame.
#[derive(Default)]
pub struct ReportReader {
    buf: Vec<u8>,
    from: usize,
}

impl ReportReader {
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.from > 0 && self.from == self.buf.len() {
            self.buf.clear();
            self.from = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    pub fn next_report(&mut self) -> Result<Option<FromWorker>, String> {
        let result = decode_report(&self.buf, &mut self.from);
        if self.from > (1 << 20) {
            self.buf.drain(..self.from);
            self.from = 0;
        }
        result
    }
}

/// Frames for a list of reports, as a worker writes them.
#[cfg(test)]
fn frames_of(messages: &[FromWorker]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        encode_report(m, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_survive_being_split_anywhere() {
        let messages = vec![
            FromWorker::Hello {
                version: PROTOCOL_VERSION,
                pid: 7,
                host: Some("node1".into()),
                now_ns: Some(5),
                secret: None,
            },
            FromWorker::Output {
                task: 3,
                attempt: 1,
                stream: Stream::Stderr,
                bytes: b"line\n".to_vec(),
            },
            FromWorker::Started {
                task: 4,
                attempt: 2,
                at_ns: u64::MAX,
            },
            FromWorker::Finished {
                task: 3,
                attempt: 1,
                at_ns: 99,
                exit: WorkerExit::Signal(9),
            },
            FromWorker::Finished {
                task: u64::MAX,
                attempt: 7,
                at_ns: 1,
                exit: WorkerExit::Code(-1),
            },
            FromWorker::Retiring,
        ];
        let bytes = frames_of(&messages);
        for split in 0..bytes.len() {
            let mut reader = ReportReader::default();
            let mut got = Vec::new();
            for part in [&bytes[..split], &bytes[split..]] {
                reader.extend(part);
                while let Some(m) = reader.next_report().expect("valid") {
                    got.push(m);
                }
            }
            assert_eq!(got, messages, "split at {split}");
        }
    }

    #[test]
    fn a_corrupt_length_is_an_error_not_a_huge_allocation() {
        let mut reader = ReportReader::default();
        reader.extend(&u32::MAX.to_le_bytes());
        reader.extend(&[0; 8]);
        assert!(reader.next_report().is_err());
    }
}
