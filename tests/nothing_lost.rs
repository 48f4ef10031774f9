//! "Nothing lost, nothing left running", second pass: each case an unlucky user met,
//! numbered as in the issue that found it, asserting what the user would check.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};

use common::{SmallDisk, WAIT, run_with_input, start_run, the_run, wait_gone};
use poolscope::executor::{Outcome, TaskId};
use poolscope::model::store::journal;

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

/// A run of one task that writes its PID in `dir` and sleeps; returned once it runs.
fn one_sleeping_task(dir: &Path) -> (Child, Vec<u32>) {
    let child = start_run(
        &["-j", "1", "--run-dir", &path_arg(&dir.join("runs"))],
        &format!("echo $$ > {}/pid.1; exec sleep 60\n", dir.display()),
    );
    (child, common::started_pids(dir, 1))
}

#[test]
fn a_run_killed_the_moment_its_first_task_starts_leaves_nothing_running() {
    // The task's group is counted in the table the guard reads once poolscope is gone,
    // and it ends it even when poolscope dies the moment the task starts.
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut child, pids) = one_sleeping_task(dir.path());
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        assert!(
            wait_gone(pids[0]),
            "round {round}: task {} outlived its poolscope",
            pids[0]
        );
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
    assert_eq!(loaded.record.task_count(), 2);
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
    let tasks = loaded.record.task_count();
    let done = loaded
        .record
        .tasks()
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
    // Room for the list of 12 000 tasks (about 1.5 MB: each command is padded to
    // 120 bytes) and the journal's reserve, not the run (about 60 bytes a task more).
    let Some(disk) = SmallDisk::mount(2 << 20) else {
        return;
    };
    let runs = disk.path().join("runs");
    let tasks = 12_000;
    let command = format!("echo x # {}\n", "p".repeat(100));
    let out = run_with_input(
        &["-j", "2", "--run-dir", &path_arg(&runs)],
        &command.repeat(tasks),
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
    // A task file: the whole list is known before the first task (a stream from stdin
    // is not, see the next test).
    let list = tempfile::tempdir().expect("tempdir");
    let file = list.path().join("tasks.toml");
    std::fs::write(
        &file,
        format!(
            "[[task]]\ncommand = \"touch {}\"\nrange = [0, 60000]\n",
            marker.display()
        ),
    )
    .expect("write the list");
    let out = run_with_input(
        &[&path_arg(&file), "-j", "2", "--run-dir", &path_arg(&runs)],
        "",
    );
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
fn a_stream_that_fills_the_disk_stops_and_its_journal_holds_every_task_that_ran() {
    let Some(disk) = SmallDisk::mount(2 << 20) else {
        return;
    };
    let runs = disk.path().join("runs");
    // On a disk with room: the tasks' own record of what ran.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let ran = elsewhere.path().join("ran.log");
    // Each task appends its number: what ran is counted from the disk, not from us.
    let input = (1..=20_000).fold(String::new(), |mut all, i| {
        use std::fmt::Write as _;
        let _ = writeln!(all, "echo {i} >> {}", ran.display());
        all
    });
    let out = run_with_input(&["-j", "2", "--run-dir", &path_arg(&runs)], &input);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("No space left"), "{stderr}");
    let ran: Vec<u64> = std::fs::read_to_string(&ran)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    if ran.is_empty() {
        return; // the first batch did not fit: nothing ran, as with a list
    }
    let dir = the_run(&runs);
    let loaded = journal::load(&dir).expect("the journal loads");
    for number in &ran {
        let task = loaded.record.task(TaskId(*number));
        assert!(
            task.is_some(),
            "task {number} ran but is not in the journal of {}",
            dir.display()
        );
    }
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
    assert_eq!(out.status.code(), Some(255), "{stderr}");
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

/// The PIDs of `poolscope`'s persistent workers (its children running `__worker`),
/// once `count` of them are there; polled, bounded.
fn workers_of(poolscope: u32, count: usize) -> Vec<i32> {
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        // Children are listed by the thread that started them (the pool's thread).
        let children: String = std::fs::read_dir(format!("/proc/{poolscope}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .collect::<Vec<_>>()
            .join(" ");
        let workers: Vec<i32> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("__worker"))
            })
            .collect();
        if workers.len() >= count {
            return workers;
        }
        assert!(std::time::Instant::now() < deadline, "no workers started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("kill");
}

/// Wait (bounded) for a child to end; its exit status, or `None` if it did not.
fn ended_within(child: &mut Child, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    // A child's exit has no event this test can wait on besides wait(): poll try_wait.
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn finding_4_every_signal_ends_a_run_whose_worker_is_stopped() {
    use nix::sys::signal::Signal;
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        // Each task writes its PID, then runs long.
        let input = format!(
            "sh -c 'echo $$ > {d}/pid.1; exec sleep 600'\nsh -c 'echo $$ > {d}/pid.2; exec sleep 600'\n"
        );
        let mut child = start_run(&["--workers", "-j", "2"], &input);
        let tasks = common::started_pids(dir.path(), 2);
        let workers = workers_of(child.id(), 2);
        signal(workers[0], Signal::SIGSTOP);
        signal(child.id() as i32, sig);
        let status = ended_within(&mut child, std::time::Duration::from_secs(10));
        if status.is_none() {
            for &w in &workers {
                signal(w, Signal::SIGCONT);
            }
        }
        assert!(
            status.is_some(),
            "{sig}: the run did not end with a stopped worker"
        );
        for pid in tasks.into_iter().chain(workers.iter().map(|&w| w as u32)) {
            assert!(wait_gone(pid), "{sig}: {pid} outlived the run");
        }
    }
}

#[test]
fn finding_4_a_timeout_fires_whatever_the_worker_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("joblog");
    let d = dir.path().display();
    let input = format!(
        "sh -c 'echo $$ > {d}/pid.1; exec sleep 600'\nsh -c 'echo $$ > {d}/pid.2; exec sleep 600'\ntrue\n"
    );
    let mut child = start_run(
        &[
            "--workers",
            "-j",
            "2",
            "--timeout",
            "2",
            "--joblog",
            &path_arg(&joblog),
        ],
        &input,
    );
    common::started_pids(dir.path(), 2);
    let workers = workers_of(child.id(), 2);
    signal(workers[0], nix::sys::signal::Signal::SIGSTOP);
    let status = ended_within(&mut child, common::WAIT);
    for &w in &workers {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(w),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
    assert!(status.is_some(), "the run never ended");
    let log = std::fs::read_to_string(&joblog).expect("joblog");
    let rows: Vec<Vec<&str>> = log
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{log}");
    for row in &rows {
        let timed_out = row[6] == "-1" && row[7] == "15";
        let ok = row[6] == "0" && row[7] == "0";
        match row[0] {
            "1" | "2" => assert!(timed_out, "a long task did not time out: {log}"),
            _ => assert!(ok, "the short task failed: {log}"),
        }
    }
}

#[test]
fn finding_4_a_worker_stopped_too_long_is_lost_and_a_new_one_takes_its_slot() {
    use poolscope::executor::{EventKind, Executor, PoolConfig, TaskSpec, WorkerConfig};
    let config = PoolConfig {
        workers: Some(WorkerConfig {
            stopped_limit: Some(std::time::Duration::from_millis(500)),
            ..WorkerConfig::default()
        }),
        helper: Some(std::path::PathBuf::from(env!("CARGO_BIN_EXE_poolscope"))),
        ..common::config(1)
    };
    let (pool, events) = Executor::start(config, None);
    let specs = vec![TaskSpec::shell("sleep 600"), TaskSpec::shell("echo after")];
    pool.submit(specs).expect("submit");
    pool.close();
    let mut record = poolscope::model::RunRecord::default();
    let started = common::until(
        &events,
        &mut record,
        "task 1 to start",
        |e, _| matches!(e.kind, EventKind::Started { task, .. } if task == TaskId(1)),
    );
    let EventKind::Started {
        pid: Some(worker), ..
    } = started.kind
    else {
        panic!("no worker PID");
    };
    signal(worker as i32, nix::sys::signal::Signal::SIGSTOP);
    common::drain(&events, &mut record);
    let lost = record.task(TaskId(1)).and_then(|t| t.outcome().cloned());
    assert!(
        matches!(&lost, Some(Outcome::WorkerLost(why)) if why.contains("stopped")),
        "{lost:?}"
    );
    let after = record.task(TaskId(2)).expect("task 2");
    assert_eq!(after.outcome(), Some(&Outcome::Exited(0)));
    let new_worker = after.attempts[0].pid.expect("pid");
    assert_ne!(new_worker, worker, "a new worker took the slot");
    assert_eq!(common::stdout_of(&record, TaskId(2)), "after\n");
    assert!(wait_gone(worker), "the stopped worker is gone");
}

/// `poolscope ARGS` under a shell's `ulimit` settings, `input` on its stdin, to its end
/// (a run that does not end within [`LIMITED_RUN_ENDS`] fails the test, its processes
/// killed); see [`limited_command`].
fn limited_run(
    limits: &str,
    args: &[&str],
    input: &str,
    as_nobody: bool,
) -> Option<(std::process::Output, tempfile::TempDir)> {
    use std::os::unix::process::CommandExt;
    let (mut command, dir) = limited_command(limits, args, input, as_nobody)?;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash");
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let Some(status) = ended_within(&mut child, LIMITED_RUN_ENDS) else {
        let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        panic!(
            "poolscope {args:?} under `{limits}` did not end within {LIMITED_RUN_ENDS:?}: {}",
            String::from_utf8_lossy(&stderr.join().expect("stderr"))
        );
    };
    let output = std::process::Output {
        status,
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    };
    Some((output, dir))
}

/// All a child's pipe gives, read on a thread of its own.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Long enough for the slowest limited run (a queue that fails after one 10 s wait).
const LIMITED_RUN_ENDS: std::time::Duration = std::time::Duration::from_mins(2);

/// `poolscope ARGS` under a shell's `ulimit` settings, `input` on its stdin; as the
/// user `nobody` when `as_nobody` (root is not held to a process limit), in which case
/// `None` where that cannot be done here. `{dir}` in an argument is a folder both can
/// write (kept as long as the returned `TempDir`).
fn limited_command(
    limits: &str,
    args: &[&str],
    input: &str,
    as_nobody: bool,
) -> Option<(std::process::Command, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    // A folder the other user can write, for its run root.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("dir");
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let input_file = shared.join("input");
    std::fs::write(&input_file, input).expect("input");
    let quoted: Vec<String> = args
        .iter()
        .map(|a| format!("'{}'", a.replace("{dir}", &shared.to_string_lossy())))
        .collect();
    let script = format!(
        "{limits}; exec '{}' run --run-dir '{}' {} < '{}'",
        env!("CARGO_BIN_EXE_poolscope"),
        shared.join("runs").display(),
        quoted.join(" "),
        input_file.display()
    );
    let mut command = if as_nobody {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: a process limit is tested as root switching to nobody");
            return None;
        }
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "bash",
            "-c",
        ]);
        c
    } else {
        let mut c = std::process::Command::new("bash");
        c.arg("-c");
        c
    };
    command
        .arg(script)
        .env("HOME", &shared)
        .env("RUST_BACKTRACE", "1");
    Some((command, dir))
}

fn joblog_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

#[test]
fn finding_5_scarce_file_descriptors_make_tasks_wait_not_fail() {
    for mode in [&[][..], &["--workers"][..]] {
        let mut args = vec!["-j", "60", "--joblog", "{dir}/joblog"];
        args.extend_from_slice(mode);
        let (out, dir) = limited_run("ulimit -n 64", &args, &"sleep 0.05\n".repeat(120), false)
            .expect("runs here");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{mode:?}: {stderr}");
        let joblog = dir.path().join("shared/joblog");
        let rows = joblog_rows(&std::fs::read_to_string(&joblog).expect("joblog"));
        assert_eq!(rows.len(), 120, "{mode:?}");
        assert!(rows.iter().all(|r| r[6] == "0"), "{mode:?}: a task failed");
        // Told once, as GNU parallel warns once.
        assert_eq!(
            stderr.matches("tasks can run at once here").count(),
            1,
            "{mode:?}: {stderr}"
        );
        assert!(stderr.contains("Too many open files"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        // Its socket took its descriptor before the tasks took the rest: it can be
        // driven from another terminal.
        assert!(!stderr.contains("cannot be driven"), "{mode:?}: {stderr}");
    }
}

#[test]
fn finding_5_a_process_limit_makes_tasks_wait_not_fail() {
    let Some((out, dir)) = limited_run(
        "ulimit -u 20",
        &["-j", "30", "--joblog", "{dir}/joblog"],
        &"sleep 0.05\n".repeat(50),
        true,
    ) else {
        return;
    };
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let joblog = dir.path().join("shared/joblog");
    let rows = joblog_rows(&std::fs::read_to_string(&joblog).expect("joblog"));
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|r| r[6] == "0"), "a task failed");
    assert_eq!(
        stderr.matches("tasks can run at once here").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn finding_6_no_panic_when_the_machine_refuses_threads_or_processes() {
    for mode in [&[][..], &["--workers"][..]] {
        for limit in ["ulimit -u 3", "ulimit -u 5"] {
            let mut args = vec!["-j", "40"];
            args.extend_from_slice(mode);
            let Some((out, _dir)) = limited_run(limit, &args, &"true\n".repeat(10), true) else {
                return;
            };
            let stderr = text(&out.stderr);
            assert!(!stderr.contains("panicked"), "{limit} {mode:?}: {stderr}");
            assert!(
                out.status.code() == Some(0) || stderr.contains("Resource temporarily unavailable"),
                "{limit} {mode:?}: it failed without saying why: {stderr}"
            );
        }
    }
    // Workers under a descriptor limit (the backend's start used to panic).
    let (out, _dir) = limited_run(
        "ulimit -n 64",
        &["--workers", "-j", "40"],
        &"true\n".repeat(80),
        false,
    )
    .expect("runs here");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn with_no_room_for_any_task_the_whole_queue_fails_after_one_wait() {
    // `ulimit -n 15`: poolscope itself starts (it needs 13 descriptors here), no task's
    // pipes and pidfd fit beside it (one does at 18): two to spare either way as
    // poolscope's own count changes. Each task waited its own 10 s before (a minute for
    // these six).
    let (mut command, _dir) = limited_command(
        "ulimit -n 15",
        &["-j", "2"],
        "echo 1\necho 2\necho 3\necho 4\necho 5\necho 6\n",
        false,
    )
    .expect("runs here");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    let Some(status) = ended_within(&mut child, WAIT) else {
        let _ = child.kill();
        panic!("the queue was not given up after one wait");
    };
    let out = child.wait_with_output().expect("output");
    let stderr = text(&out.stderr);
    assert_eq!(status.code(), Some(6), "{stderr}");
    assert_eq!(
        stderr
            .matches("failed to start: Too many open files")
            .count(),
        6,
        "{stderr}"
    );
    assert!(stderr.contains("waited 10 s for room"), "{stderr}");
}

#[test]
fn finding_7_a_shared_run_folder_keeps_its_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for mode in [0o1777, 0o777, 0o770] {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("dir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let out = run_with_input(&["--run-dir", &path_arg(&shared)], "true\n");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let after = std::fs::metadata(&shared).expect("meta").mode() & 0o7777;
        assert_eq!(after, mode, "poolscope changed a folder it did not make");
        let me = rustix::process::geteuid().as_raw();
        let private = shared.join(format!("poolscope-{me}"));
        assert_eq!(
            std::fs::metadata(&private).expect("private").mode() & 0o777,
            0o700
        );
        assert_eq!(std::fs::read_dir(&private).expect("runs").count(), 1);
    }
}

#[test]
fn finding_9_output_passes_through_byte_exact_in_both_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes: Vec<u8> = {
        // A fixed pseudo-random stream (no newline at its end, NULs and invalid UTF-8).
        let mut x: u32 = 2_463_534_242;
        (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .chain([b'e', b'n', b'd'])
            .collect()
    };
    let file = dir.path().join("random.bin");
    std::fs::write(&file, &bytes).expect("write");
    for mode in [&[][..], &["--workers"][..]] {
        for (command, stderr_too) in [("cat", false), ("cat >&2", true)] {
            let line = format!("{command} {}\n", file.display());
            let out = run_with_input(mode, &line);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            let got = if stderr_too { &out.stderr } else { &out.stdout };
            assert!(
                got == &bytes,
                "{mode:?} {command}: {} bytes of {}",
                got.len(),
                bytes.len()
            );
        }
    }
}

#[test]
fn finding_10_input_with_no_end_is_refused_at_once_showing_only_its_start() {
    let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
    let out = common::poolscope()
        .arg("run")
        .stdin(zero)
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(
        stderr.contains("stdin line 1 is longer than 128 KiB"),
        "{stderr}"
    );
    assert!(
        stderr.len() < 1000,
        "the message is short: {} bytes",
        stderr.len()
    );
    // A 10 MB line: refused the same way, its start shown, not all of it.
    let out = run_with_input(&[], &format!("echo {}\n", "x".repeat(10_000_000)));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr.contains("it starts \"echo xxx"),
        "{}",
        &stderr[..stderr.len().min(300)]
    );
    assert!(stderr.len() < 1000, "{} bytes of message", stderr.len());
}

#[test]
fn finding_12_messages_are_short_escaped_and_name_what_they_mean() {
    // A huge number is not written out in full.
    let out = run_with_input(&["--timeout", "1e300"], "true\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(
        stderr.contains("--timeout") && stderr.len() < 200,
        "{stderr}"
    );
    // Control bytes from a task file do not reach the terminal raw.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tasks.toml");
    std::fs::write(&file, "[[task]]\nprogram = \"nosuchprogram-\\u001b[2J\"\n").expect("write");
    let out = common::poolscope()
        .arg("run")
        .arg(&file)
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("failed to start"), "{stderr:?}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    // The folder `poolscope run` prints is what `view` takes: it is checked, not refused
    // as "Is a directory" (no display here: a broken journal shows the check works).
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("dir");
    std::fs::write(run.join("journal.jsonl"), "not a journal\n").expect("write");
    let out = common::poolscope()
        .arg("view")
        .arg(&run)
        .output()
        .expect("view");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a poolscope journal"), "{stderr}");
    assert!(!stderr.contains("Is a directory"), "{stderr}");
}

/// The orphan guard of the poolscope with PID `pid`: its child named `poolscope-guard`
/// (polled, bounded: it starts aside).
fn guard_of(pid: u32) -> u32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "PID (COMM) STATE PPID ..."
            let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "))
            else {
                continue;
            };
            let parent = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
            if name == "poolscope-guard" && parent == Some(pid) {
                return entry.file_name().to_string_lossy().parse().expect("pid");
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "poolscope {pid} has no orphan guard"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_stopped_orphan_guard_does_not_stall_the_pool() {
    // The guard's pipe held 16 384 records (three per task): with the guard stopped, the
    // 5 462nd task's start blocked the whole pool for as long as the guard stayed stopped.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let gate = format!("while [ ! -e {d}/go ]; do sleep 0.05; done\n");
    let input = format!("{gate}{gate}{}", "true\n".repeat(6000));
    let mut child = start_run(
        &["-j", "2", "--run-dir", &path_arg(&dir.path().join("runs"))],
        &input,
    );
    let guard = guard_of(child.id());
    let guard_pid = nix::unistd::Pid::from_raw(guard as i32);
    nix::sys::signal::kill(guard_pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    std::fs::write(dir.path().join("go"), "").expect("go");
    let status = ended_within(&mut child, std::time::Duration::from_mins(5));
    let _ = nix::sys::signal::kill(guard_pid, nix::sys::signal::Signal::SIGCONT);
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the pool stalled behind its stopped orphan guard");
    };
    let out = child.wait_with_output().expect("output");
    assert_eq!(status.code(), Some(0), "{}", text(&out.stderr));
    let run = the_run(&dir.path().join("runs"));
    let loaded = journal::load(&run).expect("journal");
    assert_eq!(loaded.record.task_count(), 6002);
    assert_eq!(loaded.record.succeeded(), 6002);
}

#[test]
fn a_killed_poolscope_s_output_ends_with_it_whatever_its_guard_does() {
    // The guard is a copy of poolscope: had it kept poolscope's descriptors, a reader of
    // poolscope's output (`poolscope run … | cat`) would wait for the guard, and a
    // stopped guard would hold it for ever.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, pids) = one_sleeping_task(dir.path());
    let guard = guard_of(child.id());
    // Its table and the pipe that tells it poolscope is gone, nothing else.
    let held: Vec<String> = std::fs::read_dir(format!("/proc/{guard}/fd"))
        .expect("the guard's descriptors")
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|target| target.display().to_string())
        .collect();
    assert_eq!(held.len(), 2, "the guard holds {held:?}");
    signal(guard as i32, nix::sys::signal::Signal::SIGSTOP);
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
        let _ = err.read_to_end(&mut sink);
        let _ = tx.send(());
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let ended = rx.recv_timeout(common::WAIT).is_ok();
    signal(guard as i32, nix::sys::signal::Signal::SIGCONT);
    assert!(ended, "poolscope's output stayed open after it was killed");
    assert!(
        wait_gone(pids[0]),
        "task {} outlived its poolscope",
        pids[0]
    );
}

#[test]
fn killing_every_process_with_poolscope_s_command_line_still_ends_its_tasks() {
    // `pkill -KILL -f 'poolscope run …'`: the guard must not answer to poolscope's
    // command line, or it dies with poolscope and the tasks run on.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let (child, pids) = long_run(&dir.path().join("runs"), dir.path());
    let guard = guard_of(child.id());
    let cmdline = |pid: u32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let own = cmdline(child.id());
    assert_ne!(
        cmdline(guard),
        own,
        "the guard shows poolscope's command line"
    );
    let same: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| cmdline(pid) == own)
        .collect();
    assert_eq!(
        same,
        vec![child.id()],
        "{d}: more than poolscope answers to its command line"
    );
    stop(child, &pids);
}

#[test]
fn tasks_start_with_no_signal_blocked() {
    // Tasks inherit the mask of the thread that spawns them (std no longer resets it):
    // poolscope must never block a signal there (blocking SIGCHLD to spare wake-ups was
    // tried, and this caught it).
    let out = run_with_input(&["--no-journal"], "grep SigBlk /proc/self/status\n");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("SigBlk:\t0000000000000000"),
        "a task started with signals blocked: {stdout}"
    );
}

#[test]
fn a_run_whose_folder_was_removed_still_ends_on_sigterm() {
    // Its control socket's path is gone with the folder: the run used to hang at the end
    // waiting for its listener, which it woke by connecting to that path.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let runs = dir.path().join("runs");
    let input = format!("echo $$ > {d}/pid.1; exec sleep 60\n");
    let mut child = start_run(&["-j", "1", "--run-dir", &path_arg(&runs)], &input);
    let pids = common::started_pids(dir.path(), 1);
    std::fs::remove_dir_all(&runs).expect("remove the run folder");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = ended_within(&mut child, std::time::Duration::from_mins(1));
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(status.is_some(), "the run hung after SIGTERM");
    assert!(wait_gone(pids[0]), "its task outlived it");
}

/// A stand-in worker that stops itself (SIGSTOP) after saying it started a task, just
/// before (`STOP_AT=spawn`) or just after starting its command, before telling poolscope
/// which process that is: moments a real worker can be stopped in. Anything but the
/// worker role is the real poolscope (the orphan guard).
const STOPS_BEFORE_NAMING_ITS_COMMAND: &str = r#"#!/usr/bin/env python3
import json, os, signal, struct, subprocess, sys, time
if sys.argv[1] != "__worker":
    os.execv(os.environ["REAL_POOLSCOPE"], ["poolscope"] + sys.argv[1:])
out, inp = sys.stdout.buffer, sys.stdin.buffer
def frame(kind, body):
    out.write(struct.pack("<IB", len(body) + 1, kind) + body)
    out.flush()
def read_frame():
    (n,) = struct.unpack("<I", inp.read(4))
    return inp.read(n)
frame(0, json.dumps({"Hello": {"version": 2, "pid": os.getpid()}}).encode())
job = json.loads(read_frame()[1:])["Run"][0]
task, attempt = job["task"], job["attempt"]
frame(2, struct.pack("<QIQ", task, attempt, time.monotonic_ns()))
if os.environ["STOP_AT"] == "spawn":
    os.kill(os.getpid(), signal.SIGSTOP)
child = subprocess.Popen(["sh", "-c", job["invocation"]["Shell"]], process_group=0)
if os.environ["STOP_AT"] == "naming":
    os.kill(os.getpid(), signal.SIGSTOP)
frame(0, json.dumps({"Child": {"task": task, "attempt": attempt, "pid": child.pid}}).encode())
status = child.wait()
how, value = (1, -status) if status < 0 else (0, status)
frame(3, struct.pack("<QIQBi", task, attempt, time.monotonic_ns(), how, value))
read_frame()
"#;

#[test]
fn a_signal_reaches_a_command_its_stopped_worker_had_not_named_yet() {
    use nix::sys::signal::Signal;
    for (sig, stop_at) in [
        (Signal::SIGTERM, "naming"),
        (Signal::SIGINT, "naming"),
        (Signal::SIGTERM, "spawn"),
        (Signal::SIGHUP, "spawn"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("poolscope-stopping-worker");
        common::write_executable(&fake, STOPS_BEFORE_NAMING_ITS_COMMAND);
        let d = dir.path().display();
        let mut child = common::poolscope()
            .args(["run", "--workers", "-j", "1"])
            .env("POOLSCOPE_HELPER", &fake)
            .env("REAL_POOLSCOPE", env!("CARGO_BIN_EXE_poolscope"))
            .env("STOP_AT", stop_at)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("poolscope run");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            writeln!(stdin, "echo $$ > {d}/pid.1; exec sleep 600").expect("write");
        }
        let worker = workers_of(child.id(), 1)[0];
        let deadline = std::time::Instant::now() + common::WAIT;
        while !common::is_stopped(worker as u32) {
            assert!(
                std::time::Instant::now() < deadline,
                "the worker never stopped"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let task = (stop_at == "naming").then(|| common::started_pids(dir.path(), 1)[0]);
        signal(child.id() as i32, sig);
        let status = ended_within(&mut child, std::time::Duration::from_secs(10));
        assert!(status.is_some(), "{sig} ({stop_at}): the run did not end");
        // Stopped before its command started, the worker may start it as it is let go.
        let task = task.or_else(|| {
            let file = dir.path().join("pid.1");
            file.exists().then(|| common::written_pid(&file))
        });
        if let Some(task) = task {
            assert!(
                wait_gone(task),
                "{sig} ({stop_at}): the command {task} outlived the run"
            );
        }
        assert!(
            wait_gone(worker as u32),
            "{sig}: the worker outlived the run"
        );
    }
}
