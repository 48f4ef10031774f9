//! A finished run saved whole (tasks, attempts, outputs held in memory) so it can be
//! opened again later, and CSV export.

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::joblog;
use crate::model::TaskFileError;
use crate::model::record::run::RunRecord;

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct RunFile {
    poolscope_run: u32,
    record: RunRecord,
}

pub fn write(record: &RunRecord, out: &mut impl Write) -> io::Result<()> {
    let file = RunFile {
        poolscope_run: FORMAT,
        record: record.clone(),
    };
    serde_json::to_writer(&mut *out, &file)?;
    out.write_all(b"\n")
}

/// What kind of record a file holds, from its first bytes.
pub fn looks_like_run(text: &str) -> bool {
    text.trim_start().starts_with('{') && text.contains("\"poolscope_run\"")
}

pub fn looks_like_joblog(text: &str) -> bool {
    text.lines()
        .next()
        .is_some_and(|l| l.trim_end() == joblog::HEADER)
}

/// The first bytes of the file at `path`, as text (enough to tell what it holds).
fn head(path: &Path) -> std::io::Result<String> {
    let mut start = [0u8; 4096];
    let read = std::io::Read::read(&mut std::fs::File::open(path)?, &mut start)?;
    Ok(String::from_utf8_lossy(&start[..read]).into_owned())
}

/// Whether the file at `path` is a saved run or a joblog (not a task file), from its
/// first bytes.
pub fn is_record(path: &Path) -> bool {
    head(path).is_ok_and(|text| looks_like_joblog(&text) || looks_like_run(&text))
}

pub fn parse(text: &str, path: &Path) -> Result<RunRecord, TaskFileError> {
    let file: RunFile = serde_json::from_str(text).map_err(|e| TaskFileError {
        path: path.to_owned(),
        line: Some(e.line()),
        field: None,
        message: format!("not a saved poolscope run: {e}"),
    })?;
    if file.poolscope_run != FORMAT {
        return Err(TaskFileError {
            path: path.to_owned(),
            line: None,
            field: Some("poolscope_run".into()),
            message: format!("saved by a newer poolscope (format {})", file.poolscope_run),
        });
    }
    let mut record = file.record;
    record.reindex();
    Ok(record)
}

/// Open a saved run or a GNU parallel joblog.
pub fn load(path: &Path) -> Result<RunRecord, TaskFileError> {
    // A saved run is one JSON object; anything else is read as a joblog, as a stream
    // (a 200 MB joblog is never all in memory as text).
    let start = head(path).map_err(|e| TaskFileError {
        path: path.to_owned(),
        line: None,
        field: None,
        message: format!("cannot be read: {e}"),
    })?;
    if start.trim_start().starts_with('{') {
        let text = super::taskfile::read_text(path)?;
        parse(&text, path)
    } else {
        joblog::load(path)
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One row per attempt, times in seconds since the run started.
pub fn write_csv(record: &RunRecord, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "task,attempt,name,command,slot,pid,queued_s,started_s,ended_s,runtime_s,outcome,exit_code,signal,cpu_s,peak_rss_bytes,host"
    )?;
    for task in record.tasks() {
        for a in &task.attempts {
            // The same numbers as the joblog's (one mapping); empty while running.
            let (exit, signal) = a
                .outcome
                .as_ref()
                .map_or((String::new(), String::new()), |o| {
                    let (exit, signal) = super::joblog::exit_columns(o);
                    (exit.to_string(), signal.to_string())
                });
            writeln!(
                out,
                "{},{},{},{},{},{},{:.6},{:.6},{},{:.6},{},{},{},{:.3},{},{}",
                task.id,
                a.number,
                csv_field(&task.spec.name),
                csv_field(&task.spec.invocation.display_line()),
                a.slot.map(|s| s.to_string()).unwrap_or_default(),
                a.pid.map(|p| p.to_string()).unwrap_or_default(),
                task.queued.as_secs_f64(),
                a.started.as_secs_f64(),
                a.ended
                    .map(|e| format!("{:.6}", e.as_secs_f64()))
                    .unwrap_or_default(),
                a.runtime(record.last_event).as_secs_f64(),
                csv_field(
                    &a.outcome
                        .as_ref()
                        .map_or_else(|| "running".to_owned(), ToString::to_string)
                ),
                exit,
                signal,
                a.usage.cpu.as_secs_f64(),
                a.usage.peak_rss,
                csv_field(a.host.as_deref().unwrap_or_default())
            )?;
        }
    }
    Ok(())
}
