//! The slurm backend: the dispatcher hands it every queued task at once; each turn's
//! tasks go out as one job array throttled to the pool size, and a poller thread turns
//! what the launchers record (and what Slurm says of elements that never ran) into the
//! same started, output and ended reports as a local process gives.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{ArrayDir, SlurmEnd, SlurmOptions};
use crate::executor::backend::{
    Backend, Control, Ctx, LaunchError, LaunchRequest, RawExit, Remote, Report,
};
use crate::executor::command::CommandError;
use crate::executor::event::Stream;
use crate::executor::stoppable::{Rounds, StoppableThread};
use crate::executor::task::{Invocation, TaskId, TaskSpec, shell_quote};

/// How often the poller reads the launchers' records while things happen; it backs off
/// to [`POLL_IDLE`] while nothing changes.
const POLL_BUSY: Duration = Duration::from_millis(200);
const POLL_IDLE: Duration = Duration::from_secs(2);
/// How often Slurm itself is asked (one `scontrol` per array with work left).
const ASK_SLURM_EVERY: Duration = Duration::from_secs(1);
/// How long a launcher's record of a signal waits for Slurm to say whether the cluster
/// sent it (a time limit, a preemption): Slurm shows such an element COMPLETING until
/// its node has cleaned up, a second or two on a healthy node.
const SLURM_WORD_WAIT: Duration = Duration::from_secs(10);
/// Most output read from one file in one round.
const READ_AT_ONCE: u64 = 1 << 20;

/// One element of a submitted array, as the poller follows it.
#[derive(Debug)]
struct Tracked {
    task: TaskId,
    attempt: u32,
    index: u64,
    /// The lane it runs on, once started.
    slot: Option<usize>,
    over: bool,
    read: [u64; 2],
    /// What Slurm last said of it while it waited.
    waiting: String,
}

#[derive(Debug)]
struct Array {
    job: u64,
    dir: ArrayDir,
    elements: Vec<Tracked>,
}

impl Tracked {
    fn new(task: TaskId, attempt: u32, index: u64) -> Self {
        Self {
            task,
            attempt,
            index,
            slot: None,
            over: false,
            read: [0, 0],
            waiting: String::new(),
        }
    }
}

impl Array {
    fn open(&self) -> bool {
        self.elements.iter().any(|e| !e.over)
    }
}

/// What the backend and its poller share.
#[derive(Debug, Default)]
struct State {
    arrays: Vec<Array>,
    /// Lanes in use by running elements (a cluster packs them into the pool's lanes).
    busy: Vec<bool>,
}

impl State {
    fn element(&self, task: TaskId, attempt: u32) -> Option<(u64, u64)> {
        self.arrays.iter().find_map(|array| {
            array
                .elements
                .iter()
                .find(|e| e.task == task && e.attempt == attempt && !e.over)
                .map(|e| (array.job, e.index))
        })
    }

    fn take_lane(&mut self) -> usize {
        let lane = self.busy.iter().position(|b| !b).unwrap_or(self.busy.len());
        if lane == self.busy.len() {
            self.busy.push(true);
        } else {
            self.busy[lane] = true;
        }
        lane
    }
}

/// Runs tasks as elements of Slurm job arrays.
pub struct SlurmBackend {
    options: SlurmOptions,
    /// A resumed run: the original task of executor task N is `originals[N-1]`.
    originals: Vec<TaskId>,
    /// A resumed run: elements already on the cluster, followed instead of resubmitted.
    reattach: std::collections::HashMap<TaskId, super::Submitted>,
    /// Where the arrays' files go (`array-K/` each).
    root: PathBuf,
    throttle: usize,
    /// Launched this turn, submitted together by [`Backend::launched`].
    batch: Vec<(TaskId, u32, String)>,
    /// The cluster's largest array (`MaxArraySize`), asked once.
    max_array: Option<usize>,
    state: Arc<Mutex<State>>,
    /// Follows the arrays; stopped and joined when dropped.
    poller: Option<StoppableThread>,
}

impl SlurmBackend {
    /// Arrays keep their scripts, output and records under the settings' folder (the
    /// run's).
    pub fn new(settings: crate::executor::SlurmSettings) -> Self {
        Self {
            options: settings.options,
            originals: settings.originals,
            reattach: settings.reattach,
            root: settings.folder,
            throttle: 1,
            batch: Vec::new(),
            max_array: None,
            state: Arc::new(Mutex::new(State::default())),
            poller: None,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The run's own number for the executor's `task`.
    fn original(&self, task: TaskId) -> TaskId {
        usize::try_from(task.0)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.originals.get(i))
            .copied()
            .unwrap_or(task)
    }

    /// Follow an element submitted before (by the run this one resumes) as `task`'s
    /// attempt, instead of submitting it again.
    fn reattach(&self, task: TaskId, attempt: u32, element: super::Submitted) {
        let mut state = self.state();
        let mut tracked = Tracked::new(task, attempt, element.index);
        tracked.read = element.read;
        match state.arrays.iter_mut().find(|a| a.job == element.job) {
            Some(array) => array.elements.push(tracked),
            None => state.arrays.push(Array {
                job: element.job,
                dir: element.dir,
                elements: vec![tracked],
            }),
        }
    }

    fn open_jobs(&self) -> Vec<u64> {
        self.state()
            .arrays
            .iter()
            .filter(|a| a.open())
            .map(|a| a.job)
            .collect()
    }
}

/// The shell script an element runs: its folder, environment and command.
fn task_script(spec: &TaskSpec, task: TaskId, helper: &std::path::Path) -> String {
    let mut lines = Vec::new();
    if let Some(dir) = &spec.cwd {
        lines.push(format!(
            "cd {} || exit 126",
            shell_quote(&dir.to_string_lossy())
        ));
    }
    lines.push(format!("export POOLSCOPE_TASK_ID={}", task.0));
    for (key, value) in &spec.env {
        lines.push(format!("export {key}={}", shell_quote(value)));
    }
    lines.push(match &spec.invocation {
        Invocation::Shell(line) => line.clone(),
        other => {
            let (program, args) = other.argv(helper);
            std::iter::once(program)
                .chain(args)
                .map(|word| shell_quote(&word))
                .fold("exec".to_owned(), |line, word| line + " " + &word)
        }
    });
    lines.join("\n")
}

impl Backend for SlurmBackend {
    fn start(&mut self, size: usize, ctx: &mut Ctx<'_>) -> Result<(), String> {
        self.throttle = size.max(1);
        super::save_options(&self.root, &self.options).map_err(|e| {
            format!(
                "cannot write the run's Slurm folder {}: {e}",
                self.root.display()
            )
        })?;
        let state = Arc::clone(&self.state);
        let remote = ctx.remote();
        let poller = StoppableThread::spawn("poolscope-slurm", move |rounds| {
            poll(&state, &remote, &rounds);
        })
        .map_err(|e| format!("cannot start the Slurm poller: {e}"))?;
        self.poller = Some(poller);
        Ok(())
    }

    fn launch(&mut self, request: LaunchRequest<'_>, ctx: &mut Ctx<'_>) -> Result<(), LaunchError> {
        if request.spec.pty {
            return Err("a cluster task cannot run in a terminal here".into());
        }
        let original = self.original(request.task);
        if let Some(element) = self.reattach.remove(&original) {
            log::info!(
                "task {original}: following Slurm job {}_{} again",
                element.job,
                element.index
            );
            self.reattach(request.task, request.attempt, element);
            return Ok(());
        }
        let script = task_script(request.spec, request.task, ctx.helper());
        self.batch.push((request.task, request.attempt, script));
        Ok(())
    }

    fn launches_ahead(&self) -> bool {
        true
    }

    fn runs_here(&self) -> bool {
        false
    }

    fn launched(&mut self, ctx: &mut Ctx<'_>) {
        if self.batch.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.batch);
        // A site's MaxArraySize (1001 by default) bounds an array: a longer list goes
        // as several arrays, each waiting for the one before (so never more than the
        // pool runs at once).
        let largest = *self.max_array.get_or_insert_with(super::max_array_size);
        if batch.len() > largest {
            let arrays = batch.len().div_ceil(largest);
            log::warn!(
                "{} tasks are more than this cluster's MaxArraySize ({largest}): they go as {arrays} job arrays, one after the other",
                batch.len()
            );
        }
        let mut after = None;
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(largest));
            after = self.submit_array(batch, after, ctx);
            batch = rest;
        }
    }

    fn control(
        &mut self,
        task: TaskId,
        attempt: u32,
        control: Control<'_>,
        _ctx: &mut Ctx<'_>,
    ) -> Result<(), CommandError> {
        let (job, index) = self
            .state()
            .element(task, attempt)
            .ok_or(CommandError::NotRunning(task))?;
        match control {
            // Slurm ends an element its own way (TERM, then KILL after KillWait).
            Control::Signal(_) => super::cancel(job, Some(index))
                .map_err(|e| CommandError::Signal(task, e.to_string())),
            Control::Write(_) | Control::CloseStdin => Err(CommandError::StdinNotOpen(task)),
        }
    }

    fn resize(&mut self, size: usize, _ctx: &mut Ctx<'_>) {
        self.throttle = size.max(1);
        for job in self.open_jobs() {
            if let Err(e) = super::set_throttle(job, self.throttle) {
                log::warn!("Slurm job {job}: the throttle stays as it was: {e}");
            }
        }
    }

    fn paused(&mut self, paused: bool, _ctx: &mut Ctx<'_>) {
        for job in self.open_jobs() {
            if let Err(e) = super::hold(job, paused) {
                log::warn!("Slurm job {job}: {e}");
            }
        }
    }

    fn shutdown(&mut self, _ctx: &mut Ctx<'_>) {
        self.poller = None;
    }
}

impl SlurmBackend {
    /// Submit one array (after job `after`, if any); its job id.
    fn submit_array(
        &mut self,
        batch: Vec<(TaskId, u32, String)>,
        after: Option<u64>,
        ctx: &mut Ctx<'_>,
    ) -> Option<u64> {
        // A resumed run's folder holds the arrays of the runs before it: a new array is
        // numbered after them (the run's record of what went where reads them in order,
        // and a reused folder gave a resubmitted task the output of an earlier one).
        let mut number = self.state().arrays.len();
        while self.root.join(format!("array-{number}")).exists() {
            number += 1;
        }
        let dir = ArrayDir(self.root.join(format!("array-{number}")));
        let scripts = batch.iter().map(|(_, _, script)| script.as_str());
        let submitted = dir.prepare(scripts).and_then(|()| {
            let mut args = super::sbatch_args(
                &dir,
                batch.len() as u64,
                self.throttle,
                "poolscope",
                &self.options,
            );
            if let Some(job) = after {
                args.insert(1, format!("--dependency=afterany:{job}"));
            }
            super::submit(&args)
        });
        match submitted {
            Ok(job) => {
                log::info!("submitted {} tasks as Slurm job array {job}", batch.len());
                // A resumed run follows them again.
                let tasks = batch.iter().map(|&(task, _, _)| self.original(task));
                if let Err(e) = dir.note_submitted(job, tasks) {
                    log::warn!(
                        "Slurm job {job}: cannot note it in {}: {e}",
                        dir.0.display()
                    );
                }
                let elements = batch
                    .iter()
                    .enumerate()
                    .map(|(index, &(task, attempt, _))| Tracked::new(task, attempt, index as u64))
                    .collect();
                self.state().arrays.push(Array { job, dir, elements });
                Some(job)
            }
            Err(e) => {
                // Nothing ran: each task ends with Slurm's own words.
                let reason = format!("not submitted: {e}");
                for (task, attempt, _) in batch {
                    ctx.report(Report::Ended {
                        task,
                        attempt,
                        exit: RawExit::Scheduler(reason.clone()),
                        stdin_bytes: 0,
                        at: None,
                    });
                }
                after
            }
        }
    }
}

/// The poller: until stopped, read each open element's records and output, and ask
/// Slurm about the elements that have none.
fn poll(state: &Mutex<State>, remote: &Remote, rounds: &Rounds) {
    let mut interval = POLL_BUSY;
    let mut asked = Instant::now();
    while rounds.wait(interval) {
        let ask_slurm = asked.elapsed() >= ASK_SLURM_EVERY;
        if ask_slurm {
            asked = Instant::now();
        }
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reports = Vec::new();
        follow(&mut state, ask_slurm, &mut reports);
        drop(state);
        interval = if reports.is_empty() {
            (interval * 2).min(POLL_IDLE)
        } else {
            POLL_BUSY
        };
        for report in reports {
            remote.report(report);
        }
    }
}

/// One round over every open array. Starts and ends are reported in the order they
/// happened by the launchers' clocks (an end before a start at the same instant), so
/// a lane freed by one element is the lane the next one takes, and no report goes out
/// with a time earlier than one already sent. Then what Slurm says of elements that
/// have not started.
fn follow(state: &mut State, ask_slurm: bool, reports: &mut Vec<Report>) {
    let said: Vec<Option<Vec<super::Element>>> = state
        .arrays
        .iter()
        .map(|array| {
            (ask_slurm && array.open())
                .then(|| match super::show_job(array.job) {
                    Ok(elements) => Some(elements),
                    // Long finished (or never known): nothing more will be said of it.
                    Err(e) if e.to_string().contains("Invalid job id") => Some(Vec::new()),
                    Err(e) => {
                        log::warn!("Slurm job {}: {e}", array.job);
                        None
                    }
                })
                .flatten()
        })
        .collect();
    let mut happened = happenings(state, &said);
    happened.sort_by_key(|h| (h.at, matches!(h.what, What::Started { .. })));
    for Happening { at, a, e, what } in happened {
        match what {
            What::Started { pid, host } => {
                let lane = state.take_lane();
                let element = &mut state.arrays[a].elements[e];
                element.slot = Some(lane);
                reports.push(Report::Started {
                    task: element.task,
                    attempt: element.attempt,
                    pid: Some(pid),
                    at: Some(instant_of(at)),
                    slot: Some(lane),
                    host: Some(host),
                });
            }
            What::Ended { exit, stamped } => {
                let array = &mut state.arrays[a];
                let element = &mut array.elements[e];
                // Output is whole once the end is known (its record was read first):
                // all of what is left is read now, not one round's share.
                while read_output(&array.dir, element, reports) {}
                element.over = true;
                let lane = element.slot;
                reports.push(Report::Ended {
                    task: element.task,
                    attempt: element.attempt,
                    exit,
                    stdin_bytes: 0,
                    at: stamped.then(|| instant_of(at)),
                });
                if let Some(busy) = lane.and_then(|l| state.busy.get_mut(l)) {
                    *busy = false;
                }
            }
        }
    }
    for (array, said) in state.arrays.iter_mut().zip(&said) {
        for element in array.elements.iter_mut().filter(|e| !e.over) {
            if element.slot.is_some() {
                read_output(&array.dir, element, reports);
            } else if let Some(said) = said {
                waiting_or_gone(element, said, reports);
            }
        }
    }
}

/// Something an element's launcher (or Slurm) says happened, at this time since the
/// epoch; element `e` of array `a`.
struct Happening {
    at: Duration,
    a: usize,
    e: usize,
    what: What,
}

enum What {
    Started {
        pid: u32,
        host: String,
    },
    /// `stamped`: the time is the launcher's; else it is when it was seen (Slurm ended
    /// it with its launcher).
    Ended {
        exit: RawExit,
        stamped: bool,
    },
}

/// The starts and ends not yet reported: from the launchers' records, and for running
/// elements with none, Slurm's word.
fn happenings(state: &State, said: &[Option<Vec<super::Element>>]) -> Vec<Happening> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut happened = Vec::new();
    for (a, (array, said)) in state.arrays.iter().zip(said).enumerate() {
        for (e, element) in array.elements.iter().enumerate() {
            if element.over {
                continue;
            }
            let stamp = array.dir.stamp(element.index);
            let started = element.slot.is_some() || stamp.start.is_some();
            if element.slot.is_none()
                && let Some((at, host, pid)) = stamp.start
            {
                happened.push(Happening {
                    at,
                    a,
                    e,
                    what: What::Started { pid, host },
                });
            }
            if !started {
                continue;
            }
            let slurms_end = || {
                said.iter()
                    .flatten()
                    .find(|s| s.index == Some(element.index))
                    .and_then(super::end_of)
            };
            let ended = match stamp.end {
                Some((at, code)) if code > 128 => {
                    // A signal may be the cluster's doing (TIMEOUT, PREEMPTED,
                    // OUT_OF_MEMORY): Slurm's word names it; the time stays the launcher's.
                    // Where Slurm saw only an exit code, the launcher knew better.
                    let signal = RawExit::Signal(code - 128);
                    match slurms_end() {
                        Some(SlurmEnd::Exited(_) | SlurmEnd::Signaled(_)) => {
                            Some((at, signal, true))
                        }
                        Some(end) => Some((at, raw_exit(end), true)),
                        None if now.saturating_sub(at) < SLURM_WORD_WAIT => None,
                        None => Some((at, signal, true)),
                    }
                }
                Some((at, code)) => Some((at, RawExit::Code(code), true)),
                None => slurms_end().map(|end| (now, raw_exit(end), false)),
            };
            if let Some((at, exit, stamped)) = ended {
                happened.push(Happening {
                    at,
                    a,
                    e,
                    what: What::Ended { exit, stamped },
                });
            }
        }
    }
    happened
}

/// An element not started: still waiting (say why, once), or ended by Slurm before it
/// ran (cancelled while pending, a submission that failed on the node).
fn waiting_or_gone(element: &mut Tracked, said: &[super::Element], reports: &mut Vec<Report>) {
    let mine = said.iter().find(|s| s.index == Some(element.index));
    // Cancelled while pending, an element leaves no record: neither its own nor a place
    // in the pending remainder's (and a run terminated with two elements pending
    // waited for theirs for ever).
    let gone = (!said.iter().any(|s| s.covers(element.index)))
        .then(|| SlurmEnd::Scheduler("no longer on the cluster".into()));
    if let Some(end) = mine.and_then(super::end_of).or(gone) {
        element.over = true;
        reports.push(Report::Ended {
            task: element.task,
            attempt: element.attempt,
            exit: raw_exit(end),
            stdin_bytes: 0,
            at: None,
        });
        return;
    }
    // Pending elements are one record (`ArrayTaskId=3-9%4`) until they start.
    let reason = mine
        .or_else(|| said.iter().find(|s| s.index.is_none()))
        .map(|s| format!("{} ({})", s.state.to_lowercase(), s.reason))
        .unwrap_or_default();
    if !reason.is_empty() && reason != element.waiting {
        element.waiting.clone_from(&reason);
        reports.push(Report::Waiting {
            task: element.task,
            attempt: element.attempt,
            state: reason,
        });
    }
}

fn raw_exit(end: SlurmEnd) -> RawExit {
    match end {
        SlurmEnd::Exited(code) => RawExit::Code(code),
        SlurmEnd::Signaled(signal) => RawExit::Signal(signal),
        SlurmEnd::TimedOut => RawExit::TimedOut,
        SlurmEnd::Cancelled => RawExit::Signal(15),
        SlurmEnd::Scheduler(state) => RawExit::Scheduler(state),
    }
}

/// New output in an element's files since the last round, at most [`READ_AT_ONCE`] of
/// each; whether either file may hold more.
fn read_output(dir: &ArrayDir, element: &mut Tracked, reports: &mut Vec<Report>) -> bool {
    let mut more = false;
    for (n, (stream, path)) in [
        (Stream::Stdout, dir.stdout(element.index)),
        (Stream::Stderr, dir.stderr(element.index)),
    ]
    .into_iter()
    .enumerate()
    {
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        if file.seek(SeekFrom::Start(element.read[n])).is_err() {
            continue;
        }
        let mut bytes = Vec::new();
        if (&mut file)
            .take(READ_AT_ONCE)
            .read_to_end(&mut bytes)
            .is_ok()
            && !bytes.is_empty()
        {
            element.read[n] += bytes.len() as u64;
            more |= bytes.len() as u64 == READ_AT_ONCE;
            reports.push(Report::Output {
                task: element.task,
                attempt: element.attempt,
                stream,
                bytes,
            });
        }
    }
    more
}

/// A launcher's wall-clock stamp as an instant of this process's clock.
fn instant_of(since_epoch: Duration) -> Instant {
    crate::executor::sink::WallAnchor::get().instant_of(since_epoch)
}
