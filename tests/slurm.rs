//! Against a real Slurm (`scripts/slurm_up.sh` starts a single-node one; `.ci/run` does):
//! the array poolscope submits, its launcher's records, and the controls. Where no Slurm
//! answers, each test says so and returns (it is not counted as a pass of anything else).

mod common;

use std::time::{Duration, Instant, UNIX_EPOCH};

use common::{config, drain, until_within};
use poolscope::executor::backend::slurm::{self, ArrayDir, Element, SlurmEnd, SlurmOptions};
use poolscope::executor::{EventKind, Executor, Outcome, SlurmSettings, TaskSpec};
use poolscope::model::RunRecord;

/// A pool of `size` on the cluster, its arrays' files in `folder`.
fn slurm_pool(size: usize, folder: &std::path::Path) -> (Executor, poolscope::executor::Events) {
    slurm_pool_with(size, folder, SlurmOptions::default())
}

fn slurm_pool_with(
    size: usize,
    folder: &std::path::Path,
    options: SlurmOptions,
) -> (Executor, poolscope::executor::Events) {
    let mut config = config(size);
    config.slurm = Some(SlurmSettings {
        options,
        folder: folder.to_owned(),
        ..SlurmSettings::default()
    });
    Executor::start(config, None)
}

/// Slurm schedules about once a second: waits here are generous.
const CLUSTER_WAIT: Duration = Duration::from_mins(2);

/// Close the pool and follow it (bounded by [`CLUSTER_WAIT`]) until it drains.
fn close_and_finish(pool: &Executor, events: &poolscope::executor::Events) -> RunRecord {
    pool.close();
    let mut record = RunRecord::default();
    until_within(
        CLUSTER_WAIT,
        events,
        &mut record,
        "the run to finish on the cluster",
        |e, _| matches!(e.kind, EventKind::Drained),
    );
    record
}

/// A scratch folder for a test on the cluster, when a Slurm controller answers; else
/// `None`, with why the test does not run.
fn cluster(test: &str) -> Option<tempfile::TempDir> {
    common::slurm_answers(test).then(|| tempfile::tempdir().expect("tempdir"))
}

/// Poll the array (at most every 200 ms, bounded) until every element has ended.
fn until_all_ended(job: u64, count: usize) -> Vec<Element> {
    let deadline = Instant::now() + Duration::from_mins(2);
    loop {
        let elements = slurm::show_job(job).expect("scontrol show job");
        let ended: Vec<Element> = elements
            .iter()
            .filter(|e| e.index.is_some() && slurm::end_of(e).is_some())
            .cloned()
            .collect();
        if ended.len() == count {
            return ended;
        }
        assert!(
            Instant::now() < deadline,
            "the array never finished: {elements:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The most of these (start, end) spans that overlap at one instant.
fn most_overlapping(spans: impl IntoIterator<Item = (Duration, Duration)>) -> usize {
    let mut edges: Vec<(Duration, i32)> = spans
        .into_iter()
        .flat_map(|(start, end)| [(start, 1), (end, -1)])
        .collect();
    // Ends before starts at one instant: a slot handed over is not an overlap.
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// The most elements running at one instant, from the launcher's own stamps.
fn most_at_once(dir: &ArrayDir, count: u64) -> usize {
    most_overlapping((0..count).map(|i| {
        let stamp = dir.stamp(i);
        (stamp.start.expect("started").0, stamp.end.expect("ended").0)
    }))
}

#[test]
fn an_array_runs_at_most_the_pool_at_once_and_reports_each_exit() {
    let Some(run) = cluster("an_array_runs_at_most_the_pool_at_once_and_reports_each_exit") else {
        return;
    };
    let dir = ArrayDir(run.path().join("slurm-0"));
    let count = 12u64;
    let commands: Vec<String> = (0..count)
        .map(|i| match i {
            5 => "echo five; exit 3".to_owned(),
            _ => format!(
                "date +%s%N > {}/own-{i}; echo task {i}; sleep 0.3",
                run.path().display()
            ),
        })
        .collect();
    dir.prepare(&commands).expect("prepare");
    let args = slurm::sbatch_args(&dir, count, 3, "poolscope-test", &SlurmOptions::default());
    let job = slurm::submit(&args).expect("sbatch");
    let ended = until_all_ended(job, count as usize);
    assert!(most_at_once(&dir, count) <= 3, "never more than 3 at once");
    for element in &ended {
        let i = element.index.expect("element");
        let stamp = dir.stamp(i);
        let (_, code) = stamp.end.expect("the launcher recorded the end");
        let expected = if i == 5 {
            SlurmEnd::Exited(3)
        } else {
            SlurmEnd::Exited(0)
        };
        assert_eq!(slurm::end_of(element), Some(expected), "element {i}");
        assert_eq!(code, if i == 5 { 3 } else { 0 }, "element {i}'s own exit");
        assert!(element.node.is_some(), "element {i} names its node");
        let out = std::fs::read_to_string(dir.stdout(i)).expect("stdout file");
        if i == 5 {
            assert_eq!(out, "five\n");
        } else {
            assert_eq!(out, format!("task {i}\n"));
            // The launcher's start precedes what the task itself recorded.
            let own: u64 = std::fs::read_to_string(run.path().join(format!("own-{i}")))
                .expect("the task's own stamp")
                .trim()
                .parse()
                .expect("ns");
            let (start, _, _) = stamp.start.expect("start");
            assert!(start <= Duration::from_nanos(own));
        }
    }
}

#[test]
fn one_element_is_cancelled_and_the_throttle_changes_while_it_runs() {
    let Some(run) = cluster("one_element_is_cancelled_and_the_throttle_changes_while_it_runs")
    else {
        return;
    };
    let dir = ArrayDir(run.path().join("slurm-0"));
    let count = 6u64;
    let commands: Vec<String> = (0..count)
        .map(|i| {
            if i == 0 {
                "sleep 60".to_owned()
            } else {
                "sleep 1".to_owned()
            }
        })
        .collect();
    dir.prepare(&commands).expect("prepare");
    let args = slurm::sbatch_args(&dir, count, 1, "poolscope-test", &SlurmOptions::default());
    let job = slurm::submit(&args).expect("sbatch");
    // Element 0 holds the only slot; a throttle of 3 lets two more run beside it.
    let deadline = Instant::now() + Duration::from_mins(1);
    while dir.stamp(0).start.is_none() {
        assert!(Instant::now() < deadline, "element 0 never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    slurm::set_throttle(job, 3).expect("resize");
    while (1..count).filter(|&i| dir.stamp(i).start.is_some()).count() < 2 {
        assert!(Instant::now() < deadline, "the resize let nothing more run");
        std::thread::sleep(Duration::from_millis(100));
    }
    slurm::cancel(job, Some(0)).expect("scancel one");
    let ended = until_all_ended(job, count as usize);
    for element in &ended {
        let expected = if element.index == Some(0) {
            SlurmEnd::Cancelled
        } else {
            SlurmEnd::Exited(0)
        };
        assert_eq!(slurm::end_of(element), Some(expected), "{element:?}");
    }
    assert!(most_at_once(&dir, count) <= 3);
}

#[test]
fn a_refused_submission_shows_slurms_own_words() {
    let Some(run) = cluster("a_refused_submission_shows_slurms_own_words") else {
        return;
    };
    let dir = ArrayDir(run.path().join("slurm-0"));
    dir.prepare(&["true".to_owned()]).expect("prepare");
    let options = SlurmOptions {
        partition: Some("no-such-partition".into()),
        ..SlurmOptions::default()
    };
    let error = slurm::submit(&slurm::sbatch_args(&dir, 1, 1, "poolscope-test", &options))
        .expect_err("refused");
    let text = error.to_string();
    assert!(
        text.contains("sbatch failed") && text.contains("partition"),
        "{text}"
    );
}

#[test]
fn twenty_tasks_on_four_slots_never_overlap_more_and_their_times_match_their_own() {
    let Some(run) =
        cluster("twenty_tasks_on_four_slots_never_overlap_more_and_their_times_match_their_own")
    else {
        return;
    };
    let own = run.path().join("own");
    std::fs::create_dir_all(&own).expect("own");
    let (pool, events) = slurm_pool(4, &run.path().join("slurm"));
    let specs = (1..=20)
        .map(|i| {
            let code = if i == 7 { 4 } else { 0 };
            TaskSpec::shell(format!(
                "date +%s%N > {dir}/{i}.start; hostname > {dir}/{i}.host; echo task {i}; sleep 0.4; \
                 date +%s%N > {dir}/{i}.end; exit {code}",
                dir = own.display()
            ))
        })
        .collect();
    pool.submit(specs).expect("submit");
    let record = close_and_finish(&pool, &events);
    assert_eq!(record.task_count(), 20);
    assert!(
        record.max_concurrency() <= 4,
        "{} at once",
        record.max_concurrency()
    );
    let epoch = |ns: &str| Duration::from_nanos(ns.trim().parse().expect("ns"));
    let pool_start = record
        .wall_clock_start
        .and_then(|w| w.duration_since(UNIX_EPOCH).ok())
        .expect("wall clock");
    let mut own_spans = Vec::new();
    for (i, task) in (1..=20).zip(record.tasks()) {
        let expected = if i == 7 {
            Outcome::Exited(4)
        } else {
            Outcome::Exited(0)
        };
        assert_eq!(task.outcome(), Some(&expected), "task {i}");
        assert_eq!(common::stdout_of(&record, task.id), format!("task {i}\n"));
        let a = &task.attempts[0];
        let started = pool_start + a.started;
        let ended = pool_start + a.ended.expect("ended");
        let own_start =
            epoch(&std::fs::read_to_string(own.join(format!("{i}.start"))).expect("own start"));
        let own_end =
            epoch(&std::fs::read_to_string(own.join(format!("{i}.end"))).expect("own end"));
        // The record's times are the launcher's (sub-second, the node's clock), taken
        // just before the task starts and just after it ends: never after its own start
        // or before its own end (0.1 s for converting clocks), and close to them (2 s
        // for a loaded node), not Slurm's whole seconds.
        let (jitter, near) = (Duration::from_millis(100), Duration::from_secs(2));
        assert!(
            started <= own_start + jitter && own_start <= started + near,
            "task {i}: recorded start {started:?}, its own {own_start:?}"
        );
        assert!(
            own_end <= ended + jitter && ended <= own_end + near,
            "task {i}: recorded end {ended:?}, its own {own_end:?}"
        );
        own_spans.push((own_start, own_end));
        // The node it ran on, for the timeline's lanes by host and the joblog's Host.
        let own_host = std::fs::read_to_string(own.join(format!("{i}.host"))).expect("host");
        assert_eq!(a.host.as_deref(), Some(own_host.trim()), "task {i}");
    }
    let most = most_overlapping(own_spans);
    assert!(most <= 4, "the tasks saw {most} of themselves at once");
}

#[test]
fn kill_one_timeout_resize_and_terminate_act_on_the_cluster() {
    let Some(run) = cluster("kill_one_timeout_resize_and_terminate_act_on_the_cluster") else {
        return;
    };
    let (pool, events) = slurm_pool(1, &run.path().join("slurm"));
    let mut timed = TaskSpec::shell("sleep 60");
    timed.timeout = Some(Duration::from_secs(1));
    let mut specs = vec![TaskSpec::shell("sleep 60"), timed];
    specs.extend((0..4).map(|_| TaskSpec::shell("sleep 60")));
    let ids = pool.submit(specs).expect("submit");
    let mut record = RunRecord::default();
    let running = |r: &RunRecord| {
        r.tasks()
            .filter(|t| t.state == poolscope::model::TaskState::Running)
            .count()
    };
    until_within(
        CLUSTER_WAIT,
        &events,
        &mut record,
        "the first task to start",
        |_, r| running(r) == 1,
    );
    pool.kill(ids[0]).expect("kill one");
    until_within(
        CLUSTER_WAIT,
        &events,
        &mut record,
        "task 1 killed",
        |_, r| r.task(ids[0]).is_some_and(|t| t.outcome().is_some()),
    );
    assert_eq!(
        record.task(ids[0]).and_then(|t| t.outcome().cloned()),
        Some(Outcome::Killed)
    );
    until_within(
        CLUSTER_WAIT,
        &events,
        &mut record,
        "task 2 timed out",
        |_, r| r.task(ids[1]).is_some_and(|t| t.outcome().is_some()),
    );
    assert_eq!(
        record.task(ids[1]).and_then(|t| t.outcome().cloned()),
        Some(Outcome::TimedOut)
    );
    // One at a time so far; a pool of 3 runs three of the rest at once.
    pool.resize(3);
    until_within(
        CLUSTER_WAIT,
        &events,
        &mut record,
        "three running after the resize",
        |_, r| running(r) == 3,
    );
    pool.terminate();
    drain(&events, &mut record);
    // What ran was ended; what still waited in the cluster's queue never ran, and is
    // cancelled (a resume runs it), not killed.
    assert!(record.tasks().all(|t| match t.outcome() {
        Some(outcome) => !outcome.is_success(),
        None => t.state == poolscope::model::TaskState::Cancelled,
    }));
    assert!(
        record
            .tasks()
            .any(|t| t.state == poolscope::model::TaskState::Cancelled),
        "six tasks on three slots: some were still queued"
    );
    assert!(record.max_concurrency() <= 3);
}

/// Output far beyond what one poll round reads: nothing of it is cut off at the end.
#[test]
fn a_task_that_writes_megabytes_and_ends_keeps_all_of_its_output() {
    let Some(run) = cluster("a_task_that_writes_megabytes_and_ends_keeps_all_of_its_output") else {
        return;
    };
    let (pool, events) = slurm_pool(1, &run.path().join("slurm"));
    let ids = pool
        .submit(vec![TaskSpec::shell(
            "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo end",
        )])
        .expect("submit");
    let record = close_and_finish(&pool, &events);
    let task = record.task(ids[0]).expect("task");
    assert_eq!(task.outcome(), Some(&Outcome::Exited(0)));
    assert_eq!(task.attempts[0].stdout_bytes, 3_000_000 + 1 + 4);
}

/// Slurm's own limit: a minute (its smallest) on every element; the controller checks
/// limits every 30 s, so this takes a minute and a half.
#[test]
fn a_task_past_slurms_time_limit_is_timed_out_and_a_task_that_signals_itself_is_not() {
    let Some(run) =
        cluster("a_task_past_slurms_time_limit_is_timed_out_and_a_task_that_signals_itself_is_not")
    else {
        return;
    };
    let options = SlurmOptions {
        time_limit: Some("1".into()),
        ..SlurmOptions::default()
    };
    let (pool, events) = slurm_pool_with(2, &run.path().join("slurm"), options);
    let ids = pool
        .submit(vec![
            TaskSpec::shell("echo waiting; sleep 600"),
            TaskSpec::shell("kill -TERM $$"),
        ])
        .expect("submit");
    let record = close_and_finish(&pool, &events);
    let outcome = |i: usize| record.task(ids[i]).and_then(|t| t.outcome().cloned());
    assert_eq!(outcome(0), Some(Outcome::TimedOut));
    assert_eq!(outcome(1), Some(Outcome::Signaled(15)), "its own SIGTERM");
    let limited = &record.task(ids[0]).expect("task").attempts[0];
    let ran = limited.runtime(Duration::ZERO);
    // Ended by the cluster at its limit (the launcher's time, not when it was seen).
    assert!(ran >= Duration::from_secs(59), "ran {ran:?}");
    assert_eq!(common::stdout_of(&record, ids[0]), "waiting\n");
}

#[test]
fn the_same_task_file_gives_the_same_joblog_tasks_and_outcomes_locally_and_on_slurm() {
    let Some(dir) =
        cluster("the_same_task_file_gives_the_same_joblog_tasks_and_outcomes_locally_and_on_slurm")
    else {
        return;
    };
    let file = dir.path().join("tasks.toml");
    std::fs::write(
        &file,
        "[pool]\nsize = 3\n\n[[task]]\nname = \"t{}\"\ncommand = \"echo {}; exit $(( {} % 3 ))\"\nrange = [0, 6]\n",
    )
    .expect("task file");
    let joblog = |backend: &str| {
        let path = dir.path().join(format!("{backend}.tsv"));
        let status = common::poolscope()
            .args(["run", "--backend", backend, "--joblog"])
            .arg(&path)
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("poolscope run");
        assert_eq!(status.code(), Some(4), "{backend}: four of six fail");
        let text = std::fs::read_to_string(&path).expect("joblog");
        let mut rows: Vec<(String, String, String)> = text
            .lines()
            .skip(1)
            .map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                (cols[0].to_owned(), cols[6].to_owned(), cols[8].to_owned())
            })
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(joblog("local"), joblog("slurm"));
}

#[test]
fn pause_holds_what_has_not_started_and_resume_releases_it() {
    let Some(run) = cluster("pause_holds_what_has_not_started_and_resume_releases_it") else {
        return;
    };
    let folder = run.path().join("slurm");
    let (pool, events) = slurm_pool(1, &folder);
    pool.submit((0..4).map(|_| TaskSpec::shell("sleep 1")).collect())
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    until_within(
        CLUSTER_WAIT,
        &events,
        &mut record,
        "the first start",
        |e, _| matches!(e.kind, EventKind::Started { .. }),
    );
    pool.pause();
    // Slurm says so itself: the elements not started are held.
    let job: u64 = std::fs::read_to_string(folder.join("array-0").join("job"))
        .expect("the array's job id is kept in its folder")
        .trim()
        .parse()
        .expect("a job id");
    let deadline = Instant::now() + CLUSTER_WAIT;
    while !slurm::show_job(job)
        .expect("scontrol")
        .iter()
        .any(|e| e.reason.starts_with("JobHeld"))
    {
        assert!(
            Instant::now() < deadline,
            "the pending elements were never held"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    pool.resume();
    drain(&events, &mut record);
    assert!(
        record
            .tasks()
            .all(|t| t.outcome() == Some(&Outcome::Exited(0)))
    );
}

#[test]
fn a_resumed_run_follows_its_array_on_the_cluster_instead_of_submitting_again() {
    let Some(runs) =
        cluster("a_resumed_run_follows_its_array_on_the_cluster_instead_of_submitting_again")
    else {
        return;
    };
    let commands = (1..=6)
        .map(|i| format!("echo task {i}; sleep 2"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut first = common::poolscope()
        .args(["run", "-j", "2", "--backend", "slurm", "--run-dir"])
        .arg(runs.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("poolscope run");
    std::io::Write::write_all(&mut first.stdin.take().expect("stdin"), commands.as_bytes())
        .expect("tasks");
    // Once the array runs on the cluster, poolscope dies (SIGKILL: no goodbye).
    let deadline = Instant::now() + CLUSTER_WAIT;
    let run = loop {
        let started = std::fs::read_dir(runs.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|run| run.join("slurm/array-0/stamps/0.start").exists());
        if let Some(run) = started {
            break run;
        }
        assert!(Instant::now() < deadline, "the array never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let resumed = common::poolscope()
        .args(["run", "--resume"])
        .arg(&run)
        .output()
        .expect("poolscope run --resume");
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        !run.join("slurm/array-1").exists(),
        "nothing was submitted again"
    );
    let loaded = poolscope::model::store::journal::load(&run).expect("the journal");
    let done = loaded
        .record
        .tasks()
        .filter(|t| t.outcome() == Some(&Outcome::Exited(0)))
        .count();
    assert_eq!(done, 6, "every task succeeded, once");
    // What ran when poolscope died went on as the same attempt, followed again.
    for t in loaded.record.tasks() {
        assert_eq!(t.attempts.len(), 1, "task {}: {:?}", t.id, t.attempts);
    }
}

#[test]
fn a_run_whose_array_is_refused_says_why_for_each_task() {
    let Some(dir) = cluster("a_run_whose_array_is_refused_says_why_for_each_task") else {
        return;
    };
    let runs = dir.path().to_string_lossy().into_owned();
    let out = common::run_with_input(
        &[
            "--backend",
            "slurm",
            "-j",
            "2",
            "--partition",
            "no-such-partition",
            "--run-dir",
            &runs,
        ],
        "echo a\necho b\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    for task in ["task 1 (echo a)", "task 2 (echo b)"] {
        let line = common::line_about(&stderr, task);
        assert!(
            line.contains("not submitted") && line.contains("partition"),
            "{line}"
        );
    }
}

#[test]
fn an_interrupted_run_with_elements_still_queued_ends_and_its_resume_runs_them() {
    let Some(dir) =
        cluster("an_interrupted_run_with_elements_still_queued_ends_and_its_resume_runs_them")
    else {
        return;
    };
    let runs = dir.path().join("runs");
    let runs_arg = runs.to_string_lossy().into_owned();
    let d = dir.path().display();
    // One at a time: while task 2 runs, tasks 3 and 4 wait in the cluster's queue.
    let tasks = (1..=4)
        .map(|i| format!("echo $$ > {d}/pid.{i}; sleep 1; echo t{i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let child = common::start_run(
        &["--backend", "slurm", "-j", "1", "--run-dir", &runs_arg],
        &tasks,
    );
    let _: u32 = common::written_pid(&dir.path().join("pid.2"));
    // It ends (it waited for ever for the two elements Slurm forgot when they were
    // cancelled while pending), saying they never started.
    let (code, stderr) = common::interrupt(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("(2 of them never started)"), "{stderr}");
    // Resumed, they run (not followed as if still queued), each with its own output.
    let (lines, stderr) = common::resume_sorted(&runs);
    assert_eq!(lines, ["t3", "t4"], "{stderr}");
}
