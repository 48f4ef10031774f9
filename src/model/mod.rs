//! What poolscope knows about runs, with no GUI code, in four rooms:
//! - `record`: the run record built from executor events (tasks, attempts, output
//!   tails), kept compact, and the numbers and stories read from it;
//! - `formats`: the files people bring and take away (task files, GNU parallel joblogs,
//!   Chrome traces, saved runs and CSV, the seed's presets);
//! - `store`: where runs live on disk (run folders, the journal, resume, output that
//!   waits its turn);
//! - `terminal`: a task's bytes as a terminal shows them (ANSI styles, screens, text
//!   safe to print).
//!
//! Dependencies point downwards: `formats` and `store` read the `record`, which reads
//! `terminal`; `record` and `terminal` know nothing of files.

pub mod formats;
pub mod record;
pub mod store;
pub mod terminal;

pub use formats::draft::{DraftStdin, TaskDraft};
pub use formats::taskfile::{TaskFile, TaskFileError};
pub use record::run::{Attempt, PoolPhase, RunRecord, TaskRecord, TaskRef, TaskState};
pub use record::tail::{Channel, OutputTail};
pub use terminal::text::shown;
