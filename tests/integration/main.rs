//! Integration tests: one binary, real `redis-server`s, real processes.
//!
//! Table of contents:
//!
//! - `support`: the harness. `RedisServer` (a throwaway server per test),
//!   `wait_until` (poll with a deadline), `Cmd` (run a binary, print
//!   everything on failure), `snapshot` (all keys, to prove nothing changed).
//! - `store_producer`: enqueue, batches, size limit, queue listing, empty,
//!   delete, the raw-command enqueue of `docs/redis-schema.md`.
//! - `store_results`: results in the record, `P:done:<id>`, waiting, a
//!   task's stored output (`P:output:<id>`).
//! - `store_unique`: unique enqueue: racing producers, freeing the key.
//! - `store_tasks`: reading records (missing, corrupt, wrong key type),
//!   cancel, meta.
//! - `store_registry`: finished and failed registries, requeue, expiry,
//!   the windowed filter of `Store::matching` and `Store::scan` going on
//!   from its cursor.
//! - `store_canceled`: the canceled registry: each cancel path enters it,
//!   a wrong-typed key stops a cancel untouched, trimming, the filter.
//! - `store_children`: tasks held for the end of the task that asked for
//!   them: written with its finish, by no other ending.
//! - `store_expiry`: task expiry decided by the fetch scripts.
//! - `store_flow`: flow control per queue and per task function, pokes.
//! - `store_history`: the per-minute history of endings: counts by kind,
//!   run time and wait percentiles, expiry, hostile fields and keys.
//! - `store_slots`: slot registration, heartbeats, locks, dead slots,
//!   reclaim.
//! - `store_fetch`: reliable fetch, priority, blocking wait, fencing,
//!   requeue at the front.
//! - `store_finish_fetch`: a busy slot's one round trip (finish and the
//!   next fetch), fenced, with keys of the wrong type named.
//! - `store_connection`: unreachable Redis, dropped connections.
//! - `store_delayed`: delayed enqueue and promotion (exactly once under
//!   racing promoters), per-enqueue options, raw delayed enqueue, retries
//!   through the delayed set, cancel requests of running tasks.
//! - `store_dead_slots`: recovered dead slots stay visible for
//!   `dead_worker_ttl`.
//! - `store_schema`: the schema marker; the Python original's data under
//!   our prefix is refused and left unchanged.
//! - `async_producer`: the async producer (`AsyncStore`, feature `async`):
//!   enqueue, a result awaited from a real supervisor, cancel, TLS, the
//!   durable mode, a Sentinel failover, a Cluster refused; the axum example
//!   (`examples/axum_producer.rs`) over real HTTP.
//! - `cli_admin`: every admin subcommand against a real server.
//! - `cli_enqueue`: `enqueue` in an application binary: argument types
//!   checked, `@file` and `-`, `--unique`, the application's `--version`.
//! - `cli_errors`: bad input to the admin binary: one-line errors, exit
//!   codes, nothing changed.
//! - `cli_schedule`: `schedule next`, which needs no Redis.
//! - `cli_failed`: `failed requeue|delete` with `--queue`, `--task`,
//!   `--error-contains`, `--since`.
//! - `completions`: `completions bash|zsh|fish` of both kinds of binary;
//!   bash's and fish's completion driven for real (`task <TAB>`).
//! - `dashboard`: the web dashboard in a real headless Chromium (requeue
//!   with a click, quiet a supervisor; an operator's round: search,
//!   filter, bulk requeue, pause/run/resume a schedule entry; screenshots)
//!   and over plain HTTP (CSRF, host, token, read-only, filters, bulk
//!   actions, search).
//! - `e2e`: the demo binary as a real supervisor with real worker
//!   processes: every abnormal ending, shutdown, recovery, isolation,
//!   Redis outages, flow control, expiry, tasks enqueueing tasks, a task's
//!   own output, traces over OTLP, errors to Sentry (see `e2e/mod.rs`).
//! - `scheduler_store`: the scheduler's Redis side: exactly-once enqueue,
//!   the lock fence, singleton skip.
//! - `scheduler`: the scheduler process: two at once, takeover after
//!   SIGKILL, catch-up, SIGTERM, `worker --scheduler`.
//! - `graph`: task graphs: store level, `graph show`, and end to end with
//!   the demo supervisor (order, failing nodes, both failure policies).
//! - `guide`: every Rust snippet of docs/guide.md stands in the compiled
//!   application `examples/thumbs/`.
//! - `logging`: what the binaries write on stderr: error causes, colour,
//!   a stderr nobody reads.
//! - `metrics`: the supervisor's `/metrics` scraped over HTTP and checked
//!   by `promtool`.
//! - `progress`: `TaskContext::progress` from a worker process to Redis,
//!   `task show`, the dashboard and the metric.
//! - `secrets`: no password on a command line; `redis_password_file`.
//! - `deployments`: TLS, a restricted ACL user, Sentinel failover (with
//!   and without the durable `WAIT` mode), by settings alone.
//!   `deployments::cluster`: a three-master Redis Cluster (harness in
//!   `support::cluster`, tested by `deployments::cluster_harness`): every
//!   program, the spread over the masters, a master SIGKILLed under load,
//!   a rebalance.
//! - `testing_helper`: the in-process runner for users' test suites.
//! - `three_partitions`: store tests again on data split into three
//!   partitions.
//! - `packaging`: the declared `rust-version` against the locked
//!   dependencies; every crate packages for crates.io.
//!
//! Run all with `cargo test --test integration`, or a part with
//! `cargo test --test integration store_fetch`.

mod support;

mod async_producer;
mod cli_admin;
mod cli_enqueue;
mod cli_errors;
mod cli_failed;
mod cli_schedule;
mod completions;
mod dashboard;
mod deployments;
mod e2e;
mod graph;
mod guide;
mod logging;
mod metrics;
mod packaging;
mod progress;
mod scheduler;
mod scheduler_store;
mod secrets;
mod store_canceled;
mod store_children;
mod store_connection;
mod store_dead_slots;
mod store_delayed;
mod store_expiry;
mod store_fetch;
mod store_finish_fetch;
mod store_flow;
mod store_history;
mod store_partitions;
mod store_producer;
mod store_read_ahead;
mod store_registry;
mod store_results;
mod store_schema;
mod store_slots;
mod store_tasks;
mod store_unique;
mod systemd;
mod testing_helper;
mod three_partitions;
mod trace_context;
