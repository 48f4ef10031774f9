//! A bounded record of a task's output: the most recent bytes, in arrival order, with
//! stdout and stderr kept apart chunk by chunk.

use std::collections::VecDeque;

use crate::executor::Stream;

#[derive(Clone, Debug)]
pub struct OutputTail {
    limit: usize,
    chunks: VecDeque<(Stream, Vec<u8>)>,
    held: usize,
    /// Bytes dropped from the front to stay under the limit.
    dropped: u64,
}

impl OutputTail {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            chunks: VecDeque::new(),
            held: 0,
            dropped: 0,
        }
    }

    pub fn push(&mut self, stream: Stream, bytes: &[u8]) {
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

    pub fn chunks(&self) -> impl Iterator<Item = (Stream, &[u8])> {
        self.chunks.iter().map(|(s, b)| (*s, b.as_slice()))
    }

    /// All held bytes of one stream, concatenated.
    pub fn stream_bytes(&self, stream: Stream) -> Vec<u8> {
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
        let order: Vec<Stream> = tail.chunks().map(|(s, _)| s).collect();
        assert_eq!(order, vec![Stream::Stdout, Stream::Stderr]);
    }
}
