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
    let ctx = egui::Context::default();
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1280.0, 800.0),
        )),
        ..egui::RawInput::default()
    };
    let mut logic_times = Vec::new();
    let mut cpu_times = Vec::new();
    let thread_cpu = || {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map_or(Duration::ZERO, Duration::from)
    };
    let mut frame = |app: &mut PoolscopeApp| {
        let t0 = Instant::now();
        let c0 = thread_cpu();
        let _ = ctx.run_ui(input(), |ui| {
            let l0 = Instant::now();
            app.logic(ui.ctx());
            logic_times.push(l0.elapsed());
            for action in app.draw(ui) {
                app.apply(action, ui.ctx());
            }
        });
        cpu_times.push(thread_cpu().saturating_sub(c0));
        t0.elapsed()
    };
    frame(&mut app);
    app.apply(Action::Start, &ctx);
    let started = Instant::now();
    let mut times = Vec::new();
    while app
        .run
        .as_ref()
        .is_some_and(|r| r.record.task_count() < 8 || r.active() > 0)
    {
        times.push(frame(&mut app));
        // A display refreshes at 60 Hz: frames do not run back to back.
        std::thread::sleep(Duration::from_millis(16));
        assert!(
            started.elapsed() < Duration::from_mins(10),
            "the flood did not finish"
        );
    }
    let wall = started.elapsed();
    logic_times.sort_unstable();
    cpu_times.sort_unstable();
    let total: u64 = app.run.as_ref().map_or(0, |r| {
        r.record.attempts().map(|(_, a)| a.stdout_bytes).sum()
    });
    times.sort_unstable();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{} frames while 8 tasks wrote {:.0} MiB in {:.1} s ({:.0} MiB/s through the UI)",
        times.len(),
        total as f64 / 1_048_576.0,
        wall.as_secs_f64(),
        total as f64 / 1_048_576.0 / wall.as_secs_f64()
    );
    println!(
        "logic+ui per frame: median {:.2} ms, p99 {:.2} ms, max {:.2} ms (target max < 16 ms)",
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        pick(1.0).as_secs_f64() * 1e3
    );
    println!(
        "CPU time of the UI thread per frame (without time lost to the 16+ busy processes on 2 cores): median {:.2} ms, max {:.2} ms",
        cpu_times[cpu_times.len() / 2].as_secs_f64() * 1e3,
        cpu_times[cpu_times.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "of which logic (draining events, budget 8 ms): median {:.2} ms, max {:.2} ms",
        logic_times[logic_times.len() / 2].as_secs_f64() * 1e3,
        logic_times[logic_times.len() - 1].as_secs_f64() * 1e3
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
    let ctx = egui::Context::default();
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1600.0, 900.0),
        )),
        ..egui::RawInput::default()
    };
    // The slowest frame, and its logic, ui and tessellation.
    let mut worst = (Duration::ZERO, [Duration::ZERO; 3]);
    let mut all_parts = Vec::new();
    let mut frame = |app: &mut PoolscopeApp| {
        let t0 = Instant::now();
        let mut parts = [Duration::ZERO; 3];
        let output = ctx.run_ui(input(), |ui| {
            let l0 = Instant::now();
            app.logic(ui.ctx());
            parts[0] = l0.elapsed();
            let d0 = Instant::now();
            for action in app.draw(ui) {
                app.apply(action, ui.ctx());
            }
            parts[1] = d0.elapsed();
        });
        let t1 = Instant::now();
        let _ = ctx.tessellate(output.shapes, output.pixels_per_point);
        parts[2] = t1.elapsed();
        let took = t0.elapsed();
        all_parts.push(parts);
        if took > worst.0 {
            worst = (took, parts);
        }
        took
    };
    frame(&mut app);
    app.apply(Action::Start, &ctx);
    let started = Instant::now();
    let mut times = Vec::new();
    while app
        .run
        .as_ref()
        .is_some_and(|r| r.record.task_count() < tasks || r.active() > 0)
    {
        times.push(frame(&mut app));
        std::thread::sleep(Duration::from_millis(16));
        assert!(
            started.elapsed() < Duration::from_mins(10),
            "the run did not finish"
        );
    }
    let wall = started.elapsed();
    times.sort_unstable();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{} frames while {tasks} noop tasks ran on 2 workers in {:.1} s",
        times.len(),
        wall.as_secs_f64()
    );
    println!(
        "logic+ui+tessellation per frame: median {:.2} ms, p99 {:.2} ms, max {:.2} ms (targets: median <= 16 ms, max <= 33 ms)",
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        pick(1.0).as_secs_f64() * 1e3
    );
    let median_of = |k: usize| {
        let mut v: Vec<Duration> = all_parts.iter().map(|p: &[Duration; 3]| p[k]).collect();
        v.sort_unstable();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    println!(
        "median logic {:.2} ms (events: budget 8 ms), ui {:.2} ms, tessellation {:.2} ms",
        median_of(0),
        median_of(1),
        median_of(2)
    );
    let [logic, ui, tessellation] = worst.1.map(|d| d.as_secs_f64() * 1e3);
    println!(
        "the slowest frame: logic {logic:.2} ms, ui {ui:.2} ms, tessellation {tessellation:.2} ms"
    );
}
