//! The application on a three-master Redis Cluster, by settings alone
//! (`redis+cluster://` URL or `redis_cluster_nodes`):
//!
//! - every program works: plain, as the documented ACL user, over TLS
//!   across a failover;
//! - queues (and names that differ in one character) spread over the
//!   masters;
//! - what spans queues works: a graph over queues on three masters, one
//!   uniqueness key from two queues, a delayed task, cancel of a running
//!   task;
//! - the master of partition 0 SIGKILLed under load (its replica takes
//!   over) loses nothing in the durable mode: no acknowledged enqueue, no
//!   recorded outcome, and no non-reentrant task runs twice; without it the
//!   losses are printed (`REDIS_TASKS_CLUSTER_KILLS=N` for N kills);
//! - a rebalance onto a fourth master under load loses nothing;
//! - seeds that are down or silent are skipped; a prefix written with
//!   another partition count is refused and left unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis_tasks::Store;
use redis_tasks::protocol::TaskStatus;
use serde_json::json;

use crate::support::cluster::ClusterSet;
use crate::support::wait_until;

use super::{AppEnv, Losses, WAIT, wait_status};

/// The queues of the load tests, picked so that, with the default 16
/// partitions on three masters, every master holds some (emails and search
/// on the third, sms on the second, images, billing and exports on the
/// first, images on partition 0 with the supervisor records and the
/// scheduler). A change of the name-to-partition hash moves them (and is a
/// layout change: data written before would be misplaced).
const QUEUES: [&str; 6] = ["emails", "sms", "images", "billing", "search", "exports"];

/// A schedule that enqueues a no-op every second on the first queue.
const SCHEDULE: &str =
    "[schedule.tick]\ntask = \"noop\"\nqueue = \"emails\"\nevery = \"1s\"\nsingleton = false\n";

#[test]
fn every_program_works_on_a_three_master_cluster() {
    let set = ClusterSet::start();
    let app = AppEnv::new(&[("REDIS_URL", set.url())]);
    assert_eq!(app.store().partition_count(), 16);
    app.exercise_every_program();
    // The data went to the cluster (every master holds some of it), not
    // to one node.
    let keys = set.key_count_per_master();
    assert!(keys.values().all(|n| *n > 0), "{keys:?}");
}

#[test]
fn queues_spread_over_the_masters() {
    // Three masters without replicas; the settings form this time: the
    // nodes as a list, `redis_url` for the scheme only.
    let set = ClusterSet::start_with(3, 0);
    let app = AppEnv::new(&[
        ("REDIS_URL", "redis://cluster-managed".to_owned()),
        ("RT_REDIS_CLUSTER_NODES", set.seeds().join(",")),
        ("RT_WORKER_QUEUES", QUEUES.join(",")),
    ]);
    let store = app.store();
    assert_eq!(store.partition_count(), 16);
    set.reset_stats();
    let per_queue = 40;
    let mut ids = Vec::new();
    for queue in QUEUES {
        let calls: Vec<(&str, &serde_json::Value)> = (0..per_queue)
            .map(|_| ("noop", &serde_json::Value::Null))
            .collect();
        ids.extend(store.queue(queue).enqueue_many(&calls).expect("enqueue"));
    }
    let mut sup = app.start(&["worker", "-c", "4"], "", &[]);
    let total = (per_queue * QUEUES.len()) as u64;
    wait_until(&format!("{total} tasks to finish"), WAIT, || {
        store.finished().count().is_ok_and(|n| n >= total)
    });
    sup.stop();
    for id in &ids {
        let t = store.task(id).expect("task");
        assert_eq!(t.status, TaskStatus::Finished, "{t:#?}");
    }

    let calls = set.commands_per_master();
    let keys = set.key_count_per_master();
    let all_calls: u64 = calls.values().sum();
    let all_keys: u64 = keys.values().sum();
    eprintln!("cluster spread: data commands per master {calls:?}, keys per master {keys:?}");
    // The load divides: every master served a real share of the commands
    // and holds a real share of the data (each holds one to three of the
    // six queues).
    let busy = calls.values().filter(|n| **n * 10 >= all_calls).count();
    let holding = keys.values().filter(|n| **n * 10 >= all_keys).count();
    assert_eq!(busy, 3, "commands did not spread: {calls:?}");
    assert_eq!(holding, 3, "data did not spread: {keys:?}");
}

#[test]
fn a_master_killed_under_load_loses_nothing_in_durable_mode() {
    let mut set = ClusterSet::start();
    // The settings form: the seed nodes as a list.
    let app = AppEnv::new(&[
        ("REDIS_URL", "redis://cluster-managed".to_owned()),
        ("RT_REDIS_CLUSTER_NODES", set.seeds().join(",")),
        ("RT_WORKER_QUEUES", QUEUES.join(",")),
        ("RT_REDIS_WAIT_REPLICAS", "1".to_owned()),
        ("RT_REDIS_WAIT_TIMEOUT_MS", "3000".to_owned()),
    ]);
    let losses = failover_under_load(&mut set, &app);
    eprintln!("cluster failover with WAIT 1: {losses:?}");
    assert_eq!(losses.lost_enqueues, 0, "{losses:?}");
    assert_eq!(losses.lost_outcomes, 0, "{losses:?}");
    assert_eq!(losses.unfinished, 0, "{losses:?}");
    assert_eq!(losses.nonreentrant_ran_twice, 0, "{losses:?}");
}

#[test]
fn a_master_killed_under_load_without_durable_mode_carries_on_and_losses_are_counted() {
    let mut set = ClusterSet::start();
    let app = AppEnv::new(&[
        ("REDIS_URL", set.url()),
        ("RT_WORKER_QUEUES", QUEUES.join(",")),
    ]);
    let losses = failover_under_load(&mut set, &app);
    eprintln!("cluster failover without WAIT: {losses:?}");
}

/// A producer thread: round robin over [`QUEUES`], every other task
/// non-reentrant (`mark`, whose side effect is a line with its id in
/// `marks`); keeps the ids it got back (acknowledged), whether the event
/// under test (a kill, a rebalance) had begun, and the kind.
struct Producer {
    stop: Arc<AtomicBool>,
    event: Arc<AtomicBool>,
    after_event: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<(Vec<Acked>, u64)>,
}

/// An acknowledged enqueue: id, before the event, reentrant.
type Acked = (String, bool, bool);

impl Producer {
    /// Starts the thread; it stops by itself after `cap` acknowledged
    /// enqueues after the event.
    fn start(app: &AppEnv, marks: &std::path::Path, cap: usize) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let event = Arc::new(AtomicBool::new(false));
        let after_event = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, event, after_event) = (
                Arc::clone(&stop),
                Arc::clone(&event),
                Arc::clone(&after_event),
            );
            let settings = app.settings();
            let marks = marks.to_owned();
            std::thread::spawn(move || {
                let store = Store::from_settings(&settings).expect("producer store");
                let mut acked: Vec<Acked> = Vec::new();
                let mut errors = 0u64;
                let mut n = 0usize;
                // Enough after the event to show it carries on, not a flood.
                while !stop.load(Ordering::SeqCst) && after_event.load(Ordering::SeqCst) < cap {
                    let before = !event.load(Ordering::SeqCst);
                    let queue = QUEUES[n % QUEUES.len()];
                    let reentrant = n % 2 == 1;
                    let task = if reentrant { "reentrant_mark" } else { "mark" };
                    match store
                        .queue(queue)
                        .enqueue(task, &json!({"path": marks, "secs": 0.01}))
                    {
                        Ok(id) => {
                            acked.push((id, before, reentrant));
                            after_event.fetch_add(usize::from(!before), Ordering::SeqCst);
                            n += 1;
                        }
                        Err(_) => {
                            errors += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(3));
                }
                (acked, errors)
            })
        };
        Producer {
            stop,
            event,
            after_event,
            thread,
        }
    }

    /// The event under test begins now.
    fn event(&self) {
        self.event.store(true, Ordering::SeqCst);
    }

    /// Waits for `n` acknowledged enqueues after the event, stops the
    /// thread, returns what it acknowledged and its error count.
    fn finish_after(self, n: usize) -> (Vec<Acked>, u64) {
        wait_until(
            &format!("{n} acknowledged enqueues after the event"),
            WAIT,
            || self.after_event.load(Ordering::SeqCst) >= n,
        );
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("producer thread")
    }
}

/// Lets every acknowledged task settle (finished, failed, or gone), then
/// counts what was lost: by the task records, the demo's outcome log and
/// the side effects in `marks`; explains each unfinished task with the
/// lines of the supervisor logs `sups` that name it.
fn account(
    store: &Store,
    app: &AppEnv,
    marks: &std::path::Path,
    (acked, producer_errors): (Vec<Acked>, u64),
    sups: &[&crate::e2e::Running],
) -> Losses {
    let deadline = Instant::now() + WAIT;
    let status: BTreeMap<String, Option<TaskStatus>> = loop {
        let status: BTreeMap<String, Option<TaskStatus>> = acked
            .iter()
            .map(|(id, _, _)| (id.clone(), store.task(id).ok().map(|t| t.status)))
            .collect();
        let settled = status
            .values()
            .all(|s| matches!(s, None | Some(TaskStatus::Finished | TaskStatus::Failed)));
        if settled || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let runs = super::sentinel::outcome_runs(app);
    let mut side_effects: BTreeMap<String, usize> = BTreeMap::new();
    for line in std::fs::read_to_string(marks).unwrap_or_default().lines() {
        *side_effects.entry(line.to_owned()).or_default() += 1;
    }
    let mut losses = Losses {
        acked: acked.len(),
        acked_before_kill: acked.iter().filter(|(_, before, _)| *before).count(),
        producer_errors,
        ..Losses::default()
    };
    for (id, _, reentrant) in &acked {
        let st = status.get(id).copied().flatten();
        if st.is_none() {
            losses.lost_enqueues += 1;
        }
        if st != Some(TaskStatus::Finished) {
            losses.unfinished += 1;
            let lines: Vec<String> = sups
                .iter()
                .flat_map(|s| s.log().lines().map(str::to_owned).collect::<Vec<_>>())
                .filter(|l| l.contains(id.as_str()))
                .collect();
            eprintln!(
                "unfinished {id} (reentrant {reentrant}, runs {:?}, side effects {:?}): {:#?}\n\
                 supervisor lines: {lines:#?}",
                runs.get(id),
                side_effects.get(id),
                store.task(id),
            );
            if runs.get(id).copied().unwrap_or(0) > 0 {
                losses.lost_outcomes += 1;
            }
        }
        if !reentrant && side_effects.get(id).copied().unwrap_or(0) > 1 {
            losses.nonreentrant_ran_twice += 1;
        }
    }
    losses
}

/// Two supervisors (`-c 4`, one with the scheduler) run a mixed load of
/// non-reentrant and reentrant tasks on [`QUEUES`] while a producer thread
/// enqueues; the master of partition 0 is SIGKILLed, its replica
/// takes over, the killed node comes back as a replica. Everything must
/// carry on; returns what was lost.
fn failover_under_load(set: &mut ClusterSet, app: &AppEnv) -> Losses {
    let marks = app.path("marks.txt");
    // A heartbeat timeout longer than the failover (about 4 s here; the
    // default is 60 s): supervisor records sit on partition 0, and while
    // its master is being replaced no heartbeat can be written. With the
    // 3 s of the other deployment tests, one supervisor's maintenance
    // takes the other, live one for dead right after the failover and
    // fails its running non-reentrant task as "worker died".
    let env = [("RT_WORKER_HEARTBEAT_TIMEOUT", "20")];
    let mut sup = app.start(&["worker", "--scheduler", "-c", "4"], SCHEDULE, &env);
    let mut sup2 = app.start(&["worker", "-c", "4"], "", &env);
    let store = app.store();
    // REDIS_TASKS_CLUSTER_KILLS=N (default 1) for a longer run: after the
    // first failover, N-1 more masters are killed in turn, each once tasks
    // flow again (and restarted as a replica).
    let kills: usize = std::env::var("REDIS_TASKS_CLUSTER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let producer = Producer::start(app, &marks, 300 * kills);

    wait_until("tasks to flow before the failover", WAIT, || {
        store.finished().count().is_ok_and(|n| n >= 150)
    });
    // The master of partition 0 (its slot is in the first 1024): it holds
    // the supervisor records, the scheduler's lock and runs, and three of
    // the queues.
    let victim = set.master_of_slot(0);
    producer.event();
    set.kill_master(victim);
    let killed_at = Instant::now();
    let new_master = set.wait_failover(victim);
    let failover = killed_at.elapsed();
    // A program started now, with the dead master as its first seed, finds
    // the cluster through the others; in the durable mode too, although
    // the new master has no replica yet (reads do not WAIT).
    let mut seeds = vec![format!("127.0.0.1:{victim}")];
    seeds.extend(
        set.seeds()
            .into_iter()
            .filter(|s| *s != format!("127.0.0.1:{victim}")),
    );
    let mut admin = app.admin(&["info"]);
    if app.env.iter().any(|(k, _)| k == "RT_REDIS_CLUSTER_NODES") {
        admin.env("RT_REDIS_CLUSTER_NODES", seeds.join(","));
    } else {
        admin.env("REDIS_URL", format!("redis+cluster://{}/", seeds.join(",")));
    }
    let info = admin.stdout();
    assert!(QUEUES.iter().all(|q| info.contains(q)), "{info}");
    // The killed node comes back as the new master's replica (the durable
    // mode needs one).
    set.restart_as_replica(victim);
    for k in 1..kills {
        let done = store.finished().count().unwrap_or(0);
        wait_until(
            &format!("tasks to flow before kill {}", k + 1),
            WAIT,
            || store.finished().count().is_ok_and(|n| n >= done + 100),
        );
        let masters = set.masters();
        let victim = masters[k % masters.len()];
        set.kill_master(victim);
        let killed_at = Instant::now();
        let new_master = set.wait_failover(victim);
        eprintln!(
            "kill {}: failover of {victim} to {new_master} took {:?}",
            k + 1,
            killed_at.elapsed()
        );
        set.restart_as_replica(victim);
    }

    // Everything carries on: a task on every queue finishes, the scheduler
    // enqueues again, the admin CLI answers.
    let after = enqueue_on_every_queue(&store);
    let scheduled_before = sup.log().matches("scheduler: enqueued").count();
    wait_until("the scheduler to enqueue after the failover", WAIT, || {
        sup.log().matches("scheduler: enqueued").count() > scheduled_before
    });
    let info = app.admin(&["info"]).stdout();
    assert!(QUEUES.iter().all(|q| info.contains(q)), "{info}");
    // A real load after the failover too.
    let acked = producer.finish_after(100);
    for id in &after {
        wait_status(&store, id, TaskStatus::Finished);
    }
    let losses = account(&store, app, &marks, acked, &[&sup, &sup2]);
    eprintln!(
        "cluster failover of {victim} to {new_master} took {failover:?}; acked {} ({} before \
         the kill); producer errors during it: {}",
        losses.acked, losses.acked_before_kill, losses.producer_errors
    );
    sup.stop();
    sup2.stop();
    losses
}

/// Enqueues a no-op on every queue of [`QUEUES`], retrying each until it
/// is acknowledged; returns the ids.
fn enqueue_on_every_queue(store: &Store) -> Vec<String> {
    QUEUES
        .iter()
        .map(|queue| {
            let mut id = String::new();
            wait_until(&format!("an enqueue on {queue}"), WAIT, || {
                match store.queue(*queue).enqueue("noop", &json!(null)) {
                    Ok(got) => {
                        id = got;
                        true
                    }
                    Err(_) => false,
                }
            });
            id
        })
        .collect()
}

/// A store on `url`-or-`nodes` with `partitions` (0: the default).
fn store_with(redis_url: &str, nodes: &[String], partitions: u16) -> Store {
    let mut settings = redis_tasks::config::Settings {
        redis_url: redis_url.into(),
        ..redis_tasks::config::Settings::default()
    };
    settings.redis.cluster_nodes = nodes.to_vec();
    settings.redis.partitions = partitions;
    Store::from_settings(&settings).expect("store from settings")
}

/// Enqueues with `store` and returns the error text, checking it is the
/// partition-count refusal.
fn refused(store: &Store) -> String {
    let err = store
        .queue("emails")
        .enqueue("noop", &json!(null))
        .expect_err("a store with another partition count is refused");
    let text = err.to_string();
    assert!(text.contains("redis_partitions"), "{text}");
    text
}

#[test]
fn a_prefix_written_with_another_partition_count_is_refused() {
    // A single server: data of today's layout (one partition), then
    // programs set to four; data of four, then programs set to one or two.
    let redis = crate::support::RedisServer::start();
    let one = store_with(&redis.url(), &[], 0);
    assert_eq!(one.partition_count(), 1);
    let id = one
        .queue("emails")
        .enqueue("noop", &json!(null))
        .expect("enqueue");
    let before = crate::support::snapshot(&mut redis.client());
    let text = refused(&store_with(&redis.url(), &[], 4));
    assert!(text.contains("unpartitioned"), "{text}");
    assert_eq!(crate::support::snapshot(&mut redis.client()), before);
    assert!(one.task(&id).is_ok());

    let _: () = redis::cmd("FLUSHALL")
        .query(&mut redis.client())
        .expect("FLUSHALL");
    let four = store_with(&redis.url(), &[], 4);
    assert_eq!(four.partition_count(), 4);
    let ids: Vec<String> = QUEUES
        .iter()
        .map(|q| {
            four.queue(*q)
                .enqueue("noop", &json!(null))
                .expect("enqueue")
        })
        .collect();
    let before = crate::support::snapshot(&mut redis.client());
    for other in [1, 2] {
        let text = refused(&store_with(&redis.url(), &[], other));
        assert!(text.contains("partitions 4"), "{text}");
    }
    assert_eq!(crate::support::snapshot(&mut redis.client()), before);
    for id in &ids {
        assert!(four.task(id).is_ok(), "{id}");
    }

    // A Cluster: data of the default 16 partitions, then programs set to
    // 4 or 1; and the other way round under another prefix.
    let set = ClusterSet::start_with(3, 0);
    let seeds = set.seeds();
    let sixteen = store_with("redis://cluster-managed", &seeds, 0);
    assert_eq!(sixteen.partition_count(), 16);
    sixteen
        .queue("emails")
        .enqueue("noop", &json!(null))
        .expect("enqueue");
    let before = set.key_count_per_master();
    for other in [4, 1] {
        refused(&store_with("redis://cluster-managed", &seeds, other));
    }
    assert_eq!(set.key_count_per_master(), before);
}

#[test]
fn a_cluster_prefix_written_with_one_partition_refuses_the_default_sixteen() {
    let set = ClusterSet::start_with(3, 0);
    let seeds = set.seeds();
    let one = store_with("redis://cluster-managed", &seeds, 1);
    assert_eq!(one.partition_count(), 1);
    one.queue("emails")
        .enqueue("noop", &json!(null))
        .expect("enqueue");
    let before = set.key_count_per_master();
    refused(&store_with("redis://cluster-managed", &seeds, 0));
    assert_eq!(set.key_count_per_master(), before);
}

#[test]
fn seeds_that_do_not_answer_are_skipped_and_none_answering_is_a_clear_error() {
    let set = ClusterSet::start_with(3, 0);
    // One port nobody listens on, one that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let closed = crate::support::free_port().expect("free port");
    let mut seeds = vec![
        format!("127.0.0.1:{closed}"),
        format!("127.0.0.1:{silent_port}"),
    ];
    let dead_only = seeds.clone();
    seeds.extend(set.seeds());
    let store = store_with("redis://cluster-managed", &seeds, 0)
        .with_timeouts(Duration::from_millis(500), Duration::from_millis(500));
    let id = store
        .queue("emails")
        .enqueue("noop", &json!(null))
        .expect("enqueue through the answering seeds");
    assert_eq!(store.task(&id).expect("task").status, TaskStatus::Queued);

    let store = store_with("redis://cluster-managed", &dead_only, 0)
        .with_timeouts(Duration::from_millis(500), Duration::from_millis(500));
    let err = store.ping().expect_err("no seed answers");
    let text = err.to_string();
    assert!(text.contains(&dead_only[0]), "{text}");
    assert!(text.contains(&dead_only[1]), "{text}");
    assert!(err.is_connection_error(), "{err:?}");
    drop(silent);
}

#[test]
fn queues_named_alike_spread_over_the_masters_too() {
    // Names that differ only in their last character (a common pattern)
    // must not pile onto one master: the queue-to-partition hash has to
    // mix every bit of the name.
    let set = ClusterSet::start_with(3, 0);
    let store = store_with("redis://cluster-managed", &set.seeds(), 0);
    let mut holders: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for i in 0..6 {
        let queue = format!("queue{i}");
        let before = set.key_count_per_master();
        let calls: Vec<(&str, &serde_json::Value)> = (0..20)
            .map(|_| ("noop", &serde_json::Value::Null))
            .collect();
        store
            .queue(queue.as_str())
            .enqueue_many(&calls)
            .expect("enqueue");
        let after = set.key_count_per_master();
        let grown = after
            .iter()
            .max_by_key(|(port, n)| n.saturating_sub(before.get(port).copied().unwrap_or(0)))
            .map(|(port, _)| *port)
            .expect("a master");
        holders.entry(grown).or_default().push(queue);
    }
    eprintln!("queues per master: {holders:?}");
    assert!(holders.len() >= 2, "all on one master: {holders:?}");
}

/// Creates the ACL user `rt_app` with `rules` and password `s3cret` on every
/// node (ACL rules are not replicated nor shared by a Cluster).
fn create_acl_user(set: &ClusterSet, rules: &str) {
    for node in set.live_nodes() {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg("rt_app");
        for rule in rules.split_whitespace() {
            cmd.arg(rule);
        }
        cmd.arg(">s3cret")
            .query::<()>(&mut node.client())
            .expect("ACL SETUSER");
    }
}

#[test]
fn every_program_works_on_a_cluster_as_the_documented_acl_user() {
    let set = ClusterSet::start_with(3, 0);
    // The documented rules, plus CLUSTER SLOTS (to find the masters), as
    // Sentinel needs ROLE.
    let rules = format!("{} +cluster|slots", super::acl::ACL_RULES);
    create_acl_user(&set, &rules);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret\n").expect("password file");
    let url = set
        .url()
        .replace("redis+cluster://", "redis+cluster://rt_app@");
    let app = AppEnv::new(&[
        ("REDIS_URL", url),
        ("RT_REDIS_PASSWORD_FILE", file.display().to_string()),
    ]);
    app.exercise_every_program();
}

#[test]
fn a_fleet_under_load_follows_a_rebalance_onto_a_new_master() {
    // Scaling out: a fourth master joins and `redis-cli --cluster
    // rebalance` moves slots, with their keys, onto it while supervisors
    // run tasks and a producer enqueues. Scripts on a slot being moved get
    // ASK / TRYAGAIN / MOVED answers; nothing may be lost or run twice.
    let mut set = ClusterSet::start_with(3, 0);
    let app = AppEnv::new(&[
        ("REDIS_URL", set.url()),
        ("RT_WORKER_QUEUES", QUEUES.join(",")),
    ]);
    let marks = app.path("marks.txt");
    let mut sup = app.start(&["worker", "--scheduler", "-c", "4"], SCHEDULE, &[]);
    let mut sup2 = app.start(&["worker", "-c", "4"], "", &[]);
    let store = app.store();
    let producer = Producer::start(&app, &marks, 300);
    wait_until("tasks to flow before the rebalance", WAIT, || {
        store.finished().count().is_ok_and(|n| n >= 150)
    });
    producer.event();
    let new_master = set.add_master();
    let began = Instant::now();
    set.rebalance();
    let took = began.elapsed();
    assert_eq!(set.masters().len(), 4, "{:?}", set.nodes_view());
    assert!(!set.slots_of(new_master).is_empty());
    set.reset_stats();

    // Everything carries on, and the new master takes its share.
    let after = enqueue_on_every_queue(&store);
    let acked = producer.finish_after(200);
    for id in &after {
        wait_status(&store, id, TaskStatus::Finished);
    }
    let info = app.admin(&["info"]).stdout();
    assert!(QUEUES.iter().all(|q| info.contains(q)), "{info}");
    let losses = account(&store, &app, &marks, acked, &[&sup, &sup2]);
    let calls = set.commands_per_master();
    let keys = set.key_count_per_master();
    eprintln!(
        "rebalance onto {new_master} took {took:?}: {losses:?}; after it, data commands per \
         master {calls:?}, keys per master {keys:?}"
    );
    assert_eq!(losses.lost_enqueues, 0, "{losses:?}");
    assert_eq!(losses.unfinished, 0, "{losses:?}");
    assert_eq!(losses.nonreentrant_ran_twice, 0, "{losses:?}");
    assert!(
        calls.get(&new_master).copied().unwrap_or(0) > 0,
        "the new master served nothing: {calls:?}"
    );
    sup.stop();
    sup2.stop();
}

#[test]
fn every_program_works_over_tls_on_a_cluster_across_a_failover() {
    let certs = crate::support::topology::TestCerts::generate();
    let mut set = ClusterSet::start_tls(3, 1, &certs);
    let app = AppEnv::new(&[
        ("REDIS_URL", set.url()),
        (
            "RT_REDIS_TLS_CA_FILE",
            certs.file("ca.pem").display().to_string(),
        ),
    ]);
    assert!(set.url().starts_with("rediss+cluster://"), "{}", set.url());
    app.exercise_every_program();

    // A master fails; the programs follow its replica, still over TLS.
    let victim = set.master_of_slot(0);
    set.kill_master(victim);
    set.wait_failover(victim);
    let queues = ["default", "emails", "sms", "images"];
    let mut args = vec!["worker", "-c", "2"];
    args.extend(queues);
    let mut sup = app.start(&args, "", &[]);
    let store = app.store();
    let mut ids = Vec::new();
    for queue in queues {
        let mut id = String::new();
        wait_until(
            &format!("an enqueue on {queue} after the failover"),
            WAIT,
            || match app.admin(&["enqueue", "--queue", queue, "noop"]).output() {
                out if out.status.success() => {
                    id = out.stdout.trim().to_owned();
                    true
                }
                _ => false,
            },
        );
        ids.push(id);
    }
    for id in &ids {
        wait_status(&store, id, TaskStatus::Finished);
    }
    sup.stop();
}

/// What spans queues, on a real cluster: a graph whose nodes sit on queues
/// of different masters, one uniqueness key used from two queues, a
/// delayed task, and the cancel of a running task (its request and its
/// supervisor's wake list in different partitions).
#[test]
fn graphs_unique_keys_delays_and_cancels_span_queues_on_a_cluster() {
    use redis_tasks::graph::GraphError;
    use redis_tasks::{CancelResult, EnqueueOptions, Graph};

    let set = ClusterSet::start_with(3, 0);
    let app = AppEnv::new(&[("REDIS_URL", set.url())]);
    let mut args = vec!["worker", "-c", "2"];
    args.extend(QUEUES);
    let mut sup = app.start(&args, "", &[]);
    let store = app.store();
    // The supervisor marks every partition at start, one after the other:
    // a refused graph (nothing written) is tried again until its own
    // partition is marked.
    let mut enqueued = None;
    wait_until("the graph middleware to announce itself", WAIT, || {
        enqueued = Graph::new()
            .node_on("emails", "a", "noop", ())
            .node_on("sms", "b", "noop", ())
            .node_on("images", "c", "noop", ())
            .chain(["a", "b", "c"])
            .enqueue(&store)
            .map_err(|e| assert!(matches!(e, GraphError::MiddlewareMissing), "{e}"))
            .ok();
        enqueued.is_some()
    });
    let graph = enqueued.expect("graph");
    wait_until("the graph across three queues to finish", WAIT, || {
        store.graph(&graph.id).is_ok_and(|g| g.status == "finished")
    });

    let hold = EnqueueOptions::new().unique("nightly-report");
    let first = store
        .queue("billing")
        .enqueue_with_outcome("sleep", &json!({"secs": 30}), &hold)
        .expect("unique");
    let second = store
        .queue("search")
        .enqueue_with_outcome("noop", &json!(null), &hold)
        .expect("unique again");
    assert!(first.is_new());
    assert_eq!(second.id(), first.id(), "one task holds the key");

    let delayed = store
        .queue("exports")
        .enqueue_in(Duration::from_secs(1), "noop", &json!(null))
        .expect("delayed");
    wait_status(&store, &delayed, TaskStatus::Finished);

    wait_status(&store, first.id(), TaskStatus::Running);
    assert_eq!(
        store.cancel_task(first.id()).expect("cancel"),
        CancelResult::Requested
    );
    wait_status(&store, first.id(), TaskStatus::Canceled);
    let again = store
        .queue("search")
        .enqueue_with_outcome("noop", &json!(null), &hold)
        .expect("unique after the cancel");
    assert!(again.is_new(), "the key is free once its task ended");
    wait_status(&store, again.id(), TaskStatus::Finished);
    sup.stop();
}
