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
struct TraceEvent<'a, A: Serialize = Value> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'a str>,
    ph: &'a str,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_or_not"
    )]
    ts: Option<f64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_or_not"
    )]
    dur: Option<f64>,
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<u64>,
    args: A,
}

/// A time in microseconds: a whole number without its `.0` (a million events, 2 MB).
#[allow(clippy::ref_option)] // serde's `serialize_with` hands the field by reference
fn whole_or_not<S: serde::Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) if v.fract() == 0.0 && v.abs() < 9e15 => s.serialize_i64(*v as i64),
        Some(v) => s.serialize_f64(*v),
        None => s.serialize_none(),
    }
}

/// An attempt's details; what is as usual is left out (attempt 1, no host, no command
/// PID, the command when it is the name, the outcome when it is `exit 0`), so a million
/// tasks write about 120 bytes each.
#[derive(Serialize)]
struct AttemptArgs<'a> {
    task: u64,
    #[serde(skip_serializing_if = "is_first")]
    attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
    exit: Value,
    signal: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    queued_us: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` takes a reference
fn is_first(attempt: &u32) -> bool {
    *attempt == 1
}

/// Writes events as a JSON array's elements, with the commas between them.
struct EventWriter<'w, W: Write> {
    out: &'w mut W,
    first: bool,
}

impl<W: Write> EventWriter<'_, W> {
    fn event<A: Serialize>(&mut self, event: &TraceEvent<'_, A>) -> io::Result<()> {
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
        let command = (command != task.spec.name).then_some(command);
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
            let outcome = match &attempt.outcome {
                Some(o) if o.is_success() => None,
                Some(o) => Some(o.to_string()),
                None => Some("running".to_owned()),
            };
            w.event(&TraceEvent {
                name: &task.spec.name,
                cat: None,
                ph: "X",
                ts: Some(micros(attempt.started)),
                dur: Some(micros(end.saturating_sub(attempt.started))),
                pid: POOL_PID,
                tid: Some(attempt.slot.map_or(UNSTARTED_TID, |s| s as u64)),
                args: AttemptArgs {
                    task: task.id.0,
                    attempt: attempt.number,
                    os_pid: attempt.pid,
                    host: attempt.host.as_deref(),
                    command_pid: attempt.command_pid,
                    outcome,
                    exit,
                    signal,
                    command: command.clone(),
                    queued_us: u64::try_from(task.queued.as_micros()).unwrap_or(u64::MAX),
                },
            })?;
        }
    }
    // The same running and waiting counts as the window's concurrency strip, at most
    // one sample per 100 µs (the most of each in it), as the strip draws its columns:
    // a million short tasks would otherwise double the file.
    let mut bucket: Option<(i64, f64, u32, u32)> = None;
    let levels = super::stats::concurrency(run, run.last_event);
    let sample = |w: &mut EventWriter<'_, _>, (at, running, queued): (f64, u32, u32)| {
        w.event(&TraceEvent {
            name: "tasks",
            cat: None,
            ph: "C",
            ts: Some((at * 1e7).round() / 10.0),
            dur: None,
            pid: POOL_PID,
            tid: None,
            args: json!({"running": running, "queued": queued}),
        })
    };
    for level in &*levels {
        let key = (level.at * 1e4).floor() as i64;
        match &mut bucket {
            Some((k, _, running, queued)) if *k == key => {
                *running = (*running).max(level.running);
                *queued = (*queued).max(level.waiting);
            }
            _ => {
                if let Some((_, at, running, queued)) = bucket.take() {
                    sample(&mut w, (at, running, queued))?;
                }
                bucket = Some((key, level.at, level.running, level.waiting));
            }
        }
    }
    if let Some((_, at, running, queued)) = bucket {
        sample(&mut w, (at, running, queued))?;
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
