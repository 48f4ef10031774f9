//! What must hold whatever happens: causal order, byte counts that add up, no process
//! left after an error or a panic, background children handled as the task says, and a
//! stdin queue that cannot grow without bound.

mod common;

use common::{WAIT, config, drain, stdout_of, until, wait_gone};
use poolscope::executor::backend::{Backend, Control, Ctx, LaunchRequest};
use poolscope::executor::{
    Background, CommandError, EventKind, Executor, LocalBackend, Outcome, PoolConfig, StdinMode,
    TaskId, TaskSpec,
};
use poolscope::model::RunRecord;

#[test]
fn every_started_precedes_its_output_and_the_byte_counts_add_up() {
    let (pool, events) = Executor::start(config(8), None);
    let sizes: Vec<u64> = (0..2000u64).map(|i| (i * 37) % 3000).collect();
    let specs = sizes
        .iter()
        .map(|n| TaskSpec::shell(format!("head -c {n} /dev/zero")))
        .collect();
    let ids = pool.submit(specs).expect("submit");
    pool.close();
    let mut record = RunRecord::without_output();
    let mut started = std::collections::HashSet::new();
    let mut out_of_order = Vec::new();
    until(&events, &mut record, "the drain", |e, _| {
        match &e.kind {
            EventKind::Started { task, .. } => {
                started.insert(*task);
            }
            EventKind::Output { task, .. } | EventKind::Finished { task, .. }
                if !started.contains(task) =>
            {
                out_of_order.push(*task);
            }
            _ => {}
        }
        matches!(e.kind, EventKind::Drained)
    });
    assert!(out_of_order.is_empty(), "before Started: {out_of_order:?}");
    for (id, &n) in ids.iter().zip(&sizes) {
        let t = record.task(*id).expect("task");
        assert_eq!(t.outcome(), Some(&Outcome::Exited(0)));
        assert_eq!(t.attempts[0].stdout_bytes, n, "task {id}");
    }
}

#[test]
fn a_setup_failure_after_the_spawn_kills_and_reaps_the_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The attempt's output file cannot be created: a folder is in its place.
    std::fs::create_dir(dir.path().join("1.1.stdout")).expect("mkdir");
    let (pool, events) = Executor::start(
        PoolConfig {
            output_dir: Some(dir.path().to_owned()),
            ..config(2)
        },
        None,
    );
    let ids = pool
        .submit(vec![
            TaskSpec::shell("sleep 30"),
            TaskSpec::shell("echo fine"),
        ])
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    let first = record.task(ids[0]).expect("task");
    match first.outcome() {
        Some(Outcome::FailedToSpawn(reason)) => {
            assert!(reason.contains("cannot create output files"), "{reason}");
        }
        other => panic!("expected a failed start, got {other:?}"),
    }
    let pid = first.attempts[0].pid.expect("it had started");
    assert!(wait_gone(pid), "the started child {pid} was left running");
    assert_eq!(stdout_of(&record, ids[1]), "fine\n", "the pool went on");
}

/// A backend with a bug: it panics on its third launch, after two real processes.
struct PanicsOnThirdLaunch {
    inner: LocalBackend,
    launches: u32,
}

impl Backend for PanicsOnThirdLaunch {
    fn launch(
        &mut self,
        request: LaunchRequest<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), poolscope::executor::backend::LaunchError> {
        self.launches += 1;
        assert!(self.launches < 3, "a bug in the backend");
        self.inner.launch(request, ctx)
    }

    fn control(
        &mut self,
        task: TaskId,
        attempt: u32,
        control: Control<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CommandError> {
        self.inner.control(task, attempt, control, ctx)
    }

    fn ready(&mut self, token: u64, ctx: &mut Ctx<'_>) {
        self.inner.ready(token, ctx);
    }
}

#[test]
fn a_panic_in_the_dispatcher_kills_every_task_and_is_reported() {
    let backend = PanicsOnThirdLaunch {
        inner: LocalBackend::default(),
        launches: 0,
    };
    let (pool, events) = Executor::with_backend(backend, config(3), None);
    // Two tasks that would run for a long time, each with a grandchild.
    let ids = pool
        .submit(vec![
            TaskSpec::shell("sleep 60 & echo $!; wait"),
            TaskSpec::shell("sleep 60 & echo $!; wait"),
        ])
        .expect("submit");
    let mut record = RunRecord::default();
    until(&events, &mut record, "both grandchildren's pids", |_, r| {
        ids.iter().all(|&id| stdout_of(r, id).ends_with('\n'))
    });
    let mut pids: Vec<u32> = ids
        .iter()
        .map(|&id| stdout_of(&record, id).trim().parse().expect("pid"))
        .collect();
    pids.extend(
        ids.iter()
            .filter_map(|&id| record.task(id)?.attempts[0].pid),
    );
    let _ = pool.submit_one(TaskSpec::shell("true")); // the third launch panics
    until(&events, &mut record, "the failure report", |e, _| {
        matches!(e.kind, EventKind::Failed { .. })
    });
    assert!(
        record
            .failure
            .as_deref()
            .is_some_and(|r| r.contains("a bug in the backend")),
        "{:?}",
        record.failure
    );
    for pid in pids {
        assert!(
            wait_gone(pid),
            "process {pid} outlived the failed dispatcher"
        );
    }
    assert_eq!(
        pool.join_timeout(WAIT),
        Ok(true),
        "joiners are released, not left hanging"
    );
}

#[test]
fn background_wait_keeps_the_task_until_its_output_closes() {
    let (pool, events) = Executor::start(config(1), None);
    let task = pool
        .submit_one(TaskSpec::shell("(sleep 0.3; echo late) & echo now"))
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    assert_eq!(stdout_of(&record, task), "now\nlate\n");
    assert_eq!(
        record.task(task).and_then(|t| t.outcome().cloned()),
        Some(Outcome::Exited(0))
    );
}

/// A leader that exits while what it left behind holds its output open is reaped then,
/// not left a zombie (holding a process of the user's) until that output closes.
#[test]
fn background_wait_reaps_the_leader_while_its_output_stays_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = dir.path().join("stop");
    let (pool, events) = Executor::start(config(1), None);
    let line = format!(
        "echo $$; (until [ -e '{}' ]; do sleep 0.05; done) & exit 4",
        stop.display()
    );
    let task = pool.submit_one(TaskSpec::shell(line)).expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    until(&events, &mut record, "the leader's PID", |e, record| {
        matches!(e.kind, EventKind::Output { .. }) && stdout_of(record, task).ends_with('\n')
    });
    let leader: u32 = stdout_of(&record, task).trim().parse().expect("pid");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{leader}"));
    let deadline = std::time::Instant::now() + WAIT;
    while proc_dir.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let reaped = !proc_dir.exists();
    std::fs::write(&stop, "").expect("let the background loop end");
    drain(&events, &mut record);
    assert!(
        reaped,
        "the leader {leader} was left a zombie while its output stayed open"
    );
    assert_eq!(
        record.task(task).and_then(|t| t.outcome().cloned()),
        Some(Outcome::Exited(4))
    );
}

#[test]
fn background_kill_ends_the_task_with_its_leader_and_kills_what_it_left() {
    let (pool, events) = Executor::start(config(1), None);
    let task = pool
        .submit_one(TaskSpec::shell("sleep 60 & echo $!").with_background(Background::Kill))
        .expect("submit");
    let next = pool
        .submit_one(TaskSpec::shell("echo next"))
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    assert_eq!(
        record.task(task).and_then(|t| t.outcome().cloned()),
        Some(Outcome::Exited(0)),
        "the task's own exit is its outcome"
    );
    let orphan: u32 = stdout_of(&record, task).trim().parse().expect("pid");
    assert!(
        wait_gone(orphan),
        "the background sleep {orphan} was left running"
    );
    assert_eq!(stdout_of(&record, next), "next\n", "the slot was freed");
}

#[test]
fn a_task_that_does_not_read_gets_a_bounded_stdin_queue() {
    let (pool, events) = Executor::start(config(1), None);
    let task = pool
        .submit_one(TaskSpec::shell("sleep 30").with_stdin(StdinMode::Pipe))
        .expect("submit");
    let mut record = RunRecord::default();
    until(&events, &mut record, "the start", |e, _| {
        matches!(e.kind, EventKind::Started { .. })
    });
    let chunk = vec![b'x'; 256 * 1024];
    let mut refused = None;
    for _ in 0..64 {
        if let Err(e) = pool.write_stdin(task, chunk.clone()) {
            refused = Some(e);
            break;
        }
    }
    let Some(error) = refused else {
        panic!("16 MiB were queued for a task that reads nothing");
    };
    assert!(matches!(error, CommandError::StdinFull { .. }), "{error:?}");
    assert!(
        error.to_string().contains("is not reading its input"),
        "{error}"
    );
    pool.terminate();
    drain(&events, &mut record);
}
