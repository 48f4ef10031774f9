//! GNU parallel's `--joblog` format: TAB-separated, one line per finished attempt, in
//! completion order, with the exact header and number formats parallel writes.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::executor::Outcome;

use super::run::{Attempt, RunRecord, TaskRecord};

pub const HEADER: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";

/// `(Exitval, Signal)` as parallel records them. A kill or timeout is `-1` with the
/// signal sent (what parallel writes for `--timeout`); a command that could not start is
/// 127, what `sh -c` reports for it.
pub fn exit_columns(outcome: &Outcome) -> (i32, i32) {
    match outcome {
        Outcome::Exited(code) => (*code, 0),
        Outcome::Signaled(sig) => (0, *sig),
        Outcome::Killed | Outcome::TimedOut => (-1, 15),
        Outcome::FailedToSpawn(_) => (127, 0),
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
    format!(
        "{}\t:\t{:.3}\t{:>10.3}\t{}\t{}\t{}\t{}\t{}",
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
    for &(id, number) in &run.completions {
        if let (Some(task), Some(attempt)) = (run.task(id), run.attempt(id, number)) {
            writeln!(out, "{}", line(run, task, attempt))?;
        }
    }
    Ok(())
}
