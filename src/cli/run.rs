//! `poolscope run`: tasks run headless, their output printed as it comes, their records
//! written (journal, joblog, trace), and a socket for other terminals.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::input::{FromStdin, STDIN_BATCH};
use crate::executor::feeder::{Fed, ListFeeder};
use crate::executor::{EventKind, Executor, Outcome, PoolConfig, Stream, TaskId, TaskSpec, Waited};
use crate::model::formats::taskfile::TaskList;
use crate::model::store::journal::{self, JournalWriter};
use crate::model::store::resume::{ResumeWhat, Resumption};
use crate::model::store::runs::{self, RunRoot};
use crate::model::{RunRecord, TaskState, formats::taskfile};

use super::records::resume_skip;
use super::{BackendChoice, JoblogOut, RunArgs, TraceOut, input, on_stop_signals, served};

pub(super) fn positive_seconds(value: f64, flag: &str) -> Result<Duration> {
    crate::executor::user_seconds(value, true).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

/// Tasks read but not yet over, at most: then stdin is not read (the producer waits on
/// its pipe), so an endless producer runs in constant memory. A task file is handed to
/// the pool the same way.
const READ_AHEAD: usize = 16 * 1024;
/// Output a headless run keeps of each task for its clients (`log`, `follow`), and of
/// all its tasks together; the terminal (or --results) has all of it.
const RUN_TAIL_BYTES: usize = 4 << 20;
const RUN_TAIL_BUDGET: usize = 64 << 20;

/// What `poolscope run` does: the pool settings and tasks (the file's, overridden by the
/// flags), how many go to a worker at once, and whether output keeps input order.
struct Plan {
    config: PoolConfig,
    specs: TaskList,
    chunk_size: usize,
    keep_order: bool,
    /// Commands come from the one input as it is read.
    stream: Option<input::Streamed>,
    /// Where the tasks came from, as the run's journal names it.
    source: String,
}

fn plan(args: &RunArgs, may_stream: bool) -> Result<Plan> {
    let mut file_chunk = None;
    // A served run with no tasks of its own waits for its clients' (stdin is not read).
    let tasks = if args.serve && args.words.is_empty() && args.arg_files.is_empty() {
        input::Tasks::Clients
    } else {
        input::tasks_of(args)?
    };
    let source = tasks.source();
    let (mut config, file_specs, file_size) = match &tasks {
        input::Tasks::File(path) => {
            let file = taskfile::load(path)?;
            let mut config = PoolConfig {
                retries: file.retries,
                halt: file.halt,
                ..PoolConfig::of_size(1)
            };
            if let Some(grace) = file.kill_grace {
                config.kill_grace = grace;
            }
            config.workers.clone_from(&file.workers);
            config.slurm = file
                .slurm
                .clone()
                .map(|options| crate::executor::SlurmSettings {
                    options,
                    ..crate::executor::SlurmSettings::default()
                });
            file_chunk = file.chunk_size;
            (config, Some(file.tasks), file.pool_size)
        }
        input::Tasks::Line { .. } | input::Tasks::Clients => (PoolConfig::of_size(1), None, None),
    };
    // -j over the file's pool size over the CPUs (counted only then).
    config.size = match input::pool_size_of(args)? {
        Some(size) => size,
        None => file_size.unwrap_or_else(num_cpus::get),
    };
    if let Some(retries) = args.retries {
        config.retries = retries;
    }
    if let Some(halt) = args.halt {
        config.halt = halt;
    }
    if let Some(grace) = args.kill_grace {
        config.kill_grace = positive_seconds(grace, "kill-grace")?;
    }
    let timeout = args
        .timeout
        .map(|t| crate::executor::user_seconds(t, false))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    config.output_dir.clone_from(&args.results);
    slurm_choice(args, &mut config)?;
    if args.workers && config.workers.is_none() {
        config.workers = Some(crate::executor::WorkerConfig::default());
    }
    if let Some(max) = args.maxtasksperchild {
        let Some(workers) = config.workers.as_mut() else {
            bail!("--maxtasksperchild needs persistent workers: add --workers");
        };
        if max == 0 {
            bail!("--maxtasksperchild must be 1 or more");
        }
        workers.max_tasks = Some(max);
    }
    if args.chunksize == Some(0) {
        bail!("--chunksize must be 1 or more");
    }
    if args.chunksize.is_some() && config.workers.is_none() {
        bail!("--chunksize needs persistent workers: add --workers");
    }
    // stdin streams into a pool of processes; workers (a map's chunks are sized by the
    // whole list) and a cluster (arrays) take the list whole.
    let stream =
        tasks.streams() && may_stream && config.workers.is_none() && config.slurm.is_none();
    let (mut specs, maker) = match (file_specs, tasks) {
        (Some(specs), _) => (specs, None),
        (None, tasks) => input::listed_or_streamed(tasks, stream, timeout)?,
    };
    if let Some(timeout) = timeout {
        specs.set_default_timeout(timeout);
    }
    let chunk_size = match config.workers {
        Some(_) => args
            .chunksize
            .or(file_chunk)
            .unwrap_or_else(|| taskfile::python_chunksize(specs.len(), config.size)),
        None => 1,
    };
    let keep_order = args.keep_order || (config.workers.is_some() && !args.unordered);
    Ok(Plan {
        config,
        specs,
        chunk_size,
        keep_order,
        stream: maker,
        source,
    })
}

/// Runs tasks headless; returns the process exit code: 0 only when every task succeeded.
#[allow(clippy::too_many_lines)] // one arm per kind of event the run reacts to
pub fn run(args: &RunArgs) -> Result<u8> {
    let normalised = resume_with_command(args);
    let args = normalised.as_ref().unwrap_or(args);
    if args.dry_run {
        return input::dry_run(&input::tasks_of(args)?);
    }
    let run_folder = args
        .resume
        .clone()
        .flatten()
        .or(args.resume_failed.clone().flatten());
    let gnu_resume = matches!(args.resume, Some(None)) || matches!(args.resume_failed, Some(None));
    if gnu_resume && args.joblog.is_none() {
        bail!(
            "--resume needs the run to go on with: --resume RUN_DIR (a folder poolscope \
             printed), or --joblog FILE --resume (GNU parallel's way)"
        );
    }
    // Every place the run writes to is tried before its first task starts.
    let trace_out = TraceOut::create(args.trace.as_deref())?;
    if let Some(dir) = &args.results {
        check_results_folder(dir)?;
    }
    let Session {
        config,
        specs,
        chunk_size,
        keep_order,
        journal,
        mut record,
        resumption,
        mut joblog_out,
        unaccounted,
        stream,
        pruning: _pruning,
    } = match &run_folder {
        Some(dir) => resume_session(args, dir)?,
        None => new_session(args, gnu_resume)?,
    };

    let total = record.task_count().max(specs.len());
    let mut config = config;
    if let Some(slurm) = config.slurm.as_mut() {
        // The arrays' files live in the run's folder, where the nodes write them.
        let Some((dir, _)) = &journal else {
            bail!("the slurm backend keeps its files in the run's folder: drop --no-journal");
        };
        slurm.folder = crate::executor::backend::slurm::folder_of(dir);
    }
    if args.serve
        && config.output_dir.is_none()
        && run_folder.is_none()
        && let Some((dir, _)) = &journal
    {
        // A served run keeps every task's output in its folder, as the pueue daemon
        // does: `log` and `follow` give all of it, however long. (Not a resumed one:
        // its pool numbers tasks afresh, and its files would meet the first run's.)
        config.output_dir = Some(dir.clone());
    }
    let output_dir = config.output_dir.clone();
    if stream.is_none() {
        record.reserve_tasks(specs.len());
    }
    // The list goes to the pool as it runs, in whole chunks, enough to keep every worker
    // busy with one chunk waiting: at most that many tasks are made at once.
    let mut from_list = stream.is_none().then(|| {
        let len = specs.len();
        ListFeeder::new(
            Arc::new(specs),
            len,
            chunk_size,
            config.size,
            READ_AHEAD,
            STDIN_BATCH,
        )
    });
    if journal.is_some() {
        joblog_out.hold_for_journal();
    }
    let mode = crate::control::Shape::mode_of(config.slurm.is_some(), config.workers.is_some());
    // The pool numbers the run's own list 1 to N; what clients add follows it.
    let listed = from_list.as_ref().map_or(0, ListFeeder::len);
    let (executor, events) = Executor::start(config, None);
    // Each batch read wakes this thread (it waited up to 2 ms for it, polling).
    let mut from_stdin = stream
        .map(|stream| {
            let nudge = events.nudge();
            input::stream_input(stream, move || nudge.nudge())
        })
        .transpose()?;
    let interrupted = watch_signals(&executor)?;
    // Clients (`poolscope add`, `status`, `follow` …) reach the run through a socket in
    // its folder; a run without a folder (--no-journal) is not reachable. The socket is
    // made here (its descriptor taken while the run has some to spare), and answered
    // once the first tasks are handed to the pool (not between poolscope's start and its
    // first task; clients wait in its backlog meanwhile), a served run's at once.
    let unreachable = |dir: &Path, e: io::Error| -> Result<()> {
        if args.serve {
            bail!("cannot listen for clients in {}: {e}", dir.display());
        }
        eprintln!("poolscope: this run cannot be driven from another terminal ({e}); it runs on");
        Ok(())
    };
    let mut control_due = match &journal {
        Some((dir, _)) => match crate::control::Control::bind(dir) {
            Ok(bound) => Some(bound),
            Err(e) => {
                unreachable(dir, e)?;
                None
            }
        },
        None if args.serve => bail!("--serve needs the run's folder: drop --no-journal"),
        None => None,
    };
    let start_control = |bound: crate::control::BoundControl| -> Result<_> {
        let nudge = events.nudge();
        let dir = bound.dir().to_owned();
        match bound.start("headless", Arc::new(move || nudge.nudge())) {
            Ok(control) => Ok(Some(control)),
            Err(e) => unreachable(&dir, e).map(|()| None),
        }
    };
    let mut control = None;
    if args.serve
        && let Some(bound) = control_due.take()
    {
        control = start_control(bound)?;
    }
    if control.is_some() || control_due.is_some() {
        // A task's own output, for the clients that read it (log, follow).
        record.keep_task_output(RUN_TAIL_BYTES, RUN_TAIL_BUDGET);
    }
    if args.serve
        && let Some((dir, _)) = &journal
    {
        let id = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        eprintln!(
            "poolscope: serving run {id}: add tasks with `poolscope add --run {id} -- CMD`, end \
             it with `poolscope close --run {id}`"
        );
    }
    let mut additions = served::Additions::new(&resumption, listed, args.serve, args.queue_limit);
    // Tasks handed to the pool and not over yet.
    let mut in_flight = 0usize;
    // The run's own tasks are all handed to the pool (its list, stdin).
    let mut input_over = false;
    // Tasks handed to the pool that the record has seen.
    let mut queued_seen = 0usize;
    // Tasks handed to the pool (the record has them once it saw them all queued).
    let mut handed = 0usize;
    let mut refused = None;

    let bar = progress_bar(total);
    let mut printer = Printer::new(args.tag);
    // Output waiting its turn spills into the run's folder (next to its output), or
    // the temporary folder for a run without one.
    let spill_dir = journal
        .as_ref()
        .map_or_else(std::env::temp_dir, |(dir, _)| dir.clone());
    let mut order = keep_order.then(|| InputOrder::new(spill_dir));
    let mut journal_failed = None;
    let mut save_failed = None;
    let mut drained = false;
    // The journal gets what arrived in one batch whenever no more is at hand, and the
    // joblog its lines once the journal has them; then the next event (or a nudge: a
    // batch read, a client's request) is awaited.
    let next = |joblog_out: &mut JoblogOut| -> Result<Waited> {
        if let Some(event) = events.try_recv() {
            return Ok(Waited::Event(event));
        }
        if let Some((_, journal)) = &journal {
            if joblog_out.holds_lines() {
                journal.written();
                joblog_out.release()?;
            } else {
                journal.send();
            }
        }
        Ok(events.wait(Duration::MAX))
    };
    loop {
        if let Some(control) = &mut control {
            let bar_grow = |count| bar.grow(count);
            control.serve(&mut served::Headless {
                record: &mut record,
                executor: &executor,
                journal: journal.as_ref().map(|(_, j)| j),
                resumption: &resumption,
                additions: &mut additions,
                in_flight: &mut in_flight,
                handed: &mut handed,
                queued_seen,
                listing: from_list.is_some(),
                input_over,
                interrupted: interrupted.load(Ordering::Acquire),
                mode,
                results: output_dir.as_deref(),
                grew: &bar_grow,
            });
        }
        if let Some(feeder) = &mut from_list {
            let ended = interrupted.load(Ordering::Acquire)
                || match feeder.feed(&executor, queued_seen, in_flight, usize::MAX) {
                    Fed::Batch(count) => {
                        in_flight += count;
                        handed += count;
                        false
                    }
                    Fed::Waiting => false,
                    // A pool that takes no more (a halt policy closed it) runs no more.
                    Fed::Done | Fed::Refused => true,
                };
            if ended {
                from_list = None;
                input_over = true;
            }
        }
        // What clients added while the list went to the pool follows it now.
        if from_list.is_none() && !additions.held.is_empty() {
            for specs in std::mem::take(&mut additions.held) {
                let count = specs.len();
                if executor.submit(specs).is_ok() {
                    in_flight += count;
                    handed += count;
                }
            }
        }
        if let Some(rx) = &from_stdin {
            // What stdin brought, while the run is not too far behind it.
            let mut ended = interrupted.load(Ordering::Acquire);
            while !ended && in_flight < READ_AHEAD {
                match rx.try_recv() {
                    Ok(FromStdin::Tasks(specs)) if specs.is_empty() => {}
                    Ok(FromStdin::Tasks(specs)) => {
                        let count = specs.len();
                        // In the journal before they can start, as a whole list is.
                        if let Some((_, journal)) = &journal {
                            let listed: Vec<Arc<TaskSpec>> =
                                specs.iter().cloned().map(Arc::new).collect();
                            if let Err(e) =
                                journal.plan(TaskId(additions.next_id), &listed, record.last_event)
                            {
                                journal_failed = Some(e.to_string());
                                executor.terminate();
                                ended = true;
                                break;
                            }
                        }
                        if executor.submit(specs).is_err() {
                            // The pool takes no more (a halt policy closed it): what was
                            // read stays queued in the journal, for a resume.
                            ended = true;
                            break;
                        }
                        in_flight += count;
                        handed += count;
                        additions.next_id += count as u64;
                        bar.grow(count);
                    }
                    Ok(FromStdin::Refused(why)) => {
                        refused = Some(why);
                        ended = true;
                    }
                    Ok(FromStdin::End) | Err(mpsc::TryRecvError::Disconnected) => ended = true,
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            if ended {
                from_stdin = None;
                input_over = true;
            }
        }
        // The pool closes once the run's own tasks are handed over and, for a run that
        // clients can add to, everything added is over too (a served run: once a client
        // closed it).
        let interrupted_now = interrupted.load(Ordering::Acquire);
        if input_over && !executor.is_closed() {
            let clients_done = (control.is_none() && control_due.is_none())
                || interrupted_now
                || (additions.held.is_empty()
                    && in_flight == 0
                    && (!additions.serve || additions.closed));
            if clients_done {
                executor.close();
            }
        }
        // The first tasks are on their way: clients may come.
        if let Some(bound) = control_due.take() {
            control = start_control(bound)?;
        }
        let event = match next(&mut joblog_out)? {
            Waited::Event(event) => event,
            Waited::TimedOut | Waited::Nudged => continue,
            Waited::Closed => break,
        };
        if let EventKind::Queued { task, spec } = &event.kind {
            queued_seen += 1;
            printer.queued(*task, &spec.name);
        }
        if matches!(
            event.kind,
            EventKind::Cancelled { .. }
                | EventKind::Finished {
                    will_retry: false,
                    ..
                }
        ) {
            in_flight = in_flight.saturating_sub(1);
        }
        // The record and the journal see the run's own tasks (a resumed run's first
        // numbers); what is printed follows the executor's.
        if let Some(mine) = resumption.translate(&event) {
            record.apply(&mine);
            if let Some(control) = &mut control {
                control.event(&mine);
            }
            // Once the journal could not be written, the run stops: the tasks it
            // cancels or kills for that are left unfinished in the journal (a resume
            // runs them), only what ended by itself goes in.
            let stopped_by_us = journal_failed.is_some()
                && matches!(
                    mine.kind,
                    EventKind::Cancelled { .. }
                        | EventKind::Finished {
                            outcome: Outcome::Killed,
                            ..
                        }
                );
            if let Some((_, journal)) = &journal
                && !stopped_by_us
            {
                journal.record(&mine);
            }
        }
        match &event.kind {
            // After Ctrl-C the user wants the prompt back, not the backlog.
            EventKind::Output { .. } if interrupted.load(Ordering::Acquire) => {}
            EventKind::Output {
                task,
                stream,
                bytes,
                ..
            } => match &mut order {
                Some(order) if !order.is_current(*task) => order.hold(*task, *stream, bytes),
                _ => bar.quiet(|| printer.output(*task, *stream, bytes)),
            },
            EventKind::Finished {
                task,
                attempt,
                will_retry,
                outcome,
                ..
            } => {
                match &mut order {
                    Some(order) if !*will_retry => {
                        bar.quiet(|| order.finished(*task, &mut printer));
                    }
                    Some(_) => {}
                    None => bar.quiet(|| printer.flush_task(*task)),
                }
                let (task, attempt) = resumption.original(*task, *attempt);
                // What the task's own output cannot say: it did not start, ran out of
                // time, or lost its worker or its place on the cluster.
                if matches!(
                    outcome,
                    Outcome::FailedToSpawn(_)
                        | Outcome::TimedOut
                        | Outcome::WorkerLost(_)
                        | Outcome::Scheduler(_)
                ) {
                    let name = record.task(task).map(|t| t.spec.name.clone());
                    let name = crate::model::shown(name.as_deref().unwrap_or_default(), 80);
                    let outcome = crate::model::shown(&outcome.to_string(), 400);
                    bar.quiet(|| eprintln!("poolscope: task {task} ({name}): {outcome}"));
                }
                joblog_out.finished(&record, task, attempt)?;
                // Held lines are bounded: a run that is never idle writes them in batches.
                if joblog_out.holds_many()
                    && let Some((_, journal)) = &journal
                {
                    journal.written();
                    joblog_out.release()?;
                }
                if journal_failed.is_none()
                    && let Some((dir, journal)) = &journal
                    && let Some(e) = journal.error()
                {
                    // A full disk: stop cleanly, keep what was recorded, and say so.
                    bar.quiet(|| {
                        eprintln!(
                            "poolscope: cannot write the run's journal ({e}): stopping the run; \
                             what was recorded before is intact in {}",
                            dir.display()
                        );
                    });
                    executor.terminate();
                    journal_failed = Some(e);
                }
                if !will_retry {
                    bar.inc();
                }
            }
            EventKind::Cancelled { task } => {
                if let Some(order) = &mut order {
                    order.finished(*task, &mut printer);
                }
                bar.inc();
            }
            EventKind::Drained => {
                drained = true;
                break;
            }
            EventKind::Failed { reason } => {
                bar.finish_and_clear();
                bail!("the pool failed and killed every task: {reason}");
            }
            EventKind::SaveFailed { path, error } if args.results.is_none() => {
                // The run's own copy (a served run's): clients read less of it.
                bar.quiet(|| {
                    eprintln!(
                        "poolscope: cannot save output to {} ({error}): `poolscope log` \
                         shows only the last of it",
                        path.display()
                    );
                });
            }
            EventKind::SaveFailed { path, error } if save_failed.is_none() => {
                // --results is the user's copy of the output: a cut file is a failed run.
                bar.quiet(|| {
                    eprintln!(
                        "poolscope: cannot save output to {} ({error}): stopping the run",
                        path.display()
                    );
                });
                executor.terminate();
                save_failed = Some(format!("{}: {error}", path.display()));
            }
            EventKind::Limited { running, reason } => {
                bar.quiet(|| {
                    eprintln!(
                        "poolscope: only {running} tasks can run at once here ({reason}); \
                         the others wait for a free slot"
                    );
                });
            }
            _ => {}
        }
        // Nobody reads the output any more (`| head -1`): stop, as a closed pipe stops
        // parallel.
        if printer.stdout_closed && !interrupted.swap(true, Ordering::AcqRel) {
            executor.terminate();
        }
    }
    bar.finish_and_clear();
    // The end marker goes to the disk and the pool's thread ends while the socket
    // closes.
    if drained
        && journal_failed.is_none()
        && let Some((_, journal)) = &journal
    {
        journal.end_soon(&record);
    }
    executor.shut_down_soon();
    // Clients are told the run ended; its socket goes.
    drop(control);
    drop(executor);
    // Streamed, the run's size is what was read.
    let total = total.max(record.task_count());
    if let Some(e) = journal_failed {
        bail!(
            "the run stopped: its journal could not be written ({e}); go on with: poolscope \
             run --resume {} (on a disk with room)",
            journal
                .as_ref()
                .map_or_else(String::new, |(d, _)| d.display().to_string())
        );
    }
    let dir = match journal {
        Some((dir, journal)) => {
            if drained && let Err(e) = journal.finish() {
                bail!("cannot finish the run's journal in {}: {e}", dir.display());
            }
            Some(dir)
        }
        None => None,
    };
    // The journal is written whole (ended, or dropped): the joblog's last lines follow.
    joblog_out.release()?;

    trace_out.write(&record)?;
    if let Some(why) = refused {
        again_hint(dir.as_deref());
        bail!("{why}; the {total} tasks read before it ran");
    }
    if let Some(e) = save_failed {
        again_hint(dir.as_deref());
        bail!("the run stopped: output could not be saved ({e})");
    }
    // A task the pool never took (a halt, an interrupt) did not succeed either.
    let failed = (0..record.task_count())
        .filter(|&i| {
            !record
                .state_at(i)
                .is_some_and(|s| matches!(&*s, TaskState::Done(o) if o.is_success()))
        })
        .count()
        + total.saturating_sub(record.task_count());
    let again = || again_hint(dir.as_deref());
    if unaccounted > 0 {
        eprintln!(
            "poolscope: {failed} of {total} tasks did not succeed, and {unaccounted} more of \
             the run are unaccounted for"
        );
        return Ok(u8::try_from((failed as u64 + unaccounted).min(101))
            .unwrap_or(101)
            .max(1));
    }
    if printer.stdout_closed {
        // As a process killed by SIGPIPE reports it to its shell.
        return Ok(141);
    }
    if interrupted.load(Ordering::Acquire) {
        // Those that never started are what a resume runs: said apart from the failures.
        let never_ran = (0..record.task_count())
            .filter(|&i| {
                record
                    .state_at(i)
                    .is_some_and(|s| matches!(&*s, TaskState::Queued | TaskState::Cancelled))
            })
            .count();
        eprintln!(
            "poolscope: interrupted; {failed} of {total} tasks did not succeed ({never_ran} of \
             them never started)"
        );
        again();
        return Ok(130);
    }
    if failed > 0 {
        eprintln!("poolscope: {failed} of {total} tasks did not succeed");
        again();
    }
    // GNU parallel's convention: the number of failed tasks, capped at 101.
    Ok(failed.min(101) as u8)
}

/// `--joblog FILE --resume CMD ::: …`: GNU parallel's `--resume` takes no value, so
/// the word clap took for a run folder is the command's first when it names no folder.
fn resume_with_command(args: &RunArgs) -> Option<RunArgs> {
    args.joblog.as_ref()?;
    let taken = |value: &Option<Option<PathBuf>>| {
        value
            .clone()
            .flatten()
            .filter(|dir| !dir.is_dir())
            .and_then(|word| word.into_os_string().into_string().ok())
    };
    let (word, failed) = match (taken(&args.resume), taken(&args.resume_failed)) {
        (Some(word), _) => (word, false),
        (None, Some(word)) => (word, true),
        (None, None) => return None,
    };
    let mut args = args.clone();
    if failed {
        args.resume_failed = Some(None);
    } else {
        args.resume = Some(None);
    }
    args.words.insert(0, word);
    Some(args)
}

/// Where to go on from, after a run that did not end well.
fn again_hint(dir: Option<&Path>) {
    if let Some(dir) = dir {
        eprintln!(
            "poolscope: the run is recorded in {}; go on with: poolscope run --resume {0}",
            dir.display()
        );
    }
}

/// `--results DIR`: made if missing, and tried with a file, before any task starts.
fn check_results_folder(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--results: cannot create {}", dir.display()))?;
    let probe = dir.join(format!(".poolscope-probe-{}", std::process::id()));
    File::create(&probe)
        .and_then(|mut f| f.write_all(b"probe"))
        .with_context(|| format!("--results: cannot write in {}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `--backend` and the slurm options over what the task file said.
fn slurm_choice(args: &RunArgs, config: &mut PoolConfig) -> Result<()> {
    match args.backend {
        Some(BackendChoice::Local) => config.slurm = None,
        Some(BackendChoice::Slurm) if config.slurm.is_none() => {
            config.slurm = Some(crate::executor::SlurmSettings::default());
        }
        _ => {}
    }
    let asked_slurm_options = args.partition.is_some()
        || args.time_limit.is_some()
        || args.cpus_per_task.is_some()
        || args.mem.is_some()
        || !args.sbatch_args.is_empty()
        || args.workers_host.is_some();
    let Some(slurm) = config.slurm.as_mut() else {
        if asked_slurm_options {
            bail!(
                "--partition, --time-limit, --cpus-per-task, --mem, --sbatch-arg and --workers-host need --backend slurm"
            );
        }
        return Ok(());
    };
    let options = &mut slurm.options;
    if args.workers_host.is_some() {
        options.workers_host.clone_from(&args.workers_host);
    }
    if args.partition.is_some() {
        options.partition.clone_from(&args.partition);
    }
    if args.time_limit.is_some() {
        options.time_limit.clone_from(&args.time_limit);
    }
    if args.cpus_per_task.is_some() {
        options.cpus_per_task = args.cpus_per_task;
    }
    if args.mem.is_some() {
        options.mem.clone_from(&args.mem);
    }
    options.extra.extend(args.sbatch_args.iter().cloned());
    Ok(())
}

/// What a headless run starts from: a new run, or one resumed.
struct Session {
    config: PoolConfig,
    specs: TaskList,
    chunk_size: usize,
    keep_order: bool,
    /// The run's folder and its journal (none with --no-journal).
    journal: Option<(PathBuf, JournalWriter)>,
    record: RunRecord,
    resumption: Resumption,
    joblog_out: JoblogOut,
    /// Tasks of a resumed run its journal cannot account for (the run cannot succeed).
    unaccounted: u64,
    /// Tasks come from stdin as they are read.
    stream: Option<input::Streamed>,
    /// Old runs being removed meanwhile.
    pruning: Pruning,
}

/// Old runs removed beside the run's start: before, their removal stood between
/// poolscope's start and its first task (0.2 ms on tmpfs, 0.6 ms on a disk here). Joined
/// when dropped, so poolscope never leaves a folder half removed.
struct Pruning(Option<std::thread::JoinHandle<()>>);

impl Pruning {
    fn aside(root: &RunRoot, keep: usize, max_bytes: Option<u64>, made: &Path) -> Self {
        let (thread_root, thread_made) = (root.clone(), made.to_owned());
        let spawned = std::thread::Builder::new()
            .name("poolscope-prune".into())
            .spawn(move || {
                // Behind the run's own start (the first task, its exec) for the CPU.
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
                thread_root.prune_except(keep, max_bytes, Some(&thread_made));
            });
        if let Ok(thread) = spawned {
            Self(Some(thread))
        } else {
            // No thread to spare (`ulimit -u`): done here, as before.
            root.prune_except(keep, max_bytes, Some(made));
            Self(None)
        }
    }
}

impl Drop for Pruning {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// A new run: its tasks from the file or stdin (less those a GNU-style `--resume` skips),
/// and a new folder with its journal under the run root.
fn new_session(args: &RunArgs, gnu_resume: bool) -> Result<Session> {
    let Plan {
        config,
        specs,
        chunk_size,
        keep_order,
        stream,
        source,
    } = plan(args, !gnu_resume)?;
    let listed = specs.len();
    let (specs, joblog_out) = match (&args.joblog, gnu_resume) {
        (Some(path), true) => {
            let (done, whole_len) = resume_skip(path, args.resume_failed.is_some())?;
            // A task's sequence number is its place in the input, as in GNU parallel.
            let (seqs, specs): (Vec<u64>, Vec<TaskSpec>) = (1..)
                .zip(specs.iter())
                .filter(|(seq, _)| !done.contains(seq))
                .unzip();
            eprintln!(
                "poolscope: resuming: {} of {listed} tasks to run, the rest are done in the joblog",
                specs.len()
            );
            (
                TaskList::from_specs(specs),
                JoblogOut::append(path, whole_len, seqs)?,
            )
        }
        _ => (specs, JoblogOut::create(args.joblog.as_deref())?),
    };
    let mut pruning = Pruning(None);
    let journal = if args.no_journal {
        None
    } else {
        let root = match &args.run_dir {
            Some(dir) => dir.clone(),
            None => runs::default_root()?,
        };
        let root = RunRoot::open(&root)?;
        let lock = root.new_run()?;
        let dir = lock.dir().to_owned();
        // Room for this run: the newest `keep_runs` - 1 others stay.
        pruning = Pruning::aside(
            &root,
            args.keep_runs.saturating_sub(1),
            args.max_runs_size.map(|mb| mb << 20),
            &dir,
        );
        let about = crate::model::store::journal::RunAbout {
            source: Some(source),
            workers: config.workers.clone(),
            chunk_size: config.workers.as_ref().map(|_| chunk_size),
            watched: false,
        };
        let journal = JournalWriter::create_about(lock, &about)?;
        // Every task is in the journal before the first can start: a resume after any
        // stop knows exactly what ran and what did not. The list goes down a batch at a
        // time, made as it is written, so a million tasks are never all in memory.
        let planned = match stream {
            None => journal.plan_list(TaskId(1), &specs, specs.len(), Duration::ZERO, |_| true),
            Some(_) => Ok(()),
        };
        if let Err(e) = planned {
            // Nothing ran: nothing to resume, and no half-written run left behind.
            drop(journal);
            let _ = std::fs::remove_dir_all(&dir);
            bail!("cannot write the run's journal ({e}); no task was started");
        }
        Some((dir, journal))
    };
    Ok(Session {
        config,
        specs,
        chunk_size,
        keep_order,
        journal,
        record: RunRecord::without_output(),
        resumption: Resumption::default(),
        joblog_out,
        unaccounted: 0,
        stream,
        pruning,
    })
}

/// `--resume RUN_DIR`: the run rebuilt from its journal, and the tasks it still needs.
fn resume_session(args: &RunArgs, dir: &Path) -> Result<Session> {
    if !args.words.is_empty() {
        bail!("--resume RUN_DIR takes its tasks from the run; give no task file or command");
    }
    // The run is ours from here: refused while its poolscope still runs it.
    let lock = runs::RunLock::acquire(dir)?;
    // What ran on a cluster may run there still: followed again, not lost.
    let on_cluster = crate::executor::backend::slurm::on_cluster(dir);
    let loaded = journal::load_following(dir, |t| on_cluster.contains_key(&t))?;
    for line in &loaded.dropped {
        eprintln!(
            "poolscope: {}: {line}",
            dir.join(journal::JOURNAL_FILE).display()
        );
    }
    // Append after the last whole line (a line cut off by a crash is dropped).
    let journal = JournalWriter::reopen(lock, loaded.whole_len)?;
    for event in &loaded.lost_events {
        journal.record(event);
    }
    let what = if args.resume_failed.is_some() {
        ResumeWhat::UnfinishedAndFailed
    } else {
        ResumeWhat::Unfinished
    };
    let (specs, resumption) = Resumption::plan(&loaded.record, what);
    let specs = TaskList::from_specs(specs);
    eprintln!(
        "poolscope: resuming {}: {} of {} tasks to run ({} were lost when it stopped)",
        dir.display(),
        specs.len(),
        loaded.record.task_count(),
        loaded.lost()
    );
    if loaded.unaccounted > 0 {
        eprintln!(
            "poolscope: {} more tasks of this run cannot be accounted for: poolscope stopped \
             while listing them in its journal, so they are not known and cannot run",
            loaded.unaccounted
        );
    }
    let size = match args.jobs {
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .context("-j: a pool size from 1 to 100000")?,
        None => loaded
            .record
            .pool_sizes
            .last()
            .map_or_else(num_cpus::get, |&(_, size)| size),
    };
    let joblog_out = match &args.joblog {
        Some(path) => {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            JoblogOut::append(path, len, Vec::new())?
        }
        None => JoblogOut::create(None)?,
    };
    // A run that went to Slurm goes on there, following what is still on the cluster.
    // Headless runs keep no output in the run folder: an attempt followed again is read
    // from its start, so this run's output has all of it.
    let slurm = crate::executor::backend::slurm::resumed(
        dir,
        on_cluster,
        resumption.originals(),
        |task| resumption.goes_on(task),
        |_| [0, 0],
    )
    .filter(|_| args.backend != Some(BackendChoice::Local));
    Ok(Session {
        config: PoolConfig {
            output_dir: args.results.clone(),
            slurm,
            // It goes on as it ran: on persistent workers, with their chunks, if so.
            workers: loaded.about.workers.clone(),
            ..PoolConfig::of_size(size)
        },
        specs,
        chunk_size: loaded.about.chunk_size.unwrap_or(1),
        keep_order: args.keep_order || (loaded.about.workers.is_some() && !args.unordered),
        journal: Some((dir.to_owned(), journal)),
        unaccounted: loaded.unaccounted,
        record: loaded.record,
        resumption,
        joblog_out,
        stream: None,
        pruning: Pruning(None),
    })
}

/// Ctrl-C, SIGTERM or SIGHUP: kill every task group; the run then ends normally, so the
/// joblog and trace still hold what ran.
fn watch_signals(executor: &Executor) -> Result<Arc<AtomicBool>> {
    let handle = executor.handle();
    on_stop_signals(move |_| handle.terminate())
}

/// The progress bar on a terminal; nothing at all otherwise (a hidden indicatif bar
/// still reads the clock and takes a lock on every call, for 100 000s of tasks).
struct Progress(Option<ProgressBar>);

impl Progress {
    /// Print without tearing the bar.
    fn quiet<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.0 {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    fn inc(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    /// More tasks were read (a streamed run's length grows as it goes).
    fn grow(&self, tasks: usize) {
        if let Some(bar) = &self.0 {
            bar.inc_length(tasks as u64);
        }
    }

    fn finish_and_clear(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

fn progress_bar(total: usize) -> Progress {
    if !io::stderr().is_terminal() {
        return Progress(None);
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {pos}/{len} tasks  {elapsed_precise} elapsed, ETA {eta}",
    ) {
        bar.set_style(style);
    }
    Progress(Some(bar))
}

/// `--keep-order`: output is printed task by task in input order (GNU parallel's `-k`,
/// the order of Python's `map`). The first unfinished task prints live; later tasks'
/// output waits until every task before them is over.
struct InputOrder {
    /// The task whose output prints live (ids are 1-based, in input order).
    current: u64,
    /// What later tasks printed, in memory up to a budget, then in a hidden file.
    held: crate::model::store::spill::HeldOutput,
    over: std::collections::BTreeSet<TaskId>,
}

impl InputOrder {
    /// Held output past the memory budget goes to a hidden file in `dir`.
    fn new(dir: PathBuf) -> Self {
        Self {
            current: 0,
            held: crate::model::store::spill::HeldOutput::new(
                dir,
                crate::model::store::spill::MEMORY_BUDGET,
            ),
            over: std::collections::BTreeSet::new(),
        }
    }

    fn is_current(&self, task: TaskId) -> bool {
        task.0 == self.current.max(1)
    }

    fn hold(&mut self, task: TaskId, stream: Stream, bytes: &[u8]) {
        self.held.hold(task, stream, bytes);
    }

    /// Print what `task` held.
    fn release(&mut self, task: TaskId, printer: &mut Printer) {
        if let Err(e) = self
            .held
            .release(task, |stream, bytes| printer.output(task, stream, bytes))
        {
            eprintln!("poolscope: task {task}: held output could not be read back: {e}");
        }
    }

    fn finished(&mut self, task: TaskId, printer: &mut Printer) {
        self.current = self.current.max(1);
        self.over.insert(task);
        // Move on past every task that is over, printing what each held.
        while self.over.remove(&TaskId(self.current)) {
            let id = TaskId(self.current);
            self.release(id, printer);
            printer.flush_task(id);
            self.current += 1;
            // The next task may be running: what it printed so far goes out now.
            self.release(TaskId(self.current), printer);
        }
    }
}

/// Longest piece of one task's output printed at once: a longer line (or output with no
/// newline at all) is printed in pieces of this size, so memory and time stay linear.
const PIECE: usize = 64 * 1024;

/// Prints task output line by line (lines of different tasks never mix), like GNU
/// parallel's `--line-buffer`; `--tag` prefixes each line with its task's tag. Output is
/// bytes end to end: nothing is decoded or re-encoded.
struct Printer {
    /// `--tag`: each line is prefixed with its task's tag (what made it: its arguments).
    tag: bool,
    tags: HashMap<TaskId, Box<str>>,
    partial: HashMap<(TaskId, Stream), Partial>,
    /// Whoever read stdout closed it (`| head -1`): the run stops, as parallel's does.
    stdout_closed: bool,
}

/// The unprinted end of one task's stream.
#[derive(Default)]
struct Partial {
    bytes: Vec<u8>,
    /// A piece of the current line was printed already (no tag before the rest).
    mid_line: bool,
}

impl Printer {
    fn new(tag: bool) -> Self {
        Self {
            tag,
            tags: HashMap::new(),
            partial: HashMap::new(),
            stdout_closed: false,
        }
    }

    /// With `--tag`, `task`'s lines are tagged `tag` (kept until its output is printed).
    fn queued(&mut self, task: TaskId, tag: &str) {
        if self.tag {
            self.tags.insert(task, tag.into());
        }
    }

    /// Print `parts` as one piece: nothing of another task comes between them. Returns
    /// whether stdout turned out closed.
    fn emit(tag: Option<&str>, stream: Stream, mid_line: &mut bool, parts: &[&[u8]]) -> bool {
        let result = match stream {
            Stream::Stdout => Self::write_piece(&mut io::stdout().lock(), tag, mid_line, parts),
            Stream::Stderr => Self::write_piece(&mut io::stderr().lock(), tag, mid_line, parts),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => stream == Stream::Stdout,
            Err(e) => {
                log::warn!("cannot print task output: {e}");
                false
            }
            Ok(()) => false,
        }
    }

    fn write_piece(
        out: &mut impl Write,
        tag: Option<&str>,
        mid_line: &mut bool,
        parts: &[&[u8]],
    ) -> io::Result<()> {
        for part in parts.iter().filter(|p| !p.is_empty()) {
            let Some(tag) = tag else {
                out.write_all(part)?;
                *mid_line = part.last() != Some(&b'\n');
                continue;
            };
            for line in part.split_inclusive(|&b| b == b'\n') {
                if !*mid_line {
                    out.write_all(tag.as_bytes())?;
                    out.write_all(b"\t")?;
                }
                out.write_all(line)?;
                *mid_line = line.last() != Some(&b'\n');
            }
        }
        out.flush()
    }

    /// `task`'s tag with `--tag` (from the fields, so a task's pending output can be
    /// borrowed beside it).
    fn tag_of(tag: bool, tags: &HashMap<TaskId, Box<str>>, task: TaskId) -> Option<&str> {
        tag.then(|| tags.get(&task).map_or("", |t| &**t))
    }

    fn output(&mut self, task: TaskId, stream: Stream, bytes: &[u8]) {
        let tag = Self::tag_of(self.tag, &self.tags, task);
        let pending = self.partial.entry((task, stream)).or_default();
        let mut rest = bytes;
        if let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') {
            let (complete, tail) = bytes.split_at(last_newline + 1);
            self.stdout_closed |= Self::emit(
                tag,
                stream,
                &mut pending.mid_line,
                &[&pending.bytes, complete],
            );
            pending.bytes.clear();
            rest = tail;
        }
        pending.bytes.extend_from_slice(rest);
        if pending.bytes.len() >= PIECE {
            self.stdout_closed |= Self::emit(tag, stream, &mut pending.mid_line, &[&pending.bytes]);
            pending.bytes.clear();
        }
    }

    /// The task is over: print what is left of its last line. Its bytes go out exactly
    /// as it wrote them (no newline is added to a last line without one, as GNU
    /// parallel passes them); with `--tag` a tagged line is ended, so the next task's
    /// tag starts a line of its own.
    fn flush_task(&mut self, task: TaskId) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(mut rest) = self.partial.remove(&(task, stream))
                && (!rest.bytes.is_empty() || rest.mid_line)
            {
                let end: &[u8] = if self.tag { b"\n" } else { b"" };
                self.stdout_closed |= Self::emit(
                    Self::tag_of(self.tag, &self.tags, task),
                    stream,
                    &mut rest.mid_line,
                    &[&rest.bytes, end],
                );
            }
        }
        self.tags.remove(&task);
    }
}
