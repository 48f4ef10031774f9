//! Its own test binary: counts this process's file descriptors and children, which other
//! tests running in parallel would disturb.

mod common;

use common::{config, drain};
use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use poolscope::executor::{Executor, Outcome, TaskSpec};
use poolscope::model::RunRecord;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("procfs").count()
}

#[test]
fn two_thousand_short_tasks_leak_no_fd_and_leave_no_zombie() {
    let before = open_fds();
    {
        let (pool, events) = Executor::start(config(8), None);
        let specs = (0..2000)
            .map(|_| TaskSpec::program("/bin/true", Vec::<String>::new()))
            .collect();
        pool.submit(specs).expect("submit");
        pool.close();
        let mut record = RunRecord::default();
        drain(&events, &mut record);
        assert_eq!(record.task_count(), 2000);
        assert!(
            record
                .tasks()
                .all(|t| t.outcome() == Some(&Outcome::Exited(0)))
        );
    }
    assert_eq!(open_fds(), before, "file descriptors leaked");
    // ECHILD: this process has no child left at all, running or zombie.
    assert_eq!(
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)),
        Err(Errno::ECHILD),
        "a child process was left behind"
    );
}
