//! Built-in task kinds: small jobs a persistent worker runs in its own process (Python's
//! `Pool` running a function), or that `poolscope __builtin` runs as a process of its
//! own in process-per-task mode, so the same task list works in both modes.
//!
//! Work that takes time announces itself like the seed's `long_time_task`:
//! `Run task NAME (PID)...` and `Task NAME runs 0.96 seconds.`

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Sleep or CPU time: fixed, or drawn from `[min, max]` with a seed (the seed's
/// `random.random() * 3`), the same for the same seed and label on every run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    pub min: Duration,
    pub max: Duration,
    pub seed: u64,
}

impl Span {
    pub fn fixed(time: Duration) -> Self {
        Self {
            min: time,
            max: time,
            seed: 0,
        }
    }

    /// This task's duration: `label` makes tasks of one template differ.
    pub fn draw(&self, label: &str) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        let mut state = self.seed;
        for byte in label.bytes() {
            state = splitmix64(state ^ u64::from(byte));
        }
        // 53 random bits as a fraction in [0, 1).
        let fraction = (splitmix64(state) >> 11) as f64 / (1u64 << 53) as f64;
        self.min + self.max.saturating_sub(self.min).mul_f64(fraction)
    }
}

/// A well-known 64-bit mixer (Steele et al.), enough for reproducible task durations.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BuiltinKind {
    /// Return at once (measures the pool, not the work).
    Noop,
    Sleep(Span),
    /// Keep one CPU busy for this long.
    Cpu(Span),
    /// Keep one CPU busy for this many rounds of arithmetic.
    Spin(u64),
    /// Print this message (and a newline).
    Print(String),
    /// Exit with this code.
    Fail(i32),
    /// Abort the process running it (a worker dies mid-task).
    Crash,
}

/// A built-in task: what to do, and the name it announces itself with.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Builtin {
    pub kind: BuiltinKind,
    pub label: String,
}

impl Builtin {
    pub fn new(kind: BuiltinKind, label: impl Into<String>) -> Self {
        Self {
            kind,
            label: label.into(),
        }
    }

    /// As one command-line argument (JSON), for `poolscope __builtin ARG`.
    pub fn to_arg(&self) -> String {
        serde_json::to_string(self).expect("a builtin always serializes")
    }

    pub fn from_arg(arg: &str) -> Result<Self, String> {
        serde_json::from_str(arg).map_err(|e| format!("not a built-in job: {e}"))
    }

    /// Whether its start should be reported before it runs: it may take a while, or
    /// end the process running it.
    pub fn reports_start_first(&self) -> bool {
        !matches!(
            self.kind,
            BuiltinKind::Noop | BuiltinKind::Print(_) | BuiltinKind::Fail(_)
        )
    }

    /// Run it here, writing its output to `out`; returns the exit code. `Crash` does not
    /// return.
    pub fn run(&self, out: &mut dyn Write) -> i32 {
        let pid = std::process::id();
        let label = &self.label;
        let announce = |out: &mut dyn Write, work: &dyn Fn()| {
            let _ = writeln!(out, "Run task {label} ({pid})...");
            let _ = out.flush();
            let start = Instant::now();
            work();
            let took = start.elapsed().as_secs_f64();
            let _ = writeln!(out, "Task {label} runs {took:.2} seconds.");
        };
        match &self.kind {
            BuiltinKind::Noop => {}
            BuiltinKind::Sleep(span) => {
                let time = span.draw(label);
                announce(out, &|| std::thread::sleep(time));
            }
            BuiltinKind::Cpu(span) => {
                let time = span.draw(label);
                announce(out, &|| busy_for(time));
            }
            BuiltinKind::Spin(rounds) => announce(out, &|| spin(*rounds)),
            BuiltinKind::Print(message) => {
                let _ = writeln!(out, "{message}");
            }
            BuiltinKind::Fail(code) => return *code,
            BuiltinKind::Crash => {
                let _ = out.flush();
                std::process::abort();
            }
        }
        0
    }
}

impl fmt::Display for Builtin {
    /// As written in a task file's `builtin` field, with its parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let span = |f: &mut fmt::Formatter<'_>, what: &str, s: &Span| {
            if s.max > s.min {
                write!(
                    f,
                    "{what} {:.2}-{:.2}s (seed {})",
                    s.min.as_secs_f64(),
                    s.max.as_secs_f64(),
                    s.seed
                )
            } else {
                write!(f, "{what} {:.2}s", s.min.as_secs_f64())
            }
        };
        f.write_str("builtin ")?;
        match &self.kind {
            BuiltinKind::Noop => f.write_str("noop")?,
            BuiltinKind::Sleep(s) => span(f, "sleep", s)?,
            BuiltinKind::Cpu(s) => span(f, "cpu", s)?,
            BuiltinKind::Spin(n) => write!(f, "cpu {n} rounds")?,
            BuiltinKind::Print(m) => write!(f, "print {m:?}")?,
            BuiltinKind::Fail(c) => write!(f, "fail {c}")?,
            BuiltinKind::Crash => f.write_str("crash")?,
        }
        if !self.label.is_empty() {
            write!(f, " [{}]", self.label)?;
        }
        Ok(())
    }
}

fn busy_for(time: Duration) {
    let end = Instant::now() + time;
    while Instant::now() < end {
        spin(10_000);
    }
}

fn spin(rounds: u64) {
    let mut x = 0u64;
    for i in 0..rounds {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    std::hint::black_box(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_spans_are_reproducible_in_range_and_differ_by_label() {
        let span = Span {
            min: Duration::ZERO,
            max: Duration::from_secs(3),
            seed: 7,
        };
        let a = span.draw("1");
        assert_eq!(a, span.draw("1"));
        assert!(a < Duration::from_secs(3));
        let draws: std::collections::HashSet<Duration> =
            (0..20).map(|i| span.draw(&i.to_string())).collect();
        assert!(draws.len() > 15, "labels give different times");
    }

    #[test]
    fn sleep_announces_itself_like_the_seed() {
        let task = Builtin::new(BuiltinKind::Sleep(Span::fixed(Duration::ZERO)), "3");
        let mut out = Vec::new();
        assert_eq!(task.run(&mut out), 0);
        let text = String::from_utf8(out).expect("utf-8");
        let pid = std::process::id();
        assert_eq!(
            text,
            format!("Run task 3 ({pid})...\nTask 3 runs 0.00 seconds.\n")
        );
        assert_eq!(
            Builtin::new(BuiltinKind::Fail(4), "").run(&mut Vec::new()),
            4
        );
    }
}
