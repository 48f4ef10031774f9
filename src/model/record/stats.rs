//! Numbers about a run as a whole: running and waiting counts over time, makespan,
//! utilisation, queue wait.

use std::time::Duration;

use super::run::{RunRecord, TaskState};

/// A step of the concurrency graph: from `at` on, this many run and this many wait.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    pub at: f64,
    pub running: u32,
    pub waiting: u32,
}

/// Running and waiting counts over time: kept by the record while it is built from
/// events, computed from its tasks otherwise.
pub fn levels(record: &RunRecord, now: Duration) -> std::borrow::Cow<'_, [Level]> {
    match record.live_stats() {
        Some(live) => std::borrow::Cow::Borrowed(&live.levels),
        None => std::borrow::Cow::Owned(concurrency(record, now)),
    }
}

/// The most tasks running at once in `levels`.
pub fn max_running(levels: &[Level]) -> usize {
    levels
        .iter()
        .map(|level| level.running as usize)
        .max()
        .unwrap_or(0)
}

/// Running and waiting counts over time, one step per change, from the tasks (read by
/// position: done tasks are not made whole).
pub fn concurrency(record: &RunRecord, now: Duration) -> Vec<Level> {
    // Each change is one u64: nanoseconds above, what changes in the two low bits, so
    // a million tasks' four changes sort as plain integers in 32 MB.
    const WAIT: u64 = 0;
    const WAITED: u64 = 1;
    const START: u64 = 2;
    const END: u64 = 3;
    let edge = |at: Duration, what: u64| {
        (u64::try_from(at.as_nanos())
            .unwrap_or(u64::MAX >> 2)
            .min(u64::MAX >> 2)
            << 2)
            | what
    };
    let mut edges: Vec<u64> = Vec::with_capacity(record.task_count() * 4);
    for i in 0..record.task_count() {
        let (Some(queued), Some(state)) = (record.queued_at(i), record.state_at(i)) else {
            continue;
        };
        let attempts = record.attempts_at(i);
        let first_start = attempts.iter().find(|a| a.ran()).map(|a| a.started);
        let wait_end = match (&*state, first_start) {
            (_, Some(start)) => Some(start),
            (TaskState::Queued, None) => None,
            // Cancelled or failed to start: it stopped waiting when it was settled.
            (_, None) => attempts.last().and_then(|a| a.ended).or(Some(queued)),
        };
        edges.push(edge(queued, WAIT));
        if let Some(end) = wait_end {
            edges.push(edge(end, WAITED));
        }
        for a in attempts.iter().filter(|a| a.ran()) {
            edges.push(edge(a.started, START));
            edges.push(edge(a.ended.unwrap_or(now), END));
        }
    }
    // Changes at one instant end as one step: their order among themselves is moot.
    edges.sort_unstable();
    let mut levels: Vec<Level> = Vec::with_capacity(edges.len() / 2 + 1);
    let (mut running, mut waiting) = (0i64, 0i64);
    for e in edges {
        match e & 3 {
            WAIT => waiting += 1,
            WAITED => waiting -= 1,
            START => running += 1,
            _ => running -= 1,
        }
        let level = Level {
            at: Duration::from_nanos(e >> 2).as_secs_f64(),
            running: u32::try_from(running.max(0)).unwrap_or(u32::MAX),
            waiting: u32::try_from(waiting.max(0)).unwrap_or(u32::MAX),
        };
        match levels.last_mut() {
            Some(last) if (last.at - level.at).abs() < 1e-9 => *last = level,
            _ => levels.push(level),
        }
    }
    levels
}

/// Values kept exactly before the median is estimated from a histogram instead.
const EXACT_VALUES: usize = 10_000;
/// Histogram buckets grow by this ratio: the estimated median is within half a percent.
const BUCKET_RATIO: f64 = 1.01;

/// The median of a growing set: exact (two heaps, O(log n) per value) for the first
/// [`EXACT_VALUES`], then from a log-scale histogram in constant memory (a million
/// finished tasks cost a few kilobytes, not 16 MB).
#[derive(Clone, Debug, Default)]
pub struct RunningMedian {
    /// The smaller half (largest on top).
    low: std::collections::BinaryHeap<Duration>,
    /// The larger half (smallest on top).
    high: std::collections::BinaryHeap<std::cmp::Reverse<Duration>>,
    /// Counts per bucket of nanoseconds, once past the exact values.
    buckets: Vec<u64>,
    counted: u64,
}

fn bucket_of(value: Duration) -> usize {
    let nanos = value.as_nanos() as f64;
    if nanos < 1.0 {
        0
    } else {
        1 + (nanos.ln() / BUCKET_RATIO.ln()) as usize
    }
}

fn bucket_middle(bucket: usize) -> Duration {
    if bucket == 0 {
        return Duration::ZERO;
    }
    let low = BUCKET_RATIO.powf((bucket - 1) as f64);
    Duration::from_nanos((low * BUCKET_RATIO.sqrt()) as u64)
}

impl RunningMedian {
    pub fn push(&mut self, value: Duration) {
        if self.counted > 0 {
            self.count(value);
            return;
        }
        if self.low.len() + self.high.len() >= EXACT_VALUES {
            let values: Vec<Duration> = self
                .low
                .drain()
                .chain(self.high.drain().map(|r| r.0))
                .collect();
            self.low = std::collections::BinaryHeap::new();
            self.high = std::collections::BinaryHeap::new();
            for v in values {
                self.count(v);
            }
            self.count(value);
            return;
        }
        if self.low.peek().is_none_or(|&top| value <= top) {
            self.low.push(value);
        } else {
            self.high.push(std::cmp::Reverse(value));
        }
        // Keep `high` equal to `low` or one larger, so its top is the upper median.
        if self.low.len() > self.high.len() {
            if let Some(v) = self.low.pop() {
                self.high.push(std::cmp::Reverse(v));
            }
        } else if self.high.len() > self.low.len() + 1
            && let Some(std::cmp::Reverse(v)) = self.high.pop()
        {
            self.low.push(v);
        }
    }

    fn count(&mut self, value: Duration) {
        let bucket = bucket_of(value);
        if self.buckets.len() <= bucket {
            self.buckets.resize(bucket + 1, 0);
        }
        self.buckets[bucket] += 1;
        self.counted += 1;
    }

    /// The element at position `len / 2` of the sorted values (past the exact ones,
    /// the middle of its histogram bucket).
    pub fn median(&self) -> Option<Duration> {
        if self.counted == 0 {
            return self.high.peek().map(|r| r.0);
        }
        let mut seen = 0;
        for (bucket, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen > self.counted / 2 {
                return Some(bucket_middle(bucket));
            }
        }
        None
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// First start to last end.
    pub makespan: Duration,
    pub max_concurrency: usize,
    /// Busy slot time over (makespan × pool size), 0..1.
    pub utilisation: f64,
    /// Sum over tasks of (first start − submitted).
    pub total_queue_wait: Duration,
}

/// The summary from statistics kept event by event: no pass over the tasks.
fn live_summary(record: &RunRecord, live: &super::run::LiveStats, now: Duration) -> Summary {
    let (first, last) = (live.first_start, live.last(now));
    let makespan = match (first, last) {
        (Some(f), Some(l)) => l.saturating_sub(f),
        _ => Duration::ZERO,
    };
    let capacity = capacity(record, first, last);
    Summary {
        makespan,
        max_concurrency: live.max_running as usize,
        utilisation: if capacity > 0.0 {
            (live.busy(now).as_secs_f64() / capacity).min(1.0)
        } else {
            0.0
        },
        total_queue_wait: live.total_queue_wait,
    }
}

/// Slot-seconds the pool offered between `first` and `last`, following its resizes.
fn capacity(record: &RunRecord, first: Option<Duration>, last: Option<Duration>) -> f64 {
    let mut capacity = 0.0;
    if let (Some(f), Some(l)) = (first, last) {
        let sizes = &record.pool_sizes;
        for (i, &(at, size)) in sizes.iter().enumerate() {
            let from = at.max(f);
            let to = sizes.get(i + 1).map_or(l, |&(next, _)| next.min(l));
            if to > from {
                capacity += to.saturating_sub(from).as_secs_f64() * size as f64;
            }
        }
    }
    capacity
}

pub fn summary(record: &RunRecord, now: Duration) -> Summary {
    if let Some(live) = record.live_stats() {
        return live_summary(record, live, now);
    }
    summary_of(record, now, record.max_concurrency())
}

/// [`summary`] of a record whose levels are at hand (their peak is its concurrency).
pub fn summary_with(record: &RunRecord, now: Duration, levels: &[Level]) -> Summary {
    if let Some(live) = record.live_stats() {
        return live_summary(record, live, now);
    }
    summary_of(record, now, max_running(levels))
}

fn summary_of(record: &RunRecord, now: Duration, max_concurrency: usize) -> Summary {
    let attempts = || {
        record
            .attempts()
            .map(|(_, a)| a)
            .filter(super::run::Attempt::ran)
    };
    let first = attempts().map(|a| a.started).min();
    let last = attempts().map(|a| a.ended.unwrap_or(now)).max();
    let makespan = match (first, last) {
        (Some(f), Some(l)) => l.saturating_sub(f),
        _ => Duration::ZERO,
    };
    let busy: Duration = attempts().map(|a| a.runtime(now)).sum();
    // The pool size in force over the run, weighted by how long it held.
    let capacity = capacity(record, first, last);
    let total_queue_wait = (0..record.task_count())
        .filter_map(|i| {
            let queued = record.queued_at(i)?;
            record
                .attempts_at(i)
                .iter()
                .find(|a| a.ran())
                .map(|a| a.started.saturating_sub(queued))
        })
        .sum();
    Summary {
        makespan,
        max_concurrency,
        utilisation: if capacity > 0.0 {
            (busy.as_secs_f64() / capacity).min(1.0)
        } else {
            0.0
        },
        total_queue_wait,
    }
}

#[cfg(test)]
mod median_tests {
    use super::*;

    #[test]
    fn the_running_median_matches_sorting() {
        let values = [5u64, 1, 9, 3, 3, 7, 2, 8, 6, 4, 0];
        let mut m = RunningMedian::default();
        for (n, &v) in values.iter().enumerate() {
            m.push(Duration::from_millis(v));
            let mut sorted: Vec<u64> = values[..=n].to_vec();
            sorted.sort_unstable();
            assert_eq!(
                m.median(),
                Some(Duration::from_millis(sorted[sorted.len() / 2]))
            );
        }
    }

    #[test]
    fn past_the_exact_values_the_median_stays_within_a_percent() {
        let mut m = RunningMedian::default();
        // 1..=100 000 µs in a shuffled order: the median is 50 001 µs.
        let n = 100_000u64;
        for i in 0..n {
            m.push(Duration::from_micros(1 + (i * 7919) % n));
        }
        let median = m.median().expect("values").as_secs_f64();
        assert!((median / 0.050_001 - 1.0).abs() < 0.01, "median {median} s");
        assert!(
            m.low.is_empty() && m.high.is_empty(),
            "the values are not kept"
        );
    }
}
