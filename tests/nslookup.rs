//! The seed's nslookup session, offline: a local dnsmasq answers an MX query, and
//! nslookup is driven line by line through poolscope, as a user types into the console.
//! `scripts/test.sh` installs dnsutils and dnsmasq-base.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::{WAIT, config, drain, stdout_of, until};
use poolscope::executor::{Executor, Outcome, StdinMode, TaskSpec};
use poolscope::model::RunRecord;

/// A dnsmasq on a loopback port with one MX record; stopped when dropped.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Dnsmasq {
    fn start() -> Self {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--mx-host=example.test,mail.example.test,50",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dnsmasq is installed (scripts/test.sh installs dnsmasq-base)");
        // dnsmasq says "started" on stderr once it listens: wait for that line (bounded).
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(WAIT) {
                Ok(line) if line.contains("started") => break,
                Ok(_) => {}
                Err(e) => panic!("dnsmasq did not start: {e}"),
            }
        }
        Self { child, port }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screen(record: &RunRecord, task: poolscope::executor::TaskId) -> String {
    // What the console shows for the task, line by line.
    stdout_of(record, task)
        .split('\n')
        .map(|l| poolscope::model::terminal::ansi::plain_line(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn nslookup_answers_an_mx_query_typed_line_by_line() {
    assert!(
        Command::new("nslookup").arg("-version").output().is_ok(),
        "nslookup is installed (scripts/test.sh installs dnsutils)"
    );
    let dns = Dnsmasq::start();
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let task = pool
        .submit_one(
            TaskSpec::program("nslookup", Vec::<String>::new())
                .with_pty()
                .with_stdin(StdinMode::Pipe),
        )
        .expect("submit");
    let prompts = |r: &RunRecord| screen(r, task).matches("> ").count();
    until(&events, &mut record, "nslookup's prompt", |_, r| {
        prompts(r) >= 1
    });
    for (i, line) in [
        "server 127.0.0.1",
        &format!("set port={}", dns.port),
        "set q=mx",
    ]
    .iter()
    .enumerate()
    {
        pool.write_stdin(task, format!("{line}\n").into_bytes())
            .expect("type");
        until(&events, &mut record, "the next prompt", |_, r| {
            prompts(r) >= i + 2
        });
    }
    pool.write_stdin(task, b"example.test\n".to_vec())
        .expect("type");
    until(&events, &mut record, "the MX answer", |_, r| {
        screen(r, task)
            .lines()
            .any(|l| l == "example.test\tmail exchanger = 50 mail.example.test.")
    });
    pool.write_stdin(task, b"exit\n".to_vec()).expect("type");
    pool.close();
    drain(&events, &mut record);
    assert_eq!(
        record.task(task).and_then(|t| t.outcome().cloned()),
        Some(Outcome::Exited(0))
    );
}
