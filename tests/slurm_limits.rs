//! Against a real Slurm whose limits these tests lower (their own binary, so no other
//! test shares the cluster meanwhile; one at a time): a task list longer than
//! `MaxArraySize` still runs, and so does a pool of workers larger than it.

mod common;

const CONF: &str = "/etc/slurm/slurm.conf";

/// One test at a time changes the cluster's configuration.
static CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The cluster's configuration with `MaxArraySize` lowered, this test alone changing it;
/// put back when dropped (before the next test may change it).
struct Lowered {
    original: String,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Lowered {
    /// `None` (and the test says it is skipped) without a cluster, or without root.
    fn max_array_size(test: &str, size: u32) -> Option<Self> {
        if !common::slurm_answers(test) {
            return None;
        }
        let one = CLUSTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(original) = std::fs::read_to_string(CONF)
            .ok()
            .filter(|original| write_whole(&with_max_array_size(original, size)).is_ok())
        else {
            eprintln!("SKIPPED {test}: cannot change {CONF} (needs root)");
            return None;
        };
        let lowered = Self {
            original,
            _one: one,
        };
        if !reconfigure() {
            eprintln!("SKIPPED {test}: scontrol reconfigure failed");
            return None;
        }
        Some(lowered)
    }
}

/// `original` with its `MaxArraySize` line set to `size`.
fn with_max_array_size(original: &str, size: u32) -> String {
    original
        .lines()
        .map(|line| {
            if line.starts_with("MaxArraySize=") {
                format!("MaxArraySize={size}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

impl Drop for Lowered {
    fn drop(&mut self) {
        let _ = write_whole(&self.original);
        restart_controller();
    }
}

/// Start `slurmctld` again on the restored configuration. `scontrol reconfigure` is not
/// enough: after these tests' changes and restores, Slurm 22.05's controller went on
/// refusing arrays above the lowered size while `scontrol show config` printed the
/// restored one, and the tests after them failed ("Invalid job array specification").
fn restart_controller() {
    const PID_FILE: &str = "/run/slurmctld.pid";
    let Some(pid) = std::fs::read_to_string(PID_FILE)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        // Not the test cluster of scripts/slurm_up.sh: the most that can be done.
        reconfigure();
        return;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // No event tells when another process is gone: look again shortly.
    while nix::sys::signal::kill(pid, None).is_ok() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = std::process::Command::new("/usr/sbin/slurmctld")
        .arg("-i")
        .status();
    // Up, and its node taking jobs again.
    while !node_idle() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn node_idle() -> bool {
    std::process::Command::new("sinfo")
        .args(["-h", "-o", "%t"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("idle"))
}

/// Replace the configuration whole: `slurmd` rereads it after `scontrol reconfigure`
/// returns, and one that read it while the next test truncated it died (`ClusterName
/// needs to be specified`).
fn write_whole(text: &str) -> std::io::Result<()> {
    poolscope::model::formats::taskfile::save_atomic(std::path::Path::new(CONF), text)
}

/// `echo task 1` … `echo task N`, one per line.
fn echo_tasks(n: u32) -> String {
    (1..=n)
        .map(|i| format!("echo task {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every one of `echo_tasks(n)` printed its line.
fn assert_each_printed(stdout: &str, n: u32) {
    for i in 1..=n {
        assert!(
            stdout.contains(&format!("task {i}\n")),
            "task {i}: {stdout}"
        );
    }
}

fn reconfigure() -> bool {
    std::process::Command::new("scontrol")
        .arg("reconfigure")
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_list_longer_than_max_array_size_runs_as_several_arrays() {
    let test = "a_list_longer_than_max_array_size_runs_as_several_arrays";
    let Some(_lowered) = Lowered::max_array_size(test, 8) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("joblog");
    let runs = dir.path().join("runs").to_string_lossy().into_owned();
    let joblog_arg = joblog.to_string_lossy().into_owned();
    let tasks = echo_tasks(20);
    let out = common::run_with_input(
        &[
            "--backend",
            "slurm",
            "-j",
            "4",
            "--run-dir",
            &runs,
            "--joblog",
            &joblog_arg,
        ],
        &tasks,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("MaxArraySize (8)") && stderr.contains("3 job arrays"),
        "the run says why it split: {stderr}"
    );
    assert_each_printed(&String::from_utf8_lossy(&out.stdout), 20);
    let log = std::fs::read_to_string(&joblog).expect("joblog");
    assert_eq!(log.lines().count(), 21, "{log}");
}

#[test]
fn a_pool_of_workers_larger_than_max_array_size_gets_its_other_workers_as_jobs() {
    let test = "a_pool_of_workers_larger_than_max_array_size_gets_its_other_workers_as_jobs";
    let Some(_lowered) = Lowered::max_array_size(test, 2) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let runs_arg = runs.to_string_lossy().into_owned();
    let tasks = echo_tasks(8);
    let out = common::run_with_input(
        &[
            "--backend",
            "slurm",
            "--workers",
            "-j",
            "4",
            "--run-dir",
            &runs_arg,
        ],
        &tasks,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_each_printed(&String::from_utf8_lossy(&out.stdout), 8);
    // Two workers as the array's elements (all it may hold), two as jobs of their own.
    let run = common::the_run(&runs);
    let jobs = std::fs::read_to_string(run.join("slurm/workers.jobs")).expect("jobs");
    let elements = jobs.lines().filter(|j| j.contains('_')).count();
    assert_eq!((elements, jobs.lines().count()), (2, 4), "{jobs}");
}
