//! `poolscope run` reads stdin as a stream, as xargs and GNU parallel do: a task starts
//! when its line arrives, and an endless producer runs in constant memory.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{WAIT, poolscope};

#[test]
fn a_slow_producers_first_task_runs_before_the_producer_ends() {
    let mut child = poolscope()
        .args(["run", "-j", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start poolscope");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    stdin.write_all(b"echo first\n").expect("write");
    stdin.flush().expect("flush");
    // stdin is still open: the producer has more to say.
    assert_eq!(
        lines.recv_timeout(WAIT).expect("the first task's output"),
        "first",
        "the first line ran before its producer ended"
    );
    stdin.write_all(b"echo second\n").expect("write");
    drop(stdin);
    assert_eq!(lines.recv_timeout(WAIT).expect("the second"), "second");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
}

#[test]
fn an_endless_producer_runs_in_bounded_memory_and_stops_on_sigterm() {
    let mut child = poolscope()
        .args(["run", "-j", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start poolscope");
    let mut stdin = child.stdin.take().expect("stdin");
    // `yes true`: as fast as the pipe takes it, until poolscope goes away.
    std::thread::spawn(move || {
        let chunk = "true\n".repeat(4096);
        while stdin.write_all(chunk.as_bytes()).is_ok() {}
    });
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut peak = 0;
    while Instant::now() < deadline {
        peak = peak.max(common::peak_rss_kib(&pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Read to EOF (xargs-style) it held gigabytes by now; streamed, tens of MB.
    assert!(peak < 200 * 1024, "peak RSS {} MiB", peak / 1024);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "stopped by a signal is not a success");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(
        err.contains("go on with: poolscope run --resume"),
        "the run read so far can be resumed: {err}"
    );
}
