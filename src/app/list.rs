//! Rows that are not made until they are edited: a shown record's tasks, or a task
//! file's list too long to make into drafts (a template over a million values). The
//! table makes each such row for the frame it is drawn in. A long list runs the way
//! `poolscope run` runs it: a thread lists its tasks in the journal, and the pool gets
//! them a batch at a time, as the journal has them and the pool has room.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::executor::feeder::{Fed, ListFeeder};
use crate::executor::{Executor, TaskId};
use crate::model::formats::taskfile::TaskList;
use crate::model::store::journal::JournalWriter;
use crate::model::{RunRecord, TaskDraft};

use super::{Action, PoolscopeApp, Row, Run};

/// Where the list's rows come from when `rows` does not hold them.
#[derive(Clone, Debug, Default)]
pub enum LazyRows {
    /// `rows` is the list.
    #[default]
    Made,
    /// The shown record's tasks, by position.
    Record,
    /// A task file's list; once it runs, a row whose task the record has is that task.
    List(Arc<TaskList>),
}

impl LazyRows {
    /// How many rows there are; `None`: those in `rows`.
    pub fn count(&self, record: Option<&RunRecord>) -> Option<usize> {
        match self {
            LazyRows::Made => None,
            LazyRows::Record => Some(record.map_or(0, RunRecord::task_count)),
            LazyRows::List(list) => Some(list.len()),
        }
    }

    /// Where row `i`'s task is in `record`, if it has one there.
    pub fn position(&self, record: &RunRecord, i: usize) -> Option<usize> {
        match self {
            LazyRows::Made => None,
            LazyRows::Record | LazyRows::List(_) => (i < record.task_count()).then_some(i),
        }
    }

    /// Row `i`, made for the frame it is drawn in; `None` for made rows (or past the
    /// end).
    pub fn row(&self, record: Option<&RunRecord>, i: usize) -> Option<Row> {
        if let Some(row) = record
            .filter(|r| self.position(r, i).is_some())
            .and_then(|r| Row::at(r, i))
        {
            return Some(row);
        }
        match self {
            LazyRows::List(list) => list.get(i).map(|spec| Row {
                draft: TaskDraft::from_spec(&spec),
                task: None,
            }),
            _ => None,
        }
    }

    /// Every row, made.
    pub fn make_all(&self, record: Option<&RunRecord>) -> Vec<Row> {
        let count = self.count(record).unwrap_or(0);
        (0..count).filter_map(|i| self.row(record, i)).collect()
    }
}

/// A long list being run: its journal listing and its handing-over to the pool.
pub(super) struct ListRun {
    feeder: ListFeeder,
    /// Tasks of the list that the journal lists (from its start): only those may go.
    planned: Arc<AtomicUsize>,
    plan_failed: Arc<Mutex<Option<String>>>,
    /// Ends the listing early (the run went away).
    stop: Arc<AtomicBool>,
    /// Close the pool once every task went to it (Close was pressed meanwhile).
    pub(super) close_when_fed: bool,
}

/// Tasks handed to the pool and not over, at most (more with chunks larger than this).
const READ_AHEAD: usize = 16 * 1024;
/// Tasks handed over at once, at least.
const BATCH: usize = 4096;

impl ListRun {
    /// Run `list`, in chunks of `chunk`, on a pool of `pool_size`, listing it first in
    /// `journal` (tasks 1, 2, …: the pool numbers them so).
    pub(super) fn start(
        list: Arc<TaskList>,
        chunk: usize,
        pool_size: usize,
        journal: Option<&Arc<JournalWriter>>,
        ctx: &egui::Context,
    ) -> std::io::Result<Self> {
        let len = list.len();
        let planned = Arc::new(AtomicUsize::new(if journal.is_some() { 0 } else { len }));
        let plan_failed = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(journal) = journal {
            let (journal, list) = (Arc::clone(journal), Arc::clone(&list));
            let (planned, plan_failed, stop) = (
                Arc::clone(&planned),
                Arc::clone(&plan_failed),
                Arc::clone(&stop),
            );
            let ctx = ctx.clone();
            // Off the window's thread: a batch is synced to disk before the next.
            std::thread::Builder::new()
                .name("poolscope-plan".into())
                .spawn(move || {
                    let listed = journal.plan_list(TaskId(1), &*list, len, Duration::ZERO, |n| {
                        planned.store(n, Ordering::Release);
                        ctx.request_repaint();
                        !stop.load(Ordering::Acquire)
                    });
                    if let Err(e) = listed {
                        *plan_failed.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(e.to_string());
                        ctx.request_repaint();
                    }
                })?;
        }
        Ok(Self {
            feeder: ListFeeder::new(list, len, chunk, pool_size, READ_AHEAD, BATCH),
            planned,
            plan_failed,
            stop,
            close_when_fed: false,
        })
    }

    /// Hand the pool its next batch, if it has room and the journal lists it; `Err`:
    /// the journal could not list the tasks.
    pub(super) fn feed(&mut self, executor: &Executor, record: &RunRecord) -> Result<Fed, String> {
        if let Some(why) = self
            .plan_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Err(why);
        }
        let ready = self.planned.load(Ordering::Acquire);
        Ok(self
            .feeder
            .feed(executor, record.task_count(), record.unfinished(), ready))
    }

    /// Tasks of the list not handed to the pool yet.
    pub(super) fn waiting(&self) -> usize {
        self.feeder.waiting()
    }

    /// Tasks handed to the pool so far.
    pub(super) fn fed(&self) -> usize {
        self.feeder.fed()
    }
}

impl Drop for ListRun {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Whether `action` adds, changes or submits rows: refused while a long list goes to
/// the pool (its tasks have their numbers already).
pub(super) fn changes_rows(action: &Action) -> bool {
    matches!(
        action,
        Action::AddRow
            | Action::DuplicateRow(_)
            | Action::RemoveRow(_)
            | Action::MoveRow(..)
            | Action::AddFromTemplate
            | Action::Edit(Some(_))
            | Action::SubmitPending
            | Action::SubmitRow(_)
    )
}

/// Give a run's pool the next batch of its long list, if it has room for it.
pub(super) fn feed_pool(run: &mut Run) {
    let (Some(listing), Some((executor, _))) = (run.list.as_mut(), run.pool.as_ref()) else {
        return;
    };
    match listing.feed(executor, &run.record) {
        Ok(Fed::Batch(_) | Fed::Waiting) => {}
        Ok(Fed::Done) => {
            if listing.close_when_fed {
                executor.close();
            }
            run.list = None;
        }
        // Terminated, or closed by a halt policy: the rest does not run.
        Ok(Fed::Refused) => run.list = None,
        Err(why) => {
            run.list = None;
            run.stop_for(format!("cannot write the run's journal ({why})"));
        }
    }
}

impl PoolscopeApp {
    /// Run `list` on the run just started.
    pub(super) fn start_list(&mut self, list: Arc<TaskList>, chunk: usize, ctx: &egui::Context) {
        let pool_size = self.pool_size;
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let len = list.len();
        match ListRun::start(list, chunk, pool_size, run.journal.as_ref(), ctx) {
            Ok(listing) => {
                run.list = Some(listing);
                // Tasks added later come after the list (the journal has its numbers).
                run.next_task = len as u64 + 1;
            }
            Err(e) => {
                if let Some(executor) = run.executor() {
                    executor.close();
                }
                self.error(format!("Cannot start: no thread to list the tasks: {e}"));
            }
        }
    }

    /// Close the pool: at once, or once a long list is all queued (Close means no more
    /// tasks from elsewhere, not fewer of the list's).
    pub(super) fn close_pool(&mut self) {
        if let Some(listing) = self
            .run
            .as_mut()
            .filter(|r| r.is_live())
            .and_then(|r| r.list.as_mut())
        {
            listing.close_when_fed = true;
            self.notify("The pool closes once the rest of the list is queued");
            return;
        }
        self.with_pool(|e| e.close());
    }

    /// Whether rows cannot be added or changed now, said: a long list is still going to
    /// the pool under the numbers its journal gave it.
    pub(super) fn refused_while_listing(&mut self) -> bool {
        let Some(listing) = self.live_run().and_then(|r| r.list.as_ref()) else {
            return false;
        };
        let (fed, total) = (listing.fed(), listing.fed() + listing.waiting());
        self.error(format!(
            "The list is still going to the pool ({fed} of {total} tasks queued): add or \
             change tasks once it is all queued"
        ));
        true
    }
}
