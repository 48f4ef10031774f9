//! An in-memory backend drives the dispatcher through what the next backends (persistent
//! workers, a Slurm job array) need: attempts accepted but not yet running, a delayed
//! start that starts the timeout clock, output racing ahead of `Started`, a lost worker,
//! task-scoped kills and the resize hook.

mod common;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::{config, drain, until};
use poolscope::executor::backend::{
    Backend, Control, Ctx, LaunchError, LaunchRequest, RawExit, Remote, Report,
};
use poolscope::executor::{
    CommandError, EventKind, Executor, Outcome, PoolConfig, Signal, Stream, TaskId, TaskSpec,
};
use poolscope::model::{RunRecord, TaskState};

/// What the fake backend saw, shared with the test that plays the cluster.
#[derive(Default)]
struct Seen {
    remote: Option<Remote>,
    launched: Vec<(TaskId, u32)>,
    signals: Vec<(TaskId, u32, Signal)>,
    sizes: Vec<usize>,
    shut_down: bool,
    /// The first task launched was ended (from the backend's own thread) as the first
    /// task named `missing` failed to start.
    ended_first: bool,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Seen>>);

impl Fake {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, report: Report) {
        let remote = self.seen().remote.clone().expect("started");
        remote.report(report);
    }
}

impl Backend for Fake {
    fn start(&mut self, size: usize, ctx: &mut Ctx<'_>) -> Result<(), String> {
        let mut seen = self.seen();
        seen.remote = Some(ctx.remote());
        seen.sizes.push(size);
        Ok(())
    }

    fn launch(&mut self, request: LaunchRequest<'_>, ctx: &mut Ctx<'_>) -> Result<(), LaunchError> {
        if request.spec.name == "missing" {
            let mut seen = self.seen();
            if let Some(&(task, attempt)) = seen.launched.first()
                && !seen.ended_first
            {
                // The task running beside the failing ones ends meanwhile.
                seen.ended_first = true;
                ctx.remote().report(Report::Ended {
                    task,
                    attempt,
                    exit: RawExit::Code(0),
                    stdin_bytes: 0,
                    at: None,
                });
            }
            return Err(LaunchError::Failed("no such program".into()));
        }
        self.seen().launched.push((request.task, request.attempt));
        ctx.report(Report::Waiting {
            task: request.task,
            attempt: request.attempt,
            state: "PENDING".into(),
        });
        Ok(())
    }

    fn control(
        &mut self,
        task: TaskId,
        attempt: u32,
        control: Control<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CommandError> {
        let mut seen = self.seen();
        if !seen.launched.contains(&(task, attempt)) {
            return Err(CommandError::NotRunning(task));
        }
        match control {
            Control::Signal(signal) => {
                seen.signals.push((task, attempt, signal));
                // Like `scancel`: the attempt ends, running or not.
                seen.launched.retain(|&l| l != (task, attempt));
                ctx.report(Report::Ended {
                    task,
                    attempt,
                    exit: RawExit::Signal(signal as i32),
                    stdin_bytes: 0,
                    at: None,
                });
                Ok(())
            }
            Control::Write(_) | Control::CloseStdin => Err(CommandError::StdinNotOpen(task)),
        }
    }

    fn resize(&mut self, size: usize, _ctx: &mut Ctx<'_>) {
        self.seen().sizes.push(size);
    }

    fn shutdown(&mut self, _ctx: &mut Ctx<'_>) {
        self.seen().shut_down = true;
    }
}

fn start(cfg: PoolConfig) -> (Fake, Executor, poolscope::executor::Events) {
    let fake = Fake::default();
    let (pool, events) = Executor::with_backend(fake.clone(), cfg, None);
    (fake, pool, events)
}

#[test]
fn an_attempt_waits_in_the_backend_then_starts_and_output_never_precedes_started() {
    let (fake, pool, events) = start(config(2));
    let task = pool.submit_one(TaskSpec::shell("work")).expect("submit");
    let mut record = RunRecord::default();
    until(&events, &mut record, "the backend's PENDING", |e, _| {
        matches!(e.kind, EventKind::Waiting { .. })
    });
    assert_eq!(
        record.task(task).map(|t| t.state.clone()),
        Some(TaskState::Waiting("PENDING".into()))
    );
    // The cluster reports output first and the start second (two pollers racing).
    fake.report(Report::Output {
        task,
        attempt: 1,
        stream: Stream::Stdout,
        bytes: b"hello\n".to_vec(),
    });
    fake.report(Report::Started {
        task,
        attempt: 1,
        pid: None,
        at: None,
        slot: None,
        host: None,
    });
    fake.report(Report::Ended {
        task,
        attempt: 1,
        exit: RawExit::Code(0),
        stdin_bytes: 0,
        at: None,
    });
    pool.close();
    let mut order = Vec::new();
    until(&events, &mut record, "the drain", |e, _| {
        match &e.kind {
            EventKind::Started { pid, .. } => order.push(format!("started pid={pid:?}")),
            EventKind::Output { bytes, .. } => {
                order.push(format!("output {}", String::from_utf8_lossy(bytes).trim()));
            }
            EventKind::Finished { outcome, .. } => order.push(format!("finished {outcome}")),
            _ => {}
        }
        matches!(e.kind, EventKind::Drained)
    });
    assert_eq!(
        order,
        ["started pid=None", "output hello", "finished exit 0"]
    );
    assert_eq!(record.task(task).expect("task").attempts[0].stdout_bytes, 6);
    drop(pool);
    assert!(fake.seen().shut_down, "the shutdown hook ran");
}

#[test]
fn the_timeout_clock_starts_when_the_backend_says_started() {
    let (fake, pool, events) = start(config(1));
    let task = pool
        .submit_one(TaskSpec::shell("slow").with_timeout(Duration::from_millis(50)))
        .expect("submit");
    let mut record = RunRecord::default();
    until(&events, &mut record, "PENDING", |e, _| {
        matches!(e.kind, EventKind::Waiting { .. })
    });
    // A kill is refused for nothing: the attempt is known but has not started.
    assert!(fake.seen().signals.is_empty());
    fake.report(Report::Started {
        task,
        attempt: 1,
        pid: Some(4242),
        at: None,
        slot: None,
        host: None,
    });
    pool.close();
    drain(&events, &mut record);
    assert_eq!(
        record.task(task).and_then(|t| t.outcome().cloned()),
        Some(Outcome::TimedOut)
    );
    let signals = fake.seen().signals.clone();
    assert_eq!(signals, vec![(task, 1, Signal::SIGTERM)]);
    assert_eq!(record.task(task).expect("task").attempts[0].pid, Some(4242));
}

#[test]
fn a_task_handed_out_but_not_started_when_the_pool_ends_is_cancelled_not_killed() {
    let (fake, pool, events) = start(config(2));
    let running = pool.submit_one(TaskSpec::shell("runs")).expect("submit");
    let waiting = pool.submit_one(TaskSpec::shell("waits")).expect("submit");
    let mut record = RunRecord::default();
    until(&events, &mut record, "both handed out", |_, r| {
        [running, waiting].iter().all(|&id| {
            r.task(id)
                .is_some_and(|t| matches!(t.state, TaskState::Waiting(_)))
        })
    });
    fake.report(Report::Started {
        task: running,
        attempt: 1,
        pid: Some(4242),
        at: None,
        slot: None,
        host: None,
    });
    until(&events, &mut record, "one started", |e, _| {
        matches!(e.kind, EventKind::Started { .. })
    });
    pool.terminate();
    drain(&events, &mut record);
    assert_eq!(
        record.task(running).and_then(|t| t.outcome().cloned()),
        Some(Outcome::Killed),
        "what ran was killed"
    );
    // What never ran is left for a resume, as a queued task is.
    assert_eq!(
        record.task(waiting).map(|t| t.state.clone()),
        Some(TaskState::Cancelled)
    );
    assert!(record.task(waiting).expect("task").outcome().is_none());
    assert_eq!(
        fake.seen().signals.len(),
        2,
        "both were ended where they were"
    );
}

#[test]
fn a_lost_worker_is_its_own_outcome_and_is_retried() {
    let (fake, pool, events) = start(PoolConfig {
        retries: 1,
        ..config(1)
    });
    let task = pool.submit_one(TaskSpec::shell("fragile")).expect("submit");
    let mut record = RunRecord::default();
    for attempt in 1..=2 {
        until(
            &events,
            &mut record,
            "the attempt to wait",
            |e, _| matches!(e.kind, EventKind::Waiting { attempt: a, .. } if a == attempt),
        );
        fake.report(Report::Started {
            task,
            attempt,
            pid: Some(100 + attempt),
            at: None,
            slot: None,
            host: None,
        });
        fake.report(Report::Ended {
            task,
            attempt,
            exit: RawExit::WorkerLost("node n1 stopped answering".into()),
            stdin_bytes: 0,
            at: None,
        });
    }
    pool.close();
    drain(&events, &mut record);
    let t = record.task(task).expect("task");
    assert_eq!(t.attempts.len(), 2, "the lost attempt was retried once");
    let lost = Outcome::WorkerLost("node n1 stopped answering".into());
    assert_eq!(t.outcome(), Some(&lost));
    assert_eq!(lost.to_string(), "worker lost: node n1 stopped answering");
}

#[test]
fn kill_reaches_only_the_attempt_it_names_and_resize_reaches_the_backend() {
    let (fake, pool, events) = start(config(2));
    let ids = pool
        .submit(vec![TaskSpec::shell("a"), TaskSpec::shell("b")])
        .expect("submit");
    let mut record = RunRecord::default();
    let mut waiting = 0;
    until(&events, &mut record, "both to wait", |e, _| {
        waiting += usize::from(matches!(e.kind, EventKind::Waiting { .. }));
        waiting == 2
    });
    for &task in &ids {
        fake.report(Report::Started {
            task,
            attempt: 1,
            pid: Some(7), // one worker process runs both
            at: None,
            slot: None,
            host: None,
        });
    }
    pool.kill(ids[0]).expect("kill");
    pool.resize(5);
    until(&events, &mut record, "the resize", |e, _| {
        matches!(e.kind, EventKind::Resized { size: 5 })
    });
    assert_eq!(fake.seen().signals, vec![(ids[0], 1, Signal::SIGTERM)]);
    assert_eq!(fake.seen().sizes, vec![2, 5]);
    assert_eq!(
        pool.kill(ids[0]),
        Err(CommandError::NotRunning(ids[0])),
        "an ended attempt is never signalled again"
    );
    pool.terminate();
    drain(&events, &mut record);
    assert_eq!(
        record.task(ids[0]).and_then(|t| t.outcome().cloned()),
        Some(Outcome::Killed)
    );
}

#[test]
fn a_long_run_of_tasks_that_cannot_start_does_not_hold_up_the_end_of_a_running_one() {
    let (fake, pool, events) = start(config(2));
    let running = pool.submit_one(TaskSpec::shell("work")).expect("submit");
    let mut record = RunRecord::default();
    until(&events, &mut record, "the backend's PENDING", |e, _| {
        matches!(e.kind, EventKind::Waiting { .. })
    });
    fake.report(Report::Started {
        task: running,
        attempt: 1,
        pid: None,
        at: None,
        slot: None,
        host: None,
    });
    until(&events, &mut record, "the start", |e, _| {
        matches!(e.kind, EventKind::Started { .. })
    });
    // Its end comes in while these fail to start, one after the other.
    let missing = pool
        .submit((0..1000).map(|_| TaskSpec::shell("missing")).collect())
        .expect("submit");
    pool.close();
    let mut finished = Vec::new();
    until(&events, &mut record, "the end", |e, _| {
        if let EventKind::Finished { task, .. } = e.kind {
            finished.push(task);
        }
        matches!(e.kind, EventKind::Drained)
    });
    let at = |task| finished.iter().position(|&t| t == task).expect("finished");
    assert!(
        at(running) < at(*missing.last().expect("tasks")),
        "the running task's end waited for {} failed starts",
        at(running)
    );
    assert_eq!(finished.len(), 1001);
}
