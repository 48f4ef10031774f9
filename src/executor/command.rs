//! What a command to the pool (submit, kill, write to a task …) can fail with: said by
//! the dispatcher and the backends alike, so a room of its own below both.

use super::task::TaskId;

/// What a command to the pool can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the pool is closed: it accepts no more tasks")]
    PoolClosed,
    #[error("the pool is still open: close it before joining")]
    PoolStillOpen,
    #[error("there is no task {0}")]
    UnknownTask(TaskId),
    #[error("task {0} is not running")]
    NotRunning(TaskId),
    #[error("task {0} has no open stdin")]
    StdinNotOpen(TaskId),
    #[error("task {task} is not reading its input: {queued} bytes are still waiting to be written")]
    StdinFull { task: TaskId, queued: usize },
    #[error("cannot signal task {0}: {1}")]
    Signal(TaskId, String),
    #[error("the executor has stopped")]
    ExecutorGone,
    #[error("{0}")]
    PoolFailed(String),
}
