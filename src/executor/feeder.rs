//! A long list handed to the pool a batch at a time, as it runs: the pool keeps only
//! where each waiting task came from, and the specs of a batch live only until the
//! record has taken in its `Queued` events. `poolscope run` and the window both feed a
//! task file's list this way, so a million tasks are never a million specs at once.

use std::sync::Arc;

use super::{Handle, TaskMaker, TaskSpec};

/// Where a list's handing-over stands.
pub struct ListFeeder {
    maker: Arc<dyn TaskMaker>,
    len: usize,
    /// The next task to hand over (the tasks before it went to the pool).
    next: usize,
    chunk: usize,
    /// Tasks handed over at once: whole chunks.
    batch: usize,
    /// Tasks handed over and not over, at most.
    limit: usize,
}

/// What one [`ListFeeder::feed`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// This many tasks went to the pool.
    Batch(usize),
    /// Nothing now: the pool has enough waiting, or the last batch is not taken in yet.
    Waiting,
    /// Every task of the list went to the pool.
    Done,
    /// The pool takes no more (it was closed, or a halt policy closed it).
    Refused,
}

impl ListFeeder {
    /// `len` tasks of `maker`, in chunks of `chunk_size` (whole chunks go together),
    /// keeping at most `read_ahead` (or enough to give each of `pool_size` slots a
    /// chunk and one more) handed over and not over, `batch` or more at a time.
    pub fn new(
        maker: Arc<dyn TaskMaker>,
        len: usize,
        chunk_size: usize,
        pool_size: usize,
        read_ahead: usize,
        batch: usize,
    ) -> Self {
        let chunk = chunk_size.max(1);
        Self {
            maker,
            len,
            next: 0,
            chunk,
            batch: chunk.saturating_mul(batch.div_ceil(chunk).max(1)),
            limit: read_ahead.max((pool_size + 1).saturating_mul(chunk)),
        }
    }

    /// Tasks in the list.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tasks handed to the pool so far.
    pub fn fed(&self) -> usize {
        self.next
    }

    /// Hand over the next batch if there is room: `taken_in` of the tasks handed over
    /// so far are in the record (a batch goes only once the last is, so its specs are
    /// let go of first), `in_flight` are not over, and only the first `ready` tasks of
    /// the list may go (those the journal lists already).
    pub fn feed(&mut self, pool: &Handle, taken_in: usize, in_flight: usize, ready: usize) -> Fed {
        if self.next >= self.len {
            return Fed::Done;
        }
        let end = self.len.min(self.next + self.batch);
        if in_flight >= self.limit || taken_in < self.next || ready < end {
            return Fed::Waiting;
        }
        let batch: Vec<Arc<TaskSpec>> = (self.next..end)
            .map(|i| Arc::new(self.maker.make(i)))
            .collect();
        match pool.submit_map_from(Arc::clone(&self.maker), self.next, batch, self.chunk) {
            Ok(_) => {
                let count = end - self.next;
                self.next = end;
                Fed::Batch(count)
            }
            Err(_) => Fed::Refused,
        }
    }
}
