//! What a run writes for other tools as it goes: GNU parallel's joblog (and what
//! `--resume` reads back from it), a Chrome trace.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::executor::TaskId;
use crate::model::{RunRecord, formats::joblog, formats::trace};

/// `--joblog`: GNU parallel's format, a line per finished attempt, each written at once
/// (an interrupted run keeps what finished, and `--resume` goes on from it).
pub(super) struct JoblogOut {
    out: Option<(PathBuf, BufWriter<File>)>,
    /// Resuming: the sequence number of each submitted task (task id N is `seqs[N-1]`).
    seqs: Vec<u64>,
    /// With a journal, a line waits here until the journal has its task's end: a joblog
    /// never says a task finished that a resume from the journal would run again.
    held: Option<Vec<String>>,
}

/// Joblog lines held behind the journal at most, before waiting for it.
const JOBLOG_HELD: usize = 1024;

impl JoblogOut {
    pub(super) fn create(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self {
                out: None,
                seqs: Vec::new(),
                held: None,
            });
        };
        let mut out = BufWriter::new(create(path)?);
        writeln!(out, "{}", joblog::HEADER)
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write the joblog {}", path.display()))?;
        Ok(Self {
            out: Some((path.to_owned(), out)),
            seqs: Vec::new(),
            held: None,
        })
    }

    /// Go on writing the joblog of an earlier run after its first `whole_len` bytes (a
    /// line cut off by a crash is dropped); its header is there, or written now.
    pub(super) fn append(path: &Path, whole_len: u64, seqs: Vec<u64>) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|f| {
                if f.metadata()?.len() > whole_len {
                    f.set_len(whole_len)?;
                }
                Ok(f)
            })
            .with_context(|| format!("cannot open {} to resume", path.display()))?;
        let empty = file.metadata().map_or(true, |m| m.len() == 0);
        let mut out = BufWriter::new(file);
        if empty {
            writeln!(out, "{}", joblog::HEADER)
                .and_then(|()| out.flush())
                .with_context(|| format!("cannot write the joblog {}", path.display()))?;
        }
        Ok(Self {
            out: Some((path.to_owned(), out)),
            seqs,
            held: None,
        })
    }

    pub(super) fn finished(
        &mut self,
        record: &RunRecord,
        task: TaskId,
        attempt: u32,
    ) -> Result<()> {
        // (A task is looked up only for a joblog: a done one is rebuilt from its row.)
        if let Some((path, out)) = &mut self.out
            && let (Some(t), Some(a)) = (record.task(task), record.attempt(task, attempt))
        {
            let mut line = joblog::line(record, &t, &a);
            // The first column is the task id: a resumed task keeps its first number.
            if let Some(seq) = usize::try_from(task.0)
                .ok()
                .and_then(|i| self.seqs.get(i - 1))
            {
                let rest = line.find('\t').map_or("", |i| &line[i..]);
                line = format!("{seq}{rest}");
            }
            if let Some(held) = &mut self.held {
                held.push(line);
                return Ok(());
            }
            writeln!(out, "{line}")
                .and_then(|()| out.flush())
                .with_context(|| format!("cannot write the joblog {}", path.display()))?;
        }
        Ok(())
    }

    /// Hold each line until [`release`](Self::release) (the journal has the task).
    pub(super) fn hold_for_journal(&mut self) {
        if self.out.is_some() {
            self.held = Some(Vec::new());
        }
    }

    pub(super) fn holds_lines(&self) -> bool {
        self.held.as_ref().is_some_and(|h| !h.is_empty())
    }

    pub(super) fn holds_many(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.len() >= JOBLOG_HELD)
    }

    /// Write the held lines: the journal has every task they name.
    pub(super) fn release(&mut self) -> Result<()> {
        let (Some((path, out)), Some(held)) = (&mut self.out, &mut self.held) else {
            return Ok(());
        };
        if held.is_empty() {
            return Ok(());
        }
        held.drain(..)
            .try_for_each(|line| writeln!(out, "{line}"))
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write the joblog {}", path.display()))
    }
}

/// The sequence numbers `--resume` skips: every task in the joblog, or with
/// `--resume-failed` only those that succeeded. A last line torn by a crash (no newline)
/// is ignored; a missing joblog skips nothing. Also how many bytes of it are whole lines.
pub(super) fn resume_skip(
    path: &Path,
    failed_run_again: bool,
) -> Result<(std::collections::HashSet<u64>, u64)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let whole = match text.rfind('\n') {
        Some(end) if end + 1 < text.len() => {
            eprintln!(
                "poolscope: {}: its last line was cut off (a crash while writing); it is ignored",
                path.display()
            );
            &text[..=end]
        }
        _ => text.as_str(),
    };
    let whole_len = whole.len() as u64;
    if whole.trim().is_empty() {
        return Ok((std::collections::HashSet::new(), whole_len));
    }
    let entries = joblog::parse(whole, path)?;
    let skip = entries
        .iter()
        .filter(|e| !failed_run_again || e.outcome().is_success())
        .map(|e| e.seq)
        .collect();
    Ok((skip, whole_len))
}

/// `--trace`: the run as a Chrome trace, written when it ends to a file created when it
/// starts (a path that cannot be written is an error before any task runs).
pub(super) struct TraceOut(Option<(PathBuf, File)>);

impl TraceOut {
    pub(super) fn create(path: Option<&Path>) -> Result<Self> {
        Ok(Self(match path {
            Some(path) => Some((path.to_owned(), create(path)?)),
            None => None,
        }))
    }

    pub(super) fn write(self, record: &RunRecord) -> Result<()> {
        if let Some((path, file)) = self.0 {
            let mut out = BufWriter::new(file);
            trace::write(record, &mut out)
                .map_err(anyhow::Error::from)
                .and_then(|()| out.flush().map_err(anyhow::Error::from))
                .with_context(|| format!("cannot write the trace {}", path.display()))?;
        }
        Ok(())
    }
}

pub(super) fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("cannot create {}", path.display()))
}
