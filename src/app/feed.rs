//! A task list that is still being written: a FIFO (`mkfifo`) opened in the window
//! gives one shell command per line, each run as soon as it arrives, as `poolscope run`
//! does with a pipe on stdin. A thread reads it; the window takes what was read each
//! frame, while the pool is not too far behind (back-pressure on the writer).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};

use crate::executor::TaskSpec;

use super::PoolscopeApp;

/// Lines handed over at once, at most.
const BATCH: usize = 4096;
/// Tasks waiting for a slot past which nothing more is read: the writer waits.
const READ_AHEAD: usize = 16_384;
/// A line longer than this is not a command anyone typed: it fails, named.
const MAX_LINE: usize = 1 << 20;

enum FromFeed {
    Lines(Vec<String>),
    End,
    Failed(String),
}

pub struct LineFeed {
    pub path: PathBuf,
    rx: Receiver<FromFeed>,
    pub read: usize,
}

/// Whether `path` is a FIFO (named pipe): read as it is written, never whole.
pub fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

impl LineFeed {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(4);
        let owned = path.to_owned();
        std::thread::Builder::new()
            .name("poolscope-feed".into())
            .spawn(move || {
                // Opening waits for a writer: here, never in the window's thread.
                let file = match std::fs::File::open(&owned) {
                    Ok(file) => file,
                    Err(e) => {
                        let _ = tx.send(FromFeed::Failed(format!(
                            "cannot read {}: {e}",
                            owned.display()
                        )));
                        return;
                    }
                };
                let mut input = std::io::BufReader::with_capacity(64 * 1024, file);
                let mut batch = Vec::new();
                // What was read before the bad line still runs; then why reading stopped.
                let stop = |batch: Vec<String>, why: String| {
                    let _ = tx.send(FromFeed::Lines(batch));
                    let _ = tx.send(FromFeed::Failed(why));
                };
                let mut line = Vec::new();
                for number in 1.. {
                    line.clear();
                    let read = std::io::Read::take(&mut input, MAX_LINE as u64 + 1)
                        .read_until(b'\n', &mut line);
                    match read {
                        Ok(0) => break,
                        Ok(_) if line.len() > MAX_LINE => {
                            stop(batch, format!(
                                "{}:{number}: a line longer than {MAX_LINE} bytes; nothing after it was read",
                                owned.display()
                            ));
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            stop(batch, format!("{}:{number}: {e}", owned.display()));
                            return;
                        }
                    }
                    // Run as written or not at all: a replaced byte would be another
                    // command (`poolscope run` refuses such a line on stdin too).
                    let Ok(text) = std::str::from_utf8(&line) else {
                        stop(batch, format!(
                            "{}:{number}: the line is not UTF-8; nothing after it was read",
                            owned.display()
                        ));
                        return;
                    };
                    let text = text.trim_end_matches(['\n', '\r']);
                    if !text.trim().is_empty() {
                        batch.push(text.to_owned());
                    }
                    let waiting = !input.buffer().is_empty();
                    if ((!waiting && !batch.is_empty()) || batch.len() >= BATCH)
                        && tx.send(FromFeed::Lines(std::mem::take(&mut batch))).is_err()
                    {
                        return; // the window let go of the feed
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.send(FromFeed::Lines(batch));
                }
                let _ = tx.send(FromFeed::End);
            })?;
        Ok(Self {
            path: path.to_owned(),
            rx,
            read: 0,
        })
    }
}

impl PoolscopeApp {
    /// Follow a FIFO: its lines become the list, run as they arrive.
    pub(super) fn follow(&mut self, path: &Path) {
        match LineFeed::open(path) {
            Ok(feed) => {
                self.replace_rows(Vec::new(), None);
                self.file = None;
                self.preset = None;
                self.feed = Some(feed);
                self.notify(format!(
                    "Reading tasks from {} as they are written: each line runs as it arrives",
                    path.display()
                ));
            }
            Err(e) => self.error(format!(
                "Could not read {}; the list is unchanged: {e}",
                path.display()
            )),
        }
    }

    /// What the feed brought since the last frame, run at once: the first lines start
    /// the pool, later ones join it. Nothing is taken while the pool has many waiting.
    pub(super) fn pump_feed(&mut self, ctx: &egui::Context) {
        if self.feed.is_none() {
            return;
        }
        // Looked at again soon: the feed's thread cannot wake the window.
        ctx.request_repaint_after(std::time::Duration::from_millis(20));
        let waiting = self.live_run().map_or(0, |r| r.record.tally().queued);
        if waiting >= READ_AHEAD || self.live_run().is_some_and(|r| !r.is_open()) {
            return;
        }
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        let mut lines = Vec::new();
        let mut ended = None;
        while lines.len() < READ_AHEAD - waiting {
            match feed.rx.try_recv() {
                Ok(FromFeed::Lines(batch)) => lines.extend(batch),
                Ok(FromFeed::End) | Err(TryRecvError::Disconnected) => {
                    ended = Some(None);
                    break;
                }
                Ok(FromFeed::Failed(why)) => {
                    ended = Some(Some(why));
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        feed.read += lines.len();
        let (read, path) = (feed.read, feed.path.clone());
        if !lines.is_empty() {
            self.run_fed(lines, ctx);
        }
        match ended {
            Some(None) => {
                self.feed = None;
                let tasks = if read == 1 { "task" } else { "tasks" };
                self.notify(format!(
                    "{} was closed by its writer: {read} {tasks} read",
                    path.display()
                ));
            }
            Some(Some(why)) => {
                self.feed = None;
                self.error(format!("Stopped reading tasks: {why}"));
                self.feed_failed = Some(why);
            }
            None => {}
        }
    }

    fn run_fed(&mut self, lines: Vec<String>, ctx: &egui::Context) {
        let first = self.rows.len();
        for line in lines {
            self.rows.push(super::Row {
                draft: crate::model::TaskDraft::from_spec(&TaskSpec::shell(line)),
                task: None,
            });
        }
        if self.live_run().is_some_and(super::Run::is_open) {
            let added: Vec<usize> = (first..self.rows.len()).collect();
            self.submit_rows(&added);
        } else if self.live_run().is_none() {
            self.start(ctx);
        }
    }
}
