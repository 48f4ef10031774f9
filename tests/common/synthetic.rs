//! A finished run of many tasks built the way the executor reports one: events in time
//! order (a slot is freed before it is reused), for the timeline's test and bench.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use poolscope::executor::{Event, EventKind, Outcome, TaskId, TaskSpec};
use poolscope::model::RunRecord;

/// `n` tasks queued at once on a pool of `pool`, each running 1..50 ms on the slot that
/// frees first, every 50th failing; each task has a PID of its own.
pub fn finished_run(n: usize, pool: usize) -> RunRecord {
    let mut record = RunRecord::new(1024);
    let mut apply = |at: Duration, kind| record.apply(&Event { at, kind });
    apply(
        Duration::ZERO,
        EventKind::PoolStarted {
            wall_clock: SystemTime::now(),
            size: pool,
        },
    );
    for i in 0..n {
        apply(
            Duration::ZERO,
            EventKind::Queued {
                task: TaskId(i as u64 + 1),
                spec: Arc::new(TaskSpec::shell(format!("work {}", i % 97))),
            },
        );
    }
    // (when, finish before start at the same instant, task, slot)
    let mut moments: Vec<(Duration, bool, usize, usize)> = Vec::with_capacity(2 * n);
    let mut free: BinaryHeap<Reverse<(Duration, usize)>> =
        (0..pool).map(|s| Reverse((Duration::ZERO, s))).collect();
    for i in 0..n {
        let Some(Reverse((start, slot))) = free.pop() else {
            break;
        };
        let end = start + Duration::from_micros(1000 + (i as u64 * 7919) % 49_000);
        moments.push((start, true, i, slot));
        moments.push((end, false, i, slot));
        free.push(Reverse((end, slot)));
    }
    moments.sort_unstable_by_key(|&(at, starts, i, _)| (at, starts, i));
    for (at, starts, i, slot) in moments {
        let task = TaskId(i as u64 + 1);
        let kind = if starts {
            EventKind::Started {
                task,
                attempt: 1,
                slot,
                pid: Some(10_000 + i as u32),
                host: None,
            }
        } else {
            EventKind::Finished {
                task,
                attempt: 1,
                outcome: Outcome::Exited(i32::from(i % 50 == 0)),
                stdin_bytes: 0,
                will_retry: false,
            }
        };
        apply(at, kind);
    }
    record
}
