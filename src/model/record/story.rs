//! A watched pool in plain words: how many workers, which PID ran more than one task,
//! who waited longest for a free worker, and when tasks started against `close()`,
//! the seed's own questions, answered from the record.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::run::RunRecord;

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// How many task names a sentence lists before it says "…" (a map may have 100 000).
const NAMES_SHOWN: usize = 3;
/// How many PIDs a sentence lists.
const PIDS_SHOWN: usize = 8;

/// What one process ran: how many tasks, and the names of the first few.
#[derive(Default)]
struct Ran {
    count: usize,
    first: Vec<String>,
}

impl Ran {
    fn describe(&self) -> String {
        let more = if self.count > self.first.len() {
            ", …"
        } else {
            ""
        };
        if self.count > NAMES_SHOWN {
            format!("{} tasks ({}{more})", self.count, self.first.join(", "))
        } else {
            self.first.join(", ")
        }
    }
}

/// The first `limit` items joined by `sep`, then how many were left out.
fn listed<T: ToString>(items: impl ExactSizeIterator<Item = T>, limit: usize, sep: &str) -> String {
    let total = items.len();
    let mut text = items
        .take(limit)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(sep);
    if total > limit {
        let _ = write!(text, " and {} more", total - limit);
    }
    text
}

/// Sentences about the run's pool; empty for a run with no task that started.
pub fn pool_story(record: &RunRecord) -> Vec<String> {
    let mut by_pid: BTreeMap<u32, Ran> = BTreeMap::new();
    let mut first_start: Option<Duration> = None;
    let mut longest_wait: Option<(Duration, usize)> = None;
    // Read by position: a done task is not made whole (its spec decoded) for its times.
    let name_at = |i| {
        record
            .task_at(i)
            .map(|t| t.spec.name.clone())
            .unwrap_or_default()
    };
    for i in 0..record.task_count() {
        let attempts = record.attempts_at(i);
        let Some(a) = attempts.first() else {
            continue;
        };
        if let Some(pid) = a.pid {
            let ran = by_pid.entry(pid).or_default();
            ran.count += 1;
            if ran.first.len() < NAMES_SHOWN {
                ran.first.push(name_at(i));
            }
        }
        first_start = Some(first_start.map_or(a.started, |f| f.min(a.started)));
        let wait = a
            .started
            .saturating_sub(record.queued_at(i).unwrap_or_default());
        if longest_wait.as_ref().is_none_or(|(w, _)| wait > *w) {
            longest_wait = Some((wait, i));
        }
    }
    let longest_wait = longest_wait.map(|(wait, i)| (wait, name_at(i)));
    let Some(first_start) = first_start else {
        return Vec::new();
    };
    let mut story = vec![format!(
        "{} tasks ran on {} processes ({})",
        by_pid.values().map(|r| r.count).sum::<usize>(),
        by_pid.len(),
        listed(by_pid.keys(), PIDS_SHOWN, ", ")
    )];
    let reused: Vec<String> = by_pid
        .iter()
        .filter(|(_, ran)| ran.count > 1)
        .map(|(pid, ran)| format!("PID {pid} ran {}", ran.describe()))
        .collect();
    if !reused.is_empty() {
        story.push(format!(
            "workers are reused: {}",
            listed(reused.iter(), PIDS_SHOWN / 2, "; ")
        ));
    }
    if let Some((wait, task)) = longest_wait
        && wait >= Duration::from_millis(5)
    {
        story.push(format!("{task} waited {} for a free worker", secs(wait)));
    }
    if let Some((close, _)) = record.markers.iter().find(|(_, l)| l.ends_with("close()")) {
        let gap = first_start.abs_diff(*close);
        story.push(if gap < Duration::from_millis(5) {
            "the first task started as close() was called: tasks start as soon as a worker \
             is free, close() or not"
                .to_owned()
        } else if first_start < *close {
            format!(
                "the first task started {} before close(): tasks do not wait for it",
                secs(gap)
            )
        } else {
            format!(
                "the first task started {} after close(), while the workers were starting",
                secs(gap)
            )
        });
    }
    story
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_map_is_summed_up_not_listed() {
        let ran = Ran {
            count: 50_000,
            first: vec!["f(0)".into(), "f(1)".into(), "f(2)".into()],
        };
        assert_eq!(ran.describe(), "50000 tasks (f(0), f(1), f(2), …)");
        let two = Ran {
            count: 2,
            first: vec!["f(0)".into(), "f(4)".into()],
        };
        assert_eq!(two.describe(), "f(0), f(4)");
        assert_eq!(
            listed(1..11u32, 8, ", "),
            "1, 2, 3, 4, 5, 6, 7, 8 and 2 more"
        );
    }
}
