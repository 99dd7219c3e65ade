//! Frames between a supervisor and its worker processes.
//!
//! The two sides talk over a Unix socket pair. Each message is one frame: a
//! 4-byte little-endian payload length followed by that many bytes of
//! bincode (2.0, standard configuration). [`frame`] does the framing and
//! knows nothing about messages; [`message`] holds the messages and the
//! version handshake.
//!
//! A worker process speaks first: [`FromWorker::Hello`] carries
//! [`PROTOCOL_VERSION`], and the supervisor refuses a worker process whose
//! version differs (a binary replaced on disk between two spawns, say).

pub mod fork_server;
pub mod frame;
pub mod message;

pub use frame::{FrameError, MAX_FRAME_BYTES, read_frame, write_frame};
pub use message::{
    ChildMode, ChildRequest, FromWorker, PROTOCOL_VERSION, RunTask, TaskResult, ToWorker, decode,
    recv, send,
};

/// The first argument a supervisor gives a binary it starts as a worker
/// process; its value is the number of the inherited socket descriptor
/// (`--redis-tasks-worker-fd=3`). An argument, not an environment variable,
/// so that a task's own subprocesses never mistake themselves for workers.
pub const WORKER_FD_ARG: &str = "--redis-tasks-worker-fd";

/// The descriptor number the IPC socket is given in a worker process.
pub const WORKER_FD: i32 = 3;
