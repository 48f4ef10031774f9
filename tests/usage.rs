//! What each task costs: CPU time and memory sampled while it runs.

mod common;

use common::config;
use poolscope::executor::{EventKind, Executor, TaskSpec};
use poolscope::model::RunRecord;

#[test]
fn more_busy_tasks_than_cores_share_the_cores_and_each_is_sampled() {
    let cores = num_cpus::get();
    let tasks = cores * 2;
    let (pool, events) = Executor::start(config(tasks), None);
    // A busy shell loop of about a second each (no sleep: all CPU).
    let busy = "end=$(($(date +%s%N) + 1500000000)); while [ $(date +%s%N) -lt $end ]; do :; done";
    for _ in 0..tasks {
        pool.submit_one(TaskSpec::shell(busy)).expect("submit");
    }
    pool.close();
    let mut record = RunRecord::default();
    let mut widest = 0;
    // Every event is kept: the widest usage round is where all ran at once.
    common::until(&events, &mut record, "the drain", |e, _| {
        if let EventKind::Usage { samples } = &e.kind {
            widest = widest.max(samples.len());
        }
        matches!(e.kind, EventKind::Drained)
    });
    assert_eq!(widest, tasks, "one sampling round saw all {tasks} at once");
    for task in record.tasks() {
        let a = &task.attempts[0];
        assert!(a.usage.peak_rss > 0, "task {}: memory", task.id);
        let share = a.usage.mean_share(a.runtime(record.last_event));
        // Twice as many tasks as cores: about half a core each (less on a busy machine),
        // never more than a whole one.
        assert!(
            share > 0.1 && share < 1.05,
            "task {}: {share:.2} of a core",
            task.id
        );
    }
    // Together they never use more cores than there are (a little slack for sampling).
    let most = record
        .cpu_in_use
        .iter()
        .map(|&(_, c)| c)
        .fold(0.0f32, f32::max);
    assert!(
        most <= cores as f32 + 0.5,
        "{most:.2} cores in use on {cores}"
    );
}
