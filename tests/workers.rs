//! Worker-pool mode: Python `Pool` semantics on persistent workers, and better than
//! Python where a worker dies.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use common::{config, drain, poolscope, stdout_of, until, wait_gone};
use poolscope::executor::{
    Builtin, BuiltinKind, EventKind, Executor, Outcome, PoolConfig, Span, TaskId, TaskSpec,
    WorkerConfig,
};
use poolscope::model::RunRecord;
use poolscope::model::formats::taskfile::python_chunksize;

fn workers(size: usize, max_tasks: Option<u32>) -> PoolConfig {
    PoolConfig {
        helper: Some(PathBuf::from(env!("CARGO_BIN_EXE_poolscope"))),
        workers: Some(WorkerConfig {
            max_tasks,
            initializer: None,
            stopped_limit: None,
            ..WorkerConfig::default()
        }),
        ..config(size)
    }
}

fn job(kind: BuiltinKind, label: impl Into<String>) -> TaskSpec {
    let builtin = Builtin::new(kind, label);
    TaskSpec {
        name: builtin.to_string(),
        ..TaskSpec::shell("unused")
    }
    .with_invocation(builtin)
}

trait WithBuiltin {
    fn with_invocation(self, builtin: Builtin) -> TaskSpec;
}

impl WithBuiltin for TaskSpec {
    fn with_invocation(mut self, builtin: Builtin) -> TaskSpec {
        self.invocation = poolscope::executor::Invocation::Builtin(builtin);
        self
    }
}

fn sleep(seconds: f64, label: &str) -> TaskSpec {
    job(
        BuiltinKind::Sleep(Span::fixed(Duration::from_secs_f64(seconds))),
        label,
    )
}

fn pids(record: &RunRecord) -> BTreeSet<u32> {
    record.attempts().filter_map(|(_, a)| a.pid).collect()
}

fn run_all(config: PoolConfig, specs: Vec<TaskSpec>, chunk: usize) -> (RunRecord, Vec<TaskId>) {
    let (pool, events) = Executor::start(config, None);
    let ids = pool.submit_map(specs, chunk).expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    (record, ids)
}

#[test]
fn pool_of_3_runs_7_tasks_on_exactly_3_worker_pids() {
    let specs = (0..7).map(|i| sleep(0.05, &i.to_string())).collect();
    let (record, ids) = run_all(workers(3, None), specs, 1);
    for &id in &ids {
        assert_eq!(
            record.task(id).and_then(|t| t.outcome().cloned()),
            Some(Outcome::Exited(0))
        );
    }
    assert_eq!(pids(&record).len(), 3, "{:?}", pids(&record));
    // Each task's output names the worker that ran it, as the seed's does.
    let first = record.task(ids[0]).expect("task");
    let pid = first.attempts[0].pid.expect("pid");
    assert!(
        stdout_of(&record, ids[0]).starts_with(&format!("Run task 0 ({pid})...\n")),
        "{}",
        stdout_of(&record, ids[0])
    );
}

#[test]
fn maxtasksperchild_2_with_8_tasks_on_2_workers_gives_4_pids() {
    // In chunks of 2, each worker runs exactly its 2 tasks whatever the timing (one at
    // a time, a slot could take 3 of 8 and leave a worker with 1).
    let specs = (0..8).map(|i| sleep(0.01, &i.to_string())).collect();
    let (record, _) = run_all(workers(2, Some(2)), specs, 2);
    assert_eq!(record.succeeded(), 8);
    assert_eq!(pids(&record).len(), 4, "{:?}", pids(&record));
}

#[test]
fn a_map_goes_out_in_pythons_chunks_and_every_task_is_recorded() {
    assert_eq!(python_chunksize(100, 4), 7);
    let specs = (0..100)
        .map(|i| job(BuiltinKind::Print(format!("result {i}")), i.to_string()))
        .collect();
    let (record, ids) = run_all(workers(4, None), specs, python_chunksize(100, 4));
    assert_eq!(record.succeeded(), 100);
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(stdout_of(&record, id), format!("result {i}\n"));
    }
    chunks_ran_whole(&record, &ids, 7);
}

/// Each chunk of `size` ran on one worker, in input order, and the record knows it (the
/// timeline brackets it); returns the worker PID of each chunk.
fn chunks_ran_whole(record: &RunRecord, ids: &[TaskId], size: usize) -> Vec<Option<u32>> {
    ids.chunks(size)
        .map(|chunk| {
            let attempts: Vec<_> = chunk
                .iter()
                .map(|&id| record.task(id).expect("task").attempts[0].clone())
                .collect();
            assert!(attempts.windows(2).all(|w| w[0].pid == w[1].pid));
            assert!(attempts.windows(2).all(|w| w[0].started <= w[1].started));
            for &id in chunk {
                assert_eq!(record.task(id).expect("task").chunk, Some(chunk[0]));
            }
            attempts[0].pid
        })
        .collect()
}

#[test]
fn a_chunk_longer_than_what_is_handed_at_once_still_runs_whole_on_one_worker_in_order() {
    // Two chunks of 6 000: each goes to its worker a part at a time, never split.
    let specs = (0..12_000)
        .map(|i| job(BuiltinKind::Noop, i.to_string()))
        .collect();
    let (record, ids) = run_all(workers(2, None), specs, 6_000);
    assert_eq!(record.succeeded(), 12_000);
    let pids: BTreeSet<_> = chunks_ran_whole(&record, &ids, 6_000).into_iter().collect();
    assert_eq!(pids.len(), 2, "both workers ran a chunk at once");
}

#[test]
fn a_worker_killed_mid_task_loses_only_that_task_and_is_replaced() {
    let (pool, events) = Executor::start(workers(2, None), None);
    let victim = pool.submit_one(sleep(60.0, "victim")).expect("submit");
    let mut record = RunRecord::default();
    until(
        &events,
        &mut record,
        "the victim to start",
        |e, _| matches!(e.kind, EventKind::Started { task, .. } if task == victim),
    );
    let worker = record.task(victim).expect("task").attempts[0]
        .pid
        .expect("pid");
    let others = pool
        .submit((0..6).map(|i| sleep(0.02, &i.to_string())).collect())
        .expect("submit");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the worker");
    // Two tasks long enough to run at once show two live workers again.
    let pair = pool
        .submit(vec![sleep(0.3, "a"), sleep(0.3, "b")])
        .expect("submit");
    pool.close();
    drain(&events, &mut record);
    match record.task(victim).and_then(|t| t.outcome().cloned()) {
        Some(Outcome::WorkerLost(why)) => assert!(why.contains("SIGKILL"), "{why}"),
        other => panic!("the victim ended {other:?}"),
    }
    for id in others.iter().chain(&pair) {
        assert_eq!(
            record.task(*id).and_then(|t| t.outcome().cloned()),
            Some(Outcome::Exited(0))
        );
    }
    let spans: Vec<_> = pair
        .iter()
        .map(|&id| record.task(id).expect("task").attempts[0].clone())
        .collect();
    assert_ne!(spans[0].pid, spans[1].pid);
    let ended = |i: usize| spans[i].ended.expect("ended");
    assert!(
        spans[0].started < ended(1) && spans[1].started < ended(0),
        "the two ran at once: the pool is back to 2 workers"
    );
    assert!(!spans.iter().any(|a| a.pid == Some(worker)));
}

#[test]
fn terminate_leaves_no_worker_and_no_command_running() {
    let (pool, events) = Executor::start(workers(2, None), None);
    let ids = pool
        .submit(vec![
            sleep(60.0, "in-process"),
            TaskSpec::shell("echo up; sleep 60"),
            sleep(60.0, "queued"),
        ])
        .expect("submit");
    let mut record = RunRecord::default();
    // The command's first line means its process exists.
    until(&events, &mut record, "both to start", |_, r| {
        r.tasks().filter(|t| !t.attempts.is_empty()).count() == 2 && stdout_of(r, ids[1]) == "up\n"
    });
    let mut pids = pids(&record);
    // The command runs as the worker's child: find it by its parent.
    let workers: Vec<u32> = pids.iter().copied().collect();
    for w in &workers {
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{w}/task/{w}/children")) {
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    assert!(pids.len() >= 3, "two workers and one command: {pids:?}");
    pool.terminate();
    drain(&events, &mut record);
    drop(pool);
    for pid in pids {
        assert!(wait_gone(pid), "process {pid} is still running");
    }
    let outcomes: HashMap<TaskId, Option<Outcome>> = ids
        .iter()
        .map(|&id| (id, record.task(id).and_then(|t| t.outcome().cloned())))
        .collect();
    assert_eq!(outcomes[&ids[0]], Some(Outcome::Killed));
    assert_eq!(outcomes[&ids[1]], Some(Outcome::Killed));
}

#[test]
fn the_seed_demo_in_worker_mode_reuses_a_pid_and_prints_the_seeds_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("trace.json");
    let preset = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/presets/pool4_workers.toml"
    );
    let out = poolscope()
        .args(["run", preset, "--trace"])
        .arg(&trace)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut runs: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Run task ") {
            let (task, pid) = rest.split_once(" (").expect("Run task N (PID)...");
            let pid = pid.strip_suffix(")...").expect("ends with )...");
            runs.entry(pid.to_owned())
                .or_default()
                .push(task.to_owned());
        } else {
            assert!(
                line.starts_with("Task ") && line.ends_with(" seconds."),
                "not a line of the seed's shape: {line:?}"
            );
        }
    }
    assert_eq!(runs.values().map(Vec::len).sum::<usize>(), 5, "{text}");
    assert!(runs.values().any(|tasks| tasks.len() >= 2), "{runs:?}");
    // The trace draws each task on its worker's track, named by the worker's PID.
    let events = common::trace_events(&trace);
    let tracks = common::worker_pids_by_track(&events);
    let traced: BTreeSet<String> = events
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| {
            // A worker's tasks are on its own track, named by its PID.
            assert_eq!(e["pid"], 2, "on a worker's track: {e}");
            assert!(e["args"]["os_pid"].is_null(), "the track says it: {e}");
            let tid = e["tid"].as_u64().expect("tid");
            tracks.get(&tid).cloned().expect("a named track")
        })
        .collect();
    assert_eq!(traced, runs.keys().cloned().collect());
}

#[test]
fn sigterm_to_poolscope_run_with_workers_leaves_no_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tasks.toml");
    std::fs::write(
        &file,
        "[pool]\nsize = 2\nmode = \"workers\"\n[[task]]\nbuiltin = \"sleep\"\nseconds = 60\nrange = [0, 4]\n",
    )
    .expect("write");
    let mut child = poolscope()
        .args(["run", "--unordered"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    // Both workers announce their first task: then they are running.
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut workers = BTreeSet::new();
    let mut line = String::new();
    while workers.len() < 2 {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stdout, &mut line).expect("read") > 0,
            "poolscope ended early"
        );
        let pid = line
            .split_once(" (")
            .and_then(|(_, p)| p.split_once(')'))
            .and_then(|(p, _)| p.parse::<u32>().ok())
            .expect("Run task N (PID)...");
        workers.insert(pid);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    for pid in workers {
        assert!(wait_gone(pid), "worker {pid} outlived poolscope");
    }
}

#[test]
fn a_crashing_task_fails_alone_and_the_pool_goes_on() {
    let mut specs = vec![job(BuiltinKind::Crash, "boom")];
    specs.extend((0..4).map(|i| job(BuiltinKind::Print(format!("ok {i}")), "")));
    let (record, ids) = run_all(workers(1, None), specs, 1);
    match record.task(ids[0]).and_then(|t| t.outcome().cloned()) {
        Some(Outcome::WorkerLost(why)) => assert!(why.contains("SIGABRT"), "{why}"),
        other => panic!("the crash ended {other:?}"),
    }
    assert_eq!(record.succeeded(), 4);
}

#[test]
fn builtins_run_as_processes_too_so_one_list_works_in_both_modes() {
    let cfg = PoolConfig {
        helper: Some(PathBuf::from(env!("CARGO_BIN_EXE_poolscope"))),
        ..config(3)
    };
    let specs = (0..3).map(|i| sleep(0.01, &i.to_string())).collect();
    let (record, _) = run_all(cfg, specs, 1);
    assert_eq!(record.succeeded(), 3);
    assert_eq!(pids(&record).len(), 3, "a process each");
}

#[test]
fn thousands_of_tiny_tasks_one_by_one_are_each_recorded_once() {
    // A long queue of very short tasks: workers are given tasks ahead of time.
    let specs = (0..3000)
        .map(|i| job(BuiltinKind::Print(i.to_string()), ""))
        .collect();
    let (record, ids) = run_all(workers(2, None), specs, 1);
    assert_eq!(record.succeeded(), 3000);
    for (i, &id) in ids.iter().enumerate() {
        let task = record.task(id).expect("task");
        assert_eq!(task.attempts.len(), 1);
        assert_eq!(stdout_of(&record, id), format!("{i}\n"));
    }
    assert_eq!(pids(&record).len(), 2);
}

#[test]
fn each_worker_runs_its_initializer_first_and_its_life_is_recorded() {
    let config = PoolConfig {
        workers: Some(WorkerConfig {
            max_tasks: Some(2),
            initializer: Some(poolscope::executor::Invocation::Builtin(Builtin::new(
                BuiltinKind::Sleep(Span::fixed(Duration::from_millis(50))),
                "",
            ))),
            stopped_limit: None,
            ..WorkerConfig::default()
        }),
        ..workers(2, None)
    };
    let specs = (0..4).map(|i| sleep(0.01, &i.to_string())).collect();
    let (pool, events) = Executor::start(config, None);
    pool.submit_map(specs, 2).expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    assert_eq!(record.succeeded(), 4);
    let ran: BTreeSet<u32> = pids(&record);
    // A worker is reaped just after its last report: its end may follow the drain.
    let all_ended = |r: &RunRecord| r.workers.iter().all(|w| w.how.is_some());
    if !all_ended(&record) {
        until(&events, &mut record, "every worker's end", |_, r| {
            all_ended(r)
        });
    }
    for pid in &ran {
        let life = record
            .workers
            .iter()
            .find(|w| w.pid == *pid)
            .unwrap_or_else(|| panic!("worker {pid} has no recorded life: {:?}", record.workers));
        let (from, to) = life.init.expect("its initializer ran");
        let to = to.expect("and ended");
        assert!(to >= from + Duration::from_millis(40), "{from:?}..{to:?}");
        let first_task = record
            .attempts()
            .filter(|(_, a)| a.pid == Some(*pid))
            .map(|(_, a)| a)
            .map(|a| a.started)
            .min()
            .expect("a task");
        assert!(first_task >= to, "its tasks start after its initializer");
        // Each retired after its 2 tasks (maxtasksperchild).
        let (how, retired) = life.how.clone().expect("it ended");
        assert!(retired, "{how}");
    }
}

#[test]
fn a_command_on_a_worker_runs_as_its_child_and_both_pids_are_recorded() {
    let (record, ids) = run_all(
        workers(1, None),
        vec![TaskSpec::shell("echo $$"), TaskSpec::shell("echo $$")],
        1,
    );
    assert_eq!(record.succeeded(), 2);
    let mut commands = BTreeSet::new();
    for &id in &ids {
        let a = &record.task(id).expect("task").attempts[0];
        let command = a.command_pid.expect("the command's PID is recorded");
        assert_eq!(stdout_of(&record, id), format!("{command}\n"));
        assert_ne!(a.pid, Some(command), "the lane is the worker's PID");
        commands.insert(command);
    }
    assert_eq!(pids(&record).len(), 1, "one worker ran both");
    assert_eq!(commands.len(), 2, "a new command process each time");
}

#[test]
fn the_side_by_side_preset_runs_processes_and_workers_in_one_pool() {
    let preset = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/presets/pool4_side_by_side.toml"
    );
    let file =
        poolscope::model::formats::taskfile::load(std::path::Path::new(preset)).expect("preset");
    let config = PoolConfig {
        workers: file.workers.clone(),
        ..workers(file.pool_size.expect("size"), None)
    };
    let (record, ids) = run_all(config, file.tasks.to_vec(), 1);
    assert_eq!(record.succeeded(), 10);
    let workers: BTreeSet<u32> = record.workers.iter().map(|w| w.pid).collect();
    let pid_of = |id: TaskId| record.task(id).expect("task").attempts[0].pid.expect("pid");
    let (processes, on_workers) = ids.split_at(5);
    let process_pids: BTreeSet<u32> = processes.iter().map(|&id| pid_of(id)).collect();
    assert_eq!(process_pids.len(), 5, "a process each");
    assert!(process_pids.is_disjoint(&workers));
    let worker_pids: BTreeSet<u32> = on_workers.iter().map(|&id| pid_of(id)).collect();
    assert!(worker_pids.is_subset(&workers));
    assert!(worker_pids.len() <= 4, "five tasks on at most four workers");
}

/// A run on workers that is resumed goes on on workers (one PID runs the tasks again),
/// with its output in input order, as it first ran.
#[test]
fn a_workers_run_resumes_on_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("fail.toml");
    std::fs::write(
        &file,
        "[pool]\nsize = 1\nmode = \"workers\"\n[[task]]\nbuiltin = \"fail\"\nrange = [0, 4]\n",
    )
    .expect("write");
    let runs = dir.path().join("runs");
    let run = |args: &[&str]| {
        common::poolscope()
            .arg("run")
            .args(args)
            .args(["--run-dir".as_ref(), runs.as_os_str()])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("poolscope")
    };
    let first = run(&[file.to_str().expect("utf-8")]);
    assert!(!first.status.success(), "every task failed");
    let folder = common::the_run(&runs);
    let again = run(&["--resume-failed", folder.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("4 of 4 tasks to run"), "{stderr}");
    let loaded = poolscope::model::store::journal::load(&folder).expect("journal");
    let pids: BTreeSet<u32> = loaded
        .record
        .attempts()
        .filter(|(_, a)| a.number == 2)
        .filter_map(|(_, a)| a.pid)
        .collect();
    assert_eq!(
        pids.len(),
        1,
        "the four tasks ran again on one worker: {pids:?}"
    );
}

#[test]
fn workers_that_cannot_start_fail_every_task_at_once_saying_why() {
    // Whatever runs as the worker is not one (here /bin/false): each would end before
    // saying hello and fail one task a few ms later, a thousand tasks crawling.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tasks.toml");
    let joblog = dir.path().join("log.tsv");
    std::fs::write(
        &file,
        "[pool]\nsize = 2\nmode = \"workers\"\n[[task]]\nbuiltin = \"noop\"\nrange = [0, 1000]\n",
    )
    .expect("write");
    // To a file: a pipe nobody reads while waiting would fill and stop the run.
    let stderr_file = dir.path().join("stderr.txt");
    let mut child = poolscope()
        .env("POOLSCOPE_HELPER", "/bin/false")
        .args(["run", "--joblog"])
        .arg(&joblog)
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_file).expect("stderr file"))
        .spawn()
        .expect("spawn");
    assert!(wait_gone(child.id()), "the run ends instead of crawling");
    let status = child.wait().expect("wait");
    let stderr = std::fs::read_to_string(&stderr_file).expect("stderr");
    assert!(!status.success());
    assert!(
        stderr.contains("workers cannot start: 3 in a row ended (exit 1) before saying hello"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/bin/false"),
        "names what was run: {stderr}"
    );
    let log = std::fs::read_to_string(&joblog).expect("joblog");
    assert_eq!(
        log.lines().count(),
        1 + 1000,
        "every task is in the joblog once"
    );
}

#[test]
fn tasks_of_their_own_process_on_a_worker_pool_keep_the_pool_size() {
    // `process = true` runs beside the worker: handed to a busy slot ahead of its turn
    // (a chunk, a prefetch), it started at once, one more than the pool size each.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tasks.toml");
    let trace = dir.path().join("trace.json");
    std::fs::write(
        &file,
        "[pool]\nsize = 2\nmode = \"workers\"\n[[task]]\nbuiltin = \"noop\"\nrange = [0, 2000]\n[[task]]\ncommand = \"sleep 0.2\"\nprocess = true\nrange = [0, 6]\n[[task]]\nbuiltin = \"noop\"\nrange = [0, 2000]\n",
    )
    .expect("write");
    let out = poolscope()
        .args(["run", "--trace"])
        .arg(&trace)
        .arg(&file)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut edges: Vec<(u64, i32)> = Vec::new();
    for e in &common::trace_events(&trace) {
        if e["ph"] == "X" {
            let start = e["ts"].as_u64().expect("ts");
            let end = start + e["dur"].as_u64().expect("dur");
            edges.push((start, 1));
            edges.push((end, -1));
        }
    }
    assert_eq!(edges.len(), 2 * 4006, "every task ran");
    // An end before a start at the same instant: a slot handed straight on.
    edges.sort_unstable();
    let mut running = 0;
    let most = edges
        .iter()
        .map(|&(_, step)| {
            running += step;
            running
        })
        .max();
    assert_eq!(most, Some(2), "never more than the pool size at once");
}

#[test]
fn tasks_a_worker_held_but_never_started_run_when_the_interrupted_run_is_resumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let runs_arg = runs.to_string_lossy().into_owned();
    let d = dir.path().display();
    // One worker takes the four tasks as one chunk; the first runs until poolscope is
    // interrupted, so the other three are held by the worker and never start.
    let tasks = format!("echo $$ > {d}/pid.1; exec sleep 60\necho b\necho c\necho d\n");
    let child = common::start_run(
        &[
            "--workers",
            "-j",
            "1",
            "--chunksize",
            "4",
            "--run-dir",
            &runs_arg,
        ],
        &tasks,
    );
    let first: u32 = common::written_pid(&dir.path().join("pid.1"));
    let (code, stderr) = common::interrupt(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("(3 of them never started)"), "{stderr}");
    assert!(wait_gone(first), "the running task outlived poolscope");
    // The three held tasks are not counted as killed: a plain resume runs them.
    let (lines, stderr) = common::resume_sorted(&runs);
    assert_eq!(lines, ["b", "c", "d"], "{stderr}");
}
