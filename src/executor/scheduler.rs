//! Which queued task starts next, and on which slot. Pure bookkeeping, no processes, so
//! the pool rules (FIFO, never more than `size` running, resize never kills) are tested
//! on their own.

use std::collections::{BTreeSet, VecDeque};

/// A slot is a worker position `0..size`; the task sees it as `POOLSCOPE_SLOT`.
pub type Slot = usize;

#[derive(Debug)]
pub struct Scheduler<T> {
    size: usize,
    queue: VecDeque<T>,
    /// Free slots below `size`, lowest first, so lanes stay stable.
    free: BTreeSet<Slot>,
    busy: BTreeSet<Slot>,
    paused: bool,
}

impl<T> Scheduler<T> {
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        Self {
            size,
            queue: VecDeque::new(),
            free: (0..size).collect(),
            busy: BTreeSet::new(),
            paused: false,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn running(&self) -> usize {
        self.busy.len()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    pub fn push(&mut self, item: T) {
        self.queue.push_back(item);
    }

    /// Take the whole queue (terminate, halt).
    pub fn drain_queue(&mut self) -> Vec<T> {
        self.queue.drain(..).collect()
    }

    /// The next task to start and the slot it gets, if a slot is free and dispatch is on.
    pub fn start_next(&mut self) -> Option<(T, Slot)> {
        if self.paused || self.busy.len() >= self.size {
            return None;
        }
        let slot = *self.free.first()?;
        let item = self.queue.pop_front()?;
        self.free.remove(&slot);
        self.busy.insert(slot);
        Some((item, slot))
    }

    /// A task on `slot` is over. A slot above a shrunken size is retired, not reused.
    pub fn release(&mut self, slot: Slot) {
        if self.busy.remove(&slot) && slot < self.size {
            self.free.insert(slot);
        }
    }

    /// Change the pool size. Running tasks are never touched: shrinking only stops
    /// refilling slots until fewer than `size` run.
    pub fn resize(&mut self, size: usize) {
        let size = size.max(1);
        self.size = size;
        self.free.retain(|&s| s < size);
        for slot in 0..size {
            if !self.busy.contains(&slot) {
                self.free.insert(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_all<T>(s: &mut Scheduler<T>) -> Vec<(T, Slot)> {
        std::iter::from_fn(|| s.start_next()).collect()
    }

    #[test]
    fn fifo_and_never_more_than_size() {
        let mut s = Scheduler::new(3);
        for i in 0..5 {
            s.push(i);
        }
        let started = start_all(&mut s);
        assert_eq!(started, vec![(0, 0), (1, 1), (2, 2)]);
        assert_eq!(s.running(), 3);
        s.release(1);
        assert_eq!(start_all(&mut s), vec![(3, 1)]);
    }

    #[test]
    fn shrinking_keeps_running_tasks_and_retires_high_slots() {
        let mut s = Scheduler::new(4);
        for i in 0..10 {
            s.push(i);
        }
        assert_eq!(start_all(&mut s).len(), 4);
        s.resize(2);
        assert_eq!(s.running(), 4, "shrinking never stops a running task");
        s.release(3);
        assert!(
            s.start_next().is_none(),
            "3 still running, over the new size of 2"
        );
        s.release(2);
        assert!(s.start_next().is_none());
        s.release(0);
        assert_eq!(s.start_next(), Some((4, 0)));
    }

    #[test]
    fn growing_starts_queued_tasks_at_once() {
        let mut s = Scheduler::new(1);
        for i in 0..3 {
            s.push(i);
        }
        assert_eq!(start_all(&mut s), vec![(0, 0)]);
        s.resize(3);
        assert_eq!(start_all(&mut s), vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn paused_pool_starts_nothing() {
        let mut s = Scheduler::new(2);
        s.push(1);
        s.set_paused(true);
        assert!(s.start_next().is_none());
        s.set_paused(false);
        assert_eq!(s.start_next(), Some((1, 0)));
    }
}
