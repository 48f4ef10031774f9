//! Watching real Python programs, unchanged: what their pools did, on the record.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use common::{WAIT, poolscope, stdout_of, until_within};
use poolscope::executor::{EventKind, Outcome, Stream, TaskId};
use poolscope::model::RunRecord;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Watch `python3 SCRIPT`: the record of what its pools did, and its exit status.
fn watch(name: &str) -> (RunRecord, i32) {
    watch_with(name, &[])
}

/// [`watch`] with arguments for the script.
fn watch_with(name: &str, script_args: &[&str]) -> (RunRecord, i32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut argv: Vec<OsString> = vec!["python3".into(), script(name).into()];
    argv.extend(script_args.iter().map(OsString::from));
    let (mut watched, events) =
        poolscope::watch::start(&argv, &dir.path().join("watch"), None).expect("start");
    let mut record = RunRecord::default();
    until_within(WAIT, &events, &mut record, "the program's end", |e, _| {
        matches!(e.kind, EventKind::Drained)
    });
    let code = watched.wait(WAIT).expect("the program ended");
    (record, code)
}

fn max_overlap(record: &RunRecord) -> usize {
    let mut edges: Vec<(Duration, i32)> = record
        .attempts()
        .flat_map(|(_, a)| [(a.started, 1), (a.ended.expect("ended"), -1)])
        .collect();
    edges.sort();
    let (mut now, mut max) = (0, 0);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

fn markers(record: &RunRecord) -> Vec<String> {
    record.markers.iter().map(|(_, l)| l.clone()).collect()
}

#[test]
fn the_seeds_pool_program_unchanged_shows_its_pool() {
    let (record, code) = watch("seed_pool.py");
    assert_eq!(code, 0);
    assert_eq!(record.task_count(), 5);
    assert_eq!(record.succeeded(), 5);
    assert!(max_overlap(&record) <= 4);
    let mut by_pid: BTreeMap<u32, Vec<TaskId>> = BTreeMap::new();
    for task in record.tasks() {
        let pid = task.attempts[0].pid.expect("a worker PID");
        by_pid.entry(pid).or_default().push(task.id);
        // Its console holds exactly its own lines, naming its worker.
        let out = stdout_of(&record, task.id);
        let n = task.id.0 - 1;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out:?}");
        assert_eq!(lines[0], format!("Run task {n} ({pid})..."));
        assert!(
            lines[1].starts_with(&format!("Task {n} runs ")) && lines[1].ends_with(" seconds."),
            "{out:?}"
        );
        assert_eq!(task.spec.name, format!("long_time_task({n})"));
    }
    assert!(by_pid.len() <= 4, "{by_pid:?}");
    assert!(by_pid.values().any(|tasks| tasks.len() >= 2), "{by_pid:?}");
    let labels = markers(&record);
    for wanted in [
        "pool 1: close()",
        "pool 1: join() entered",
        "pool 1: join() returned",
    ] {
        assert!(labels.iter().any(|l| l == wanted), "{labels:?}");
    }
}

#[test]
fn the_seeds_process_program_shows_its_child_and_start_and_join() {
    let (record, code) = watch("seed_process.py");
    assert_eq!(code, 0);
    assert_eq!(record.task_count(), 1);
    let task = &record.task_at(0).expect("task");
    let child = task.attempts[0].pid.expect("the child's PID");
    assert_eq!(task.spec.name, "Process(run_proc)");
    assert_eq!(task.outcome(), Some(&Outcome::Exited(0)));
    let labels = markers(&record);
    assert!(
        labels.contains(&format!("Process {child}: start()")),
        "{labels:?}"
    );
    assert!(
        labels.contains(&format!("Process {child}: join()")),
        "{labels:?}"
    );
}

#[test]
fn a_process_pool_executor_runs_ten_tasks_on_two_pids_and_shows_the_exception() {
    let (record, code) = watch("futures_raise.py");
    assert_eq!(code, 0);
    assert_eq!(record.task_count(), 10);
    let pids: BTreeSet<u32> = record.tasks().filter_map(|t| t.attempts[0].pid).collect();
    assert!(!pids.is_empty() && pids.len() <= 2, "{pids:?}");
    let raised = &record.task_at(7).expect("task");
    assert_eq!(raised.outcome(), Some(&Outcome::Exited(1)));
    let stderr = String::from_utf8_lossy(&raised.output.stream_bytes(Stream::Stderr)).into_owned();
    assert!(
        stderr.contains("ValueError: seven is not welcome"),
        "{stderr:?}"
    );
    assert_eq!(record.succeeded(), 9);
}

#[test]
fn the_spawn_and_forkserver_start_methods_are_watched_as_well_as_fork() {
    for method in ["spawn", "forkserver"] {
        let (record, code) = watch_with("seed_pool_start_method.py", &[method]);
        assert_eq!(code, 0);
        assert_eq!(record.succeeded(), 5, "{method}");
        for task in record.tasks() {
            let pid = task.attempts[0].pid.expect("pid");
            assert!(
                stdout_of(&record, task.id)
                    .starts_with(&format!("Run task {} ({pid})", task.id.0 - 1))
            );
        }
        assert!(
            markers(&record)
                .iter()
                .any(|l| l.contains(&format!("created: 4 workers ({method})"))),
            "{method}: {:?}",
            markers(&record)
        );
    }
}

#[test]
fn a_program_without_a_pool_runs_unchanged_and_keeps_its_exit_status() {
    let out = poolscope()
        .args(["watch", "--"])
        .arg("python3")
        .arg(script("no_pool.py"))
        .arg("x")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "plain output ['x']\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to stderr\n");
}

#[test]
fn watched_runs_export_a_trace_and_a_joblog_like_any_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (trace, joblog) = (dir.path().join("t.json"), dir.path().join("j.txt"));
    let out = poolscope()
        .args(["watch", "--trace"])
        .arg(&trace)
        .arg("--joblog")
        .arg(&joblog)
        .arg("--")
        .arg("python3")
        .arg(script("seed_pool.py"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The program's own output, as without poolscope (its workers' lines may mix, as
    // they do without poolscope: each is found wherever it is).
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(stdout.matches("Run task ").count(), 5, "{stdout}");
    assert!(stdout.contains("All subprocesses done."));
    let printed: BTreeSet<String> = stdout
        .split("Run task ")
        .skip(1)
        .filter_map(|rest| {
            rest.split_once(" (")?
                .1
                .split_once(")...")
                .map(|(p, _)| p.to_owned())
        })
        .collect();
    let events = common::trace_events(&trace);
    let tracks = common::worker_pids_by_track(&events);
    let tasks: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(tasks.len(), 5);
    let traced: BTreeSet<String> = tasks
        .iter()
        .map(|e| {
            assert!(
                e["name"]
                    .as_str()
                    .expect("name")
                    .starts_with("long_time_task(")
            );
            // A pool worker's tasks are on its own track, named by its PID.
            assert_eq!(e["pid"], 2, "on a worker's track: {e}");
            let tid = e["tid"].as_u64().expect("tid");
            tracks.get(&tid).cloned().expect("a named track")
        })
        .collect();
    assert_eq!(traced, printed);
    let joblog = std::fs::read_to_string(&joblog).expect("joblog");
    assert_eq!(joblog.lines().count(), 6, "{joblog}");
}

#[test]
fn an_isolated_python_still_runs_with_a_note_that_nothing_was_visible() {
    let out = poolscope()
        .args(["watch", "--", "python3", "-I"])
        .arg(script("seed_pool.py"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("All subprocesses done."), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nothing inside the program was visible"),
        "{stderr}"
    );
}

#[test]
fn a_watched_map_shows_pythons_chunks() {
    let (record, code) = watch("map_chunks.py");
    assert_eq!(code, 0);
    assert_eq!(record.succeeded(), 40);
    // Pool(3).map over 40 items: Python's chunksize is ceil(40 / 12) = 4.
    for (i, task) in record.tasks().enumerate() {
        let first = record.task_at(i - i % 4).expect("task").id;
        assert_eq!(task.chunk, Some(first), "task {}", task.id);
        // A chunk runs on one worker.
        assert_eq!(
            task.attempts[0].pid,
            record.task(first).expect("first").attempts[0].pid
        );
    }
}

#[test]
fn the_story_answers_the_seeds_close_question() {
    let (record, _) = watch("seed_pool.py");
    let story = poolscope::model::record::story::pool_story(&record).join("\n");
    assert!(story.contains("5 tasks ran on 4 processes"), "{story}");
    assert!(story.contains("workers are reused: PID"), "{story}");
    assert!(story.contains("close()"), "{story}");
}

#[test]
fn a_pool_terminated_at_once_still_reports_every_task() {
    // `with Pool(2)` terminates the workers as soon as map returns: the shim has them
    // send what they hold first.
    let (record, code) = watch_with("map_modes.py", &["burst"]);
    assert_eq!(code, 0);
    assert_eq!(record.task_count(), 2000);
    assert_eq!(record.succeeded(), 2000);
}

#[test]
fn an_item_that_raises_fails_alone_and_its_chunk_stops_there() {
    let (record, code) = watch_with("map_modes.py", &["raise"]);
    assert_eq!(code, 0);
    let outcome = |i: usize| record.task_at(i).expect("task").outcome().cloned();
    // Chunks of 5: items 5 and 6 ran, 7 raised, 8 and 9 never started.
    for i in [0, 1, 2, 3, 4, 5, 6] {
        assert_eq!(outcome(i), Some(Outcome::Exited(0)), "item {i}");
    }
    assert_eq!(outcome(7), Some(Outcome::Exited(1)));
    let stderr = String::from_utf8_lossy(
        &record
            .task_at(7)
            .expect("task")
            .output
            .stream_bytes(Stream::Stderr),
    )
    .into_owned();
    assert!(
        stderr.contains("raised ValueError: no sevens"),
        "{stderr:?}"
    );
    assert!(record.task_at(8).expect("task").attempts.is_empty());
    assert!(record.task_at(9).expect("task").attempts.is_empty());
}

#[test]
fn starmap_items_read_as_calls_and_keep_their_prints() {
    let (record, code) = watch_with("map_modes.py", &["starmap"]);
    assert_eq!(code, 0);
    let names: Vec<String> = record.tasks().map(|t| t.spec.name.clone()).collect();
    assert_eq!(names, ["add(1, 2)", "add(3, 4)", "add(5, 6)"]);
    let lines = ["adding 1 and 2", "adding 3 and 4", "adding 5 and 6"];
    for (task, line) in record.tasks().zip(lines) {
        assert_eq!(stdout_of(&record, task.id), format!("{line}\n"));
    }
}

#[test]
fn each_pools_workers_sit_together_on_the_timeline() {
    let (record, code) = watch("two_pools.py");
    assert_eq!(code, 0);
    assert_eq!(record.succeeded(), 10);
    let slots = |tasks: std::ops::Range<usize>| -> BTreeSet<usize> {
        tasks
            .filter_map(|i| record.task_at(i))
            .map(|t| t.attempts[0].slot.expect("slot"))
            .collect()
    };
    // Pool(2)'s four tasks, then Pool(3)'s six: lanes 0-1, then 2-4.
    assert!(
        slots(0..4).is_subset(&BTreeSet::from([0, 1])),
        "{:?}",
        slots(0..4)
    );
    assert!(
        slots(4..10).is_subset(&BTreeSet::from([2, 3, 4])),
        "{:?}",
        slots(4..10)
    );
}

/// Whether `pid` is gone (a zombie nobody reaped counts as gone: it runs no more).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
    })
}

/// `poolscope watch` of a Pool(2) whose tasks never end, until the program and both
/// workers wrote their PIDs: the poolscope child and those PIDs.
#[allow(clippy::zombie_processes)] // handed to the caller, which waits for it
fn watch_endless(pids: &std::path::Path, deaf: bool) -> (std::process::Child, Vec<i32>) {
    let mut command = poolscope();
    command
        .args(["watch", "--", "python3"])
        .arg(script("endless_pool.py"))
        .arg(pids)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if deaf {
        command.arg("deaf");
    }
    let child = command.spawn().expect("poolscope watch");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let listed: Vec<i32> = std::fs::read_to_string(pids)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        if listed.len() == 3 {
            return (child, listed);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pool did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The watch folders a `poolscope watch` with PID `watcher` left, in the run root it
/// was given (where they live; never in the shared temporary folder) or the temporary
/// folder.
fn watch_folders_of(watcher: u32) -> Vec<PathBuf> {
    let prefix = format!("poolscope-watch-{watcher}-");
    [common::runs_dir(), std::env::temp_dir()]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Wait (bounded) for `what` to hold.
fn within(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_signal_to_watch_ends_the_program_and_its_workers_and_leaves_no_folder() {
    use nix::sys::signal::Signal;
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGKILL,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pids");
        let (mut child, listed) = watch_endless(&pids, false);
        let watcher = child.id();
        // The shim and its socket live in the run root, not the shared temporary folder.
        let folders = watch_folders_of(watcher);
        assert!(
            folders.len() == 1 && folders[0].starts_with(common::runs_dir()),
            "{folders:?}"
        );
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(watcher as i32), signal)
            .expect("signal poolscope");
        within("poolscope to exit", || {
            child.try_wait().expect("wait").is_some()
        });
        // SIGKILL leaves poolscope no say: its orphan guard ends the program's group.
        within(
            &format!("the program and its workers to end after {signal}"),
            || listed.iter().all(|&pid| gone(pid)),
        );
        if signal != Signal::SIGKILL {
            let left = watch_folders_of(watcher);
            assert!(left.is_empty(), "after {signal}: {left:?}");
        }
    }
}

#[test]
fn a_program_deaf_to_sigterm_is_killed_soon_after_and_a_killed_watchs_folder_goes_next_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    let (mut child, listed) = watch_endless(&pids, true);
    let watcher = child.id();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watcher as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal poolscope");
    within("poolscope to exit", || {
        child.try_wait().expect("wait").is_some()
    });
    assert!(
        listed.iter().all(|&pid| gone(pid)),
        "{listed:?} left running"
    );

    // A watch killed outright cannot remove its folder: the next watch does.
    let pids = dir.path().join("pids2");
    let (mut child, listed) = watch_endless(&pids, false);
    let killed = child.id();
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    within("the guard to end the program", || {
        listed.iter().all(|&pid| gone(pid))
    });
    let stale = || !watch_folders_of(killed).is_empty();
    let out = poolscope()
        .args(["watch", "--", "true"])
        .output()
        .expect("watch true");
    assert!(out.status.success());
    assert!(!stale(), "the next watch removed it");
}

#[test]
fn process_pool_executor_map_is_one_task_per_item_named_after_the_function() {
    let (record, code) = watch("futures_map.py");
    assert_eq!(code, 0);
    assert_eq!(record.task_count(), 18, "10 + 2 + 6 items");
    for i in 0..10 {
        let task = record.task_at(i).expect("task");
        assert_eq!(task.spec.name, format!("square({i})"));
        // Each item's own prints are its output.
        assert_eq!(stdout_of(&record, task.id), format!("squaring {i}\n"));
        // Chunks of 3, each on one worker.
        let first = record.task_at(i - i % 3).expect("first");
        assert_eq!(task.chunk, Some(first.id));
        assert_eq!(task.attempts[0].pid, first.attempts[0].pid);
    }
    assert_eq!(record.task_at(10).expect("task").spec.name, "add(1, 10)");
    assert_eq!(record.task_at(11).expect("task").spec.name, "add(2, 20)");
    // picky(4) raised: it failed, and picky(5), after it in its chunk, never ran.
    let failed: Vec<String> = record
        .tasks()
        .filter(|t| t.outcome() == Some(&Outcome::Exited(1)))
        .map(|t| t.spec.name.clone())
        .collect();
    assert_eq!(failed, ["picky(4)"]);
    assert!(record.succeeded() >= 16, "{}", record.succeeded());
}

#[test]
fn the_items_of_a_chunk_keep_their_own_ends_and_a_terminate_keeps_what_finished() {
    // Slow items of a chunk: their starts show while they run, and each still ends
    // where the next began (bars on one worker never overlap).
    let (record, code) = watch_with("terminate_mid_map.py", &["whole"]);
    assert_eq!(code, 0);
    assert_eq!(record.succeeded(), 6);
    let mut by_pid: BTreeMap<u32, Vec<(Duration, Duration)>> = BTreeMap::new();
    for (_, a) in record.attempts() {
        let pid = a.pid.expect("pid");
        by_pid
            .entry(pid)
            .or_default()
            .push((a.started, a.ended.expect("ended")));
    }
    for (pid, mut runs) in by_pid {
        runs.sort();
        for pair in runs.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "worker {pid}: {runs:?}");
        }
    }

    // Terminated while item 2 hangs: items 0 and 1 finished and keep it.
    let dir = tempfile::tempdir().expect("tempdir");
    let mark = dir.path().join("hanging");
    let (record, _) = watch_with(
        "terminate_mid_map.py",
        &[mark.to_str().expect("utf-8 path")],
    );
    let succeeded: Vec<String> = record
        .tasks()
        .filter(|t| t.outcome() == Some(&Outcome::Exited(0)))
        .map(|t| t.spec.name.clone())
        .collect();
    assert_eq!(succeeded, ["f(0)", "f(1)"]);
    let first = record.task_at(0).expect("f(0)").attempts[0].clone();
    let second = record.task_at(1).expect("f(1)").attempts[0].clone();
    assert!(first.ended.expect("ended") <= second.started);
    assert_eq!(record.task_count(), 6);
}

#[test]
fn a_broken_process_pool_keeps_what_finished_and_loses_only_what_was_cut() {
    let (record, code) = watch("broken_pool.py");
    assert_eq!(code, 0, "the program handled BrokenProcessPool");
    let outcome = |name: &str| {
        record
            .tasks()
            .find(|t| t.spec.name == name)
            .map(|t| (t.outcome().cloned(), t.attempts.len()))
    };
    for done in ["work(0)", "work(1)"] {
        assert_eq!(outcome(done), Some((Some(Outcome::Exited(0)), 1)), "{done}");
    }
    // The call its worker died in did not succeed (a quick call's start leaves with its
    // end: cut at once, it shows as never started).
    let (died, _) = outcome("work(2)").expect("work(2) was submitted");
    assert_ne!(died, Some(Outcome::Exited(0)));
    // The call after it never ran.
    let (after, _) = outcome("work(3)").expect("work(3) was submitted");
    assert_ne!(after, Some(Outcome::Exited(0)));
    assert_eq!(record.succeeded(), 2);
}

#[test]
fn imap_over_an_endless_generator_streams_as_python_does_and_ends_at_break() {
    let (record, code) = watch("lazy_imap.py");
    assert_eq!(code, 0, "the program ended");
    let names: Vec<String> = record.tasks().map(|t| t.spec.name.clone()).collect();
    // The generator's four items, then the endless one's: each a task named by its item.
    for (i, name) in names.iter().take(4).enumerate() {
        assert_eq!(name, &format!("sq({i})"));
    }
    for i in 0..6 {
        assert!(
            names[4..].contains(&format!("sq({i})")),
            "{:?}",
            &names[..12]
        );
    }
    assert!(record.succeeded() >= 10, "{}", record.succeeded());
}

#[test]
fn pools_inside_a_pools_workers_never_hang_and_every_call_is_recorded_once() {
    // The hang came some of the time: a worker's own pool waited for an answer its
    // listening thread took. Twenty runs, each bounded.
    for run in 0..20 {
        let (record, code) = watch("nested_pools.py");
        assert_eq!(code, 0, "run {run}");
        let mut names: Vec<String> = record.tasks().map(|t| t.spec.name.clone()).collect();
        names.sort();
        let mut expected: Vec<String> = (0..3).map(|i| format!("outer({i})")).collect();
        for _ in 0..3 {
            expected.extend((0..4).map(|i| format!("inner({i})")));
        }
        expected.sort();
        assert_eq!(names, expected, "run {run}");
        assert_eq!(record.succeeded(), 15, "run {run}");
        // Numbered 1..=15 in the record, whichever process numbered them.
        let ids: BTreeSet<u64> = record.tasks().map(|t| t.id.0).collect();
        assert_eq!(ids, (1..=15).collect(), "run {run}");
    }
}

#[test]
fn commands_a_program_starts_are_tasks_with_their_pid_argv_exit_code_and_output() {
    let (record, code) = watch("subprocesses.py");
    assert_eq!(code, 0);
    let names: Vec<String> = record.tasks().map(|t| t.spec.name.clone()).collect();
    assert_eq!(
        names,
        ["echo hello", "printf out", "/bin/sh -c 'exit 3'", "cat"]
    );
    let outcomes: Vec<Option<Outcome>> = record.tasks().map(|t| t.outcome().cloned()).collect();
    assert_eq!(
        outcomes,
        [
            Some(Outcome::Exited(0)),
            Some(Outcome::Exited(0)),
            Some(Outcome::Exited(3)),
            Some(Outcome::Exited(0))
        ]
    );
    // Each on its own PID; what communicate() read is the task's output.
    let pids: BTreeSet<u32> = record.tasks().filter_map(|t| t.attempts[0].pid).collect();
    assert_eq!(pids.len(), 4);
    let cat = record.task_at(3).expect("cat");
    assert_eq!(stdout_of(&record, cat.id), "typed in");
}

#[test]
fn a_stopped_poolscope_never_stalls_the_watched_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    let done = dir.path().join("done");
    let mut child = poolscope()
        .args(["watch", "--", "python3"])
        .arg(script("reports_while_stopped.py"))
        .arg(&done)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("poolscope watch");
    let watcher = nix::unistd::Pid::from_raw(child.id() as i32);
    let started = dir.path().join("done.started");
    within("the program to start", || started.exists());
    // Stopped as the program starts: its reports find nobody reading.
    nix::sys::signal::kill(watcher, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let deadline = std::time::Instant::now() + WAIT;
    while !done.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished_while_stopped = done.exists();
    nix::sys::signal::kill(watcher, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    within("poolscope to exit", || {
        child.try_wait().expect("wait").is_some()
    });
    assert!(
        finished_while_stopped,
        "the program waited for a stopped poolscope"
    );
    assert_eq!(child.wait().expect("status").code(), Some(0));
}

#[test]
fn executor_map_and_lazy_imap_are_recorded_under_spawn_and_forkserver_too() {
    for method in ["spawn", "forkserver"] {
        let (record, code) = watch_with("start_method_maps.py", &[method]);
        assert_eq!(code, 0, "{method}");
        assert_eq!(record.task_count(), 14, "{method}");
        assert_eq!(record.succeeded(), 14, "{method}");
        for i in 0..10 {
            let task = record.task_at(i).expect("task");
            assert_eq!(task.spec.name, format!("square({i})"), "{method}");
            assert_eq!(
                stdout_of(&record, task.id),
                format!("squaring {i}\n"),
                "{method}"
            );
        }
    }
}

#[test]
fn a_pool_in_a_process_and_two_pools_at_once_record_every_call_once() {
    let (record, code) = watch("pool_in_process.py");
    assert_eq!(code, 0);
    // The Process, its pool's 5 calls, then 3 and 3 of the two pools at once.
    assert_eq!(record.task_count(), 12);
    assert_eq!(record.succeeded(), 12);
    let inner = record
        .tasks()
        .filter(|t| t.spec.name.starts_with("inner("))
        .count();
    assert_eq!(inner, 11);
    let ids: BTreeSet<u64> = record.tasks().map(|t| t.id.0).collect();
    assert_eq!(ids, (1..=12).collect());
}
