//! "Nothing lost, nothing left running", second pass: each case an unlucky user met,
//! numbered as in the issue that found it, asserting what the user would check.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};

use common::{SmallDisk, the_run, wait_gone};
use poolscope::executor::{Outcome, TaskId};
use poolscope::model::journal;

/// `poolscope run ARGS` with `input` on its stdin, left running.
fn start_run(args: &[&str], input: &str) -> Child {
    let mut child = common::poolscope()
        .arg("run")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("poolscope run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    child
}

/// `poolscope run ARGS` with `input`, to its end.
fn run_with_input(args: &[&str], input: &str) -> std::process::Output {
    start_run(args, input).wait_with_output().expect("wait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A run of two tasks that write their PID, then wait for `DIR/stop`; returned once
/// both run.
fn long_run(runs: &Path, pids: &Path) -> (Child, Vec<u32>) {
    let d = pids.display();
    let wait = format!("while [ ! -e {d}/stop ]; do sleep 0.05; done");
    let input = format!("echo $$ > {d}/pid.1; {wait}\necho $$ > {d}/pid.2; {wait}\n");
    let child = start_run(&["-j", "2", "--run-dir", &path_arg(runs)], &input);
    let started = common::started_pids(pids, 2);
    (child, started)
}

fn stop(mut child: Child, pids: &[u32]) {
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    for &pid in pids {
        assert!(wait_gone(pid), "task {pid} outlived its poolscope");
    }
}

#[test]
fn finding_1_another_runs_cleanup_never_removes_a_live_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let (child, pids) = long_run(&runs, dir.path());
    let live = the_run(&runs);
    // A short run beside it that keeps only one run: its own.
    let out = run_with_input(
        &["--keep-runs", "1", "--run-dir", &path_arg(&runs)],
        "true\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        live.join("journal.jsonl").is_file(),
        "the live run's folder was removed under it"
    );
    stop(child, &pids);
    // After its poolscope is gone, it can be resumed (and then, once ended, pruned).
    let loaded = journal::load(&live).expect("the killed run's journal loads");
    assert_eq!(loaded.record.tasks.len(), 2);
    assert_eq!(loaded.lost(), 2);
}

#[test]
fn finding_2_a_second_resume_of_a_live_run_is_refused_and_nothing_runs_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let (child, pids) = long_run(&runs, dir.path());
    let live = the_run(&runs);
    let out = common::poolscope()
        .args(["run", "--resume"])
        .arg(&live)
        .output()
        .expect("resume");
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    let holder = format!("in use by poolscope (PID {})", child.id());
    assert!(stderr.contains(&holder), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out.stdout));
    let journal_text = std::fs::read_to_string(live.join("journal.jsonl")).expect("journal");
    assert!(
        !journal_text.contains("\"end\""),
        "the refused resume wrote nothing"
    );
    stop(child, &pids);
    // Its holder gone, the run is taken over: the lost tasks run again, once.
    std::fs::write(dir.path().join("stop"), "").expect("stop file");
    let out = common::poolscope()
        .args(["run", "--resume"])
        .arg(&live)
        .stdin(Stdio::null())
        .output()
        .expect("resume");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("2 of 2 tasks to run"), "{stderr}");
    let (_, done) = successes(&live);
    assert_eq!(done, vec![(TaskId(1), 1), (TaskId(2), 1)]);
}

/// The run's tasks that succeeded, and how many successful attempts each had.
fn successes(run: &Path) -> (usize, Vec<(TaskId, usize)>) {
    let loaded = journal::load(run).expect("journal");
    let tasks = loaded.record.tasks.len();
    let done = loaded
        .record
        .tasks
        .iter()
        .map(|t| {
            let ok = t
                .attempts
                .iter()
                .filter(|a| a.outcome.as_ref().is_some_and(Outcome::is_success))
                .count();
            (t.id, ok)
        })
        .filter(|&(_, ok)| ok > 0)
        .collect();
    (tasks, done)
}

#[test]
fn finding_3_a_disk_that_fills_mid_run_then_resume_runs_exactly_the_rest() {
    // Room for the list of 6000 tasks (1.2 MB) and the journal's reserve, not the run.
    let Some(disk) = SmallDisk::mount(2 << 20) else {
        return;
    };
    let runs = disk.path().join("runs");
    let tasks = 6000;
    let out = run_with_input(
        &["-j", "2", "--run-dir", &path_arg(&runs)],
        &"echo x\n".repeat(tasks),
    );
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("journal.jsonl") && stderr.contains("No space left"),
        "the message names the file and the cause: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let run = the_run(&runs);
    let (listed, done_before) = successes(&run);
    assert_eq!(listed, tasks, "the journal knows every task of the run");
    assert!(
        !done_before.is_empty() && done_before.len() < tasks,
        "the run stopped part way: {} done",
        done_before.len()
    );

    // On a disk with room, the run goes on: exactly the rest runs, each task once.
    let roomy = tempfile::tempdir().expect("tempdir");
    let moved = roomy.path().join(run.file_name().expect("name"));
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&run)
        .arg(&moved)
        .status()
        .expect("cp");
    assert!(copied.success());
    let out = common::poolscope()
        .args(["run", "--resume"])
        .arg(&moved)
        .stdin(Stdio::null())
        .output()
        .expect("resume");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rest = tasks - done_before.len();
    assert!(
        stderr.contains(&format!("{rest} of {tasks} tasks to run")),
        "{stderr}"
    );
    assert_eq!(
        text(&out.stdout).lines().count(),
        rest,
        "each of the rest once"
    );
    let (listed, done_after) = successes(&moved);
    assert_eq!(listed, tasks);
    assert_eq!(done_after.len(), tasks, "every task succeeded");
    assert!(
        done_after.iter().all(|&(_, ok)| ok == 1),
        "no task succeeded twice"
    );
}

#[test]
fn finding_3_a_task_list_that_does_not_fit_on_the_disk_starts_nothing() {
    let Some(disk) = SmallDisk::mount(2 << 20) else {
        return;
    };
    let runs = disk.path().join("runs");
    let marker = disk.path().join("ran");
    let input = format!("touch {}\n", marker.display()).repeat(20_000);
    let out = run_with_input(&["-j", "2", "--run-dir", &path_arg(&runs)], &input);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no task was started"), "{stderr}");
    assert!(stderr.contains("No space left"), "{stderr}");
    assert!(!marker.exists(), "a task ran");
    let left: Vec<_> = std::fs::read_dir(&runs)
        .expect("runs")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
        .collect();
    assert!(
        left.is_empty(),
        "no half-written run is left to resume: {left:?}"
    );
}

#[test]
fn finding_3_results_on_a_full_disk_end_the_run_nonzero_naming_the_file() {
    let Some(disk) = SmallDisk::mount(1 << 20) else {
        return;
    };
    let results = disk.path().join("out");
    let out = run_with_input(
        &["--results", &path_arg(&results)],
        "head -c 3000000 /dev/zero | tr '\\0' x\n",
    );
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    let file = results.join("1.1.stdout");
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("No space left"),
        "{stderr}"
    );
}

#[test]
fn finding_12_every_output_path_is_checked_before_the_first_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let input = format!("touch {}\n", marker.display());
    let missing = dir.path().join("no/such/folder/trace.json");
    let out = run_with_input(&["--trace", &path_arg(&missing)], &input);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(
        !marker.exists(),
        "the task ran before the trace path was checked"
    );
    // The OS's words once, not twice.
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );

    let out = run_with_input(&["--joblog", "/dev/full"], &input);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("/dev/full"), "{stderr}");
    assert!(
        !marker.exists(),
        "the task ran though its joblog cannot be written"
    );
}
