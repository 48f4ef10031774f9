//! Faults: poolscope killed outright, and what it must still guarantee.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{WAIT, poolscope, wait_gone};

/// Poll (bounded) until every `dir/pid.N` for N in 1..=n exists; their PIDs.
fn started_pids(dir: &std::path::Path, n: u32) -> Vec<u32> {
    let pid_file = |i: u32| dir.join(format!("pid.{i}"));
    let deadline = Instant::now() + WAIT;
    // No event reaches this test from another process: poll the files, bounded.
    while !(1..=n).all(|i| pid_file(i).exists()) {
        assert!(Instant::now() < deadline, "tasks never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    (1..=n)
        .map(|i| {
            let text = std::fs::read_to_string(pid_file(i)).expect("pid");
            text.trim().parse().expect("number")
        })
        .collect()
}

#[test]
fn sigkill_of_poolscope_leaves_no_task_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    // One task ends on SIGTERM; the other ignores it and must be SIGKILLed.
    let script = format!(
        "echo $$ > {d}/pid.1; exec sleep 3011\n\
         trap '' TERM; echo $$ > {d}/pid.2; while :; do sleep 1; done\n"
    );
    let mut child = poolscope()
        .args(["run", "-j", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("poolscope run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let pids = started_pids(dir.path(), 2);
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    for pid in pids {
        assert!(wait_gone(pid), "task {pid} outlived a SIGKILLed poolscope");
    }
}
