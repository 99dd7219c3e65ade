//! What `run` starts, owned by one guard that stops it on every path out.
//!
//! `run` starts a dozen things before it serves: the orphan sweeper (and
//! with it the PID namespace's anchor), the worker cgroups' base, the
//! retirer, the `/metrics` server, the shared state (which holds the fork
//! server), the promoter, the scheduler. Each goes into [`Owned`] as soon
//! as it runs, and `Owned`'s `Drop` stops them in the reverse order of
//! starting, on a normal end, on an early `?`, and on a panic alike, so
//! no path leaves a namespace anchor, a cgroup directory or a thread
//! behind. Reverse order matters: the retirer reaps the last worker
//! processes before the cgroups are removed, and the sweeper's last sweep
//! (which also ends the PID namespace) comes after every worker process
//! and the fork server are gone.

use std::sync::Arc;
use std::time::Duration;

use crate::family::Sweeper;
use crate::metrics::MetricsThread;
use crate::promoter::Promoter;
use crate::scheduler::SchedulerHandle;
use crate::shared::Shared;
use crate::worker_process::Retirer;

/// How long a stopping supervisor waits for its scheduler thread (which
/// may be stuck in a Redis call) before it exits without it.
const SCHEDULER_STOP_WAIT: Duration = Duration::from_millis(800);

/// The resources of one supervisor run, in the order they start.
#[derive(Default)]
pub(super) struct Owned {
    /// The orphan sweeper and the PID namespace (first in, last out).
    pub sweeper: Option<Sweeper>,
    /// The worker cgroups' base directory was set up (removed at the end).
    pub cgroups: bool,
    /// Reaps the worker processes slots hand over.
    pub retirer: Option<Retirer>,
    /// The shared state; its last handle drops the fork server.
    pub shared: Option<Arc<Shared>>,
    /// The `/metrics` server.
    pub metrics: Option<MetricsThread>,
    /// Promotes due tasks and reads cancel requests.
    pub promoter: Option<Promoter>,
    /// The scheduler thread of `worker --scheduler`.
    pub scheduler: Option<SchedulerHandle>,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.stop_within(SCHEDULER_STOP_WAIT);
        }
        if let Some(promoter) = self.promoter.take() {
            promoter.finish();
        }
        if let Some(metrics) = self.metrics.take() {
            metrics.stop();
        }
        // The fork server goes with the last handle on the shared state
        // (processes being retired hold their own); what it or any worker
        // process left behind is re-parented to the supervisor.
        drop(self.shared.take());
        if let Some(retirer) = self.retirer.take() {
            retirer.finish();
        }
        if std::mem::take(&mut self.cgroups) {
            crate::cgroup::remove_base();
        }
        if let Some(sweeper) = self.sweeper.take() {
            sweeper.finish();
        }
    }
}
