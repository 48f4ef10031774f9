//! The run record and the file formats. No GUI code here.

pub mod ansi;
mod compact;
pub mod draft;
pub mod joblog;
pub mod journal;
pub mod presets;
pub mod resume;
pub mod run;
pub mod runfile;
pub mod runs;
pub mod screen;
pub mod spill;
pub mod stats;
pub mod story;
pub mod tail;
pub mod taskfile;
pub mod text;
pub mod trace;

pub use draft::{DraftStdin, TaskDraft};
pub use run::{Attempt, PoolPhase, RunRecord, TaskRecord, TaskRef, TaskState};
pub use tail::{Channel, OutputTail};
pub use taskfile::{TaskFile, TaskFileError};
pub use text::shown;
