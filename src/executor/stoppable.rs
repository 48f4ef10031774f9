//! A named thread that works in rounds until its owner lets it go: between rounds it
//! waits on a channel that dropping the owner closes, so it ends at once rather than at
//! its next round, and it is joined (nothing of a round in flight outlives the owner).

use std::sync::mpsc;
use std::time::Duration;

/// The owner's side: dropping it stops the thread and waits for it.
pub(crate) struct StoppableThread {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The thread's side: how it waits between rounds.
pub(crate) struct Rounds(mpsc::Receiver<()>);

impl Rounds {
    /// Wait `pause`; `false` once the owner has let the thread go.
    pub(crate) fn wait(&self, pause: Duration) -> bool {
        matches!(
            self.0.recv_timeout(pause),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }
}

impl StoppableThread {
    pub(crate) fn spawn(
        name: &str,
        work: impl FnOnce(Rounds) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || work(Rounds(stopped)))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for StoppableThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
