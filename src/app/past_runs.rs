//! Run folders: the recovery offer at start, opening, resuming and closing past runs,
//! and the Past runs list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::executor::{Executor, PoolConfig, Stream, TaskId};
use crate::model::store::journal::JournalWriter;
use crate::model::store::resume::{ResumeWhat, Resumption};

use super::{Dialog, FRAME_WHILE_BUSY, PoolscopeApp, Run};

impl PoolscopeApp {
    pub(super) fn run_root(
        &self,
    ) -> Result<crate::model::store::runs::RunRoot, crate::model::store::runs::RunRootError> {
        let root = match &self.options.run_dir {
            Some(dir) => dir.clone(),
            None => crate::model::store::runs::default_root()?,
        };
        crate::model::store::runs::RunRoot::open(&root)
    }

    /// The newest run that did not end cleanly, offered to open, resume or close.
    pub(super) fn offer_recovery(&mut self) {
        let Ok(root) = self.run_root() else {
            return;
        };
        // A watched program's run is not offered: the program ran its tasks, and only
        // running it again would run them again.
        let Some(dir) = root.unfinished(5).into_iter().find(|dir| {
            !crate::model::store::journal::RunAbout::read(dir).is_some_and(|about| about.watched)
        }) else {
            return;
        };
        self.offer_recovery_of(dir);
    }

    /// Ask what to do with `dir`, a run that did not end cleanly: resume, open, close.
    pub fn offer_recovery_of(&mut self, dir: PathBuf) {
        let summary = match crate::model::store::journal::load(&dir) {
            Ok(loaded) => {
                let tally = loaded.record.tally();
                let when = loaded
                    .record
                    .wall_clock_start
                    .map_or_else(String::new, |t| {
                        let ago = t.elapsed().unwrap_or_default();
                        format!(", started {} ago", crate::ui::theme::duration(ago))
                    });
                // A cluster run's "lost" tasks were left running there, not lost.
                let lost = if crate::executor::backend::slurm::went_to_cluster(&dir) {
                    "on the cluster when poolscope stopped following"
                } else {
                    "lost (running when it stopped)"
                };
                format!(
                    "{}{when}: {} tasks, {} succeeded, {} failed, {} {lost}, {} never started.",
                    dir.display(),
                    loaded.record.task_count(),
                    tally.succeeded,
                    tally.failed,
                    tally.lost,
                    tally.queued + tally.cancelled,
                )
            }
            Err(e) => format!("{}: {e}", dir.display()),
        };
        self.dialog = Some(Dialog::Recover { dir, summary });
    }

    /// Load a run from its journal in `dir`: rows for its tasks, its output read back
    /// from its files.
    pub(super) fn load_run(&mut self, dir: &Path) -> Option<crate::model::store::journal::Loaded> {
        self.load_run_following(dir, |_| false)
    }

    /// Like [`Self::load_run`], with the attempts of `elsewhere`'s tasks left open, to be
    /// followed again.
    fn load_run_following(
        &mut self,
        dir: &Path,
        elsewhere: impl Fn(TaskId) -> bool,
    ) -> Option<crate::model::store::journal::Loaded> {
        self.dialog = None;
        if self.live_run().is_some() {
            self.error("A run is in progress: wait for it or Terminate it first");
            return None;
        }
        match crate::model::store::journal::load_following(dir, elsewhere) {
            Ok(loaded) => {
                if !loaded.dropped.is_empty() {
                    log::warn!("{}: {}", dir.display(), loaded.dropped.join("; "));
                }
                Some(loaded)
            }
            Err(e) => {
                self.error(format!("Cannot open the run: {e}"));
                None
            }
        }
    }

    pub(super) fn show_run(&mut self, run: Run) {
        self.set_record_rows(&run.record);
        self.file = None;
        self.timeline.view = None;
        self.selected = run.record.task_at(0).map(|t| t.id);
        self.run = Some(run);
        // The first task's console shows its stored output, as a click on it would.
        if let Some(task) = self.selected {
            self.restore_output(task);
        }
    }

    pub(super) fn open_run(&mut self, dir: &Path) {
        let Some(loaded) = self.load_run(dir) else {
            return;
        };
        let lost = loaded.lost();
        let dropped = loaded.dropped.len();
        let mut run = Run::opened(loaded.record);
        run.output_dir = Some(dir.to_owned());
        self.keep_list_while_viewing();
        self.show_run(run);
        self.notify(format!(
            "Opened the run in {}: {lost} task(s) lost where its record stops{}",
            dir.display(),
            if dropped > 0 {
                format!("; {dropped} cut-off line(s) of its journal dropped")
            } else {
                String::new()
            }
        ));
    }

    /// Reopen `dir`'s journal for more (after its last whole line), with the lost
    /// attempts written first.
    pub(super) fn reopen_journal(
        &mut self,
        dir: &Path,
        loaded: &crate::model::store::journal::Loaded,
    ) -> Option<JournalWriter> {
        // Refused while another poolscope runs it (its lock names the PID).
        let reopened = crate::model::store::runs::RunLock::acquire(dir)
            .map_err(|e| e.to_string())
            .and_then(|lock| {
                JournalWriter::reopen(lock, loaded.whole_len).map_err(|e| e.to_string())
            });
        match reopened {
            Ok(journal) => {
                for event in &loaded.lost_events {
                    journal.record(event);
                }
                Some(journal)
            }
            Err(e) => {
                self.error(format!("Cannot go on with the run: {e}"));
                None
            }
        }
    }

    /// Run again what did not finish, as new attempts of the same run.
    pub(super) fn resume_run(&mut self, dir: &Path, ctx: &egui::Context) {
        // What ran on a cluster may run there still: followed again, not lost.
        let on_cluster = crate::executor::backend::slurm::on_cluster(dir);
        let Some(loaded) = self.load_run_following(dir, |t| on_cluster.contains_key(&t)) else {
            return;
        };
        if loaded.about.watched {
            self.error(
                "A watched program's run cannot be resumed: its program ran the tasks. Watch it again to run them again.",
            );
            return;
        }
        let Some(journal) = self.reopen_journal(dir, &loaded) else {
            return;
        };
        let (specs, resumption) = Resumption::plan(&loaded.record, ResumeWhat::Unfinished);
        let kept = kept_output(dir, &loaded.record);
        let count = specs.len();
        let resume_output = dir.join(format!(
            "resume-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        ));
        let waker_ctx = ctx.clone();
        let waker = move || waker_ctx.request_repaint_after(FRAME_WHILE_BUSY);
        // The run goes on as it was (its pool size, its mode), not as the controls
        // are set now.
        if let Some(&(_, size)) = loaded.record.pool_sizes.last() {
            self.pool_size = size.max(1);
        }
        self.workers.clone_from(&loaded.about.workers);
        self.chunk_size = loaded.about.chunk_size;
        let config = PoolConfig {
            size: self.pool_size,
            workers: self.workers.clone(),
            output_dir: Some(resume_output.clone()),
            create_empty_output_files: false,
            // A run on Slurm goes on there, following what is still on the cluster.
            slurm: crate::executor::backend::slurm::resumed(
                dir,
                on_cluster,
                resumption.originals(),
                |task| resumption.goes_on(task),
                |task| kept.get(&task).copied().unwrap_or_default(),
            ),
            ..PoolConfig::default()
        };
        let (executor, events) = Executor::start(config, Some(Arc::new(waker)));
        if let Err(e) = executor.submit_map(specs, 1) {
            self.error(format!("Cannot resume: {e}"));
            return;
        }
        executor.close();
        let started = Instant::now()
            .checked_sub(resumption.offset())
            .unwrap_or_else(Instant::now);
        let run = Run {
            pool: Some((executor, events)),
            finished: None,
            started,
            output_dir: Some(dir.to_owned()),
            journal: Some(Arc::new(journal)),
            resumption,
            resume_output: Some(resume_output),
            ..Run::opened(loaded.record)
        };
        self.show_run(run);
        self.notify(format!(
            "Resuming the run in {}: {count} task(s) that did not finish run again",
            dir.display()
        ));
    }

    /// Keep the run as it is: its lost attempts and an end marker go into its journal,
    /// so it is not offered again.
    pub(super) fn close_run(&mut self, dir: &Path) {
        let Some(loaded) = self.load_run(dir) else {
            return;
        };
        if let Some(journal) = self.reopen_journal(dir, &loaded) {
            journal.end_soon(&loaded.record);
            // Dropping waits for the writer: not on the window's thread.
            let _ = std::thread::Builder::new()
                .name("poolscope-journal-close".into())
                .spawn(move || drop(journal));
        }
        self.notify(format!("Closed the run in {} as it is", dir.display()));
    }

    /// A private folder for the next run's output, under the run root (checked each time:
    /// an unwritable or foreign root is an error before any task starts).
    pub(super) fn new_run_folder(
        &self,
    ) -> Result<crate::model::store::runs::RunLock, crate::model::store::runs::RunRootError> {
        let root = self.run_root()?;
        // The user's policy: room for this run among the newest `keep_runs`.
        root.prune(
            self.keep_runs.saturating_sub(1),
            (self.max_runs_mb > 0).then_some(self.max_runs_mb << 20),
        );
        root.new_run()
    }

    /// The past runs the File menu lists, read again at most every 2 s while shown.
    pub fn past_runs(&mut self) -> &[crate::model::store::runs::RunSummary] {
        let stale = self
            .past_runs
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > Duration::from_secs(2));
        if stale {
            let runs = self.run_root().map(|r| r.recent(12)).unwrap_or_default();
            self.past_runs = Some((Instant::now(), runs));
        }
        self.past_runs.as_ref().map_or(&[], |(_, runs)| runs)
    }

    /// Show a folder in the desktop's file manager (`xdg-open`), without waiting for it.
    pub(super) fn reveal(&mut self, path: &Path) {
        match std::process::Command::new("xdg-open")
            .arg(path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(mut child) => {
                let _ = std::thread::Builder::new()
                    .name("poolscope-reveal".into())
                    .spawn(move || child.wait());
                self.notify(format!("Opened {}", path.display()));
            }
            Err(e) => self.error(format!(
                "Cannot open a file manager (xdg-open: {e}); the folder is {}",
                path.display()
            )),
        }
    }
}

/// For each attempt to be followed again, the bytes of its stdout and stderr the run's
/// folder already keeps: it goes on from there (its files grow, nothing twice).
fn kept_output(dir: &Path, record: &crate::model::RunRecord) -> HashMap<TaskId, [u64; 2]> {
    let size = |path: PathBuf| std::fs::metadata(path).map_or(0, |m| m.len());
    record
        .open_attempts()
        .map(|(task, n)| {
            let kept = Stream::BOTH.map(|stream| size(stream.file_in(dir, task, n)));
            (task, kept)
        })
        .collect()
}
