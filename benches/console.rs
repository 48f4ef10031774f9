//! The console under a flood of lines: one task prints about 100 MiB of numbered lines
//! (`seq`), selected in the console, while every frame scrolls the console up or down.
//! Prints how long until the console has it all, frame times while it arrives (median,
//! max, and the share of frames over 33 ms, i.e. below 30 fps), and peak memory against
//! the tail size.
//!   `cargo bench --bench console`
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::{Duration, Instant};

use poolscope::app::{Action, AppOptions, PoolscopeApp, Row};
use poolscope::model::TaskDraft;

fn rss_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn main() {
    // seq 1 14_000_000 prints about 106 MiB.
    let mut app = PoolscopeApp::new(AppOptions::default());
    app.rows = vec![Row {
        draft: TaskDraft::shell("seq 1 14000000"),
        task: None,
    }];
    app.pool_size = 1;
    let ctx = egui::Context::default();
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1280.0, 800.0));
    let console_point = egui::pos2(400.0, 720.0);
    let mut times = Vec::new();
    let mut frame_no = 0u32;
    let mut frame = |app: &mut PoolscopeApp| {
        frame_no += 1;
        // Hover the console and scroll: up for a while, then back down (follow resumes).
        let delta = if frame_no % 40 < 20 { 120.0 } else { -120.0 };
        let input = egui::RawInput {
            screen_rect: Some(screen),
            events: vec![
                egui::Event::PointerMoved(console_point),
                egui::Event::MouseWheel {
                    unit: egui::MouseWheelUnit::Point,
                    delta: egui::vec2(0.0, delta),
                    phase: egui::TouchPhase::Move,
                    modifiers: egui::Modifiers::NONE,
                    source: egui::MouseWheelSource::Wheel,
                },
            ],
            ..egui::RawInput::default()
        };
        let t0 = Instant::now();
        let _ = ctx.run_ui(input, |ui| {
            app.logic(ui.ctx());
            for action in app.draw(ui) {
                app.apply(action, ui.ctx());
            }
        });
        t0.elapsed()
    };
    frame(&mut app);
    app.apply(Action::Start, &ctx);
    let started = Instant::now();
    while app
        .run
        .as_ref()
        .is_some_and(|r| r.record.task_count() == 0 || r.active() > 0)
    {
        times.push(frame(&mut app));
        std::thread::sleep(Duration::from_millis(16));
        assert!(
            started.elapsed() < Duration::from_mins(10),
            "the flood did not finish"
        );
    }
    let all_in = started.elapsed();
    let (bytes, held) = app.run.as_ref().map_or((0, 0), |r| {
        let t = r.record.task_at(0).expect("task");
        (t.attempts[0].stdout_bytes, t.output.held())
    });
    times.sort_unstable();
    let slow = times
        .iter()
        .filter(|t| **t > Duration::from_millis(33))
        .count();
    println!(
        "{:.0} MiB of lines in the console after {:.1} s; {} frames while it arrived, scrolling",
        bytes as f64 / 1_048_576.0,
        all_in.as_secs_f64(),
        times.len()
    );
    println!(
        "frame (logic+ui): median {:.2} ms, max {:.2} ms; {} of {} frames over 33 ms (target: none)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        slow,
        times.len()
    );
    println!(
        "memory: tail held {:.1} MiB (limit {} MiB); process peak {} MiB, now {} MiB",
        held as f64 / 1_048_576.0,
        poolscope::model::record::run::DEFAULT_TAIL_BYTES / 1_048_576,
        rss_mib("VmHWM:"),
        rss_mib("VmRSS:")
    );
}
