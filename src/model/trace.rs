//! Chrome Trace Event Format (Perfetto, `chrome://tracing`): one complete (`X`) event per
//! attempt on the track of its slot, metadata names, and counters of running and queued
//! tasks.

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use super::run::RunRecord;

const POOL_PID: u32 = 1;
/// Attempts that never started have no slot; they get a track of their own.
const UNSTARTED_TID: u64 = 1_000_000;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One trace event, written as it is built: a run of 100 000 tasks never becomes one
/// big JSON tree in memory.
#[derive(Serialize)]
struct TraceEvent<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'a str>,
    ph: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<u64>,
    args: Value,
}

/// Writes events as a JSON array's elements, with the commas between them.
struct EventWriter<'w, W: Write> {
    out: &'w mut W,
    first: bool,
}

impl<W: Write> EventWriter<'_, W> {
    fn event(&mut self, event: &TraceEvent<'_>) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        serde_json::to_writer(&mut *self.out, event)?;
        Ok(())
    }
}

/// The pool's and each slot's track names.
fn write_names<W: Write>(w: &mut EventWriter<'_, W>, run: &RunRecord) -> io::Result<()> {
    w.event(&TraceEvent {
        name: "process_name",
        cat: None,
        ph: "M",
        ts: None,
        dur: None,
        pid: POOL_PID,
        tid: Some(0),
        args: json!({"name": "poolscope pool"}),
    })?;
    let mut slots: Vec<usize> = run.attempts().filter_map(|(_, a)| a.slot).collect();
    slots.sort_unstable();
    slots.dedup();
    for &slot in &slots {
        w.event(&TraceEvent {
            name: "thread_name",
            cat: None,
            ph: "M",
            ts: None,
            dur: None,
            pid: POOL_PID,
            tid: Some(slot as u64),
            args: json!({"name": format!("slot {slot}")}),
        })?;
    }
    Ok(())
}

pub fn write(run: &RunRecord, out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"{\"traceEvents\":[")?;
    let mut w = EventWriter { out, first: true };
    write_names(&mut w, run)?;
    for task in run.tasks() {
        let command = task.spec.invocation.display_line();
        for attempt in &task.attempts {
            let end = attempt.ended.unwrap_or(run.last_event);
            let (exit, signal) = attempt
                .outcome
                .as_ref()
                .map_or((Value::Null, Value::Null), |o| {
                    // The same numbers as the joblog's (one mapping).
                    let (exit, signal) = super::joblog::exit_columns(o);
                    (json!(exit), json!(signal))
                });
            w.event(&TraceEvent {
                name: &task.spec.name,
                cat: Some("task"),
                ph: "X",
                ts: Some(micros(attempt.started)),
                dur: Some(micros(end.saturating_sub(attempt.started))),
                pid: POOL_PID,
                tid: Some(attempt.slot.map_or(UNSTARTED_TID, |s| s as u64)),
                args: json!({
                    "task": task.id.0,
                    "attempt": attempt.number,
                    "os_pid": attempt.pid,
                    "host": attempt.host,
                    "command_pid": attempt.command_pid,
                    "outcome": attempt.outcome.as_ref().map_or_else(|| "running".to_owned(), ToString::to_string),
                    "exit": exit,
                    "signal": signal,
                    "command": command,
                    "queued_us": micros(task.queued),
                }),
            })?;
        }
    }
    // The same running and waiting counts as the window's concurrency strip.
    for level in super::stats::concurrency(run, run.last_event) {
        w.event(&TraceEvent {
            name: "tasks",
            cat: None,
            ph: "C",
            ts: Some(level.at * 1e6),
            dur: None,
            pid: POOL_PID,
            tid: None,
            args: json!({"running": level.running, "queued": level.waiting}),
        })?;
    }
    // What the tasks cost: cores in use at each usage sample, as a counter track.
    for &(at, cores) in &run.cpu_in_use {
        w.event(&TraceEvent {
            name: "CPU in use (cores)",
            cat: None,
            ph: "C",
            ts: Some(micros(at)),
            dur: None,
            pid: POOL_PID,
            tid: None,
            args: json!({"cores": cores}),
        })?;
    }
    let epoch = run
        .wall_clock_start
        .and_then(|w| w.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    out.write_all(b"],")?;
    let tail = json!({
        "displayTimeUnit": "ms",
        "otherData": {"generator": "poolscope", "wall_clock_start_epoch_s": epoch}
    });
    let tail = serde_json::to_string(&tail)?;
    // The object's fields after `traceEvents`: its text without the opening brace.
    out.write_all(&tail.as_bytes()[1..])?;
    out.write_all(b"\n")
}
