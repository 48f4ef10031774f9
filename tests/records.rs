//! Runs read from elsewhere: GNU parallel joblogs, saved runs, CSV export.

mod common;

use std::path::Path;

use common::{config, drain};
use poolscope::executor::{Executor, Outcome, TaskSpec};
use poolscope::model::{RunRecord, formats::joblog, formats::runfile};

fn sample(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The most jobs running at one instant, straight from the joblog's numbers.
fn true_max_concurrency(entries: &[joblog::JoblogEntry]) -> usize {
    let mut edges: Vec<(f64, i32)> = entries
        .iter()
        .flat_map(|e| [(e.start, 1), (e.start + e.runtime - 1e-6, -1)])
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut max) = (0, 0);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

fn lanes_used(record: &RunRecord) -> usize {
    record
        .attempts()
        .filter_map(|(_, a)| a.slot)
        .max()
        .map_or(0, |m| m + 1)
}

#[test]
fn importing_the_basic_sample_finds_its_tasks_failure_and_concurrency() {
    let path = sample("parallel-joblog-basic.tsv");
    let entries =
        joblog::parse(&std::fs::read_to_string(&path).expect("sample"), &path).expect("parses");
    let record = runfile::load(&path).expect("loads");
    assert_eq!(record.task_count(), 9);
    assert_eq!(record.failed(), 1, "task 7 exits 1");
    assert_eq!(
        record
            .task(poolscope::executor::TaskId(7))
            .and_then(|t| t.outcome().cloned()),
        Some(Outcome::Exited(1))
    );
    assert_eq!(lanes_used(&record), true_max_concurrency(&entries));
    assert_eq!(record.max_concurrency(), true_max_concurrency(&entries));
    // The concurrency strip and summary of an opened log come from its tasks.
    let levels = poolscope::model::record::stats::levels(&record, record.last_event);
    let peak = levels.iter().map(|l| l.running).max();
    assert_eq!(peak, Some(true_max_concurrency(&entries) as u32));
    let summary = poolscope::model::record::stats::summary(&record, record.last_event);
    assert_eq!(summary.max_concurrency, true_max_concurrency(&entries));
    // The Chrome trace's counter track tells the same story, never a negative queue.
    let mut trace = Vec::new();
    poolscope::model::formats::trace::write(&record, &mut trace).expect("trace");
    let trace: serde_json::Value = serde_json::from_slice(&trace).expect("json");
    let counters: Vec<&serde_json::Value> = trace["traceEvents"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["ph"] == "C" && e["name"] == "tasks")
        .collect();
    let peak = counters
        .iter()
        .filter_map(|e| e["args"]["running"].as_u64())
        .max();
    assert_eq!(peak, Some(true_max_concurrency(&entries) as u64));
    assert!(
        counters
            .iter()
            .all(|e| e["args"]["queued"].as_u64().is_some())
    );
}

#[test]
fn importing_the_timeout_sample_keeps_the_timeout_apart() {
    let path = sample("parallel-joblog-timeout.tsv");
    let entries =
        joblog::parse(&std::fs::read_to_string(&path).expect("sample"), &path).expect("parses");
    let record = runfile::load(&path).expect("loads");
    assert_eq!(record.task_count(), 3);
    let timeouts = record
        .tasks()
        .filter(|t| t.outcome() == Some(&Outcome::TimedOut))
        .count();
    assert_eq!(timeouts, 1, "Exitval -1 with signal 15 is a timeout");
    assert_eq!(record.failed(), 1, "the timeout is the only failure");
    assert_eq!(lanes_used(&record), true_max_concurrency(&entries));
    assert_eq!(record.completions().len(), 3, "completion order kept");
}

#[test]
fn a_broken_joblog_names_line_and_column() {
    let text = format!(
        "{}\n1\t:\t1795752636.690\tsoon\t0\t7\t0\t0\techo\n",
        joblog::HEADER
    );
    let err = joblog::parse(&text, Path::new("log.tsv")).expect_err("bad runtime");
    assert_eq!(
        err.to_string(),
        "log.tsv:2: field `JobRuntime`: `soon` is not a number"
    );
    let err = joblog::parse("hello\n", Path::new("x.txt")).expect_err("no header");
    assert!(
        err.to_string().contains("not a GNU parallel joblog"),
        "{err}"
    );
}

#[test]
fn a_saved_run_opens_again_with_the_same_facts() {
    let (pool, events) = Executor::start(config(2), None);
    pool.submit(vec![
        TaskSpec::shell("echo hi"),
        TaskSpec::shell("exit 2"),
        TaskSpec::shell("printf 'a,b\"c'"),
    ])
    .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.poolscope.json");
    let mut out = Vec::new();
    runfile::write(&record, &mut out).expect("write");
    std::fs::write(&path, &out).expect("save");
    let back = runfile::load(&path).expect("opens");
    assert_eq!(back.task_count(), 3);
    for (a, b) in record.tasks().zip(back.tasks()) {
        assert_eq!(a.outcome(), b.outcome());
        assert_eq!(a.attempts[0].pid, b.attempts[0].pid);
        assert_eq!(a.attempts[0].started, b.attempts[0].started);
        assert_eq!(
            a.output.stream_bytes(poolscope::executor::Stream::Stdout),
            b.output.stream_bytes(poolscope::executor::Stream::Stdout)
        );
    }
    assert_eq!(
        back.task(poolscope::executor::TaskId(2))
            .and_then(|t| t.outcome().cloned()),
        Some(Outcome::Exited(2))
    );
    assert_eq!(back.wall_clock_start, record.wall_clock_start);

    let mut csv = Vec::new();
    runfile::write_csv(&back, &mut csv).expect("csv");
    let csv = String::from_utf8(csv).expect("utf8");
    assert_eq!(csv.lines().count(), 4, "header and one row per attempt");
    assert!(
        csv.contains("\"printf 'a,b\"\"c'\""),
        "commas and quotes are quoted: {csv}"
    );
}
