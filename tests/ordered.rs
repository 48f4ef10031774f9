//! `-k` (and a worker pool's results in input order) holds a later task's output until
//! the tasks before it are over: past a small budget it waits in a hidden file, not in
//! memory, and comes out whole and in order.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{WAIT, poolscope};

const BIG: usize = 200_000_000;

#[test]
fn keep_order_holds_a_big_later_output_on_disk_and_prints_it_whole() {
    let dir = tempfile::tempdir().expect("dir");
    let done = dir.path().join("second-done");
    // The first task ends only once the second has printed 200 MB and ended: all of it
    // has to wait.
    let tasks = format!(
        "while [ ! -e {done} ]; do sleep 0.02; done; echo first\n\
         head -c {BIG} /dev/zero | tr '\\0' a; touch {done}\n",
        done = done.display()
    );
    let mut child = poolscope()
        .args(["run", "-j", "2", "-k", "--no-journal"])
        .env("TMPDIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start poolscope");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), tasks.as_bytes())
        .expect("tasks");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let (mut head, mut count, mut all_a) = (Vec::new(), 0usize, true);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = stdout.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            let piece = &buf[..n];
            let from = if head.len() < 6 {
                let take = (6 - head.len()).min(n);
                head.extend_from_slice(&piece[..take]);
                take
            } else {
                0
            };
            all_a &= piece[from..].iter().all(|&b| b == b'a');
            count += n - from;
        }
        (head, count, all_a)
    });
    let pid = child.id().to_string();
    let deadline = Instant::now() + WAIT * 4;
    let mut peak = 0;
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        peak = peak.max(common::peak_rss_kib(&pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().expect("wait");
    let (head, count, all_a) = reader.join().expect("reader");
    assert!(status.success(), "{status}");
    assert_eq!(head, b"first\n", "the first task's output comes first");
    assert_eq!(count, BIG, "the second task's output whole");
    assert!(all_a, "and unchanged");
    // Held in memory it was 200 MB and more; spilled, the budget and what is in flight.
    assert!(peak < 120 * 1024, "peak RSS {} MiB", peak / 1024);
}
