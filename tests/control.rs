//! Driving live runs from another terminal: `poolscope add / ls / status / follow / log /
//! send / kill / close` against real `poolscope run` processes, as a user's second
//! terminal would.

mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::WAIT;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_poolscope"))
}

/// A `poolscope run` in its own runs folder, reachable once it said so.
struct Live {
    child: Child,
    root: PathBuf,
    id: String,
    /// Its stderr lines after the one naming the run.
    stderr: mpsc::Receiver<String>,
    /// All it printed on stdout, once it ended (read all along: a run whose stdout is
    /// not read stops, as any program does).
    stdout: mpsc::Receiver<String>,
    scratch: Option<tempfile::TempDir>,
}

impl Live {
    /// `poolscope run --serve ARGS` (with `--serve` left out when `served` is false).
    fn start(served: bool, args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        Self::start_in(tmp, served, args)
    }

    fn start_in(tmp: tempfile::TempDir, served: bool, args: &[&str]) -> Self {
        let root = tmp.path().join("runs");
        let mut live = Self::start_at(root, served, args);
        live.scratch = Some(tmp);
        live
    }

    /// A run kept under `root` (several runs may share it).
    fn start_at(root: PathBuf, served: bool, args: &[&str]) -> Self {
        Self::start_limited(root, "", served, args)
    }

    /// [`Live::start_at`] under shell `limits` (`ulimit -n 64`), run first.
    fn start_limited(root: PathBuf, limits: &str, served: bool, args: &[&str]) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{limits}\nexec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_poolscope"));
        command.arg("run").arg("--run-dir").arg(&root);
        if served {
            command.arg("--serve");
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start poolscope run");
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut out = child.stdout.take().expect("stdout");
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        let mut live = Self {
            child,
            root,
            id: String::new(),
            stderr,
            stdout,
            scratch: None,
        };
        if served {
            let said = live.stderr_line_with("serving run");
            live.id.push_str(
                said.split_whitespace()
                    .nth(3)
                    .expect("the run's id")
                    .trim_end_matches(':'),
            );
        } else {
            let id = live.wait_for_socket();
            live.id = id;
        }
        live
    }

    /// The run's id, once its socket is there (a run that is not served says nothing).
    fn wait_for_socket(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = std::fs::read_dir(&self.root).ok().and_then(|entries| {
                entries.flatten().find_map(|e| {
                    e.path()
                        .join("control.sock")
                        .exists()
                        .then(|| e.file_name().to_string_lossy().into_owned())
                })
            });
            if let Some(id) = found {
                return id;
            }
            assert!(Instant::now() < deadline, "the run never listened");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr_line_with(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("no stderr line with {text:?}: {e}"),
            }
        }
    }

    fn dir(&self) -> PathBuf {
        self.root.join(&self.id)
    }

    /// `poolscope SUBCOMMAND --run-dir ROOT --run ID ARGS`, with `stdin`.
    fn client(&self, subcommand: &str, args: &[&str], stdin: &[u8]) -> Output {
        client_of(&self.root, Some(&self.id), subcommand, args, stdin)
    }

    fn ok(&self, subcommand: &str, args: &[&str]) -> String {
        let out = self.client(subcommand, args, b"");
        assert!(
            out.status.success(),
            "poolscope {subcommand} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// Wait for the run to end; its exit status and stdout.
    fn wait(mut self) -> (i32, String) {
        let text = self.stdout.recv_timeout(WAIT).expect("the run ended");
        let status = self.child.wait().expect("wait");
        (status.code().unwrap_or(-1), text)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_of(
    root: &Path,
    run: Option<&str>,
    subcommand: &str,
    args: &[&str],
    stdin: &[u8],
) -> Output {
    let mut command = bin();
    command.arg(subcommand).arg("--run-dir").arg(root);
    if let Some(run) = run {
        command.arg("--run").arg(run);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = wait_output(child);
    let _ = writer.join();
    out
}

/// A child's output, waited for at most [`WAIT`].
fn wait_output(child: Child) -> Output {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    if let Ok(out) = rx.recv_timeout(WAIT) {
        return out.expect("output");
    }
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    panic!("the child (PID {pid}) did not end within {WAIT:?}");
}

fn live_ids(root: &Path) -> Vec<String> {
    let out = client_of(root, None, "ls", &["--json"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls --json");
    runs.as_array()
        .expect("a list")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn a_task_added_from_another_terminal_runs_is_journaled_and_survives_a_resume() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let joblog = tmp.path().join("joblog");
    let joblog_arg = joblog.display().to_string();
    let live = Live::start_at(
        tmp.path().join("runs"),
        true,
        &["-j", "2", "--joblog", &joblog_arg],
    );
    assert_eq!(live.ok("add", &["--", "echo", "added", "here"]).trim(), "1");
    let follow = live.client("follow", &["1"], b"");
    assert_eq!(String::from_utf8_lossy(&follow.stdout), "added here\n");
    assert_eq!(follow.status.code(), Some(0));
    // Paused, the next one is queued and not started when poolscope is killed.
    live.ok("pause", &[]);
    assert_eq!(live.ok("add", &["--", "echo resumed"]).trim(), "2");
    let status = live.ok("status", &["--json", "2"]);
    let tasks: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(tasks[0]["state"], "queued", "{status}");
    let dir = live.dir();
    let root = live.root.clone();
    drop(live); // SIGKILL
    assert!(live_ids(&root).is_empty(), "a killed run is not live");
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).expect("journal");
    assert!(
        journal.contains("echo resumed"),
        "the added task is journaled"
    );
    let resumed = wait_output(
        bin()
            .arg("run")
            .arg("--resume")
            .arg(&dir)
            .arg("--joblog")
            .arg(&joblog)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("resume"),
    );
    assert_eq!(
        String::from_utf8_lossy(&resumed.stdout),
        "resumed\n",
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(resumed.status.code(), Some(0));
    let joblog = std::fs::read_to_string(&joblog).expect("joblog");
    assert!(joblog.contains("echo added here"), "{joblog}");
    assert!(joblog.contains("echo resumed"), "{joblog}");
}

#[test]
fn follow_prints_the_whole_output_and_ends_with_the_task_s_exit_code() {
    let live = Live::start(true, &[]);
    let id = live.ok(
        "add",
        &[
            "--",
            "seq 1 50000; sleep 0.3; seq 50001 100000 >&2; seq 100001 100002; exit 7",
        ],
    );
    let follow = live.client("follow", &[id.trim()], b"");
    let lines = |numbers: &mut dyn Iterator<Item = u32>| {
        numbers.fold(String::new(), |mut text, n| {
            let _ = writeln!(text, "{n}");
            text
        })
    };
    let expected = lines(&mut (1..=50000).chain(100_001..=100_002));
    assert_eq!(String::from_utf8_lossy(&follow.stdout), expected);
    let expected_err = lines(&mut (50001..=100_000));
    assert_eq!(String::from_utf8_lossy(&follow.stderr), expected_err);
    assert_eq!(follow.status.code(), Some(7));
    // Afterwards, log has the same, and status the outcome.
    let log = live.client("log", &[id.trim()], b"");
    assert_eq!(String::from_utf8_lossy(&log.stdout), expected);
    assert!(live.ok("status", &[]).contains("exit 7"));
    live.ok("close", &[]);
    let (code, stdout) = live.wait();
    assert_eq!(code, 1, "one task failed");
    assert!(
        stdout.ends_with("100002\n"),
        "the run printed the task's output too"
    );
}

#[test]
fn send_drives_an_interactive_task_from_a_second_process() {
    let live = Live::start(true, &[]);
    let id = live.ok("add", &["--stdin", "interactive", "--", "bc", "-q"]);
    let id = id.trim().to_owned();
    // Follow it from one process while another types to it.
    let mut follow = bin()
        .args(["follow", "--run-dir"])
        .arg(&live.root)
        .args(["--run", &live.id, &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("follow");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    live.ok("send", &[&id, "6*7"]);
    assert_eq!(lines.next().expect("a line").expect("read"), "42");
    live.ok("send", &[&id, "2^10"]);
    assert_eq!(lines.next().expect("a line").expect("read"), "1024");
    live.ok("send", &[&id, "--eof"]);
    assert!(lines.next().is_none(), "bc ended at end of input");
    let status = follow.wait().expect("follow ends");
    assert_eq!(status.code(), Some(0));
    // Sending to a task that has ended is refused, saying why.
    let late = live.client("send", &[&id, "1+1"], b"");
    assert!(!late.status.success());
    assert!(String::from_utf8_lossy(&late.stderr).contains("not running"));
}

#[test]
fn many_tasks_from_stdin_are_added_in_one_call_all_journaled_and_queued() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let live = Live::start_at(tmp.path().join("runs"), true, &["-j", "4"]);
    // Paused: the tasks are added and journaled, not run (30 000 processes take minutes
    // on a loaded machine; running added tasks is shown by the other tests).
    live.ok("pause", &[]);
    let commands = (1..=30_000).fold(String::new(), |mut text, n| {
        let _ = writeln!(text, "echo {n}");
        text
    });
    let out = live.client("add", &[], commands.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1-20000\n20001-30000\n"
    );
    let status = live.ok("status", &["--json"]);
    let tasks: serde_json::Value = serde_json::from_str(&status).expect("json");
    let tasks = tasks.as_array().expect("tasks");
    assert_eq!(tasks.len(), 30_000);
    assert_eq!(tasks[29_999]["name"], "echo 30000");
    assert!(tasks.iter().all(|t| t["state"] == "queued"));
    let journal = std::fs::read_to_string(live.dir().join("journal.jsonl")).expect("journal");
    assert!(journal.contains("echo 30000"));
    // They run once the pool goes on: the first is over soon after.
    live.ok("resume", &[]);
    assert_eq!(live.client("follow", &["1"], b"").status.code(), Some(0));
    live.ok("terminate", &[]);
    drop(live);
}

#[test]
fn a_headless_run_takes_additions_while_its_own_tasks_run_then_ends_as_before() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fifo = tmp.path().join("gate");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let wait_on_gate = format!("cat {}", fifo.display());
    let live = Live::start_in(tmp, false, &["-j", "1", ":::", &wait_on_gate]);
    assert_eq!(
        live.ok("add", &["--", "echo", "from", "a", "client"])
            .trim(),
        "2"
    );
    let listed =
        String::from_utf8(client_of(&live.root, None, "ls", &[], b"").stdout).expect("utf-8");
    assert!(listed.contains("headless"), "{listed}");
    // The gate opens: the run's own task ends, the added one runs, and the run ends.
    std::fs::write(&fifo, "opened\n").expect("write the fifo");
    let (code, stdout) = live.wait();
    assert_eq!(code, 0);
    assert_eq!(stdout, "opened\nfrom a client\n");
}

#[test]
fn garbage_on_the_socket_is_answered_with_an_error_and_the_pool_goes_on() {
    let live = Live::start(true, &[]);
    let socket = live.dir().join("control.sock");
    let mut stream = UnixStream::connect(&socket).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut reply = String::new();
    for garbage in [
        &b"hello\n"[..],
        b"\n",
        b"{\"v\":1,\"op\":\"fly\"}\n",
        b"{\"v\":99,\"op\":\"pause\"}\n",
        b"\xff\xfe\x00\n",
    ] {
        stream.write_all(garbage).expect("write");
        reply.clear();
        reader.read_line(&mut reply).expect("a reply");
        assert!(reply.starts_with("{\"error\":"), "{reply}");
    }
    // A line longer than any request is refused as soon as it is, before its end,
    // without being held.
    let long = vec![b'x'; 17 << 20];
    stream.write_all(&long).expect("write");
    reply.clear();
    reader.read_line(&mut reply).expect("a reply");
    assert!(reply.contains("too long"), "{reply}");
    stream.write_all(b"still the same line\n").expect("write");
    // The same connection still works.
    stream
        .write_all(b"{\"v\":1,\"op\":\"add\",\"tasks\":[{\"command\":\"echo ok\"}]}\n")
        .expect("write");
    reply.clear();
    reader.read_line(&mut reply).expect("a reply");
    assert!(reply.contains("\"added\""), "{reply}");
    // A client that hangs up mid-request added nothing.
    let mut cut = UnixStream::connect(&socket).expect("connect");
    cut.write_all(b"{\"v\":1,\"op\":\"add\",\"tasks\":[{\"command\":\"echo half\"}")
        .expect("write");
    drop(cut);
    let status = live.ok("status", &["--json"]);
    let tasks: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(tasks.as_array().expect("tasks").len(), 1, "{status}");
    live.ok("close", &[]);
    let (code, stdout) = live.wait();
    assert_eq!((code, stdout.as_str()), (0, "ok\n"));
}

#[test]
fn ls_lists_exactly_the_live_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("runs");
    let a = Live::start_at(root.clone(), true, &[]);
    let b = Live::start_at(root.clone(), true, &[]);
    let ids = live_ids(&root);
    assert_eq!(ids, [a.id.clone(), b.id.clone()]);
    // Without --run, a client refuses to guess between two.
    let guess = client_of(&root, None, "status", &[], b"");
    assert!(!guess.status.success());
    assert!(String::from_utf8_lossy(&guess.stderr).contains("2 runs are live"));
    // One closed and ended, one SIGKILLed (its socket left behind): none is listed.
    a.ok("close", &[]);
    let (code, _) = a.wait();
    assert_eq!(code, 0);
    assert_eq!(live_ids(&root), std::slice::from_ref(&b.id));
    let b_dir = b.dir();
    drop(b);
    assert!(
        b_dir.join("control.sock").exists(),
        "a killed run leaves its socket"
    );
    assert!(live_ids(&root).is_empty(), "a SIGKILLed run is not live");
    let gone = client_of(&root, None, "status", &[], b"");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no live run"));
}

#[test]
fn another_user_is_refused_and_the_run_goes_on() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to run a client as nobody");
        return;
    }
    let live = Live::start(true, &[]);
    let dir = live.dir();
    let as_nobody = || {
        wait_output(
            Command::new("setpriv")
                .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_poolscope"))
                .args(["status", "--run"])
                .arg(&dir)
                .env("HOME", "/nonexistent")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("setpriv"),
        )
    };
    let denied = as_nobody();
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    // Even with the folders opened by mistake, the run checks who connects.
    let mut path = dir.join("control.sock");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    while path.pop() && path != Path::new("/") {
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o055))
            .expect("chmod");
    }
    let refused = as_nobody();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("only its user may drive it"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(live.ok("add", &["--", "echo", "mine"]).trim(), "1");
    live.ok("close", &[]);
    let (code, stdout) = live.wait();
    assert_eq!((code, stdout.as_str()), (0, "mine\n"));
}

#[test]
fn a_resumed_run_numbers_tasks_added_to_it_after_its_own() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("runs");
    let live = Live::start_at(root.clone(), true, &[]);
    assert_eq!(live.ok("add", &["--", "sleep 600"]).trim(), "1");
    assert_eq!(live.ok("add", &["--", "echo second"]).trim(), "2");
    assert_eq!(live.client("follow", &["2"], b"").status.code(), Some(0));
    let dir = live.dir();
    drop(live); // SIGKILL: task 1 is lost, task 2 done.
    let dir_arg = dir.display().to_string();
    let resumed = Live::start_at(root, true, &["--resume", &dir_arg]);
    assert_eq!(resumed.id, dir.file_name().expect("name").to_string_lossy());
    assert_eq!(resumed.ok("add", &["--", "echo third"]).trim(), "3");
    let status = resumed.ok("status", &["--json", "3"]);
    let tasks: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(tasks[0]["name"], "echo third", "{status}");
    resumed.ok("kill", &["1"]);
    resumed.ok("close", &[]);
    let (code, stdout) = resumed.wait();
    assert_eq!((code, stdout.as_str()), (1, "third\n"), "task 1 was killed");
    // The journal has it under the same number.
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).expect("journal");
    let queued = journal
        .lines()
        .find(|l| l.contains("echo third"))
        .expect("journaled");
    assert!(queued.contains("\"task\":3"), "{queued}");
}

#[test]
fn a_stopped_run_is_reported_by_ls_and_answers_once_continued() {
    let live = Live::start(true, &[]);
    let pid = live.child.id().to_string();
    let signal = |name: &str| {
        assert!(
            Command::new("kill")
                .args([name, &pid])
                .status()
                .expect("kill")
                .success()
        );
    };
    signal("-STOP");
    let listed = client_of(&live.root, None, "ls", &[], b"");
    let said = String::from_utf8_lossy(&listed.stderr);
    assert!(said.contains("did not answer"), "{said}");
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&live.id));
    // A request made while it is stopped is answered when it goes on.
    let waiting = bin()
        .args(["add", "--run-dir"])
        .arg(&live.root)
        .args(["--run", &live.id, "--", "echo", "later"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("add");
    signal("-CONT");
    let added = wait_output(waiting);
    assert_eq!(String::from_utf8_lossy(&added.stdout), "1\n");
    live.ok("close", &[]);
    let (code, stdout) = live.wait();
    assert_eq!((code, stdout.as_str()), (0, "later\n"));
}

/// `poolscope CLIENT --run-dir ROOT --run ID ARGS`, started with `stdin`, not waited for.
fn spawn_client(live: &Live, subcommand: &str, args: &[&str], stdin: Stdio) -> Child {
    bin()
        .arg(subcommand)
        .arg("--run-dir")
        .arg(&live.root)
        .args(["--run", &live.id])
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client")
}

#[test]
fn an_add_the_disk_cannot_hold_is_refused_whole_and_later_adds_still_go_in() {
    // Files may grow to 1 or 2 MiB here (dash's blocks or bash's), as on a nearly full
    // disk: the journal has no room for 20 000 more tasks.
    let tmp = tempfile::tempdir().expect("tempdir");
    let live = Live::start_limited(
        tmp.path().join("runs"),
        "trap '' XFSZ; ulimit -f 2048",
        true,
        &[],
    );
    live.ok("pause", &[]);
    let many = (0..20_000).fold(String::new(), |mut text, i| {
        let _ = writeln!(text, "echo refused-{i:0>60}");
        text
    });
    let out = live.client("add", &[], many.as_bytes());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the add was refused");
    assert!(said.contains("journal"), "{said}");
    let journal = live.dir().join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).expect("journal");
    assert!(
        !text.contains("refused-"),
        "nothing of a refused add is in the journal"
    );
    // The run goes on and takes what fits.
    assert_eq!(live.ok("add", &["--", "echo", "fits"]).trim(), "1");
    live.ok("resume", &[]);
    live.ok("close", &[]);
    let dir = live.dir();
    let (code, stdout) = live.wait();
    assert_eq!((code, stdout.as_str()), (0, "fits\n"));
    // A resume finds nothing left to run: the refused tasks were never the run's.
    let resumed = wait_output(
        bin()
            .arg("run")
            .arg("--resume")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("resume"),
    );
    let said = String::from_utf8_lossy(&resumed.stderr);
    assert!(said.contains("0 of 1 tasks to run"), "{said}");
    assert_eq!(String::from_utf8_lossy(&resumed.stdout), "");
}

#[test]
fn endless_or_unreadable_input_to_add_is_refused_by_what_is_wrong() {
    let live = Live::start(true, &[]);
    let zero = || Stdio::from(std::fs::File::open("/dev/zero").expect("/dev/zero"));
    // One endless line: refused at once by its number, not read into memory.
    let out = wait_output(spawn_client(&live, "add", &[], zero()));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("line 1") && said.contains("longer than"),
        "{said}"
    );
    // Endless input for one task: refused once past the most a task is given.
    let out = wait_output(spawn_client(
        &live,
        "add",
        &["--stdin", "text", "--", "wc", "-c"],
        zero(),
    ));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("more than 8 MiB"), "{said}");
    // A line that is not text is refused by its number, and nothing of its batch added.
    let out = live.client("add", &[], b"echo fine\n\xff\xfe\n");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("line 2 is not UTF-8"), "{said}");
    // Input that is not text is given to a task as it is.
    let out = live.client(
        "add",
        &["--stdin", "text", "--", "od", "-An", "-tx1"],
        b"\xff\x00\xfe",
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(id, "1", "{}", String::from_utf8_lossy(&out.stderr));
    let follow = live.client("follow", &[&id], b"");
    assert_eq!(String::from_utf8_lossy(&follow.stdout).trim(), "ff 00 fe");
    live.ok("close", &[]);
    assert_eq!(live.wait().0, 0);
}

#[test]
fn add_from_stdin_waits_for_room_in_a_full_queue_and_then_adds_the_rest() {
    let live = Live::start(true, &["--queue-limit", "5", "-j", "2"]);
    live.ok("pause", &[]);
    let ten = (1..=10).fold(String::new(), |mut text, i| {
        let _ = writeln!(text, "echo {i}");
        text
    });
    // Into an empty queue a batch goes in whole, whatever the limit.
    assert_eq!(
        live.client("add", &[], ten.as_bytes()).status.code(),
        Some(0)
    );
    let mut waiting = spawn_client(&live, "add", &[], Stdio::piped());
    waiting
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"echo 11\n")
        .expect("write");
    let (tx, said) = mpsc::channel();
    let err = waiting.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = said.recv_timeout(WAIT).expect("the client says it waits");
    assert!(first.contains("queue is full"), "{first}");
    // A single add is refused, saying why.
    let out = live.client("add", &["--", "echo", "one"], b"");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("queue is full"),
        "{out:?}"
    );
    live.ok("resume", &[]);
    let added = wait_output(waiting);
    assert_eq!(String::from_utf8_lossy(&added.stdout), "11\n");
    live.ok("close", &[]);
    let (code, stdout) = live.wait();
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 11, "{stdout}");
}

#[test]
fn a_run_folder_deeper_than_a_socket_path_is_still_reachable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("d".repeat(90)).join("runs");
    let live = Live::start_at(root.clone(), true, &[]);
    assert!(live.dir().join("control.sock").as_os_str().len() > 108);
    assert_eq!(live.ok("add", &["--", "echo", "deep"]).trim(), "1");
    assert_eq!(live_ids(&root), vec![live.id.clone()]);
    live.ok("close", &[]);
    assert_eq!(live.wait(), (0, "deep\n".to_owned()));
}

#[test]
fn follow_and_log_give_all_of_a_long_output_even_to_a_slow_reader() {
    let live = Live::start(true, &[]);
    // More than the run keeps in memory, and more than a follower may fall behind by.
    let size: usize = 80 << 20;
    let command = format!("head -c {size} /dev/zero | tr '\\0' a; exit 3");
    let id = live.ok("add", &["--", &command]).trim().to_owned();
    // This follower reads nothing until the task is over.
    let mut slow = spawn_client(&live, "follow", &[&id], Stdio::null());
    let deadline = Instant::now() + WAIT * 4;
    while !live.ok("status", &[&id]).contains("exit 3") {
        assert!(Instant::now() < deadline, "the task never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut bytes = Vec::new();
    slow.stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut bytes)
        .expect("read");
    let out = wait_output(slow);
    assert_eq!(
        bytes.len(),
        size,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bytes.iter().all(|&b| b == b'a'));
    assert_eq!(out.status.code(), Some(3));
    let log = live.client("log", &[&id], b"");
    assert_eq!(log.stdout.len(), size);
    live.ok("close", &[]);
    drop(live);
}

#[test]
fn follow_of_a_task_a_signal_ends_exits_as_a_shell_would() {
    let live = Live::start(true, &[]);
    let id = live.ok("add", &["--", "kill -TERM $$"]).trim().to_owned();
    let follow = live.client("follow", &[&id], b"");
    assert_eq!(follow.status.code(), Some(128 + 15));
    live.ok("close", &[]);
    assert_eq!(live.wait().0, 1);
}

#[test]
fn with_few_descriptors_idle_clients_leave_room_and_one_too_many_hears_busy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let live = Live::start_limited(tmp.path().join("runs"), "ulimit -n 64", true, &[]);
    let socket = live.dir().join("control.sock");
    // A quarter of 64 descriptors: 16 clients at once.
    let mut idle = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let listed = client_of(&live.root, None, "ls", &[], b"");
        let said = String::from_utf8_lossy(&listed.stderr).into_owned();
        if said.contains("busy") {
            assert!(said.contains("16 clients"), "{said}");
            if idle.len() >= 16 {
                break;
            }
            // The last `ls`, gone, may be counted until its thread ends: ask again.
            assert!(
                Instant::now() < deadline,
                "busy with {} idle: {said}",
                idle.len()
            );
            continue;
        }
        assert!(
            idle.len() < 64 && Instant::now() < deadline,
            "never busy: {said}"
        );
        idle.push(UnixStream::connect(&socket).expect("connect"));
    }
    let out = live.client("add", &["--", "echo", "x"], b"");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("busy"),
        "{out:?}"
    );
    // The run's own tasks still get their descriptors.
    drop(idle);
    let deadline = Instant::now() + WAIT;
    let id = loop {
        let out = live.client("add", &["--", "echo", "ran"], b"");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        assert!(Instant::now() < deadline, "{out:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(live.client("follow", &[&id], b"").status.code(), Some(0));
    live.ok("close", &[]);
    assert_eq!(live.wait(), (0, "ran\n".to_owned()));
}

#[test]
fn a_queued_task_can_be_killed_before_it_starts() {
    let live = Live::start(true, &[]);
    live.ok("pause", &[]);
    assert_eq!(live.ok("add", &["--", "echo", "never"]).trim(), "1");
    assert_eq!(live.ok("add", &["--", "echo", "runs"]).trim(), "2");
    live.ok("kill", &["1"]);
    // The pool's word of it reaches the record a moment after the kill is answered.
    let deadline = Instant::now() + WAIT;
    loop {
        let status = live.ok("status", &["--json", "1"]);
        let tasks: serde_json::Value = serde_json::from_str(&status).expect("json");
        if tasks[0]["state"] == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    live.ok("resume", &[]);
    live.ok("close", &[]);
    let (_, stdout) = live.wait();
    assert_eq!(stdout, "runs\n");
}

#[test]
fn add_keeps_each_word_of_a_command_as_the_user_quoted_it() {
    let live = Live::start(true, &[]);
    // Several words: a program and its arguments, each as given.
    let id = live.ok(
        "add",
        &["--", "sh", "-c", "echo one; echo 'two  spaces'; exit 3"],
    );
    let follow = live.client("follow", &[id.trim()], b"");
    assert_eq!(
        String::from_utf8_lossy(&follow.stdout),
        "one\ntwo  spaces\n"
    );
    assert_eq!(follow.status.code(), Some(3));
    // One word: a shell command line.
    let id = live.ok("add", &["--", "echo a; echo b"]);
    let follow = live.client("follow", &[id.trim()], b"");
    assert_eq!(String::from_utf8_lossy(&follow.stdout), "a\nb\n");
    live.ok("close", &[]);
    assert_eq!(live.wait().0, 1);
}
