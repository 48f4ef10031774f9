//! Persistent workers on a Slurm cluster (pilot jobs, as `HyperQueue` runs them): for each
//! slot, the worker backend starts a *relay* on this machine exactly as it starts a local
//! worker. The relay submits the real worker as a Slurm job, waits for it to connect back
//! over TCP (with the run's secret), then passes frames between poolscope and it: jobs
//! as they come, reports with the worker's clock mapped onto this machine's. So a task on
//! the cluster costs a frame each way, not a Slurm job; and everything the worker
//! backend does with a local worker (a lost worker failing only its task and being
//! replaced, retiring after `maxtasksperchild`, being stopped) holds unchanged.
//!
//! The relay ends its job whenever it ends: poolscope closing its pipe, a signal (the
//! orphan guard's SIGTERM when poolscope is killed), or the worker going away. A worker
//! that loses its connection ends at once with its command; one that cannot reach its
//! relay gives up after a minute.
//!
//! What the wire protects: a connection is taken only with the run's secret (32 random
//! bytes in a 0600 file of the run folder, which the nodes read from the shared
//! filesystem); a wrong one is refused and said on the relay's stderr. Nothing is
//! encrypted: task commands, their environment and output cross the network in the
//! clear, as they do for `srun`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::executor::worker::{
    ArrayPlace, ConnectTo, FromWorker, PROTOCOL_VERSION, ReportReader, WorkerConfig, encode_report,
    monotonic_ns,
};

/// The run's secret, in its Slurm folder.
pub const SECRET_FILE: &str = "workers.secret";
/// Every worker job the relays submitted, one per line (`J`, or `J_i` for an element of
/// the pool's first array), to find them after a crash.
pub const JOBS_FILE: &str = "workers.jobs";
/// How often the worker's job is looked at while it has not connected, and while it runs.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a connection may take to say hello (a worker says it as it connects; the
/// relay waits for nothing else meanwhile).
const HELLO_WITHIN: Duration = Duration::from_millis(500);

/// Make the run's secret if it has none yet (readable by the user only).
pub fn ensure_secret(folder: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(folder)?;
    let path = folder.join(SECRET_FILE);
    if path.exists() {
        return Ok(path);
    }
    // Written whole under another name, then renamed: a reader never sees it half made,
    // and of two makers at once the first one's stays.
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex = bytes.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    });
    let draft = folder.join(format!("{SECRET_FILE}.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&draft)?;
    writeln!(file, "{hex}")?;
    drop(file);
    // A hard link fails if the secret exists: then the one already there is the secret.
    let linked = std::fs::hard_link(&draft, &path);
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(path),
        Err(e) => Err(e),
    }
}

/// The relay's own main (the `__worker` role with a relay plan).
pub fn main(config: &WorkerConfig) -> u8 {
    // Poolscope gone: end the job too (SIGTERM is caught below, SIGKILL could not be).
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    let stop = Arc::new(AtomicUsize::new(0));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        if signal_hook::flag::register_usize(signal, Arc::clone(&stop), signal as usize).is_err() {
            return 1;
        }
    }
    if rustix::process::getppid().is_none_or(|p| p.as_raw_nonzero().get() == 1) {
        return 1;
    }
    match Relay::start(config, Arc::clone(&stop)) {
        Ok(mut relay) => {
            let code = relay.run();
            relay.cancel();
            // Ended by a signal (a kill of its task, poolscope's end): die by it, as a
            // local worker would, once the job is cancelled.
            if let Ok(signal) = i32::try_from(stop.load(Ordering::Relaxed))
                && signal != 0
            {
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
            code
        }
        Err(e) => {
            // Poolscope says it, with the task it fails (unless it is ending anyway).
            if stop.load(Ordering::Relaxed) == 0 {
                say_lost(&e);
            }
            3
        }
    }
}

struct Relay {
    /// The job that runs this relay's worker; `None` while the array it is an element of
    /// has not been submitted by relay 0 yet.
    job: Option<WorkerJob>,
    /// Where relay 0 says which array it submitted (relays other than 0).
    array_job_file: Option<PathBuf>,
    /// This relay's element of that array.
    array_index: Option<u64>,
    folder: PathBuf,
    started: Instant,
    listener: TcpListener,
    secret: String,
    stop: Arc<AtomicUsize>,
    /// What poolscope sent before the worker connected, and not yet taken by it.
    to_worker: Vec<u8>,
    stdin_closed: bool,
}

impl Relay {
    fn start(config: &WorkerConfig, stop: Arc<AtomicUsize>) -> Result<Self, String> {
        let plan = config.relay.as_ref().ok_or("no relay plan")?;
        let secret_file = ensure_secret(&plan.folder)
            .map_err(|e| format!("the run's secret in {}: {e}", plan.folder.display()))?;
        let secret = std::fs::read_to_string(&secret_file)
            .map_err(|e| format!("{}: {e}", secret_file.display()))?
            .trim()
            .to_owned();
        let listener =
            TcpListener::bind(("0.0.0.0", 0)).map_err(|e| format!("cannot listen: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let host = plan
            .host
            .clone()
            .unwrap_or_else(crate::executor::worker::host_name);
        // A name this machine cannot resolve, the nodes most likely cannot either: said
        // now, rather than by each worker after a minute of trying.
        {
            use std::net::ToSocketAddrs;
            (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("workers could not reach {host}: {e}"))?;
        }
        let worker = WorkerConfig {
            relay: None,
            connect: Some(ConnectTo {
                address: format!("{host}:{port}"),
                secret_file,
            }),
            ..config.clone()
        };
        let mut array_job_file = None;
        let job = match &plan.array {
            None => Some(WorkerJob {
                job: submit(&plan.folder, &plan.sbatch, &worker)?,
                index: None,
            }),
            Some(place) => {
                // The element finds its configuration (where to connect) in the folder.
                let config = serde_json::to_string(&worker).map_err(|e| e.to_string())?;
                write_whole(&array_file(&plan.folder, place, Some(place.index)), &config)?;
                let job_file = array_file(&plan.folder, place, None);
                if place.index == 0 {
                    let submitted = submit_array(&plan.folder, &plan.sbatch, place);
                    let said = match &submitted {
                        Ok(job) => job.to_string(),
                        Err(e) => format!("error: {e}"),
                    };
                    write_whole(&job_file, &said)?;
                    Some(WorkerJob {
                        job: submitted?,
                        index: Some(0),
                    })
                } else {
                    array_job_file = Some(job_file);
                    None
                }
            }
        };
        if let Some(job) = job {
            note_job(&plan.folder, job);
        }
        Ok(Self {
            job,
            array_job_file,
            array_index: plan.array.as_ref().map(|place| u64::from(place.index)),
            folder: plan.folder.clone(),
            started: Instant::now(),
            listener,
            secret,
            stop,
            to_worker: Vec::new(),
            stdin_closed: false,
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != 0
    }

    fn cancel(&mut self) {
        // A relay ending before it learnt its element still ends it, if it can now.
        let _ = self.learn_job();
        if let Some(job) = self.job {
            let _ = super::cancel(job.job, job.index);
        }
    }

    /// Relays other than 0: find the array relay 0 submitted (`Ok(None)`: not yet).
    fn learn_job(&mut self) -> Result<Option<WorkerJob>, String> {
        if self.job.is_some() {
            return Ok(self.job);
        }
        let Some(file) = &self.array_job_file else {
            return Ok(None);
        };
        let Ok(text) = std::fs::read_to_string(file) else {
            if self.started.elapsed() >= ARRAY_WITHIN {
                return Err(format!(
                    "no worker job array was submitted within {} s",
                    ARRAY_WITHIN.as_secs()
                ));
            }
            return Ok(None);
        };
        let text = text.trim();
        if let Some(why) = text.strip_prefix("error: ") {
            return Err(why.to_owned());
        }
        let job = text
            .parse()
            .map_err(|_| format!("{}: not a job id: {text}", file.display()))?;
        let job = WorkerJob {
            job,
            index: self.array_index,
        };
        self.job = Some(job);
        note_job(&self.folder, job);
        Ok(Some(job))
    }

    /// Wait for the worker, then relay until one side is done; the exit code.
    fn run(&mut self) -> u8 {
        let (stream, hello) = match self.wait_for_worker() {
            Ok(Some(found)) => found,
            // Poolscope is done with this slot before its worker came.
            Ok(None) => return 0,
            Err(why) => {
                say_lost(&why);
                return 3;
            }
        };
        let mut stdout = io::stdout().lock();
        let mut out = Vec::new();
        let FromWorker::Hello {
            pid, host, now_ns, ..
        } = hello
        else {
            return 3;
        };
        // The worker's clock onto ours: its hello's time is now here (less the trip).
        let offset = i128::from(monotonic_ns()) - i128::from(now_ns.unwrap_or_default());
        encode_report(
            &FromWorker::Hello {
                version: PROTOCOL_VERSION,
                pid,
                host,
                now_ns: None,
                secret: None,
            },
            &mut out,
        );
        if stdout
            .write_all(&out)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return 1;
        }
        match self.pass(&stream, &mut stdout, offset) {
            Ok(()) => 0,
            Err(why) => {
                drop(stdout);
                say_lost(&why);
                1
            }
        }
    }

    /// Read what poolscope sends while there is no worker yet; false once it closed.
    fn take_stdin(&mut self) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        match io::stdin().lock().read(&mut chunk) {
            Ok(0) | Err(_) => {
                self.stdin_closed = true;
                false
            }
            Ok(n) => {
                self.to_worker.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn wait_for_worker(&mut self) -> Result<Option<(TcpStream, FromWorker)>, String> {
        let mut checked = Instant::now();
        loop {
            if self.stopped() {
                return Ok(None);
            }
            // Until relay 0 says which array it submitted, look for its word often.
            let wait = if self.learn_job()?.is_some() {
                Duration::from_millis(200)
            } else {
                Duration::from_millis(20)
            };
            let (listen_ready, stdin_ready) = {
                let stdin = io::stdin();
                let mut fds = [
                    PollFd::new(&self.listener, PollFlags::IN),
                    PollFd::new(&stdin, PollFlags::IN),
                ];
                let fds = if self.stdin_closed {
                    &mut fds[..1]
                } else {
                    &mut fds[..]
                };
                poll(fds, wait);
                (
                    !fds[0].revents().is_empty(),
                    fds.len() > 1 && !fds[1].revents().is_empty(),
                )
            };
            if stdin_ready && !self.take_stdin() {
                // Closed before the worker came: nothing for it to do.
                return Ok(None);
            }
            if listen_ready && let Ok((stream, from)) = self.listener.accept() {
                match self.handshake(&stream) {
                    Ok(hello) => return Ok(Some((stream, hello))),
                    Err(why) => {
                        eprintln!("poolscope relay: refused a connection from {from}: {why}");
                    }
                }
            }
            if checked.elapsed() >= CHECK_EVERY {
                checked = Instant::now();
                if let Some(end) = self.job.and_then(job_end) {
                    return Err(format!("its job ended ({end}) before it connected"));
                }
            }
        }
    }

    /// The first frame must be a hello of this protocol with the run's secret.
    fn handshake(&self, mut stream: &TcpStream) -> Result<FromWorker, String> {
        stream
            .set_read_timeout(Some(HELLO_WITHIN))
            .map_err(|e| e.to_string())?;
        let mut reader = ReportReader::default();
        let mut chunk = [0u8; 4096];
        let hello = loop {
            match reader.next_report() {
                Ok(Some(hello)) => break hello,
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            match stream.read(&mut chunk) {
                Ok(0) => return Err("it closed before saying hello".to_owned()),
                Ok(n) => reader.extend(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!("no hello within {} ms", HELLO_WITHIN.as_millis()));
                }
                Err(e) => return Err(format!("no hello: {e}")),
            }
        };
        match &hello {
            FromWorker::Hello { secret, .. } if secret.as_deref() != Some(&self.secret) => {
                Err("wrong secret".to_owned())
            }
            FromWorker::Hello { version, .. } if *version != PROTOCOL_VERSION => Err(format!(
                "it speaks protocol {version}, not {PROTOCOL_VERSION}"
            )),
            FromWorker::Hello { .. } => {
                stream.set_read_timeout(None).map_err(|e| e.to_string())?;
                stream.set_nonblocking(true).map_err(|e| e.to_string())?;
                let _ = stream.set_nodelay(true);
                Ok(hello)
            }
            _ => Err("its first frame is not a hello".to_owned()),
        }
    }

    /// Pass frames both ways until poolscope and the worker are both done (`Ok`), or the
    /// worker is gone while poolscope was not (`Err`: why, in Slurm's words).
    fn pass(
        &mut self,
        mut stream: &TcpStream,
        stdout: &mut impl Write,
        offset: i128,
    ) -> Result<(), String> {
        let mut reader = ReportReader::default();
        let mut chunk = vec![0u8; 1 << 20];
        let mut out = Vec::new();
        let mut checked = Instant::now();
        loop {
            if self.stopped() {
                return Ok(());
            }
            let (stdin_ready, worker_ready, worker_writable, knocked) = {
                let stdin = io::stdin();
                let want_write = if self.to_worker.is_empty() {
                    PollFlags::empty()
                } else {
                    PollFlags::OUT
                };
                let mut fds = [
                    PollFd::new(&stream, PollFlags::IN | want_write),
                    PollFd::new(&self.listener, PollFlags::IN),
                    PollFd::new(&stdin, PollFlags::IN),
                ];
                let fds = if self.stdin_closed {
                    &mut fds[..2]
                } else {
                    &mut fds[..]
                };
                poll(fds, Duration::from_millis(500));
                let worker = fds[0].revents();
                (
                    fds.len() > 2 && !fds[2].revents().is_empty(),
                    worker.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR),
                    worker.contains(PollFlags::OUT),
                    !fds[1].revents().is_empty(),
                )
            };
            if knocked && let Ok((other, from)) = self.listener.accept() {
                // Every connection is answered: a wrong one refused, a second worker too.
                let why = match self.handshake(&other) {
                    Ok(_) => "this slot's worker is connected already".to_owned(),
                    Err(why) => why,
                };
                eprintln!("poolscope relay: refused a connection from {from}: {why}");
            }
            if stdin_ready {
                self.take_stdin();
            }
            if (worker_writable || stdin_ready) && !self.to_worker.is_empty() {
                match stream.write(&self.to_worker) {
                    Ok(n) => {
                        self.to_worker.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return self.worker_gone(),
                }
            }
            if worker_ready {
                match stream.read(&mut chunk) {
                    Ok(0) => return self.worker_gone(),
                    Ok(n) => {
                        reader.extend(&chunk[..n]);
                        out.clear();
                        while let Some(report) = reader.next_report()? {
                            if let Some(report) = on_this_clock(report, offset) {
                                encode_report(&report, &mut out);
                            }
                        }
                        if stdout
                            .write_all(&out)
                            .and_then(|()| stdout.flush())
                            .is_err()
                        {
                            // Poolscope is gone.
                            return Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return self.worker_gone(),
                }
            }
            if checked.elapsed() >= CHECK_EVERY {
                checked = Instant::now();
                // A node that failed never closes the connection: Slurm says it.
                if let Some(end) = self.learn_job().ok().flatten().and_then(job_end) {
                    return Err(end);
                }
            }
        }
    }

    /// The worker's connection ended: by itself (it retired, or was told to stop), or
    /// because Slurm ended its job.
    fn worker_gone(&mut self) -> Result<(), String> {
        if self.stdin_closed {
            // Poolscope is done with it: its leaving is expected.
            return Ok(());
        }
        // Slurm records a cancel or a time-out as the job's state at once; give it a
        // moment to settle one that is still being torn down.
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            match self.learn_job().ok().flatten().and_then(job_end) {
                Some(end) if end != "COMPLETED" => return Err(end),
                Some(_) => return Ok(()),
                None if Instant::now() >= until => return Err("its connection closed".to_owned()),
                // No event tells when Slurm's record changes: look again shortly.
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// Tell poolscope why this slot has no worker (what a failed task then says).
fn say_lost(why: &str) {
    // One line: Slurm's messages come in several.
    let why = why
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let mut out = Vec::new();
    encode_report(&FromWorker::Lost { why }, &mut out);
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(&out).and_then(|()| stdout.flush());
}

/// A worker's report with its times on this machine's clock; `None` for what must not
/// reach poolscope (a command's PID on another machine would name a process here).
fn on_this_clock(report: FromWorker, offset: i128) -> Option<FromWorker> {
    let map = |ns: u64| u64::try_from((i128::from(ns) + offset).max(0)).unwrap_or(u64::MAX);
    Some(match report {
        FromWorker::Started {
            task,
            attempt,
            at_ns,
        } => FromWorker::Started {
            task,
            attempt,
            at_ns: map(at_ns),
        },
        FromWorker::Finished {
            task,
            attempt,
            at_ns,
            exit,
        } => FromWorker::Finished {
            task,
            attempt,
            at_ns: map(at_ns),
            exit,
        },
        FromWorker::Initialized {
            from_ns,
            to_ns,
            error,
        } => FromWorker::Initialized {
            from_ns: map(from_ns),
            to_ns: map(to_ns),
            error,
        },
        FromWorker::Child { .. } | FromWorker::Hello { .. } => return None,
        other => other,
    })
}

fn poll(fds: &mut [PollFd<'_>], timeout: Duration) {
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    });
    let _ = rustix::event::poll(fds, Some(&timeout));
}

/// Submit one worker as a job; its id.
fn submit(folder: &Path, options: &[String], worker: &WorkerConfig) -> Result<u64, String> {
    let config = serde_json::to_string(worker).map_err(|e| e.to_string())?;
    let script = folder.join(format!("worker-{}.sh", std::process::id()));
    let log = folder.join("worker-%j.log");
    submit_script(&script, &shell_word(&config), &log, &[], options)
}

/// Submit the pool's first workers as one job array (`%` throttled to its size): element
/// `i` reads the configuration relay `i` wrote. The array's id.
fn submit_array(folder: &Path, options: &[String], place: &ArrayPlace) -> Result<u64, String> {
    // `array_file(folder, place, Some(i))` as the shell spells it for the element's `i`.
    let prefix = folder.join(format!("array-{}-", place.cohort));
    let config = format!(
        "{}\"$SLURM_ARRAY_TASK_ID\"{}",
        shell_word(&format!("@{}", prefix.display())),
        shell_word(".json")
    );
    let script = folder.join(format!("workers-{}.sh", place.cohort));
    let log = folder.join("worker-%A_%a.log");
    let last = place.size.max(1) - 1;
    let array = [format!("--array=0-{last}%{}", place.size.max(1))];
    submit_script(&script, &config, &log, &array, options)
}

/// Write the job script that starts a worker with `config` (a shell word), and submit it.
fn submit_script(
    script: &Path,
    config: &str,
    log: &Path,
    extra: &[String],
    options: &[String],
) -> Result<u64, String> {
    let helper = crate::executor::helper_program();
    let text = format!(
        "#!/bin/sh\n# A poolscope worker: it connects back to its relay.\nexec {} {} {config}\n",
        shell_word(&helper.to_string_lossy()),
        crate::executor::worker::WORKER_ROLE,
    );
    std::fs::write(script, text).map_err(|e| format!("{}: {e}", script.display()))?;
    let mut args = vec![
        "--parsable".to_owned(),
        "--job-name=poolscope-worker".to_owned(),
        format!("--output={}", log.display()),
        format!(
            "--chdir={}",
            std::env::current_dir().unwrap_or_default().display()
        ),
    ];
    args.extend(extra.iter().cloned());
    args.extend(options.iter().cloned());
    args.push(script.display().to_string());
    super::submit(&args).map_err(|e| e.to_string())
}

/// The job that runs a relay's worker: a job of its own, or one element of an array.
#[derive(Clone, Copy, Debug)]
struct WorkerJob {
    job: u64,
    index: Option<u64>,
}

/// How long relays other than 0 wait to hear which array relay 0 submitted.
const ARRAY_WITHIN: Duration = Duration::from_mins(1);

/// A pool's array files in the Slurm folder: element `index`'s configuration
/// (`array-COHORT-I.json`), or with `None` the array's job id (`array-COHORT.job`).
fn array_file(folder: &Path, place: &ArrayPlace, index: Option<u32>) -> PathBuf {
    match index {
        Some(i) => folder.join(format!("array-{}-{i}.json", place.cohort)),
        None => folder.join(format!("array-{}.job", place.cohort)),
    }
}

/// Write `text` to `path` so that a reader (on another machine, too) sees all or none.
fn write_whole(path: &Path, text: &str) -> Result<(), String> {
    let draft = path.with_extension("draft");
    std::fs::write(&draft, text)
        .and_then(|()| std::fs::rename(&draft, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Add a worker's job to the folder's list (`J`, or `J_i` for an array's element).
fn note_job(folder: &Path, job: WorkerJob) {
    // One write of the whole line: relays append at once.
    let line = format!("{}\n", super::target(job.job, job.index));
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(folder.join(JOBS_FILE))
        .and_then(|mut f| f.write_all(line.as_bytes()));
}

/// How `job` ended, in Slurm's word (`TIMEOUT`, `NODE_FAIL`, `CANCELLED`…); `None`
/// while it waits or runs (or Slurm cannot be asked).
fn job_end(job: WorkerJob) -> Option<String> {
    let element = super::show(job.job, job.index).ok()?.into_iter().next()?;
    super::end_of(&element)?;
    Some(
        element
            .state
            .split_whitespace()
            .next()
            .unwrap_or("ENDED")
            .to_owned(),
    )
}

/// `word` quoted for `sh`.
fn shell_word(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_times_move_onto_this_clock_and_its_commands_pid_stays_there() {
        let started = FromWorker::Started {
            task: 1,
            attempt: 1,
            at_ns: 1_000,
        };
        assert_eq!(
            on_this_clock(started, 500),
            Some(FromWorker::Started {
                task: 1,
                attempt: 1,
                at_ns: 1_500
            })
        );
        let child = FromWorker::Child {
            task: 1,
            attempt: 1,
            pid: 42,
        };
        assert_eq!(on_this_clock(child, 0), None);
    }

    #[test]
    fn the_secret_is_made_once_and_only_its_owner_reads_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = ensure_secret(dir.path()).expect("secret");
        let first = std::fs::read_to_string(&path).expect("read");
        assert_eq!(first.trim().len(), 64);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        ensure_secret(dir.path()).expect("again");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), first);
    }

    #[test]
    fn a_word_with_quotes_survives_the_shell() {
        assert_eq!(shell_word("a'b"), r"'a'\''b'");
    }
}
