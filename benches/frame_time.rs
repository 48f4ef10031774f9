//! Frame time of the workbench while output floods in: 8 tasks each writing
//! `POOLSCOPE_BENCH_BYTES` (default 250 MiB) of `yes`, pool of 8, the first task selected
//! so the output panel shows the flood. Measures `logic` + `ui` per frame headlessly
//! (an egui `Context` with no window), and prints median, p99 and max.
//!   `cargo bench --bench frame_time`
//!
//! With `POOLSCOPE_BENCH_TASKS=N`: instead, a task file of N `noop` tasks on 2 workers
//! (a million in the target) runs through the window, and each frame is `logic`
//! + `ui` + tessellation (the CPU side of the paint), one frame every 16 ms.
//!   `POOLSCOPE_BENCH_TASKS=1000000 cargo bench --bench frame_time`

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::{Duration, Instant};

use poolscope::app::{Action, AppOptions, PoolscopeApp, Row};
use poolscope::model::TaskDraft;

fn main() {
    if let Some(tasks) = std::env::var("POOLSCOPE_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return many_tasks(tasks);
    }
    let bytes: u64 = std::env::var("POOLSCOPE_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250 * 1024 * 1024);
    let mut app = PoolscopeApp::new(AppOptions::default());
    app.rows = (0..8)
        .map(|_| Row {
            draft: TaskDraft::shell(format!("yes | head -c {bytes}")),
            task: None,
        })
        .collect();
    app.pool_size = 8;
    let (frames, wall) = frames_of_run(&mut app, egui::vec2(1280.0, 800.0), false, |app| {
        app.run
            .as_ref()
            .is_some_and(|r| r.record.task_count() < 8 || r.active() > 0)
    });
    let total: u64 = app.run.as_ref().map_or(0, |r| {
        r.record.attempts().map(|(_, a)| a.stdout_bytes).sum()
    });
    println!(
        "{} frames while 8 tasks wrote {:.0} MiB in {:.1} s ({:.0} MiB/s through the UI)",
        frames.len(),
        total as f64 / 1_048_576.0,
        wall.as_secs_f64(),
        total as f64 / 1_048_576.0 / wall.as_secs_f64()
    );
    let times = sorted(&frames, |f| f.total);
    println!(
        "logic+ui per frame: median {:.2} ms, p99 {:.2} ms, max {:.2} ms (target max < 16 ms)",
        ms(pick(&times, 0.5)),
        ms(pick(&times, 0.99)),
        ms(pick(&times, 1.0))
    );
    let cpu = sorted(&frames, |f| f.cpu);
    println!(
        "CPU time of the UI thread per frame (without time lost to the 16+ busy processes on 2 cores): median {:.2} ms, max {:.2} ms",
        ms(pick(&cpu, 0.5)),
        ms(pick(&cpu, 1.0))
    );
    let logic = sorted(&frames, |f| f.logic);
    println!(
        "of which logic (draining events, budget 4 to 8 ms: what drawing left of 15 ms): median {:.2} ms, max {:.2} ms",
        ms(pick(&logic, 0.5)),
        ms(pick(&logic, 1.0))
    );
}

/// Frames while `tasks` noop tasks from a task file run on 2 workers.
fn many_tasks(tasks: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("noop.toml");
    std::fs::write(
        &file,
        format!(
            "[pool]\nsize = 2\nmode = \"workers\"\n[[task]]\nbuiltin = \"noop\"\nrange = [0, {tasks}]\n"
        ),
    )
    .expect("task file");
    let mut app = PoolscopeApp::new(AppOptions {
        file: Some(file),
        run_dir: Some(dir.path().join("runs")),
        helper: Some(env!("CARGO_BIN_EXE_poolscope").into()),
        ..AppOptions::default()
    });
    let (frames, wall) = frames_of_run(&mut app, egui::vec2(1600.0, 900.0), true, |app| {
        app.run
            .as_ref()
            .is_some_and(|r| r.record.task_count() < tasks || r.active() > 0)
    });
    println!(
        "{} frames while {tasks} noop tasks ran on 2 workers in {:.1} s",
        frames.len(),
        wall.as_secs_f64()
    );
    let times = sorted(&frames, |f| f.total);
    println!(
        "logic+ui+tessellation per frame: median {:.2} ms, p99 {:.2} ms, max {:.2} ms (targets: median <= 16 ms, max <= 33 ms)",
        ms(pick(&times, 0.5)),
        ms(pick(&times, 0.99)),
        ms(pick(&times, 1.0))
    );
    let median = |part: fn(&Frame) -> Duration| ms(pick(&sorted(&frames, part), 0.5));
    println!(
        "median logic {:.2} ms (events: budget 4 to 8 ms), ui {:.2} ms, tessellation {:.2} ms",
        median(|f| f.logic),
        median(|f| f.ui),
        median(|f| f.tessellation)
    );
    if let Some(worst) = frames.iter().max_by_key(|f| f.total) {
        println!(
            "the slowest frame: logic {:.2} ms, ui {:.2} ms, tessellation {:.2} ms",
            ms(worst.logic),
            ms(worst.ui),
            ms(worst.tessellation)
        );
    }
}

/// One frame's times.
struct Frame {
    /// Logic and ui, and tessellation when measured.
    total: Duration,
    logic: Duration,
    ui: Duration,
    tessellation: Duration,
    /// CPU time of this thread in the frame.
    cpu: Duration,
}

/// Frames of `app` in a window of `size`, from Start while `running` says so, one every
/// 16 ms (a display refreshes at 60 Hz: frames do not run back to back); with
/// `tessellate`, the CPU side of the paint too. The frames, and the run's wall time.
fn frames_of_run(
    app: &mut PoolscopeApp,
    size: egui::Vec2,
    tessellate: bool,
    running: impl Fn(&PoolscopeApp) -> bool,
) -> (Vec<Frame>, Duration) {
    let ctx = egui::Context::default();
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, size)),
        ..egui::RawInput::default()
    };
    let thread_cpu = || {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map_or(Duration::ZERO, Duration::from)
    };
    let frame = |app: &mut PoolscopeApp| {
        let (t0, c0) = (Instant::now(), thread_cpu());
        let (mut logic, mut ui) = (Duration::ZERO, Duration::ZERO);
        let output = ctx.run_ui(input(), |egui_ui| {
            let l0 = Instant::now();
            app.logic(egui_ui.ctx());
            logic = l0.elapsed();
            let d0 = Instant::now();
            for action in app.draw(egui_ui) {
                app.apply(action, egui_ui.ctx());
            }
            ui = d0.elapsed();
        });
        let t1 = Instant::now();
        if tessellate {
            let _ = ctx.tessellate(output.shapes, output.pixels_per_point);
        }
        Frame {
            total: t0.elapsed(),
            logic,
            ui,
            tessellation: t1.elapsed(),
            cpu: thread_cpu().saturating_sub(c0),
        }
    };
    frame(app);
    app.apply(Action::Start, &ctx);
    let started = Instant::now();
    let mut frames = Vec::new();
    while running(app) {
        frames.push(frame(app));
        std::thread::sleep(Duration::from_millis(16));
        assert!(
            started.elapsed() < Duration::from_mins(10),
            "the run did not finish"
        );
    }
    (frames, started.elapsed())
}

fn sorted(frames: &[Frame], part: impl Fn(&Frame) -> Duration) -> Vec<Duration> {
    let mut times: Vec<Duration> = frames.iter().map(part).collect();
    times.sort_unstable();
    times
}

/// The `q` quantile of sorted `times` (0.5: the median, 1.0: the max).
fn pick(times: &[Duration], q: f64) -> Duration {
    times[((times.len() - 1) as f64 * q) as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
