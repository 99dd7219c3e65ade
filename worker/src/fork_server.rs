//! The fork server: forks ready worker processes without an `exec`.
//!
//! Started once by a supervisor (the user's binary with
//! [`FORK_SERVER_FD_ARG`](redis_tasks_protocol::ipc::fork_server::FORK_SERVER_FD_ARG)),
//! it never starts a thread, so a `fork` of it is a clean copy: the child
//! becomes a worker process (its own process group, a parent-death signal)
//! and runs [`process::serve`](crate::process::serve) on the socket the
//! supervisor sent along. The fork server is the parent and the one reaper
//! of its children; it reports each exit to the supervisor after killing
//! what is left of the child's process group. It is also a child subreaper
//! (set before `exec` by the supervisor): what a worker process leaves
//! behind when it dies is re-parented here, and every child that is not a
//! worker process it forked is such an orphan, killed (with its tree) and
//! reaped at once. When the supervisor runs worker processes in a PID
//! namespace of their own, the fork server itself stays outside it (so the
//! pids `fork` returns here are the supervisor's too) and only its children
//! start inside (the supervisor enters the namespace for them before
//! `exec`); orphans of a dead worker process then go to that namespace's
//! init instead of here, and the supervisor kills them.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use redis_tasks_protocol::ipc::fork_server::{
    FromForkServer, ToForkServer, recv_packet, send_packet,
};
use redis_tasks_protocol::proc_tree;

use crate::middleware::Middleware;
use crate::process::{WorkerProcessError, serve};
use crate::registry::TaskRegistry;
use crate::sys::{self, Forked};

/// How often exited children are looked for while no request comes.
const REAP_EVERY_MS: u16 = 2;

/// How often adopted orphans are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(20);

/// Serves fork requests on the inherited control socket `fd` until the
/// supervisor closes it.
pub fn serve_fork_server(
    registry: &TaskRegistry,
    middleware: &[Arc<dyn Middleware>],
    fd: i32,
) -> Result<(), WorkerProcessError> {
    let control =
        sys::adopt_fd(fd).map_err(|error| WorkerProcessError::Descriptor { fd, error })?;
    // A task must not reach the fork server's control socket (it could have
    // processes forked or killed): no tracing, no pidfd_getfd. Its forked
    // worker processes inherit this, which also keeps siblings of the same
    // user from reading each other's memory.
    sys::forbid_inspection().map_err(WorkerProcessError::Io)?;
    let mut children = BTreeSet::new();
    let mut next_sweep = Instant::now();
    loop {
        let readable = {
            let mut fds = [PollFd::new(control.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, REAP_EVERY_MS) {
                Ok(n) => n > 0,
                Err(Errno::EINTR) => false,
                Err(e) => return Err(WorkerProcessError::Io(e.into())),
            }
        };
        if readable {
            match recv_packet::<ToForkServer>(control.as_fd())? {
                None => return Ok(()),
                Some((ToForkServer::Spawn { token }, fds)) => {
                    let mut fds = sys::adopt_all(fds).into_iter();
                    let given = (fds.next(), fds.next(), fds.next(), fds.next());
                    let request = match given {
                        (Some(socket), None, None, None) => Some((socket, None)),
                        (Some(socket), Some(out), Some(err), None) => {
                            Some((socket, Some((out, err))))
                        }
                        _ => None,
                    };
                    let reply = match request {
                        Some((socket, output)) => {
                            match fork_worker(registry, middleware, &control, socket, output) {
                                Ok(pid) => {
                                    children.insert(pid);
                                    FromForkServer::Spawned { token, pid }
                                }
                                Err(e) => FromForkServer::SpawnFailed {
                                    token,
                                    error: e.to_string(),
                                },
                            }
                        }
                        None => FromForkServer::SpawnFailed {
                            token,
                            error: "a spawn request must carry one socket, or one socket and \
                                    the two output pipes"
                                .to_owned(),
                        },
                    };
                    send_packet(control.as_fd(), &reply, None)?;
                }
                Some((ToForkServer::Kill { pid }, fds)) => {
                    drop(sys::adopt_all(fds));
                    if children.contains(&pid) {
                        // Unreaped: the pid is still its own.
                        proc_tree::kill_tree(pid);
                        let _ = killpg(as_pid(pid), Signal::SIGKILL);
                    }
                }
            }
        }
        reap(&mut children, &control)?;
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + SWEEP_EVERY;
            kill_orphans(&children);
        }
    }
}

/// Kills every child that is not a worker process this server forked: all
/// such children are orphans adopted from a worker process's tree. The
/// reap loop reaps them.
fn kill_orphans(children: &BTreeSet<u32>) {
    for pid in proc_tree::children(std::process::id()) {
        if !children.contains(&pid) {
            proc_tree::kill_tree(pid);
        }
    }
}

fn as_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// Forks a worker process serving on `socket`, with `output` (the write
/// ends of its supervisor's pipes) as its stdout and stderr when given; in
/// the parent, returns its pid (the parent's copies of the descriptors are
/// closed on return).
fn fork_worker(
    registry: &TaskRegistry,
    middleware: &[Arc<dyn Middleware>],
    control: &OwnedFd,
    socket: OwnedFd,
    output: Option<(OwnedFd, OwnedFd)>,
) -> Result<u32, Errno> {
    match sys::fork_child()? {
        Forked::Parent(pid) => Ok(pid),
        Forked::Child => {
            // The child keeps only its own socket.
            let control = sys::raw(control);
            sys::close_raw(control);
            // The worker loop adopts the socket by its number.
            let fd = socket.into_raw_fd();
            let stdio = match output {
                Some((out, err)) => nix::unistd::dup2_stdout(&out)
                    .and_then(|()| nix::unistd::dup2_stderr(&err))
                    .map_err(std::io::Error::from),
                None => Ok(()),
            };
            let code = match stdio.and_then(|()| sys::become_worker()) {
                Err(e) => {
                    crate::stderr_line(&format!("redis-tasks fork server child: {e}"));
                    1
                }
                Ok(()) => match serve(registry, middleware, fd) {
                    Ok(()) => 0,
                    Err(e) => {
                        crate::stderr_line(&format!("redis-tasks worker process: {e}"));
                        1
                    }
                },
            };
            std::process::exit(code)
        }
    }
}

/// Reports every child that has exited: its group is killed while it is
/// still unreaped, then it is reaped.
fn reap(children: &mut BTreeSet<u32>, control: &OwnedFd) -> Result<(), WorkerProcessError> {
    loop {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        let (pid, code, signal) = match waitid(Id::All, flags) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, Some(code), None),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, None, Some(sig as i32)),
            Ok(_) | Err(_) => return Ok(()),
        };
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        let pid = pid.as_raw().unsigned_abs();
        if !children.remove(&pid) {
            // An adopted orphan: nobody waits for its report.
            continue;
        }
        send_packet(
            control.as_fd(),
            &FromForkServer::Exited { pid, code, signal },
            None,
        )?;
    }
}
