//! A bounded record of a task's output: the most recent bytes, in arrival order, with
//! stdout and stderr kept apart chunk by chunk.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::executor::Stream;

/// Where a piece of a task's console came from: its output streams, or what the user
/// typed to it (echoed so the session reads like a terminal transcript).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    Stdout,
    Stderr,
    Input,
}

impl From<Stream> for Channel {
    fn from(stream: Stream) -> Self {
        match stream {
            Stream::Stdout => Channel::Stdout,
            Stream::Stderr => Channel::Stderr,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OutputTail {
    limit: usize,
    chunks: VecDeque<(Channel, Vec<u8>)>,
    held: usize,
    /// Bytes dropped from the front to stay under the limit.
    dropped: u64,
    /// Everything was dropped to stay within the record's memory budget; the output
    /// files still hold it.
    #[serde(default)]
    evicted: bool,
}

impl OutputTail {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            chunks: VecDeque::new(),
            held: 0,
            dropped: 0,
            evicted: false,
        }
    }

    /// Drop everything held (the output stays in its files).
    pub fn evict(&mut self) {
        self.dropped += self.held as u64;
        self.held = 0;
        self.chunks = VecDeque::new();
        self.evicted = true;
    }

    /// Whether the output was dropped from memory to keep the run within its budget.
    pub fn is_evicted(&self) -> bool {
        self.evicted
    }

    /// Keep only the newest `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        let limit = self.limit;
        self.limit = bytes;
        self.trim();
        self.limit = limit;
    }

    /// Put back output read from the task's files after an eviction: stdout, then
    /// stderr (the files do not record how the two interleaved).
    pub fn restore(&mut self, stdout: &[u8], stderr: &[u8]) {
        self.chunks.clear();
        self.held = 0;
        self.evicted = false;
        self.push(Channel::Stdout, stdout);
        self.push(Channel::Stderr, stderr);
    }

    pub fn push(&mut self, channel: impl Into<Channel>, bytes: &[u8]) {
        let stream = channel.into();
        if bytes.is_empty() {
            return;
        }
        // Merge with the previous chunk of the same stream so many tiny writes stay cheap.
        match self.chunks.back_mut() {
            Some((s, last)) if *s == stream && last.len() < 64 * 1024 => {
                last.extend_from_slice(bytes);
            }
            _ => self.chunks.push_back((stream, bytes.to_vec())),
        }
        self.held += bytes.len();
        self.trim();
    }

    fn trim(&mut self) {
        while self.held > self.limit {
            let excess = self.held - self.limit;
            let Some((_, front)) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= excess {
                let n = front.len();
                self.chunks.pop_front();
                self.held -= n;
                self.dropped += n as u64;
            } else {
                front.drain(..excess);
                self.held -= excess;
                self.dropped += excess as u64;
            }
        }
    }

    pub fn chunks(&self) -> impl Iterator<Item = (Channel, &[u8])> {
        self.chunks.iter().map(|(s, b)| (*s, b.as_slice()))
    }

    /// All held bytes of one stream, concatenated.
    pub fn stream_bytes(&self, channel: impl Into<Channel>) -> Vec<u8> {
        let stream = channel.into();
        self.chunks()
            .filter(|(s, _)| *s == stream)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    pub fn held(&self) -> usize {
        self.held
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// The newest output split into lines, for a view that lays out only visible rows.
#[derive(Debug, Default)]
pub struct TailLines {
    pub bytes: Vec<u8>,
    /// Each line's byte range (without its newline) and the stream it came from.
    pub lines: Vec<(std::ops::Range<usize>, Channel)>,
    /// Bytes before `bytes` that are not included (in the tail or only on disk).
    pub hidden: u64,
}

impl TailLines {
    pub fn line(&self, i: usize) -> (std::borrow::Cow<'_, str>, Channel) {
        let (range, stream) = &self.lines[i];
        (String::from_utf8_lossy(&self.bytes[range.clone()]), *stream)
    }
}

impl OutputTail {
    /// The newest output split into lines: at most `max_lines` lines and `max_bytes`
    /// bytes, starting at a line boundary. The last line may be partial (a prompt with
    /// no newline yet).
    pub fn tail_lines(&self, max_bytes: usize, max_lines: usize) -> TailLines {
        // Copy the newest bytes into one buffer, noting where each chunk's stream begins.
        let mut first = self.chunks.len();
        let mut taken = 0usize;
        while first > 0 && taken < max_bytes {
            first -= 1;
            taken += self.chunks[first].1.len();
        }
        let skip_in_first = taken.saturating_sub(max_bytes);
        let mut bytes = Vec::with_capacity(taken - skip_in_first);
        let mut starts: Vec<(usize, Channel)> = Vec::new();
        for (i, (stream, chunk)) in self.chunks.iter().enumerate().skip(first) {
            let chunk = if i == first {
                &chunk[skip_in_first..]
            } else {
                &chunk[..]
            };
            starts.push((bytes.len(), *stream));
            bytes.extend_from_slice(chunk);
        }
        // Back up to at most `max_lines` line starts.
        let mut start = bytes.len();
        let mut lines_seen = 0usize;
        let body_end = if bytes.last() == Some(&b'\n') {
            bytes.len() - 1
        } else {
            bytes.len()
        };
        start = start.min(body_end);
        while let Some(nl) = bytes[..start].iter().rposition(|&b| b == b'\n') {
            lines_seen += 1;
            if lines_seen >= max_lines {
                start = nl + 1;
                break;
            }
            start = nl;
        }
        if lines_seen < max_lines {
            // Reached the buffer's beginning: keep it only if it is a real line start.
            start = if skip_in_first == 0 && first == 0 {
                0
            } else {
                bytes
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| p + 1)
            };
        }
        let stream_at = |offset: usize| {
            let k = starts.partition_point(|&(o, _)| o <= offset);
            starts
                .get(k.saturating_sub(1))
                .map_or(Channel::Stdout, |&(_, s)| s)
        };
        let mut lines = Vec::new();
        let mut line_start = start;
        for (offset, _) in bytes[start..]
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
        {
            let end = start + offset;
            lines.push((line_start..end, stream_at(line_start)));
            line_start = end + 1;
        }
        if line_start < bytes.len() {
            lines.push((line_start..bytes.len(), stream_at(line_start)));
        }
        let before: u64 = self
            .chunks
            .iter()
            .take(first)
            .map(|(_, c)| c.len() as u64)
            .sum();
        TailLines {
            hidden: self.dropped + before + (skip_in_first + start) as u64,
            bytes,
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_bytes_in_order() {
        let mut tail = OutputTail::new(10);
        tail.push(Stream::Stdout, b"0123456789");
        tail.push(Stream::Stderr, b"abc");
        assert_eq!(tail.held(), 10);
        assert_eq!(tail.dropped(), 3);
        assert_eq!(tail.stream_bytes(Stream::Stdout), b"3456789");
        assert_eq!(tail.stream_bytes(Stream::Stderr), b"abc");
        let order: Vec<Channel> = tail.chunks().map(|(s, _)| s).collect();
        assert_eq!(order, vec![Channel::Stdout, Channel::Stderr]);
    }

    #[test]
    fn tail_lines_split_streams_and_keep_a_partial_last_line() {
        let mut tail = OutputTail::new(1024);
        tail.push(Stream::Stdout, b"one\ntw");
        tail.push(Stream::Stdout, b"o\n");
        tail.push(Stream::Stderr, b"oops\n>>> ");
        let lines = tail.tail_lines(1024, 100);
        let text: Vec<(String, Channel)> = (0..lines.lines.len())
            .map(|i| (lines.line(i).0.into_owned(), lines.line(i).1))
            .collect();
        assert_eq!(
            text,
            vec![
                ("one".into(), Channel::Stdout),
                ("two".into(), Channel::Stdout),
                ("oops".into(), Channel::Stderr),
                (">>> ".into(), Channel::Stderr),
            ]
        );
        let newest = tail.tail_lines(10, 100);
        assert_eq!(newest.line(0).0, "oops", "starts at a line boundary");
        assert_eq!(newest.hidden, 8);
        let two = tail.tail_lines(1024, 2);
        assert_eq!(two.lines.len(), 2);
        assert_eq!(two.line(0).0, "oops");
        assert_eq!(two.line(1).0, ">>> ");
    }
}
