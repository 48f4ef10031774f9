//! The pool as a user of the library relies on it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{WAIT, config, drain, stdout_of, until, wait_gone};
use poolscope::executor::{
    CommandError, EventKind, Executor, HaltPolicy, Outcome, PoolConfig, Signal, StdinMode, Stream,
    TaskId, TaskSpec,
};
use poolscope::model::{RunRecord, TaskState};

fn outcome(record: &RunRecord, task: TaskId) -> Outcome {
    record
        .task(task)
        .and_then(|t| t.outcome().cloned())
        .unwrap_or_else(|| {
            panic!(
                "task {task} has no outcome: {:?}",
                record.task(task).map(|t| t.state.clone())
            )
        })
}

/// Max number of intervals overlapping at one instant.
fn max_overlap(intervals: &[(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = intervals
        .iter()
        .flat_map(|&(s, e)| [(s, 1), (e, -1)])
        .collect();
    edges.sort_unstable();
    let (mut now, mut max) = (0, 0);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

#[test]
fn pool_limit_holds_by_the_tasks_own_clocks() {
    for size in [1usize, 3, 8] {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        let (pool, events) = Executor::start(config(size), None);
        let tasks: Vec<TaskSpec> = (0..size * 3 + 2)
            .map(|_| {
                TaskSpec::shell(format!(
                    "date +%s%N > {d}/$POOLSCOPE_TASK_ID.start; sleep 0.05; date +%s%N > {d}/$POOLSCOPE_TASK_ID.end"
                ))
            })
            .collect();
        let ids = pool.submit(tasks).expect("submit");
        pool.close();
        let mut record = RunRecord::default();
        drain(&events, &mut record);
        let read = |id: TaskId, ext: &str| -> u128 {
            std::fs::read_to_string(dir.path().join(format!("{id}.{ext}")))
                .expect("task wrote its timestamp")
                .trim()
                .parse()
                .expect("nanoseconds")
        };
        let intervals: Vec<(u128, u128)> = ids
            .iter()
            .map(|&id| (read(id, "start"), read(id, "end")))
            .collect();
        assert!(
            max_overlap(&intervals) <= size,
            "pool {size}: tasks' own clocks show more than {size} at once"
        );
        assert!(
            record.max_concurrency() <= size,
            "pool {size}: events show more than {size} at once"
        );
        for id in ids {
            assert_eq!(outcome(&record, id), Outcome::Exited(0));
            let slot = record
                .task(id)
                .and_then(|t| t.attempts[0].slot)
                .expect("slot");
            assert!(slot < size, "slot {slot} outside a pool of {size}");
        }
    }
}

#[test]
fn tasks_start_in_submit_order() {
    let (pool, events) = Executor::start(config(3), None);
    let ids = pool
        .submit(
            (0..9)
                .map(|i| TaskSpec::shell(format!("echo {i}")))
                .collect(),
        )
        .expect("submit");
    pool.close();
    let mut started = Vec::new();
    let mut record = RunRecord::default();
    until(&events, &mut record, "drain", |e, _| {
        if let EventKind::Started { task, .. } = e.kind {
            started.push(task);
        }
        matches!(e.kind, EventKind::Drained)
    });
    assert_eq!(started, ids);
}

#[test]
fn tasks_can_be_added_while_the_pool_runs_until_it_is_closed() {
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let first = pool
        .submit_one(TaskSpec::shell("sleep 0.2"))
        .expect("submit");
    until(&events, &mut record, "first start", |e, _| {
        matches!(e.kind, EventKind::Started { .. })
    });
    let late = pool
        .submit_one(TaskSpec::shell("echo late"))
        .expect("submit while running");
    pool.close();
    assert_eq!(
        pool.submit_one(TaskSpec::shell("echo refused")),
        Err(CommandError::PoolClosed)
    );
    assert_eq!(
        CommandError::PoolClosed.to_string(),
        "the pool is closed: it accepts no more tasks"
    );
    drain(&events, &mut record);
    assert_eq!(outcome(&record, first), Outcome::Exited(0));
    assert_eq!(outcome(&record, late), Outcome::Exited(0));
    assert_eq!(stdout_of(&record, late), "late\n");
    assert_eq!(record.task_count(), 2, "the refused task was never queued");
}

#[test]
fn join_needs_a_closed_pool_and_returns_when_all_are_done() {
    let (pool, events) = Executor::start(config(2), None);
    let ids = pool
        .submit((0..4).map(|_| TaskSpec::shell("sleep 0.05")).collect())
        .expect("submit");
    assert_eq!(pool.join(), Err(CommandError::PoolStillOpen));
    pool.close();
    assert_eq!(pool.join_timeout(WAIT), Ok(true));
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    for id in ids {
        assert_eq!(outcome(&record, id), Outcome::Exited(0));
    }
}

#[test]
fn kill_takes_down_grandchildren() {
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let task = pool
        .submit_one(TaskSpec::shell("sleep 100 & echo $!; sleep 100"))
        .expect("submit");
    until(&events, &mut record, "the grandchild's pid", |_, r| {
        stdout_of(r, task).ends_with('\n')
    });
    let grandchild: u32 = stdout_of(&record, task).trim().parse().expect("pid");
    pool.kill(task).expect("kill");
    until(&events, &mut record, "finish", |e, _| {
        matches!(e.kind, EventKind::Finished { .. })
    });
    assert_eq!(
        outcome(&record, task),
        Outcome::Killed,
        "a kill is not reported as exit 143 or SIGTERM"
    );
    assert!(
        wait_gone(grandchild),
        "grandchild {grandchild} survived the kill"
    );
}

#[test]
fn a_task_ignoring_sigterm_is_killed_after_the_grace_period() {
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let task = pool
        .submit_one(TaskSpec::shell(
            "trap '' TERM; echo ready; sleep 100; echo survived",
        ))
        .expect("submit");
    until(&events, &mut record, "ready", |_, r| {
        stdout_of(r, task).contains("ready")
    });
    pool.kill(task).expect("kill");
    until(&events, &mut record, "finish", |e, _| {
        matches!(e.kind, EventKind::Finished { .. })
    });
    assert_eq!(outcome(&record, task), Outcome::Killed);
    assert!(!stdout_of(&record, task).contains("survived"));
}

#[test]
fn timeout_gives_timed_out() {
    let (pool, events) = Executor::start(config(1), None);
    let task = pool
        .submit_one(TaskSpec::program("sleep", ["100"]).with_timeout(Duration::from_millis(200)))
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    assert_eq!(outcome(&record, task), Outcome::TimedOut);
}

/// Why a task failed to start, or a failure naming its outcome.
fn why_not_started(record: &RunRecord, task: TaskId) -> String {
    match outcome(record, task) {
        Outcome::FailedToSpawn(reason) => reason,
        other => panic!("task {task}: expected FailedToSpawn, got {other:?}"),
    }
}

#[test]
fn a_missing_program_fails_to_spawn_and_the_pool_goes_on() {
    let (pool, events) = Executor::start(config(1), None);
    let missing = pool
        .submit_one(TaskSpec::program("/nonexistent/poolscope-test", ["x"]))
        .expect("submit");
    let next = pool
        .submit_one(TaskSpec::shell("echo still here"))
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    let reason = why_not_started(&record, missing);
    assert!(reason.contains("No such file"), "reason: {reason}");
    assert_eq!(outcome(&record, next), Outcome::Exited(0));
    assert_eq!(stdout_of(&record, next), "still here\n");
}

#[test]
fn a_program_removed_after_it_ran_fails_to_start_and_the_pool_goes_on() {
    // Its first start is waited for; the later ones are not (they are found out when
    // the process that was to run them exits).
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("tool");
    common::write_executable(&program, "#!/bin/sh\necho ran $1\n");
    let program = program.to_str().expect("utf-8").to_owned();
    let (pool, events) = Executor::start(config(1), None);
    let first = pool
        .submit_one(TaskSpec::program(&program, ["first"]))
        .expect("submit");
    let remove = pool
        .submit_one(TaskSpec::program("rm", [program.as_str()]))
        .expect("submit");
    let gone = pool
        .submit_one(TaskSpec::program(&program, ["again"]))
        .expect("submit");
    let echo = pool
        .submit_one(TaskSpec::program("/bin/echo", ["here"]))
        .expect("submit");
    let elsewhere = pool
        .submit_one(
            TaskSpec::program("/bin/echo", ["in a missing folder"])
                .with_cwd(dir.path().join("nowhere")),
        )
        .expect("submit");
    let next = pool
        .submit_one(TaskSpec::shell("echo still here"))
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    assert_eq!(stdout_of(&record, first), "ran first\n");
    assert_eq!(outcome(&record, remove), Outcome::Exited(0));
    assert_eq!(stdout_of(&record, echo), "here\n");
    for task in [gone, elsewhere] {
        let reason = why_not_started(&record, task);
        assert!(reason.contains("No such file"), "task {task}: {reason}");
        assert_eq!(stdout_of(&record, task), "");
    }
    assert_eq!(outcome(&record, next), Outcome::Exited(0));
    assert_eq!(stdout_of(&record, next), "still here\n");
}

#[test]
fn stdin_round_trip_through_cat() {
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let task = pool
        .submit_one(TaskSpec::program("cat", Vec::<String>::new()).with_stdin(StdinMode::Pipe))
        .expect("submit");
    until(&events, &mut record, "start", |e, _| {
        matches!(e.kind, EventKind::Started { .. })
    });
    pool.write_stdin(task, b"hello\n".to_vec()).expect("write");
    until(&events, &mut record, "the echo", |_, r| {
        stdout_of(r, task) == "hello\n"
    });
    assert_eq!(record.task(task).map(|t| t.stdin_open), Some(true));
    pool.close_stdin(task).expect("close stdin");
    let mut stdin_closed = false;
    until(&events, &mut record, "finish", |e, _| {
        stdin_closed |= matches!(e.kind, EventKind::StdinClosed { error: None, .. });
        matches!(e.kind, EventKind::Finished { .. })
    });
    assert!(stdin_closed, "closing stdin is reported");
    assert_eq!(outcome(&record, task), Outcome::Exited(0));
    assert_eq!(
        record.task(task).map(|t| t.attempts[0].stdin_bytes),
        Some(6)
    );
}

#[test]
fn preset_stdin_is_written_then_closed() {
    let (pool, events) = Executor::start(config(1), None);
    let task = pool
        .submit_one(
            TaskSpec::program("cat", Vec::<String>::new())
                .with_stdin(StdinMode::Preset(b"set q=mx\nexit\n".to_vec())),
        )
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    assert_eq!(stdout_of(&record, task), "set q=mx\nexit\n");
    assert_eq!(outcome(&record, task), Outcome::Exited(0));
}

#[test]
fn writing_to_a_finished_or_unknown_task_is_an_error() {
    let (pool, events) = Executor::start(config(1), None);
    let task = pool
        .submit_one(TaskSpec::shell("true").with_stdin(StdinMode::Pipe))
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    assert_eq!(
        pool.write_stdin(task, b"x\n".to_vec()),
        Err(CommandError::NotRunning(task))
    );
    assert_eq!(
        pool.write_stdin(TaskId(99), b"x".to_vec()),
        Err(CommandError::UnknownTask(TaskId(99)))
    );
    assert_eq!(pool.kill(task), Err(CommandError::NotRunning(task)));
}

#[test]
fn writing_to_a_null_stdin_is_refused() {
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let task = pool
        .submit_one(TaskSpec::program("sleep", ["100"]))
        .expect("submit");
    until(&events, &mut record, "start", |e, _| {
        matches!(e.kind, EventKind::Started { .. })
    });
    assert_eq!(
        pool.write_stdin(task, b"x".to_vec()),
        Err(CommandError::StdinNotOpen(task))
    );
    pool.terminate();
    drain(&events, &mut record);
}

#[test]
fn sigint_reaches_the_task_and_is_reported_as_a_signal() {
    common::sigint_at_its_default();
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let task = pool
        .submit_one(TaskSpec::program("sleep", ["100"]))
        .expect("submit");
    until(&events, &mut record, "start", |e, _| {
        matches!(e.kind, EventKind::Started { .. })
    });
    pool.signal(task, Signal::SIGINT).expect("signal");
    pool.close();
    drain(&events, &mut record);
    assert_eq!(outcome(&record, task), Outcome::Signaled(2));
    assert_eq!(outcome(&record, task).to_string(), "signal SIGINT");
}

#[test]
fn output_is_kept_as_bytes_and_partial_lines_arrive_at_once() {
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let task = pool
        .submit_one(TaskSpec::shell(
            r"printf '\377\376 子进程\n' >&2; printf 'prompt> '; sleep 100",
        ))
        .expect("submit");
    until(
        &events,
        &mut record,
        "the prompt without newline",
        |_, r| stdout_of(r, task) == "prompt> ",
    );
    pool.terminate();
    drain(&events, &mut record);
    let t = record.task(task).expect("task");
    // Not UTF-8 (0xff 0xfe) and not Latin (子进程): kept byte for byte.
    assert_eq!(
        t.output.stream_bytes(Stream::Stderr),
        b"\xff\xfe \xe5\xad\x90\xe8\xbf\x9b\xe7\xa8\x8b\n".to_vec()
    );
}

#[test]
fn retries_run_a_failing_task_again_and_record_each_attempt() {
    let (pool, events) = Executor::start(
        PoolConfig {
            retries: 2,
            ..config(1)
        },
        None,
    );
    let task = pool
        .submit_one(TaskSpec::shell("echo attempt; exit 3"))
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    let mut retry_flags = Vec::new();
    until(&events, &mut record, "drain", |e, _| {
        if let EventKind::Finished { will_retry, .. } = e.kind {
            retry_flags.push(will_retry);
        }
        matches!(e.kind, EventKind::Drained)
    });
    assert_eq!(retry_flags, vec![true, true, false]);
    let t = record.task(task).expect("task");
    assert_eq!(t.attempts.len(), 3);
    assert!(
        t.attempts
            .iter()
            .all(|a| a.outcome == Some(Outcome::Exited(3)))
    );
    assert_eq!(
        record.completions().len(),
        3,
        "each attempt is a joblog line"
    );
}

#[test]
fn halt_now_on_first_failure_kills_the_rest_and_drops_the_queue() {
    let cfg = PoolConfig {
        halt: HaltPolicy::Now { fail: 1 },
        ..config(2)
    };
    let (pool, events) = Executor::start(cfg, None);
    let mut record = RunRecord::default();
    let ids = pool
        .submit(vec![
            TaskSpec::program("sleep", ["100"]),
            TaskSpec::shell("read x; exit 1").with_stdin(StdinMode::Pipe),
            TaskSpec::shell("echo never"),
        ])
        .expect("submit");
    until(&events, &mut record, "two starts", |_, r| {
        r.count(|s| *s == TaskState::Running) == 2
    });
    pool.write_stdin(ids[1], b"go\n".to_vec()).expect("write");
    drain(&events, &mut record);
    assert_eq!(outcome(&record, ids[1]), Outcome::Exited(1));
    assert_eq!(outcome(&record, ids[0]), Outcome::Killed);
    assert_eq!(
        record.task(ids[2]).map(|t| t.state.clone()),
        Some(TaskState::Cancelled)
    );
    assert!(pool.is_closed());
}

#[test]
fn growing_starts_queued_tasks_and_shrinking_kills_nothing() {
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let ids = pool
        .submit(
            (0..4)
                .map(|_| TaskSpec::program("sleep", ["100"]))
                .collect(),
        )
        .expect("submit");
    until(&events, &mut record, "one start", |e, _| {
        matches!(e.kind, EventKind::Started { .. })
    });
    pool.resize(3);
    until(&events, &mut record, "three running", |_, r| {
        r.count(|s| *s == TaskState::Running) == 3
    });
    pool.resize(1);
    until(&events, &mut record, "the shrink", |e, _| {
        matches!(e.kind, EventKind::Resized { size: 1 })
    });
    assert_eq!(
        record.count(|s| *s == TaskState::Running),
        3,
        "shrinking kills nothing"
    );
    pool.kill(ids[0]).expect("kill");
    until(&events, &mut record, "kill", |e, _| {
        matches!(e.kind, EventKind::Finished { .. })
    });
    // Round trip: the dispatcher has acted on the freed slot before answering.
    let _ = pool.kill(TaskId(999));
    assert_eq!(
        record.task(ids[3]).map(|t| t.state.clone()),
        Some(TaskState::Queued),
        "2 still run, above the size of 1"
    );
    assert_eq!(
        record
            .pool_sizes
            .iter()
            .map(|&(_, s)| s)
            .collect::<Vec<_>>(),
        vec![1, 3, 1]
    );
    pool.terminate();
    drain(&events, &mut record);
}

#[test]
fn a_paused_pool_starts_nothing_until_resumed() {
    let (pool, events) = Executor::start(
        PoolConfig {
            start_paused: true,
            ..config(2)
        },
        None,
    );
    let task = pool
        .submit_one(TaskSpec::shell("echo resumed"))
        .expect("submit");
    let _ = pool.kill(TaskId(999)); // round trip: the dispatcher has had its chance to start it
    let mut record = RunRecord::default();
    while let Some(e) = events.try_recv() {
        record.apply(&e);
    }
    assert_eq!(
        record.task(task).map(|t| t.state.clone()),
        Some(TaskState::Queued)
    );
    pool.resume();
    pool.close();
    drain(&events, &mut record);
    assert_eq!(stdout_of(&record, task), "resumed\n");
}

#[test]
fn dropping_the_executor_leaves_no_task_running() {
    let (pool, events) = Executor::start(config(3), None);
    let mut record = RunRecord::default();
    pool.submit(
        (0..5)
            .map(|_| TaskSpec::shell("sleep 100 & sleep 100"))
            .collect(),
    )
    .expect("submit");
    until(&events, &mut record, "three starts", |_, r| {
        r.count(|s| *s == TaskState::Running) == 3
    });
    let pids: Vec<u32> = record
        .tasks()
        .filter_map(|t| t.last_attempt().and_then(|a| a.pid))
        .collect();
    drop(pool);
    for pid in pids {
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_err(),
            "task process {pid} outlived the executor"
        );
    }
}

#[test]
fn tasks_see_their_slot_and_id_and_settings() {
    let (pool, events) = Executor::start(config(1), None);
    let dir = tempfile::tempdir().expect("tempdir");
    let task = pool
        .submit_one(
            TaskSpec::shell("echo $POOLSCOPE_SLOT $POOLSCOPE_TASK_ID $GREETING $(pwd)")
                .with_env("GREETING", "hi")
                .with_cwd(dir.path()),
        )
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    let cwd = dir.path().canonicalize().expect("canonical");
    assert_eq!(
        stdout_of(&record, task),
        format!("0 1 hi {}\n", cwd.display())
    );
}

#[test]
fn full_output_is_saved_per_attempt_in_the_run_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = PoolConfig {
        output_dir: Some(dir.path().to_owned()),
        ..config(2)
    };
    let (pool, events) = Executor::start(cfg, None);
    let ids = pool
        .submit(vec![
            TaskSpec::shell("echo out; echo err >&2"),
            TaskSpec::shell("seq 3"),
        ])
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    let read = |name: String| std::fs::read_to_string(dir.path().join(name)).expect("saved");
    assert_eq!(read(format!("{}.1.stdout", ids[0])), "out\n");
    assert_eq!(read(format!("{}.1.stderr", ids[0])), "err\n");
    assert_eq!(read(format!("{}.1.stdout", ids[1])), "1\n2\n3\n");
    let by_id: HashMap<TaskId, u64> = record
        .tasks()
        .map(|t| (t.id, t.attempts[0].stdout_bytes))
        .collect();
    assert_eq!(by_id[&ids[1]], 6);
}

#[test]
fn results_layout_has_both_files_and_the_run_folder_only_what_was_written() {
    for create_empty in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = PoolConfig {
            output_dir: Some(dir.path().join("run")),
            create_empty_output_files: create_empty,
            ..config(2)
        };
        let (pool, events) = Executor::start(cfg, None);
        let ids = pool
            .submit(vec![TaskSpec::shell("echo out"), TaskSpec::shell("true")])
            .expect("submit");
        pool.close();
        let mut record = RunRecord::default();
        drain(&events, &mut record);
        let exists = |task: TaskId, stream: &str| {
            dir.path()
                .join("run")
                .join(format!("{task}.1.{stream}"))
                .exists()
        };
        assert_eq!(
            std::fs::read_to_string(dir.path().join(format!("run/{}.1.stdout", ids[0])))
                .expect("saved"),
            "out\n"
        );
        assert_eq!(exists(ids[0], "stderr"), create_empty);
        assert_eq!(exists(ids[1], "stdout"), create_empty);
        assert_eq!(exists(ids[1], "stderr"), create_empty);
    }
}
