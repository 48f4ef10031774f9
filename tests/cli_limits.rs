//! `poolscope run` at its limits: floods of output, output with no newline, a signal in
//! the middle of a flood, and numbers too large to mean anything. Peak memory is the
//! child's own, read from /proc while it runs (`VmHWM` only grows).
#![allow(clippy::print_stdout)] // the measured figures are printed beside the checks

mod common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{WAIT, poolscope, wait_gone};

fn start(args: &[&str], commands: &str, stdout: Stdio) -> Child {
    let mut child = poolscope()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start poolscope");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(commands.as_bytes())
        .expect("write");
    child
}

/// Waits for the child (bounded), returning its exit status and its peak memory.
fn wait_measuring(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, u64) {
    let deadline = Instant::now() + limit;
    let mut peak = 0;
    loop {
        if let Some(kib) = common::peak_rss_kib(&child.id().to_string()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            return (status, peak);
        }
        assert!(Instant::now() < deadline, "poolscope did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn output_with_no_newline_is_linear_and_bounded() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let mut child = start(
        &["run", "-j", "1"],
        &format!("head -c {SIZE} /dev/zero\n"),
        Stdio::null(),
    );
    let (status, peak) = wait_measuring(&mut child, Duration::from_mins(2));
    println!("256 MiB with no newline: peak RSS {} MiB", peak / 1024);
    assert!(status.success(), "{status}");
    assert!(
        peak < 150 * 1024,
        "peak RSS {} MiB (limit 150)",
        peak / 1024
    );
}

#[test]
fn the_joblog_receive_column_adds_up_to_the_bytes_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("log.tsv");
    let sizes: Vec<u64> = (0..2000u64).map(|i| (i * 53) % 4000).collect();
    let commands = sizes.iter().fold(String::new(), |mut all, n| {
        use std::fmt::Write as _;
        let _ = writeln!(all, "head -c {n} /dev/zero");
        all
    });
    let mut child = start(
        &["run", "-j", "8", "--joblog", joblog.to_str().expect("utf8")],
        &commands,
        Stdio::null(),
    );
    let (status, _) = wait_measuring(&mut child, WAIT * 4);
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&joblog).expect("joblog");
    let entries = poolscope::model::formats::joblog::parse(&text, &joblog).expect("a valid joblog");
    assert_eq!(entries.len(), sizes.len());
    let received: u64 = entries.iter().map(|e| e.receive).sum();
    assert_eq!(received, sizes.iter().sum::<u64>());
    for e in &entries {
        assert_eq!(e.receive, sizes[(e.seq - 1) as usize], "Seq {}", e.seq);
    }
}

#[test]
fn sigterm_during_a_flood_ends_the_run_and_every_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let joblog = dir.path().join("log.tsv");
    let mut child = start(
        &["run", "-j", "2", "--joblog", joblog.to_str().expect("utf8")],
        &format!("echo $$ > {d}/pid.1; exec yes flood\necho $$ > {d}/pid.2; exec cat /dev/zero\n"),
        Stdio::null(),
    );
    let pids = common::started_pids(dir.path(), 2);
    std::thread::sleep(Duration::from_millis(200)); // let the flood build up
    let signalled = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let (status, _) = wait_measuring(&mut child, WAIT);
    println!(
        "SIGTERM during a flood: poolscope exited {:.0} ms later",
        signalled.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(status.code(), Some(130));
    for pid in pids {
        assert!(wait_gone(pid), "task {pid} outlived poolscope");
    }
    let log = std::fs::read_to_string(&joblog).expect("joblog");
    assert_eq!(log.lines().count(), 3, "header and both tasks: {log}");
}

/// Runs poolscope with `args`, expecting a usage error: one line naming `value`, and
/// status 2 (`run`: 255, GNU parallel's "other error").
fn assert_refused(args: &[&str], value: &str) {
    let out = poolscope()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let status = if args[0] == "run" { 255 } else { 2 };
    assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(stderr.contains(value), "{args:?} names {value}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn values_too_large_to_mean_anything_are_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.toml");
    std::fs::write(&file, "[[task]]\ncommand = \"true\"\n").expect("write");
    let file = file.to_str().expect("utf8");
    assert_refused(&["run", "--timeout", "1e19", file], "10000000000000000000");
    assert_refused(&["run", "--timeout", "1e20", file], "100000000000000000000");
    assert_refused(&["run", "--kill-grace", "1e30", file], "1e30");
    assert_refused(&["run", "--kill-grace", "-1", file], "-1");
    assert_refused(&["run", "-j", "100000000", file], "100000000");
    assert_refused(&["run", "-j", "0", file], "got 0");
    let log = dir.path().join("inf.tsv");
    std::fs::write(
        &log,
        format!(
            "{}\n1\t:\tinf\t0.1\t0\t0\t0\t0\ttrue\n",
            poolscope::model::formats::joblog::HEADER
        ),
    )
    .expect("write");
    assert_refused(&["view", log.to_str().expect("utf8")], "inf.tsv:2");
    let log = dir.path().join("huge.tsv");
    std::fs::write(
        &log,
        format!(
            "{}\n1\t:\t1700000000.000\t1e300\t0\t0\t0\t0\ttrue\n",
            poolscope::model::formats::joblog::HEADER
        ),
    )
    .expect("write");
    assert_refused(&["view", log.to_str().expect("utf8")], "1e300");
}
