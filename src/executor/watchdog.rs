//! The orphan guard: a small process that outlives poolscope just long enough to end every
//! task poolscope leaves behind, however poolscope ends (even by SIGKILL).
//!
//! Every process group the executor starts is registered with it: [`GroupGuard`] mirrors
//! its set into the guard's pipe, 4 bytes per change (+pgid when a group starts, −pgid when
//! it is gone). A task runs the moment it is spawned, before its group can be sent: so a
//! spawn is announced first (0), and each task carries the guard's token in its
//! environment (`POOLSCOPE_GUARD`); a guard that finds a spawn announced and never
//! finished when poolscope is gone looks for the token in every process of this user and
//! ends their groups too. The guard is this binary in the hidden `__guard` role, one per
//! poolscope process, in a process group of its own and deaf to terminal signals. When its pipe
//! closes, poolscope is gone: it sends SIGTERM (and SIGCONT, for paused tasks) to every
//! group still registered, waits up to [`GRACE`] for them to go, SIGKILLs the rest, and
//! exits.
//!
//! Tasks are still started by poolscope itself with `posix_spawn`: `PR_SET_PDEATHSIG` would
//! need a `pre_exec` hook, and so a fork of a large parent, for every task.
//!
//! Not reachable: a process that left its task's group (`setsid` or `setpgid`, as a daemon
//! that double-forks does) is not in any group the guard knows.
//!
//! [`GroupGuard`]: super::backend::GroupGuard

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The hidden role: `poolscope __guard`.
pub const GUARD_ROLE: &str = "__guard";
/// What the guard writes once it runs, so poolscope knows a real guard listens.
const HELLO: &[u8; 8] = b"psguard1";
/// How often the guard reads its pipe.
const BATCH: Duration = Duration::from_millis(20);
/// The environment variable each task carries: this guard's token.
pub const TOKEN_VAR: &str = "POOLSCOPE_GUARD";
/// Records besides ±pgid: a spawn is about to start; the one announced failed.
const SPAWNING: i32 = 0;
const SPAWN_FAILED: i32 = i32::MIN;
/// How long tasks get to end on SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(1);

/// The write end of the running guard's pipe.
pub struct Watchdog {
    pipe: Mutex<File>,
    /// What tasks carry in [`TOKEN_VAR`].
    token: String,
    /// A send failed (the guard is gone, or never ran): said once.
    gone: std::sync::atomic::AtomicBool,
}

static SHARED: OnceLock<Option<Watchdog>> = OnceLock::new();

/// The process's guard, started on first use with `helper` (this binary). `None` when it
/// cannot start (a test binary as helper): tasks are then ended only by a living
/// poolscope, and a warning says so once.
pub fn shared(helper: &Path) -> Option<&'static Watchdog> {
    SHARED
        .get_or_init(|| match Watchdog::start(helper) {
            Ok(dog) => Some(dog),
            Err(e) => {
                log::warn!(
                    "no orphan guard ({e}): if poolscope is killed, its tasks are not ended"
                );
                None
            }
        })
        .as_ref()
}

impl Watchdog {
    fn start(helper: &Path) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        // Only poolscope itself knows the `__guard` role. Any other binary (a test or a
        // bench as its own helper) would run its main again, start an executor, and so a
        // guard of its own: a fork bomb.
        let is_poolscope = helper
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("poolscope"));
        if !is_poolscope {
            return Err(io::Error::other(format!(
                "{} is not poolscope, so it cannot be the guard",
                helper.display()
            )));
        }
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        // Started before any task (a poolscope killed at once still has its guard), but
        // nobody waits for it to run: what is sent meanwhile waits in its pipe (16 384
        // records), and it reads them once it runs, even if poolscope is gone by then
        // (the pipe's end comes after them). Whether it answers is checked aside.
        let token = format!("{}.{}", std::process::id(), next_token());
        let mut child = Command::new(helper)
            .arg(GUARD_ROLE)
            .arg(&token)
            .stdin(Stdio::from(read))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let hello = child.stdout.take();
        let helper = helper.to_owned();
        let check = move || {
            if !hello.is_some_and(answers) {
                log::warn!(
                    "no orphan guard ({} does not answer as one): if poolscope is killed, \
                     its tasks are not ended",
                    helper.display()
                );
                let _ = child.kill();
                let _ = child.wait();
            }
            // A guard that answered is not waited for: it ends when this process does.
        };
        // No thread to spare (`ulimit -u`): the guard goes unchecked.
        let _ = std::thread::Builder::new()
            .name("poolscope-guard".into())
            .spawn(check);
        Ok(Self {
            pipe: Mutex::new(File::from(write)),
            token,
            gone: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn send(&self, record: i32) {
        let mut pipe = self.pipe.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = pipe.write_all(&record.to_le_bytes())
            && !self.gone.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            log::warn!(
                "the orphan guard is gone ({e}): if poolscope is killed, its tasks are not ended"
            );
        }
    }

    /// A task's process group started.
    pub fn track(&self, pgid: i32) {
        self.send(pgid);
    }

    /// A task is about to be spawned (its group follows with [`Self::track`], or
    /// [`Self::spawn_failed`]).
    pub fn spawning(&self) {
        self.send(SPAWNING);
    }

    pub fn spawn_failed(&self) {
        self.send(SPAWN_FAILED);
    }

    /// What every task carries in [`TOKEN_VAR`].
    pub fn token(&self) -> &str {
        &self.token
    }

    /// It is gone (its leader reaped and the group killed or empty).
    pub fn untrack(&self, pgid: i32) {
        self.send(-pgid);
    }
}

/// Whether the guard wrote its hello within a couple of seconds (a helper that is not
/// poolscope may say something else, or nothing).
fn answers(mut out: std::process::ChildStdout) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut hello = [0u8; HELLO.len()];
    let mut got = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while got < hello.len() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let wait = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 2,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&out, PollFlags::IN)];
        if rustix::event::poll(&mut fds, Some(&wait)).unwrap_or(0) == 0 {
            return false;
        }
        match out.read(&mut hello[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    &hello == HELLO
}

/// A number no other guard of this process has (with its PID, the token).
fn next_token() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The guard's own main: keep the set of live groups until the pipe closes, then end
/// them (and, if a spawn was cut short, every process that carries `token`).
pub fn main(token: Option<&str>) -> u8 {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    // It ends when poolscope does, never on a terminal's or a `pkill`'s signal first:
    // these signals are caught (and never read), which leaves them without effect.
    let Ok(_caught) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
    else {
        return 1;
    };
    // `pkill -x poolscope` (a user ending poolscope) must not hit the guard first.
    let _ = nix::sys::prctl::set_name(c"poolscope-guard");
    let mut out = io::stdout();
    if out.write_all(HELLO).and_then(|()| out.flush()).is_err() {
        return 1;
    }
    let mut groups = HashSet::new();
    // Spawns announced and not yet followed by their group (or their failure).
    let mut spawning = 0u32;
    let mut input = io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut held = 0;
    loop {
        match input.read(&mut buf[held..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => held += n,
        }
        let whole = held - held % 4;
        for record in buf[..whole].chunks_exact(4) {
            let pgid = i32::from_le_bytes([record[0], record[1], record[2], record[3]]);
            match pgid {
                SPAWNING => spawning += 1,
                SPAWN_FAILED => spawning = spawning.saturating_sub(1),
                pgid if pgid > 0 => {
                    spawning = spawning.saturating_sub(1);
                    groups.insert(pgid);
                }
                pgid => {
                    groups.remove(&-pgid);
                }
            }
        }
        buf.copy_within(whole..held, 0);
        held -= whole;
        // Read in batches: a wake-up per task start would cost poolscope's dispatch
        // about 8% on 2 cores; the pipe holds 16 384 records meanwhile, and poolscope's
        // end is noticed at most this much later.
        std::thread::sleep(BATCH);
    }
    if spawning > 0
        && let Some(token) = token
    {
        // Poolscope died between a spawn and its group's record: find the task by its
        // token (it may have been running for a moment already).
        groups.extend(carrying(token));
    }
    end_groups(groups.into_iter().collect(), GRACE);
    0
}

/// The process groups of every process whose environment has `POOLSCOPE_GUARD=token`.
fn carrying(token: &str) -> Vec<i32> {
    let wanted = format!("{TOKEN_VAR}={token}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|&b| b == 0)
            .any(|var| var == wanted.as_bytes())
            && let Ok(pgid) = nix::unistd::getpgid(Some(Pid::from_raw(pid)))
        {
            found.push(pgid.as_raw());
        }
    }
    found
}

/// SIGTERM every group, wait up to `grace` for them to empty, SIGKILL what is left.
fn end_groups(mut groups: Vec<i32>, grace: Duration) {
    let send = |pgid: i32, signal: Option<Signal>| killpg(Pid::from_raw(pgid), signal).is_ok();
    groups.retain(|&g| send(g, Some(Signal::SIGTERM)));
    for &g in &groups {
        send(g, Some(Signal::SIGCONT));
    }
    let until = Instant::now() + grace;
    while !groups.is_empty() && Instant::now() < until {
        // Polling is fine here: this runs once, after poolscope is gone.
        std::thread::sleep(Duration::from_millis(20));
        groups.retain(|&g| send(g, None));
    }
    for g in groups {
        send(g, Some(Signal::SIGKILL));
    }
}
