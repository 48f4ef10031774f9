//! Helpers shared by the integration tests: every wait is bounded.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use poolscope::executor::{Event, EventKind, Events, PoolConfig};
use poolscope::model::RunRecord;

pub const WAIT: Duration = Duration::from_secs(30);

pub fn config(size: usize) -> PoolConfig {
    PoolConfig {
        size,
        kill_grace: Duration::from_millis(300),
        ..PoolConfig::default()
    }
}

/// Apply events until `done` says so; panics if that takes longer than [`WAIT`].
pub fn until(
    events: &Events,
    record: &mut RunRecord,
    what: &str,
    done: impl FnMut(&Event, &RunRecord) -> bool,
) -> Event {
    until_within(WAIT, events, record, what, done)
}

/// [`until`] with a bound of its own, for runs that move gigabytes.
pub fn until_within(
    limit: Duration,
    events: &Events,
    record: &mut RunRecord,
    what: &str,
    mut done: impl FnMut(&Event, &RunRecord) -> bool,
) -> Event {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(event) = events.recv_timeout(left) else {
            panic!("timed out after {limit:?} waiting for {what}");
        };
        record.apply(&event);
        if done(&event, record) {
            return event;
        }
    }
}

/// Apply events until the pool reports it has drained.
pub fn drain(events: &Events, record: &mut RunRecord) {
    until(events, record, "the pool to drain", |e, _| {
        matches!(e.kind, EventKind::Drained)
    });
}

/// All of a task's stdout held in the record.
pub fn stdout_of(record: &RunRecord, task: poolscope::executor::TaskId) -> String {
    record.task(task).map_or_else(String::new, |t| {
        String::from_utf8_lossy(&t.output.stream_bytes(poolscope::executor::Stream::Stdout))
            .into_owned()
    })
}

/// The `poolscope` binary built for these tests, keeping its runs in a folder of this
/// test process (not the tester's data directory).
pub fn poolscope() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_poolscope"));
    command.env("POOLSCOPE_RUN_DIR", runs_dir());
    command
}

/// The run root [`poolscope`] gives the binary.
pub fn runs_dir() -> std::path::PathBuf {
    static RUNS: std::sync::LazyLock<tempfile::TempDir> =
        std::sync::LazyLock::new(|| tempfile::tempdir().expect("tempdir"));
    RUNS.path().join("runs")
}

/// A process's peak resident memory in KiB (`VmHWM`, which only grows), `None` once
/// it is gone. `"self"` reads this test process's own.
pub fn peak_rss_kib(pid: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Whether a process is gone: no /proc entry, or a zombie waiting for someone else
/// (a reparented grandchild); bounded poll because no event exists for a non-child.
/// Write `text` to `path` as an executable file (a script, a stand-in program).
pub fn write_executable(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A process's state letter in /proc (`R`, `S`, `T`, `Z`…), if it exists.
pub fn state_of(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may hold any
    // character: read after the last ')'.
    stat.rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().next())
        .map(str::to_owned)
}

/// Whether a process is stopped (SIGSTOP).
pub fn is_stopped(pid: u32) -> bool {
    state_of(pid).is_some_and(|s| s == "T")
}

pub fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match state_of(pid).as_deref() {
            None | Some("Z" | "X") => return true,
            Some(_) => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The PID a task wrote to `path`, once the whole number is there (the shell creates
/// the file before it writes to it); polled, bounded.
pub fn written_pid<T: std::str::FromStr<Err: std::fmt::Debug>>(path: &std::path::Path) -> T {
    let deadline = Instant::now() + WAIT;
    // No event reaches this test from another process: poll the file.
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.ends_with('\n') {
            return text.trim().parse().expect("number");
        }
        assert!(
            Instant::now() < deadline,
            "{} never held a PID",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll (bounded) until every `dir/pid.N` for N in 1..=n holds a PID; those PIDs.
pub fn started_pids(dir: &std::path::Path, n: u32) -> Vec<u32> {
    (1..=n)
        .map(|i| written_pid(&dir.join(format!("pid.{i}"))))
        .collect()
}

/// Whether a Slurm controller answers here; if not, says that `test` is skipped and why
/// (`scripts/slurm_up.sh` starts one; `.ci/run` does).
pub fn slurm_answers(test: &str) -> bool {
    let up = std::process::Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"));
    if !up {
        eprintln!(
            "SKIPPED {test}: no Slurm controller answers here (run scripts/slurm_up.sh as root)"
        );
    }
    up
}

/// A tiny tmpfs, unmounted when dropped; `None` (with a note) where mounting is not
/// allowed (not root, or no `CAP_SYS_ADMIN`).
pub struct SmallDisk {
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Self { dir })
        } else {
            eprintln!(
                "SKIPPED: cannot mount a small tmpfs here (needs root); the full-disk case is not tested"
            );
            None
        }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// The folder of the one run under `runs` once it exists (a live run's is made before
/// its first task starts); polled, bounded.
pub fn the_run(runs: &std::path::Path) -> std::path::PathBuf {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = std::fs::read_dir(runs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("journal.jsonl").exists());
        if let Some(run) = found {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "no run folder in {}",
            runs.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `poolscope run ARGS` with `input` on its stdin, left running (poolscope may refuse
/// the input before reading all of it: a write error is not a test failure).
pub fn start_run(args: &[&str], input: &str) -> std::process::Child {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = poolscope()
        .arg("run")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("poolscope run");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    child
}

/// The line of `stderr` that reports `task` (as `task 1 (echo a)`), or a failure that
/// says it is missing.
pub fn line_about<'a>(stderr: &'a str, task: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.contains(task))
        .unwrap_or_else(|| panic!("{task} is not reported: {stderr}"))
}

/// SIGTERM to a `poolscope run` started by [`start_run`], then its end: its exit code and
/// its stderr.
pub fn interrupt(child: std::process::Child) -> (Option<i32>, String) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `poolscope run --resume` of the one run under `runs`, to its end: its stdout's lines,
/// sorted, and its stderr.
pub fn resume_sorted(runs: &std::path::Path) -> (Vec<String>, String) {
    let run = the_run(runs);
    let out = run_with_input(&["--resume", &run.to_string_lossy()], "");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    (lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `poolscope run ARGS` with `input`, to its end.
pub fn run_with_input(args: &[&str], input: &str) -> std::process::Output {
    start_run(args, input).wait_with_output().expect("wait")
}

pub mod synthetic;

/// A Chrome trace's worker tracks (pid 2): each track's tid and the worker PID its name
/// says ("worker PID (slot N)").
pub fn worker_pids_by_track(
    events: &[serde_json::Value],
) -> std::collections::HashMap<u64, String> {
    events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["pid"] == 2)
        .filter_map(|e| {
            let pid = e["args"]["name"]
                .as_str()?
                .strip_prefix("worker ")?
                .split_once(' ')?
                .0
                .to_owned();
            Some((e["tid"].as_u64()?, pid))
        })
        .collect()
}

/// A Chrome trace file's events (its `traceEvents`).
pub fn trace_events(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("the trace");
    let trace: serde_json::Value = serde_json::from_str(&text).expect("the trace is JSON");
    trace["traceEvents"]
        .as_array()
        .expect("traceEvents")
        .clone()
}

/// SIGINT back to its default in this test process, for tests that interrupt a task: a
/// task keeps what its parent ignores (as `nohup` relies on for SIGHUP), and a test run
/// started in the background by a script ignores SIGINT, so its tasks would too (and
/// `sh` cannot trap it).
pub fn sigint_at_its_default() {
    // SAFETY: sets this process's disposition of one signal, which no test handles.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}
