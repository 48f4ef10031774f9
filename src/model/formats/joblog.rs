//! GNU parallel's `--joblog` format: TAB-separated, one line per finished attempt, in
//! completion order, with the exact header and number formats parallel writes.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::executor::Outcome;

use crate::executor::TaskId;
use crate::model::TaskFileError;
use crate::model::record::run::{Attempt, RunRecord, TaskRecord, TaskState};

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
    let mut command = task.spec.invocation.display_line();
    if command.contains(['\\', '\n', '\t']) {
        command = command
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\t', "\\t");
    }
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

/// A joblog line's columns, checked, borrowing its text.
struct Fields<'a> {
    numbers: Numbers,
    host: std::borrow::Cow<'a, str>,
    command: std::borrow::Cow<'a, str>,
}

/// A joblog line's columns that are numbers.
#[derive(Clone, Copy)]
struct Numbers {
    seq: u64,
    start: f64,
    runtime: f64,
    send: u64,
    receive: u64,
    exitval: i32,
    signal: i32,
}

impl Numbers {
    /// The entry these numbers make with this host and command.
    fn entry(self, host: String, command: String) -> JoblogEntry {
        JoblogEntry {
            seq: self.seq,
            host,
            start: self.start,
            runtime: self.runtime,
            send: self.send,
            receive: self.receive,
            exitval: self.exitval,
            signal: self.signal,
            command,
        }
    }
}

impl Fields<'_> {
    fn entry(&self) -> JoblogEntry {
        self.numbers.entry(
            self.host.clone().into_owned(),
            self.command.clone().into_owned(),
        )
    }
}

/// Reads a joblog's lines as bytes, checking the header first; errors name the file,
/// line and column.
struct Lines<'p, R> {
    input: R,
    path: &'p std::path::Path,
    line: Vec<u8>,
    number: usize,
}

impl<'p, R: io::BufRead> Lines<'p, R> {
    fn new(mut input: R, path: &'p std::path::Path) -> Result<Self, TaskFileError> {
        let mut line = Vec::new();
        let read = input.read_until(b'\n', &mut line);
        let lines = Self {
            input,
            path,
            line,
            number: 1,
        };
        match read {
            Ok(_) if lines.line.trim_ascii_end() == HEADER.as_bytes() => Ok(lines),
            Ok(_) => Err(lines.error(
                "",
                format!(
                    "not a GNU parallel joblog: the first line must be the header `{}`",
                    HEADER.replace('\t', " ")
                ),
            )),
            Err(e) => Err(lines.error("", format!("cannot be read: {e}"))),
        }
    }

    fn error(&self, field: &str, message: String) -> TaskFileError {
        TaskFileError {
            path: self.path.to_owned(),
            line: Some(self.number),
            field: (!field.is_empty()).then(|| field.to_owned()),
            message,
        }
    }

    /// Reads the next line that is not blank; false at the end.
    fn advance(&mut self) -> Result<bool, TaskFileError> {
        loop {
            self.line.clear();
            self.number += 1;
            match self.input.read_until(b'\n', &mut self.line) {
                Ok(0) => return Ok(false),
                Ok(_) if self.line.trim_ascii().is_empty() => {}
                Ok(_) => return Ok(true),
                Err(e) => return Err(self.error("", format!("cannot be read: {e}"))),
            }
        }
    }

    /// The line read, without its line ending, and what names an error in it.
    fn current(
        &self,
    ) -> (
        &[u8],
        impl Fn(&str, String) -> TaskFileError + use<'_, 'p, R>,
    ) {
        let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (line, |field: &str, message: String| {
            self.error(field, message)
        })
    }

    /// The next line's columns, every one checked.
    fn next(&mut self) -> Result<Option<Fields<'_>>, TaskFileError> {
        if !self.advance()? {
            return Ok(None);
        }
        let (line, error) = self.current();
        fields(line, error).map(Some)
    }

    /// The next line's `Seq`, `Starttime` and `JobRuntime`, checked (what places its
    /// task), and how long its command is.
    #[allow(clippy::type_complexity)]
    fn next_times(&mut self) -> Result<Option<((u64, f64, f64), usize)>, TaskFileError> {
        if !self.advance()? {
            return Ok(None);
        }
        let (line, error) = self.current();
        let cols = columns(line, &error)?;
        Ok(Some((times(&cols, &error)?, cols[8].len())))
    }
}

/// A line's `Seq`, `Starttime` and `JobRuntime`, checked.
fn times(cols: &[&[u8]; 9], error: ErrorAt<'_>) -> Result<(u64, f64, f64), TaskFileError> {
    Ok((
        number_in(cols, 0, "Seq", error)?,
        bounded(cols, 2, "Starttime", LATEST_START, error)?,
        bounded(
            cols,
            3,
            "JobRuntime",
            crate::executor::MAX_DURATION.as_secs_f64(),
            error,
        )?,
    ))
}

type ErrorAt<'e> = &'e dyn Fn(&str, String) -> TaskFileError;

/// A line's nine TAB-separated columns (the command keeps any TAB of its own).
fn columns<'a>(line: &'a [u8], error: ErrorAt<'_>) -> Result<[&'a [u8]; 9], TaskFileError> {
    let mut cols: [&[u8]; 9] = [&[]; 9];
    let mut found = 0;
    for (slot, col) in cols.iter_mut().zip(line.splitn(9, |&b| b == b'\t')) {
        *slot = col;
        found += 1;
    }
    if found < 9 {
        return Err(error(
            "",
            format!("expected 9 TAB-separated columns, found {found}"),
        ));
    }
    Ok(cols)
}

fn number_in<T: std::str::FromStr>(
    cols: &[&[u8]; 9],
    idx: usize,
    name: &str,
    error: ErrorAt<'_>,
) -> Result<T, TaskFileError> {
    let text = std::str::from_utf8(cols[idx].trim_ascii()).unwrap_or("");
    text.parse().map_err(|_| {
        error(
            name,
            format!(
                "`{}` is not a number",
                String::from_utf8_lossy(cols[idx].trim_ascii())
            ),
        )
    })
}

/// Times must fit the timeline's clock: no infinity, nothing negative, nothing past the
/// year 9999 (start) or longer than a year (runtime).
fn bounded(
    cols: &[&[u8]; 9],
    idx: usize,
    name: &str,
    max: f64,
    error: ErrorAt<'_>,
) -> Result<f64, TaskFileError> {
    let v: f64 = number_in(cols, idx, name, error)?;
    if v.is_finite() && (0.0..=max).contains(&v) {
        Ok(v)
    } else {
        Err(error(
            name,
            format!(
                "`{}` is out of range (0 to {max} seconds)",
                String::from_utf8_lossy(cols[idx].trim_ascii())
            ),
        ))
    }
}

/// One line's columns, checked.
fn fields(
    line: &[u8],
    error: impl Fn(&str, String) -> TaskFileError,
) -> Result<Fields<'_>, TaskFileError> {
    let cols = columns(line, &error)?;
    let (seq, start, runtime) = times(&cols, &error)?;
    Ok(Fields {
        numbers: Numbers {
            seq,
            start,
            runtime,
            send: number_in(&cols, 4, "Send", &error)?,
            receive: number_in(&cols, 5, "Receive", &error)?,
            exitval: number_in(&cols, 6, "Exitval", &error)?,
            signal: number_in(&cols, 7, "Signal", &error)?,
        },
        host: String::from_utf8_lossy(cols[1].trim_ascii()),
        command: String::from_utf8_lossy(cols[8]),
    })
}

/// Parse a GNU parallel joblog; errors name the file, line and column.
pub fn parse(text: &str, path: &std::path::Path) -> Result<Vec<JoblogEntry>, TaskFileError> {
    let mut lines = Lines::new(text.as_bytes(), path)?;
    let mut entries = Vec::new();
    while let Some(fields) = lines.next()? {
        entries.push(fields.entry());
    }
    Ok(entries)
}

/// Open a joblog as a finished run, reading the file twice as a stream: first the
/// times (for lanes and the run's start) and sequence numbers, then each line made into
/// its task and kept compact at once. A 200 MB joblog never sits in memory as text or
/// as whole tasks.
pub fn load(path: &std::path::Path) -> Result<RunRecord, TaskFileError> {
    let open = || {
        std::fs::File::open(path)
            .map(|f| io::BufReader::with_capacity(1 << 20, f))
            .map_err(|e| TaskFileError {
                path: path.to_owned(),
                line: None,
                field: None,
                message: format!("cannot be read: {e}"),
            })
    };
    // First pass: what places each line (its task, its lane, the run's start).
    let Placing {
        seqs,
        spans,
        command_bytes,
    } = place_lines(path, &open)?;
    let t0 = spans.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
    let t0 = if t0.is_finite() { t0 } else { 0.0 };
    // Tasks are made in Seq order (a retried job is one task with an attempt per line,
    // in file order); a line read before its turn waits.
    let (lanes, order) = lanes_and_seq_order(&seqs, &spans);
    drop(spans);
    let mut attempt_of = vec![0u32; seqs.len()];
    for pair in order.windows(2) {
        let (a, b) = (pair[0] as usize, pair[1] as usize);
        if seqs[a] == seqs[b] {
            attempt_of[b] = attempt_of[a] + 1;
        }
    }
    let whole = Lines::new(open()?, path)?;
    let at = |t: f64| Duration::from_secs_f64((t - t0).max(0.0));
    let mut builder = RunRecord::finished_builder();
    let tasks = attempt_of.iter().filter(|&&n| n == 0).count();
    builder.reserve(tasks, command_bytes);
    // The second reading is parsed on the other core while this one builds the record.
    std::thread::scope(|scope| -> Result<(), TaskFileError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let reader = std::thread::Builder::new()
            .name("poolscope-joblog".into())
            .spawn_scoped(scope, move || read_entries(whole, &tx));
        if reader.is_err() {
            return Err(TaskFileError {
                path: path.to_owned(),
                line: None,
                field: None,
                message: "cannot be read: no thread to read it with".to_owned(),
            });
        }
        let mut in_order = InSeqOrder::new(rx, path);
        let mut current: Option<TaskRecord> = None;
        for (k, &i) in order.iter().enumerate() {
            let lane = lanes[i as usize] as usize;
            let e = match in_order.take(i)? {
                Taken::InBatch(n) => {
                    // A job run once (most lines) may go straight to a row.
                    let once = attempt_of[i as usize] == 0
                        && order
                            .get(k + 1)
                            .is_none_or(|&j| seqs[j as usize] != seqs[i as usize]);
                    let batch = &in_order.batch;
                    if once && batch.push_row(n, lane, &at, &mut builder, &mut current) {
                        continue;
                    }
                    batch.entry(n)
                }
                Taken::Early(e) => e,
            };
            let attempt = e.attempt(attempt_of[i as usize] + 1, lane, &at);
            if let Some(task) = current.as_mut().filter(|t| t.id == TaskId(e.seq)) {
                task.state = TaskState::Done(e.outcome());
                task.attempts.push(attempt);
                continue;
            }
            if let Some(done) = current.take() {
                builder.push(done);
            }
            current = Some(joblog_task(e, attempt));
        }
        if let Some(done) = current {
            builder.push(done);
        }
        Ok(())
    })?;
    drop(order);
    // Made last: at two million lines, these 32 MB would add to the reading's peak.
    let completions: Vec<(TaskId, u32)> = seqs
        .iter()
        .zip(&attempt_of)
        .map(|(&seq, &n)| (TaskId(seq), n + 1))
        .collect();
    drop((seqs, attempt_of));
    let lane_count = lanes.iter().max().map_or(0, |&m| m as usize + 1);
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t0.max(0.0));
    Ok(builder.finish(Some(wall), vec![(Duration::ZERO, lane_count)], completions))
}

/// What the first reading of a joblog finds: each line's Seq and (start, end), and how
/// many bytes its commands take.
#[derive(Default)]
struct Placing {
    seqs: Vec<u64>,
    spans: Vec<(f64, f64)>,
    command_bytes: usize,
}

/// Each line's lane, and the lines in Seq order (file order within a Seq). The lanes
/// are laid on the other core meanwhile (two million lines: a fifth of a second each).
fn lanes_and_seq_order(seqs: &[u64], spans: &[(f64, f64)]) -> (Vec<u32>, Vec<u32>) {
    std::thread::scope(|scope| {
        let lanes = std::thread::Builder::new()
            .name("poolscope-lanes".into())
            .spawn_scoped(scope, || lanes_of(spans));
        let mut order: Vec<u32> = (0..seqs.len() as u32).collect();
        order.sort_by_key(|&i| (seqs[i as usize], i));
        let lanes = match lanes {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => lanes_of(spans), // no thread to spare: here, after the sort
        };
        (lanes, order)
    })
}

/// The first reading.
fn place_lines(
    path: &std::path::Path,
    open: &dyn Fn() -> Result<io::BufReader<std::fs::File>, TaskFileError>,
) -> Result<Placing, TaskFileError> {
    let mut placing = Placing::default();
    let mut lines = Lines::new(open()?, path)?;
    while let Some(((seq, start, runtime), command_len)) = lines.next_times()? {
        placing.seqs.push(seq);
        placing.spans.push((start, start + runtime));
        placing.command_bytes += command_len;
    }
    Ok(placing)
}

/// A joblog's lines after its header, parsed, in batches; an error ends them.
fn read_entries<R: io::BufRead>(
    mut lines: Lines<'_, R>,
    tx: &std::sync::mpsc::SyncSender<Result<EntryBatch, TaskFileError>>,
) {
    const BATCH: usize = 4096;
    let mut batch = EntryBatch::default();
    loop {
        match lines.next() {
            Ok(Some(fields)) => batch.push(&fields),
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
        if batch.lines.len() == BATCH && tx.send(Ok(std::mem::take(&mut batch))).is_err() {
            return; // the record gave up
        }
    }
    if !batch.lines.is_empty() {
        let _ = tx.send(Ok(batch));
    }
}

/// The second reading's lines, taken in Seq order: a line read before its turn waits.
struct InSeqOrder<'p> {
    rx: std::sync::mpsc::Receiver<Result<EntryBatch, TaskFileError>>,
    batch: EntryBatch,
    /// The next line of `batch` not yet taken, and the file's line it is.
    next_in_batch: usize,
    read: u32,
    early: std::collections::HashMap<u32, JoblogEntry>,
    path: &'p std::path::Path,
}

/// Where a wanted line is.
enum Taken {
    /// Line `n` of the batch at hand.
    InBatch(usize),
    /// Read before its turn.
    Early(JoblogEntry),
}

impl<'p> InSeqOrder<'p> {
    fn new(
        rx: std::sync::mpsc::Receiver<Result<EntryBatch, TaskFileError>>,
        path: &'p std::path::Path,
    ) -> Self {
        Self {
            rx,
            batch: EntryBatch::default(),
            next_in_batch: 0,
            read: 0,
            early: std::collections::HashMap::new(),
            path,
        }
    }

    /// The file's line `wanted` (counted from 0 after the header).
    fn take(&mut self, wanted: u32) -> Result<Taken, TaskFileError> {
        if let Some(e) = self.early.remove(&wanted) {
            return Ok(Taken::Early(e));
        }
        loop {
            if self.next_in_batch == self.batch.lines.len() {
                self.batch = self.rx.recv().map_err(|_| TaskFileError {
                    path: self.path.to_owned(),
                    line: None,
                    field: None,
                    message: "changed while it was read".to_owned(),
                })??;
                self.next_in_batch = 0;
                continue;
            }
            let (index, n) = (self.read, self.next_in_batch);
            self.read += 1;
            self.next_in_batch += 1;
            if index == wanted {
                return Ok(Taken::InBatch(n));
            }
            self.early.insert(index, self.batch.entry(n));
        }
    }
}

/// Parsed lines, their hosts and commands in one text: one allocation per batch, not
/// two per line (made on one thread and freed on another, at two million lines).
#[derive(Default)]
struct EntryBatch {
    lines: Vec<ParsedLine>,
    text: String,
}

/// A line's numbers; its host and command are `text[from..host_end]` and
/// `text[host_end..end]` of its batch.
struct ParsedLine {
    numbers: Numbers,
    from: usize,
    host_end: usize,
    end: usize,
}

impl EntryBatch {
    fn push(&mut self, f: &Fields<'_>) {
        let from = self.text.len();
        // The local machine (`:`) is no host.
        if f.host != ":" {
            self.text.push_str(&f.host);
        }
        let host_end = self.text.len();
        self.text.push_str(&f.command);
        self.lines.push(ParsedLine {
            numbers: f.numbers,
            from,
            host_end,
            end: self.text.len(),
        });
    }

    /// Line `n`, a job run once, kept as a row of the record if it ran on this machine
    /// with no input (the task before it, `current`, is pushed first); false if not.
    fn push_row(
        &self,
        n: usize,
        lane: usize,
        at: &impl Fn(f64) -> Duration,
        builder: &mut crate::model::record::run::FinishedBuilder,
        current: &mut Option<TaskRecord>,
    ) -> bool {
        let l = &self.lines[n];
        let numbers = &l.numbers;
        if l.from != l.host_end || numbers.send != 0 {
            return false;
        }
        if let Some(done) = current.take() {
            builder.push(done);
        }
        let outcome = outcome_of_columns(numbers.exitval, numbers.signal);
        builder.push_done_shell(&crate::model::record::run::DoneShell {
            id: TaskId(numbers.seq),
            command: &self.text[l.host_end..l.end],
            started: at(numbers.start),
            ended: at(numbers.start + numbers.runtime),
            outcome: &outcome,
            stdout_bytes: numbers.receive,
            slot: lane,
        })
    }

    fn entry(&self, i: usize) -> JoblogEntry {
        let l = &self.lines[i];
        l.numbers.entry(
            self.text[l.from..l.host_end].to_owned(),
            self.text[l.host_end..l.end].to_owned(),
        )
    }
}

impl JoblogEntry {
    /// The attempt this line records: its `number` of its task, on `lane`, its times
    /// on the run's clock by `at`.
    fn attempt(&self, number: u32, lane: usize, at: &impl Fn(f64) -> Duration) -> Attempt {
        Attempt {
            slot: Some(lane),
            host: (!self.host.is_empty() && self.host != ":").then(|| self.host.clone()),
            ended: Some(at(self.start + self.runtime)),
            outcome: Some(self.outcome()),
            stdout_bytes: self.receive,
            stdin_bytes: self.send,
            ..Attempt::begun(number, at(self.start))
        }
    }
}

/// A task as one joblog line says it ran.
fn joblog_task(e: JoblogEntry, attempt: Attempt) -> TaskRecord {
    let state = TaskState::Done(e.outcome());
    TaskRecord {
        id: TaskId(e.seq),
        spec: std::sync::Arc::new(crate::executor::TaskSpec::shell(e.command)),
        queued: attempt.started,
        attempts: vec![attempt],
        state,
        stdin_open: false,
        output: crate::model::record::tail::OutputTail::new(0),
        chunk: None,
        screen: None,
    }
}

/// [`first_free_lanes`] over (start, end) spans: a heap of busy lanes and the free ones
/// in order, so a thousand lanes cost no more than two.
fn lanes_of(spans: &[(f64, f64)]) -> Vec<u32> {
    use std::cmp::Reverse;
    use std::collections::{BTreeSet, BinaryHeap};
    let mut order: Vec<u32> = (0..spans.len() as u32).collect();
    order.sort_by(|&a, &b| spans[a as usize].0.total_cmp(&spans[b as usize].0));
    let mut busy: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
    let mut free: BTreeSet<u32> = BTreeSet::new();
    let mut count = 0u32;
    let mut lanes = vec![0u32; spans.len()];
    for i in order {
        let (start, end) = spans[i as usize];
        // A lane freed at the very instant this job starts is free (ms rounding).
        while let Some(&Reverse((ends, lane))) = busy.peek() {
            if f64::from_bits(ends) > start + 1e-6 {
                break;
            }
            busy.pop();
            free.insert(lane);
        }
        let lane = free.pop_first().unwrap_or_else(|| {
            count += 1;
            count - 1
        });
        // Non-negative floats order as their bits.
        busy.push(Reverse((end.max(0.0).to_bits(), lane)));
        lanes[i as usize] = lane;
    }
    lanes
}

/// Lanes for jobs that have no slot column: each job, in start order, takes the first
/// lane free at its start (as ninjatracing does). Returns one lane per entry.
pub fn first_free_lanes(entries: &[JoblogEntry]) -> Vec<usize> {
    let spans: Vec<(f64, f64)> = entries
        .iter()
        .map(|e| (e.start, e.start + e.runtime))
        .collect();
    lanes_of(&spans).into_iter().map(|l| l as usize).collect()
}

/// A finished run record from a joblog: lanes by first free lane, outcomes from
/// Exitval/Signal, times relative to the earliest start.
pub fn to_record(entries: &[JoblogEntry]) -> RunRecord {
    let lanes = first_free_lanes(entries);
    let t0 = entries
        .iter()
        .map(|e| e.start)
        .fold(f64::INFINITY, f64::min);
    let t0 = if t0.is_finite() { t0 } else { 0.0 };
    let at = |t: f64| Duration::from_secs_f64((t - t0).max(0.0));
    let mut tasks: Vec<TaskRecord> = Vec::with_capacity(entries.len());
    let mut by_seq: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    for (e, &lane) in entries.iter().zip(&lanes) {
        // A retried job appears once per attempt, under the same Seq.
        if let Some(&i) = by_seq.get(&e.seq) {
            let task = &mut tasks[i];
            let number = task.attempts.len() as u32 + 1;
            task.attempts.push(e.attempt(number, lane, &at));
            task.state = TaskState::Done(e.outcome());
            continue;
        }
        by_seq.insert(e.seq, tasks.len());
        let attempt = e.attempt(1, lane, &at);
        tasks.push(joblog_task(e.clone(), attempt));
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
    fn a_joblog_streamed_from_disk_reads_as_the_whole_text_does() {
        // Out of Seq order, a retried job (Seq 2 twice), a host, a blank line, CRLF.
        let text = format!(
            "{HEADER}\n3\t:\t1700000000.300\t0.500\t0\t4\t0\t0\techo c\n\
             2\t:\t1700000000.100\t0.100\t0\t0\t1\t0\techo b\n\
             \n\
             1\tnode7\t1700000000.000\t1.000\t5\t2\t0\t0\techo a\r\n\
             2\t:\t1700000000.250\t0.200\t0\t2\t0\t0\techo b\n\
             5\t:\t1700000001.000\t0.000\t0\t0\t0\t15\tsleep 9\n"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, &text).expect("write");
        let whole = to_record(&parse(&text, &path).expect("parses"));
        let streamed = load(&path).expect("loads");
        assert_eq!(streamed.task_count(), 4);
        // Listed in Seq order (the whole text's are in first-line order).
        let ids: Vec<u64> = streamed.tasks().map(|t| t.id.0).collect();
        assert_eq!(ids, [1, 2, 3, 5]);
        for a in whole.tasks() {
            let b = streamed.task(a.id).expect("the same task");
            assert_eq!(a.id, b.id);
            assert_eq!(a.spec, b.spec);
            assert_eq!(a.state, b.state);
            assert_eq!(
                format!("{:?}", a.attempts),
                format!("{:?}", b.attempts),
                "task {}",
                a.id
            );
        }
        assert_eq!(
            whole.completions().collect::<Vec<_>>(),
            streamed.completions().collect::<Vec<_>>()
        );
        assert_eq!(whole.pool_sizes, streamed.pool_sizes);
        assert_eq!(streamed.task(TaskId(2)).expect("task").attempts.len(), 2);
        // A bad line is named by its number, as the whole text's is.
        std::fs::write(&path, format!("{HEADER}\n1\t:\tsoon\t1\t0\t0\t0\t0\tx\n")).expect("write");
        let e = load(&path).expect_err("a bad start time").to_string();
        assert!(e.contains("log:2:") && e.contains("Starttime"), "{e}");
    }

    #[test]
    fn lines_far_out_of_order_are_each_read_once_across_batches() {
        // Seq counts down over more lines than one batch of the reader holds; every
        // third line is on a host (kept whole), the rest go straight to rows.
        let n = 10_000u64;
        let mut text = format!("{HEADER}\n");
        for seq in (1..=n).rev() {
            use std::fmt::Write;
            let host = if seq.is_multiple_of(3) { "node1" } else { ":" };
            let _ = writeln!(
                text,
                "{seq}\t{host}\t{}.000\t0.500\t0\t{seq}\t{}\t0\techo {seq}",
                1_700_000_000 + seq,
                seq % 2
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, &text).expect("write");
        let record = load(&path).expect("loads");
        assert_eq!(record.task_count(), n as usize);
        for (i, task) in record.tasks().enumerate() {
            let seq = i as u64 + 1;
            assert_eq!(task.id, TaskId(seq));
            assert_eq!(task.spec.name, format!("echo {seq}"));
            let a = &task.attempts[0];
            assert_eq!(a.stdout_bytes, seq, "task {seq}");
            assert_eq!(a.outcome, Some(Outcome::Exited((seq % 2) as i32)));
            assert_eq!(a.host.as_deref(), seq.is_multiple_of(3).then_some("node1"));
            assert_eq!(a.started, Duration::from_secs(seq - 1));
        }
    }

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
