//! Chrome Trace Event Format (Perfetto, `chrome://tracing`): one complete (`X`) event per
//! attempt on the track of its slot, metadata names, and counters of running and queued
//! tasks.

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::executor::Outcome;

use super::run::RunRecord;

const POOL_PID: u32 = 1;
/// Attempts that never started have no slot; they get a track of their own.
const UNSTARTED_TID: u64 = 1_000_000;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn to_json(run: &RunRecord) -> Value {
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": POOL_PID, "tid": 0,
        "args": {"name": "poolscope pool"}
    })];
    let mut slots: Vec<usize> = run
        .tasks
        .iter()
        .flat_map(|t| t.attempts.iter().filter_map(|a| a.slot))
        .collect();
    slots.sort_unstable();
    slots.dedup();
    for slot in &slots {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": POOL_PID, "tid": slot,
            "args": {"name": format!("slot {slot}")}
        }));
    }
    let mut edges: Vec<(Duration, i64, i64)> = Vec::new();
    for task in &run.tasks {
        edges.push((task.queued, 0, 1));
        for attempt in &task.attempts {
            let end = attempt.ended.unwrap_or(run.last_event);
            let (exit, signal) = attempt
                .outcome
                .as_ref()
                .map_or((Value::Null, Value::Null), |o| match o {
                    Outcome::Exited(c) => (json!(c), Value::Null),
                    Outcome::Signaled(s) => (Value::Null, json!(s)),
                    _ => (Value::Null, Value::Null),
                });
            events.push(json!({
                "name": task.spec.name,
                "cat": "task",
                "ph": "X",
                "ts": micros(attempt.started),
                "dur": micros(end.saturating_sub(attempt.started)),
                "pid": POOL_PID,
                "tid": attempt.slot.map_or(UNSTARTED_TID, |s| s as u64),
                "args": {
                    "task": task.id.0,
                    "attempt": attempt.number,
                    "os_pid": attempt.pid,
                    "outcome": attempt.outcome.as_ref().map_or_else(|| "running".to_owned(), ToString::to_string),
                    "exit": exit,
                    "signal": signal,
                    "command": task.spec.invocation.display_line(),
                    "queued_us": micros(task.queued),
                }
            }));
            if attempt.ran() {
                edges.push((attempt.started, 1, -1));
                edges.push((end, -1, 0));
            } else if attempt.number == 1 {
                edges.push((attempt.started, 0, -1));
            }
        }
    }
    edges.sort_by_key(|e| e.0);
    let (mut running, mut queued) = (0i64, 0i64);
    for (at, d_running, d_queued) in edges {
        running += d_running;
        queued = (queued + d_queued).max(0);
        events.push(json!({
            "name": "tasks", "ph": "C", "ts": micros(at), "pid": POOL_PID,
            "args": {"running": running, "queued": queued}
        }));
    }
    let epoch = run
        .wall_clock_start
        .and_then(|w| w.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"generator": "poolscope", "wall_clock_start_epoch_s": epoch}
    })
}

pub fn write(run: &RunRecord, out: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &to_json(run))?;
    out.write_all(b"\n")
}
