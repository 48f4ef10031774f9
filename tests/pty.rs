//! Interactive programs in a pseudo-terminal, driven through the executor as the
//! console's input box drives them.

mod common;

use common::{config, drain, stdout_of, until};
use poolscope::executor::{EventKind, Executor, Outcome, StdinMode, TaskSpec};
use poolscope::model::RunRecord;

/// The task's terminal output with escape sequences and carriage returns removed.
fn screen(record: &RunRecord, task: poolscope::executor::TaskId) -> String {
    let raw = stdout_of(record, task);
    raw.split('\n')
        .map(|line| poolscope::model::terminal::ansi::plain_line(line).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn python_in_a_terminal_answers_and_prompts_again() {
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let task = pool
        .submit_one(
            TaskSpec::program("python3", ["-q", "-i"])
                .with_pty()
                .with_stdin(StdinMode::Pipe),
        )
        .expect("submit");
    until(&events, &mut record, "the first >>> prompt", |_, r| {
        screen(r, task).contains(">>> ")
    });
    pool.write_stdin(task, b"6*7\n".to_vec()).expect("type");
    until(&events, &mut record, "42 and a fresh prompt", |_, r| {
        let s = screen(r, task);
        s.split_once("42\n")
            .is_some_and(|(_, after)| after.contains(">>> "))
    });
    pool.close_stdin(task).expect("Ctrl-D");
    pool.close();
    drain(&events, &mut record);
    assert_eq!(
        record.task(task).and_then(|t| t.outcome().cloned()),
        Some(Outcome::Exited(0))
    );
}

#[test]
fn bc_in_a_terminal_computes() {
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let task = pool
        .submit_one(
            TaskSpec::program("bc", ["-q"])
                .with_pty()
                .with_stdin(StdinMode::Pipe),
        )
        .expect("submit");
    until(&events, &mut record, "start", |e, _| {
        matches!(e.kind, EventKind::Started { .. })
    });
    pool.write_stdin(task, b"2^10\n".to_vec()).expect("type");
    until(&events, &mut record, "1024", |_, r| {
        screen(r, task).contains("1024")
    });
    pool.write_stdin(task, b"quit\n".to_vec()).expect("type");
    pool.close();
    drain(&events, &mut record);
    assert_eq!(
        record.task(task).and_then(|t| t.outcome().cloned()),
        Some(Outcome::Exited(0))
    );
}

#[test]
fn ctrl_c_typed_into_the_terminal_interrupts_sleep() {
    let (pool, events) = Executor::start(config(1), None);
    let mut record = RunRecord::default();
    let task = pool
        .submit_one(
            TaskSpec::shell("echo ready; exec sleep 100")
                .with_pty()
                .with_stdin(StdinMode::Pipe),
        )
        .expect("submit");
    until(&events, &mut record, "ready", |_, r| {
        screen(r, task).contains("ready")
    });
    pool.write_stdin(task, vec![0x03]).expect("Ctrl-C");
    pool.close();
    drain(&events, &mut record);
    assert_eq!(
        record.task(task).and_then(|t| t.outcome().cloned()),
        Some(Outcome::Signaled(2))
    );
}

#[test]
fn a_terminal_task_sees_a_terminal_and_a_pipe_task_does_not() {
    let (pool, events) = Executor::start(config(2), None);
    let tty = pool
        .submit_one(TaskSpec::shell("test -t 1 && echo tty || echo pipe").with_pty())
        .expect("submit");
    let pipe = pool
        .submit_one(TaskSpec::shell("test -t 1 && echo tty || echo pipe"))
        .expect("submit");
    pool.close();
    let mut record = RunRecord::default();
    drain(&events, &mut record);
    assert_eq!(screen(&record, tty).trim(), "tty");
    assert_eq!(stdout_of(&record, pipe), "pipe\n");
}
