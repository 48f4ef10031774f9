//! What a client and a live run say to each other on the run's socket.
//!
//! One JSON object per line each way: a request names its protocol version (`v`) and
//! its operation (`op`); the run answers with one reply line, or, for `follow`, with
//! output lines and then an `end`. Lines are what `run` itself reads and what any
//! language can speak with a socket and a JSON parser (`socat`, Python's `socket`), and a
//! line is whole or not there: a client that disconnects mid-request sent nothing. Output
//! that is not UTF-8 travels as base64 in `bytes` instead of `text`.

use serde::{Deserialize, Serialize};

/// The protocol's version; a request of another is refused with a reply saying so.
pub const VERSION: u32 = 1;
/// The socket's name in the run's folder.
pub const SOCKET_FILE: &str = "control.sock";
/// Longest request line accepted (an `add` of many tasks is sent in several).
pub const MAX_REQUEST: usize = 16 << 20;
/// Tasks a client sends in one `add` request at most.
pub const ADD_BATCH: usize = 20_000;

/// A request with its protocol version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// What the run is: answered with [`Reply::Info`].
    Info,
    /// Queue these tasks: [`Reply::Added`].
    Add {
        tasks: Vec<NewTask>,
    },
    /// These tasks (none: all) as they stand: [`Reply::Status`].
    Status {
        #[serde(default)]
        tasks: Vec<u64>,
    },
    /// What the task printed so far: [`Reply::Output`]s, then [`Reply::End`] if it is
    /// over, else [`Reply::Ok`].
    Log {
        task: u64,
    },
    /// What the task printed so far and then as it prints, until it ends:
    /// [`Reply::Output`]s, then [`Reply::End`].
    Follow {
        task: u64,
    },
    /// Type to the task (as in the window's input box); `eof` closes its input after.
    Send {
        task: u64,
        #[serde(default)]
        text: String,
        #[serde(default)]
        eof: bool,
    },
    /// End these tasks (SIGTERM, then SIGKILL after the grace period).
    Kill {
        tasks: Vec<u64>,
    },
    /// Send a signal (a name, `INT`, `SIGUSR1`, or a number) to these tasks.
    Signal {
        tasks: Vec<u64>,
        signal: String,
    },
    Pause,
    Resume,
    Resize {
        size: usize,
    },
    /// Take no more tasks; the run ends when the queue is done.
    Close,
    /// Kill what runs and drop the queue.
    Terminate,
}

/// A task to add: a shell command line, as `run` reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where it runs (the client's folder); `None`: the run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<std::path::PathBuf>,
    #[serde(default)]
    pub stdin: NewStdin,
}

/// A new task's input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewStdin {
    /// Reads end of file at once.
    #[default]
    None,
    /// Kept open for `send` (and the window's input box).
    Interactive,
    /// This text, then end of file.
    Text(String),
    /// These bytes (base64: input that is not UTF-8), then end of file.
    Base64(String),
}

/// Most bytes of input an added task is given with it (`add --stdin text`); a larger
/// input belongs in a file the command reads.
pub const MAX_TEXT_INPUT: usize = 8 << 20;

/// One line of an answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok,
    Error(String),
    Info(RunInfo),
    /// Tasks `first` to `first + count - 1` were queued.
    Added {
        first: u64,
        count: u64,
    },
    Status(Vec<TaskStatus>),
    Output(OutputChunk),
    /// The task is over: how, its exit code (`null` when it did not exit by itself),
    /// and the signal that ended it, if one did.
    End {
        outcome: String,
        code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// Nothing was added: `waiting` tasks wait to start already, the most a run holds.
    /// Try again when some have started (`add` from stdin waits by itself).
    Full {
        waiting: usize,
    },
}

/// A live run, as `ls` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's folder name: what `--run` takes.
    pub id: String,
    pub dir: std::path::PathBuf,
    /// `window` or `headless` (`poolscope run`).
    pub place: String,
    pub pid: u32,
    pub size: usize,
    /// `processes`, `workers`, `slurm` or `slurm workers`.
    pub mode: String,
    /// `running`, `paused`, `closed`, `finished`.
    pub phase: String,
    /// Whether `add` is taken now.
    pub takes_tasks: bool,
    pub counts: Counts,
}

/// Tasks by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub queued: usize,
    pub running: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
}

/// One task as `status` shows it. Times are seconds since the run started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub id: u64,
    pub name: String,
    pub command: String,
    /// `queued`, `waiting`, `running`, `retrying`, `succeeded`, `failed`, `cancelled`,
    /// `lost`.
    pub state: String,
    pub attempts: u32,
    pub slot: Option<usize>,
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub queued: f64,
    pub started: Option<f64>,
    pub ended: Option<f64>,
    /// How the last attempt ended, in words (`exit 0`, `signal SIGKILL`).
    pub outcome: Option<String>,
    pub exit_code: Option<i32>,
}

/// Output of a task, in the order it arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// `stdout`, `stderr`, or `input` (typed to it, as the console shows it).
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Base64, for bytes that are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
}

impl OutputChunk {
    pub fn new(stream: &str, bytes: &[u8]) -> Self {
        use base64::Engine as _;
        match std::str::from_utf8(bytes) {
            Ok(text) => Self {
                stream: stream.to_owned(),
                text: Some(text.to_owned()),
                bytes: None,
            },
            Err(_) => Self {
                stream: stream.to_owned(),
                text: None,
                bytes: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        }
    }

    /// The chunk's bytes (a malformed `bytes` field gives none).
    pub fn data(&self) -> Vec<u8> {
        use base64::Engine as _;
        match (&self.text, &self.bytes) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }
}

/// A request as one line (with its newline).
pub fn request_line(request: &Request) -> String {
    let mut line = serde_json::to_string(&Envelope {
        v: VERSION,
        request: request.clone(),
    })
    .unwrap_or_default();
    line.push('\n');
    line
}

/// A reply as one line (with its newline).
pub fn reply_line(reply: &Reply) -> Vec<u8> {
    let mut line = serde_json::to_vec(reply).unwrap_or_else(|e| {
        serde_json::to_vec(&Reply::Error(format!("cannot encode the reply: {e}")))
            .unwrap_or_default()
    });
    line.push(b'\n');
    line
}

/// A request line read: the request, or the error reply that says what is wrong with it.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    #[derive(Deserialize)]
    struct Version {
        v: Option<u32>,
    }
    let version: Version = serde_json::from_slice(line)
        .map_err(|e| format!("not a request: expected one JSON object per line ({e})"))?;
    match version.v {
        Some(VERSION) => {}
        Some(other) => {
            return Err(format!(
                "protocol version {other} is not spoken here (this poolscope speaks {VERSION}): \
                 use the poolscope that runs this run"
            ));
        }
        None => return Err(format!("a request needs \"v\": {VERSION}")),
    }
    serde_json::from_slice::<Envelope>(line)
        .map(|e| e.request)
        .map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_goes_as_one_line_and_comes_back_the_same() {
        let request = Request::Add {
            tasks: vec![NewTask {
                command: "echo 'a\nb'".into(),
                name: Some("two lines".into()),
                cwd: None,
                stdin: NewStdin::Text("x\n".into()),
            }],
        };
        let line = request_line(&request);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert_eq!(parse_request(line.trim_end().as_bytes()), Ok(request));
        assert_eq!(
            parse_request(br#"{"v":1,"op":"pause"}"#),
            Ok(Request::Pause)
        );
    }

    #[test]
    fn garbage_and_other_versions_are_answered_with_what_is_wrong() {
        assert!(parse_request(b"hello").is_err_and(|e| e.contains("JSON")));
        assert!(parse_request(br#"{"op":"pause"}"#).is_err_and(|e| e.contains("\"v\"")));
        assert!(parse_request(br#"{"v":9,"op":"pause"}"#).is_err_and(|e| e.contains("version 9")));
        assert!(parse_request(br#"{"v":1,"op":"fly"}"#).is_err_and(|e| e.contains("fly")));
    }

    #[test]
    fn output_that_is_not_utf8_travels_whole() {
        let bytes = [0xff, b'a', 0x00, 0xc3];
        let chunk = OutputChunk::new("stdout", &bytes);
        assert!(chunk.text.is_none());
        let back: OutputChunk =
            serde_json::from_str(&serde_json::to_string(&chunk).expect("encode")).expect("decode");
        assert_eq!(back.data(), bytes);
        assert_eq!(
            OutputChunk::new("stderr", b"ok\n").text.as_deref(),
            Some("ok\n")
        );
    }
}
