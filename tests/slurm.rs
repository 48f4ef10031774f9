//! Against a real Slurm (`scripts/slurm_up.sh` starts a single-node one; `.ci/run` does):
//! the array poolscope submits, its launcher's records, and the controls. Where no Slurm
//! answers, each test says so and returns (it is not counted as a pass of anything else).

use std::time::{Duration, Instant};

use poolscope::executor::backend::slurm::{self, ArrayDir, Element, SlurmEnd, SlurmOptions};

/// Whether a controller answers; prints why a test does not run when none does.
fn slurm_here(test: &str) -> bool {
    let up = std::process::Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"));
    if !up {
        eprintln!(
            "SKIPPED {test}: no Slurm controller answers here (run scripts/slurm_up.sh as root)"
        );
    }
    up
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

/// The most elements running at one instant, from the launcher's own stamps.
fn most_at_once(dir: &ArrayDir, count: u64) -> usize {
    let mut edges: Vec<(Duration, i32)> = Vec::new();
    for i in 0..count {
        let stamp = dir.stamp(i);
        let (start, _, _) = stamp.start.expect("started");
        let (end, _) = stamp.end.expect("ended");
        edges.push((start, 1));
        edges.push((end, -1));
    }
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn an_array_runs_at_most_the_pool_at_once_and_reports_each_exit() {
    if !slurm_here("an_array_runs_at_most_the_pool_at_once_and_reports_each_exit") {
        return;
    }
    let run = tempfile::tempdir().expect("tempdir");
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
    if !slurm_here("one_element_is_cancelled_and_the_throttle_changes_while_it_runs") {
        return;
    }
    let run = tempfile::tempdir().expect("tempdir");
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
    if !slurm_here("a_refused_submission_shows_slurms_own_words") {
        return;
    }
    let run = tempfile::tempdir().expect("tempdir");
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
