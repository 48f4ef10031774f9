//! Driving a live run from another terminal: every live run (the window's, `poolscope
//! run`'s) listens on a Unix socket in its private folder, and `poolscope add / ls /
//! status / follow / log / send / kill …` talk to it.
//!
//! Its rooms: `protocol` (the lines both ends speak), `server` (the socket, one thread
//! per client), `serve` (requests answered by the run's owner, followers fed), `client`
//! (finding live runs, connecting, asking). It uses the executor and the model; the app
//! and the command line use it.

pub mod client;
pub mod protocol;
pub mod serve;
pub mod server;

pub use serve::{BoundControl, Control, Owner, PoolCommand, Shape};

/// A run's socket as `bind` and `connect` can take it. A socket's path holds at most
/// 107 bytes (`sun_path`); a run folder deeper than that is reached through a
/// descriptor of the folder (`/proc/self/fd/N/control.sock`), held while it is used.
pub(crate) struct SocketAddress {
    pub path: std::path::PathBuf,
    _dir: Option<std::os::fd::OwnedFd>,
}

/// Longest socket path the kernel takes (`sun_path` less its closing NUL).
const SUN_PATH_MAX: usize = 107;

impl SocketAddress {
    pub(crate) fn of(dir: &std::path::Path) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let path = dir.join(protocol::SOCKET_FILE);
        if path.as_os_str().len() <= SUN_PATH_MAX {
            return Ok(Self { path, _dir: None });
        }
        let fd = rustix::fs::open(
            dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        Ok(Self {
            path: format!("/proc/self/fd/{}/{}", fd.as_raw_fd(), protocol::SOCKET_FILE).into(),
            _dir: Some(fd),
        })
    }
}
