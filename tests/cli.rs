//! `poolscope run` as a shell user runs it.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use common::{poolscope, wait_gone};
use poolscope::executor::Outcome;

fn run_with_stdin(args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
    let mut child = poolscope()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start poolscope");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_ref())
        .expect("write");
    child.wait_with_output().expect("wait")
}

/// Checks one line against GNU parallel's joblog columns and number formats.
fn assert_joblog_line(line: &str) {
    let cols: Vec<&str> = line.splitn(9, '\t').collect();
    assert_eq!(cols.len(), 9, "9 columns: {line:?}");
    assert!(cols[0].parse::<u64>().is_ok(), "Seq: {line:?}");
    assert_eq!(cols[1], ":", "Host: {line:?}");
    let (secs, millis) = cols[2].split_once('.').expect("Starttime has decimals");
    assert!(
        secs.len() >= 10 && secs.parse::<u64>().is_ok() && millis.len() == 3,
        "Starttime: {line:?}"
    );
    assert_eq!(
        cols[3].len(),
        10,
        "JobRuntime is right-aligned in 10: {line:?}"
    );
    let runtime = cols[3].trim_start();
    assert!(
        runtime.split_once('.').is_some_and(|(_, d)| d.len() == 3),
        "JobRuntime: {line:?}"
    );
    assert!(runtime.parse::<f64>().is_ok(), "JobRuntime: {line:?}");
    for (i, name) in [(4, "Send"), (5, "Receive"), (7, "Signal")] {
        assert!(cols[i].parse::<u64>().is_ok(), "{name}: {line:?}");
    }
    assert!(cols[6].parse::<i32>().is_ok(), "Exitval: {line:?}");
}

#[test]
fn the_joblog_checker_accepts_real_gnu_parallel_joblogs() {
    for name in ["parallel-joblog-basic.tsv", "parallel-joblog-timeout.tsv"] {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(name),
        )
        .expect("sample");
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(poolscope::model::formats::joblog::HEADER)
        );
        lines.for_each(assert_joblog_line);
    }
}

#[test]
fn stdin_commands_run_and_the_joblog_matches_gnu_parallel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("log.tsv");
    let trace = dir.path().join("trace.json");
    let out = run_with_stdin(
        &[
            "run",
            "-j",
            "2",
            "--joblog",
            joblog.to_str().expect("utf8"),
            "--trace",
            trace.to_str().expect("utf8"),
        ],
        "echo one\necho two\nprintf 'x\\ty'\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Bytes as the tasks wrote them: the last has no newline, and gets none.
    for expected in ["one\n", "two\n", "x\ty"] {
        assert!(stdout.contains(expected), "{stdout:?}");
    }
    let log = std::fs::read_to_string(&joblog).expect("joblog");
    let mut lines = log.lines();
    assert_eq!(
        lines.next(),
        Some("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3);
    for l in &rows {
        assert_joblog_line(l);
    }
    let one = rows
        .iter()
        .find(|l| l.ends_with("\techo one"))
        .expect("row for echo one");
    assert!(
        one.contains("\t0\t4\t0\t0\techo one"),
        "Send 0, Receive 4 bytes, exit 0: {one:?}"
    );

    let events = common::trace_events(&trace);
    let complete: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(complete.len(), 3, "one X event per attempt");
    for e in complete {
        assert!(e["ts"].is_number() && e["dur"].is_number());
        assert!(e["args"]["os_pid"].as_u64().is_some_and(|p| p > 0));
        // The command is the event's name; `args.command` only where it differs.
        let command = e["args"]["command"].as_str().or(e["name"].as_str());
        assert!(command.is_some_and(|c| !c.is_empty()), "{e}");
        assert!(e["tid"].as_u64().is_some_and(|t| t < 2), "tid is the slot");
    }
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "M" && e["name"] == "thread_name")
    );
}

#[test]
fn failures_make_the_exit_status_nonzero_and_retries_are_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("log.tsv");
    let trace = dir.path().join("trace.json");
    let out = run_with_stdin(
        &[
            "run",
            "-j",
            "1",
            "--retries",
            "1",
            "--joblog",
            joblog.to_str().expect("utf8"),
            "--trace",
            trace.to_str().expect("utf8"),
        ],
        "true\nexit 4\n",
    );
    assert_eq!(out.status.code(), Some(1), "one task failed");
    let log = std::fs::read_to_string(&joblog).expect("joblog");
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\t4\t0\texit 4"))
        .collect();
    assert_eq!(failed.len(), 2, "both attempts logged: {log}");
    let x = common::trace_events(&trace)
        .iter()
        .filter(|e| e["ph"] == "X")
        .count();
    assert_eq!(x, 3, "one X event per attempt");
}

#[test]
fn tag_prefixes_each_line_with_what_made_its_task() {
    // A whole command line is tagged with itself, as GNU parallel tags it.
    let printf = r"printf 'a\nb\n'";
    let out = run_with_stdin(&["run", "-j", "1", "--tag"], format!("{printf}\necho c\n"));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{printf}\ta\n{printf}\tb\necho c\tc\n")
    );
    // A template's task with its arguments.
    let out = run_with_stdin(&["run", "-k", "--tag", "echo", "x", ":::", "a b", "c"], "");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a b\tx a b\nc\tx c\n");
}

#[test]
fn a_task_file_runs_with_its_pool_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(&file, "[pool]\nsize = 2\n\n[[task]]\ncommand = \"echo slot=$POOLSCOPE_SLOT item={}\"\ninputs = [\"a\"]\n").expect("write");
    let out = poolscope()
        .args(["run", file.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "slot=0 item=a\n");
}

#[test]
fn a_malformed_task_file_is_reported_with_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(&file, "[pool]\nsize = 0\n[[task]]\ncommand = \"true\"\n").expect("write");
    let out = poolscope()
        .args(["run", file.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: field `pool.size`", file.display())),
        "{stderr}"
    );
}

#[test]
fn sigterm_kills_every_task_and_still_writes_the_joblog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("log.tsv");
    let d = dir.path().display();
    let mut child = poolscope()
        .args([
            "run",
            "-j",
            "2",
            "--kill-grace",
            "0.2",
            "--joblog",
            joblog.to_str().expect("utf8"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let script = format!(
        "echo $$ > {d}/pid.1; exec sleep 100\necho $$ > {d}/pid.2; exec sleep 100\necho never\n"
    );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let pids = common::started_pids(dir.path(), 2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pid in pids {
        assert!(wait_gone(pid), "task {pid} outlived poolscope");
    }
    let log = std::fs::read_to_string(&joblog).expect("joblog");
    // Killed by the user: -1 and 9, told apart from a timeout's -1 and 15.
    let killed = log
        .lines()
        .filter(|l| l.contains("\t-1\t9\texec sleep 100") || l.contains("\t-1\t9\techo $$"))
        .count();
    assert_eq!(killed, 2, "{log}");
    let entries = poolscope::model::formats::joblog::parse(&log, &joblog).expect("parse");
    assert!(
        entries.iter().all(|e| e.outcome() == Outcome::Killed),
        "read back as killed, not timed out: {entries:?}"
    );
}

#[test]
fn view_rejects_a_file_that_is_not_a_joblog_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "hello\n").expect("write");
    let out = poolscope()
        .args(["view", file.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notes.txt:1: not a GNU parallel joblog"),
        "{stderr}"
    );
}

/// Waits for `child` at most `secs`, killing it if it is still running then.
fn wait_within(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_closed_stdout_stops_the_run_as_it_stops_parallel() {
    // `poolscope run echo ::: 1 … 100000 | head -1`: the reader is gone after one line.
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("log.tsv");
    let mut args: Vec<String> = [
        "run",
        "-j",
        "2",
        "--joblog",
        joblog.to_str().expect("utf8"),
        "echo",
        ":::",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend((1..=100_000).map(|i| i.to_string()));
    let mut child = poolscope()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut first,
    )
    .expect("a line");
    // The reader (and the pipe) dropped here, as `head -1` exits.
    let status = wait_within(&mut child, 60).expect("the run stopped");
    assert_eq!(status.code(), Some(141), "the status of a closed pipe");
    let logged = std::fs::read_to_string(&joblog)
        .expect("joblog")
        .lines()
        .count();
    assert!(
        logged < 50_000,
        "the run went on after its reader left: {logged} tasks"
    );
}

#[test]
fn an_argument_file_is_read_as_it_comes() {
    // `:::: FIFO`: the first argument runs while the producer still holds the pipe open.
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("args");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let marker = dir.path().join("ran-first");
    let mut child = poolscope()
        .args([
            "run",
            "-j",
            "1",
            "touch",
            "::::",
            fifo.to_str().expect("utf8"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut producer = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the fifo");
    writeln!(producer, "{}", marker.display()).expect("write");
    producer.flush().expect("flush");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !marker.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        marker.exists(),
        "the first argument ran before the input ended"
    );
    drop(producer);
    let status = wait_within(&mut child, 30).expect("the run ended with its input");
    assert!(status.success());
}

#[test]
fn parallel_style_resume_skips_what_the_joblog_has() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("log.tsv");
    let log = joblog.to_str().expect("utf8");
    let first = run_with_stdin(&["run", "-k", "--joblog", log, "echo", ":::", "a", "b"], "");
    assert!(first.status.success());
    // parallel's `--resume` takes no value: `echo` is the command, not a run folder.
    let again = run_with_stdin(
        &[
            "run", "-k", "--joblog", log, "--resume", "echo", ":::", "a", "b", "c",
        ],
        "",
    );
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), "c\n");
    assert_eq!(
        std::fs::read_to_string(&joblog)
            .expect("joblog")
            .lines()
            .count(),
        4
    );
}

#[test]
fn a_script_without_a_shebang_runs_as_a_shell_runs_it() {
    // A shell (and so GNU parallel and xargs with `sh -c`) runs an executable text file
    // without `#!` as a shell script; a command line that poolscope starts without a
    // shell must too, given as a line or as a command and its arguments.
    let dir = tempfile::tempdir().expect("dir");
    let script = dir.path().join("no-shebang");
    common::write_executable(&script, "echo \"$0 got $*\"\n");
    let script = script.to_str().expect("utf-8");
    let as_line = format!("{script} a b\n");
    for (args, stdin, expected) in [
        (
            vec!["run", "-j", "1"],
            as_line.as_str(),
            format!("{script} got a b\n"),
        ),
        (
            vec!["run", "-k", script, ":::", "x", "y"],
            "",
            format!("{script} got x\n{script} got y\n"),
        ),
    ] {
        let out = run_with_stdin(&args, stdin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }
}

/// The run folders under `runs` (none before it exists), oldest first.
fn run_folders(runs: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(runs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("run-"))
        .collect();
    names.sort_by_key(|name| {
        name.trim_start_matches("run-")
            .split('-')
            .next()
            .and_then(|stamp| stamp.parse::<u128>().ok())
    });
    names
}

#[test]
fn old_runs_beyond_keep_runs_go_and_the_new_one_stays() {
    // Old runs are removed while the new run starts (not before it): the new one must
    // never count among the old, and each run ends with the newest kept.
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let runs_arg = runs.to_str().expect("utf-8 path");
    for round in 1..=4 {
        let before = run_folders(&runs);
        let out = common::run_with_input(&["--keep-runs", "2", "--run-dir", runs_arg], "true\n");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = run_folders(&runs);
        let made: Vec<&String> = after.iter().filter(|r| !before.contains(r)).collect();
        assert_eq!(made.len(), 1, "round {round}: {before:?} -> {after:?}");
        assert_eq!(after.len(), round.min(2), "round {round}: {after:?}");
        // The newest of the old runs stays beside the new one.
        if let Some(newest_before) = before.last() {
            assert!(
                after.contains(newest_before),
                "round {round}: {before:?} -> {after:?}"
            );
        }
    }
}

#[test]
fn a_run_root_that_cannot_be_written_is_refused_before_any_task_runs() {
    // /proc is a folder nobody can make a run folder in, root included.
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let out = common::run_with_input(
        &["--run-dir", "/proc"],
        &format!("touch {}\n", marker.display()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(
        stderr.contains("/proc"),
        "the error names the run root: {stderr}"
    );
    assert!(!marker.exists(), "a task ran without a run folder");
}

/// `poolscope run < tasks.txt`: a small file is read before the run starts (no reader
/// thread), so it must give what a pipe gives: every task, in order, and a line that
/// cannot be a command stops the reading there, named, after the tasks before it ran.
#[test]
fn a_task_list_redirected_from_a_file_runs_as_a_piped_one_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["run", "-j", "2", "--no-journal", "--keep-order"];
    let run = |text: &[u8], from_file: bool| -> Output {
        if !from_file {
            return run_with_stdin(&args, text);
        }
        let list = dir.path().join("tasks.txt");
        std::fs::write(&list, text).expect("write the list");
        poolscope()
            .args(args)
            .stdin(Stdio::from(std::fs::File::open(&list).expect("open")))
            .output()
            .expect("run poolscope")
    };
    // More than one batch of commands (4096), still a small file.
    let numbers: Vec<String> = (1..=5000).map(|i| i.to_string()).collect();
    let many: String = numbers
        .iter()
        .map(|i| ["echo ", i, "\n"].concat())
        .collect();
    let expected: String = numbers.iter().map(|i| [i, "\n"].concat()).collect();
    for from_file in [true, false] {
        let out = run(many.as_bytes(), from_file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            expected,
            "from a file: {from_file}"
        );
        let out = run(b"echo a\n\xff\xfe\necho c\n", from_file);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "a\n",
            "from a file: {from_file}"
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("stdin line 2 is not UTF-8"),
            "from a file: {from_file}: {said}"
        );
        assert!(!out.status.success());
    }
}
