//! Starting a task's process with the parent's share of the work done once per pool.
//!
//! std's `Command::spawn` (glibc's `posix_spawn` underneath) copies the whole environment
//! into a fresh map for every child, opens `/dev/null` again, maps a new stack for the
//! child and unmaps it after (which, in a process with several threads, costs a TLB flush
//! on every CPU running one of them), and a pidfd then takes a system call of its own.
//! Here the environment is read once, `/dev/null` is opened once, the child's stack is
//! kept, a program found on `PATH` is remembered, and `clone(CLONE_VM | CLONE_VFORK |
//! CLONE_PIDFD)` returns the pidfd with the child. The child then does what glibc's
//! `posix_spawn` child does: its own process group, signal handlers back to default
//! (those that have one, known once per pool), nothing blocked, the three descriptors,
//! the directory, `execve`.

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_int, c_void};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

/// A started child: its pidfd and the parent's ends of its pipes.
pub struct Child {
    pub pid: u32,
    pub pidfd: OwnedFd,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

pub struct Spawner {
    /// Never zeroed (the child only pushes onto it): zeroing it cost 64 page faults.
    stack: Vec<u128>,
    /// `KEY=VALUE` of the environment when the pool started, with the key's length.
    env: Vec<(CString, usize)>,
    /// `PATH` as the pool started (the children's, unless a task sets its own).
    path: Vec<u8>,
    dev_null: OwnedFd,
    /// Where a bare program name was found on the pool's `PATH`, or that it was not.
    found: HashMap<String, Option<CString>>,
    /// The signals the child puts back to their default (see [`signals_to_reset`]).
    reset: Vec<c_int>,
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
        Ok(Self {
            stack: Vec::with_capacity(STACK_BYTES / 16),
            env,
            path,
            dev_null,
            found: HashMap::new(),
            reset: signals_to_reset(),
        })
    }

    pub fn spawn(&mut self, plan: &Plan<'_>) -> io::Result<Child> {
        let remembered = !plan.program.contains('/')
            && !plan.env.iter().any(|(k, _)| *k == "PATH")
            && matches!(self.found.get(plan.program), Some(Some(_)));
        let result = match self.spawn_once(plan) {
            // Found here before, gone since: look again.
            Err(e) if remembered && e.raw_os_error() == Some(libc::ENOENT) => {
                self.found.remove(plan.program);
                self.spawn_once(plan)
            }
            other => other,
        };
        match result {
            // An executable file without `#!`: a shell script, as execvp and every shell
            // run it (`sh FILE ARGS…`).
            Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
                let file = self.executable(plan)?;
                let file = file.to_str().map_err(|_| e)?;
                let args: Vec<&str> = std::iter::once(file)
                    .chain(plan.args.iter().copied())
                    .collect();
                self.spawn_once(&Plan {
                    program: "/bin/sh",
                    args: &args,
                    ..*plan
                })
            }
            other => other,
        }
    }

    fn spawn_once(&mut self, plan: &Plan<'_>) -> io::Result<Child> {
        let path = self.executable(plan)?;
        let argv_owned = std::iter::once(plan.program)
            .chain(plan.args.iter().copied())
            .map(CString::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv: Vec<*const c_char> = argv_owned.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let extra = plan
            .env
            .iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut envp: Vec<*const c_char> = Vec::with_capacity(self.env.len() + extra.len() + 1);
        for (entry, key_len) in &self.env {
            let key = &entry.as_bytes()[..*key_len];
            if !plan.env.iter().any(|(k, _)| k.as_bytes() == key) {
                envp.push(entry.as_ptr());
            }
        }
        envp.extend(extra.iter().map(|e| e.as_ptr()));
        envp.push(std::ptr::null());
        let cwd = plan
            .cwd
            .map(|dir| CString::new(dir.as_os_str().as_bytes()))
            .transpose()?;

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
        let mut child = ChildPlan {
            path: path.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            fds: [stdin_fd, stdout_write.as_raw_fd(), stderr_write.as_raw_fd()],
            reset: self.reset.as_ptr(),
            reset_len: self.reset.len(),
            error: 0,
        };
        let (pid, pidfd) = clone_child(self.stack.spare_capacity_mut(), &mut child)?;
        // The child's ends now live in the child only.
        drop((stdin_read, stdout_write, stderr_write));
        Ok(Child {
            pid,
            pidfd,
            stdin: stdin_write,
            stdout: stdout_read,
            stderr: stderr_read,
        })
    }

    /// Whether a bare program name is on the pool's `PATH` (remembered, found or not):
    /// whether a plain command line can be started without `sh`.
    pub fn on_path(&mut self, program: &str) -> bool {
        if let Some(found) = self.found.get(program) {
            return found.is_some();
        }
        let found = search_path(&self.path, program).ok();
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
            return search_path(own_path.as_bytes(), plan.program);
        }
        if let Some(Some(found)) = self.found.get(plan.program) {
            return Ok(found.clone());
        }
        let found = search_path(&self.path, plan.program)?;
        self.found
            .insert(plan.program.to_owned(), Some(found.clone()));
        Ok(found)
    }
}

/// Where `program` is on `path` as execvp finds it: the first executable regular file;
/// else why not (`EACCES` if one was there but not executable).
fn search_path(path: &[u8], program: &str) -> io::Result<CString> {
    let mut denied = false;
    for dir in path.split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let mut candidate = dir.to_vec();
        candidate.push(b'/');
        candidate.extend_from_slice(program.as_bytes());
        let candidate = CString::new(candidate)?;
        let is_file = rustix::fs::stat(candidate.as_c_str())
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file());
        if !is_file {
            continue;
        }
        if rustix::fs::access(candidate.as_c_str(), rustix::fs::Access::EXEC_OK).is_err() {
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

/// Everything the child needs, prepared by the parent: the child may not allocate or
/// take a lock (it shares the parent's memory, and another thread may hold one).
#[repr(C)]
struct ChildPlan {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    cwd: *const c_char,
    /// What becomes the child's stdin, stdout, stderr.
    fds: [c_int; 3],
    /// Signals to put back to their default if they have a handler.
    reset: *const c_int,
    reset_len: usize,
    /// Set by the child when it could not exec: the errno.
    error: c_int,
}

/// Start the child on `stack`; returns once it has exec'd (or failed to, and exited).
#[allow(unsafe_code)]
fn clone_child(
    stack: &mut [std::mem::MaybeUninit<u128>],
    plan: &mut ChildPlan,
) -> io::Result<(u32, OwnedFd)> {
    // SAFETY: the sigset functions only write the sets given; the child entry point
    // touches nothing but `plan` (see `child_main`), and CLONE_VFORK keeps this thread,
    // and so `plan` and `stack`, where they are until the child has exec'd or exited.
    // The pidfd is a new descriptor owned by nobody else.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut all);
        // No handler of ours may run in the child before it has reset them.
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const all, &raw mut before);
        let top = stack.as_mut_ptr().add(stack.len()).cast::<c_void>();
        let mut pidfd: c_int = -1;
        let pid = libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
            std::ptr::from_mut(plan).cast::<c_void>(),
            &raw mut pidfd,
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const before, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd);
        let error = std::ptr::read_volatile(&raw const plan.error);
        if error != 0 {
            // It exited without exec'ing: reap it.
            let _ = rustix::process::waitid(
                rustix::process::WaitId::PidFd(pidfd.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            );
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok((pid.cast_unsigned(), pidfd))
    }
}

/// The child, between clone and exec: system calls only.
#[allow(unsafe_code)]
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildPlan`, alive and untouched while the parent
    // is suspended (CLONE_VFORK); every pointer in it is valid and NUL-terminated. Only
    // async-signal-safe calls follow.
    unsafe {
        let plan = &mut *arg.cast::<ChildPlan>();
        if libc::setpgid(0, 0) != 0 {
            fail(plan);
        }
        // Handlers are the parent's code: back to default before anything is unblocked.
        // An ignored signal stays ignored, as across exec, but SIGPIPE, which a Rust
        // parent ignores, is the default again (as std gives its children).
        let mut action: libc::sigaction = std::mem::zeroed();
        for &sig in std::slice::from_raw_parts(plan.reset, plan.reset_len) {
            if libc::sigaction(sig, std::ptr::null(), &raw mut action) != 0 {
                continue;
            }
            let handled =
                action.sa_sigaction != libc::SIG_DFL && action.sa_sigaction != libc::SIG_IGN;
            if handled || (sig == libc::SIGPIPE && action.sa_sigaction == libc::SIG_IGN) {
                action.sa_sigaction = libc::SIG_DFL;
                action.sa_flags = 0;
                libc::sigaction(sig, &raw const action, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
        // A source among 0..2 could be overwritten by an earlier dup2: move it up first.
        let mut fds = plan.fds;
        for fd in &mut fds {
            if *fd < 3 {
                *fd = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
                if *fd < 0 {
                    fail(plan);
                }
            }
        }
        for (target, fd) in (0..).zip(fds) {
            if libc::dup2(fd, target) < 0 {
                fail(plan);
            }
        }
        if !plan.cwd.is_null() && libc::chdir(plan.cwd) != 0 {
            fail(plan);
        }
        libc::execve(plan.path, plan.argv, plan.envp);
        fail(plan)
    }
}

/// Say why in the parent's memory, and exit as a shell does for a command not run.
#[allow(unsafe_code)]
unsafe fn fail(plan: &mut ChildPlan) -> ! {
    // SAFETY: the child's errno is readable; `_exit` ends only the child.
    unsafe {
        let errno = *libc::__errno_location();
        std::ptr::write_volatile(
            &raw mut plan.error,
            if errno == 0 { libc::EIO } else { errno },
        );
        libc::_exit(127)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Run a plan to its end: (exit code or 128 + signal, stdout, stderr).
    fn run(spawner: &mut Spawner, plan: &Plan<'_>) -> (i32, String, String) {
        let child = spawner.spawn(plan).expect("spawn");
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
        (code, out, err)
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

    #[test]
    fn a_program_found_on_path_and_then_removed_is_looked_for_again() {
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
        let tool = plan("poolscope-spawn-tool", &[], &[]);
        assert_eq!(run(&mut spawner, &tool).1, "0\n");
        std::fs::remove_file(dirs[0].path().join("poolscope-spawn-tool")).expect("rm");
        assert_eq!(run(&mut spawner, &tool).1, "1\n");
        std::fs::remove_file(dirs[1].path().join("poolscope-spawn-tool")).expect("rm");
        let error = spawner.spawn(&tool).err().expect("an error");
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
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
            (
                Plan {
                    cwd: Some(missing),
                    ..plan("/bin/true", &[], &[])
                },
                libc::ENOENT,
            ),
        ] {
            let error = spawner.spawn(&plan).err().expect("an error");
            assert_eq!(error.raw_os_error(), Some(errno), "{}", plan.program);
        }
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
