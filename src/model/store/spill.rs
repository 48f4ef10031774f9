//! Output that waits its turn (`-k`, a worker pool's results in input order): held in
//! memory up to a budget, past it in a file of its own that no other process can see
//! (removed as soon as it is opened), so a slow first task does not keep a fast one's
//! gigabyte in RAM. GNU parallel `-k` does the same with its temporary files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::executor::{Stream, TaskId};

/// Output held in memory before the rest goes to the file.
pub const MEMORY_BUDGET: usize = 16 * 1024 * 1024;

enum Piece {
    Memory(Stream, Vec<u8>),
    /// (stream, offset, length) in the file.
    File(Stream, u64, usize),
}

pub struct HeldOutput {
    budget: usize,
    in_memory: usize,
    held: BTreeMap<TaskId, Vec<Piece>>,
    /// Where the file goes (created on first need).
    dir: PathBuf,
    file: Option<(File, u64)>,
    /// The file could not be written: the rest stays in memory (nothing is lost).
    failed: Option<String>,
}

impl HeldOutput {
    pub fn new(dir: PathBuf, budget: usize) -> Self {
        Self {
            budget,
            in_memory: 0,
            held: BTreeMap::new(),
            dir,
            file: None,
            failed: None,
        }
    }

    /// Bytes held in memory now.
    pub fn in_memory(&self) -> usize {
        self.in_memory
    }

    /// Why output could not go to the file, once it could not (then it stays in memory).
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn hold(&mut self, task: TaskId, stream: Stream, bytes: &[u8]) {
        let piece = if self.in_memory + bytes.len() > self.budget && self.failed.is_none() {
            match self.spill(bytes) {
                Ok(at) => Piece::File(stream, at, bytes.len()),
                Err(e) => {
                    self.failed = Some(e.to_string());
                    self.keep(stream, bytes)
                }
            }
        } else {
            self.keep(stream, bytes)
        };
        self.held.entry(task).or_default().push(piece);
    }

    fn keep(&mut self, stream: Stream, bytes: &[u8]) -> Piece {
        self.in_memory += bytes.len();
        Piece::Memory(stream, bytes.to_vec())
    }

    fn spill(&mut self, bytes: &[u8]) -> io::Result<u64> {
        if self.file.is_none() {
            self.file = Some((hidden_file(&self.dir)?, 0));
        }
        let Some((file, len)) = self.file.as_mut() else {
            return Err(io::Error::other("no file"));
        };
        let at = *len;
        file.write_all_at(bytes, at)?;
        *len += bytes.len() as u64;
        Ok(at)
    }

    /// Hand what `task` holds to `each`, in the order it came, and forget it; once
    /// nothing is held, the file is emptied.
    pub fn release(&mut self, task: TaskId, mut each: impl FnMut(Stream, &[u8])) -> io::Result<()> {
        let pieces = self.held.remove(&task).unwrap_or_default();
        let mut buffer = Vec::new();
        let mut result = Ok(());
        for piece in pieces {
            match piece {
                Piece::Memory(stream, bytes) => {
                    self.in_memory -= bytes.len();
                    each(stream, &bytes);
                }
                Piece::File(stream, at, len) => {
                    buffer.resize(len, 0);
                    let read = match &self.file {
                        Some((file, _)) => file.read_exact_at(&mut buffer, at),
                        None => Err(io::Error::other("the held output's file is gone")),
                    };
                    match read {
                        Ok(()) => each(stream, &buffer),
                        Err(e) => result = Err(e),
                    }
                }
            }
        }
        if self.held.is_empty()
            && let Some((file, len)) = self.file.as_mut()
        {
            file.set_len(0)?;
            *len = 0;
        }
        result
    }
}

/// A new file in `dir` that is removed at once: it lives while it is open, and goes
/// with the process whatever ends it.
fn hidden_file(dir: &std::path::Path) -> io::Result<File> {
    let mut attempt = 0u32;
    loop {
        let path = dir.join(format!(".poolscope-held-{}-{attempt}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                std::fs::remove_file(&path)?;
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_budget_output_waits_in_the_file_and_comes_back_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let mut held = HeldOutput::new(dir.path().to_path_buf(), 1000);
        let mut sent = Vec::new();
        for i in 0..50u8 {
            let stream = if i % 3 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            let bytes = vec![i; 100];
            held.hold(TaskId(2), stream, &bytes);
            sent.push((stream, bytes));
        }
        assert!(
            held.in_memory() <= 1000,
            "{} held in memory",
            held.in_memory()
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("lists").count(),
            0,
            "the file is not visible"
        );
        let mut got = Vec::new();
        held.release(TaskId(2), |stream, bytes| {
            got.push((stream, bytes.to_vec()));
        })
        .expect("reads back");
        assert_eq!(got, sent);
        assert_eq!(held.in_memory(), 0);
    }

    #[test]
    fn a_folder_that_cannot_take_the_file_keeps_output_in_memory() {
        let mut held = HeldOutput::new(PathBuf::from("/nonexistent/poolscope"), 10);
        held.hold(TaskId(1), Stream::Stdout, b"0123456789abcdef");
        assert!(held.failed().is_some());
        let mut got = Vec::new();
        held.release(TaskId(1), |_, b| got.extend_from_slice(b))
            .expect("in memory");
        assert_eq!(got, b"0123456789abcdef");
    }
}
