//! Flow control at the store: pause and resume, concurrency limits and
//! rate limits, decided by the fetch script (docs/flow-control.md).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use redis::Commands;
use redis_tasks::store::{Limit, Rate};
use redis_tasks::{StoreError, TaskStatus};

use crate::support::{RedisServer, wait_until};

fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_paused_queue_keeps_its_tasks_and_others_still_run() {
    let server = RedisServer::start();
    let store = server.store();
    let slow = store.queue("slow").enqueue("t", &1).expect("enqueue");
    store.pause_queue("slow").expect("pause");
    // Enqueueing still works while paused.
    let second = store.queue("slow").enqueue("t", &2).expect("enqueue");
    let other = store.queue("other").enqueue("t", &3).expect("enqueue");
    let both = queues(&["slow", "other"]);

    let f = store
        .fetch("s1", &both, Duration::ZERO)
        .expect("fetch")
        .expect("the other queue's task");
    assert_eq!(f.id, other);
    store
        .finish("s1", &f.id, TaskStatus::Finished, None, Timestamp::now())
        .expect("finish");
    // Blocking: returns nothing (the paused queue is not blocked on).
    let t0 = Instant::now();
    assert!(
        store
            .fetch("s1", &both, Duration::from_millis(300))
            .expect("fetch")
            .is_none()
    );
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert_eq!(store.queue("slow").count().expect("count"), 2);
    assert!(store.queue_flow("slow").expect("flow").paused);

    store.resume_queue("slow").expect("resume");
    assert!(!store.queue_flow("slow").expect("flow").paused);
    let f = store
        .fetch("s1", &both, Duration::ZERO)
        .expect("fetch")
        .expect("resumed");
    assert_eq!(f.id, slow);
    store
        .finish("s1", &f.id, TaskStatus::Finished, None, Timestamp::now())
        .expect("finish");
    assert_eq!(
        store
            .fetch("s1", &both, Duration::ZERO)
            .expect("fetch")
            .map(|f| f.id),
        Some(second)
    );
}

#[test]
fn a_waiting_slot_is_woken_by_resume() {
    let server = RedisServer::start();
    let store = server.store();
    store.pause_queue("q").expect("pause");
    let id = store.queue("q").enqueue("t", &1).expect("enqueue");
    let waiter = {
        let store = store.independent().expect("independent");
        std::thread::spawn(move || {
            store
                .fetch("s1", &queues(&["q"]), Duration::from_secs(20))
                .expect("fetch")
                .map(|f| f.id)
        })
    };
    store.resume_queue("q").expect("resume");
    assert_eq!(waiter.join().expect("waiter"), Some(id));
}

#[test]
fn a_concurrency_limit_holds_across_slots_and_frees_on_every_ending() {
    let server = RedisServer::start();
    let store = server.store();
    store
        .limit_queue("api", Limit::Concurrency(2))
        .expect("limit");
    assert_eq!(store.queue_flow("api").expect("flow").concurrency, Some(2));
    let q = queues(&["api"]);
    for i in 0..6 {
        store.queue("api").enqueue("t", &i).expect("enqueue");
    }
    let a = store
        .fetch("a", &q, Duration::ZERO)
        .expect("a")
        .expect("a task");
    let b = store
        .fetch("b", &q, Duration::ZERO)
        .expect("b")
        .expect("b task");
    assert!(store.fetch("c", &q, Duration::ZERO).expect("c").is_none());
    // A blocking fetch does not take past the limit either.
    assert!(
        store
            .fetch("c", &q, Duration::from_millis(200))
            .expect("c")
            .is_none()
    );
    assert_eq!(store.queue("api").count().expect("count"), 4);

    // A finish frees its permit; the finishing slot's next fetch uses it.
    let (done, next) = store
        .finish_and_fetch(
            &a.lease,
            TaskStatus::Finished,
            None,
            None,
            &q,
            Timestamp::now(),
        )
        .expect("finish and fetch");
    assert!(done);
    let next = next.expect("the freed permit");
    assert!(store.fetch("c", &q, Duration::ZERO).expect("c").is_none());

    // A requeue (no script of its own for permits) frees it too: the
    // record no longer runs.
    assert!(
        store
            .requeue_interrupted("b", &b.id, "worker died", Timestamp::now())
            .expect("requeue")
    );
    let c = store
        .fetch("c", &q, Duration::from_secs(10))
        .expect("c")
        .expect("c task");
    // (A blocking fetch: ended tasks' permits are looked for once a second
    // at most.)
    assert_eq!(c.id, b.id, "the requeued task went back to the front");
    assert!(store.fetch("d", &q, Duration::ZERO).expect("d").is_none());

    store.limit_queue("api", Limit::Clear).expect("clear");
    assert!(store.fetch("d", &q, Duration::ZERO).expect("d").is_some());
    let _ = next;
}

#[test]
fn a_limit_set_while_slots_block_is_obeyed_by_them() {
    let server = RedisServer::start();
    let store = server.store();
    let q = queues(&["late"]);
    // Three slots block on the queue before any limit exists.
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let store = store.independent().expect("independent");
            let q = q.clone();
            std::thread::spawn(move || {
                store
                    .fetch(&format!("w{i}"), &q, Duration::from_secs(3))
                    .expect("fetch")
                    .map(|f| f.id)
            })
        })
        .collect();
    // Give them time to block, then limit and enqueue.
    wait_until("three blocked clients", Duration::from_secs(20), || {
        let mut c = server.client();
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut c)
            .expect("info");
        info.lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .is_some_and(|n| n >= 3)
    });
    store
        .limit_queue("late", Limit::Concurrency(1))
        .expect("limit");
    for i in 0..3 {
        store.queue("late").enqueue("t", &i).expect("enqueue");
    }
    let taken: Vec<String> = waiters
        .into_iter()
        .filter_map(|w| w.join().expect("waiter"))
        .collect();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(store.queue("late").count().expect("count"), 2);
}

#[test]
fn a_rate_limit_lets_n_starts_through_per_window() {
    let server = RedisServer::start();
    let store = server.store();
    let rate: Rate = "3/1s".parse().expect("rate");
    store.limit_queue("mail", Limit::Rate(rate)).expect("limit");
    assert_eq!(store.queue_flow("mail").expect("flow").rate, Some(rate));
    let q = queues(&["mail"]);
    for i in 0..5 {
        store.queue("mail").enqueue("t", &i).expect("enqueue");
    }
    let t0 = Instant::now();
    let mut starts = Vec::new();
    for slot in ["a", "b", "c"] {
        let f = store
            .fetch(slot, &q, Duration::ZERO)
            .expect("fetch")
            .expect("task");
        starts.push(Instant::now());
        store
            .finish(slot, &f.id, TaskStatus::Finished, None, Timestamp::now())
            .expect("finish");
    }
    // The fourth waits for the window: a blocking fetch takes it once the
    // first start is a period old.
    let f = store
        .fetch("d", &q, Duration::from_secs(10))
        .expect("fetch")
        .expect("the window opened");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    store
        .finish("d", &f.id, TaskStatus::Finished, None, Timestamp::now())
        .expect("finish");
    assert_eq!(store.queue("mail").count().expect("count"), 1);
}

#[test]
fn bad_limits_are_refused() {
    let server = RedisServer::start();
    let store = server.store();
    assert!(matches!(
        store.limit_queue("q", Limit::Concurrency(0)),
        Err(StoreError::InvalidOption { .. })
    ));
    assert!(matches!(
        store.pause_queue("bad name"),
        Err(StoreError::InvalidName { .. })
    ));
    for bad in ["0/1s", "5", "5/1d", "x/1s"] {
        let err = bad.parse::<Rate>().expect_err(bad);
        assert!(err.to_string().contains("N/PERIOD"), "{err}");
    }
}

#[test]
fn queue_states_list_lengths_running_counts_and_settings() {
    let server = RedisServer::start();
    let store = server.store();
    store.queue("a").enqueue("t", &1).expect("enqueue");
    store.queue("a").enqueue("t", &2).expect("enqueue");
    store.pause_queue("b").expect("pause");
    store
        .limit_queue("a", Limit::Concurrency(5))
        .expect("limit");
    store
        .register_slot(&redis_tasks::store::SlotInfo {
            id: "s1".into(),
            description: "host.1/1".into(),
            queues: queues(&["a"]),
            supervisor: "sup".into(),
            host: "host".into(),
            pid: 1,
            started_at: Timestamp::now(),
        })
        .expect("register");
    store
        .fetch("s1", &queues(&["a"]), Duration::ZERO)
        .expect("fetch")
        .expect("task");
    let states = store.queue_states().expect("states");
    let names: Vec<&str> = states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!((states[0].length, states[0].running), (1, 1));
    assert_eq!(states[0].flow.concurrency, Some(5));
    assert!(!states[0].flow.paused);
    assert!(states[1].flow.paused);
    assert_eq!((states[1].length, states[1].running), (0, 0));
}

#[test]
fn a_rate_limit_works_for_an_acl_user_without_time() {
    // The ACL of docs/redis.md before flow control: no TIME. The window
    // then counts on the caller's clock, and fetching still works.
    let server = RedisServer::start();
    let mut admin = server.client();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("old");
    for rule in "on resetkeys ~redis_tasks:* resetchannels -@all +@read +@write \
                 +evalsha +eval +script|load +ping +wait +select -@dangerous >pw"
        .split_whitespace()
    {
        cmd.arg(rule);
    }
    cmd.query::<()>(&mut admin).expect("ACL SETUSER");
    let url = server.url().replacen("redis://", "redis://old:pw@", 1);
    let config = redis_tasks::store::RedisConfig::from_url(&url, None)
        .expect("url")
        .with_partitions(crate::support::test_partitions());
    let store = redis_tasks::Store::with_config(config, "redis_tasks").expect("open");
    let rate: Rate = "2/1h".parse().expect("rate");
    store.limit_queue("q", Limit::Rate(rate)).expect("limit");
    for i in 0..3 {
        store.queue("q").enqueue("t", &i).expect("enqueue");
    }
    let q = queues(&["q"]);
    for slot in ["a", "b"] {
        let f = store
            .fetch(slot, &q, Duration::ZERO)
            .expect("fetch")
            .expect("task");
        store
            .finish(slot, &f.id, TaskStatus::Finished, None, Timestamp::now())
            .expect("finish");
    }
    assert!(
        store
            .fetch("c", &q, Duration::ZERO)
            .expect("fetch")
            .is_none()
    );
}

#[test]
fn a_task_function_at_its_concurrency_limit_waits_while_other_work_runs() {
    let server = RedisServer::start();
    let store = server.store();
    store
        .limit_task("slow", Limit::Concurrency(1))
        .expect("limit");
    let q = queues(&["q"]);
    let slow1 = store.queue("q").enqueue("slow", &1).expect("enqueue");
    let slow2 = store.queue("q").enqueue("slow", &2).expect("enqueue");
    let fast = store.queue("q").enqueue("fast", &3).expect("enqueue");

    let a = store.fetch("s1", &q, Duration::ZERO).expect("fetch");
    assert_eq!(a.as_ref().map(|f| f.id.clone()), Some(slow1.clone()));
    // The second `slow` is held back; the slot takes the next task.
    let b = store.fetch("s2", &q, Duration::ZERO).expect("fetch");
    assert_eq!(b.map(|f| f.id), Some(fast));
    assert!(
        store
            .fetch("s3", &q, Duration::ZERO)
            .expect("fetch")
            .is_none()
    );
    let flow = store.task_flow("slow").expect("flow");
    assert_eq!((flow.concurrency, flow.held), (Some(1), 1));
    assert_eq!(store.queue("q").count().expect("count"), 0);
    assert_eq!(
        store.task(&slow2).expect("record").status,
        TaskStatus::Queued
    );

    // The end of the first gives its permit to the held one, which is
    // back at the front of its queue: a slot blocked there is woken.
    let waiter = {
        let store = server.store();
        let q = q.clone();
        std::thread::spawn(move || store.fetch("s3", &q, Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(100));
    store
        .finish("s1", &slow1, TaskStatus::Finished, None, Timestamp::now())
        .expect("finish");
    let t0 = Instant::now();
    let woken = waiter.join().expect("thread").expect("fetch");
    assert_eq!(woken.map(|f| f.id), Some(slow2));
    assert!(t0.elapsed() < Duration::from_secs(5), "woken late");
    assert_eq!(store.task_flow("slow").expect("flow").held, 0);

    store.limit_task("slow", Limit::Clear).expect("clear");
    assert_eq!(store.task_flow("slow").expect("flow"), Default::default());
    assert!(store.limit_task("bad name", Limit::Clear).is_err());
    assert!(store.limit_task("slow", Limit::Concurrency(0)).is_err());
}

#[test]
fn a_task_function_rate_limit_holds_starts_in_order_until_its_window_opens() {
    let server = RedisServer::start();
    let store = server.store();
    let rate: Rate = "2/1s".parse().expect("rate");
    store.limit_task("api", Limit::Rate(rate)).expect("limit");
    let q = queues(&["q"]);
    let ids: Vec<String> = (0..4)
        .map(|i| store.queue("q").enqueue("api", &i).expect("enqueue"))
        .collect();
    let mut started = Vec::new();
    let t0 = Instant::now();
    for slot in ["s1", "s2", "s3", "s4"] {
        let mut got = None;
        wait_until("a start", Duration::from_secs(10), || {
            got = store
                .fetch(slot, &q, Duration::from_millis(200))
                .expect("fetch");
            got.is_some()
        });
        started.push((got.expect("task").id, t0.elapsed()));
    }
    let order: Vec<String> = started.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(order, ids, "held tasks keep their order");
    // The third start waited for the window of the first.
    assert!(
        started[2].1 >= Duration::from_millis(900),
        "{:?}",
        started[2].1
    );
}

#[test]
fn a_task_held_back_by_its_function_limit_can_be_canceled() {
    let server = RedisServer::start();
    let store = server.store();
    store
        .limit_task("slow", Limit::Concurrency(1))
        .expect("limit");
    let q = queues(&["q"]);
    store.queue("q").enqueue("slow", &1).expect("enqueue");
    let held = store.queue("q").enqueue("slow", &2).expect("enqueue");
    let first = store.fetch("s1", &q, Duration::ZERO).expect("fetch");
    assert!(first.is_some());
    assert!(
        store
            .fetch("s2", &q, Duration::ZERO)
            .expect("fetch")
            .is_none()
    );
    assert_eq!(store.task_flow("slow").expect("flow").held, 1);
    let canceled = store.cancel_task(&held).expect("cancel");
    assert!(
        matches!(canceled, redis_tasks::CancelResult::Canceled),
        "{canceled:?}"
    );
    assert_eq!(
        store.task(&held).expect("record").status,
        TaskStatus::Canceled
    );
    assert_eq!(store.task_flow("slow").expect("flow").held, 0);
}

/// A slot waiting because flow control held back its queue is woken by the
/// step that lets a task through (a freed permit, an enqueue), not by a
/// timer: it gets the task well before the one-second safety net.
#[test]
fn a_waiting_slot_is_poked_by_a_freed_permit_and_by_an_enqueue() {
    let server = RedisServer::start();
    let store = server.store();
    store
        .limit_queue("q", Limit::Concurrency(1))
        .expect("limit");
    let q = queues(&["q"]);
    let first = store.queue("q").enqueue("t", &1).expect("enqueue");
    let second = store.queue("q").enqueue("t", &2).expect("enqueue");
    assert!(
        store
            .fetch("s1", &q, Duration::ZERO)
            .expect("fetch")
            .is_some()
    );
    let wait_in_thread = |slot: &'static str| {
        let store = server.store();
        let q = q.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let got = store
                .fetch(slot, &q, Duration::from_secs(30))
                .expect("fetch");
            (got.map(|f| f.id), t0.elapsed())
        })
    };
    // Held: the permit is taken.
    let waiter = wait_in_thread("s2");
    wait_until("the slot to wait", Duration::from_secs(10), || {
        server
            .client()
            .sismember::<_, _, bool>(server.names().home("q").flow_waiting(), "s2")
            .unwrap_or(false)
    });
    let freed = Instant::now();
    store
        .finish("s1", &first, TaskStatus::Finished, None, Timestamp::now())
        .expect("finish");
    let (got, _) = waiter.join().expect("thread");
    assert_eq!(got, Some(second.clone()));
    assert!(
        freed.elapsed() < Duration::from_millis(800),
        "woken after {:?}: by the safety net, not by the freed permit",
        freed.elapsed()
    );
    store
        .finish("s2", &second, TaskStatus::Finished, None, Timestamp::now())
        .expect("finish");

    // Empty and limited: an enqueue pokes the waiting slot.
    let waiter = wait_in_thread("s3");
    wait_until("the slot to wait", Duration::from_secs(10), || {
        server
            .client()
            .sismember::<_, _, bool>(server.names().home("q").flow_waiting(), "s3")
            .unwrap_or(false)
    });
    let enqueued = Instant::now();
    let third = store.queue("q").enqueue("t", &3).expect("enqueue");
    let (got, _) = waiter.join().expect("thread");
    assert_eq!(got, Some(third));
    assert!(
        enqueued.elapsed() < Duration::from_millis(800),
        "woken after {:?}: by the safety net, not by the enqueue",
        enqueued.elapsed()
    );
}
