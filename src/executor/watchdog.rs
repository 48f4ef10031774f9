//! The orphan guard: a small process that outlives poolscope just long enough to end every
//! task poolscope leaves behind, however poolscope ends (even by SIGKILL).
//!
//! Every process group the executor starts is counted in a table poolscope and the guard
//! share (a memfd): one counter per possible group id, raised when a group starts and
//! lowered when it is gone. A change costs no system call, never wakes the guard, and never
//! waits for it (a stopped guard cannot stall the pool). A task runs the moment it is
//! spawned, before its group can be counted: so a spawn is counted first, and each task
//! carries the guard's token in its environment (`POOLSCOPE_GUARD`); a guard that finds a
//! spawn counted and never finished when poolscope is gone looks for the token in every
//! process of this user and ends their groups too.
//!
//! The guard is a copy of poolscope forked as it starts, before it has threads or more
//! than a few pages of its own (`poolscope-guard` in `ps`, `poolscope __guard TOKEN` as
//! its command line, so `pkill -f 'poolscope run'` spares it), in a process group of its
//! own, every signal but KILL and STOP blocked, holding nothing open but the table and
//! the writing end of a pipe whose reading end poolscope holds for its whole life. When
//! that end closes (poll reports an error on ours), poolscope is gone: the guard reads
//! the table, sends SIGTERM (and SIGCONT, for paused tasks) to every group still counted,
//! waits up to [`GRACE`] for them to go, SIGKILLs the rest, and exits. Forked that early
//! it costs about 0.35 ms of a run (the fork, and poolscope's first writes to the few
//! pages they share); starting this binary again as the guard cost about 1 ms (loading
//! 20 MB of code). A process sharing poolscope's memory (`CLONE_VM`) cost 0.1 ms, but
//! shared its command line too: `pkill -KILL -f 'poolscope run'` took the guard along.
//! The guard makes only system calls (through rustix): it may be the copy of a process
//! that had threads (a library host's), whose locks a copy must not touch.
//!
//! The binary starts its guard ([`start`]) first thing; a library host that wants one
//! calls [`start`] too.
//!
//! Tasks are still started by poolscope itself: `PR_SET_PDEATHSIG` would need code run in
//! every child between fork and exec.
//!
//! Not reachable: a process that left its task's group (`setsid` or `setpgid`, as a daemon
//! that double-forks does) is not in any group the guard knows.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

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
    /// The reading end of the guard's pipe, open for this process's whole life: its
    /// closing is how the guard learns poolscope is gone.
    _alive: OwnedFd,
}

static SHARED: OnceLock<Option<Watchdog>> = OnceLock::new();

/// Start this process's guard (once; later calls give the same), best while the process
/// is small and has no threads. `None` when it cannot start (no process to spare): tasks
/// are then ended only by a living poolscope, and a warning says so.
pub fn start() -> Option<&'static Watchdog> {
    SHARED
        .get_or_init(|| match Watchdog::new() {
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

/// The guard [`start`] started, if any: a library host that started none has none.
pub fn shared() -> Option<&'static Watchdog> {
    SHARED.get().and_then(Option::as_ref)
}

impl Watchdog {
    fn new() -> io::Result<Self> {
        let (table, memfd) = SharedTable::create()?;
        let token = format!("{}.{}", std::process::id(), next_token());
        let (alive, held) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let mut plan = GuardPlan::new(&memfd, &held, &token);
        start_guard(&mut plan)?;
        // The guard has its own copies of both descriptors, and of the plan.
        drop((memfd, held, plan));
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

/// A number no other guard of this process has (with its PID, the token).
fn next_token() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Everything the guard uses, made before the fork (it allocates nothing).
struct GuardPlan {
    memfd: RawFd,
    held: RawFd,
    /// `POOLSCOPE_GUARD=TOKEN`, as a task's environment holds it.
    carried: Vec<u8>,
    /// `poolscope __guard TOKEN`: its command line in `ps`.
    title: Vec<u8>,
    /// For the table's pages, directory entries and environments.
    buf: Vec<u8>,
    /// Groups found by their token (a spawn cut short): a handful at most.
    found: [i32; FOUND_MAX],
    found_len: usize,
}

const FOUND_MAX: usize = 64;
const GUARD_BUF: usize = 64 << 10;

impl GuardPlan {
    fn new(memfd: &OwnedFd, held: &OwnedFd, token: &str) -> Self {
        use std::os::fd::AsRawFd;
        Self {
            memfd: memfd.as_raw_fd(),
            held: held.as_raw_fd(),
            carried: format!("{TOKEN_VAR}={token}").into_bytes(),
            title: format!("poolscope __guard {token}").into_bytes(),
            buf: vec![0u8; GUARD_BUF],
            found: [0; FOUND_MAX],
            found_len: 0,
        }
    }
}

/// Start the guard: a fork of this process that runs `guard_main` with its copy of `plan`.
#[allow(unsafe_code)]
fn start_guard(plan: &mut GuardPlan) -> io::Result<()> {
    // SAFETY: the child runs only `guard_main` (system calls, no allocation) and never
    // returns; the signal masks are restored before returning here.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut all);
        // The guard starts with every signal blocked (and keeps them so): no handler of
        // poolscope's runs in it, and neither Ctrl-C nor a `pkill` ends it first.
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const all, &raw mut before);
        let forked = nix::unistd::fork();
        if let Ok(nix::unistd::ForkResult::Child) = forked {
            guard_main(plan);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const before, std::ptr::null_mut());
        forked.map(drop).map_err(io::Error::from)
    }
}

/// The guard's life: wait until poolscope is gone, then end every group in the table
/// (and, if a spawn was cut short, every process that carries the token). It is a copy of
/// a process that may have had threads (a library host's): only system calls through
/// rustix, no allocation, nothing that can panic.
#[allow(unsafe_code)]
fn guard_main(plan: &mut GuardPlan) -> ! {
    // Only the table and the pipe stay open: a descriptor of poolscope's held here (a
    // task's pipe, a socket, a lock) would outlive poolscope.
    // SAFETY: the descriptors are this process's copies; none is used after it closes.
    unsafe {
        for fd in 0..plan.memfd.max(plan.held) {
            if fd != plan.memfd && fd != plan.held {
                rustix::io::close(fd);
            }
        }
    }
    close_from(plan.memfd.max(plan.held) + 1);
    let _ = rustix::process::setpgid(None, None);
    // `pkill -x poolscope` or `pkill -f 'poolscope run'` (a user ending poolscope) must
    // not hit the guard first.
    let _ = rustix::thread::set_name(c"poolscope-guard");
    retitle(&plan.title, &mut plan.buf);
    // SAFETY: both descriptors stay open for the guard's life.
    let (table, held) = unsafe {
        (
            BorrowedFd::borrow_raw(plan.memfd),
            BorrowedFd::borrow_raw(plan.held),
        )
    };
    wait_until_unread(held);
    if spawning(table) > 0 {
        // Poolscope died between a spawn and its group's registration: find the task by
        // its token (it may have been running for a moment already).
        carrying(plan);
    }
    end_groups(plan, table, GRACE);
    // SAFETY: ends the guard alone (its own thread group), running nothing on the way.
    unsafe { libc::_exit(0) }
}

/// Show `title` as this process's command line (`ps`, `pgrep -f`), written over the
/// arguments (and, if they are too short, the environment) this copy of poolscope
/// holds, as `setproctitle` does; `buf` holds `/proc/self/stat`.
#[allow(unsafe_code)]
fn retitle(title: &[u8], buf: &mut [u8]) {
    use rustix::fs::{Mode, OFlags, openat};
    let Ok(stat) = openat(
        rustix::fs::CWD,
        c"/proc/self/stat",
        OFlags::RDONLY,
        Mode::empty(),
    ) else {
        return;
    };
    let Ok(len) = rustix::io::read(&stat, &mut *buf) else {
        return;
    };
    let Some(stat) = buf.get(..len) else {
        return;
    };
    // The fields after the command's name (which may hold spaces and parentheses).
    let Some(after_name) = stat.iter().rposition(|&b| b == b')') else {
        return;
    };
    let mut fields = stat
        .get(after_name + 2..)
        .unwrap_or_default()
        .split(|&b| b == b' ');
    // Fields 48 to 51 (counted from 1): arg_start, arg_end, env_start, env_end; the
    // state, field 3, comes first here.
    let mut field = |skip: usize| {
        fields.nth(skip).and_then(|f| {
            f.iter().try_fold(0usize, |n, &d| {
                d.is_ascii_digit()
                    .then(|| n.checked_mul(10)?.checked_add(usize::from(d - b'0')))
                    .flatten()
            })
        })
    };
    let (Some(arg_start), Some(arg_end), Some(_), Some(env_end)) =
        (field(45), field(0), field(0), field(0))
    else {
        return;
    };
    if arg_start == 0 || arg_end <= arg_start || env_end <= arg_end {
        return;
    }
    let args_len = arg_end - arg_start;
    // Within the arguments: words apart by NULs, the rest NUL (the kernel shows the whole
    // area). Longer: one string over the environment too, up to its first NUL.
    let fits = title.len() < args_len;
    let area_len = if fits { args_len } else { env_end - arg_start };
    let shown = title.len().min(area_len - 1);
    // SAFETY: [arg_start, env_end) is this process's own copy of its argument and
    // environment strings (writable, as the kernel reports them), which nothing in the
    // guard reads.
    let area = unsafe { std::slice::from_raw_parts_mut(arg_start as *mut u8, area_len) };
    for (i, byte) in area.iter_mut().enumerate() {
        *byte = match title.get(i) {
            Some(b' ') if fits => 0,
            Some(&b) if i < shown => b,
            _ => 0,
        };
    }
}

/// Close every descriptor from `first` up (`close_range`, or one by one where the
/// kernel is older than 5.9).
#[allow(unsafe_code)]
fn close_from(first: RawFd) {
    let Ok(first) = u32::try_from(first) else {
        return;
    };
    // SAFETY: a system call on this process's own descriptor table, none of them used
    // afterwards; it sets `errno` only when it fails, which it does only on old kernels.
    if unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) } != 0 {
        for fd in first..4096 {
            // SAFETY: as above.
            unsafe { rustix::io::close(fd.cast_signed()) };
        }
    }
}

/// The count of spawns poolscope had begun and not finished.
fn spawning(table: BorrowedFd<'_>) -> u32 {
    let mut header = [0u8; 4];
    match rustix::io::pread(table, &mut header, 0) {
        Ok(4) => u32::from_ne_bytes(header),
        _ => 0,
    }
}

/// Every group registered in the table poolscope left. Only the pages it wrote hold
/// anything (the rest of the 4 MiB are holes): they are found with `SEEK_DATA` and
/// `SEEK_HOLE` and read alone (reading it whole cost about 5 ms of CPU a run).
fn for_each_group(table: BorrowedFd<'_>, buf: &mut [u8], mut each: impl FnMut(i32)) {
    use rustix::fs::{SeekFrom, seek};
    let mut at = HEADER as u64;
    // A file system without SEEK_DATA reports all of it as data: read it all then.
    while let Ok(start) = seek(table, SeekFrom::Data(at)) {
        let end = seek(table, SeekFrom::Hole(start))
            .unwrap_or(TABLE_LEN as u64)
            .min(TABLE_LEN as u64);
        let mut offset = start.max(HEADER as u64);
        while offset < end {
            let want = usize::try_from(end - offset).map_or(buf.len(), |n| n.min(buf.len()));
            let Some(chunk) = buf.get_mut(..want) else {
                return;
            };
            let read = match rustix::io::pread(table, &mut *chunk, offset) {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            for (i, &count) in chunk.iter().take(read).enumerate() {
                if count > 0
                    && let Ok(group) = i32::try_from(offset as usize + i - HEADER)
                {
                    each(group);
                }
            }
            offset += read as u64;
        }
        if end >= TABLE_LEN as u64 {
            break;
        }
        at = end;
    }
}

/// Block until nobody can read what we write to `out` (poolscope held the only reader).
fn wait_until_unread(out: BorrowedFd<'_>) {
    use rustix::event::{PollFd, PollFlags};
    loop {
        // No events asked for: an error or hang-up is always reported, nothing else is.
        let mut fds = [PollFd::new(&out, PollFlags::empty())];
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

/// The process groups of every process whose environment has `POOLSCOPE_GUARD=token`,
/// into `plan.found`.
fn carrying(plan: &mut GuardPlan) {
    use rustix::fs::{Mode, OFlags, RawDir, openat};
    let Ok(proc) = openat(
        rustix::fs::CWD,
        c"/proc",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    // Directory entries go in the first half of the buffer, an environment in the rest.
    let (entries, environ) = plan.buf.split_at_mut(GUARD_BUF / 2);
    // SAFETY: the same bytes seen as possibly uninitialised, which they are not.
    #[allow(unsafe_code)]
    let entries = unsafe {
        std::slice::from_raw_parts_mut(
            entries.as_mut_ptr().cast::<std::mem::MaybeUninit<u8>>(),
            entries.len(),
        )
    };
    let mut dir = RawDir::new(&proc, entries);
    while let Some(Ok(entry)) = dir.next() {
        let name = entry.file_name().to_bytes();
        let Some(pid) = parse_pid(name) else {
            continue;
        };
        // "PID/environ", NUL-terminated, on the stack.
        let mut path = [0u8; 32];
        let suffix = b"/environ\0";
        let Some(room) = path.get_mut(..name.len() + suffix.len()) else {
            continue;
        };
        room[..name.len()].copy_from_slice(name);
        room[name.len()..].copy_from_slice(suffix);
        let Ok(path) = std::ffi::CStr::from_bytes_until_nul(&path) else {
            continue;
        };
        if environ_has(&proc, path, environ, &plan.carried)
            && let Ok(group) = rustix::process::getpgid(rustix::process::Pid::from_raw(pid))
            && let Some(slot) = plan.found.get_mut(plan.found_len)
        {
            *slot = group.as_raw_nonzero().get();
            plan.found_len += 1;
        }
    }
}

fn parse_pid(name: &[u8]) -> Option<i32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    name.iter().try_fold(0i32, |n, &d| {
        n.checked_mul(10)?.checked_add(i32::from(d - b'0'))
    })
}

/// Whether the environment at `path` (under `/proc`) holds the variable `wanted`
/// exactly, read through `buf` a piece at a time.
fn environ_has(proc: &OwnedFd, path: &std::ffi::CStr, buf: &mut [u8], wanted: &[u8]) -> bool {
    use rustix::fs::{Mode, OFlags, openat};
    let Ok(file) = openat(proc, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else {
        return false;
    };
    // Whether the bytes so far are the start of a variable, and how much of `wanted`
    // they matched.
    let mut at_start = true;
    let mut matched: Option<usize> = None;
    loop {
        let read = match rustix::io::read(&file, &mut *buf) {
            Ok(0) | Err(_) => return false,
            Ok(read) => read,
        };
        for &byte in buf.iter().take(read) {
            if byte == 0 {
                if matched == Some(wanted.len()) {
                    return true;
                }
                at_start = true;
                matched = None;
                continue;
            }
            if at_start {
                matched = Some(0);
                at_start = false;
            }
            matched = matched
                .filter(|&m| wanted.get(m) == Some(&byte))
                .map(|m| m + 1);
        }
    }
}

/// SIGTERM (and SIGCONT) every group poolscope left, wait up to `grace` for them to
/// empty, SIGKILL what is left. The table does not change any more: each round reads it
/// again instead of keeping a list.
fn end_groups(plan: &mut GuardPlan, table: BorrowedFd<'_>, grace: Duration) {
    use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};
    let (found, found_len) = (plan.found, plan.found_len);
    let every = |buf: &mut [u8], each: &mut dyn FnMut(Pid)| {
        let mut one = |group: i32| {
            if let Some(group) = Pid::from_raw(group) {
                each(group);
            }
        };
        for_each_group(table, buf, &mut one);
        found.iter().take(found_len).for_each(|&g| one(g));
    };
    every(&mut plan.buf, &mut |g| {
        let _ = kill_process_group(g, Signal::TERM);
        let _ = kill_process_group(g, Signal::CONT);
    });
    let until = monotonic().saturating_add(grace);
    while monotonic() < until {
        let mut alive = false;
        every(&mut plan.buf, &mut |g| {
            alive |= test_kill_process_group(g).is_ok();
        });
        if !alive {
            return;
        }
        // Polling is fine here: this runs once, after poolscope is gone.
        let _ = rustix::thread::nanosleep(&rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        });
    }
    every(&mut plan.buf, &mut |g| {
        let _ = kill_process_group(g, Signal::KILL);
    });
}

/// The monotonic clock, read without `std` (which may touch thread-local state).
fn monotonic() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}
