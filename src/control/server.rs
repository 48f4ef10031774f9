//! The run's end of the socket: a listening thread, and a thread per client that reads
//! its request lines and writes what the run answers. Requests reach the run's owner (the
//! window, `poolscope run`) as [`Incoming`] on a channel, with a wake-up call so it
//! answers at once; the owner answers through the request's [`Responder`], and a request
//! is answered once its responder is dropped.
//!
//! Only this user gets in: the socket lives in the run's 0700 folder, and each peer's
//! uid is checked with `SO_PEERCRED` as well (a folder made readable by mistake lets
//! nobody else drive the run). A line that is not a request, or one longer than
//! [`MAX_REQUEST`], gets an error reply; the pool never sees it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::protocol::{
    MAX_REQUEST, OutputChunk, Reply, Request, SOCKET_FILE, parse_request, reply_line,
};

/// Called when a request is waiting for the owner (wakes its loop or repaints).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Most clients connected at once; one more is told to wait for another to finish.
/// Fewer when descriptors are scarce (`ulimit -n`): clients never take more than a
/// quarter of them, the rest is the pool's (three pipes and a pidfd per task).
const MAX_CLIENTS: usize = 256;
/// A client that sends nothing for this long between requests is hung up on: an idle
/// connection holds a thread and a descriptor.
const IDLE: std::time::Duration = std::time::Duration::from_mins(1);

/// How many clients may be connected at once here.
fn most_clients() -> usize {
    let descriptors = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(descriptors / 4)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_CLIENTS)
}

/// A request for the owner to answer.
pub struct Incoming {
    pub request: Request,
    pub reply: Responder,
}

/// Where a request's answer goes, line by line. Cheap to keep (a follower keeps it until
/// its task ends).
pub struct Responder {
    tx: Sender<Answer>,
    /// Output bytes handed over and not yet written to the client.
    behind: Arc<AtomicUsize>,
}

impl Responder {
    /// Send a line of the answer; `false` once the client is gone.
    pub fn send(&self, reply: Reply) -> bool {
        if let Reply::Output(chunk) = &reply {
            self.behind.fetch_add(chunk_len(chunk), Ordering::AcqRel);
        }
        self.tx.send(Answer::Line(reply)).is_ok()
    }

    /// Send `len` bytes of an output file from `start`, as `stream` output: read by the
    /// client's thread as its client reads them, never all in memory.
    pub fn send_file(&self, stream: &'static str, path: PathBuf, start: u64, len: u64) -> bool {
        len == 0
            || self
                .tx
                .send(Answer::File {
                    stream,
                    path,
                    start,
                    len,
                })
                .is_ok()
    }

    /// Output bytes the client has not read yet.
    pub fn behind(&self) -> usize {
        self.behind.load(Ordering::Acquire)
    }
}

/// A line of an answer, or output for the client's thread to read from a file.
enum Answer {
    Line(Reply),
    File {
        stream: &'static str,
        path: PathBuf,
        start: u64,
        len: u64,
    },
}

fn chunk_len(chunk: &super::protocol::OutputChunk) -> usize {
    chunk
        .text
        .as_ref()
        .or(chunk.bytes.as_ref())
        .map_or(0, String::len)
}

/// A listening socket in a run's folder. Dropping it stops listening, removes the
/// socket and hangs up on every client.
pub struct Server {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    clients: Arc<Mutex<Clients>>,
    listener: Option<JoinHandle<()>>,
    /// The listening socket, to wake its thread at the end.
    waker: Arc<UnixListener>,
}

/// The connected clients: their sockets (to hang up on them) and threads.
#[derive(Default)]
struct Clients {
    streams: HashMap<u64, Arc<UnixStream>>,
    threads: Vec<JoinHandle<()>>,
}

/// Longest a run waits, as it ends, for its last answers to reach their clients.
const LAST_ANSWERS: std::time::Duration = std::time::Duration::from_secs(1);

impl Server {
    /// The socket in `dir` (a run's private folder, which this process holds), bound
    /// and listening; its clients wait in its backlog until [`Bound::serve`] answers
    /// them.
    pub fn bind(dir: &Path) -> std::io::Result<Bound> {
        let path = dir.join(SOCKET_FILE);
        // One left by a poolscope that was killed: the folder is ours now (its lock).
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&super::SocketAddress::of(dir)?.path)?;
        let bound = Bound {
            path,
            listener: Arc::new(listener),
        };
        std::fs::set_permissions(&bound.path, std::fs::Permissions::from_mode(0o600))?;
        Ok(bound)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A run's socket, listening, that nobody answers yet (see [`Server::bind`]). Dropped
/// unserved, it is removed.
pub struct Bound {
    /// Taken by the [`Server`] that [`Bound::serve`] makes (empty then).
    path: PathBuf,
    listener: Arc<UnixListener>,
}

impl Bound {
    /// Answer the clients on a thread of their own: requests arrive on the returned
    /// channel; `wake` is called after each.
    pub fn serve(mut self, wake: Wake) -> std::io::Result<(Server, Receiver<Incoming>)> {
        let (tx, rx) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let clients = Arc::new(Mutex::new(Clients::default()));
        // The listener itself, to wake its thread at the end: a connection to its path
        // would not reach it if the run's folder was removed meanwhile, and would need a
        // descriptor (a copy of the listener too), which a run short of them may not have
        // then.
        let waker = Arc::clone(&self.listener);
        let thread = {
            let (listener, stopping) = (Arc::clone(&self.listener), Arc::clone(&stopping));
            let clients = Arc::clone(&clients);
            std::thread::Builder::new()
                .name("poolscope-control".into())
                .spawn(move || listen(&listener, &tx, &wake, &stopping, &clients))?
        };
        Ok((
            Server {
                path: std::mem::take(&mut self.path),
                stopping,
                clients,
                listener: Some(thread),
                waker,
            },
            rx,
        ))
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // The listener waits in accept: shutting the socket down wakes it (accept fails),
        // wherever its path is now; else a connection of our own does.
        let woken = rustix::net::shutdown(&*self.waker, rustix::net::Shutdown::Read).is_ok();
        if !woken
            && let Some(dir) = self.path.parent()
            && let Ok(address) = super::SocketAddress::of(dir)
        {
            let _ = UnixStream::connect(&address.path);
        }
        if let Some(thread) = self.listener.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
        // Clients waiting to send a request are hung up on; answers already given are
        // still written (a `close` is answered before its run ends).
        let threads = {
            let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
            for (_, client) in clients.streams.drain() {
                let _ = client.shutdown(std::net::Shutdown::Read);
            }
            std::mem::take(&mut clients.threads)
        };
        let deadline = std::time::Instant::now() + LAST_ANSWERS;
        for thread in threads {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
}

fn listen(
    listener: &UnixListener,
    tx: &Sender<Incoming>,
    wake: &Wake,
    stopping: &AtomicBool,
    clients: &Arc<Mutex<Clients>>,
) {
    static NEXT_CLIENT: AtomicU64 = AtomicU64::new(0);
    let me = rustix::process::geteuid().as_raw();
    let most = most_clients();
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut stream) = stream else {
            // Out of descriptors: a client waits in the backlog until one is free.
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        };
        match rustix::net::sockopt::socket_peercred(&stream) {
            Ok(peer) if peer.uid.as_raw() == me => {}
            Ok(peer) => {
                log::warn!(
                    "refused a client of uid {} (PID {}): only uid {me} may drive this run",
                    peer.uid.as_raw(),
                    peer.pid.as_raw_nonzero()
                );
                let _ = stream.write_all(&reply_line(&Reply::Error(format!(
                    "refused: this run belongs to uid {me}, and only its user may drive it"
                ))));
                continue;
            }
            Err(e) => {
                let _ = stream.write_all(&reply_line(&Reply::Error(format!(
                    "refused: cannot tell who is connecting ({e})"
                ))));
                continue;
            }
        }
        let id = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed);
        {
            let mut held = clients.lock().unwrap_or_else(PoisonError::into_inner);
            held.threads.retain(|t| !t.is_finished());
            if held.streams.len() >= most {
                let _ = stream.write_all(&reply_line(&Reply::Error(format!(
                    "busy: {most} clients are connected, the most this run serves at once; \
                     try again when one is done"
                ))));
                continue;
            }
        }
        let stream = Arc::new(stream);
        clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .streams
            .insert(id, Arc::clone(&stream));
        let (tx, wake, clients_at_end) = (tx.clone(), Arc::clone(wake), Arc::clone(clients));
        let spawned = std::thread::Builder::new()
            .name("poolscope-client".into())
            .spawn(move || {
                serve_client(&stream, &tx, &wake);
                clients_at_end
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .streams
                    .remove(&id);
            });
        let mut held = clients.lock().unwrap_or_else(PoisonError::into_inner);
        match spawned {
            Ok(thread) => held.threads.push(thread),
            Err(_) => {
                held.streams.remove(&id);
            }
        }
    }
}

/// What reading one request line gave.
enum Line {
    Whole,
    TooLong,
    /// The client hung up (mid-line or between requests): nothing to answer.
    End,
}

/// Read one line into `line` (without its newline), at most [`MAX_REQUEST`] bytes: a
/// longer one is [`Line::TooLong`] as soon as it is, and its rest is left to
/// [`skip_line`] (the client hears why at once, not when it ends the line).
fn read_line(reader: &mut BufReader<&UnixStream>, line: &mut Vec<u8>) -> Line {
    line.clear();
    let limit = MAX_REQUEST as u64 + 1;
    match reader.by_ref().take(limit).read_until(b'\n', line) {
        Ok(0) | Err(_) => return Line::End,
        Ok(_) => {}
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Line::Whole;
    }
    if line.len() <= MAX_REQUEST {
        return Line::End;
    }
    line.clear();
    Line::TooLong
}

/// Read and drop the rest of a line; `false` if the client hung up first.
fn skip_line(reader: &mut BufReader<&UnixStream>) -> bool {
    loop {
        let (done, used) = match reader.fill_buf() {
            Ok([]) | Err(_) => return false,
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (true, at + 1),
                None => (false, buf.len()),
            },
        };
        reader.consume(used);
        if done {
            return true;
        }
    }
}

fn serve_client(stream: &UnixStream, tx: &Sender<Incoming>, wake: &Wake) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let mut writer = stream;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::new();
    loop {
        let request = match read_line(&mut reader, &mut line) {
            Line::End => return,
            Line::TooLong => {
                let refused = writer.write_all(&reply_line(&Reply::Error(format!(
                    "request too long: at most {MAX_REQUEST} bytes per line (send many tasks \
                     in several add requests)"
                ))));
                if refused.is_err() || !skip_line(&mut reader) {
                    return;
                }
                continue;
            }
            Line::Whole => parse_request(&line),
        };
        let request = match request {
            Ok(request) => request,
            Err(message) => {
                if writer
                    .write_all(&reply_line(&Reply::Error(message)))
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let (reply_tx, replies) = mpsc::channel();
        let behind = Arc::new(AtomicUsize::new(0));
        let incoming = Incoming {
            request,
            reply: Responder {
                tx: reply_tx,
                behind: Arc::clone(&behind),
            },
        };
        if tx.send(incoming).is_err() {
            let _ = writer.write_all(&reply_line(&Reply::Error(
                "the run has ended: it takes no more requests".into(),
            )));
            return;
        }
        wake();
        let mut answered = false;
        for answer in replies {
            answered = true;
            let written = match answer {
                Answer::Line(reply) => {
                    if let Reply::Output(chunk) = &reply {
                        behind.fetch_sub(chunk_len(chunk), Ordering::AcqRel);
                    }
                    writer.write_all(&reply_line(&reply))
                }
                Answer::File {
                    stream,
                    path,
                    start,
                    len,
                } => write_file(&mut writer, stream, &path, start, len),
            };
            if written.is_err() {
                // The client left: its follow ends when the owner next writes to it.
                return;
            }
        }
        if !answered {
            let _ = writer.write_all(&reply_line(&Reply::Error(
                "the run ended before it answered: this request was not carried out".into(),
            )));
            return;
        }
    }
}

/// Bytes `start..start + len` of an output file as output lines, a piece at a time (a
/// character cut by a piece's end goes with the next piece, so text stays text).
fn write_file(
    out: &mut impl Write,
    stream: &str,
    path: &Path,
    start: u64,
    len: u64,
) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    const PIECE: usize = 256 * 1024;
    let opened = std::fs::File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(start))?;
        Ok(file)
    });
    let file = match opened {
        Ok(file) => file,
        Err(e) => {
            let note = format!("(cannot read the output file {}: {e})\n", path.display());
            return out.write_all(&reply_line(&Reply::Output(OutputChunk::new(
                "note",
                note.as_bytes(),
            ))));
        }
    };
    let mut file = file.take(len);
    let mut piece = Vec::with_capacity(PIECE + 4);
    loop {
        let carried = piece.len();
        piece.resize(carried + PIECE, 0);
        let read = file.read(&mut piece[carried..]).unwrap_or(0);
        piece.truncate(carried + read);
        if piece.is_empty() {
            return Ok(());
        }
        // Keep an incomplete last character for the next piece (unless this is the end).
        let whole = match std::str::from_utf8(&piece) {
            Err(e) if read > 0 && e.error_len().is_none() => e.valid_up_to(),
            _ => piece.len(),
        };
        if whole > 0 {
            out.write_all(&reply_line(&Reply::Output(OutputChunk::new(
                stream,
                &piece[..whole],
            ))))?;
        }
        piece.drain(..whole);
        // At the end nothing is carried: the last piece went whole.
        if read == 0 {
            return Ok(());
        }
    }
}
