//! The timeline at 100 000 and 1 000 000 tasks: what it draws is bounded by the view's
//! width, not by the tasks (a count of shapes, which a fast machine cannot fake), and
//! merging loses no task and names the exact one under the pointer.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use poolscope::model::RunRecord;
use poolscope::ui::timeline::layout::{LaneIndex, LaneMode, TimeView, layout};

const WIDTH: f32 = 1600.0;
const POOL: usize = 8;

fn views(record: &RunRecord) -> [(&'static str, TimeView); 3] {
    let total = record.last_event.as_secs_f64();
    let middle = total * 0.5;
    [
        ("zoomed out", TimeView::fit(total)),
        (
            "zoomed in to 0.5%",
            TimeView {
                start: middle,
                end: middle + total * 0.005,
            },
        ),
        (
            "zoomed in to 0.1 s",
            TimeView {
                start: middle,
                end: middle + 0.1,
            },
        ),
    ]
}

fn check_bounded(record: &RunRecord) {
    let n = record.task_count();
    let now = record.last_event;
    for mode in LaneMode::ALL {
        for (name, view) in views(record) {
            // The lanes a window shows: all of them by slot, PID or host; by task, a
            // screenful of rows (those that ran mid-run, where the views look).
            let shown = if mode == LaneMode::Task {
                n / 2..n / 2 + 60
            } else {
                0..usize::MAX
            };
            let out = layout(record, now, mode, view, WIDTH, shown);
            let mut per_lane: HashMap<usize, usize> = HashMap::new();
            for lane in out
                .bars
                .iter()
                .map(|b| b.lane)
                .chain(out.chunks.iter().map(|c| c.lane))
                .chain(out.workers.iter().map(|w| w.lane))
            {
                *per_lane.entry(lane).or_default() += 1;
            }
            let busiest = per_lane.values().copied().max().unwrap_or(0);
            assert!(
                busiest <= WIDTH as usize,
                "{n} tasks {} {name}: {busiest} shapes in one lane {WIDTH} px wide",
                mode.label()
            );
            assert!(
                !out.bars.is_empty(),
                "{n} tasks {} {name}: nothing drawn",
                mode.label()
            );
            if mode != LaneMode::Task && name == "zoomed out" {
                let drawn: u64 = out.bars.iter().map(|b| u64::from(b.merged) + 1).sum();
                assert_eq!(
                    drawn,
                    n as u64,
                    "{} zoomed out: every task is in exactly one bar",
                    mode.label()
                );
            }
            if name == "zoomed in to 0.1 s" {
                assert!(
                    out.bars.iter().all(|b| b.merged == 0),
                    "{} at 0.1 s across: every bar is one task",
                    mode.label()
                );
            }
        }
    }
}

/// Zoomed out, a bar stands for many tasks; the pointer still finds each one exactly.
fn check_exact_hover(record: &RunRecord) {
    let mut index = LaneIndex::default();
    index.update(record, LaneMode::Slot);
    let now = record.last_event;
    let view = TimeView::fit(now.as_secs_f64());
    let out = poolscope::ui::timeline::layout::layout_indexed(&index, now, view, WIDTH, 0..POOL);
    assert!(out.bars.iter().any(|b| b.merged > 0), "zoomed out merges");
    let slack = view.span() / f64::from(WIDTH);
    for task in record.tasks().step_by(record.task_count() / 50) {
        let a = &task.attempts[0];
        let lane = a.slot.expect("ran on a slot");
        let middle = (a.started + a.ended.expect("finished")).as_secs_f64() / 2.0;
        assert_eq!(
            index.attempt_at(lane, middle, slack, now),
            Some((task.id, 1)),
            "the pointer over the middle of task {} names it",
            task.id
        );
    }
}

#[test]
fn a_hundred_thousand_tasks_draw_in_bounded_shapes() {
    let record = common::synthetic::finished_run(100_000, POOL);
    check_bounded(&record);
    check_exact_hover(&record);
}

#[test]
fn a_million_tasks_draw_in_bounded_shapes() {
    let record = common::synthetic::finished_run(1_000_000, POOL);
    assert_eq!(record.task_count(), 1_000_000);
    assert!(record.last_event > Duration::from_mins(1));
    check_bounded(&record);
    check_exact_hover(&record);
}
