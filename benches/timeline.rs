//! Timeline frame time: lay out and tessellate the timeline headlessly (an egui
//! `Context`, no GPU) for 1 000, 10 000 and 100 000 finished tasks at 1600×900, zoomed
//! out and zoomed in; prints the median and max frame time, and memory per task record.
//!   `cargo bench --bench timeline`
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use poolscope::executor::{Event, EventKind, Outcome, TaskId, TaskSpec};
use poolscope::model::RunRecord;
use poolscope::ui::timeline::TimelineState;
use poolscope::ui::timeline::layout::{LaneMode, TimeView};

const POOL: usize = 8;

/// A finished run of `n` tasks on a pool of 8, with varied runtimes (1..50 ms).
fn record(n: usize) -> RunRecord {
    let mut r = RunRecord::new(1024);
    let mut apply = |at: Duration, kind| r.apply(&Event { at, kind });
    apply(
        Duration::ZERO,
        EventKind::PoolStarted {
            wall_clock: SystemTime::now(),
            size: POOL,
        },
    );
    let mut slot_free = [Duration::ZERO; POOL];
    for i in 0..n {
        let task = TaskId(i as u64 + 1);
        apply(
            Duration::ZERO,
            EventKind::Queued {
                task,
                spec: Arc::new(TaskSpec::shell(format!("work {}", i % 97))),
            },
        );
        let slot = (0..POOL).min_by_key(|&s| slot_free[s]).unwrap_or(0);
        let start = slot_free[slot];
        let end = start + Duration::from_micros(1000 + (i as u64 * 7919) % 49_000);
        slot_free[slot] = end;
        apply(
            start,
            EventKind::Started {
                task,
                attempt: 1,
                slot,
                pid: Some(10_000 + i as u32),
                host: None,
            },
        );
        let outcome = if i % 50 == 0 {
            Outcome::Exited(1)
        } else {
            Outcome::Exited(0)
        };
        apply(
            end,
            EventKind::Finished {
                task,
                attempt: 1,
                outcome,
                stdin_bytes: 0,
                will_retry: false,
            },
        );
    }
    r
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn frame_times(record: &RunRecord, mode: LaneMode, zoom_in: bool) -> (Duration, Duration) {
    let ctx = egui::Context::default();
    let mut state = TimelineState::default();
    state.mode = mode;
    let total = record.last_event.as_secs_f64();
    if zoom_in {
        state.view = Some(TimeView {
            start: total * 0.5,
            end: total * 0.5 + total * 0.005,
        });
    }
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1600.0, 900.0),
        )),
        ..egui::RawInput::default()
    };
    let mut times = Vec::new();
    for _ in 0..30 {
        let t0 = Instant::now();
        let output = ctx.run_ui(input(), |ui| {
            let _ = state.show(ui, record, record.last_event, false, None);
        });
        let _ = ctx.tessellate(output.shapes, output.pixels_per_point);
        times.push(t0.elapsed());
    }
    times.drain(..3); // first frames build fonts
    times.sort_unstable();
    (times[times.len() / 2], times[times.len() - 1])
}

fn main() {
    for n in [1_000usize, 10_000, 100_000] {
        let before = rss_kib();
        let r = record(n);
        let per_task = (rss_kib().saturating_sub(before) * 1024) as f64 / n as f64;
        for (mode, zoom_in) in [
            (LaneMode::Slot, false),
            (LaneMode::Slot, true),
            (LaneMode::Pid, false),
            (LaneMode::Task, false),
        ] {
            let (median, max) = frame_times(&r, mode, zoom_in);
            println!(
                "{n:>7} tasks, {:<8} {:<11}: median {:>6.2} ms, max {:>6.2} ms (target < 8 ms)",
                mode.label(),
                if zoom_in { "zoomed in" } else { "zoomed out" },
                median.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            );
        }
        println!("{n:>7} tasks: about {per_task:.0} bytes of memory per task record");
    }
}
