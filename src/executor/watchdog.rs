//! The orphan guard: a small process that outlives poolscope just long enough to end every
//! task poolscope leaves behind, however poolscope ends (even by SIGKILL).
//!
//! Every process group the executor starts is registered with it through memory they
//! share (a memfd, the guard's stdin): one counter per possible group id, raised when a
//! group starts and lowered when it is gone. A change costs no system call, never wakes
//! the guard, and never waits for it (a stopped guard cannot stall the pool). A task runs
//! the moment it is spawned, before its group can be registered: so a spawn is counted
//! first, and each task carries the guard's token in its environment (`POOLSCOPE_GUARD`);
//! a guard that finds a spawn counted and never finished when poolscope is gone looks for
//! the token in every process of this user and ends their groups too.
//!
//! The guard is this binary in the hidden `__guard` role, one per poolscope process, in a
//! process group of its own and deaf to terminal signals. Its stdout is a pipe whose
//! reading end poolscope holds for its whole life: when that end closes (poll reports an
//! error on ours), poolscope is gone. It then reads the table, sends SIGTERM (and SIGCONT,
//! for paused tasks) to every group still registered, waits up to [`GRACE`] for them to
//! go, SIGKILLs the rest, and exits.
//!
//! Tasks are still started by poolscope itself with `posix_spawn`: `PR_SET_PDEATHSIG` would
//! need a `pre_exec` hook, and so a fork of a large parent, for every task.
//!
//! Not reachable: a process that left its task's group (`setsid` or `setpgid`, as a daemon
//! that double-forks does) is not in any group the guard knows.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The hidden role: `poolscope __guard`.
pub const GUARD_ROLE: &str = "__guard";
/// What the guard writes once it runs, so poolscope knows a real guard listens.
const HELLO: &[u8; 8] = b"psguard2";
/// The environment variable each task carries: this guard's token.
pub const TOKEN_VAR: &str = "POOLSCOPE_GUARD";
/// How long tasks get to end on SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(1);
/// The shared table: a header (the count of unfinished spawns), then one counter per
/// group id up to the kernel's largest (`PID_MAX_LIMIT`). It is sparse: only the pages of
/// group ids in use ever take memory.
const HEADER: usize = 64;
const MAX_GROUP_ID: usize = 1 << 22;
const TABLE_LEN: usize = HEADER + MAX_GROUP_ID;

/// Poolscope's side of the running guard.
pub struct Watchdog {
    table: SharedTable,
    /// What tasks carry in [`TOKEN_VAR`].
    token: String,
    /// The reading end of the guard's stdout, open for this process's whole life: its
    /// closing is how the guard learns poolscope is gone.
    _alive: OwnedFd,
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
        let (table, memfd) = SharedTable::create()?;
        // Started before any task (a poolscope killed at once still has its guard), but
        // nobody waits for it to run: what is registered meanwhile is in the table, which
        // it reads once poolscope is gone, whenever it runs. Whether it answers is checked
        // aside.
        let token = format!("{}.{}", std::process::id(), next_token());
        let mut child = Command::new(helper)
            .arg(GUARD_ROLE)
            .arg(&token)
            .stdin(Stdio::from(memfd))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let alive = OwnedFd::from(
            child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("the guard has no stdout"))?,
        );
        let hello = alive.try_clone()?;
        let helper = helper.to_owned();
        let check = move || {
            if !answers(File::from(hello)) {
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
            table,
            token,
            _alive: alive,
        })
    }

    /// A task's process group started.
    pub fn track(&self, pgid: i32) {
        if let Some(count) = self.table.group(pgid) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// It is gone (its leader reaped and the group killed or empty).
    pub fn untrack(&self, pgid: i32) {
        if let Some(count) = self.table.group(pgid) {
            // Never below zero: a group untracked twice must not look tracked again.
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// A task is about to be spawned (its group follows with [`Self::track`], then
    /// [`Self::spawned`]; or [`Self::spawned`] alone if the spawn failed).
    pub fn spawning(&self) {
        self.table.spawning().fetch_add(1, Ordering::Relaxed);
    }

    /// The spawn announced by [`Self::spawning`] is over (its group, if any, tracked).
    pub fn spawned(&self) {
        let _ = self
            .table
            .spawning()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// What every task carries in [`TOKEN_VAR`].
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// The table poolscope writes and the guard reads after poolscope is gone: memory shared
/// with the guard (both map the same memfd), so a write needs no system call and stays
/// there whatever happens to poolscope next.
struct SharedTable {
    base: std::ptr::NonNull<u8>,
}

// The mapping is only ever reached through atomics.
#[allow(unsafe_code)]
unsafe impl Send for SharedTable {}
#[allow(unsafe_code)]
unsafe impl Sync for SharedTable {}

impl SharedTable {
    /// A zeroed table, and the memfd that holds it (for the guard).
    #[allow(unsafe_code)]
    fn create() -> io::Result<(Self, OwnedFd)> {
        use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
        use rustix::mm::{MapFlags, ProtFlags, mmap};
        let memfd = memfd_create("poolscope-guard", MemfdFlags::CLOEXEC)?;
        ftruncate(&memfd, TABLE_LEN as u64)?;
        // SAFETY: a fresh shared mapping of a file of exactly this length, never unmapped
        // (it lives as long as the process's one guard), reached only through atomics.
        let base = unsafe {
            mmap(
                std::ptr::null_mut(),
                TABLE_LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &memfd,
                0,
            )
        }?;
        let base = std::ptr::NonNull::new(base.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap gave a null pointer"))?;
        Ok((Self { base }, memfd))
    }

    fn spawning(&self) -> &AtomicU32 {
        // SAFETY: the header is inside the mapping and 4-byte aligned (page aligned base).
        #[allow(unsafe_code, clippy::cast_ptr_alignment)]
        unsafe {
            &*self.base.as_ptr().cast::<AtomicU32>()
        }
    }

    fn group(&self, pgid: i32) -> Option<&AtomicU8> {
        let index = usize::try_from(pgid)
            .ok()
            .filter(|&i| i > 0 && i < MAX_GROUP_ID)?;
        // SAFETY: HEADER + index < TABLE_LEN, inside the mapping.
        #[allow(unsafe_code)]
        Some(unsafe { &*self.base.as_ptr().add(HEADER + index).cast::<AtomicU8>() })
    }
}

/// Whether the guard wrote its hello within a couple of seconds (a helper that is not
/// poolscope may say something else, or nothing).
fn answers(mut out: File) -> bool {
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

/// The guard's own main: wait until poolscope is gone, then end every group in the table
/// (and, if a spawn was cut short, every process that carries `token`).
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
    let out = io::stdout();
    // Poolscope may be gone already (the hello then has no reader): its tasks are still
    // to be ended.
    let _ = out
        .lock()
        .write_all(HELLO)
        .and_then(|()| out.lock().flush());
    wait_until_unread(&out);
    let Some((spawning, mut groups)) = read_table(io::stdin()) else {
        return 1;
    };
    if spawning > 0
        && let Some(token) = token
    {
        // Poolscope died between a spawn and its group's registration: find the task by
        // its token (it may have been running for a moment already).
        groups.extend(carrying(token));
        groups.sort_unstable();
        groups.dedup();
    }
    end_groups(groups, GRACE);
    0
}

/// The table poolscope left: its count of unfinished spawns and the groups registered.
/// Only the pages it wrote hold anything (the rest of the 4 MiB are holes): they are
/// found with `SEEK_DATA`/`SEEK_HOLE` and read alone. Reading it whole cost the guard
/// about 5 ms of CPU at the end of every run.
fn read_table(memfd: impl std::os::fd::AsFd) -> Option<(u32, Vec<i32>)> {
    use rustix::fs::{SeekFrom, seek};
    let memfd = memfd.as_fd();
    let mut header = [0u8; HEADER];
    if rustix::io::pread(memfd, &mut header, 0).ok()? < HEADER {
        return None;
    }
    let spawning = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
    let mut groups = Vec::new();
    let mut buf = Vec::new();
    let mut at = 0u64;
    // A file system without SEEK_DATA reports all of it as data: read it all then.
    while let Ok(start) = seek(memfd, SeekFrom::Data(at)) {
        let end = seek(memfd, SeekFrom::Hole(start)).unwrap_or(TABLE_LEN as u64);
        buf.resize(usize::try_from(end - start).ok()?, 0);
        let read = rustix::io::pread(memfd, &mut buf, start).ok()?;
        for (i, &count) in buf[..read].iter().enumerate() {
            let offset = start as usize + i;
            if count > 0 && offset >= HEADER {
                groups.extend(i32::try_from(offset - HEADER).ok());
            }
        }
        if read == 0 || end >= TABLE_LEN as u64 {
            break;
        }
        at = end;
    }
    Some((spawning, groups))
}

/// Block until nobody can read what we write to `out` (poolscope held the only reader).
fn wait_until_unread(out: &io::Stdout) {
    use rustix::event::{PollFd, PollFlags};
    loop {
        // No events asked for: an error or hang-up is always reported, nothing else is.
        let mut fds = [PollFd::new(out, PollFlags::empty())];
        match rustix::event::poll(&mut fds, None) {
            Ok(_)
                if fds[0]
                    .revents()
                    .intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) =>
            {
                return;
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            // Cannot wait (not a pipe?): better to end the groups now than never.
            Err(_) => return,
        }
    }
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
