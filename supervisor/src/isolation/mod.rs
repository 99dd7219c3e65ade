//! Running untrusted tasks under restrictions (see docs/security.md).
//!
//! A task's effective profile is its task function's
//! [`TaskOptions::isolation`](redis_tasks_worker::TaskOptions) over its
//! queue's `[queues.NAME]` table. An unrestricted profile keeps today's fast
//! path (re-used worker processes). Any other gets a worker process of its
//! own, started under the profile and used for that one task: restrictions
//! cannot be lifted from a process, and `RLIMIT_CPU` counts a process's
//! whole life, so re-using it would charge one task for another's time.
//!
//! Order of application, each step before any task code runs:
//!
//! 1. between `fork` and `exec` (`sys/`, async-signal-safe calls only):
//!    resource limits (memory, CPU time, open files, processes, core dumps
//!    off), then a new network namespace with loopback up, then
//!    supplementary groups dropped, group, user, then no-new-privileges,
//!    then private user, PID, IPC and mount namespaces (`userns`);
//! 2. in the worker process right after its handshake, while it has one
//!    thread: Landlock, then seccomp (`redis_tasks_worker::confine`).
//!
//! A restriction that cannot be applied fails the task with
//! "isolation not applied (...)" and the task does not run; at start-up
//! [`probe`] tries every configured profile once and logs what fails.
//!
//! - `plan`: profile -> what a spawn needs, and refusals.
//! - `outcome`: how a process that hit a limit ended -> which limit.
//! - `userns`: private namespaces per worker process, and whether the host
//!   allows them.

mod outcome;
mod plan;
mod userns;

pub(crate) use outcome::explain;
pub(crate) use plan::{ChildRestrictions, Namespaces, NotApplied, Plan, Step, for_slot};
pub(crate) use userns::namespace_members;

use redis_tasks_config::settings::{Isolation, Settings};
use redis_tasks_worker::TaskRegistry;
use tracing::{error, info};

use crate::worker_process::{SpawnError, SpawnSpec, WorkerProcess};

/// The profile a task of function `task` taken from `queue` runs under.
pub(crate) fn effective(settings: &Settings, queue: &str, task: Option<&Isolation>) -> Isolation {
    let base = settings.isolation_of(queue);
    match task {
        Some(own) => own.over(&base),
        None => base,
    }
}

/// Every restricted profile the tasks of `queues` can get, with a label
/// saying where it comes from.
pub(crate) fn configured_profiles(
    settings: &Settings,
    queues: &[String],
    registry: &TaskRegistry,
) -> Vec<(String, Isolation)> {
    let mut found: Vec<(String, Isolation)> = Vec::new();
    let mut add = |label: String, profile: Isolation| {
        if !profile.is_unrestricted() && !found.iter().any(|(_, p)| *p == profile) {
            found.push((label, profile));
        }
    };
    for queue in queues {
        add(format!("queue {queue:?}"), settings.isolation_of(queue));
    }
    for name in registry.names() {
        let Some(own) = registry
            .get(&name)
            .and_then(|d| d.options().isolation.clone())
        else {
            continue;
        };
        for queue in queues {
            add(
                format!("task {name:?} on queue {queue:?}"),
                effective(settings, queue, Some(&own)),
            );
        }
    }
    found
}

/// Starts one worker process under each configured profile and logs,
/// once, every profile that cannot be applied here (its tasks will fail
/// with the same reason instead of running unconfined). Returns the
/// profiles that failed.
pub(crate) fn probe(
    settings: &Settings,
    queues: &[String],
    registry: &TaskRegistry,
    spawn: &SpawnSpec,
) -> Vec<(String, NotApplied)> {
    let mut failed = Vec::new();
    for (label, profile) in configured_profiles(settings, queues, registry) {
        let result = Plan::build(
            &for_slot(&profile, settings.dynamic_user_base, 0),
            &spawn.env,
        )
        .and_then(
            |plan| match WorkerProcess::spawn_isolated(spawn, 0, Some(&plan)) {
                Ok(process) => {
                    process.retire();
                    Ok(())
                }
                Err(SpawnError::NotIsolated(not)) => Err(not),
                Err(e) => Err(NotApplied {
                    restriction: "worker process".to_owned(),
                    reason: e.to_string(),
                }),
            },
        );
        match result {
            Ok(()) => info!("isolation profile of {label} applies"),
            Err(not) => {
                error!(
                    "isolation profile of {label} cannot be applied here: {not}; its tasks will fail instead of running unconfined"
                );
                failed.push((label, not));
            }
        }
    }
    failed
}
