//! Chrome Trace Event Format (Perfetto, `chrome://tracing`): one complete (`X`) event per
//! attempt on the track of its slot (or of its persistent worker), metadata names, and
//! counters of running and queued tasks.

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use std::collections::HashMap;

use crate::model::record::run::{Attempt, RunRecord, WorkerLife};

const POOL_PID: u32 = 1;
/// Persistent workers' tracks, apart from the slots' so that a PID never meets a slot
/// number.
const WORKERS_PID: u32 = 2;
/// Attempts that never started have no slot; they get a track of their own.
const UNSTARTED_TID: u64 = 1_000_000;
/// The most samples of the running and waiting counter: more than a screen has pixels.
const COUNTER_SAMPLES: f64 = 20_000.0;

/// Whole microseconds, as the record keeps them (`as_secs_f64() * 1e6` wrote
/// `32675.999999999996`).
fn micros(d: Duration) -> f64 {
    d.as_micros() as f64
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

/// An attempt's details; what is as usual or said by its track is left out (attempt 1,
/// no host, the PID of a worker's track, no command PID, the command when it is the name, the outcome and its exit and signal columns when
/// it is `exit 0`), so a task writes about 130 bytes.
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
    #[serde(skip_serializing_if = "Option::is_none")]
    exit: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    /// When it was queued, in µs of the run as `ts`.
    queued: u64,
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

/// Where an attempt is drawn: a persistent worker's attempts on that worker's own track
/// (named "worker PID (slot N)", which saves writing the PID on each of its tasks; its
/// tid is the worker's place in slot order, 1, 2, ..., a digit or two where a PID takes
/// five or more on every task), any other on its slot's.
struct Tracks {
    /// Each worker the run started, by (pid, slot): its tid.
    workers: HashMap<(u32, usize), u64>,
}

impl Tracks {
    fn of(run: &RunRecord) -> Self {
        let mut lives: Vec<&WorkerLife> = run.workers.iter().collect();
        lives.sort_by_key(|life| (life.slot, life.started));
        let mut workers = HashMap::new();
        for life in lives {
            let next = workers.len() as u64 + 1;
            workers.entry((life.pid, life.slot)).or_insert(next);
        }
        Self { workers }
    }

    /// The attempt's track (pid, tid), and whether that track already says its PID.
    fn of_attempt(&self, attempt: &Attempt) -> (u32, u64, bool) {
        match (attempt.slot, attempt.pid) {
            (Some(slot), Some(pid)) if let Some(&tid) = self.workers.get(&(pid, slot)) => {
                (WORKERS_PID, tid, true)
            }
            (Some(slot), _) => (POOL_PID, slot as u64, false),
            (None, _) => (POOL_PID, UNSTARTED_TID, false),
        }
    }
}

fn metadata<W: Write>(
    w: &mut EventWriter<'_, W>,
    name: &str,
    (pid, tid): (u32, u64),
    args: Value,
) -> io::Result<()> {
    w.event(&TraceEvent {
        name,
        cat: None,
        ph: "M",
        ts: None,
        dur: None,
        pid,
        tid: Some(tid),
        args,
    })
}

/// The pool's, each slot's and each worker's track names; a worker's track sorts by its
/// slot, then by when it started.
fn write_names<W: Write>(
    w: &mut EventWriter<'_, W>,
    run: &RunRecord,
    tracks: &Tracks,
) -> io::Result<()> {
    metadata(
        w,
        "process_name",
        (POOL_PID, 0),
        json!({"name": "poolscope pool"}),
    )?;
    // Slots whose tasks all ran on workers have no track of their own.
    let mut slots: Vec<usize> = run
        .attempts()
        .filter(|(_, a)| !tracks.of_attempt(a).2)
        .filter_map(|(_, a)| a.slot)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    for &slot in &slots {
        let name = format!("slot {slot}");
        metadata(
            w,
            "thread_name",
            (POOL_PID, slot as u64),
            json!({ "name": name }),
        )?;
    }
    if !run.workers.is_empty() {
        let name = "poolscope workers";
        metadata(w, "process_name", (WORKERS_PID, 0), json!({ "name": name }))?;
    }
    // Tracks' tids are the workers' places in slot order.
    let mut workers: Vec<(&(u32, usize), &u64)> = tracks.workers.iter().collect();
    workers.sort_by_key(|&(_, &tid)| tid);
    for (&(pid, slot), &tid) in workers {
        let track = (WORKERS_PID, tid);
        let name = format!("worker {pid} (slot {slot})");
        metadata(w, "thread_name", track, json!({ "name": name }))?;
        metadata(
            w,
            "thread_sort_index",
            track,
            json!({ "sort_index": tid - 1 }),
        )?;
    }
    Ok(())
}

/// The same running and waiting counts as the window's concurrency strip, at most one
/// sample per 100 µs and `COUNTER_SAMPLES` in all (the most of each in its span), as the
/// strip draws its columns: a million tasks would otherwise add 85 bytes each.
fn write_levels<W: Write>(w: &mut EventWriter<'_, W>, run: &RunRecord) -> io::Result<()> {
    let mut bucket: Option<(i64, f64, u32, u32)> = None;
    let levels = crate::model::record::stats::concurrency(run, run.last_event);
    let per_second = 1.0 / (run.last_event.as_secs_f64() / COUNTER_SAMPLES).max(1e-4);
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
        let key = (level.at * per_second).floor() as i64;
        match &mut bucket {
            Some((k, _, running, queued)) if *k == key => {
                *running = (*running).max(level.running);
                *queued = (*queued).max(level.waiting);
            }
            _ => {
                if let Some((_, at, running, queued)) = bucket.take() {
                    sample(w, (at, running, queued))?;
                }
                bucket = Some((key, level.at, level.running, level.waiting));
            }
        }
    }
    if let Some((_, at, running, queued)) = bucket {
        sample(w, (at, running, queued))?;
    }
    Ok(())
}

pub fn write(run: &RunRecord, out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"{\"traceEvents\":[")?;
    let mut w = EventWriter { out, first: true };
    let tracks = Tracks::of(run);
    write_names(&mut w, run, &tracks)?;
    for task in run.tasks() {
        let command = task.spec.invocation.display_line();
        let command = (command != task.spec.name).then_some(command);
        for attempt in &task.attempts {
            let end = attempt.ended.unwrap_or(run.last_event);
            let (exit, signal) = match &attempt.outcome {
                Some(o) if o.is_success() => (None, None),
                Some(o) => {
                    // The same numbers as the joblog's (one mapping).
                    let (exit, signal) = super::joblog::exit_columns(o);
                    (Some(json!(exit)), Some(json!(signal)))
                }
                None => (Some(Value::Null), Some(Value::Null)),
            };
            let outcome = match &attempt.outcome {
                Some(o) if o.is_success() => None,
                Some(o) => Some(o.to_string()),
                None => Some("running".to_owned()),
            };
            let (pid, tid, track_says_pid) = tracks.of_attempt(attempt);
            w.event(&TraceEvent {
                name: &task.spec.name,
                cat: None,
                ph: "X",
                ts: Some(micros(attempt.started)),
                dur: Some(micros(end.saturating_sub(attempt.started))),
                pid,
                tid: Some(tid),
                args: AttemptArgs {
                    task: task.id.0,
                    attempt: attempt.number,
                    os_pid: attempt.pid.filter(|_| !track_says_pid),
                    host: attempt.host.as_deref(),
                    command_pid: attempt.command_pid,
                    outcome,
                    exit,
                    signal,
                    command: command.clone(),
                    queued: u64::try_from(task.queued.as_micros()).unwrap_or(u64::MAX),
                },
            })?;
        }
    }
    write_levels(&mut w, run)?;
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
