//! What each running task costs: CPU time and resident memory of its whole process
//! group, sampled from `/proc` a few times a second by one thread for all tasks.
//!
//! A group's CPU time is the sum, over its live processes, of their own time and the time
//! of the children they have reaped (`utime + stime + cutime + cstime`), so work done by
//! short-lived grandchildren counts once. Its memory is the sum of their resident sets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::TaskId;
use super::event::UsageSample;
use super::report::{Remote, Report};
use super::stoppable::StoppableThread;

/// How often running tasks are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

type Watched = HashMap<i32, (TaskId, u32)>;

/// The sampling thread and the process groups it watches.
pub(crate) struct Sampler {
    watched: Arc<Mutex<Watched>>,
    /// Where the samples go; taken when the thread starts.
    remote: Option<Remote>,
    /// Started once a group has been watched for a whole [`SAMPLE_EVERY`] (a run of
    /// short tasks never pays for it); stopped and joined when the sampler is dropped.
    thread: Option<StoppableThread>,
    /// When the thread is due to start: a round after the first group was watched.
    due: Option<Instant>,
}

impl Sampler {
    /// Sample once there is something to watch; each round's samples go to the
    /// dispatcher as a report.
    pub(crate) fn start(remote: Remote) -> Self {
        Self {
            watched: Arc::new(Mutex::new(Watched::new())),
            remote: Some(remote),
            thread: None,
            due: None,
        }
    }

    /// When the dispatcher should call [`Self::start_if_due`].
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Start sampling if a round has passed since a group was first watched and some
    /// group still is; with none left, wait for the next.
    pub(crate) fn start_if_due(&mut self, now: Instant) {
        if self.due.is_some_and(|due| due <= now) {
            self.due = None;
            let watching = !self
                .watched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty();
            if watching {
                self.start_thread();
            }
        }
    }

    fn start_thread(&mut self) {
        let Some(remote) = self.remote.take() else {
            return;
        };
        let thread_watched = Arc::clone(&self.watched);
        let thread = StoppableThread::spawn("poolscope-usage", move |rounds| {
            let clock = Clock::new();
            // At once (a round has passed since the first group came), then at a fixed
            // pace, cut short when the pool ends.
            loop {
                let groups = thread_watched
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if !groups.is_empty() {
                    let samples = sample(&groups, &clock);
                    if !samples.is_empty() {
                        remote.report(Report::Usage { samples });
                    }
                }
                if !rounds.wait(SAMPLE_EVERY) {
                    break;
                }
            }
        })
        .inspect_err(|e| log::warn!("no CPU and memory figures per task: {e}"))
        .ok();
        self.thread = thread;
    }

    pub(crate) fn watch(&mut self, pgid: i32, task: TaskId, attempt: u32) {
        if self.remote.is_some() && self.due.is_none() {
            self.due = Instant::now().checked_add(SAMPLE_EVERY);
        }
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pgid, (task, attempt));
    }

    pub(crate) fn unwatch(&self, task: TaskId, attempt: u32) {
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, &mut t| t != (task, attempt));
    }
}

/// The units `/proc` counts in.
struct Clock {
    ticks_per_second: u64,
    page_size: u64,
}

impl Clock {
    fn new() -> Self {
        Self {
            ticks_per_second: rustix::param::clock_ticks_per_second().max(1),
            page_size: rustix::param::page_size() as u64,
        }
    }
}

/// One pass over `/proc`: each watched group's CPU time and resident memory.
fn sample(groups: &Watched, clock: &Clock) -> Vec<UsageSample> {
    let mut totals: HashMap<i32, (u64, u64)> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut stat = String::with_capacity(512);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        stat.clear();
        let path = format!("/proc/{pid}/stat");
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        if std::io::Read::read_to_string(&mut file, &mut stat).is_err() {
            continue;
        }
        if let Some((pgrp, ticks, pages)) = parse_stat(&stat)
            && groups.contains_key(&pgrp)
        {
            let total = totals.entry(pgrp).or_default();
            total.0 += ticks;
            total.1 += pages;
        }
    }
    totals
        .into_iter()
        .filter_map(|(pgrp, (ticks, pages))| {
            let &(task, attempt) = groups.get(&pgrp)?;
            Some(UsageSample {
                task,
                attempt,
                cpu: Duration::from_nanos(ticks * 1_000_000_000 / clock.ticks_per_second),
                rss: pages * clock.page_size,
            })
        })
        .collect()
}

/// From a `/proc/PID/stat` line: its process group, its CPU ticks (own and reaped
/// children's) and its resident pages.
fn parse_stat(stat: &str) -> Option<(i32, u64, u64)> {
    // The command name is in parentheses and may hold spaces: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) … utime(14) stime(15) cutime(16)
    // cstime(17) … rss(24), numbered as in proc(5).
    let field = |n: usize| fields.get(n - 3).copied();
    let pgrp = field(5)?.parse().ok()?;
    let ticks = [14, 15, 16, 17]
        .iter()
        .map(|&n| field(n).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0))
        .sum();
    let pages = field(24)?.parse().ok()?;
    Some((pgrp, ticks, pages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_its_name_parses() {
        let stat = "4242 (my (odd) prog) S 1 4240 4240 0 -1 4194304 100 0 0 0 \
                    7 3 2 1 20 0 1 0 500 10000000 321 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((4240, 13, 321)));
    }

    #[test]
    fn this_process_is_found_in_its_own_group() {
        let me = rustix::process::getpgrp().as_raw_nonzero().get();
        let groups = Watched::from([(me, (TaskId(1), 1))]);
        // Burn a little CPU so there is something to count.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let samples = sample(&groups, &Clock::new());
        assert_eq!(samples.len(), 1);
        assert!(samples[0].rss > 0);
    }
}
