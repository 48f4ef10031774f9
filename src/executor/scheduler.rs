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
    /// Slots below `size` that ran a task and are free again, lowest first, so lanes stay
    /// stable. Slots at or above `fresh` have never been used and are not stored, so
    /// memory grows with what runs, not with the pool size.
    free: BTreeSet<Slot>,
    fresh: Slot,
    busy: BTreeSet<Slot>,
    paused: bool,
    /// The most the machine lets run now (file descriptors, processes), when that is
    /// fewer than `size`.
    cap: Option<usize>,
}

impl<T> Scheduler<T> {
    pub fn new(size: usize) -> Self {
        Self {
            size: size.max(1),
            queue: VecDeque::new(),
            free: BTreeSet::new(),
            fresh: 0,
            busy: BTreeSet::new(),
            paused: false,
            cap: None,
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

    /// Put an item back at the head of the queue (it could not start yet).
    pub fn push_front(&mut self, item: T) {
        self.queue.push_front(item);
    }

    /// At most `cap` run at once, whatever the size (`None`: the size alone).
    pub fn set_cap(&mut self, cap: Option<usize>) {
        self.cap = cap.filter(|&c| c < self.size);
    }

    pub fn cap(&self) -> Option<usize> {
        self.cap
    }

    /// Take the whole queue (terminate, halt).
    pub fn drain_queue(&mut self) -> Vec<T> {
        self.queue.drain(..).collect()
    }

    /// Take the first queued item that matches, wherever it waits (a queued task
    /// killed by its user).
    pub fn remove_queued(&mut self, matches: impl Fn(&T) -> bool) -> Option<T> {
        let at = self.queue.iter().position(matches)?;
        self.queue.remove(at)
    }

    /// Take the next queued item if it matches, without taking a slot (the rest of a
    /// chunk whose first item just got one).
    pub fn take_next_if(&mut self, matches: impl Fn(&T) -> bool) -> Option<T> {
        if self.queue.front().is_some_and(matches) {
            self.queue.pop_front()
        } else {
            None
        }
    }

    /// The lowest free slot below `size`.
    fn lowest_free(&mut self) -> Option<Slot> {
        // Never-used slots can still be busy after a shrink and a regrow: skip those.
        while self.fresh < self.size && self.busy.contains(&self.fresh) {
            self.fresh += 1;
        }
        let fresh = (self.fresh < self.size).then_some(self.fresh);
        match (self.free.first().copied(), fresh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next task to start and the slot it gets, if a slot is free and dispatch is on.
    pub fn start_next(&mut self) -> Option<(T, Slot)> {
        let limit = self.cap.unwrap_or(self.size).min(self.size);
        if self.paused || self.busy.len() >= limit || self.queue.is_empty() {
            return None;
        }
        let slot = self.lowest_free()?;
        let item = self.queue.pop_front()?;
        if !self.free.remove(&slot) {
            self.fresh = slot + 1;
        }
        self.busy.insert(slot);
        Some((item, slot))
    }

    /// A task on `slot` is over. A slot above a shrunken size is retired, not reused.
    pub fn release(&mut self, slot: Slot) {
        if self.busy.remove(&slot) && slot < self.size {
            if slot + 1 == self.fresh {
                // Give the top slot back to the never-used range: keeps `free` small.
                self.fresh = slot;
                while self.fresh > 0 && self.free.remove(&(self.fresh - 1)) {
                    self.fresh -= 1;
                }
            } else {
                self.free.insert(slot);
            }
        }
    }

    /// Change the pool size. Running tasks are never touched: shrinking only stops
    /// refilling slots until fewer than `size` run.
    pub fn resize(&mut self, size: usize) {
        let size = size.max(1);
        self.size = size;
        self.free.retain(|&s| s < size);
        self.fresh = self.fresh.min(size);
        // Slots below the new size that are neither busy nor free nor fresh (retired
        // by an earlier shrink) become free again.
        let retired: Vec<Slot> = (0..self.fresh)
            .filter(|s| !self.busy.contains(s) && !self.free.contains(s))
            .collect();
        self.free.extend(retired);
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
    fn a_huge_pool_costs_no_memory_until_it_runs_tasks() {
        let mut s = Scheduler::new(100_000_000);
        for i in 0..3 {
            s.push(i);
        }
        assert_eq!(start_all(&mut s), vec![(0, 0), (1, 1), (2, 2)]);
        s.release(1);
        s.push(3);
        assert_eq!(
            start_all(&mut s),
            vec![(3, 1)],
            "the lowest free slot is reused"
        );
        assert!(s.free.len() + s.busy.len() <= 3);
    }

    #[test]
    fn shrink_then_grow_never_hands_out_a_busy_slot() {
        let mut s = Scheduler::new(4);
        for i in 0..10 {
            s.push(i);
        }
        assert_eq!(start_all(&mut s).len(), 4);
        s.resize(1);
        s.release(0);
        s.resize(4);
        let started = start_all(&mut s);
        assert_eq!(started, vec![(4, 0)], "slots 1..3 are still busy");
        s.release(2);
        assert_eq!(start_all(&mut s), vec![(5, 2)]);
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

    #[test]
    fn a_machine_cap_holds_starts_below_the_size_and_an_item_goes_back_first() {
        let mut s = Scheduler::new(4);
        for i in 0..6 {
            s.push(i);
        }
        let first = start_all(&mut s);
        assert_eq!(first.len(), 4);
        // The fourth could not start after all: back at the head, at most 3 for now.
        let (item, slot) = first[3];
        s.release(slot);
        s.push_front(item);
        s.set_cap(Some(3));
        assert!(s.start_next().is_none(), "three run: the cap is reached");
        s.release(first[0].1);
        assert_eq!(
            s.start_next().map(|(i, _)| i),
            Some(3),
            "the same item is next"
        );
        // A cap at or above the size is no cap.
        s.set_cap(Some(4));
        assert_eq!(s.cap(), None);
    }
}
