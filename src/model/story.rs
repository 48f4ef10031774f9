//! A watched pool in plain words: how many workers, which PID ran more than one task,
//! who waited longest for a free worker, and when tasks started against `close()`,
//! the seed's own questions, answered from the record.

use std::collections::BTreeMap;
use std::time::Duration;

use super::run::RunRecord;

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// Sentences about the run's pool; empty for a run with no task that started.
pub fn pool_story(record: &RunRecord) -> Vec<String> {
    let mut by_pid: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    let mut first_start: Option<Duration> = None;
    let mut longest_wait: Option<(Duration, &str)> = None;
    for task in &record.tasks {
        let Some(a) = task.attempts.first() else {
            continue;
        };
        if let Some(pid) = a.pid {
            by_pid.entry(pid).or_default().push(task.spec.name.as_str());
        }
        first_start = Some(first_start.map_or(a.started, |f| f.min(a.started)));
        let wait = a.started.saturating_sub(task.queued);
        if longest_wait.is_none_or(|(w, _)| wait > w) {
            longest_wait = Some((wait, task.spec.name.as_str()));
        }
    }
    let Some(first_start) = first_start else {
        return Vec::new();
    };
    let mut story = vec![format!(
        "{} tasks ran on {} processes ({})",
        by_pid.values().map(Vec::len).sum::<usize>(),
        by_pid.len(),
        by_pid
            .keys()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )];
    let reused: Vec<String> = by_pid
        .iter()
        .filter(|(_, tasks)| tasks.len() > 1)
        .map(|(pid, tasks)| format!("PID {pid} ran {}", tasks.join(", ")))
        .collect();
    if !reused.is_empty() {
        story.push(format!("workers are reused: {}", reused.join("; ")));
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
