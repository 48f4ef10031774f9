//! Driving a live run from another terminal: every live run (the window's, `poolscope
//! run`'s) listens on a Unix socket in its private folder, and `poolscope add / ls /
//! status / follow / log / send / kill …` talk to it.
//!
//! Its rooms: `protocol` (the lines both ends speak), `server` (the socket, one thread
//! per client), `serve` (requests answered by the run's owner, followers fed), `client`
//! (finding live runs, connecting, asking). It uses the executor and the model; the app
//! and the command line use it.

pub mod client;
pub mod protocol;
pub mod serve;
pub mod server;

pub use serve::{Control, Owner, PoolCommand, Shape};
