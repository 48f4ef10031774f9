//! Against a real Slurm whose limits this test lowers (its own binary, so no other test
//! shares the cluster meanwhile): a task list longer than `MaxArraySize` still runs.

mod common;

const CONF: &str = "/etc/slurm/slurm.conf";

/// The cluster's configuration with `MaxArraySize` lowered; put back when dropped.
struct Lowered {
    original: String,
}

impl Lowered {
    fn max_array_size(size: u32) -> Option<Self> {
        let original = std::fs::read_to_string(CONF).ok()?;
        let lowered: String = original
            .lines()
            .map(|line| {
                if line.starts_with("MaxArraySize=") {
                    format!("MaxArraySize={size}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(CONF, lowered).ok()?;
        let lowered = Self { original };
        reconfigure().then_some(lowered)
    }
}

impl Drop for Lowered {
    fn drop(&mut self) {
        let _ = std::fs::write(CONF, &self.original);
        reconfigure();
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
    if !common::slurm_answers(test) {
        return;
    }
    let Some(_lowered) = Lowered::max_array_size(8) else {
        eprintln!("SKIPPED {test}: cannot change {CONF} (needs root)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("joblog");
    let runs = dir.path().join("runs").to_string_lossy().into_owned();
    let joblog_arg = joblog.to_string_lossy().into_owned();
    let tasks = (1..=20)
        .map(|i| format!("echo task {i}"))
        .collect::<Vec<_>>()
        .join("\n");
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    for i in 1..=20 {
        assert!(
            stdout.contains(&format!("task {i}\n")),
            "task {i}: {stdout}"
        );
    }
    let log = std::fs::read_to_string(&joblog).expect("joblog");
    assert_eq!(log.lines().count(), 21, "{log}");
}
