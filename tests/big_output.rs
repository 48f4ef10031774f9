//! Its own test binary, so the peak memory it checks is this test's alone.

mod common;

use common::{config, drain};
use poolscope::executor::{Executor, Outcome, PoolConfig, Stream, TaskSpec};
use poolscope::model::RunRecord;

const SIZE: u64 = 200 * 1024 * 1024;

#[test]
fn a_task_writing_200_mib_completes_with_full_output_on_disk_and_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = PoolConfig {
        output_dir: Some(dir.path().to_owned()),
        output_in_flight: 16 * 1024 * 1024,
        ..config(1)
    };
    let (pool, events) = Executor::start(cfg, None);
    let task = pool
        .submit_one(TaskSpec::shell(format!("head -c {SIZE} /dev/zero")))
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    let t = record.task(task).expect("task");
    assert_eq!(t.outcome(), Some(&Outcome::Exited(0)));
    assert_eq!(t.attempts[0].stdout_bytes, SIZE, "every byte was delivered");
    let saved = std::fs::metadata(dir.path().join(format!("{task}.1.stdout"))).expect("saved");
    assert_eq!(saved.len(), SIZE, "the full output is on disk");
    assert!(t.output.held() <= poolscope::model::record::run::DEFAULT_TAIL_BYTES);
    assert_eq!(t.output.stream_bytes(Stream::Stdout).len(), t.output.held());
    let peak_mib = common::peak_rss_kib("self").expect("VmHWM") / 1024;
    assert!(
        peak_mib < 120,
        "peak memory {peak_mib} MiB: output is not bounded"
    );
}
