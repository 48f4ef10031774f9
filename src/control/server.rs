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

use super::protocol::{MAX_REQUEST, Reply, Request, SOCKET_FILE, parse_request, reply_line};

/// Called when a request is waiting for the owner (wakes its loop or repaints).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Most clients connected at once; one more is told to wait for another to finish.
const MAX_CLIENTS: usize = 256;

/// A request for the owner to answer.
pub struct Incoming {
    pub request: Request,
    pub reply: Responder,
}

/// Where a request's answer goes, line by line. Cheap to keep (a follower keeps it until
/// its task ends).
pub struct Responder {
    tx: Sender<Reply>,
    /// Output bytes handed over and not yet written to the client.
    behind: Arc<AtomicUsize>,
}

impl Responder {
    /// Send a line of the answer; `false` once the client is gone.
    pub fn send(&self, reply: Reply) -> bool {
        if let Reply::Output(chunk) = &reply {
            self.behind.fetch_add(chunk_len(chunk), Ordering::AcqRel);
        }
        self.tx.send(reply).is_ok()
    }

    /// Output bytes the client has not read yet.
    pub fn behind(&self) -> usize {
        self.behind.load(Ordering::Acquire)
    }
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
}

/// The connected clients: their sockets (to hang up on them) and threads.
#[derive(Default)]
struct Clients {
    streams: HashMap<u64, UnixStream>,
    threads: Vec<JoinHandle<()>>,
}

/// Longest a run waits, as it ends, for its last answers to reach their clients.
const LAST_ANSWERS: std::time::Duration = std::time::Duration::from_secs(1);

impl Server {
    /// Listen in `dir` (a run's private folder, which this process holds). Requests
    /// arrive on the returned channel; `wake` is called after each.
    pub fn start(dir: &Path, wake: Wake) -> std::io::Result<(Self, Receiver<Incoming>)> {
        let path = dir.join(SOCKET_FILE);
        // One left by a poolscope that was killed: the folder is ours now (its lock).
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let (tx, rx) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let clients = Arc::new(Mutex::new(Clients::default()));
        let thread = {
            let stopping = Arc::clone(&stopping);
            let clients = Arc::clone(&clients);
            std::thread::Builder::new()
                .name("poolscope-control".into())
                .spawn(move || listen(&listener, &tx, &wake, &stopping, &clients))?
        };
        Ok((
            Self {
                path,
                stopping,
                clients,
                listener: Some(thread),
            },
            rx,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // The listener waits in accept: a connection of our own wakes it.
        let _ = UnixStream::connect(&self.path);
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
            if held.streams.len() >= MAX_CLIENTS {
                let _ = stream.write_all(&reply_line(&Reply::Error(format!(
                    "busy: {MAX_CLIENTS} clients are connected; try again when one is done"
                ))));
                continue;
            }
            if let Ok(copy) = stream.try_clone() {
                held.streams.insert(id, copy);
            }
        }
        let (tx, wake, clients_at_end) = (tx.clone(), Arc::clone(wake), Arc::clone(clients));
        let spawned = std::thread::Builder::new()
            .name("poolscope-client".into())
            .spawn(move || {
                serve_client(stream, &tx, &wake);
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

/// Read one line into `line` (without its newline), at most [`MAX_REQUEST`] bytes; the
/// rest of a longer line is read and dropped.
fn read_line(reader: &mut BufReader<UnixStream>, line: &mut Vec<u8>) -> Line {
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
    // Skip to the end of the oversized line without keeping it.
    line.clear();
    loop {
        let (done, used) = match reader.fill_buf() {
            Ok([]) | Err(_) => return Line::End,
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (true, at + 1),
                None => (false, buf.len()),
            },
        };
        reader.consume(used);
        if done {
            return Line::TooLong;
        }
    }
}

fn serve_client(stream: UnixStream, tx: &Sender<Incoming>, wake: &Wake) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::new();
    loop {
        let request = match read_line(&mut reader, &mut line) {
            Line::End => return,
            Line::TooLong => Err(format!(
                "request too long: at most {MAX_REQUEST} bytes per line (send many tasks in \
                 several add requests)"
            )),
            Line::Whole if line.iter().all(u8::is_ascii_whitespace) => continue,
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
        for reply in replies {
            if let Reply::Output(chunk) = &reply {
                behind.fetch_sub(chunk_len(chunk), Ordering::AcqRel);
            }
            answered = true;
            if writer.write_all(&reply_line(&reply)).is_err() {
                // The client left: its follow ends when the owner next writes to it.
                return;
            }
        }
        if !answered {
            let _ = writer.write_all(&reply_line(&Reply::Error(
                "the run ended before it answered".into(),
            )));
            return;
        }
    }
}
