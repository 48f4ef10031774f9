//! Starting a task's process with the parent's share of the work done once per pool.
//!
//! std's `Command::spawn` (glibc's `posix_spawn` underneath) copies the whole environment
//! into a fresh map for every child, opens `/dev/null` again, maps a new stack for the
//! child and unmaps it after (which, in a process with several threads, costs a TLB flush
//! on every CPU running one of them), a pidfd then takes a system call of its own, and
//! the parent waits until the child has exec'd. Here the environment is read once,
//! `/dev/null` is opened once, the children's stacks are kept, a program found on `PATH`
//! is remembered, `clone(CLONE_VM | CLONE_PIDFD | CLONE_CHILD_CLEARTID)` returns the
//! pidfd with the child, and only a file's first child is waited for (see [`Launch`]).
//! The child then does what glibc's `posix_spawn` child does: its own process group,
//! signal handlers back to default (those that have one, known once per pool), nothing
//! blocked, the three descriptors, the directory, `execve` (as execvp does it).

use std::cell::{Cell, UnsafeCell};
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, c_char, c_int, c_void};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

/// The child runs on this stack until it execs: a few frames of libc calls.
const STACK_BYTES: usize = 256 * 1024;

/// What the parent asks for one child.
pub struct Plan<'a> {
    pub program: &'a str,
    pub args: &'a [&'a str],
    /// Set in the child's environment (over the pool's own).
    pub env: &'a [(&'a str, &'a str)],
    pub cwd: Option<&'a Path>,
    /// A pipe for its stdin; otherwise `/dev/null`.
    pub stdin_piped: bool,
}

/// A started child: its pidfd and the parent's ends of its pipes. Whether it exec'd
/// may be known only once it has exited: see [`Spawner::settled`].
pub struct Child {
    pub pid: u32,
    pub pidfd: OwnedFd,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

pub struct Spawner {
    /// The memory of children started and perhaps not yet exec'd, and of free ones.
    launches: Vec<Box<Launch>>,
    /// Files that have exec'd once from here: later children of theirs are not waited
    /// for (see [`Launch`]).
    known: HashSet<CString>,
    /// `KEY=VALUE` of the environment when the pool started, with the key's length.
    /// Never changed while a child may read it.
    env: Vec<(CString, usize)>,
    /// `PATH` as the pool started (the children's, unless a task sets its own). Never
    /// changed while a child may read it.
    path: Vec<u8>,
    dev_null: OwnedFd,
    /// Where a bare program name was found on the pool's `PATH`, or that it was not.
    found: HashMap<String, Option<CString>>,
    /// The signals the child puts back to their default (see [`signals_to_reset`]).
    reset: Vec<c_int>,
    /// What the spawning thread blocks while the child runs on its memory (see
    /// [`blocked_while_spawning`]).
    blocked: libc::sigset_t,
}

/// Longest file name the child execs (Linux's `PATH_MAX`).
const FILE_BYTES: usize = 4096;

/// The memory one child uses between its clone and its exec: the stack it runs on and
/// what it reads. A file's first child is waited for until it has exec'd (as
/// `posix_spawn` waits for every one), so that what cannot start says why at once. A
/// known file's children are not: this thread goes on (to start the next task on
/// another CPU) while the child execs, and reuses the launch only once the kernel says
/// the child has left its memory; if that exec failed after all, the child's end says
/// so. That wait was the pool's largest idle time: at `-j 2` the two children end
/// together, and the second start waited for the first exec. Only the child writes a
/// launch while it is in use, and only its atomics and `file`.
struct Launch {
    /// Nonzero while the child may still use this memory: the kernel zeroes it when the
    /// child execs or exits (`CLONE_CHILD_CLEARTID`).
    in_use: AtomicU32,
    /// Why the child could not exec (an errno), set by the child before it exits.
    error: AtomicI32,
    /// Set by the child when the program was not where it had been found on `PATH`.
    searched: AtomicBool,
    /// Set by the child when what failed was entering the task's folder.
    no_folder: AtomicBool,
    /// The child's PID until [`Spawner::settled`] is told of its end; 0 when free.
    pid: Cell<u32>,
    /// Never zeroed (the child only pushes onto it): zeroing it cost 64 page faults.
    stack: Vec<u128>,
    /// The file found for the program (`file` as the launch began).
    path: CString,
    /// The file to exec, NUL-terminated; the child writes others there as it looks
    /// along `PATH`.
    file: UnsafeCell<[u8; FILE_BYTES]>,
    args: Vec<CString>,
    argv: Vec<*const c_char>,
    /// `/bin/sh FILE ARGS…`: how a file without `#!` runs (as execvp runs it).
    script_argv: Vec<*const c_char>,
    extra_env: Vec<CString>,
    envp: Vec<*const c_char>,
    cwd: Option<CString>,
    /// `PATH` to look along if the file is gone (for a bare name on the pool's `PATH`):
    /// the spawner's, or empty.
    search: (*const u8, usize),
    /// What becomes the child's stdin, stdout, stderr.
    fds: [c_int; 3],
    /// Signals to put back to their default if they have a handler (the spawner's).
    reset: (*const c_int, usize),
}

// SAFETY: the raw pointers point into this launch's own heap data or into the spawner
// that owns it, which moves between threads with it; only the spawning thread and the
// child use them.
#[allow(unsafe_code)]
unsafe impl Send for Launch {}

impl Launch {
    fn new() -> Box<Self> {
        Box::new(Self {
            in_use: AtomicU32::new(0),
            error: AtomicI32::new(0),
            searched: AtomicBool::new(false),
            no_folder: AtomicBool::new(false),
            pid: Cell::new(0),
            stack: Vec::with_capacity(STACK_BYTES / 16),
            path: CString::default(),
            file: UnsafeCell::new([0; FILE_BYTES]),
            args: Vec::new(),
            argv: Vec::new(),
            script_argv: Vec::new(),
            extra_env: Vec::new(),
            envp: Vec::new(),
            cwd: None,
            search: (std::ptr::null(), 0),
            fds: [-1; 3],
            reset: (std::ptr::null(), 0),
        })
    }

    /// Whether the child may still read or write this memory.
    fn busy(&self) -> bool {
        self.in_use.load(Ordering::Acquire) != 0
    }
}

impl Spawner {
    pub fn new() -> io::Result<Self> {
        let dev_null = OwnedFd::from(std::fs::File::open("/dev/null")?);
        let env = std::env::vars_os()
            .filter_map(|(key, value)| {
                let mut entry = key.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                CString::new(entry).ok().map(|e| (e, key.len()))
            })
            .collect();
        let path = std::env::var_os("PATH").map_or_else(
            // What execvp searches without a PATH.
            || b"/bin:/usr/bin".to_vec(),
            |p| p.as_bytes().to_vec(),
        );
        let reset = signals_to_reset();
        Ok(Self {
            launches: Vec::new(),
            known: HashSet::new(),
            env,
            path,
            dev_null,
            found: HashMap::new(),
            blocked: blocked_while_spawning(&reset),
            reset,
        })
    }

    /// Start a child. What keeps it from starting is returned, but for a known file,
    /// whose child is not waited for: whether that one exec'd is
    /// [`Spawner::settled`]'s to say.
    pub fn spawn(&mut self, plan: &Plan<'_>) -> io::Result<Child> {
        let path = self.executable(plan)?;
        if path.as_bytes().len() >= FILE_BYTES {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        let search = !plan.program.contains('/') && !plan.env.iter().any(|(k, _)| *k == "PATH");
        let wait = !ASYNC_SPAWN || !self.known.contains(&path);
        let index = if let Some(free) = self.launches.iter().position(|l| l.pid.get() == 0) {
            free
        } else {
            self.launches.push(Launch::new());
            self.launches.len() - 1
        };
        let launch = &mut self.launches[index];
        let file = launch.file.get_mut();
        file[..path.as_bytes().len()].copy_from_slice(path.as_bytes());
        file[path.as_bytes().len()] = 0;
        launch.args.clear();
        for arg in std::iter::once(plan.program).chain(plan.args.iter().copied()) {
            launch.args.push(CString::new(arg)?);
        }
        launch.argv.clear();
        launch.argv.extend(launch.args.iter().map(|a| a.as_ptr()));
        launch.argv.push(std::ptr::null());
        launch.script_argv.clear();
        launch.script_argv.push(c"/bin/sh".as_ptr());
        launch.script_argv.push(launch.file.get().cast::<c_char>());
        launch.script_argv.extend_from_slice(&launch.argv[1..]);
        launch.extra_env.clear();
        for (k, v) in plan.env {
            launch.extra_env.push(CString::new(format!("{k}={v}"))?);
        }
        launch.envp.clear();
        for (entry, key_len) in &self.env {
            let key = &entry.as_bytes()[..*key_len];
            if !plan.env.iter().any(|(k, _)| k.as_bytes() == key) {
                launch.envp.push(entry.as_ptr());
            }
        }
        launch
            .envp
            .extend(launch.extra_env.iter().map(|e| e.as_ptr()));
        launch.envp.push(std::ptr::null());
        launch.cwd = plan
            .cwd
            .map(|dir| CString::new(dir.as_os_str().as_bytes()))
            .transpose()?;
        launch.search = if search {
            (self.path.as_ptr(), self.path.len())
        } else {
            (std::ptr::null(), 0)
        };
        launch.reset = (self.reset.as_ptr(), self.reset.len());
        launch.path = path;
        launch.error.store(0, Ordering::Relaxed);
        launch.searched.store(false, Ordering::Relaxed);
        launch.no_folder.store(false, Ordering::Relaxed);

        // The parent's ends are close-on-exec (a later child must not hold them);
        // `dup2` in the child clears the flag on its copies.
        let (stdin_read, stdin_write) = if plan.stdin_piped {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let (stdout_read, stdout_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (stderr_read, stderr_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let stdin_fd = stdin_read
            .as_ref()
            .map_or(self.dev_null.as_raw_fd(), AsRawFd::as_raw_fd);
        launch.fds = [stdin_fd, stdout_write.as_raw_fd(), stderr_write.as_raw_fd()];
        let (pid, pidfd) = clone_child(launch, &self.blocked, wait)?;
        launch.pid.set(pid);
        // The child has its own copies of its ends (its descriptor table is its own).
        drop((stdin_read, stdout_write, stderr_write));
        if wait {
            if let Some(Err(e)) = self.settled(pid) {
                // It exited without exec'ing: reap it.
                let _ = rustix::process::waitid(
                    rustix::process::WaitId::PidFd(pidfd.as_fd()),
                    rustix::process::WaitIdOptions::EXITED,
                );
                return Err(e);
            }
        } else {
            // The child makes its own group too; this makes it one before a kill of the
            // group can come (after the exec it is refused, and needed no more).
            if let Some(pid) = rustix::process::Pid::from_raw(pid.cast_signed()) {
                let _ = rustix::process::setpgid(Some(pid), Some(pid));
            }
        }
        Ok(Child {
            pid,
            pidfd,
            stdin: stdin_write,
            stdout: stdout_read,
            stderr: stderr_read,
        })
    }

    /// Whether the child with this PID exec'd its program: `None` while it may still
    /// be on its way (it has neither exec'd nor exited), the error that kept it from
    /// exec'ing (it then exits with 127). Told once: the child's launch is then reused.
    pub fn settled(&mut self, pid: u32) -> Option<io::Result<()>> {
        let Some(launch) = self.launches.iter().find(|l| l.pid.get() == pid) else {
            return Some(Ok(()));
        };
        if launch.busy() {
            return None;
        }
        launch.pid.set(0);
        let error = launch.error.load(Ordering::Acquire);
        let searched = launch.searched.load(Ordering::Acquire);
        if error == 0 && !searched {
            // Known after its first child: no copy of the name per task.
            if !self.known.contains(&launch.path) {
                self.known.insert(launch.path.clone());
            }
        } else {
            // Waited for again next time.
            self.known.remove(&launch.path);
        }
        if searched && let Ok(program) = launch.args[0].to_str() {
            // Gone from where it was found: looked for again next time.
            self.found.remove(program);
        }
        match (error, &launch.cwd) {
            (0, _) => Some(Ok(())),
            (errno, Some(cwd)) if launch.no_folder.load(Ordering::Acquire) => {
                let e = io::Error::from_raw_os_error(errno);
                Some(Err(io::Error::new(
                    e.kind(),
                    format!(
                        "cannot enter the task's folder {}: {e}",
                        Path::new(std::ffi::OsStr::from_bytes(cwd.as_bytes())).display()
                    ),
                )))
            }
            (errno, _) => Some(Err(io::Error::from_raw_os_error(errno))),
        }
    }

    /// Whether a bare program name is on the pool's `PATH` (remembered, found or not):
    /// whether a plain command line can be started without `sh`.
    pub fn on_path(&mut self, program: &str) -> bool {
        if let Some(found) = self.found.get(program) {
            return found.is_some();
        }
        let found = search_path(&self.path, program, None).ok();
        let on_path = found.is_some();
        self.found.insert(program.to_owned(), found);
        on_path
    }

    /// The file to exec: a path as given; a bare name searched on `PATH` as execvp
    /// does, remembered while `PATH` is the pool's (a name not found before is looked
    /// for again: it may have been installed since).
    fn executable(&mut self, plan: &Plan<'_>) -> io::Result<CString> {
        if plan.program.contains('/') {
            return Ok(CString::new(plan.program)?);
        }
        if let Some((_, own_path)) = plan.env.iter().find(|(k, _)| *k == "PATH") {
            return search_path(own_path.as_bytes(), plan.program, plan.cwd);
        }
        if let Some(Some(found)) = self.found.get(plan.program) {
            return Ok(found.clone());
        }
        let found = search_path(&self.path, plan.program, plan.cwd)?;
        // One in a relative folder of PATH (`.`) is the task's folder's: not remembered.
        if found.as_bytes().starts_with(b"/") {
            self.found
                .insert(plan.program.to_owned(), Some(found.clone()));
        }
        Ok(found)
    }
}

/// Where `program` is on `path` as execvp finds it in the child, in its folder `cwd`: the
/// first executable regular file (a relative folder of `PATH` is the child's folder's);
/// else why not (`EACCES` if one was there but not executable).
fn search_path(path: &[u8], program: &str, cwd: Option<&Path>) -> io::Result<CString> {
    let mut denied = false;
    for dir in path.split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let mut candidate = dir.to_vec();
        candidate.push(b'/');
        candidate.extend_from_slice(program.as_bytes());
        let candidate = CString::new(candidate)?;
        let there = match cwd {
            Some(cwd) if !dir.starts_with(b"/") => CString::new(
                cwd.join(std::ffi::OsStr::from_bytes(candidate.as_bytes()))
                    .as_os_str()
                    .as_bytes(),
            )?,
            _ => candidate.clone(),
        };
        let is_file = rustix::fs::stat(there.as_c_str())
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file());
        if !is_file {
            continue;
        }
        if rustix::fs::access(there.as_c_str(), rustix::fs::Access::EXEC_OK).is_err() {
            denied = true;
            continue;
        }
        return Ok(candidate);
    }
    Err(io::Error::from_raw_os_error(if denied {
        libc::EACCES
    } else {
        libc::ENOENT
    }))
}

/// The signals a child must not leave to this process's handlers before its exec:
/// those handled when the pool starts, the ones `poolscope run` handles (it may set
/// them up after), and SIGPIPE. glibc's `posix_spawn` asks the kernel about all 64
/// in every child (two system calls each, about 14 µs a task here, with the parent
/// waiting); a handler set up later for another signal could only run in a child if
/// that signal reached the child in the microseconds before its exec, when nothing
/// outside knows its PID yet.
#[allow(unsafe_code)]
fn signals_to_reset() -> Vec<c_int> {
    let mut reset = vec![libc::SIGPIPE, libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || reset.contains(&sig) {
            continue;
        }
        // SAFETY: a query only: the kernel writes the current action into `action`.
        let handled = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &raw mut action) == 0
                && action.sa_sigaction != libc::SIG_DFL
                && action.sa_sigaction != libc::SIG_IGN
        };
        if handled {
            reset.push(sig);
        }
    }
    reset
}

/// Every signal but SIGCHLD, unless SIGCHLD has a handler (it has none in poolscope).
/// The pool's other children exit while this thread waits for a new one to exec, and a
/// SIGCHLD the kernel cannot drop at once (its target thread blocks it) is handed to
/// another thread of the process, woken for nothing: 3000 `/bin/true` at `-j 2` woke
/// the process's sleeping threads about 700 times.
#[allow(unsafe_code)]
fn blocked_while_spawning(reset: &[c_int]) -> libc::sigset_t {
    // SAFETY: the sigset functions only write the set given.
    unsafe {
        let mut blocked: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut blocked);
        if !reset.contains(&libc::SIGCHLD) {
            libc::sigdelset(&raw mut blocked, libc::SIGCHLD);
        }
        blocked
    }
}

/// Whether children of known files start without waiting for their exec. It needs
/// the child's system calls made without libc: the child shares this thread's memory,
/// `errno` included, while this thread runs on.
const ASYNC_SPAWN: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Start the child on the launch's stack. With `wait`, returns once it has exec'd (or
/// failed to, and exited); else at once, the launch in use until the kernel frees it.
#[allow(unsafe_code)]
fn clone_child(
    launch: &mut Launch,
    blocked: &libc::sigset_t,
    wait: bool,
) -> io::Result<(u32, OwnedFd)> {
    // SAFETY: pthread_sigmask only writes the set given. The child entry point touches
    // nothing but the launch (see `child_main`), which stays where it is, unchanged,
    // until the child has exec'd or exited: the kernel clears `in_use` then
    // (CLONE_CHILD_CLEARTID), and nothing reuses or drops the launch before (see
    // `Spawner::settled` and `Spawner::drop`). The pidfd is a new descriptor owned by
    // nobody else.
    unsafe {
        let top = {
            let stack = launch.stack.spare_capacity_mut();
            stack.as_mut_ptr().add(stack.len()).cast::<c_void>()
        };
        let mut before: libc::sigset_t = std::mem::zeroed();
        // No handler of ours may run in the child before it has reset them.
        libc::pthread_sigmask(libc::SIG_SETMASK, blocked, &raw mut before);
        let mut pidfd: c_int = -1;
        let vfork = if wait { libc::CLONE_VFORK } else { 0 };
        let flags =
            libc::CLONE_VM | libc::CLONE_PIDFD | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD | vfork;
        launch.in_use.store(1, Ordering::Release);
        let in_use = launch.in_use.as_ptr();
        let pid = libc::clone(
            child_main,
            top,
            flags,
            std::ptr::from_mut(launch).cast::<c_void>(),
            &raw mut pidfd,
            std::ptr::null_mut::<c_void>(),
            in_use,
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const before, std::ptr::null_mut());
        if pid < 0 {
            launch.in_use.store(0, Ordering::Release);
            return Err(clone_error);
        }
        Ok((pid.cast_unsigned(), OwnedFd::from_raw_fd(pidfd)))
    }
}

/// The child, between clone and exec: raw system calls only (no `errno`, no lock, no
/// allocation), on memory no one else uses meanwhile.
#[allow(unsafe_code)]
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `Launch`, alive and unchanged while the child may use
    // it (see `clone_child`); every pointer in it is valid and NUL-terminated.
    unsafe {
        let launch = &*arg.cast::<Launch>();
        let fail = |errno: usize| -> ! {
            launch.error.store(errno as c_int, Ordering::Release);
            raw::exit(127)
        };
        if let Err(errno) = raw::setpgid_self() {
            fail(errno);
        }
        // Handlers are the parent's code: back to default before anything is unblocked.
        // An ignored signal stays ignored, as across exec, but SIGPIPE, which a Rust
        // parent ignores, is the default again (as std gives its children).
        for &sig in std::slice::from_raw_parts(launch.reset.0, launch.reset.1) {
            let Ok(action) = raw::signal_handler(sig) else {
                continue;
            };
            let handled = action != libc::SIG_DFL && action != libc::SIG_IGN;
            if handled || (sig == libc::SIGPIPE && action == libc::SIG_IGN) {
                let _ = raw::default_signal(sig);
            }
        }
        let _ = raw::unblock_all_signals();
        // A source among 0..2 could be overwritten by an earlier dup2: move it up first.
        let mut fds = launch.fds;
        for fd in &mut fds {
            if *fd < 3 {
                match raw::dup_above(*fd, 3) {
                    Ok(moved) => *fd = moved,
                    Err(errno) => fail(errno),
                }
            }
        }
        for (target, fd) in (0..).zip(fds) {
            if let Err(errno) = raw::dup_onto(fd, target) {
                fail(errno);
            }
        }
        if let Some(cwd) = &launch.cwd
            && let Err(errno) = raw::chdir(cwd.as_ptr())
        {
            launch.no_folder.store(true, Ordering::Release);
            fail(errno);
        }
        fail(exec(launch))
    }
}

/// Exec the launch's file as execvp would: a file without `#!` through `/bin/sh`, and a
/// bare name no longer where it was found looked for along `PATH` again. Returns only
/// on failure: why.
#[allow(unsafe_code)]
unsafe fn exec(launch: &Launch) -> usize {
    // SAFETY: as in `child_main`; `file` is the child's to write while it runs.
    unsafe {
        let file = launch.file.get().cast::<u8>();
        let run = |file: *const u8| match raw::execve(
            file.cast(),
            launch.argv.as_ptr(),
            launch.envp.as_ptr(),
        ) {
            errno if errno == libc::ENOEXEC as usize => raw::execve(
                c"/bin/sh".as_ptr(),
                launch.script_argv.as_ptr(),
                launch.envp.as_ptr(),
            ),
            errno => errno,
        };
        let errno = run(file);
        // What execvp passes by on `PATH` (a directory, a file no longer executable are
        // refused with EACCES).
        let passed = [libc::ENOENT, libc::EACCES, libc::ENOTDIR];
        if launch.search.1 == 0 || !passed.iter().any(|&e| e as usize == errno) {
            return errno;
        }
        launch.searched.store(true, Ordering::Release);
        let name = launch.args[0].as_bytes();
        let mut denied = false;
        for dir in
            std::slice::from_raw_parts(launch.search.0, launch.search.1).split(|&b| b == b':')
        {
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            let len = dir.len() + 1 + name.len();
            if len >= FILE_BYTES {
                continue;
            }
            std::ptr::copy_nonoverlapping(dir.as_ptr(), file, dir.len());
            *file.add(dir.len()) = b'/';
            std::ptr::copy_nonoverlapping(name.as_ptr(), file.add(dir.len() + 1), name.len());
            *file.add(len) = 0;
            match run(file) {
                errno if errno == libc::EACCES as usize => denied = true,
                errno
                    if [
                        libc::ENOENT,
                        libc::ENOTDIR,
                        libc::ESTALE,
                        libc::ENODEV,
                        libc::ETIMEDOUT,
                    ]
                    .iter()
                    .any(|&e| e as usize == errno) => {}
                errno => return errno,
            }
        }
        if denied {
            libc::EACCES as usize
        } else {
            libc::ENOENT as usize
        }
    }
}

impl Drop for Spawner {
    /// A child not yet exec'd still reads its launch: wait for it a while, and leave
    /// its memory allocated if it still has not (a child stopped before its exec).
    fn drop(&mut self) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.launches.iter().any(|l| l.busy()) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        if self.launches.iter().any(|l| l.busy()) {
            std::mem::forget(std::mem::take(&mut self.launches));
            std::mem::forget(std::mem::take(&mut self.env));
            std::mem::forget(std::mem::take(&mut self.reset));
        }
    }
}

/// The child's system calls, made without libc: in the child `errno` is the parent's
/// thread's, which runs on meanwhile. Each returns the errno on failure.
#[allow(unsafe_code)]
mod raw {
    use std::ffi::{c_char, c_int, c_long};

    /// The kernel's `struct sigaction` (`x86_64` and `aarch64` alike).
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::sighandler_t,
        flags: u64,
        restorer: usize,
        mask: u64,
    }

    /// SAFETY (for callers): the arguments are what system call `n` expects.
    #[cfg(target_arch = "x86_64")]
    unsafe fn syscall(n: c_long, a: [usize; 4]) -> Result<usize, usize> {
        let ret: isize;
        // SAFETY: the Linux x86_64 system call convention.
        unsafe {
            std::arch::asm!("syscall", inlateout("rax") n as isize => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3],
                lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        if (-4095..0).contains(&ret) {
            Err(ret.unsigned_abs())
        } else {
            Ok(ret.cast_unsigned())
        }
    }

    #[cfg(target_arch = "aarch64")]
    unsafe fn syscall(n: c_long, a: [usize; 4]) -> Result<usize, usize> {
        let ret: isize;
        // SAFETY: the Linux aarch64 system call convention.
        unsafe {
            std::arch::asm!("svc 0", in("x8") n, inlateout("x0") a[0] as isize => ret,
                in("x1") a[1], in("x2") a[2], in("x3") a[3], options(nostack));
        }
        if (-4095..0).contains(&ret) {
            Err(ret.unsigned_abs())
        } else {
            Ok(ret.cast_unsigned())
        }
    }

    /// Elsewhere through libc (and `errno`): children are then always waited for
    /// (see `ASYNC_SPAWN`), so no thread of the parent runs meanwhile.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    unsafe fn syscall(n: c_long, a: [usize; 4]) -> Result<usize, usize> {
        // SAFETY: as the caller's.
        unsafe {
            let ret = libc::syscall(n, a[0], a[1], a[2], a[3]);
            if ret < 0 {
                Err(*libc::__errno_location() as usize)
            } else {
                Ok(ret as usize)
            }
        }
    }

    pub unsafe fn setpgid_self() -> Result<(), usize> {
        unsafe { syscall(libc::SYS_setpgid, [0; 4]).map(drop) }
    }

    pub unsafe fn signal_handler(sig: c_int) -> Result<libc::sighandler_t, usize> {
        let mut old = KernelSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        unsafe {
            syscall(
                libc::SYS_rt_sigaction,
                [sig as usize, 0, (&raw mut old) as usize, 8],
            )?;
        }
        Ok(old.handler)
    }

    pub unsafe fn default_signal(sig: c_int) -> Result<(), usize> {
        let action = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        unsafe {
            syscall(
                libc::SYS_rt_sigaction,
                [sig as usize, (&raw const action) as usize, 0, 8],
            )
            .map(drop)
        }
    }

    pub unsafe fn unblock_all_signals() -> Result<(), usize> {
        let none: u64 = 0;
        unsafe {
            syscall(
                libc::SYS_rt_sigprocmask,
                [libc::SIG_SETMASK as usize, (&raw const none) as usize, 0, 8],
            )
            .map(drop)
        }
    }

    pub unsafe fn dup_above(fd: c_int, lowest: c_int) -> Result<c_int, usize> {
        unsafe {
            syscall(
                libc::SYS_fcntl,
                [
                    fd as usize,
                    libc::F_DUPFD_CLOEXEC as usize,
                    lowest as usize,
                    0,
                ],
            )
            .map(|fd| fd as c_int)
        }
    }

    /// `dup3(fd, target, 0)`: `fd` is never `target` here (sources were moved above 2).
    pub unsafe fn dup_onto(fd: c_int, target: c_int) -> Result<(), usize> {
        unsafe { syscall(libc::SYS_dup3, [fd as usize, target as usize, 0, 0]).map(drop) }
    }

    pub unsafe fn chdir(dir: *const c_char) -> Result<(), usize> {
        unsafe { syscall(libc::SYS_chdir, [dir as usize, 0, 0, 0]).map(drop) }
    }

    /// Returns only if the exec failed: why.
    pub unsafe fn execve(
        path: *const c_char,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> usize {
        match unsafe {
            syscall(
                libc::SYS_execve,
                [path as usize, argv as usize, envp as usize, 0],
            )
        } {
            Err(errno) => errno,
            Ok(_) => libc::EIO as usize,
        }
    }

    pub unsafe fn exit(code: c_int) -> ! {
        unsafe {
            let _ = syscall(libc::SYS_exit_group, [code as usize, 0, 0, 0]);
        }
        unreachable!("exit_group returned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Run a plan to its end: (exit code or 128 + signal, stdout, stderr), or why it
    /// could not start.
    fn try_run(spawner: &mut Spawner, plan: &Plan<'_>) -> io::Result<(i32, String, String)> {
        let child = spawner.spawn(plan)?;
        let pid = child.pid;
        let mut out = String::new();
        let mut err = String::new();
        std::fs::File::from(child.stdout)
            .read_to_string(&mut out)
            .expect("stdout");
        std::fs::File::from(child.stderr)
            .read_to_string(&mut err)
            .expect("stderr");
        let status = rustix::process::waitid(
            rustix::process::WaitId::PidFd(child.pidfd.as_fd()),
            rustix::process::WaitIdOptions::EXITED,
        )
        .expect("waitid")
        .expect("a status");
        let code = status
            .exit_status()
            .filter(|_| status.exited())
            .or_else(|| status.terminating_signal().map(|s| 128 + s))
            .expect("an end");
        spawner.settled(pid).expect("settled once it has exited")?;
        Ok((code, out, err))
    }

    fn run(spawner: &mut Spawner, plan: &Plan<'_>) -> (i32, String, String) {
        try_run(spawner, plan).expect("started")
    }

    fn write_executable(path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn plan<'a>(program: &'a str, args: &'a [&'a str], env: &'a [(&'a str, &'a str)]) -> Plan<'a> {
        Plan {
            program,
            args,
            env,
            cwd: None,
            stdin_piped: false,
        }
    }

    #[test]
    fn a_child_has_the_pools_environment_with_its_own_variables_over_it() {
        let mut spawner = Spawner::new().expect("spawner");
        spawner
            .env
            .push((CString::new("POOLSCOPE_SPAWN_TEST=pool").expect("c"), 20));
        spawner
            .env
            .push((CString::new("POOLSCOPE_SPAWN_KEEP=kept").expect("c"), 20));
        let env = [("POOLSCOPE_SPAWN_TEST", "task"), ("EXTRA", "x y")];
        let (code, out, _) = run(&mut spawner, &plan("env", &[], &env));
        assert_eq!(code, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.contains(&"POOLSCOPE_SPAWN_TEST=task"), "{out}");
        assert!(!lines.contains(&"POOLSCOPE_SPAWN_TEST=pool"), "{out}");
        assert!(lines.contains(&"POOLSCOPE_SPAWN_KEEP=kept"), "{out}");
        assert!(lines.contains(&"EXTRA=x y"), "{out}");
    }

    #[test]
    fn a_child_starts_with_sigpipe_at_its_default_and_in_its_own_group() {
        let mut spawner = Spawner::new().expect("spawner");
        // This test process ignores SIGPIPE (Rust does); a shell that inherited that
        // could not be killed by it.
        let script = "test \"$(ps -o pgid= -p $$ | tr -d ' ')\" = $$ || exit 3; kill -PIPE $$; echo survived";
        let (code, out, _) = run(&mut spawner, &plan("/bin/sh", &["-c", script], &[]));
        assert_eq!((code, out.as_str()), (128 + libc::SIGPIPE, ""));
    }

    /// `poolscope-spawn-tool` (echoing 0, 1) in each of two folders, and a spawner whose
    /// PATH is those two.
    fn tool_in_two_folders() -> ([tempfile::TempDir; 2], Spawner) {
        let dirs = [
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        ];
        for (i, dir) in dirs.iter().enumerate() {
            write_executable(
                &dir.path().join("poolscope-spawn-tool"),
                &format!("#!/bin/sh\necho {i}\n"),
            );
        }
        let mut spawner = Spawner::new().expect("spawner");
        spawner.path =
            format!("{}:{}", dirs[0].path().display(), dirs[1].path().display()).into_bytes();
        (dirs, spawner)
    }

    #[test]
    fn a_program_found_on_path_and_then_removed_is_looked_for_again() {
        let (dirs, mut spawner) = tool_in_two_folders();
        let tool = plan("poolscope-spawn-tool", &[], &[]);
        assert_eq!(run(&mut spawner, &tool).1, "0\n");
        std::fs::remove_file(dirs[0].path().join("poolscope-spawn-tool")).expect("rm");
        // The child looks along PATH itself, and the next start looks again.
        assert_eq!(run(&mut spawner, &tool).1, "1\n");
        assert_eq!(run(&mut spawner, &tool).1, "1\n");
        std::fs::remove_file(dirs[1].path().join("poolscope-spawn-tool")).expect("rm");
        let error = try_run(&mut spawner, &tool).expect_err("an error");
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        // Put back, without `#!`: run by sh, found again.
        write_executable(&dirs[1].path().join("poolscope-spawn-tool"), "echo again\n");
        assert_eq!(run(&mut spawner, &tool).1, "again\n");
    }

    #[test]
    fn a_program_found_on_path_that_is_no_longer_executable_is_passed_by() {
        use std::os::unix::fs::PermissionsExt;
        let (dirs, mut spawner) = tool_in_two_folders();
        let tool = plan("poolscope-spawn-tool", &[], &[]);
        let first = dirs[0].path().join("poolscope-spawn-tool");
        assert_eq!(run(&mut spawner, &tool).1, "0\n");
        // As execvp: a file that cannot be run is passed by for the next on PATH.
        std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(run(&mut spawner, &tool).1, "1\n");
        std::fs::remove_file(&first).expect("rm");
        std::fs::create_dir(&first).expect("mkdir");
        assert_eq!(run(&mut spawner, &tool).1, "1\n");
    }

    #[test]
    fn what_cannot_start_says_why() {
        let mut spawner = Spawner::new().expect("spawner");
        let missing = Path::new("/nonexistent-poolscope-dir");
        let dir = tempfile::tempdir().expect("dir");
        let not_executable = dir.path().join("data");
        std::fs::write(&not_executable, "#!/bin/sh\n").expect("write");
        let not_executable = not_executable.to_str().expect("utf-8");
        for (plan, errno) in [
            (
                plan("/nonexistent-poolscope-program", &[], &[]),
                libc::ENOENT,
            ),
            (plan(not_executable, &[], &[]), libc::EACCES),
        ] {
            let error = try_run(&mut spawner, &plan).expect_err("an error");
            assert_eq!(error.raw_os_error(), Some(errno), "{}", plan.program);
        }
        // The folder is named, whether the program's child is waited for or not.
        for _ in 0..2 {
            let in_missing = Plan {
                cwd: Some(missing),
                ..plan("/bin/true", &[], &[])
            };
            let error = try_run(&mut spawner, &in_missing).expect_err("an error");
            assert_eq!(
                error.to_string(),
                "cannot enter the task's folder /nonexistent-poolscope-dir: No such file or \
                 directory (os error 2)"
            );
            assert_eq!(run(&mut spawner, &plan("/bin/true", &[], &[])).0, 0);
        }
    }

    #[test]
    fn a_relative_folder_of_path_is_the_tasks_folder() {
        let dir = tempfile::tempdir().expect("dir");
        write_executable(
            &dir.path().join("poolscope-here-tool"),
            "#!/bin/sh\necho here\n",
        );
        let mut spawner = Spawner::new().expect("spawner");
        spawner.path = b".:/usr/bin:/bin".to_vec();
        let in_dir = Plan {
            cwd: Some(dir.path()),
            ..plan("poolscope-here-tool", &[], &[])
        };
        for _ in 0..2 {
            assert_eq!(run(&mut spawner, &in_dir).1, "here\n");
        }
        let own_path = [("PATH", ".:/usr/bin:/bin")];
        let with_own_path = Plan {
            cwd: Some(dir.path()),
            ..plan("poolscope-here-tool", &[], &own_path)
        };
        assert_eq!(run(&mut spawner, &with_own_path).1, "here\n");
    }

    #[test]
    fn an_executable_without_a_shebang_runs_as_a_shell_script() {
        let dir = tempfile::tempdir().expect("dir");
        let script = dir.path().join("no-shebang");
        write_executable(&script, "echo \"$0 got $*\"\n");
        let script = script.to_str().expect("utf-8");
        let mut spawner = Spawner::new().expect("spawner");
        let (code, out, _) = run(&mut spawner, &plan(script, &["a", "b c"], &[]));
        assert_eq!((code, out), (0, format!("{script} got a b c\n")));
    }

    #[test]
    fn children_started_back_to_back_each_run_their_own_command() {
        // None is waited for until it has exec'd: each must still read its own launch.
        let mut spawner = Spawner::new().expect("spawner");
        let words: Vec<String> = (0..64).map(|i| format!("word-{i}")).collect();
        let children: Vec<Child> = words
            .iter()
            .map(|w| {
                let env = [("POOLSCOPE_WORD", w.as_str())];
                let args = ["-c", "echo \"$0 $POOLSCOPE_WORD\"", w];
                spawner.spawn(&plan("/bin/sh", &args, &env)).expect("spawn")
            })
            .collect();
        for (child, word) in children.into_iter().zip(&words) {
            let mut out = String::new();
            std::fs::File::from(child.stdout)
                .read_to_string(&mut out)
                .expect("stdout");
            assert_eq!(out, format!("{word} {word}\n"));
            let _ = rustix::process::waitid(
                rustix::process::WaitId::PidFd(child.pidfd.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            );
            assert!(matches!(spawner.settled(child.pid), Some(Ok(()))));
        }
        assert!(spawner.launches.iter().all(|l| l.pid.get() == 0));
    }

    #[test]
    fn stdin_is_a_pipe_when_asked_and_null_otherwise() {
        let mut spawner = Spawner::new().expect("spawner");
        let (_, out, _) = run(&mut spawner, &plan("/bin/cat", &[], &[]));
        assert_eq!(out, "");
        let child = spawner
            .spawn(&Plan {
                stdin_piped: true,
                ..plan("/bin/cat", &[], &[])
            })
            .expect("spawn");
        let mut stdin = std::fs::File::from(child.stdin.expect("a pipe"));
        std::io::Write::write_all(&mut stdin, b"typed\n").expect("write");
        drop(stdin);
        let mut out = String::new();
        std::fs::File::from(child.stdout)
            .read_to_string(&mut out)
            .expect("read");
        assert_eq!(out, "typed\n");
        let _ = rustix::process::waitid(
            rustix::process::WaitId::PidFd(child.pidfd.as_fd()),
            rustix::process::WaitIdOptions::EXITED,
        );
    }
}
