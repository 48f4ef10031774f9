//! Runs on disk: one private folder per run under a run root, its append-only journal
//! (and resume from it), and output that waits its turn, spilled past a budget.

pub mod journal;
pub mod resume;
pub mod runs;
pub mod spill;
