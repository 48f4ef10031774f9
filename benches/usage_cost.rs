//! What sampling each task's CPU and memory costs: 200 running tasks (`sleep`) sampled at
//! the default rate for 10 s; the sampler thread's own CPU time, as a share of one core.
//! Target: under 2%.
//!   `cargo bench --bench usage_cost`

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::{Duration, Instant};

use poolscope::executor::{EventKind, Executor, PoolConfig, TaskSpec};

/// CPU time of this process's thread named `name` (utime + stime), from /proc.
fn thread_cpu(name: &str) -> Option<Duration> {
    let ticks = rustix::param::clock_ticks_per_second();
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let used: u64 = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
        return Some(Duration::from_nanos(used * 1_000_000_000 / ticks));
    }
    None
}

fn main() {
    const TASKS: usize = 200;
    const SPAN: Duration = Duration::from_secs(10);
    let (pool, events) = Executor::start(
        PoolConfig {
            size: TASKS,
            ..PoolConfig::default()
        },
        None,
    );
    for _ in 0..TASKS {
        pool.submit_one(TaskSpec::program("sleep", ["30"]))
            .expect("submit");
    }
    // Wait until all run (each started), then measure a span.
    let mut started = 0;
    while started < TASKS {
        match events.recv().map(|e| e.kind) {
            Some(EventKind::Started { .. }) => started += 1,
            Some(_) => {}
            None => panic!("the pool stopped"),
        }
    }
    let before = thread_cpu("poolscope-usage").expect("the sampler thread");
    let t0 = Instant::now();
    let mut rounds = 0;
    while t0.elapsed() < SPAN {
        if let Some(EventKind::Usage { samples }) = events
            .recv_timeout(Duration::from_millis(100))
            .map(|e| e.kind)
        {
            assert_eq!(samples.len(), TASKS);
            rounds += 1;
        }
    }
    let used = thread_cpu("poolscope-usage")
        .expect("the sampler thread")
        .saturating_sub(before);
    let share = used.as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0;
    println!(
        "{TASKS} running tasks, {rounds} sampling rounds in {:.1} s: the sampler used {:.0} ms of CPU, {share:.2}% of one core (target < 2%)",
        t0.elapsed().as_secs_f64(),
        used.as_secs_f64() * 1000.0
    );
    pool.terminate();
}
