//! Rows that are not made until they are edited: a shown record's tasks, or a task
//! file's list too long to make into drafts (a template over a million values). The
//! table makes each such row for the frame it is drawn in. A long list runs the way
//! `poolscope run` runs it: a thread lists its tasks in the journal, and the pool gets
//! them a batch at a time, as the journal has them and the pool has room.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::executor::feeder::{Fed, ListFeeder};
use crate::executor::{Executor, Handle, TaskId};
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

/// A long list being run: a thread lists it in the journal and hands it to the pool
/// (making a chunk of 125 000 specs takes longer than a frame).
pub(super) struct ListRun {
    len: usize,
    shared: Arc<Shared>,
    thread: std::thread::Thread,
    /// Every task went to the pool.
    fed_all: bool,
    /// Close the pool once every task went to it (Close was pressed meanwhile).
    pub(super) close_when_fed: bool,
}

/// What the window and the listing thread tell each other.
#[derive(Default)]
struct Shared {
    /// The record's tasks, and those not over: the thread hands over the next batch
    /// once the record has the last and the pool has room.
    taken_in: AtomicUsize,
    in_flight: AtomicUsize,
    fed: AtomicUsize,
    ended: Mutex<Option<Ended>>,
    /// The run went away: the thread ends.
    stop: AtomicBool,
}

enum Ended {
    /// Every task went to the pool.
    Fed,
    /// The pool took no more (terminated, or closed by a halt policy).
    Refused,
    /// The journal could not list the tasks.
    Failed(String),
}

/// Tasks handed to the pool and not over, at most (more with chunks larger than this).
const READ_AHEAD: usize = 16 * 1024;
/// Tasks handed over at once, at least.
const BATCH: usize = 4096;
/// How long the thread sleeps when it has nothing to do and nobody woke it.
const IDLE: Duration = Duration::from_millis(100);

impl ListRun {
    /// Run `list`, in chunks of `chunk`, on `pool` (of `pool_size`), listing it first
    /// in `journal` (tasks 1, 2, …: the pool numbers them so).
    pub(super) fn start(
        list: Arc<TaskList>,
        (pool, pool_size, chunk): (Handle, usize, usize),
        journal: Option<Arc<JournalWriter>>,
        ctx: &egui::Context,
    ) -> std::io::Result<Self> {
        let len = list.len();
        let shared = Arc::new(Shared::default());
        let mut feeder = ListFeeder::new(
            Arc::clone(&list) as _,
            len,
            chunk,
            pool_size,
            READ_AHEAD,
            BATCH,
        );
        let (ctx, thread_shared) = (ctx.clone(), Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("poolscope-list".into())
            .spawn(move || {
                let shared = thread_shared;
                let mut feed = |ready: usize| loop {
                    let taken_in = shared.taken_in.load(Ordering::Acquire);
                    let in_flight = shared.in_flight.load(Ordering::Acquire);
                    match feeder.feed(&pool, taken_in, in_flight, ready) {
                        Fed::Batch(_) => {
                            shared.fed.store(feeder.fed(), Ordering::Release);
                            ctx.request_repaint();
                        }
                        Fed::Waiting => return None,
                        Fed::Done => return Some(Ended::Fed),
                        Fed::Refused => return Some(Ended::Refused),
                    }
                };
                let mut ended = None;
                if let Some(journal) = journal {
                    // Each batch goes to the pool as soon as the journal lists it.
                    let listed = journal.plan_list(TaskId(1), &*list, len, Duration::ZERO, |n| {
                        ended = feed(n);
                        ended.is_none() && !shared.stop.load(Ordering::Acquire)
                    });
                    if let Err(e) = listed {
                        ended = Some(Ended::Failed(e.to_string()));
                    }
                }
                while ended.is_none() && !shared.stop.load(Ordering::Acquire) {
                    ended = feed(len);
                    if ended.is_none() {
                        std::thread::park_timeout(IDLE);
                    }
                }
                *shared.ended.lock().unwrap_or_else(PoisonError::into_inner) = ended;
                ctx.request_repaint();
            })?
            .thread()
            .clone();
        Ok(Self {
            len,
            shared,
            thread,
            fed_all: false,
            close_when_fed: false,
        })
    }

    /// Tasks of the list the record does not have yet (handed over or not).
    pub(super) fn waiting(&self, record: &RunRecord) -> usize {
        self.len.saturating_sub(record.task_count())
    }

    /// Tasks handed to the pool so far, and the list's length.
    pub(super) fn progress(&self) -> (usize, usize) {
        (self.shared.fed.load(Ordering::Acquire), self.len)
    }
}

impl Drop for ListRun {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.unpark();
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
            | Action::AddFromInputs
            | Action::Edit(Some(_))
            | Action::SubmitPending
            | Action::SubmitRow(_)
    )
}

/// Tell a run's listing thread what the record has taken in, and act on its end.
pub(super) fn feed_pool(run: &mut Run) {
    let Some(listing) = run.list.as_mut() else {
        return;
    };
    let shared = &listing.shared;
    shared
        .taken_in
        .store(run.record.task_count(), Ordering::Release);
    shared
        .in_flight
        .store(run.record.unfinished(), Ordering::Release);
    listing.thread.unpark();
    let ended = shared
        .ended
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    match ended {
        Some(Ended::Fed) => {
            listing.fed_all = true;
            if listing.close_when_fed
                && let Some((executor, _)) = &run.pool
            {
                executor.close();
            }
        }
        // Terminated, or closed by a halt policy: the rest does not run.
        Some(Ended::Refused) => run.list = None,
        Some(Ended::Failed(why)) => {
            run.list = None;
            run.stop_for(format!("cannot write the run's journal ({why})"));
        }
        None => {}
    }
    // Kept until the record has every task, so the run never looks idle in between.
    if run
        .list
        .as_ref()
        .is_some_and(|l| l.fed_all && l.waiting(&run.record) == 0)
    {
        run.list = None;
    }
}

impl PoolscopeApp {
    /// Run `list` on the run just started.
    pub(super) fn start_list(&mut self, list: Arc<TaskList>, chunk: usize, ctx: &egui::Context) {
        let pool_size = self.pool_size;
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let Some(pool) = run.executor().map(Executor::handle) else {
            return;
        };
        let len = list.len();
        match ListRun::start(list, (pool, pool_size, chunk), run.journal.clone(), ctx) {
            Ok(listing) => {
                run.list = Some(listing);
                // A record grown by doubling would hold half as much again, twice over.
                run.record.reserve_tasks(len);
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
        let (fed, total) = listing.progress();
        self.error(format!(
            "The list is still going to the pool ({fed} of {total} tasks queued): add or \
             change tasks once it is all queued"
        ));
        true
    }
}
