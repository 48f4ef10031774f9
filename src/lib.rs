//! poolscope: a visual, hands-on process pool.
//!
//! - [`executor`]: runs tasks as child processes under a pool limit (no GUI code).
//! - [`watch`]: runs a Python program and turns what its pools do into the same events.
//! - [`model`]: the run record built from executor events, task files, joblogs, traces.
//! - [`app`] and [`ui`]: the egui workbench window.
//! - [`control`]: a live run's socket, and the client that drives it from another terminal.
//! - [`cli`]: the `poolscope` command line.

pub mod app;
pub mod cli;
pub mod control;
pub mod executor;
pub mod model;
pub mod ui;
pub mod watch;
