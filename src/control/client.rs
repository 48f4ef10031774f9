//! The client's side: find this user's live runs under a run root, connect to one, send
//! requests and read the replies.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::protocol::{Reply, Request, RunInfo, SOCKET_FILE, request_line};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no live run here ({}): start one with `poolscope run --serve`, `poolscope run …` \
         or the window",
        root.display()
    )]
    NoRun { root: PathBuf },
    #[error("{count} runs are live; name one with --run ID:\n{list}")]
    Several { count: usize, list: String },
    #[error("no live run matches `{0}` (`poolscope ls` lists them)")]
    NoMatch(String),
    #[error(
        "cannot reach run {}: permission denied (only the user who runs it may drive it)",
        dir.display()
    )]
    Denied { dir: PathBuf },
    #[error("run {} is not live (it ended, or was killed)", dir.display())]
    NotLive { dir: PathBuf },
    #[error("cannot talk to run {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("run {} answered with something that is not a reply: {what}", dir.display())]
    Garbled { dir: PathBuf, what: String },
    #[error("run {} hung up before it answered (it ended)", dir.display())]
    HungUp { dir: PathBuf },
    #[error(
        "run {} did not answer within {within} s: it may be stopped (SIGSTOP, Ctrl-Z), \
         overloaded, or out of file descriptors",
        dir.display()
    )]
    Silent { dir: PathBuf, within: u64 },
    /// The run answered with an error.
    #[error("{0}")]
    Refused(String),
}

/// Longest wait for a one-line answer (a `follow` waits as long as its task runs).
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// A connection to one live run.
pub struct Connection {
    dir: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Connection {
    /// Connect to the run in folder `dir`.
    pub fn open(dir: &Path) -> Result<Self, ClientError> {
        let stream = super::SocketAddress::of(dir)
            .and_then(|address| UnixStream::connect(&address.path))
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::PermissionDenied => ClientError::Denied {
                    dir: dir.to_owned(),
                },
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    ClientError::NotLive {
                        dir: dir.to_owned(),
                    }
                }
                _ => ClientError::Io {
                    dir: dir.to_owned(),
                    source,
                },
            })?;
        let writer = stream.try_clone().map_err(|source| ClientError::Io {
            dir: dir.to_owned(),
            source,
        })?;
        let mut connection = Self {
            dir: dir.to_owned(),
            reader: BufReader::with_capacity(256 * 1024, stream),
            writer,
        };
        connection.bounded(true);
        Ok(connection)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// Send a request (its answer is read with [`Connection::reply`]).
    pub fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        let line = request_line(request);
        match self.writer.write_all(line.as_bytes()) {
            Ok(()) => Ok(()),
            // The run hung up at once: it may have said why (a refused user).
            Err(e) => match self.reply() {
                Err(refused @ ClientError::Refused(_)) => Err(refused),
                _ => Err(self.io(e)),
            },
        }
    }

    /// The next reply line as it came (without its newline).
    pub fn raw_reply(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => Err(ClientError::HungUp {
                dir: self.dir.clone(),
            }),
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Ok(line)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(ClientError::Silent {
                    dir: self.dir.clone(),
                    within: self
                        .reader
                        .get_ref()
                        .read_timeout()
                        .ok()
                        .flatten()
                        .map_or(ANSWER_WITHIN.as_secs(), |t| t.as_secs()),
                })
            }
            Err(e) => Err(self.io(e)),
        }
    }

    /// Wait at most [`ANSWER_WITHIN`] for each reply line (`false`: as long as it takes).
    pub fn bounded(&mut self, bounded: bool) {
        let _ = self
            .reader
            .get_ref()
            .set_read_timeout(bounded.then_some(ANSWER_WITHIN));
    }

    /// The next reply line; an error reply is [`ClientError::Refused`].
    pub fn reply(&mut self) -> Result<Reply, ClientError> {
        let line = self.raw_reply()?;
        match serde_json::from_slice::<Reply>(&line) {
            Ok(Reply::Error(message)) => Err(ClientError::Refused(message)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(ClientError::Garbled {
                dir: self.dir.clone(),
                what: format!("{e}"),
            }),
        }
    }

    /// Send a request with a one-line answer, and read it.
    pub fn ask(&mut self, request: &Request) -> Result<Reply, ClientError> {
        self.send(request)?;
        self.reply()
    }
}

/// The run folders under `root` that have a socket, newest last.
fn with_sockets(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| {
            dir.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("run-"))
                && dir.join(SOCKET_FILE).exists()
        })
        .collect();
    dirs.sort();
    dirs
}

/// Longest `ls` waits for each run: a stopped run is reported, not waited for.
const LIST_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The runs under `root` with a socket: those that answer, and those whose poolscope
/// holds the socket but did not answer in time (stopped).
#[derive(Debug, Default)]
pub struct Found {
    pub live: Vec<RunInfo>,
    pub silent: Vec<PathBuf>,
    /// Runs that answered they serve as many clients as they can now, and their words.
    pub busy: Vec<(PathBuf, String)>,
}

/// The live runs under `root` (the runs folder as `RunRoot` opened it), oldest first:
/// those whose socket answers. A run that was killed left its socket behind; nobody
/// answers on it, and it is not listed.
pub fn live_runs(root: &Path) -> Found {
    let mut found = Found::default();
    for dir in with_sockets(root) {
        let Ok(mut connection) = Connection::open(&dir) else {
            continue;
        };
        let _ = connection
            .reader
            .get_ref()
            .set_read_timeout(Some(LIST_WITHIN));
        match connection.ask(&Request::Info) {
            Ok(Reply::Info(info)) => found.live.push(info),
            Err(ClientError::Silent { .. }) => found.silent.push(dir),
            Err(ClientError::Refused(why)) => found.busy.push((dir, why)),
            _ => {}
        }
    }
    found
}

/// The run a client means: `wanted` (a run folder, its name, or a unique part of it such
/// as its PID), else the one live run under `root`.
pub fn find_run(root: &Path, wanted: Option<&str>) -> Result<PathBuf, ClientError> {
    if let Some(wanted) = wanted {
        let as_path = Path::new(wanted);
        if wanted.contains('/') && as_path.is_dir() {
            return Ok(as_path.to_owned());
        }
        let named = root.join(wanted);
        if !wanted.contains('/') && named.join(SOCKET_FILE).exists() {
            return Ok(named);
        }
        let matching: Vec<PathBuf> = with_sockets(root)
            .into_iter()
            .filter(|dir| {
                dir.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(&format!("-{wanted}")) || n.contains(wanted))
            })
            .collect();
        return match matching.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ClientError::NoMatch(wanted.to_owned())),
            many => Err(several(
                &many
                    .iter()
                    .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>(),
            )),
        };
    }
    let found = live_runs(root);
    match found.live.as_slice() {
        [one] => Ok(one.dir.clone()),
        [] if !found.busy.is_empty() => Err(ClientError::Refused(format!(
            "run {}: {}",
            found.busy[0].0.display(),
            found.busy[0].1
        ))),
        [] if !found.silent.is_empty() => Err(ClientError::Silent {
            dir: found.silent[0].clone(),
            within: LIST_WITHIN.as_secs(),
        }),
        [] => Err(ClientError::NoRun {
            root: root.to_owned(),
        }),
        many => Err(several(
            &many
                .iter()
                .map(|r| format!("{} ({}, PID {})", r.id, r.place, r.pid))
                .collect::<Vec<_>>(),
        )),
    }
}

fn several(names: &[String]) -> ClientError {
    ClientError::Several {
        count: names.len(),
        list: names
            .iter()
            .map(|n| format!("  {n}"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}
