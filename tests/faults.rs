//! Faults: poolscope killed outright, and what it must still guarantee.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    WAIT, config, drain, poolscope, run_with_input, started_pids, stdout_of, wait_gone, written_pid,
};
use poolscope::executor::{Executor, Outcome, StdinMode, Stream, TaskSpec};
use poolscope::model::RunRecord;

#[test]
fn sigkill_of_poolscope_leaves_no_task_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    // One task ends on SIGTERM; the other ignores it and must be SIGKILLed.
    let script = format!(
        "echo $$ > {d}/pid.1; exec sleep 3011\n\
         trap '' TERM; echo $$ > {d}/pid.2; while :; do sleep 1; done\n"
    );
    let mut child = poolscope()
        .args(["run", "-j", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("poolscope run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let pids = started_pids(dir.path(), 2);
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    for pid in pids {
        assert!(wait_gone(pid), "task {pid} outlived a SIGKILLed poolscope");
    }
}

/// The joblog's sequence numbers, in file order, and whether each succeeded.
fn joblog_seqs(path: &std::path::Path) -> Vec<(u64, bool)> {
    let text = std::fs::read_to_string(path).expect("joblog");
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (
                cols[0].parse().expect("seq"),
                cols[6] == "0" && cols[7] == "0",
            )
        })
        .collect()
}

#[test]
fn a_run_killed_midway_resumes_from_its_joblog_and_runs_each_task_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("joblog");
    let d = dir.path().display();
    let input = (1..=200)
        .map(|i| format!("sleep 0.02; touch {d}/done.{i}"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let mut child = poolscope()
        .args(["run", "-j", "4", "--joblog"])
        .arg(&joblog)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("poolscope run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    // Kill it once some tasks are in the joblog (polled: no event crosses processes).
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&joblog).map_or(0, |t| t.lines().count()) < 21 {
        assert!(Instant::now() < deadline, "no task finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let before = joblog_seqs(&joblog);
    assert!(before.len() < 200, "the kill came before the end");
    for &(seq, ok) in &before {
        // Nothing is in the joblog that did not finish, and it finished well.
        assert!(ok, "task {seq}");
        assert!(
            dir.path().join(format!("done.{seq}")).exists(),
            "task {seq}"
        );
    }

    let out = run_with_input(
        &["-j", "4", "--resume", "--joblog", &joblog.to_string_lossy()],
        &input,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = joblog_seqs(&joblog);
    let mut seqs: Vec<u64> = after.iter().map(|&(s, _)| s).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "each task once");
    assert!(after.iter().all(|&(_, ok)| ok));
    // The resume ran exactly the rest: what was logged before is still first, unchanged.
    assert_eq!(after[..before.len()], before[..]);
}

#[test]
fn resume_failed_runs_the_failed_tasks_again_and_skips_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("joblog");
    let flag = dir.path().join("fixed");
    let input = format!("true\ntest -e {}\ntrue\n", flag.display());
    let first = run_with_input(&["--joblog", &joblog.to_string_lossy()], &input);
    assert_eq!(first.status.code(), Some(1));
    std::fs::write(&flag, "").expect("fix");
    let out = run_with_input(
        &["--resume-failed", "--joblog", &joblog.to_string_lossy()],
        &input,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seqs = joblog_seqs(&joblog);
    assert_eq!(seqs.len(), 4, "{seqs:?}");
    assert_eq!(
        seqs[3],
        (2, true),
        "only task 2 ran again, and kept its number"
    );
}

#[test]
fn a_joblog_torn_by_a_crash_resumes_without_its_cut_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("joblog");
    let header = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";
    std::fs::write(
        &joblog,
        format!("{header}\n1\t:\t1795860000.000\t     0.001\t0\t0\t0\t0\ttrue\n2\t:\t17958"),
    )
    .expect("write");
    let out = run_with_input(
        &["--resume", "--joblog", &joblog.to_string_lossy()],
        "true\ntrue\ntrue\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("last line was cut off"), "{stderr}");
    assert!(stderr.contains("2 of 3 tasks to run"), "{stderr}");
    // The cut line is gone; tasks 2 and 3 follow task 1 as whole lines.
    let seqs: Vec<u64> = joblog_seqs(&joblog).iter().map(|&(s, _)| s).collect();
    assert_eq!(seqs.len(), 3, "{seqs:?}");
    assert_eq!(seqs[0], 1);
}

#[test]
fn a_run_killed_midway_resumes_from_its_run_folder_as_new_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let joblog = dir.path().join("joblog");
    let input = (1..=200)
        .map(|i| format!("sleep 0.02; echo task {i}"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let mut child = poolscope()
        .env("POOLSCOPE_RUN_DIR", &runs)
        .args(["run", "-j", "4", "--joblog"])
        .arg(&joblog)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("poolscope run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&joblog).map_or(0, |t| t.lines().count()) < 21 {
        assert!(Instant::now() < deadline, "no task finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let run = std::fs::read_dir(&runs)
        .expect("runs")
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("the run's folder");

    // The journal holds every task the joblog says finished, with its outcome; the
    // tasks that were running are lost, not failed.
    let loaded = poolscope::model::store::journal::load(&run).expect("journal");
    assert!(!loaded.clean);
    for (seq, _) in joblog_seqs(&joblog) {
        let task = loaded
            .record
            .task(poolscope::executor::TaskId(seq))
            .expect("in the journal");
        assert_eq!(
            task.outcome(),
            Some(&poolscope::executor::Outcome::Exited(0))
        );
    }
    assert_eq!(loaded.record.task_count(), 200);
    assert!(loaded.lost() <= 4, "at most the pool's size was running");
    // The joblog may trail the journal (its lines wait for the journal), never lead it:
    // the resume runs what the journal did not see finish.
    assert!(joblog_seqs(&joblog).len() <= loaded.record.succeeded());
    let unfinished = 200 - loaded.record.succeeded();

    let out = poolscope()
        .env("POOLSCOPE_RUN_DIR", &runs)
        .args(["run", "--resume"])
        .arg(&run)
        .output()
        .expect("resume");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{unfinished} of 200 tasks to run")),
        "{stderr}"
    );
    // Exactly the unfinished tasks ran: their lines, each once.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().count(), unfinished, "{printed}");

    let resumed = poolscope::model::store::journal::load(&run).expect("journal");
    assert!(resumed.clean, "{:?}", resumed.dropped);
    assert_eq!(resumed.record.succeeded(), 200);
    assert_eq!(resumed.lost(), 0);
    // A lost task ran again as its second attempt.
    let lost_before: Vec<_> = loaded
        .record
        .tasks()
        .filter(|t| t.state == poolscope::model::TaskState::Lost)
        .map(|t| t.id)
        .collect();
    for id in lost_before {
        let task = resumed.record.task(id).expect("task");
        assert_eq!(task.attempts.len(), 2, "task {id}");
    }
}

#[test]
fn an_unusable_run_folder_stops_the_run_before_any_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, "").expect("write");
    let marker = dir.path().join("ran");
    let out = poolscope()
        .args(["run", "--run-dir"])
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let line = format!("touch {}\n", marker.display());
            // poolscope may have stopped before this is written: that is what is tested.
            match child
                .stdin
                .take()
                .expect("stdin")
                .write_all(line.as_bytes())
            {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                _ => {}
            }
            child.wait_with_output()
        })
        .expect("poolscope run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("is not a folder"), "{stderr}");
    assert!(!marker.exists(), "no task ran");
}

/// Run `specs` then one more task on a pool of 2; the record, and whether the task after
/// them still ran (the pool goes on).
fn run_then_one_more(specs: Vec<TaskSpec>) -> (RunRecord, Vec<poolscope::executor::TaskId>, bool) {
    let (pool, events) = Executor::start(config(2), None);
    let ids: Vec<_> = specs
        .into_iter()
        .map(|spec| pool.submit_one(spec).expect("submit"))
        .collect();
    let after = pool
        .submit_one(TaskSpec::shell("echo after"))
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    let went_on = stdout_of(&record, after) == "after\n";
    (record, ids, went_on)
}

fn outcome_of(record: &RunRecord, id: poolscope::executor::TaskId) -> Outcome {
    record
        .task(id)
        .and_then(|t| t.outcome().cloned())
        .expect("an outcome")
}

#[test]
fn a_task_that_closes_its_stdout_early_still_ends_with_its_stderr() {
    let (record, ids, went_on) = run_then_one_more(vec![TaskSpec::shell(
        "echo before; exec 1>&-; sleep 0.2; echo still talking >&2",
    )]);
    assert!(went_on);
    assert_eq!(outcome_of(&record, ids[0]), Outcome::Exited(0));
    assert_eq!(stdout_of(&record, ids[0]), "before\n");
    let task = record.task(ids[0]).expect("task");
    let stderr = String::from_utf8_lossy(&task.output.stream_bytes(Stream::Stderr)).into_owned();
    assert_eq!(stderr, "still talking\n");
}

#[test]
fn a_task_that_closes_all_its_output_and_runs_on_ends_when_it_exits() {
    // Its output closes long before its exit: the end is the exit's, with its code.
    let (record, ids, went_on) = run_then_one_more(vec![TaskSpec::shell(
        "echo bye; exec >&- 2>&-; sleep 0.3; exit 3",
    )]);
    assert!(went_on);
    assert_eq!(outcome_of(&record, ids[0]), Outcome::Exited(3));
    assert_eq!(stdout_of(&record, ids[0]), "bye\n");
    let attempt = record.attempt(ids[0], 1).expect("attempt");
    let ran = attempt
        .ended
        .expect("ended")
        .saturating_sub(attempt.started);
    assert!(
        ran >= Duration::from_millis(300),
        "ended at its exit: {ran:?}"
    );
}

#[test]
fn a_task_that_floods_stderr_is_counted_in_full_and_the_pool_goes_on() {
    let (record, ids, went_on) = run_then_one_more(vec![TaskSpec::shell(
        "head -c 50000000 /dev/zero | tr '\\0' x >&2",
    )]);
    assert!(went_on);
    assert_eq!(outcome_of(&record, ids[0]), Outcome::Exited(0));
    let attempt = record.attempt(ids[0], 1).expect("attempt");
    assert_eq!(attempt.stderr_bytes, 50_000_000);
}

#[test]
fn a_task_that_exits_while_its_stdin_is_written_ends_normally() {
    // 8 MiB of preset input; `head` reads 10 bytes and exits: the rest cannot be written.
    let input = vec![b'y'; 8 << 20];
    let (record, ids, went_on) = run_then_one_more(vec![
        TaskSpec::program("head", ["-c", "10"]).with_stdin(StdinMode::Preset(input)),
    ]);
    assert!(went_on);
    assert_eq!(outcome_of(&record, ids[0]), Outcome::Exited(0));
    assert_eq!(stdout_of(&record, ids[0]), "yyyyyyyyyy");
    let attempt = record.attempt(ids[0], 1).expect("attempt");
    assert!(attempt.stdin_bytes < 8 << 20, "not all of it was taken");
}

#[test]
fn a_task_that_leaves_its_session_is_out_of_reach_as_documented() {
    // `setsid` makes a new session and process group: no signal to the task's group, nor
    // the orphan guard, reaches it. The task itself ends as usual.
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("escaped");
    let (record, ids, went_on) = run_then_one_more(vec![TaskSpec::shell(format!(
        "setsid -f sh -c 'echo $$ > {}; exec sleep 30' >/dev/null 2>&1",
        pid_file.display()
    ))]);
    assert!(went_on);
    assert_eq!(outcome_of(&record, ids[0]), Outcome::Exited(0));
    let pid: i32 = written_pid(&pid_file);
    // It outlived its task: poolscope cannot reach it (README: "Not reachable").
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(alive, "a process in a session of its own outlives its task");
}
