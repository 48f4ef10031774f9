//! The readiness loop's plumbing: one epoll instance watches every task pipe, every
//! child's pidfd and an eventfd that wakes the dispatcher when a command arrives, so one
//! thread serves the whole pool and nothing polls on a timer.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{EventfdFlags, Timespec, epoll, eventfd};

/// The token of the dispatcher's own wake-up eventfd; backends use any other.
pub(crate) const WAKE_TOKEN: u64 = u64::MAX;

/// What a watched descriptor is waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

/// Wakes the dispatcher's loop from any thread (a command was queued, output budget
/// was freed, a backend thread has news).
#[derive(Clone, Debug)]
pub struct LoopWaker(Option<Arc<OwnedFd>>);

impl LoopWaker {
    pub fn wake(&self) {
        // A full counter (EAGAIN) already means "wake up": nothing to handle.
        if let Some(fd) = &self.0 {
            let _ = rustix::io::write(&**fd, &1u64.to_ne_bytes());
        }
    }

    /// The waker of a pool that could not start: there is no loop to wake.
    pub(crate) fn none() -> Self {
        Self(None)
    }
}

pub(crate) struct Reactor {
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
}

/// Room for the events of one wait (kept by the loop's thread: epoll events hold a raw
/// pointer field, so they are not `Send`).
pub(crate) type EventBuffer = Vec<epoll::Event>;

impl Reactor {
    pub(crate) fn new() -> io::Result<(Self, LoopWaker)> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        epoll::add(
            &epoll,
            &*wake,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN,
        )?;
        let reactor = Self {
            epoll,
            wake: Arc::clone(&wake),
        };
        Ok((reactor, LoopWaker(Some(wake))))
    }

    pub(crate) fn watch(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        let flags = match interest {
            Interest::Read => epoll::EventFlags::IN,
            Interest::Write => epoll::EventFlags::OUT,
        };
        epoll::add(&self.epoll, fd, epoll::EventData::new_u64(token), flags)?;
        Ok(())
    }

    /// Stop watching `fd`. Must be called before a descriptor with dups is closed: epoll
    /// keeps reporting a file whose other dups are still open.
    pub(crate) fn unwatch(&self, fd: impl AsFd) {
        let _ = epoll::delete(&self.epoll, fd);
    }

    /// Wait for readiness (at most `timeout`; `None` waits for ever) and put the tokens
    /// that are ready in `tokens`. The wake token is among them too, already reset.
    pub(crate) fn wait(
        &self,
        events: &mut EventBuffer,
        tokens: &mut Vec<u64>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        events.clear();
        tokens.clear();
        if events.capacity() == 0 {
            events.reserve(256);
        }
        let timeout = timeout.map(|t| Timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(events),
            timeout.as_ref(),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        tokens.extend(events.iter().map(|e| e.data.u64()));
        if tokens.contains(&WAKE_TOKEN) {
            let mut counter = [0u8; 8];
            let _ = rustix::io::read(&*self.wake, &mut counter);
        }
        Ok(())
    }
}
