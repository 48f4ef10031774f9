//! `poolscope watch`: a Python program run unchanged, its pools recorded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::executor::EventKind;
use crate::model::RunRecord;
use crate::model::store::runs::{self, RunRoot};

use super::{JoblogOut, TraceOut, WatchArgs, on_stop_signals};

/// `poolscope watch`: runs the program with its output untouched, records its pools,
/// writes the exports, and exits with the program's status.
pub fn watch(args: &WatchArgs) -> Result<u8> {
    // In the run root (private to this user), else the temporary folder.
    let root = std::env::var_os("POOLSCOPE_RUN_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| runs::default_root().ok())
        .and_then(|root| RunRoot::open(&root).ok());
    let dir = match &root {
        Some(root) => crate::watch::folder_in(root.path()),
        None => crate::watch::run_folder(),
    }
    .context("cannot create a folder for the watch")?;
    let result = watch_in(args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn watch_in(args: &WatchArgs, dir: &Path) -> Result<u8> {
    let mut joblog_out = JoblogOut::create(args.joblog.as_deref())?;
    let trace_out = TraceOut::create(args.trace.as_deref())?;
    // The guard first: from the program's first instant, a killed poolscope takes it along.
    let guard = crate::executor::watchdog::start();
    let (mut watched, events) = crate::watch::start(&args.program, dir, None)?;
    let group = watched.group();
    if let Some(guard) = guard {
        guard.track(group.as_raw());
    }
    let foreground = crate::watch::Foreground::give_to(group);
    let signalled = pass_signals_on(group)?;
    let mut record = RunRecord::without_output();
    // A signal is passed on to the program's group; what still runs KILL_AFTER later is
    // killed.
    let mut passed_on: Option<Instant> = None;
    loop {
        match events.wait(Duration::from_millis(100)) {
            crate::executor::Waited::Event(event) => {
                record.apply(&event);
                match &event.kind {
                    EventKind::Finished { task, attempt, .. } => {
                        joblog_out.finished(&record, *task, *attempt)?;
                    }
                    EventKind::Drained => break,
                    _ => {}
                }
            }
            crate::executor::Waited::Closed => break,
            crate::executor::Waited::TimedOut | crate::executor::Waited::Nudged => {}
        }
        if signalled.load(Ordering::Acquire) {
            let since = *passed_on.get_or_insert_with(Instant::now);
            if since.elapsed() >= KILL_AFTER {
                watched.signal(nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
    trace_out.write(&record)?;
    let code = watched.wait(Duration::from_secs(5)).unwrap_or(1);
    drop(foreground);
    if let Some(guard) = guard {
        guard.untrack(group.as_raw());
    }
    for line in crate::model::record::story::pool_story(&record) {
        eprintln!("poolscope: {line}");
    }
    if !watched.saw_inside() {
        eprintln!(
            "poolscope: nothing inside the program was visible: its Python did not load the \
             watch (python -I or -S, Python before 3.8, or not a Python program)"
        );
    }
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

/// How long a watched program has to end after a signal was passed on to it.
const KILL_AFTER: Duration = Duration::from_secs(2);

/// Pass SIGINT, SIGTERM and SIGHUP sent to poolscope on to the watched program's
/// process group (the program and its workers); the flag says one came.
fn pass_signals_on(group: nix::unistd::Pid) -> Result<Arc<AtomicBool>> {
    on_stop_signals(move |signal| {
        if let Ok(signal) = nix::sys::signal::Signal::try_from(signal) {
            let _ = nix::sys::signal::killpg(group, signal);
        }
    })
}
