//! GNU parallel's `--joblog` format: TAB-separated, one line per finished attempt, in
//! completion order, with the exact header and number formats parallel writes.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::executor::Outcome;

use super::run::{Attempt, RunRecord, TaskRecord};

pub const HEADER: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";

/// The one mapping of outcomes to numbers, `(Exitval, Signal)`, used by the joblog, the
/// CSV and the trace; [`outcome_of_columns`] reads it back:
///
/// | outcome | Exitval | Signal | why |
/// | --- | --- | --- | --- |
/// | exit N | N | 0 | |
/// | signal S | 0 | S | as parallel writes a job a signal ended |
/// | timed out | -1 | 15 | what parallel writes for `--timeout` |
/// | killed (by the user) | -1 | 9 | told apart from a timeout |
/// | failed to start | 127 | 0 | what `sh -c` reports for a command it cannot run |
/// | worker lost, scheduler | -1 | 0 | parallel's record of a job whose host went away |
pub fn exit_columns(outcome: &Outcome) -> (i32, i32) {
    match outcome {
        Outcome::Exited(code) => (*code, 0),
        Outcome::Signaled(sig) => (0, *sig),
        Outcome::TimedOut => (-1, 15),
        Outcome::Killed => (-1, 9),
        Outcome::FailedToSpawn(_) => (127, 0),
        Outcome::WorkerLost(_) | Outcome::Scheduler(_) => (-1, 0),
    }
}

/// [`exit_columns`] read back. Where the numbers cannot say more, the outcome says so:
/// a reason is not in a joblog.
pub fn outcome_of_columns(exitval: i32, signal: i32) -> Outcome {
    match (exitval, signal) {
        (-1, 9) => Outcome::Killed,
        (-1, 0) => Outcome::WorkerLost("the joblog records no exit status".to_owned()),
        (-1, _) => Outcome::TimedOut,
        (_, s) if s != 0 => Outcome::Signaled(s),
        (127, _) => Outcome::FailedToSpawn("exit 127: the command could not be run".to_owned()),
        (code, _) => Outcome::Exited(code),
    }
}

fn epoch_seconds(wall_start: SystemTime, offset: Duration) -> f64 {
    (wall_start + offset)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// One joblog line (no trailing newline) for a finished attempt.
pub fn line(run: &RunRecord, task: &TaskRecord, attempt: &Attempt) -> String {
    let wall = run.wall_clock_start.unwrap_or(UNIX_EPOCH);
    let runtime = attempt.runtime(attempt.started).as_secs_f64();
    let (exitval, signal) = attempt.outcome.as_ref().map_or((-1, 0), exit_columns);
    // A command with a newline or TAB would break the columns; parallel writes it raw,
    // we escape it so every line stays one record.
    let command = task
        .spec
        .invocation
        .display_line()
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    // parallel writes `:` for this machine, the sshlogin for another.
    let host = attempt.host.as_deref().unwrap_or(":");
    format!(
        "{}\t{host}\t{:.3}\t{:>10.3}\t{}\t{}\t{}\t{}\t{}",
        task.id,
        epoch_seconds(wall, attempt.started),
        runtime,
        attempt.stdin_bytes,
        attempt.stdout_bytes,
        exitval,
        signal,
        command
    )
}

/// The whole joblog of a run, in completion order.
pub fn write(run: &RunRecord, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{HEADER}")?;
    for (id, number) in run.completions() {
        if let (Some(task), Some(attempt)) = (run.task(id), run.attempt(id, number)) {
            writeln!(out, "{}", line(run, &task, &attempt))?;
        }
    }
    Ok(())
}

/// One line of a joblog.
#[derive(Clone, Debug, PartialEq)]
pub struct JoblogEntry {
    pub seq: u64,
    /// `:` for the machine parallel ran on, else the host (sshlogin, cluster node).
    pub host: String,
    pub start: f64,
    pub runtime: f64,
    pub send: u64,
    pub receive: u64,
    pub exitval: i32,
    pub signal: i32,
    pub command: String,
}

impl JoblogEntry {
    /// The outcome its columns stand for ([`outcome_of_columns`]).
    pub fn outcome(&self) -> Outcome {
        outcome_of_columns(self.exitval, self.signal)
    }
}

/// 9999-12-31T23:59:59Z in epoch seconds: a later Starttime is a corrupt line.
const LATEST_START: f64 = 253_402_300_799.0;

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.trim().parse().ok()
}

/// Parse a GNU parallel joblog; errors name the file, line and column.
pub fn parse(text: &str, path: &std::path::Path) -> Result<Vec<JoblogEntry>, super::TaskFileError> {
    let error = |line: usize, field: &str, message: String| super::TaskFileError {
        path: path.to_owned(),
        line: Some(line),
        field: (!field.is_empty()).then(|| field.to_owned()),
        message,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim_end() == HEADER => {}
        _ => {
            return Err(error(
                1,
                "",
                format!(
                    "not a GNU parallel joblog: the first line must be the header `{}`",
                    HEADER.replace('\t', " ")
                ),
            ));
        }
    }
    let mut entries = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.splitn(9, '\t').collect();
        if cols.len() < 9 {
            return Err(error(
                n,
                "",
                format!("expected 9 TAB-separated columns, found {}", cols.len()),
            ));
        }
        let field = |idx: usize, name: &str| {
            error(n, name, format!("`{}` is not a number", cols[idx].trim()))
        };
        // Times must fit the timeline's clock: no infinity, nothing negative, nothing
        // past the year 9999 (start) or longer than a year (runtime).
        let bounded = |idx: usize, name: &str, max: f64| {
            let v: f64 = num(cols[idx]).ok_or_else(|| field(idx, name))?;
            if v.is_finite() && (0.0..=max).contains(&v) {
                Ok(v)
            } else {
                Err(error(
                    n,
                    name,
                    format!(
                        "`{}` is out of range (0 to {max} seconds)",
                        cols[idx].trim()
                    ),
                ))
            }
        };
        entries.push(JoblogEntry {
            seq: num(cols[0]).ok_or_else(|| field(0, "Seq"))?,
            host: cols[1].trim().to_owned(),
            start: bounded(2, "Starttime", LATEST_START)?,
            runtime: bounded(3, "JobRuntime", crate::executor::MAX_DURATION.as_secs_f64())?,
            send: num(cols[4]).ok_or_else(|| field(4, "Send"))?,
            receive: num(cols[5]).ok_or_else(|| field(5, "Receive"))?,
            exitval: num(cols[6]).ok_or_else(|| field(6, "Exitval"))?,
            signal: num(cols[7]).ok_or_else(|| field(7, "Signal"))?,
            command: cols[8].to_owned(),
        });
    }
    Ok(entries)
}

/// Lanes for jobs that have no slot column: each job, in start order, takes the first
/// lane free at its start (as ninjatracing does). Returns one lane per entry.
pub fn first_free_lanes(entries: &[JoblogEntry]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| entries[a].start.total_cmp(&entries[b].start));
    let mut lane_ends: Vec<f64> = Vec::new();
    let mut lanes = vec![0; entries.len()];
    for i in order {
        let e = &entries[i];
        // A lane freed at the very instant this job starts is free (ms rounding).
        let lane = lane_ends
            .iter()
            .position(|&end| end <= e.start + 1e-6)
            .unwrap_or(lane_ends.len());
        if lane == lane_ends.len() {
            lane_ends.push(0.0);
        }
        lane_ends[lane] = e.start + e.runtime;
        lanes[i] = lane;
    }
    lanes
}

/// A finished run record from a joblog: lanes by first free lane, outcomes from
/// Exitval/Signal, times relative to the earliest start.
pub fn to_record(entries: &[JoblogEntry]) -> RunRecord {
    use std::sync::Arc;

    use super::run::{Attempt, TaskState};
    use super::tail::OutputTail;
    use crate::executor::{TaskId, TaskSpec};

    let lanes = first_free_lanes(entries);
    let t0 = entries
        .iter()
        .map(|e| e.start)
        .fold(f64::INFINITY, f64::min);
    let t0 = if t0.is_finite() { t0 } else { 0.0 };
    let at = |t: f64| Duration::from_secs_f64((t - t0).max(0.0));
    let mut tasks = Vec::with_capacity(entries.len());
    let mut by_seq: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    for (e, &lane) in entries.iter().zip(&lanes) {
        let outcome = e.outcome();
        let attempt = Attempt {
            number: 1,
            slot: Some(lane),
            pid: None,
            host: Some(e.host.clone()).filter(|h| !h.is_empty() && h != ":"),
            command_pid: None,
            started: at(e.start),
            ended: Some(at(e.start + e.runtime)),
            outcome: Some(outcome.clone()),
            stdout_bytes: e.receive,
            stderr_bytes: 0,
            stdin_bytes: e.send,
            usage: super::run::Usage::default(),
        };
        // A retried job appears once per attempt, under the same Seq.
        if let Some(&i) = by_seq.get(&e.seq) {
            let task: &mut super::TaskRecord = &mut tasks[i];
            let number = task.attempts.len() as u32 + 1;
            task.attempts.push(Attempt { number, ..attempt });
            task.state = TaskState::Done(outcome);
            continue;
        }
        by_seq.insert(e.seq, tasks.len());
        tasks.push(super::TaskRecord {
            id: TaskId(e.seq),
            spec: Arc::new(TaskSpec::shell(e.command.clone())),
            queued: at(e.start),
            attempts: vec![attempt],
            state: TaskState::Done(outcome),
            stdin_open: false,
            output: OutputTail::new(0),
            chunk: None,
            screen: None,
        });
    }
    let completions = entries
        .iter()
        .scan(std::collections::HashMap::<u64, u32>::new(), |seen, e| {
            let n = seen.entry(e.seq).or_insert(0);
            *n += 1;
            Some((TaskId(e.seq), *n))
        })
        .collect();
    let lane_count = lanes.iter().max().map_or(0, |m| m + 1);
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t0.max(0.0));
    RunRecord::from_parts(
        Some(wall),
        vec![(Duration::ZERO, lane_count)],
        tasks,
        completions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_reads_back_as_itself_from_its_columns() {
        for outcome in [
            Outcome::Exited(0),
            Outcome::Exited(3),
            Outcome::Signaled(2),
            Outcome::TimedOut,
            Outcome::Killed,
        ] {
            let (exit, signal) = exit_columns(&outcome);
            assert_eq!(outcome_of_columns(exit, signal), outcome);
        }
        // Reasons are not in a joblog; the kind is.
        let (exit, signal) = exit_columns(&Outcome::FailedToSpawn("no such file".into()));
        assert!(matches!(
            outcome_of_columns(exit, signal),
            Outcome::FailedToSpawn(_)
        ));
        let (exit, signal) = exit_columns(&Outcome::WorkerLost("SIGKILL".into()));
        assert!(matches!(
            outcome_of_columns(exit, signal),
            Outcome::WorkerLost(_)
        ));
    }

    #[test]
    fn the_host_column_is_read_and_written_back() {
        // parallel --sshlogin: `:` is the machine parallel ran on.
        let text = format!(
            "{HEADER}\n1\t:\t1700000000.000\t1.000\t0\t2\t0\t0\techo a\n\
             2\tnode7\t1700000000.500\t1.000\t0\t2\t0\t0\techo b\n"
        );
        let entries = parse(&text, std::path::Path::new("log")).expect("parses");
        let run = to_record(&entries);
        let hosts: Vec<Option<String>> = run.tasks().map(|t| t.attempts[0].host.clone()).collect();
        assert_eq!(hosts, [None, Some("node7".to_owned())]);
        let written: Vec<String> = run
            .tasks()
            .map(|t| line(&run, &t, &t.attempts[0]))
            .collect();
        assert_eq!(written[0].split('\t').nth(1), Some(":"));
        assert_eq!(written[1].split('\t').nth(1), Some("node7"));
    }
}
