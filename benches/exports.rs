//! Exports of a finished run of 1 000 000 tasks (targets: each written in <= 3 s, the
//! trace in <= 120 bytes a task): the joblog, the CSV and the Chrome trace, each written
//! to a file as the window and `poolscope run` write them, beside `cp` of the same file
//! (the disk's floor, measured in the same run). Medians of `RUNS` (default 5).
//!   `cargo bench --bench exports`
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use poolscope::model::{RunRecord, formats::joblog, formats::runfile, formats::trace};

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

const TASKS: usize = 1_000_000;

type Writer = fn(&RunRecord, &mut BufWriter<File>) -> std::io::Result<()>;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn timed_write(record: &RunRecord, path: &Path, write: Writer) -> Duration {
    let t0 = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).expect("create"));
    write(record, &mut out).expect("write");
    out.flush().expect("flush");
    t0.elapsed()
}

fn timed_copy(from: &Path, to: &Path) -> Duration {
    let t0 = Instant::now();
    let status = std::process::Command::new("cp")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
    t0.elapsed()
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("poolscope-exports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let record = synthetic::finished_run(TASKS, 8);
    let exports: [(&str, &str, Writer); 3] = [
        ("joblog", "joblog.txt", |r, o| joblog::write(r, o)),
        ("CSV", "run.csv", |r, o| runfile::write_csv(r, o)),
        ("Chrome trace", "trace.json", |r, o| trace::write(r, o)),
    ];
    println!("exports of {TASKS} finished tasks on 8 slots (median of {runs}; target <= 3 s each)");
    for (name, file, write) in exports {
        let path = dir.join(file);
        let written = median(
            (0..runs)
                .map(|_| timed_write(&record, &path, write))
                .collect(),
        );
        let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        let copy = dir.join("copy");
        let copied = median((0..runs).map(|_| timed_copy(&path, &copy)).collect());
        println!(
            "  {name:<13} {:>6.2} s, {:>6.1} bytes a task; cp of the same file {:.2} s ({:.1}x)",
            written.as_secs_f64(),
            bytes as f64 / TASKS as f64,
            copied.as_secs_f64(),
            written.as_secs_f64() / copied.as_secs_f64().max(1e-6),
        );
    }
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("  kept in {}", dir.display());
    }
}
