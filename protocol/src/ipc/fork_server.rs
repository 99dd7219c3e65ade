//! Messages between a supervisor and its fork server.
//!
//! A fork server is the user's binary started once, single-threaded, with
//! [`FORK_SERVER_FD_ARG`]; it forks ready worker processes without an
//! `exec`, which is what makes "a fresh process per task" cheap. The channel
//! is a `SOCK_SEQPACKET` socket pair, so every message arrives whole; a
//! [`ToForkServer::Spawn`] carries the new worker's end of its own IPC
//! socket pair as `SCM_RIGHTS`.
//!
//! The fork server is the parent of the worker processes it forks, so it is
//! their one reaper: it sees a child exit without reaping it (`waitid` with
//! `WNOWAIT`), kills what is left of the child's process group, reaps it,
//! and reports [`FromForkServer::Exited`]. Kills the supervisor wants go
//! through it ([`ToForkServer::Kill`]) so a process group is only signalled
//! while its leader is unreaped.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::frame::FrameError;
use super::message::{decode, encode};

/// The first argument of a binary started as fork server; its value is the
/// descriptor of the control socket.
pub const FORK_SERVER_FD_ARG: &str = "--redis-tasks-fork-server-fd";

/// The largest control message.
const MAX_MESSAGE: usize = 64 * 1024;

/// Supervisor to fork server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToForkServer {
    /// Fork a worker process serving on the first attached descriptor;
    /// when two more come with it, they become the new process's stdout
    /// and stderr (the write ends of pipes its supervisor reads).
    Spawn {
        /// Echoed in the answer.
        token: u64,
    },
    /// Kill the process group of this child if it is not reaped yet.
    Kill {
        /// The child's pid.
        pid: u32,
    },
}

/// Fork server to supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromForkServer {
    /// The worker process for `token` runs as `pid`.
    Spawned {
        /// The token of the request.
        token: u64,
        /// The new process.
        pid: u32,
    },
    /// The request for `token` failed.
    SpawnFailed {
        /// The token of the request.
        token: u64,
        /// Why.
        error: String,
    },
    /// A child ended and was reaped (its process group killed first).
    Exited {
        /// The child's pid.
        pid: u32,
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
    },
}

/// Sends `msg` as one packet, with `fd` attached when given.
pub fn send_packet<M: Serialize>(
    socket: BorrowedFd<'_>,
    msg: &M,
    fd: Option<BorrowedFd<'_>>,
) -> Result<(), FrameError> {
    send_packet_fds(socket, msg, fd.as_slice())
}

/// Sends `msg` as one packet with `fds` attached (at most four: what
/// [`recv_packet`] makes room for).
pub fn send_packet_fds<M: Serialize>(
    socket: BorrowedFd<'_>,
    msg: &M,
    fds: &[BorrowedFd<'_>],
) -> Result<(), FrameError> {
    let payload = encode(msg)?;
    let iov = [IoSlice::new(&payload)];
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| FrameError::Io(e.into()))?;
    Ok(())
}

/// Receives one packet: `Ok(None)` when the peer closed the socket. Any
/// descriptors that came with it are returned as raw numbers the caller now
/// owns (and must close or adopt).
pub fn recv_packet<M: DeserializeOwned>(
    socket: BorrowedFd<'_>,
) -> Result<Option<(M, Vec<RawFd>)>, FrameError> {
    // One zeroed buffer per thread, kept: a fresh 64 KiB one per packet
    // cost a memset of it for every fork and every exit report.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        if buf.len() < MAX_MESSAGE {
            buf.resize(MAX_MESSAGE, 0);
        }
        recv_packet_into(socket, buf)
    })
}

fn recv_packet_into<M: DeserializeOwned>(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<Option<(M, Vec<RawFd>)>, FrameError> {
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (len, fds, truncated) = {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| FrameError::Io(e.into()))?;
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(mut got) = c {
                    fds.append(&mut got);
                }
            }
        }
        let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
        (msg.bytes, fds, truncated)
    };
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    if truncated {
        return Err(FrameError::Oversized {
            len: len as u64,
            max: MAX_MESSAGE as u32,
        });
    }
    decode(&buf[..len]).map(|m| Some((m, fds)))
}
