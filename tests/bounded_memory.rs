//! Its own test binary, so the peak memory it checks is this run's alone: 10 000 tasks
//! that each print 1 MiB (10 GiB in all) through the executor into the record a window
//! keeps. Every byte must reach the results files while memory stays bounded.
#![allow(clippy::print_stdout)] // the measured peak is printed beside the check

mod common;

use std::time::Duration;

use common::{config, until_within};
use poolscope::executor::EventKind;
use poolscope::executor::{Executor, Outcome, PoolConfig, TaskSpec};
use poolscope::model::RunRecord;
use poolscope::model::record::run::DEFAULT_TAIL_BUDGET;

const TASKS: usize = 10_000;
const EACH: u64 = 1024 * 1024;

#[test]
fn ten_thousand_tasks_of_one_mib_each_keep_every_byte_on_disk_and_memory_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = PoolConfig {
        output_dir: Some(dir.path().to_owned()),
        ..config(4)
    };
    let (pool, events) = Executor::start(cfg, None);
    let specs = (0..TASKS)
        .map(|_| TaskSpec::shell(format!("head -c {EACH} /dev/zero")))
        .collect();
    let ids = pool.submit(specs).expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    // Each finished task's file is measured, then removed: the check is that every byte
    // reached disk, not that the tester's disk holds 10 GiB at once.
    let mut on_disk = 0;
    let mut checked = 0;
    until_within(
        Duration::from_mins(10),
        &events,
        &mut record,
        "10 GiB of output",
        |e, _| {
            match &e.kind {
                EventKind::SaveFailed { path, error } => {
                    panic!("output not saved to {}: {error}", path.display())
                }
                EventKind::Finished { task, attempt, .. } => {
                    let file = dir.path().join(format!("{task}.{attempt}.stdout"));
                    let len = std::fs::metadata(&file).expect("results file").len();
                    assert_eq!(len, EACH, "{}", file.display());
                    std::fs::remove_file(&file).expect("remove a checked file");
                    on_disk += len;
                    checked += 1;
                }
                _ => {}
            }
            matches!(e.kind, EventKind::Drained)
        },
    );
    assert_eq!(checked, TASKS);
    assert!(record.tails_held() <= DEFAULT_TAIL_BUDGET);
    for id in &ids {
        let t = record.task(*id).expect("task");
        assert_eq!(t.outcome(), Some(&Outcome::Exited(0)), "task {id}");
        assert_eq!(t.attempts[0].stdout_bytes, EACH, "task {id}");
    }
    assert_eq!(on_disk, TASKS as u64 * EACH);
    let peak = common::peak_rss_kib("self").expect("VmHWM") / 1024;
    println!(
        "{TASKS} tasks x 1 MiB: {:.2} GiB on disk, tails held {} MiB, peak RSS {peak} MiB",
        on_disk as f64 / f64::from(1u32 << 30),
        record.tails_held() >> 20
    );
    assert!(peak < 400, "peak RSS {peak} MiB (limit 400)");
}
