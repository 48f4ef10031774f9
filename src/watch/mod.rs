//! Watching a real Python program: `poolscope watch -- python3 script.py`.
//!
//! The program runs unchanged, with a small shim loaded through `PYTHONPATH` +
//! `sitecustomize` (embedded here, written to the run's folder). The shim reports what
//! the program's `multiprocessing.Pool`, `Process` and `ProcessPoolExecutor` do over a
//! Unix socket, one JSON line per report, with `time.monotonic_ns()` stamps (the clock
//! of `Instant`). Those reports become the same [`Event`]s an executor sends, so the
//! record, the timeline and every export work for a watched run as for any other.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::executor::event::WorkerChange;
use crate::executor::sink::EventSink;
use crate::executor::task::{Invocation, TaskMap};
use crate::executor::worker::monotonic_ns;
use crate::executor::{EventKind, Events, Outcome, Stream, TaskId, TaskSpec, Waker};

const SHIM: &str = include_str!("../../assets/shim/poolscope_shim.py");
const SITECUSTOMIZE: &str = include_str!("../../assets/shim/sitecustomize.py");

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("nothing to run: give the program after --, e.g. poolscope watch -- python3 script.py")]
    NoProgram,
    #[error("cannot prepare {path}: {source}")]
    Setup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Start {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot start the watch's {what} thread: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
}

/// A watched program, running.
pub struct Watch {
    child_pid: u32,
    /// The shim reported from inside the program (it loaded).
    seen_inside: Arc<AtomicBool>,
    done: Receiver<i32>,
    exit: Option<i32>,
    dir: PathBuf,
}

impl Watch {
    /// The program's PID.
    pub fn pid(&self) -> u32 {
        self.child_pid
    }

    /// Its exit status once it has ended (128 + N for a signal, as a shell says).
    pub fn exit_code(&mut self) -> Option<i32> {
        if self.exit.is_none() {
            self.exit = self.done.try_recv().ok();
        }
        self.exit
    }

    /// Wait for the program's exit status, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        if self.exit.is_none() {
            self.exit = self.done.recv_timeout(timeout).ok();
        }
        self.exit
    }

    /// Whether anything inside the program was seen: false when the shim could not load
    /// (`python -I` or `-S`, Python before 3.8, or not a Python program).
    pub fn saw_inside(&self) -> bool {
        self.seen_inside.load(Ordering::Acquire)
    }

    /// Where the shim and the socket live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ask the program to stop: SIGTERM to its process group (its pool's workers too,
    /// as Ctrl-C on a terminal reaches them all).
    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// `signal` to the program's process group (the program and what it started).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::killpg(self.group(), signal);
    }

    /// The program's process group: its own, led by it.
    pub fn group(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child_pid as i32)
    }
}

impl Drop for Watch {
    /// The shim and the socket go with the watch (a program still running goes on
    /// unobserved).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The terminal given to a watched program's process group (as a shell gives it to a
/// job), so it reads its keyboard and Ctrl-C reaches it; taken back when dropped.
pub struct Foreground {
    own: nix::unistd::Pid,
}

impl Foreground {
    /// Give the terminal on stdin to `group`, if stdin is a terminal whose foreground is
    /// poolscope's own group (not when poolscope runs in the background or a pipe).
    pub fn give_to(group: nix::unistd::Pid) -> Option<Self> {
        let stdin = std::io::stdin();
        let own = nix::unistd::getpgrp();
        if nix::unistd::tcgetpgrp(&stdin).ok()? != own {
            return None;
        }
        nix::unistd::tcsetpgrp(&stdin, group).ok()?;
        // A read before the terminal was its own stopped it (SIGTTIN): go on.
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGCONT);
        Some(Self { own })
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
        // From the background, taking the terminal back raises SIGTTOU unless blocked.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut before = SigSet::empty();
        if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut before)).is_ok() {
            let _ = nix::unistd::tcsetpgrp(std::io::stdin(), self.own);
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
        }
    }
}

/// Run `argv` (a Python program) watched; events describe its pools. `dir` is a fresh
/// folder for the shim and the socket.
pub fn start(
    argv: &[OsString],
    dir: &Path,
    waker: Option<Waker>,
) -> Result<(Watch, Events), WatchError> {
    start_with(argv, dir, waker, false)
}

/// [`start`]; with `capture_main`, the program's own stdout and stderr (and what its
/// children print there) are not the terminal's: they are the output of a task of
/// their own, task 0, "main", which lasts as long as the program (for a window, which
/// has no terminal to show them in).
pub fn start_with(
    argv: &[OsString],
    dir: &Path,
    waker: Option<Waker>,
    capture_main: bool,
) -> Result<(Watch, Events), WatchError> {
    let (program, program_args) = argv.split_first().ok_or(WatchError::NoProgram)?;
    let (socket, listener, python_path) = prepare(dir)?;
    let start = Instant::now();
    let base_ns = monotonic_ns();
    let thread_error = |what| move |source| WatchError::Thread { what, source };
    // The threads that need no program first: where the machine refuses a thread,
    // nothing has been started yet.
    let (sink, events) = EventSink::new(start, waker, 32 * 1024 * 1024);
    let (tx, rx) = mpsc::channel::<Msg>();
    let exited = Arc::new(AtomicBool::new(false));
    let seen_inside = Arc::new(AtomicBool::new(false));
    let syncs = Arc::new(Syncs::default());
    let accept_syncs = Arc::clone(&syncs);
    let mut collector = Collector::new(sink, start, base_ns, syncs);
    collector.seen_inside = Arc::clone(&seen_inside);
    thread::Builder::new()
        .name("poolscope-watch".into())
        .spawn(move || collector.run(&rx))
        .map_err(thread_error("collector"))?;
    let accept_tx = tx.clone();
    let accept_exited = Arc::clone(&exited);
    // The program's end wakes the accept thread at once (its poll would otherwise
    // notice only at its next timeout, a wait added to every watched run).
    let (exit_waker, exit_woken) = UnixStream::pair().map_err(|e| WatchError::Setup {
        path: socket.clone(),
        source: e,
    })?;
    thread::Builder::new()
        .name("poolscope-watch-accept".into())
        .spawn(move || {
            accept(
                &listener,
                &exit_woken,
                &accept_tx,
                &accept_syncs,
                &accept_exited,
            );
        })
        .map_err(|e| {
            // The collector ends once every sender is gone.
            exited.store(true, Ordering::Release);
            thread_error("accept")(e)
        })?;
    let stop_accepting = |exited: &AtomicBool| exited.store(true, Ordering::Release);
    let mut command = Command::new(program);
    // A group of its own: a signal to poolscope is passed on to the program and all it
    // started, and the orphan guard can end them all if poolscope is killed.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .args(program_args)
        .env("PYTHONPATH", python_path)
        .env("POOLSCOPE_WATCH", &socket);
    if capture_main {
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    }
    let mut child: Child = match command.spawn() {
        Ok(child) => child,
        Err(source) => {
            stop_accepting(&exited);
            return Err(WatchError::Start {
                program: program.to_string_lossy().into_owned(),
                source,
            });
        }
    };
    let child_pid = child.id();
    if capture_main {
        capture_main_output(&mut child, argv, &tx);
    }
    let done = match wait_for(child, Arc::clone(&exited), exit_waker, tx) {
        Ok(done) => done,
        Err(e) => {
            // Nobody would wait for the program: it does not run unwatched.
            let pid = nix::unistd::Pid::from_raw(child_pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            stop_accepting(&exited);
            return Err(WatchError::Thread {
                what: "wait",
                source: e,
            });
        }
    };
    Ok((
        Watch {
            child_pid,
            seen_inside,
            done,
            exit: None,
            dir: dir.to_owned(),
        },
        events,
    ))
}

/// A thread that waits for the watched program and reports its exit status (as a
/// shell does: 128 + the signal that ended it).
fn wait_for(
    mut child: Child,
    exited: Arc<AtomicBool>,
    exit_waker: UnixStream,
    exit_tx: mpsc::Sender<Msg>,
) -> std::io::Result<Receiver<i32>> {
    let (done_tx, done) = mpsc::channel();
    thread::Builder::new()
        .name("poolscope-watch-wait".into())
        .spawn(move || {
            use std::os::unix::process::ExitStatusExt;
            let code = match child.wait() {
                Ok(status) => status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(1),
                Err(_) => 1,
            };
            exited.store(true, Ordering::Release);
            // Its end of the pair closed: the accept thread's poll returns now.
            drop(exit_waker);
            let _ = exit_tx.send(Msg::Exited(code));
            let _ = done_tx.send(code);
        })?;
    Ok(done)
}

/// One process's connection, numbered in order of arrival.
type Conn = usize;

enum Msg {
    /// A process connected.
    Connected,
    /// The program has exited and every connection made is accepted.
    AcceptDone,
    Report(Box<Report>),
    Disconnected,
    Exited(i32),
    /// The program runs as task 0 (its output is captured): its PID and command line.
    MainStarted(u32, String),
    MainOutput(Stream, Vec<u8>),
    /// One of the program's output pipes is closed.
    MainClosed,
}

/// The watched program itself, as task 0, when its output is captured.
const MAIN_TASK: u64 = 0;
/// After the program exits, its output pipes are read this long at most (a child it
/// left behind may hold them open).
const MAIN_DRAIN: Duration = Duration::from_secs(1);

/// Task 0 while its output pipes are open.
struct MainTask {
    open_pipes: u8,
    exited_at: Option<(Instant, Duration)>,
}

/// Accepts every process's connection. Once the program has exited, the connections
/// already made (a worker that reported just before it ended) are still taken, then
/// [`Msg::AcceptDone`] says no more will come.
fn accept(
    listener: &UnixListener,
    exit_woken: &UnixStream,
    tx: &Sender<Msg>,
    syncs: &Arc<Syncs>,
    exited: &AtomicBool,
) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    if let Err(e) = listener.set_nonblocking(true) {
        log::error!("watch: {e}");
    }
    let mut conns: Conn = 0;
    loop {
        let over = exited.load(Ordering::Acquire);
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                conns += 1;
                let conn = conns;
                if tx.send(Msg::Connected).is_err() {
                    return;
                }
                if let Ok(writer) = stream.try_clone() {
                    syncs.connected(conn, writer);
                }
                let tx = tx.clone();
                let syncs = Arc::clone(syncs);
                let spawned = thread::Builder::new()
                    .name("poolscope-watch-read".into())
                    .spawn(move || read_reports(stream, conn, &tx, &syncs));
                if spawned.is_err() {
                    log::error!("watch: cannot start a reader thread");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if over {
                    let _ = tx.send(Msg::AcceptDone);
                    return;
                }
                let mut fds = [
                    PollFd::new(listener, PollFlags::IN),
                    PollFd::new(exit_woken, PollFlags::IN),
                ];
                let wait = Timespec {
                    tv_sec: 0,
                    tv_nsec: 50_000_000,
                };
                let _ = rustix::event::poll(&mut fds, Some(&wait));
            }
            Err(e) => log::warn!("watch: accept: {e}"),
        }
    }
}

/// The watch's folder (0700) with the shim that reports from inside the program, its
/// socket, and the `PYTHONPATH` that loads the shim.
fn prepare(dir: &Path) -> Result<(PathBuf, UnixListener, OsString), WatchError> {
    let setup = |path: &Path, e| WatchError::Setup {
        path: path.to_owned(),
        source: e,
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| setup(dir, e))?;
    }
    for (name, text) in [
        ("poolscope_shim.py", SHIM),
        ("sitecustomize.py", SITECUSTOMIZE),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| setup(&path, e))?;
    }
    let socket = dir.join(SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|e| setup(&socket, e))?;

    let python_path = match std::env::var_os("PYTHONPATH") {
        Some(old) if !old.is_empty() => {
            let mut p = dir.as_os_str().to_owned();
            p.push(":");
            p.push(old);
            p
        }
        _ => dir.as_os_str().to_owned(),
    };
    Ok((socket, listener, python_path))
}

/// The program is task 0: its command line, and its stdout and stderr read as they come.
fn capture_main_output(child: &mut Child, argv: &[OsString], tx: &Sender<Msg>) {
    // `sh -c LINE` (what a window runs) is named by its line.
    let name = match argv {
        [_, c, line] if c == "-c" => line.to_string_lossy().into_owned(),
        _ => argv
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let _ = tx.send(Msg::MainStarted(child.id(), name));
    let streams = [
        child
            .stdout
            .take()
            .map(|s| (Stream::Stdout, Box::new(s) as Box<dyn std::io::Read + Send>)),
        child
            .stderr
            .take()
            .map(|s| (Stream::Stderr, Box::new(s) as Box<dyn std::io::Read + Send>)),
    ];
    for (stream, reader) in streams.into_iter().flatten() {
        let main_tx = tx.clone();
        let spawned = thread::Builder::new()
            .name("poolscope-watch-main".into())
            .spawn(move || read_main(reader, stream, &main_tx));
        if let Err(e) = spawned {
            // Its pipe closes with the thread: the program sees a broken pipe, and
            // its task says why nothing more came.
            log::error!("watch: cannot read the program's {stream:?}: {e}");
            let _ = tx.send(Msg::MainClosed);
        }
    }
}

/// The watched program's own output, as it comes, for task 0.
fn read_main(mut reader: Box<dyn std::io::Read + Send>, stream: Stream, tx: &Sender<Msg>) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if tx.send(Msg::MainOutput(stream, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = tx.send(Msg::MainClosed);
}

fn read_reports(stream: UnixStream, conn: Conn, tx: &Sender<Msg>, syncs: &Syncs) {
    for line in BufReader::with_capacity(256 * 1024, stream).lines() {
        let Ok(line) = line else { break };
        // The flush handshake is answered here, as soon as a worker's reports are read,
        // not once the collector (which may be far behind) has made them events: a
        // program terminating its pool waits for its workers' sockets, not for poolscope.
        if line.starts_with(r#"{"kind":"listening""#) {
            syncs.listening(conn);
            continue;
        }
        if line.starts_with(r#"{"kind":"sync""#) {
            syncs.start(conn);
            continue;
        }
        if line.starts_with(r#"{"kind":"flushed""#) {
            syncs.synced(conn);
            continue;
        }
        match serde_json::from_str::<Report>(&line) {
            Ok(report) => {
                if tx.send(Msg::Report(Box::new(report))).is_err() {
                    return;
                }
            }
            Err(e) => log::warn!("watch: a report that does not parse ({e}): {line}"),
        }
    }
    syncs.disconnected(conn);
    let _ = tx.send(Msg::Disconnected);
}

/// The flush handshake: a process about to terminate its pool asks ("sync") that every
/// listening worker send what it holds ("F"); each answers ("flushed") after its last
/// report, and the asker is answered ("K") once all have, or after [`SYNC_TIMEOUT`].
#[derive(Default)]
struct Syncs(std::sync::Mutex<SyncState>);

#[derive(Default)]
struct SyncState {
    /// Each connection's stream (to ask it to flush), and those that listen for it.
    writers: HashMap<Conn, UnixStream>,
    listening: std::collections::HashSet<Conn>,
    sync: Option<Sync>,
}

impl Syncs {
    fn state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn connected(&self, conn: Conn, writer: UnixStream) {
        self.state().writers.insert(conn, writer);
    }

    fn listening(&self, conn: Conn) {
        self.state().listening.insert(conn);
    }

    fn disconnected(&self, conn: Conn) {
        let mut state = self.state();
        state.writers.remove(&conn);
        state.listening.remove(&conn);
        state.synced(conn);
    }

    fn start(&self, asked_by: Conn) {
        use std::io::Write;
        let mut state = self.state();
        state.end();
        let mut waiting = std::collections::HashSet::new();
        for &conn in &state.listening {
            if conn != asked_by
                && let Some(mut writer) = state.writers.get(&conn)
                && writer.write_all(b"F").is_ok()
            {
                waiting.insert(conn);
            }
        }
        state.sync = Some(Sync {
            asked_by,
            waiting,
            until: Instant::now() + SYNC_TIMEOUT,
        });
        state.synced(0);
    }

    fn synced(&self, conn: Conn) {
        self.state().synced(conn);
    }

    /// A sync that waited [`SYNC_TIMEOUT`] for a worker that does not answer ends.
    fn expire(&self) {
        let mut state = self.state();
        if state
            .sync
            .as_ref()
            .is_some_and(|s| s.until <= Instant::now())
        {
            state.end();
        }
    }
}

impl SyncState {
    fn synced(&mut self, conn: Conn) {
        if let Some(sync) = &mut self.sync {
            sync.waiting.remove(&conn);
            if sync.waiting.is_empty() {
                self.end();
            }
        }
    }

    fn end(&mut self) {
        use std::io::Write;
        if let Some(sync) = self.sync.take()
            && let Some(mut writer) = self.writers.get(&sync.asked_by)
        {
            let _ = writer.write_all(b"K");
        }
    }
}

/// One line from the shim.
#[derive(Debug, Default, Deserialize)]
struct Report {
    kind: String,
    pid: u32,
    t: u64,
    #[serde(default)]
    task: Option<u64>,
    #[serde(default)]
    pool: Option<u64>,
    #[serde(default)]
    size: Option<usize>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    func: Option<String>,
    #[serde(default)]
    args: Option<serde_json::Value>,
    #[serde(default)]
    first: Option<u64>,
    #[serde(default)]
    chunksize: Option<usize>,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    child: Option<u32>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    exitcode: Option<i32>,
    /// `ran`: tasks that ran, as (task, start, end).
    #[serde(default)]
    tasks: Vec<(u64, u64, u64)>,
    /// `start` sent late (a task that raised): when it really started.
    #[serde(default)]
    t0: Option<u64>,
    /// `run`: when each task started and, last, when the last ended (each ends as the
    /// next starts), as the hex of little-endian u64 nanoseconds: a worker makes it at C
    /// speed, where a JSON list of 12 500 numbers cost it a millisecond per chunk.
    #[serde(default)]
    stamps: Option<String>,
    /// `map`: how many tasks, and whether each item is an argument tuple (`starmap`).
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    star: bool,
    /// `pool`: its workers' PIDs, when they are known at its creation.
    #[serde(default)]
    workers: Vec<u32>,
}

/// Turns reports into events, in one thread.
struct Collector {
    sink: EventSink,
    /// The record's number of each task, by the number its process gave it: 1, 2, ... in
    /// the order they were queued (a nested pool's process numbers from PID x 2^32).
    numbers: TaskMap<u64>,
    next_number: u64,
    start: Instant,
    base_ns: u64,
    /// Lane (slot) of each process that ran something, in order of first appearance.
    slots: HashMap<u32, usize>,
    /// Lanes set aside for a pool's workers when it was created, so that each pool's
    /// workers sit together on the timeline; and the next lane not given out.
    reserved: HashMap<u32, usize>,
    next_slot: usize,
    /// Every task submitted so far, and where it is.
    tasks: TaskMap<Life>,
    /// Child processes of `Process` objects: their task.
    processes: HashMap<u32, u64>,
    next_process_task: u64,
    /// Reports that came before their task's submit.
    early: TaskMap<Vec<Report>>,
    connections: usize,
    syncs: Arc<Syncs>,
    accepting: bool,
    seen_inside: Arc<AtomicBool>,
    exit: Option<i32>,
    pool_size: usize,
    main: Option<MainTask>,
}

/// Where a watched task is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Life {
    Queued,
    Running,
    Done,
}

/// A process waits for the pool's workers to flush before it terminates them.
struct Sync {
    asked_by: Conn,
    waiting: std::collections::HashSet<Conn>,
    until: Instant,
}

/// How long a sync waits for a worker that does not answer.
const SYNC_TIMEOUT: Duration = Duration::from_millis(200);

/// Tasks of `Process` objects are numbered from here (pool tasks count from 1).
const PROCESS_TASKS: u64 = 1 << 40;

impl Collector {
    fn new(sink: EventSink, start: Instant, base_ns: u64, syncs: Arc<Syncs>) -> Self {
        Self {
            sink,
            start,
            base_ns,
            slots: HashMap::new(),
            reserved: HashMap::new(),
            next_slot: 0,
            tasks: TaskMap::default(),
            processes: HashMap::new(),
            next_process_task: PROCESS_TASKS,
            early: TaskMap::default(),
            numbers: TaskMap::default(),
            next_number: 1,
            connections: 0,
            syncs,
            accepting: true,
            seen_inside: Arc::new(AtomicBool::new(false)),
            exit: None,
            pool_size: 0,
            main: None,
        }
    }

    fn known(&self, task: u64) -> bool {
        self.tasks.contains_key(&TaskId(task))
    }

    fn is_running(&self, task: u64) -> bool {
        self.tasks.get(&TaskId(task)) == Some(&Life::Running)
    }

    /// Whether `task` was running; it is done now.
    fn stop_running(&mut self, task: u64) -> bool {
        match self.tasks.get_mut(&TaskId(task)) {
            Some(life) if *life == Life::Running => {
                *life = Life::Done;
                true
            }
            _ => false,
        }
    }

    /// The record's number of a task its process numbered `task` (the program itself,
    /// task 0, is 0).
    fn number(&self, task: u64) -> TaskId {
        TaskId(self.numbers.get(&TaskId(task)).copied().unwrap_or(task))
    }

    fn at(&self, t: u64) -> Duration {
        Duration::from_nanos(t.saturating_sub(self.base_ns))
    }

    fn run(mut self, rx: &Receiver<Msg>) {
        self.sink.send_at(
            Duration::ZERO,
            EventKind::PoolStarted {
                wall_clock: crate::executor::sink::WallAnchor::get().wall_of(self.start),
                size: 1,
            },
        );
        self.sink.flush();
        loop {
            let msg = match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(msg) => msg,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.syncs.expire();
                    self.sink.flush_if_due();
                    if self.finished() {
                        break;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            match msg {
                Msg::Connected => self.connections += 1,
                Msg::AcceptDone => self.accepting = false,
                Msg::Disconnected => {
                    self.connections = self.connections.saturating_sub(1);
                }
                Msg::Exited(code) => {
                    self.exit = Some(code);
                    let at = self.start.elapsed();
                    if let Some(main) = &mut self.main {
                        main.exited_at = Some((Instant::now(), at));
                    }
                }
                Msg::MainStarted(pid, name) => self.main_started(pid, name),
                Msg::MainOutput(stream, bytes) => {
                    let at = self.start.elapsed();
                    self.sink.send_at(
                        at,
                        EventKind::Output {
                            task: TaskId(MAIN_TASK),
                            attempt: 1,
                            stream,
                            bytes,
                        },
                    );
                }
                Msg::MainClosed => {
                    if let Some(main) = &mut self.main {
                        main.open_pipes = main.open_pipes.saturating_sub(1);
                    }
                }
                Msg::Report(report) => self.report(*report),
            }
            self.syncs.expire();
            self.sink.flush_if_due();
            if self.finished() {
                break;
            }
        }
        self.end();
    }

    /// The program has exited and every process that reported has closed its socket.
    fn finished(&self) -> bool {
        let main_read = self.main.as_ref().is_none_or(|m| {
            m.open_pipes == 0
                || m.exited_at
                    .is_some_and(|(when, _)| when.elapsed() >= MAIN_DRAIN)
        });
        self.exit.is_some() && !self.accepting && self.connections == 0 && main_read
    }

    /// The program itself, task 0, on a lane of its own (not one of a pool's workers).
    fn main_started(&mut self, pid: u32, name: String) {
        let spec = TaskSpec {
            name: format!("main: {name}"),
            ..TaskSpec::shell(name)
        };
        self.tasks.insert(TaskId(MAIN_TASK), Life::Running);
        self.sink.send_at(
            Duration::ZERO,
            EventKind::Queued {
                task: TaskId(MAIN_TASK),
                spec: Arc::new(spec),
            },
        );
        let slot = self.new_slot();
        self.slots.insert(pid, slot);
        self.sink.send_at(
            Duration::ZERO,
            EventKind::Started {
                task: TaskId(MAIN_TASK),
                attempt: 1,
                slot,
                pid: Some(pid),
                host: None,
            },
        );
        self.main = Some(MainTask {
            open_pipes: 2,
            exited_at: None,
        });
    }

    fn slot_of(&mut self, pid: u32, at: Duration) -> usize {
        if let Some(&slot) = self.slots.get(&pid) {
            return slot;
        }
        let slot = self
            .reserved
            .remove(&pid)
            .unwrap_or_else(|| self.new_slot());
        self.slots.insert(pid, slot);
        if slot >= self.pool_size {
            self.pool_size = slot + 1;
            self.sink.send_at(at, EventKind::Resized { size: slot + 1 });
        }
        self.sink.send_at_exactly(
            at,
            EventKind::Worker {
                slot,
                pid,
                change: WorkerChange::Started,
            },
        );
        slot
    }

    fn new_slot(&mut self) -> usize {
        self.next_slot += 1;
        self.next_slot - 1
    }

    fn queue(&mut self, task: u64, name: String, func: &str, args: String, at: Duration) {
        self.queue_quietly(task, name, func, args, at);
        self.replay_early(task);
    }

    /// Queue a task without replaying its early reports (a map queues all its tasks
    /// first: a chunk's report covers several).
    fn queue_quietly(&mut self, task: u64, name: String, func: &str, args: String, at: Duration) {
        // Built directly: `TaskSpec::program` would quote a display line, and a map
        // may queue 100 000 of these.
        let spec = TaskSpec {
            name,
            invocation: Invocation::Program {
                program: func.to_owned(),
                args: vec![args],
            },
            ..TaskSpec::shell(String::new())
        };
        self.queue_spec(task, spec, at);
    }

    /// Queue `spec` as the task its process numbered `task`.
    fn queue_spec(&mut self, task: u64, spec: TaskSpec, at: Duration) {
        self.tasks.insert(TaskId(task), Life::Queued);
        // Kept only where it differs: in a program with one pool-using process (most
        // programs) every number is its own, and the map stays empty.
        if self.next_number != task {
            self.numbers.insert(TaskId(task), self.next_number);
        }
        self.next_number += 1;
        self.sink.send_at(
            at,
            EventKind::Queued {
                task: self.number(task),
                spec: Arc::new(spec),
            },
        );
    }

    /// Reports about `task` that came before it was submitted.
    fn replay_early(&mut self, task: u64) {
        if let Some(early) = self.early.remove(&TaskId(task)) {
            for report in early {
                self.report(report);
            }
        }
    }

    fn report(&mut self, r: Report) {
        // Processes report on their own sockets: a worker's start can arrive before the
        // main process's submit. Hold it until the task is known.
        let about = match r.kind.as_str() {
            "start" | "output" | "end" => r.task,
            "run" => r.first,
            _ => None,
        };
        if let Some(task) = about
            && !self.known(task)
        {
            self.early.entry(TaskId(task)).or_default().push(r);
            return;
        }
        match r.kind.as_str() {
            "ran" => return self.ran(&r),
            "run" => return self.run_of(&r),
            _ => {}
        }
        let at = self.at(r.t0.unwrap_or(r.t));
        match r.kind.as_str() {
            "pool" => {
                for &pid in &r.workers {
                    if !self.slots.contains_key(&pid) {
                        let slot = self.new_slot();
                        self.reserved.insert(pid, slot);
                    }
                }
                let method = r.method.as_deref().unwrap_or("default");
                let label = format!(
                    "pool {} created: {} workers ({method})",
                    r.pool.unwrap_or(0),
                    r.size.unwrap_or(0)
                );
                self.marker(at, label);
            }
            "submit" => {
                let (Some(task), Some(func)) = (r.task, r.func.as_deref()) else {
                    return;
                };
                let args = arg_text(r.args.as_ref());
                let name = format!("{func}{}", call_args(&args));
                self.queue(task, name, func, args, at);
            }
            "map" => self.mapped(&r, at),
            "start" => {
                if let Some(task) = r.task
                    && !self.is_running(task)
                {
                    self.started(task, r.pid, at);
                }
            }
            "output" => {
                let (Some(task), Some(text)) = (r.task, r.text) else {
                    return;
                };
                // In a quick stream a task's start comes with its end: its output says
                // it runs.
                if !self.is_running(task) {
                    self.started(task, r.pid, at);
                }
                let stream = if r.stream.as_deref() == Some("stderr") {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                self.sink.send_at(
                    at,
                    EventKind::Output {
                        task: self.number(task),
                        attempt: 1,
                        stream,
                        bytes: text.into_bytes(),
                    },
                );
            }
            "end" => self.ended(&r, at),
            "marker" => {
                let label = r.label.unwrap_or_default();
                let label = match r.pool {
                    Some(pool) => format!("pool {pool}: {label}"),
                    None => label,
                };
                self.marker(at, label);
            }
            "process" => self.process(&r, at),
            "command" => self.command(&r, at),
            "hello" => self.seen_inside.store(true, Ordering::Release),
            "note" => {
                if let Some(text) = r.text {
                    log::warn!("{text}");
                }
            }
            _ => {}
        }
    }

    /// A map's tasks, submitted together, and its chunks.
    fn mapped(&mut self, r: &Report, at: Duration) {
        let (Some(first), Some(func), Some(n)) = (r.first, r.func.as_deref(), r.n) else {
            return;
        };
        // One short repr per item, separated by \x1f.
        let described = match &r.args {
            Some(serde_json::Value::String(text)) if n > 0 => text.split('\x1f').collect(),
            _ => Vec::new(),
        };
        for i in 0..n {
            let args = described.get(i).copied().unwrap_or("…");
            // A map item is one argument; a starmap item is the argument tuple.
            let name = if r.star {
                format!("{func}{}", call_args(args))
            } else {
                format!("{func}({args})")
            };
            self.queue_quietly(first + i as u64, name, func, args.to_owned(), at);
        }
        // The map's chunks: each went to one worker as a whole.
        let size = r.chunksize.unwrap_or(1).max(1);
        if size > 1 {
            for start in (0..n).step_by(size) {
                let len = size.min(n - start);
                self.sink.send_at(
                    at,
                    EventKind::Chunk {
                        first: self.number(first + start as u64),
                        len,
                    },
                );
            }
        }
        for i in 0..n {
            self.replay_early(first + i as u64);
        }
    }

    /// A chunk (or one imap item) that a worker ran: its tasks in order from `first`,
    /// each ending as the next starts. With `error`, the last one raised it (Python
    /// stops a chunk there).
    fn run_of(&mut self, r: &Report) {
        let (Some(first), Some(stamps)) = (r.first, r.stamps.as_deref().map(hex_u64s)) else {
            return;
        };
        let last = stamps.len().saturating_sub(2);
        for (i, pair) in stamps.windows(2).enumerate() {
            let task = first + i as u64;
            let (from, to) = (pair[0], pair[1]);
            if !self.is_running(task) {
                let at = self.at(from);
                self.started(task, r.pid, at);
            }
            if self.stop_running(task) {
                let at = self.at(to);
                match &r.error {
                    Some(error) if i == last => self.raised(task, error, at),
                    _ => self.finish(task, Outcome::Exited(0), at),
                }
            }
        }
    }

    /// Tasks that ran and returned, reported together: (task, start, end) each.
    fn ran(&mut self, r: &Report) {
        for &(task, from, to) in &r.tasks {
            if !self.known(task) {
                self.early.entry(TaskId(task)).or_default().push(Report {
                    kind: "ran".to_owned(),
                    pid: r.pid,
                    t: r.t,
                    tasks: vec![(task, from, to)],
                    ..Report::default()
                });
                continue;
            }
            if !self.is_running(task) {
                let at = self.at(from);
                self.started(task, r.pid, at);
            }
            if self.stop_running(task) {
                let at = self.at(to);
                self.finish(task, Outcome::Exited(0), at);
            }
        }
    }

    fn started(&mut self, task: u64, pid: u32, at: Duration) {
        let slot = self.slot_of(pid, at);
        self.tasks.insert(TaskId(task), Life::Running);
        self.sink.send_at(
            at,
            EventKind::Started {
                task: self.number(task),
                attempt: 1,
                slot,
                pid: Some(pid),
                host: None,
            },
        );
    }

    /// A task's end: returned, or raised (its exception goes to the task's console).
    fn ended(&mut self, r: &Report, at: Duration) {
        let Some(task) = r.task else { return };
        if !self.stop_running(task) {
            return;
        }
        if r.ok == Some(true) {
            self.finish(task, Outcome::Exited(0), at);
        } else {
            self.raised(task, r.error.as_deref().unwrap_or("exception"), at);
        }
    }

    /// A task that raised: its exception's type and message go to its console.
    fn raised(&mut self, task: u64, error: &str, at: Duration) {
        self.sink.send_at(
            at,
            EventKind::Output {
                task: self.number(task),
                attempt: 1,
                stream: Stream::Stderr,
                bytes: format!("raised {error}\n").into_bytes(),
            },
        );
        self.finish(task, Outcome::Exited(1), at);
    }

    /// A command the program started (`subprocess.run`, `call`, `check_output`,
    /// `Popen`): a task of its own on its PID's lane, from its start to the exit status
    /// the program read.
    fn command(&mut self, r: &Report, at: Duration) {
        let (Some(task), Some(child)) = (r.task, r.child) else {
            return;
        };
        if r.label.as_deref() == Some("start") {
            let argv: Vec<String> = match &r.args {
                Some(serde_json::Value::Array(words)) => words
                    .iter()
                    .map(|w| w.as_str().map_or_else(|| w.to_string(), str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            let Some((program, words)) = argv.split_first() else {
                return;
            };
            let spec = TaskSpec::program(program, words.iter().cloned());
            self.queue_spec(task, spec, at);
            self.replay_early(task);
            self.started(task, child, at);
        } else if self.stop_running(task) {
            self.finish(task, exit_outcome(r.exitcode), at);
        }
    }

    /// A `Process` object's `start()` or `join()`: its child is a task of its own.
    fn process(&mut self, r: &Report, at: Duration) {
        let Some(child) = r.child else { return };
        let label = r.label.clone().unwrap_or_default();
        if label == "start()" {
            let task = self.next_process_task;
            self.next_process_task += 1;
            let target = r.target.clone().unwrap_or_else(|| "Process".to_owned());
            self.queue(
                task,
                format!("Process({target})"),
                &target,
                String::new(),
                at,
            );
            self.processes.insert(child, task);
            self.started(task, child, at);
            self.marker(at, format!("Process {child}: start()"));
        } else {
            self.marker(at, format!("Process {child}: join()"));
            if let Some(task) = self.processes.remove(&child)
                && self.stop_running(task)
            {
                self.finish(task, exit_outcome(r.exitcode), at);
            }
        }
    }

    fn marker(&mut self, at: Duration, label: String) {
        self.sink.send_at_exactly(at, EventKind::Marker { label });
    }

    fn finish(&mut self, task: u64, outcome: Outcome, at: Duration) {
        self.sink.send_at(
            at,
            EventKind::Finished {
                task: self.number(task),
                attempt: 1,
                outcome,
                stdin_bytes: 0,
                will_retry: false,
            },
        );
    }

    /// The program is over: what never ran is cancelled, what never reported its end
    /// was lost with its process.
    fn end(mut self) {
        let now = self.start.elapsed();
        if let Some(main) = self.main.take()
            && self.stop_running(MAIN_TASK)
        {
            let code = self.exit.unwrap_or(-1);
            let outcome = if code > 128 {
                Outcome::Signaled(code - 128)
            } else {
                Outcome::Exited(code)
            };
            let at = main.exited_at.map_or(now, |(_, at)| at);
            self.finish(MAIN_TASK, outcome, at);
        }
        let mut never_ran = Vec::new();
        let mut unreported = Vec::new();
        for (&task, life) in &self.tasks {
            match life {
                Life::Queued => never_ran.push(task.0),
                Life::Running => unreported.push(task.0),
                Life::Done => {}
            }
        }
        never_ran.sort_unstable();
        unreported.sort_unstable();
        for task in unreported {
            self.finish(
                task,
                Outcome::WorkerLost("its process ended without reporting".to_owned()),
                now,
            );
        }
        for task in never_ran {
            let task = self.number(task);
            self.sink.send(EventKind::Cancelled { task });
        }
        self.sink.send(EventKind::Closed);
        if !self.seen_inside.load(Ordering::Acquire) {
            self.marker(
                now,
                "nothing inside the program was visible (the shim did not load)".to_owned(),
            );
        }
        let label = format!("program exited ({})", self.exit.unwrap_or(-1));
        self.marker(now, label);
        self.sink.send(EventKind::Drained);
        self.sink.flush();
    }
}

/// Little-endian u64s from their bytes' hex (what Python's `array("Q").tobytes().hex()`
/// gives); a damaged or short tail is left out.
fn hex_u64s(hex: &str) -> Vec<u64> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    hex.as_bytes()
        .chunks_exact(16)
        .map_while(|word| {
            let mut bytes = [0u8; 8];
            for (byte, pair) in bytes.iter_mut().zip(word.chunks_exact(2)) {
                *byte = digit(pair[0])? << 4 | digit(pair[1])?;
            }
            Some(u64::from_le_bytes(bytes))
        })
        .collect()
}

/// A submitted call's arguments as text: the shim sends a short repr.
fn arg_text(value: Option<&serde_json::Value>) -> String {
    match value {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// `(0,)` → `(0)`: a one-argument tuple reads as a call.
fn call_args(args: &str) -> String {
    match args.strip_suffix(",)") {
        Some(inner) if args.starts_with('(') => format!("{inner})"),
        _ if args.starts_with('(') => args.to_owned(),
        _ => format!("({args})"),
    }
}

/// A process's exit code as Python gives it (`Process.exitcode`, `Popen.returncode`:
/// minus the signal that ended it); none said is a clean exit.
fn exit_outcome(code: Option<i32>) -> Outcome {
    match code {
        Some(code) if code < 0 => Outcome::Signaled(-code),
        Some(code) => Outcome::Exited(code),
        None => Outcome::Exited(0),
    }
}

/// The socket a watch listens on, in its folder.
const SOCKET: &str = "watch.sock";

/// Longest socket path that binds on every Unix (`sun_path` is 104 to 108 bytes).
const SOCKET_PATH_MAX: usize = 100;

/// Where a watched program's shim and socket go: a fresh folder in `parent` (the run
/// root, or the run's own folder: only this user can enter them, and the socket accepts
/// reports from anyone who can reach it). Where the socket's path there would be too long
/// for a Unix socket, a fresh private folder in the temporary folder instead. Folders of
/// watches whose poolscope is gone are removed first.
pub fn folder_in(parent: &Path) -> std::io::Result<PathBuf> {
    let too_long = parent.join(folder_name()).join(SOCKET).as_os_str().len() > SOCKET_PATH_MAX;
    if too_long {
        return run_folder();
    }
    new_folder(parent)
}

/// [`folder_in`] the temporary folder.
pub fn run_folder() -> std::io::Result<PathBuf> {
    new_folder(&std::env::temp_dir())
}

/// A fresh 0700 folder for a watch in `parent`, once the stale ones there are gone.
fn new_folder(parent: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    sweep_stale_folders(parent);
    let dir = parent.join(folder_name());
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// `poolscope-watch-PID-STAMP`: the PID says whose it is when it is left behind.
fn folder_name() -> String {
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("poolscope-watch-{}-{stamp}", std::process::id())
}

/// Remove the folders of watches whose poolscope is gone (killed, it could not): this
/// user's `poolscope-watch-PID-*` whose PID runs no more.
fn sweep_stale_folders(temp: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    // /proc/self is owned by this process's user.
    let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("poolscope-watch-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        let mine = entry.metadata().is_ok_and(|m| m.uid() == me && m.is_dir());
        if gone && mine {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_from_their_hex() {
        // Python: array("Q", [1, 2**40 + 5]).tobytes().hex()
        assert_eq!(
            hex_u64s("01000000000000000500000000010000"),
            vec![1, (1 << 40) + 5]
        );
        assert_eq!(
            hex_u64s("0100000000000000zz"),
            vec![1],
            "a short tail is left out"
        );
        assert_eq!(hex_u64s("0100000000000000zz00000000000000"), vec![1]);
    }

    #[test]
    fn arguments_read_as_a_call() {
        assert_eq!(call_args("(0,)"), "(0)");
        assert_eq!(call_args("(1, 'a')"), "(1, 'a')");
        assert_eq!(call_args("x"), "(x)");
    }

    #[test]
    fn the_shim_is_embedded() {
        assert!(SHIM.contains("def install"));
        assert!(SITECUSTOMIZE.contains("poolscope_shim.install()"));
    }
}
