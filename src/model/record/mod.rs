//! The run record: built only from executor events, kept compact (a done task is a row
//! of integers), and read for numbers (`stats`) and plain words (`story`).

mod compact;
pub mod run;
pub mod stats;
pub mod story;
pub mod tail;
