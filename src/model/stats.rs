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

/// Running and waiting counts over time, one step per change, from the tasks.
pub fn concurrency(record: &RunRecord, now: Duration) -> Vec<Level> {
    // (time, Δrunning, Δwaiting)
    let mut edges: Vec<(Duration, i32, i32)> = Vec::new();
    for task in record.tasks() {
        let first_start = task.attempts.iter().find(|a| a.ran()).map(|a| a.started);
        let wait_end = match (&task.state, first_start) {
            (_, Some(start)) => Some(start),
            (TaskState::Queued, None) => None,
            // Cancelled or failed to start: it stopped waiting when it was settled.
            (_, None) => task
                .attempts
                .last()
                .and_then(|a| a.ended)
                .or(Some(task.queued)),
        };
        edges.push((task.queued, 0, 1));
        if let Some(end) = wait_end {
            edges.push((end, 0, -1));
        }
        for a in task.attempts.iter().filter(|a| a.ran()) {
            edges.push((a.started, 1, 0));
            edges.push((a.ended.unwrap_or(now), -1, 0));
        }
    }
    edges.sort_by_key(|e| e.0);
    let mut levels: Vec<Level> = Vec::with_capacity(edges.len() / 2 + 1);
    let (mut running, mut waiting) = (0i32, 0i32);
    for (at, dr, dw) in edges {
        running += dr;
        waiting += dw;
        let level = Level {
            at: at.as_secs_f64(),
            running: running.max(0) as u32,
            waiting: waiting.max(0) as u32,
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
    let total_queue_wait = record
        .tasks()
        .filter_map(|t| {
            t.attempts
                .iter()
                .find(|a| a.ran())
                .map(|a| a.started.saturating_sub(t.queued))
        })
        .sum();
    Summary {
        makespan,
        max_concurrency: record.max_concurrency(),
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
