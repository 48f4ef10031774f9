//! Timeline frame time: lay out and tessellate the timeline headlessly (an egui
//! `Context`, no GPU) for 1 000 to 1 000 000 finished tasks at 1600×900, zoomed out and
//! zoomed in, from a record built from events in time order as the executor sends them
//! (the window's own path: live tallies, the slot index kept up to date); prints the
//! median and max frame time, and memory per task record.
//!   `cargo bench --bench timeline`
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::{Duration, Instant};

use poolscope::model::RunRecord;
use poolscope::ui::timeline::TimelineState;
use poolscope::ui::timeline::layout::{LaneMode, TimeView};

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

const POOL: usize = 8;

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
    for n in [1_000usize, 10_000, 100_000, 1_000_000] {
        let before = rss_kib();
        let r = synthetic::finished_run(n, POOL);
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
