//! Every Redis key name of the schema, built from the configured prefix.
//!
//! This is the only place in Rust that spells a key; the Lua scripts build
//! the few keys they discover at run time (a task id popped from a queue)
//! from the same prefix, passed to them as `ARGV[1]`. `docs/redis-schema.md`
//! describes each key.

/// Builds key names under one prefix (`P`), joined with `:`: those of one
/// partition ([`Store::key_names`](crate::Store::key_names)), for programs
/// that read the data directly (tests, tools in other languages checking
/// their reading of docs/redis-schema.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself (passed to scripts as `ARGV[1]`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P:task:<id>`: the task's HASH.
    pub fn task(&self, id: &str) -> String {
        format!("{}:task:{id}", self.prefix)
    }

    /// `P:output:<id>`: STRING, the last bytes task `id` wrote to its
    /// stdout and stderr, expiring with the registries.
    pub fn output(&self, id: &str) -> String {
        format!("{}:output:{id}", self.prefix)
    }

    /// `P:queue:<name>`: the queue's LIST of ids.
    pub fn queue(&self, name: &str) -> String {
        format!("{}:queue:{name}", self.prefix)
    }

    /// `P:flow`: HASH of the flow settings of queues (`paused:<q>`,
    /// `concurrency:<q>`, `rate:<q>`) and task functions
    /// (`task_concurrency:<f>`, `task_rate:<f>`); absent when nothing has
    /// one.
    pub fn flow(&self) -> String {
        format!("{}:flow", self.prefix)
    }

    /// `P:flow:waiting`: SET of the slots waiting on queues that flow
    /// control holds back.
    pub fn flow_waiting(&self) -> String {
        format!("{}:flow:waiting", self.prefix)
    }

    /// `P:flow:wake:<slot>`: LIST of tokens that wake the waiting `slot`
    /// when the flow settings change.
    pub fn flow_wake(&self, slot: &str) -> String {
        format!("{}:flow:wake:{slot}", self.prefix)
    }

    /// `P:permits:<q>`: SET of the ids of running tasks that hold a permit
    /// of queue `q`'s concurrency limit.
    pub fn permits(&self, queue: &str) -> String {
        format!("{}:permits:{queue}", self.prefix)
    }

    /// `P:permits_pruned:<q>`: STRING kept a second after the fetch
    /// script last let go of permits of ended tasks of queue `q`.
    pub fn permits_pruned(&self, queue: &str) -> String {
        format!("{}:permits_pruned:{queue}", self.prefix)
    }

    /// `P:starts:<q>`: ZSET of the starts of queue `q` within its rate
    /// window, scored by Redis's clock in milliseconds.
    pub fn starts(&self, queue: &str) -> String {
        format!("{}:starts:{queue}", self.prefix)
    }

    /// `P:task_held:<f>`: LIST of the ids of task function `f` that its
    /// limits hold back, in order (out of their queue until a permit or
    /// the window lets them through). `P:task_permits:<f>`,
    /// `P:task_permits_pruned:<f>` and `P:task_starts:<f>` are to task
    /// functions what `permits`, `permits_pruned` and `starts` are to
    /// queues.
    pub fn task_held(&self, task: &str) -> String {
        format!("{}:task_held:{task}", self.prefix)
    }

    /// `P:history:<q>:<hour>`: HASH of the counts of queue `q`'s endings
    /// in one hour (hours since the unix epoch), field
    /// `<minute>:<kind>:<run bucket>:<wait bucket>`; expires 76 hours
    /// after the hour began.
    pub fn history(&self, queue: &str, hour: i64) -> String {
        format!("{}:history:{queue}:{hour}", self.prefix)
    }

    /// `P:queues`: the SET of queue names in use.
    pub fn queues(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    /// `P:finished`: ZSET of finished ids scored by end time.
    pub fn finished(&self) -> String {
        format!("{}:finished", self.prefix)
    }

    /// `P:failed`: ZSET of failed ids scored by end time.
    pub fn failed(&self) -> String {
        format!("{}:failed", self.prefix)
    }

    /// `P:expired`: ZSET of ids of tasks whose expiry passed before they
    /// started, scored by when that was found.
    pub fn expired(&self) -> String {
        format!("{}:expired", self.prefix)
    }

    /// `P:canceled`: ZSET of ids of tasks canceled (queued, scheduled or
    /// running), scored by when that was recorded.
    pub fn canceled(&self) -> String {
        format!("{}:canceled", self.prefix)
    }

    /// `P:scheduled`: ZSET of ids of tasks waiting for their time (delayed
    /// enqueues and retries), scored by when they are due.
    pub fn scheduled(&self) -> String {
        format!("{}:scheduled", self.prefix)
    }

    /// `P:stats:canceled`: STRING, how many tasks were canceled (queued,
    /// scheduled or running); written by every cancel, read by `info` and
    /// the dashboard (it outlives the canceled registry's trimming).
    pub fn canceled_count(&self) -> String {
        format!("{}:stats:canceled", self.prefix)
    }

    /// `P:cancel_requests`: HASH of running task ids asked to stop, each
    /// to when it was asked.
    pub fn cancel_requests(&self) -> String {
        format!("{}:cancel_requests", self.prefix)
    }

    /// `P:wake:<supervisor>`: LIST poked (at most one item, with an
    /// expiry) to wake a supervisor's promoter at once: a cancel request
    /// for one of its tasks.
    pub(crate) fn wake(&self, supervisor: &str) -> String {
        format!("{}:wake:{supervisor}", self.prefix)
    }

    /// `P:workers`: ZSET of live slot ids scored by last heartbeat.
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// `P:dead_workers`: ZSET of slots found dead and recovered, scored by
    /// when; kept for `dead_worker_ttl` so that `info` can show them.
    pub fn dead_workers(&self) -> String {
        format!("{}:dead_workers", self.prefix)
    }

    /// `P:worker:<slot>`: the slot's HASH.
    pub fn worker(&self, slot: &str) -> String {
        format!("{}:worker:{slot}", self.prefix)
    }

    /// `P:worker:<slot>:task`: the slot's private current-task LIST.
    pub fn worker_task(&self, slot: &str) -> String {
        format!("{}:worker:{slot}:task", self.prefix)
    }

    /// `P:supervisor:<host>:<instance>`: id of the last supervisor run there.
    pub(crate) fn supervisor(&self, host: &str, instance: &str) -> String {
        format!("{}:supervisor:{host}:{instance}", self.prefix)
    }

    /// `P:supervisors`: ZSET of running supervisor ids, scored by their last
    /// report.
    pub(crate) fn supervisors(&self) -> String {
        format!("{}:supervisors", self.prefix)
    }

    /// `P:supervisor_state:<id>`: HASH of what a running supervisor
    /// reports about itself, with an expiry.
    pub(crate) fn supervisor_state(&self, id: &str) -> String {
        format!("{}:supervisor_state:{id}", self.prefix)
    }

    /// `P:supervisor_commands:<id>`: LIST of commands (`quiet`, `stop`,
    /// `scale N`) for a supervisor, with an expiry.
    pub(crate) fn supervisor_commands(&self, id: &str) -> String {
        format!("{}:supervisor_commands:{id}", self.prefix)
    }

    /// `P:schema`: STRING naming the format of the data under the prefix.
    pub fn schema(&self) -> String {
        format!("{}:schema", self.prefix)
    }

    /// `P:lock:<name>`: a lock's owner token, with an expiry.
    pub(crate) fn lock(&self, name: &str) -> String {
        format!("{}:lock:{name}", self.prefix)
    }

    /// `P:schedule:<entry>`: HASH with the last run of a schedule entry.
    pub(crate) fn schedule_entry(&self, entry: &str) -> String {
        format!("{}:schedule:{entry}", self.prefix)
    }

    /// `P:schedules`: SET of the schedule entry ids the active scheduler
    /// runs (written when it takes the lock).
    pub(crate) fn schedule_entries(&self) -> String {
        format!("{}:schedules", self.prefix)
    }

    /// `P:schedule_wake`: LIST poked (at most one item, with an expiry)
    /// when an entry is paused, resumed or asked to run now; the active
    /// scheduler waits on it with `BLPOP`.
    pub(crate) fn schedule_wake(&self) -> String {
        format!("{}:schedule_wake", self.prefix)
    }

    /// `P:graph:<id>`: HASH holding one task graph: its nodes and their
    /// states, with an expiry.
    pub fn graph(&self, id: &str) -> String {
        format!("{}:graph:{id}", self.prefix)
    }

    /// `P:done:<id>`: LIST that gets one element (the final status) when
    /// task `id` ends for good; waiters block on it. Expires with the
    /// registries.
    pub fn done(&self, id: &str) -> String {
        format!("{}:done:{id}", self.prefix)
    }

    /// `P:unique:<key>`: STRING holding the id of the live task enqueued
    /// with uniqueness key `key`.
    pub fn unique(&self, key: &str) -> String {
        format!("{}:unique:{key}", self.prefix)
    }

    /// `P:graph_middleware`: STRING marker set by supervisors that run the
    /// graph middleware, with an expiry.
    pub(crate) fn graph_middleware(&self) -> String {
        format!("{}:graph_middleware", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn keys_follow_the_documented_layout() {
        let k = Keys::new("rt");
        assert_eq!(k.task("a-b"), "rt:task:a-b");
        assert_eq!(k.queue("default"), "rt:queue:default");
        assert_eq!(k.output("a-b"), "rt:output:a-b");
        assert_eq!(k.queues(), "rt:queues");
        assert_eq!(k.finished(), "rt:finished");
        assert_eq!(k.failed(), "rt:failed");
        assert_eq!(k.workers(), "rt:workers");
        assert_eq!(k.worker("s1"), "rt:worker:s1");
        assert_eq!(k.worker_task("s1"), "rt:worker:s1:task");
        assert_eq!(k.supervisor("h", "main"), "rt:supervisor:h:main");
        assert_eq!(k.lock("maintenance"), "rt:lock:maintenance");
        assert_eq!(k.schema(), "rt:schema");
        assert_eq!(k.schedule_entry("nightly"), "rt:schedule:nightly");
        assert_eq!(k.schedule_entries(), "rt:schedules");
        assert_eq!(k.supervisors(), "rt:supervisors");
        assert_eq!(k.supervisor_state("s"), "rt:supervisor_state:s");
        assert_eq!(k.supervisor_commands("s"), "rt:supervisor_commands:s");
        assert_eq!(k.schedule_wake(), "rt:schedule_wake");
        assert_eq!(k.graph("g1"), "rt:graph:g1");
        assert_eq!(k.graph_middleware(), "rt:graph_middleware");
        assert_eq!(k.scheduled(), "rt:scheduled");
        assert_eq!(k.cancel_requests(), "rt:cancel_requests");
        assert_eq!(k.wake("abc"), "rt:wake:abc");
        assert_eq!(k.done("a-b"), "rt:done:a-b");
        assert_eq!(k.unique("import:42"), "rt:unique:import:42");
    }
}
