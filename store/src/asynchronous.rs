//! The async producer (feature `async`): [`AsyncStore`] and [`AsyncQueue`],
//! the producer operations of [`Store`] and [`Queue`](crate::Queue) as
//! futures on Tokio, for services (axum, actix) that must not block a
//! runtime thread on Redis.
//!
//! Every request is the one the sync store sends, built by the same
//! functions (`calls`), with the same key builder ([`Keys`]) and Lua
//! scripts, routed to the same partition (`partition`); only the transport
//! differs: one redis-rs multiplexed connection (one per master on a
//! Cluster), shared by every clone of the store and every task using it,
//! so concurrent calls are pipelined on it instead of queueing on a mutex. A connection that fails with an I/O
//! error or a timeout is dropped and reopened by the next call (the failed
//! call returns the error, as in the sync store).
//!
//! A wait for a task's end ([`AsyncStore::wait_for_end`]) blocks in Redis
//! (`BLMOVE`), which would hold up every other call on a multiplexed
//! connection, so each wait opens a connection of its own for its
//! duration.
//!
//! Reached like the sync store: one server (`redis://`, `rediss://` with
//! the same rustls settings, `unix://`); the master that Redis Sentinel
//! names (asked again at each new connection, so a failover is followed);
//! or a Redis Cluster, where each partition's requests go to the master
//! serving its hash slot, one multiplexed connection per master, the slot
//! map asked again after a connection error or a `MOVED`. The sentinels
//! and the cluster's seed nodes are asked with the sync store's own
//! lookups, on Tokio's blocking pool (each step within the connect
//! timeout). The ACL user, the password file and the durable `WAIT` mode
//! work as with `Store`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisError, ScriptInvocation};
use redis_tasks_config::Settings;
use redis_tasks_protocol::model::{TaskRecord, TaskStatus};
use serde::Serialize;

use crate::calls::{self, CancelReply, EnqueueCall};
use crate::connection::SlotMap;
use crate::keys::Keys;
use crate::part::{self, Options};
use crate::{
    CancelResult, EnqueueOptions, Enqueued, RedisConfig, Store, StoreError, partition, replies,
};

/// A handle on the task store for async producers: enqueue (with options,
/// in batches, unique), read a task, cancel it, and await its end.
///
/// Cheap to clone (the clones share the multiplexed connection); `Send`
/// and `Sync`, so it fits in an axum `State`. Built from the same
/// configuration as a [`Store`]; see the module docs for what it reaches.
#[derive(Clone)]
pub struct AsyncStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// How Redis is reached, aimed at partition 0.
    config: RedisConfig,
    addr: String,
    base_prefix: String,
    opts: Options,
    /// The keys of each partition, by index: the store's own.
    parts: Vec<Keys>,
    /// The shared connections: to the server (`None`), or on a Cluster
    /// one per master; opened at first use, dropped after a failure.
    conns: Mutex<HashMap<Route, MultiplexedConnection>>,
    /// On a Cluster: which master serves which hash slot, until a
    /// connection error or a `MOVED` says it changed.
    slot_map: Mutex<Option<SlotMap>>,
}

/// Where a connection goes: `None` for the server (or the master the
/// sentinels name), a master's address on a Cluster.
type Route = Option<(String, u16)>;

/// Locks a mutex of the store; a panic elsewhere while it was held left
/// nothing half-done in these maps.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for AsyncStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncStore")
            .field("addr", &self.inner.addr)
            .field("prefix", &self.inner.base_prefix)
            .field("partitions", &self.inner.parts.len())
            .finish_non_exhaustive()
    }
}

/// What one request to Redis is.
enum Request<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a Pipeline),
    Script(&'a ScriptInvocation<'static>),
}

impl AsyncStore {
    /// An async store for the Redis server at `url`, with keys under
    /// `prefix`; connects now.
    pub async fn open(url: &str, prefix: &str) -> Result<AsyncStore, StoreError> {
        AsyncStore::from_store(&Store::open(url, prefix)?).await
    }

    /// An async store reaching Redis as `config` says (TLS, ACL user,
    /// Sentinel, Cluster, durable mode), with keys under `prefix`;
    /// connects now.
    pub async fn with_config(config: RedisConfig, prefix: &str) -> Result<AsyncStore, StoreError> {
        AsyncStore::from_store(&Store::with_config(config, prefix)?).await
    }

    /// An async store configured from settings, like
    /// [`Store::from_settings`] (the `redis_*` settings, `redis_prefix`,
    /// `max_args_bytes`, `max_task_timeout`, `expiring_registries_ttl`);
    /// connects now.
    pub async fn from_settings(settings: &Settings) -> Result<AsyncStore, StoreError> {
        AsyncStore::from_store(&Store::from_settings(settings)?).await
    }

    /// An async store on the same server, prefix, partitions and options
    /// (limits, timeouts) as `store`, with a connection of its own; connects
    /// now.
    pub async fn from_store(store: &Store) -> Result<AsyncStore, StoreError> {
        let async_store = AsyncStore {
            inner: Arc::new(Inner {
                config: store.config.clone(),
                addr: store.addr.clone(),
                base_prefix: store.base_prefix.clone(),
                opts: store.opts,
                parts: store.parts.iter().map(|p| p.keys().clone()).collect(),
                conns: Mutex::new(HashMap::new()),
                slot_map: Mutex::new(None),
            }),
        };
        // Connects, and checks (once) that the data has this layout.
        async_store.inner.check_layout().await?;
        Ok(async_store)
    }

    /// The key prefix (`redis_prefix`).
    pub fn prefix(&self) -> &str {
        &self.inner.base_prefix
    }

    /// How many partitions the data is split into.
    pub fn partition_count(&self) -> usize {
        self.inner.parts.len()
    }

    /// The server address, safe to show.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let cmd = redis::cmd("PING");
        self.inner
            .send::<String>(&self.inner.parts[0], false, &[], Request::Cmd(&cmd))
            .await
            .map(|_| ())
    }

    /// The queue called `name` (it needs no creating).
    pub fn queue(&self, name: impl Into<String>) -> AsyncQueue<'_> {
        AsyncQueue {
            store: self,
            name: name.into(),
        }
    }

    /// The record of task `id` (its status, and its result once it
    /// finished); [`StoreError::NotFound`] when there is none.
    pub async fn task(&self, id: &str) -> Result<TaskRecord, StoreError> {
        // Like `Store::find`: the first partition that knows the task.
        for keys in &self.inner.parts {
            match self.inner.task_in(keys, id).await {
                Err(StoreError::NotFound { .. }) => {}
                found => return found,
            }
        }
        Err(StoreError::NotFound { id: id.to_owned() })
    }

    /// Cancels a task that waits in its queue or in the delayed set, like
    /// [`Store::cancel`]: any other state is refused with nothing changed
    /// ([`StoreError::NotQueued`], [`StoreError::Taken`]).
    pub async fn cancel(&self, id: &str) -> Result<(), StoreError> {
        let keys = self.inner.locate(id).await?;
        self.inner.cancel_in(keys, id).await
    }

    /// Cancels a task in any state where that makes sense, like
    /// [`Store::cancel_task`]: a queued or scheduled one at once, a running
    /// one by asking its supervisor ([`CancelResult::Requested`]).
    pub async fn cancel_task(&self, id: &str) -> Result<CancelResult, StoreError> {
        let inner = &self.inner;
        let keys = inner.locate(id).await?;
        let mut last = None;
        for round in 0..calls::CANCEL_ROUNDS {
            if let Some(pause) = calls::cancel_pause(round) {
                tokio::time::sleep(pause).await;
            }
            match inner.cancel_in(keys, id).await {
                Ok(()) => return Ok(CancelResult::Canceled),
                Err(StoreError::NotQueued {
                    status: TaskStatus::Running,
                    ..
                })
                | Err(StoreError::Taken { .. }) => {}
                Err(e) => return Err(e),
            }
            let inv = calls::request_cancel(keys, id);
            let reply: Vec<Value> = inner.send(keys, true, &[], Request::Script(&inv)).await?;
            match calls::request_cancel_reply(id, reply)? {
                Ok(woken) => {
                    // The script woke the supervisor in the task's
                    // partition; its promoter sleeps on partition 0's.
                    let zero = &inner.parts[0];
                    if let Some(supervisor) = woken.filter(|_| !std::ptr::eq(keys, zero)) {
                        let key = zero.wake(&supervisor);
                        let pipe = calls::wake(zero, &supervisor);
                        inner
                            .send::<()>(zero, true, &[(&key, "list")], Request::Pipe(&pipe))
                            .await?;
                    }
                    return Ok(CancelResult::Requested);
                }
                Err(status) => {
                    if !matches!(status, TaskStatus::Queued | TaskStatus::Scheduled) {
                        return Err(StoreError::NotQueued {
                            id: id.to_owned(),
                            status,
                        });
                    }
                    last = Some(status);
                }
            }
        }
        Err(StoreError::NotQueued {
            id: id.to_owned(),
            status: last.unwrap_or(TaskStatus::Queued),
        })
    }

    /// Waits until task `id` has ended (finished, failed or canceled) and
    /// returns its record, result included; `Ok(None)` when `timeout`
    /// passed first. A task that already ended is returned at once.
    ///
    /// Does not poll: it blocks in Redis on the task's done list, like
    /// [`Store::wait_for_end`], on a connection of its own (opened for
    /// this wait), so other calls go on meanwhile.
    pub async fn wait_for_end(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let inner = &self.inner;
        let keys = inner.locate(id).await?;
        // A timeout too large for the clock is as good as none.
        let deadline = Instant::now().checked_add(timeout);
        let mut waiter: Option<MultiplexedConnection> = None;
        loop {
            let record = inner.task_in(keys, id).await?;
            if record.has_ended() {
                return Ok(Some(record));
            }
            let Some(left) = calls::block_for(deadline) else {
                return Ok(None);
            };
            let mut conn = match waiter.take() {
                Some(conn) => conn,
                None => {
                    let route = inner.route(partition::key_slot(keys.prefix())).await?;
                    inner.open(&route, None).await?
                }
            };
            let cmd = calls::await_done(keys, id, left);
            let reply = tokio::time::timeout(
                left + inner.opts.io_timeout,
                cmd.query_async::<Value>(&mut conn),
            )
            .await;
            let woke = match reply {
                Ok(Ok(value)) => value,
                Ok(Err(error)) => {
                    let done = keys.done(id);
                    return Err(inner
                        .classify(&mut conn, keys, error, &[(&done, "list")])
                        .await);
                }
                Err(_elapsed) => {
                    return Err(inner.redis_error(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no reply to the blocking wait for a task's end",
                    ))));
                }
            };
            waiter = Some(conn);
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            if woke == Value::Nil && out_of_time {
                // Timed out; one last look in case it ended just now.
                let record = inner.task_in(keys, id).await?;
                return Ok(record.has_ended().then_some(record));
            }
            // Woken: the loop reads the record again (a task requeued
            // since waits for its new run).
        }
    }
}

/// A named queue of an [`AsyncStore`]: the enqueue calls of
/// [`Queue`](crate::Queue), as futures.
#[derive(Debug, Clone)]
pub struct AsyncQueue<'s> {
    store: &'s AsyncStore,
    name: String,
}

impl AsyncQueue<'_> {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Enqueues one call of `task` with `args` (any serde-serialisable
    /// value, stored as JSON) at the tail of this queue; returns the new id.
    pub async fn enqueue<A: Serialize + ?Sized>(
        &self,
        task: &str,
        args: &A,
    ) -> Result<String, StoreError> {
        self.enqueue_with(task, args, &EnqueueOptions::default())
            .await
    }

    /// Enqueues one call with `options` (delay, timeout, retry policy,
    /// uniqueness key), like [`Queue::enqueue_with`](crate::Queue::enqueue_with):
    /// with a uniqueness key held by a live task, nothing is written and
    /// that task's id is returned.
    pub async fn enqueue_with<A: Serialize + ?Sized>(
        &self,
        task: &str,
        args: &A,
        options: &EnqueueOptions,
    ) -> Result<String, StoreError> {
        self.enqueue_with_outcome(task, args, options)
            .await
            .map(Enqueued::into_id)
    }

    /// Like [`enqueue_with`](Self::enqueue_with), saying whether a new task
    /// was written ([`Enqueued::New`]) or a live one holds the uniqueness
    /// key ([`Enqueued::Existing`]).
    pub async fn enqueue_with_outcome<A: Serialize + ?Sized>(
        &self,
        task: &str,
        args: &A,
        options: &EnqueueOptions,
    ) -> Result<Enqueued, StoreError> {
        let inner = &self.store.inner;
        // A unique task lives with its key, so that one script decides.
        let keys = inner.home(options.unique_key().unwrap_or(&self.name));
        let planned = calls::plan_enqueue(keys, &inner.opts, &self.name, task, args, options)?;
        match inner.send_enqueue(keys, planned.call).await? {
            Some(enqueued) => Ok(enqueued),
            None => calls::first_id(planned.ids),
        }
    }

    /// Enqueues one call to run no earlier than `delay` from now.
    pub async fn enqueue_in<A: Serialize + ?Sized>(
        &self,
        delay: Duration,
        task: &str,
        args: &A,
    ) -> Result<String, StoreError> {
        self.enqueue_with(task, args, &EnqueueOptions::new().delay(delay))
            .await
    }

    /// Enqueues one call to run no earlier than `at` (at once when `at`
    /// has passed).
    pub async fn enqueue_at<A: Serialize + ?Sized>(
        &self,
        at: Timestamp,
        task: &str,
        args: &A,
    ) -> Result<String, StoreError> {
        self.enqueue_with(task, args, &EnqueueOptions::new().at(at))
            .await
    }

    /// Enqueues many calls in one round trip; returns their ids in order.
    /// Arguments are all checked first; if one is refused nothing is
    /// written.
    pub async fn enqueue_many<T: AsRef<str>, A: Serialize>(
        &self,
        calls: &[(T, A)],
    ) -> Result<Vec<String>, StoreError> {
        self.enqueue_many_with(calls, &EnqueueOptions::default())
            .await
    }

    /// [`enqueue_many`](Self::enqueue_many) with the same `options` for
    /// every call (a uniqueness key is refused: it names one task).
    pub async fn enqueue_many_with<T: AsRef<str>, A: Serialize>(
        &self,
        calls: &[(T, A)],
        options: &EnqueueOptions,
    ) -> Result<Vec<String>, StoreError> {
        let inner = &self.store.inner;
        let keys = inner.home(&self.name);
        let planned = calls::plan_enqueue_many(keys, &inner.opts, &self.name, calls, options)?;
        inner.send_enqueue(keys, planned.call).await?;
        Ok(planned.ids)
    }
}

impl Inner {
    /// The partition of a queue name or uniqueness key (`Store::home`).
    fn home(&self, name: &str) -> &Keys {
        &self.parts[partition::of(name, self.parts.len())]
    }

    /// The partition holding task `id`'s record, else partition 0
    /// (`Store::locate`).
    async fn locate(&self, id: &str) -> Result<&Keys, StoreError> {
        if let [only] = self.parts.as_slice() {
            return Ok(only);
        }
        for keys in &self.parts {
            let cmd = calls::task_exists(keys, id);
            if self
                .send::<bool>(keys, false, &[], Request::Cmd(&cmd))
                .await?
            {
                return Ok(keys);
            }
        }
        Ok(&self.parts[0])
    }

    async fn task_in(&self, keys: &Keys, id: &str) -> Result<TaskRecord, StoreError> {
        let key = keys.task(id);
        let cmd = calls::read_task(keys, id);
        let value: Value = self
            .send(keys, false, &[(&key, "hash")], Request::Cmd(&cmd))
            .await?;
        calls::task_reply(id, value)
    }

    async fn cancel_in(&self, keys: &Keys, id: &str) -> Result<(), StoreError> {
        let inv = calls::cancel(keys, id, self.opts.registry_ttl);
        let reply: Vec<Value> = self.send(keys, true, &[], Request::Script(&inv)).await?;
        match calls::cancel_reply(id, reply)? {
            CancelReply::Done => Ok(()),
            CancelReply::Status(status) => {
                if status == TaskStatus::Scheduled {
                    let inv = calls::cancel_scheduled(keys, id, self.opts.registry_ttl);
                    let done: i64 = self.send(keys, true, &[], Request::Script(&inv)).await?;
                    if done == 1 {
                        return Ok(());
                    }
                }
                Err(StoreError::NotQueued {
                    id: id.to_owned(),
                    status,
                })
            }
        }
    }

    /// Sends a planned enqueue: the outcome of a unique one, `None` for
    /// the others (their ids were planned).
    async fn send_enqueue(
        &self,
        keys: &Keys,
        call: EnqueueCall,
    ) -> Result<Option<Enqueued>, StoreError> {
        match call {
            EnqueueCall::Nothing => {}
            EnqueueCall::One(inv) => {
                self.send::<i64>(keys, true, &[], Request::Script(&inv))
                    .await?;
            }
            EnqueueCall::Batch(pipe) => {
                let values: Vec<Value> = self.send(keys, true, &[], Request::Pipe(&pipe)).await?;
                replies(values).map_err(|e| self.redis_error(e))?;
            }
            EnqueueCall::Unique(inv) => {
                let reply = self.send(keys, true, &[], Request::Script(&inv)).await?;
                return calls::unique_reply(reply).map(Some);
            }
        }
        Ok(None)
    }

    /// Where the commands for hash slot `slot` go: on a Cluster, the
    /// master serving it (the slot map asked of the seed nodes when there
    /// is none, with the sync store's own lookup on Tokio's blocking
    /// pool); elsewhere the one server (`None`).
    async fn route(&self, slot: u16) -> Result<Route, StoreError> {
        if !self.config.is_cluster() {
            return Ok(None);
        }
        let known = lock(&self.slot_map)
            .as_ref()
            .and_then(|map| map.master(slot))
            .map(|(host, port)| (host.to_owned(), port));
        if known.is_some() {
            return Ok(known);
        }
        let config = self.config.clone();
        let timeout = self.opts.connect_timeout;
        let map = tokio::task::spawn_blocking(move || config.cluster_map(timeout))
            .await
            .map_err(|e| self.lookup_failed("the slot map of the cluster", e))??;
        let node = map.master(slot).map(|(host, port)| (host.to_owned(), port));
        if node.is_none() {
            return Err(self
                .config
                .connect_error(RedisError::from(std::io::Error::other(format!(
                    "no master serves hash slot {slot} (cluster down?)"
                )))));
        }
        *lock(&self.slot_map) = Some(map);
        Ok(node)
    }

    /// The shared connection to `route`, opened if needed.
    async fn conn(&self, route: &Route) -> Result<MultiplexedConnection, StoreError> {
        if let Some(conn) = lock(&self.conns).get(route).cloned() {
            return Ok(conn);
        }
        let durable = self.config.wait().map(|w| w.timeout).unwrap_or_default();
        let conn = self
            .open(route, Some(self.opts.io_timeout + durable))
            .await?;
        lock(&self.conns).insert(route.clone(), conn.clone());
        Ok(conn)
    }

    /// After a connection error on `route`: its connection is dropped (and
    /// on a Cluster the slot map, which a failover or a `MOVED` made
    /// stale), so the next call opens a new one.
    fn forget(&self, route: &Route) {
        lock(&self.conns).remove(route);
        if route.is_some() {
            *lock(&self.slot_map) = None;
        }
    }

    fn lookup_failed(&self, what: &str, error: tokio::task::JoinError) -> StoreError {
        self.config
            .connect_error(RedisError::from(std::io::Error::other(format!(
                "the lookup of {what} failed: {error}"
            ))))
    }

    /// Opens a new connection to `route` whose commands may wait `reply`
    /// for their reply (none: no limit, for a blocking wait timed by its
    /// caller).
    async fn open(
        &self,
        route: &Route,
        reply: Option<Duration>,
    ) -> Result<MultiplexedConnection, StoreError> {
        let timeout = self.opts.connect_timeout;
        let client = if route.is_none() && self.config.is_sentinel() {
            // The sentinels are asked with blocking calls (each within the
            // connect timeout): off the runtime's threads.
            let config = self.config.clone();
            tokio::task::spawn_blocking(move || config.async_client(None, timeout))
                .await
                .map_err(|e| self.lookup_failed("the master through the sentinels", e))??
        } else {
            self.config.async_client(route.as_ref(), timeout)?
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(reply);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.config.connect_error(e))
    }

    /// Sends `request` to the partition of `keys`; after a write, in
    /// durable mode, waits for the replicas. A connection error drops the
    /// connection, so the next call opens a new one.
    async fn send<T: FromRedisValue>(
        &self,
        keys: &Keys,
        write: bool,
        expected: &[(&str, &'static str)],
        request: Request<'_>,
    ) -> Result<T, StoreError> {
        let route = self.route(partition::key_slot(keys.prefix())).await?;
        let mut conn = self.conn(&route).await?;
        let result = match request {
            Request::Cmd(cmd) => cmd.query_async(&mut conn).await,
            Request::Pipe(pipe) => pipe.query_async(&mut conn).await,
            Request::Script(inv) => inv.invoke_async(&mut conn).await,
        };
        let outcome = match result {
            Ok(value) if write => self.wait_replicas(&mut conn).await.map(|()| value),
            Ok(value) => Ok(value),
            Err(err) => Err(self.classify(&mut conn, keys, err, expected).await),
        };
        if outcome.as_ref().is_err_and(StoreError::is_connection_error) {
            self.forget(&route);
        }
        outcome
    }

    /// In durable mode, `WAIT` for the replicas after a write.
    async fn wait_replicas(&self, conn: &mut MultiplexedConnection) -> Result<(), StoreError> {
        let Some((policy, cmd)) = self.config.wait_cmd() else {
            return Ok(());
        };
        let acked: i64 = cmd
            .query_async(conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        policy.check(acked).map_err(|e| match e {
            crate::connection::WaitError::Redis(error) => self.redis_error(error),
            crate::connection::WaitError::Short { wanted, got } => StoreError::NotReplicated {
                addr: self.addr.clone(),
                wanted,
                got,
                timeout_ms: policy.timeout.as_millis().try_into().unwrap_or(u64::MAX),
            },
        })
    }

    /// Turns a Redis error into a store error, naming the key of the wrong
    /// type (like the sync store's `Part::classify`).
    async fn classify(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &Keys,
        err: RedisError,
        expected: &[(&str, &'static str)],
    ) -> StoreError {
        if let Some(e) = part::script_error(keys, &err) {
            return e;
        }
        if err.code() == Some("WRONGTYPE") {
            for (key, want) in expected {
                let found: Result<String, _> =
                    redis::cmd("TYPE").arg(*key).query_async(&mut *conn).await;
                if let Ok(found) = found
                    && found != "none"
                    && found != *want
                {
                    return StoreError::WrongType {
                        key: (*key).to_owned(),
                        expected: (*want).to_owned(),
                        found,
                    };
                }
            }
        }
        self.redis_error(err)
    }

    fn redis_error(&self, error: RedisError) -> StoreError {
        StoreError::Redis {
            addr: self.addr.clone(),
            error,
        }
    }

    /// Checks the layout marker like the sync store (`Part::check_layout`):
    /// the data under the prefix was written with this partition count;
    /// fresh data is marked.
    async fn check_layout(&self) -> Result<(), StoreError> {
        let count = self.config.partitions();
        let key = format!("{}:layout", self.base_prefix);
        let cluster = self.config.is_cluster();
        let marked = count > 1 || cluster;
        let route = self.route(partition::key_slot(&key)).await?;
        let mut conn = self.conn(&route).await?;
        let outcome = self
            .mark_layout(&mut conn, &key, count, marked, cluster)
            .await;
        if outcome.as_ref().is_err_and(StoreError::is_connection_error) {
            self.forget(&route);
        }
        outcome
    }

    async fn mark_layout(
        &self,
        conn: &mut MultiplexedConnection,
        key: &str,
        count: u16,
        marked: bool,
        cluster: bool,
    ) -> Result<(), StoreError> {
        let mut get = redis::cmd("GET");
        get.arg(key);
        let mut found: Option<String> = get
            .query_async(&mut *conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        if found.is_none() && marked {
            if !cluster {
                let old: bool = redis::cmd("EXISTS")
                    .arg(format!("{}:schema", self.base_prefix))
                    .query_async(&mut *conn)
                    .await
                    .map_err(|e| self.redis_error(e))?;
                if old {
                    return Err(part::layout_mismatch(
                        &self.base_prefix,
                        "the unpartitioned layout".to_owned(),
                        count,
                    ));
                }
            }
            let _: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(part::marker(count))
                .arg("NX")
                .query_async(&mut *conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            found = get
                .query_async(&mut *conn)
                .await
                .map_err(|e| self.redis_error(e))?;
        }
        part::layout_verdict(&self.base_prefix, found, count, marked)
    }
}
