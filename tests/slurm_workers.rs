//! Persistent workers on a real Slurm (`--backend slurm --workers`): each slot's worker
//! is a job that connects back, and tasks cost a frame, not a job. Where no Slurm
//! answers, each test says so and returns.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use poolscope::executor::Outcome;
use poolscope::model::store::journal;

/// Slurm schedules about once a second and other tests share the cluster: generous.
const CLUSTER_WAIT: Duration = Duration::from_mins(3);

/// The cluster has 4 slots: one test at a time has it (and its waits stay meaningful).
static CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The cluster to this test alone, and a scratch folder; `None` (saying why) without one.
fn cluster(test: &str) -> Option<(std::sync::MutexGuard<'static, ()>, tempfile::TempDir)> {
    let held = CLUSTER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    common::slurm_answers(test).then(|| (held, tempfile::tempdir().expect("tempdir")))
}

/// A run that is killed if the test fails before it ends (it would hold the cluster).
struct Run(Option<Child>);

impl Run {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `poolscope run --backend slurm --workers -j SIZE` in `dir/runs`, `tasks` on stdin.
fn start(dir: &Path, size: usize, tasks: &str, more: &[&str]) -> Run {
    let size = size.to_string();
    let runs = dir.join("runs").to_string_lossy().into_owned();
    let mut args = vec![
        "--backend",
        "slurm",
        "--workers",
        "-j",
        &size,
        "--run-dir",
        &runs,
    ];
    args.extend_from_slice(more);
    Run(Some(common::start_run(&args, tasks)))
}

fn finish(mut run: Run) -> (i32, String, String) {
    let child = run.0.take().expect("a running run");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Poll (bounded) until `what` holds; no event reaches a test from the cluster.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + CLUSTER_WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn the_run(dir: &Path) -> PathBuf {
    common::the_run(&dir.join("runs"))
}

/// The worker jobs the run's relays submitted, as Slurm names them (`J`, or `J_i` for an
/// element of the pool's first array).
fn worker_jobs(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("slurm/workers.jobs"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Which of `jobs` Slurm still lists as pending or running.
fn queued(jobs: &[String]) -> Vec<String> {
    let out = std::process::Command::new("squeue")
        .args(["-h", "-o", "%i", "-j", &jobs.join(",")])
        .output()
        .expect("squeue");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn fifteen_hundred_tasks_run_on_four_worker_jobs_each_once() {
    let Some((_cluster, dir)) = cluster("fifteen_hundred_tasks_run_on_four_worker_jobs_each_once")
    else {
        return;
    };
    let joblog = dir.path().join("joblog");
    let tasks = "true\n".repeat(1500);
    let child = start(
        dir.path(),
        4,
        &tasks,
        &["--joblog", &joblog.to_string_lossy()],
    );
    let (code, _, stderr) = finish(child);
    assert_eq!(code, 0, "{stderr}");
    let log = std::fs::read_to_string(&joblog).expect("joblog");
    let mut seqs: Vec<u64> = log
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().expect("seq").parse().expect("number"))
        .collect();
    assert_eq!(seqs.len(), 1500, "one line per task");
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 1500, "each task once");
    let run = the_run(dir.path());
    // The four first workers went as one job array: `J_0` … `J_3`.
    let mut jobs = worker_jobs(&run);
    jobs.sort();
    let array = jobs[0].split('_').next().expect("an id").to_owned();
    let elements: Vec<String> = (0..4).map(|i| format!("{array}_{i}")).collect();
    assert_eq!(jobs, elements, "one job array of four elements");
    let record = journal::load(&run).expect("journal").record;
    let worker_pids: Vec<u32> = record.workers.iter().map(|w| w.pid).collect();
    assert!((1..=4).contains(&worker_pids.len()), "{worker_pids:?}");
    for task in record.tasks() {
        let pid = task.attempts.last().and_then(|a| a.pid).expect("a pid");
        assert!(
            worker_pids.contains(&pid),
            "task {} ran in {pid}, not a worker ({worker_pids:?})",
            task.id
        );
    }
}

#[test]
fn a_worker_job_cancelled_mid_task_loses_only_that_task_and_is_replaced() {
    let Some((_cluster, dir)) =
        cluster("a_worker_job_cancelled_mid_task_loses_only_that_task_and_is_replaced")
    else {
        return;
    };
    let d = dir.path().display();
    let tasks = format!("touch {d}/started.$POOLSCOPE_TASK_ID; sleep 3\n").repeat(6);
    let child = start(dir.path(), 2, &tasks, &[]);
    wait_until("two tasks to run on the cluster", || {
        dir.path().join("started.1").exists() && dir.path().join("started.2").exists()
    });
    let run = the_run(dir.path());
    let first = worker_jobs(&run)[0].clone();
    assert!(
        first.contains('_'),
        "an element of the workers' array: {first}"
    );
    let cancelled = std::process::Command::new("scancel")
        .arg(&first)
        .status()
        .expect("scancel");
    assert!(cancelled.success());
    let (code, _, stderr) = finish(child);
    assert_eq!(code, 1, "one task failed: {stderr}");
    assert!(stderr.contains("worker lost: CANCELLED"), "{stderr}");
    assert!(worker_jobs(&run).len() >= 3, "a new worker job replaced it");
    let record = journal::load(&run).expect("journal").record;
    let succeeded = record
        .tasks()
        .filter(|t| t.outcome() == Some(&Outcome::Exited(0)))
        .count();
    assert_eq!(succeeded, 5, "only the cancelled worker's task is lost");
}

#[test]
fn a_connection_without_the_runs_secret_is_refused() {
    let Some((_cluster, dir)) = cluster("a_connection_without_the_runs_secret_is_refused") else {
        return;
    };
    let d = dir.path().display();
    let task = format!("while [ ! -e {d}/stop ]; do sleep 0.1; done; echo finished\n");
    let child = start(dir.path(), 1, &task, &[]);
    let run = the_run(dir.path());
    // The relay's address is in its worker's configuration: in the job script it
    // submitted, or (an element of the first array) in the file the element reads.
    let mut address = None;
    wait_until("the worker's configuration", || {
        address = std::fs::read_dir(run.join("slurm"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                matches!(
                    e.path().extension().and_then(|x| x.to_str()),
                    Some("sh" | "json")
                )
            })
            .find_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let at = text.find("\"address\":\"")? + 11;
                Some(text[at..].split('"').next()?.to_owned())
            });
        address.is_some()
    });
    let address = address.expect("address");
    let mut stranger = std::net::TcpStream::connect(&address).expect("connect");
    let mut hello = Vec::new();
    poolscope::executor::worker::encode_report(
        &poolscope::executor::worker::FromWorker::Hello {
            version: poolscope::executor::worker::PROTOCOL_VERSION,
            pid: 1,
            host: Some("elsewhere".into()),
            now_ns: Some(0),
            secret: Some("not the secret".into()),
        },
        &mut hello,
    );
    stranger.write_all(&hello).expect("hello");
    stranger
        .set_read_timeout(Some(CLUSTER_WAIT))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = stranger.read_to_end(&mut answer);
    assert!(answer.is_empty(), "nothing is said to a stranger");
    std::fs::write(dir.path().join("stop"), "").expect("stop");
    let (code, stdout, stderr) = finish(child);
    assert_eq!(code, 0, "the run's own worker went on: {stderr}");
    assert!(stdout.contains("finished"), "{stdout}");
    assert!(
        stderr.contains("refused a connection from") && stderr.contains("wrong secret"),
        "{stderr}"
    );
}

#[test]
fn sigterm_to_poolscope_leaves_no_worker_job_and_no_task() {
    let Some((_cluster, dir)) = cluster("sigterm_to_poolscope_leaves_no_worker_job_and_no_task")
    else {
        return;
    };
    let d = dir.path().display();
    let tasks = format!("echo $$ > {d}/pid.$POOLSCOPE_TASK_ID; exec sleep 60\n").repeat(4);
    let child = start(dir.path(), 2, &tasks, &[]);
    let pids = common::started_pids(dir.path(), 2);
    let run = the_run(dir.path());
    let jobs = worker_jobs(&run);
    assert_eq!(queued(&jobs).len(), 2, "both worker jobs run");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let asked = Instant::now();
    let (code, _, stderr) = finish(child);
    assert_ne!(code, 0, "{stderr}");
    // What the issue promises the user: gone from squeue within 5 s.
    while !queued(&jobs).is_empty() && asked.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        queued(&jobs).is_empty(),
        "worker jobs still queued 5 s after SIGTERM: {:?}",
        queued(&jobs)
    );
    for pid in pids {
        assert!(common::wait_gone(pid), "task {pid} outlived its worker job");
    }
}

#[test]
fn two_runs_on_a_cluster_too_small_for_both_each_finish() {
    // Each asks for 4 workers of the cluster's 4 slots: neither gets them all, and
    // tasks go to the workers that did come (they once waited for a slot's own worker).
    let Some((_cluster, dir)) = cluster("two_runs_on_a_cluster_too_small_for_both_each_finish")
    else {
        return;
    };
    let tasks = "sleep 0.2\n".repeat(40);
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).expect("a");
    std::fs::create_dir_all(&b).expect("b");
    let first = start(&a, 4, &tasks, &[]);
    let second = start(&b, 4, &tasks, &[]);
    for (name, child) in [("first", first), ("second", second)] {
        let (code, _, stderr) = finish(child);
        assert_eq!(code, 0, "the {name} run: {stderr}");
    }
}

#[test]
fn a_refused_worker_job_fails_the_tasks_with_slurms_own_words() {
    let Some((_cluster, dir)) =
        cluster("a_refused_worker_job_fails_the_tasks_with_slurms_own_words")
    else {
        return;
    };
    let child = start(
        dir.path(),
        2,
        "echo a\necho b\n",
        &["--partition", "no-such-partition"],
    );
    let (code, stdout, stderr) = finish(child);
    assert_ne!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    for task in ["task 1 (echo a)", "task 2 (echo b)"] {
        let line = common::line_about(&stderr, task);
        assert!(
            line.contains("worker jobs cannot start") && line.contains("partition"),
            "{line}"
        );
    }
}
