//! Files in and out: task files and the editor's drafts of them, GNU parallel joblogs,
//! Chrome traces, saved runs and CSV, and the seed's presets. Every reader names the
//! file, line and field of what it cannot read.

pub mod draft;
pub mod gnu_parallel;
pub mod joblog;
pub mod presets;
pub mod runfile;
pub mod taskfile;
pub mod trace;
