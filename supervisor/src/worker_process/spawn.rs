//! Starting a worker process: by `exec` (with an isolation plan applied
//! between fork and exec, and a cgroup of its own where the host allows
//! one), or forked by the fork server; then the handshake.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;

use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use redis_tasks_protocol::ExitReason;
use redis_tasks_protocol::ipc::{WORKER_FD, WORKER_FD_ARG};

use super::{Proc, SpawnError, SpawnSpec, WorkerProcess};
use crate::bell::{self, RingingReceiver};
use crate::cgroup::{self, TaskCgroup};
use crate::family;
use crate::fork_server::ForkServer;
use crate::isolation::{NotApplied, Plan};
use crate::sys;
use crate::task_output::{self, Output};

impl WorkerProcess {
    /// Starts a worker process under reload `generation` and completes the
    /// handshake.
    /// Uses the spec's fork server when it has one (falling back to `exec`
    /// if the fork server is gone).
    pub(crate) fn spawn(spec: &SpawnSpec, generation: u64) -> Result<Self, SpawnError> {
        if let Some(server) = &spec.fork_server {
            match WorkerProcess::fork_from(server, spec, generation) {
                Err(SpawnError::Handshake(e)) if server.is_gone() => {
                    tracing::warn!(
                        "fork server unusable ({e}); starting the worker process by exec"
                    );
                }
                other => return other,
            }
        }
        WorkerProcess::spawn_isolated(spec, generation, None)
    }

    /// Like [`WorkerProcess::spawn`], under an isolation `plan` when given:
    /// its limits, namespace, user and no-new-privileges are applied before
    /// `exec`, its environment and working directory replace the defaults,
    /// and the handshake waits until the process has confined itself.
    pub(crate) fn spawn_isolated(
        spec: &SpawnSpec,
        generation: u64,
        plan: Option<&Plan>,
    ) -> Result<Self, SpawnError> {
        let spawn_err = spawn_error(spec);
        let (ours, theirs) = UnixStream::pair().map_err(&spawn_err)?;
        let (output, read_ends) = task_output::pipes().map_err(&spawn_err)?;
        let mut cmd = Command::new(&spec.exe);
        let env = plan.map_or(&spec.env, |p| &p.env);
        cmd.arg(format!("{WORKER_FD_ARG}={WORKER_FD}"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(output.stdout))
            .stderr(Stdio::from(output.stderr))
            .process_group(0);
        if let Some(dir) = plan.and_then(|p| p.working_dir.as_ref()) {
            cmd.current_dir(dir);
        }
        sys::prepare_child(
            &mut cmd,
            theirs.as_raw_fd(),
            plan.map(|p| p.child.clone()),
            None,
        );
        let child =
            family::spawn(&mut cmd).map_err(|e| match NotApplied::from_spawn_error(&e) {
                Some(not) => SpawnError::NotIsolated(not),
                None => spawn_err(e),
            })?;
        drop(theirs);
        // Our copies of the pipes' write ends: the reader sees their end
        // when the worker process (and all it started) has closed them.
        drop(cmd);
        let mut child = child;
        let cgroup = match join_cgroup(&child, plan) {
            Ok(cgroup) => cgroup,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                family::forget(child.id());
                return Err(e);
            }
        };
        let exit = watch_exit(child.id()).map_err(&spawn_err)?;
        let proc = Proc::Direct {
            child,
            exit: exit.rx,
        };
        let mut process = WorkerProcess::connect(
            proc, exit.bell, cgroup, ours, read_ends, spec, generation, plan,
        )?;
        if plan.is_some_and(|p| p.child.ids.is_some()) {
            process.ensure_killable()?;
        }
        Ok(process)
    }

    /// Starts a worker process through `server` (no `exec`) and completes
    /// the handshake.
    pub(crate) fn fork_from(
        server: &Arc<ForkServer>,
        spec: &SpawnSpec,
        generation: u64,
    ) -> Result<Self, SpawnError> {
        let spawn_err = |error| SpawnError::Spawn {
            exe: "the fork server".to_owned(),
            error,
        };
        let (ours, theirs) = UnixStream::pair().map_err(&spawn_err)?;
        let (output, read_ends) = task_output::pipes().map_err(&spawn_err)?;
        let (pid, exit) = server
            .spawn(OwnedFd::from(theirs), output)
            .map_err(SpawnError::Handshake)?;
        let proc = Proc::Forked {
            pid,
            server: Arc::clone(server),
            exit: exit.rx,
        };
        WorkerProcess::connect(
            proc, exit.bell, None, ours, read_ends, spec, generation, None,
        )
    }

    /// Wraps a started process (the capture of its output started), and
    /// takes it through the handshake.
    #[allow(clippy::too_many_arguments)]
    fn connect(
        proc: Proc,
        exit_bell: Arc<crate::bell::Bell>,
        cgroup: Option<TaskCgroup>,
        ours: UnixStream,
        read_ends: task_output::ReadEnds,
        spec: &SpawnSpec,
        generation: u64,
        plan: Option<&Plan>,
    ) -> Result<Self, SpawnError> {
        let pid = match &proc {
            Proc::Direct { child, .. } => child.id(),
            Proc::Forked { pid, .. } => *pid,
        };
        ours.set_write_timeout(Some(super::SEND_TIMEOUT))
            .map_err(spawn_error(spec))?;
        let output = Output::start(read_ends, pid).map_err(spawn_error(spec))?;
        let mut process = WorkerProcess::new(proc, cgroup, ours, exit_bell, output, generation);
        process.handshake(spec, plan)?;
        Ok(process)
    }
}

/// Puts a freshly started worker process into a cgroup of its own when the
/// host allows them. A profile whose limits rest on the cgroup (see
/// [`cgroup::WorkerCgroups::limits_memory`]) refuses to run without it;
/// otherwise the process runs on without one.
fn join_cgroup(child: &Child, plan: Option<&Plan>) -> Result<Option<TaskCgroup>, SpawnError> {
    let Some(cgroups) = cgroup::get() else {
        return Ok(None);
    };
    let limits = plan.map(|p| p.cgroup_limits).unwrap_or_default();
    let joined = cgroups.create(limits).and_then(|cgroup| {
        crate::isolation::namespace_members(child.id())
            .into_iter()
            .try_for_each(|pid| cgroup.add(pid))
            .map(|()| cgroup)
    });
    match joined {
        Ok(cgroup) => Ok(Some(cgroup)),
        Err(e) if limits.memory.is_some() && cgroups.limits_memory() => {
            Err(SpawnError::NotIsolated(NotApplied {
                restriction: "memory_limit".to_owned(),
                reason: format!("cannot set up the worker process's cgroup: {e}"),
            }))
        }
        Err(e) => {
            tracing::warn!("worker process runs without a cgroup of its own: {e}");
            Ok(None)
        }
    }
}

/// Turns an I/O error while starting a worker process from `spec` into a
/// [`SpawnError`] naming the binary.
fn spawn_error(spec: &SpawnSpec) -> impl Fn(io::Error) -> SpawnError + '_ {
    move |error| SpawnError::Spawn {
        exe: spec.exe.display().to_string(),
        error,
    }
}

/// Starts a thread that reports when `pid` (our child) exits, without
/// reaping it (`waitid` with `WNOWAIT`): the handle stays its one reaper.
/// The thread ends with the process.
fn watch_exit(pid: u32) -> io::Result<RingingReceiver<ExitReason>> {
    let (tx, rx) = bell::channel(Some(1))?;
    let raw = Pid::from_raw(i32::try_from(pid).map_err(io::Error::other)?);
    thread::Builder::new()
        .name(format!("exit-{pid}"))
        .spawn(move || {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            let reason = loop {
                match waitid(Id::Pid(raw), flags) {
                    Ok(WaitStatus::Exited(_, code)) => break ExitReason::Code(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => break ExitReason::Signal(sig as i32),
                    Err(nix::errno::Errno::EINTR) | Ok(_) => {}
                    // Reaped already: the handle knows.
                    Err(_) => return,
                }
            };
            let _ = tx.send(reason);
        })?;
    Ok(rx)
}
